"""The values a tool call's ids, sets and counts may take: what the conversation wrote or tools saved.

Measured on the shipped policy's 8,000 synthesized dialogs (seed 3): every id argument of every gold call (6,198
item ids, 3,966 user ids) is a number written earlier in the conversation, every user id in system or user text.
The shipped policy wrote ids nobody gave ("user number two hundred and thirty four" became "2000", "order these:
127 187 182 11 12" one id "127 187 182 11"), so the local policy's call grammar takes these ids only
(:func:`~recagent.agents.policies.grammar.ground_call_arguments`). Number words are parsed here by hand: integers
below a million are all an id needs, and no maintained library parses them (word2number's last release is from
2017).

Candidate sets and counts are grounded the same way. Every set a gold call reads was saved by an earlier result
(its ``candidate_set:`` line), and 3,028 of the 3,139 gold ``k`` arguments (under that name) are a number of
the system or user text, the tools' default (K_DEFAULT) or the pool size a chain narrows (POOL_K); nearly all of
the rest were "half a dozen" and "a dozen", which :func:`number_words` reads. All 10,665 gold calls of the train
split fit these id, set and count rules, as do all of validation and test (``benchmarks/grounded_gold_calls.py``). A user id
of 100 or less is admitted as a count too: telling it from a count would need the request parsed, and the rule
only has to keep out counts nobody wrote. The sft_chains adapter invented counts (15, 40, 50) and read sets nobody saved ("k",
"pop").

Release years too: a year argument is a year some message wrote or one either side of it ("after 1989" is from
1990), or the first or last year of a decade written ("the 80s", "eighties", misspelt "eihties", as people and the
synthesizer's typos write them), and with no year written a call has no year argument. The trained
adapters invented ranges ("thrillers without any horror in them" became 1999 to 1999); every year argument of the
12,374 gold calls fits, as does every year the hand-written requests accept (tested; a tool result's years count:
"anything older than those?").

Years have a side, and the first call after a request reads its genres. The adapters flipped bounds ("an adventure
movie made before 1960" became ``year_min: 1960``), wrote one end of a decade ("musicals made in the 1940s" became
``year_min: 1940`` alone) and dropped, swapped or invented genres ("westerns from the sixties" became years alone).
So an earliest-year argument takes only years its words do not bound from above (:func:`year_bounds_in`: "before
1960", "1985 or earlier", the second year of "between 1970 and 1975"; a negation turns a cue around: "nothing
older than 1990"), a latest-year argument likewise; a request bounded by decades alone has a call with a year range
write both ends (:func:`asks_for_decades`); and the genres a request names (:mod:`~recagent.agents.genre_mentions`)
are the genres the first call after it wants, all of them, and the only ones it may exclude. Of the 12,374 gold
calls, 13 no longer fit (``benchmarks/grounded_gold_calls.py``): misspellings the rules do not read ("funy",
"dama") and requests asking for two things at once whose first call serves one ("a story about soldiers in World
War II, plus the most popular drama movies": the drama call need not want War).

What else a request says binds its calls too, measured on the validation calls the shipped policy got wrong:
- a title argument is a run of the user's words or a title a tool returned (:func:`title_spans`): the gold titles
  are, but for two that capitalise what the user wrote in lower case; the adapter wrote "conspiracy theory movies"
  for "oh, conspiracy theory!" and a second title nobody wrote;
- a request that refuses genres outright ("nothing with dramas", not "less fantasy if possible") has a call with an
  unwanted-genres argument write it, and one that leaves out what the user has seen (:func:`asks_unseen`, typos
  included: "i havent sen") has a call that can drop a user's items drop theirs; without it, none;
- a call chained after a result in the same turn serves the same request: it reads the request's genres (unless an
  earlier call of the turn wrote them) and its years, not the years of the result it follows ("romance" became
  Action, 1995-1996); words the turn looked up as a title name no genre ("more like star wars");
- a number inside a word is none: the system prompt's "ml-100k" had made user 100 of every conversation;
- a genre the request refuses outright is one no call serving it wants, and an unwanted-genres argument excludes
  every such genre; "one" after "the", "that", "last", "which"... is a pronoun, no count or id (development
  requests: "anything but westerns or war films" wanted War and excluded Western alone, "the last one looks good,
  more like that" asked for k=1);
- the one count a request states (:func:`stated_count`: "two westerns please", "top 5", "half a dozen") is the
  count of its first call where that call saves nothing (development: "two westerns please" listed ten); every
  synthesized first call of that kind writes it (``benchmarks/grounded_gold_calls.py``: no gold call refused; a first
  reader's exceptions were misread counts it now leaves out: "Two things: ...", "One thing: no musicals"), and of a
  call chained after a result in the same turn that saves nothing (a ranking of what the first call found: all 414
  synthesized ones write it; in validation a ranking after a retrieval listed 10 where the request asked for 5);
  "5 would be enough" and "i'd like 4 of them" state counts too;
- a request pointing at an item of the assistant's last answer by its place (:func:`pointed_item`: "more like the
  second one", "the last one looks great", "number 4", "#2") and naming no id of its own has a first call whose item
  ids are that item alone (validation: "i like the third one, anything similar" listed eight ids, none the third;
  the synthesized calls of all 128 call turns after such a request fit);
- a request that writes years bounds every call of its turn by its own years, and a side it leaves open by the
  user's earlier ones, not a listed film's (development: "anything from before 1970 instead?" after a list of 1990s
  westerns wrote 1989 to 1990; all 2,190 synthesized year arguments after such a request are its own years);
- the count a request asks for, written once, is no user id ("what's trending? just give me 7" asked user 7's
  taste), a number written only as a user's ("list the films user 303 has rated") no item id, and a number the user
  wrote alone no title ("films similar to 183" looked the title "183" up);
- a ranking's optional "rank for this known user" argument is written, as a user the conversation gives as theirs
  (the session's, "i'm user 42", "#780" in reply to a question about the user), unless the request speaks of liked
  items ("based on [250] and [405]"): all 1,721 synthesized rankings where that holds write such a user, 42 of the
  other 258 write none;
- with the catalog given, a title argument is a run of the user's words that names a catalog title
  (:meth:`~recagent.agents.title_match.TitleIndex.names`: exactly, closely, with words left out, or a short misspelt
  one: all 1,491 gold title arguments do), and a look-up with neither a title nor an item id to write is left out of the offer
  (:func:`~recagent.agents.policies.grammar.left_out_for_lookup`; development: "popular stuff from the 90s" and "yo
  whats good" looked up the titles "popular" and "good", "info on movie 300" the title "movie 300");
- a request that likens its wish to items it names by id (:func:`likened_ids`: "more like 22 and 96", "item 12 was
  great. what's comparable?") wants similar items: look-ups are left out, and those ids are no users unless given as
  the user's; a question whether the catalog holds a title it names ("is the godfather on here?",
  :func:`asks_for_title`) or a request to find one ("find Amaeus for me", misspelt titles too) is answered with a
  call where the router is unsure (validation: two "find X for me" were answered as out of scope);
- a number that opens the message as who writes ("77 here, any comedy i haven't got round to?") is the user's: no
  item, no count (development: it was written as ``k=77``);
- a year of its own ("a crime film from 1994", "a 1994 movie") bounds both sides to itself (no synthesized request
  for films writes one; the policy wrote year_min alone), and a follow-up that asks again for other genres ("ok now
  the same for comedies" after "horror from the 80s") keeps the years the request just before it asked for;
- a request that turns down the films shown (:func:`turns_down_shown`: "none of those", "not those", "seen all of
  those", "those are too recent", "different ones"; not with "instead", "forget", "something else entirely", "the
  same for") keeps the wish they served: its calls want the genres the requests back to the one it narrows wanted
  (together with its own) and, where it writes no years, keep their years or write none (not those of the films
  turned down, unless it turns their years down: "too old"); the answer cites none of the items turned down while
  the turn's calls returned others (:func:`turned_down_items`; simulated users: "None of those is what I have in
  mind. It should be a children's film." after "an adventure film" filtered children's films alone, and a film
  turned down was shown again), and its calls list the items turned down and as many again as the answer shows
  (:func:`turned_down_floor`: "Can you show me different ones?" repeated the call that had found the films just
  turned down and was shown them again); unless it asks for a title or names an item of its own, its first step is a
  call that neither looks an item up nor ranks given ones
  (:func:`~recagent.agents.policies.grammar.left_out_for_turn_down`; a chained call may rank the set the first saved);
- the answer check's message is no request: a call after a rejected answer serves the user's last request.
With these, 18 of the 12,374 gold calls are refused (13 before the title rule; the two titles above; three train calls
after a synthesized turn-down leave k at its default, below the turn-down's count).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

from langchain_core.messages import BaseMessage

from recagent.agents.context import FEEDBACK, turn_starts
from recagent.agents.genre_mentions import genre_at, genre_mentions
from recagent.agents.negation import ends_negated, misspelt_as
from recagent.agents.policies.grammar import CallIds
from recagent.agents.title_match import title_index
from recagent.tools.data.schema import ItemCatalog
from recagent.tools.result_text import ANSWER_SHOWS
from recagent.tools.schemas import K_DEFAULT, K_MAX, POOL_K, YEAR_MAX, YEAR_MIN

# a number on its own, not part of a word: the system prompt's "ml-100k" is no user 100 (the adapters looked user 100 up
# for requests that gave no id), "2nd" no count
_DIGITS = re.compile(r"(?<![A-Za-z\d])\d{1,9}(?![A-Za-z\d])")
_WORD = re.compile(r"[a-z]+")
_DOZEN = ((re.compile(r"\bhalf an? dozen\b"), "six"), (re.compile(r"\b(?:an? )?dozen\b"), "twelve"))
# "one" as a pronoun is no number: "the last one looks good, more like that" made a count of 1 and item 1 (the
# adapter asked similar_items for k=1); "just one", "user one", "only the best one" (a count in synthesized
# rankings) and "the one hundred and two" stay numbers. Read here, for the grammar's ids and counts, not in numbers_in:
# the tool router's slots (request_slots) read numbers_in as the shipped router was fit on them
_PRONOUN_ONE = re.compile(
    r"\b(the|this|that|last|first|second|third|fourth|fifth|sixth|next|which|each|every|no|other|same)\s+one\b(?![\s-]+(?:hundred|thousand))",
    re.I,
)
_YEAR = re.compile(r"(?<!\d)\d{4}(?!\d)")
TITLE_YEAR = re.compile(r"\(\d{4}\)")  # "Ben-Hur (1959)" names a film, not a release-year bound
# decades: "1980s", "80s", "'80s", "eighties" (a two-digit decade is of the 1900s: the catalogs end in 1998)
DECADE = re.compile(r"(?<!\d)(1[89]|20)?(\d)0'?s\b")
# the line an item list's result text writes when the list was saved (ItemList.candidate_set, result_text)
_SAVED_SET = re.compile(r"^candidate_set: (\S+)$", re.M)
# a history's line: "[155] ... | rating: 4 | ..."
_RATED = re.compile(r"^\[(\d+)\][^\n]*\| rating: (\d+(?:\.\d+)?)", re.M)
# a request naming a recommender ("what would pop pick for me? and BPR-MF?", "by text similarity"): only then does a
# synthesized call choose one (556 of 12,374 gold calls, each after such a request)
_MODEL_NAMED = re.compile(
    r"sas-?\s?rec|\bbpr|knn\b|k-nn|nearest neighbou?r|co-?consumption|\bpop\b(?! (?:tracks?|songs?|music))|popularity"
    r"|matrix factori|collaborative|sequential|text similarity|(?:by|similar|matching) (?:the )?(?:descriptions?|plots?)",
    re.I,
)
_FRACTION = re.compile(r"(?<![\d.])(?:[01]?\.\d+|\d{1,3}\s*(?:%|percent\b))")  # "0.7", "1.0", "70%": a stated weight
SEEDS_MAX = 3  # the most items a call chained after a user's history lists (every synthesized one lists 1 to 3)
# a cue starting a second request in the same message ("... Thanks! And separately: the most popular crime movies",
# "Any ideas Oh and popular dramas too", "... please. Plus the top comedies"): "and separately" and "oh and" anywhere,
# "also" and "plus" after a clause's stop (or a capital one after a space: the synthesizer's and people's dropped
# stops; "puls" is a typo two synthesized requests make), not inside a clause ("comedies that are also romantic", "Tom
# Hanks plus Meg Ryan") nor opening a message
_SECOND_REQUEST = re.compile(
    r"(?i:(?:^|[.,;:!?]\s*|\s)(?:and separately|oh,? and)\b)|(?i:[.,;:!?]\s*(?:also|plus|puls)\b)|\s(?:Also|Plus|Puls)\b"
)
# what follows a cue without starting a request: a liking ("... also liked what?") or a refinement of the first
# ("..., also nothing i've seen", ", oh and make it 5", "also only from the 90s")
_NO_REQUEST = re.compile(
    r"(?:liked|like|loved|enjoyed|watched|seen|make|nothing|none|only|just|no|not|without|from|before|after|sorted|"
    r"ranked|ordered|thanks?|thx)\b",
    re.I,
)
_REQUEST_WORDS = 2  # the fewest words a second request has ("popular dramas")
UNITS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen".split()
    )
}
TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
DECADE_WORDS = {f"{w[:-1]}ies": TENS[w] for w in TENS}  # "twenties": 20, ..., "nineties": 90


def number_words(text: str) -> list[int]:
    """The integers written in words in ``text`` ("two hundred and thirty four" -> 234), in order."""
    out: list[int] = []
    total = current = 0
    last = None  # the kind of the previous number word: "unit", "tens" or "scale"
    started = False

    def flush() -> None:
        nonlocal total, current, last, started
        if started:
            out.append(total + current)
        total = current = 0
        last, started = None, False

    text = text.lower()
    for pattern, words in _DOZEN:
        text = pattern.sub(words, text)
    for word in _WORD.findall(text):
        if word in UNITS:
            if last == "unit" or (last == "tens" and UNITS[word] >= 10):  # "two three": two numbers
                flush()
            current += UNITS[word]
            last, started = "unit", True
        elif word in TENS:
            if last in ("unit", "tens"):
                flush()
            current += TENS[word]
            last, started = "tens", True
        elif word == "hundred" and started and last != "scale":
            current = (current or 1) * 100
            last = "scale"
        elif word == "thousand" and started:
            total, current = (total + (current or 1)) * 1000, 0
            last = "scale"
        elif word == "and" and started:
            continue  # "two hundred and thirty four"
        else:
            flush()
    flush()
    return out


# a count a request asks for: a number before what it counts ("two westerns", "10 scary movies", "five more") or
# after a word that asks for that many ("top 5", "just three", "max five"), number words read whole ("twenty five")
_COUNTED = re.compile(
    r"(?:movies?|films?|flicks?|picks?|suggestions?|recommendations?|recs|titles?|options?|ones|items|more|shows?"
    r"|books?|tracks?|songs?|albums?|classics|hits|gems|favou?rites)"
)
# a number that counts what the user saw or was shown, not what they ask for ("the first 2 movies you gave", "i've
# seen 4 films by kubrick", "my last 3 movies": a history's, not a list's)
_NOT_ASKED = re.compile(r"\b(?:those|these|first|last|watched|seen|saw|loved|liked|hated|enjoyed|rated|read|heard)\s+$")
# what a number after "max"/"just" counts where it is no count of items ("max 2 hours", "just one thing")
_UNITS_NOT_ITEMS = frozenset(
    "year years hour hours minutes stars thing things times people friends kids questions requests".split()
)
# words next to a number that make it no count ("10 years of comedy", "two things: the top ...", "twelve monkeys style
# films": a title)
_NOT_COUNTED = _UNITS_NOT_ITEMS | frozenset(
    "of for to the a and or in on at from with by my is are children list lists kinds types sorts style type like kind "
    "sort esque".split()
)
_ASKS_FOR = r"(?:top|give me|just|only|max|at most|up to|no more than|show me|another)"
_NUMBER_WORD = "|".join(sorted([*UNITS, *TENS, "hundred", "thousand"], key=len, reverse=True))
_NUMBER_WORDS = re.compile(rf"\b(?:{_NUMBER_WORD})(?:[\s-]+(?:and\s+)?(?:{_NUMBER_WORD}))*\b")  # "two hundred and ten"
_COUNT_BEFORE = re.compile(r"\b(\d{1,3})\b((?:\s+(?:[a-z'\-]+|\d0'?s)){1,4})")  # "ten 80s action movies"
_COUNT_AFTER = re.compile(rf"\b{_ASKS_FOR}\s+(\d{{1,3}})\b(?![\s,]*\d)(\s+[a-z'\-]+)?")


# a count said as enough or asked as a share of the list, as the synthesizer's count clauses write it ("... 5 would
# be enough", "three will do", "i'd like 4 of them"); not "pg-13 is fine", "movie 12 would be fine", "either one will
# do" (:func:`_counts_enough`)
def _one_slip(word: str) -> str:
    """A pattern for ``word`` as written or with one letter left out, doubled, swapped or mistyped ("eough")."""
    slips = {word}
    for i in range(len(word)):
        slips |= {word[:i] + word[i + 1 :], word[:i] + word[i] + word[i:], word[:i] + "[a-z]" + word[i + 1 :]}
        if i + 1 < len(word):
            slips.add(word[:i] + word[i + 1] + word[i] + word[i + 2 :])
    return "|".join(sorted(slips, key=len, reverse=True))


_ENOUGH = rf"(?:{_one_slip('enough')}|{_one_slip('plenty')}|fine|do)"  # the synthesizer misspells the long ones
_COUNT_ENOUGH = re.compile(
    rf"\b(\d{{1,3}})\s+(?:would|will|should)\s+(?:be\s+)?{_ENOUGH}\b"
    r"|\b(?:i'?d like|i would like|i want|i'll take)\s+(\d{1,3})\s+of\s+(?:them|those|these)\b"
)
# a count said in words is none of the ids, titles and ratings a clause start guards against ("or later Five would
# be eough": the synthesizer's count clause without its full stop); "either one will do" is no count
_WORDS_ENOUGH = re.compile(
    rf"\b((?:{'|'.join(sorted(w for w in [*UNITS, *TENS] if w != 'one'))})(?:[\s-]+(?:{'|'.join(UNITS)}))?)"
    rf"\s+(?:would|will|should)\s+(?:be\s+)?{_ENOUGH}\b"
)
_CLAUSE_START = re.compile(r"(?:^|[.,;:!?]|\b(?:and|but|so|ok|okay|maybe|thx|thanks|please|pls|plz))\s*$")
_RANGE = re.compile(r"\b(\d{1,3})\s*(?:or|-|–|to)\s*(\d{1,3})\b")
# an id list or an id's noun before the number ("user 5", "movie 12, 40 and 7", "#12")
_BEFORE_AN_ID = re.compile(
    r"(?:\b(?:user|id|item|items|movie|movies|film|films|number|no\.?|account)\s*|#|\d\s*(?:,|and|&)\s*)$"
)


def _in_digits(text: str) -> str:
    """``text`` with each run of number words as its digits ("twenty-five" -> "25", "a dozen" -> "12")."""
    for pattern, words in _DOZEN:
        text = pattern.sub(words, text)
    return _NUMBER_WORDS.sub(lambda m: " ".join(map(str, number_words(m.group()))), text)


def _counts_before(text: str) -> list[int]:
    """Numbers before what they count, an adjective or two between ("two westerns", "5 scary movies", "five more")."""
    found = []
    for m in _COUNT_BEFORE.finditer(text):
        before = text[: m.start(1)]
        if _BEFORE_AN_ID.search(before) or _NOT_ASKED.search(before):
            continue
        words = m.group(2).split()
        counted = next((i for i, w in enumerate(words) if _COUNTED.fullmatch(w) or genre_at(w)), None)
        if counted is None or any(w in _NOT_COUNTED for w in words[: counted + 1]):
            continue
        if words[counted] == "more" and counted + 1 < len(words) and words[counted + 1] in _UNITS_NOT_ITEMS:
            continue  # "one more thing", "two more questions"
        if m.group(1) == "1" and counted:
            continue  # "one movie", not "which one first movies 188, 29"
        found.append(int(m.group(1)))
    return found


def _counts_enough(text: str) -> list[int]:
    """Counts said as enough at a clause's start ("... 5 would be enough", "three will do") or as a share of the list
    ("i'd like 4 of them"); not ids ("movie 12 would be fine"), titles ("toy story 2 would be fine"), ratings ("pg
    13") nor a pronoun's one ("either one will do")."""
    found = []
    for m in _COUNT_ENOUGH.finditer(text):
        if m.group(2):
            found.append(int(m.group(2)))
            continue
        if _CLAUSE_START.search(text[: m.start(1)]):  # not "pg 13", "toy story 2", "either one", "'95 would be fine"
            found.append(int(m.group(1)))
    return found


def _counts_after(text: str) -> list[int]:
    """Numbers after a word that asks for that many ("top 5", "just three"), not "max 2 hours" or "just one thing"."""
    return [int(m.group(1)) for m in _COUNT_AFTER.finditer(text) if (m.group(2) or "").strip() not in _UNITS_NOT_ITEMS]


def stated_count(text: str) -> int | None:
    """The one count ``text`` asks for ("two westerns please", "top 5", "just three", "half a dozen"), or None where
    it states none or several ("3 or 4 thrillers"); "the last one" and "which one" are no count (:data:`_PRONOUN_ONE`)."""
    lower = text.lower()
    low = _in_digits(_PRONOUN_ONE.sub(r"\1", lower))
    in_words = [n for m in _WORDS_ENOUGH.finditer(lower) for n in number_words(m.group(1))]
    counted = {
        n for n in [*_counts_before(low), *_counts_after(low), *_counts_enough(low), *in_words] if 1 <= n <= K_MAX
    }
    ranges = {int(n) for m in _RANGE.finditer(low) for n in m.groups() if int(n) <= K_MAX}  # "2-3 comedies"
    return next(iter(counted)) if len(counted) == 1 and ranges <= counted else None


# a request pointing at an item of the assistant's last list by its place ("more like the second one", "the last one
# looks great", "number 4", "#2"); not "the second-to-last one", "the first movie ever made", "the last film by
# kubrick", "the last movie we watched" (no place in the list), "#1 movie of 1995", "my number 1 genre"
_ORDINALS = {w: i for i, w in enumerate("first second third fourth fifth sixth seventh eighth ninth tenth".split(), 1)}
_ORDINALS |= {f"{i}{s}": i for i, s in enumerate("st nd rd th th th th th th th".split(), 1)} | {"last": -1}
_ORDINAL = "|".join(_ORDINALS)
_POINTS_AT = re.compile(
    rf"(?<!to )(?<!-)\b({_ORDINAL})\s+(?:one|movie|film|item|title|pick|suggestion|book|track|song)\b"
    r"(?!\s+(?:ever|of|by|in|from|that|we|i|my|he|she|they|you'?d)\b)"
    r"|(?<![\w#])(?:number\s*|#)(\d{1,2})(?=\s*(?:[?.!,;)]|$|(?:please|pls|plz|too|instead|again|then|and|or)\b))"
)
_DISLIKED = re.compile(
    r"(?:\b(?:didn'?t|did not|hated?|disliked|wasn'?t|not a fan of|neither)\b(?:\s+[\w']+){0,3}\s*$)"
)
# what follows a place that turns it down: "the first one isn't my style", "the second one was awful"
_TURNED_DOWN = re.compile(
    r"^(?:\s+[\w']+){0,2}?\s+(?:isn'?t|wasn'?t|was awful|was boring|was bad|sucked|is awful|is bad)\b"
)
_PLACES_JOINED = re.compile(rf"\b(?:{_ORDINAL})\s*(?:and|or|&|,)\s*(?:the\s+)?(?:{_ORDINAL})\b")
# the items a reply cites ("[31] Crimson Tide (1995)", result_text.answer_line's shape), in order; those heading the
# lines of a list ("1. [93] ...", "- [93] ...") where it has one: "since you liked [50], try: 1. [93] ..." counts from 93
_CITED = re.compile(r"\[(\d+)\]")
_LISTED = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*\[(\d+)\]", re.M)
_NUMBERED = re.compile(r"^\s*\d+[.)]\s", re.M)


def pointed_item(request: str, reply: str) -> str | None:
    """The item id of ``reply`` (the assistant's last answer, items cited as "[id]") that ``request`` points at by
    its place ("more like the second one", "the last one looks great"; "number 4", "#2" where the reply numbers its
    list), or None where it points at none, at several, past the list, negated ("i didn't like the first one") or
    beside ids of its own ("the first one and 50")."""
    cited = list(dict.fromkeys(_LISTED.findall(reply) or _CITED.findall(reply)))
    low = request.lower()
    places = []
    for m in _POINTS_AT.finditer(low):
        if m.group(2) is not None and (_BEFORE_AN_ID.search(low[: m.start()]) or not _NUMBERED.search(reply)):
            continue  # "user number 4", "movie #2": an id; "#2" after a list not numbered
        if _turned_away(low, m.start(), m.end()):
            continue  # "not the first one", "i didn't really like the first one", "the second one was awful"
        places.append(_ORDINALS[m.group(1)] if m.group(1) else int(m.group(2)))
    if len(set(places)) != 1 or not cited or _PLACES_JOINED.search(low):
        return None
    # another number than the place and the count asked for is an id the request names itself
    own = {m.group() for m in _DIGITS.finditer(low)} - {str(places[0]), str(stated_count(request))}
    place = places[0]
    if own or not (place == -1 or 1 <= place <= len(cited)):
        return None
    return cited[place - 1] if place > 0 else cited[-1]


def _turned_away(low: str, start: int, end: int) -> bool:
    """Is the mention at ``low[start:end]`` (lower-case text) negated or turned down: "not the first one", "i didn't
    really like star wars", "the second one was awful"?"""
    return bool(ends_negated(low[:start], window=4) or _DISLIKED.search(low[:start]) or _TURNED_DOWN.match(low[end:]))


# an answer's citation with its title: "[50] Star Wars (1977)", "[186] Blues Brothers, The (1980)"
_CITED_TITLE = re.compile(r"\[(\d+)\]\s+([^\n\[\]]+?)\s+\(\d{4}\)")
_ARTICLE_LAST = re.compile(r"^(.*), (the|a|an|la|le|les|il|el|der|die|das)$")
_ALSO_KNOWN_AS = re.compile(r"\s*\([^)]*\)")  # "Seven (Se7en)": the request writes one of them


def titled_item(request: str, reply: str) -> str | None:
    """The item id of ``reply`` (the assistant's last answer) whose title ``request`` names, where it names one alone,
    does not turn it down and names no id of its own: "Star Wars sounds good. Anything similar?" points at Star Wars
    (every synthesized follow-up of that kind, 54, lists that item alone; validation: similar items of six films
    shown). A one-word title counts where the request capitalises it or likens its wish ("something for the kids"
    names no film "Kids")."""
    low = request.lower()
    if {m.group() for m in _DIGITS.finditer(low)} - {str(stated_count(request))}:
        return None  # "more like star wars and 172": ids of its own
    named = set()
    for item, written in _CITED_TITLE.findall(reply):
        title = _ALSO_KNOWN_AS.sub("", written).lower()
        if m := _ARTICLE_LAST.match(title):
            title = m.group(1)  # "blues brothers, the": the request may write the article or not
        found = re.search(rf"(?<!\w){re.escape(title)}(?!\w)", low) if len(title) > 3 else None
        if found is None or _turned_away(low, found.start(), found.end()):
            continue  # "not star wars again", "star wars was awful"
        if " " not in title and not request[found.start()].isupper() and not _LIKENS.search(_plain(request)):
            continue
        named.add(item)
    return named.pop() if len(named) == 1 else None


def numbers_in(text: str) -> list[str]:
    """Every number in ``text``, as digits and as words, as strings, first seen first."""
    found = [m.group() for m in _DIGITS.finditer(text)] + [str(n) for n in number_words(text)]
    return list(dict.fromkeys(n.lstrip("0") or "0" for n in found))


def years_in(text: str) -> list[int]:
    """The release years a call may take from ``text``: each year written and the years either side of it ("after
    1989" is from 1990, "before 2000" to 1999), and the first and last year of each decade ("the 80s", "eighties",
    misspelt "eihties": 1980-1989)."""
    years: list[int] = []
    for m in _YEAR.finditer(text):
        y = int(m.group())
        years += [y - 1, y, y + 1]
    for start in _decade_starts(text.lower()):
        years += [start, start + 9]
    return [y for y in dict.fromkeys(years) if YEAR_MIN <= y <= YEAR_MAX]


def _decade_starts(lower: str) -> list[int]:
    """The first years of the decades written in ``lower`` ("the 80s", "1980s", "eighties", misspelt "eihties")."""
    return [start for _, _, start in _decades(lower)]


def _decades(lower: str) -> list[tuple[int, int, int]]:
    """Where each decade written in ``lower`` starts and ends, and its first year."""
    found = [(m.start(), m.end(), int(m.group(1) or "19") * 100 + int(m.group(2)) * 10) for m in DECADE.finditer(lower)]
    for m in _WORD.finditer(lower):
        word = m.group()
        # misspelt as people (and the synthesizer's typos) write them: "ninetes", "eihties"
        close = misspelt_as(word, DECADE_WORDS, cutoff=0.8) if word.endswith("s") else None
        if close:
            found.append((m.start(), m.end(), 1900 + DECADE_WORDS[close]))
    return found


# Which way a written year bounds a call ("before 1960" is a latest year, "nothing older than 1990" an earliest one).
# A year with no cue bounds either way. Ranges first: "between 1985 and 1995", "1990 through 1994", "from 1970 to 1975".
_YEAR_RANGE = re.compile(r"(?<!\d)(\d{4})(?!\d)\s*(?:and|to|-|–|through|thru|until|till)\s*(\d{4})(?!\d)(?!'?s\b)")
_UPPER_BEFORE = re.compile(
    r"\b(?:before|bfore|befor|older than|earlier than|prior to|pre-?|up to|until|till|upto)(?:\s+the)?\s*'?$"
)
_LOWER_BEFORE = re.compile(
    # "i'm after nineties sci-fi" wants them: no cue
    r"(?:(?<!i'm )(?<!im )(?<!i am )\bafter|\bsince|\bnewer than|\blater than|\bmore recent than|\bpost-?|"
    r"\bstarting(?: from| in)?)(?:\s+the)?\s*'?$"
)
# "1985 or earlier", "the nineties or laetr" (misspelt), "1990 onwards", "1990+"
_OR_WORD = re.compile(r"^\s*(?:or|and)\s+([a-z]+)")
_LOWER_AFTER = re.compile(
    r"^\s*(?:or more recent\b|on\b|onwards?\b|\+|plus\b|upwards?\b|forwards?\b|and (?:up|later|after)\b"
    r"|(?:till|until|to|through) (?:now|today|the present|present|date)\b)"
)
AFTER_CUES = {"earlier": "upper", "older": "upper", "before": "upper", "later": "lower", "newer": "lower"}
AFTER_CUES |= {"after": "lower", "up": "lower"}
_CLAUSE_END = re.compile(r"[,.;:!?()]|\s[-–]\s")


def _year_side(text: str, start: int, end: int) -> str:
    """How the year written at ``text[start:end]`` (lower case) bounds a range: "lower", "upper" or "" (either)."""
    before, after = text[max(0, start - 60) : start], text[end : end + 20]
    for pattern, side in ((_UPPER_BEFORE, "upper"), (_LOWER_BEFORE, "lower")):
        m = pattern.search(before)
        if m:
            # "nothing released before 1990", "no mvies from before 1990": a negation up to two words before the cue
            # in its clause ("just not too recent - before 1990": the "not" is of another clause)
            if ends_negated(_CLAUSE_END.split(before[: m.start()])[-1], window=3):
                side = "lower" if side == "upper" else "upper"
            return side
    m = _OR_WORD.search(after)
    if m:
        close = misspelt_as(m.group(1), AFTER_CUES, cutoff=0.75)
        if close:
            return AFTER_CUES[close]
    return "lower" if _LOWER_AFTER.search(after) else ""


# a year of its own, no side: "a crime film from 1994", "made in 1975", "a 1994 movie" (no synthesized request for
# films writes one; the policy wrote only year_min 1994 for the first, a dev request)
_PIN_BEFORE = re.compile(r"(?<!born )(?<!since )\b(?:from|in|of)\s+(?:the\s+year\s+)?$")
_PIN_AFTER = re.compile(r"^\s*(?:films?|movies?|flicks?|releases?|ones?)\b")


# the words after a year that give it a side, misspelt ("from 1990 onwads"): no year of its own
_CUES_AFTER = (*AFTER_CUES, "onwards", "onward", "upwards", "forwards")


def _misspelt_cue_after(after: str) -> bool:
    """Does the word after a year read as a misspelt cue of a side ("from 1990 onwads": no year of its own)?"""
    word = re.match(r"\s*(?:or\s+|and\s+)?([a-z]+)", after)
    return word is not None and misspelt_as(word.group(1), _CUES_AFTER, cutoff=0.75) is not None


def _year_mentions(lower: str) -> list[tuple[int, int, str, bool]]:
    """Each year or decade written in ``lower``: its first and last year, the side its words give (:func:`_year_side`:
    "lower", "upper", "" for either, or "exact" for a year of its own: :data:`_PIN_BEFORE`) and whether it is a
    decade."""
    side_of: dict[int, str] = {}  # where a year starts -> its side
    for m in _YEAR_RANGE.finditer(lower):
        side_of[m.start(1)], side_of[m.start(2)] = "lower", "upper"
    out = []
    for m in _YEAR.finditer(lower):
        if re.match(r"'?s\b", lower[m.end() :]):  # "1980s": a decade, read below
            continue
        y = int(m.group())
        side = side_of.get(m.start()) or _year_side(lower, m.start(), m.end())
        pinned = _PIN_BEFORE.search(lower[: m.start()]) or _PIN_AFTER.match(lower[m.end() :])
        if not side and pinned and not _misspelt_cue_after(lower[m.end() :]):
            side = "exact"
        out.append((y, y, side, False))
    for start, end, first in _decades(lower):
        out.append((first, first + 9, _year_side(lower, start, end), True))
    return out


def year_bounds_in(text: str) -> tuple[list[int], list[int]]:
    """The earliest and the latest release years a call may take from ``text``: :func:`years_in`, each written year
    on the side its words give ("before 1960", "1985 or earlier" and the second year of "between 1970 and 1975"
    only latest; "after 1989", "nothing older than 1990" only earliest; a year with no cue either, and the year
    either side of it), a decade's first year only earliest and its last only latest ("nothing older than the 80s"
    only 1980, "nothing newer than the 80s" only 1989), a year of its own ("a crime film from 1994") only itself
    either side."""
    earliest: list[int] = []
    latest: list[int] = []
    for first, last, side, decade in _year_mentions(text.lower()):
        if side == "exact":
            earliest.append(first)
            latest.append(first)
            continue
        if decade:
            earliest += [first] if side != "upper" else []
            latest += [last] if side != "lower" else []
            continue
        if side != "upper":
            earliest += [first - 1, first, first + 1]
        if side != "lower":
            latest += [first - 1, first, first + 1]

    def valid(years: list[int]) -> list[int]:
        return [y for y in dict.fromkeys(years) if YEAR_MIN <= y <= YEAR_MAX]

    return valid(earliest), valid(latest)


def asks_for_decades(text: str) -> bool:
    """Does ``text`` bound release years by decades alone, with no cue ("westerns from the sixties", "80s or 90s"),
    so that a call filtering by year takes both an earliest and a latest year?"""
    mentions = _year_mentions(text.lower())
    return bool(mentions) and all(decade and not side for _, _, side, decade in mentions)


# an item line of a tool result: "[31] Crimson Tide (1995): Drama, Thriller" (result_text.answer_line's shape)
_RESULT_TITLE = re.compile(r"^\[\d+\] (.+?)(?: \((\d{4})\))?(?::|$)", re.M)
_BARE_NUMBER = re.compile(r"^[#\[(]*\d{1,3}[\])]*$")  # "183", "#183"; not "1941" (a title and a year)
_SPAN_EDGE = "\"'“”‘’*"  # quotes around a title people write are not part of it
_SPAN_END = ",;:!?."  # nor the punctuation of the sentence after it ("Oh, Heavy Metal!" names "Heavy Metal")
_ARTICLES = frozenset({"the", "a", "an"})  # "the birdcage": the user's article is the title argument's too
TITLE_WORDS = 16  # the longest span a title may be: the longest gold title is 14 words
TITLE_REQUESTS = 2  # the user messages, last first, whose words a title may take


def title_spans(
    texts: Iterable[str],
    results: Iterable[str] = (),
    names: Callable[[str], bool] | None = None,
    ends_as_written: Callable[[str], bool] | None = None,
) -> list[str]:
    """The strings a title argument may take: every run of up to :data:`TITLE_WORDS` words of ``texts`` (what the
    user wrote), with and without each mark of the sentence punctuation after it, that ``names`` a catalog title
    (:meth:`~recagent.agents.title_match.TitleIndex.names`; None: any), and each item title of tool ``results``,
    with and without its year ("more like the second one" names a title a tool returned). Given
    ``ends_as_written`` (:meth:`~recagent.agents.title_match.TitleIndex.ends_as_written`), a span keeps the mark
    after it only where the title it names ends so ("Airplane!", not "Oh, Heavy Metal!"), and a span right after
    an article only where the article is left out of the span before it ("the birdcage", not "birdcage")."""
    spans: list[str] = []
    marked: dict[str, str] = {}  # a span with the sentence's mark after it -> the span without
    after_article: dict[str, str] = {}  # a span that starts right after an article -> the span with it
    for text in texts:
        words = [m.span() for m in re.finditer(r"\S+", text)]
        for i, (start, _) in enumerate(words):
            article = i > 0 and text[words[i - 1][0] : words[i - 1][1]].lower() in _ARTICLES
            for _, end in words[i : i + TITLE_WORDS]:
                span = text[start:end].strip(_SPAN_EDGE)
                spans.append(span)
                if article:
                    after_article.setdefault(span, text[words[i - 1][0] : end].strip(_SPAN_EDGE))
                while span and span[-1] in _SPAN_END:  # "Sunset Blvd.;" -> "Sunset Blvd." -> "Sunset Blvd"
                    trimmed = span[:-1].strip(_SPAN_EDGE)
                    marked.setdefault(span, trimmed)
                    span = trimmed
                    spans.append(span)
                    if article:
                        after_article.setdefault(span, f"{text[words[i - 1][0] : words[i - 1][1]]} {span}")
    # a number the user wrote alone is no title: "films similar to 183" looked the title "183" up (no gold title is
    # one; a tool's "[330] 187 (1997)" stays one)
    spans = [s for s in spans if not _BARE_NUMBER.match(s)]
    if names is not None:
        # "popular stuff from the 90s" looked up the title "popular", "info on movie 300" the title "movie 300"
        spans = [s for s in dict.fromkeys(spans) if s and names(s)]
    if ends_as_written is not None:
        # validation: "Oh, Heavy Metal!" looked up "Heavy Metal!", "Tell me about the birdccage" "birdccage": the
        # title argument is the user's words as they name the title, the article written with it and no mark after
        offered = set(spans)
        spans = [
            s
            for s in spans
            if not (s in marked and marked[s] in offered and not ends_as_written(s))
            and not (s in after_article and after_article[s] in offered)
        ]
    for result in results:
        for m in _RESULT_TITLE.finditer(result):
            spans += [m.group(1)] + ([f"{m.group(1)} ({m.group(2)})"] if m.group(2) else [])
    return [s for s in dict.fromkeys(spans) if s]


# a request to leave out what the user has seen, as the synthesizer's requests and people write it, typos included
# ("that I haven't watched", "i havent sen", "new to me", "nothing I've seen already", "skkip what ive watched")
_SEEN_VERBS = ("seen", "watched", "read", "heard", "listened", "played")
_NOT_YET = ("havent", "hasnt", "never", "not")  # "have not", "not seen", "not yet watched"
_LEAVE_OUT = ("nothing", "skip", "none", "except", "without")  # "... what I've already seen"
# "new to me", "unseen", "crime films i missed", "what i might've missed" (a dev request left what user 655 had seen in)
_NEW_TO_ME = re.compile(
    r"\bnew to me\b|\bunseen\b|\bi(?:'?ve| have| might(?:'?ve| have)| may have)? missed\b"
    r"(?!\s+(?:you|your|that|it|this|these|those|what|the point|watching))",  # not "i missed your question"
    re.I,
)


def asks_unseen(text: str) -> bool:
    """Does ``text`` ask to leave out items the user has already seen?"""
    if _NEW_TO_ME.search(text):
        return True
    words = [w.replace("'", "").replace("’", "") for w in re.findall(r"[a-z'’]+", text.lower())]
    for i, word in enumerate(words):
        if len(word) < 3 or not misspelt_as(word, _SEEN_VERBS, cutoff=0.7):
            continue
        before = words[max(0, i - 5) : i]  # "haven't [yet] watched", "skip what i've [already] watched"
        if any(misspelt_as(b, _NOT_YET, cutoff=0.85) for b in before[-3:]):
            return True
        if "ive" in before and any(misspelt_as(b, _LEAVE_OUT, cutoff=0.8) for b in before):
            return True
    return False


# a request that speaks of what the user liked ("based on [250] and [405]", "i loved movie 323", "big fan of #12"):
# the ranking may read that history instead of the user
_LIKED_NAMED = re.compile(
    r"\b(?:based on|loved|liked|enjoyed|fan of|favou?rites?|given that|knowing|had a great time|really into)\b"
    r"|(?<!would )(?<!do )\bi (?:really )?(?:love|like|enjoy)\b",  # not "which would i like"
    re.I,
)
# a number written as a user's ("user 303", "user id: 12", "user #5", "user number 7", the system prompt's "the user is
# user_id 303"): no item id unless written elsewhere too ("list the films user 303 has rated" looked item 303 up)
_AFTER_USER = re.compile(r"\buser(?:[\s_]*id)?\s*(?:is|:)?\s*(?:#|number|no\.?)?\s*$", re.I)
# a number a user gives as theirs, the forms above and "i'm 42", "my id's 42", "it's #42", "account 42"
# ("i'm 16" is an age, "it's 15 again" maybe: only "i'm #42", "it's user 42")
_NAMES_USER = re.compile(
    r"(?:\buser|\bi'?m\s*#|\bi am\s*#|\bmy id|\bid|\buid|\bthis is|\bit'?s\s*#|\baccount|\bcustomer)[\s_]*"
    r"(?:(?:id|number|no\.?|#|is|:|'s)\s*)*$",
    re.I,
)
# a reply this short with a number in it, to an answer that asked about the user, gives the user's id ("#780",
# "385, thanks" after "what's your user id?"), not "top 5" or "5 more please"
_SHORT_REPLY = 3
_ASKED_ABOUT_USER = re.compile(r"\b(?:user|id|account)\b", re.I)
# a number that opens the message as who is writing ("77 here, any comedy i haven't seen?", "hey, 42 here"), not
# "item 77 here" or "is 77 here?"
_OPENS_AS_WRITER = re.compile(r"\s*(?:(?:hi|hey|hello|hiya|yo|ok|okay|right|so)\b[\s,.!:;-]*)*", re.I)  # no "#2 here"
_HERE_AFTER = re.compile(r"\s*here\b", re.I)


def _number_uses(messages: Sequence[BaseMessage]) -> tuple[Counter[str], set[str], set[str]]:
    """How often each number is written in the system and user messages (digits and words), the numbers written
    only as a user's (:data:`_AFTER_USER`, "77 here" opening a message), and those given as a user's
    (:data:`_NAMES_USER`, "77 here", a short reply to an answer that asked about the user)."""
    times: Counter[str] = Counter()
    as_user: set[str] = set()
    other: set[str] = set()
    given: set[str] = set()
    answer = ""  # the assistant's last words before the message
    for message in messages:
        if message.type == "ai":
            answer = _text(message)
        if message.type not in ("system", "human"):
            continue
        text = _text(message)
        short = message.type == "human" and len(text.split()) <= _SHORT_REPLY and bool(_ASKED_ABOUT_USER.search(answer))
        for m in _DIGITS.finditer(text):
            n = m.group().lstrip("0") or "0"
            times[n] += 1
            before = text[max(0, m.start() - 25) : m.start()]
            writer = _OPENS_AS_WRITER.fullmatch(text[: m.start()]) and _HERE_AFTER.match(text, m.end())
            (as_user if writer or _AFTER_USER.search(before) else other).add(n)
            if short or writer or _NAMES_USER.search(before):
                given.add(n)
        for n in number_words(text):
            times[str(n)] += 1
            other.add(str(n))
    return times, as_user - other, given


def conversation_call_ids(
    messages: Sequence[BaseMessage],
    user_ids: Mapping[str, int],
    item_ids: Mapping[str, int],
    session_user: str | None = None,
    returned_items: Iterable[str] = (),
    catalog_genres: Sequence[str] = (),
    catalog: ItemCatalog | None = None,
) -> CallIds:
    """The users and items a call in this conversation may name: numbers of its messages that are catalog item
    ids and the items tools returned; numbers of its system and user messages that are dataset user ids, and the
    session's user (the item ids of results and answers are no users: all 8,049 user arguments of two synthesized
    runs are numbers of system or user text); the sets tool results were saved under; the counts of system and
    user text (after an answer that listed items, the new request's alone, unless it keeps the earlier wish), the
    tools' default and the pool size; the release years any message wrote (:func:`years_in`: a tool
    result's years too, for "anything more recent than that"); the titles the user's words name in ``catalog`` (None:
    any run of them)."""
    numbers: list[str] = []
    said: list[str] = []
    shown: set[str] = set()  # numbers of tool results and answers: items the conversation showed
    sets: list[str] = []
    years: list[int] = []
    years_from: list[int] = []
    years_to: list[int] = []
    requests: list[str] = []
    results: list[str] = []
    last_human = max((i for i, m in enumerate(messages) if m.type == "human"), default=-1)
    # a request after an answer that listed items is a new wish: the counts earlier requests stated are not its own
    # ("more like the first one" after "8 war films" asked similar_items for 8; none of 93 synthesized calls of that
    # kind writes one), while a reply to a question ("what's your user id?" - "529") keeps the request's count
    starts = turn_starts(list(messages))
    asked_at = starts[-1] if starts else -1  # the user's last message (the answer check's are none)
    answer = _answer_before(messages, asked_at)
    after_list = answer is not None and _CITED.search(answer) is not None
    counted: list[str] = []  # the numbers of system text and of the request after a list: its counts hold
    for at, m in enumerate(messages):
        content = _text(m)
        found = numbers_in(_PRONOUN_ONE.sub(r"\1", content))
        numbers += found
        if m.type in ("tool", "ai"):
            shown.update(found)
        if m.type == "tool" and at > last_human:
            # this turn's own results: a chained call bounds years as the request did, not by what the first found
            sets += _SAVED_SET.findall(content)
            results.append(content)
            continue
        years += years_in(content)
        earliest, latest = year_bounds_in(content)
        years_from += earliest
        years_to += latest
        if m.type in ("system", "human"):
            said += found
            if m.type == "system" or at >= asked_at:
                counted += found  # where the request keeps the earlier wish, all of ``said`` counts (below)
        if m.type == "human" and not m.additional_kwargs.get(FEEDBACK):
            # the answer check's message is no request: the call after a rejected answer serves the user's
            requests.append(content)
        if m.type == "tool":
            sets += _SAVED_SET.findall(content)
            results.append(content)
    request = _request(messages)
    fresh = set_just_saved(messages) if request is None else None
    index = title_index(catalog) if catalog is not None else None
    names = index.names if index is not None else None
    if requests and years_in(requests[-1]):
        # a request that writes years bounds every call of its turn by them, and on a side it leaves open by what
        # the user wrote before ("only the ones after 1993" after "between 1990 and 1995"), not by the years of
        # listed films: "anything from before 1970 instead?" after a list of 1990s westerns wrote 1989 to 1990.
        # All 2,190 synthesized year arguments after such a request are its own years
        # ("more like Men in Black (1997), made in the 1970s" bounds by the 70s alone: the title's year had the
        # policy write 1996 to 1997; a title's year alone still bounds: "newer than Heat (1995)")
        untitled = TITLE_YEAR.sub(" ", requests[-1])
        own = untitled if years_in(untitled) else requests[-1]
        earlier = [year_bounds_in(r) for r in requests[:-1]]
        asked_from, asked_to = year_bounds_in(own)
        years_from = asked_from or [y for e, _ in earlier for y in e]
        years_to = asked_to or [y for _, t in earlier for y in t]
        years = sorted({*years_in(own), *years_from, *years_to})
    reply = _last_reply(messages[: last_human + 1]) if request is not None else ""
    pointed = (pointed_item(request, reply) or titled_item(request, reply)) if request is not None and reply else None
    # the call serves the user's last request: the first call since it, or one chained after its result
    serving = requests[-1] if requests and (request or fresh) else None
    turn = messages[last_human + 1 :]  # this turn's calls and results
    # a chained call serves the same request as the first: its genres too (a ranking of what a retrieval found)
    read = _without_looked_up(serving, turn) if serving is not None else None
    wanted, unwanted, refused, either = _request_genres(read, catalog_genres)
    # a message making two requests: a call cannot know which one's genres and years it serves
    two_requests = read is not None and second_request(read) is not None
    if fresh and two_requests:
        # a chain in a message making two requests: whose genres it serves is not known, so it reads none
        wanted, unwanted, refused, either = None, None, (), False
    elif fresh and wanted is None and _lists_items(turn, item_ids):
        # a chain from given items (similar items, then a filter by years): the seeds carry the genres, so a call
        # wants none the request did not name (none of 201 synthesized ones does; the model had written Action)
        wanted = ()
    elif request is not None and wanted is None and not sets and _moves_years(request, requests):
        # a follow-up that only moves the years ("anything from before 1970 instead?" after "some westerns please",
        # "same but 70s", then "same but 80s"), with no saved set to filter: the new call wants what the last request
        # that named genres wanted, and refuses what it refused unless the follow-up refuses its own
        readings = (_request_genres(r, catalog_genres) for r in reversed(requests[:-1]))
        earlier = next((g for g in readings if g[0]), None)
        if earlier is not None:
            wanted, earlier_unwanted, earlier_refused, either = earlier
            if unwanted is None:
                unwanted, refused = earlier_unwanted, earlier_refused
    # the sides a call must bound years on: both where the request bounds them by decades alone ("westerns from the
    # sixties"), else those the request bounds (a dev request's "romantic comedies between 1985 and 1995" wrote
    # none once the call had to write match); none where it makes a second request, whose years may not be the first
    # one's
    years_bounded: tuple[str, ...] = ()
    if read is not None and not two_requests:
        if request is not None and asks_for_decades(request):
            years_bounded = ("earliest", "latest")
        else:
            years_bounded = _sides_bounded(read)
    if request is not None and wanted and not sets and _moves_genres(request, requests):
        # a follow-up that only changes the genres ("ok now the same for comedies" after "horror from the 80s"), with
        # no saved set to filter: the new call keeps the years the request before it asked for, as it bounded them
        # (the policy wrote 1980 to 1987, the last year of the answer's films)
        dated = TITLE_YEAR.sub(" ", requests[-2])  # "something like Heat (1995) from the 80s": Heat's year bounds none
        if years_in(dated):
            years_from, years_to, years, years_bounded = _kept_years(dated)
    turns_down = serving is not None and not two_requests and turns_down_shown(requests)
    if turns_down:
        # a request that turns down the films shown keeps the wish they served and adds its own: "None of those is
        # what I have in mind. It should be a children's film." after "an adventure film" (the simulated users'
        # words) had the policy filter children's films alone, then musicals alone
        kept_wanted, kept_unwanted, kept_refused, kept_either, dated = _turned_down_wish(requests, catalog_genres)
        if kept_wanted or kept_unwanted:
            refused = tuple(dict.fromkeys([*(g for g in kept_refused if g not in (wanted or ())), *refused]))
            wanted = tuple(g for g in dict.fromkeys([*kept_wanted, *(wanted or ())]) if g not in refused) or None
            unwanted = tuple(g for g in dict.fromkeys([*kept_unwanted, *(unwanted or ())]) if g not in (wanted or ()))
            either = either or kept_either
        if not years_in(requests[-1]) and not _YEARS_TURNED_DOWN.search(requests[-1]):
            # the wish's years or none, not those of the films turned down ("not those please. ones with some comedy
            # in them" after a list of westerns from 1990 and 1992 wrote 1990 to 1992)
            years_from, years_to, years, years_bounded = _kept_years(dated) if dated is not None else ([], [], [], ())
    turned_down = turned_down_items(messages) if turns_down else ()
    # the set the last answer drew from, where a follow-up refines it: the last result before the request saved it;
    # not where it asks for a new wish ("forget those, westerns instead") or another order ("sort them by year")
    answered = max((i for i in range(max(asked_at, 0)) if messages[i].type == "tool"), default=-1)
    shown_saved = set_just_saved(messages[: answered + 1]) if answered >= 0 else None
    refines = (
        request is not None
        and len(requests) > 1
        and not turns_down
        and not _NEW_WISH.search(requests[-1])
        and not _ASKS_ORDER.search(requests[-1])
    )
    shown_set = shown_saved if refines else None
    if shown_set is not None and not years_in(requests[-1]) and not _YEARS_SAID.search(requests[-1]):
        # the set shown holds the wish's years already: a follow-up that says none filters it by none, not by the
        # years of the films shown ("I'm more in a funny mood actually." after a list of 1995-1996 films wrote 1995
        # to 1996; no synthesized follow-up of a shown set writes a year its request does not)
        years, years_from, years_to, years_bounded = [], [], [], ()
    finds_title = request is not None and index is not None and asks_for_title(request, index.exact, index.names)
    times, as_user, given = _number_uses(messages)
    asked = stated_count(requests[-1]) if requests else None
    # the count a request asks for, written once and not as a user's, is no user: "what's trending? just give me 7"
    # asked user 7's taste (of the 903 synthesized user-id arguments after a request stating a count, none is that
    # count written once)
    count_only = str(asked) if asked is not None and times[str(asked)] == 1 and str(asked) not in given else None
    users = [n for n in said if n in user_ids and n != count_only]
    named = [n for n in users if n in given]  # users the conversation gives as theirs, not any number in range
    if session_user is not None and str(session_user) in user_ids:
        users.insert(0, str(session_user))
        named.insert(0, str(session_user))
    # a number a result or answer showed is an item whatever the user wrote
    items = [n for n in numbers if n in item_ids and (n not in as_user or n in shown)] + [
        str(i) for i in returned_items
    ]
    # the items the last request names itself: numbers of item ids it writes, not after "user" nor as its count
    named_items = [
        n
        for n in (numbers_in(requests[-1]) if requests else [])
        if n in item_ids and n not in as_user and n != str(asked)
    ]
    # the last request likens its wish to items it names by id ("more like 22 and 96", "item 12 was great. what's
    # comparable?" looked items 22 and 12 up): a search for similar items, not a look-up of them, and those items are
    # no users unless given as one (the second then retrieved for user 12)
    # ("I'm #768. Hi! Give me anything similar to The Princess Bride (1987)": #768 is the user, given as theirs)
    likened = [n for n in likened_ids(request) if n in named_items and n not in given] if request is not None else []
    if likened:
        users = [n for n in users if n not in likened or n == str(session_user)]
    # the pool size is a first retrieval's: a synthesized call after a result that saved a set asks for it only where
    # the user wrote it (every gold call fits: benchmarks/grounded_gold_calls.py)
    fixed = {K_DEFAULT} if fresh else {K_DEFAULT, POOL_K}
    # a number written once, as the user's, is no count: "I'm user 58" asked similar_items for k 58
    # (written after "user", not in a short reply: "15 please" after an answer that spoke of the user is a count)
    users_only = {n for n in as_user if times[n] == 1 and n != str(asked)}
    # a follow-up that keeps the wish ("ok now the same for comedies", "anything older?", a turn-down) keeps its count
    keeps_wish = bool(requests) and (
        turns_down or _moves_genres(requests[-1], requests) or _moves_years(requests[-1], requests)
    )
    written = {int(n) for n in (counted if after_list and not keeps_wish else said) if 1 <= int(n) <= K_MAX}
    written -= {int(n) for n in users_only}
    counts = sorted(written | fixed)
    return CallIds(
        users=tuple(dict.fromkeys(users)),
        items=tuple(dict.fromkeys(items)),
        sets=tuple(dict.fromkeys(sets)),
        counts=tuple(counts),
        years=tuple(sorted(set(years))),
        years_from=tuple(sorted(set(years_from))),
        years_to=tuple(sorted(set(years_to))),
        genres_wanted=wanted,
        genres_unwanted=unwanted,
        genres_refused=refused,
        # not in a message making two requests: "any good comedies? oh and popular dramas too" wants no comedy-drama
        genres_together=len(wanted or ()) > 1 and not either and not two_requests,
        catalog_genres=tuple(catalog_genres),
        years_bounded=years_bounded,
        # a history's result saves no set: the chained call follows the result itself
        # where the request names no item of its own ("more like item 3 i haven't seen" seeds from item 3)
        seeds=best_rated(_text(messages[-1])) if messages and messages[-1].type == "tool" and not named_items else (),
        fresh_set=fresh,
        shown_set=shown_set,
        unsaid_pool=POOL_K if POOL_K in counts and POOL_K not in written else None,
        saved_pool=POOL_K if request is not None else None,
        unseen_by=tuple(dict.fromkeys(users)) if serving is not None and asks_unseen(serving) else (),
        # a chained call that saves nothing lists what the user gets too (a ranking of what the first call found):
        # all 414 synthesized ones write the request's count
        count_stated=asked if serving is not None else None,  # serving is the last request
        pointed=pointed if pointed is not None and (pointed in item_ids or not item_ids) else None,
        indexed=bool(user_ids) and bool(item_ids),
        # every synthesized ranking where this holds writes one of them (1,721 calls); of the 258 where it does not, 42
        # leave the user out (they rank by the liked items)
        ranking_users=tuple(dict.fromkeys(named)) if requests and not _LIKED_NAMED.search(requests[-1]) else (),
        request_read=serving is not None,
        fraction_written=serving is not None and _FRACTION.search(serving) is not None,
        model_named=serving is not None and _MODEL_NAMED.search(serving) is not None,
        # every gold title is a run of the last user message's words or a result's title: the last two messages bound
        # the grammar's size however long the chat
        titles=tuple(
            title_spans(
                requests[-TITLE_REQUESTS:], results, names, index.ends_as_written if index is not None else None
            )
        ),
        titles_known=names is not None,
        likens_named_items=bool(likened),
        # at the first step since the request only (a chained call ranks the set the first one saved), and not where
        # it asks for a title ("none of those. is Heat on here?": a look-up answers it) or names items of its own (in
        # digits or by place: "not those. more like the second one"); a title it names otherwise is no look-up ("Can
        # you show me different ones?" names the film "Show, The"), nor "one" an id ("A well-known one.")
        turns_down=turns_down
        and request is not None
        and not finds_title
        and not _own_items_in_digits(named_items, requests, turned_down)
        and pointed is None,
        count_floor=turned_down_floor(turned_down, asked) if turns_down else None,
        asks_for_title=finds_title,
    )


def _own_items_in_digits(named_items: Sequence[str], requests: Sequence[str], turned_down: Sequence[str]) -> list[str]:
    """The items of ``named_items`` the last of ``requests`` writes in digits, but for those ``turned_down`` ("none
    of those, and not 50 again")."""
    written = {str(int(n)) for n in re.findall(r"\d+", requests[-1])} if requests else set()
    return [n for n in named_items if n in written and n not in turned_down]


def _request(messages: Sequence[BaseMessage]) -> str | None:
    """The user's last message where the next call is the first since it: what that call has to read; else None
    (after a tool result in the same turn)."""
    last = next((m for m in reversed(messages) if m.type in ("human", "tool")), None)
    if last is None or last.type != "human":
        return None
    return _text(last)


def _text(m: BaseMessage) -> str:
    """A message's text."""
    return m.content if isinstance(m.content, str) else str(m.content)


def _last_reply(messages: Sequence[BaseMessage]) -> str:
    """The text of the assistant's last answer among ``messages`` (not a tool call's), or ""."""
    for m in reversed(messages):
        if m.type == "ai" and not getattr(m, "tool_calls", None) and m.content:
            return _text(m)
    return ""


def set_just_saved(messages: Sequence[BaseMessage]) -> str | None:
    """The set the last tool result saved, where it follows the conversation's last user message; else None."""
    last = messages[-1] if messages else None
    if last is None or last.type != "tool":
        return None
    saved = _SAVED_SET.findall(_text(last))
    return saved[-1] if saved else None


def _turn_arguments(turn: Sequence[BaseMessage]) -> Iterable[object]:
    """Every argument value of the tool calls among ``turn``'s messages."""
    for m in turn:
        for call in getattr(m, "tool_calls", None) or []:
            yield from (call.get("args") or {}).values()


def _without_looked_up(request: str, turn: Sequence[BaseMessage]) -> str:
    """``request`` without the text this turn's calls looked up as titles: "more like star wars" names no War."""
    for value in _turn_arguments(turn):
        if isinstance(value, str) and len(value) > 3:
            request = re.sub(re.escape(value), " ", request, flags=re.I)
    return request


def second_request(text: str) -> str | None:
    """The second request a user message makes after a cue ("... And separately: the most popular crime movies from
    the 90s", "Oh, and popular dramas too"): the words after the first cue that starts one; None where it makes none."""
    for cue in _SECOND_REQUEST.finditer(text):
        after = text[cue.end() :].strip(" ,.:;!?-")
        if not _NO_REQUEST.match(after) and len(after.split()) >= _REQUEST_WORDS:
            return after
    return None


def best_rated(result: str) -> tuple[str, ...]:
    """The items of a user's history (a tool result whose lines carry "| rating: N") the user rated highest, best
    first and in the history's order among equals, at most :data:`SEEDS_MAX`; () for any other result."""
    rated = [(item, float(rating)) for item, rating in _RATED.findall(result)]
    return tuple(item for item, _ in sorted(rated, key=lambda r: -r[1])[:SEEDS_MAX])


def _lists_items(turn: Sequence[BaseMessage], item_ids: Mapping[str, int]) -> bool:
    """Does the call whose result ends ``turn`` list items (a search from given items: similar_items' item_ids)?"""
    answered = getattr(turn[-1], "tool_call_id", None) if turn else None
    calls = [c for m in turn for c in getattr(m, "tool_calls", None) or [] if c.get("id") == answered]
    args = (calls[-1].get("args") or {}).values() if calls else ()
    return any(isinstance(v, list) and v and all(str(i) in item_ids for i in v) for v in args)


def _sides_bounded(request: str) -> tuple[str, ...]:
    """The sides ("earliest", "latest") ``request`` bounds release years on (:func:`year_bounds_in`), where its words
    say which and make one range; a title's "(1978)" bounds none."""
    unmarked = TITLE_YEAR.sub(" ", request)
    mentions = _year_mentions(unmarked.lower())
    if mentions and all(side == "exact" for _, _, side, _ in mentions):
        return ("earliest", "latest")  # "a crime film from 1994": that year alone
    earliest, latest = year_bounds_in(unmarked)
    if set(earliest) == set(latest) or (earliest and latest and min(earliest) > max(latest)):
        return ()  # a year of no side ("released afer 1959"), or two ranges ("before 1960 or after 1990")
    return ("earliest",) * bool(earliest) + ("latest",) * bool(latest)


# ids a request likens its wish to: a list of them right after a cue ("more like 22 and 96", "similar to #5, #9",
# "i liked 7 and 89"; after a bare "like" not "i'd like 5", "would like 3"), ending its clause or followed by a word
# that cannot be its noun ("similar to 12 angry men" names a title); or an id marked as an item ("item 12", "#12")
# where the request asks for what is like it ("item 12 was great. what's comparable?")
_ID_LIST = (
    r"(?:(?:the\s+)?(?:items?|movies?|films?|ids?|numbers?)\s*)?[#\[]?\d+\]?(?:\s*(?:,|and|&|or|\+)\s*[#\[]?\d+\]?)*"
)
_LIKENED_LIST = re.compile(
    r"(?:\b(?:more like|similar to|close to|comparable to|akin to|liked|loved|enjoyed)|(?<!'d )(?<!would )(?<!i )"
    rf"(?<!we )(?<!you )\blike)\s+({_ID_LIST})(?=\s*$|\s*[^\w\s\]]|\s+(?:and|or|pls|plz|please|thanks|thx|too|but|for|so)\b)",
    re.I,
)
_MARKED_ID = re.compile(r"(?:\b(?:item|movie|film)\s+#?|#)(\d+)\b", re.I)
_LIKE_IT = re.compile(
    r"\b(?:comparable|similar|more like (?:it|that|this|those|these|them)|along (?:those|the same) lines"
    r"|in (?:that|the same) vein)\b",
    re.I,
)


# a wish likened to something ("movies like Heat", "similar to one i loved", "in the vein of", "along those lines");
# not "i'd like", "would i like", "like to", "i don't like horror", "sounds like fun", "what is Fargo like?"
_LIKENS = re.compile(
    r"\b(?:simi\w*|siml\w*|comparable|more like|in the (?:same )?vein|along (?:those|the same|these) lines"
    r"|feels? like|reminds? me|(?<!'d )(?<!would )(?<!would i )(?<!i )(?<!we )(?<!you )(?<!sounds )(?<!looks )"
    r"(?<!n't )(?<!not )like(?! to\b)(?!\s*(?:[?.!,;]|$)))\b",
    re.I,
)


def _plain(text: str) -> str:
    """``text`` with typographic apostrophes written plain ("I’d like" as "I'd like")."""
    return text.replace("\u2019", "'")


def wish_likens(messages: Sequence[BaseMessage]) -> bool:
    """Does the user's wish liken itself to something ("movies like Heat") or start from what the user liked ("I loved
    Ed Wood. What else?"): the last request, and where it answers the assistant's question (an answer citing no item:
    "What's the title?" - "Starship Troopers, I think") the request before it too?"""
    asked = turn_starts(list(messages))
    if not asked:
        return False
    wish = [_text(messages[asked[-1]])]
    answer = _answer_before(messages, asked[-1])
    if answer is not None and not _CITED.search(answer) and len(asked) > 1:
        wish.append(_text(messages[asked[-2]]))
    return any(_LIKENS.search(_plain(w)) or _LIKED_NAMED.search(_plain(w)) for w in wish)


def _answer_before(messages: Sequence[BaseMessage], at: int) -> str | None:
    """The text of the assistant's answer (no call) just before message ``at``; None where there is none."""
    before = messages[at - 1] if at > 0 else None
    if before is None or before.type != "ai" or getattr(before, "tool_calls", None):
        return None
    return _text(before)


def likened_ids(request: str) -> list[str]:
    """The numbers ``request`` likens its wish to (see :data:`_LIKENED_LIST`), as written; the caller keeps those
    that are item ids."""
    found = [n for m in _LIKENED_LIST.finditer(request) for n in re.findall(r"\d+", m.group(1))]
    if _LIKE_IT.search(request):
        found += _MARKED_ID.findall(request)
    return list(dict.fromkeys(found))


# a question whether the catalog holds a title ("do you have Trainspotting?", "is the godfather on here?", "is glory in
# your catalog"): the title is the run of words between the cue and the end of its clause, or the availability words
_HAS_TITLE = re.compile(r"\b(?:do (?:you|u|you guys) have|have you got|you got|got)\s+(.+?)\s*(?:[?.!,;]|$)", re.I)
_TITLE_AVAILABLE = re.compile(
    r"\b(?:is|are)\s+(.+?)\s+(?:on here|in there|available|in (?:your|the|ur) (?:catalog(?:ue)?|library|collection"
    r"|database|list|system|selection))\b",
    re.I,
)


# a request to find a title it names ("Hello find Absolute Power for me Thank you", "find Amaeus for me": validation,
# both answered as out of scope): the title is the run of words up to "for me", "please", "thanks" or the clause's end
_FIND_TITLE = re.compile(
    r"\b(?:find|look up|lookup|search for|pull up|track down)\s+(?:me\s+)?(.+?)\s*"
    r"(?:\bfor me\b|\bplease\b|\bpls\b|\bthank|[?.!,;]|$)",
    re.I,
)
_WHERE_TO = re.compile(r"\bwhere\s+(?:can|could|do|should|would)\s+(?:i|you|we|u)\s*$", re.I)


def asks_for_title(
    request: str, names_exactly: Callable[[str], object], names: Callable[[str], object] | None = None
) -> bool:
    """Does ``request`` ask whether the catalog holds a title it names (``names_exactly``: a catalog title's exact
    words)? "is the godfather on here?", "do you have Trainspotting?", "is glory in your catalog"; not "is star wars on
    netflix?" (every synthesized question of this kind is answered with a look-up; dev: two were answered without).
    Or does it ask to find a title it names (``names``: exactly or misspelt, :meth:`TitleIndex.names`), "find Amaeus
    for me"?"""
    asks = [(_HAS_TITLE, names_exactly), (_TITLE_AVAILABLE, names_exactly), (_FIND_TITLE, names or names_exactly)]
    for pattern, named in asks:
        for m in pattern.finditer(request):
            if pattern is _FIND_TITLE and _WHERE_TO.search(request, 0, m.start()):
                continue  # "where can i find fargo" asks where to watch it: out of scope
            if named(m.group(1).strip(_SPAN_EDGE + _SPAN_END + " ")):
                return True
    return False


# words of a request that refers back to the one before it ("... instead?", "same but 70s", "any older ones?")
# ("those", "them" are too common: "forget those, something from 1994?" is a new request)
_REFERS_BACK = re.compile(r"\b(?:instead|same but|same again|older|newer|more recent)\b", re.I)


def _moves_years(request: str, requests: Sequence[str]) -> bool:
    """Does ``request``, the last of ``requests``, move the years of the request before it: it writes years and
    refers back (the caller checks that it names no genre)?"""
    return len(requests) > 1 and bool(years_in(request)) and _REFERS_BACK.search(request) is not None


# a follow-up that asks the request before it again for other genres ("ok now the same for comedies", "dramas
# instead", "westerns too?"), and words that ask for other years or anything new ("now show me some recent comedies",
# "comedies too, any decade is fine", "cool. now something totally different: a comedy")
_AGAIN_FOR = re.compile(
    r"\bthe same\b|\bsame (?:for|but|thing|again)\b|\binstead\b|\b(?:too|as well)\s*[?.!]*\s*$", re.I
)
_OTHER_YEARS = re.compile(
    r"\b(?:recent|newer|older|latest|new|old|classic|any (?:decade|year|era|time)|different|else|right now)\b", re.I
)


def _moves_genres(request: str, requests: Sequence[str]) -> bool:
    """Does ``request``, the last of ``requests``, ask the one just before it again for other genres: it writes no
    years, refers back and asks for no other years (the caller checks that it names genres)?"""
    return (
        len(requests) > 1
        and not years_in(request)
        and _AGAIN_FOR.search(request) is not None
        and _OTHER_YEARS.search(request) is None
    )


# a request that turns down the films just shown ("none of those grab me", "not those", "already watched every one
# of those", "not feeling any of these", "they're a bit too old", "know those three", "different ones"), not one that
# has not seen them ("i haven't seen any of those before, which first?", "i've seen none of those") nor praise ("they
# were great too"); words that drop the wish they served start a new one ("forget comedies", "horror instead",
# "something else entirely", "the same for comedies"), not "anything else?"
_TURNS_DOWN = re.compile(
    r"(?<!seen )(?<!watched )\bnone of (?:those|these|them|the above)\b|\bnot (?:those|these|them)\b"
    r"|(?<!n't )(?<!not )(?<!never )(?<!havent )\b(?:seen|watched|had) (?:all |every one |each )?(?:of )?"
    r"(?:those|these|them|'em)\b(?! (?:are|were|look|sound|yet))"
    r"|\bknow (?:those|these|them|'em) (?:all|already|ones|two|three|four|five)\b"
    r"|\bdifferent ones\b|\bnot (?:really )?feeling (?:any of )?(?:those|these|them)\b"
    r"|\b(?:those|these|they)(?: ones)?(?:\s+(?:are|were|r)|['’]re) (?:\w+ ){0,2}too\s+[a-z]",
    re.I,
)
_NEW_WISH = re.compile(r"\b(?:instead|forget|entirely|completely|totally|the same for)\b", re.I)
# a request for another order of the films shown: a filter of them orders them as asked, not as shown
_ASKS_ORDER = re.compile(r"\b(?:sort|sorted|order|ordered|newest|oldest|most popular|by year|by popularity)\b", re.I)
# words that turn the years shown down too ("those are too old, anything newer?"): the years are not kept
# words that bound years without writing one ("anything older?", "anything nwer?", "can you go further back?"),
# misspelt as the synthesizer writes them
_YEARS_SAID = re.compile(
    r"\b(?:"
    + "|".join(_one_slip(w) for w in ("older", "newer", "recent", "latest", "earlier", "later", "before", "after"))
    + r"|since|than th(?:at|ose|is|em)|decades?|years?|era|century|classics?|old|new|back|further|farther)\b",
    re.I,
)
_YEARS_TURNED_DOWN = re.compile(
    r"\b(?:too (?:old|recent|new|dated)|older|newer|more recent|recent|latest|classic)\b", re.I
)


def turns_down_shown(requests: Sequence[str]) -> bool:
    """Does the last of ``requests`` turn down the films shown after the one before it, keeping the wish they served
    (the simulated users' "None of those is what I have in mind. It should be a children's film.")?"""
    return len(requests) > 1 and _TURNS_DOWN.search(requests[-1]) is not None and not _NEW_WISH.search(requests[-1])


def _narrowed(requests: Sequence[str]) -> int:
    """The index of the request a turn-down (the last of ``requests``) narrows: the last one before it that turned
    nothing down ("an adventure film", then "none of those. a children's film", then "none of those. a musical one"
    narrows the first)."""
    at = len(requests) - 2
    while at > 0 and turns_down_shown(requests[: at + 1]):
        at -= 1
    return at


def _turned_down_wish(
    requests: Sequence[str], catalog_genres: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], bool, str | None]:
    """What the wish a turn-down keeps asked for: the genres the requests from the one it narrows on wanted, would
    rather not have and refused (oldest first: "an adventure film", then "it should be a children's film", then "a
    musical one" wants all three), whether one offered its genres as alternatives, and the latest of them that wrote
    years (its titles' years taken out). A narrowed request that was a follow-up itself keeps what it kept ("westerns",
    "anything from the 60s instead?", "none of those grab me" wants westerns)."""
    base = _narrowed(requests)
    readings = [_request_genres(r, catalog_genres) for r in requests[base:-1]]
    if not any(w for w, *_ in readings) and _moves_years(requests[base], requests[: base + 1]):
        named = (_request_genres(r, catalog_genres) for r in reversed(requests[:base]))
        readings.insert(0, next((g for g in named if g[0]), (None, None, (), False)))
    dated = next(
        (TITLE_YEAR.sub(" ", r) for r in reversed(requests[base:-1]) if years_in(TITLE_YEAR.sub(" ", r))), None
    )
    if dated is None and base > 0 and _moves_genres(requests[base], requests[: base + 1]):
        dated = TITLE_YEAR.sub(" ", requests[base - 1]) if years_in(TITLE_YEAR.sub(" ", requests[base - 1])) else None
    return (
        tuple(dict.fromkeys(g for w, *_ in readings for g in w or ())),
        tuple(dict.fromkeys(g for _, u, *_ in readings for g in u or ())),
        tuple(dict.fromkeys(g for _, _, r, _ in readings for g in r)),
        any(e for *_, e in readings),
        dated,
    )


