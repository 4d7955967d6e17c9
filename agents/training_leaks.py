"""Evaluation data in training dialogs: what no single dialog can show, found across a whole training set.

:func:`find_leaks` checks that train and test users are disjoint (so no held-out target of a
test user is a training target), that no training answer names a user's valid/test item, and
that no held-out tool variant is offered in any training dialog. It fails loudly through its
callers, never repairs: synthesis raises on it (:func:`recagent.synth.leakage.check_leakage`),
SFT refuses such data, evaluation refuses a policy trained on it.

It lives in the agents layer, the lowest whose imports it needs (the agent's answer grounding
and the core dialog row format), so that synth, rl and evaluation share it without importing
one another.
"""

from __future__ import annotations

from collections.abc import Iterable

from recagent.agents.grounding import ground_answer
from recagent.dialogs import Sample
from recagent.tools.data import LeaveOneOutSplit


def held_items(split: LeaveOneOutSplit) -> dict[str, set[str]]:
    """Per external user id: the ids of their valid and test items."""
    ds = split.dataset
    out: dict[str, set[str]] = {}
    for part in (split.valid, split.test):
        for u, i in zip(part.users.tolist(), part.items.tolist()):
            out.setdefault(ds.users.ids[u], set()).add(ds.items.ids[i])
    return out


def find_leaks(
    train: Iterable[Sample], test: Iterable[Sample], split: LeaveOneOutSplit, role: str = "train"
) -> list[str]:
    """Every leak found, one line each (empty when clean); ``role`` names the checked dialogs in the lines."""
    train, test = list(train), list(test)
    held = held_items(split)
    catalog = split.dataset.items
    leaks: list[str] = []
    shared = sorted({s.user_id for s in train} & {s.user_id for s in test})
    if shared:
        leaks.append(f"{len(shared)} user(s) appear in both train and test dialogs, e.g. {shared[:5]}")
    test_pairs = {(s.user_id, s.target_item) for s in test}
    heldout_tools = {n for s in test for n, rec in s.tool_variants.items() if rec.get("heldout")}
    for s in train:
        bad_items = held.get(s.user_id, set())
        if (s.user_id, s.target_item) in test_pairs:
            leaks.append(f"{role} dialog {s.id}: its target {s.target_item} is a test target of user {s.user_id}")
        if s.target_item in bad_items:
            leaks.append(f"{role} dialog {s.id}: target {s.target_item} is a valid/test item of user {s.user_id}")
        for m in s.messages:
            if m.get("role") == "assistant" and m.get("content"):
                g = ground_answer(m["content"], catalog, set())
                named = (set(g.supported) | set(g.unsupported)) & bad_items
                if named:
                    leaks.append(
                        f"{role} dialog {s.id}: answer names valid/test items {sorted(named)} of user {s.user_id}"
                    )
        offered_held = sorted(heldout_tools & {t["function"]["name"] for t in s.tools})
        flagged = sorted(n for n, rec in s.tool_variants.items() if rec.get("heldout"))
        if offered_held or flagged:
            leaks.append(f"{role} dialog {s.id}: offers held-out tool variants {sorted(set(offered_held + flagged))}")
    return leaks
