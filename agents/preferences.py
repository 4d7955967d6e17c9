"""Stated likes and dislikes from what the user writes ("I love westerns", "no horror please").

Only catalog genres are recognised, with simple patterns: enough for the state's user
profile and the system prompt; the policy still reads the whole message.
"""

from __future__ import annotations

import re

_NEGATIVE = re.compile(
    r"\b(?:no|not|don'?t|do not|never|hate|dislike|avoid|without|nothing|none of|can'?t stand)\b[^.!?;]*$"
)


def _genre_pattern(genre: str) -> re.Pattern:
    stem = genre.lower().removesuffix("'s").rstrip("s")
    if stem.endswith("y"):  # comedy -> comedies
        return re.compile(rf"\b{re.escape(stem[:-1])}(?:y|ies)\b")
    return re.compile(rf"\b{re.escape(stem)}(?:s|es)?\b")


def stated_preferences(text: str, genres: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(liked genres, disliked genres) mentioned in ``text``; a negation before a genre makes it a dislike."""
    likes, dislikes = [], []
    lowered = text.lower()
    for genre in genres:
        for m in _genre_pattern(genre).finditer(lowered):
            before = lowered[max(0, m.start() - 40) : m.start()]
            clause = re.split(r"[.!?;,]|\bbut\b", before)[-1]
            (dislikes if _NEGATIVE.search(clause) else likes).append(genre)
            break
    return likes, dislikes
