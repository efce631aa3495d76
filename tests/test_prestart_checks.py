"""What is knowable before a run starts is refused then, in one line with exit code 2 (3 for
what the machine lacks), with nothing created: a bad $HARNESS_NETEM_BACKEND, a planned fault
that shapes or cuts links on a runner without them, a param out of its bounds (named with
its unit), a count too large, a plan the composition does not name."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import netem
from harness._cli import main
from harness._errors import EnvironmentProblem, UsageError
from harness.faults import Fault, FaultError
from harness.plans import ParamSpec, build_run_spec, format_duration
from harness.plans._params import parse_spec
from harness.runners import BACKEND_ENV, netns_backend, runnable_here
from harness.runners._netns import SUBNET_ENV

from .conftest import ROOT, TINY_MANIFEST, TINY_PLAN

PLANS = Path(__file__).parent / "plans"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env={**os.environ, **(env or {})})


def _one_line(r: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert r.returncode == code, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), r.stderr
    return lines[0]


def _faults_file(tmp_path: Path, action: str) -> Path:
    extra = "" if action == "heal" else "targets = {count = 1}\n"
    if action == "shape":
        extra += "shape = {latency_ms = 10}\n"
    path = tmp_path / f"{action}.toml"
    path.write_text(f'[[faults]]\nat = 0\naction = "{action}"\n{extra}')
    return path


# -- HARNESS_NETEM_BACKEND ---------------------------------------------------------------------

@pytest.mark.parametrize("value", ["bogus", "", "Kernel"])
def test_a_bad_backend_variable_is_refused_before_a_netns_run_starts(
    tiny: Path, tmp_path: Path, value: str
) -> None:
    out = tmp_path / "out"
    r = _cli("run", "tiny", "-i", "2", "--runner", "local:netns", "--plans", str(tiny),
             "--outputs", str(out), "--metrics-listen", "off", env={BACKEND_ENV: value})
    line = _one_line(r)
    assert f"{BACKEND_ENV}: unknown backend {value!r}" in line
    assert "choose one of auto, kernel, userspace, none" in line
    assert not out.exists(), "a run directory or a history row was made"


def test_the_backend_variable_is_checked_by_one_function(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert netns_backend() == "auto"
    for name in netem.BACKEND_NAMES:
        monkeypatch.setenv(BACKEND_ENV, name)
        assert netns_backend() == name
    monkeypatch.setenv(BACKEND_ENV, "tc")
    with pytest.raises(UsageError, match=rf"^{BACKEND_ENV}: unknown backend 'tc'; choose one"):
        netns_backend()
    with pytest.raises(netem.RequestError, match=r"^unknown backend 'tc'; choose one of auto"):
        netem.check_backend_name("tc")


def test_harness_run_from_python_refuses_a_bad_backend_variable_before_reexecuting(
    tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = build_run_spec("tiny", runner="local:netns", plan_roots=[tiny])
    monkeypatch.setenv(BACKEND_ENV, "bogus")
    monkeypatch.setattr(netem, "needs_userns", lambda: pytest.fail("got past the check"))
    with pytest.raises(UsageError, match=BACKEND_ENV):
        runnable_here(spec)


# -- HARNESS_DATA_SUBNET -------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "message"), [
    ("bogus", "bad subnet 'bogus'"),
    ("10.9.0.0/30", "subnet 10.9.0.0/30 has room for 2 hosts, not 3"),
    ("10.9.0.1/31", "bad subnet '10.9.0.1/31'"),
    # every instance failed to connect: the hosts' addresses were not theirs to have
    ("127.0.0.0/8", "subnet 127.0.0.0/8 overlaps 127.0.0.0/8 (loopback)"),
    ("0.0.0.0/0", "subnet 0.0.0.0/0 overlaps 0.0.0.0/8 ('this network')"),
    ("239.1.0.0/16", "subnet 239.1.0.0/16 overlaps 224.0.0.0/4 (multicast)"),
])  # fmt: skip
def test_a_bad_subnet_variable_is_refused_before_a_netns_run_starts(
    tiny: Path, tmp_path: Path, value: str, message: str
) -> None:
    """It was exit code 3 from inside the run, after its directory and history row."""
    out = tmp_path / "out"
    r = _cli("run", "tiny", "-i", "3", "--runner", "local:netns", "--plans", str(tiny),
             "--outputs", str(out), "--metrics-listen", "off", env={SUBNET_ENV: value})
    assert f"{SUBNET_ENV}: {message}" in _one_line(r)
    assert not out.exists(), "a run directory or a history row was made"


# -- network faults on a runner without links ---------------------------------------------------

@pytest.mark.parametrize("action", ["shape", "partition", "isolate"])
def test_a_planned_network_fault_on_local_exec_is_refused_before_the_run(
    tiny: Path, tmp_path: Path, action: str
) -> None:
    out = tmp_path / "out"
    r = _cli("run", "tiny", "-i", "2", "--runner", "local:exec", "--plans", str(tiny),
             "--faults", str(_faults_file(tmp_path, action)), "--outputs", str(out),
             "--metrics-listen", "off")
    line = _one_line(r)
    assert (f"fault 0 in faults file {tmp_path / action}.toml faults[0] ({action}): the "
            "local:exec runner cannot shape or cut links") in line
    assert not out.exists(), "the run was started"


def test_a_fault_the_cluster_does_not_play_yet_is_refused_before_the_run(
    tiny: Path, tmp_path: Path
) -> None:
    """It failed the run once its pods were up."""
    with pytest.raises(FaultError, match=r"fault 0 in faults file .*shape.toml faults\[0\] "
                                         r"\(shape\): the cluster:k8s runner does not play "
                                         r"shape yet"):
        build_run_spec("tiny", runner="cluster:k8s", plan_roots=[tiny],
                       faults=_faults_file(tmp_path, "shape"))
    assert build_run_spec("tiny", runner="cluster:k8s", plan_roots=[tiny],
                          faults=_faults_file(tmp_path, "partition")).faults


@pytest.mark.parametrize("action", ["heal", "kill"])
def test_faults_that_need_no_links_are_accepted_on_local_exec(
    tiny: Path, tmp_path: Path, action: str
) -> None:
    spec = build_run_spec("tiny", runner="local:exec", plan_roots=[tiny],
                          faults=_faults_file(tmp_path, action))
    assert [f.action for f in spec.faults] == [action]
    assert build_run_spec("tiny", runner="local:netns", plan_roots=[tiny],
                          faults=_faults_file(tmp_path, "isolate")).faults


def test_a_replay_on_local_exec_of_a_run_with_a_network_fault_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "20261126-031500-a1b2c3"
    run_dir.mkdir()
    isolate = Fault.from_data({"action": "isolate", "at": 1, "targets": {"count": 1}})
    (run_dir / "run.json").write_text(json.dumps({
        "run_id": run_dir.name, "plan": "faulty", "case": "beat", "runner": "local:netns",
        "timeout_s": 30.0, "plan_dir": str((PLANS / "faulty").resolve()),
        "faults": [isolate.to_data()],
        "groups": [{"id": "single", "count": 2, "params": {"seconds": 1.0}, "program": None}],
    }))
    assert main(["replay", str(run_dir), "--runner", "local:exec", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fault 0 (isolate): the local:exec runner cannot" in err
    assert [p.name for p in tmp_path.iterdir()] == [run_dir.name], "a replay run was started"


def test_a_live_network_fault_on_local_exec_is_refused_and_the_run_goes_on(
    tmp_path: Path
) -> None:
    """What a live fault will meet is not known before the run: the run refuses it then."""
    out = tmp_path / "out"
    run = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "faulty:beat", "--plans", str(PLANS),
         "--outputs", str(out), "-q", "--metrics-listen", "off", "-p", "seconds=4"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the run has started its instances
            r = _cli("fault", "isolate", "--instance", "single/0", "--outputs", str(out))
            if "cannot shape or cut links" in r.stderr or r.returncode == 0:
                break
            time.sleep(0.1)
        line = _one_line(r, code=1)
        assert "fault refused: the local:exec runner cannot shape or cut links" in line
        assert run.wait(timeout=60) == 0, run.communicate()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def test_no_fallback_to_local_exec_for_a_run_that_cuts_links(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without root or user namespaces an unpinned local:netns run goes on local:exec,
    unless a planned fault needs links: it would fail the run once started."""
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    monkeypatch.setattr(netem, "needs_userns", lambda: True)
    monkeypatch.setattr(netem, "rootless_problem", lambda: "userns off (t)")
    kill = build_run_spec("tiny", plan_roots=[tiny], faults=_faults_file(tmp_path, "kill"))
    plain = dataclasses.replace(kill, runner="local:netns")  # the plan's default, unpinned
    assert not plain.runner_pinned and runnable_here(plain).runner == "local:exec"
    cuts = dataclasses.replace(plain, faults=(
        Fault.from_data({"action": "partition", "at": 1, "kind": "halves"}),))
    with pytest.raises(EnvironmentProblem, match=r"userns off \(t\) \(the run's partition "
                                                 r"fault cannot be played on local:exec\)"):
        runnable_here(cuts)


