"""A tiny, random, offline Qwen2 chat model for tests (SFT, GRPO, eval) — built in seconds on CPU.

Why build one instead of loading a small checkpoint: nothing may come from a model hub, and tests
must exercise the *real* training path (TRL's trainers, the chat template, assistant masks,
tool-call parsing), not a mock. So this module trains a byte-level BPE tokenizer locally with
``tokenizers``, gives it TRL's own shipped ``qwen2_5.jinja`` chat template byte for byte (TRL
recognises it by string equality: that is what switches on its tool-call parsing and its swap to
``qwen2_5_training.jinja`` for ``assistant_only_loss``), and random-initialises a ~100k-parameter
Qwen2 causal LM over that vocabulary.

Usage::

    from eigendspy.testing.tiny_model import build_tiny_model
    path = build_tiny_model(tmp_path / "tiny")
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)

In tests prefer the session-scoped ``tiny_model_dir`` fixture (``tests/conftest.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

#: Qwen2.5's control tokens: the first three are true special tokens (skipped when decoding).
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
#: Qwen2.5 keeps these as *added* but not special tokens, so decoded completions still contain them and
#: TRL's response parser can find the tool calls.
ADDED_TOKENS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<tools>", "</tools>")

_CORPUS = [
    "You are a customer service agent. Help the user strictly according to the policy below.",
    "Hi! How can I help you today? I need to cancel my order, please. Could you give me your user id?",
    "Sure, my user id is user_1 and the order id is #W1234567. Your request has been handled.",
    "Is there anything else I can help with? Thank you, that's all. ###STOP### ###TRANSFER###",
    '{"name": "get_order_details", "arguments": {"order_id": "#W1234567", "status": "completed"}}',
    '{"type": "function", "function": {"name": "update_task_status", "description": "Update a task.", '
    '"parameters": {"properties": {"task_id": {"type": "string", "title": "Task Id"}}, "required": ["task_id"], '
    '"type": "object", "title": "parameters"}}}',
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n",
    "<instructions>\n</instructions>\n<policy>\n</policy>\n<scenario>\n</scenario>\n",
    "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?'\"()[]{}<>-_=+*/\\#@$%&|~`^",
]


def qwen2_5_template(training: bool = False) -> str:
    """TRL's shipped Qwen2.5 chat template (or its training variant), exactly as TRL reads it.

    Read from the installed ``trl`` package rather than copied into this repo, so an upgrade of TRL
    can never leave us with a template TRL no longer recognises.
    """
    from importlib.resources import files

    name = "qwen2_5_training.jinja" if training else "qwen2_5.jinja"
    return (files("trl") / "chat_templates" / name).read_text(encoding="utf-8")


def build_tokenizer(vocab_size: int = 512, extra_corpus: list[str] | None = None) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on a small built-in corpus and wrap it for transformers.

    Byte-level BPE can encode any string (unknown characters fall back to bytes), so a tiny
    vocabulary still round-trips every dialogue and JSON tool call exactly.
    """
    tok = Tokenizer(models.BPE())
    # Qwen2's own normalizer and pre-tokenizer: ``AutoTokenizer`` reloads the saved folder as
    # ``Qwen2Tokenizer`` (from ``model_type``), which installs these; matching them here means the
    # built and the reloaded tokenizer give identical ids.
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS + qwen2_5_template().splitlines() + list(extra_corpus or []), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=qwen2_5_template(),
        model_max_length=32768,
    )


def build_tiny_model(
    out_dir: str | Path,
    *,
    seed: int = 0,
    vocab_size: int = 512,
    extra_corpus: list[str] | None = None,
    hidden_size: int = 64,
    num_layers: int = 2,
    intermediate_size: int = 128,
    dtype: torch.dtype | None = None,
) -> Path:
    """Build and save a tokenizer + random Qwen2 model to ``out_dir``; return the path.

    Default sizes follow DESIGN.md's RL facts (hidden 64, 2 layers, 4 heads, 2 KV heads, intermediate
    128): big enough to have every Qwen2 code path (GQA, RoPE, tied embeddings), small enough that a
    training step takes well under a second on CPU. Benchmarks and the GPU check ask for bigger sizes and
    pass the domain's text as ``extra_corpus`` so prompts tokenise to realistic lengths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(vocab_size, extra_corpus=extra_corpus)
    heads = max(4, hidden_size // 64)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=max(2, heads // 8),
        intermediate_size=intermediate_size,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    if dtype is not None:
        model = model.to(dtype)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "tiny_model.json").write_text(json.dumps({"params": model.num_parameters(), "vocab": len(tokenizer)}))
    return out


if __name__ == "__main__":  # pragma: no cover - manual use: python -m eigendspy.testing.tiny_model DIR
    import sys

    print(build_tiny_model(sys.argv[1] if len(sys.argv) > 1 else "tiny-qwen2"))
