"""The agent loop, deterministically: a scripted policy drives real tools over real (synthetic) data."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage
from pydantic import Field

from recagent.agents import Agent, AgentConfig
from recagent.agents.policies.scripted import ScriptedPolicy, call, tool_calls
from recagent.errors import RecagentError
from recagent.tools.env import ToolEnv, ToolEnvConfig


@pytest.fixture()
def env(synthetic_env):
    return synthetic_env


def make_agent(env, tmp_path, script, **cfg):
    policy = ScriptedPolicy(script=list(script))
    config = AgentConfig(tools=ToolEnvConfig(dataset="synthetic"), **cfg)
    return Agent.from_config(config, policy=policy, env=env, db_path=tmp_path / "sessions.sqlite"), policy


def last_tool_items(messages, n=3):
    """Scripted step: answer with the first n items of the latest successful tool result."""
    for m in reversed(messages):
        if m.type == "tool" and m.status == "success":
            items = m.artifact["items"][:n]
            return AIMessage("Try " + "; ".join(f"{it['title']} ({it['year']}) [{it['item_id']}]" for it in items))
    raise AssertionError("no tool result to answer from")


def test_parallel_calls_run_and_are_traced(env, tmp_path):
    agent, policy = make_agent(
        env,
        tmp_path,
        [
            tool_calls(call("popular_items", {"k": 3}, "c1"), call("retrieve_for_user", {"user_id": 5, "k": 4}, "c2")),
            last_tool_items,
        ],
    )
    r = agent.chat("something good", session="s")
    calls = [s for s in r.trace if s.kind == "tool_call"]
    assert [(s.tool, s.call_id, s.valid) for s in calls] == [
        ("popular_items", "c1", True),
        ("retrieve_for_user", "c2", True),
    ]
    assert len(calls[1].result_item_ids) == 4 and calls[0].result_summary.startswith("3 items:")
    assert r.trace[-1].kind == "answer" and len(r.recommended) == 3
    assert set(r.recommended) <= set(calls[1].result_item_ids)
    # the policy saw both tool results before answering
    assert [m.tool_call_id for m in policy.calls[1] if m.type == "tool"] == ["c1", "c2"]


def test_invalid_calls_come_back_as_tool_errors(env, tmp_path):
    bad = AIMessage(
        "",
        invalid_tool_calls=[
            {"name": "popular_items", "args": "{k: 3", "id": "bad1", "error": "bad JSON", "type": "invalid_tool_call"}
        ],
    )
    agent, policy = make_agent(
        env,
        tmp_path,
        [
            tool_calls(
                call("teleport", {}, "t1"),
                call("popular_items", {"k": 500}, "t2"),
                call("filter_items", {"genres": ["Jazz"]}, "t3"),
            ),
            bad,
            tool_calls(call("popular_items", {"k": 2}, "ok")),
            last_tool_items,
        ],
    )
    r = agent.chat("hi", session="s")
    kinds = [(s.kind, s.tool, s.valid) for s in r.trace]
    assert kinds[:4] == [
        ("tool_call", "teleport", False),
        ("tool_call", "popular_items", False),
        ("tool_call", "filter_items", False),
        ("invalid_call", "popular_items", False),
    ]
    errors = {m.tool_call_id: m.artifact for m in policy.calls[1] if m.type == "tool"}
    assert (
        errors["t1"]["error"] == "unknown_tool"
        and errors["t2"]["field"] == "k"
        and "valid genres" in errors["t3"]["message"]
    )
    assert [m for m in policy.calls[2] if m.type == "tool"][-1].artifact["error"] == "invalid_call"
    assert r.recommended and r.trace[-1].kind == "answer"


def test_hallucinated_items_are_sent_back_then_fixed(env, tmp_path):
    agent, policy = make_agent(
        env,
        tmp_path,
        [
            tool_calls(call("popular_items", {"k": 3})),
            AIMessage("Watch Imaginary Film (1999) and [2] and [424242]."),
            last_tool_items,
        ],
    )
    r = agent.chat("hi", session="s")
    rejected = [s for s in r.trace if s.kind == "rejected_answer"]
    assert len(rejected) == 1 and "Imaginary Film (1999)" in rejected[0].error and "[424242]" in rejected[0].error
    feedback = policy.calls[2][-1]
    assert feedback.type == "human" and "not sent" in feedback.content
    assert r.trace[-1].kind == "answer" and "Imaginary" not in r.answer


def test_an_unsupported_answer_is_never_shipped_when_the_budget_runs_out(env, tmp_path):
    bad = AIMessage("Watch [2] and Imaginary Film (1999).")
    agent, _ = make_agent(env, tmp_path, [tool_calls(call("popular_items", {"k": 3})), bad, bad], max_steps=3)
    r = agent.chat("hi", session="s")
    assert [s.kind for s in r.trace].count("rejected_answer") == 2  # sent back once, then replaced
    assert "Imaginary" not in r.answer and r.answer.startswith("Here is what I found")
    grounded = set(agent.state("s")["grounded_ids"])
    assert r.recommended and set(r.recommended) <= grounded


def test_budget_ends_in_an_answer_from_the_latest_result(env, tmp_path):
    agent, _ = make_agent(env, tmp_path, [tool_calls(call("popular_items", {"k": 4}))] * 2, max_steps=2)
    r = agent.chat("hi", session="s")
    assert r.answer.startswith("Here is what I found") and len(r.recommended) == 4
    assert all(f"[{i}]" in r.answer for i in r.recommended)


def test_a_tool_raising_is_an_internal_error_not_a_crash(env, tmp_path, monkeypatch):
    monkeypatch.setattr(ToolEnv, "score", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("model file vanished")))
    agent, policy = make_agent(
        env,
        tmp_path,
        [
            tool_calls(call("rank_items", {"user_id": 1, "item_ids": [1, 2]})),
            tool_calls(call("popular_items", {"k": 2})),
            last_tool_items,
        ],
    )
    r = agent.chat("hi", session="s")
    assert r.trace[0].valid is False and "model file vanished" in r.trace[0].error
    assert r.recommended


def test_sessions_persist_across_restarts_and_stay_apart(env, tmp_path):
    script = [tool_calls(call("popular_items", {"k": 5, "save_as": "pop5"})), last_tool_items]
    agent, _ = make_agent(env, tmp_path, script)
    agent.chat("first", session="alice", user_id="3")
    agent.close()
    # a new process would build a new Agent on the same database
    again, policy = make_agent(
        env,
        tmp_path,
        [
            tool_calls(call("rank_items", {"user_id": 3, "candidates": "pop5", "k": 2})),
            last_tool_items,
        ],
    )
    r = again.chat("second", session="alice")
    assert r.trace[0].valid, r.trace[0].error  # the candidate set saved in turn 1 survived the restart
    seen = [m.content for m in policy.calls[0] if m.type == "human"]
    assert seen == ["first", "second"]
    assert again.state("alice")["user"]["user_id"] == "3" and again.state("alice")["turn"] == 1
    assert again.state("bob") == {}
    other, policy_b = make_agent(env, tmp_path, [AIMessage("Hello!")])
    other.chat("hi", session="bob")
    assert [m.content for m in policy_b.calls[0] if m.type == "human"] == ["hi"]  # nothing from alice


def test_a_failing_policy_leaves_the_session_unchanged(env, tmp_path):
    def boom(_messages):
        raise ConnectionError("server went away")

    agent, _ = make_agent(env, tmp_path, [tool_calls(call("popular_items", {"k": 2})), last_tool_items, boom])
    agent.chat("one", session="s")
    before = [m.content for m in agent.state("s")["messages"]]
    with pytest.raises(RecagentError, match="server went away.*left as it was"):
        agent.chat("two", session="s")
    assert [m.content for m in agent.state("s")["messages"]] == before


def test_listwise_returns_k_catalog_ids(env, tmp_path):
    def answer(messages):
        items = next(m for m in reversed(messages) if m.type == "tool").artifact["items"]
        return AIMessage(json.dumps([int(it["item_id"]) for it in items[:3]]))  # fewer than k

    agent, policy = make_agent(
        env,
        tmp_path,
        [
            tool_calls(call("retrieve_for_user", {"user_id": 7, "k": 8})),
            answer,
            answer,
        ],
        k=5,
        max_steps=3,
    )
    r = agent.recommend("7", k=5)
    assert len(r.recommended) == 5 and len(set(r.recommended)) == 5
    assert all(i in env.catalog.index_of for i in r.recommended)
    assert r.filled == 2 and "user 7" in policy.calls[0][0].content
    seen = {env.catalog.ids[i] for i in env.history(env.user("7"))}
    assert not set(r.recommended) & seen


def test_unknown_user_is_a_clear_error(env, tmp_path):
    agent, _ = make_agent(env, tmp_path, [])
    with pytest.raises(RecagentError, match="unknown user '99999'"):
        agent.recommend("99999")


def test_listwise_without_any_tool_result_is_completed_by_the_default_model(env, tmp_path):
    from recagent.tools.recommenders import Query

    agent, _ = make_agent(env, tmp_path, [AIMessage("no idea"), AIMessage("still no idea")], k=4, max_steps=2)
    r = agent.recommend("7", k=4)
    u = env.user("7")
    expected, _ = env.models["sasrec"].topk(Query(env.history(u), u), 4, exclude=env.history(u))
    assert r.recommended == [env.catalog.ids[i] for i in expected] and r.filled == 4


def test_stated_likes_and_dislikes_reach_the_profile_and_prompt(env, tmp_path):
    agent, policy = make_agent(env, tmp_path, [AIMessage("Noted."), AIMessage("Sure.")])
    agent.chat("I love comedies but no horror please", session="p")
    agent.chat("Actually I am into horror now", session="p")
    user = agent.state("p")["user"]
    assert user["likes"] == ["Comedy", "Horror"] and user["dislikes"] == []
    assert "they like Comedy" in policy.calls[0][0].content and "they dislike Horror" in policy.calls[0][0].content


def test_out_of_steps_without_results_falls_back_to_the_recommender(env, tmp_path):
    bad = tool_calls(call("filter_items", {"candidates": "nothing"}))
    agent, _ = make_agent(env, tmp_path, [bad, bad], max_steps=2)
    r = agent.chat("something please", session="s", user_id="7")
    fallback = [s for s in r.trace if s.call_id == "fallback"]
    assert len(fallback) == 1 and fallback[0].tool == "retrieve_for_user"
    assert r.recommended == fallback[0].result_item_ids and len(r.recommended) == 5
    assert r.answer.startswith("Here is what I found") and set(r.recommended) <= set(agent.state("s")["grounded_ids"])
    liked, _ = make_agent(env, tmp_path, [bad, bad], max_steps=2)
    r1 = liked.chat("a horror film please", session="h", user_id="7")
    assert r1.trace[-2].tool == "rank_items" and len(r1.recommended) == 5
    assert all("Horror" in env.catalog.genres[env.catalog.index_of[i]] for i in r1.recommended)
    anon, _ = make_agent(env, tmp_path, [bad, bad], max_steps=2)
    r2 = anon.chat("I love comedies", session="t")
    assert all("Comedy" in env.catalog.genres[env.catalog.index_of[i]] for i in r2.recommended)


class ConstrainedScriptedPolicy(ScriptedPolicy):
    """A scripted policy that passes for a grammar-constrained local model, so the graph hands it answer rules."""

    rules: list[dict] = Field(default_factory=list)  # the answer-rule keywords of each call

    def grammars(self):  # what AgentContext.grounded_decoding looks for
        raise NotImplementedError

    def bind_tools(self, tools, **kwargs):  # the tool choice reaches _generate, as it reaches a real policy
        return self.bind(tool_choice=kwargs.get("tool_choice", "auto"))

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        keys = ("cite_items", "cite_required", "listwise_k", "tool_choice", "call_ids")
        self.rules.append({k: kwargs[k] for k in keys if k in kwargs})
        return super()._generate(messages, stop, run_manager, **kwargs)


def test_an_answer_right_after_a_tools_items_is_required_to_cite_one_of_them(env, tmp_path):
    from recagent.agents.config import PolicyConfig

    policy = ConstrainedScriptedPolicy(
        script=[
            tool_calls(call("popular_items", {"k": 3}, "c1")),
            last_tool_items,
            tool_calls(call("filter_items", {"genres": ["Jazz"]}, "bad")),  # refused: no items this step
            AIMessage("Sorry, there is no such genre."),
        ]
    )
    config = AgentConfig(tools=ToolEnvConfig(dataset="synthetic"), policy=PolicyConfig(kind="local"))
    agent = Agent.from_config(config, policy=policy, env=env, db_path=tmp_path / "sessions.sqlite")
    first = agent.chat("something good", session="s")
    agent.chat("any jazz films?", session="s")
    popular = [s for s in first.trace if s.kind == "tool_call"][0].result_item_ids
    assert [r["cite_required"] for r in policy.rules] == [0, 3, 0, 0]  # all three: fewer than an answer shows
    assert [c.item_id for c in policy.rules[1]["cite_items"]] == popular  # what it must cite from
    assert len(policy.rules[2]["cite_items"]) == 3  # the conversation's items stay citable, just not required


def test_an_answer_cites_as_many_items_as_the_user_asked_for_else_as_many_as_a_synthesized_answer_shows(env, tmp_path):
    from recagent.agents.config import PolicyConfig
    from recagent.tools.result_text import ANSWER_SHOWS

    policy = ConstrainedScriptedPolicy(
        script=[
            tool_calls(call("popular_items", {"k": 10}, "c1")),
            last_tool_items,
            tool_calls(call("popular_items", {"k": 10}, "c2")),
            last_tool_items,
        ]
    )
    config = AgentConfig(tools=ToolEnvConfig(dataset="synthetic"), policy=PolicyConfig(kind="local"))
    agent = Agent.from_config(config, policy=policy, env=env, db_path=tmp_path / "sessions.sqlite")
    agent.chat("two popular ones please", session="s")
    agent.chat("something else entirely", session="s")
    assert [r["cite_required"] for r in policy.rules] == [0, 2, 0, ANSWER_SHOWS]


def test_after_this_turns_results_an_answer_cites_only_them_and_later_turns_all_the_conversations(env, tmp_path):
    from recagent.agents.config import PolicyConfig
    from recagent.tools.recommender_tools import build_registry

    top3 = [it["item_id"] for it in build_registry(env.session()).call("popular_items", {"k": 3}).result["items"]]
    other = next(i for i in env.catalog.ids if i not in top3)
    policy = ConstrainedScriptedPolicy(
        script=[
            tool_calls(call("popular_items", {"k": 3}, "c1")),
            last_tool_items,
            tool_calls(call("get_item", {"item_id": other}, "c2")),  # a new turn's call: one other item
            AIMessage(f"Try {env.catalog.display(env.catalog.index_of[other])} [{other}]."),
            AIMessage("You're welcome."),  # a turn without calls
        ]
    )
    config = AgentConfig(tools=ToolEnvConfig(dataset="synthetic"), policy=PolicyConfig(kind="local"))
    agent = Agent.from_config(config, policy=policy, env=env, db_path=tmp_path / "sessions.sqlite")
    agent.chat("something good", session="s")
    agent.chat("and that one?", session="s")
    agent.chat("thanks", session="s")
    cited = [[c.item_id for c in r["cite_items"]] for r in policy.rules]
    assert cited[1] == top3
    assert cited[3] == [other], "the first turn's items are no answer to the second turn's request"
    assert set(cited[4]) == {*top3, other}, "without calls of its own, a turn may cite any item of the conversation"


def test_an_answer_to_a_turn_down_cites_none_of_the_items_turned_down_while_others_are_left(env, tmp_path):
    # simulated users were shown Willy Wonka again two turns after "None of those is what I have in mind."
    from recagent.agents.config import PolicyConfig
    from recagent.tools.recommender_tools import build_registry

    top = [it["item_id"] for it in build_registry(env.session()).call("popular_items", {"k": 5}).result["items"]]
    policy = ConstrainedScriptedPolicy(
        script=[
            tool_calls(call("popular_items", {"k": 3}, "c1")),
            last_tool_items,
            tool_calls(call("popular_items", {"k": 5}, "c2")),
            last_tool_items,
            tool_calls(call("popular_items", {"k": 3}, "c3")),  # only items turned down come back
            last_tool_items,
            tool_calls(call("popular_items", {"k": 5}, "c4")),
            last_tool_items,
            AIMessage("That is all I have."),  # a turn-down answered without a call of its own
        ]
    )
    config = AgentConfig(tools=ToolEnvConfig(dataset="synthetic"), policy=PolicyConfig(kind="local"))
    agent = Agent.from_config(config, policy=policy, env=env, db_path=tmp_path / "sessions.sqlite")
    agent.chat("something good", session="s")
    agent.chat("none of those grab me, got others?", session="s")
    agent.chat("hmm, not those either", session="s")
    agent.chat("more of the popular ones please", session="s")  # turns nothing down: any of them again
    agent.chat("none of those either", session="s")
    cited = [[c.item_id for c in r["cite_items"]] for r in policy.rules]
    assert cited[1] == top[:3]
    assert cited[3] == top[3:], "the three turned down are no answer to 'none of those'"
    assert cited[5] == top[:3], "with nothing else left, the answer may cite what the tool returned"
    assert cited[7] == top
    assert set(cited[8]) == set(top), "without results of its own, the answer may cite any item of the conversation"


def test_calls_may_name_the_conversations_users_and_items_only(env, tmp_path):
    from recagent.agents.config import PolicyConfig

    user = env.dataset.users.ids[2]
    policy = ConstrainedScriptedPolicy(
        script=[tool_calls(call("popular_items", {"k": 3}, "c1")), last_tool_items, AIMessage("Bye.")]
    )
    config = AgentConfig(tools=ToolEnvConfig(dataset="synthetic"), policy=PolicyConfig(kind="local"))
    agent = Agent.from_config(config, policy=policy, env=env, db_path=tmp_path / "sessions.sqlite")
    first = agent.chat(f"I'm user {user}, anything good?", session="s")
    agent.chat("thanks", session="s")
    returned = [s for s in first.trace if s.kind == "tool_call"][0].result_item_ids
    assert policy.rules[0]["call_ids"].users == (user,)
    assert set(returned) <= set(policy.rules[1]["call_ids"].items)  # what tools returned may be called on
    assert policy.rules[2]["call_ids"].users == (user,)  # later turns keep the conversation's ids


def test_a_call_repeated_within_the_turn_makes_the_next_step_answer(env, tmp_path):
    from recagent.agents.config import PolicyConfig

    policy = ConstrainedScriptedPolicy(
        script=[
            tool_calls(call("popular_items", {"k": 3}, "c1")),
            tool_calls(call("popular_items", {"k": 4}, "c2")),  # other arguments: a new call
            tool_calls(call("popular_items", {"k": 3}, "c3")),  # the first call again
            last_tool_items,
            tool_calls(call("popular_items", {"k": 3}, "c4")),  # a new turn: calls of the last one do not count
            last_tool_items,
        ]
    )
    config = AgentConfig(tools=ToolEnvConfig(dataset="synthetic"), policy=PolicyConfig(kind="local"))
    agent = Agent.from_config(config, policy=policy, env=env, db_path=tmp_path / "sessions.sqlite")
    first = agent.chat("something good", session="s")
    agent.chat("and again", session="s")
    assert [r["tool_choice"] for r in policy.rules] == ["auto", "auto", "auto", "none", "auto", "auto"]
    assert first.policy_answer is not None and first.recommended  # it answered from the repeated call's items


def test_a_listwise_answer_may_cite_the_tools_items_in_their_order_latest_result_first(env, tmp_path):
    from recagent.agents.config import PolicyConfig

    policy = ConstrainedScriptedPolicy(
        script=[
            tool_calls(call("retrieve_for_user", {"user_id": 7, "k": 6}, "c1")),
            tool_calls(call("popular_items", {"k": 6}, "c2")),
            AIMessage("[]"),
        ]
    )
    config = AgentConfig(tools=ToolEnvConfig(dataset="synthetic"), policy=PolicyConfig(kind="local"), max_steps=3)
    agent = Agent.from_config(config, policy=policy, env=env, db_path=tmp_path / "sessions.sqlite")
    r = agent.recommend("7", k=5)
    retrieved, popular = [s.result_item_ids for s in r.trace if s.kind == "tool_call"][:2]
    seen = {env.catalog.ids[i] for i in env.seen(env.user("7"))}
    expected = [i for i in dict.fromkeys([*popular, *retrieved]) if i not in seen]
    assert set(popular) - set(retrieved) and set(retrieved) - set(popular)  # two rankings to put in order
    assert [c.item_id for c in policy.rules[-1]["cite_items"]] == expected and policy.rules[-1]["listwise_k"] == 5


def test_given_candidates_no_tool_returned_are_citable_in_an_order_their_given_order_cannot_change(env, tmp_path):
    from recagent.agents.config import PolicyConfig

    pool = [env.catalog.ids[i] for i in range(20, 32)]
    orders = []
    for given in (pool, pool[::-1]):
        policy = ConstrainedScriptedPolicy(script=[AIMessage("[]"), AIMessage("[]")])
        config = AgentConfig(tools=ToolEnvConfig(dataset="synthetic"), policy=PolicyConfig(kind="local"), max_steps=2)
        agent = Agent.from_config(config, policy=policy, env=env, db_path=tmp_path / f"s{len(orders)}.sqlite")
        agent.recommend("7", k=3, candidates=given)
        orders.append([c.item_id for c in policy.rules[0]["cite_items"]])
    assert sorted(orders[0]) == sorted(pool) and orders[0] == orders[1]


def test_a_look_up_answer_has_to_cite_the_item_looked_up_not_the_near_titles_offered_besides(env, tmp_path):
    from recagent.agents.config import PolicyConfig

    policy = ConstrainedScriptedPolicy(
        script=[tool_calls(call("get_item", {"title": "Horror Stroy"}, "c1")), AIMessage("It is there.")]
    )
    config = AgentConfig(tools=ToolEnvConfig(dataset="synthetic"), policy=PolicyConfig(kind="local"))
    agent = Agent.from_config(config, policy=policy, env=env, db_path=tmp_path / "sessions.sqlite")
    r = agent.chat("tell me about that one film", session="s")
    looked_up = [s for s in r.trace if s.kind == "tool_call"][0]
    assert len(looked_up.result_item_ids) > 1  # the item and near titles
    assert policy.rules[1]["cite_required"] == 1
