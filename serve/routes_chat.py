"""OpenAI-compatible chat completions: one agent turn per request, as one reply or as a stream of chunks."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse

from recagent.serve.deps import Owner, ServerDep, api_router
from recagent.serve.protocol import (
    ChatRequest,
    RequestError,
    StrictJSONResponse,
    chunk,
    completion,
    completion_id,
    error_body,
    json_bytes,
)
from recagent.serve.server import Server, after_save_note, turn_error

log = logging.getLogger("recagent.serve")

router = api_router()


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatRequest, server: ServerDep, owner: Owner):
    config = server.config
    if body.model != config.model_name:
        raise RequestError(
            f"model {body.model!r} does not exist; this server serves {config.model_name!r}",
            param="model",
            status=404,
            code="model_not_found",
        )
    message, history = body.conversation(config.max_message_chars, config.max_history_messages)
    server.check_user(body.user_id)
    session, seed = body.session_id, history
    if session is not None:
        await server.owned(owner, session)
        seed = []  # the session's history is on the server; earlier messages in the request are not replayed
    thread = session or f"tmp-{uuid.uuid4().hex}"
    server.admit(thread)
    events = server.begin_turn(owner, thread, session, message, body.user_id, seed, tokens=body.stream)
    cid = completion_id()
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            _sse(server, events, cid, session, usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    failure, result = None, None
    async for kind, data in events:  # to the end: the session is free again when the reply arrives
        if kind == "error":
            failure = turn_error(data, server.upstream)
        elif kind == "result":
            result = data
    if failure is not None or result is None:
        raise failure or RequestError("the turn ended without an answer", status=500)
    try:  # rendered here, inside the try: a reply that cannot be written must still say the turn was saved
        return StrictJSONResponse(
            completion(cid, config.model_name, result.answer, result.usage, server.extension(session, result))
        )
    except Exception as e:
        log.exception("reply failed after a saved turn")
        raise RequestError(
            after_save_note(session, f"its reply could not be built ({type(e).__name__})"),
            status=500,
            code="reply_failed",
        ) from None


async def _sse(
    server: Server, events: AsyncIterator, cid: str, session: str | None, include_usage: bool
) -> AsyncIterator[bytes]:
    """The turn's events as OpenAI stream chunks, always ending with ``[DONE]`` (after an error event if anything failed).

    Text is streamed as the policy writes it. When the agent discards what was streamed (the answer
    check sent a draft back, or text preceded a tool call), a chunk with ``recagent.revision`` and
    a paragraph break marks it: the text after the last revision is the answer, identical to the
    non-streaming ``content``. Each step arrives as an empty delta with ``recagent.step``.
    """
    model = server.config.model_name

    def sse(obj: dict) -> bytes:
        return b"data: " + json_bytes(obj) + b"\n\n"

    saved = False  # whether the turn's result arrived (it is in its session by then)
    try:
        yield sse(chunk(cid, model, {"role": "assistant", "content": ""}))
        draft = ""
        async for kind, data in events:
            if kind == "token":
                draft += data
                yield sse(chunk(cid, model, {"content": data}))
            elif kind == "step":
                if data.kind != "answer" and draft:
                    draft = ""
                    yield sse(chunk(cid, model, {"content": "\n\n"}, extension={"revision": True}))
                yield sse(chunk(cid, model, extension={"step": data.to_dict()}))
            elif kind == "error":
                err = turn_error(data, server.upstream)
                yield sse(error_body(err.message, "server_error", code=err.code))
                break
            elif kind == "result":
                saved = True
                if data.answer.startswith(draft):
                    rest = data.answer[len(draft) :]
                    if rest:
                        yield sse(chunk(cid, model, {"content": rest}))
                else:
                    yield sse(chunk(cid, model, {"content": "\n\n"}, extension={"revision": True}))
                    yield sse(chunk(cid, model, {"content": data.answer}))
                yield sse(chunk(cid, model, finish="stop", extension=server.extension(session, data)))
                if include_usage:
                    yield sse(chunk(cid, model, usage=data.usage))
    except Exception as e:  # a client must never see the stream just stop: say what failed and what was kept
        log.exception("stream failed")
        failure = f"the stream failed ({type(e).__name__})"
        if saved:
            message = after_save_note(session, failure)
        elif session is None:
            message = f"{failure}; this stateless request keeps nothing"
        else:
            message = f"{failure}; the turn still runs to its end and is saved in session {session} (GET /v1/sessions/{session})"
        yield sse(error_body(message, "server_error", code="stream_failed"))
    yield b"data: [DONE]\n\n"
