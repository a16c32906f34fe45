"""DSPy compatibility of the role programs: BootstrapFewShot (ours and stock) compiles AssistantEpisode and
improves it; stock GEPA, MIPROv2 and BootstrapFewShot keep a role's own LM (no global LM configured); every
role program survives deepcopy, pickling of its traced calls and save/load with a ScriptedLM attached."""

from __future__ import annotations

import copy
import pickle
import random
import re

import dspy
import pytest

import eigendspy.testing.optimizers as il
from eigendspy.agents import (
    Assistant,
    MetaPlanner,
    Reflector,
    TaskGenerator,
    TaskValidator,
    TrajectoryValidator,
    UserSimulator,
)
from eigendspy.agents.assistant import schema_tools
from eigendspy.agents.task_generator import draft_to_task
from eigendspy.core.orchestrator import Orchestrator, run_sync
from eigendspy.domains import get_domain
from eigendspy.domains.mock import generate_db
from eigendspy.engine.entities import sample_entities
from eigendspy.optimizers.engine_program import EngineProgram
from eigendspy.optimizers.evolve import evaluate_program, evolve
from eigendspy.optimizers.metrics import (
    AssistantEpisode,
    TaskGeneration,
    UserEpisode,
    as_bool_metric,
    assistant_metric,
)
from eigendspy.optimizers.report import load_compiled, save_compiled
from eigendspy.optimizers.role_lms import compile_keeping_lms, keep_role_lms, keeping_role_lms, record_role_lms
from eigendspy.signatures.task_generator import ActionDraft, TaskDraft
from eigendspy.testing import roles as sr
from eigendspy.testing.lm import (
    ScriptedLM,
    ScriptedToolCall,
    ScriptedToolCalls,
    ScriptExhaustedError,
    UnsavedPolicy,
    message_text,
    scripted_lm,
)

STATUS_SENTENCE = "is now completed"  # what the checker wants said: "completed"


@pytest.fixture(scope="module")
def mock():
    return get_domain("mock", num_users=8, tasks_per_user=5)


def phrased_task(domain, task_id: str, word: str, tid: str):
    """A "mark this task done" task whose user says ``word`` ("completed" or "done"); the checker wants
    the agent to say "completed" (COMMUNICATE) and the DB to hold the new status."""
    draft = TaskDraft(
        persona="a busy team member", reason_for_call=f"You finished {task_id} and want it closed.",
        known_info=f"The task id is {task_id}.", task_instructions=f"Ask the agent to mark {task_id} as {word}.",
        actions=[ActionDraft(name="update_task_status", arguments={"task_id": task_id, "status": "completed"})],
        communicate_info=["completed"], reward_basis=["DB", "COMMUNICATE"])
    return draft_to_task(draft, domain, tid)


def examples(domain, words: list[str], offset: int = 0) -> list[dspy.Example]:
    pending = [t.task_id for t in generate_db(0, num_users=8, tasks_per_user=5).tasks.values()
               if t.status == "pending"][offset:]
    return [dspy.Example(task=phrased_task(domain, pending[i], word, f"t{offset + i}")).with_inputs("task")
            for i, word in enumerate(words)]


def user_in_own_words(req):
    """Asks in its scenario's words and stops after the agent's "Done"."""
    if "Done" in req.inputs.get("dialogue", ""):
        return {"message": "Thanks, that's all. ###STOP###"}
    ask = re.search(r"mark (task_\d+) as (\w+)", req.inputs.get("scenario", ""))
    return {"message": f"Please mark {ask.group(1)} as {ask.group(2)}."}


def imitating_assistant(req):
    """A weak model that echoes the user's word in its closing message — unless a demo in its prompt uses the
    word "completed" (a closing message or the status of a tool call), which it then imitates. Only
    "completed" passes the checker's COMMUNICATE check."""
    dialogue = req.inputs.get("dialogue", "")
    ask = re.search(r"mark (task_\d+) as (\w+)", dialogue)
    if ask is None:
        return {"response": "Which task should I update?", "tool_calls": []}
    task, word = ask.groups()
    if "[tool result" not in dialogue:
        call = ScriptedToolCall(name="update_task_status", arguments={"task_id": task, "status": "completed"})
        return ScriptedToolCalls(calls=[call], outputs={"response": ""})
    demo_shows_it = any(m["role"] == "assistant" and "completed" in message_text(m) for m in req.messages)
    if word == "completed" or demo_shows_it:
        return {"response": f"Done: {task} {STATUS_SENTENCE}.", "tool_calls": []}
    return {"response": f"Done, {task} is {word} now.", "tool_calls": []}


