"""The tool layer's machinery: a typed tool, structured errors, and a registry with three exports.

A tool is a plain function ``fn(env, args) -> result`` with a pydantic argument model, a
one-line docstring (its description) and a pydantic result. The registry validates
arguments (from a dict or a JSON string, never evaluated), turns every failure into a
structured :class:`ToolError` an LLM can act on, and exports each tool as a langchain-core
``StructuredTool``, as an OpenAI ``tools`` schema, and as a direct Python call.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

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
        return {"role": "tool", "tool_call_id": call_id, "name": self.name, "content": self.content(),
                "artifact": self.record()}  # fmt: skip


def recorded_result(message: dict[str, Any]) -> Any:
    """The structured result a stored tool message carries (``artifact``), or None when it has none."""
    try:
        return json.loads(message.get("artifact") or "null")
    except (TypeError, json.JSONDecodeError):
        return None


def _validation_message(err: ValidationError) -> tuple[str, str | None]:
    parts, first_field = [], None
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        first_field = first_field or (loc or None)
        msg = e["msg"]
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts), first_field


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

        def done(ok: bool, result: dict | None = None, error: ToolError | None = None) -> ToolOutcome:
            return ToolOutcome(name, raw, ok, result, error, (time.perf_counter() - t0) * 1000)

        tool = self.tools.get(name)
        if tool is None:
            return done(False, error=ToolError(
                error="unknown_tool", message=f"no tool named {name!r}; available tools: {', '.join(self.tools)}"
            ))  # fmt: skip
        args: Any = raw
        if isinstance(raw, str):
            try:
                args = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError as e:
                return done(False, error=ToolError(error="invalid_json", message=f"arguments are not valid JSON: {e}"))
        if not isinstance(args, dict):
            return done(False, error=ToolError(
                error="invalid_arguments", message=f"arguments must be a JSON object, got {type(args).__name__}"
            ))  # fmt: skip
        try:
            parsed = tool.args_model.model_validate(args)
        except ValidationError as e:
            msg, fld = _validation_message(e)
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
                func=run, name=tool.name, description=tool.description, args_schema=tool.args_model,
                response_format="content_and_artifact",
            )

        return [make(t) for t in self.tools.values()]

    def openai_schemas(self) -> list[dict]:
        """Every tool as an OpenAI Chat Completions ``tools`` entry."""
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return [convert_to_openai_tool(t) for t in self.as_langchain()]
