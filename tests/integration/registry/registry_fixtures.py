"""Real registries and a hostile proxy for the registry tests.

- `Registry`: Debian's docker-registry (CNCF distribution 2.8) on 127.0.0.1, a free port,
  filesystem storage in a temp dir; optionally htpasswd basic auth, or HTTPS only.
- `Proxy`: an HTTP proxy in front of a registry that counts requests and bytes and
  injects faults: drop the connection after N body bytes, answer 429 + Retry-After,
  flip one byte, answer a Range request with 200 and the whole body, throttle; and in
  `bearer` mode demands tokens from its own small token server (`/token`).
"""

from __future__ import annotations

import base64
import http.client
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def htpasswd_line(user: str, password: str) -> str:
    # bcrypt through the C library's crypt (libxcrypt): what `htpasswd -B` writes,
    # without another package.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        return f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))}"


class Registry:
    """A docker-registry process; `stop()` and `start()` keep its storage."""

    def __init__(
        self, base: Path, *, users: dict[str, str] | None = None, tls: bool = False
    ) -> None:
        self.base = base
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.storage = base / "storage"
        self.storage.mkdir(parents=True, exist_ok=True)
        auth = ""
        if users:
            (base / "htpasswd").write_text(
                "".join(htpasswd_line(u, p) + "\n" for u, p in users.items())
            )
            auth = f"auth:\n  htpasswd:\n    realm: lamina-test\n    path: {base / 'htpasswd'}\n"
        (base / "config.yml").write_text(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n  secret: {secrets.token_hex(16)}\n"
            + (self._tls_config() if tls else "")
            + auth
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def _tls_config(self) -> str:
        """HTTPS only, with a self-signed certificate for 127.0.0.1 (made by openssl)."""
        cert, key = self.base / "cert.pem", self.base / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        return f"  tls:\n    certificate: {cert}\n    key: {key}\n"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(self.base / "config.yml")],
            stdout=subprocess.DEVNULL,
            stderr=open(self.base / "registry.log", "ab"),  # noqa: SIM115
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not start: {self.base / 'registry.log'}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@dataclass
class Faults:
    """What the proxy does to the next matching responses (counts go down as used)."""

    drop_after: int | None = None  # blob GET: close after this many body bytes (once)
    too_many: int = 0  # answer this many requests with 429
    retry_after: str = "2"
    corrupt: str = ""  # GET of the blob with this digest: flip one byte (once)
    range_as_200: bool = False  # answer every Range request with 200 and the whole blob
    throttle: float = 0.0  # seconds per 64 KiB of blob bodies, both ways
    fail_5xx: int = 0  # answer this many requests with 503 (no Retry-After)
    chunked: bool = False  # blob GETs: the body in chunked transfer encoding
    short_body: int | None = None  # next blob GET (200): only this many bytes, said so (once)


@dataclass
class Seen:
    method: str
    path: str
    status: int
    sent: int  # response body bytes sent to the client
    received: int  # request body bytes from the client
    headers: dict[str, str] = field(default_factory=dict)
    port: int = 0  # the client's port: which connection the request came on


