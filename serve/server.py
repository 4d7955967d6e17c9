"""What every route shares (config, agent, session table, admission gate, metrics, worker threads) and one agent turn.

The agent (tools, policy, session database) is loaded when the app starts, not at import. Agent turns
run in a thread pool of ``workers`` threads behind :class:`~recagent.serve.gate.TurnGate`; a local
model's calls are serialised by a lock in the agent context, while tool calls of different sessions
overlap. A turn whose client went away still finishes and is saved in its session.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.concurrency import run_in_threadpool

from recagent.errors import RecagentError
from recagent.serve.auth import KeyRing
from recagent.serve.config import ServeConfig
from recagent.serve.gate import QueueFull, SessionBusy, TurnGate
from recagent.serve.metrics import Metrics
from recagent.serve.protocol import RequestError
from recagent.serve.sessions import SessionInfo, SessionStore
from recagent.tools.schemas import item_info

log = logging.getLogger("recagent.serve")


class Server:
    """Everything the routes share: config, agent, session table, admission gate, metrics, worker threads."""

    def __init__(self, config: ServeConfig, agent=None):
        self.config = config
        self.agent = agent
        self._owns_agent = agent is None
        self.keys = KeyRing(config.keys())
        self.metrics = Metrics(live=self.queue_gauges)
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
        saver.setup()  # create the checkpoint tables (SQLite: and switch to WAL) before any turn runs
        self.store = SessionStore.beside(saver)  # the session table in the same database (SQLite or PostgreSQL)
        self.gate = TurnGate(self.config.workers, self.config.max_queue)
        self.pool = ThreadPoolExecutor(self.config.workers, thread_name_prefix="recagent-turn")
        self.metrics.tool_names = frozenset(s["function"]["name"] for s in self.agent.context.tool_schemas)

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

    def queue_gauges(self) -> dict[str, int]:
        """The admission gate's numbers now, read by both views of /metrics on the event loop; empty before start."""
        g = self.gate
        if g is None:
            return {}
        return {
            "running": g.running,
            "waiting": g.waiting,
            "peak_running": g.peak_running,
            "workers": g.workers,
            "max_queue": g.max_queue,
        }

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

    async def owned(self, owner: str, session_id: str) -> SessionInfo:
        """The caller's session, or 404 (another key's session is as unknown as a missing one)."""
        info = await run_in_threadpool(self.store.get, owner, session_id)
        if info is None:
            raise RequestError(
                f"unknown session_id {session_id!r}", param="session_id", status=404, code="session_not_found"
            )
        return info

    def admit(self, thread: str) -> None:
        """Take a place in the gate for ``thread`` now, or refuse: 503 when the queue is full, 409 while it runs."""
        try:
            self.gate.admit(thread)
        except QueueFull:
            raise RequestError(
                f"server busy: {self.gate.workers} turns running and {self.gate.max_queue} waiting; retry shortly",
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


class AfterSave(RecagentError):
    """A failure after the turn was saved; its message says what was kept (a 500 even with a remote policy: it is ours)."""


def after_save_note(session: str | None, failure: str) -> str:
    """One line for a failure after a finished turn: what failed, and what the server kept."""
    if session is None:
        return f"the answer was ready, but {failure}; this stateless request kept nothing"
    return f"the turn was saved in session {session}, but {failure}; GET /v1/sessions/{session} shows what was saved"


def turn_error(exc: Exception, upstream: bool) -> RequestError:
    """A failed turn: 502 when the policy is a remote server (it failed, not us), else 500."""
    if isinstance(exc, AfterSave):
        return RequestError(str(exc), status=500, code="reply_failed")
    status = 502 if upstream else 500
    if isinstance(exc, RecagentError):
        return RequestError(str(exc), status=status, code="turn_failed")
    return RequestError(
        f"the turn failed ({type(exc).__name__}); the session was left as it was", status=status, code="turn_failed"
    )
