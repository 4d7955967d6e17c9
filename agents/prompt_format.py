"""The one definition of recagent's tool-call prompt format, shared by serving and SFT training.

A conversation is rendered to plain role/content turns for the model's own chat template
(SmolLM2's ChatML: ``<|im_start|>{role}\\n{content}<|im_end|>\\n``). Its template copies any role
name verbatim but the model only ever saw ``system``, ``user`` and ``assistant``, so tool results
travel in a ``user`` turn (the Hermes/Qwen convention), never in a made-up ``tool`` role.

**System turn.** When tools are bound, this block opens the first system message, followed by a
blank line and the caller's system text (a system turn holding the block and
:data:`DEFAULT_SYSTEM_PROMPT` is added in front when there is none). The block comes first so that
the ~3k tokens it takes are a prefix shared by every system prompt (list-wise evaluation has one
per user), which lets the local policy reuse their KV cache::

    # Tools
    You may call one or more tools to help the user. The tools, as JSON function schemas, one per line:
    <tools>
    {"type":"function","function":{"name":"retrieve_for_user","description":"...","parameters":{...}}}
    </tools>
    To call a tool, reply with one block per call and nothing else:
    <tool_call>{"name": "<tool name>", "arguments": <JSON object of arguments>}</tool_call>
    Several blocks, one per line, are calls made at the same time. Results come back as
    <tool_response>{"name": "<tool name>", "content": <result>}</tool_response>.
    When you can answer, reply in plain text without any <tool_call> block.

(The schemas are compact JSON; the exact wording is :data:`TOOLS_INSTRUCTION`.)

**Assistant turn.** Free text, or tool calls: one ``<tool_call>{json}</tool_call>`` block per call,
blocks separated by ``"\\n"``, the JSON exactly ``{"name": <str>, "arguments": <object>}`` as
``json.dumps`` writes it (:func:`render_tool_call`). Text before the blocks is allowed when
rendering history but the constrained decoder emits either text or blocks, not both. The
constrained decoder also writes arguments in the order of the schema's ``properties`` (optional
ones may be left out), so training data should too: pass the tool's parameters schema to
:func:`render_tool_call` as ``schema`` and it orders the keys that way.

**Tool results.** Consecutive tool messages become one ``user`` turn with one block each, separated
by ``"\\n"``: ``<tool_response>{"name": <tool name>, "content": <result>}</tool_response>``, where
``content`` is the result's JSON value when the tool message holds JSON text (our tools always
return JSON) and the plain string otherwise, so the model never reads doubly escaped JSON.

**Parsing** (:func:`parse_assistant_output`) is strict: ``json.loads`` only (no eval, no repair),
exactly the keys ``name`` and ``arguments``, arguments a JSON object, no duplicate keys, no
NaN/Infinity, and, when tool names are given, a bound name. Anything else becomes a langchain
``InvalidToolCall`` whose ``args`` is the raw block text as the model wrote it (starting with
``<tool_call>``) and whose ``error`` says what is wrong. Raw text that starts with ``<`` also keeps
the call invalid if langchain later re-parses streamed tool-call chunks leniently.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
TOOL_RESPONSE_OPEN = "<tool_response>"
TOOL_RESPONSE_CLOSE = "</tool_response>"
BLOCK_SEPARATOR = "\n"  # between parallel tool-call blocks and between tool-response blocks
TOOL_RESPONSE_ROLE = "user"  # SmolLM2 was never trained on a "tool" role

TOOLS_INSTRUCTION = (
    "# Tools\n"
    "You may call one or more tools to help the user. The tools, as JSON function schemas, one per line:\n"
    "<tools>\n{tools}\n</tools>\n"
    "To call a tool, reply with one block per call and nothing else:\n"
    '<tool_call>{{"name": "<tool name>", "arguments": <JSON object of arguments>}}</tool_call>\n'
    "Several blocks, one per line, are calls made at the same time. Results come back as\n"
    '<tool_response>{{"name": "<tool name>", "content": <result>}}</tool_response>.\n'
    "When you can answer, reply in plain text without any <tool_call> block."
)
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."  # used only when tools are bound and no system message


@dataclass
class ParsedOutput:
    """One assistant reply split into its text and its (valid and invalid) tool calls."""

    content: str
    tool_calls: list[dict] = field(default_factory=list)
    invalid_tool_calls: list[dict] = field(default_factory=list)


# -- rendering ---------------------------------------------------------------------------------------------------


def tool_call_prefix(name: str) -> str:
    """The fixed start of a call block up to its arguments (the grammar and the renderer share it)."""
    return f'{TOOL_CALL_OPEN}{{"name": {json.dumps(name, ensure_ascii=False)}, "arguments": '


TOOL_CALL_SUFFIX = "}" + TOOL_CALL_CLOSE


def render_tool_call(name: str, args: dict[str, Any], schema: dict | None = None) -> str:
    """One tool call as the model writes it: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``.

    With the tool's parameters ``schema``, top-level arguments follow its property order (as
    the constrained decoder writes them); unknown keys keep their place at the end.
    """
    if not isinstance(args, dict):
        raise TypeError(f"tool call arguments must be a dict, got {type(args).__name__}")
    if schema is not None:
        order = {key: i for i, key in enumerate(schema.get("properties") or {})}
        args = dict(sorted(args.items(), key=lambda kv: order.get(kv[0], len(order))))
    return tool_call_prefix(name) + json.dumps(args, ensure_ascii=False) + TOOL_CALL_SUFFIX


def render_tools(tools: Sequence[dict]) -> str:
    """The tools block for the system prompt (OpenAI function schemas, compact JSON, one per line)."""
    lines = [json.dumps(_as_openai_tool(t), ensure_ascii=False, separators=(",", ":")) for t in tools]
    return TOOLS_INSTRUCTION.format(tools="\n".join(lines))


def render_tool_response(name: str | None, content: Any) -> str:
    """One tool result block; JSON text is embedded as its value, anything else as a string."""
    value = content
    if isinstance(content, str):
        try:
            value = strict_loads(content)
        except ValueError:
            value = content
    return TOOL_RESPONSE_OPEN + json.dumps({"name": name, "content": value}, ensure_ascii=False) + TOOL_RESPONSE_CLOSE


def render_messages(messages: Sequence[BaseMessage], tools: Sequence[dict] | None) -> list[dict]:
    """Role/content dicts for ``tokenizer.apply_chat_template``: tools in the system turn, calls as blocks."""
    out: list[dict] = []
    names_by_id: dict[str, str] = {}  # tool_call_id -> tool name, to label results whose message has no name
    tools_text = render_tools(tools) if tools else None
    for msg in messages:
        if isinstance(msg, SystemMessage):
            text = _text(msg)
            if tools_text is not None:  # tools first: a prefix shared by all system prompts (KV cache reuse)
                text = f"{tools_text}\n\n{text}" if text else tools_text
                tools_text = None
            out.append({"role": "system", "content": text})
        elif isinstance(msg, HumanMessage):
            out.append({"role": "user", "content": _text(msg)})
        elif isinstance(msg, AIMessage):
            parts = [_text(msg).strip()] if _text(msg).strip() else []
            for call in msg.tool_calls:
                names_by_id[call.get("id") or ""] = call["name"]
                parts.append(render_tool_call(call["name"], call.get("args") or {}))
            for bad in msg.invalid_tool_calls:
                if bad.get("name"):
                    names_by_id[bad.get("id") or ""] = bad["name"]
                raw = bad.get("args")
                if isinstance(raw, str) and raw.startswith(TOOL_CALL_OPEN):  # ours: show the model what it wrote
                    parts.append(raw)
            out.append({"role": "assistant", "content": BLOCK_SEPARATOR.join(parts)})
        elif isinstance(msg, ToolMessage):
            name = msg.name or names_by_id.get(msg.tool_call_id)
            block = render_tool_response(name, msg.content if isinstance(msg.content, str) else _text(msg))
            if out and out[-1].get("_tool"):  # parallel results share one turn
                out[-1]["content"] += BLOCK_SEPARATOR + block
            else:
                out.append({"role": TOOL_RESPONSE_ROLE, "content": block, "_tool": True})
        else:
            raise TypeError(f"cannot render a {type(msg).__name__} (expected System/Human/AI/Tool messages)")
    if tools_text is not None:  # no system message: add one in front, as the chat template would
        out.insert(0, {"role": "system", "content": f"{tools_text}\n\n{DEFAULT_SYSTEM_PROMPT}"})
    return [{"role": m["role"], "content": m["content"]} for m in out]


def render_openai_messages(messages: Sequence[dict], tools: Sequence[dict] | None) -> list[dict]:
    """:func:`render_messages` for OpenAI-format message dicts (synthesized datasets, SFT examples)."""
    from langchain_core.messages import convert_to_messages

    return render_messages(convert_to_messages([dict(m) for m in messages]), tools)


def format_prompt(tokenizer: Any, messages: Sequence[BaseMessage], tools: Sequence[dict] | None) -> str:
    """The full prompt text, ending where the assistant's reply starts."""
    return tokenizer.apply_chat_template(render_messages(messages, tools), tokenize=False, add_generation_prompt=True)


