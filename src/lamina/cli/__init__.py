"""The `lamina` command: arguments and presentation only; the work is in `lamina.api`.

Modules: `_launch` (the entry point: parses a `run` line itself, from the table the click
command is built from, so `lamina run` loads no click; everything else goes to click),
`_main` (the group, global options, error rendering, exit codes), `_commands`
(load, save, import, tag, prune, fsck, mount), `_image_cmds` (images, history, inspect,
df, rmi), `_build_cmd` (build and its progress), `_format` (Docker's sizes and ages).

`--format` for any listing goes through `_template`, Docker's Go-template subset:

    render("{{.Repository}}:{{.Tag}}", {"Repository": "app", "Tag": "1"})  -> "app:1"
    format_rows(fmt, rows, headers, default_table)  -> what `docker <list> --format fmt`
        prints: `table …` (a header row from `headers`, tabwriter columns), `json`
        (`{{json .}}` per row), or one rendering per row

A new listing (`ps`) builds one dict per row with Docker's field names (docker/cli's
formatter: `.ID`, `.Image`, `.Command`, `.CreatedAt`, `.Status`, `.Names`, …), a
`headers` dict (field → column title) and its default `table …` format, and prints
`format_rows(...)`. A malformed template or an unknown field raises TemplateError
(an InvalidInputError: one line, exit 1).
"""

from __future__ import annotations

from lamina._lazy import lazy_names
from lamina.cli._launch import main

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`

if TYPE_CHECKING:
    from lamina.cli._main import cli
    from lamina.cli._template import TemplateError, format_rows, render


# The template engine loads on first use: `lamina run` never needs it, nor click
# (`main` parses a `run` line itself; see `_launch`).
_LAZY = {
    **dict.fromkeys(("TemplateError", "format_rows", "render"), "lamina.cli._template"),
    "cli": "lamina.cli._main",
}

__all__ = ["TemplateError", "cli", "format_rows", "main", "render"]

__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__, globals())
