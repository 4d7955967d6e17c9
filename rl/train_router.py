"""Fit the tool router (:mod:`recagent.agents.tool_router`) on a synthesis run's training dialogs.

scikit-learn fits it (TF-IDF over words and word pairs, multinomial logistic regression); the router keeps only
the fitted arrays. Every call turn of ``train.jsonl`` is one example: its features are the user turns so far and
the previous call's tools (:func:`~recagent.agents.tool_router.router_text`), its label the first tool it calls,
with renamed variants mapped to their core tool (the router judges the core tools only). With ``answers`` every
assistant turn that calls nothing is an example too, labelled ``ANSWER``, so the router tells a call from an
answer. With ``saves`` a save head learns, from the call turns of tools that can save, whether the call does.
The training rows pass
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

from recagent.agents.tool_router import (
    ANSWER,
    ROUTER_FILE,
    FeatureBlock,
    ToolRouter,
    Turn,
    router_text,
    schema_text,
    sure_of,
    turns_of,
)
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
        description="add the request's slots (genres wanted or not, years, other numbers, an item id it likens its "
        "wish to: "
        "recagent.agents.tool_router.request_slots) to its words, so that wordings the synthesizer never used "
        "still route by what they ask for. Chosen on the development requests (router top-1 72 vs 67 of 76, "
        "benchmarks/results/router_dev_requests.json; validation call turns 0.991 either way)",
    )

    answers: bool = Field(
        True,
        description="also learn from the assistant turns that call nothing, so the router tells a call from an answer "
        "(policy.router_reply). Validation turns after a tool result: call or answer right on 518 of 527 (synth4v)",
    )

    saves: bool = Field(
        True,
        description="also learn whether a call saves its result for a later tool (policy.router_save_p): the "
        "grammar then requires or drops the call's save argument",
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
    return {name: v.get("core") or name for name, v in _variants_of(row).items()}


def offered_tools(rows: list[dict[str, Any]]) -> set[str]:
    """Every tool the rows offer (variants as their core tool), called or not."""
    names = set()
    for row in rows:
        core = core_tool_names(row)
        names |= {core.get(n, n) for t in row.get("tools") or [] if (n := t.get("function", {}).get("name"))}
    return names


def call_examples(
    rows: list[dict[str, Any]], slots: bool = False, answers: bool = False
) -> tuple[list[str], list[str]]:
    """(features, label) of every call turn in ``rows``: the text before it and the first tool it calls (core);
    with ``answers`` also of every turn that calls nothing, labelled ``ANSWER``."""
    texts, labels = [], []
    for row, turns, i in _assistant_turns(rows, answers):
        core = core_tool_names(row)
        texts.append(router_text(turns[:i], core, slots))
        labels.append(core.get(turns[i].calls[0], turns[i].calls[0]) if turns[i].calls else ANSWER)
    return texts, labels


def save_examples(rows: list[dict[str, Any]], slots: bool = False) -> tuple[list[str], list[str], list[bool]]:
    """(features, core tool, saves) of every call turn in ``rows`` whose first call's tool can save its result:
    the router's text, the tool it calls and whether that call saves its result."""
    from recagent.agents.policies.grammar import saves_result

    texts, tools, labels = [], [], []
    for row, turns, i in _assistant_turns(rows, False):
        core = core_tool_names(row)
        call = row["messages"][i]["tool_calls"][0]["function"]  # turns_of keeps one turn per message
        schema = next((t["function"] for t in row.get("tools") or [] if t["function"]["name"] == call["name"]), {})
        params = [k for k, v in (schema.get("parameters") or {}).get("properties", {}).items() if saves_result(v)]
        if not params:
            continue
        args = json.loads(call["arguments"]) if isinstance(call["arguments"], str) else call["arguments"]
        texts.append(router_text(turns[:i], core, slots))
        tools.append(core.get(call["name"], call["name"]))
        labels.append(any(args.get(p) for p in params))
    return texts, tools, labels


def _assistant_turns(rows: list[dict[str, Any]], answers: bool) -> Iterable[tuple[dict[str, Any], list[Turn], int]]:
    """(row, its turns, index) of each assistant turn that calls a tool (or, with ``answers``, any)."""
    for row in rows:
        turns = turns_of(row["messages"])
        for i, turn in enumerate(turns):
            if turn.role == "assistant" and (turn.calls or answers):
                yield row, turns, i


