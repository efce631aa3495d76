"""Benchmark of the merged log view: prints lines per second and peak memory.

    python -m tests.observe.bench_logmerge [INSTANCES] [LINES_PER_INSTANCE]

The merge reads each file lazily, so memory stays flat however long the logs are.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import orjson

from harness.observe import merged_lines


def write_logs(run_dir: Path, instances: int, lines: int) -> None:
    """`instances` log.jsonl files of `lines` lines each, interleaved in time."""
    rng = random.Random(1)
    for i in range(instances):
        d = run_dir / "single" / str(i)
        d.mkdir(parents=True)
        mono = 1000.0 + rng.random()
        with (d / "log.jsonl").open("wb") as f:
            for k in range(lines):
                mono += rng.expovariate(100)
                rec = {
                    "ts": mono + 1.7e9,
                    "mono": mono,
                    "event": f"step {k}",
                    "level": "info",
                    "instance": f"single/{i}",
                    "peer": f"single/{(i + 1) % instances}",
                }
                f.write(orjson.dumps(rec) + b"\n")


def main() -> None:
    instances = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    per = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "20260101-000000-000000"
        write_logs(run_dir, instances, per)
        size = sum(p.stat().st_size for p in run_dir.rglob("*.jsonl"))
        t0 = time.perf_counter()
        n, last = 0, float("-inf")
        for line in merged_lines(run_dir):
            assert line.mono >= last
            last = line.mono
            n += 1
        dt = time.perf_counter() - t0
        tracemalloc.start()  # a second pass, traced: the peak memory of the merge
        for _ in merged_lines(run_dir):
            pass
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    print(
        f"merged {n} lines from {instances} files ({size / 1e6:.1f} MB) in {dt:.2f} s: "
        f"{n / dt:,.0f} lines/s, peak traced memory {peak / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
