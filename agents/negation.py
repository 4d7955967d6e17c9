"""Does a clause end in a negation: "nothing released before 1990", "a comedy but nothing romantic"?

Call grounding reads it twice: a negation turns a year's cue around (:mod:`~recagent.agents.call_ids`: "nothing
before 1990" is an earliest year) and marks a genre unwanted (:mod:`~recagent.agents.genre_mentions`). Hand-written
because it is a reading rule over a few dozen words, misspelt as people and the synthesizer's typos write them
("nothng", "sikp", "dorp"): a word within ``window`` words of the clause's end that is a negation or a typo of one
keeping its first letter and about its length ("anything" is no "nothing"). The typo rule itself
(:func:`misspelt_as`) serves the decade, cue and genre words of those readers too.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

NEGATION_WORDS = (
    "no not nothing none never without except excluding exclude skip avoid hate drop remove nor besides isnt arent "
    "dont doesnt".split()
)
# read only as written: their near misses are common words ("minds", "mines", "menus")
EXACT_NEGATIONS = ("minus", "zero")  # "funny stuff, zero romance", "sci fi minus the horror"
NEGATION_PHRASES = re.compile(r"\b(?:other than|leave out|can'?t stand|no more)\b")  # and "anything but"
_WORD = re.compile(r"[a-z']+")


def misspelt_as(word: str, words: Iterable[str], cutoff: float) -> str | None:
    """The one of ``words`` that ``word`` is, or is a typo of that keeps its first letter ("sikp" of "skip", "cmedy"
    of "comedy", "eihties" of "eighties"), at ``cutoff`` difflib similarity; None if none."""
    close = difflib.get_close_matches(word, list(words), n=1, cutoff=cutoff)
    return close[0] if close and close[0][0] == word[:1] else None


def is_negation(word: str) -> bool:
    """Is ``word`` a negation word or a typo of one that keeps its first letter ("sikp", "nothng")?"""
    word = word.replace("'", "")
    if word in NEGATION_WORDS or word in EXACT_NEGATIONS:
        return True
    if len(word) < 4:
        return False
    if len(word) == 4:  # a short word's typo swaps letters ("sikp", "dorp"): "noir" is no "nor", "note" no "none"
        return any(sorted(word) == sorted(n) and word[0] == n[0] for n in NEGATION_WORDS)
    close = misspelt_as(word, NEGATION_WORDS, cutoff=0.75)
    # a typo keeps about the length too: "doesn" is no "doesnt", "exclusive" no "exclude"
    return close is not None and abs(len(close) - len(word)) <= 1


def is_anything(word: str) -> bool:
    """Is ``word`` "anything" or a typo of it ("aynthing", "anyting"): the start of "anything but"?"""
    return word[:1] == "a" and difflib.SequenceMatcher(None, word, "anything").ratio() >= 0.75


def ends_negated(clause: str, window: int) -> bool:
    """Does one of the last ``window`` words of ``clause`` (lower case) negate what follows?"""
    words = _WORD.findall(clause)[-window:]
    if any(is_negation(w) for w in words) or NEGATION_PHRASES.search(" ".join(words)):
        return True
    return any(w == "but" and i > 0 and is_anything(words[i - 1]) for i, w in enumerate(words))
