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
