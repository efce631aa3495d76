"""Bad manifests, compositions, entrypoints and outputs: a one-line error and exit 2 (3 for a
full disk) before anything starts, never a traceback, never a value silently bent."""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness._errors import UsageError
from harness._outputs import disk_full_in
from harness.plans import build_run_spec
from harness.plans._entrypoint import entrypoint_problem

from .conftest import ROOT, TINY_MANIFEST, TINY_PLAN, only_run_dir


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "run", "-q", "--metrics-listen", "off", *args],
        capture_output=True, text=True, timeout=120, cwd=cwd,
    )


def assert_one_line(r: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), r.stderr
    return lines[0]


GROUP = '[[groups]]\nid = "a"\ninstances = { count = 2 }\n'
BAD_COMPOSITIONS = [
    # 4: tracebacks before
    (b"\xff\xfe\x00\x01binary", r"not UTF-8 text \(byte 0xff at offset 0\)"),
    (b'plan = "\xe9t\xe9"', "not UTF-8 text"),
    (b"[global]\nparams = 5\n", r"\[global.params\]: expected a table, not 5"),
    (GROUP.encode() + b"params = 5\n", "group 'a' params: expected a table, not 5"),
    (b'[global]\ntotal_instances = 4\n[[groups]]\nid = "a"\ninstances = { percentage = "abc" }',
     "instances.percentage must be a finite number, not 'abc'"),
    (b'[global]\ntotal_instances = "ten"\n', "total_instances must be a whole number, not 'ten'"),
    (b'[global]\ntotal_instances = "10"\n', "total_instances must be a whole number, not '10'"),
    (b"groups = 5\n", "groups must be \\[\\[groups\\]\\] tables"),
    # 5: silently accepted before
    (b'[[groups]]\nid = ".."\ninstances = { count = 2 }', "group id '..' is not a safe name"),
    (b'[[groups]]\nid = "."\ninstances = { count = 2 }', "group id '.' is not a safe name"),
    (b'[[groups]]\nid = ".x"\ninstances = { count = 2 }', "group id '.x' is not a safe name"),
    (b'[[groups]]\nid = "a b"\ninstances = { count = 2 }', "group id 'a b' is not a safe name"),
    # it took the report's place: "could not write the report: Is a directory", exit 0
    (b'[[groups]]\nid = "report.html"\ninstances = { count = 2 }',
     "group id 'report.html' is the name of a file of the run's own directory"),
    (b'[[groups]]\nid = "run.json.tmp"\ninstances = { count = 2 }',
     "group id 'run.json.tmp' is the name of a file of the run's own directory"),
    (b"[global]\ntimeout = true\n", "timeout must be a finite number, not True"),
    (b"[global]\ntotal_instances = 3.7\n", "total_instances must be a whole number, not 3.7"),
    (b"[global]\ntotal_instances = true\n", "total_instances must be a whole number, not True"),
    (b'[global]\ntotal_instances = 10\n[[groups]]\nid = "a"\n'
     b"instances = { count = 2, percentage = 90 }", "exactly one of count and percentage"),
    (b'[[groups]]\nid = "a"\ninstances = { count = 2.0 }', "count must be a whole number"),
    (b'[[groups]]\nid = "a"\ninstances = { count = true }', "count must be a whole number"),
    (b'[global]\ntotal_instances = 4\n[[groups]]\nid = "a"\ninstances = { percentage = true }',
     "percentage must be a finite number, not True"),
    (b'[global]\ntotal_instances = 4\n[[groups]]\nid = "a"\ninstances = { percentage = 150 }',
     "percentage must be above 0 and at most 100"),
    (b'[global]\nplan = 5\n', r"\[global\] plan must be text, not 5"),
]


@pytest.mark.parametrize(("body", "message"), BAD_COMPOSITIONS)
def test_bad_compositions_are_usage_errors(
    tiny: Path, tmp_path: Path, body: bytes, message: str
) -> None:
    comp = tmp_path / "c.toml"
    comp.write_bytes(body)
    with pytest.raises(UsageError, match=message):
        build_run_spec("tiny", composition=comp, plan_roots=[tiny])


@pytest.mark.parametrize("gid", ["old", "v1.2", "a_b-c", "9", "A..b"])
def test_safe_group_ids_are_accepted(tiny: Path, tmp_path: Path, gid: str) -> None:
    comp = tmp_path / "c.toml"
    comp.write_text(f'[[groups]]\nid = "{gid}"\ninstances = {{ count = 2 }}\n')
    spec = build_run_spec("tiny", composition=comp, plan_roots=[tiny])
    assert [i.id for i in spec.instances] == [f"{gid}/0", f"{gid}/1"]


CASE = '[[testcases]]\nname = "ok"\nentrypoint = "tiny.plan:ok"\n'
BAD_MANIFESTS = [
    (CASE + 'instances = { min = 1, max = 2 }\n[testcases.params]\n'
     'n = { type = "int", default = 1, min = "1" }', "param 'n' \\(int\\) min must be a whole"),
    (CASE + 'instances = { min = 1, max = 2 }\n[testcases.params]\n'
     'n = { type = "int", default = 3, min = 2.9, max = "4" }', "min must be a whole number"),
    (CASE + 'instances = { min = 1, max = 2 }\n[testcases.params]\n'
     'x = { type = "float", default = 3, max = "4" }', "max must be a finite number"),
    (CASE + 'instances = { min = 1, max = 2 }\n[testcases.params]\n'
     'x = { type = "float", default = 3, min = true }', "min must be a finite number, not True"),
    (CASE + 'instances = { min = 1, max = 2 }\n[testcases.params]\n'
     'x = { type = "int", default = 3, min = 5, max = 4 }', "min 5 above its max 4"),
    (CASE + 'instances = { min = 1, max = 2 }\n[testcases.params]\n'
     's = { type = "str", default = "a", min = 1 }', "only int, float and duration"),
    (CASE + "instances = { min = 1, max = 2 }\nparams = 5", "params: expected a table, not 5"),
    (CASE + 'instances = { min = 2.9, max = "4" }', "instances.min must be a whole number"),
    (CASE + "instances = { min = true, max = 4 }", "instances.min must be a whole number"),
    (CASE + 'instances = { min = 1, max = 2 }\n[[testcases.roles]]\nname = "r"\nrest = true\n'
     'min = "x"', "role 'r': min must be a whole number, not 'x'"),
    (CASE + 'instances = { min = 1, max = 2 }\n[[testcases.roles]]\nname = "r"\nrest = "no"',
     "rest must be true or false"),
    (CASE + 'instances = { min = 1, max = 2 }\n[[testcases.roles]]\nname = "r"\ncount = 1.5',
     "count must be a whole number"),
    (CASE + "instances = { min = 1, max = 2 }\nroles = 5", "roles must be a list"),
]


