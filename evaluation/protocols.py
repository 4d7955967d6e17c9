"""What every system is asked, identically: sampled users, their visible histories, candidate lists and orders.

A :class:`Request` is one question put to a system (rank the catalog, or rank given candidates,
with the full or a truncated history). Requests are built once per user from fixed seeds, so
every system sees the same users, the same candidates and the same orders, and a resumed run
rebuilds exactly the same requests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from recagent.tools.data.split import EvalCase, LeaveOneOutSplit

ORDERS = ("shuffled", "target_first", "target_last")


@dataclass(frozen=True)
class Request:
    """One question to a system: rank for this user, over the catalog or these candidates, seeing this history."""

    protocol: str  # "full", "cand:<order>" or "hist:<n>"
    user: int  # internal user index
    user_id: str
    target: str  # held-out item id (never shown to a system)
    history: np.ndarray  # what the system may condition on (internal indices, chronological)
    seen: np.ndarray  # the whole visible history: excluded from full-catalog rankings
    k: int
    candidates: tuple[str, ...] = ()  # empty = rank the whole catalog
    history_limit: int | None = None

    @property
    def key(self) -> str:
        """Identity of the request within a run (for resume)."""
        return f"{self.protocol}|{self.user_id}"


def _rng(seed: int, *parts: object) -> np.random.Generator:
    # a generator per (seed, user, purpose): the same draw whatever else the run does, and across resumes
    digest = hashlib.sha256("|".join(map(str, (seed, *parts))).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def sample_cases(split: LeaveOneOutSplit, part: str, n: int, seed: int) -> list[EvalCase]:
    """``n`` held-out cases of ``part`` in a seeded random order; a smaller ``n`` gives a prefix of a larger one."""
    cases = split.cases(part)
    # one fixed permutation per seed: the 20 users of a small run are the first 20 of the 200-user run
    order = _rng(seed, "users").permutation(len(cases))
    return [cases[i] for i in order[:n]]


def sample_negatives(split: LeaveOneOutSplit, case: EvalCase, n: int, seed: int) -> list[int]:
    """``n`` items the user never interacted with (in any part), drawn uniformly with a per-user seed."""
    n_items = split.dataset.n_items
    touched = split.dataset.interactions.items[split.dataset.interactions.users == case.user]
    allowed = np.setdiff1d(np.arange(n_items), np.append(touched, case.target))
    if len(allowed) < n:
        raise ValueError(f"user {case.user} has only {len(allowed)} untouched items; cannot sample {n} negatives")
    return _rng(seed, "negatives", case.user).choice(allowed, size=n, replace=False).tolist()


def ordered(candidates: list[str], target: str, order: str, seed: int, user: int) -> list[str]:
    """The same candidates in one of :data:`ORDERS` (the shuffle is fixed per user)."""
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; choose one of {ORDERS}")
    shuffled = [candidates[i] for i in _rng(seed, "order", user).permutation(len(candidates))]
    if order == "shuffled":
        return shuffled
    rest = [c for c in shuffled if c != target]
    return [target, *rest] if order == "target_first" else [*rest, target]


def build_requests(
    split: LeaveOneOutSplit,
    cases: list[EvalCase],
    protocols: list[str],
    k: int,
    n_candidates: int,
    history_lengths: list[int],
    seed: int,
) -> list[Request]:
    """Every request of the run, in a stable order: per protocol, per user."""
    ids = split.dataset.items.ids
    out: list[Request] = []
    for case in cases:
        uid, target = split.dataset.users.ids[case.user], ids[case.target]
        base = dict(user=case.user, user_id=uid, target=target, history=case.history, seen=case.history, k=k)
        if "full" in protocols:
            out.append(Request(protocol="full", **base))
        if "candidates" in protocols or "position" in protocols:
            pool = [target] + [ids[i] for i in sample_negatives(split, case, n_candidates - 1, seed)]
            orders = ORDERS if "position" in protocols else ("shuffled",)
            for order in orders:
                cands = tuple(ordered(pool, target, order, seed, case.user))
                out.append(Request(protocol=f"cand:{order}", candidates=cands, **base))
        if "history" in protocols:
            for n in history_lengths:
                out.append(
                    Request(**{**base, "protocol": f"hist:{n}", "history": case.history[-n:], "history_limit": n})
                )
    return out
