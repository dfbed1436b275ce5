"""`lamina build`'s inputs and outputs as values: -o specs, --label, --platform, archives."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from lamina.api import parse_labels
from lamina.api._build import _platform
from lamina.api._build_io import Output, is_archive, parse_output
from lamina.errors import InvalidInputError


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("type=local,dest=out", Output("local", Path("out"))),
        ("out", Output("local", Path("out"))),
        ("type=docker,dest=a.tar", Output("docker-archive", Path("a.tar"))),
        ("type=docker-archive,dest=a.tar", Output("docker-archive", Path("a.tar"))),
        ("dest=a.tar,type=oci", Output("oci-archive", Path("a.tar"))),
        ("type=oci-archive, dest=a.tar", Output("oci-archive", Path("a.tar"))),
        ("type=tar,dest=t.tar", Output("tar", Path("t.tar"))),
    ],
)
def test_parse_output(spec: str, expected: Output) -> None:
    assert parse_output(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "want a directory"),
        ("-", "want a directory"),
        ("type=registry,dest=x", "unknown exporter type 'registry'"),
        ("type=local", "needs dest=PATH"),
        ("type=tar,dest=-", "stdout is not supported"),
        ("type=local,dest=x,extra", "'extra' is not KEY=VALUE"),
        ("type=local,dest=x,name=y", "unknown option 'name'"),
    ],
)
def test_parse_output_refuses(spec: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_output(spec)


def test_parse_labels() -> None:
    assert parse_labels(["a=1", "b=x=y", "c", "a=2"]) == {"a": "2", "b": "x=y", "c": ""}
    with pytest.raises(InvalidInputError, match="KEY=VALUE"):
        parse_labels(["=v"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ("linux/arm64", "linux/arm64"),
        ("arm64", "linux/arm64"),
        ("LINUX/AMD64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm/v7", "linux/arm/v7"),
    ],
)
def test_platform(text: str | None, expected: str | None) -> None:
    assert _platform(text) == expected


@pytest.mark.parametrize("text", ["linux/", "/amd64", "a/b/c/d"])
def test_platform_refuses(text: str) -> None:
    with pytest.raises(InvalidInputError, match="--platform"):
        _platform(text)


def _tar(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


@pytest.mark.parametrize(
    ("data", "archive"),
    [
        (_tar({"Dockerfile": b"FROM scratch\n"}), True),
        (gzip.compress(_tar({"a": b"b"})), True),
        (bytes(1024), True),  # an empty tar: an empty context
        (b"FROM busybox\nRUN echo hi\n", False),
        (b"", False),
        (b"x" * 600, False),
    ],
)
def test_is_archive(tmp_path: Path, data: bytes, archive: bool) -> None:
    path = tmp_path / "in"
    path.write_bytes(data)
    assert is_archive(path) is archive
