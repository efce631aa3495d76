"""Batched rtnetlink requests, against a throw-away namespace."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from netem._build import _netlink as nl
from netem._build import _ns as ns

pytestmark = pytest.mark.live


@pytest.fixture
def scratch(live: None) -> Iterator[tuple[str, socket.socket]]:
    name = f"tn{secrets.token_hex(3)}-hub"
    created: list[str] = []
    try:
        (sock,) = ns.create_namespaces([name], lambda _: ns.netlink_socket(), created)
        yield name, sock
        sock.close()
    finally:
        for n in created:
            ns.remove_namespace(n)


def test_batch_applies_every_request(scratch: tuple[str, socket.socket]) -> None:
    name, sock = scratch
    nl.send_batch(sock, [nl.link_up(1), nl.add_address(1, IPv4Address("198.18.7.7"), 32)])
    out = subprocess.run(["ip", "-n", name, "-o", "-4", "addr"], capture_output=True, text=True)
    assert "inet 198.18.7.7/32" in out.stdout
    assert "UP" in subprocess.run(["ip", "-n", name, "link"], capture_output=True, text=True).stdout


def test_batch_reports_the_first_refusal(scratch: tuple[str, socket.socket]) -> None:
    name, sock = scratch
    with pytest.raises(NetlinkError) as info:
        nl.send_batch(
            sock,
            [nl.link_up(99), nl.link_up(1, "lo"), nl.add_address(1, IPv4Address("198.18.9.9"), 32)],
        )
    assert info.value.code == errno.ENODEV
    # The kernel went on with the later requests.
    out = subprocess.run(["ip", "-n", name, "-o", "-4", "addr"], capture_output=True, text=True)
    assert "198.18.9.9" in out.stdout


OPERSTATES = ["UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP"]
"""IF_OPER_* by number, as `ip link` names them."""


def test_operstates_reads_each_links_state(scratch: tuple[str, socket.socket]) -> None:
    """Every link's state, as `ip link` reads it: a veth whose peer is down, then both up."""
    name, sock = scratch
    ip = ["ip", "-n", name, "link"]

    def shown() -> dict[int, str]:
        out = subprocess.run([*ip, "show"], capture_output=True, text=True, check=True).stdout
        return {int(line.split(":")[0]): line.split(" state ")[1].split()[0]
                for line in out.splitlines() if line[:1].isdigit()}

    subprocess.run([*ip, "add", "va", "index", "7", "type", "veth", "peer", "name", "vb",
                    "index", "8"], check=True)  # fmt: skip
    subprocess.run([*ip, "set", "va", "up"], check=True)
    states = {i: OPERSTATES[s] for i, s in nl.operstates(sock).items()}
    # lo and vb are down; va goes from down to lower-layer-down when the kernel's link
    # watcher gets to it, which may be between the two reads
    assert states[7] in ("DOWN", "LOWERLAYERDOWN"), states
    assert {1: states[1], 8: states[8]} == {1: "DOWN", 8: "DOWN"} == {
        i: s for i, s in shown().items() if i in (1, 8)}
    subprocess.run([*ip, "set", "vb", "up"], check=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the link watcher's turn
        states = {i: OPERSTATES[s] for i, s in nl.operstates(sock).items()}
        if states[7] == states[8] == "UP":
            break
        time.sleep(0.001)
    assert states == shown() and states[7] == states[8] == "UP", states


def test_batch_size_is_bounded() -> None:
    with socket.socket() as sock, pytest.raises(ValueError, match="at most 100 messages"):
        nl.send_batch(sock, [nl.link_up(1)] * 101)


def test_namespaces_made_by_several_threads_come_back_in_order_each_set_up_inside_its_own(
    live: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WORKERS threads share the names; each result is `setup` run inside the namespace of
    the name at its place, and a failure in one thread stops the others, every namespace
    made is in `created`."""

    def inode_here(_: str) -> int:
        return os.stat("/proc/thread-self/ns/net").st_ino

    prefix = f"tn{secrets.token_hex(3)}"
    names = [f"{prefix}-h{i}" for i in range(7)]
    created: list[str] = []
    try:
        inodes = ns.create_namespaces(names, inode_here, created)
        assert sorted(created) == sorted(names)
        assert inodes == [ns.netns_inode(n) for n in names]
        assert len(set(inodes)) == 7
    finally:
        for n in created:
            ns.remove_namespace(n)

    def fails_on_the_third(name: str) -> int:
        if name.endswith("-f2"):
            raise OSError("setup failed")
        return 0

    monkeypatch.setattr(ns, "WORKERS", 2)
    created = []
    try:
        with pytest.raises(OSError, match="setup failed"):
            ns.create_namespaces([f"{prefix}-f{i}" for i in range(40)], fails_on_the_third,
                                 created)  # fmt: skip
        # f2 belongs to the first thread; the second stops soon after, not at its end
        assert f"{prefix}-f2" in created and len(created) < 40
        assert all(os.path.exists(f"/run/netns/{n}") for n in created)
    finally:
        for n in created:
            ns.remove_namespace(n)


def _file_under_mount(name: str) -> tuple[int, int]:
    """(inode, link count) of the plain file a namespace is bound on, seen from a private
    mount namespace where the bind mount is undone (the host's mounts are left alone)."""
    out = subprocess.run(
        ["unshare", "-m", "sh", "-c",
         f"umount -l /run/netns/{name} && stat -c '%i %h' /run/netns/{name}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return int(out[0]), int(out[1])


@pytest.mark.parametrize("linkable", [True, False])
def test_a_builds_namespaces_are_bound_on_hard_links_of_few_files(
    live: None, monkeypatch: pytest.MonkeyPatch, linkable: bool
) -> None:
    """Each worker thread makes one file and binds its later namespaces on hard links of it
    (no new inode each); where the kernel refuses the link, each gets a file of its own.
    Either way each name holds a namespace of its own, and removal leaves nothing."""
    if not linkable:
        monkeypatch.setattr(ns, "_libc", _RefusingLinkat(ns._libc))
    monkeypatch.setattr(ns, "WORKERS", 2)
    prefix = f"tn{secrets.token_hex(3)}"
    names = [f"{prefix}-h{i}" for i in range(6)]
    created: list[str] = []
    try:
        ns.create_namespaces(names, str, created)
        assert len({ns.netns_inode(n) for n in names}) == 6
        files = [_file_under_mount(n) for n in names]
    finally:
        for n in created:
            ns.remove_namespace(n)
    assert not [n for n in os.listdir("/run/netns") if n.startswith(prefix)]
    if linkable:  # names 0, 2, 4 from one thread, 1, 3, 5 from the other
        assert len({inode for inode, _ in files}) == 2
        assert all(links == 3 for _, links in files)
    else:
        assert len({inode for inode, _ in files}) == 6
        assert all(links == 1 for _, links in files)


class _RefusingLinkat:
    """libc, but `linkat` fails as without CAP_DAC_READ_SEARCH."""

    def __init__(self, libc: object) -> None:
        self._libc = libc

    def __getattr__(self, name: str) -> object:
        return getattr(self._libc, name)

    def linkat(self, *_: object) -> int:
        ctypes.set_errno(errno.EPERM)
        return -1


def _tcp_table_size(_: str) -> int:
    return int(ns.read_sysctl("net/ipv4/tcp_ehash_entries") or 0)


def test_each_namespace_has_its_own_tcp_table_or_shares_the_hosts_where_refused(
    live: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A namespace gets a table of TCP_TABLE_SIZE buckets of its own (a negative size is
    the host's, shared); where the kernel refuses the setting it shares the host's and is
    made all the same; the caller's namespace is never changed."""
    if ns.read_sysctl("net/ipv4/tcp_child_ehash_entries") is None:
        pytest.skip("kernel before 6.1: no net.ipv4.tcp_child_ehash_entries")
    prefix = f"tn{secrets.token_hex(3)}"
    host = os.stat("/proc/self/ns/net").st_ino
    for refused in (False, True):
        if refused:

            def refuse(name: str, value: str) -> None:
                raise PermissionError(errno.EPERM, "refused")

            monkeypatch.setattr(ns, "write_sysctl", refuse)
        names = [f"{prefix}-{int(refused)}{i}" for i in range(4)]
        created: list[str] = []
        try:
            sizes = ns.create_namespaces(names, _tcp_table_size, created)
            assert sorted(created) == sorted(names)
            if refused:
                assert all(size < 0 for size in sizes), sizes
            else:
                assert sizes == [ns.TCP_TABLE_SIZE] * 4
        finally:
            for n in created:
                ns.remove_namespace(n)
        assert os.stat("/proc/self/ns/net").st_ino == host


def test_removing_namespaces_keeps_their_inode_numbers_until_the_last_sweep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second sweep kills what is inside by inode number, after the unbind: a freed
    namespace's number may go to a namespace another run makes meanwhile (the kernel reuses
    the lowest free number), whose processes the sweep would kill. Held open, the
    namespaces live, and keep their numbers, until the sweep is done."""
    import netem._build as build

    if os.geteuid() != 0:
        pytest.skip("namespaces need root")
    prefix = f"tn{secrets.token_hex(3)}"
    names = [f"{prefix}-h{i}" for i in range(3)]
    created: list[str] = []
    ns.create_namespaces(names, lambda _: 0, created)
    ours = {ns.netns_inode(n) for n in names}
    alive_at_sweep: list[set[int | None]] = []

    def sweep(inodes: list[int]) -> list[int]:
        held: set[int | None] = set()
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                held.add(os.stat(f"/proc/self/fd/{fd}").st_ino)
        alive_at_sweep.append(held & ours)
        return []

    monkeypatch.setattr(build, "kill_inside", sweep)
    try:
        assert sorted(build.remove_namespaces(names)) == sorted(names)
    finally:
        for n in created:
            ns.remove_namespace(n)
    assert not any(os.path.exists(f"/run/netns/{n}") for n in names)
    assert alive_at_sweep == [ours, ours]  # the second sweep: unbound, not yet freed
