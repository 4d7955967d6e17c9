"""The hand-written chat requests: the packaged set, its leakage check where data is made, and its scoring in eval.

The tool environment is ML-100K with the two recommenders that train in about a second (popularity and
ItemKNN, the default model here) and the text index; it is enough to run every accepted call and a few
chat turns of a scripted policy, whose first steps and cited items are hand-checked below.
"""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from recagent.errors import ConfigError
from recagent.heldout_requests import (
    AcceptedCall,
    RequestLeakIndex,
    find_request_leaks,
    load_chat_requests,
    normalise_text,
    packaged_path,
    user_turns,
)

# free arguments a call needs to run that no request pins down (any value is accepted by the matcher)
FILLERS = {"search_items": {"query": "a good movie"}, "rank_by_preference": {"year_max": 1980}}


@pytest.fixture(scope="module")
def requests():
    return load_chat_requests()


@pytest.fixture(scope="module")
def by_id(requests):
    return {r.id: r for r in requests}


@pytest.fixture(scope="module")
def trained(ml100k_split, tmp_path_factory):
    """Popularity and ItemKNN trained (and saved, with their training digest) on ML-100K."""
    from recagent.tools.recommenders import train

    root = tmp_path_factory.mktemp("chat-models")
    return {
        name: (train(ml100k_split, name, {}, out_dir=root / name, show_progress=False)[0], root / name)
        for name in ("pop", "itemknn")
    }


@pytest.fixture(scope="module")
def chat_env(ml100k, ml100k_split, trained, tmp_path_factory):
    """ML-100K tools over pop + ItemKNN, with the text index (copied from the user's cache when it is there)."""
    from recagent import paths
    from recagent.tools.env import TEXT_INDEX, ToolEnv, ToolEnvConfig

    env = ToolEnv(
        ml100k,
        ml100k_split,
        {n: m for n, (m, _) in trained.items()},
        ToolEnvConfig(models=["pop", "itemknn"], default_model="itemknn"),
    )
    home = tmp_path_factory.mktemp("chat-home")
    cached = paths.index_dir(ml100k.name, TEXT_INDEX)  # resolved before any test moves RECAGENT_HOME
    if (cached / "texts.sha256").is_file():
        shutil.copytree(cached, home / "indexes" / ml100k.name / TEXT_INDEX)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECAGENT_HOME", str(home))
        env.text_index()  # loaded (or built) once; the env keeps it
    return env


# -- the set -----------------------------------------------------------------------------------------------------


def test_the_packaged_set_loads_and_covers_what_it_should(requests):
    import tomllib
    from pathlib import Path

    assert packaged_path().is_file() and packaged_path().parent.name == "data"
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "data/*.yaml" in pyproject["tool"]["setuptools"]["package-data"]["recagent"]  # installs with the package
    assert len(requests) >= 90 and len({r.id for r in requests}) == len(requests)
    assert sum(r.no_tool for r in requests) >= 12
    kinds = {r.kind for r in requests}
    assert {
        "no_tool",
        "personal",
        "history",
        "lookup",
        "similar",
        "popular",
        "attributes",
        "negative",
        "mood",
        "rank",
        "followup",
    } <= kinds
    assert sum(bool(r.context) for r in requests) >= 3
    assert sum(bool(r.constraints.genres_none) for r in requests) >= 5
    assert sum(bool(r.constraints.among) for r in requests) >= 5
    # texts are all different, also after normalisation (no request is a copy of another)
    assert len({normalise_text(r.text) for r in requests}) == len(requests)
    assert not [
        x for x in find_request_leaks([r.text for r in requests], requests) if x.request_id != requests[x.index].id
    ]


