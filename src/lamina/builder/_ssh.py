"""RUN --mount=type=ssh: the build's ssh-agent, reached through a socket of the mount's own.

BuildKit forwards the client's agent into the step over a socket it creates with the
mount's mode, uid and gid (0600 root by default; testSSHSocketParams checks them). The
user's own socket is never chmodded or chowned: a proxy socket in a private directory
accepts the step's connections and relays each to the agent, byte for byte.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from lamina.dockerfile import Mount

_CHUNK = 1 << 16


def _relay(a: socket.socket, b: socket.socket) -> None:
    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ, b)
    sel.register(b, selectors.EVENT_READ, a)
    try:
        while True:
            for key, _ in sel.select():
                src: socket.socket = key.fileobj  # type: ignore[assignment]
                data = src.recv(_CHUNK)
                if not data:
                    return
                key.data.sendall(data)
    except OSError:
        return
    finally:
        sel.close()
        a.close()
        b.close()


@contextlib.contextmanager
def agent_proxy(agent: Path, where: Path, mount: Mount) -> Iterator[Path]:
    """A socket at `where` that relays to the ssh-agent at `agent` while the block runs."""
    path = where / f"ssh-{mount.id or 'default'}.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    os.chown(path, mount.uid or 0, mount.gid or 0)
    os.chmod(path, 0o600 if mount.mode is None else mount.mode)
    server.listen(8)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(str(agent))
            except OSError:
                client.close()
                upstream.close()
                continue
            threading.Thread(target=_relay, args=(client, upstream), daemon=True).start()

    thread = threading.Thread(target=serve, name="ssh-agent-proxy", daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
