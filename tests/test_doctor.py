"""`harness doctor` and `harness clean`."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from harness._cli import main
from harness._commands import doctor
from harness._errors import EnvironmentProblem

from .conftest import unless_raced


def _hide(monkeypatch: pytest.MonkeyPatch, *programs: str) -> None:
    real = shutil.which

    def which(name: str, *args: object, **kwargs: object) -> str | None:
        return None if name in programs else real(name)

    monkeypatch.setattr(shutil, "which", which)


def test_can_run_needs_every_required_check_and_a_backend() -> None:
    ok = doctor.Check("program ip", True)
    kernel = doctor.Check("backend kernel", False, required=False)
    user = doctor.Check("backend userspace", True, required=False)
    assert doctor.can_run([ok, kernel, user])
    assert not doctor.can_run([ok, kernel, dataclass_replace(user, ok=False)])
    assert not doctor.can_run([doctor.Check("program ip", False), kernel, user])
    assert doctor.can_run([ok, doctor.Check("qdisc htb", None)])  # skipped is not failed


def dataclass_replace(check: doctor.Check, **changes: object) -> doctor.Check:
    import dataclasses

    return dataclasses.replace(check, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "value"), [
    ("HARNESS_NETEM_BACKEND", "bogus"), ("HARNESS_DATA_SUBNET", "10.0.0.0/31")])
def test_a_bad_variable_makes_the_machine_not_ready(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """Every local:netns run refuses it: the doctor said "ready" all the same."""
    monkeypatch.setenv(name, value)
    checks = doctor.collect_checks()
    (row,) = [c for c in checks if c.name == name]
    assert row.ok is False and value in row.detail
    assert not doctor.can_run(checks)
    monkeypatch.delenv(name)
    (row,) = [c for c in doctor.collect_checks() if c.name == name]
    assert row.ok is True


def test_render_says_what_to_do() -> None:
    table = doctor.render(
        [
            doctor.Check("program ip", True, "/usr/sbin/ip"),
            doctor.Check("program tc", False, "not found", "apt-get install iproute2", "iproute2"),
        ]
    )
    lines = table.splitlines()
    assert lines[2].split() == ["program", "ip", "ok", "/usr/sbin/ip"]
    assert lines[3].split()[:3] == ["program", "tc", "missing"]
    assert lines[3].endswith("not found; apt-get install iproute2")


def test_missing_program_fails_with_advice(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _hide(monkeypatch, "iptables-restore")
    assert main(["doctor"]) == 3
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("program iptables-restore"))
    assert "missing" in row and "apt-get install iptables" in row
    assert "not ready" in out and "missing: program iptables-restore" in out


def test_missing_python_dependency(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(doctor, "_python_deps", lambda: ["trio", "no-such-dist"])
    monkeypatch.setattr(doctor, "_kernel", lambda earlier: [])
    assert main(["doctor"]) == 3
    out = capsys.readouterr().out
    assert "python no-such-dist" in out and "pip install no-such-dist" in out


def test_python_dependencies_are_the_projects_own() -> None:
    import tomllib
    from pathlib import Path

    declared = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    names = [d.split(">")[0].split("=")[0].strip() for d in declared["project"]["dependencies"]]
    assert doctor._python_deps() == names


def test_fix_runs_apt_get_update_then_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _hide(monkeypatch, "iptables-restore", "nsenter")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    ran: list[list[str]] = []

    def fake(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
        ran.append(list(cmd))
        return subprocess.CompletedProcess(list(cmd), 0, "", "")

    monkeypatch.setattr(doctor, "_run", fake)
    monkeypatch.setattr(doctor, "_kernel", lambda earlier: [])
    assert main(["doctor", "--fix"]) == 3  # the fake installed nothing
    assert ran == [
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "iptables", "util-linux"],
    ]


def test_fix_reports_apt_failure_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)

    def failing(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(list(cmd), 100, "", "E: Could not get lock\n")

    with pytest.raises(EnvironmentProblem, match="apt-get update failed: E: Could not get lock"):
        doctor.install(["iproute2"], failing)


def test_fix_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(EnvironmentProblem, match="needs root: iproute2"):
        doctor.install(["iproute2"])


@pytest.mark.live
def test_doctor_tries_the_kernel_for_real(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to build the throw-away network")
    token = os.urandom(3).hex()  # its trial network's name: other tests' doctors run meanwhile
    monkeypatch.setattr(doctor.secrets, "token_hex", lambda n: token)
    code = main(["doctor"])
    out = capsys.readouterr().out
    rows = {
        line[:26].strip(): line[26:].split()[0] for line in out.splitlines()[2:] if line[:1].strip()
    }
    assert rows["netns + veth + bridge"] == "ok", out
    assert rows["qdisc htb"] == "ok", out
    assert code == (0 if "\nready:" in out else 3)
    assert not [n for n in os.listdir("/run/netns") if n.startswith(f"dr{token}")]


@pytest.mark.live
@pytest.mark.parametrize("outputs", ["there", "gone"])
def test_clean_prints_what_it_removed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, outputs: str
) -> None:
    """"gone": removing a killed run's outputs, then `harness clean --outputs` with the same
    path, was refused (no outputs directory) and left the run's namespaces and cgroups."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a leftover namespace")
    from netem._build._ns import create_namespaces, netlink_socket

    where = tmp_path if outputs == "there" else tmp_path / "outputs"
    note = "" if outputs == "there" else (
        f"harness: note: no outputs directory {where}: no run records to mark\n")

    def attempt() -> bool:
        orphan = f"ht{os.urandom(3).hex()}"
        for sock in create_namespaces([f"{orphan}-h1"], lambda _: netlink_socket(), []):
            sock.close()
        assert main(["clean", "--outputs", str(where)]) == 0
        assert not os.path.exists(f"/run/netns/{orphan}-h1")
        out, err = capsys.readouterr()
        assert err == note
        return f"removed {orphan}-h1" in out

    unless_raced(attempt)


