"""The HTML report in a real browser: Debian's headless chromium opens it from file://
(no network: the page has a CSP of default-src 'none'), and the DOM it renders shows
the layers, a waste row with its line and fix, and the expanded file tree; a
screenshot is taken for a person to look at."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina.api import Lamina

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium")


def chromium(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    # Required like every other real tool here (make system-deps installs it): no skip.
    assert CHROMIUM is not None, "chromium is not installed (make system-deps installs it)"
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", *args, url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def report(lam: Lamina, build: Callable[..., str], cli: Callable[..., object],
           tmp_path: Path) -> Path:  # fmt: skip
    build("FROM busybox\nRUN dd if=/dev/zero of=/big bs=1M count=3 && mkdir -p /etc/app && "
          "echo x > /etc/app/conf && echo y > /tmp/scratch\n"
          "RUN chmod 600 /big && rm /tmp/scratch\n", "app")  # fmt: skip
    build("FROM busybox\nRUN echo other > /o\n", "other")
    out = tmp_path / "report.html"
    done = cli("analyze", "app", "--store", "--html", str(out))
    assert done.returncode == 0, done.stderr  # type: ignore[attr-defined]
    return out


def test_the_report_is_self_contained(report: Path) -> None:
    page = report.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    assert "default-src 'none'" in page


def test_chromium_renders_layers_waste_and_an_expanded_tree(report: Path, tmp_path: Path) -> None:
    done = chromium(tmp_path, f"file://{report}#layer=1&expand=all", "--dump-dom")
    dom = done.stdout
    assert "<main>" in dom, done.stderr[-2000:]
    assert len(re.findall(r'class="layer[ "]', dom)) == 3  # busybox, RUN, RUN
    rows = re.findall(r'<tr class="waste-row">(.*?)</tr>', dom)
    big = next(r for r in rows if ">/big<" in r)
    assert "metadata-only" in big and "Dockerfile:3" in big and "--chmod" in big
    assert any(">/tmp/scratch<" in r and ">deleted<" in r for r in rows)
    tree = dom[dom.index('id="tree"') :]
    assert re.search(r'<details data-path="etc" open="">', tree)
    assert re.search(r'<details data-path="app" open="">', tree)
    assert re.search(r'class="m mA">A</span>conf', tree)
    assert "Files of layer 1 (Dockerfile:2)" in dom
    assert re.search(r'<svg[^>]*id="sharing"', dom)  # the store's sharing picture
    assert dom.count("<rect") >= 4


def test_the_file_tree_filters_to_the_paths_that_match(report: Path, tmp_path: Path) -> None:
    done = chromium(tmp_path, f"file://{report}#layer=1&filter=conf", "--dump-dom")
    dom = done.stdout
    tree = dom[dom.index('id="tree"') : dom.index("</section>", dom.index('id="tree"'))]
    assert re.search(r'class="m mA">A</span>conf', tree), done.stderr[-2000:]
    assert re.search(r'<details data-path="app" open="">', tree)  # what matches is shown
    assert not re.search(r"</span>big<", tree) and "scratch" not in tree
    dom = chromium(tmp_path, f"file://{report}#layer=1", "--dump-dom").stdout
    tree = dom[dom.index('id="tree"') : dom.index("</section>", dom.index('id="tree"'))]
    assert re.search(r"</span>big<", tree)  # unfiltered: the whole layer


def test_a_screenshot_a_person_would_look_at(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    chromium(tmp_path, f"file://{report}#layer=1&expand=all", f"--screenshot={shot}",
             "--window-size=1280,1600", "--hide-scrollbars")  # fmt: skip
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 1600)
    assert len(data) > 50_000  # drawn bars, tables and text, not a blank page
