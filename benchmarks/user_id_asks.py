"""Where the router's tool needs a user id nobody gave, what do the synthesized replies do: ask, or call?

The local policy leaves a tool that requires a dataset user id out of the call grammar while the conversation names
no known user (``policy.ask_for_user``); where the router's tool was one of them the reply is an answer. This
counts, over a synthesis run's dialogs, the assistant replies where that rule makes the reply an answer as served
(``narrow_for_missing_user`` on the router's tools, where the router did not already decide an answer) and what the gold
reply is: an answer (the synthesized assistant asks for the id) or a call, by tool; and which tool the router would
name next. No policy runs here, so it takes a minute.

    python benchmarks/user_id_asks.py --data ~/.cache/recagent/runs/policy/synth --files train validation
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def count_file(path: Path, router, served, users: dict, items: dict, genres: list[str]) -> dict:
    """The replies of one dialog file where the rule fires: gold answers, gold calls by tool, the router's next tool."""
    from langchain_core.messages import convert_to_messages

    from recagent.agents.call_ids import conversation_call_ids
    from recagent.agents.policies.grammar import left_out_for_user
    from recagent.agents.policies.local import narrow_for_missing_user
    from recagent.agents.tool_router import turns_of_messages

    gold, following, examples = Counter(), Counter(), []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        offered = {s["function"]["name"] for s in row["tools"]}
        reading = router.reading(row["tools"])
        messages = row["messages"]
        for t, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before = convert_to_messages([{k: v for k, v in x.items() if k != "artifact"} for x in messages[:t]])
            need = left_out_for_user(row["tools"], conversation_call_ids(before, users, items, catalog_genres=genres))
            if not need:
                continue
            turns = turns_of_messages(before)
            if reading.reply(turns, served.router_answer_p, served.router_call_p) == "answer":
                continue  # answered already, without this rule
            routed = reading.allowed(turns, offered, served.router_top_k) if served.router_top_k else offered
            if not narrow_for_missing_user(routed, routed & need, reading if served.router_top_k else None)[1]:
                continue  # a tool is left to call
            calls = m.get("tool_calls") or []
            gold["answer" if not calls else "+".join(c["function"]["name"] for c in calls)] += 1
            following["+".join(sorted(reading.allowed(turns, offered - need, served.router_top_k)))] += 1
            if calls and len(examples) < 5:
                examples.append({"dialog": row["id"], "before": messages[t - 1].get("content", "")[:200]})
    return {
        "replies": sum(gold.values()),
        "gold": dict(gold.most_common()),
        "router_next_tool": dict(following.most_common()),
        "gold_calls": examples,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="synthesis run folder (train.jsonl, validation.jsonl)")
    ap.add_argument("--files", nargs="+", default=["train", "validation"], help="dialog files of the run, no .jsonl")
    ap.add_argument("--router", type=Path, default=None, help="tool_router.npz (default: the shipped one)")
    ap.add_argument("--out", type=Path, default=RESULTS / "user_id_asks.json")
    args = ap.parse_args()

    from machine import machine_info  # benchmarks/machine.py (this script's folder is on sys.path)
    from policy_checkpoints import synthesis_dataset

    from recagent.agents.config import PolicyConfig
    from recagent.agents.tool_router import ToolRouter, router_file

    served = PolicyConfig()
    router_path = args.router or router_file(served.adapter_folder())
    if router_path is None or not Path(router_path).is_file():
        raise SystemExit(f"no tool router at {router_path}: pass --router PATH/tool_router.npz")
    router = ToolRouter.load(router_path)
    dataset = synthesis_dataset(args.data)
    out = {
        "what": __doc__.splitlines()[0],
        "machine": machine_info(),
        "data": str(args.data),
        "router": str(router_path),
        "router_top_k": served.router_top_k,
        "files": {},
    }
    for f in args.files:
        path = args.data / f"{f}.jsonl"
        if not path.is_file():
            raise SystemExit(f"{path} does not exist (files are named without .jsonl: train, validation, test)")
        genres = list(dataset.items.all_genres)
        out["files"][f] = count_file(path, router, served, dataset.users.index_of, dataset.items.index_of, genres)
        print(f, json.dumps(out["files"][f])[:300], flush=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
