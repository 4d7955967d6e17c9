"""The ASGI app: OpenAI-compatible chat completions, sessions, users, health, metrics and the chat page.

``create_app(config)`` builds the app; the agent (tools, policy, session database) is loaded when
the app starts, not at import. Agent turns run in a thread pool of ``workers`` threads behind
:class:`~recagent.serve.gate.TurnGate`; a local model's calls are serialised by a lock in the
agent context, while tool calls of different sessions overlap. A turn whose client went away
still finishes and is saved in its session.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from recagent.serve.auth import KeyRing, presented_key
from recagent.serve.config import ServeConfig
from recagent.serve.gate import QueueFull, SessionBusy, TurnGate
from recagent.serve.limits import KEY_MISSING, BodyLimit, HostCheck, KeyCheck, RequestTimer
from recagent.serve.metrics import Metrics
from recagent.serve.protocol import (
    ChatRequest,
    RequestError,
    SessionCreate,
    SessionUpdate,
    StrictJSONResponse,
    chunk,
    completion,
    completion_id,
    error_body,
    json_bytes,
)
from recagent.serve.sessions import SessionStore
from recagent.tools.recommender_tools import build_registry
from recagent.tools.schemas import item_info
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from recagent.errors import RecagentError

log = logging.getLogger("recagent.serve")


class Server:
    """Everything the routes share: config, agent, session table, admission gate, metrics, worker threads."""

    def __init__(self, config: ServeConfig, agent=None):
        self.config = config
        self.agent = agent
        self._owns_agent = agent is None
        self.keys = KeyRing(config.keys())
        self.metrics = Metrics()
        self.gate: TurnGate | None = None
        self.store: SessionStore | None = None
        self.pool: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task] = set()

    def start(self) -> None:
        """Load the agent (unless given), open the session table, start the workers."""
        if self.agent is None:
            from recagent.agents import Agent

            self.agent = Agent.from_config(self.config.agent)
        if self.config.agent.policy.kind == "local":
            from recagent.agents.policies.local import LocalChatModel

            if isinstance(self.agent.context.policy, LocalChatModel):
                self.agent.context.policy.load()  # load the weights now, not during the first user's turn
        if self.config.policy_is_serialized() and self.agent.context.policy_lock is None:
            self.agent.context.policy_lock = threading.Lock()
        saver = self.agent.graph.checkpointer
        saver.setup()  # create the checkpoint tables (and switch to WAL) before any turn runs
        self.store = SessionStore(saver.conn, saver.lock)
        self.gate = TurnGate(self.config.workers, self.config.max_queue)
        self.pool = ThreadPoolExecutor(self.config.workers, thread_name_prefix="recagent-turn")

    def stop(self) -> None:
        """Let running turns finish (they are saved), then close the session database if the agent is ours."""
        if self.pool:
            self.pool.shutdown(wait=True)
        if self._owns_agent and self.agent is not None:
            self.agent.close()

    # -- helpers -----------------------------------------------------------------------------------------------------

    @property
    def upstream(self) -> bool:
        """Whether the policy is a remote server."""
        return self.config.agent.policy.kind == "openai"

    def card(self, item_id: str) -> dict[str, Any]:
        """An item as the page shows it: as the tools show it."""
        env = self.agent.context.env
        return item_info(env, env.catalog.index_of[item_id]).model_dump()

    def check_user(self, user_id: str | None) -> None:
        """Refuse an unknown dataset user before any work is queued."""
        if user_id is not None and str(user_id) not in self.agent.context.env.dataset.users.index_of:
            users = self.agent.context.env.dataset.users.ids
            raise RequestError(
                f"unknown user_id {user_id!r}; this dataset has users {users[0]}..{users[-1]}", param="user_id"
            )

    def extension(self, session: str | None, result) -> dict[str, Any]:
        """The ``recagent`` field of a reply."""
        return {
            "session_id": session,
            "recommended": result.recommended,
            "items": [self.card(i) for i in result.recommended],
            "filled": result.filled,
            "trace": [s.to_dict() for s in result.trace],
            "usage": result.usage,
        }

    # -- one agent turn ------------------------------------------------------------------------------------------------

    def begin_turn(
        self,
        owner: str,
        thread: str,
        session: str | None,
        message: str,
        user_id: str | None,
        seed: list[tuple[str, str]],
        tokens: bool,
    ) -> AsyncIterator[tuple[str, Any]]:
        """Start an admitted turn now and return its events; it runs to the end (and is saved) even if nobody reads them.

        Started eagerly rather than on first read: a client that leaves before its response starts must not
        leave the turn's place in the gate taken for ever.
        """
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        put = lambda ev: loop.call_soon_threadsafe(events.put_nowait, ev)  # noqa: E731

        def work() -> None:
            t0, outcome, result = time.perf_counter(), "failed", None
            try:
                if seed:
                    self.agent.seed(thread, seed)
                for ev in self.agent.stream(message, thread, user_id, tokens=tokens):
                    if ev[0] == "result":
                        result, outcome = ev[1], "ok"
                    put(ev)
                if session:
                    self._touch(owner, session, message, user_id)
            except Exception as e:  # reported to the client
                if result is not None:  # the turn is saved; what failed came after it, and the client must hear that
                    log.exception("after a saved turn")
                    outcome = "failed"
                    e = AfterSave(
                        after_save_note(session, f"updating the session's record failed ({type(e).__name__})")
                    )
                elif not isinstance(e, RecagentError):  # the agent rolled the session back (its errors say so)
                    log.exception("turn failed")
                put(("error", e))
            finally:
                if session is None:  # a stateless request's thread is not kept
                    self.agent.reset(thread)
                self.metrics.turn(outcome, result.trace if result else None, result.usage if result else None)
                log.info("turn %s %s in %.2f s", thread, outcome, time.perf_counter() - t0)

        def done(_) -> None:  # on the loop: free the place before the client can hear that the turn ended
            self.gate.finish(thread)
            events.put_nowait(("end", None))

        async def run() -> None:
            try:
                await self.gate.start()
            except BaseException:  # cancelled while waiting (shutdown): it never ran
                self.gate.finish(thread, started=False)
                events.put_nowait(("error", RecagentError("the server is shutting down")))
                events.put_nowait(("end", None))
                raise
            loop.run_in_executor(self.pool, work).add_done_callback(done)

        task = loop.create_task(run())
        self._tasks.add(task)  # keep a reference until it is done (the loop holds tasks weakly)
        task.add_done_callback(self._tasks.discard)
        return _drain(events)

    def _touch(self, owner: str, session: str, message: str, user_id: str | None) -> None:
        info = self.store.get(owner, session)
        fields: dict[str, Any] = {"turns": (info.turns if info else 0) + 1}
        if info and info.title == "new chat":
            fields["title"] = message[:60]
        if user_id is not None:
            fields["user_id"] = str(user_id)
        self.store.update(owner, session, **fields)


async def _drain(events: asyncio.Queue) -> AsyncIterator[tuple[str, Any]]:
    """A turn's events until its end marker."""
    while True:
        ev = await events.get()
        if ev[0] == "end":
            return
        yield ev


