"""Counters for ``GET /metrics``: requests by route and status, latency percentiles, turns, tool calls, errors.

``errors_5xx`` counts server failures; ``shed_503`` counts turns refused because the queue was full,
the documented overload answer, so that an alert on errors does not fire on load shedding.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict, deque
from typing import Any

import numpy as np


class Metrics:
    """In-process counters (thread-safe); latencies keep the last ``window`` requests per route."""

    def __init__(self, window: int = 1000):
        self._lock = threading.Lock()
        self.started = time.time()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.latency: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self.turns = Counter()  # ok / failed / rejected_busy / rejected_full
        self.tool_calls = Counter()  # valid / invalid
        self.tokens = Counter()

    def request(self, route: str, status: int, seconds: float) -> None:
        """Count one finished HTTP request."""
        with self._lock:
            self.requests[(route, status)] += 1
            self.latency[route].append(seconds)

    def turn(self, outcome: str, trace: list | None = None, usage: dict | None = None) -> None:
        """Count one agent turn and its steps."""
        with self._lock:
            self.turns[outcome] += 1
            for s in trace or []:
                if s.kind in ("tool_call", "invalid_call"):
                    self.tool_calls["valid" if s.valid else "invalid"] += 1
            for k, v in (usage or {}).items():
                self.tokens[k] += v

    def snapshot(self, **live: Any) -> dict[str, Any]:
        """JSON-ready view; ``live`` adds gauges such as the queue depth."""
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
                **live,
            }
