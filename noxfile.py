"""nox sessions: the one way to run tests, checks, scenarios and benchmarks.

    nox -s tests       unit, property and live tests (root: installs what they need)
    nox -s scenario    the main job: spacemesh:start on its defaults
    nox -s systest     the go-spacemesh system-test scenarios at 30 nodes
    nox -s lint typecheck e2e long faults bench kernel proto k8s
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"

# Debian packages: what the harness runs with, what the tests measure against or with.
RUNTIME_DEBS = [
    "iproute2", "iptables", "nftables", "procps", "util-linux", "kmod",
    "libnetfilter-queue-dev", "gcc", "libc6-dev",
    "faketime", "libfaketime",  # clock faults on non-Python programs (harness/_clock.py)
]
TEST_DEBS = [
    "iputils-ping", "iperf3", "chromium", "redis-server", "nats-server",
    "python3-venv",  # the rootless test builds a venv that an unprivileged user can read
]
KERNEL_DEBS = ["qemu-system-x86", "linux-image-amd64", "busybox-static", "xz-utils", "cpio"]


def _installed(package: str) -> bool:
    query = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                           capture_output=True, text=True, check=False)
    return "install ok installed" in query.stdout


def _debs(session: nox.Session, packages: list[str]) -> None:
    """apt-get install what is missing (as root); elsewhere say what to install."""
    missing = [p for p in packages if not _installed(p)]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        session.warn(f"missing Debian packages (install them as root): {' '.join(missing)}")
        return
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    # run_install: installing, so `--install-only` runs it too (packages' builds need it)
    session.run_install("apt-get", "update", "-qq", external=True, env=env)
    session.run_install("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing,
                        external=True, env=env)


def _installing_only(session: nox.Session) -> bool:
    """Whether nox runs with `--install-only` (its `session.run` then runs nothing)."""
    return session.run("true", external=True, silent=True) is None


def _install(session: nox.Session, *extras: str) -> None:
    _debs(session, RUNTIME_DEBS)
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)


VM_PYTEST = ["python", "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs",
             "-o", "faulthandler_timeout=200"]
"""pytest in the VM. A test still running after 200 s has every thread's stack written to
the console as it runs (a C-level watchdog): the cgroup-v2 suite once printed nothing more
after its 8th test until the VM's 900 s guard, and pytest-timeout (300 s) never reported:
its SIGALRM acts only once the main thread is back in Python (or the guest itself had
stalled; not known)."""
KERNEL_TESTS = [
    *VM_PYTEST,
    "tests/netem/test_shaping_live.py", "tests/netem/test_kernel_backend.py",
    "tests/netem/test_kernel_probe.py", "tests/netem/test_tc_netlink.py",
    "tests/netem/test_partition_live.py", "-k", "kernel or tc_netlink",
]
CGROUP_V2_TESTS = [
    # The VM mounts only cgroup2 (as most users' machines): per-instance cgroups and the
    # faults that go through them, on v2. Only these: the VM runs Python slowly.
    *VM_PYTEST, "tests/test_cgroup.py",
    "tests/test_faults_live.py::test_a_paused_instance_makes_no_progress_until_resumed",
    "tests/test_faults_live.py::test_a_memory_limit_kills_an_instance_that_eats_past_it",
    "tests/test_faults_live.py::test_a_cpu_limit_caps_the_share_and_a_hog_takes_from_it",
    "tests/test_faults_live.py::test_kill_and_restart_reach_what_the_instance_started_outside_"
    "its_process_group[local:exec]",
]


TEST_WORKERS = ["-n", "2"]
"""pytest-xdist workers for the host's tests. Most of their time is waiting on real time
(run phases, layers, timeouts): one process took 18.6 minutes, two 10.1 (same tests, same
machine). The tests marked `alone` (whole runs that load both cores, tests that measure
time) run after them, one at a time."""


def _host_tests(session: nox.Session) -> None:
    """The host's tests: the others on TEST_WORKERS, then the `alone` ones."""
    base = ["pytest", "-p", "no:cacheprovider", "-q"]
    session.run(*base, "-m", "not long and not alone", *TEST_WORKERS, "tests")
    session.run(*base, "-m", "alone and not long", "tests")


