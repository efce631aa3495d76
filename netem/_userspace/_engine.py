"""`Engine`: the userspace shaping engine of one hub namespace, driven from Python."""

from __future__ import annotations

import os
import secrets
import selectors
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from ipaddress import IPv4Address
from types import TracebackType
from typing import Literal

from netem._backends._base import LinkStats, Pair
from netem._shape import LinkShape, ShapeError
from netem._userspace import _copies, _rules
from netem._userspace._build import BuildError, build_engine
from netem._userspace._protocol import ProtocolError, Timing, parse_stats, update_lines

Implementation = Literal["auto", "c", "python"]
Distribution = Literal["uniform", "normal"]

_REPLY_TIMEOUT = 10.0


class EngineError(RuntimeError):
    """The engine cannot start or do what was asked; the message says why, in one line."""


class _NoAnswer(EngineError):
    """The engine did not answer in time (it may still, later)."""


def _python_engine_available() -> str | None:
    try:
        import netfilterqueue  # noqa: F401
    except ImportError:
        return "NetfilterQueue is not installed (pip install NetfilterQueue)"
    return None


class Engine:
    """Holds, drops, corrupts, duplicates and reorders packets between hosts in a hub.

    `netns` is the hub namespace (a name under /run/netns) whose FORWARD chain the hosts'
    traffic crosses; or None for this process's own namespace with `hook="OUTPUT"`: the
    egress of a host shaped from inside it (a pod's shaping sidecar, which may not setns). Packets of the pairs given to `update` are queued (NFQUEUE number
    `queue_num`, with --queue-bypass: if the engine is gone they pass unshaped) and each is
    let go at its due time; other traffic is not queued at all.

    `implementation`: "c" (compiled on first use), "python" (NetfilterQueue), or "auto"
    (C when it builds, else Python). `seed` makes the random choices repeatable;
    `distribution` is how jitter spreads (uniform over +-jitter, or normal with
    sigma = jitter, as tc netem). `max_queue` caps the packets held in the kernel (beyond
    it they are dropped, like netem's limit). `realtime_priority` (SCHED_FIFO, 0 = off)
    keeps a busy machine from making packets late; without the privilege the engine
    falls back to nice -10, then to nothing.
    """

    def __init__(
        self,
        netns: str | None,
        queue_num: int = 0,
        *,
        seed: int | None = None,
        distribution: Distribution = "uniform",
        implementation: Implementation = "auto",
        max_queue: int = 65536,
        realtime_priority: int = 10,
        hook: Literal["FORWARD", "OUTPUT"] = "FORWARD",
    ) -> None:
        if isinstance(queue_num, bool) or not isinstance(queue_num, int):
            raise EngineError(f"queue_num must be an integer, not {queue_num!r}")
        if not 0 <= queue_num <= 65535:
            raise EngineError(f"queue_num must be 0 to 65535, not {queue_num}")
        if distribution not in ("uniform", "normal"):
            raise EngineError(f"distribution must be 'uniform' or 'normal', not {distribution!r}")
        if implementation not in ("auto", "c", "python"):
            raise EngineError(
                f"implementation must be 'auto', 'c' or 'python', not {implementation!r}"
            )
        if isinstance(realtime_priority, bool) or realtime_priority not in range(100):
            raise EngineError(f"realtime_priority must be 0 to 99, not {realtime_priority!r}")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise EngineError(f"max_queue must be a positive integer, not {max_queue!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise EngineError(f"seed must be a non-negative integer, not {seed!r}")
        if hook not in ("FORWARD", "OUTPUT"):
            raise EngineError(f"hook must be 'FORWARD' or 'OUTPUT', not {hook!r}")
        self.netns = netns
        self.hook = hook
        self.queue_num = queue_num
        self.seed = seed if seed is not None else secrets.randbits(63)
        self.distribution: Distribution = distribution
        self.max_queue = max_queue
        self.realtime_priority = realtime_priority
        self._wanted: Implementation = implementation
        self.implementation: Literal["c", "python"] | None = None
        self.fallback_reason: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._buf = b""
        self._lock = threading.Lock()
        self._sources: set[IPv4Address] = set()
        self._created: tuple[bool, bool] = (False, False)
        self._had_filter_table = True
        self._copy_dev: str | None = None
        self._rules_live = False
        self._pairs: frozenset[Pair] = frozenset()
        self._lines: list[str] = []
        self._owed: list[tuple[str, bool]] = []
        """Replies given up on (no answer in time), each one's last word and whether it
        answers a commit: read before the next request's, which would get them instead."""

    # -- lifecycle -------------------------------------------------------------------------
    def _command_line(self) -> list[str]:
        netns_path = None if self.netns is None else str(_rules.netns_path(self.netns))
        common = ["--queue", str(self.queue_num), "--seed", str(self.seed)]
        common += ["--maxlen", str(self.max_queue)]
        common += ["--realtime", str(self.realtime_priority)]
        if self.distribution == "normal":
            common.append("--normal")
        if self.hook == "FORWARD":
            # a hub's partitions drop a packet due while they hold (the kernel backend delays
            # before the hub); a pod's OUTPUT drops come before the kernel's netem, so not there
            common += ["--recheck-mark", str(_rules.RECHECK_MARK)]
        c_error: str | None = None
        if self._wanted in ("auto", "c"):
            try:
                binary = build_engine()
            except BuildError as exc:
                if self._wanted == "c":
                    raise EngineError(str(exc)) from None
                c_error = str(exc)
            else:
                self.implementation = "c"
                return [
                    str(binary),
                    *(["--netns", netns_path] if netns_path else []),
                    *common,
                ]
        missing = _python_engine_available()
        if missing:
            prefix = f"{c_error}; and " if c_error else ""
            raise EngineError(f"no userspace engine available: {prefix}{missing}")
        self.implementation = "python"
        self.fallback_reason = c_error
        python = [sys.executable, "-m", "netem._userspace._pyengine", *common]
        if netns_path is None:
            return python
        nsenter = shutil.which("nsenter")
        if nsenter is None:
            raise EngineError("nsenter (util-linux) not found")
        return [nsenter, f"--net={netns_path}", *python]

    def start(self) -> None:
        """Start the engine process and install the queue chain; idempotent."""
        if self._proc is not None:
            return
        try:
            argv = self._command_line()  # (both engines take options last)
            if self.hook == "FORWARD":
                self._copy_dev = _copies.add(self.netns)
                if self._copy_dev is not None:
                    argv += ["--copy-dev", self._copy_dev]
            else:  # routed by the kernel, which knows the next hop's MAC; the mark skips
                argv += ["--copy-mark", str(_rules.RECHECK_MARK)]  # the queue's rule
        except BaseException as exc:
            self.stop()
            if isinstance(exc, _rules.RulesError):
                raise EngineError(str(exc)) from None
            raise
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        # A process group of its own: a Ctrl-C (or hang-up) meant for the program driving
        # it must not end it under the program's feet (that reads as the engine dying and
        # the links passing unshaped); it ends with its parent anyway (stdin, parent check).
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, env=env,
            process_group=0,
        )
        try:
            first = self._read_line(_REPLY_TIMEOUT)
            if first != "ready":
                raise EngineError(
                    f"the {self.implementation} engine did not start: "
                    f"{first.removeprefix('error ') if first else 'it exited'}"
                )
            self._had_filter_table = _rules.filter_table_exists(self.netns)
            # one iptables-restore transaction: made whole or not at all
            self._created = _rules.ensure_chain(self.netns, self.hook)
            self._rules_live = True
        except BaseException as exc:
            self.stop()
            if isinstance(exc, _rules.RulesError):
                raise EngineError(str(exc)) from None
            raise

    def stop(self) -> None:
        """Remove the engine's rules and end its process; safe to call twice."""
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        errors: list[str] = []
        # (a namespace already gone took the rules and the copy port with it)
        there = self.netns is None or _rules.NETNS_DIR.joinpath(self.netns).exists()
        if self._rules_live:
            self._rules_live = False
            try:
                if there:
                    teardown = _rules.render_teardown(self._sources, *self._created, self.hook)
                    _rules.restore(self.netns, teardown)
                    if not self._had_filter_table:
                        _rules.drop_filter_table_if_empty(self.netns)
            except _rules.RulesError as exc:
                errors.append(str(exc))
            self._sources = set()
            self._pairs = frozenset()
            self._lines = []
        self._owed = []
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                assert proc.stdin is not None
                proc.stdin.write(b"quit\n")
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self._buf = b""
        if self._copy_dev is not None:
            self._copy_dev = None
            try:
                if there:
                    _copies.remove(self.netns)
            except _rules.RulesError as exc:
                errors.append(str(exc))
        if errors:
            raise EngineError(errors[0])

    def __enter__(self) -> Engine:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """The engine process's id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def exit_status(self) -> int | None:
        """How the engine process ended if it ended on its own (killed, crashed): its exit
        code, or minus the signal that ended it. None while it runs, and after `stop()`.
        Never blocks."""
        proc = self._proc
        return None if proc is None else proc.poll()

    # -- control ---------------------------------------------------------------------------
    def _read_line(self, timeout: float) -> str:
        proc = self._proc
        if proc is None or proc.stdout is None:
            raise EngineError("the engine is not running (call start())")
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise _NoAnswer(f"the engine did not answer within {timeout:.0f} s")
                chunk = os.read(fd, 65536)
                if not chunk:
                    return ""
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def _request(self, lines: list[str], until: str) -> list[str]:
        """Send commands; collect reply lines up to one starting with `until`."""
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise EngineError("the engine is not running (call start())")
        self._settle(proc)
        try:
            proc.stdin.write("".join(f"{ln}\n" for ln in lines).encode())
            proc.stdin.flush()
        except OSError:
            raise EngineError(f"the engine has died (exit code {proc.poll()})") from None
        replies: list[str] = []
        try:
            while True:
                line = self._read_line(_REPLY_TIMEOUT)
                if not line:
                    raise EngineError(f"the engine has died (exit code {proc.wait()})")
                if line.startswith("err "):
                    raise EngineError(f"the engine refused a command: {line[4:]}")
                if line.split()[0] == until:
                    return replies
                replies.append(line)
        except _NoAnswer:
            self._owed.append((until, "commit" in lines))
            raise

    def _settle(self, proc: subprocess.Popen[bytes]) -> None:
        """Read the replies given up on, so that each request gets its own; and if the
        engine made a table it was refused (its commit answered too late), commit again
        the table the rules match."""
        recommit = False
        while self._owed:
            until, commit = self._owed[0]
            while True:
                line = self._read_line(_REPLY_TIMEOUT)
                if not line:
                    raise EngineError(f"the engine has died (exit code {proc.wait()})")
                if line.startswith("err ") or line.split()[0] == until:
                    break
            del self._owed[0]
            recommit = recommit or commit
        if recommit:
            self._request([*self._lines, "commit"], until="ok")

    def update(self, matrix: Mapping[Pair, LinkShape]) -> None:
        """Make `matrix` the whole desired state: each listed direction gets its shape, all
        others none (and are not queued). Bandwidth is ignored (not the engine's job)."""
        checked: dict[Pair, LinkShape] = {}
        try:
            for pair, shape in matrix.items():
                src, dst = pair
                if not isinstance(src, IPv4Address) or not isinstance(dst, IPv4Address):
                    raise EngineError(f"a pair is two IPv4Address values, not {pair!r}")
                if not isinstance(shape, LinkShape):
                    raise EngineError(f"the shape of {src} -> {dst} is not a LinkShape: {shape!r}")
                checked[(src, dst)] = shape
        except (TypeError, ValueError, ShapeError):
            raise EngineError(
                f"a matrix maps (src, dst) pairs to LinkShape, not {matrix!r}"
            ) from None
        lines = update_lines(checked)
        pairs = frozenset(pair for pair, shape in checked.items() if shape.needs_delay_engine)
        with self._lock:
            if self._proc is None:
                raise EngineError("the engine is not running (call start())")
            # the table first, so a newly queued packet always finds its shape
            self._request([*lines, "commit"], until="ok")
            if pairs != self._pairs:
                text, sources = _rules.render_update(pairs, self.queue_num, self._pairs)
                try:
                    _rules.restore(self.netns, text)
                except _rules.RulesError as exc:
                    # all or nothing: the engine goes back to the table the rules match
                    self._request([*self._lines, "commit"], until="ok")
                    raise EngineError(str(exc)) from None
                self._sources, self._pairs = sources, pairs
            self._lines = lines

    def stats(self) -> dict[Pair, LinkStats]:
        """Counters per shaped direction since it was first shaped: packets and bytes seen,
        drops (loss), and the mean time packets were held (ms)."""
        return self._stats()[0]

    def timing(self) -> Timing:
        """How late held packets left past their due time (inside the engine)."""
        return self._stats()[1]

    def reset_timing(self) -> None:
        """Forget the lateness measured so far."""
        with self._lock:
            self._request(["reset_timing"], until="ok")

    def _stats(self) -> tuple[dict[Pair, LinkStats], Timing]:
        with self._lock:
            lines = self._request(["stats"], until="ok")
        try:
            return parse_stats(lines)
        except ProtocolError as exc:
            raise EngineError(str(exc)) from None
