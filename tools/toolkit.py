"""The tool layer's machinery: a typed tool, structured errors, and a registry with three exports.

A tool is a plain function ``fn(env, args) -> result`` with a pydantic argument model, a
one-line docstring (its description) and a pydantic result. The registry validates
arguments (from a dict or a JSON string, never evaluated), turns every failure into a
structured :class:`ToolError` an LLM can act on, and exports each tool as a langchain-core
``StructuredTool``, as an OpenAI ``tools`` schema, and as a direct Python call.

No input makes :meth:`ToolRegistry.call` raise: arguments must be strict JSON values (finite
numbers of at most 64 digits, valid Unicode, nesting checked before ``json.loads`` recurses),
and every refusal is a :class:`ToolError` with a one-line message.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from recagent.config import describe_validation_error
from recagent.tools.result_text import result_text

log = logging.getLogger(__name__)

A = TypeVar("A", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


class ToolInputError(Exception):
    """Raised inside a tool when arguments are well-typed but wrong (unknown user, genre...)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class ToolError(BaseModel):
    """A structured tool failure: what kind, which argument, and a message that says how to fix it."""

    error: str  # "unknown_tool" | "invalid_json" | "invalid_arguments" | "invalid_value" | "internal_error"
    message: str
    field: str | None = None


@dataclass(frozen=True)
class Tool(Generic[A, R]):
    """A typed, callable tool: name, description, argument model, result model and function."""

    name: str
    description: str
    args_model: type[A]
    result_model: type[R]
    fn: Callable[[Any, A], R]

    @classmethod
    def from_function(cls, fn: Callable[[Any, A], R], name: str | None = None) -> Tool:
        """Build a tool from ``fn(env, args: ArgsModel) -> ResultModel`` and its one-line docstring."""
        hints = inspect.get_annotations(fn, eval_str=True)
        params = [p for p in inspect.signature(fn).parameters if p != "env"]
        if len(params) != 1 or params[0] not in hints or "return" not in hints:
            raise TypeError(f"{fn.__name__} must look like fn(env, args: ArgsModel) -> ResultModel")
        doc = inspect.getdoc(fn)
        if not doc:
            raise TypeError(f"{fn.__name__} needs a docstring: its first line is the tool description")
        return cls(
            name=name or fn.__name__,
            description=doc.splitlines()[0].strip(),
            args_model=hints[params[0]],
            result_model=hints["return"],
            fn=fn,
        )

    def json_schema(self) -> dict:
        """JSON Schema of the arguments."""
        return self.args_model.model_json_schema()


@dataclass
class ToolOutcome:
    """One executed call: what was asked, whether it worked, the result or error, and its latency."""

    name: str
    arguments: dict[str, Any] | str
    ok: bool
    result: dict[str, Any] | None = None
    error: ToolError | None = None
    latency_ms: float = 0.0

    def payload(self) -> dict[str, Any]:
        """The structured result, or the error's fields when the call failed."""
        return self.result if self.ok else self.error.model_dump(exclude_none=True)

    def content(self) -> str:
        """The text handed back to a model as the tool message (compact lines, see :mod:`.result_text`)."""
        return result_text(self.payload())

    def record(self) -> str:
        """The structured result as JSON text: what stored dialogs keep beside ``content`` (``artifact``)."""
        return json.dumps(self.payload(), ensure_ascii=False)

    def message(self, call_id: str) -> dict[str, Any]:
        """The OpenAI-format tool message of a stored dialog: the model's text plus the structured result."""
        # "artifact" as in langchain's ToolMessage: kept for code (verification, export), never shown to a model;
        # JSON text rather than a dict so that dataset rows keep one column type whatever the tool returned
        return {
            "role": "tool",
            "tool_call_id": call_id,
            "name": self.name,
            "content": self.content(),
            "artifact": self.record(),
        }


def recorded_result(message: dict[str, Any]) -> Any:
    """The structured result a stored tool message carries (``artifact``), or None when it has none."""
    try:
        return json.loads(message.get("artifact") or "null")
    except (TypeError, json.JSONDecodeError):
        return None


# Limits on what a call may hand the tool layer. Real arguments are a few hundred characters
# and two levels deep; these bounds are far above that and keep every check linear and cheap.
MAX_ARGUMENT_CHARS = 100_000
MAX_ARGUMENT_DEPTH = 32
MAX_INT_DIGITS = 64  # the longest id a tool accepts is 64 characters; a longer number is no argument
MAX_MESSAGE_CHARS = 1000
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_SYNTAX = re.compile(r'[\[\]{}"\\]')


