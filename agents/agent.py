"""The Python API: build an agent from a config, then chat, recommend, or stream.

    from recagent.agents import Agent, AgentConfig
    agent = Agent.from_config(AgentConfig())          # offline defaults
    print(agent.chat("a funny film for tonight", session="me").answer)

Sessions are LangGraph threads in a checkpointer (a SQLite file by default, or PostgreSQL for several
server processes: ``config.sessions``, see :mod:`recagent.agents.session_db`), so a conversation survives
a restart and sessions never see each other's state.

The text index behind ``search_items`` (faiss plus the MiniLM query encoder, about 6 s to load)
is loaded in a background thread when :meth:`Agent.from_config` loads the tools itself (the
chat command, the server): startup stays fast, the user types while it loads, and a turn that
starts before it is ready waits for it rather than loading it a second time. Code that passes
its own ``env`` (tests, evaluation) gets no preload unless it asks with ``preload_index=True``.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage

from recagent.agents.config import AgentConfig, AgentContext, make_policy
from recagent.agents.context import turn_starts
from recagent.agents.graph import build_graph
from recagent.agents.prompts import LISTWISE_REQUEST
from recagent.agents.session_db import SessionsConfig, open_checkpointer
from recagent.agents.steps import StepRecord
from recagent.errors import RecagentError
from recagent.paths import recagent_home

log = logging.getLogger(__name__)
WARM_UP_QUERY = "a film"  # encoded once so the query encoder's weights are loaded before the first search


@dataclass
class TurnResult:
    """One turn's outcome: the answer, the recommended ids, and the steps taken."""

    answer: str
    recommended: list[str]
    trace: list[StepRecord] = field(default_factory=list)
    filled: int = 0
    policy_answer: str | None = None  # the policy's own last answer text (None: it never answered, a fallback did)
    usage: dict[str, int] = field(default_factory=dict)  # llm_calls, input_tokens, output_tokens of this turn

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``recagent chat --json``)."""
        return {
            "answer": self.answer,
            "recommended": self.recommended,
            "filled": self.filled,
            "policy_answer": self.policy_answer,
            "usage": self.usage,
            "trace": [s.to_dict() for s in self.trace],
        }


def turn_usage(messages: list[Any]) -> tuple[str | None, dict[str, int]]:
    """The policy's last answer text among a turn's messages, and its LLM calls and tokens."""
    from recagent.agents.graph import FALLBACK

    answer, usage = None, {"llm_calls": 0, "input_tokens": 0, "output_tokens": 0}
    for m in messages:
        if not isinstance(m, AIMessage) or m.additional_kwargs.get(FALLBACK):
            continue
        usage["llm_calls"] += 1
        meta = m.usage_metadata or {}
        usage["input_tokens"] += meta.get("input_tokens", 0)
        usage["output_tokens"] += meta.get("output_tokens", 0)
        if not m.tool_calls and not m.invalid_tool_calls:
            answer = m.text if isinstance(m.text, str) else str(m.content)
    return answer, usage


def preload_text_index(env) -> threading.Thread:
    """Start loading ``env``'s text index and query encoder in a daemon thread; returns the thread."""

    def load() -> None:
        try:
            env.encode_query(WARM_UP_QUERY)  # loads the faiss index, then the encoder's weights
        except Exception as e:  # e.g. the encoder package is missing: search_items will say so as a tool error
            log.warning("could not preload the text index: %s", e)

    thread = threading.Thread(target=load, name="recagent-index-preload", daemon=True)
    thread.start()
    return thread


def sessions_db() -> Path:
    """Where chat sessions are stored."""
    return recagent_home() / "sessions.sqlite"


