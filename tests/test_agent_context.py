"""The policy sees whole turns, newest first, within its token budget; the current turn is never cut."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.messages.utils import count_tokens_approximately

from recagent.agents import Agent, AgentConfig
from recagent.agents.config import PolicyConfig
from recagent.agents.context import FEEDBACK, trim_turns
from recagent.agents.policies.scripted import EchoPolicy


def _turn(n: int, words: int = 60) -> list:
    call = {"name": "popular_items", "args": {"k": 5}, "id": f"c{n}", "type": "tool_call"}
    return [
        HumanMessage(f"turn {n} " + "word " * words),
        AIMessage("", tool_calls=[call]),
        ToolMessage('{"items": []}', tool_call_id=f"c{n}"),
        AIMessage(f"answer {n}"),
    ]


def test_trim_keeps_whole_recent_turns_and_the_current_one():
    messages = _turn(0) + _turn(1) + _turn(2) + [HumanMessage("now this " + "word " * 400)]
    messages.append(HumanMessage("your answer cited unknown items", additional_kwargs={FEEDBACK: True}))
    assert trim_turns(messages, None) == messages
    # a budget smaller than the current turn alone still keeps the current turn, from the user's message
    assert trim_turns(messages, 200) == messages[12:]
    one_turn = count_tokens_approximately(messages[8:])
    kept = trim_turns(messages, one_turn)
    assert kept == messages[8:] and isinstance(kept[0], HumanMessage) and kept[0].content.startswith("turn 2")
    assert trim_turns(messages, one_turn - 1) == messages[12:]
    assert trim_turns(messages, 10**6) == messages
    # a tool call never loses its result: every kept ToolMessage follows its AIMessage
    for budget in range(200, count_tokens_approximately(messages) + 50, 37):
        kept = trim_turns(messages, budget)
        ids = {c["id"] for m in kept if isinstance(m, AIMessage) for c in m.tool_calls}
        assert all(m.tool_call_id in ids for m in kept if isinstance(m, ToolMessage))


def test_policy_sees_only_the_turns_that_fit(synthetic_env, tmp_path):
    cfg = AgentConfig(history_tokens=400)
    assert cfg.history_budget() == 400 and AgentConfig().history_budget() == 4000
    assert AgentConfig(policy=PolicyConfig(kind="openai", model="m")).history_budget() is None
    agent = Agent.from_config(cfg, policy=EchoPolicy(), env=synthetic_env, db_path=tmp_path / "s.sqlite")
    for n in range(6):
        r = agent.chat(f"message {n}: " + "something to watch " * 15, session="long")
    said = r.answer.split(". Try ")[0]
    assert "message 5" in said and "message 0" not in said  # the oldest turns fell out of the window
    assert len(agent.turns("long")) == 6  # ... but the session keeps all of them
    agent.close()


def test_the_shipped_adapter_is_the_default_and_decides_the_first_tool_choice(monkeypatch, tmp_path):
    from recagent.agents import local_model
    from recagent.agents.config import PolicyConfig

    monkeypatch.setattr(local_model, "shipped_adapter", lambda: None)
    base = PolicyConfig()
    assert base.adapter == "shipped" and base.adapter_folder() is None
    assert base.initial_tool_choice() == "required", "the untrained base is made to call"
    monkeypatch.setattr(local_model, "shipped_adapter", lambda: tmp_path)
    trained = PolicyConfig()
    assert trained.adapter_folder() == str(tmp_path) and trained.initial_tool_choice() == "auto"
    assert PolicyConfig(adapter=None).initial_tool_choice() == "required", "the base stays selectable"
    assert PolicyConfig(model=str(tmp_path)).adapter_folder() is None, "never on another base model"
    assert PolicyConfig(first_tool_choice="required").initial_tool_choice() == "required"
    assert PolicyConfig(kind="openai", model="m").initial_tool_choice() == "auto"


def test_a_trained_policy_may_write_several_calls_the_base_one(monkeypatch, tmp_path):
    from recagent.agents import local_model
    from recagent.agents.config import PolicyConfig, make_policy

    monkeypatch.setattr(local_model, "shipped_adapter", lambda: None)
    assert not PolicyConfig().parallel_calls(), "the untrained base repeats its call when offered a second"
    assert make_policy(PolicyConfig()).parallel_tool_calls is False
    monkeypatch.setattr(local_model, "shipped_adapter", lambda: tmp_path)
    assert PolicyConfig().parallel_calls(), "a trained policy writes the two calls a comparison needs"
    assert make_policy(PolicyConfig()).parallel_tool_calls is True
    assert not PolicyConfig(parallel_tool_calls=False).parallel_calls(), "the setting wins"
    assert PolicyConfig(kind="openai", model="m").parallel_calls()


def test_the_repeat_guard_is_on_by_default_and_can_be_turned_off():
    from recagent.agents.config import PolicyConfig, make_policy

    assert make_policy(PolicyConfig(adapter=None)).no_repeat_calls is True
    assert make_policy(PolicyConfig(adapter=None, no_repeat_calls=False)).no_repeat_calls is False
