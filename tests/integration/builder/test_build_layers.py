"""What RUN layers hold: whiteouts, opaque dirs, type changes, hardlinks, deep stacks."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from lamina.api import Lamina
from lamina.layers import EntryType, open_layer_reader, read_entries
from lamina.transport import open_layer_tar

# Every test here runs whole builds under runc: `make test-fast` leaves them to `make test`.
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def layer_names(lam: Lamina, digest: str) -> list[str]:
    with open_layer_tar(lam.store, digest) as f:
        return [entry.name for entry, _ in read_entries(open_layer_reader(f))]


def test_whiteouts_and_opaque_directories(lam: Lamina, build, image_tree) -> None:  # type: ignore[no-untyped-def]
    build(
        """\
FROM busybox
RUN mkdir -p /d/old && touch /d/old/file /d/keep /gone
RUN rm /gone && rm -rf /d && mkdir /d && echo new > /d/new
""",
        tags=["wh"],
    )
    image = lam.resolve("wh")
    names = layer_names(lam, image.layers[-1].digest)
    assert ".wh.gone" in names
    assert "d/.wh..wh..opq" in names
    with image_tree("wh") as root:
        assert not (root / "gone").exists()
        assert sorted(os.listdir(root / "d")) == ["new"]


def test_file_and_directory_replace_each_other(build, image_tree) -> None:  # type: ignore[no-untyped-def]
    build(
        """\
FROM busybox
RUN echo file > /was-file && mkdir -p /was-dir/inner && touch /was-dir/inner/x
RUN rm /was-file && mkdir /was-file && touch /was-file/child \\
 && rm -rf /was-dir && echo now-a-file > /was-dir
""",
        tags=["swap"],
    )
    with image_tree("swap") as root:
        assert (root / "was-file").is_dir() and (root / "was-file/child").exists()
        assert (root / "was-dir").is_file()
        assert (root / "was-dir").read_text() == "now-a-file\n"


def test_hardlinks_survive_in_a_layer(lam: Lamina, build, image_tree) -> None:  # type: ignore[no-untyped-def]
    build("FROM busybox\nRUN echo data > /a && ln /a /b\n", tags=["links"])
    with open_layer_tar(lam.store, lam.resolve("links").layers[-1].digest) as f:
        entries = {e.name: e for e, _ in read_entries(open_layer_reader(f))}
    assert entries["b"].type is EntryType.HARDLINK or entries["a"].type is EntryType.HARDLINK
    with image_tree("links") as root:
        assert os.stat(root / "a").st_ino == os.stat(root / "b").st_ino
        assert (root / "b").read_text() == "data\n"


def test_deleting_a_base_file_hides_it(build, image_tree) -> None:  # type: ignore[no-untyped-def]
    build("FROM busybox\nRUN rm /etc/group\n", tags=["nogroup"])
    with image_tree("nogroup") as root:
        assert not (root / "etc/group").exists()
        assert (root / "etc/passwd").exists()


def test_a_step_that_changes_nothing_adds_no_layer(lam: Lamina, build) -> None:  # type: ignore[no-untyped-def]
    build("FROM busybox\nRUN true\n", tags=["noop"])
    assert len(lam.resolve("noop").layers) == len(lam.resolve("busybox").layers)
    assert lam.config(lam.resolve("noop")).history[-1].empty_layer


def test_more_than_120_layers(lam: Lamina, build, image_tree) -> None:  # type: ignore[no-untyped-def]
    steps = "".join(f"RUN echo {n} > /layer-{n:03d}\n" for n in range(125))
    built = build("FROM busybox\n" + steps + "RUN ls / | grep -c layer-\n", tags=["deep"])
    assert "125" in built.output()
    assert len(lam.resolve("deep").layers) >= 126
    with image_tree("deep") as root:
        assert (root / "layer-124").read_text() == "124\n"
        assert stat.S_ISREG(os.stat(root / "layer-000").st_mode)


def test_run_cost_follows_the_change_not_the_image(lam: Lamina, build) -> None:  # type: ignore[no-untyped-def]
    build("FROM busybox\nRUN dd if=/dev/zero of=/big bs=1M count=20\nRUN touch /small\n",
          tags=["sized"])  # fmt: skip
    layer = lam.resolve("sized").layers[-1]
    assert layer_names(lam, layer.digest) == ["small"]
    assert (layer.uncompressed_size or 0) < 10_000


def test_snapshot_is_the_renamed_upper_dir(lam: Lamina, build, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    build("FROM busybox\nRUN echo x > /made\n", tags=["snap"])
    top = lam.resolve("snap").layers[-1]
    path = lam.store.snapshot_path(top.diff_id)
    assert (path / "made").read_text() == "x\n"
    assert lam.store.get_snapshot(top.diff_id) is not None
    leftovers = [p.name for p in lam.store.snapshots_dir.iterdir() if p.name.startswith(".tmp")]
    assert leftovers == []


def test_a_build_marks_the_snapshots_directory_for_spreading(lam: Lamina, build) -> None:  # type: ignore[no-untyped-def]
    """ext4's top-of-hierarchy flag on snapshots/: each step's files are allocated in a
    block group of their own (see lamina.snapshots._spread)."""
    build("FROM busybox\nRUN echo x > /made\n")
    kind = subprocess.run(["stat", "-f", "-c", "%T", str(lam.store.snapshots_dir)],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    attrs = subprocess.run(["lsattr", "-d", str(lam.store.snapshots_dir)], capture_output=True,
                           text=True, check=True).stdout.split()[0]  # fmt: skip
    assert ("T" in attrs) == (kind in ("ext2/ext3", "ext4"))
