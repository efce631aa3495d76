"""`harness doctor`: can this machine run plans on emulated networks? What is missing?"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.metadata
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path

import netem
from harness._errors import EnvironmentProblem, UsageError

HELP = "check that this machine can run networks, and say what to install (--fix installs it)"

def _python_deps() -> list[str]:
    """The project's own dependencies (distribution names), as pyproject.toml declares."""
    try:
        requires = importlib.metadata.requires("p2p-harness") or []
    except importlib.metadata.PackageNotFoundError:  # a source checkout that is not installed
        root = Path(__file__).resolve().parents[2]
        requires = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    return [
        re.split(r"[\s;<>=!~\[]", r, maxsplit=1)[0] for r in requires if "extra ==" not in r
    ]


_PROGRAMS = (
    ("ip", "iproute2"),
    ("tc", "iproute2"),
    ("iptables-restore", "iptables"),
    ("iptables-save", "iptables"),
    ("nsenter", "util-linux"),
    ("unshare", "util-linux"),
    ("ping", "iputils-ping"),
)


@dataclasses.dataclass
class Check:
    """One line of the table."""

    name: str
    ok: bool | None  # None: not checked (skipped)
    detail: str = ""
    fix: str = ""  # what to do when not ok
    package: str | None = None  # the Debian package(s) that fix it, space-separated
    required: bool = True  # when False, a failure alone does not stop the runner

    @property
    def status(self) -> str:
        if self.ok is None:
            return "skipped"
        return "ok" if self.ok else ("missing" if self.required else "absent")


Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=False, timeout=120)


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `harness doctor`."""
    parser.add_argument(
        "--fix",
        action="store_true",
        help="install missing Debian packages with apt-get (runs apt-get update first)",
    )
    parser.add_argument("--kernel-json", action="store_true", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Print the table; 0 if the runner can work here, 3 if it cannot."""
    if args.kernel_json:  # the inner half of a non-root doctor, inside a user namespace
        print(json.dumps([dataclasses.asdict(c) for c in _kernel_trials()]))
        return 0
    checks = collect_checks()
    if args.fix:
        packages = sorted({p for c in checks if c.ok is False and c.package for p in c.package.split()})
        if packages:
            install(packages)
            checks = collect_checks()
    print(render(checks))
    verdict = can_run(checks)
    print(f"\n{'ready' if verdict else 'not ready'}: " + summary(checks))
    return 0 if verdict else EnvironmentProblem.exit_code


def install(packages: Sequence[str], runner: Runner | None = None) -> None:
    """apt-get update, then apt-get install the packages; a one-line error if that fails."""
    if os.geteuid() != 0:
        raise EnvironmentProblem(
            f"--fix installs Debian packages and needs root: {' '.join(packages)}"
        )
    if shutil.which("apt-get") is None:
        raise EnvironmentProblem(f"apt-get not found; install by hand: {' '.join(packages)}")
    for cmd in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", *packages],
    ):
        print(f"running: {' '.join(cmd)}", flush=True)
        proc = (runner or _run)(cmd)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise EnvironmentProblem(f"{' '.join(cmd[:2])} failed: {last}")


def _variables() -> list[Check]:
    """The environment variables local:netns runs read: a bad one refuses every run."""
    from harness.runners._netns import BACKEND_ENV, SUBNET_ENV, netns_backend, netns_subnet

    checks = []
    for name, read in ((BACKEND_ENV, netns_backend), (SUBNET_ENV, lambda: netns_subnet(1))):
        try:
            checks.append(Check(name, True, read()))
        except UsageError as e:
            checks.append(Check(name, False, str(e), fix=f"unset {name}, or see docs/contracts.md"))
    return checks


def collect_checks() -> list[Check]:
    """Every check, in the order of the table."""
    checks = [_privilege(), *_variables()]
    checks += [_program(name, package) for name, package in _PROGRAMS]
    checks += [_python(dist) for dist in _python_deps()]
    checks += _kernel(checks)
    return checks


def can_run(checks: Sequence[Check]) -> bool:
    """The runner works when every required check passed (skipped ones do not count)
    and at least one shaping backend is usable, unless runs are told not to shape."""
    if any(c.required and c.ok is False for c in checks):
        return False
    backends = [c for c in checks if c.name.startswith("backend ")]
    return not backends or any(c.ok for c in backends) or _chosen_backend() == "none"


