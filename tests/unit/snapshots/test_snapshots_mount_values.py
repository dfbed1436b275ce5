"""Mount descriptions and their option strings: pure, no mounting."""

from __future__ import annotations

from pathlib import Path

import pytest

import lamina.snapshots as snapshots
from lamina.errors import InvalidInputError
from lamina.snapshots import MAX_LOWERDIRS, Mount, overlay_mount
from lamina.snapshots._mount import _MAX_DATA, _compact


def test_public_surface_is_all() -> None:
    public = {n for n in dir(snapshots) if not n.startswith("_")}
    assert public - {"annotations"} == set(snapshots.__all__)


def test_read_write_overlay_lists_lowers_top_first() -> None:
    m = overlay_mount([Path("/s/top"), Path("/s/bottom")], Path("/c/upper"), Path("/c/work"))
    assert m.type == "overlay"
    assert "lowerdir=/s/top:/s/bottom" in m.options
    assert "upperdir=/c/upper" in m.options
    assert "workdir=/c/work" in m.options
    assert m.lowerdirs() == ["/s/top", "/s/bottom"]


def test_read_only_overlay_has_no_upper() -> None:
    m = overlay_mount([Path("/s/a"), Path("/s/b")])
    assert "ro" in m.options
    assert not any(o.startswith(("upperdir=", "workdir=")) for o in m.options)


def test_single_read_only_layer_is_a_read_only_bind() -> None:
    assert overlay_mount([Path("/s/a")]) == Mount("bind", "/s/a", ("rbind", "ro"))


def test_single_layer_with_upper_stays_overlay() -> None:
    m = overlay_mount([Path("/s/a")], Path("/u"), Path("/w"))
    assert m.type == "overlay"
    assert m.lowerdirs() == ["/s/a"]


@pytest.mark.parametrize(
    ("lowers", "upper", "work"),
    [
        ([], None, None),
        ([Path("relative")], None, None),
        ([Path("/a,b")], None, None),
        ([Path("/a:b")], None, None),
        ([Path("/a")], Path("/u"), None),
        ([Path("/a")], None, Path("/w")),
    ],
)
def test_bad_overlay_requests_are_refused(
    lowers: list[Path], upper: Path | None, work: Path | None
) -> None:
    with pytest.raises(InvalidInputError):
        overlay_mount(lowers, upper, work)


def test_more_lowers_than_overlayfs_allows_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="500"):
        overlay_mount([Path(f"/s/{i}") for i in range(MAX_LOWERDIRS + 1)])


def test_compaction_replaces_lowers_by_short_relative_links(tmp_path: Path) -> None:
    lowers = [tmp_path / ("a" * 64 + str(i)) for i in range(130)]
    m = overlay_mount(lowers, Path("/u"), Path("/w"))
    assert len(",".join(m.options)) > _MAX_DATA
    links = tmp_path / "links"
    links.mkdir()
    short = _compact(m, links)
    assert short.lowerdirs() == [str(i) for i in range(130)]
    assert len(",".join(short.options)) < _MAX_DATA
    assert [Path(links / n).readlink() for n in short.lowerdirs()] == lowers
    assert "upperdir=/u" in short.options


def test_a_layer_given_twice_is_kept_where_topmost() -> None:
    """overlayfs refuses a repeated lower dir (ELOOP); the lower copy adds nothing."""
    m = overlay_mount([Path("/s/a"), Path("/s/b"), Path("/s/a")])
    assert "lowerdir=/s/a:/s/b" in m.options
    assert overlay_mount([Path("/s/a"), Path("/s/a")]) == Mount("bind", "/s/a", ("rbind", "ro"))
