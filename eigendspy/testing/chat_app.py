"""An OpenAI chat-completions double: scripted texts answered over real HTTP (with `AppServer`).

Why: the role LMs that reach a server (`eigendspy.lm.config.build_role_lms`, `vllm_lm`) go through DSPy's own
engine, cache and transport; a test that wants those exercised needs a server that speaks the wire format,
not a mock of the client. Start one with ``AppServer(ChatApp(...)).start() + "/v1"``.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["ChatApp"]


class ChatApp:
    """Answers every chat completion with the next scripted text (the last one repeats); keeps every request.

    Attributes:
        answers: The scripted texts.
        bodies: The JSON bodies of the chat completions answered so far, in order (what a server would receive).
        authorization: The ``Authorization`` header of the last request.
    """

    def __init__(self, *answers: str) -> None:
        if not answers:
            raise ValueError("ChatApp needs at least one answer")
        self.answers = list(answers)
        self.bodies: list[dict[str, Any]] = []
        self.authorization: str | None = None

    @property
    def calls(self) -> int:
        """Chat completions answered so far."""
        return len(self.bodies)

    def handle(self, method: str, path: str, authorization: str | None, raw: bytes) -> tuple[int, str, bytes]:
        if method != "POST" or not path.endswith("/chat/completions"):
            return 404, "text/plain", b"not found"
        request = json.loads(raw or b"{}")
        text = self.answers[min(self.calls, len(self.answers) - 1)]
        self.bodies.append(request)
        self.authorization = authorization
        body = {"id": f"c{self.calls}", "object": "chat.completion", "created": 0, "model": request.get("model", "m"),
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        return 200, "application/json", json.dumps(body).encode()
