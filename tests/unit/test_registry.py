"""The agent registry: tiers from config/agent_config.yaml, warn-once for unknown agents."""

import logging
import textwrap

import pytest
import yaml

from src.agents.ml_foundation.observability_connector.config import ConfigError
from src.agents.ml_foundation.observability_connector.registry import (
    AgentInfo,
    AgentRegistry,
    load_agent_registry,
)
from src.agents.ml_foundation.observability_connector.resources import agent_config_file

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


TIER_NAMES = {
    0: "ml_foundation",
    1: "coordination",
    2: "causal_analytics",
    3: "monitoring",
    4: "ml_predictions",
    5: "self_improvement",
}


def test_registry__shipped_file__has_every_e2i_agent_in_its_tier():
    registry = load_agent_registry(env={})
    for tier, names in E2I_TIERS.items():
        for name in names:
            assert registry.tier_of(name) == tier, name
            assert registry.get(name).tier_name == TIER_NAMES[tier]
    assert len(registry) == sum(len(v) for v in E2I_TIERS.values())
    assert registry.tier_names == TIER_NAMES


def test_registry__shipped_file__in_e2i_format():
    """Tiers by name with a priority, agents with a tier name (never the numeric format)."""
    data = yaml.safe_load(agent_config_file().read_text(encoding="utf-8"))
    assert {name: tier["priority"] for name, tier in data["tiers"].items()} == {
        name: number for number, name in TIER_NAMES.items()
    }
    assert {spec["tier"] for spec in data["agents"].values()} == set(TIER_NAMES.values())


def test_registry__e2i_file_with_other_keys__tier_is_the_tiers_priority(tmp_path):
    """E2I's agent_config.yaml carries many settings; only priority and tier are read."""
    path = tmp_path / "agent_config.yaml"
    path.write_text(
        textwrap.dedent(
            """
            version: "4.2"
            defaults: {timeout_seconds: 30, retries: 2}
            tiers:
              coordination:
                priority: 1
                description: Orchestration
                timeout_seconds: 15
                model: claude-sonnet
              causal_analytics: {priority: 2, sla_ms: 30000, parallel: true}
            agents:
              orchestrator:
                tier: coordination
                enabled: true
                description: Routes queries
                tools: [router, composer]
                llm: {model: claude-haiku, temperature: 0.1}
              gap_analyzer: {tier: causal_analytics, enabled: false, uses_llm: true}
            routing: {fallback_agent: orchestrator}
            """
        ),
        encoding="utf-8",
    )
    registry = load_agent_registry(path)
    assert (registry.tier_of("orchestrator"), registry.tier_of("gap_analyzer")) == (1, 2)
    assert registry.get("gap_analyzer") == AgentInfo("gap_analyzer", 2, "causal_analytics", True)
    assert registry.get("orchestrator").uses_llm is False
    assert registry.tier_names == {1: "coordination", 2: "causal_analytics"}


def test_registry__earlier_numeric_format__still_read():
    registry = AgentRegistry.from_mapping(
        {"tiers": {0: "ml_foundation"}, "agents": {"x": {"tier": 0, "uses_llm": True}}}
    )
    assert registry.get("x") == AgentInfo("x", 0, "ml_foundation", True)


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
        (
            {"tiers": {"ml_foundation": {"priority": 0}}, "agents": {"x": {"tier": "one"}}},
            "agents.x.tier = 'one': not a tier; accepted: ml_foundation",
        ),
        ({"tiers": {"ml_foundation": {"description": "d"}}}, "tiers.ml_foundation: no 'priority'"),
        ({"tiers": {"a": {"priority": 6}}}, "tiers.a.priority = 6"),
        (
            {"tiers": {"a": {"priority": 1}, "b": {"priority": 1}}},
            "tiers 'a' and 'b' both have priority 1",
        ),
        ({"tiers": ["a"]}, "'tiers' must map tier names"),
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
