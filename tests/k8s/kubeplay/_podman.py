"""podman as the cluster: `ClusterApi` on `podman kube play`, everything of the session in a
network namespace of its own (the pods' bridge, its addresses and any published port live
there, never in the host's), with its own store, containers.conf and CNI directory.

What the kubelet would do and `kube play` does not, done here: each pod gets its address
from the session's subnet (`--ip`), which replaces the downward API's `status.podIP`; each
Service's DNS name resolves to its pod's address through `hostAliases` (`kube play`
ignores Services); each pod's emptyDir is a directory of its own (`kube play` shares one
named volume between all pods)."""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from harness.runners.k8s import _labels as L

SUBNET = ipaddress.IPv4Network("198.19.254.0/24")  # the run's range (198.18.0.0/15)
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"
[engine]
runtime = "runc"
events_logger = "file"
cgroup_manager = "cgroupfs"
[network]
network_config_dir = "{cni}"
"""


class Podman:
    """The podman command of one session: its namespace, store and configuration."""

    def __init__(self, work: Path, netns: str, store: Path, runroot: Path) -> None:
        self.work, self.netns = work, netns
        (work / "cni").mkdir(parents=True, exist_ok=True)
        conf = work / "containers.conf"
        conf.write_text(CONTAINERS_CONF.format(cni=work / "cni"))
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.argv = ["nsenter", f"--net=/run/netns/{netns}", "podman", "--root", str(store),
                     "--runroot", str(runroot)]

    def __call__(self, *args: str, check: bool = True,
                 timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run `podman ARGS` in the session; a failure is one line naming the command."""
        proc = subprocess.run([*self.argv, *args], env=self.env, capture_output=True,
                              text=True, check=False, timeout=timeout)
        if check and proc.returncode != 0:
            err = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            raise RuntimeError(f"podman {' '.join(args[:3])}: {err}")
        return proc


def _matches(labels: dict[str, str], selector: str) -> bool:
    pairs = [term.split("=", 1) for term in selector.split(",") if term]
    return all(labels.get(k) == v for k, v in pairs)


class PodmanApi:
    """`ClusterApi` (harness.runners.k8s._cluster) on `podman kube play`."""

    def __init__(self, podman: Podman, network: str) -> None:
        self.podman, self.network = podman, network
        self.addresses = iter(list(SUBNET.hosts())[9:])
        self.configmaps: list[Path] = []
        # kube play makes each ConfigMap a named volume in the store, which outlives its pods
        self.volumes: list[tuple[dict[str, str], str]] = []  # labels, name
        self.played: dict[str, dict[str, str]] = {}  # podman pod name -> labels
        self.hosts: dict[str, str] = {}  # a Service's DNS name -> its pod's address
        self.by_selector: list[tuple[dict[str, str], str]] = []  # pod labels -> address

    async def ready(self) -> None:
        """Nothing to ask: podman built this run's image already."""

    async def create(self, obj: dict[str, Any]) -> None:
        """Play one object (a ConfigMap is kept for the pods that mount it)."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        path = self.podman.work / f"{kind.lower()}-{name}.json"
        if kind == "ConfigMap":
            path.write_bytes(orjson.dumps(obj))
            self.configmaps.append(path)
            self.volumes.append((dict(obj["metadata"].get("labels") or {}), name))
            return
        if kind == "Service":
            ns = obj["metadata"].get("namespace", "default")
            for labels, ip in self.by_selector:
                if all(labels.get(k) == v for k, v in obj["spec"]["selector"].items()):
                    self.hosts[f"{name}.{ns}.svc"] = ip
            return
        if kind != "Pod":
            raise RuntimeError(f"kube play cannot run a {kind}")
        ip = str(next(self.addresses))
        obj = copy.deepcopy(obj)
        spec = obj["spec"]
        for container in spec["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                if ref == "status.podIP":
                    env.pop("valueFrom")
                    env["value"] = ip
        for volume in spec.get("volumes", []):
            # kube play makes an emptyDir a named volume that every pod naming it shares;
            # the kubelet gives each pod its own: so does a directory per pod here
            if "emptyDir" in volume:
                private = self.podman.work / "volumes" / name / volume["name"]
                private.mkdir(parents=True)
                del volume["emptyDir"]
                volume["hostPath"] = {"path": str(private), "type": "Directory"}
        if self.hosts:
            spec["hostAliases"] = [{"ip": a, "hostnames": [h]} for h, a in self.hosts.items()]
        labels = dict(obj["metadata"].get("labels") or {})
        self.by_selector.append((labels, ip))
        path.write_bytes(orjson.dumps(obj))
        self.podman("kube", "play", "--network", self.network, "--ip", ip,
                    *[f"--configmap={c}" for c in self.configmaps], str(path))
        self.played[name] = labels

    def _containers(self, pod: str) -> list[dict[str, Any]]:
        out = self.podman("ps", "-a", "--filter", f"pod={pod}", "--format", "json").stdout
        found: list[dict[str, Any]] = json.loads(out or "[]")
        return found

    async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The pods of the session matching `selector`, as v1 Pod objects say it."""
        out = []
        for pod, labels in self.played.items():
            if not _matches(labels, selector):
                continue
            statuses = []
            for c in self._containers(pod):
                cname = c["Names"][0].removeprefix(f"{pod}-")
                state: dict[str, Any] = {"running": {}}
                if c["State"] == "exited":
                    state = {"terminated": {"exitCode": c["ExitCode"]}}
                statuses.append({"name": cname, "state": state})
            out.append({"metadata": {"name": pod, "namespace": namespace, "labels": labels},
                        "status": {"containerStatuses": statuses}})
        return out

    async def logs(self, namespace: str, pod: str, container: str) -> str:
        """A container's log (stdout and stderr, as the kubelet keeps them)."""
        proc = self.podman("logs", f"{pod}-{container}", check=False)
        return proc.stdout + proc.stderr

    async def exec(self, namespace: str, pod: str, container: str,
                   command: Sequence[str]) -> None:
        """Run `command` in one of the session's containers (a failure raises)."""
        self.podman("exec", f"{pod}-{container}", *command, timeout=60)

    async def delete(self, namespace: str, kinds: Sequence[str], selector: str) -> int:
        """Remove the session's pods matching `selector` (with their containers), then the
        volumes of its ConfigMaps (once no pod mounts them)."""
        gone = [p for p, labels in self.played.items() if _matches(labels, selector)]
        for pod in gone:
            self.podman("pod", "rm", "--force", "--time", "2", pod, check=False)
            del self.played[pod]
        volumes = [v for v in self.volumes if _matches(v[0], selector)]
        for volume in volumes:
            self.podman("volume", "rm", "--force", volume[1], check=False)
            self.volumes.remove(volume)
        return len(gone) + len(volumes)


