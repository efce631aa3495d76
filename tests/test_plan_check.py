"""A manifest's `check`: a plan's own test of a run's params, before anything starts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness._errors import UsageError
from harness.plans import _plancheck, build_run_spec

from .conftest import harness_cli

MANIFEST = """
name = "demo"
[defaults]
check = "demo.plan:check"
[[testcases]]
name = "main"
instances = { min = 2, max = 10, default = 4 }
entrypoint = "demo.plan:main"
  [testcases.params]
  speed = { type = "float", default = 1.5 }
  wait = { type = "duration", default = "250ms" }
[[testcases]]
name = "own"
instances = { min = 2, max = 10, default = 4 }
entrypoint = "demo.plan:main"
check = "demo.plan:{own}"
"""

PLAN_PY = """
import os, sys, time

print("plan code may print on stdout")
os.write(1, b"or write to it\\n")

async def main(env):
    pass

def check(params, instances):
    if params["speed"] * instances > 10:
        raise ValueError(f"speed {params['speed']} x {instances} instances is over 10")
    if params["wait"] == 2.0:  # durations arrive in seconds
        raise ValueError(f"got {sorted(params.items())}")

def buggy(params, instances):
    return params["nosuch"]

def hangs(params, instances):
    time.sleep(60)

def fine(params, instances):
    pass

def timed(params, instances, timeout_s):
    if timeout_s < 2:
        raise ValueError(f"a timeout of {timeout_s:g}s is too short")
"""


def _plan(make_plan: Callable[..., Path], own: str = "fine", code: str = PLAN_PY) -> Path:
    return make_plan("demo", MANIFEST.replace("{own}", own), code)


def _refused(root: Path, target: str = "demo", **kwargs: object) -> str:
    with pytest.raises(UsageError) as caught:
        build_run_spec(target, plan_roots=[root], **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_check_sees_each_groups_params_and_the_instance_count(
    make_plan: Callable[..., Path],
) -> None:
    root = _plan(make_plan)
    assert build_run_spec("demo", plan_roots=[root]).total == 4  # 1.5 x 4 = 6: accepted
    assert _refused(root, instances=7) == "demo:main: speed 1.5 x 7 instances is over 10"
    assert (_refused(root, params={"wait": "2s"})
            == "demo:main: got [('speed', 1.5), ('wait', 2.0)]")  # fmt: skip
    assert build_run_spec("demo:own", plan_roots=[root], instances=9).total == 9  # its own


def test_a_check_that_takes_the_timeout_is_given_it(make_plan: Callable[..., Path]) -> None:
    root = _plan(make_plan, "timed")
    assert build_run_spec("demo:own", plan_roots=[root], timeout_s=2.0).total == 4
    assert _refused(root, "demo:own", timeout_s=1.5) == "demo:own: a timeout of 1.5s is too short"


def test_a_refusal_names_the_group_when_there_are_several(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    root = _plan(make_plan)
    comp = tmp_path / "comp.toml"
    comp.write_text('[global]\nplan = "demo"\n'
                    '[[groups]]\nid = "slow"\ninstances = { count = 2 }\n'
                    '[[groups]]\nid = "fast"\ninstances = { count = 2 }\n'
                    '  [groups.params]\n  speed = 3.0\n')  # fmt: skip
    assert _refused(root, "", composition=comp) == (
        "demo:main: group 'fast': speed 3.0 x 4 instances is over 10")


@pytest.mark.parametrize(("own", "message"), [
    ("buggy", "check demo.plan:buggy raised KeyError: 'nosuch'"),
    ("nosuch", "check 'demo.plan:nosuch': demo.plan ("),
    ("hangs", "check demo.plan:hangs did not answer in 1s"),
])
def test_a_check_that_cannot_answer_refuses_the_run(
    make_plan: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, own: str, message: str
) -> None:
    monkeypatch.setattr(_plancheck, "CHECK_TIMEOUT_S", 1.0)
    assert message in _refused(_plan(make_plan, own), "demo:own")


def test_a_check_module_that_fails_to_import_refuses_the_run(
    make_plan: Callable[..., Path],
) -> None:
    root = _plan(make_plan, code=PLAN_PY + "\nraise RuntimeError('broken on import')\n")
    assert _refused(root) == (
        "demo:main: check demo.plan:check failed: RuntimeError: broken on import")


def test_a_check_must_name_a_function(make_plan: Callable[..., Path]) -> None:
    root = make_plan("demo", MANIFEST.replace('"demo.plan:{own}"', '"nocolon"'), PLAN_PY)
    assert "check must look like 'package.module:function'" in _refused(root)


def test_the_cli_refuses_a_spacemesh_run_its_check_refuses(tmp_path: Path) -> None:
    for param, message in [
        ("schedule=garbage", "harness: error: spacemesh:faults: fault schedule is not JSON"),
        ('schedule={"cuts": [{"start_s": 1, "end_s": 2, "a": [0], "b": [9]}]}',
         "harness: error: spacemesh:faults: fault schedule cut 0: no instance 9 (there are 5)"),
        # Both once passed, bent silently (late gateways, every node dishonest), then failed
        # the run from inside its instances.
        ("late=9", "harness: error: spacemesh:faults: late=9: the network has only 4 miners"),
        ("dishonest=6", "harness: error: spacemesh:faults: dishonest=6: the network has only "
                        "5 nodes"),
        # These two started and failed: at the timeout, or every instance at its check.
        ("late=1\nlate_layers=8", "harness: error: spacemesh:faults: late_layers=8: the late "
                                    "miners must start before the last layer to verify"),
        ("checkpoint_layer=9", "harness: error: spacemesh:faults: checkpoint_layer=9: past the "
                               "last layer to verify (layers=8)"),
        # Ran 25 s, then every instance failed: "ATX of miner single/4 unknown to ...".
        ("layers_per_epoch=10\nlayers=3", "harness: error: spacemesh:faults: layers=3: must "
                                          "reach past the first epoch (layers_per_epoch=10)"),
        # Ran 16 s, then every node failed: "no identity equivocated: nothing to detect".
        ("shared_keys=40", "harness: error: spacemesh:faults: shared_keys=40: 40% of the "
                           "network's 4 miners makes no pair sharing a key"),
        # Ran to the timeout (300 s), then failed: "still running at the run's timeout".
        ("layers=200", "harness: error: spacemesh:faults: layers=200: the last one ends 406s "
                       "after the instances start (genesis_offset=4s, then 201 layers of 2s), "
                       "past the run's timeout of 300s (raise --timeout, or run fewer layers)"),
        # Ran the whole case, then failed: "only 7 of layers 3-9 have a block".
        ("min_blocks=100000", "harness: error: spacemesh:faults: min_blocks=100000: only 6 "
                              "layers can have a block (layers 3-8)"),
        # Ran to the timeout, then failed: every instance "still running at the run's timeout".
        ("judge_after=1000h", "harness: error: spacemesh:faults: judge_after=3.6e+06s: with "
                              "genesis_offset=4s, past the run's timeout of 300s"),
    ]:
        ps = [arg for each in param.split("\n") for arg in ("-p", each)]
        r = harness_cli("run", "spacemesh:faults", *ps, "--outputs", str(tmp_path))
        assert r.returncode == 2 and r.stderr.startswith(message), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert not any(tmp_path.iterdir())  # nothing was started or written
