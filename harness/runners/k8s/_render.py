"""A run (plan + composition) as Kubernetes objects: one Pod per instance, the sync service
(a Pod + Service over TCP), a ConfigMap with the run's params, a Secret with its key.

Pure: the same spec, options, run id and key always give the same objects."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import orjson

from harness._errors import UsageError
from harness._runparams import RunParams
from harness.plans import InstanceSpec, RunSpec
from harness.plans._entrypoint import project_root
from harness.runners._registry import CLUSTER_K8S
from harness.runners.k8s import _labels as L
from harness.runners.k8s._options import K8sOptions
from harness.sync import Tokens

OUTPUTS = "/outputs"  # each pod's outputs volume, collected at the run's end
CONFIG = "/etc/harness"  # the ConfigMap, mounted in every pod
DONE = "/run/harness"  # shared by a pod's containers: the instance says it ended here
RUN_FILE = "run.json"
KEY_ENV = "HARNESS_SYNC_KEY"
MAX_DATA_BYTES = 1024 * 1024
"""The most a ConfigMap's or a Secret's data may hold (its keys and values, in bytes, as
the API server's validation counts them); it refuses to create a larger one."""
TOO_BIG = {
    "ConfigMap": "run fewer instances (each has its entry in run.json), or give the run "
                 "smaller params or fewer faults",
    "Secret": "run fewer instances (each has its token in it)",
}
"""What makes each kind smaller, for the error that says one is too big."""
DEADLINE_MARGIN_S = 1800
"""How much longer than the run's timeout each of its pods (the instances' and the sync
service's) may run (its `activeDeadlineSeconds`, counted from when its node took it): the
start-up the runner's timeout does not count (the creation of the pods after it, about 13
minutes for the largest run the ConfigMap allows, ~12,700 pods, at 16 requests/s; then up
to `_cluster.START_WITHIN_S` for every pod to start: scheduling, a cold node's image pull)
and the collection of the logs at the timeout. A pod of a run whose runner died (the
local process that follows it) is then ended by its node at last; while the runner lives,
it deletes every pod once the run's timeout has passed and the logs are in."""
MAX_DEADLINE_S = 2**32 - 1  # the most the API server takes for activeDeadlineSeconds


@dataclasses.dataclass(frozen=True)
class RenderedRun:
    """Every object of one run, in the order to create them."""

    run_id: str
    namespace: str
    objects: tuple[dict[str, Any], ...]

    def by_kind(self, kind: str) -> list[dict[str, Any]]:
        """The objects of one kind."""
        return [o for o in self.objects if o["kind"] == kind]

    def instance_pods(self) -> list[dict[str, Any]]:
        """The instances' pods (not the sync service's), in the instances' order."""
        return [p for p in self.by_kind("Pod")
                if p["metadata"]["labels"].get(L.COMPONENT) == "instance"]


def image_plan_dir(spec: RunSpec, options: K8sOptions) -> str:
    """Where the plan is inside the image: at the same place under `workdir` as in this
    project, or `workdir/plans/<name>` for a plan from elsewhere."""
    path = spec.plan.path.resolve()
    try:
        rel = path.relative_to(project_root())
    except ValueError:
        rel = PurePosixPath("plans", spec.plan.name)  # type: ignore[assignment]
    return str(PurePosixPath(options.workdir) / PurePosixPath(*rel.parts))


def run_document(spec: RunSpec, plan_dir: str, shaped: bool = True,
                 fail_fast: bool = True) -> dict[str, Any]:
    """What the in-cluster pieces read from the ConfigMap: the run's plan, case, groups,
    instances with their params, timeout and faults, whether each pod has a shaper, and
    whether the first instance that fails ends the others (the sync service does it)."""
    return {
        "shaped": shaped,
        "fail_fast": fail_fast,
        "plan": spec.plan.name,
        "case": spec.case.name,
        "plan_dir": plan_dir,
        "entrypoint": spec.case.entrypoint,
        "program": list(spec.case.program) if spec.case.program else None,
        "backend": spec.case.backend,
        "timeout_s": spec.timeout_s,
        "groups": [{"id": g.id, "count": g.count, "params": dict(g.params),
                    "program": list(g.program) if g.program else None} for g in spec.groups],
        "instances": [{"id": i.id, "group": i.group, "group_seq": i.group_seq,
                       "global_seq": i.global_seq, "role": i.role} for i in spec.instances],
        "faults": [f.to_data() for f in spec.faults],
    }


def render_run(spec: RunSpec, options: K8sOptions, run_id: str, key: bytes, *,
               fail_fast: bool = True) -> RenderedRun:
    """The objects of run `run_id` of `spec`; `key` is the run's sync key (the tokens);
    `fail_fast` False lets the other instances run on after one fails."""
    tokens = Tokens(key)
    plan_dir = image_plan_dir(spec, options)
    sync_name = L.object_name(run_id, "sync")
    objects: list[dict[str, Any]] = [
        _config_map(spec, options, run_id, plan_dir, fail_fast),
    ]
    if options.secrets == "secret":
        objects.append(_secret(spec, options, run_id, key, tokens))
    objects += [_sync_pod(options, run_id, key, spec.timeout_s),
                _sync_service(options, run_id)]
    sync_tcp = f"{sync_name}.{options.namespace}.svc:{options.sync_port}"
    objects += [_pod(spec, options, run_id, inst, tokens, sync_tcp, plan_dir)
                for inst in spec.instances]
    check_sizes(objects)
    return RenderedRun(run_id, options.namespace, tuple(objects))


def data_size(obj: Mapping[str, Any]) -> int:
    """The bytes of a ConfigMap's or Secret's data as the API server counts them against
    `MAX_DATA_BYTES`: each key and value of the text a ConfigMap's `data` or a Secret's
    `stringData` holds (the only ways this module fills them: nothing base64-encoded)."""
    size = 0
    for field in ("data", "stringData"):
        for key, value in (obj.get(field) or {}).items():
            size += len(key.encode()) + len(value.encode())
    return size


def check_sizes(objects: Sequence[Mapping[str, Any]]) -> None:
    """UsageError, in one line naming the object, its size and the limit, for a ConfigMap
    or Secret the API server would refuse for its size: before anything is created."""
    for obj in objects:
        if obj["kind"] in TOO_BIG and (size := data_size(obj)) > MAX_DATA_BYTES:
            raise UsageError(
                f"{CLUSTER_K8S}: the run's {obj['kind']} {obj['metadata']['name']} would "
                f"hold {size:,} bytes, more than the {MAX_DATA_BYTES:,} (1 MiB) Kubernetes "
                f"takes in one: {TOO_BIG[obj['kind']]}")


def pod_deadline(timeout_s: float) -> int:
    """A pod's `activeDeadlineSeconds` in a run of `timeout_s` (the instances' and the sync
    service's)."""
    return min(math.ceil(timeout_s) + DEADLINE_MARGIN_S, MAX_DEADLINE_S)


def _meta(options: K8sOptions, run_id: str, name: str, component: str,
          extra: Mapping[str, str] | None = None,
          annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": options.namespace,
        "labels": {**L.base_labels(run_id, component), **(extra or {})},
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def _config_map(spec: RunSpec, options: K8sOptions, run_id: str,
                plan_dir: str, fail_fast: bool) -> dict[str, Any]:
    doc = run_document(spec, plan_dir, shaped=options.shaping != "off", fail_fast=fail_fast)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(options, run_id, L.object_name(run_id, "params"), "params"),
        "data": {RUN_FILE: orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()},
    }


def _secret(spec: RunSpec, options: K8sOptions, run_id: str, key: bytes,
            tokens: Tokens) -> dict[str, Any]:
    data = {"key": key.hex()}
    data.update({f"token-{i.global_seq}": tokens.for_instance(i.id) for i in spec.instances})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(options, run_id, L.object_name(run_id, "tokens"), "tokens"),
        "type": "Opaque",
        "stringData": data,
    }


