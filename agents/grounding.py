"""Which catalog items an answer names, and whether each came from a tool result.

Answers cite items as ``[id] Title (Year)`` (:func:`citation`; the system prompt asks for it).
The id comes first so that a constrained decoder, once it has chosen the id, can force the title
that belongs to it (see :mod:`recagent.agents.policies.grammar`). Two kinds of mention are read:
bracketed ids (``[50]``) and ``Title (Year)`` phrases. A mention is
*unknown* if it matches no catalog item (a hallucination), *unsupported* if it is a real
item that no tool returned in this conversation. Matching free prose against every title
would flag ordinary words ("Heat", "Speed"), so only these explicit forms count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from recagent.tools.data.schema import ItemCatalog
from recagent.tools.lookup_tools import normalise_title
from recagent.tools.result_text import citation  # noqa: F401  (defined with the tool-result lines that show it)

_ID = re.compile(r"\[(?:id[:= ]*)?([A-Za-z0-9_\-]{1,64})\]")
_TITLE_YEAR = re.compile(r"([A-Z0-9\"'][^\n\[\]()]{1,120}?)\s*\((\d{4})\)")


@dataclass
class Grounding:
    """Items an answer names, split into supported, unsupported (real, not from tools) and unknown."""

    supported: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every named item is real and came from a tool result."""
        return not self.unsupported and not self.unknown


_INDEXES: dict[int, tuple[ItemCatalog, dict[tuple[str, int], str]]] = {}


def _title_year_index(catalog: ItemCatalog) -> dict[tuple[str, int], str]:
    # keyed by identity: catalogs hold arrays and are not hashable; the tuple keeps it alive
    cached = _INDEXES.get(id(catalog))
    if cached is None or cached[0] is not catalog:
        index: dict[tuple[str, int], str] = {}
        for i, title in enumerate(catalog.titles):
            index.setdefault((normalise_title(title), int(catalog.years[i])), catalog.ids[i])
        cached = _INDEXES[id(catalog)] = (catalog, index)
    return cached[1]


def ground_answer(text: str, catalog: ItemCatalog, seen_ids: set[str]) -> Grounding:
    """Classify the items ``text`` names against the catalog and the ids tools returned."""
    g = Grounding()
    named: list[str] = []
    for m in _ID.finditer(text):
        ref = m.group(1)
        if ref in catalog.index_of:
            named.append(ref)
        else:
            g.unknown.append(f"[{ref}]")
    index = _title_year_index(catalog)
    cited_ends = {m.end() for m in _ID.finditer(text)}
    for m in _TITLE_YEAR.finditer(text):
        before = text[: m.start()].rstrip(" \t")
        if len(before) in cited_ends or _ID.match(text[m.end() :].lstrip(" \t")):
            continue  # "[id] Title (Year)" (or "Title (Year) [id]"): the id decides (ML-100K has two "Chasing Amy")
        title = m.group(1).strip(" \"'*-:")
        # a list marker or lead-in ("1. ", "Try ") may precede the title: try shorter suffixes too
        words = title.split()
        hit = None
        for start in range(len(words)):
            hit = index.get((normalise_title(" ".join(words[start:])), int(m.group(2))))
            if hit:
                break
        if hit:
            named.append(hit)
        else:
            g.unknown.append(f"{title} ({m.group(2)})")
    for item_id in dict.fromkeys(named):
        (g.supported if item_id in seen_ids else g.unsupported).append(item_id)
    return g
