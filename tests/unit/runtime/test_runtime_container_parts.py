"""Signals by name or number, the CRI log format, owners and the seccomp data."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from lamina.errors import InvalidInputError
from lamina.runtime import (
    BLOCKED_SYSCALLS,
    LineJoiner,
    LogWriter,
    Owner,
    alive,
    bundle_config,
    current_owner,
    parse_signal,
    read_records,
    seccomp_profile,
)


@pytest.mark.parametrize(
    ("text", "number"),
    [("KILL", 9), ("SIGKILL", 9), ("sigterm", 15), ("9", 9), ("USR1", 10), ("SIGRTMIN+1", 35)],
)
def test_signals_by_name_or_number(text: str, number: int) -> None:
    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["NOPE", "0", "65", "-1", "SIG", "", "KILL9", "SIGRTMIN+99"])
def test_invalid_signals(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_signal(text)


def test_log_records_keep_bytes_and_join_partial_lines() -> None:
    r, w = os.pipe()
    writer = LogWriter(w)
    writer.write("stdout", b"one\ntw")
    writer.write("stderr", b"err\n")
    writer.write("stdout", b"o \xff\n")
    writer.write("stdout", b"tail")
    os.close(w)
    data = os.read(r, 65536)
    os.close(r)
    lines = data.split(b"\n")[:-1]
    assert [line.split(b" ")[1:3] for line in lines] == [
        [b"stdout", b"F"], [b"stdout", b"P"], [b"stderr", b"F"], [b"stdout", b"F"],
        [b"stdout", b"P"],
    ]  # fmt: skip
    joiner = LineJoiner()
    out = []
    for rec in read_records(io.BytesIO(data + b"2026-01-01T00:00:00.0Z stdout F unfinished")):
        line = joiner.feed(*rec)
        if line is not None:
            out.append((line.stream, line.data))
    assert out == [("stdout", b"one\n"), ("stderr", b"err\n"), ("stdout", b"two \xff\n")]
    assert [x.data for x in joiner.rest()] == [b"tail"]


def test_owner_alive_tells_a_reused_pid_apart() -> None:
    me = current_owner()
    assert alive(me)
    assert not alive(Owner(me.pid, me.start + 1))
    assert not alive(Owner(2**22 + 7, 0))


def test_seccomp_refuses_block_devices_and_dockers_blocked_calls() -> None:
    profile = seccomp_profile()
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    names = {n for rule in profile["syscalls"] for n in rule["names"]}
    for call in ("mount", "ptrace", "keyctl", "kexec_load", "unshare", "mknod", "mknodat"):
        assert call in names
    mknod = next(r for r in profile["syscalls"] if r["names"] == ["mknod"])
    assert mknod["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"
    assert mknod["args"][0]["valueTwo"] == 0o060000
    assert "execve" not in BLOCKED_SYSCALLS and "clone" not in BLOCKED_SYSCALLS
    config = bundle_config(["true"], bundle_dir=Path("/b"))
    assert config["linux"]["seccomp"] == profile
