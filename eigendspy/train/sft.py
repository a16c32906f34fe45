"""Supervised fine-tuning of the agent or the user model: TRL's ``SFTTrainer`` with a PEFT LoRA adapter.

Why this is thin: the export (`eigendspy.engine.export`) already renders every row in the one
agent-facing contract (DESIGN.md), with tool-call arguments as dicts. What this module adds is the
part a run needs to be repeatable: one validated config (`SFTRunConfig`), the dataset taken
either from an export or straight from an engine run directory, loss on the assistant's tokens
only (the system prompt, user turns and tool outputs are context, not targets), resuming from
the newest checkpoint, and the adapter saved with its tokenizer.

Assistant-only loss is ours, not TRL's ``assistant_only_loss`` (which needs ``{% generation %}``
markers TRL can patch only into templates it knows: Qwen2.5's, not SmolLM2's). `tokenize_sft_dataset`
builds each row's ids as a GRPO rollout does (`chat_tokens.tokenize_dialogue`), so any model with a
prefix-stable chat template trains, with the loss on exactly the tokens GRPO's ``env_mask`` marks:
each assistant turn's content or tool calls and its end-of-turn token.

The same entry point trains the user model: ``side="user"`` picks the ``sft_user`` set, whose
rows are the dialogue seen from the user's side (the simulated user is the "assistant" there).

Distributed runs need no code here: start the CLI under ``accelerate launch --config_file
configs/accelerate/ddp.yaml`` (or ``fsdp.yaml``/``deepspeed_zero2.yaml``); only the main process
exports data and writes files.

Example::

    from eigendspy.train.sft import SFTRunConfig, train_sft

    result = train_sft(SFTRunConfig(model="Qwen/Qwen2.5-0.5B-Instruct", dataset="data/run1",
                                    output_dir="out/sft-agent", max_steps=200))
    print(result.adapter_dir, result.final_loss)
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from eigendspy.core.render import ChatPrompt
from eigendspy.train.chat_tokens import tokenize_dialogue

if TYPE_CHECKING:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

logger = logging.getLogger(__name__)

Side = Literal["agent", "user"]


class LoraSettings(BaseModel):
    """The LoRA adapter: rank, scale, dropout and which modules get one.

    ``"all-linear"`` puts an adapter on every linear layer except the output head, which is what
    tool-use SFT needs (attention *and* MLP) and keeps tied embeddings untouched.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: str | list[str] = "all-linear"


class SFTRunConfig(BaseModel):
    """Everything one SFT run needs; load it from a file with `eigendspy.train.config_io.load_config`.

    Give exactly one data source: ``dataset`` (an export folder holding ``sft_agent``/``sft_user``,
    or one of those dataset folders itself) or ``run_dir`` (an engine run, exported into
    ``output_dir/data`` first). ``max_steps`` wins over ``num_train_epochs`` when set.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(description="Local model folder, or a hub id where the hub is reachable")
    dataset: Path | None = None
    run_dir: Path | None = None
    domain_data: dict[str, Path] = Field(
        default_factory=dict, description="tau2 data folder per domain, for exporting a run_dir (default: manifest's)")
    side: Side = "agent"
    output_dir: Path
    lora: LoraSettings = LoraSettings()
    learning_rate: float = Field(2e-4, gt=0)
    num_train_epochs: float = Field(3.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    per_device_train_batch_size: int = Field(1, ge=1)
    gradient_accumulation_steps: int = Field(8, ge=1)
    max_length: int | None = Field(8192, ge=16, description="Tokens per row; longer rows are truncated; None: no cap")
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = Field(0.03, ge=0, description="Steps, or a fraction of all steps when below 1")
    activation_checkpointing: bool = Field(True, description="Recompute activations in backward (saves memory)")
    bf16: bool | Literal["auto"] = "auto"
    use_cpu: bool | Literal["auto"] = "auto"
    seed: int = 0
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(100, ge=1)
    save_total_limit: int | None = Field(2, ge=1)
    report_to: list[str] = Field(default_factory=lambda: ["tensorboard"])
    run_name: str | None = None
    resume: bool = Field(True, description="Continue from the newest checkpoint in output_dir when there is one")

    @model_validator(mode="after")
    def _one_data_source(self) -> SFTRunConfig:
        if (self.dataset is None) == (self.run_dir is None):
            raise ValueError("give exactly one of `dataset` (an export) or `run_dir` (an engine run)")
        return self

    @property
    def dataset_name(self) -> str:
        """The export's dataset for this side: ``sft_agent`` or ``sft_user``."""
        return f"sft_{self.side}"

    @property
    def adapter_dir(self) -> Path:
        return self.output_dir / "adapter"


