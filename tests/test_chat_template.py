"""The Jinja tool chat template renders exactly what the Python prompt format does, and TRL trains with it.

The reference is ``render_openai_messages`` followed by SmolLM2's own chat template; the tokenizer
is read straight from the packaged GGUF (a few seconds; the converted checkpoint saves this same
tokenizer, so template, vocabulary and tokens are identical).
"""

from __future__ import annotations

import copy
import json

import pytest
from langchain_core.messages import convert_to_messages

from recagent.agents.chat_template import TOOL_CHAT_TEMPLATE, apply_tool_template, canonical_openai_messages
from recagent.agents.prompt_format import format_prompt, render_openai_messages

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "retrieve_for_user",
            "description": 'Top-k items for a known user (ids as strings, e.g. "42"; k <= 100 & > 0).',
            "parameters": {
                "type": "object",
                "properties": {"user_id": {"type": "string"}, "k": {"type": "integer", "minimum": 1, "default": 10}},
                "required": ["user_id"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_items",
            "description": "Films matching a query — titles may hold accents (Amélie).",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "genres": {"type": "array"}}},
        },
    },
]

# Schemas that exercise every rule of the compact tools block, with values that Jinja's own tojson would
# write differently (sorted keys, escaped <>&' and non-ASCII): transformers' tojson must match json.dumps.
SCHEMA_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "find_films",
            "description": "Films «à la» <Amélie> & 'co'.\n\tSecond  line.",
            "parameters": {
                "type": "object",
                "properties": {
                    "genre": {
                        "anyOf": [{"type": "string", "enum": ["Comédie", "Sci-Fi", "<b>&'x'\"y\""]}, {"type": "null"}],
                        "default": None,
                    },
                    "kinds": {"type": "array", "items": {"enum": [1, 2.5, True, None]}, "default": [1, True]},
                    "mode": {"type": ["string", "null"], "default": "a<b"},
                    "must": {"type": ["integer", "null"]},
                    "era": {"$ref": "#/$defs/Era"},
                    "tree": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}], "default": None},
                    "opts": {"type": "object", "default": {"z": 1, "a": {"é": "<&>"}}},
                    "weights": {"type": "object", "additionalProperties": {"type": "number"}},
                    "both": {"allOf": [{"$ref": "#/$defs/Era"}, {"type": "object"}]},
                    "fixed": {"const": "v1"},
                    "anything": True,
                    "untyped": {"description": "no type at all"},
                    "ratio": {"type": "number", "default": 0.1},
                    "missing": {"$ref": "#/$defs/Nope"},
                },
                "required": ["must", "era"],
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
                            "kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                        },
                    },
                },
            },
        },
    },
    {"type": "function", "function": {"name": "no_args", "parameters": {"type": "object", "properties": {}}}},
    {"name": "bare_schema", "description": "A bare function schema.", "parameters": {}},
]


def call(call_id, name, args):
    """An OpenAI tool call whose arguments are canonical JSON text (as our builder writes them)."""
    text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}


def result(call_id, content, name="retrieve_for_user"):
    msg = {"role": "tool", "tool_call_id": call_id, "content": content}
    return {**msg, "name": name} if name else msg


ITEMS = json.dumps({"items": [{"item_id": "1", "title": "Toy Story", "year": 1995}], "total_matches": 1})
SYSTEM = {"role": "system", "content": "You are a film recommender."}
USER = {"role": "user", "content": "I'm user 42. Something fun?"}
ANSWER = {"role": "assistant", "content": "Try Toy Story (1995) [1]."}
ONE_CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [call("c1", "retrieve_for_user", {"user_id": "42", "k": 5})],
}

