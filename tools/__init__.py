"""recagent.tools: data, conventional recommenders, retrieval indexes and the typed tool layer.

Nothing here imports an LLM: these are the tools an agent calls, usable on their own.
"""