def _secret_env(options: K8sOptions, run_id: str, name: str, key: str,
                value: str) -> dict[str, Any]:
    """An env var from the run's Secret, or inline where secrets="inline"."""
    if options.secrets == "inline":
        return {"name": name, "value": value}
    ref = {"name": L.object_name(run_id, "tokens"), "key": key}
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def _config_volume(run_id: str) -> dict[str, Any]:
    return {"name": "config", "configMap": {"name": L.object_name(run_id, "params")}}


def _resources(cpu: str, memory: str) -> dict[str, Any]:
    amounts = {"cpu": cpu, "memory": memory}
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _sync_pod(options: K8sOptions, run_id: str, key: bytes, timeout_s: float
              ) -> dict[str, Any]:
    """The sync service: a bare Pod (behind its Service), not a Deployment, so that it has
    the instance pods' deadline and ends by itself after a killed runner; nothing gains by
    restarting it (a new one would not have the run's state)."""
    container = {
        "name": "sync",
        "image": options.image,
        "imagePullPolicy": options.pull_policy,
        "workingDir": options.workdir,
        "command": ["python3", "-m", "harness.runners.k8s.syncd",
                    f"{CONFIG}/{RUN_FILE}", str(options.sync_port)],
        "env": [_secret_env(options, run_id, KEY_ENV, "key", key.hex()),
                {"name": "PYTHONPATH", "value": options.workdir}],
        "ports": [{"name": "sync", "containerPort": options.sync_port, "protocol": "TCP"}],
        "readinessProbe": {"tcpSocket": {"port": options.sync_port}, "periodSeconds": 2},
        "resources": _resources(options.sync_cpu, options.sync_memory),
        "volumeMounts": [{"name": "config", "mountPath": CONFIG, "readOnly": True}],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(options, run_id, L.object_name(run_id, "sync"), "sync"),
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": pod_deadline(timeout_s),
            "containers": [container],
            "volumes": [_config_volume(run_id)],
        },
    }


