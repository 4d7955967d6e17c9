"""Evaluation metrics against hand-computed values on tiny lists, their edge cases, and one synthetic dataset."""

from __future__ import annotations

import math
import warnings
from collections import Counter

import numpy as np
import pytest

from recagent.evaluation.metrics import (
    average_popularity,
    bootstrap_ci,
    coverage,
    gini,
    group_gap,
    intra_list_diversity,
    long_tail,
    long_tail_share,
    novelty,
    paired_difference_ci,
    rank_of,
    summarise,
    utility,
)
from recagent.tools.data.synthetic import make_synthetic

NAN = float("nan")


def is_nan(x: float) -> bool:
    return isinstance(x, float) and math.isnan(x)


# --- utility ---------------------------------------------------------------------------------------------------------


def test_rank_of_first_occurrence_and_absent():
    assert rank_of(["a", "b", "c", "b"], "b") == 1
    assert rank_of(["a", "b"], "z") is None
    assert rank_of([], "a") is None
    with pytest.raises(TypeError, match="single string"):
        rank_of("abc", "b")


def test_utility_by_hand_at_position_two():
    u = utility(["x", "y", "t", "z"], "t", ks=(1, 3, 10))
    # rank 2: HR@1 = 0; HR@3 = HR@10 = 1; NDCG = 1/log2(2 + 2) = 0.5; MRR = 1/(2 + 1) = 1/3
    assert u == pytest.approx(
        {
            "HR@1": 0.0,
            "NDCG@1": 0.0,
            "MRR@1": 0.0,
            "HR@3": 1.0,
            "NDCG@3": 0.5,
            "MRR@3": 1 / 3,
            "HR@10": 1.0,
            "NDCG@10": 0.5,
            "MRR@10": 1 / 3,
        }
    )
    assert set(utility(["t"], "t")) == {f"{m}@{k}" for m in ("HR", "NDCG", "MRR") for k in (1, 5, 10)}


def test_utility_at_top_and_k_cut_off():
    assert utility(["t"], "t", ks=(1,)) == {"HR@1": 1.0, "NDCG@1": 1.0, "MRR@1": 1.0}  # 1/log2(2) = 1
    # rank 5 is the 6th slot: outside k=5, inside k=6 with NDCG = 1/log2(7), MRR = 1/6
    ranked = ["a", "b", "c", "d", "e", "t"]
    assert utility(ranked, "t", ks=(5,)) == {"HR@5": 0.0, "NDCG@5": 0.0, "MRR@5": 0.0}
    u6 = utility(ranked, "t", ks=(6,))
    assert u6["HR@6"] == 1.0 and u6["NDCG@6"] == pytest.approx(1 / math.log2(7)) and u6["MRR@6"] == pytest.approx(1 / 6)


def test_utility_target_absent_and_empty_list():
    zeros = {"HR@5": 0.0, "NDCG@5": 0.0, "MRR@5": 0.0}
    assert utility(["a", "b"], "t", ks=(5,)) == zeros
    assert utility([], "t", ks=(5,)) == zeros


def test_utility_duplicates_first_occurrence_counts_and_repeats_keep_their_slots():
    # The target's repeat earns nothing extra: rank 1 -> NDCG = 1/log2(3)
    assert utility(["a", "t", "t"], "t", ks=(3,))["NDCG@3"] == pytest.approx(1 / math.log2(3))
    # A repeated other item still occupies slot 1, so the target sits at rank 2 (NDCG 0.5) and falls out of k=2
    u = utility(["a", "a", "t"], "t", ks=(2, 3))
    assert u["HR@2"] == 0.0 and u["NDCG@3"] == pytest.approx(0.5) and u["MRR@3"] == pytest.approx(1 / 3)


def test_utility_rejects_bad_k():
    with pytest.raises(ValueError, match="positive integer"):
        utility(["a"], "a", ks=(0,))
    with pytest.raises(ValueError, match="positive integer"):
        utility(["a"], "a", ks=(2.5,))


