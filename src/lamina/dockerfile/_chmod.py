"""``COPY/ADD --chmod``: an octal mode, or chmod(1)'s symbolic form as BuildKit takes it.

BuildKit (``dispatchCopy``) accepts an octal string up to ``07777`` or a symbolic
mode parsed by ``dchapes-mode`` (``u=rwx,g=rx,o=``, ``go-w``, ``a+X``, ``+x``): a
comma-separated list of clauses ``[ugoa]*[-+=][rwxXst]*`` (or ``[-+=][ugo]`` to copy
another class's bits), applied to each copied entry's own mode. ``X`` adds execute
only to directories and to files that already have an execute bit. A clause with no
``who`` acts on all classes minus the umask (chmod(1); the build's umask is 022).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CLAUSE = re.compile(r"^([ugoa]*)((?:[-+=](?:[ugo]|[rwxXst]*))+)$")
_ACTION = re.compile(r"([-+=])([ugo]|[rwxXst]*)")
_WHO = {"u": 0o4700, "g": 0o2070, "o": 0o0007}
_UMASK = 0o022


@dataclass(frozen=True)
class Chmod:
    """A parsed ``--chmod`` value; :meth:`apply` gives an entry's new permission bits."""

    text: str
    octal: int | None

    @property
    def is_octal(self) -> bool:
        return self.octal is not None

    def apply(self, mode: int, is_dir: bool) -> int:
        """The new permission bits (``0o7777`` range) for an entry of ``mode``."""
        if self.octal is not None:
            return self.octal
        current = mode & 0o7777
        for clause in self.text.split(","):
            m = _CLAUSE.match(clause)
            assert m is not None  # checked by parse_chmod
            who_text, actions = m.groups()
            masked = not who_text
            who = 0
            for ch in who_text or "a":
                who |= 0o6777 if ch == "a" else _WHO[ch]
            for op, perms in _ACTION.findall(actions):
                bits = self._bits(perms, who, current, is_dir)
                if masked:
                    bits &= ~_UMASK
                if op == "+":
                    current |= bits
                elif op == "-":
                    current &= ~bits
                else:
                    keep = ~who & 0o7777 if not masked else ~0o6777 & 0o7777
                    current = (current & keep) | bits
        return current

    @staticmethod
    def _bits(perms: str, who: int, current: int, is_dir: bool) -> int:
        if perms in ("u", "g", "o"):
            shift = {"u": 6, "g": 3, "o": 0}[perms]
            rwx = (current >> shift) & 0o7
            return (rwx << 6 | rwx << 3 | rwx) & who & 0o777
        bits = 0
        for ch in perms:
            if ch == "r":
                bits |= 0o444
            elif ch == "w":
                bits |= 0o222
            elif ch == "x" or (ch == "X" and (is_dir or current & 0o111)):
                bits |= 0o111
            elif ch == "s":
                bits |= 0o6000
        bits &= who
        if "t" in perms and who & 0o0007:
            bits |= 0o1000  # the sticky bit goes with "other" (chmod(1))
        return bits


def parse_chmod(text: str) -> Chmod:
    """Parse a ``--chmod`` value; ValueError with BuildKit's wording when it is neither."""
    if text and all(c in "01234567" for c in text):
        value = int(text, 8)
        if value > 0o7777:
            raise ValueError(
                f"invalid chmod parameter: '{text}'. it should be octal string and "
                "between 0 and 07777"
            )
        return Chmod(text, value)
    if not text or text[0].isdigit() or not all(_CLAUSE.match(c) for c in text.split(",")):
        raise ValueError(
            f"invalid chmod parameter: '{text}'. it should be octal string and between 0 "
            "and 07777, or a symbolic mode such as u=rwx,g=rx,o= or +x"
        )
    return Chmod(text, None)
