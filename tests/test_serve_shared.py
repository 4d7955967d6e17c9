"""Two `recagent serve` processes sharing one PostgreSQL database (``agent.sessions.backend=postgres``).

Real server processes (``tests/serve_echo_process.py``: the CLI with EchoPolicy deciding, which quotes
every user message it was shown) on the synthetic data, against a throwaway PostgreSQL cluster (see
``tests/pg_fixture.py``). A session started on one server continues on the other, stays its key's, and a
server killed with SIGKILL in the middle of a turn loses none of the turns it had finished.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from recagent.cli import main

PROCESS = Path(__file__).with_name("serve_echo_process.py")
KEY_A, KEY_B = "shared-a-0123456789abcdef", "shared-b-0123456789abcdef"
CHAT = {"model": "recagent"}


@pytest.fixture(scope="module")
def shared_home(synthetic, synthetic_split, tmp_path_factory) -> tuple[Path, str]:
    """A RECAGENT_HOME both servers use (the synthetic dataset, its popularity model trained) and the dataset folder."""
    from recagent.tools.data.synthetic import write_atomic
    from recagent.tools.recommenders import train

    home = tmp_path_factory.mktemp("shared-home")
    folder = write_atomic(synthetic, tmp_path_factory.mktemp("data") / "synthetic")
    train(synthetic_split, "pop", {}, out_dir=home / "models" / "synthetic" / "pop", show_progress=False)
    return home, str(folder)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(shared_home, db_url: str, think_s: float = 0.0):
    """A `recagent serve` process on a free port with sessions in ``db_url``; yields (base URL, process)."""
    home, dataset = shared_home
    port = _port()
    env = {
        **os.environ,
        "RECAGENT_HOME": str(home),
        "RECAGENT_POSTGRES_URL": db_url,
        "RECAGENT_API_KEYS": f"{KEY_A},{KEY_B}",
        "RECAGENT_TEST_ECHO_THINK_S": str(think_s),
        "PYTHONPATH": str(PROCESS.parents[1]),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable,
        str(PROCESS),
        "--port",
        str(port),
        "--dataset",
        dataset,
        "--base-url",  # an OpenAI-compatible policy named, so nothing converts the local model; EchoPolicy decides
        "http://127.0.0.1:9/v1",
        "--model",
        "echo",
        "-o",
        "agent.tools.models=[pop]",
        "-o",
        "agent.tools.default_model=pop",
        "-o",
        "agent.sessions.backend=postgres",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                httpx.get(f"{url}/health", timeout=2, headers=_auth(KEY_A)).raise_for_status()
                break
            except httpx.HTTPError:
                if proc.poll() is not None:
                    raise AssertionError(f"the server exited: {proc.stderr.read()[-3000:]}") from None
                assert time.time() < deadline, "the server did not start"
                time.sleep(0.3)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, err[-3000:]


def _auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _say(url: str, key: str, sid: str, text: str) -> httpx.Response:
    body = {**CHAT, "session_id": sid, "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=_auth(key), timeout=120)


def test_a_session_continues_on_the_other_server_and_stays_its_keys(shared_home, postgres_url):
    with server(shared_home, postgres_url) as (a, _), server(shared_home, postgres_url) as (b, _):
        sid = httpx.post(f"{a}/v1/sessions", json={"user_id": "3"}, headers=_auth(KEY_A)).json()["id"]
        first = _say(a, KEY_A, sid, "first message on A")
        assert first.status_code == 200, first.text
        # B sees the session and A's turn: owner, dataset user, title, count and the turn itself
        seen = httpx.get(f"{b}/v1/sessions/{sid}", headers=_auth(KEY_A)).json()
        assert (seen["user_id"], seen["title"], seen["turns"]) == ("3", "first message on A", 1)
        assert [m["user"] for m in seen["messages"]] == ["first message on A"]
        assert seen["messages"][0]["answer"] == first.json()["choices"][0]["message"]["content"]
        # B continues it: its policy was shown A's turn too, and A then sees B's turn
        second = _say(b, KEY_A, sid, "second message on B")
        assert second.status_code == 200, second.text
        answer = second.json()["choices"][0]["message"]["content"]
        assert answer.startswith("You said: first message on A | second message on B.")
        assert [s["tool"] for s in second.json()["recagent"]["trace"] if s["kind"] == "tool_call"] == [
            "retrieve_for_user"
        ]  # the dataset user set on A was in the state B loaded
        back = httpx.get(f"{a}/v1/sessions/{sid}", headers=_auth(KEY_A)).json()
        assert back["turns"] == 2 and [m["user"] for m in back["messages"]] == [
            "first message on A",
            "second message on B",
        ]
        assert [s["id"] for s in httpx.get(f"{b}/v1/sessions", headers=_auth(KEY_A)).json()["data"]] == [sid]
        # another key gets 404 on either server, for reading, writing, continuing and deleting
        for url in (a, b):
            assert httpx.get(f"{url}/v1/sessions/{sid}", headers=_auth(KEY_B)).status_code == 404
            assert httpx.get(f"{url}/v1/sessions", headers=_auth(KEY_B)).json()["data"] == []
            r = _say(url, KEY_B, sid, "let me in")
            assert r.status_code == 404 and r.json()["error"]["code"] == "session_not_found"
            r = httpx.patch(f"{url}/v1/sessions/{sid}", json={"title": "mine"}, headers=_auth(KEY_B))
            assert r.status_code == 404
            assert httpx.delete(f"{url}/v1/sessions/{sid}", headers=_auth(KEY_B)).status_code == 404
        assert httpx.get(f"{a}/v1/sessions/{sid}", headers=_auth(KEY_A)).json()["turns"] == 2  # untouched
        # deleted on B, gone on A (conversation and record)
        assert httpx.delete(f"{b}/v1/sessions/{sid}", headers=_auth(KEY_A)).status_code == 204
        assert httpx.get(f"{a}/v1/sessions/{sid}", headers=_auth(KEY_A)).status_code == 404


def test_a_server_killed_mid_turn_loses_no_finished_turn(shared_home, postgres_url):
    # A's policy takes 1.5 s a call (two calls a turn), so its fourth turn can be caught half done
    with server(shared_home, postgres_url, think_s=1.5) as (a, proc_a), server(shared_home, postgres_url) as (b, _):
        sid = httpx.post(f"{a}/v1/sessions", json={}, headers=_auth(KEY_A)).json()["id"]
        answers = []
        for t in range(3):
            r = _say(a, KEY_A, sid, f"turn {t} on A")
            assert r.status_code == 200, r.text
            answers.append(r.json()["choices"][0]["message"]["content"])
        cut_reply: list[int] = []
        cut = threading.Thread(target=lambda: _try_say(a, sid, "turn 3 on A, cut short", cut_reply), daemon=True)
        cut.start()
        deadline = time.time() + 60
        # the fourth turn has begun (its message is checkpointed) and not finished: kill A now
        while len(httpx.get(f"{b}/v1/sessions/{sid}", headers=_auth(KEY_A)).json()["messages"]) < 4:
            assert time.time() < deadline, "the fourth turn never started"
            time.sleep(0.05)
        proc_a.send_signal(signal.SIGKILL)
        proc_a.wait(30)
        cut.join(30)
        assert cut_reply == [], "the fourth turn finished before the kill"
        seen = httpx.get(f"{b}/v1/sessions/{sid}", headers=_auth(KEY_A)).json()
        assert seen["turns"] == 3  # the session's record counts the finished turns
        finished = seen["messages"][:3]
        assert [m["user"] for m in finished] == [f"turn {t} on A" for t in range(3)]
        assert [m["answer"] for m in finished] == answers
        assert all(m["recommended"] and m["trace"] for m in finished)
        # the cut turn keeps what was checkpointed when it began (the message), and no answer
        assert [(m["user"], m["answer"]) for m in seen["messages"][3:]] == [("turn 3 on A, cut short", "")]
        # and B carries the session on
        r = _say(b, KEY_A, sid, "turn 4 on B")
        assert r.status_code == 200, r.text
        assert "turn 0 on A | turn 1 on A | turn 2 on A" in r.json()["choices"][0]["message"]["content"]
        assert httpx.get(f"{b}/v1/sessions/{sid}", headers=_auth(KEY_A)).json()["messages"][-1]["user"] == "turn 4 on B"


def _try_say(url: str, sid: str, text: str, replies: list[int]) -> None:
    try:
        replies.append(_say(url, KEY_A, sid, text).status_code)
    except httpx.HTTPError:
        pass  # the server was killed under it


def test_bad_or_unreachable_database_is_one_line(monkeypatch, capsys):
    monkeypatch.delenv("RECAGENT_POSTGRES_URL", raising=False)
    pg = ["-o", "agent.sessions.backend=postgres"]
    assert main(["serve", *pg]) == 2
    err = capsys.readouterr().err
    assert "sessions.backend is postgres but $RECAGENT_POSTGRES_URL is not set" in err and "Traceback" not in err
    monkeypatch.setenv("RECAGENT_POSTGRES_URL", "mysql://me:s3cret-pw@db/x")
    assert main(["serve", *pg]) == 2
    err = capsys.readouterr().err
    assert "$RECAGENT_POSTGRES_URL is not a PostgreSQL URL" in err and "s3cret-pw" not in err
    monkeypatch.setenv("RECAGENT_POSTGRES_URL", "postgresql://me:s3cret-pw@127.0.0.1:notaport/x")
    assert main(["chat", "-m", "hi", "-o", "sessions.backend=postgres"]) == 2
    err = capsys.readouterr().err
    assert "$RECAGENT_POSTGRES_URL is not a valid PostgreSQL URL" in err and "s3cret-pw" not in err
    monkeypatch.setenv("RECAGENT_POSTGRES_URL", f"postgresql://me:s3cret-pw@127.0.0.1:{_port()}/x")
    assert main(["serve", *pg]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "s3cret-pw" not in err, err
    assert "cannot use the sessions database postgresql://me@127.0.0.1:" in err and "Connection refused" in err


def test_chat_keeps_its_sessions_in_postgres_too(shared_home, postgres_url, monkeypatch, capsys):
    import psycopg

    from recagent.agents import agent as agent_module
    from recagent.agents.policies.scripted import EchoPolicy

    home, dataset = shared_home
    monkeypatch.setenv("RECAGENT_HOME", str(home))
    monkeypatch.setenv("RECAGENT_POSTGRES_URL", postgres_url)
    monkeypatch.setattr(agent_module, "make_policy", lambda cfg: EchoPolicy())
    args = ["chat", "--dataset", dataset, "--base-url", "http://127.0.0.1:9/v1", "--model", "echo", "--json"]
    args += ["--session", "desk", "-o", "tools.models=[pop]", "-o", "tools.default_model=pop"]
    args += ["-o", "sessions.backend=postgres"]
    assert main([*args, "-m", "hello from one terminal"]) == 0
    capsys.readouterr()
    assert main([*args, "-m", "and from another"]) == 0  # a new agent, as a second terminal would have
    answer = json.loads(capsys.readouterr().out)["answer"]
    assert answer.startswith("You said: hello from one terminal | and from another.")
    assert not (home / "sessions.sqlite").exists()
    with psycopg.connect(postgres_url) as conn:
        threads = {r[0] for r in conn.execute("SELECT DISTINCT thread_id FROM checkpoints")}
    assert threads == {"desk"}
