"""Fuzz every tool of every built-in domain (hardening issue): whatever a model sends, a call

* never raises out of `Environment.execute` and answers a ``str`` with a ``bool`` error flag;
* when it is an error, changes neither DB (overlay compared with a snapshot, tau2 hash with the
  hash taken before the call);
* when it is a successful non-write call, changes nothing either (the read guard is on);
* when it writes, writes standard JSON (no NaN or infinity);
* costs under a second of CPU;
* and no call ever changes the parsed DBs that all environments share (checked at teardown).

Arguments are generated from each tool's own schema (see `fuzz_helpers`): well-typed values
drawn mostly from related DB records so calls reach deep logic and sometimes write, wrongly
typed or hostile values, and malformed calls. Each domain's DB is built once per module and
every example runs on a copy-on-write fork of it. The built-in (generated) DBs are used, so the
test needs no tau2 data; ``EIGENDSPY_TAU2_DATA=<tau2 dir>`` fuzzes over tau2's DBs instead, and
``EIGENDSPY_FUZZ_EXAMPLES`` sets the examples per tool (derandomized: the same calls every run).
"""

from __future__ import annotations

import json
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from eigendspy.core.environment import Environment
from eigendspy.core.messages import Message, ToolCall
from eigendspy.core.state import DBState, tau2_hash
from eigendspy.domains import BUILTIN, get_domain
from tests.domains.fuzz_helpers import doc_literals, pool_for, tool_calls

CPU_LIMIT_S = 1.0
EXAMPLES_PER_TOOL = int(os.environ.get("EIGENDSPY_FUZZ_EXAMPLES", 80))  # raise it for a deeper local run
SEQUENCE_EXAMPLES = EXAMPLES_PER_TOOL // 2
SIDES = ("assistant", "user")
FUZZ = settings(
    max_examples=EXAMPLES_PER_TOOL,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.function_scoped_fixture,
    ],
)

_DOMAINS = {name: get_domain(name) for name in BUILTIN}  # lazy: DBs load on first use
PAIRS = [
    (name, side, tool) for name, domain in _DOMAINS.items() for side in SIDES for tool in domain.toolkit_for(side).names
]
ALL_NAMES = sorted({tool for _, _, tool in PAIRS})

# tau2 parity: airline update_reservation_baggages stores the number it is given (``2.0`` in an int
# field, as tau2 does), and pydantic warns when it dumps that row.
pytestmark = pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")


class World:
    """One domain's pristine (synced) environment, forked per example, and its value pools."""

    def __init__(self, name: str) -> None:
        self.domain = _DOMAINS[name]
        self.env = Environment(self.domain, guard_reads=True)
        self.env.sync()
        self.hashes = (self.env.db_hash(), self.env.user_db_hash())
        self.pools = {side: pool_for(self.env, side) for side in SIDES}
        self.base_hashes = self._base_hashes()
        self._contexts: dict[tuple[str, str], dict] = {}

    def _base_hashes(self) -> tuple[str, str | None]:
        """Hashes of the shared base DBs from a fresh dump (not the cached one): nothing may mutate them."""
        user = self.domain.base_user_db()
        return (
            tau2_hash(self.domain.base_db().model.model_dump()),
            tau2_hash(user.model.model_dump()) if user is not None else None,
        )

    def context(self, side: str, tool: str) -> dict:
        if (side, tool) not in self._contexts:
            spec = self.domain.toolkit_for(side).tools[tool]
            self._contexts[side, tool] = {"pool": self.pools[side], "literals": doc_literals(spec)}
        return self._contexts[side, tool]


@pytest.fixture(scope="module")
def worlds():
    built: dict[str, World] = {}

    def get(name: str) -> World:
        if name not in built:
            built[name] = World(name)
        return built[name]

    yield get
    for world in built.values():  # no example may have changed the DBs every environment shares
        assert world._base_hashes() == world.base_hashes, world.domain.name


def _where(call: ToolCall) -> str:
    """The failing call, briefly (computed only when an assertion fails: arguments can be huge)."""
    try:
        return f"{call.name!r}({str(call.arguments)[:300]})"
    except (ValueError, RecursionError):  # an int too long for str(), a list nested too deep
        return f"{call.name!r}(<unprintable arguments>)"


def check_call(env: Environment, call: ToolCall, side: str, world: World) -> Message:
    """Execute one call and assert the fuzz invariants; return the tool message."""
    snapshot = env.fork()  # shares rows with env: compared by overlay; the hashes are taken apart
    hashes = world.hashes if env.same_state(world.env) else (env.db_hash(), env.user_db_hash())
    start = time.process_time()
    msg = env.execute(call, side)
    cpu = time.process_time() - start
    assert isinstance(msg.content, str), _where(call)
    assert isinstance(msg.error, bool), _where(call)
    assert cpu < CPU_LIMIT_S, (_where(call), f"{cpu:.2f}s CPU")
    spec = env.toolkit(side).tools.get(call.name) if isinstance(call.name, str) else None
    if msg.error:
        assert msg.content.startswith("Error: "), _where(call)
        assert "tried to change state" not in msg.content, (_where(call), msg.content)
        assert env.same_state(snapshot), (_where(call), msg.content)
        assert (env.db_hash(), env.user_db_hash()) == hashes, _where(call)
    elif spec is not None and not spec.mutates_state and env.domain.sync is None:
        assert env.same_state(snapshot), (_where(call), "non-write tool changed state")
    else:
        for state, before in ((env.agent_state, snapshot.agent_state), (env.user_state, snapshot.user_state)):
            if state is not None:
                assert_written_values_are_json(state, before, call)
    return msg


