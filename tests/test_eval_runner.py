"""``recagent eval`` end to end on synthetic data: same users for every system, measured bias, resume, leakage refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_policies import FirstListedPolicy, InventingPolicy, accept_every_answer

from recagent.agents import Agent
from recagent.errors import RecagentError
from recagent.evaluation.config import EvalConfig
from recagent.evaluation.leakage import check_models, check_split_and_histories
from recagent.evaluation.runner import RECORDS, load_env, run_eval
from recagent.tools.data.split import LeakageError


def _config(dataset_dir, out, **extra):
    values = dict(
        dataset=dataset_dir,
        users=12,
        out=str(out),
        history_lengths=[1, 3],
        bootstrap=50,
        simulator={"users": 3, "max_turns": 2},
        protocols=["full", "candidates", "position", "history", "simulator"],
    )
    return EvalConfig.build(**{**values, **extra})


def _run(cfg, tmp_path, policy=None):
    env = load_env(cfg)
    agent = Agent.from_config(
        cfg.agent, policy=policy or FirstListedPolicy(), env=env, db_path=tmp_path / "sessions.sqlite"
    )
    return run_eval(cfg, env=env, agent=agent, progress=False), env


def _records(out):
    return [json.loads(line) for line in (out / RECORDS).read_text().splitlines()]


def test_every_system_answers_the_same_requests_and_the_report_measures_them(dataset_dir, tmp_path):
    out, env = _run(_config(dataset_dir, tmp_path / "ev"), tmp_path)
    res = json.loads((out / "results.json").read_text())
    rows = _records(out)
    assert len(res["users"]) == 12 and res["systems"] == ["pop", "itemknn", "bpr", "sasrec", "agent"]
    # the same users and the same candidate lists for every system
    for proto in ("full", "cand:shuffled", "cand:target_first", "cand:target_last", "hist:1", "hist:3"):
        per_system = {}
        for r in rows:
            if r["section"] == "rank" and r["protocol"] == proto:
                per_system.setdefault(r["system"], {})[r["user_id"]] = tuple(r["candidates"])
        assert len(per_system) == 5 and all(v == per_system["pop"] for v in per_system.values())
        assert sorted(per_system["pop"]) == sorted(res["users"])
    # the agent's full-ranking answer is retrieve_for_user with the default model (SASRec): identical lists
    full = {
        (r["system"], r["user_id"]): r["ranked"] for r in rows if r["section"] == "rank" and r["protocol"] == "full"
    }
    assert all(full[("agent", u)] == full[("sasrec", u)] for u in res["users"])
    assert res["utility"]["agent"]["full"]["NDCG@10"]["mean"] == res["utility"]["sasrec"]["full"]["NDCG@10"]["mean"]
    assert res["utility"]["agent (raw output)"]["full"] == res["utility"]["agent"]["full"]  # its own answer, unfilled
    # paired agent-minus-baseline NDCG@10 over the same users: zero against its own tool's model, the mean gap otherwise
    vs = res["agent_vs_baselines"]
    assert vs["agent - sasrec"]["full"]["NDCG@10"] == {"mean": 0.0, "ci_low": 0.0, "ci_high": 0.0, "n": 12}
    gap = res["utility"]["agent"]["full"]["NDCG@10"]["mean"] - res["utility"]["pop"]["full"]["NDCG@10"]["mean"]
    d = vs["agent - pop"]["full"]["NDCG@10"]
    assert d["mean"] == pytest.approx(gap, abs=1e-4) and d["ci_low"] <= d["mean"] <= d["ci_high"]
    # a ranker that keeps the listed order is maximally position-biased; score-based rankers are not biased at all
    pb = res["position_bias"]
    assert pb["agent"]["NDCG@10"]["target_first"] == 1.0 and pb["agent"]["NDCG@10"]["target_last"] == 0.0
    assert pb["agent"]["first_minus_last"]["mean"] == 1.0
    assert all(pb[s]["spread"] == 0.0 for s in ("pop", "itemknn", "bpr", "sasrec"))
    # raw answers of the scripted policy are well-formed lists of k catalog ids
    assert res["compliance"]["agent"]["full"]["compliance"]["mean"] == 1.0
    assert res["compliance"]["agent"]["full"]["hallucinated_slots"]["mean"] == 0.0
    # set-level numbers carry a bootstrap interval around the full-sample value
    for s in res["systems"]:
        cov = res["beyond_utility"][s]["coverage"]
        assert cov["ci_low"] <= cov["mean"] <= cov["ci_high"] and 0 < cov["mean"] <= 1
        lo, hi = res["fairness"][s]["NDCG@10_gap_ci"]
        assert lo <= res["fairness"][s]["NDCG@10_gap"] <= hi
    # beyond-utility and fairness are computed for every system on the full-ranking lists
    assert set(res["beyond_utility"]) == set(res["systems"]) and set(res["fairness"]) == set(res["systems"])
    assert res["simulator"]["episodes"] == 3 and res["simulator"]["leaked_episodes"] == 0
    assert 1 <= res["simulator"]["avg_turns_all"] <= 2
    # every answer the agent shipped is supported (tool results, candidates or fills): measured for every protocol,
    # for the agent only (conventional recommenders ship their own ranking)
    shipped = res["unsupported_shipped"]
    assert list(shipped) == ["agent"]
    assert list(shipped["agent"]) == [
        "full",
        "cand:shuffled",
        "cand:target_first",
        "cand:target_last",
        "hist:1",
        "hist:3",
        "simulator",
    ]
    assert all(
        b["unsupported"] == 0 and b["measured"] == b["n"] > 0 and b["share"]["mean"] == 0.0
        for b in shipped["agent"].values()
    )
    assert shipped["agent"]["full"]["shipped_items"] == 12 * 10
    assert shipped["agent"]["simulator"]["n"] == 3 and shipped["agent"]["simulator"]["shipped_items"] >= 3 * 5
    assert all(r["unsupported_shipped"] == [] for r in rows if r["system"] == "agent")
    assert all(r["unsupported_shipped"] is None for r in rows if r["section"] == "rank" and r["system"] != "agent")
    report = (out / "report.md").read_text()
    assert "**0 unsupported items shipped** in 72 list-wise answers and 3 simulated conversations." in report
    for section in ("Full ranking", "Candidate position bias", "History-length", "Beyond utility", "simulated user"):
        assert section in report
    for png in ("metric_bars.png", "position_bias.png", "history_length.png", "success_vs_turns.png"):
        assert (out / png).stat().st_size > 1000


def test_a_baseline_talks_to_the_same_simulated_users_paging_through_its_ranking(dataset_dir, tmp_path):
    cfg = _config(
        dataset_dir,
        tmp_path / "ev",
        users=4,
        baselines=["sasrec"],
        protocols=["simulator"],
        simulator={"users": 4, "max_turns": 3},
    )
    out, env = _run(cfg, tmp_path)
    res, rows = json.loads((out / "results.json").read_text()), _records(out)
    episodes = {(r["system"], r["key"]): r for r in rows if r["section"] == "simulator"}
    assert len(episodes) == 8 and {s for s, _ in episodes} == {"agent", "sasrec"}
    for (system, uid), ep in episodes.items():
        if system != "sasrec":
            continue
        u = env.dataset.users.index_of[uid]
        pages = [m["recommended"] for m in ep["messages"] if m["role"] == "assistant"]
        shown = [i for page in pages for i in page]
        # each turn is the next page of SASRec's ranking of the user's unseen items: never an item twice
        top, _ = env.model("sasrec").topk(env.query(u, env.history(u)), 10, exclude=env.seen(u))
        assert pages[0] == [env.catalog.ids[int(i)] for i in top]
        assert len(shown) == len(set(shown)) == 10 * ep["turns"]
        assert not set(shown) & {env.catalog.ids[int(i)] for i in env.seen(u)}
        assert ep["success"] == (ep["target"] in shown) and ep["unsupported_shipped"] == []
    assert res["simulator_baselines"]["sasrec"]["episodes"] == 4
    success = {
        s: [float(episodes[(s, u)]["success"]) for u in sorted({u for _, u in episodes})] for s in ("agent", "sasrec")
    }
    vs = res["agent_vs_baselines"]["agent - sasrec"]["simulator"]
    assert vs["n"] == 4 and vs["success@3"]["mean"] == pytest.approx(
        np.mean(success["agent"]) - np.mean(success["sasrec"])
    )
    assert (
        "- sasrec alone (each turn its next 10 unseen items, whatever was said): success@3"
        in (out / "report.md").read_text()
    )


def test_the_report_counts_the_unsupported_items_a_broken_answer_check_ships(dataset_dir, tmp_path, monkeypatch):
    import recagent.agents.graph as graph

    monkeypatch.setattr(graph, "check", accept_every_answer)  # the agent built below ships whatever its policy names
    cfg = _config(
        dataset_dir,
        tmp_path / "ev",
        users=3,
        baselines=["pop"],
        protocols=["full", "candidates", "simulator"],
        simulator={"users": 2, "max_turns": 1},
    )
    ids = load_env(cfg).catalog.ids
    out, _ = _run(cfg, tmp_path, InventingPolicy(extras=list(ids)))
    res, rows = json.loads((out / "results.json").read_text()), _records(out)
    shipped = res["unsupported_shipped"]["agent"]
    # every answer names one item that neither a tool returned nor the candidates hold
    for proto in ("full", "cand:shuffled"):
        b = shipped[proto]
        assert b["unsupported"] == b["answers_with_any"] == 3 and b["shipped_items"] == 30 and b["share"]["mean"] == 0.1
    assert shipped["simulator"]["unsupported"] == 2 and shipped["simulator"]["shipped_items"] == 2 * 6
    for r in rows:
        if r["section"] == "rank" and r["system"] == "agent":
            (bad,) = r["unsupported_shipped"]
            assert bad == r["ranked"][-1] and bad not in r["candidates"]
    # the raw output is made of real catalog items, so hallucinated slots alone would not show it
    assert res["compliance"]["agent"]["full"]["hallucinated_slots"]["mean"] == 0.0
    assert "pop" not in res["unsupported_shipped"]
    report = (out / "report.md").read_text()
    assert (
        "**8 unsupported items shipped** in 6 list-wise answers and 2 simulated conversations (8 of them with any)."
        in report
    )
    assert "| agent | simulated conversations (every turn) | 2 | 12 | 2 |" in report


def test_a_resumed_run_skips_finished_answers_and_refuses_another_config(dataset_dir, tmp_path):
    cfg = _config(dataset_dir, tmp_path / "ev", protocols=["full", "position"], users=6)
    out, _ = _run(cfg, tmp_path)
    lines = (out / RECORDS).read_text().splitlines()
    first = json.loads((out / "results.json").read_text())
    # simulate a kill in the middle of writing the last record
    (out / RECORDS).write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    out, _ = _run(cfg, tmp_path)
    again = _records(out)
    assert len(again) == len(lines)  # only the torn answer was redone
    assert json.loads((out / "results.json").read_text())["utility"] == first["utility"]
    with pytest.raises(RecagentError, match="different config.*seed"):
        _run(cfg.model_copy(update={"seed": 7}), tmp_path)
    # more users extend the run (the first six are the same people, their answers are kept) ...
    out, _ = _run(cfg.model_copy(update={"users": 8}), tmp_path)
    grown = _records(out)
    assert len(grown) == len(lines) + 2 * 4 * 5  # 2 new users x (full + 3 orders) x 5 systems
    assert grown[: len(lines)] == again
    # ... and fewer users report on the prefix without asking anything
    out, _ = _run(cfg.model_copy(update={"users": 4}), tmp_path)
    assert len(_records(out)) == len(grown)
    res = json.loads((out / "results.json").read_text())
    assert res["n_users"] == 4 and res["utility"]["sasrec"]["full"]["NDCG@10"]["n"] == 4


def test_leakage_checks_refuse_before_anything_is_asked(dataset_dir, tmp_path):
    cfg = _config(dataset_dir, tmp_path / "ev", part="valid")
    env = load_env(_config(dataset_dir, tmp_path / "ev"))  # tools see train + valid
    from recagent.evaluation.protocols import sample_cases

    cases = sample_cases(env.split, "valid", 5, 0)
    with pytest.raises(LeakageError, match="history_upto='train'.*validation target"):
        check_split_and_histories(env.split, cfg.part, cases, env)
    # a model without the digest of this split's training rows is refused, with the fix
    from recagent.paths import model_dir

    meta = model_dir("synthetic", "bpr") / "meta.json"
    data = json.loads(meta.read_text())
    data["train_digest"] = "0" * 64
    meta.write_text(json.dumps(data))
    with pytest.raises(LeakageError, match="bpr .*other data.*recagent recs train --model bpr"):
        check_models(env.split, {"bpr": model_dir("synthetic", "bpr")})
    del data["train_digest"]
    meta.write_text(json.dumps(data))
    with pytest.raises(LeakageError, match="does not record its training data"):
        run_eval(_config(dataset_dir, tmp_path / "ev2", include_agent=False), progress=False)
    assert not (tmp_path / "ev2" / RECORDS).exists()


def test_history_limited_tools_see_only_the_newest_items_but_still_exclude_everything_seen(synthetic_env):
    from recagent.tools.recommender_tools import build_registry

    u = int(np.argmax([len(synthetic_env.history(i)) for i in range(synthetic_env.dataset.n_users)]))
    uid = synthetic_env.dataset.users.ids[u]
    full = synthetic_env.history(u)
    view = synthetic_env.with_history_limit(2)
    assert list(view.history(u)) == list(full[-2:]) and list(view.session().history(u)) == list(full[-2:])
    reg = build_registry(view.session())
    hist = reg.call("get_user_history", {"user_id": uid, "last_n": 50}).result
    assert [it["item_id"] for it in hist["items"]] == [synthetic_env.catalog.ids[i] for i in full[-2:]]
    got = reg.call("retrieve_for_user", {"user_id": uid, "k": 20}).result["items"]
    assert not {it["item_id"] for it in got} & {synthetic_env.catalog.ids[i] for i in full}
    # user-factor models fold the short history in instead of using the learned user vector
    bpr = synthetic_env.models["bpr"]
    from recagent.tools.recommenders import Query

    want = bpr.score([Query(history=full[-2:], user=None)])[0]
    assert np.allclose(view.score("bpr", u, view.history(u)), want)
    with pytest.raises(ValueError, match="at least 1"):
        synthetic_env.with_history_limit(0)


def test_the_eval_command_runs_and_reports_bad_input_in_one_line(dataset_dir, tmp_path, capsys):
    from recagent.cli.app import main

    out = tmp_path / "cli"
    code = main(
        [
            "eval",
            "--no-agent",
            "--dataset",
            dataset_dir,
            "--users",
            "6",
            "--out",
            str(out),
            "--no-progress",
            "-o",
            "protocols=[full,position]",
            "-o",
            "bootstrap=20",
        ]
    )
    assert code == 0 and "NDCG@10" in (out / "report.md").read_text()
    assert json.loads((out / "results.json").read_text())["n_users"] == 6
    assert main(["eval", "--agent", str(tmp_path / "missing.yaml"), "--no-progress"]) == 2
    assert main(["eval", "--no-agent", "--dataset", dataset_dir, "-o", "n_candidates=5", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "config file not found" in err and "n_candidates (5) must exceed the largest k (10)" in err
    assert "Traceback" not in err


def test_the_example_configs_load():
    from pathlib import Path

    from recagent.agents import AgentConfig

    root = Path(__file__).resolve().parents[1] / "examples"
    cfg = EvalConfig.from_yaml(root / "eval_small.yaml")
    assert cfg.users == 20 and cfg.simulator.users == 5 and cfg.k == 10
    agent = AgentConfig.from_yaml(root / "agent_openai.yaml")
    assert agent.policy.kind == "openai" and agent.policy.base_url.endswith("/v1")