def summary(checks: Sequence[Check]) -> str:
    usable = [
        c.name.removeprefix("backend ") for c in checks if c.name.startswith("backend ") and c.ok
    ]
    missing = [c.name for c in checks if c.required and c.ok is False]
    parts = []
    if _chosen_backend() == "none":
        from harness.runners._netns import BACKEND_ENV

        parts.append(f"links are not shaped ({BACKEND_ENV}=none)")
    elif usable:
        parts.append(f"shaping backend(s): {', '.join(usable)}")
    if missing:
        parts.append(f"missing: {', '.join(missing)}")
    return "; ".join(parts) or "no shaping backend could be checked"


def render(checks: Sequence[Check]) -> str:
    """A plain-text table: check, status, detail or what to do."""
    width = max(len(c.name) for c in checks)
    lines = [f"{'check':<{width}}  {'status':<7}  detail / what to do", "-" * (width + 40)]
    for c in checks:
        text = c.detail if c.ok or not c.fix else f"{c.detail}; {c.fix}" if c.detail else c.fix
        lines.append(f"{c.name:<{width}}  {c.status:<7}  {text}")
    return "\n".join(lines)


def _privilege() -> Check:
    if os.geteuid() == 0:
        return Check("privileges", True, "root")
    problem = netem.rootless_problem()
    if problem is None:
        return Check("privileges", True, "not root; user namespaces available (rootless mode)")
    return Check("privileges", False, problem, "run as root or enable user namespaces")


def _program(name: str, package: str) -> Check:
    path = shutil.which(name)
    if path:
        return Check(f"program {name}", True, path, package=package)
    return Check(f"program {name}", False, "not found", f"apt-get install {package}", package)


def _python(dist: str) -> Check:
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return Check(f"python {dist}", False, "not installed", f"pip install {dist}")
    return Check(f"python {dist}", True, version)


def _kernel(earlier: Sequence[Check]) -> list[Check]:
    """Namespaces, veth, bridge, iptables, htb, tbf, netem and NFQUEUE, tried for real in a
    throw-away network that is removed at once."""
    if any(
        c.ok is False
        for c in earlier
        if c.name.startswith(
            ("program ip", "program nsenter", "program unshare", "python pyroute2")
        )
    ):
        return _skipped("needs ip, iptables, nsenter, unshare and pyroute2 first")
    if os.geteuid() != 0:
        problem = netem.rootless_problem()
        if problem is not None:
            return _skipped(f"not root, and no user namespace: {problem}")
        return _kernel_in_userns()
    return _kernel_trials()


_TRIALS = ("netns + veth + bridge", "iptables in a namespace", "qdisc htb", "qdisc tbf")


def _skipped(why: str) -> list[Check]:
    return [Check(n, None, why) for n in _TRIALS] + _backends(None, None, None, None)


def _kernel_in_userns() -> list[Check]:
    """The trials run by a copy of this command inside a user + network + mount namespace:
    what an unprivileged user's runs will get (netem.reexec_in_userns)."""
    command = netem.userns_command([sys.executable, "-m", "harness", "doctor", "--kernel-json"])
    env = {**os.environ, "NETEM_IN_USERNS": "1"}
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    except subprocess.TimeoutExpired:
        return _userns_failed("it took more than 120 s")
    try:
        checks = [Check(**row) for row in json.loads(proc.stdout)]
    except (ValueError, TypeError):
        return _userns_failed((proc.stderr.strip().splitlines() or ["no output"])[-1])
    for check in checks:
        check.detail = f"{check.detail} (in a user namespace)".strip()
    return checks


def _userns_failed(why: str) -> list[Check]:
    first = Check(
        _TRIALS[0],
        False,
        f"the trial in a user namespace failed: {why}",
        "run `harness doctor` as root to see more",
    )
    return [first, *_skipped("the trial in a user namespace failed")[1:]]


def _kernel_trials() -> list[Check]:
    """A throw-away network built and pinged, then netem's own probes (`netem.probe_all`)."""
    probes = {p.name: p for p in netem.probe_all(fresh=True)}  # fresh: after --fix installs
    return [
        *_network_trial(),
        _qdisc("htb", probes["htb+u32"]),
        _qdisc("tbf", probes["tbf"]),
        *_backends(probes["sch_netem"].ok, probes["nfqueue"].ok, *_engines(),
                   nfqueue_why=probes["nfqueue"].detail),
    ]


