"""The OpenAI-compatible policy against a real server: llama.cpp's (llama-cpp-python) serving SmolLM2 on loopback."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from recagent.agents import Agent, AgentConfig
from recagent.agents.config import PolicyConfig, make_policy
from recagent.tools.env import ToolEnvConfig
from recagent.tools.recommender_tools import build_registry

pytestmark = pytest.mark.slow


def _gguf():
    from recagent.agents.local_model import find_default_gguf

    return find_default_gguf()


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.fail("llama-cpp-python is not installed: run the README test command (it installs the test extra)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(_gguf()),
        "--chat_format",
        "chatml-function-calling",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "4096",
        "--model_alias",
        "smollm2",
    ]
    # the server logs hundreds of KB at start: a file, not a pipe nobody reads (that would block it)
    log = tmp_path_factory.mktemp("llama") / "server.log"
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp server exited: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("llama.cpp server did not start within 120 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def policy_config(url: str, **kw) -> PolicyConfig:
    return PolicyConfig(kind="openai", model="smollm2", base_url=url, max_new_tokens=64, timeout=300, **kw)


def test_forced_tool_call_round_trips_through_the_real_server(server_url, synthetic_env):
    registry = build_registry(synthetic_env.session())
    model = make_policy(policy_config(server_url))
    bound = model.bind_tools(
        registry.openai_schemas(), tool_choice={"type": "function", "function": {"name": "popular_items"}}
    )
    ai = bound.invoke("Show me the 3 most popular comedies.")
    calls = ai.tool_calls + ai.invalid_tool_calls
    assert calls and calls[0]["name"] == "popular_items"
    if ai.tool_calls:  # the server's grammar gives JSON arguments; our registry validates and runs them
        out = registry.call("popular_items", ai.tool_calls[0]["args"])
        assert out.ok or out.error.error in ("invalid_arguments", "invalid_value")
    assert ai.usage_metadata and ai.usage_metadata["input_tokens"] > 0


def test_agent_turn_against_the_real_server(server_url, synthetic_env, tmp_path):
    cfg = AgentConfig(tools=ToolEnvConfig(dataset="synthetic"), policy=policy_config(server_url), max_steps=2)
    agent = Agent.from_config(cfg, env=synthetic_env, db_path=tmp_path / "s.sqlite")
    r = agent.chat("Recommend a comedy for me.", session="s", user_id="3")
    assert r.trace and r.trace[-1].kind == "answer" and r.answer
    grounded = set(agent.state("s")["grounded_ids"] or [])
    assert set(r.recommended) <= grounded  # whatever the 135M model wrote, only tool-returned items are recommended
    for step in r.trace:
        json.dumps(step.to_dict())  # every record is JSON-ready
    listwise = agent.recommend("3", k=5)
    assert len(listwise.recommended) == 5 and all(i in synthetic_env.catalog.index_of for i in listwise.recommended)
