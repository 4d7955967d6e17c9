"""BFCL-style AST matching of predicted tool calls against the ground truth of an exported entry.

What BFCL's AST checker does: it parses the model's output into function calls (the "AST") and,
without executing anything, checks each call against a ground truth that lists, per parameter,
every acceptable value. A call passes when the function name is right, no parameter is unknown,
every required parameter is present, every value has the type the function document declares,
and every value equals one of the acceptable ones (``""`` in the list means "may be omitted").
Strings are compared after BFCL's ``standardize_string`` (its AST checker removes spaces and the
punctuation ``, . / - _ * ^``, lowercases, and turns ``'`` into ``"``: "April 1, 2024" equals
"april 1 2024"); lists are compared element by element *in order* (``["a", "b"]`` does not match
``["b", "a"]``, as in BFCL); dicts key by key. Parallel calls are matched order-free.

This module re-implements that check on our own entry format (:func:`recagent.synth.export.to_bfcl`)
and differs from BFCL where that format asks for it:

- ``free_text`` parameters (search queries, candidate-set names) accept any value of the right
  type: their exact wording is not part of correctness, which BFCL's exact lists cannot express.
- A predicted parameter the schema declares but the gold call does not mention is accepted when its
  value is type-valid: the gold does not constrain it. (The exporter lists every schema parameter,
  so this only arises for hand-written entries.)
- An optional parameter (``""`` allowed) also accepts the schema's ``default``: BFCL's hand-written
  answer lists include the default next to ``""``; our lists are generated from one gold call and
  only say ``""``, so writing ``"k": 10`` where ``k`` defaults to 10 is not an error.
- Types come from JSON Schema (``integer`` excludes booleans; ``number`` takes int or float, so 10
  equals 10.0; ``anyOf``/``oneOf`` and type lists accept any matching branch; ``enum`` and array
  ``items`` are checked recursively), where BFCL infers Python types from its own type names
  (its aliases ``dict``, ``float``, ``tuple``, ``any`` are understood too). Range, length and
  pattern constraints are not checked, as in BFCL.
- Strings are also ``strip()``-ed before standardisation (BFCL only removes the space character).
- Parallel calls are assigned to gold calls by a true bipartite matching (Hungarian algorithm),
  where BFCL's ``parallel_function_checker_no_order`` matches greedily.
- Argument text is parsed strictly (:func:`recagent.agents.prompt_format.strict_call_json`: no
  NaN/Infinity or numbers that overflow to it, no duplicate keys, deep nesting or lone surrogates)
  and must be a JSON object: the same rule the serving parser applies.

Why hand-written: BFCL's checker lives inside the ``bfcl-eval`` leaderboard package, not as a
stable library API, and importing it pulls in the leaderboard's model handlers and their heavy
dependencies; its input is BFCL's own Python-typed function documents. A small, typed
re-implementation on our entry format is easier to read, test and keep stable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from recagent.agents.prompt_format import strict_call_json

ERROR_TYPES: tuple[str, ...] = (
    "wrong_count",
    "wrong_name",
    "unparsable_arguments",
    "unknown_parameter",
    "missing_required",
    "wrong_type",
    "value_not_allowed",
    "no_match",
)

# How far a call got before failing: the deeper, the more informative the error about a pairing.
_DEPTH = {
    "wrong_name": 0,
    "unparsable_arguments": 1,
    "unknown_parameter": 2,
    "missing_required": 3,
    "wrong_type": 4,
    "value_not_allowed": 5,
}

_BFCL_PUNCT = re.compile(r"[ \,\.\/\-\_\*\^]")

_TYPE_ALIASES = {
    "dict": "object",
    "float": "number",
    "tuple": "array",
    "list": "array",
    "int": "integer",
    "bool": "boolean",
    "str": "string",
}


@dataclass(frozen=True)
class PredictedCall:
    """A predicted call: its name and arguments (a dict, raw JSON text, or None when missing)."""

    name: str | None
    arguments: dict[str, Any] | str | None


@dataclass(frozen=True)
class ASTResult:
    """Pass/fail of an AST check; ``error`` is one of :data:`ERROR_TYPES` when it failed."""

    valid: bool
    error: str | None
    message: str = ""


_OK = ASTResult(True, None)


def _fail(error: str, message: str) -> ASTResult:
    return ASTResult(False, error, message)


def standardize_string(text: str) -> str:
    """BFCL's string standardisation (plus ``strip``): no spaces or ``,./-_*^``, lowercase, ``'`` -> ``"``."""
    return _BFCL_PUNCT.sub("", text.strip()).lower().replace("'", '"')


