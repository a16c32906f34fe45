"""Shared fixtures: DSPy isolation (as DSPy's own tests do) and the tau2 reference data."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# Every test environment runs read-only tools on private copies and fails loudly if one writes.
os.environ.setdefault("EIGENDSPY_GUARD_READS", "1")

import copy  # noqa: E402

import dspy  # noqa: E402
import pytest  # noqa: E402
from dspy.dsp.utils.settings import DEFAULT_CONFIG  # noqa: E402


def _find_tau2() -> Path:
    """tau2 reference data: $EIGENDSPY_TAU2_SHARED, else ../shared/tau2 next to the checkout."""
    if os.environ.get("EIGENDSPY_TAU2_SHARED"):
        return Path(os.environ["EIGENDSPY_TAU2_SHARED"])
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "tau2"
        if (candidate / "README.md").exists():
            return candidate
    return Path(__file__).resolve().parents[2] / "shared" / "tau2"


TAU2_DIR = _find_tau2()


@pytest.fixture(autouse=True)
def reset_dspy():
    """Fresh DSPy settings and a memory-only cache for every test."""
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    dspy.configure(**copy.deepcopy(DEFAULT_CONFIG))
    yield
    dspy.configure(**copy.deepcopy(DEFAULT_CONFIG))


@pytest.fixture(scope="session")
def tau2_dir() -> Path:
    if not (TAU2_DIR / "README.md").exists():
        pytest.skip(f"tau2 reference data not found at {TAU2_DIR}")
    return TAU2_DIR


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Qwen2 chat model + local BPE tokenizer with TRL's qwen2_5 template, built once (~4 s)."""
    from eigendspy.testing.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


def _die_with_parent() -> None:
    """In the server's process: SIGTERM when pytest dies, so no vLLM server outlives an interrupted run."""
    import ctypes
    import signal

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@pytest.fixture(scope="session")
def real_vllm_base(request, tmp_path_factory):
    """A real vLLM server's base URL (no ``/v1``) serving the embedded SmolLM2 as ``$EIGENDSPY_VLLM_MODEL_NAME``
    (``smol``): ``EIGENDSPY_VLLM_URL``, else one started (and stopped) here with ``scripts/vllm_cpu.sh run``.

    Starting one costs minutes of CPU, so it happens only when asked for (``-m vllm`` or ``EIGENDSPY_VLLM=1``);
    skipped without ``.vllm-venv`` (``scripts/vllm_cpu.sh install``) or the fetched embedded model.
    """
    import socket
    import subprocess
    import time

    if os.environ.get("EIGENDSPY_VLLM_URL"):
        yield os.environ["EIGENDSPY_VLLM_URL"].rstrip("/").removesuffix("/v1")
        return
    if "vllm" not in (request.config.getoption("markexpr") or "") and os.environ.get("EIGENDSPY_VLLM") != "1":
        pytest.skip("real vLLM: run with -m vllm or EIGENDSPY_VLLM=1 (starts a vllm-cpu server, ~2 min), or point "
                    "EIGENDSPY_VLLM_URL at a running one; see scripts/vllm_cpu.sh")
    root = Path(__file__).resolve().parents[1]
    if not (root / ".vllm-venv" / "bin" / "python").exists():
        pytest.skip("no .vllm-venv: run scripts/vllm_cpu.sh install (vllm-cpu 0.32.0, ~3 minutes)")
    from eigendspy.lm.local.fetch import ModelNotFetchedError, dequantized_dir

    try:
        dequantized_dir()
    except ModelNotFetchedError:
        pytest.skip("the embedded model is not fetched: run `.venv/bin/eigendspy model fetch`")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    name = os.environ.get("EIGENDSPY_VLLM_MODEL_NAME", "smol")
    with open(log, "wb") as out:  # `run` execs the server: this child is vLLM, and it dies with pytest
        server = subprocess.Popen([str(root / "scripts" / "vllm_cpu.sh"), "run", port], stdout=out,
                                  stderr=subprocess.STDOUT, cwd=root, preexec_fn=_die_with_parent,
                                  env={**os.environ, "EIGENDSPY_VLLM_MODEL_NAME": name})
    base = f"http://127.0.0.1:{port}"
    from eigendspy.train.backends.vllm import VLLMServerBackend

    server_health = VLLMServerBackend(base, name).health  # GET /health answers 200
    try:
        deadline = time.monotonic() + 420
        while not server_health():
            assert server.poll() is None, f"the vLLM server exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"the vLLM server is not healthy after 420 s: {log.read_text()[-3000:]}"
            time.sleep(2)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def serve_app():
    """``serve_app(app) -> base URL + "/v1"``: each app (e.g. `eigendspy.testing.chat_app.ChatApp`) on its own
    local HTTP server for this test; all stopped after it."""
    from eigendspy.testing.http_app import AppServer

    servers = []

    def start(app) -> str:
        server = AppServer(app)
        servers.append(server)
        return server.start() + "/v1"

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def fresh_cache(monkeypatch):
    """An in-memory DSPy cache for this test only (restored after; nothing written to disk)."""
    from dspy.clients.cache import Cache

    monkeypatch.setattr(dspy, "cache", Cache(enable_disk_cache=False, enable_memory_cache=True, disk_cache_dir=None))
