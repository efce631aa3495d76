"""The userspace engine's logic, without privileges: its decisions and timer queue run in
--simulate mode (a virtual clock), for the C engine and the Python engine alike."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from netem import LinkShape
from netem._backends._base import LinkStats
from netem._userspace import BuildError, Engine, EngineError, _copies, _rules, build_engine
from netem._userspace._build import CACHE_ENV
from netem._userspace._protocol import ProtocolError, pair_line, parse_stats, update_lines
from netem._userspace._pycore import Core

A, B, C = IPv4Address("198.18.0.1"), IPv4Address("198.18.0.2"), IPv4Address("198.18.0.3")
REPO = Path(__file__).resolve().parents[2]
Simulate = Callable[..., list[list[str]]]


@pytest.fixture(scope="session")
def c_engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return build_engine(tmp_path_factory.mktemp("engine-cache"))
    except BuildError as exc:
        pytest.skip(f"C engine cannot be built here: {exc}")


@pytest.fixture(params=["c", "python"])
def simulate(request: pytest.FixtureRequest) -> Iterator[Simulate]:
    """A function running the chosen engine in --simulate mode over input lines."""
    if request.param == "c":
        argv = [str(request.getfixturevalue("c_engine")), "--simulate"]
    else:
        argv = [sys.executable, "-m", "netem._userspace._pyengine", "--simulate"]

    def run(lines: list[str], seed: int = 1, normal: bool = False) -> list[list[str]]:
        extra = ["--seed", str(seed), *(["--normal"] if normal else [])]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.run(
            [*argv, *extra],
            input="\n".join(lines) + "\n",
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=True,
        )
        return [ln.split() for ln in proc.stdout.splitlines()]

    yield run


def shape_lines(shape: LinkShape, pair: tuple[IPv4Address, IPv4Address] = (A, B)) -> list[str]:
    return [pair_line(pair, shape), "commit"]


def packets(n: int, gap_us: int = 100, pair: tuple[str, str] = (str(A), str(B))) -> list[str]:
    return [f"pkt {i * gap_us} {i} {pair[0]} {pair[1]} 100" for i in range(n)]


def fates(out: list[list[str]]) -> dict[str, list[tuple[int, int]]]:
    """verdict word -> [(packet id, time us)]"""
    result: dict[str, list[tuple[int, int]]] = {}
    for parts in out:
        if parts[0] in ("accept", "drop", "corrupt", "dup", "dup-corrupt"):
            result.setdefault(parts[0], []).append((int(parts[1]), int(parts[2])))
    return result


def delays(out: list[list[str]], gap_us: int = 100, kind: str = "accept") -> list[int]:
    return [t - pid * gap_us for pid, t in fates(out).get(kind, [])]


def test_each_packet_leaves_exactly_at_its_due_time(simulate: Simulate) -> None:
    out = simulate([*shape_lines(LinkShape(latency_ms=10)), *packets(50)])
    assert delays(out) == [10_000] * 50
    assert [pid for pid, _ in fates(out)["accept"]] == list(range(50))


def test_unshaped_pairs_pass_at_once(simulate: Simulate) -> None:
    out = simulate([*shape_lines(LinkShape(latency_ms=10)), *packets(5, pair=(str(B), str(A)))])
    assert delays(out) == [0] * 5


def test_uniform_jitter_stays_in_bounds_and_spreads(simulate: Simulate) -> None:
    out = simulate([*shape_lines(LinkShape(latency_ms=20, jitter_ms=5)), *packets(3000)])
    d = delays(out)
    assert len(d) == 3000
    assert min(d) >= 15_000 and max(d) <= 25_000
    assert min(d) < 15_300 and max(d) > 24_700  # the whole range is used
    assert abs(statistics.mean(d) - 20_000) < 200
    assert abs(statistics.pstdev(d) - 5_000 / 3**0.5) < 150  # sd of uniform(-j, j)


def test_normal_jitter_has_sigma_jitter(simulate: Simulate) -> None:
    out = simulate(
        [*shape_lines(LinkShape(latency_ms=50, jitter_ms=5)), *packets(3000)], normal=True
    )
    d = delays(out)
    assert abs(statistics.mean(d) - 50_000) < 300
    assert abs(statistics.pstdev(d) - 5_000) < 300
    assert max(d) > 60_000 or min(d) < 40_000  # tails beyond 2 sigma exist in 3000 draws


def test_jitter_reorders_like_netem(simulate: Simulate) -> None:
    out = simulate([*shape_lines(LinkShape(latency_ms=20, jitter_ms=5)), *packets(200)])
    order = [pid for pid, _ in fates(out)["accept"]]
    assert sorted(order) == list(range(200)) and order != list(range(200))


def test_loss_rate(simulate: Simulate) -> None:
    out = simulate([*shape_lines(LinkShape(latency_ms=1, loss_pct=25)), *packets(4000), "stats"])
    f = fates(out)
    assert 900 <= len(f["drop"]) <= 1100  # 1000 expected, sd 27
    assert len(f["drop"]) + len(f["accept"]) == 4000
    assert next(p for p in out if p[0] == "stat")[3:6] == ["4000", "400000", str(len(f["drop"]))]


def test_duplicates_get_their_own_delay(simulate: Simulate) -> None:
    shape = LinkShape(latency_ms=10, jitter_ms=2, duplicate_pct=30)
    out = simulate([*shape_lines(shape), *packets(3000)])
    dups = delays(out, kind="dup")
    assert 800 <= len(dups) <= 1000  # 900 expected, sd 25
    assert len(fates(out)["accept"]) == 3000  # the original always goes on
    assert min(dups) >= 8_000 and max(dups) <= 12_000 and len(set(dups)) > 100


def test_a_copy_goes_through_the_shape_again_as_netems_does(simulate: Simulate) -> None:
    """Copies skipped loss and corruption: with duplicate 100 % and corrupt 100 % every
    packet arrived intact (a copy), and with loss every copy still went."""
    f = fates(simulate([*shape_lines(LinkShape(latency_ms=1, duplicate_pct=100,
                                               corrupt_pct=100)), *packets(1000)]))
    assert len(f["corrupt"]) == len(f["dup-corrupt"]) == 1000
    assert not f.get("accept") and not f.get("dup")
    # A loss takes one of a duplicated packet's two: the original goes on alone; else the
    # copy meets the loss again. Copies: 4000 x 0.5 x 0.5 = 1000 expected, sd 27.
    f = fates(simulate([*shape_lines(LinkShape(latency_ms=1, duplicate_pct=100,
                                               loss_pct=50)), *packets(4000)]))
    assert len(f["accept"]) == 4000 and not f.get("drop")
    assert 900 <= len(f["dup"]) <= 1100


def test_reorder_sends_a_share_at_once(simulate: Simulate) -> None:
    out = simulate([*shape_lines(LinkShape(latency_ms=10, reorder_pct=40)), *packets(3000)])
    d = delays(out)
    assert set(d) == {0, 10_000}
    assert 1080 <= d.count(0) <= 1320  # 1200 expected, sd 27


def test_corrupt_share(simulate: Simulate) -> None:
    out = simulate([*shape_lines(LinkShape(latency_ms=1, corrupt_pct=20)), *packets(3000)])
    corrupt = delays(out, kind="corrupt")
    assert 520 <= len(corrupt) <= 680 and set(corrupt) == {1_000}
    assert len(corrupt) + len(fates(out)["accept"]) == 3000


def test_same_seed_same_run_other_seed_other_run(simulate: Simulate) -> None:
    lines = [*shape_lines(LinkShape(latency_ms=5, jitter_ms=4, loss_pct=10)), *packets(500)]
    assert simulate(lines, seed=7) == simulate(lines, seed=7)
    assert simulate(lines, seed=7) != simulate(lines, seed=8)


def test_update_replaces_the_table_and_keeps_counters(simulate: Simulate) -> None:
    out = simulate(
        [
            *shape_lines(LinkShape(latency_ms=10)),
            "pkt 0 1 198.18.0.1 198.18.0.2 100",
            pair_line((A, B), LinkShape(latency_ms=30)),
            pair_line((A, C), LinkShape(latency_ms=1)),
            "commit",
            "pkt 100 2 198.18.0.1 198.18.0.2 100",
            "advance 100000",
            "stats",
            "commit",  # an empty table: nothing shaped any more
            "pkt 200000 3 198.18.0.1 198.18.0.2 100",
        ]
    )
    assert fates(out)["accept"] == [(1, 10_000), (2, 30_100), (3, 200_000)]
    stats, _ = parse_stats([" ".join(p) for p in out if p[0] in ("stat", "late")])
    assert stats[(A, B)].packets == 2 and stats[(A, C)].packets == 0
    assert stats[(A, B)].queue_delay_ms == pytest.approx(20.0)


def test_a_bad_pair_line_fails_the_commit_which_changes_nothing(simulate: Simulate) -> None:
    out = simulate(
        [
            *shape_lines(LinkShape(latency_ms=10)),
            pair_line((A, C), LinkShape(latency_ms=1)),
            "pair 198.18.0.1 nonsense 1 0 0 0 0 0",
            "commit",
            "pair 198.18.0.1 198.18.0.2 1 0 101 0 0 0",
            "commit",
            "pair 198.18.0.1 198.18.0.2 -1 0 0 0 0 0",
            "commit",
            "pair 0.0.0.0 0.0.0.0 1 0 0 0 0 0",
            "commit",
            "frobnicate",
            "pkt 0 1 198.18.0.1 198.18.0.2 100",  # still the first table: 10 ms
            "pkt 0 2 198.18.0.1 198.18.0.3 100",  # (A, C) never made it: at once
        ]
    )
    replies = [p for p in out if p[0] in ("ok", "err")]
    assert replies[0] == ["ok", "1"]
    assert [p[0] for p in replies[1:]] == ["err"] * 5
    assert " ".join(replies[1]) == "err bad pair line for 198.18.0.1 -> nonsense; nothing changed"
    assert replies[-1] == ["err", "unknown", "command", "frobnicate"]
    assert fates(out)["accept"] == [(2, 0), (1, 10_000)]


def test_python_core_flips_one_bit_past_the_ip_header() -> None:
    class Out:
        sent: list[bytes | None] = []

        def accept(self, handle: int, payload: bytes | None, now_ns: int) -> None:
            self.sent.append(payload)

        def drop(self, handle: int, now_ns: int) -> None:
            raise AssertionError("nothing is lost here")

        def duplicate(self, handle: int, payload: bytes, ifindex: int, now_ns: int,
                      corrupt: bool) -> None:
            raise AssertionError("nothing is duplicated here")

    out = Out()
    core: Core[int] = Core(out, seed=3)
    core.command(pair_line((A, B), LinkShape(corrupt_pct=100)))
    core.command("commit")
    packet = bytes([0x45, 0, 0, 60]) + bytes(8) + A.packed + B.packed + bytes(range(40))
    for i in range(50):
        core.on_packet(i, packet, 0)
    assert len(out.sent) == 50
    for sent in out.sent:
        assert sent is not None
        diff = [i for i, (x, y) in enumerate(zip(packet, sent, strict=True)) if x != y]
        assert len(diff) == 1 and diff[0] >= 20
        assert bin(packet[diff[0]] ^ sent[diff[0]]).count("1") == 1


# -- protocol, rules, build, API input checks ------------------------------------------------


def test_protocol_lines_leave_out_bandwidth_only_pairs() -> None:
    lines = update_lines(
        {(A, B): LinkShape(latency_ms=1.5, loss_pct=2), (B, A): LinkShape(bandwidth_bps=10**6)}
    )
    assert lines == ["pair 198.18.0.1 198.18.0.2 1500.0 0.0 2.0 0.0 0.0 0.0"]


def test_parse_stats() -> None:
    stats, timing = parse_stats(["stat 198.18.0.1 198.18.0.2 10 1000 2 40000 8", "late 8 3 9 12"])
    assert stats == {(A, B): LinkStats(10, 1000, 2, 5.0)}
    assert (timing.count, timing.p50_us, timing.p99_us, timing.max_us) == (8, 3, 9, 12)
    assert parse_stats(["stat 198.18.0.1 198.18.0.2 1 1 0 0 0"])[0][(A, B)].queue_delay_ms is None
    with pytest.raises(ProtocolError, match="unexpected line"):
        parse_stats(["stat 198.18.0.1"])


def test_rules_queue_per_source_chain_and_delete_stale_ones() -> None:
    text, sources = _rules.render_update([(A, B), (A, C), (B, A)], 3, old_pairs=[(A, B), (C, A)])
    lines = text.splitlines()
    assert sources == {A, B}
    assert lines[0] == "*filter" and lines[-1] == "COMMIT"
    assert "-A NETEM-QUEUE -s 198.18.0.1/32 -j NETEM-Q-c6120001" in lines
    assert "-A NETEM-QUEUE -s 198.18.0.2/32 -j NETEM-Q-c6120002" in lines
    queue = "-j NFQUEUE --queue-num 3 --queue-bypass"
    assert f"-A NETEM-Q-c6120001 -d 198.18.0.3/32 {queue}" in lines
    assert f"-A NETEM-Q-c6120002 -d 198.18.0.1/32 {queue}" in lines
    assert sum(queue in ln for ln in lines) == 3
    # C's chain is flushed (declared) before it is deleted
    assert lines.index(":NETEM-Q-c6120003 - [0:0]") < lines.index("-X NETEM-Q-c6120003")


def test_rules_rewrite_only_the_chains_of_sources_whose_destinations_changed() -> None:
    """A host's own request changes its source's chain: the other chains and the jumps to
    them stay as they are (at 100 hosts, 99 rules per request instead of 9,900)."""
    old = [(A, B), (A, C), (B, A)]
    text, sources = _rules.render_update([*old, (C, A)], 3, old_pairs=old)
    lines = text.splitlines()
    assert sources == {A, B, C}
    assert [ln for ln in lines if ln.startswith(":")] == [":NETEM-QUEUE - [0:0]",
                                                          ":NETEM-Q-c6120003 - [0:0]"]
    assert sum("NFQUEUE" in ln for ln in lines) == 1  # C -> A, not A's or B's again
    assert "-A NETEM-QUEUE -s 198.18.0.1/32 -j NETEM-Q-c6120001" in lines  # jumps, rebuilt
    text, _ = _rules.render_update([(A, B), (B, A), (C, A)], 3, old_pairs=[*old, (C, A)])
    lines = text.splitlines()
    assert [ln for ln in lines if ln.startswith(":")] == [":NETEM-Q-c6120001 - [0:0]"]
    assert lines[1:-1] == [":NETEM-Q-c6120001 - [0:0]",
                           "-A NETEM-Q-c6120001 -d 198.18.0.2/32 -j NFQUEUE --queue-num 3 "
                           "--queue-bypass"]  # the same sources: NETEM-QUEUE untouched


def test_teardown_removes_only_what_was_created() -> None:
    text = _rules.render_teardown([A], remove_jump=True, remove_chain=False)
    # the jump ensure_chain made, which skips the packets the engine let go (RECHECK_MARK)
    assert "-D FORWARD -m mark ! --mark 0x10000000/0x10000000 -j NETEM-QUEUE" in text
    assert "-X NETEM-QUEUE" not in text
    assert "-X NETEM-Q-c6120001" in text


def test_build_is_cached_by_source_hash(tmp_path: Path, c_engine: Path) -> None:
    first = build_engine(tmp_path)
    mtime = first.stat().st_mtime_ns
    assert build_engine(tmp_path) == first and first.stat().st_mtime_ns == mtime
    assert first.name == c_engine.name  # same source, same key


def test_a_build_removes_what_builders_killed_mid_build_left(tmp_path: Path,
                                                             c_engine: Path) -> None:
    """A builder killed mid-build left its directory (the engine and its source) in the
    cache for good."""
    hour_ago = time.time() - 3600
    for name, age in ((".build-999999999-a", hour_ago),  # its builder is gone
                      (".build-b", hour_ago),  # an older build's, which named no builder
                      (".build-999999998-c", None),  # gone too, but new: maybe another
                      (f".build-{os.getpid()}-d", hour_ago)):  # PID namespace's; alive
        (tmp_path / name).mkdir()
        (tmp_path / name / "engine.c").write_text("int main;")
        if age is not None:
            os.utime(tmp_path / name, (age, age))
    build_engine(tmp_path)
    assert {p.name for p in tmp_path.glob(".build-*")} == {
        f".build-{os.getpid()}-d", ".build-999999998-c"}


def test_build_without_compiler_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "no-such-cc")
    with pytest.raises(BuildError, match=r"no C compiler \('no-such-cc'\) found"):
        build_engine(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_cached_engine_needs_no_compiler(tmp_path: Path, c_engine: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # a pod's image carries the engine built on the machine that made the image, no gcc
    shutil.copy2(c_engine, tmp_path / c_engine.name)
    monkeypatch.setenv("CC", "no-such-cc")
    assert build_engine(tmp_path) == tmp_path / c_engine.name


def test_the_own_namespace_engine_hooks_output_and_enters_no_namespace(
    monkeypatch: pytest.MonkeyPatch, c_engine: Path
) -> None:
    # a pod's sidecar shapes its own egress: it may not setns, and its packets leave by OUTPUT
    monkeypatch.setenv(CACHE_ENV, str(c_engine.parent))
    engine = Engine(None, hook="OUTPUT")
    argv = engine._command_line()
    assert argv[0] == str(c_engine) and "--netns" not in argv
    # its drops come before the kernel's netem too: a packet let go is not checked again
    assert "--recheck-mark" not in argv
    assert "--recheck-mark" in Engine(None, hook="FORWARD")._command_line()
    text = _rules.render_teardown([A], remove_jump=True, remove_chain=True, hook="OUTPUT")
    # the jump skips the duplicates' copies, sent marked from a raw socket
    assert ("-D OUTPUT -m mark ! --mark 0x10000000/0x10000000 -j NETEM-QUEUE" in text
            and "FORWARD" not in text)
    with pytest.raises(EngineError, match="hook must be 'FORWARD' or 'OUTPUT'"):
        Engine(None, hook="INPUT")  # type: ignore[arg-type]


def test_engine_without_c_and_without_netfilterqueue_explains_both(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CC", "no-such-cc")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "empty-cache"))  # no engine built before
    monkeypatch.setattr(_rules, "NETNS_DIR", tmp_path)
    (tmp_path / "hub").touch()
    monkeypatch.setitem(sys.modules, "netfilterqueue", None)
    engine = Engine("hub")
    with pytest.raises(EngineError, match=r"no C compiler.*NetfilterQueue is not installed"):
        engine.start()
    assert engine.pid is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"queue_num": 70000}, "queue_num must be 0 to 65535"),
        ({"queue_num": "1"}, "queue_num must be an integer"),
        ({"distribution": "pareto"}, "distribution must be"),
        ({"implementation": "rust"}, "implementation must be"),
        ({"seed": -1}, "seed must be"),
    ],
)
def test_engine_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(EngineError, match=message):
        Engine("hub", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("netns", "message"), [("../etc", "bad network namespace name"), ("nope-x1", "not found")]
)
def test_engine_start_names_a_missing_namespace(netns: str, message: str) -> None:
    engine = Engine(netns, implementation="python")
    with pytest.raises(EngineError, match=message):
        engine.start()
    assert engine.pid is None
    engine.stop()


def test_update_needs_a_started_engine_and_a_real_matrix() -> None:
    engine = Engine("hub")
    with pytest.raises(EngineError, match="not running"):
        engine.update({(A, B): LinkShape(latency_ms=1)})
    with pytest.raises(EngineError, match="two IPv4Address"):
        engine.update({("198.18.0.1", B): LinkShape()})  # type: ignore[dict-item]
    with pytest.raises(EngineError, match="not a LinkShape"):
        engine.update({(A, B): {"latency_ms": 1}})  # type: ignore[dict-item]
    with pytest.raises(EngineError, match="a matrix maps"):
        engine.update({A: LinkShape()})  # type: ignore[dict-item]


def test_public_names_are_exported_and_documented() -> None:
    import netem._userspace as package

    for name in package.__all__:
        obj = getattr(package, name)
        if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__code__")):
            assert obj.__doc__, name
    assert {"Engine", "EngineError", "Timing", "BuildError", "build_engine"} <= set(package.__all__)
    assert not [n for n in dir(package) if not n.startswith("_") and n not in package.__all__]


def test_build_into_an_unwritable_cache_says_where(tmp_path: Path, c_engine: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BuildError, match=r"cannot create the engine cache .*NETEM_USERSPACE_CACHE"):
        build_engine(blocker / "cache")


def test_a_copy_port_that_cannot_be_removed_is_named_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def run_in(netns: str | None, argv: list[str], stdin: str | None = None
               ) -> subprocess.CompletedProcess[str]:
        if argv[:3] == ["ip", "link", "del"]:
            return subprocess.CompletedProcess(argv, 2, "", "RTNETLINK answers: busy\nmore\n")
        return subprocess.CompletedProcess(argv, 0, "", "")  # `ip link show`: still there

    monkeypatch.setattr(_copies, "run_in", run_in)
    with pytest.raises(_rules.RulesError) as err:
        _copies.remove("hub")
    assert str(err.value) == (
        f"cannot remove the copies' port {_copies.COPY_DEV}: RTNETLINK answers: busy")
