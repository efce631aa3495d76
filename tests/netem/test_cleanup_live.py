"""Live: whatever way a network ends, nothing is left and the host's network is as before."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import netem
from netem import Network
from netem import _build as build
from netem._build import _ns as build_ns

from ..conftest import unless_raced

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[2]

# A child that builds a network, says so, and waits to be killed or interrupted.
CHILD = """
import sys, time, netem
with netem.Network(prefix=sys.argv[1], backend="none") as net:
    net.build(3)
    net.partition(["h1"], ["h2"])
    print("built", flush=True)
    time.sleep(60)
"""


def leftovers(prefix: str) -> list[str]:
    found = [n for n in os.listdir("/run/netns") if n.startswith(prefix + "-")]
    if os.path.exists(f"/run/netem/{prefix}.json"):
        found.append(f"/run/netem/{prefix}.json")
    return sorted(found)


def start_child(prefix: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, prefix],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if line.strip() != "built":
        child.kill()
        pytest.fail(f"child did not build: {line!r} {child.stderr.read() if child.stderr else ''}")
    return child


def test_exception_inside_removes_everything(
    prefix: str, host_state: Callable[[], dict[str, str]]
) -> None:
    before = host_state()
    with pytest.raises(ZeroDivisionError), Network(prefix=prefix, backend="none") as net:
        net.build(3)
        net.partition(["h1"], ["h2", "h3"])
        assert len(leftovers(prefix)) == 5
        _ = 1 / 0
    assert leftovers(prefix) == []
    assert host_state() == before


def test_ctrl_c_removes_everything(prefix: str, host_state: Callable[[], dict[str, str]]) -> None:
    before = host_state()
    child = start_child(prefix)
    assert len(leftovers(prefix)) == 5
    child.send_signal(signal.SIGINT)
    child.wait(timeout=10)
    assert child.returncode != 0  # KeyboardInterrupt went up after the clean-up
    assert leftovers(prefix) == []
    assert host_state() == before


@pytest.mark.parametrize("delay", [0.0, 0.1, 0.3, 0.6])
def test_ctrl_c_during_build_leaves_nothing(
    prefix: str, host_state: Callable[[], dict[str, str]], delay: float
) -> None:
    """Interrupted at different points of a 400-host build (namespaces, links, addresses)."""
    before = host_state()
    script = (
        "import sys, netem\n"
        "print('go', flush=True)\n"
        "with netem.Network(prefix=sys.argv[1], backend='none') as net:\n"
        "    net.build(400)\n"
        "    print('built', flush=True)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, prefix],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "go"
    deadline = time.monotonic() + 20
    while not leftovers(prefix):  # interrupt once the build has begun
        assert time.monotonic() < deadline, "the build never started"
        time.sleep(0.005)
    time.sleep(delay)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    assert "KeyboardInterrupt" in err or "built" in out
    assert leftovers(prefix) == []
    assert host_state() == before


def test_ctrl_c_as_the_namespace_thread_starts_leaves_nothing(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interruption lands inside Thread.start(): the thread runs on regardless, yet
    nothing it makes may be missing from `created` once the interruption has gone up."""
    start = threading.Thread.start

    def interrupted_start(thread: threading.Thread) -> None:
        start(thread)
        if thread.name == "netem-netns":
            raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "start", interrupted_start)
    created: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        build_ns.create_namespaces([f"{prefix}-h{n}" for n in range(1, 6)], str, created)
    monkeypatch.undo()
    build.remove_namespaces(created)
    time.sleep(0.3)  # long enough for a thread that ran on to make all five
    assert leftovers(prefix) == []


def test_ctrl_c_between_two_closes_is_not_turned_into_ebadf(
    prefix: str, monkeypatch: pytest.MonkeyPatch, host_state: Callable[[], dict[str, str]]
) -> None:
    """Linking hosts closes one namespace fd after another; Ctrl-C lands between two."""
    before = host_state()

    class OsInterruptedAfterOneClose:
        fired = False

        def __getattr__(self, name: str) -> object:
            return getattr(os, name)

        def close(self, fd: int) -> None:
            os.close(fd)
            if not self.fired:
                self.fired = True
                raise KeyboardInterrupt

    monkeypatch.setattr(build, "os", OsInterruptedAfterOneClose())
    with pytest.raises(KeyboardInterrupt), Network(prefix=prefix, backend="none") as net:
        net.build(4)
    assert leftovers(prefix) == []
    assert host_state() == before


