"""A real 100-node Spacemesh network: `harness run spacemesh:start -i 100 -p
layer_duration=4s` on local:netns (root), its other params the defaults, timed from the
command's start to its exit; then `harness report` of that run.

    python benchmarks/bench_spacemesh.py [--instances 100] [--layer-duration 4s]

Figures: the command's wall time (target <= 120 s, issue 11) and whether it passed (a
failed run writes no figures: its time would not be the network's); the layers 3-8 that
got a block (the hare's health on this machine: a starved node's hare certifies nothing);
the CPU of the whole run (every process of it, by `wait4`); the seconds from the last
instance's exit to the command's exit; `harness report` of the run (wall, CPU, peak RSS;
target <= 5 s and <= 300 MB). Writes outputs/bench/spacemesh.json (_figures.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from _figures import Figure, write  # noqa: E402
from bench_report import _report  # noqa: E402

from harness.observe._cpuload import cpu_load  # noqa: E402
from harness.observe._stored import read_telemetry  # noqa: E402

_BLOCKS = re.compile(r"layers (\d+)-(\d+) with a block: (\d+) of (\d+)")


def run(instances: int, layer_duration: str, outputs: Path) -> dict[str, Any]:
    """Run the case once; what the figures need (SystemExit if it did not pass)."""
    argv = [sys.executable, "-m", "harness", "run", "spacemesh:start", "-i", str(instances),
            "-p", f"layer_duration={layer_duration}", "--outputs", str(outputs)]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # the run's every process, reaped below it
    wall = time.monotonic() - t0
    exited = time.time()
    if os.waitstatus_to_exitcode(status) != 0:
        # Its outputs outlive the temporary folder: a failure here is worth a look.
        kept = ROOT / "outputs" / "bench-failed"
        for run_dir in outputs.iterdir():
            shutil.copytree(run_dir, kept / run_dir.name, dirs_exist_ok=True)
        lines = out.strip().splitlines()
        head = next((i for i, line in enumerate(lines) if line.startswith("run ")), 0)
        raise SystemExit(f"spacemesh:start -i {instances} failed, no figures written "
                         f"(its outputs: {kept}):\n" + "\n".join(lines[head:head + 12]))
    (run_dir,) = [d for d in outputs.iterdir() if (d / "run.json").exists()]
    events = [json.loads(x) for x in (run_dir / "events.jsonl").open()]
    last = max(e["ts"] for e in events if e.get("status") == "exited")
    # The PoET's closing message: "... layers 3-8 with a block: 2 of 6".
    blocks = next((m for e in events if (m := _BLOCKS.search(str(e.get("message", ""))))),
                  None)
    return {
        "wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "end_to_exit": exited - last,
        "blocks": blocks, "run_dir": run_dir,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--instances", type=int, default=100)
    p.add_argument("--layer-duration", default="4s")
    a = p.parse_args()
    if os.geteuid() != 0:
        print("spacemesh:start on local:netns: skipped, needs root")
        return
    what = f"spacemesh:start, {a.instances} instances, {a.layer_duration} layers"
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        r = run(a.instances, a.layer_duration, Path(tmp))
        report_s, report_cpu, rss_mb = _report(r["run_dir"])
        load_seen = cpu_load(read_telemetry(r["run_dir"], {"kind", "mono", "wait_us_total"}))
        warnings = json.loads((r["run_dir"] / "summary.json").read_bytes())["warnings"]
    blocks = r["blocks"]
    print(f"{what}: passed in {r['wall']:.1f} s end to end (target <= 120 s); "
          f"{blocks[0] if blocks else 'no PoET message on the blocks'}; CPU of the whole "
          f"run {r['cpu']:.1f} s; last instance's exit to the command's exit "
          f"{r['end_to_exit']:.2f} s")
    print(f"  harness report of it: {report_s:.2f} s wall, {report_cpu:.2f} s CPU, "
          f"{rss_mb:.0f} MB peak RSS (target <= 5 s, <= 300 MB)")
    for warning in warnings:
        print(f"  its warning: {warning}")
    figures = [Figure(f"{what}: end to end", r["wall"], "s", target="<= 120 s", load=load)]
    if blocks:
        figures.append(Figure(f"{what}: layers {blocks[1]}-{blocks[2]} with a block",
                              int(blocks[3]), f"of {blocks[4]}", better="higher", load=load))
    if load_seen is not None:
        figures.append(Figure(f"{what}: share of the run some task waited for a CPU",
                              round(100 * load_seen.waited), "%", load=load))
    write("spacemesh", [
        *figures,
        Figure(f"{what}: CPU of the whole run (user+sys)", r["cpu"], "s", load=load),
        Figure(f"{what}: last instance's exit to the command's exit",
               r["end_to_exit"], "s", target="<= 5 s", load=load),
        Figure(f"{what}: harness report of it (wall)", report_s, "s", target="<= 5 s",
               load=load),
        Figure(f"{what}: harness report of it, peak RSS", rss_mb, "MB", target="<= 300 MB",
               load=load),
    ])


if __name__ == "__main__":
    main()
