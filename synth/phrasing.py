"""Templated but varied language for the offline generator, grounded in catalog attributes.

Every sentence is built from a target item's real attributes (genres, era, a similar title
from the user's history) and the dialog's domain noun; the title of the target itself never
appears. Templates are hand-written because no library writes catalog-grounded requests
offline; variety comes from combining openers, phrasings of genres and eras, and closers.
"""

from __future__ import annotations

import random

GENRE_WORDS = {
    "Sci-Fi": ["sci-fi", "science fiction"], "Film-Noir": ["film noir", "noir"], "Children's": ["children's", "kids'"],
    "Musical": ["musical"], "Documentary": ["documentary"], "Animation": ["animated"], "Romance": ["romantic", "romance"],
    "Thriller": ["thriller"], "Comedy": ["comedy", "funny"], "Horror": ["horror", "scary"], "Action": ["action"],
    "Adventure": ["adventure"], "Crime": ["crime"], "Drama": ["drama"], "Fantasy": ["fantasy"],
    "Mystery": ["mystery"], "War": ["war"], "Western": ["western"],
}  # fmt: skip

OPENERS = ["", "Hi! ", "Hello, ", "Hey, ", "Good evening. ", "Quick question: ", "Hi there. ", "So, "]
WANT = [
    "I'm looking for {what}.", "Can you suggest {what}?", "I'd like {what}.", "Any ideas for {what}?",
    "Recommend me {what}, please.", "I'm in the mood for {what}.", "Could you find {what}?", "Help me find {what}.",
]
CLOSERS = ["", "", " Thanks!", " Thank you.", " Something I haven't seen would be great.", " Surprise me."]
THANKS = ["Thanks, that's great!", "Perfect, thank you.", "Great, I'll watch the first one.", "Cool, thanks a lot.",
          "Nice list, cheers!"]
WELCOME = ["You're welcome, enjoy!", "Glad I could help. Enjoy!", "Happy to help. Have fun!",
           "Enjoy! Ask me any time for more."]


def genre_word(genre: str, rng: random.Random) -> str:
    """A natural way to say a catalog genre."""
    return rng.choice(GENRE_WORDS.get(genre, [genre.lower()]))


def genres_phrase(genres: list[str], rng: random.Random) -> str:
    """'comedy', 'comedy and romance', 'action, crime or thriller'."""
    words = [genre_word(g, rng) for g in genres]
    if len(words) == 1:
        return words[0]
    joiner = rng.choice([" and ", " or ", " with some "])
    return ", ".join(words[:-1]) + joiner + words[-1]


def decade(year: int) -> int:
    """The decade a year is in (1994 -> 1990)."""
    return year // 10 * 10


def era_phrase(year_min: int | None, year_max: int | None, rng: random.Random) -> str:
    """Words for a year range ('from the 90s', 'released before 1970')."""
    if year_min is not None and year_max is not None:
        if year_max - year_min == 9 and year_min % 10 == 0:
            short = f"{year_min % 100:02d}s"
            return rng.choice([f"from the {short}", f"from the {year_min}s", f"made in the {year_min}s",
                               f"released between {year_min} and {year_max}"])
        return f"released between {year_min} and {year_max}"
    if year_min is not None:
        return rng.choice([f"released after {year_min - 1}", f"from {year_min} or later", f"not older than {year_min}"])
    if year_max is not None:
        return rng.choice([f"released before {year_max + 1}", f"from {year_max} or earlier", f"older than {year_max + 1}"])
    return ""


def request(what: str, rng: random.Random) -> str:
    """A full user request around a noun phrase."""
    return (rng.choice(OPENERS) + rng.choice(WANT).format(what=what) + rng.choice(CLOSERS)).strip()


def short_title(title: str) -> str:
    """A title as a person would type it ('Usual Suspects, The' -> 'The Usual Suspects')."""
    for art in (", The", ", A", ", An"):
        if title.endswith(art):
            return f"{art[2:]} {title[: -len(art)]}"
    return title
