"""`python -m tests.k8s.kubeplay [TARGET ...]`: cluster:k8s runs for real under podman.

For each target (default: pingpong with 40 ms on every link), render the run as
cluster:k8s does, play its pods with `podman kube play` (tests.k8s.kubeplay._podman) and
follow them with the runner's own code (`run_on_cluster`: the same outcome logic, logs,
output files and events collected, everything deleted however the run ends). Then check
that the run passed and, for pingpong, that the shaping inside the pods held: the plan
fails itself if its fastest ping is under twice the latency, and each instance's median
round trip must lie within [2 x latency, 2 x latency + 250 ms]. The target `faults` plays
faults.toml (a partition, a kill, a restart and a pause) on faulty:talk and checks what each instance heard.
The target `timeout` runs pingpong past the run's timeout and checks that its instances were
ended through their agents and their output files collected. The target `unstartable`
runs pingpong with one pod that never starts (its image cannot be pulled, as the kubelet
would say it: `Unstartable`) and checks that the run ended long before its timeout, the
other instance failing because of it. The target `interrupt` sends the runner SIGINT (a
Ctrl-C) while pingpong runs and checks that the run says so and that each instance's output
files came back (their agents ended them and packed them before the pods were deleted).
Prints the image build time, each run's time and its round trips.

Needs root, podman, runc, catatonit and debootstrap (nox -s k8s installs them). The image
is built without any registry and kept in /var/tmp/harness-k8s (its store) for the next
session; the session's namespace, network, pods and containers are removed however it
ends."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from harness.plans import build_run_spec
from harness.runners.k8s import load_options
from harness.runners.k8s._cluster import run_on_cluster
from tests.k8s.kubeplay._image import build_image
from tests.k8s.kubeplay._podman import SUBNET, Interrupting, Podman, PodmanApi, Unstartable

CACHE = Path("/var/tmp/harness-k8s")
RUNROOT = Path("/run/harness-k8s")
NETWORK = "hk8s"
TARGETS = {
    # target -> (instances, params, the latency asked of every link in ms, or 0)
    "pingpong": (4, ["latency=40ms", "rounds=5"], 40.0),
    "spacemesh:start": (4, [], 0.0),  # a small Spacemesh network: 1 PoET, 3 nodes
}
FAULTS = Path(__file__).with_name("faults.toml")  # the target "faults"
TIMEOUT_S = 20.0  # the target "timeout": pingpong's 1,000 rounds of 80 ms take ~80 s
PLANS = Path(__file__).resolve().parents[2] / "plans"
RTT = re.compile(r'"rtt_p50_ms":\s*([0-9.]+)')


def check_rtts(run_dir: Path, latency_ms: float) -> list[float]:
    """Each instance's median round trip from its log (log.jsonl, collected from the pod);
    SystemExit if one is missing or shows the links unshaped (below 2 x latency) or far off
    (above 2 x latency + 250 ms)."""
    medians = []
    for log in sorted(p.parent / "log.jsonl" for p in run_dir.rglob("stdout.log")):
        found = RTT.findall(log.read_text()) if log.exists() else []
        if not found:
            raise SystemExit(f"kubeplay: no round trips in {log}")
        medians.append(float(found[-1]))
    if not medians:
        raise SystemExit(f"kubeplay: no instance logs in {run_dir}")
    low, high = 2 * latency_ms, 2 * latency_ms + 250
    bad = [m for m in medians if not low <= m <= high]
    if bad:
        raise SystemExit(f"kubeplay: round trips {bad} ms outside [{low:g}, {high:g}] ms: "
                         "the pods' shaping did not hold")
    return medians


def check_faults(run_dir: Path) -> str:
    """The partition held (single/1 heard nothing from single/0 while it was on, and heard
    it again after), the kill ended single/2 for good, single/1 started again after its
    restart and recorded success anew, and single/0 said nothing while paused and spoke
    again after; SystemExit if not."""
    entries = [json.loads(x) for x in (run_dir / "faults.jsonl").read_text().splitlines()]
    steps = {(e["action"], e["step"]): e["ts"] for e in entries if e.get("kind") == "fault"}
    cut_on, cut_off = steps[("partition", "applied")], steps[("partition", "undone")]
    killed = steps[("kill", "applied")]
    heard = [(float(t), who) for t, who, _ in (
        line.split() for line in (run_dir / "single/1/talk.log").read_text().splitlines())]
    during = [t for t, w in heard if cut_on + 0.2 < t < cut_off - 0.2 and w == "single/0"]
    if during:
        raise SystemExit(f"kubeplay: single/1 heard single/0 {len(during)} times through "
                         "the partition")
    if not [t for t, w in heard if cut_on + 0.2 < t < cut_off - 0.2 and w == "single/2"]:
        raise SystemExit("kubeplay: the partition cut single/1 from single/2 too")
    if not [t for t, w in heard if t > cut_off + 0.5 and w == "single/0"]:
        raise SystemExit("kubeplay: single/0 was not heard again after the partition")
    late = [t for t, w in heard if t > killed + 1.0 and w == "single/2"]
    if late:
        raise SystemExit(f"kubeplay: single/2 answered {len(late)} times after its kill")
    # its talk may be over by then (it counts from its first start): its events tell
    restarted = steps[("restart", "applied")]
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    again = [e["type"] for e in events if e.get("kind") == "event"
             and e.get("instance") == "single/1" and e["ts"] > restarted]
    if again[:1] != ["start"] or "success" not in again:
        raise SystemExit(f"kubeplay: single/1 after its restart: {again} (not started again "
                         "and passed)")
    paused, resumed = steps[("pause", "applied")], steps[("pause", "undone")]
    asleep = [t for t, w in heard if paused + 0.3 < t < resumed - 0.2 and w == "single/0"]
    if asleep:
        raise SystemExit(f"kubeplay: single/0 answered {len(asleep)} times while paused")
    if not [t for t, w in heard if t > resumed + 0.5 and w == "single/0"]:
        raise SystemExit("kubeplay: single/0 was not heard again after its resume")
    return (f"partition held {cut_off - cut_on:.1f} s and healed; single/2 silent after "
            "its kill; single/1 started again and passed; single/0 silent while paused "
            f"{resumed - paused:.1f} s, then heard again")


def check_timeout(run_dir: Path) -> str:
    """Each instance, still pinging at the run's timeout, was ended through its agent and
    failed for it as locally, and its output files came back (log.jsonl, which the SDK
    opens as the instance starts: none came back before); SystemExit if not."""
    run = json.loads((run_dir / "run.json").read_text())
    reason = f"still running at the run's timeout ({TIMEOUT_S:g}s)"
    wrong = [(i["id"], i["reason"]) for i in run["instances"]
             if not str(i["reason"]).startswith(reason) or ";" in str(i["reason"])]
    if wrong:
        raise SystemExit(f"kubeplay: timeout: not ended through their agents: {wrong}")
    _outputs_came_back(run_dir, run, "timeout")
    return (f"{len(run['instances'])} instances ended through their agents at the run's "
            f"{TIMEOUT_S:g} s timeout, their output files collected")


def _outputs_came_back(run_dir: Path, run: dict[str, Any], target: str) -> None:
    """SystemExit unless each instance's log.jsonl (which the SDK opens as the instance
    starts) came back from its pod."""
    missing = [i["id"] for i in run["instances"]
               if not (run_dir / i["id"] / "log.jsonl").exists()]
    if missing:
        raise SystemExit(f"kubeplay: {target}: no output files from {missing}")


def check_unstartable(run_dir: Path, took: float, timeout_s: float) -> str:
    """single/1 failed as its pod could not start, and single/0, waiting for it, ended
    because of it long before the run's timeout; SystemExit if not."""
    run = json.loads((run_dir / "run.json").read_text())
    reasons = {i["id"]: str(i["reason"]) for i in run["instances"]}
    if not reasons["single/1"].startswith("its pod's instance container cannot start"):
        raise SystemExit(f"kubeplay: unstartable: single/1 failed for {reasons['single/1']!r}")
    if "single/1" not in reasons["single/0"] or "timeout" in reasons["single/0"]:
        raise SystemExit(f"kubeplay: unstartable: single/0 failed for {reasons['single/0']!r}, "
                         "not because of single/1")
    if took > timeout_s / 2:
        raise SystemExit(f"kubeplay: unstartable: the run took {took:.1f} s (timeout "
                         f"{timeout_s:g} s)")
    return f"single/0 failed because of single/1 ({reasons['single/0']!r}) in {took:.1f} s"


