"""Look-ups a call should not make: title arguments are runs of the user's words that name a catalog title, and a
request that likens its wish to items it names by id wants similar items, not a look-up of them."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage

from recagent.agents.call_ids import conversation_call_ids, title_spans
from recagent.agents.policies.grammar import ground_call_arguments, left_out_for_lookup, left_out_for_turn_down
from recagent.agents.title_match import title_index


@pytest.fixture(scope="module")
def tools(ml100k_env):
    from recagent.tools.recommender_tools import build_registry

    return build_registry(ml100k_env.session()).openai_schemas()


def ids_of(text, env):
    catalog = env.catalog
    users = env.dataset.users.index_of
    return conversation_call_ids(
        [HumanMessage(text)], users, catalog.index_of, catalog_genres=catalog.all_genres, catalog=catalog
    )


@pytest.mark.parametrize(
    ("said", "names"),
    [
        ("the graduate", True),  # "Graduate, The"
        ("Lion King", True),
        ("blade runer", True),  # a close misspelling (fuzzy)
        ("frago", True),  # short misspelt titles the synthesizer writes: "Fargo", "Glory"
        ("glry", True),
        ("Postino, Il (1994)", True),  # an alternative title with its year
        ("popular stuff", False),
        ("popular", False),
        ("7 and 89", False),
        ("movie 300", False),
        ("good", False),
        ("on the edge of", False),
        ("monty python holy grail", True),  # a long title with words left out (a test request's accepted call)
        ("action", False),  # a genre, no misspelt title
        ("in there", False),  # two words near a title ("Being There"): no short misspelling
    ],
)
def test_which_words_name_a_catalog_title(ml100k, said, names):
    assert title_index(ml100k.items).names(said) is names


def test_title_spans_keep_the_runs_that_name_a_title_and_every_title_a_tool_returned(ml100k):
    index = title_index(ml100k.items)
    names = index.names
    said = ["is the lion king in there somewhere?"]
    result = "items:\n[1] Toy Story (1995): Animation"
    spans = title_spans(said, [result], names)
    assert {"the lion king", "lion king", "Toy Story", "Toy Story (1995)"} <= set(spans)
    assert "in there" not in spans and "somewhere?" not in spans
    assert "in there" in title_spans(said, [result])  # without a catalog, any run of the user's words
    # the user's words as they name the title: the article they wrote, a mark only where the title has it
    written = title_spans(["is the lion king in there? oh, Mars Attacks! and Heat!"], (), names, index.ends_as_written)
    assert {"the lion king", "Mars Attacks!", "Heat"} <= set(written)
    assert not {"lion king", "Heat!"} & set(written)


@pytest.mark.parametrize(
    ("text", "left_out"),
    [
        ("popular stuff from the 90s", {"get_item"}),  # looked up the title "popular"
        ("yo whats good", {"get_item"}),
        ("more like 22 and 96", {"get_item"}),  # likens its wish to items 22 and 96: similar items
        ("item 12 was great. what's comparable?", {"get_item"}),
        ("i liked 7 and 89, find me more like those", {"get_item"}),
        ("info on movie 300", set()),  # an id to look up
        ("stuff similar to groundhog day", set()),  # a title to look up
        ("is the lion king in there somewhere?", set()),
        ("films like 50 and 172", {"get_item"}),
        ("show me more like 22 and 96", {"get_item"}),  # "Show" is a title; the ids still follow the cue
        ("similar to 12 angry men", set()),  # a title with a number, no id
        ("i'd like 5 comedies", set()),  # a count, no likened id (5 stays an id a look-up could take)
        ("tell me about item 64", set()),
    ],
)
def test_a_lookup_is_left_out_with_nothing_to_look_up_or_where_the_request_likens_named_items(
    ml100k_env, tools, text, left_out
):
    assert left_out_for_lookup(tools, ids_of(text, ml100k_env)) == left_out


def _after_a_list(env, reply: str, with_result: bool):
    """The call ids after "Can you recommend a drama film?", a list of Fargo and The Godfather (the tool's result in
    the conversation or not), and ``reply``."""
    from langchain_core.messages import AIMessage, ToolMessage

    found = "items:\n[100] Fargo (1996): Crime, Drama, Thriller\n[127] Godfather, The (1972): Action, Crime"
    shown = "Here they come:\n[100] Fargo (1996), Crime, Drama, Thriller\n[127] Godfather, The (1972), Action, Crime"
    call = AIMessage("", tool_calls=[{"name": "filter_items", "args": {}, "id": "c1"}])
    asked = [
        HumanMessage("Can you recommend a drama film?"),
        *([call, ToolMessage(found, tool_call_id="c1")] * with_result),
    ]
    catalog = env.catalog
    return conversation_call_ids(
        [*asked, AIMessage(shown), HumanMessage(reply)],
        env.dataset.users.index_of,
        catalog.index_of,
        catalog_genres=catalog.all_genres,
        catalog=catalog,
    )


@pytest.mark.parametrize(
    ("reply", "left_out"),
    [
        ("None of those is what I have in mind. A well-known one.", {"get_item"}),  # simulated users: looked up Fargo
        ("not those, something older", {"get_item"}),
        ("none of those. is the godfather on here?", set()),  # a title to look up
        ("tell me more about fargo", set()),  # no turn-down
        ("what year is the first one from?", set()),
        # "Show, The" is a catalog title, but the request asks for none
        ("None of those is what I have in mind. Can you show me different ones?", {"get_item"}),
        ("none of those. what about 50?", set()),  # an item to look up
        ("none of those, and not 100 again", {"get_item"}),  # the item it names is one it turns down
    ],
)
@pytest.mark.parametrize("with_result", [False, True])  # the tool's result names titles of its own
def test_a_request_that_turns_the_films_shown_down_looks_nothing_up_unless_it_asks_for_a_title(
    ml100k_env, tools, reply, left_out, with_result
):
    assert left_out_for_lookup(tools, _after_a_list(ml100k_env, reply, with_result)) == left_out


@pytest.mark.parametrize(
    ("reply", "left_out"),
    [
        # simulated users: "A well-known one." ranked Fargo alone ("one" names no item 1)
        (
            "None of those is what I have in mind. A well-known one.",
            {"rank_items", "rank_by_preference", "similar_items"},
        ),
        ("different ones please", {"rank_items", "rank_by_preference", "similar_items"}),
        ("not those. more like the second one", set()),  # an item of its own, by its place
        ("none of those. anything like 50?", set()),  # by its id
        ("none of those, and not 100 again", {"rank_items", "rank_by_preference", "similar_items"}),  # turned down
        ("none of those. is the godfather on here?", set()),  # a title to look up
        ("tell me more about fargo", set()),  # no turn-down
    ],
)
def test_a_request_that_turns_the_films_shown_down_ranks_no_given_items_unless_it_names_its_own(
    ml100k_env, tools, reply, left_out
):
    assert left_out_for_turn_down(tools, _after_a_list(ml100k_env, reply, True)) == left_out


@pytest.mark.parametrize(
    ("text", "users"),
    [
        ("item 12 was great. what's comparable?", ()),  # dev: retrieved for user 12 once the look-up was out
        ("more like 22 and 96", ()),
        ("user 12 here. more like 22 and 96", ("12",)),  # given as the user's
        ("88 is my user number, more like what i liked", ("88",)),  # no id follows the cue
        ("12 here, anything similar to my favourites?", ("12",)),
        ("i'm 42 and i like it scary", ("42",)),
        ("I'm #500, what would I like that came out in 1997?", ("500",)),
    ],
)
def test_the_ids_a_request_likens_its_wish_to_are_no_users_unless_given_as_one(ml100k_env, text, users):
    assert ids_of(text, ml100k_env).users == users


def test_a_title_that_names_nothing_cannot_be_written_so_an_id_is_looked_up(ml100k_env, tools):
    # dev: "info on movie 300" looked up the title "movie 300"
    ids = ids_of("info on movie 300", ml100k_env)
    assert ids.titles_known and ids.titles == () and ids.items == ("300",)
    get_item = next(t for t in ground_call_arguments(tools, ids) if t["function"]["name"] == "get_item")
    assert set(get_item["function"]["parameters"]["properties"]) == {"item_id"}
    named = ids_of("who's in the graduate?", ml100k_env)
    get_item = next(t for t in ground_call_arguments(tools, named) if t["function"]["name"] == "get_item")
    assert "the graduate" in str(get_item["function"]["parameters"]["properties"]["title"])
    # without a catalog nothing is known about titles: no look-up is left out
    plain = conversation_call_ids([HumanMessage("popular stuff from the 90s")], {}, {})
    assert not plain.titles_known and left_out_for_lookup(tools, plain) == set()


@pytest.mark.parametrize(
    ("text", "asks"),
    [
        ("is the godfather on here?", True),  # dev: answered without a look-up
        ("do you have Trainspotting?", True),
        ("is glory in your catalog", True),  # as the synthesizer writes it: every such question is looked up
        ("is the lion king in there somewhere?", True),
        ("is star wars on netflix?", False),  # the synthesizer answers these without a tool
        ("is heat any good?", False),
        ("do you have any comedies", False),  # no title
        ("do you have a name or are you just 'bot'?", False),
        ("my favourite is Heat. I have watched it twice", False),  # no question of the catalog
        ("is titanic in your opinion overrated?", False),
        ("Hello find Absolute Power for me Thank you", True),  # validation: answered as out of scope
        ("Hey, find Amaeus for me.", True),  # misspelt
        ("find me a good comedy please", False),  # no title
        ("can you find something like heat for me", False),
        ("where can i find fargo", False),  # where to watch it: out of scope
    ],
)
def test_a_question_whether_the_catalog_holds_a_title_it_names(ml100k_env, text, asks):
    assert ids_of(text, ml100k_env).asks_for_title is asks


def test_a_year_of_its_own_bounds_both_sides_to_itself(ml100k_env):
    from recagent.agents.call_ids import year_bounds_in

    # dev: "a crime film from 1994" wrote year_min 1994 alone
    for text in ("a crime film from 1994", "anything made in 1975?", "a 1994 movie please"):
        year = int(next(w for w in text.replace("?", "").split() if w.isdigit()))
        assert year_bounds_in(text) == ([year], [year]), text
        assert ids_of(text, ml100k_env).years_bounded == ("earliest", "latest"), text
    # a side its words give stays that side's, with the years either side of it
    assert year_bounds_in("films from 1994 onwards") == ([1993, 1994, 1995], [])
    assert ids_of("films from 1994 onwards", ml100k_env).years_bounded == ("earliest",)
    assert ids_of("released afer 1959", ml100k_env).years_bounded == ()  # a misspelt cue: no side
    for later in ("comedies from 1994 till now", "anything from 1994 upward", "dramas from 1990 onwads"):
        assert ids_of(later, ml100k_env).years_bounded in ((), ("earliest",)), later  # no year of its own
    assert ids_of("i was born in 1994, pick something", ml100k_env).years_bounded == ()


def test_a_follow_up_asking_again_for_other_genres_keeps_the_years_asked_before(ml100k_env):
    from langchain_core.messages import AIMessage

    catalog = ml100k_env.catalog

    def ids(*said):
        return conversation_call_ids(
            list(said), {}, catalog.index_of, catalog_genres=catalog.all_genres, catalog=catalog
        )

    answer = AIMessage("Some 80s horror: [200] Shining, The (1980), [201] Evil Dead II (1987).")
    # dev: "ok now the same for comedies" wrote 1980 to 1987, the last year of the answer's films
    again = ids(HumanMessage("horror from the 80s"), answer, HumanMessage("ok now the same for comedies"))
    assert (again.years_from, again.years_to, again.years_bounded) == ((1980,), (1989,), ("earliest", "latest"))
    assert again.genres_wanted == ("Comedy",)
    before = ids(HumanMessage("westerns before 1970"), answer, HumanMessage("dramas too"))
    # only the request just before it: after "comedies from the 90s", "what about a drama", "westerns instead" wants
    # no 90s
    three = [HumanMessage("comedies from the 90s"), answer, HumanMessage("what about a drama"), answer]
    assert ids(*three, HumanMessage("westerns instead")).years_bounded == ()
    assert before.years_bounded == ("latest",) and 1970 in before.years_to and 1987 not in before.years
    # no years asked before, a request that does not refer back or asks for other years: the conversation's years,
    # unbounded
    assert ids(HumanMessage("some westerns"), answer, HumanMessage("the same for comedies")).years_bounded == ()
    for other in ("now show me some recent comedies", "comedies too, any decade is fine", "I also like comedies"):
        assert ids(HumanMessage("horror from the 80s"), answer, HumanMessage(other)).years_bounded == (), other
    fresh = ids(HumanMessage("horror from the 80s"), answer, HumanMessage("comedies please"))
    assert fresh.years_bounded == () and 1987 in fresh.years
