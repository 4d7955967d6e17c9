"""The ids a call may name: numbers of the conversation, as digits or words, that are users or items."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from recagent.agents.call_ids import (
    conversation_call_ids,
    number_words,
    numbers_in,
    pointed_item,
    stated_count,
    titled_item,
    wish_likens,
    year_bounds_in,
    years_in,
)
from recagent.agents.context import FEEDBACK


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("i am user number two hundred and thirty four. something funny", [234]),
        ("list my history please (user nine hundred forty-three)", [943]),
        ("twelve films, or twenty", [12, 20]),
        ("one thousand and two", [1002]),
        ("two three", [2, 3]),
        ("the second one, not the first", [1]),
        ("no numbers here", []),
    ],
)
def test_number_words(text, numbers):
    assert number_words(text) == numbers


def test_numbers_in_reads_digits_and_words_once_each():
    # "1990s" is a decade (years_in reads it), no number an id or count could be
    assert numbers_in("User 88, #500 and 007: two hundred and thirty four, 1990s, 88") == ["88", "500", "7", "234"]


def test_conversation_ids_are_numbers_that_name_users_or_items_plus_the_session_user_and_returned_items():
    users = {str(u): u for u in range(1, 944)}
    items = {str(i): i for i in range(1, 1683)}
    messages = [
        SystemMessage("You recommend films."),
        HumanMessage("user number two hundred and thirty four here; order these: 127 187 182 11 12 from 1997"),
        AIMessage(""),
        ToolMessage("[1500] Some Film (1995), [300] Another (1996)", tool_call_id="c1"),
    ]
    ids = conversation_call_ids(messages, users, items, session_user="42", returned_items=["1600"])
    assert ids.users[0] == "42"  # the session's user first
    assert set(ids.users) == {"42", "127", "187", "182", "11", "12", "234"}  # 1997 is no user id; 1500 a result's
    assert set(ids.items) == {"127", "187", "182", "11", "12", "234", "1500", "300", "1600"}  # 1997 is no item id
    assert conversation_call_ids([HumanMessage("hello")], users, items).users == ()


def test_a_call_may_read_the_sets_results_were_saved_under_and_the_counts_people_wrote():
    users = {str(u): u for u in range(1, 944)}
    items = {str(i): i for i in range(1, 1683)}
    messages = [
        SystemMessage("You recommend films. The user is user 5."),
        HumanMessage("half a dozen comedies like Heat please, and a dozen dramas"),
        AIMessage(""),
        ToolMessage("total_matches: 40\ncandidate_set: pool\nitems:\n[77] Some Film (1995): Comedy", tool_call_id="c1"),
        ToolMessage("total_matches: 30\nitems:\n[78] Other Film (1996): Drama", tool_call_id="c2"),
    ]
    ids = conversation_call_ids(messages, users, items)
    assert ids.sets == ("pool",)  # a result without a candidate_set line saved nothing
    assert ids.fresh_set is None  # the last result saved nothing
    chained = conversation_call_ids(messages[:-1], users, items)
    assert chained.fresh_set == "pool"  # the next call follows "pool" in the same turn
    assert chained.counts == (6, 10, 12)  # and asks for no pool of 20: only a first retrieval does
    assert chained.saved_pool is None and ids.saved_pool is None  # nor saves one
    assert conversation_call_ids(messages[:2], users, items).saved_pool == 20  # the turn's first call may
    follow_up = conversation_call_ids([*messages[:-1], HumanMessage("only older ones")], users, items)
    assert follow_up.fresh_set is None and follow_up.sets == ("pool",)  # a new request: any saved set, none forced
    # 6 and 12 are the request's, 10 and 20 the tools' default and pool size; 40 and 30 are counts of results, not
    # of the request, and 5 the user's id (written once, as the user's)
    assert ids.counts == (6, 10, 12, 20)
    assert number_words("half a dozen or a dozen") == [6, 12]


@pytest.mark.parametrize(
    ("text", "years"),
    [
        ("war movies no older than 1980", [1979, 1980, 1981]),  # a year and either side ("after 1979" = from 1980)
        ("80s adventure movies, no fantasy", [1980, 1989]),
        ("'90s comedies or something from the fifties", [1990, 1999, 1950, 1959]),
        ("the 1960s", [1959, 1960, 1961, 1960 + 9]),
        ("made in the nienties, or the eihties", [1990, 1999, 1980, 1989]),  # misspelt decades
        ("thrillers without any horror in them", []),
        ("nineteen films from user 1995", [1994, 1995, 1996]),  # "nineteen" is no decade
    ],
)
def test_years_a_call_may_take_are_the_years_and_decades_written(text, years):
    assert sorted(years_in(text)) == sorted(set(years))


def test_a_conversations_years_include_the_years_its_results_showed():
    # "anything more recent than that?" after a result: the year comes from the items shown
    messages = [
        HumanMessage("a sci-fi movie please"),
        AIMessage(""),
        ToolMessage("items:\n[50] Star Wars (1977): Sci-Fi", tool_call_id="c1"),
        HumanMessage("anything older than that?"),
    ]
    assert conversation_call_ids(messages, {}, {}).years == (1976, 1977, 1978)
    assert conversation_call_ids(messages[-1:], {}, {}).years == ()


def test_every_year_a_hand_written_request_accepts_is_one_the_grammar_admits():
    # a grounding rule that refused an accepted first call would cap the hand-written score: the years of the
    # request, its earlier turns included ("anything older than those?" after films of 1977), must cover them
    from recagent.heldout_requests import never_trained_on

    checked = 0
    for request in never_trained_on():
        texts = [t.text for t in request.context] + [request.text]
        admitted = {y for t in texts for y in years_in(t)}
        # and on its side: "before 1960" is no earliest year, "nothing older than 1990" no latest one
        sides = {"year_min": {y for t in texts for y in year_bounds_in(t)[0]}}
        sides["year_max"] = {y for t in texts for y in year_bounds_in(t)[1]}
        for accepted in request.accepted_first_calls:
            for name in ("year_min", "year_max"):
                if accepted.args.get(name) is not None:
                    assert accepted.args[name] in admitted & sides[name], (request.id, name, accepted.args[name])
                    checked += 1
    assert checked > 50, "the hand-written requests accept calls with years"


@pytest.mark.parametrize(
    ("text", "earliest", "latest"),
    [
        ("an adventure movie made before 1960", [], [1959, 1960, 1961]),
        ("fantasy films from 1985 or earlier", [], [1984, 1985, 1986]),
        ("nothing released before 1990", [1989, 1990, 1991], []),  # a negation turns the cue around
        ("no mvies from before 1990", [1989, 1990, 1991], []),  # two words between, a typo in them
        ("sikp anything pre-1975", [1974, 1975, 1976], []),  # a misspelt negation
        ("anything from before 1990?", [], [1989, 1990, 1991]),  # "anything" is no misspelt "nothing"
        ("not older than 1995", [1994, 1995, 1996], []),
        ("nothing too long, and made before 1960", [], [1959, 1960, 1961]),  # a negation of another clause
        ("movies from 1990 onwards", [1989, 1990, 1991], []),
        ("between 1985 and 1995", [1984, 1985, 1986], [1994, 1995, 1996]),
        ("documentaries released 1990 through 1994", [1989, 1990, 1991], [1993, 1994, 1995]),
        ("westerns from the sixties", [1960], [1969]),  # a decade: its first year earliest, its last latest
        ("the 1940s", [1940], [1949]),
        ("a drama made around 1995", [1994, 1995, 1996], [1994, 1995, 1996]),  # no cue: either side
        ("a drama from 1995", [1995], [1995]),  # a year of its own: itself either side
        ("dramas from 1990 onwads", [1989, 1990, 1991], [1989, 1990, 1991]),  # a misspelt cue: no year of its own
        ("nothing older than the 80s", [1980], []),  # a decade's cue
        ("nothing newer than the 80s", [], [1989]),
        ("the nineties or laetr only", [1990], []),  # a misspelt cue
        ("i'm after nineties sci-fi", [1990], [1999]),  # "i'm after" wants them
    ],
)
def test_a_written_year_bounds_a_range_on_the_side_its_words_give(text, earliest, latest):
    assert year_bounds_in(text) == (earliest, latest)


def _year_tool(**described: str) -> dict:
    """An OpenAI tool whose optional year parameters (schemas.Year) have these names and descriptions."""
    from recagent.tools.schemas import YEAR_MAX, YEAR_MIN

    year = {"anyOf": [{"type": "integer", "minimum": YEAR_MIN, "maximum": YEAR_MAX}, {"type": "null"}]}
    properties = {name: {**year, "description": text} for name, text in described.items()}
    return {
        "type": "function",
        "function": {"name": "filter_items", "parameters": {"type": "object", "properties": properties}},
    }


def test_a_year_argument_takes_the_years_of_its_side():
    from recagent.agents.policies.grammar import ground_call_arguments

    tool = _year_tool(year_min="earliest release year", to_year="end of the preferred era")
    schema = ground_call_arguments([tool], conversation_call_ids([HumanMessage("a western made before 1960")], {}, {}))
    props = schema[0]["function"]["parameters"]["properties"]
    assert list(props) == ["to_year"]  # no earliest year was written: the call cannot write one
    assert props["to_year"]["anyOf"][0]["enum"] == [1959, 1960, 1961]


@pytest.mark.parametrize(
    ("text", "decades_alone", "bounded"),
    [
        ("westerns from the sixties", True, ["year_max", "year_min"]),
        ("a movie from the 80s or the nineties", True, ["year_max", "year_min"]),
        ("the 80s or later only", False, ["year_min"]),  # a cue: one side
        ("nineties stuff, or a drama not older than 1990", False, ["year_max", "year_min"]),  # a year besides
        ("romantic comedies between 1985 and 1995", False, ["year_max", "year_min"]),  # a range of years
        ("a western made before 1960", False, ["year_max"]),
        ("Heat (1995) but newer", False, []),  # a title's year bounds nothing
        ("a comedy please", False, []),
    ],
)
def test_a_first_call_bounds_the_years_the_request_bounds_and_both_ends_of_decades(text, decades_alone, bounded):
    # a dev request's "romantic comedies between 1985 and 1995" wrote no years once the call had to write match
    from recagent.agents.call_ids import asks_for_decades
    from recagent.agents.policies.grammar import ground_call_arguments

    assert asks_for_decades(text) is decades_alone
    tool = _year_tool(year_min="earliest release year", year_max="latest release year")
    ids = conversation_call_ids([HumanMessage(text)], {}, {})
    required = ground_call_arguments([tool], ids)[0]["function"]["parameters"].get("required", [])
    assert sorted(required) == bounded


def test_a_number_inside_a_word_is_no_id():
    # the system prompt's "ml-100k" gave every conversation a user 100: the adapters looked user 100 up for requests
    # that named no user
    users = {str(u): u for u in range(1, 944)}
    messages = [SystemMessage("You recommend films from the ml-100k catalog."), HumanMessage("find Amadeus, 2nd try")]
    assert numbers_in("the ml-100k catalog, 2nd try") == []
    assert conversation_call_ids(messages, users, {}).users == ()
    assert conversation_call_ids([HumanMessage("user 100 here")], users, {}).users == ("100",)


def test_a_title_span_keeps_a_mark_after_it_or_drops_the_article_before_it_only_as_the_title_is_written():
    # validation: "Oh, Heavy Metal!" looked up "Heavy Metal!", "Tell me about the birdccage" looked up "birdccage"
    from recagent.agents.call_ids import title_spans

    marked = {"Airplane!"}.__contains__  # the one catalog title here that ends with its mark
    spans = title_spans(["Oh, Heavy Metal! and Airplane!"], names=None, ends_as_written=marked)
    assert "Heavy Metal" in spans and "Heavy Metal!" not in spans
    assert "Airplane!" in spans and "Airplane" in spans
    spans = title_spans(["Tell me about the birdccage and secrets & lies."], ends_as_written=marked)
    assert "the birdccage" in spans and "birdccage" not in spans
    assert "secrets & lies" in spans and "secrets & lies." not in spans
    assert "birdccage" in title_spans(["Tell me about the birdccage"])  # without the catalog, every run


def test_title_spans_are_runs_of_the_users_words_and_titles_tools_returned():
    from recagent.agents.call_ids import title_spans

    spans = set(title_spans(["Oh, Heavy Metal!"], ["items:\n[31] Crimson Tide (1995): Drama, Thriller"]))
    # with and without the sentence's punctuation ("Airplane!" keeps its own), a title with and without its year
    assert {"Heavy Metal", "Heavy Metal!", "Oh, Heavy Metal", "Crimson Tide", "Crimson Tide (1995)"} <= spans
    assert not spans & {"Heavy Meta", "Heavy Metal movies", "Crimson", "Drama"}  # nothing made up, cut, or a genre


@pytest.mark.parametrize(
    ("text", "unseen"),
    [
        ("crime movies from the seventies that I haven't watched", True),
        ("can u suggest eight nineties drama films that i havent sen thx", True),
        ("skkip what ive already watched", True),
        ("Nothing I've listened to already.", True),
        ("good dramas that are new to me", True),
        ("this is 655 again, got any crime films for me that i missed?", True),
        ("anything good i might've missed?", True),
        ("sorry i missed your question, user 5, comedies", False),
        ("i've missed these kinds of films, more westerns please", False),
        ("i have seen star wars, what else?", False),
        ("the best film I've seen", False),
        ("I watched Fargo, more like it", False),
    ],
)
def test_a_request_to_leave_out_what_the_user_has_seen(text, unseen):
    from recagent.agents.call_ids import asks_unseen

    assert asks_unseen(text) is unseen


def test_a_chained_call_reads_the_request_not_the_first_calls_result():
    # validation: after retrieve_for_user saved a shortlist, the chained filter wrote genres Action and years
    # 1995-1996 (from the result) for "I'm in a romance mood"; the gold filter wants Romance and leaves out what
    # the user has seen
    users = {str(u): u for u in range(1, 944)}
    genres = ["Action", "Drama", "Romance", "War"]
    request = HumanMessage("I'm user 155. romance movies for my taste, nothing I've seen")
    first = AIMessage("", tool_calls=[{"name": "retrieve_for_user", "args": {"user_id": "155"}, "id": "c1"}])
    result = ToolMessage("candidate_set: shortlist\nitems:\n[322] Murder at 1600 (1997): Mystery", tool_call_id="c1")
    chained = conversation_call_ids([request, first, result], users, {}, catalog_genres=genres)
    assert chained.fresh_set == "shortlist" and chained.genres_wanted == ("Romance",)
    assert chained.years == () and chained.unseen_by == ("155",)
    # words the turn looked up as a title are no genre: "star wars" names no War
    ask = HumanMessage("more like star wars, from 1989 or earlier")
    lookup = AIMessage("", tool_calls=[{"name": "get_item", "args": {"title": "star wars"}, "id": "c2"}])
    found = ToolMessage("candidate_set: matches\nitems:\n[50] Star Wars (1977): War", tool_call_id="c2")
    assert conversation_call_ids([ask, lookup, found], users, {}, catalog_genres=genres).genres_wanted is None
    assert conversation_call_ids([ask], users, {}, catalog_genres=genres).genres_wanted == ("War",)  # unread yet


@pytest.mark.parametrize(
    ("text", "counts"),
    [
        ("ooh the last one looks good, more like that", []),  # development: became similar_items k=1
        ("which one should i watch first", []),
        ("that one, but older", []),
        ("the fifth one looks great", []),  # synthesized: "the fifth one looks great more like that"
        ("just one please", [1]),  # a count: no user (below)
        ("only the best one", [1]),  # synthesized rankings ask for k=1 so
        ("user one here", [1]),
        ("the one hundred and two", [102]),
        ("the first one hundred", [100]),
    ],
)
def test_one_as_a_pronoun_is_no_count_or_id(text, counts):
    from recagent.tools.schemas import K_DEFAULT, K_MAX, POOL_K

    known = {str(i): i for i in range(1, 200)}
    ids = conversation_call_ids([HumanMessage(text)], known, known)
    assert [c for c in ids.counts if c not in (K_DEFAULT, POOL_K)] == [c for c in counts if c <= K_MAX]
    assert list(ids.items) == [str(c) for c in counts]
    # the count a request asks for, written once, is no user
    assert list(ids.users) == ([] if text == "just one please" else [str(c) for c in counts])


def test_a_number_written_once_as_the_users_is_no_count():
    # validation: after "I'm user 58", similar_items asked for 58 items
    known = {str(i): i for i in range(1, 200)}
    for text, user, counts in (
        ("i'm user 58. more like item 7", "58", {7}),
        ("i'm user 5, give me 5 westerns", "5", {5}),
    ):
        ids = conversation_call_ids([HumanMessage(text)], known, known)
        assert user in ids.users and set(ids.counts) - {10, 20} == counts, text
    # a number opening the message as who writes ("77 here") is the user's: no count, no item; elsewhere it is both
    for text in ("77 here, any comedy i haven't got round to?", "hey, 77 here. anything new?"):
        ids = conversation_call_ids([HumanMessage(text)], known, known)
        assert (ids.users, ids.items, ids.ranking_users, 77 in ids.counts) == (("77",), (), ("77",), False), text
    for text in ("is 77 here?", "item 77 here please", "#77 here looks good"):
        ids = conversation_call_ids([HumanMessage(text)], known, known)
        assert ("77" in ids.items, 77 in ids.counts, ids.ranking_users) == (True, True, ()), text
    # a count given in a short reply to an answer that spoke of the user stays a count
    reply = [
        HumanMessage("westerns for user 42"),
        AIMessage("Here are westerns user 42 may like. More?"),
        HumanMessage("yes, 15 more"),
    ]
    for said in ("yes, 15 more", "15 please", "make it 15"):
        ids = conversation_call_ids([*reply[:2], HumanMessage(said)], known, known)
        assert 15 in ids.counts, said


def test_a_title_is_taken_from_the_last_two_user_messages_and_every_result():
    # every gold title is in the last user message or a result; older messages would only grow the grammar
    messages = [
        HumanMessage("loved Heat"),
        AIMessage("Anything else?"),
        HumanMessage("and Fargo"),
        ToolMessage("items:\n[50] Star Wars (1977): Action", tool_call_id="c1"),
        HumanMessage("what about Vertigo?"),
    ]
    titles = set(conversation_call_ids(messages, {}, {}).titles)
    assert {"Vertigo", "Fargo", "Star Wars", "Star Wars (1977)"} <= titles and "Heat" not in titles


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("two westerns please", 2),  # development: popular_items(genre=Western) listed ten
        ("give me 4 mysteries", 4),
        ("Looking for a high-octane track made in the nineties. Max five. Thx!", 5),  # validation: k left out
        ("Um Im looking for ten mystery tracks Oh and no kids stuff at all", 10),
        ("Just three, the ones that fit me best", 3),
        ("i'm user 303, list 5 films", 5),
        ("what's trending? just give me 7", 7),
        ("user 5 wants 10 comedies", 10),
        # ids, lists, years and pronouns are no count
        ("movies 12, 40 and 7 - which first?", None),
        ("Two things the top fantasy movies and the top action movies", None),
        ("so i need two lists popular romance and popuular comedies", None),
        ("10 years of comedy", None),
        ("the fifth one looks great, more like that", None),
        ("Wihch one fist movies 188, 29, 11, 53 and 17?", None),  # synthesized typos: which first?
        ("family movies I trust you One thing no musicals at all", None),
        ("just one movie please", 1),
        ("More like that. 4 would be enough.", 4),  # the synthesizer's count clauses
        ("rank them for me, I'd like three of them", 3),
        ("five will do", 5),
        # validation: the synthesizer's count clause without its full stop, misspelt, or after "thx"
        ("gve me movies only 1980 or later Five would be eough rank them for me", 5),
        ("Hi What adventure movie should I watch next Thx A dozen would be enough", 12),
        ("some westerns. twenty-one would do", 21),
        ("3 of them were great", None),
        ("pg-13 is fine", None),
        ("movie 12 would be fine", None),
        ("either one will do", None),
        ("I like 2 of these, anything similar?", None),
        ("toy story 2 would be fine", None),
        ("pg 13 would be fine", None),
        ("three or four comedies", None),  # two counts: none is the one
        ("3 or 4 thrillers", None),
        ("2-3 comedies", None),
        ("something funny", None),
        # number words read whole, dozens too
        ("twenty-five comedies", 25),
        ("thirty two westerns", 32),
        ("half a dozen drama tracks", 6),
        ("Anything similar? Only a dozen.", 12),
        ("ten 80s action movies", 10),
        # a number next to what is no list of items: hours, things, a title, children, what the user saw
        ("a comedy, max 2 hours", None),
        ("one more thing: no horror", None),
        ("twelve monkeys style films", None),
        ("toy story 2 style movies", None),
        ("my two children love cartoons", None),
        ("i've seen 4 films by kubrick", None),
        ("what were the last five movies i watched", None),  # a history's count, not a list's
    ],
)
def test_the_one_count_a_request_states(text, count):
    assert stated_count(text) == count


REPLY = (
    "Here you go:\n1. [93] Welcome to the Dollhouse (1995)\n2. [475] Trainspotting (1996)\n3. [25] Birdcage, The (1996)"
)


@pytest.mark.parametrize(
    ("text", "item"),
    [
        ("the third one looks great. more like that?", "25"),  # validation: similar_items wrote item 3 and others
        ("ooh the second one! siimlar onnes?", "475"),
        ("The last one looks great More like that", "25"),
        ("can you find more like number 2? max 4.", "475"),
        ("More like #1?", "93"),
        ("tell me about the 2nd movie", "475"),
        # no place, several, past the list, an id, a history's
        ("more like trainspotting", None),
        ("the first and the second one", None),
        ("the fifth one", None),
        ("user number 2 here, more like those", None),
        ("what is movie #2 about", None),
        ("the last movie i watched was great", None),
        ("the last movie we watched was scary", None),
        ("the second-to-last one", None),
        ("what was the first movie ever made?", None),
        ("the last film by kubrick", None),
        ("the #1 movie of 1995", None),
        ("i didn't like the first one", None),
        ("more like the first one and 50", None),  # an id of its own: not the place's alone
        ("more like movies #2 and #3", None),
        ("i didn't really like the first one", None),
        ("the second one was awful, anything else?", None),
        ("not a fan of the second one", None),
        ("what's the first movie you'd recommend?", None),
    ],
)
def test_a_request_points_at_an_item_of_the_last_answer_by_its_place(text, item):
    assert pointed_item(text, REPLY) == item


def test_places_count_the_lines_of_a_list_and_a_hash_needs_a_numbered_one():
    reply = "Since you liked [50] Star Wars, try:\n1. [93] Welcome to the Dollhouse\n2. [475] Trainspotting"
    assert pointed_item("more like the first one", reply) == "93"
    assert pointed_item("more like #2?", reply) == "475"
    assert pointed_item("more like #2?", "Try [93] Welcome to the Dollhouse or [475] Trainspotting.") is None


def test_the_pointed_item_is_read_from_the_last_answer_for_the_first_call_only():
    known = {str(i): i for i in range(1, 500)}
    ask = HumanMessage("more like the second one, 4 would be enough")
    messages = [HumanMessage("what's popular?"), AIMessage(REPLY), ask]
    ids = conversation_call_ids(messages, known, known)
    assert ids.pointed == "475" and ids.count_stated == 4
    lookup = AIMessage("", tool_calls=[{"name": "get_item", "args": {"item_id": "475"}, "id": "c1"}])
    found = ToolMessage("item: [475] Trainspotting (1996): Drama", tool_call_id="c1")
    assert conversation_call_ids([*messages, lookup, found], known, known).pointed is None
    assert conversation_call_ids([ask], known, known).pointed is None  # no list to point into
    assert conversation_call_ids(messages, known, {"93": 1}).pointed is None  # no catalog item


def test_a_chained_call_reads_the_count_its_request_states():
    # validation: a ranking after a saved retrieval listed 10 where the request asked for 5; all 414 synthesized chained calls
    # that save nothing write the request's one count
    users = {str(u): u for u in range(1, 944)}
    request = HumanMessage("I'm user 155. top 5 romance movies for me")
    first = AIMessage("", tool_calls=[{"name": "retrieve_for_user", "args": {"user_id": "155"}, "id": "c1"}])
    result = ToolMessage("candidate_set: shortlist\nitems:\n[322] Murder at 1600 (1997): Mystery", tool_call_id="c1")
    assert conversation_call_ids([request], users, {}).count_stated == 5
    assert conversation_call_ids([request, first, result], users, {}).count_stated == 5


def test_a_request_that_writes_years_bounds_its_calls_by_them_alone():
    # development: "anything from before 1970 instead?" after a list of 1990s westerns wrote 1989 to 1990
    reply = AIMessage("Here you go: [203] Unforgiven (1992), [97] Dances with Wolves (1990).")
    ids = conversation_call_ids(
        [HumanMessage("some westerns please"), reply, HumanMessage("anything before 1970?")], {}, {}
    )
    assert ids.years_from == () and set(ids.years_to) == {1969, 1970, 1971}
    # a side the request leaves open keeps what the user wrote before
    narrowed = conversation_call_ids(
        [HumanMessage("comedies between 1990 and 1995"), reply, HumanMessage("only the ones after 1993")], {}, {}
    )
    assert set(narrowed.years_from) == {1992, 1993, 1994} and 1995 in narrowed.years_to
    older = conversation_call_ids(
        [HumanMessage("some westerns please"), reply, HumanMessage("anything older?")], {}, {}
    )
    assert 1990 in older.years  # no year written: the list's years stay ("older than those")


def test_a_count_written_once_is_no_user_and_a_users_number_no_item():
    # development: "what's trending? just give me 7" asked user 7's taste; "list the films user 303 has rated"
    # looked item 303 up
    known = {str(i): i for i in range(1, 944)}
    assert conversation_call_ids([HumanMessage("what's trending? just give me 7")], known, known).users == ()
    assert conversation_call_ids([HumanMessage("i'm user 7, just give me 7")], known, known).users == ("7",)
    assert conversation_call_ids([HumanMessage("user 5 wants 10 comedies")], known, known).users == ("5",)
    rated = conversation_call_ids([HumanMessage("list the films user 303 has rated")], known, known)
    assert rated.users == ("303",) and rated.items == ()
    both = conversation_call_ids([HumanMessage("user 303 here, is movie 303 any good?")], known, known)
    assert both.items == ("303",)
    # a short reply gives a user only where the answer before asked about one
    listed = AIMessage("1. [93] Welcome to the Dollhouse (1995)\n2. [50] Star Wars (1977)")
    more = conversation_call_ids([HumanMessage("comedies please"), listed, HumanMessage("5 more please")], known, known)
    assert more.users == () and more.ranking_users == ()
    asked = AIMessage("Sure - what's your user id?")
    reply = conversation_call_ids([HumanMessage("rank 50 and 93 for me"), asked, HumanMessage("#780")], known, known)
    assert reply.ranking_users == ("780",)
    # a count written once in digits and once in words is the user's too; the system prompt's user is one
    assert conversation_call_ids([HumanMessage("I am user 5. give me five")], known, known).users == ("5",)
    prompt = SystemMessage("You are a recommender; the user is user_id 303 of the dataset")
    assert conversation_call_ids([prompt, HumanMessage("what did i rate?")], known, known).items == ()
    shown = ToolMessage("items:\n[303] Fall (1997): Romance", tool_call_id="c1")
    assert "303" in conversation_call_ids([prompt, shown, HumanMessage("more like it")], known, known).items


def test_a_number_the_user_wrote_alone_is_no_title():
    # development: "films similar to 183" looked up the title "183"
    titles = conversation_call_ids([HumanMessage("films similar to 183")], {}, {}).titles
    assert "183" not in titles and "films similar to 183" in titles
    # a title a tool returned stays one ("[330] 187 (1997)")
    result = ToolMessage("items:\n[330] 187 (1997): Drama", tool_call_id="c1")
    assert "187" in conversation_call_ids([HumanMessage("is 187 good?"), result], {}, {}).titles


def test_a_follow_up_that_only_moves_the_years_wants_the_genres_of_the_request_before_it():
    # development: "anything from before 1970 instead?" after "some westerns please" filtered by years alone, and
    # listed six films none of which is a western
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    from recagent.agents.call_ids import conversation_call_ids

    genres = ["Comedy", "Western"]
    before = [HumanMessage("some westerns please"), AIMessage("Here you go: [203] Unforgiven (1992).")]

    def wanted(*messages):
        return conversation_call_ids([*before, *messages], {}, {}, catalog_genres=genres).genres_wanted

    assert wanted(HumanMessage("anything from before 1970 instead?")) == ("Western",)
    assert wanted(HumanMessage("same but 70s")) == ("Western",)
    assert wanted(HumanMessage("only comedies from before 1970 instead")) == ("Comedy",)  # it names its own
    assert wanted(HumanMessage("what was big in 1965?")) is None  # a new request, no reference back
    assert wanted(HumanMessage("forget those. something from 1994 for date night?")) is None  # "those" is too common
    # a follow-up of a follow-up reaches back to the request that named genres; a refusal of its own is kept
    later = [HumanMessage("same but 70s"), AIMessage("Sure: [1] A (1975)."), HumanMessage("same but 80s")]
    assert wanted(*later) == ("Western",)
    ids = conversation_call_ids(
        [*before, HumanMessage("same but 70s, no musicals")], {}, {}, catalog_genres=[*genres, "Musical"]
    )
    assert ids.genres_wanted == ("Western",) and ids.genres_refused == ("Musical",)
    assert wanted(HumanMessage("anything older?")) is None  # no years: nothing to carry the genres with
    # a saved set holds the earlier results: the synthesized follow-up filters it by years alone
    saved = [AIMessage(""), ToolMessage("candidate_set: recs\nitems:\n[203] Unforgiven (1992)", tool_call_id="c1")]
    assert (
        conversation_call_ids(
            [before[0], *saved, before[1], HumanMessage("anything from before 1970 instead?")],
            {},
            {},
            catalog_genres=genres,
        ).genres_wanted
        is None
    )


def test_a_request_that_turns_down_the_films_shown_keeps_the_wish_they_served():
    # simulated users: "None of those is what I have in mind. It should be a children's film." after "an adventure
    # film" filtered children's films alone; then "Something from the 1970s." dropped every genre
    from langchain_core.messages import AIMessage, HumanMessage

    from recagent.agents.call_ids import conversation_call_ids

    genres = ["Adventure", "Children's", "Comedy", "Horror", "Musical", "Sci-Fi", "Western"]
    shown = AIMessage("Try these:\n[151] Willy Wonka and the Chocolate Factory (1971), Adventure\n[8] Babe (1995)")

    def ids(*texts):
        messages = [m for t in texts for m in (HumanMessage(t), shown)][:-1]
        return conversation_call_ids(messages, {}, {}, catalog_genres=genres)

    adventure = "can you recommend an adventure film?"
    kids = ids(adventure, "none of those is what i have in mind. it should be a children's film.")
    assert kids.genres_wanted == ("Adventure", "Children's") and kids.genres_together
    chain = ids(adventure, "not those either, a kids film", "nah, not those. a musical one")
    assert chain.genres_wanted == ("Adventure", "Children's", "Musical") and chain.genres_together
    seventies = ids(adventure, "none of those. it should be a children's film", "different ones pls, from the 1970s")
    assert seventies.genres_wanted == ("Adventure", "Children's") and seventies.genres_together
    decade = (seventies.years_from, seventies.years_to, seventies.years_bounded)
    assert decade == ((1970,), (1979,), ("earliest", "latest"))
    # the years an earlier request asked for are kept by a turn-down that writes none, unless it turns them down
    kept = ids("westerns from the 60s", "seen all of those. funny ones?")
    assert kept.genres_wanted == ("Western", "Comedy") and kept.years_bounded == ("earliest", "latest")
    assert (kept.years_from, kept.years_to) == ((1960,), (1969,))
    too_old = ids("westerns from the 60s", "they're a bit too old, anything newer?")
    assert too_old.genres_wanted == ("Western",) and too_old.years_bounded == ()
    assert 1971 in too_old.years_from  # "newer" than the films shown (Willy Wonka, 1971): their years are writable
    # where neither asked for years, the years of the films turned down are none to write
    funny = ids("sci-fi please", "not those please, a funny one")
    assert funny.genres_wanted == ("Sci-Fi", "Comedy") and (funny.years, funny.years_from, funny.years_to) == (
        (),
        (),
        (),
    )
    assert ids("some comedies", "those are too recent. 70s maybe?").genres_wanted == ("Comedy",)
    # a narrowed request that was a follow-up itself keeps what it kept
    assert ids("westerns", "anything from the 60s instead?", "none of those grab me").genres_wanted == ("Western",)
    again = ids("horror from the 80s", "ok now the same for comedies", "none of those")
    assert again.genres_wanted == ("Comedy",) and (again.years_from, again.years_to) == ((1980,), (1989,))
    # a genre the turn-down refuses is not kept
    assert ids("any horror or sci-fi?", "none of those, and no horror").genres_wanted == ("Sci-Fi",)
    # a new wish keeps nothing ("instead", "forget", "something else entirely", "the same for"); "anything else?" does
    assert ids("sci-fi please", "nope. westerns instead").genres_wanted == ("Western",)
    assert ids("sci-fi please", "none of those, forget it, something else entirely").genres_wanted is None
    assert ids("horror from the 80s", "not those. the same for comedies").genres_wanted == ("Comedy",)
    assert ids("sci-fi please", "none of those, got anything else?").genres_wanted == ("Sci-Fi",)
    assert ids("sci-fi please", "thanks! now a horror film").genres_wanted == ("Horror",)


@pytest.mark.parametrize(
    ("text", "turns_down"),
    [
        ("none of those grab me", True),
        ("already watched every one of those", True),
        ("they’re too old", True),
        ("those are a bit too violent for me", True),
        ("know those three. any others?", True),
        ("not feeling any of these", True),
        ("can you show me different ones?", True),
        # not a turn-down: not seen yet, praise, a question about them
        ("i haven't seen any of those before, which first?", False),
        ("never seen those, tell me about the first one", False),
        ("i've seen none of those", False),
        ("i haven't watched them yet", False),
        ("they were great too, now some dramas", False),
        ("i know those are great, thanks", False),
        ("do you know those actors?", False),
        ("what about the other ones you mentioned earlier?", False),
    ],
)
def test_a_turn_down_is_told_from_a_request_about_the_films_shown(text, turns_down):
    from recagent.agents.call_ids import turns_down_shown

    assert turns_down_shown(["sci-fi please", text]) is turns_down
    assert not turns_down_shown([text])  # nothing was asked for before it


def test_the_items_a_turn_down_turns_down_are_those_answers_cited_since_the_request_it_narrows():
    from langchain_core.messages import AIMessage, HumanMessage

    from recagent.agents.call_ids import turned_down_items
    from recagent.agents.context import FEEDBACK

    liked = [HumanMessage("what's popular?"), AIMessage("Popular: [50] Star Wars (1977)")]
    shown = [HumanMessage("sci-fi please"), AIMessage("Try [151] Willy Wonka (1971)\n[8] Babe (1995)")]
    assert turned_down_items([*liked, *shown, HumanMessage("none of those")]) == ("151", "8")
    more = [HumanMessage("not those either"), AIMessage("Then [9] Dead Man Walking (1995)")]
    assert turned_down_items([*liked, *shown, *more, HumanMessage("different ones?")]) == ("151", "8", "9")
    assert turned_down_items([*shown, HumanMessage("tell me about the first")]) == ()
    # the answer check's message after a rejected answer is no request: the turn-down still holds
    check = HumanMessage("Your answer cited no item.", additional_kwargs={FEEDBACK: True})
    assert turned_down_items([*shown, HumanMessage("none of those"), AIMessage("hm"), check]) == ("151", "8")


def test_a_turn_downs_calls_list_the_items_turned_down_and_as_many_again_as_its_answer_shows():
    # simulated users: "Can you show me different ones?" repeated the call that had found the films just turned down,
    # k 10, and was shown them again
    from langchain_core.messages import AIMessage, HumanMessage

    from recagent.agents.call_ids import conversation_call_ids
    from recagent.tools.result_text import ANSWER_SHOWS
    from recagent.tools.schemas import K_MAX

    shown = [HumanMessage("sci-fi please"), AIMessage("Try [151] Willy Wonka (1971)\n[8] Babe (1995)\n[9] Heat (1995)")]

    def floor(text: str, answers: list = shown) -> int | None:
        return conversation_call_ids([*answers, HumanMessage(text)], {}, {}).count_floor

    assert floor("None of those is what I have in mind. Can you show me different ones?") == 3 + ANSWER_SHOWS
    assert floor("not those, show me 2 others") == 3 + 2  # the count asked for
    assert floor("tell me more about the first one") is None  # no turn-down
    assert floor("none of those", [HumanMessage("sci-fi please"), AIMessage("I found nothing.")]) is None
    many = AIMessage(" ".join(f"[{i}] Film {i} (1995)" for i in range(1, 120)))
    assert floor("different ones?", [HumanMessage("sci-fi please"), many]) == K_MAX


def test_a_turn_down_holds_after_the_answer_check_and_leaves_a_chained_call_its_tools():
    # review: the answer check's message was read as the request, so the retry lost the floor; a chained call ranking
    # the set the first one saved must keep the rankings
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    from recagent.agents.call_ids import conversation_call_ids
    from recagent.agents.context import FEEDBACK

    items = {str(i): i for i in range(1, 200)}
    shown = [HumanMessage("sci-fi please"), AIMessage("Try [151] Willy Wonka (1971)\n[8] Babe (1995)\n[9] Heat (1995)")]
    down = HumanMessage("None of those is what I have in mind. Can you show me different ones?")
    first = conversation_call_ids([*shown, down], {}, items)
    assert first.turns_down and first.count_floor == 8
    check = HumanMessage("Your answer cited [77], which no tool returned.", additional_kwargs={FEEDBACK: True})
    retry = conversation_call_ids([*shown, down, AIMessage("Try [77] Nope (1990)"), check], {}, items)
    assert retry.turns_down and retry.count_floor == 8
    call = AIMessage("", tool_calls=[{"name": "filter_items", "args": {"save_as": "pool"}, "id": "c1"}])
    saved = ToolMessage("candidate_set: pool\nitems:\n[20] Film (1990): Sci-Fi", tool_call_id="c1")
    chained = conversation_call_ids([*shown, down, call, saved], {}, items)
    assert not chained.turns_down and chained.count_floor == 8  # its tools stay offered; it still lists past the floor
    # items of its own in digits switch the look-up and ranking rules off; one it turns down does not
    assert not conversation_call_ids([*shown, HumanMessage("none of those. anything like 042?")], {}, items).turns_down
    assert conversation_call_ids([*shown, HumanMessage("none of those, and not 151 again")], {}, items).turns_down


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("which movies would pop pick for me? and BPR-MF?", True),
        ("use kNN for user 5", True),
        ("SAS-Rec picks please", True),
        ("films similar by plot to 50", True),
        ("movies like The Matrix", False),
        ("give me a short description of each", False),
        ("some pop tracks please", False),
        ("i'm user 5, recommend me something", False),
    ],
)
def test_a_request_names_a_recommender_only_in_its_words_for_one(text, named):
    from langchain_core.messages import HumanMessage

    from recagent.agents.call_ids import conversation_call_ids

    assert conversation_call_ids([HumanMessage(text)], {}, {}).model_named is named


def test_a_second_request_cue_may_be_misspelt_puls():
    from recagent.agents.call_ids import second_request

    text = "Any twisty movies from the 1970s? Puls the top comedy movies from before 1980, please."
    assert second_request(text) == "the top comedy movies from before 1980, please"
    assert second_request("Tom Hanks plus Meg Ryan films") is None


def test_a_follow_up_after_an_answer_from_a_saved_set_refines_that_set_unless_it_turns_it_down():
    # validation: "I want tension... Which ones fit?" after a list saved as "shortlist" filtered the whole catalog;
    # every synthesized follow-up after a saved set filters that set
    users = {str(u): u for u in range(1, 944)}
    items = {str(i): i for i in range(1, 1683)}
    first = [
        SystemMessage("You recommend films."),
        HumanMessage("I'm user 474, what should I watch?"),
        AIMessage(""),
        ToolMessage(
            "items:\n[312] Some Film (1997): Drama\ntotal_matches: 8\ncandidate_set: shortlist", tool_call_id="c1"
        ),
        AIMessage("1. [312] Some Film (1997), Drama"),
    ]
    follow_up = conversation_call_ids([*first, HumanMessage("Which ones are thrillers?")], users, items)
    assert follow_up.shown_set == "shortlist" and follow_up.fresh_set is None
    assert conversation_call_ids(first[:2], users, items).shown_set is None  # a first request refines nothing
    turned_down = [*first, HumanMessage("None of those. Can you show me different ones?")]
    assert conversation_call_ids(turned_down, users, items).shown_set is None  # it wants others, not fewer
    unsaved = [*first[:3], ToolMessage("items:\n[312] Some Film (1997): Drama", tool_call_id="c1"), first[4]]
    assert conversation_call_ids([*unsaved, HumanMessage("Which ones are thrillers?")], users, items).shown_set is None
    chained = [*first, HumanMessage("Which ones are thrillers?"), AIMessage(""), first[3]]
    assert conversation_call_ids(chained, users, items).shown_set is None  # a chained call reads its own fresh set
    for other in ("Forget those. Some westerns from the 1950s instead.", "sort them by year please"):
        assert conversation_call_ids([*first, HumanMessage(other)], users, items).shown_set is None, other
    check = HumanMessage("Your answer cited no item.", additional_kwargs={FEEDBACK: True})
    retry = [*first, HumanMessage("Which ones are thrillers?"), AIMessage("Some."), check]
    assert conversation_call_ids(retry, users, items).shown_set == "shortlist"  # the retry serves the same request
    # the set holds the wish's years: a follow-up that says none bounds none (validation: "I'm more in a funny mood
    # actually." wrote 1995 to 1996, the shown films' years); one that moves them keeps what was written
    assert follow_up.years == follow_up.years_from == follow_up.years_to == ()
    older = conversation_call_ids([*first, HumanMessage("Any older thrillers?")], users, items)
    assert older.shown_set == "shortlist" and 1997 in older.years


def test_a_request_after_a_listing_answer_keeps_no_count_an_earlier_request_stated():
    # validation: "More lke the first one." after "8 war films" asked similar_items for 8; a reply to a question
    # ("what's your user id?" - "529") still serves the request before it, count and all
    users = {str(u): u for u in range(1, 944)}
    items = {str(i): i for i in range(1, 1683)}
    asked = [SystemMessage("You recommend films."), HumanMessage("8 war films please")]
    listed = [*asked, AIMessage(""), ToolMessage("items:\n[50] Star Wars (1977): War", tool_call_id="c1")]
    listed.append(AIMessage("1. [50] Star Wars (1977), War"))
    assert conversation_call_ids(asked, users, items).counts == (8, 10, 20)
    follow_up = conversation_call_ids([*listed, HumanMessage("More like the first one.")], users, items)
    assert 8 not in follow_up.counts
    assert 5 in conversation_call_ids([*listed, HumanMessage("5 more like the first one.")], users, items).counts
    question = [*asked, AIMessage("Happy to. What's your user id?"), HumanMessage("529")]
    assert 8 in conversation_call_ids(question, users, items).counts
    # a follow-up that keeps the wish keeps its count too
    assert 8 in conversation_call_ids([*listed, HumanMessage("ok now the same for comedies")], users, items).counts


def test_a_titles_year_bounds_no_call_where_the_request_writes_years_of_its_own():
    users = {str(u): u for u in range(1, 944)}
    items = {str(i): i for i in range(1, 1683)}

    def ids(text: str):
        return conversation_call_ids([SystemMessage("You recommend films."), HumanMessage(text)], users, items)

    seventies = ids("more movies like Men in Black (1997), made in the 1970s")
    assert seventies.years_from == (1970,) and seventies.years_to == (1979,)  # validation wrote 1996 to 1997
    assert 1998 in ids("anything newer than Heat (1997)?").years_from  # the title's year is the only bound written


@pytest.mark.parametrize(
    ("request_text", "item"),
    [
        ("Star Wars sounds good. Anythnig similar?", "50"),  # validation: similar items of all six films shown
        ("more like the blues brothers please", "186"),  # the catalog's "Blues Brothers, The", article written first
        ("not star wars again, something else", None),
        ("star wars was awful", None),
        ("Star Wars or Return of the Jedi, which is older?", None),  # two named: neither alone
        ("something like Heat", None),  # not among those shown
        ("more like star wars and 172", None),  # an id of its own beside it
        ("something for the kids please", None),  # a one-word title, not capitalised, no likeness asked
        ("more like kids", "411"),
        ("Kids looks fun", "411"),
    ],
)
def test_a_request_that_names_one_title_of_the_answer_points_at_that_item(request_text, item):
    reply = (
        "You could try these movies:\n1. [50] Star Wars (1977), Action\n2. [181] Return of the Jedi (1983), Action\n"
        "3. [186] Blues Brothers, The (1980), Comedy\n4. [411] Kids (1995), Drama"
    )
    assert titled_item(request_text, reply) == item


@pytest.mark.parametrize(
    ("text", "likens"),
    [
        ("movies like Heat", True),
        ("what's similar to fire down bleow?", True),
        ("I loved Ed Wood (1994). What else?", True),
        ("what is Fargo like?", False),
        ("It sounds like fun, when was Heat released?", False),
        ("I don't like horror, what year is Heat from?", False),
        ("I\u2019d like info on Heat", False),
        ("Which movies would I like?", False),
    ],
)
def test_a_wish_likens_itself_to_something_not_a_like_of_any_kind(text, likens):
    assert wish_likens([SystemMessage("You recommend films."), HumanMessage(text)]) is likens
