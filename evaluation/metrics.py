"""Recommendation metrics over ranked lists of item ids: utility, beyond-utility, fairness and bootstrap CIs.

Every function is pure and works on plain id lists (``Sequence[str]``), so the same code scores a
conventional recommender, an agent's final answer, or a hand-built case in a test
(tests/test_eval_metrics.py checks each against hand arithmetic).

Why hand-written: utility for a single held-out target is a position lookup, and the beyond-utility
metrics (coverage, Gini, long tail, intra-list diversity, novelty) have several textbook variants that
differ in tie-breaking, smoothing and duplicate handling; writing them out pins one variant per metric
and documents it here. Array arithmetic uses numpy and the confidence intervals use
``scipy.stats.bootstrap``; nothing else is reimplemented.

Conventions:

* A list is scored slot by slot as given: a repeated id occupies a slot (so an agent cannot gain by
  repeating itself) and counts again in the slot-based metrics (popularity, long tail, Gini, novelty,
  diversity). Utility is the exception: only the first occurrence of the target counts.
* Per-list metrics that are undefined for a list (diversity of fewer than 2 items, novelty of an empty
  list) return ``nan``; aggregate them with ``numpy.nanmean`` or :func:`summarise`, which drops NaNs.
* Ids outside the catalog (hallucinations) are measured elsewhere; :func:`gini` ignores them and
  :func:`coverage` rejects them because it only knows the catalog's size.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import cache

import numpy as np
from scipy import stats

from recagent.ranking import ndcg


def _check_list(ranked: Sequence[str], name: str = "ranked") -> None:
    # A bare string is a Sequence[str] too, and scoring its characters is always a caller bug.
    if isinstance(ranked, str):
        raise TypeError(f"{name} must be a sequence of item ids, not a single string ({ranked!r})")


def _check_lists(lists: Sequence[Sequence[str]]) -> None:
    _check_list(lists, "lists")  # type: ignore[arg-type]
    for i, ranked in enumerate(lists):
        _check_list(ranked, f"lists[{i}]")


def _mean_or_nan(values: Sequence[float] | np.ndarray) -> float:
    # np.nanmean warns on an all-NaN or empty input; an undefined mean is simply nan here.
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else float("nan")


def rank_of(ranked: Sequence[str], target: str) -> int | None:
    """0-based position of the first occurrence of ``target`` in ``ranked``, or None if absent."""
    _check_list(ranked)
    for pos, item in enumerate(ranked):
        if item == target:
            return pos
    return None


def utility(ranked: Sequence[str], target: str, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """HR@k, NDCG@k and MRR@k of one ranked list against one held-out target, for every k in ``ks``.

    With a single relevant item IDCG is 1, so NDCG@k = 1/log2(rank + 2) (:func:`recagent.ranking.ndcg`) and
    MRR@k = 1/(rank + 1) when the target is within the first k slots, else 0. Only the target's first
    occurrence counts; a duplicate of another item still occupies its slot.
    """
    for k in ks:
        if int(k) != k or k < 1:
            raise ValueError(f"every k in ks must be a positive integer, got {k!r}")
    rank = rank_of(ranked, target)
    out: dict[str, float] = {}
    for k in ks:
        hit = rank is not None and rank < k
        out[f"HR@{k}"] = 1.0 if hit else 0.0
        out[f"NDCG@{k}"] = ndcg(rank, k)
        out[f"MRR@{k}"] = 1.0 / (rank + 1) if hit else 0.0
    return out


def coverage(lists: Sequence[Sequence[str]], n_items: int) -> float:
    """Share of the ``n_items`` catalog items recommended at least once across ``lists``."""
    if n_items < 1:
        raise ValueError(f"n_items must be at least 1, got {n_items}")
    _check_lists(lists)
    distinct = {item for ranked in lists for item in ranked}
    if len(distinct) > n_items:
        raise ValueError(
            f"lists hold {len(distinct)} distinct ids but the catalog has only n_items={n_items}: "
            "remove ids outside the catalog first"
        )
    return len(distinct) / n_items


def gini(lists: Sequence[Sequence[str]], catalog_ids: Sequence[str]) -> float:
    """Gini index of recommendation counts over the catalog: 0 = perfectly even, (n-1)/n = one item only.

    Never-recommended catalog items count as 0; ids outside ``catalog_ids`` are ignored. Uses the sorted
    cumulative form G = 2 * sum_i(i * x_(i)) / (n * sum(x)) - (n + 1) / n with x ascending and i from 1.
    Returns nan when nothing in the catalog was recommended (the index is undefined for all-zero counts).
    """
    _check_lists(lists)
    _check_list(catalog_ids, "catalog_ids")
    n = len(catalog_ids)
    if n == 0:
        raise ValueError("catalog_ids is empty")
    if len(set(catalog_ids)) != n:
        raise ValueError("catalog_ids contains duplicate ids")
    counts = Counter(item for ranked in lists for item in ranked)
    x = np.sort(np.array([counts.get(item, 0) for item in catalog_ids], dtype=np.float64))
    total = x.sum()
    if total == 0:
        return float("nan")
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(2.0 * np.dot(i, x) / (n * total) - (n + 1) / n)


def average_popularity(lists: Sequence[Sequence[str]], popularity: Mapping[str, int]) -> float:
    """Mean over non-empty lists of the mean training popularity of each list's items (missing ids count 0).

    Empty lists have no items to average and are skipped; nan if every list is empty.
    """
    _check_lists(lists)
    per_list = [float(np.mean([popularity.get(item, 0) for item in ranked])) for ranked in lists if len(ranked)]
    return _mean_or_nan(per_list)


def long_tail(popularity: Mapping[str, int], head_share: float = 0.8) -> set[str]:
    """Items outside the short head: the head is the fewest most-popular items holding ``head_share`` of interactions.

    Items are ranked by count descending, ties by id ascending (deterministic), and the head is the shortest
    prefix whose cumulative count reaches ``head_share`` of the total (the usual 80/20 split). With no
    interactions at all there is no head and every item is tail.
    """
    if not 0.0 < head_share <= 1.0:
        raise ValueError(f"head_share must be in (0, 1], got {head_share}")
    negative = [item for item, count in popularity.items() if count < 0]
    if negative:
        raise ValueError(f"popularity counts must be non-negative; negative for {sorted(negative)[:5]}")
    order = sorted(popularity, key=lambda item: (-popularity[item], item))
    counts = np.array([popularity[item] for item in order], dtype=np.float64)
    total = counts.sum()
    if total == 0:
        return set(order)
    n_head = int(np.searchsorted(np.cumsum(counts), head_share * total, side="left")) + 1
    return set(order[n_head:])


def long_tail_share(lists: Sequence[Sequence[str]], tail: set[str]) -> float:
    """Share of recommended slots, over all lists, holding a long-tail item; nan if there are no slots."""
    _check_lists(lists)
    slots = [item for ranked in lists for item in ranked]
    if not slots:
        return float("nan")
    return sum(item in tail for item in slots) / len(slots)


def intra_list_diversity(ranked: Sequence[str], genres: Mapping[str, frozenset[str] | set[str]]) -> float:
    """Mean pairwise Jaccard distance between the genre sets of a list's items; nan for fewer than 2 items.

    Distance is 1 - |A & B| / |A | B|, and 0 for two empty sets (nothing tells them apart); ids missing from
    ``genres`` have the empty set. Aggregate per-list values with ``numpy.nanmean`` or :func:`summarise`.
    """
    _check_list(ranked)
    sets = [frozenset(genres.get(item, ())) for item in ranked]
    if len(sets) < 2:
        return float("nan")
    distances = []
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            union = len(sets[i] | sets[j])
            distances.append(1.0 - len(sets[i] & sets[j]) / union if union else 0.0)
    return float(np.mean(distances))


def novelty(ranked: Sequence[str], popularity: Mapping[str, int], n_users: int) -> float:
    """Mean self-information -log2(p) of a list's items, p = (count + 1) / (n_users + 1); nan for an empty list.

    ``popularity`` counts the training users who interacted with each item (missing ids count 0). The +1
    smoothing keeps never-seen items finite (-log2(1 / (n_users + 1))) instead of infinite.
    """
    _check_list(ranked)
    if n_users < 1:
        raise ValueError(f"n_users must be at least 1, got {n_users}")
    if not ranked:
        return float("nan")
    counts = np.array([popularity.get(item, 0) for item in ranked], dtype=np.float64)
    bad = [item for item, c in zip(ranked, counts) if c < 0 or c > n_users]
    if bad:
        raise ValueError(f"popularity must count users, between 0 and n_users={n_users}; out of range for {bad[:5]}")
    return float(np.mean(-np.log2((counts + 1.0) / (n_users + 1.0))))


def group_gap(values: Sequence[float], history_lengths: Sequence[int], heavy_share: float = 0.2) -> dict[str, float]:
    """Mean metric of heavy vs light users and their gap; heavy = the ``heavy_share`` with the longest histories.

    The heavy group has floor(heavy_share * n) users, at least 1 and at most n - 1 so both groups exist;
    equal history lengths keep their input order (stable sort). NaN values are left out of the means but
    the users still count in ``n_heavy``/``n_light``.
    """
    n = len(values)
    if len(history_lengths) != n:
        raise ValueError(f"values has {n} entries but history_lengths has {len(history_lengths)}")
    if n < 2:
        raise ValueError(f"group_gap needs at least 2 users, got {n}")
    if not 0.0 < heavy_share < 1.0:
        raise ValueError(f"heavy_share must be in (0, 1), got {heavy_share}")
    # The epsilon keeps e.g. 0.29 * 100 = 28.999999999999996 from flooring to 28.
    n_heavy = min(n - 1, max(1, int(heavy_share * n + 1e-9)))
    order = np.argsort(-np.asarray(history_lengths, dtype=np.float64), kind="stable")
    vals = np.asarray(values, dtype=np.float64)
    heavy, light = _mean_or_nan(vals[order[:n_heavy]]), _mean_or_nan(vals[order[n_heavy:]])
    return {
        "heavy": heavy,
        "light": light,
        "gap": heavy - light,
        "n_heavy": float(n_heavy),
        "n_light": float(n - n_heavy),
    }


@cache
def _rng_keyword() -> str:
    # scipy >= 1.15 takes `rng=` and deprecates `random_state=`; the project supports scipy >= 1.11.
    return "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"


def _check_bootstrap_args(n_resamples: int, confidence: float) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _percentile_ci(arr: np.ndarray, n_resamples: int, confidence: float, seed: int) -> tuple[float, float, float]:
    if arr.size < 2:
        return (float(arr[0]) if arr.size else float("nan")), float("nan"), float("nan")
    if np.all(arr == arr[0]):
        # Every resample has the same mean; scipy would warn about degenerate data for no information, and
        # arr.mean() could differ from the value in the last bit.
        v = float(arr[0])
        return v, v, v
    mean = float(arr.mean())
    res = stats.bootstrap(
        (arr,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        **{_rng_keyword(): np.random.default_rng(seed)},
    )
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high)


def bootstrap_ci(
    values: Sequence[float], n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap CI of the mean over users; NaNs dropped, nan bounds under 2 values."""
    _check_bootstrap_args(n_resamples, confidence)
    arr = np.asarray(values, dtype=np.float64).ravel()
    return _percentile_ci(arr[~np.isnan(arr)], n_resamples, confidence, seed)


def paired_difference_ci(
    a: Sequence[float], b: Sequence[float], n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high) of a - b per user with a paired bootstrap CI: the same users are resampled for both.

    Bootstrapping the per-user differences is exactly the paired bootstrap; users with a NaN in either
    ``a`` or ``b`` are dropped.
    """
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    _check_bootstrap_args(n_resamples, confidence)
    diff = np.asarray(a, dtype=np.float64).ravel() - np.asarray(b, dtype=np.float64).ravel()
    return _percentile_ci(diff[~np.isnan(diff)], n_resamples, confidence, seed)


def summarise(
    values: Sequence[float], n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """{"mean", "ci_low", "ci_high", "n"} of per-user values via :func:`bootstrap_ci`; n counts non-NaN values."""
    mean, low, high = bootstrap_ci(values, n_resamples=n_resamples, confidence=confidence, seed=seed)
    n = int(np.count_nonzero(~np.isnan(np.asarray(values, dtype=np.float64))))
    return {"mean": mean, "ci_low": low, "ci_high": high, "n": float(n)}
