"""Catalog titles that an answer names in plain text ("1. Blade Runner", "I recommend The Terminator").

:mod:`recagent.agents.grounding` reads citations (``[id]``, ``Title (Year)``) itself and masks them;
:func:`find_mentions` reads the rest. A run is a stretch of capitalised words on one line (small
lowercase joiners such as "of", "and", "the" may sit between them, and ", " or ": " gaps, as in
"Sex, Lies, and Videotape" or "Mission: Impossible"). Titles are looked up by their normalised
text (:func:`recagent.tools.lookup_tools.normalise_title`), with and without a leading English
article and with an alternative title in parentheses as a second name, so "The Terminator",
"Terminator" and "Terminator, The" all find ML-100K's "Terminator, The". Where a title is
expected, a match may run on past the run within its line or list entry ("Pink Floyd - The Wall",
"Hot Shots! Part Deux", "Sgt. Bilko"), but never stops inside a run ("Star Wars Holiday Special"
is not "Star Wars" there). When a title matches several items (ML-100K lists some films twice),
the written year narrows them and the caller prefers one a tool returned.

**Which spans count (the rule).** Many ML-100K titles are ordinary words ("Heat", "Fresh",
"Friday", "Speed", "Kids", "Ransom"), so where a run stands decides how much it takes to be read
as a title:

- *strong* forms, where a title is expected: the head of a list entry (``1.``/``1)``/``-``/``*``/
  ``•`` at the start of a line, or numbered entries inline in sequence as in "1. Blade Runner
  2. The Terminator"), the object of a recommendation lead-in ("I recommend", "try", "watch",
  "check out", "how about", "consider", ...; the titles listed after it with commas, "and", "or"
  count too), a quoted or emphasised span (``"Heat"``, ``*Heat*``, ``**Heat**``), and a run
  followed by a year written as ``, 1982``, `` - 1982``, ``(1982 film)`` or ``(film, 1982)``.
  Here a one-word title counts when it is quoted, has a year, follows a lead-in, or is its list
  entry's head not followed by more words ("1. Fargo - snowy noir", not "1. Fresh picks for you");
  a genre name is never a one-word title ("1. Platoon, Drama, War"). A near miss is matched
  fuzzily. A title-like run that matches nothing is reported as *unknown* (a likely
  hallucination): the first segment of a list head, every segment of a lead-in's object, a
  segment with a written year; never a quoted span alone (it may quote the user), never a run
  made only of genre names or list vocabulary ("Top Rated Comedies"), and a one-word run only
  with a year or as a whole list entry. A list entry counts as an unknown item only when the
  answer is about items: tools returned items in the conversation, the answer names a catalog
  item, or the text before the list speaks of films; a menu such as "- Show Your History" in a
  greeting is not flagged.
- *prose*: anywhere else only an exact title of two or more capitalised words counts ("we both
  love Blade Runner"), two besides a leading article at the start of a sentence ("The Rock is
  great." at a sentence start is not read; "I loved The Rock" is), and not a whole exclamation
  ("Good Morning!" greets). Nothing fuzzy and nothing unknown is read from prose, so "Here are
  some picks for you" or "Heat is rising" never alarm.

A run right next to an ``[id]`` citation is that citation's own title and is not read again (the
id decides).

**Fuzzy matching.** rapidfuzz is not installed in this project's environment (and nothing else here
needs it), so near misses are scored with the standard library's ``difflib.SequenceMatcher``, the
matcher :mod:`recagent.tools.lookup_tools` already uses. To stay fast, :class:`TitleIndex` is built
once per catalog (cached by identity) with an exact-key dict and a character-trigram inverted
index; a fuzzy query scores only the 20 titles sharing most trigrams with it, never all 1,682.
Only queries of at least :data:`FUZZY_MIN_CHARS` characters are matched fuzzily (a typo in a short
word is another word), the score must reach :data:`FUZZY_MIN_RATIO`, and numbers must agree
("Terminator 3" is not "Terminator").
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections import Counter
from dataclasses import dataclass, field

from recagent.tools.data.schema import ItemCatalog
from recagent.tools.lookup_tools import normalise_title

CITED = "\x1e"  # the caller's mask for an [id] citation: a title next to it is the citation's own
MASKED = "\x1f"  # the caller's mask for text already read (a "Title (Year)" citation); also our own boundary

FUZZY_MIN_RATIO = 0.88  # "blade runer" ~ "blade runner" scores 0.96; "watch blade runner" 0.80
FUZZY_MIN_CHARS = 8
MAX_TITLE_WORDS = 14  # the longest sub-span tried as a title (ML-100K's longest titles have ~12 words)
# a short misspelt title a request may name ("frago", "glry", "tiatnic", "hery v"): one word besides numbers and single
# letters, at least this many characters, this close to a title of at most two such words (no synthesized title is
# further off; two words of a request, "in there", "king in", are too often close to some title: "Being There")
SHORT_TITLE_CHARS = 4
PARTIAL_TITLE_WORDS = 3
PARTIAL_TITLE_RATIO = 0.8  # "monty python holy grail" ~ "monty python and the holy grail" scores 0.85
SHORT_TITLE_RATIO = 0.8
NAMES_CACHED = 100_000  # spans whose reading is kept (each turn reads every run of words of the last two requests)
_WRITTEN_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")  # "Postino, Il (1994)": the year a title argument may carry

# a word: letters/digits with inner apostrophes, hyphens, slashes, dots, stars ("Sci-Fi", "Face/Off", "L.A", "M*A*S*H")
_TOKEN = re.compile(r"[^\W_](?:[^\W_]|['’])*(?:[-/.*][^\W_](?:[^\W_]|['’])*)*")
# what may separate two words of one run: spaces, optionally a comma, colon or ampersand
_GAP = re.compile(r"[ \t]*(?:[,:&][ \t]*)?")
_ABBREVIATIONS = {
    "mr",
    "mrs",
    "ms",
    "dr",
    "st",
    "jr",
    "sr",
    "vs",
    "vol",
    "no",
    "sgt",
    "lt",
    "col",
    "gen",
    "capt",
    "prof",
    "rev",
    "mt",
    "ft",
    "blvd",
}
# lowercase words that may join capitalised ones inside a title
_JOINERS = {
    "of",
    "the",
    "a",
    "an",
    "and",
    "in",
    "on",
    "at",
    "to",
    "for",
    "with",
    "from",
    "by",
    "or",
    "vs",
    "de",
    "la",
    "le",
    "les",
    "du",
    "des",
    "et",
    "y",
    "el",
    "il",
    "da",
    "di",
    "del",
    "is",
    "it",
    "as",
    "not",
    "into",
    "about",
    "up",
    "out",
    "off",
    "over",
    "under",
    "upon",
    "no",
    "my",
    "your",
    "his",
    "her",
    "our",
}
_ARTICLES = {"the", "a", "an"}
_SEGMENT_WORDS = {"and", "or", "plus"}  # between two titles in one run: "Blade Runner and The Terminator"
_LEAD_WORDS = {
    "try",
    "watch",
    "consider",
    "recommended",
    "suggested",
    "rewatch",
}  # "Try Blade Runner" at a sentence start
# a recommendation lead-in right before a run ("I'd recommend", "you might try", "check out")
_LEAD_IN = re.compile(
    r"(?i)(?:\brecommend(?:ing|ed)?|\bsuggest(?:ing|ed)?|\btry(?:ing)?|\b(?:re)?watch(?:ing)?|\bcheck(?:ing)?\s+out"
    r"|\bhow\s+about|\bwhat\s+about|\bconsider(?:ing)?|\bgo\s+(?:for|with)|\bpick|\bstart\s+with)"
    r"(?:\s+(?:watching|seeing|trying|checking\s+out))?[ \t:]*[*_\"“']*(?:(?:the|a|an)[ \t]+)?[*_\"“']*$"
)
_MARKER = re.compile(r"[ \t]*(?:\d{1,2}[.)]|[-*•+–])[ \t]+")  # a list marker at the start of a line
_INLINE_NUMBER = re.compile(r"(?<=[ \t])(\d{1,2})[.)][ \t]+(?=\S)")
# a year written after a title, other than "(1982)" (the caller reads that form)
_YEAR_AFTER = re.compile(
    r"[ \t]*\((?P<a>(?:18|19|20)\d\d)[ \t]+(?:film|movie)\)"
    r"|[ \t]*\((?:film|movie),?[ \t]+(?P<b>(?:18|19|20)\d\d)\)"
    r"|,[ \t]*(?P<c>(?:18|19|20)\d\d)(?=[ \t]*(?:$|[\n\r.,;!?)\]]|[-–—][ \t]))"
    r"|[ \t]+[-–—][ \t]+(?P<d>(?:18|19|20)\d\d)(?=[ \t]*(?:$|[\n\r.,;!?)\]]|[-–—][ \t]))"
    r"|[ \t]*\[(?P<e>(?:18|19|20)\d\d)\]"
)
# what may stand between two titles of one lead-in's object: a title's own end ("Mars Attacks!", "L.A."), then a
# comma, "and"/"or" or a parenthetical's bracket ("Independence Day (ID4), ..."); never a sentence end alone
_CONTINUES = re.compile(
    r"[.!?]*[ \t)*_\"”'’]*(?:,|\(|,?[ \t]*(?:and|or|&)(?=[ \t]))[ \t,(*_\"“'‘]*(?:(?:and|or)[ \t]+)?[ \t(*_\"“]*"
)
# words by which the text before a list says it lists films ("Here are my picks:", not "Pick one:")
_FILM_WORDS = re.compile(r"(?i)\b(?:movies?|films?|flicks?|titles?|watch\w*|recommend\w*|suggest\w*|picks|enjoy)\b")
_QUOTED = re.compile(
    r"\"([^\"\n]{1,120})\"|“([^”\n]{1,120})”|\*\*([^*\n]{1,120})\*\*|(?<![\w*])\*([^*\n]{1,120})\*(?![\w*])"
    r"|(?<!\w)_([^_\n]{1,120})_(?!\w)"
)
_DECORATION = " \t*_\"“”'’("  # markdown and quotes that may stand between a run and its context
_ROMAN = {"ii", "iii", "iv", "vi", "vii", "viii", "ix"}
# words of list headings and genre talk: a run made only of these (or genres) is not a title
_GENERIC = {
    "top",
    "best",
    "rated",
    "popular",
    "new",
    "classic",
    "more",
    "other",
    "recent",
    "pick",
    "film",
    "movie",
    "title",
    "recommendation",
    "option",
    "choice",
    "favorite",
    "favourite",
    "here",
    "note",
    "tip",
    "all",
    "time",
    "great",
    "good",
    "fun",
    "family",
    "genre",
    "year",
    "rating",
    "user",
    "item",
    "history",
    "sci",
    "fi",
    "noir",
    "feel",
    "light",
    "dark",
    "hidden",
    "gem",
    "must",
    "see",
    "watch",
    "similar",
    "like",
    "why",
    "summary",
    "result",
    "also",
    "bonus",
    "honorable",
    "mention",
    "and",
    "or",
    "of",
    "the",
    "a",
    "an",
    "for",
    "you",
    "your",
    "my",
    "in",
    "with",
    "to",
    "s",
    "i",
    "yes",
    "no",
    "sure",
    "thanks",
}


@dataclass(frozen=True)
class Mention:
    """A title the text names: the catalog ids it may mean (none: no catalog item), its label and form."""

    start: int
    end: int
    label: str  # as written, with " (Year)" when a year was given
    ids: tuple[str, ...]
    form: str  # "list", "lead-in", "quoted", "year" or "prose"
    year: int | None = None  # the year written with it, if any


def drop_article(key: str) -> str:
    """A normalised title without a leading English article ("the terminator" -> "terminator")."""
    first, _, rest = key.partition(" ")
    return rest if first in _ARTICLES and rest else key


def title_keys(title: str) -> set[str]:
    """Normalised names of a catalog title: whole, main and alternative title, each with and without article."""
    keys = {normalise_title(title)}
    m = re.match(r"^(.*?)\s*\(([^()]+)\)\s*$", title)  # "Seven (Se7en)": both names count
    if m:
        keys |= {normalise_title(m.group(1)), normalise_title(m.group(2))}
    keys |= {drop_article(k) for k in keys}
    return {k for k in keys if k}


def numbers(key: str) -> set[str]:
    """Numbers and roman numerals in a normalised title (a sequel differs from its original only there)."""
    return {w for w in key.split() if w.isdigit() or w in _ROMAN}


def _words(key: str) -> list[str]:
    """The words of a normalised title besides numbers and single letters ("henry v" -> ["henry"])."""
    return [w for w in key.split() if len(w) > 1 and w not in numbers(key)]


def trigrams(key: str) -> set[str]:
    """Character trigrams of a padded key (the fuzzy index's terms)."""
    padded = f" {key} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


class TitleIndex:
    """Exact and fuzzy lookup of catalog titles, built once per catalog."""

    def __init__(self, catalog: ItemCatalog):
        self.catalog = catalog
        self.by_key: dict[str, list[int]] = {}
        for i, title in enumerate(catalog.titles):
            for key in title_keys(title):
                self.by_key.setdefault(key, []).append(i)
        self.max_words = min(MAX_TITLE_WORDS, max(len(k.split()) for k in self.by_key))
        self.genre_words = {w for g in catalog.all_genres for w in re.split(r"[^\w]+", g.lower()) if w}
        short = {drop_article(k) for k in self.by_key}
        self._short_keys = sorted(k for k in short if len(_words(k)) <= 2)
        self._named: dict[str, bool] = {}  # spans already read: a conversation's turns read its last requests again
        self._postings: dict[str, list[str]] = {}
        for key in self.by_key:
            if key == drop_article(key):  # article-less keys suffice: queries drop the article too
                for g in trigrams(key):
                    self._postings.setdefault(g, []).append(key)

    def exact(self, text: str) -> list[int]:
        """Catalog positions whose title is ``text`` (normalised; a trailing possessive is forgiven)."""
        key = normalise_title(text)
        hits = self.by_key.get(key) or self.by_key.get(drop_article(key))
        if not hits and key.endswith(" s"):  # "Blade Runner's ending"
            hits = self.by_key.get(key[:-2])
        return list(hits or [])

    def ends_as_written(self, text: str) -> bool:
        """Does the catalog title ``text`` names, misspelt too, end with the mark ``text`` ends with ("Mars
        Attacks!", "That Tihng You Do!")?"""
        mark = text.rstrip()[-1:]
        return bool(mark) and any(
            _WRITTEN_YEAR.sub("", self.catalog.titles[i]).endswith(mark) for i in self.exact(text) or self.fuzzy(text)
        )

    def names(self, text: str) -> bool:
        """Does ``text``, a title argument, name a catalog title: exactly, closely (:meth:`fuzzy`), or as a short
        misspelt title (:data:`SHORT_TITLE_RATIO`)? Each of the 1,491 gold title arguments of the synthesized dialogs
        does (benchmarks/grounded_gold_calls.py); "popular stuff", "7 and 89" and "movie 300" do not."""
        named = self._named.get(text)
        if named is None:
            if len(self._named) >= NAMES_CACHED:  # a long-running server meets ever new words
                self._named.clear()
            named = self._named[text] = self._names(_WRITTEN_YEAR.sub("", text))
        return named

    def _names(self, text: str) -> bool:
        query = drop_article(normalise_title(text))
        # a title of three words or more written with one left out ("monty python holy grail", a test request)
        ratio = PARTIAL_TITLE_RATIO if len(query.split()) >= PARTIAL_TITLE_WORDS else FUZZY_MIN_RATIO
        if self.exact(text) or self.fuzzy(text, min_ratio=ratio):
            return True
        words = _words(query)
        if len(query) < SHORT_TITLE_CHARS or len(words) > 1 or set(words) & self.genre_words:
            return False  # "action" is a genre, no misspelt "Action Jackson"
        return bool(difflib.get_close_matches(query, self._short_keys, n=1, cutoff=SHORT_TITLE_RATIO))

    def fuzzy(self, text: str, year: int | None = None, min_ratio: float = FUZZY_MIN_RATIO) -> list[int]:
        """Catalog positions of the closest title to ``text`` if it is close enough (see module docstring)."""
        query = drop_article(normalise_title(text))
        if len(query) < FUZZY_MIN_CHARS:
            return []
        grams = trigrams(query)
        shared = Counter(k for g in grams for k in self._postings.get(g, ()))
        best, best_ratio = None, min_ratio
        for key, n in shared.most_common(20):
            if n < len(grams) / 2 or numbers(key) != numbers(query):
                continue
            if year is not None and not any(int(self.catalog.years[i]) == year for i in self.by_key[key]):
                continue
            ratio = difflib.SequenceMatcher(None, query, key, autojunk=False).ratio()
            if ratio >= best_ratio:
                best, best_ratio = key, ratio
        return list(self.by_key[best]) if best else []


_INDEXES: dict[int, TitleIndex] = {}


def title_index(catalog: ItemCatalog) -> TitleIndex:
    """The catalog's :class:`TitleIndex`, built on first use."""
    # keyed by identity: catalogs hold arrays and are not hashable; the index keeps the catalog alive
    index = _INDEXES.get(id(catalog))
    if index is None or index.catalog is not catalog:
        index = _INDEXES[id(catalog)] = TitleIndex(catalog)
    return index


@dataclass
class Run:
    """Capitalised words that may form one or more titles, with what stands around them."""

    tokens: list[re.Match]
    first: int  # position of tokens[0] among all words of the text
    list_head: bool = False
    lead_in: bool = False
    quoted: bool = False
    cited: bool = False
    sentence_start: bool = False
    entry_alone: bool = False  # the run is all its list entry holds (a year or punctuation aside)
    limit: int = 0  # where a title starting in this run must end at the latest (its list entry or line)
    year: int | None = None
    segments: list[int] = field(default_factory=list)  # token positions where a new segment starts

    @property
    def start(self) -> int:
        """Where the run's first word starts."""
        return self.tokens[0].start()

    @property
    def end(self) -> int:
        """Where the run's last word ends."""
        return self.tokens[-1].end()

    @property
    def strong(self) -> bool:
        """Whether a title is expected here (see the rule in the module docstring)."""
        return self.list_head or self.lead_in or self.quoted or self.year is not None

    def drop_first(self) -> None:
        """Forget the run's first word."""
        self.tokens.pop(0)
        self.first += 1


@dataclass
class _Scan:
    """One text prepared for reading: list markers and written years masked, and where things are."""

    text: str
    index: TitleIndex
    words: list[re.Match]
    entries: list[tuple[int, int]]  # (body start, end) of every list entry, in text order
    years: dict[int, tuple[int, int]]  # where a written year starts -> (year, where it ends)
    quoted: set[tuple[int, int]]

    def year_at(self, end: int) -> tuple[int, int] | None:
        """The year written right after a title that ends at ``end``, and where it ends."""
        return self.years.get(_skip(self.text, end, 1, "*_\"”'’"))


def _capitalised(word: str) -> bool:
    """Whether a word starts with a capital letter or a digit (as a title's words do)."""
    return word[0].isupper() or word[0].isdigit()


def _joins(text: str, a: re.Match, b: re.Match) -> bool:
    """Whether word ``b`` continues the run that ends with word ``a``."""
    gap = text[a.end() : b.start()]
    if _GAP.fullmatch(gap):
        return True
    # "Mr. Holland's Opus", "L.A. Confidential": a dot after an abbreviation or a single letter
    return bool(re.fullmatch(r"\.[ \t]*", gap)) and (
        a.group().lower() in _ABBREVIATIONS or len(a.group()) == 1 or "." in a.group()
    )


def _is_word_i(tok: re.Match) -> bool:
    """Whether the word is the pronoun "I" (capitalised in any sentence)."""
    return tok.group() in {"I", "I'm", "I'd", "I've", "I'll", "I’m", "I’d", "I’ve", "I’ll"}


def _runs(text: str, words: list[re.Match]) -> list[Run]:
    """Runs of capitalised words (joiners inside), split where text cannot continue a title."""
    runs: list[Run] = []
    current: list[int] = []

    def close() -> None:
        while current and not _capitalised(words[current[-1]].group()):  # a run never ends with a joiner
            current.pop()
        if current:
            runs.append(Run([words[k] for k in current], current[0]))
        current.clear()

    for k, tok in enumerate(words):
        word = tok.group()
        nxt = words[k + 1] if k + 1 < len(words) else None
        # "I" is a word of a title only before another capitalised word ("I Shot Andy Warhol")
        cap = _capitalised(word) and not (
            _is_word_i(tok)
            and not (nxt and _capitalised(nxt.group()) and not _is_word_i(nxt) and _joins(text, tok, nxt))
        )
        if current and _joins(text, words[current[-1]], tok) and (cap or word in _JOINERS):
            current.append(k)
        elif cap:
            close()
            current.append(k)
        else:
            close()
    close()
    return runs


def _list_entries(text: str) -> tuple[str, list[tuple[int, int]]]:
    """The text with list markers masked, and the (body start, end) of each entry."""
    out = list(text)
    extents: list[tuple[int, int]] = []
    pos = 0
    for line in text.splitlines(keepends=True):
        end = pos + len(line.rstrip("\r\n"))
        markers: list[tuple[int, int]] = []
        m = _MARKER.match(text, pos, end)
        if m:
            markers.append((m.start(), m.end()))
        numbered = list(_INLINE_NUMBER.finditer(text, pos, end))
        expected = 2 if re.match(r"[ \t]*1[.)][ \t]", text[pos:end]) else 1
        for x in numbered:  # inline entries count only in sequence: "1. A 2. B 3. C" (or "Top pick: 1. A")
            after_colon = text[pos : x.start()].rstrip().endswith(":")
            if int(x.group(1)) == expected and (expected > 1 or len(numbered) > 1 or after_colon):
                markers.append((x.start(), x.end()))
                expected += 1
        markers.sort()
        for j, (a, b) in enumerate(markers):
            out[a:b] = MASKED * (b - a)
            extents.append((b, markers[j + 1][0] if j + 1 < len(markers) else end))
        pos += len(line)
    return "".join(out), extents


def _skip(text: str, pos: int, step: int, chars: str = _DECORATION) -> int:
    """The first position from ``pos`` (walking by ``step``) that is not one of ``chars``."""
    while 0 <= pos < len(text) and text[pos] in chars:
        pos += step
    return pos


def _line_end(text: str, pos: int) -> int:
    """Where the line holding ``pos`` ends, or the first mask after ``pos`` if that comes sooner."""
    ends = [i for i in (text.find(c, pos) for c in ("\n", MASKED, CITED)) if i >= 0]
    return min(ends, default=len(text))


def _annotate(run: Run, scan: _Scan) -> None:
    """Fill in where the run stands: list head, lead-in object, quoted, next to a citation, year after it."""
    text = scan.text
    # "Try Blade Runner": a lead-in word opening a run is a lead-in, not part of the title
    while len(run.tokens) > 1 and run.tokens[0].group().lower() in _LEAD_WORDS:
        run.drop_first()
        run.lead_in = True
        while run.tokens and not _capitalised(run.tokens[0].group()):
            run.drop_first()
    if not run.tokens:
        return
    before = _skip(text, run.start - 1, -1)
    after = _skip(text, run.end, 1, _DECORATION.replace("(", ")") + " ")
    run.cited = (before >= 0 and text[before] == CITED) or (after < len(text) and text[after] == CITED)
    head = _skip(text, run.start - 1, -1)
    run.sentence_start = head < 0 or text[head] in ".!?:\n\r" + MASKED
    run.lead_in = run.lead_in or bool(_LEAD_IN.search(text, max(0, run.start - 60), run.start))
    run.limit = _line_end(text, run.end)
    year = scan.year_at(run.end)
    run.year = year[0] if year else None
    i = bisect.bisect_right(scan.entries, (run.start, len(text))) - 1
    if i >= 0 and scan.entries[i][0] <= run.start < scan.entries[i][1]:
        a, b = scan.entries[i]
        body = _skip(text, a, 1)
        article = re.match(r"(?i)(?:the|a|an)[ \t]+", text[body : run.start])  # "1. the Terminator"
        run.list_head = body == run.start or bool(article and body + article.end() == run.start)
        run.limit = min(run.limit, b)
        rest = text[year[1] if year else run.end : b]
        run.entry_alone = run.list_head and not re.search(r"[^\W_]", rest.replace(MASKED, ""))
    run.quoted = (run.start, run.end) in scan.quoted
    run.segments = [k for k in range(1, len(run.tokens)) if _segment_break(text, run.tokens[k - 1], run.tokens[k])]


def _segment_break(text: str, a: re.Match, b: re.Match) -> bool:
    """Whether a new title may start at word ``b``: after a comma, an ampersand, or at "and"/"or"."""
    gap = text[a.end() : b.start()]
    return "," in gap or "&" in gap or b.group().lower() in _SEGMENT_WORDS


def _quoted_spans(text: str) -> set[tuple[int, int]]:
    """(start, end) of the trimmed inside of every quoted or emphasised span."""
    spans = set()
    for m in _QUOTED.finditer(text):
        g = next(i for i in range(1, 6) if m.group(i) is not None)
        inner = m.group(g)
        a = m.start(g) + (len(inner) - len(inner.lstrip()))
        spans.add((a, a + len(inner.strip().rstrip(".,!?;:"))))
    return spans


def _year_forms(text: str) -> tuple[str, dict[int, tuple[int, int]]]:
    """The text with written years masked, and for each: where it starts -> (year, where it ends)."""
    out = list(text)
    years: dict[int, tuple[int, int]] = {}
    for m in _YEAR_AFTER.finditer(text):
        year = int(next(v for v in m.groupdict().values() if v))
        years[m.start()] = (year, m.end())
        out[m.start() : m.end()] = MASKED * (m.end() - m.start())
    return "".join(out), years


def _singular(word: str) -> str:
    """A lower-case word without a plural ending ("Comedies" -> "comedy"), for comparing with genres."""
    w = word.lower().strip("'’")
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    return w[:-1] if w.endswith("s") and len(w) > 3 else w


def _title_like(words: list[str], genres: set[str]) -> bool:
    """Whether capitalised words could be a film's title rather than a heading or genre talk."""
    parts = [p for w in words for p in re.split(r"[-/.'’*]+", w) if p]
    return 0 < len(words) <= 10 and not all(
        _singular(p) in _GENERIC or _singular(p) in genres or p.lower() in genres for p in parts
    )


def _significant(tokens: list[re.Match]) -> int:
    """Capitalised words, a leading article not counted."""
    words = [t.group() for t in tokens]
    if words and words[0].lower() in _ARTICLES:
        words = words[1:]
    return sum(_capitalised(w) for w in words)


def _ids(index: TitleIndex, hits: list[int]) -> tuple[str, ...]:
    """Catalog ids of catalog positions, in order, once each."""
    return tuple(dict.fromkeys(index.catalog.ids[i] for i in hits))


def _with_year(index: TitleIndex, hits: list[int], year: int | None) -> list[int]:
    """The catalog positions released in ``year`` (all of them when no year is written)."""
    return hits if year is None else [i for i in hits if int(index.catalog.years[i]) == year]


def _span(text: str, tokens: list[re.Match]) -> str:
    """The text from the first word to the last."""
    return text[tokens[0].start() : tokens[-1].end()]


def _mention(scan: _Scan, tokens: list[re.Match], hits: list[int], year: int | None, form: str) -> Mention:
    """A mention of ``tokens`` (catalog positions ``hits``, narrowed to ``year`` when one is written)."""
    label = _span(scan.text, tokens) + (f" ({year})" if year else "")
    ids = _ids(scan.index, _with_year(scan.index, hits, year))  # none left: the title exists, not in that year
    return Mention(tokens[0].start(), tokens[-1].end(), label, ids, form, year)


def _form(run: Run) -> str:
    """Which strong form the run stands in (for :attr:`Mention.form`)."""
    if run.list_head:
        return "list"
    if run.lead_in:
        return "lead-in"
    if run.year is not None:
        return "year"
    return "quoted"


def _match_strong(run: Run, scan: _Scan) -> tuple[list[Mention], int]:
    """Titles in a run where a title is expected (exact, else fuzzy, else unknown), and where reading stopped."""
    out: list[Mention] = []
    toks, n, index = run.tokens, len(run.tokens), scan.index
    pos = next((s for s in run.segments if s > 0), n) if run.cited else 0  # the cited item's own title is skipped
    while pos < n:
        if toks[pos].group().lower() in _SEGMENT_WORDS or not _capitalised(toks[pos].group()):
            pos += 1
            continue
        seg_end = next((s for s in run.segments if s > pos), n)
        found = _longest_exact(run, scan, pos)
        if found:
            end, hits = found  # end: a position among all words; past the run for "Pink Floyd - The Wall"
            sub = scan.words[run.first + pos : end]
            year = scan.year_at(sub[-1].end())
            out.append(_mention(scan, sub, hits, year[0] if year else None, _form(run)))
            if end > run.first + n:
                return out, sub[-1].end()
            pos = end - run.first
            continue
        sub = toks[pos:seg_end]
        year = run.year if seg_end == n else None
        back = _backward_exact(run, scan) if seg_end == n and pos == 0 and not run.list_head else None
        hits = back[1] if back else ([] if run.cited else index.fuzzy(_span(scan.text, sub), year))
        if back:
            out.append(_mention(scan, back[0], hits, year, _form(run)))
        elif hits:
            out.append(_mention(scan, sub, hits, year, _form(run)))
        elif _may_be_unknown(run, scan, pos, sub, year):
            out.append(_mention(scan, sub, [], year, _form(run)))
        pos = seg_end
    return out, run.end


def _longest_exact(run: Run, scan: _Scan, pos: int) -> tuple[int, list[int]] | None:
    """The longest title starting at the run's word ``pos``: its end (among all words) and catalog positions.

    It may end where the run ends or a segment does, or run on past the run within the line or list entry
    ("Pink Floyd - The Wall", "Hot Shots! Part Deux", "Sgt. Bilko") but not stop inside a run of capitalised
    words ("Star Wars Holiday Special" does not name "Star Wars").
    """
    words, n, start = scan.words, len(run.tokens), run.first + pos
    last = start
    while last + 1 < len(words) and last + 1 - start < scan.index.max_words + 4 and words[last + 1].end() <= run.limit:
        last += 1
    for end in range(last + 1, start, -1):
        inside = end - run.first
        if inside < n and inside not in run.segments:
            continue
        if inside > n and end < len(words) and _runs_on(scan.text, words[end - 1], words[end]):
            continue
        hits = scan.index.exact(_span(scan.text, words[start:end]))
        if not hits:
            continue
        if _significant(words[start:end]) < 2 and not _one_word_ok(run, scan, pos, end):
            return None
        return end, hits
    return None


def _runs_on(text: str, a: re.Match, b: re.Match) -> bool:
    """Whether capitalised word ``b`` continues the title that word ``a`` would end (no comma, "and" between)."""
    return _capitalised(b.group()) and _joins(text, a, b) and not _segment_break(text, a, b)


def _backward_exact(run: Run, scan: _Scan) -> tuple[list[re.Match], list[int]] | None:
    """A title that ends with the run and starts earlier on its line ("Hot Shots! Part Deux, 1993")."""
    words, text = scan.words, scan.text
    for start in range(max(0, run.first - 6), run.first):
        between = text[words[start].end() : run.start]
        if "\n" in between or MASKED in between or CITED in between:
            continue
        sub = words[start : run.first + len(run.tokens)]
        hits = scan.index.exact(_span(text, sub))
        if hits and _capitalised(sub[0].group()):
            return sub, hits
    return None


def _one_word_ok(run: Run, scan: _Scan, pos: int, end: int) -> bool:
    """Whether a one-word title counts here: quoted, with a year, alone in its list entry, or ending a strong run."""
    written = normalise_title(_span(scan.text, scan.words[run.first + pos : end]))
    whole_entry = run.entry_alone and pos == 0 and end - run.first >= len(run.tokens)
    if _singular(written) in scan.index.genre_words or written in scan.index.genre_words:
        return False  # "1. Platoon, Drama, War" lists genres, not "War, The (1994)"
    year = scan.year_at(scan.words[end - 1].end())
    if len(drop_article(written)) < 2:  # "M (1931)": a one-letter title only with its year or alone in an entry
        return year is not None or whole_entry
    if run.quoted or year is not None or whole_entry:
        return True
    if not (run.list_head or run.lead_in or pos > 0):
        return False
    # the word must end the title: "1. Fargo - a crime classic", "try Heat and Fargo", "Blade Runner, Heat."; not
    # "1. Fresh picks for you" or "I'd suggest Friday night"
    follow = scan.text[scan.words[end - 1].end() :].lstrip(" \t*_\"”'’")
    return not follow or not follow[0].isalpha() or re.match(r"(?:and|or)\b", follow) is not None


def _may_be_unknown(run: Run, scan: _Scan, pos: int, sub: list[re.Match], year: int | None) -> bool:
    """Whether an unmatched span is reported as an unknown title (see the rule in the module docstring)."""
    if run.cited or not (run.list_head or run.lead_in or run.year is not None):
        return False  # quoted spans alone may quote the user; prose is never an unknown title
    if pos > 0 and not (run.lead_in or year is not None):
        return False  # "1. Blade Runner, Ridley Scott's best" names one film
    if scan.index.exact(_span(scan.text, sub)):
        return False  # a catalog title, just not in a form that counts here ("1. War: hell on earth")
    if not _title_like([t.group() for t in sub], scan.index.genre_words):
        return False
    if _significant(sub) < 2:
        return year is not None or (run.entry_alone and pos == 0 and len(sub) == len(run.tokens))
    return True


def _match_prose(run: Run, scan: _Scan) -> list[Mention]:
    """Exact titles of two or more capitalised words anywhere in a prose run."""
    out: list[Mention] = []
    toks, n = run.tokens, len(run.tokens)
    i = next((s for s in run.segments if s > 0), n) if run.cited else 0
    while i < n:
        hit = None
        if _capitalised(toks[i].group()):
            for end in range(min(n, i + scan.index.max_words), i + 1, -1):
                sub = toks[i:end]
                if sum(_capitalised(t.group()) for t in sub) < 2 or not _capitalised(sub[-1].group()):
                    continue
                if i == 0 and run.sentence_start and _significant(sub) < 2:
                    continue  # "The Rock is great." opens a sentence; "I loved The Rock" names a film
                if i == 0 and run.sentence_start and end == n and scan.text[sub[-1].end() : sub[-1].end() + 1] == "!":
                    continue  # "Good Morning!" greets; it is also a 1971 film
                hits = scan.index.exact(_span(scan.text, sub))
                if hits and _title_like([t.group() for t in sub], scan.index.genre_words):
                    hit = (end, hits)
                    break
        if hit:
            out.append(_mention(scan, toks[i : hit[0]], hit[1], None, "prose"))
            i = hit[0]
        else:
            i += 1
    return out


def _prepare(text: str, catalog: ItemCatalog) -> _Scan:
    """Mask list markers and written years, and find words, entries and quoted spans."""
    work, entries = _list_entries(text)
    work, years = _year_forms(work)
    return _Scan(work, title_index(catalog), list(_TOKEN.finditer(work)), entries, years, _quoted_spans(work))


def find_mentions(text: str, catalog: ItemCatalog, items_expected: bool = False) -> list[Mention]:
    """Catalog titles (and unknown title-like spans) that ``text`` names in plain text, in order.

    ``items_expected``: tools returned items in this conversation, so a list in the answer is taken for a list of
    items even when nothing else says so (see :func:`_film_list`).
    """
    scan = _prepare(text, catalog)
    mentions: list[Mention] = []
    previous_end = -1  # where the last lead-in object ended (-1: the last run was none)
    read_to = 0  # a title may run on past its run ("Pink Floyd - The Wall"): runs up to here are read
    for run in _runs(scan.text, scan.words):
        while run.tokens and (run.start < read_to or not _capitalised(run.tokens[0].group())):
            run.drop_first()  # the words a title ran on into, and the joiners after them
        _annotate(run, scan)
        if not run.tokens:
            continue
        if previous_end >= 0 and _CONTINUES.fullmatch(scan.text, previous_end, run.start):
            run.lead_in = True  # "I recommend Independence Day (ID4), The Fifth Element and ..."
        if run.strong:
            found, read_to = _match_strong(run, scan)
            mentions += found
        else:
            mentions += _match_prose(run, scan)
        previous_end = max(run.end, read_to) if run.lead_in else -1
    if not _film_list(text, scan, mentions, items_expected):
        mentions = [m for m in mentions if m.ids or m.form != "list" or m.year is not None]
    return mentions


def _film_list(text: str, scan: _Scan, mentions: list[Mention], items_expected: bool) -> bool:
    """Whether the answer's lists hold items, so that an unmatched title-like entry is an unknown item.

    A menu ("- Show Your History", "3. Something Else") looks like a list of titles, so a list counts as one of
    items only if tools returned items in this conversation, the answer names a catalog item anywhere (a
    citation, or a title read here), or the words before its first entry speak of films ("Here are some movies").
    """
    if items_expected or CITED in text or MASKED in text or any(m.ids for m in mentions):
        return True
    first = min((a for a, _ in scan.entries), default=len(text))
    return bool(_FILM_WORDS.search(text, 0, first))


def trailing_title(text: str) -> tuple[int, str] | None:
    """Where the last title-like run of ``text`` starts, and its last segment (for labelling an unknown citation)."""
    work, _ = _list_entries(text)
    runs = _runs(work, list(_TOKEN.finditer(work)))
    if not runs:
        return None
    run = runs[-1]
    while len(run.tokens) > 1 and run.tokens[0].group().lower() in _LEAD_WORDS:
        run.drop_first()
    breaks = [k for k in range(1, len(run.tokens)) if _segment_break(work, run.tokens[k - 1], run.tokens[k])]
    first = breaks[-1] if breaks else 0
    while first < len(run.tokens) - 1 and run.tokens[first].group().lower() in _SEGMENT_WORDS:
        first += 1
    start = run.tokens[first].start()
    return start, text[start : run.end]
