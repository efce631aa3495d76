"""The process host's pool: children forked ahead of their instances (`prefork`), which
start exactly as directly forked ones do."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from harness._runparams import STACK_SIGNAL
from harness.runners._process import Launch, ProcessHost

ROOT = Path(__file__).resolve().parent.parent

# What an instance program sees of itself: its environment, directory, session, and
# whether SIGUSR1 (what a pool child waits for) is blocked.
REPORT = """
import json, os, sys
blocked = int(next(l for l in open('/proc/self/status') if l.startswith('SigBlk')).split()[1], 16)
print(json.dumps({"env": dict(os.environ), "cwd": os.getcwd(), "pid": os.getpid(),
                  "sid": os.getsid(0), "usr1_blocked": bool(blocked >> 9 & 1)}))
print("to stderr", file=sys.stderr)
"""


# (with a UTF-8 LC_CTYPE given, Python adds none of its own to the environment it reports)
BASE_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_CTYPE": "C.UTF-8"}


def _children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def _with_host(tmp_path: Path, body: Callable[[ProcessHost, int], Awaitable[None]]) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    host = ProcessHost(None)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(60):  # guards against a hang, not a timing
                await nursery.start(host.run, tmp_path, env)
                assert host._proc is not None
                await body(host, host._proc.pid)
            nursery.cancel_scope.cancel()

    trio.run(main)


async def _pool_of(host_pid: int, count: int) -> set[int]:
    while len(kids := _children(host_pid)) < count:  # noqa: ASYNC110 (another process)
        await trio.sleep(0.01)
    return kids


def _launch(tmp_path: Path, name: str, env: dict[str, str] | None = None) -> Launch:
    cwd = tmp_path / name
    cwd.mkdir()
    asked = env if env is not None else {**BASE_ENV, "INSTANCE": name}
    return Launch(asked, cwd, cwd / "stdout.log", cwd / "stderr.log", None,
                  [sys.executable, "-c", REPORT])


async def _run(host: ProcessHost, launch: Launch) -> dict[str, Any]:
    proc = await host.spawn(launch)
    assert await proc.wait() == 0, launch.stderr.read_text()
    report: dict[str, Any] = json.loads(launch.stdout.read_text())
    assert report["pid"] == proc.pid
    assert launch.stderr.read_text() == "to stderr\n"
    return report


def test_an_instance_started_on_a_pool_child_is_as_one_forked_for_it(tmp_path: Path) -> None:
    async def body(host: ProcessHost, host_pid: int) -> None:
        await host.prefork(2)
        pool = await _pool_of(host_pid, 2)
        seen = []
        for name in ("a", "b", "c"):  # the third finds the pool empty: forked for
            launch = _launch(tmp_path, name)
            report = await _run(host, launch)
            assert report["env"] == launch.env
            assert report["cwd"] == str(launch.cwd)
            assert report["sid"] == report["pid"]  # leads its own session
            assert not report["usr1_blocked"]
            seen.append(report["pid"])
        assert set(seen[:2]) == pool and seen[2] not in pool

    _with_host(tmp_path, body)


def test_a_request_too_large_for_a_slot_is_forked_for(tmp_path: Path) -> None:
    async def body(host: ProcessHost, host_pid: int) -> None:
        await host.prefork(1)
        pool = await _pool_of(host_pid, 1)
        # (one variable may hold 128 KiB at most, for exec)
        big = BASE_ENV | {
            f"BIG{i}": "x" * 100_000 for i in range(3)}
        report = await _run(host, _launch(tmp_path, "big", big))
        assert report["env"] == big and report["pid"] not in pool
        assert _children(host_pid) == pool  # still waiting, and taken next
        assert (await _run(host, _launch(tmp_path, "small")))["pid"] in pool

    _with_host(tmp_path, body)


def test_a_pool_child_killed_while_it_waits_is_passed_over(tmp_path: Path) -> None:
    async def body(host: ProcessHost, host_pid: int) -> None:
        await host.prefork(2)
        first, second = sorted(await _pool_of(host_pid, 2))
        os.kill(first, signal.SIGKILL)
        while first in _children(host_pid):  # noqa: ASYNC110 (reaped by the host)
            await trio.sleep(0.01)
        assert (await _run(host, _launch(tmp_path, "a")))["pid"] == second

    _with_host(tmp_path, body)


def test_pool_children_never_asked_for_end_with_the_host(tmp_path: Path) -> None:
    pool: set[int] = set()

    async def body(host: ProcessHost, host_pid: int) -> None:
        await host.prefork(4)
        pool.update(await _pool_of(host_pid, 4))
        await _run(host, _launch(tmp_path, "a"))

    _with_host(tmp_path, body)
    alive = [pid for pid in pool if Path(f"/proc/{pid}").exists()
             and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]]
    assert alive == []


@pytest.mark.parametrize("count", [0, 3])
def test_a_run_of_python_instances_passes_with_and_without_a_pool(
    count: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The supervisor asks for a pool child per instance; without one (count 0: none asked
    for) the same run passes the same way."""
    import harness
    from harness import _supervisor
    from harness.plans import build_run_spec

    asked: list[int] = []
    real = ProcessHost.prefork

    async def prefork(self: ProcessHost, n: int) -> None:
        asked.append(n)
        await real(self, n if count else 0)

    monkeypatch.setattr(ProcessHost, "prefork", prefork)
    spec = build_run_spec("startup:forked", instances=3, runner="local:exec",
                          plan_roots=[ROOT / "benchmarks" / "plans"])
    result = _supervisor.run(spec, harness.RunOptions(outputs=tmp_path, progress=False))
    assert result.exit_code == 0, result.reason
    assert asked == [3]


