"""The ids a call may name: numbers of the conversation, as digits or words, that are users or items."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from recagent.agents.call_ids import conversation_call_ids, number_words, numbers_in


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
