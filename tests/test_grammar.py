"""The reply grammar of the local policy, checked string by string with SmolLM2's tokenizer (no model runs)."""

from __future__ import annotations

import json

import pytest

from recagent.agents.grounding import citation
from recagent.agents.policies.grammar import (
    AnswerRule,
    CitableItem,
    GrammarCache,
    answer_filter,
    cited_items,
    filter_cut,
)
from recagent.agents.prompt_format import render_tool_call

ITEMS = (
    CitableItem("50", "Star Wars (1977)"),
    CitableItem("181", "Return of the Jedi (1983)"),
    CitableItem("5", "Copycat (1995)"),
)
TOOL = {
    "type": "function",
    "function": {
        "name": "popular_items",
        "description": "Most popular items.",
        "parameters": {
            "type": "object",
            "properties": {"k": {"type": "integer", "minimum": 1, "maximum": 100}},
            "additionalProperties": False,
        },
    },
}


@pytest.fixture(scope="module")
def grammars(smollm2_tokenizer) -> GrammarCache:
    return GrammarCache(smollm2_tokenizer, len(smollm2_tokenizer))


@pytest.fixture(scope="module")
def accepts(grammars, smollm2_tokenizer):
    """accepts(rule, text, tools=(), choice="none"): ``text`` then the end of the reply is a whole reply."""
    import xgrammar as xgr

    def check(rule: AnswerRule | None, text: str, tools=(), choice="none") -> bool:
        matcher = xgr.GrammarMatcher(grammars.get(list(tools), choice, False, rule))
        return matcher.accept_string(text) and matcher.accept_token(smollm2_tokenizer.eos_token_id)

    return check


def test_a_citation_can_only_name_a_citable_item_with_its_own_title(accepts):
    rule = AnswerRule(ITEMS)
    assert accepts(rule, f"Try {citation('50', 'Star Wars (1977)')} and {ITEMS[1].citation()}.")
    assert accepts(rule, "1. [5] Copycat (1995), a thriller")
    assert not accepts(rule, "Try [51] Foo (1999).")  # an id no tool returned
    assert not accepts(rule, "Try [50] Blade Runner (1982).")  # a citable id with another title
    assert not accepts(rule, "Try [50]")  # a citation cut short
    assert accepts(rule, "Hello! What are you in the mood for?")  # free text stays free
    assert not accepts(rule, "Try Blade Runner (1982).")  # a titled year outside a citation


def test_a_citation_with_genres_runs_on_to_the_items_own_genres(accepts):
    rule = AnswerRule((CitableItem("50", "Star Wars (1977)", ("Action", "Adventure", "Romance", "Sci-Fi", "War")),))
    assert accepts(rule, "Here they are:\n[50] Star Wars (1977), Action, Adventure, Romance")  # the first three
    assert accepts(rule, "Try [50] Star Wars (1977), Action, Adventure, Romance. It is a classic.")
    assert not accepts(rule, "Try [50] Star Wars (1977), Comedy")  # a genre the item does not have
    assert not accepts(rule, "Try [50] Star Wars (1977).")  # the genres are part of the citation
    assert not accepts(rule, "Try [50] Star Wars (1977), Action")  # cut short


def test_without_citable_items_no_citation_can_be_opened(accepts):
    assert not accepts(AnswerRule(()), "Try [1] Toy Story (1995).")
    assert accepts(AnswerRule(()), "I need to look that up first.")
    assert accepts(None, "Try [1] Toy Story (1995).")  # no rule: unconstrained text


def test_an_answer_after_a_tools_items_cites_at_least_one_of_them_anywhere(accepts):
    rule = AnswerRule(ITEMS, cite_required=True)
    assert accepts(rule, "Here they are:\n[50] Star Wars (1977)\n[5] Copycat (1995)")
    assert accepts(rule, "[181] Return of the Jedi (1983) is a good one.")
    assert not accepts(rule, "Here they are:")  # nothing recommended
    assert not accepts(rule, "Here they are:\n[7] Seven (1995)")  # a citation of an item no tool returned
    assert not accepts(rule, "Here [Insert a title] they are: [50] Star Wars (1977)")  # "[" opens a citation
    assert not accepts(rule, "Here they are:\n<toolcall>")  # tag look-alikes stay out either way
    # calls written as text under invented tags, as the shipped policy wrote them to simulated users
    assert not accepts(rule, 'Here:\n< tool_call>{"name": "get_item", "arguments": {}}</tool_call>\n[5] Copycat (1995)')
    assert not accepts(rule, 'Here:\n<training_call>{"name": "get_item"}\n[5] Copycat (1995)')
    assert not accepts(rule, 'Here:\n< tool_Call>{"name\': "get_item"}\n[5] Copycat (1995)')
    assert not accepts(rule, "Here: {'name': 'get_item'}\n[5] Copycat (1995)")
    assert accepts(rule, render_tool_call("popular_items", {"k": 5}), tools=[TOOL], choice="auto")  # or call again


def test_an_answer_may_have_to_cite_several_items_in_its_first_section(accepts):
    rule = AnswerRule(ITEMS, cite_required=2)
    assert accepts(rule, "Here they are:\n1. [50] Star Wars (1977)\n2. [5] Copycat (1995)\nEnjoy!")
    assert accepts(rule, "Here they are:\n[50] Star Wars (1977)\n[181] Return of the Jedi (1983)\n[5] Copycat (1995)")
    assert not accepts(rule, "Here they are:\n[50] Star Wars (1977)")  # one of two
    assert not accepts(rule, "Here they are:\n[50] Star Wars (1977)\n\nAlso:\n[5] Copycat (1995)")  # two sections


def test_listwise_answers_are_lists_of_exactly_k_allowed_ids(accepts):
    rule = AnswerRule(ITEMS, listwise_k=2)
    assert accepts(rule, "[50, 181]") and accepts(rule, "[5, 50]")
    assert not accepts(rule, "[5]")  # fewer than k
    assert not accepts(rule, "[50, 181, 5]")  # more than k
    assert not accepts(rule, "[7, 50]")  # not allowed
    assert not accepts(rule, "Here: [50, 5]")
    assert accepts(AnswerRule(ITEMS, listwise_k=10), "[5, 181, 50]")  # k beyond the citable items: all of them


def test_the_listwise_filter_keeps_the_ids_in_the_order_of_the_citable_items():
    # ITEMS are 50, 181, 5 in that order; 500 comes last
    in_order = answer_filter(AnswerRule((*ITEMS, CitableItem("500", "Fargo (1996)")), listwise_k=3))
    assert all(in_order(t) for t in ["", "[", "[5", "[50", "[50,", "[50, ", "[50, 5", "[50, 181, 500]", "[50, 5, 500]"])
    assert in_order("[181, 5")  # "5" after "181", and "500" can still follow
    assert not in_order("[50, 50,") and not in_order("[50, 50]")  # twice
    assert not in_order("[181, 50")  # 50 is listed ahead of 181
    assert not in_order("[5, 181")  # 5 is listed after 181 (and only 500 is left after 5: no room for three)
    assert not in_order("[50, 500,")  # 500 is the last: no third id can follow it
    assert not in_order("[500")  # nor can a list of three open with it
    assert not in_order("[50, 181, 7")  # an id no tool returned
    assert not in_order("[50, 181, 500, 5")  # a fourth id of three
    assert in_order('<tool_call>{"name"')  # a call is the grammar's business
    assert answer_filter(AnswerRule(())) is None and answer_filter(None) is None  # nothing citable: nothing to check


