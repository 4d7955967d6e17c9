"""The tool-call prompt format: rendering, strict parsing and the streaming content filter (no model needed)."""

from __future__ import annotations

import json
import random

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from recagent.agents import prompt_format as pf
from recagent.agents.prompt_format import (
    ContentStreamFilter,
    parse_assistant_output,
    render_messages,
    render_tool_call,
    render_tool_line,
    render_tools,
    render_type,
)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "retrieve_for_user",
            "description": "Top-k items for a known user.",
            "parameters": {
                "type": "object",
                "properties": {"user_id": {"type": "string"}, "k": {"type": "integer", "minimum": 1}},
                "required": ["user_id"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "popular_items",
            "description": "Most popular items.",
            "parameters": {"type": "object", "properties": {"genre": {"type": "string"}}},
        },
    },
]
NAMES = {"retrieve_for_user", "popular_items"}


class _ChatMLTokenizer:
    """SmolLM2's chat template, as a stand-in tokenizer (the real one needs the model files)."""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        import jinja2

        template = (
            "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
            "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
            "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
            "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
        )
        return jinja2.Template(template).render(messages=messages, add_generation_prompt=add_generation_prompt)


def test_render_then_parse_round_trip():
    args = {"user_id": "42", "k": 5, "note": 'quotes " and <tags> and ünïcode'}
    text = render_tool_call("retrieve_for_user", args)
    assert (
        text
        == '<tool_call>{"name": "retrieve_for_user", "arguments": '
        + json.dumps(args, ensure_ascii=False)
        + "}</tool_call>"
    )
    out = parse_assistant_output(text, {"retrieve_for_user"})
    assert out.content == "" and not out.invalid_tool_calls
    (call,) = out.tool_calls
    assert call["name"] == "retrieve_for_user" and call["args"] == args
    assert call["id"].startswith("call_") and len(call["id"]) == 5 + 24


def test_parallel_calls_and_text_outside_blocks():
    text = (
        "Let me look.\n"
        + render_tool_call("retrieve_for_user", {"user_id": "1"})
        + "\n"
        + render_tool_call("popular_items", {})
    )
    out = parse_assistant_output(text, NAMES)
    assert [c["name"] for c in out.tool_calls] == ["retrieve_for_user", "popular_items"]
    assert out.tool_calls[1]["args"] == {}
    assert len({c["id"] for c in out.tool_calls}) == 2
    assert out.content == "Let me look."


def test_plain_text_is_content():
    out = parse_assistant_output("  Here are five comedies: ...  \n", NAMES)
    assert out.content == "Here are five comedies: ..." and not out.tool_calls and not out.invalid_tool_calls


@pytest.mark.parametrize(
    ("block", "name", "error"),
    [
        ('<tool_call>{"name": "popular_items", "arguments": {"genre": "Comedy",}}</tool_call>', None, "not valid JSON"),
        ("<tool_call>{'name': 'popular_items', 'arguments': {}}</tool_call>", None, "not valid JSON"),
        ('<tool_call>["popular_items", {}]</tool_call>', None, "must be a JSON object"),
        ('<tool_call>{"arguments": {}}</tool_call>', None, 'no "name"'),
        ('<tool_call>{"name": "popular_items"}</tool_call>', "popular_items", 'no "arguments"'),
        (
            '<tool_call>{"name": "popular_items", "arguments": "{\\"genre\\": \\"x\\"}"}</tool_call>',
            "popular_items",
            "must be a JSON object, got a string",
        ),
        (
            '<tool_call>{"name": "popular_items", "arguments": {}, "id": 3}</tool_call>',
            "popular_items",
            "unexpected keys",
        ),
        (
            '<tool_call>{"name": "drop_tables", "arguments": {}}</tool_call>',
            "drop_tables",
            "unknown tool 'drop_tables'",
        ),
        ('<tool_call>{"name": "popular_items", "arguments": {"k": NaN}}</tool_call>', None, "NaN"),
        ('<tool_call>{"name": "popular_items", "arguments": {"k": 1, "k": 2}}</tool_call>', None, "duplicate key 'k'"),
        (
            '<tool_call>{"name": "retrieve_for_user", "arguments": {"user_id": "4',
            "retrieve_for_user",
            "unclosed <tool_call> block",
        ),
        ("<tool_call>", None, "unclosed"),
    ],
)
def test_malformed_calls_become_invalid_with_a_clear_error(block, name, error):
    out = parse_assistant_output(block, NAMES)
    assert not out.tool_calls
    (bad,) = out.invalid_tool_calls
    assert error in bad["error"]
    assert bad["name"] == name
    assert bad["args"] == block  # the raw block, as the model wrote it
    assert bad["id"].startswith("call_")