def test_the_dev_set_is_apart_from_the_test_set_and_kept_out_of_training_like_it(requests):
    dev = load_chat_requests(packaged_path(dev=True))
    assert packaged_path(dev=True).parent == packaged_path().parent  # installs with the package (data/*.yaml)
    assert len(dev) >= 90 and sum(r.no_tool for r in dev) >= 15
    assert {r.kind for r in dev} == {r.kind for r in requests}, "every kind of the test set, to choose on"
    assert not {r.id for r in dev} & {r.id for r in requests}
    assert not find_request_leaks([r.text for r in dev], requests), "no dev request copies a test request"
    assert not find_request_leaks([r.text for r in requests], dev), "nor the other way round"
    for r in dev:  # a request written twice would count twice
        assert not find_request_leaks([r.text], [d for d in dev if d.id != r.id]), f"{r.id} repeats a dev request"
    copied = f"hey there! {dev[12].text}"
    assert [x.request_id for x in RequestLeakIndex().find([copied])] == [dev[12].id], "the default index has both"


@pytest.mark.parametrize("dev", [False, True], ids=["test_set", "dev_set"])
def test_every_accepted_call_is_a_real_tool_call_that_runs_on_ml100k(dev, chat_env):
    from recagent.heldout_requests import check_against_catalog
    from recagent.tools.recommender_tools import build_registry

    requests = load_chat_requests(packaged_path(dev=dev))
    catalog = chat_env.catalog
    check_against_catalog(requests, catalog.all_genres, catalog.ids, chat_env.dataset.users.ids)
    registry = build_registry(chat_env.session())
    ran = 0
    for r in requests:
        assert r.constraints.genres() <= set(catalog.all_genres), r.id
        assert all(1 <= int(u) <= 943 for u in r.referenced_ids()[0]), r.id
        for alt in r.accepted_first_calls:
            if alt.no_tool:
                continue
            assert alt.tool in registry.names(), (r.id, alt.tool)
            fields = set(registry[alt.tool].args_model.model_fields)
            assert set(alt.args) <= fields, (r.id, alt.tool, set(alt.args) - fields)
            args = {**FILLERS.get(alt.tool, {}), **alt.args}
            out = registry.call(alt.tool, args)
            assert out.ok, (r.id, alt.tool, args, out.error)
            ran += 1
    assert ran >= (110 if dev else 150)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("requests: [\n  - id: a\n    text: [unclosed\n", "not valid YAML"),
        ("just: a mapping\n", "non-empty 'requests' list"),
        (
            "requests:\n  - id: bad-1\n    text: hi\n    accepted_first_calls: [{no_tool: true, tool: get_item}]\n",
            "request bad-1: accepted_first_calls.0",
        ),
        (
            "requests:\n  - id: bad-2\n    text: hi\n    accepted_first_calls: [{tool: get_item}]\n    colour: red\n",
            "request bad-2: colour: Extra inputs are not permitted",
        ),
        (
            "requests:\n  - id: bad-3\n    text: hi\n    accepted_first_calls: [{tool: filter_items}]\n"
            "    constraints: {year_min: 1990, year_max: 1980}\n",
            "request bad-3: constraints: year_min (1990) is after year_max",
        ),
        (
            "requests:\n  - {id: x, text: a, accepted_first_calls: [{no_tool: true}]}\n"
            "  - {id: x, text: b, accepted_first_calls: [{no_tool: true}]}\n",
            "request x: the id is used twice",
        ),
        ("requests:\n  - {text: a}\n", "request #1: id: Field required"),
    ],
)
def test_a_malformed_file_is_one_line_naming_the_entry(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_chat_requests(path)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg and str(path) in msg
    with pytest.raises(ConfigError, match="not found"):
        load_chat_requests(tmp_path / "missing.yaml")


# -- the leakage check ----------------------------------------------------------------------------------------------


def test_the_leak_check_catches_exact_and_near_copies_and_passes_other_texts(by_id):
    idx = RequestLeakIndex(list(by_id.values()))
    exact = idx.match("I'M USER 42,   what should i watch tonight")  # case, spacing and punctuation only
    assert exact is not None and (exact.request_id, exact.kind) == ("user-01", "exact")
    # the last word changed: most 5-grams survive
    near = idx.match("User 88. Recommend a drama from the 90s I haven't seen")
    assert near is not None and near.request_id == "user-06" and near.kind == "near" and near.score >= 0.6
    inside = idx.match("Hello there! for user 276: ten recommendations, no horror please. Thanks a lot")
    assert inside is not None and (inside.request_id, inside.kind) == ("user-09", "contains")
    # the same template with other slots, another user, and unrelated texts are no copies
    for text in (
        "I'm user 43, what should I read tonight?",
        "User 12. Recommend a comedy from the 80s I have not seen",
        "Can you suggest a funny film?",
        "thanks!",
        "Recommend me some crime movies, please.",
    ):
        assert idx.match(text) is None, text
    leaks = find_request_leaks(["nothing to see here", "KNOW any good knock knock jokes??"], list(by_id.values()))
    assert [(x.index, x.request_id) for x in leaks] == [(1, "notool-04")]


def test_synthesis_drops_a_dialog_whose_user_turn_copies_a_request(chat_env, by_id):
    from recagent.synth.config import SynthConfig
    from recagent.synth.pipeline import RunState, Synthesizer

    synth = Synthesizer(SynthConfig.build(n=1, exports=[]), chat_env)
    clean = synth.make(0, RunState(), None)
    assert clean[0] in ("train", "test")
    real = synth.generator

    def leaky(req):
        sample = real.generate(req)
        first = next(m for m in sample.messages if m["role"] == "user")
        first["content"] = "Hi! " + by_id["attr-06"].text
        return sample

    synth.generator = SimpleNamespace(generate=leaky)
    where, row = synth.make(0, RunState(), None)
    assert where == "skipped" and row["reason"] == "heldout_request" and row["request"] == "attr-06"


def test_sft_and_eval_refuse_training_rows_that_copy_a_request(tmp_path, by_id):
    from recagent.evaluation.leakage import check_request_leaks
    from recagent.rl.sft import SFTDataError, check_no_leakage
    from recagent.tools.data.split import LeakageError

    ok = {
        "messages": [
            {"role": "user", "content": "a light comedy for tonight"},
            {"role": "assistant", "content": "Sure."},
        ]
    }
    bad = {"messages": [{"role": "system", "content": "tools"}, {"role": "user", "content": by_id["rank-03"].text}]}
    check_no_leakage(tmp_path, [ok], [])  # clean rows pass
    with pytest.raises(SFTDataError, match=r"line 2: a user turn copies held-out chat request rank-03 \(exact\)") as e:
        check_no_leakage(tmp_path, [ok, bad], [])
    assert "\n" not in str(e.value)
    with pytest.raises(LeakageError, match="line 1: a user turn copies held-out chat request rank-03"):
        check_request_leaks([bad], list(by_id.values()), "train.jsonl")
    assert user_turns(bad["messages"]) == [by_id["rank-03"].text]


# -- scoring ----------------------------------------------------------------------------------------------------------


def test_call_matching_normalises_ids_genres_titles_defaults_and_tool_variants(chat_env):
    from recagent.evaluation.chat_requests import call_matches, tool_defaults
    from recagent.tools.recommender_tools import build_registry

    defaults = tool_defaults(build_registry(chat_env))
    alt = AcceptedCall(tool="filter_items", args={"genres": ["Crime", "Thriller"], "year_min": 1990})
    assert call_matches("filter_items", {"genres": ["thriller", "crime"], "year_min": "1990", "k": 3}, alt, defaults)
    assert not call_matches("filter_items", {"genres": ["Crime"], "year_min": 1990}, alt, defaults)
    assert not call_matches(
        "filter_items", {"genres": ["Crime", "Thriller"]}, alt, defaults
    )  # default year_min is None
    assert not call_matches("popular_items", {"genre": "Crime"}, alt, defaults)
    k10 = AcceptedCall(tool="retrieve_for_user", args={"user_id": 276, "k": 10})
    assert call_matches("retrieve_for_user", {"user_id": "276"}, k10, defaults)  # k left out = the tool's 10
    assert call_matches("retrieve_for_user", '{"user_id": 276.0, "k": 10}', k10, defaults)
    assert not call_matches("retrieve_for_user", {"user_id": 276, "k": 5}, k10, defaults)
    title = AcceptedCall(tool="get_item", args={"title": "usual suspect"})
    assert call_matches("get_item", {"title": "Usual Suspects, The (1995)"}, title, defaults)
    assert not call_matches("get_item", {"title": "Suspect Zero"}, title, defaults)
    assert call_matches("search_items", {"query": "anything"}, AcceptedCall(tool="search_items"), defaults)
    ids = AcceptedCall(tool="rank_items", args={"user_id": 12, "item_ids": [50, 181, 258]})
    assert call_matches("rank_items", {"user_id": 12, "item_ids": ["258", "50", "181"]}, ids, defaults)
    assert not call_matches("rank_items", {"user_id": 12, "item_ids": ["258", "50"]}, ids, defaults)
    variant = SimpleNamespace(core="get_item", core_param=lambda p: {"name": "title"}.get(p, p))
    assert call_matches("lookup_title", {"name": "The Usual Suspects"}, title, defaults, {"lookup_title": variant})
    assert not call_matches(None, {}, AcceptedCall(no_tool=True), defaults)


def test_each_constraint_is_checked_on_catalog_metadata(chat_env):
    from recagent.evaluation.chat_requests import ConstraintChecker
    from recagent.heldout_requests import ItemConstraints as C

    ok = ConstraintChecker(chat_env).item_satisfies
    # Star Wars: [50], 1977, Action Adventure Romance Sci-Fi War
    assert ok("50", C(genres_any=["Comedy", "War"])) and not ok("50", C(genres_any=["Comedy"]))
    assert ok("50", C(genres_all=["Action", "Sci-Fi"])) and not ok("50", C(genres_all=["Action", "Comedy"]))
    assert ok("50", C(genres_none=["Horror"])) and not ok("50", C(genres_none=["Horror", "War"]))
    assert (
        ok("50", C(year_min=1977, year_max=1977)) and not ok("50", C(year_min=1978)) and not ok("50", C(year_max=1976))
    )
    assert ok("50", C(among=["181", "50"])) and not ok("50", C(among=["181"]))
    watched = chat_env.dataset.users.ids[
        next(u for u in range(chat_env.dataset.n_users) if chat_env.catalog.index_of["50"] in chat_env.seen(u))
    ]
    unseen = chat_env.dataset.users.ids[
        next(u for u in range(chat_env.dataset.n_users) if chat_env.catalog.index_of["50"] not in chat_env.seen(u))
    ]
    assert not ok("50", C(unseen_by=watched)) and ok("50", C(unseen_by=unseen))
    no_year = chat_env.catalog.ids[int((chat_env.catalog.years == 0).nonzero()[0][0])]
    assert ok(no_year, C()) and not ok(no_year, C(year_max=2100)) and not ok("no-such-item", C())


class ScriptedChat(BaseChatModel):
    """First step by request text: a scripted call, or an answer; after a tool result, an answer citing every item."""

    script: dict[str, Any] = Field(default_factory=dict)

    @property
    def _llm_type(self) -> str:
        return "scripted-chat"

    def bind_tools(self, tools, **kwargs):
        return self

    def _step(self, messages) -> AIMessage:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            # the structured result rides along as the message's artifact (older builds: JSON content)
            payload = last.artifact if isinstance(last.artifact, dict) else json.loads(last.content)
            items = payload.get("items", [])
            cites = "; ".join(f"[{it['item_id']}] {it['title']} ({it['year']})" for it in items)
            return AIMessage(f"Here you go: {cites}" if items else "Done, see above.")
        assert isinstance(last, HumanMessage)
        plan = self.script[last.content]
        if callable(plan):
            plan = plan(messages)
        if isinstance(plan, str):
            return AIMessage(plan)
        name, args = plan
        return AIMessage("", tool_calls=[{"name": name, "args": args, "id": "c1", "type": "tool_call"}])

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        msg = self._step(messages)
        msg.usage_metadata = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        return ChatResult(generations=[ChatGeneration(message=msg)])


def _more_like_the_second(messages):
    # only a policy that sees the seeded earlier turns knows which item "the second one" is
    seen = " ".join(m.content for m in messages[:-1] if isinstance(m.content, str))
    return (
        ("similar_items", {"item_ids": ["56"], "k": 3}) if "[56] Pulp Fiction" in seen else ("popular_items", {"k": 3})
    )


# request id -> the scripted first step; the comment says how it scores
PLAN = {
    "user-04": ("filter_items", {"genres": ["sci-fi"], "exclude_seen_by": "7", "k": 5}),  # right; 5 of 5 slots hold
    "pop-06": ("popular_items", {"k": 4}),  # wrong (no genre); the 4 most popular are no comedies: 0 of 4
    "rank-01": ("rank_items", {"user_id": 12, "item_ids": ["258", "50", "181"]}),  # right; 3 of 3 among the given
    "item-02": ("get_item", {"title": "The Usual Suspects"}),  # right; no constraints
    "attr-06": (
        "filter_items",
        {"genres": ["Crime", "Thriller"], "match": "all", "year_min": 1990, "year_max": 1999, "k": 3},
    ),  # right; 3 of 3
    "ctx-02": _more_like_the_second,  # right only with the context seeded; no constraints
    "notool-04": "Why did the projector break up with the screen? It needed some space.",  # right: no call
    "notool-07": ("search_items", {"query": "goldfish"}),  # wrong: a call where none is needed
}
# hand-checked: first call 5 of 6 tool requests, no tool 1 of 2, constraint slots (5 + 0 + 3 + 3) of (5 + 4 + 3 + 3)


@pytest.fixture()
def scripted_agent(chat_env, by_id, tmp_path):
    from recagent.agents import Agent, AgentConfig
    from recagent.tools.env import ToolEnvConfig

    script = {by_id[rid].text: plan for rid, plan in PLAN.items()}
    cfg = AgentConfig(tools=ToolEnvConfig(models=["pop", "itemknn"], default_model="itemknn"))
    agent = Agent.from_config(cfg, policy=ScriptedChat(script=script), env=chat_env, db_path=tmp_path / "s.sqlite")
    yield agent
    agent.close()


def test_scoring_a_scripted_policy_gives_the_hand_checked_numbers(scripted_agent, chat_env, by_id):
    from recagent.evaluation.chat_requests import ConstraintChecker, agent_answer, score_record, tool_defaults
    from recagent.tools.recommender_tools import build_registry

    checker, defaults = ConstraintChecker(chat_env), tool_defaults(build_registry(chat_env))
    rows = {rid: agent_answer(scripted_agent, by_id[rid]) for rid in PLAN}
    assert all(r["error"] is None and r["unsupported_shipped"] == [] for r in rows.values()), {
        k: (r["error"], r["unsupported_shipped"]) for k, r in rows.items()
    }
    assert rows["ctx-02"]["first_step"][0]["tool"] == "similar_items"  # the earlier turns were seeded
    assert rows["notool-04"]["called"] is False and rows["notool-07"]["called"] is True
    scores = {rid: score_record(rows[rid], by_id[rid], checker, defaults) for rid in PLAN}
    assert {rid: s["first_call"] for rid, s in scores.items() if s["first_call"] is not None} == {
        "user-04": True,
        "pop-06": False,
        "rank-01": True,
        "item-02": True,
        "attr-06": True,
        "ctx-02": True,
    }
    assert {rid: s["no_tool"] for rid, s in scores.items() if s["no_tool"] is not None} == {
        "notool-04": True,
        "notool-07": False,
    }
    slots = {rid: (s["satisfied"], s["slots"]) for rid, s in scores.items() if s["slots"] is not None}
    assert slots == {"user-04": (5, 5), "pop-06": (0, 4), "rank-01": (3, 3), "attr-06": (3, 3)}
    assert rows["pop-06"]["recommended"] == ["50", "100", "181", "258"]


def test_the_baseline_recommends_from_the_model_or_popularity_and_ignores_the_text(chat_env, by_id):
    from recagent.evaluation.chat_requests import ConstraintChecker, baseline_answer

    checker = ConstraintChecker(chat_env)
    pop = baseline_answer(chat_env, by_id["pop-06"], model="itemknn")
    assert pop["source"] == "popularity"
    # the ten most popular items: Liar Liar (294) and Toy Story (1) are the only comedies
    assert pop["recommended"] == ["50", "100", "181", "258", "286", "294", "288", "1", "300", "121"]
    assert checker.count(pop["recommended"], by_id["pop-06"].constraints) == (2, 10)
    mine = baseline_answer(chat_env, by_id["user-04"], model="itemknn")
    seen = {chat_env.catalog.ids[i] for i in chat_env.seen(chat_env.user("7"))}
    assert mine["source"] == "itemknn" and len(mine["recommended"]) == 10 and not set(mine["recommended"]) & seen


def test_recagent_eval_runs_the_chat_requests_protocol_and_reports_it(
    scripted_agent, chat_env, trained, by_id, tmp_path
):
    from recagent.evaluation.config import EvalConfig
    from recagent.evaluation.runner import RECORDS, run_eval
    from recagent.paths import model_dir

    for name, (_, folder) in trained.items():  # the leakage check reads each model's training digest
        shutil.copytree(folder, model_dir(chat_env.dataset.name, name))
    subset = tmp_path / "subset.yaml"
    subset.write_text(
        yaml.safe_dump(
            {
                "dataset": "ml-100k",
                "requests": [by_id[rid].model_dump(mode="json", exclude_defaults=True) for rid in PLAN],
            },
            sort_keys=False,
        )
    )
    cfg = EvalConfig.build(
        dataset="ml-100k",
        part="valid",
        users=2,
        out=str(tmp_path / "ev"),
        protocols=["chat_requests"],
        baselines=["pop", "itemknn"],
        bootstrap=50,
        chat_requests_file=str(subset),
        chat_baseline_model="itemknn",
        agent={"tools": {"models": ["pop", "itemknn"], "default_model": "itemknn"}},
    )
    out = run_eval(cfg, env=chat_env, agent=scripted_agent, progress=False)
    res = json.loads((out / "results.json").read_text())["chat_requests"]
    assert (res["n_requests"], res["tool_requests"], res["no_tool_requests"], res["constrained_requests"]) == (
        8,
        6,
        2,
        4,
    )
    agent = res["systems"]["agent"]
    assert agent["first_call"]["mean"] == pytest.approx(5 / 6, abs=1e-4)
    assert agent["no_tool"]["mean"] == 0.5 and agent["first_step"]["mean"] == pytest.approx(6 / 8, abs=1e-4)
    assert agent["constraint_satisfaction"]["mean"] == pytest.approx(11 / 15, abs=1e-4) and agent["slots"] == [11, 15]
    lo, hi = agent["constraint_satisfaction"]["ci_low"], agent["constraint_satisfaction"]["ci_high"]
    assert 0 <= lo <= 11 / 15 <= hi <= 1
    assert agent["unsupported_shipped"]["unsupported"] == 0 and agent["errors"] == 0
    assert 0 < agent["latency_s"]["p50"]["mean"] <= agent["latency_s"]["p95"]["mean"]
    assert agent["by_kind"]["no_tool"] == {"n": 2, "first_step": 0.5} and agent["first_step_misses"] == [
        "pop-06",
        "notool-07",
    ]
    base = res["systems"]["itemknn+pop"]
    assert base["first_call"] is None and base["constrained_answers"] == 4 and base["slots"][1] == 40
    assert 0 <= base["constraint_satisfaction"]["mean"] < agent["constraint_satisfaction"]["mean"]
    report = (out / "report.md").read_text()
    assert "## Hand-written chat requests (8 requests: 6 need a tool, 2 need none, 4 state constraints" in report
    assert "| agent | 0.8333" in report and "| itemknn+pop | – | – | – |" in report
    assert "chat turns on hand-written requests" in report
    # a rerun resumes: nothing is asked again
    lines = (out / RECORDS).read_text().splitlines()
    assert len(lines) == 16
    run_eval(cfg, env=chat_env, agent=scripted_agent, progress=False)
    assert (out / RECORDS).read_text().splitlines() == lines
