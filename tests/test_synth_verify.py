"""Each rule check of the verifier, on real generated dialogs broken on purpose to fail it."""

from __future__ import annotations

import copy
import json

import pytest

from recagent.synth.config import SynthConfig
from recagent.synth.pipeline import Synthesizer
from recagent.synth.sample import Sample
from recagent.synth.verify import CHECKS, infer_kind, trace_calls, verify


@pytest.fixture(scope="module")
def synth(ml100k_env):
    return Synthesizer(SynthConfig.build(seed=11, test_fraction=0.0), ml100k_env)


def generated(synth, attempts: int = 2000):
    """The dialogs the generator makes for the first ``attempts`` requests (those it gives up on left out)."""
    from recagent.synth.builder import GenerationFailed

    for attempt in range(attempts):
        try:
            yield synth.generator.generate(synth.request(attempt))
        except GenerationFailed:
            continue


@pytest.fixture(scope="module")
def by_plan(synth):
    """One verified dialog per generation plan (base and first-call plans)."""
    from recagent.synth.programmatic import all_plan_names

    found: dict[str, Sample] = {}
    names = all_plan_names()
    for s in generated(synth):
        plan = s.extra["plan"]
        if plan not in found and verify(s, synth.vctx).passed:
            found[plan] = s
        if set(found) == names:
            break
    return found


def failed(sample: Sample, synth) -> dict[str, str]:
    v = verify(sample, synth.vctx)
    return {c.name: c.message for c in v.checks if not c.passed}


def fresh(by_plan, plan):
    return Sample.from_row(copy.deepcopy(by_plan[plan].to_row()))


def first_call(sample, core=None):
    variants = sample.tool_variants
    for m in sample.messages:
        for tc in m.get("tool_calls") or []:
            if core is None or variants[tc["function"]["name"]]["core"] == core:
                return tc
    raise AssertionError(f"no call to {core}")


def set_arg(tc, sample, core_name, value):
    args = json.loads(tc["function"]["arguments"])
    rec = sample.tool_variants[tc["function"]["name"]]
    offered = next((o for o, c in rec["params"].items() if c == core_name), core_name)
    args[offered] = value
    tc["function"]["arguments"] = json.dumps(args)


def test_every_plan_produces_a_dialog_that_passes_every_check(by_plan, synth):
    from recagent.synth.programmatic import all_plan_names

    assert set(by_plan) == all_plan_names()
    for s in by_plan.values():
        assert failed(s, synth) == {}
        assert infer_kind(s) == s.kind


def test_schema_valid_rejects_an_invalid_json_schema(by_plan, synth):
    s = fresh(by_plan, "search")
    s.tools[0]["function"]["parameters"]["properties"]["oops"] = {"type": "nonsense"}
    assert "invalid JSON Schema" in failed(s, synth)["schema_valid"]


def test_roles_rejects_a_call_without_its_result(by_plan, synth):
    s = fresh(by_plan, "search")
    s.messages = [m for m in s.messages if m["role"] != "tool"]
    assert "has no result message" in failed(s, synth)["roles"]


def test_roles_rejects_a_dialog_that_ends_on_a_call(by_plan, synth):
    s = fresh(by_plan, "search")
    s.messages = s.messages[: next(i for i, m in enumerate(s.messages) if m["role"] == "tool") + 1]
    assert "must end with an assistant text" in failed(s, synth)["roles"]


def test_calls_parse_rejects_broken_json_and_duplicate_keys(by_plan, synth):
    s = fresh(by_plan, "search")
    first_call(s)["function"]["arguments"] = '{"query": "comedy", '
    assert "not valid JSON" in failed(s, synth)["calls_parse"]
    s = fresh(by_plan, "search")
    tc = first_call(s)
    tc["function"]["arguments"] = tc["function"]["arguments"][:-1] + ', "k": 3, "k": 4}'
    assert "duplicate key" in failed(s, synth)["calls_parse"]
    for bad in (', "k": 1e999}', ', "x": "\\ud800"}'):  # the serving parser's rule: overflow and half characters
        s = fresh(by_plan, "search")
        tc = first_call(s)
        tc["function"]["arguments"] = tc["function"]["arguments"][:-1] + bad
        assert "not valid JSON" in failed(s, synth)["calls_parse"], bad


