"""Environment: executes tool calls against a copy-on-write view of a domain's shared DB.

The environment is the one place where a model's output touches state, so it is built to
never fail: an unknown tool, unparsable argument JSON, missing/unexpected/wrong-typed
arguments, a domain `ToolError` or any exception inside a tool all become an ``Error: ...``
tool message, and the call's writes are discarded (each call runs in its own transaction).
Creating an environment costs a few dict copies, so thousands can run side by side.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from eigendspy.core.ids import IdSource
from eigendspy.core.messages import Message, ToolCall
from eigendspy.core.state import DBState, DBView, Transaction
from eigendspy.core.tool import EnvFunction, ToolSpec

if TYPE_CHECKING:
    from eigendspy.core.domain import Domain, Toolkit
    from eigendspy.core.task import EnvFunctionCall, Task

logger = logging.getLogger(__name__)


def to_tool_content(result: Any) -> str:
    """Serialize a tool's return value the way tau2-bench shows it to the model.

    Strings pass through unquoted; pydantic models are dumped to JSON; plain dicts/lists are
    processed element-wise and their int/float/bool leaves become strings (a tau2 quirk that
    models have been trained on, so we keep it).
    """
    if isinstance(result, str):
        return result
    if isinstance(result, BaseModel):
        return json.dumps(result.model_dump(), default=str)
    if isinstance(result, (dict, list, tuple)):
        return json.dumps(_plain(result), default=str)
    return str(result)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, int, float)):
        return str(value)
    return value


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def deep_merge(base: Any, patch: Any) -> Any:
    """Recursively merge ``patch`` into ``base``: dicts merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = deep_merge(base[key], value) if key in base else value
        return out
    return patch


