"""The tool layer on real ML-100K: results are real catalog items, bad input gets structured errors, exports are valid."""

from __future__ import annotations

import json
import re

import jsonschema
import numpy as np
import pytest

from recagent.tools.recommender_tools import TOOL_FUNCTIONS, build_registry


@pytest.fixture()
def registry(ml100k_env):
    return build_registry(ml100k_env.session())


def _ids(outcome):
    assert outcome.ok, outcome.error
    return [it["item_id"] for it in outcome.result["items"]]


def test_every_result_id_exists_in_catalog(registry, ml100k):
    calls = [
        ("search_items", {"query": "space adventure with robots", "k": 5}),
        ("filter_items", {"genres": ["Comedy", "Romance"], "match": "all", "year_min": 1990, "k": 5}),
        ("retrieve_for_user", {"user_id": 42, "k": 5}),
        ("similar_items", {"item_ids": [50], "k": 5}),
        ("popular_items", {"genre": "Horror", "k": 5}),
        ("rank_items", {"user_id": "42", "item_ids": [1, 50, 100, 181], "k": 4}),
    ]
    for name, args in calls:
        ids = _ids(registry.call(name, args))
        assert ids, name
        assert all(i in ml100k.items.index_of for i in ids), name


def test_search_finds_what_the_text_says(registry):
    out = registry.call("search_items", {"query": "animated children's film", "k": 10})
    genres = [set(it["genres"]) for it in out.result["items"]]
    assert sum("Animation" in g or "Children's" in g for g in genres) >= 8


def test_filter_constraints_hold(registry, ml100k_env):
    seen = {ml100k_env.catalog.ids[i] for i in ml100k_env.history(ml100k_env.user("42"))}
    out = registry.call(
        "filter_items",
        {
            "genres": ["comedy", "ROMANCE"],
            "match": "all",
            "year_min": 1990,
            "year_max": 1995,
            "exclude_seen_by": 42,
            "k": 100,
        },
    )
    items = out.result["items"]
    assert items and out.result["total_matches"] >= len(items)
    for it in items:
        assert {"Comedy", "Romance"} <= set(it["genres"]) and 1990 <= it["year"] <= 1995
        assert it["item_id"] not in seen
    pops = [it["score"] for it in items]
    assert pops == sorted(pops, reverse=True)


def test_retrieve_for_user_excludes_seen_and_matches_model_topk(registry, ml100k_env):
    from recagent.tools.recommenders import Query

    u = ml100k_env.user("42")
    hist = ml100k_env.history(u)
    ids = _ids(registry.call("retrieve_for_user", {"user_id": 42, "model": "sasrec", "k": 10}))
    expected, _ = ml100k_env.models["sasrec"].topk(Query(hist, u), 10, exclude=hist)
    assert ids == [ml100k_env.catalog.ids[i] for i in expected]
    assert not set(ids) & {ml100k_env.catalog.ids[i] for i in hist}


def test_tools_never_see_held_out_interactions(registry, ml100k_env, ml100k_split):
    # the test item of user 42 is not in the history a tool shows
    u = ml100k_env.user("42")
    test_item = ml100k_env.catalog.ids[int(ml100k_split.test.items[ml100k_split.test.users == u][0])]
    valid_item = ml100k_env.catalog.ids[int(ml100k_split.valid.items[ml100k_split.valid.users == u][0])]
    hist = registry.call("get_user_history", {"user_id": 42, "last_n": 100}).result
    shown = {it["item_id"] for it in hist["items"]}
    assert hist["total_interactions"] == len(ml100k_split.train_sequences[u])
    assert test_item not in shown and valid_item not in shown


