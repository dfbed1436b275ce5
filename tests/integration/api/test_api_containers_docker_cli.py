"""Second audit of the container commands against docker/cli and moby: each test failed
before its fix. Real CLI, runc, overlayfs and lamina's monitor on a busybox-static base."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from busybox_rootfs import make_busybox_rootfs

from lamina.snapshots import mount_points

pytestmark = pytest.mark.slow

LAMINA = str(Path(sys.executable).with_name("lamina"))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rootfs = make_busybox_rootfs(tmp_path_factory.mktemp("bb") / "rootfs")
    (rootfs / "bin" / "busybox").chmod(0o755)
    return rootfs


@pytest.fixture
def root(tmp_path: Path, base: Path) -> Iterator[Path]:
    store = tmp_path / "store"
    assert lam(store, "import", str(base), "busybox").returncode == 0
    yield store
    for cid in lam(store, "ps", "-aq", "--no-trunc").stdout.split():
        lam(store, "rm", "-f", cid)
    left = [m for m in mount_points() if m.startswith(str(tmp_path))]
    for m in left:
        subprocess.run(["umount", "-l", m], check=False)
    assert not left, left


def lam(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LAMINA, "--root", str(store), *args], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip


def out(store: Path, *args: str) -> str:
    done = lam(store, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def test_a_file_binds_as_a_file(root: Path, tmp_path: Path) -> None:
    # moby creates a missing host path as a directory, and binds an existing file as it is.
    host = tmp_path / "conf.txt"
    host.write_text("hello\n")
    assert out(root, "run", "--rm", "-v", f"{host}:/conf.txt", "busybox", "cat",
               "/conf.txt") == "hello\n"  # fmt: skip
    ro = lam(root, "run", "--rm", "-v", f"{host}:/conf.txt:ro", "busybox", "sh", "-c",
             "echo more >> /conf.txt")  # fmt: skip
    assert ro.returncode == 1 and "Read-only" in ro.stderr
    out(root, "run", "--rm", "-v", f"{host}:/conf.txt:rw", "busybox", "sh", "-c",
        "echo more >> /conf.txt")  # fmt: skip
    assert host.read_text() == "hello\nmore\n"
    # over a file the image has
    assert out(root, "run", "--rm", "-v", f"{host}:/etc/passwd:ro", "busybox", "cat",
               "/etc/passwd") == "hello\nmore\n"  # fmt: skip
    # a host path that cannot be made a directory: one line, exit 125, nothing made
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere" / "x")
    bad = lam(root, "run", "--rm", "-v", f"{dangling}:/d", "busybox", "true")
    assert bad.returncode == 125 and "Traceback" not in bad.stderr
    assert str(dangling) in bad.stderr
    assert not (tmp_path / "nowhere").exists()
    assert out(root, "ps", "-aq") == ""


def test_commit_takes_gos_pause_false(root: Path) -> None:
    cid = out(root, "run", "-d", "busybox", "sleep", "30").strip()
    for flag in ("--pause=false", "--pause=true", "-p=0", "--pause", "--no-pause"):
        made = out(root, "commit", flag, cid, "snap:x").strip()
        assert made.startswith("sha256:"), flag
    bad = lam(root, "commit", "--pause=maybe", cid, "snap:y")
    assert bad.returncode == 2 and "maybe" in bad.stderr
    assert out(root, "inspect", "--format", "{{.State.Status}}", cid) == "running\n"


def test_container_config_has_the_images_labels_and_ports(root: Path) -> None:
    made = out(root, "run", "-d", "busybox", "true").strip()
    out(root, "commit", "-c", "LABEL k=v other=o", "-c", "EXPOSE 80", made, "labelled")
    cid = out(root, "run", "-d", "labelled", "sleep", "30").strip()
    fmt = '{{index .Config.Labels "k"}}|{{json .Config.ExposedPorts}}|{{json .Config.Labels}}'
    assert out(root, "inspect", "--format", fmt, cid) == ('v|{"80/tcp":{}}|{"k":"v","other":"o"}\n')
    # an image without labels: an empty map, as moby's merge leaves it
    plain = out(root, "run", "-d", "busybox", "sleep", "30").strip()
    assert out(root, "inspect", "--format", "{{json .Config.Labels}}", plain) == "{}\n"
    assert "ExposedPorts" not in json.loads(out(root, "inspect", plain))[0]["Config"]


def test_inspect_size(root: Path) -> None:
    cid = out(root, "run", "-d", "busybox", "sh", "-c",
              "head -c 300000 /dev/zero > /tmp/b && mv /tmp/b /blob; sleep 30")  # fmt: skip
    cid = cid.strip()
    for _ in range(100):
        if "/blob" in out(root, "diff", cid):
            break
    sizes = out(root, "inspect", "-s", "--format", "{{.SizeRw}} {{.SizeRootFs}}", cid).split()
    rw, rootfs = int(sizes[0]), int(sizes[1])
    assert 300000 <= rw < 400000
    assert rootfs > rw + 1_000_000  # busybox's layer under it
    [doc] = json.loads(out(root, "inspect", "--size", cid))
    assert doc["SizeRw"] == rw and doc["SizeRootFs"] == rootfs
    assert "SizeRw" not in json.loads(out(root, "inspect", cid))[0]


def test_ps_last_and_latest(root: Path) -> None:
    first = out(root, "run", "-d", "--name", "first", "busybox", "true").strip()
    second = out(root, "run", "-d", "--name", "second", "busybox", "sleep", "30").strip()
    third = out(root, "run", "--name", "third", "busybox", "true")
    assert third == ""
    lam(root, "wait", first)
    # -n and -l look at every state, newest first
    assert out(root, "ps", "-l", "--format", "{{.Names}}") == "third\n"
    assert out(root, "ps", "-n", "2", "--format", "{{.Names}}") == "third\nsecond\n"
    assert out(root, "ps", "-n", "5", "-q", "--no-trunc") == "\n".join(
        [out(root, "inspect", "--format", "{{.Id}}", "third").strip(), second, first, ""]
    )
    assert out(root, "ps", "--last", "1", "-q") == out(root, "ps", "--latest", "-q")
    # without them, only running ones
    assert out(root, "ps", "--format", "{{.Names}}") == "second\n"


def test_ps_format_fields_docker_has(root: Path, tmp_path: Path) -> None:
    made = out(root, "run", "-d", "busybox", "true").strip()
    out(root, "commit", "-c", "LABEL b=2 a=1", made, "labelled")
    vol = tmp_path / "a-rather-long-directory-name"
    out(root, "run", "-d", "--name", "web", "-v", f"{vol}:/data", "--network", "none",
        "labelled", "sleep", "30")  # fmt: skip
    fmt = "{{.Names}}|{{.Labels}}|{{.Mounts}}|{{.Networks}}|{{.LocalVolumes}}"
    assert out(root, "ps", "--format", fmt) == f"web|a=1,b=2|{str(vol)[:14]}…|none|0\n"
    assert out(root, "ps", "--no-trunc", "--format", "{{.Mounts}}") == f"{vol}\n"
    # {{json .}} is a Go map: its keys sorted
    row = out(root, "ps", "--format", "{{json .}}")
    keys = list(json.loads(row))
    assert keys == sorted(keys) and {"Labels", "Mounts", "Networks", "Size"} <= set(keys)
    assert json.loads(row)["Size"] == "0B"
    # a format that shows .Size computes it, as docker-cli asks for sizes then
    assert out(root, "ps", "--format", "{{.Size}}").startswith("0B (virtual ")


def test_stop_kill_rm_act_on_all_at_once_and_print_in_order(root: Path, tmp_path: Path) -> None:
    # docker-cli's stop, kill and rm run in parallel: the second container gets its stop
    # signal before the first one's timeout ran out (one after the other, only after it).
    shared = tmp_path / "shared"
    names = ("one", "two", "three")
    for name in names:
        script = f"trap 'touch /s/{name}' TERM; touch /s/ready-{name}; while :; do sleep 0.1; done"
        out(root, "run", "-d", "--name", name, "-v", f"{shared}:/s", "busybox", "sh", "-c", script)
    for _ in range(100):
        if all((shared / f"ready-{n}").exists() for n in names):
            break
        subprocess.run(["sleep", "0.05"], check=True)
    stopped = lam(root, "stop", "-t", "3", "one", "nope", "two", "three")
    assert stopped.returncode == 1
    assert stopped.stdout == "one\ntwo\nthree\n"
    assert stopped.stderr.count("No such container: nope") == 1
    fmt = "{{.State.FinishedAt}} {{.State.ExitCode}}"
    finished_one = out(root, "inspect", "--format", fmt, "one").split()
    assert finished_one[1] == "137"  # it ignored SIGTERM: killed after the timeout
    one_killed = datetime.fromisoformat(finished_one[0][:26].rstrip("Z") + "+00:00")
    for name in ("two", "three"):
        got_term = datetime.fromtimestamp((shared / name).stat().st_mtime).astimezone()
        assert got_term < one_killed, name
    # kill: each one signalled, the stopped one an error naming it
    for name in ("k1", "k2"):
        out(root, "run", "-d", "--name", name, "busybox", "sleep", "30")
    killed = lam(root, "kill", "k1", "one", "k2")
    assert killed.returncode == 1 and killed.stdout == "k1\nk2\n"
    assert "one" in killed.stderr and "is not running" in killed.stderr
    assert out(root, "wait", "k1", "k2") == "137\n137\n"
    removed = lam(root, "rm", "one", "two", "gone", "three", "k1", "k2")
    assert removed.returncode == 1 and removed.stdout == "one\ntwo\nthree\nk1\nk2\n"
    assert "No such container: gone" in removed.stderr
    assert out(root, "ps", "-aq") == ""


def test_restart_and_stop_flags_docker_has(root: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    out(root, "run", "-d", "--name", "svc", "-v", f"{shared}:/s", "busybox", "sh", "-c",
        "trap 'echo usr1 >> /s/log; exit 0' USR1; while :; do sleep 0.1; done")  # fmt: skip
    assert out(root, "restart", "-s", "USR1", "--timeout", "5", "svc") == "svc\n"
    assert (shared / "log").read_text() == "usr1\n"
    assert out(root, "inspect", "--format", "{{.State.Status}}", "svc") == "running\n"
    assert out(root, "restart", "--signal", "SIGUSR1", "-t", "5", "svc") == "svc\n"
    assert (shared / "log").read_text() == "usr1\nusr1\n"
    bad = lam(root, "restart", "-s", "NOPE", "svc")
    assert bad.returncode == 1 and "Invalid signal: NOPE" in bad.stderr
    assert out(root, "stop", "--timeout", "0", "svc") == "svc\n"
    # rm -v (anonymous volumes: lamina makes none, a bind's host directory stays)
    assert out(root, "rm", "-v", "svc") == "svc\n"
    assert (shared / "log").exists()
    assert out(root, "ps", "-aq") == ""


def test_ps_filter(root: Path, tmp_path: Path) -> None:
    made = out(root, "run", "-d", "--name", "seed", "busybox", "touch", "/front").strip()
    out(root, "wait", made)
    out(root, "commit", "-c", "LABEL tier=front", made, "front")
    assert lam(root, "run", "--name", "old", "busybox", "sh", "-c", "exit 3").returncode == 3
    out(root, "run", "-d", "--name", "web", "-v", f"{tmp_path / 'data'}:/data", "front",
        "sleep", "30")  # fmt: skip
    out(root, "run", "-d", "--name", "db", "--network", "none", "busybox", "sleep", "30")
    lam(root, "run", "--name", "broken", "busybox", "no-such-command")

    def names(*filters: str) -> list[str]:
        args = [a for f in filters for a in ("-f", f)]
        return out(root, "ps", *args, "--format", "{{.Names}}").split()

    assert names() == ["db", "web"]
    assert names("status=exited") == ["old", "seed"]  # status= looks at stopped ones
    assert names("status=created") == ["broken"]
    assert names("exited=3") == []  # exited= does not, without -a
    assert out(root, "ps", "-a", "-f", "exited=3", "--format", "{{.Names}}") == "old\n"
    assert names("name=^web$", "name=db") == ["db", "web"]
    assert names("label=tier=front") == ["web"]
    assert names("volume=/data") == ["web"]
    assert names("network=none") == ["db"]
    assert out(root, "ps", "-a", "-f", "ancestor=front", "--format", "{{.Names}}") == "web\n"
    everything = out(root, "ps", "-aq").split()
    assert out(root, "ps", "-a", "-f", "ancestor=busybox", "-q").split() == everything
    assert out(root, "ps", "-a", "-f", "ancestor=no-such", "-q") == ""
    assert out(root, "ps", "-a", "-f", "before=web", "--format", "{{.Names}}") == "old\nseed\n"
    assert out(root, "ps", "-a", "-f", "since=web", "--format", "{{.Names}}") == "broken\ndb\n"
    assert out(root, "ps", "-a", "-f", "id=" + everything[0], "-q") == everything[0] + "\n"
    for bad, message in (("colour=red", "invalid filter 'colour'"),
                         ("status=up", "invalid filter 'status=up'"),
                         ("exited=x", "invalid filter 'exited=x'"),
                         ("name", "bad format of filter"),
                         ("before=nope", "No such container: nope")):  # fmt: skip
        done = lam(root, "ps", "-f", bad)
        assert done.returncode == 1 and message in done.stderr and done.stdout == "", bad


def test_logs_tail_counts_an_unfinished_last_line(root: Path) -> None:
    # moby's json-file keeps output without a final newline as a message of its own: it is
    # the last line `--tail 1` shows, and `--tail 0` shows nothing.
    assert lam(root, "run", "--name", "pp", "busybox", "sh", "-c",
               "echo one; echo two; printf three").returncode == 0  # fmt: skip
    assert out(root, "logs", "pp") == "one\ntwo\nthree"
    assert out(root, "logs", "--tail", "1", "pp") == "three"
    assert out(root, "logs", "--tail", "2", "pp") == "two\nthree"
    assert out(root, "logs", "--tail", "0", "pp") == ""
    assert out(root, "logs", "-n", "all", "pp") == "one\ntwo\nthree"


def test_logs_since_until_and_details(root: Path) -> None:
    cid = out(root, "run", "-d", "--name", "clock", "busybox", "sh", "-c",
              "echo early; sleep 2; echo late; sleep 30").strip()  # fmt: skip
    for _ in range(100):
        if "late" in out(root, "logs", cid):
            break
        subprocess.run(["sleep", "0.1"], check=True)
    stamped = out(root, "logs", "-t", cid).splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["early", "late"]
    late_at = stamped[1].split(" ")[0]
    # a time given as logs -t prints it: included, as moby's (since and until both)
    assert out(root, "logs", "--since", late_at, cid) == "late\n"
    assert out(root, "logs", "--until", late_at, cid) == "early\nlate\n"
    early = datetime.fromisoformat(stamped[0].split(" ")[0][:26].rstrip("Z") + "+00:00")
    unix = f"{early.timestamp() + 1:.3f}"  # Unix seconds[.fraction]
    assert out(root, "logs", "--since", unix, cid) == "late\n"
    assert out(root, "logs", "--until", unix, cid) == "early\n"
    # a Go duration: that long ago
    assert out(root, "logs", "--since", "1h", cid) == "early\nlate\n"
    assert out(root, "logs", "--until", "1h", cid) == ""
    # a date with an offset; moby applies the tail first, then the window
    assert out(root, "logs", "--since", "2000-01-01T00:00:00+02:00", "--tail", "1", cid) == (
        "late\n"
    )
    assert out(root, "logs", "--details", cid) == "early\nlate\n"
    for bad in ("yesterday", "2026-13-01"):
        done = lam(root, "logs", "--since", bad, cid)
        assert done.returncode == 1 and bad in done.stderr and "Traceback" not in done.stderr


def test_exec_env_file(root: Path, tmp_path: Path) -> None:
    # docker exec --env-file: the container's environment, the files in order, then -e
    cid = out(root, "run", "-d", "-e", "A=run", "-e", "C=run", "busybox", "sleep", "30").strip()
    first, second = tmp_path / "one.env", tmp_path / "two.env"
    first.write_text("# comment\nA=one\nB=one\n\n")
    second.write_text("B=two\n")
    env = out(root, "exec", "--env-file", str(first), "--env-file", str(second), "-e", "D=flag",
              cid, "env").splitlines()  # fmt: skip
    assert {"A=one", "B=two", "C=run", "D=flag"} <= set(env)
    assert out(root, "exec", "--env-file", str(first), "-e", "A=flag", cid, "env").count("A=") == 1
    assert "A=flag" in out(root, "exec", "--env-file", str(first), "-e", "A=flag", cid, "env")
    missing = lam(root, "exec", "--env-file", str(tmp_path / "nope"), cid, "true")
    assert missing.returncode == 1 and "nope" in missing.stderr
    bad = tmp_path / "bad.env"
    bad.write_text("KEY WITH SPACE=1\n")
    refused = lam(root, "exec", "--env-file", str(bad), cid, "true")
    assert refused.returncode == 1 and "whitespace" in refused.stderr


def test_container_prune_filters(root: Path) -> None:
    made = out(root, "run", "-d", "busybox", "touch", "/x").strip()
    out(root, "wait", made)
    out(root, "commit", "-c", "LABEL keep=yes", made, "kept")
    out(root, "rm", made)
    for name, image in (("old-kept", "kept"), ("old-plain", "busybox")):
        out(root, "run", "--name", name, image, "true")
    stamp = out(root, "inspect", "--format", "{{.Created}}", "old-plain").strip()
    subprocess.run(["sleep", "1.1"], check=True)
    out(root, "run", "--name", "new-plain", "busybox", "true")
    running = out(root, "run", "-d", "--name", "up", "busybox", "sleep", "30").strip()

    def names() -> list[str]:
        return sorted(out(root, "ps", "-a", "--format", "{{.Names}}").split())

    def pruned(*filters: str) -> list[str]:
        args = [a for f in filters for a in ("--filter", f)]
        text = out(root, "container", "prune", "-f", *args)
        return [line for line in text.splitlines() if len(line) == 64]

    plain_id = out(root, "inspect", "--format", "{{.Id}}", "old-plain").strip()
    assert pruned("until=" + stamp, "label!=keep") == [plain_id]
    assert names() == ["new-plain", "old-kept", "up"]
    assert len(pruned("label=keep=yes")) == 1
    assert names() == ["new-plain", "up"]
    for bad, message in (("colour=red", "invalid filter 'colour'"),
                         ("until=yesterday", "yesterday"),
                         ("until", "bad format of filter")):  # fmt: skip
        done = lam(root, "container", "prune", "-f", "--filter", bad)
        assert done.returncode == 1 and message in done.stderr and done.stdout == "", bad
    assert names() == ["new-plain", "up"]
    assert len(pruned()) == 1
    assert out(root, "ps", "-aq", "--no-trunc") == running + "\n"


def test_inspect_missing_field_is_gos_map_error(root: Path) -> None:
    # docker-cli's inspect runs a template it cannot run over the typed object again over
    # the raw JSON with missingkey=error: Go's message is about a map's key.
    cid = out(root, "run", "-d", "busybox", "sleep", "30").strip()
    for ref, fmt, shown in ((cid, "{{.State.Nope}}", ".State.Nope"),
                            ("busybox", "{{.Nope}}", ".Nope")):  # fmt: skip
        done = lam(root, "inspect", "--format", fmt, ref)
        assert done.returncode == 1 and done.stdout == ""
        first = done.stderr.splitlines()[0]
        assert first == (
            f'Error: template parsing error: template: :1:2: executing "" at <{shown}>: '
            'map has no entry for key "Nope"'
        )


def test_a_full_id_wins_over_the_same_text_as_a_name(root: Path) -> None:
    # moby looks a reference up as a full ID, then a name, then an ID prefix; `/NAME` is
    # only ever a name. A name that is another container's full ID broke every lookup of
    # that container (its exit was never recorded: `running` for ever).
    first = out(root, "run", "-d", "busybox", "true").strip()
    assert out(root, "wait", first) == "0\n"
    second = out(root, "run", "-d", "--name", first, "busybox", "sleep", "30").strip()
    fmt = "{{.Id}} {{.State.Status}}"
    assert out(root, "inspect", "--format", fmt, first) == f"{first} exited\n"
    assert out(root, "inspect", "--format", fmt, "/" + first) == f"{second} running\n"
    assert out(root, "inspect", "--format", "{{.Id}}", first[:12]) == first + "\n"
    gone = lam(root, "inspect", "/" + second[:12])  # a prefix with a slash is a name
    assert gone.returncode == 1 and "No such" in gone.stderr
    assert out(root, "stop", "-t", "0", "/" + first) == "/" + first + "\n"
    assert out(root, "rm", first) == first + "\n"
    assert out(root, "ps", "-aq", "--no-trunc") == second + "\n"


def test_start_of_several_names_those_that_failed_last(root: Path) -> None:
    # docker-cli's start: each error, each name started, then one line naming the failures
    ok = out(root, "run", "-d", "--name", "fine", "busybox", "true").strip()
    out(root, "wait", ok)
    done = lam(root, "start", "nope", "fine", "gone")
    assert done.returncode == 1 and done.stdout == "fine\n"
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == [
        "Error: No such container: nope",
        "Error: No such container: gone",
        "Error: failed to start containers: nope, gone",
    ]