# --------------------------------------------------------------------------------------------- types


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _simple_type_ok(value: Any, type_name: str) -> bool | None:
    """True/False for a known JSON-schema (or BFCL alias) type name; None when the name is unknown."""
    t = _TYPE_ALIASES.get(type_name, type_name)
    if t == "string":
        return isinstance(value, str)
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return _is_number(value)
    if t == "boolean":
        return isinstance(value, bool)
    if t == "array":
        return isinstance(value, list)
    if t == "object":
        return isinstance(value, dict)
    if t == "null":
        return value is None
    if t == "any":
        return True
    return None


def _type_error(value: Any, schema: Any) -> str | None:
    """Why ``value`` does not satisfy ``schema``'s type, enum, items and properties; None when it does."""
    if not isinstance(schema, Mapping):
        return None
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            reasons = [_type_error(value, b) for b in branches]
            if all(r is not None for r in reasons):
                return f"matches no {key} branch ({'; '.join(r for r in reasons if r)})"
    for branch in schema.get("allOf") or []:
        reason = _type_error(value, branch)
        if reason is not None:
            return reason
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        known = [ok for ok in (_simple_type_ok(value, str(n)) for n in names) if ok is not None]
        if known and not any(known):
            return f"expected {' or '.join(map(str, names))}, got {_json_type(value)}"
    enum = schema.get("enum")
    if isinstance(enum, list) and not any(_same(value, e) for e in enum):
        return f"{value!r} is not one of {enum}"
    if "const" in schema and not _same(value, schema["const"]):
        return f"{value!r} is not {schema['const']!r}"
    if isinstance(value, list):
        items = schema.get("items")
        for i, v in enumerate(value):
            sub = items[i] if isinstance(items, list) and i < len(items) else items
            reason = _type_error(v, sub)
            if reason is not None:
                return f"item {i}: {reason}"
    if isinstance(value, dict):
        props = schema.get("properties")
        if isinstance(props, Mapping):
            for k, v in value.items():
                if k in props:
                    reason = _type_error(v, props[k])
                    if reason is not None:
                        return f"key {k!r}: {reason}"
                elif schema.get("additionalProperties") is False:
                    return f"unexpected key {k!r}"
        missing = [k for k in schema.get("required") or [] if k not in value]
        if missing:
            return f"missing keys {missing}"
    return None


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(v), type(v).__name__)


def _same(a: Any, b: Any) -> bool:
    """Exact JSON equality, except that numbers compare numerically (booleans are not numbers)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


# -------------------------------------------------------------------------------------------- values


def _value_equal(pred: Any, gold: Any) -> bool:
    """BFCL's value comparison: standardised strings, numeric numbers, lists in order, dicts key-wise."""
    if isinstance(pred, bool) or isinstance(gold, bool):
        return isinstance(pred, bool) and isinstance(gold, bool) and pred == gold
    if _is_number(pred) and _is_number(gold):
        return pred == gold
    if isinstance(pred, str) and isinstance(gold, str):
        return standardize_string(pred) == standardize_string(gold)
    if isinstance(pred, list) and isinstance(gold, list):
        return len(pred) == len(gold) and all(_value_equal(p, g) for p, g in zip(pred, gold, strict=True))
    if isinstance(pred, dict) and isinstance(gold, dict):
        return pred.keys() == gold.keys() and all(_value_equal(pred[k], gold[k]) for k in pred)
    return pred is None and gold is None


def _parse_arguments(arguments: dict[str, Any] | str | None) -> tuple[dict[str, Any] | None, str]:
    if isinstance(arguments, dict):
        return arguments, ""
    if isinstance(arguments, str):
        try:
            parsed = strict_call_json(arguments)
        except ValueError as e:  # JSONDecodeError is a ValueError
            return None, f"arguments are not valid JSON: {e}"
        if not isinstance(parsed, dict):
            return None, f"arguments must be a JSON object, got {_json_type(parsed)}"
        return parsed, ""
    return None, "arguments are missing" if arguments is None else f"arguments of type {type(arguments).__name__}"


