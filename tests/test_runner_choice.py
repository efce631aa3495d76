"""Runner names in one registry; the rootless fallback the same from the CLI and from Python."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import runners
from harness._cli import build_parser
from harness._errors import UsageError
from harness.plans import build_run_spec

from .conftest import ROOT, free_port

TINY = """
name = "tiny"
[defaults]
runner = "local:netns"
[[testcases]]
name = "main"
instances = { min = 1, max = 4, default = 2 }
entrypoint = "tiny.plan:main"
"""
CODE = """
async def main(env):
    pass
"""


def test_every_registered_runner_is_the_class_of_that_name() -> None:
    assert list(runners.RUNNERS) == [runners.LOCAL_EXEC, runners.LOCAL_NETNS,
                                     runners.CLUSTER_K8S]
    for name in runners.RUNNERS:
        assert runners.get_runner(name).name == name
    with pytest.raises(UsageError, match=r"unknown runner 'k8s'; known: local:exec, local:netns, cluster:k8s"):
        runners.get_runner("k8s")


def test_the_cli_offers_the_registered_runners() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    run = sub.choices["run"]  # type: ignore[index]
    option = next(a for a in run._actions if a.dest == "runner")
    assert list(option.choices) == list(runners.RUNNERS)


@pytest.mark.parametrize("runner", ['"k8s"', "5", '["local:exec"]'])
def test_a_manifest_names_a_registered_runner(
    make_plan: Callable[..., Path], runner: str
) -> None:
    root = make_plan("tiny", TINY.replace('"local:netns"', runner), CODE)
    with pytest.raises(UsageError, match=r"manifest.toml: unknown runner .*; known: local:exec"):
        build_run_spec("tiny", plan_roots=[root])


def test_only_a_runner_asked_for_by_name_is_pinned(make_plan: Callable[..., Path]) -> None:
    root = make_plan("tiny", TINY, CODE)
    assert not build_run_spec("tiny", plan_roots=[root]).runner_pinned
    assert build_run_spec("tiny", plan_roots=[root], runner="local:netns").runner_pinned


# `harness.run()` from a Python program, on a machine that (we pretend) gives this user
# neither root nor user namespaces, or user namespaces only.
PROGRAM = """
import json, os, socket, sys
from pathlib import Path
import harness, netem

root, outputs, pinned, problem, port = sys.argv[1:]
netem.needs_userns = lambda: True
netem.rootless_problem = lambda: problem or None

def reexec_in_userns():  # what would be handed over to the re-executed program
    fds = dict(kv.split("=") for kv in os.environ["HARNESS_LISTEN_FDS"].split(","))
    s = socket.socket(fileno=int(fds["metrics"]))
    print(json.dumps({"reexec": True, "listening": s.getsockname()[1]}))
    sys.exit(0)

netem.reexec_in_userns = reexec_in_userns
spec = harness.build_run_spec("tiny", plan_roots=[Path(root)],
                              runner="local:netns" if pinned == "1" else None)
try:
    result = harness.run(spec, harness.RunOptions(outputs=Path(outputs), progress=False,
                                                  metrics_listen=("127.0.0.1", int(port))))
except harness.HarnessError as e:
    print(json.dumps({"error": str(e)}))
else:
    run = json.loads((result.run_dir / "run.json").read_text())
    print(json.dumps({"outcome": result.outcome, "runner": run["runner"]}))
"""


def _python_api(root: Path, outputs: Path, *, pinned: bool, problem: str) -> tuple[dict, str]:
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROGRAM), str(root), str(outputs),
         "1" if pinned else "0", problem, str(free_port())],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.splitlines()[-1]), r.stderr


def test_python_api_falls_back_to_local_exec_like_the_cli(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_plan("tiny", TINY, CODE)
    answer, stderr = _python_api(root, tmp_path / "out", pinned=False, problem="userns off (t)")
    assert answer == {"outcome": "passed", "runner": "local:exec"}
    assert "running on local:exec (no shaping)" in stderr and "userns off (t)" in stderr


def test_python_api_with_a_pinned_runner_fails_before_anything_starts(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_plan("tiny", TINY, CODE)
    answer, _ = _python_api(root, tmp_path / "out", pinned=True, problem="userns off (t)")
    assert answer == {"error": "local:netns needs root or user namespaces: userns off (t)"}
    assert not (tmp_path / "out").exists()


def test_python_api_reexecs_into_a_user_namespace_with_its_sockets_bound(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_plan("tiny", TINY, CODE)
    answer, _ = _python_api(root, tmp_path / "out", pinned=False, problem="")
    assert answer["reexec"] is True and answer["listening"] > 0
    assert not (tmp_path / "out").exists()
