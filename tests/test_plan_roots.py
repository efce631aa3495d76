"""Where plans are found: --plans, else $HARNESS_PLANS, else the project's scenarios/."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness._cli import main
from harness.plans import PLANS_ENV, default_roots, find_plans

from .conftest import ROOT

MANIFEST = """
name = "{name}"
[[testcases]]
name = "main"
instances = {{ min = 1, max = 2 }}
program = ["true"]
"""


@pytest.fixture
def two_roots(tmp_path: Path, make_plan: Callable[..., Path]) -> tuple[Path, Path]:
    first = make_plan("alpha", MANIFEST.format(name="alpha"))
    second = tmp_path / "more"
    (second / "beta").mkdir(parents=True)
    (second / "beta" / "manifest.toml").write_text(MANIFEST.format(name="beta"))
    return first, second


def test_the_default_is_the_projects_scenarios_found_without_importing_them() -> None:
    code = (
        "import sys; from harness.plans import find_plans; plans = find_plans(); "
        "print('pingpong' in plans, any(m.split('.')[0] == 'scenarios' for m in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if k != PLANS_ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env, cwd="/")
    assert out.stdout.split() == ["True", "False"]


def test_the_environment_variable_names_the_roots(
    monkeypatch: pytest.MonkeyPatch, two_roots: tuple[Path, Path]
) -> None:
    monkeypatch.setenv(PLANS_ENV, os.pathsep.join(map(str, two_roots)) + os.pathsep)
    assert default_roots() == list(two_roots)
    assert sorted(find_plans()) == ["alpha", "beta"]  # instead of scenarios/, not beside it
    monkeypatch.setenv(PLANS_ENV, "")
    assert default_roots() == [ROOT / "scenarios"]


def test_plans_option_comes_before_the_environment_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    two_roots: tuple[Path, Path],
) -> None:
    first, second = two_roots
    monkeypatch.setenv(PLANS_ENV, str(second))
    assert main(["list", "--plans", str(first)]) == 0
    listed = capsys.readouterr().out
    assert "alpha:main" in listed and "beta" not in listed
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "beta:main" in listed and "alpha" not in listed and "pingpong" not in listed


def test_a_missing_root_in_the_variable_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv(PLANS_ENV, str(tmp_path / "nowhere"))
    assert main(["describe", "pingpong"]) == 2
    err = capsys.readouterr().err
    assert err == f"harness: error: {PLANS_ENV}: plan directory {tmp_path / 'nowhere'} does not exist\n"


def test_a_plans_root_that_is_a_file_is_called_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    a_file = tmp_path / "plans.txt"
    a_file.write_text("")
    assert main(["list", "--plans", str(a_file)]) == 2
    assert capsys.readouterr().err == (
        f"harness: error: plan directory {a_file} is not a directory\n")


def test_a_broken_manifest_stops_only_its_own_plan(
    capsys: pytest.CaptureFixture[str], two_roots: tuple[Path, Path]
) -> None:
    """A draft plan whose manifest did not load beside the others made `harness list`,
    `describe` and `run` of every other plan under the roots that one error."""
    first, _ = two_roots
    (first / "draft").mkdir()
    (first / "draft" / "manifest.toml").write_text('name = "draft"\n[[testcases]]\nname = "a"\n')
    error = f"harness: error: {first / 'draft' / 'manifest.toml'} [a]: instances = "
    assert main(["describe", "alpha", "--plans", str(first)]) == 0
    assert capsys.readouterr().out.startswith("plan alpha")
    assert main(["list", "--plans", str(first)]) == 2  # the others listed, the broken said
    out, err = capsys.readouterr()
    assert "alpha:main" in out and err.startswith(error) and len(err.splitlines()) == 1, err
    for name in ("draft", "nosuch"):  # its own error, not "unknown plan"
        assert main(["describe", name, "--plans", str(first)]) == 2
        assert capsys.readouterr().err.startswith(error)


def test_of_several_broken_manifests_a_plan_s_own_is_its_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """With two drafts broken, `describe b` said the first one's error (a's), and a name
    no plan has said a's too, as if it were the plan asked for."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.toml").write_text(
            f'name = "{name}"\n[[testcases]]\nname = "t"\n')
    assert main(["describe", "b", "--plans", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(
        f"harness: error: {tmp_path / 'b' / 'manifest.toml'} [t]: instances = ")
    assert main(["describe", "nosuch", "--plans", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "harness: error: unknown plan 'nosuch' (known: none); 2 manifests do not load"
        f" (`harness list` says why): {tmp_path / 'a' / 'manifest.toml'},"
        f" {tmp_path / 'b' / 'manifest.toml'}\n")


def test_a_manifest_that_is_a_fifo_is_a_broken_plan_not_a_hang(
    capsys: pytest.CaptureFixture[str], two_roots: tuple[Path, Path]
) -> None:
    """Reading a FIFO named manifest.toml waited forever: `list`, `describe` and `run` of
    every plan under the root hung."""
    first, _ = two_roots
    (first / "fifo").mkdir()
    os.mkfifo(first / "fifo" / "manifest.toml")
    assert main(["describe", "alpha", "--plans", str(first)]) == 0
    assert capsys.readouterr().out.startswith("plan alpha")
    assert main(["list", "--plans", str(first)]) == 2
    out, err = capsys.readouterr()
    assert "alpha:main" in out
    assert err == (f"harness: error: manifest {first / 'fifo' / 'manifest.toml'} is not a "
                   f"regular file\n")


def test_roots_without_plans_say_so_and_a_plan_s_own_directory_is_named(
    capsys: pytest.CaptureFixture[str], two_roots: tuple[Path, Path], tmp_path: Path
) -> None:
    """`--plans` given a plan's own directory (or an empty one) listed nothing, exit 0."""
    first, _ = two_roots
    plan_dir = first / "alpha"
    hint = f"; {plan_dir} is a plan's own directory: give the directory above it"
    assert main(["list", "--plans", str(plan_dir)]) == 0
    assert capsys.readouterr().out == (f"no plans under {plan_dir} (each plan is a directory "
                                       f"just under it, holding a manifest.toml){hint}\n")
    assert main(["describe", "alpha", "--plans", str(plan_dir)]) == 2
    assert capsys.readouterr().err == (
        f"harness: error: unknown plan 'alpha' (known: none){hint}\n")
    (tmp_path / "empty").mkdir()
    assert main(["list", "--plans", str(tmp_path / "empty")]) == 0
    assert capsys.readouterr().out.startswith(f"no plans under {tmp_path / 'empty'} (")


def test_a_manifest_s_text_is_shown_not_obeyed(
    capsys: pytest.CaptureFixture[str], make_plan: Callable[..., Path]
) -> None:
    """A description's newline broke `list`'s one line per case, and its escape sequences
    reached the terminal."""
    root = make_plan("gamma", MANIFEST.format(name="gamma").replace(
        '[[testcases]]\nname = "main"\n',
        '[[testcases]]\nname = "main"\ndescription = """first line\nsecond \\u001b[2J"""\n'))
    assert main(["list", "--plans", str(root)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.endswith("first line second \\x1b[2J"), line
    assert main(["describe", "gamma", "--plans", str(root)]) == 0
    out = capsys.readouterr().out
    assert "case main: first line\n  second \\x1b[2J\n" in out and "\x1b" not in out, out
