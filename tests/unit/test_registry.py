"""The agent registry: tiers from config/agent_config.yaml, warn-once for unknown agents."""

import logging

import pytest

from src.agents.ml_foundation.observability_connector.config import ConfigError
from src.agents.ml_foundation.observability_connector.registry import (
    AgentRegistry,
    load_agent_registry,
)

E2I_TIERS = {
    0: [
        "scope_definer",
        "data_preparer",
        "feature_analyzer",
        "model_selector",
        "model_trainer",
        "model_deployer",
        "observability_connector",
        "cohort_constructor",
    ],
    1: ["orchestrator", "tool_composer"],
    2: ["causal_impact", "gap_analyzer", "heterogeneous_optimizer"],
    3: ["drift_monitor", "experiment_designer", "health_score", "experiment_monitor"],
    4: ["prediction_synthesizer", "resource_optimizer"],
    5: ["explainer", "feedback_learner"],
}


def test_registry__shipped_file__has_every_e2i_agent_in_its_tier():
    registry = load_agent_registry(env={})
    for tier, names in E2I_TIERS.items():
        for name in names:
            assert registry.tier_of(name) == tier, name
    assert len(registry) == sum(len(v) for v in E2I_TIERS.values())
    assert registry.get("orchestrator").tier_name == "coordination"


def test_registry__unknown_agent__default_tier_and_one_warning(caplog):
    registry = AgentRegistry.from_mapping({"tiers": {0: "a"}, "agents": {}, "default_tier": 3})
    with caplog.at_level(logging.WARNING):
        assert registry.tier_of("mystery") == 3
        assert registry.tier_of("mystery") == 3
    assert len([r for r in caplog.records if "mystery" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"agents": {"x": {"tier": 9}}}, "agents.x.tier = 9"),
        ({"agents": {"x": {"tier": "one"}}}, "expected an integer tier from 0 to 5"),
        ({"agents": {"x": 3}}, "expected a mapping with 'tier'"),
        ({"agents": {"x": {"tier": 1, "uses_llm": "yes"}}}, "expected true or false"),
        ({"default_tier": -1}, "default_tier = -1"),
        ([1, 2], "top level must be a mapping"),
    ],
)
def test_registry__invalid_mapping__error_names_key_and_accepted(data, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        AgentRegistry.from_mapping(data)


def test_registry__explicit_missing_file__clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_agent_registry(tmp_path / "nope.yaml")
