"""`HFBackend` with prefix reuse against itself without: same ids, same logprobs, and never a stale cache.

Episodes are driven the way the policy drives the backend (`eigendspy.train.chat_tokens`): each request is the
previous prompt and completion plus a delta of template tokens and the other side's reply, so requests of one
episode share a token prefix and episodes share their system prompt. Reuse must not change a single sampled
id under greedy decoding (nor under seeded sampling with the same batches), and any change of the weights —
an optimizer step, fused or not, an in-place write, a loaded adapter, a GRPO step — must drop the cache.
"""

from __future__ import annotations

import asyncio

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from eigendspy.train.backends.base import SamplingParams  # noqa: E402
from eigendspy.train.backends.hf import HFBackend  # noqa: E402
from eigendspy.train.backends.prefix_cache import WeightsWatch  # noqa: E402

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=12)
SYSTEM = "You are a customer service agent. Help the user strictly according to the policy below. " * 4
USERS = ["cancel my order #W1234567", "Hi! my user id is user_1", "exchange please", "refund, thank you"]


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture()
def model(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)


def first_prompt(tok, user: str) -> list[int]:
    chat = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    return tok(tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False))["input_ids"]


def delta(tok, text: str) -> list[int]:
    """The template tokens that close the assistant turn and add a user reply (what `ChatTokens` appends)."""
    return tok(f"<|im_end|>\n<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n")["input_ids"]


def episodes(backend, tok, users=USERS, turns=3, params=GREEDY):
    """Concurrent multi-turn episodes through `HFBackend.generate`; every generation, per episode, in order."""
    async def one(i: int, user: str):
        ids, out = first_prompt(tok, user), []
        for turn in range(turns):
            gen = await backend.generate(ids, params)
            out.append(gen)
            ids = ids + gen.token_ids + delta(tok, f"turn {turn} of episode {i}")
        return out

    async def run():
        return await asyncio.gather(*(one(i, u) for i, u in enumerate(users)))

    return asyncio.run(run())


def assert_same(got, expected, tol=1e-5):
    for g, e in zip(got, expected, strict=True):
        assert g.token_ids == e.token_ids
        assert g.finish_reason == e.finish_reason
        assert g.logprobs == pytest.approx(e.logprobs, abs=tol)


def test_reuse_is_on_for_the_tiny_model_and_off_on_request(model, tok):
    assert HFBackend(model, tok).reuses_prefixes
    plain = HFBackend(model, tok, prefix_cache_tokens=0)
    assert not plain.reuses_prefixes and plain.reuse_off_because == "prefix_cache_tokens=0"


def test_single_episode_greedy_ids_match_and_turns_prefill_only_new_tokens(model, tok):
    plain, reuse = HFBackend(model, tok, prefix_cache_tokens=0), HFBackend(model, tok)
    expected = episodes(plain, tok, users=USERS[:1], turns=4)
    got = episodes(reuse, tok, users=USERS[:1], turns=4)
    for g, e in zip(got, expected, strict=True):
        assert_same(g, e)
    assert sum(len(gen.token_ids) for gen in got[0]) > 4 * 8  # the model did sample (no early stops everywhere)
    s = reuse.stats
    assert s["prompt_tokens"] == plain.stats["prompt_tokens"] == plain.stats["prefill_tokens"]
    # turn 1 prefills its prompt; later turns only the last completion token and the delta
    first = len(first_prompt(tok, USERS[0]))
    assert first <= s["prefill_tokens"] < first + 4 * 40
    assert s["reused_tokens"] == s["prompt_tokens"] - s["prefill_tokens"]


def test_concurrent_episodes_greedy_ids_match_and_share_the_system_prompt(model, tok):
    plain, reuse = HFBackend(model, tok, prefix_cache_tokens=0), HFBackend(model, tok)
    expected = episodes(plain, tok)
    got = episodes(reuse, tok)
    for g, e in zip(got, expected, strict=True):
        assert_same(g, e)
    assert reuse.stats["batches"] < reuse.stats["requests"]  # turns were batched
    # the system prompt was prefilled once for all four episodes, not four times
    system = len(first_prompt(tok, ""))
    assert reuse.stats["prefill_tokens"] < system + 3 * 4 * 40


