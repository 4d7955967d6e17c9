"""Most-popular baseline: items scored by their number of training interactions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from recagent.tools.data.split import LeaveOneOutSplit
from recagent.tools.recommenders.base import FitReport, Query, Recommender, RecommenderConfig


class PopularityConfig(RecommenderConfig):
    """Popularity has no hyper-parameters."""


class Popularity(Recommender):
    """Scores every item by its training interaction count, the same for every user."""

    name = "pop"
    config_cls = PopularityConfig

    def fit(self, split: LeaveOneOutSplit, show_progress: bool = True, checkpoint_dir: Path | None = None) -> FitReport:
        """Count training interactions per item."""
        self.n_users, self.n_items = split.dataset.n_users, split.dataset.n_items
        self.counts = np.bincount(split.train.items, minlength=self.n_items).astype(np.float32)
        return FitReport(epochs=1, best_epoch=1)

    def score(self, queries: Sequence[Query]) -> np.ndarray:
        """Interaction counts, repeated for each query."""
        return np.broadcast_to(self.counts, (len(queries), self.n_items)).copy()

    def state(self) -> dict:
        """The count vector."""
        return {"counts": self.counts}

    def load_state(self, state: dict) -> None:
        """Restore the count vector."""
        self.counts = np.asarray(state["counts"], dtype=np.float32)
