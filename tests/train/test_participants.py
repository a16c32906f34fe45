"""One spec parser and one factory for both sides: every form round-trips, every mistake is a clear error,
and a spec builds the same kind of participant for the assistant and the user, shown its side's tau2 prompt.
"""

from __future__ import annotations

import asyncio

import pytest

from eigendspy.core.messages import Message
from eigendspy.core.participants import TurnContext
from eigendspy.core.render import side_chat
from eigendspy.core.task import Task
from eigendspy.domains import get_domain
from eigendspy.train.grpo.config import GRPORunConfig
from eigendspy.train.participant_spec import FORMS, LOCAL_LM, ParticipantSpec
from eigendspy.train.participants import build_assistant, build_participant, build_user

SPECS = {
    "oracle": ("oracle", {}),
    "model:runs/sft/adapter": ("model", {"path": "runs/sft/adapter"}),
    "vllm:http://localhost:8000/v1#Qwen/Qwen2.5-7B-Instruct":
        ("vllm", {"url": "http://localhost:8000/v1", "name": "Qwen/Qwen2.5-7B-Instruct"}),
    "vllm:https://gpu-host#policy": ("vllm", {"url": "https://gpu-host", "name": "policy"}),
    "lm:openai/gpt-4.1-mini": ("lm", {"model_id": "openai/gpt-4.1-mini"}),
    "lm:vllm-server/Qwen/Qwen2.5-7B-Instruct": ("lm", {"model_id": "vllm-server/Qwen/Qwen2.5-7B-Instruct"}),
    "dspy:local": ("dspy", {"model_id": "local"}),
    "dspy:openai/gpt-4.1-mini": ("dspy", {"model_id": "openai/gpt-4.1-mini"}),
}
DIALOGUE = [Message.assistant("Hi! How can I help you today?"), Message.user("Create a task 'Lunch' for user_1.")]


@pytest.mark.parametrize("text", sorted(SPECS))
def test_every_form_round_trips(text: str) -> None:
    kind, fields = SPECS[text]
    spec = ParticipantSpec.parse(text)
    assert spec == ParticipantSpec(kind=kind, **fields)
    assert spec.model_dump(exclude_none=True) == {"kind": kind, **fields}
    assert str(spec) == text and ParticipantSpec.parse(str(spec)) == spec


def test_every_kind_is_covered_by_the_round_trip() -> None:
    assert {kind for kind, _ in SPECS.values()} == set(FORMS)


