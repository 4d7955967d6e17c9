"""A held-out test set of hand-written chat requests, its loader, and the check that keeps it out of training data.

The set (``recagent/data/chat_requests_ml100k.yaml``, installed with the package) holds requests
that new users of a movie recommender chat would type, each written by hand: casual, with typos,
ids written in several ways, lookups, negative constraints, requests about a given list, chit-chat
that needs no tool, and a few follow-ups given with the earlier turns. Every request says which
first tool calls are acceptable (the core tool and only the arguments that must match, or
``no_tool``) and, where the request states them, the constraints its recommended items must meet
(genres, years, unseen by a user, among given ids). ``recagent eval`` scores an agent on it
(``evaluation/chat_requests.py``).

Because the set measures how a policy handles requests it never saw, no text of it may reach
training data. :func:`find_request_leaks` compares user turns with the requests' texts after
:func:`normalise_text` (lower case; apostrophes and hyphens dropped, so "I'm"/"im" and
"sci-fi"/"scifi" agree; other punctuation and whitespace collapsed to one space) and reports:

- ``exact``: the normalised texts are equal;
- ``contains``: the turn holds the whole request (of at least :data:`NGRAM` words) as a word sequence,
  e.g. the request with a greeting in front;
- ``near``: the Jaccard similarity of their word 5-gram sets is at least :data:`NEAR_JACCARD` (0.6).

Why word 5-grams at 0.6: a copy that keeps most of the request's word order (a word added, dropped
or changed near either end, a trailing "please") keeps most of its 5-grams and scores 0.6-0.9,
while two different requests built on one template ("I'm looking for a comedy" / "I'm looking for
a drama") share few 5-grams, because one differing word breaks up to five of them: shorter n-grams
(3-grams) flag such template siblings as copies, and the synthesized training turns are template
siblings of many requests. Texts shorter than five words have no 5-gram and are matched exactly only.

A second hand-written set, the development requests (``recagent/data/chat_requests_dev_ml100k.yaml``),
exists to choose checkpoints in the words people write (``benchmarks/offline_policy.py
--chat-requests-file dev``); it is never trained on either, so the leak checks below cover both sets
(:func:`never_trained_on`), and no dev request copies a test request (tested).

The synthesis pipeline drops a dialog whose user turn leaks (counted in its report as skipped with
reason ``heldout_request``), SFT refuses such training rows, and ``recagent eval`` checks the
policy's training dialogs before it asks anything. This module is core: it imports nothing from the
tools, agents, synth, rl or evaluation parts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from recagent.config import describe_validation_error
from recagent.errors import ConfigError

PACKAGED_FILE = "chat_requests_ml100k.yaml"
DEV_FILE = "chat_requests_dev_ml100k.yaml"  # checkpoint choice only, never a reported score
NGRAM = 5
NEAR_JACCARD = 0.6


def _as_str_id(v: object) -> object:
    # ids are written as numbers or strings in YAML; both mean the same dataset id
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return str(v)
    return v


Id = Annotated[str, BeforeValidator(_as_str_id), Field(min_length=1, max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AcceptedCall(_Strict):
    """One acceptable first step: a call of core tool ``tool`` whose listed ``args`` match, or no tool call at all.

    ``args`` holds only the arguments that must match (a user id, genres, a title or query substring,
    year bounds, k...); the call may carry others.
    """

    tool: str | None = Field(None, min_length=1, description="core tool name (registry spelling)")
    args: dict[str, Any] = Field(default_factory=dict, description="key arguments that must match")
    no_tool: bool = Field(False, description="true: the right first step is to answer without any tool")

    @model_validator(mode="after")
    def _one_kind(self) -> AcceptedCall:
        if self.no_tool and (self.tool is not None or self.args):
            raise ValueError("an alternative is either no_tool: true or a tool with args, not both")
        if not self.no_tool and self.tool is None:
            raise ValueError("an alternative needs a tool name (or no_tool: true)")
        return self


class ItemConstraints(_Strict):
    """What every recommended item must satisfy, as the request states it (catalog metadata)."""

    genres_any: list[str] = Field(default_factory=list, description="the item has at least one of these genres")
    genres_all: list[str] = Field(default_factory=list, description="the item has every one of these genres")
    genres_none: list[str] = Field(default_factory=list, description="the item has none of these genres")
    year_min: int | None = Field(None, ge=1800, le=2100, description="released in or after this year")
    year_max: int | None = Field(None, ge=1800, le=2100, description="released in or before this year")
    unseen_by: Id | None = Field(None, description="not in this user's visible history")
    among: list[Id] = Field(default_factory=list, description="one of these given item ids")

    @model_validator(mode="after")
    def _consistent(self) -> ItemConstraints:
        if self.year_min is not None and self.year_max is not None and self.year_min > self.year_max:
            raise ValueError(f"year_min ({self.year_min}) is after year_max ({self.year_max})")
        clash = sorted(set(self.genres_none) & (set(self.genres_any) | set(self.genres_all)))
        if clash:
            raise ValueError(f"genres {clash} are both wanted and excluded")
        return self

    def is_empty(self) -> bool:
        """True when nothing is constrained."""
        return not (
            self.genres_any
            or self.genres_all
            or self.genres_none
            or self.among
            or self.year_min is not None
            or self.year_max is not None
            or self.unseen_by is not None
        )

    def genres(self) -> set[str]:
        """Every genre named in the constraints."""
        return {*self.genres_any, *self.genres_all, *self.genres_none}


class Turn(_Strict):
    """An earlier turn of the conversation, given as context."""

    role: Literal["user", "assistant"]
    text: str = Field(min_length=1)


class ChatRequest(_Strict):
    """One hand-written request: the message, optional earlier turns, acceptable first steps, constraints."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    text: str = Field(min_length=1, description="the user's message")
    kind: str | None = Field(None, description="what the request asks for (for per-kind results)")
    user_id: Id | None = Field(None, description="the dataset user the request (or its context) names, if any")
    context: list[Turn] = Field(default_factory=list, description="earlier turns, oldest first")
    accepted_first_calls: list[AcceptedCall] = Field(min_length=1)
    constraints: ItemConstraints = Field(default_factory=ItemConstraints)

    @model_validator(mode="after")
    def _check(self) -> ChatRequest:
        if any(a.no_tool for a in self.accepted_first_calls) and len(self.accepted_first_calls) > 1:
            raise ValueError("a no_tool request lists no tool alternatives")
        if self.context and self.context[-1].role != "assistant":
            raise ValueError("context must end with an assistant turn (the request is the next user turn)")
        return self

    @property
    def no_tool(self) -> bool:
        """True when the right first step is to answer without a tool."""
        return any(a.no_tool for a in self.accepted_first_calls)

    def referenced_ids(self) -> tuple[set[str], set[str]]:
        """(user ids, item ids) the request's accepted calls and constraints name."""
        users = {self.user_id} if self.user_id else set()
        items: set[str] = set(self.constraints.among)
        if self.constraints.unseen_by:
            users.add(self.constraints.unseen_by)
        for a in self.accepted_first_calls:
            for key, value in a.args.items():
                if key in ("user_id", "exclude_seen_by"):
                    users.add(str(value))
                elif key == "item_id":
                    items.add(str(value))
                elif key in ("item_ids", "history"):
                    items |= {str(v) for v in value}
        return users, items


