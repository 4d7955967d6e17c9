"""The systems under evaluation behind one call: a conventional recommender or the list-wise agent.

Both answer a :class:`~recagent.evaluation.protocols.Request` with a :class:`Response`: the final
ranked list (what a user would see) plus what the system itself produced before any guard or fill
(the agent's raw answer), so hallucination and compliance are measured on the raw output and
utility on the delivered list. For the agent the response also says which delivered items nothing
supports (:mod:`recagent.evaluation.shipped`): no tool returned them, they were not among the
candidates, and the fallback did not fill them in. A failing system gives an empty, unparsed
response: it is counted as a miss, never dropped.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from recagent.agents.steps import policy_calls
from recagent.evaluation.protocols import Request
from recagent.evaluation.shipped import classify_shipped, tool_result_ids
from recagent.tools.recommenders import Query, Recommender


@dataclass
class Response:
    """What a system answered: the delivered list, its raw output, and what it cost."""

    ranked: list[str]
    raw_ids: list[str] = field(default_factory=list)  # ids in the system's own output, before guards and fills
    parsed: bool = True  # the raw output was a readable list
    filled: int = 0  # slots completed by a fallback, not chosen by the system
    latency_s: float = 0.0
    llm_calls: int = 0
    tool_calls: int = 0
    invalid_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None
    # the agent only (None: not measured; a conventional recommender ships nothing but its own ranking)
    shipped_items: int | None = None  # distinct items in the delivered list
    unsupported_shipped: list[str] | None = None  # those no tool returned, not given as candidates, not filled

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


class System(Protocol):
    """Anything that answers evaluation requests."""

    name: str

    def answer(self, request: Request) -> Response:
        """Rank for the request."""
        ...


class RecommenderSystem:
    """A trained conventional recommender, ranking the catalog or the given candidates by its scores."""

    def __init__(self, name: str, model: Recommender, item_ids: list[str], index_of: dict[str, int]):
        self.name, self.model, self.item_ids, self.index_of = name, model, item_ids, index_of

    def answer(self, request: Request) -> Response:
        """Top-k by score; with a truncated history the user is dropped so user factors cannot see the rest."""
        t0 = time.perf_counter()
        user = None if request.history_limit is not None else request.user
        query = Query(history=np.asarray(request.history, dtype=np.int64), user=user)
        if request.candidates:
            pool = np.asarray([self.index_of[i] for i in request.candidates], dtype=np.int64)
            scores = self.model.score([query])[0][pool].astype(np.float64)
            # ties broken by item index, as in full ranking: the order candidates came in cannot matter
            top = pool[np.lexsort((pool, -scores))][: request.k]
        else:
            top, _ = self.model.topk(query, request.k, exclude=request.seen)
        ranked = [self.item_ids[i] for i in top]
        return Response(ranked=ranked, raw_ids=list(ranked), latency_s=time.perf_counter() - t0)


class AgentSystem:
    """The recagent agent in list-wise mode (ToolRec-style), with its answer check and fallback as deployed."""

    def __init__(self, agent, name: str = "agent"):
        self.agent, self.name = agent, name

    def answer(self, request: Request) -> Response:
        """Run one list-wise episode; a crash of the episode is an empty, unparsed response."""
        from recagent.agents.prompts import listwise_ids

        t0 = time.perf_counter()
        try:
            out = self.agent.recommend(
                request.user_id,
                k=request.k,
                candidates=list(request.candidates) or None,
                history_limit=request.history_limit,
            )
        except Exception as e:  # one failing episode must not end the run; it is scored as a miss
            return Response(
                ranked=[],
                parsed=False,
                latency_s=time.perf_counter() - t0,
                error=f"{type(e).__name__}: {e}"[:300],
                shipped_items=0,
                unsupported_shipped=[],
            )
        raw = listwise_ids(out.policy_answer) if out.policy_answer else []
        calls = policy_calls(out.trace)
        # list-wise: the delivered list is what ships (the answer text is the policy's raw list, measured above)
        shipped = classify_shipped(
            out.recommended,
            out.filled,
            tool_result_ids(out.trace),
            self.agent.context.env.catalog,
            pool=request.candidates,
        )
        return Response(
            ranked=list(out.recommended),
            raw_ids=raw,
            parsed=bool(raw),
            filled=out.filled,
            latency_s=time.perf_counter() - t0,
            llm_calls=out.usage.get("llm_calls", 0),
            tool_calls=len(calls),
            invalid_calls=sum(not s.valid for s in calls),
            input_tokens=out.usage.get("input_tokens", 0),
            output_tokens=out.usage.get("output_tokens", 0),
            shipped_items=len(shipped.items),
            unsupported_shipped=shipped.unsupported,
        )
