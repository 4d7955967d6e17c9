"""The recommender tools as an MCP server (Model Context Protocol), over stdio or streamable HTTP.

``recagent mcp`` serves the tool registry (``tools/recommender_tools.py``) to any MCP client: Claude
Desktop, IDE agents, LangChain through ``langchain-mcp-adapters``. Nothing is defined twice: each MCP
tool's name, description and input schema are the registry's OpenAI ``tools`` entry, and a call goes
through :meth:`~recagent.tools.toolkit.ToolRegistry.call`, so arguments are checked as for the agent.
A result carries the compact lines a model reads (``ToolOutcome.content``) as text and the structured
result as ``structuredContent``; a refused call is an MCP tool error (``isError: true``) whose text is
the toolkit's one-line message, with the error's kind and argument as ``structuredContent``.

Every MCP session (a stdio connection, an HTTP ``Mcp-Session-Id``) gets its own candidate buffer, as
each agent conversation does (``ToolEnv.session``): the low-level server enters its ``lifespan`` once
per session, and that lifespan builds the session's registry, so ``save_as`` -> ``candidates`` works
within a session and a set saved in one is unknown in another. Models and indexes are shared.

Over HTTP the app is the SDK's session manager behind the checks ``recagent serve`` makes (the same
functions): loopback only unless ``$RECAGENT_API_KEYS`` holds keys, then ``Authorization: Bearer KEY``
on every request (a session answers only the key that opened it); loopback ``Host`` names only without
keys (DNS rebinding); bodies bounded in size and time. A request with an ``Origin`` header (a web page)
is refused unless that origin is listed in ``allowed_origins``.

The low-level ``mcp.server.lowlevel.Server`` is used, not FastMCP, because FastMCP derives schemas
from Python signatures and the registry already has them.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
from mcp import types
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from pydantic import Field, model_validator
from starlette.applications import Starlette
from starlette.routing import Route

from recagent import __version__
from recagent.config import JobConfig
from recagent.serve.auth import KeyRing, presented_key
from recagent.serve.config import LOOPBACK_NAMES, api_keys, is_loopback
from recagent.serve.limits import KEY_MISSING, BodyLimit, HostCheck, send_error
from recagent.serve.protocol import error_body
from recagent.serve.transport import head_deadline
from recagent.tools.env import ToolEnv, ToolEnvConfig
from recagent.tools.recommender_tools import build_registry
from recagent.tools.toolkit import ToolOutcome

MCP_PATH = "/mcp"  # the streamable HTTP endpoint (the path MCP clients and the SDK's examples use)


class McpConfig(JobConfig):
    """``recagent mcp``: which tools to serve, over which transport, and (HTTP) who may call."""

    tools: ToolEnvConfig = Field(default_factory=ToolEnvConfig)
    transport: Literal["stdio", "http"] = Field(
        "stdio", description="stdio (the MCP client starts the command) or http (streamable HTTP at /mcp)"
    )
    host: str = Field("127.0.0.1", description="HTTP: address to listen on; anything but loopback requires an API key")
    port: int = Field(8001, ge=0, le=65535, description="HTTP: TCP port")
    api_key_env: str = Field(
        "RECAGENT_API_KEYS", description="environment variable holding the API keys, comma-separated (never in files)"
    )
    allowed_hosts: list[str] | None = Field(
        None,
        description="HTTP: Host header names served (`*.example.org` wildcards, `*` any); None = loopback names "
        "only without API keys, any name with them",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="HTTP: web origins (e.g. https://app.example.org) whose pages may call; a request with any "
        "other Origin header is refused (MCP clients outside a browser send none)",
    )
    max_sessions: int = Field(256, ge=1, description="HTTP: open MCP sessions at most; one more is answered 503")
    session_idle_s: float = Field(
        1800.0, gt=0, description="HTTP: seconds without a request after which a session and its candidate sets end"
    )
    max_body_bytes: int = Field(256 * 1024, ge=1024, description="HTTP: largest request body; larger is answered 413")
    body_timeout_s: float = Field(30.0, gt=0, description="HTTP: seconds a request has to send its body (else 408)")
    header_timeout_s: float = Field(
        10.0, gt=0, description="HTTP: seconds a connection has to send a request's headers; slower ones are closed"
    )
    keep_alive_s: int = Field(5, ge=1, description="HTTP: seconds an idle keep-alive connection stays open")
    max_connections: int = Field(256, ge=2, description="HTTP: open connections at most (more are answered 503)")

    @model_validator(mode="after")
    def _check(self) -> McpConfig:
        # the refusal `recagent serve` gives (ServeConfig), in the same words
        if self.transport == "http" and not is_loopback(self.host) and not api_keys(self.api_key_env):
            raise ValueError(
                f"host {self.host} is not loopback: set API keys in ${self.api_key_env} "
                "(e.g. `export RECAGENT_API_KEYS=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')`)"
            )
        return self

    def keys(self) -> list[str]:
        """The configured API keys (empty: no authentication, allowed on loopback only)."""
        return api_keys(self.api_key_env)

    def trusted_hosts(self) -> list[str]:
        """The Host names served (as ``ServeConfig.trusted_hosts``: loopback names only without keys)."""
        if self.allowed_hosts is not None:
            return [_host_form(h) for h in self.allowed_hosts]
        if self.keys():
            return ["*"]
        return list(dict.fromkeys([*LOOPBACK_NAMES, _host_form(self.host)]))


def _host_form(host: str) -> str:
    """A host as a Host header carries it: lower-case, an IPv6 literal in brackets."""
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host.lower()
    except ValueError:
        return host.lower()


# -- the MCP server ------------------------------------------------------------------------------------------------


def mcp_tools(env: ToolEnv) -> list[types.Tool]:
    """The registry's tools as MCP tools: name, description and input schema from its OpenAI ``tools`` entries."""
    out = []
    for schema in build_registry(env).openai_schemas():
        fn = schema["function"]
        out.append(types.Tool(name=fn["name"], description=fn["description"], inputSchema=fn["parameters"]))
    return out


