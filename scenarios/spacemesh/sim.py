"""``python -m scenarios.spacemesh.sim``: a whole network in one process, in virtual time.

Prints the wall time, the virtual time, whether every node agrees on every layer hash, the
last layer every node verified and how many layers have a block (agreeing on empty layers
only, or on layers not verified yet, is a failure too).
The same protocol code as the real processes runs here over the in-memory transport,
under trio's ``MockClock``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, TextIO

import anyio
import trio.testing

from ._cli import (
    LOG_LEVELS,
    MAX_LAYERS,
    MAX_NODES,
    ArgumentParser,
    check_layers,
    configure_logging,
)
from ._cluster import memory_cluster
from ._memnet import MemoryLink
from ._mesh import MeshParams

PROGRESS_EVERY_S = 5.0


@dataclasses.dataclass(frozen=True)
class SimResult:
    """What one simulation measured."""

    nodes: int
    layers: int
    virtual: float
    """Seconds of virtual time the network ran."""
    wall: float
    cpu: float
    agree: bool
    """Every node holds the same hash for every layer up to ``layers``."""
    atxs: int
    """The fewest ATXs any node knows."""
    frames: int
    """Frames the nodes sent each other (every copy)."""
    megabytes: float
    """Their size."""
    blocks: int = 0
    """Layers with a block among those that can have one (from the first epoch's first
    layer to the last one decided), in the first node's view."""
    block_layers: int = 0
    """How many layers that is."""
    verified: int = 0
    """The last layer every node verified (the lowest of the nodes' verified layers)."""

    @property
    def problem(self) -> str | None:
        """Why the run failed, or None: the nodes disagree, or they agree only on empty
        layers (no layer that could have a block has one: nothing got through)."""
        if not self.agree:
            return f"the nodes disagree on the hashes of layers 0-{self.layers}"
        if self.verified < self.layers:
            return (f"a node verified only up to layer {self.verified}, not {self.layers}: "
                    "the hashes compared may still change")
        if not self.block_layers:
            return "no layer past the first epoch was judged (epoch 0 can have no block)"
        if not self.blocks:
            return (f"none of the {self.block_layers} layers that could have a block has "
                    "one: the nodes agree only on empty layers")
        return None

    def line(self) -> str:
        """The one line the command prints."""
        return (
            f"nodes={self.nodes} layers={self.layers} virtual={self.virtual:.1f}s "
            f"wall={self.wall:.2f}s speedup={self.virtual / self.wall:.1f}x "
            f"cpu={self.cpu:.2f}s speedup_cpu={self.virtual / self.cpu:.1f}x "
            f"min_atxs_known={self.atxs} frames={self.frames} mb={self.megabytes:.1f} "
            f"blocks={self.blocks}/{self.block_layers} verified={self.verified} "
            f"agree={self.agree}"
        )