def test_one_bad_block_does_not_spoil_the_others():
    text = (
        render_tool_call("popular_items", {})
        + "\n<tool_call>{oops}</tool_call>\n"
        + render_tool_call("retrieve_for_user", {"user_id": "7"})
    )
    out = parse_assistant_output(text, NAMES)
    assert [c["name"] for c in out.tool_calls] == ["popular_items", "retrieve_for_user"]
    assert len(out.invalid_tool_calls) == 1 and out.content == ""


def test_tool_names_none_accepts_any_name():
    out = parse_assistant_output(render_tool_call("anything", {"a": 1}), None)
    assert out.tool_calls[0]["name"] == "anything"


def test_parser_never_evaluates_code(monkeypatch):
    import builtins

    def boom(*a, **k):
        raise AssertionError("eval/exec must never be called")

    monkeypatch.setattr(builtins, "eval", boom)
    monkeypatch.setattr(builtins, "exec", boom)
    payload = '<tool_call>{"name": "popular_items", "arguments": __import__("os").system("echo pwned")}</tool_call>'
    out = parse_assistant_output(payload, NAMES)
    assert not out.tool_calls and "not valid JSON" in out.invalid_tool_calls[0]["error"]


def test_render_messages_puts_tools_in_the_system_turn_and_results_in_a_user_turn():
    call = {"name": "retrieve_for_user", "args": {"user_id": "42", "k": 3}, "id": "call_a"}
    call2 = {"name": "popular_items", "args": {}, "id": "call_b"}
    msgs = [
        SystemMessage("You recommend films."),
        HumanMessage("Something for user 42?"),
        AIMessage("", tool_calls=[call, call2]),
        ToolMessage('{"items": [{"item_id": "50"}]}', tool_call_id="call_a"),
        ToolMessage("not json", tool_call_id="call_b", name="popular_items"),
        AIMessage("Try Star Wars [50]."),
    ]
    out = render_messages(msgs, TOOLS)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user", "assistant"]
    assert out[0]["content"] == render_tools(TOOLS) + "\n\nYou recommend films."
    assert "\nretrieve_for_user(user_id: str, k?: int): Top-k items for a known user.\n" in out[0]["content"]
    assert out[2]["content"] == render_tool_call(
        "retrieve_for_user", {"user_id": "42", "k": 3}
    ) + "\n" + render_tool_call("popular_items", {})
    assert out[3]["content"] == (
        '<tool_response>retrieve_for_user\n{"items": [{"item_id": "50"}]}</tool_response>\n'
        "<tool_response>popular_items\nnot json</tool_response>"
    )  # name from the call id, then the text
    assert set(out[0]) == {"role", "content"}


def test_render_messages_without_system_message_or_tools():
    msgs = [HumanMessage("hi")]
    assert render_messages(msgs, None) == [{"role": "user", "content": "hi"}]
    with_tools = render_messages(msgs, TOOLS)
    assert with_tools[0]["role"] == "system" and "<tools>" in with_tools[0]["content"]
    assert with_tools[0]["content"].endswith(pf.DEFAULT_SYSTEM_PROMPT)
    assert with_tools[1] == {"role": "user", "content": "hi"}