def test_a_whole_citation_ends_its_line_or_goes_on_with_a_colon_as_in_every_synthesized_answer():
    star_wars = CitableItem("50", "Star Wars (1977)", ("Action", "Adventure", "Romance", "Sci-Fi", "War"))
    liar = CitableItem("294", "Liar Liar (1997)", ("Comedy",))
    lines_end = answer_filter(AnswerRule((star_wars, liar, *ITEMS)))
    cite = "Here they are:\n[294] Liar Liar (1997), Comedy"
    assert lines_end(cite) and lines_end(cite + "\n") and lines_end(cite + "\n[50] Star Wars (1977), Action")
    assert lines_end("[5] Copycat (1995): a thriller from 1995.")  # a look-up's answer
    assert not lines_end(cite + ", Animated")  # measured: genres of its own, on to the token budget
    assert not lines_end(cite + ",") and not lines_end(cite + " and more")
    assert not lines_end("[50] Star Wars (1977), Action, Adventure, Romance, Sci-Fi")  # the citation shows three
    assert lines_end("[50] Star Wars (1977), Action, Adv")  # a citation being written is the grammar's business
    assert lines_end('<tool_call>{"name": "get_item", "arguments": {"title": "[5] Copycat (1995), x"}}')
    # an item cited with genres by one tool and without by another: the shorter citation may go on
    both = answer_filter(AnswerRule((star_wars, CitableItem("50", "Star Wars (1977)"))))
    assert both("[50] Star Wars (1977), Action, Adventure, Romance")
    assert not both("[50] Star Wars (1977), Action, Adventure, Romance, Sci-Fi")


def test_an_answer_cites_an_item_once_per_section_and_never_runs_on():
    # measured on the development requests: a look-up's citation repeated to the token budget, "Drama: Drama: ..."
    # after a citation, a list's fifth line citing its third item (no synthesized answer does any of these)
    heat = CitableItem("273", "Heat (1995)", ("Action", "Crime", "Thriller"))
    kids = CitableItem("772", "Kids (1995)", ("Drama",))
    once = answer_filter(AnswerRule((heat, kids)))
    lines = "Here:\n1. [273] Heat (1995), Action, Crime, Thriller\n2. [772] Kids (1995), Drama\n3. "
    assert once(lines) and not once(lines + "[")  # every item cited: no citation can open
    assert once(lines[:-3] + "\n\nAlso popular:\n- [273] Heat")  # a new section (a grouped answer) may cite it again
    only_heat = "Here:\n1. [273] Heat (1995), Action, Crime, Thriller\n2. ["
    assert once(only_heat) and once(only_heat + "7") and not once(only_heat + "2")  # "[2" can only become Heat
    assert not answer_filter(AnswerRule((heat,)))("[273] Heat (1995), Action, Crime, Thriller: [")
    run_on = answer_filter(AnswerRule((kids,)))
    assert run_on("[772] Kids (1995), Drama: Drama: Drama") and not run_on("[772] Kids (1995), Drama: Drama: Drama:")
    assert run_on("[772] Kids (1995), Drama: a drama from 1995... with 73 interactions.")  # "..." is no run-on
    # a title may repeat itself or hold a "[", and a token may end inside a character: none of that stops a citation
    tora = CitableItem("1204", "Tora! Tora! Tora! (1970)", ("War",))
    rec = CitableItem("9", "[REC] (2007)", ("Horror",))
    titles = answer_filter(AnswerRule((tora, rec, CitableItem("1633", "Á köldum klaka (1994)"))))
    assert titles("[1204] Tora! Tora! Tora!") and titles("[9] [") and titles("[1633] \ufffd")
    both = "[1204] Tora! Tora! Tora! (1970), War\n[9] [REC] (2007), Horror"
    assert titles(both) and titles(both + "\n[1633]") and not titles(both + "\n[1204]")


def test_filter_cut_finds_where_a_written_answer_breaks_the_filter_citing_the_items_it_cites():
    # the check benchmarks/answer_filter_fit.py runs over every synthesized answer, on a catalog of three items
    class Catalog:
        index_of = {"273": 0, "772": 1, "5": 2}
        genres = [("Action", "Crime"), ("Drama",), ("Thriller",)]

        def display(self, row):
            return ["Heat (1995)", "Kids (1995)", "Copycat (1995)"][row]

    written = "Try:\n1. [273] Heat (1995), Action, Crime\n2. [999] Unknown\n3. [772] Kids (1995), Drama"
    items = cited_items(written, Catalog())
    assert [(i.item_id, i.display, i.genres) for i in items] == [
        ("273", "Heat (1995)", ("Action", "Crime")),
        ("772", "Kids (1995)", ("Drama",)),
    ]
    answer = written.replace("[999] Unknown", "and then")  # "[999]" is no citation the grammar would open
    assert filter_cut(answer, items) is None
    twice = answer + "\n4. [273] Heat (1995)"
    assert filter_cut(twice, items) == twice.rindex("[273]") + 1  # both items cited: no citation can open
    assert filter_cut("no citation at all", items) is None
    assert filter_cut("[273] Heat (1995), Action, Crime: a heist film: a heist film: a heist film", items) is not None


def test_auto_choice_allows_a_call_or_a_grounded_answer_never_tags_in_text(accepts):
    rule = AnswerRule(ITEMS)
    call = render_tool_call("popular_items", {"k": 5})
    assert accepts(rule, call, tools=[TOOL], choice="auto")
    assert accepts(rule, "[50] Star Wars (1977)", tools=[TOOL], choice="auto")
    assert not accepts(rule, "ok <tool_call>", tools=[TOOL], choice="auto")
    assert not accepts(rule, '<tool_response_json>{"k": 1}', tools=[TOOL], choice="auto")  # no look-alike tags
    assert not accepts(rule, render_tool_call("popular_items", {"k": 0}), tools=[TOOL], choice="auto")
    assert not accepts(rule, "[50] Star Wars (1977)", tools=[TOOL], choice="required")


