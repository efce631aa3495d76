"""`harness show RUN`: one run's outcome, instances and failures."""

from __future__ import annotations

import argparse
import sys

import orjson

from harness._commands._args import add_run, warning_if_failing
from harness._liveness import cannot_tell, mark_aborted
from harness._tell import one_line
from harness.observe import load_run, resolve_run, summary
from harness.observe._report._faults import fault_line

HELP = "summarise one run: outcome, per-instance table, failures, where the report is"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of `harness show`."""
    add_run(parser)
    parser.add_argument("--json", action="store_true", help="print summary.json's content")


def run(args: argparse.Namespace) -> int:
    """Print the summary; 0 on success."""
    run_dir = resolve_run(args.run, args.outputs)
    with warning_if_failing(f"marking run {run_dir.name} aborted (its supervisor is gone)"):
        mark_aborted(run_dir, "harness show")  # a run whose supervisor is gone is not running
    info = summary(run_dir)
    if args.json:
        sys.stdout.write(orjson.dumps(info, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    record = load_run(run_dir)
    reason = info["reason"] or cannot_tell(record)  # left alone: say why it stays "running"
    dur = f"{info['duration_s']:.1f} s" if info["duration_s"] is not None else "still running"
    print(f"run      {info['run_id']}  ({run_dir})")
    target = f"{info['plan'] or '-'}:{info['case'] or '-'}"  # a record may lack them
    print(f"plan     {target}  runner {info['runner'] or '-'}  {dur}")
    if info["origin"]:
        print(f"started  by {one_line(info['origin'], 1000)}")
    n = info["instances"]
    print(
        f"outcome  {(info['outcome'] or 'running').upper()}  {n['passed']}/{n['total']} passed"
        + (f"  — {one_line(reason, 1000)}" if reason else "")
    )
    print()
    print(
        f"  {'INSTANCE':<16} {'ROLE':<10} {'ADDRESS':<15} {'OUTCOME':<8} {'EXIT':>4} {'TIME':>8}  REASON"
    )
    for i in record.instances:
        t = f"{i.duration_s:.1f}s" if i.duration_s is not None else "-"
        exit_code = i.exit_code if i.exit_code is not None else "-"
        print(
            f"  {i.id:<16} {i.role or '-':<10} {i.ip or '-':<15} "
            f"{i.outcome or '-':<8} {exit_code:>4} {t:>8}  {one_line(i.reason or '', 1000)}"
        )
    for warning in info.get("warnings", []):
        print(f"\nwarning: {warning}")
    if info["notes"]:
        print("\nnotes:")
        for n in info["notes"]:
            text = n["note"] or f"restarted {n['restarts']} time(s) by faults"
            if n["restarts"] and not text.startswith("restarted"):
                text += f"; restarted {n['restarts']} time(s) before"
            print(f"  {n['instance']}: {text}")
    if info["faults"]:
        print("\nfaults (seconds since the run's start):")
        for entry in info["faults"]:
            print(f"  {fault_line(entry)}")
    events = record.network_events
    if events:
        print("\nnetwork:")
        for e in events:
            allowed = "  (allowed: --allow-unshaped)" if e.get("allowed") else ""
            print(f"  {e.get('message') or e.get('event')}{allowed}")
    if info["failures"]:
        print("\nfailures:")
        for f in info["failures"]:
            reason = one_line(f["reason"] or "no reason recorded", 1000)
            code = f"exit code {f['exit_code']}"
            said = f["exit_code"] is None or code in reason  # "exit code 13 (exit code 13)"
            print(f"  {f['instance']}: {reason}{'' if said else f' ({code})'}")
    if info["propagation"]:
        print("\nmessage propagation (ms):")
        for topic, p in info["propagation"].items():
            print(
                f"  {topic:<16} p50 {p['p50_ms']:8.1f}  p90 {p['p90_ms']:8.1f}  max {p['max_ms']:8.1f}"
                f"  reached {p['coverage'] * 100:.0f}%"
            )
        if info["out_of_line_hops"]:
            print(
                f"  {info['out_of_line_hops']} hop(s) out of line with the configured links (see the report)"
            )
    report = run_dir / "report.html"
    print(
        f"\nreport   {report if report.exists() else '(none yet: harness report ' + info['run_id'] + ')'}"
    )
    return 0
