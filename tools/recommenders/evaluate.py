"""Full-ranking evaluation of a recommender on a leave-one-out split (HR, NDCG, MRR at K).

Protocol as RecBole's ``mode: full``: every catalog item is ranked, items already in the
user's history are masked, the held-out target's rank gives the metrics. Ties are broken by
item index, as :meth:`Recommender.topk` does, so a constant scorer gets no free hits.
"""

from __future__ import annotations

import numpy as np

from recagent.ranking import ndcg
from recagent.tools.data.split import EvalCase, LeaveOneOutSplit
from recagent.tools.recommenders.base import Query, Recommender


def target_ranks(model: Recommender, cases: list[EvalCase], batch_size: int = 256) -> np.ndarray:
    """0-based rank of each case's target among all non-history items."""
    ranks = np.empty(len(cases), dtype=np.int64)
    for start in range(0, len(cases), batch_size):
        batch = cases[start : start + batch_size]
        scores = model.score([Query(history=c.history, user=c.user) for c in batch]).astype(np.float64)
        for row, c in enumerate(batch):
            s = scores[row]
            s[c.history] = -np.inf
            t = s[c.target]
            higher = np.count_nonzero(s > t)
            ties_before = np.count_nonzero(s[: c.target] == t)
            ranks[start + row] = higher + ties_before
    return ranks


def metrics_from_ranks(ranks: np.ndarray, ks: tuple[int, ...] = (10,)) -> dict[str, float]:
    """HR@k, NDCG@k and MRR@k from 0-based target ranks."""
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks < k
        out[f"HR@{k}"] = float(hit.mean())
        out[f"NDCG@{k}"] = float(np.mean([ndcg(int(r), k) for r in np.ravel(ranks)]))
        out[f"MRR@{k}"] = float(np.where(hit, 1.0 / (ranks + 1), 0.0).mean())
    return out


def evaluate(
    model: Recommender, split: LeaveOneOutSplit, part: str = "test", ks: tuple[int, ...] = (10,)
) -> dict[str, float]:
    """Metrics of ``model`` on the ``valid`` or ``test`` targets of ``split``."""
    return metrics_from_ranks(target_ranks(model, split.cases(part)), ks)
