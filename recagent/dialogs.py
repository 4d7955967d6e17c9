"""The dialog row format every part that reads synthesized dialogs shares (core: it imports no part).

A row of a dialog JSONL file is ``{"id", "messages", "tools", "meta"}``. ``messages`` and
``tools`` are exactly the OpenAI Chat Completions layout (assistant ``tool_calls`` with
``function.arguments`` as a JSON *string*, ``tool`` messages with ``tool_call_id``), so
``datasets.load_dataset("json", ...)`` and TRL's ``SFTTrainer`` read them as they are.
``meta`` holds what the synthesis pipeline knows about the sample (kind, user, target, tool
variants, complexity, verification, the agent's :class:`~recagent.agents.steps.StepRecord`
steps); nested values whose shape varies between samples (call arguments) are JSON strings
there too, so that Arrow can load every row under one schema.

:class:`Sample` is one such dialog, :func:`dedup_key` what makes two dialogs the same and
:func:`read_rows` reads a JSONL file of rows. Synthesis writes them
(:mod:`recagent.synth.sample` re-exports these names); SFT, RL and evaluation read them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from recagent.errors import RecagentError

SplitName = Literal["train", "test"]


@dataclass
class CheckResult:
    """The outcome of one verification check on one sample."""

    name: str
    passed: bool
    message: str = ""


@dataclass
class Verification:
    """Every check run on a sample and, when a judge is configured, its verdict."""

    checks: list[CheckResult] = field(default_factory=list)
    judge: dict[str, Any] | None = None  # {"passed": bool, "reason": str, "model": str}

    @property
    def passed(self) -> bool:
        """True when every rule check passed and the judge (if any) agreed."""
        return all(c.passed for c in self.checks) and (self.judge is None or bool(self.judge.get("passed")))

    def failures(self) -> list[str]:
        """``name: message`` of every failed check (and the judge's reason when it disagreed)."""
        out = [f"{c.name}: {c.message}" for c in self.checks if not c.passed]
        if self.judge is not None and not self.judge.get("passed"):
            out.append(f"judge: {self.judge.get('reason', '')}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "passed": self.passed,
            "checks": [{"name": c.name, "passed": c.passed, "message": c.message} for c in self.checks],
            "judge": self.judge,
        }


@dataclass
class Sample:
    """A synthesized dialog with its offered tools and metadata."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    kind: str
    split: SplitName
    user_id: str
    target_item: str | None
    domain: str
    tool_variants: dict[str, dict[str, Any]]  # offered name -> {"core", "origin", "heldout"}
    attempt: int  # the generation attempt that produced it (for resume and determinism)
    generator: str = "programmatic"
    complexity: dict[str, Any] = field(default_factory=dict)
    verification: Verification = field(default_factory=Verification)
    steps: list[dict[str, Any]] = field(default_factory=list)  # StepRecord.to_dict() per assistant step
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """Content hash of the dialog (messages and offered tool names)."""
        return dedup_key(self.messages, self.tools)

    def calls(self) -> list[tuple[str, dict[str, Any] | str]]:
        """Every (name, parsed-or-raw arguments) the assistant called, in order."""
        return [(n, a) for _, n, a in iter_calls(self.messages)]

    def to_row(self) -> dict[str, Any]:
        """The JSONL row."""
        steps = [{**s, "arguments": _json_text(s.get("arguments"))} for s in self.steps]
        return {
            "id": self.id,
            "messages": self.messages,
            "tools": self.tools,
            "meta": {
                "kind": self.kind,
                "split": self.split,
                "user_id": self.user_id,
                "target_item": self.target_item,
                "domain": self.domain,
                "generator": self.generator,
                "attempt": self.attempt,
                "tool_variants": json.dumps(self.tool_variants, sort_keys=True),
                "complexity": self.complexity,
                "verification": self.verification.to_dict(),
                "steps": steps,
                "extra": json.dumps(self.extra, sort_keys=True),
            },
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Sample:
        """Rebuild a sample from its JSONL row."""
        meta = row["meta"]
        ver = meta.get("verification") or {}
        verification = Verification(
            checks=[CheckResult(c["name"], c["passed"], c.get("message", "")) for c in ver.get("checks", [])],
            judge=ver.get("judge"),
        )
        steps = [{**s, "arguments": _parse_json_text(s.get("arguments"))} for s in meta.get("steps", [])]
        return cls(
            messages=row["messages"],
            tools=row["tools"],
            kind=meta["kind"],
            split=meta["split"],
            user_id=meta["user_id"],
            target_item=meta.get("target_item"),
            domain=meta["domain"],
            tool_variants=json.loads(meta["tool_variants"]),
            attempt=meta["attempt"],
            generator=meta.get("generator", "programmatic"),
            complexity=meta.get("complexity") or {},
            verification=verification,
            steps=steps,
            extra=json.loads(meta.get("extra") or "{}"),
        )


def iter_calls(messages: list[dict[str, Any]]):
    """Yield (message index, name, arguments) for every assistant tool call; arguments parsed when valid JSON."""
    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        for tc in m.get("tool_calls") or []:
            fn = tc.get("function", {})
            raw = fn.get("arguments")
            try:
                args = json.loads(raw) if isinstance(raw, str) else raw
            except json.JSONDecodeError:
                args = raw
            yield i, fn.get("name"), args


def dedup_key(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
    """Hash of what makes two dialogs the same: every message's role, text and calls, and the offered tool names."""
    canon = [
        [
            m.get("role"),
            " ".join(str(m.get("content") or "").lower().split()),
            [[tc["function"]["name"], tc["function"]["arguments"]] for tc in m.get("tool_calls") or []],
        ]
        for m in messages
    ]
    names = sorted(t["function"]["name"] for t in tools)
    return hashlib.sha256(json.dumps([canon, names], sort_keys=True).encode()).hexdigest()[:20]


def _json_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _parse_json_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def read_rows(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """JSONL rows of ``path``; with ``repair`` a torn last line (an interrupted write) is cut off the file."""
    if not path.is_file():
        return []
    rows, good_bytes = [], 0
    with path.open("rb") as f:
        for raw in f:
            try:
                rows.append(json.loads(raw))
            except json.JSONDecodeError:
                if not repair:
                    raise RecagentError(f"{path}: line {len(rows) + 1} is not valid JSON") from None
                break
            if not raw.endswith(b"\n"):
                if repair:  # complete JSON but no newline: keep it, and end the line
                    with path.open("ab") as g:
                        g.write(b"\n")
                good_bytes += len(raw)
                break
            good_bytes += len(raw)
    if repair and path.stat().st_size > good_bytes:
        with path.open("r+b") as f:
            f.truncate(good_bytes)
    return rows