# name -> (messages, tools)
EDGE_CASES = {
    "no_system_with_tools": ([USER, ONE_CALL, result("c1", ITEMS), ANSWER], TOOLS),
    "no_system_no_tools": ([USER, ANSWER], None),
    "system_no_tools": ([SYSTEM, USER, ANSWER], None),
    "empty_tool_list": ([SYSTEM, USER, ANSWER], []),
    "parallel_calls": (
        [
            SYSTEM,
            USER,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    call("c1", "retrieve_for_user", {"user_id": "42", "k": 3}),
                    call("c2", "search_items", {"query": "space", "genres": ["Sci-Fi", "Action"]}),
                ],
            },
            result("c1", ITEMS),
            result("c2", json.dumps({"items": []}), name=None),
            ANSWER,
        ],
        TOOLS,
    ),  # c2 labelled by id
    "non_ascii": (
        [
            {"role": "system", "content": "Réponds en français. <b>Pas</b> d'HTML & pas de « guillemets »."},
            {"role": "user", "content": "Des films comme « Amélie » 🎬? Über <cool> & 'quirky' \"stuff\"\n\tplease"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    call(
                        "c1",
                        "search_items",
                        {"query": "Amélie <Poulain> & 'Jeunet' \"fabuleux\" \\ / \u2028 😀", "genres": ["Comédie"]},
                    )
                ],
            },
            result(
                "c1",
                json.dumps({"items": [{"title": "Cité des enfants perdus, La", "note": "<&'\">"}]}, ensure_ascii=False),
                name="search_items",
            ),
            {"role": "assistant", "content": "Essayez « La Cité des enfants perdus » 🎈 <3 & plus."},
        ],
        TOOLS,
    ),
    "tool_content_not_json": (
        [
            SYSTEM,
            USER,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [call(f"c{i}", "retrieve_for_user", {"user_id": str(i)}) for i in range(14)],
            },
        ]
        + [
            result(f"c{i}", text)
            for i, text in enumerate(
                [
                    "Error: the recommender is down",
                    "",
                    "  spaced  ",
                    "42",
                    "-1.5e-07",
                    "true",
                    "null",
                    '"a JSON string"',
                    "inf",
                    "NaN",
                    "1_000",
                    "007",
                    "+5",
                    '[1, 2, {"a": null}]',
                ]
            )
        ]
        + [ANSWER],
        TOOLS,
    ),
    "text_and_tool_calls": (
        [
            SYSTEM,
            USER,
            {"role": "assistant", "content": "  Let me look that up.\n ", "tool_calls": ONE_CALL["tool_calls"]},
            result("c1", ITEMS),
            ANSWER,
        ],
        TOOLS,
    ),
    "two_system_messages": ([SYSTEM, {"role": "system", "content": "Be brief."}, USER, ANSWER], TOOLS),
    "system_after_user": ([USER, SYSTEM, ANSWER], TOOLS),
    "system_after_user_no_tools": ([USER, SYSTEM, ANSWER], None),
    "empty_system_content": ([{"role": "system", "content": ""}, USER, ANSWER], TOOLS),
    "developer_role": ([{"role": "developer", "content": "Dev rules."}, USER, ANSWER], TOOLS),
    "bare_function_schemas": ([SYSTEM, USER, ONE_CALL, result("c1", ITEMS), ANSWER], [t["function"] for t in TOOLS]),
    "arguments_as_mapping": (
        [
            SYSTEM,
            USER,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "search_items", "arguments": {"query": "é", "genres": []}},
                    },
                ],
            },
            result("c1", ITEMS, name="search_items"),
            ANSWER,
        ],
        TOOLS,
    ),  # as vLLM passes them
    "empty_arguments": (
        [
            SYSTEM,
            USER,
            {"role": "assistant", "content": None, "tool_calls": [call("c1", "search_items", "{}")]},
            result("c1", ITEMS, name=None),
            ANSWER,
        ],
        TOOLS,
    ),
    "unknown_call_id": ([SYSTEM, USER, ONE_CALL, result("nope", ITEMS, name=None), ANSWER], TOOLS),  # "name": null
    "content_blocks": (
        [
            {"role": "system", "content": [{"type": "text", "text": "Sys "}, {"type": "text", "text": "tem."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Hi"},
                    {"type": "image_url", "image_url": {"url": "x"}},
                    {"type": "text", "text": " there"},
                ],
            },
            ANSWER,
        ],
        TOOLS,
    ),
    "assistant_empty_reply": (
        [SYSTEM, USER, {"role": "assistant", "content": None}, USER, {"role": "assistant", "content": "   "}],
        TOOLS,
    ),
    "multi_turn_ends_with_tool_results": (
        [
            SYSTEM,
            USER,
            ONE_CALL,
            result("c1", ITEMS),
            ANSWER,
            {"role": "user", "content": "More, please."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [call("c9", "retrieve_for_user", {"user_id": "42", "k": 20})],
            },
            result("c9", ITEMS),
        ],
        TOOLS,
    ),
    "schema_rules": (
        [
            SYSTEM,
            USER,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [call("c1", "find_films", {"must": None, "era": {"end": 1999}, "genre": "Comédie"})],
            },
            result("c1", ITEMS, name="find_films"),
            ANSWER,
        ],
        SCHEMA_TOOLS,
    ),
}

