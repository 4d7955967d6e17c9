"""The tool agent and the transcript: calls executed for real, recorded as OpenAI messages and step records.

Both generators talk to the tools through a :class:`DialogBuilder`: it renames a call's core
arguments to the offered variant's names (in the schema's property order, which is the order
the constrained local decoder writes), runs it through :class:`OfferedTools`, appends the
assistant and tool messages, and records one :class:`~recagent.agents.steps.StepRecord` per
call and per answer, the same record the agent writes at serving time.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from recagent.agents.grounding import ground_answer
from recagent.agents.prompt_format import strict_call_json
from recagent.agents.steps import StepRecord, summarise_result
from recagent.synth.tool_pool import OfferedTools
from recagent.tools.toolkit import ToolOutcome


def canonical_arguments(args: dict[str, Any] | str) -> str:
    """Arguments as ``json.dumps(obj, ensure_ascii=False)`` writes them (the one form training text may contain).

    A model's raw argument text is re-serialised when it parses to an object; text that does not
    parse is kept as written, so the verifier rejects the dialog with the model's own mistake.
    """
    if isinstance(args, str):
        try:
            obj = strict_call_json(args)
        except ValueError:
            return args
        return json.dumps(obj, ensure_ascii=False) if isinstance(obj, dict) else args
    return json.dumps(args, ensure_ascii=False)


class GenerationFailed(Exception):
    """The dialog cannot be completed as planned (a call failed, a result was empty); the attempt is dropped."""


class DialogBuilder:
    """Accumulates one dialog's messages and steps while executing its calls."""

    def __init__(self, offered: OfferedTools, catalog, call_seed: str):
        self.offered, self.catalog, self._seed = offered, catalog, call_seed
        self.messages: list[dict[str, Any]] = []
        self.steps: list[StepRecord] = []
        self.seen_ids: set[str] = set()
        self.turn, self._index, self._calls = -1, 0, 0

    # -- messages ------------------------------------------------------------------------------------------------

    def system(self, text: str) -> None:
        """The system message (must come first)."""
        self.messages.append({"role": "system", "content": text})

    def user(self, text: str) -> None:
        """A user turn; starts a new conversation turn."""
        self.turn += 1
        self._index = 0
        self.messages.append({"role": "user", "content": text})

    def say(self, text: str) -> None:
        """An assistant text reply (an answer, a clarifying question or a refusal)."""
        g = ground_answer(text, self.catalog, self.seen_ids)
        self.messages.append({"role": "assistant", "content": text})
        self.steps.append(StepRecord(self.turn, self._index, "answer", result_item_ids=g.supported + g.unsupported))
        self._index += 1

    def offered_args(self, core: str, core_args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The offered tool name and its arguments (renamed, in schema order) for a core call."""
        v = self.offered.by_core(core)
        if v is None:
            raise GenerationFailed(f"no offered variant of {core}")
        renamed = {v.offered_param(k): val for k, val in core_args.items() if val is not None}
        order = list(v.schema["function"]["parameters"]["properties"])
        return v.name, {
            k: renamed[k] for k in sorted(renamed, key=lambda k: order.index(k) if k in order else len(order))
        }

    def call(self, *calls: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """One assistant message calling the given core tools (in parallel); returns their results."""
        offered = [self.offered_args(core, args) for core, args in calls]
        return self.call_offered(offered)

    def call_offered(self, calls: list[tuple[str, dict[str, Any] | str]], strict: bool = True) -> list[dict[str, Any]]:
        """Like :meth:`call` with offered names and arguments; with ``strict`` a failed call aborts the dialog."""
        tool_calls, outcomes = [], []
        for name, args in calls:
            self._calls += 1
            call_id = "call_" + hashlib.sha256(f"{self._seed}:{self._calls}".encode()).hexdigest()[:24]
            text = canonical_arguments(args)
            tool_calls.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": text}})
            out = self.offered.call(name, args)
            if strict and not out.ok:
                raise GenerationFailed(f"{name} failed: {out.error.message}")
            outcomes.append((call_id, out))
        self.messages.append({"role": "assistant", "content": None, "tool_calls": tool_calls})
        results = []
        for call_id, out in outcomes:
            self.messages.append(out.message(call_id))
            self._record(call_id, out)
            results.append(out.result if out.ok else {})
        return results

    def _record(self, call_id: str, out: ToolOutcome) -> None:
        summary, ids = summarise_result(out.result) if out.ok else ("", [])
        self.seen_ids.update(ids)
        self.steps.append(
            StepRecord(
                self.turn,
                self._index,
                "tool_call" if out.ok else "invalid_call",
                tool=out.name,
                arguments=out.arguments,
                call_id=call_id,
                valid=out.ok,
                error=None if out.ok else f"{out.error.error}: {out.error.message}",
                result_summary=summary,
                result_item_ids=ids,
                latency_ms=round(out.latency_ms, 3),
            )
        )
        self._index += 1