def test_tools_block_is_one_signature_line_per_tool_inside_the_instruction():
    block = render_tools(TOOLS)
    head, rest = block.split("<tools>\n")
    lines, tail = rest.split("\n</tools>\n")
    assert lines.split("\n") == [
        "retrieve_for_user(user_id: str, k?: int): Top-k items for a known user.",
        "popular_items(genre?: str): Most popular items.",
    ]
    assert head.startswith("# Tools") and "optional" in head
    # the instruction shows the exact call syntax, parallel calls, where results come back and how to finish
    assert pf.tool_call_prefix("<tool name>") + "<JSON object>" + pf.TOOL_CALL_SUFFIX in tail
    assert "one per line" in tail and pf.TOOL_RESPONSE_OPEN in tail and "plain text" in tail


ROOT_DEFS = {
    "$defs": {
        "Era": {
            "type": "object",
            "properties": {"start": {"type": "integer", "default": 1990}, "end": {"type": "integer"}},
            "required": ["end"],
        },
        "Node": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
            },
        },
    }
}


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string"}, "str"),
        ({"type": "integer", "minimum": 1, "maximum": 100}, "int"),  # constraints are left to the decoder
        ({"type": "number"}, "float"),
        ({"type": "boolean"}, "bool"),
        ({"type": "null"}, "null"),
        ({}, "any"),
        (True, "any"),
        ({"type": "array", "items": {"type": "integer"}}, "list[int]"),
        ({"type": "array"}, "list"),
        ({"type": "array", "items": {"type": "array", "items": {"type": "string"}}}, "list[list[str]]"),
        ({"enum": ["sasrec", "bpr"]}, 'Literal["sasrec","bpr"]'),
        ({"type": "string", "enum": ["Comédie", "a<b & 'c'"]}, 'Literal["Comédie","a<b & \'c\'"]'),
        ({"enum": [1, 2.5, True, None]}, "Literal[1,2.5,true,null]"),
        ({"const": "fixed"}, 'Literal["fixed"]'),
        ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, "str|int"),
        ({"oneOf": [{"type": "string"}, {"type": "null"}]}, "str|null"),
        ({"type": ["string", "null"]}, "str|null"),
        ({"allOf": [{"$ref": "#/$defs/Era"}]}, "{start?: int=1990, end: int}"),
        ({"type": "object"}, "dict"),
        ({"type": "object", "additionalProperties": {"type": "number"}}, "dict[str, float]"),
        ({"properties": {"a": {"type": "string"}}, "required": ["a"]}, "{a: str}"),
        ({"$ref": "#/$defs/Node"}, "{name?: str, children?: list[Node]}"),  # a recursion stops at the name
        ({"$ref": "#/$defs/Missing"}, "Missing"),
        ({"$ref": "https://example.org/schema.json"}, "schema.json"),
    ],
)
def test_render_type_rules(schema, expected):
    assert render_type(schema, ROOT_DEFS) == expected


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"type": "object", "properties": {}}, "f()"),
        (
            {
                "type": "object",
                "properties": {"q": {"type": "string"}, "k": {"type": "integer", "default": 10}},
                "required": ["q"],
            },
            "f(q: str, k?: int=10)",
        ),
        # optional and null by default: the null branch is dropped (leaving the argument out says the same)
        (
            {"properties": {"m": {"anyOf": [{"enum": ["a", "b"]}, {"type": "null"}], "default": None}}},
            'f(m?: Literal["a","b"])',
        ),
        ({"properties": {"m": {"type": ["integer", "null"]}}}, "f(m?: int)"),
        ({"properties": {"m": {"enum": ["a", None]}}}, 'f(m?: Literal["a"])'),
        # but kept where null is a value of its own: a required argument, or one with another default
        ({"properties": {"m": {"type": ["integer", "null"]}}, "required": ["m"]}, "f(m: int|null)"),
        (
            {"properties": {"m": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": "x"}}},
            'f(m?: str|null="x")',
        ),
        # defaults as JSON: object keys in their own order, non-ASCII and markup characters as they are
        (
            {
                "properties": {
                    "o": {"type": "object", "default": {"b": 1, "a": [True, None]}},
                    "s": {"type": "string", "default": "Amélie <b> & 'co'"},
                    "w": {"type": "number", "default": 0.5},
                    "f": {"type": "boolean", "default": False},
                }
            },
            'f(o?: dict={"b": 1, "a": [true, null]}, s?: str="Amélie <b> & \'co\'", w?: float=0.5, f?: bool=false)',
        ),
        (
            {"type": "object", "properties": {"era": {"$ref": "#/$defs/Era"}}, "$defs": ROOT_DEFS["$defs"]},
            "f(era?: {start?: int=1990, end: int})",
        ),
    ],
)
def test_render_tool_line_signature_rules(parameters, expected):
    assert render_tool_line({"name": "f", "parameters": parameters}) == expected


