"""The dataset's users, and one user's history as the agent's own tool shows it."""

from __future__ import annotations

from recagent.serve.deps import ServerDep, api_router
from recagent.serve.protocol import RequestError
from recagent.tools.recommender_tools import build_registry

router = api_router()


@router.get("/v1/users")
async def list_users(server: ServerDep, offset: int = 0, limit: int = 100) -> dict:
    ids = server.agent.context.env.dataset.users.ids
    offset, limit = max(0, offset), max(1, min(limit, 1000))
    return {"object": "list", "total": len(ids), "data": ids[offset : offset + limit]}


@router.get("/v1/users/{user_id}")
async def get_user(user_id: str, server: ServerDep, recent: int = 10) -> dict:
    server.check_user(user_id)
    # what the agent's own get_user_history tool would show of this user
    out = build_registry(server.agent.context.env).call(
        "get_user_history", {"user_id": user_id, "last_n": max(1, min(recent, 100))}
    )
    if not out.ok:
        raise RequestError(out.error.message, param="user_id")
    h = out.result
    cards = [{k: it[k] for k in ("item_id", "title", "year", "genres")} for it in reversed(h["items"])]
    return {
        "user_id": user_id,
        "n_items": h["total_interactions"],
        "top_genres": h["favourite_genres"],
        "recent": cards,
    }
