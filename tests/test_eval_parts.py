"""Evaluation parts: requests and candidates, the simulated user and its leak audit, tool-call accuracy, candidate mode."""

from __future__ import annotations

import json

import numpy as np
import pytest
from langchain_core.messages import AIMessage

from recagent.agents import Agent, AgentConfig
from recagent.agents.policies.scripted import ScriptedPolicy, call, tool_calls
from recagent.evaluation.protocols import ORDERS, build_requests, ordered, sample_cases, sample_negatives
from recagent.evaluation.simulator import AttributeSimulator, LLMSimulator, TargetProfile, leaks, run_episode
from recagent.tools.env import ToolEnvConfig


def test_users_are_a_seeded_prefix_and_candidates_are_untouched_items(synthetic_split):
    ten, four = sample_cases(synthetic_split, "test", 10, seed=3), sample_cases(synthetic_split, "test", 4, seed=3)
    assert [c.user for c in four] == [c.user for c in ten[:4]]
    assert [c.user for c in sample_cases(synthetic_split, "test", 4, seed=4)] != [c.user for c in four]
    ds = synthetic_split.dataset
    for case in ten:
        neg = sample_negatives(synthetic_split, case, 15, seed=3)
        touched = set(ds.interactions.items[ds.interactions.users == case.user].tolist())
        assert len(set(neg)) == 15 and not set(neg) & touched and case.target not in neg
        assert neg == sample_negatives(synthetic_split, case, 15, seed=3)
    reqs = build_requests(synthetic_split, ten[:2], ["full", "position", "history"], 10, 16, [1, 3], seed=3)
    assert [r.protocol for r in reqs[:6]] == [
        "full",
        "cand:shuffled",
        "cand:target_first",
        "cand:target_last",
        "hist:1",
        "hist:3",
    ]
    first, last, shuffled = reqs[2].candidates, reqs[3].candidates, reqs[1].candidates
    assert sorted(first) == sorted(last) == sorted(shuffled) and len(first) == 16
    assert first[0] == reqs[0].target and last[-1] == reqs[0].target
    assert list(reqs[5].history) == list(ten[0].history[-3:]) and list(reqs[5].seen) == list(ten[0].history)
    with pytest.raises(ValueError, match="unknown order"):
        ordered(list(first), reqs[0].target, "middle", 0, 0)
    assert set(ORDERS) == {"shuffled", "target_first", "target_last"}


def _target(ml100k, title_start):
    cat = ml100k.items
    i = next(j for j, t in enumerate(cat.titles) if t.startswith(title_start))
    return TargetProfile.from_catalog(cat, i, np.ones(len(cat.ids)))


def test_leak_audit_finds_titles_and_ids_but_not_attributes(ml100k):
    phantom = _target(ml100k, "Phantom, The")
    assert leaks("Could it be The Phantom?", phantom) == [f"title {phantom.title!r}"]
    assert leaks(f"I mean [{phantom.item_id}]", phantom) == [f"id {phantom.item_id}"]
    assert leaks(f"item id {phantom.item_id}", phantom) and not leaks(f"about {phantom.item_id}0 votes", phantom)
    assert leaks("phantoms are fun, an action film from the 1990s", phantom) == []


def test_the_attribute_simulator_never_says_the_title_of_any_ml100k_item(ml100k):
    cat, pop = ml100k.items, np.bincount(ml100k.interactions.items, minlength=len(ml100k.items.ids))
    answers = [
        "Here are some: Heat (1995) [1]",
        "What genre do you like?",
        "Do you prefer older or recent films?",
        "Any favourite decade?",
        "Try these",
        "Anything else?",
    ]
    said = 0
    for i in range(len(cat.ids)):
        target = TargetProfile.from_catalog(cat, i, pop)
        sim = AttributeSimulator(target)
        msgs = [sim.opening()] + [sim.reply(a, ["1"]) for a in answers]
        assert all(not leaks(m, target) for m in msgs), (target.title, msgs)
        said += len(msgs)
    assert said == 7 * len(cat.ids)
    # it answers questions from the attributes and reveals one new thing per miss
    t = TargetProfile("9", "Secret Film", 1994, ("Comedy", "Romance"), popular=False)
    sim = AttributeSimulator(t)
    assert sim.opening() == "Can you recommend a comedy film?"
    assert sim.reply("Which decade do you prefer?", []) == "Something from the 1990s."
    assert sim.reply("Here you go", ["3"]) == "None of those is what I have in mind. It should be a romance film."
    assert "lesser-known" in sim.reply("Here you go", ["3"])
    assert sim.reply("Here you go", ["3"]).endswith("Can you show me different ones?")


