"""BFCL-style AST matching: real exported entries pass with their own gold calls; each mutation fails with its error."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from recagent.evaluation.ast_match import (
    ERROR_TYPES,
    ASTResult,
    PredictedCall,
    calls_from_message,
    check_call,
    check_turn,
    standardize_string,
)
from recagent.synth.export import to_bfcl
from recagent.synth.sample import Sample

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "synth_sample.jsonl"


def _real_entries() -> list[tuple[dict, list[PredictedCall]]]:
    """Every BFCL entry of the example dialogs with the gold assistant message's own calls."""
    out = []
    for line in EXAMPLES.read_text().splitlines():
        sample = Sample.from_row(json.loads(line))
        for entry in to_bfcl(sample):
            turn = int(entry["id"].rsplit("_", 1)[1])
            out.append((entry, calls_from_message(sample.messages[turn])))
    return out


REAL = _real_entries()


def _find(pred) -> tuple[dict, list[PredictedCall]]:
    """The first real entry whose single gold call satisfies ``pred(name, allowed)``."""
    for entry, calls in REAL:
        if len(entry["ground_truth"]) == 1:
            ((name, allowed),) = entry["ground_truth"][0].items()
            if pred(name, allowed):
                return entry, calls
    raise LookupError("no such entry in the examples")


def _args(call: PredictedCall) -> dict:
    return json.loads(call.arguments) if isinstance(call.arguments, str) else copy.deepcopy(call.arguments)


def _with(call: PredictedCall, **changes) -> PredictedCall:
    args = _args(call)
    args.update(changes)
    return PredictedCall(call.name, args)


def _without(call: PredictedCall, param: str) -> PredictedCall:
    args = _args(call)
    del args[param]
    return PredictedCall(call.name, args)


def _fails(result: ASTResult, error: str) -> None:
    assert error in ERROR_TYPES
    assert not result.valid, result
    assert result.error == error, result
    assert result.message


# --------------------------------------------------------------------------------- real entries


def test_examples_cover_every_shape():
    kinds = {e["category"] for e, _ in REAL}
    assert {"single", "parallel", "chain", "clarify"} <= kinds
    assert any(e["heldout_tools"] for e, _ in REAL)
    assert sum(e["parallel"] for e, _ in REAL) >= 3


@pytest.mark.parametrize("i", range(len(REAL)), ids=[e["id"] for e, _ in REAL])
def test_gold_calls_pass_on_every_real_entry(i):
    entry, calls = REAL[i]
    assert check_turn(calls, entry) == ASTResult(True, None)


def test_parallel_entries_pass_with_predictions_reversed():
    parallel = [(e, c) for e, c in REAL if e["parallel"]]
    assert parallel
    for entry, calls in parallel:
        assert len(calls) > 1
        assert check_turn(calls[::-1], entry).valid, entry["id"]


def test_wrong_name():
    entry, calls = _find(lambda n, a: n == "retrieve_for_user")
    _fails(check_turn([PredictedCall("similar_items", calls[0].arguments)], entry), "wrong_name")
    _fails(check_turn([PredictedCall(None, calls[0].arguments)], entry), "wrong_name")


def test_extra_unknown_parameter():
    entry, calls = _find(lambda n, a: n == "retrieve_for_user")
    _fails(check_turn([_with(calls[0], genre="Action")], entry), "unknown_parameter")


def test_missing_schema_required_and_gold_required():
    entry, calls = _find(lambda n, a: n == "retrieve_for_user" and a.get("k", [""]) != [""])
    _fails(check_turn([_without(calls[0], "user_id")], entry), "missing_required")  # schema-required
    assert "" not in entry["ground_truth"][0]["retrieve_for_user"]["k"]
    _fails(check_turn([_without(calls[0], "k")], entry), "missing_required")  # optional in schema, set in gold


def test_int_as_string_and_bool_as_int_and_float_as_int_are_wrong_types():
    entry, calls = _find(lambda n, a: n == "retrieve_for_user" and a["k"] == [10])
    _fails(check_turn([_with(calls[0], k="10")], entry), "wrong_type")
    _fails(check_turn([_with(calls[0], k=True)], entry), "wrong_type")
    _fails(check_turn([_with(calls[0], k=10.0)], entry), "wrong_type")  # JSON-schema integer, as BFCL's int


