"""Property tests of the tool layer: no input makes ToolRegistry.call raise, and only strict JSON gets through.

Every registered tool is called over the small synthetic dataset of ``conftest.py`` (real
trained models, real indexes) with arguments hypothesis draws: JSON-ish values under the
tools' real argument names, non-JSON Python objects, arbitrary text, hostile names.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from recagent.tools.recommender_tools import TOOL_FUNCTIONS, build_registry
from recagent.tools.toolkit import MAX_ARGUMENT_DEPTH, ToolOutcome

NAMES = [f.__name__ for f in TOOL_FUNCTIONS]
FIELDS = {name: list(build_registry(None)[name].json_schema()["properties"]) for name in NAMES}  # real argument names
KINDS = {"unknown_tool", "invalid_json", "invalid_arguments", "invalid_value"}  # internal_error would be a tool bug
# the autouse RECAGENT_HOME fixture is function-scoped; sharing it across examples is harmless here
FAST = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def fresh_registry(env):
    """One conversation's tools with a non-empty and an empty saved candidate set."""
    reg = build_registry(env.session())
    assert reg.call("popular_items", {"k": 5, "save_as": "c1"}).ok
    assert (
        reg.call("filter_items", {"genres": ["Action"], "year_min": 2100, "save_as": "empty"}).result["total_matches"]
        == 0
    )
    return reg


@pytest.fixture(scope="module")
def registry(synthetic_env):
    """Shared by the examples of a module: saved sets pile up across calls, as in a long conversation."""
    return fresh_registry(synthetic_env)


# A valid argument object per tool over the synthetic catalog of conftest.py (ids "1".., genre names, titles
# "<Genre> Story <id>"); test_every_tool_accepts_its_valid_arguments checks that every one of them works.
VALID = {
    "search_items": {"query": "an action story", "k": 3},
    "filter_items": {"genres": ["Comedy"], "year_min": 1950, "exclude_seen_by": "8", "k": 3},
    "retrieve_for_user": {"user_id": "8", "model": "bpr", "k": 3},
    "similar_items": {"item_ids": ["4"], "k": 3},
    "popular_items": {"genre": "Comedy", "k": 3},
    "rank_items": {"user_id": 8, "item_ids": ["4", 5], "k": 2},
    "rank_by_preference": {"user_id": "8", "candidates": "c1", "prefer_genres": ["Comedy"], "k": 3},
    "get_item": {"title": "Drama Story 3"},
    "get_user_history": {"user_id": "8", "last_n": 3},
    "get_candidates": {"name": "c1", "k": 2},
}


def assert_clean(out: object) -> None:
    """The outcome contract: an outcome always; a typed one-line error, or a strict-JSON result."""
    assert isinstance(out, ToolOutcome)
    if out.ok:
        json.dumps(out.payload(), allow_nan=False).encode("utf-8")  # strict JSON, valid Unicode
        return
    err = out.error
    assert err.error in KINDS, f"{err.error}: {err.message}"
    assert err.message and "\n" not in err.message and "Traceback" not in err.message
    json.dumps(out.payload(), allow_nan=False).encode("utf-8")  # printable by the CLI and storable in a dataset


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**90), max_value=10**90)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["4", "8", 8, "Action", "Comedy", "c1", "empty", "nope", "text"])
)
JSONISH = st.recursive(
    SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=10
)
NON_JSON = (
    st.binary(max_size=8)
    | st.sets(st.integers(), max_size=3)
    | st.complex_numbers()
    | st.decimals()
    | st.tuples(st.integers())
    | st.builds(object)
    | st.frozensets(st.text(max_size=3), max_size=2)
)


@st.composite
def tool_call(draw) -> tuple[object, object]:
    """A (name, arguments) pair: mostly a real tool with its real argument names and hostile values."""
    hostile_name = st.text(max_size=20) | st.none() | st.integers() | st.lists(st.text(), max_size=2)
    name = draw(st.sampled_from(NAMES)) if draw(st.integers(0, 4)) else draw(hostile_name)
    keys = FIELDS[name] + ["surprise"] if name in NAMES else ["k", "query"]
    changes = draw(st.dictionaries(st.sampled_from(keys), JSONISH | NON_JSON, max_size=5))
    # half the calls start from a valid object and change a few arguments, so calls also reach the tools' code
    args = {**VALID[name], **changes} if name in NAMES and draw(st.booleans()) else changes
    form = draw(st.sampled_from(["dict", "json", "text", "other"]))
    if form == "json":
        try:
            return name, json.dumps(args, ensure_ascii=draw(st.booleans()))
        except (TypeError, ValueError):
            return name, args  # not JSON-serialisable: the dict goes in as it is
    if form == "text":
        return name, draw(st.text(max_size=60))
    if form == "other":
        return name, draw(NON_JSON | JSONISH)
    return name, args


