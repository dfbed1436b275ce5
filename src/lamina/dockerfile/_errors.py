"""The one error this package raises: a Dockerfile problem located at file:line."""

from __future__ import annotations

from lamina.errors import InvalidInputError


class DockerfileError(InvalidInputError):
    """A broken Dockerfile: ``message`` reads ``file:line: what is wrong: instruction text``."""

    def __init__(
        self, filename: str, line: int, text: str, what: str, hint: str | None = None
    ) -> None:
        first = text.strip().splitlines()[0] if text.strip() else ""
        shown = first if len(first) <= 120 else first[:117] + "..."
        suffix = f": {shown}" if shown else ""
        super().__init__(f"{filename}:{line}: {what}{suffix}", hint)
        self.filename = filename
        self.line = line
        self.text = text
        self.what = what