def _kept_years(dated: str) -> tuple[list[int], list[int], list[int], tuple[str, ...]]:
    """The years a follow-up keeps from the earlier request ``dated`` (its titles' years taken out): the years calls
    may start and end at, all of them, and the sides a call must bound."""
    years_from, years_to = year_bounds_in(dated)
    bounded = ("earliest", "latest") if asks_for_decades(dated) else _sides_bounded(dated)
    return years_from, years_to, sorted({*years_from, *years_to}), bounded


def asked_count(messages: Sequence[BaseMessage]) -> int | None:
    """The count the user's last request states (:func:`stated_count`; the answer check's messages are none)."""
    last = next((m for m in reversed(messages) if m.type == "human" and not m.additional_kwargs.get(FEEDBACK)), None)
    return stated_count(_text(last)) if last is not None else None


def turned_down_items(messages: Sequence[BaseMessage]) -> tuple[str, ...]:
    """The ids the assistant's answers cited since the request the user's last message narrows, where that message
    turns them down (an answer to it shows others); () otherwise. The answer check's messages are no requests."""
    asked = [i for i, m in enumerate(messages) if m.type == "human" and not m.additional_kwargs.get(FEEDBACK)]
    requests = [_text(messages[i]) for i in asked]
    if not turns_down_shown(requests):
        return ()
    since = asked[_narrowed(requests)]
    answers = (m for m in messages[since : asked[-1]] if m.type == "ai" and not getattr(m, "tool_calls", None))
    return tuple(dict.fromkeys(i for m in answers for i in _CITED.findall(_text(m))))