def _server(request: Request) -> Server:
    return request.app.state.server


def authenticate(request: Request) -> str:
    """Dependency of every route: the caller's owner id, which KeyCheck found before the body was read (else 401)."""
    owner = getattr(request.state, "owner", None)
    if owner is None:  # not behind KeyCheck: check here
        owner = _server(request).keys.check(presented_key(request.headers.get("authorization")))
    if owner is None:
        raise RequestError(KEY_MISSING, status=401, code="invalid_api_key")
    request.state.owner = owner
    return owner


class AfterSave(RecagentError):
    """A failure after the turn was saved; its message says what was kept (a 500 even with a remote policy: it is ours)."""


def after_save_note(session: str | None, failure: str) -> str:
    """One line for a failure after a finished turn: what failed, and what the server kept."""
    if session is None:
        return f"the answer was ready, but {failure}; this stateless request kept nothing"
    return f"the turn was saved in session {session}, but {failure}; GET /v1/sessions/{session} shows what was saved"


class _PlainRoute(APIRoute):
    """A route whose dict result StrictJSONResponse writes as it is.

    Without this, FastAPI would pass a route annotated ``-> dict`` through pydantic's JSON mode, which
    turns NaN and infinities into null without a word (a trace's ``{"k": inf}`` read as ``{"k": null}``).
    """

    def __init__(self, path: str, endpoint, **kwargs: Any):
        kwargs["response_model"] = None
        super().__init__(path, endpoint, **kwargs)


