"""scan_layer: the applier's checks without writing anything."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from lamina.errors import InvalidInputError
from lamina.layers import scan_layer


def _tar(*names: str, link: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
        if link is not None:
            info = tarfile.TarInfo("hard")
            info.type = tarfile.LNKTYPE
            info.linkname = link
            tar.addfile(info)
    return buf.getvalue()


def test_scan_hashes_the_whole_stream() -> None:
    data = _tar("a", "dir/b", ".wh.gone")
    stats = scan_layer(io.BytesIO(data))
    assert stats.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert stats.size == len(data)
    assert stats.entries == 3


def test_scan_without_digest_still_checks_and_counts() -> None:
    data = _tar("a")
    stats = scan_layer(io.BytesIO(data), digest=False)
    assert stats.diff_id is None and stats.size == len(data)
    with pytest.raises(InvalidInputError, match=r"'\.\.'"):
        scan_layer(io.BytesIO(_tar("../escape")), digest=False)


@pytest.mark.parametrize(
    ("names", "link"),
    [(("../../etc/passwd",), None), (("a/.wh...",), None), (("a",), "../../etc/shadow")],
)
def test_scan_refuses_what_the_applier_refuses(names: tuple[str, ...], link: str | None) -> None:
    with pytest.raises(InvalidInputError, match="tar entry"):
        scan_layer(io.BytesIO(_tar(*names, link=link)))
