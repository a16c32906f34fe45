"""Export: accepted-only HF datasets in the one agent-facing rendering, a card, and real TRL training on them."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from datasets import load_from_disk

from eigendspy.core.messages import Message, ToolCall
from eigendspy.core.oracle import OracleAssistant, OracleUser, summary_text
from eigendspy.core.orchestrator import Orchestrator
from eigendspy.core.participants import FunctionParticipant
from eigendspy.core.plans import EvaluationPlan, PlanPair, SynthesisPlan
from eigendspy.core.records import DialogueRecord, Stage, TaskRecord
from eigendspy.core.render import agent_chat, training_messages, user_chat
from eigendspy.domains import get_domain
from eigendspy.engine.export import (
    DatasetCard,
    export_all,
    export_run,
    read_records,
    rl_task_dataset,
    sft_agent_dataset,
    sft_user_dataset,
    task_from_row,
)
from eigendspy.engine.store.store import RunManifest, RunStore
from eigendspy.testing.tiny_model import qwen2_5_template

TASK_IDS = ("update_task_1", "create_task_1", "impossible_task_1")


@pytest.fixture(scope="module")
def domain(tau2_dir):
    return get_domain("mock", data_dir=tau2_dir / "mock")


def _user_with_device_check():
    """The oracle user, who also checks their notifications (a user-side tool) once the agent has acted."""
    oracle = OracleUser()

    async def respond(messages, ctx):
        acted = any(m.role == "tool" and m.requestor == "assistant" for m in messages)
        checked = any(m.role == "tool" and m.requestor == "user" for m in messages)
        if acted and not checked:
            return Message.user(tool_calls=[ToolCall(id="u0", name="check_notifications", requestor="user")])
        return await oracle.respond(messages, ctx)
    return FunctionParticipant(respond)


def _record(task_id, messages, *, accepted=True, key=None, reward=1.0):
    return DialogueRecord(work_key=key or f"d:{task_id}", task_id=task_id, trial=0, seed=0, domain="mock",
                          messages=messages, termination_reason="user_stop", reward=reward if accepted else 0.0,
                          checker_passed=accepted, accepted=accepted,
                          stage=Stage.ACCEPT if accepted else Stage.CHECK, reasons=[] if accepted else ["db mismatch"])


@pytest.fixture(scope="module")
def dialogues(domain):
    """Real oracle episodes: two accepted, one with a user-side tool call, and one rejected."""
    orch = Orchestrator(domain, OracleAssistant(), OracleUser())
    eps = {tid: asyncio.run(orch.run(domain.task(tid))) for tid in TASK_IDS}
    device = asyncio.run(Orchestrator(domain, OracleAssistant(), _user_with_device_check()).run(
        domain.task("update_task_1")))
    return [
        _record("update_task_1", eps["update_task_1"].messages),
        _record("create_task_1", eps["create_task_1"].messages),
        _record("update_task_1", device.messages, key="d:device"),
        _record("impossible_task_1", eps["impossible_task_1"].messages, accepted=False),
    ]


def _plan(intent):
    return PlanPair(plan_id=f"p:{intent}", synthesis=SynthesisPlan(intent_family=intent, complexity="single_action",
                                                                   tool_pattern="update", user_style="terse"),
                    evaluation=EvaluationPlan(rubric="does it"))


@pytest.fixture(scope="module")
def task_records(domain):
    return [
        TaskRecord(work_key="t:1", stream=0, round=0, plan=_plan("update"), task=domain.task("update_task_1"),
                   accepted=True, stage=Stage.ACCEPT, null_pass=False),
        TaskRecord(work_key="t:2", stream=1, round=0, plan=_plan("create"), task=domain.task("create_task_1"),
                   accepted=True, stage=Stage.ACCEPT, null_pass=False),
        TaskRecord(work_key="t:3", stream=1, round=0, plan=_plan("create"), task=domain.task("impossible_task_1"),
                   accepted=False, stage=Stage.VALIDATE_TASK, reasons=["checker passes a null policy"]),
        TaskRecord(work_key="t:4", stream=2, round=0, accepted=False, stage=Stage.GENERATE, reasons=["bad JSON"]),
    ]


def test_agent_set_is_accepted_dialogues_in_the_agent_rendering(domain, dialogues):
    ds = sft_agent_dataset(dialogues, {"mock": domain})
    assert ds["work_key"] == ["d:update_task_1", "d:create_task_1", "d:device"]
    row = ds[0]
    expected = agent_chat(domain.policy, domain.tool_schemas("assistant"), dialogues[0].messages)
    assert row["messages"] == training_messages(expected) and row["tools"] == expected.tools
    system = row["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("<instructions>\n")
    assert f"</instructions>\n<policy>\n{domain.policy}\n</policy>" in system["content"]
    call = next(m for m in row["messages"] if m.get("tool_calls"))["tool_calls"][0]
    gold = domain.task("update_task_1").gold_actions[0]
    assert call["function"] == {"name": gold.name, "arguments": gold.arguments}  # a dict, exactly: no null padding
    result = next(m for m in row["messages"] if m["role"] == "tool")
    assert result["tool_call_id"] == call["id"] and "completed" in result["content"]
    last_assistant = [m for m in row["messages"] if m["role"] == "assistant"][-1]
    assert last_assistant["content"] == summary_text(domain.task("update_task_1"))
    # the user's own device actions are not the agent's to see
    device = ds[2]["messages"]
    assert all(c["function"]["name"] != "check_notifications" for m in device for c in m.get("tool_calls") or [])
    assert ds[0]["reward"] == 1.0 and ds[0]["domain"] == "mock" and ds[0]["task_id"] == "update_task_1"


def test_domains_may_be_a_callable(domain, dialogues):
    ds = sft_agent_dataset(dialogues, lambda name: domain)
    assert len(ds) == 3
    with pytest.raises(KeyError, match="no domain 'mock'"):
        sft_agent_dataset(dialogues, {})


def test_user_set_flips_roles_and_keeps_the_scenario(domain, dialogues, task_records):
    tasks = {r.task.id: r.task for r in task_records if r.task is not None}
    ds = sft_user_dataset(dialogues, {"mock": domain}, tasks)
    assert len(ds) == 3
    row = ds[2]
    task = domain.task("update_task_1")
    expected = user_chat(task.user_scenario.render(), dialogues[2].messages, tools=domain.tool_schemas("user"))
    assert row["messages"] == training_messages(expected) and row["tools"] == domain.tool_schemas("user")
    msgs = row["messages"]
    assert f"<scenario>\n{task.user_scenario.render()}\n</scenario>" in msgs[0]["content"]
    assert msgs[1] == {"role": "user", "content": "Hi! How can I help you today?"}  # the agent's greeting
    assert msgs[-1] == {"role": "assistant", "content": "Thank you, that's all. ###STOP###"}
    calls = [c["function"] for m in msgs for c in m.get("tool_calls") or []]
    assert calls == [{"name": "check_notifications", "arguments": {}}]  # own device action kept, agent's dropped
    assert any(m["role"] == "tool" and "notif_1" in m["content"] for m in msgs)
    # tasks not passed explicitly are found in the domain
    assert sft_user_dataset(dialogues, {"mock": domain})["messages"] == ds["messages"]


def test_rl_set_round_trips_accepted_tasks(domain, task_records):
    ds = rl_task_dataset(task_records, "mock")
    assert ds["task_id"] == ["update_task_1", "create_task_1"]
    for row, record in zip(ds, task_records, strict=False):
        assert task_from_row(row) == record.task
        assert json.loads(row["task_json"]) == record.task.to_tau2()
        assert row["domain"] == "mock" and row["null_pass"] is False and row["plan_id"] == record.plan.plan_id
    assert rl_task_dataset(task_records, {"update_task_1": "x", "create_task_1": "y"})["domain"] == ["x", "y"]
    with pytest.raises(ValueError, match="no domain given"):
        rl_task_dataset(task_records)


def test_malformed_tool_arguments_are_skipped_and_counted(domain, dialogues, task_records, tmp_path):
    bad = [Message.assistant("Hi!"), Message.user("hi"),
           Message.assistant(tool_calls=[ToolCall(id="c", name="get_user", arguments="{not json")]),
           Message.tool("c", "Error: bad arguments", "assistant", True), Message.user("bye ###STOP###")]
    records = [*dialogues, _record("update_task_1", bad, key="d:bad")]
    assert len(sft_agent_dataset(records, {"mock": domain})) == 3
    result = export_all(task_records, records, {"mock": domain}, tmp_path)
    assert result.card.skipped_malformed == 1 and result.counts["sft_agent"] == 3


def test_export_all_writes_datasets_readme_and_card(domain, dialogues, task_records, tmp_path):
    extra = {"run_id": "run-7", "summary": {"generate": {"accepted": 3, "total": 4}},
             "gold_action_jaccard": 0.25, "model": "scripted"}
    result = export_all(task_records, [*dialogues, dialogues[0]], {"mock": domain}, tmp_path / "out", extra)
    assert result.counts == {"sft_agent": 3, "sft_user": 3, "rl_tasks": 2}
    for name, n in result.counts.items():
        loaded = load_from_disk(str(result.paths[name]))
        assert len(loaded) == n
    reloaded = load_from_disk(str(result.paths["sft_agent"]))
    assert reloaded[0]["messages"] == sft_agent_dataset(dialogues, {"mock": domain})[0]["messages"]
    card = DatasetCard.model_validate_json(result.paths["card"].read_text())
    assert card == result.card
    assert (card.run_id, card.domains, card.tasks_total, card.tasks_accepted) == ("run-7", ["mock"], 4, 2)
    assert (card.dialogues_total, card.dialogues_accepted) == (4, 3)  # the duplicate work_key counts once
    assert card.rejected_by_stage == {"validate_task": 1, "generate": 1, "check": 1}
    assert card.yields["generate"].rate == 0.75 and card.gold_action_jaccard == 0.25
    assert card.plan_cells_covered == 2 and card.mean_reward == 1.0 and card.extra == {"model": "scripted"}
    readme = result.paths["readme"].read_text()
    assert readme.startswith("---\n") and "| sft_agent | 3 |" in readme and "3/4 (75.0%)" in readme


def test_an_empty_run_exports_loadable_empty_datasets(tmp_path):
    result = export_all([], [], get_domain, tmp_path)
    assert result.counts == {"sft_agent": 0, "sft_user": 0, "rl_tasks": 0}
    assert [len(load_from_disk(str(result.paths[n]))) for n in result.counts] == [0, 0, 0]
    assert "| tasks | 0/0 |" in result.paths["readme"].read_text()


def _run_dir(root, task_records, dialogues, run_id="run-9"):
    """A run directory written by the store itself, as the engine writes one."""
    with RunStore.create(root, RunManifest(run_id=run_id, domain="mock")) as store:
        for record in [*task_records, *dialogues]:
            store.append(record)
    return root


def test_export_run_reads_a_run_directory(domain, dialogues, task_records, tmp_path):
    run = _run_dir(tmp_path / "run", task_records, dialogues)
    result = export_run(run, {"mock": domain})
    assert result.out_dir == run / "export" and result.card.run_id == "run-9"  # the manifest's run id
    assert result.counts == {"sft_agent": 3, "sft_user": 3, "rl_tasks": 2}
    assert export_run(run, {"mock": domain}, tmp_path / "again", {"run_id": "given"}).card.run_id == "given"
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "dialogues.jsonl").write_text("\n".join(r.model_dump_json() for r in dialogues) + "\n")
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        export_run(stray, {"mock": domain})  # only the store's run directories are read


def test_export_reads_exactly_what_the_store_reads(domain, dialogues, task_records, tmp_path):
    """A re-written work key, a non-record line and torn tails: export and `RunStore` agree on every record."""
    run = _run_dir(tmp_path / "run", task_records, dialogues)
    rewritten = dialogues[0].model_copy(update={"accepted": False, "stage": Stage.CHECK, "reward": 0.0})
    unfinished = _record("create_task_1", dialogues[1].messages, key="d:unfinished")
    # A later shard: its name sorts before dialogues.jsonl, but the store reads it after.
    (run / "dialogues-00001.jsonl").write_text(
        rewritten.model_dump_json() + "\n" + json.dumps({"kind": "event"}) + "\n"
        + unfinished.model_dump_json()  # a whole record but no newline: the write was not finished
    )
    with open(run / "tasks.jsonl", "ab") as f:
        f.write(task_records[0].model_dump_json().encode()[:40])  # the torn tail of a kill -9
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.suffix == ".jsonl"}

    with RunStore.open(run, read_only=True) as store:
        tasks, dlgs = list(store.task_records()), list(store.dialogue_records())
    assert [r.work_key for r in dlgs] == ["d:update_task_1", "d:create_task_1", "d:device", "d:impossible_task_1"]
    assert dlgs[0] == dialogues[0] and [r.work_key for r in tasks] == ["t:1", "t:2", "t:3", "t:4"]
    assert read_records(run) == (tasks, dlgs)

    result = export_run(run, {"mock": domain})
    card = result.card
    assert (card.tasks_total, card.tasks_accepted) == (len(tasks), sum(r.accepted for r in tasks))
    assert (card.dialogues_total, card.dialogues_accepted) == (len(dlgs), sum(r.accepted for r in dlgs))
    accepted = [r.work_key for r in dlgs if r.accepted]
    assert load_from_disk(str(result.paths["sft_agent"]))["work_key"] == accepted
    assert load_from_disk(str(result.paths["sft_user"]))["work_key"] == accepted
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.suffix == ".jsonl"} == before  # read-only

    RunStore.open(run).close()  # a resumed writer cuts the torn tails: the reading does not change
    assert read_records(run) == (tasks, dlgs)
    assert export_run(run, {"mock": domain}, tmp_path / "after").counts == result.counts


def test_export_skips_and_names_bad_lines(domain, dialogues, task_records, tmp_path):
    """A non-UTF-8 byte and a schema-valid flip (a rejected dialogue marked accepted): neither crashes nor leaks."""
    run = _run_dir(tmp_path / "run", task_records, dialogues)
    path = run / "dialogues.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    assert [json.loads(x)["work_key"] for x in lines][3] == "d:impossible_task_1"
    lines[0] = lines[0].replace(b'"d:update_task_1"', b'"d:update_task_\xff"')
    lines[3] = lines[3].replace(b'"accepted": false', b'"accepted": true')
    path.write_bytes(b"".join(lines))
    result = export_run(run, {"mock": domain})
    assert [s.split(": ", 1)[0] for s in result.skipped] == [f"{path} line 1", f"{path} line 4"]
    assert "not UTF-8" in result.skipped[0] and "checksum" in result.skipped[1]
    assert load_from_disk(str(result.paths["sft_agent"]))["work_key"] == ["d:create_task_1", "d:device"]
    assert result.card.dialogues_total == 2


# -- the chat template and TRL ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_tiny_tokenizer_carries_trls_templates(tokenizer):
    from trl.chat_template_utils import get_training_chat_template

    assert tokenizer.chat_template == qwen2_5_template()
    assert get_training_chat_template(tokenizer) == qwen2_5_template(training=True)


def test_both_qwen_templates_render_identical_token_ids(domain, dialogues, tokenizer):
    for row in (sft_agent_dataset(dialogues, {"mock": domain})[2], sft_user_dataset(dialogues, {"mock": domain})[2]):
        plain = tokenizer.apply_chat_template(row["messages"], tools=row["tools"], tokenize=True, return_dict=False)
        training = tokenizer.apply_chat_template(row["messages"], tools=row["tools"], tokenize=True,
                                                 return_dict=False, chat_template=qwen2_5_template(training=True))
        assert plain == training and len(plain) > 100


def test_arguments_must_be_dicts_for_the_template(domain, dialogues, tokenizer):
    """Why the export decodes arguments: the template ``tojson``s them, so a string is double-encoded."""
    prompt = agent_chat(domain.policy, domain.tool_schemas(), dialogues[0].messages)
    as_strings = tokenizer.apply_chat_template(prompt.messages, tools=prompt.tools, tokenize=False)
    as_dicts = tokenizer.apply_chat_template(training_messages(prompt), tools=prompt.tools, tokenize=False)
    assert '"arguments": "{\\"task_id\\"' in as_strings
    assert '"arguments": {"task_id": "task_1", "status": "completed"}' in as_dicts


def test_trl_parses_the_rendered_tool_call_back(domain, dialogues, tokenizer):
    from trl.chat_template_utils import add_response_schema, parse_response

    row = sft_agent_dataset(dialogues[:1], {"mock": domain})[0]
    i = next(i for i, m in enumerate(row["messages"]) if m.get("tool_calls"))
    before = tokenizer.apply_chat_template(row["messages"][:i], tools=row["tools"], tokenize=True,
                                           return_dict=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(row["messages"][: i + 1], tools=row["tools"], tokenize=True, return_dict=False)
    assert full[: len(before)] == before
    parsed = parse_response(add_response_schema(tokenizer), full[len(before):], prefix=before)
    assert parsed["tool_calls"][0]["function"] == {"name": "update_task_status",
                                                   "arguments": {"task_id": "task_1", "status": "completed"}}


@pytest.mark.parametrize("side", ["agent", "user"])
def test_sft_trainer_trains_on_assistant_tokens_only(domain, dialogues, tiny_model_dir, tokenizer, tmp_path, side):
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    build = sft_agent_dataset if side == "agent" else sft_user_dataset
    ds = build(dialogues, {"mock": domain})
    args = SFTConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=1, report_to=[],
                     assistant_only_loss=True, max_length=None, save_strategy="no", eval_strategy="no",
                     logging_steps=1, use_cpu=True, disable_tqdm=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer)
    assert trainer.chat_template == qwen2_5_template(training=True)  # TRL swapped in the generation markers
    example = trainer.train_dataset[0]
    trained = tokenizer.decode([t for t in example["labels"] if t != -100])
    said = [m for m in ds[0]["messages"] if m["role"] == "assistant"]
    assert all(m["content"] in trained for m in said if m["content"])
    assert "<policy>" not in trained and "<scenario>" not in trained and "<tool_response>" not in trained
    if side == "agent":
        assert '<tool_call>\n{"name": "update_task_status", "arguments": {"task_id": "task_1"' in trained
    assert all(m["content"] not in trained for m in ds[0]["messages"] if m["role"] == "user" and m["content"])
    output = trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert output.global_step == 2 and len(losses) == 2 and all(math.isfinite(x) for x in losses)