def test_value_outside_allowed():
    entry, calls = _find(lambda n, a: n == "retrieve_for_user" and a["k"] == [10])
    _fails(check_turn([_with(calls[0], k=7)], entry), "value_not_allowed")
    _fails(check_turn([_with(calls[0], user_id="121")], entry), "value_not_allowed")


def test_strings_are_standardised_like_bfcl():
    entry, calls = _find(lambda n, a: a.get("title") == ["Star Trek: The Wrath of Khan"])
    assert check_turn([_with(calls[0], title="  STAR trek: the_wrath-of.Khan ")], entry).valid
    # ":" is not among the characters BFCL removes, so dropping it changes the value
    _fails(check_turn([_with(calls[0], title="Star Trek The Wrath of Khan")], entry), "value_not_allowed")
    assert standardize_string("Singin' in the Rain") == 'singin"intherain'
    assert standardize_string("April 1, 2024") == standardize_string("april 1 2024")


def test_free_text_parameter_accepts_any_string_but_not_another_type():
    entry, calls = _find(lambda n, a: n == "search_items")
    assert "query" in entry["free_text"]["search_items"]
    assert check_turn([_with(calls[0], query="something else entirely", save_as="mine")], entry).valid
    _fails(check_turn([_with(calls[0], query=5)], entry), "wrong_type")
    # the same parameter is exact when it is not listed as free text
    strict = {**entry, "free_text": {}}
    _fails(check_turn([_with(calls[0], query="something else entirely")], strict), "value_not_allowed")


def test_a_set_name_the_gold_gave_may_be_another_name_or_left_out_but_a_required_value_may_not():
    entry, calls = _find(lambda n, a: "save_as" in a and a["save_as"] != [""])
    ((name, allowed),) = entry["ground_truth"][0].items()
    assert "save_as" in entry["free_text"][name]
    assert check_turn([_with(calls[0], save_as="other")], entry).valid
    assert check_turn([_without(calls[0], "save_as")], entry).valid  # naming is foresight a one-turn check can't judge
    needed = next(p for p, values in allowed.items() if "" not in values)
    _fails(check_turn([_without(calls[0], needed)], entry), "missing_required")
    _fails(check_turn([_with(calls[0], save_as=3)], entry), "wrong_type")


def test_optional_parameter_omitted_or_set_to_its_default():
    entry, calls = _find(lambda n, a: n == "retrieve_for_user" and a["model"] == [""])
    assert "model" not in _args(calls[0])
    assert check_turn(calls, entry).valid
    assert check_turn([_with(calls[0], model=None)], entry).valid  # the schema default (null)
    _fails(check_turn([_with(calls[0], model="bpr")], entry), "value_not_allowed")


def test_wrong_number_of_calls():
    entry, calls = next((e, c) for e, c in REAL if e["parallel"])
    _fails(check_turn(calls[:1], entry), "wrong_count")
    _fails(check_turn([*calls, calls[0]], entry), "wrong_count")
    _fails(check_turn([], entry), "wrong_count")


@pytest.mark.parametrize(
    "text",
    [
        '{"user_id": "120", "k": 10',
        "[1, 2]",
        '"120"',
        '{"user_id": "120", "user_id": "121"}',
        '{"user_id": "120", "k": NaN}',
        "",
    ],
)
def test_unparsable_arguments(text):
    entry, calls = _find(lambda n, a: n == "retrieve_for_user")
    _fails(check_turn([PredictedCall(calls[0].name, text)], entry), "unparsable_arguments")


def test_missing_arguments_are_unparsable():
    entry, calls = _find(lambda n, a: n == "retrieve_for_user")
    _fails(check_turn([PredictedCall(calls[0].name, None)], entry), "unparsable_arguments")


def test_list_values_are_order_sensitive():
    def id_list(a):  # the name of an argument whose gold value is a list of two or more ids
        return next(
            (
                k
                for k, v in a.items()
                if v and isinstance(v[0], list) and len(v[0]) > 1 and all(str(x).isdigit() for x in v[0])
            ),
            None,
        )

    entry, calls = _find(lambda n, a: id_list(a) is not None)
    key = id_list(entry["ground_truth"][0][next(iter(entry["ground_truth"][0]))])
    ids = _args(calls[0])[key]
    _fails(check_turn([_with(calls[0], **{key: ids[::-1]})], entry), "value_not_allowed")
    _fails(check_turn([_with(calls[0], **{key: ids[:-1]})], entry), "value_not_allowed")