# --- coverage, gini, popularity, long tail --------------------------------------------------------------------------


def test_coverage_by_hand():
    # distinct {a, b, c} of 6 items = 0.5; duplicates and repeats across lists count once
    assert coverage([["a", "b"], ["b", "c", "c"]], n_items=6) == pytest.approx(0.5)
    assert coverage([], n_items=3) == 0.0
    assert coverage([[], []], n_items=3) == 0.0
    with pytest.raises(ValueError, match="outside the catalog"):
        coverage([["a", "b", "c"]], n_items=2)
    with pytest.raises(ValueError, match="n_items"):
        coverage([["a"]], n_items=0)


def test_gini_even_is_zero_and_one_item_is_n_minus_one_over_n():
    catalog = ["a", "b", "c", "d"]
    assert gini([["a", "b"], ["c", "d"]], catalog) == pytest.approx(0.0)
    # counts sorted (0, 0, 0, 3): 2 * (4 * 3) / (4 * 3) - 5/4 = 3/4 = (n - 1)/n
    assert gini([["a"], ["a"], ["a"]], catalog) == pytest.approx(3 / 4)


def test_gini_by_hand_uneven_and_ignores_unknown_ids():
    # counts a=2, b=1, c=0 -> sorted (0, 1, 2); sum i*x = 1*0 + 2*1 + 3*2 = 8; 2*8/(3*3) - 4/3 = 16/9 - 12/9 = 4/9
    assert gini([["a", "b"], ["a", "ghost", "ghost"]], ["a", "b", "c"]) == pytest.approx(4 / 9)
    assert is_nan(gini([["ghost"], []], ["a", "b"]))  # nothing from the catalog recommended: undefined
    with pytest.raises(ValueError, match="empty"):
        gini([["a"]], [])
    with pytest.raises(ValueError, match="duplicate"):
        gini([["a"]], ["a", "a"])


def test_average_popularity_by_hand():
    pop = {"a": 10, "b": 2, "c": 0}
    # list 1: (10 + 2)/2 = 6; list 2: (0 + 0 [missing id])/2 = 0; the empty list is skipped -> (6 + 0)/2 = 3
    assert average_popularity([["a", "b"], ["c", "zz"], []], pop) == pytest.approx(3.0)
    # slot-based: a repeated item counts twice -> (10 + 10 + 2)/3
    assert average_popularity([["a", "a", "b"]], pop) == pytest.approx(22 / 3)
    assert is_nan(average_popularity([[]], pop))


def test_long_tail_by_hand_with_ties_broken_by_id():
    # total 10; 80% = 8. Order a(5), then b and c tie at 2 -> b before c by id: cumsum 5, 7, 9 -> head {a, b, c}
    pop = {"c": 2, "a": 5, "b": 2, "d": 1, "e": 0}
    assert long_tail(pop) == {"d", "e"}
    # 50% = 5 is reached by a alone
    assert long_tail(pop, head_share=0.5) == {"b", "c", "d", "e"}
    # 60% = 6: a (5) is not enough; the tie b/c resolves to b -> tail keeps c
    assert long_tail(pop, head_share=0.6) == {"c", "d", "e"}
    # all of the interactions: the head ends at the last item with a count; zero-count items stay tail
    assert long_tail(pop, head_share=1.0) == {"e"}


def test_long_tail_degenerate_and_bad_input():
    assert long_tail({"a": 0, "b": 0}) == {"a", "b"}
    assert long_tail({}) == set()
    with pytest.raises(ValueError, match="head_share"):
        long_tail({"a": 1}, head_share=0.0)
    with pytest.raises(ValueError, match="non-negative"):
        long_tail({"a": -1})


def test_long_tail_share_counts_slots():
    # 5 slots, tail items d, d, e -> 3/5
    assert long_tail_share([["a", "d"], ["d", "e", "b"]], {"d", "e"}) == pytest.approx(0.6)
    assert long_tail_share([["a"]], set()) == 0.0
    assert is_nan(long_tail_share([[], []], {"a"}))


