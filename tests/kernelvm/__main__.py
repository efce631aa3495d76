"""`python -m tests.kernelvm [options] -- COMMAND...`: run COMMAND in the kernel VM.

Exits with COMMAND's exit code; 125 when the VM itself failed, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from tests.kernelvm._initramfs import InitramfsError
from tests.kernelvm._vm import VmError, run_in_vm


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the VM, print the command's output, return its code."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.kernelvm",
        description="Run a command as root in a qemu VM booted from Debian's kernel "
        "(which has sch_netem), over a read-only view of this machine's root.",
    )
    parser.add_argument("--kernel", type=Path, help="vmlinuz to boot (default: newest in /boot)")
    parser.add_argument("--memory", type=int, default=2048, help="MiB of RAM (default 2048)")
    parser.add_argument("--smp", type=int, default=2, help="virtual CPUs (default 2)")
    parser.add_argument("--accel", default="tcg", choices=("kvm", "tcg"), help="default tcg")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds (default 900)")
    parser.add_argument("--cwd", type=Path, help="directory to run in (default: the current one)")
    parser.add_argument(
        "--quiet", action="store_true", help="do not stream the console while it runs"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given; usage: python -m tests.kernelvm -- COMMAND...")
    # SIGTERM (a `timeout`, a CI runner) unwinds like Ctrl-C: qemu is stopped and the
    # VM's temporary directory removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        result = run_in_vm(
            command,
            cwd=args.cwd,
            kernel=args.kernel,
            memory_mb=args.memory,
            smp=args.smp,
            accel=args.accel,
            timeout=args.timeout,
            stream=not args.quiet,
        )
    except (VmError, InitramfsError) as exc:
        print(f"kernelvm: {exc}", file=sys.stderr)
        return 125
    if args.quiet:
        sys.stdout.write(result.output)
    print(
        f"kernelvm: command exited {result.returncode} after {result.seconds:.1f} s in the VM",
        file=sys.stderr,
    )
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