class SFTResult(BaseModel):
    """What a run did: where the adapter is, how far it got, and how it went.

    ``final_loss`` is the last logged training loss (the run always logs its final step);
    ``train_loss`` is the mean over the steps of this call. Token counts cover this call only (a
    resumed run starts counting at the checkpoint), summed over all processes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    side: Side
    output_dir: Path
    adapter_dir: Path
    dataset_path: Path
    num_examples: int
    global_step: int
    final_loss: float
    train_loss: float
    train_runtime: float
    num_tokens: int | None = None
    tokens_per_second: float | None = None
    resumed_from: Path | None = None
    num_processes: int = 1


# -- data -------------------------------------------------------------------------------------------


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_info.json").is_file() or (path / "state.json").is_file()


def export_run_dir(config: SFTRunConfig) -> Path:
    """Export ``config.run_dir`` into ``output_dir/data`` and return that folder.

    Domains are built-in ones by name; a tau2 data folder comes from ``domain_data`` or, for the
    run's own domain, from its manifest, so the policy and user tools match what the run used.
    """
    from eigendspy.domains import get_domain
    from eigendspy.engine.export import export_run

    run_dir = Path(config.run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run_dir not found: {run_dir} (an engine run directory, from `eigendspy synth`)")
    if not any(run_dir.glob("*.jsonl")):
        raise FileNotFoundError(f"run_dir {run_dir} holds no record shards (*.jsonl); is it an engine run?")
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}

    def domain(name: str):  # a Domain, imported lazily
        data_dir = config.domain_data.get(name)
        if data_dir is None and manifest.get("domain") == name:
            data_dir = manifest.get("data_dir")
        return get_domain(name, data_dir=data_dir)

    out = config.output_dir / "data"
    result = export_run(run_dir, domain, out)
    logger.info("sft: exported %s -> %s (%s)", run_dir, out, result.counts)
    return out


def resolve_dataset_path(config: SFTRunConfig) -> Path:
    """The saved dataset folder to train on (no export is done here; see `export_run_dir`).

    Raises:
        FileNotFoundError: if the folder is missing or holds no dataset for this side.
        ValueError: if it is the other side's dataset (training the user model on agent rows, or
            the reverse, would run without error and learn the wrong role).
    """
    root = config.output_dir / "data" if config.run_dir is not None else Path(config.dataset)
    if not root.exists():
        raise FileNotFoundError(f"dataset not found: {root} (an `eigendspy export` folder or a saved dataset)")
    if (root / config.dataset_name).is_dir():
        return root / config.dataset_name
    other = "sft_user" if config.side == "agent" else "sft_agent"
    if root.name == other:
        raise ValueError(f"dataset {root} is the {other} set but side={config.side!r} trains on {config.dataset_name}")
    if _is_saved_dataset(root):
        return root
    raise FileNotFoundError(f"{root} holds neither {config.dataset_name}/ nor a saved dataset (save_to_disk)")


def load_sft_dataset(path: Path) -> Dataset:
    """A saved conversational dataset with at least one row and a ``messages`` column."""
    from datasets import load_from_disk

    ds = load_from_disk(str(path))
    if "messages" not in ds.column_names:
        raise ValueError(f"dataset {path} has no `messages` column (columns: {ds.column_names})")
    if len(ds) == 0:
        raise ValueError(f"dataset {path} is empty: the run accepted no dialogues for this side")
    return ds


def tokenize_sft_dataset(dataset: Dataset, tokenizer: Any) -> Dataset:
    """Each conversational row as ``input_ids`` and ``assistant_masks`` (1 on the assistant's own tokens).

    TRL's ``SFTTrainer`` takes such a pre-tokenized set as it is: it turns the mask into labels
    (``-100`` elsewhere), truncates to ``max_length`` and drops rows left without a label. Rows
    with no assistant turn are dropped here (they would train nothing).

    Raises:
        chat_tokens.TemplateError: if the tokenizer's template is not prefix-stable.
        ValueError: if no row has an assistant turn.
    """
    from datasets import Dataset

    columns: dict[str, list[list[int]]] = {"input_ids": [], "assistant_masks": []}
    for row in dataset:
        ids, mask = tokenize_dialogue(tokenizer, ChatPrompt(messages=row["messages"], tools=row.get("tools") or []))
        if any(mask):
            columns["input_ids"].append(ids)
            columns["assistant_masks"].append(mask)
    if not columns["input_ids"]:
        raise ValueError("no row of the dataset has an assistant turn to train on")
    if len(columns["input_ids"]) < len(dataset):
        logger.warning("sft: %d of %d rows have no assistant turn and are left out",
                       len(dataset) - len(columns["input_ids"]), len(dataset))
    return Dataset.from_dict(columns)


# -- trainer ----------------------------------------------------------------------------------------


def _auto(value: bool | str, detected: bool) -> bool:
    return detected if value == "auto" else bool(value)


def _checkpointing_kwargs(config_cls: type, enabled: bool) -> dict[str, Any]:
    """Activation checkpointing under the name this transformers knows (renamed from ``gradient_checkpointing``)."""
    name = "activation_checkpointing" if "activation_checkpointing" in config_cls.__dataclass_fields__ \
        else "gradient_checkpointing"
    return {name: enabled, f"{name}_kwargs": {"use_reentrant": False} if enabled else None}


def sft_args(config: SFTRunConfig) -> SFTConfig:
    """TRL's ``SFTConfig`` for this run (device and precision resolved; TRL's ``assistant_only_loss``
    off: rows arrive with their own masks, see `tokenize_sft_dataset`)."""
    import torch
    from trl import SFTConfig

    use_cpu = _auto(config.use_cpu, not torch.cuda.is_available())
    bf16 = _auto(config.bf16, not use_cpu and torch.cuda.is_bf16_supported())
    return SFTConfig(
        output_dir=str(config.output_dir),
        max_length=config.max_length,
        learning_rate=config.learning_rate,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_steps,
        **_checkpointing_kwargs(SFTConfig, config.activation_checkpointing),
        bf16=bf16,
        use_cpu=use_cpu,
        seed=config.seed,
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        report_to=list(config.report_to) or "none",
        run_name=config.run_name,
        ddp_find_unused_parameters=False,  # LoRA leaves the frozen base without grads: nothing is "unused"
        disable_tqdm=True,
    )


def _log_final_step():  # a TrainerCallback, imported lazily
    """A callback making the trainer log the last step, so ``final_loss`` is the loss the adapter ended at."""
    from transformers import TrainerCallback

    class LogFinalStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_log = True
            return control

    return LogFinalStep()


def build_sft_trainer(config: SFTRunConfig) -> SFTTrainer:
    """The ready-to-train ``SFTTrainer`` (LoRA applied, rows tokenized with masks by `tokenize_sft_dataset`).

    Exposed apart from `train_sft` so callers can inspect what will be trained on (e.g. the
    labels of ``trainer.train_dataset``) before spending compute.
    """
    import torch
    from peft import LoraConfig
    from trl import SFTTrainer

    from eigendspy.train.models import load_model

    args = sft_args(config)
    if config.run_dir is not None:
        with args.main_process_first(local=False, desc="export the engine run"):  # rank 0 writes, others read
            if args.process_index == 0:
                export_run_dir(config)
    model, tokenizer = load_model(config.model, dtype=torch.bfloat16 if args.bf16 else torch.float32)
    dataset = tokenize_sft_dataset(load_sft_dataset(resolve_dataset_path(config)), tokenizer)
    lora = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                      target_modules=config.lora.target_modules, task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=lora, callbacks=[_log_final_step()])
    return trainer


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest ``checkpoint-N`` folder under ``output_dir``, if any."""
    from transformers.trainer_utils import get_last_checkpoint

    if not Path(output_dir).is_dir():
        return None
    last = get_last_checkpoint(str(output_dir))
    return Path(last) if last else None


