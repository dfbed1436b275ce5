"""The launcher `make venv` installs (`lamina.cli._script`): Python without `site`, and
`site` loaded as soon as something needs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lamina
from lamina.cli._script import launcher_text, write_launcher

SRC = str(Path(lamina.__file__).resolve().parents[1])


def test_the_launcher_starts_python_without_site_and_finds_lamina_itself() -> None:
    text = launcher_text("/venv/bin/python", "/src")
    assert text is not None
    assert text.splitlines()[0] == "#!/venv/bin/python -S"
    assert "sys.path.append('/src')" in text
    compile(text, "lamina", "exec")


def test_no_launcher_where_a_shebang_cannot_carry_the_path() -> None:
    assert launcher_text("/with space/python", "/src") is None
    assert launcher_text("/" + "p" * 260, "/src") is None


def _run(launcher: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(launcher), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_a_written_launcher_runs_commands_that_need_site_packages(tmp_path: Path) -> None:
    launcher = tmp_path / "lamina"
    launcher.write_text("pip's console script")
    assert write_launcher(str(launcher))
    assert os.access(launcher, os.X_OK)
    assert launcher.read_text().startswith(f"#!{os.path.abspath(sys.executable)} -S\n")
    assert f"sys.path.append({SRC!r})" in launcher.read_text()
    assert "0.1.0" in _run(launcher, "--version")  # click, from site-packages
    traced = _run(launcher, "--help", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert "| click" in traced and "| site\n" in traced  # loaded once needed


def test_a_launcher_whose_lamina_moved_finds_it_through_site(tmp_path: Path) -> None:
    launcher = tmp_path / "lamina"
    text = launcher_text(os.path.abspath(sys.executable), str(tmp_path / "gone"))
    assert text is not None
    launcher.write_text(text)
    launcher.chmod(0o755)
    assert "0.1.0" in _run(launcher, "--version")
