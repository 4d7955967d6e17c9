"""The step record: one dataclass per agent step, shared by the trace, rewards, evaluation and synthesis.

A step is one policy decision and what came of it: a tool call (valid or not, executed or
not, with a short summary of its result), a rejected answer, or the final answer. The RL
trainer, the evaluator and the synthesis verifier all read these records, so what the agent
did is described once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

StepKind = Literal["tool_call", "invalid_call", "answer", "rejected_answer"]
FALLBACK_CALL_ID = "fallback"  # call_id of a call the agent's fallback made, not the policy


@dataclass
class StepRecord:
    """One agent step: the call or answer, whether it was valid, what it returned, and what it cost."""

    turn: int  # conversation turn (0-based); steps of one turn share it
    index: int  # step number within the turn
    kind: StepKind
    tool: str | None = None
    arguments: dict[str, Any] | str | None = None
    call_id: str | None = None
    valid: bool = True  # parsed, named a bound tool, passed the schema and ran without error
    error: str | None = None  # error kind and message when not valid
    result_summary: str | None = None  # short human-readable summary of the tool result
    result_item_ids: list[str] = field(default_factory=list)  # catalog ids the result (or answer) contained
    latency_ms: float = 0.0  # tool execution time (for calls) or policy time (for answers)
    input_tokens: int = 0
    output_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for --json output, datasets and reports)."""
        return asdict(self)


def policy_calls(trace: list[StepRecord]) -> list[StepRecord]:
    """The tool calls the policy itself made (valid or not), leaving out the fallback's."""
    return [s for s in trace if s.kind in ("tool_call", "invalid_call") and s.call_id != FALLBACK_CALL_ID]


def summarise_result(result: dict[str, Any] | None, limit: int = 5) -> tuple[str, list[str]]:
    """A one-line summary of a tool result and the catalog ids it names."""
    if not result:
        return "", []
    items = result.get("items")
    if isinstance(items, list):
        ids = [str(it["item_id"]) for it in items if isinstance(it, dict) and "item_id" in it]
        head = ", ".join(f"{it['item_id']} {it.get('title', '')}".strip() for it in items[:limit])
        more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
        saved = f"; saved as {result['candidate_set']}" if result.get("candidate_set") else ""
        return f"{len(items)} items: {head}{more}{saved}", ids
    if isinstance(result.get("item"), dict):
        it = result["item"]
        alts = [str(a["item_id"]) for a in result.get("alternatives", [])]
        return f"item {it['item_id']} {it.get('title', '')}", [str(it["item_id"]), *alts]
    return ", ".join(f"{k}={v}" for k, v in list(result.items())[:4])[:200], []
