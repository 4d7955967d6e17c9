"""What the agent finally shipped, and which of it no tool, candidate list or fill accounts for.

The agent's answer check is meant to guarantee that an item reaches the user only if a tool
returned it in this conversation, it was among the given candidates (list-wise mode), or the
default recommender filled the list in (counted in ``filled``). Hallucination and compliance
are measured on the policy's raw output; this module measures the guarantee itself, on the
*shipped* output: the delivered list and, for chat turns, every item the delivered answer text
names (read with :func:`recagent.agents.grounding.ground_answer`, the same reader the check uses).

Support is rebuilt from the trace, independently of the agent's own bookkeeping: the ids of
every tool result of the conversation (``StepRecord.result_item_ids`` of tool calls, the
fallback's own call included), the candidate pool, and the last ``filled`` ids of the delivered
list (``agents/graph.py`` ``_finish`` appends fills after the accepted ids). A mention that is no
catalog item at all (``unknown``) is unsupported as well.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Shipped:
    """The distinct items one turn shipped, and those among them nothing supports."""

    items: list[str] = field(default_factory=list)  # catalog ids (and unknown mentions, as written) in shipped order
    unsupported: list[str] = field(default_factory=list)


def tool_result_ids(trace: Iterable) -> list[str]:
    """Every item id a tool call of ``trace`` returned (invalid calls return none)."""
    return [i for s in trace if s.kind == "tool_call" for i in s.result_item_ids]


def classify_shipped(
    recommended: list[str],
    filled: int,
    grounded: Iterable[str],
    catalog,
    pool: Iterable[str] = (),
    answer: str | None = None,
) -> Shipped:
    """Classify one turn's shipped output.

    ``recommended``: the delivered list; ``filled``: how many of its last ids the fallback filled in;
    ``grounded``: ids tools returned in the conversation up to this turn; ``pool``: given candidates;
    ``answer``: the delivered answer text of a chat turn (None in list-wise mode, where the list is
    what is delivered and the raw answer is measured as hallucinated slots).
    """
    recommended = [str(i) for i in recommended]
    fills = set(recommended[max(len(recommended) - filled, 0) :]) if filled > 0 else set()
    supported = set(grounded) | set(pool) | fills
    out = Shipped(items=list(dict.fromkeys(recommended)))
    bad = {i for i in out.items if i not in supported}
    if answer:
        from recagent.agents.grounding import ground_answer

        g = ground_answer(answer, catalog, supported)
        out.items += [x for x in dict.fromkeys([*g.supported, *g.unsupported, *g.unknown]) if x not in out.items]
        bad |= {*g.unsupported, *g.unknown}
    out.unsupported = [x for x in out.items if x in bad]
    return out
