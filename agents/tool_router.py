"""A bag-of-words tool router: ranks the tools a turn's words ask for, so the policy's grammar offers only the top k.

Why: the trained 135M policy names the wrong tool in most of its failed first calls on the hand-written
development requests (genre-and-decade asks sent to ``search_items``, genre words sent to ``get_item`` as titles),
while the words alone tell the tool: a linear classifier on the synthesized training dialogs names the gold tool of
0.991 of the validation call turns (``benchmarks/results/tool_router_config.yaml``). ToolLLM-style API retrievers
narrow the tool set the same way; here the prompt still shows every tool (as trained) and only the call grammar
narrows the names. Offered its top tool only, the shipped adapter's first calls on the hand-written development
requests went from 0.566 to 0.632 right (``benchmarks/results/dev_requests_router.md``).

The classifier is fit with scikit-learn (``recagent.rl.train_router``); scoring is written out here in numpy
because it is a dot product: sklearn's analyzers (words and word pairs; character n-grams inside words, which
read plurals and misspellings), sublinear term frequency times idf, L2 norm per vectorizer, linear scores.
Keeping sklearn out of the serving path keeps the file plain arrays (``.npz``, loaded without pickle); a test
checks these scores equal sklearn's on real synthesized turns.

Features of a call turn (:func:`router_text`): every user message so far, and a ``previous_<tools>`` word naming
the last call's tools (``previous_none`` before any call, ``previous_answered`` after an answer), because what was
just called decides much of what comes next (a filter is followed by a ranking, a history by a retrieval).

A router fit with slots (``slots`` in its file) also reads :func:`request_slots` of the last user message: words
for what the request holds (a genre wanted or not, a year bound, another number), read by the rules the call
grammar uses (:mod:`~recagent.agents.genre_mentions`, :mod:`~recagent.agents.call_ids`). Words alone sent
requests people wrote in words the synthesizer never used to the wrong tool ("90s horror, the cheesier the better",
"anything except horror" and "user three hundred and ten wants a mystery" to ``get_item`` as titles); the slots
carry what those requests ask for whatever their words.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

ROUTER_FILE = "tool_router.npz"
_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # sklearn's default token_pattern
_SPACES = re.compile(r"\s\s+")  # sklearn's white-space normaliser for char_wb
_TITLE_YEAR = re.compile(r"\(\d{4}\)")


@dataclass(frozen=True)
class Turn:
    """One message as the router reads it: its role, its text and the tools it called (assistant turns)."""

    role: str
    content: str
    calls: tuple[str, ...] = ()


def request_slots(text: str) -> list[str]:
    """Words naming what a request's text holds, whatever it words it with: ``slot_genre`` per genre it wants,
    ``slot_nogenre`` per genre it does not (or wants less of), ``slot_year`` when it bounds release years (a year
    in brackets is a title's) and ``slot_number`` per other number (an id or a count, in digits or words)."""
    from recagent.agents.call_ids import DECADE, numbers_in, years_in  # langchain-core: only routers with slots
    from recagent.agents.genre_mentions import GENRE_STEMS, genre_mentions

    text = _TITLE_YEAR.sub(" ", text)  # "Ben-Hur (1959)" names a film, not a release-year bound
    genres = genre_mentions(text, list(GENRE_STEMS))
    years = years_in(text)
    others = [n for n in numbers_in(DECADE.sub(" ", text.lower())) if int(n) not in years]  # "90s" is no id
    return (
        ["slot_genre"] * len(genres.wanted)
        + ["slot_nogenre"] * len(genres.unwanted + genres.soft)
        + ["slot_year"] * bool(years)
        + ["slot_number"] * len(others)
    )


def router_text(turns: Sequence[Turn], core: Mapping[str, str] | None = None, slots: bool = False) -> str:
    """The features of the call that follows ``turns``: the user messages so far and the previous call's tools,
    and with ``slots`` the :func:`request_slots` of the last user message.

    ``core`` maps tool variants to the core tool they rename (training data); unknown names stay as they are.
    """
    core = core or {}
    users, previous = [], "none"
    for t in turns:
        if t.role == "user":
            users.append(t.content or "")
        elif t.role == "assistant" and t.calls:
            previous = "_".join(sorted({core.get(n, n) for n in t.calls}))
        elif t.role == "assistant":
            previous = "answered"  # the words after a result: the next call starts a new request
    request = " ".join(request_slots(users[-1])) + " " if slots and users else ""
    return f"previous_{previous} {request}" + " || ".join(users)


def analyze(text: str, analyzer: str = "word", ngram: tuple[int, int] = (1, 2)) -> list[str]:
    """sklearn's analyzers: ``word`` (lower-cased tokens of 2+ word characters and their n-grams) or ``char_wb``
    (character n-grams inside each whitespace-separated word, padded with a space each side)."""
    text = text.lower()
    lo, hi = ngram
    if analyzer == "word":
        tokens = _TOKEN.findall(text)
        return [" ".join(tokens[i : i + n]) for n in range(lo, hi + 1) for i in range(len(tokens) - n + 1)]
    grams = []
    for w in _SPACES.sub(" ", text).split():
        w = f" {w} "
        for n in range(lo, hi + 1):
            if len(w) <= n:  # a short word counts once, whole
                grams.append(w)
                break
            grams += [w[i : i + n] for i in range(len(w) - n + 1)]
    return grams


@dataclass
class FeatureBlock:
    """One TF-IDF vectorizer's fitted state: its analyzer, n-gram range, vocabulary and idf weights."""

    analyzer: Literal["word", "char_wb"]
    ngram: tuple[int, int]
    vocabulary: dict[str, int]
    idf: np.ndarray  # (n_features,)

    def vector(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The L2-normalised sublinear TF-IDF vector of ``text`` as (feature indices, values)."""
        counts = Counter(
            j for g in analyze(text, self.analyzer, self.ngram) if (j := self.vocabulary.get(g)) is not None
        )
        idx = np.fromiter(counts, dtype=np.int64, count=len(counts))
        x = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))) * self.idf[idx]
        norm = np.linalg.norm(x)
        return idx, (x / norm if norm else x)


@dataclass
class ToolRouter:
    """A fitted linear tool classifier over one or more feature blocks: one weight row per tool, and the names."""

    blocks: list[FeatureBlock]
    coef: np.ndarray  # (n_tools, sum of the blocks' features), blocks side by side
    intercept: np.ndarray  # (n_tools,)
    tools: list[str]
    slots: bool = False  # its features include the request's slots (router_text(..., slots=True))

    def text(self, turns: Sequence[Turn]) -> str:
        """The features this router reads for the call that follows ``turns``."""
        return router_text(turns, slots=self.slots)

    def scores(self, text: str) -> np.ndarray:
        """Linear scores of each tool for ``text`` (higher = likelier; a softmax gives sklearn's probabilities)."""
        out, offset = self.intercept.astype(np.float64), 0
        for block in self.blocks:
            idx, x = block.vector(text)
            out = out + self.coef[:, offset + idx].astype(np.float64) @ x
            offset += len(block.idf)
        return out

    def rank(self, text: str) -> list[str]:
        """The tools, likeliest first."""
        return [self.tools[i] for i in np.argsort(-self.scores(text), kind="stable")]

    def allowed(self, turns: Sequence[Turn], offered: Iterable[str], k: int) -> set[str]:
        """The offered tools a call may name: the router's k likeliest among those it knows, and every tool it does
        not know (a renamed variant keeps its place, since the router cannot judge it)."""
        offered = set(offered)
        known = [t for t in self.rank(self.text(turns)) if t in offered]
        return (offered - set(self.tools)) | set(known[:k])

    def save(self, path: str | Path) -> Path:
        """Write the router as plain arrays (``np.load`` reads it without pickle)."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {
            "coef": self.coef.astype(np.float32),
            "intercept": self.intercept.astype(np.float32),
            "tools": np.array(self.tools, dtype=str),
            "analyzers": np.array([b.analyzer for b in self.blocks], dtype=str),
            "ngrams": np.array([b.ngram for b in self.blocks], dtype=np.int64).reshape(-1, 2),
            "slots": np.array(self.slots),
        }
        for i, b in enumerate(self.blocks):
            arrays[f"vocabulary{i}"] = np.array(sorted(b.vocabulary, key=b.vocabulary.get), dtype=str)
            arrays[f"idf{i}"] = b.idf.astype(np.float32)
        np.savez_compressed(path, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ToolRouter:
        """Read a router written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            blocks = [
                FeatureBlock(
                    analyzer=str(a),  # type: ignore[arg-type]
                    ngram=(int(lo), int(hi)),
                    vocabulary={str(w): j for j, w in enumerate(z[f"vocabulary{i}"])},
                    idf=z[f"idf{i}"].astype(np.float64),
                )
                for i, (a, (lo, hi)) in enumerate(zip(z["analyzers"], z["ngrams"]))
            ]
            slots = bool(z["slots"]) if "slots" in z.files else False  # routers saved before slots had none
            return cls(blocks, z["coef"], z["intercept"].astype(np.float64), [str(t) for t in z["tools"]], slots)


def turns_of(messages: Sequence[Mapping]) -> list[Turn]:
    """Router turns of OpenAI-format messages (a synthesized row's ``messages``)."""
    return [
        Turn(
            m.get("role", ""),
            m["content"] if isinstance(m.get("content"), str) else "",
            tuple(c["function"]["name"] for c in m.get("tool_calls") or []),
        )
        for m in messages
    ]


def turns_of_messages(messages: Sequence[object]) -> list[Turn]:
    """Router turns of langchain-core messages, converted to OpenAI format by langchain-core as training rows are."""
    from langchain_core.messages import convert_to_openai_messages

    return turns_of(convert_to_openai_messages(list(messages)))


def router_file(folder: str | Path | None) -> Path | None:
    """The router saved beside an adapter in ``folder``, or None when it has none."""
    if folder is None:
        return None
    path = Path(folder) / ROUTER_FILE
    return path if path.is_file() else None


__all__ = [
    "ROUTER_FILE",
    "FeatureBlock",
    "ToolRouter",
    "Turn",
    "analyze",
    "request_slots",
    "router_file",
    "router_text",
    "turns_of_messages",
]