# -- params: bounds with their unit -------------------------------------------------------------

@pytest.mark.parametrize(("value", "message"), [
    ("300s", "param 'd' is 300s, above its max 250s"),
    ("5ms", "param 'd' is 5ms, below its min 10ms"),
    ("251", "param 'd' is 251s, above its max 250s"),  # a bare number is seconds
    ("250.5s", "param 'd' is 250.5s, above its max 250s"),
])
def test_a_duration_out_of_bounds_is_named_with_its_unit(
    tiny: Path, value: str, message: str
) -> None:
    with pytest.raises(UsageError, match=f"^-p: {message}$"):
        build_run_spec("tiny", params={"d": value}, plan_roots=[tiny])


def test_a_bare_number_for_a_duration_param_is_seconds(tiny: Path) -> None:
    spec = build_run_spec("tiny", params={"d": "5"}, plan_roots=[tiny])
    assert spec.groups[0].params["d"] == 5.0


def test_ints_and_floats_out_of_bounds_read_as_before(tiny: Path) -> None:
    with pytest.raises(UsageError, match=r"^-p: param 'n' is 9, above its max 5$"):
        build_run_spec("tiny", params={"n": "9"}, plan_roots=[tiny])
    loss = ParamSpec("loss", "float", 0.0, min=0, max=100)
    with pytest.raises(UsageError, match=r"param 'loss' is 101.0, above its max 100$"):
        loss.coerce("101", "-p")