def test_a_leaking_llm_user_ends_the_episode_as_a_failure_before_the_agent_sees_it(synthetic_env, tmp_path):
    target = TargetProfile.from_catalog(synthetic_env.catalog, 5, synthetic_env.popularity)
    llm_user = ScriptedPolicy(script=[AIMessage(f"I want {target.title}, obviously")])
    agent_policy = ScriptedPolicy(script=[])
    agent = Agent.from_config(
        AgentConfig(tools=ToolEnvConfig(dataset="synthetic")),
        policy=agent_policy,
        env=synthetic_env,
        db_path=tmp_path / "s.sqlite",
    )
    sim = LLMSimulator(target, llm_user)
    assert target.title not in llm_user.calls[0][0].content if llm_user.calls else target.title not in sim._system
    ep = run_episode(
        agent, sim, target, synthetic_env.dataset.users.ids[0], max_turns=3, session="x", catalog=synthetic_env.catalog
    )
    assert ep.leaked == [f"title {target.title!r}"] and not ep.success and ep.turns == 0
    assert agent_policy.calls == []  # the leaking message never reached the agent


def test_candidate_mode_ranks_only_the_candidates_and_its_fallback_ignores_their_order(synthetic_env, tmp_path):
    cat = synthetic_env.catalog
    pool = [cat.ids[i] for i in range(10, 22)]
    outside = cat.ids[40]
    cfg = AgentConfig(tools=ToolEnvConfig(dataset="synthetic"), max_steps=2, k=5)
    # an answer naming an item outside the candidates is sent back; out of budget, the fallback ranks the candidates
    policy = ScriptedPolicy(script=[AIMessage(json.dumps([outside, *pool[:4]])), AIMessage(json.dumps([outside]))])
    agent = Agent.from_config(cfg, policy=policy, env=synthetic_env, db_path=tmp_path / "a.sqlite")
    a = agent.recommend(synthetic_env.dataset.users.ids[3], candidates=pool)
    assert [s.kind for s in a.trace][:1] == ["rejected_answer"] and a.trace[0].result_item_ids == [outside]
    assert "[" + pool[0] + "]" in policy.calls[0][0].content and outside not in a.recommended
    assert len(a.recommended) == 5 and set(a.recommended) <= set(pool) and a.policy_answer == json.dumps([outside])
    policy2 = ScriptedPolicy(script=[AIMessage("no idea"), AIMessage("still no idea")])
    b = Agent.from_config(cfg, policy=policy2, env=synthetic_env, db_path=tmp_path / "b.sqlite").recommend(
        synthetic_env.dataset.users.ids[3], candidates=list(reversed(pool))
    )
    assert b.recommended == a.recommended and b.filled == 5
    # a rank tool over the saved candidate set works inside the episode
    policy3 = ScriptedPolicy(
        script=[
            tool_calls(
                call("rank_items", {"user_id": synthetic_env.dataset.users.ids[3], "candidates": "candidates", "k": 5})
            ),
            AIMessage("[]"),
        ]
    )
    c = Agent.from_config(cfg, policy=policy3, env=synthetic_env, db_path=tmp_path / "c.sqlite").recommend(
        synthetic_env.dataset.users.ids[3], candidates=pool
    )
    assert c.trace[0].valid and set(c.trace[0].result_item_ids) <= set(pool) and c.recommended == a.recommended


@pytest.fixture(scope="module")
def synth_run(ml100k_env, tmp_path_factory):
    from recagent.synth.config import SynthConfig
    from recagent.synth.pipeline import synthesize

    out = tmp_path_factory.mktemp("synth-eval")
    synthesize(SynthConfig.build(n=24, seed=11, test_fraction=0.5, exports=[]), out, env=ml100k_env, progress=False)
    return out


@pytest.fixture(scope="module")
def synth_test_rows(synth_run):
    from recagent.synth.pipeline import read_rows

    return read_rows(synth_run / "test.jsonl")


