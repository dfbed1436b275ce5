"""A registry blob's body is read straight off the socket only where that socket's bytes
are the body: plain HTTP, or TLS read through the SSLSocket that is that TLS. Through an
https proxy to an https registry (httpcore's TLS in TLS) the socket is the proxy's outer
one, whose decrypted bytes are still the registry's TLS records: h11 must read those."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest

from lamina.transport._registry_source import _body_socket


class _Network:
    """httpcore's network stream as `_body_socket` sees it: its extra info."""

    def __init__(self, sock: object, tls: object) -> None:
        self._info = {"socket": sock, "ssl_object": tls}

    def get_extra_info(self, name: str) -> object:
        return self._info.get(name)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    with a, b:
        yield a, b


def _context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def test_plain_http_reads_the_socket(pair: tuple[socket.socket, socket.socket]) -> None:
    plain, _ = pair
    assert _body_socket(_Network(plain, None)) is plain


def test_tls_reads_its_own_ssl_socket(pair: tuple[socket.socket, socket.socket]) -> None:
    with _context().wrap_socket(pair[0], do_handshake_on_connect=False) as tls:
        assert _body_socket(_Network(tls, tls._sslobj)) is tls  # type: ignore[attr-defined]


def test_tls_in_tls_through_an_https_proxy_is_left_to_h11(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    context = _context()
    with context.wrap_socket(pair[0], do_handshake_on_connect=False) as outer:
        inner = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO())  # to the registry
        assert _body_socket(_Network(outer, inner)) is None


def test_a_plain_socket_under_a_tls_object_or_an_unknown_one_is_left_to_h11(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    plain, _ = pair
    inner = _context().wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO())
    assert _body_socket(_Network(plain, inner)) is None
    with _context().wrap_socket(plain, do_handshake_on_connect=False) as tls:
        assert _body_socket(_Network(tls, None)) is None
    assert _body_socket(_Network(object(), None)) is None
    assert _body_socket(object()) is None