# Arguments and tool results that are JSON but not in canonical form, or not JSON but look like it.
NON_CANONICAL = (
    [
        SYSTEM,
        USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                call("c1", "search_items", '{"query":"Am\\u00e9lie","genres" : ["Drama"]}'),  # compact, ASCII-escaped
                call(
                    "c2", "retrieve_for_user", '{"user_id": "7", "k": 1e1, "user_id": "8"}'
                ),  # float form, duplicate key
            ],
        },
        result("c1", ' {"items": []}\n', name="search_items"),
        result("c2", "{not json"),
        ANSWER,
    ],
    TOOLS,
)


def python_render(tokenizer, messages, tools, add_generation_prompt=False):
    """The reference: the Python prompt format, then SmolLM2's own template."""
    turns = render_openai_messages(messages, tools)
    return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=add_generation_prompt)


@pytest.fixture(scope="module")
def tokenizer(smollm2_tokenizer):
    """SmolLM2's tokenizer with its own chat template (from conftest)."""
    return smollm2_tokenizer


@pytest.fixture(scope="module")
def tool_tokenizer(tokenizer):
    """The same tokenizer with the tool chat template."""
    tok = copy.deepcopy(tokenizer)
    assert apply_tool_template(tok) is tok and tok.chat_template == TOOL_CHAT_TEMPLATE
    return tok


@pytest.fixture(scope="module")
def synth_dir(ml100k_env, tmp_path_factory):
    """A small synthesized dataset (train.jsonl / test.jsonl) over ML-100K."""
    from recagent.synth.config import SynthConfig
    from recagent.synth.pipeline import synthesize

    out = tmp_path_factory.mktemp("synth")
    synthesize(SynthConfig.build(n=60, exports=[]), out, env=ml100k_env, progress=False)
    return out


@pytest.fixture(scope="module")
def rows(synth_dir):
    return [json.loads(line) for name in ("train", "test") for line in (synth_dir / f"{name}.jsonl").open()]


def render(tool_tokenizer, messages, tools, **kwargs):
    return tool_tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, **kwargs)


def test_template_equals_python_renderer_on_every_synthesized_dialog(tokenizer, tool_tokenizer, rows):
    assert len(rows) == 60
    messages = [m for r in rows for m in r["messages"]]
    assert any(m.get("tool_calls") for m in messages) and any(m["role"] == "tool" for m in messages)
    for r in rows:
        assert canonical_openai_messages(r["messages"]) == r["messages"], (
            "the dataset meets the template's precondition"
        )
        assert render(tool_tokenizer, r["messages"], r["tools"]) == python_render(
            tokenizer, r["messages"], r["tools"]
        ), r["id"]


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_template_equals_python_renderer_on_edge_cases(tokenizer, tool_tokenizer, case):
    messages, tools = EDGE_CASES[case]
    expected = python_render(tokenizer, messages, tools)
    assert render(tool_tokenizer, messages, tools) == expected


def test_edge_cases_exercise_what_they_claim(tokenizer):
    text = python_render(tokenizer, *EDGE_CASES["tool_content_not_json"])
    for body in (
        "Error: the recommender is down",
        "",
        "  spaced  ",
        "42",
        '"a JSON string"',
        "007",
        '[1, 2, {"a": null}]',
    ):
        # any text, JSON or not, is embedded verbatim after the name line
        assert f"<tool_response>retrieve_for_user\n{body}</tool_response>" in text
    assert "You are a helpful AI assistant named SmolLM" in python_render(tokenizer, *EDGE_CASES["system_after_user"])
    assert "Amélie <Poulain> & 'Jeunet'" in python_render(tokenizer, *EDGE_CASES["non_ascii"])
    schema_text = python_render(tokenizer, *EDGE_CASES["schema_rules"])
    for piece in (
        'genre?: Literal["Comédie","Sci-Fi","<b>&\'x\'\\"y\\""]',
        'opts?: dict={"z": 1, "a": {"é": "<&>"}}',
        "tree?: {name?: str, kids?: list[Node]}",
        "must: int|null",
        'mode?: str|null="a<b"',
        "Films «à la» <Amélie> & 'co'. Second line.",
        "\nno_args()\n",
        "missing?: Nope",
    ):
        assert piece in schema_text, piece
    assert '<tool_response>search_items\n{"items": []}</tool_response>' in python_render(
        tokenizer, *EDGE_CASES["parallel_calls"]
    )  # labelled by its call id


