"""The ssh-agent relay of RUN --mount=type=ssh: bytes go both ways, the socket has the
mount's mode, and nothing is left behind."""

from __future__ import annotations

import socket
import stat
import threading
from pathlib import Path

from lamina.builder._ssh import agent_proxy
from lamina.dockerfile import Mount


def test_proxy_relays_to_the_agent(tmp_path: Path) -> None:
    agent_path = tmp_path / "agent.sock"
    agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    agent.bind(str(agent_path))
    agent.listen(1)

    def answer() -> None:
        conn, _ = agent.accept()
        conn.sendall(b"agent saw " + conn.recv(100))
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    where = tmp_path / "private"
    where.mkdir()
    with agent_proxy(agent_path, where, Mount("ssh", mode=0o741)) as proxy:
        assert stat.S_IMODE(proxy.stat().st_mode) == 0o741
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(proxy))
        client.sendall(b"hello")
        assert client.recv(100) == b"agent saw hello"
        client.close()
    assert not proxy.exists()
    agent.close()
