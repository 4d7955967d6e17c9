"""Policies: chat models the agent can use (OpenAI-compatible servers, local Hugging Face models)."""
