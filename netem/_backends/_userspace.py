"""`UserspaceBackend`: htb rate caps on each host's egress, the rest in the NFQUEUE engine."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

from netem._backends._base import BackendFailure, HostInfo, LinkStats, Pair
from netem._backends._tc_netlink import HtbShaper
from netem._errors import NetworkError, RequestError
from netem._shape import LinkShape

if TYPE_CHECKING:
    from netem._userspace import Engine


class UserspaceBackend:
    """Shapes where the kernel has no sch_netem.

    Bandwidth caps: the kernel backend's htb layout without netem leaves (one class per
    capped destination, on the source host's interface). Delay, jitter, loss, corruption,
    duplication and reordering: the userspace engine (`netem._userspace.Engine`), which
    queues the traffic of shaped pairs to userspace in the hub namespace. The engine is
    started on the first `apply` that needs it, so a network that never shapes never runs it.

    `seed`, `implementation` and `distribution` are passed to the engine.
    """

    name: ClassVar[str] = "userspace"

    def __init__(
        self,
        *,
        seed: int | None = None,
        implementation: Literal["auto", "c", "python"] = "auto",
        distribution: Literal["uniform", "normal"] = "uniform",
        queue_num: int = 0,
    ) -> None:
        self._shaper = HtbShaper(leaves=False)
        self._seed = seed
        self._implementation: Literal["auto", "c", "python"] = implementation
        self._distribution: Literal["uniform", "normal"] = distribution
        self._queue_num = queue_num
        self._hub: str | None = None
        self._engine: Engine | None = None
        self._matrix: dict[Pair, LinkShape] = {}

    @property
    def engine(self) -> Engine | None:
        """The running engine, once a shape has needed it."""
        return self._engine

    def attach(self, hub_netns: str, hosts: Sequence[HostInfo]) -> None:
        """Remember the hub (where the engine will run); put the empty htb layout on hosts."""
        if self._hub is not None and self._hub != hub_netns:
            raise RequestError(f"already attached to hub {self._hub}, not {hub_netns}")
        self._hub = hub_netns
        self._shaper.attach(hosts)

    def _start_engine(self) -> Engine:
        if self._engine is not None:
            return self._engine
        if self._hub is None:
            raise RequestError("attach the backend before applying shapes")
        try:
            from netem._userspace import Engine, EngineError
        except ImportError as exc:
            raise NetworkError(f"the userspace engine is not available ({exc})") from None
        engine = Engine(
            self._hub,
            self._queue_num,
            seed=self._seed,
            implementation=self._implementation,
            distribution=self._distribution,
        )
        try:
            engine.start()
        except EngineError as exc:
            raise NetworkError(f"the userspace engine did not start: {exc}") from None
        self._engine = engine
        return engine

    def apply(self, matrix: Mapping[Pair, LinkShape]) -> None:
        """Make `matrix` the whole shaping state: caps through htb, the rest in the engine.
        The engine is told only when the shapes it holds change, so a change that leaves
        them as they are (a partition, a cut, a cap where nothing is delayed) applies even
        after it died. If the engine refuses, the caps are put back as they were."""
        self._shaper.validate(matrix)
        new = dict(matrix)
        self._shaper.apply(new)
        try:
            if self._tells_engine(new):
                engine = self._start_engine()
                _update(engine, new)
        except BaseException:
            self._shaper.apply(self._matrix)
            raise
        self._matrix = new

    def _tells_engine(self, new: Mapping[Pair, LinkShape]) -> bool:
        delayed = _delayed(new)
        if delayed == _delayed(self._matrix):
            return False
        if not delayed:
            # nothing left to delay: a dead engine's packets pass unshaped already
            return self._engine is not None and self.failure() is None
        return True

    def stats(self) -> Mapping[Pair, LinkStats]:
        """The engine's counters (packets, bytes, loss drops, mean hold time) for delayed
        pairs; the htb class's for capped ones; both added up where a pair has both. Once
        the engine has died (`failure()`), its counters are gone with it: the caps' only."""
        caps = self._shaper.stats()
        out: dict[Pair, LinkStats] = dict(caps)
        if self._engine is not None and self.failure() is None:
            from netem._userspace import EngineError

            try:
                held = self._engine.stats()
            except EngineError as exc:
                raise NetworkError(
                    f"reading the userspace engine's counters failed: {exc}"
                ) from None
            for pair, st in held.items():
                cap = caps.get(pair)
                if cap is not None:
                    st = dataclasses.replace(st, drops=st.drops + cap.drops)
                out[pair] = st
        return out

    def failure(self) -> BackendFailure | None:
        """The engine's death, once its process has ended on its own (killed, crashed):
        from then on the kernel lets the shaped pairs' packets pass unshaped
        (--queue-bypass). The htb bandwidth caps still hold."""
        engine = self._engine
        status = engine.exit_status() if engine is not None else None
        if engine is None or status is None:
            return None
        return BackendFailure(self.name, "the userspace shaping engine", engine.pid, status,
                              "links pass unshaped (no delay, jitter, loss, corruption, "
                              "duplication or reordering)")

    def notes(self) -> tuple[str, ...]:
        """That the engine fell back to its Python implementation, and why, once it did."""
        engine = self._engine
        if engine is None or engine.implementation != "python" or not engine.fallback_reason:
            return ()
        return ("shaping ran on the userspace engine's Python fallback, less exact than the C "
                "engine (its p99 timing error passes 1 ms from about 30,000 packets/s, the C "
                f"engine's stays near 0.13 ms): {engine.fallback_reason}",)

    def close(self) -> None:
        """Stop the engine (removing its rules) and the htb layouts; safe to call twice."""
        engine, self._engine = self._engine, None
        try:
            if engine is not None:
                engine.stop()
        finally:
            self._shaper.close()
            self._matrix = {}


def _delayed(matrix: Mapping[Pair, LinkShape]) -> dict[Pair, LinkShape]:
    """The directions of `matrix` the engine holds (those that need more than a rate), with
    what the engine does to them: their shapes without the cap, which htb applies."""
    return {
        pair: dataclasses.replace(shape, bandwidth_bps=None) if shape.bandwidth_bps else shape
        for pair, shape in matrix.items()
        if shape.needs_delay_engine
    }


def _update(engine: Engine, matrix: Mapping[Pair, LinkShape]) -> None:
    from netem._userspace import EngineError

    try:
        engine.update(matrix)
    except EngineError as exc:
        raise NetworkError(f"the userspace engine refused the shapes: {exc}") from None