def test_id_arguments_take_only_the_conversations_ids_under_any_parameter_name(accepts):
    from recagent.agents.policies.grammar import CallIds, ground_call_arguments
    from recagent.tools.schemas import ITEM_ID_DESCRIPTION, USER_ID_DESCRIPTION

    user = {"type": "string", "minLength": 1, "maxLength": 64, "description": USER_ID_DESCRIPTION}
    item = {"type": "string", "minLength": 1, "maxLength": 64, "description": ITEM_ID_DESCRIPTION}
    tool = {  # a variant's names: what makes an argument an id is its type, not its name
        "type": "function",
        "function": {
            "name": "order_for_member",
            "description": "Rank items for a user.",
            "parameters": {
                "type": "object",
                "properties": {
                    "member": user,
                    "ids": {"anyOf": [{"type": "array", "items": item}, {"type": "null"}]},
                    "k": {"type": "integer"},
                },
                "required": ["member"],
                "additionalProperties": False,
            },
        },
    }
    grounded = ground_call_arguments([tool], CallIds(users=("234",), items=("127", "187")))
    ok = render_tool_call("order_for_member", {"member": "234", "ids": ["127", "187"], "k": 2})
    assert accepts(None, ok, tools=grounded, choice="required")
    for bad in ({"member": "2000"}, {"member": "234", "ids": ["127 187"]}, {"member": "234", "ids": ["12"]}):
        assert accepts(None, render_tool_call("order_for_member", bad), tools=[tool], choice="required")
        assert not accepts(None, render_tool_call("order_for_member", bad), tools=grounded, choice="required"), bad
    assert ground_call_arguments([tool], CallIds()) == [tool], "no ids in the conversation: the arguments stay free"
    only_items = ground_call_arguments([tool], CallIds(items=("127",)))
    assert accepts(None, render_tool_call("order_for_member", {"member": "2000"}), tools=only_items, choice="required")


def test_set_and_count_arguments_take_only_saved_sets_and_the_conversations_counts(accepts, synthetic_env):
    # The live schemas (through langchain's conversion, as the agent offers them): a chain's rank step may read only
    # a set an earlier result was saved under, and ask for a count the conversation wrote or a fixed size
    from recagent.agents.policies.grammar import CallIds, ground_call_arguments
    from recagent.tools.recommender_tools import build_registry

    tools = [t for t in build_registry(synthetic_env).openai_schemas() if t["function"]["name"] == "rank_items"]
    ids = CallIds(users=("7",), sets=("pool",), counts=(3, 10, 20))
    grounded = ground_call_arguments(tools, ids)

    def call(**args) -> str:
        return render_tool_call("rank_items", {"user_id": "7", **args})

    assert accepts(None, call(candidates="pool", k=3, save_as="mine"), tools=grounded, choice="required")
    assert accepts(None, call(candidates="pool", k=20), tools=grounded, choice="required")
    for bad in ({"candidates": "k", "k": 3}, {"candidates": "pool", "k": 15}):
        assert accepts(None, call(**bad), tools=tools, choice="required"), bad
        assert not accepts(None, call(**bad), tools=grounded, choice="required"), bad
    nothing_saved = ground_call_arguments(tools, CallIds(users=("7",), counts=(10, 20)))
    assert not accepts(None, call(candidates="pool"), tools=nothing_saved, choice="required")
    assert accepts(None, call(item_ids=["1", "2"]), tools=nothing_saved, choice="required")


def test_a_call_after_a_result_that_saved_a_set_reads_that_set(accepts, synthetic_env):
    # Made to call after a filter's result, the adapter wrote rank_items with a list of ids or no candidates at all;
    # the chain's gold reads the set the filter just saved. Tools with no set argument (get_item) stay as they were
    from recagent.agents.policies.grammar import CallIds, ground_call_arguments
    from recagent.tools.recommender_tools import build_registry

    schemas = build_registry(synthetic_env).openai_schemas()
    tools = [t for t in schemas if t["function"]["name"] in ("rank_items", "get_item")]
    chained = ground_call_arguments(
        tools, CallIds(users=("7",), items=("1", "2"), sets=("pool", "recs"), fresh_set="recs")
    )
    free = ground_call_arguments(tools, CallIds(users=("7",), items=("1", "2"), sets=("pool", "recs")))

    def call(**args) -> str:
        return render_tool_call("rank_items", {"user_id": "7", **args})

    assert accepts(None, call(candidates="recs"), tools=chained, choice="required")
    for other in ({"candidates": "pool"}, {"item_ids": ["1", "2"]}, {}, {"history": ["1"], "candidates": "recs"}):
        assert accepts(None, call(**other), tools=free, choice="required"), other
        assert not accepts(None, call(**other), tools=chained, choice="required"), other
    get_item = render_tool_call("get_item", {"item_id": "1"})
    assert accepts(None, get_item, tools=chained, choice="required")
    assert [t for t in chained if t["function"]["name"] == "get_item"] == [
        t for t in free if t["function"]["name"] == "get_item"
    ]


def test_year_arguments_take_only_the_conversations_years_and_none_where_nobody_wrote_one(accepts, synthetic_env):
    # "thrillers without any horror in them" became year_min 1999, year_max 1999 on a development request: a year
    # nobody gave. The live filter_items schema: with years written, only those; with none, no year argument at all
    from recagent.agents.policies.grammar import CallIds, ground_call_arguments
    from recagent.tools.recommender_tools import build_registry

    tools = [t for t in build_registry(synthetic_env).openai_schemas() if t["function"]["name"] == "filter_items"]
    eighties = ground_call_arguments(tools, CallIds(counts=(10, 20), years=(1980, 1989)))
    none_written = ground_call_arguments(tools, CallIds(counts=(10, 20)))

    def call(**args) -> str:
        return render_tool_call("filter_items", {"genres": ["Thriller"], **args})

    assert accepts(None, call(year_min=1980, year_max=1989), tools=eighties, choice="required")
    assert accepts(None, call(), tools=none_written, choice="required")
    for bad in ({"year_min": 1999, "year_max": 1999}, {"year_min": 1980, "year_max": 1990}):
        assert accepts(None, call(**bad), tools=tools, choice="required"), bad
        assert not accepts(None, call(**bad), tools=eighties, choice="required"), bad
        assert not accepts(None, call(**bad), tools=none_written, choice="required"), bad


def test_the_first_call_after_a_request_must_name_the_genres_it_wants(accepts, synthetic_env):
    # "westerns from the sixties" became year_min 1960 alone, "a western they have not watched" excluded Western and
    # "a comedy but nothing romantic" also excluded War, on development requests: the grammar now holds the call to
    # the request's genres
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    from recagent.agents.call_ids import conversation_call_ids
    from recagent.agents.policies.grammar import ground_call_arguments
    from recagent.agents.prompt_format import render_tool_call
    from recagent.tools.recommender_tools import build_registry

    tools = [t for t in build_registry(synthetic_env).openai_schemas() if t["function"]["name"] == "filter_items"]
    genres = synthetic_env.catalog.all_genres
    wanted, other = genres[0], genres[1]
    request = [HumanMessage(f"a {wanted.lower()} but nothing {other.lower()}")]
    grounded = ground_call_arguments(tools, conversation_call_ids(request, {}, {}, catalog_genres=genres))

    def call(**args) -> str:
        return render_tool_call("filter_items", args)

    assert accepts(None, call(genres=[wanted], exclude_genres=[other]), tools=grounded, choice="required")
    # "nothing X" refuses X outright: the call has to drop it (validation: "nothing with dramas" was left out)
    assert not accepts(None, call(genres=[wanted]), tools=grounded, choice="required")
    # after the request's genres, at most one other genre of the catalog: the base model ran on with free strings
    assert accepts(None, call(genres=[wanted, genres[3]], exclude_genres=[other]), tools=grounded, choice="required")
    for bad in ([wanted, "Comedy_Aristotelous"], [wanted, genres[3], genres[4]], [genres[3], wanted]):
        assert not accepts(None, call(genres=bad, exclude_genres=[other]), tools=grounded, choice="required"), bad
    for bad in (
        {},
        {"exclude_genres": [wanted]},
        {"genres": [other]},
        {"genres": [wanted], "exclude_genres": [genres[2]]},
    ):
        assert accepts(None, call(**bad), tools=tools, choice="required"), bad
        assert not accepts(None, call(**bad), tools=grounded, choice="required"), bad
    # after a tool result in the same turn the request has been read: the next call is free
    later = [*request, AIMessage(""), ToolMessage("items:\n[1] A (1990)", tool_call_id="c1")]
    assert conversation_call_ids(later, {}, {}, catalog_genres=genres).genres_wanted is None


