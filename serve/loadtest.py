"""A bounded load loop against a running server: N sessions, each sending its turns one after another.

Every message carries a code unique to its session and turn, so the loop can check that no answer
ever contains another session's code (isolation), whatever the policy. Used by the serving tests
and by ``benchmarks/serve_load.py``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import httpx
import numpy as np

CODE = re.compile(r"code-[0-9a-f]{6}-\d+-\d+")


@dataclass
class TurnRecord:
    """One request of the loop: who sent it, what came back, how long it took."""

    session: int
    turn: int
    status: int
    seconds: float
    streamed: bool
    answer: str = ""
    own_codes: list[str] = field(default_factory=list)  # codes of this session the answer quotes
    foreign_codes: list[str] = field(default_factory=list)  # codes of other sessions the answer quotes (must be empty)
    error: str = ""


def _turn(http: httpx.Client, model: str, sid: str, text: str, stream: bool) -> tuple[int, str, str]:
    body = {"model": model, "session_id": sid, "stream": stream, "messages": [{"role": "user", "content": text}]}
    if not stream:
        r = http.post("/v1/chat/completions", json=body)
        if r.status_code != 200:
            return r.status_code, "", r.text[:300]
        return 200, r.json()["choices"][0]["message"]["content"], ""
    answer = ""
    with http.stream("POST", "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            return r.status_code, "", r.read().decode()[:300]
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            c = json.loads(line[6:])
            if "error" in c:
                return 500, answer, c["error"]["message"]
            if (c.get("recagent") or {}).get("revision"):
                answer = ""
                continue
            for ch in c.get("choices", []):
                answer += ch["delta"].get("content") or ""
    return 200, answer, ""


def run_load(
    base_url: str,
    sessions: int = 20,
    turns: int = 3,
    model: str = "recagent",
    api_key: str | None = None,
    stream_every: int = 2,
    user_ids: list[str] | None = None,
    timeout: float = 600.0,
    retry_503: bool = True,
) -> list[TurnRecord]:
    """Run ``sessions`` conversations of ``turns`` messages at once; every ``stream_every``-th session streams."""
    run = uuid.uuid4().hex[:6]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def conversation(s: int) -> list[TurnRecord]:
        out = []
        with httpx.Client(base_url=base_url, headers=headers, timeout=timeout) as http:
            body = {"user_id": user_ids[s % len(user_ids)]} if user_ids else {}
            sid = http.post("/v1/sessions", json=body).raise_for_status().json()["id"]
            stream = stream_every > 0 and s % stream_every == 0
            for t in range(turns):
                text = f"code-{run}-{s}-{t}: something good to watch, please"
                t0 = time.perf_counter()
                status, answer, error = _turn(http, model, sid, text, stream)
                while status == 503 and retry_503:  # the documented overload answer: back off and retry
                    out.append(TurnRecord(s, t, status, time.perf_counter() - t0, stream, error=error))
                    time.sleep(0.5)
                    t0 = time.perf_counter()
                    status, answer, error = _turn(http, model, sid, text, stream)
                codes = CODE.findall(answer)
                own = [c for c in codes if c.startswith(f"code-{run}-{s}-")]
                out.append(
                    TurnRecord(
                        s,
                        t,
                        status,
                        time.perf_counter() - t0,
                        stream,
                        answer,
                        own,
                        [c for c in codes if c not in own],
                        error,
                    )
                )
        return out

    with ThreadPoolExecutor(sessions) as pool:
        return [r for rs in pool.map(conversation, range(sessions)) for r in rs]


def summarise(records: list[TurnRecord]) -> dict:
    """Counts by status, isolation violations, and latency percentiles of the answered turns."""
    ok = [r.seconds for r in records if r.status == 200]
    lat = np.asarray(ok) * 1000 if ok else np.zeros(1)
    statuses: dict[str, int] = {}
    for r in records:
        statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
    return {
        "requests": len(records),
        "answered": len(ok),
        "by_status": statuses,
        "foreign_code_answers": sum(bool(r.foreign_codes) for r in records),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p95_ms": round(float(np.percentile(lat, 95)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "max_ms": round(float(lat.max()), 1),
    }


def records_json(records: list[TurnRecord]) -> list[dict]:
    """Records as plain dicts."""
    return [asdict(r) for r in records]
