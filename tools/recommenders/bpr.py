"""BPR-MF: matrix factorisation trained with the Bayesian personalised ranking loss."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from pydantic import Field
from torch import nn

from recagent.tools.data.split import LeaveOneOutSplit
from recagent.tools.recommenders.base import FitReport, Query, RecommenderConfig, TorchRecommender
from recagent.tools.recommenders.training import train_with_early_stopping


class BPRConfig(RecommenderConfig):
    """BPR-MF hyper-parameters."""

    embedding_size: int = Field(64, ge=1, description="latent factors per user and item")
    learning_rate: float = Field(2e-3, gt=0, description="Adam learning rate")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty on the factors")
    batch_size: int = Field(2048, ge=1, description="training triples per step")
    max_epochs: int = Field(300, ge=1, description="upper bound on training epochs")
    patience: int = Field(
        20, ge=1, description="evaluations without validation improvement before stopping (20 beat 10 on valid NDCG@10)"
    )
    eval_every: int = Field(1, ge=1, description="epochs between validation evaluations")


class _BPRNet(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int):
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.xavier_normal_(self.user.weight)
        nn.init.xavier_normal_(self.item.weight)


class BPR(TorchRecommender):
    """User and item factors; score = dot product. Unknown users are folded in from their history."""

    name = "bpr"
    config_cls = BPRConfig

    def _build(self) -> None:
        """Create the (untrained) network for the current sizes."""
        self.net = _BPRNet(self.n_users, self.n_items, self.config.embedding_size)

    def fit(self, split: LeaveOneOutSplit, show_progress: bool = True, checkpoint_dir: Path | None = None) -> FitReport:
        """Train on (user, positive, sampled negative) triples with early stopping on valid NDCG@10."""
        cfg: BPRConfig = self.config
        torch.manual_seed(cfg.seed)
        self.n_users, self.n_items = split.dataset.n_users, split.dataset.n_items
        self._build()
        users = torch.as_tensor(split.train.users, dtype=torch.long)
        items = torch.as_tensor(split.train.items, dtype=torch.long)
        positives = np.unique(split.train.users * self.n_items + split.train.items)
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)

        def sample_negatives(u: torch.Tensor) -> torch.Tensor:
            neg = torch.randint(0, self.n_items, (len(u),))
            for _ in range(5):  # resample the few negatives that hit a positive
                key = (u * self.n_items + neg).numpy()
                at = np.minimum(np.searchsorted(positives, key), len(positives) - 1)
                pos = positives[at] == key
                if not pos.any():
                    break
                idx = torch.as_tensor(np.flatnonzero(pos))
                neg[idx] = torch.randint(0, self.n_items, (len(idx),))
            return neg

        def run_epoch(_epoch: int) -> float:
            perm = torch.randperm(len(users))
            total = 0.0
            for start in range(0, len(perm), cfg.batch_size):
                b = perm[start : start + cfg.batch_size]
                u, p = users[b], items[b]
                n = sample_negatives(u)
                ue = self.net.user(u)
                diff = (ue * self.net.item(p)).sum(-1) - (ue * self.net.item(n)).sum(-1)
                loss = -nn.functional.logsigmoid(diff).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(b)
            return total / len(perm)

        return train_with_early_stopping(
            self,
            opt,
            run_epoch,
            split,
            cfg.max_epochs,
            cfg.patience,
            eval_every=cfg.eval_every,
            show_progress=show_progress,
            checkpoint_dir=checkpoint_dir,
        )

    @torch.no_grad()
    def score(self, queries: Sequence[Query]) -> np.ndarray:
        """Dot products with the user's factors (or the mean history item factors for unknown users)."""
        item_w = self.net.item.weight
        vecs = []
        for q in queries:
            if q.user is not None and 0 <= q.user < self.n_users:
                vecs.append(self.net.user.weight[q.user])
            elif len(q.history):
                vecs.append(item_w[torch.as_tensor(np.asarray(q.history), dtype=torch.long)].mean(0))
            else:
                vecs.append(torch.zeros(item_w.shape[1]))
        if not vecs:
            return np.zeros((0, self.n_items), dtype=np.float32)
        return (torch.stack(vecs) @ item_w.T).numpy().astype(np.float32)

    def item_vectors(self) -> np.ndarray:
        """Item factors."""
        return self.net.item.weight.detach().numpy().astype(np.float32)
