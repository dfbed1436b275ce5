"""Property: the copying fallback shows exactly what overlayfs shows, for random layer stacks."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina.layers import OVERLAY_OPAQUE_XATTRS
from lamina.snapshots import materialize, mounted, overlay_mount

pytestmark = pytest.mark.integration

NAMES = ("a", "b", "c")
KINDS = ("file", "dir", "opaque", "whiteout", "symlink")

# A layer is a tree: name → kind (and children for directories), depth at most 3.
layer_tree = st.recursive(
    st.sampled_from(["file", "whiteout", "symlink"]),
    lambda children: st.tuples(
        st.sampled_from(["dir", "opaque"]), st.dictionaries(st.sampled_from(NAMES), children)
    ),
    max_leaves=6,
)
layer = st.dictionaries(st.sampled_from(NAMES), layer_tree, max_size=3)


def build(root: Path, tree: dict[str, object], tag: str) -> None:
    for name, node in tree.items():
        p = root / name
        if node == "file":
            p.write_text(f"{tag}/{name}")
        elif node == "whiteout":
            os.mknod(p, stat.S_IFCHR, os.makedev(0, 0))
        elif node == "symlink":
            p.symlink_to(f"../{tag}")
        else:
            kind, children = cast(tuple[str, dict[str, object]], node)
            p.mkdir()
            if kind == "opaque":
                os.setxattr(p, OVERLAY_OPAQUE_XATTRS[0], b"y")
            build(p, children, tag)


def view(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            try:
                m = p.lstat().st_mode
            except FileNotFoundError:
                # overlayfs lists a whiteout in a directory no lower layer merges with, yet
                # looking it up finds nothing: the lookup is what a process sees.
                continue
            if stat.S_ISLNK(m):
                out[rel] = "link:" + os.readlink(p)
            elif stat.S_ISDIR(m):
                out[rel] = "dir"
            elif stat.S_ISREG(m):
                out[rel] = "file:" + p.read_text()
            else:
                out[rel] = "other"
    return out


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(layer, min_size=2, max_size=4))
def test_materialize_matches_overlayfs(layers: list[dict[str, object]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        lowers: list[Path] = []
        for i, tree in enumerate(layers):
            d = base / f"l{i}"
            d.mkdir()
            build(d, tree, f"l{i}")
            lowers.insert(0, d)
        copy, merged = base / "copy", base / "merged"
        copy.mkdir()
        merged.mkdir()
        materialize(lowers, copy)
        with mounted(overlay_mount(lowers), merged):
            assert view(copy) == view(merged)


@pytest.mark.parametrize("xattr", OVERLAY_OPAQUE_XATTRS)
def test_materialize_honours_both_opaque_xattrs(tmp_path: Path, xattr: str) -> None:
    # Both spellings mark a directory opaque, as for the layer writer: the copying
    # fallback and layers/_whiteout.py share one rule.
    lower, upper, target = tmp_path / "lower", tmp_path / "upper", tmp_path / "target"
    (lower / "d").mkdir(parents=True)
    (lower / "d" / "below").write_text("hidden")
    (upper / "d").mkdir(parents=True)
    (upper / "d" / "above").write_text("kept")
    os.setxattr(upper / "d", xattr, b"y")
    target.mkdir()
    materialize([upper, lower], target)
    assert sorted(os.listdir(target / "d")) == ["above"]
