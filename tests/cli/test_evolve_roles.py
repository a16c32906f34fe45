"""``evolve --role ROLE``: dialogue roles play real counterparts (so the metric has signal), every engine
role compiles from the CLI, and tasks can come from a synth run directory. Scripted LMs throughout."""

from __future__ import annotations

import asyncio
import json

import pytest

import eigendspy.domains as domains
from eigendspy.agents import Assistant, TaskValidator, TrajectoryValidator, UserSimulator
from eigendspy.cli import evolve as evolve_cli
from eigendspy.cli.app import main
from eigendspy.core.oracle import OracleAssistant, OracleUser
from eigendspy.engine.config import EngineConfig
from eigendspy.engine.engine import DataEngine
from eigendspy.engine.store.store import RunManifest, RunStore
from eigendspy.lm import config as lm_config
from eigendspy.optimizers.evolve import evaluate_program, load_compiled
from eigendspy.optimizers.role_programs import (
    EVOLVABLE,
    accepted_tasks,
    counterpart,
    evolve_role,
    role_setup,
    run_plans,
    task_validator_items,
)
from eigendspy.testing import roles as sr
from eigendspy.testing.lm import scripted_lm

ORACLE_OPENING = "Hi, I need help"
REJECTED_SUFFIX = "_t1"  # the scripted task judge rejects these tasks, so the run holds rejected tasks too


GET_DOMAIN = domains.get_domain  # the real one, also while a test patches it


def big_mock():
    return GET_DOMAIN("mock", num_users=8, tasks_per_user=5)


