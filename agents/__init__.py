"""recagent.agents: the LangGraph conversational recommender that calls the tools (built on recagent.tools)."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recagent.agents.agent import Agent, TurnResult
    from recagent.agents.config import AgentConfig, PolicyConfig

__all__ = ["Agent", "AgentConfig", "PolicyConfig", "TurnResult"]


def __getattr__(name: str):
    # lazy: importing recagent.agents.steps must not pull in LangGraph and the chat models
    if name in ("Agent", "TurnResult"):
        from recagent.agents import agent

        return getattr(agent, name)
    if name in ("AgentConfig", "PolicyConfig"):
        from recagent.agents import config

        return getattr(config, name)
    raise AttributeError(name)
