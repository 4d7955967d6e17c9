"""The user side of a dialog: a real user, what they have seen, and a held-out target they want but never name.

Users are split once into training and test users (disjoint, by a seeded hash of the user
id), so train and test dialogs never share a user's held-out target. A **test** task's target
is the user's leave-one-out *test* item, and the user's visible history is their training
data, exactly what the tools see. A **train** task's target is the user's last *training*
item and its history the training items before it; the user's valid and test items are
forbidden as answers of a training dialog (the recommenders' evaluation data must not become
supervision). :func:`recagent.synth.leakage.check_leakage` re-checks all of this on the output.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from recagent.tools.data import LeaveOneOutSplit


@dataclass(frozen=True)
class UserTask:
    """One synthetic user: id, visible history (internal indices, oldest first), ratings, and the target."""

    user: int
    user_id: str
    split: str  # "train" | "test"
    history: tuple[int, ...]
    ratings: tuple[float, ...]
    target: int
    forbidden: frozenset[int]  # items that must not be a training dialog's answer (the user's valid/test items)

    def liked(self, n: int = 5) -> list[int]:
        """The user's best-rated recent items (ties: more recent first)."""
        order = sorted(range(len(self.history)), key=lambda j: (-self.ratings[j], -j))
        return [self.history[j] for j in order[:n]]


class TaskSampler:
    """Draws user tasks for the train, test or validation split of a synthesis run."""

    def __init__(self, split: LeaveOneOutSplit, seed: int = 0, test_user_fraction: float = 0.2, min_history: int = 3):
        self.split, self.seed = split, seed
        self.test_user_fraction, self.min_history = test_user_fraction, min_history

    def is_test_user(self, user_id: str) -> bool:
        """Seeded, stable assignment of a user to the test side."""
        h = int(hashlib.sha256(f"{self.seed}:{user_id}".encode()).hexdigest()[:8], 16)
        return h / 0xFFFFFFFF < self.test_user_fraction

    @cached_property
    def _train_rows(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        tr = self.split.train
        order = np.lexsort((tr.rows, tr.timestamps, tr.users))
        users, items, ratings = tr.users[order], tr.items[order], tr.ratings[order]
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
        ends = np.r_[starts[1:], len(users)]
        return {int(users[s]): (items[s:e], ratings[s:e]) for s, e in zip(starts, ends)}

    @cached_property
    def _held(self) -> dict[int, tuple[int | None, frozenset[int]]]:
        """Per user: the test item and the set of valid+test items."""
        out: dict[int, tuple[int | None, set[int]]] = {}
        for part in ("valid", "test"):
            inter = getattr(self.split, part)
            for u, i in zip(inter.users.tolist(), inter.items.tolist()):
                test_item, items = out.get(u, (None, set()))
                out[u] = (i if part == "test" else test_item, items | {i})
        return {u: (t, frozenset(s)) for u, (t, s) in out.items()}

    @cached_property
    def users(self) -> dict[str, list[int]]:
        """Eligible internal user indices per split."""
        ids = self.split.dataset.users.ids
        out: dict[str, list[int]] = {"train": [], "test": []}
        for u, (items, _) in sorted(self._train_rows.items()):
            side = "test" if self.is_test_user(ids[u]) else "train"
            need = self.min_history if side == "test" else self.min_history + 1
            if len(items) >= need and (side == "train" or self._held.get(u, (None,))[0] is not None):
                out[side].append(u)
        return out

    def task(self, u: int, side: str) -> UserTask:
        """The task of internal user ``u`` on ``side``."""
        items, ratings = self._train_rows[u]
        test_item, held = self._held.get(u, (None, frozenset()))
        uid = self.split.dataset.users.ids[u]
        if side == "test":
            if test_item is None:
                raise ValueError(f"user {uid} has no test item")
            return UserTask(u, uid, "test", tuple(items.tolist()), tuple(ratings.tolist()), int(test_item), held)
        return UserTask(u, uid, "train", tuple(items[:-1].tolist()), tuple(ratings[:-1].tolist()), int(items[-1]), held)

    @cached_property
    def validation_users(self) -> list[int]:
        """Test-side users with enough history for a training-style task: never in a training dialog."""
        return [u for u in self.users["test"] if len(self._train_rows[u][0]) >= self.min_history + 1]

    def sample(self, side: str, rng: random.Random) -> UserTask:
        """A random task on ``side`` ("train", "test" or "validation").

        A validation task is a training-style task (the last training item is the target, the user's
        valid/test items are forbidden) of a test-side user: the policy never trained on the user, and the
        task never touches the user's valid/test items, which only test dialogs target.
        """
        pool = self.validation_users if side == "validation" else self.users[side]
        if not pool:
            raise ValueError(f"no eligible users for the {side} split; lower test_user_fraction or min_history")
        return self.task(rng.choice(pool), "train" if side == "validation" else side)
