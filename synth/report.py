"""The synthesis report: counts, distributions and pass rates as JSON, markdown and two PNG plots."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from recagent.synth import variety
from recagent.synth.config import SynthConfig
from recagent.synth.sample import KINDS, LEVELS


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def summarise(out: Path, test_requests: list[str] | None = None) -> dict[str, Any]:
    """Every number of the report, from the files in ``out``.

    The variety of the user turns is compared with ``test_requests`` (default: the hand-written
    requests of :mod:`recagent.heldout_requests` where that module exists).
    """
    train, test = _rows(out / "train.jsonl"), _rows(out / "test.jsonl")
    validation = _rows(out / "validation.jsonl")  # counted apart: the distributions describe train and test
    rejected, skipped = _rows(out / "rejected.jsonl"), _rows(out / "skipped.jsonl")
    runs = _rows(out / "runs.jsonl")
    verified = train + test
    checked = verified + rejected

    def dist(rows: list[dict], key) -> dict[str, int]:
        return dict(sorted(Counter(key(r) for r in rows).items(), key=lambda kv: str(kv[0])))

    def meta(r: dict) -> dict:
        return r["meta"]

    check_pass: dict[str, list[int]] = {}
    for r in checked:
        for c in meta(r)["verification"]["checks"]:
            check_pass.setdefault(c["name"], [0, 0])
            check_pass[c["name"]][0] += int(c["passed"])
            check_pass[c["name"]][1] += 1
    judged = [meta(r)["verification"].get("judge") for r in checked if meta(r)["verification"].get("judge")]
    reasons = Counter(reason.split(":")[0] for r in rejected for reason in meta(r).get("reasons", []))
    seconds = sum(r["seconds"] for r in runs)
    heldout_test = sum(1 for r in test if any(v.get("heldout") for v in json.loads(meta(r)["tool_variants"]).values()))
    return {
        "verified": {"train": len(train), "test": len(test), "total": len(verified), "validation": len(validation)},
        "rejected": len(rejected),
        "skipped": dict(Counter(r["reason"] for r in skipped)),
        "attempts": len(checked) + len(skipped),
        "pass_rate": round(len(verified) / len(checked), 4) if checked else None,
        "check_pass_rate": {k: round(p / n, 4) for k, (p, n) in check_pass.items()},
        "judge": {"judged": len(judged), "passed": sum(1 for j in judged if j.get("passed"))} if judged else None,
        "rejection_reasons": dict(reasons.most_common()),
        "kinds": {s: dist(rows, lambda r: meta(r)["kind"]) for s, rows in (("train", train), ("test", test))},
        "levels": {
            s: dist(rows, lambda r: meta(r)["complexity"]["level"]) for s, rows in (("train", train), ("test", test))
        },
        "domains": dist(verified, lambda r: meta(r)["domain"]),
        "generators": dist(verified, lambda r: meta(r)["generator"]),
        "user_turns": dist(verified, lambda r: sum(1 for m in r["messages"] if m["role"] == "user")),
        "tools_offered": dist(verified, lambda r: len(r["tools"])),
        "calls": dist(verified, lambda r: meta(r)["complexity"]["calls"]),
        "depth": dist(verified, lambda r: meta(r)["complexity"]["depth"]),
        "test_dialogs_with_heldout_tools": heldout_test,
        "users": {s: len({meta(r)["user_id"] for r in rows}) for s, rows in (("train", train), ("test", test))}
        | {"validation": len({meta(r)["user_id"] for r in validation})},
        "seconds": round(seconds, 2),
        "verified_per_minute": round(len(verified) / seconds * 60, 1) if seconds > 0 else None,
        "variety": variety.report(
            verified, test_requests if test_requests is not None else variety.load_test_requests()
        ),
    }


def _table(title: str, d: dict) -> str:
    lines = [f"| {title} | count |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in d.items()]
    return "\n".join(lines)


def _plots(out: Path, s: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    names = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, order in ((axes[0], "kinds", KINDS), (axes[1], "levels", LEVELS)):
        width = 0.4
        for j, split in enumerate(("train", "test")):
            vals = [s[key][split].get(k, 0) for k in order]
            ax.bar([x + j * width for x in range(len(order))], vals, width, label=split)
        ax.set_xticks([x + width / 2 for x in range(len(order))], order, rotation=20)
        ax.set_title("dialog kinds" if key == "kinds" else "complexity")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "report_mix.png", dpi=110)
    plt.close(fig)
    names.append("report_mix.png")
    checks = s["check_pass_rate"]
    if checks:
        fig, ax = plt.subplots(figsize=(7, 0.32 * len(checks) + 1))
        ax.barh(list(checks), [100 * v for v in checks.values()], color="tab:green")
        ax.set_xlim(0, 100)
        ax.set_xlabel("% of generated dialogs passing")
        ax.invert_yaxis()
        ax.set_title("verification checks")
        fig.tight_layout()
        fig.savefig(out / "report_checks.png", dpi=110)
        plt.close(fig)
        names.append("report_checks.png")
    return names


def _variety_md(v: dict[str, Any]) -> list[str]:
    md = [
        "## Variety of user turns",
        "",
        "distinct-n: distinct n-grams / all n-grams of lower-cased words (`recagent.synth.variety`).",
        "",
        "| | turns | distinct texts | distinct-1 | distinct-2 | distinct-3 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows = [("**all user turns**", v["all_user_turns"]), ("**requests (first turns)**", v["requests"])]
    rows += [(f"plan `{p}`", x) for p, x in v["per_plan"].items()]
    md += [
        f"| {name} | {x['turns']} | {x['distinct_texts']} | {x['distinct_1']} | {x['distinct_2']} | {x['distinct_3']} |"
        for name, x in rows
    ]
    ov = v.get("test_overlap")
    if ov:
        md += [
            "",
            f"Overlap with {ov['test_requests']} test requests: {100 * ov['share_ngrams']:.1f}% of their "
            f"{ov['test_4grams']} distinct 4-grams occur in the user turns; nearest-turn word Jaccard per request: "
            f"mean {ov['mean_max_jaccard']}, max {ov['max_jaccard']}.",
        ]
    return md


def write_report(out: Path, cfg: SynthConfig | None = None, test_requests: list[str] | None = None) -> dict[str, Any]:
    """Write ``report.json``, ``report.md`` and the plots; returns the summary."""
    s = summarise(out, test_requests)
    (out / "report.json").write_text(json.dumps(s, indent=2))
    plots = _plots(out, s)
    v = s["verified"]
    md = [
        "# Synthesis report",
        "",
        f"Verified dialogs: **{v['total']}** ({v['train']} train, {v['test']} test; "
        f"{s['users']['train']} train users, {s['users']['test']} test users, disjoint). "
        f"Rejected: {s['rejected']}. Skipped: {s['skipped'] or 'none'}. Attempts: {s['attempts']}.",
        "",
        f"Pass rate of generated dialogs through verification: {s['pass_rate']}. "
        f"Throughput: {s['verified_per_minute']} verified dialogs per minute ({s['seconds']} s of generation).",
        f"Test dialogs offering held-out tool variants: {s['test_dialogs_with_heldout_tools']}.",
        f"Validation dialogs (checkpoint choice; test-side users, training-style tasks, seen tools): "
        f"{v['validation']} of {s['users']['validation']} users.",
        "",
    ]
    if cfg is not None:
        md += [
            f"Generator: `{cfg.generator}`, seed {cfg.seed}, judge: {'`' + cfg.judge.model + '`' if cfg.judge else 'off'}, "
            f"complexity by: {'target-model loss' if cfg.target_model else 'structure'}.",
            "",
        ]
    md += ["## Pass rate per check", "", "| check | pass rate |", "|---|---:|"]
    md += [f"| {k} | {100 * r:.1f}% |" for k, r in s["check_pass_rate"].items()]
    if s["judge"]:
        md += ["", f"Judge: {s['judge']['passed']} of {s['judge']['judged']} judged dialogs passed."]
    if s["rejection_reasons"]:
        md += ["", _table("rejection reason", s["rejection_reasons"])]
    for key in ("kinds", "levels"):
        md += ["", f"## {key.capitalize()}", "", "| | train | test |", "|---|---:|---:|"]
        order = KINDS if key == "kinds" else LEVELS
        md += [f"| {k} | {s[key]['train'].get(k, 0)} | {s[key]['test'].get(k, 0)} |" for k in order]
    for key, title in (
        ("user_turns", "user turns"),
        ("tools_offered", "tools offered"),
        ("calls", "calls"),
        ("depth", "dependency depth"),
        ("domains", "domain"),
    ):
        md += ["", _table(title, s[key])]
    md += [""] + _variety_md(s["variety"])
    md += [""] + [f"![{p}]({p})" for p in plots]
    (out / "report.md").write_text("\n".join(md) + "\n")
    return s