@pytest.mark.parametrize("pool", [0, 1])
def test_a_program_starts_with_the_signals_the_host_ignores_at_their_default(
    pool: int, tmp_path: Path
) -> None:
    """The host is Python, which ignores SIGPIPE and SIGXFSZ, and an ignored signal stays
    ignored across exec: a program then got EPIPE where, run by hand, it dies of SIGPIPE
    (`yes | head -1` said "yes: standard output: Broken pipe"). subprocess restores them.
    The host also ignores STACK_SIGNAL, for its Python children until the SDK takes it."""

    async def body(host: ProcessHost, host_pid: int) -> None:
        await host.prefork(pool)
        await _pool_of(host_pid, pool)
        cwd = tmp_path / "prog"
        cwd.mkdir()
        launch = Launch(BASE_ENV, cwd, cwd / "stdout.log", cwd / "stderr.log", None,
                        ["grep", "SigIgn", "/proc/self/status"])
        proc = await host.spawn(launch)
        assert await proc.wait() == 0, launch.stderr.read_text()
        ignored = int(launch.stdout.read_text().split()[1], 16)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, STACK_SIGNAL):
            assert not ignored & 1 << (sig - 1), sig

    _with_host(tmp_path, body)


FDS_MANIFEST = """
name = "fds"
[[testcases]]
name = "look"
instances = { min = 1, max = 4, default = 2 }
entrypoint = "fds.plan:look"
"""
FDS_PLAN = """
import json, os

async def look(env):
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # listdir's own
            pass
    (env.outputs_path / "fds.json").write_text(json.dumps(fds))
"""


def _run_look(monkeypatch: pytest.MonkeyPatch, make_plan: Callable[[str, str, str], Path],
              outputs: Path, code: str, pool: int, instances: int | None = None) -> None:
    """Run fds:look with `code` as its plan, on local:exec, with `pool` pool children."""
    import harness
    from harness import _supervisor
    from harness.plans import build_run_spec

    real = ProcessHost.prefork

    async def prefork(self: ProcessHost, n: int) -> None:
        await real(self, pool)

    monkeypatch.setattr(ProcessHost, "prefork", prefork)
    spec = build_run_spec("fds:look", instances=instances, runner="local:exec",
                          plan_roots=[make_plan("fds", FDS_MANIFEST, code)])
    result = _supervisor.run(spec, harness.RunOptions(outputs=outputs, progress=False))
    assert result.exit_code == 0, result.reason