class Environment:
    """One episode's world: the agent DB, the optional user DB, and the tools over them.

    Args:
        domain: The domain whose tools and shared DBs this environment uses.
        agent_state: Agent-side state (defaults to the pristine shared DB).
        user_state: User-side state (dual-control domains only).
        ids: The seeded id source handed to tools that mint ids.
        tau2_compat: Reproduce tau2 where eigendspy deliberately differs (see `checkers`).
        guard_reads: Run non-write tools on private copies and refuse any change they make
            (default: ``$EIGENDSPY_GUARD_READS``). Read tools normally see the shared rows
            themselves — that is what makes them free — so a mislabelled tool could corrupt
            every environment; the test suite runs with this guard on.
    """

    def __init__(
        self,
        domain: Domain,
        agent_state: DBState | None = None,
        user_state: DBState | None = None,
        *,
        ids: IdSource | None = None,
        tau2_compat: bool = False,
        guard_reads: bool | None = None,
    ) -> None:
        self.domain = domain
        self.guard_reads = _env_flag("EIGENDSPY_GUARD_READS") if guard_reads is None else guard_reads
        self.agent_state = agent_state if agent_state is not None else DBState(domain.base_db())
        user_base = domain.base_user_db()
        if user_state is None and user_base is not None:
            user_state = DBState(user_base)
        self.user_state = user_state
        self.ids = ids if ids is not None else IdSource()
        self.tau2_compat = tau2_compat
        self.log: list[tuple[ToolCall, Message]] = []

    # -- construction ------------------------------------------------------------------
    @classmethod
    def for_task(
        cls, domain: Domain, task: Task | None = None, *, include_history: bool = True, **kwargs: Any
    ) -> Environment:
        """A fresh environment in the task's initial state.

        Order (tau2's): initialization data deep-merged into the DBs, then initialization
        actions, then the state-changing tool calls of the task's message history replayed.
        Raises if the task's initial state cannot be built: that is a broken task, not a
        model error, and must not be silently scored.
        """
        env = cls(domain, **kwargs)
        env.sync()
        if task is None or task.initial_state is None:
            return env
        init = task.initial_state
        if init.initialization_data is not None:
            if init.initialization_data.agent_data:
                env._merge(env.agent_state, init.initialization_data.agent_data)
            if init.initialization_data.user_data:
                if env.user_state is None:
                    raise ValueError(f"task {task.id!r}: user_data given but domain has no user DB")
                env._merge(env.user_state, init.initialization_data.user_data)
            if env.tau2_compat and domain.tau2_init_data_quirk is not None:
                domain.tau2_init_data_quirk(env)
        for action in init.initialization_actions or []:
            env.run_function(action)
        if include_history and init.message_history:
            env.replay(init.message_history)
        env.sync()
        return env

    def fork(self) -> Environment:
        """An independent copy (shares unchanged rows; writes stay private)."""
        agent = self.agent_state.fork()
        if self.user_state is self.agent_state:
            user = agent
        else:
            user = self.user_state.fork() if self.user_state is not None else None
        twin = Environment(
            self.domain,
            agent,
            user,
            ids=self.ids.fork(),
            tau2_compat=self.tau2_compat,
            guard_reads=self.guard_reads,
        )
        return twin

    @staticmethod
    def _merge(state: DBState, patch: Mapping[str, Any]) -> None:
        layout = state.base.layout
        txn = Transaction(state)
        for field, value in patch.items():
            if field in layout.tables:
                row_model = layout.row_models[field]
                rows = txn.tables.setdefault(field, {})
                for key, row_patch in value.items():
                    current = state.row(field, key)
                    merged = deep_merge(current.model_dump(), row_patch) if current is not None else row_patch
                    rows[key] = row_model.model_validate(merged)
            elif field in layout.unit_adapters:
                adapter = layout.unit_adapters[field]
                merged = deep_merge(adapter.dump_python(state.unit(field)), value)
                txn.units[field] = adapter.validate_python(merged)
            else:
                raise ValueError(f"initialization data names unknown DB field {field!r}")
        txn.commit()

    # -- tools -------------------------------------------------------------------------
    def toolkit(self, side: str) -> Toolkit:
        return self.domain.toolkit_for(side)

    def state_of(self, side: str) -> DBState | None:
        return self.agent_state if side == "assistant" else self.user_state

    def execute(self, call: ToolCall, requestor: str | None = None, *, sync: bool = True) -> Message:
        """Run one tool call and return the tool message the caller sees. Never raises."""
        side = requestor or call.requestor
        content, error = self._run_tool(call, side)
        msg = Message.tool(call.id, content, side, error)
        self.log.append((call, msg))
        if sync and not error:
            self.sync()
        return msg

    def _run_tool(self, call: ToolCall, side: str) -> tuple[str, bool]:
        kit = self.toolkit(side)
        spec = kit.tools.get(call.name) if isinstance(call.name, str) else None
        if spec is None:
            return f"Error: Tool '{call.name}' not found.", True
        args = call.arguments
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except (ValueError, RecursionError) as exc:  # also an int over 4300 digits, deep nesting
                return f"Error: arguments of '{call.name}' are not valid JSON: {exc}", True
        if not isinstance(args, dict):
            return f"Error: arguments of '{call.name}' must be a JSON object, got {type(args).__name__}", True
        state = self.state_of(side)
        if state is None:
            return f"Error: Tool '{call.name}' not found.", True
        try:
            return self._invoke(spec, state, args), False
        except Exception as exc:  # every failure is the model's to see, not ours to crash on
            return f"Error: {exc}", True

    def _invoke(self, spec: ToolSpec | EnvFunction, state: DBState, args: dict[str, Any]) -> str:
        unexpected = [k for k in args if k in spec.injected or k == spec.db_param]
        if unexpected:
            raise TypeError(f"{spec.name}() got an unexpected keyword argument '{unexpected[0]}'")
        if isinstance(spec, ToolSpec):
            spec.check_arguments(args)
        return self._call(spec, state, args, render=to_tool_content)

    def _call(self, spec: ToolSpec | EnvFunction, state: DBState, kwargs: dict[str, Any],
              render: Callable[[Any], Any] = lambda result: result) -> Any:
        """Run a tool or env function in its own transaction: committed only if the function and the
        rendering of its result succeed; a read-only function under the guard must change nothing."""
        writes = spec.mutates_state if isinstance(spec, ToolSpec) else spec.writes
        guarded = not writes and self.guard_reads
        txn = Transaction(state) if writes or guarded else None
        if "ids" in spec.injected:
            kwargs = {**kwargs, "ids": self.ids}
        out = render(spec.fn(DBView(state, txn), **kwargs))
        if guarded:
            if txn.changes_anything():
                raise RuntimeError(f"read-only tool '{spec.name}' tried to change state; the change was discarded")
        elif txn is not None:
            txn.commit()
        return out

    def make_tool_call(self, name: str, requestor: str = "assistant", **arguments: Any) -> Message:
        """Execute a call without syncing afterwards (how tau2 replays gold actions)."""
        return self.execute(ToolCall(name=name, arguments=arguments, requestor=requestor), sync=False)

    def _function(self, call: EnvFunctionCall) -> tuple[ToolSpec | EnvFunction, DBState]:
        kit = self.toolkit(call.env_type)
        spec: ToolSpec | EnvFunction | None = kit.functions.get(call.func_name) or kit.tools.get(call.func_name)
        if spec is None:
            raise ValueError(f"{call.env_type} side has no function {call.func_name!r}")
        state = self.state_of(call.env_type)
        if state is None:
            raise ValueError(f"domain {self.domain.name!r} has no {call.env_type} DB")
        return spec, state

    def run_function(self, call: EnvFunctionCall) -> Any:
        """Run an initialization action or assertion function. Raises on failure (task bug)."""
        result = self._call(*self._function(call), dict(call.arguments))
        self.sync()
        return result

    def evaluate_function(self, call: EnvFunctionCall) -> Any:
        """Call an assertion function on a read-only view (no writes, no sync). Raises on failure."""
        spec, state = self._function(call)
        return spec.fn(DBView(state), **call.arguments)

    def replay(self, messages: list[Message], *, writes_only: bool = True) -> None:
        """Re-execute the (state-changing) tool calls found in a list of messages."""
        for m in messages:
            if m.role not in ("assistant", "user") or not m.tool_calls:
                continue
            for call in m.tool_calls:
                side = call.requestor
                if writes_only and not self.toolkit(side).mutates_state(call.name):
                    continue
                self.execute(call, side)

    # -- state -------------------------------------------------------------------------
    def sync(self) -> None:
        """Run the domain's cross-side sync hook (dual-control domains)."""
        if self.domain.sync is not None:
            self.domain.sync(self)

    def view(self, side: str = "assistant", writable: bool = False) -> DBView:
        state = self.state_of(side)
        if state is None:
            raise ValueError(f"domain {self.domain.name!r} has no {side} DB")
        return DBView(state, Transaction(state) if writable else None)

    @contextlib.contextmanager
    def edit(self, side: str = "assistant") -> Iterator[DBView]:
        """A writable view for sync hooks and setup code; writes commit only if the block succeeds."""
        state = self.state_of(side)
        if state is None:
            raise ValueError(f"domain {self.domain.name!r} has no {side} DB")
        txn = Transaction(state)
        yield DBView(state, txn)
        txn.commit()

    def db_hash(self) -> str:
        """tau2's hash of the agent DB (computed on demand: tens of ms on large DBs)."""
        return self.agent_state.hash()

    def user_db_hash(self) -> str | None:
        return self.user_state.hash() if self.user_state is not None else None

    def same_state(self, other: Environment) -> bool:
        """Whether both DBs equal another environment's (decided from overlays, no hashing)."""
        if not self.agent_state.same_as(other.agent_state):
            return False
        if self.user_state is None or other.user_state is None:
            return self.user_state is other.user_state
        return self.user_state.same_as(other.user_state)
