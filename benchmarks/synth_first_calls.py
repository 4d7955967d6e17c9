"""What a synthesis run teaches as the FIRST decision of a dialog: which tool (or none), with which argument keys.

A policy learns its opening move from the first assistant message after the first user turn.
This script reads a run's ``train.jsonl`` (read-only) and counts that decision per dialog: the
core tool of the first call (offered variant names and parameter names mapped back to the core
registry spelling) or ``no_tool`` when the assistant answers or asks in text, and for calls the
sorted core argument keys (``rank_items(item_ids,user_id)``). Counts are given for every dialog,
for the serving-tool dialogs (exactly the chat agent's tools, originals in registry order: the
prompt a shipped policy sees), and per ``meta.kind`` and ``meta.extra.plan`` within each.

    python benchmarks/synth_first_calls.py RUN_DIR_OR_TRAIN_JSONL [--out result.json]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

NO_TOOL = "no_tool"


def _json_field(value: Any) -> Any:
    """A meta field that a row may store as JSON text or as an object."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return {}
    return value or {}


def serving_tool_names() -> list[str]:
    """The chat agent's tools in registry order (the tool block of a serving-tool dialog)."""
    from recagent.tools.recommender_tools import TOOL_FUNCTIONS

    return [fn.__name__ for fn in TOOL_FUNCTIONS]


def offered_names(row: dict[str, Any]) -> list[str]:
    """Names of the tools a row offers, in order."""
    return [t.get("function", {}).get("name") for t in row.get("tools") or [] if isinstance(t, dict)]


def is_serving(row: dict[str, Any], serving: list[str]) -> bool:
    """True when the row offers exactly the chat agent's tools, all originals, in registry order."""
    variants = _json_field((row.get("meta") or {}).get("tool_variants"))
    return offered_names(row) == serving and all(v.get("origin") == "original" for v in variants.values())


def first_decision(row: dict[str, Any]) -> tuple[str, list[str]]:
    """(label, per-call labels) of the first assistant message after the first user turn.

    The label of one call is ``core(arg,keys)``; a parallel first message joins its calls with
    ``+``; a text reply is ``no_tool``.
    """
    variants = _json_field((row.get("meta") or {}).get("tool_variants"))
    msgs = row.get("messages") or []
    first_user = next((i for i, m in enumerate(msgs) if m.get("role") == "user"), None)
    if first_user is None:
        return "none", []
    for m in msgs[first_user + 1 :]:
        if m.get("role") != "assistant":
            continue
        calls = m.get("tool_calls") or []
        if not calls:
            return NO_TOOL, []
        labels = []
        for tc in calls:
            fn = tc.get("function") or {}
            rec = variants.get(fn.get("name"), {})
            core = rec.get("core") or fn.get("name")
            params = rec.get("params") or {}  # offered parameter name -> core name
            try:
                args = json.loads(fn.get("arguments") or "{}")
            except ValueError:
                args = {}
            keys = sorted(params.get(k, k) for k in (args if isinstance(args, dict) else {}))
            labels.append(f"{core}({','.join(keys)})")
        return "+".join(labels), labels
    return "none", []


def tool_of(label: str) -> str:
    """The core tool of a call label ('rank_items(item_ids,user_id)' -> 'rank_items')."""
    return label.split("(", 1)[0]


class Tally:
    """First-decision counts of one group of dialogs."""

    def __init__(self) -> None:
        self.n = 0
        self.tools: Counter[str] = Counter()  # first call's core tool, or no_tool
        self.calls: Counter[str] = Counter()  # first call with its argument keys
        self.decisions: Counter[str] = Counter()  # the whole first message (parallel calls joined)

    def add(self, decision: str, labels: list[str]) -> None:
        self.n += 1
        self.decisions[decision] += 1
        if labels:
            self.tools[tool_of(labels[0])] += 1
            self.calls[labels[0]] += 1
        else:
            self.tools[decision] += 1

    def to_dict(self, full: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"dialogs": self.n, "first_tool": dict(self.tools.most_common())}
        if full:
            out["first_call_args"] = dict(self.calls.most_common())
            out["first_message"] = dict(self.decisions.most_common())
        return out


def measure(rows: list[dict[str, Any]], serving: list[str]) -> dict[str, Any]:
    """The first-decision distribution of ``rows``: all dialogs, serving-tool dialogs, per kind and plan."""
    groups: dict[str, Tally] = defaultdict(Tally)
    by_kind: dict[str, dict[str, Tally]] = {"all": defaultdict(Tally), "serving": defaultdict(Tally)}
    by_plan: dict[str, dict[str, Tally]] = {"all": defaultdict(Tally), "serving": defaultdict(Tally)}
    for row in rows:
        meta = row.get("meta") or {}
        kind = str(meta.get("kind"))
        plan = str(_json_field(meta.get("extra")).get("plan"))
        decision, labels = first_decision(row)
        scopes = ["all"] + (["serving"] if is_serving(row, serving) else [])
        for scope in scopes:
            groups[scope].add(decision, labels)
            by_kind[scope][kind].add(decision, labels)
            by_plan[scope][plan].add(decision, labels)
    never = [t for t in serving if t not in groups["serving"].tools]
    return {
        "all": groups["all"].to_dict(),
        "serving": groups["serving"].to_dict(),
        "serving_tools_never_first": never,
        "by_kind": {s: {k: t.to_dict() for k, t in sorted(g.items())} for s, g in by_kind.items()},
        "by_plan": {s: {p: t.to_dict(full=False) for p, t in sorted(g.items())} for s, g in by_plan.items()},
    }


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file (blank lines skipped)."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a synthesis output folder (reads its train.jsonl) or a .jsonl file")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args()
    path = Path(args.run).expanduser()
    path = path / "train.jsonl" if path.is_dir() else path
    result = {"source": str(path), **measure(read_jsonl(path), serving_tool_names())}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
