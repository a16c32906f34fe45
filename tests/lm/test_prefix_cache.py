"""Tests for the local engine's prefix KV cache (eigendspy.lm.local.prefix_cache).

The contract: a call that reuses the KV states of a cached token prefix prefills only the rest and,
with its KV cache growing in place (eigendspy.lm.local.kv_cache), grammar-forced tokens taken without
logits and prompt-lookup drafts verified several per forward (eigendspy.lm.local.decode), answers with
the same token ids as ``model.generate`` over stock cache layers without any of them (greedy decoding,
free text and grammar-constrained JSON). Checked on the tiny random Qwen2 (``tiny_model_dir``) and, with
``EIGENDSPY_SLOW=1`` once the model is fetched, on SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("xgrammar")

import torch  # noqa: E402

from eigendspy.lm.local import fetch as model_fetch  # noqa: E402
from eigendspy.lm.local.engine import LocalEngine  # noqa: E402
from eigendspy.lm.local.prefix_cache import PrefixCache  # noqa: E402
from eigendspy.lm.local.prompt import encode_prompt  # noqa: E402

#: The engine with every optimisation off: ``model.generate`` over transformers' own cache layers, no reuse.
STOCK = {"prefix_cache": 0, "draft_tokens": 0, "grow_cache": False, "greedy_loop": False}
SYSTEM = {"role": "system", "content": "You are a customer service agent. Follow the policy below strictly. " * 6}
QUESTIONS = ["cancel my order #W1234567", "cancel my order #W7654321 please", "user_1 here: hours?", "hi"]
SCHEMA = {
    "type": "json_schema",
    "schema": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "count": {"type": "integer"},
                       "kind": {"enum": ["refund", "exchange", "question"]}},
        "required": ["name", "count", "kind"],
        "additionalProperties": False,
    },
}


def _layers(n: int, fill: float = 0.0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Two layers of fake KV states for ``n`` positions, shaped like transformers' ``[batch, heads, seq, dim]``."""
    return [(torch.full((1, 2, n, 4), fill), torch.full((1, 2, n, 4), fill)) for _ in range(2)]


# --- the LRU itself -------------------------------------------------------------------------------------


def test_lookup_takes_the_longest_shared_token_prefix_and_leaves_one_token_to_prefill() -> None:
    cache = PrefixCache(max_entries=4, min_prefix=2)
    cache.store(list(range(10)), _layers(10, 1.0))
    cache.store([0, 1, 2, 3, 4, 5, 99, 98], _layers(8, 2.0))
    n, layers = cache.lookup([0, 1, 2, 3, 4, 5, 6, 7, 50])
    assert n == 8 and layers is not None and layers[0][0].shape[-2] == 8 and float(layers[0][0][0, 0, 0, 0]) == 1.0
    n, _ = cache.lookup(list(range(10)))  # the whole prompt is cached: the last token is still fed
    assert n == 9
    assert cache.lookup([7, 7, 7]) == (0, None)
    assert cache.lookup([0, 9, 9]) == (0, None)  # 1 shared token is under min_prefix
    assert (cache.stats.hits, cache.stats.misses, cache.stats.reused_tokens) == (2, 2, 17)


def test_store_drops_entries_the_new_prompt_extends_and_evicts_least_recently_used() -> None:
    cache = PrefixCache(max_entries=2, min_prefix=1)
    cache.store([1, 2, 3], _layers(3))
    cache.store([1, 2, 3, 4, 5], _layers(5))  # extends the first: replaces it
    assert len(cache) == 1
    cache.store([7, 8, 9], _layers(3))
    cache.lookup([1, 2, 3, 4, 0])  # touches the first entry
    cache.store([5, 5, 5], _layers(3))  # evicts [7, 8, 9], the least recently used
    assert len(cache) == 2
    assert cache.lookup([7, 8, 9, 1]) == (0, None)
    assert cache.lookup([1, 2, 3, 4, 5, 6])[0] == 5


