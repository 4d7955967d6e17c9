"""Which catalog genres a request names, and whether it wants them: "crime dramas" wants Crime and Drama, "a comedy
but nothing romantic" wants Comedy and not Romance.

The local policy's call grammar reads these (:func:`~recagent.agents.call_ids.conversation_call_ids`): the first call
after a request that names genres it wants must name some of them, and only those, where the tool takes wanted
genres; it can exclude only genres the request names. The trained adapters dropped genres ("westerns from the
sixties" became years alone), swapped them ("a western they have not watched" excluded Western) and invented them
("a comedy but nothing romantic" also excluded War) on the development requests.

Hand-written because it is a reading rule no library has: word stems per genre, as people write them and misspell
them ("cmedy", "mytsery"; "family" only of a film: "family movies", not "family night"), and a negation before a genre in its clause ("no horror", "skip anything sci-fi", "nothing
with kids' stuff or animation": the negation carries over a list). Soft asks ("ideally not too much action", "less
war") name a genre the call may exclude, not one it wants. The stems are matched on word starts, so "romantic" is
Romance and "kids'" Children's; a genre word inside a title ("Star Wars") would count too, which matters only where a
call after that request takes genres. A comma before "just" or "only" ends a refusal ("no sci-fi, just a good
adventure"), and wanted genres with an "or" between them are alternatives (``either``: "comedy or drama"), not wanted
together ("crime dramas", "action and comedy movies"). A negation of the films just shown negates no genre after it
("not those either, a kids film"), and a genre right after words that drop it is refused ("forget comedies, what
about a good western?", "done with dramas", "tired of horror").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from recagent.agents.negation import ends_negated, is_anything, misspelt_as

# word starts per catalog genre (ML-100K's spelling); a catalog without one of these genres never matches it
GENRE_STEMS: dict[str, tuple[str, ...]] = {
    "Action": ("action",),
    "Adventure": ("adventur",),
    "Animation": ("animat", "cartoon", "anime"),
    "Children's": ("children", "childrens", "kids", "kid's", "kids'", "family-friendly", "family friendly")
    + tuple(f"family {noun}" for noun in ("movie", "film", "flick", "book", "track", "stuff", "ones", "pick")),
    "Comedy": ("comed", "funny", "comic"),
    "Crime": ("crime", "criminal", "gangster"),
    "Documentary": ("documentar",),
    "Drama": ("drama",),
    "Fantasy": ("fantasy", "fantasies"),  # not "fantastic"
    "Film-Noir": ("noir",),
    "Horror": ("horror", "scary", "slasher"),
    "Musical": ("musical", "singing"),
    "Mystery": ("myster", "whodunit", "whodunnit"),
    "Romance": ("roman", "rom-com", "romcom", "love stor"),
    "Sci-Fi": ("sci-fi", "scifi", "science fiction", "sci fi"),
    "Thriller": ("thrill", "suspense"),
    "War": ("war", "wars", "wartime"),
    "Western": ("western", "cowboy"),
}
# stems that must be a whole word ("war" is not "warm", "kids" not "kidnap")
WHOLE_WORDS = {"war", "wars", "kids", "kid's", "kids'", "anime", "comic"}
# what "without violence" excludes, as the synthesizer's requests and people mean it; only a negated or soft
# violence word names them: "lawyers fighting a case" or "something violent" does not want all four
VIOLENT = ("Action", "Crime", "Horror", "War")
_VIOLENCE = re.compile(r"\bviolen|\bblood and guns\b|\bfighting\b")
# a soft ask names a genre the call may leave out but need not: "ideally not too much action", "less war"
_SOFT = re.compile(r"\b(?:not too much|not much|less|fewer|light on|push|not (?:a |the )?(?:big |huge )?fan of)\b")
# a clause ends at a sentence mark, a dash, or a comma before "just"/"only" ("no sci-fi, no fantasy, just a good
# adventure": a dev request's adventure was read as refused)
_CLAUSE_END = re.compile(r"[.;:!?()]|\s[-–]\s|,\s*(?=(?:just|only)\b)")
_BUT = re.compile(r"\bbut\b")
# a negation of the films just shown, not of a genre after it: "not those either, a kids film", "none of those, a
# comedy" (a simulated user's turn-down had refused the genre it asked for)
_SHOWN_NEGATED = re.compile(
    r"\b(?:none|not|no)(?: (?:one|any|all))?(?: of)? (?:those|these|them)\b(?: (?:ones|either|please|pls|plz))?(?=\s*[,.;:!?])"
)
# a genre the user drops, right after the words that drop it: "forget comedies, what about a good western?", "done
# with dramas", "tired of horror" (not "forget it, a comedy", "can't forget horror from the 80s")
_DROPPED = re.compile(
    r"(?<!n't )(?<!not )(?<!never )\b(?:forget(?: about)?|done with|(?:tired|sick) of)(?: all)?(?: (?:the|those|these))?\s*$"
)
# an "or" offering alternatives, not "a film or two", "1990 or so", "90s or 2000s", "or later"
_OR = re.compile(r"\bor\b(?!\s+(?:\d|(?:two|three|so|more|less|later|earlier|newer|older|after|before)\b))")
# words that keep a list going after a negated genre: "nothing with kids' stuff or animation"
_LIST_GLUE = re.compile(r"^(?:\s|,|/|&|\bor\b|\band\b|\bnor\b|\bstuff\b|\bmovies?\b|\bfilms?\b|\bones\b)*$")
_WORDS = re.compile(r"[a-z][a-z'-]*")
# whole words a misspelling is read against ("cmedy", "mytsery", "acton"); stems are too short to compare
TYPO_WORDS = {
    **dict.fromkeys(("action", "actions"), "Action"),
    **dict.fromkeys(("adventure", "adventures"), "Adventure"),
    **dict.fromkeys(("animated", "animation", "cartoon", "cartoons"), "Animation"),
    **dict.fromkeys(("children's", "childrens"), "Children's"),
    **dict.fromkeys(("comedy", "comedies", "funny"), "Comedy"),
    **dict.fromkeys(("crime",), "Crime"),
    **dict.fromkeys(("documentary", "documentaries"), "Documentary"),
    **dict.fromkeys(("drama", "dramas"), "Drama"),
    **dict.fromkeys(("fantasy",), "Fantasy"),
    **dict.fromkeys(("horror", "scary"), "Horror"),
    **dict.fromkeys(("musical", "musicals"), "Musical"),
    **dict.fromkeys(("mystery", "mysteries"), "Mystery"),
    **dict.fromkeys(("romance", "romantic", "romances"), "Romance"),
    **dict.fromkeys(("thriller", "thrillers", "suspense"), "Thriller"),
    **dict.fromkeys(("western", "westerns", "cowboy"), "Western"),
}
NEGATION_WINDOW = 5  # words before a genre a negation may stand ("not in the mood for comedies": 4 between)


@dataclass(frozen=True)
class GenreMentions:
    """The catalog genres a text names: those it wants, those it does not, and those it would rather have less of."""

    wanted: tuple[str, ...] = ()
    unwanted: tuple[str, ...] = ()
    soft: tuple[str, ...] = ()
    # the wanted genres are offered as alternatives ("comedy or drama"), not wanted together ("crime dramas",
    # "action and comedy movies"): every synthesized call with two wanted genres and no "or" between them wants all
    either: bool = False


def genre_at(word: str) -> str | None:
    """The genre a word starts with (``GENRE_STEMS``), or the genre of a misspelt stem ("cmedy", "mytsery")."""
    for genre, stems in GENRE_STEMS.items():
        for stem in stems:
            if " " in stem:
                continue
            if word == stem or (stem not in WHOLE_WORDS and word.startswith(stem)):
                return genre
    if len(word) >= 5:
        close = misspelt_as(word, TYPO_WORDS, cutoff=0.8)
        if close:
            return TYPO_WORDS[close]
    return None


def _clause(before: str) -> str:
    """The clause ``before`` ends in: after its last sentence mark, dash or "but" ("no horror but i love comedies"),
    though not the "but" of "anything but" ("anything but war")."""
    clause = _CLAUSE_END.split(before)[-1]
    for m in reversed(list(_BUT.finditer(clause))):
        previous = _WORDS.findall(clause[: m.start()])[-1:]
        if not (previous and is_anything(previous[0])):
            return clause[m.end() :]
    return clause


def genre_mentions(text: str, catalog_genres: Sequence[str]) -> GenreMentions:
    """The genres of ``catalog_genres`` that ``text`` names, each wanted, unwanted or soft (see the module)."""
    lower = text.lower()
    found: list[tuple[int, int, str]] = []  # (start, end, genre)
    for genre, stems in GENRE_STEMS.items():
        for stem in stems:
            if " " in stem:
                found += [(m.start(), m.end(), genre) for m in re.finditer(rf"\b{re.escape(stem)}\w*", lower)]
    for m in _WORDS.finditer(lower):
        genre = genre_at(m.group().strip("'-"))
        if genre and not any(s <= m.start() < e for s, e, _ in found):
            found.append((m.start(), m.end(), genre))
    violence = [(m.start(), m.end()) for m in _VIOLENCE.finditer(lower)]
    found += [(s, e, g) for s, e in violence for g in VIOLENT]
    found.sort()
    wanted: list[str] = []
    unwanted: list[str] = []
    soft: list[str] = []
    previous: tuple[int, str] | None = None  # where the last genre ended and how it was meant
    either = False
    for start, end, genre in found:
        clause = _SHOWN_NEGATED.sub(" ", _clause(lower[max(0, start - 80) : start]))
        if previous and _LIST_GLUE.match(lower[previous[0] : start]):
            sense = previous[1]  # "no singing and documentaries": the list shares its negation
        elif _SOFT.search(clause):
            sense = "soft"
        elif ends_negated(clause, NEGATION_WINDOW) or _DROPPED.search(clause):
            sense = "unwanted"
        else:
            sense = "wanted"
        # alternatives: an "or" between two wanted genres next to each other ("comedy or drama"), not one inside a
        # refused list between them ("comedies, not musicals or westerns, with some romance")
        if sense == "wanted" and previous and previous[1] == "wanted" and _OR.search(lower[previous[0] : start]):
            either = True
        previous = (end, sense)
        if genre in catalog_genres and not (sense == "wanted" and (start, end) in violence):
            {"wanted": wanted, "unwanted": unwanted, "soft": soft}[sense].append(genre)
    unwanted = list(dict.fromkeys(unwanted))
    return GenreMentions(
        wanted=tuple(g for g in dict.fromkeys(wanted) if g not in unwanted),
        unwanted=tuple(unwanted),
        soft=tuple(dict.fromkeys(soft)),
        either=either,
    )