class Proxy:
    """Forwards to `upstream`, records every exchange in `log`, applies `faults`."""

    def __init__(self, upstream: str, *, bearer: bool = False) -> None:
        self.upstream = upstream
        self.faults = Faults()
        self.log: list[Seen] = []
        self.bearer = bearer
        self.tokens: set[str] = set()
        self.token_requests: list[dict[str, Any]] = []
        self.users = {"bob": "hunter2"}
        self.refresh_tokens = {"rt-for-bob"}  # OAuth2 identity tokens (`identitytoken`)
        self.lock = threading.Lock()
        # (start, end) of each blob GET answered, by the proxy's clock
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy.handle(self)

            do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.log.clear()
            self.faults = Faults()

    # -- accounting -------------------------------------------------------------------

    def blob_gets(self) -> list[Seen]:
        return [s for s in self.log if s.method == "GET" and "/blobs/sha256:" in s.path]

    def bytes_down(self) -> int:
        return sum(s.sent for s in self.blob_gets())

    def bytes_up(self) -> int:
        return sum(s.received for s in self.log if s.method in ("PATCH", "PUT", "POST"))

    def count(self, method: str, part: str) -> int:
        return sum(1 for s in self.log if s.method == method and part in s.path)

    # -- the proxy --------------------------------------------------------------------

    def _token(self, handler: BaseHTTPRequestHandler, body: bytes = b"") -> None:
        header = handler.headers.get("Authorization", "")
        user = ""
        if handler.command == "POST":
            # Docker's OAuth2 flow for an identity token: a form with a refresh token.
            from urllib.parse import parse_qs

            form = parse_qs(body.decode())
            if (
                form.get("grant_type") != ["refresh_token"]
                or not set(form.get("refresh_token", [])) & self.refresh_tokens
            ):
                self._reply(handler, 401, b'{"details":"bad refresh token"}')
                return
            user = "<refresh>"
            header = ""
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if self.users.get(user) != password:
                self._reply(handler, 401, b'{"details":"bad credentials"}')
                return
        token = secrets.token_hex(16)
        with self.lock:
            self.tokens.add(token)
            self.token_requests.append({"path": handler.path, "user": user})
        self._reply(handler, 200, b'{"token":"' + token.encode() + b'","expires_in":300}')

    def _reply(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        handler.send_response(status)
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = b""
        faults = self.faults
        while len(body) < length:
            piece = handler.rfile.read(min(65536, length - len(body)))
            if not piece:
                break
            body += piece
            if faults.throttle:
                time.sleep(faults.throttle)
        if len(body) < length:
            # The client went away mid-body: like nginx with request buffering (its
            # default), nothing incomplete reaches the registry.
            handler.close_connection = True
            return
        if handler.path.startswith("/token"):
            self._token(handler, body)
            return
        if self.bearer and handler.path.startswith("/v2/"):
            auth = handler.headers.get("Authorization", "")
            if not (auth.startswith("Bearer ") and auth[7:] in self.tokens):
                realm = f"http://{self.host}/token"
                self._reply(
                    handler,
                    401,
                    b'{"errors":[{"code":"UNAUTHORIZED","message":"token"}]}',
                    {"WWW-Authenticate": f'Bearer realm="{realm}",service="test"'},
                )
                return
        with self.lock:
            if faults.too_many > 0 and handler.path != "/v2/":
                faults.too_many -= 1
                self.log.append(Seen(handler.command, handler.path, 429, 0, len(body)))
                self._reply(
                    handler,
                    429,
                    b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow"}]}',
                    {"Retry-After": faults.retry_after},
                )
                return
            if faults.fail_5xx > 0 and handler.path != "/v2/":
                faults.fail_5xx -= 1
                self.log.append(Seen(handler.command, handler.path, 503, 0, len(body)))
                self._reply(handler, 503, b"{}")
                return
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "authorization"}
        is_blob_get = handler.command == "GET" and "/blobs/sha256:" in handler.path
        if faults.range_as_200 and is_blob_get:
            headers.pop("Range", None)
            headers.pop("range", None)
        conn = http.client.HTTPConnection(self.upstream, timeout=60)
        try:
            conn.request(handler.command, handler.path, body=body or None, headers=headers)
            response = conn.getresponse()
            handler.send_response(response.status)
            resp_headers = response.getheaders()
            has_length = any(k.lower() == "content-length" for k, _ in resp_headers)
            data = b"" if has_length or handler.command == "HEAD" else response.read()
            chunked = faults.chunked and is_blob_get
            short = faults.short_body if is_blob_get and response.status == 200 else None
            for k, v in resp_headers:
                if k.lower() in ("transfer-encoding", "connection"):
                    continue
                if (chunked or short is not None) and k.lower() == "content-length":
                    continue
                handler.send_header(k, v)
            if chunked:
                handler.send_header("Transfer-Encoding", "chunked")
            elif short is not None:
                faults.short_body = None
                handler.send_header("Content-Length", str(short))
            elif not has_length:
                handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            sent = 0
            out = handler.wfile
            if chunked:
                out = _ChunkedWriter(handler.wfile)  # type: ignore[assignment]
            if handler.command != "HEAD":
                if data:
                    out.write(data)
                    sent = len(data)
                while chunk := response.read(65536):
                    if short is not None:
                        chunk = chunk[: short - sent]
                        if not chunk:
                            break
                    if (
                        is_blob_get
                        and faults.corrupt
                        and faults.corrupt in handler.path
                        and sent + len(chunk) > 100
                    ):
                        faults.corrupt = ""
                        at = 100 - sent if sent < 100 else 0
                        chunk = chunk[:at] + bytes([chunk[at] ^ 0xFF]) + chunk[at + 1 :]
                    drop = faults.drop_after
                    if is_blob_get and drop is not None and sent + len(chunk) >= drop:
                        cut = drop - sent
                        out.write(chunk[:cut])
                        sent += cut
                        faults.drop_after = None
                        handler.wfile.flush()
                        handler.close_connection = True
                        handler.connection.shutdown(socket.SHUT_RDWR)
                        break
                    out.write(chunk)
                    sent += len(chunk)
                    if faults.throttle and is_blob_get:
                        time.sleep(faults.throttle)
                else:
                    if chunked:
                        handler.wfile.write(b"0\r\n\r\n")
            with self.lock:
                self.log.append(
                    Seen(
                        handler.command,
                        handler.path,
                        response.status,
                        sent,
                        len(body),
                        {k.lower(): v for k, v in handler.headers.items()},
                        handler.client_address[1],
                    )
                )
        except OSError:
            handler.close_connection = True
        finally:
            conn.close()


class _ChunkedWriter:
    """Writes each piece as one chunk of HTTP/1.1 chunked transfer encoding."""

    def __init__(self, out: Any) -> None:
        self._out = out

    def write(self, data: bytes) -> None:
        if data:
            self._out.write(b"%x\r\n" % len(data) + data + b"\r\n")


def lamina_cli(root: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`lamina --root ROOT ARGS...` in a child process (this test's environment)."""
    return subprocess.run(
        [sys.executable, "-m", "lamina", "--root", str(root), *args],
        input=stdin, capture_output=True, text=True, env=dict(os.environ), timeout=300,
    )  # fmt: skip


def docker_config_env(tmp: Path) -> dict[str, str]:
    """HOME and DOCKER_CONFIG in a temp dir: no test reads or writes the real ones."""
    (tmp / "home" / ".docker").mkdir(parents=True, exist_ok=True)
    (tmp / "home" / ".docker" / "config.json").write_text('{"auths": {}}')
    return {"HOME": str(tmp / "home"), "DOCKER_CONFIG": str(tmp / "home" / ".docker")}


__all__ = [
    "Faults",
    "Proxy",
    "Registry",
    "Seen",
    "docker_config_env",
    "free_port",
    "lamina_cli",
    "os",
]


def tree_listing(root: Path) -> dict[str, tuple[object, ...]]:
    """What a tree holds, path by path: type, mode, owner, and content or link target."""
    import hashlib
    import stat

    listing: dict[str, tuple[object, ...]] = {}
    for top, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = os.path.join(top, name)
            st = os.lstat(path)
            detail: object = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    detail = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                detail = os.readlink(path)
            kind = stat.S_IFMT(st.st_mode)
            rel = os.path.relpath(path, root)
            listing[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, detail)
    return listing


def run(*args: str | Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=env, timeout=300
    )
    if done.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout
