"""runc for real: busybox rootfs, overlayfs, exit codes, users, networks, interruption."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from busybox_rootfs import make_busybox_rootfs as make_rootfs

from lamina.errors import NotFoundError, ToolError
from lamina.runtime import (
    BindMount,
    TmpfsMount,
    bundle_config,
    mount_targets,
    resolve_user,
    run,
    runc_binary,
)
from lamina.snapshots import (
    clean_upper,
    find_stubs,
    mount_points,
    mounted,
    overlay_mount,
    unmount,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


class Box:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.bundle = base / "bundle"
        self.state = base / "state"

    def run(self, rootfs: Path, args: list[str], **kw: object) -> tuple[int, str, str]:
        out: list[bytes] = []
        err: list[bytes] = []
        config = bundle_config(args, bundle_dir=self.bundle, **kw)  # type: ignore[arg-type]
        code = run(
            self.bundle, rootfs, config, state_dir=self.state, stdout=out.append, stderr=err.append
        )
        return code, b"".join(out).decode(), b"".join(err).decode()

    def containers(self) -> str:
        done = subprocess.run(
            [runc_binary(), "--root", str(self.state), "list", "-q"],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return Box(tmp_path)


@pytest.fixture
def merged(tmp_path: Path) -> Iterator[Path]:
    m = tmp_path / "merged"
    m.mkdir()
    yield m
    unmount(m)


def test_echo_prints_and_exits_zero(box: Box, rootfs: Path) -> None:
    assert box.run(rootfs, ["echo", "hi"])[:2] == (0, "hi\n")
    assert box.containers() == ""


def test_process_exit_code_is_returned(box: Box, rootfs: Path) -> None:
    assert box.run(rootfs, ["sh", "-c", "echo oops >&2; exit 3"])[::2] == (3, "oops\n")


def test_missing_command_is_127(box: Box, rootfs: Path) -> None:
    code, _, err = box.run(rootfs, ["no-such-command"])
    assert code == 127
    assert "no-such-command" in err
    assert box.run(rootfs, ["/bin/absent"])[0] == 127


def test_command_that_cannot_be_invoked_is_126(box: Box, rootfs: Path) -> None:
    assert box.run(rootfs, ["/etc/passwd"])[0] == 126


def test_run_step_upper_holds_exactly_the_changes(box: Box, merged: Path, tmp_path: Path) -> None:
    # A pristine lower: no /proc, /dev, /sys, /etc/hosts, so runc must create every stub.
    rootfs = make_rootfs(tmp_path / "lower")
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    config = bundle_config(
        ["sh", "-c", "echo x > /new; rm /bin/cat; mkdir -p /d/e"],
        bundle_dir=box.bundle,
        network="none",
    )
    with mounted(overlay_mount([rootfs], upper, work), merged):
        stubs = find_stubs(merged, mount_targets(config))
        code = run(
            box.bundle,
            merged,
            config,
            state_dir=box.state,
            stdout=sys.stdout.buffer,
            stderr=sys.stderr.buffer,
        )
    assert code == 0
    assert {"/etc/hosts", "/etc/resolv.conf", "/proc", "/dev", "/sys"} <= set(stubs)
    clean_upper(upper, stubs, [rootfs])
    found = {}
    for dirpath, dirnames, filenames in os.walk(upper):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            found[str(p.relative_to(upper))] = p.lstat()
    assert sorted(found) == ["bin", "bin/cat", "d", "d/e", "new"]
    assert stat.S_ISCHR(found["bin/cat"].st_mode) and found["bin/cat"].st_rdev == 0
    assert (upper / "new").read_text() == "x\n"
    assert str(merged) not in mount_points()


def test_user_by_name_and_its_groups(box: Box, rootfs: Path) -> None:
    user = resolve_user(rootfs, "app")
    # The primary group is listed too, as under Docker (containerd's WithAdditionalGIDs).
    assert user == (1000, 1000, (1000, 50))
    code, out, _ = box.run(rootfs, ["id"], user=user)
    assert code == 0
    assert out.strip() == "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)"


def test_user_with_group_and_unknown_user(box: Box, rootfs: Path) -> None:
    assert resolve_user(rootfs, "app:staff") == (1000, 50, (50,))
    assert resolve_user(rootfs, "4242") == (4242, 0, (0,))
    with pytest.raises(NotFoundError, match="nobody"):
        resolve_user(rootfs, "nobody")


def test_env_and_cwd_are_honoured(box: Box, rootfs: Path) -> None:
    code, out, _ = box.run(
        rootfs, ["sh", "-c", 'echo "$GREETING"; pwd'], env=["GREETING=hello world"], cwd="/tmp"
    )
    assert (code, out) == (0, "hello world\n/tmp\n")


def test_network_none_has_only_loopback(box: Box, rootfs: Path) -> None:
    code, out, _ = box.run(rootfs, ["ls", "/sys/class/net"], network="none")
    assert (code, out.split()) == (0, ["lo"])
    host = box.run(rootfs, ["ls", "/sys/class/net"], network="host")[1].split()
    assert sorted(host) == sorted(os.listdir("/sys/class/net"))


def test_bind_and_tmpfs_mounts(box: Box, rootfs: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in").write_text("from host\n")
    code, out, _ = box.run(
        rootfs,
        ["sh", "-c", "cat /src/in; echo out > /cache/out; touch /scratch/t; ls /scratch"],
        binds=[BindMount(shared, "/src"), BindMount(shared, "/cache", readonly=False)],
        tmpfs=[TmpfsMount("/scratch")],
    )
    assert (code, out) == (0, "from host\nt\n")
    assert (shared / "out").read_text() == "out\n"
    assert box.run(rootfs, ["touch", "/src/no"], binds=[BindMount(shared, "/src")])[0] != 0


def test_read_only_rootfs(box: Box, rootfs: Path) -> None:
    assert box.run(rootfs, ["touch", "/x"], readonly_rootfs=True)[0] == 1


def test_130_layer_overlay_runs(box: Box, rootfs: Path, merged: Path, tmp_path: Path) -> None:
    lowers = [rootfs]
    for i in range(129):
        d = tmp_path / "snapshots" / f"{i:064x}"
        d.mkdir(parents=True)
        (d / f"f{i}").write_text(f"{i}\n")
        lowers.insert(0, d)
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    config = bundle_config(["cat", "/f0", "/f128"], bundle_dir=box.bundle)
    out: list[bytes] = []
    with mounted(overlay_mount(lowers, upper, work), merged):
        code = run(
            box.bundle,
            merged,
            config,
            state_dir=box.state,
            stdout=out.append,
            stderr=sys.stderr.buffer,
        )
    assert (code, b"".join(out)) == (0, b"0\n128\n")


def test_timeout_kills_and_deletes(box: Box, rootfs: Path) -> None:
    config = bundle_config(["sleep", "30"], bundle_dir=box.bundle)
    with pytest.raises(ToolError, match="still running"):
        run(
            box.bundle,
            rootfs,
            config,
            state_dir=box.state,
            stdout=sys.stdout.buffer,
            stderr=sys.stderr.buffer,
            timeout=0.5,
        )
    assert box.containers() == ""


CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from lamina.runtime import bundle_config, run
    from lamina.snapshots import mounted, overlay_mount
    rootfs, base = Path(sys.argv[1]), Path(sys.argv[2])
    for d in ("upper", "work", "merged"):
        (base / d).mkdir()
    def out(chunk):
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
    m = overlay_mount([rootfs], base / "upper", base / "work")
    with mounted(m, base / "merged"):
        config = bundle_config(["sh", "-c", "echo ready; sleep 30"], bundle_dir=base / "b")
        run(base / "b", base / "merged", config, state_dir=base / "state", stdout=out,
            stderr=sys.stderr.buffer)
""")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_leaves_no_container_and_no_mount(
    box: Box, rootfs: Path, tmp_path: Path, signum: int
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(rootfs), str(tmp_path)], stdout=subprocess.PIPE
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline() == b"ready\n"
        assert box.containers() != ""
        child.send_signal(signum)
        code = child.wait(30)
    finally:
        child.kill()
    # Python ends on an uncaught KeyboardInterrupt by re-raising SIGINT on itself.
    assert code == (-signal.SIGINT if signum == signal.SIGINT else 143)
    assert box.containers() == ""
    assert str(tmp_path / "merged") not in mount_points()


def test_failing_output_sink_does_not_hang_the_container(box: Box, rootfs: Path) -> None:
    def broken(chunk: bytes) -> None:
        raise OSError("sink closed")

    config = bundle_config(
        ["sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo 0123456789abcdef; i=$((i+1)); done"],
        bundle_dir=box.bundle,
    )
    with pytest.raises(OSError, match="sink closed"):
        run(box.bundle, rootfs, config, state_dir=box.state, stdout=broken, stderr=broken)
    assert box.containers() == ""
