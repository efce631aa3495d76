"""Run a command inside a small VM booted from Debian's kernel, which has sch_netem.

The development machines' kernel lacks sch_netem, so the kernel (tc netem) backend cannot be
exercised live on them. This package boots `/boot/vmlinuz-<kver>` in qemu with a busybox
initramfs that loads the needed modules, mounts this machine's root read-only over 9p and
cgroup v2 alone on /sys/fs/cgroup (as a modern systemd machine has it), chroots into it and
runs one command; its output and exit code come back over a second, writable 9p share.

    python -m tests.kernelvm -- python -m pytest -m live tests/netem/test_shaping_live.py
"""

from tests.kernelvm._initramfs import DEFAULT_MODULES, build_initramfs, resolve_modules
from tests.kernelvm._vm import VmError, VmResult, run_in_vm

__all__ = [
    "DEFAULT_MODULES",
    "VmError",
    "VmResult",
    "build_initramfs",
    "resolve_modules",
    "run_in_vm",
]
