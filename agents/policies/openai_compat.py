"""Policy over any OpenAI-compatible Chat Completions server with tools (OpenAI, vLLM, Ollama, llama.cpp).

langchain-openai's ``ChatOpenAI`` does the protocol, timeouts and retries with backoff; this
module only configures it from :class:`PolicyConfig` and turns connection failures into one
clear message.
"""

from __future__ import annotations

import os

from recagent.agents.config import PolicyConfig, api_key
from recagent.errors import RecagentError


class PolicyUnavailableError(RecagentError):
    """The policy's server could not be reached or answered with an error."""


def openai_chat_model(cfg: PolicyConfig):
    """A ``ChatOpenAI`` for the configured server, model, key, timeout and retries."""
    from langchain_openai import ChatOpenAI

    base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL")
    return ChatOpenAI(
        model=cfg.model,
        base_url=base_url,
        api_key=api_key(cfg.model_copy(update={"base_url": base_url})),
        timeout=cfg.timeout,
        max_retries=cfg.max_retries,
        temperature=cfg.temperature,
        max_tokens=cfg.max_new_tokens,
    )


def explain_failure(exc: BaseException, cfg: PolicyConfig) -> str | None:
    """A one-line message for a server failure (None if ``exc`` is not one)."""
    import openai

    where = cfg.base_url or os.environ.get("OPENAI_BASE_URL") or "the OpenAI API"
    if isinstance(exc, openai.APITimeoutError):
        return f"the policy server at {where} did not answer within {cfg.timeout:.0f}s (policy.timeout)"
    if isinstance(exc, openai.APIConnectionError):
        return f"cannot reach the policy server at {where}: is it running? ({exc.__cause__ or exc})"
    if isinstance(exc, openai.AuthenticationError):
        return f"the policy server at {where} rejected the API key from ${cfg.api_key_env}"
    if isinstance(exc, openai.NotFoundError):
        return f"the policy server at {where} does not serve model {cfg.model!r}"
    if isinstance(exc, openai.APIStatusError):
        return f"the policy server at {where} answered {exc.status_code}: {str(exc)[:200]}"
    return None
