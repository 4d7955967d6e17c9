"""The ASGI app: OpenAI-compatible chat completions, sessions, users, health, metrics and the chat page.

``create_app(config)`` builds the shared :class:`~recagent.serve.server.Server`, wraps the routers
(``routes_*``) in the middleware, and installs the error handlers; the agent is loaded when the app
starts, not at import.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from recagent.serve import routes_chat, routes_page, routes_sessions, routes_status, routes_users
from recagent.serve.config import ServeConfig
from recagent.serve.deps import PlainRoute, authenticate
from recagent.serve.error_handlers import install_error_handlers
from recagent.serve.limits import BodyLimit, HostCheck, KeyCheck, RequestTimer
from recagent.serve.protocol import StrictJSONResponse
from recagent.serve.server import Server


def create_app(config: ServeConfig | None = None, agent=None) -> FastAPI:
    """The ASGI app for ``config`` (pass ``agent`` to serve an already built one, e.g. in tests)."""
    config = config or ServeConfig()
    server = Server(config, agent)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(server.start)
        yield
        await run_in_threadpool(server.stop)

    app = FastAPI(
        title="recagent",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(authenticate)],
        default_response_class=StrictJSONResponse,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.router.route_class = PlainRoute
    app.state.server = server
    # added innermost first: Host check -> CORS -> timing -> key -> body, so no body is read without a key
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes, timeout_s=config.body_timeout_s)
    app.add_middleware(KeyCheck, keys=server.keys)
    app.add_middleware(RequestTimer, metrics=server.metrics)
    if config.cors_origins:  # outside the key check: it answers browsers' preflight requests, which carry no API key
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(HostCheck, allowed_hosts=config.trusted_hosts())
    install_error_handlers(app)
    for routes in (routes_page, routes_status, routes_chat, routes_sessions, routes_users):
        app.include_router(routes.router)
    return app
