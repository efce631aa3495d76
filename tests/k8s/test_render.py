"""cluster:k8s manifests: every object valid against the Kubernetes schema (strict, offline),
one labelled Pod per instance carrying the instance's RunParams, the run's options applied,
and bad options refused in one line before anything is written."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness._errors import UsageError
from harness._runparams import RunParams
from harness.plans import RunSpec, build_run_spec
from harness.runners.k8s import (
    K8sOptions,
    RenderedRun,
    load_options,
    render_run,
    write_manifests,
)
from harness.runners.k8s import _labels as L
from harness.runners.k8s._cluster import run_on_cluster
from harness.runners.k8s._render import DEADLINE_MARGIN_S, check_sizes, data_size
from harness.sync import Tokens

from ..conftest import harness_cli

kv = pytest.importorskip("kubernetes_validate", reason="the test extra's kubernetes-validate")
K8S_VERSION = "1.33.0"  # a current release; validated strictly (no unknown fields)
KEY = bytes(range(32))

MANIFEST = """
name = "duo"
[defaults]
runner = "local:netns"
[[testcases]]
name = "ok"
instances = { min = 1, max = 50, default = 3 }
entrypoint = "duo.plan:ok"
  [testcases.params]
  n = { type = "int", default = 1, min = 0, max = 5 }
"""

COMPOSITION = """
[global]
plan = "duo"
case = "ok"
total_instances = 5
[[groups]]
id = "Seeders_"
instances = { count = 2 }
params = { n = 2 }
[[groups]]
id = "leechers"
instances = { count = 3 }
[runner.k8s]
namespace = "p2p-tests"
image = "registry.example/harness:1"
cpu = "250m"
memory = "128Mi"
node_selector = { "kubernetes.io/arch" = "amd64" }
[runner.k8s.groups.Seeders_]
cpu = "2"
memory = "1Gi"
node_selector = { "node.example/pool" = "big" }
"""


def validate_all(run: RenderedRun) -> None:
    for obj in run.objects:
        kv.validate(obj, K8S_VERSION, strict=True)  # raises on any schema error


def rendered(spec: RunSpec, options: K8sOptions | None = None, run_id: str = "20260101-000000-abcdef") -> RenderedRun:
    return render_run(spec, options or load_options(spec), run_id, KEY)


def env_of(pod: dict[str, Any], container: str = "instance") -> dict[str, str]:
    """The container's env as the instance sees it (a fieldRef as the kubelet fills it)."""
    c = next(c for c in pod["spec"]["containers"] if c["name"] == container)
    out = {}
    for var in c["env"]:
        out[var["name"]] = var.get("value", "10.1.2.3" if "fieldRef" in var.get("valueFrom", {})
                                   else "<secret>")
    return out


@pytest.fixture
def duo(make_plan: Callable[..., Path], tmp_path: Path) -> RunSpec:
    roots = make_plan("duo", MANIFEST, "async def ok(env):\n    pass\n")
    comp = tmp_path / "comp.toml"
    comp.write_text(textwrap.dedent(COMPOSITION))
    return build_run_spec("", composition=comp, runner="cluster:k8s", plan_roots=[roots])


@pytest.mark.parametrize("target,instances", [("pingpong", None), ("pingpong", 7),
                                              ("spacemesh:start", 6), ("spacemesh:faults", None)])
def test_example_plans_render_to_valid_objects(target: str, instances: int | None) -> None:
    spec = build_run_spec(target, instances=instances, runner="cluster:k8s")
    run = rendered(spec)
    validate_all(run)
    assert len(run.instance_pods()) == spec.total
    assert [o["kind"] for o in run.objects[:4]] == ["ConfigMap", "Secret", "Pod", "Service"]


