"""`recagent serve` over loopback with the official `openai` client and plain HTTP: the protocol, sessions,
API keys, admission limits and bad input. The agent runs the real tools on ML-100K; its policy is the
deterministic EchoPolicy, which quotes every user message it was shown, so a test can see exactly which
conversation reached it."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest

from recagent.errors import ConfigError
from recagent.serve.config import ServeConfig
from tests.serve_harness import echo_agent, serving

KEY_A, KEY_B = "key-a-0123456789abcdef", "key-b-0123456789abcdef"


@pytest.fixture()
def agent(ml100k_env, tmp_path):
    a = echo_agent(ml100k_env, tmp_path / "sessions.sqlite")
    yield a
    a.close()


def _client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


def _tool_ids(trace: list[dict]) -> set[str]:
    return {i for s in trace if s["kind"] == "tool_call" and s["valid"] for i in s["result_item_ids"]}


def test_openai_client_non_streaming_answer_carries_items_and_trace(agent, ml100k_env):
    catalog = ml100k_env.catalog
    with serving(agent) as url:
        client = _client(url)
        assert [m.id for m in client.models.list().data] == ["recagent"]
        r = client.chat.completions.create(
            model="recagent", messages=[{"role": "user", "content": "a funny film"}], extra_body={"user_id": "42"}
        )
    ext = r.model_extra["recagent"]
    answer = r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop" and answer.startswith("You said: a funny film.")
    assert [s["tool"] for s in ext["trace"] if s["kind"] == "tool_call"] == ["retrieve_for_user"]
    assert ext["trace"][0]["arguments"] == {"user_id": "42", "k": 5}
    # every recommended id came from a tool result, is cited in the answer, and its card is the catalog's
    assert ext["recommended"] and set(ext["recommended"]) <= _tool_ids(ext["trace"])
    for card in ext["items"]:
        i = catalog.index_of[card["item_id"]]
        assert (card["title"], card["year"], card["genres"]) == (
            catalog.titles[i],
            int(catalog.years[i]),
            list(catalog.genres[i]),
        )
        assert f"[{card['item_id']}]" in answer
    seen = {catalog.ids[i] for i in ml100k_env.history(ml100k_env.dataset.users.index_of["42"])}
    assert not set(ext["recommended"]) & seen  # retrieve_for_user excludes what user 42 has seen
    assert r.usage.prompt_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert ext["session_id"] is None and not list(agent.graph.checkpointer.list(None))  # a stateless turn is not kept


def test_openai_client_streaming_sends_text_steps_and_items(agent):
    history = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": "Hi! What would you like?"},
        {"role": "user", "content": "a thriller"},
    ]
    with serving(agent) as url:
        client = _client(url)
        chunks = list(
            client.chat.completions.create(
                model="recagent", messages=history, stream=True, stream_options={"include_usage": True}
            )
        )
        plain = client.chat.completions.create(model="recagent", messages=history)
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    steps = [c.model_extra["recagent"]["step"] for c in chunks if "step" in (c.model_extra.get("recagent") or {})]
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(texts) > 5  # streamed word by word, not as one block
    assert not any("revision" in (c.model_extra.get("recagent") or {}) for c in chunks)
    assert "".join(texts) == plain.choices[0].message.content  # same answer as non-streaming
    # a stateless request carries its history: the policy saw both user messages, and not the system message
    assert "".join(texts).startswith("You said: hello there | a thriller.")
    assert [s["kind"] for s in steps] == ["tool_call", "answer"] and steps[0]["tool"] == "popular_items"
    (last,) = final
    ext = last.model_extra["recagent"]
    assert ext["recommended"] == steps[1]["result_item_ids"] and len(ext["items"]) == 3
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0 and not chunks[-1].choices


def test_session_api_keeps_history_and_deletes(agent):
    with serving(agent) as url:
        http, client = httpx.Client(base_url=url, timeout=60), _client(url)
        s = http.post("/v1/sessions", json={"user_id": "7"}).json()
        assert s["user_id"] == "7" and s["turns"] == 0 and s["id"].startswith("srv-")
        for text in ("something for the weekend", "older, please"):
            r = client.chat.completions.create(
                model="recagent", messages=[{"role": "user", "content": text}], extra_body={"session_id": s["id"]}
            )
        # the second turn saw the first one: the session's history is on the server
        assert r.choices[0].message.content.startswith("You said: something for the weekend | older, please.")
        assert r.model_extra["recagent"]["session_id"] == s["id"]
        got = http.get(f"/v1/sessions/{s['id']}").json()
        assert got["turns"] == 2 and got["title"] == "something for the weekend"
        assert [m["user"] for m in got["messages"]] == ["something for the weekend", "older, please"]
        assert got["messages"][1]["answer"] == r.choices[0].message.content
        assert got["messages"][1]["recommended"] == r.model_extra["recagent"]["recommended"]
        assert [st["kind"] for st in got["messages"][0]["trace"]] == ["tool_call", "answer"]
        assert [x["id"] for x in http.get("/v1/sessions").json()["data"]] == [s["id"]]
        # loading another dataset user changes who the tools act for
        assert http.patch(f"/v1/sessions/{s['id']}", json={"user_id": "8"}).json()["user_id"] == "8"
        assert agent.state(s["id"])["user"]["user_id"] == "8"
        assert http.delete(f"/v1/sessions/{s['id']}").status_code == 204
        assert http.get(f"/v1/sessions/{s['id']}").status_code == 404
        assert http.get("/v1/sessions").json()["data"] == []
    assert agent.state(s["id"]) == {}  # the conversation is gone from the checkpointer too


def test_sessions_belong_to_their_key(agent, monkeypatch):
    monkeypatch.setenv("RECAGENT_API_KEYS", f"{KEY_A},{KEY_B}")
    with serving(agent) as url:
        a = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=60)
        b = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY_B}"}, timeout=60)
        sid = a.post("/v1/sessions", json={}).json()["id"]
        secret = "my secret word is pelican"
        _client(url, KEY_A).chat.completions.create(
            model="recagent", messages=[{"role": "user", "content": secret}], extra_body={"session_id": sid}
        )
        assert b.get("/v1/sessions").json()["data"] == []
        for r in (
            b.get(f"/v1/sessions/{sid}"),
            b.delete(f"/v1/sessions/{sid}"),
            b.patch(f"/v1/sessions/{sid}", json={"title": "x"}),
            b.post(
                "/v1/chat/completions",
                json={
                    "model": "recagent",
                    "session_id": sid,
                    "messages": [{"role": "user", "content": "what did I say?"}],
                },
            ),
        ):
            assert r.status_code == 404 and secret not in r.text
        assert secret in a.get(f"/v1/sessions/{sid}").text
        # without a key, or with a wrong one, every route answers 401 (the page too: the browser then asks)
        for path in ("/", "/health", "/metrics", "/v1/models", "/v1/sessions", f"/v1/sessions/{sid}", "/v1/users/1"):
            for headers in ({}, {"Authorization": "Bearer wrong-key-0123456789"}, {"Authorization": "Basic !!"}):
                r = httpx.get(url + path, headers=headers)
                assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", (path, headers)
                assert r.headers["www-authenticate"].startswith("Basic")
        # the browser's way in: HTTP Basic with the key as password
        assert httpx.get(url + "/health", auth=("anyone", KEY_B)).status_code == 200
        with pytest.raises(openai.AuthenticationError):
            _client(url, "wrong-key-0123456789").chat.completions.create(
                model="recagent", messages=[{"role": "user", "content": "x"}]
            )
        assert "pelican" not in json.dumps(b.get("/metrics").json())


def test_non_loopback_needs_keys(monkeypatch):
    monkeypatch.delenv("RECAGENT_API_KEYS", raising=False)
    with pytest.raises(ConfigError, match="not loopback: set API keys in .RECAGENT_API_KEYS"):
        ServeConfig.build(host="0.0.0.0")
    monkeypatch.setenv("RECAGENT_API_KEYS", "short")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        ServeConfig.build(host="0.0.0.0")
    monkeypatch.setenv("RECAGENT_API_KEYS", KEY_A)
    assert ServeConfig.build(host="0.0.0.0").keys() == [KEY_A]
    assert ServeConfig.build(host="::1").keys() == [KEY_A]


BAD = [  # (description, raw body or JSON, headers, status, words the message must contain)
    ("malformed JSON", b'{"model": "recagent", "messages": [', {}, 400, "not valid JSON"),
    ("not an object", b"[1, 2]", {}, 400, "invalid request"),
    (
        "unknown role",
        {"model": "recagent", "messages": [{"role": "robot", "content": "hi"}]},
        {},
        400,
        "messages.0.role",
    ),
    (
        "last message not from the user",
        {"model": "recagent", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
        {},
        400,
        "must have role 'user'",
    ),
    (
        "tool message",
        {
            "model": "recagent",
            "messages": [{"role": "tool", "content": "{}", "tool_call_id": "c"}, {"role": "user", "content": "hi"}],
        },
        {},
        400,
        "runs its own tools",
    ),
    (
        "client tools",
        {
            "model": "recagent",
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "messages": [{"role": "user", "content": "hi"}],
        },
        {},
        400,
        "send no `tools`",
    ),
    (
        "image content",
        {"model": "recagent", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
        {},
        400,
        "only text",
    ),
    ("empty message", {"model": "recagent", "messages": [{"role": "user", "content": "  "}]}, {}, 400, "empty"),
    ("no messages", {"model": "recagent", "messages": []}, {}, 400, "messages"),
    ("missing model", {"messages": [{"role": "user", "content": "hi"}]}, {}, 400, "model: Field required"),
    ("n > 1", {"model": "recagent", "n": 2, "messages": [{"role": "user", "content": "hi"}]}, {}, 400, "n must be 1"),
    ("too long", {"model": "recagent", "messages": [{"role": "user", "content": "x" * 5000}]}, {}, 400, "too long"),
    (
        "huge body",
        {"model": "recagent", "messages": [{"role": "user", "content": "x" * 300_000}]},
        {},
        413,
        "too large",
    ),
    ("unknown model", {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, {}, 404, "does not exist"),
    (
        "unknown session",
        {"model": "recagent", "session_id": "srv-nope", "messages": [{"role": "user", "content": "hi"}]},
        {},
        404,
        "unknown session_id",
    ),
    (
        "unknown user",
        {"model": "recagent", "user_id": "100000", "messages": [{"role": "user", "content": "hi"}]},
        {},
        400,
        "unknown user_id",
    ),
]


def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(agent):
    with serving(agent) as url:
        http = httpx.Client(base_url=url, timeout=60)
        for what, body, headers, status, words in BAD:
            kw = (
                {"content": body, "headers": {"Content-Type": "application/json", **headers}}
                if isinstance(body, bytes)
                else {"json": body, "headers": headers}
            )
            r = http.post("/v1/chat/completions", **kw)
            assert r.status_code == status, (what, r.text)
            assert words in r.json()["error"]["message"], (what, r.json())
        # a huge body sent in chunks, without Content-Length, is cut off as well
        r = http.post(
            "/v1/chat/completions",
            content=(b"x" * 65536 for _ in range(8)),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 413
        assert http.get("/v1/sessions/srv-nope").status_code == 404
        assert http.patch("/v1/sessions/srv-nope", json={"user_id": "1"}).status_code == 404
        assert http.post("/v1/sessions", json={"user_id": "0"}).status_code == 400
        assert http.post("/v1/sessions", json={"colour": "red"}).status_code == 400
        assert http.put("/health").status_code == 405 and http.get("/nowhere").status_code == 404
        # still serving, and nothing above counted as a server error
        ok = http.post(
            "/v1/chat/completions", json={"model": "recagent", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert ok.status_code == 200
        m = http.get("/metrics").json()
        assert m["errors_5xx"] == 0 and m["turns"] == {"ok": 1}
        assert m["routes"]["POST /v1/chat/completions"]["by_status"]["400"] == sum(b[3] == 400 for b in BAD)


def test_full_queue_answers_503_and_a_busy_session_409(ml100k_env, tmp_path):
    agent = echo_agent(ml100k_env, tmp_path / "s.sqlite", think_s=1.5)
    body = {"model": "recagent", "messages": [{"role": "user", "content": "hi"}]}
    with serving(agent, workers=1, max_queue=1) as url:
        http = httpx.Client(base_url=url, timeout=60)
        sid = http.post("/v1/sessions", json={}).json()["id"]
        results: list[int] = []
        first = threading.Thread(
            target=lambda: results.append(
                httpx.post(f"{url}/v1/chat/completions", json={**body, "session_id": sid}, timeout=60).status_code
            )
        )
        first.start()
        while http.get("/health").json()["running"] == 0:
            time.sleep(0.02)
        busy = http.post("/v1/chat/completions", json={**body, "session_id": sid})
        assert busy.status_code == 409 and busy.json()["error"]["code"] == "session_busy"
        assert http.delete(f"/v1/sessions/{sid}").status_code == 409  # not while its turn runs
        second = threading.Thread(
            target=lambda: results.append(httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60).status_code)
        )
        second.start()
        while http.get("/health").json()["waiting"] == 0:
            time.sleep(0.02)
        full = http.post("/v1/chat/completions", json=body)
        assert full.status_code == 503 and full.json()["error"]["code"] == "queue_full" and full.headers["retry-after"]
        first.join()
        second.join()
        assert results == [200, 200]
        assert http.post("/v1/chat/completions", json={**body, "session_id": sid}).status_code == 200
        assert http.get("/health").json() | {"running": 0, "waiting": 0} == http.get("/health").json()
    agent.close()


def test_a_turn_whose_client_left_is_still_saved(ml100k_env, tmp_path):
    agent = echo_agent(ml100k_env, tmp_path / "s.sqlite", think_s=1.0)
    with serving(agent, workers=1) as url:
        http = httpx.Client(base_url=url, timeout=60)
        running, queued = (http.post("/v1/sessions", json={}).json()["id"] for _ in range(2))
        body = {"model": "recagent", "messages": [{"role": "user", "content": "hello"}]}
        # one client leaves while its turn runs, the other while its turn still waits for the only worker
        with pytest.raises(httpx.ReadTimeout):
            http.post("/v1/chat/completions", timeout=0.5, json={**body, "session_id": running})
        with pytest.raises(httpx.ReadTimeout):
            http.post("/v1/chat/completions", timeout=0.5, json={**body, "session_id": queued, "stream": True})
        while http.get("/health").json() | {"running": 0, "waiting": 0} != http.get("/health").json():
            time.sleep(0.05)
        for sid in (running, queued):
            turns = http.get(f"/v1/sessions/{sid}").json()["messages"]
            assert [t["user"] for t in turns] == ["hello"] and turns[0]["answer"].startswith("You said: hello.")
            # the session is free again: its place in the gate was given back
            r = http.post("/v1/chat/completions", json={**body, "session_id": sid})
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"].startswith(
                "You said: hello | hello."
            )
    agent.close()


def test_cors_lets_only_configured_origins_call_from_a_browser(agent, monkeypatch):
    monkeypatch.setenv("RECAGENT_API_KEYS", KEY_A)
    with serving(agent, cors_origins=["https://chat.example.org"]) as url:
        ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
        ok = httpx.options(f"{url}/v1/chat/completions", headers={"Origin": "https://chat.example.org", **ask})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://chat.example.org"
        assert "authorization" in ok.headers["access-control-allow-headers"].lower()
        other = httpx.options(f"{url}/v1/chat/completions", headers={"Origin": "https://evil.example.com", **ask})
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
        # the key is still needed on the real request; the allowed origin can read the answer
        r = httpx.get(
            f"{url}/v1/models", headers={"Origin": "https://chat.example.org", "Authorization": f"Bearer {KEY_A}"}
        )
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://chat.example.org"
        assert httpx.get(f"{url}/v1/models", headers={"Origin": "https://chat.example.org"}).status_code == 401
    with serving(agent) as url:  # by default no origin but the server's own
        r = httpx.get(
            f"{url}/v1/models", headers={"Origin": "https://chat.example.org", "Authorization": f"Bearer {KEY_A}"}
        )
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
