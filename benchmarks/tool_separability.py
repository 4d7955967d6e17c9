"""Can the words tell which tool a synthesized call turn wants? A bag-of-words classifier's cross-validated accuracy.

The trained policy names the wrong tool in most of its failed call turns. Either the labels are ambiguous (one
request text, two gold tools: no model can learn them) or the model underfits. This tells them apart: for every
call turn of a synthesis run's ``train.jsonl``, a TF-IDF (words and word pairs) + logistic regression classifier
reads the user turns so far and the previous call's tool, and predicts the gold tools (variants mapped to their
core tool, a parallel turn's tools joined); its 5-fold cross-validated accuracy bounds how much of the tool choice
is in the words (scikit-learn: a linear classifier is the point, not a better model). It also counts the gold
calls that repeat a tool of the call right before them (the local policy's ``no_repeat_calls`` rests on it).

    python benchmarks/tool_separability.py --data ~/.cache/recagent/runs/policy/synth4
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def call_turns(rows: list[dict]) -> tuple[list[str], list[str], list[str], Counter]:
    """(texts, gold labels, plans) of every call turn, and how many calls after a tool result repeat its tool."""
    from synth_first_calls import _json_field  # this folder: one reader of a row's meta fields

    # the router's features and readers: one rule for the router and this bound on it
    from recagent.agents.tool_router import router_text, turns_of
    from recagent.rl.train_router import core_tool_names

    texts, labels, plans, repeats = [], [], [], Counter()
    for row in rows:
        core = core_tool_names(row)
        plan = _json_field(row["meta"].get("extra")).get("plan") or row["meta"].get("kind")
        turns = turns_of(row["messages"])
        for j, turn in enumerate(turns):
            if turn.role != "assistant" or not turn.calls:
                continue
            texts.append(router_text(turns[:j], core))
            labels.append("+".join(sorted(core.get(n, n) for n in turn.calls)))
            plans.append(plan)
            if turns[j - 1].role == "tool":  # a call right after a result: does it call that tool again?
                before = next(turns[k] for k in range(j - 1, -1, -1) if turns[k].calls)
                repeats["calls after a tool result"] += 1
                repeats["of them calling a tool of the call before"] += bool(set(turn.calls) & set(before.calls))
    return texts, labels, plans, repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a synthesis run's folder (train.jsonl inside)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS / "tool_separability.json")
    args = ap.parse_args()
    path = args.data / "train.jsonl"
    if not path.is_file():
        raise SystemExit(f"{args.data} has no train.jsonl: is it a synthesis run's folder?")

    import numpy as np
    from machine import machine_info  # benchmarks/machine.py (this script's folder is on sys.path)
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    rows = [json.loads(line) for line in path.read_text().splitlines()]
    texts, labels, plans, repeats = call_turns(rows)
    features = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit_transform(texts)
    predicted = cross_val_predict(LogisticRegression(max_iter=2000, C=10.0), features, labels, cv=args.folds)
    right = np.asarray(predicted) == np.asarray(labels)
    by_plan: dict[str, list[bool]] = defaultdict(list)
    for plan, ok in zip(plans, right):
        by_plan[plan].append(bool(ok))
    confusions = Counter(f"{g} -> {p}" for g, p, ok in zip(labels, predicted, right) if not ok)
    result = {
        "what": __doc__.splitlines()[0],
        "machine": machine_info(),
        "data": str(args.data),
        "call_turns": len(labels),
        "folds": args.folds,
        "accuracy": round(float(right.mean()), 3),
        "accuracy_by_plan": {
            p: {"n": len(v), "accuracy": round(sum(v) / len(v), 3)}
            for p, v in sorted(by_plan.items(), key=lambda kv: sum(kv[1]) / len(kv[1]))
        },
        "confusions": dict(confusions.most_common(15)),
        "repeats": dict(repeats),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("call_turns", "accuracy", "repeats")}))


if __name__ == "__main__":
    main()