def _network_trial() -> list[Check]:
    names = _TRIALS
    prefix = f"dr{secrets.token_hex(3)}"
    try:
        with netem.Network(prefix=prefix, backend="none", subnet="198.18.0.0/29") as net:
            h1, h2 = net.build(2)
            if shutil.which("ping") is None:  # (its own row says so: not the bridge's fault)
                return [Check(names[0], None, "2 hosts built; not pinged: no ping program"),
                        Check(names[1], True, "NETEM-DROP chain installed in the hub")]
            ping = _run(
                ["nsenter", f"--net={h1.netns_path}", "ping", "-c", "1", "-w", "10", str(h2.ip)]
            )
            return [
                Check(
                    names[0],
                    ping.returncode == 0,
                    "2 hosts built and pinged"
                    if ping.returncode == 0
                    else "built, but ping failed",
                    "check that the bridge module works",
                ),
                Check(names[1], True, "NETEM-DROP chain installed in the hub"),
            ]
    except netem.NetemError as e:
        return [
            Check(names[0], False, str(e), "see the message"),
            Check(names[1], None, "network could not be built"),
        ]


def _qdisc(name: str, probe: netem.ProbeResult) -> Check:
    return Check(
        f"qdisc {name}",
        probe.ok,
        "works" if probe.ok else probe.detail or "failed",
        f"a kernel with sch_{name} (CONFIG_NET_SCH_{name.upper()})",
    )


def _imports(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _engines() -> tuple[str | None, bool]:
    """Why the userspace backend's C engine cannot be built here (None: it can; it is
    built now, once, into its cache), and whether the slower Python engine can run."""
    from netem._userspace._build import BuildError, build_engine

    try:
        build_engine()
    except BuildError as e:
        c_problem: str | None = str(e)
    else:
        c_problem = None
    return c_problem, _imports("netfilterqueue")


def _chosen_backend() -> str:
    """The backend local:netns runs are told to use ("auto" when the variable is bad: its
    own row says what is wrong with it)."""
    from harness.runners._netns import netns_backend

    try:
        return netns_backend()
    except UsageError:
        return "auto"


def _backends(
    netem_ok: bool | None,
    nfqueue_ok: bool | None,
    c_problem: str | None,
    python_engine: bool | None,
    nfqueue_why: str = "",
) -> list[Check]:
    from harness.runners._netns import BACKEND_ENV

    chosen = _chosen_backend()  # one named there is the one runs use: it must work
    kernel = Check(
        "backend kernel",
        netem_ok,
        "sch_netem works" if netem_ok else "sch_netem is not in this kernel",
        "" if netem_ok is not False
        else f"{BACKEND_ENV}=kernel asks for it: unset it to shape in userspace"
        if chosen == "kernel" else "the userspace backend is used instead",
        required=chosen == "kernel",
    )
    if nfqueue_ok is None:
        user_ok = None
        detail = ""
    elif not nfqueue_ok:
        user_ok = False
        detail = "the iptables NFQUEUE target does not work" + (
            f": {nfqueue_why}" if nfqueue_why else "")
    elif c_problem is None:
        user_ok, detail = True, "NFQUEUE works, C engine built"
    elif python_engine:
        user_ok = True
        detail = f"NFQUEUE works; only the slower Python engine ({c_problem})"
    else:
        user_ok, detail = False, f"no engine: {c_problem}; no Python NetfilterQueue either"
    # What mends it: no package mends a kernel without the NFQUEUE target.
    fix: str = "apt-get install gcc libnetfilter-queue-dev (the C engine)"
    package: str | None = "gcc libnetfilter-queue-dev"
    if nfqueue_ok is False:
        fix, package = (("apt-get install iptables", "iptables") if "not found" in nfqueue_why
                        else ("the kernel needs the NFQUEUE target: modprobe nfnetlink_queue "
                              "xt_NFQUEUE", None))
    user = Check("backend userspace", user_ok, detail, fix, package,
                 required=chosen == "userspace")
    return [kernel, user]