def test_the_policys_training_dialogs_are_found_through_its_checkpoints_and_checked(
    synth_run, synth_test_rows, ml100k_split, tmp_path
):
    import yaml

    from recagent.evaluation.leakage import check_policy_data, training_data_dirs
    from recagent.synth.leakage import held_items
    from recagent.synth.pipeline import read_rows
    from recagent.tools.data.split import LeakageError

    sft, rl, other = tmp_path / "sft", tmp_path / "rl", tmp_path / "other-synth"
    sft.mkdir()
    rl.mkdir()
    (sft / "sft_run.json").write_text(json.dumps({"data_dir": str(synth_run), "base_model": str(tmp_path / "base")}))
    (rl / "rl_config.yaml").write_text(yaml.safe_dump({"data_dir": str(other), "base_model": str(sft)}))
    assert training_data_dirs(rl) == [other, synth_run] and training_data_dirs(None) == []
    notes = check_policy_data(ml100k_split, [synth_run], synth_test_rows)
    assert "no leaks" in notes[0]
    # a training answer that names one of its user's held-out items is refused
    rows = read_rows(synth_run / "train.jsonl")
    row = rows[0]
    held = sorted(held_items(ml100k_split)[row["meta"]["user_id"]])[0]
    last = next(m for m in reversed(row["messages"]) if m["role"] == "assistant" and m.get("content"))
    last["content"] += f" Also try [{held}]."
    other.mkdir()
    (other / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(LeakageError, match="leak evaluation data.*valid/test items"):
        check_policy_data(ml100k_split, training_data_dirs(rl), synth_test_rows)
    with pytest.raises(LeakageError, match="which is gone"):
        check_policy_data(ml100k_split, [tmp_path / "nowhere"])


def _oracle(tasks, mutate=None):
    """A policy that answers each task with its gold calls (optionally mutated)."""
    from langchain_core.messages import AIMessage as AI

    gold = {}
    for t in tasks:
        msg = t.sample.messages[len(t.messages)]
        calls = []
        for tc in msg["tool_calls"]:
            args = json.loads(tc["function"]["arguments"])
            calls.append(
                {
                    "name": tc["function"]["name"],
                    "args": mutate(args) if mutate else args,
                    "id": tc["id"],
                    "type": "tool_call",
                }
            )
        gold[(len(t.messages), t.messages[-1]["content"])] = calls

    def step(messages):
        return AI("", tool_calls=gold[(len(messages), messages[-1].content)])

    return step


def test_tool_call_accuracy_passes_gold_calls_and_fails_wrong_ones(synth_test_rows, ml100k_env):
    from recagent.evaluation.tool_calls import call_tasks, evaluate_task

    tasks = call_tasks(synth_test_rows)
    assert tasks and {t.kind for t in tasks} and all(t.entry["ground_truth"] for t in tasks)

    class Keyed(ScriptedPolicy):
        def _generate(self, messages, stop=None, run_manager=None, **kw):
            from langchain_core.outputs import ChatGeneration, ChatResult

            return ChatResult(generations=[ChatGeneration(message=self.script[0](messages))])

    good = [evaluate_task(Keyed(script=[_oracle(tasks)]), t, ml100k_env) for t in tasks]
    assert all(o.ast_ok and o.exec_ok for o in good), [
        (o.ast_error, o.exec_error) for o in good if not (o.ast_ok and o.exec_ok)
    ]

    def bump_k(args):
        return {**args, **({"k": args["k"] + 1} if "k" in args else {"k": 3})}

    bad = [evaluate_task(Keyed(script=[_oracle(tasks, bump_k)]), t, ml100k_env) for t in tasks]
    assert not any(o.ast_ok for o in bad)
    assert (
        sum(not o.exec_ok for o in bad) >= len(bad) // 2
    )  # a bigger k returns more items (except filters that run dry)
    with pytest.raises(ValueError, match="test dialogs only"):
        call_tasks([{**synth_test_rows[0], "meta": {**synth_test_rows[0]["meta"], "split": "train"}}])


def test_classify_shipped_counts_what_no_tool_candidate_or_fill_supports(synthetic_env):
    from recagent.agents.grounding import citation
    from recagent.evaluation.shipped import classify_shipped

    cat = synthetic_env.catalog

    def disp(i):
        return cat.display(cat.index_of[i])

    # list-wise: the last `filled` ids are the fallback's; given candidates are supported
    s = classify_shipped(["1", "2", "3", "4"], 2, {"1"}, cat)
    assert s.items == ["1", "2", "3", "4"] and s.unsupported == ["2"]
    assert classify_shipped(["1", "2", "3", "4"], 2, {"1"}, cat, pool=("2",)).unsupported == []
    assert classify_shipped(["1", "2"], 0, set(), cat).unsupported == ["1", "2"]
    # chat: what the answer text names ships too, cited either way; a mention of no catalog item is unsupported as well
    text = f"Try {citation('1', disp('1'))}, {disp('5')} [5] or [9999]."
    s = classify_shipped(["1"], 0, {"1", "5"}, cat, answer=text)
    assert s.items == ["1", "5", "[9999]"] and s.unsupported == ["[9999]"]
    assert classify_shipped(["1"], 0, {"1"}, cat, answer=f"Or {disp('7')}, maybe.").unsupported == ["7"]
    assert classify_shipped(["1"], 0, {"1", "7"}, cat, answer=f"Or {disp('7')}, maybe.").unsupported == []


def _popular_and_invented(env, avoid):
    """Three popular item ids (what ``popular_items`` k=3 returns) and an id no tool call of the test returns."""
    from recagent.tools.recommender_tools import build_registry

    top = [it["item_id"] for it in build_registry(env.session()).call("popular_items", {"k": 3}).result["items"]]
    return top, next(i for i in env.catalog.ids if i not in top and i != avoid)


def test_a_simulated_conversation_counts_unsupported_items_only_when_they_are_shipped(
    synthetic_env, tmp_path, monkeypatch
):
    from eval_policies import accept_every_answer

    import recagent.agents.graph as graph
    from recagent.agents.grounding import citation

    cat = synthetic_env.catalog
    target = TargetProfile.from_catalog(cat, 50, synthetic_env.popularity)
    uid = synthetic_env.dataset.users.ids[3]
    top, invented = _popular_and_invented(synthetic_env, target.item_id)

    def cite(i):
        return citation(i, cat.display(cat.index_of[i]))

    def script(*answers):
        return [tool_calls(call("popular_items", {"k": 3})), *[AIMessage(a) for a in answers]]

    cfg = AgentConfig(tools=ToolEnvConfig(dataset="synthetic"), max_steps=4)
    bad, good = f"Try {cite(top[0])} or {cite(invented)}.", f"Try {cite(top[0])}."
    # the answer check sends the answer naming an item no tool returned back; only the supported one ships
    policy = ScriptedPolicy(script=script(bad, good))
    agent = Agent.from_config(cfg, policy=policy, env=synthetic_env, db_path=tmp_path / "a.sqlite")
    ep = run_episode(
        agent, AttributeSimulator(target), target, uid, max_turns=1, session="s", catalog=synthetic_env.catalog
    )
    assert ep.error is None and len(policy.calls) == 3 and ep.messages[-1]["content"] == good
    assert ep.unsupported_shipped == [] and ep.shipped_items == 1 and ep.messages[-1]["unsupported_shipped"] == []
    # with a broken check the same answer ships, and the evaluation says so
    monkeypatch.setattr(graph, "check", accept_every_answer)
    agent = Agent.from_config(
        cfg, policy=ScriptedPolicy(script=script(bad)), env=synthetic_env, db_path=tmp_path / "b.sqlite"
    )
    ep = run_episode(
        agent, AttributeSimulator(target), target, uid, max_turns=1, session="s", catalog=synthetic_env.catalog
    )
    assert ep.error is None and ep.messages[-1]["content"] == bad
    assert ep.unsupported_shipped == [invented] and ep.shipped_items == 2


def test_the_listwise_agent_system_reports_unsupported_items_it_ships(synthetic_env, tmp_path, monkeypatch):
    from eval_policies import accept_every_answer

    import recagent.agents.graph as graph
    from recagent.evaluation.protocols import Request
    from recagent.evaluation.systems import AgentSystem

    cat = synthetic_env.catalog
    pool, outside = tuple(cat.ids[i] for i in range(10, 22)), cat.ids[40]
    empty = np.asarray([], dtype=np.int64)
    req = Request(
        protocol="cand:shuffled",
        user=3,
        user_id=synthetic_env.dataset.users.ids[3],
        target=pool[0],
        history=empty,
        seen=empty,
        k=5,
        candidates=pool,
    )
    cfg = AgentConfig(tools=ToolEnvConfig(dataset="synthetic"), max_steps=2, k=5)
    answer = AIMessage(json.dumps([outside, *pool[:4]]))

    def system(name, *script):
        return AgentSystem(
            Agent.from_config(
                cfg, policy=ScriptedPolicy(script=list(script)), env=synthetic_env, db_path=tmp_path / f"{name}.sqlite"
            )
        )

    # the raw answer names an item outside the candidates; the check keeps it out of the delivered list
    kept = system("checked", answer, AIMessage(json.dumps([outside]))).answer(req)
    assert outside in kept.raw_ids and outside not in kept.ranked and kept.filled == 5
    assert kept.unsupported_shipped == [] and kept.shipped_items == 5
    monkeypatch.setattr(graph, "check", accept_every_answer)
    shipped = system("broken", answer).answer(req)
    assert shipped.ranked == [outside, *pool[:4]] and shipped.filled == 0
    assert shipped.unsupported_shipped == [outside] and shipped.shipped_items == 5
    # a conventional recommender's response does not measure it
    from recagent.evaluation.systems import RecommenderSystem

    rec = RecommenderSystem("pop", synthetic_env.models["pop"], cat.ids, cat.index_of).answer(req)
    assert rec.unsupported_shipped is None and rec.shipped_items is None
