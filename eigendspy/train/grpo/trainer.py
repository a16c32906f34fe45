"""Multi-turn GRPO on TRL's `GRPOTrainer`: whole episodes as completions, the checker as reward.

How the pieces meet:

* The dataset's ``prompt`` column holds task ids. TRL repeats each ``num_generations`` times and
  hands them to `EpisodeRollout` (TRL's ``rollout_func``), which runs G episodes per task on
  eigendspy's orchestrator (the policy is a `ChatModelParticipant` over a `RolloutBackend`; the user
  and the environment are the domain's), and returns the exact sampled ids, their logprobs and an
  ``env_mask`` (1 on policy tokens). The reward — tau2's reward minus NL assertions — rides along as
  an extra field and `checker_reward` passes it through, so TRL's own group-relative advantage
  ``(r - mean) / (std + eps)`` (unbiased std) is broadcast over each episode's policy tokens.
* Dynamic filtering happens *inside* the rollout function: groups with all-equal rewards are
  replaced by fresh tasks before TRL sees the batch (see `eigendspy.train.grpo.filtering`). This keeps TRL's
  fixed batch geometry and its loss untouched, so no custom training loop was needed.
* Infrastructure errors are never a sample: such an episode is rerun, a group that still lost one is
  refilled like a filtered group, the count is logged as ``rollout/infra_errors``, and a step with
  too many stops the run (`eigendspy.train.grpo.rollout.InfraErrorTally`).
* TRL calls the rollout function once per step with all its episodes, then trains in micro-batches
  (``micro_batch_size``, gradient accumulation): see `eigendspy.train.grpo.run.batch_args`.
* LoRA via peft; with ``beta > 0`` TRL uses the adapter-disabled model as the KL reference.
* Batches not sampled from the live weights in-process (a server, overlapped rollouts, TRL's own vLLM) are
  reweighted by TRL's truncated importance sampling on the sampling logprobs; see `EigenGRPOTrainer`.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import time
from collections.abc import Mapping
from typing import Any

import torch
from trl import GRPOTrainer

from eigendspy.core.domain import Domain
from eigendspy.core.orchestrator import Episode, EpisodeConfig
from eigendspy.core.participants import Participant
from eigendspy.core.render import agent_chat
from eigendspy.core.task import Task
from eigendspy.scoring.results import is_success
from eigendspy.train.backends.base import RolloutBackend, SamplingParams
from eigendspy.train.chat_tokens import ChatTokens
from eigendspy.train.grpo.adapters import publish_adapter
from eigendspy.train.grpo.filtering import FilterStats, GroupsLost, TaskPool, fill_groups
from eigendspy.train.grpo.rollout import (
    EmptyEpisode,
    EpisodeRunner,
    InfraErrorTally,
    RolloutSample,
    TooManyInfraErrors,
    episode_to_sample,
    is_infra_error,
)
from eigendspy.train.policy import ChatModelParticipant

logger = logging.getLogger(__name__)


def checker_reward(prompts: list[Any], completions: list[Any], reward: list[float], **_: Any) -> list[float]:
    """TRL reward function: the episode's checker reward, computed during the rollout."""
    return [float(r) for r in reward]


