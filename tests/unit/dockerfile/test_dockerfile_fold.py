"""Long runs of continuation lines are handed to BuildKit's parser on fewer lines
(`lamina.dockerfile._fold`): it must see exactly the same instructions, with the original
text's line numbers, and an error must point at the same line as without folding."""

from __future__ import annotations

import dockerfile as bk
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.dockerfile import DockerfileError, parse
from lamina.dockerfile._fold import _LINE_BYTES, _MIN_RUN, fold_continuations
from lamina.dockerfile._parse import _locate, _parse_commands


def _oracle(text: str) -> tuple[object, ...]:
    """BuildKit's parse of the text itself; an error as (line, message), the line found as
    lamina finds it in unfolded text."""
    try:
        return tuple(bk.parse_string(text))
    except bk.GoParseError as exc:
        lines = text.splitlines(keepends=True)
        return (_locate(len(lines), lambda n: "".join(lines[:n]), str(exc)), str(exc))


def _ours(text: str, escape: str = "\\") -> tuple[object, ...]:
    try:
        return _parse_commands(text, "Dockerfile", escape)
    except DockerfileError as exc:
        return (exc.line, exc.what)


def _run(n: int, line: str = "  b{i} \\\n") -> str:
    return "".join(line.format(i=i) for i in range(n))


CASES = {
    "plain": "FROM a\nRUN x \\\n" + _run(200) + "  end\nRUN y\n",
    "trailing blanks after the mark, CRLF": "FROM a\r\nRUN x \\ \t\r\n"
    + _run(150, "  b{i} \\  \r\n")
    + "  end\r\n",
    "comments and blank lines inside": "FROM a\nRUN x \\\n"
    + "".join(
        f"  b{i} \\\n" + ("# note\n" if i % 7 == 0 else "") + ("\n  \n" if i % 11 == 0 else "")
        for i in range(300)
    )
    + "  end\n",
    "a word across the lines": "FROM a\nENV A=" + _run(100, "x{i}\\\n") + "y\nLABEL k=v\n",
    "backtick escape": "# escape=`\nFROM a\nRUN x `\n" + _run(100, "  b{i} `\n") + "  end\n",
    "a heredoc after the run": "FROM a\nRUN x \\\n" + _run(100) + "  end\n"
    "RUN <<EOF\n" + _run(80, "line {i} \\\n") + "EOF\nRUN z \\\n" + _run(90) + "  end\n",
    "runs longer than one folded line": "FROM a\nRUN x \\\n"
    + _run(_LINE_BYTES // 100 * 3, "  " + "w" * 90 + "{i} \\\n")
    + "  end\n",
    "non-ASCII words": "FROM a\nRUN x \\\n" + _run(120, "  ü{i}€ \\\n") + "  end\n",
    "odd leading characters stop folding": "FROM a\nRUN x \\\n" + _run(70)
    + "\x01 odd \\\n" + _run(70) + "  end\n",
    "a line break only Python sees": "FROM a\nRUN x \\\n" + _run(70) + "  \x1c odd \\\n"
    + _run(70) + "  end\n",
    "continued to the end of the file": "FROM a\nRUN x \\\n" + _run(100),
    "no newline at the end": "FROM a\nRUN x \\\n" + _run(100) + "  end",
    "two instructions, one after the other": "FROM a\nRUN x \\\n" + _run(100) + "  end\n"
    "COPY \\\n" + _run(100, "  f{i} \\\n") + "  /dst/\n",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_folded_text_parses_to_the_same_instructions_and_lines(name: str) -> None:
    text = CASES[name]
    escape = "`" if text.startswith("# escape=`") else "\\"
    assert _ours(text, escape) == _oracle(text)


def test_ordinary_dockerfiles_are_not_folded() -> None:
    text = "FROM a\nRUN x \\\n" + _run(_MIN_RUN - 1) + "  end\n"
    assert fold_continuations(text, "\\") is None


def test_a_long_run_reaches_the_parser_on_few_lines() -> None:
    text = "FROM a\nRUN x \\\n" + _run(200_000) + "  end\n"
    folded = fold_continuations(text, "\\")
    assert folded is not None
    lines = folded.text.split("\n")
    assert len(lines) < 50
    assert max(len(line.encode()) for line in lines) <= _LINE_BYTES
    (run,) = parse(text).stages[0].instructions
    assert run.loc is not None
    assert (run.loc.start_line, run.loc.end_line) == (2, 200_003)


def test_an_error_after_a_long_run_names_its_original_line() -> None:
    text = "FROM a\nRUN x \\\n" + _run(500) + "  end\nBOGUS y\n"
    with pytest.raises(DockerfileError) as caught:
        parse(text)
    assert caught.value.line == 504
    assert "BOGUS" in caught.value.message or "bogus" in caught.value.message


_SHAPES = st.sampled_from(
    ["  b \\", "  b", "# c \\", "", "   ", "RUN r \\", "ENV A=1 \\", "x\\", "\\", "  q \\ \t",
     "RUN <<E", "E", "\tt \\", "  é \\", "LABEL a=b", "y \\\r"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_SHAPES, st.integers(1, 90)), min_size=1, max_size=8))
def test_any_mix_of_lines_parses_as_without_folding(blocks: list[tuple[str, int]]) -> None:
    text = "FROM a\n" + "".join((shape + "\n") * count for shape, count in blocks)
    assert _ours(text) == _oracle(text)
