"""The ASGI middlewares in front of the routes, outermost first: Host check, (CORS,) request timing, API key, body limit.

Hand-written where Starlette and uvicorn have nothing that fits: neither limits a body's size or the
time it takes to arrive (uvicorn limits only the headers), and the key is checked here, before any
body is read, so a client without a key cannot hold a connection open by sending its body slowly.
Buffering the body is fine because bodies this server accepts are small. Each answers in the API's
JSON error format.
"""

from __future__ import annotations

import asyncio
import re
import time

from recagent.serve.auth import KeyRing, presented_key
from recagent.serve.metrics import method_label
from recagent.serve.protocol import error_body, json_bytes

KEY_MISSING = "missing or wrong API key (send `Authorization: Bearer KEY`)"
BASIC_CHALLENGE = (b"www-authenticate", b'Basic realm="recagent", charset="UTF-8"')  # the browser then asks for the key
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::[0-9]*)?")  # name or [IPv6], then an optional port


async def send_error(
    send, status: int, body: dict, headers: list[tuple[bytes, bytes]] | None = None, close: bool = False
) -> None:
    """Send a JSON error response (``close``: end the connection after it, for a client that is still sending)."""
    data = json_bytes(body)
    extra = [*(headers or []), *([(b"connection", b"close")] if close else [])]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *extra],
        }
    )
    await send({"type": "http.response.body", "body": data})


def host_name(header: str | None) -> str | None:
    """The name in a Host header, lower-cased, without its port (an IPv6 literal keeps its brackets); None if malformed."""
    m = _HOST.fullmatch(header or "")
    return m.group(1).lower() if m else None


class HostCheck:
    """Serve only requests whose Host header names an allowed host (DNS rebinding: a page whose name resolves to us).

    Patterns as in Starlette's TrustedHostMiddleware: a name, ``*.example.org`` (any subdomain) or ``*``
    (any host). Not that middleware itself because its refusal is a plain-text "Invalid host header",
    which names neither the host nor the setting (``allowed_hosts``) that would let it in.
    """

    def __init__(self, app, allowed_hosts: list[str]):
        self.app, self.allowed = app, [h.lower() for h in allowed_hosts]

    def allows(self, name: str | None) -> bool:
        """Whether a Host name (from :func:`host_name`) is served."""
        if "*" in self.allowed:
            return True
        return name is not None and any(
            name == p or (p.startswith("*.") and name.endswith(p[1:])) for p in self.allowed
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        raw = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        if self.allows(host_name(raw)):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":  # refused before the handshake completes
            return await send({"type": "websocket.close", "code": 1008})
        message = f"Host {raw!r} is not served here (served: {', '.join(self.allowed)}; set allowed_hosts to add names)"
        await send_error(send, 400, error_body(message, param="Host", code="host_not_allowed"))


class KeyCheck:
    """Answer 401 to a request without a valid key before anything reads its body; the owner id goes to ``scope["state"]``."""

    def __init__(self, app, keys: KeyRing):
        self.app, self.keys = app, keys

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        authorization = dict(scope.get("headers") or []).get(b"authorization")
        owner = self.keys.check(presented_key(authorization.decode("latin-1") if authorization else None))
        if owner is None:
            return await send_error(
                send,
                401,
                error_body(KEY_MISSING, "authentication_error", code="invalid_api_key"),
                headers=[BASIC_CHALLENGE],
            )
        scope.setdefault("state", {})["owner"] = owner  # read by the routes' `authenticate` dependency
        await self.app(scope, receive, send)


class BodyLimit:
    """Answer 413 to a body over ``max_bytes`` (declared or actually sent), 408 to one still arriving after ``timeout_s``.

    Both before any route reads the body. The deadline counts from the end of the headers (uvicorn's
    part, see :mod:`recagent.serve.transport`) to the body's last byte, however the bytes trickle in.
    """

    def __init__(self, app, max_bytes: int, timeout_s: float):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = error_body(f"request body too large (limit {self.max_bytes} bytes)", code="body_too_large")
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and not declared.isdigit():
            return await send_error(send, 400, error_body("malformed Content-Length header"))
        if declared is not None and int(declared) > self.max_bytes:
            return await send_error(send, 413, too_big)
        body, more = b"", True
        try:
            async with asyncio.timeout(self.timeout_s):
                while more:
                    msg = await receive()
                    if msg["type"] == "http.disconnect":
                        return
                    body += msg.get("body", b"")
                    more = msg.get("more_body", False)
                    if len(body) > self.max_bytes:
                        return await send_error(send, 413, too_big)
        except TimeoutError:  # a slow (or stalled) client: it has held the connection long enough
            slow = f"request body not received within {self.timeout_s:g} s ({len(body)} bytes arrived)"
            return await send_error(send, 408, error_body(slow, code="body_timeout"), close=True)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # then wait for the client to leave, as Starlette expects

        await self.app(scope, replay, send)


class RequestTimer:
    """Count every request by route template and status, and time it until its last byte is sent."""

    def __init__(self, app, metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), 500

        def route() -> str:  # the matched route's template (ids folded); unmatched paths and odd methods share a key
            matched = scope.get("route")
            return f"{method_label(scope['method'])} {getattr(matched, 'path', None) or '(no route)'}"

        async def timed_send(msg):
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            await send(msg)
            if msg["type"] == "http.response.body" and not msg.get("more_body", False):
                self.metrics.request(route(), status, time.perf_counter() - t0)

        try:
            await self.app(scope, receive, timed_send)
        except BaseException:
            self.metrics.request(route(), 500, time.perf_counter() - t0)
            raise
