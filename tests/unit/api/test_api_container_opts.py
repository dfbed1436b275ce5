"""Docker's rules for `run`'s options, as pure functions: env, env files, volumes, command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lamina.api._container_opts import (
    check_container_name,
    merge_env,
    parse_env_file,
    parse_env_options,
    parse_volume,
    process_args,
    process_env,
    read_env_file,
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


def test_env_flag_without_value_takes_the_hosts_or_stays_bare() -> None:
    assert parse_env_options(["A=1", "FROMHOST", "ABSENT", "EMPTY", "B="], HOST) == [
        "A=1", "FROMHOST=h", "ABSENT", "EMPTY=", "B=",
    ]  # fmt: skip
    with pytest.raises(InvalidInputError, match=r"^invalid environment variable: =x$"):
        parse_env_options(["=x"], HOST)


def test_env_flag_without_value_absent_on_the_host_unsets_the_images() -> None:
    # docker-cli passes a bare `K` on; moby's ReplaceOrAppendEnvValues then drops K.
    image = ["A=image", "ABSENT=image", "B=image"]
    assert merge_env(image, parse_env_options(["ABSENT"], HOST)) == ["A=image", "B=image"]
    assert merge_env(image, ["ABSENT=file"], parse_env_options(["ABSENT"], HOST)) == [
        "A=image", "B=image",
    ]  # fmt: skip
    assert merge_env(image, parse_env_options(["ABSENT", "ABSENT=again"], HOST)) == [
        "A=image", "B=image", "ABSENT=again",
    ]  # fmt: skip


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
    assert not parse_volume("/a:/b:").readonly  # an empty mode is Docker's default, rw
    for bad in ("rel:/data", "/a:rel", "/a:/b/../c", "/a:/", "/a:/b:rx", "/a"):
        with pytest.raises(InvalidInputError):
            parse_volume(bad)


def test_volume_modes_docker_takes() -> None:
    # moby's linuxValidMountMode: comma-separated, at most one of each kind; z/Z (SELinux
    # labels) and consistency modes change nothing on a host without SELinux, as in Docker.
    for mode, readonly in (("z", False), ("Z", False), ("ro,z", True), ("rw,Z", False),
                           ("Z,ro", True), ("cached", False), ("ro,delegated", True),
                           ("consistent", False), ("rprivate", False), ("ro,private", True)):
        assert parse_volume(f"/a:/b:{mode}").readonly is readonly, mode
    for mode in ("bogus", "ro,rw", "z,Z", "ro,", ",ro", "RO", "cached,delegated"):
        with pytest.raises(InvalidInputError, match=f"^invalid mode: {re.escape(mode)}$"):
            parse_volume(f"/a:/b:{mode}")
    for spec in ("/a:/b:ro:rw", "::", ":/b"):
        with pytest.raises(InvalidInputError, match=r"^invalid volume specification: "):
            parse_volume(spec)
    # Propagation other than private is not done by lamina: refused, not ignored.
    for mode in ("shared", "rslave", "ro,rshared", "slave"):
        with pytest.raises(InvalidInputError, match="propagation"):
            parse_volume(f"/a:/b:{mode}")


@pytest.mark.parametrize("name", ["ab", "a1", "0_x", "web.1", "a-b_c.d", "/ab", "x" * 255])
def test_container_names_dockers_pattern(name: str) -> None:
    assert check_container_name(name) == name.removeprefix("/")


@pytest.mark.parametrize("name", ["a", "/a", "", "/", "_ab", ".ab", "-ab", "a/b", "//ab",
                                  "a b", "é1", "ab\n"])
def test_container_names_docker_refuses(name: str) -> None:
    with pytest.raises(InvalidInputError) as e:
        check_container_name(name)
    assert e.value.message == (
        f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
    )


def test_container_names_have_a_length_limit() -> None:
    with pytest.raises(InvalidInputError, match="longer than 255"):
        check_container_name("x" * 256)


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


def test_env_file_with_bytes_that_are_not_utf8_is_an_error(tmp_path: Path) -> None:
    # docker-cli's parseKeyValueFile: "invalid utf8 bytes at line N", not a replaced value.
    f = tmp_path / "env"
    f.write_bytes(b"A=1\nB=\xff\n")
    with pytest.raises(InvalidInputError, match="invalid utf8 bytes at line 2"):
        read_env_file(f, HOST)
    f.write_bytes(b"\xef\xbb\xbfA=\xc3\xa9\r\n")  # a BOM, UTF-8 and CRLF are fine
    assert read_env_file(f, HOST) == ["A=\u00e9"]


def test_env_file_lines_end_only_at_newlines() -> None:
    # Go's bufio.ScanLines: a line ends at \n (a \r before it dropped); a lone \r, a form
    # feed or U+2028 inside a value is part of it.
    text = "A=1\rB=2\r\nC=x\x0cy\u2028z\nD=4\r\r\n"
    assert parse_env_file(text, HOST, "f") == ["A=1\rB=2", "C=x\x0cy\u2028z", "D=4\r"]
