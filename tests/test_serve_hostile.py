"""`recagent serve` against hostile clients (issue 18): slow connections, a forged Host, a model's `1e999`,
lone surrogates, failures after a saved turn, and load shedding in /metrics.

Slow clients are probed on a real uvicorn with short deadlines; everything else through Starlette's
TestClient. The agents run the real tools over a small synthetic dataset with the two recommenders
that train in milliseconds (the policies here call `popular_items` only)."""

from __future__ import annotations

import contextlib
import json
import math
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from langchain_core.messages import AIMessage

from recagent.agents import Agent, AgentConfig
from recagent.agents.policies.scripted import EchoPolicy, ScriptedPolicy, call, tool_calls
from recagent.errors import ConfigError
from recagent.serve import routes_chat
from recagent.serve.app import create_app
from recagent.serve.config import ServeConfig
from recagent.serve.metrics import Metrics
from recagent.serve.server import Server
from recagent.serve.transport import uvicorn_options

KEY = "hostile-test-key-0123456789"
CHAT = {"model": "recagent", "messages": [{"role": "user", "content": "something to watch"}]}


@pytest.fixture(scope="module")
def env():
    from recagent.tools.data import leave_one_out
    from recagent.tools.data.synthetic import make_synthetic
    from recagent.tools.env import ToolEnv, ToolEnvConfig
    from recagent.tools.recommenders import MODELS

    data = make_synthetic(n_users=40, n_items=30, seed=0)
    split = leave_one_out(data)
    models = {}
    for name in ("pop", "itemknn"):
        models[name] = MODELS[name](MODELS[name].config_cls())
        models[name].fit(split, show_progress=False)
    return ToolEnv(data, split, models, ToolEnvConfig(dataset="synthetic"))


@pytest.fixture()
def echo(env, tmp_path) -> Iterator[Agent]:
    agent = Agent.from_config(AgentConfig(), policy=EchoPolicy(), env=env, db_path=tmp_path / "echo.sqlite")
    yield agent
    agent.close()


@contextlib.contextmanager
def in_process(agent: Agent, **config: Any) -> Iterator[TestClient]:
    """The app in-process, addressed as http://127.0.0.1:8000 (a loopback Host, as a local client sends)."""
    with TestClient(
        create_app(ServeConfig(**config), agent), base_url="http://127.0.0.1:8000", raise_server_exceptions=False
    ) as client:
        yield client