@pytest.mark.parametrize(("text", "message"), [
    ("bob", "unknown participant spec 'bob': use 'oracle', 'model:<dir>'"),
    ("gpt-4o", "'lm:<LiteLLM model id>', 'dspy:<role LM id>'"),
    ("oracle:x", "unknown participant spec 'oracle:x'"),
    ("Model:x", "unknown participant spec 'Model:x'"),
    ("", "unknown participant spec ''"),
    ("model:", "malformed participant spec 'model:': expected 'model:<dir>'"),
    ("vllm:localhost:8000", "malformed participant spec 'vllm:localhost:8000'"),
    ("vllm:http://localhost:8000", "needs a served model name"),
    ("vllm:http://localhost:8000#", "needs a served model name"),
    ("vllm:#m", "needs a server URL"),
    ("vllm:ftp://host#m", "must start with http:// or https://"),
    ("lm:", "expected 'lm:<LiteLLM model id>'"),
    ("lm:gpt-4o", "'gpt-4o' is no provider/model id; a DSPy role LM is 'dspy:<id>'"),
    ("dspy:", "malformed participant spec 'dspy:': expected 'dspy:<role LM id>'"),
])
def test_bad_specs_name_the_spec_and_the_accepted_form(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        ParticipantSpec.parse(text)
    assert message in str(info.value)


def test_fields_must_fit_the_kind() -> None:
    with pytest.raises(ValueError, match="'oracle:' takes no model folder"):
        ParticipantSpec(kind="oracle", path="x")
    with pytest.raises(ValueError, match="'lm:' takes no served model name"):
        ParticipantSpec(kind="lm", model_id="openai/x", name="y")
    with pytest.raises(ValueError, match="'model:' needs a model folder"):
        ParticipantSpec(kind="model")


def test_lm_local_still_parses_as_the_dspy_local_model() -> None:
    with pytest.warns(DeprecationWarning, match="'lm:local' is now spelled 'dspy:local'"):
        spec = ParticipantSpec.parse("lm:local")
    assert spec == ParticipantSpec(kind="dspy", model_id="local") and str(spec) == "dspy:local"


def test_spellings_shared_with_the_lm_layer_agree() -> None:
    from eigendspy.lm.config import LOCAL, VLLM_PREFIX

    assert LOCAL_LM == LOCAL
    assert ParticipantSpec.parse(f"lm:{VLLM_PREFIX}m").model_id == f"{VLLM_PREFIX}m"


@pytest.mark.parametrize(("text", "side", "options", "message"), [
    ("vllm:http://h#m", "assistant", {}, "assistant 'vllm:http://h#m' needs a tokenizer"),
    ("vllm:http://h#m", "user", {}, "user 'vllm:http://h#m' needs a tokenizer"),
    ("model:x", "user", {"tokenizer": "t"}, "only needed by 'vllm:' participants; user 'model:x'"),
    ("oracle", "assistant", {"api_base": "http://h/v1"}, "api_base is the endpoint of an 'lm:' or 'dspy:'"),
    ("model:x", "assistant", {"instructions": " "}, "the instructions artifact is empty"),
    ("model:x", "user", {"instructions": "Be brief."}, "the user side reads its scenario"),
    ("oracle", "assistant", {"instructions": "Be brief."}, "instructions apply to model agents"),
    ("dspy:local", "assistant", {"instructions": "Be brief."}, "prompted by its DSPy signature"),
])
def test_options_a_participant_cannot_use_are_refused(text, side, options, message) -> None:
    with pytest.raises(ValueError) as info:
        ParticipantSpec.parse(text).check_options(side, **options)
    assert message in str(info.value)
    with pytest.raises(ValueError) as built:  # the factory refuses them before loading anything
        build_participant(text, side, temperature=0.0, max_new_tokens=8, seed=0, **options)
    assert message in str(built.value)


def test_options_each_kind_uses_are_accepted() -> None:
    ParticipantSpec.parse("vllm:http://h#m").check_options("user", tokenizer="t")
    ParticipantSpec.parse("lm:openai/x").check_options("assistant", instructions="Be brief.", api_base="http://h")
    ParticipantSpec.parse("dspy:local").check_options("user", api_base="http://h")
    ParticipantSpec.parse("model:x").check_options("assistant", instructions="Be brief.")


# -- one spec, the same kind of participant on both sides ------------------------------------------------


def _both(text: str, **options):
    agent = build_assistant(text, temperature=0.0, max_new_tokens=4, seed=0, **options)
    user = build_user(text, max_new_tokens=4, **options)
    return agent, user


def test_oracle_on_both_sides() -> None:
    from eigendspy.core.oracle import OracleAssistant, OracleUser

    agent, user = _both("oracle")
    assert isinstance(agent, OracleAssistant) and isinstance(user, OracleUser)


def test_model_on_both_sides_generates_in_process_from_its_sides_rendering(tiny_model_dir) -> None:
    from eigendspy.train.backends.hf import HFBackend
    from eigendspy.train.chat_tokens import encode, render_text
    from eigendspy.train.policy import ChatModelParticipant

    agent, user = _both(f"model:{tiny_model_dir}")
    domain = get_domain("mock")
    task = Task.model_validate({"id": "t1", "user_scenario": {"instructions": "Create a task called Lunch."}})
    for participant, side in ((agent, "assistant"), (user, "user")):
        assert isinstance(participant, ChatModelParticipant) and isinstance(participant.backend, HFBackend)
        assert participant.side == side
        ctx = TurnContext(role=side, task=task, domain=domain, tools=domain.tool_schemas(side))
        turn = asyncio.run(participant.respond(DIALOGUE, ctx))
        expected = render_text(participant.tokenizer, side_chat(side, DIALOGUE, ctx), add_generation_prompt=True)
        assert turn.trace.prompt_token_ids == encode(participant.tokenizer, expected)
        shown = participant.tokenizer.decode(turn.trace.prompt_token_ids)
        assert (domain.policy in shown) == (side == "assistant")
        assert ("Create a task called Lunch." in shown) == (side == "user")
    assert user.sampling.temperature == 0.7 and agent.sampling.temperature == 0.0


def test_vllm_on_both_sides_uses_the_server_and_the_given_tokenizer(tiny_model_dir) -> None:
    from eigendspy.train.backends.vllm import VLLMServerBackend
    from eigendspy.train.policy import ChatModelParticipant

    agent, user = _both("vllm:http://127.0.0.1:9/v1#tiny", tokenizer=tiny_model_dir)
    for participant, side in ((agent, "assistant"), (user, "user")):
        assert isinstance(participant, ChatModelParticipant) and participant.side == side
        assert isinstance(participant.backend, VLLMServerBackend) and participant.backend.base_url == "http://127.0.0.1:9"
        assert participant.tokenizer.chat_template


def test_lm_on_both_sides_is_a_chat_api_model_shown_its_sides_tau2_prompt(monkeypatch) -> None:
    import litellm

    from eigendspy.lm.chat_api import ChatAPIParticipant

    seen, real = [], litellm.acompletion

    async def fake(**kwargs):
        seen.append(kwargs)
        return await real(**{**kwargs, "mock_response": "Sure."})

    monkeypatch.setattr(litellm, "acompletion", fake)
    agent, user = _both("lm:openai/gpt-4.1-mini")
    domain = get_domain("mock")
    task = Task.model_validate({"id": "t1", "user_scenario": {"instructions": "Create a task called Lunch."}})
    for participant, side in ((agent, "assistant"), (user, "user")):
        assert isinstance(participant, ChatAPIParticipant) and participant.side == side
        ctx = TurnContext(role=side, task=task, domain=domain, tools=domain.tool_schemas(side))
        reply = asyncio.run(participant.respond(DIALOGUE, ctx))
        assert reply == Message(role=side, content="Sure.")
        assert seen[-1]["model"] == "openai/gpt-4.1-mini" and seen[-1]["max_tokens"] == 4
        assert seen[-1]["messages"] == side_chat(side, DIALOGUE, ctx).messages
    assert "<policy>" in seen[0]["messages"][0]["content"]
    assert "Create a task called Lunch." in seen[1]["messages"][0]["content"]
    assert [m["role"] for m in seen[1]["messages"][1:]] == ["user", "assistant"]  # the user's view, roles flipped


def test_lm_vllm_server_is_litellms_hosted_vllm_at_the_api_base() -> None:
    agent, user = _both("lm:vllm-server/Qwen/Qwen2.5-7B-Instruct", api_base="http://gpu:8000/v1")
    assert agent.model == user.model == "hosted_vllm/Qwen/Qwen2.5-7B-Instruct"
    assert agent.kwargs["api_base"] == user.kwargs["api_base"] == "http://gpu:8000/v1"
    with pytest.raises(ValueError, match="user 'lm:vllm-server/m' is a vLLM chat server: pass its api_base"):
        build_user("lm:vllm-server/m")


def test_dspy_on_both_sides_is_the_dspy_role_module_over_that_lm() -> None:
    from eigendspy.agents.assistant import Assistant
    from eigendspy.agents.user_simulator import UserSimulator

    agent, user = _both("dspy:openai/gpt-4.1-mini", api_base="http://h/v1")
    assert isinstance(agent, Assistant) and isinstance(user, UserSimulator)
    assert agent.turn.lm.model == user.turn.lm.model == "openai/gpt-4.1-mini"
    assert user.turn.lm.kwargs["api_base"] == "http://h/v1"


def test_model_dirs_must_exist_locally(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="user 'model:/no/such/dir': directory '/no/such/dir' does not"):
        build_user("model:/no/such/dir")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither config.json"):
        build_assistant(f"model:{tmp_path / 'empty'}", temperature=0.0, max_new_tokens=4, seed=0)
    with pytest.raises(FileNotFoundError, match="assistant 'vllm:http://h#m': directory 'Qwen/Qwen2.5'"):
        build_assistant("vllm:http://h#m", temperature=0.0, max_new_tokens=4, seed=0, tokenizer="Qwen/Qwen2.5")


# -- the GRPO config takes the same strings --------------------------------------------------------------


@pytest.mark.parametrize(("user", "options"), [
    ("oracle", {}),
    ("model:out/sft-user/adapter", {}),
    ("lm:openai/gpt-4.1-mini", {}),
    ("lm:vllm-server/Qwen/Qwen2.5-7B-Instruct", {"user_api_base": "http://h:8000/v1"}),
    ("dspy:local", {}),
    ("vllm:http://h:8000#user", {"user_tokenizer": "models/user"}),
])
def test_grpo_config_accepts_every_user_form(user, options) -> None:
    assert GRPORunConfig(model="m", output_dir="o", user=user, **options).user == user


@pytest.mark.parametrize(("user", "options", "message"), [
    ("vllm:http://h:8000#user", {}, "user: user 'vllm:http://h:8000#user' needs a tokenizer"),
    ("oracle", {"user_api_base": "http://h"}, "user: api_base is the endpoint"),
    ("model:x", {"user_tokenizer": "t"}, "only needed by 'vllm:'"),
    ("lm:gpt-4o", {}, "user: malformed participant spec 'lm:gpt-4o'"),
])
def test_grpo_config_refuses_what_the_user_cannot_use(user, options, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        GRPORunConfig(model="m", output_dir="o", user=user, **options)


def test_grpo_config_still_takes_lm_local() -> None:
    with pytest.warns(DeprecationWarning, match="dspy:local"):
        assert GRPORunConfig(model="m", output_dir="o", user="lm:local").user == "lm:local"


def test_model_users_are_placed_on_the_requested_device(tiny_model_dir) -> None:
    import torch

    from eigendspy.train.participants import placement

    assert placement("cuda:1") == "cuda:1"
    assert placement(None) == (f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
    user = build_user(f"model:{tiny_model_dir}", device="meta")  # a device this CPU box has besides "cpu"
    assert {p.device.type for p in user.backend.model.parameters()} == {"meta"}
    default = build_user(f"model:{tiny_model_dir}")
    assert {str(p.device) for p in default.backend.model.parameters()} == {placement(None)}
