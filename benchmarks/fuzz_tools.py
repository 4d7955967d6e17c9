"""Fuzz the tool layer: tens of thousands of hostile ToolRegistry.call()s, none of which may raise.

Each call picks a tool name (mostly real ones, else a misspelt, random, huge, surrogate or
non-string name) and arguments from one of several families: valid argument objects built from
the real catalog, those objects mutated (dropped, unknown, retyped or hostile values), deep
nesting, huge integers, non-strict numbers (NaN, Infinity, 1e999), lone surrogates, truncated
JSON text, random text and argument containers of the wrong type. Arguments go in as a dict or
as JSON text (what a model emits). The counts (calls, exceptions, ok outcomes, error outcomes
by kind, per family) and the machine go to ``results/fuzz_tools.json``; exceptions, internal
errors, multi-line messages and non-strict JSON results must all be 0.

Needs the trained ML-100K models (``recagent quickstart``).

    python benchmarks/fuzz_tools.py --calls 22000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402  benchmarks/machine.py: the same machine block in every results file

RESULTS = Path(__file__).resolve().parent / "results"
QUERIES = ["funny animated film for kids", "dark crime thriller", "space adventure", "classic western", "war drama"]
SETS = ["c1", "c2", "empty", "nope"]  # "empty" is saved with no items on purpose: the filter_items bug of issue 18


class Fuzzer:
    """Draws hostile (name, arguments) pairs from a seeded RNG over one environment's real ids."""

    def __init__(self, env: Any, tool_names: list[str], seed: int):
        self.rng = random.Random(seed)
        self.users = list(env.dataset.users.ids)
        self.items = list(env.catalog.ids)
        self.genres = list(env.catalog.all_genres)
        self.titles = list(env.catalog.titles)
        self.names = tool_names

    # -- valid arguments ---------------------------------------------------------------------------------------

    def valid(self, name: str) -> dict[str, Any]:
        """A valid argument object for tool ``name`` (ids, genres and titles from the catalog)."""
        r = self.rng
        user = lambda: r.choice([r.choice(self.users), int(r.choice(self.users))])  # noqa: E731  ids as text or number
        items = lambda n: r.sample(self.items, n)  # noqa: E731
        k = r.choice([1, 5, 10, 100])
        save = {"save_as": r.choice(SETS[:2])} if r.random() < 0.3 else {}
        sets = {"candidates": r.choice(SETS)} if r.random() < 0.3 else {}
        who = {"user_id": user()} if r.random() < 0.7 else {"history": items(r.randint(1, 20))}
        what = sets or {"item_ids": items(r.randint(1, 50))}
        make: dict[str, Callable[[], dict[str, Any]]] = {
            "search_items": lambda: {"query": r.choice(QUERIES), "k": k, **save},
            "filter_items": lambda: {
                "genres": r.sample(self.genres, r.randint(0, 3)),
                "match": r.choice(["any", "all"]),
                "year_min": r.choice([None, 1950, 1990]),
                "exclude_seen_by": r.choice([None, user()]),
                "sort_by": r.choice(["popularity", "year", "input"]),
                "k": k,
                **sets,
                **save,
            },
            "retrieve_for_user": lambda: {
                "user_id": user(),
                "model": r.choice([None, "pop", "itemknn", "bpr", "sasrec"]),
                "k": k,
                **save,
            },
            "similar_items": lambda: {
                "item_ids": items(r.randint(1, 3)),
                "k": k,
                "model": r.choice([None, "itemknn", "bpr", "sasrec", "text"]),
                **save,
            },
            "popular_items": lambda: {"genre": r.choice([None, *self.genres]), "k": k, **save},
            "rank_items": lambda: {**who, **what, "k": k, **save},
            "rank_by_preference": lambda: {
                **who,
                **what,
                "prefer_genres": r.sample(self.genres, 1),
                "year_max": r.choice([None, 1980]),
                "weight": r.random(),
                "k": k,
            },
            "get_item": lambda: r.choice([{"item_id": r.choice(self.items)}, {"title": r.choice(self.titles).lower()}]),
            "get_user_history": lambda: {"user_id": user(), "last_n": k},
            "get_candidates": lambda: {"name": r.choice(SETS), "k": k},
        }
        return make[name]() if name in make else {"query": "x"}

    # -- hostile pieces ----------------------------------------------------------------------------------------------

    def hostile_value(self) -> Any:
        """One value a model (or an attacker) might put where an argument belongs."""
        r = self.rng
        return r.choice(
            [
                lambda: None,
                lambda: True,
                lambda: -1,
                lambda: 0,
                lambda: 10 ** r.randint(3, 80),
                lambda: -(10**5000),
                lambda: 3.5,
                lambda: float("nan"),
                lambda: float("inf"),
                lambda: -float("inf"),
                lambda: "",
                lambda: "x" * r.randint(1, 5000),
                lambda: "\ud800",
                lambda: "ok\udfffok",
                lambda: "\x00\n\t",
                lambda: [],
                lambda: [None],
                lambda: [[[]]],
                lambda: {},
                lambda: {"a": 1},
                lambda: self.deep(r.randint(5, 3000)),
                lambda: r.choice(self.genres),
                lambda: r.choice(self.items),
                lambda: [r.choice(self.items)] * 600,
                lambda: b"bytes",
                lambda: {1, 2},
                lambda: (1, 2),
                lambda: object(),
                lambda: complex(1, 2),
            ]
        )()

    def deep(self, depth: int) -> Any:
        """A list nested ``depth`` levels."""
        v: Any = []
        for _ in range(depth):
            v = [v]
        return v

    def name(self) -> Any:
        """Mostly a real tool name, else a misspelt, random, huge, surrogate or non-string one."""
        r = self.rng
        if r.random() < 0.8:
            return r.choice(self.names)
        real = r.choice(self.names)
        return r.choice(
            [
                real.upper(),
                real + "_v2",
                real[:-1],
                " " + real,
                "",
                "x" * 100_000,
                "\ud800",
                real + "\n",
                None,
                42,
                ["search_items"],
                {"name": real},
                f"{real} (not offered)",
            ]
        )

    # -- argument families ---------------------------------------------------------------------------------------------

    def mutate(self, args: dict[str, Any]) -> dict[str, Any]:
        """``args`` with one to three keys dropped, added or given hostile values."""
        r = self.rng
        out = dict(args)
        for _ in range(r.randint(1, 3)):
            op = r.random()
            if op < 0.2 and out:
                out.pop(r.choice(list(out)))
            elif op < 0.35:
                out[r.choice(["surprise", "K", "userId", "query", "items", "genre", "\ud800", "a\nb", "x" * 300])] = 1
            else:
                key = r.choice(list(out) or ["k"])
                out[key] = self.hostile_value()
        return out

    def to_text(self, args: Any) -> str | None:
        """``args`` as JSON text the way a model would write it (None where JSON cannot hold it)."""
        try:
            return json.dumps(args, ensure_ascii=self.rng.random() < 0.5)
        except (TypeError, ValueError, RecursionError):  # sets, objects, huge ints, deep nesting: pass the dict
            return None

    def arguments(self, name: Any) -> tuple[str, Any]:
        """(family, arguments) for one call."""
        r = self.rng
        base = self.valid(name) if isinstance(name, str) else {"k": 5}
        family = r.choice(
            [
                "valid",
                "valid",
                "mutated",
                "mutated",
                "mutated",
                "deep",
                "huge_int",
                "non_strict",
                "surrogate",
                "truncated",
                "random_text",
                "wrong_container",
            ]
        )
        if family == "valid":
            args: Any = base
        elif family == "mutated":
            args = self.mutate(base)
        elif family == "deep":
            n = r.choice([33, 100, 1000, 10_000, 100_000])
            args = r.choice(
                [
                    "[" * n,
                    '{"a":' * n,
                    "[" * n + "]" * n,
                    json.dumps({**base, "k": self.deep(min(n, 500))}),
                    {**base, "k": self.deep(min(n, 5000))},
                ]
            )
        elif family == "huge_int":
            digits = r.choice([65, 4300, 4301, 10_000, 90_000])
            args = r.choice([f'{{"k": {"9" * digits}}}', f'{{"user_id": -{"1" * digits}}}', {**base, "k": 10**digits}])
        elif family == "non_strict":
            bad = r.choice(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E400"])
            key = r.choice(list(base) or ["k"])
            text = json.dumps({**base, key: "@@"}).replace('"@@"', bad)
            args = r.choice([text, {**base, key: float(bad.replace("NaN", "nan"))}])
        elif family == "surrogate":
            key = r.choice(list(base) or ["query"])
            args = r.choice(
                [
                    json.dumps({**base, key: "\ud83d"}),
                    json.dumps({**base, key: "\ud83d"}, ensure_ascii=False),
                    {**base, key: "\udcff"},
                    {"\ud800": 1, **base},
                ]
            )
        elif family == "truncated":
            text = json.dumps(base)
            args = text[: r.randint(0, max(len(text) - 1, 0))]
        elif family == "random_text":
            args = "".join(
                chr(r.choice([r.randint(0, 127), r.randint(0x80, 0x10FFFF)])) for _ in range(r.randint(0, 200))
            )
        else:
            args = r.choice(
                [
                    None,
                    5,
                    2.5,
                    True,
                    [base],
                    (1,),
                    b"{}",
                    bytearray(b"[]"),
                    {1, 2},
                    object(),
                    "null",
                    "[]",
                    '"text"',
                    "   ",
                ]
            )
        if family in ("valid", "mutated") and r.random() < 0.5:
            text = self.to_text(args)
            args = text if text is not None else args
        return family, args


def strict_json(payload: Any) -> bool:
    """Whether a payload serialises as strict JSON (no NaN/inf, no lone surrogate)."""
    try:
        json.dumps(payload, allow_nan=False).encode("utf-8")
        return True
    except (TypeError, ValueError):
        return False


def run(registry: Any, env: Any, calls: int, seed: int) -> dict[str, Any]:
    """Make ``calls`` fuzzed calls and count what came back."""
    from recagent.tools.recommender_tools import build_registry

    fuzz = Fuzzer(env, registry.names(), seed)
    counts: Counter = Counter()
    kinds: Counter = Counter()
    families: dict[str, Counter] = {}
    examples: dict[str, list[str]] = {}
    session = registry
    t0 = time.perf_counter()
    for n in range(calls):
        if n % 500 == 0:  # a fresh conversation now and then, each with an empty saved set to trip over
            session = build_registry(env.session())
            session.call(
                "filter_items", {"genres": ["Action", "Children's", "Film-Noir"], "match": "all", "save_as": "empty"}
            )
            session.call("popular_items", {"k": 5, "save_as": "c1"})
        name = fuzz.name()
        family, args = fuzz.arguments(name)
        fam = families.setdefault(family, Counter())
        counts["calls"] += 1
        fam["calls"] += 1
        try:
            out = session.call(name, args)
        except Exception as e:  # the property under test: this must never happen
            counts["exceptions"] += 1
            fam["exceptions"] += 1
            examples.setdefault("exceptions", []).append(f"{type(e).__name__} for {family}")
            continue
        if out.ok:
            counts["ok"] += 1
            fam["ok"] += 1
            if not strict_json(out.payload()):
                counts["ok_results_not_strict_json"] += 1
            continue
        kind = out.error.error
        kinds[kind] += 1
        fam[kind] += 1
        msg = out.error.message
        if "\n" in msg or "Traceback" in msg or not strict_json(out.payload()):
            counts["error_messages_not_one_line"] += 1
        if kind == "internal_error" and len(examples.setdefault("internal_error", [])) < 10:
            examples["internal_error"].append(f"{name}/{family}: {msg[:200]}")
    seconds = time.perf_counter() - t0
    return {
        "calls": counts["calls"],
        "exceptions": counts["exceptions"],
        "ok": counts["ok"],
        "errors": sum(kinds.values()),
        "errors_by_kind": dict(kinds.most_common()),
        "internal_errors": kinds.get("internal_error", 0),
        "error_messages_not_one_line": counts["error_messages_not_one_line"],
        "ok_results_not_strict_json": counts["ok_results_not_strict_json"],
        "by_family": {f: dict(c) for f, c in sorted(families.items())},
        "examples": examples,
        "seconds": round(seconds, 1),
        "calls_per_second": round(calls / seconds, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=22_000, help="fuzzed calls (at least 20,000 for the results file)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--out", type=Path, default=RESULTS / "fuzz_tools.json")
    args = p.parse_args()
    from recagent.tools.env import ToolEnv, ToolEnvConfig
    from recagent.tools.recommender_tools import build_registry

    env = ToolEnv.load(ToolEnvConfig(dataset=args.dataset))
    registry = build_registry(env.session())
    counts = run(registry, env, args.calls, args.seed)
    report = {
        "what": __doc__.splitlines()[0],
        "dataset": args.dataset,
        "seed": args.seed,
        **counts,
        "machine": machine_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=True) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k not in ("by_family", "machine", "examples")}, indent=2))
    if report["examples"]:
        print(json.dumps(report["examples"], indent=2, ensure_ascii=True))
    bad = counts["exceptions"] + counts["internal_errors"] + counts["error_messages_not_one_line"]
    sys.exit(1 if bad + counts["ok_results_not_strict_json"] else 0)


if __name__ == "__main__":
    main()
