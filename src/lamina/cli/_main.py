"""Entry point: global options, error rendering and exit codes (1 = error, 2 = usage)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from lamina.errors import LaminaError

if TYPE_CHECKING:
    from lamina.api import Lamina


def _print_error(message: str, hint: str | None) -> None:
    # rich is imported only when there is something to render: start-up time is a
    # cost every command pays, and a cached build is measured in tens of milliseconds.
    from rich.console import Console
    from rich.text import Text

    stderr = Console(stderr=True, highlight=False, soft_wrap=True)
    stderr.print(Text.assemble(("Error: ", "bold red"), message))
    if hint:
        stderr.print(Text.assemble(("hint: ", "dim"), hint))


class _Context:
    def __init__(self, root: Path | None, debug: bool) -> None:
        self.root = root
        self.debug = debug
        self._api: Lamina | None = None

    def api(self) -> Lamina:
        # Imported here so `lamina --help` and usage errors stay fast.
        from lamina.api import Lamina

        if self._api is None:
            self._api = Lamina(self.root, progress=_migration_progress)
            self._api.lazy_layers.notice = _fetch_notice
            # What dead lamina processes left on this root goes first, one line each.
            for line in self._api.recover():
                print(f"lamina: {line}", file=sys.stderr)
        return self._api


def _fetch_notice(line: str) -> None:
    """A lazy layer (a registry holds it) is being fetched because something needs it."""
    print(f"lamina: {line}", file=sys.stderr, flush=True)


def _migration_progress(done: int, total: int, diff_id: str) -> None:
    """A store from before the lean model is migrated once, on first use: say so."""
    if done < total:
        print(f"\rmigrating the store: layer {done + 1}/{total} {diff_id[7:19]}",
              end="", file=sys.stderr, flush=True)  # fmt: skip
    else:
        print(f"\rmigrated the store: {total} layers unpacked{' ' * 20}", file=sys.stderr)


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


# Commands that `_container_cmds` alone defines: for these, main() imports no other command
# module (the builder, the image listings, the template engine), which is most of what a
# `lamina run --rm IMAGE true` would otherwise spend before it starts anything.
CONTAINER_COMMANDS = frozenset({"run", "ps", "logs", "stop", "kill", "start", "wait"})
# Global options that take a value (the first other word is the command's name).
_VALUED_GLOBALS = frozenset({"--root"})


def command_name(argv: list[str]) -> str | None:
    """The subcommand `argv` (without the program name) invokes; None when there is none."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return argv[i + 1] if i + 1 < len(argv) else None
        if not word.startswith("-"):
            return word
        i += 2 if word in _VALUED_GLOBALS else 1
    return None


def register_commands(argv: list[str]) -> bool:
    """Import the command modules (they register themselves on `cli`): only the container
    commands' module when `argv` runs one of them (then True), only `_analyze_cmd` for
    `analyze` (then True: a read that ends as fast as it can), every module otherwise."""
    name = command_name(argv)
    if name == "analyze":
        from lamina.cli import _analyze_cmd

        return True
    from lamina.cli import _container_cmds  # noqa: F401

    if name in CONTAINER_COMMANDS:
        return True
    from lamina.cli import (  # noqa: F401  (registers them)
        _analyze_cmd,
        _build_cmd,
        _commands,
        _image_cmds,
        _registry_cmd,
    )

    return False


def main() -> None:
    """Run the CLI: a LaminaError is one line (and a hint) on stderr and exit status 1."""
    if not register_commands(sys.argv[1:]):
        _main()
        return
    # A container command ends without the interpreter's teardown (module and object
    # finalization, the database's checkpoint on close: tens of milliseconds of every
    # `lamina run`). Nothing it started needs it: its records are committed, its output is
    # written by the monitor or flushed here, and the monitor owns the container. The same
    # holds for `analyze` (its index rows are committed, its files closed), whose teardown
    # would free the 50,000-path trees of a large image one object at a time.
    try:
        _main()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code or 0)


def _main() -> None:
    """The CLI proper: errors rendered, exit statuses as documented."""
    debug = "--debug" in sys.argv[1:] or os.environ.get("LAMINA_DEBUG") == "1"
    try:
        cli.main(standalone_mode=False, prog_name="lamina")
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        print("Aborted.", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except LaminaError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        _print_error(exc.message, exc.hint)
        sys.exit(1)
    except BrokenPipeError:
        sys.exit(1)