@pytest.mark.parametrize("count", [0, 2])
def test_a_python_instance_holds_no_file_of_the_host(
    count: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    make_plan: Callable[[str, str, str], Path],
) -> None:
    """A forked instance kept the host's epoll (watching its control socket and wake-up
    pipe) and a second descriptor of its stdout.log and stderr.log, with and without a
    pool child (count 0: forked for)."""
    outputs = tmp_path / "out"
    _run_look(monkeypatch, make_plan, outputs, FDS_PLAN, count)
    seen = list(outputs.glob("*/single/*/fds.json"))
    assert len(seen) == 2
    for path in seen:
        fds = json.loads(path.read_text())
        assert fds["1"].endswith("/stdout.log") and fds["2"].endswith("/stderr.log")
        logs = [fd for fd, to in fds.items() if to.endswith(".log")]
        assert sorted(logs) == ["1", "2"], fds
        assert [to for to in fds.values() if "eventpoll" in to] == ["anon_inode:[eventpoll]"], fds


TOKENS_PLAN = """
import json, os

async def look(env):
    tokens = set()
    with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb") as mem:
        for line in maps:
            where, perms = line.split()[:2]
            if perms[0] != "r" or perms[3] != "s":  # shared, as the pool's slots are
                continue
            lo, hi = (int(x, 16) for x in where.split("-"))
            mem.seek(lo)
            data = mem.read(hi - lo)
            at = 0
            while (at := data.find(b'"TEST_SYNC_TOKEN":"', at) + 1) > 0:
                tokens.add(data[at + 18 : at + 18 + 64].decode())
    (env.outputs_path / "tokens.json").write_text(json.dumps(sorted(tokens)))
"""


@pytest.mark.parametrize("count", [1, 3])
def test_a_python_instance_sees_no_other_instances_request(
    count: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    make_plan: Callable[[str, str, str], Path],
) -> None:
    """Each forked instance kept the pool's shared slots mapped: every other instance's
    request, its sync token included, even those assigned after it started; so did one
    forked for beside the pool (count 1: the first instance on the pool's one child, the
    others forked for)."""
    outputs = tmp_path / "out"
    _run_look(monkeypatch, make_plan, outputs, TOKENS_PLAN, count, instances=3)
    seen = list(outputs.glob("*/single/*/tokens.json"))
    assert len(seen) == 3
    assert all(json.loads(path.read_text()) == [] for path in seen)


LOUD_PLAN = """
import sys
print("imported the plan's module")
print("a warning at import", file=sys.stderr)

async def look(env):
    print("instance", env.instance_id)
"""


@pytest.mark.parametrize("count", [0, 2])
def test_what_the_plans_module_prints_at_import_stays_in_the_hosts_log(
    count: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    make_plan: Callable[[str, str, str], Path],
) -> None:
    """Without PYTHONUNBUFFERED (a user's usual environment) it waited in the host's
    stdout buffer, which each forked instance inherited and flushed into its own
    stdout.log: every instance's log began with the module's output."""
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    outputs = tmp_path / "out"
    _run_look(monkeypatch, make_plan, outputs, LOUD_PLAN, count)
    (run_dir,) = outputs.glob("*/")
    for seq in range(2):
        out = run_dir / "single" / str(seq)
        assert (out / "stdout.log").read_text() == f"instance single/{seq}\n"
        assert (out / "stderr.log").read_text() == ""
    said = (run_dir / "process-host.log").read_text().splitlines()
    assert sorted(said) == ["a warning at import", "imported the plan's module"]


PWD_PLAN = """
import os

async def look(env):
    (env.outputs_path / "pwd.txt").write_text(os.environ.get("PWD", "") + "\\n" + os.getcwd())
"""


def test_an_instances_pwd_is_its_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    make_plan: Callable[[str, str, str], Path],
) -> None:
    """$PWD was the directory `harness run` was started in, while the instance runs in its
    outputs directory: a program run by hand from a shell sees the two agree."""
    import harness
    from harness import _supervisor
    from harness.plans import build_run_spec

    monkeypatch.setenv("PWD", "/where/harness/run/was/started")
    spec = build_run_spec("fds:look", runner="local:exec",
                          plan_roots=[make_plan("fds", FDS_MANIFEST, PWD_PLAN)])
    outputs = tmp_path / "out"
    result = _supervisor.run(spec, harness.RunOptions(outputs=outputs, progress=False))
    assert result.exit_code == 0, result.reason
    seen = [p.read_text().split("\n") for p in outputs.glob("*/single/*/pwd.txt")]
    assert len(seen) == 2 and all(pwd == cwd for pwd, cwd in seen), seen
