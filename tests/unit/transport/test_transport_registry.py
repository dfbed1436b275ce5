"""The registry client's pure parts and a hostile registry served by httpx.MockTransport."""

from __future__ import annotations

import email.utils
import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from lamina.errors import DigestMismatchError, InvalidInputError, NotFoundError
from lamina.oci import Descriptor, Index, Platform, dump_json, media_types, parse_reference
from lamina.transport import (
    Credentials,
    RegistryClient,
    RegistryError,
    RegistrySource,
    erase_credentials,
    is_loopback,
    load_credentials,
    parse_challenge,
    parse_retry_after,
    save_credentials,
)
from lamina.transport._registry_client import request_scopes


def test_retry_after_takes_seconds_or_a_date_and_is_capped() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("86400") == 60.0
    date = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3.0 <= (parse_retry_after(date) or 0) <= 5.5
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_bearer_challenge_is_parsed_with_quoted_commas() -> None:
    challenge = parse_challenge(
        'Bearer realm="https://auth.example/token",service="reg",scope="repository:a:pull,push"'
    )
    assert challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.example/token",
        "service": "reg",
        "scope": "repository:a:pull,push",
    }


def test_scopes_follow_the_request() -> None:
    get = httpx.Request("GET", "http://r/v2/team/app/blobs/sha256:00")
    assert request_scopes(get) == ("repository:team/app:pull",)
    mount = httpx.Request("POST", "http://r/v2/team/app/blobs/uploads/?mount=x&from=other/b")
    assert request_scopes(mount) == ("repository:team/app:pull,push", "repository:other/b:pull")
    assert request_scopes(httpx.Request("GET", "http://r/v2/")) == ()


def test_plain_http_only_for_loopback() -> None:
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost") and is_loopback("[::1]:80")
    assert not is_loopback("registry.example:5000")
    assert not is_loopback("10.0.0.1:5000")


def test_credentials_round_trip_in_a_0600_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "cfg"))
    path = save_credentials("reg.example:5000", Credentials("alice", "pa:ss"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    got = load_credentials("reg.example:5000")
    assert got == Credentials("alice", "pa:ss")
    assert "pa:ss" not in repr(got)
    assert erase_credentials("reg.example:5000")
    assert load_credentials("reg.example:5000") is None


def test_a_credential_helper_named_in_the_config_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-fake"
    helper.write_text(
        "#!/bin/sh\nread server\n"
        'echo "{\\"Username\\":\\"bob\\",\\"Secret\\":\\"from-helper-$server\\"}"\n'
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"credHelpers": {"reg.example": "fake"}}))
    assert load_credentials("reg.example") == Credentials("bob", "from-helper-reg.example")


def test_broken_saved_credentials_are_an_error_that_does_not_show_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"r": {"auth": "%%secret%%"}}}))
    with pytest.raises(InvalidInputError, match="not valid base64") as info:
        load_credentials("r")
    assert "secret" not in str(info.value)


# -- a hostile registry ----------------------------------------------------------------

Handler = Callable[[httpx.Request], httpx.Response]


def _client(handler: Handler) -> RegistryClient:
    return RegistryClient(
        "127.0.0.1:5000", credentials=None, transport=httpx.MockTransport(handler)
    )


def _registry(docs: dict[str, tuple[bytes, str]], headers: dict[str, str] | None = None) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            raise httpx.ConnectError("no TLS here")
        if request.url.path == "/v2/":
            return httpx.Response(200)
        key = request.url.path.rsplit("/", 1)[1]
        if key not in docs:
            return httpx.Response(
                404, json={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "nope"}]}
            )
        body, media_type = docs[key]
        return httpx.Response(200, content=body, headers={"Content-Type": media_type,
                                                          **(headers or {})})  # fmt: skip

    return handle


def test_a_manifest_that_is_not_its_digest_is_refused() -> None:
    body = b'{"schemaVersion":2}'
    wrong = "sha256:" + "0" * 64
    client = _client(_registry({wrong: (body, media_types.OCI_MANIFEST)}))
    with pytest.raises(DigestMismatchError, match=wrong):
        RegistrySource(client, parse_reference(f"127.0.0.1:5000/a@{wrong}"))


