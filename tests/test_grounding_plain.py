"""Titles named in plain text are checked like citations (issue 18): real ML-100K titles, scripted answers.

Each case is an answer a scripted policy could write and the ids its tools returned. The rule for which
plain-text spans count is in ``agents/title_match.py``'s docstring.
"""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage

from recagent.agents.grounding import ground_answer
from recagent.agents.title_match import find_mentions

BLADE_RUNNER, TERMINATOR, USUAL_SUSPECTS, STAR_WARS, TOY_STORY = "89", "195", "12", "50", "1"
HEAT, FARGO, RANSOM, KIDS, SPEED, FRESH = "273", "100", "742", "772", "568", "1169"
RETURNED = {TOY_STORY, STAR_WARS}  # what the tools returned in these conversations


@pytest.fixture(scope="module")
def catalog(ml100k):
    items = ml100k.items
    # the ids below are ML-100K's; check them so a changed dataset fails here, not obscurely below
    assert items.display(items.index_of[BLADE_RUNNER]) == "Blade Runner (1982)"
    assert items.display(items.index_of[TERMINATOR]) == "Terminator, The (1984)"
    assert items.display(items.index_of[HEAT]) == "Heat (1995)"
    return items


@pytest.mark.parametrize(
    ("answer", "unsupported", "unknown"),
    [
        ("1. Blade Runner 2. The Terminator", [BLADE_RUNNER, TERMINATOR], []),
        (
            "1. Blade Runner 2. The Terminator 3. Galaxy Quest Returns 4. The Matrix Reloaded",
            [BLADE_RUNNER, TERMINATOR],
            ["Galaxy Quest Returns", "The Matrix Reloaded"],
        ),
        ("Blade Runner, 1982", [BLADE_RUNNER], []),
        ("Blade Runner (1982 film)", [BLADE_RUNNER], []),
    ],
)
def test_the_issue_answers_are_caught(catalog, answer, unsupported, unknown):
    g = ground_answer(answer, catalog, RETURNED)
    assert (g.unsupported, g.unknown, g.ok) == (unsupported, unknown, False)


@pytest.mark.parametrize(
    "answer",
    [
        "1. Blade Runner 2. The Terminator",
        "Blade Runner, 1982",
        "Blade Runner (1982 film)",
        "I recommend Blade Runner and The Terminator.",
        'You might enjoy *Blade Runner* or "The Terminator".',
    ],
)
def test_the_same_titles_pass_once_a_tool_returned_them(catalog, answer):
    g = ground_answer(answer, catalog, RETURNED | {BLADE_RUNNER, TERMINATOR})
    assert g.ok and set(g.supported) <= {BLADE_RUNNER, TERMINATOR} and g.supported


@pytest.mark.parametrize("written", ["The Terminator", "Terminator", "Terminator, The", "the Terminator"])
def test_articles_in_front_behind_or_left_out_name_the_same_item(catalog, written):
    assert ground_answer(f"1. {written}", catalog, {TERMINATOR}).supported == [TERMINATOR]
    assert ground_answer(f"I recommend {written}.", catalog, set()).unsupported == [TERMINATOR]


def test_the_year_when_given_picks_the_item_and_a_wrong_year_is_unknown(catalog):
    # ML-100K has two "Sabrina": 274 (1995) and 486 (1954)
    assert ground_answer("1. Sabrina, 1954", catalog, {"274", "486"}).supported == ["486"]
    assert ground_answer("1. Sabrina (1995 film)", catalog, {"274", "486"}).supported == ["274"]
    assert ground_answer("1. Sabrina", catalog, {"486"}).supported == ["486"]  # no year: the returned one
    g = ground_answer("Blade Runner, 1983", catalog, {BLADE_RUNNER})
    assert g.unknown == ["Blade Runner (1983)"] and not g.supported


def test_near_misses_match_fuzzily_but_sequels_do_not(catalog):
    assert ground_answer("1. Blade Runer", catalog, {BLADE_RUNNER}).supported == [BLADE_RUNNER]
    assert ground_answer("I recommend The Usual Suspect", catalog, {USUAL_SUSPECTS}).supported == [USUAL_SUSPECTS]
    assert ground_answer("1. Terminator 3", catalog, {TERMINATOR}).unknown == ["Terminator 3"]


def test_supported_plain_titles_pass_in_every_form(catalog):
    seen = {BLADE_RUNNER, TERMINATOR, STAR_WARS, HEAT}
    for answer in (
        "Here are some picks:\n1. Blade Runner\n2. The Terminator\n3. Star Wars",
        "- **Blade Runner** - a moody sci-fi classic\n- Heat",
        "I'd recommend Blade Runner, The Terminator and Heat. I hope you enjoy them!",
        "Since you liked Star Wars, try Blade Runner.",
        "Blade Runner, 1982\nThe Terminator - 1984",
    ):
        g = ground_answer(answer, catalog, seen)
        assert g.ok and g.supported, (answer, g)


