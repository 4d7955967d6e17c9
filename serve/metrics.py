"""Counters for ``GET /metrics``: requests by route and status, latency, turns, tool calls, tokens, the queue.

Two views of the same counts. The JSON view (:meth:`Metrics.snapshot`) has latency percentiles over
the last ``window`` requests per route; the Prometheus view (:meth:`Metrics.exposition`, through
``prometheus_client``) has counters, latency histograms and gauges in the app's own
:class:`~prometheus_client.CollectorRegistry`, never the process-wide default one, so several apps in
one process (tests) count apart. Which one ``GET /metrics`` answers is chosen by the Accept header
(:func:`prefers_exposition`).

``errors_5xx`` counts server failures; ``shed_503`` counts turns refused because the queue was full,
the documented overload answer, so that an alert on errors does not fire on load shedding. In
Prometheus both are the ``status`` label of ``recagent_http_requests_total``.

Labels stay bounded whatever clients send: routes are templates (``/v1/sessions/{session_id}``,
unmatched paths are ``(no route)``), a method outside the standard ones is ``OTHER``, and a tool
name the server does not offer (a model may call anything) is ``(other)``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import prometheus_client as prom
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"
OTHER_TOOL = "(other)"
# seconds; an agent turn with a local model on CPU can take minutes, so the buckets reach 5 minutes
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TOKEN_KINDS = {"input_tokens": "prompt", "output_tokens": "completion"}  # a turn's usage keys -> the `kind` label
# the queue's live numbers (JSON key -> Prometheus gauge and its help)
LIVE_GAUGES = {
    "running": ("recagent_turns_running", "Agent turns running now."),
    "waiting": ("recagent_turns_waiting", "Agent turns admitted and waiting for a worker (the queue depth)."),
    "peak_running": ("recagent_turns_running_peak", "Most agent turns that ran at once since start."),
    "workers": ("recagent_workers", "Agent turns that may run at once (`workers`)."),
    "max_queue": ("recagent_queue_capacity", "Agent turns that may wait; one more is answered 503 (`max_queue`)."),
}
EXPOSITION_TYPES = ("text/plain", "text/*", "application/openmetrics-text")
JSON_TYPES = ("application/json", "application/*", "*/*")


def method_label(method: str) -> str:
    """An HTTP method as counted: the standard ones as they are, any other token ``OTHER``."""
    return method if method in HTTP_METHODS else OTHER_METHOD


def prefers_exposition(accept: str | None) -> bool:
    """Whether an Accept header prefers Prometheus' text formats to JSON.

    Prometheus asks for OpenMetrics or ``text/plain`` first and ``*/*`` last; browsers, curl, httpx
    and ``fetch`` send ``*/*`` (or name neither), which keeps the JSON view.
    """
    text_q = json_q = 0.0
    for part in (accept or "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            key, _, value = p.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media in EXPOSITION_TYPES:
            text_q = max(text_q, q)
        elif media in JSON_TYPES:
            json_q = max(json_q, q)
    return text_q > json_q


class _LiveGauges:
    """A collector that reads the queue's numbers when scraped."""

    def __init__(self, live: Callable[[], dict[str, int]]):
        self.live = live

    def collect(self) -> Iterable[GaugeMetricFamily]:
        values = self.live()
        for key, (name, help_text) in LIVE_GAUGES.items():
            if key in values:
                yield GaugeMetricFamily(name, help_text, value=values[key])


