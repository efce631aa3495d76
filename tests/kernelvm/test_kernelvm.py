"""The kernel VM bench: the initramfs it builds, and (slow) one real boot."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import alive
from tests.kernelvm import VmError, build_initramfs, resolve_modules, run_in_vm
from tests.kernelvm import _vm as vm
from tests.kernelvm._initramfs import BOOTED, InitramfsError
from tests.kernelvm._vm import _Boot, _boot, _run_script, find_kernel


def _kernel() -> tuple[Path, str]:
    try:
        return find_kernel()
    except VmError as exc:
        pytest.skip(str(exc))


def test_modules_come_with_their_dependencies_in_load_order() -> None:
    _, kver = _kernel()
    mods = [m.name for m in resolve_modules(kver, ["9p", "sch_netem", "9pnet_virtio"])]
    assert "sch_netem.ko" in mods and "9p.ko" in mods
    assert mods.index("9pnet.ko") < mods.index("9p.ko")
    assert mods.index("9pnet.ko") < mods.index("9pnet_virtio.ko")
    assert len(mods) == len(set(mods))  # 9pnet is needed twice but loaded once


def test_unknown_module_is_a_one_line_error() -> None:
    _, kver = _kernel()
    with pytest.raises(InitramfsError, match="no_such_module_xyz") as info:
        resolve_modules(kver, ["no_such_module_xyz"])
    assert "\n" not in str(info.value)


def test_initramfs_holds_init_busybox_and_modules(tmp_path: Path) -> None:
    _, kver = _kernel()
    if shutil.which("busybox") is None or shutil.which("cpio") is None:
        pytest.skip("busybox or cpio not installed")
    image = build_initramfs(tmp_path / "initrd", kver=kver, modules=["sch_netem", "veth"])
    listing = subprocess.run(
        ["cpio", "-itv"], input=image.read_bytes(), capture_output=True, check=True
    ).stdout.decode()
    names = {line.split()[-1] for line in listing.splitlines() if line.strip()}
    assert {"init", "bin/busybox", "modules/sch_netem.ko", "modules/veth.ko", "modules/order"} <= (
        names | {n.split(" -> ")[0] for n in names}
    )
    assert any(line.startswith("crw") and line.split()[-1] == "dev/console" for line in
               listing.splitlines())  # fmt: skip
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet"], input=image.read_bytes(), cwd=out, check=True)
    assert (out / "modules/order").read_text().split() == ["sch_netem.ko", "veth.ko"]
    init = (out / "init").read_text()
    assert "chroot /host /bin/sh /tmp/kernelvm/run.sh" in init and "poweroff -f" in init
    assert "mount -t cgroup2" in init and "kernelvm.scope/cgroup.procs" in init  # v2 only


def test_run_script_quotes_the_command_and_keeps_its_exit_code() -> None:
    script = _run_script(["sh", "-c", "echo 'a b'; exit 3"], Path("/work dir"), {"X": "1 2"})
    assert "export X='1 2'" in script
    assert "cd '/work dir'" in script
    assert "sh -c 'echo '\"'\"'a b'\"'\"'; exit 3'" in script
    assert "echo $? > /tmp/kernelvm/rc.tmp" in script


def test_bad_arguments_are_refused_before_booting() -> None:
    with pytest.raises(VmError, match="no command"):
        run_in_vm([])
    with pytest.raises(VmError, match="accel must be"):
        _kernel()
        run_in_vm(["true"], accel="warp")


@pytest.mark.slow
@pytest.mark.timeout(600)  # room for run_in_vm's own limits, which report the console
def test_boot_runs_the_command_and_brings_back_output_and_exit_code() -> None:
    _kernel()
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 not installed")
    result = run_in_vm(
        ["sh", "-c", "tc qdisc add dev lo root netem delay 1ms && echo netem-ok; exit 3"],
        timeout=300,
        boot_timeout=90,
        boot_attempts=3,
    )
    assert result.returncode == 3
    assert "netem-ok" in result.output
    assert BOOTED in result.console


def test_a_qemu_that_never_starts_the_command_is_killed_at_the_boot_timeout() -> None:
    boot = _boot(
        ["sh", "-c", "echo starting; sleep 30"], timeout=20, boot_timeout=0.5, stream=False
    )
    assert boot.verdict == "unbooted"
    assert boot.seconds < 10 and "starting" in boot.console


def test_a_booted_qemu_is_killed_at_the_timeout_and_one_that_ends_is_left_alone() -> None:
    booted = f"echo '{BOOTED}'"
    boot = _boot(["sh", "-c", f"{booted}; sleep 30"], timeout=1.5, boot_timeout=0.5, stream=False)
    assert boot.verdict == "timeout"
    assert 1.4 < boot.seconds < 10
    boot = _boot(
        ["sh", "-c", f"sleep 1; {booted}; echo done"], timeout=20, boot_timeout=0.5, stream=False
    )
    assert boot.verdict == "unbooted"  # the mark came too late
    boot = _boot(["sh", "-c", f"{booted}; echo done"], timeout=20, boot_timeout=5, stream=False)
    assert (boot.verdict, boot.console.split("\n")[1]) == ("ended", "done")


def test_an_unbooted_vm_is_booted_again_and_the_last_try_counts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _kernel()
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 not installed")
    tries: list[float] = []

    def fake_boot(argv: list[str], *, timeout: float, boot_timeout: float, stream: bool) -> _Boot:
        tries.append(boot_timeout)
        if len(tries) < 3:
            return _Boot("kernel panic? | hung", "unbooted", boot_timeout)
        share = next(a for a in argv if "mount_tag=out" in a).split(",")[1].removeprefix("path=")
        (Path(share) / "rc").write_text("7\n")
        return _Boot(BOOTED + "\n", "ended", 1.0)

    monkeypatch.setattr(vm, "_boot", fake_boot)
    assert run_in_vm(["true"], boot_timeout=3, boot_attempts=3).returncode == 7
    assert tries == [3, 3, 3]
    err = capsys.readouterr().err
    assert "booting again (2 of 3)" in err and "booting again (3 of 3)" in err
    tries.clear()
    with pytest.raises(
        VmError, match="did not start the command within 3 s of qemu's start, 2 times"
    ):
        run_in_vm(["true"], boot_timeout=3, boot_attempts=2)
    with pytest.raises(VmError, match="boot_attempts must be at least 1"):
        run_in_vm(["true"], boot_attempts=0)


def _qemu_children(pid: int) -> list[int]:
    """The qemu processes among `pid`'s children (not, say, the initramfs builder's tools)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    found = []
    for child in text.split():
        try:
            if Path(f"/proc/{child}/comm").read_text().startswith("qemu"):
                found.append(int(child))
        except OSError:
            continue
    return found


def test_sigterm_stops_qemu_and_removes_the_vms_files(tmp_path: Path) -> None:
    """`timeout` (or a CI runner) sends SIGTERM: no qemu may be left running, nor its files."""
    _kernel()
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    import os
    import signal
    import sys
    import time

    env = {**os.environ, "TMPDIR": str(tmp_path)}
    vm = subprocess.Popen(
        [sys.executable, "-m", "tests.kernelvm", "--quiet", "--", "sleep", "60"],
        cwd=Path(__file__).resolve().parents[2], env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (qemu := _qemu_children(vm.pid)):  # the initramfs is built, qemu started
        assert vm.poll() is None and time.monotonic() < deadline, "qemu never started"
        time.sleep(0.1)
    vm.send_signal(signal.SIGTERM)
    assert vm.wait(timeout=20) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 10
    while alive(qemu[0]):
        assert time.monotonic() < deadline, "qemu outlived the runner"
        time.sleep(0.1)
    assert list(tmp_path.iterdir()) == []  # the VM's temporary directory is gone
