"""`login`/`logout` follow docker/cli's rules before any registry is asked: a user name is
required with --password-stdin, no prompt is tried without a terminal, -p warns, and a
registry given as a URL means its host (what docker/cli's ConvertToHostname keeps)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lamina.transport import registry_host


def _lamina(tmp: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME=str(tmp / "home"), DOCKER_CONFIG=str(tmp / "home" / ".docker"))
    return subprocess.run(
        [sys.executable, "-m", "lamina", "--root", str(tmp / "root"), *args],
        input=stdin, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


def test_password_stdin_needs_a_user_name(tmp_path: Path) -> None:
    done = _lamina(tmp_path, "login", "--password-stdin", "127.0.0.1:1", stdin="s3cret\n")
    assert done.returncode == 1
    assert "Must provide --username with --password-stdin" in done.stderr
    assert "s3cret" not in done.stdout + done.stderr
    assert "Username" not in done.stdout + done.stderr  # no prompt was tried


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (["login", "127.0.0.1:1"], ""),
        (["login", "-u", "alice", "127.0.0.1:1"], ""),
        (["login", "-u", "alice", "--password-stdin", "127.0.0.1:1"], ""),  # empty stdin
    ],
)
def test_no_prompt_without_a_terminal(tmp_path: Path, args: list[str], stdin: str) -> None:
    done = _lamina(tmp_path, *args, stdin=stdin)
    assert done.returncode == 1, done.stderr
    assert "Cannot perform an interactive login from a non TTY device" in done.stderr
    assert "Password:" not in done.stdout + done.stderr


def test_password_on_the_command_line_warns(tmp_path: Path) -> None:
    done = _lamina(tmp_path, "login", "-u", "alice", "-p", "s3cret", "127.0.0.1:1")
    assert "WARNING! Using --password via the CLI is insecure. Use --password-stdin." in (
        done.stderr
    )
    assert "s3cret" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("given", "host"),
    [
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("http://127.0.0.1:5000", "127.0.0.1:5000"),
        ("https://registry.example.com/", "registry.example.com"),
        ("https://registry.example.com:5000/v2/", "registry.example.com:5000"),
        ("localhost:5000/", "localhost:5000"),
        ("localhost:5000/some/repo", "localhost:5000"),
        ("docker.io", "docker.io"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("index.docker.io", "docker.io"),
    ],
)
def test_a_registry_given_as_a_url_means_its_host(given: str, host: str) -> None:
    assert registry_host(given) == host


@pytest.mark.parametrize("given", ["", "http://", "a b", "ftp://x", "-bad-"])
def test_a_registry_that_is_no_host_is_refused(given: str) -> None:
    from lamina.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="registry"):
        registry_host(given)


def test_logout_of_a_url_forgets_the_host(tmp_path: Path) -> None:
    docker = tmp_path / "home" / ".docker"
    docker.mkdir(parents=True)
    (docker / "config.json").write_text('{"auths": {"127.0.0.1:5000": {"auth": "YTpi"}}}')
    done = _lamina(tmp_path, "logout", "http://127.0.0.1:5000/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Removing login credentials for 127.0.0.1:5000"
    assert "127.0.0.1:5000" not in (docker / "config.json").read_text()
