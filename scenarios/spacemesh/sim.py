"""``python -m scenarios.spacemesh.sim``: a whole network in one process, in virtual time.

Prints the wall time, the virtual time and whether every node agrees on every layer hash.
The same protocol code as the real processes runs here over the in-memory transport,
under trio's ``MockClock``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import anyio
import trio.testing

from ._cli import LOG_LEVELS, ArgumentParser, configure_logging
from ._cluster import memory_cluster
from ._memnet import MemoryLink
from ._mesh import MeshParams


def main(argv: list[str] | None = None) -> int:
    """Run one simulation and print its figures; exit code 1 when the nodes disagree."""
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
    p.add_argument("--json", metavar="PATH", help="also write the figures there (benchmark form)")
    args = p.parse_args(argv)
    configure_logging(args.log_level)
    try:
        params = MeshParams(
            layers_per_epoch=args.layers_per_epoch,
            proposals_per_layer=args.proposals_per_layer,
            pow_bits=4,
        )
        link = MemoryLink(args.delay_ms / 1000, args.jitter_ms / 1000, args.loss)
        if args.miners < 1 or args.gateways < 1 or args.layers < 1:
            raise ValueError("--miners, --gateways and --layers must be >= 1")
    except ValueError as exc:
        p.error(str(exc))
    result: dict[str, object] = {}

    async def run() -> None:
        async with memory_cluster(
            miners=args.miners,
            gateways=args.gateways,
            seed=args.seed,
            layer_duration=args.layer_duration,
            params=params,
            link=link,
            target_peers=args.target_peers,
        ) as c:
            start = c.clock.now()
            end_layer = args.layers + params.hdist
            await c.clock.sleep_until(c.gateways[0].layer_start(end_layer) + 0.5)
            views = [[s.hash for s in n.layers()[: args.layers + 1]] for n in c.nodes]
            result["virtual"] = c.clock.now() - start
            result["agree"] = all(v == views[0] for v in views) and len(views[0]) > args.layers
            result["atxs"] = min(len(n.mesh.atxs) for n in c.nodes)
            result["msgs"] = sum(
                m.samples[0].value
                for n in c.nodes
                for m in n.metrics.delivered.collect()
                if m.samples
            )

    wall, cpu = time.perf_counter(), time.process_time()
    clock = trio.testing.MockClock(autojump_threshold=0)
    anyio.run(run, backend="trio", backend_options={"clock": clock})
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    nodes = args.miners + args.gateways
    print(
        f"nodes={nodes} layers={args.layers} virtual={result['virtual']:.1f}s "
        f"wall={wall:.2f}s speedup={float(result['virtual']) / wall:.1f}x "  # type: ignore[arg-type]
        f"cpu={cpu:.2f}s speedup_cpu={float(result['virtual']) / cpu:.1f}x "  # type: ignore[arg-type]
        f"min_atxs_known={result['atxs']} agree={result['agree']}"
    )
    if args.json:
        virtual = float(result["virtual"])  # type: ignore[arg-type]
        speedup = virtual / wall
        figures = [
            {"name": f"sim {nodes} nodes x {args.layers} layers: virtual/wall",
             "value": round(speedup, 2), "unit": "x", "peer": None, "peer_value": None},
            {"name": f"sim {nodes} nodes x {args.layers} layers: wall",
             "value": round(wall, 2), "unit": "s", "peer": None, "peer_value": None},
            {"name": f"sim {nodes} nodes x {args.layers} layers: virtual/cpu",
             "value": round(virtual / cpu, 2), "unit": "x", "peer": None, "peer_value": None},
        ]  # fmt: skip
        load = round(os.getloadavg()[0], 2)  # the schema's optional field: a loaded machine
        for figure in figures:
            figure["load"] = load
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if result["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