def test_non_canonical_json_text_renders_the_same_after_canonicalising(tokenizer, tool_tokenizer):
    messages, tools = NON_CANONICAL
    expected = python_render(tokenizer, messages, tools)
    assert render(tool_tokenizer, messages, tools) != expected, "the precondition is real"
    canonical = canonical_openai_messages(messages)
    assert python_render(tokenizer, canonical, tools) == expected, "canonicalising keeps the meaning"
    assert render(tool_tokenizer, canonical, tools) == expected
    assert messages[2]["tool_calls"][0]["function"]["arguments"].startswith('{"query":"Am\\u00e9lie"'), "not mutated"


def _prompts(rows):
    """(messages, tools) for every point where an assistant reply is due: dataset prefixes and edge cases."""
    for r in rows:
        for i, m in enumerate(r["messages"]):
            if m["role"] == "assistant":
                yield r["messages"][:i], r["tools"]
    for messages, tools in EDGE_CASES.values():
        cut = max(i for i, m in enumerate(messages) if m["role"] != "assistant") + 1
        yield messages[:cut], tools


def test_generation_prompt_equals_format_prompt(tokenizer, tool_tokenizer, rows):
    n = 0
    for messages, tools in _prompts(rows):
        expected = format_prompt(tokenizer, convert_to_messages([dict(m) for m in messages]), tools)
        assert expected.endswith("<|im_start|>assistant\n")
        assert render(tool_tokenizer, messages, tools, add_generation_prompt=True) == expected
        n += 1
    assert n > len(rows)


def _masked_runs(ids, mask, tokenizer):
    """The decoded text of each run of consecutive masked tokens."""
    runs, current = [], []
    for token, bit in zip(ids, mask, strict=True):
        if bit:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tokenizer.decode(run) for run in runs]


def test_assistant_mask_covers_exactly_the_assistant_replies(tokenizer, tool_tokenizer, rows):
    cases = [(r["messages"], r["tools"]) for r in rows] + list(EDGE_CASES.values())
    for messages, tools in cases:
        out = tool_tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        text = python_render(tokenizer, messages, tools)
        assert out["input_ids"] == tokenizer(text, add_special_tokens=False)["input_ids"]
        replies = [
            t["content"] + "<|im_end|>" for t in render_openai_messages(messages, tools) if t["role"] == "assistant"
        ]
        assert _masked_runs(out["input_ids"], out["assistant_masks"], tokenizer) == replies


@pytest.mark.slow
def test_sft_trainer_trains_on_the_synthesized_dataset_with_assistant_only_loss(tool_tokenizer, synth_dir, tmp_path):
    import datasets
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer
    from trl.chat_template_utils import is_chat_template_stop_token_trained

    assert is_chat_template_stop_token_trained(tool_tokenizer), "the end-of-turn token is in the loss"
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        path = str(synth_dir / "train.jsonl")
        ds = datasets.load_dataset("json", data_files=path, split="train", cache_dir=str(tmp_path / "cache"))
        raw = [json.loads(line) for line in open(path)]
        ds = ds.select_columns(["messages", "tools"])
        shortest = sorted(range(len(raw)), key=lambda i: len(json.dumps(raw[i])))[:2]  # keeps CPU time low
        ds = ds.select(shortest)
        for row, i in zip(ds, shortest, strict=True):  # Arrow's schema must not add or reorder keys
            assert json.dumps(row["messages"]) == json.dumps(raw[i]["messages"])
            assert json.dumps(row["tools"]) == json.dumps(raw[i]["tools"])

        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=len(tool_tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=4096,
            bos_token_id=tool_tokenizer.bos_token_id,
            eos_token_id=tool_tokenizer.eos_token_id,
            pad_token_id=tool_tokenizer.pad_token_id,
        )
        model = LlamaForCausalLM(config)
        before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        args = SFTConfig(
            output_dir=str(tmp_path / "out"),
            max_steps=2,
            per_device_train_batch_size=1,
            learning_rate=1e-2,
            assistant_only_loss=True,
            max_length=4096,
            report_to=[],
            use_cpu=True,
            bf16=False,
            activation_checkpointing=False,
            save_strategy="no",
            logging_steps=1,
            disable_tqdm=True,
            seed=0,
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tool_tokenizer)
        for row in trainer.train_dataset:
            assert len(row["input_ids"]) < args.max_length, "nothing truncated"
            expected = tool_tokenizer.apply_chat_template(
                row["messages"], tools=row["tools"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
            )
            assert row["input_ids"] == expected["input_ids"]
            assert [int(label != -100) for label in row["labels"]] == expected["assistant_masks"]
        trainer.train()
    finally:
        if was_enabled:
            datasets.enable_progress_bars()

    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    changed = [n for n, p in model.named_parameters() if n in before and not torch.equal(p.detach(), before[n])]
    assert changed == list(before), "every trainable weight moved"
