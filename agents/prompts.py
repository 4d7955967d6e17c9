"""System prompts, the list-wise request and answer (written and read), and the checks' feedback to the policy."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from recagent.agents.state import AgentState

CHAT = (
    "You are a movie recommender for the {dataset} catalog. Use the tools to find real items; never invent "
    "titles or ids. Call a tool with the arguments its schema asks for. When you recommend, cite each item as "
    "[id] Title (Year) with the id from a tool result, and keep the answer short.{user}"
)
LISTWISE = (
    "You are a recommender acting for user {user_id} of the {dataset} catalog. Use the tools (for example "
    "retrieve_for_user, then rank_items or rank_by_preference) to find items this user will watch next. Then "
    "answer with exactly {k} item ids from tool results, best first, as a JSON list such as [50, 181, 1]."
)
LISTWISE_REQUEST = "Recommend {k} items for user {user_id}."  # the user turn of a list-wise episode
LIST_SEPARATOR = ", "  # between the ids of a list-wise answer (json.dumps style)

LISTWISE_POOL = (
    "You are a recommender acting for user {user_id} of the {dataset} catalog. Rank these {n} candidate items "
    "(saved as the candidate set 'candidates') by how likely this user watches them next:\n{listing}\nUse the "
    "tools (for example rank_items with candidates 'candidates') and answer with exactly {k} item ids from the "
    "candidates, best first, as a JSON list of ids."
)


def is_listwise_prompt(text: str) -> bool:
    """True for a list-wise system prompt (with or without given candidates)."""
    return text.startswith(LISTWISE.split("{", 1)[0])


def json_id(item_id: str) -> str:
    """An id as a list-wise answer writes it: a JSON number when it is one, else a JSON string."""
    return item_id if re.fullmatch(r"[1-9][0-9]{0,17}|0", item_id) else json.dumps(item_id, ensure_ascii=False)


def listwise_answer(item_ids: Sequence[str]) -> str:
    """A list-wise answer as the policy writes it (and the grammar allows it): ``[50, 181, 1]``, best first."""
    return "[" + LIST_SEPARATOR.join(json_id(str(i)) for i in item_ids) + "]"


def listwise_ids(text: str) -> list[str]:
    """Item ids from a list-wise answer: a JSON list, else every bracketed or bare number."""
    m = re.search(r"\[[^\[\]]*\]", text)
    if m:
        try:
            values = json.loads(m.group(0))
            if isinstance(values, list):
                return [str(v).strip() for v in values if isinstance(v, (int, str))]
        except json.JSONDecodeError:
            pass
    return re.findall(r"\b\d+\b", text)


def system_prompt(state: AgentState, dataset: str, listing: dict[str, str] | None = None) -> str:
    """The system prompt for the state's mode and user (``listing``: display text of given candidates)."""
    listing = listing or {}
    user = state.get("user") or {}
    if state.get("mode") == "listwise" and state.get("pool"):
        pool = state["pool"]
        return LISTWISE_POOL.format(
            user_id=user.get("user_id"),
            dataset=dataset,
            k=state.get("k", 10),
            n=len(pool),
            listing="\n".join(f"[{i}] {listing.get(i, '')}".rstrip() for i in pool),
        )
    if state.get("mode") == "listwise":
        return LISTWISE.format(user_id=user.get("user_id"), dataset=dataset, k=state.get("k", 10))
    parts = []
    if user.get("user_id"):
        parts.append(f"the user is user_id {user['user_id']} of the dataset")
    if user.get("likes"):
        parts.append("they like " + ", ".join(user["likes"]))
    if user.get("dislikes"):
        parts.append("they dislike " + ", ".join(user["dislikes"]))
    return CHAT.format(dataset=dataset, user=(" About the user: " + "; ".join(parts) + ".") if parts else "")


def unsupported_feedback(unsupported: list[str], unknown: list[str]) -> str:
    """What the policy is told when its answer names items no tool returned."""
    parts = []
    if unknown:
        parts.append("these are not catalog items: " + ", ".join(unknown))
    if unsupported:
        parts.append("these ids did not come from a tool result in this conversation: " + ", ".join(unsupported))
    return (
        "[check] Your answer was not sent: " + "; ".join(parts) + ". Recommend only items returned by a tool "
        "(call a tool first if needed) and cite them as [id] Title (Year)."
    )


def listwise_feedback(found: int, k: int) -> str:
    """What the policy is told when its list-wise answer has too few valid ids."""
    return (
        f"[check] Your answer listed {found} valid item ids from tool results; {k} are needed. Answer with a JSON "
        f"list of {k} item ids taken from the tool results."
    )