def _error(
    status: int,
    message: str,
    kind: str | None = None,
    param: str | None = None,
    code: str | None = None,
    headers: dict | None = None,
) -> StrictJSONResponse:
    kind = kind or {
        401: "authentication_error",
        404: "not_found_error",
        409: "conflict_error",
        413: "invalid_request_error",
        503: "overloaded_error",
    }.get(status, "invalid_request_error" if status < 500 else "server_error")
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Basic realm="recagent", charset="UTF-8"'}
    if status == 503:
        headers = {**(headers or {}), "Retry-After": "2"}
    return StrictJSONResponse(error_body(message, kind, param, code), status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    problems, param = [], None
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        if e.get("type") == "json_invalid":
            return f"the body is not valid JSON ({e.get('ctx', {}).get('error', 'decode error')})", None
        where = ".".join(loc)
        param = param or where or None
        msg = str(e.get("msg")).removeprefix("Value error, ")  # our validators' messages are whole sentences
        problems.append(f"{where}: {msg}" if where else msg)
    return "invalid request: " + "; ".join(problems[:5]), param


def create_app(config: ServeConfig | None = None, agent=None) -> FastAPI:
    """The ASGI app for ``config`` (pass ``agent`` to serve an already built one, e.g. in tests)."""
    config = config or ServeConfig()
    server = Server(config, agent)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(server.start)
        yield
        await run_in_threadpool(server.stop)

    app = FastAPI(
        title="recagent",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(authenticate)],
        default_response_class=StrictJSONResponse,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.router.route_class = _PlainRoute
    app.state.server = server
    # added innermost first: Host check -> CORS -> timing -> key -> body, so no body is read without a key
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes, timeout_s=config.body_timeout_s)
    app.add_middleware(KeyCheck, keys=server.keys)
    app.add_middleware(RequestTimer, metrics=server.metrics)
    if config.cors_origins:  # outside the key check: it answers browsers' preflight requests, which carry no API key
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(HostCheck, allowed_hosts=config.trusted_hosts())

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError):
        return _error(exc.status, exc.message, param=exc.param, code=exc.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        message, param = _validation_message(exc)
        return _error(400, message, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        message = {
            404: f"no route {request.url.path}",
            405: f"method {request.method} not allowed on {request.url.path}",
        }
        return _error(exc.status_code, message.get(exc.status_code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        log.exception("unhandled error")
        return _error(500, f"internal error ({type(exc).__name__}); the server keeps running")

    # -- page, health, metrics, models ---------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        html = resources.files("recagent.serve").joinpath("static/index.html").read_text(encoding="utf-8")
        return HTMLResponse(html.replace("{{MODEL}}", config.model_name), headers={"Cache-Control": "no-store"})

    @app.get("/health")
    async def health() -> dict:
        env = server.agent.context.env
        return {
            "status": "ok",
            "model": config.model_name,
            "dataset": env.dataset.name,
            "policy": config.agent.policy.kind,
            "running": server.gate.running,
            "waiting": server.gate.waiting,
        }

    @app.get("/metrics")
    async def metrics() -> dict:
        g = server.gate
        return server.metrics.snapshot(
            running=g.running, waiting=g.waiting, peak_running=g.peak_running, workers=g.workers, max_queue=g.max_queue
        )

    @app.get("/v1/models")
    async def models() -> dict:
        return {
            "object": "list",
            "data": [
                {
                    "id": config.model_name,
                    "object": "model",
                    "created": int(server.metrics.started),
                    "owned_by": "recagent",
                }
            ],
        }

    async def owned(owner: str, session_id: str):
        """The caller's session, or 404 (another key's session is as unknown as a missing one)."""
        info = await run_in_threadpool(server.store.get, owner, session_id)
        if info is None:
            raise RequestError(
                f"unknown session_id {session_id!r}", param="session_id", status=404, code="session_not_found"
            )
        return info

    # -- chat completions ----------------------------------------------------------------------------------------------

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, owner: str = Depends(authenticate)):
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
            await owned(owner, session)
            seed = []  # the session's history is on the server; earlier messages in the request are not replayed
        thread = session or f"tmp-{uuid.uuid4().hex}"
        _admit(server, thread)
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
                failure = _turn_error(data, server.upstream)
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

    # -- sessions and users --------------------------------------------------------------------------------------------

    @app.post("/v1/sessions", status_code=201)
    async def create_session(body: SessionCreate | None = None, owner: str = Depends(authenticate)) -> dict:
        body = body or SessionCreate()
        server.check_user(body.user_id)
        info = await run_in_threadpool(server.store.create, owner, body.user_id, body.title)
        if body.user_id is not None:
            await run_in_threadpool(server.agent.set_user, info.id, body.user_id)
        return info.public()

    @app.get("/v1/sessions")
    async def list_sessions(limit: int = 100, owner: str = Depends(authenticate)) -> dict:
        rows = await run_in_threadpool(server.store.list, owner, max(1, min(limit, 1000)))
        return {"object": "list", "data": [r.public() for r in rows]}

    @app.get("/v1/sessions/{session_id}")
    async def get_session(session_id: str, owner: str = Depends(authenticate)) -> dict:
        info = await owned(owner, session_id)
        turns = await run_in_threadpool(server.agent.turns, session_id)
        out = [
            {**t, "items": [server.card(i) for i in t["recommended"]], "trace": [s.to_dict() for s in t["trace"]]}
            for t in turns
        ]
        return {**info.public(), "messages": out}

    @app.patch("/v1/sessions/{session_id}")
    async def update_session(session_id: str, body: SessionUpdate, owner: str = Depends(authenticate)) -> dict:
        await owned(owner, session_id)
        server.check_user(body.user_id)
        _admit(server, session_id)  # not while a turn of this session runs
        try:
            if body.user_id is not None:
                await run_in_threadpool(server.agent.set_user, session_id, body.user_id)
            fields = {k: v for k, v in (("user_id", body.user_id), ("title", body.title)) if v is not None}
            await run_in_threadpool(lambda: server.store.update(owner, session_id, **fields))
        finally:
            server.gate.finish(session_id, started=False)
        return (await owned(owner, session_id)).public()

    @app.delete("/v1/sessions/{session_id}", status_code=204)
    async def delete_session(session_id: str, owner: str = Depends(authenticate)) -> Response:
        await owned(owner, session_id)
        _admit(server, session_id)
        try:
            await run_in_threadpool(server.agent.reset, session_id)
            await run_in_threadpool(server.store.delete, owner, session_id)
        finally:
            server.gate.finish(session_id, started=False)
        return Response(status_code=204)

    @app.get("/v1/users")
    async def list_users(offset: int = 0, limit: int = 100) -> dict:
        ids = server.agent.context.env.dataset.users.ids
        offset, limit = max(0, offset), max(1, min(limit, 1000))
        return {"object": "list", "total": len(ids), "data": ids[offset : offset + limit]}

    @app.get("/v1/users/{user_id}")
    async def get_user(user_id: str, recent: int = 10) -> dict:
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

    return app


def _admit(server: Server, thread: str) -> None:
    try:
        server.gate.admit(thread)
    except QueueFull:
        raise RequestError(
            f"server busy: {server.gate.workers} turns running and {server.gate.max_queue} waiting; retry shortly",
            status=503,
            code="queue_full",
        ) from None
    except SessionBusy:
        raise RequestError(
            "a turn of this session is still running; send the next message after it",
            param="session_id",
            status=409,
            code="session_busy",
        ) from None


def _turn_error(exc: Exception, upstream: bool) -> RequestError:
    """A failed turn: 502 when the policy is a remote server (it failed, not us), else 500."""
    if isinstance(exc, AfterSave):
        return RequestError(str(exc), status=500, code="reply_failed")
    status = 502 if upstream else 500
    if isinstance(exc, RecagentError):
        return RequestError(str(exc), status=status, code="turn_failed")
    return RequestError(
        f"the turn failed ({type(exc).__name__}); the session was left as it was", status=status, code="turn_failed"
    )


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
                err = _turn_error(data, server.upstream)
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
