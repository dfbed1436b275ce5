"""`lamina run`'s own cost: the modules a real `lamina run --rm IMAGE true` loads, and the
bundle it writes through the light host (`RunHost`) against the whole API's (`Lamina`).

Issue 10's goal (the whole command within twice runc's own run) leaves a few milliseconds
for everything lamina does besides runc; loading `typing`, `pathlib` (with `urllib.parse`,
`ipaddress` and `re`), `json`, `enum` or `sqlite3`'s `datetime` took more than that. The
guard below runs the real command, so a new import anywhere on the path fails it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from busybox_rootfs import make_busybox_rootfs

from lamina._bundle import run_path_modules
from lamina.api import Lamina, RunHost, RunOptions

LAMINA = str(Path(sys.executable).with_name("lamina"))

# Each costs a millisecond or more of every run (measured with `-X importtime`), and the run
# path needs none of them (see lamina._lightjson, lamina._paths, lamina._frozen,
# lamina._lightctx, lamina._libc, lamina._lightsqlite; `site` and what its `.pth` files load:
# lamina.cli._script).
HEAVY = (
    "typing", "pathlib", "re", "enum", "json", "datetime", "sqlite3", "dataclasses",
    "urllib", "urllib.parse", "ipaddress", "fnmatch", "importlib.util", "threading", "copy",
    "weakref", "warnings", "inspect", "subprocess", "selectors", "signal", "shutil",
    "tempfile", "click", "rich", "hashlib", "lamina.api._lamina", "lamina.store._store",
    "site", "_distutils_hack", "sitecustomize", "contextlib", "collections", "functools",
    "operator", "itertools", "types", "keyword", "reprlib", "array", "ctypes", "struct",
    "lamina.snapshots._spread", "lamina.layers._inodeflags", "lamina.layers._epoch",
    "lamina.api._container_commands",
)  # fmt: skip


def _imported(stderr: str) -> set[str]:
    """The modules `-X importtime` (PYTHONPROFILEIMPORTTIME) reports a process loading."""
    return {line.rpartition("|")[2].strip() for line in stderr.splitlines()
            if line.startswith("import time:") and "|" in line}  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("runpath")
    rootfs = make_busybox_rootfs(base / "rootfs")
    subprocess.run([LAMINA, "--root", str(base / "root"), "import", str(rootfs), "bb"],
                   check=True, capture_output=True)  # fmt: skip
    return base / "root"


def test_a_real_run_loads_none_of_the_heavy_modules(root: Path) -> None:
    # The installed command itself (`make venv`'s launcher: Python without `site`), as a
    # user runs it; Python reports each module it loads, to the end (an os._exit).
    first_line = Path(LAMINA).read_text().split("\n", 1)[0]
    assert first_line.endswith(" -S"), "`make venv` writes this launcher: lamina.cli._script"
    env = {k: v for k, v in os.environ.items() if k != "LAMINA_ROOT"}
    done = subprocess.run(
        [LAMINA, "--root", str(root), "run", "--rm", "bb", "sh", "-c", "exit 3"],
        capture_output=True, text=True, env={**env, "PYTHONPROFILEIMPORTTIME": "1"}, timeout=60,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    modules = _imported(done.stderr)
    assert "lamina.api._containers" in modules  # the command did run, and was traced
    assert sorted(m for m in HEAVY if m in modules) == []
    assert os.listdir(root / "containers") == []  # and --rm removed it
    # Every lamina module it loads is in the bundle `make venv` compiles (lamina._bundle:
    # one file instead of forty), but the bundle's loader itself.
    ours = {m for m in modules if m.split(".")[0] == "lamina"}
    assert sorted(ours - set(run_path_modules()) - {"lamina._bundle"}) == []


def test_every_other_command_loads_site_and_works(root: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LAMINA_ROOT"}

    def lamina(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([LAMINA, "--root", str(root), *args], capture_output=True,
                              text=True, env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
                              timeout=60)  # fmt: skip
        assert done.returncode == code, done.stderr
        return done

    assert "0.1.0" in lamina("--version").stdout
    images = lamina("images")
    assert "bb" in images.stdout and {"site", "click"} <= _imported(images.stderr)
    assert lamina("inspect", "--format", "{{.Os}}", "bb").stdout == "linux\n"
    cid = lamina("run", "-d", "bb", "true").stdout.strip()
    assert lamina("wait", cid).stdout == "0\n"
    assert cid in lamina("ps", "-aq", "--no-trunc").stdout
    lamina("rm", cid)
    # A run that fails says so through rich, which only site-packages has: loaded then.
    missing = lamina("run", "--rm", "no-such-image", code=125)
    assert "no such image: no-such-image" in missing.stderr
    assert {"site", "rich"} <= _imported(missing.stderr)
    # A run line the fast path leaves to click (an unknown option): click's error.
    assert "No such option" in lamina("run", "--no-such-option", "bb", code=125).stderr
    # `python -m lamina` (with `site`, as Python starts it) is the same command.
    done = subprocess.run([sys.executable, "-m", "lamina", "--root", str(root), "images", "-q"],
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip(), done.stderr


def _bundle(host: Lamina | RunHost, opts: RunOptions) -> dict[str, object]:
    cid, _ = host.containers.run(opts)
    d = Path(host.root, "containers", cid)
    config = (d / "config.json").read_text()
    files = {n: (d / n).read_text() for n in ("hosts", "hostname", "resolv.conf")}
    # (`rm` is the whole API's: `lamina run` loads only what runs a container.)
    (host if isinstance(host, Lamina) else host.full()).containers.remove(cid, force=True)
    # The ID (and the hostname made of it) is the one thing two containers differ in.
    text = json.dumps([config, files]).replace(cid, "<id>").replace(cid[:12], "<short>")
    value: dict[str, object] = json.loads(text)[1]
    value["config.json"] = json.loads(json.loads(text)[0])
    return value


def test_the_light_host_writes_the_bundle_the_whole_api_writes(root: Path, tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    env_file = tmp_path / "env"
    env_file.write_text("FROM_FILE=1\n")
    options = dict(
        command=["sh", "-c", "exit 0"], detach=True, env=["A=1"], env_files=[env_file],
        workdir="/work", user="1000:1000", volumes=[f"{volume}:/data:ro"], read_only=True,
        init=True, stop_signal="SIGINT", security_opts=["no-new-privileges"],
    )  # fmt: skip
    light = RunHost.open(root)
    assert light is not None
    try:
        via_light = _bundle(light, RunOptions("bb", **options))  # type: ignore[arg-type]
    finally:
        light.store.close()
    full = Lamina(root)
    try:
        via_full = _bundle(full, RunOptions("bb", **options))  # type: ignore[arg-type]
    finally:
        full.store.close()
    assert via_light == via_full
    process = via_light["config.json"]["process"]  # type: ignore[index]
    assert process["args"][:2] == ["/sbin/docker-init", "--"]  # the options took effect
    assert "FROM_FILE=1" in process["env"] and "A=1" in process["env"]


def test_a_container_that_no_record_names_is_removed_by_the_next_command(root: Path) -> None:
    # `run --rm` commits its record without syncing it (it lives as long as the command): a
    # power cut may lose the record while the container's directory and runc state stay.
    lam = Lamina(root)
    try:
        # (Created, not run: a monitor's fold after the exit would clean up before `ps`.)
        cid = lam.containers.create(RunOptions("bb", ["true"])).id
        assert (root / "containers" / cid / "upper").is_dir()
        lam.store.remove_container(cid)  # the record lost, its directory left
        stray = "ab" * 32
        (root / "runc" / stray).mkdir(parents=True)  # runc state of a container no record names
        (root / "runc" / stray / "state.json").write_text("{")
        kept = Path(root, "containers", "not-a-container-id")
        kept.mkdir()
    finally:
        lam.store.close()
    done = subprocess.run([LAMINA, "--root", str(root), "ps", "-aq"], capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert done.stdout == ""
    assert f"removed container {cid[:12]}: no record names it" in done.stderr
    assert f"removed container {stray[:12]}: no record names it" in done.stderr
    assert not (root / "containers" / cid).exists()
    assert not (root / "runc" / stray).exists()
    assert kept.is_dir()  # only what has a container's name goes
    kept.rmdir()
    again = subprocess.run([LAMINA, "--root", str(root), "ps", "-aq"], capture_output=True,
                           text=True, check=True)  # fmt: skip
    assert again.stderr == ""