def call_result(outcome: ToolOutcome) -> types.CallToolResult:
    """A registry outcome as an MCP ``CallToolResult`` (a refused call is an ``isError`` result, never a protocol error)."""
    if outcome.ok:
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=outcome.content())],
            structuredContent=outcome.result,
            isError=False,
        )
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=outcome.error.message)],
        structuredContent=outcome.error.model_dump(exclude_none=True),
        isError=True,
    )


def build_server(env: ToolEnv, name: str = "recagent") -> Server:
    """A low-level MCP server whose every session calls the tools over its own ``env.session()``."""
    tools = mcp_tools(env)

    @asynccontextmanager
    async def per_session(_server: Server) -> AsyncIterator[Any]:
        # Server.run enters the lifespan once per connection (stdio) or per Mcp-Session-Id (stateful HTTP)
        yield build_registry(env.session())

    server = Server(
        name,
        version=__version__,
        instructions=(
            f"Recommender tools over the {env.dataset.name} dataset. Item and user ids come from tool results "
            "(search_items or get_item find an item). Pass save_as to a retrieval tool to keep its whole list as "
            "a named candidate set, then candidates=NAME to filter or rank it, or get_candidates to read it; "
            "sets last as long as this MCP session."
        ),
        lifespan=per_session,
    )

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return tools

    # the registry validates (validate_input=False), so a bad call gets the toolkit's message, not jsonschema's
    @server.call_tool(validate_input=False)
    async def call_tool(tool: str, arguments: dict[str, Any]) -> types.CallToolResult:
        registry = server.request_context.lifespan_context
        # tools are synchronous numpy/torch work: run them off the event loop, so other sessions are served meanwhile
        outcome = await anyio.to_thread.run_sync(registry.call, tool, arguments)
        return call_result(outcome)

    return server


async def run_stdio(server: Server, stdin: Any = None, stdout: Any = None) -> None:
    """Serve ``server`` over stdio until the client closes stdin (``stdin``, ``stdout``: anyio text files or None)."""
    async with stdio_server(stdin, stdout) as (read, write):
        await server.run(read, write, server.create_initialization_options())


