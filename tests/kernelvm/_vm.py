"""Boot the VM, run one command in a chroot of this machine's root, bring the result back."""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness._linux import die_with_parent
from tests.kernelvm._initramfs import DEFAULT_MODULES, build_initramfs


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
    stream: bool = False,
) -> VmResult:
    """Run `command` (argv) as root in a VM booted from Debian's kernel and return its result.

    The VM sees this machine's root read-only, with tmpfs on /tmp and /run; `cwd` (default:
    the current directory) must exist on it. `accel` defaults to tcg: on the development
    machines /dev/kvm opens but a KVM guest hangs (or qemu aborts with `-cpu max`). With `stream`, the console (which carries the
    command's output too) is copied to stderr as it comes.
    """
    if not command:
        raise VmError("no command given")
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
        start = time.monotonic()
        console_lines: list[str] = []
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
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                console_lines.append(line)
                if stream:
                    sys.stderr.write(line)
                    sys.stderr.flush()
            proc.wait()
        finally:
            timed_out = not timer.is_alive() and proc.returncode != 0
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if timed_out:
            raise VmError(f"the VM did not finish within {timeout:.0f} s")
        seconds = time.monotonic() - start
        console = "".join(console_lines)
        rc_file = share / "rc"
        output_file = share / "output.log"
        output = output_file.read_text(errors="replace") if output_file.exists() else ""
        if not rc_file.exists():
            tail = " | ".join(console.strip().splitlines()[-5:])
            raise VmError(f"the VM ended without the command's exit code; console: {tail}")
        return VmResult(int(rc_file.read_text().strip() or 125), output, console, seconds)