class EpisodeRollout:
    """TRL ``rollout_func``: task ids in, multi-turn episodes (ids, logprobs, env_mask, reward) out.

    Args:
        domain: The domain the tasks live in.
        tasks: Every task the dataset may name (also the refill pool for dynamic filtering).
        user: The user participant (oracle, DSPy `UserSimulator`, or a user model).
        backend: Where the policy's tokens come from. ``None``: an in-process `HFBackend` over the
            trainer's live model (created on first call).
        sampling: Sampling parameters of the policy.
        dynamic_filtering / max_refill_rounds: See `eigendspy.train.grpo.filtering.fill_groups`.
        episode_config: Orchestrator limits for RL episodes.
        adapter_dir: With a remote backend, where each step's adapter is saved before it is loaded.
        overlap: Sample the next batch (with the current adapter) while the trainer trains on this one:
            rollouts and training overlap at the cost of one step of policy lag. Remote backends only.
        infra_retries: Reruns of an episode that ends on an infrastructure error before its group is
            given up (and refilled with a fresh task like a filtered group).
        max_infra_error_share: A batch whose share of failed attempts passes this stops the run.
    """

    def __init__(
        self,
        domain: Domain,
        tasks: Mapping[str, Task],
        user: Participant,
        *,
        backend: RolloutBackend | None = None,
        sampling: SamplingParams | None = None,
        dynamic_filtering: bool = True,
        max_refill_rounds: int = 3,
        episode_config: EpisodeConfig | None = None,
        concurrency: int = 32,
        max_context_tokens: int | None = None,
        adapter_dir: str | None = None,
        overlap: bool = False,
        seed: int = 0,
        infra_retries: int = 2,
        max_infra_error_share: float = 0.25,
    ) -> None:
        self.domain = domain
        self.tasks = dict(tasks)
        self.user = user
        self.backend = backend
        self.sampling = sampling or SamplingParams()
        self.dynamic_filtering = dynamic_filtering
        self.max_refill_rounds = max_refill_rounds
        self.episode_config = episode_config or EpisodeConfig(max_steps=30)
        self.concurrency = concurrency
        self.max_context_tokens = max_context_tokens
        self.adapter_dir = adapter_dir
        if overlap and backend is None:
            raise ValueError("overlap needs a separate rollout backend (a vLLM server): in-process generation "
                             "shares the weights the trainer is updating")
        self.overlap = overlap
        self._pending: concurrent.futures.Future | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.pool = TaskPool(list(self.tasks), seed=seed)
        self._trials = itertools.count()
        self._loaded_step = -1
        self.history: list[dict[str, Any]] = []  # one entry per call: stats and the kept rewards
        self.infra_retries = infra_retries
        self.max_infra_error_share = max_infra_error_share

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        G = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
        task_ids = _group_task_ids(prompts, G)
        tokenizer = trainer.processing_class
        if not self.overlap:
            samples, entry = self._rollout(task_ids, G, tokenizer, self._backend(trainer))
        else:
            # One step off-policy: hand TRL the batch sampled (with the previous adapter) while the last step
            # trained, then load the current adapter and start sampling the next batch with it. Harvest first:
            # the server must not drop the adapter that in-flight requests still use. The task ids TRL passed
            # seed the next batch (dynamic filtering already lets a batch's tasks differ from TRL's picks).
            # EigenGRPOTrainer reweights the lagged batch with TRL's importance-sampling correction.
            if self._pending is None:  # first step: nothing prefetched yet
                self._pending = self._executor().submit(self._rollout, task_ids, G, tokenizer,
                                                        self._backend(trainer))
            samples, entry = self._pending.result()
            self._pending = self._executor().submit(self._rollout, task_ids, G, tokenizer, self._backend(trainer))
        self._log(trainer, entry)
        self.history.append({**entry, "kept_rewards": [s.reward for s in samples]})
        return {
            "prompt_ids": [s.prompt_ids for s in samples],
            "completion_ids": [s.completion_ids for s in samples],
            "logprobs": [s.logprobs for s in samples],
            "env_mask": [s.env_mask for s in samples],
            "reward": [s.reward for s in samples],
            "task_id": [s.task_id for s in samples],
        }

    def _rollout(self, task_ids: list[str], G: int, tokenizer: Any,
                 backend: RolloutBackend) -> tuple[list[RolloutSample], dict[str, Any]]:
        """Run (and refill) one batch of groups; touches no trainer state, so it may run in a thread."""
        started = time.perf_counter()
        served = getattr(backend, "served_model", None)
        policy = ChatModelParticipant(backend, tokenizer, sampling=self.sampling,
                                      max_context_tokens=self.max_context_tokens)
        runner = EpisodeRunner(self.domain, policy, self.user, config=self.episode_config,
                               concurrency=self.concurrency)
        groups: list[list[Episode]] = []
        tally = InfraErrorTally(self.max_infra_error_share)

        def run_groups(ids: list[str]) -> list[list[float] | None]:
            jobs = [(self.tasks[tid], next(self._trials)) for tid in ids for _ in range(G)]
            episodes = runner.run(jobs, retries=self.infra_retries, next_trial=lambda: next(self._trials),
                                  on_attempt=tally.record)
            tally.check()  # fail fast: a dead server should not cost every refill round
            chunk = [episodes[i * G:(i + 1) * G] for i in range(len(ids))]
            groups.extend(chunk)
            return [None if any(map(is_infra_error, group)) else [_reward(e) for e in group] for group in chunk]

        try:
            _, kept, stats = fill_groups(task_ids, run_groups, self.pool, enabled=self.dynamic_filtering,
                                         max_rounds=self.max_refill_rounds)
        except GroupsLost as exc:
            raise TooManyInfraErrors(tally.describe(f"max_infra_error_share={tally.max_share:g}; {exc}")) from exc
        samples = [self._sample(e, tokenizer) for i in kept for e in groups[i]]
        entry = _entry(samples, groups, stats, time.perf_counter() - started)
        entry.update(infra_errors=tally.errors, infra_error_share=tally.share, first_infra_error=tally.first_error)
        entry["sampled_with"] = served
        return samples, entry

    def close(self) -> None:
        """Finish the prefetched batch (if any) and stop the rollout thread; call after training."""
        if self._pending is not None and not self._pending.cancel():
            self._pending.exception()  # already running: wait for it (its batch is discarded)
        self._pending = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def samples_on_policy(self, trainer: Any) -> bool:
        """Whether batches are sampled in-process from the very weights being trained (no lag, same model).

        Only then are the sampling logprobs the trainer's own, so `EigenGRPOTrainer` skips the importance-sampling
        correction; a server, another model object, a scripted backend or an overlapped batch gets it.
        """
        live = trainer.accelerator.unwrap_model(trainer.model)
        return not self.overlap and getattr(self.backend, "model", None) is live

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="eigendspy-rollout")
        return self._pool

    # ----------------------------------------------------------------------------------
    def _backend(self, trainer: Any) -> RolloutBackend:
        if self.backend is None:
            from eigendspy.train.backends.hf import HFBackend

            self.backend = HFBackend(trainer.accelerator.unwrap_model(trainer.model), trainer.processing_class)
        elif self.adapter_dir is not None and trainer.state.global_step != self._loaded_step:
            # Rank 0 saves and loads the step's adapter once; the other ranks wait, then use its name.
            publish_adapter(trainer.accelerator, trainer.accelerator.unwrap_model(trainer.model), self.backend,
                            self.adapter_dir, trainer.state.global_step)
            self._loaded_step = trainer.state.global_step
        return self.backend

    def _sample(self, episode: Episode, tokenizer: Any) -> RolloutSample:
        try:
            return episode_to_sample(episode)
        except EmptyEpisode:
            # The episode ended before the policy spoke (e.g. a user error): train on nothing from it.
            task = self.tasks[episode.task_id]
            chat = agent_chat(self.domain.policy, self.domain.tool_schemas("assistant"), episode.messages)
            prompt = ChatTokens(tokenizer).prompt_for(chat)
            return RolloutSample(task_id=task.id, trial=episode.trial, prompt_ids=prompt,
                                 completion_ids=[tokenizer.eos_token_id], logprobs=[0.0], env_mask=[0],
                                 reward=_reward(episode), termination_reason=episode.termination_reason.value)

    @staticmethod
    def _log(trainer: Any, entry: dict[str, Any]) -> None:
        metrics = getattr(trainer, "_metrics", None)
        if metrics is not None:
            mode = "train" if trainer.model.training else "eval"
            for key, value in entry.items():
                if isinstance(value, int | float):
                    metrics[mode][f"rollout/{key}"].append(float(value))


