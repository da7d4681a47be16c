"""The E2I agent registry (`config/agent_config.yaml`): tier and LLM use of each agent.

The connector fills `agent_tier` on every span from it, so dashboards can group by tier without
each agent having to know its own tier. An unknown agent gets the default tier and one warning
per process (an agent emitting thousands of spans must not flood the log).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError
from .resources import agent_config_file

logger = logging.getLogger(__name__)

ENV_AGENT_CONFIG = "E2I_OBS_AGENT_CONFIG"


@dataclass(frozen=True, slots=True)
class AgentInfo:
    name: str
    tier: int
    tier_name: str
    uses_llm: bool


class AgentRegistry:
    """Agent name -> `AgentInfo`; thread-safe lookups with a warn-once for unknown names."""

    def __init__(
        self,
        agents: Mapping[str, AgentInfo],
        tier_names: Mapping[int, str],
        default_tier: int | None = None,
    ) -> None:
        self._agents = dict(agents)
        self.tier_names = dict(tier_names)
        self.default_tier = default_tier
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def __contains__(self, name: object) -> bool:
        return name in self._agents

    def __iter__(self) -> Iterator[AgentInfo]:
        return iter(self._agents.values())

    def __len__(self) -> int:
        return len(self._agents)

    def get(self, name: str) -> AgentInfo | None:
        return self._agents.get(name)

    def tier_of(self, agent_name: str) -> int | None:
        """The agent's tier; the default tier (with one warning) for an agent not listed."""
        info = self._agents.get(agent_name)
        if info is not None:
            return info.tier
        with self._lock:
            first = agent_name not in self._warned
            if first and len(self._warned) < 10_000:
                self._warned.add(agent_name)
        if first:
            logger.warning(
                "agent %r is not in the agent registry; using default tier %s",
                agent_name,
                self.default_tier,
            )
        return self.default_tier

    @classmethod
    def from_mapping(cls, data: Any, source: str = "<mapping>") -> AgentRegistry:
        """Validate the YAML structure; errors name the key, the value and what is accepted."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: top level must be a mapping with 'tiers' and 'agents'")
        tiers_raw = data.get("tiers") or {}
        if not isinstance(tiers_raw, Mapping):
            raise ConfigError(f"{source}: 'tiers' must map tier numbers 0-5 to names")
        tier_names: dict[int, str] = {}
        for key, name in tiers_raw.items():
            tier = _tier(key, f"{source}: tiers.{key}")
            tier_names[tier] = str(name)
        default = data.get("default_tier")
        default_tier = None if default is None else _tier(default, f"{source}: default_tier")
        agents_raw = data.get("agents") or {}
        if not isinstance(agents_raw, Mapping):
            raise ConfigError(f"{source}: 'agents' must map agent names to {{tier, uses_llm}}")
        agents: dict[str, AgentInfo] = {}
        for name, spec in agents_raw.items():
            where = f"{source}: agents.{name}"
            if not isinstance(spec, Mapping) or "tier" not in spec:
                raise ConfigError(f"{where} = {spec!r}: expected a mapping with 'tier' (0-5)")
            tier = _tier(spec["tier"], f"{where}.tier")
            uses_llm = spec.get("uses_llm", False)
            if not isinstance(uses_llm, bool):
                raise ConfigError(f"{where}.uses_llm = {uses_llm!r}: expected true or false")
            agents[str(name)] = AgentInfo(
                str(name), tier, tier_names.get(tier, f"tier_{tier}"), uses_llm
            )
        return cls(agents, tier_names, default_tier)


def _tier(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 5:
        raise ConfigError(f"{where} = {value!r}: expected an integer tier from 0 to 5")
    return value


def load_agent_registry(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> AgentRegistry:
    """Load `config/agent_config.yaml` (or `$E2I_OBS_AGENT_CONFIG`, or `path`)."""
    env = os.environ if env is None else env
    explicit = path if path is not None else env.get(ENV_AGENT_CONFIG)
    file_path = Path(explicit) if explicit else agent_config_file()
    if not file_path.is_file():
        if explicit:
            raise ConfigError(f"agent registry file {file_path} does not exist")
        return AgentRegistry({}, {})
    try:
        data = yaml.safe_load(file_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file_path}: not valid YAML: {exc}") from None
    return AgentRegistry.from_mapping(data, str(file_path))