def test_identical_prompts_in_one_batch_as_grpo_sends_them(model, tok):
    prompts = [first_prompt(tok, USERS[0])] * 4 + [first_prompt(tok, USERS[1])] * 2
    reuse = HFBackend(model, tok)
    got = reuse.generate_batch(prompts, GREEDY)
    assert_same(got, HFBackend(model, tok, prefix_cache_tokens=0).generate_batch(prompts, GREEDY))
    assert reuse.stats["reused_tokens"] >= 5 * (len(prompts[1]) // 2)  # rows 2.. reuse row 1's prefill


@pytest.mark.parametrize("params", [SamplingParams(temperature=1.0, seed=3, max_new_tokens=10),
                                    SamplingParams(temperature=0.7, top_p=0.9, seed=5, max_new_tokens=10)])
def test_seeded_sampling_draws_what_generate_draws(model, tok, params):
    """Same batches, same seed: the packed decoder consumes the RNG exactly as ``generate`` does."""
    plain, reuse = HFBackend(model, tok, prefix_cache_tokens=0), HFBackend(model, tok)
    prompts = [first_prompt(tok, u) for u in USERS]
    for turn in range(3):
        expected, got = plain.generate_batch(prompts, params), reuse.generate_batch(prompts, params)
        assert_same(got, expected)
        prompts = [p + g.token_ids + delta(tok, f"turn {turn}") for p, g in zip(prompts, got, strict=True)]
    assert reuse.stats["reused_tokens"] > 0


def test_stop_tokens_end_rows_where_generate_ends_them(model, tok):
    prompts = [first_prompt(tok, u) for u in USERS]
    free = HFBackend(model, tok, prefix_cache_tokens=0).generate_batch(prompts, GREEDY)
    stop = free[0].token_ids[3]
    params = GREEDY.model_copy(update={"stop_token_ids": (stop,)})
    expected = HFBackend(model, tok, prefix_cache_tokens=0).generate_batch(prompts, params)
    got = HFBackend(model, tok).generate_batch(prompts, params)
    assert_same(got, expected)
    assert got[0].finish_reason == "stop" and got[0].token_ids[-1] == stop and len(got[0].token_ids) <= 4


def test_the_cap_bounds_cached_tokens_and_evicts_least_recently_used(model, tok):
    cap = len(first_prompt(tok, USERS[0])) + 60
    reuse = HFBackend(model, tok, prefix_cache_tokens=cap)
    got = episodes(reuse, tok)
    assert reuse.cached_tokens <= cap
    for g, e in zip(got, episodes(HFBackend(model, tok, prefix_cache_tokens=0), tok), strict=True):
        assert_same(g, e)


def test_release_forgets_a_finished_episode(model, tok):
    reuse = HFBackend(model, tok)
    prompt = first_prompt(tok, USERS[0])
    gen = reuse.generate_batch([prompt], GREEDY)[0]
    held = reuse.cached_tokens
    assert held >= len(prompt)
    assert reuse.release(prompt + gen.token_ids) == held and reuse.cached_tokens == 0


# --- weights change: the cache goes ------------------------------------------------------------------------


def _nudge(model, lr=0.5, fused=False):
    """One real optimizer step on a loss over the whole model (large enough to move greedy ids)."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, fused=fused)
    ids = torch.tensor([list(range(5, 40))])
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    opt.zero_grad()
    model.eval()


def _turn_after_change(model, tok, change, monkeypatch=None):
    """Turn 1, ``change`` the weights, turn 2 with the cache: (reusing backend's turn 2, fresh plain turn 2)."""
    reuse = HFBackend(model, tok)
    prompts = [first_prompt(tok, u) for u in USERS[:2]]
    first = reuse.generate_batch(prompts, GREEDY)
    change()
    nxt = [p + g.token_ids + delta(tok, "and then?") for p, g in zip(prompts, first, strict=True)]
    got = reuse.generate_batch(nxt, GREEDY)
    return reuse, got, HFBackend(model, tok, prefix_cache_tokens=0).generate_batch(nxt, GREEDY)


def test_a_stale_cache_would_be_visible(model, tok, monkeypatch):
    """The check below can fail: with the watch blinded, turn 2 decodes from old keys and differs."""
    monkeypatch.setattr(WeightsWatch, "changed", lambda self, model: False)
    _, got, fresh = _turn_after_change(model, tok, lambda: _nudge(model))
    assert [g.token_ids for g in got] != [f.token_ids for f in fresh]


@pytest.mark.parametrize("fused", [False, True], ids=["adamw", "adamw-fused"])
def test_an_optimizer_step_drops_the_cache(model, tok, fused):
    """Fused AdamW (transformers' default optimizer) bumps no version counter: the step hook must catch it."""
    reuse, got, fresh = _turn_after_change(model, tok, lambda: _nudge(model, fused=fused))
    assert_same(got, fresh)
    assert reuse.stats["cache_invalidations"] == 1


def test_an_in_place_write_drops_the_cache(model, tok):
    def write():
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.5)

    reuse, got, fresh = _turn_after_change(model, tok, write)
    assert_same(got, fresh)
    assert reuse.stats["cache_invalidations"] == 1


def test_a_lora_step_drops_the_cache(model, tok):
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                      init_lora_weights=False))
    reuse, got, fresh = _turn_after_change(lora, tok, lambda: _nudge(lora, lr=1.0, fused=True))
    assert reuse.reuses_prefixes
    assert_same(got, fresh)
    assert reuse.stats["cache_invalidations"] == 1