@nox.session
def tests(session: nox.Session) -> None:
    """All tests: unit, property-based, end to end and live (namespaces, shaping); beside
    them (`_VmSuites`) the kernel backend's live tests in a VM whose kernel has sch_netem
    (this one may not) and the cgroup tests in a VM that has cgroup v2 only (this machine
    may have v1); then the small version of `k8s`: pingpong's rendered pods under
    `podman kube play`, shaped."""
    _debs(session, TEST_DEBS + KERNEL_DEBS + K8S_DEBS)
    _install(session, "test", "userspace")
    if session.posargs:
        session.run("pytest", "-p", "no:cacheprovider", *session.posargs)
        return
    if _installing_only(session):
        return  # the VM suites start their own processes, which --install-only must not
    if os.geteuid() != 0:
        session.warn("kernel VM tests skipped: booting the VM's shares needs root")
        _host_tests(session)
        return
    with _VmSuites(session, [KERNEL_TESTS, CGROUP_V2_TESTS]) as vms:
        _host_tests(session)
        vms.finish()
    session.run("python", "-m", "tests.k8s.kubeplay", "pingpong")


class _VmSuites:
    """Test suites in the kernel VM, one after the other, in the background at the lowest
    CPU priority while the host's own tests run. Those mostly wait on real time (an
    end-to-end test of 75 s used 24 s of CPU), and the VM (emulated: a KVM guest hangs on
    the machines this was written on) takes what CPU they leave; one after the other they
    took 8 of CI's 27 minutes. `finish` waits for them, prints what they printed and fails
    the session if one failed; leaving the block before that stops them."""

    def __init__(self, session: nox.Session, suites: list[list[str]]) -> None:
        self._session = session
        self._suites = suites
        self._log = Path(tempfile.mkdtemp(prefix="vm-suites-")) / "output.log"
        self._current: subprocess.Popen[bytes] | None = None
        self._failed: list[str] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._env = {**os.environ, "PATH": f"{session.bin}{os.pathsep}{os.environ['PATH']}"}

    def __enter__(self) -> _VmSuites:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping = True
        if self._current is not None and self._current.poll() is None:
            self._current.terminate()  # the VM runner stops qemu and removes its files
        self._thread.join()
        shutil.rmtree(self._log.parent, ignore_errors=True)

    def _run(self) -> None:
        with self._log.open("wb") as log:
            for suite in self._suites:
                if self._stopping:
                    return
                argv = ["nice", "-n", "19", "python", "-m", "tests.kernelvm", "--quiet", "--",
                        *suite]
                log.write(f"$ {' '.join(argv)}\n".encode())
                log.flush()
                self._current = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                 env=self._env, preexec_fn=_die_with_parent)
                if self._current.wait() != 0:
                    self._failed.append(" ".join(suite))

    def finish(self) -> None:
        """Wait for every suite; what they printed; the session fails if one failed."""
        self._session.log("waiting for the kernel VM suites (started with the host's tests)")
        self._thread.join()
        print(self._log.read_text(errors="replace"), flush=True)
        if self._failed:
            self._session.error(f"in the kernel VM: {'; '.join(self._failed)} failed")


def _die_with_parent() -> None:
    """In the child: SIGTERM when nox dies (the VM runner then stops qemu)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


@nox.session
def long(session: nox.Session) -> None:
    """The tests that take a minute or more each (`-m long`), which `tests` leaves out:
    whole clusters under fault schedules."""
    _debs(session, TEST_DEBS)
    _install(session, "test", "userspace")
    session.run("pytest", "-p", "no:cacheprovider", "-q", "-m", "long", *session.posargs,
                "tests")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on the code, its tests and benchmarks."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "harness", "netem", "scenarios", "tests", "benchmarks")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy (strict) on harness/ and netem/."""
    _install(session, "dev", "k8s")  # k8s: kr8s, which cluster:k8s imports
    session.run("mypy", "harness", "netem")


@nox.session
def scenario(session: nox.Session) -> None:
    """The main job: the Spacemesh network's start test on its embedded defaults."""
    _install(session, "userspace")
    session.run("python", "-m", "harness", "run", *(session.posargs or ["spacemesh:start"]))


# The go-spacemesh system-test scenarios (scenarios/spacemesh, docs/spacemesh.md).
SYSTEST_CASES = ("smeshing", "add_nodes", "failed_nodes", "partition_30_70", "partition_50_50",
                 "poets_failures", "different_poets", "short_timeskew", "equivocation",
                 "checkpoint")  # fmt: skip
# Those CI runs at the manifest's small default size (no composition, so no fault: their
# checks, not the fault's outcome); the faulty ones run in `systest`.
SYSTEST_FAST = ("spacemesh:add_nodes", "spacemesh:different_poets")


@nox.session
def systest(session: nox.Session) -> None:
    """Every go-spacemesh system-test scenario at 30 nodes, each from its composition (its
    faults declared there): `nox -s systest -- failed_nodes equivocation` runs some."""
    _install(session, "userspace")
    for case in session.posargs or SYSTEST_CASES:
        session.run("python", "-m", "harness", "run", "--composition",
                    f"scenarios/spacemesh/compositions/{case}.toml", "-q")


