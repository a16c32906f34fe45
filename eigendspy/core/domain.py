"""Domain: a pydantic database, the typed tools that read/write it, and a policy document.

A domain is everything an episode needs that does not change between tasks. It is plain data
plus functions, so users can build one in a notebook in a dozen lines:

```python
retail = Domain(name="retail", db_model=RetailDB, tools=[get_order_details, cancel_pending_order],
                policy=open("policy.md").read(), load_db=lambda: RetailDB.model_validate_json(...))
```

Dual-control domains (telecom) add ``user_tools`` over a separate ``user_db_model``, and a
``sync`` hook the environment runs after every step so the two sides agree.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from eigendspy.core.gc_pause import gc_paused
from eigendspy.core.policy_rules import OrderingRule
from eigendspy.core.state import BaseDB, tau2_hash
from eigendspy.core.tool import EnvFunction, ToolError, ToolKind, ToolSpec, assertion, env_function, tool

if TYPE_CHECKING:
    import dspy

    from eigendspy.core.environment import Environment

__all__ = [
    "Domain",
    "Toolkit",
    "ToolError",
    "ToolKind",
    "ToolSpec",
    "EnvFunction",
    "tool",
    "env_function",
    "assertion",
]


class Toolkit:
    """An ordered, name-indexed set of tools (one side of the conversation) plus env functions."""

    def __init__(self, tools: Iterable[ToolSpec] = (), functions: Iterable[EnvFunction] = ()) -> None:
        self.tools: dict[str, ToolSpec] = {}
        for spec in tools:
            if not isinstance(spec, ToolSpec):
                raise TypeError(f"{spec!r} is not a tool; decorate it with @tool")
            if spec.name in self.tools:
                raise ValueError(f"duplicate tool name {spec.name!r}")
            self.tools[spec.name] = spec
        self.functions: dict[str, EnvFunction] = {}
        for fn in functions:
            if not isinstance(fn, EnvFunction):
                raise TypeError(f"{fn!r} is not an env function; decorate it with @env_function/@assertion")
            self.functions[fn.name] = fn

    def __contains__(self, name: object) -> bool:
        return name in self.tools

    def __getitem__(self, name: str) -> ToolSpec:
        return self.tools[name]

    def __iter__(self):
        return iter(self.tools.values())

    def __len__(self) -> int:
        return len(self.tools)

    @property
    def names(self) -> list[str]:
        return list(self.tools)

    def openai_schemas(self) -> list[dict[str, Any]]:
        return [spec.openai_schema for spec in self.tools.values()]

    def mutates_state(self, name: str) -> bool:
        spec = self.tools.get(name)
        return spec is not None and spec.mutates_state

    def tool_meta(self) -> dict[str, dict[str, Any]]:
        """``{name: {tool_type, mutates_state}}`` as tau2 reports it."""
        return {n: {"tool_type": s.kind.value, "mutates_state": s.mutates_state} for n, s in self.tools.items()}


class Domain:
    """A customer-service world: DB model(s), agent tools, optional user tools, policy.

    Args:
        name: Short identifier (``"retail"``).
        db_model: Pydantic model class of the agent-side database.
        tools: Agent-side tools (``@tool`` functions).
        policy: The policy document (markdown) the assistant must follow.
        load_db: Returns the parsed agent DB; called once and shared (never mutated).
        user_db_model: Model of the user-side DB in dual-control domains.
        user_tools: User-side tools (the user acts on their own device).
        load_user_db: Returns the parsed user DB.
        functions: Agent-side env functions (init helpers, assertions) used by tasks.
        user_functions: User-side env functions.
        sync: Called with the environment after every step to reconcile the two sides.
        load_tasks: Returns the domain's tasks (``list[Task]``), if it has any.
        load_splits: Returns ``{split_name: [task ids]}``.
        data_dir: Where tau2-format data came from (for error messages and manifests).
        options: The generator options the domain was built with (``get_domain`` kwargs, e.g. a DB
            seed or size), recorded with exported tasks so a trainer can tell which world they assume.
        tau2_init_data_quirk: Called with the environment after initialization data is merged,
            in ``tau2_compat`` mode only, to reproduce a tau2 quirk of that domain.
        rules: Ordering rules the policy states (`eigendspy.core.policy_rules`, e.g. identify the
            user before any write), checked on every dialogue before it is accepted. Each names
            agent tools only; an unknown name fails here, not silently at check time.
    """

    def __init__(
        self,
        name: str,
        db_model: type[BaseModel],
        tools: Sequence[ToolSpec],
        policy: str,
        load_db: Callable[[], BaseModel],
        *,
        user_db_model: type[BaseModel] | None = None,
        user_tools: Sequence[ToolSpec] = (),
        load_user_db: Callable[[], BaseModel] | None = None,
        functions: Sequence[EnvFunction] = (),
        user_functions: Sequence[EnvFunction] = (),
        sync: Callable[[Environment], None] | None = None,
        load_tasks: Callable[[], list[Any]] | None = None,
        load_splits: Callable[[], dict[str, list[str]]] | None = None,
        data_dir: str | None = None,
        tau2_init_data_quirk: Callable[[Environment], None] | None = None,
        options: dict[str, Any] | None = None,
        rules: Sequence[OrderingRule] = (),
    ) -> None:
        if not isinstance(db_model, type) or not issubclass(db_model, BaseModel):
            raise TypeError("db_model must be a pydantic BaseModel subclass")
        if user_tools and (user_db_model is None or load_user_db is None):
            raise ValueError("a domain with user_tools needs user_db_model and load_user_db")
        self.name = name
        self.db_model = db_model
        self.user_db_model = user_db_model
        self.toolkit = Toolkit(tools, functions)
        self.user_toolkit = Toolkit(user_tools, user_functions)
        for rule in rules:
            unknown = sorted(rule.tool_names() - set(self.toolkit.names))
            if unknown:
                raise ValueError(f"domain {name!r}: rule {rule.describe()!r} names unknown agent tools {unknown}")
        self.rules: tuple[OrderingRule, ...] = tuple(rules)
        self.policy = policy
        self._load_db = load_db
        self._load_user_db = load_user_db
        self.sync = sync
        self._load_tasks = load_tasks
        self._load_splits = load_splits
        self.data_dir = data_dir
        self.tau2_init_data_quirk = tau2_init_data_quirk
        self._lock = threading.Lock()
        self._base: BaseDB | None = None
        self._user_base: BaseDB | None = None
        self._tasks: list[Any] | None = None
        self.options: dict[str, Any] = dict(options or {})
        self._db_hash: str | None = None

    # -- shared state ----------------------------------------------------------------
    def base_db(self) -> BaseDB:
        """The shared, parsed agent DB (loaded once)."""
        with self._lock:
            if self._base is None:
                with gc_paused():  # parse or generate: millions of objects, no garbage (see gc_pause)
                    model = self._load_db()
                    if not isinstance(model, self.db_model):
                        model = self.db_model.model_validate(model)
                self._base = BaseDB(model)
            return self._base

    def base_user_db(self) -> BaseDB | None:
        """The shared, parsed user DB, or None for single-control domains."""
        if self._load_user_db is None:
            return None
        with self._lock:
            if self._user_base is None:
                with gc_paused():
                    model = self._load_user_db()
                    if self.user_db_model is not None and not isinstance(model, self.user_db_model):
                        model = self.user_db_model.model_validate(model)
                self._user_base = BaseDB(model)
            return self._user_base

    def db_hash(self) -> str:
        """tau2's hash of the initial world (agent DB, plus the user DB in dual control), computed once.

        Why: an exported task is only meaningful against the database it was validated on; this is
        the fingerprint exports record and trainers compare before trusting a task's gold solution.
        """
        if self._db_hash is None:  # racing threads compute the same value; no lock held across DB loads
            user = self.base_user_db()
            dumps = {"agent": self.base_db().dump(), "user": user.dump() if user is not None else None}
            self._db_hash = tau2_hash(dumps)
        return self._db_hash

    def provenance(self) -> dict[str, Any]:
        """What an exported task set records about the world it was validated against."""
        return {"domain": self.name, "domain_options": dict(self.options), "data_dir": self.data_dir,
                "db_hash": self.db_hash()}

    # -- tasks -----------------------------------------------------------------------
    def tasks(self, split: str | None = None) -> list[Any]:
        """The domain's tasks, optionally restricted to a named split (``train``, ``test``...)."""
        if self._load_tasks is None:
            return []
        if self._tasks is None:
            self._tasks = list(self._load_tasks())
        if split is None:
            return list(self._tasks)
        splits = self.splits()
        if split not in splits:
            raise KeyError(f"domain {self.name!r} has no split {split!r}; known: {sorted(splits)}")
        wanted = set(splits[split])
        return [t for t in self._tasks if t.id in wanted]

    def splits(self) -> dict[str, list[str]]:
        return self._load_splits() if self._load_splits is not None else {}

    def task(self, task_id: str) -> Any:
        for t in self.tasks():
            if t.id == task_id:
                return t
        raise KeyError(f"domain {self.name!r} has no task {task_id!r}")

    # -- tools for models ------------------------------------------------------------
    def toolkit_for(self, side: str) -> Toolkit:
        """The agent's toolkit for ``"assistant"``, the user's device toolkit for ``"user"``."""
        return self.toolkit if side == "assistant" else self.user_toolkit

    def mutates_state(self, name: str, side: str = "assistant") -> bool:
        """Whether a call of ``name`` from ``side`` is a state-changing (write) tool call."""
        return self.toolkit_for(side).mutates_state(name)

    def tool_schemas(self, side: str = "assistant") -> list[dict[str, Any]]:
        return self.toolkit_for(side).openai_schemas()

    def dspy_tools(self, env: Environment, side: str = "assistant") -> list[dspy.Tool]:
        """The domain's tools as ``dspy.Tool`` objects bound to one environment.

        Each tool's function executes through the environment, so DSPy programs see exactly
        the strings a tau2 model would (errors included) and state stays copy-on-write.
        """
        import dspy

        from eigendspy.core.messages import ToolCall

        kit = self.toolkit_for(side)
        out = []
        for spec in kit:
            schema = spec.parameters_schema

            def call(_name: str = spec.name, **kwargs: Any) -> str:
                msg = env.execute(ToolCall(name=_name, arguments=kwargs), requestor=side)
                return msg.content or ""

            out.append(
                dspy.Tool(
                    call,
                    name=spec.name,
                    desc=spec.description,
                    args=schema.get("properties", {}),
                )
            )
        return out

    def __repr__(self) -> str:
        return f"Domain({self.name!r}, tools={len(self.toolkit)}, user_tools={len(self.user_toolkit)})"
