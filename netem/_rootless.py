"""Running netem without root: inside a user + network + mount namespace.

As a normal user, `unshare --user --map-root-user --net --mount` gives a process root's
powers over namespaces it creates. A tmpfs on /run makes /run/netns, /run/netem and the
xtables lock private to it, and the process's own network namespace (where the caller's
program then runs) is a fresh one: the user's real network is out of reach.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from typing import NoReturn

from netem._errors import NetworkError

MARKER = "NETEM_IN_USERNS"
"""Set in the environment of a process re-executed into its own user namespace."""

_INNER = 'mount -t tmpfs -o mode=0755 netem-run /run && ip link set lo up && exec "$@"'


def rootless_problem() -> str | None:
    """Why this machine cannot give a normal user a user namespace, or None if it can."""
    if shutil.which("unshare") is None:
        return "unshare not found (Debian: apt-get install util-linux)"
    if shutil.which("ip") is None:
        return "ip not found (Debian: apt-get install iproute2)"
    for knob, bad in (
        ("/proc/sys/kernel/unprivileged_userns_clone", "0"),
        ("/proc/sys/user/max_user_namespaces", "0"),
    ):
        try:
            with open(knob) as f:
                value = f.read().strip()
        except OSError:
            continue
        if value == bad:
            sysctl = knob.removeprefix("/proc/sys/").replace("/", ".")
            return f"user namespaces are disabled ({knob} is {bad}; as root: sysctl -w {sysctl}=1)"
    try:
        with open("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") as f:
            if f.read().strip() == "1":
                return (
                    "AppArmor restricts unprivileged user namespaces "
                    "(kernel.apparmor_restrict_unprivileged_userns=1)"
                )
    except OSError:
        pass
    return None


def needs_userns() -> bool:
    """True when this process lacks root and has not been re-executed already."""
    return os.geteuid() != 0 and MARKER not in os.environ


def userns_command(argv: Sequence[str]) -> list[str]:
    """The command line that runs `argv` inside a fresh user + network + mount namespace."""
    unshare = shutil.which("unshare") or "unshare"
    return [
        unshare,
        "--user",
        "--map-root-user",
        "--net",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        _INNER,
        "netem-userns",
        *argv,
    ]


def reexec_in_userns(argv: Sequence[str] | None = None) -> NoReturn:
    """Replace this process with `argv` (default: this Python program as it was started)
    run inside its own user + network + mount namespace, as root there. Raises
    `NetworkError` naming what is missing when the machine does not allow it."""
    if MARKER in os.environ:
        raise NetworkError(
            "already re-executed into a user namespace, yet not root there; "
            "user namespaces do not work here"
        )
    problem = rootless_problem()
    if problem is not None:
        raise NetworkError(f"cannot run without root: {problem}")
    if argv is None:  # as it was started: `python -m harness` ran harness/__main__.py as a
        argv = [sys.executable, *sys.orig_argv[1:]]  # script, without the checkout on its path
    env = dict(os.environ)
    env[MARKER] = "1"
    command = userns_command(argv)
    os.execve(command[0], command, env)
