"""Registry credentials in Docker's `config.json` (`$DOCKER_CONFIG` or `~/.docker`).

`auths[host].auth` is base64 of `user:password`; `credHelpers[host]` or `credsStore` name a
`docker-credential-<name>` program that answers `get`/`store`/`erase` on stdin (Docker's
credential-helper protocol). Credentials never appear in a message, a log or an error:
`Credentials.__repr__` hides the secret.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lamina.errors import InvalidInputError, LaminaError

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
IDENTITY_TOKEN_USER = "<token>"  # Docker's user name for an identity (refresh) token
_MAX_CONFIG_BYTES = 4 << 20


@dataclass(frozen=True)
class Credentials:
    """A user name and a secret (password or identity token)."""

    username: str
    password: str = field(repr=False)


def config_dir() -> Path:
    """Where Docker's client config lives: `$DOCKER_CONFIG`, else `~/.docker`."""
    if env := os.environ.get("DOCKER_CONFIG"):
        return Path(env)
    return Path(os.environ.get("HOME") or Path.home()) / ".docker"


def registry_host(text: str) -> str:
    """The registry host a `login`/`logout` argument names, as docker/cli's
    ConvertToHostname reads it: `http(s)://` and any path dropped, so
    `https://registry.example.com:5000/v2/` is `registry.example.com:5000`; Docker Hub's
    names (`index.docker.io`, `https://index.docker.io/v1/`) are `docker.io`."""
    from lamina.oci import parse_reference

    host = text
    for scheme in ("https://", "http://"):
        if host.startswith(scheme):
            host = host[len(scheme) :]
            break
    host = host.split("/", 1)[0]
    if host == "index.docker.io":
        host = "docker.io"
    try:
        parse_reference(f"{host}/x")
    except InvalidInputError:
        raise InvalidInputError(
            f"invalid registry {text[:100]!r}: not a host[:port]",
            hint="give the registry as HOST[:PORT], for example localhost:5000",
        ) from None
    if not host:
        raise InvalidInputError("invalid registry '': not a host[:port]")
    return host


def _key(registry: str) -> str:
    return DOCKER_HUB_KEY if registry == "docker.io" else registry


def _read_config(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return {}
    if len(data) > _MAX_CONFIG_BYTES:
        raise InvalidInputError(f"{path}: larger than {_MAX_CONFIG_BYTES} bytes")
    try:
        doc = json.loads(data or b"{}")
    except ValueError:
        raise InvalidInputError(
            f"{path}: not valid JSON", hint="fix or remove the file, then `lamina login` again"
        ) from None
    if not isinstance(doc, dict):
        raise InvalidInputError(f"{path}: expected a JSON object")
    return doc


def _write_config(path: Path, doc: dict[str, Any]) -> None:
    """Replace the file atomically, mode 0600 from the first byte; a config.json that is
    a symlink (a dotfile manager's) is written through, as Docker does, not replaced."""
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".config.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(doc, out, indent="\t")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o600)
        os.rename(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def _helper_name(doc: dict[str, Any], key: str) -> str | None:
    helpers = doc.get("credHelpers")
    if isinstance(helpers, dict) and isinstance(helpers.get(key), str):
        return str(helpers[key])
    store = doc.get("credsStore")
    return store if isinstance(store, str) and store else None


def _helper(name: str, action: str, payload: str) -> str:
    program = f"docker-credential-{name}"
    try:
        done = subprocess.run(
            [program, action], input=payload, capture_output=True, text=True, timeout=60
        )
    except FileNotFoundError:
        raise LaminaError(
            f"credential helper {program} is named in the Docker config but not installed",
            hint="install it, or remove credsStore/credHelpers from config.json",
        ) from None
    if done.returncode != 0:
        # The helper's output is not shown: it may echo what it was given.
        raise LaminaError(f"credential helper {program} {action} failed (exit {done.returncode})")
    return done.stdout


def _host_of(key: object) -> str | None:
    try:
        return registry_host(key) if isinstance(key, str) else None
    except InvalidInputError:
        return None


def _entries(auths: dict[str, Any], key: str) -> list[str]:
    """The `auths` keys that are `key`'s: itself first, then any URL of the same host
    (docker/cli's file store compares hosts, so `https://host/v2/` counts)."""
    host = registry_host(key)
    return [key] * (key in auths) + [k for k in auths if k != key and _host_of(k) == host]


def load_credentials(registry: str) -> Credentials | None:
    """The credentials Docker's config holds for `registry` (a host[:port]), or None."""
    path = config_dir() / "config.json"
    doc = _read_config(path)
    key = _key(registry)
    helper = _helper_name(doc, key)
    if helper is not None:
        try:
            out = _helper(helper, "get", key)
        except LaminaError:
            out = ""
        if out:
            try:
                got = json.loads(out)
                return Credentials(str(got["Username"]), str(got["Secret"]))
            except (ValueError, KeyError, TypeError):
                return None
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        return None
    entry = next((auths[name] for name in _entries(auths, key)), None)
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("identitytoken"), str) and entry["identitytoken"]:
        return Credentials(IDENTITY_TOKEN_USER, entry["identitytoken"])
    raw = entry.get("auth")
    if not isinstance(raw, str) or not raw:
        return None
    try:
        user, sep, password = base64.b64decode(raw, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise InvalidInputError(
            f"{path}: the saved credentials for {registry} are not valid base64 user:password",
            hint=f"`lamina login {registry}` again",
        ) from None
    return Credentials(user, password) if sep else None


def save_credentials(registry: str, credentials: Credentials) -> Path:
    """Keep `credentials` for `registry` (through its helper if the config names one)."""
    path = config_dir() / "config.json"
    doc = _read_config(path)
    key = _key(registry)
    helper = _helper_name(doc, key)
    if helper is not None:
        payload = json.dumps(
            {"ServerURL": key, "Username": credentials.username, "Secret": credentials.password}
        )
        _helper(helper, "store", payload)
        return path
    auths = doc.setdefault("auths", {})
    if not isinstance(auths, dict):
        raise InvalidInputError(f"{path}: auths must be an object")
    token = f"{credentials.username}:{credentials.password}".encode()
    auths[key] = {"auth": base64.b64encode(token).decode()}
    _write_config(path, doc)
    return path


def erase_credentials(registry: str) -> bool:
    """Forget `registry`'s credentials; whether there were any."""
    path = config_dir() / "config.json"
    doc = _read_config(path)
    key = _key(registry)
    helper = _helper_name(doc, key)
    found = False
    if helper is not None:
        with contextlib.suppress(LaminaError):
            _helper(helper, "erase", key)
            found = True
    auths = doc.get("auths")
    if isinstance(auths, dict):
        for name in _entries(auths, key):
            del auths[name]
            found = True
        _write_config(path, doc)
    return found
