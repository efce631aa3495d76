"""Simulation benchmark: a whole Spacemesh network in one process, in virtual time
(`python -m scenarios.spacemesh.sim`), timed against the virtual time it covers.

    python benchmarks/bench_sim.py [--miners 98] [--gateways 2] [--layers 50]

Target: 100 nodes x 50 layers at least 20x faster than real time. The simulation's
defaults otherwise (2 s layers, 50 ms links, 6 peers, 50 proposals per layer); the nodes
must agree on every layer and have made blocks, else the figures are not written. Then the
same 10 layers at each of `--scale`'s sizes: the CPU and the frames per node and layer,
which stay flat when the network's cost grows with its size, not with its square (4x from
25 to 100 nodes). Then the first network again with each of `--longer`'s layer lengths (a
layer's work is the same whatever its length, so the speed-up grows with it): what the
target would read at the layers real runs use (4 s: `spacemesh:start -p layer_duration=4s`)
or go-spacemesh's system tests do (15 s).
Writes outputs/bench/sim.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _figures import Figure, write

from scenarios.spacemesh.sim import options, simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--miners", type=int, default=98)
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--layers", type=int, default=50)
    parser.add_argument("--scale", default="25,50,100",
                        help="network sizes (nodes, 2 of them gateways) run for 10 layers each; "
                             "'' leaves the scaling out")
    parser.add_argument("--longer", default="4,15",
                        help="layer lengths (s) to run the first network again with; '' none")
    args = parser.parse_args()
    r = simulate(**options([f"--miners={args.miners}", f"--gateways={args.gateways}",
                            f"--layers={args.layers}"]))  # the simulation's own defaults
    print(r.line())
    if r.problem:
        raise SystemExit(f"{r.problem}: no figures written")
    what = f"sim {r.nodes} nodes x {r.layers} layers"
    # (the scaling first, right after the run above as it always was: each 100 x 50 run
    # leaves the process's heap larger: 100 x 10 took a quarter more after three of them)
    scaling = _scaling([int(n) for n in args.scale.split(",") if n.strip()])
    longer = []
    for seconds in (float(d) for d in args.longer.split(",") if d.strip()):
        o = simulate(**options([f"--miners={args.miners}", f"--gateways={args.gateways}",
                                f"--layers={args.layers}", f"--layer-duration={seconds:g}"]))
        print(o.line())
        if o.problem:
            raise SystemExit(f"{seconds:g} s layers: {o.problem}: no figures written")
        longer.append(Figure(f"{what}, {seconds:g} s layers: virtual/wall",
                             round(o.virtual / o.wall, 2), "x"))
    write("sim", [*scaling, *longer,
        Figure(f"{what}: virtual/wall", round(r.virtual / r.wall, 2), "x", target=">= 20x"),
        Figure(f"{what}: virtual/CPU", round(r.virtual / r.cpu, 2), "x"),
        Figure(f"{what}: wall", round(r.wall, 2), "s"),
        # What a node sends a layer, every copy: the wire's size, which a real run's
        # shaping engine pays by the packet.
        Figure(f"{what}: gossip sent per node and layer", round(r.megabytes * 1000 / r.nodes / r.layers, 1), "kB"),
        Figure(f"{what}: frames sent per node and layer", round(r.frames / r.nodes / r.layers), "frames"),
    ])  # fmt: skip


def _scaling(sizes: list[int], layers: int = 10) -> list[Figure]:
    """Each size for `layers` layers: what a node costs a layer, printed as a table."""
    if not sizes:
        return []
    print(f"per node and layer, {layers} layers: nodes, CPU ms, frames sent, kB sent")
    per_node: dict[int, float] = {}
    figures = []
    for n in sizes:
        r = simulate(**options([f"--miners={n - 2}", "--gateways=2", f"--layers={layers}"]))
        if r.problem:
            raise SystemExit(f"{n} simulated nodes: {r.problem}: no figures written")
        per_node[n] = r.cpu * 1000 / r.nodes / r.layers
        frames, kb = r.frames / r.nodes / r.layers, r.megabytes * 1000 / r.nodes / r.layers
        print(f"  {n:5d} {per_node[n]:8.2f} {frames:8.0f} {kb:8.1f}")
        figures.append(Figure(f"sim {n} nodes x {layers} layers: CPU per node and layer",
                              round(per_node[n], 2), "ms"))
    small, large = min(per_node), max(per_node)
    if large > small:
        growth = per_node[large] / per_node[small]
        square = large / small
        print(f"  a node's CPU a layer at {large} nodes over {small}: {growth:.2f}x "
              f"({square:g}x if the network's cost grew with its square)")
        figures.append(Figure(f"sim: a node's CPU a layer, {large} nodes over {small}",
                              round(growth, 2), "x", better="lower", target=f"< {square:g}x"))
    return figures


if __name__ == "__main__":
    main()