def test_load_adapter_drops_the_cache(model, tok, tmp_path):
    lora = peft.get_peft_model(AutoModelForCausalLM.from_pretrained(model.name_or_path),
                               peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                               init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    reuse = HFBackend(model, tok)
    reuse.generate_batch([first_prompt(tok, USERS[0])], GREEDY)
    assert reuse.cached_tokens > 0
    reuse.load_adapter(str(tmp_path / "adapter"), "step-1")
    assert reuse.cached_tokens == 0 and reuse.reuses_prefixes
    prompt = first_prompt(tok, USERS[0])
    expected = HFBackend(reuse.model, tok, prefix_cache_tokens=0).generate_batch([prompt], GREEDY)
    assert_same(reuse.generate_batch([prompt], GREEDY), expected)


def test_grpo_on_the_live_model_drops_the_cache_after_every_step(tiny_model_dir, tau2_dir, tmp_path):
    """In-process GRPO samples from the model it trains: each step's rollouts start from an empty cache."""
    from eigendspy.train.grpo.config import GRPORunConfig
    from eigendspy.train.grpo.run import build_trainer
    from tests.train.grpo_helpers import TASK_IDS, opening_user

    config = GRPORunConfig(model=str(tiny_model_dir), output_dir=str(tmp_path / "grpo"), domain="mock",
                           data_dir=str(tau2_dir / "mock"), task_ids=TASK_IDS[:2], num_generations=2,
                           tasks_per_step=1, max_steps=2, learning_rate=5e-2, report_to=[], use_cpu=True,
                           max_new_tokens=8, max_episode_steps=4, max_refill_rounds=0, lora_r=4, lora_alpha=8,
                           save_steps=1000)
    trainer, rollout = build_trainer(config, user=opening_user(), backend=None, shuffle_dataset=False)
    trainer.train()
    backend = rollout.backend
    assert isinstance(backend, HFBackend) and backend.reuses_prefixes
    assert trainer.state.global_step == 2
    assert backend.stats["cache_invalidations"] == 1  # step 2's rollouts found step 1's update
    assert backend.stats["reused_tokens"] > 0  # the G episodes of a task shared their first prompt


def test_a_model_that_cannot_reuse_generates_as_before(model, tok):
    model.generation_config.repetition_penalty = 1.3  # a logits processor the packed decoder does not apply
    backend = HFBackend(model, tok)
    assert not backend.reuses_prefixes and "repetition_penalty" in backend.reuse_off_because
    prompts = [first_prompt(tok, u) for u in USERS]
    expected = HFBackend(model, tok, prefix_cache_tokens=0).generate_batch(prompts, GREEDY)
    assert_same(backend.generate_batch(prompts, GREEDY), expected)
    assert backend.stats["reused_tokens"] == 0 and backend.cached_tokens == 0


@pytest.mark.parametrize("reuse", [True, False])
def test_logprobs_are_of_the_temperature_scaled_sampling_distribution(model, tok, reuse):
    """What TRL recomputes (logits / temperature) when it corrects off-policy samples, with and without reuse."""
    backend = HFBackend(model, tok, prefix_cache_tokens=131_072 if reuse else 0)
    prompt = first_prompt(tok, USERS[0])
    params = SamplingParams(temperature=0.5, max_new_tokens=8, seed=3)
    gen = asyncio.run(backend.generate(prompt, params))
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + gen.token_ids])).logits[0, len(prompt) - 1:-1].float()
    ids = torch.tensor(gen.token_ids).unsqueeze(-1)
    scaled = torch.log_softmax(logits / 0.5, -1).gather(-1, ids).squeeze(-1)
    raw = torch.log_softmax(logits, -1).gather(-1, ids).squeeze(-1)
    assert torch.allclose(torch.tensor(gen.logprobs), scaled, atol=1e-4)
    assert not torch.allclose(scaled, raw, atol=1e-3)
