"""SFT assistant masks from our own incremental rendering, token by token, on a Qwen2.5 and on ChatML templates.

Three tokenizers: the tiny model's with TRL's Qwen2.5 template; the same tokenizer with a plain ChatML
template (no tools, no ``{% generation %}`` markers: a template TRL cannot patch, like SmolLM2's); and
SmolLM2-135M-Instruct's own tokenizer and template when ``eigendspy model fetch`` has run.
"""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer
from trl.chat_template_utils import get_training_chat_template

from eigendspy.core.messages import Message, ToolCall
from eigendspy.core.render import ChatPrompt, user_chat
from eigendspy.lm.local.fetch import ModelNotFetchedError, dequantized_dir
from eigendspy.testing.chat_templates import plain_chatml_template, with_chat_template
from eigendspy.testing.tiny_model import qwen2_5_template
from eigendspy.train.chat_tokens import parse_completion, render_text, renders_tools, tokenize_dialogue
from tests.train.test_sft import CONVERSATION, TOOLS

CALL_1 = '<tool_call>\n{"name": "update_task_status", "arguments": {"task_id": "task_1", "status": "completed"}}\n' \
         '</tool_call>'
CALLS_2_3 = ('<tool_call>\n{"name": "update_task_status", "arguments": {"task_id": "task_2", "status": "completed"}}'
             '\n</tool_call>\n<tool_call>\n{"name": "update_task_status", "arguments": {"task_id": "task_3", '
             '"status": "completed"}}\n</tool_call>')
#: What the assistant writes in each of CONVERSATION's turns, as a rollout would sample it.
EXPECTED_TURNS = ["Hi! How can I help you today?<|im_end|>", f"{CALL_1}<|im_end|>",
                  "Done: task_1 is completed.<|im_end|>", f"{CALLS_2_3}<|im_end|>", "Both are completed too.<|im_end|>"]


@pytest.fixture(scope="module")
def qwen(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def chatml(tiny_model_dir, tmp_path_factory):
    return AutoTokenizer.from_pretrained(with_chat_template(
        tiny_model_dir, tmp_path_factory.mktemp("chatml") / "model", plain_chatml_template()))


@pytest.fixture(scope="module")
def smollm2():
    try:
        return AutoTokenizer.from_pretrained(dequantized_dir())
    except ModelNotFetchedError:
        pytest.skip("SmolLM2-135M-Instruct is not fetched (`eigendspy model fetch`)")


@pytest.fixture(params=["qwen", "chatml", "smollm2"])
def tokenizer(request):
    return request.getfixturevalue(request.param)


def _runs(mask):
    """[start, end) index runs where ``mask`` is 1."""
    runs, start = [], None
    for k, flag in enumerate([*mask, 0]):
        if flag and start is None:
            start = k
        elif not flag and start is not None:
            runs.append((start, k))
            start = None
    return runs


def _check_turns(tokenizer, ids, mask, expected_turns):
    """Each masked run decodes to exactly one expected turn; the token before it closes the role header."""
    assert len(ids) == len(mask)
    runs = _runs(mask)
    assert [tokenizer.decode(ids[a:b], skip_special_tokens=False) for a, b in runs] == expected_turns
    for a, b in runs:
        assert tokenizer.decode(ids[:a], skip_special_tokens=False).endswith("<|im_start|>assistant\n")
        assert ids[b - 1] == tokenizer.eos_token_id


def test_assistant_masks_token_by_token(tokenizer):
    prompt = ChatPrompt(messages=CONVERSATION, tools=TOOLS)
    ids, mask = tokenize_dialogue(tokenizer, prompt)
    _check_turns(tokenizer, ids, mask, EXPECTED_TURNS)
    # The ids are the template's rendering, cut after the last assistant turn's end-of-turn token.
    rendered = render_text(tokenizer, prompt, add_generation_prompt=False)
    assert rendered == tokenizer.decode(ids, skip_special_tokens=False) + "\n"
    context = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if not m], skip_special_tokens=False)
    assert "<policy>" in context and "update_task_status" in context and context.count("<tool_response>") == 3
    assert "Please mark task_1" in context and "Both are completed" not in context


