"""Plan, composition and param validation: one-line errors, exit code 2, nothing started."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from harness._errors import UsageError
from harness.faults import FaultError, load_faults
from harness.plans import RoleAllocator, RoleSpec, build_run_spec, parse_duration

from .conftest import harness_cli

MANIFEST = """
name = "demo"
[[testcases]]
name = "main"
instances = { min = 3, max = 10, default = 4 }
entrypoint = "demo.plan:main"
  [testcases.params]
  poets = { type = "int", default = 1, min = 0 }
  gateways = { type = "int", default = 1 }
  speed = { type = "float", default = 1.5 }
  verbose = { type = "bool", default = false }
  wait = { type = "duration", default = "250ms" }
  [[testcases.roles]]
  name = "poet"
  count = "poets"
  [[testcases.roles]]
  name = "gateway"
  count = "gateways"
  [[testcases.roles]]
  name = "miner"
  rest = true
  min = 1
"""
PLAN_PY = "async def main(env):\n    pass\n"
BIG = "1" + "0" * 400  # an integer beyond any float


def test_params_are_typed_and_defaulted(make_plan: Callable[..., Path]) -> None:
    root = make_plan("demo", MANIFEST, PLAN_PY)
    spec = build_run_spec("demo", params={"speed": "2", "verbose": "yes", "wait": "2s"},
                          plan_roots=[root])
    assert spec.total == 4
    params = spec.instances[0].params
    assert params == {"poets": 1, "gateways": 1, "speed": 2.0, "verbose": True, "wait": 2.0}
    assert [i.role for i in spec.instances] == ["poet", "gateway", "miner", "miner"]


@pytest.mark.parametrize(
    ("target", "instances", "params", "message"),
    [
        ("nope", None, {}, "unknown plan 'nope'"),
        ("demo:other", None, {}, "has no test case 'other'"),
        ("demo", None, {"colour": "red"}, "unknown param 'colour'"),
        ("demo", None, {"poets": "many"}, "param 'poets' (int)"),
        ("demo", None, {"poets": "-1"}, "below its min 0"),
        ("demo", None, {"speed": "nan"}, "finite number"),
        ("demo", None, {"wait": "soon"}, "not a duration"),
        ("demo", 11, {}, "takes 3 to 10 instances, not 11"),
        ("demo", 2, {}, "takes 3 to 10 instances, not 2"),
        ("demo", 3, {"poets": "2", "gateways": "1"}, "3 instances cannot be given roles"),
    ],
)
def test_bad_input_is_refused_before_anything_starts(
    make_plan: Callable[..., Path], target: str, instances: int | None,
    params: dict[str, str], message: str,
) -> None:
    root = make_plan("demo", MANIFEST)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_run_spec(target, instances=instances, params=params, plan_roots=[root])


def test_every_count_in_range_gets_a_valid_role_assignment() -> None:
    alloc = RoleAllocator([RoleSpec("poet", "poets"), RoleSpec("gateway", "gateways"),
                           RoleSpec("miner", rest=True, min=1)])
    for total in range(3, 60):
        roles = alloc.assign(total, {"poets": 1, "gateways": 1})
        assert len(roles) == total  # the seed's allocator left its last instance without one
        assert roles.count("poet") == 1 and roles.count("gateway") == 1
        assert roles[-1] == "miner"
    with pytest.raises(UsageError):
        alloc.assign(2, {"poets": 1, "gateways": 1})


def test_roles_that_cannot_be_given_say_where_and_what_they_need(
    make_plan: Callable[..., Path],
) -> None:
    """A case whose roles take exactly one leader, run with 2 instances, said "2 instances
    cannot be given roles: need 1 leader", naming neither the case nor that one is all
    it takes; a manifest whose default count the roles did not fit, not even the file."""
    head = ('name = "r"\n[[testcases]]\nname = "a"\nentrypoint = "r.plan:f"\n'
            'instances = { min = 1, max = 3, default = %d }\n'
            '[[testcases.roles]]\nname = "leader"\ncount = %d\n')
    root = make_plan("r", head % (1, 1), "async def f(env):\n    pass\n")
    with pytest.raises(UsageError) as e:
        build_run_spec("r", instances=2, plan_roots=[root])
    assert str(e.value) == ("r:a: 2 instances cannot be given roles: need exactly 1 leader "
                            "(no role is the rest)")
    (root / "r" / "manifest.toml").write_text(
        head % (2, 5) + '[[testcases.roles]]\nname = "f"\nrest = true\n')
    with pytest.raises(UsageError) as e:
        build_run_spec("r", plan_roots=[root])
    assert str(e.value).endswith("manifest.toml [a] (its default instances): 2 instances "
                                 "cannot be given roles: need 5 leader"), e.value


@pytest.mark.parametrize(("roles", "said"), [
    ('[[testcases.roles]]\nname = "a"\nrest = true\n[[testcases.roles]]\nname = "b"\nrest = true\n',
     ": at most one role may be the rest"),
    ('[[testcases.roles]]\nname = "a"\ncount = 1\n[[testcases.roles]]\nname = "a"\nrest = true\n',
     ": role names repeat: ['a', 'a']"),
    ('[[testcases.roles]]\nname = "b"\n',
     " role 'b': give it a count (a number or an int param's name), or rest = true"),
    ('[[testcases.roles]]\nname = "b"\ncount = 1\nrest = true\n',
     " role 'b': give it a count or rest = true, not both"),
])  # fmt: skip
def test_roles_that_contradict_themselves_are_refused_naming_the_file_and_case(
    make_plan: Callable[..., Path], roles: str, said: str
) -> None:
    """They named neither ("at most one role may be the rest", and `harness list` of many
    plans said so without saying which), or said "count None is not a whole number"."""
    manifest = ('name = "r"\n[[testcases]]\nname = "c"\nentrypoint = "r.plan:f"\n'
                'instances = { min = 1, max = 3, default = 2 }\n' + roles)
    root = make_plan("r", manifest, "async def f(env):\n    pass\n")
    with pytest.raises(UsageError) as e:
        build_run_spec("r", plan_roots=[root])
    assert str(e.value).endswith(f"manifest.toml [c]{said}"), e.value


@pytest.mark.parametrize(("where", "value", "said"), [
    ("default", '"3"', "expected an integer, not the text '3'"),
    ("group", '"5"', "expected an integer, not the text '5'"),
    ("global", '"yes"', None),  # (a str param: text is its type)
])  # fmt: skip
def test_toml_values_are_taken_as_toml_types_them_text_only_from_the_command_line(
    make_plan: Callable[..., Path], tmp_path: Path, where: str, value: str, said: str | None
) -> None:
    """`default = "3"` for an int param, or `rounds = "5"` in a composition, was taken as
    3 and 5 (while 3.0 was refused), against "values are taken as TOML types them"."""
    default = value if where == "default" else "1"
    manifest = ('name = "t"\n[[testcases]]\nname = "c"\nentrypoint = "t.plan:f"\n'
                'instances = { min = 1, max = 3, default = 1 }\n[testcases.params]\n'
                f'n = {{ type = "int", default = {default} }}\n'
                's = { type = "str", default = "a" }\n')
    root = make_plan("t", manifest, "async def f(env):\n    pass\n")
    comp = tmp_path / "c.toml"
    group = f"  [groups.params]\n  n = {value}\n" if where == "group" else ""
    glob = f"  [global.params]\n  s = {value}\n" if where == "global" else ""
    comp.write_text(f'[global]\nplan = "t"\n{glob}[[groups]]\nid = "g"\n'
                    f'instances = {{ count = 1 }}\n{group}')
    if said is None:
        assert build_run_spec(None, composition=comp, plan_roots=[root]).groups[0].params[
            "s"] == "yes"
    else:
        with pytest.raises(UsageError, match=re.escape(said)):
            build_run_spec(None, composition=comp, plan_roots=[root])


def test_a_float_param_given_no_number_says_so_in_words(make_plan: Callable[..., Path]) -> None:
    """It said Python's "could not convert string to float: 'abc'"."""
    manifest = ('name = "t"\n[[testcases]]\nname = "c"\nentrypoint = "t.plan:f"\n'
                'instances = { min = 1, max = 3, default = 1 }\n[testcases.params]\n'
                'r = { type = "float", default = 0.5 }\n')
    root = make_plan("t", manifest, "async def f(env):\n    pass\n")
    with pytest.raises(UsageError) as e:
        build_run_spec("t", params={"r": "abc"}, plan_roots=[root])
    assert str(e.value) == "-p: param 'r' (float): expected a number, got 'abc'"
    # the command line's text is typed by the param, as ever
    assert build_run_spec("t", params={"r": "0.25"}, plan_roots=[root]).groups[0].params == {
        "r": 0.25}