def packaged_path(dev: bool = False) -> Path:
    """Path of the packaged test request set (``dev``: the development set)."""
    return Path(str(resources.files("recagent") / "data" / (DEV_FILE if dev else PACKAGED_FILE)))


def never_trained_on() -> list[ChatRequest]:
    """The packaged test and development requests: no training text may copy either."""
    return load_chat_requests() + load_chat_requests(packaged_path(dev=True))


def _entry_error(path: Path, i: int, entry: Any, err: ValidationError) -> ConfigError:
    name = entry.get("id") if isinstance(entry, dict) and entry.get("id") else f"#{i + 1}"
    return ConfigError(f"{path}: request {name}: " + describe_validation_error(err)[0])


def load_chat_requests(path: str | Path | None = None) -> list[ChatRequest]:
    """The requests of ``path`` (default: the packaged set), or a one-line :class:`ConfigError` naming the entry."""
    path = Path(path) if path is not None else packaged_path()
    if not path.is_file():
        raise ConfigError(f"chat request file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    entries = data.get("requests") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: expected a mapping with a non-empty 'requests' list")
    out: list[ChatRequest] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: request #{i + 1}: expected a mapping, got {type(entry).__name__}")
        try:
            req = ChatRequest.model_validate(entry)
        except ValidationError as e:
            raise _entry_error(path, i, entry, e) from None
        if req.id in seen:
            raise ConfigError(f"{path}: request {req.id}: the id is used twice")
        seen.add(req.id)
        out.append(req)
    return out


def requests_dataset(path: str | Path | None = None) -> str | None:
    """The dataset a request file is written for (its top-level ``dataset`` key)."""
    path = Path(path) if path is not None else packaged_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data.get("dataset") if isinstance(data, dict) else None


def check_against_catalog(
    requests: Iterable[ChatRequest], genres: Iterable[str], item_ids: Iterable[str], user_ids: Iterable[str]
) -> None:
    """Every genre, item id and user id the requests name exists in the dataset; else a one-line :class:`ConfigError`."""
    genres, items, users = set(genres), set(item_ids), set(user_ids)
    for r in requests:
        named = set(r.constraints.genres())
        for a in r.accepted_first_calls:
            for key in ("genres", "prefer_genres", "avoid_genres"):
                named |= set(a.args.get(key) or [])
            if a.args.get("genre"):
                named.add(a.args["genre"])
        bad = sorted(named - genres)
        if bad:
            raise ConfigError(f"request {r.id}: unknown genre(s) {bad}; catalog genres: {', '.join(sorted(genres))}")
        u, i = r.referenced_ids()
        if u - users:
            raise ConfigError(f"request {r.id}: unknown user id(s) {sorted(u - users)}")
        if i - items:
            raise ConfigError(f"request {r.id}: unknown item id(s) {sorted(i - items)}")


