"""The iptables rules that send shaped pairs to the queue, in the hub's chain NETEM-QUEUE.

NETEM-QUEUE jumps per source address to a chain of its own (NETEM-Q-<hex address>) that
queues per destination, so a packet meets at most (#sources + #destinations of its source)
rules rather than one per pair. Every change is one iptables-restore --noflush transaction.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from ipaddress import IPv4Address
from pathlib import Path

from netem._backends._base import Pair

CHAIN = "NETEM-QUEUE"
NETNS_DIR = Path("/run/netns")
RECHECK_MARK = 0x10000000
"""The mark the hub's engine gives a packet it lets go, which sends it through FORWARD's
rules once more (NF_REPEAT): the partitions' drops apply to it at its due time, and the
jump to NETEM-QUEUE skips it. Duplicates' copies carry it too, in FORWARD and OUTPUT."""


class RulesError(RuntimeError):
    """iptables refused a change, or the namespace is not there."""


def sub_chain(src: IPv4Address) -> str:
    """The per-source chain's name."""
    return f"NETEM-Q-{int(src):08x}"


def render_update(
    pairs: Iterable[Pair], queue_num: int, old_pairs: Iterable[Pair] = ()
) -> tuple[str, set[IPv4Address]]:
    """The iptables-restore text that makes NETEM-QUEUE queue exactly `pairs`, when it
    queues `old_pairs` now (what the last update made it queue).

    Only the chains of sources whose destinations changed are written again (a host's
    request changes its own source's chain, not the other N - 1), and NETEM-QUEUE's jumps
    only when the set of sources changes. Returns the text and the sources that now have
    a chain.
    """
    by_src = _by_source(pairs)
    old_by_src = _by_source(old_pairs)
    gone = sorted(set(old_by_src) - set(by_src))
    changed = [src for src, dsts in by_src.items() if old_by_src.get(src) != dsts]
    lines = ["*filter"]
    jumps = set(by_src) != set(old_by_src) or not old_by_src
    if jumps:
        lines.append(f":{CHAIN} - [0:0]")
    # declaring an existing chain under --noflush flushes it
    lines += [f":{sub_chain(src)} - [0:0]" for src in [*changed, *gone]]
    if jumps:
        lines += [f"-A {CHAIN} -s {src}/32 -j {sub_chain(src)}" for src in by_src]
    for src in changed:
        lines += [
            f"-A {sub_chain(src)} -d {dst}/32 -j NFQUEUE --queue-num {queue_num} --queue-bypass"
            for dst in by_src[src]
        ]
    lines += [f"-X {sub_chain(src)}" for src in gone]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n", set(by_src)


def _by_source(pairs: Iterable[Pair]) -> dict[IPv4Address, list[IPv4Address]]:
    by_src: dict[IPv4Address, set[IPv4Address]] = {}
    for src, dst in pairs:
        by_src.setdefault(src, set()).add(dst)
    # sorted by the addresses' numbers: comparing IPv4Address objects is slow
    return {src: sorted(by_src[src], key=int) for src in sorted(by_src, key=int)}


def jump() -> list[str]:
    """The rule of a hook that jumps to NETEM-QUEUE, not for a packet the engine let go
    already or sent as a copy (see RECHECK_MARK)."""
    return ["-m", "mark", "!", "--mark", f"{RECHECK_MARK:#x}/{RECHECK_MARK:#x}", "-j", CHAIN]


def render_teardown(sources: Iterable[IPv4Address], remove_jump: bool, remove_chain: bool,
                    hook: str = "FORWARD") -> str:
    """The iptables-restore text that removes every rule and chain the engine made (`hook`:
    the built-in chain that jumps to NETEM-QUEUE)."""
    srcs = sorted(set(sources))
    lines = ["*filter", f":{CHAIN} - [0:0]"]
    lines += [f":{sub_chain(src)} - [0:0]" for src in srcs]
    lines += [f"-X {sub_chain(src)}" for src in srcs]
    if remove_jump:
        lines.append(" ".join(["-D", hook, *jump()]))
    if remove_chain:
        lines.append(f"-X {CHAIN}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def netns_path(netns: str) -> Path:
    """/run/netns/<netns>, checked to be a plain name that exists."""
    if not netns or "/" in netns or netns in (".", ".."):
        raise RulesError(f"bad network namespace name {netns!r}")
    path = NETNS_DIR / netns
    if not path.exists():
        raise RulesError(f"network namespace {netns!r} not found (no {path})")
    return path


def run_in(
    netns: str | None, argv: list[str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command inside the namespace (through nsenter; None: this process's own)."""
    if netns is not None:
        nsenter = shutil.which("nsenter")
        if nsenter is None:
            raise RulesError("nsenter (util-linux) not found")
        argv = [nsenter, f"--net={netns_path(netns)}", *argv]
    return subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def why_failed(proc: subprocess.CompletedProcess[str]) -> str:
    """A failed command's first line of stderr, else its exit code."""
    return (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[0]


def restore(netns: str | None, text: str) -> None:
    """Apply an iptables-restore --noflush transaction in the namespace."""
    proc = run_in(netns, ["iptables-restore", "--noflush", "--wait", "10"], text)
    if proc.returncode != 0:
        raise RulesError(f"iptables-restore in {netns or 'this namespace'}: "
                         f"{why_failed(proc)}")


def filter_table_exists(netns: str | None) -> bool:
    """Whether the namespace has an iptables filter table yet (nf_tables creates it lazily)."""
    # not `-t filter`: that prints an empty filter table even where there is none
    proc = run_in(netns, ["iptables-save"])
    return proc.returncode == 0 and "*filter" in proc.stdout.splitlines()


def drop_filter_table_if_empty(netns: str | None) -> None:
    """Delete the filter table this engine brought into being, if nothing else uses it now.

    Only iptables-nft creates tables on demand, so only there is one deleted (with nft).
    """
    version = run_in(netns, ["iptables", "-V"]).stdout
    if "nf_tables" not in version or shutil.which("nft") is None:
        return
    saved = run_in(netns, ["iptables-save", "-t", "filter"]).stdout.splitlines()
    body = [ln for ln in saved if ln and not ln.startswith(("#", "*", "COMMIT"))]
    builtin = {":INPUT ACCEPT", ":FORWARD ACCEPT", ":OUTPUT ACCEPT"}
    if all(ln.rsplit(" ", 1)[0] in builtin for ln in body):
        run_in(netns, ["nft", "delete", "table", "ip", "filter"])


def ensure_chain(netns: str | None, hook: str = "FORWARD") -> tuple[bool, bool]:
    """Create NETEM-QUEUE and `hook`'s jump to it where missing (FORWARD's first rule).

    Returns (created the jump, created the chain), for the teardown to undo just that.
    """
    has_chain = run_in(netns, ["iptables", "-S", CHAIN]).returncode == 0
    has_jump = (
        has_chain and run_in(netns, ["iptables", "-C", hook, *jump()]).returncode == 0
    )
    if has_chain and has_jump:
        return False, False
    lines = ["*filter"]
    if not has_chain:
        lines.append(f":{CHAIN} - [0:0]")
    # In FORWARD, first: before the hub's drops (NETEM-DROP), which then judge a packet when
    # the engine lets it go, as they judge one the kernel's netem delayed on its source's
    # interface (a packet sent into a partition healed before its due time arrives).
    where = ["-I", hook, "1"] if hook == "FORWARD" else ["-A", hook]
    lines += [" ".join([*where, *jump()]), "COMMIT"]
    restore(netns, "\n".join(lines) + "\n")
    return True, not has_chain
