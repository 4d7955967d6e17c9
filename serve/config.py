"""The serving job's config: where to listen, who may call, and how much work to admit."""

from __future__ import annotations

import ipaddress
import os

from pydantic import Field, model_validator

from recagent.agents.config import AgentConfig
from recagent.config import JobConfig
from recagent.errors import ConfigError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")  # Host header names of this machine (IPv6 literals in brackets)


class ServeConfig(JobConfig):
    """``recagent serve``: the agent to serve, the address, API keys and admission limits."""

    agent: AgentConfig = Field(default_factory=AgentConfig)
    host: str = Field("127.0.0.1", description="address to listen on; anything but loopback requires an API key")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 = any free port)")
    model_name: str = Field("recagent", min_length=1, description="the `model` clients name in requests")
    api_key_env: str = Field(
        "RECAGENT_API_KEYS", description="environment variable holding the API keys, comma-separated (never in files)"
    )
    workers: int = Field(
        4,
        ge=1,
        le=64,
        description="agent turns running at once (tool calls overlap; a local model's calls are serialised)",
    )
    max_queue: int = Field(16, ge=0, le=10_000, description="turns waiting for a worker; one more is answered 503")
    max_body_bytes: int = Field(256 * 1024, ge=1024, description="largest request body; larger is answered 413")
    max_message_chars: int = Field(4000, ge=1, description="longest user message; longer is answered 400")
    max_history_messages: int = Field(50, ge=1, description="most messages a stateless request may carry")
    cors_origins: list[str] = Field(
        default_factory=list,
        description="web origins (e.g. https://chat.example.org) whose pages may call the API "
        "from a browser; empty = same origin only",
    )
    allowed_hosts: list[str] | None = Field(
        None,
        description="Host header names served (any port; `*.example.org` wildcards, `*` any); None = loopback "
        "names only (localhost, 127.0.0.1, [::1], `host`) without API keys, any name with them",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="seconds a connection has to send a request's headers, from connecting or from its "
        "previous response; slower connections are closed",
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        description="seconds a request has to send its body once its headers arrived; slower is answered 408",
    )
    keep_alive_s: int = Field(5, ge=1, description="seconds an idle keep-alive connection stays open")
    max_connections: int = Field(
        256,
        ge=2,
        description="open connections at most (idle, slow and busy ones alike); a request on one more is answered 503",
    )
    max_header_bytes: int = Field(
        16 * 1024,
        ge=1024,
        description="most bytes of an unfinished request head (line and headers) held; more is answered 400 and closed",
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
        for pattern in self.allowed_hosts or []:
            if "*" in pattern[1:] or (pattern.startswith("*") and pattern != "*" and not pattern.startswith("*.")):
                raise ValueError(f"allowed_hosts: {pattern!r} is not a host name, `*.domain` or `*`")
        return self

    def keys(self) -> list[str]:
        """The configured API keys (empty: no authentication, allowed on loopback only)."""
        return api_keys(self.api_key_env)

    def trusted_hosts(self) -> list[str]:
        """The Host names served (see ``allowed_hosts``).

        Without keys, a web page anywhere can reach a loopback server through DNS rebinding (its own name
        resolved to 127.0.0.1), so only loopback names are served; with keys such a page has no key to send.
        """
        if self.allowed_hosts is not None:
            return [f"[{h}]" if _is_ipv6(h) else h.lower() for h in self.allowed_hosts]  # Host carries IPv6 in brackets
        if self.keys():
            return ["*"]
        own = f"[{self.host}]" if _is_ipv6(self.host) else self.host.lower()  # e.g. 127.0.0.2, also loopback
        return list(dict.fromkeys([*LOOPBACK_NAMES, own]))

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


def _is_ipv6(host: str) -> bool:
    """Whether ``host`` is a bare IPv6 address (``::1``, not ``[::1]``)."""
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False
