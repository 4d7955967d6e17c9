"""Two small ASGI middlewares: a request body limit (413) and per-route request timing for the metrics.

Hand-written because Starlette has no body-size limit and uvicorn has none either (only header
limits); buffering the body here is fine because bodies this server accepts are small.
"""

from __future__ import annotations

import json
import time

from recagent.serve.protocol import error_body


async def _send_json(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": data})


class BodyLimit:
    """Answer 413 to a body over ``max_bytes`` (declared or actually sent) before any route reads it."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = error_body(f"request body too large (limit {self.max_bytes} bytes)", code="body_too_large")
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and not declared.isdigit():
            return await _send_json(send, 400, error_body("malformed Content-Length header"))
        if declared is not None and int(declared) > self.max_bytes:
            return await _send_json(send, 413, too_big)
        body, more = b"", True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if len(body) > self.max_bytes:
                return await _send_json(send, 413, too_big)
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

        def route() -> str:  # the matched route's template (ids folded); unmatched paths share one key
            matched = scope.get("route")
            return f"{scope['method']} {getattr(matched, 'path', None) or '(no route)'}"

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
