"""Docker's rules for `run`'s options, as pure functions: env, env files, volumes, command."""

from __future__ import annotations

import pytest

from lamina.api._container_opts import (
    merge_env,
    parse_env_file,
    parse_env_options,
    parse_volume,
    process_args,
    process_env,
)
from lamina.api._instructions import check_change_commands
from lamina.errors import InvalidInputError
from lamina.runtime import DEFAULT_PATH

HOST = {"FROMHOST": "h", "EMPTY": ""}


def test_env_file_lines_are_literal_and_comments_skipped() -> None:
    text = "\ufeff# comment\n\n   \nA=1\n  B=two words 'q' \"d\" $X\nFROMHOST\nABSENT\nC=\nD==x\n"
    assert parse_env_file(text, HOST, "f") == [
        "A=1", "B=two words 'q' \"d\" $X", "FROMHOST=h", "C=", "D==x",
    ]  # fmt: skip


@pytest.mark.parametrize("line", ["A B=1", "A\tB", "=value", "=", " =x"])
def test_env_file_bad_keys_are_errors(line: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_env_file(line + "\n", HOST, "f")


def test_env_flag_without_value_takes_the_hosts_or_is_dropped() -> None:
    assert parse_env_options(["A=1", "FROMHOST", "ABSENT", "EMPTY", "B="], HOST) == [
        "A=1", "FROMHOST=h", "EMPTY=", "B=",
    ]  # fmt: skip
    with pytest.raises(InvalidInputError):
        parse_env_options(["=x"], HOST)


def test_later_env_sources_win_in_place() -> None:
    assert merge_env(["A=image", "B=image"], ["B=file", "C=file"], ["A=flag"]) == [
        "A=flag", "B=file", "C=file",
    ]  # fmt: skip


def test_process_env_order_home_and_term() -> None:
    env = process_env(hostname="abc", tty=True, config_env=["X=1"], home="/root")
    assert env == [f"PATH={DEFAULT_PATH}", "HOSTNAME=abc", "TERM=xterm", "X=1", "HOME=/root"]
    own = process_env(hostname="abc", tty=False, config_env=["PATH=/x", "HOME=/h"], home="/")
    assert own == ["PATH=/x", "HOSTNAME=abc", "HOME=/h"]


def test_volumes() -> None:
    v = parse_volume("/srv/data:/data:ro")
    assert (v.source, v.target, v.readonly) == ("/srv/data", "/data", True)
    assert not parse_volume("/a:/b/").readonly
    for bad in ("rel:/data", "/a:rel", "/a:/b/../c", "/a:/", "/a:/b:rx", "/a"):
        with pytest.raises(InvalidInputError):
            parse_volume(bad)


def test_entrypoint_and_cmd_combination() -> None:
    assert process_args(["ep"], ["cmd"], None, []) == (["ep"], ["cmd"])
    assert process_args(["ep"], ["cmd"], None, ["arg"]) == (["ep"], ["arg"])
    assert process_args(["ep"], ["cmd"], "other", []) == (["other"], [])
    assert process_args(["ep"], ["cmd"], "", ["x"]) == ([], ["x"])
    with pytest.raises(InvalidInputError, match="no command specified"):
        process_args(["ep"], ["cmd"], "", [])
    with pytest.raises(InvalidInputError, match="no command specified"):
        process_args(None, None, None, [])


def test_commit_change_commands() -> None:
    check_change_commands(["CMD x", "healthcheck NONE", "STOPSIGNAL TERM", "env A=1"])
    for bad, word in (("RUN echo", "RUN"), ("FROM x", "FROM"), ("COPY a b", "COPY")):
        with pytest.raises(InvalidInputError, match=f"{word} is not a valid change command"):
            check_change_commands([bad])