@contextlib.contextmanager
def live(agent: Agent, **config: Any) -> Iterator[int]:
    """A real uvicorn on a free loopback port with the options `recagent serve` uses; yields the port."""
    cfg = ServeConfig(**config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(create_app(cfg, agent), log_level="error", lifespan="on", **uvicorn_options(cfg))
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "the test server did not start"
        time.sleep(0.05)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def strict(text: str) -> Any:
    """Parse as a browser's JSON.parse does: NaN and Infinity are errors."""

    def refuse(token: str):
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def sse(text: str) -> list[Any]:
    """The data payloads of an event stream, parsed strictly ("[DONE]" stays a string)."""
    return [
        line[6:] if line == "data: [DONE]" else strict(line[6:])
        for line in text.splitlines()
        if line.startswith("data: ")
    ]


def raw(body: dict) -> dict:
    """Request kwargs sending ``body`` as a browser's JSON.stringify would: lone surrogates escaped as \\udXXX."""
    return {"content": json.dumps(body).encode(), "headers": {"Content-Type": "application/json"}}


# -- 3. slow clients -------------------------------------------------------------------------------------------------------


class Slow:
    """A raw connection that sends ``head`` at once, then ``tail`` one byte at a time, and records what comes back."""

    def __init__(self, port: int, head: bytes, tail: bytes):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.tail, self.got, self.closed = tail, b"", False
        self.sent_at_reply: int | None = None  # tail bytes sent when the first reply byte arrived
        self.sent = 0
        if head:
            self.sock.sendall(head)

    def step(self) -> None:
        """Read what the server sent (noticing when it closed), then send one more byte unless a reply just arrived."""
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            data = None
        except ConnectionResetError:
            self.closed = True
            return
        if data == b"":
            self.closed = True
            return
        if data:
            self.got += data
            self.sent_at_reply = self.sent if self.sent_at_reply is None else self.sent_at_reply
            return  # read the rest of it first: a byte sent after the server closed makes it reset the connection
        if self.sent < len(self.tail):
            try:
                self.sent += self.sock.send(self.tail[self.sent : self.sent + 1])
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                self.closed = True


def trickle(conns: list[Slow], within: float) -> None:
    """Step every connection ten times a second until the server has closed them all, or ``within`` seconds pass."""
    deadline = time.time() + within
    while time.time() < deadline and not all(c.closed for c in conns):
        for c in conns:
            if not c.closed:
                c.step()
        time.sleep(0.1)
    for c in conns:
        c.sock.close()


def test_slow_clients_are_cut_off_and_keyless_ones_refused_before_their_body(echo, monkeypatch):
    monkeypatch.setenv("RECAGENT_API_KEYS", KEY)
    post = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
    with live(echo, header_timeout_s=0.5, body_timeout_s=0.5) as port:
        idle = [Slow(port, b"", b"") for _ in range(3)]
        headers = [
            Slow(port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"X-Slow: " + b"a" * 1000) for _ in range(3)
        ]
        keyless = [Slow(port, post + b"\r\n", b"{" + b" " * 999) for _ in range(3)]
        keyed = [
            Slow(port, post + f"Authorization: Bearer {KEY}\r\n\r\n".encode(), b"{" + b" " * 999) for _ in range(3)
        ]
        trickle(idle + headers + keyless + keyed, within=15)  # each sends a byte every 0.1 s: 100 s to finish
        for c in idle:  # never sent a byte: closed without a word
            assert c.closed and c.got == b""
        for c in headers:
            assert c.closed and c.got.startswith(b"HTTP/1.1 408") and b"header_timeout" in c.got, c.got
        for c in keyless:  # 401 before the body was read (most of it was never sent), then closed
            assert c.closed and c.got.startswith(b"HTTP/1.1 401") and b"invalid_api_key" in c.got, c.got
            assert c.sent_at_reply is not None and c.sent_at_reply < 1000
        for c in keyed:
            assert c.closed and c.got.startswith(b"HTTP/1.1 408") and b"body_timeout" in c.got, c.got
        ok = httpx.get(f"http://127.0.0.1:{port}/health", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
        assert ok.status_code == 200  # still serving


def test_connections_over_the_cap_get_503_until_others_close(echo):
    with live(echo, max_connections=4, header_timeout_s=60) as port:
        url = f"http://127.0.0.1:{port}/health"
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        try:
            time.sleep(0.2)  # let the server register them
            assert httpx.get(url, timeout=10).status_code == 503
        finally:
            for s in held:
                s.close()
        deadline = time.time() + 10
        while (status := httpx.get(url, timeout=10).status_code) != 200 and time.time() < deadline:
            time.sleep(0.1)
        assert status == 200


def test_an_endless_request_head_is_refused_at_the_size_limit(echo):
    with live(echo, max_header_bytes=1024, header_timeout_s=60) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 4096)  # no end of headers
            got = b""
            while chunk := s.recv(65536):
                got += chunk
        assert got.startswith(b"HTTP/1.1 400")  # and closed (recv returned b"") long before the 60 s deadline


def test_serve_passes_the_connection_limits_to_uvicorn(monkeypatch, capsys):
    seen: dict[str, Any] = {}
    monkeypatch.setattr("recagent.cli.prepare.prepare", lambda *a, **k: None)  # no data or model needed: nothing starts
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    from recagent.cli import main

    assert (
        main(
            [
                "serve",
                "-o",
                "max_connections=7",
                "-o",
                "header_timeout_s=3",
                "-o",
                "keep_alive_s=2",
                "-o",
                "max_header_bytes=4096",
            ]
        )
        == 0
    )
    assert (seen["limit_concurrency"], seen["timeout_keep_alive"], seen["h11_max_incomplete_event_size"]) == (
        7,
        2,
        4096,
    )
    assert seen["http"].head_timeout_s == 3
    assert main(["serve", "-o", "body_timeout_s=0"]) == 2
    assert "body_timeout_s: Input should be greater than 0" in capsys.readouterr().err


# -- 3. forged Host ----------------------------------------------------------------------------------------------------------


def test_a_forged_host_reaches_nothing_on_a_keyless_server(echo):
    forged = {"Host": "attacker.example:8000"}
    with in_process(echo) as c:
        sid = c.post("/v1/sessions", json={}).json()["id"]
        for r in (
            c.get("/v1/sessions", headers=forged),
            c.get(f"/v1/sessions/{sid}", headers=forged),
            c.delete(f"/v1/sessions/{sid}", headers=forged),
            c.post("/v1/chat/completions", json=CHAT, headers=forged),
            c.get("/", headers=forged),
            c.get("/v1/sessions", headers={"Host": "attacker.example:8000@127.0.0.1"}),
        ):
            assert r.status_code == 400 and r.json()["error"]["code"] == "host_not_allowed", r.text
        assert "attacker.example:8000" in c.get("/health", headers=forged).json()["error"]["message"]
        for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "LOCALHOST"):
            assert c.get(f"/v1/sessions/{sid}", headers={"Host": host}).status_code == 200, host
        assert c.get("/metrics").json()["turns"] == {}  # the forged chat request ran no turn
    with in_process(echo, allowed_hosts=["chat.example.org", "*.lan", "::1"]) as c:
        for host, status in (
            ("chat.example.org:443", 200),
            ("box.lan", 200),
            ("[::1]:8000", 200),
            ("lan", 400),
            ("127.0.0.1:8000", 400),
            ("attacker.example", 400),
        ):
            assert c.get("/health", headers={"Host": host}).status_code == status, host
    assert "127.0.0.2" in ServeConfig(host="127.0.0.2").trusted_hosts()  # the address it listens on is served too
    with pytest.raises(ConfigError, match="allowed_hosts: 'a.\\*' is not a host name"):
        ServeConfig.build(allowed_hosts=["a.*"])


