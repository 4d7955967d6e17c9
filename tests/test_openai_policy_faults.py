"""Faults on the OpenAI-compatible path: server down, server too slow, malformed tool-call JSON, unknown tools.

A tiny scripted HTTP server on loopback plays the misbehaving server (faults a real server
will not produce on demand); the real-server path is tested against llama.cpp in
test_openai_policy_llamacpp.py.
"""

from __future__ import annotations

import socket
import time

import pytest
from openai_stub import Stub, completion, tool_call_message

from recagent.agents import Agent, AgentConfig
from recagent.agents.config import PolicyConfig
from recagent.errors import RecagentError
from recagent.tools.env import ToolEnvConfig


def agent_for(env, tmp_path, base_url: str, **policy):
    cfg = AgentConfig(
        tools=ToolEnvConfig(dataset="synthetic"),
        policy=PolicyConfig(kind="openai", model="stub", base_url=base_url, max_retries=0, **policy),
    )
    return Agent.from_config(cfg, env=env, db_path=tmp_path / "s.sqlite")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_down_is_one_clear_message(synthetic_env, tmp_path):
    agent = agent_for(synthetic_env, tmp_path, f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(
        RecagentError, match=r"cannot reach the policy server at http://127\.0\.0\.1:\d+/v1: is it running"
    ):
        agent.chat("hello", session="s")
    assert agent.state("s").get("messages", []) == []  # nothing half-written


def test_server_timeout_is_one_clear_message(synthetic_env, tmp_path):
    stub = Stub([completion({"content": "late"})], delay=3.0)
    try:
        agent = agent_for(synthetic_env, tmp_path, stub.url, timeout=0.5)
        t0 = time.perf_counter()
        with pytest.raises(RecagentError, match=r"did not answer within 0s|did not answer within 1s"):
            agent.chat("hello", session="s")
        assert time.perf_counter() - t0 < 3.0
    finally:
        stub.close()


def test_malformed_and_unknown_tool_calls_are_recovered(synthetic_env, tmp_path):
    stub = Stub(
        [
            completion(tool_call_message("popular_items", '{"k": 3,,}', "bad")),
            completion(tool_call_message("teleport", "{}", "unk")),
            completion(tool_call_message("popular_items", '{"k": 2}', "good")),
            completion({"content": "Here: see the list above."}),
        ]
    )
    try:
        agent = agent_for(synthetic_env, tmp_path, stub.url)
        r = agent.chat("recommend something", session="s")
    finally:
        stub.close()
    kinds = [(s.kind, s.tool, s.valid) for s in r.trace]
    assert kinds[0] == ("invalid_call", "popular_items", False)
    assert kinds[1] == ("tool_call", "teleport", False) and kinds[2] == ("tool_call", "popular_items", True)
    assert r.trace[-1].kind == "answer"
    # every tool call id the server made got a tool message back (the protocol requires it)
    second = stub.requests[1]["messages"]
    assert any(m["role"] == "tool" and m["tool_call_id"] == "bad" and "invalid_call" in m["content"] for m in second)
    third = stub.requests[2]["messages"]
    assert any(m["role"] == "tool" and m["tool_call_id"] == "unk" and "unknown_tool" in m["content"] for m in third)
    # tools were offered in the OpenAI format
    assert {t["function"]["name"] for t in stub.requests[0]["tools"]} >= {"search_items", "rank_items"}


def test_hallucinated_ids_from_a_server_are_rejected(synthetic_env, tmp_path):
    stub = Stub(
        [
            completion({"content": "Watch [424242] tonight."}),
            completion(tool_call_message("popular_items", '{"k": 2}', "p")),
            completion({"content": "Fine: see above."}),
        ]
    )
    try:
        r = agent_for(synthetic_env, tmp_path, stub.url).chat("hi", session="s")
    finally:
        stub.close()
    assert r.trace[0].kind == "rejected_answer" and "[424242]" in r.trace[0].error
    assert r.trace[-1].kind == "answer" and "424242" not in r.recommended


def test_api_key_comes_from_the_environment(monkeypatch):
    from recagent.agents.config import api_key
    from recagent.errors import ConfigError

    monkeypatch.delenv("MY_KEY", raising=False)
    cfg = PolicyConfig(kind="openai", model="gpt-x", base_url="https://example.invalid/v1", api_key_env="MY_KEY")
    with pytest.raises(ConfigError, match="environment variable MY_KEY"):
        api_key(cfg)
    monkeypatch.setenv("MY_KEY", "sk-test")
    assert api_key(cfg) == "sk-test"
    with pytest.raises(Exception, match="policy.model is required"):
        PolicyConfig(kind="openai")
