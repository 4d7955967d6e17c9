"""How a tool result reads to a model: compact lines, items written the way answers cite them.

A tool's result is a JSON-able dict (its pydantic result model, dumped). The model does not get
that JSON: ten ranked items as JSON (``item_id``, ``title``, ``year``, ``genres``, ``rank``,
``score``) cost ~620 SmolLM2 tokens, which the 2-core CPU prefills in ~3 s per tool call and
which make every training sample longer. :func:`result_text` writes the same facts in ~200:

    total_matches: 500
    candidate_set: shortlist
    items:
    [118] Twister (1996): Action, Adventure, Thriller
    [597] Eraser (1996): Action, Thriller

Rules, key by key in the result's own order (so a new tool renders without a special case):
an item (a dict with ``item_id`` and ``title``) is one line, :func:`item_text`, which starts
with the citation an answer must write (:func:`citation`), so the model cites by copying; a
list of items is the key on its own line and one line per item, in the list's order (the rank);
``rank`` and ``score`` are left out (the order is the rank; scores mean nothing to a user);
other item fields (a rating, a date) follow as ``| key: value``; a list of plain values is
joined with ", "; an empty list reads ``none``; a null is left out; any other value is ``key:
value``. The structured result stays available where code needs it (``ToolOutcome.result``,
and :func:`recagent.tools.toolkit.ToolOutcome.record` in stored dialogs).

Hand-written because no library renders our result models this way; it is a few lines.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

HIDDEN_ITEM_FIELDS = ("rank", "score")  # the order is the rank; scores are model internals
ITEM_CORE_FIELDS = ("item_id", "title", "year", "genres")
ANSWER_GENRES = 3  # genres an answer line shows after the citation (the result line shows them all)
ANSWER_SHOWS = 5  # items an answer shows from a tool's list where the user asked for no count


def citation(item_id: str, display: str) -> str:
    """How an answer cites an item: ``[id] Title (Year)`` (``display`` is the catalog's ``Title (Year)``)."""
    return f"[{item_id}] {display}"


def answer_line(item_id: str, display: str, genres: Sequence[str] = ()) -> str:
    """How an answer lists an item: its citation, then up to three genres (``[id] Title (Year), Genre, Genre``)."""
    shown = ", ".join(list(genres)[:ANSWER_GENRES])
    return citation(item_id, display) + (f", {shown}" if shown else "")


def display_title(title: str, year: int | None) -> str:
    """``Title (Year)``, or the bare title when the year is unknown (as ``ItemCatalog.display``)."""
    return f"{title} ({year})" if year else title


def is_item(value: Any) -> bool:
    """A catalog item as tools return it: a dict with ``item_id`` and ``title``."""
    return isinstance(value, dict) and "item_id" in value and "title" in value


def item_text(item: dict[str, Any]) -> str:
    """``[id] Title (Year): Genre, Genre`` plus ``| key: value`` for any other field but rank and score."""
    text = citation(str(item["item_id"]), display_title(item["title"], item.get("year")))
    if item.get("genres"):
        text += ": " + ", ".join(item["genres"])
    extra = [
        f"{k}: {_scalar(v)}"
        for k, v in item.items()
        if k not in ITEM_CORE_FIELDS + HIDDEN_ITEM_FIELDS and v is not None
    ]
    return " | ".join([text, *extra])


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (str, int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def result_text(result: dict[str, Any]) -> str:
    """The model-facing text of a tool result (or of a tool error's fields)."""
    lines: list[str] = []
    for key, value in result.items():
        if value is None:
            continue
        if is_item(value):
            lines.append(f"{key}: {item_text(value)}")
        elif isinstance(value, list) and not value:
            lines.append(f"{key}: none")
        elif isinstance(value, list) and all(is_item(v) for v in value):
            lines.append(f"{key}:")
            lines.extend(item_text(v) for v in value)
        elif isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
            lines.append(f"{key}: {', '.join(_scalar(v) for v in value)}")
        else:
            lines.append(f"{key}: {_scalar(value)}")
    return "\n".join(lines)
