"""An LM endpoint that accepts connections and never answers: the double of a hung server.

Why a double: a timeout is only proven by a server that really holds the socket open; tests of the
LM timeouts (per call, per participant, and a whole ``eigendspy synth`` run) all need the same one.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def hung_server(backlog: int = 16) -> Iterator[str]:
    """Yield an OpenAI-style base URL on 127.0.0.1 whose connections are accepted and never answered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(backlog)
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()
