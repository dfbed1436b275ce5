"""Entry point: global options, error rendering and exit codes (1 = error, 2 = usage)."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.text import Text

from lamina.errors import LaminaError

if TYPE_CHECKING:
    from lamina.api import Lamina

_stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class _Context:
    def __init__(self, root: Path | None, debug: bool) -> None:
        self.root = root
        self.debug = debug
        self._api: Lamina | None = None

    def api(self) -> Lamina:
        # Imported here so `lamina --help` and usage errors stay fast.
        from lamina.api import Lamina

        if self._api is None:
            self._api = Lamina(self.root)
        return self._api


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="LAMINA_ROOT",
    help="Store directory (default /var/lib/lamina for root, $XDG_DATA_HOME/lamina otherwise).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="lamina")
@click.pass_context
def cli(ctx: click.Context, root: Path | None, debug: bool) -> None:
    """lamina: build, store, run and ship container images as stacks of layers."""
    ctx.obj = _Context(root, debug)


def main() -> None:
    """Run the CLI: a LaminaError is one line (and a hint) on stderr and exit status 1."""
    from lamina.cli import _commands  # noqa: F401  (registers the commands)

    debug = "--debug" in sys.argv[1:] or os.environ.get("LAMINA_DEBUG") == "1"
    try:
        cli.main(standalone_mode=False, prog_name="lamina")
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _stderr.print("Aborted.")
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except LaminaError as exc:
        if debug:
            traceback.print_exc()
        _stderr.print(Text.assemble(("Error: ", "bold red"), exc.message))
        if exc.hint:
            _stderr.print(Text.assemble(("hint: ", "dim"), exc.hint))
        sys.exit(1)
    except BrokenPipeError:
        sys.exit(1)
