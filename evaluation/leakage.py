"""The leakage check that runs before every evaluation and fails loudly.

Nothing from a user's held-out interactions may reach the systems under test. Checked here:
the split itself (held-out rows are not training rows and come after them); the tools see
exactly the history the protocol allows (train for valid targets, train + valid for test
targets) and never the target; every recommender was trained on this split's training rows
(the digest its training recorded); every synthesized dialog set the policy was trained on,
followed through its checkpoints' run records, names no evaluation user's held-out item and
shares no user with the synthesized test dialogs used for tool-call accuracy, and (when the
hand-written chat requests are evaluated) has no user turn that copies one of them
(:func:`recagent.heldout_requests.find_request_leaks`: exact, contained or near copies).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import yaml

from recagent.tools.data.split import EvalCase, LeakageError, LeaveOneOutSplit

REQUIRED_UPTO = {"valid": "train", "test": "valid"}


def check_split_and_histories(split: LeaveOneOutSplit, part: str, cases: list[EvalCase], env) -> None:
    """The split is clean, tools see exactly the protocol's history, and no target is visible."""
    split.check_no_leakage()
    upto = env.config.history_upto
    if upto != REQUIRED_UPTO[part]:
        raise LeakageError(
            f"evaluating {part} targets needs tools.history_upto={REQUIRED_UPTO[part]!r}, the agent's config has {upto!r}"
            + (
                " (tools would see the validation target)"
                if part == "valid"
                else " (tools would see less than the baselines)"
            )
        )
    for case in cases:
        visible = env.history(case.user)
        if case.target in set(visible.tolist()):
            raise LeakageError(f"user {split.dataset.users.ids[case.user]}: the {part} target is in the tools' history")
        if not np.array_equal(visible, case.history):
            raise LeakageError(
                f"user {split.dataset.users.ids[case.user]}: the tools see a different history than the protocol"
            )


def check_models(split: LeaveOneOutSplit, model_dirs: dict[str, Path]) -> None:
    """Every recommender was trained on this split's training rows (the digest recorded at training time)."""
    want = split.train_digest()
    for name, directory in model_dirs.items():
        meta_path = Path(directory) / "meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        got = meta.get("train_digest")
        if got is None:
            raise LeakageError(
                f"{name} in {directory} does not record its training data, so it cannot be checked; "
                f"retrain it: recagent recs train --model {name} --dataset {split.dataset.name}"
            )
        if got != want:
            raise LeakageError(
                f"{name} in {directory} was trained on other data than this split's training rows; "
                f"retrain it: recagent recs train --model {name} --dataset {split.dataset.name}"
            )


def training_data_dirs(model_dir: str | Path | None) -> list[Path]:
    """Synthesized dialog folders a policy checkpoint was trained on, following base models back through SFT and RL."""
    out: list[Path] = []
    todo, seen = [Path(model_dir)] if model_dir else [], set()
    while todo:
        d = todo.pop()
        if d in seen or not d.is_dir():
            continue
        seen.add(d)
        records = []
        if (d / "sft_run.json").is_file():
            records.append(json.loads((d / "sft_run.json").read_text()))
        if (d / "rl_config.yaml").is_file():
            records.append(yaml.safe_load((d / "rl_config.yaml").read_text()) or {})
        for rec in records:
            if rec.get("data_dir"):
                out.append(Path(rec["data_dir"]))
            if rec.get("base_model"):
                todo.append(Path(rec["base_model"]))
    return list(dict.fromkeys(out))


def check_policy_data(
    split: LeaveOneOutSplit,
    data_dirs: Iterable[Path],
    test_rows: list[dict] | None = None,
    requests: list | None = None,
) -> list[str]:
    """Refuse policy training dialogs that name held-out items, share users with the test dialogs or copy a held-out
    chat request (``requests``: the :class:`~recagent.heldout_requests.ChatRequest` list evaluated, None = not checked);
    notes on what was checked."""
    from recagent.agents.training_leaks import find_leaks
    from recagent.dialogs import Sample, read_rows

    notes = []
    test = [Sample.from_row(r) for r in test_rows or []]
    for d in data_dirs:
        path = d / "train.jsonl"
        if not path.is_file():
            raise LeakageError(f"the policy was trained on {d}, which is gone: its data cannot be checked for leakage")
        rows = read_rows(path)
        if requests:
            check_request_leaks(rows, requests, path)
        info = json.loads((d / "dataset.json").read_text()) if (d / "dataset.json").is_file() else {}
        if info.get("name") not in (None, split.dataset.name):
            notes.append(f"{d}: dialogs of {info['name']}, not {split.dataset.name}; nothing to leak")
            continue
        train = [Sample.from_row(r) for r in rows]
        leaks = find_leaks(train, test, split)
        if leaks:
            more = f" (and {len(leaks) - 3} more)" if len(leaks) > 3 else ""
            raise LeakageError(
                f"the policy's training dialogs in {d} leak evaluation data: " + "; ".join(leaks[:3]) + more
            )
        notes.append(f"{d}: {len(train)} training dialogs checked, no leaks")
    return notes


def check_request_leaks(rows: list[dict], requests: list, path: Path | str) -> None:
    """Refuse training rows whose user turns copy a held-out chat request (one line naming the row and the request)."""
    from recagent.heldout_requests import first_row_leak

    found = first_row_leak(rows, requests)
    if found is not None:
        line, leak = found
        raise LeakageError(
            f"{path}, line {line}: a user turn {leak.describe()}; "
            "the policy must not be trained on the evaluation's chat requests"
        )
