"""Report benchmark: `harness report` of a synthetic 100-instance spacemesh:start run
directory (tests/observe/_bigrun.py: ~195 MB, 185 MB of traces), its time and peak RSS
(of the child process), and how long headless Chromium takes to open the page.

    python benchmarks/bench_report.py [--run-dir DIR] [--json outputs/bench/report.json]

Targets (issue 11): <= 5 s and <= 300 MB RSS; the page opens in Chromium in < 2 s.
The JSON: {"benchmark": "report", "instances", "run_dir_mb", "trace_mb", "report_s",
"report_peak_rss_mb", "report_html_mb", "chromium_open_s" and "chromium_blank_s" (a blank page: Chromium's own start;
null without Chromium),
"cpus", "loadavg_1m"}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.observe._bigrun import make_big_run  # noqa: E402


def _mb(paths: list[Path]) -> float:
    return sum(p.stat().st_size for p in paths if p.is_file()) / 1e6


def _report(run_dir: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of `harness report` in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "harness", "report", str(run_dir)], check=True,
                   stdout=subprocess.DEVNULL, cwd=ROOT)
    wall = time.monotonic() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KB, the largest child
    if peak < before:
        peak = before
    return wall, peak / 1024


def _chromium_open(page: Path) -> float | None:
    """Seconds for headless Chromium to load the page and dump its DOM."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return None
    with tempfile.TemporaryDirectory() as profile:
        t0 = time.monotonic()
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=120)
        return time.monotonic() - t0


def main() -> None:
    """Print the figures and write them as JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", type=Path, help="a run directory to use (default: generate)")
    p.add_argument("--instances", type=int, default=100)
    p.add_argument("--json", type=Path, default=ROOT / "outputs" / "bench" / "report.json")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = a.run_dir or make_big_run(Path(tmp), instances=a.instances)
        files = list(run_dir.rglob("*"))
        traces = [f for f in files if f.name.startswith("trace.jsonl")]
        report_s, rss_mb = _report(run_dir)
        page = run_dir / "report.html"
        open_s = _chromium_open(page)
        blank = Path(tmp) / "blank.html"
        blank.write_text("<!DOCTYPE html><title>blank</title>")
        blank_s = _chromium_open(blank)  # Chromium's own start, for comparison
        figures = {
            "benchmark": "report",
            "instances": a.instances,
            "run_dir_mb": round(_mb(files), 1),
            "trace_mb": round(_mb(traces), 1),
            "report_s": round(report_s, 2),
            "report_peak_rss_mb": round(rss_mb, 1),
            "report_html_mb": round(page.stat().st_size / 1e6, 2),
            "chromium_open_s": None if open_s is None else round(open_s, 2),
            "chromium_blank_s": None if blank_s is None else round(blank_s, 2),
            "cpus": os.cpu_count(),
            "loadavg_1m": round(os.getloadavg()[0], 2),
        }
    print(f"harness report of a {a.instances}-instance run ({figures['run_dir_mb']} MB, "
          f"{figures['trace_mb']} MB traces): {figures['report_s']} s, peak RSS "
          f"{figures['report_peak_rss_mb']} MB (target <= 5 s, <= 300 MB)")
    print(f"report.html {figures['report_html_mb']} MB opens in headless Chromium in "
          f"{figures['chromium_open_s']} s (a blank page: {figures['chromium_blank_s']} s; "
          f"target < 2 s); load {figures['loadavg_1m']} on "
          f"{figures['cpus']} CPUs")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"figures: {a.json}")


if __name__ == "__main__":
    main()