def test_clean_rejects_bad_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() != 0:
        pytest.skip("the root check comes first")
    assert main(["clean", "--prefix", "../x"]) == 2
    assert "bad prefix '../x'" in capsys.readouterr().err


@pytest.mark.live
def test_kernel_trials_in_a_user_namespace() -> None:
    """What a non-root `harness doctor` runs: the same trials, inside a user namespace."""
    import netem

    problem = netem.rootless_problem()
    if problem is not None:
        pytest.skip(problem)
    checks = {c.name: c for c in doctor._kernel_in_userns()}
    assert checks["netns + veth + bridge"].ok, checks["netns + veth + bridge"].detail
    assert checks["netns + veth + bridge"].detail.endswith("(in a user namespace)")
    assert checks["qdisc htb"].ok
    assert "backend userspace" in checks and "backend kernel" in checks


def test_non_root_without_user_namespaces_skips_the_trials(monkeypatch: pytest.MonkeyPatch) -> None:
    import netem

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(netem, "rootless_problem", lambda: "user namespaces are disabled (test)")
    rows = doctor._kernel([])
    assert rows[0].ok is None and "user namespaces are disabled (test)" in rows[0].detail
    assert all(r.ok is None for r in rows)  # nothing tried, so nothing claimed to work
    assert doctor.can_run([doctor.Check("privileges", True), *rows]) is False


@pytest.mark.parametrize(
    ("c_problem", "python_engine", "ok", "detail"),
    [
        (None, False, True, "C engine built"),  # the engine runs use: no NetfilterQueue needed
        ("no C compiler", True, True, "only the slower Python engine (no C compiler)"),
        ("no C compiler", False, False, "no engine: no C compiler"),
    ],
)
def test_userspace_backend_is_judged_by_the_engines_it_can_run(
    c_problem: str | None, python_engine: bool, ok: bool, detail: str
) -> None:
    _, user = doctor._backends(False, True, c_problem, python_engine)
    assert (user.ok, user.package) == (ok, "gcc libnetfilter-queue-dev")
    assert detail in user.detail


@pytest.mark.parametrize(("chosen", "netem_ok", "user_ok", "ready"), [
    ("kernel", False, True, False), ("kernel", True, False, True),
    ("userspace", True, False, False), ("userspace", False, True, True),
    ("auto", False, True, True), ("auto", True, False, True), ("none", False, True, True),
])  # fmt: skip
def test_the_backend_named_by_the_variable_must_work(
    monkeypatch: pytest.MonkeyPatch, chosen: str, netem_ok: bool, user_ok: bool, ready: bool
) -> None:
    """With HARNESS_NETEM_BACKEND=kernel and no sch_netem every shaped run was refused,
    pointing to the doctor, which said "ready" and that userspace was "used instead"."""
    monkeypatch.setenv("HARNESS_NETEM_BACKEND", chosen)
    kernel, user = doctor._backends(netem_ok, True, None if user_ok else "no cc", False)
    assert (kernel.ok, user.ok) == (netem_ok, user_ok)
    assert doctor.can_run([doctor.Check("program ip", True), kernel, user]) is ready
    if chosen == "kernel" and not netem_ok:
        assert kernel.status == "missing" and "used instead" not in kernel.fix
        assert "unset it" in kernel.fix


