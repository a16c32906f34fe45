"""The one model/tokenizer loader: a model folder, a PEFT adapter folder (base from its config, or given),
the adapter's own tokenizer when it saved one, and clear errors for folders that are not models.
"""

from __future__ import annotations

import json

import pytest
import torch

from eigendspy.train.models import adapter_base, is_adapter, load_model, load_tokenizer, resolve


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter with non-zero weights (so it changes the model's output), saved by peft without a tokenizer."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules="all-linear", init_lora_weights=False))
    out = tmp_path_factory.mktemp("adapter") / "adapter"
    model.save_pretrained(out)
    return out


def _logits(model, tokenizer) -> torch.Tensor:
    ids = torch.tensor([tokenizer.encode("hello there")])
    with torch.inference_mode():
        return model(input_ids=ids).logits


def test_a_model_folder_loads_with_its_tokenizer(tiny_model_dir) -> None:
    from transformers import AutoTokenizer

    model, tokenizer = load_model(tiny_model_dir)
    assert type(model).__name__ == "Qwen2ForCausalLM" and not is_adapter(tiny_model_dir)
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(tiny_model_dir).chat_template
    assert load_tokenizer(str(tiny_model_dir)).get_vocab() == tokenizer.get_vocab()
    bf16, _ = load_model(str(tiny_model_dir), dtype=torch.bfloat16)
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}


def test_an_adapter_folder_loads_its_base_then_the_adapter(tiny_model_dir, adapter_dir) -> None:
    from peft import PeftModel

    assert is_adapter(adapter_dir) and adapter_base(adapter_dir) == str(tiny_model_dir)
    assert not (adapter_dir / "tokenizer_config.json").exists()
    base, base_tok = load_model(tiny_model_dir)
    model, tokenizer = load_model(adapter_dir)
    assert isinstance(model, PeftModel)
    assert tokenizer.chat_template == base_tok.chat_template  # no tokenizer saved: the base's
    assert load_tokenizer(adapter_dir).chat_template == base_tok.chat_template
    assert not torch.allclose(_logits(model, tokenizer), _logits(base, base_tok))  # the adapter is applied
    assert not any(p.requires_grad for p in model.parameters())


def test_a_trainable_adapter_trains_its_own_lora_weights(adapter_dir) -> None:
    model, _ = load_model(adapter_dir, trainable=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


def test_an_adapters_own_tokenizer_wins(tiny_model_dir, adapter_dir, tmp_path) -> None:
    import shutil

    own = tmp_path / "with_tokenizer"
    shutil.copytree(adapter_dir, own)
    tokenizer = load_tokenizer(tiny_model_dir)
    tokenizer.chat_template = "{{ 'saved with the adapter' }}"
    tokenizer.save_pretrained(own)
    assert load_tokenizer(own).chat_template == "{{ 'saved with the adapter' }}"
    assert load_model(own)[1].chat_template == "{{ 'saved with the adapter' }}"


def test_a_moved_base_is_given_explicitly(tiny_model_dir, adapter_dir, tmp_path) -> None:
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(adapter_dir, moved)
    config = json.loads((moved / "adapter_config.json").read_text())
    (moved / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "/gone/base"}))
    with pytest.raises(FileNotFoundError, match="base model of adapter .*model path not found: /gone/base"):
        load_model(moved)
    with pytest.raises(FileNotFoundError, match="/gone/base"):
        load_tokenizer(moved)
    model, tokenizer = load_model(moved, base=tiny_model_dir)
    reference, _ = load_model(adapter_dir)
    assert torch.equal(_logits(model, tokenizer), _logits(reference, tokenizer))
    assert load_tokenizer(moved, base=tiny_model_dir).chat_template


def test_clear_errors(tiny_model_dir, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="model path not found: ./no/such/model"):
        load_model("./no/such/model")
    with pytest.raises(FileNotFoundError, match="model path not found"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither config.json .* nor adapter_config.json"):
        load_model(tmp_path / "empty")
    with pytest.raises(ValueError, match="`base` applies to adapter folders"):
        load_model(tiny_model_dir, base=tiny_model_dir)
    assert resolve("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"  # a hub id is passed on as is
