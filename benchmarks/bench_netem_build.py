"""Build and tear-down time of N hosts: netem against Mininet, side by side.

    python benchmarks/bench_netem_build.py [--sizes 100,500] [--no-mininet]

netem: `Network(backend="none").build(n)` then `close()` (namespaces, veths, bridge,
addresses, the hub's iptables chain). Mininet: Debian's `mininet` module under the system
Python, `Mininet(topo=SingleSwitchTopo(n), switch=LinuxBridge, controller=None)`, then
`stop()`. Mininet runs inside a private network + mount namespace (`unshare --net --mount`),
so its bridge and veths never appear in the namespace this script runs in; that changes
nothing in how it builds. Needs root. Prints one table and the ratio netem / Mininet.

Tear-down is the time until the call returns. After netem's `close()` the kernel still frees
the unmounted namespaces (and the veths in them) in the background; Mininet's `stop()`
deletes its links one `ip link del` at a time before it returns.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _figures import Figure, write

import netem

MININET_PYTHON = "/usr/bin/python3"
MININET_SCRIPT = """
import json, sys, time
from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.nodelib import LinuxBridge
from mininet.topo import SingleSwitchTopo
setLogLevel("error")
n = int(sys.argv[1])
t0 = time.perf_counter()
net = Mininet(topo=SingleSwitchTopo(n), switch=LinuxBridge, controller=None)
net.start()
t1 = time.perf_counter()
loss = net.ping([net.hosts[0], net.hosts[-1]], timeout="1")
t2 = time.perf_counter()
net.stop()
t3 = time.perf_counter()
print(json.dumps({"build": t1 - t0, "stop": t3 - t2, "ping_loss": loss}))
"""


def bench_netem(n: int) -> dict[str, float]:
    t0 = time.perf_counter()
    net = netem.Network(backend="none")
    try:
        hosts = net.build(n)
        t1 = time.perf_counter()
        ping = subprocess.run(
            ["nsenter", f"--net={hosts[0].netns_path}", "ping", "-c1", "-W1", str(hosts[-1].ip)],
            capture_output=True,
            check=False,
        )
        if ping.returncode != 0:
            raise SystemExit(f"netem network of {n} hosts: h1 cannot ping h{n}")
    finally:
        t2 = time.perf_counter()
        net.close()
    t3 = time.perf_counter()
    return {"build": t1 - t0, "stop": t3 - t2}


def mininet_problem() -> str | None:
    if not os.path.exists(MININET_PYTHON):
        return f"{MININET_PYTHON} not found"
    check = subprocess.run(
        [MININET_PYTHON, "-c", "import mininet"], capture_output=True, check=False
    )
    if check.returncode != 0:
        return "the mininet module is missing (apt-get install mininet)"
    for tool in ("brctl", "mnexec", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} not found (Mininet's LinuxBridge needs bridge-utils)"
    return None


def bench_mininet(n: int, timeout: float) -> dict[str, float] | str:
    cmd = [
        "unshare", "--net", "--mount", "--propagation", "private", "--",
        MININET_PYTHON, "-c", MININET_SCRIPT, str(n),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"did not finish within {timeout:.0f} s"
    if proc.returncode != 0:
        return f"failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,500", help="host counts, comma-separated")
    parser.add_argument("--no-mininet", action="store_true", help="measure netem only")
    parser.add_argument(
        "--mininet-timeout", type=float, default=300, help="seconds per Mininet size"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_netem_build: needs root", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",")]
    problem = None if not args.no_mininet else "skipped (--no-mininet)"
    problem = problem or mininet_problem()
    header = (
        f"{'hosts':>5}  {'netem build':>11}  {'netem stop':>10}  {'netem total':>11}  "
        f"{'mininet build':>13}  {'mininet stop':>12}  {'mininet total':>13}  {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    figures: list[Figure] = []
    for n in sizes:
        ours = bench_netem(n)
        total = ours["build"] + ours["stop"]
        row = f"{n:>5}  {ours['build']:>10.3f}s  {ours['stop']:>9.3f}s  {total:>10.3f}s"
        theirs = problem or bench_mininet(n, args.mininet_timeout)
        name = f"netem build + tear-down, {n} hosts"
        if isinstance(theirs, str):
            print(f"{row}  mininet: {theirs}", flush=True)
            figures.append(Figure(name, total, "s", target="<= 0.25x Mininet's"))
            continue
        their_total = theirs["build"] + theirs["stop"]
        figures.append(Figure(name, total, "s", "Mininet", their_total,
                              target="<= 0.25x Mininet's"))
        print(
            f"{row}  {theirs['build']:>12.3f}s  {theirs['stop']:>11.3f}s  {their_total:>12.3f}s"
            f"  {total / their_total:>5.2f}x",
            flush=True,
        )
    print("\nratio = netem total / Mininet total (target <= 0.25x)")
    write("netem_build", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
