"""`RecipeConfig`: one validated description of the paper's recipe (synthesize -> SFT -> GRPO -> pass^k), and
`PRESETS` sized from measurements.

Why one config with per-stage sections: every stage of the pipeline is resumable and keyed by a hash of the
settings it reads (`eigendspy.recipe.stages`), so each section is exactly what one stage depends on —
changing ``grpo.steps`` reruns the GRPO columns and their evaluations, never synthesis or SFT.

Presets (how they were sized is in `benchmarks/bench_recipe.py`'s docstring and the README):

- ``tiny``: the CI test on a tiny random model and scripted synthesis roles; checks machinery, not learning.
- ``cpu``: SmolLM2-135M-Instruct on 2 CPU cores in <= 90 minutes, from stage costs measured on this machine.
- ``gpu``: the same recipe at a size worth reading on one GPU.
- ``demo``: what ``eigendspy demo`` runs: a few tasks, a short agent SFT, base vs SFT on the held-out cells.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Column = Literal["base", "sft", "sft_grpo", "grpo_no_filter", "grpo_untrained_user"]
COLUMNS: tuple[Column, ...] = ("base", "sft", "sft_grpo", "grpo_no_filter", "grpo_untrained_user")
"""The compared agents: the base model; its SFT adapter; SFT then GRPO with dynamic filtering and the SFT'd
user model; and two ablations of that last one — GRPO without dynamic filtering, and GRPO with an untrained
user (`GRPOSettings.untrained_user`) instead of the SFT'd one."""
HeldOutSet = Literal["synth", "tau2"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SynthesisSettings(_Section):
    """The data engine run that makes the tasks and the teacher's dialogues."""

    tasks: int = Field(16, ge=2, description="Tasks to attempt (accepted ones are split into train and held-out)")
    streams: int = Field(4, ge=2, description="Plan streams; each owns one plan cell, the unit of the split")
    episodes_per_task: int = Field(1, ge=1)
    planner: Literal["grid", "lm"] = Field(
        "grid", description="'grid': distinct plan cells from a fixed grid (`eigendspy.recipe.grid_planner`); 'lm': "
        "the meta-planner on the synthesis LM (SmolLM2-135M's plans were one unusable cell, so not for it)")
    plan_tools: bool = Field(True, description="Each stream's tasks use the write tool its plan names (the engine's "
                             "plan_tools): SmolLM2 otherwise picked create_task for every task (measured)")
    small_model: bool = True
    llm_judges: bool = False
    max_new_tokens: int = Field(256, ge=16, description="Generation budget per call of the embedded model")
    max_steps: int = Field(16, ge=4, description="Orchestrator steps per synthesis episode")
    confirm_writes: bool = Field(True, description="The gold teacher asks for the go-ahead before each write")


class SplitSettings(_Section):
    """Train / held-out split by plan cell, with a near-duplicate check across it."""

    held_out_cells: float = Field(0.25, gt=0, lt=1, description="Share of plan cells held out (at least one)")
    ngram: int = Field(3, ge=1, description="Word n-grams of scenario text + gold actions")
    max_jaccard: float = Field(0.8, gt=0, le=1, description="Held-out tasks at least this similar to a train "
                               "task are dropped from the held-out set")
    tau2: bool = Field(True, description="Also evaluate on tau2-bench's own mock tasks (skipped when absent)")


class SFTSettings(_Section):
    """LoRA SFT of the agent (``sft_agent`` rows) and of the user model (``sft_user`` rows)."""

    steps: int = Field(20, ge=1)
    learning_rate: float = Field(1e-3, gt=0, description="High for LoRA, as measured: SmolLM2 on 5 rows at 1e-3 "
                                 "reached loss ~0.05 in 10 steps, at 2e-4 ~0.93 after 12 (and still rambled)")
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    max_length: int = Field(2048, ge=64)
    batch_size: int = Field(1, ge=1)
    grad_accum: int = Field(1, ge=1)
    user_model: bool = Field(True, description="Also train the user model (needed by the GRPO columns' users)")


class GRPOSettings(_Section):
    """Multi-turn GRPO from the SFT adapter (one run per GRPO column)."""

    steps: int = Field(4, ge=1)
    groups_per_step: int = Field(1, ge=1, description="Tasks (groups) per optimizer step")
    generations: int = Field(4, ge=2, description="Episodes per group (G)")
    max_new_tokens: int = Field(48, ge=4, description="Policy tokens per turn (the teacher's longest turn: ~40)")
    learning_rate: float = Field(5e-4, gt=0, description="LoRA; the rate at which SmolLM2's GRPO reward rose in "
                                 "tests/train/test_grpo_smollm_slow.py")
    temperature: float = Field(1.0, gt=0)
    dynamic_filtering: bool = Field(True, description="For the main column; the ablation turns it off")
    max_refill_rounds: int = Field(1, ge=0)
    max_episode_steps: int = Field(12, ge=4, description="A solved mock task takes 8-10 steps")
    user_max_new_tokens: int = Field(48, ge=4, description="Tokens per turn of a model user")
    untrained_user: Literal["base", "oracle"] = Field(
        "base", description="The user of the 'grpo_untrained_user' ablation: the base model or the scripted oracle")


class EvalSettings(_Section):
    """pass^k of every column on every held-out set, one fixed user for all columns."""

    trials: int = Field(4, ge=1, description="Trials per task: pass^1..pass^trials")
    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples for the CIs (0: none)")
    temperature: float = Field(1.0, gt=0, description="The agent samples as in GRPO, so trials differ")
    max_new_tokens: int = Field(48, ge=4)
    max_steps: int = Field(12, ge=4, description="Orchestrator steps per evaluation episode")
    concurrency: int = Field(8, ge=1, description="Episodes in flight (the HF backend batches them)")
    max_tasks: int | None = Field(4, ge=1, description="Cap per held-out set (None: all)")


class RecipeConfig(BaseModel):
    """The whole recipe; each stage reads only its section (plus ``domain``, ``model``, ``seed``).

    Attributes:
        domain: Built-in domain to synthesize in (the engine's seeded DB).
        domain_options: ``get_domain`` options of that DB (its size).
        model: Base model folder (or PEFT adapter); ``None``: the embedded SmolLM2-135M-Instruct.
        teacher: ``"gold"`` (`eigendspy.agents.GoldTeacher`) or a role LM id playing the DSPy `Assistant`.
        synthesis_lm: Role LM id of the other synthesis roles: ``"local"`` (embedded model), a LiteLLM id,
            or ``"scripted"`` (roles passed to `run_recipe` by the caller, e.g. `eigendspy.testing.scripted_roles`).
        tau2_data: tau2's ``domains/mock`` folder for the second held-out set (``None``: look in
            ``$EIGENDSPY_TAU2_SHARED`` and ``../shared/tau2``).
        columns: Which agents to train and evaluate.
        threads: torch CPU threads (0: torch's default).
        preset: The preset this config came from (recorded in the results).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    domain: str = "mock"
    domain_options: dict[str, int] = Field(default_factory=lambda: {"num_users": 8, "tasks_per_user": 4})
    model: str | None = None
    teacher: str = "gold"
    synthesis_lm: str = "local"
    seed: int = 0
    tau2_data: str | None = None
    columns: list[Column] = Field(default_factory=lambda: list(COLUMNS))
    threads: int = Field(0, ge=0)
    preset: str | None = None
    synthesis: SynthesisSettings = SynthesisSettings()
    split: SplitSettings = SplitSettings()
    sft: SFTSettings = SFTSettings()
    grpo: GRPOSettings = GRPOSettings()
    eval: EvalSettings = EvalSettings()

    @model_validator(mode="after")
    def _check(self) -> RecipeConfig:
        if not self.columns:
            raise ValueError("columns: name at least one of " + ", ".join(COLUMNS))
        if len(set(self.columns)) != len(self.columns):
            raise ValueError(f"columns: each at most once, got {self.columns}")
        grpo_columns = set(self.columns) - {"base", "sft"}
        if grpo_columns and not self.sft.user_model and grpo_columns != {"grpo_untrained_user"}:
            raise ValueError("the sft_grpo and grpo_no_filter columns train against the SFT'd user model: "
                             "keep sft.user_model on, or keep only base, sft and grpo_untrained_user")
        return self

    def with_overrides(self, **sections: dict | object) -> RecipeConfig:
        """A copy with top-level fields replaced and sections updated key by key (``grpo={"steps": 3}``)."""
        data = self.model_dump()
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict) and key != "domain_options":
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return RecipeConfig.model_validate(data)


PRESETS: dict[str, RecipeConfig] = {
    "tiny": RecipeConfig(
        preset="tiny", synthesis_lm="scripted",
        # The scripted roles answer the signatures' full output types and their user stops at the first
        # agent message naming the outcome: no small-model mode, no go-ahead question, no plan tools.
        synthesis=SynthesisSettings(tasks=8, streams=4, max_steps=12, small_model=False, confirm_writes=False,
                                    plan_tools=False),
        sft=SFTSettings(steps=2, learning_rate=1e-2, max_length=4096),
        grpo=GRPOSettings(steps=1, generations=2, max_new_tokens=8, max_refill_rounds=0, max_episode_steps=6,
                          user_max_new_tokens=8),
        eval=EvalSettings(trials=2, bootstrap=50, max_new_tokens=8, max_steps=12, max_tasks=2),
    ),
    # SmolLM2-135M on 2 CPU cores, sized from stage costs measured here under moderate load (README, "The
    # recipe"): ~48 s per synthesized task, 13 s per agent SFT row and 6 s per user SFT row, GRPO ~2-3 min per
    # step of one group of 4 (rollout 65 s per round, up to 2 rounds, + ~60 s of training), eval ~4 s per
    # synthesized and ~7 s per tau2 episode: ~13 + 6 + 3 x 10 + 5 x 3 = ~65-75 minutes.
    "cpu": RecipeConfig(preset="cpu"),
    # `eigendspy demo`: the README's first command, <= 15 minutes on 2 CPU cores (base vs SFT only, no tau2 data).
    "demo": RecipeConfig(
        preset="demo", columns=["base", "sft"],
        synthesis=SynthesisSettings(tasks=12, streams=4),
        split=SplitSettings(tau2=False),
        sft=SFTSettings(steps=12, user_model=False),
        eval=EvalSettings(trials=4, bootstrap=500, max_tasks=4),
    ),
    # Not measured at this size (no GPU run yet): the same recipe with 4x the data and 10x the RL. Synthesis
    # stays on the embedded model (on the GPU when there is one).
    "gpu": RecipeConfig(
        preset="gpu",
        synthesis=SynthesisSettings(tasks=64, streams=8),
        sft=SFTSettings(steps=100, learning_rate=5e-4, grad_accum=4),
        grpo=GRPOSettings(steps=40, groups_per_step=4, generations=8, max_new_tokens=96, max_refill_rounds=2,
                          max_episode_steps=16, user_max_new_tokens=64),
        eval=EvalSettings(trials=4, bootstrap=2000, max_new_tokens=96, max_steps=16, concurrency=32, max_tasks=None),
    ),
}