def test_tool_offered_rejects_unknown_names_and_distractors(by_plan, synth):
    s = fresh(by_plan, "search")
    first_call(s)["function"]["name"] = "search_everything"
    assert "not among the offered tools" in failed(s, synth)["tool_offered"]
    s = fresh(by_plan, "out_of_scope")
    distractor = next(n for n, rec in s.tool_variants.items() if rec["core"] is None)
    s.messages.insert(
        2,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_x", "type": "function", "function": {"name": distractor, "arguments": "{}"}}],
        },
    )
    s.messages.insert(3, {"role": "tool", "tool_call_id": "call_x", "name": distractor, "content": "{}"})
    assert "distractor with no implementation" in failed(s, synth)["tool_offered"]


def test_arguments_valid_rejects_wrong_types_missing_required_and_enum_violations(by_plan, synth):
    s = fresh(by_plan, "search")
    set_arg(first_call(s), s, "k", "five")
    assert "is not of type 'integer'" in failed(s, synth)["arguments_valid"]
    s = fresh(by_plan, "search")
    tc = first_call(s)
    args = json.loads(tc["function"]["arguments"])
    args.pop(next(iter(args)))  # the query (required, first in schema order)
    tc["function"]["arguments"] = json.dumps(args)
    assert "is a required property" in failed(s, synth)["arguments_valid"]
    s = fresh(by_plan, "search")
    set_arg(first_call(s), s, "colour", "red")
    assert "Additional properties" in failed(s, synth)["arguments_valid"]


def test_ids_exist_rejects_unknown_users_and_items(by_plan, synth):
    s = fresh(by_plan, "retrieve")
    set_arg(first_call(s), s, "user_id", "99999")
    assert "unknown user id '99999'" in failed(s, synth)["ids_exist"]
    s = fresh(by_plan, "similar")
    set_arg(first_call(s, "similar_items"), s, "item_ids", ["777777"])
    assert "unknown item id '777777'" in failed(s, synth)["ids_exist"]


def test_k_in_bounds_rejects_k_past_max(by_plan, synth):
    s = fresh(by_plan, "search")
    set_arg(first_call(s), s, "k", 1000)
    assert "outside 1..100" in failed(s, synth)["k_in_bounds"]


def test_ids_from_results_rejects_ids_and_sets_that_no_earlier_call_produced(by_plan, synth):
    s = fresh(by_plan, "similar")
    seen = {i for t in trace_calls(s) if t.result for i in [t.result.get("item", {}).get("item_id")]}
    other = next(i for i in ("1", "2", "50", "100") if i not in seen)
    set_arg(first_call(s, "similar_items"), s, "item_ids", [other])
    assert f"item id '{other}' did not come from an earlier tool result" in failed(s, synth)["ids_from_results"]
    s = fresh(by_plan, "retrieve_filter")
    set_arg(first_call(s, "filter_items"), s, "candidates", "never_saved")
    assert "'never_saved' was not saved" in failed(s, synth)["ids_from_results"]
    s = fresh(by_plan, "retrieve")
    uid = s.user_id
    s.messages = [
        ({**m, "content": m["content"].replace(uid, "someone")} if m["role"] in ("user", "system") else m)
        for m in s.messages
    ]
    assert "was never given in the conversation" in failed(s, synth)["ids_from_results"]


def test_item_ids_the_user_gives_count_only_after_an_item_word_or_a_hash():
    import random

    from recagent.synth import phrasing as ph
    from recagent.synth.verify import given_item_ids

    assert given_item_ids("Tell me about movie 127.") == {"127"}
    assert given_item_ids("rank items 12, 100, and 7 for me") == {"12", "100", "7"}
    assert given_item_ids("ids: 5, 9 or 40?") == given_item_ids("#5, #9 or #40") == {"5", "9", "40"}
    assert given_item_ids("film no. 3 and book number 8") == {"3", "8"}
    for text in ("I want 5 movies from 1990", "films from the 90s", "user #42 here", "I'm #42.", "Toy Story 2"):
        assert given_item_ids(text) == set(), text
    rng = random.Random(0)
    for n in (1, 2, 3, 5):
        for _ in range(60):
            ids = [str(rng.randint(1, 1682)) for _ in range(n)]
            text = ph.item_refs(ids, "movie", "movies", rng)
            assert set(ids) <= given_item_ids(text) | {i for i in ids if f"[{i}]" in text}, text


def test_year_limits_said_as_constraints_keep_their_bounds():
    import random

    from recagent.synth import phrasing as ph

    rng = random.Random(1)
    for _ in range(50):
        decade_floor = ph.year_bound(1990, None, "movies", rng)
        assert any(w in decade_floor for w in ("1990", "90s", "nineties")), decade_floor
        floor = ph.year_bound(1985, None, "movies", rng)
        assert "1985" in floor and not floor.startswith("nothing after"), floor
        ceiling = ph.year_bound(None, 1979, "movies", rng)
        assert any(w in ceiling for w in ("1979", "1980", "70s", "1970s", "seventies")), ceiling
        assert not any(w in ceiling for w in ("before 1979", "older than 1979")), ceiling


