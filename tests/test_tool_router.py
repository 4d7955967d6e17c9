"""The tool router: features, numpy scores equal to sklearn's, the plain-array file, and the training job."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from recagent.agents.config import PolicyConfig
from recagent.agents.tool_router import (
    ANSWER,
    ROUTER_FILE,
    FeatureBlock,
    ToolRouter,
    Turn,
    analyze,
    request_slots,
    router_file,
    router_text,
    schema_text,
    turns_of,
)
from recagent.errors import ConfigError
from recagent.rl.sft import SFTDataError
from recagent.rl.train_router import (
    RouterJobConfig,
    call_examples,
    core_schemas,
    fit_router,
    fit_schema_matcher,
    offered_tools,
    save_examples,
    train_router,
    variant_aliases,
)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_features_are_the_user_turns_and_the_previous_calls_core_tools():
    turns = [
        Turn("system", "you recommend films"),
        Turn("user", "Hi, I'm user 7"),
        Turn("assistant", "", ("get_user_history", "history_v2")),
        Turn("tool", "[1] Heat (1995)"),
        Turn("user", "only comedies"),
    ]
    text = router_text(turns, core={"history_v2": "get_user_history"})
    assert text == "previous_get_user_history Hi, I'm user 7 || only comedies"
    assert router_text(turns[:2]).startswith("previous_none ")
    assert router_text([*turns, Turn("assistant", "Here you go")]).startswith("previous_answered ")
    assert analyze("Sci-Fi from the 80s!") == [
        "sci",
        "fi",
        "from",
        "the",
        "80s",
        "sci fi",
        "fi from",
        "from the",
        "the 80s",
    ]
    from sklearn.feature_extraction.text import TfidfVectorizer

    for text in ("no  Fx", "war", "Sci-Fi's a\tBIG  one, innit?", "i"):
        for analyzer, ngram in (("word", (1, 2)), ("word", (2, 3)), ("char_wb", (3, 5)), ("char_wb", (1, 2))):
            expected = TfidfVectorizer(analyzer=analyzer, ngram_range=ngram).build_analyzer()(text)
            assert sorted(analyze(text, analyzer, ngram)) == sorted(expected), (text, analyzer, ngram)


@pytest.mark.parametrize(
    ("text", "slots"),
    [
        ("whats a decent action flick", ["slot_genre"]),
        ("anything except horror", ["slot_nogenre"]),
        ("comedies or dramas from the 90s, nothing violent", ["slot_genre"] * 2 + ["slot_nogenre"] * 4 + ["slot_year"]),
        ("films similar to 183", ["slot_number", "slot_likeid"]),
        ("something in the same vein as movie #12?", ["slot_number", "slot_likeid"]),
        ("Anything in the same vein as ids: 328 & 491?", ["slot_number"] * 2 + ["slot_likeid"]),
        ("films like #183 pls", ["slot_number", "slot_likeid"]),
        ("i'd like 5 comedies", ["slot_genre", "slot_number"]),  # a count after "like", no likened id
        ("give me like 5 new movies", ["slot_number"]),
        ("like 5 horror movies please", ["slot_genre", "slot_number"]),
        ("show me like top 5", ["slot_number"]),
        ("more like apollo 13", ["slot_number"]),  # a title's number
        ("something like 12 angry men", ["slot_number"]),
        ("like 3 of them, from the 90s", ["slot_year", "slot_number"]),  # a decade is no id: "90s" is years only
        ("user three hundred and ten, rank 4 and 8 for me", ["slot_number"] * 3),
        ("released after 1989 please", ["slot_year"]),
        ("hello there", []),
    ],
)
def test_request_slots_name_what_a_request_holds_however_it_is_worded(text, slots):
    assert request_slots(text) == slots


def test_a_router_with_slots_reads_them_from_the_last_request_and_keeps_them_in_its_file(tmp_path):
    turns = [Turn("user", "hi, user 7 here"), Turn("assistant", "", ("get_user_history",)), Turn("user", "only 80s")]
    assert router_text(turns, slots=True) == "previous_get_user_history slot_year hi, user 7 here || only 80s"
    assert router_text(turns) == "previous_get_user_history hi, user 7 here || only 80s"
    block = FeatureBlock("word", (1, 1), {"slot_genre": 0}, np.ones(1))
    router = ToolRouter([block], np.array([[2.0], [0.0]]), np.array([0.0, 0.5]), ["filter_items", "search_items"], True)
    assert router.rank(router.text([Turn("user", "some westerns")]))[0] == "filter_items"  # the slot, not the word
    loaded = ToolRouter.load(router.save(tmp_path / ROUTER_FILE))
    assert loaded.slots and not _one_word_router([[1.0]], [0.0], ["a"]).slots
    assert loaded.allowed([Turn("user", "some westerns")], {"filter_items", "search_items"}, 1) == {"filter_items"}


def _one_word_router(coef: list[list[float]], intercept: list[float], tools: list[str]) -> ToolRouter:
    block = FeatureBlock("word", (1, 1), {"comedies": 0}, np.ones(1))
    return ToolRouter([block], np.array(coef), np.array(intercept), tools)


def test_numpy_scores_equal_sklearns_and_survive_the_file(synthetic_synth_run, tmp_path):
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    texts, labels = call_examples(_rows(synthetic_synth_run / "train.jsonl"))
    assert len(set(labels)) >= 3, "the run should call several tools"
    cfg = RouterJobConfig.build(data_dir=str(synthetic_synth_run), output_dir=str(tmp_path), min_df=1)
    router = fit_router(texts, labels, cfg, never_called={"buy_item", labels[0]})
    vecs = [
        TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=1, sublinear_tf=True),
    ]
    clf = LogisticRegression(max_iter=3000, C=cfg.C).fit(hstack([v.fit_transform(texts) for v in vecs]), labels)
    probe = [*texts[:20], "previous_none Nothing  the vocabulary knows: zzqx, Sci-Fi's a"]
    expected = clf.decision_function(hstack([v.transform(probe) for v in vecs]))
    ours = np.array([router.scores(t) for t in probe])
    assert router.tools == [*clf.classes_, "buy_item"]  # a called tool stays a class; a never-called one comes last
    np.testing.assert_allclose(ours[:, :-1], expected, rtol=1e-6, atol=1e-6)
    assert all(router.rank(t)[-1] == "buy_item" for t in probe)
    loaded = ToolRouter.load(router.save(tmp_path / ROUTER_FILE))
    assert [loaded.rank(t) for t in probe] == [router.rank(t) for t in probe]
    # it learnt the training turns' tools (a linear model on its own training words)
    assert np.mean([router.rank(t)[0] == y for t, y in zip(texts, labels)]) > 0.8


def test_allowed_keeps_the_k_likeliest_known_tools_and_every_unknown_one():
    router = _one_word_router(
        [[2.0], [0.0], [-1.0]], [0.0, 0.5, 0.1], ["filter_items", "popular_items", "search_items"]
    )
    turns = [Turn("user", "only comedies")]
    offered = {"filter_items", "popular_items", "search_items", "find_films_v2"}
    assert router.allowed(turns, offered, 1) == {"filter_items", "find_films_v2"}
    assert router.allowed(turns, offered, 2) == {"filter_items", "popular_items", "find_films_v2"}
    assert router.allowed([Turn("user", "hello")], offered - {"popular_items"}, 1) == {"search_items", "find_films_v2"}
    assert router.rank("hello") == ["popular_items", "search_items", "filter_items"]


@pytest.mark.parametrize(
    ("text", "second"),
    [
        ("a movie about pirates. And separately: the most popular thrillers", "the most popular thrillers"),
        ("something about pirates Oh and popular dramas from the 90s too", "popular dramas from the 90s too"),
        ("pirates please. Plus the top 5 comedies, please.", "the top 5 comedies, please"),
        ("life in New York Thats my thing Also what are the top dramas", "what are the top dramas"),  # no stop
        ("pirates. And separately: popular films that are also dramas", "popular films that are also dramas"),
        ("any ideas? oh and popular dramas", "popular dramas"),
        ("show me movies that people who liked #3 also liked", None),  # "also" inside one request
        ("comedies that are also romantic and from the 90s", None),
        ("movies starring Tom Hanks plus Meg Ryan in them", None),
        ("the best-known dramas and comedies, separately", None),  # one request for two lists
        ("westerns from the 60s", None),
        ("Also, westerns from the sixties", None),  # a message does not open with its second request
        ("westerns from the sixties, also nothing i've seen please", None),  # a refinement of the first
        ("dramas please, oh and make it 5", None),
    ],
)
def test_a_second_request_is_the_words_after_a_cue_at_a_clause_start(text, second):
    from recagent.agents.call_ids import second_request

    assert second_request(text) == second


def test_a_second_request_adds_its_likeliest_tool_one_that_takes_years_where_it_bounds_them():
    # validation: "a movie about pirates. and separately: the most popular thriller movies from the 90s" called
    # search_items twice: the router's one tool was the first request's, and read alone the second went to
    # popular_items, which takes no years (no synthesized request asks for popular items by years alone)
    block = FeatureBlock("word", (1, 1), {"pirates": 0, "popular": 1}, np.ones(2))
    coef = np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 1.0]])
    router = ToolRouter([block], coef, np.zeros(3), ["search_items", "popular_items", "filter_items"])
    offered = {"search_items", "popular_items", "filter_items"}
    dated = {"search_items", "filter_items"}

    def second(text: str) -> set[str]:
        return router.second_request_tools([Turn("user", text)], offered, dated)

    assert second("a movie about pirates. And separately: the most popular thrillers, please") == {"popular_items"}
    assert second("a movie about pirates. And separately: the most popular thrillers from the 90s") == {"filter_items"}
    assert second("a movie about pirates. Also popular ones like Heat (1995)") == {"popular_items"}  # a title's year
    assert second("a movie about pirates from the 90s") == set()
    assert router.allowed([Turn("user", "a movie about pirates. Also the most popular ones")], offered, 1) == {
        "search_items"
    }


def _reply_router(answer_bias: float) -> ToolRouter:
    """One-word routers: the tool head favours filter_items; the reply head answers "thanks" and, after a
    filter_items result, leans to ``answer_bias`` (positive: answer, negative: call rank_items)."""
    block = FeatureBlock("word", (1, 1), {"thanks": 0, "previous_filter_items": 1}, np.ones(2))
    return ToolRouter(
        [block],
        np.array([[0.0, 1.0], [0.0, 0.0]]),
        np.array([0.5, 0.0]),
        ["filter_items", "rank_items"],
        aliases={"browse_movies": "filter_items"},
        reply_coef=np.array([[8.0, answer_bias], [0.0, 0.0], [0.0, 0.0]]),
        reply_intercept=np.array([-1.0, 0.0, 0.0]),
        reply_classes=[ANSWER, "filter_items", "rank_items"],
    )


def test_the_reply_head_decides_call_or_answer_after_a_result_and_only_sure_answers_after_a_user(tmp_path):
    answers, calls = _reply_router(5.0), _reply_router(-5.0)
    after = [Turn("user", "comedies"), Turn("assistant", "", ("filter_items",)), Turn("tool", "items: ...")]
    assert answers.reply(after, 0.9) == "answer" and calls.reply(after, 0.9) == "call"
    # a variant seen in training reads as its core tool; one the router never saw is just a word
    renamed = [after[0], Turn("assistant", "", ("browse_movies",)), after[2]]
    assert answers.text(renamed).startswith("previous_filter_items") and answers.reply(renamed, 0.9) == "answer"
    unseen = [after[0], Turn("assistant", "", ("films_v9",)), after[2]]
    assert answers.text(unseen).startswith("previous_films_v9") and answers.reply(unseen, 0.9) == "call"
    assert answers.reply([Turn("user", "thanks")], 0.9) == "answer"  # p(answer) = e^7 / (e^7 + 2) > 0.99
    assert answers.reply([Turn("user", "thanks")], 1.0) is None  # 1: never after a user message
    assert answers.reply([Turn("user", "comedies")], 0.9) is None  # e^-1 / (e^-1 + 2) = 0.16: the policy chooses
    assert answers.reply([Turn("user", "comedies")], 0.9, 0.2) == "call"  # 0.16 <= 0.2: sure it is a call
    assert answers.reply([Turn("user", "thanks")], 0.999, 0.2) is None  # > 0.99 but < 0.999: neither side
    assert answers.reply(after, 0.9, 0.2) == "answer"  # after a result the likeliest class decides, as before
    assert answers.rank("previous_none comedies") == ["filter_items", "rank_items"]  # answering is no tool
    loaded = ToolRouter.load(answers.save(tmp_path / ROUTER_FILE))
    assert loaded.aliases == answers.aliases and loaded.reply_classes == answers.reply_classes
    assert loaded.reply(after, 0.9) == "answer" and loaded.reply(renamed, 0.9) == "answer"
    plain = ToolRouter.load(
        ToolRouter(answers.blocks, answers.coef, answers.intercept, answers.tools).save(tmp_path / "p.npz")
    )
    assert plain.reply(after, 0.9) is None and plain.aliases == {} and plain.reply_probabilities("thanks") is None


def test_the_save_head_decides_whether_a_call_saves_only_where_it_is_sure(tmp_path):
    # "rank them for me" leans to saving a pool for the ranking; the tool says more: rank_items never saves
    block = FeatureBlock("word", (1, 2), {"rank them": 0, "hello": 1}, np.ones(2))
    router = ToolRouter(
        [block],
        np.zeros((2, 2)),
        np.zeros(2),
        ["search_items", "rank_items"],
        aliases={"find_films": "search_items"},
        save_coef=np.array([4.0, 0.0]),
        save_tool_coef={"search_items": 0.0, "rank_items": -8.0},
        save_intercept=-1.0,
    )
    ask = [Turn("user", "cosy films, rank them for me")]
    assert router.saves(ask, "search_items", 0.8) is True  # p = 1 / (1 + e^-3) = 0.95
    assert router.saves(ask, "find_films", 0.8) is True  # a variant: its core tool's weight
    assert router.saves(ask, "rank_items", 0.8) is False  # e^-5: sure it does not
    assert router.saves([Turn("user", "cosy films")], "search_items", 0.8) is None  # 0.27: the policy chooses
    assert router.saves([Turn("user", "cosy films")], "search_items", 0.7) is False  # at 0.7 that is sure
    assert router.saves(ask, "search_items", 1.0) is None  # 1: never decides
    loaded = ToolRouter.load(router.save(tmp_path / ROUTER_FILE))
    assert loaded.save_tool_coef == router.save_tool_coef and loaded.saves(ask, "rank_items", 0.8) is False
    plain = ToolRouter.load(ToolRouter([block], router.coef, router.intercept, router.tools).save(tmp_path / "p.npz"))
    assert plain.save_probability(ask, "search_items") is None and plain.saves(ask, "search_items", 0.8) is None


def _schema(name: str, description: str, **params: str) -> dict:
    props = {p: {"type": "string", "description": d} for p, d in params.items()}
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": {"properties": props}},
    }


def test_an_unseen_tool_whose_words_match_a_core_tools_is_read_as_it():
    seen = {
        schema_text(
            _schema("filter_items", "Filter the catalog by genre and release year", genres="genres to match")
        ): ("filter_items"),
        schema_text(_schema("get_item", "Look up one item by its title or id", title="the title to find")): "get_item",
    }
    router = _one_word_router([[2.0], [0.0]], [0.0, 0.5], ["filter_items", "get_item"])
    router = replace(router, **fit_schema_matcher(seen))
    offered = [
        _schema("browse_films", "Browse the catalog of films by genre and release year", tags="genres to match"),
        _schema("buy_item", "Buy a copy", quantity="how many"),
        _schema("get_item", "Look up one item by its title or id", title="the title to find"),
    ]
    reading = router.reading(offered)
    assert reading.aliases == {"browse_films": "filter_items"} and router.aliases == {}  # a copy; buy_item: no match
    names = [s["function"]["name"] for s in offered]
    assert reading.allowed([Turn("user", "only comedies")], names, 1) == {"browse_films", "buy_item"}
    # not reading the schemas, filter_items is not offered: get_item is the likeliest offered tool, the rest unknown
    assert router.allowed([Turn("user", "only comedies")], names, 1) == {"browse_films", "buy_item", "get_item"}
    assert reading.allowed([Turn("user", "heat")], names, 1) == {"get_item", "buy_item"}  # browse_films is a filter
    assert router.allowed([Turn("user", "heat")], names, 1) == {"get_item", "buy_item", "browse_films"}
    after = [Turn("user", "x"), Turn("assistant", "", ("browse_films",)), Turn("tool", "items")]
    assert reading.text(after).startswith("previous_filter_items")
    assert router.reading([]) is router and _one_word_router([[1.0]], [0.0], ["a"]).reading(offered).aliases == {}


def test_variant_aliases_map_each_training_variant_to_its_one_core_tool(synthetic_synth_run):
    train = _rows(synthetic_synth_run / "train.jsonl")
    aliases = variant_aliases(train)
    assert aliases, "the synthetic run offers renamed variants"
    assert set(aliases.values()) <= offered_tools(train) and not set(aliases) & set(aliases.values())
    doubled = [
        {"meta": {"tool_variants": {"find": {"core": "get_item"}, "browse": {"core": "filter_items"}}}},
        {"meta": {"tool_variants": {"find": {"core": "search_items"}}}},
    ]
    assert variant_aliases(doubled) == {"browse": "filter_items"}  # "find" renames two tools: not read as either


def test_the_job_writes_the_router_with_its_config_and_validation_scores(synthetic_synth_run, tmp_path):
    path = train_router(RouterJobConfig.build(data_dir=str(synthetic_synth_run), output_dir=str(tmp_path)))
    assert path == router_file(tmp_path) and router_file(tmp_path / "nowhere") is None and router_file(None) is None
    import yaml

    written = yaml.safe_load((tmp_path / "router_config.yaml").read_text())
    assert written["data_dir"] == str(synthetic_synth_run) and written["scores"]["train_call_turns"] > 0
    assert 0.0 <= written["scores"]["validation_top1"] <= written["scores"]["validation_top2"] <= 1.0
    reply = written["scores"]["validation_reply"]
    assert reply["after_result_turns"] > 0 and 0.0 <= reply["after_result_right"] <= 1.0  # 8 turns: too few to judge
    assert written["scores"]["train_answer_turns"] > 0 and reply["answer_p"] == PolicyConfig().router_answer_p
    assert set(written["scores"]["validation_unseen_tools"]) == {
        "variants_read_as_their_core",
        "distractors_read_as_a_tool",
    }
    train = _rows(synthetic_synth_run / "train.jsonl")
    router = ToolRouter.load(path)
    assert ANSWER in router.reply_classes and ANSWER not in router.tools and router.aliases == variant_aliases(train)
    assert set(router.schema_cores) <= set(router.tools) and router.schema_vectors.shape[0] == len(router.schema_cores)
    # each training schema is read as its own core tool (an unseen name with the same words)
    for text, core in list(core_schemas(train).items())[:20]:
        assert router.reading([{"name": "never_seen", "description": text}]).aliases["never_seen"] == core
    texts, labels = call_examples(train, router.slots, answers=True)
    assert ANSWER in labels and [y for y in labels if y != ANSWER] == call_examples(train, router.slots)[1]
    # the reply head learnt the training turns: after their results it both calls and answers
    decided = set()
    for row in train:
        turns = turns_of(row["messages"])
        decided |= {router.reply(turns[:i], 0.9) for i in range(1, len(turns)) if turns[i - 1].role == "tool"}
    assert decided == {"answer", "call"}
    # the save head learnt which calls save: of the training turns whose tool can, it says so for some, not others
    save_texts, save_tools, saved = save_examples(train, router.slots)
    assert set(saved) == {True, False} and set(save_tools) <= set(router.tools)
    said = {router.save_score(t, tool) >= 0.5 for t, tool in zip(save_texts, save_tools)}
    assert said == {True, False} and written["scores"]["validation_saves"]["save_p"] == PolicyConfig().router_save_p
    plain = train_router(
        RouterJobConfig.build(
            data_dir=str(synthetic_synth_run), output_dir=str(tmp_path / "plain"), answers=False, saves=False
        )
    )
    assert ToolRouter.load(plain).reply_coef is None and ToolRouter.load(plain).save_coef is None
    assert "validation_reply" not in yaml.safe_load((tmp_path / "plain" / "router_config.yaml").read_text())["scores"]
    assert set(ToolRouter.load(path).tools) == offered_tools(train) | set(call_examples(train)[1])
    assert set(call_examples(train)[1]) <= {
        "filter_items",
        "get_item",
        "get_user_history",
        "popular_items",
        "rank_by_preference",
        "rank_items",
        "retrieve_for_user",
        "search_items",
        "similar_items",
    }


def test_bad_input_is_one_line_errors(synthetic_synth_run, tmp_path):
    with pytest.raises(SFTDataError, match="has no train.jsonl"):
        train_router(RouterJobConfig.build(data_dir=str(tmp_path), output_dir=str(tmp_path / "out")))
    with pytest.raises(ConfigError, match="C"):
        RouterJobConfig.build(data_dir=str(synthetic_synth_run), output_dir=str(tmp_path), C=0)
    with pytest.raises(ConfigError, match="an n-gram range is"):
        RouterJobConfig.build(data_dir=str(synthetic_synth_run), output_dir=str(tmp_path), char_ngrams=(5, 3))
    leaky = tmp_path / "leaky"
    leaky.mkdir()
    test = _rows(synthetic_synth_run / "test.jsonl")
    for name in ("train.jsonl", "test.jsonl", "validation.jsonl"):
        (leaky / name).write_text((synthetic_synth_run / name).read_text())
    with (leaky / "train.jsonl").open("a") as f:
        f.write(json.dumps(test[0]) + "\n")
    with pytest.raises(SFTDataError, match="leaks test data"):
        train_router(RouterJobConfig.build(data_dir=str(leaky), output_dir=str(tmp_path / "out")))


def test_a_local_policy_uses_the_router_its_adapter_folder_holds(tmp_path):
    from recagent.agents.config import PolicyConfig, make_policy

    block = FeatureBlock("word", (1, 1), {"comedies": 0}, np.ones(1))
    ToolRouter([block], np.zeros((2, 1)), np.zeros(2), ["filter_items", "get_item"]).save(tmp_path / ROUTER_FILE)
    served = make_policy(PolicyConfig(adapter=str(tmp_path)))
    assert served.router_path == str(tmp_path / ROUTER_FILE) and served.router_top_k == PolicyConfig().router_top_k
    assert make_policy(PolicyConfig(adapter=str(tmp_path), router_top_k=0)).router_top_k == 0
    assert served.router_save_p == PolicyConfig().router_save_p
    assert make_policy(PolicyConfig(adapter=str(tmp_path), router_save_p=1.0)).router_save_p == 1.0
    assert make_policy(PolicyConfig(adapter=str(tmp_path / "elsewhere"))).router_path is None
    assert make_policy(PolicyConfig(adapter=None)).router_path is None  # the untrained base: no router