def test_token_budget_bounds_the_cache_but_keeps_the_newest_prompt() -> None:
    cache = PrefixCache(max_entries=8, max_tokens=10, min_prefix=1)
    cache.store(list(range(6)), _layers(6))
    cache.store(list(range(100, 106)), _layers(6))  # 12 tokens > 10: the older goes
    assert len(cache) == 1 and cache.lookup(list(range(7)))[0] == 0
    cache.store(list(range(200, 230)), _layers(30))  # alone over the budget: still kept
    assert len(cache) == 1 and cache.lookup(list(range(200, 231)))[0] == 30


# --- the engine: same answers, less prefill -------------------------------------------------------------


@pytest.fixture(scope="module")
def engines(tiny_model_dir: Path) -> tuple[LocalEngine, LocalEngine]:
    on = LocalEngine(tiny_model_dir, max_new_tokens=16, close_tokens=32)  # the defaults: every optimisation on
    off = LocalEngine(tiny_model_dir, max_new_tokens=16, close_tokens=32, **STOCK)
    return on, off


@pytest.mark.parametrize("response_format", [None, SCHEMA], ids=["free-text", "json-schema"])
def test_cached_prefix_gives_the_same_greedy_token_ids(engines, response_format) -> None:
    on, off = engines
    on.prefix_cache.clear()
    for i, question in enumerate(QUESTIONS):
        messages = [SYSTEM, {"role": "user", "content": question}]
        cached, fresh = on.generate(messages, response_format=response_format), off.generate(
            messages, response_format=response_format)
        assert cached.token_ids == fresh.token_ids and cached.text == fresh.text
        assert cached.finish_reason == fresh.finish_reason and len(cached.token_ids) > 0
        assert fresh.cached_tokens == 0
        if i == 0:
            assert cached.cached_tokens == 0  # nothing cached yet: a full prefill
        else:
            shared = encode_prompt(on.tokenizer, [SYSTEM, {"role": "user", "content": ""}])
            assert cached.cached_tokens >= len(shared) - 8  # at least the system message came from the cache
            assert cached.cached_tokens < cached.prompt_tokens


def test_a_growing_dialogue_reuses_the_previous_prompt(engines) -> None:
    on, off = engines
    on.prefix_cache.clear()
    dialogue = [SYSTEM, {"role": "user", "content": "cancel my order"}]
    first = on.generate(dialogue, response_format=SCHEMA)
    dialogue += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "yes, #W1234567"}]
    second, reference = on.generate(dialogue, response_format=SCHEMA), off.generate(dialogue, response_format=SCHEMA)
    assert second.token_ids == reference.token_ids
    before = encode_prompt(on.tokenizer, dialogue[:2])
    now = encode_prompt(on.tokenizer, dialogue)
    shared = next((i for i, (a, b) in enumerate(zip(before, now, strict=False)) if a != b), len(before))
    assert second.cached_tokens == shared  # exactly the shared token prefix, no more, no less


def test_prefix_cache_zero_turns_reuse_off_and_is_saved_with_the_lm(engines) -> None:
    on, off = engines
    assert off.prefix_cache is None and off.dump_state()["prefix_cache"] == 0
    assert on.dump_state()["prefix_cache"] == 8
    messages = [SYSTEM, {"role": "user", "content": "hi"}]
    off.generate(messages)
    assert off.generate(messages).cached_tokens == 0


def test_complete_reports_cached_tokens(engines) -> None:
    from dspy.lm15 import Message, Request

    on, _ = engines
    request = Request(model="local/tiny", system=SYSTEM["content"], messages=(Message.user("hours?"),))
    on.complete(request)
    assert on.complete(request).provider_data["cached_tokens"] > 0


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("EIGENDSPY_SLOW") != "1", reason="set EIGENDSPY_SLOW=1 to load SmolLM2")
def test_smollm2_gives_the_same_greedy_token_ids_with_the_prefix_cache() -> None:
    try:
        model_fetch.locate_gguf()
    except model_fetch.ModelNotFetchedError:
        pytest.skip("SmolLM2 not fetched (run `eigendspy model fetch`)")
    on = LocalEngine(max_new_tokens=32, max_string_chars=160, max_array_items=3)
    off = LocalEngine(max_new_tokens=32, max_string_chars=160, max_array_items=3, **STOCK)
    for question in QUESTIONS[:3]:
        for response_format in (SCHEMA, None):
            messages = [SYSTEM, {"role": "user", "content": question}]
            cached, fresh = on.generate(messages, response_format=response_format), off.generate(
                messages, response_format=response_format)
            assert cached.token_ids == fresh.token_ids
    assert on.prefix_cache.stats.hits >= 4


