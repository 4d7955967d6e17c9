"""Do the synthesized answers pass the answer filter the local policy decodes under, prefix by prefix?

A chat answer is decoded under ``recagent.agents.policies.grammar.answer_filter``: a citation ends its line or goes
on with ``:``, an item is cited once per section, no stretch is written three times running. A rule that rejects a
prefix of a synthesized answer would keep the trained policy from writing what it was trained on. For every answer of
a synthesis run that cites items, this builds the filter with exactly the items it cites (the strictest case: the
agent offers every item of the turn's results) and checks every prefix of its text; it reports the answers checked,
the ones rejected (with the first few, cut where rejected) and the mean time of one check (building the filter
included).

    python benchmarks/answer_filter_fit.py --data ~/.cache/recagent/runs/policy/synth4 --files train validation test
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SHOWN = 5  # rejected answers written out in full


def check_file(path: Path, catalog) -> dict:
    """Answers of one dialog file that cite items: how many, which prefixes the filter rejects, checks and time."""
    from recagent.agents.policies.grammar import cited_items, filter_cut

    answers, rejected, checks, seconds = 0, [], 0, 0.0
    for line in path.open():
        for m in json.loads(line)["messages"]:
            text = m.get("content") or ""
            if m["role"] != "assistant" or m.get("tool_calls"):
                continue
            items = cited_items(text, catalog)
            if not items:
                continue
            answers += 1
            start = time.perf_counter()
            cut = filter_cut(text, items)
            seconds += time.perf_counter() - start
            checks += cut or len(text)
            if cut is not None:
                rejected.append(text[:cut])
    return {
        "answers": answers,
        "rejected": len(rejected),
        "checks": checks,
        "seconds": seconds,
        "shown": rejected[:SHOWN],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a synthesis run's folder (recagent synth --out)")
    ap.add_argument("--files", nargs="+", default=["train", "validation", "test"])
    ap.add_argument("--out", type=Path, default=RESULTS / "answer_filter_fit.json")
    args = ap.parse_args()

    from recagent import paths
    from recagent.tools.data import load_dataset

    missing = [f for f in args.files if not (args.data / f"{f}.jsonl").is_file()]
    if missing:
        raise SystemExit(f"--data {args.data}: no {', '.join(f + '.jsonl' for f in missing)} (run recagent synth)")
    dataset = json.loads((args.data / "dataset.json").read_text())["name"]  # written by every synthesis run
    catalog = load_dataset(paths.dataset_dir(dataset)).items
    files = {f: check_file(args.data / f"{f}.jsonl", catalog) for f in args.files}
    checks = sum(r["checks"] for r in files.values())
    out = {
        "what": __doc__.splitlines()[0],
        "command": f"python benchmarks/answer_filter_fit.py --data {args.data} --files {' '.join(args.files)}",
        "files": {f: {k: v for k, v in r.items() if k != "seconds"} for f, r in files.items()},
        "answers": sum(r["answers"] for r in files.values()),
        "rejected": sum(r["rejected"] for r in files.values()),
        "microseconds_per_check": round(1e6 * sum(r["seconds"] for r in files.values()) / max(checks, 1), 1),
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"{out['rejected']} of {out['answers']} answers rejected; {out['microseconds_per_check']} us per check")


if __name__ == "__main__":
    main()
