"""The OpenAI Chat Completions wire format, as far as this server speaks it, and the recagent extension.

Requests are validated with pydantic (unknown sampling parameters are accepted and ignored, as
other OpenAI-compatible servers do); replies carry the standard fields plus ``recagent``: the
session, the recommended items as cards, and the step trace.

Replies and stream chunks are strict JSON (:func:`json_bytes`): a browser's ``JSON.parse`` rejects
``NaN`` and ``Infinity``, which a model can put into a trace by writing a tool argument such as
``{"k": 1e999}``. Text from clients may hold lone UTF-16 surrogates (a browser's ``JSON.stringify``
escapes half an emoji as ``\ud83d``), which SQLite and UTF-8 cannot store: identifiers with one are
refused (400), text is repaired (:func:`scrub`) before anything is saved.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.responses import JSONResponse

_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads joins escaped pairs, so any left is a lone half
NONFINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}  # NaN is spelt "NaN"


def scrub(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD, which is what a browser's own ``TextEncoder`` does with one."""
    return _SURROGATE.sub("\ufffd", text)


def scrub_field(value: Any) -> Any:
    """Validator of free text: :func:`scrub` for strings (runs before pydantic, whose ``str`` refuses surrogates)."""
    return scrub(value) if isinstance(value, str) else value


def refuse_lone_surrogate(value: Any) -> Any:
    """Validator of identifiers: a lone surrogate cannot be part of any id this server made."""
    if isinstance(value, str) and _SURROGATE.search(value):
        raise ValueError("contains a lone UTF-16 surrogate (half of a character such as an emoji); send valid Unicode")
    return value


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinity (in dicts, lists and tuples) spelt as a string: "NaN", "Infinity", "-Infinity"."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return NONFINITE.get(obj, "NaN")
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def json_bytes(obj: Any) -> bytes:
    """``obj`` as strict JSON in UTF-8: no NaN or Infinity, no lone surrogate, whatever a model or client put into it.

    A non-finite float becomes a string ("Infinity", "-Infinity", "NaN") rather than null: the value stays
    readable where it matters (a trace showing that the model asked for k = Infinity), while null would read
    as an argument the model left out. A lone surrogate becomes U+FFFD.
    """
    try:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:  # a NaN or an infinity: the rare case pays for the second pass
        text = json.dumps(finite(obj), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:
        return scrub(text).encode()


class StrictJSONResponse(JSONResponse):
    """A JSON response written by :func:`json_bytes` (Starlette's own raises on NaN and on lone surrogates)."""

    def render(self, content: Any) -> bytes:
        """The body."""
        return json_bytes(content)


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

    _ids = field_validator("model", "session_id", "user_id", mode="before")(refuse_lone_surrogate)

    def conversation(self, max_chars: int, max_messages: int) -> tuple[str, list[tuple[str, str]]]:
        """The new user message and the earlier user/assistant turns; system messages are not passed on.

        Lone surrogates in the text are repaired (:func:`scrub`), not refused: they are what a browser sends
        for text cut in the middle of an emoji, and the rest of the message is worth answering. This happens
        here, before the turn starts, so the message saved in the session is the one the agent answered.
        """
        if self.n != 1:
            raise RequestError("n must be 1: the agent gives one answer per turn", param="n")
        if self.tools or self.functions:
            raise RequestError(
                "this model runs its own recommender tools; send no `tools` (client-side tools are not supported)",
                param="tools",
            )
        if len(self.messages) > max_messages:
            raise RequestError(
                f"too many messages ({len(self.messages)} > {max_messages}); use a session (session_id) "
                "for long conversations",
                param="messages",
            )
        turns: list[tuple[str, str]] = []
        for i, m in enumerate(self.messages):
            where = f"messages[{i}]"
            if m.role in ("tool", "function") or m.tool_calls:
                raise RequestError(
                    f"{where}: role {m.role!r} with tool calls/results is not accepted; this model runs its "
                    "own tools, send user and assistant text only",
                    param=where,
                )
            text = scrub(m.text(where))
            if len(text) > max_chars:
                raise RequestError(f"{where}: message too long ({len(text)} > {max_chars} characters)", param=where)
            if m.role in ("user", "assistant"):
                turns.append((m.role, text))
        last = self.messages[-1]
        if last.role != "user":
            raise RequestError(
                f"the last message must have role 'user' (got {last.role!r})",
                param=f"messages[{len(self.messages) - 1}]",
            )
        message = turns.pop()[1]
        if not message.strip():
            raise RequestError("the last user message is empty", param=f"messages[{len(self.messages) - 1}]")
        return message, turns


class SessionCreate(BaseModel):
    """``POST /v1/sessions``."""

    model_config = ConfigDict(extra="forbid")
    user_id: str | None = None
    title: str = Field("", max_length=200)

    _title = field_validator("title", mode="before")(scrub_field)  # repaired like message text, before it is stored


class SessionUpdate(BaseModel):
    """``PATCH /v1/sessions/{id}``: load a dataset user, rename."""

    model_config = ConfigDict(extra="forbid")
    user_id: str | None = None
    title: str | None = Field(None, max_length=200)

    _title = field_validator("title", mode="before")(scrub_field)


def error_body(
    message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict:
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
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": usage_block(usage),
        "recagent": extension,
    }


def chunk(
    cid: str,
    model: str,
    delta: dict | None = None,
    finish: str | None = None,
    extension: dict | None = None,
    usage: dict | None = None,
) -> dict:
    """A ``chat.completion.chunk`` (a usage-only chunk has no choices, as OpenAI sends it)."""
    out: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    out["choices"] = [] if usage is not None else [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    if usage is not None:
        out["usage"] = usage_block(usage)
    if extension is not None:
        out["recagent"] = extension
    return out
