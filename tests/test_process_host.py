"""The process host (harness.runners._forkserver) as the supervisor starts it."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

from harness.runners._process import Launch, ProcessHost

ROOT = Path(__file__).resolve().parent.parent


def test_a_host_that_dies_before_it_is_ready_fails_every_spawn_and_does_not_hang(
    tmp_path: Path,
) -> None:
    """Its entrypoint's import ends the process before `ready` or `fatal`: starting it
    returns (it used to wait forever), and each spawn fails naming its exit status."""
    (tmp_path / "dies_at_import.py").write_text("import os\nos._exit(3)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    host = ProcessHost("dies_at_import:case")
    out = tmp_path / "out.log"

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(60):  # a guard against the hang, not a timing
                await nursery.start(host.run, tmp_path, env)
            await host.prefork(3)  # asks nothing of a dead host, and does not raise
            with pytest.raises(OSError, match=r"the process host exited \(status 3\)"):
                await host.spawn(Launch(env, tmp_path, out, out))
            nursery.cancel_scope.cancel()

    trio.run(main)


@pytest.mark.parametrize(("code", "said"), [
    ("import os\nos._exit(0)\n", "; it wrote nothing"),
    ("import os\nprint('bye', flush=True)\nos._exit(0)\n", "; its output: {log}"),
])
def test_a_host_that_died_names_its_output_only_if_it_wrote_some(
    tmp_path: Path, code: str, said: str,
) -> None:
    """The reason named process-host.log, which had been removed for being empty."""
    (tmp_path / "quiet_exit.py").write_text(code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    host, log = ProcessHost("quiet_exit:case"), tmp_path / "process-host.log"

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(60):
                await nursery.start(functools.partial(host.run, tmp_path, env, log=log))
            with pytest.raises(OSError) as e:
                await host.spawn(Launch(env, tmp_path, log, log))
            nursery.cancel_scope.cancel()
        assert str(e.value).endswith(f"the process host exited (status 0){said}".format(
            log=log))

    trio.run(main)
    assert log.exists() == ("output" in said)


def test_no_reply_of_the_host_is_lost_while_the_supervisor_lags(tmp_path: Path) -> None:
    """1,000 spawns of a program that exits at once, their replies read only 3 s later:
    2,000 replies, far more than the socket holds meanwhile. The supervisor's end is
    non-blocking, as Trio's is; every `spawned` and `exited` must still arrive (a dropped
    `exited` left its instance waiting for the run's timeout)."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)  # as trio.socket.socketpair() hands it over
    host = subprocess.Popen(
        [sys.executable, "-m", "harness.runners._forkserver", str(theirs.fileno())],
        pass_fds=(theirs.fileno(),), cwd=ROOT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    theirs.close()
    count = 1000
    out = str(tmp_path / "out.log")
    requests = b"".join(
        orjson.dumps({"spawn": key, "env": {}, "cwd": str(tmp_path), "stdout": out,
                      "stderr": out, "netns": None, "argv": ["true"]}) + b"\n"
        for key in range(count)
    )  # fmt: skip
    replies: list[dict[str, Any]] = []
    try:
        ours.settimeout(20)  # a guard against a lost reply, not a timing
        buffer = b""

        def read_until(done: Callable[[], bool]) -> None:
            nonlocal buffer
            while not done():
                data = ours.recv(1 << 16)
                assert data, "the host went away"
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                replies.extend(orjson.loads(line) for line in lines)

        read_until(lambda: bool(replies))
        assert replies == [{"ready": True}]
        # Sent from a thread: the host stops reading requests while it waits to reply.
        sender = threading.Thread(target=ours.sendall, args=(requests,), daemon=True)
        sender.start()
        time.sleep(3)  # the supervisor lags; children exit meanwhile
        with contextlib.suppress(TimeoutError):
            read_until(lambda: sum("exited" in r for r in replies) >= count)
        sender.join(timeout=20)
    finally:
        ours.close()
        host.wait(timeout=30)
    spawned = {r["pid"] for r in replies if "spawned" in r}
    exited = {r["exited"] for r in replies if "exited" in r}
    assert len(spawned) == count and exited == spawned


def test_a_thread_the_plans_module_started_does_not_keep_the_host(tmp_path: Path) -> None:
    """A non-daemon thread started at import kept the host's interpreter from exiting: the
    supervisor waited 10 s for it, then killed it, at every run's end."""
    (tmp_path / "threaded.py").write_text(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(600,)).start()\n"
        "async def case(env):\n    pass\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    host = ProcessHost("threaded:case")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(60):
                await nursery.start(host.run, tmp_path, env)
            assert host.ready and host.error is None
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert host._proc is not None and host._proc.returncode == 0, "it was killed"


def test_a_host_still_importing_is_killed_at_once_and_its_output_kept(tmp_path: Path) -> None:
    """Stopped while the plan's module sleeps in its import: it was waited for 10 s (it
    never reads the closed socket), then killed. What it printed goes to its log."""
    (tmp_path / "slow.py").write_text("import time\nprint('importing', flush=True)\n"
                                      "time.sleep(600)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    host = ProcessHost("slow:case")
    log = tmp_path / "host.log"

    async def main() -> None:
        with trio.move_on_after(3):
            await host.run(tmp_path, env, log=log)

    trio.run(main)
    assert host._proc is not None and host._proc.returncode == -9
    assert log.read_text() == "importing\n"


def test_the_instances_of_a_host_that_dies_end_with_it_and_say_why(tmp_path: Path) -> None:
    """A host killed mid-run takes its instances with it (their parent-death signal), but
    their exits were never reported: the supervisor waited for them until the run's
    timeout and then blamed them for it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    host, out = ProcessHost(None), tmp_path / "out.log"

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(60):
                await nursery.start(host.run, tmp_path, env)
                proc = await host.spawn(Launch(env, tmp_path, out, out, argv=["sleep", "600"]))
                assert host._proc is not None
                os.kill(host._proc.pid, 9)
                assert await proc.wait() == -9
            assert proc.lost == "the process host exited (status -9)"
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_host_killed_in_its_warm_up_leaves_no_warm_up_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run interrupted while the host warmed up killed it there: its directory (a
    socket, a log) stayed in /tmp for good."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmp))
    (tmp_path / "warming.py").write_text(
        "import os, tempfile, time\n"
        "from harness.runners._process import warm_up_prefix\n"
        "tempfile.mkdtemp(prefix=warm_up_prefix(os.getpid()))\n"
        "print('warming', flush=True)\n"
        "time.sleep(600)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]),
           "TMPDIR": str(tmp)}
    host = ProcessHost("warming:case")
    log = tmp_path / "host.log"

    async def main() -> None:
        with trio.move_on_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(functools.partial(host.run, tmp_path, env, log=log))
                while not (log.exists() and log.read_text()):  # noqa: ASYNC110 (a file)
                    await trio.sleep(0.05)
                assert len(list(tmp.iterdir())) == 1
                nursery.cancel_scope.cancel()

    trio.run(main)
    assert host._proc is not None and host._proc.returncode == -9
    assert list(tmp.iterdir()) == []
