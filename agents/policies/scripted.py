"""A scripted policy: replays fixed AI messages, for deterministic tests and demos of the agent loop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field


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
