"""Rank tools: order a candidate set for a user or a history, plainly or with attribute preferences.

Attribute-aware ranking follows ToolRec: the recommender's order is blended with how well
each candidate matches what the user said they prefer (genres, an era), so the agent can
act on stated preferences that the interaction data does not show.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from recagent.tools.env import ToolEnv
from recagent.tools.schemas import (
    K_DEFAULT,
    ItemId,
    ItemList,
    K,
    ModelName,
    SavedSetName,
    SetName,
    ToolArgs,
    UserId,
    Year,
    item_list,
)


class _RankInput(ToolArgs):
    """Who to rank for (a user or a history) and what to rank (ids or a candidate set)."""

    user_id: UserId | None = Field(None, description="rank for this known user")
    history: list[ItemId] | None = Field(
        None, max_length=200, description="or rank for this item history (oldest first), e.g. items the user liked"
    )
    item_ids: list[ItemId] | None = Field(None, min_length=1, max_length=500, description="candidate item ids")
    candidates: SavedSetName | None = Field(None, description="or a candidate set saved earlier with save_as")
    model: ModelName | None = Field(None, description="recommender that scores the candidates")
    k: K = Field(K_DEFAULT, description="how many of the ranked items to show")
    save_as: SetName | None = Field(None, description="store the whole ranking under this candidate set name")

    @model_validator(mode="after")
    def _exactly_one(self):
        if self.user_id is None and not self.history:
            raise ValueError("give user_id or history")
        if (self.item_ids is None) == (self.candidates is None):
            raise ValueError("give exactly one of item_ids or candidates")
        return self


def _resolve(env: ToolEnv, args: _RankInput) -> tuple[np.ndarray, np.ndarray]:
    """(candidate items, model scores) after validating every id."""
    if args.candidates is not None:
        pool = np.asarray(env.buffer.get(args.candidates), dtype=np.int64)
    else:
        pool = np.asarray(list(dict.fromkeys(env.item(i) for i in args.item_ids)), dtype=np.int64)
    user = env.user(args.user_id) if args.user_id is not None else None
    history = (
        np.asarray([env.item(i, field="history") for i in args.history], dtype=np.int64)
        if args.history
        else env.history(user)
    )
    scores = env.score(args.model, user, history)[pool].astype(np.float64)
    return pool, scores


class RankItemsArgs(_RankInput):
    """Rank candidate items with a trained recommender."""


def rank_items(env: ToolEnv, args: RankItemsArgs) -> ItemList:
    """Rank candidate items for a user (or an item history) with a trained recommender."""
    pool, scores = _resolve(env, args)
    order = np.lexsort((pool, -scores))
    return item_list(env, pool[order].tolist(), scores[order].tolist(), args.k, args.save_as)


class RankByPreferenceArgs(_RankInput):
    """Rank candidates blending the recommender with stated attribute preferences."""

    prefer_genres: list[str] = Field(default_factory=list, max_length=10, description="genres the user wants")
    avoid_genres: list[str] = Field(default_factory=list, max_length=10, description="genres the user does not want")
    year_min: Year | None = Field(None, description="start of the preferred era")
    year_max: Year | None = Field(None, description="end of the preferred era")
    weight: float = Field(0.5, ge=0, le=1, description="0 = recommender only, 1 = preferences only")

    @model_validator(mode="after")
    def _some_preference(self):
        if not (self.prefer_genres or self.avoid_genres or self.year_min is not None or self.year_max is not None):
            raise ValueError("state at least one preference: prefer_genres, avoid_genres, year_min or year_max")
        if self.year_min is not None and self.year_max is not None and self.year_min > self.year_max:
            raise ValueError(f"year_min ({self.year_min}) is after year_max ({self.year_max})")
        return self


def rank_by_preference(env: ToolEnv, args: RankByPreferenceArgs) -> ItemList:
    """Rank candidates for a user, boosting preferred genres or era and demoting avoided genres."""
    pool, scores = _resolve(env, args)
    catalog = env.catalog
    # the model's order as a percentile in [0, 1], so the blend does not depend on score scale
    model_part = np.empty(len(pool))
    model_part[np.lexsort((pool, -scores))] = np.linspace(1.0, 0.0, len(pool)) if len(pool) > 1 else 1.0
    gm = catalog.genre_matrix[pool]
    attr, parts = np.zeros(len(pool)), 0
    if args.prefer_genres:
        cols = [catalog.all_genres.index(g) for g in env.genres(args.prefer_genres, field="prefer_genres")]
        attr += gm[:, cols].mean(axis=1)
        parts += 1
    if args.year_min is not None or args.year_max is not None:
        years = catalog.years[pool]
        ok = years > 0
        if args.year_min is not None:
            ok &= years >= args.year_min
        if args.year_max is not None:
            ok &= years <= args.year_max
        attr += ok
        parts += 1
    if args.avoid_genres:
        cols = [catalog.all_genres.index(g) for g in env.genres(args.avoid_genres, field="avoid_genres")]
        attr -= gm[:, cols].any(axis=1)
    attr = attr / max(parts, 1)
    blended = (1 - args.weight) * model_part + args.weight * attr
    order = np.lexsort((pool, -blended))
    return item_list(env, pool[order].tolist(), blended[order].tolist(), args.k, args.save_as)