class Agent:
    """A conversational / list-wise recommender agent over the recagent tools."""

    def __init__(self, context: AgentContext, db_path: Path | None = None, preload_index: bool = False):
        """``db_path``: keep sessions in this SQLite file, whatever ``context.config.sessions`` says (tests,
        evaluation runs); without it, where the config says (default ``$RECAGENT_HOME/sessions.sqlite``)."""
        from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

        self.context = context
        self.db_path = db_path or sessions_db()
        sessions = SessionsConfig() if db_path is not None else context.config.sessions
        # step records are our own dataclass: allow exactly that type when reading checkpoints back
        serde = JsonPlusSerializer(allowed_msgpack_modules=[("recagent.agents.steps", "StepRecord")])
        saver, self._close_db = open_checkpointer(sessions, self.db_path, serde)
        self.graph = build_graph(saver)
        self._oneshot = build_graph()
        self.index_preload: threading.Thread | None = preload_text_index(context.env) if preload_index else None

    @classmethod
    def from_config(
        cls,
        config: AgentConfig | None = None,
        policy=None,
        env=None,
        db_path: Path | None = None,
        preload_index: bool | None = None,
    ) -> Agent:
        """Load tools and policy from ``config`` (pass ``policy``/``env`` to reuse loaded ones).

        ``preload_index``: load the search index in the background now; by default only when the
        tools are loaded here (``env`` not given), so tests with their own env never pay for it.
        """
        from recagent.tools.env import ToolEnv
        from recagent.tools.recommender_tools import build_registry

        config = config or AgentConfig()
        if preload_index is None:
            preload_index = env is None
        env = env or ToolEnv.load(config.tools)
        schemas = build_registry(env).openai_schemas()
        ctx = AgentContext(env=env, policy=policy or make_policy(config.policy), config=config, tool_schemas=schemas)
        return cls(ctx, db_path, preload_index=preload_index)

    def _await_index(self) -> None:
        """Wait for a running index preload, so a turn's first search never loads the index a second time."""
        if self.index_preload is not None and self.index_preload.is_alive():
            self.index_preload.join()

    def close(self) -> None:
        """Close the session database (its connection, or its PostgreSQL connection pool)."""
        self._close_db()

    # -- conversation ----------------------------------------------------------------------------------------------

    def _thread(self, session: str) -> dict:
        return {"configurable": {"thread_id": session}, "recursion_limit": 4 * self.context.config.max_steps + 10}

    def _input(self, message: str, user_id: str | None) -> dict:
        update: dict[str, Any] = {"messages": [HumanMessage(message)], "mode": "chat"}
        if user_id is not None:
            update["user"] = self.user_profile(user_id)
        return update

    def chat(self, message: str, session: str = "default", user_id: str | None = None) -> TurnResult:
        """Send one user message in ``session`` and return the agent's answer."""
        result = None
        for kind, data in self.stream(message, session, user_id, tokens=False):
            if kind == "result":
                result = data
        return result

    def _rollback(self, session: str, known_ids: set[str]) -> None:
        """Remove what a failed turn added, so the session continues as if it had not happened."""
        added = [m for m in self.state(session).get("messages", []) if m.id not in known_ids]
        if added:
            self.graph.update_state(self._thread(session), {"messages": [RemoveMessage(id=m.id) for m in added]})

    def _fail(self, exc: Exception) -> RecagentError:
        if self.context.config.policy.kind == "openai":
            from recagent.agents.policies.openai_compat import explain_failure

            why = explain_failure(exc, self.context.config.policy)
            if why:
                return RecagentError(f"{why}; the session was left as it was before this message")
        return RecagentError(f"the turn failed ({type(exc).__name__}: {exc}); the session was left as it was before it")

    def stream(
        self, message: str, session: str = "default", user_id: str | None = None, tokens: bool = True
    ) -> Iterator[tuple[str, Any]]:
        """Yield ``("token", text)`` as the policy writes, ``("step", StepRecord)`` as steps finish, then ``("result", TurnResult)``."""
        if not message.strip():
            raise RecagentError("empty message")
        self._await_index()
        prior = self.state(session)
        before, known = len(prior.get("trace") or []), {m.id for m in prior.get("messages", [])}
        modes = ["messages", "updates"] if tokens else ["updates"]
        try:
            for mode, data in self.graph.stream(
                self._input(message, user_id), self._thread(session), context=self.context, stream_mode=modes
            ):
                if mode == "messages":
                    chunk, meta = data
                    if meta.get("langgraph_node") == "policy" and isinstance(chunk.content, str) and chunk.content:
                        yield "token", chunk.content
                else:
                    for update in data.values():
                        for step in (update or {}).get("trace", []) if isinstance(update, dict) else []:
                            yield "step", step
        except RecagentError:
            self._rollback(session, known)
            raise
        except Exception as e:  # a policy server or model failure must not leave a half-finished turn behind
            self._rollback(session, known)
            raise self._fail(e) from e
        st = self.state(session)
        answer, usage = turn_usage([m for m in st.get("messages", []) if m.id not in known])
        yield (
            "result",
            TurnResult(
                st.get("answer", ""),
                st.get("recommended", []),
                (st.get("trace") or [])[before:],
                policy_answer=answer,
                usage=usage,
            ),
        )

    def state(self, session: str) -> dict:
        """The stored state of a session (empty for a new one)."""
        snap = self.graph.get_state(self._thread(session))
        return dict(snap.values or {})

    def seed(self, session: str, messages: list[tuple[str, str]]) -> None:
        """Start ``session`` from an earlier conversation given as (role, text) pairs, role "user" or "assistant"."""
        if not messages:
            return
        known = {"user": HumanMessage, "assistant": AIMessage}
        bad = [role for role, _ in messages if role not in known]
        if bad:
            raise RecagentError(f"a conversation holds user and assistant messages, not {bad[0]!r}")
        self.graph.update_state(
            self._thread(session), {"messages": [known[r](t) for r, t in messages]}, as_node="start_turn"
        )

    def turns(self, session: str) -> list[dict[str, Any]]:
        """The session's conversation as turns: the user's message, the answer, its recommended ids and its steps."""
        st = self.state(session)
        trace, messages = st.get("trace") or [], st.get("messages", [])
        starts = turn_starts(messages)
        out: list[dict[str, Any]] = []
        for begin, end in zip(starts, [*starts[1:], len(messages)]):
            answers = [
                m.text
                for m in messages[begin + 1 : end]
                if isinstance(m, AIMessage) and not m.tool_calls and not m.invalid_tool_calls
            ]
            # the last answer of a turn is the one the check accepted
            out.append(
                {"user": messages[begin].text, "answer": answers[-1] if answers else "", "recommended": [], "trace": []}
            )
        # turns seeded from a client's history have no steps: match the recorded turns from the end
        first = len(out) - (st.get("turn", -1) + 1)
        for s in trace:
            if 0 <= first + s.turn < len(out):
                t = out[first + s.turn]
                t["trace"].append(s)
                if s.kind == "answer":
                    t["recommended"] = list(s.result_item_ids)
        if st.get("answer") and out:  # the accepted answer as delivered (a note may have been added to it)
            out[-1]["answer"] = st["answer"]
        return out

    def reset(self, session: str) -> None:
        """Forget a session."""
        self.graph.checkpointer.delete_thread(session)

    def set_user(self, session: str, user_id: str) -> dict:
        """Attach a dataset user (and their visible history) to a session."""
        profile = self.user_profile(user_id)
        self.graph.update_state(self._thread(session), {"user": profile}, as_node="start_turn")
        return profile

    def user_profile(self, user_id: str, env=None) -> dict:
        """Profile of a dataset user: id and the items tools may see as their history."""
        env = env or self.context.env
        u = env.dataset.users.index_of.get(str(user_id))
        if u is None:
            raise RecagentError(
                f"unknown user {user_id!r}; {env.dataset.name} has users {env.dataset.users.ids[0]}..{env.dataset.users.ids[-1]}"
            )
        return {"user_id": str(user_id), "seen": [env.catalog.ids[i] for i in env.history(u)]}

    # -- list-wise -------------------------------------------------------------------------------------------------

    def recommend(
        self, user_id: str, k: int | None = None, candidates: list[str] | None = None, history_limit: int | None = None
    ) -> TurnResult:
        """ToolRec-style: act for a dataset user, call tools, return a ranked top-k list of item ids.

        ``candidates``: rank exactly these ids (listed to the policy in the given order, saved as the
        candidate set ``candidates``); ``history_limit``: the tools see only the user's last n items.
        """
        k = k or self.context.config.k
        self._await_index()
        ctx = self.context
        if history_limit is not None:
            ctx = replace(ctx, env=ctx.env.with_history_limit(history_limit))
        state = {
            "messages": [HumanMessage(LISTWISE_REQUEST.format(k=k, user_id=user_id))],
            "mode": "listwise",
            "k": k,
            "user": self.user_profile(user_id, ctx.env),
        }
        if candidates:
            unknown = [i for i in candidates if str(i) not in ctx.env.catalog.index_of]
            if unknown:
                raise RecagentError(f"candidates not in the catalog: {unknown[:5]}")
            pool = list(dict.fromkeys(str(i) for i in candidates))
            state.update(
                pool=pool,
                candidates={"candidates": pool},
                grounded_ids=pool,
                messages=[HumanMessage(f"Rank the {len(pool)} candidates for user {user_id}; give the best {k}.")],
            )
        config = {
            "configurable": {"thread_id": f"listwise-{uuid.uuid4().hex}"},
            "recursion_limit": 4 * self.context.config.max_steps + 10,
        }
        out = self._oneshot.invoke(state, config, context=ctx)
        answer, usage = turn_usage(out.get("messages", []))
        return TurnResult(
            out.get("answer", ""),
            out.get("recommended", []),
            out.get("trace") or [],
            out.get("filled", 0),
            policy_answer=answer,
            usage=usage,
        )