def test_user_model_masks_the_simulated_users_turns(tokenizer):
    call = ToolCall(id="u1", name="toggle_airplane_mode", arguments={"on": False}, requestor="user")
    dialogue = [Message.assistant("Hi! How can I help you today?"), Message.user("My phone has no signal."),
                Message.assistant("Please turn airplane mode off."), Message.user(tool_calls=[call]),
                Message(role="tool", content="Airplane mode is off.", id="u1", requestor="user"),
                Message.assistant("Does it work now?"), Message.user("Yes, thanks! ###STOP###")]
    parameters = {"type": "object", "properties": {"on": {"type": "boolean"}}}
    schema = {"type": "function",
              "function": {"name": "toggle_airplane_mode", "description": "Toggle it.", "parameters": parameters}}
    ids, mask = tokenize_dialogue(tokenizer, user_chat("You have no signal.", dialogue, tools=[schema]))
    call_text = '<tool_call>\n{"name": "toggle_airplane_mode", "arguments": {"on": false}}\n</tool_call>'
    _check_turns(tokenizer, ids, mask, ["My phone has no signal.<|im_end|>", f"{call_text}<|im_end|>",
                                        "Yes, thanks! ###STOP###<|im_end|>"])
    context = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if not m], skip_special_tokens=False)
    assert "<scenario>" in context and "Does it work now?" in context and "Airplane mode is off." in context


def test_qwen_masks_differ_from_trls_training_template_only_by_the_newlines_a_rollout_never_samples(qwen):
    """Today's TRL path also trained the newline after ``<|im_start|>assistant`` (the generation prompt's) and the
    one after ``<|im_end|>``; the ids are the same (TRL's end with that last newline)."""
    out = qwen.apply_chat_template(CONVERSATION, tools=TOOLS, tokenize=True, return_dict=True,
                                   return_assistant_tokens_mask=True, chat_template=qwen2_5_template(training=True))
    ids, mask = tokenize_dialogue(qwen, ChatPrompt(messages=CONVERSATION, tools=TOOLS))
    assert out["input_ids"] == [*ids, qwen.convert_tokens_to_ids("\u010a")]  # "\n", byte-level
    trl_mask = out["assistant_masks"]
    differ = [k for k in range(len(trl_mask)) if (mask[k] if k < len(mask) else 0) != trl_mask[k]]
    assert all(trl_mask[k] == 1 and qwen.decode(out["input_ids"][k]) == "\n" for k in differ)
    before = [qwen.decode(out["input_ids"][k - 1], skip_special_tokens=False) for k in differ]
    assert before == ["assistant", "<|im_end|>"] * len(EXPECTED_TURNS)


def test_templates_without_tools_get_one_text_rendering_of_schemas_calls_and_results(qwen, chatml):
    assert renders_tools(qwen) and not renders_tools(chatml)
    with pytest.raises(ValueError, match="patching is not supported"):
        get_training_chat_template(chatml)  # why SFT cannot use TRL's assistant_only_loss on such templates
    text = render_text(chatml, ChatPrompt(messages=CONVERSATION, tools=TOOLS), add_generation_prompt=True)
    system = text.split("<|im_end|>", 1)[0]
    assert "<policy>" in system and '"name": "update_task_status"' in system and "<tool_call>" in system
    assert "<|im_start|>tool" not in text and text.count("<|im_start|>user\n<tool_response>") == 2
    assert text.count("<tool_response>") == 3 and text.endswith("<|im_start|>assistant\n")
    # What the model learns to write is what a rollout parses back into the same calls.
    parsed = parse_completion(CALLS_2_3, "assistant")
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [
        (c["function"]["name"], c["function"]["arguments"]) for c in CONVERSATION[7]["tool_calls"]]


def test_smollm2_template_drops_tools_so_they_are_inlined(smollm2):
    plain = smollm2.apply_chat_template(CONVERSATION[:3], tools=TOOLS, tokenize=False)
    assert "update_task_status" not in plain  # its own template ignores the schemas without a word
    assert not renders_tools(smollm2)
    text = render_text(smollm2, ChatPrompt(messages=CONVERSATION[:3], tools=TOOLS), add_generation_prompt=True)
    assert '"name": "update_task_status"' in text.split("<|im_end|>", 1)[0]
