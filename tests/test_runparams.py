"""The instance environment: one type writes the TEST_* variables and reads them back."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from harness._runparams import RunParams
from harness.sdk import RunEnv

from .conftest import ROOT, only_run_dir

# What an environment variable can hold: no NUL, no lone surrogate.
_text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)))
_json: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)


def _fields(cls: type[RunParams]) -> st.SearchStrategy[RunParams]:
    return st.builds(
        cls,
        plan=_text, case=_text, run_id=_text, instance_count=st.integers(),
        group_id=_text, group_instance_count=st.integers(), global_seq=st.integers(),
        group_seq=st.integers(), instance_id=_text, role=_text,
        params=st.dictionaries(_text, _json, max_size=4), outputs_path=st.builds(Path, _text),
        sync_socket=st.none() | _text, sync_tcp=st.none() | _text, sync_token=st.none() | _text,
        runner=_text, data_network=st.none() | _text, data_ip=st.none() | _text,
        sidecar=st.booleans(), start_time=st.floats(allow_nan=False, allow_infinity=False),
        clock_file=st.none() | _text, restarts=st.integers(),
    )  # fmt: skip


@given(_fields(RunParams))
def test_what_is_written_reads_back_the_same(params: RunParams) -> None:
    environ = params.to_environ()
    assert set(environ) <= set(RunParams.variables())
    assert all(k.startswith("TEST_") and isinstance(v, str) for k, v in environ.items())
    assert RunParams.from_environ(environ) == params


@given(_fields(RunEnv))
def test_the_sdk_reads_what_the_supervisor_writes(env: RunEnv) -> None:
    back = RunEnv.from_environ(RunParams(**_carried(env)).to_environ())
    assert isinstance(back, RunEnv) and back == env


def _carried(params: RunParams) -> dict[str, Any]:
    return {name: getattr(params, name) for name in RunParams.__dataclass_fields__}


def test_sync_token_is_written_only_when_set() -> None:
    base = RunParams.from_environ(_minimal())
    assert "TEST_SYNC_TOKEN" not in base.to_environ()
    assert base.sync_token is None
    with_token = RunParams(**{**_carried(base), "sync_token": "s3cret"})
    assert with_token.to_environ()["TEST_SYNC_TOKEN"] == "s3cret"


def test_an_empty_optional_variable_is_unset() -> None:
    params = RunParams.from_environ({**_minimal(), "TEST_SYNC_TCP": "", "TEST_DATA_IP": ""})
    assert (params.sync_tcp, params.data_ip) == (None, None)
    assert RunParams(**{**_carried(params), "sync_tcp": ""}).sync_tcp is None


def test_params_must_be_an_object_and_the_start_time_a_number() -> None:
    from harness.sdk import RunEnvError

    for key, value, message in (("TEST_INSTANCE_PARAMS", "[1]", "not a JSON object"),
                                ("TEST_START_TIME", "noon", "not a number")):
        try:
            RunParams.from_environ({**_minimal(), key: value})
        except RunEnvError as e:
            assert str(e).startswith(key) and message in str(e)
        else:
            raise AssertionError(f"{key}={value!r} was accepted")


def test_the_documented_variables_are_the_types() -> None:
    text = (ROOT / "docs" / "contracts.md").read_text()
    section = text[text.index("## 3. "):text.index("## 4. ")]
    documented = set(re.findall(r"`(TEST_[A-Z_]+)`", section))
    assert documented == set(RunParams.variables())


def _minimal() -> dict[str, str]:
    return {
        "TEST_PLAN": "p", "TEST_CASE": "c", "TEST_RUN": "r", "TEST_INSTANCE_COUNT": "1",
        "TEST_GROUP_ID": "g", "TEST_GROUP_INSTANCE_COUNT": "1", "TEST_GLOBAL_SEQ": "0",
        "TEST_GROUP_SEQ": "0", "TEST_INSTANCE_ID": "g/0", "TEST_OUTPUTS_PATH": "/tmp/o",
    }  # fmt: skip


DUMP_NODE = """#!/usr/bin/env python3
# Saves the environment it was given, then passes through the wire protocol alone.
import json, os, socket
with open("environ.json", "w") as out:
    json.dump({k: v for k, v in os.environ.items() if k.startswith("TEST_")}, out)
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["TEST_SYNC_SOCKET"])
f = s.makefile("rwb")
def call(i, **req):
    f.write(json.dumps({"id": i, **req}).encode() + b"\\n"); f.flush()
    return json.loads(f.readline())
hello = {"instance": os.environ["TEST_INSTANCE_ID"]}
if "TEST_SYNC_TOKEN" in os.environ:
    hello["token"] = os.environ["TEST_SYNC_TOKEN"]
assert call(1, op="hello", **hello)["ok"]
assert call(2, op="signal_event", event={"type": "success"})["ok"]
"""


def test_a_run_gives_each_instance_an_environment_the_sdk_reads(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_plan("dump", """
name = "dump"
[defaults]
runner = "local:exec"
[[testcases]]
name = "main"
instances = { min = 1, max = 4, default = 2 }
program = ["./node.py"]
  [testcases.params]
  n = { type = "int", default = 7 }
""")  # fmt: skip
    node = root / "dump" / "node.py"
    node.write_text(DUMP_NODE)
    node.chmod(0o755)
    # A variable of the contract set around the harness must not reach the instances.
    outer = {**os.environ, "TEST_SYNC_TOKEN": "from-outside", "TEST_INSTANCE_ROLE": "outer"}
    r = subprocess.run(
        [sys.executable, "-m", "harness", "run", "dump", "--plans", str(root),
         "--outputs", str(tmp_path / "out"), "-q", "--metrics-listen", "off"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=outer,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = only_run_dir(tmp_path / "out")
    run = json.loads((run_dir / "run.json").read_text())
    for inst in run["instances"]:
        environ = json.loads((run_dir / inst["id"] / "environ.json").read_text())
        env = RunEnv.from_environ(environ)
        assert (env.run_id, env.plan, env.case, env.runner) == (
            run["run_id"], "dump", "main", "local:exec")
        assert (env.instance_id, env.global_seq, env.instance_count) == (
            inst["id"], inst["global_seq"], 2)
        assert env.params == {"n": 7} and env.outputs_path == run_dir / inst["id"]
        assert env.role == "" and env.sync_token != "from-outside"
        assert env.data_ip == inst["ip"] and env.start_time == run["started"]