def assert_written_values_are_json(state: DBState, before: DBState, call: ToolCall) -> None:
    """Every row or unit a call wrote still dumps to standard JSON: no NaN or infinity, which
    pydantic would write as ``null`` and then refuse to load. (Types are not checked: tau2 stores
    what the model sent, e.g. mock ``update_task_status`` writes ``status="bogus"`` and airline
    ``update_reservation_baggages`` writes ``total_baggages=2.0``; eigendspy keeps that parity.)"""
    for table, rows in state.tables.items():
        old = before.tables.get(table, {})
        for key, row in rows.items():
            if row is not old.get(key) and isinstance(row, BaseModel):
                _assert_finite_json(row.model_dump(), call, f"{table}[{key!r}]")
    for name, value in state.units.items():
        if value is not before.units.get(name):
            _assert_finite_json(state.base.layout.unit_adapters[name].dump_python(value), call, name)


def _assert_finite_json(dump: object, call: ToolCall, what: str) -> None:
    try:
        json.dumps(dump, allow_nan=False, default=str)
    except ValueError as exc:
        raise AssertionError(f"{_where(call)} wrote a non-finite number into {what}") from exc


@pytest.mark.parametrize(("domain", "side", "tool"), PAIRS, ids=[f"{d}-{s}-{t}" for d, s, t in PAIRS])
@FUZZ
@given(data=st.data())
def test_fuzz_tool_call(worlds, domain: str, side: str, tool: str, data) -> None:
    world = worlds(domain)
    spec = world.domain.toolkit_for(side).tools[tool]
    call = data.draw(tool_calls(spec, side, world.context(side, tool), ALL_NAMES), label="call")
    check_call(world.env.fork(), call, side, world)


@pytest.mark.parametrize("domain", BUILTIN)
@settings(FUZZ, max_examples=SEQUENCE_EXAMPLES)
@given(data=st.data())
def test_fuzz_call_sequence(worlds, domain: str, data) -> None:
    """A few random calls in a row on one environment, the invariants checked at every step."""
    world = worlds(domain)
    env = world.env.fork()
    pairs = [(side, tool) for d, side, tool in PAIRS if d == domain]
    for _ in range(data.draw(st.integers(2, 6), label="steps")):
        side, tool = data.draw(st.sampled_from(pairs), label="tool")
        spec = world.domain.toolkit_for(side).tools[tool]
        call = data.draw(tool_calls(spec, side, world.context(side, tool), ALL_NAMES), label="call")
        check_call(env, call, side, world)


def test_every_tool_of_every_domain_is_fuzzed() -> None:
    assert {d for d, _, _ in PAIRS} == set(BUILTIN)
    for name, domain in _DOMAINS.items():
        for side in SIDES:
            assert {t for d, s, t in PAIRS if d == name and s == side} == set(domain.toolkit_for(side).names)
    assert any(s == "user" for _, s, _ in PAIRS)


# ----------------------------------------------------------------- inputs the fuzz found, pinned
DEEP_JSON = "[" * 50_000 + "]" * 50_000
LONG_INT_JSON = '{"summary": 1' + "0" * 5000 + "}"  # int() refuses over 4300 digits


def _real_ids(world: World) -> dict[str, str]:
    """Ids of a real telecom line / airline user, so only the hostile value is wrong."""
    dump = world.env.agent_state.dump()
    if world.domain.name == "telecom":
        customer = dump["customers"][0]
        return {"customer_id": customer["customer_id"], "line_id": customer["line_ids"][0]}
    return {"user_id": next(iter(dump["users"]))} if world.domain.name == "airline" else {}


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("domain", "tool", "arguments", "as_text", "message"),
    [
        # json.loads raised RecursionError / ValueError, which escaped execute (only JSONDecodeError was caught)
        ("mock", "transfer_to_human_agents", DEEP_JSON, False, "not valid JSON"),
        ("mock", "transfer_to_human_agents", LONG_INT_JSON, False, "not valid JSON"),
        # NaN / infinity (json.loads takes them) were stored: the line and bill then dumped as null
        ("telecom", "refuel_data", {"gb_amount": NAN}, False, "finite number"),
        ("telecom", "refuel_data", {"gb_amount": INF}, False, "finite number"),
        ("telecom", "refuel_data", {"gb_amount": NAN}, True, "finite number"),
        ("airline", "send_certificate", {"amount": NAN}, False, "finite number"),
        ("airline", "send_certificate", {"amount": -INF}, True, "finite number"),
        # a finite amount whose charge overflows to inf
        ("telecom", "refuel_data", {"gb_amount": 1e308}, False, "too large"),
    ],
)
def test_inputs_found_by_fuzzing_are_errors_without_writes(worlds, domain, tool, arguments, as_text, message):
    world = worlds(domain)
    if isinstance(arguments, dict):
        arguments = {**_real_ids(world), **arguments}
        arguments = json.dumps(arguments) if as_text else arguments  # json.dumps writes NaN / -Infinity
    msg = check_call(world.env.fork(), ToolCall(id="f", name=tool, arguments=arguments), "assistant", world)
    assert msg.error and message in msg.content, msg.content


def test_refuel_overflow_across_calls_is_refused(worlds) -> None:
    """Each charge finite, their sum on the draft bill not: the second call must fail, unwritten."""
    world = worlds("telecom")
    env = world.env.fork()
    call = ToolCall(id="f", name="refuel_data", arguments={**_real_ids(world), "gb_amount": 3e307})
    assert not check_call(env, call, "assistant", world).error
    msg = check_call(env, call, "assistant", world)
    assert msg.error and "too large" in msg.content, msg.content