class Unstartable(PodmanApi):
    """A cluster on which the pod whose name ends with `suffix` is created but never
    starts: its image cannot be pulled (a kubelet's `ErrImageNeverPull`, which kube play,
    refusing the whole pod, cannot show)."""

    def __init__(self, podman: Podman, network: str, suffix: str) -> None:
        super().__init__(podman, network)
        self.suffix = suffix
        self.never: dict[str, dict[str, str]] = {}  # pod name -> labels

    async def create(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if obj["kind"] == "Pod" and name.endswith(self.suffix):
            self.never[name] = dict(obj["metadata"].get("labels") or {})
            next(self.addresses)  # as if it had its address
            return
        await super().create(obj)

    async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        waiting = {"reason": "ErrImageNeverPull",
                   "message": "the image is not present with pull policy of Never"}
        return [*await super().pods(namespace, selector), *(
            {"metadata": {"name": pod, "namespace": namespace, "labels": labels},
             "status": {"phase": "Pending", "containerStatuses": [
                 {"name": "instance", "state": {"waiting": waiting}}]}}
            for pod, labels in self.never.items() if _matches(labels, selector))]

    async def logs(self, namespace: str, pod: str, container: str) -> str:
        return "" if pod in self.never else await super().logs(namespace, pod, container)

    async def delete(self, namespace: str, kinds: Sequence[str], selector: str) -> int:
        never = [p for p, labels in self.never.items() if _matches(labels, selector)]
        for pod in never:
            del self.never[pod]
        return len(never) + await super().delete(namespace, kinds, selector)


class Interrupting(PodmanApi):
    """A session that sends this process SIGINT (a Ctrl-C) `after_s` after a list first
    showed every instance's container running."""

    def __init__(self, podman: Podman, network: str, after_s: float) -> None:
        super().__init__(podman, network)
        self.after_s = after_s
        self.running_since: float | None = None
        self.sent = False

    async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        out = await super().pods(namespace, selector)
        instances = [p for p in out if p["metadata"]["labels"].get(L.COMPONENT) == "instance"]
        running = instances and all(
            "running" in c["state"] for p in instances
            for c in p["status"]["containerStatuses"] if c["name"] == "instance")
        if running and self.running_since is None:
            self.running_since = time.monotonic()
        if (not self.sent and self.running_since is not None
                and time.monotonic() - self.running_since >= self.after_s):
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)
        return out