def test_a_lying_docker_content_digest_is_refused() -> None:
    body = b'{"schemaVersion":2}'
    said = "sha256:" + "1" * 64
    client = _client(_registry({"1": (body, media_types.OCI_MANIFEST)},
                               {"Docker-Content-Digest": said}))  # fmt: skip
    with pytest.raises(DigestMismatchError, match="Docker-Content-Digest"):
        RegistrySource(client, parse_reference("127.0.0.1:5000/a:1"))


def test_an_index_without_the_wanted_platform_names_those_it_has() -> None:
    index = Index(
        (
            Descriptor(
                media_types.OCI_MANIFEST,
                "sha256:" + "2" * 64,
                10,
                platform=Platform("linux", "s390x"),
            ),
        )
    ).to_bytes()
    client = _client(_registry({"1": (index, media_types.OCI_INDEX)}))
    with pytest.raises(NotFoundError, match=r"no matching manifest for linux/riscv64 in the "
                       r"manifest list entries \(the index has linux/s390x\)"):  # fmt: skip
        RegistrySource(client, parse_reference("127.0.0.1:5000/a:1"), Platform("linux", "riscv64"))


def test_registry_error_codes_become_one_line_with_a_hint() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            raise httpx.ConnectError("no TLS here")
        if request.url.path == "/v2/":
            return httpx.Response(200)
        return httpx.Response(403, json={"errors": [{"code": "DENIED", "message": "no"}]})

    with pytest.raises(RegistryError, match=r"denied \(no\) \[HTTP 403\]") as info:
        RegistrySource(_client(handle), parse_reference("127.0.0.1:5000/a:1"))
    assert info.value.code == "DENIED" and info.value.hint


def test_a_range_answer_for_other_bytes_is_refused() -> None:
    blob = b"x" * 1000
    digest = "sha256:" + __import__("hashlib").sha256(blob).hexdigest()

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            raise httpx.ConnectError("no TLS here")
        if request.url.path == "/v2/":
            return httpx.Response(200)
        return httpx.Response(206, content=blob[10:],
                              headers={"Content-Range": "bytes 10-999/1000"})  # fmt: skip

    from lamina.transport import BlobStream

    stream = BlobStream(_client(handle), "a", Descriptor(media_types.OCI_LAYER, digest, 1000), 500)
    with pytest.raises(RegistryError, match="bytes from 500"):
        stream.read()


def test_manifest_media_type_comes_from_the_document_when_the_header_lies() -> None:
    index = dump_json({"schemaVersion": 2, "manifests": []})
    client = _client(_registry({"1": (index, "text/plain")}))
    with pytest.raises(NotFoundError, match="no matching manifest for"):
        RegistrySource(client, parse_reference("127.0.0.1:5000/a:1"))


def test_a_refused_bearer_token_is_fetched_again_once() -> None:
    tokens: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https" and request.url.host == "127.0.0.1":
            raise httpx.ConnectError("no TLS here")
        if request.url.path == "/token":
            tokens.append(f"t{len(tokens)}")
            return httpx.Response(200, json={"token": tokens[-1], "expires_in": 300})
        challenge = {"WWW-Authenticate": 'Bearer realm="http://127.0.0.1:5000/token"'}
        # the first token is refused (revoked), the second accepted
        if request.headers.get("Authorization") != "Bearer t1":
            return httpx.Response(401, headers=challenge)
        return httpx.Response(200, json={})

    client = _client(handle)
    assert client.request("GET", "/v2/a/tags/list", what="tags").status_code == 200
    assert tokens == ["t0", "t1"]


def test_a_manifest_answer_larger_than_the_cap_is_refused_while_it_streams() -> None:
    from lamina.oci import MAX_DOCUMENT_BYTES

    sent = [0]

    def endless() -> Iterator[bytes]:
        while sent[0] < 4 * MAX_DOCUMENT_BYTES:
            sent[0] += 1 << 16
            yield b"x" * (1 << 16)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            raise httpx.ConnectError("no TLS here")
        if request.url.path == "/v2/":
            return httpx.Response(200)
        return httpx.Response(200, content=endless(),
                              headers={"Content-Type": media_types.OCI_MANIFEST})  # fmt: skip

    with pytest.raises(RegistryError, match="larger than"):
        RegistrySource(_client(handle), parse_reference("127.0.0.1:5000/a:1"))
    assert sent[0] <= MAX_DOCUMENT_BYTES + (1 << 17)


