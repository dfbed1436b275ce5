"""Containers end to end: the real CLI, runc, overlayfs and lamina's monitor on a busybox base."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import tree_listing
from busybox_rootfs import make_busybox_rootfs

from lamina.api import Lamina
from lamina.snapshots import mount_points

LAMINA = str(Path(sys.executable).with_name("lamina"))

# Every test here runs real containers through the CLI: seconds each (`make test` runs them;
# the pure rules are in tests/unit/api/test_api_container_opts.py for `make test-fast`).
pytestmark = pytest.mark.slow


class Cli:
    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, *args: str, input: bytes | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return subprocess.run(
            [LAMINA, "--root", str(self.root), *args],
            input=input.decode() if input is not None else None,
            capture_output=True, text=True, timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )  # fmt: skip

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_busybox_rootfs(tmp_path_factory.mktemp("bb") / "rootfs")
    (root / "bin" / "busybox").chmod(0o755)
    big = root / "big"
    big.write_bytes(os.urandom(4 << 20))
    return root


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


def mounts_under(path: Path) -> list[str]:
    return [m for m in mount_points() if m.startswith(str(path))]


def test_exit_codes_are_the_process_own_or_dockers(cli: Cli) -> None:
    assert cli("run", "--rm", "busybox", "true").returncode == 0
    assert cli("run", "--rm", "busybox", "false").returncode == 1
    assert cli("run", "--rm", "busybox", "sh", "-c", "exit 72").returncode == 72
    missing = cli("run", "--rm", "busybox", "no-such-command")
    assert missing.returncode == 127 and "no-such-command" in missing.stderr
    assert cli("run", "--rm", "busybox", "/etc").returncode == 126
    assert cli("run", "--rm", "busybox", "/etc/passwd").returncode == 126
    absent = cli("run", "--rm", "no-such-image")
    assert absent.returncode == 125 and "no-such-image" in absent.stderr
    cleared = cli("run", "--rm", "--entrypoint", "", "busybox")
    assert cleared.returncode == 125 and "no command specified" in cleared.stderr
    assert cli("ps", "-aq").stdout == ""  # --rm removed them, the failed starts too
    assert list((cli.root / "containers").iterdir()) == []
    assert not mounts_under(cli.root)
    assert not list((cli.root / "runc").iterdir())


def test_only_a_removed_containers_layer_skips_syncs(cli: Cli) -> None:
    # --rm throws the read-write layer away: its overlay is volatile (no syncfs of the whole
    # disk at unmount). A kept container's changes must survive a power loss: not volatile.
    def root_options(*args: str) -> str:
        mounts = cli.ok("run", *args, "busybox", "cat", "/proc/mounts").splitlines()
        [root] = [line for line in mounts if line.split()[1] == "/"]
        return root.split()[3]

    assert "volatile" in root_options("--rm")
    assert "volatile" not in root_options()


def test_entrypoint_and_cmd(cli: Cli) -> None:
    img = cli.ok("commit", "-c", 'ENTRYPOINT ["echo", "ep"]', "-c", 'CMD ["default"]',
                 _made(cli), "epimg").strip()  # fmt: skip
    assert img.startswith("sha256:")
    assert cli.ok("run", "--rm", "epimg") == "ep default\n"
    assert cli.ok("run", "--rm", "epimg", "given") == "ep given\n"
    assert cli.ok("run", "--rm", "--entrypoint", "echo", "epimg") == "\n"  # image Cmd dropped
    assert cli.ok("run", "--rm", "--entrypoint", "echo", "epimg", "x") == "x\n"
    assert cli.ok("run", "--rm", "--entrypoint", "", "epimg", "echo", "y") == "y\n"


def _made(cli: Cli) -> str:
    return cli.ok("run", "-d", "busybox", "true").strip()


def test_env_precedence_and_env_file(cli: Cli, tmp_path: Path) -> None:
    cli.ok("commit", "-c", "ENV A=image B=image C=image", _made(cli), "envimg")
    f = tmp_path / "env"
    f.write_text("# comment\n\nB=file\nC=file 'quoted' $X\nFROMHOST\nABSENT\n")
    done = subprocess.run(
        [LAMINA, "--root", str(cli.root), "run", "--rm", "-e", "C=flag", "-e", "FROMHOST2",
         "--env-file", str(f), "envimg", "env"],
        capture_output=True, text=True, env={**os.environ, "FROMHOST": "h1", "FROMHOST2": "h2"},
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert lines[0].startswith("PATH=") and lines[1].startswith("HOSTNAME=")
    env = dict(line.split("=", 1) for line in lines)
    assert env["A"] == "image" and env["B"] == "file" and env["C"] == "flag"
    assert env["FROMHOST"] == "h1" and env["FROMHOST2"] == "h2" and "ABSENT" not in env
    assert env["HOME"] == "/root"
    bad = tmp_path / "bad"
    bad.write_text("A B=1\n")
    assert cli("run", "--rm", "--env-file", str(bad), "busybox", "true").returncode == 125
    assert cli("run", "--rm", "-e", "=x", "busybox", "true").returncode == 125


def test_workdir_and_user(cli: Cli) -> None:
    assert cli.ok("run", "--rm", "-w", "/made/here", "busybox", "pwd") == "/made/here\n"
    onfile = cli("run", "--rm", "-w", "/etc/passwd", "busybox", "pwd")
    assert onfile.returncode == 125 and "/etc/passwd" in onfile.stderr
    assert cli("run", "--rm", "-w", "relative", "busybox", "pwd").returncode == 125
    assert cli.ok("run", "--rm", "-u", "app", "busybox", "id", "-u") == "1000\n"
    assert cli.ok("run", "--rm", "-u", "4242", "busybox", "id", "-u") == "4242\n"
    no_entry = cli.ok("run", "--rm", "-u", "4242", "busybox", "sh", "-c", "echo $HOME; id -g")
    assert no_entry == "/\n0\n"  # a uid without a passwd entry: HOME=/, gid 0
    unknown = cli("run", "--rm", "-u", "nobody-here", "busybox", "id")
    assert unknown.returncode == 125
    assert "unable to find user nobody-here: no matching entries in passwd file" in unknown.stderr
    assert cli.ok("run", "--rm", "-u", "app:0", "busybox", "id", "-g") == "0\n"
    groups = cli.ok("run", "--rm", "-u", "app", "busybox", "id", "-G").split()
    assert len(groups) >= 2  # the primary group and the supplementary ones from /etc/group
    assert cli("run", "--rm", "-u", "app:nogroup", "busybox", "id").returncode == 125


def test_stdin_and_terminal(cli: Cli) -> None:
    done = cli("run", "--rm", "-i", "busybox", "cat", input=b"piped text\n")
    assert done.stdout == "piped text\n"
    assert cli("run", "--rm", "busybox", "cat", input=b"x").stdout == ""  # no -i: no stdin
    cmd = f"{LAMINA} --root {cli.root} run --rm -t busybox sh -c 'tty; echo $TERM; exit 5'"
    pty = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=60)  # fmt: skip
    assert pty.returncode == 5
    assert "/dev/pts/" in pty.stdout and "xterm" in pty.stdout


def test_detached_logs_stop_rm(cli: Cli) -> None:
    cid = cli.ok("run", "-d", "--name", "ticker", "busybox", "sh", "-c",
                 "echo one; echo two >&2; sleep 100").strip()  # fmt: skip
    assert len(cid) == 64 and all(c in "0123456789abcdef" for c in cid)
    assert cli("run", "-d", "--name", "ticker", "busybox", "true").returncode == 125
    time.sleep(0.5)
    assert cli.ok("ps", "-q") == cid[:12] + "\n"
    for d in (cli.root, cli.root / "containers", cli.root / "containers" / cid):
        assert d.stat().st_mode & 0o777 == 0o700  # nothing of a container for other users
    logs = cli("logs", "ticker")
    assert logs.stdout == "one\n" and logs.stderr == "two\n"
    last = cli("logs", "--tail", "1", cid[:6])  # the last line of both streams
    assert (last.stdout, last.stderr) == ("", "two\n")
    stamped = cli.ok("logs", "-t", cid[:6]).split(" ", 1)
    assert stamped[0].endswith("Z") and stamped[1] == "one\n"
    follow = subprocess.Popen([LAMINA, "--root", str(cli.root), "logs", "-f", "ticker"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    started = time.monotonic()
    cli.ok("stop", "-t", "1", "ticker")
    assert time.monotonic() - started < 10
    assert follow.communicate(timeout=30)[0] == "one\n"
    fmt = cli.ok("inspect", "-f", "{{.State.ExitCode}} {{.State.Status}}", "ticker")
    assert fmt == "137 exited\n"
    assert cli.ok("stop", "ticker") == "ticker\n"  # stopped already: not an error
    trap = cli.ok("run", "-d", "busybox", "sh", "-c",
                  "trap 'exit 0' TERM; while true; do sleep 0.1; done").strip()  # fmt: skip
    time.sleep(0.3)
    t0 = time.monotonic()
    cli.ok("stop", trap)
    assert time.monotonic() - t0 < 2
    assert cli.ok("wait", trap) == "0\n"
    assert cli("rm", trap).returncode == 0
    cli.ok("rm", "ticker")
    assert cli("ps", "-aq").stdout == ""
    assert not (cli.root / "containers" / cid).exists()


def test_kill_signals(cli: Cli) -> None:
    cid = cli.ok(
        "run",
        "-d",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 10' USR1; trap 'exit 12' HUP; while true; do sleep 0.1; done",
    )
    cid = cid.strip()
    time.sleep(0.3)
    bad = cli("kill", "-s", "NOPE", cid)
    assert bad.returncode == 1 and "Invalid signal" in bad.stderr
    assert "running" in cli.ok("inspect", "-f", "{{.State.Status}}", cid)
    cli.ok("kill", "-s", "USR1", cid)
    assert cli.ok("wait", cid) == "10\n"
    cli.ok("start", cid)
    time.sleep(0.3)
    cli.ok("kill", "-s", "1", cid)
    assert cli.ok("wait", cid) == "12\n"
    cli.ok("start", cid)
    time.sleep(0.3)
    cli.ok("kill", "-s", "SIGKILL", cid)
    assert cli.ok("wait", cid) == "137\n"


def test_exec(cli: Cli) -> None:
    cid = cli.ok("run", "-d", "-e", "X=1", "busybox", "sleep", "100").strip()
    time.sleep(0.2)
    assert cli.ok("exec", cid, "sh", "-c", "echo $X; pwd") == "1\n/\n"
    as_app = cli.ok("exec", "-u", "app", "-w", "/tmp", cid, "sh", "-c", "id -u; pwd")
    assert as_app == "1000\n/tmp\n"
    assert cli("exec", cid, "no-such").returncode == 127
    assert cli("exec", "-i", cid, "cat", input=b"abc").stdout == "abc"


def test_create_then_start_and_the_container_group(cli: Cli) -> None:
    cid = cli.ok("create", "--name", "made", "-e", "A=1", "busybox", "sh", "-c",
                 "echo made $A; exit 5").strip()  # fmt: skip
    assert len(cid) == 64
    assert cli.ok("ps", "-a", "--format", "{{.Names}} {{.Status}}") == "made Created\n"
    done = cli("start", "-a", "made")
    assert (done.returncode, done.stdout) == (5, "made 1\n"), done.stderr
    assert cli.ok("container", "ls", "-a", "--format", "{{.Names}}") == "made\n"
    assert cli.ok("container", "inspect", "--format", "{{.State.ExitCode}}", "made") == "5\n"
    assert cli("container", "inspect", "busybox").returncode == 1  # an image, not a container
    cli.ok("container", "rm", "made")
    # --rm: it goes once a start of it ends (not before: nothing started it yet).
    cid = cli.ok("create", "--rm", "busybox", "true").strip()
    time.sleep(0.2)
    assert cli.ok("ps", "-aq", "--no-trunc") == cid + "\n"
    cli.ok("start", cid)
    deadline = time.monotonic() + 10
    while cli.ok("ps", "-aq") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cli.ok("ps", "-aq") == ""
    assert cli("create", "-d", "busybox", "true").returncode == 125  # docker create has no -d


def test_rename_follows_mobys_rules(cli: Cli) -> None:
    first = cli.ok("run", "-d", "--name", "one", "busybox", "sleep", "100").strip()
    cli.ok("run", "-d", "--name", "two", "busybox", "true")
    taken = cli("rename", "one", "two")
    assert taken.returncode == 1
    assert 'The container name "/two" is already in use' in taken.stderr
    assert taken.stderr.strip().endswith("failed to rename container named one")
    assert cli("rename", "one", "one").returncode == 1  # its own name
    assert cli("rename", "one", "bad name").returncode == 1
    assert cli("rename", "nosuch", "three").returncode == 1
    assert cli("rename", first[:12], "/three").returncode == 0  # an ID prefix; `/` dropped
    assert cli.ok("ps", "-a", "--format", "{{.Names}}").split() == ["two", "three"]
    assert cli.ok("container", "rename", "three", "four") == ""
    assert cli.ok("inspect", "--format", "{{.Name}}", first) == "/four\n"


def test_top_lists_the_containers_processes_only(cli: Cli) -> None:
    cid = cli.ok("run", "-d", "busybox", "sh", "-c", "sleep 101 & sleep 102; true").strip()
    time.sleep(0.3)
    table = cli.ok("top", cid).splitlines()
    assert table[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    commands = sorted(line.split(None, 7)[7] for line in table[1:])
    assert commands[1:] == ["sleep 101", "sleep 102"]
    assert commands[0].startswith("sh -c sleep 101")  # (ps cuts long lines at 80 columns)
    assert cli.ok("container", "top", cid[:8], "-o", "pid,args").split("\n")[0].split() == [
        "PID", "COMMAND"]  # fmt: skip
    cli.ok("stop", "-t", "0", cid)
    stopped = cli("top", cid)
    assert stopped.returncode == 1 and "is not running" in stopped.stderr


def test_rm_of_a_container_that_made_a_very_deep_tree(cli: Cli) -> None:
    # deeper than Python's recursion limit: a recursive removal crashed half-way
    script = "i=0; while [ $i -lt 1100 ]; do mkdir d && cd d || exit 1; i=$((i+1)); done"
    cid = cli.ok("run", "-d", "busybox", "sh", "-c", script).strip()
    assert cli.ok("wait", cid) == "0\n"
    done = cli("rm", cid)
    assert done.returncode == 0, done.stderr
    assert cli.ok("ps", "-aq") == ""
    assert [n for n in os.listdir(cli.root / "containers") if cid in n] == []


def test_exec_with_a_terminal_where_the_command_has_none(cli: Cli) -> None:
    # `docker exec -t` prints the process' terminal output wherever stdout goes (a CI job,
    # a pipe); runc alone needs a terminal of its caller to copy to (here, none of 0-2 is).
    cid = cli.ok("run", "-d", "busybox", "sleep", "100").strip()
    done = cli("exec", "-t", cid, "sh", "-c", "test -t 0 && test -t 1 && echo tty; exit 3")
    assert (done.returncode, done.stdout) == (3, "tty\n"), done.stderr  # (\r\n, read as text)
    assert cli("exec", "-t", cid, "no-such").returncode == 127
    assert cli("exec", "-t", cid, "sh", "-c", "kill -9 $$").returncode == 137
    left = os.listdir(cli.root / "containers" / cid)
    assert [n for n in left if n.startswith(("console-", "exec-"))] == []
    refused = cli("exec", "-it", cid, "true")  # docker-cli's: stdin must be a terminal
    assert refused.returncode == 1 and "the input device is not a TTY" in refused.stderr


def test_read_only_and_volumes(cli: Cli, tmp_path: Path) -> None:
    ro = cli("run", "--rm", "--read-only", "busybox", "sh", "-c",
             "touch /x; echo $?; touch /etc/hosts; echo $?")  # fmt: skip
    assert ro.stdout == "1\n1\n"
    rw = cli.ok("run", "--rm", "busybox", "sh", "-c", "echo 1.2.3.4 h >> /etc/hosts; echo $?")
    assert rw == "0\n"
    host = tmp_path / "vol" / "new"
    cli.ok("run", "--rm", "-v", f"{host}:/data", "busybox", "sh", "-c", "echo hi > /data/f")
    assert (host / "f").read_text() == "hi\n"
    readonly = cli("run", "--rm", "-v", f"{host}:/data:ro", "busybox", "sh", "-c",
                   "cat /data/f; echo x > /data/g")  # fmt: skip
    assert readonly.stdout == "hi\n" and readonly.returncode != 0 and not (host / "g").exists()
    assert cli("run", "--rm", "-v", "rel:/data", "busybox", "true").returncode == 125
    assert cli("run", "--rm", "-v", f"{host}:/a/../b", "busybox", "true").returncode == 125
    cid = cli.ok("run", "-d", "-v", f"{host}:/data", "busybox", "true").strip()
    cli.ok("wait", cid)
    assert cli.ok("diff", cid) == ""  # mount points (/etc/hosts, /dev, volumes) never show


def test_isolation(cli: Cli) -> None:
    out = cli.ok("run", "--rm", "busybox", "sh", "-c",
                 "ls /proc | grep -c '^[0-9]'; cat /proc/timer_list 2>/dev/null | wc -c;"
                 " echo x > /proc/sysrq-trigger 2>/dev/null; echo $?;"
                 " ls /dev | sort | tr '\\n' ' '")  # fmt: skip
    pids, timer, sysrq, dev = out.splitlines()
    assert int(pids) <= 3  # sh, ls, grep: the host's processes are invisible
    assert timer == "0" and sysrq != "0"
    assert "sda" not in dev and "null" in dev
    block = cli("run", "--rm", "busybox", "sh", "-c",
                "mknod /x b 8 0; mknod /dev/y b 8 0; head -c 1 /x /dev/y | wc -c")  # fmt: skip
    assert "Operation not permitted" in block.stderr and block.stdout.strip() == "0"
    hostname = cli.ok("run", "--rm", "-h", "named", "busybox", "sh", "-c",
                      "hostname; cat /etc/hostname; grep named /etc/hosts | wc -l")  # fmt: skip
    assert hostname == "named\nnamed\n1\n"
    resolv = cli.ok("run", "--rm", "busybox", "cat", "/etc/resolv.conf").splitlines()
    servers = [line for line in resolv if line.startswith("nameserver")]
    assert servers and not any(" 127." in line for line in servers)
    host_servers = [line for line in Path("/etc/resolv.conf").read_text().splitlines()
                    if line.startswith("nameserver") and " 127." not in line]  # fmt: skip
    if host_servers:
        assert servers == host_servers
    host = cli.ok("run", "--rm", "--network", "host", "busybox", "hostname")
    assert host == os.uname().nodename + "\n"
    cid = cli.ok("run", "-d", "busybox", "hostname").strip()
    cli.ok("wait", cid)
    assert cli.ok("logs", cid) == cid[:12] + "\n"


def test_copy_on_write_diff_and_commit(cli: Cli, rootfs: Path) -> None:
    lam = Lamina(cli.root)
    image = lam.resolve("busybox")
    snapshot = lam.store.snapshot_path(image.layers[-1].diff_id)
    before = hashlib.sha256((rootfs / "big").read_bytes()).hexdigest()
    cid = cli.ok("run", "-d", "--name", "cow", "busybox", "sh", "-c",
                 "echo changed >> /big; rm /bin/true; mkdir -p /d/e; echo y > /d/e/f;"
                 " rm -r /tmp; echo x > /etc/added").strip()  # fmt: skip
    assert cli.ok("wait", "cow") == "0\n"
    assert hashlib.sha256((snapshot / "big").read_bytes()).hexdigest() == before
    upper = cli.root / "containers" / cid / "upper"
    assert (upper / "big").stat().st_size == (4 << 20) + 8
    wh = os.lstat(upper / "bin" / "true")
    assert os.major(wh.st_rdev) == 0 and os.minor(wh.st_rdev) == 0
    assert cli.ok("diff", "cow").splitlines() == [
        "C /big", "C /bin", "D /bin/true", "A /d", "A /d/e", "A /d/e/f", "C /etc",
        "A /etc/added", "D /tmp",
    ]  # fmt: skip
    new_id = cli.ok("commit", "-m", "my change", "-a", "me", "cow", "committed:1").strip()
    assert new_id.startswith("sha256:")
    assert cli.ok("run", "--rm", "committed:1", "cat", "/etc/added") == "x\n"
    assert cli("run", "--rm", "committed:1", "test", "-e", "/bin/true").returncode == 1
    history = cli.ok("history", "--no-trunc", "committed:1").splitlines()
    assert "my change" in history[1] and "echo changed" in history[1]
    new = lam.resolve("committed:1")
    assert [x.digest for x in new.layers[:-1]] == [x.digest for x in image.layers]
    bad = cli("commit", "-c", "RUN echo", "cow")
    assert bad.returncode == 1 and "RUN is not a valid change command" in bad.stderr
    same = cli.ok("run", "-d", "busybox", "true").strip()
    cli.ok("wait", same)
    empty = cli.ok("commit", same).strip()
    assert lam.config(lam.resolve(empty)).history[-1].empty_layer


def test_names_prefixes_rmi_df_and_rm(cli: Cli) -> None:
    ids = [cli.ok("run", "-d", "busybox", "sh", "-c", f"echo {i} > /mine").strip()
           for i in range(20)]  # fmt: skip
    for cid in ids:
        cli.ok("wait", cid)
    df = cli.ok("df")
    row = next(line for line in df.splitlines() if line.startswith("Containers"))
    assert row.split()[1] == "20"
    assert row.split()[3] == "50B"  # "0\n".."9\n" and "10\n".."19\n": only their changes
    refused = cli("rmi", "busybox")
    assert refused.returncode == 1 and "(must force)" in refused.stderr  # moby's by-name text
    assert cli.ok("logs", ids[3][:10]) == ""
    cli.ok("container", "prune")
    assert cli("ps", "-aq").stdout == ""
    assert list((cli.root / "containers").iterdir()) == []
    assert not mounts_under(cli.root)
    cli.ok("rmi", "busybox")


def test_crash_during_detached_run_and_build(cli: Cli, tmp_path: Path) -> None:
    # A monitor killed: the next command stops its container and says so.
    cid = cli.ok("run", "-d", "busybox", "sleep", "100").strip()
    time.sleep(0.2)
    import json

    monitor = json.loads((cli.root / "containers" / cid / "monitor.json").read_text())
    os.kill(monitor["pid"], signal.SIGKILL)
    time.sleep(0.2)
    ps = cli("ps", "-a")
    assert "its monitor" in ps.stderr and "Exited (137)" in ps.stdout
    assert not mounts_under(cli.root / "containers" / cid)
    # A build SIGKILLed during RUN: mounts and the running step go at the next command.
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo started > /dev/stderr; sleep 100\n")
    build = subprocess.Popen(
        [LAMINA, "--root", str(cli.root), "build", "--progress", "plain", str(ctx)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not mounts_under(cli.root / "snapshots"):
        time.sleep(0.05)
    time.sleep(0.5)
    assert mounts_under(cli.root / "snapshots")
    build.kill()
    build.wait()
    after = cli("images")
    assert "dead build" in after.stderr and "scratch dir" in after.stderr
    assert not mounts_under(cli.root)
    procs = subprocess.run(["pgrep", "-f", f"runc --root {cli.root}"], capture_output=True)
    assert procs.stdout == b""
    fsck = cli("fsck")
    assert fsck.returncode == 0 and "stray" not in fsck.stdout
    assert cli.ok("run", "--rm", "busybox", "echo", "fine") == "fine\n"


def _runc_status(root: Path, cid: str) -> str:
    import json

    done = subprocess.run(["runc", "--root", str(root / "runc"), "state", cid],
                          capture_output=True, text=True)  # fmt: skip
    return str(json.loads(done.stdout)["status"]) if done.returncode == 0 else "gone"


def _assert_true_states(cli: Cli) -> None:
    """Every container `ps -a` calls running runs; no other one has its rootfs mounted."""
    listing = cli("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.State}}")
    assert listing.returncode == 0, listing.stderr
    for line in listing.stdout.splitlines():
        cid, state = line.split()
        mounted_now = bool(mounts_under(cli.root / "containers" / cid))
        if state == "running":
            assert _runc_status(cli.root, cid) == "running" and mounted_now
        else:
            assert _runc_status(cli.root, cid) == "gone" and not mounted_now, line


@pytest.mark.parametrize("delay", [0.02, 0.08, 0.15, 0.3])
def test_crash_of_run_detached_leaves_true_states(cli: Cli, delay: float) -> None:
    proc = subprocess.Popen(
        [LAMINA, "--root", str(cli.root), "run", "-d", "busybox", "sleep", "100"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    proc.kill()
    proc.wait()
    _assert_true_states(cli)
    fsck = cli("fsck")
    assert fsck.returncode == 0, fsck.stdout
    assert cli.ok("run", "--rm", "busybox", "echo", "ok") == "ok\n"


def test_crash_of_stop_and_commit(cli: Cli) -> None:
    cid = cli.ok("run", "-d", "busybox", "sh", "-c", "echo x > /f; sleep 100").strip()
    time.sleep(0.3)
    stopper = subprocess.Popen([LAMINA, "--root", str(cli.root), "stop", "-t", "5", cid])
    time.sleep(0.5)
    stopper.kill()
    stopper.wait()
    _assert_true_states(cli)
    for delay in (0.05, 0.15, 0.3):
        committer = subprocess.Popen([LAMINA, "--root", str(cli.root), "commit", cid, "c:1"],
                                     stdout=subprocess.DEVNULL)  # fmt: skip
        time.sleep(delay)
        committer.kill()
        committer.wait()
        ps = cli("ps", "-a")
        assert _runc_status(cli.root, cid) == "running", ps.stderr  # never left paused
        _assert_true_states(cli)
    fsck = cli("fsck")
    assert fsck.returncode == 0, fsck.stdout
    cli.ok("commit", cid, "c:2")
    assert cli.ok("run", "--rm", "c:2", "cat", "/f") == "x\n"
    cli.ok("stop", "-t", "0", cid)
    assert cli.ok("inspect", "-f", "{{.State.ExitCode}}", cid) == "137\n"
    _assert_true_states(cli)


def test_prune_keeps_what_containers_need(cli: Cli) -> None:
    cid = cli.ok("run", "-d", "busybox", "true").strip()
    cli.ok("wait", cid)
    image = cli.ok("inspect", "-f", "{{.Image}}", cid).strip()
    cli.ok("rmi", "-f", "busybox")  # untagged, still used by the container
    cli.ok("prune")
    assert cli.ok("inspect", "-f", "{{.Id}}", image).strip() == image
    cli.ok("start", "-a", cid)
    assert cli.ok("diff", cid) == ""
    cli.ok("rm", cid)
    cli.ok("prune")
    assert cli("inspect", image).returncode == 1


def test_init_network_none_restart_and_attach(cli: Cli) -> None:
    pid1 = cli.ok("run", "--rm", "--init", "busybox", "sh", "-c",
                  "cat /proc/1/cmdline | tr '\\0' ' '")  # fmt: skip
    assert pid1.startswith("/sbin/docker-init -- sh")
    links = cli.ok("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net")
    assert links.split() == ["lo"]
    cid = cli.ok("run", "-d", "--name", "again", "busybox", "sh", "-c", "echo run").strip()
    cli.ok("wait", cid)
    cli.ok("restart", "again")
    cli.ok("wait", "again")
    assert cli.ok("logs", "again") == "run\nrun\n"
    attached = cli("start", "-a", "again")
    assert attached.returncode == 0 and attached.stdout == "run\n"


def _default_sigint() -> None:
    # A suite started in the background hands its children an ignored SIGINT, which Python
    # (as POSIX asks of programs) keeps ignoring: the signal under test would never arrive.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_detached_rm_goes_by_itself_and_signals_reach_the_process(cli: Cli) -> None:
    cli.ok("run", "-d", "--rm", "busybox", "true")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and list((cli.root / "containers").iterdir()):
        time.sleep(0.1)
    assert list((cli.root / "containers").iterdir()) == []  # the monitor removed it
    proc = subprocess.Popen([LAMINA, "--root", str(cli.root), "run", "--name", "sig", "busybox",
                             "sh", "-c", "trap 'exit 33' INT; echo ready; while true; do sleep 0.1;"
                             " done"], stdout=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 33
    assert cli.ok("inspect", "-f", "{{.State.ExitCode}}", "sig") == "33\n"


def _container_pid(cli: Cli) -> tuple[str, int]:
    """(id, host pid) of the one container of `cli`'s root, once its process runs."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        made = cli.root / "containers"
        for d in made.iterdir() if made.is_dir() else ():
            if (d / "pid").exists():
                return d.name, int((d / "pid").read_text())
        time.sleep(0.05)
    raise AssertionError("the container never ran")


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def _parent_pid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid for {pid}")


