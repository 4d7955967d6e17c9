"""Digest of what the local policy's grammar lets it write at every held-out turn, to compare two code versions.

A change to the request rules (``recagent.agents.call_ids``, ``recagent.agents.genre_mentions``) may leave the
validation and test numbers of a shipped policy as they are: decoding is greedy, so a turn whose decoding
constraints are the same under both versions decodes alike. This writes, for every assistant turn of a synthesis
run's dialogs (the gold conversation before it, as ``grounded_gold_calls.py`` reads it) and for every hand-written
test request (its context and text), a digest of the constraints the agent hands the policy there: the
:class:`~recagent.agents.policies.grammar.CallIds` of the conversation and the items its answer may not cite
(``turned_down_items``, where the version has it). Run it under each version, the second with ``--compare`` the
first's file: the turns whose digests differ are those the change reads differently, and only those can score
differently (``--report`` writes the comparison as JSON). Run this script (not each version's copy) under both: a
field at its default is left out of the digest, so a field one version lacks differs only where the other sets it.

    python benchmarks/decoding_constraints.py --data ~/.cache/recagent/runs/policy/synth4 --out /tmp/before.txt
    # (check out the change)
    python benchmarks/decoding_constraints.py --data ~/.cache/recagent/runs/policy/synth4 --out /tmp/after.txt \
        --compare /tmp/before.txt --report benchmarks/results/decoding_constraints.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import fields
from pathlib import Path


def digest(messages, dataset, genres: list[str]) -> str:
    """The digest of the decoding constraints after ``messages``."""
    from recagent.agents import call_ids

    ids = call_ids.conversation_call_ids(
        messages, dataset.users.index_of, dataset.items.index_of, catalog_genres=genres, catalog=dataset.items
    )
    # fields at their defaults are left out: a version without a field reads those turns as a version with it at its
    # default does (run both versions with this script)
    kept = {f.name: getattr(ids, f.name) for f in fields(ids) if getattr(ids, f.name) != f.default}
    # a version without the turn-down rule hides no item from an answer
    hidden = call_ids.turned_down_items(messages) if hasattr(call_ids, "turned_down_items") else ()
    return hashlib.sha1((repr(sorted(kept.items())) + repr(tuple(hidden))).encode()).hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="synthesis run folder (validation.jsonl, test.jsonl)")
    ap.add_argument("--files", nargs="+", default=["validation", "test"], help="dialog files of the run, no .jsonl")
    ap.add_argument("--out", type=Path, required=True, help="where to write one '<where> <digest>' line per turn")
    ap.add_argument("--compare", type=Path, help="another version's --out file: report the turns whose digests differ")
    ap.add_argument("--report", type=Path, help="with --compare: write the comparison here as JSON")
    args = ap.parse_args()
    if args.report and not args.compare:
        raise SystemExit("--report needs --compare (the other version's --out file)")

    from langchain_core.messages import AIMessage, HumanMessage, convert_to_messages
    from policy_checkpoints import synthesis_dataset  # this script's folder is on sys.path

    from recagent.heldout_requests import load_chat_requests, packaged_path

    dataset = synthesis_dataset(args.data)
    genres = list(dataset.items.all_genres)
    lines = []
    for f in args.files:
        path = args.data / f"{f}.jsonl"
        if not path.is_file():
            raise SystemExit(f"{path} does not exist (files are named without .jsonl: train, validation, test)")
        for line in path.read_text().splitlines():
            row = json.loads(line)
            for t, m in enumerate(row["messages"]):
                if m["role"] == "assistant":
                    before = [{k: v for k, v in x.items() if k != "artifact"} for x in row["messages"][:t]]
                    lines.append(f"{f} {row['id']} {t} {digest(convert_to_messages(before), dataset, genres)}")
    for r in load_chat_requests(packaged_path()):
        turns = [HumanMessage(c.text) if c.role == "user" else AIMessage(c.text) for c in r.context]
        lines.append(f"request {r.id} {digest([*turns, HumanMessage(r.text)], dataset, genres)}")
    args.out.write_text("\n".join(lines) + "\n")
    print(f"{len(lines)} turns -> {args.out}")
    if args.compare:
        from machine import machine_info  # benchmarks/machine.py

        ours = dict(line.rsplit(" ", 1) for line in lines)
        theirs = dict(line.rsplit(" ", 1) for line in args.compare.read_text().splitlines() if line)
        report = {
            "what": __doc__.splitlines()[0],
            "machine": machine_info(),
            "data": str(args.data),
            "files": args.files,
            "compared_with": str(args.compare),
            "turns": len(ours),
            "only_here": sorted(set(ours) - set(theirs)),
            "only_there": sorted(set(theirs) - set(ours)),
            "differ": sorted(k for k in ours.keys() & theirs.keys() if ours[k] != theirs[k]),
        }
        print(json.dumps({k: v if not isinstance(v, list) else len(v) for k, v in report.items() if k != "machine"}))
        if args.report:
            args.report.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
