"""DataEngine end to end on scripted roles: mock and retail, faults, resume, export."""

from __future__ import annotations

import asyncio
import math

import pytest

from eigendspy.domains import get_domain
from eigendspy.engine.config import EngineConfig
from eigendspy.engine.engine import DataEngine
from eigendspy.engine.store.store import RunManifest, RunStore
from eigendspy.testing.roles import scripted_roles


def big_mock():
    return get_domain("mock", num_users=8, tasks_per_user=5)


def run_engine(tmp_path, domain, config: EngineConfig, roles=None, name="run"):
    store = RunStore.create(tmp_path / name, RunManifest(config=config, seed=config.seed, domain=domain.name))
    try:
        engine = DataEngine(domain, roles or scripted_roles(), store, config)
        return asyncio.run(engine.run()), store
    finally:
        store.close()


def accepted_set(run_dir):
    store = RunStore.open(run_dir, read_only=True)
    return sorted((d.work_key, d.task_id, tuple(m.content or "" for m in d.messages))
                  for d in store.accepted_dialogues())


@pytest.mark.parametrize("name", ["mock", "retail"])
def test_end_to_end(tmp_path, tau2_dir, name):
    domain = get_domain(name, data_dir=tau2_dir / name) if name == "retail" else big_mock()
    cfg = EngineConfig(domain=name, streams=2, rounds=2, tasks_per_round=2, episodes_per_task=1,
                       held_out_split="test")
    result, store = run_engine(tmp_path, domain, cfg)
    assert result.accepted_dialogues >= 2, store.summary().model_dump()
    reopened = RunStore.open(result.run_dir, read_only=True)
    for d in reopened.accepted_dialogues():
        assert d.checker_passed and d.validator.passed and d.reward == 1.0
        assert d.termination_reason == "user_stop"
    assert result.diversity.plans >= 2 and result.diversity.plan_cells_covered >= 2
    assert (result.run_dir / "summary.json").exists() and (result.run_dir / "diversity.json").exists()


CONFIG = EngineConfig(domain="mock", streams=2, rounds=2, tasks_per_round=3, episodes_per_task=2, seed=7)


def test_injected_lm_faults_give_the_same_accepted_set(tmp_path):
    clean, _ = run_engine(tmp_path, big_mock(), CONFIG, name="clean")
    faulty, store = run_engine(tmp_path, big_mock(), CONFIG, roles=scripted_roles(fault_every=5), name="faulty")
    assert clean.accepted_dialogues >= 4
    assert accepted_set(clean.run_dir) == accepted_set(faulty.run_dir)
    usage = RunStore.open(faulty.run_dir, read_only=True).summary().usage
    clean_usage = RunStore.open(clean.run_dir, read_only=True).summary().usage
    assert sum(usage.calls.values()) > sum(clean_usage.calls.values())  # retries cost calls, not items


def test_kill_9_then_resume_gives_the_same_accepted_set(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = Path(__file__).with_name("engine_script.py")
    reference, _ = run_engine(tmp_path, big_mock(), CONFIG, name="reference")
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(run_dir), "new", "0.02"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until some dialogues are stored, then kill mid-run
        shard = run_dir / "dialogues.jsonl"
        if shard.exists() and shard.read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(accepted_set(run_dir))
    assert 0 < partial < len(accepted_set(reference.run_dir)), "the kill must land mid-run"
    done = subprocess.run([sys.executable, str(script), str(run_dir), "resume", "0"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert accepted_set(run_dir) == accepted_set(reference.run_dir)
    keys = [d.work_key for d in RunStore.open(run_dir, read_only=True).iter_records("dialogue")]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("name", ["mock", "retail"])
def test_synthesized_data_exports_and_trains_two_sft_steps(tmp_path, tau2_dir, tiny_model_dir, name):
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from eigendspy.engine.export import export_run

    domain = get_domain(name, data_dir=tau2_dir / name) if name == "retail" else big_mock()
    cfg = EngineConfig(domain=name, streams=2, rounds=1, tasks_per_round=1, episodes_per_task=1)
    result, _ = run_engine(tmp_path, domain, cfg)
    exported = export_run(result.run_dir, {name: domain}, tmp_path / "export")
    assert exported.counts["sft_agent"] == result.accepted_dialogues >= 1
    assert exported.counts["rl_tasks"] == result.accepted_tasks
    agent = load_from_disk(str(exported.paths["sft_agent"]))
    assert agent[0]["messages"][0]["content"].startswith("<instructions>")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    args = SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=2, per_device_train_batch_size=1, report_to=[],
                     assistant_only_loss=True, max_length=None, save_strategy="no", eval_strategy="no",
                     logging_steps=1, use_cpu=True, disable_tqdm=True)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), args=args,
                         train_dataset=agent, processing_class=tokenizer)
    out = trainer.train()
    assert out.global_step == 2 and math.isfinite(out.training_loss) and out.training_loss > 0


def test_pipelined_and_wave_schedules_accept_the_same_set(tmp_path):
    pipelined, _ = run_engine(tmp_path, big_mock(), CONFIG, name="pipelined")
    waves, _ = run_engine(tmp_path, big_mock(), CONFIG.model_copy(update={"schedule": "waves"}), name="waves")
    assert pipelined.accepted_dialogues >= 4
    assert accepted_set(pipelined.run_dir) == accepted_set(waves.run_dir)
