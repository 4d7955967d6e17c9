"""The agent loop for real with the offline 135M model on ML-100K (short budgets)."""

from __future__ import annotations

import pytest

from recagent.agents import Agent, AgentConfig
from recagent.agents.config import PolicyConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def agent(ml100k_env, local_checkpoint, tmp_path_factory):
    cfg = AgentConfig(policy=PolicyConfig(kind="local", model=str(local_checkpoint), max_new_tokens=48), max_steps=2)
    a = Agent.from_config(cfg, env=ml100k_env, db_path=tmp_path_factory.mktemp("db") / "s.sqlite")
    yield a
    a.close()


def test_chat_turn_makes_a_schema_valid_call_and_recommends_only_real_items(agent, ml100k_env):
    r = agent.chat("Recommend a comedy for me.", session="s", user_id="42")
    calls = [s for s in r.trace if s.kind in ("tool_call", "invalid_call")]
    assert calls, "the first step is forced to call a tool"
    first = calls[0]
    # constrained decoding: the call parses and names a bound tool ...
    assert first.kind == "tool_call" and first.tool in {s["function"]["name"] for s in agent.context.tool_schemas}
    # ... and its arguments have the schema's types; only cross-field or catalog checks may still refuse them
    assert first.valid or "Input should be" not in (first.error or ""), first.error
    assert r.trace[-1].kind == "answer"
    grounded = set(agent.state("s")["grounded_ids"] or [])
    assert set(r.recommended) <= grounded and all(i in ml100k_env.catalog.index_of for i in r.recommended)


def test_listwise_returns_k_unseen_catalog_items(agent, ml100k_env):
    r = agent.recommend("42", k=5)
    assert len(r.recommended) == 5 and len(set(r.recommended)) == 5
    seen = {ml100k_env.catalog.ids[i] for i in ml100k_env.history(ml100k_env.user("42"))}
    assert all(i in ml100k_env.catalog.index_of and i not in seen for i in r.recommended)