def bootstrap_case(domain):
    """(program with its own assistant LM, trainset, held-out valset, assistant LM)."""
    assistant_lm = scripted_lm(imitating_assistant, model="scripted/assistant")
    user = UserSimulator(lm=scripted_lm(user_in_own_words, model="scripted/user"))
    program = AssistantEpisode(domain, Assistant(lm=assistant_lm), user=user)
    train = examples(domain, ["completed", "done", "completed", "completed"])
    val = examples(domain, ["done", "done", "done"], offset=4)
    return program, train, val, assistant_lm


def no_global_lm() -> None:
    assert dspy.settings.lm is None  # conftest resets settings: any LM used below is a role's own


# --- BootstrapFewShot on AssistantEpisode --------------------------------------------------------------------


def test_our_bootstrap_compiles_the_assistant_episode_and_improves_it_keeping_its_lm(mock, tmp_path):
    no_global_lm()
    program, train, val, assistant_lm = bootstrap_case(mock)
    compiled, report = evolve(program, train, val, assistant_metric(mock), optimizer="bootstrap", budget=4,
                              out_dir=str(tmp_path))
    assert report.before.mean == 0.0 and report.after.mean == 1.0 and report.status == "improved"
    assert report.after.errors == 0
    demos = compiled.assistant.turn.demos
    assert len(demos) == 3  # one turn of each passing episode; the failed "done" episode gave none
    assert all("as completed" in d["dialogue"] and "as done" not in d["dialogue"] for d in demos)
    assert compiled.assistant.turn.lm is assistant_lm
    assert program.assistant.turn.demos == [] and program.assistant.turn.lm is assistant_lm  # input untouched

    # the saved artifact (no LMs in it) restores the demos into a bare role with its own LM
    fresh = AssistantEpisode(mock, Assistant(lm=assistant_lm), user=program._frozen.partner)
    load_compiled(fresh, tmp_path / "compiled")
    assert len(fresh.assistant.turn.demos) == len(demos) and fresh.assistant.turn.lm is assistant_lm
    assert evaluate_program(fresh, val, assistant_metric(mock)).mean == 1.0


def test_stock_bootstrap_fewshot_drops_the_role_lm_and_keep_role_lms_restores_it(mock, caplog):
    no_global_lm()
    program, train, val, assistant_lm = bootstrap_case(mock)
    optimizer = dspy.BootstrapFewShot(metric=as_bool_metric(assistant_metric(mock)), max_bootstrapped_demos=4,
                                      max_labeled_demos=0)
    bare = optimizer.compile(program, trainset=train)
    assert bare.assistant.turn.lm is None and bare.assistant.turn.demos  # DSPy's reset_copy: compiled, LM gone
    with caplog.at_level("WARNING", logger="eigendspy.core.orchestrator"):
        assert bare(task=val[0].task).check.reward == 0.0
    assert "No LM is loaded" in caplog.text  # the episode's assistant failed: it has no LM to call

    calls = assistant_lm.call_count
    compiled = compile_keeping_lms(dspy.BootstrapFewShot(metric=as_bool_metric(assistant_metric(mock)),
                                                         max_bootstrapped_demos=4, max_labeled_demos=0),
                                   program, trainset=train)
    assert compiled.assistant.turn.lm is assistant_lm and compiled._frozen.partner is program._frozen.partner
    assert evaluate_program(program, val, assistant_metric(mock)).mean == 0.0
    assert evaluate_program(compiled, val, assistant_metric(mock)).mean == 1.0
    assert assistant_lm.call_count > calls


# --- stock GEPA and MIPROv2 keep the role's LM ---------------------------------------------------------------


def status_case(domain):
    """The instruction-dependent assistant of `eigendspy.testing.optimizers` (it names the new status only
    when its instruction says so), with its own LM."""
    pending = [t.task_id for t in generate_db(0, num_users=8, tasks_per_user=5).tasks.values()
               if t.status == "pending"]
    train = [dspy.Example(task=phrased_task(domain, t, "completed", f"s{i}")).with_inputs("task")
             for i, t in enumerate(pending[:3])]
    assistant_lm = scripted_lm(il.episode_assistant_policy, model="scripted/assistant")
    user = UserSimulator(lm=scripted_lm(il.episode_user_policy, model="scripted/user"))
    return AssistantEpisode(domain, Assistant(lm=assistant_lm), user=user), train, assistant_lm


def test_stock_gepa_keeps_the_role_lm(mock):
    no_global_lm()
    program, train, assistant_lm = status_case(mock)
    reflection_lm = scripted_lm(il.episode_reflection_policy, model="scripted/reflect")
    gepa = dspy.GEPA(metric=assistant_metric(mock), reflection_lm=reflection_lm, max_metric_calls=12, seed=0)
    compiled = compile_keeping_lms(gepa, program, trainset=train, valset=train)
    turn = compiled.assistant.turn
    assert turn.lm is assistant_lm and il.STATUS_RULE in turn.signature.instructions
    assert reflection_lm.call_count >= 1
    calls = assistant_lm.call_count
    assert evaluate_program(compiled, train, assistant_metric(mock)).mean == 1.0
    assert assistant_lm.call_count > calls
    assert evaluate_program(program, train, assistant_metric(mock)).mean == 0.0  # the seed instruction fails


