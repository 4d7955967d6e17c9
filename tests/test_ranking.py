"""The one NDCG of a single relevant item (recagent.ranking.ndcg) and its three users: ``recs eval``
(tools), the agent evaluation and the RL rewards, each pinned to the formula it used before it shared
the function, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recagent.evaluation.metrics import utility
from recagent.ranking import ndcg
from recagent.rl.rewards import Call, RewardWeights, Step, ndcg_at_k, step_rewards
from recagent.tools.recommenders.evaluate import metrics_from_ranks


def test_ndcg_by_hand():
    assert ndcg(0) == 1.0 and ndcg(2) == 0.5 and ndcg(2, k=3) == 0.5
    assert ndcg(3, k=3) == 0.0 and ndcg(None) == 0.0 and ndcg(None, k=10) == 0.0
    with pytest.raises(ValueError, match="0-based"):
        ndcg(-1)


def test_one_based_rank_r_is_zero_based_r_minus_one():
    # rl/rewards.py scored 1-based ranks r as 1/log2(r + 1); now it passes the 0-based r - 1
    for r in range(1, 2000):
        assert ndcg(r - 1) == 1.0 / math.log2(r + 1)


def test_rewards_equal_the_old_one_based_formula():
    steps = [
        Step([Call("search", {}, True, ["7", "8", "9", "T"])]),  # 1-based rank 4
        Step([Call("rank", {}, True, ["8", "T"])]),  # 1-based rank 2
        Step(answer_ids=["7", "8", "T"]),
    ]
    r = step_rewards(steps, RewardWeights(success=0.0, contribution=1.0, task=1.0), target="T")
    assert r[0].components["contribution"] == 1.0 / math.log2(4 + 1)
    assert r[1].components["contribution"] == 1.0 / math.log2(2 + 1) - 1.0 / math.log2(4 + 1)
    assert r[2].components["task"] == 1.0 / math.log2(3 + 1)
    assert ndcg_at_k(["a", "T", "T"], "T", k=2) == 1.0 / math.log2(3)
    assert ndcg_at_k(["a", "b", "T"], "T", k=2) == 0.0 and ndcg_at_k([], "T") == 0.0


def test_recs_eval_equals_the_old_vectorised_formula():
    ranks = np.random.default_rng(0).integers(0, 1700, size=5000)
    ranks[:50] = np.arange(50)
    for k in (1, 5, 10, 20, 50):
        old = float(np.where(ranks < k, 1.0 / np.log2(ranks + 2), 0.0).mean())
        assert metrics_from_ranks(ranks, (k,))[f"NDCG@{k}"] == old


def test_agent_evaluation_equals_the_old_formula():
    ranked = [str(i) for i in range(30)]
    for pos in range(30):
        for k in (1, 5, 10, 20):
            old = 1.0 / math.log2(pos + 2) if pos < k else 0.0
            assert utility(ranked, str(pos), (k,))[f"NDCG@{k}"] == old
