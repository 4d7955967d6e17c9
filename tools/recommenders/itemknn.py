"""ItemKNN: item-item cosine similarity over the training matrix, top-k neighbours per item."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recagent.tools.data.split import LeaveOneOutSplit
from recagent.tools.recommenders.base import FitReport, Query, Recommender, RecommenderConfig


class ItemKNNConfig(RecommenderConfig):
    """ItemKNN hyper-parameters (RecBole's defaults)."""

    k: int = Field(100, ge=1, description="neighbours kept per item")
    shrink: float = Field(0.0, ge=0, description="shrinkage added to the cosine denominator")
    block: int = Field(2048, ge=1, description="items per block when computing similarities (bounds memory)")


class ItemKNN(Recommender):
    """Scores an item by its summed similarity to the items in the history."""

    name = "itemknn"
    config_cls = ItemKNNConfig

    def fit(self, split: LeaveOneOutSplit, show_progress: bool = True, checkpoint_dir: Path | None = None) -> FitReport:
        """Compute the sparse top-k cosine similarity matrix from training interactions."""
        cfg: ItemKNNConfig = self.config
        self.n_users, self.n_items = split.dataset.n_users, split.dataset.n_items
        x = sp.csr_matrix(
            (np.ones(len(split.train), dtype=np.float32), (split.train.users, split.train.items)),
            shape=(self.n_users, self.n_items),
        )
        x.data[:] = 1.0  # repeated interactions count once
        xt = x.T.tocsr()
        norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
        rows, cols, vals = [], [], []
        k = min(cfg.k, self.n_items - 1)
        for start in range(0, self.n_items, cfg.block):
            stop = min(start + cfg.block, self.n_items)
            co = (xt[start:stop] @ x).toarray()  # (block, n_items) co-occurrence counts
            sim = co / (norms[start:stop, None] * norms[None, :] + cfg.shrink + 1e-12)
            sim[np.arange(stop - start), np.arange(start, stop)] = 0.0
            if k <= 0:
                continue
            nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            nv = np.take_along_axis(sim, nn, axis=1)
            keep = nv > 0
            rows.append(np.repeat(np.arange(start, stop), k)[keep.ravel()])
            cols.append(nn.ravel()[keep.ravel()])
            vals.append(nv.ravel()[keep.ravel()])
        self.sim = sp.csr_matrix(
            (
                np.concatenate(vals) if vals else [],
                (np.concatenate(rows) if rows else [], np.concatenate(cols) if cols else []),
            ),
            shape=(self.n_items, self.n_items),
            dtype=np.float32,
        )
        return FitReport(epochs=1, best_epoch=1)

    def score(self, queries: Sequence[Query]) -> np.ndarray:
        """Sum of neighbour similarities from the history items."""
        h = np.zeros((len(queries), self.n_items), dtype=np.float32)
        for r, q in enumerate(queries):
            if len(q.history):
                h[r, np.asarray(q.history)] = 1.0
        return (sp.csr_matrix(h) @ self.sim).toarray().astype(np.float32)

    def item_vectors(self) -> None:
        """ItemKNN has similarities, not vectors."""
        return None

    def state(self) -> dict:
        """The sparse similarity matrix as CSR arrays."""
        return {"data": self.sim.data, "indices": self.sim.indices, "indptr": self.sim.indptr}

    def load_state(self, state: dict) -> None:
        """Restore the similarity matrix."""
        self.sim = sp.csr_matrix((state["data"], state["indices"], state["indptr"]), shape=(self.n_items, self.n_items))