# -- parsing -------------------------------------------------------------------------------------------------------


def parse_assistant_output(text: str, tool_names: set[str] | None) -> ParsedOutput:
    """Split a reply into text and tool calls; malformed calls become invalid calls, never exceptions."""
    content_parts: list[str] = []
    calls: list[dict] = []
    invalid: list[dict] = []
    pos = 0
    while True:
        start = text.find(TOOL_CALL_OPEN, pos)
        if start < 0:
            content_parts.append(text[pos:])
            break
        content_parts.append(text[pos:start])
        body_start = start + len(TOOL_CALL_OPEN)
        end = text.find(TOOL_CALL_CLOSE, body_start)
        if end < 0:
            raw = text[start:]
            name = _name_from_prefix(raw)
            invalid.append(_invalid(name, raw, f"unclosed {TOOL_CALL_OPEN} block (no {TOOL_CALL_CLOSE}); "
                                    "the reply was probably cut off by max_new_tokens"))  # fmt: skip
            break
        raw = text[start : end + len(TOOL_CALL_CLOSE)]
        call, error = _parse_call(text[body_start:end], tool_names)
        if error is None:
            calls.append(call)
        else:
            invalid.append(_invalid(call.get("name") if call else None, raw, error))
        pos = end + len(TOOL_CALL_CLOSE)
    return ParsedOutput(content="".join(content_parts).strip(), tool_calls=calls, invalid_tool_calls=invalid)


