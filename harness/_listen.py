"""Where the supervisor listens for the outside world: an address, or a socket bound before.

A rootless run re-executes itself inside a user namespace with a network namespace of its
own, where an address on 127.0.0.1 is not the user's. So the first process binds the
listening sockets in the user's network namespace and hands them over (an inherited file
descriptor keeps the namespace it was made in); the supervisor accepts on them there.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import trio

from harness._errors import UsageError

Listen = tuple[str, int] | socket.socket
"""A (host, port) to bind (port 0: any free one), or a socket already bound and listening."""

_ENV = "HARNESS_LISTEN_FDS"  # "name=fd,name=fd": sockets handed over by the parent process
_BACKLOG = 4096


def bind(text: str, option: str) -> socket.socket | None:
    """A listening TCP socket at `text`, HOST:PORT (HOST defaults to 127.0.0.1; port 0: any
    free one), or None for "off"; a one-line UsageError naming `option` if it cannot be."""
    if text == "off":
        return None
    if text.startswith("["):  # [IPv6]:PORT
        host, closed, rest = text[1:].partition("]")
        sep, port = rest[:1], rest[1:]
        if not closed or sep != ":":
            raise UsageError(f"{option} {text!r}: expected [IPv6]:PORT")
    else:
        host, sep, port = text.rpartition(":")
        if ":" in host:
            raise UsageError(f"{option} {text!r}: an IPv6 address goes in brackets, "
                             "e.g. [::1]:9090")
    if not sep or not port.isdigit():
        raise UsageError(f"{option} {text!r}: expected HOST:PORT or off")
    if int(port) > 65535:
        raise UsageError(f"{option} {text!r}: port {int(port)} is past 65535")
    host = host or "127.0.0.1"
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(
            host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise UsageError(f"{option} {where}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(_BACKLOG)
    except OSError as exc:
        sock.close()
        raise UsageError(f"{option} {where}: {exc.strerror or exc}") from None
    return sock


def hand_over(sockets: Mapping[str, socket.socket]) -> None:
    """Let the program this process execs next accept on `sockets` (see `inherited`)."""
    for sock in sockets.values():
        sock.set_inheritable(True)
    os.environ[_ENV] = ",".join(f"{name}={sock.fileno()}" for name, sock in sockets.items())


def inherited() -> dict[str, socket.socket]:
    """The sockets a parent process handed over with `hand_over`, by name (read once)."""
    text = os.environ.pop(_ENV, "")
    out = {}
    for item in filter(None, text.split(",")):
        name, _, fd = item.partition("=")
        sock = socket.socket(fileno=int(fd))
        sock.set_inheritable(False)  # not on to the instances
        out[name] = sock
    return out


async def open_listeners(where: Listen) -> list[trio.SocketListener]:
    """Trio listeners for `where`: bound now, or the given socket."""
    if isinstance(where, socket.socket):
        return [trio.SocketListener(trio.socket.from_stdlib_socket(where))]
    host, port = where
    return await trio.open_tcp_listeners(port, host=host, backlog=_BACKLOG)


def address(listener: trio.SocketListener) -> tuple[str, int]:
    """The (host, port) a listener accepts on."""
    host, port = listener.socket.getsockname()[:2]
    return host, port