@pytest.mark.parametrize(
    "key", ["reg.example:5000", "https://reg.example:5000", "https://reg.example:5000/v2/",
            "http://reg.example:5000/"],
)  # fmt: skip
def test_saved_credentials_are_found_under_any_url_of_their_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    # docker/cli's file store compares each key's host (ConvertToHostname), so an entry
    # another tool wrote as a URL is still the host's; logout removes it too.
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"auths": {key: {"auth": "YTpi"}}}))
    assert load_credentials("reg.example:5000") == Credentials("a", "b")
    assert load_credentials("reg.example") is None
    assert erase_credentials("reg.example:5000")
    assert json.loads((tmp_path / "config.json").read_text())["auths"] == {}


def test_a_config_that_is_a_symlink_stays_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Dotfile managers link ~/.docker/config.json; Docker writes through the link.
    real = tmp_path / "dotfiles" / "docker.json"
    real.parent.mkdir()
    real.write_text(json.dumps({"auths": {}, "detachKeys": "ctrl-x"}))
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "config.json").symlink_to(real)
    monkeypatch.setenv("DOCKER_CONFIG", str(cfg))
    save_credentials("reg.example", Credentials("alice", "pw"))
    assert (cfg / "config.json").is_symlink()
    doc = json.loads(real.read_text())
    assert doc["detachKeys"] == "ctrl-x" and "reg.example" in doc["auths"]
    assert stat.S_IMODE(real.stat().st_mode) == 0o600


def _index(entries: list[tuple[str, str]]) -> Index:
    """An index with one linux entry per (architecture, variant), in that order."""
    return Index(tuple(
        Descriptor(media_types.OCI_MANIFEST, "sha256:" + str(n) * 64, 10,
                   platform=Platform("linux", arch, variant))
        for n, (arch, variant) in enumerate(entries)
    ))  # fmt: skip


@pytest.mark.parametrize(
    ("entries", "want", "picked"),
    [
        ([("arm64", "v8")], "linux/arm64", 0),
        ([("arm64", "")], "linux/arm64/v8", 0),
        ([("arm64", "")], "linux/aarch64", 0),
        ([("amd64", "")], "linux/x86_64", 0),
        ([("arm", "v6"), ("arm", "v7")], "linux/arm", 1),
        ([("arm", "v7"), ("arm", "v6")], "linux/armel", 1),
        # an arm/v7 request falls back to v6, then v5, the closest first
        ([("arm", "v6")], "linux/arm", 0),
        ([("arm", "v5"), ("arm", "v6"), ("arm", "v8")], "linux/arm/v7", 1),
        ([("arm", "v5"), ("arm64", "")], "linux/arm/v6", 0),
        ([("amd64", "v4"), ("amd64", "v2"), ("amd64", "")], "linux/amd64/v3", 1),
    ],
)
def test_the_platform_is_picked_as_containerd_matches_it(
    entries: list[tuple[str, str]], want: str, picked: int
) -> None:
    # Both sides are normalised first: arm64's v8 is no variant, arm alone is arm/v7.
    from lamina.transport import pick_platform

    index = _index(entries)
    assert pick_platform(index, "x", Platform.parse(want)) == index.manifests[picked]


@pytest.mark.parametrize(
    ("entries", "want"),
    [
        ([("arm", "v7"), ("arm", "v8")], "linux/arm/v6"),
        ([("arm", "v6")], "linux/arm/v5"),
        ([("arm64", "")], "linux/arm/v7"),
        ([("amd64", "v4")], "linux/amd64/v3"),
    ],
)
def test_no_newer_variant_stands_in_for_an_older_one(
    entries: list[tuple[str, str]], want: str
) -> None:
    from lamina.errors import NotFoundError
    from lamina.transport import pick_platform

    index = _index(entries)
    with pytest.raises(NotFoundError, match="no matching manifest"):
        pick_platform(index, "x", Platform.parse(want))
