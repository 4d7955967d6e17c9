"""The serving pieces on their own: key parsing and checking, the admission gate, a session's turns."""

from __future__ import annotations

import asyncio
import base64

import pytest

from recagent.agents import Agent, AgentConfig
from recagent.agents.policies.scripted import EchoPolicy
from recagent.serve.auth import LOCAL_OWNER, KeyRing, owner_of, presented_key
from recagent.serve.gate import QueueFull, SessionBusy, TurnGate


def test_presented_key_reads_bearer_and_basic():
    basic = base64.b64encode(b"someone:the-key").decode()
    assert presented_key("Bearer abc") == "abc" and presented_key("bearer   abc ") == "abc"
    assert presented_key(f"Basic {basic}") == "the-key"
    for bad in (None, "", "Bearer", "Token abc", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode()):
        assert presented_key(bad) is None, bad


def test_keyring_names_owners_by_key_and_rejects_others():
    ring = KeyRing(["a" * 20, "b" * 20])
    assert ring.check("a" * 20) == owner_of("a" * 20) != ring.check("b" * 20)
    assert "a" * 20 not in owner_of("a" * 20)  # the owner id does not reveal the key
    for wrong in (None, "", "a" * 19, "a" * 21, "c" * 20):
        assert ring.check(wrong) is None
    assert KeyRing([]).check(None) == LOCAL_OWNER and not KeyRing([]).enabled


def test_gate_bounds_running_and_waiting_turns():
    async def scenario():
        gate = TurnGate(workers=1, max_queue=1)
        gate.admit("s1")
        with pytest.raises(SessionBusy):
            gate.admit("s1")
        await gate.start()
        gate.admit("s2")
        assert (gate.running, gate.waiting) == (1, 1)
        with pytest.raises(QueueFull):
            gate.admit("s3")
        waiter = asyncio.ensure_future(gate.start())
        await asyncio.sleep(0)
        assert not waiter.done()  # s2 waits for s1's worker
        gate.finish("s1")
        await waiter
        assert (gate.running, gate.waiting, gate.peak_running) == (1, 0, 1)
        gate.admit("s3")  # room again
        gate.finish("s3", started=False)
        gate.finish("s2")
        assert (gate.admitted, gate.running) == (0, 0)
        gate.admit("s1")  # no longer busy

    asyncio.run(scenario())


def test_turns_line_up_with_seeded_history(synthetic_env, tmp_path):
    agent = Agent.from_config(AgentConfig(), policy=EchoPolicy(), env=synthetic_env, db_path=tmp_path / "s.sqlite")
    agent.seed("t", [("user", "hi"), ("assistant", "hello, what do you like?")])
    r = agent.chat("something popular", session="t")
    turns = agent.turns("t")
    assert [t["user"] for t in turns] == ["hi", "something popular"]
    assert turns[0] == {"user": "hi", "answer": "hello, what do you like?", "recommended": [], "trace": []}
    assert turns[1]["answer"] == r.answer and turns[1]["recommended"] == r.recommended
    assert [s.kind for s in turns[1]["trace"]] == ["tool_call", "answer"]
    with pytest.raises(Exception, match="user and assistant messages, not 'system'"):
        agent.seed("u", [("system", "x")])
    agent.close()
