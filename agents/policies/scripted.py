"""A scripted policy: replays fixed AI messages, for deterministic tests and demos of the agent loop."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field, PrivateAttr

from recagent.agents.grounding import citation


class ScriptedPolicy(BaseChatModel):
    """Returns the next scripted reply on each call (a message, or a function of the conversation)."""

    script: list[Any] = Field(default_factory=list)  # AIMessage | Callable[[list[BaseMessage]], AIMessage]
    calls: list[list[BaseMessage]] = Field(default_factory=list)  # what the policy was shown, per call

    @property
    def _llm_type(self) -> str:
        return "recagent-scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any):
        """Tools are ignored: the script already knows what to call."""
        return self

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        self.calls.append(list(messages))
        if not self.script:
            raise RuntimeError("the scripted policy ran out of replies")
        step = self.script.pop(0)
        msg = step(messages) if isinstance(step, Callable) else step
        return ChatResult(generations=[ChatGeneration(message=msg.model_copy())])


def call(name: str, args: dict[str, Any], call_id: str | None = None) -> dict[str, Any]:
    """A langchain tool call dict."""
    return {"name": name, "args": args, "id": call_id or f"call_{name}", "type": "tool_call"}


def tool_calls(*calls: dict[str, Any]) -> AIMessage:
    """An AI message that makes the given tool calls."""
    return AIMessage("", tool_calls=list(calls))


class EchoPolicy(BaseChatModel):
    """A deterministic policy for serving tests, demos and load benchmarks, which needs no model.

    First step of a turn: ``popular_items`` (``retrieve_for_user`` for a known user). Then it answers
    with the first three items of the result, cited as ``[id] Title (Year)``, after quoting every user
    message it was shown, so a test can see exactly which conversation reached the policy. The answer
    streams word by word; ``think_s`` is slept once per call, as a model's compute would take.
    """

    think_s: float = 0.0
    word_s: float = 0.0  # pause between streamed words, so a reader can watch text arrive
    active: int = 0  # calls running now (a test reads max_active to see whether calls overlapped)
    max_active: int = 0
    _count: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "recagent-echo"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any):
        """Tools are ignored: the policy knows which two it uses."""
        return self

    def _reply(self, messages: list[BaseMessage]) -> AIMessage:
        with self._count:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.think_s)
            last = messages[-1]
            if isinstance(last, ToolMessage):
                items = (last.artifact or {}).get("items", [])[:3]
                said = " | ".join(m.text for m in messages if isinstance(m, HumanMessage))
                cited = "; ".join(citation(it["item_id"], f"{it['title']} ({it['year']})") for it in items)
                msg = AIMessage(f"You said: {said}. Try {cited}.")
            else:
                system = next((m.text for m in messages if isinstance(m, SystemMessage)), "")
                user = re.search(r"\buser(?:_id)? (\d+)\b", system)
                turn = sum(isinstance(m, HumanMessage) for m in messages)
                name, args = (
                    ("retrieve_for_user", {"user_id": user.group(1), "k": 5}) if user else ("popular_items", {"k": 5})
                )
                msg = AIMessage("", tool_calls=[call(name, args, f"echo_{turn}")])
            msg.usage_metadata = {
                "input_tokens": sum(len(m.text) for m in messages) // 4,
                "output_tokens": len(msg.text) // 4,
                "total_tokens": 0,
            }
            return msg
        finally:
            with self._count:
                self.active -= 1

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages))])

    def _stream(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any):
        msg = self._reply(messages)
        if msg.tool_calls:
            chunks = [
                {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
                for i, c in enumerate(msg.tool_calls)
            ]
            yield ChatGenerationChunk(
                message=AIMessageChunk("", tool_call_chunks=chunks, usage_metadata=msg.usage_metadata)
            )
            return
        words = re.findall(r"\S+\s*", msg.text)
        for i, w in enumerate(words):
            if i:
                time.sleep(self.word_s)
            chunk = ChatGenerationChunk(
                message=AIMessageChunk(w, usage_metadata=msg.usage_metadata if i == 0 else None)
            )
            if run_manager:
                run_manager.on_llm_new_token(w, chunk=chunk)
            yield chunk