def _sync_service(options: K8sOptions, run_id: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(options, run_id, L.object_name(run_id, "sync"), "sync"),
        "spec": {
            "selector": L.base_labels(run_id, "sync"),
            "ports": [{"name": "sync", "port": options.sync_port, "targetPort": "sync",
                       "protocol": "TCP"}],
        },
    }


def _instance_env(spec: RunSpec, options: K8sOptions, run_id: str, inst: InstanceSpec,
                  tokens: Tokens, sync_tcp: str) -> list[dict[str, Any]]:
    group_size = next(g.count for g in spec.groups if g.id == inst.group)
    params = RunParams(
        plan=spec.plan.name, case=spec.case.name, run_id=run_id,
        instance_count=spec.total, group_id=inst.group, group_instance_count=group_size,
        global_seq=inst.global_seq, group_seq=inst.group_seq, instance_id=inst.id,
        role=inst.role, params=dict(inst.params), outputs_path=Path(OUTPUTS),
        sync_tcp=sync_tcp, runner=CLUSTER_K8S, sidecar=options.shaping != "off",
    )
    env: list[dict[str, Any]] = []
    for name, value in params.to_environ().items():
        if name == "TEST_DATA_IP":  # known once the pod has its address
            env.append({"name": name, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
        else:
            env.append({"name": name, "value": value})
    env.append(_secret_env(options, run_id, "TEST_SYNC_TOKEN", f"token-{inst.global_seq}",
                           tokens.for_instance(inst.id)))
    env.append({"name": "PYTHONPATH", "value": options.workdir})
    return env


def _pod(spec: RunSpec, options: K8sOptions, run_id: str, inst: InstanceSpec, tokens: Tokens,
         sync_tcp: str, plan_dir: str) -> dict[str, Any]:
    place = options.placement(inst.group)
    env = _instance_env(spec, options, run_id, inst, tokens, sync_tcp)
    mounts = [{"name": "outputs", "mountPath": OUTPUTS},
              {"name": "config", "mountPath": CONFIG, "readOnly": True},
              {"name": "done", "mountPath": DONE}]
    containers: list[dict[str, Any]] = [{
        "name": "instance",
        "image": options.image,
        "imagePullPolicy": options.pull_policy,
        "workingDir": options.workdir,
        "command": ["python3", "-m", "harness.runners.k8s.agent", f"{CONFIG}/{RUN_FILE}",
                    plan_dir],
        "env": env,
        "resources": _resources(place.cpu, place.memory),
        "volumeMounts": mounts,
    }]
    if options.shaping != "off":
        containers.append({
            "name": "shaper",
            "image": options.image,
            "imagePullPolicy": options.pull_policy,
            "workingDir": options.workdir,
            "command": ["python3", "-m", "harness.runners.k8s.shaper", options.shaping,
                        f"{DONE}/ended"],
            "env": env,  # the instance's identity: it answers that instance's requests
            # NET_RAW: the userspace engine routes duplicates' copies from a raw socket
            "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}},
            "resources": _resources("100m", "64Mi"),
            "volumeMounts": mounts,
        })
    labels = {L.GROUP: L.label_value(inst.group), L.SEQ: str(inst.group_seq),
              L.ROLE: L.label_value(inst.role)}
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": pod_deadline(spec.timeout_s),
        "containers": containers,
        "volumes": [{"name": "outputs", "emptyDir": {}}, _config_volume(run_id),
                    {"name": "done", "emptyDir": {"medium": "Memory"}}],
    }
    if place.node_selector:
        pod_spec["nodeSelector"] = dict(place.node_selector)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(options, run_id, L.pod_name(run_id, inst.global_seq), "instance",
                          labels, {L.INSTANCE: inst.id, L.GROUP_ID: inst.group}),
        "spec": pod_spec,
    }
