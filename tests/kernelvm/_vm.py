"""Boot the VM, run one command in a chroot of this machine's root, bring the result back."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness._linux import die_with_parent
from tests.kernelvm._initramfs import BOOTED, DEFAULT_MODULES, build_initramfs


class VmError(RuntimeError):
    """The VM could not run the command (no kernel, no qemu, a boot failure, a timeout)."""


@dataclasses.dataclass(frozen=True, slots=True)
class VmResult:
    """What came back from the VM."""

    returncode: int
    output: str  # the command's stdout and stderr, interleaved
    console: str  # the VM's serial console (kernel and init messages)
    seconds: float  # wall time from qemu start to power-off


def find_kernel() -> tuple[Path, str]:
    """The newest `/boot/vmlinuz-<kver>` whose modules include sch_netem."""
    for vmlinuz in sorted(Path("/boot").glob("vmlinuz-*"), reverse=True):
        kver = vmlinuz.name.removeprefix("vmlinuz-")
        sched = Path("/lib/modules", kver, "kernel/net/sched")
        if any(sched.glob("sch_netem.ko*")):
            return vmlinuz, kver
    raise VmError(
        "no /boot/vmlinuz-* with sch_netem among its modules (apt-get install linux-image-amd64)"
    )


def _kvm_usable() -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


CPU = "Nehalem"
"""The guest's CPU model: x86-64-v2 (SSE4.2, POPCNT), which wheels built for it assume
(numpy 2.4's code dies with SIGILL on qemu's default qemu64, which lacks them); `max` makes
qemu abort on the development machines."""


def _accel_args(accel: str) -> list[str]:
    if accel == "kvm" and not _kvm_usable():
        raise VmError("accel kvm asked for but /dev/kvm cannot be opened")
    if accel in ("kvm", "tcg"):
        return ["-accel", accel, "-cpu", CPU]
    raise VmError(f"accel must be kvm or tcg, not {accel!r}")


def _run_script(command: Sequence[str], cwd: Path, env: Mapping[str, str]) -> str:
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    return (
        "#!/bin/sh\n"
        f"{exports}"
        "ip link set lo up\n"
        f"cd {shlex.quote(str(cwd))} || exit 126\n"
        "{ "
        + shlex.join(command)
        + "; echo $? > /tmp/kernelvm/rc.tmp; } 2>&1 | tee /tmp/kernelvm/output.log\n"
        "mv /tmp/kernelvm/rc.tmp /tmp/kernelvm/rc\n"
    )


def run_in_vm(
    command: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    kernel: Path | None = None,
    kver: str | None = None,
    modules: Sequence[str] = DEFAULT_MODULES,
    memory_mb: int = 2048,
    smp: int = 2,
    accel: str = "tcg",
    timeout: float = 900.0,
    boot_timeout: float = 90.0,
    boot_attempts: int = 3,
    stream: bool = False,
) -> VmResult:
    """Run `command` (argv) as root in a VM booted from Debian's kernel and return its result.

    The VM sees this machine's root read-only, with tmpfs on /tmp and /run; `cwd` (default:
    the current directory) must exist on it. `accel` defaults to tcg: on the development
    machines /dev/kvm opens but a KVM guest hangs (or qemu aborts with `-cpu max`). With
    `stream`, the console (which carries the command's output too) is copied to stderr as it
    comes. `timeout` counts from qemu's start; a guest that has not started the command
    `boot_timeout` seconds after it is killed and booted again, `boot_attempts` times in all.
    """
    if not command:
        raise VmError("no command given")
    if boot_attempts < 1:
        raise VmError(f"boot_attempts must be at least 1, not {boot_attempts}")
    accel_args = _accel_args(accel)
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise VmError("qemu-system-x86_64 not found (apt-get install qemu-system-x86)")
    if kernel is None:
        kernel, found_kver = find_kernel()
        kver = kver or found_kver
    elif kver is None:
        kver = kernel.name.removeprefix("vmlinuz-")
    if not kernel.is_file():
        raise VmError(f"kernel {kernel} does not exist")
    workdir = Path(cwd or Path.cwd()).resolve()
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",  # so the console streams as it goes
        "KERNELVM": "1",
        **(env or {}),
    }
    with tempfile.TemporaryDirectory(prefix="kernelvm-") as tmp:
        tmpdir = Path(tmp)
        share = tmpdir / "share"
        share.mkdir()
        (share / "run.sh").write_text(_run_script(command, workdir, full_env))
        # The working directory is shared on its own: under /tmp or /run (a CI checkout may
        # be) the VM's tmpfs would hide it.
        (share / "workdir").write_text(str(workdir))
        initrd = build_initramfs(tmpdir / "initrd.cpio", kver=kver, modules=modules)
        argv = [
            qemu,
            *accel_args,
            "-m",
            str(memory_mb),
            "-smp",
            str(smp),
            "-nographic",
            "-no-reboot",
            "-nic",
            "none",
            "-kernel",
            str(kernel),
            "-initrd",
            str(initrd),
            "-append",
            "console=ttyS0 quiet panic=-1",
            "-virtfs",
            "local,path=/,mount_tag=host,security_model=passthrough,readonly=on,multidevs=remap",
            "-virtfs",
            f"local,path={share},mount_tag=out,security_model=passthrough",
            "-virtfs",
            f"local,path={workdir},mount_tag=work,security_model=passthrough,readonly=on,"
            "multidevs=remap",
        ]
        for attempt in range(1, boot_attempts + 1):
            boot = _boot(argv, timeout=timeout, boot_timeout=boot_timeout, stream=stream)
            if boot.verdict != "unbooted" or attempt == boot_attempts:
                break
            # A TCG guest very rarely hangs before init runs the command (seen once in many
            # CI runs): nothing of the command has run yet, so booting again is safe.
            print(
                f"kernelvm: the VM had not started the command {boot_timeout:.0f} s after "
                f"qemu started; booting again ({attempt + 1} of {boot_attempts}); console: "
                f"{_tail(boot.console)}",
                file=sys.stderr,
            )
        if boot.verdict == "unbooted":
            raise VmError(
                f"the VM did not start the command within {boot_timeout:.0f} s of qemu's "
                f"start, {boot_attempts} times; console: {_tail(boot.console)}"
            )
        if boot.verdict == "timeout":
            raise VmError(
                f"the VM did not finish within {timeout:.0f} s; console: {_tail(boot.console)}"
            )
        rc_file = share / "rc"
        output_file = share / "output.log"
        output = output_file.read_text(errors="replace") if output_file.exists() else ""
        if not rc_file.exists():
            raise VmError(
                f"the VM ended without the command's exit code; console: {_tail(boot.console)}"
            )
        return VmResult(int(rc_file.read_text().strip() or 125), output, boot.console, boot.seconds)


@dataclasses.dataclass(frozen=True, slots=True)
class _Boot:
    """One qemu run: its console, how it ended, and how long it took."""

    console: str
    verdict: str  # "ended" (qemu exited), "unbooted" (killed before the command) or "timeout"
    seconds: float


def _tail(console: str) -> str:
    return " | ".join(console.strip().splitlines()[-5:]) or "(empty)"


def _kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL `proc`'s process group (its own session), so nothing keeps its console open."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _boot(argv: Sequence[str], *, timeout: float, boot_timeout: float, stream: bool) -> _Boot:
    """Run qemu (`argv`) to its end, killing it past `boot_timeout` unbooted or `timeout`."""
    start = time.monotonic()
    booted = threading.Event()
    ended = threading.Event()
    verdict: list[str] = []
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
        preexec_fn=die_with_parent,  # even if this process is SIGKILLed
    )

    def watch() -> None:
        if not booted.wait(boot_timeout) and not ended.is_set():
            verdict.append("unbooted")
        elif not ended.wait(max(0.0, timeout - (time.monotonic() - start))):
            verdict.append("timeout")
        else:
            return
        _kill(proc)

    watchdog = threading.Thread(target=watch, name="kernelvm-watchdog", daemon=True)
    watchdog.start()
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if BOOTED in line:
                booted.set()
            if stream:
                sys.stderr.write(line)
                sys.stderr.flush()
        proc.wait()
    finally:
        ended.set()
        booted.set()  # wakes the watchdog now
        if proc.poll() is None:
            _kill(proc)
            proc.wait()
        watchdog.join()
    return _Boot("".join(lines), verdict[0] if verdict else "ended", time.monotonic() - start)
