"""A guard that makes any outbound connection other than to allowed local ports fail."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterator


class OutboundConnectionBlocked(AssertionError):
    """Raised (failing the test) when code under test tries to reach anything but the local
    emulator or a server the test itself started."""


_allowed_ports: set[int] = set()
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def allow_local_port(port: int) -> None:
    _allowed_ports.add(port)


def _check_address(address) -> None:
    if not isinstance(address, tuple):  # AF_UNIX sockets (e.g. a local database)
        return
    host, port = address[0], address[1]
    if not (_is_local_name(host) and port in _allowed_ports):
        raise OutboundConnectionBlocked(
            f"A test tried to connect to {host}:{port}. Only the local Entra ID emulator and "
            "servers started by the tests may be reached."
        )


def _is_local_name(host) -> bool:
    if host is None or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.decode() if isinstance(host, bytes) else host).is_loopback
    except ValueError:
        return False


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_local_name(host):
        raise OutboundConnectionBlocked(
            f"A test tried to resolve {host!r}. Tests never leave this machine."
        )
    return _real_getaddrinfo(host, *args, **kwargs)


def _guarded_connect(self, address):
    _check_address(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    _check_address(address)
    return _real_connect_ex(self, address)


@contextlib.contextmanager
def guard_network() -> Iterator[None]:
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    socket.getaddrinfo = _guarded_getaddrinfo
    yield
    socket.socket.connect = _real_connect
    socket.socket.connect_ex = _real_connect_ex
    socket.getaddrinfo = _real_getaddrinfo
