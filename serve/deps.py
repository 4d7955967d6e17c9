"""What the routes depend on: the shared :class:`~recagent.serve.server.Server`, the caller's owner id, and the router.

Routes take ``server: ServerDep`` and ``owner: Owner`` as FastAPI dependencies instead of closing over
the app's handles; every router comes from :func:`api_router`, so each route writes its dict result as
it is (:class:`PlainRoute`) through :class:`~recagent.serve.protocol.StrictJSONResponse`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute

from recagent.serve.auth import presented_key
from recagent.serve.limits import KEY_MISSING
from recagent.serve.protocol import RequestError, StrictJSONResponse
from recagent.serve.server import Server


def get_server(request: Request) -> Server:
    """The app's shared state (set by ``create_app``)."""
    return request.app.state.server


def authenticate(request: Request) -> str:
    """Dependency of every route: the caller's owner id, which KeyCheck found before the body was read (else 401)."""
    owner = getattr(request.state, "owner", None)
    if owner is None:  # not behind KeyCheck: check here
        owner = get_server(request).keys.check(presented_key(request.headers.get("authorization")))
    if owner is None:
        raise RequestError(KEY_MISSING, status=401, code="invalid_api_key")
    request.state.owner = owner
    return owner


ServerDep = Annotated[Server, Depends(get_server)]
Owner = Annotated[str, Depends(authenticate)]


class PlainRoute(APIRoute):
    """A route whose dict result StrictJSONResponse writes as it is.

    Without this, FastAPI would pass a route annotated ``-> dict`` through pydantic's JSON mode, which
    turns NaN and infinities into null without a word (a trace's ``{"k": inf}`` read as ``{"k": null}``).
    """

    def __init__(self, path: str, endpoint, **kwargs: Any):
        kwargs["response_model"] = None
        super().__init__(path, endpoint, **kwargs)


def api_router() -> APIRouter:
    """A router of plain routes answering with StrictJSONResponse."""
    return APIRouter(route_class=PlainRoute, default_response_class=StrictJSONResponse)
