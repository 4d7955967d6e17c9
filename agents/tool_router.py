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
carry what those requests ask for whatever their words. A number the request likens its wish to ("films similar to
183", "stuff like item 96") is a slot of its own: the synthesizer writes "similar to" before titles (a look-up comes
first) as well as before ids, so words and a bare number sent both requests to ``get_item``.

A router fit with answers also has a reply head: the same features, its classes the tools and ``ANSWER`` (every
assistant turn that calls nothing), fit on every assistant turn, so it tells a call from an answer
(:meth:`ToolRouter.reply`). After a tool result the policy chose that badly: the shipped adapter answered in words
where a second call was due ("rank them for me" after a filter) on 51 of 281 validation call turns, 6 with the
reply head deciding (``benchmarks/results/policy_checkpoints_router_chain.json``), whose top class picks call or
answer right on 518 of the 527 turns after a result in synth4v's validation dialogs. After a user message it decides
only an answer it is sure of (chit-chat), since there the model's own choice is mostly right.

A tool it never saw counts as the core tool whose training schemas its description words match
(:meth:`ToolRouter.reading`, cosine at least ``SCHEMA_MATCH``): renamed variants keep their descriptions' words
("Browse the catalog by genre and era"), distractors ("Buy a copy of a movie") do not.

A router fit with saves also has a save head: the same features and the called (core) tool as one more, fit
on the call turns of tools that can save their result, whether the call saves it (``save_as``) for a later tool.
The policy mixed that up both ways: a ranking for a user saved a pool of 20 that nothing read ("which of #382,
#193, #436 would I like most?"), a search to be ranked by taste ("got ten movies? rank them for me") returned ten
and saved nothing (:meth:`ToolRouter.saves`; the grammar then requires or drops the call's save argument).

A call of a tool variant is read as its core tool's where the router saw that variant in training (``aliases``), as
its training turns were: by its own name the previous call was a word the router never learnt.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

ROUTER_FILE = "tool_router.npz"
ANSWER = "(answer)"  # the class of assistant turns that call no tool (no function name has brackets)
# cosine of a tool's description words to a core tool's, from which an unseen tool counts as that tool; on synth4v's
# validation dialogs renamed variants score 0.7 and more, distractor tools (no core) 0.3 and less
SCHEMA_MATCH = 0.5
_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # sklearn's default token_pattern
_SPACES = re.compile(r"\s\s+")  # sklearn's white-space normaliser for char_wb
# a number a request likens its wish to ("films similar to 183", "stuff like item 96", "same vein as ids: 3 & 9"): an
# item id, not a count. After "like" only an item word, "#" or "[" makes the number an id ("i'd like 5", "like 5 more",
# "like top 5" are counts); after "similar to" and its kin a bare number is one too. The number ends the clause or is
# followed by a word that cannot be its noun ("like 5 horror movies", "like 12 angry men" are no ids); titles with a
# number ("like Apollo 13") have no item word before it.
_ITEM_WORD = r"(?:the\s+)?(?:(?:movie|film|book|album|track|song|item|title|number|numer)s?|ids?:?|no\.|with)"
_LIKENED_ID = re.compile(
    r"(?i:\b(?:similar(?:\s+\w+)?\s+to|close\s+to|akin\s+to|reminiscent\s+of|in\s+the\s+style\s+of|same\s+vein\s+as"
    rf"|lines\s+of)\s+(?:{_ITEM_WORD}\s*)*|\blike\s+(?:{_ITEM_WORD}\s*)+(?=[#\[\d])|\blike\s+(?=[#\[]))"
    r"[#\[]?(\d+)\]?(?=\s*$|\s*[^\w\s]|\s+(?i:and|or|pls|plz|please|thanks|thank|thx|too|as|then|again|but|from|for)\b)"
)


@dataclass(frozen=True)
class Turn:
    """One message as the router reads it: its role, its text and the tools it called (assistant turns)."""

    role: str
    content: str
    calls: tuple[str, ...] = ()


def schema_text(schema: Mapping) -> str:
    """The words an OpenAI tool schema describes its tool with: its description and its parameters'."""
    f = schema.get("function", schema)
    props = (f.get("parameters") or {}).get("properties") or {}
    return " ".join(
        [f.get("description") or ""] + [v.get("description") or "" for v in props.values() if isinstance(v, dict)]
    )


def request_slots(text: str) -> list[str]:
    """Words naming what a request's text holds, whatever it words it with: ``slot_genre`` per genre it wants,
    ``slot_nogenre`` per genre it does not (or wants less of), ``slot_year`` when it bounds release years (a year
    in brackets is a title's), ``slot_number`` per other number (an id or a count, in digits or words) and
    ``slot_likeid`` when it likens its wish to an item by id, which the other slots cannot tell from a title
    ("films similar to 183": a similar-items search, where "films similar to Heat" looks the title up first)."""
    from recagent.agents.call_ids import (  # langchain-core: only routers with slots
        DECADE,
        TITLE_YEAR,
        numbers_in,
        years_in,
    )
    from recagent.agents.genre_mentions import GENRE_STEMS, genre_mentions

    text = TITLE_YEAR.sub(" ", text)
    genres = genre_mentions(text, list(GENRE_STEMS))
    years = years_in(text)
    others = [n for n in numbers_in(DECADE.sub(" ", text.lower())) if int(n) not in years]  # "90s" is no id
    return (
        ["slot_genre"] * len(genres.wanted)
        + ["slot_nogenre"] * len(genres.unwanted + genres.soft)
        + ["slot_year"] * bool(years)
        + ["slot_number"] * len(others)
        + ["slot_likeid"] * any(int(n) not in years for n in _LIKENED_ID.findall(text))
    )


def sure_of(p: float, sure: float) -> bool | None:
    """True where probability ``p`` is at least ``sure``, False where it is at most 1 - ``sure``, else None."""
    return True if p >= sure else False if p <= 1.0 - sure else None


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
    """A fitted linear tool classifier over one or more feature blocks: one weight row per tool, and the names; with
    answers a second head over the same features whose classes are the tools and ``ANSWER``."""

    blocks: list[FeatureBlock]
    coef: np.ndarray  # (n_tools, sum of the blocks' features), blocks side by side
    intercept: np.ndarray  # (n_tools,)
    tools: list[str]
    slots: bool = False  # its features include the request's slots (router_text(..., slots=True))
    aliases: dict[str, str] = field(default_factory=dict)  # training's tool variants -> the core tool they rename
    reply_coef: np.ndarray | None = None  # (n_reply_classes, n_features): call-or-answer head; None = none
    reply_intercept: np.ndarray | None = None
    reply_classes: list[str] = field(default_factory=list)  # the tools and ANSWER
    schema_block: FeatureBlock | None = None  # words of the tool schemas seen in training (schema_text)
    schema_vectors: np.ndarray | None = None  # (n_schemas, its features), L2-normalised, one per seen schema
    schema_cores: list[str] = field(default_factory=list)  # the core tool each of those schemas is
    save_coef: np.ndarray | None = None  # (n_features,): does the call save its result? None = no save head
    save_tool_coef: dict[str, float] = field(default_factory=dict)  # its weight of the called (core) tool
    save_intercept: float = 0.0

    def reading(self, schemas: Iterable[Mapping]) -> ToolRouter:
        """This router reading the offered ``schemas``: a tool it never saw whose description words match a core
        tool's seen in training (cosine >= ``SCHEMA_MATCH``) counts as that tool (ranked, allowed and read as a
        previous call as it)."""
        if self.schema_block is None:
            return self
        known = set(self.tools) | set(self.aliases)
        matched = {}
        for schema in schemas:
            name = schema.get("function", schema).get("name")
            if name and name not in known and (core := self.match(schema)):
                matched[name] = core
        return replace(self, aliases=self.aliases | matched) if matched else self

    def match(self, schema: Mapping) -> str | None:
        """The core tool whose training schemas ``schema``'s words match best, if at ``SCHEMA_MATCH`` or more."""
        if self.schema_block is None or self.schema_vectors is None:
            return None
        idx, x = self.schema_block.vector(schema_text(schema))
        sims = self.schema_vectors[:, idx] @ x
        return self.schema_cores[int(sims.argmax())] if len(sims) and sims.max() >= SCHEMA_MATCH else None

    def text(self, turns: Sequence[Turn]) -> str:
        """The features this router reads for the call that follows ``turns``."""
        return router_text(turns, self.aliases, slots=self.slots)

    def scores(self, text: str) -> np.ndarray:
        """Linear scores of each tool for ``text`` (higher = likelier; a softmax gives sklearn's probabilities)."""
        return self._linear(self.coef, self.intercept, text)

    def _linear(self, coef: np.ndarray, intercept: np.ndarray, text: str) -> np.ndarray:
        out, offset = intercept.astype(np.float64), 0
        for block in self.blocks:
            idx, x = block.vector(text)
            out = out + coef[:, offset + idx].astype(np.float64) @ x
            offset += len(block.idf)
        return out

    def rank(self, text: str) -> list[str]:
        """The tools, likeliest first."""
        return [self.tools[i] for i in np.argsort(-self.scores(text), kind="stable")]

    def reply_probabilities(self, text: str) -> dict[str, float] | None:
        """The reply head's probabilities of each tool and of ``ANSWER`` (softmax); None for a router without one."""
        if self.reply_coef is None or self.reply_intercept is None:
            return None
        s = self._linear(self.reply_coef, self.reply_intercept, text)
        p = np.exp(s - s.max())
        return dict(zip(self.reply_classes, (p / p.sum()).tolist()))

    def reply(self, turns: Sequence[Turn], answer_p: float, call_p: float = 0.0) -> Literal["answer", "call"] | None:
        """What the turn after ``turns`` has to be where this router decides it: after a tool result a call or an
        answer, whichever the reply head's likeliest class is; after a user message an answer when answering has at
        least ``answer_p`` probability, a call when it has at most ``call_p``; else None (the policy chooses;
        always for a router without a reply head)."""
        p = self.reply_probabilities(self.text(turns)) if turns else None
        if p is None:
            return None
        if turns[-1].role == "tool":
            return "answer" if max(p, key=p.get) == ANSWER else "call"
        if p[ANSWER] >= answer_p:
            return "answer"
        return "call" if call_p > 0 and p[ANSWER] <= call_p else None  # 0: never, even where p rounds to 0

    def save_probability(self, turns: Sequence[Turn], tool: str) -> float | None:
        """The save head's probability that a call of ``tool`` after ``turns`` saves its result; None without one."""
        return None if self.save_coef is None else self.save_score(self.text(turns), tool)

    def save_score(self, text: str, tool: str) -> float:
        """The save head's probability for the router text ``text`` and a call of ``tool`` (a variant: its core)."""
        assert self.save_coef is not None
        score = self._linear(self.save_coef[None, :], np.array([self.save_intercept]), text)[0]
        score += self.save_tool_coef.get(self.aliases.get(tool, tool), 0.0)
        return float(1.0 / (1.0 + np.exp(-score)))

    def saves(self, turns: Sequence[Turn], tool: str, sure: float) -> bool | None:
        """Whether a call of ``tool`` after ``turns`` saves its result, where the save head is at least ``sure`` of
        it either way; else None (the policy chooses; always for a router without a save head)."""
        p = self.save_probability(turns, tool)
        return None if p is None else sure_of(p, sure)

    def knows(self, tool: str) -> bool:
        """Does the router judge this tool (one of its tools, or a name it reads as one, ``aliases``)?"""
        return self.aliases.get(tool, tool) in self.tools

    def second_request_tools(self, turns: Sequence[Turn], offered: Iterable[str], dated: Iterable[str]) -> set[str]:
        """The offered tools that are (or rename) the likeliest tool of the second request the last user message
        makes (:func:`~recagent.agents.call_ids.second_request`), read alone; where it bounds release years, the
        likeliest of those taking years (``dated``): no synthesized request asks for popular items by years alone,
        so read alone it went to popular_items, which cannot bound them. Empty where the message makes none."""
        from recagent.agents.call_ids import TITLE_YEAR, second_request, years_in

        request = second_request(turns[-1].content or "") if turns and turns[-1].role == "user" else None
        if request is None:
            return set()
        core = {t: self.aliases.get(t, t) for t in offered}
        if years_in(TITLE_YEAR.sub(" ", request)):
            dated = set(dated)
            core = {t: c for t, c in core.items() if t in dated}
        ranked = [t for t in self.rank(self.text([*turns[:-1], Turn("user", request)])) if t in core.values()]
        return {t for t, c in core.items() if ranked and c == ranked[0]}

    def allowed(self, turns: Sequence[Turn], offered: Iterable[str], k: int) -> set[str]:
        """The offered tools a call may name: those that are (or rename, ``aliases``) the router's k likeliest
        tools among the offered ones, and every tool it does not know (it cannot judge them)."""
        core = {t: self.aliases.get(t, t) for t in offered}
        top = [t for t in self.rank(self.text(turns)) if t in core.values()][:k]
        return {t for t, c in core.items() if c in top or not self.knows(t)}

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
            "alias_names": np.array(list(self.aliases), dtype=str),
            "alias_cores": np.array(list(self.aliases.values()), dtype=str),
        }
        if self.schema_block is not None and self.schema_vectors is not None:
            b = self.schema_block
            arrays |= {
                "schema_vocabulary": np.array(sorted(b.vocabulary, key=b.vocabulary.get), dtype=str),
                "schema_idf": b.idf.astype(np.float32),
                "schema_vectors": self.schema_vectors.astype(np.float32),
                "schema_cores": np.array(self.schema_cores, dtype=str),
            }
        if self.reply_coef is not None and self.reply_intercept is not None:
            arrays |= {
                "reply_coef": self.reply_coef.astype(np.float32),
                "reply_intercept": self.reply_intercept.astype(np.float32),
                "reply_classes": np.array(self.reply_classes, dtype=str),
            }
        if self.save_coef is not None:
            arrays |= {
                "save_coef": self.save_coef.astype(np.float32),
                "save_intercept": np.array(self.save_intercept),
                "save_tools": np.array(list(self.save_tool_coef), dtype=str),
                "save_tool_coef": np.array(list(self.save_tool_coef.values()), dtype=np.float64),
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
            files = set(z.files)  # routers saved before slots, aliases or a reply head have none
            reply = "reply_coef" in files
            return cls(
                blocks,
                z["coef"],
                z["intercept"].astype(np.float64),
                [str(t) for t in z["tools"]],
                slots=bool(z["slots"]) if "slots" in files else False,
                aliases=dict(zip(map(str, z["alias_names"]), map(str, z["alias_cores"])))
                if "alias_names" in files
                else {},
                reply_coef=z["reply_coef"] if reply else None,
                reply_intercept=z["reply_intercept"].astype(np.float64) if reply else None,
                reply_classes=[str(c) for c in z["reply_classes"]] if reply else [],
                **(_schemas_of(z) if "schema_vectors" in files else {}),
                save_coef=z["save_coef"] if "save_coef" in files else None,
                save_intercept=float(z["save_intercept"]) if "save_intercept" in files else 0.0,
                save_tool_coef=dict(zip(map(str, z["save_tools"]), map(float, z["save_tool_coef"])))
                if "save_tools" in files
                else {},
            )


def _schemas_of(z: Mapping[str, np.ndarray]) -> dict:
    """The schema matcher's fields of a loaded router file."""
    vocabulary = {str(w): j for j, w in enumerate(z["schema_vocabulary"])}
    return {
        "schema_block": FeatureBlock("word", (1, 1), vocabulary, z["schema_idf"].astype(np.float64)),
        "schema_vectors": z["schema_vectors"].astype(np.float64),
        "schema_cores": [str(c) for c in z["schema_cores"]],
    }


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
    "ANSWER",
    "ROUTER_FILE",
    "SCHEMA_MATCH",
    "FeatureBlock",
    "ToolRouter",
    "Turn",
    "analyze",
    "request_slots",
    "router_file",
    "router_text",
    "schema_text",
    "sure_of",
    "turns_of",
    "turns_of_messages",
]