# --- diversity and novelty -----------------------------------------------------------------------------------------


def test_intra_list_diversity_identical_disjoint_and_by_hand():
    genres = {"a": {"Action"}, "b": {"Action"}, "c": {"Comedy"}, "d": frozenset({"Action", "Comedy"}), "e": set()}
    assert intra_list_diversity(["a", "b"], genres) == 0.0
    assert intra_list_diversity(["a", "c"], genres) == 1.0
    # pairs: a-b 0; a-d 1 - 1/2 = 0.5; b-d 0.5 -> mean 1/3
    assert intra_list_diversity(["a", "b", "d"], genres) == pytest.approx(1 / 3)
    # two empty genre sets (one explicit, one missing id) are indistinguishable: distance 0; empty vs {Action}: 1
    assert intra_list_diversity(["e", "zz"], genres) == 0.0
    assert intra_list_diversity(["e", "a"], genres) == 1.0


def test_intra_list_diversity_undefined_below_two_items():
    assert is_nan(intra_list_diversity(["a"], {"a": {"Action"}}))
    assert is_nan(intra_list_diversity([], {}))


def test_novelty_formula_by_hand():
    pop = {"a": 3, "b": 0}
    # n_users 3: p(a) = 4/4 = 1 -> 0 bits; p(b) = 1/4 -> 2 bits; missing id also 2 bits
    assert novelty(["a"], pop, n_users=3) == pytest.approx(0.0)
    assert novelty(["b"], pop, n_users=3) == pytest.approx(2.0)
    assert novelty(["a", "b", "zz"], pop, n_users=3) == pytest.approx(4 / 3)  # (0 + 2 + 2)/3
    # n_users 7, count 1: p = 2/8 -> 2 bits; count 3: p = 4/8 -> 1 bit
    assert novelty(["x", "y"], {"x": 1, "y": 3}, n_users=7) == pytest.approx(1.5)
    assert is_nan(novelty([], pop, n_users=3))


def test_novelty_rejects_counts_beyond_users():
    with pytest.raises(ValueError, match="n_users"):
        novelty(["a"], {"a": 5}, n_users=3)
    with pytest.raises(ValueError, match="n_users"):
        novelty(["a"], {"a": 0}, n_users=0)


# --- fairness ------------------------------------------------------------------------------------------------------


def test_group_gap_split_sizes_and_means_by_hand():
    values = [1.0, 0.0, 0.5, 0.0, 0.2, 0.1, 0.3, 0.0, 0.0, 0.4]
    lengths = [50, 3, 40, 5, 10, 8, 7, 6, 4, 9]
    g = group_gap(values, lengths)
    # 20% of 10 users = 2 heavy: lengths 50 and 40 -> values 1.0, 0.5 -> 0.75; the other 8 sum 1.0 -> 0.125
    assert g == pytest.approx({"heavy": 0.75, "light": 0.125, "gap": 0.625, "n_heavy": 2.0, "n_light": 8.0})


def test_group_gap_at_least_one_heavy_and_stable_ties():
    # 20% of 3 floors to 0 -> at least 1 heavy; lengths tie, so the first user (value 1.0) is heavy
    g = group_gap([1.0, 0.0, 0.0], [5, 5, 5])
    assert g["n_heavy"] == 1.0 and g["n_light"] == 2.0 and g["heavy"] == 1.0 and g["light"] == 0.0
    # never every user: 2 users with heavy_share 0.9 -> 1 heavy, 1 light
    assert group_gap([1.0, 2.0], [1, 9], heavy_share=0.9) == pytest.approx(
        {"heavy": 2.0, "light": 1.0, "gap": 1.0, "n_heavy": 1.0, "n_light": 1.0}
    )


