"""An image's init layer: the mount-point stubs (/etc/hosts, /etc/resolv.conf, /etc/hostname,
/dev, /proc, /sys) its containers share, made once under `snapshots/init-<image>`.

It is a read-only lower of every container of the image: no container ever writes it, it
goes with its image (rmi, prune), fsck knows it, and a command killed while making it leaves
nothing the next command does not remove.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import tree_listing
from busybox_rootfs import make_busybox_rootfs

from lamina.api import Lamina
from lamina.snapshots import mount_points

LAMINA = str(Path(sys.executable).with_name("lamina"))
STUBS = ("etc/hosts", "etc/resolv.conf", "etc/hostname", "dev", "proc", "sys")

pytestmark = pytest.mark.slow


class Cli:
    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([LAMINA, "--root", str(self.root), *args], capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("bb") / "rootfs")


@pytest.fixture
def cli(tmp_path: Path, rootfs: Path) -> Iterator[Cli]:
    c = Cli(tmp_path / "root")
    c.ok("import", str(rootfs), "busybox")
    yield c
    for cid in c("ps", "-aq", "--no-trunc").stdout.split():
        c("rm", "-f", cid)
    leftover = [m for m in mount_points() if m.startswith(str(tmp_path))]
    for m in leftover:
        subprocess.run(["umount", "-l", m], check=False)
    assert not leftover, leftover


def init_layer(cli: Cli, ref: str = "busybox") -> Path:
    lam = Lamina(cli.root)
    try:
        digest = lam.resolve(ref).digest
    finally:
        lam.store.close()
    return cli.root / "snapshots" / f"init-{digest.removeprefix('sha256:')}"


def test_containers_share_the_images_init_layer_and_never_write_it(
    cli: Cli, rootfs: Path, tmp_path: Path
) -> None:
    layer = init_layer(cli)
    assert not layer.exists()  # made by the first container, not by import
    cli.ok("run", "--rm", "busybox", "true")
    before = tree_listing(layer)
    # Exactly the stubs the image lacks (the busybox base has none of them), all empty.
    missing = {s for s in STUBS if not os.path.lexists(rootfs / s)}
    assert missing and {p for p in before if p in STUBS or p == "etc"} == missing | {"etc"}
    assert set(before) <= set(STUBS) | {"etc"}
    assert all((layer / f).stat().st_size == 0 for f in before if f.startswith("etc/"))
    hostile = ("echo x > /etc/hosts; echo y > /etc/hostname; echo z > /etc/resolv.conf; "
               "rm -f /etc/hosts /etc/hostname; touch /etc/new /dev/new; mkdir /sys/x /proc/x; "
               "cat /etc/hostname")  # fmt: skip
    vol = tmp_path / "vol"
    # Two at once (one with its own stubs: a volume target), and one kept.
    first = subprocess.Popen([LAMINA, "--root", str(cli.root), "run", "--rm", "-v",
                              f"{vol}:/data/in", "busybox", "sh", "-c", hostile],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    second = cli("run", "--rm", "busybox", "sh", "-c", hostile)
    out, _ = first.communicate(timeout=60)
    assert second.stdout == "y\n" and out == "y\n"  # its own files, bound over the stubs
    kept = cli.ok("run", "-d", "busybox", "sh", "-c", hostile).strip()
    assert cli.ok("wait", kept).strip() == "0"
    assert tree_listing(layer) == before
    assert "/data" not in {line.split()[1] for line in cli.ok("diff", kept).splitlines()}
    diff = cli.ok("diff", kept).splitlines()
    assert "A /etc/new" in diff and not any(line.endswith(("/etc/hosts", "/proc", "/sys"))
                                            for line in diff)  # fmt: skip
    # A kept container restarts over the same layer.
    assert cli("start", "-a", kept).returncode == 0
    assert tree_listing(layer) == before
    assert sorted(p.name for p in (cli.root / "snapshots").iterdir() if p.name.startswith(
        ("init-", ".tmp"))) == [layer.name]  # fmt: skip
    cli.ok("rm", kept)
    assert list((cli.root / "containers").iterdir()) == []


def test_the_init_layer_goes_with_its_image(cli: Cli) -> None:
    layer = init_layer(cli)
    kept = cli.ok("run", "-d", "busybox", "true").strip()
    cli.ok("wait", kept)
    assert layer.is_dir()
    (layer / "etc" / "hosts").write_text("written\n")  # by something else than lamina
    assert "init layer" in cli("fsck").stdout + cli("fsck").stderr
    (layer / "etc" / "hosts").write_text("")
    assert cli("rmi", "busybox").returncode != 0  # a container uses it: both stay
    assert layer.is_dir()
    assert "problem" not in cli.ok("fsck") and "stray" not in cli.ok("fsck")
    cli.ok("prune")
    assert layer.is_dir()  # tagged and used: prune keeps it
    cli.ok("rm", kept)
    cli.ok("rmi", "busybox")
    assert not layer.exists()
    # One whose image is gone (a crash between the two) is a stray that prune collects.
    cli.ok("import", str(_rootfs_of(cli)), "again")
    cli.ok("run", "--rm", "again", "true")
    again = init_layer(cli, "again")
    assert again.is_dir()
    orphan = cli.root / "snapshots" / ("init-" + "ab" * 32)
    os.rename(again, orphan)
    assert f"stray (prune collects it): unrecorded snapshot entry: {orphan}" in cli.ok("fsck")
    cli.ok("prune")
    assert not orphan.exists()
    assert "stray" not in cli.ok("fsck")
    cli.ok("run", "--rm", "again", "true")  # made again
    assert again.is_dir()


def _rootfs_of(cli: Cli) -> Path:
    made = cli.root.parent / "again-rootfs"
    if not made.exists():
        make_busybox_rootfs(made)
    return made


_KILLED_MID_INIT = """
import os, signal, sys
from lamina.api import Containers
real = Containers._make_init_layer
def make(view, init, targets):
    real(view, init, targets[:2])
    os.kill(os.getpid(), signal.SIGKILL)
Containers._make_init_layer = staticmethod(make)
from lamina.cli import main
sys.argv = ["lamina", "--root", sys.argv[1], "run", "--rm", "busybox", "true"]
main()
"""


def test_a_command_killed_while_making_the_init_layer_leaves_nothing(cli: Cli) -> None:
    done = subprocess.run([sys.executable, "-c", _KILLED_MID_INIT, str(cli.root)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == -9, done.stderr
    snapshots = cli.root / "snapshots"
    [scratch] = [p for p in snapshots.iterdir() if p.name.startswith(".tmp-init-")]
    assert (scratch / "layer" / "etc").is_dir()  # half made, never under its name
    assert not init_layer(cli).exists()
    listed = cli("ps", "-a")
    assert listed.returncode == 0 and listed.stdout.count("\n") == 1  # the header only
    assert f"removed scratch dir {scratch.name}" in listed.stderr
    assert "stopped container" in listed.stderr  # and removed it, as --rm would have
    assert not scratch.exists()
    assert [p.name for p in snapshots.iterdir() if not p.name[0].isalnum()] == []
    assert list((cli.root / "containers").iterdir()) == []
    runc_state = cli.root / "runc"
    assert not runc_state.exists() or list(runc_state.iterdir()) == []
    assert not [m for m in mount_points() if m.startswith(str(cli.root))]
    assert cli.ok("run", "--rm", "busybox", "cat", "/etc/hostname")
    assert set(tree_listing(init_layer(cli))) >= {"etc/hosts", "proc"}
    assert "stray" not in cli.ok("fsck")
