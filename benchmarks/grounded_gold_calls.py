"""Do the synthesized gold calls fit the call grammar's grounded arguments? A rule that refuses a gold call caps AST.

The local policy's grammar narrows a call's user and item ids, the candidate sets it reads, its counts, its
years (on the side the words give) and, right after a request, its genres to what the conversation holds
(``recagent.agents.call_ids``,
``recagent.agents.policies.grammar.ground_call_arguments``).
For every gold call of a synthesis run's dialogs, this grounds the offered tools in the conversation before the
call (as the agent does) and validates the gold arguments against the grounded schemas (jsonschema); it reports
the calls refused, by tool and argument, with the first few in full. A call to a tool that requires a user id
where the conversation names no known user is refused too (the policy's ``ask_for_user``), and the replies made
where that rule can fire (no user known, such a tool offered) are counted: answers, calls; so is a look-up where
the user's words name no catalog title and no item id can be written (``left_out_for_lookup``). Each call is checked
twice: as grounded where the router's save head is unsure (``saves`` None), and where it is sure and right (``saves``
as the gold call: does it write a save-the-result argument?), which the save rules narrow further.

    python benchmarks/grounded_gold_calls.py --data ~/.cache/recagent/runs/policy/synth4 --files train validation
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def check_file(path: Path, users: dict, items: dict, genres: list[str], catalog=None) -> dict:
    """Gold calls of one dialog file: how many, how many the grounded schemas refuse (by tool and argument)."""
    from dataclasses import replace

    import jsonschema
    from langchain_core.messages import convert_to_messages

    from recagent.agents.call_ids import conversation_call_ids
    from recagent.agents.policies.grammar import (
        ground_call_arguments,
        left_out_for_lookup,
        left_out_for_user,
        saves_result,
    )

    calls, refused, examples = 0, Counter(), []
    refused_sure, examples_sure = Counter(), []  # as grounded where the save head is sure and right
    nameless = Counter()  # replies where no user is known and a tool that needs one is offered

    def check(args: dict, schema: dict, name: str, dialog: str, counts: Counter, found: list) -> None:
        try:
            jsonschema.validate(args, schema["function"]["parameters"])
        except jsonschema.ValidationError as e:
            counts[f"{name}.{'.'.join(map(str, list(e.path)[:1]))}"] += 1
            if len(found) < 10:
                found.append({"dialog": dialog, "call": {name: args}, "error": e.message[:200]})

    for line in path.read_text().splitlines():
        row = json.loads(line)
        messages = row["messages"]
        for t, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before = [{k: v for k, v in x.items() if k != "artifact"} for x in messages[:t]]
            ids = conversation_call_ids(
                convert_to_messages(before), users, items, catalog_genres=genres, catalog=catalog
            )
            nameless_tools = left_out_for_user(row["tools"], ids)
            nothing_to_look_up = left_out_for_lookup(row["tools"], ids)
            if nameless_tools:
                nameless["calls" if m.get("tool_calls") else "answers"] += 1
            if not m.get("tool_calls"):
                continue
            tools = {s["function"]["name"]: s for s in ground_call_arguments(row["tools"], ids)}
            for tc in m["tool_calls"]:
                calls += 1
                name, args = tc["function"]["name"], json.loads(tc["function"]["arguments"])
                left_out = (
                    "no user known"
                    if name in nameless_tools
                    else "no title or item id to look up"
                    if name in nothing_to_look_up
                    else None
                )
                if left_out:  # refused whatever the save head decides
                    for counts, found in ((refused, examples), (refused_sure, examples_sure)):
                        counts[f"{name} ({left_out})"] += 1
                        if len(found) < 10:
                            found.append({"dialog": row["id"], "call": {name: args}, "error": left_out})
                    continue
                check(args, tools[name], name, row["id"], refused, examples)
                offered = next(s for s in row["tools"] if s["function"]["name"] == name)
                props = offered["function"]["parameters"].get("properties") or {}
                saving = [p for p, prop in props.items() if saves_result(prop)]
                sure = replace(ids, saves=any(p in args for p in saving)) if saving else ids
                check(args, ground_call_arguments([offered], sure)[0], name, row["id"], refused_sure, examples_sure)
    return {
        "gold_calls": calls,
        "refused": sum(refused.values()),
        "refused_by_argument": dict(refused),
        "refused_where_the_save_head_is_sure": sum(refused_sure.values()),
        "refused_where_the_save_head_is_sure_by_argument": dict(refused_sure),
        "replies_with_no_user_known": dict(nameless),
        "examples": examples,
        "examples_where_the_save_head_is_sure": examples_sure,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="synthesis run folder (train.jsonl, validation.jsonl)")
    ap.add_argument("--files", nargs="+", default=["train", "validation"], help="dialog files of the run, no .jsonl")
    ap.add_argument("--out", type=Path, default=RESULTS / "grounded_gold_calls.json")
    args = ap.parse_args()

    from machine import machine_info  # benchmarks/machine.py (this script's folder is on sys.path)
    from policy_checkpoints import synthesis_dataset

    dataset = synthesis_dataset(args.data)
    out = {"what": __doc__.splitlines()[0], "machine": machine_info(), "data": str(args.data), "files": {}}
    for f in args.files:
        path = args.data / f"{f}.jsonl"
        if not path.is_file():
            raise SystemExit(f"{path} does not exist (files are named without .jsonl: train, validation, test)")
        genres = list(dataset.items.all_genres)
        out["files"][f] = check_file(path, dataset.users.index_of, dataset.items.index_of, genres, dataset.items)
        print(f, json.dumps(out["files"][f])[:300], flush=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