def test_ctrl_c_while_the_network_is_removed_still_removes_all_of_it(
    prefix: str, monkeypatch: pytest.MonkeyPatch, host_state: Callable[[], dict[str, str]]
) -> None:
    """Ctrl-C lands between two namespaces' removals: the rest are removed too, and the
    interruption goes up once they are."""
    before = host_state()
    remove = build_ns.remove_namespace
    removed: list[str] = []

    def remove_then_interrupt(name: str) -> bool:
        done = remove(name)
        removed.append(name)
        if len(removed) == 1:
            signal.raise_signal(signal.SIGINT)
        return done

    monkeypatch.setattr(build_ns, "remove_namespace", remove_then_interrupt)
    net = Network(prefix=prefix, backend="none")
    net.build(4)
    with pytest.raises(KeyboardInterrupt):
        net.close()
    assert len(removed) == 5  # all four hosts and the hub, after the interruption came
    assert leftovers(prefix) == []
    assert host_state() == before


def test_sigkill_then_cleanup(host_state: Callable[[], dict[str, str]]) -> None:
    before = host_state()

    def attempt() -> bool:
        prefix = f"tn{os.urandom(3).hex()}"
        child = start_child(prefix)
        # Something still running inside a host namespace, as an instance would be.
        stray = subprocess.Popen(["ip", "netns", "exec", f"{prefix}-h2", "sleep", "60"])
        try:
            deadline = time.monotonic() + 10
            while str(stray.pid) not in subprocess.run(  # until it really is inside
                ["ip", "netns", "pids", f"{prefix}-h2"], capture_output=True, text=True
            ).stdout.split():
                assert time.monotonic() < deadline and stray.poll() is None, "stray did not start"
                time.sleep(0.02)
            child.kill()
            child.wait(timeout=10)
            left = leftovers(prefix)
            removed = netem.cleanup()  # no prefix: every network whose owner is dead
            assert leftovers(prefix) == []
            assert stray.wait(timeout=5) == -signal.SIGKILL
            # A killed owner cleans nothing, so all five are left, unless another clean-up
            # took them meanwhile: then they are missing from `removed`.
            return len(left) == 5 and set(left) <= set(removed)
        finally:
            stray.kill()
            stray.wait(timeout=5)
            netem.cleanup(prefix)

    unless_raced(attempt)
    assert host_state() == before


def test_cleanup_spares_live_owners(prefix: str, live: None) -> None:
    with Network(prefix=prefix, backend="none") as net:
        net.build(2)
        removed = netem.cleanup()
        assert not any(r.startswith(prefix) or prefix in r for r in removed)
        assert len(leftovers(prefix)) == 4
        # Named explicitly, a network is removed whoever owns it.
        removed = netem.cleanup(prefix)
        assert sorted(removed) == sorted(
            [f"{prefix}-hub", f"{prefix}-h1", f"{prefix}-h2", f"/run/netem/{prefix}.json"]
        )
    assert leftovers(prefix) == []


def test_a_second_network_with_a_live_prefix_is_refused_and_leaves_the_first_whole(
    prefix: str, live: None,
) -> None:
    """Its failed build removed the first network's manifest: killed then, the first one's
    namespaces were traced by nothing, and `harness clean` found nothing to remove."""
    with Network(prefix=prefix, backend="none") as net:
        net.build(2)
        with pytest.raises(netem.NetworkError, match=f"prefix {prefix!r} is in use by process "
                                                      f"{os.getpid()}"):
            Network(prefix=prefix, backend="none").build(2)
        assert os.path.exists(f"/run/netem/{prefix}.json")
        assert len(leftovers(prefix)) == 4  # three namespaces and the manifest
    assert leftovers(prefix) == []


def test_cleanup_removes_orphan_namespaces(live: None) -> None:
    """A generated-prefix namespace that no manifest claims is a leftover."""
    from netem._build._ns import create_namespaces, netlink_socket

    def attempt() -> bool:
        orphan = f"ht{os.urandom(3).hex()}"
        for sock in create_namespaces([f"{orphan}-hub"], lambda _: netlink_socket(), []):
            sock.close()
        removed = netem.cleanup().count(f"{orphan}-hub")
        assert not os.path.exists(f"/run/netns/{orphan}-hub")
        assert removed <= 1
        return removed == 1

    unless_raced(attempt)


def test_cleanup_rejects_bad_prefix() -> None:
    with pytest.raises(netem.RequestError, match="bad prefix"):
        netem.cleanup("../etc")
