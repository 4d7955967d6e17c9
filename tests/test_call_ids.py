"""The ids a call may name: numbers of the conversation, as digits or words, that are users or items."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from recagent.agents.call_ids import conversation_call_ids, number_words, numbers_in, years_in


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
    assert numbers_in("User 88, #500 and 007: two hundred and thirty four, 1990s, 88") == [
        "88",
        "500",
        "7",
        "1990",
        "234",
    ]


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
    # 6 and 12 are the request's, 5 the system text's, 10 and 20 the tools' default and pool size; 40 and 30 are
    # counts of results, not of the request
    assert ids.counts == (5, 6, 10, 12, 20)
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
        admitted = set(years_in(" ".join([t.text for t in request.context] + [request.text])))
        for accepted in request.accepted_first_calls:
            for name in ("year_min", "year_max"):
                if accepted.args.get(name) is not None:
                    assert accepted.args[name] in admitted, (request.id, name, accepted.args[name])
                    checked += 1
    assert checked > 50, "the hand-written requests accept calls with years"