def _entry(samples: list[RolloutSample], groups: list[list[Episode]], stats: FilterStats,
           wall: float) -> dict[str, Any]:
    """One batch's rollout stats; rewards are averaged over the episodes that have one (no infra errors)."""
    every = [e for g in groups for e in g]
    scored = [e for e in every if not is_infra_error(e)]
    policy_tokens = sum(s.policy_tokens for s in samples)
    return {
        "filtered_fraction": stats.filtered_fraction,
        "groups_run": stats.groups_run,
        "groups_dropped": stats.groups_dropped,
        "groups_lost": stats.groups_lost,
        "uninformative_kept": stats.groups_kept_uninformative,
        "reward_mean_all": sum(_reward(e) for e in scored) / len(scored) if scored else 0.0,
        "pass_rate_all": sum(is_success(_reward(e)) for e in scored) / len(scored) if scored else 0.0,
        "policy_tokens_per_s": policy_tokens / wall if wall else 0.0,
        "episodes_per_s": len(every) / wall if wall else 0.0,
        "rollout_s": wall,
    }


def _reward(episode: Episode) -> float:
    return float(episode.reward) if episode.reward is not None else 0.0


def _group_task_ids(prompts: list[Any], G: int) -> list[str]:
    """TRL repeats each prompt G times consecutively; check that and return one task id per group."""
    if len(prompts) % G:
        raise ValueError(f"{len(prompts)} prompts is not a multiple of num_generations={G}: each process must "
                         "hold whole groups (make per_device_train_batch_size a multiple of num_generations)")
    ids = [p if isinstance(p, str) else str(p) for p in prompts]
    groups = [ids[i:i + G] for i in range(0, len(ids), G)]
    for group in groups:
        if len(set(group)) != 1:
            raise ValueError(f"a group of {G} prompts names several tasks {sorted(set(group))}: the dataset's "
                             "'prompt' column must hold task ids and each process must receive whole groups")
    return [g[0] for g in groups]