def test_executes_rejects_a_call_that_fails_when_run(by_plan, synth):
    s = fresh(by_plan, "popular")
    set_arg(first_call(s), s, "genre", "Polka")
    assert "unknown genre 'Polka'" in failed(s, synth)["executes"]


def test_same_result_rejects_a_recorded_result_that_the_tool_does_not_give(by_plan, synth):
    s = fresh(by_plan, "popular")
    tool = next(m for m in s.messages if m["role"] == "tool")
    result = json.loads(tool["artifact"])
    result["items"][0]["score"] += 1
    tool["artifact"] = json.dumps(result)
    assert "different result" in failed(s, synth)["same_result"]
    s = fresh(by_plan, "popular")  # what the model read must be the tool's text too
    tool = next(m for m in s.messages if m["role"] == "tool")
    first, *rest = tool["content"].split("\n")
    tool["content"] = "\n".join([first, *reversed(rest)])
    assert "different result" in failed(s, synth)["same_result"]


def test_answer_grounded_rejects_items_not_from_results(by_plan, synth):
    s = fresh(by_plan, "search")
    seen = {i for t in trace_calls(s) if t.result for i in (it["item_id"] for it in t.result.get("items", []))}
    other = next(i for i in ("1", "2", "50", "100", "181") if i not in seen)
    s.messages[-1] = {"role": "assistant", "content": s.messages[-1]["content"] + f"\n6. Something [{other}]"}
    assert other in failed(s, synth)["answer_grounded"]
    s = fresh(by_plan, "search")
    s.messages[-1] = {"role": "assistant", "content": "Try Imaginary Movie (1994)."}
    assert "Imaginary Movie (1994)" in failed(s, synth)["answer_grounded"]


def test_filter_constraints_reject_results_that_break_the_filter(by_plan, synth, ml100k_env):
    s = fresh(by_plan, "filter")
    tc = first_call(s, "filter_items")
    args = json.loads(tc["function"]["arguments"])
    tool = next(m for m in s.messages if m.get("tool_call_id") == tc["id"])
    content = json.loads(tool["artifact"])
    genres = {g.lower() for g in next(v for k, v in args.items() if isinstance(v, list))}
    cat = ml100k_env.catalog
    wrong = next(i for i in range(len(cat.ids)) if not genres & {g.lower() for g in cat.genres[i]})
    content["items"][0].update(
        item_id=cat.ids[wrong],
        title=cat.titles[wrong],
        year=int(cat.years[wrong]) or None,
        genres=list(cat.genres[wrong]),
    )
    tool["artifact"] = json.dumps(content)
    assert "misses genres" in failed(s, synth)["filter_constraints"]
    content["items"][0]["genres"] = ["Documentary"]  # metadata that contradicts the catalog
    tool["artifact"] = json.dumps(content)
    assert "differs from the catalog" in failed(s, synth)["filter_constraints"]


def test_no_leakage_rejects_a_training_answer_naming_the_users_test_item(by_plan, synth, ml100k_split):
    s = fresh(by_plan, "retrieve")
    assert s.split == "train"
    ds = ml100k_split.dataset
    u = ds.users.index_of[s.user_id]
    held = ds.items.ids[int(ml100k_split.test.items[ml100k_split.test.users == u][0])]
    s.messages[-1] = {"role": "assistant", "content": f"Try [{held}]."}
    assert f"held-out items ['{held}']" in failed(s, synth)["no_leakage"]
    s = fresh(by_plan, "retrieve")
    name = next(iter(s.tool_variants))
    s.tool_variants[name]["heldout"] = True
    assert "held-out tool variants offered in training" in failed(s, synth)["no_leakage"]


def test_kind_matches_rejects_a_mislabelled_dialog(by_plan, synth):
    s = fresh(by_plan, "similar")
    s.kind = "parallel"
    assert "declared parallel, shape is chain" in failed(s, synth)["kind_matches"]


def test_a_check_that_crashes_rejects_the_sample_instead_of_stopping(by_plan, synth):
    s = fresh(by_plan, "search")
    s.messages[1] = {"role": "user"}  # no content at all
    s.tools.append("not a tool")
    v = verify(s, synth.vctx)
    assert not v.passed and len(v.checks) == len(CHECKS)


