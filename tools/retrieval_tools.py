"""Retrieval tools: semantic search, attribute filtering, collaborative retrieval, similar and popular items."""

from __future__ import annotations

from typing import Literal

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

SaveAs = SetName | None
_SAVE_AS = "store the full result under this candidate set name, for later tools"


class SearchItemsArgs(ToolArgs):
    """Free-text semantic search over item descriptions."""

    query: str = Field(min_length=1, max_length=500, description="what the user is looking for, in words")
    k: K = K_DEFAULT
    save_as: SaveAs = Field(None, description=_SAVE_AS)


def search_items(env: ToolEnv, args: SearchItemsArgs) -> ItemList:
    """Search the catalog by meaning of title, year and genres (e.g. 'funny animated film for kids')."""
    k = env.check_k(args.k)
    index = env.text_index()
    fetch = min(max(k, env.config.max_candidate_size if args.save_as else k), len(index))
    scores, ids = index.search(env.encode_query(args.query)[None, :], fetch)
    keep = ids[0] >= 0
    return item_list(env, ids[0][keep].tolist(), scores[0][keep].tolist(), k, args.save_as)


class FilterItemsArgs(ToolArgs):
    """Attribute filter over the catalog or over a candidate set."""

    genres: list[str] = Field(default_factory=list, max_length=10, description="genres to match (catalog spelling)")
    match: Literal["any", "all"] = Field("any", description="item needs any or all of the genres")
    exclude_genres: list[str] = Field(default_factory=list, max_length=10, description="drop items with any of these")
    year_min: Year | None = Field(None, description="earliest release year")
    year_max: Year | None = Field(None, description="latest release year")
    exclude_seen_by: UserId | None = Field(None, description="drop items this user already interacted with")
    candidates: SavedSetName | None = Field(None, description="filter this candidate set instead of the whole catalog")
    sort_by: Literal["popularity", "year", "input"] = Field(
        "popularity", description="order of the result ('input' keeps the candidate set's order)"
    )
    k: K = K_DEFAULT
    save_as: SaveAs = Field(None, description=_SAVE_AS)

    @model_validator(mode="after")
    def _years(self) -> FilterItemsArgs:
        if self.year_min is not None and self.year_max is not None and self.year_min > self.year_max:
            raise ValueError(f"year_min ({self.year_min}) is after year_max ({self.year_max})")
        return self


def filter_items(env: ToolEnv, args: FilterItemsArgs) -> ItemList:
    """Filter items by genres, release years and what a user has seen; sorted by popularity by default."""
    k = env.check_k(args.k)
    # int64 always: np.asarray([]) is float, and indexing with an empty float array raises IndexError
    pool = np.asarray(
        env.buffer.get(args.candidates) if args.candidates else np.arange(env.dataset.n_items), dtype=np.int64
    )
    keep = np.ones(len(pool), dtype=bool)
    if args.genres:
        wanted = env.genres(args.genres)
        cols = [env.catalog.all_genres.index(g) for g in wanted]
        gm = env.catalog.genre_matrix[pool][:, cols]
        keep &= gm.all(axis=1) if args.match == "all" else gm.any(axis=1)
    if args.exclude_genres:
        cols = [env.catalog.all_genres.index(g) for g in env.genres(args.exclude_genres, field="exclude_genres")]
        keep &= ~env.catalog.genre_matrix[pool][:, cols].any(axis=1)
    years = env.catalog.years[pool]
    if args.year_min is not None:
        keep &= years >= args.year_min
    if args.year_max is not None:
        keep &= (years <= args.year_max) & (years > 0)
    if args.exclude_seen_by is not None:
        seen = env.seen(env.user(args.exclude_seen_by, field="exclude_seen_by"))
        keep &= ~np.isin(pool, seen)
    items = pool[keep]
    if args.sort_by == "popularity":
        scores = env.popularity[items].astype(float)
        order = np.lexsort((items, -scores))
    elif args.sort_by == "year":
        scores = env.catalog.years[items].astype(float)
        order = np.lexsort((items, -scores))
    else:
        order = np.arange(len(items))
        scores = np.zeros(len(items))
    return item_list(env, items[order].tolist(), scores[order].tolist(), k, args.save_as)


class RetrieveForUserArgs(ToolArgs):
    """Collaborative retrieval over the full catalog for a known user."""

    user_id: UserId
    model: ModelName | None = Field(None, description="recommender to use (default: the environment's default)")
    k: K = K_DEFAULT
    save_as: SaveAs = Field(None, description=_SAVE_AS)


def retrieve_for_user(env: ToolEnv, args: RetrieveForUserArgs) -> ItemList:
    """Recommend items for a known user from the whole catalog with a trained recommender (seen items excluded)."""
    k = env.check_k(args.k)
    u = env.user(args.user_id)
    hist = env.history(u)
    size = max(k, env.config.max_candidate_size if args.save_as else k)
    items, scores = env.model(args.model).topk(env.query(u, hist), size, exclude=env.seen(u))
    return item_list(env, items.tolist(), scores.tolist(), k, args.save_as)


class SimilarItemsArgs(ToolArgs):
    """Items similar to one or more given items."""

    item_ids: list[ItemId] = Field(min_length=1, max_length=20, description="items to find neighbours of")
    k: K = K_DEFAULT
    model: Literal["itemknn", "bpr", "sasrec", "text"] | None = Field(
        None, description="similarity by co-consumption (itemknn, bpr, sasrec) or by description text"
    )
    save_as: SaveAs = Field(None, description=_SAVE_AS)


def similar_items(env: ToolEnv, args: SimilarItemsArgs) -> ItemList:
    """Find items similar to the given items (the given items are excluded)."""
    k = env.check_k(args.k)
    seeds = [env.item(i) for i in args.item_ids]
    which = args.model or env.config.similarity_model
    size = max(k, env.config.max_candidate_size if args.save_as else k)
    if which == "itemknn":
        # "watched together" neighbours straight from the item-item similarity matrix
        scores = np.asarray(env.model("itemknn").sim[seeds].sum(axis=0)).ravel()
        scores[seeds] = -np.inf
        order = np.lexsort((np.arange(len(scores)), -scores))[:size]
        order = order[scores[order] > 0]
        return item_list(env, order.tolist(), scores[order].tolist(), k, args.save_as)
    index = env.text_index() if which == "text" else env.item_vector_index(which)
    vecs = np.stack([index.reconstruct(s) for s in seeds])
    q = vecs.mean(axis=0)
    q /= np.linalg.norm(q) + 1e-12
    size = min(size, len(index) - len(set(seeds)))
    scores, ids = index.search(q[None, :].astype(np.float32), size, exclude=set(seeds))
    keep = ids[0] >= 0
    return item_list(env, ids[0][keep].tolist(), scores[0][keep].tolist(), k, args.save_as)


class PopularItemsArgs(ToolArgs):
    """Most popular items, optionally within one genre."""

    genre: str | None = Field(None, description="restrict to this genre (catalog spelling)")
    k: K = K_DEFAULT
    save_as: SaveAs = Field(None, description=_SAVE_AS)


def popular_items(env: ToolEnv, args: PopularItemsArgs) -> ItemList:
    """List the most popular items overall or within a genre."""
    k = env.check_k(args.k)
    items = np.arange(env.dataset.n_items)
    if args.genre:
        g = env.genres([args.genre], field="genre")[0]
        items = items[env.catalog.genre_matrix[:, env.catalog.all_genres.index(g)]]
    scores = env.popularity[items].astype(float)
    order = np.lexsort((items, -scores))
    return item_list(env, items[order].tolist(), scores[order].tolist(), k, args.save_as)
