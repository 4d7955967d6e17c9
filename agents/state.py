"""The agent's typed graph state, with a reducer for every field that accumulates."""

from __future__ import annotations

import operator
from typing import Annotated, Literal, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages

from recagent.agents.steps import StepRecord


class UserProfile(TypedDict, total=False):
    """Who the agent talks to: a dataset user id if known, stated likes/dislikes, items already seen."""

    user_id: str | None
    likes: list[str]
    dislikes: list[str]
    seen: list[str]


def merge_dicts(old: dict | None, new: dict | None) -> dict:
    """Reducer: later keys win (candidate sets are replaced by name, the user profile by field)."""
    return {**(old or {}), **(new or {})}


def union_ids(old: list[str] | None, new: list[str] | None) -> list[str]:
    """Reducer: ordered union of item ids."""
    return list(dict.fromkeys([*(old or []), *(new or [])]))


class AgentState(TypedDict, total=False):
    """Everything one conversation (one LangGraph thread) carries between steps and turns."""

    messages: Annotated[list[AnyMessage], add_messages]
    user: Annotated[UserProfile, merge_dicts]
    mode: Literal["chat", "listwise"]
    k: int  # list length asked for in list-wise mode
    pool: list[str]  # list-wise over given candidates: the answer ranks these ids (empty = whole catalog)
    candidates: Annotated[dict[str, list[str]], merge_dicts]  # named candidate sets (external ids)
    grounded_ids: Annotated[list[str], union_ids]  # every item id a tool returned in this conversation
    trace: Annotated[list[StepRecord], operator.add]
    turn: int
    steps: int  # policy calls used in the current turn
    answer: str
    recommended: list[str]  # item ids the final answer of the turn recommends
    filled: int  # list-wise: ids appended from tool results because the answer had fewer than k