# --- prompt-lookup drafts (eigendspy.lm.local.decode) -----------------------------------------------------


def test_draft_tokens_follow_the_latest_earlier_occurrence_of_the_tail() -> None:
    from eigendspy.lm.local.decode import draft_tokens

    assert draft_tokens([5, 6, 7, 8, 1, 5, 6, 9, 9, 5, 6], max_draft=3) == [9, 9, 5]  # the latest [5, 6]
    assert draft_tokens([1, 2, 3, 4, 2, 3], max_draft=2) == [4, 2]
    assert draft_tokens([1, 2, 3, 4], max_draft=4) == []  # no earlier occurrence of any tail n-gram


def _same_ids_as_stock(engine: LocalEngine, stock: LocalEngine) -> list:
    """Generate every question free and under ``SCHEMA`` with both engines; assert the same token ids, finish
    reason and text; return ``(engine.last_decode, tokens generated)`` of each call (what its fast paths did)."""
    stats = []
    for question in QUESTIONS:
        for response_format in (None, SCHEMA):
            messages = [SYSTEM, {"role": "user", "content": question}]
            ours, reference = engine.generate(messages, response_format=response_format), stock.generate(
                messages, response_format=response_format)
            assert ours.token_ids == reference.token_ids and ours.finish_reason == reference.finish_reason
            assert ours.text == reference.text
            stats.append((copy.copy(engine.last_decode), len(ours.token_ids)))
    return stats


def test_drafted_greedy_decoding_matches_model_generate_token_for_token(tiny_model_dir: Path) -> None:
    drafted = LocalEngine(tiny_model_dir, max_new_tokens=16, close_tokens=32, prefix_cache=0, draft_tokens=8)
    plain = LocalEngine(tiny_model_dir, max_new_tokens=16, close_tokens=32, **STOCK)
    stats = _same_ids_as_stock(drafted, plain)
    assert all(s.forwards <= tokens for s, tokens in stats)
    assert sum(s.accepted for s, _ in stats) > 0  # drafts were really taken, so the check covered multi-token forwards


# --- the KV cache growing in place and grammar-forced tokens ----------------------------------------------


def test_growing_layer_holds_the_same_states_as_concatenation() -> None:
    from transformers.cache_utils import DynamicLayer

    from eigendspy.lm.local.kv_cache import MIN_ROOM, growing_layer_class

    grown, stock = growing_layer_class()(), DynamicLayer()
    torch.manual_seed(0)
    for step, n in enumerate([40, 1, 1, 3, MIN_ROOM + 5, 1]):  # the 5th update outgrows the first buffer
        k, v = torch.randn(1, 2, n, 4), torch.randn(1, 2, n, 4)
        ours, theirs = grown.update(k, v), stock.update(k, v)
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
        if step == 3:
            grown.crop(-2)
            stock.crop(-2)  # like rejected drafts: the next update overwrites the cropped room
    assert grown.get_seq_length() == stock.get_seq_length() == 40 + 1 + 1 + 3 - 2 + MIN_ROOM + 5 + 1


def test_growing_cache_and_forced_tokens_give_model_generates_token_ids(tiny_model_dir: Path) -> None:
    fast = LocalEngine(tiny_model_dir, max_new_tokens=16, close_tokens=32, prefix_cache=0)  # grow + own loop
    stock = LocalEngine(tiny_model_dir, max_new_tokens=16, close_tokens=32, **STOCK)
    stats = _same_ids_as_stock(fast, stock)
    assert sum(s.forced for s, _ in stats) > 0  # keys and the end of the JSON are forced: the logits-free path ran