def status_prompt_model(req):
    """MIPROv2's prompt model: describes the data and proposes the seed instruction plus the status rule."""
    fields = req.output_fields
    if "observations" in fields:
        return {"observations": "Users ask the agent to mark a task completed."}
    if "summary" in fields:
        return {"summary": "Users ask the agent to mark a task completed."}
    if "program_description" in fields:
        return {"program_description": "A customer-service agent plays one dialogue per task."}
    if "module_description" in fields:
        return {"module_description": "Calls tools or answers the user."}
    if "proposed_instruction" in fields:
        return {"proposed_instruction": f"You are a task desk agent. {il.STATUS_RULE}"}
    raise AssertionError(f"unexpected prompt-model request for {fields}")


def test_stock_miprov2_keeps_the_role_lm(mock):
    no_global_lm()
    program, train, assistant_lm = status_case(mock)
    prompt_lm = scripted_lm(status_prompt_model, model="scripted/prompt")
    unused = scripted_lm(["%%% the task model must not answer for a role that has its own LM %%%"], model="x/unused")
    metric = assistant_metric(mock)
    mipro = dspy.MIPROv2(metric=lambda gold, pred, trace=None: float(metric(gold, pred).score), prompt_model=prompt_lm,
                         task_model=unused, auto=None, num_candidates=2, max_bootstrapped_demos=0, max_labeled_demos=0,
                         seed=0, num_threads=1)
    compiled = compile_keeping_lms(mipro, program, trainset=train, valset=train, num_trials=3, minibatch=False)
    turn = compiled.assistant.turn
    assert turn.lm is assistant_lm and il.STATUS_RULE in turn.signature.instructions
    assert prompt_lm.call_count >= 1 and unused.call_count == 0
    calls = assistant_lm.call_count
    assert evaluate_program(compiled, train, assistant_metric(mock)).mean == 1.0
    assert assistant_lm.call_count > calls
    assert evaluate_program(program, train, assistant_metric(mock)).mean == 0.0  # the seed instruction fails


def test_keep_role_lms_replaces_copies_and_none_but_keeps_a_new_model():
    lm, other = scripted_lm(sr.assistant, model="scripted/a"), scripted_lm(sr.assistant, model="scripted/ft")
    original = Assistant(lm=lm)
    with keeping_role_lms(original) as keep:
        copied, reset, tuned = original.deepcopy(), original.reset_copy(), original.deepcopy()
        tuned.turn.lm = other
    assert copied.turn.lm is not lm and reset.turn.lm is None  # what deepcopy / reset_copy do
    assert keep(copied).turn.lm is lm and keep(reset).turn.lm is lm
    assert keep(tuned).turn.lm is other  # a deliberately different model (e.g. fine-tuned) stays
    assert record_role_lms(Assistant()) == {} and keep_role_lms(Assistant(), {}).turn.lm is None


# --- every role program: deepcopy, pickled traces, save/load with a ScriptedLM attached ---------------------


def role_cases(domain) -> dict[str, tuple[dspy.Module, dict]]:
    """Each role program with scripted LMs attached, and inputs for one call."""
    def a():
        return Assistant(lm=scripted_lm(sr.assistant))

    def u():
        return UserSimulator(lm=scripted_lm(sr.user))

    def g():
        return TaskGenerator(lm=scripted_lm(sr.generator))

    plan = MetaPlanner(lm=scripted_lm(sr.planner))(domain=domain, n=2).plans[0]
    entities = sample_entities(domain, random.Random(0))
    task = g()(domain=domain, plan=plan, entities=entities, task_id="t0").task
    messages = run_sync(Orchestrator(domain, a(), u()).run(task)).messages
    ask = f"user: Please mark {task.evaluation_criteria.actions[-1].arguments['task_id']} as completed."
    drafting = dict(plan=plan, entities=entities)
    return {
        "AssistantEpisode": (AssistantEpisode(domain, a(), user=u()), dict(task=task)),
        "UserEpisode": (UserEpisode(domain, u()), dict(task=task)),
        "TaskGeneration": (TaskGeneration(domain, g()), dict(drafting, task_id="t1")),
        "EngineProgram": (EngineProgram(domain, g(), a(), u()), dict(drafting, task_id="t2")),
        "Assistant": (a(), dict(policy=domain.policy, tools=schema_tools(domain.tool_schemas()), dialogue=ask)),
        "UserSimulator": (u(), dict(scenario=task.user_scenario.render(), dialogue="agent: Hi")),
        "TaskGenerator": (g(), dict(drafting, domain=domain, task_id="t3")),
        "TaskValidator": (TaskValidator(judge_lm=scripted_lm(sr.task_judge)),
                          dict(domain=domain, task=task, plan=plan)),
        "TrajectoryValidator": (TrajectoryValidator(lm=scripted_lm(sr.trajectory_judge)),
                                dict(domain=domain, task=task, messages=messages, plan=plan)),
        "MetaPlanner": (MetaPlanner(lm=scripted_lm(sr.planner)), dict(domain=domain, n=2)),
        "Reflector": (Reflector(lm=scripted_lm(sr.reflector)), dict(plan=plan, failures=["the gold write failed"])),
    }