def _this_run(log_history: list[dict[str, Any]], start_step: int, key: str) -> float | None:
    values = [entry[key] for entry in log_history if key in entry and entry.get("step", 0) > start_step]
    return values[-1] if values else None


def train_sft(config: SFTRunConfig) -> SFTResult:
    """Train a LoRA adapter on the side's SFT set and save it (with the tokenizer) to ``output_dir/adapter``.

    With ``config.resume`` and a checkpoint in ``output_dir``, training continues from the newest
    one: the step count, optimizer and scheduler pick up where they stopped, so raising
    ``max_steps`` extends a finished run.

    Raises:
        FileNotFoundError: if the model, dataset or run directory does not exist.
        ValueError: if the dataset is empty, lacks ``messages``, or is the other side's set.
    """
    resume_from = latest_checkpoint(config.output_dir) if config.resume else None
    if not config.resume and latest_checkpoint(config.output_dir):
        logger.warning("sft: %s has checkpoints but resume=False: training from scratch", config.output_dir)
    trainer = build_sft_trainer(config)
    args = trainer.args
    if args.process_index == 0:
        config.output_dir.mkdir(parents=True, exist_ok=True)
        (config.output_dir / "sft_config.json").write_text(config.model_dump_json(indent=2))
    start_step = 0
    if resume_from is not None:
        start_step = json.loads((resume_from / "trainer_state.json").read_text()).get("global_step", 0)
        logger.info("sft: resuming from %s (step %d)", resume_from, start_step)
    output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)

    if trainer.is_fsdp_enabled:  # a sharded state dict would save a shard of the adapter per rank
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(config.adapter_dir))  # adapter weights + tokenizer (with the template it trained on)

    history = trainer.state.log_history
    final_loss = _this_run(history, start_step, "loss")
    runtime = float(output.metrics.get("train_runtime", 0.0))
    tokens = _this_run(history, start_step, "num_tokens")
    if final_loss is None or not math.isfinite(final_loss):
        logger.warning("sft: final loss is %s", final_loss)
    return SFTResult(
        side=config.side,
        output_dir=config.output_dir,
        adapter_dir=config.adapter_dir,
        dataset_path=resolve_dataset_path(config),
        num_examples=len(trainer.train_dataset),
        global_step=output.global_step,
        final_loss=float(final_loss if final_loss is not None else output.training_loss),
        train_loss=float(output.training_loss),
        train_runtime=runtime,
        num_tokens=int(tokens) if tokens is not None else None,
        tokens_per_second=tokens / runtime if tokens and runtime > 0 else None,
        resumed_from=resume_from,
        num_processes=args.world_size,
    )


__all__ = [
    "LoraSettings", "SFTResult", "SFTRunConfig", "Side", "build_sft_trainer", "export_run_dir", "latest_checkpoint",
    "load_sft_dataset", "resolve_dataset_path", "sft_args", "tokenize_sft_dataset", "train_sft",
]
