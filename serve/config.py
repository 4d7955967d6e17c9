"""The serving job's config: where to listen, who may call, and how much work to admit."""

from __future__ import annotations

import ipaddress
import os

from pydantic import Field, model_validator

from recagent.agents.config import AgentConfig
from recagent.config import JobConfig
from recagent.errors import ConfigError


class ServeConfig(JobConfig):
    """``recagent serve``: the agent to serve, the address, API keys and admission limits."""

    agent: AgentConfig = Field(default_factory=AgentConfig)
    host: str = Field("127.0.0.1", description="address to listen on; anything but loopback requires an API key")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 = any free port)")
    model_name: str = Field("recagent", min_length=1, description="the `model` clients name in requests")
    api_key_env: str = Field(
        "RECAGENT_API_KEYS", description="environment variable holding the API keys, comma-separated (never in files)"
    )
    workers: int = Field(4, ge=1, le=64, description="agent turns running at once (tool calls overlap; a local model's calls are serialised)")
    max_queue: int = Field(16, ge=0, le=10_000, description="turns waiting for a worker; one more is answered 503")
    max_body_bytes: int = Field(256 * 1024, ge=1024, description="largest request body; larger is answered 413")
    max_message_chars: int = Field(4000, ge=1, description="longest user message; longer is answered 400")
    max_history_messages: int = Field(50, ge=1, description="most messages a stateless request may carry")
    cors_origins: list[str] = Field(
        default_factory=list, description="web origins (e.g. https://chat.example.org) whose pages may call the API "
        "from a browser; empty = same origin only"
    )
    serialize_policy: bool | None = Field(
        None, description="hold a lock around every policy call; None = on for a local model, off for a server"
    )

    @model_validator(mode="after")
    def _check(self) -> ServeConfig:
        if not is_loopback(self.host) and not api_keys(self.api_key_env):
            raise ValueError(
                f"host {self.host} is not loopback: set API keys in ${self.api_key_env} "
                "(e.g. `export RECAGENT_API_KEYS=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')`)"
            )
        return self

    def keys(self) -> list[str]:
        """The configured API keys (empty: no authentication, allowed on loopback only)."""
        return api_keys(self.api_key_env)

    def policy_is_serialized(self) -> bool:
        """Whether policy calls take a lock (see ``serialize_policy``)."""
        return self.agent.policy.kind == "local" if self.serialize_policy is None else self.serialize_policy


def api_keys(env_name: str) -> list[str]:
    """Comma-separated keys from an environment variable; keys shorter than 16 characters are refused."""
    keys = [k.strip() for k in os.environ.get(env_name, "").split(",") if k.strip()]
    short = [k for k in keys if len(k) < 16]
    if short:
        raise ConfigError(f"${env_name}: API keys must be at least 16 characters ({len(short)} shorter)")
    return keys


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
