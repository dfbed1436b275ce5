"""lamina as Python calls: `Lamina(root)` and the values its methods return.

    lamina = Lamina(Path("/tmp/root"))
    lamina.import_image(Path("rootfs"), "me/base:1")
    lamina.load(Path("image.tar")); lamina.save(["me/base:1"], Path("out.tar"))
    lamina.images(); lamina.history("me/base:1"); lamina.df()
    lamina.build(Path("ctx"), tags=["me/app:1"])   # or build_image(lamina, ctx, …)
    lamina.build("-", stdin=f, labels={"k": "v"}, platform="linux/arm64",
                 outputs=["type=local,dest=out"], iidfile=Path("iid"))
    lamina.images(filters=["dangling=true", "reference=me/*"], all_images=True)
    cid, code = lamina.containers.run(RunOptions("me/app:1", ["echo", "hi"]))
    lamina.containers.diff(cid); lamina.containers.commit(cid, "me/app:2")
    report, layers = lamina.analyze("me/app:1")     # waste, lines, duplicates (lamina.analysis)
    lamina.compare("me/app:2", "me/app:1"); lamina.analyze_store(); lamina.index_layers()

The CLI is a presentation of these; tests use them directly. `lamina run` opens the root
as `RunHost.open(root)` instead (the container code over the metadata db alone, a `Lamina`
opened only for what needs it: see `_container_host`); every name here loads on first use.
"""

from lamina._lazy import lazy_names

TYPE_CHECKING = False  # not typing's: `lamina run` does without typing
if TYPE_CHECKING:
    from lamina.api._build import (
        build_image,
        check_dockerfile,
        parse_build_args,
        parse_labels,
        parse_secret,
        parse_ssh,
    )
    from lamina.api._container_commands import ContainerInfo, Containers, describe_status
    from lamina.api._container_filters import (
        ContainerFilters,
        docker_timestamp_ns,
        filter_containers,
        image_container_config,
        match_container,
        order_window,
        parse_container_filters,
        prune_selector,
        prune_takes,
    )
    from lamina.api._container_host import RunHost
    from lamina.api._containers import Attach, ContainerExit, ContainerRunner, RunOptions
    from lamina.api._history import HistoryRow, history_rows
    from lamina.api._lamina import ImageSummary, Lamina, familiar, normalize_tag
    from lamina.api._replay import BuildRequest
    from lamina.api._root import default_root
    from lamina.api._transfer_types import LoadResult

# Loaded on first use: every command imports lamina.api, and `lamina run` needs none of
# these but `RunHost` (the store as a container's start and end need it) and the container
# code.
_LAZY = {
    **dict.fromkeys(("ImageSummary", "Lamina", "familiar", "normalize_tag"),
                    "lamina.api._lamina"),
    "default_root": "lamina.api._root",
    "RunHost": "lamina.api._container_host",
    **dict.fromkeys(("ContainerFilters", "docker_timestamp_ns", "filter_containers",
                     "image_container_config", "match_container", "order_window",
                     "parse_container_filters", "prune_selector", "prune_takes"),
                    "lamina.api._container_filters"),
    **dict.fromkeys(("Attach", "ContainerExit", "ContainerRunner", "RunOptions"),
                    "lamina.api._containers"),
    **dict.fromkeys(("ContainerInfo", "Containers", "describe_status"),
                    "lamina.api._container_commands"),
    **dict.fromkeys(("build_image", "check_dockerfile", "parse_build_args", "parse_labels",
                     "parse_secret", "parse_ssh"), "lamina.api._build"),
    "HistoryRow": "lamina.api._history",
    "history_rows": "lamina.api._history",
    "BuildRequest": "lamina.api._replay",
    "LoadResult": "lamina.api._transfer_types",
}  # fmt: skip


__all__ = [
    "Attach",
    "ContainerExit",
    "ContainerFilters",
    "docker_timestamp_ns",
    "filter_containers",
    "image_container_config",
    "ContainerInfo",
    "ContainerRunner",
    "Containers",
    "RunHost",
    "RunOptions",
    "describe_status",
    "match_container",
    "order_window",
    "parse_container_filters",
    "prune_selector",
    "prune_takes",
    "BuildRequest",
    "HistoryRow",
    "ImageSummary",
    "Lamina",
    "LoadResult",
    "build_image",
    "check_dockerfile",
    "default_root",
    "familiar",
    "history_rows",
    "normalize_tag",
    "parse_build_args",
    "parse_labels",
    "parse_secret",
    "parse_ssh",
]

__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__, globals())
