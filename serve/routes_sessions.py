"""The caller's sessions: create, list, read (with every turn), rename or re-assign, delete."""

from __future__ import annotations

from fastapi import Response
from starlette.concurrency import run_in_threadpool

from recagent.serve.deps import Owner, ServerDep, api_router
from recagent.serve.protocol import SessionCreate, SessionUpdate

router = api_router()


@router.post("/v1/sessions", status_code=201)
async def create_session(server: ServerDep, owner: Owner, body: SessionCreate | None = None) -> dict:
    body = body or SessionCreate()
    server.check_user(body.user_id)
    info = await run_in_threadpool(server.store.create, owner, body.user_id, body.title)
    if body.user_id is not None:
        await run_in_threadpool(server.agent.set_user, info.id, body.user_id)
    return info.public()


@router.get("/v1/sessions")
async def list_sessions(server: ServerDep, owner: Owner, limit: int = 100) -> dict:
    rows = await run_in_threadpool(server.store.list, owner, max(1, min(limit, 1000)))
    return {"object": "list", "data": [r.public() for r in rows]}


@router.get("/v1/sessions/{session_id}")
async def get_session(session_id: str, server: ServerDep, owner: Owner) -> dict:
    info = await server.owned(owner, session_id)
    turns = await run_in_threadpool(server.agent.turns, session_id)
    out = [
        {**t, "items": [server.card(i) for i in t["recommended"]], "trace": [s.to_dict() for s in t["trace"]]}
        for t in turns
    ]
    return {**info.public(), "messages": out}


@router.patch("/v1/sessions/{session_id}")
async def update_session(session_id: str, body: SessionUpdate, server: ServerDep, owner: Owner) -> dict:
    await server.owned(owner, session_id)
    server.check_user(body.user_id)
    server.admit(session_id)  # not while a turn of this session runs
    try:
        if body.user_id is not None:
            await run_in_threadpool(server.agent.set_user, session_id, body.user_id)
        fields = {k: v for k, v in (("user_id", body.user_id), ("title", body.title)) if v is not None}
        await run_in_threadpool(lambda: server.store.update(owner, session_id, **fields))
    finally:
        server.gate.finish(session_id, started=False)
    return (await server.owned(owner, session_id)).public()


@router.delete("/v1/sessions/{session_id}", status_code=204)
async def delete_session(session_id: str, server: ServerDep, owner: Owner) -> Response:
    await server.owned(owner, session_id)
    server.admit(session_id)
    try:
        await run_in_threadpool(server.agent.reset, session_id)
        await run_in_threadpool(server.store.delete, owner, session_id)
    finally:
        server.gate.finish(session_id, started=False)
    return Response(status_code=204)