@nox.session
def e2e(session: nox.Session) -> None:
    """Every example scenario end to end, each on its defaults, then the example
    compositions that play faults on them."""
    _debs(session, ["nats-server"])
    _install(session, "userspace", "nats")
    for target in ("pingpong", "spacemesh:start", "spacemesh:faults", "nats", *SYSTEST_FAST):
        session.run("python", "-m", "harness", "run", target, "-q")
    for composition in ("scenarios/spacemesh/compositions/process-faults.toml",
                        "scenarios/nats/compositions/leader-faults.toml"):
        session.run("python", "-m", "harness", "run", "--composition", composition, "-q")


@nox.session
def faults(session: nox.Session) -> None:
    """Property-based fault injection: search fault schedules on the simulated Spacemesh
    network; fails, printing the shrunk schedule and its replay command, if one breaks it."""
    _install(session)
    # Faults the network is expected to survive: any, on any instance, every one undone
    # (docs/spacemesh.md says what it does not survive).
    args = session.posargs or ["--examples", "50"]
    session.run("python", "-m", "scenarios.spacemesh.faults", *args)


K8S_DEBS = ["podman", "runc", "catatonit", "debootstrap", "iputils-ping"]


@nox.session
def k8s(session: nox.Session) -> None:
    """cluster:k8s: every rendered manifest validated strictly against the Kubernetes
    schema, the pods' shaping layout and live shaping, the API path on the API's documented
    objects (its live test runs when KUBECONFIG names a cluster); then, as root, the rendered
    pods run for real under `podman kube play` in an image built without any registry
    (debootstrap + podman import, cached in /var/tmp/harness-k8s): pingpong with 40 ms on
    every link (round trips must be 80 ms and more), a partition, a kill, a restart and a
    pause played through the pods (faulty:talk), a small Spacemesh network (spacemesh:start,
    4 instances), a run past its timeout, one whose pod never starts, and one interrupted.
    About four minutes with the image cached; the first build adds two to three."""
    _debs(session, K8S_DEBS)
    _install(session, "test", "k8s", "userspace")
    session.run("pytest", "-p", "no:cacheprovider", "-q", "-rs", *(session.posargs or
                                                                   ["tests/k8s"]))
    if session.posargs:
        return
    if os.geteuid() != 0:
        session.warn("the podman kube play run skipped: it needs root")
        return
    session.run("python", "-m", "tests.k8s.kubeplay", "pingpong", "faults", "spacemesh:start",
                "timeout", "unstartable", "interrupt")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks; each prints its figures (and a peer's from the same run where named) and
    writes them to outputs/bench/; then one report of them all (outputs/bench-report.md and
    .json, against the previous report) whose table goes into the README."""
    _debs(session, ["mininet", "bridge-utils", "iputils-ping", "iperf3", "redis-server",
                    "chromium"])
    _install(session, "test", "userspace")
    started = time.time()
    scripts = session.posargs or sorted(
        f"benchmarks/{f}" for f in os.listdir("benchmarks") if f.startswith("bench_")
    )
    failed = []
    for script in scripts:
        session.run("python", "benchmarks/_quiet.py")  # the last one's tail is not measured
        try:
            session.run("python", script)
        except nox.command.CommandFailed:
            failed.append(script)  # the others still run; its last figures are kept, stale
    # Some benchmarks only: the others' figures stay in the table, marked as not measured.
    carry = ["--carry"] if session.posargs else []
    session.run("python", "benchmarks/report.py", "--since", str(started),
                "--readme", "README.md", *carry)
    if failed:
        session.error(f"failed: {', '.join(failed)}; the report marks their figures "
                      "not measured in this run")


@nox.session
def kernel(session: nox.Session) -> None:
    """Live shaping tests of the kernel (tc netem) backend, in a VM whose kernel has it, and
    the cgroup tests there on cgroup v2 (posargs: one command to run in the VM instead)."""
    _debs(session, KERNEL_DEBS)
    _install(session, "test", "userspace")
    for command in [session.posargs] if session.posargs else [KERNEL_TESTS, CGROUP_V2_TESTS]:
        session.run("python", "-m", "tests.kernelvm", "--", *command)


@nox.session
def proto(session: nox.Session) -> None:
    """Regenerate the Spacemesh gRPC code from its .proto (the generated files are committed)."""
    session.install("grpcio-tools>=1.62", "grpclib>=0.4.7")
    session.run("python", "scenarios/spacemesh/_proto/generate.py")