def schema_scores(router: ToolRouter, rows: list[dict[str, Any]], train: list[dict[str, Any]]) -> dict[str, str]:
    """How :meth:`ToolRouter.match` places tools it never saw, judged on ``rows``' renamed variants and distractors
    by a matcher fit on the core tools' own schemas in ``train`` alone: validation dialogs offer no variant that
    training did not, so their variants stand in for unseen ones."""
    from dataclasses import replace

    core_only = core_schemas(train, variants=False)
    blind = replace(router, **fit_schema_matcher(core_only))
    placed: dict[str, tuple[str | None, str | None]] = {}
    for row in rows:
        variants = _variants_of(row)
        for tool in row.get("tools") or []:
            name = tool.get("function", {}).get("name")
            core = variants[name].get("core") if name in variants else name
            if core != name:  # a renamed variant (its core) or a distractor (None)
                placed[name] = (core, blind.match(tool))
    renamed = [(core, read) for core, read in placed.values() if core]
    distractors = [read for core, read in placed.values() if not core]
    return {
        "variants_read_as_their_core": f"{sum(c == r for c, r in renamed)} of {len(renamed)}",
        "distractors_read_as_a_tool": f"{sum(r is not None for r in distractors)} of {len(distractors)}",
    }


def reply_scores(
    router: ToolRouter, rows: list[dict[str, Any]], answer_p: float, call_p: float = 0.0
) -> dict[str, Any]:
    """How :meth:`ToolRouter.reply` decides the assistant turns of ``rows``: after a tool result the share it
    gets right (call or answer); after a user message the answers and calls it decides, and those it gets wrong."""
    after_result = right = answers = answered = calls = lost = made_calls = called_wrongly = 0
    for row, turns, i in _assistant_turns(rows, True):
        reading = router.reading(row.get("tools") or [])
        decided, called = reading.reply(turns[:i], answer_p, call_p), bool(turns[i].calls)
        if turns[i - 1].role == "tool":
            after_result += 1
            right += (decided == "call") == called
        elif called:
            calls += 1
            lost += decided == "answer"
            made_calls += decided == "call"
        else:
            answers += 1
            answered += decided == "answer"
            called_wrongly += decided == "call"
    return {
        "after_result_right": right / max(after_result, 1),
        "after_result_turns": after_result,
        "after_user_answers_decided": f"{answered} of {answers}",
        "after_user_calls_answered": f"{lost} of {calls}",
        "after_user_calls_decided": f"{made_calls} of {calls}",
        "after_user_answers_called": f"{called_wrongly} of {answers}",
        "answer_p": answer_p,
        "call_p": call_p,
    }


def save_scores(router: ToolRouter, rows: list[dict[str, Any]], sure: float, slots: bool) -> dict[str, Any]:
    """How :meth:`ToolRouter.saves` decides the call turns of ``rows`` whose tool can save: the share it decides
    (at least ``sure`` either way) and the share of those it gets right."""
    texts, tools, labels = save_examples(rows, slots)
    decided = right = 0
    for row_text, tool, saved in zip(texts, tools, labels):
        says = sure_of(router.save_score(row_text, tool), sure)
        decided += says is not None
        right += says is saved
    return {"turns": len(labels), "decided": decided, "decided_right": right, "save_p": sure}


def fit_router(
    texts: list[str],
    labels: list[str],
    cfg: RouterJobConfig,
    never_called: Iterable[str] = (),
    aliases: dict[str, str] | None = None,
    schemas: dict[str, str] | None = None,
    saves: tuple[list[str], list[str], list[bool]] | None = None,
) -> ToolRouter:
    """A router fit on (features, label) examples; ``never_called`` tools (offered in training, never called) rank
    after every called one, so the grammar does not fall back on a tool the policy never learnt to call. Examples
    labelled ``ANSWER`` fit the reply head only: the tool head learns from call turns alone, so the tools it ranks
    are never crowded by answers. ``saves`` (texts, core tools, labels: :func:`save_examples`) fit the save head."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    specs = [("word", cfg.word_ngrams)] + ([("char_wb", cfg.char_ngrams)] if cfg.char_ngrams else [])
    vecs = [TfidfVectorizer(analyzer=a, ngram_range=n, min_df=cfg.min_df, sublinear_tf=True) for a, n in specs]
    features = hstack([v.fit_transform(texts) for v in vecs]).tocsr()
    y = np.array(labels)
    calls = y != ANSWER
    clf = LogisticRegression(max_iter=3000, C=cfg.C).fit(features[calls], y[calls])
    reply = LogisticRegression(max_iter=3000, C=cfg.C).fit(features, y) if not calls.all() else None
    tools = [str(c) for c in clf.classes_]
    extra = sorted(set(never_called) - set(tools))
    save, save_tools = None, []
    if saves and len(set(saves[2])) == 2:  # the same features and a one-hot of the called (core) tool
        from scipy.sparse import csr_matrix

        save_tools = sorted(set(saves[1]))
        onehot = csr_matrix(
            (np.ones(len(saves[1])), ([*range(len(saves[1]))], [save_tools.index(t) for t in saves[1]])),
            shape=(len(saves[1]), len(save_tools)),
        )
        save_features = hstack([*(v.transform(saves[0]) for v in vecs), onehot]).tocsr()
        save = LogisticRegression(max_iter=3000, C=cfg.C).fit(save_features, np.array(saves[2]))
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
        aliases=dict(aliases or {}),
        reply_coef=reply.coef_ if reply is not None else None,
        reply_intercept=reply.intercept_ if reply is not None else None,
        reply_classes=[str(c) for c in reply.classes_] if reply is not None else [],
        **(fit_schema_matcher(schemas) if schemas else {}),
        save_coef=save.coef_[0, : features.shape[1]] if save is not None else None,
        save_tool_coef=dict(zip(save_tools, save.coef_[0, features.shape[1] :].tolist())) if save is not None else {},
        save_intercept=float(save.intercept_[0]) if save is not None else 0.0,
    )


def core_schemas(rows: list[dict[str, Any]], variants: bool = True) -> dict[str, str]:
    """The description words (:func:`schema_text`) of each tool schema ``rows`` offer that is (or, with
    ``variants``, renames) a core tool -> that core tool; distractors (no core) are left out."""
    out: dict[str, str] = {}
    for row in rows:
        renamed = _variants_of(row)
        for tool in row.get("tools") or []:
            name = tool.get("function", {}).get("name")
            core = renamed[name].get("core") if name in renamed else name
            if core and (variants or core == name):
                out.setdefault(schema_text(tool), core)
    return out


def _variants_of(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A synthesized row's tool variants by name (renamed core tools and distractors)."""
    variants = (row.get("meta") or {}).get("tool_variants") or {}
    return json.loads(variants) if isinstance(variants, str) else variants


