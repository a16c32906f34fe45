"""Per-role LM configuration."""

from __future__ import annotations

import pytest

from eigendspy.lm.config import ROLES, RoleLMConfig, build_role_lms
from eigendspy.testing.lm import scripted_lm


def test_toml_roles_and_sharing(tmp_path):
    path = tmp_path / "roles.toml"
    path.write_text('[lm]\ndefault = "openai/gpt-4o-mini"\n'
                    '[lm.roles]\nuser = "local"\n'
                    'assistant = { model = "hosted_vllm/m", api_base = "http://localhost:8000/v1", '
                    'temperature = 0.7 }\n')
    cfg = RoleLMConfig.from_toml(path)
    assert cfg.ids()["user"] == "local" and cfg.ids()["planner"] == "openai/gpt-4o-mini"
    local = scripted_lm(lambda req: {"x": 1})
    lms = build_role_lms(cfg, local_factory=lambda: local)
    assert set(lms) == set(ROLES)
    assert lms["user"] is local
    assert lms["planner"] is lms["generator"]  # identical specs share one LM
    assert lms["assistant"].kwargs["api_base"] == "http://localhost:8000/v1"


def test_bad_config_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown role"):
        RoleLMConfig.from_mapping({"roles": {"judge_of_everything": "x"}})
    bad = tmp_path / "bad.toml"
    bad.write_text("[lm\n")
    with pytest.raises(ValueError, match="cannot read LM config"):
        RoleLMConfig.from_toml(bad)


def test_no_config_means_local_everywhere():
    assert set(RoleLMConfig().ids().values()) == {"local"}


def test_vllm_server_lm_declares_native_tool_calls():
    cfg = RoleLMConfig.from_mapping({"default": "openai/gpt-4o-mini", "roles": {
        "assistant": {"model": "vllm-server/Qwen/Qwen2.5-7B-Instruct", "api_base": "http://127.0.0.1:9/v1"}}})
    lms = build_role_lms(cfg, local_factory=lambda: None)
    assistant = lms["assistant"]
    assert assistant.model.endswith("/Qwen/Qwen2.5-7B-Instruct") and assistant.model.startswith("eigendspy")
    assert assistant.supports_function_calling is True
    with pytest.raises(ValueError, match="needs api_base"):
        build_role_lms(RoleLMConfig.from_mapping({"roles": {"user": "vllm-server/m"}}), local_factory=lambda: None)
