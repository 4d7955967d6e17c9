"""Use the recommender tools from Python: retrieve for a user, narrow by a stated preference, explain.

Run after the README's first command (it fetches ML-100K and trains the models):

    python examples/tools_in_python.py --user 42 --genre Comedy
"""

from __future__ import annotations

import argparse
import json

from recagent.tools.env import ToolEnv
from recagent.tools.recommender_tools import build_registry


def show(title: str, outcome) -> None:
    print(f"\n== {title}  ({outcome.latency_ms:.1f} ms)")
    if not outcome.ok:
        print("tool error:", outcome.error.message)
        return
    for it in outcome.result.get("items", []):
        print(f"  {it['item_id']:>5}  {it['title']} ({it['year']})  {', '.join(it['genres'])}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--user", default="42")
    p.add_argument("--genre", default="Comedy")
    args = p.parse_args()

    registry = build_registry(ToolEnv.load())
    history = registry.call("get_user_history", {"user_id": args.user, "last_n": 5})
    print("favourite genres:", history.result["favourite_genres"] if history.ok else history.error.message)
    show("recent history", history)
    show(
        "SASRec picks (saved as 'picks')",
        registry.call("retrieve_for_user", {"user_id": args.user, "k": 5, "save_as": "picks"}),
    )
    show(
        f"picks re-ranked for a {args.genre} mood",
        registry.call(
            "rank_by_preference", {"user_id": args.user, "candidates": "picks", "prefer_genres": [args.genre], "k": 5}
        ),
    )
    show("a bad call comes back as a structured error", registry.call("filter_items", {"genres": ["Cartoon"]}))
    print("\nOpenAI tool schema of rank_items:")
    print(
        json.dumps(next(s for s in registry.openai_schemas() if s["function"]["name"] == "rank_items"), indent=2)[:600],
        "...",
    )


if __name__ == "__main__":
    main()