def test_composition_groups_with_counts_percentages_and_programs(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_plan("demo", MANIFEST, PLAN_PY)
    comp = tmp_path / "c.toml"
    comp.write_text("""
[global]
plan = "demo"
total_instances = 10
  [global.params]
  speed = 3.0
[[groups]]
id = "old"
instances = { percentage = 30 }
program = ["python", "-m", "old_node"]
  [groups.params]
  verbose = true
[[groups]]
id = "new"
instances = { percentage = 70 }
""")
    spec = build_run_spec("", composition=comp, plan_roots=[root])
    assert [(g.id, g.count) for g in spec.groups] == [("old", 3), ("new", 7)]
    old, new = spec.instances[0], spec.instances[3]
    assert (old.id, old.program, old.params["verbose"], old.params["speed"]) == (
        "old/0", ("python", "-m", "old_node"), True, 3.0)
    assert (new.id, new.global_seq, new.program, new.params["verbose"]) == ("new/0", 3, None, False)


def test_a_composition_timeout_past_64_bits_is_kept_as_seconds(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    """An int above 2**63 passed the checks and crashed the run's record (orjson)."""
    root = make_plan("demo", MANIFEST, PLAN_PY)
    comp = tmp_path / "c.toml"
    comp.write_text("[global]\ntimeout = 99999999999999999999\n")
    spec = build_run_spec("demo", composition=comp, plan_roots=[root])
    assert spec.timeout_s == 1e20 and isinstance(spec.timeout_s, float)


@pytest.mark.parametrize("text", ["9" * 400 + "s", "9" * 400 + "h"])
def test_a_duration_past_any_float_is_refused(text: str) -> None:
    """It read as inf: a run started, and an instance crashed on its None (JSON's null)."""
    with pytest.raises(ValueError, match="is not a finite duration"):
        parse_duration(text)


def test_groups_that_disagree_on_a_role_count_are_refused(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    """Each group's roles were drawn from its own count: with poets = 2 in the second group
    only, its instances were told of two PoETs and the run had one (old/0), unsaid."""
    root = make_plan("demo", MANIFEST, PLAN_PY)
    comp = tmp_path / "c.toml"
    body = ('[global]\nplan = "demo"\n[[groups]]\nid = "old"\ninstances = { count = 3 }\n'
            '[[groups]]\nid = "new"\ninstances = { count = 3 }\n')
    comp.write_text(body + "  [groups.params]\n  poets = 2\n")
    with pytest.raises(UsageError, match="groups 'old' and 'new' set 'poets' to 1 and 2"):
        build_run_spec("", composition=comp, plan_roots=[root])
    comp.write_text(body + "  [groups.params]\n  speed = 2.0\n")  # not a role count: fine
    spec = build_run_spec("", composition=comp, plan_roots=[root])
    assert [i.role for i in spec.instances] == ["poet", "gateway"] + ["miner"] * 4


@pytest.mark.parametrize(("total", "groups", "counts"), [
    (5, ["percentage = 50", "percentage = 50"], [3, 2]),  # each rounded: 2 and 2, refused
    (10, ["percentage = 33", "percentage = 33", "percentage = 34"], [3, 3, 4]),
    (10, ["count = 1", "percentage = 45", "percentage = 45"], [1, 5, 4]),
    (7, ["percentage = 10", "percentage = 60", "percentage = 30"], [1, 4, 2]),
])
def test_percentages_that_add_up_give_every_instance_to_the_largest_remainders(
    make_plan: Callable[..., Path], tmp_path: Path, total: int, groups: list[str],
    counts: list[int],
) -> None:
    root = make_plan("demo", MANIFEST, PLAN_PY)
    comp = tmp_path / "c.toml"
    comp.write_text(f"[global]\nplan = \"demo\"\ntotal_instances = {total}\n" + "".join(
        f"[[groups]]\nid = \"g{i}\"\ninstances = {{ {g} }}\n" for i, g in enumerate(groups)))
    spec = build_run_spec("", composition=comp, plan_roots=[root])
    assert [g.count for g in spec.groups] == counts


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[global]\ntotal_instances = 10\n[[groups]]\nid = "a"\ninstances = { percentage = 50 }'
         '\n[[groups]]\nid = "b"\ninstances = { percentage = 60 }',
         "add up to 11 instances, not the 10"),
        ('[global]\ntotal_instances = 5\n[[groups]]\nid = "a"\ninstances = { percentage = 99 }'
         '\n[[groups]]\nid = "b"\ninstances = { percentage = 1 }', "1% of 5 is 0 instances"),
        # apportioned to fit before: 2 and 1 of 3, 2 and 2 of 4, 3 and 2 of 5
        ('[global]\ntotal_instances = 3\n[[groups]]\nid = "a"\ninstances = { percentage = 60 }'
         '\n[[groups]]\nid = "b"\ninstances = { percentage = 60 }',
         r"add up to 3.6 instances, not the 3 asked for \(demo:main\): 120% of 3$"),
        ('[global]\ntotal_instances = 4\n[[groups]]\nid = "a"\ninstances = { percentage = 70 }'
         '\n[[groups]]\nid = "b"\ninstances = { percentage = 70 }', "140% of 4"),
        ('[global]\ntotal_instances = 5\n[[groups]]\nid = "a"\ninstances = { percentage = 40 }'
         '\n[[groups]]\nid = "b"\ninstances = { percentage = 40 }', "add up to 4 instances"),
        ('[global]\ntotal_instances = 5\n[[groups]]\nid = "a"\ninstances = { count = 1 }'
         '\n[[groups]]\nid = "b"\ninstances = { percentage = 100 }',
         "add up to 6 instances, not the 5 asked for .*: 100% of 5 and 1 counted"),
        ('[[groups]]\nid = "a"\ninstances = { count = 0 }', "count must be at least 1, not 0"),
        ('[[groups]]\nid = "a"\ninstances = { percentage = 50 }', "uses a percentage"),
        ('[global]\ntotal_instances = 5\n[[groups]]\nid = "a"\ninstances = { count = 4 }',
         "add up to 4 instances, not the 5"),
        ('[[groups]]\nid = "a/b"\ninstances = { count = 4 }', "'a/b' is not a safe name"),
        ("[globl]\n", "unknown key globl; known: faults, global, groups"),
        # typos must not pass silently (the run would use the defaults and pass)
        ('[[groups]]\nid = "a"\ninstances = { count = 4 }\n[groups.parms]\nspeed = 2',
         "\\[\\[groups\\]\\]: unknown key parms"),
        ("[global]\ntotal_instance = 4\n", "\\[global\\]: unknown key total_instance"),
        ('[[groups]]\nid = "a"\ninstances = { cout = 4 }', "unknown key cout"),
        ("[[groups]\n", "composition"),
        # integers beyond any float: OverflowError tracebacks
        (f"[global]\ntimeout = {BIG}\n", r"\[global\] timeout must be a finite number"),
        (f'[global]\ntotal_instances = 4\n[[groups]]\nid = "a"\ninstances = {{ '
         f"percentage = {BIG} }}", "percentage must be a finite number"),
        (f"[global.params]\nspeed = {BIG}\n", "param 'speed' \\(float\\): int too large"),
        (f'[[faults]]\nat = {BIG}\naction = "kill"\ntargets = {{ role = "miner" }}\n',
         "at"),
        ('[global]\ntotal_instances = 1000000\n[[groups]]\nid = "a"\n'
         "instances = { percentage = 100 }", "takes 3 to 10 instances, not 1000000"),
    ],
)
def test_bad_compositions(make_plan: Callable[..., Path], tmp_path: Path, body: str,
                          message: str) -> None:
    root = make_plan("demo", MANIFEST)
    comp = tmp_path / "c.toml"
    comp.write_text(body)
    with pytest.raises(UsageError, match=message):
        build_run_spec("demo", composition=comp, plan_roots=[root])


