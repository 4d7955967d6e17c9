"""Argument types and result models shared by the recommender tools (all JSON-serialisable)."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from recagent.tools.env import ToolEnv


def _as_id(v: object) -> object:
    # LLMs write ids as numbers or strings; both mean the same catalog id. Booleans and
    # fractional numbers are not ids and are left for pydantic to reject.
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return v


# The JSON schemas of id arguments carry these descriptions; a grammar finds id arguments by them, under any
# variant's parameter names (agents.policies.grammar.ground_call_arguments).
ITEM_ID_DESCRIPTION = "catalog item id"
USER_ID_DESCRIPTION = "dataset user id"
ItemId = Annotated[str, BeforeValidator(_as_id), Field(min_length=1, max_length=64, description=ITEM_ID_DESCRIPTION)]
UserId = Annotated[str, BeforeValidator(_as_id), Field(min_length=1, max_length=64, description=USER_ID_DESCRIPTION)]
# A count is an integer from 1 to K_MAX, under any parameter name and description: the grammar grounds counts by
# these bounds (agents.policies.grammar.ground_call_arguments), so every count argument is typed K.
K_MAX = 100
K = Annotated[int, Field(ge=1, le=K_MAX, description="number of items to return (1-100)")]
# What a tool returns when the count is left out, and the size of a candidate pool that a later step narrows
# (synthesized chains ask for POOL_K): the counts a call may use that nobody wrote.
K_DEFAULT = 10
POOL_K = 20
# A release year is an integer from YEAR_MIN to YEAR_MAX under any parameter name: the grammar grounds years by
# these bounds (to years the conversation wrote, decades read), so every year argument is typed Year.
YEAR_MIN, YEAR_MAX = 1800, 2100
Year = Annotated[int, Field(ge=YEAR_MIN, le=YEAR_MAX)]
ModelName = Literal["sasrec", "bpr", "itemknn", "pop"]
# every recommender a tool may be told to use: the models above and similar_items' description-text similarity
MODEL_CHOICES = frozenset(get_args(ModelName)) | {"text"}
_SET_NAME = {"min_length": 1, "max_length": 40, "pattern": r"^[A-Za-z0-9_\-]+$"}
SET_NAME_DESCRIPTION = "candidate set name"
SetName = Annotated[str, Field(**_SET_NAME, description=SET_NAME_DESCRIPTION)]
# A set an argument reads (not one it saves): only names earlier results were saved under exist, so a grammar
# narrows arguments of this type (found by this description) to those names.
SAVED_SET_DESCRIPTION = "name a candidate set was saved under"
SavedSetName = Annotated[str, Field(**_SET_NAME, description=SAVED_SET_DESCRIPTION)]


class ToolArgs(BaseModel):
    """Base of every tool's arguments: unknown keys are errors, so a misspelt argument never passes silently."""

    model_config = ConfigDict(extra="forbid")


class ItemInfo(BaseModel):
    """A catalog item as tools show it."""

    item_id: str
    title: str
    year: int | None
    genres: list[str]


class ScoredItem(ItemInfo):
    """A catalog item with its rank and score in a result list."""

    rank: int
    score: float


class ItemList(BaseModel):
    """A ranked list of catalog items, optionally saved as a named candidate set."""

    items: list[ScoredItem]
    total_matches: int | None = Field(None, description="how many items matched before truncation to k")
    candidate_set: str | None = Field(None, description="name the full list was saved under")


def item_info(env: ToolEnv, i: int) -> ItemInfo:
    """Tool view of internal item ``i``."""
    c = env.catalog
    year = int(c.years[i])
    return ItemInfo(item_id=c.ids[i], title=c.titles[i], year=year or None, genres=list(c.genres[i]))


def item_list(
    env: ToolEnv, items: list[int], scores: list[float], k: int, save_as: str | None, total: int | None = None
) -> ItemList:
    """Build a result list (top ``k`` shown) and store the whole ranking under ``save_as``."""
    if save_as:
        env.buffer.put(save_as, items)
    shown = [
        ScoredItem(**item_info(env, i).model_dump(), rank=r + 1, score=round(float(s), 4))
        for r, (i, s) in enumerate(zip(items[:k], scores[:k]))
    ]
    return ItemList(items=shown, total_matches=len(items) if total is None else total, candidate_set=save_as)