def test_a_foreground_rm_run_is_supervised_by_the_command_itself(cli: Cli) -> None:
    # No monitor process: the container's process is the command's own child, Ctrl-C reaches
    # it (through a pidfd), the command returns its status and leaves nothing behind.
    proc = subprocess.Popen([LAMINA, "--root", str(cli.root), "run", "--rm", "busybox",
                             "sh", "-c", "trap 'echo bye; exit 34' INT; echo ready; "
                             "while true; do sleep 0.1; done"], stdout=subprocess.PIPE,
                            text=True, preexec_fn=_default_sigint)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    cid, pid = _container_pid(cli)
    assert _parent_pid(pid) == proc.pid
    assert not (cli.root / "containers" / cid / "monitor.json").exists()
    assert cli.ok("ps", "-q", "--no-trunc").split() == [cid]  # running, as Docker shows it
    assert cli.ok("logs", cid) == "ready\n"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 34
    assert proc.stdout.read() == "bye\n"
    assert list((cli.root / "containers").iterdir()) == []
    assert not mounts_under(cli.root)
    assert cli.ok("ps", "-aq") == ""


def test_a_killed_foreground_rm_run_is_stopped_and_removed_by_the_next_command(
    cli: Cli,
) -> None:
    proc = subprocess.Popen([LAMINA, "--root", str(cli.root), "run", "--rm", "busybox",
                             "sleep", "60"], stdout=subprocess.DEVNULL)  # fmt: skip
    cid, pid = _container_pid(cli)
    proc.kill()
    proc.wait(timeout=20)
    assert cli.ok("ps", "-aq") == ""  # the next command stops and removes it
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _running(pid):
        time.sleep(0.05)
    assert not _running(pid)
    assert not (cli.root / "containers" / cid).exists()
    assert not mounts_under(cli.root)


