"""Agents: one module per task (data columns, labels, metric, search-space additions).

Adding an agent = adding a module here, registering it in ``AGENTS`` and shipping configs/agents/<name>.yaml.
"""

from __future__ import annotations

from hpo.agents.base import Agent
from hpo.errors import ConfigError

AGENTS = ("criteria",)


def get_agent(name: str) -> Agent:
    """Return the agent called ``name`` or raise a ConfigError listing the known ones."""
    if name == "criteria":
        from hpo.agents.criteria import CriteriaAgent

        return CriteriaAgent()
    raise ConfigError(f"unknown agent '{name}'", f"use one of: {', '.join(AGENTS)}")


__all__ = ["AGENTS", "Agent", "get_agent"]