def test_a_duration_params_min_above_its_max_is_named_with_units() -> None:
    with pytest.raises(UsageError, match=r"param 'd' has min 2s above its max 500ms$"):
        parse_spec("d", {"type": "duration", "default": "1s", "min": "2s", "max": "500ms"},
                   "manifest")


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0ms"), (0.05, "50ms"), (0.0005, "0.5ms"), (1, "1s"), (250.0, "250s"),
    (250.0001, "250.0001s"), (1234567.0, "1234567s"), (0.1 + 0.2, "300ms"),
])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# -- fault counts ------------------------------------------------------------------------------

HUGE = 10**23


@pytest.mark.parametrize("table", [
    {"action": "kill", "at": 0, "targets": {"count": HUGE}},
    {"action": "kill", "at": {"state": "s", "count": HUGE}, "targets": {}},
])
def test_a_count_too_large_names_the_upper_bound(table: dict[str, object]) -> None:
    with pytest.raises(FaultError, match=rf"count must be a whole number >= 1 and at most "
                                         rf"2\*\*63 - 1, not {HUGE}$"):
        Fault.from_data(table)


def test_harness_fault_count_too_large_names_the_upper_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fault", "kill", "--count", str(HUGE), "--outputs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at most 2**63 - 1" in err, err


# -- the plan of a composition -----------------------------------------------------------------

def test_a_plan_other_than_the_compositions_is_named_as_such(
    tiny: Path, make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    make_plan("other", TINY_MANIFEST.replace('"tiny"', '"other"'), TINY_PLAN)
    comp = tmp_path / "c.toml"
    comp.write_text('[global]\nplan = "tiny"\ncase = "ok"\n')
    with pytest.raises(UsageError, match=rf"^the command line names plan 'other' but "
                                         rf"composition {comp} names plan 'tiny'"):
        build_run_spec("other", composition=comp, plan_roots=[tiny])
    for target in ("tiny", "tiny:ok", ""):
        assert build_run_spec(target, composition=comp, plan_roots=[tiny]).plan.name == "tiny"
