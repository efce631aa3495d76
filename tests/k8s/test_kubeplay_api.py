"""`nox -s k8s`'s ClusterApi on `podman kube play` (tests.k8s.kubeplay), its podman calls
seen by a stand-in: a run's delete leaves nothing of it in the session's store."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

from harness.plans import build_run_spec
from harness.runners.k8s import _labels as L
from harness.runners.k8s import load_options, render_run
from tests.k8s.kubeplay._podman import PodmanApi

RUN_ID = "20260101-000000-abcdef"


class FakePodman:
    """Records each podman command; every one succeeds."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, *args: str, check: bool = True,
                 timeout: float = 600) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        return subprocess.CompletedProcess(list(args), 0, "", "")


def test_a_runs_delete_removes_its_pods_and_its_configmaps_volume(tmp_path: Path) -> None:
    spec = build_run_spec("pingpong", instances=2, runner="cluster:k8s")
    run = render_run(spec, load_options(spec, ["secrets=inline"]), RUN_ID, b"k" * 32)
    podman = FakePodman(tmp_path)
    api = PodmanApi(podman, "net")  # type: ignore[arg-type]

    async def play_and_delete() -> Any:
        for obj in run.objects:
            await api.create(obj)
        return await api.delete("default", (), L.run_selector(RUN_ID))

    asyncio.run(play_and_delete())
    removed = [c for c in podman.calls if c[1] == "rm"]
    assert [c[0] for c in removed] == ["pod", "pod", "pod", "volume"]
    # kube play made the ConfigMap a named volume; it outlived every session before
    assert removed[-1] == ("volume", "rm", "--force", f"h-{RUN_ID}-params")
