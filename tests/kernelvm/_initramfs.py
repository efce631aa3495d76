"""Build the VM's initramfs: busybox, the kernel modules and an `/init` script."""

from __future__ import annotations

import dataclasses
import lzma
import shutil
import stat
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

DEFAULT_MODULES: tuple[str, ...] = (
    # transport for the 9p shares
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    # what the kernel shaping backend and the test namespaces use
    "sch_netem",
    "sch_htb",
    "sch_tbf",
    "cls_u32",
    "veth",
    "bridge",
    "br_netfilter",
    "dummy",
    # what the userspace backend's NFQUEUE rules need (iptables-nft and legacy)
    "nfnetlink_queue",
    "xt_NFQUEUE",
    "iptable_filter",
    "nft_compat",
    "nft_queue",
    "nft_chain_nat",
    "xt_iprange",
)
"""Modules loaded at boot, with their dependencies resolved by modprobe."""


_CPU_SPECIFIC = frozenset(
    {"crc32c-intel", "crc32-pclmul", "crct10dif-pclmul", "ghash-clmulni-intel", "aesni-intel"}
)
"""Accelerated variants the emulated CPU lacks (insmod fails); the generic ones serve."""


class InitramfsError(RuntimeError):
    """The initramfs cannot be built (a missing module, busybox or kernel)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Module:
    """One kernel module file to load, with the arguments modprobe would give it."""

    path: Path
    args: str = ""

    @property
    def name(self) -> str:
        """The file name without the compression suffix, e.g. `sch_netem.ko`."""
        name = self.path.name
        for suffix in (".xz", ".zst", ".gz"):
            name = name.removesuffix(suffix)
        return name


def resolve_modules(kver: str, names: Iterable[str]) -> list[Module]:
    """The module files for `names` and their dependencies, in load order, each once.

    Built-in modules are skipped. Uses `modprobe -S <kver> --show-depends`.
    """
    seen: set[Path] = set()
    out: list[Module] = []
    for name in names:
        proc = subprocess.run(
            ["modprobe", "-S", kver, "--show-depends", name],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise InitramfsError(
                f"module {name!r} not found for kernel {kver}: {proc.stderr.strip()}"
            )
        for line in proc.stdout.splitlines():
            parts = line.split(maxsplit=2)
            if not parts or parts[0] != "insmod":
                continue  # "builtin <name>"
            path = Path(parts[1])
            if path in seen or Module(path).name.removesuffix(".ko") in _CPU_SPECIFIC:
                continue
            seen.add(path)
            out.append(Module(path, parts[2].strip() if len(parts) > 2 else ""))
    return out


def _module_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".zst":
        return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    return data


BOOTED = "kernelvm: booted, running the command"
"""What init prints on the console once the VM is up, just before it runs the command."""

_INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r mod args; do
    insmod "/modules/$mod" $args || echo "kernelvm: insmod $mod failed" >&2
done < /modules/order
mkdir -p /host
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro,cache=loose host /host || poweroff -f
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
# cgroup v2 only, as on a modern systemd machine: the unified hierarchy on /sys/fs/cgroup, the
# controllers the kernel offers given to the root's children, the command in a leaf of its own
cg=/host/sys/fs/cgroup
if mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 $cg; then
    for c in cpu io memory pids; do
        grep -qw $c $cg/cgroup.controllers && echo "+$c" > $cg/cgroup.subtree_control
    done
    mkdir $cg/kernelvm.scope && echo $$ > $cg/kernelvm.scope/cgroup.procs
else
    echo "kernelvm: cannot mount cgroup2" >&2
fi
mount -o bind /dev /host/dev
mount -t devpts devpts /host/dev/pts 2>/dev/null
mount -t tmpfs tmpfs /host/dev/shm 2>/dev/null
mount -t tmpfs tmpfs /host/run
mount -t tmpfs tmpfs /host/tmp
mkdir -p /host/tmp/kernelvm
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out /host/tmp/kernelvm || poweroff -f
work=$(cat /host/tmp/kernelvm/workdir)
mkdir -p "/host$work" 2>/dev/null
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro,cache=loose work "/host$work" \
    || echo "kernelvm: cannot mount the working directory $work" >&2
echo "kernelvm: booted, running the command"
chroot /host /bin/sh /tmp/kernelvm/run.sh
sync
umount /host/tmp/kernelvm
poweroff -f
"""


def _cpio_entry(
    name: str, mode: int, data: bytes = b"", ino: int = 0, rdev: tuple[int, int] = (0, 0)
) -> bytes:
    name_b = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, *rdev, len(name_b), 0)
    header = b"070701" + b"".join(f"{f:08x}".encode() for f in fields)
    out = bytearray(header + name_b)
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(out) % 4)
    return bytes(out)


def build_initramfs(
    dest: Path,
    *,
    kver: str,
    modules: Sequence[str] = DEFAULT_MODULES,
    busybox: str | None = None,
) -> Path:
    """Write an uncompressed newc cpio initramfs to `dest` and return it."""
    bb = busybox or shutil.which("busybox")
    if bb is None:
        raise InitramfsError("busybox not found (apt-get install busybox-static)")
    bb_path = Path(bb)
    mods = resolve_modules(kver, modules)
    entries: list[bytes] = []
    ino = 1

    def add(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        nonlocal ino
        entries.append(_cpio_entry(name, mode, data, ino, rdev))
        ino += 1

    for d in ("bin", "dev", "proc", "sys", "modules", "host"):
        add(d, stat.S_IFDIR | 0o755)
    # the kernel opens /dev/console for /init before devtmpfs is mounted
    add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    add("bin/busybox", stat.S_IFREG | 0o755, bb_path.read_bytes())
    add("bin/sh", stat.S_IFLNK | 0o777, b"busybox")
    add("init", stat.S_IFREG | 0o755, _INIT.encode())
    order = []
    for mod in mods:
        add(f"modules/{mod.name}", stat.S_IFREG | 0o644, _module_bytes(mod.path))
        order.append(f"{mod.name} {mod.args}".rstrip())
    add("modules/order", stat.S_IFREG | 0o644, ("\n".join(order) + "\n").encode())
    entries.append(_cpio_entry("TRAILER!!!", 0))
    blob = b"".join(entries)
    blob += b"\0" * (-len(blob) % 512)
    dest.write_bytes(blob)
    return dest
