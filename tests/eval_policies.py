"""Deterministic chat models for evaluation tests: they read the prompt and act, as many times as asked."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field


class FirstListedPolicy(BaseChatModel):
    """Ranks given candidates in the order they are listed (a maximally position-biased ranker); otherwise asks
    ``retrieve_for_user`` for the user and answers with its result."""

    @property
    def _llm_type(self) -> str:
        return "first-listed"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any):
        return self

    def _step(self, messages: list[BaseMessage]) -> AIMessage:
        system, last = messages[0].content, messages[-1]
        if isinstance(last, ToolMessage):
            items = (last.artifact or {}).get("items", [])
            if "JSON list" in system:
                return AIMessage(json.dumps([it["item_id"] for it in items[:10]]))
            return AIMessage("Try " + "; ".join(f"{it['title']} ({it['year']}) [{it['item_id']}]" for it in items[:5]))
        if "candidate set" in system:
            return AIMessage(json.dumps(re.findall(r"^\[([^\]]+)\]", system, re.M)[:10]))
        # "acting for user 63 of the ..." (list-wise) or "the user is user_id 63 of the dataset" (chat)
        user = re.search(r"\buser(?:_id)? (\S+) of\b", system).group(1)
        return AIMessage(
            "",
            tool_calls=[
                {"name": "retrieve_for_user", "args": {"user_id": user, "k": 10}, "id": "c1", "type": "tool_call"}
            ],
        )

    def _generate(self, messages, stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        msg = self._step(messages)
        msg.usage_metadata = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        return ChatResult(generations=[ChatGeneration(message=msg)])


class InventingPolicy(FirstListedPolicy):
    """:class:`FirstListedPolicy`, but every answer also names one real item that no tool returned and no candidate
    list holds (the first of ``extras`` that qualifies): the last slot of a list-wise answer, an extra citation in chat."""

    extras: list[str] = Field(default_factory=list)

    def _step(self, messages: list[BaseMessage]) -> AIMessage:
        msg = super()._step(messages)
        if msg.tool_calls:
            return msg
        known = set(re.findall(r"^\[([^\]]+)\]", messages[0].content, re.M))  # listed candidates
        for m in messages:
            if isinstance(m, ToolMessage):
                known |= {str(it["item_id"]) for it in (m.artifact or {}).get("items", [])}
        pick = next(i for i in self.extras if i not in known)
        if msg.content.startswith("["):
            return AIMessage(json.dumps([*json.loads(msg.content)[:-1], pick]))
        return AIMessage(f"{msg.content}; also [{pick}]")


def accept_every_answer(state, runtime) -> dict:
    """A broken answer check (for tests only): ships whatever the answer names, supported or not.

    Patch it over ``recagent.agents.graph.check`` before the agent is built, to see that the
    evaluation notices what such an agent ships.
    """
    from recagent.agents.grounding import ground_answer
    from recagent.agents.prompts import listwise_ids

    ai = state["messages"][-1]
    text = ai.text if isinstance(ai.text, str) else str(ai.content)
    if state.get("mode") == "listwise":
        ids = list(dict.fromkeys(listwise_ids(text)))[: state.get("k", 10)]
    else:
        g = ground_answer(text, runtime.context.env.catalog, set(state.get("grounded_ids") or []))
        ids = [*g.supported, *g.unsupported]
    return {"answer": text, "recommended": ids, "filled": 0}
