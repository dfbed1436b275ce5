"""What a pull or push loads at start: httpx without its own command line."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "lamina.transport._registry_source",  # a pull's first httpx import
        "lamina.transport._registry_sink",  # a push's
        "lamina.transport._registry_client",
        "lamina.api._registry",
    ],
)
def test_the_registry_transport_loads_httpx_without_its_command_line(module: str) -> None:
    code = (
        "import sys\n"
        f"import {module}\n"
        "import httpx\n"
        "assert httpx.Client and httpx.Response(200).status_code == 200\n"
        "print(sorted(m for m in ('httpx._main', 'pygments', 'rich.console', 'rich.syntax')\n"
        "    if sys.modules.get(m) is not None))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)  # fmt: skip
    assert done.stdout.strip() == "[]"