@pytest.mark.parametrize("named", [False, True])
def test_the_next_run_cleans_up_after_a_killed_one(cli: Cli, named: bool) -> None:
    # A `run --rm` cleans up after dead commands while runc starts its own container; a
    # named one first (the dead command's container may hold the name).
    name = ["--name", "web"] if named else []
    proc = subprocess.Popen([LAMINA, "--root", str(cli.root), "run", "--rm", *name,
                             "busybox", "sleep", "60"], stdout=subprocess.DEVNULL)  # fmt: skip
    cid, pid = _container_pid(cli)
    proc.kill()
    proc.wait(timeout=20)
    done = cli("run", "--rm", *name, "busybox", "echo", "hi")
    assert (done.returncode, done.stdout) == (0, "hi\n"), done.stderr
    assert f"lamina: stopped container {cid[:12]}" in done.stderr
    assert not (cli.root / "containers" / cid).exists()
    assert not _running(pid)
    assert not mounts_under(cli.root)
    assert cli.ok("ps", "-aq") == ""


def test_stop_rm_f_and_wait_reach_a_foreground_rm_run(cli: Cli) -> None:
    # The command supervises it (no monitor, no exit file left behind): `stop` (even with a
    # negative timeout, which never kills), `wait` and `rm -f` see its end when the command
    # removes it, instead of polling for a monitor's exit file until their deadlines.
    loop = "trap 'exit 23' TERM; echo ready; while true; do sleep 0.1; done"
    for action in (["stop", "-t", "-1"], ["wait"], ["rm", "-f"]):
        proc = subprocess.Popen([LAMINA, "--root", str(cli.root), "run", "--rm", "busybox",
                                 "sh", "-c", loop], stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        cid, _ = _container_pid(cli)
        waiter = subprocess.Popen([LAMINA, "--root", str(cli.root), *action, cid], text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        if action == ["wait"]:
            time.sleep(0.3)
            cli.ok("kill", "-s", "TERM", cid)
        out, err = waiter.communicate(timeout=15)
        assert waiter.returncode == 0, (action, out, err)
        if action == ["wait"]:
            assert out == "23\n"
        assert proc.wait(timeout=15) in (23, 137)
        assert not (cli.root / "containers" / cid).exists()
    assert cli.ok("ps", "-aq") == ""
    assert not mounts_under(cli.root)


def test_stop_signal_from_the_image_or_the_flag(cli: Cli) -> None:
    trap = "trap 'exit 41' USR1; trap 'exit 42' USR2; while true; do sleep 0.1; done"
    cli.ok("commit", "-c", "STOPSIGNAL USR2", _made(cli), "stopsig")
    from_image = cli.ok("run", "-d", "stopsig", "sh", "-c", trap).strip()
    from_flag = cli.ok("run", "-d", "--stop-signal", "SIGUSR1", "--stop-timeout", "5",
                       "stopsig", "sh", "-c", trap).strip()  # fmt: skip
    time.sleep(0.3)
    cli.ok("stop", from_image, from_flag)
    assert cli.ok("wait", from_image, from_flag) == "42\n41\n"
    cli.ok("start", from_image)
    time.sleep(0.3)
    cli.ok("stop", "-s", "USR1", from_image)
    assert cli.ok("wait", from_image) == "41\n"
    bad = cli("run", "--rm", "--stop-signal", "NOPE", "busybox", "true")
    assert bad.returncode == 125 and "Invalid signal" in bad.stderr


def test_build_run_cannot_reach_a_block_device_either(cli: Cli, tmp_path: Path) -> None:
    ctx = tmp_path / "blockctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "RUN mknod /x b 8 0 2>/dev/null; mknod /dev/y b 8 0 2>/dev/null;"
        " mknod /c c 1 3 && echo char-ok; head -c 1 /x /dev/y 2>/dev/null | wc -c > /count\n"
    )
    cli.ok("build", "-t", "blocktest", str(ctx))
    out = cli.ok("run", "--rm", "blocktest", "sh", "-c", "cat /count; test -e /x; echo $?")
    assert out == "0\n1\n"  # no block node was made, so nothing was read


def _cgroups_named(cid: str) -> list[str]:
    found = subprocess.run(["find", "/sys/fs/cgroup", "-maxdepth", "5", "-name", cid],
                           capture_output=True, text=True, check=False)  # fmt: skip
    return found.stdout.split()


def test_an_exited_container_leaves_no_runc_state_or_cgroup(cli: Cli) -> None:
    # The monitor deletes what runc made once it has reaped the process (itself, or with
    # `runc delete` when something is left): a process left behind in the background too.
    for script in ("exit 4", "sleep 0.3 & exit 4"):
        cid = cli.ok("run", "-d", "busybox", "sh", "-c", script).strip()
        assert cli("wait", cid).stdout.strip() == "4"
        assert not (cli.root / "runc" / cid).exists()
        assert _cgroups_named(cid) == []
        assert cli.ok("inspect", "-f", "{{.State.ExitCode}}", cid) == "4\n"
    assert cli("run", "--rm", "busybox", "true").returncode == 0
    assert not list((cli.root / "runc").iterdir())


# -- edges of Docker's rules found different, each with its fix --------------------------


def test_stop_with_a_negative_timeout_waits_for_the_exit(cli: Cli) -> None:
    # moby's containerStop: a negative timeout never kills; it waits until the process exits.
    cid = cli.ok("run", "-d", "busybox", "sleep", "100").strip()  # pid 1 ignores SIGTERM
    stop = subprocess.Popen([LAMINA, "--root", str(cli.root), "stop", "-t", "-1", cid],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(2)
    assert stop.poll() is None
    assert cli.ok("inspect", "-f", "{{.State.Status}}", cid) == "running\n"
    cli.ok("kill", cid)
    assert stop.communicate(timeout=30)[0] == cid + "\n" and stop.returncode == 0
    # The container's own --stop-timeout -1 does the same.
    own = cli.ok("run", "-d", "--stop-timeout", "-1", "busybox", "sleep", "100").strip()
    own_stop = subprocess.Popen([LAMINA, "--root", str(cli.root), "stop", own])
    time.sleep(1.5)
    assert own_stop.poll() is None
    cli.ok("kill", own)
    assert own_stop.wait(timeout=30) == 0


def test_container_names_follow_mobys_pattern(cli: Cli) -> None:
    one = cli("run", "--name", "a", "busybox", "true")
    assert one.returncode == 125
    assert "Invalid container name (a), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed" in one.stderr
    cli.ok("run", "--name", "/web", "busybox", "true")  # the leading / is Docker's own spelling
    assert cli.ok("inspect", "-f", "{{.Name}}", "web") == "/web\n"
    cid = cli.ok("inspect", "-f", "{{.Id}}", "web").strip()
    again = cli("run", "--name", "web", "busybox", "true")
    assert again.returncode == 125
    assert (f'The container name "/web" is already in use by container "{cid}". You have to '
            "remove (or rename) that container to be able to reuse that name.") in again.stderr


def test_env_flag_absent_on_the_host_unsets_the_images_variable(cli: Cli) -> None:
    made = cli.ok("run", "-d", "busybox", "true").strip()
    cli.ok("commit", "-c", "ENV A=image B=image", made, "envimg")
    env = subprocess.run([LAMINA, "--root", str(cli.root), "run", "--rm", "-e", "A", "envimg",
                          "env"], env={"PATH": "/usr/bin:/bin"}, capture_output=True,
                         text=True, check=True).stdout.splitlines()  # fmt: skip
    assert "B=image" in env and not any(e.startswith("A=") for e in env)
    cid = cli.ok("run", "-d", "envimg", "sleep", "100").strip()
    ran = subprocess.run([LAMINA, "--root", str(cli.root), "exec", "-e", "B", cid, "env"],
                         env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                         check=True).stdout.splitlines()  # fmt: skip
    assert "A=image" in ran and not any(e.startswith("B=") for e in ran)


def test_volume_modes_docker_takes(cli: Cli, tmp_path: Path) -> None:
    host = f"{tmp_path}/vol"
    cli.ok("run", "--rm", "-v", f"{host}:/data:z", "busybox", "touch", "/data/x")
    ro = cli("run", "--rm", "-v", f"{host}:/data:ro,Z", "busybox", "touch", "/data/y")
    assert ro.returncode == 1 and "Read-only file system" in ro.stderr
    bad = cli("run", "--rm", "-v", f"{host}:/data:bogus", "busybox", "true")
    assert bad.returncode == 125 and "invalid mode: bogus" in bad.stderr


def test_rm_force_of_a_missing_container_and_names_with_a_slash(cli: Cli) -> None:
    # docker-cli's rm: with -f a container that does not exist is not an error (nothing
    # printed for it); moby finds a name with or without its leading /.
    cid = cli.ok("run", "-d", "--name", "web", "busybox", "sleep", "100").strip()
    assert cli.ok("inspect", "-f", "{{.Id}}", "/web") == cid + "\n"
    gone = cli("rm", "-f", "no-such", "/web")
    assert (gone.returncode, gone.stdout, gone.stderr) == (0, "/web\n", "")
    missing = cli("rm", "no-such")
    assert missing.returncode == 1 and "No such container: no-such" in missing.stderr
    assert cli("ps", "-aq").stdout == ""


def test_ps_size_shows_the_virtual_size(cli: Cli) -> None:
    # docker-cli's Size column: the read-write layer's bytes, then (virtual: the image's and
    # the layer's) when the container has a root file system.
    cli.ok("run", "--name", "sized", "busybox", "sh", "-c", "printf 12345 > /five")
    image = cli.ok("images", "--format", "{{.Size}}", "busybox").strip()
    row = cli.ok("ps", "-as", "--format", "{{.Names}} {{.Size}}")
    assert row == f"sized 5B (virtual {image})\n"
    header, line = cli.ok("ps", "-as").splitlines()
    assert header.split()[-1] == "SIZE" and line.endswith(f"5B (virtual {image})")


def test_ps_size_of_an_image_whose_config_two_manifests_share(cli: Cli, tmp_path: Path) -> None:
    # The same image saved as a gzip OCI archive and loaded back under another name: two
    # manifests, one config (one image ID). The container's image is its manifest, so its
    # virtual size is still known (the ID alone is ambiguous).
    archive = tmp_path / "bb.tar"
    cli.ok("save", "--format", "oci-archive", "-o", str(archive), "busybox")
    cli.ok("tag", "busybox", "before")
    cli.ok("rmi", "busybox")
    cli.ok("load", "-i", str(archive))
    assert len(set(cli.ok("images", "-q", "--no-trunc").split())) == 1
    cli.ok("run", "--name", "sized", "busybox", "sh", "-c", "printf 12345 > /five")
    image = cli.ok("images", "--format", "{{.Size}}", "busybox").strip()
    row = cli.ok("ps", "-as", "--format", "{{.Names}} {{.Size}}")
    assert row == f"sized 5B (virtual {image})\n"


def test_logs_tail_forms(cli: Cli) -> None:
    # moby's logs: a negative --tail is every line (as `all`); 0 is none.
    cli.ok("run", "--name", "talker", "busybox", "sh", "-c", "echo 1; echo 2; echo 3")
    assert cli.ok("logs", "--tail", "-1", "talker") == "1\n2\n3\n"
    assert cli.ok("logs", "-n", "all", "talker") == "1\n2\n3\n"
    assert cli.ok("logs", "--tail", "0", "talker") == ""
    assert cli.ok("logs", "--tail", "2", "talker") == "2\n3\n"
    assert cli.ok("logs", "--tail", "+2", "talker") == "2\n3\n"  # Go's Atoi takes a sign
    bad = cli("logs", "--tail", "x", "talker")
    assert bad.returncode == 2 and "--tail 'x'" in bad.stderr  # lamina: an error, not all


def test_start_attached_that_cannot_start_exits_1(cli: Cli) -> None:
    # docker-cli maps a start failure to 125/126/127 in `run` only; `start -a` returns the
    # error itself, which exits 1. The container's own status still comes through.
    assert cli("run", "--name", "missing", "busybox", "no-such").returncode == 127
    again = cli("start", "-a", "missing")
    assert again.returncode == 1 and "no-such" in again.stderr
    assert cli.ok("inspect", "-f", "{{.State.ExitCode}}", "missing") == "127\n"
    assert cli("run", "--name", "three", "busybox", "sh", "-c", "exit 3").returncode == 3
    assert cli("start", "-a", "three").returncode == 3


def test_container_prune_reports_the_space_reclaimed(cli: Cli) -> None:
    # docker-cli: the deleted IDs, a blank line, then "Total reclaimed space: SIZE" (also 0B).
    cid = cli.ok("run", "-d", "busybox", "sh", "-c", "printf 1234567 > /seven").strip()
    cli.ok("wait", cid)
    assert cli.ok("container", "prune", "-f") == (
        f"Deleted Containers:\n{cid}\n\nTotal reclaimed space: 7B\n"
    )
    assert cli.ok("container", "prune", "-f") == "Total reclaimed space: 0B\n"


def test_run_flag_errors_exit_125(cli: Cli) -> None:
    # docker-cli's FlagErrorFunc: a bad flag of `run` is a failure of the tool (125), not
    # a status the container could have returned.
    for args in (["--bogus"], ["--network", "foo"], ["--stop-timeout", "x"], ["-e"]):
        bad = cli("run", "--rm", *args, "busybox", "true") if args != ["-e"] else cli("run", "-e")
        assert bad.returncode == 125 and "Error: " in bad.stderr, (args, bad.stderr)
    assert cli("run").returncode == 2  # a missing IMAGE stays a usage error (docker-cli: 1)


def test_times_are_spelled_as_docker_spells_them(cli: Cli) -> None:
    # docker-cli's ps {{.CreatedAt}} is Go's time.String() of the Unix second (local zone);
    # inspect's Created/StartedAt/FinishedAt are RFC 3339 with nanoseconds, in UTC.
    import re

    cli.ok("run", "--name", "timed", "busybox", "true")
    created_at = cli.ok("ps", "-a", "--format", "{{.CreatedAt}}").strip()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} \S+", created_at), created_at
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d*[1-9]Z"
    for field in ("Created", "State.StartedAt", "State.FinishedAt"):
        value = cli.ok("inspect", "-f", "{{." + field + "}}", "timed").strip()
        assert re.fullmatch(stamp, value), (field, value)


def test_times_not_yet_reached_are_gos_zero_time(cli: Cli) -> None:
    # moby's State holds time.Time values: one never set is printed as Go's zero time. A
    # container whose process could not start was never started (nor finished); a running
    # one has not finished.
    zero = "0001-01-01T00:00:00Z"
    assert cli("run", "--name", "never", "busybox", "/nonexistent").returncode == 127
    fields = "{{.State.Status}} {{.State.StartedAt}} {{.State.FinishedAt}}"
    assert cli.ok("inspect", "-f", fields, "never").split() == ["created", zero, zero]
    cli.ok("run", "-d", "--name", "up", "busybox", "sleep", "30")
    status, started, finished = cli.ok("inspect", "-f", fields, "up").split()
    assert status == "running" and started != zero and finished == zero
    cli.ok("rm", "-f", "up")


def test_an_ambiguous_id_prefix_is_mobys_error(cli: Cli) -> None:
    seen: dict[str, str] = {}
    while True:  # at most 17 containers until two IDs share their first digit
        cid = cli.ok("run", "-d", "busybox", "true").strip()
        if cid[0] in seen:
            break
        seen[cid[0]] = cid
    both = cli("inspect", cid[0])
    assert both.returncode == 1
    assert f"multiple IDs found with provided prefix: {cid[0]}" in both.stderr


def test_wait_on_a_detached_rm_container_gives_its_exit_status(cli: Cli) -> None:
    # docker wait returns the status of a --rm container although the container then goes.
    for code in (4, 0, 9):
        cid = cli.ok("run", "-d", "--rm", "busybox", "sh", "-c", f"sleep 1; exit {code}").strip()
        assert cli.ok("wait", cid) == f"{code}\n"
    assert cli("ps", "-aq").stdout == ""


def test_commit_history_names_the_containers_cmd(cli: Cli) -> None:
    # moby's commit: the history entry's created_by is the container's Cmd joined by
    # spaces (its Entrypoint is not part of it).
    cli.ok("commit", "-c", 'ENTRYPOINT ["/bin/sh", "-c"]', _made(cli), "shell")
    cid = cli.ok("run", "-d", "shell", "echo from-cmd > /f").strip()
    cli.ok("wait", cid)
    image = cli.ok("commit", cid, "withcmd").strip()
    lam = Lamina(cli.root)
    try:
        last = lam.config(lam.resolve(image)).history[-1]
    finally:
        lam.store.close()
    assert last.created_by == "echo from-cmd > /f"


def test_inspect_type_and_a_missing_object(cli: Cli) -> None:
    # docker inspect --type container|image looks only there; neither found is
    # "No such object: X" (with --type: "No such container"/"No such image").
    cli.ok("run", "--name", "busybox", "busybox", "true")  # a container named like the image
    assert cli.ok("inspect", "-f", "{{.Name}}", "busybox") == "/busybox\n"
    assert cli.ok("inspect", "--type", "container", "-f", "{{.Name}}", "busybox") == "/busybox\n"
    image = cli.ok("inspect", "--type", "image", "-f", "{{.Id}}", "busybox")
    assert image.startswith("sha256:")
    missing = cli("inspect", "nothing-here")
    assert missing.returncode == 1 and "No such object: nothing-here" in missing.stderr
    as_container = cli("inspect", "--type", "container", "nothing-here")
    assert as_container.returncode == 1 and "No such container: nothing-here" in as_container.stderr
    assert cli("inspect", "--type", "volume", "busybox").returncode == 2


def test_workdir_message_and_cleaning_are_mobys(cli: Cli) -> None:
    # moby's translateWorkingDir: its message, and the path cleaned (/a/../b/ is /b).
    rel = cli("run", "--rm", "-w", "rel", "busybox", "pwd")
    assert rel.returncode == 125
    assert "the working directory 'rel' is invalid, it needs to be an absolute path" in rel.stderr
    assert cli.ok("run", "--rm", "-w", "/nowhere/../tmp/", "busybox", "pwd") == "/tmp\n"
    assert cli.ok("run", "--rm", "-w", "", "busybox", "pwd") == "/\n"  # empty: not given


# -- the image's init layer ------------------------------------------------------------
# The mount-point stubs (/etc/hosts, /etc/resolv.conf, /etc/hostname, /dev, /proc, /sys) all
# containers of an image share, made once under `snapshots/init-<image>`: a read-only lower
# of each, never written by one, gone with its image, known to fsck; a command killed while
# making it leaves nothing the next command does not remove.

STUBS = ("etc/hosts", "etc/resolv.conf", "etc/hostname", "dev", "proc", "sys")


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
from lamina.api import ContainerRunner
real = ContainerRunner._make_init_layer
def make(view, init, targets):
    real(view, init, targets[:2])
    os.kill(os.getpid(), signal.SIGKILL)
ContainerRunner._make_init_layer = staticmethod(make)
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


def _cgroup_dirs(proc_self_cgroup: str) -> list[Path]:
    """The host directories of the cgroups a container's /proc/self/cgroup lists (cgroup
    v1 hierarchies by controller name, the v2 one as `unified`)."""
    dirs = []
    for line in proc_self_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else ["unified"]:
            name = c.removeprefix("name=")
            dirs.append(Path("/sys/fs/cgroup", name, path.lstrip("/")))
    return dirs


def test_run_rm_leaves_no_cgroup_and_no_runc_state(cli: Cli) -> None:
    # The runc state goes on a thread while the files are removed: both are gone on return.
    kept = cli.ok("run", "-d", "busybox", "sh", "-c", "cat /proc/self/cgroup; sleep 30").strip()
    deadline = time.monotonic() + 10
    while not (listed := cli.ok("logs", kept)) and time.monotonic() < deadline:
        time.sleep(0.05)
    live = [d for d in _cgroup_dirs(listed) if d.is_dir()]
    assert live and all(kept in str(d) for d in live)  # found where they are while it runs
    cli.ok("rm", "-f", kept)
    assert not any(d.exists() for d in live)
    out = cli.ok("run", "--rm", "busybox", "cat", "/proc/self/cgroup")
    gone = _cgroup_dirs(out)
    assert len(gone) == len(live) and not any(d.exists() for d in gone)
    assert list((cli.root / "runc").iterdir()) == []
    assert list((cli.root / "containers").iterdir()) == []
    assert cli.ok("ps", "-aq") == ""


def test_a_container_made_before_the_shared_init_layer_still_starts(cli: Cli) -> None:
    # An older lamina kept every stub in the container's own init/ and had no
    # `shared_init` in the record: such a container starts over its own init/ alone.
    import shutil

    cid = cli.ok("run", "-d", "busybox", "cat", "/etc/hostname").strip()
    assert cli.ok("wait", cid).strip() == "0"
    own = cli.root / "containers" / cid / "init"
    shutil.copytree(init_layer(cli), own, symlinks=True)
    lam = Lamina(cli.root)
    try:
        state = lam.store.get_container(cid).state
        for key in ("shared_init", "own_init"):
            del state["spec"][key]
        lam.store.set_container_state(cid, state)
    finally:
        lam.store.close()
    shutil.rmtree(init_layer(cli))  # not there: an old container does not need it
    done = cli("start", "-a", cid)
    assert done.returncode == 0 and done.stdout == cid[:12] + "\n", done.stderr
    assert not init_layer(cli).exists()
    cli.ok("rm", cid)