def test_candidate_buffer_flow(registry):
    first = registry.call("retrieve_for_user", {"user_id": 7, "k": 5, "save_as": "for_7"})
    assert first.result["candidate_set"] == "for_7" and first.result["total_matches"] > 5
    ranked = registry.call(
        "rank_by_preference",
        {
            "user_id": 7,
            "candidates": "for_7",
            "prefer_genres": ["Comedy"],
            "weight": 1.0,
            "k": 20,
        },
    )
    top = ranked.result["items"]
    # with weight 1 every comedy outranks every non-comedy
    flags = ["Comedy" in it["genres"] for it in top]
    assert flags == sorted(flags, reverse=True) and flags[0]
    kept = registry.call("filter_items", {"candidates": "for_7", "genres": ["Drama"], "sort_by": "input", "k": 5})
    assert all("Drama" in it["genres"] for it in kept.result["items"])
    shown = registry.call("get_candidates", {"name": "for_7", "k": 3})
    assert _ids(shown) == _ids(first)[:3]


def test_sessions_have_separate_buffers(ml100k_env):
    a, b = build_registry(ml100k_env.session()), build_registry(ml100k_env.session())
    a.call("popular_items", {"k": 3, "save_as": "mine"})
    assert b.call("get_candidates", {"name": "mine"}).error.error == "invalid_value"


def test_rank_by_preference_era(registry):
    out = registry.call(
        "rank_by_preference",
        {
            "user_id": 42,
            "item_ids": [1, 50, 100, 181, 127, 174, 172],
            "year_min": 1970,
            "year_max": 1979,
            "weight": 0.9,
            "k": 7,
        },
    )
    years = [it["year"] for it in out.result["items"]]
    in_era = [1970 <= y <= 1979 for y in years]
    assert in_era == sorted(in_era, reverse=True) and in_era[0]


def test_get_item_fuzzy_and_exact(registry):
    assert registry.call("get_item", {"title": "The Usual Suspects"}).result["match"] == "exact"
    fuzzy = registry.call("get_item", {"title": "usual suspect (1995)"}).result
    assert fuzzy["item"]["title"] == "Usual Suspects, The" and fuzzy["match"] == "fuzzy"
    assert registry.call("get_item", {"item_id": 50}).result["item"]["title"] == "Star Wars"


@pytest.mark.parametrize(
    ("name", "args", "kind", "field", "fragment"),
    [
        ("retrieve_for_user", {"user_id": 99999}, "invalid_value", "user_id", "unknown user id '99999'"),
        ("similar_items", {"item_ids": [1, 424242]}, "invalid_value", "item_ids", "unknown item id '424242'"),
        ("filter_items", {"genres": ["Cartoon"]}, "invalid_value", "genres", "valid genres: Action"),
        ("popular_items", {"k": 0}, "invalid_arguments", "k", "greater than or equal to 1"),
        ("popular_items", {"k": 101}, "invalid_arguments", "k", "less than or equal to 100"),
        ("retrieve_for_user", {"user_id": [1]}, "invalid_arguments", "user_id", "valid string"),
        ("retrieve_for_user", {"user_id": 1, "model": "gpt"}, "invalid_arguments", "model", "'sasrec'"),
        ("rank_items", {"user_id": 1}, "invalid_arguments", None, "exactly one of item_ids or candidates"),
        ("filter_items", {"year_min": 2000, "year_max": 1990}, "invalid_arguments", None, "after year_max"),
        ("get_candidates", {"name": "nothing"}, "invalid_value", "candidates", "no candidate set named 'nothing'"),
        ("get_item", {}, "invalid_arguments", None, "exactly one of item_id or title"),
        ("search_items", {"query": "x", "surprise": 1}, "invalid_arguments", None, None),
        ("teleport", {}, "unknown_tool", None, "available tools: search_items"),
        ("popular_items", "{not json", "invalid_json", None, "not valid JSON"),
        ("popular_items", "[1, 2]", "invalid_arguments", None, "must be a JSON object"),
    ],
)
def test_bad_input_gets_structured_error(registry, name, args, kind, field, fragment):
    out = registry.call(name, args)
    assert not out.ok and out.error.error == kind
    if field:
        assert out.error.field == field
    if fragment:
        assert fragment in out.error.message
    payload = json.loads(out.record())
    assert payload["error"] == kind and "Traceback" not in payload["message"]
    assert out.content().startswith(f"error: {kind}\nmessage: ") and "Traceback" not in out.content()