def turned_down_floor(turned_down: Sequence[str], asked: int | None) -> int | None:
    """The fewest items a call serving a turn-down lists: the items ``turned_down`` (:func:`turned_down_items`) and as
    many again as its answer shows (the count ``asked`` for, else ANSWER_SHOWS), so others are left once those are
    taken out; at most K_MAX, None where nothing was turned down. Simulated users: "Can you show me different ones?"
    repeated the call that had found the films just turned down, k 10, and was shown them again."""
    return min(K_MAX, len(turned_down) + (asked or ANSWER_SHOWS)) if turned_down else None


def _request_genres(
    request: str | None, catalog_genres: Sequence[str]
) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None, tuple[str, ...], bool]:
    """The genres the calls serving a request must want (some of) and may exclude, from the request's words
    (:func:`~recagent.agents.genre_mentions.genre_mentions`), those it refuses outright ("no horror", not "less
    horror"), and whether it offers the wanted ones as alternatives ("comedy or drama"); (None, None, (), False) where
    nothing is read: no request to read or one that names no genre ("something to cheer me up")."""
    if request is None or not catalog_genres:
        return None, None, (), False
    said = genre_mentions(request, catalog_genres)
    if not (said.wanted or said.unwanted or said.soft):
        return None, None, (), False
    return (
        (said.wanted or None),
        tuple(dict.fromkeys(said.unwanted + said.soft)),
        tuple(dict.fromkeys(said.unwanted)),
        said.either,
    )
