"""NDCG of one relevant item: the one definition used by the recommender evaluation (``recs eval``,
:mod:`recagent.tools.recommenders.evaluate`), the agent evaluation (:mod:`recagent.evaluation.metrics`)
and the RL rewards (:mod:`recagent.rl.rewards`).

It sits in core so that every part may import it (tools, rl and evaluation all do). Ranks are 0-based:
the first slot of a list is rank 0.
"""

from __future__ import annotations

import math


def ndcg(rank: int | None, k: int | None = None) -> float:
    """NDCG@k of a list whose one relevant item sits at 0-based ``rank`` (None: not in the list).

    With a single relevant item IDCG is 1, so NDCG@k = 1/log2(rank + 2) when ``rank < k``, else 0;
    ``k=None`` applies no cut-off (the discount of any rank). A 1-based rank ``r`` is ``ndcg(r - 1)``,
    that is ``1/log2(r + 1)``.
    """
    if rank is None or (k is not None and rank >= k):
        return 0.0
    if rank < 0:
        raise ValueError(f"rank must be 0-based (0 or more), got {rank}")
    return 1.0 / math.log2(rank + 2)