# -- streamable HTTP -----------------------------------------------------------------------------------------------


class _Endpoint:
    """The session manager as the ASGI app of the MCP route."""

    def __init__(self, manager):
        self.manager = manager

    async def __call__(self, scope, receive, send):
        await self.manager.handle_request(scope, receive, send)


class BearerKeyCheck:
    """Answer 401 without a valid key (before any body is read); the key's owner id becomes the session owner.

    The SDK's session manager binds a session to the ``scope["user"]`` that opened it and answers 404 to
    any other, so one key cannot use another key's session (and its candidate sets).
    """

    def __init__(self, app, keys):
        self.app, self.keys = app, keys

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        authorization = dict(scope.get("headers") or []).get(b"authorization")
        owner = self.keys.check(presented_key(authorization.decode("latin-1") if authorization else None))
        if owner is None:
            body = error_body(KEY_MISSING, "authentication_error", code="invalid_api_key")
            return await send_error(send, 401, body, headers=[(b"www-authenticate", b'Bearer realm="recagent"')])
        scope["user"] = AuthenticatedUser(AccessToken(token="", client_id=owner, scopes=[]))  # never the key itself
        await self.app(scope, receive, send)


class OriginCheck:
    """Refuse a request from a web page (it carries ``Origin``) unless its origin is listed."""

    def __init__(self, app, allowed: list[str]):
        self.app, self.allowed = app, {o.rstrip("/").lower() for o in allowed}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        origin = dict(scope.get("headers") or []).get(b"origin")
        if origin is None or origin.decode("latin-1").rstrip("/").lower() in self.allowed:
            return await self.app(scope, receive, send)
        message = f"Origin {origin.decode('latin-1')!r} may not call this server (set allowed_origins to add it)"
        await send_error(send, 403, error_body(message, param="Origin", code="origin_not_allowed"))


class _SessionEndNoise(logging.Filter):
    """Drop the traceback the SDK logs when a session ends (DELETE, idle timeout) while its GET stream is open.

    Ending a session closes that stream's reader; the SDK's writer then logs ``ClosedResourceError`` as an
    error, though it is how every such session ends. Any other error of the writer is still logged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (record.msg == "Error in standalone SSE writer" and isinstance(exc, anyio.ClosedResourceError))


_SESSION_END_NOISE = _SessionEndNoise()


def create_http_app(config: McpConfig, env: ToolEnv) -> Starlette:
    """The ASGI app serving ``env``'s tools at ``/mcp`` (streamable HTTP, one candidate buffer per session)."""
    logging.getLogger("mcp.server.streamable_http").addFilter(_SESSION_END_NOISE)  # once: addFilter skips a repeat
    manager = StreamableHTTPSessionManager(
        build_server(env),
        session_idle_timeout=config.session_idle_s,
        max_request_body_size=config.max_body_bytes,
        max_sessions=config.max_sessions,
    )

    @asynccontextmanager
    async def lifespan(app):
        async with manager.run():
            yield

    app = Starlette(routes=[Route(MCP_PATH, endpoint=_Endpoint(manager))], lifespan=lifespan)
    # added innermost first: Host check -> Origin check -> key -> body limit -> the SDK
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes, timeout_s=config.body_timeout_s)
    app.add_middleware(BearerKeyCheck, keys=KeyRing(config.keys()))
    app.add_middleware(OriginCheck, allowed=config.allowed_origins)
    app.add_middleware(HostCheck, allowed_hosts=config.trusted_hosts())
    return app


def uvicorn_options(config: McpConfig) -> dict[str, Any]:
    """uvicorn's per-connection bounds, as ``recagent serve`` sets them (header deadline, keep-alive, connections)."""
    return {
        "http": head_deadline(config.header_timeout_s),
        "ws": "none",
        "timeout_keep_alive": config.keep_alive_s,
        "limit_concurrency": config.max_connections,
    }