def test_render_tool_line_keeps_the_description_on_one_line():
    tool = {
        "type": "function",
        "function": {
            "name": "g",
            "description": "  Find things.\n\tFast,  too. ",
            "parameters": {"type": "object", "properties": {}},
        },
    }
    assert render_tool_line(tool) == "g(): Find things. Fast, too."
    assert render_tool_line(TOOLS[0]) == render_tool_line(TOOLS[0]["function"]), "bare function schemas render alike"
    with pytest.raises(ValueError, match="OpenAI tool"):
        render_tool_line({"description": "no name"})


def test_invalid_calls_in_history_are_shown_as_written():
    bad = parse_assistant_output('<tool_call>{"name": "nope", "arguments": {}}</tool_call>', NAMES).invalid_tool_calls
    out = render_messages([HumanMessage("x"), AIMessage("", invalid_tool_calls=bad)], None)
    assert out[1]["content"] == '<tool_call>{"name": "nope", "arguments": {}}</tool_call>'


def test_format_prompt_ends_with_the_assistant_turn():
    text = pf.format_prompt(_ChatMLTokenizer(), [SystemMessage("S"), HumanMessage("Q")], TOOLS)
    assert text.startswith("<|im_start|>system\n" + render_tools(TOOLS) + "\n\nS<|im_end|>\n")
    assert text.endswith("<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n")


def test_render_tool_call_can_follow_the_schema_property_order():
    params = TOOLS[0]["function"]["parameters"]
    text = render_tool_call("retrieve_for_user", {"extra": 1, "k": 5, "user_id": "42"}, schema=params)
    assert (
        text
        == '<tool_call>{"name": "retrieve_for_user", "arguments": {"user_id": "42", "k": 5, "extra": 1}}</tool_call>'
    )


def test_render_tool_call_rejects_non_dict_arguments():
    with pytest.raises(TypeError, match="must be a dict"):
        render_tool_call("x", ["a"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "Plain answer with trailing space   ",
        '  lead <tool_call>{"name": "popular_items", "arguments": {}}</tool_call>  tail  ',
        render_tool_call("popular_items", {}) + "\n" + render_tool_call("retrieve_for_user", {"user_id": "1"}),
        "text <tool_ca then not a tag",
        'cut off <tool_call>{"name": "popular_items", "argu',
        "a < b and <tool_call>x</tool_call> c\n\n d",
    ],
)
def test_stream_filter_yields_exactly_the_parsed_content(text):
    rng = random.Random(0)
    for _ in range(20):
        f, out, i = ContentStreamFilter(), [], 0
        while i < len(text):
            j = i + rng.randint(1, 6)
            out.append(f.feed(text[i:j]))
            i = j
        out.append(f.finish())
        assert "".join(out) == parse_assistant_output(text, NAMES).content
        assert "<tool_call>" not in "".join(out)
