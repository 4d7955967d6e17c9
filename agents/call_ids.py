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
split fit the grounded schemas, as do all of validation and test (``benchmarks/grounded_gold_calls.py``). A user id
of 100 or less is admitted as a count too: telling it from a count would need the request parsed, and the rule
only has to keep out counts nobody wrote. The sft_chains adapter invented counts (15, 40, 50) and read sets nobody saved ("k",
"pop").

Release years too: a year argument is a year some message wrote or one either side of it ("after 1989" is from
1990), or the first or last year of a decade written ("the 80s", "eighties", misspelt "eihties", as people and the
synthesizer's typos write them), and with no year written a call has no year argument. The trained
adapters invented ranges ("thrillers without any horror in them" became 1999 to 1999); every year argument of the
12,374 gold calls fits, as does every year the hand-written requests accept (tested; a tool result's years count:
"anything older than those?").
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence

from langchain_core.messages import BaseMessage

from recagent.agents.policies.grammar import CallIds
from recagent.tools.schemas import K_DEFAULT, K_MAX, POOL_K, YEAR_MAX, YEAR_MIN

_DIGITS = re.compile(r"(?<!\d)\d{1,9}(?!\d)")
_WORD = re.compile(r"[a-z]+")
_DOZEN = ((re.compile(r"\bhalf an? dozen\b"), "six"), (re.compile(r"\b(?:an? )?dozen\b"), "twelve"))
_YEAR = re.compile(r"(?<!\d)\d{4}(?!\d)")
# decades: "1980s", "80s", "'80s", "eighties" (a two-digit decade is of the 1900s: the catalogs end in 1998)
_DECADE = re.compile(r"(?<!\d)(1[89]|20)?(\d)0'?s\b")
# the line an item list's result text writes when the list was saved (ItemList.candidate_set, result_text)
_SAVED_SET = re.compile(r"^candidate_set: (\S+)$", re.M)
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
    lower = text.lower()
    starts = [int(c or "19") * 100 + int(d) * 10 for c, d in _DECADE.findall(lower)]
    for word in _WORD.findall(lower):
        # misspelt as people (and the synthesizer's typos) write them: "ninetes", "eihties"
        close = difflib.get_close_matches(word, DECADE_WORDS, n=1, cutoff=0.8) if word.endswith("s") else []
        if close and close[0][0] == word[0]:
            starts.append(1900 + DECADE_WORDS[close[0]])
    for start in starts:
        years += [start, start + 9]
    return [y for y in dict.fromkeys(years) if YEAR_MIN <= y <= YEAR_MAX]


def conversation_call_ids(
    messages: Sequence[BaseMessage],
    user_ids: Mapping[str, int],
    item_ids: Mapping[str, int],
    session_user: str | None = None,
    returned_items: Iterable[str] = (),
) -> CallIds:
    """The users and items a call in this conversation may name: numbers of its messages that are catalog item
    ids and the items tools returned; numbers of its system and user messages that are dataset user ids, and the
    session's user (the item ids of results and answers are no users: all 8,049 user arguments of two synthesized
    runs are numbers of system or user text); the sets tool results were saved under; the counts of system and
    user text, the tools' default and the pool size; the release years any message wrote (:func:`years_in`: a tool
    result's years too, for "anything more recent than that")."""
    numbers: list[str] = []
    said: list[str] = []
    sets: list[str] = []
    years: list[int] = []
    for m in messages:
        content = m.content if isinstance(m.content, str) else str(m.content)
        found = numbers_in(content)
        numbers += found
        years += years_in(content)
        if m.type in ("system", "human"):
            said += found
        if m.type == "tool":
            sets += _SAVED_SET.findall(content)
    users = [n for n in said if n in user_ids]
    if session_user is not None and str(session_user) in user_ids:
        users.insert(0, str(session_user))
    items = [n for n in numbers if n in item_ids] + [str(i) for i in returned_items]
    counts = sorted({int(n) for n in said if 1 <= int(n) <= K_MAX} | {K_DEFAULT, POOL_K})
    return CallIds(
        users=tuple(dict.fromkeys(users)),
        items=tuple(dict.fromkeys(items)),
        sets=tuple(dict.fromkeys(sets)),
        counts=tuple(counts),
        years=tuple(sorted(set(years))),
    )
