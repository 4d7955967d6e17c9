"""Step rewards and step-grained advantages against hand-computed values on hand-built trajectories."""

from __future__ import annotations

import math

import pytest
import torch

from recagent.rl.advantages import (
    discounted_returns,
    gae,
    group_normalised,
    step_advantages_for_groups,
    token_advantages,
)
from recagent.rl.rewards import Call, RewardWeights, Step, match_calls, ndcg_at_k, step_rewards


def test_discounted_returns_by_hand():
    assert discounted_returns([1.0, 0.0, 2.0], gamma=0.5) == [1.5, 1.0, 2.0]  # 1 + .5*(0 + .5*2)
    assert discounted_returns([], gamma=0.9) == []


def test_group_normalisation_pools_every_step_of_the_group_and_keeps_zero_reward_steps():
    adv = group_normalised([[1.0, 3.0], [2.0]], eps=0.0)
    # mean 2, population std sqrt(2/3)
    s = math.sqrt(2 / 3)
    assert adv[0] == pytest.approx([-1 / s, 1 / s]) and adv[1] == pytest.approx([0.0])
    assert group_normalised([[5.0], [5.0]]) == [[0.0], [0.0]]
    assert group_normalised([[1.0, 3.0]], scale=False) == [[-1.0, 1.0]]


def test_groups_are_consecutive_blocks_and_must_divide():
    adv = step_advantages_for_groups([[1.0], [3.0], [10.0], [10.0]], group_size=2, gamma=1.0)
    assert adv[0][0] < 0 < adv[1][0] and adv[2] == adv[3] == [0.0]
    with pytest.raises(ValueError, match="groups of 3"):
        step_advantages_for_groups([[1.0], [2.0]], group_size=3, gamma=1.0)


def test_token_advantages_fill_step_spans_only():
    t = token_advantages([[0.5, -1.0]], [[(0, 2), (4, 5)]], length=6)
    assert t.tolist() == [[0.5, 0.5, 0.0, 0.0, -1.0, 0.0]]
    with pytest.raises(ValueError, match="2 step advantages for 1 step spans"):
        token_advantages([[0.5, 1.0]], [[(0, 2)]], length=6)


def test_gae_skips_observation_tokens():
    # tokens: a0 a1 | obs obs | a2 ; reward 1 on a1 (end of step 1), 2 on a2 (end of step 2)
    rewards = torch.tensor([[0.0, 1.0, 0.0, 0.0, 2.0]])
    values = torch.tensor([[0.5, 0.4, 9.0, 9.0, 0.3]])
    mask = torch.tensor([[1, 1, 0, 0, 1]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    # with gamma = lam = 1 the advantage is (sum of later rewards) - V(t)
    assert adv[0].tolist() == pytest.approx([3 - 0.5, 3 - 0.4, 0.0, 0.0, 2 - 0.3])
    assert ret[0].tolist() == pytest.approx([3.0, 3.0, 0.0, 0.0, 2.0])
    adv, _ = gae(rewards, values, mask, gamma=0.5, lam=0.0)  # one-step TD: r + gamma V(next action) - V
    assert adv[0].tolist() == pytest.approx([0 + 0.5 * 0.4 - 0.5, 1 + 0.5 * 0.3 - 0.4, 0, 0, 2 - 0.3])


def test_step_rewards_success_is_normalised_by_calling_steps():
    w = RewardWeights(success=1.0, contribution=0.0, task=0.0)
    one = step_rewards([Step([Call("a", {}, True)]), Step(answer_ids=[])], w)
    many = step_rewards([Step([Call("a", {}, True)]) for _ in range(5)] + [Step(answer_ids=[])], w)
    assert sum(r.total for r in one) == pytest.approx(1.0) == pytest.approx(sum(r.total for r in many))
    half = step_rewards([Step([Call("a", {}, True), Call("b", None, False)]), Step(answer_ids=[])], w)
    assert half[0].components["success"] == 0.5 and half[1].total == 0.0


def test_contribution_telescopes_and_the_task_term_reaches_the_last_step():
    w = RewardWeights(success=0.0, contribution=1.0, task=2.0)
    steps = [
        Step([Call("search", {}, True, ["7", "8", "9", "T"])]),  # target enters at rank 4
        Step([Call("rank", {}, True, ["T", "7"])]),  # and moves to rank 1
        Step([Call("rank", {}, True, ["7", "T"])]),  # a worse list later does not undo progress
        Step(answer_ids=["T", "7"]),
    ]
    r = step_rewards(steps, w, target="T")
    assert r[0].components["contribution"] == pytest.approx(1 / math.log2(5))
    assert r[1].components["contribution"] == pytest.approx(1 - 1 / math.log2(5))
    assert r[2].components["contribution"] == 0.0 and r[3].components["task"] == pytest.approx(2.0)
    assert sum(x.components["contribution"] for x in r) == pytest.approx(1.0)
    assert ndcg_at_k(["a", "T"], "T") == pytest.approx(1 / math.log2(3)) and ndcg_at_k(["a"] * 10 + ["T"], "T") == 0


def test_toolrl_components_match_calls_order_free():
    gold = [
        {"name": "popular_items", "arguments": {"genre": "War", "k": 3}},
        {"name": "popular_items", "arguments": {"genre": "Comedy", "k": 3}},
    ]
    exact = [
        Call("popular_items", {"genre": "Comedy", "k": 3}, True),
        Call("popular_items", {"genre": "war", "k": 3}, True),
    ]
    assert match_calls(exact, gold) == {"format": 1.0, "name": 1.0, "param_name": 1.0, "param_value": 1.0}
    partial = [Call("popular_items", {"genre": "War", "k": 5}, True)]
    m = match_calls(partial, gold)
    assert m == {"format": 1.0, "name": 1.0, "param_name": 0.5, "param_value": 0.25}
    wrong = [Call("search_items", None, False)]
    assert match_calls(wrong, gold) == {"format": 0.0, "name": 0.0, "param_name": 0.0, "param_value": 0.0}
    w = RewardWeights(success=0.0, format=1.0, name=1.0, param_name=1.0, param_value=1.0)
    r = step_rewards([Step(partial)], w, gold_calls=gold)
    assert r[0].total == pytest.approx(1 + 1 + 0.5 + 0.25)
