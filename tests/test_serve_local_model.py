"""The server with the offline default policy (SmolLM2-135M, real generation on CPU): a streamed turn through
the official `openai` client, with the local model's calls serialised by the server (short budgets)."""

from __future__ import annotations

import openai
import pytest

from recagent.agents import Agent, AgentConfig
from recagent.agents.config import PolicyConfig
from tests.serve_harness import serving

pytestmark = pytest.mark.slow


def test_streamed_turn_with_the_local_model(ml100k_env, local_checkpoint, tmp_path):
    cfg = AgentConfig(policy=PolicyConfig(kind="local", model=str(local_checkpoint), max_new_tokens=48), max_steps=2)
    agent = Agent.from_config(cfg, env=ml100k_env, db_path=tmp_path / "s.sqlite")
    catalog = ml100k_env.catalog
    with serving(agent, agent=cfg) as url:
        assert agent.context.policy_lock is not None  # a local model is not thread-safe: the server serialises it
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600)
        chunks = list(
            client.chat.completions.create(
                model="recagent",
                stream=True,
                extra_body={"user_id": "42"},
                messages=[{"role": "user", "content": "Recommend a comedy for me."}],
            )
        )
    (final,) = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    ext = final.model_extra["recagent"]
    text = ""
    for c in chunks:  # the text after the last revision marker is the answer
        if (c.model_extra.get("recagent") or {}).get("revision"):
            text = ""
        elif c.choices and c.choices[0].delta.content:
            text += c.choices[0].delta.content
    steps = [c.model_extra["recagent"]["step"] for c in chunks if "step" in (c.model_extra.get("recagent") or {})]
    assert steps and steps == ext["trace"] and steps[-1]["kind"] == "answer"
    assert any(s["kind"] in ("tool_call", "invalid_call") for s in steps)  # the first step is forced to call a tool
    assert text.strip() and all(i in catalog.index_of for i in ext["recommended"])
    assert [c["item_id"] for c in ext["items"]] == ext["recommended"]
    assert ext["usage"]["llm_calls"] >= 1 and ext["usage"]["output_tokens"] > 0
    agent.close()
