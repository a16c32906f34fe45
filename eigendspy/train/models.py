"""The one loader of causal LMs and tokenizers: SFT, GRPO, model users and ``eval`` agents all use it.

Why one: what a run saves is either a full model folder or a PEFT adapter folder (SFT and GRPO save
adapters), and every consumer must open the second the same way — the base named in the adapter's
config (or the one the caller names), the adapter's weights on top, and the tokenizer saved with
the adapter (its chat template is the one training rendered with), else the base's. Loaders that
each got one of those details differently would let ``eval`` render another prompt than training did.

Does not own: swapping a new adapter into a live model during training (`HFBackend.load_adapter`),
device placement (trainers and callers move models), or building the tiny test model
(`eigendspy.testing.tiny_model`).

Example::

    model, tokenizer = load_model("runs/sft/adapter")          # base from the adapter's config
    model, tokenizer = load_model("Qwen/Qwen2.5-0.5B-Instruct", dtype=torch.bfloat16)
    tokenizer = load_tokenizer("runs/sft/adapter")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

#: A name starting with one of these is a local path, never a hub id (so a typo fails fast).
PATH_PREFIXES = ("/", "./", "../", "~")
ADAPTER_CONFIG = "adapter_config.json"


def is_adapter(path: str | Path) -> bool:
    """Whether ``path`` is a local PEFT adapter folder (it holds ``adapter_config.json``)."""
    return (Path(path).expanduser() / ADAPTER_CONFIG).is_file()


def adapter_base(path: str | Path) -> str:
    """The base model an adapter folder was trained on: its config's ``base_model_name_or_path``.

    Raises:
        ValueError: if the adapter's config names no base model.
    """
    from peft import PeftConfig

    base = PeftConfig.from_pretrained(str(Path(path).expanduser())).base_model_name_or_path
    if not base:
        raise ValueError(f"adapter {path} names no base model (base_model_name_or_path); pass `base=`")
    return base


def resolve(name: str | Path) -> str:
    """``name`` as ``from_pretrained`` should get it: a local folder's path, else a hub id.

    A `Path`, or a string that looks like a path (``/``, ``./``, ``../``, ``~``), must exist: it is
    never sent to the hub, where a typo would wait out the hub client's retries.

    Raises:
        FileNotFoundError: if a path-like name does not exist, or a local folder holds neither a
            model (``config.json``) nor an adapter (``adapter_config.json``).
    """
    local = Path(name).expanduser()
    if local.is_dir():
        if not ((local / "config.json").is_file() or (local / ADAPTER_CONFIG).is_file()):
            raise FileNotFoundError(f"{local} holds neither config.json (a model) nor {ADAPTER_CONFIG} "
                                    "(a PEFT adapter)")
        return str(local)
    if isinstance(name, Path) or local.exists() or str(name).startswith(PATH_PREFIXES):
        raise FileNotFoundError(f"model path not found: {name} (a model or PEFT adapter folder)")
    return str(name)


def load_tokenizer(path: str | Path, *, base: str | Path | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer (with its chat template) of a model folder, hub id or adapter folder.

    An adapter folder's own tokenizer wins when it saved one (SFT saves it: its template is the one
    training used); otherwise the base model's is loaded.

    Args:
        path: A model folder, a hub id, or a PEFT adapter folder.
        base: The base model of an adapter folder (default: the one its config names).

    Raises:
        FileNotFoundError: if the folder does not exist or the hub does not have the model.
    """
    from transformers import AutoTokenizer

    source = resolve(path)
    if is_adapter(source) and not (Path(source) / "tokenizer_config.json").is_file():
        source = _base_of(source, base)
    return _from_pretrained(AutoTokenizer, source)


def load_model(
    path: str | Path,
    *,
    trainable: bool = False,
    dtype: torch.dtype | str | None = None,
    base: str | Path | None = None,
) -> tuple[PreTrainedModel | PeftModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer from a model folder, a hub id, or a PEFT adapter folder.

    Args:
        path: A model folder, a hub id, or a PEFT adapter folder (its base is loaded first, then
            the adapter on top: the result is a ``peft.PeftModel``).
        trainable: Load an adapter's weights as trainable, to train it further (GRPO from an SFT
            adapter). A full model is returned as loaded either way; trainers wrap it in a new adapter.
        dtype: Weight dtype (e.g. ``torch.bfloat16``); ``None`` keeps ``transformers``' default.
        base: The base model of an adapter folder, overriding the one its config names (which may
            be a path on the machine that trained it). Adapter folders only.

    Raises:
        FileNotFoundError: if a folder does not exist or the hub does not have the model.
        ValueError: if ``base`` is given for a full model.
    """
    from transformers import AutoModelForCausalLM

    source = resolve(path)
    kwargs: dict[str, Any] = {} if dtype is None else {"dtype": dtype}
    if not is_adapter(source):
        if base is not None:
            raise ValueError(f"`base` applies to adapter folders; {path} is a full model")
        return _from_pretrained(AutoModelForCausalLM, source, **kwargs), load_tokenizer(source)
    from peft import PeftModel

    base_source = _base_of(source, base)
    model = _from_pretrained(AutoModelForCausalLM, base_source, **kwargs)
    model = PeftModel.from_pretrained(model, source, is_trainable=trainable)
    return model, load_tokenizer(source, base=base_source)


def _base_of(adapter: str, base: str | Path | None) -> str:
    try:
        return resolve(base if base is not None else adapter_base(adapter))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"base model of adapter {adapter}: {exc} (pass the base model explicitly)") from exc


def _from_pretrained(auto_class: Any, source: str, **kwargs: Any) -> Any:
    try:
        return auto_class.from_pretrained(source, **kwargs)
    except OSError as exc:  # a hub id that is not on a reachable hub, or a folder missing its files
        raise FileNotFoundError(f"model {source!r} is neither a local folder nor on a reachable hub: {exc}") from exc


__all__ = ["PATH_PREFIXES", "adapter_base", "is_adapter", "load_model", "load_tokenizer", "resolve"]