def picky_task_judge(req):
    first_line = req.inputs.get("task", "").splitlines()[0]
    if first_line.endswith(REJECTED_SUFFIX):
        return {"policy_consistent": True, "solvable": False, "scenario_sufficient": True, "reasons": ["unsolvable"]}
    return sr.task_judge(req)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A synth run on scripted roles: accepted tasks, rejected tasks and their plans."""
    root = tmp_path_factory.mktemp("synth") / "run"
    config = EngineConfig(domain="mock", streams=3, rounds=2, tasks_per_round=3, episodes_per_task=1, max_repairs=0)
    store = RunStore.create(root, RunManifest(config=config, seed=config.seed, domain="mock"))
    try:
        asyncio.run(DataEngine(big_mock(), sr.scripted_roles(task_judge=picky_task_judge), store, config).run())
    finally:
        store.close()
    return root


@pytest.fixture(scope="module")
def tasks(run_dir):
    return accepted_tasks(run_dir)


def lms(**policies):
    chosen = {"user": sr.user, "assistant": sr.assistant, "generator": sr.generator, "task_validator": sr.task_judge,
              "trajectory_validator": sr.trajectory_judge, "reflector": sr.reflector, **policies}
    return {role: scripted_lm(policy, model=f"scripted/{role}") for role, policy in chosen.items()}


def transcript(episode) -> str:
    return "\n".join(f"{m.role}: {m.content or ''}" for m in episode.messages)


def lazy_assistant(req):  # claims success without ever calling a tool
    return {"response": "All done, it is completed.", "tool_calls": []}


# --- tasks from a run directory ----------------------------------------------------------------------------


def test_tasks_from_a_run_are_its_accepted_tasks_and_plans(run_dir, tasks):
    with RunStore.open(run_dir, read_only=True) as store:
        records = list(store.task_records())
    accepted = {r.task.id for r in records if r.accepted}
    rejected = {r.task.id for r in records if not r.accepted and r.task is not None}
    assert {r.task.id for r in records if r.task is not None and r.task.id.endswith(REJECTED_SUFFIX)} <= rejected
    assert rejected  # the run holds rejected tasks, which evolve must not use
    assert [t.id for t in tasks] == [r.task.id for r in records if r.accepted] and len(tasks) >= 4
    assert set(accepted) == {t.id for t in tasks} and not rejected & {t.id for t in tasks}
    assert {p.plan_id for p in run_plans(run_dir)} == {r.plan.plan_id for r in records}


# --- dialogue roles play real counterparts -----------------------------------------------------------------


def test_assistant_plays_the_configured_user_simulator_and_the_metric_has_signal(tasks):
    mock = big_mock()
    good = role_setup("assistant", mock, lms(), tasks, n=2)
    partner = good.program._frozen.partner
    assert isinstance(partner, UserSimulator) and partner.turn.lm.model == "scripted/user"
    assert good.partner == "UserSimulator on scripted/user"
    task = good.valset[0].task
    text = transcript(good.program(task=task).episode)
    target = task.gold_actions[0].arguments["task_id"]
    assert f"user: Please mark {target} as completed." in text and ORACLE_OPENING not in text

    bad = role_setup("assistant", mock, lms(assistant=lazy_assistant), tasks, n=2)
    good_score = evaluate_program(good.program, good.valset, good.metric)
    bad_score = evaluate_program(bad.program, bad.valset, bad.metric)
    assert good_score.mean == 1.0 and bad_score.mean == 0.0  # the user simulator makes the metric discriminate

    # the explicit --user oracle: it opens with a generic line and the same two assistants score alike
    oracle = role_setup("assistant", mock, lms(), tasks, partner=counterpart("assistant", "oracle", lms()), n=2)
    assert isinstance(oracle.program._frozen.partner, OracleUser)
    assert ORACLE_OPENING in transcript(oracle.program(task=task).episode)
    oracle_bad = role_setup("assistant", mock, lms(assistant=lazy_assistant), tasks,
                            partner=OracleUser(), n=2)
    assert evaluate_program(oracle.program, oracle.valset, oracle.metric).mean == \
        evaluate_program(oracle_bad.program, oracle_bad.valset, oracle_bad.metric).mean == 0.0


def test_user_plays_the_configured_assistant(tasks):
    mock = big_mock()
    roles = lms()
    setup = role_setup("user", mock, roles, tasks, n=2)
    partner = setup.program._frozen.partner
    assert isinstance(partner, Assistant) and partner.turn.lm is roles["assistant"]
    task = setup.valset[0].task
    pred = setup.program(task=task)
    target = task.gold_actions[0].arguments["task_id"]
    assert f"Done: {target} is now completed." in transcript(pred.episode)  # the scripted assistant answered
    assert roles["assistant"].call_count >= 2 and setup.metric(setup.valset[0], pred).score == 1.0

    quitter = role_setup("user", mock, lms(user=lambda req: {"message": "Never mind. ###STOP###"}), tasks, n=2)
    assert evaluate_program(quitter.program, quitter.valset, quitter.metric).mean == 0.0
    assert evaluate_program(setup.program, setup.valset, setup.metric).mean == 1.0
    assert isinstance(counterpart("user", "oracle", roles), OracleAssistant)


# --- validators and the generator compile ------------------------------------------------------------------

TRAJECTORY_RULE = "Reject a dialogue in which the agent never calls the write tool the request needs."
TASK_RULE = "Reject a task whose gold actions change nothing the scenario asks for."


def trajectory_judge(req):
    """Lenient until its instruction carries the rule; then it checks the transcript for the write."""
    if TRAJECTORY_RULE in req.instructions and "update_task_status" not in req.inputs.get("transcript", ""):
        return {"passed": False, "blame": "assistant", "reasons": ["no write was made"]}
    return {"passed": True, "blame": "none", "reasons": []}


def task_judge(req):
    if TASK_RULE in req.instructions and "(none: nothing should be changed)" in req.inputs.get("task", ""):
        return {"policy_consistent": True, "solvable": False, "scenario_sufficient": True,
                "reasons": ["the gold actions do not do what the scenario asks"]}
    return sr.task_judge(req)


def rule_reflection(rule):
    def reflect(req):
        current = req.inputs.get("current_instruction", "").strip()
        shown = req.inputs.get("examples_with_feedback", "")
        add = "accepted an item that executable ground truth rejects" in shown and rule not in current
        return {"new_instruction": f"{current} {rule}" if add else current}

    return reflect


@pytest.mark.parametrize(("role", "module", "judge", "rule"), [
    ("trajectory_validator", TrajectoryValidator, trajectory_judge, TRAJECTORY_RULE),
    ("task_validator", TaskValidator, task_judge, TASK_RULE),
])
def test_validators_compile_against_execution_ground_truth(tmp_path, tasks, role, module, judge, rule):
    roles = lms(**{role: judge, "reflector": rule_reflection(rule)})
    compiled, report, setup = evolve_role(role, big_mock(), roles, tasks, optimizer="gepa", budget=24, n=2,
                                          out_dir=tmp_path)
    assert sorted(ex.expected_passed for ex in setup.valset) == [False, False, True, True]
    assert report.before.mean == 0.5 and report.after.mean == 1.0 and report.status == "improved"
    assert (tmp_path / "compiled" / f"{role}.json").exists() and (tmp_path / "report.md").exists()
    assert json.loads((tmp_path / "report.json").read_text())["role"] == role
    bare = load_compiled(module(), tmp_path / "compiled")  # what synth --compiled loads into the role
    assert rule in bare.judge.signature.instructions and rule in compiled.judge.signature.instructions


def test_task_validator_items_are_labelled_by_execution(tasks):
    mock = big_mock()
    items = task_validator_items(mock, tasks[:2])
    assert [ex.expected_passed for ex in items] == [True, False, True, False]
    mutant = items[1]
    assert mutant.task.id == f"{items[0].task.id}_mutant" and mutant.expected_blame == "task"
    assert "the gold actions do not do what the scenario asks" in mutant.truth_reasons[0]
    assert "expected 'completed'" in mutant.truth_reasons[0]  # the checker of the original request says why


# --- the command line --------------------------------------------------------------------------------------


@pytest.fixture
def scripted_cli(monkeypatch):
    """The CLI with scripted role LMs and the run's (larger) mock DB; returns the LMs it built."""
    built = lms()
    monkeypatch.setattr(lm_config, "build_role_lms", lambda cfg: built)
    monkeypatch.setattr(domains, "get_domain",
                        lambda name, **kw: big_mock() if name == "mock" else GET_DOMAIN(name, **kw))
    return built


def cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["evolve", *args])
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def test_generator_compiles_from_the_cli_on_a_runs_plans(tmp_path, capsys, run_dir, scripted_cli):
    out = tmp_path / "evo"
    code, stdout, stderr = cli(capsys, "--role", "generator", "--tasks-from", str(run_dir), "--optimizer",
                               "bootstrap", "--budget", "1", "--n", "2", "--out", str(out))
    assert code == 0, stderr
    assert (out / "compiled" / "generator.json").exists() and (out / "compiled" / "generator.v1.json").exists()
    report = json.loads((out / "report.json").read_text())
    assert report["role"] == "generator" and report["trainset_size"] == report["valset_size"] == 2
    assert f"tasks from {run_dir}" in " ".join(stdout.split()) and "6 plans" in stdout
    assert scripted_cli["generator"].call_count > 0


def test_assistant_from_the_cli_plays_the_user_simulator(tmp_path, capsys, run_dir, scripted_cli):
    code, stdout, stderr = cli(capsys, "--role", "assistant", "--tasks-from", str(run_dir), "--optimizer",
                               "bootstrap", "--budget", "1", "--n", "2", "--out", str(tmp_path / "evo"))
    assert code == 0, stderr
    assert "partner UserSimulator on scripted/user" in stdout and scripted_cli["user"].call_count > 0
    report = json.loads((tmp_path / "evo" / "report.json").read_text())
    assert report["role"] == "assistant" and report["before"]["mean"] == 1.0


def test_the_cli_offers_every_role_the_library_builds():
    assert evolve_cli.EVOLVABLE == EVOLVABLE  # spelled twice: the CLI's help text must not import DSPy


@pytest.mark.parametrize(("args", "needles"), [
    (["--role", "planner"], ["--role 'planner'", "trajectory_validator"]),
    (["--role", "generator", "--user", "oracle"], ["--user", "drop --user"]),
    (["--role", "user", "--user", "oracle"], ["--user", "with --assistant"]),
    (["--role", "assistant", "--assistant", "oracle"], ["--assistant", "with --user"]),
    (["--budget", "huge"], ["--budget 'huge'", "positive number"]),
    (["--optimizer", "simba"], ["--optimizer 'simba'", "gepa"]),
    (["--n", "0"], ["--n 0"]),
    (["--user", "bogus:x"], ["--user 'bogus:x'", "model:<dir>"]),
    (["--assistant", "vllm:http://h:1#m", "--role", "user"], ["--assistant", "--partner-tokenizer"]),
])
def test_argument_errors_are_one_line_naming_the_flag(capsys, monkeypatch, args, needles):
    monkeypatch.setattr(lm_config, "build_role_lms", lambda cfg: pytest.fail("an LM was built"))
    code, _, stderr = cli(capsys, *args)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ")
    assert all(needle in lines[0] for needle in needles), lines[0]


def test_run_directory_errors_name_the_flag(tmp_path, capsys, run_dir, scripted_cli):
    code, _, stderr = cli(capsys, "--tasks-from", str(tmp_path))
    assert code == 2 and "--tasks-from" in stderr and "not a run directory" in stderr
    code, _, stderr = cli(capsys, "--tasks-from", str(run_dir), "--domain", "retail")
    assert code == 2 and "holds mock tasks" in stderr and "--domain mock" in stderr
    code, _, stderr = cli(capsys, "--user", f"model:{tmp_path / 'missing'}", "--tasks-from", str(run_dir),
                          "--optimizer", "bootstrap")
    assert code == 2 and "--user" in stderr and "does not exist" in stderr
