"""What a pull or push loads at start: httpx without its own command line."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(code: str) -> str:
    """What `code` prints in a fresh interpreter (nothing loaded before it)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return done.stdout


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
    assert _run(code).strip() == "[]"


def test_a_pull_starts_without_zstandard_and_reads_zstd_layers_after() -> None:
    """zstandard is imported when a zstd layer comes, not by httpx or the layer reader
    at start; hiding it from httpx's import leaves it importable for lamina."""
    code = (
        "import sys, io\n"
        "import lamina.api._registry, lamina.transport._http, lamina.layers\n"
        "print('zstandard' in sys.modules)\n"
        "import zstandard\n"
        "from lamina.layers import open_layer_reader\n"
        "blob = zstandard.ZstdCompressor().compress(b'tar bytes')\n"
        "print(open_layer_reader(io.BytesIO(blob)).read())\n"
    )
    assert _run(code).split() == ["False", "b'tar", "bytes'"]


def test_the_registry_client_reads_responses_a_mebibyte_at_a_time() -> None:
    """httpcore's 64 KiB reads cost a pull a quarter of its time (bench_registry)."""
    code = (
        "import lamina.transport._registry_source\n"
        "import httpcore\n"
        "print(httpcore.HTTP11Connection.READ_NUM_BYTES)\n"
    )
    assert int(_run(code)) >= 1 << 20
