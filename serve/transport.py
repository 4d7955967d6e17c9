"""What uvicorn enforces per connection for ``recagent serve``: a deadline for request headers, and its own limits.

uvicorn closes a keep-alive connection that stays idle (``timeout_keep_alive``) and caps the size of
the headers, but gives a client that is still sending its request line and headers unlimited time:
150 connections that sent one byte every 5 s stayed open for ever. :func:`head_deadline` adds that
deadline to uvicorn's h11 protocol; the body's deadline is :class:`~recagent.serve.limits.BodyLimit`'s.
h11 is chosen explicitly (not httptools, even where installed) because the deadline is written for it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from recagent.serve.config import ServeConfig
from recagent.serve.protocol import error_body, json_bytes


def _timeout_response(seconds: float) -> bytes:
    """A raw 408 for a client whose headers did not arrive in time (no request exists yet to answer through h11)."""
    body = json_bytes(error_body(f"request headers not received within {seconds:g} s", code="header_timeout"))
    head = f"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    return head.encode() + body


class _HeadDeadlineH11(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose next request's headers are not complete within ``head_timeout_s``.

    The clock starts when the connection opens and again when a response ends; data arriving does not
    reset it (a slow client sends data), only complete headers stop it. While a request runs there is
    no deadline here: a long agent turn is not a slow client.
    """

    head_timeout_s: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:  # part of a request head arrived: say why
            self.transport.write(_timeout_response(self.head_timeout_s))
        self.transport.close()

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers arrived; its body has BodyLimit's deadline
            self._disarm()

    def on_response_complete(self) -> None:
        self._arm()  # before the base class looks at pipelined requests (whose complete headers disarm it again)
        super().on_response_complete()


def head_deadline(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a ``seconds`` deadline for each request's headers (for ``uvicorn.Config(http=...)``)."""
    return type("HeadDeadlineH11", (_HeadDeadlineH11,), {"head_timeout_s": seconds})


def uvicorn_options(config: ServeConfig) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.run``/``uvicorn.Config`` that bound what one client can hold.

    ``limit_concurrency`` counts open connections, so slow ones take places until their deadline closes
    them; the 503 uvicorn answers beyond it is its own plain-text one and never reaches ``/metrics``.
    """
    return {
        "http": head_deadline(config.header_timeout_s),
        "ws": "none",  # no websocket routes: refuse upgrades
        "timeout_keep_alive": config.keep_alive_s,
        "limit_concurrency": config.max_connections,
        "h11_max_incomplete_event_size": config.max_header_bytes,
    }