def test_filter_constraints_reject_an_item_of_an_excluded_genre(by_plan, synth, ml100k_env):
    s = fresh(by_plan, "filter_neg")
    tc = first_call(s, "filter_items")
    v = s.tool_variants[tc["function"]["name"]]
    args = json.loads(tc["function"]["arguments"])
    core_args = {v.get("params", {}).get(k, k): val for k, val in args.items()}
    excluded = {g.lower() for g in core_args["exclude_genres"]}
    wanted = {g.lower() for g in core_args.get("genres", [])}
    tool = next(m for m in s.messages if m.get("tool_call_id") == tc["id"])
    result = json.loads(tool["artifact"])
    cat = ml100k_env.catalog
    lo, hi = core_args.get("year_min") or 0, core_args.get("year_max") or 9999
    # an item that meets every other condition of the call but has an excluded genre
    bad = next(
        i
        for i in range(len(cat.ids))
        if (has := {g.lower() for g in cat.genres[i]}) & excluded
        and (not wanted or has & wanted)
        and lo <= int(cat.years[i]) <= hi
    )
    result["items"][0].update(
        item_id=cat.ids[bad], title=cat.titles[bad], year=int(cat.years[bad]) or None, genres=list(cat.genres[bad])
    )
    tool["artifact"] = json.dumps(result)
    assert "has excluded genres" in failed(s, synth)["filter_constraints"]


def test_a_listwise_dialog_is_the_agents_listwise_episode_answered_in_the_retrieved_order(by_plan, synth):
    from recagent.agents.prompts import LISTWISE_REQUEST, listwise_answer, system_prompt
    from recagent.tools.recommender_tools import TOOL_FUNCTIONS

    s = by_plan["listwise_retrieve"]
    system, user, call, result, answer = s.messages
    k = json.loads(call["tool_calls"][0]["function"]["arguments"])["k"]
    # word for word what Agent.recommend shows the policy, with the chat agent's tools as served
    state = {"mode": "listwise", "k": k, "user": {"user_id": s.user_id}}
    assert system["content"] == system_prompt(state, "ml-100k")
    assert user["content"] == LISTWISE_REQUEST.format(k=k, user_id=s.user_id)
    assert [t["function"]["name"] for t in s.tools] == [f.__name__ for f in TOOL_FUNCTIONS]
    assert call["tool_calls"][0]["function"]["name"] == "retrieve_for_user"
    items = [it["item_id"] for it in json.loads(result["artifact"])["items"]]
    assert answer["content"] == listwise_answer(items[:k]) and len(items) == k
    assert s.kind == "listwise" and infer_kind(s) == "listwise"


def test_listwise_answers_are_checked_for_grounding_and_leakage_like_cited_ones(by_plan, synth, ml100k_split):
    from recagent.agents.prompts import listwise_answer

    s = fresh(by_plan, "listwise_retrieve")
    assert s.split == "train" and failed(s, synth) == {}
    listed = json.loads(s.messages[-1]["content"])
    other = next(i for i in ("1", "2", "50", "100", "181") if int(i) not in listed)
    s.messages[-1]["content"] = listwise_answer([*map(str, listed[:-1]), other])
    assert other in failed(s, synth)["answer_grounded"]
    ds = ml100k_split.dataset
    held = ds.items.ids[int(ml100k_split.test.items[ml100k_split.test.users == ds.users.index_of[s.user_id]][0])]
    s.messages[-1]["content"] = listwise_answer([*map(str, listed[:-1]), held])
    assert f"held-out items ['{held}']" in failed(s, synth)["no_leakage"]


def test_small_talk_that_names_a_genre_decade_or_title_fills_its_slots_and_calls_nothing(synth):
    # "what counts as film noir, anyway?", "were the 80s a good time for movies?": a genre or year in a question is no
    # call by itself
    import re

    talk = []
    for s in generated(synth):
        if s.extra["plan"] == "smalltalk":
            talk.append(s)
        if len(talk) == 30:
            break
    asks = [next(m["content"] for m in s.messages if m["role"] == "user") for s in talk]
    assert len(talk) == 30 and [a for a in asks if "{" in a or "}" in a] == []
    assert [s for s in talk if any(m.get("tool_calls") for m in s.messages)] == []
    assert [s for s in talk if not verify(s, synth.vctx).passed] == []
    new_topics = re.compile(
        r"\b(?:anyway|label|describe|difference|five|too hard|good time|decade|better in the|worse)\b"
    )
    assert any(new_topics.search(a.lower()) for a in asks), asks