@pytest.mark.parametrize(("body", "message"), BAD_MANIFESTS)
def test_bad_manifests_are_usage_errors(
    make_plan: Callable[..., Path], body: str, message: str
) -> None:
    root = make_plan("tiny", f'name = "tiny"\n{body}\n', TINY_PLAN)
    with pytest.raises(UsageError, match=message):
        build_run_spec("tiny", plan_roots=[root])


def test_a_manifest_that_is_not_utf8(make_plan: Callable[..., Path]) -> None:
    root = make_plan("tiny", TINY_MANIFEST, TINY_PLAN)
    (root / "tiny" / "manifest.toml").write_bytes(b'name = "\xff"\n')
    with pytest.raises(UsageError, match=r"manifest .*: not UTF-8 text"):
        build_run_spec("tiny", plan_roots=[root])


def test_duration_bounds_may_be_durations(make_plan: Callable[..., Path]) -> None:
    body = (CASE + 'instances = { min = 1, max = 2 }\n[testcases.params]\n'
            'd = { type = "duration", default = "2s", min = "1s", max = 10 }')
    root = make_plan("tiny", f'name = "tiny"\n{body}\n', TINY_PLAN)
    assert build_run_spec("tiny", params={"d": "3s"}, plan_roots=[root]).groups[0].params == {
        "d": 3.0}
    with pytest.raises(UsageError, match=r"below its min 1s"):
        build_run_spec("tiny", params={"d": "500ms"}, plan_roots=[root])


