"""Deterministic chat models for evaluation tests: they read the prompt and act, as many times as asked."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult


class FirstListedPolicy(BaseChatModel):
    """Ranks given candidates in the order they are listed (a maximally position-biased ranker); otherwise asks
    ``retrieve_for_user`` for the user and answers with its result."""

    @property
    def _llm_type(self) -> str:
        return "first-listed"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any):
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        system, last = messages[0].content, messages[-1]
        if isinstance(last, ToolMessage):
            items = json.loads(last.content).get("items", [])
            if "JSON list" in system:
                msg = AIMessage(json.dumps([it["item_id"] for it in items[:10]]))
            else:
                msg = AIMessage("Try " + "; ".join(f"{it['title']} ({it['year']}) [{it['item_id']}]" for it in items[:5]))
        elif "candidate set" in system:
            msg = AIMessage(json.dumps(re.findall(r"^\[([^\]]+)\]", system, re.M)[:10]))
        else:
            user = re.search(r"user(?:_id)? (\S+?)[ .]", system).group(1)
            msg = AIMessage("", tool_calls=[{"name": "retrieve_for_user", "args": {"user_id": user, "k": 10},
                                             "id": "c1", "type": "tool_call"}])  # fmt: skip
        msg.usage_metadata = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        return ChatResult(generations=[ChatGeneration(message=msg)])
