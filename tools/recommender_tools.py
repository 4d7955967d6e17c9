"""The recommender tool set: every retrieval, rank and lookup tool, registered over one environment."""

from __future__ import annotations

from recagent.tools.env import ToolEnv
from recagent.tools.lookup_tools import get_candidates, get_item, get_user_history
from recagent.tools.rank_tools import rank_by_preference, rank_items
from recagent.tools.retrieval_tools import filter_items, popular_items, retrieve_for_user, search_items, similar_items
from recagent.tools.toolkit import Tool, ToolRegistry

TOOL_FUNCTIONS = (
    search_items,
    filter_items,
    retrieve_for_user,
    similar_items,
    popular_items,
    rank_items,
    rank_by_preference,
    get_item,
    get_user_history,
    get_candidates,
)


def build_registry(env: ToolEnv) -> ToolRegistry:
    """All recommender tools bound to ``env`` (use ``env.session()`` for a per-conversation buffer)."""
    registry = ToolRegistry(env)
    for fn in TOOL_FUNCTIONS:
        registry.register(Tool.from_function(fn))
    return registry
