"""lamina as Python calls: `Lamina(root)` and the values its methods return.

    lamina = Lamina(Path("/tmp/root"))
    lamina.import_image(Path("rootfs"), "me/base:1")
    lamina.load(Path("image.tar")); lamina.save(["me/base:1"], Path("out.tar"))
    lamina.images(); lamina.history("me/base:1"); lamina.df()

The CLI is a presentation of these; tests use them directly.
"""

from lamina.api._history import HistoryRow
from lamina.api._lamina import ImageSummary, Lamina, default_root, familiar, normalize_tag
from lamina.api._transfer_types import LoadResult

__all__ = [
    "HistoryRow",
    "ImageSummary",
    "Lamina",
    "LoadResult",
    "default_root",
    "familiar",
    "normalize_tag",
]
