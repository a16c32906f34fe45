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
  LoRA adapter (the server needs ``--enable-lora`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``);
  later requests name the adapter in ``model``.
* ``GET /health`` and ``GET /v1/models`` to wait for startup.

Failures are split by whose fault they are: connection errors, timeouts, 5xx and 429 raise
`eigendspy.core.participants.InfrastructureError` (the orchestrator records the episode as an
infrastructure error and carries on), whereas a request the server rejects (other 4xx:
unknown model, bad parameter) raises `VLLMRequestError` and a 200 answer lacking a needed field
raises `VLLMProtocolError`; both are configuration bugs that retrying cannot fix.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx

from eigendspy.core.participants import InfrastructureError
from eigendspy.train.backends.base import Generation, SamplingParams

logger = logging.getLogger(__name__)

_LORA_HINT = (
    "vLLM serves runtime LoRA updates only when started with --enable-lora (and --max-lora-rank at least the "
    "adapter's rank) and the environment variable VLLM_ALLOW_RUNTIME_LORA_UPDATING=True; the adapter path must "
    "be readable by the server process"
)
_VERSION_HINT = "this backend needs vLLM >= 0.10.2, which returns token ids when asked with return_token_ids=true"


class VLLMRequestError(RuntimeError):
    """The server refused a request (HTTP 4xx other than 429): wrong model name, bad parameter, bad adapter.

    Not an `InfrastructureError` on purpose: these are configuration bugs, and marking every episode as
    an outage would let a misconfigured run train on nothing without anyone noticing.
    """

    def __init__(self, message: str, *, status_code: int, error_type: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_type = error_type


class VLLMProtocolError(RuntimeError):
    """The server answered 200 but without a field this backend needs (an older vLLM, or not vLLM)."""


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
        data = _check(response, "completion")
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

        Load-then-unload keeps a served adapter available at every moment. Use a fresh ``name`` per
        training step (e.g. ``step-12``); reusing the current name is supported but briefly leaves the
        name unserved, since vLLM refuses to load a name twice.
        """
        previous = self._adapter
        load = {"lora_name": name, "lora_path": str(path)}
        with self._client() as client:
            if previous == name:
                self._unload(client, name, missing_ok=True)
                previous = None
            try:
                self._post(client, "/v1/load_lora_adapter", load, "load LoRA adapter")
            except VLLMRequestError as exc:
                # A name left loaded by an earlier run of this trainer: replace it rather than fail.
                if exc.status_code != 400 or name not in self._models(client):
                    raise
                self._unload(client, name)
                self._post(client, "/v1/load_lora_adapter", load, "load LoRA adapter")
            self._adapter = name
            if previous is not None:
                try:
                    self._unload(client, previous)
                except (VLLMRequestError, InfrastructureError) as exc:
                    # The new adapter already serves; a leftover old one only costs a LoRA slot.
                    logger.warning("could not unload previous LoRA adapter %r: %s", previous, exc)
        logger.info("vLLM at %s now serves LoRA adapter %r from %s", self.base_url, name, path)

    def _unload(self, client: httpx.Client, name: str, *, missing_ok: bool = False) -> None:
        try:
            self._post(client, "/v1/unload_lora_adapter", {"lora_name": name}, "unload LoRA adapter")
        except VLLMRequestError as exc:
            if not (missing_ok and exc.status_code == 404):
                raise

    def _post(self, client: httpx.Client, route: str, body: dict[str, Any], what: str) -> None:
        try:
            response = client.post(route, json=body)
        except httpx.HTTPError as exc:
            raise InfrastructureError(f"could not {what} at {self.base_url}: {exc!r}") from exc
        _check(response, what, hint=_LORA_HINT)

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
        deadline = time.monotonic() + timeout_s
        while not self.health():
            if time.monotonic() >= deadline:
                raise InfrastructureError(f"vLLM server at {self.base_url} not healthy after {timeout_s:.0f} s")
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
        data = _check(response, "list models")
        try:
            return [card["id"] for card in data["data"]]
        except (KeyError, TypeError) as exc:
            raise VLLMProtocolError(f"/v1/models answer has no data[].id list: {data!r}") from exc

    def _client(self, timeout_s: float | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=self._headers, timeout=self._timeout(timeout_s))

    def _timeout(self, timeout_s: float | None = None) -> httpx.Timeout:
        read = self.timeout_s if timeout_s is None else timeout_s
        return httpx.Timeout(read, connect=min(read, 10.0))


def _check(response: httpx.Response, what: str, hint: str | None = None) -> Any:
    """Map an HTTP answer to its JSON body (or text) or to the right error class."""
    if response.status_code == 200:
        if "json" not in response.headers.get("content-type", ""):
            return response.text  # the LoRA routes answer plain text
        try:
            return response.json()
        except ValueError as exc:
            raise VLLMProtocolError(f"{what}: the server answered 200 with invalid JSON: {response.text[:200]!r}"
                                    ) from exc
    message, error_type = _error_detail(response)
    text = f"{what} failed with HTTP {response.status_code}" + (f" {error_type}" if error_type else "") + f": {message}"
    if response.status_code >= 500 or response.status_code == 429:
        raise InfrastructureError(text)
    if hint and response.status_code in (400, 404, 405):
        text += f" ({hint})"
    raise VLLMRequestError(text, status_code=response.status_code, error_type=error_type)


def _error_detail(response: httpx.Response) -> tuple[str, str | None]:
    """Read an error body in either of vLLM's shapes: ``{"error": {...}}`` (newer) or flat (0.10.x)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase, None
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        if "message" in inner:
            return str(inner["message"]), inner.get("type")
        if "detail" in body:  # the web framework's own 404/405 for a route the server does not expose
            return str(body["detail"]), None
    return str(body)[:500], None


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