def test_genres_wanted_together_are_all_asked_for_and_alternatives_any(accepts, synthetic_env):
    # development: "crime dramas pls" and "romantic comedies between 1985 and 1995" filtered with the default match
    # (any), so half the films had one of the two genres only
    from langchain_core.messages import HumanMessage

    from recagent.agents.call_ids import conversation_call_ids
    from recagent.agents.policies.grammar import ground_call_arguments
    from recagent.agents.prompt_format import render_tool_call
    from recagent.tools.recommender_tools import build_registry

    tools = [t for t in build_registry(synthetic_env).openai_schemas() if t["function"]["name"] == "filter_items"]
    genres = synthetic_env.catalog.all_genres
    one, two = genres[0], genres[1]

    def grounded(text: str) -> list[dict]:
        return ground_call_arguments(tools, conversation_call_ids([HumanMessage(text)], {}, {}, catalog_genres=genres))

    def call(**args) -> str:
        return render_tool_call("filter_items", {"genres": [one, two], **args})

    together, either = grounded(f"{one.lower()} and {two.lower()} films"), grounded(f"{one.lower()} or {two.lower()}")
    assert accepts(None, call(match="all"), tools=together, choice="required")
    for bad in ({}, {"match": "any"}):
        assert accepts(None, call(**bad), tools=tools, choice="required"), bad
        assert not accepts(None, call(**bad), tools=together, choice="required"), bad
    assert accepts(None, call(), tools=either, choice="required")
    assert not accepts(None, call(match="all"), tools=either, choice="required")
    # wanted together, the list adds no other genre: "all" would make every item have it too
    assert not accepts(None, call(match="all", genres=[one, two, genres[2]]), tools=together, choice="required")
    # a message making two requests wants neither genre with the other ("comedies? oh and popular dramas too")
    two_asks = grounded(f"any good {one.lower()} films? Oh and popular {two.lower()} films too")
    assert not accepts(None, call(match="all"), tools=two_asks, choice="required")
    assert accepts(None, call(), tools=two_asks, choice="required")


def test_a_genre_the_request_refuses_is_never_wanted_and_always_excluded(accepts, synthetic_env):
    # development: "anything but westerns or war films" became genres [War], exclude_genres [Western]: the
    # wanted-genres argument was free where the request wanted none, and the exclusion could drop a refused genre
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    from recagent.agents.call_ids import conversation_call_ids
    from recagent.agents.policies.grammar import ground_call_arguments
    from recagent.agents.prompt_format import render_tool_call
    from recagent.tools.recommender_tools import build_registry

    schemas = build_registry(synthetic_env).openai_schemas()
    tools = [t for t in schemas if t["function"]["name"] == "filter_items"]
    popular = [t for t in schemas if t["function"]["name"] == "popular_items"]
    genres = synthetic_env.catalog.all_genres
    one, two, free = genres[0], genres[1], genres[2]
    refused = [HumanMessage(f"anything but {one.lower()} or {two.lower()}")]
    ids = conversation_call_ids(refused, {}, {}, catalog_genres=genres)
    assert ids.genres_wanted is None and ids.genres_unwanted == ids.genres_refused == (one, two)
    grounded = ground_call_arguments(tools, ids)

    def call(**args) -> str:
        return render_tool_call("filter_items", args)

    for good in ({"exclude_genres": [one, two]}, {"genres": [free], "exclude_genres": [one, two]}):
        assert accepts(None, call(**good), tools=grounded, choice="required"), good
    for bad in (
        {"genres": [two], "exclude_genres": [one, two]},
        {"exclude_genres": [one]},
        {"exclude_genres": [two, one]},
        {"exclude_genres": [one, two, one]},
        # development: the free list then ran to five genres the request never named ([Action, Documentary, ...])
        {"genres": [free, genres[3]], "exclude_genres": [one, two]},
    ):
        assert accepts(None, call(**bad), tools=tools, choice="required"), bad
        assert not accepts(None, call(**bad), tools=grounded, choice="required"), bad
    # a single-genre argument (or null) cannot take a refused genre either
    one_genre = ground_call_arguments(popular, ids)
    for genre, ok in ((free, True), (one, False)):
        text = render_tool_call("popular_items", {"genre": genre})
        assert accepts(None, text, tools=one_genre, choice="required") is ok, genre
    # a request that wants a genre and refuses others: the one genre it may add is never a refused one
    both = conversation_call_ids([HumanMessage(f"{free.lower()}, but no {one.lower()}")], {}, {}, catalog_genres=genres)
    assert both.genres_wanted == (free,) and both.genres_refused == (one,)
    wants = ground_call_arguments(tools, both)
    assert accepts(None, call(genres=[free, two], exclude_genres=[one]), tools=wants, choice="required")
    assert not accepts(None, call(genres=[free, one], exclude_genres=[one]), tools=wants, choice="required")
    # refused first, then what it would rather not have: "no X, and less Y if possible"
    mixed = ground_call_arguments(
        tools,
        conversation_call_ids(
            [HumanMessage(f"no {one.lower()}, and less {two.lower()} if possible")], {}, {}, catalog_genres=genres
        ),
    )
    assert accepts(None, call(exclude_genres=[one, two]), tools=mixed, choice="required")
    assert accepts(None, call(exclude_genres=[one]), tools=mixed, choice="required")
    assert not accepts(None, call(exclude_genres=[two, one]), tools=mixed, choice="required")
    # a call chained after the turn's first excludes them too, all of them (all 55 synthesized ones do)
    written = [
        *refused,
        AIMessage("", tool_calls=[{"name": "filter_items", "args": {"exclude_genres": [one, two]}, "id": "c1"}]),
        ToolMessage("candidate_set: pool\nitems:\n[1] A (1990)", tool_call_id="c1"),
    ]
    later = conversation_call_ids(written, {}, {}, catalog_genres=genres)
    chained = ground_call_arguments(tools, later)
    reads = {
        "candidates": "pool",
        "sort_by": "input",
    }  # a chained call reads the set just saved (after, in schema order)
    for args, ok in (({}, False), ({"exclude_genres": [one, two]}, True), ({"exclude_genres": [two]}, False)):
        assert accepts(None, call(**args, **reads), tools=chained, choice="required") is ok, args


