"""lamina's exception tree.

    LaminaError(message, hint)        anything lamina reports to a user
    ├── NotFoundError                 a name, digest, file or stage that does not exist
    ├── AlreadyExistsError            a create that would overwrite
    ├── InvalidInputError             input that breaks a rule: hostile archive, bad Dockerfile
    │   └── DigestMismatchError       bytes that do not match the digest they claim
    ├── ToolError                     an external program (runc, mount) failed
    └── ConflictError                 in use: a tag, a mount, a lease

Only the CLI renders these; a message says what went wrong and names the thing
(file:line, reference, digest expected and found); a hint says what to do.
"""

from __future__ import annotations


class LaminaError(Exception):
    """An error a user can act on."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class NotFoundError(LaminaError):
    """A name, digest, file or stage that does not exist."""


class AlreadyExistsError(LaminaError):
    """A create that would overwrite something that exists."""


class InvalidInputError(LaminaError):
    """Input that breaks a rule: a hostile archive, a broken Dockerfile, a bad reference."""


class DigestMismatchError(InvalidInputError):
    """Bytes whose digest is not the one they claim."""

    def __init__(self, what: str, expected: str, actual: str, hint: str | None = None) -> None:
        super().__init__(f"{what}: expected {expected}, got {actual}", hint)
        self.expected = expected
        self.actual = actual


class ToolError(LaminaError):
    """An external program (runc, mount) failed."""


class ConflictError(LaminaError):
    """Something is in use: a tag, a mount, a lease."""


__all__ = [
    "AlreadyExistsError",
    "ConflictError",
    "DigestMismatchError",
    "InvalidInputError",
    "LaminaError",
    "NotFoundError",
    "ToolError",
]
