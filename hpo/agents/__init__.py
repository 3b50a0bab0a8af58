"""Agents: one module per task (data, encoding, head, metric, search-space checks), found by name.

Adding an agent = a module ``hpo/agents/<name>.py`` exposing ``AGENT`` (an ``Agent``) and its defaults in
``configs/agents/<name>.yaml``; nothing else changes. The names are those of the shipped agent YAMLs.
"""

from __future__ import annotations

import importlib

from hpo.agents.base import Agent
from hpo.config.study import StudyConfig
from hpo.errors import ConfigError
from hpo.paths import CONFIG_DIR


def agent_names() -> tuple[str, ...]:
    """The agents hpo ships: one ``configs/agents/<name>.yaml`` each."""
    return tuple(sorted(p.stem for p in (CONFIG_DIR / "agents").glob("*.yaml")))


def get_agent(name: str, cfg: StudyConfig | None = None) -> Agent:
    """Return the agent called ``name`` (``hpo.agents.<name>.AGENT``) or raise a ConfigError listing them.

    With the study's ``cfg``, an agent module that defines ``for_study(cfg)`` (one reading settings beyond
    the data path, such as the classify agent's columns) returns an agent made for that study."""
    names = agent_names()
    if name not in names:
        raise ConfigError(f"unknown agent '{name}'", f"use one of: {', '.join(names)}")
    module = importlib.import_module(f"hpo.agents.{name}")
    if cfg is not None and hasattr(module, "for_study"):
        made: Agent = module.for_study(cfg)
        return made
    agent: Agent = module.AGENT
    return agent


__all__ = ["Agent", "agent_names", "get_agent"]