def test_enum_violations_are_wrong_types():
    entry, calls = _find(lambda n, a: n == "retrieve_for_user")
    _fails(check_turn([_with(calls[0], model="svd")], entry), "wrong_type")  # anyOf [enum, null]
    entry, calls = _find(lambda n, a: n == "filter_items" and len(a.get("genres", [[]])[0]) == 1)
    genre = _args(calls[0])["genres"][0]
    # where the items have no enum, a case change passes the value check (standardised)
    assert check_turn([_with(calls[0], genres=[genre.lower()])], entry).valid
    _fails(check_turn([_with(calls[0], genres=["Noir"])], entry), "value_not_allowed")
    # the same tool as a variant that lists the catalog's genres as an enum (tool_pool evolves such variants)
    entry = copy.deepcopy(entry)
    schema = next(f for f in entry["function"] if f["name"] == "filter_items")["parameters"]["properties"]["genres"]
    schema["items"] = {"type": "string", "enum": ["Action", "Comedy", "Crime", "Drama", "Thriller", "Western"]}
    _fails(check_turn([_with(calls[0], genres=["Noir"])], entry), "wrong_type")  # array items enum
    # case is not standardised against a schema enum: the tool would reject it
    _fails(check_turn([_with(calls[0], genres=[genre.lower()])], entry), "wrong_type")


def test_parallel_mismatch_reports_the_informative_pairing():
    entry, calls = _find_parallel("retrieve_for_user")
    both_pop = [_with(c, model="pop") for c in calls]
    result = check_turn(both_pop, entry)
    _fails(result, "no_match")
    assert "value_not_allowed" in result.message and "itemknn" in result.message
    entry, calls = _find_parallel("search_items")
    result = check_turn([calls[0], _with(calls[1], top_n=4)][::-1], entry)
    _fails(result, "no_match")
    assert "value_not_allowed" in result.message and "top_n" in result.message


def _find_parallel(name: str) -> tuple[dict, list[PredictedCall]]:
    return next((e, c) for e, c in REAL if e["parallel"] and any(name in g for g in e["ground_truth"]))


# ------------------------------------------------------------------------------ hand-written types


FN = {
    "name": "f",
    "parameters": {
        "type": "object",
        "properties": {
            "n": {"type": "integer"},
            "x": {"type": "number"},
            "flag": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "grid": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
            "opts": {"type": "object", "properties": {"a": {"type": "string"}}},
            "mode": {"type": "string", "enum": ["fast", "slow"], "default": "fast"},
            "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
            "either": {"type": ["string", "null"]},
            "free": {"type": "string"},
            "loose": {"type": "string"},
        },
        "required": ["n"],
    },
}
GOLD = {
    "f": {
        "n": [10],
        "x": [10.0, 2.5],
        "flag": ["", True],
        "tags": ["", ["Sci-Fi", "war"]],
        "grid": ["", [[1, 2], [3]]],
        "opts": ["", {"a": "New York"}],
        "mode": [""],
        "maybe": [""],
        "either": ["", None],
        "free": [""],
    }
}
BASE = {"n": 10, "x": 10.0}


def _check(**args) -> ASTResult:
    return check_call(PredictedCall("f", {**BASE, **args}), GOLD, FN, free_text=["free"])