def demo_counts(program: dspy.Module) -> list[int]:
    return [len(p.demos) for _, p in program.named_predictors()]


def test_every_role_program_survives_deepcopy_pickled_traces_and_save_load(mock, tmp_path):
    no_global_lm()
    cases, twins = role_cases(mock), role_cases(mock)
    assert len(cases) == 11
    for name, (program, inputs) in cases.items():
        lms = record_role_lms(program)
        assert lms, name
        with dspy.context(trace=[]):
            program(**inputs)
            trace = list(dspy.settings.trace)
        assert trace, f"{name}: no predictor call was traced"
        # what BootstrapFewShot keeps and hashes: a demo per traced call (inputs and outputs)
        demos = tuple(dspy.Example(augmented=True, **i, **outputs.toDict()) for _, i, outputs in trace)
        assert pickle.loads(pickle.dumps(demos)) == demos, name
        assert copy.deepcopy(program) is not program
        assert record_role_lms(keep_role_lms(program.deepcopy(), lms)) == lms

        # a demo per predictor in the saved state; the artifact carries no LM (the program keeps its own)
        # and loads into a twin that keeps its own LMs and runs
        for _, predictor in program.named_predictors():
            predictor.demos = [d for (p, _, _), d in zip(trace, demos, strict=True) if p is predictor][:1]
        _, latest = save_compiled(program, tmp_path / name, role="role")
        assert record_role_lms(program) == lms and '"lm": null' in latest.read_text()
        twin = twins[name][0]
        twin_lms = record_role_lms(twin)
        load_compiled(twin, latest)
        assert record_role_lms(twin) == twin_lms, name
        assert demo_counts(twin) == demo_counts(program) and sum(demo_counts(twin)) >= 1, name
        with dspy.context(trace=[]):
            twin(**inputs)
            assert dspy.settings.trace, name

        # DSPy's own save with the ScriptedLMs attached; load rebuilds them around the same policies
        program.save(str(tmp_path / f"{name}.json"))
        twin.load(str(tmp_path / f"{name}.json"), allow_unsafe_lm_state=True)
        assert demo_counts(twin) == demo_counts(program), name
        assert {n: lm.engine.source for n, lm in record_role_lms(twin).items()} == {
            n: lm.engine.source for n, lm in lms.items()}, name


def test_dspy_save_works_with_a_scripted_lm_attached_and_load_restores_the_program(mock, tmp_path):
    program, train, val, assistant_lm = bootstrap_case(mock)
    compiled = compile_keeping_lms(dspy.BootstrapFewShot(metric=as_bool_metric(assistant_metric(mock)),
                                                         max_bootstrapped_demos=4, max_labeled_demos=0),
                                   program, trainset=train)
    role = compiled.assistant  # bootstrapped demos (tools among their inputs) and its own ScriptedLM
    path = tmp_path / "assistant.json"
    role.save(str(path))  # DSPy's own save

    restored = Assistant()
    with pytest.raises(ValueError, match="allow_unsafe_lm_state"):  # DSPy's rule for any custom LM class
        restored.load(str(path))
    restored.load(str(path), allow_unsafe_lm_state=True)
    lm = restored.turn.lm
    assert isinstance(lm, ScriptedLM) and lm is not assistant_lm and lm.engine.source is imitating_assistant
    assert lm.model == "scripted/assistant" and lm.kwargs == assistant_lm.kwargs
    assert len(restored.turn.demos) == len(role.turn.demos) >= 1
    episode = AssistantEpisode(mock, restored, user=program._frozen.partner)
    assert evaluate_program(episode, val, assistant_metric(mock)).mean == 1.0 and lm.call_count > 0

    # a policy that cannot be imported (a lambda) still saves; the reloaded LM says why it cannot answer
    talker = UserSimulator(lm=scripted_lm(lambda req: {"message": "hi"}))
    talker.save(str(tmp_path / "user.json"))
    reloaded = UserSimulator()
    reloaded.load(str(tmp_path / "user.json"), allow_unsafe_lm_state=True)
    assert isinstance(reloaded.turn.lm.engine.source, UnsavedPolicy)
    with pytest.raises(ScriptExhaustedError, match="could not be saved"):
        UnsavedPolicy()(None)
