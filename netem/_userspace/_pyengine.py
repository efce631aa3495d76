"""The Python engine (fallback when no C compiler): a process speaking the same protocol.

    python -m netem._userspace._pyengine [--simulate] [--queue N] [--seed N] [--maxlen N]
        [--normal] [--realtime PRIO] [--recheck-mark M] [--copy-dev NAME]
        [--copy-mark M]

Run it inside the namespace to queue in (the Engine starts it under nsenter).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import select
import socket
import sys
import time
from typing import Any

from netem._userspace._pycore import Core

_PR_SET_TIMERSLACK = 29


class _SimOutput:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def accept(self, handle: int, payload: bytes | None, now_ns: int) -> None:
        self.lines.append(f"{'accept' if payload is None else 'corrupt'} {handle} {now_ns // 1000}")

    def drop(self, handle: int, now_ns: int) -> None:
        self.lines.append(f"drop {handle} {now_ns // 1000}")

    def duplicate(self, handle: int, payload: bytes, ifindex: int, now_ns: int,
                  corrupt: bool) -> None:
        self.lines.append(f"{'dup-corrupt' if corrupt else 'dup'} {handle} {now_ns // 1000}")


def _simulate(seed: int, normal: bool) -> int:
    out = _SimOutput()
    core: Core[int] = Core(out, seed, normal)
    now = 0
    for raw in sys.stdin:
        parts = raw.split()
        replies: list[str]
        if parts and parts[0] == "pkt" and len(parts) == 6:
            try:
                t, pid, length = int(parts[1]) * 1000, int(parts[2]), int(parts[5])
                src, dst = socket.inet_aton(parts[3]), socket.inet_aton(parts[4])
            except (OSError, ValueError):
                replies = ["err bad pkt line"]
            else:
                if not 20 <= length <= 65535:
                    replies = ["err bad pkt length"]
                else:
                    core.release_due(t, virtual=True)
                    now = t
                    pkt = bytearray(length)
                    pkt[0] = 0x45
                    pkt[2:4] = length.to_bytes(2, "big")
                    pkt[12:16], pkt[16:20] = src, dst
                    core.on_packet(pid, bytes(pkt), now, 1)
                    replies = []
        elif parts and parts[0] == "advance" and len(parts) == 2:
            t = int(parts[1]) * 1000
            core.release_due(t, virtual=True)
            now = t
            replies = ["ok"]
        else:
            replies = core.command(raw)
        for line in [*out.lines, *replies]:
            print(line)
        out.lines.clear()
        if core.quitting:
            break
    core.release_due(2**62, virtual=True)
    for line in out.lines:
        print(line)
    return 0


class _QueueOutput:
    """Verdicts through NetfilterQueue; duplicates through an AF_PACKET socket.

    With `recheck_mark` a packet let go is repeated, marked, rather than accepted; with
    `copy_dev`, copies go out of that interface, marked; with `copy_mark`, from a raw IP
    socket, marked so (see engine.c's --recheck-mark, --copy-dev and --copy-mark).
    """

    def __init__(self, recheck_mark: int = 0, copy_dev: str | None = None,
                 copy_mark: int | None = None) -> None:
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM)
        self._recheck_mark = recheck_mark
        self._copy_dev = copy_dev
        self._raw: socket.socket | None = None
        if copy_dev is not None:
            socket.if_nametoindex(copy_dev)  # OSError if it is not there
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, recheck_mark)
        if copy_mark is not None:
            raw = None
            try:
                raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, copy_mark)
            except OSError as exc:  # as engine.c: shaping goes on
                if raw is not None:
                    raw.close()
                print(f"netem engine: copies sent out of their packet's interface: no "
                      f"marked raw socket (needs CAP_NET_RAW): {exc}", file=sys.stderr)
            else:
                self._raw = raw

    def accept(self, handle: Any, payload: bytes | None, now_ns: int) -> None:
        if payload is not None:
            handle.set_payload(payload)
        if self._recheck_mark:
            handle.set_mark(handle.get_mark() | self._recheck_mark)
            handle.repeat()
        else:
            handle.accept()

    def drop(self, handle: Any, now_ns: int) -> None:
        handle.drop()

    def duplicate(self, handle: Any, payload: bytes, ifindex: int, now_ns: int,
                  corrupt: bool) -> None:
        mac = b"\x02\x00" + payload[16:20]  # netem's hosts' MACs: see netem._names.host_mac
        # a duplicate that cannot be sent is a duplicate not made
        with contextlib.suppress(OSError):
            if self._raw is not None:
                self._raw.sendto(payload, (socket.inet_ntoa(payload[16:20]), 0))
                return
            dev = self._copy_dev or socket.if_indextoname(ifindex)
            self._sock.sendto(payload, (dev, 0x0800, 0, 0, mac))


def _live(queue: int, seed: int, normal: bool, maxlen: int = 65536,
          recheck_mark: int = 0, copy_dev: str | None = None,
          copy_mark: int | None = None) -> int:
    try:
        from netfilterqueue import NetfilterQueue
    except ImportError:
        print("error the Python engine needs NetfilterQueue (pip install NetfilterQueue)")
        return 1
    try:
        out = _QueueOutput(recheck_mark, copy_dev, copy_mark)
    except OSError as exc:
        print(f"error cannot send the copies: {exc}")
        return 1
    core: Core[Any] = Core(out, seed, normal)
    nfq = NetfilterQueue()

    def on_packet(pkt: Any) -> None:
        payload = pkt.get_payload()
        # arrival: the kernel's receive timestamp, when there is one (see engine.c)
        now = time.monotonic_ns()
        age = time.time() - pkt.get_timestamp()
        arrival = now - int(age * 1e9) if 0 < age < 1 else now
        core.on_packet(pkt, payload, arrival, pkt.physoutdev or pkt.outdev)

    try:
        nfq.bind(queue, on_packet, max_len=maxlen, range=65535, sock_len=16 << 20)
    except OSError as exc:
        print(f"error cannot bind queue {queue}: {exc}")
        return 1
    stamp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # switches kernel timestamps on
    stamp.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_TIMESTAMP", 29), 1)
    parent = os.getppid()
    qfd = nfq.get_fd()
    os.set_blocking(0, False)
    _exact_wakeups()
    print("ready", flush=True)
    buf = b""
    try:
        while not core.quitting and os.getppid() == parent:
            due = core.next_due()
            timeout = 0.5 if due is None else max(0.0, (due - time.monotonic_ns()) / 1e9)
            # select(), not epoll: its timeout is in microseconds, epoll's in whole ms. A
            # spin to the due time instead kept the engine on the CPU, and SCHED_FIFO's
            # throttling (5 % of each second by default) then stopped it for up to 50 ms.
            readable, _, _ = select.select([qfd, 0], [], [], timeout)
            if qfd in readable:
                nfq.run(block=False)
            if 0 in readable:
                chunk = os.read(0, 65536)
                if not chunk:
                    core.quitting = True
                buf += chunk
                *lines, buf = buf.split(b"\n")
                replies = [r for ln in lines for r in core.command(ln.decode())]
                if replies:
                    print("\n".join(replies), flush=True)
            core.release_due(time.monotonic_ns())
    except KeyboardInterrupt:
        pass
    finally:
        core.release_all(time.monotonic_ns())
        nfq.unbind()
    return 0


def _exact_wakeups() -> None:
    """Wake at the due time, not up to 50 us after (the default timer slack), as engine.c."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)


def main() -> int:
    """Entry point of the engine process."""
    parser = argparse.ArgumentParser(prog="netem-pyengine")
    parser.add_argument("--simulate", action="store_true")
    parser.add_argument("--queue", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--maxlen", type=int, default=65536)
    parser.add_argument("--normal", action="store_true")
    parser.add_argument("--realtime", type=int, default=0)
    parser.add_argument("--recheck-mark", type=lambda v: int(v, 0), default=0)
    parser.add_argument("--copy-dev")
    parser.add_argument("--copy-mark", type=lambda v: int(v, 0))
    args = parser.parse_args()
    if args.simulate:
        return _simulate(args.seed, args.normal)
    if args.realtime > 0:
        # as engine.c: ahead of ordinary processes if allowed, else nicer, else as we are
        try:
            param = os.sched_param(args.realtime)
            os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, param)
        except OSError:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, 0, -10)
    return _live(args.queue, args.seed, args.normal, args.maxlen, args.recheck_mark,
                 args.copy_dev, args.copy_mark)


if __name__ == "__main__":
    sys.exit(main())
