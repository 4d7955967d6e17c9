"""Fuzz the reply parser: exceptions and accepted non-strict JSON, over at least 10^5 inputs (issue 18).

``agents/prompt_format.py: parse_assistant_output`` reads what a model wrote. Before issue 18 it raised
``RecursionError`` on deep nesting and accepted non-strict JSON (``1e999`` as ``inf``, lone surrogates).
This feeds it a seeded mix of inputs, in equal shares:

- ``random``: random text (any code point, lone surrogates included), with and without call tags;
- ``mutated``: a valid call as the model writes it, changed 1-4 times (chars inserted, deleted or
  replaced, cut off, repeated, wrapped in nesting, given a non-strict number or a surrogate);
- ``deep``: arguments nesting 1 to 100,000 levels (arrays, objects, both), closed or not;
- ``non_strict``: ``NaN``, ``Infinity``, ``1e999``, ``-1E400`` at any depth of the arguments;
- ``surrogates``: lone surrogate escapes and raw surrogates in values, keys and names (and valid pairs);
- ``bytes``: random bytes and UTF-8 calls with bytes flipped.

Counted per kind and in total: inputs, exceptions (by type), accepted calls, accepted non-strict calls
(a value that does not dump with ``allow_nan=False`` or encode as UTF-8), accepted calls nesting deeper
than the limit, and seconds. ``--baseline REV`` also runs the parser of git revision ``REV`` (ae3f19e:
before the hardening) on the same inputs. Writes ``results/fuzz_parser.json``::

    python benchmarks/fuzz_parser.py                     # 120,000 inputs (the issue's count)
    python benchmarks/fuzz_parser.py --n 200000 --seed 1 --baseline ae3f19e
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from machine import machine_info  # benchmarks/machine.py: the same machine block in every results file

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
NAMES = {"search_items", "get_item", "retrieve_for_user"}
NON_STRICT = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E400", "1e309", "-2.5e+500"]
SURROGATE_ESCAPES = ["\\ud800", "\\udbff", "\\udc00", "\\udfff", "\\ude00\\ud83d", "\\ud83d"]
KINDS = ("random", "mutated", "deep", "non_strict", "surrogates", "bytes")


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """A random strict JSON value, a few levels deep."""
    pick = rng.random()
    if depth < 3 and pick < 0.2:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 3 and pick < 0.4:
        return {random_text(rng, 6): random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return rng.choice([None, True, False, rng.randint(-(10**12), 10**12), rng.uniform(-1e6, 1e6), random_text(rng, 12)])


def random_text(rng: random.Random, n: int, surrogates: bool = False) -> str:
    """Up to ``n`` characters: mostly ASCII and JSON syntax, some of any plane (lone surrogates when asked)."""
    out = []
    for _ in range(rng.randint(0, n)):
        r = rng.random()
        if r < 0.5:
            out.append(chr(rng.randint(32, 126)))
        elif r < 0.7:
            out.append(rng.choice('{}[]":,\\ \n0123456789.eE-+'))
        elif r < 0.9 or not surrogates:
            c = rng.randint(0x80, 0x10FFFF)
            out.append(chr(c) if not 0xD800 <= c <= 0xDFFF else "?")
        else:
            out.append(chr(rng.randint(0xD800, 0xDFFF)))
    return "".join(out)


def valid_call(rng: random.Random) -> str:
    """A call block exactly as the model writes it."""
    from recagent.agents.prompt_format import render_tool_call

    args = {random_text(rng, 8): random_value(rng) for _ in range(rng.randint(0, 4))}
    return render_tool_call(rng.choice(sorted(NAMES) + ["unknown_tool"]), args)


def with_argument(call: str, value: str) -> str:
    """The call with ``"x": value`` put first into its arguments."""
    return call.replace(
        '"arguments": {', '"arguments": {"x": ' + value + (", " if '"arguments": {}' not in call else ""), 1
    )


def nest(rng: random.Random, depth: int, inner: str) -> str:
    """``inner`` wrapped ``depth`` times in arrays, objects or both, closed or (sometimes) not."""
    opener, closer = rng.choice([("[", "]"), ('{"a": ', "}"), ('[{"k": ', "}]")])
    closed = rng.random() < 0.8
    return opener * depth + inner + (closer * depth if closed else "")


def gen_random(rng: random.Random) -> str:
    text = random_text(rng, 300, surrogates=True)
    r = rng.random()
    if r < 0.3:
        return "<tool_call>" + text + "</tool_call>"
    if r < 0.45:
        return text + "<tool_call>" + random_text(rng, 50, surrogates=True)
    return text


def gen_mutated(rng: random.Random) -> str:
    text = valid_call(rng)
    for _ in range(rng.randint(1, 4)):
        at = rng.randint(0, len(text))
        kind = rng.choice(["insert", "delete", "replace", "cut", "repeat", "nest", "non_strict", "surrogate"])
        if kind == "insert":
            text = text[:at] + random_text(rng, 5, surrogates=True) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + rng.randint(1, 6) :]
        elif kind == "replace":
            text = text[:at] + rng.choice(list('{}[]",:\\ 0eE-+.') + NON_STRICT) + text[at + 1 :]
        elif kind == "cut":
            text = text[:at]
        elif kind == "repeat":
            text = text + rng.choice(["\n", "", " text "]) + text
        elif kind == "nest":
            text = with_argument(text, nest(rng, rng.choice([30, 32, 33, 34, 100, 2000]), "1"))
        elif kind == "non_strict":
            text = with_argument(text, rng.choice(NON_STRICT))
        else:
            text = with_argument(text, '"' + rng.choice(SURROGATE_ESCAPES) + '"')
    return text


def gen_deep(rng: random.Random) -> str:
    depth = int(10 ** rng.uniform(0, 5))  # 1 to 100,000 levels, log-uniform
    return with_argument(valid_call(rng), nest(rng, depth, rng.choice(["1", "{}", "[]", '"s"'])))


def gen_non_strict(rng: random.Random) -> str:
    return with_argument(valid_call(rng), nest(rng, rng.randint(0, 5), rng.choice(NON_STRICT)))


def gen_surrogates(rng: random.Random) -> str:
    escape = rng.choice(SURROGATE_ESCAPES + ["\\ud83d\\ude00"])  # the last one is a valid pair: text, accepted
    raw = chr(rng.randint(0xD800, 0xDFFF))
    where = rng.choice(["value", "key", "name", "raw"])
    call = valid_call(rng)
    if where == "value":
        return with_argument(call, '"a' + escape + 'b"')
    if where == "key":
        return call.replace(
            '"arguments": {', '"arguments": {"' + escape + '": 1' + (", " if '"arguments": {}' not in call else ""), 1
        )
    if where == "name":
        return '<tool_call>{"name": "get' + escape + '", "arguments": {}}</tool_call>'
    return with_argument(call, '"' + raw + '"')


def gen_bytes(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 200)))
    data = bytearray(valid_call(rng).encode("utf-8"))
    for _ in range(rng.randint(1, 4)):
        if data:
            data[rng.randrange(len(data))] = rng.randint(0, 255)
    return bytes(data)


GENERATORS: dict[str, Callable[[random.Random], Any]] = {
    "random": gen_random,
    "mutated": gen_mutated,
    "deep": gen_deep,
    "non_strict": gen_non_strict,
    "surrogates": gen_surrogates,
    "bytes": gen_bytes,
}


def strict(value: Any) -> bool:
    """Whether an accepted value is strict JSON: it dumps without NaN/Infinity and encodes as UTF-8."""
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError, RecursionError):
        return False
    return True


def depth_of(value: Any) -> int:
    """How deep a parsed value nests (objects and arrays), without recursion."""
    best, stack = 0, [(value, 1)]
    while stack:
        item, d = stack.pop()
        if isinstance(item, (dict, list)):
            best = max(best, d)
            stack.extend((v, d + 1) for v in (item.values() if isinstance(item, dict) else item))
    return best


def inputs(n: int, seed: int) -> Iterator[tuple[str, Any]]:
    """The ``n`` seeded inputs, kinds in turn (made one at a time: deep ones are up to ~800 kB each)."""
    rng = random.Random(seed)
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        yield kind, GENERATORS[kind](rng)


def run(parse: Callable[[Any, set[str] | None], Any], n: int, seed: int, max_depth: int) -> dict:
    """Feed every input to ``parse``; count exceptions, accepted calls, non-strict ones and too deep ones."""
    per: dict[str, Counter] = {k: Counter() for k in KINDS}
    examples: dict[str, str] = {}
    parse_seconds = 0.0
    for kind, text in inputs(n, seed):
        c = per[kind]
        c["inputs"] += 1
        t0 = time.perf_counter()
        try:
            out = parse(text, NAMES)
        except Exception as e:  # counting every way the parser can fail is the point (RecursionError included)
            parse_seconds += time.perf_counter() - t0
            c["exceptions"] += 1
            c[f"exception:{type(e).__name__}"] += 1
            examples.setdefault(type(e).__name__, ascii(text)[:160])
            continue
        parse_seconds += time.perf_counter() - t0
        c["accepted_calls"] += len(out.tool_calls)
        c["invalid_calls"] += len(out.invalid_tool_calls)
        for call in out.tool_calls:
            if not strict(call["args"]) or not strict(call["name"]):
                c["accepted_non_strict"] += 1
                examples.setdefault("accepted_non_strict", ascii(text)[:160])
            if depth_of(call["args"]) + 1 > max_depth:
                c["accepted_too_deep"] += 1
        if any("\n" in (bad.get("error") or "") for bad in out.invalid_tool_calls):
            c["multi_line_errors"] += 1
    total: Counter = Counter()
    for c in per.values():
        total.update(c)
    keys = (
        "inputs",
        "exceptions",
        "accepted_non_strict",
        "accepted_too_deep",
        "accepted_calls",
        "invalid_calls",
        "multi_line_errors",
    )
    fill = lambda c: {**{k: c.get(k, 0) for k in keys}, **{k: v for k, v in sorted(c.items()) if k not in keys}}  # noqa: E731
    return {
        "total": fill(total),
        "by_kind": {k: fill(c) for k, c in per.items()},
        "parse_seconds": round(parse_seconds, 2),
        "microseconds_per_input": round(parse_seconds / max(n, 1) * 1e6, 1),
        "examples": examples,
    }


def baseline_parser(rev: str) -> Callable | None:
    """``parse_assistant_output`` of ``agents/prompt_format.py`` at git revision ``rev``, imported from a temporary copy."""
    import importlib.util
    import tempfile

    try:
        source = subprocess.run(
            ["git", "show", f"{rev}:agents/prompt_format.py"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    folder = Path(tempfile.mkdtemp(prefix="fuzz_parser_"))
    (folder / "prompt_format_baseline.py").write_text(source)
    spec = importlib.util.spec_from_file_location("prompt_format_baseline", folder / "prompt_format_baseline.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.parse_assistant_output


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=120_000, help="number of parser inputs (equal shares per kind)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--baseline",
        metavar="REV",
        default=None,
        help="also run the parser of this git revision on the same inputs (e.g. ae3f19e, before the hardening)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "fuzz_parser.json")
    args = ap.parse_args()
    sys.setrecursionlimit(1000)  # Python's default, so the numbers do not depend on the caller's setting

    from recagent.agents.prompt_format import MAX_CALL_DEPTH, parse_assistant_output

    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "fuzz_parser",
        "description": "parse_assistant_output on seeded random, mutated, deep, non-strict, surrogate and byte inputs",
        "n": args.n,
        "seed": args.seed,
        "kinds": list(KINDS),
        "max_call_depth": MAX_CALL_DEPTH,
        "parser": run(parse_assistant_output, args.n, args.seed, MAX_CALL_DEPTH),
    }
    if args.baseline:  # the same inputs again (same seed) through the committed parser
        before = baseline_parser(args.baseline)
        result["baseline_rev"] = args.baseline
        result["baseline"] = (
            run(before, args.n, args.seed, MAX_CALL_DEPTH) if before else f"git {args.baseline} not available"
        )
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    result["machine"] = machine_info()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=True) + "\n")
    total = result["parser"]["total"]
    print(
        f"{total['inputs']:,} inputs: {total['exceptions']} exceptions, {total['accepted_non_strict']} accepted "
        f"non-strict, {total['accepted_too_deep']} accepted too deep ({result['parser']['parse_seconds']} s) -> {args.out}"
    )
    if isinstance(result.get("baseline"), dict):
        b = result["baseline"]["total"]
        print(
            f"git {args.baseline} parser: {b['exceptions']} exceptions, {b['accepted_non_strict']} accepted non-strict, "
            f"{b['accepted_too_deep']} accepted too deep"
        )


if __name__ == "__main__":
    main()