def test_a_composition_with_groups_and_placement_renders_valid_objects(duo: RunSpec) -> None:
    run = rendered(duo)
    validate_all(run)
    pods = {p["metadata"]["annotations"][L.INSTANCE]: p for p in run.instance_pods()}
    assert set(pods) == {i.id for i in duo.instances}
    seeder, leecher = pods["Seeders_/1"], pods["leechers/0"]
    assert seeder["metadata"]["namespace"] == "p2p-tests"
    res = seeder["spec"]["containers"][0]["resources"]
    assert res["limits"] == {"cpu": "2", "memory": "1Gi"} == res["requests"]
    assert seeder["spec"]["nodeSelector"] == {"node.example/pool": "big"}
    assert leecher["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "250m",
                                                                        "memory": "128Mi"}
    assert leecher["spec"]["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    assert seeder["spec"]["containers"][0]["image"] == "registry.example/harness:1"
    # a group id that is no label value gets a stand-in label, the exact id an annotation
    labels = seeder["metadata"]["labels"]
    assert labels[L.GROUP] != "Seeders_" and labels[L.GROUP] == L.label_value("Seeders_")
    assert labels[L.SEQ] == "1" and labels[L.RUN] == "20260101-000000-abcdef"
    assert pods["leechers/2"]["metadata"]["labels"][L.GROUP] == "leechers"


def test_each_pod_carries_its_instances_runparams_and_token(duo: RunSpec) -> None:
    run = rendered(duo, load_options(duo, ["secrets=inline"]))
    tokens = Tokens(KEY)
    for inst, pod in zip(duo.instances, run.instance_pods(), strict=True):
        params = RunParams.from_environ(env_of(pod))
        assert (params.instance_id, params.group_id, params.group_seq, params.global_seq) == (
            inst.id, inst.group, inst.group_seq, inst.global_seq)
        assert params.params == dict(inst.params) and params.instance_count == 5
        assert params.runner == "cluster:k8s" and params.data_ip == "10.1.2.3"
        assert params.sync_tcp == "h-20260101-000000-abcdef-sync.p2p-tests.svc:5050"
        assert params.sync_token is not None and tokens.check(inst.id, params.sync_token)
    assert {p.params["n"] for p in (RunParams.from_environ(env_of(p)) for p in run.instance_pods())} == {1, 2}


def test_the_run_selector_picks_exactly_one_runs_objects(duo: RunSpec) -> None:
    a, b = rendered(duo, run_id="20260101-000000-aaaaaa"), rendered(duo, run_id="20260101-000000-bbbbbb")

    def selected(selector: str, objs: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
        want = dict(s.split("=") for s in selector.split(","))
        return [o for o in objs if want.items() <= o["metadata"]["labels"].items()]

    both = a.objects + b.objects
    assert selected(L.run_selector(a.run_id), both) == list(a.objects)
    assert selected(L.run_selector(b.run_id), both) == list(b.objects)


def test_shaping_off_leaves_no_privileged_sidecar(duo: RunSpec) -> None:
    on = rendered(duo).instance_pods()[0]["spec"]["containers"]
    off = rendered(duo, load_options(duo, ["shaping=off"])).instance_pods()[0]["spec"]["containers"]
    assert [c["name"] for c in on] == ["instance", "shaper"]
    assert on[1]["securityContext"]["capabilities"]["add"] == ["NET_ADMIN", "NET_RAW"]
    assert [c["name"] for c in off] == ["instance"]
    # the sync service says each instance's network is ready, as no shaper will
    run_doc = orjson.loads(rendered(duo, load_options(duo, ["shaping=off"])).by_kind(
        "ConfigMap")[0]["data"]["run.json"])
    assert run_doc["shaped"] is False


def test_shaping_off_refuses_a_cut_no_shaper_would_make() -> None:
    comp = Path(__file__).parent / "kubeplay/faults.toml"  # a partition among others
    spec = build_run_spec("faulty:talk", composition=comp, runner="cluster:k8s",
                          plan_roots=[Path(__file__).parents[1] / "plans"])
    with pytest.raises(UsageError, match="shaping = off: the run's partition fault needs"):
        load_options(spec, ["shaping=off"])
    assert load_options(spec, ["shaping=userspace"]).shaping == "userspace"


def test_the_validator_catches_a_broken_object(duo: RunSpec) -> None:
    """The schema check can fail: a misspelt field is refused in strict mode."""
    pod = rendered(duo).instance_pods()[0]
    pod["spec"]["restartPolicyy"] = "Never"
    with pytest.raises(kv.ValidationError):
        kv.validate(pod, K8S_VERSION, strict=True)


@pytest.mark.parametrize("option,problem", [
    ("cpu=lots", "'lots' is not a resource quantity"),
    ("cpu=-1", "cpu '-1' is negative"),
    ("memory=-64Mi", "memory '-64Mi' is negative"),
    ("memory=512K", "'512K' is not a resource quantity"),  # k (kilo) or Ki, never K
    ("memory=1Mi5", "'1Mi5' is not a resource quantity"),
    ("cpu=1.2.3", "'1.2.3' is not a resource quantity"),
    ("cpu=1mk", "'1mk' is not a resource quantity"),
    ("namespace=Not_A_Label", "namespace 'Not_A_Label' is not a DNS label"),
    ("shaping=tc", "shaping must be one of auto, kernel, userspace, off"),
    ("sync_port=99999", "sync_port must be at most 65535"),
    ("imag=x", "unknown key imag"),
    ("node_selector=a=b=c,bad", "expected KEY=VALUE"),
    ("noequals", "expected KEY=VALUE"),
])
def test_bad_options_are_one_line_errors(duo: RunSpec, option: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        load_options(duo, [option])


@pytest.mark.parametrize("value", ["500m", "2", "1.5", "1.", ".5", "1Gi", "128Mi", "1e3",
                                   "1E", "2E-3", "100k", "1Ei", "+1"])
def test_every_quantity_the_api_accepts_is_taken(duo: RunSpec, value: str) -> None:
    assert load_options(duo, [f"memory={value}"]).memory == value


def test_a_kubeconfig_under_home_is_found_as_the_docs_write_it(
        duo: RunSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube/config").write_text("apiVersion: v1\nkind: Config\n")
    options = load_options(duo, ["kubeconfig=~/.kube/config"])  # docs/k8s.md's example
    assert options.kubeconfig == tmp_path / ".kube/config"


def test_the_composition_names_only_its_own_groups(duo: RunSpec, tmp_path: Path) -> None:
    assert duo.composition is not None
    text = duo.composition.read_text() + '\n[runner.k8s.groups.nobody]\ncpu = "1"\n'
    duo.composition.write_text(text)
    with pytest.raises(UsageError, match="no group 'nobody'"):
        load_options(duo)


def test_render_cli_writes_valid_manifests_and_refuses_bad_input(tmp_path: Path) -> None:
    out = tmp_path / "manifests"
    done = harness_cli("run", "pingpong", "--runner", "cluster:k8s", "--render", str(out),
                       "--k8s", "namespace=pp")
    assert done.returncode == 0, done.stderr
    [path] = out.glob("*.yaml")
    # the validator's own command line, as a reviewer would run it on the file
    check = subprocess.run([str(Path(sys.executable).parent / "kubernetes-validate"),
                            "--strict", "-k", K8S_VERSION, str(path)],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count("passed") == 8  # ConfigMap, Secret, sync Pod, Service, 4 Pods
    assert "namespace" in path.read_text() and '"namespace": "pp"' in path.read_text()
    for args, problem in [
        (["--k8s", "memory=much"], "'much' is not a resource quantity"),
        (["--runner", "local:exec"], "--render is for cluster:k8s runs"),
        (["--sync-tcp", "127.0.0.1:0"], "--sync-tcp is for local runs, not cluster:k8s"),
    ]:
        bad = harness_cli("run", "pingpong", "--runner", "cluster:k8s", "--render",
                          str(tmp_path / "bad"), *args)
        assert bad.returncode == 2 and problem in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad").exists()
    (tmp_path / "file").write_text("")  # it said only "File exists"
    bad = harness_cli("run", "pingpong", "--runner", "cluster:k8s", "--render",
                      str(tmp_path / "file"))
    assert bad.returncode == 2 and bad.stderr.strip().endswith("not a directory (the manifests "
                                                               "go in one)"), bad.stderr


@pytest.mark.parametrize("secrets", ["secret", "inline"])
def test_rendered_manifests_holding_the_sync_key_are_readable_by_their_owner_only(
        duo: RunSpec, tmp_path: Path, secrets: str) -> None:
    run = rendered(duo, dataclasses.replace(load_options(duo), secrets=secrets))
    stale = tmp_path / f"{run.run_id}.yaml"  # one there before, readable by everyone
    stale.write_text("old")
    stale.chmod(0o644)
    old = os.umask(0o022)
    try:
        path = write_manifests(run, tmp_path)
        again = write_manifests(run, tmp_path / "new")
    finally:
        os.umask(old)
    for written in (path, again):
        assert KEY.hex() in written.read_text()  # what makes it secret
        assert stat.S_IMODE(written.stat().st_mode) == 0o600, oct(written.stat().st_mode)


def test_a_configmap_or_secret_over_the_apis_limit_is_refused_before_anything(
        make_plan: Callable[..., Path], tmp_path: Path) -> None:
    roots = make_plan("big", MANIFEST.replace('"duo', '"big').replace("max = 50", "max = 20000"),
                      "async def ok(env):\n    pass\n")
    out = tmp_path / "manifests"
    done = harness_cli("run", "big", "-i", "13000", "--runner", "cluster:k8s", "--plans",
                       str(roots), "--render", str(out))
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert re.search(r"the run's ConfigMap h-[-0-9a-z]+-params would hold 1,0\d\d,\d\d\d "
                     r"bytes, more than the 1,048,576 \(1 MiB\) Kubernetes takes in one: run "
                     r"fewer instances", done.stderr), done.stderr
    assert not out.exists()
    # the cluster path renders the same way first: nothing created, no run directory
    spec = build_run_spec("big", instances=13000, runner="cluster:k8s", plan_roots=[roots])
    cluster = Untouchable()
    with pytest.raises(UsageError, match="ConfigMap"):
        run_on_cluster(spec, load_options(spec), tmp_path / "outputs", quiet=True,
                       api=cluster)
    assert not (tmp_path / "outputs").exists()
    # a Secret is counted as the API counts it, each token's key and value
    secret = {"kind": "Secret", "metadata": {"name": "h-x-tokens"},
              "stringData": {f"token-{i:05}": "f" * 64 for i in range(14_000)}}
    assert data_size(secret) == 14_000 * (11 + 64)
    with pytest.raises(UsageError, match=r"Secret h-x-tokens would hold 1,050,000 bytes.*"
                                         r"each has its token"):
        check_sizes([secret])
    secret["stringData"] = dict(list(secret["stringData"].items())[:13_900])
    check_sizes([secret])


class Untouchable:
    """A cluster the run must not reach."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the run used the cluster's {name}")


def test_every_pod_of_a_run_the_sync_services_too_ends_by_itself_after_its_timeout(
        duo: RunSpec) -> None:
    timed = dataclasses.replace(duo, timeout_s=120.5)
    run = rendered(timed)
    validate_all(run)
    deadlines = {p["spec"]["activeDeadlineSeconds"] for p in run.by_kind("Pod")}
    assert deadlines == {121 + DEADLINE_MARGIN_S} and DEADLINE_MARGIN_S >= 600
    # the sync service's pod too (a Deployment's may have none: it ran on after a killed
    # runner until harness clean), and its Service still selects it
    [sync] = [p for p in run.by_kind("Pod") if p["metadata"]["labels"][L.COMPONENT] == "sync"]
    [service] = run.by_kind("Service")
    assert service["spec"]["selector"].items() <= sync["metadata"]["labels"].items()
    assert sync["spec"]["restartPolicy"] == "Never" and not run.by_kind("Deployment")
    endless = rendered(dataclasses.replace(duo, timeout_s=1e30))
    assert {p["spec"]["activeDeadlineSeconds"] for p in endless.by_kind("Pod")} == {2**32 - 1}
    validate_all(endless)


def test_no_fail_fast_reaches_the_sync_service_through_the_configmap(tmp_path: Path) -> None:
    for args, fail_fast in (([], True), (["--no-fail-fast"], False)):
        out = tmp_path / str(fail_fast)
        done = harness_cli("run", "pingpong", "--runner", "cluster:k8s", "--render", str(out),
                           *args)
        assert done.returncode == 0, done.stderr
        [path] = out.glob("*.yaml")
        docs = [orjson.loads(d) for d in path.read_text().split("---\n") if d.strip()]
        [config] = [d for d in docs if d["kind"] == "ConfigMap"]
        assert orjson.loads(config["data"]["run.json"])["fail_fast"] is fail_fast
