"""The OpenAI Chat Completions wire format, as far as this server speaks it, and the recagent extension.

Requests are validated with pydantic (unknown sampling parameters are accepted and ignored, as
other OpenAI-compatible servers do); replies carry the standard fields plus ``recagent``: the
session, the recommended items as cards, and the step trace.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class RequestError(Exception):
    """A request the server understood but cannot serve: one line, the offending parameter, an HTTP status."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.message, self.param, self.status, self.code = message, param, status, code


class TextPart(BaseModel):
    """A content part; only text is understood."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    """One message of the conversation a client sends."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    tool_calls: list[Any] | None = None

    def text(self, where: str) -> str:
        """The message as plain text (text parts joined); other parts are refused."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        other = [p.type for p in self.content if p.type != "text"]
        if other:
            raise RequestError(f"{where}: only text content is supported, not {other[0]!r}", param=where)
        return "".join(p.text or "" for p in self.content)


class StreamOptions(BaseModel):
    """OpenAI's ``stream_options``."""

    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``, with two recagent extensions: ``session_id`` and ``user_id``."""

    model_config = ConfigDict(extra="allow")  # temperature, max_tokens, user, ...: accepted, the agent config decides
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    session_id: str | None = Field(None, description="continue this server session (its history is on the server)")
    user_id: str | None = Field(None, description="the dataset user the agent acts for")

    def conversation(self, max_chars: int, max_messages: int) -> tuple[str, list[tuple[str, str]]]:
        """The new user message and the earlier user/assistant turns; system messages are not passed on."""
        if self.n != 1:
            raise RequestError("n must be 1: the agent gives one answer per turn", param="n")
        if self.tools or self.functions:
            raise RequestError("this model runs its own recommender tools; send no `tools` (client-side tools are not supported)",
                               param="tools")  # fmt: skip
        if len(self.messages) > max_messages:
            raise RequestError(f"too many messages ({len(self.messages)} > {max_messages}); use a session (session_id) "
                               "for long conversations", param="messages")  # fmt: skip
        turns: list[tuple[str, str]] = []
        for i, m in enumerate(self.messages):
            where = f"messages[{i}]"
            if m.role in ("tool", "function") or m.tool_calls:
                raise RequestError(f"{where}: role {m.role!r} with tool calls/results is not accepted; this model runs its "
                                   "own tools, send user and assistant text only", param=where)  # fmt: skip
            text = m.text(where)
            if len(text) > max_chars:
                raise RequestError(f"{where}: message too long ({len(text)} > {max_chars} characters)", param=where)
            if m.role in ("user", "assistant"):
                turns.append((m.role, text))
        last = self.messages[-1]
        if last.role != "user":
            raise RequestError(f"the last message must have role 'user' (got {last.role!r})", param=f"messages[{len(self.messages) - 1}]")
        message = turns.pop()[1]
        if not message.strip():
            raise RequestError("the last user message is empty", param=f"messages[{len(self.messages) - 1}]")
        return message, turns


class SessionCreate(BaseModel):
    """``POST /v1/sessions``."""

    model_config = ConfigDict(extra="forbid")
    user_id: str | None = None
    title: str = Field("", max_length=200)


class SessionUpdate(BaseModel):
    """``PATCH /v1/sessions/{id}``: load a dataset user, rename."""

    model_config = ConfigDict(extra="forbid")
    user_id: str | None = None
    title: str | None = Field(None, max_length=200)


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None) -> dict:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def completion_id() -> str:
    """A new completion id."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage_block(usage: dict[str, int]) -> dict[str, int]:
    """Our turn usage in OpenAI's terms."""
    p, c = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def completion(cid: str, model: str, answer: str, usage: dict[str, int], extension: dict[str, Any]) -> dict:
    """A non-streaming ``chat.completion``."""
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": usage_block(usage), "recagent": extension}  # fmt: skip


def chunk(cid: str, model: str, delta: dict | None = None, finish: str | None = None, extension: dict | None = None,
          usage: dict | None = None) -> dict:  # fmt: skip
    """A ``chat.completion.chunk`` (a usage-only chunk has no choices, as OpenAI sends it)."""
    out: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    out["choices"] = [] if usage is not None else [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    if usage is not None:
        out["usage"] = usage_block(usage)
    if extension is not None:
        out["recagent"] = extension
    return out