def test_group_gap_ties_keep_input_order_on_a_larger_population():
    # 150 users, every third (0, 3, ..., 147: 50 users) has the longest history; 20% = 30 heavy users, so the tie
    # among the 50 is resolved by input order: users 0, 3, ..., 87 -> mean index 3 * (0 + ... + 29) / 30 = 43.5
    lengths = [2 if u % 3 == 0 else 1 for u in range(150)]
    g = group_gap([float(u) for u in range(150)], lengths)
    assert g["n_heavy"] == 30.0 and g["heavy"] == pytest.approx(43.5)
    # the other 120 indices sum to 11175 - 1305 = 9870 -> 82.25
    assert g["light"] == pytest.approx(82.25) and g["gap"] == pytest.approx(43.5 - 82.25)


def test_group_gap_nan_values_are_left_out_of_means():
    g = group_gap([NAN, 1.0, 0.5, NAN], [9, 8, 1, 2], heavy_share=0.5)
    # heavy = users 0, 1 (mean of 1.0 only), light = users 3, 2 (mean of 0.5 only)
    assert g["heavy"] == 1.0 and g["light"] == 0.5 and g["n_heavy"] == 2.0


def test_group_gap_bad_input():
    with pytest.raises(ValueError, match="history_lengths"):
        group_gap([1.0, 2.0], [1])
    with pytest.raises(ValueError, match="at least 2 users"):
        group_gap([1.0], [1])
    with pytest.raises(ValueError, match="heavy_share"):
        group_gap([1.0, 2.0], [1, 2], heavy_share=1.0)


# --- bootstrap -----------------------------------------------------------------------------------------------------


def test_bootstrap_ci_contains_mean_and_is_deterministic_with_a_seed():
    values = [0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.5, 0.25, 0.75, 1.0]
    mean, low, high = bootstrap_ci(values, n_resamples=500, seed=3)
    assert mean == pytest.approx(0.55)  # 5.5 / 10
    assert low < mean < high and 0.0 <= low and high <= 1.0
    assert bootstrap_ci(values, n_resamples=500, seed=3) == (mean, low, high)
    assert bootstrap_ci(values, n_resamples=500, seed=4) != (mean, low, high)


def test_bootstrap_ci_shrinks_with_more_data():
    rng = np.random.default_rng(0)
    small = rng.binomial(1, 0.3, size=30).astype(float)
    large = rng.binomial(1, 0.3, size=3000).astype(float)
    _, lo_s, hi_s = bootstrap_ci(small, n_resamples=500)
    _, lo_l, hi_l = bootstrap_ci(large, n_resamples=500)
    # width scales like 1/sqrt(n): 100x the users -> about a tenth of the width
    assert hi_l - lo_l < 0.3 * (hi_s - lo_s)


def test_bootstrap_ci_degenerate_cases():
    assert all(is_nan(x) for x in bootstrap_ci([]))
    assert all(is_nan(x) for x in bootstrap_ci([NAN, NAN]))
    mean, low, high = bootstrap_ci([0.4, NAN])  # one value left after dropping NaN
    assert mean == 0.4 and is_nan(low) and is_nan(high)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bootstrap_ci([0.7, 0.7, 0.7]) == (0.7, 0.7, 0.7)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=1.0)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci([1.0, 2.0], n_resamples=0)


def test_bootstrap_ci_drops_nan_before_resampling():
    with_nan = bootstrap_ci([0.0, NAN, 1.0, 0.5, NAN, 0.25], n_resamples=200)
    assert with_nan == bootstrap_ci([0.0, 1.0, 0.5, 0.25], n_resamples=200)
    assert with_nan[0] == pytest.approx(0.4375)  # 1.75 / 4


def test_paired_difference_ci_constant_shift_is_the_shift():
    a = [0.1, 0.9, 0.4, 0.6, 0.3]
    b = [x - 0.25 for x in a]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean, low, high = paired_difference_ci(a, b)
    assert (mean, low, high) == pytest.approx((0.25, 0.25, 0.25))