def test_a_tool_bug_becomes_an_internal_error(registry, monkeypatch):
    def boom(*_a, **_k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(registry.env, "score", boom)
    out = registry.call("rank_items", {"user_id": 1, "item_ids": [1, 2]})
    assert out.error.error == "internal_error" and "disk on fire" in out.error.message


def test_extra_arguments_are_rejected_not_ignored(registry):
    # pydantic ignores unknown keys by default; a misspelt argument must not pass silently
    out = registry.call("search_items", {"query": "x", "surprise": 1})
    assert not out.ok


def test_openai_schemas_are_valid_json_schema(registry):
    schemas = registry.openai_schemas()
    assert [s["function"]["name"] for s in schemas] == [f.__name__ for f in TOOL_FUNCTIONS]
    for s in schemas:
        assert s["type"] == "function" and s["function"]["description"]
        jsonschema.Draft202012Validator.check_schema(s["function"]["parameters"])
    params = {s["function"]["name"]: s["function"]["parameters"] for s in schemas}
    assert params["retrieve_for_user"]["required"] == ["user_id"]
    assert params["search_items"]["properties"]["k"]["maximum"] == 100
    jsonschema.validate({"query": "heist film", "k": 3}, params["search_items"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"query": "heist film", "k": 1000}, params["search_items"])


def test_langchain_round_trip(registry, ml100k):
    tools = {t.name: t for t in registry.as_langchain()}
    assert set(tools) == set(registry.names())
    text = tools["retrieve_for_user"].invoke({"user_id": 42, "k": 3})
    ids = re.findall(r"^\[(\w+)\] ", text, flags=re.M)  # one "[id] Title (Year): genres" line per item
    assert len(ids) == 3 and all(i in ml100k.items.index_of for i in ids)
    assert tools["retrieve_for_user"].invoke({"user_id": "nobody"}).startswith("error: invalid_value\n")
    # a tool call message as a chat model would emit it
    call = {"name": "popular_items", "args": {"genre": "War", "k": 2}, "id": "call_1", "type": "tool_call"}
    msg = tools["popular_items"].invoke(call)
    assert msg.tool_call_id == "call_1" and len(msg.artifact["items"]) == 2
    assert msg.content == registry.call("popular_items", {"genre": "War", "k": 2}).content()


def test_direct_call_latency_is_recorded(registry):
    out = registry.call("popular_items", {"k": 5})
    assert out.ok and 0 <= out.latency_ms < 1000
    assert np.isfinite(out.latency_ms)


def test_result_text_reads_like_the_citations_an_answer_writes(registry):
    out = registry.call("popular_items", {"genre": "War", "k": 3})
    lines = out.content().splitlines()
    items = out.result["items"]
    assert lines[0] == "items:" and len(lines) >= 4
    for it, line in zip(items, lines[1:4]):
        # the citation first, then the genres; rank and score are left out (the order is the rank)
        assert line == f"[{it['item_id']}] {it['title']} ({it['year']}): {', '.join(it['genres'])}"
    assert "score" not in out.content() and "rank" not in out.content()
    assert json.loads(out.record()) == out.result  # the structured result is kept beside the text


def test_result_text_rules():
    from recagent.tools.result_text import result_text

    text = result_text(
        {
            "item": {"item_id": "7", "title": "Heat", "year": None, "genres": [], "rating": 4.0},
            "alternatives": [],
            "match": "fuzzy",
            "exact": False,
            "gone": None,
            "favourite_genres": ["Drama", "War"],
        }
    )
    assert (
        text
        == "item: [7] Heat | rating: 4\nalternatives: none\nmatch: fuzzy\nexact: false\nfavourite_genres: Drama, War"
    )