def test_a_chained_call_repeats_the_requests_genres_and_bounded_years_and_excludes_only_named_genres(
    accepts, synthetic_env
):
    # validation: the ranking chained after a filter for "4 1980s drama movies that suit me" wrote neither Drama nor
    # the 1980s (every synthesized ranking there repeats both), and a filter chained after similar_items for "more
    # like Toy Story, from the 1970s" wanted Action and excluded Comedy, which no synthesized chained call does
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    from recagent.agents.call_ids import conversation_call_ids
    from recagent.agents.policies.grammar import ground_call_arguments
    from recagent.tools.recommender_tools import build_registry

    schemas = {t["function"]["name"]: t for t in build_registry(synthetic_env).openai_schemas()}
    genres = synthetic_env.catalog.all_genres
    wanted, other = genres[0], genres[1]

    def chain(request: str, first: str, args: dict) -> list:
        return [
            HumanMessage(request),
            AIMessage("", tool_calls=[{"name": first, "args": args, "id": "c1"}]),
            ToolMessage("candidate_set: mine\nitems:\n[1] A (1985)", tool_call_id="c1"),
        ]

    ranking = chain(
        f"i'm user 7. 1980s {wanted.lower()} movies that suit me",
        "filter_items",
        {"genres": [wanted], "year_min": 1980, "year_max": 1989, "k": 20, "save_as": "mine"},
    )
    ids = conversation_call_ids(ranking, {"7": 7}, {}, catalog_genres=genres)
    assert ids.years_bounded == ("earliest", "latest")
    ranked = ground_call_arguments([schemas["rank_by_preference"]], ids)
    full = {"user_id": "7", "candidates": "mine", "prefer_genres": [wanted], "year_min": 1980, "year_max": 1989}
    assert accepts(None, render_tool_call("rank_by_preference", full), tools=ranked, choice="required")
    for left_out in ("prefer_genres", "year_min", "year_max"):
        call = render_tool_call("rank_by_preference", {k: v for k, v in full.items() if k != left_out})
        assert accepts(None, call, tools=[schemas["rank_by_preference"]], choice="required")
        assert not accepts(None, call, tools=ranked, choice="required"), left_out
    # a blend's weight stays at its default unless the request writes one (the model wrote 1: preferences only)
    weighted = render_tool_call("rank_by_preference", {**full, "weight": 1.0})
    assert accepts(None, weighted, tools=[schemas["rank_by_preference"]], choice="required")
    assert not accepts(None, weighted, tools=ranked, choice="required")
    stated = conversation_call_ids(
        [HumanMessage(ranking[0].content + ", weigh my taste 0.7"), *ranking[1:]], {"7": 7}, {}
    )
    assert stated.fraction_written and not ids.fraction_written
    written = render_tool_call("rank_by_preference", {**full, "weight": 0.7})
    assert accepts(
        None, written, tools=ground_call_arguments([schemas["rank_by_preference"]], stated), choice="required"
    )
    # two ranges ("before 1960 or after 1990") or a second request ("... and separately: ...") bound no side for sure
    for text in (
        f"{wanted.lower()} movies before 1960 or after 1990",
        f"my picks. and separately: {wanted} from the 80s",
    ):
        assert conversation_call_ids(chain(text, "filter_items", {"k": 20}), {}, {}).years_bounded == (), text
    # nor does a chain in a message making two requests read either's genres
    both = chain(f"{wanted} please. And separately: the most popular {other} films", "filter_items", {"k": 20})
    assert conversation_call_ids(both, {}, {}, catalog_genres=genres).genres_wanted is None
    # one side bounded ("from 1989 or earlier"), no genre named: that side written, no genre excluded
    similar = chain("more like item 1, from 1989 or earlier", "similar_items", {"item_ids": ["1"], "save_as": "mine"})
    ids = conversation_call_ids(similar, {}, {"1": 1}, catalog_genres=genres)
    assert ids.years_bounded == ("latest",)
    filtered = ground_call_arguments([schemas["filter_items"]], ids)
    reads = {"candidates": "mine", "sort_by": "input"}
    for args, ok in (
        ({"year_max": 1989}, True),
        ({}, False),
        ({"exclude_genres": [other], "year_max": 1989}, False),
        ({"genres": [wanted], "year_max": 1989}, False),  # the seed carries its genres: none the request did not name
    ):
        call = render_tool_call("filter_items", {**args, **reads})
        assert accepts(None, call, tools=filtered, choice="required") is ok, args
    # a title's year in brackets bounds nothing, nor a year the words leave on either side ("released afer 1959")
    for text, sides in (
        ("more like Grease (1978), from after 1990", ("earliest",)),
        ("more like 1, released afer 1959", ()),
    ):
        assert conversation_call_ids(chain(text, "similar_items", {"item_ids": ["1"]}), {}, {}).years_bounded == sides


def test_a_call_after_a_users_history_lists_the_best_rated_items_first(accepts, synthetic_env):
    # validation: after get_user_history, "more like what I've watched lately" became similar_items over an item the
    # user rated 1, or twenty ids; every synthesized call there lists the first one to three of the best-rated items
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    from recagent.agents.call_ids import conversation_call_ids
    from recagent.agents.policies.grammar import ground_call_arguments
    from recagent.tools.recommender_tools import build_registry

    schemas = {t["function"]["name"]: t for t in build_registry(synthetic_env).openai_schemas()}
    history = "\n".join(
        f"[{i}] Film {i} (1995): Drama | rating: {r} | date: 1997-11-1{n}"
        for n, (i, r) in enumerate([(5, 3), (9, 5), (2, 1), (7, 4), (4, 5), (8, 4)])
    )
    messages = [
        HumanMessage("i'm user 7. more like what i've watched lately"),
        AIMessage("", tool_calls=[{"name": "get_user_history", "args": {"user_id": "7"}, "id": "c1"}]),
        ToolMessage(f"user_id: 7\ntotal_interactions: 6\nitems:\n{history}", tool_call_id="c1"),
    ]
    known = {str(i): i for i in range(1, 10)}
    ids = conversation_call_ids(messages, known, known)
    assert ids.seeds == ("9", "4", "7")  # rated 5, 5, then the first of the 4s
    similar = ground_call_arguments([schemas["similar_items"]], ids)
    cases = ((["9"], True), (["9", "4"], True), (["9", "4", "7"], True), (["4"], False), (["2"], False))
    for items, ok in (*cases, (["4", "9"], False), (["9", "4", "7", "8"], False)):
        call = render_tool_call("similar_items", {"item_ids": items})
        assert accepts(None, call, tools=similar, choice="required") is ok, items
    assert conversation_call_ids(messages[:1], known, known).seeds == ()  # no history shown yet
    # a request naming an item of its own seeds from it, not from the history
    for text in ("i'm user 7. more like item 3 that i haven't seen", "i'm user 7. more like movie id 3"):
        assert conversation_call_ids([HumanMessage(text), *messages[1:]], known, known).seeds == (), text
    # a ranking's candidates stay free: only the list a search starts from takes the favourites
    ranking = render_tool_call("rank_items", {"user_id": "7", "item_ids": ["2", "5", "8", "9"]})
    assert accepts(None, ranking, tools=ground_call_arguments([schemas["rank_items"]], ids), choice="required")