@pytest.mark.parametrize(
    "answer",
    [
        "Here are some picks for you",
        "I hope you enjoy them!",
        "Happy to help. What's your user id?",
        "Sure! Do you prefer Action or Comedy?",
        "I found these in the Sci-Fi and Thriller genres:",
        "Good Morning! How can I help you today?",
        "Tom Hanks and Meg Ryan star in several romantic comedies.",
        "I can:\n- Show Your History\n- Search the catalog\n3. Something Else",
    ],
)
def test_prose_without_titles_is_not_flagged(catalog, answer):
    assert ground_answer(answer, catalog, set()).ok


@pytest.mark.parametrize(
    "sentence",
    [
        "Heat is rising, so a light comedy may suit you.",
        "It was fun. Kids love it.",
        "Fargo is a long drive from here.",
        "Ransom notes are a classic thriller device.",
        "Speed matters less than mood.",
        "1. Fresh picks for you\n2. Speed things up",
        "Consider a comedy. Trust me, it is Fresh.",
        "I think Ransom and Fargo are fine.",
        "I'd suggest Friday night for a long film.",
    ],
)
def test_short_common_word_titles_do_not_alarm_in_ordinary_sentences(catalog, sentence):
    # tools returned items (so lists count as item lists), none of these
    g = ground_answer(sentence, catalog, RETURNED)
    assert g.ok and not g.supported, (sentence, g)


def test_short_titles_count_where_a_title_is_expected(catalog):
    # a list entry of its own, a quote, a written year or a recommendation lead-in
    g = ground_answer('1. Heat\n2. Fargo - snowy noir\nTry "Ransom", or Kids, 1995.', catalog, set())
    assert g.unsupported == [HEAT, FARGO, RANSOM, KIDS]


def test_genre_lists_and_headings_are_not_titles(catalog):
    # "War, The (1994)" is an ML-100K title, and "Drama" a genre
    for answer in ("1. Platoon, Drama, War", "Top Rated Comedies:\n1. Drama\n2. Comedy", "Mystery:\n- Comedy"):
        g = ground_answer(answer, catalog, RETURNED)
        assert g.unknown == [] and "1311" not in g.unsupported, (answer, g)


def test_a_menu_is_an_item_list_only_when_the_answer_is_about_items(catalog):
    menu = "1. Show Your History\n2. Something Else"
    assert ground_answer(menu, catalog, set()).ok  # no tool results, no film words: a menu
    assert ground_answer("Here are some movies:\n" + menu, catalog, set()).unknown == [
        "Show Your History",
        "Something Else",
    ]
    assert not ground_answer(menu, catalog, RETURNED).ok  # answered after tools returned items: an item list


def test_titles_next_to_a_citation_are_the_citations_own(catalog):
    g = ground_answer("1. [50] Star Wars\n2. [1] Toy Story (1995), Animation, Children's", catalog, RETURNED)
    assert g.ok and g.supported == [STAR_WARS, TOY_STORY]
    g = ground_answer("I recommend [50] Star Wars and Blade Runner.", catalog, RETURNED)
    assert g.unsupported == [BLADE_RUNNER]


def test_titles_with_their_own_punctuation_are_read_whole(catalog):
    answer = "I recommend Pink Floyd - The Wall, Mars Attacks! and Mr. Holland's Opus."
    assert ground_answer(answer, catalog, {"214", "235", "15"}).ok
    assert [m.label for m in find_mentions(answer, catalog)] == [
        "Pink Floyd - The Wall",
        "Mars Attacks",
        "Mr. Holland's Opus",
    ]


def test_a_plain_title_answer_goes_back_to_the_policy_with_its_ids(synthetic_env, tmp_path):
    from recagent.agents import Agent, AgentConfig
    from recagent.agents.policies.scripted import ScriptedPolicy, call, tool_calls
    from recagent.tools.env import ToolEnvConfig

    catalog = synthetic_env.catalog

    def plain_unreturned(messages):
        returned = {it["item_id"] for m in messages if m.type == "tool" for it in m.artifact["items"]}
        other = next(i for i in catalog.ids if i not in returned)
        plain_unreturned.other = other
        return AIMessage(f"Here are some picks:\n1. {catalog.titles[catalog.index_of[other]]}")

    def cite_returned(messages):
        items = next(m for m in messages if m.type == "tool").artifact["items"][:2]
        return AIMessage("\n".join(f"{n}. {it['title']}" for n, it in enumerate(items, 1)))

    policy = ScriptedPolicy(script=[tool_calls(call("popular_items", {"k": 3})), plain_unreturned, cite_returned])
    agent = Agent.from_config(
        AgentConfig(tools=ToolEnvConfig(dataset="synthetic")),
        policy=policy,
        env=synthetic_env,
        db_path=tmp_path / "sessions.sqlite",
    )
    r = agent.chat("something popular", session="s")
    rejected = [s for s in r.trace if s.kind == "rejected_answer"]
    assert len(rejected) == 1 and rejected[0].result_item_ids == [plain_unreturned.other]
    feedback = policy.calls[2][-1]
    assert feedback.type == "human" and plain_unreturned.other in feedback.content
    assert r.trace[-1].kind == "answer" and len(r.recommended) == 2  # the plain titles of the fixed answer count