class ArgumentRejected(Exception):
    """Arguments that are not strict, bounded JSON; ``kind`` is the ToolError kind to report."""

    def __init__(self, kind: str, message: str, field: str | None = None):
        super().__init__(message)
        self.kind, self.message, self.field = kind, message, field


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` as one printable line of at most ``limit`` characters (lone surrogates escaped)."""
    flat = " ".join(str(text).split())
    # a lone surrogate cannot be encoded, so a message holding one would crash whoever prints it
    flat = flat.encode("utf-8", "backslashreplace").decode("utf-8")
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _clip_repr(value: Any, limit: int = 80) -> str:
    """A short repr of hostile input (a tool name, an argument key) for an error message."""
    text = repr(value) if not isinstance(value, str) or len(value) <= limit else repr(value[:limit]) + "..."
    return one_line(text, limit + 10)


def json_depth_exceeds(text: str, limit: int = MAX_ARGUMENT_DEPTH) -> bool:
    """Whether brackets outside JSON strings in ``text`` nest deeper than ``limit`` (json.loads recurses per level)."""
    if text.count("[") + text.count("{") <= limit:  # the common case: too few brackets to nest that deep
        return False
    depth, in_string, escaped_at = 0, False, -1
    for m in _JSON_SYNTAX.finditer(text):  # visit only the characters that change the nesting state
        ch, at = m.group(), m.start()
        if in_string:
            if at == escaped_at:
                continue
            if ch == "\\":
                escaped_at = at + 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def _reject_constant(name: str) -> Any:
    raise ArgumentRejected("invalid_json", f"arguments are not strict JSON: {name} is not a JSON number")


def _strict_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf: a number JSON can carry but no tool can use
        raise ArgumentRejected(
            "invalid_json", f"arguments are not strict JSON: {_clip_repr(text, 30)} overflows a float"
        )
    return value


def _strict_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:  # int() refuses past 4,300 digits with a ValueError; stop well before
        raise ArgumentRejected(
            "invalid_json", f"arguments hold an integer of {digits} digits; numbers have at most {MAX_INT_DIGITS}"
        )
    return int(text)


def parse_arguments(text: str) -> Any:
    """Strict JSON of a tool call's arguments: bounded size and depth, finite numbers; raises ArgumentRejected."""
    if len(text) > MAX_ARGUMENT_CHARS:
        raise ArgumentRejected(
            "invalid_arguments", f"arguments are {len(text):,} characters long; at most {MAX_ARGUMENT_CHARS:,}"
        )
    if not text.strip():
        return {}
    if json_depth_exceeds(text):
        raise ArgumentRejected("invalid_json", f"arguments nest deeper than {MAX_ARGUMENT_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_strict_float, parse_int=_strict_int)
    except json.JSONDecodeError as e:
        raise ArgumentRejected("invalid_json", f"arguments are not valid JSON: {e}") from None


def _where(path: str) -> str:
    return f" at {path}" if path else ""


def _top_field(path: str) -> str | None:
    """The argument a nested path starts from ("genres[0]" -> "genres")."""
    return re.split(r"[.\[]", path, maxsplit=1)[0] or None


def check_json_value(value: Any, kind: str) -> None:
    """Reject what strict JSON cannot hold (NaN, inf, huge ints, lone surrogates, deep nesting) as ``kind``."""
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    while stack:  # iterative: hostile input must not be able to exhaust the Python stack here either
        v, depth, path = stack.pop()
        field = _top_field(path)
        if depth > MAX_ARGUMENT_DEPTH:
            raise ArgumentRejected(kind, f"arguments nest deeper than {MAX_ARGUMENT_DEPTH} levels", field)
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, str):
            if _SURROGATE.search(v):
                raise ArgumentRejected(
                    kind, f"arguments hold a lone surrogate{_where(path)}; text must be valid Unicode", field
                )
        elif isinstance(v, int):
            if v.bit_length() > 3.33 * MAX_INT_DIGITS:  # never str() it: past 4,300 digits that raises
                raise ArgumentRejected(
                    kind, f"arguments hold an integer{_where(path)} over {MAX_INT_DIGITS} digits", field
                )
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise ArgumentRejected(kind, f"arguments hold {v}{_where(path)}; JSON numbers are finite", field)
        elif isinstance(v, dict):
            for key, item in v.items():
                if not isinstance(key, str):
                    raise ArgumentRejected(
                        kind, f"argument names are strings, got {_clip_repr(key, 40)}{_where(path)}", field
                    )
                if _SURROGATE.search(key):
                    raise ArgumentRejected(kind, f"an argument name{_where(path)} holds a lone surrogate", field)
                stack.append((item, depth + 1, f"{path}.{key}" if path else key))
        elif isinstance(v, list | tuple):
            stack.extend((item, depth + 1, f"{path}[{i}]") for i, item in enumerate(v))
        # anything else (a set, a numpy scalar) is left to the argument model, which accepts or rejects it


@dataclass
class ToolRegistry:
    """The set of tools bound to one environment (dataset, models, candidate buffer)."""

    env: Any
    tools: dict[str, Tool] = field(default_factory=dict)

    def register(self, tool: Tool) -> None:
        """Add a tool (names must be unique)."""
        if tool.name in self.tools:
            raise ValueError(f"tool {tool.name!r} is registered twice")
        self.tools[tool.name] = tool

    def names(self) -> list[str]:
        """Registered tool names."""
        return list(self.tools)

    def __getitem__(self, name: str) -> Tool:
        return self.tools[name]

    # -- direct Python call ------------------------------------------------------------------------------------

    def call(self, name: str, arguments: dict[str, Any] | str | None = None) -> ToolOutcome:
        """Validate and run tool ``name``; failures come back as a structured error, never raised."""
        t0 = time.perf_counter()
        raw = arguments if arguments is not None else {}
        label = name if isinstance(name, str) else _clip_repr(name)
        try:
            return self._call(name, raw, t0)
        except Exception as e:  # the last line of defence: no input may escape the tool layer as an exception
            log.exception("tool call %s failed outside the tool", label)
            error = ToolError(error="internal_error", message=one_line(f"{type(e).__name__}: {e}"))
            return ToolOutcome(label, raw, False, None, error, (time.perf_counter() - t0) * 1000)

    def _call(self, name: Any, raw: Any, t0: float) -> ToolOutcome:
        """The checks and the run of :meth:`call`; anything unexpected is caught there."""

        def done(ok: bool, result: dict | None = None, error: ToolError | None = None) -> ToolOutcome:
            if error is not None:  # a message is one line whatever went into it
                error = error.model_copy(
                    update={
                        "message": one_line(error.message),
                        "field": one_line(error.field, 100) if error.field else None,
                    }
                )
            return ToolOutcome(name, raw, ok, result, error, (time.perf_counter() - t0) * 1000)

        if not isinstance(name, str):
            name = _clip_repr(name)
            return done(False, error=ToolError(error="unknown_tool", message=f"a tool name is a string, got {name}"))
        tool = self.tools.get(name)
        if tool is None:
            return done(
                False,
                error=ToolError(
                    error="unknown_tool",
                    message=f"no tool named {_clip_repr(name)}; available tools: {', '.join(self.tools)}",
                ),
            )
        try:
            args = parse_arguments(raw) if isinstance(raw, str) else raw
            check_json_value(args, "invalid_json" if isinstance(raw, str) else "invalid_arguments")
        except ArgumentRejected as e:
            return done(False, error=ToolError(error=e.kind, message=e.message, field=e.field))
        if not isinstance(args, dict):
            return done(
                False,
                error=ToolError(
                    error="invalid_arguments", message=f"arguments must be a JSON object, got {type(args).__name__}"
                ),
            )
        try:
            parsed = tool.args_model.model_validate(args)
        except ValidationError as e:
            msg, fld = describe_validation_error(e)  # the one formatter (recagent.config); fld: the bad argument
            return done(False, error=ToolError(error="invalid_arguments", message=msg, field=fld))
        try:
            result = tool.fn(self.env, parsed)
        except ToolInputError as e:
            return done(False, error=ToolError(error="invalid_value", message=e.message, field=e.field))
        except Exception as e:  # a tool bug must not crash the agent; log it, report it as a tool error
            log.exception("tool %s failed", name)
            return done(False, error=ToolError(error="internal_error", message=f"{type(e).__name__}: {e}"))
        return done(True, result=result.model_dump(mode="json"))

    # -- exports -------------------------------------------------------------------------------------------------

    def as_langchain(self) -> list:
        """Every tool as a langchain-core ``StructuredTool``: compact text for the model, the result as artifact."""
        from langchain_core.tools import StructuredTool

        def make(tool: Tool):
            def run(**kwargs: Any) -> tuple[str, dict]:
                out = self.call(tool.name, kwargs)
                return out.content(), out.payload()

            # the model reads the compact text; the structured result rides along as the ToolMessage's artifact
            return StructuredTool.from_function(
                func=run,
                name=tool.name,
                description=tool.description,
                args_schema=tool.args_model,
                response_format="content_and_artifact",
            )

        return [make(t) for t in self.tools.values()]

    def openai_schemas(self) -> list[dict]:
        """Every tool as an OpenAI Chat Completions ``tools`` entry."""
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return [convert_to_openai_tool(t) for t in self.as_langchain()]