class Metrics:
    """In-process counters (thread-safe); latencies keep the last ``window`` requests per route.

    ``live`` returns the queue's numbers now (keys of :data:`LIVE_GAUGES`; empty before the server
    starts); both views read it when asked. ``tool_names`` are the tools labelled by name.
    """

    def __init__(self, window: int = 1000, live: Callable[[], dict[str, int]] | None = None):
        self._lock = threading.Lock()
        self.started = time.time()
        self.live = live or dict
        self.tool_names: frozenset[str] = frozenset()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.latency: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self.turns = Counter()  # ok / failed
        self.tool_calls = Counter()  # valid / invalid
        self.tokens = Counter()  # llm_calls, input_tokens, output_tokens

        self.registry = prom.CollectorRegistry()
        reg = self.registry
        self._http_requests = prom.Counter(
            "recagent_http_requests",
            "HTTP requests by method, route template and status (503: load shedding).",
            ["method", "route", "status"],
            registry=reg,
        )
        self._http_latency = prom.Histogram(
            "recagent_http_request_duration_seconds",
            "HTTP request time until the response's last byte (a stream's whole turn), by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self._turns = prom.Counter("recagent_turns", "Agent turns by outcome (ok, failed).", ["outcome"], registry=reg)
        self._tool_calls = prom.Counter(
            "recagent_tool_calls",
            "Tool calls of agent turns by tool (unoffered names: (other)) and result (ok, error).",
            ["tool", "result"],
            registry=reg,
        )
        self._tokens = prom.Counter(
            "recagent_tokens", "Policy tokens of agent turns by kind (prompt, completion).", ["kind"], registry=reg
        )
        self._policy_calls = prom.Counter("recagent_policy_calls", "Policy (LLM) calls of agent turns.", registry=reg)
        prom.Gauge("recagent_start_time_seconds", "When the server started (Unix time).", registry=reg).set(
            self.started
        )
        reg.register(_LiveGauges(lambda: self.live()))

    def request(self, route: str, status: int, seconds: float) -> None:
        """Count one finished HTTP request; ``route`` is ``"METHOD /template"``."""
        method, _, path = route.partition(" ")
        with self._lock:
            self.requests[(route, status)] += 1
            self.latency[route].append(seconds)
        self._http_requests.labels(method, path, str(status)).inc()
        self._http_latency.labels(method, path).observe(seconds)

    def turn(self, outcome: str, trace: list | None = None, usage: dict | None = None) -> None:
        """Count one agent turn and its steps."""
        with self._lock:
            self.turns[outcome] += 1
            self._turns.labels(outcome).inc()
            for s in trace or []:
                if s.kind in ("tool_call", "invalid_call"):
                    self.tool_calls["valid" if s.valid else "invalid"] += 1
                    tool = s.tool if s.tool in self.tool_names else OTHER_TOOL
                    self._tool_calls.labels(tool, "ok" if s.valid else "error").inc()
            for k, v in (usage or {}).items():
                self.tokens[k] += v
                if k in TOKEN_KINDS:
                    self._tokens.labels(TOKEN_KINDS[k]).inc(v)
                elif k == "llm_calls":
                    self._policy_calls.inc(v)

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The Prometheus view and its content type: OpenMetrics if ``accept`` asks for it, else text 0.0.4."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready view, with the queue's numbers (``live``) at the end."""
        with self._lock:
            routes: dict[str, Any] = {}
            for (route, status), n in sorted(self.requests.items()):
                r = routes.setdefault(route, {"count": 0, "by_status": {}})
                r["count"] += n
                r["by_status"][str(status)] = n
            for route, lat in self.latency.items():
                if lat:
                    ms = np.asarray(lat) * 1000
                    routes[route].update(
                        p50_ms=round(float(np.percentile(ms, 50)), 1), p95_ms=round(float(np.percentile(ms, 95)), 1)
                    )
            # a 503 is load shedding (the queue was full; the client retries), not a failure: counted on its own
            shed = sum(n for (_, status), n in self.requests.items() if status == 503)
            errors = sum(n for (_, status), n in self.requests.items() if status >= 500 and status != 503)
            return {
                "uptime_s": round(time.time() - self.started, 1),
                "requests": sum(self.requests.values()),
                "errors_5xx": errors,
                "shed_503": shed,
                "routes": routes,
                "turns": dict(self.turns),
                "tool_calls": dict(self.tool_calls),
                "tokens": dict(self.tokens),
                **self.live(),
            }
