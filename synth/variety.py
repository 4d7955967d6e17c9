"""How varied the synthesized user turns are, per plan, and how close they come to a set of test requests.

A policy trained on template text learns the templates; these numbers say how much text
variety a synthesis run really has, so every run reports them (:mod:`recagent.synth.report`).

- **distinct-n** (Li et al., 2016): distinct n-grams / all n-grams over a group of texts, for
  n = 1, 2, 3. Texts are lower-cased and split into words (letters, digits, apostrophes), so
  capitalisation alone never counts as variety, a misspelt word does.
- **distinct texts**: how many different user-turn strings a group has.
- **overlap with test requests** (e.g. hand-written requests a model is evaluated on): the
  share of the test set's distinct 4-grams that occur anywhere in the synthesized user turns,
  and per test request the highest word-set Jaccard similarity to any synthesized turn
  (its nearest neighbour); the mean and the maximum of those are reported.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

_TOKEN = re.compile(r"[a-z0-9']+")


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens ('I'm user #42!' -> ["i'm", 'user', '42'])."""
    return _TOKEN.findall(text.lower())


def ngrams(toks: list[str], n: int) -> list[tuple[str, ...]]:
    """The n-grams of a token list, in order."""
    return [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct n-grams over all n-grams of ``texts`` (0.0 when they hold no n-gram)."""
    grams = [g for t in texts for g in ngrams(tokens(t), n)]
    return round(len(set(grams)) / len(grams), 4) if grams else 0.0


def variety(texts: list[str]) -> dict[str, Any]:
    """Turns, distinct texts and distinct-1/2/3 of a group of user turns."""
    return {
        "turns": len(texts),
        "distinct_texts": len({t.strip() for t in texts}),
        **{f"distinct_{n}": distinct_n(texts, n) for n in (1, 2, 3)},
    }


def _meta(row: Any) -> tuple[list[dict[str, Any]], str]:
    """(messages, plan) of a JSONL row or a :class:`~recagent.synth.sample.Sample`."""
    if isinstance(row, dict):
        meta = row.get("meta") or {}
        extra = meta.get("extra") or {}
        extra = json.loads(extra) if isinstance(extra, str) else extra
        return row.get("messages") or [], extra.get("plan") or meta.get("kind") or "?"
    return row.messages, row.extra.get("plan") or row.kind


def user_turns(rows: Iterable[Any], first_only: bool = False) -> dict[str, list[str]]:
    """User-turn texts per plan (the plan a dialog was generated from, else its kind); ``first_only``: the requests."""
    out: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        messages, plan = _meta(row)
        said = [str(m.get("content") or "") for m in messages if m.get("role") == "user"]
        out[plan] += said[:1] if first_only else said
    return dict(out)


def overlap(synth_texts: list[str], test_texts: list[str], n: int = 4) -> dict[str, Any]:
    """How much of ``test_texts`` the synthesized turns cover: shared n-grams and nearest-neighbour Jaccard.

    ``share_ngrams``: distinct test n-grams that occur in the synthesized turns / distinct test
    n-grams. ``per_request_max_jaccard``: for each test text, the highest Jaccard similarity of
    its word set with any synthesized turn's word set; ``mean_max_jaccard`` and ``max_jaccard``
    summarise it.
    """
    synth_grams = {g for t in synth_texts for g in ngrams(tokens(t), n)}
    test_grams = {g for t in test_texts for g in ngrams(tokens(t), n)}
    sets = list({frozenset(tokens(t)) for t in synth_texts if tokens(t)})
    index: dict[str, list[int]] = defaultdict(list)
    for j, s in enumerate(sets):
        for w in s:
            index[w].append(j)
    per_request = []
    for t in test_texts:
        a = set(tokens(t))
        inter = Counter(j for w in a for j in index.get(w, ()))
        best = max((c / (len(a) + len(sets[j]) - c) for j, c in inter.items()), default=0.0)
        per_request.append(round(best, 4))
    return {
        "test_requests": len(test_texts),
        f"test_{n}grams": len(test_grams),
        "share_ngrams": round(len(test_grams & synth_grams) / len(test_grams), 4) if test_grams else 0.0,
        "mean_max_jaccard": round(sum(per_request) / len(per_request), 4) if per_request else 0.0,
        "max_jaccard": max(per_request, default=0.0),
        "per_request_max_jaccard": per_request,
    }


def load_test_requests() -> list[str] | None:
    """The hand-written chat requests of :mod:`recagent.heldout_requests`, or None where that module is absent."""
    try:
        from recagent.heldout_requests import load_chat_requests  # type: ignore[import-not-found]
    except ImportError:
        return None
    texts = []
    for r in load_chat_requests():
        if isinstance(r, str):
            texts.append(r)
        elif isinstance(r, dict):
            texts.append(str(r.get("text") or r.get("request") or r.get("content") or ""))
        else:
            texts.append(str(getattr(r, "text", None) or getattr(r, "request", None) or r))
    return [t for t in texts if t.strip()]


def report(rows: list[Any], test_texts: list[str] | None = None) -> dict[str, Any]:
    """Variety of every user turn, of the opening requests and per plan; the overlap with ``test_texts`` when given."""
    per_plan = user_turns(rows)
    requests = [t for ts in user_turns(rows, first_only=True).values() for t in ts]
    every = [t for ts in per_plan.values() for t in ts]
    out: dict[str, Any] = {
        "all_user_turns": variety(every),
        "requests": variety(requests),
        "per_plan": {plan: variety(ts) for plan, ts in sorted(per_plan.items())},
    }
    if test_texts:
        ov = overlap(every, test_texts)
        ov.pop("per_request_max_jaccard")
        out["test_overlap"] = ov
    return out
