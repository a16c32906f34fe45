"""Role LMs are checked before a run: a known provider and its API key, named by role, variable and fix.

No network: the check asks DSPy's (and LiteLLM's) offline routing which provider a model id selects.
"""

from __future__ import annotations

import pickle

import pytest

from eigendspy.lm.config import LMSpec, RoleLMConfig
from eigendspy.lm.preflight import LMConfigError, check_role_lms, spec_problem
from eigendspy.lm.resilience import CallFailedError, CircuitBreaker, LMUnavailableError, describe_failure

KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "TOGETHERAI_API_KEY", "TOGETHER_API_KEY", "TOGETHER_AI_TOKEN")


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KEYS:
        monkeypatch.delenv(name, raising=False)


def _check(mapping: dict) -> None:
    check_role_lms(RoleLMConfig.from_mapping(mapping), source="roles.toml")


def test_missing_key_names_role_variable_and_fix(no_keys):
    with pytest.raises(LMConfigError) as caught:
        _check({"default": "openai/gpt-4o-mini"})
    text = str(caught.value)
    assert caught.value.role == "planner" and text.startswith("role 'planner' ([lm] default in roles.toml")
    assert "OPENAI_API_KEY is not set" in text and "set OPENAI_API_KEY in the environment" in text
    assert 'api_key = "..."' in text and "RouterConfig" not in text and "Error" not in text

    with pytest.raises(
        LMConfigError,
        match=r"role 'assistant' \(\[lm.roles\] assistant in roles.toml\).*"
        r"ANTHROPIC_API_KEY",
    ) as caught:
        _check({"roles": {"assistant": "anthropic/claude-3-5-haiku-latest"}})
    assert caught.value.role == "assistant"


def test_a_key_in_the_environment_or_the_entry_passes(no_keys, monkeypatch):
    _check({"default": {"model": "openai/gpt-4o-mini", "api_key": "sk-test"}})
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    _check({"default": "openai/gpt-4o-mini"})


def test_local_servers_need_no_key(no_keys):
    _check({"default": "local", "roles": {"user": {"model": "vllm-server/m", "api_base": "http://127.0.0.1:9/v1"}}})
    assert spec_problem(LMSpec(model="ollama/llama3")) is None  # DSPy sends ollama's placeholder key
    with pytest.raises(LMConfigError, match="'vllm-server/m' needs api_base"):
        _check({"roles": {"user": "vllm-server/m"}})


@pytest.mark.parametrize("model", ["nosuchprovider/xyz", "gpt4"])
def test_an_unknown_provider_is_named(no_keys, model):
    with pytest.raises(LMConfigError, match=f"'{model}' names no provider") as caught:
        _check({"default": model})
    assert "openai/gpt-4o-mini" in str(caught.value)  # an example of what to write instead


def test_litellm_routed_provider_names_its_variable(no_keys):
    problem = spec_problem(LMSpec(model="together_ai/some-model"))
    assert problem is not None and problem.key_vars and all(problem.key_vars)  # never an empty name
    assert all(name in problem.text for name in problem.key_vars)


def test_timeouts_are_said_without_transport_class_advice():
    class ReadTimeout(Exception):
        pass

    try:
        try:
            raise ReadTimeout("read timed out waiting for headers: no bytes for 2s; raise it with Timeouts(read=...)")
        except ReadTimeout as inner:
            raise RuntimeError("[m] read timed out") from inner
    except RuntimeError as exc:
        reason = describe_failure(exc)
    assert reason == "Timeout: read timed out waiting for headers: no bytes for 2s"
    assert describe_failure(ValueError("bad answer")) == "ValueError: bad answer"


def test_lm_errors_keep_their_role_across_processes():
    breaker = CircuitBreaker(threshold=1)
    with pytest.raises(LMUnavailableError) as caught:
        breaker.failure("Timeout", role="user")
    assert caught.value.role == "user"
    back = pickle.loads(pickle.dumps(LMUnavailableError("down", role="planner")))
    assert (str(back), back.role) == ("down", "planner")
    failed = pickle.loads(pickle.dumps(CallFailedError("user", "Timeout")))
    assert (failed.role, failed.reason, str(failed)) == ("user", "Timeout", "user: Timeout")


def test_only_the_roles_a_command_uses_are_checked(no_keys):
    config = RoleLMConfig.from_mapping({"default": "local", "roles": {"planner": "openai/gpt-4o-mini"}})
    check_role_lms(config, roles=("assistant", "reflector"))  # evolve: the planner is never called
    with pytest.raises(LMConfigError, match="'planner'"):
        check_role_lms(config)
