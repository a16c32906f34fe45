"""The worker-process side of `eigendspy.engine.processes.ProcessWorkerPool`: build the items once, serve requests.

A module of its own because it is what runs in the child: one event loop with many items in flight, a thread
reading the pipe, JSON answers (or the error with its traceback) written back per item.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import traceback
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from eigendspy.engine.remote_items import RemoteItems

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from eigendspy.engine.processes import WorkerSpec

OPS = frozenset({"make_task", "episode"})


def call_soon(loop: asyncio.AbstractEventLoop, fn: Any, *args: Any) -> None:
    """``loop.call_soon_threadsafe`` that does nothing once the loop has closed (nobody awaits the answer)."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass


def error_reply(rid: int, exc: BaseException) -> dict[str, Any]:
    return {"id": rid, "error": True, "type": type(exc).__name__, "message": str(exc),
            "role": getattr(exc, "role", None), "traceback": "".join(traceback.format_exception(exc))}


def child_main(conn: Connection, index: int, spec: WorkerSpec) -> None:
    """Entry point of a worker process: build the items once, then serve requests until closed or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the driver decides
    try:
        items = RemoteItems(spec.domain_spec, spec.roles_factory, spec.config, spec.compiled)
    except BaseException as exc:  # report it to the driver instead of dying silently
        conn.send_bytes(json.dumps(error_reply(0, exc)).encode())
        conn.close()
        return
    with spec.hook(index) if spec.hook is not None else nullcontext():
        conn.send_bytes(json.dumps({"id": 0, "ok": "ready"}).encode())
        asyncio.run(_serve(conn, items))
    conn.close()


async def _serve(conn: Connection, items: RemoteItems) -> None:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[bytes | None] = asyncio.Queue()

    def read() -> None:  # blocking pipe reads off the loop; EOF (the driver is gone) stops the worker
        while True:
            try:
                data: bytes | None = conn.recv_bytes()
            except (EOFError, OSError):
                data = None
            call_soon(loop, inbox.put_nowait, data)
            if data is None:
                return

    threading.Thread(target=read, daemon=True, name="eigendspy-worker-inbox").start()
    running: dict[int, asyncio.Task[None]] = {}
    while (data := await inbox.get()) is not None:
        msg = json.loads(data)
        if msg["op"] == "close":
            break
        if msg["op"] == "cancel":
            if (task := running.get(msg["id"])) is not None:
                task.cancel()
            continue
        running[msg["id"]] = loop.create_task(_answer(conn, items, msg, running))
    for task in running.values():
        task.cancel()
    await asyncio.gather(*running.values(), return_exceptions=True)


async def _answer(conn: Connection, items: RemoteItems, msg: dict[str, Any],
                  running: dict[int, asyncio.Task[None]]) -> None:
    rid = msg["id"]
    try:
        if msg["op"] not in OPS:
            raise ValueError(f"unknown item operation {msg['op']!r}")
        reply: dict[str, Any] = {"id": rid, "ok": await getattr(items, msg["op"])(**msg["args"])}
    except asyncio.CancelledError:
        return
    except Exception as exc:
        reply = error_reply(rid, exc)
    finally:
        running.pop(rid, None)
    try:
        conn.send_bytes(json.dumps(reply).encode())
    except OSError:  # the driver is gone
        pass
