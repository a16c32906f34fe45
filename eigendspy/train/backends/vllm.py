"""A rollout backend that samples from a vLLM OpenAI-compatible server, token ids in and token ids out.

Why a server and not ``vllm.LLM`` in process: the trainer and the sampler then live in separate
processes (or machines) and only talk HTTP, so the CPU code paths never import vLLM and the GPU
can keep batching many episodes' requests continuously while the trainer works.

Only fields that vLLM documents are used (vLLM >= 0.10.2):

* ``POST /v1/completions`` with ``prompt`` as a list of token ids (no re-tokenisation, see
  `eigendspy.train.backends.base`), ``logprobs: 1`` (read ``choices[0].logprobs.token_logprobs``) and
  ``return_token_ids: true`` (read ``choices[0].token_ids`` and ``prompt_token_ids``). Every
  sampling knob that would otherwise fall back to the model's ``generation_config.json``
  (``top_k``, ``min_p``, penalties) is sent explicitly, because vLLM applies those defaults
  silently and they would make the sampled distribution differ from the policy being trained.
* ``POST /v1/load_lora_adapter`` / ``POST /v1/unload_lora_adapter`` to hot-swap a freshly trained
  LoRA adapter (the server needs ``--enable-lora``, ``--max-lora-rank`` at least the adapter's rank
  and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``); later requests name the adapter in ``model``.
  vLLM reads ``lora_path`` on *its own* filesystem, so the trainer must save adapters where the
  server sees them at the same path (one machine, or shared storage mounted alike on both).
* ``GET /health`` and ``GET /v1/models`` to wait for startup.

Failures are split by whose fault they are (`eigendspy.train.backends.vllm_errors`): connection
errors, timeouts, 5xx and 429 on generation raise `eigendspy.core.participants.InfrastructureError`
(the episode is retried or dropped, never trained on), whereas a request the server rejects raises
`VLLMRequestError` (`VLLMAdapterError` for an adapter load, with vLLM's status, message and the
configuration hint) and a 200 answer lacking a needed field raises `VLLMProtocolError`; those are
configuration bugs that retrying cannot fix.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx

from eigendspy.core.participants import InfrastructureError
from eigendspy.train.backends.base import Generation, SamplingParams
from eigendspy.train.backends.vllm_errors import (
    LORA_HINT,
    VLLMAdapterError,
    VLLMProtocolError,
    VLLMRequestError,
    adapter_error,
    check_response,
)

logger = logging.getLogger(__name__)

_VERSION_HINT = "this backend needs vLLM >= 0.10.2, which returns token ids when asked with return_token_ids=true"


class VLLMServerBackend:
    """Sample completions from a running vLLM OpenAI-compatible server.

    Args:
        base_url: The server's root, e.g. ``http://gpu-host:8000`` (a trailing ``/v1`` is accepted).
        model: The served base-model name (vLLM's ``--served-model-name``, else its ``--model``).
        api_key: Sent as a bearer token, matching vLLM's ``--api-key``.
        timeout_s: Per-request read timeout; long generations under load need a generous one.
        max_concurrency: Most completion requests in flight from this backend at once (also the
            HTTP connection-pool size); vLLM batches whatever is in flight continuously.

    Example::

        backend = VLLMServerBackend("http://localhost:8000", "Qwen/Qwen2.5-7B-Instruct")
        backend.wait_ready(timeout_s=600)
        gen = await backend.generate(prompt_ids, SamplingParams(temperature=1.0, max_new_tokens=512))
        backend.load_adapter("/ckpt/step-10/adapter", "step-10")  # later requests sample from it
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        max_concurrency: int = 256,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        url = base_url.rstrip("/")
        self.base_url = url[: -len("/v1")] if url.endswith("/v1") else url
        self.model = model
        self.timeout_s = timeout_s
        self.max_concurrency = max_concurrency
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._adapter: str | None = None
        # One async client and semaphore per event loop: both are bound to the loop that created them,
        # and callers (tests, notebooks) may run several `asyncio.run`s against one backend.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._aclient: httpx.AsyncClient | None = None
        self._semaphore: asyncio.Semaphore | None = None

    @property
    def served_model(self) -> str:
        """The ``model`` field completions use now: the last loaded adapter's name, else the base model."""
        return self._adapter or self.model

    # --- generation --------------------------------------------------------------------------
    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> Generation:
        """Sample one completion of ``prompt_ids`` from the currently served weights."""
        body = self._completion_body(prompt_ids, params)
        client, semaphore = self._async_parts()
        async with semaphore:
            try:
                response = await client.post("/v1/completions", json=body)
            except httpx.HTTPError as exc:
                raise InfrastructureError(f"vLLM completion request to {self.base_url} failed: {exc!r}") from exc
        data = check_response(response, "completion")
        return _parse_completion(data, prompt_ids)

    def _completion_body(self, prompt_ids: list[int], params: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.served_model,
            "prompt": [int(t) for t in prompt_ids],
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            # Pin what vLLM would otherwise take from generation_config.json; -1 means "off" in every
            # vLLM from 0.10.2 (newer ones also accept 0, older ones reject it).
            "top_k": -1,
            "min_p": 0.0,
            "repetition_penalty": 1.0,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
            "n": 1,
            "logprobs": 1,
            "return_token_ids": True,
            "skip_special_tokens": False,
            "stop_token_ids": list(params.stop_token_ids),
        }
        if params.seed is not None:
            body["seed"] = params.seed
        return body

    def _async_parts(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._semaphore is None or self._loop is not loop:
            self._loop = loop
            self._aclient = httpx.AsyncClient(
                base_url=self.base_url,
                headers=self._headers,
                timeout=self._timeout(),
                limits=httpx.Limits(max_connections=self.max_concurrency,
                                    max_keepalive_connections=self.max_concurrency),
            )
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
        return self._aclient, self._semaphore

    async def aclose(self) -> None:
        """Close the async HTTP client of the current event loop (a new one is made on the next call)."""
        if self._aclient is not None:
            await self._aclient.aclose()
        self._aclient, self._semaphore, self._loop = None, None, None

    # --- adapters ----------------------------------------------------------------------------
    def load_adapter(self, path: str, name: str) -> None:
        """Serve the PEFT adapter saved at ``path`` under ``name`` and unload the one served before.

        ``path`` is opened by the vLLM server process, not by this one: save adapters where the server
        sees them at the same path. Under DDP exactly one process loads each step's adapter and the
        others `use_adapter` it after a barrier (`eigendspy.train.grpo.adapters.publish_adapter`):
        loads from every rank would unload adapters other ranks still sample from.

        Load-then-unload keeps a served adapter available at every moment. Give each step a fresh name
        and path (vLLM keeps prefix-cache blocks computed with an adapter's old weights when it is
        reloaded from the same path). Reloading the served name, or one an earlier run left loaded
        (vLLM's 400 "already been loaded"), replaces its weights in place (``load_inplace``).

        Raises:
            VLLMAdapterError: vLLM refused the adapter (its status, type and message, and what to change).
            InfrastructureError: The server could not be reached.
        """
        previous = self._adapter
        with self._client() as client:
            try:
                self._load(client, path, name, inplace=previous == name)
            except VLLMAdapterError as exc:
                if not exc.already_loaded:
                    raise
                logger.info("LoRA adapter %r was already loaded at %s: reloading it in place from %s",
                            name, self.base_url, path)
                self._load(client, path, name, inplace=True)
            self._adapter = name
            if previous not in (None, name):
                try:
                    self._unload(client, previous)
                except (VLLMRequestError, InfrastructureError) as exc:
                    # The new adapter already serves; a leftover old one only costs a LoRA slot.
                    logger.warning("could not unload previous LoRA adapter %r: %s", previous, exc)
        logger.info("vLLM at %s now serves LoRA adapter %r from %s", self.base_url, name, path)

    def use_adapter(self, name: str) -> None:
        """Sample from ``name`` from now on: an adapter another process has already loaded on this server."""
        self._adapter = name

    def _load(self, client: httpx.Client, path: str, name: str, *, inplace: bool) -> None:
        body: dict[str, Any] = {"lora_name": name, "lora_path": str(path)}
        if inplace:
            body["load_inplace"] = True
        try:
            response = client.post("/v1/load_lora_adapter", json=body)
        except httpx.HTTPError as exc:
            raise InfrastructureError(f"could not load LoRA adapter at {self.base_url}: {exc!r}") from exc
        if response.status_code != 200:
            raise adapter_error(response, name, str(path))

    def _unload(self, client: httpx.Client, name: str) -> None:
        self._post(client, "/v1/unload_lora_adapter", {"lora_name": name}, "unload LoRA adapter")

    def _post(self, client: httpx.Client, route: str, body: dict[str, Any], what: str) -> None:
        try:
            response = client.post(route, json=body)
        except httpx.HTTPError as exc:
            raise InfrastructureError(f"could not {what} at {self.base_url}: {exc!r}") from exc
        check_response(response, what, hint=LORA_HINT)

    # --- readiness ---------------------------------------------------------------------------
    def health(self) -> bool:
        """Whether ``GET /health`` answers 200 now (False on any connection failure)."""
        try:
            with self._client(timeout_s=min(self.timeout_s, 5.0)) as client:
                return client.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def models(self) -> list[str]:
        """The model names the server serves now (base model and loaded adapters), from ``GET /v1/models``."""
        with self._client() as client:
            return self._models(client)

    def wait_ready(self, timeout_s: float = 600.0, poll_s: float = 1.0) -> None:
        """Block until the server is healthy and serves ``model``; a cold vLLM start takes minutes.

        Raises:
            InfrastructureError: The server did not become healthy within ``timeout_s``.
            VLLMRequestError: It is up but serves other model names (a misconfigured ``model``).
        """
        started = time.monotonic()
        next_log = started + 30.0
        while not self.health():
            now = time.monotonic()
            if now - started >= timeout_s:
                raise InfrastructureError(
                    f"the vLLM server at {self.base_url} did not answer GET /health with 200 within {timeout_s:g} s: "
                    "is it started (and listening on that host and port)? A cold start loads and compiles the model "
                    "for minutes; give it longer (GRPORunConfig.vllm_server_timeout)")
            if now >= next_log:
                logger.info("waiting for the vLLM server at %s (%.0f s so far)", self.base_url, now - started)
                next_log = now + 30.0
            time.sleep(poll_s)
        served = self.models()
        if self.model not in served:
            raise VLLMRequestError(f"vLLM at {self.base_url} serves {served}, not {self.model!r}; pass the "
                                   "server's --served-model-name (or its --model) as `model`", status_code=404)

    def _models(self, client: httpx.Client) -> list[str]:
        try:
            response = client.get("/v1/models")
        except httpx.HTTPError as exc:
            raise InfrastructureError(f"could not list models at {self.base_url}: {exc!r}") from exc
        data = check_response(response, "list models")
        try:
            return [card["id"] for card in data["data"]]
        except (KeyError, TypeError) as exc:
            raise VLLMProtocolError(f"/v1/models answer has no data[].id list: {data!r}") from exc

    def _client(self, timeout_s: float | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=self._headers, timeout=self._timeout(timeout_s))

    def _timeout(self, timeout_s: float | None = None) -> httpx.Timeout:
        read = self.timeout_s if timeout_s is None else timeout_s
        return httpx.Timeout(read, connect=min(read, 10.0))


def _parse_completion(data: Any, prompt_ids: list[int]) -> Generation:
    """Turn a ``/v1/completions`` answer into a `Generation`, naming any missing field."""
    try:
        choice = data["choices"][0]
    except (KeyError, IndexError, TypeError) as exc:
        raise VLLMProtocolError(f"completion answer has no choices[0]: {str(data)[:300]}") from exc
    token_ids = choice.get("token_ids")
    if token_ids is None:
        raise VLLMProtocolError(f"completion answer has no choices[0].token_ids; {_VERSION_HINT}")
    logprobs = (choice.get("logprobs") or {}).get("token_logprobs")
    if logprobs is None:
        raise VLLMProtocolError("completion answer has no choices[0].logprobs.token_logprobs although logprobs=1 "
                                f"was requested; {_VERSION_HINT}")
    if len(logprobs) != len(token_ids) or any(lp is None for lp in logprobs):
        raise VLLMProtocolError(f"choices[0] has {len(token_ids)} token_ids but token_logprobs {logprobs!r}")
    echoed = choice.get("prompt_token_ids")
    if echoed is not None and list(echoed) != list(prompt_ids):
        raise VLLMProtocolError("the server changed the prompt (choices[0].prompt_token_ids differs from the ids sent: "
                                "truncation or added special tokens); GRPO must score the exact prompt")
    reason = choice.get("finish_reason")
    if reason == "abort":
        raise InfrastructureError("vLLM aborted the request (server shutting down or request cancelled)")
    if reason not in ("stop", "length"):
        raise VLLMProtocolError(f"choices[0].finish_reason is {reason!r}, expected 'stop' or 'length'")
    return Generation(token_ids=[int(t) for t in token_ids], logprobs=[float(lp) for lp in logprobs],
                      finish_reason=reason)
