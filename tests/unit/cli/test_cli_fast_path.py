"""The CLI's fast path: a container command loads only the container commands' module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lamina.cli._main import CONTAINER_COMMANDS, command_name


def test_command_name_skips_global_options() -> None:
    assert command_name(["--root", "/x", "--debug", "run", "--rm", "img"]) == "run"
    assert command_name(["--debug", "ps", "-a"]) == "ps"
    assert command_name(["--root", "/x"]) is None
    assert command_name(["--", "images"]) == "images"
    assert command_name([]) is None


def test_container_commands_are_all_defined_by_the_container_module() -> None:
    # In a fresh interpreter: only _container_cmds registered, every fast-path name exists.
    code = (
        "from lamina.cli._main import cli, CONTAINER_COMMANDS\n"
        "from lamina.cli import _container_cmds\n"
        "import sys\n"
        "missing = sorted(CONTAINER_COMMANDS - set(cli.commands))\n"
        "heavy = sorted(m for m in ('lamina.builder', 'lamina.cli._build_cmd',\n"
        "    'lamina.cli._image_cmds', 'lamina.cli._template', 'rich', 'httpx')\n"
        "    if m in sys.modules)\n"
        "print(missing, heavy)\n"
    )
    assert _fresh(code) == "[] []"
    assert "run" in CONTAINER_COMMANDS


def test_the_entry_point_loads_no_click_for_a_run_line() -> None:
    code = (
        "import sys\n"
        "from lamina.cli import main\n"
        "from lamina.cli._launch import parse_global, parse_run_args\n"
        "parse_run_args(parse_global(['run', '--rm', '-e', 'A=1', 'img', 'true'])[2])\n"
        "print(sorted(m for m in ('click', 'rich', 'lamina.api', 'lamina.cli._main')\n"
        "    if m in sys.modules))\n"
    )
    assert _fresh(code) == "[]"


def test_opening_the_api_loads_no_transport_or_compressor(tmp_path: Path) -> None:
    # Every command opens a Lamina; the lazy-layer fetcher must not make them all pay for
    # lamina.transport, zstandard and isal (a `run` never needs them).
    code = (
        "import sys\n"
        "from lamina.api import Lamina\n"
        f"Lamina({str(tmp_path / 'root')!r})\n"
        "print(sorted(m for m in ('lamina.transport', 'zstandard', 'isal')\n"
        "    if m in sys.modules))\n"
    )
    assert _fresh(code) == "[]"


def _fresh(code: str) -> str:
    """What `code` prints in a fresh interpreter (one that has imported nothing yet)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


# What `lamina run` must not load: the whole store and API (`Lamina`, the content store's
# writers, gc, the file index, the record dataclasses), the OCI models it does not read,
# click and rich, and the standard library's dataclass and `secrets` machinery; nor, since
# a foreground `run --rm` supervises its container itself, what starting processes and
# waiting on several fds would load (`subprocess`, `selectors`), `shutil` (with the
# compression modules it imports) or `signal`'s enums. Each costs milliseconds of every
# run, and runc's own run takes about 25 ms (issue 10's goal: the whole command within
# twice that). The run path's modules: see `lamina.api._container_host`.
RUN_PATH_MUST_NOT_LOAD = (
    "click", "rich", "lamina.cli._main", "lamina.api._lamina", "lamina.store._store",
    "lamina.store._records", "lamina.store._content", "lamina.store._gc",
    "lamina.store._fileindex", "lamina.store._images", "lamina.oci._manifest",
    "lamina.transport", "lamina.builder", "dataclasses", "inspect", "secrets", "tempfile",
    "subprocess", "selectors", "shutil", "bz2", "lzma", "signal",
    "lamina.api._container_commands",
)  # fmt: skip


def test_a_run_line_loads_only_the_run_path(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _fresh(f"from lamina.api import Lamina\nLamina({str(root)!r}).store.close()\n")  # a root
    code = (
        "import sys\n"
        "from lamina.cli._launch import Context, parse_global, parse_run_args\n"
        f"front = parse_global(['--root', {str(root)!r}, 'run', '--rm', 'img', 'true'])\n"
        "params = parse_run_args(front[2])\n"
        "host = Context(front[0], front[1]).host()\n"
        "from lamina.api import Attach, ContainerExit, RunHost, RunOptions\n"
        "assert isinstance(host, RunHost), host\n"
        "RunOptions(params['image'], params['command'], remove=True)\n"
        "[host.containers.refresh(r) for r in host.store.list_containers()]\n"
        "import lamina.oci\n"
        "lamina.oci.ImageConfig.from_bytes(b'{}')\n"
        "lamina.oci.parse_reference('img')\n"
        "from lamina.runtime import bundle_config, spawn_monitor, resolve_user, write_bundle\n"
        "from lamina.runtime import parse_signal, supervise\n"
        "parse_signal('SIGTERM')\n"
        "from lamina.snapshots import find_stubs, mount, mounted, overlay_mount, unmount\n"
        f"print(sorted(m for m in {RUN_PATH_MUST_NOT_LOAD!r} if m in sys.modules))\n"
    )
    assert _fresh(code) == "[]"


def test_a_root_that_needs_the_whole_store_opens_it(tmp_path: Path) -> None:
    # No store there yet: `run` opens the whole API (which creates it and says what is
    # missing), never a half-initialised one.
    code = (
        "from lamina.cli._launch import Context\n"
        f"print(type(Context(__import__('pathlib').Path({str(tmp_path / 'new')!r}), False)"
        ".host()).__name__)\n"
    )
    assert _fresh(code) == "Lamina"
