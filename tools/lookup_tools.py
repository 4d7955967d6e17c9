"""Lookup tools: an item by id or (fuzzy) title, a user's history, a stored candidate set.

Fuzzy title matching uses the standard library's ``difflib`` over normalised titles
("Usual Suspects, The" -> "the usual suspects"); a catalog of a few thousand titles needs
no extra dependency.
"""

from __future__ import annotations

import difflib
import re
from datetime import UTC, datetime
from functools import lru_cache

from pydantic import BaseModel, Field, model_validator

from recagent.tools.env import ToolEnv
from recagent.tools.schemas import (
    K_DEFAULT,
    ItemId,
    ItemInfo,
    ItemList,
    K,
    SavedSetName,
    ToolArgs,
    UserId,
    item_info,
    item_list,
)
from recagent.tools.toolkit import ToolInputError

_ARTICLE = re.compile(r"^(?P<rest>.*), (?P<art>the|a|an|le|la|les|il|el|der|die|das)$", re.IGNORECASE)


def normalise_title(title: str) -> str:
    """Lower-case title with a trailing article moved to the front and punctuation removed."""
    t = title.strip()
    m = _ARTICLE.match(t)
    if m:
        t = f"{m.group('art')} {m.group('rest')}"
    t = re.sub(r"\(\d{4}\)\s*$", "", t)
    return " ".join(re.sub(r"[^\w\s]", " ", t.lower()).split())


# "Postman, The (Postino, Il)", "City of Lost Children, The (Cité des enfants perdus, La)": a title
# followed by its original-language title, as MovieLens writes many (most of all in ML-1M)
_ALT_TITLE = re.compile(r"^(?P<main>.*?)\s*\((?P<alt>[^()]*[^()\d\s][^()]*)\)\s*$")


@lru_cache(maxsize=8)
def _title_index(titles: tuple[str, ...]) -> tuple[list[str], dict[str, list[int]]]:
    """Normalised title -> items; the main and the alternative title of "Main (Alt)" count too.

    Whole titles go in first, so an item whose whole title matches is listed before one that
    matches only by its main or alternative title.
    """
    by_norm: dict[str, list[int]] = {}
    for i, t in enumerate(titles):
        by_norm.setdefault(normalise_title(t), []).append(i)
    for i, t in enumerate(titles):
        m = _ALT_TITLE.match(t.strip())
        if not m:
            continue
        for key in (normalise_title(m.group("main")), normalise_title(m.group("alt"))):
            if key and i not in by_norm.setdefault(key, []):
                by_norm[key].append(i)
    return list(by_norm), by_norm


class GetItemArgs(ToolArgs):
    """Look an item up by id or by title."""

    item_id: ItemId | None = Field(None, description="exact catalog item id")
    title: str | None = Field(None, min_length=1, max_length=200, description="title to match (fuzzy, year optional)")

    @model_validator(mode="after")
    def _one_of(self) -> GetItemArgs:
        if (self.item_id is None) == (self.title is None):
            raise ValueError("give exactly one of item_id or title")
        return self


class ItemDetails(BaseModel):
    """One catalog item, how it matched, its popularity, and other close title matches."""

    item: ItemInfo
    match: str = Field(description="'id', 'exact' or 'fuzzy'")
    popularity: int = Field(description="number of training interactions")
    alternatives: list[ItemInfo] = Field(default_factory=list)


def get_item(env: ToolEnv, args: GetItemArgs) -> ItemDetails:
    """Get a catalog item by its id, or by title with fuzzy matching."""
    if args.item_id is not None:
        i = env.item(args.item_id, field="item_id")
        return ItemDetails(item=item_info(env, i), match="id", popularity=int(env.popularity[i]))
    titles = env.catalog.titles
    norms, by_norm = _title_index(tuple(titles))
    query = normalise_title(args.title)
    year = re.search(r"\((\d{4})\)\s*$", args.title)
    if query in by_norm:
        hits, match = by_norm[query], "exact"
    else:
        close = difflib.get_close_matches(query, norms, n=5, cutoff=0.6)
        if not close:
            raise ToolInputError(f"no item with a title like {args.title!r}; try search_items for free text", "title")
        hits, match = [i for c in close for i in by_norm[c]], "fuzzy"
    if year:  # prefer the release year the caller named
        y = int(year.group(1))
        hits = sorted(hits, key=lambda i: int(env.catalog.years[i]) != y)
    best = hits[0]
    return ItemDetails(
        item=item_info(env, best),
        match=match,
        popularity=int(env.popularity[best]),
        alternatives=[item_info(env, i) for i in hits[1:5]],
    )


class GetUserHistoryArgs(ToolArgs):
    """A user's most recent interactions."""

    user_id: UserId
    last_n: K = Field(K_DEFAULT, description="how many of the most recent interactions to return")


class HistoryEntry(ItemInfo):
    """An item in a user's history with the user's rating and the time of the interaction."""

    rating: float
    date: str


class UserHistory(BaseModel):
    """A user's recent items, newest last, and how many interactions they have in total."""

    user_id: str
    total_interactions: int
    items: list[HistoryEntry]
    favourite_genres: list[str] = Field(description="most frequent genres in the whole visible history")


def get_user_history(env: ToolEnv, args: GetUserHistoryArgs) -> UserHistory:
    """Get a user's most recent interactions (newest last) and favourite genres."""
    u = env.user(args.user_id)
    split = env.split
    parts = [split.train] if env.config.history_upto == "train" else [split.train, split.valid]
    entries = []
    for part in parts:
        mask = part.users == u
        entries += list(zip(part.timestamps[mask], part.rows[mask], part.items[mask], part.ratings[mask]))
    entries.sort()
    if env.history_limit:  # a history-length study: the tool sees only the newest items
        entries = entries[-env.history_limit :]
    counts: dict[str, int] = {}
    for *_, i, _r in entries:
        for g in env.catalog.genres[i]:
            counts[g] = counts.get(g, 0) + 1
    recent = entries[-args.last_n :]
    return UserHistory(
        user_id=str(args.user_id),
        total_interactions=len(entries),
        items=[
            HistoryEntry(
                **item_info(env, int(i)).model_dump(),
                rating=float(r),
                date=datetime.fromtimestamp(float(t), tz=UTC).strftime("%Y-%m-%d"),
            )
            for t, _row, i, r in recent
        ],
        favourite_genres=[g for g, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]],
    )


class GetCandidatesArgs(ToolArgs):
    """Read a stored candidate set."""

    name: SavedSetName
    k: K = K_DEFAULT


def get_candidates(env: ToolEnv, args: GetCandidatesArgs) -> ItemList:
    """Show the first k items of a candidate set saved earlier with save_as."""
    items = env.buffer.get(args.name)
    return item_list(env, items, [0.0] * len(items), args.k, save_as=None, total=len(items))
