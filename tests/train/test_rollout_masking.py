"""Multi-turn rollouts: exact sampled ids, and an env_mask that is 1 exactly on the policy's tokens."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from eigendspy.core.messages import Message
from eigendspy.core.orchestrator import run_sync
from eigendspy.core.participants import FunctionParticipant
from eigendspy.core.render import agent_chat
from eigendspy.domains import get_domain
from eigendspy.testing.backend import ScriptedBackend
from eigendspy.testing.tiny_model import qwen2_5_template
from eigendspy.train.backends.base import SamplingParams
from eigendspy.train.chat_tokens import parse_completion, render_text
from eigendspy.train.grpo.rollout import EpisodeRunner, episode_to_sample
from eigendspy.train.policy import ChatModelParticipant

CALL = ('<tool_call>\n{"name": "create_task", "arguments": {"user_id": "user_1", "title": "Important Meeting"}}'
        "\n</tool_call>")
AGENT_TURNS = [CALL, "Your task is created. Anything else?", "You're welcome. Goodbye!"]
USER_TURNS = ["Please create a task 'Important Meeting' for user_1.", "No, that is all, thanks.", "###STOP###"]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def mock_domain(tau2_dir):
    return get_domain("mock", data_dir=tau2_dir / "mock")


def _scripted_policy(tokenizer):
    def script(prompt_text: str, _rng) -> str:
        turn = prompt_text.count("<|im_start|>assistant") - 2  # the greeting + the generation prompt
        return AGENT_TURNS[turn]
    return ChatModelParticipant(ScriptedBackend(tokenizer, script), tokenizer, sampling=SamplingParams())


def _scripted_user():
    def user(messages, _ctx):
        return USER_TURNS[sum(1 for m in messages if m.role == "user")]
    return FunctionParticipant(user)


def _char_spans(tokenizer, ids):
    """(start, end) character span of each token in ``decode(ids)``."""
    spans, prev = [], 0
    for k in range(1, len(ids) + 1):
        end = len(tokenizer.decode(ids[:k], skip_special_tokens=False))
        spans.append((prev, end))
        prev = end
    return spans


def test_env_mask_is_one_exactly_on_the_policy_tokens(tokenizer, mock_domain):
    task = next(t for t in mock_domain.tasks() if t.id == "create_task_1")
    runner = EpisodeRunner(mock_domain, _scripted_policy(tokenizer), _scripted_user(), concurrency=1)
    (episode,) = runner.run([(task, 0)])
    roles = [m.role for m in episode.messages]
    assert roles == ["assistant", "user", "assistant", "tool", "assistant", "user", "assistant", "user"]
    assert episode.reward == 1.0 and episode.termination_reason.value == "user_stop"
    sample = episode_to_sample(episode)
    assert len(sample.completion_ids) == len(sample.env_mask) == len(sample.logprobs)
    assert sample.policy_turns == 3

    # The sequence is the rendering of the dialogue up to the policy's last end-of-turn token.
    last_assistant = max(i for i, m in enumerate(episode.messages) if m.role == "assistant")
    chat = agent_chat(mock_domain.policy, mock_domain.tool_schemas("assistant"),
                      episode.messages[: last_assistant + 1])
    rendered = render_text(tokenizer, chat, add_generation_prompt=False)
    ids = sample.prompt_ids + sample.completion_ids
    decoded = tokenizer.decode(ids, skip_special_tokens=False)
    assert rendered.startswith(decoded) and rendered[len(decoded):] == "\n"

    # Ground truth per character: TRL's training template marks the assistant's generated spans.
    training = tokenizer.apply_chat_template(
        chat.messages and json.loads(json.dumps(_dict_args(chat.messages))), tools=chat.tools, tokenize=True,
        return_dict=True, return_assistant_tokens_mask=True, chat_template=qwen2_5_template(training=True))
    truth_ids, truth_mask = training["input_ids"], training["assistant_masks"]
    assert tokenizer.decode(truth_ids, skip_special_tokens=False) == rendered
    marked = [c for (start, end), flag in zip(_char_spans(tokenizer, truth_ids), truth_mask, strict=True) if flag
              for c in range(start, end)]
    # The training template's generation span is "\n" + turn + "<|im_end|>\n": the leading "\n" belongs to
    # the generation prompt and the trailing one is never sampled (the model stops at <|im_end|>).
    assistant_chars = set()
    for a, b in _runs(marked):
        assert rendered[a] == "\n" and rendered[b - 11:b] == "<|im_end|>\n"
        assistant_chars.update(range(a + 1, b - 1))
    spans = _char_spans(tokenizer, ids)[len(sample.prompt_ids):]
    for k, ((start, end), flag) in enumerate(zip(spans, sample.env_mask, strict=True)):
        inside = all(c in assistant_chars for c in range(start, end))
        assert inside == bool(flag), f"token {k} {tokenizer.decode(sample.completion_ids[k:k + 1])!r}"
    # Every assistant turn after the greeting was sampled, and nothing else was.
    sampled = tokenizer.decode([t for t, m in zip(sample.completion_ids, sample.env_mask, strict=True) if m],
                               skip_special_tokens=False)
    assert sampled == "".join(turn + "<|im_end|>" for turn in AGENT_TURNS)
    assert all(lp == -1.0 for lp, m in zip(sample.logprobs, sample.env_mask, strict=True) if m)
    assert all(lp == 0.0 for lp, m in zip(sample.logprobs, sample.env_mask, strict=True) if not m)


def _runs(chars):
    """Contiguous [start, end) runs of a sorted list of character positions."""
    runs, start = [], None
    for i, c in enumerate(chars):
        if start is None:
            start = c
        if i + 1 == len(chars) or chars[i + 1] != c + 1:
            runs.append((start, c + 1))
            start = None
    return runs


def _dict_args(messages):
    out = []
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            m["tool_calls"] = [{**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])}}
                               for c in m["tool_calls"]]
        out.append(m)
    return out


def test_sampled_ids_are_kept_even_when_retokenising_would_differ(tokenizer, mock_domain):
    """A sample whose ids are not the canonical tokenisation of its text survives into the sequence."""
    task = next(t for t in mock_domain.tasks() if t.id == "create_task_1")
    odd = [tokenizer.convert_tokens_to_ids(c) for c in "Hello"]  # one id per letter: not how BPE splits it
    assert odd != tokenizer("Hello", add_special_tokens=False)["input_ids"]

    class OddBackend(ScriptedBackend):
        async def generate(self, prompt_ids, params):
            gen = await super().generate(prompt_ids, params)
            return gen.model_copy(update={"token_ids": odd + gen.token_ids[-1:], "logprobs": [-2.0] * (len(odd) + 1)})

    policy = ChatModelParticipant(OddBackend(tokenizer, lambda _p, _r: "x"), tokenizer)
    user = FunctionParticipant(lambda msgs, _c: "###STOP###" if len(msgs) > 2 else "hi")
    (episode,) = EpisodeRunner(mock_domain, policy, user).run([(task, 0)])
    sample = episode_to_sample(episode)
    assert [t for t, m in zip(sample.completion_ids, sample.env_mask, strict=True) if m] == odd + [
        tokenizer.eos_token_id]
    assert episode.messages[2].content == "Hello"


def test_malformed_tool_calls_become_tool_errors_not_crashes(tokenizer, mock_domain):
    task = next(t for t in mock_domain.tasks() if t.id == "create_task_1")
    bad = ["<tool_call>\n{not json}\n</tool_call>", '<tool_call>\n{"name": "nope", "arguments": {}}\n</tool_call>',
           "sorry"]
    policy = ChatModelParticipant(
        ScriptedBackend(tokenizer, lambda p, _r: bad[p.count("<|im_start|>assistant") - 2]), tokenizer)
    user = FunctionParticipant(lambda msgs, _c: "###STOP###" if any(m.content == "sorry" for m in msgs) else "hi")
    (episode,) = EpisodeRunner(mock_domain, policy, user).run([(task, 0)])
    tool_msgs = [m for m in episode.messages if m.role == "tool"]
    assert len(tool_msgs) == 2 and all(m.error for m in tool_msgs)
    assert episode.reward == 0.0 and episode_to_sample(episode).policy_turns == 3


def test_parse_completion_text_and_calls():
    assert parse_completion("  hi there ", "assistant") == Message(role="assistant", content="hi there")
    msg = parse_completion(CALL + "\n" + CALL, "assistant")
    assert [c.name for c in msg.tool_calls] == ["create_task", "create_task"] and msg.content is None
    assert msg.tool_calls[0].arguments == {"user_id": "user_1", "title": "Important Meeting"}
    assert parse_completion("<tool_call>[1]</tool_call>", "user").tool_calls[0].name == "invalid_tool_call"


def test_run_sync_used_for_runner(tokenizer, mock_domain):
    task = next(t for t in mock_domain.tasks() if t.id == "create_task_1")
    runner = EpisodeRunner(mock_domain, _scripted_policy(tokenizer), _scripted_user(), concurrency=4)
    episodes = run_sync(runner.arun([(task, k) for k in range(4)]))
    assert [e.trial for e in episodes] == [0, 1, 2, 3] and all(e.reward == 1.0 for e in episodes)
    assert not runner.policy._sessions  # token state is dropped when an episode ends