def new_call_id() -> str:
    """A fresh tool-call id, OpenAI style (``call_<24 hex>``)."""
    return f"call_{uuid.uuid4().hex[:24]}"


class ContentStreamFilter:
    """Turns streamed reply text into its ``content`` deltas: tool-call blocks and outer whitespace are held back.

    Feeding every piece and then :meth:`finish` yields, joined, exactly
    ``parse_assistant_output(full_text, ...).content``.
    """

    def __init__(self) -> None:
        self._buf = ""
        self._inside = False
        self._pending_ws = ""
        self._started = False

    def feed(self, piece: str) -> str:
        """Add generated text; return the content that is now certain."""
        self._buf += piece
        out: list[str] = []
        while True:
            if self._inside:
                end = self._buf.find(TOOL_CALL_CLOSE)
                if end < 0:
                    return "".join(out)
                self._buf = self._buf[end + len(TOOL_CALL_CLOSE) :]
                self._inside = False
                continue
            start = self._buf.find(TOOL_CALL_OPEN)
            if start >= 0:
                out.append(self._emit(self._buf[:start]))
                self._buf = self._buf[start + len(TOOL_CALL_OPEN) :]
                self._inside = True
                continue
            keep = _partial_suffix(self._buf, TOOL_CALL_OPEN)  # a block may be starting
            ready, self._buf = self._buf[: len(self._buf) - keep], self._buf[len(self._buf) - keep :]
            out.append(self._emit(ready))
            return "".join(out)

    def finish(self) -> str:
        """Flush what is left at the end of the reply (an unclosed block is dropped)."""
        rest = "" if self._inside else self._emit(self._buf)
        self._buf = ""
        return rest

    def _emit(self, text: str) -> str:
        if not self._started:
            text = text.lstrip()
            if not text:
                return ""
            self._started = True
        text = self._pending_ws + text
        stripped = text.rstrip()
        self._pending_ws = text[len(stripped) :]  # trailing whitespace waits: it may end the reply
        return stripped


