"""``GET /metrics`` in Prometheus' text format: a server on loopback (EchoPolicy over the synthetic data's real
tools) is scraped before and after a few requests, one agent turn and some errors, and the text is read with
``prometheus_client``'s own parser. The JSON view stays the default for clients that do not ask for text."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
from prometheus_client.parser import text_string_to_metric_families

from recagent.agents import Agent, AgentConfig
from recagent.agents.policies.scripted import EchoPolicy
from recagent.serve.metrics import OTHER_TOOL, Metrics, prefers_exposition
from tests.serve_harness import serving

PROMETHEUS = {"Accept": "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"}  # as a Prometheus server asks
KEY = "key-metrics-0123456789abcdef"


def _scrape(http: httpx.Client) -> dict:
    r = http.get("/metrics", headers=PROMETHEUS)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def _value(families: dict, family: str, sample: str, **labels: str) -> float:
    """The sum of ``family``'s samples named ``sample`` whose labels include ``labels`` (0 if none yet)."""
    f = families.get(family)
    return sum(s.value for s in f.samples if s.name == sample and labels.items() <= s.labels.items()) if f else 0.0


def _agent(env, tmp_path) -> Agent:
    return Agent.from_config(AgentConfig(), policy=EchoPolicy(), env=env, db_path=tmp_path / "s.sqlite")


def test_prometheus_text_counts_requests_latency_turns_tool_calls_and_tokens(synthetic_env, tmp_path):
    agent = _agent(synthetic_env, tmp_path)
    with serving(agent, workers=2, max_queue=5) as url:
        http = httpx.Client(base_url=url, timeout=60)
        before = _scrape(http)
        for _ in range(3):
            assert http.get("/health").status_code == 200
        for i in range(2):  # two different ids, one route template
            assert http.get(f"/v1/sessions/srv-nope-{i}").status_code == 404
        assert http.get("/nowhere").status_code == 404
        assert http.post("/v1/sessions", json={"colour": "red"}).status_code == 400
        assert http.request("BREW", "/health").status_code == 405  # a made-up method is not a label of its own
        chat = {"model": "recagent", "messages": [{"role": "user", "content": "something popular"}]}
        assert http.post("/v1/chat/completions", json=chat).status_code == 200
        text = http.get("/metrics", headers=PROMETHEUS).text
        after = _scrape(http)
        as_json = http.get("/metrics")  # no Accept preference (httpx sends */*): the JSON view, as before
    agent.close()

    def delta(family: str, sample: str, **labels: str) -> float:
        return _value(after, family, sample, **labels) - _value(before, family, sample, **labels)

    requests = "recagent_http_requests", "recagent_http_requests_total"
    assert delta(*requests, method="GET", route="/health", status="200") == 3
    assert delta(*requests, method="GET", route="/v1/sessions/{session_id}", status="404") == 2
    assert delta(*requests, method="GET", route="(no route)", status="404") == 1
    assert delta(*requests, method="POST", route="/v1/sessions", status="400") == 1
    assert delta(*requests, method="OTHER", status="405") == 1
    assert delta(*requests, method="POST", route="/v1/chat/completions", status="200") == 1
    assert "srv-nope" not in text and "BREW" not in text and "/nowhere" not in text  # no raw paths or methods

    latency = "recagent_http_request_duration_seconds"
    assert delta(latency, latency + "_count", method="GET", route="/health") == 3
    assert delta(latency, latency + "_bucket", method="GET", route="/health", le="+Inf") == 3
    assert delta(latency, latency + "_count", method="GET", route="/v1/sessions/{session_id}") == 2
    assert delta(latency, latency + "_count", method="POST", route="/v1/chat/completions") == 1

    assert delta("recagent_turns", "recagent_turns_total", outcome="ok") == 1
    assert delta("recagent_tool_calls", "recagent_tool_calls_total", tool="popular_items", result="ok") == 1
    assert delta("recagent_tool_calls", "recagent_tool_calls_total") == 1
    assert delta("recagent_policy_calls", "recagent_policy_calls_total") == 2  # the call, then the answer
    assert delta("recagent_tokens", "recagent_tokens_total", kind="prompt") > 0
    assert delta("recagent_tokens", "recagent_tokens_total", kind="completion") > 0

    gauges = {
        name: after[name].samples[0].value for name in after if after[name].type == "gauge" and after[name].samples
    }
    assert gauges["recagent_turns_waiting"] == 0 and gauges["recagent_turns_running"] == 0  # the turn has finished
    assert (gauges["recagent_workers"], gauges["recagent_queue_capacity"]) == (2, 5)
    assert gauges["recagent_turns_running_peak"] == 1

    # the JSON view has the same counts
    assert as_json.headers["content-type"].startswith("application/json") and as_json.headers["vary"] == "Accept"
    m = as_json.json()
    assert m["routes"]["GET /health"]["by_status"] == {"200": 3}
    assert m["routes"]["GET /v1/sessions/{session_id}"]["by_status"] == {"404": 2}
    assert (m["turns"], m["tool_calls"], m["tokens"]["llm_calls"]) == ({"ok": 1}, {"valid": 1}, 2)
    assert (m["waiting"], m["workers"], m["max_queue"], m["errors_5xx"]) == (0, 2, 5, 0)


def test_prometheus_scrape_needs_the_key_and_can_have_openmetrics(synthetic_env, tmp_path, monkeypatch):
    monkeypatch.setenv("RECAGENT_API_KEYS", KEY)
    agent = _agent(synthetic_env, tmp_path)
    with serving(agent) as url:
        r = httpx.get(f"{url}/metrics", headers=PROMETHEUS)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
        assert "recagent_turns_waiting" in _scrape(http)
        om = http.get("/metrics", headers={"Accept": "application/openmetrics-text;version=1.0.0,*/*;q=0.1"})
        assert om.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
        assert om.text.endswith("# EOF\n") and "recagent_http_requests_total{" in om.text
    agent.close()


def test_accept_header_chooses_the_view():
    prometheus_v3 = (
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
        "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
    )
    for accept in (prometheus_v3, PROMETHEUS["Accept"], "text/plain", "application/openmetrics-text"):
        assert prefers_exposition(accept), accept
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    for accept in (None, "", "*/*", "application/json", browser, "text/plain;q=0, */*", "application/json, text/plain"):
        assert not prefers_exposition(accept), accept


def test_tool_names_the_server_does_not_offer_share_one_label():
    m = Metrics()
    m.tool_names = frozenset({"popular_items"})

    def step(tool: str | None, valid: bool) -> SimpleNamespace:  # what Metrics reads of a StepRecord
        return SimpleNamespace(kind="tool_call" if valid else "invalid_call", tool=tool, valid=valid)

    m.turn("ok", [step("popular_items", True), *(step(f"made_up_{i}", False) for i in range(50)), step(None, False)])
    families = {f.name: f for f in text_string_to_metric_families(m.exposition()[0].decode())}
    calls = {(s.labels["tool"], s.labels["result"]): s.value for s in families["recagent_tool_calls"].samples}
    assert calls == {("popular_items", "ok"): 1, (OTHER_TOOL, "error"): 51}
    assert m.snapshot()["tool_calls"] == {"valid": 1, "invalid": 51}
