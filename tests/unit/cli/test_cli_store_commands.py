"""A store command (`save`, `load`, …) loads only the module that defines it: each other
command module is files a cold `lamina save` would read from disk for nothing."""

from __future__ import annotations

import subprocess
import sys


def test_store_commands_are_all_defined_by_the_commands_module() -> None:
    code = (
        "import sys\n"
        "from lamina.cli._main import cli, register_commands, STORE_COMMANDS\n"
        "ends_now = register_commands(['--root', '/x', 'save', '-o', 'out.tar', 'img'])\n"
        "missing = sorted(STORE_COMMANDS - set(cli.commands))\n"
        "others = sorted(m for m in ('lamina.cli._image_cmds', 'lamina.cli._build_cmd',\n"
        "    'lamina.cli._container_cmds', 'lamina.cli._template', 'lamina.cli._analyze_cmd',\n"
        "    'lamina.cli._registry_cmd', 'lamina.builder') if m in sys.modules)\n"
        "print(ends_now, missing, others)\n"
    )
    assert _fresh(code) == "True [] []"


def test_only_save_ends_without_the_interpreters_teardown_or_collector() -> None:
    code = (
        "import gc\n"
        "from lamina.cli._main import register_commands\n"
        "loads = (register_commands(['load', '-i', 'x.tar']), gc.isenabled())\n"
        "saves = (register_commands(['--root', '/r', 'save', 'img']), gc.isenabled())\n"
        "print(loads, saves)\n"
    )
    assert _fresh(code) == "(False, True) (True, False)"


def _fresh(code: str) -> str:
    """What ``code`` prints in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return done.stdout.strip()