def test_a_call_takes_titles_the_user_wrote_and_the_requests_seen_and_order_rules(accepts, synthetic_env):
    # validation: get_item wrote "conspiracy theory movies" for "oh, conspiracy theory!" and a second title nobody
    # wrote; a chained filter left the seen items in and re-sorted the ranked shortlist by popularity
    from recagent.agents.policies.grammar import CallIds, ground_call_arguments
    from recagent.tools.recommender_tools import build_registry

    schemas = build_registry(synthetic_env).openai_schemas()
    get_item = [t for t in schemas if t["function"]["name"] == "get_item"]
    titled = ground_call_arguments(get_item, CallIds(titles=("conspiracy theory", "oh, conspiracy theory")))
    assert accepts(None, render_tool_call("get_item", {"title": "conspiracy theory"}), tools=titled, choice="required")
    for bad in ("conspiracy theory movies", "pirates movies"):
        assert not accepts(None, render_tool_call("get_item", {"title": bad}), tools=titled, choice="required")
        assert accepts(None, render_tool_call("get_item", {"title": bad}), tools=get_item, choice="required")

    filters = [t for t in schemas if t["function"]["name"] == "filter_items"]
    chained = ground_call_arguments(
        filters, CallIds(users=("7",), sets=("pool",), fresh_set="pool", unseen_by=("7",), request_read=True)
    )
    plain = ground_call_arguments(filters, CallIds(users=("7",), sets=("pool",), request_read=True))

    def call(**args) -> str:
        return render_tool_call("filter_items", args)

    good = {"exclude_seen_by": "7", "candidates": "pool", "sort_by": "input"}
    assert accepts(None, call(**good), tools=chained, choice="required")
    for left_out in ("exclude_seen_by", "sort_by"):
        bad = {k: v for k, v in good.items() if k != left_out}
        assert not accepts(None, call(**bad), tools=chained, choice="required"), left_out
    assert not accepts(None, call(**{**good, "sort_by": "popularity"}), tools=chained, choice="required")
    # no "nothing I've seen" in the request: the call leaves nobody's seen items out
    assert accepts(None, call(candidates="pool"), tools=plain, choice="required")
    assert not accepts(None, call(candidates="pool", exclude_seen_by="7"), tools=plain, choice="required")


def test_the_save_decision_requires_or_drops_the_save_argument_and_the_unsaid_pool(accepts, synthetic_env):
    # validation: "which of #382, #193, #436 would I like most?" saved a ranking as a pool of 20 nobody read, and
    # "got ten movies? rank them for me" searched ten and saved nothing for the ranking
    from recagent.agents.policies.grammar import CallIds, ground_call_arguments
    from recagent.tools.recommender_tools import build_registry

    search = [t for t in build_registry(synthetic_env).openai_schemas() if t["function"]["name"] == "search_items"]
    saves = ground_call_arguments(search, CallIds(counts=(10, 20), unsaid_pool=20, saves=True))
    keeps = ground_call_arguments(search, CallIds(counts=(10, 20), unsaid_pool=20, saves=False))
    free = ground_call_arguments(search, CallIds(counts=(10, 20), unsaid_pool=20))

    def call(**args) -> str:
        return render_tool_call("search_items", {"query": "cosy films", **args})

    assert accepts(None, call(k=20, save_as="pool"), tools=saves, choice="required")
    assert not accepts(None, call(k=20), tools=saves, choice="required")  # a pool for the ranking is saved
    assert accepts(None, call(k=10), tools=keeps, choice="required")
    assert accepts(None, call(), tools=keeps, choice="required")
    for bad in ({"k": 20}, {"save_as": "pool"}, {"k": 10, "save_as": "pool"}):
        assert not accepts(None, call(**bad), tools=keeps, choice="required"), bad
        assert accepts(None, call(**bad), tools=free, choice="required"), bad  # undecided: the policy chooses
    said = ground_call_arguments(search, CallIds(counts=(10, 20), saves=False))  # the user wrote 20
    assert accepts(None, call(k=20), tools=said, choice="required")


def test_a_first_call_saving_for_a_later_tool_asks_for_the_pool_unless_it_retrieves_for_a_user(accepts, synthetic_env):
    # validation: "gve me movies only 1980 or later Five would be eough rank them for me" filtered ten and saved them
    # for the ranking; every synthesized first call that saves, to a tool taking no user, asks for the pool of 20
    from dataclasses import replace

    from recagent.agents.policies.grammar import CallIds, ground_call_arguments
    from recagent.tools.recommender_tools import build_registry

    schemas = {t["function"]["name"]: t for t in build_registry(synthetic_env).openai_schemas()}
    ids = CallIds(users=("7",), counts=(5, 10, 20), unsaid_pool=20, saves=True, saved_pool=20)
    search = ground_call_arguments([schemas["search_items"]], ids)

    def call(**args) -> str:
        return render_tool_call("search_items", {"query": "cosy films", **args})

    assert accepts(None, call(k=20, save_as="pool"), tools=search, choice="required")
    for bad in ({"k": 5, "save_as": "pool"}, {"k": 10, "save_as": "pool"}, {"save_as": "pool"}):
        assert not accepts(None, call(**bad), tools=search, choice="required"), bad
    for free in (replace(ids, saved_pool=None), replace(ids, saves=None)):  # chained, or the save head unsure
        grounded = ground_call_arguments([schemas["search_items"]], free)
        assert accepts(None, call(k=5, save_as="pool"), tools=grounded, choice="required")
    mine = ground_call_arguments([schemas["retrieve_for_user"]], ids)  # a user's own retrieval: what they asked
    five = render_tool_call("retrieve_for_user", {"user_id": "7", "k": 5, "save_as": "pool"})
    assert accepts(None, five, tools=mine, choice="required")
    # a user id the tool takes but does not require (drop what they saw) is no user's own retrieval: the pool
    filtered = ground_call_arguments([schemas["filter_items"]], ids)

    def drops(k: int) -> str:  # the arguments in the schema's order, as the grammar wants them
        return render_tool_call("filter_items", {"genres": ["Drama"], "exclude_seen_by": "7", "k": k, "save_as": "p"})

    assert accepts(None, drops(20), tools=filtered, choice="required")
    assert not accepts(None, drops(5), tools=filtered, choice="required")
    # a tool that cannot save keeps its count, as does a call the save head is sure saves nothing
    unsaved = ground_call_arguments([schemas["get_candidates"]], ids)
    name = schemas["get_candidates"]["function"]["parameters"]["required"][0]
    listed = render_tool_call("get_candidates", {name: "pool", "k": 5})
    assert accepts(None, listed, tools=unsaved, choice="required")
    kept = ground_call_arguments([schemas["search_items"]], replace(ids, saves=False))
    assert accepts(None, call(k=5), tools=kept, choice="required")