def test_a_case_s_own_faults_play_unless_a_composition_or_a_faults_file_gives_the_run_some(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    """A case whose faults lived in its composition alone (spacemesh:failed_nodes) ran
    without them when run by name, and passed having killed nobody."""
    root = make_plan("demo", MANIFEST + '  [[testcases.faults]]\n  at = "2s"\n  action = "kill"'
                     '\n  targets = { role = "miner", count = 1 }\n', PLAN_PY)
    own = build_run_spec("demo", plan_roots=[root]).faults
    assert [(f.action, f.at) for f in own] == [("kill", 2.0)]
    file = tmp_path / "faults.toml"
    file.write_text('[[faults]]\nat = "3s"\naction = "pause"\ntargets = { role = "miner" }\n')
    by_file = build_run_spec("demo", plan_roots=[root], faults=file).faults
    assert [(f.action, f.at) for f in by_file] == [("pause", 3.0)]
    # the faults themselves, as a file would give them (none: the case's own go too)
    assert build_run_spec("demo", plan_roots=[root], faults=by_file).faults == by_file
    # ... or as the tables a file holds, and a file named by a str
    tables = [f.to_data() for f in by_file]
    assert build_run_spec("demo", plan_roots=[root], faults=tables).faults == by_file
    assert build_run_spec("demo", plan_roots=[root], faults=str(file)).faults == by_file
    with pytest.raises(FaultError, match=r"^faults\[0\]: must be a table"):
        build_run_spec("demo", plan_roots=[root], faults=[None])
    with pytest.raises(FaultError, match=r"^faults: a faults file's path or a list of faults, "
                                         r"not a dict$"):
        build_run_spec("demo", plan_roots=[root], faults=tables[0])
    assert build_run_spec("demo", plan_roots=[root], faults=()).faults == ()
    comp = tmp_path / "c.toml"
    comp.write_text('[global]\nplan = "demo"\ntotal_instances = 4\n'
                    '[[faults]]\nat = "4s"\naction = "stop"\ntargets = { role = "miner" }\n')
    by_comp = build_run_spec("demo", composition=comp, plan_roots=[root], faults=file).faults
    assert [(f.action, f.at) for f in by_comp] == [("stop", 4.0), ("pause", 3.0)]
    plain = tmp_path / "plain.toml"
    plain.write_text('[global]\nplan = "demo"\ntotal_instances = 4\n')
    assert build_run_spec("demo", composition=plain, plan_roots=[root]).faults == own
    none = tmp_path / "none.toml"
    none.write_text('faults = []\n[global]\nplan = "demo"\ntotal_instances = 4\n')
    assert build_run_spec("demo", composition=none, plan_roots=[root]).faults == ()


def test_an_error_in_a_fault_names_the_file_and_table_it_was_written_in(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    """A case's own fault past `--timeout` said only "fault 0", which the command line and
    the composition did not have: the user could not tell it came from the manifest."""
    root = make_plan("demo", MANIFEST + '  [[testcases.faults]]\n  at = "2s"\n  action = "kill"'
                     '\n  targets = { role = "miner", count = 1 }\n', PLAN_PY)
    manifest = root / "demo" / "manifest.toml"
    with pytest.raises(FaultError, match=re.escape(
            f"demo:main: fault 0 in {manifest} [main] [[testcases.faults]][0] (kill) is at 2s, "
            "not before the run's timeout (2s)")):
        build_run_spec("demo", plan_roots=[root], timeout_s=2)
    comp = tmp_path / "c.toml"
    comp.write_text('[global]\nplan = "demo"\ntotal_instances = 4\n'
                    '[[faults]]\nat = "1s"\naction = "stop"\ntargets = { role = "miner" }\n')
    file = tmp_path / "f.toml"
    file.write_text('[[faults]]\nat = "1s"\naction = "kill"\n'
                    'targets = { instances = ["nobody/7"] }\n')
    with pytest.raises(FaultError, match=re.escape(
            f"fault 1 in faults file {file} faults[0] (kill): targets: ")):
        build_run_spec("demo", composition=comp, plan_roots=[root], faults=file)
    with pytest.raises(FaultError, match=re.escape(
            "fault 1 in the given faults[0] (kill): targets: ")):
        build_run_spec("demo", composition=comp, plan_roots=[root], faults=load_faults(file))
    comp.write_text(comp.read_text().replace('role = "miner"', 'instances = ["nobody/7"]'))
    with pytest.raises(FaultError, match=re.escape(
            f"fault 0 in composition {comp} [[faults]][0] (stop): targets: ")):
        build_run_spec("demo", composition=comp, plan_roots=[root])


def test_the_spacemesh_cases_play_their_go_spacemesh_faults_when_run_by_name() -> None:
    """Each system-test case whose go-spacemesh test breaks the network does so at its
    default size too (tests/spacemesh/test_systest_live.py runs them, `long`)."""
    actions = {case: sorted({f.action for f in build_run_spec(f"spacemesh:{case}").faults})
               for case in ("failed_nodes", "partition_30_70", "partition_50_50",
                            "poets_failures", "short_timeskew", "checkpoint", "smeshing")}
    assert actions == {"failed_nodes": ["kill"], "partition_30_70": ["partition"],
                       "partition_50_50": ["partition"], "poets_failures": ["kill"],
                       "short_timeskew": ["skew"], "checkpoint": ["restart"], "smeshing": []}
    # Two different PoETs, by role: ids broke a composition with groups of its own.
    spec = build_run_spec("spacemesh:poets_failures", instances=12)
    chosen = [f.targets.resolve(spec.members, "t") for f in spec.faults]
    roles = {i.id: i.role for i in spec.instances}
    assert len(set(chosen)) == 2 and all(roles[i] == "poet" for c in chosen for i in c)


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ('name = "x"\n', "no \\[\\[testcases\\]\\]"),
        ('name = "x"\n[[testcases]]\nname = "a"\ninstances = { min = 2, max = 1 }\n'
         'entrypoint = "a:b"', "min <= default <= max"),
        ('name = "x"\n[[testcases]]\nname = "a"\ninstances = { min = 1, max = 1 }',
         "exactly one of entrypoint or program"),
        ('name = "x"\n[[testcases]]\nname = "a"\ninstances = { min = 1, max = 1 }\n'
         'entrypoint = "a:b"\n[testcases.params]\nn = { type = "complex", default = 1 }',
         "type 'complex'"),
        ('name = "x"\n[[testcases]]\nname = "a"\ninstances = { min = 1, max = 1 }\n'
         'entrypoint = "a:b"\n[testcases.params]\nn = { type = "int", default = "x" }',
         "param 'n' \\(int\\)"),
        ('name = "x"\n[[testcases]]\nname = "a"\ninstances = { min = 1, max = 1 }\n'
         'entrypoint = "a:b"\ntimout = 5', "\\[a\\]: unknown key timout"),
        ('name = "x"\ndescripton = "y"\n[[testcases]]\nname = "a"\n'
         'instances = { min = 1, max = 1 }\nentrypoint = "a:b"', "unknown key descripton"),
        ('name = "x"\n[[testcases]]\nname = "a"\ninstances = { min = 1, max = 1 }\n'
         'entrypoint = "a:b"\nbackend = "curio"', "backend must be one of trio, asyncio, uvloop"),
        # a param -p could never set
        ('name = "x"\n[[testcases]]\nname = "a"\ninstances = { min = 1, max = 1 }\n'
         'entrypoint = "a:b"\n[testcases.params]\n"a=b" = { type = "int", default = 1 }',
         "param 'a=b' is not a safe name"),
        ('name = "x"\n[[testcases]]\nname = "a"\ninstances = { min = 1, max = 1 }\n'
         'entrypoint = "a:b"\n[testcases.params]\n" sp" = { type = "int", default = 1 }',
         "param ' sp' is not a safe name"),
        # listed as "p:q:a", which `harness run p:q` took for plan p, case q
        ('name = "p:q"\n[[testcases]]\nname = "a"\ninstances = { min = 1, max = 1 }\n'
         'entrypoint = "a:b"', "plan name 'p:q' is not a safe name"),
        ('name = "x"\n[[testcases]]\nname = "a:b"\ninstances = { min = 1, max = 1 }\n'
         'entrypoint = "a:b"', "test case name 'a:b' is not a safe name"),
        # a case's own faults are checked as a composition's are
        ('name = "x"\n[[testcases]]\nname = "a"\ninstances = { min = 1, max = 1 }\n'
         'entrypoint = "a:b"\n[[testcases.faults]]\nat = "1s"\naction = "explode"',
         "\\[a\\] \\[\\[testcases.faults\\]\\]\\[0\\]: .*explode"),
        ('name = "x"\n[[testcases]]\nname = "a"\ninstances = { min = 1, max = 1 }\n'
         'entrypoint = "a:b"\nfaults = 3', "must be a list of tables"),
        ('name = "x"\n[[testcases]]\nname = "a"\ninstances = { min = 1, max = 1 }\n'
         'program = ["true"]\n[[testcases.faults]]\nat = "1s"\naction = "kill"\n'
         'targets = { instances = ["g/7"] }', "g/7"),
    ],
)
def test_bad_manifests(make_plan: Callable[..., Path], manifest: str, message: str) -> None:
    root = make_plan("x", manifest)
    with pytest.raises(UsageError, match=message):
        build_run_spec("x", plan_roots=[root])