@FAST
@given(call=tool_call())
def test_no_call_raises_and_every_outcome_is_typed_and_one_line(registry, call):
    name, args = call
    out = registry.call(name, args)
    event("ok" if getattr(out, "ok", False) else getattr(getattr(out, "error", None), "error", "no outcome"))
    assert_clean(out)


NON_STRICT = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1E400",
    '"\\ud800"',
    '"a\\udfffb"',
    "9" * 4301,
    "[" * 40 + "]" * 40,
]


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(NAMES), token=st.sampled_from(NON_STRICT), data=st.data())
def test_non_strict_json_is_rejected_where_its_strict_twin_is_not(registry, name, token, data):
    args = VALID[name]
    key = data.draw(st.sampled_from(sorted(args)))
    text = json.dumps({**args, key: "@@"}).replace('"@@"', token)
    out = registry.call(name, text)
    assert not out.ok and out.error.error == "invalid_json", (token, out.error)
    assert_clean(out)
    # the same object with a strict value in that place is never refused as JSON (it may be a wrong value)
    twin = registry.call(name, json.dumps({**args, key: 1}))
    assert twin.ok or twin.error.error != "invalid_json", twin.error


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(NAMES),
    bad=st.sampled_from([math.nan, math.inf, -math.inf, 10**5000, "x\ud800", [[[[[]]]]]]),
    data=st.data(),
)
def test_dict_arguments_that_json_cannot_hold_are_rejected_naming_the_argument(registry, name, bad, data):
    args = VALID[name]
    key = data.draw(st.sampled_from(sorted(args)))
    if isinstance(bad, list):  # nesting past the limit, the way a buggy caller could build it
        for _ in range(MAX_ARGUMENT_DEPTH):
            bad = [bad]
    out = registry.call(name, {**args, key: bad})
    assert not out.ok and out.error.error == "invalid_arguments" and out.error.field == key, out.error
    assert_clean(out)


def test_every_tool_accepts_its_valid_arguments_as_dict_and_as_text(synthetic_env):
    # the counterpart of the properties above: the checks refuse hostile input, not ordinary calls
    registry = fresh_registry(synthetic_env)
    for name, args in VALID.items():
        for form in (args, json.dumps(args)):
            out = registry.call(name, form)
            assert out.ok, (name, out.error)
            assert_clean(out)
    assert set(VALID) == set(NAMES)


@pytest.mark.parametrize(
    ("args", "kind", "fragment"),
    [
        ("[" * 1000, "invalid_json", f"nest deeper than {MAX_ARGUMENT_DEPTH} levels"),  # was RecursionError
        ('{"k": ' + "9" * 4301 + "}", "invalid_json", "integer of 4301 digits"),  # was ValueError
        ('{"k": NaN}', "invalid_json", "NaN is not a JSON number"),
        ('{"k": 1e999}', "invalid_json", "'1e999' overflows a float"),
        ('{"genre": "\\ud800"}', "invalid_json", "lone surrogate at genre"),
        (
            '{"genre": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',
            "invalid_value",
            "unknown genre",
        ),  # brackets in a string
        ("x" * 100_001, "invalid_arguments", "at most 100,000"),
    ],
)
def test_the_issue_inputs_get_the_registrys_error_outcome(registry, args, kind, fragment):
    out = registry.call("popular_items", args)
    assert not out.ok and out.error.error == kind and fragment in out.error.message, out.error
    assert_clean(out)


def test_hostile_names_and_keys_come_back_clipped_on_one_line(registry):
    out = registry.call("x" * 50_000 + "\n", {})
    assert out.error.error == "unknown_tool" and len(out.error.message) < 400 and "available tools" in out.error.message
    out = registry.call(["search_items"], {})
    assert out.error.error == "unknown_tool" and "a tool name is a string" in out.error.message
    out = registry.call("popular_items", {"a\nb" + "y" * 500: 1})
    assert out.error.error == "invalid_arguments" and "Extra inputs are not permitted" in out.error.message
    assert_clean(out)
    assert len(out.error.message) < 200