class EigenGRPOTrainer(GRPOTrainer):
    """`GRPOTrainer` that corrects off-policy rollouts with TRL's own importance sampling, and can record what
    the loss used (``capture=True``: advantages, masks, logprobs, importance ratios) for tests and logs.

    TRL applies its truncated importance-sampling correction (the per-token ratio of the trained model's to
    the sampler's probability, clipped or masked per ``vllm_importance_sampling_mode`` and its clip bounds)
    only under ``use_vllm``, yet our rollout function also samples elsewhere: a vLLM server serving a saved
    adapter, or a batch sampled one step earlier (``overlap``). So while TRL scores such a batch and computes
    its loss, this trainer reports ``use_vllm`` as true to TRL's code — raised only after TRL's generation
    step, so TRL never looks for a vLLM engine it did not build — and TRL's ratio, knobs, metrics and loss
    weighting apply unchanged. A batch sampled in-process from the live weights
    (`EpisodeRollout.samples_on_policy`) is left uncorrected: its ratio is 1. With ``use_vllm=True`` (TRL's
    own vLLM), TRL's behaviour is untouched except that, in server mode with several processes, every rank
    waits after TRL's weight push, so no rank samples from half-updated weights.
    """

    _use_vllm = False
    _correcting = False  # while TRL scores, or computes the loss of, a batch that needs the correction

    def __init__(self, *args: Any, capture: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if getattr(self.rollout_func, "overlap", False) and not self.vllm_importance_sampling_correction:
            raise ValueError("overlapped rollouts are one step off-policy: they need vllm_importance_sampling_"
                             "correction=True (the importance-sampling correction); refusing to train without it")
        self.capture = capture
        self.captured: list[dict[str, torch.Tensor]] = []

    @property
    def use_vllm(self) -> bool:
        """TRL's ``use_vllm``, also true while TRL's importance-sampling code handles an off-policy batch."""
        return self._use_vllm or self._correcting

    @use_vllm.setter
    def use_vllm(self, value: bool) -> None:
        self._use_vllm = value

    def _generate(self, prompts: list) -> tuple:
        if (self._use_vllm and self.vllm_mode == "server" and self.rollout_func is not None
                and self.accelerator.num_processes > 1 and self.state.global_step != self._last_loaded_step):
            self.vllm_generation.sync_weights()  # what TRL's _generate would do next, then a barrier
            self._last_loaded_step = self.state.global_step
            self.accelerator.wait_for_everyone()
        result = super()._generate(prompts)
        self._correcting = self._off_policy(result[4])
        return result

    def _off_policy(self, logprobs: list | None) -> bool:
        """Whether this batch gets TRL's importance-sampling correction through `use_vllm`."""
        if self._use_vllm or self.rollout_func is None or not self.vllm_importance_sampling_correction:
            return False  # TRL's own vLLM (TRL decides), TRL's own generation, or correction switched off
        on_policy = getattr(self.rollout_func, "samples_on_policy", None)
        if on_policy is not None and on_policy(self):
            return False
        if logprobs is None:
            raise ValueError("the rollout function returned no sampling logprobs; an off-policy batch needs them")
        return True

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            return super()._generate_and_score_completions(inputs)
        finally:
            self._correcting = False

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        if self.capture:
            keep = ("advantages", "completion_mask", "tool_mask", "completion_ids", "prompt_ids", "prompt_mask",
                    "old_per_token_logps", "sampling_per_token_logps", "importance_sampling_ratio")
            self.captured.append({k: inputs[k].detach().cpu().clone() for k in keep if inputs.get(k) is not None})
        self._correcting = "importance_sampling_ratio" in inputs
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._correcting = False
