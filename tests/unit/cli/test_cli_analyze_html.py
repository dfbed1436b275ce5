"""The HTML report page: self-contained, and no text from an image can end its script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lamina.cli._analyze_html import render_html, write_html
from lamina.errors import LaminaError

HOSTILE = "RUN echo '</script><script>alert(1)</script><!--'"


def test_image_text_cannot_close_the_data_script() -> None:
    doc = {"image": "<b>x</b>", "layers": [], "lines": [{"instruction": HOSTILE}]}
    page = render_html(json.dumps(doc), "<b>x</b>")
    assert "alert(1)</script>" not in page and "<!--" not in page
    assert page.count("</script>") == 2  # the data block and the page's own script
    assert "<title>lamina analyze: &lt;b&gt;x&lt;/b&gt;</title>" in page
    data = page.split("<script type='application/json' id='data'>")[1].split("</script>")[0]
    assert json.loads(data) == doc


def test_an_unwritable_report_path_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "report.html"
    with pytest.raises(LaminaError) as err:
        write_html(target, "{}", "img")
    assert "cannot write the report" in err.value.message and err.value.hint
    assert not target.parent.exists()


def test_the_report_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("old")
    write_html(target, json.dumps({"image": "img", "layers": []}), "img")
    assert target.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
