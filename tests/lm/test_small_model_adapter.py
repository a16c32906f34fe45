"""The small-model JSON adapter (eigendspy.lm.small_model_adapter): stable-first prompts, DSPy's own constraints.

A role's calls in small-model mode differ in their per-call output types (grounded id enums, unions of
tool calls). These tests check that with `SmallModelJSONAdapter` two such calls share their whole system
message and the user message up to the dialogue (policy and tools included), that the per-call format
comes last and names the call's own ids, and that the response format (hence the grammar the local
engine compiles) is exactly the one `CachedJSONAdapter` sends: an id outside the enum is still rejected.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Optional

import dspy
import pytest

from eigendspy.agents import Assistant
from eigendspy.agents.assistant import schema_tools
from eigendspy.agents.transcript import transcript
from eigendspy.core.messages import Message
from eigendspy.core.participants import TurnContext
from eigendspy.domains import get_domain
from eigendspy.lm.cached_adapter import CachedJSONAdapter
from eigendspy.lm.small_model import tool_call_union, values_from_text, write_specs
from eigendspy.lm.small_model_adapter import SmallModelJSONAdapter, compact_schema
from eigendspy.signatures.assistant import AssistantTurn

DOMAIN = get_domain("mock", num_users=4, tasks_per_user=3)
CTX = TurnContext(role="assistant", task=None, domain=DOMAIN, tools=DOMAIN.tool_schemas())
TOOLS = schema_tools(CTX.tools)
HELLO = Message(role="assistant", content="Hi! How can I help you today?")
DIALOGUES = [
    [HELLO, Message(role="user", content='Please create a new task for a user (user_id "user_4", title "Eli Ito").')],
    [HELLO, Message(role="user", content="Please mark task_2 as completed, my id is user_1.")],
]


def _calls(adapter: dspy.Adapter) -> list[tuple[type[dspy.Signature], list[dict[str, str]]]]:
    """The two assistant calls (small-model signatures with different enums) as ``adapter`` formats them."""
    agent = Assistant(small_model=True)
    out = []
    for said in DIALOGUES:
        signature = agent._small_signature(said, CTX)
        out.append((signature, adapter.format(signature, [], {"policy": DOMAIN.policy, "dialogue": transcript(said),
                                                              "tools": TOOLS})))
    return out


def _shared(a, b):  # str or token ids
    n = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return a[:n]


def test_a_roles_calls_share_the_system_message_policy_and_tools(tiny_model_dir: Path) -> None:
    import transformers

    from eigendspy.lm.local.prompt import encode_prompt

    (sig1, first), (sig2, second) = _calls(SmallModelJSONAdapter())
    assert sig1.output_fields["tool_calls"].annotation != sig2.output_fields["tool_calls"].annotation
    assert first[0] == second[0]  # the system message no longer carries the per-call enums
    shared = _shared(first[1]["content"], second[1]["content"])
    assert DOMAIN.policy.strip() in shared and "[[ ## tools ## ]]" in shared and "transfer_to_human_agents" in shared
    assert shared.endswith("user: Please ")  # the first difference is in the user's words in the dialogue
    assert '"task_2"' in second[1]["content"].split("[[ ## dialogue ## ]]")[1]  # this call's ids, at the end
    assert '"task_2"' not in first[1]["content"]
    old = _calls(CachedJSONAdapter())
    assert old[0][1][0] != old[1][1][0]  # before: the system messages already differed
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = [encode_prompt(tokenizer, m) for m in (first, second)]
    common = len(_shared(ids[0], ids[1]))
    old_ids = [encode_prompt(tokenizer, m) for _, m in old]
    old_common = len(_shared(old_ids[0], old_ids[1]))
    assert common / len(ids[1]) > 0.75 and old_common / len(old_ids[1]) < 0.2


def test_the_response_format_and_grammar_are_dspys_own(tiny_model_dir: Path) -> None:
    xgr = pytest.importorskip("xgrammar")
    import transformers

    from eigendspy.lm.local.engine import local_lm

    lm = local_lm(tiny_model_dir, max_new_tokens=8, close_tokens=16)
    union = tool_call_union(write_specs(list(DOMAIN.toolkit)), values_from_text('{"user_id": "user_4"}'))
    signature = AssistantTurn.with_updated_fields("tool_calls", type_=Optional[union])  # noqa: UP045 - run time
    ours, stock = {}, {}
    SmallModelJSONAdapter()._prepare_response_format(lm, ours, signature)
    CachedJSONAdapter()._prepare_response_format(lm, stock, signature)
    schema = ours["response_format"].model_json_schema()  # DSPy sends this model's schema to the engine
    assert schema == stock["response_format"].model_json_schema()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    compiler = xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=len(tokenizer)))

    def accepts(call: dict) -> bool:
        matcher = xgr.GrammarMatcher(compiler.compile_json_schema(json.dumps(schema), any_whitespace=False))
        text = json.dumps({"tool_calls": call, "response": "ok"})
        return matcher.accept_string(text) and matcher.is_completed()

    assert accepts({"name": "create_task", "arguments": {"user_id": "user_4", "title": "Eli Ito"}})
    assert not accepts({"name": "create_task", "arguments": {"user_id": "user_99", "title": "Eli Ito"}})


def test_small_roles_answer_through_the_adapter_on_a_tiny_model(tiny_model_dir: Path) -> None:
    from eigendspy.lm.local.engine import local_lm

    lm = local_lm(tiny_model_dir, max_new_tokens=48, close_tokens=256)
    agent = Assistant(lm=lm, small_model=True)
    with dspy.context(adapter=SmallModelJSONAdapter()):
        message = asyncio.run(agent.respond(DIALOGUES[0], CTX))
    assert message.role == "assistant"
    # end to end through the engine's grammar (a smoke test: which call the random model makes varies; grounding
    # itself is asserted on the grammar in test_the_response_format_and_grammar_are_dspys_own)
    for call in message.tool_calls or []:
        assert call.name in {"create_task", "get_users", "transfer_to_human_agents"}
        assert call.arguments.get("user_id", "user_4") == "user_4"


def test_compact_schema_spells_out_constants_enums_and_alternatives() -> None:
    grounding = values_from_text('{"user_id": "user_1"}\n{"task_id": "task_2", "status": "pending"}')
    union = tool_call_union(write_specs(list(DOMAIN.toolkit)), grounding)
    import pydantic

    text = compact_schema(pydantic.TypeAdapter(union | None).json_schema())
    assert text.startswith('{"name": "create_task", "arguments": {"user_id": "user_1", "title": string}}')
    assert '{"name": "update_task_status", "arguments": {"task_id": "task_2", "status": "pending" | "completed"}}' \
        in text
    assert text.endswith(" | null")
    assert compact_schema({"type": "array", "items": {"type": "integer"}, "maxItems": 1}) == "[integer]"
