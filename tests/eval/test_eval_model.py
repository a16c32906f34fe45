"""``eigendspy eval`` with a model agent: tau2 results files, the agent-facing prompt, adapters, vLLM, bad specs.

The tiny random model never solves a task, so these tests check the plumbing (every episode scored,
files in tau2's shape, the exact prompt the model saw), not rewards; step and token limits keep it fast.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from eigendspy.cli import app
from eigendspy.eval.agents import build_assistant
from eigendspy.eval.tau2_results import read_results
from eigendspy.train.models import load_tokenizer

runner = CliRunner()
TASKS = "create_task_1,update_task_1"
FAST = ["--max-new-tokens", "16", "--max-steps", "4"]


def _eval(tau2_dir, out, *args: str):
    result = runner.invoke(app, ["eval", "--domain", "mock", "--data", str(tau2_dir / "mock"), "--out", str(out),
                                 *FAST, *args])
    return result


def _rewards(out) -> list[tuple[str, float, list[str]]]:
    data = json.loads((out / "results.json").read_text())
    return [(s["task_id"], s["reward_info"]["reward"], [m.get("content") for m in s["messages"]])
            for s in data["simulations"]]


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter over the tiny model with non-zero weights (so it really changes the model), saved by peft."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules="all-linear", init_lora_weights=False))
    out = tmp_path_factory.mktemp("adapter") / "adapter"
    model.save_pretrained(out)
    return out


def test_model_agent_writes_tau2_results_and_pass_k(tiny_model_dir, tau2_dir, tmp_path):
    out = tmp_path / "eval"
    instructions = tmp_path / "evolved.txt"
    instructions.write_text("Answer in one short sentence.")
    result = _eval(tau2_dir, out, "--model", str(tiny_model_dir), "--trials", "2", "--task-ids", TASKS,
                   "--instructions", str(instructions))
    assert result.exit_code == 0, result.output

    report = json.loads((out / "eval.json").read_text())
    assert report["num_tasks"] == 2 and report["num_trials"] == 4 and set(report["pass_hat_k"]) == {"1", "2"}
    assert "| pass^2 |" in (out / "eval.md").read_text()
    tasks, sims = read_results(out / "results.json")
    assert [t.id for t in tasks] == TASKS.split(",") and len(sims) == 4
    assert all(isinstance(s.reward, float) for s in sims)
    assert {s.termination_reason.value for s in sims} <= {"max_steps", "agent_stop", "user_stop", "too_many_errors"}

    data = json.loads((out / "results.json").read_text())
    sample = json.loads((tau2_dir / "retail" / "results_sample.json").read_text())
    assert list(data) == list(sample) and list(data["info"]) == list(sample["info"])
    assert set(data["simulations"][0]) == set(sample["simulations"][0])
    assert data["info"]["agent_info"]["llm"] == f"model:{tiny_model_dir}" and data["info"]["num_trials"] == 2
    settings = json.loads((out / "eval_config.json").read_text())
    assert settings["instructions"] == "Answer in one short sentence." and settings["temperature"] == 0.0


def test_model_agent_sees_exactly_agent_chat(tiny_model_dir, tau2_dir):
    from eigendspy.core.oracle import OracleUser
    from eigendspy.core.orchestrator import EpisodeConfig
    from eigendspy.core.render import agent_chat
    from eigendspy.domains import get_domain
    from eigendspy.eval.runner import run_episodes
    from eigendspy.train.chat_tokens import encode, render_text

    domain = get_domain("mock", data_dir=tau2_dir / "mock")
    agent = build_assistant(f"model:{tiny_model_dir}", temperature=0.0, max_new_tokens=8, seed=0,
                            instructions="Be brief.")
    (episode,) = run_episodes(domain, [domain.task("create_task_1")], agent, OracleUser(),
                              config=EpisodeConfig(max_steps=4), progress=False)
    first = min(episode.traces)
    expected = render_text(agent.tokenizer, agent_chat(domain.policy, domain.tool_schemas("assistant"),
                                                       episode.messages[:first], instructions="Be brief."),
                           add_generation_prompt=True)
    assert episode.traces[first].prompt_token_ids == encode(agent.tokenizer, expected)
    shown = agent.tokenizer.decode(episode.traces[first].prompt_token_ids)
    assert f"<|im_start|>system\n<instructions>\nBe brief.\n</instructions>\n<policy>\n{domain.policy}" in shown
    assert "</policy>" in shown and "<tools>" in shown


def test_adapter_dir_agent(adapter_dir, tau2_dir, tmp_path):
    assert not (adapter_dir / "tokenizer_config.json").exists()
    assert load_tokenizer(adapter_dir).chat_template  # falls back to the base model's tokenizer
    out = tmp_path / "adapter_eval"
    result = _eval(tau2_dir, out, "--agent", f"model:{adapter_dir}", "--trials", "1", "--task-ids", "update_task_1")
    assert result.exit_code == 0, result.output
    (_task, sims) = read_results(out / "results.json")
    assert len(sims) == 1 and isinstance(sims[0].reward, float)


def test_vllm_agent_over_the_protocol_matches_the_in_process_model(tiny_model_dir, tau2_dir, tmp_path):
    from eigendspy.testing.vllm_server import LocalServer

    local = tmp_path / "local"
    one = ["--task-ids", "update_task_1", "--trials", "1", "--concurrency", "1"]  # batches of one: bit-identical
    assert _eval(tau2_dir, local, "--model", str(tiny_model_dir), *one).exit_code == 0
    with LocalServer(tiny_model_dir, served_model_name="tiny") as server:
        remote = tmp_path / "remote"
        result = _eval(tau2_dir, remote, "--agent", f"vllm:{server.base_url}#tiny", "--tokenizer",
                       str(tiny_model_dir), *one)
    assert result.exit_code == 0, result.output
    assert _rewards(remote) == _rewards(local)  # greedy: the same turns, word for word


@pytest.mark.parametrize(("args", "message"), [
    (["--agent", "gpt-4o"], "unknown participant spec 'gpt-4o'"),
    (["--agent", "model:/no/such/dir"], "directory '/no/such/dir' does not exist"),
    (["--agent", "vllm:localhost:8000"], "malformed participant spec 'vllm:localhost:8000'"),
    (["--agent", "vllm:http://localhost:8000#m"], "needs a tokenizer"),
    (["--agent", "vllm:http://localhost:8000#m", "--tokenizer", "/no/such/dir"], "does not exist"),
    (["--agent", "oracle", "--tokenizer", "."], "only needed by 'vllm:'"),
    (["--agent", "oracle", "--api-base", "http://h/v1"], "api_base is the endpoint"),
    (["--model", ".", "--agent", "vllm:http://h#m"], "not both"),
    (["--user", "bob"], "unknown participant spec 'bob'"),
    (["--user", "vllm:http://localhost:8000#m"], "user 'vllm:http://localhost:8000#m' needs a tokenizer"),
    (["--user", "model:/no/such/dir"], "directory '/no/such/dir' does not exist"),
    (["--task-ids", "nope"], "unknown task ids"),
])
def test_bad_specs_are_clear_errors(tau2_dir, tmp_path, args, message):
    result = _eval(tau2_dir, tmp_path / "x", *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.replace("│", " ").split()), result.output  # rich boxes and wraps
    assert not (tmp_path / "x").exists()


def test_oracle_agent_rejects_instructions_and_stays_the_default(tau2_dir, tmp_path):
    with pytest.raises(ValueError, match="instructions apply to model agents"):
        build_assistant("oracle", temperature=0.0, max_new_tokens=8, seed=0, instructions="x")
    out = tmp_path / "oracle"
    result = _eval(tau2_dir, out, "--task-ids", TASKS, "--trials", "2", "--max-steps", "30")  # last one wins
    assert result.exit_code == 0, result.output
    assert [r for _t, r, _m in _rewards(out)] == [1.0] * 4
