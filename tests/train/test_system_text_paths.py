"""SFT, GRPO rollouts and evaluation show a model without tool support the same system text, tools included.

Why: SmolLM2-135M-Instruct's chat template drops ``tools`` silently, so the tool schemas reach it only as
text inlined into the system message (`eigendspy.core.render.inline_tools`). If SFT rows, RL prompts and eval
prompts inlined them differently, the model would be trained on one prompt and scored on another. Here the
three paths each make their real token ids — SFT through the export and `tokenize_sft_dataset`, RL through
`EpisodeRunner` with the policy participant, eval through `build_assistant` + `run_episodes` — and the system
turns they decode to must be identical and hold every tool schema.
"""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from eigendspy.agents import GoldTeacher
from eigendspy.core.orchestrator import EpisodeConfig, Orchestrator, run_sync
from eigendspy.core.records import DialogueRecord, Stage
from eigendspy.core.task import Action, EvaluationCriteria, Task, UserScenario
from eigendspy.domains import get_domain
from eigendspy.engine.export import sft_agent_dataset
from eigendspy.eval.runner import run_episodes
from eigendspy.recipe import ScenarioUser
from eigendspy.testing.backend import ScriptedBackend
from eigendspy.testing.chat_templates import plain_chatml_template, with_chat_template
from eigendspy.train.backends.base import SamplingParams
from eigendspy.train.chat_tokens import renders_tools
from eigendspy.train.grpo.rollout import EpisodeRunner, episode_to_sample
from eigendspy.train.participants import build_assistant
from eigendspy.train.policy import ChatModelParticipant
from eigendspy.train.sft import tokenize_sft_dataset

DOMAIN = get_domain("mock")
TASK = Task(id="t0", user_scenario=UserScenario(instructions="Please mark task_1 as completed."),
            evaluation_criteria=EvaluationCriteria(actions=[Action(
                action_id="a", name="update_task_status", arguments={"task_id": "task_1", "status": "completed"})]))


@pytest.fixture(scope="module", params=["chatml", "smollm2"])
def model_dir(request, tiny_model_dir, tmp_path_factory):
    if request.param == "chatml":
        return with_chat_template(tiny_model_dir, tmp_path_factory.mktemp("chatml") / "m", plain_chatml_template())
    from eigendspy.lm.local.fetch import ModelNotFetchedError, dequantized_dir

    try:
        return dequantized_dir()
    except ModelNotFetchedError:
        pytest.skip("SmolLM2-135M-Instruct not fetched (eigendspy model fetch)")


def _system(tokenizer, ids) -> str:
    text = tokenizer.decode(ids, skip_special_tokens=False)
    start = text.index("<|im_start|>system\n") + len("<|im_start|>system\n")
    return text[start:text.index("<|im_end|>", start)]


def test_sft_rl_and_eval_render_the_same_system_text_with_the_tools(model_dir):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert not renders_tools(tokenizer)  # the case under test: tools must be inlined as text

    orch = Orchestrator(DOMAIN, GoldTeacher(confirm_writes=False), ScenarioUser(), config=EpisodeConfig(max_steps=12))
    episode = run_sync(orch.run(TASK))
    record = DialogueRecord(work_key="k", task_id=TASK.id, trial=0, seed=0, domain="mock", messages=episode.messages,
                            termination_reason=episode.termination_reason.value, reward=1.0, checker_passed=True,
                            accepted=True, stage=Stage.ACCEPT)
    sft_ids = tokenize_sft_dataset(sft_agent_dataset([record], {"mock": DOMAIN}), tokenizer)[0]["input_ids"]

    scripted = ChatModelParticipant(ScriptedBackend(tokenizer, lambda prompt, rng: "Hello."), tokenizer,
                                    sampling=SamplingParams(max_new_tokens=4))
    [rollout] = EpisodeRunner(DOMAIN, scripted, ScenarioUser(), config=EpisodeConfig(max_steps=6)).run([(TASK, 0)])
    rl_ids = episode_to_sample(rollout).prompt_ids

    agent = build_assistant(f"model:{model_dir}", temperature=1.0, max_new_tokens=2, seed=0)
    [evaluated] = run_episodes(DOMAIN, [TASK], agent, ScenarioUser(), progress=False,
                               config=EpisodeConfig(max_steps=4))
    eval_ids = next(iter(evaluated.traces.values())).prompt_token_ids

    sft, rl, ev = (_system(tokenizer, ids) for ids in (sft_ids, rl_ids, eval_ids))
    assert sft == rl == ev
    assert "<policy>" in sft and "<tools>" in sft
    for schema in DOMAIN.tool_schemas("assistant"):
        assert json.dumps(schema, ensure_ascii=False) in sft