def test_with_keys_any_host_is_served_but_only_with_a_key(echo, monkeypatch):
    monkeypatch.setenv("RECAGENT_API_KEYS", KEY)
    with in_process(echo) as c:
        r = c.get("/health", headers={"Host": "recs.example.org", "Authorization": f"Bearer {KEY}"})
        assert r.status_code == 200
        assert c.get("/health", headers={"Host": "recs.example.org"}).status_code == 401


# -- 4. strict JSON, lone surrogates, failures after a saved turn ------------------------------------------------------------


def _infinite_k_script() -> list:
    """A turn whose first tool call asks for k = 1e999 (what json.loads makes of a model's `{"k": 1e999}`), then recovers."""
    return [
        tool_calls(call("popular_items", {"k": math.inf}, "c1")),
        tool_calls(call("popular_items", {"k": 3}, "c2")),
        AIMessage("Here you are."),
    ]


def test_an_infinite_tool_argument_stays_strict_json_everywhere(env, tmp_path):
    agent = Agent.from_config(
        AgentConfig(), policy=ScriptedPolicy(script=_infinite_k_script() * 2), env=env, db_path=tmp_path / "s.sqlite"
    )
    with in_process(agent) as c:
        sid = c.post("/v1/sessions", json={}).json()["id"]
        r = c.post("/v1/chat/completions", json={**CHAT, "session_id": sid})
        assert r.status_code == 200, r.text
        first = strict(r.text)["recagent"]["trace"][0]
        assert first["arguments"] == {"k": "Infinity"} and not first["valid"]
        s = c.post("/v1/chat/completions", json={**CHAT, "session_id": sid, "stream": True})
        events = sse(s.text)
        assert events[-1] == "[DONE]" and not any("error" in e for e in events[:-1])
        steps = [e["recagent"]["step"] for e in events[:-1] if "step" in (e.get("recagent") or {})]
        assert steps[0]["arguments"] == {"k": "Infinity"}
        # the stored trace reads back the same, not as null
        turns = strict(c.get(f"/v1/sessions/{sid}").text)["messages"]
        assert [t["trace"][0]["arguments"] for t in turns] == [{"k": "Infinity"}] * 2
    agent.close()


def test_lone_surrogates_are_refused_in_ids_and_repaired_in_text_before_anything_is_saved(echo):
    with in_process(echo) as c:
        for field in ("session_id", "user_id", "model"):
            r = c.post("/v1/chat/completions", **raw({**CHAT, field: "srv-\ud83d"}))
            err = r.json()["error"]
            assert r.status_code == 400 and err["param"] == field and "lone UTF-16 surrogate" in err["message"], r.text
            assert "\n" not in err["message"]
        s = c.post("/v1/sessions", **raw({"title": "half \ud83d"})).json()
        assert s["title"] == "half \ufffd"
        sid = c.post("/v1/sessions", json={}).json()["id"]
        r = c.post(
            "/v1/chat/completions",
            **raw({**CHAT, "session_id": sid, "messages": [{"role": "user", "content": "cut \ud83d here"}]}),
        )
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"].startswith(
            "You said: cut \ufffd here."
        )
        stream = c.post(
            "/v1/chat/completions",
            **raw(
                {**CHAT, "session_id": sid, "stream": True, "messages": [{"role": "user", "content": "more \udc00"}]}
            ),
        )
        events = sse(stream.text)
        assert events[-1] == "[DONE]" and not any("error" in e for e in events[:-1])
        got = c.get(f"/v1/sessions/{sid}").json()
        # the session record and the conversation agree: two turns, both with the repaired text
        assert got["turns"] == 2 and [m["user"] for m in got["messages"]] == ["cut \ufffd here", "more \ufffd"]
        assert got["title"] == "cut \ufffd here"
        assert c.patch(f"/v1/sessions/{sid}", **raw({"title": "\udc00x"})).json()["title"] == "\ufffdx"
        history = [
            {"role": "user", "content": "a \ud83d"},
            {"role": "assistant", "content": "b \ude00"},
            {"role": "user", "content": "c"},
        ]
        stateless = c.post("/v1/chat/completions", **raw({**CHAT, "messages": history}))
        assert stateless.status_code == 200 and "a \ufffd | c" in stateless.json()["choices"][0]["message"]["content"]
        assert c.get("/metrics").json()["errors_5xx"] == 0


