"""The `lamina` command: arguments and presentation only; the work is in `lamina.api`."""

from lamina.cli._main import cli, main

__all__ = ["cli", "main"]
