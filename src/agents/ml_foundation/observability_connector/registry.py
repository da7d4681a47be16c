"""The E2I agent registry (`config/agent_config.yaml`): tier and LLM use of each agent.

The connector fills `agent_tier` on every span from it, so dashboards can group by tier without
each agent having to know its own tier. An unknown agent gets the default tier and one warning
per process (an agent emitting thousands of spans must not flood the log).

The file is E2I's own (every agent's settings), so it is read in E2I's format: tiers by name
with a `priority` (the tier number), agents with a `tier` name; the connector takes what it
needs and ignores every other key.
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
        """Validate the YAML structure; errors name the key, the value and what is accepted.

        E2I's format: `tiers: {<name>: {priority: 0-5, ...}}` and `agents: {<name>: {tier:
        <tier name>, ...}}`; an agent's tier number is its tier's `priority`, and every other
        key (description, model, timeout_seconds, enabled, ...) is ignored. The connector's
        earlier format (`tiers: {0: ml_foundation}`, `agents: {x: {tier: 0}}`) is read too.
        `uses_llm` (true/false) and a top-level `default_tier` (0-5) are read when present.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: top level must be a mapping with 'tiers' and 'agents'")
        tier_numbers = _tiers(data.get("tiers") or {}, source)
        tier_names = {number: name for name, number in tier_numbers.items()}
        default = data.get("default_tier")
        default_tier = None if default is None else _tier(default, f"{source}: default_tier")
        agents_raw = data.get("agents") or {}
        if not isinstance(agents_raw, Mapping):
            raise ConfigError(f"{source}: 'agents' must map agent names to {{tier: <tier name>}}")
        agents: dict[str, AgentInfo] = {}
        for name, spec in agents_raw.items():
            where = f"{source}: agents.{name}"
            if not isinstance(spec, Mapping) or "tier" not in spec:
                raise ConfigError(
                    f"{where} = {spec!r}: expected a mapping with 'tier' (a tier name: "
                    f"{', '.join(tier_numbers) or 'none defined'})"
                )
            tier = _agent_tier(spec["tier"], tier_numbers, f"{where}.tier")
            uses_llm = spec.get("uses_llm", False)
            if not isinstance(uses_llm, bool):
                raise ConfigError(f"{where}.uses_llm = {uses_llm!r}: expected true or false")
            agents[str(name)] = AgentInfo(
                str(name), tier, tier_names.get(tier, f"tier_{tier}"), uses_llm
            )
        return cls(agents, tier_names, default_tier)


def _tiers(raw: Any, source: str) -> dict[str, int]:
    """Tier name -> number, from E2I's `{name: {priority: n}}` or the older `{n: name}`."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: 'tiers' must map tier names to {{priority: 0-5, ...}}")
    numbers: dict[str, int] = {}
    for key, value in raw.items():
        if isinstance(value, Mapping):  # E2I: ml_foundation: {priority: 0, ...}
            where = f"{source}: tiers.{key}"
            if "priority" not in value:
                raise ConfigError(f"{where}: no 'priority' (the tier number, 0-5)")
            name, number = str(key), _tier(value["priority"], f"{where}.priority")
        else:  # earlier format: 0: ml_foundation
            name, number = str(value), _tier(key, f"{source}: tiers.{key}")
        if number in numbers.values():
            other = next(n for n, v in numbers.items() if v == number)
            raise ConfigError(
                f"{source}: tiers {other!r} and {name!r} both have priority {number}; "
                "each tier needs its own"
            )
        numbers[name] = number
    return numbers


def _agent_tier(value: Any, tier_numbers: Mapping[str, int], where: str) -> int:
    if isinstance(value, str):
        if value not in tier_numbers:
            accepted = ", ".join(tier_numbers) or "none defined under 'tiers'"
            raise ConfigError(f"{where} = {value!r}: not a tier; accepted: {accepted}")
        return tier_numbers[value]
    return _tier(value, where)


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