def test_entrypoint_static_check(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise SystemExit('a package __init__ must not run')\n")
    (pkg / "good.py").write_text(
        "import os\nif os.sep:\n    async def main(env): pass\nelse:\n    main = None\n"
        "class K:\n    def method(self): pass\n"
        "def _later():\n    global made\n    made = 1\n"
    )
    (pkg / "star.py").write_text("from os.path import *\n")
    (pkg / "broken.py").write_text("def main(:\n")
    path = [str(tmp_path)]
    assert entrypoint_problem("pkg.good:main", path) is None
    assert entrypoint_problem("pkg.good:made", path) is None  # bound through `global`
    assert entrypoint_problem("pkg.star:anything", path) is None  # undecidable: accepted
    assert "defines no 'method'" in (entrypoint_problem("pkg.good:method", path) or "")
    assert "no module pkg.nope" in (entrypoint_problem("pkg.nope:main", path) or "")
    assert "no module pkg.good.x" in (entrypoint_problem("pkg.good.x:main", path) or "")
    assert "line 1" in (entrypoint_problem("pkg.broken:main", path) or "")
    assert "is not 'package.module:function'" in (entrypoint_problem("pkg.good:a.b", path) or "")


@pytest.mark.parametrize(
    ("composition", "manifest_edit", "message"),
    [
        (b"\x00\x01\x02binary\xff", None, "not UTF-8 text"),
        (b"[global]\nparams = 5\n", None, "expected a table, not 5"),
        (b'[global]\ntotal_instances = 4\n[[groups]]\nid = "a"\n'
         b'instances = { percentage = "abc" }', None, "percentage must be a finite number"),
        (b'[global]\ntotal_instances = "ten"\n', None, "total_instances must be a whole number"),
        (b'[[groups]]\nid = ".."\ninstances = { count = 2 }', None, "not a safe name"),
        (b"[global]\ntimeout = true\n", None, "timeout must be a finite number"),
        (None, ("min = 0,", 'min = "1",'), "min must be a whole number"),
        (None, ("tiny.plan:ok", "tiny.plan:nosuch"), "tiny.plan (") ,
        (None, ("tiny.plan:ok", "tiny.nosuch:ok"), "no module tiny.nosuch"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_and_starts_nothing(
    tiny: Path, tmp_path: Path, composition: bytes | None,
    manifest_edit: tuple[str, str] | None, message: str,
) -> None:
    args = ["tiny", "--plans", str(tiny), "--outputs", str(tmp_path / "out")]
    if composition is not None:
        (tmp_path / "c.toml").write_bytes(composition)
        args += ["--composition", str(tmp_path / "c.toml")]
    if manifest_edit is not None:
        manifest = tiny / "tiny" / "manifest.toml"
        manifest.write_text(manifest.read_text().replace(*manifest_edit))
    line = assert_one_line(run_cli(*args))
    assert message in line
    assert not (tmp_path / "out").exists()  # nothing was started or written


def test_cli_outputs_that_cannot_hold_a_run(tiny: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for outputs, reason in [
        (a_file, "it is not a directory"),
        (a_file / "sub", "Not a directory"),
        (Path("/proc/harness-outputs"), "No such file or directory"),
    ]:
        line = assert_one_line(run_cli("tiny", "--plans", str(tiny), "--outputs", str(outputs)))
        assert line.endswith(f"outputs {outputs} cannot hold a run: {reason}"), line


@pytest.fixture
def immutable_dir(tmp_path: Path) -> Path:
    path = tmp_path / "immutable"
    path.mkdir()
    if shutil.which("chattr") is None or subprocess.run(
        ["chattr", "+i", str(path)], capture_output=True, check=False
    ).returncode != 0:
        pytest.skip("chattr +i is not available on this file system")
    yield path
    subprocess.run(["chattr", "-i", str(path)], check=True)


def test_cli_immutable_outputs(tiny: Path, immutable_dir: Path) -> None:
    line = assert_one_line(run_cli("tiny", "--plans", str(tiny), "--outputs", str(immutable_dir)))
    assert line.endswith("cannot hold a run: Operation not permitted"), line


def in_private_tmpfs(tmp_path: Path, options: str, command: str) -> subprocess.CompletedProcess[str]:
    """Run `command` with a tmpfs (mount `options`) on tmp_path/mnt, in a private mount
    namespace: the host's mounts are untouched and the tmpfs goes with the namespace."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) not found")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = f"mount --make-rprivate / && mount -t tmpfs -o {options} tmpfs {mnt} && {command}"
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def harness_run_line(tiny: Path, outputs: Path) -> str:
    return (f"{sys.executable} -m harness run -q --metrics-listen off tiny --plans {tiny} "
            f"--outputs {outputs}")


@pytest.mark.skipif(sys.platform != "linux", reason="mount namespaces are Linux's")
def test_cli_read_only_outputs(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "mnt" / "out"
    r = in_private_tmpfs(tmp_path, "size=1m,ro", harness_run_line(tiny, out))
    line = assert_one_line(r)
    assert line.endswith("cannot hold a run: Read-only file system"), line


@pytest.mark.skipif(sys.platform != "linux", reason="mount namespaces are Linux's")
@pytest.mark.parametrize("size", ["4k", "16k"])
def test_cli_full_disk_is_one_line(tiny: Path, tmp_path: Path, size: str) -> None:
    """4k fills before the run starts, 16k while it runs (events, run.json)."""
    out = tmp_path / "mnt" / "out"
    r = in_private_tmpfs(tmp_path, f"size={size}", harness_run_line(tiny, out))
    line = assert_one_line(r, code=3)
    assert "cannot write the run's outputs in" in line and "No space left on device" in line


def test_a_full_disk_is_found_among_the_writers_it_failed_at_once() -> None:
    """A full disk fails every writer at once: the supervisor's nursery raises a group of
    ENOSPC errors (seen: the tick's flush and an instance's log), still exit 3."""
    full = OSError(errno.ENOSPC, "No space left on device")
    group = BaseExceptionGroup("nursery", [ValueError("other"),
                                           ExceptionGroup("inner", [full, OSError(errno.ENOSPC, "x")])])  # fmt: skip
    assert disk_full_in(group) is full
    assert disk_full_in(ExceptionGroup("g", [OSError(errno.EACCES, "no")])) is None


BIG = str(2**64)
DEEP = "[" * 100_000


@pytest.mark.parametrize(("extra", "files", "message"), [
    (["-p", f"big={BIG}"], {}, f"param 'big' (int): {BIG} does not fit in 64 bits"),
    ([], {"c.toml": f"[global]\nparams = {{ big = {BIG} }}\n"}, "does not fit in 64 bits"),
    ([], {"f.json": '{"faults": [{"action": "kill", "at": "1s", "targets": '
                    f'{{"group": "single", "count": 1, "seed": {BIG}}}}}]}}'},
     "seed must be a 64-bit whole number"),
    ([], {"f.json": DEEP}, "nested too deeply to read"),
    ([], {"f.toml": f"x = {DEEP}"}, "nested too deeply to read"),
    ([], {"c.toml": f"x = {DEEP}"}, "nested too deeply to read"),
    (["--timeout", "30"], {"f.json": '{"faults": [{"action": "kill", "at": "100s", '
                                     '"targets": {"group": "single", "count": 1}}]}'},
     "fault 0 in faults file {tmp}/f.json faults[0] (kill) is at 100s, not before the run's "
     "timeout (30s): it would never be played"),
    (["--timeout", "30"], {"c.toml": "[global]\ntimeout = true\n"},
     "timeout must be a finite number, not True"),  # was hidden by --timeout
    ([], {"c.toml": "[runner.k8s]\nbogus = 1\n"}, "[runner.k8s]: unknown key bogus"),
    ([], {"f.json": '{"faults": [{"action": ["kill"], "at": "1s"}]}'},
     "action must be one of"),  # was "unhashable type: 'list'"
])  # fmt: skip
def test_cli_bad_numbers_and_files_are_one_line_and_start_nothing(
    tiny: Path, tmp_path: Path, extra: list[str], files: dict[str, str], message: str
) -> None:
    """A whole number that a run's JSON records cannot carry was a traceback, and left a
    run directory without its run.json; deep nesting was a RecursionError; a fault after
    the timeout failed the run once it had run."""
    manifest = tiny / "tiny" / "manifest.toml"
    manifest.write_text(manifest.read_text().replace(
        "  n = {", '  big = { type = "int", default = 0 }\n  n = {'))
    args = ["tiny", "--plans", str(tiny), "--outputs", str(tmp_path / "out"), *extra]
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        args += ["--composition" if name.startswith("c.") else "--faults", str(tmp_path / name)]
    line = assert_one_line(run_cli(*args))
    assert message.replace("{tmp}", str(tmp_path)) in line, line
    assert not (tmp_path / "out").exists()  # nothing was started or written


def test_a_run_that_fails_while_it_sets_up_leaves_no_run_directory(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only an OSError: whatever stops the set-up before anything runs."""
    from harness import RunOptions, run
    from harness._supervisor import Supervisor

    write = Supervisor._write_run_json

    def broken(self: Supervisor, *, ended: bool, **how: Any) -> None:
        if not ended:  # the record of how the run ended is written as before
            raise TypeError("Integer exceeds 64-bit range")
        write(self, ended=ended, **how)

    monkeypatch.setattr(Supervisor, "_write_run_json", broken)
    spec = build_run_spec("tiny", plan_roots=[tiny])
    outputs = tmp_path / "out"
    with pytest.raises(TypeError, match="64-bit"):
        run(spec, RunOptions(outputs=outputs, progress=False, metrics_listen=None))
    assert [p.name for p in outputs.iterdir() if p.is_dir()] == []


@pytest.mark.parametrize(("how", "error", "message"), [
    ({"origin": 5}, TypeError, "RunOptions.origin must be a str or None, not 5"),
    ({"profile_cpu": -1}, ValueError, "RunOptions.profile_cpu must be a finite number of "
                                      "seconds > 0, not -1"),
    ({"grace_s": float("nan")}, ValueError, "RunOptions.grace_s must be"),
    ({"scrape_interval": 0}, ValueError, "RunOptions.scrape_interval must be"),
    ({"metrics_listen": "127.0.0.1:0"}, TypeError, "RunOptions.metrics_listen must be a (host, "
                                                   "port) tuple, a listening socket or None"),
    ({"sync_tcp": ("127.0.0.1", "80")}, TypeError, "RunOptions.sync_tcp must be"),
])
def test_run_options_a_run_could_not_use_are_refused_when_made(
    how: dict[str, Any], error: type[Exception], message: str
) -> None:
    """From Python they were taken: origin=5 wrote a run.json no reader takes, a negative
    profile interval failed every instance."""
    from harness import RunOptions

    with pytest.raises(error, match=re.escape(message)):
        RunOptions(**how)
    assert RunOptions(outputs="out").outputs == Path("out")  # type: ignore[arg-type]


@pytest.mark.parametrize(("where", "message"), [
    (("127.0.0.1", 99999), "RunOptions.metrics_listen '127.0.0.1:99999': port 99999 is past "
                           "65535"),
    (("127.0.0.1", -1), "RunOptions.metrics_listen '127.0.0.1:-1': expected"),
    (("nonexistent.invalid", 0), "RunOptions.metrics_listen nonexistent.invalid:0: "),
])
def test_a_listen_address_from_python_that_cannot_be_bound_is_one_line_before_the_run(
    tiny: Path, tmp_path: Path, where: tuple[str, int], message: str
) -> None:
    """Port 99999 listened on 34463 (the port modulo 65536); a name that does not resolve
    ended the run in a bare ExceptionGroup, its run directory left as "error"."""
    from harness import RunOptions, run

    spec = build_run_spec("tiny", plan_roots=[tiny])
    outputs = tmp_path / "out"
    with pytest.raises(UsageError) as caught:
        run(spec, RunOptions(outputs=outputs, progress=False, metrics_listen=where))
    assert str(caught.value).startswith(message), caught.value
    assert "\n" not in str(caught.value)
    assert not outputs.exists() or not any(p.is_dir() for p in outputs.iterdir())


# -- the command line's own input and environment: stdout, paths, Ctrl-C ----------------------


def cli(*args: str, cwd: Path = ROOT, stdout: Any = subprocess.PIPE,
        buffered: bool = False) -> subprocess.CompletedProcess[str]:
    """`python -m harness ARGS`, stdout where given; PYTHONUNBUFFERED set unless `buffered`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run([sys.executable, "-m", "harness", *args], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=120, cwd=cwd,
                          env=env if buffered else {**env, "PYTHONUNBUFFERED": "1"})


@pytest.fixture
def failing(tiny: Path) -> Path:
    """`tiny` with a case `fails` whose instances fail."""
    plan = tiny / "tiny"
    (plan / "manifest.toml").write_text((plan / "manifest.toml").read_text() + (
        '[[testcases]]\nname = "fails"\ninstances = { min = 1, max = 2, default = 1 }\n'
        'entrypoint = "tiny.plan:fails"\n'))
    (plan / "plan.py").write_text(TINY_PLAN + "async def fails(env):\n    raise SystemExit(3)\n")
    return tiny


@pytest.mark.parametrize("buffered", [False, True])
def test_a_run_exits_with_its_own_code_when_the_reader_of_stdout_is_gone(
    failing: Path, tmp_path: Path, buffered: bool
) -> None:
    """`harness run ... | true` exited 0 (unbuffered; buffered: 120) though the run failed;
    a listing such as `harness runs | head` still exits 0."""
    out = str(tmp_path / "out")
    read_end, gone = os.pipe()
    os.close(read_end)
    try:
        for args, code in [
            (["run", "tiny:fails", "--plans", str(failing), "-q", "--metrics-listen", "off"], 1),
            (["run", "tiny:fails", "--plans", str(failing), "-q", "--json",
              "--metrics-listen", "off"], 1),
            (["replay", "latest", "-q", "--metrics-listen", "off"], 1),
            (["runs"], 0),
            (["show"], 0),
        ]:  # fmt: skip
            r = cli(*args, "--outputs", out, stdout=gone, buffered=buffered)
            assert (r.returncode, r.stderr) == (code, ""), args
    finally:
        os.close(gone)


@pytest.mark.parametrize(("case", "code"), [("slow", 0), ("slow_fails", 1)])
def test_a_run_goes_on_when_the_reader_of_stderr_is_gone(
    make_plan: Callable[[str, str, str], Path], tmp_path: Path, case: str, code: int
) -> None:
    """`harness run ... 2>&1 | head -1`: the next progress line failed the run ("the
    supervisor failed: BrokenPipeError"), exit 3."""
    manifest = 'name = "tiny"\n[defaults]\nrunner = "local:exec"\n' + "".join(
        f'[[testcases]]\nname = "{c}"\ninstances = {{ min = 1, max = 3, default = 3 }}\n'
        f'entrypoint = "tiny.plan:{c}"\n' for c in ("slow", "slow_fails"))
    plan = ("import trio\nasync def slow(env):\n    await trio.sleep(1)\n"
            "async def slow_fails(env):\n    await trio.sleep(1)\n    raise SystemExit(3)\n")
    plans = make_plan("tiny", manifest, plan)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", f"tiny:{case}", "--plans", str(plans),
         "--outputs", str(tmp_path / "out"), "--metrics-listen", "off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert proc.stderr is not None
    assert proc.stderr.readline().startswith(b"running tiny:")
    proc.stderr.close()  # as `head -1` does
    assert proc.wait(timeout=60) == code
    (run,) = (tmp_path / "out").glob("*/run.json")
    assert json.loads(run.read_text())["exit_code"] == code


@pytest.mark.parametrize("buffered", [False, True])
def test_a_full_stdout_is_one_line_and_exit_3(tiny: Path, tmp_path: Path, buffered: bool) -> None:
    """Every command's output to /dev/full was a traceback."""
    out = str(tmp_path / "out")
    with open("/dev/full", "w") as full:
        for args in (["run", "tiny", "--plans", str(tiny), "-q", "--metrics-listen", "off"],
                     ["runs"], ["show"], ["show", "--json"], ["logs"], ["events"], ["report"],
                     ["replay", "--print-faults"]):  # fmt: skip
            r = cli(*args, "--outputs", out, stdout=full, buffered=buffered)
            assert r.returncode == 3, (args, r.stderr)
            assert r.stderr == "harness: error: writing to stdout: No space left on device\n"
        for args in (["--help"], ["run", "--help"]):  # argparse dropped the error: exit 0
            r = cli(*args, stdout=full, buffered=buffered)
            assert r.returncode == 3, (args, r.stderr)
            assert r.stderr == "harness: error: writing to stdout: No space left on device\n"
        # A usage error to a full stderr: nowhere to say more, the usage error's code stays.
        r = subprocess.run([sys.executable, "-m", "harness", "bogus"], stderr=full, timeout=60)
        assert r.returncode == 2
        # Both full: the error line is lost, its exit code is not (a second error escaping
        # main made it 1); so for any error with stderr full.
        for args, code in ((["--help"], 3), (["runs", "--outputs", out], 3),
                           (["runs", "--outputs", "/nonexist"], 2)):
            r = subprocess.run([sys.executable, "-m", "harness", *args], stdout=full,
                               stderr=full, timeout=60)
            assert r.returncode == code, args


def test_an_error_with_stderr_closed_is_not_written_to_stdout(tmp_path: Path) -> None:
    """print(file=sys.stderr) with fd 2 closed at start (sys.stderr None) wrote it there."""
    r = subprocess.run([sys.executable, "-m", "harness", "runs", "--outputs", "/nonexist"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=60,
                       preexec_fn=lambda: os.close(2))
    assert (r.returncode, r.stdout) == (2, b"")


@pytest.mark.parametrize("closed", [(2,), (0, 1, 2)])
def test_a_run_started_with_its_standard_streams_closed_passes(
    tmp_path: Path, closed: tuple[int, ...]
) -> None:
    """With fd 2 closed the run failed, exit code 1 and no word: the progress lines went to
    a sys.stderr of None, and the process host, started with fd 2 closed, could not start
    an instance. /dev/null now stands in for each closed one."""
    def close() -> None:
        for fd in closed:
            os.close(fd)

    r = subprocess.run([sys.executable, "-m", "harness", "run", "pingpong", "-i", "2",
                        "--runner", "local:exec", "--outputs", str(tmp_path)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
                       preexec_fn=close, cwd=ROOT)  # fmt: skip
    assert r.returncode == 0
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert json.loads((run / "run.json").read_text())["outcome"] == "passed"


def test_any_other_os_error_is_one_line_and_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness._cli import main
    from harness._commands import list as list_command

    def broken(args: Any) -> int:
        raise OSError(errno.EIO, "Input/output error", "/some/file")

    monkeypatch.setattr(list_command, "run", broken)
    assert main(["list"]) == 3
    assert capsys.readouterr().err == "harness: error: /some/file: Input/output error\n"


INTERRUPTED_WHILE_IMPORTING = """
import importlib, os, signal, sys
from harness._cli import main
imported = importlib.import_module
def interrupted(name, *args):
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the command's modules are imported
    return imported(name, *args)
importlib.import_module = interrupted
sys.exit(main(["run", "pingpong"]))
"""


INTERRUPTED_BEFORE_MAIN = """
import builtins, os, runpy, signal
real = builtins.__import__
def interrupted(name, *args, **kwargs):
    if name == "harness._cli":  # Ctrl-C while `python -m harness` imports main itself
        os.kill(os.getpid(), signal.SIGINT)
    return real(name, *args, **kwargs)
builtins.__import__ = interrupted
runpy.run_module("harness", run_name="__main__")
"""


# The `harness` script as pip writes it, for the entry point pyproject.toml names.
INTERRUPTED_IN_THE_SCRIPT = """
import builtins, os, signal, sys, tomllib
with open("pyproject.toml", "rb") as f:
    module, function = tomllib.load(f)["project"]["scripts"]["harness"].split(":")
real = builtins.__import__
def interrupted(name, *args, **kwargs):
    if name == "harness._cli":
        os.kill(os.getpid(), signal.SIGINT)
    return real(name, *args, **kwargs)
builtins.__import__ = interrupted
exec(f"from {module} import {function} as entry")
sys.exit(entry())
"""


@pytest.mark.parametrize(
    "script", [INTERRUPTED_WHILE_IMPORTING, INTERRUPTED_BEFORE_MAIN, INTERRUPTED_IN_THE_SCRIPT]
)
def test_ctrl_c_while_the_command_is_imported_is_one_line_and_exit_130(script: str) -> None:
    """It was a 30-40 line KeyboardInterrupt traceback."""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True,
                       text=True, timeout=60, cwd=ROOT)
    assert (r.returncode, r.stderr) == (130, "harness: interrupted\n")


LONG = "d" * 300  # longer than a file name may be (ENAMETOOLONG)


@pytest.mark.parametrize("args", [
    ["run", "tiny", "--outputs", f"/tmp/{LONG}"],
    ["runs", "--outputs", f"/tmp/{LONG}"],
    ["show", "--outputs", f"/tmp/{LONG}"],
    ["clean", "--outputs", f"/tmp/{LONG}"],
    ["show", f"/tmp/{LONG}"],
    ["report", f"/tmp/{LONG}"],
    ["events", f"/tmp/{LONG}"],
    ["logs", f"/tmp/{LONG}"],
    ["replay", "--print-faults", f"/tmp/{LONG}"],
    ["fault", f"/tmp/{LONG}", "kill", "--instance", "single/0"],
])  # fmt: skip
def test_a_path_the_system_refuses_is_one_line_and_exit_2(tiny: Path, args: list[str]) -> None:
    r = cli(*args, *(["--plans", str(tiny)] if args[0] == "run" else []))
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.splitlines()
    assert line.startswith(("harness: error: ", f"harness {args[0]}: error: argument --outputs"))
    assert line.endswith(("File name too long", f"File name too long (see harness {args[0]} --help)"))


@pytest.mark.parametrize("command", ["list", "describe", "run"])
def test_an_empty_plans_path_is_refused(tmp_path: Path, command: str) -> None:
    """It was the current directory: `list` printed nothing and exited 0."""
    r = cli(command, *(["pingpong"] if command != "list" else []), "--plans", "", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.endswith(f"argument --plans: an empty path names no directory (see harness "
                             f"{command} --help)\n")


@pytest.mark.parametrize("command", [["run", "tiny"], ["runs"], ["show"], ["clean"]])
def test_an_empty_outputs_path_is_refused(tiny: Path, tmp_path: Path, command: list[str]) -> None:
    """It was the current directory."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    plans = ["--plans", str(tiny)] if command[0] == "run" else []
    r = cli(*command, "--outputs", "", *plans, cwd=cwd)
    assert r.returncode == 2
    assert r.stderr.endswith(f"argument --outputs: an empty path names no directory (see harness "
                             f"{command[0]} --help)\n")
    assert not list(cwd.iterdir())


def test_a_run_refused_before_it_starts_says_only_why(tiny: Path, tmp_path: Path) -> None:
    """"running tiny:ok with 2 instances on local:exec" came first, as if it had started."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    dangling = tmp_path / "dangling"
    dangling.symlink_to("/nonexistent/out")
    comp = tmp_path / "c.toml"
    comp.write_text('[[groups]]\nid = "a"\ninstances = { count = 1 }\n'
                    'program = ["/nonexistent/bin/x"]\n')
    not_executable = tmp_path / "d.toml"
    not_executable.write_text('[[groups]]\nid = "a"\ninstances = { count = 1 }\n'
                              f'program = ["{a_file}"]\n')
    for extra, message in [
        (["--outputs", str(dangling)],  # "File exists"
         f"outputs {dangling} cannot hold a run: it is a symbolic link to /nonexistent/out,"
         " which does not exist"),
        (["--outputs", str(a_file)], f"outputs {a_file} cannot hold a run: it is not a directory"),
        (["--outputs", "/dev/null"], "outputs /dev/null cannot hold a run: it is not a directory"),
        (["--outputs", str(a_file / "sub")],
         f"outputs {a_file / 'sub'} cannot hold a run: Not a directory"),
        (["--composition", str(comp), "--outputs", str(tmp_path / "out")],
         "tiny:ok: program '/nonexistent/bin/x' cannot be run (/nonexistent/bin/x does not "
         "exist)"),
        (["--composition", str(not_executable), "--outputs", str(tmp_path / "out")],
         f"tiny:ok: program {str(a_file)!r} cannot be run ({a_file} is not an executable "
         'file: chmod +x it, or start it with its interpreter, e.g. program = ["python3", '
         "...])"),
    ]:  # fmt: skip
        r = cli("run", "tiny", "--plans", str(tiny), "--metrics-listen", "off", *extra)
        assert (r.returncode, r.stderr) == (2, f"harness: error: {message}\n")


@pytest.mark.parametrize(("args", "message"), [
    (["--k8s", "namespace=x"], "--k8s is for cluster:k8s runs: add --runner cluster:k8s"),
    (["--run", "2026"], "--run is for cluster:k8s runs: add --runner cluster:k8s"),
    (["--runner", "cluster:k8s"], "--runner cluster:k8s needs --run RUN_ID (a run id)"),
    (["--outputs", "/dev/null"], "no outputs directory /dev/null"),
])  # fmt: skip
def test_clean_refuses_what_it_cannot_use(args: list[str], message: str) -> None:
    """These said "nothing to remove" (exit 0), or named --runner for --run, or ended
    "not None"."""
    r = cli("clean", *args)
    assert (r.returncode, r.stderr) == (2, f"harness: error: {message}\n")


def test_a_failed_write_is_not_hidden_by_its_clean_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a read-only file system the clean-up's unlink fails too: that error was raised."""
    from harness._rundir import write_files

    def full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    def read_only(self: Path, missing_ok: bool = False) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    monkeypatch.setattr(Path, "unlink", read_only)
    with pytest.raises(OSError) as raised:
        write_files({tmp_path / "a.json": b"{}"})
    assert raised.value.errno == errno.ENOSPC


@pytest.mark.skipif(sys.platform != "linux", reason="mount namespaces are Linux's")
@pytest.mark.parametrize("how", ["ro", "full"])
@pytest.mark.parametrize(("command", "failed"), [
    ("report", "writing the report in {run_dir}"),
    ("show", "marking run {run} aborted (its supervisor is gone)"),
    ("runs", "marking the runs under {outputs}"),
])  # fmt: skip
def test_a_command_that_cannot_write_its_run_says_so_in_one_line(
    tmp_path: Path, how: str, command: str, failed: str
) -> None:
    """report's write, and show's and runs' marking of a run whose supervisor is gone, on a
    read-only or full file system: each was a traceback. show and runs, which only show,
    then warn and show the runs as recorded (they refused to show anything, exit 3): runs
    reads them from their directories when the history cannot be opened."""
    from tests.observe._fixture import FixtureSpec, make_run, orphan

    run_dir = make_run(tmp_path / "outputs", FixtureSpec(instances=2))
    orphan(run_dir)
    outputs = tmp_path / "mnt" / "outputs"
    fill = ("mount -o remount,ro tmpfs {mnt}" if how == "ro"
            else "dd if=/dev/zero of={mnt}/fill bs=4k 2>/dev/null; true")  # fmt: skip
    r = in_private_tmpfs(tmp_path, "size=1m", (
        f"cp -r {tmp_path / 'outputs'} {outputs} && "
        + fill.format(mnt=tmp_path / "mnt")
        + f" && {sys.executable} -m harness {command} --outputs {outputs}"
        + (f" {run_dir.name}" if command != "runs" else "")))
    reason = "Read-only file system" if how == "ro" else "No space left on device"
    what = failed.format(run_dir=outputs / run_dir.name, run=run_dir.name, outputs=outputs)
    if command == "report":
        assert (r.returncode, r.stderr) == (3, f"harness: error: {what} failed: {reason}\n")
        return
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith(f"harness: warning: {what} failed: {reason}; shown as "
                               f"recorded\n"), r.stderr
    if command == "show":
        assert run_dir.name in r.stdout
    else:  # still "running" as recorded: the runs that ended are what runs lists
        assert r.stderr.endswith("; the runs are read from their directories\n"), r.stderr
        assert r.stdout == "no runs\n"


@pytest.mark.parametrize("runner", ["local:exec", "local:netns"])
def test_a_plan_module_that_fails_to_load_fails_each_instance_not_the_supervisor(
    make_plan: Callable[[str, str, str], Path], tmp_path: Path, runner: str
) -> None:
    """On local:netns the metrics relay's start failed with the process host and ended the
    run in a traceback (exit 1, outcome "error"); on local:exec each instance said why."""
    if runner == "local:netns" and os.geteuid() != 0:
        pytest.skip("local:netns needs root")
    manifest = ('name = "boom"\n[[testcases]]\nname = "ok"\n'
                'instances = { min = 1, max = 3, default = 2 }\nentrypoint = "boom.plan:ok"\n')
    plans = make_plan("boom", manifest,
                      'raise RuntimeError("boom at import")\nasync def ok(env):\n    pass\n')
    r = run_cli("boom", "--plans", str(plans), "--runner", runner,
                "--outputs", str(tmp_path / "out"))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    (record,) = (tmp_path / "out").glob("*/run.json")
    run = json.loads(record.read_text())
    assert run["outcome"] == "failed"
    assert [i["reason"] for i in run["instances"]] == [
        "did not start: cannot load boom.plan:ok: RuntimeError: boom at import "
        "(traceback in process-host.log)"] * 2
    # where in the plan's code: the reason alone gave no file or line
    log = (record.parent / "process-host.log").read_text()
    assert 'plan.py", line 1, in <module>' in log and log.endswith("boom at import\n"), log


@pytest.mark.parametrize(("option", "path", "message"), [
    ("--faults", "/dev/zero", "faults file /dev/zero: larger than 16 MiB"),
    ("--faults", "/dev/urandom", "faults file /dev/urandom: larger than 16 MiB"),
    ("--composition", "/dev/zero", "composition /dev/zero: larger than 16 MiB"),
    ("--faults", "/", "faults file /: Is a directory"),
])  # fmt: skip
def test_an_endless_or_odd_input_file_is_refused_without_reading_it_all(
    tiny: Path, tmp_path: Path, option: str, path: str, message: str
) -> None:
    """`--faults /dev/zero` read until the machine ran out of memory (24 GB, then the OOM
    killer)."""
    r = subprocess.run(  # capped, so that a regression fails this test, not the machine
        [sys.executable, "-m", "harness", "run", "-q", "--metrics-listen", "off", "tiny",
         "--plans", str(tiny), "--outputs", str(tmp_path / "out"), option, path],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)))
    assert assert_one_line(r) == f"harness: error: {message}"


def test_a_faults_file_from_a_pipe_is_json_when_it_starts_with_a_brace(tmp_path: Path) -> None:
    """`--faults <(harness replay latest --print-faults)`: /dev/fd/63 has no .json name,
    and was read as TOML."""
    from harness.faults import load_faults

    piped = tmp_path / "63"
    piped.write_text('\n {"faults": [{"action": "kill", "at": "1s", '
                     '"targets": {"group": "single", "count": 1}}]}')
    (fault,) = load_faults(piped)
    assert fault.to_data()["action"] == "kill"
    toml = tmp_path / "f"
    toml.write_text('[[faults]]\naction = "kill"\nat = "1s"\n'
                    'targets = { group = "single", count = 1 }\n')
    assert load_faults(toml)[0].to_data()["action"] == "kill"


def _nofile(soft: int, hard: int | None = None) -> Callable[[], None]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1] if hard is None
                            else hard))  # fmt: skip
    return limit


@pytest.mark.parametrize("runner", ["local:exec", "local:netns"])
def test_a_run_short_of_open_files_says_so_in_one_line(
    tiny: Path, tmp_path: Path, runner: str
) -> None:
    """`ulimit -n 16` (soft and hard): an exception group of EMFILEs from wherever they
    struck, exit 1."""
    if runner == "local:netns" and os.geteuid() != 0:
        pytest.skip("local:netns needs root")
    r = subprocess.run(
        [sys.executable, "-m", "harness", "run", "-q", "--metrics-listen", "off", "tiny",
         "-i", "10", "--plans", str(tiny), "--outputs", str(tmp_path / "out"),
         "--runner", runner],
        capture_output=True, text=True, timeout=120, cwd=ROOT, preexec_fn=_nofile(16, 16))
    line = assert_one_line(r, 3)
    assert line == ("harness: error: too many open files: this process may open 16 (ulimit -n; "
                    "hard limit 16), a run of 10 instances needs about 276: raise it "
                    "(ulimit -n 276) or run fewer instances")


def test_a_low_soft_open_file_limit_is_raised_for_the_run(tiny: Path, tmp_path: Path) -> None:
    """A desktop's soft limit is 1,024: a 1,000-instance run ran out of files at about
    900. The run raises it toward the hard limit; 100 instances under a soft limit of 64."""
    manifest = tiny / "tiny" / "manifest.toml"
    manifest.write_text(manifest.read_text().replace("max = 10,", "max = 100,"))
    r = subprocess.run(
        [sys.executable, "-m", "harness", "run", "-q", "--metrics-listen", "off", "tiny",
         "-i", "100", "--plans", str(tiny), "--outputs", str(tmp_path / "out"),
         "--runner", "local:exec"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, preexec_fn=_nofile(64))
    assert r.returncode == 0, r.stderr


def test_a_path_that_is_not_utf8_is_refused_in_one_line(tiny: Path, tmp_path: Path) -> None:
    """A path in another encoding reached the run's JSON and failed there: "str is not
    valid UTF-8: surrogates not allowed", a traceback, exit 1."""
    base = [sys.executable.encode(), b"-m", b"harness", b"run", b"-q", b"--metrics-listen",
            b"off", b"tiny", b"--plans", bytes(tiny)]
    r = subprocess.run([*base, b"--outputs", bytes(tmp_path) + b"/out-\xff"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert assert_one_line(r) == (f"harness: error: argument '{tmp_path}/out-\\xff' is not "
                                  "UTF-8 text")
    odd = bytes(tmp_path) + b"/d\xff"
    os.mkdir(odd)
    r = subprocess.run([*base, b"--outputs", b"out"], capture_output=True, text=True,
                       timeout=120, cwd=odd)
    assert assert_one_line(r) == (f"harness: error: outputs {tmp_path}/d\\xff/out: the path "
                                  "is not UTF-8 text")
    assert os.listdir(odd) == []


IMPORT_MODES = """\
import os, sys, time
mode = os.environ.get("IMP_MODE", "")
if mode == "sleep":
    time.sleep(1000)
if mode == "print":
    print("IMPORT-TIME-OUTPUT")
if mode == "kbint":
    raise KeyboardInterrupt
if mode == "exit":
    sys.exit(3)
async def case(env):
    how = os.environ.get("CASE_MODE", "")
    if how == "kbint":
        raise KeyboardInterrupt
    if how:
        sys.exit(int(how))
if mode == "sync":
    def case(env):
        pass
if mode == "agen":
    async def case(env):
        yield 1
if mode == "value":
    case = 1
"""


@pytest.mark.parametrize(("imp", "case", "reason"), [
    # ran until an outer `timeout` killed it: the timeout counted from the instances' start
    ("sleep", "", "did not start: the process host was not ready within the run's timeout "
                  "(4s): the plan's module was still being imported"),
    ("kbint", "", "did not start: cannot load odd.plan:case: KeyboardInterrupt "  # traceback
                  "(traceback in process-host.log)"),
    ("exit", "", "did not start: cannot load odd.plan:case: SystemExit: 3 "
                 "(traceback in process-host.log)"),
    # "exit code 70", its stderr "cannot start the instance: 0"
    ("", "0", "crashed: SystemExit(0): the test function exited instead of returning"),
    ("", "kbint", "crashed: KeyboardInterrupt (at plan.py:14)"),
    # "TypeError: object NoneType can't be used in 'await' expression"
    ("sync", "", "crashed: TypeError: the test function 'case' is not async: define it with "
                 "`async def`"),
    # "is not async: define it with `async def`", which it was
    ("agen", "", "crashed: TypeError: the test function 'case' is an async generator (it "
                 "has a `yield`): a test function returns, it does not yield"),
    # "odd.plan has no function 'case'", which it has
    ("value", "", "did not start: cannot load odd.plan:case: RunEnvError: entrypoint "
                  "'odd.plan:case': odd.plan.case is of type int, not a function "
                  "(traceback in process-host.log)"),
    ("print", "", None),  # printed before the --json document
])  # fmt: skip
def test_a_plan_module_that_misbehaves_is_said_so_and_the_run_ends(
    make_plan: Callable[[str, str, str], Path], tmp_path: Path, imp: str, case: str,
    reason: str | None,
) -> None:
    manifest = ('name = "odd"\n[[testcases]]\nname = "case"\n'
                'instances = { min = 1, max = 3, default = 2 }\nentrypoint = "odd.plan:case"\n')
    plans = make_plan("odd", manifest, IMPORT_MODES)
    r = subprocess.run(
        [sys.executable, "-m", "harness", "run", "-q", "--metrics-listen", "off", "odd",
         "--plans", str(plans), "--outputs", str(tmp_path / "out"), "--timeout", "4", "--json"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "IMP_MODE": imp, "CASE_MODE": case})
    assert "Traceback" not in r.stderr, r.stderr
    run = json.loads(r.stdout)  # nothing else on stdout
    assert [i["reason"] for i in run["instances"]] == [reason] * 2
    assert r.returncode == (0 if reason is None else 1)
    if imp == "print":
        (log,) = (tmp_path / "out").glob("*/process-host.log")
        assert log.read_text() == "IMPORT-TIME-OUTPUT\n"


def test_a_forgotten_await_is_a_warning_of_the_instance(
    make_plan: Callable[[str, str, str], Path], tmp_path: Path,
) -> None:
    """`env.sync.barrier(...)` without `await` waits for nothing: the RuntimeWarning was a
    line of stderr.log, at INFO in `harness logs`, under `--level warning` not at all. (It
    fails the instance too: tests/test_plan_diagnostics.py.)"""
    manifest = ('name = "forgot"\n[[testcases]]\nname = "case"\n'
                'instances = { min = 1, max = 1, default = 1 }\n'
                'entrypoint = "forgot.plan:case"\nbackend = "asyncio"\n')
    plans = make_plan("forgot", manifest,
                      "async def case(env):\n    env.sync.barrier('all', 1)\n")
    r = run_cli("forgot", "--plans", str(plans), "--runner", "local:exec",
                "--outputs", str(tmp_path / "out"))
    assert r.returncode == 1, r.stderr
    (log,) = (tmp_path / "out").glob("*/single/0/log.jsonl")
    (warning,) = [line for line in map(json.loads, log.read_text().splitlines())
                  if line["level"] == "warning"]
    assert "coroutine 'SyncClient.barrier' was never awaited" in warning["event"], warning
    assert warning["instance"] == "single/0"


@pytest.mark.parametrize("shadow", ["random/__init__.py", "select.py"])
def test_plan_code_named_like_a_standard_module_is_refused_before_the_run(
    make_plan: Callable[[str, str, str], Path], tmp_path: Path, shadow: str,
) -> None:
    """A plan `random` beside it (its directory is on the instances' import path, ahead of
    the standard library): every instance of every plan there failed, "the process host
    exited (status 1)", the ImportError only in process-host.log."""
    plans = make_plan("tiny", TINY_MANIFEST, TINY_PLAN)
    (plans / shadow).parent.mkdir(exist_ok=True)
    (plans / shadow).write_text("")
    r = run_cli("tiny", "--plans", str(plans), "--outputs", str(tmp_path / "out"))
    path = plans / (shadow.split("/")[0])
    name = path.name.removesuffix(".py")
    assert (f"{path} would be imported as Python's standard module {name!r} in every "
            f"instance") in assert_one_line(r)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    (plans / shadow).unlink()
    assert run_cli("tiny", "--plans", str(plans), "--outputs", str(tmp_path / "out")
                   ).returncode == 0


def test_a_program_the_host_cannot_exec_says_why_not_just_its_exit_code(
    make_plan: Callable[[str, str, str], Path], tmp_path: Path,
) -> None:
    """An executable file exec cannot run (no #! line, no ELF): the run said "exit code 70",
    and only stderr.log why. (Params too long for exec are refused before the run.)"""
    manifest = ('name = "prog"\n[[testcases]]\nname = "run"\n'
                'instances = { min = 1, max = 2, default = 1 }\nprogram = ["./junk"]\n')
    plans = make_plan("prog", manifest, "")
    junk = plans / "prog" / "junk"
    junk.write_bytes(b"\x00\x01 not a program\n")
    junk.chmod(0o755)
    r = run_cli("prog", "--plans", str(plans), "--runner", "local:exec",
                "--outputs", str(tmp_path / "out"), "--json")
    assert r.returncode == 1, r.stderr
    (inst,) = json.loads(r.stdout)["instances"]
    assert inst["reason"].startswith("did not start: [Errno 8] Exec format error"), inst


def test_a_case_that_closed_its_stderr_still_has_its_failure_recorded(
    make_plan: Callable[[str, str, str], Path], tmp_path: Path,
) -> None:
    """Printing the traceback to the closed stderr raised: the failure was never sent, and
    the instance read "exit code 70"."""
    manifest = ('name = "shut"\n[[testcases]]\nname = "case"\n'
                'instances = { min = 1, max = 1, default = 1 }\nentrypoint = "shut.plan:case"\n')
    plans = make_plan("shut", manifest, "import os\nfrom harness import sdk\n"
                      "async def case(env):\n    os.close(2)\n"
                      "    raise sdk.TestFailure('peer 3 answered 41')\n")
    r = run_cli("shut", "--plans", str(plans), "--runner", "local:exec",
                "--outputs", str(tmp_path / "out"), "--json")
    (inst,) = json.loads(r.stdout)["instances"]
    assert inst["reason"] == "failed: TestFailure: peer 3 answered 41", inst


def test_params_too_long_for_a_program_s_environment_are_refused_before_the_run(
    make_plan: Callable[[str, str, str], Path], tmp_path: Path
) -> None:
    """Every instance failed to start ("Argument list too long"): Linux passes at most
    128 KiB in one environment variable, and a program's params are one (JSON)."""
    root = make_plan("prog", 'name = "prog"\n[defaults]\nrunner = "local:exec"\n'
                     '[[testcases]]\nname = "c"\ninstances = { min = 1, max = 2 }\n'
                     'program = ["/bin/true"]\n[testcases.params]\n'
                     'label = { type = "str", default = "" }\n', "")
    comp = tmp_path / "c.toml"
    for size, refused in [(200_000, True), (100_000, False)]:
        comp.write_text(f'[global]\nplan = "prog"\n[global.params]\nlabel = "{"a" * size}"\n')
        r = cli("run", "--composition", str(comp), "--plans", str(root), "--metrics-listen",
                "off", "--outputs", str(tmp_path / f"out{size}"), "-q")
        if refused:
            assert (r.returncode, r.stderr) == (2, (
                "harness: error: group 'single': its params take 200,034 bytes as "
                "TEST_INSTANCE_PARAMS, and Linux passes at most 131,072 in one environment "
                "variable: give the program a file's path instead\n"))
            assert not (tmp_path / f"out{size}").exists()
        else:  # it started (and, saying nothing of success, failed)
            run = json.loads(only_run_dir(tmp_path / f"out{size}").joinpath("run.json")
                             .read_text())
            assert run["instances"][0]["reason"] == "exited 0 without recording success"


def test_timeout_takes_a_duration_as_a_composition_does(tiny: Path, tmp_path: Path) -> None:
    """`--timeout 10s` was refused ("invalid float value") while a composition's
    `timeout = "120s"` is taken; `--timeout inf` read "must be a positive number"."""
    r = cli("run", "tiny", "--plans", str(tiny), "--metrics-listen", "off", "-q",
            "--timeout", "30s", "--outputs", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    (run,) = (tmp_path / "out").glob("*/run.json")
    assert json.loads(run.read_text())["timeout_s"] == 30.0
    for value in ("10x", "inf"):
        r = cli("run", "tiny", "--plans", str(tiny), "--timeout", value)
        assert r.returncode == 2
        assert r.stderr == (f"harness run: error: argument --timeout: {value!r} is not a "
                            "duration (e.g. 250ms, 2s, 1m) (see harness run --help)\n")


def test_a_killed_run_s_leftovers_removed_at_the_start_are_not_said_on_stdout(
    tiny: Path, tmp_path: Path
) -> None:
    """The start of a run removes what killed runs left; it said so through structlog's
    defaults, before the run's logging was set up: on stdout, in the middle of `--json`."""
    own_tmp = tmp_path / "tmp"
    stale = own_tmp / "harness-deadrun"
    stale.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(stale / "sync.sock"))  # nobody listens on it once closed
    old = time.time() - 3600
    os.utime(stale / "sync.sock", (old, old), follow_symlinks=False)
    env = {**os.environ, "TMPDIR": str(own_tmp)}
    r = subprocess.run([sys.executable, "-m", "harness", "run", "tiny", "--plans", str(tiny),
                        "--json", "-q", "--metrics-listen", "off",
                        "--outputs", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["outcome"] == "passed"  # nothing else on stdout
    assert not stale.exists()  # it was removed
