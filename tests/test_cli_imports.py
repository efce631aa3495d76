"""`harness COMMAND` imports only that command's module: `harness report` does not pay for
the supervisor (trio, pyroute2, ...) that only `harness run` needs, nor for the samplers
(trio, httpx, prometheus_client) whose files it only reads."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules_after(argv: list[str]) -> set[str]:
    code = (
        "import contextlib, sys\nfrom harness._cli import main\n"
        f"with contextlib.suppress(SystemExit):\n    main({argv!r})\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return set(out.stdout.split())


def test_report_does_not_import_the_other_commands(tmp_path: Path) -> None:
    mods = _modules_after(["report", str(tmp_path / "no-such-run")])
    assert "harness._commands.report" in mods
    assert "harness._commands.run" not in mods
    assert "harness._supervisor" not in mods
    assert "harness.observe._report._charts" in mods  # the report's modules are imported...
    assert not mods & {"trio", "httpx", "prometheus_client"}  # ...without the samplers'


def test_help_and_a_misspelt_command_still_name_every_command() -> None:
    from harness._cli import COMMANDS

    help_text = subprocess.run([sys.executable, "-m", "harness", "--help"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout
    assert all(name in help_text for name in COMMANDS)
    typo = subprocess.run([sys.executable, "-m", "harness", "repor"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert typo.returncode == 2
    assert "invalid choice: 'repor'" in typo.stderr and "'report'" in typo.stderr


def test_version_is_the_one_pyproject_gives() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    r = subprocess.run([sys.executable, "-m", "harness", "--version"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"harness {version}\n", "")


def test_version_imports_no_command() -> None:
    """`harness --version` built every subcommand's parser: 1.5 s instead of 0.1."""
    mods = _modules_after(["--version"])
    assert "harness._cli" in mods
    assert not {m for m in mods if m.startswith("harness._commands.")}