def test_hand_written_base_call_passes():
    assert _check() == ASTResult(True, None)
    assert check_call(PredictedCall("f", json.dumps(BASE)), GOLD, FN).valid


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"x": 10}, None),  # int 10 equals allowed 10.0
        ({"x": 2.5}, None),
        ({"x": 3}, "value_not_allowed"),
        ({"x": True}, "wrong_type"),  # bool is not a number
        ({"x": "10"}, "wrong_type"),
        ({"n": 10.5}, "wrong_type"),
        ({"flag": True}, None),
        ({"flag": 1}, "wrong_type"),
        ({"flag": False}, "value_not_allowed"),
        ({"tags": ["sci fi", "WAR"]}, None),  # standardised element-wise
        ({"tags": ["war", "Sci-Fi"]}, "value_not_allowed"),  # order matters, as in BFCL
        ({"tags": ["Sci-Fi", 3]}, "wrong_type"),  # items type
        ({"tags": "Sci-Fi"}, "wrong_type"),
        ({"grid": [[1, 2], [3]]}, None),
        ({"grid": [[1, 2], [3.0]]}, "wrong_type"),  # nested items type
        ({"grid": [[1, 2], [4]]}, "value_not_allowed"),
        ({"opts": {"a": "new york"}}, None),  # dicts key-wise, values standardised
        ({"opts": {"a": "Boston"}}, "value_not_allowed"),
        ({"opts": {"a": "New York", "b": "x"}}, "value_not_allowed"),
        ({"opts": {"a": 1}}, "wrong_type"),  # nested property type
        ({"opts": ["New York"]}, "wrong_type"),
        ({"mode": "fast"}, None),  # "" allowed and the value is the schema default
        ({"mode": "slow"}, "value_not_allowed"),
        ({"mode": "medium"}, "wrong_type"),  # enum violation
        ({"maybe": None}, None),  # anyOf null branch, the default
        ({"maybe": 3}, "value_not_allowed"),
        ({"maybe": "3"}, "wrong_type"),  # no anyOf branch matches
        ({"either": None}, None),  # type list
        ({"either": 1}, "wrong_type"),
        ({"free": "any words at all"}, None),  # free text: only the type counts
        ({"free": 1}, "wrong_type"),
        ({"loose": "not constrained by gold"}, None),  # in the schema, absent from gold
        ({"loose": 1}, "wrong_type"),
        ({"other": 1}, "unknown_parameter"),
    ],
)
def test_hand_written_type_and_value_rules(args, error):
    result = _check(**args)
    if error is None:
        assert result == ASTResult(True, None), result
    else:
        _fails(result, error)


def test_hand_written_missing_required():
    _fails(check_call(PredictedCall("f", {"x": 10.0}), GOLD, FN), "missing_required")  # schema-required n
    _fails(check_call(PredictedCall("f", {"n": 10}), GOLD, FN), "missing_required")  # gold lacks "" for x


def test_bool_never_equals_a_number_even_without_a_schema_type():
    fn = {"name": "g", "parameters": {"type": "object", "properties": {"v": {}}}}
    assert check_call(PredictedCall("g", {"v": True}), {"g": {"v": [True]}}, fn).valid
    _fails(check_call(PredictedCall("g", {"v": 1}), {"g": {"v": [True]}}, fn), "value_not_allowed")
    _fails(check_call(PredictedCall("g", {"v": "1"}), {"g": {"v": [1]}}, fn), "value_not_allowed")


def test_turn_without_gold_calls_and_malformed_entries():
    entry = {"id": "e", "function": [FN], "ground_truth": [], "free_text": {}}
    assert check_turn([], entry).valid
    _fails(check_turn([PredictedCall("f", BASE)], entry), "wrong_count")
    bad = {"id": "e", "function": [FN], "ground_truth": [{"h": {}}], "free_text": {}}
    with pytest.raises(ValueError, match="not offered"):
        check_turn([PredictedCall("h", {})], bad)


def test_openai_tool_wrapper_in_function_list():
    entry = {"id": "e", "function": [{"type": "function", "function": FN}], "ground_truth": [GOLD], "free_text": {}}
    assert check_turn([PredictedCall("f", BASE)], entry).valid
    _fails(check_turn([PredictedCall("f", {**BASE, "n": "10"})], entry), "wrong_type")


# ------------------------------------------------------------------------------ calls_from_message


def test_calls_from_message_tolerates_malformed_calls():
    message = {
        "role": "assistant",
        "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "f", "arguments": '{"n": 10}'}},
            {"id": "2", "function": {"name": "f", "arguments": {"n": 10}}},
            {"id": "3", "function": {"name": "f"}},
            {"id": "4", "function": {"arguments": "{}"}},
            {"id": "5"},
            "not a call",
            {"id": "6", "function": {"name": "f", "arguments": 7}},
        ],
    }
    assert calls_from_message(message) == [
        PredictedCall("f", '{"n": 10}'),
        PredictedCall("f", {"n": 10}),
        PredictedCall("f", None),
        PredictedCall(None, "{}"),
        PredictedCall(None, None),
        PredictedCall(None, None),
        PredictedCall("f", None),
    ]
    assert calls_from_message({"role": "assistant", "content": "hi"}) == []
    assert calls_from_message({"role": "assistant", "tool_calls": None}) == []
