"""A check of a tool call as it is written: no list of its arguments names one value twice.

JSON Schema's ``uniqueItems`` is no context-free rule (a grammar would have to remember every value written), so
the grammar (:mod:`.grammar`) lets a list repeat itself, and the model did: validation's "Just two, the ones that fit
me best" wrote ``"item_ids": ["100", "288", ..., "100", "288", ...]`` until its token budget ran out, an unparsable
call; no synthesized gold call lists a value twice. The engines apply this check after the grammar's mask, as they
apply :func:`.grammar.answer_filter` (the same ``DecodeJob.text_filter`` hook), so it is written here by hand: no
library checks a JSON prefix against a rule of this kind. Where a list's values are an enum, the check refuses a
value as soon as it can only end as one already written, and a new value once every one is written, so the grammar
and the check together always leave the list's end open.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from recagent.agents.prompt_format import TOOL_CALL_OPEN

_NAME = re.compile(r'"name":\s*"([^"]+)"')
_KEY_BEFORE = re.compile(r'"([^"]+)"\s*:\s*$')
_AFTER_SEPARATOR = re.compile(r",\s*$")


def _list_values(prop: Any) -> list[str] | None:
    """The string values an array argument may list (the enums of its items and of its leading items, as the grammar
    writes a wanted genre first: ``prefixItems``), or None where any of them is free."""
    if not isinstance(prop, dict):
        return None
    if prop.get("type") == "array":
        parts = [*(prop.get("prefixItems") or ()), *([prop["items"]] if isinstance(prop.get("items"), dict) else ())]
        enums = [part.get("enum") for part in parts if isinstance(part, dict)]
        if not enums or any(not e for e in enums) or len(enums) < len(parts):
            return None
        return list(dict.fromkeys(v for e in enums for v in e if isinstance(v, str)))
    # every list the options allow: the grammar offers a history's best-rated seeds as one list per length
    lists = [o for o in prop.get("anyOf") or prop.get("oneOf") or () if isinstance(o, dict) and o.get("type") != "null"]
    options = [_list_values(o) for o in lists]
    if not options or any(values is None for values in options):
        return None
    return list(dict.fromkeys(v for values in options for v in values or ()))


def lists_once(tools: Sequence[dict]) -> Callable[[str], bool]:
    """A check of a reply prefix, False once a tool call in it lists one value twice, or where the value or the new
    entry being written can only end as one already listed (the list's values are an enum of ``tools``, the OpenAI
    tools the grammar was built from)."""
    enums: dict[tuple[str, str], list[str]] = {}
    for tool in tools:
        fn = tool.get("function", tool)
        for key, prop in ((fn.get("parameters") or {}).get("properties") or {}).items():
            values = _list_values(prop)
            if values is not None:
                enums[(fn.get("name", ""), key)] = values

    def passes(text: str) -> bool:
        at = text.rfind(TOOL_CALL_OPEN)
        if at < 0:
            return True
        call = text[at:]
        opened = call.rfind("[")
        if opened < 0 or "]" in call[opened:] or "{" in call[opened:] or "\\" in call[opened:]:
            return True  # no list open (the last one closed and was checked as it was written), or not of strings
        parts = call[opened + 1 :].split('"')
        writing = len(parts) % 2 == 0  # an odd number of quotes: a value is being written
        done = parts[1:-1:2] if writing else parts[1::2]
        if len(set(done)) < len(done):
            return False
        name = _NAME.search(call)
        key = _KEY_BEFORE.search(call[:opened])
        values = enums.get((name.group(1) if name else "", key.group(1) if key else ""))
        if values is None:
            return True  # free strings: a value that starts as a listed one may still end otherwise
        left = [v for v in values if v not in done]
        if writing:
            return any(v.startswith(parts[-1]) for v in left)
        # between values: a separator opens a new one, which must have one left to take
        return bool(left) or not _AFTER_SEPARATOR.search(parts[-1])

    return passes


def all_of(*checks: Callable[[str], bool] | None) -> Callable[[str], bool] | None:
    """One check passing where each of ``checks`` passes (None: no check at all)."""
    present = [c for c in checks if c is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return lambda text: all(c(text) for c in present)
