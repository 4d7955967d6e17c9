"""Leave-one-out-by-time splits (RecBole's ``LS valid_and_test, order TO``) and leakage checks.

For each user the events are ordered by time (ties keep file order): the last one is the
test target, the one before it the validation target, the rest are training data. Users
with fewer than three events keep everything in training. Histories used to score a
target never contain the target or anything after it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from recagent.errors import RecagentError
from recagent.tools.data.schema import Dataset, Interactions


class LeakageError(RecagentError):
    """Held-out interactions reached data that training or tools may see."""


@dataclass(frozen=True)
class EvalCase:
    """One held-out target: a user, the history they had before it, and the target item."""

    user: int
    history: np.ndarray  # chronological internal item indices
    target: int


@dataclass(frozen=True)
class LeaveOneOutSplit:
    """Train / valid / test interactions of one dataset, split by time per user."""

    dataset: Dataset
    train: Interactions
    valid: Interactions
    test: Interactions

    @cached_property
    def train_sequences(self) -> list[np.ndarray]:
        """Chronological training item sequence of every user (index = internal user)."""
        return _sequences(self.train, self.dataset.n_users)

    def cases(self, part: str) -> list[EvalCase]:
        """Evaluation cases for ``valid`` (history = train) or ``test`` (history = train + valid)."""
        if part not in ("valid", "test"):
            raise ValueError(f"part must be 'valid' or 'test', got {part!r}")
        seqs = self.train_sequences
        valid_item = dict(zip(self.valid.users.tolist(), self.valid.items.tolist()))
        held = self.valid if part == "valid" else self.test
        out = []
        for u, target in zip(held.users.tolist(), held.items.tolist()):
            hist = seqs[u]
            if part == "test" and u in valid_item:
                hist = np.append(hist, valid_item[u])
            out.append(EvalCase(user=u, history=hist, target=target))
        return out

    def history(self, user: int, upto: str = "train") -> np.ndarray:
        """A user's chronological history visible at ``upto`` (``train`` or ``valid``)."""
        if upto == "train":
            return self.train_sequences[user]
        if upto == "valid":
            extra = self.valid.items[self.valid.users == user]
            return np.concatenate([self.train_sequences[user], extra])
        raise ValueError(f"upto must be 'train' or 'valid', got {upto!r}")

    def check_no_leakage(self) -> None:
        """Raise :class:`LeakageError` if held-out rows reach training or precede training in time."""
        check_disjoint(self.train, self.valid, "valid")
        check_disjoint(self.train, self.test, "test")
        check_disjoint(self.valid, self.test, "test vs valid")
        for name, held in (("valid", self.valid), ("test", self.test)):
            last_train = np.full(self.dataset.n_users, -np.inf)
            np.maximum.at(last_train, self.train.users, self.train.timestamps)
            early = held.timestamps < last_train[held.users]
            if early.any():
                u = int(held.users[np.argmax(early)])
                raise LeakageError(
                    f"{name} event of user {self.dataset.users.ids[u]} is older than that user's training events"
                )

    def train_digest(self) -> str:
        """SHA-256 of the training rows: a model records it, an evaluation checks it (trained on this split's train)."""
        rows = np.sort(np.asarray(self.train.rows, dtype=np.int64))
        return hashlib.sha256(self.dataset.name.encode() + b"|" + rows.tobytes()).hexdigest()

    def summary(self) -> dict[str, int]:
        """Row counts per part."""
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


def _sequences(inter: Interactions, n_users: int) -> list[np.ndarray]:
    order = inter.chronological_order()
    users, items = inter.users[order], inter.items[order]
    bounds = np.searchsorted(users, np.arange(n_users + 1))
    return [items[bounds[u] : bounds[u + 1]] for u in range(n_users)]


def check_disjoint(train: Interactions, held_out: Interactions, name: str) -> None:
    """Raise :class:`LeakageError` if any held-out source row is also a training row."""
    overlap = np.intersect1d(train.rows, held_out.rows)
    if len(overlap):
        raise LeakageError(f"{len(overlap)} {name} rows also appear in training data (e.g. source row {overlap[0]})")


def leave_one_out(dataset: Dataset) -> LeaveOneOutSplit:
    """Split each user's time-ordered events: last -> test, second last -> valid, rest -> train."""
    inter = dataset.interactions
    order = inter.chronological_order()
    users = inter.users[order]
    # position of each event from the end of its user's sequence (0 = last)
    counts = np.bincount(users, minlength=dataset.n_users)
    ends = np.cumsum(counts)
    from_end = ends[users] - 1 - np.arange(len(users))
    has_holdout = counts[users] >= 3
    test_mask = has_holdout & (from_end == 0)
    valid_mask = has_holdout & (from_end == 1)
    train_mask = ~(test_mask | valid_mask)
    split = LeaveOneOutSplit(
        dataset=dataset,
        train=inter.take(order[train_mask]),
        valid=inter.take(order[valid_mask]),
        test=inter.take(order[test_mask]),
    )
    split.check_no_leakage()
    return split