def test_a_first_call_that_saves_nothing_lists_as_many_as_the_request_asked(accepts, synthetic_env):
    # development: "two westerns please" listed ten; every synthesized first call that saves nothing writes the one
    # count its request stated (benchmarks/grounded_gold_calls.py), a history's count aside (a lookup, mostly)
    from dataclasses import replace

    from recagent.agents.policies.grammar import CallIds, ground_call_arguments
    from recagent.tools.recommender_tools import build_registry

    schemas = {t["function"]["name"]: t for t in build_registry(synthetic_env).openai_schemas()}
    ids = CallIds(users=("7",), counts=(2, 10, 20), count_stated=2, request_read=True, saves=False)
    popular = ground_call_arguments([schemas["popular_items"]], ids)  # it saves nothing: its list is the answer
    assert accepts(None, render_tool_call("popular_items", {"k": 2}), tools=popular, choice="required")
    for bad in ({"k": 10}, {}):
        assert accepts(
            None, render_tool_call("popular_items", bad), tools=[schemas["popular_items"]], choice="required"
        )
        assert not accepts(None, render_tool_call("popular_items", bad), tools=popular, choice="required"), bad

    def search(saves: bool | None, **args) -> tuple[str, list[dict]]:
        grounded = ground_call_arguments([schemas["search_items"]], replace(ids, saves=saves))
        return render_tool_call("search_items", {"query": "cosy films", **args}), grounded

    assert accepts(None, *search(False, k=2), choice="required")
    assert not accepts(None, *search(False, k=10), choice="required")
    assert accepts(None, *search(None, k=10), choice="required")  # it may save a pool for a ranking: the policy's
    unwritten = ground_call_arguments([schemas["popular_items"]], replace(ids, count_stated=3))  # not in counts
    assert accepts(None, render_tool_call("popular_items", {"k": 10}), tools=unwritten, choice="required")
    history = ground_call_arguments([schemas["get_user_history"]], replace(ids, counts=(2, 5, 10, 20)))
    for args in ({"user_id": "7"}, {"user_id": "7", "last_n": 5}):  # a lookup, mostly: its count stays free
        assert accepts(None, render_tool_call("get_user_history", args), tools=history, choice="required"), args


def test_a_turn_downs_calls_list_at_least_its_floor_of_items(accepts, synthetic_env):
    # simulated users: the same call, k 10, found the films just turned down again; a history's count stays free
    from recagent.agents.policies.grammar import CallIds, ground_call_arguments
    from recagent.tools.recommender_tools import build_registry

    schemas = {t["function"]["name"]: t for t in build_registry(synthetic_env).openai_schemas()}
    ids = CallIds(users=("7",), counts=(2, 10, 20), request_read=True, turns_down=True, count_floor=13)
    popular = ground_call_arguments([schemas["popular_items"]], ids)
    for k in (13, 20):  # 2 and 10 rise to the floor, 20 stays
        assert accepts(None, render_tool_call("popular_items", {"k": k}), tools=popular, choice="required"), k
    for bad in ({"k": 10}, {"k": 2}, {}):  # the tool's default count (10) is below the floor: k is written
        assert not accepts(None, render_tool_call("popular_items", bad), tools=popular, choice="required"), bad
    stated = ground_call_arguments([schemas["popular_items"]], CallIds(counts=(2, 10), count_stated=2, count_floor=7))
    assert accepts(None, render_tool_call("popular_items", {"k": 7}), tools=stated, choice="required")
    assert not accepts(None, render_tool_call("popular_items", {"k": 2}), tools=stated, choice="required")
    history = ground_call_arguments([schemas["get_user_history"]], ids)
    assert accepts(None, render_tool_call("get_user_history", {"user_id": "7"}), tools=history, choice="required")


def test_an_optional_id_argument_is_dropped_where_the_conversation_holds_no_dataset_id(accepts, synthetic_env):
    # validation: "find Dante's Peak for me" became get_item(item_id="Dante's Peak"), with no item id to name
    from recagent.agents.policies.grammar import CallIds, ground_call_arguments
    from recagent.tools.recommender_tools import build_registry

    tools = [t for t in build_registry(synthetic_env).openai_schemas() if t["function"]["name"] == "get_item"]
    by_title = render_tool_call("get_item", {"title": "Dante's Peak"})
    by_id = render_tool_call("get_item", {"item_id": "Dante's Peak"})
    grounded = ground_call_arguments(tools, CallIds(users=("7",), indexed=True))
    assert accepts(None, by_title, tools=grounded, choice="required")
    assert accepts(None, by_id, tools=tools, choice="required")
    assert not accepts(None, by_id, tools=grounded, choice="required")
    # ids of a catalog the policy cannot look up stay free
    assert accepts(None, by_id, tools=ground_call_arguments(tools, CallIds(users=("7",))), choice="required")
    known = ground_call_arguments(tools, CallIds(items=("50",), indexed=True))  # an id to name: the argument stays
    assert accepts(None, render_tool_call("get_item", {"item_id": "50"}), tools=known, choice="required")
    # users too: rank_items takes one optionally (dropped with none named), a tool requiring one keeps it free
    schemas = {t["function"]["name"]: t for t in build_registry(synthetic_env).openai_schemas()}
    no_user = CallIds(items=("50", "181"), indexed=True)
    ranked = ground_call_arguments([schemas["rank_items"]], no_user)
    assert "user_id" not in ranked[0]["function"]["parameters"]["properties"]
    assert accepts(None, render_tool_call("rank_items", {"item_ids": ["50", "181"]}), tools=ranked, choice="required")
    retrieved = ground_call_arguments([schemas["retrieve_for_user"]], no_user)
    assert "user_id" in retrieved[0]["function"]["parameters"]["properties"]


def test_a_call_after_a_request_pointing_at_an_item_names_that_item_alone(accepts, synthetic_env):
    # validation: "i like the third one, anything similar" became similar_items over eight ids, none the third
    from recagent.agents.policies.grammar import CallIds, ground_call_arguments
    from recagent.tools.recommender_tools import build_registry

    schemas = {t["function"]["name"]: t for t in build_registry(synthetic_env).openai_schemas()}
    ids = CallIds(items=("50", "181", "752"), pointed="752", request_read=True)
    similar = ground_call_arguments([schemas["similar_items"]], ids)
    lookup = ground_call_arguments([schemas["get_item"]], ids)
    assert accepts(None, render_tool_call("similar_items", {"item_ids": ["752"]}), tools=similar, choice="required")
    assert accepts(None, render_tool_call("get_item", {"item_id": "752"}), tools=lookup, choice="required")
    for bad in (["50"], ["752", "181"], ["752", "752"]):
        call = render_tool_call("similar_items", {"item_ids": bad})
        assert accepts(None, call, tools=[schemas["similar_items"]], choice="required")
        assert not accepts(None, call, tools=similar, choice="required"), bad
    assert not accepts(None, render_tool_call("get_item", {"item_id": "181"}), tools=lookup, choice="required")


