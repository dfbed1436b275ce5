"""An HTTP client for one registry (OCI distribution API): auth, retries, errors.

    client = RegistryClient("127.0.0.1:5000")     # scheme: https, plain http only for
                                                  # loopback or registries allowed insecure
    client.ping()                                 # GET /v2/: learns the auth scheme
    client.request("HEAD", "/v2/app/blobs/sha256:…", ok=(200, 404))

Auth is an `httpx.Auth` flow: anonymous, then on a 401 the challenge's scheme: Basic
with the saved credentials, or Bearer (`realm`, `service`, `scope`): a token fetched from
the realm and reused per scope until it expires. Every request waits for its host's
`Retry-After` (shared by all transfers through this client) and is retried with
exponential backoff and jitter on connection errors and 408/429/5xx, a few times, then
fails with one line naming what failed. Registry error codes become `RegistryError`
(or NotFoundError for unknown names, manifests and blobs) with a hint.
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import json
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from lamina.errors import LaminaError, NotFoundError
from lamina.oci import MAX_DOCUMENT_BYTES
from lamina.transport._credentials import IDENTITY_TOKEN_USER, Credentials, load_credentials
from lamina.transport._http import httpx

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_TRIES = 5
MAX_RETRY_AFTER = 60.0
_BACKOFF = 0.25
_MAX_ERROR_BODY = 64 << 10
_SCOPED_PATH = re.compile(r"^/v2/(.+?)/(?:blobs|manifests|tags)/")
_HUB_HOST = "registry-1.docker.io"


class RegistryError(LaminaError):
    """A registry refused a request; `code` is the distribution spec's error code."""

    def __init__(self, message: str, code: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.code = code


class RegistryNotFoundError(NotFoundError):
    """A registry does not know a name, manifest, blob or upload; `code` says which."""

    def __init__(self, message: str, code: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.code = code


_HINTS = {
    "UNAUTHORIZED": "log in first: `lamina login REGISTRY`",
    "DENIED": "the account has no access to this repository; check the name and permissions",
    "NAME_INVALID": "repository names are lowercase letters, digits and separators",
    "TOOMANYREQUESTS": "the registry limits requests; wait and try again",
    "NAME_UNKNOWN": "check the repository name (and that you are logged in)",
    "MANIFEST_UNKNOWN": "check the tag or digest; it does not exist in that repository",
    "BLOB_UNKNOWN": "the registry lost a blob its manifest names; push the image again",
    "DIGEST_INVALID": "the bytes sent do not match their digest: the store's copy may be"
    " damaged (`lamina fsck` checks it)",
}
_NOT_FOUND = {"NAME_UNKNOWN", "MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "BLOB_UPLOAD_UNKNOWN"}


def is_loopback(domain: str) -> bool:
    """Whether `domain` (host[:port]) names this machine: plain HTTP is allowed there."""
    host = domain
    if host.startswith("["):
        host = host[1 : host.index("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":")[0]
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def registry_error(response: httpx.Response, what: str) -> LaminaError:
    """One line a user can act on, from a failed response and its error JSON."""
    code, message = "", ""
    with contextlib.suppress(Exception):
        body = response.read()[:_MAX_ERROR_BODY]
        errors = json.loads(body).get("errors") or []
        if errors and isinstance(errors[0], dict):
            code = str(errors[0].get("code", ""))[:64]
            message = str(errors[0].get("message", ""))[:200]
    status = response.status_code
    if not code:
        code = {401: "UNAUTHORIZED", 403: "DENIED", 429: "TOOMANYREQUESTS"}.get(status, "")
    text = f"{what}: {code.lower().replace('_', ' ') or 'HTTP error'}"
    if message:
        text += f" ({message})"
    text += f" [HTTP {status}]"
    if code in _NOT_FOUND or (status == 404 and not code):
        return RegistryNotFoundError(text, code, _HINTS.get(code))
    return RegistryError(text, code, _HINTS.get(code))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, min(when - (time.time() if now is None else now), MAX_RETRY_AFTER))


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: up to 0.25 s, 0.5 s, 1 s, ... (attempt 0, 1, ...)."""
    return float(random.uniform(_BACKOFF / 2, _BACKOFF * (2**attempt)))


class HostGate:
    """One host's `Retry-After`: every request to it waits until the time it says."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._not_before = 0.0

    def block_for(self, seconds: float) -> None:
        with self._lock:
            self._not_before = max(self._not_before, time.monotonic() + seconds)

    def wait(self) -> None:
        while True:
            with self._lock:
                delay = self._not_before - time.monotonic()
            if delay <= 0:
                return
            time.sleep(delay)


@dataclass(frozen=True)
class Challenge:
    """A parsed `WWW-Authenticate` header."""

    scheme: str
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge:
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in re.finditer(r'([A-Za-z_]+)\s*=\s*(?:"([^"]*)"|([^,\s]*))', rest)
    }
    return Challenge(scheme.lower(), params)


def request_scopes(request: httpx.Request) -> tuple[str, ...]:
    """The token scopes a request needs: pull to read, pull,push to write, pull on a mount's
    source repository."""
    match = _SCOPED_PATH.match(request.url.path)
    if match is None:
        return ()
    actions = "pull" if request.method in ("GET", "HEAD") else "pull,push"
    scopes = [f"repository:{match.group(1)}:{actions}"]
    if source := request.url.params.get("from"):
        scopes.append(f"repository:{source}:pull")
    return tuple(scopes)


class TokenCache(Protocol):
    """Where bearer tokens outlive one command (`lamina.store.RegistryRecords`): per
    registry, account (user name, "" anonymous) and scopes, until they expire."""

    def token(self, registry: str, account: str, scopes: str) -> tuple[str, float] | None: ...

    def save_token(
        self, registry: str, account: str, scopes: str, token: str, expires: float
    ) -> None: ...

    def forget_token(self, registry: str, account: str, scopes: str) -> None: ...


class RegistryAuth(httpx.Auth):
    """Anonymous first; then Basic or a Bearer token per scope, as the registry asks."""

    def __init__(
        self,
        credentials: Credentials | None,
        verify: ssl.SSLContext | bool,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.credentials = credentials
        self._transport = transport
        self._verify = verify
        # A registry allowed insecure by the user: its token server is trusted as it is.
        self.insecure_realms = False
        self._lock = threading.Lock()
        self._basic = False
        self._bearer: Challenge | None = None
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self.token_requests = 0
        self.persist: TokenCache | None = None
        self.domain = ""

    def _basic_header(self) -> str | None:
        if self.credentials is None:
            return None
        return httpx.BasicAuth(self.credentials.username, self.credentials.password)._auth_header

    def _account(self) -> str:
        return self.credentials.username if self.credentials is not None else ""

    def _cached(self, scopes: tuple[str, ...]) -> str | None:
        with self._lock:
            found = self._tokens.get(scopes)
        if found is not None and found[1] > time.monotonic():
            return found[0]
        if self.persist is None:
            return None
        # An earlier command's token for these scopes, if it has not expired.
        saved = self.persist.token(self.domain, self._account(), " ".join(scopes))
        if saved is None:
            return None
        token, expires = saved
        with self._lock:
            self._tokens[scopes] = (token, time.monotonic() + (expires - time.time()))
        return token

    def _forget(self, scopes: tuple[str, ...], token: str) -> None:
        with self._lock:
            if self._tokens.get(scopes, ("",))[0] == token:
                del self._tokens[scopes]
        if self.persist is not None:
            self.persist.forget_token(self.domain, self._account(), " ".join(scopes))

    def _fetch_token(self, challenge: Challenge, scopes: tuple[str, ...]) -> str:
        realm = challenge.params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise RegistryError(f"registry auth: token realm {realm[:100]!r} is not a URL")
        realm_host = httpx.URL(realm).netloc.decode()
        plain_ok = self._verify is False or is_loopback(realm_host)
        if realm.startswith("http://") and not plain_ok:
            raise RegistryError(
                f"registry auth: token realm {realm[:100]!r} is plain HTTP",
                hint="credentials go to a token server over HTTPS only",
            )
        verify: ssl.SSLContext | bool = self._verify
        if verify is False and not is_loopback(realm_host) and not self.insecure_realms:
            verify = ssl.create_default_context()
        wanted = list(scopes)
        if (extra := challenge.params.get("scope")) and extra not in wanted:
            wanted.append(extra)
        params: list[tuple[str, str | int | float | bool | None]] = []
        if service := challenge.params.get("service"):
            params.append(("service", service))
        params += [("scope", s) for s in wanted]
        auth = None
        refresh = None
        if self.credentials is not None and self.credentials.username == IDENTITY_TOKEN_USER:
            # An identity token is an OAuth2 refresh token, exchanged by POST as Docker
            # does (docker/distribution's token spec), never sent as a Basic password.
            refresh = {"grant_type": "refresh_token", "client_id": "lamina",
                       "refresh_token": self.credentials.password,
                       "service": challenge.params.get("service", ""),
                       "scope": " ".join(wanted)}  # fmt: skip
        elif self.credentials is not None:
            auth = httpx.BasicAuth(self.credentials.username, self.credentials.password)
        for attempt in range(MAX_TRIES):
            try:
                with httpx.Client(verify=verify, timeout=30, transport=self._transport) as http:
                    if refresh is not None:
                        response = http.post(realm, data=refresh)
                    else:
                        response = http.get(realm, params=params, auth=auth)
            except httpx.TransportError:
                if attempt == MAX_TRIES - 1:
                    raise RegistryError(
                        f"registry auth: token server {httpx.URL(realm).host} unreachable"
                    ) from None
                time.sleep(backoff(attempt))
                continue
            if response.status_code in RETRY_STATUS and attempt < MAX_TRIES - 1:
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                time.sleep(retry_after or backoff(attempt))
                continue
            break
        self.token_requests += 1
        if response.status_code in (401, 403):
            raise RegistryError(
                "registry auth: the token server refused the credentials"
                f" [HTTP {response.status_code}]",
                "UNAUTHORIZED",
                _HINTS["UNAUTHORIZED"],
            )
        if response.status_code != 200:
            raise registry_error(response, "registry auth: token request")
        try:
            doc: dict[str, Any] = response.json()
            token = str(doc.get("token") or doc.get("access_token") or "")
            expires_in = float(doc.get("expires_in") or 60)
        except (ValueError, TypeError, AttributeError):
            token, expires_in = "", 0.0
        if not token:
            raise RegistryError("registry auth: the token server answered without a token")
        lifetime = max(expires_in - 10, 1)
        with self._lock:
            self._tokens[scopes] = (token, time.monotonic() + lifetime)
        if self.persist is not None:
            self.persist.save_token(self.domain, self._account(), " ".join(scopes), token,
                                    time.time() + lifetime)  # fmt: skip
        return token

    def _authorize(self, request: httpx.Request, scopes: tuple[str, ...]) -> bool:
        if self._bearer is not None:
            token = self._cached(scopes) or self._fetch_token(self._bearer, scopes)
            request.headers["Authorization"] = f"Bearer {token}"
            return True
        if self._basic and (header := self._basic_header()):
            request.headers["Authorization"] = header
            return True
        return False

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        scopes = request_scopes(request)
        if (self._bearer is not None or self.persist is not None) and (
            token := self._cached(scopes)
        ):
            request.headers["Authorization"] = f"Bearer {token}"
        elif self._basic and (header := self._basic_header()):
            request.headers["Authorization"] = header
        response = yield request
        if response.status_code != 401:
            return
        challenge = parse_challenge(response.headers.get("www-authenticate", ""))
        if challenge.scheme == "bearer":
            sent = request.headers.get("Authorization", "")
            if sent.startswith("Bearer "):
                # Refused although not expired by our clock: revoked, or the clocks
                # disagree. Forget it and ask the realm once more.
                self._forget(scopes, sent[7:])
            self._bearer = challenge
        elif challenge.scheme == "basic" and self.credentials is not None:
            if self._basic:
                return  # the credentials were sent and refused
            self._basic = True
        else:
            return
        # A streamed body cannot be sent twice: uploads authenticate on their POST first.
        replayable = isinstance(request.stream, httpx.ByteStream)
        if (replayable or request.method in ("GET", "HEAD")) and self._authorize(request, scopes):
            yield request


class RegistryClient:
    """HTTP to one registry; thread-safe; one per command and registry."""

    def __init__(
        self,
        domain: str,
        *,
        insecure: bool = False,
        credentials: Credentials | None = None,
        jobs: int = 4,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        tokens: TokenCache | None = None,
    ) -> None:
        """`transport` replaces the network (tests serve a fake registry through
        `httpx.MockTransport`); `tokens` keeps bearer tokens for later commands."""
        self.domain = domain
        self.host = _HUB_HOST if domain == "docker.io" else domain
        # Docker's rule: plain HTTP for loopback; elsewhere only when allowed insecure,
        # which also stops certificate checks (as --tls-verify=false does for podman).
        self.plain_http_allowed = insecure or is_loopback(domain)
        self.scheme = ""
        if credentials is None:
            credentials = load_credentials(domain)
        # HTTPS is checked against the system's CAs. Where plain HTTP is allowed (loopback,
        # or a registry allowed insecure), certificates are not checked either, as Docker
        # treats an insecure registry; that also spares loading the CA store.
        verify: ssl.SSLContext | bool = False
        if not self.plain_http_allowed:
            verify = ssl.create_default_context()
        self.auth = RegistryAuth(credentials, verify=verify, transport=transport)
        self.auth.insecure_realms = insecure
        self.auth.persist = tokens
        self.auth.domain = domain
        self.gate = HostGate()
        self.requests = 0
        limits = httpx.Limits(max_connections=jobs + 4, max_keepalive_connections=jobs + 4)
        self._http = httpx.Client(
            auth=self.auth,
            timeout=httpx.Timeout(timeout, connect=15.0),
            limits=limits,
            follow_redirects=True,
            verify=verify,
            transport=transport,
        )
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- where --------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """An absolute URL for a path (`/v2/...`) or a Location header (maybe relative)."""
        if not self.scheme:
            self.ping()
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.scheme}://{self.host}{path}"

    def ping(self, *, login: bool = False) -> None:
        """GET /v2/: picks the scheme (https; http only where allowed) and learns the
        auth challenge; raises when the registry is unreachable, or (`login`) refuses
        the credentials."""
        schemes = ["https", "http"] if self.plain_http_allowed else ["https"]
        last: Exception | None = None
        for scheme in schemes:
            try:
                response = self._send("GET", f"{scheme}://{self.host}/v2/", what="ping", tries=2)
            except _Unreachable as exc:
                last = exc.cause
                continue
            response.close()
            if response.status_code == 401 and login:
                raise registry_error(response, f"{self.domain}: login")
            if response.status_code >= 400 and response.status_code not in (401, 404):
                raise registry_error(response, f"{self.domain}: /v2/")
            self.scheme = scheme
            return
        hint = None
        if _name_not_found(last):
            # No address for the name: neither plain HTTP nor TLS settings would help.
            hint = f"no DNS answer for {self.host.rsplit(':', 1)[0]}: check the registry's name"
        elif not self.plain_http_allowed:
            hint = "plain HTTP is only for loopback; for another registry use --tls-verify=false"
        raise RegistryError(f"registry {self.domain} is unreachable: {_describe(last)}", hint=hint)

    # -- requests -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        ok: Iterable[int] = (200,),
        headers: dict[str, str] | None = None,
        content: bytes | Iterator[bytes] | None = None,
        params: dict[str, str] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send with retries; the response if its status is in `ok`, else an error.

        A body given as an iterator streams (its bytes are read as they are sent) and so
        is sent once: its caller retries, from what the registry says it has.
        """
        try:
            response = self._send(
                method, self.url(path), what=what, headers=headers, content=content,
                params=params, stream=stream,
                tries=MAX_TRIES if content is None or isinstance(content, bytes) else 1,
            )  # fmt: skip
        except _Unreachable as exc:
            raise RegistryError(f"{what}: {_describe(exc.cause)}") from None
        if response.status_code not in tuple(ok):
            error = registry_error(response, what)
            response.close()
            raise error
        return response

    def _send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: dict[str, str] | None = None,
        content: bytes | Iterator[bytes] | None = None,
        params: dict[str, str] | None = None,
        stream: bool = False,
        tries: int = MAX_TRIES,
    ) -> httpx.Response:
        for attempt in range(tries):
            self.gate.wait()
            request = self._http.build_request(
                method, url, headers=headers, content=content, params=params
            )
            try:
                with self._lock:
                    self.requests += 1
                response = self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                if attempt == tries - 1 or isinstance(exc, httpx.UnsupportedProtocol):
                    raise _Unreachable(exc) from None
                if isinstance(exc, httpx.ConnectError) and tries <= 2:
                    raise _Unreachable(exc) from None
                time.sleep(backoff(attempt))
                continue
            if response.status_code in RETRY_STATUS:
                wait = parse_retry_after(response.headers.get("retry-after"))
                if wait is not None:
                    self.gate.block_for(wait)  # for every request to this host
                if attempt < tries - 1:
                    if wait is None:
                        time.sleep(backoff(attempt))
                    response.close()
                    continue
            if not stream:
                try:
                    body = _bounded_body(response, what)
                except httpx.TransportError as exc:
                    if attempt == tries - 1:
                        raise _Unreachable(exc) from None
                    time.sleep(backoff(attempt))
                    continue
                finally:
                    response.close()
                return httpx.Response(
                    response.status_code, headers=response.headers, content=body,
                    request=response.request,
                )  # fmt: skip
            return response
        raise AssertionError("unreachable")  # pragma: no cover


def _bounded_body(response: httpx.Response, what: str) -> bytes:
    """A response body that is not a blob (a manifest, an error): at most
    MAX_DOCUMENT_BYTES, read before anything is allocated for more."""
    too_large = RegistryError(
        f"{what}: the registry's answer is larger than {MAX_DOCUMENT_BYTES} bytes"
    )
    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in response.iter_raw(1 << 16):
            total += len(chunk)
            if total > MAX_DOCUMENT_BYTES:
                raise too_large
            chunks.append(chunk)
    except httpx.StreamConsumed:  # a transport that answered with bytes in memory
        if len(response.content) > MAX_DOCUMENT_BYTES:
            raise too_large from None
        return response.content
    return b"".join(chunks)


class _Unreachable(Exception):
    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _name_not_found(exc: BaseException | None) -> bool:
    """Whether a connection failed because the host name has no address (socket.gaierror
    somewhere in its causes, as httpx wraps it)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, socket.gaierror):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _describe(exc: Exception | None) -> str:
    if exc is None:
        return "no answer"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
