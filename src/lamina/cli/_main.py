"""Entry point: global options, error rendering and exit codes (1 = error, 2 = usage)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from lamina.cli._launch import Context, exit_now, print_error
from lamina.errors import LaminaError

# The lean entry point's pieces, under the names the command modules use.
_print_error = print_error
_Context = Context


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
    ctx.obj = Context(root, debug)


# Commands that `_container_cmds` alone defines: for these, main() imports no other command
# module (the builder, the image listings, the template engine), which is most of what a
# `lamina run --rm IMAGE true` would otherwise spend before it starts anything.
CONTAINER_COMMANDS = frozenset({"run", "create", "ps", "logs", "stop", "kill", "start", "wait"})
# Commands that `_commands` alone defines: for these main() imports no other command
# module either (a cold `lamina save` reads every module it imports from disk, one by one).
STORE_COMMANDS = frozenset({"load", "save", "import", "tag", "prune", "fsck", "mount", "umount"})
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
    `analyze` (then True: a read that ends as fast as it can), only `_commands` for the
    store commands (`STORE_COMMANDS`; True for `save`), every module otherwise."""
    name = command_name(argv)
    if name == "analyze":
        from lamina.cli import _analyze_cmd

        return True
    if name in STORE_COMMANDS:
        from lamina.cli import _commands  # registers them

        if name != "save":
            return False
        # A save ends with its archive renamed into place (or written out and flushed)
        # and its lease released: nothing is left for the interpreter's teardown to do.
        # Nor for the cycle collector, which would walk every object the modules it is
        # about to load make (as `lamina run` does without it; see `_launch`).
        import gc

        gc.disable()
        return True
    from lamina.cli import _container_cmds  # noqa: F401

    if name in CONTAINER_COMMANDS:
        return True
    from lamina.cli import (  # noqa: F401  (registers them)
        _aliases,
        _analyze_cmd,
        _build_cmd,
        _commands,
        _image_cmds,
        _registry_cmd,
    )

    return False


def main() -> None:
    """Run the CLI through click (`lamina.cli._launch.main` tries its fast path first)."""
    if not register_commands(sys.argv[1:]):
        _main()
        return
    # Without the interpreter's teardown (`exit_now`): nothing a container command started
    # needs it, and `analyze` (its index rows committed, its files closed) would otherwise
    # free the 50,000-path trees of a large image one object at a time.
    try:
        _main()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    exit_now(code)


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
