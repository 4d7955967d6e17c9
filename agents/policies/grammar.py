"""What a local policy's reply may be, as an xgrammar structural tag: tool calls and grounded answers.

One grammar serves every local engine (transformers and llama.cpp): the engines only apply
its token masks. The reply grammar under ``tool_choice="auto"`` is::

    reply      ::= answer | call ("\\n" call)*
    call       ::= '<tool_call>{"name": "<bound tool>", "arguments": ' <that tool's parameters schema> '}</tool_call>'
    answer     ::= chat answer or list-wise answer (below)

one tag per bound tool, its fixed prefix carrying the name (so a call can only name a bound tool)
and its content a JSON-schema grammar of that tool's parameters (so arguments satisfy the
schema, ``$defs``/``anyOf``/enums/ranges/lengths included). ``tool_choice="required"`` (or
``"any"``/``True``) drops the answer branch, a tool name keeps only that tool's tag and ``"none"``
keeps only the answer. Several calls per reply need ``parallel_tool_calls=True``; by default the
grammar ends the reply after one call, because the untrained 135M model, offered a separator,
repeats its call until the token budget cuts the last copy off. The prefix shared with
:func:`~recagent.agents.prompt_format.render_tool_call` means the grammar and the training data
cannot disagree.

**Grounded answers** (RecLM-cgen's constrained item generation, done with the grammar engine
instead of a prefix tree). A chat answer is free text in which ``[`` starts an item citation,
``[id] Title (Year)``, and the citation can only be one of the items a tool returned in this
conversation (:class:`CitableItem`): after ``[`` the decoder may write only a prefix of one of
those strings, so the id and the title it shows always belong together; an item whose genres are known
is cited with its first genres too (``[id] Title (Year), Genre, Genre``, the line every synthesized
answer writes), so the genres right after a citation are the item's own, and, as in every synthesized answer,
the citation ends its line or is followed by ``:`` (:func:`answer_filter`: a model that ran on used to append
genres of its own); the same filter lets an answer cite an item once per section and never write one stretch three
times running (a look-up's citation repeated to the token budget). With no citable item, ``[`` cannot be written at all.
An answer right after a tool returned items (:attr:`AnswerRule.cite_required`) cites at least one of
them (as many as the agent asks for, in one section): measured on simulated users, the shipped policy's answers after a
result were often an empty "Here they are:" or prose about its tools, recommending nothing, and later one item of
ten where a synthesized answer shows five. Where the model would end such an
answer before citing, the engines write ``\\n[`` instead (``DecodeJob.end_redirect``): the grammar
alone only refuses the end, and the model then runs on to its token budget. Outside citations the
text cannot open a parenthesised year (``(1``, ``(2``), so it cannot name an item as ``Title (Year)``
without citing it. A list-wise answer is a JSON list of exactly min(k, n) distinct ids of the n
citable items: the grammar fixes the count and the id set, and :func:`answer_filter` keeps the ids in
the order of the citable items, token by token, so none repeats (the agent lists them in the tools'
order, latest result first: the tools rank, the policy picks tools and items; order over n ids is no
context-free rule a grammar compiler can afford; the engines apply the filter after the grammar's mask).
Measured before: allowed 1..k ids, the shipped policy wrote one id and stopped; forced to k ids without
the filter, it repeated one id k times; with distinct ids in any order, it reordered SASRec's list and
lost NDCG@10 against SASRec alone. Tool-call and tool-response tags can never appear in an answer, nor can a call
written as text: answer text has no ``<``, ``>``, ``{`` or ``}`` (no synthesized answer has one).

xgrammar (pinned, >= 0.2.8) rather than outlines or lm-format-enforcer: it is actively
maintained, compiles JSON Schema (``anyOf``, ``$ref``/``$defs``, ``pattern``, numeric and length
bounds, ``additionalProperties: false``) to a grammar with a token-mask cache so per-token
masking costs microseconds, and has structural tags for exactly the "free text or tagged calls"
and "free text with triggered tags" shapes. One gap matters for our pydantic schemas: xgrammar
ignores ``minLength``/``maxLength`` on a string that also has a ``pattern`` (with a warning);
:func:`xgrammar_schema` folds the bounds into simple patterns such as ``^[A-Za-z0-9_\\-]+$``
(-> ``^[A-Za-z0-9_\\-]{1,40}$``) and drops them otherwise. It also turns ``oneOf`` into ``anyOf``
and drops OpenAPI's ``discriminator``. ``uniqueItems``, which no grammar can express, is checked
after the grammar as a call is written (:func:`.call_filter.lists_once`). Two stricter-than-JSON-Schema
choices of xgrammar are kept on purpose: properties come in the schema's declared order (optional ones may
be skipped), and ``pattern`` must match the whole string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from recagent.agents.grounding import citation
from recagent.agents.prompt_format import (
    BLOCK_SEPARATOR,
    TOOL_CALL_OPEN,
    TOOL_CALL_SUFFIX,
    tool_call_prefix,
)
from recagent.agents.prompts import LIST_SEPARATOR, json_id
from recagent.tools.result_text import answer_line

MAX_JSON_WHITESPACE = 1  # inside constrained arguments: enough for json.dumps style, no whitespace loops
CITATION_OPEN = citation("", "")[0]  # "[": the trigger of an item citation in a chat answer
CITATION_CLOSE = citation("", "")[1]  # "]": ends the id of a citation, "[id] Title (Year)"
CITATION_ON_ITS_OWN_LINE = "\n" + CITATION_OPEN  # how an answer line of a synthesized answer starts
# the tags, and anything a call written as text needs, never appear in an answer: no synthesized answer has any of
# these characters (0 of 10,009 in synth4), and the models wrote calls as text under tags and look-alikes of every
# kind: "<tool_response_json>" (base), "<toolcall>", "<tool\\_call>", "< tool_Call>", "<training_call>", '{"name' (shipped)
_EXCLUDED_FROM_TEXT = ["<", ">", "{", "}"]
_YEAR_OPENERS = ["(1", "(2"]  # "(1977)", "(2001)": see answer_format
# what follows a whole citation in every synthesized answer: the end of its line (or of the answer), or ": " and a
# description (a look-up's answer). Measured: where the item had fewer genres than the citation shows at most, the
# shipped policy ran on with ", Comedy, Animated, Comedy, ..." to its token budget (and appended genres to others)
AFTER_CITATION = ("\n", ":")
# An answer cites an item once per section (its text between blank lines: a grouped answer lists an item under each
# group it came from) and never writes one stretch three times running. Every prefix of every synthesized answer that
# cites items passes (8,291 in synth4v's train, validation and test: results/answer_filter_fit.json), while the
# shipped policy's answers on the development requests broke both: a look-up's citation repeated
# to the token budget ("[483] Casablanca (1942), Drama, Romance, War: [483] Casablanca ..."), "Drama: Drama: Drama:
# ..." after a citation, a list's fifth line citing its third item.
SECTION_BREAK = "\n\n"
_RUN_ON = re.compile(r"(.{3,}?)\1\1$", re.S)
_WRITTEN_ID = re.compile(r"\[([^\]\s]+)\] ")  # the id of a written citation, "[id] Title (Year)"
RUN_ON_WINDOW = 240  # the tail read for a run-on: enough for three copies of a long citation line


@dataclass(frozen=True)
class CitableItem:
    """An item the answer may cite: its id, the display text after the id (``Title (Year)``), its genres."""

    item_id: str
    display: str
    # with genres, a citation runs on to the item's own first genres, as every synthesized answer line does
    # (:func:`~recagent.tools.result_text.answer_line`): the genres it writes there are the item's own
    genres: tuple[str, ...] = ()

    def citation(self) -> str:
        """The whole citation as the answer writes it: ``[id] Title (Year)``, then ``, Genre, Genre`` if known."""
        return answer_line(self.item_id, self.display, self.genres)


@dataclass(frozen=True)
class AnswerRule:
    """How the answer branch is constrained: free text with cited ``items``, or a list-wise id list of ``k``."""

    items: tuple[CitableItem, ...] = ()
    listwise_k: int | None = None  # list-wise: a JSON list of exactly min(k, n) distinct ids of the n ``items``
    # a chat answer cites at least this many of ``items``, one section running (it follows a tool's items: as many
    # as the user asked for or a synthesized answer shows, :data:`~recagent.tools.result_text.ANSWER_SHOWS`)
    cite_required: int = 0

    def key(self) -> str:
        """A stable cache key."""
        items = [(i.item_id, i.display, i.genres) for i in self.items]
        return json.dumps([self.listwise_k, self.cite_required, items])


@dataclass(frozen=True)
class CallIds:
    """The values a call's grounded arguments may take (:mod:`recagent.agents.call_ids`): user and item ids, saved
    candidate sets, counts and release years; an empty kind stays free, but an optional set argument with no set
    saved, or year argument with no year written, is dropped."""

    users: tuple[str, ...] = ()
    items: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()
    counts: tuple[int, ...] = ()
    years: tuple[int, ...] = ()
    # the years an earliest-year and a latest-year argument may take (:func:`~recagent.agents.call_ids.year_bounds_in`);
    # None: any of ``years``
    years_from: tuple[int, ...] | None = None
    years_to: tuple[int, ...] | None = None
    # the genres a wanted-genres argument must start with, all of them (a single genre: one of them), as the request
    # named them (:mod:`~recagent.agents.genre_mentions`), and those an unwanted-genres argument may take; None: free
    genres_wanted: tuple[str, ...] | None = None
    genres_unwanted: tuple[str, ...] | None = None
    # the genres the request refused outright ("no horror"), not only would rather have less of ("less fantasy if
    # possible", which a ranking weighs): a call with an unwanted-genres argument writes them, all of them
    genres_refused: tuple[str, ...] = ()
    # the request wants its two or more wanted genres together ("crime dramas", "action and comedy films"), not as
    # alternatives ("comedy or drama"): a call that can ask for all of them does (all 19 synthesized calls with two
    # wanted genres and no "or" between them ask for all; the 135M model left it out on "romantic comedies"), and
    # one that serves any other read request leaves the choice at its default, any
    genres_together: bool = False
    # the catalog's genres: what a wanted-genres list may add after the request's own
    catalog_genres: tuple[str, ...] = ()
    # the sides ("earliest", "latest") a call with a year argument on that side writes: both where the request bounds
    # years by decades alone ("westerns from the sixties"), else those the request bounds (validation: a chain's
    # ranking of "4 1980s drama movies" wrote neither its genre nor its years)
    years_bounded: tuple[str, ...] = ()
    # the items a call chained right after a user's history may list (:func:`~recagent.agents.call_ids.best_rated`):
    # the best-rated first, as a list of its first one, two or three (validation: "more like what I've watched
    # lately" listed an item the user rated 1, or twenty ids); empty: no such result
    seeds: tuple[str, ...] = ()
    # the set the turn's last tool result saved, where the next call follows it in the same turn: a call that can read
    # a saved set reads this one, instead of listing item ids (a chain's ranking of what its first call found)
    fresh_set: str | None = None
    # the set the answer before the request drew from (the last result before the user's message saved it, all of
    # it, not only the items shown), where the request is a follow-up that turns nothing down and asks for no new wish
    # or order ("which ones fit?", "anything more recent?", "leave out noir"): a filter reads that set and keeps its
    # order (all 173 synthesized follow-ups after a saved set do; validation: the policy filtered the whole catalog);
    # other tools stay free
    shown_set: str | None = None
    # the users whose seen items the request leaves out ("nothing I've seen already"): a call that can drop a user's
    # items drops one of theirs; with no such request it drops none (empty)
    unseen_by: tuple[str, ...] = ()
    # the router's save head (ToolRouter.saves): the call stores its result for a later tool (True: its save argument
    # is required and its count may be the pool size, or must be: ``saved_pool``), or does not (False: no save
    # argument, no unsaid pool size); None: the policy chooses
    saves: bool | None = None
    # the pool size where ``counts`` holds it though nobody wrote it: a call that saves nothing cannot ask for it
    unsaid_pool: int | None = None
    # the count the turn's first call writes where it saves its result for a later tool (``saves`` True) and does not
    # require a user id: the pool a later ranking reads, whatever count the user asked of the ranking ("five would be
    # enough, rank them for me"). Every synthesized call of that kind asks for it (benchmarks/grounded_gold_calls.py
    # grounds each gold call as a sure, right save head would: none refused), while a user's own retrieval
    # (retrieve_for_user) asks for 20, for the user's count or for none, so it stays free
    saved_pool: int | None = None
    # the one count the request asks for ("two westerns please", "top 5": :func:`~recagent.agents.call_ids.stated_count`),
    # for the calls serving it (the first and those chained after its results): one that saves nothing lists what the
    # user gets, so every count argument it has (a history's aside) takes this count and is required
    count_stated: int | None = None
    # the fewest items a call serving a turn-down lists (:func:`~recagent.agents.call_ids.turned_down_floor`): the
    # items turned down and as many again as its answer shows, so others are left once those are taken out (simulated
    # users were shown the same five films again: the same call, k 10, returned only films they had turned down)
    count_floor: int | None = None
    # the item of the assistant's last answer the request points at by its place ("more like the second one":
    # :func:`~recagent.agents.call_ids.pointed_item`), for the turn's first call: its item ids are that item alone
    pointed: str | None = None
    # the users the conversation gives as theirs (the session's, "i'm user 42") where the request speaks of no liked
    # items: a ranking's optional "rank for this known user" argument is written, one of them (validation: rank_films
    # without its uid after the user's own retrieval); empty: free
    ranking_users: tuple[str, ...] = ()
    # the dataset's id maps were given, so empty ``users`` or ``items`` means the conversation names no id of that
    # kind: an optional argument of that kind is dropped (it could only be made up)
    indexed: bool = False
    # the call follows the user's request (first or chained in the same turn), whose words the rules above read
    request_read: bool = False
    # the request writes a fraction ("0.7", "70%"): an optional fractional argument (a blend's weight, "0 =
    # recommender only, 1 = preferences only") may take one; else it stays at its default (validation: a ranking
    # wrote weight 1, dropping the recommender; no synthesized call writes one)
    fraction_written: bool = False
    # the request names a recommender ("what would pop pick for me?"): an optional choice of recommender may be written;
    # else it stays at its default (validation: five calls wrote model "pop" or "sasrec" unasked; no synthesized call
    # chooses one unasked)
    model_named: bool = False
    # the strings a title argument may take: spans of the user's words and titles tools returned (empty: free, unless
    # titles_known)
    titles: tuple[str, ...] = ()
    # the spans were checked against the catalog's titles: none left, no title argument can be written ("popular stuff
    # from the 90s" looked up the title "popular")
    titles_known: bool = False
    # the request likens its wish to items it names by id and names no title: a look-up of them is no answer
    likens_named_items: bool = False
    # the request turns down the films shown (:func:`~recagent.agents.call_ids.turns_down_shown`), asks for no title
    # and names no item: it wants others, so a look-up or a ranking of given items is no answer (simulated users'
    # "None of those ... A well-known one." looked up a film just turned down, then ranked one), and only a call finds
    # them ("Can you show me different ones?" was answered from the films shown, one of them again)
    turns_down: bool = False
    # the request asks whether the catalog holds a title it names ("is the godfather on here?") or to find one ("find
    # Amaeus for me"): a look-up answers it
    asks_for_title: bool = False


def ground_call_arguments(tools: list[dict], ids: CallIds | None) -> list[dict]:
    """Copies of OpenAI ``tools`` whose id, saved-set, count and year arguments (found by the tools' argument types,
    under any parameter name; a year's side and a genre argument by its description) can only take ``ids``, with
    the arguments a request asks for required; ``tools`` itself when there is nothing to narrow."""
    from recagent.tools.schemas import (
        ITEM_ID_DESCRIPTION,
        K_DEFAULT,
        K_MAX,
        SAVED_SET_DESCRIPTION,
        USER_ID_DESCRIPTION,
    )

    if ids is None:
        return tools
    given, tools = tools, [_set_reads_marked(t) for t in tools]
    items = (ids.pointed,) if ids.pointed else ids.items
    allowed = {USER_ID_DESCRIPTION: ids.users, ITEM_ID_DESCRIPTION: items, SAVED_SET_DESCRIPTION: ids.sets}

    def is_count(node: dict) -> bool:  # schemas.K: a count under any name is an integer from 1 to K_MAX
        return node.get("type") == "integer" and node.get("minimum") == 1 and node.get("maximum") == K_MAX

    def described(description: str) -> Callable[[dict], bool]:  # a string argument of that kind, under any name
        return lambda node: node.get("type") == "string" and node.get("description") == description

    reads_set, is_item, is_user = map(described, (SAVED_SET_DESCRIPTION, ITEM_ID_DESCRIPTION, USER_ID_DESCRIPTION))

    def keeps_order(node: dict) -> bool:  # an order argument that can keep the candidates' own ("input")
        return KEEP_ORDER in (node.get("enum") or ()) and KEEP_ORDER in node.get("description", "")

    def drops_seen(node: dict) -> bool:  # "drop items this user already interacted with", any noun
        return _SEEN.search(str(node.get("description", ""))) is not None

    # nothing to read: an optional argument of that kind can only fail (a set) or be made up (a year; an id where the
    # dataset's ids are known: "find Dante's Peak" wrote item_id "Dante's Peak"), so the call cannot write it
    kinds = [(reads_set, ids.sets), (is_year, ids.years)]
    if ids.titles_known:
        kinds.append((is_title, ids.titles))
    if ids.indexed:
        kinds += [(is_item, ids.items), (is_user, ids.users)]
    unwritable = [kind for kind, present in kinds if not present]

    def narrow(node: Any, years: tuple[int, ...] = ids.years) -> Any:
        if isinstance(node, list):
            return [narrow(v, years) for v in node]
        if not isinstance(node, dict):
            return node
        values = allowed.get(node.get("description")) if node.get("type") == "string" else None
        if values:
            return one_of(values, node)
        if ids.counts and is_count(node):
            counts = [c for c in ids.counts if not (ids.saves is False and c == ids.unsaid_pool)]
            return {"type": "integer", "enum": counts, "description": node.get("description", "")}
        if ids.years and is_year(node):
            return {"type": "integer", "enum": list(years), "description": node.get("description", "")}
        if ids.seeds and _lists_item_ids(node) and _SEEDED.search(str(node.get("description", ""))):
            # the items a search starts from ("items to find neighbours of", a liked history): the history's
            # best-rated, best first; a ranking's candidates stay free
            # each list spelled out item by item (an enum of lists would be written without the spaces trained on)
            first = [[{"type": "string", "enum": [i]} for i in ids.seeds[:n]] for n in range(1, len(ids.seeds) + 1)]
            lists = [{"type": "array", "prefixItems": p, "minItems": len(p), "maxItems": len(p)} for p in first]
            return {"anyOf": lists, "description": node.get("description", "")}
        out = {k: narrow(v, years) for k, v in node.items() if k != "properties"}
        if ids.pointed and _lists_item_ids(node):  # the one item the request points at
            out["maxItems"] = 1
        if isinstance(node.get("properties"), dict):
            required = set(node.get("required") or ())
            props = {}
            # the set a call reads: the one just saved in this turn, or for a filter the one the last answer showed
            filters = any(keeps_order(p) for p in node["properties"].values())
            source = ids.fresh_set or (ids.shown_set if filters else None)
            chained = bool(source) and any(holds(p, reads_set) for p in node["properties"].values())
            sides: dict[str, str] = {}  # "earliest"/"latest" -> the year parameter of that side
            for name, prop in node["properties"].items():
                side = year_side(name, prop) if ids.years and holds(prop, is_year) else ""
                if side:
                    sides[side] = name
                side_years = {"earliest": ids.years_from, "latest": ids.years_to}.get(side)
                side_years = ids.years if side_years is None else side_years
                genres = {"wanted": ids.genres_wanted, "unwanted": ids.genres_unwanted}.get(genre_sense(prop))
                if chained and holds(prop, reads_set):
                    props[name] = one_of([source], prop)
                    out["required"] = [*out.get("required", []), name]
                    continue
                if chained and name not in required and holds(prop, _lists_item_ids):
                    continue  # the set just saved holds the candidates: no id list beside it
                if chained and keeps_order(prop):  # a chain keeps the order the set was ranked in
                    props[name] = {**prop, "enum": [KEEP_ORDER]}
                    out["required"] = [*out.get("required", []), name]
                    continue
                if ids.titles and is_title(prop):
                    props[name] = one_of(ids.titles, prop)
                    continue
                if ids.saves is not None and name not in required and saves_result(prop):
                    if not ids.saves:
                        continue  # the router is sure nothing reads the result later: nothing to save
                    out["required"] = [*out.get("required", []), name]
                if ids.request_read and name not in required and _MATCH_ALL.search(str(prop.get("description", ""))):
                    if ids.genres_together:
                        props[name] = one_of(["all"], prop)
                        out["required"] = [*out.get("required", []), name]
                        continue
                    # any or all of one genre (or none), or any of alternatives (the default): no synthesized call
                    # writes it
                    continue
                if ids.request_read and name not in required and not ids.fraction_written and holds(prop, is_fraction):
                    continue
                if ids.request_read and name not in required and not ids.model_named and holds(prop, is_model_choice):
                    continue
                if ids.ranking_users and _FOR_USER.search(str(prop.get("description", ""))):
                    # a user, not null: the null branch would leave it out all the same
                    props[name] = one_of(ids.ranking_users, prop)
                    out["required"] = [*out.get("required", []), name]
                    continue
                if drops_seen(prop) and ids.request_read and (ids.unseen_by or name not in required):
                    if not ids.unseen_by:
                        continue  # the request did not ask to leave seen items out
                    props[name] = one_of(ids.unseen_by, prop)
                    out["required"] = [*out.get("required", []), name]
                    continue
                if name not in required and (
                    any(holds(prop, kind) for kind in unwritable)
                    or (side and not side_years)
                    or (genres is not None and not genres)
                    # a chained call excludes only genres the request named: none of 535 synthesized ones does else
                    or (genre_sense(prop) == "unwanted" and genres is None and ids.request_read and bool(ids.fresh_set))
                ):
                    continue  # nothing it could hold was written: the call cannot write it
                props[name] = narrow(prop, side_years)
                # a genre the request refused is never wanted: not the one other genre a call may add, nor any
                wantable = tuple(g for g in ids.catalog_genres if g not in ids.genres_refused)
                if genres and genre_sense(prop) == "wanted":  # the request named genres it wants: the call names them
                    # a chained call too: every synthesized one repeats them (191 after a call that wrote them)
                    # genres wanted together: no other one, which "all" would add to what each item must have
                    props[name] = wanted_genres(props[name], genres, () if ids.genres_together else wantable)
                    out["required"] = [*out.get("required", []), name]
                elif genre_sense(prop) == "wanted" and ids.genres_refused:  # wants none named: any but the refused
                    props[name] = any_of_genres(props[name], wantable)
                elif genres and props[name].get("type") == "array":
                    props[name] = unwanted_genres(props[name], genres, ids.genres_refused)
                    if ids.genres_refused:  # the request refused them: the call does, chained or not
                        out["required"] = [*out.get("required", []), name]
            bounded = [sides[side] for side in ids.years_bounded if sides.get(side) in props]
            if bounded:
                out["required"] = [*out.get("required", []), *(n for n in bounded if n not in out.get("required", []))]

            def pin(names: list[str], values: list[int]) -> None:  # these count arguments take ``values``, written
                for name in names:
                    props[name] = {"type": "integer", "enum": values, "description": props[name].get("description", "")}
                    if name not in out.get("required", []):
                        out["required"] = [*out.get("required", []), name]

            counts = [n for n, p in node["properties"].items() if holds(p, is_count) and n in props]
            # what the user gets, a history's count aside (it reads what the user did)
            lists = [n for n in counts if not _RECENT.search(str(node["properties"][n].get("description", "")))]
            saves = any(saves_result(p) for p in props.values())  # a sure "no save" dropped the save argument
            if ids.saves and ids.saved_pool is not None and not requires_user(node) and saves:
                pin(counts, [ids.saved_pool])
            if ids.count_stated in ids.counts and not saves:
                # a call that saves nothing lists what the user gets: as many as the request asked for (every
                # synthesized call of that kind does); a lookup before the list mostly
                pin(lists, [ids.count_stated])
            for name in lists if ids.count_floor is not None else ():
                values = props[name].get("enum") or [K_DEFAULT]
                pin([name], sorted({min(K_MAX, max(v, ids.count_floor)) for v in values}))
            out["properties"] = props
        return out

    grounded = [narrow(t) for t in tools]
    return given if grounded == given else grounded


def _set_reads_marked(tool: dict) -> dict:
    """``tool`` with every argument that reads a saved set described as one (``SAVED_SET_DESCRIPTION``): a set name
    (``SET_NAME_DESCRIPTION``) that is not the save-the-result argument (:func:`saves_result`, by its description).
    Tools written before the two were told apart (the synthesized dialogs' own) call both a "candidate set name", and
    no set rule held there (validation: a chain's filter read the whole catalog, not the set its first call had just
    saved)."""
    from recagent.tools.schemas import SAVED_SET_DESCRIPTION, SET_NAME_DESCRIPTION

    def mark(node: Any) -> Any:
        if isinstance(node, list):
            return [mark(v) for v in node]
        if not isinstance(node, dict):
            return node
        if node.get("type") == "string" and node.get("description") == SET_NAME_DESCRIPTION:
            return {**node, "description": SAVED_SET_DESCRIPTION}
        return {k: mark(v) for k, v in node.items()}

    params = tool.get("function", {}).get("parameters") or {}
    props = params.get("properties")
    if not isinstance(props, dict):
        return tool
    marked = {name: prop if saves_result(prop) else mark(prop) for name, prop in props.items()}
    if marked == props:
        return tool
    return {**tool, "function": {**tool["function"], "parameters": {**params, "properties": marked}}}


def reads_given_items(tool: dict) -> bool:
    """Does ``tool`` take items it is given, a saved set or a list of item ids (a ranking, similar items, a filter of a
    set), not only a user or words?"""
    from recagent.tools.schemas import SAVED_SET_DESCRIPTION

    def reads_set(node: dict) -> bool:
        return node.get("type") == "string" and node.get("description") == SAVED_SET_DESCRIPTION

    props = (_set_reads_marked(tool)["function"].get("parameters") or {}).get("properties") or {}
    return any(holds(p, reads_set) or holds(p, _lists_item_ids) for p in props.values())


def is_title(node: dict) -> bool:
    """Is this schema node a free string (or null) its description calls a title ("title to match")?"""
    strings = [node, *node.get("anyOf", [])]
    free = any(n.get("type") == "string" and "enum" not in n for n in strings)
    return free and bool(_TITLE.search(node.get("description", "")))


def lookup_names(tools: Sequence[dict]) -> set[str]:
    """The look-ups among OpenAI ``tools``: those with a title argument (one item, and near titles besides)."""
    return {t["function"]["name"] for t in tools if holds(t["function"].get("parameters") or {}, is_title)}


def left_out_for_lookup(tools: list[dict], ids: CallIds | None) -> set[str]:
    """The offered look-ups (tools with a title argument) a call should not make: the user's words name no catalog
    title and no item id can be written, so it would look nothing up, or the request likens its wish to items it names
    by id (:attr:`CallIds.likens_named_items`: similar items, not those) or turns down the films shown
    (:attr:`CallIds.turns_down`: it wants others); none where ``ids`` is None or its titles were not checked against a
    catalog. Dev: "popular stuff from the 90s" looked up the title "popular", "more like 22 and 96" item 22."""
    if ids is None or not ids.titles_known or (ids.titles and not (ids.likens_named_items or ids.turns_down)):
        return set()
    names = lookup_names(tools)
    lookups = [t for t in tools if t["function"]["name"] in names]
    if ids.likens_named_items or ids.turns_down:
        return {t["function"]["name"] for t in lookups}
    return {
        t["function"]["name"]
        for t, g in zip(lookups, ground_call_arguments(lookups, ids))
        if not (g["function"].get("parameters") or {}).get("properties")
    }


def left_out_for_turn_down(tools: list[dict], ids: CallIds | None) -> set[str]:
    """The offered tools that rank or extend given items (an item-id list argument: a ranking, similar items) where the
    request turns the films shown down and names no item of its own (:attr:`CallIds.turns_down`): the only items it
    could give are those turned down (simulated users: "None of those ... A well-known one." ranked one film just
    turned down, alone)."""
    if ids is None or not ids.turns_down:
        return set()
    return {t["function"]["name"] for t in tools if holds(t["function"].get("parameters") or {}, _lists_item_ids)}


def _lists_item_ids(node: dict) -> bool:
    """Is this schema node a list of item ids (schemas.ItemId items)?"""
    from recagent.tools.schemas import ITEM_ID_DESCRIPTION

    return node.get("type") == "array" and (node.get("items") or {}).get("description") == ITEM_ID_DESCRIPTION


def is_year(node: dict) -> bool:
    """Is this schema node a release year under any name (schemas.Year: an integer YEAR_MIN..YEAR_MAX)?"""
    from recagent.tools.schemas import YEAR_MAX, YEAR_MIN

    return node.get("type") == "integer" and node.get("minimum") == YEAR_MIN and node.get("maximum") == YEAR_MAX


def holds(node: Any, kind: Callable[[dict], bool]) -> bool:
    """Does this schema (or a part of it) hold an argument of that kind?"""
    if isinstance(node, dict):
        return kind(node) or any(holds(v, kind) for v in node.values())
    return isinstance(node, list) and any(holds(v, kind) for v in node)


_SEEDED = re.compile(r"\bneighbou?rs of\b|\bliked\b")  # an item list a search starts from


def is_fraction(node: dict) -> bool:
    """Is this schema node a fraction from 0 to 1 (a blend's weight)?"""
    return node.get("type") == "number" and node.get("minimum") == 0 and node.get("maximum") == 1


def is_model_choice(node: dict) -> bool:
    """Is this schema node a choice of recommender (an enum of model names: schemas.ModelName, "text")?"""
    from recagent.tools.schemas import MODEL_CHOICES

    enum = node.get("enum")
    return isinstance(enum, list) and len(enum) > 1 and set(enum) <= MODEL_CHOICES


def takes_years(tool: dict) -> bool:
    """Can a call of this OpenAI tool bound release years (an argument of schemas.Year)?"""
    return holds(tool.get("function", tool).get("parameters") or {}, is_year)


def one_of(values: Sequence[str], prop: dict) -> dict:
    """A string argument that takes one of ``values``, described as ``prop`` is (no null, no other string)."""
    return {"type": "string", "enum": list(values), "description": prop.get("description", "")}


def needs_user(tool: dict) -> bool:
    """Does this OpenAI tool require a dataset user id (a required top-level parameter of that kind, any name)?"""
    return requires_user(tool["function"].get("parameters") or {})


def requires_user(params: dict) -> bool:
    """Does this parameters object require a dataset user id (a required parameter of that kind, any name)?"""
    from recagent.tools.schemas import USER_ID_DESCRIPTION

    props = params.get("properties") or {}
    for name in params.get("required") or ():
        prop = props.get(name) or {}
        if any(n.get("description") == USER_ID_DESCRIPTION for n in [prop, *prop.get("anyOf", [])]):
            return True
    return False


def left_out_for_user(tools: list[dict], ids: CallIds | None) -> set[str]:
    """The offered tools a call cannot name for want of a user: those that require a user id while the conversation
    names no known user (none where ``ids`` is None: nothing was grounded)."""
    if ids is None or ids.users:
        return set()
    return {t["function"]["name"] for t in tools if needs_user(t)}


_SAVES_RESULT = re.compile(r"^store the (?:full result|whole ranking) under this candidate set name")


def saves_result(prop: dict) -> bool:
    """Is this parameter a call's "store the result under this candidate set name" (any parameter name)?"""
    return _SAVES_RESULT.search(str(prop.get("description", ""))) is not None


_MATCH_ALL = re.compile(r"\bany or all\b")  # filter_items' match: "item needs any or all of the genres"
_SEEN = re.compile(r"already interacted with")
_FOR_USER = re.compile(r"^rank for this known user")  # a ranking's optional user (rank_tools.RankItemsArgs.user_id)
_RECENT = re.compile(r"\bmost recent\b")  # a history's count ("how many of the most recent interactions")
KEEP_ORDER = "input"  # filter_items' sort_by value that keeps a candidate set's order (and its variants')
_TITLE = re.compile(r"\btitle\b", re.I)
_EARLIEST = re.compile(r"earliest|start|after|from|\bmin")
_LATEST = re.compile(r"latest|\bend\b|before|\bto\b|until|\bmax")


def year_side(name: str, prop: dict) -> str:
    """Whether a year parameter is a range's "earliest" or "latest" year, by its description ("earliest release
    year", "end of the preferred era"), else its name ("year_min", "released_before"); "" when neither says."""
    for words in (str(prop.get("description", "")), name.replace("_", " ")):
        earliest, latest = bool(_EARLIEST.search(words.lower())), bool(_LATEST.search(words.lower()))
        if earliest != latest:
            return "earliest" if earliest else "latest"
    return ""


# genre parameters by their descriptions (the core tools' and every variant's, whose descriptions change only nouns)
_UNWANTED_GENRES = re.compile(r"genres the user does not want|^drop \w+ with any of these$")
_WANTED_GENRES = re.compile(r"genres to match|restrict to this genre|genres the user wants")


def genre_sense(prop: dict) -> str:
    """Whether a parameter takes genres a request "wanted" or "unwanted", by its description; "" for neither."""
    description = str(prop.get("description", ""))
    if _UNWANTED_GENRES.search(description):
        return "unwanted"
    return "wanted" if _WANTED_GENRES.search(description) else ""


def wanted_genres(prop: dict, genres: tuple[str, ...], catalog: tuple[str, ...]) -> dict:
    """A wanted-genres parameter's schema: a list starting with ``genres`` in the request's order ("crime dramas"
    wants both), then at most one other ``catalog`` genre ("a fantasy film for my 8-year-old nephew" may add
    Children's; with free strings there the 135M base ran on: "Comedy", "Comedy_Aristotelous", ...); a single genre
    is one of ``genres``."""
    if prop.get("type") != "array":
        return one_of(genres, prop)
    prefix = [{"type": "string", "enum": [g]} for g in genres]
    others = [g for g in catalog if g not in genres and g in prop.get("items", {}).get("enum", catalog)]
    out = {**prop, "prefixItems": prefix, "minItems": max(len(genres), prop.get("minItems", 0))}
    if not others:
        return {**out, "maxItems": len(genres)}
    return {**out, "items": {"type": "string", "enum": others}, "maxItems": len(genres) + 1}


def any_of_genres(prop: dict, allowed: tuple[str, ...]) -> dict:
    """A wanted-genres parameter's schema (a list, one genre, or one genre or null) that takes only ``allowed``
    genres, a list at most one of them: a request that refuses some and names none it wants ("anything but
    westerns or war films" wanted War) leaves one of the catalog's others free (a free list had run to five:
    Action, Documentary, Horror, Romance, Thriller)."""
    allowed = list(allowed)
    if not allowed:
        return prop

    def narrowed(node: dict) -> dict:
        if node.get("type") == "array" and isinstance(node.get("items"), dict):
            items = {**node["items"], "type": "string", "enum": allowed}
            return {**node, "items": items, "maxItems": min(1, node.get("maxItems", 1))}
        if node.get("type") == "string":
            return {**node, "enum": allowed}
        return node

    if isinstance(prop.get("anyOf"), list):
        return {**prop, "anyOf": [narrowed(n) if isinstance(n, dict) else n for n in prop["anyOf"]]}
    return narrowed(prop)


def unwanted_genres(prop: dict, genres: tuple[str, ...], refused: tuple[str, ...] = ()) -> dict:
    """An unwanted-genres parameter's schema: a list of ``genres`` the request refused or would rather not have,
    each at most once in count (the adapters repeated "Romance" to the token budget), starting with the ``refused``
    ones, all of them ("anything but westerns or war films" excluded War alone)."""
    items = {**prop.get("items", {}), "type": "string", "enum": list(genres)}
    out = {**prop, "items": items, "maxItems": len(genres)}
    if not refused:
        return out
    prefix = [{"type": "string", "enum": [g]} for g in refused]
    others = [g for g in genres if g not in refused]
    out |= {"prefixItems": prefix, "minItems": max(len(refused), prop.get("minItems", 0))}
    return out | ({"items": {**items, "enum": others}} if others else {"maxItems": len(refused)})


def normalize_tool_choice(tool_choice: Any, tool_names: set[str]) -> str:
    """``"auto"``, ``"none"``, ``"required"`` or a bound tool name, from any langchain/OpenAI spelling."""
    if tool_choice is None or tool_choice is False or tool_choice == "auto":
        return "auto"
    if tool_choice is True or tool_choice in ("required", "any"):
        return "required"
    if tool_choice == "none":
        return "none"
    name = tool_choice
    if isinstance(tool_choice, dict):  # {"type": "function", "function": {"name": ...}} or {"name": ...}
        name = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
    if isinstance(name, str) and name in tool_names:
        return name
    known = ", ".join(sorted(tool_names)) or "no tools are bound"
    raise ValueError(f"tool_choice {tool_choice!r} is not auto, none, required, any or a bound tool name ({known})")


_SIMPLE_REPEAT = re.compile(r"^\^?(\[(?:[^\]\\]|\\.)+\]|\\.|\.|[^\\\[\]()|?*+{}^$])([+*])\$?$")


def xgrammar_schema(schema: dict) -> dict:
    """A copy of a JSON schema that xgrammar enforces fully (see the module docstring for what changes)."""

    def fix(node: Any) -> Any:
        if isinstance(node, list):
            return [fix(v) for v in node]
        if not isinstance(node, dict):
            return node
        node = {k: fix(v) for k, v in node.items()}
        if "oneOf" in node and "anyOf" not in node:
            node["anyOf"] = node.pop("oneOf")
        node.pop("discriminator", None)
        if isinstance(node.get("pattern"), str) and ("minLength" in node or "maxLength" in node):
            lo, hi = node.pop("minLength", None), node.pop("maxLength", None)
            m = _SIMPLE_REPEAT.match(node["pattern"])
            if m:  # "^X+$" with lengths -> "^X{lo,hi}$"
                atom, quant = m.groups()
                lo = max(lo or 0, 1 if quant == "+" else 0)
                node["pattern"] = f"^{atom}{{{lo},{'' if hi is None else hi}}}$"
        return node

    return fix(schema)


def _ebnf_string(text: str) -> str:
    """An EBNF string literal (JSON escaping is valid xgrammar EBNF escaping)."""
    return json.dumps(text, ensure_ascii=True)


def answer_format(rule: AnswerRule | None) -> Any:
    """The answer branch: free text (citations constrained to ``rule.items``) or a list-wise id list."""
    from xgrammar.structural_tag import (
        AnyTextFormat,
        GrammarFormat,
        SequenceFormat,
        TagFormat,
        TriggeredTagsFormat,
    )

    if rule is None:
        return AnyTextFormat(excludes=_EXCLUDED_FROM_TEXT)
    ids = list(dict.fromkeys(i.item_id for i in rule.items))
    if rule.listwise_k is not None:
        if not ids:  # nothing to list yet: the model has to call a tool (or say so in words)
            return AnyTextFormat(excludes=[*_EXCLUDED_FROM_TEXT, "["])
        k = min(rule.listwise_k, len(ids))
        one = "(" + " | ".join(_ebnf_string(json_id(i)) for i in ids) + ")"
        more = f" ({_ebnf_string(LIST_SEPARATOR)} id){{{k - 1}}}" if k > 1 else ""
        return GrammarFormat(grammar=f'root ::= "[" id{more} "]"\nid ::= {one}')
    # a year in parentheses only inside a citation: a free-text "Title (Year)" would be an uncited mention
    # that the answer check sends back (measured: the untrained model's rejected answers were all of that kind)
    free_text_excludes = [*_EXCLUDED_FROM_TEXT, *_YEAR_OPENERS]
    if not rule.items:
        return AnyTextFormat(excludes=[*free_text_excludes, CITATION_OPEN])
    # after "[" only a whole citation of a citable item can follow (a prefix tree over their strings)
    cites = " | ".join(_ebnf_string(i.citation()[len(CITATION_OPEN) :]) for i in dict.fromkeys(rule.items))
    tag = TagFormat(begin=CITATION_OPEN, content=GrammarFormat(grammar=f"root ::= {cites}"), end="")
    text = TriggeredTagsFormat(triggers=[CITATION_OPEN], tags=[tag], excludes=free_text_excludes)
    if rule.cite_required:  # text up to a first citation, then text as usual (xgrammar's at_least_one would
        # make the answer open with the citation, which no synthesized answer does)
        # ("[" is excluded from the text before it, or "[Insert a title]" would pass for free text); the citations
        # still required follow within the section (answer_filter: an item once per section, so they are distinct)
        first = [AnyTextFormat(excludes=[*free_text_excludes, CITATION_OPEN]), tag]
        more = [AnyTextFormat(excludes=[*free_text_excludes, CITATION_OPEN, SECTION_BREAK]), tag]
        return SequenceFormat(elements=[*first, *more * (rule.cite_required - 1), text])
    return text


def citable_items(ids: Sequence[str], catalog: Any) -> tuple[CitableItem, ...]:
    """The items of ``ids`` that ``catalog`` (a :class:`~recagent.tools.data.Catalog`) holds, as an answer cites them."""
    rows = [(i, j) for i in ids if (j := catalog.index_of.get(i)) is not None]
    return tuple(CitableItem(i, catalog.display(j), tuple(catalog.genres[j])) for i, j in rows)


def cited_items(text: str, catalog: Any) -> tuple[CitableItem, ...]:
    """The catalog items a written chat answer cites (``[id] Title``), first cited first."""
    return citable_items(list(dict.fromkeys(_WRITTEN_ID.findall(text))), catalog)


def filter_cut(text: str, items: Sequence[CitableItem]) -> int | None:
    """The length of the shortest prefix of the chat answer ``text`` that :func:`answer_filter` rejects when the
    answer may cite ``items`` (None: it passes whole)."""
    passes = answer_filter(AnswerRule(tuple(items)))
    if passes is None:
        return None
    return next((end for end in range(1, len(text) + 1) if not passes(text[:end])), None)


def answer_filter(rule: AnswerRule | None) -> Callable[[str], bool] | None:
    """A check of a reply prefix, False once it breaks a rule no grammar here states (None: nothing to check).

    List-wise: an id comes before one listed ahead of it in ``rule.items`` (so none repeats). Chat: a whole citation is followed by anything but the end of its line or
    ``:`` (see :data:`AFTER_CITATION`), an item is cited twice in a section, or a stretch is written three times
    running (see :data:`SECTION_BREAK`).
    """
    if rule is None or not rule.items:
        return None
    if rule.listwise_k is None:
        cites = tuple(dict.fromkeys(i.citation() for i in rule.items))
        # an item one tool returned with genres and another without is citable both ways: the shorter goes on
        cites = tuple(c for c in cites if not any(o != c and o.startswith(c) for o in cites))

        item_of = {i.citation(): i.item_id for i in rule.items}
        by_head: dict[str, list[str]] = {}  # "[id]" -> the citations that open with it (with and without genres)
        for c in item_of:
            by_head.setdefault(c[: c.find(CITATION_CLOSE) + 1], []).append(c)

        def lines_end(text: str) -> bool:
            # a tool call is the grammar's business alone
            return text.startswith(TOOL_CALL_OPEN) or (
                _citations_end_lines(text, cites) and _cites_once(text, item_of, by_head)
            )

        return lines_end
    options = tuple(dict.fromkeys(json_id(i.item_id) for i in rule.items))
    k = min(rule.listwise_k, len(options))

    def in_order(text: str) -> bool:
        # a tool call (or anything but a list) is the grammar's business alone
        return not text.startswith("[") or _extends_in_order(text[1:], options, 0, k)

    return in_order


def _cites_once(text: str, item_of: Mapping[str, str], by_head: Mapping[str, Sequence[str]]) -> bool:
    """True if no item is cited twice in the section ``text`` ends in (the text after its last blank line), the
    citation being written included as soon as every item it can still become was cited before, and, unless a
    citation is being written (a title may repeat itself: "Tora! Tora! Tora!"), ``text`` does not run on."""
    text = text.rstrip("\ufffd")  # a token holding part of a character decodes to U+FFFD until the rest comes
    twice, open_citation = _section_citations(text, item_of, by_head)
    return not twice and (open_citation or not _runs_on(text))


def _section_citations(
    text: str, item_of: Mapping[str, str], by_head: Mapping[str, Sequence[str]]
) -> tuple[bool, bool]:
    """Whether the section ``text`` ends in cites an item twice, and whether it ends inside a citation."""
    section = text[text.rfind(SECTION_BREAK) + len(SECTION_BREAK) :] if SECTION_BREAK in text else text
    cited: set[str] = set()
    at, end = section.find(CITATION_OPEN), 0
    while at >= 0:
        if at >= end:  # a "[" inside a citation already read is part of its title ("[REC] (2007)")
            close = section.find(CITATION_CLOSE, at)
            heads = by_head.get(section[at : close + 1], ()) if close >= 0 else ()
            whole = max((c for c in heads if section.startswith(c, at)), key=len, default=None)
            if whole is None:  # the citation being written: it ends the text
                written = section[at:]
                ids = {i for c, i in item_of.items() if c.startswith(written)}
                return bool(ids) and not (ids - cited), True
            if item_of[whole] in cited:
                return True, False
            cited.add(item_of[whole])
            end = at + len(whole)
        at = section.find(CITATION_OPEN, at + 1)
    return False, False


def _runs_on(text: str) -> bool:
    """True if ``text`` ends in three copies of one stretch of three or more characters (``: Drama: Drama: Drama``)."""
    return _RUN_ON.search(text[-RUN_ON_WINDOW:]) is not None


def _citations_end_lines(text: str, cites: tuple[str, ...]) -> bool:
    """True if every whole citation of ``cites`` in ``text`` is followed by nothing or by one of AFTER_CITATION."""
    for cite in cites:
        at = text.find(cite)
        while at >= 0:
            after = at + len(cite)
            if after < len(text) and text[after] not in AFTER_CITATION:
                return False
            at = text.find(cite, after)
    return True


def _extends_in_order(rest: str, options: tuple[str, ...], start: int, left: int) -> bool:
    """True if ``rest`` (a list's text after ``[``) can still be read as ``left`` ids of ``options[start:]``, each
    after the one before it in ``options`` (so none twice), with room left for the ids still to come."""
    if left <= 0:  # a separator after the last id: more ids than the list holds
        return False
    for j in range(start, len(options) - left + 1):
        option = options[j]
        if option.startswith(rest):  # an id being written (or none started yet)
            return True
        if rest.startswith(option):
            after = rest[len(option) :]
            if after == "]" or LIST_SEPARATOR.startswith(after):  # closed, or the separator being written
                return True
            if after.startswith(LIST_SEPARATOR) and _extends_in_order(
                after[len(LIST_SEPARATOR) :], options, j + 1, left - 1
            ):
                return True
    return False


def tool_call_structural_tag(
    tools: Sequence[dict], tool_choice: str = "auto", parallel_tool_calls: bool = True, answer: AnswerRule | None = None
) -> Any:
    """The xgrammar ``StructuralTag`` for a reply under ``tool_choice`` (normalized) over OpenAI ``tools``."""
    from xgrammar.structural_tag import (
        JSONSchemaFormat,
        OrFormat,
        StructuralTag,
        TagFormat,
        TagsWithSeparatorFormat,
    )

    text = answer_format(answer)
    if tool_choice == "none" or not tools:
        return StructuralTag(format=text)
    functions = [t.get("function", t) for t in tools]
    if tool_choice not in ("auto", "required"):
        functions = [f for f in functions if f["name"] == tool_choice]
    tags = [
        TagFormat(
            begin=tool_call_prefix(f["name"]),
            content=JSONSchemaFormat(
                json_schema=xgrammar_schema(f.get("parameters") or {"type": "object", "properties": {}}),
                max_whitespace_cnt=MAX_JSON_WHITESPACE,
            ),
            end=TOOL_CALL_SUFFIX,
        )
        for f in functions
    ]
    calls = TagsWithSeparatorFormat(
        tags=tags, separator=BLOCK_SEPARATOR, at_least_one=True, stop_after_first=not parallel_tool_calls
    )
    return StructuralTag(format=OrFormat(elements=[text, calls]) if tool_choice == "auto" else calls)


class GrammarCache:
    """Compiled grammars for one tokenizer, keyed by (tools, tool choice, parallel, answer rule), least recent out."""

    def __init__(self, tokenizer: Any, vocab_size: int, size: int = 32) -> None:
        import xgrammar as xgr

        # vocab_size may exceed the tokenizer's (padded embeddings): masks must cover every logit
        self.compiler = xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size))
        self.vocab_size = vocab_size
        self.size = size
        self._compiled: dict[tuple, Any] = {}

    def get(self, tools: list[dict], choice: str, parallel: bool, answer: AnswerRule | None) -> Any:
        """The compiled grammar for a reply (compiled once per key)."""
        key = (json.dumps(tools, sort_keys=True), choice, parallel, answer.key() if answer else None)
        compiled = self._compiled.pop(key, None)
        if compiled is None:
            compiled = self.compiler.compile_structural_tag(tool_call_structural_tag(tools, choice, parallel, answer))
        self._compiled[key] = compiled  # re-inserted: most recent last
        while len(self._compiled) > self.size:
            self._compiled.pop(next(iter(self._compiled)))
        return compiled


__all__ = [
    "CITATION_ON_ITS_OWN_LINE",
    "AnswerRule",
    "CallIds",
    "CitableItem",
    "GrammarCache",
    "answer_filter",
    "answer_format",
    "ground_call_arguments",
    "normalize_tool_choice",
    "saves_result",
    "tool_call_structural_tag",
    "xgrammar_schema",
]