INTERRUPT_AFTER_S = 5.0
"""The target "interrupt": its Ctrl-C comes this long after both instances run."""


def check_interrupt(run_dir: Path) -> str:
    """The run says it was interrupted, each instance failed for it, and its output files
    came back (log.jsonl, which the SDK opens as the instance starts); SystemExit if not."""
    run = json.loads((run_dir / "run.json").read_text())
    if run["outcome"] != "interrupted":
        raise SystemExit(f"kubeplay: interrupt: the run's outcome is {run['outcome']!r}")
    wrong = [(i["id"], i["reason"]) for i in run["instances"] if i["reason"] != "interrupted"]
    if wrong:
        raise SystemExit(f"kubeplay: interrupt: {wrong}")
    _outputs_came_back(run_dir, run, "interrupt")
    return (f"{len(run['instances'])} instances ended through their agents at a Ctrl-C, "
            "their output files collected")


def run_target(podman: Podman, image: str, target: str, outputs: Path,
               keep: Path | None) -> int:
    """One cluster:k8s run of `target` under kube play; its exit code."""
    instances, params, latency_ms = TARGETS.get(target, (None, [], 0.0))
    if target == "faults":
        spec = build_run_spec("faulty:talk", composition=FAULTS, runner="cluster:k8s",
                              timeout_s=180, plan_roots=[PLANS])
    elif target in ("timeout", "interrupt"):
        spec = build_run_spec("pingpong", instances=2, runner="cluster:k8s",
                              params={"latency": "40ms", "rounds": "1000"},
                              timeout_s=TIMEOUT_S if target == "timeout" else 180)
    elif target == "unstartable":
        spec = build_run_spec("pingpong", instances=2, runner="cluster:k8s", timeout_s=120)
    else:
        spec = build_run_spec(target, instances=instances, runner="cluster:k8s",
                              params=dict(p.split("=", 1) for p in params), timeout_s=180)
    options = load_options(spec, [f"image={image}", "pull_policy=Never", "secrets=inline",
                                  "shaping=auto", "cpu=1", "memory=512Mi", "sync_cpu=1"])
    t0 = time.monotonic()
    api = (Unstartable(podman, NETWORK, "-1") if target == "unstartable" else
           Interrupting(podman, NETWORK, INTERRUPT_AFTER_S) if target == "interrupt" else
           PodmanApi(podman, NETWORK))
    if target == "interrupt":
        try:
            run_on_cluster(spec, options, outputs, quiet=False, api=api)
            raise SystemExit("kubeplay: interrupt: the run ended before its Ctrl-C")
        except KeyboardInterrupt:
            code = 130  # as it must
    else:
        code = run_on_cluster(spec, options, outputs, quiet=False, api=api)
    took = time.monotonic() - t0
    # the newest run directory (outputs also holds history.sqlite)
    run_dir = max((p for p in outputs.iterdir() if p.is_dir()),
                  key=lambda p: p.stat().st_mtime)
    if keep:
        shutil.copytree(run_dir, keep / run_dir.name)
        run_dir = keep / run_dir.name
    if target == "timeout" and code == 1:  # as it must: its instances ran on
        print(f"kubeplay: timeout: {check_timeout(run_dir)}, in {took:.1f} s ({run_dir})")
        return 0
    if target == "interrupt":
        print(f"kubeplay: interrupt: {check_interrupt(run_dir)}, in {took:.1f} s ({run_dir})")
        return 0
    if target == "unstartable" and code == 1:  # as it must
        print(f"kubeplay: unstartable: {check_unstartable(run_dir, took, spec.timeout_s)} "
              f"({run_dir})")
        return 0
    print(f"kubeplay: {target}: {'passed' if code == 0 else 'FAILED'} in {took:.1f} s "
          f"({run_dir})")
    if code != 0:
        for log in sorted(run_dir.rglob("stdout.log")):
            print(f"--- {log}\n{log.read_text()[-3000:]}", file=sys.stderr)
        return code
    if target == "faults":
        print(f"kubeplay: faults: {check_faults(run_dir)}")
    if latency_ms:
        medians = check_rtts(run_dir, latency_ms)
        print(f"kubeplay: {target}: asked {latency_ms:g} ms each way; median round trips "
              f"{', '.join(f'{m:.1f}' for m in medians)} ms")
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    """Build the image, run each target, remove the session's pods, network, namespace."""
    # SIGTERM (a CI job's timeout) and SIGHUP end the session as Ctrl-C does: the run's
    # objects, then the session's pods, network and namespace are removed (they killed it
    # at once and left them all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    parser = argparse.ArgumentParser(prog="python -m tests.k8s.kubeplay")
    parser.add_argument("targets", nargs="*", default=["pingpong"],
                        help="plan[:case] (pingpong, spacemesh:start, ...), 'faults', "
                             "'timeout', 'unstartable' or 'interrupt'")
    parser.add_argument("--keep-outputs", type=Path, help="copy the runs' outputs here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("kubeplay: needs root (podman's pods with NET_ADMIN, a netns)")
    missing = [c for c in ("podman", "runc", "debootstrap") if shutil.which(c) is None]
    if missing:
        raise SystemExit(f"kubeplay: missing {' '.join(missing)} (apt install them)")
    CACHE.mkdir(parents=True, exist_ok=True)
    lock = (CACHE / "lock").open("w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # one session at a time owns the store
    netns = f"hk8s-{os.getpid()}"
    store = CACHE / "store"
    with tempfile.TemporaryDirectory(prefix="hk8s-") as tmp:
        work = Path(tmp)
        subprocess.run(["ip", "netns", "add", netns], check=True)
        podman = Podman(work, netns, store, RUNROOT)
        try:
            # whatever a killed session left in the store goes first
            podman("pod", "rm", "--all", "--force", check=False)
            podman("network", "create", "--subnet", str(SUBNET), "--disable-dns", NETWORK)
            image, took = build_image(podman, CACHE)
            print(f"kubeplay: image {image} ready in {took:.1f} s")
            outputs = work / "outputs"
            outputs.mkdir()
            codes = [run_target(podman, image, t, outputs, args.keep_outputs)
                     for t in args.targets]
            return max(codes)
        except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
            print(f"kubeplay: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("kubeplay: interrupted", file=sys.stderr)
            return 130
        finally:
            podman("pod", "rm", "--all", "--force", check=False)
            podman("network", "rm", "--force", NETWORK, check=False)
            subprocess.run(["ip", "netns", "delete", netns], check=False)


if __name__ == "__main__":
    sys.exit(main())
