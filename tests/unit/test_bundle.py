"""The run path's module bundle (lamina._bundle): served only while current, else ignored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lamina import _bundle

SRC = str(Path(_bundle.__file__).resolve().parent.parent)


@pytest.fixture
def pkg(tmp_path: Path) -> Path:
    """A package `bpkg` (with a module `mod`) on a path of its own."""
    root = tmp_path / "path"
    (root / "bpkg").mkdir(parents=True)
    (root / "bpkg" / "__init__.py").write_text("WHO = 'package'\n")
    (root / "bpkg" / "mod.py").write_text("WHO = 'compiled'\nimport os\nHERE = __file__\n")
    return root


def _python(code: str, *paths: Path | str) -> str:
    prelude = "import sys\n" + "".join(f"sys.path.insert(0, {str(p)!r})\n" for p in paths)
    done = subprocess.run([sys.executable, "-S", "-c", prelude + code], capture_output=True,
                          text=True, check=True)  # fmt: skip
    return done.stdout.strip()


def _write(pkg: Path, target: Path) -> None:
    _python(f"from lamina._bundle import write_bundle\n"
            f"write_bundle(['bpkg', 'bpkg.mod'], {str(target)!r})\n", pkg, SRC)  # fmt: skip


_SERVED = (
    "from lamina._bundle import install, _Loader\n"
    "print(install({bundle!r}))\n"
    "import bpkg.mod\n"
    "print(bpkg.mod.WHO, bpkg.mod.__spec__.loader is _Loader, bpkg.__spec__.loader is _Loader)\n"
    "print(bpkg.mod.HERE == bpkg.mod.__spec__.origin, bpkg.__path__)\n"
)


def test_a_current_bundle_serves_its_modules_with_their_files(pkg: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "b.bundle"
    _write(pkg, bundle)
    out = _python(_SERVED.format(bundle=str(bundle)), pkg, SRC).splitlines()
    assert out[0] == "True"
    assert out[1] == "compiled True True"
    assert out[2] == f"True [{str(pkg / 'bpkg')!r}]"


def test_an_edited_source_is_loaded_from_the_source(pkg: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "b.bundle"
    _write(pkg, bundle)
    mod = pkg / "bpkg" / "mod.py"
    mod.write_text("WHO = 'edited!'\nHERE = __file__\n")  # another size
    out = _python(_SERVED.format(bundle=str(bundle)), pkg, SRC).splitlines()
    assert out[1] == "edited! False True"
    # The same size, another mtime: still not the compiled one.
    mod.write_text("WHO = 'compiled'\nimport os\nHERE = __file__\n".replace("compiled", "Compiled"))
    st = mod.stat()
    os.utime(mod, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    out = _python(_SERVED.format(bundle=str(bundle)), pkg, SRC).splitlines()
    assert out[1] == "Compiled False True"


@pytest.mark.parametrize(
    "spoil",
    [
        lambda data: b"",
        lambda data: data[:40],  # cut short
        lambda data: data.replace(b"bundle 1", b"bundle 9", 1),  # another format
        lambda data: data[:25] + bytes([data[25] ^ 0xFF]) + data[26:],  # another Python's magic
    ],
)
def test_a_bundle_of_another_python_or_broken_is_ignored(
    pkg: Path, tmp_path: Path, spoil: object
) -> None:
    bundle = tmp_path / "b.bundle"
    _write(pkg, bundle)
    bundle.write_bytes(spoil(bundle.read_bytes()))  # type: ignore[operator]
    out = _python(_SERVED.format(bundle=str(bundle)), pkg, SRC).splitlines()
    assert out[0] == "False"
    assert out[1] == "compiled False False"  # the usual import


def test_no_bundle_and_optimized_pythons_import_as_usual(pkg: Path, tmp_path: Path) -> None:
    out = _python(_SERVED.format(bundle=str(tmp_path / "none")), pkg, SRC).splitlines()
    assert out[:2] == ["False", "compiled False False"]
    bundle = tmp_path / "b.bundle"
    _write(pkg, bundle)
    code = f"import sys\nsys.path[:0] = [{str(pkg)!r}, {SRC!r}]\n" + _SERVED.format(
        bundle=str(bundle)
    )
    done = subprocess.run([sys.executable, "-S", "-O", "-c", code], capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert done.stdout.splitlines()[:2] == ["False", "compiled False False"]


def test_only_modules_compiled_from_source_go_in(pkg: Path, tmp_path: Path) -> None:
    with pytest.raises(subprocess.CalledProcessError) as caught:
        _python(f"from lamina._bundle import write_bundle\n"
                f"write_bundle(['_json'], {str(tmp_path / 'x')!r})\n", SRC)  # fmt: skip
    assert "not a module compiled from a .py source" in caught.value.stderr
    assert not (tmp_path / "x").exists()


def test_the_run_path_closure_is_lamina_modules_only() -> None:
    modules = _bundle.run_path_modules()
    assert "lamina.api._containers" in modules and "lamina.cli._launch" in modules
    assert all(m == "lamina" or m.startswith("lamina.") for m in modules)
    assert "lamina.api._container_commands" not in modules  # not `run`'s
