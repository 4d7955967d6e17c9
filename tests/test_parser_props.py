"""Properties of the reply parser (issue 18): it never raises, and it accepts strict JSON only.

``parse_assistant_output`` reads whatever a model wrote: random text, bytes, calls that are nearly
right, nesting deep enough to exhaust ``json.loads``' recursion, numbers that overflow to infinity,
NaN/Infinity literals and lone surrogates. Every such input must come back as content and (valid or
invalid) calls, with a one-line error the agent can feed back; a call it accepts is strict JSON
(finite numbers, Unicode text, bounded depth) that survives a strict round trip.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recagent.agents.prompt_format import (
    MAX_CALL_DEPTH,
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    parse_assistant_output,
    render_tool_call,
)
from recagent.tools.toolkit import json_depth_exceeds

NAMES = {"search_items", "get_item"}
FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

surrogates = st.integers(0xD800, 0xDFFF).map(chr)
any_char = st.one_of(st.characters(), surrogates)  # st.characters() leaves surrogates out
any_text = st.text(any_char, max_size=200)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    # no string holds the closing tag: the parser (and the stream filter) end a call at the first one, and prompts
    # break the tag in data with a word joiner, so the model never reads it inside a value
    st.text(max_size=20).filter(lambda t: "</tool_call>" not in t),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
arguments = st.dictionaries(st.text(max_size=10).filter(lambda t: "</tool_call>" not in t), json_values, max_size=5)
NON_STRICT = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1e999",
    "1E400",
    '"\\ud800"',
    '"\\udfff"',
    '"a\\udc00b"',
    '"\\ud83d"',
    '"\\ude00\\ud83d"',
]


def strict(value) -> bool:
    """Whether a parsed value is strict JSON: it dumps without NaN/Infinity and encodes as UTF-8."""
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return False
    return True


def check(text, names=NAMES) -> None:
    """Parse without raising; every accepted call is strict, every error is one line."""
    out = parse_assistant_output(text, names)
    assert isinstance(out.content, str)
    for call in out.tool_calls:
        assert isinstance(call["args"], dict) and strict(call["args"]) and strict(call["name"])
        assert not json_depth_exceeds(json.dumps(call["args"]), MAX_CALL_DEPTH - 1)
    for bad in out.invalid_tool_calls:
        assert bad["error"] and "\n" not in bad["error"]
        assert bad["name"] is None or strict(bad["name"])


@st.composite
def mutated_calls(draw) -> str:
    """A valid call, rendered as the model writes it, then bent: chars changed, nested, made non-strict."""
    text = render_tool_call(draw(st.sampled_from(sorted(NAMES) + ["other"])), draw(arguments))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["insert", "delete", "replace", "nest", "non_strict", "truncate", "repeat"]))
        at = draw(st.integers(0, len(text)))
        if kind == "insert":
            text = text[:at] + draw(st.text(any_char, min_size=1, max_size=5)) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 5)) :]
        elif kind == "replace":
            text = text[:at] + draw(st.sampled_from(list('{}[]",:\\ 0eE-+.') + NON_STRICT)) + text[at + 1 :]
        elif kind == "nest":
            depth = draw(st.sampled_from([MAX_CALL_DEPTH - 2, MAX_CALL_DEPTH - 1, MAX_CALL_DEPTH, 1000, 50_000]))
            opener, closer = draw(st.sampled_from([("[", "]"), ('{"a": ', "}"), ('[{"k": ', "}]")]))
            value = opener * depth + "1" + closer * depth
            text = text.replace('"arguments": {', '"arguments": {"x": ' + value + ", ", 1)
        elif kind == "non_strict":
            text = text.replace('"arguments": {', '"arguments": {"x": ' + draw(st.sampled_from(NON_STRICT)) + ", ", 1)
        elif kind == "truncate":
            text = text[:at]
        else:
            text = text + "\n" + text
    return text


@FUZZ
@given(any_text)
def test_arbitrary_text_never_raises(text):
    check(text)
    check(TOOL_CALL_OPEN + text + TOOL_CALL_CLOSE)
    check("x " + TOOL_CALL_OPEN + text)  # cut off


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_and_read_as_utf8(data):
    for raw in (data, bytearray(data), memoryview(data), TOOL_CALL_OPEN.encode() + data + TOOL_CALL_CLOSE.encode()):
        check(raw)
    assert (
        parse_assistant_output(data, NAMES).content
        == parse_assistant_output(data.decode("utf-8", "replace"), NAMES).content
    )


@FUZZ
@given(mutated_calls())
def test_near_valid_calls_never_raise_and_accept_only_strict_json(text):
    check(text)
    check(text, None)


@FUZZ
@given(st.sampled_from(sorted(NAMES)), arguments)
def test_strict_calls_are_accepted_unchanged(name, args):
    out = parse_assistant_output(render_tool_call(name, args), NAMES)
    assert not out.invalid_tool_calls and out.tool_calls[0]["args"] == args


@FUZZ
@given(st.sampled_from(NON_STRICT), st.integers(0, 3))
def test_non_strict_json_is_rejected_at_any_depth(token, depth):
    value = "[" * depth + token + "]" * depth
    out = parse_assistant_output(f'<tool_call>{{"name": "get_item", "arguments": {{"x": {value}}}}}</tool_call>', NAMES)
    assert not out.tool_calls
    (bad,) = out.invalid_tool_calls
    assert bad["error"].startswith("tool call is not valid JSON: ") and bad["name"] is None


def nested(depth: int) -> str:
    """A call whose arguments nest ``depth`` levels (the object itself is the first), the call object around them."""
    return (
        '<tool_call>{"name": "get_item", "arguments": '
        + '{"a": ' * (depth - 1)
        + "{}"
        + "}" * (depth - 1)
        + "}</tool_call>"
    )


def test_nesting_is_limited_before_json_recursion_can_fail():
    assert parse_assistant_output(nested(MAX_CALL_DEPTH - 1), NAMES).tool_calls  # the call object + 32 levels
    (bad,) = parse_assistant_output(nested(MAX_CALL_DEPTH), NAMES).invalid_tool_calls
    assert bad["error"] == f"tool call is not valid JSON: it nests deeper than {MAX_CALL_DEPTH} levels"
    for depth in (1_000, 100_000):
        for body in ("[" * depth, "[" * depth + "]" * depth, '{"a": ' * depth):
            (bad,) = parse_assistant_output(TOOL_CALL_OPEN + body + TOOL_CALL_CLOSE, NAMES).invalid_tool_calls
            assert "nests" in bad["error"]


def test_brackets_inside_strings_do_not_count_as_nesting():
    args = {"q": "[[[[{{{{" * 100, "e": 'a"]]\\'}
    assert not json_depth_exceeds(json.dumps(args), 1) and json_depth_exceeds('[{"a": "]"}]', 1)
    assert parse_assistant_output(render_tool_call("get_item", args), NAMES).tool_calls[0]["args"] == args


def test_paired_surrogate_escapes_are_text_and_accepted():
    out = parse_assistant_output(
        '<tool_call>{"name": "get_item", "arguments": {"q": "\\ud83d\\ude00"}}</tool_call>', NAMES
    )
    assert out.tool_calls[0]["args"] == {"q": "😀"}


def test_lone_surrogates_are_rejected_in_keys_names_and_raw_text():
    for body in (
        '{"name": "get_item", "arguments": {"\\ud800": 1}}',
        '{"name": "\\udc00", "arguments": {}}',
        '{"name": "get_item", "arguments": {"q": "\ud800"}}',
    ):
        out = parse_assistant_output(TOOL_CALL_OPEN + body + TOOL_CALL_CLOSE, None)
        assert not out.tool_calls and "lone surrogate" in out.invalid_tool_calls[0]["error"]
    cut = parse_assistant_output('<tool_call>{"name": "\\ud800", "argu', None).invalid_tool_calls[0]
    assert cut["name"] is None


def test_none_and_other_junk_read_as_an_empty_reply():
    assert parse_assistant_output(None, NAMES).content == ""  # type: ignore[arg-type]