def fit_schema_matcher(schemas: dict[str, str]) -> dict[str, Any]:
    """The router's schema fields (``ToolRouter.reading``): word TF-IDF over the training schemas' words, one
    L2-normalised vector per schema and its core tool."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = list(schemas)
    vec = TfidfVectorizer(sublinear_tf=True)
    vectors = vec.fit_transform(texts).toarray()
    return {
        "schema_block": FeatureBlock("word", (1, 1), {w: int(i) for w, i in vec.vocabulary_.items()}, vec.idf_),
        "schema_vectors": vectors,
        "schema_cores": [schemas[t] for t in texts],
    }


def variant_aliases(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Tool variant name -> the core tool it renames, over ``rows`` (a name that renames two core tools: dropped),
    so that the router reads a call of a variant seen in training as its core tool's."""
    seen: dict[str, set[str]] = {}
    for row in rows:
        for name, core in core_tool_names(row).items():
            if name != core:
                seen.setdefault(name, set()).add(core)
    return {name: next(iter(cores)) for name, cores in sorted(seen.items()) if len(cores) == 1}


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
    texts, labels = call_examples(train, cfg.slots, cfg.answers)
    if len(set(labels) - {ANSWER}) < 2:
        tools = len(set(labels) - {ANSWER})
        raise SFTDataError(f"{data / 'train.jsonl'} has call turns of {tools} tool(s); a router needs 2+")
    router = fit_router(
        texts,
        labels,
        cfg,
        never_called=offered_tools(train),
        aliases=variant_aliases(train),
        schemas=core_schemas(train),
        saves=save_examples(train, cfg.slots) if cfg.saves else None,
    )
    out = Path(cfg.output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    router.save(out / ROUTER_FILE)
    answers = labels.count(ANSWER)
    scores: dict[str, Any] = {
        "train_call_turns": len(texts) - answers,
        "features": sum(len(b.idf) for b in router.blocks),
    }
    if cfg.answers:
        scores["train_answer_turns"] = answers
    if (data / "validation.jsonl").is_file():
        validation = _read_rows(data / "validation.jsonl")
        vt, vl = call_examples(validation, cfg.slots)
        served = [
            router.reading(row.get("tools") or []).text(turns[:i])
            for row, turns, i in _assistant_turns(validation, False)
        ]
        scores |= {
            "validation_call_turns": len(vt),
            **{f"validation_top{k}": accuracy(router, vt, vl, k) for k in (1, 2)},
            # as served: a variant's calls read by the router's aliases (training's variants) and schema matches,
            # not by the data's map
            "validation_top1_served": accuracy(router, served, vl, 1),
            "validation_unseen_tools": schema_scores(router, validation, train),
        }
        if cfg.answers:
            from recagent.agents.config import PolicyConfig

            served = PolicyConfig()
            scores["validation_reply"] = reply_scores(router, validation, served.router_answer_p, served.router_call_p)
        if cfg.saves and router.save_coef is not None:
            from recagent.agents.config import PolicyConfig

            scores["validation_saves"] = save_scores(router, validation, PolicyConfig().router_save_p, cfg.slots)
    (out / "router_config.yaml").write_text(
        yaml.safe_dump({**cfg.model_dump(mode="json"), "scores": scores}, sort_keys=False)
    )
    return out / ROUTER_FILE


__all__ = [
    "RouterJobConfig",
    "accuracy",
    "call_examples",
    "core_schemas",
    "core_tool_names",
    "fit_schema_matcher",
    "fit_router",
    "offered_tools",
    "reply_scores",
    "save_examples",
    "save_scores",
    "schema_scores",
    "train_router",
    "variant_aliases",
]
