"""The check that a tool call lists no value twice, applied after the grammar as a call is written."""

from __future__ import annotations

from recagent.agents.policies.call_filter import all_of, lists_once

RANK = {
    "type": "function",
    "function": {
        "name": "rank_items",
        "parameters": {
            "type": "object",
            "properties": {
                "user_id": {"type": "string", "enum": ["356"]},
                "item_ids": {
                    "anyOf": [
                        {"type": "array", "items": {"type": "string", "enum": ["1", "2", "12"]}},
                        {"type": "null"},
                    ]
                },
                "history": {"type": "array", "items": {"type": "string"}},
                # a history's best-rated seeds, one list per length (validation: the filter closed it after "153")
                "seeds": {
                    "anyOf": [
                        {"type": "array", "prefixItems": [{"enum": ["153"]}], "minItems": 1, "maxItems": 1},
                        {"type": "array", "prefixItems": [{"enum": ["153"]}, {"enum": ["170"]}], "maxItems": 2},
                    ]
                },
                # the grammar writes a wanted genre first, then any other (validation: "Co" was refused)
                "genres": {
                    "type": "array",
                    "prefixItems": [{"type": "string", "enum": ["Comedy"]}],
                    "items": {"type": "string", "enum": ["Crime", "Drama"]},
                },
            },
        },
    },
}
OPEN = '<tool_call>{"name": "rank_items", "arguments": {"user_id": "356", '


def test_a_value_listed_twice_is_refused_as_it_closes():
    # validation: "Just two, the ones that fit me best" looped over the same ids until the budget ran out
    passes = lists_once([RANK])
    assert passes(OPEN + '"item_ids": ["1", "2"')
    assert not passes(OPEN + '"item_ids": ["1", "2", "1"')
    assert not passes(OPEN + '"history": ["7", "7"')  # free strings too, once the value is whole
    assert passes(OPEN + '"history": ["7", "7')  # "77" may still come
    assert passes(OPEN + '"item_ids": ["1", "2"], "history": ["1"')  # another list may name it again


def test_an_enum_value_is_refused_once_it_can_only_end_as_one_listed_and_a_new_one_once_none_is_left():
    passes = lists_once([RANK])
    assert passes(OPEN + '"item_ids": ["1", "2", "1')  # "12" is left
    assert not passes(OPEN + '"item_ids": ["1", "12", "1')  # only "1" or "12", both listed
    assert passes(OPEN + '"item_ids": ["1", "12", "')  # "2" is left
    assert not passes(OPEN + '"item_ids": ["1", "12", "2", ')  # none left: the list can only end
    assert passes(OPEN + '"item_ids": ["1", "12", "2"]')
    assert passes(OPEN + '"genres": ["Co') and passes(OPEN + '"genres": ["Comedy", "Cr')
    assert not passes(OPEN + '"genres": ["Comedy", "Co')
    assert passes(OPEN + '"seeds": ["153", ') and passes(OPEN + '"seeds": ["153", "170"]')
    assert not passes(OPEN + '"seeds": ["153", "170", ')


def test_answers_and_calls_without_lists_pass_and_checks_combine():
    passes = lists_once([RANK])
    assert passes("1. [1] Toy Story (1995), [1] again")  # an answer is answer_filter's business
    assert passes(OPEN + '"user_id": "356"}}</tool_call>\n' + OPEN)
    both = all_of(passes, lambda text: "x" not in text)
    assert both(OPEN) and not both(OPEN + "x") and not both(OPEN + '"item_ids": ["2", "2"')
    assert all_of(None, None) is None and all_of(None, passes) is passes
