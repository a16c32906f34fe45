"""A local test double of vLLM's OpenAI-compatible server protocol: this is *not* vLLM.

Why it exists: vLLM needs a GPU and cannot be installed here, yet `VLLMServerBackend` must be
tested end to end over real HTTP. This server implements exactly the endpoints and fields that
backend relies on, as vLLM documents them, and generates with `HFBackend` on CPU, so a test can
check that tokens and logprobs fetched over HTTP equal in-process generation and that LoRA
hot-swapping picks up freshly trained weights. It validates requests the way vLLM does (unknown
model or adapter: 404 with an OpenAI-style error body; loading an adapter name twice: 400) and
is deliberately *stricter* than vLLM in one way: a completion field it does not implement is
rejected with 400 instead of being ignored, so a client cannot silently depend on something the
double never checked.

Endpoints: ``GET /health``, ``GET /v1/models``, ``POST /v1/completions`` (token-id prompts only,
``n=1``, no streaming, ``logprobs`` at most 1), ``POST /v1/load_lora_adapter`` and
``POST /v1/unload_lora_adapter`` (present only with ``allow_runtime_lora_updating``, as vLLM
exposes them only under ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``). Requests are served one at a
time (no continuous batching), which keeps generation bit-identical to a batch of one in process.

Usage::

    with LocalServer(model_dir) as server:
        backend = VLLMServerBackend(server.base_url, server.model_name)

    # or from a shell:  python -m eigendspy.testing.vllm_server --model PATH --port 8000
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pydantic

from eigendspy.train.backends.base import Generation, SamplingParams
from eigendspy.train.backends.hf import HFBackend

logger = logging.getLogger(__name__)

#: Completion fields this double implements; vLLM accepts many more, which this double refuses (see above).
COMPLETION_FIELDS = frozenset({
    "model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
    "presence_penalty", "frequency_penalty", "n", "stream", "echo", "seed", "logprobs", "return_token_ids",
    "stop_token_ids", "skip_special_tokens", "include_stop_str_in_output",
})
#: Sampling knobs accepted only at their "off" value, because `HFBackend` does not implement them.
_NEUTRAL = {"top_k": (-1, 0), "min_p": (0,), "repetition_penalty": (1,), "presence_penalty": (0,),
            "frequency_penalty": (0,), "n": (1,), "stream": (False,), "echo": (False,)}
_ROUTES = {"/health": "GET", "/v1/models": "GET", "/v1/completions": "POST",
           "/v1/load_lora_adapter": "POST", "/v1/unload_lora_adapter": "POST"}


class _ApiError(Exception):
    def __init__(self, status: int, message: str, error_type: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.error_type, self.param = status, message, error_type, param


class LocalServer:
    """Serve a ``transformers`` model (plus runtime-loaded LoRA adapters) over vLLM's protocol on CPU.

    Args:
        model_path: A saved causal LM and tokenizer folder.
        served_model_name: The base model's name in ``model`` fields (vLLM's default: the model path).
        host: Interface to bind.
        port: Port to bind; 0 picks a free one.
        api_key: If set, ``/v1`` routes require ``Authorization: Bearer <api_key>``, as vLLM's ``--api-key``.
        allow_runtime_lora_updating: Expose the LoRA load/unload routes.
        max_model_len: Longest prompt plus completion accepted (default: the model's position limit).
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        served_model_name: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        allow_runtime_lora_updating: bool = True,
        max_model_len: int | None = None,
    ) -> None:
        from eigendspy.train.models import load_model

        self.model_path = str(model_path)
        self.model_name = served_model_name or self.model_path
        self.host, self.port = host, port
        self.api_key = api_key
        self.allow_runtime_lora_updating = allow_runtime_lora_updating
        model, self.tokenizer = load_model(self.model_path)
        model.eval()
        self.max_model_len = max_model_len or int(getattr(model.config, "max_position_embeddings", 2048))
        self.vocab_size = int(model.config.vocab_size)
        eos = getattr(model.generation_config, "eos_token_id", None)
        self._eos = {eos} if isinstance(eos, int) else set(eos or [])
        if self.tokenizer.eos_token_id is not None:
            self._eos.add(self.tokenizer.eos_token_id)
        self.backend = HFBackend(model, self.tokenizer)
        self.adapters: dict[str, str] = {}  # served LoRA name -> path
        self._lock = threading.Lock()  # one model use at a time: select adapter + generate is atomic
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        return f"http://{self.host}:{self._httpd.server_address[1]}"

    def start(self) -> str:
        """Bind and serve in a daemon thread; returns the base URL (``http://host:port``)."""
        if self._httpd is None:
            self._httpd = ThreadingHTTPServer((self.host, self.port), _Handler)
            self._httpd.daemon_threads = True
            self._httpd.app = self  # type: ignore[attr-defined]
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="local-vllm-double", daemon=True)
            self._thread.start()
            logger.info("local vLLM test double serving %r at %s", self.model_name, self.base_url)
        return self.base_url

    def stop(self) -> None:
        """Stop serving and free the port (in-flight requests finish in their daemon threads)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- protocol ------------------------------------------------------------------------------
    def handle(self, method: str, path: str, authorization: str | None, raw: bytes) -> tuple[int, str, bytes]:
        """Answer one HTTP request: returns (status, content type, body). Independent of the HTTP layer."""
        path = path.split("?", 1)[0]
        lora_route = path in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter")
        if path not in _ROUTES or (lora_route and not self.allow_runtime_lora_updating):
            return _json(404, {"detail": "Not Found"})
        if _ROUTES[path] != method:
            return _json(405, {"detail": "Method Not Allowed"})
        if path.startswith("/v1/") and self.api_key and authorization != f"Bearer {self.api_key}":
            return _json(401, {"error": "Unauthorized"})
        try:
            if path == "/health":
                return 200, "text/plain", b""
            if path == "/v1/models":
                return _json(200, self._models())
            body = _parse_body(raw)
            if path == "/v1/completions":
                return _json(200, self._complete(body))
            if path == "/v1/load_lora_adapter":
                return _text(self._load_lora(body))
            return _text(self._unload_lora(body))
        except _ApiError as err:
            return _json(err.status, {"error": {"message": err.message, "type": err.error_type,
                                                "param": err.param, "code": err.status}})
        except Exception as exc:  # a server answers 500 rather than dropping the connection
            logger.exception("local vLLM test double failed on %s", path)
            return _json(500, {"error": {"message": repr(exc), "type": "InternalServerError", "param": None,
                                         "code": 500}})

    def _models(self) -> dict[str, Any]:
        created = int(time.time())
        cards = [{"id": self.model_name, "object": "model", "created": created, "owned_by": "vllm",
                  "root": self.model_path, "parent": None, "max_model_len": self.max_model_len, "permission": []}]
        cards += [{"id": name, "object": "model", "created": created, "owned_by": "vllm", "root": path,
                   "parent": self.model_name, "max_model_len": None, "permission": []}
                  for name, path in self.adapters.items()]
        return {"object": "list", "data": cards}

    def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(body) - COMPLETION_FIELDS)
        if unknown:
            raise _ApiError(400, f"field(s) {unknown} are not implemented by this test double of vLLM",
                            "BadRequestError", unknown[0])
        name = body.get("model") or self.model_name
        if name != self.model_name and name not in self.adapters:
            raise _ApiError(404, f"The model `{name}` does not exist.", "NotFoundError", "model")
        prompt = body.get("prompt")
        if not isinstance(prompt, list) or not prompt or not all(_is_int(t) and t >= 0 for t in prompt):
            raise _ApiError(400, "this test double accepts only a non-empty list of token ids as `prompt`",
                            "BadRequestError", "prompt")
        if (bad := next((t for t in prompt if t >= self.vocab_size), None)) is not None:
            raise _ApiError(400, f"Token id {bad} is out of vocabulary", "BadRequestError", "prompt")
        for field, allowed in _NEUTRAL.items():
            if body.get(field) is not None and body[field] not in allowed:
                raise _ApiError(400, f"{field}={body[field]!r} is not implemented by this test double of vLLM "
                                f"(accepted: {list(allowed)})", "BadRequestError", field)
        max_tokens = _field(body, "max_tokens", int, 16)
        if max_tokens < 1:
            raise _ApiError(400, f"max_tokens must be at least 1, got {max_tokens}.", "BadRequestError", "max_tokens")
        if len(prompt) + max_tokens > self.max_model_len:
            raise _ApiError(400, f"This model's maximum context length is {self.max_model_len} tokens. However, "
                            f"you requested {len(prompt) + max_tokens} tokens ({len(prompt)} in the messages, "
                            f"{max_tokens} in the completion).", "BadRequestError", "max_tokens")
        logprobs = _field(body, "logprobs", int, None)
        if logprobs is not None and not 0 <= logprobs <= 1:
            raise _ApiError(400, f"logprobs={logprobs}: this test double returns only the sampled token's logprob "
                            "(0 or 1)", "BadRequestError", "logprobs")
        stop_ids = body.get("stop_token_ids") or []
        if not isinstance(stop_ids, list) or not all(_is_int(t) for t in stop_ids):
            raise _ApiError(400, "stop_token_ids must be a list of integers", "BadRequestError", "stop_token_ids")
        temperature = _field(body, "temperature", float, 1.0)
        try:
            # vLLM samples greedily below a temperature of 1e-5; HFBackend only at exactly 0.
            params = SamplingParams(max_new_tokens=max_tokens, temperature=0.0 if temperature < 1e-5 else temperature,
                                    top_p=_field(body, "top_p", float, 1.0), seed=_field(body, "seed", int, None),
                                    stop_token_ids=tuple(stop_ids))
        except pydantic.ValidationError as exc:
            raise _ApiError(400, str(exc), "BadRequestError") from exc
        with self._lock:
            gen = self._generate(prompt, params, None if name == self.model_name else name)
        return self._completion_response(name, prompt, gen, body, logprobs, set(stop_ids))

    def _generate(self, prompt: list[int], params: SamplingParams, adapter: str | None) -> Generation:
        model = self.backend.model
        if hasattr(model, "disable_adapter"):  # a PeftModel: pick the adapter for this request
            if adapter is None:
                with model.disable_adapter():
                    return self.backend.generate_batch([prompt], params)[0]
            model.set_adapter(adapter)
        return self.backend.generate_batch([prompt], params)[0]

    def _completion_response(self, name: str, prompt: list[int], gen: Generation, body: dict[str, Any],
                             logprobs: int | None, stop_ids: set[int]) -> dict[str, Any]:
        ids, last = gen.token_ids, (gen.token_ids[-1] if gen.token_ids else None)
        stop_reason = last if gen.finish_reason == "stop" and last in stop_ids and last not in self._eos else None
        # vLLM leaves the stopping token's text out unless include_stop_str_in_output is set.
        drop_last = gen.finish_reason == "stop" and not body.get("include_stop_str_in_output", False)
        skip_special = body.get("skip_special_tokens", True)
        text = self.tokenizer.decode(ids[:-1] if drop_last else ids, skip_special_tokens=skip_special)
        choice: dict[str, Any] = {"index": 0, "text": text, "logprobs": None, "finish_reason": gen.finish_reason,
                                  "stop_reason": stop_reason, "prompt_logprobs": None,
                                  "token_ids": None, "prompt_token_ids": None}
        if logprobs is not None:
            tokens = [self.tokenizer.decode([t], skip_special_tokens=False) for t in ids]
            offsets = [sum(len(s) for s in tokens[:i]) for i in range(len(tokens))]
            choice["logprobs"] = {"text_offset": offsets, "token_logprobs": gen.logprobs, "tokens": tokens,
                                  "top_logprobs": [{tok: lp} for tok, lp in zip(tokens, gen.logprobs, strict=True)]}
        if body.get("return_token_ids"):
            choice["token_ids"], choice["prompt_token_ids"] = ids, prompt
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": name, "choices": [choice],
                "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(ids),
                          "total_tokens": len(prompt) + len(ids), "prompt_tokens_details": None}}

    def _load_lora(self, body: dict[str, Any]) -> str:
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            raise _ApiError(400, "Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput")
        if name in self.adapters and not body.get("load_inplace", False):
            raise _ApiError(400, f"The lora adapter '{name}' has already been loaded. If you want to load the "
                            "adapter in place, set 'load_inplace' to True.", "InvalidUserInput")
        if not (Path(path) / "adapter_config.json").is_file():
            raise _ApiError(404, f"Loading lora {name} failed: No adapter found for {path}", "NotFoundError")
        with self._lock:
            try:
                self.backend.load_adapter(str(path), name)
            except Exception as exc:  # an unloadable adapter is the caller's problem: 400
                raise _ApiError(400, f"Loading lora {name} failed: {exc!r}", "BadRequestError") from exc
            self.adapters[name] = str(path)
        logger.info("loaded LoRA adapter %r from %s", name, path)
        return f"Success: LoRA adapter '{name}' added successfully."

    def _unload_lora(self, body: dict[str, Any]) -> str:
        name = body.get("lora_name")
        if not name:
            raise _ApiError(400, "'lora_name' needs to be provided to unload a LoRA adapter.", "InvalidUserInput")
        if name not in self.adapters:
            raise _ApiError(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
        with self._lock:
            if len(self.adapters) == 1:  # peft cannot disable a model with no adapter left: unwrap it instead
                self.backend.model = self.backend.model.unload()
            else:
                self.backend.model.delete_adapter(name)
            del self.adapters[name]
        logger.info("unloaded LoRA adapter %r", name)
        return f"Success: LoRA adapter '{name}' removed successfully."


class _Handler(BaseHTTPRequestHandler):
    """Thin HTTP shell around `LocalServer.handle`."""

    def do_GET(self) -> None:  # the stdlib's naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # the stdlib's naming
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, content_type, payload = self.server.app.handle(  # type: ignore[attr-defined]
            method, self.path, self.headers.get("Authorization"), raw)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib's signature
        logger.debug("%s - %s", self.address_string(), format % args)


def _parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        raise _ApiError(400, f"request body is not valid JSON: {exc}", "BadRequestError") from exc
    if not isinstance(body, dict):
        raise _ApiError(400, "request body must be a JSON object", "BadRequestError")
    return body


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field(body: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if kind is float and _is_int(value):
        value = float(value)
    if not (_is_int(value) if kind is int else isinstance(value, kind)):
        raise _ApiError(400, f"{name} must be of type {kind.__name__}, got {value!r}", "BadRequestError", name)
    return value


def _json(status: int, payload: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(payload).encode()


def _text(message: str) -> tuple[int, str, bytes]:
    return 200, "text/plain; charset=utf-8", message.encode()


def main(argv: list[str] | None = None) -> None:
    """Command line: serve a local model over vLLM's protocol until interrupted."""
    parser = argparse.ArgumentParser(description="Local CPU test double of vLLM's OpenAI-compatible server.")
    parser.add_argument("--model", required=True, help="saved transformers model + tokenizer folder")
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    server = LocalServer(args.model, served_model_name=args.served_model_name, host=args.host, port=args.port,
                         api_key=args.api_key)
    print(f"serving {server.model_name!r} at {server.start()} (a test double of vLLM, not vLLM)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