# -- leakage --------------------------------------------------------------------------------------------------------

_JOIN = re.compile(r"['’`\-]")
_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalise_text(text: str) -> str:
    """Lower case, apostrophes and hyphens dropped, any other run of non-alphanumerics one space."""
    return " ".join(_NON_WORD.sub(" ", _JOIN.sub("", text.lower())).split())


def shingles(tokens: list[str], n: int = NGRAM) -> set[tuple[str, ...]]:
    """The set of word n-grams of ``tokens`` (empty when shorter than n)."""
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


@dataclass(frozen=True)
class RequestLeak:
    """A text that copies a held-out request: which text (by position), which request, how, and how closely."""

    index: int  # position of the text in the checked sequence
    request_id: str
    kind: Literal["exact", "contains", "near"]
    score: float  # 1.0 for exact/contains, the 5-gram Jaccard for near

    def describe(self) -> str:
        """One line: ``copies held-out chat request ID (kind, score)``."""
        how = self.kind if self.kind != "near" else f"near copy, 5-gram Jaccard {self.score:.2f}"
        return f"copies held-out chat request {self.request_id} ({how})"


class RequestLeakIndex:
    """The held-out texts (default: :func:`never_trained_on`), indexed once for checking many texts against them."""

    def __init__(self, requests: Iterable[ChatRequest] | None = None, threshold: float = NEAR_JACCARD):
        requests = list(never_trained_on() if requests is None else requests)
        self.threshold = threshold
        self.exact: dict[str, str] = {}
        self.tokens: dict[str, list[str]] = {}
        self.grams: dict[str, set[tuple[str, ...]]] = {}
        self.by_gram: dict[tuple[str, ...], list[str]] = {}
        for r in requests:
            norm = normalise_text(r.text)
            if not norm:
                continue
            self.exact.setdefault(norm, r.id)
            self.tokens[r.id] = norm.split()
            self.grams[r.id] = shingles(self.tokens[r.id])
            for g in self.grams[r.id]:
                self.by_gram.setdefault(g, []).append(r.id)

    def match(self, text: str, index: int = 0) -> RequestLeak | None:
        """The strongest leak of one text (exact, then contains, then the nearest), or None."""
        norm = normalise_text(text) if isinstance(text, str) else ""
        if not norm:
            return None
        if norm in self.exact:
            return RequestLeak(index, self.exact[norm], "exact", 1.0)
        grams = shingles(norm.split())
        hits: dict[str, int] = {}
        for g in grams:
            for rid in self.by_gram.get(g, ()):
                hits[rid] = hits.get(rid, 0) + 1
        best: RequestLeak | None = None
        padded = f" {norm} "
        for rid, shared in sorted(hits.items()):
            mine = self.grams[rid]
            if shared == len(mine) and f" {' '.join(self.tokens[rid])} " in padded:
                return RequestLeak(index, rid, "contains", 1.0)
            jaccard = shared / len(mine | grams)
            if jaccard >= self.threshold and (best is None or jaccard > best.score):
                best = RequestLeak(index, rid, "near", round(jaccard, 4))
        return best

    def find(self, texts: Iterable[str]) -> list[RequestLeak]:
        """Every text of ``texts`` that leaks a request (its strongest match each)."""
        return [leak for i, t in enumerate(texts) if (leak := self.match(t, i)) is not None]


def find_request_leaks(texts: Iterable[str], requests: Iterable[ChatRequest] | None = None) -> list[RequestLeak]:
    """Texts (user turns) that copy a held-out request exactly, contain it, or nearly copy it (default: the test and
    development sets)."""
    return RequestLeakIndex(requests).find(texts)


def first_row_leak(
    rows: Iterable[dict[str, Any]], requests: Iterable[ChatRequest] | None = None
) -> tuple[int, RequestLeak] | None:
    """The first training row (1-based line) whose user turn copies a held-out request, and the leak; None if none."""
    index = RequestLeakIndex(requests)
    for line, row in enumerate(rows, 1):
        for text in user_turns(row.get("messages") or []):
            leak = index.match(text)
            if leak is not None:
                return line, leak
    return None


def user_turns(messages: Iterable[dict[str, Any]]) -> list[str]:
    """The text of every user turn of an OpenAI-format conversation."""
    out = []
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, list):  # content parts
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            if isinstance(content, str):
                out.append(content)
    return out