@pytest.mark.parametrize(("chosen", "said"), [
    ("none", "links are not shaped (HARNESS_NETEM_BACKEND=none)"),
    ("auto", "shaping backend(s): userspace"), ("userspace", "shaping backend(s): userspace"),
])  # fmt: skip
def test_the_summary_says_what_runs_will_shape_with(
    monkeypatch: pytest.MonkeyPatch, chosen: str, said: str
) -> None:
    """With HARNESS_NETEM_BACKEND=none it said "shaping backend(s): userspace"."""
    monkeypatch.setenv("HARNESS_NETEM_BACKEND", chosen)
    checks = [doctor.Check("program ip", True), *doctor._backends(False, True, None, False)]
    assert doctor.summary(checks) == said
    if chosen == "none":  # not shaping needs no backend
        none_usable = [doctor.Check("program ip", True), *doctor._backends(False, False, "x", False)]
        assert doctor.can_run(none_usable)
        assert doctor.summary(none_usable) == said


def test_engines_reports_why_the_c_engine_cannot_be_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "no-such-cc")
    monkeypatch.setenv("XDG_CACHE_HOME", "/nonexistent-cache")  # nothing built before
    c_problem, _ = doctor._engines()
    assert c_problem is not None and "no-such-cc" in c_problem


def test_fix_installs_each_package_of_a_check(monkeypatch: pytest.MonkeyPatch) -> None:
    failing = doctor.Check("backend userspace", False, package="gcc libnetfilter-queue-dev")
    monkeypatch.setattr(doctor, "collect_checks", lambda: [failing])
    asked: list[Sequence[str]] = []
    monkeypatch.setattr(doctor, "install", lambda packages: asked.append(packages))
    assert main(["doctor", "--fix"]) == EnvironmentProblem.exit_code  # still failing
    assert asked == [["gcc", "libnetfilter-queue-dev"]]


def test_the_kernel_rows_are_netems_own_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    import netem
    from netem import ProbeResult

    answers = [
        ProbeResult("sch_netem", True),
        ProbeResult("htb+u32", False, "RTNETLINK answers: No such file or directory (test)"),
        ProbeResult("tbf", True),
        ProbeResult("nfqueue", False, "iptables not found"),
    ]
    asked: list[dict[str, object]] = []

    def probe_all(**options: object) -> list[ProbeResult]:
        asked.append(options)
        return answers

    monkeypatch.setattr(netem, "probe_all", probe_all)
    monkeypatch.setattr(doctor, "_network_trial", lambda: [])
    monkeypatch.setattr(doctor, "_engines", lambda: (None, False))
    rows = {c.name: c for c in doctor._kernel_trials()}
    assert asked == [{"fresh": True}]  # tried again after --fix, not answered from a cache
    htb = rows["qdisc htb"]
    assert (htb.ok, htb.fix) == (False, "a kernel with sch_htb (CONFIG_NET_SCH_HTB)")
    assert htb.detail == "RTNETLINK answers: No such file or directory (test)"
    assert (rows["qdisc tbf"].ok, rows["qdisc tbf"].detail) == (True, "works")
    assert rows["backend kernel"].ok is True
    user = rows["backend userspace"]
    assert user.ok is False  # NFQUEUE does not work, and says why; the fix is not the C engine
    assert user.detail == "the iptables NFQUEUE target does not work: iptables not found"
    assert (user.fix, user.package) == ("apt-get install iptables", "iptables")
    answers[3] = ProbeResult("nfqueue", False, "iptables: No chain/target/match by that name.")
    user = {c.name: c for c in doctor._kernel_trials()}["backend userspace"]
    assert user.package is None and "modprobe nfnetlink_queue xt_NFQUEUE" in user.fix


def test_the_network_trial_without_ping_says_so_not_that_the_bridge_failed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to build the throw-away network")
    _hide(monkeypatch, "ping")
    bridge, chain = doctor._network_trial()
    assert (bridge.ok, bridge.detail) == (None, "2 hosts built; not pinged: no ping program")
    assert chain.ok is True