def test_durations() -> None:
    assert parse_duration("250ms") == 0.25
    assert parse_duration("2s") == 2.0
    assert parse_duration("1.5m") == 90.0
    assert parse_duration("3") == 3.0
    with pytest.raises(ValueError):
        parse_duration("-1s")


@pytest.mark.parametrize(
    "args",
    [
        ["run", "nosuchplan"],
        ["run", "pingpong:nosuchcase"],
        ["run", "pingpong", "-i", "201"],
        ["run", "pingpong", "-p", "rounds=lots"],
        ["run", "pingpong", "-p", "norounds"],
        ["run", "pingpong", "--composition", "/nonexistent.toml"],
        ["run", "pingpong", "-i", "many"],
        ["describe", "nosuchplan"],
        ["describe", "pingpong:nosuchcase"],
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args: list[str], tmp_path: Path) -> None:
    r = harness_cli(*args, "--outputs", str(tmp_path)) if args[0] == "run" else harness_cli(*args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness"), r.stderr
    assert "Traceback" not in r.stderr and not r.stdout, r.stdout
    assert not any(tmp_path.iterdir())  # nothing was started or written


def test_list_and_describe_show_the_example_plan() -> None:
    r = harness_cli("list")
    assert r.returncode == 0 and "pingpong:ping" in r.stdout
    lines = r.stdout.splitlines()
    assert len({line.index(" instances ") for line in lines}) == 1, lines  # one column
    r = harness_cli("describe", "pingpong")
    assert r.returncode == 0 and "rounds" in r.stdout and "int" in r.stdout


def test_describe_takes_a_case_as_list_names_it() -> None:
    """`harness describe pingpong:crash`, copied from `harness list`, said "unknown plan
    'pingpong:crash' (known: ..., pingpong, ...)"."""
    r = harness_cli("describe", "pingpong:crash")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("plan pingpong") and "\ncase crash:" in r.stdout, r.stdout
    assert r.stdout.count("\ncase ") == 1 and "rounds" in r.stdout, r.stdout


def test_output_cut_short_by_the_reader_is_no_error() -> None:
    """`harness describe spacemesh | head -1`: no traceback when the pipe closes."""
    import subprocess
    import sys

    from .conftest import ROOT

    r = subprocess.run(
        f"{sys.executable} -m harness describe spacemesh | head -1",
        shell=True, capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert r.stdout.startswith("plan spacemesh")
    assert "Traceback" not in r.stderr and "Error" not in r.stderr, r.stderr


def test_describe_prints_the_params_every_case_shares_once() -> None:
    """A plan whose cases share params (spacemesh's [params]) lists them once; each case
    then says only what it sets."""
    r = harness_cli("describe", "spacemesh")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.count("genesis_offset ") == 1, out  # declared once, not once per case
    assert out.count("\ncase ") >= 12
    smeshing = out.split("\ncase smeshing:")[1].split("\ncase ")[0]
    assert "transfers=3" in smeshing and "check_state=True" in smeshing
    assert "genesis_offset" not in smeshing


def test_a_plan_folder_named_twice_is_read_once(make_plan: Callable[..., Path]) -> None:
    """`--plans p --plans ./p` (or HARNESS_PLANS=/x:/x) said "two plans are named ..."."""
    root = make_plan("x", 'name = "x"\n[[testcases]]\nname = "a"\n'
                          'instances = { min = 1, max = 1 }\nentrypoint = "x.plan:a"',
                     "async def a(env):\n    pass\n")
    spec = build_run_spec("x", plan_roots=[root, root / ".." / root.name])
    assert spec.plan.name == "x"


def test_a_case_that_is_not_the_compositions_is_refused() -> None:
    """`run pingpong:crash --composition two-groups.toml` (whose case is ping) ran crash,
    with groups and params written for ping."""
    comp = Path(__file__).resolve().parents[1] / "scenarios/pingpong/compositions/two-groups.toml"
    with pytest.raises(UsageError, match=r"names case 'crash' but composition .* names case "
                                         r"'ping'"):
        build_run_spec("pingpong:crash", composition=comp)
    assert build_run_spec("pingpong:ping", composition=comp).case.name == "ping"