class _Progress(trio.abc.Instrument):
    """Says how far a long simulation got, every `every` seconds of wall time. An
    instrument, not a task: a task waking in virtual time would join the batches of woken
    tasks whose seeded order makes the run what it is, and change it."""

    def __init__(self, out: TextIO, clock: trio.testing.MockClock, every: float) -> None:
        self.out, self.clock, self.every = out, clock, every
        self.wall0 = time.perf_counter()
        self.next = self.wall0 + every
        self.virtual0 = 0.0  # the nodes' clock when tracked
        self.offset = 0.0  # the loop's clock minus the nodes'
        self.genesis = self.layer_duration = self.end = 0.0
        self.tracking = False

    def track(self, virtual_now: float, genesis: float, layer_duration: float,
              end: float) -> None:
        """From now on the run goes on until `end` (by the nodes' clock, which reads
        `virtual_now` now), in layers of `layer_duration` from `genesis`."""
        self.virtual0, self.offset = virtual_now, self.clock.current_time() - virtual_now
        self.genesis, self.layer_duration = genesis, layer_duration
        self.end = end
        self.tracking = True

    def after_io_wait(self, timeout: float) -> None:
        now = time.perf_counter()
        if not self.tracking or now < self.next:
            return
        self.next = now + self.every
        virtual = self.clock.current_time() - self.offset
        layer = max(0, int((virtual - self.genesis) // self.layer_duration))
        wall = now - self.wall0
        print(f"spacemesh-sim: layer {layer}, {virtual - self.virtual0:.1f} of "
              f"{self.end - self.virtual0:.1f} virtual s after {wall:.1f} s "
              f"({(virtual - self.virtual0) / wall:.1f}x real time)", file=self.out,
              flush=True)


def simulate(
    *,
    miners: int,
    gateways: int,
    layers: int,
    layer_duration: float,
    params: MeshParams,
    link: MemoryLink,
    target_peers: int,
    seed: int,
    progress: TextIO | None = None,
) -> SimResult:
    """Run a network until every node should have verified ``layers``; measure it. With
    `progress`, a line there every 5 s of wall time says how far it got."""
    out: dict[str, Any] = {}

    async def run() -> None:
        async with memory_cluster(
            miners=miners,
            gateways=gateways,
            seed=seed,
            layer_duration=layer_duration,
            params=params,
            link=link,
            target_peers=target_peers,
        ) as c:
            start = c.clock.now()
            end_layer = layers + params.hdist
            end = c.gateways[0].layer_start(end_layer) + 0.5
            if instrument is not None:
                instrument.track(start, c.gateways[0].layer_start(0), layer_duration, end)
            await c.clock.sleep_until(end)
            views = [[s.hash for s in n.layers()[: layers + 1]] for n in c.nodes]
            out["virtual"] = c.clock.now() - start
            out["agree"] = all(v == views[0] for v in views) and len(views[0]) > layers
            out["atxs"] = min(len(n.mesh.atxs) for n in c.nodes)
            out["verified"] = min(n.status()["verified_layer"] for n in c.nodes)
            decided = c.nodes[0].layers()[params.layers_per_epoch :]
            out["blocks"] = (sum(1 for s in decided if s.block_id), len(decided))
            out["frames"], out["bytes"] = c.net.frames_sent, c.net.bytes_sent

    wall, cpu = time.perf_counter(), time.process_time()
    clock = trio.testing.MockClock(autojump_threshold=0)
    instrument = _Progress(progress, clock, PROGRESS_EVERY_S) if progress else None
    anyio.run(run, backend="trio", backend_options={
        "clock": clock, "instruments": [instrument] if instrument else []})
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return SimResult(
        miners + gateways, layers, out["virtual"], wall, cpu, out["agree"], out["atxs"],
        out["frames"], out["bytes"] / 1e6, *out["blocks"], out["verified"],
    )


def options(argv: list[str] | None = None) -> dict[str, Any]:
    """The command line's options as `simulate`'s keyword arguments (its defaults for
    anything not given; a one-line error and exit 2 on bad input). Logging is set up."""
    p = ArgumentParser(prog="spacemesh-sim", description=__doc__)
    p.add_argument("--miners", type=int, default=50)
    p.add_argument("--gateways", type=int, default=2)
    p.add_argument("--layers", type=int, default=10, help="every node must verify this layer")
    p.add_argument("--layer-duration", type=float, default=2.0)
    p.add_argument("--layers-per-epoch", type=int, default=3)
    p.add_argument(
        "--proposals-per-layer", type=int, default=50, help="expected proposals per layer"
    )
    p.add_argument("--delay-ms", type=float, default=50.0)
    p.add_argument("--jitter-ms", type=float, default=0.0)
    p.add_argument("--loss", type=float, default=0.0, help="frame loss, 0..1")
    p.add_argument("--target-peers", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-level", choices=LOG_LEVELS, default="warning")
    args = p.parse_args(argv)
    configure_logging(args.log_level)
    try:
        for name in ("miners", "gateways", "layers", "layers_per_epoch", "target_peers"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, not "
                                 f"{getattr(args, name)}")
        nodes = args.miners + args.gateways
        if nodes > MAX_NODES:
            raise ValueError(f"at most {MAX_NODES} nodes, --miners and --gateways together, "
                             f"not {nodes}")
        if args.layers > MAX_LAYERS:
            raise ValueError(f"--layers must be at most {MAX_LAYERS}, not {args.layers}")
        if args.layers < args.layers_per_epoch:
            # Epoch 0 has no ATXs, so no proposals: only later layers can hold a block.
            raise ValueError(f"--layers ({args.layers}) must reach past the first epoch "
                             f"(--layers-per-epoch {args.layers_per_epoch}): nothing to judge")
        check_layers(args.layer_duration, args.proposals_per_layer)
        if not 0 <= args.loss <= 1:  # (False for NaN too; the link's own error named no option)
            raise ValueError(f"--loss must be a fraction from 0 to 1, not {args.loss!r}")
        for name in ("delay_ms", "jitter_ms"):  # False for NaN too
            if not 0 <= getattr(args, name) <= 1000 * args.layer_duration:
                raise ValueError(f"--{name.replace('_', '-')} must be 0 to a layer "
                                 f"({1000 * args.layer_duration:g} ms), not {getattr(args, name)!r}")
        params = MeshParams(
            layers_per_epoch=args.layers_per_epoch,
            proposals_per_layer=args.proposals_per_layer,
            pow_bits=4,
        )
        link = MemoryLink(args.delay_ms / 1000, args.jitter_ms / 1000, args.loss)
    except ValueError as exc:
        p.error(str(exc))
    return {
        "miners": args.miners,
        "gateways": args.gateways,
        "layers": args.layers,
        "layer_duration": args.layer_duration,
        "params": params,
        "link": link,
        "target_peers": args.target_peers,
        "seed": args.seed,
    }


def main(argv: list[str] | None = None) -> int:
    """Run one simulation and print its figures; exit code 1, and why on stderr, when the
    nodes disagree, did not all verify the last layer or made no block."""
    result = simulate(**options(argv), progress=sys.stderr)
    print(result.line())
    if result.problem:
        print(f"spacemesh-sim: {result.problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
