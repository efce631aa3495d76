"""Simulation benchmark: a whole Spacemesh network in one process, in virtual time
(`python -m scenarios.spacemesh.sim`), timed against the virtual time it covers.

    python benchmarks/bench_sim.py [--miners 98] [--gateways 2] [--layers 50]

Target: 100 nodes x 50 layers at least 20x faster than real time. The simulation's
defaults otherwise (2 s layers, 50 ms links, 6 peers, 50 proposals per layer); the nodes
must agree on every layer, else the figures are not written. Writes outputs/bench/sim.json.
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
    args = parser.parse_args()
    r = simulate(**options([f"--miners={args.miners}", f"--gateways={args.gateways}",
                            f"--layers={args.layers}"]))  # the simulation's own defaults
    print(r.line())
    if not r.agree:
        raise SystemExit("the simulated nodes disagree: no figures written")
    what = f"sim {r.nodes} nodes x {r.layers} layers"
    write("sim", [
        Figure(f"{what}: virtual/wall", round(r.virtual / r.wall, 2), "x", target=">= 20x"),
        Figure(f"{what}: virtual/CPU", round(r.virtual / r.cpu, 2), "x"),
        Figure(f"{what}: wall", round(r.wall, 2), "s"),
        # What a node sends a layer, every copy: the wire's size, which a real run's
        # shaping engine pays by the packet.
        Figure(f"{what}: gossip sent per node and layer", round(r.megabytes * 1000 / r.nodes / r.layers, 1), "kB"),
        Figure(f"{what}: frames sent per node and layer", round(r.frames / r.nodes / r.layers), "frames"),
    ])  # fmt: skip


if __name__ == "__main__":
    main()