def test_a_ranking_names_the_known_user_unless_the_request_names_liked_items(accepts, synthetic_env):
    # validation: rank_films left its uid out after the user's own retrieval; every synthesized ranking with a user
    # known writes it, but where the request names liked items ("based on [250] and [405]")
    from langchain_core.messages import HumanMessage

    from recagent.agents.call_ids import conversation_call_ids
    from recagent.agents.policies.grammar import ground_call_arguments
    from recagent.tools.recommender_tools import build_registry

    schemas = {t["function"]["name"]: t for t in build_registry(synthetic_env).openai_schemas()}
    known = {str(i): i for i in range(1, 500)}
    mine = render_tool_call("rank_items", {"item_ids": ["50", "181"]})
    cases = (
        ("i'm user 7, which of 50 or 181 would i like?", ("7",)),  # the user given, not the other numbers in range
        ("i'm user 7. based on 12, rank 50 and 181", ()),  # the liked item's history may stand for the user
        ("which of 50 or 181 is more popular?", ()),  # numbers in range, but no user given
    )
    for text, ranking_users in cases:
        ids = conversation_call_ids([HumanMessage(text)], known, known)
        assert ids.users and ids.ranking_users == ranking_users
        ranked = ground_call_arguments([schemas["rank_items"]], ids)
        assert accepts(None, mine, tools=ranked, choice="required") is not ranking_users, text
        for user in ids.users:
            call = render_tool_call("rank_items", {"user_id": user, "item_ids": ["50", "181"]})
            assert accepts(None, call, tools=ranked, choice="required") is (not ranking_users or user in ranking_users)


def test_a_tool_needs_a_user_where_a_required_parameter_is_a_dataset_user_id(synthetic_env):
    # the live schemas: retrieve_for_user and get_user_history require one; rank_items takes one optionally
    from recagent.agents.policies.grammar import needs_user
    from recagent.tools.recommender_tools import build_registry

    schemas = {t["function"]["name"]: t for t in build_registry(synthetic_env).openai_schemas()}
    assert {n for n, t in schemas.items() if needs_user(t)} == {"retrieve_for_user", "get_user_history"}
    renamed = json.loads(json.dumps(schemas["retrieve_for_user"]).replace('"user_id"', '"viewer"'))
    assert needs_user(renamed)  # found by the id's description, under any parameter name


def test_a_call_chooses_a_recommender_only_where_the_request_names_one(accepts, synthetic_env):
    # validation: "oh right, it's 368" and "#392" got retrieve_for_user with model "pop"; no synthesized call chooses a
    # recommender unless the request names one ("which movies would pop pick for me? and BPR-MF?")
    from langchain_core.messages import HumanMessage

    from recagent.agents.call_ids import conversation_call_ids
    from recagent.agents.policies.grammar import ground_call_arguments
    from recagent.agents.prompt_format import render_tool_call
    from recagent.tools.recommender_tools import build_registry

    tools = [t for t in build_registry(synthetic_env).openai_schemas() if t["function"]["name"] == "retrieve_for_user"]
    users = {"5": 0}

    def grounded(text: str) -> list[dict]:
        return ground_call_arguments(tools, conversation_call_ids([HumanMessage(text)], users, {}))

    def call(**args) -> str:
        return render_tool_call("retrieve_for_user", {"user_id": "5", **args})

    unnamed, named = grounded("i'm user 5, recommend me something"), grounded("user 5: what would bpr pick for me?")
    assert accepts(None, call(), tools=unnamed, choice="required")
    assert accepts(None, call(model="pop"), tools=tools, choice="required")
    assert not accepts(None, call(model="pop"), tools=unnamed, choice="required")
    assert accepts(None, call(model="bpr"), tools=named, choice="required")


def test_a_filter_after_an_answer_from_a_saved_set_reads_it_in_its_order_other_tools_stay_free(accepts, synthetic_env):
    from recagent.agents.policies.grammar import CallIds, ground_call_arguments
    from recagent.tools.recommender_tools import build_registry

    schemas = build_registry(synthetic_env).openai_schemas()
    tools = [t for t in schemas if t["function"]["name"] in ("filter_items", "rank_items")]
    shown = ground_call_arguments(tools, CallIds(users=("7",), sets=("pool", "shortlist"), shown_set="shortlist"))

    def call(name: str, **args) -> str:
        return render_tool_call(name, args)

    filtered = call("filter_items", genres=["Thriller"], candidates="shortlist", sort_by="input")
    assert accepts(None, filtered, tools=shown, choice="required")
    for other in (
        {"genres": ["Thriller"]},
        {"genres": ["Thriller"], "candidates": "pool", "sort_by": "input"},
        {"genres": ["Thriller"], "candidates": "shortlist", "sort_by": "popularity"},  # the order shown is kept
    ):
        assert not accepts(None, call("filter_items", **other), tools=shown, choice="required"), other
    # a ranking may rank other items: only a filter narrows the list shown
    assert accepts(None, call("rank_items", user_id="7", item_ids=["1", "2"]), tools=shown, choice="required")


def test_set_arguments_of_tools_that_call_every_set_a_candidate_set_name_are_told_apart_by_meaning(accepts):
    # the synthesized dialogs' tools (and third parties') describe the set a call reads and the one it saves alike;
    # the save argument is the one described as storing the result, so a chain reads the set just saved
    from recagent.agents.policies.grammar import CallIds, ground_call_arguments

    name = {"type": "string", "description": "candidate set name"}
    older = {
        "type": "function",
        "function": {
            "name": "rank_films",
            "description": "Rank films for a user.",
            "parameters": {
                "type": "object",
                "properties": {
                    "uid": {"type": "string", "description": "dataset user id"},
                    "pool": {"anyOf": [name, {"type": "null"}], "description": "or a candidate set saved earlier"},
                    "store_as": {
                        "anyOf": [name, {"type": "null"}],
                        "description": "store the whole ranking under this candidate set name",
                    },
                },
                "required": ["uid"],
            },
        },
    }
    chained = ground_call_arguments([older], CallIds(users=("7",), sets=("recs",), fresh_set="recs"))
    assert accepts(None, render_tool_call("rank_films", {"uid": "7", "pool": "recs"}), tools=chained, choice="required")
    for other in ({"uid": "7"}, {"uid": "7", "pool": "mine"}):
        assert not accepts(None, render_tool_call("rank_films", other), tools=chained, choice="required"), other
    saving = render_tool_call("rank_films", {"uid": "7", "pool": "recs", "store_as": "top"})
    assert accepts(None, saving, tools=chained, choice="required")  # a new name to save under stays free
    assert older["function"]["parameters"]["properties"]["pool"]["anyOf"][0] == name  # the tools given stay as given