def _short(v: Any) -> str:
    text = json.dumps(v, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


# ------------------------------------------------------------------------------------------- checks


def check_call(
    pred: PredictedCall,
    gold: dict[str, dict[str, list[Any]]],
    function: dict[str, Any],
    free_text: Sequence[str] = (),
) -> ASTResult:
    """Check one predicted call against one ground-truth call ``{name: {param: [allowed...]}}``."""
    if len(gold) != 1:
        raise ValueError(f"a ground-truth call maps exactly one function name to its parameters, got {list(gold)}")
    ((gold_name, gold_params),) = gold.items()
    if pred.name != gold_name:
        return _fail("wrong_name", f"called {pred.name!r}, expected {gold_name!r}")
    args, why = _parse_arguments(pred.arguments)
    if args is None:
        return _fail("unparsable_arguments", f"{gold_name}: {why}")
    schema = function.get("parameters") or {}
    props: Mapping[str, Any] = schema.get("properties") or {}
    unknown = [k for k in args if k not in props]
    if unknown:
        return _fail("unknown_parameter", f"{gold_name}: unknown parameter(s) {unknown}; schema has {list(props)}")
    needed = list(schema.get("required") or [])
    needed += [p for p, allowed in gold_params.items() if "" not in _as_list(allowed) and p not in needed]
    missing = [p for p in needed if p not in args]
    if missing:
        return _fail("missing_required", f"{gold_name}: missing parameter(s) {missing}")
    for param, value in args.items():
        reason = _type_error(value, props[param])
        if reason is not None:
            return _fail("wrong_type", f"{gold_name}.{param}: {reason}")
    free = set(free_text)
    for param, value in args.items():
        if param in free or param not in gold_params:
            continue
        allowed = _as_list(gold_params[param])
        if any(_value_equal(value, a) for a in allowed):
            continue
        prop = props[param]
        if "" in allowed and isinstance(prop, Mapping) and "default" in prop and _value_equal(value, prop["default"]):
            continue
        return _fail("value_not_allowed", f"{gold_name}.{param}: {_short(value)} is not one of {_short(allowed)}")
    return _OK


def _as_list(allowed: Any) -> list[Any]:
    return allowed if isinstance(allowed, list) else [allowed]


def _functions_by_name(entry: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for f in entry.get("function") or []:
        if isinstance(f.get("function"), Mapping):  # also the OpenAI tool wrapper {"type", "function"}
            f = f["function"]
        out[f["name"]] = f
    return out


def check_turn(preds: Sequence[PredictedCall], entry: Mapping[str, Any]) -> ASTResult:
    """Check one turn's predicted calls against a BFCL entry's ground truth (order-free for several calls)."""
    gold_calls: list[dict[str, dict[str, list[Any]]]] = list(entry.get("ground_truth") or [])
    if len(preds) != len(gold_calls):
        return _fail("wrong_count", f"{len(preds)} call(s) predicted, {len(gold_calls)} expected")
    if not gold_calls:
        return _OK
    functions = _functions_by_name(entry)
    free_text: Mapping[str, Sequence[str]] = entry.get("free_text") or {}

    def check(pred: PredictedCall, gold: dict[str, dict[str, list[Any]]]) -> ASTResult:
        name = next(iter(gold))
        if name not in functions:
            raise ValueError(f"entry {entry.get('id')!r}: ground truth calls {name!r}, which is not offered")
        return check_call(pred, gold, functions[name], free_text.get(name, ()))

    if len(gold_calls) == 1:
        return check(preds[0], gold_calls[0])
    n = len(gold_calls)
    results = [[check(p, g) for g in gold_calls] for p in preds]
    # Cost 0 for a pass, 1 for a failure, plus a tie-break below 1 in total that prefers deeper
    # failures: a perfect matching costs 0 exactly, and otherwise the assignment with the fewest
    # failures pairs calls of the same name (the informative pairing) where it can.
    top = max(_DEPTH.values()) + 1
    cost = np.array(
        [
            [0.0 if r.valid else 1.0 + (top - _DEPTH.get(r.error or "", 0)) / (top * (n + 1)) for r in row]
            for row in results
        ]
    )
    rows, cols = linear_sum_assignment(cost)
    failed = [(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if not results[i][j].valid]
    if not failed:
        return _OK
    i, j = max(failed, key=lambda ij: _DEPTH.get(results[ij[0]][ij[1]].error or "", 0))
    worst = results[i][j]
    return _fail(
        "no_match",
        f"no assignment of the {n} predicted calls to the gold calls passes; "
        f"best pairing fails on prediction {i} vs gold {j}: {worst.error}: {worst.message}",
    )


def calls_from_message(message: Mapping[str, Any]) -> list[PredictedCall]:
    """The calls of an OpenAI assistant message (``tool_calls[].function``); a malformed call keeps what it can."""
    out = []
    for tc in message.get("tool_calls") or []:
        fn = tc.get("function") if isinstance(tc, Mapping) else None
        if not isinstance(fn, Mapping):
            out.append(PredictedCall(None, None))
            continue
        name = fn.get("name") if isinstance(fn.get("name"), str) and fn.get("name") else None
        args = fn.get("arguments")
        out.append(PredictedCall(name, args if isinstance(args, dict | str) else None))
    return out
