"""The `lamina` launcher that `make venv` installs: Python started without `site`.

pip's console script starts Python as usual, and `site` then processes every `.pth` file
of the environment's site-packages (setuptools' `distutils-precedence.pth` imports its
`_distutils_hack` on every start), looks for `sitecustomize` and the user's site: about
1.5 ms of every command, for packages `lamina run` never uses. The launcher written here
starts Python with `-S` and puts on `sys.path` only the directory `lamina` itself is
installed in; `lamina.cli._launch` does what `site` does as soon as anything else is
needed (any command but `run`, an error message, any module only site-packages has).
`make venv` also writes the bundle of `lamina run`'s modules the launcher loads them from
(`lamina._bundle`).
pip's own script stays what `pip install .` gives: the same commands, with `site`.

    python -m lamina.cli._script .venv/bin/lamina    # (what `make venv` runs)
"""

from __future__ import annotations

import os
import sys

# Linux reads at most 255 bytes of a `#!` line (BINPRM_BUF_SIZE, from 5.1 on).
_MAX_SHEBANG = 255


def launcher_text(python: str, where: str) -> str | None:
    """The launcher's text: `python -S`, with `where` (the directory holding the `lamina`
    package) on `sys.path`; None where a `#!` line cannot say that (too long, spaces)."""
    shebang = f"#!{python} -S"
    if len(shebang) > _MAX_SHEBANG or any(c.isspace() for c in python):
        return None
    return f'''{shebang}
"""lamina, with Python started without `site` (written by `make venv`: lamina.cli._script)."""
import sys

sys.path.append({where!r})
try:
    from lamina._bundle import install
except ModuleNotFoundError as missing:  # lamina moved: find it as `site` would
    if missing.name != "lamina":
        raise
    import site

    site.main()
    from lamina._bundle import install
install()  # `lamina run`'s modules from one file (lamina._bundle), where it is current
from lamina.cli import main
sys.exit(main())
'''


def write_launcher(path: str) -> bool:
    """Replace `path` (pip's console script) with the launcher for this interpreter and this
    installation of lamina, by write-and-rename; False (nothing changed) where it cannot."""
    import lamina

    where = os.path.dirname(os.path.dirname(os.path.abspath(lamina.__file__)))
    text = launcher_text(os.path.abspath(sys.executable), where)
    if text is None:
        return False
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.rename(tmp, path)
    return True


if __name__ == "__main__":
    import subprocess

    from lamina._bundle import run_path_modules, write_bundle

    try:
        write_bundle(run_path_modules())
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        # (A read-only installation, say: its modules load the usual way.)
        print(f"note: no run-path bundle: {exc}", file=sys.stderr)
    if not write_launcher(sys.argv[1]):
        print(f"{sys.argv[1]}: kept pip's script (this Python's path cannot go on a #! line "
              "with -S)", file=sys.stderr)  # fmt: skip
