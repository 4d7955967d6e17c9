"""Many sessions at once over loopback: no answer carries another session's history, no 5xx but the
documented 503, a local policy's calls never overlap while turns (and their tool calls) do; with sessions
in SQLite and in PostgreSQL (``agent.sessions.backend``)."""

from __future__ import annotations

import httpx
import pytest

from recagent.agents.session_db import SessionsConfig
from recagent.serve.loadtest import run_load, summarise
from tests.serve_harness import echo_agent, serving


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_twenty_concurrent_sessions_stay_isolated(backend, ml100k_env, tmp_path, request, monkeypatch):
    if backend == "postgres":  # a fresh database on the test PostgreSQL server (skipped without one, see conftest)
        monkeypatch.setenv("RECAGENT_POSTGRES_URL", request.getfixturevalue("postgres_url"))
        agent = echo_agent(ml100k_env, None, SessionsConfig(backend="postgres"), think_s=0.02)
    else:
        agent = echo_agent(ml100k_env, tmp_path / "s.sqlite", think_s=0.02)
    with serving(agent, workers=4, max_queue=4, serialize_policy=True) as url:
        records = run_load(url, sessions=20, turns=3, user_ids=["1", "2", "3", "4", "5"], stream_every=2)
        metrics = httpx.get(f"{url}/metrics").json()
    summary = summarise(records)
    assert {r.status for r in records} <= {
        200,
        503,
    }  # the queue (4 + 4) is smaller than the load (20): 503s are expected
    answered = [r for r in records if r.status == 200]
    assert len(answered) == 60 and summary["foreign_code_answers"] == 0
    for r in answered:  # the policy saw exactly this session's messages so far, in order
        assert r.own_codes == [c for c in r.own_codes if c.split("-")[-1] <= str(r.turn)]
        assert [int(c.split("-")[-1]) for c in r.own_codes] == list(range(r.turn + 1)), r.answer
    assert {r.streamed for r in answered} == {True, False}
    assert agent.context.policy.max_active == 1  # serialised model calls ...
    assert metrics["peak_running"] > 1  # ... while turns ran side by side
    assert metrics["turns"]["ok"] == 60 and metrics["tool_calls"] == {"valid": 60}
    assert metrics["errors_5xx"] == 0 and metrics["shed_503"] == summary["by_status"].get(
        "503", 0
    )  # shedding is not an error
    agent.close()
