"""Serving: the agent behind an OpenAI-compatible API and a web chat page (``recagent serve``)."""
