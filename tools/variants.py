"""The tool-variant executor: renamed tools over the core registry, run for real.

A :class:`ToolVariant` is one offered *surface* (name, parameter names, descriptions, enums,
extra optional parameters) over one core tool of the registry, or a distractor with no
implementation. :class:`OfferedTools` translates a call on the offered surface back to the core
tool and runs it; the extra ``exclude_item_ids`` parameter is implemented for real (it
post-filters the core result), and calling a distractor is a tool error.

This is tool-layer code: synthesis (:mod:`recagent.synth.tool_pool` evolves the variants), RL
rollouts and evaluation all execute offered calls through it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from recagent.tools.toolkit import ToolError, ToolOutcome, ToolRegistry

Origin = Literal["original", "evolved", "distractor"]

EXCLUDE_PARAM = "exclude_item_ids"


@dataclass(frozen=True)
class ToolVariant:
    """One offered tool: its OpenAI schema and, unless it is a distractor, the core tool and renames behind it."""

    name: str
    core: str | None  # registry tool name; None for a distractor
    origin: Origin
    domain: str
    schema: dict[str, Any]  # {"type": "function", "function": {...}}
    params: dict[str, str] = field(default_factory=dict)  # offered parameter name -> core parameter name
    heldout: bool = False  # never offered in training dialogs
    topic: str | None = None  # distractors: what they would serve

    def core_param(self, name: str) -> str:
        """The core parameter an offered parameter maps to (itself when not renamed)."""
        return self.params.get(name, name)

    def offered_param(self, core_name: str) -> str:
        """The offered name of a core parameter."""
        for offered, core in self.params.items():
            if core == core_name:
                return offered
        return core_name

    def describe(self) -> dict[str, Any]:
        """What the dataset records about a variant."""
        return {
            "core": self.core,
            "origin": self.origin,
            "heldout": self.heldout,
            "domain": self.domain,
            "params": dict(self.params),
            "topic": self.topic,
        }

    @classmethod
    def from_record(cls, schema: dict[str, Any], record: dict[str, Any]) -> ToolVariant:
        """Rebuild a variant from a dataset's tool schema and its ``tool_variants`` record."""
        return cls(
            schema["function"]["name"],
            record.get("core"),
            record.get("origin", "evolved"),
            record.get("domain", "movies"),
            schema,
            dict(record.get("params") or {}),
            bool(record.get("heldout")),
            record.get("topic"),
        )


class OfferedTools:
    """The tools offered in one dialog, executed for real through the core registry."""

    def __init__(self, variants: list[ToolVariant], registry: ToolRegistry):
        names = [v.name for v in variants]
        if len(set(names)) != len(names):
            raise ValueError(f"offered tool names must be unique, got {names}")
        self.variants = {v.name: v for v in variants}
        self.registry = registry

    def schemas(self) -> list[dict[str, Any]]:
        """OpenAI ``tools`` list, in offering order."""
        return [v.schema for v in self.variants.values()]

    def by_core(self, core: str) -> ToolVariant | None:
        """The offered variant of a core tool."""
        return next((v for v in self.variants.values() if v.core == core), None)

    def to_core(self, name: str, args: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Core arguments of an offered call, and ids to exclude from its result."""
        v = self.variants[name]
        offers_exclude = EXCLUDE_PARAM in v.schema["function"]["parameters"]["properties"]
        # a variant without the extra parameter passes it on, so the core rejects it by name
        core_args = {v.core_param(k): val for k, val in args.items() if not (offers_exclude and k == EXCLUDE_PARAM)}
        exclude = [str(x) for x in args.get(EXCLUDE_PARAM) or []] if offers_exclude else []
        return core_args, exclude

    def call(self, name: str, arguments: dict[str, Any] | str) -> ToolOutcome:
        """Run an offered call; unknown names, distractors and bad arguments come back as tool errors."""
        v = self.variants.get(name)
        if v is None:
            return ToolOutcome(
                name,
                arguments,
                False,
                error=ToolError(
                    error="unknown_tool", message=f"no tool named {name!r}; offered tools: {', '.join(self.variants)}"
                ),
            )
        if v.core is None:
            return ToolOutcome(
                name,
                arguments,
                False,
                error=ToolError(error="not_implemented", message=f"{name} is not available in this environment"),
            )
        args: Any = arguments
        if isinstance(arguments, str):
            try:
                args = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as e:
                return ToolOutcome(
                    name,
                    arguments,
                    False,
                    error=ToolError(error="invalid_json", message=f"arguments are not valid JSON: {e}"),
                )
        if not isinstance(args, dict):
            return ToolOutcome(
                name,
                arguments,
                False,
                error=ToolError(
                    error="invalid_arguments", message=f"arguments must be a JSON object, got {type(args).__name__}"
                ),
            )
        bad_exclude = args.get(EXCLUDE_PARAM)
        if bad_exclude is not None and not (
            isinstance(bad_exclude, list) and all(isinstance(x, str | int) for x in bad_exclude)
        ):
            return ToolOutcome(
                name,
                arguments,
                False,
                error=ToolError(
                    error="invalid_arguments",
                    message=f"{EXCLUDE_PARAM}: must be an array of item ids",
                    field=EXCLUDE_PARAM,
                ),
            )
        core_args, exclude = self.to_core(name, args)
        if exclude and "k" in core_args and isinstance(core_args["k"], int):
            # ask the core for enough items that k remain after the exclusion
            core_args["k"] = min(core_args["k"] + len(exclude), self.registry.env.config.max_k)
        elif exclude and "k" not in core_args:
            core_args["k"] = min(10 + len(exclude), self.registry.env.config.max_k)
        out = self.registry.call(v.core, core_args)
        out.name, out.arguments = name, arguments
        if not out.ok:
            out.error = _rename_error(out.error, v)
            return out
        if exclude and isinstance(out.result, dict) and isinstance(out.result.get("items"), list):
            k = args.get(v.offered_param("k"), 10)
            drop = set(exclude)
            kept = [it for it in out.result["items"] if str(it["item_id"]) not in drop][: int(k)]
            out.result["items"] = [{**it, "rank": r + 1} for r, it in enumerate(kept)]
        return out


def _rename_error(err: ToolError | None, v: ToolVariant) -> ToolError | None:
    """Speak of offered parameter names in error messages, not core ones."""
    if err is None or not v.params:
        return err
    msg = err.message
    for offered, core in v.params.items():
        msg = re.sub(rf"(^|; ){re.escape(core)}(?=[:.])", rf"\g<1>{offered}", msg)
    field_ = v.offered_param(err.field.split(".")[0]) if err.field else None
    return ToolError(error=err.error, message=msg, field=field_)
