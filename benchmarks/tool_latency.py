"""Per-tool latency (p50/p95, milliseconds) on ML-100K with every model loaded, through ToolRegistry.call.

Measures what an agent pays per call: argument validation, the tool, result building and
JSON-ready serialisation. Needs the trained models (``recagent quickstart`` or ``recagent
recs train --model all``). Writes ``results/tool_latency.json``.

    python benchmarks/tool_latency.py --calls 300
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
QUERIES = [
    "funny animated film for kids",
    "dark crime thriller",
    "space adventure",
    "romantic comedy from the nineties",
    "classic western",
    "war drama",
    "scary horror movie",
    "musical",
    "documentary",
    "film noir mystery",
]


def argument_sets(env, rng: np.random.Generator) -> dict[str, callable]:
    """For each tool, a function giving varied, valid arguments."""
    users = env.dataset.users.ids
    items = env.catalog.ids
    genres = list(env.catalog.all_genres)
    titles = env.catalog.titles

    def user():
        return users[int(rng.integers(len(users)))]

    def some_items(n):
        return [items[int(i)] for i in rng.choice(len(items), n, replace=False)]

    return {
        "search_items": lambda: {"query": QUERIES[int(rng.integers(len(QUERIES)))], "k": 10},
        "filter_items": lambda: {
            "genres": [genres[int(rng.integers(len(genres)))]],
            "year_min": 1980,
            "exclude_seen_by": user(),
            "k": 10,
        },
        "retrieve_for_user": lambda: {"user_id": user(), "k": 10, "save_as": "c"},
        "similar_items": lambda: {"item_ids": some_items(2), "k": 10},
        "popular_items": lambda: {"genre": genres[int(rng.integers(len(genres)))], "k": 10},
        "rank_items": lambda: {"user_id": user(), "item_ids": some_items(50), "k": 10},
        "rank_by_preference": lambda: {
            "user_id": user(),
            "item_ids": some_items(50),
            "prefer_genres": [genres[int(rng.integers(len(genres)))]],
            "k": 10,
        },
        "get_item": lambda: {"title": titles[int(rng.integers(len(titles)))].lower()},
        "get_user_history": lambda: {"user_id": user(), "last_n": 10},
        "get_candidates": lambda: {"name": "c", "k": 10},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=300, help="timed calls per tool")
    p.add_argument("--dataset", default="ml-100k")
    args = p.parse_args()
    import torch
    from machine import machine_info  # benchmarks/machine.py (this script's folder is on sys.path)

    from recagent.tools.env import ToolEnv, ToolEnvConfig
    from recagent.tools.recommender_tools import build_registry

    env = ToolEnv.load(ToolEnvConfig(dataset=args.dataset))
    registry = build_registry(env)
    rng = np.random.default_rng(0)
    makers = argument_sets(env, rng)
    registry.call("retrieve_for_user", {"user_id": env.dataset.users.ids[0], "save_as": "c"})
    for name, make in makers.items():  # warm-up: lazy indexes, encoder, caches
        for _ in range(5):
            out = registry.call(name, make())
            assert out.ok, (name, out.error)
    rows = {}
    for name, make in makers.items():
        lat = []
        for _ in range(args.calls):
            a = make()
            t0 = time.perf_counter()
            out = registry.call(name, a)
            out.content()  # include serialisation to the JSON an LLM reads
            lat.append((time.perf_counter() - t0) * 1000)
            assert out.ok, (name, out.error)
        lat = np.asarray(lat)
        rows[name] = {
            "p50_ms": float(np.percentile(lat, 50)),
            "p95_ms": float(np.percentile(lat, 95)),
            "mean_ms": float(lat.mean()),
            "calls": len(lat),
        }
        print(f"{name:20s} p50 {rows[name]['p50_ms']:7.2f} ms   p95 {rows[name]['p95_ms']:7.2f} ms")
    report = {
        "dataset": args.dataset,
        "note": "search_items queries repeat (10 phrasings), so most hit the query-embedding cache; the first call "
        "of a new phrasing also runs the MiniLM encoder (see uncached_search_ms)",
        "machine": machine_info(torch_threads=torch.get_num_threads()),
        "tools": rows,
    }
    fresh = []
    for i in range(50):
        t0 = time.perf_counter()
        registry.call("search_items", {"query": f"{QUERIES[i % len(QUERIES)]} number {i}", "k": 10}).content()
        fresh.append((time.perf_counter() - t0) * 1000)
    report["uncached_search_ms"] = {"p50": float(np.percentile(fresh, 50)), "p95": float(np.percentile(fresh, 95))}
    print(
        f"{'search (uncached)':20s} p50 {report['uncached_search_ms']['p50']:7.2f} ms   p95 {report['uncached_search_ms']['p95']:7.2f} ms"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tool_latency.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