def test_paired_difference_ci_is_tighter_than_unpaired_when_users_vary_a_lot():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.0, 1.0, size=200)
    b = base
    a = base + 0.05 + rng.normal(0.0, 0.01, size=200)
    mean, low, high = paired_difference_ci(a, b, n_resamples=500)
    assert low < mean < high and 0.0 < low and high < 0.1
    assert mean == pytest.approx(float(np.mean(a - b)))
    # the same shift judged from two unpaired CIs would overlap: per-user spread hides it
    _, lo_a, _ = bootstrap_ci(a, n_resamples=500)
    _, _, hi_b = bootstrap_ci(b, n_resamples=500)
    assert lo_a < hi_b


def test_paired_difference_ci_bad_input_and_nan_pairs():
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference_ci([1.0, 2.0], [1.0])
    # the pair with a NaN is dropped; the rest differ by exactly 1
    assert paired_difference_ci([2.0, NAN, 3.0], [1.0, 0.0, 2.0]) == (1.0, 1.0, 1.0)


def test_summarise_keys_and_counts_non_nan_values():
    s = summarise([0.0, 1.0, NAN, 0.5], n_resamples=200, seed=1)
    assert set(s) == {"mean", "ci_low", "ci_high", "n"}
    assert s["n"] == 3.0 and s["mean"] == pytest.approx(0.5)
    assert (s["mean"], s["ci_low"], s["ci_high"]) == bootstrap_ci([0.0, 1.0, 0.5], n_resamples=200, seed=1)


# --- on the synthetic dataset --------------------------------------------------------------------------------------


def test_metrics_separate_a_popularity_recommender_from_a_genre_recommender_on_synthetic_data():
    ds = make_synthetic(n_users=60, n_items=120, seed=0)
    ids = ds.items.ids
    inter = ds.interactions
    # every catalog item is in the mapping, so never-consumed items can land in the long tail
    popularity = dict.fromkeys(ids, 0) | Counter(ids[i] for i in inter.items.tolist())
    genres = {ids[i]: frozenset(ds.items.genres[i]) for i in range(len(ids))}
    n_users = len(ds.users.ids)
    k = 5

    top = [item for item, _ in sorted(popularity.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]
    pop_lists = [top] * n_users
    # one list per genre: its k least popular single-genre items (item i has genre i % 6, plus one if i % 5 == 0)
    by_genre = [[ids[i] for i in range(len(ids)) if i % 6 == g and i % 5] for g in range(6)]
    niche = [sorted(items, key=lambda it: (popularity.get(it, 0), it))[:k] for items in by_genre]
    niche_lists = [niche[u % 6] for u in range(n_users)]

    # m of n items recommended equally often, the rest never: sorted counts (0, ..., 0, c, ..., c) give
    # 2c * (sum of the top m ranks) / (n * m * c) - (n + 1)/n = (2n - m + 1)/n - (n + 1)/n = (n - m)/n
    # every user gets the same k = 5 items: coverage 5/120, Gini 115/120
    assert coverage(pop_lists, len(ids)) == pytest.approx(5 / 120)
    assert gini(pop_lists, ids) == pytest.approx(115 / 120)
    # 6 genre lists of 5 distinct items = 30 of 120 items, each list to 10 users: coverage 1/4, Gini 90/120
    assert coverage(niche_lists, len(ids)) == pytest.approx(30 / 120)
    assert gini(niche_lists, ids) == pytest.approx(90 / 120)
    assert all(intra_list_diversity(lst, genres) == 0.0 for lst in niche)
    assert average_popularity(niche_lists, popularity) < average_popularity(pop_lists, popularity)
    assert novelty(niche[0], popularity, n_users) > novelty(top, popularity, n_users)
    tail = long_tail(popularity)
    assert long_tail_share(niche_lists, tail) > long_tail_share(pop_lists, tail)
