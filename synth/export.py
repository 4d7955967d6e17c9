"""Exporters: the same dialogs in the ShareGPT (LLaMA-Factory), ToolACE and BFCL-style evaluation layouts.

- ``sharegpt``: ``{"conversations": [{"from": "human"|"gpt"|"function_call"|"observation", "value"}],
  "system", "tools"}`` with ``tools`` as a JSON string, as LLaMA-Factory reads tool data.
- ``toolace``: ``{"system", "conversations": [{"from": "user"|"assistant"|"tool", "value"}]}`` with the
  tool list in the system text and calls written ``[name(arg=value, ...)]`` as in ToolACE's release.
- ``bfcl``: one entry per assistant turn that calls tools, in test dialogs: the conversation so far
  (``question``), the offered functions, and the ground-truth calls with the allowed values of every
  parameter (``""`` = may be omitted), as BFCL's AST checker reads them. Free-text parameters
  (search queries, candidate-set names) are listed in ``free_text``: any value of the right type is
  acceptable there, which BFCL's exact lists cannot express; an optional one (a set name) may also
  be left out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recagent.synth.sample import Sample
from recagent.tools.toolkit import recorded_result

FREE_TEXT_CORE = {"query", "save_as"}


def _calls(m: dict[str, Any]) -> list[tuple[str, Any]]:
    out = []
    for tc in m.get("tool_calls") or []:
        try:
            args = json.loads(tc["function"]["arguments"])
        except (json.JSONDecodeError, TypeError):
            args = tc["function"]["arguments"]
        out.append((tc["function"]["name"], args))
    return out


def to_sharegpt(sample: Sample) -> dict[str, Any]:
    """LLaMA-Factory's ShareGPT tool layout."""
    conv, system = [], ""
    pending: list[str] = []
    for m in sample.messages:
        role = m["role"]
        if role != "tool" and pending:
            conv.append({"from": "observation", "value": pending[0] if len(pending) == 1 else json.dumps(pending)})
            pending = []
        if role == "system":
            system = m["content"]
        elif role == "user":
            conv.append({"from": "human", "value": m["content"]})
        elif role == "assistant" and m.get("tool_calls"):
            calls = [{"name": n, "arguments": a} for n, a in _calls(m)]
            conv.append({"from": "function_call", "value": json.dumps(calls[0] if len(calls) == 1 else calls)})
        elif role == "assistant":
            conv.append({"from": "gpt", "value": m["content"]})
        elif role == "tool":
            pending.append(m["content"])
    return {
        "id": sample.id,
        "conversations": conv,
        "system": system,
        "tools": json.dumps([t["function"] for t in sample.tools]),
    }


def _call_text(name: str, args: Any) -> str:
    if not isinstance(args, dict):
        return f"{name}({args})"
    return f"{name}(" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in args.items()) + ")"


def to_toolace(sample: Sample) -> dict[str, Any]:
    """ToolACE's layout: tools in the system text, calls as ``[name(arg=value)]``."""
    system = ""
    conv: list[dict[str, str]] = []
    tool_results: list[Any] = []
    for m in sample.messages:
        if m["role"] != "tool" and tool_results:
            conv.append({"from": "tool", "value": json.dumps(tool_results, ensure_ascii=False)})
            tool_results = []
        if m["role"] == "system":
            system = m["content"]
        elif m["role"] == "user":
            conv.append({"from": "user", "value": m["content"]})
        elif m["role"] == "assistant" and m.get("tool_calls"):
            conv.append({"from": "assistant", "value": "[" + ", ".join(_call_text(n, a) for n, a in _calls(m)) + "]"})
        elif m["role"] == "assistant":
            conv.append({"from": "assistant", "value": m["content"]})
        elif m["role"] == "tool":
            result = recorded_result(m)  # the structured result: ShareGPT tool turns hold JSON
            tool_results.append({"name": m.get("name"), "results": m["content"] if result is None else result})
    tools = json.dumps([t["function"] for t in sample.tools], ensure_ascii=False)
    head = f"{system}\nHere is a list of functions in JSON format that you can invoke:\n{tools}".strip()
    return {"id": sample.id, "system": head, "conversations": conv}


def to_bfcl(sample: Sample) -> list[dict[str, Any]]:
    """BFCL-style entries, one per assistant turn with calls."""
    entries = []
    functions = [t["function"] for t in sample.tools]
    by_name = {f["name"]: f for f in functions}
    for i, m in enumerate(sample.messages):
        if m["role"] != "assistant" or not m.get("tool_calls"):
            continue
        truth, free = [], {}
        for name, args in _calls(m):
            props = by_name.get(name, {}).get("parameters", {})
            required = set(props.get("required", []))
            params = props.get("properties", {})
            rec = sample.tool_variants.get(name, {})
            renames = rec.get("params") or {}
            free[name] = sorted(p for p in params if renames.get(p, p) in FREE_TEXT_CORE)
            allowed = {}
            for p in params:
                if isinstance(args, dict) and p in args:
                    # naming a set (optional, free text) is foresight about later turns that a one-turn
                    # check cannot judge: the gold's name is one choice, leaving it out is another
                    allowed[p] = [args[p], ""] if p in free[name] and p not in required else [args[p]]
                elif p not in required:
                    allowed[p] = [""]
            truth.append({name: allowed})
        entries.append(
            {
                "id": f"{sample.id}_{i}",
                "category": sample.kind,
                "heldout_tools": any(sample.tool_variants.get(n, {}).get("heldout") for n, _ in _calls(m)),
                "question": sample.messages[:i],
                "function": functions,
                "ground_truth": truth,
                "free_text": free,
                "parallel": len(truth) > 1,
            }
        )
    return entries


def write_exports(out: Path, train: Sequence[Sample], test: Sequence[Sample], formats: Sequence[str]) -> list[Path]:
    """Write the requested layouts under ``out/exports`` (rewritten from the verified files each time)."""
    folder = out / "exports"
    folder.mkdir(exist_ok=True)
    written = []
    for fmt in formats:
        if fmt == "bfcl":
            path = folder / "test.bfcl.jsonl"
            with path.open("w") as f:
                for s in test:
                    for e in to_bfcl(s):
                        f.write(json.dumps(e, ensure_ascii=False) + "\n")
            written.append(path)
            continue
        conv = {"sharegpt": to_sharegpt, "toolace": to_toolace}[fmt]
        for split, samples in (("train", train), ("test", test)):
            path = folder / f"{split}.{fmt}.json"
            path.write_text(json.dumps([conv(s) for s in samples], ensure_ascii=False, indent=1))
            written.append(path)
    return written