def test_a_failure_after_the_turn_was_saved_says_so(echo, monkeypatch):
    def broken(self, session, result):
        raise RuntimeError("cannot build the extension")

    with in_process(echo) as c:
        sid = c.post("/v1/sessions", json={}).json()["id"]
        monkeypatch.setattr(Server, "extension", broken)
        r = c.post("/v1/chat/completions", json={**CHAT, "session_id": sid})
        err = r.json()["error"]
        assert r.status_code == 500 and err["code"] == "reply_failed"
        assert f"the turn was saved in session {sid}" in err["message"] and "RuntimeError" in err["message"]
        events = sse(c.post("/v1/chat/completions", json={**CHAT, "session_id": sid, "stream": True}).text)
        assert events[-1] == "[DONE]" and f"the turn was saved in session {sid}" in events[-2]["error"]["message"]
        stateless = c.post("/v1/chat/completions", json=CHAT).json()["error"]["message"]
        assert "this stateless request kept nothing" in stateless
        monkeypatch.undo()
        got = c.get(f"/v1/sessions/{sid}").json()
        assert got["turns"] == 2 and len(got["messages"]) == 2  # both turns were indeed saved, and counted
        m = c.get("/metrics").json()  # the stream had already answered 200: its error is in the stream, not the status
        assert m["errors_5xx"] == 2 and m["turns"] == {"ok": 3}


def test_a_session_record_that_cannot_be_updated_is_reported_with_the_saved_turn(echo, monkeypatch):
    def broken(self, *args):
        raise OSError("disk full")

    with in_process(echo) as c:
        sid = c.post("/v1/sessions", json={}).json()["id"]
        monkeypatch.setattr(Server, "_touch", broken)
        r = c.post("/v1/chat/completions", json={**CHAT, "session_id": sid})
        assert r.status_code == 500 and r.json()["error"]["message"] == (
            f"the turn was saved in session {sid}, but updating the session's record failed (OSError); "
            f"GET /v1/sessions/{sid} shows what was saved"
        )
        assert [m["user"] for m in c.get(f"/v1/sessions/{sid}").json()["messages"]] == ["something to watch"]


def test_a_stream_that_breaks_mid_turn_ends_with_an_error_and_done(echo, monkeypatch):
    real_chunk = routes_chat.chunk

    def chunk(*args, extension=None, **kwargs):  # every step chunk fails to build
        if extension and "step" in extension:
            raise TypeError("unserialisable step")
        return real_chunk(*args, extension=extension, **kwargs)

    with in_process(echo) as c:
        sid = c.post("/v1/sessions", json={}).json()["id"]
        monkeypatch.setattr(routes_chat, "chunk", chunk)
        events = sse(c.post("/v1/chat/completions", json={**CHAT, "session_id": sid, "stream": True}).text)
        assert events[-1] == "[DONE]" and events[-2]["error"]["code"] == "stream_failed"
        assert f"the turn still runs to its end and is saved in session {sid}" in events[-2]["error"]["message"]
        deadline = time.time() + 10  # ... and so it does
        while c.get("/health").json()["running"] and time.time() < deadline:
            time.sleep(0.05)
        got = c.get(f"/v1/sessions/{sid}").json()
        assert got["turns"] == 1 and [m["user"] for m in got["messages"]] == ["something to watch"]


# -- 5. load shedding in /metrics ----------------------------------------------------------------------------------------------


def test_metrics_count_503_apart_from_errors():
    m = Metrics()
    for status in (200, 503, 503, 500, 502):
        m.request("POST /v1/chat/completions", status, 0.01)
    snap = m.snapshot()
    assert (snap["errors_5xx"], snap["shed_503"], snap["requests"]) == (2, 2, 5)


def test_a_full_queue_shows_as_shedding_not_errors(env, tmp_path):
    agent = Agent.from_config(AgentConfig(), policy=EchoPolicy(think_s=0.5), env=env, db_path=tmp_path / "s.sqlite")
    with live(agent, workers=1, max_queue=0) as port:
        url = f"http://127.0.0.1:{port}"
        first = threading.Thread(target=lambda: httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=30))
        first.start()
        deadline = time.time() + 10
        while httpx.get(f"{url}/health").json()["running"] == 0 and time.time() < deadline:
            time.sleep(0.02)
        assert httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=30).status_code == 503
        first.join()
        m = httpx.get(f"{url}/metrics").json()
    assert (m["errors_5xx"], m["shed_503"], m["turns"]) == (0, 1, {"ok": 1})
    agent.close()