# -- helpers -------------------------------------------------------------------------------------------------------


def _text(msg: BaseMessage) -> str:
    return str(msg.text)  # a str subclass in langchain-core 1.x; plain str keeps json.dumps and templates simple


def _as_openai_tool(tool: dict) -> dict:
    if tool.get("type") == "function" and "function" in tool:
        return tool
    if "name" in tool and "parameters" in tool:  # a bare function schema
        return {"type": "function", "function": tool}
    raise ValueError(f"tool schema must be an OpenAI tool ({{'type': 'function', 'function': {{...}}}}), got keys {sorted(tool)}")


def tool_names_of(tools: Sequence[dict]) -> set[str]:
    """The function names in a list of OpenAI tool schemas."""
    return {_as_openai_tool(t)["function"]["name"] for t in tools}


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def strict_loads(text: str) -> Any:
    """``json.loads`` without NaN/Infinity or duplicate keys (both are ambiguous for a tool call)."""
    return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys)


def _parse_call(body: str, tool_names: set[str] | None) -> tuple[dict | None, str | None]:
    """A ToolCall dict, or (partial info, error message)."""
    try:
        obj = strict_loads(body.strip())
    except ValueError as e:  # JSONDecodeError is a ValueError
        return None, f"tool call is not valid JSON: {e}"
    if not isinstance(obj, dict):
        return None, f'tool call must be a JSON object {{"name": ..., "arguments": {{...}}}}, got {type(obj).__name__}'
    name = obj.get("name")
    partial = {"name": name if isinstance(name, str) else None}
    if not isinstance(name, str) or not name:
        return partial, 'tool call has no "name" (a non-empty string)'
    if "arguments" not in obj:
        return partial, f'tool call to {name!r} has no "arguments" (use {{}} for none)'
    extra = sorted(set(obj) - {"name", "arguments"})
    if extra:
        return partial, f'tool call to {name!r} has unexpected keys {extra}; only "name" and "arguments" are allowed'
    args = obj["arguments"]
    if not isinstance(args, dict):
        return partial, f"arguments of {name!r} must be a JSON object, got {_json_type(args)}"
    if tool_names is not None and name not in tool_names:
        known = ", ".join(sorted(tool_names)) or "none"
        return partial, f"unknown tool {name!r}; available tools: {known}"
    return {"name": name, "args": args, "id": new_call_id(), "type": "tool_call"}, None


def _invalid(name: str | None, raw: str, error: str) -> dict:
    return {"name": name, "args": raw, "id": new_call_id(), "error": error, "type": "invalid_tool_call"}


_NAME_RE = re.compile(r'^<tool_call>\s*\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")')


def _name_from_prefix(raw: str) -> str | None:
    """The tool name of a cut-off block, when its name string is complete (decoded with json, not eval)."""
    m = _NAME_RE.match(raw)
    if not m:
        return None
    try:
        name = json.loads(m.group(1))
    except ValueError:
        return None
    return name if isinstance(name, str) and name else None


def _json_type(value: Any) -> str:
    return {str: "a string", list: "an array", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that is a proper prefix of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0
