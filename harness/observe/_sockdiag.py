"""The TCP sockets of many network namespaces from one process, without running `ss` in
each: the kernel's sock_diag netlink interface (what `ss` itself uses), asked from a
short-lived thread that enters each namespace in turn (setns affects only that thread,
which ends with the sample). The records are those `parse_ss` makes of `ss -tinH`."""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Iterable
from typing import Any

from harness._linux import setns_fd

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_INET_DIAG_INFO = 2
# TCP states (include/net/tcp_states.h) as `ss` names them
_STATE_NAMES = {1: "ESTAB", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2",
                6: "TIME-WAIT", 7: "UNCONN", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN",
                11: "CLOSING"}  # fmt: skip
# `ss`'s default: every state but LISTEN, CLOSE, TIME-WAIT and SYN-RECV
_STATES = sum(1 << s for s in _STATE_NAMES) & ~(1 << 10 | 1 << 7 | 1 << 6 | 1 << 3)
_HDR = struct.Struct("=IHHII")  # nlmsghdr
_REQ = struct.Struct("=BBBBI48s")  # inet_diag_req_v2 (family, protocol, ext, pad, states, id)
_MSG = struct.Struct("=BBBB2s2s16s16sIQIIIII")  # inet_diag_msg
# struct tcp_info fields (include/uapi/linux/tcp.h): name, offset, format, scale
_TCP_INFO = (("rto_ms", 8, "I", 1e-3), ("mss", 16, "I", None), ("unacked", 24, "I", None),
             ("lost", 32, "I", None), ("retrans", 36, "I", None), ("rtt_ms", 68, "I", 1e-3),
             ("rttvar_ms", 72, "I", 1e-3), ("ssthresh", 76, "I", None), ("cwnd", 80, "I", None),
             ("retrans_total", 100, "I", None), ("bytes_acked", 120, "Q", None),
             ("bytes_received", 128, "Q", None), ("segs_out", 136, "I", None),
             ("segs_in", 140, "I", None), ("minrtt_ms", 148, "I", 1e-3),
             ("bytes_sent", 200, "Q", None), ("bytes_retrans", 208, "Q", None))  # fmt: skip


def _address(family: int, raw: bytes, port: bytes) -> str:
    p = int.from_bytes(port, "big")
    if family == socket.AF_INET:
        return f"{socket.inet_ntop(family, raw[:4])}:{p}"
    return f"[{socket.inet_ntop(family, raw)}]:{p}"


def _tcp_info(data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, offset, fmt, scale in _TCP_INFO:
        if offset + struct.calcsize(fmt) <= len(data):
            (v,) = struct.unpack_from("=" + fmt, data, offset)
            out[name] = round(v * scale, 3) if scale is not None else v
    if out.get("ssthresh", 0) >= 0x7FFFFFFF:  # "infinite": `ss` leaves it out
        del out["ssthresh"]
    if out.get("rtt_ms") == 0:  # no round trip measured yet (e.g. SYN-SENT): `ss` says none
        out.pop("rtt_ms")
        out.pop("rttvar_ms", None)
    if out.get("minrtt_ms", 0) >= 0xFFFFFFFF * 1e-3:  # ~0U: unset, `ss` leaves it out too
        del out["minrtt_ms"]
    return out


def _dump(family: int) -> list[dict[str, Any]]:
    """The TCP sockets of `family` in the calling thread's network namespace."""
    records: list[dict[str, Any]] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as s:
        req = _REQ.pack(family, socket.IPPROTO_TCP, 1 << (_INET_DIAG_INFO - 1), 0, _STATES,
                        b"\0" * 48)
        s.send(_HDR.pack(_HDR.size + len(req), _SOCK_DIAG_BY_FAMILY,
                         _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0) + req)
        while True:
            data = s.recv(1 << 16)
            at = 0
            while at + _HDR.size <= len(data):
                length, kind, _, _, _ = _HDR.unpack_from(data, at)
                if kind == _NLMSG_DONE:
                    return records
                if kind == _NLMSG_ERROR:
                    (errno,) = struct.unpack_from("=i", data, at + _HDR.size)
                    if errno:
                        raise OSError(-errno, os.strerror(-errno))
                    return records
                body = data[at + _HDR.size: at + length]
                fam, state, _, _, sport, dport, src, dst, *_ = _MSG.unpack_from(body)
                rec: dict[str, Any] = {"state": _STATE_NAMES.get(state, "ESTAB"),
                                       "local": _address(fam, src, sport),
                                       "peer": _address(fam, dst, dport)}
                a = _MSG.size
                while a + 4 <= len(body):  # the attributes: tcp_info
                    alen, atype = struct.unpack_from("=HH", body, a)
                    if alen < 4:
                        break
                    if atype == _INET_DIAG_INFO:
                        rec.update(_tcp_info(body[a + 4: a + alen]))
                    a += (alen + 3) & ~3
                rec.setdefault("retrans_total", 0)
                records.append(rec)
                at += (length + 3) & ~3
            if not data:
                return records


def _sockets_here() -> list[dict[str, Any]]:
    return _dump(socket.AF_INET) + _dump(socket.AF_INET6)


def tcp_sockets(namespaces: Iterable[str | None]) -> dict[str | None, list[dict[str, Any]] | OSError]:
    """The TCP sockets of each named network namespace (None: this process's own), or
    the error that kept one from being read, all from one thread of this process."""
    result: dict[str | None, list[dict[str, Any]] | OSError] = {}
    wanted = list(dict.fromkeys(namespaces))

    def work() -> None:
        for ns in wanted:
            if ns is None:
                try:
                    result[ns] = _sockets_here()
                except OSError as e:
                    result[ns] = e
        named = [ns for ns in wanted if ns is not None]
        if not named:
            return
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            for ns in named:
                try:
                    fd = os.open(os.path.join("/run/netns", ns), os.O_RDONLY)
                    try:
                        setns_fd(fd)
                    finally:
                        os.close(fd)
                    result[ns] = _sockets_here()
                except OSError as e:
                    result[ns] = OSError(e.errno, f"network namespace {ns!r}: {e.strerror}")
        finally:
            try:
                setns_fd(home)  # the thread ends next anyway
            finally:
                os.close(home)

    thread = threading.Thread(target=work, name="harness-sockdiag", daemon=True)
    thread.start()
    thread.join()
    return result
