"""recagent.agents: the LangGraph conversational recommender that calls the tools (built on recagent.tools)."""
