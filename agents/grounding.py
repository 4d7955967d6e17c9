"""Which catalog items an answer names, and whether each came from a tool result.

Answers cite items as ``[id] Title (Year)`` (:func:`citation`; the system prompt asks for it).
The id comes first so that a constrained decoder, once it has chosen the id, can force the title
that belongs to it (see :mod:`recagent.agents.policies.grammar`). Three kinds of mention are read:
bracketed ids (``[50]``), ``Title (Year)`` phrases, and titles in plain text ("1. Blade Runner",
"I recommend The Terminator", "Blade Runner, 1982"; :func:`recagent.agents.title_match.find_mentions`,
whose docstring gives the rule for which plain-text spans count). A mention is *unknown* if it
matches no catalog item (a hallucination), *unsupported* if it is a real item that no tool
returned in this conversation. Ordinary words that are also titles ("Heat", "Speed") are not read
from prose: plain text counts only in list entries, after a recommendation lead-in, in quotes,
with a year, or as an exact title of two or more capitalised words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from recagent.agents.title_match import CITED, MASKED, find_mentions, title_index, trailing_title
from recagent.tools.data.schema import ItemCatalog
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


def pick(candidates: list[str] | tuple[str, ...], seen_ids: set[str]) -> str:
    """The item a mention means: one a tool returned if any does (ML-100K lists some films twice), else the first."""
    return next((i for i in candidates if i in seen_ids), candidates[0])


def _mask(chars: list[str], start: int, end: int, mark: str) -> None:
    chars[start:end] = mark * (end - start)


def _title_year(m: re.Match, catalog: ItemCatalog) -> tuple[int, list[str]]:
    """Where the title of a ``Title (Year)`` match starts and the items it names (none: unknown)."""
    index = title_index(catalog)
    year = int(m.group(2))
    group = m.group(1)
    # a list marker or lead-in ("1. ", "Try ") may precede the title: try shorter suffixes too
    for w in re.finditer(r"\S+", group):
        title = group[w.start() :].strip(" \"'*-:")
        hits = [catalog.ids[i] for i in index.exact(title) if int(catalog.years[i]) == year]
        if title and hits:
            return m.start(1) + w.start(), hits
    return m.start(1), []


def ground_answer(text: str, catalog: ItemCatalog, seen_ids: set[str]) -> Grounding:
    """Classify the items ``text`` names against the catalog and the ids tools returned."""
    g = Grounding()
    named: list[str] = []
    masked = list(text)  # what the plain-text reader may still read: citations are masked out of it
    for m in _ID.finditer(text):
        ref = m.group(1)
        if ref in catalog.index_of:
            named.append(ref)
        else:
            g.unknown.append(f"[{ref}]")
        _mask(masked, m.start(), m.end(), CITED)
    cited_ends = {m.end() for m in _ID.finditer(text)}
    for m in _TITLE_YEAR.finditer(text):
        before = text[: m.start()].rstrip(" \t")
        if len(before) in cited_ends or _ID.match(text[m.end() :].lstrip(" \t")):
            # "[id] Title (Year)" (or "Title (Year) [id]"): the id decides (ML-100K has two "Chasing Amy")
            _mask(masked, m.start(), m.end(), CITED)
            continue
        start, hits = _title_year(m, catalog)
        if hits:
            named.append(pick(hits, seen_ids))
        else:
            start, label = _unknown_title(m)
            g.unknown.append(f"{label} ({m.group(2)})")
        _mask(masked, start, m.end(), MASKED)  # only the title: "1. Blade Runner 2. The Terminator (1984)"
    for mention in find_mentions("".join(masked), catalog, items_expected=bool(seen_ids)):
        if mention.ids:
            named.append(pick(mention.ids, seen_ids))
        else:
            g.unknown.append(mention.label)
    g.unknown = list(dict.fromkeys(g.unknown))
    for item_id in dict.fromkeys(named):
        (g.supported if item_id in seen_ids else g.unsupported).append(item_id)
    return g


def _unknown_title(m: re.Match) -> tuple[int, str]:
    """Where an unmatched ``Title (Year)`` title starts and its label: the last title-like words before the year."""
    group = m.group(1)
    last = trailing_title(group)
    if last is not None and group[last[0] + len(last[1]) :].strip(" \"'*-:") == "":
        return m.start(1) + last[0], last[1]
    title = group.strip(" \"'*-:")
    return m.start(1) + group.find(title), title
