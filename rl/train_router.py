"""Fit the tool router (:mod:`recagent.agents.tool_router`) on a synthesis run's training dialogs.

scikit-learn fits it (TF-IDF over words and word pairs, multinomial logistic regression); the router keeps only
the fitted arrays. Every call turn of ``train.jsonl`` is one example: its features are the user turns so far and
the previous call's tools (:func:`~recagent.agents.tool_router.router_text`), its label the first tool it calls,
with renamed variants mapped to their core tool (the router judges the core tools only). The training rows pass
the SFT data's leakage checks first (test and validation dialogs, held-out chat requests). Accuracy is reported on
the run's ``validation.jsonl`` call turns, never on its test split.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import Field, field_validator

from recagent.agents.tool_router import ROUTER_FILE, FeatureBlock, ToolRouter, router_text, turns_of
from recagent.config import JobConfig


class RouterJobConfig(JobConfig):
    """Fitting a tool router: the data, the features and the regularisation."""

    data_dir: str = Field(..., description="folder of a synthesis run (train.jsonl, validation.jsonl, test.jsonl)")
    output_dir: str = Field(..., description="folder to write tool_router.npz and router_config.yaml into")
    word_ngrams: tuple[int, int] = Field((1, 2), description="shortest and longest word n-grams used as features")
    char_ngrams: tuple[int, int] | None = Field(
        (3, 5),
        description="shortest and longest character n-grams inside words (plurals, misspellings); None = none. "
        "Chosen on validation call turns: words alone 0.972 top-1, with characters 0.991 (synth4v)",
    )
    min_df: int = Field(2, ge=1, description="drop n-grams seen in fewer training call turns than this")
    C: float = Field(10.0, gt=0, description="inverse L2 strength of the logistic regression")
    slots: bool = Field(
        True,
        description="add the request's slots (genres wanted or not, years, other numbers: "
        "recagent.agents.tool_router.request_slots) to its words, so that wordings the synthesizer never used "
        "still route by what they ask for. Chosen on the development requests (router top-1 72 vs 67 of 76, "
        "benchmarks/results/router_dev_requests.json; validation call turns 0.991 either way)",
    )

    @field_validator("word_ngrams", "char_ngrams")
    @classmethod
    def _ngram_range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 1 <= value[0] <= value[1] <= 8:
            raise ValueError(
                f"an n-gram range is [shortest, longest] with 1 <= shortest <= longest <= 8, got {list(value)}"
            )
        return value


def core_tool_names(row: dict[str, Any]) -> dict[str, str]:
    """A synthesized row's offered tool names -> the core tool each renames (a distractor: its own name)."""
    variants = (row.get("meta") or {}).get("tool_variants") or {}
    if isinstance(variants, str):
        variants = json.loads(variants)
    return {name: v.get("core") or name for name, v in variants.items()}


def offered_tools(rows: list[dict[str, Any]]) -> set[str]:
    """Every tool the rows offer (variants as their core tool), called or not."""
    names = set()
    for row in rows:
        core = core_tool_names(row)
        names |= {core.get(n, n) for t in row.get("tools") or [] if (n := t.get("function", {}).get("name"))}
    return names


def call_examples(rows: list[dict[str, Any]], slots: bool = False) -> tuple[list[str], list[str]]:
    """(features, label) of every call turn in ``rows``: the text before it and the first tool it calls (core)."""
    texts, labels = [], []
    for row in rows:
        core, turns = core_tool_names(row), turns_of(row["messages"])
        for i, turn in enumerate(turns):
            if turn.role == "assistant" and turn.calls:
                texts.append(router_text(turns[:i], core, slots))
                labels.append(core.get(turn.calls[0], turn.calls[0]))
    return texts, labels


def fit_router(
    texts: list[str], labels: list[str], cfg: RouterJobConfig, never_called: Iterable[str] = ()
) -> ToolRouter:
    """A router fit on (features, label) examples; ``never_called`` tools (offered in training, never called) rank
    after every called one, so the grammar does not fall back on a tool the policy never learnt to call."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    specs = [("word", cfg.word_ngrams)] + ([("char_wb", cfg.char_ngrams)] if cfg.char_ngrams else [])
    vecs = [TfidfVectorizer(analyzer=a, ngram_range=n, min_df=cfg.min_df, sublinear_tf=True) for a, n in specs]
    features = hstack([v.fit_transform(texts) for v in vecs]).tocsr()
    clf = LogisticRegression(max_iter=3000, C=cfg.C).fit(features, labels)
    tools = [str(c) for c in clf.classes_]
    extra = sorted(set(never_called) - set(tools))
    return ToolRouter(
        blocks=[
            FeatureBlock(a, tuple(n), {w: int(i) for w, i in v.vocabulary_.items()}, v.idf_)
            for (a, n), v in zip(specs, vecs)
        ],
        coef=np.vstack([clf.coef_, np.zeros((len(extra), clf.coef_.shape[1]))]),
        # far below any called tool's score: unit-norm feature blocks move a score by at most its weights' sum
        intercept=np.concatenate([clf.intercept_, np.full(len(extra), -(1e3 + np.abs(clf.coef_).sum()))]),
        tools=tools + extra,
        slots=cfg.slots,
    )


def accuracy(router: ToolRouter, texts: list[str], labels: list[str], k: int = 1) -> float:
    """Share of examples whose label is among the router's k likeliest tools."""
    hits = sum(label in router.rank(text)[:k] for text, label in zip(texts, labels))
    return hits / max(len(texts), 1)


def train_router(cfg: RouterJobConfig) -> Path:
    """Fit, check on validation, and write the router with its config and scores beside it."""
    from recagent.rl.sft import SFTDataError, _read_rows, check_no_leakage

    data = Path(cfg.data_dir).expanduser()
    if not (data / "train.jsonl").is_file():
        raise SFTDataError(f"{data} has no train.jsonl: is it a synthesis run's folder (recagent synth --out DIR)?")
    train = _read_rows(data / "train.jsonl")
    test = _read_rows(data / "test.jsonl") if (data / "test.jsonl").is_file() else []
    check_no_leakage(data, train, test)
    texts, labels = call_examples(train, cfg.slots)
    if len(set(labels)) < 2:
        raise SFTDataError(f"{data / 'train.jsonl'} has call turns of {len(set(labels))} tool(s); a router needs 2+")
    router = fit_router(texts, labels, cfg, never_called=offered_tools(train))
    out = Path(cfg.output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    router.save(out / ROUTER_FILE)
    scores: dict[str, Any] = {"train_call_turns": len(texts), "features": sum(len(b.idf) for b in router.blocks)}
    if (data / "validation.jsonl").is_file():
        vt, vl = call_examples(_read_rows(data / "validation.jsonl"), cfg.slots)
        scores |= {
            "validation_call_turns": len(vt),
            **{f"validation_top{k}": accuracy(router, vt, vl, k) for k in (1, 2)},
        }
    (out / "router_config.yaml").write_text(
        yaml.safe_dump({**cfg.model_dump(mode="json"), "scores": scores}, sort_keys=False)
    )
    return out / ROUTER_FILE


__all__ = [
    "RouterJobConfig",
    "accuracy",
    "call_examples",
    "core_tool_names",
    "fit_router",
    "offered_tools",
    "train_router",
]
