"""Synthesis stages on their own: the tool pool, complexity labels, the LLM judge and generator, the CLI."""

from __future__ import annotations

import json
import random

import pytest
from openai_stub import Stub, completion, tool_call_message

from recagent.agents.config import PolicyConfig
from recagent.cli import main
from recagent.synth.complexity import features, loss_level, structural_level
from recagent.synth.config import SynthConfig
from recagent.synth.judge import parse_verdict
from recagent.synth.pipeline import Synthesizer, synthesize
from recagent.synth.sample import Sample
from recagent.synth.tool_pool import EXCLUDE_PARAM, OfferedTools, build_pool
from recagent.tools.recommender_tools import build_registry
from recagent.tools.result_text import result_text

CORE_CALLS = {
    "search_items": {"query": "funny animated film", "k": 4},
    "filter_items": {"genres": ["Comedy"], "year_min": 1990, "year_max": 1995, "k": 4},
    "retrieve_for_user": {"user_id": "1", "k": 4},
    "similar_items": {"item_ids": ["1"], "k": 4},
    "popular_items": {"genre": "War", "k": 4},
    "rank_items": {"user_id": "1", "item_ids": ["1", "50", "100", "181"], "k": 4},
    "rank_by_preference": {"user_id": "1", "item_ids": ["1", "50", "100"], "prefer_genres": ["Comedy"]},
    "get_item": {"title": "Toy Story"},
    "get_user_history": {"user_id": "1", "last_n": 3},
}


@pytest.fixture(scope="module")
def pool(ml100k_env):
    return build_pool(build_registry(ml100k_env), list(ml100k_env.catalog.all_genres), seed=0)


def test_every_evolved_variant_runs_the_real_tool_behind_it(pool, ml100k_env):
    reg = build_registry(ml100k_env)
    for core, args in CORE_CALLS.items():
        expected = reg.call(core, args)
        assert expected.ok, (core, expected.error)
        variants = pool.variants[core]
        assert variants[0].origin == "original" and len(variants) == 7
        for v in variants:
            offered = OfferedTools([v], build_registry(ml100k_env.session()))
            out = offered.call(v.name, {v.offered_param(k): val for k, val in args.items()})
            assert out.ok and out.result == expected.result, (v.name, out.error)
    names = [v.name for v in pool.all_variants()] + [d.name for d in pool.distractors]
    assert len(names) == len(set(names)), "every offered name is unique"
    assert any(v.params for v in pool.all_variants()), "some parameters are renamed"
    assert any(v.domain == "books" for v in pool.all_variants())


def test_variants_use_catalog_enums_and_hold_out_a_quarter(pool, ml100k_env):
    genres = list(ml100k_env.catalog.all_genres)
    enums = [
        p.get("items", p).get("enum")
        for v in pool.all_variants()
        for p in v.schema["function"]["parameters"]["properties"].values()
    ]
    assert genres in enums
    evolved = [v for v in pool.all_variants() if v.origin == "evolved"]
    assert sum(v.heldout for v in evolved) == round(0.25 * 6) * len(pool.variants)
    rng = random.Random(0)
    assert not any(pool.for_core("get_item", "train", "books", rng).heldout for _ in range(50))
    assert all(pool.for_core("get_item", "test", "books", rng, heldout=True).heldout for _ in range(20))


def test_extra_variants_add_composed_names_and_leave_the_smaller_pool_as_it_was(pool, ml100k_env):
    from recagent.synth.tool_pool import DOMAIN_NOUNS, composed_names

    big = build_pool(
        build_registry(ml100k_env), list(ml100k_env.catalog.all_genres), seed=0, extra_variants_per_tool=20
    )
    reg = build_registry(ml100k_env)
    for core, small in pool.variants.items():
        grown = big.variants[core]
        # the same seed's smaller pool, held-out flags included, is a prefix: bigger data never trains on its held-out
        assert [(v.name, v.heldout, v.schema) for v in grown[: len(small)]] == [
            (v.name, v.heldout, v.schema) for v in small
        ]
        extra = grown[len(small) :]
        assert len(extra) == 20 and sum(v.heldout for v in extra) == 5
        named = {t.replace("{s}", s).replace("{n}", n) for t in composed_names(core) for s, n in DOMAIN_NOUNS.values()}
        assert {v.name for v in extra} <= named
        if core not in CORE_CALLS:
            continue
        v = extra[-1]  # an extra variant runs its real tool too
        args = CORE_CALLS[core]
        got = OfferedTools([v], build_registry(ml100k_env.session())).call(
            v.name, {v.offered_param(k): val for k, val in args.items()}
        )
        assert got.ok and got.result == reg.call(core, args).result, (v.name, got.error)
    names = [v.name for v in big.all_variants()] + [d.name for d in big.distractors]
    assert len(names) == len(set(names)), "every offered name is unique"


def test_added_exclusion_parameter_is_implemented_and_errors_speak_offered_names(pool, ml100k_env):
    v = next(
        v
        for v in pool.all_variants()
        if EXCLUDE_PARAM in v.schema["function"]["parameters"]["properties"] and v.core == "popular_items"
    )
    offered = OfferedTools([v, pool.distractors[0]], build_registry(ml100k_env.session()))
    k = v.offered_param("k")
    full = offered.call(v.name, {k: 5}).result["items"]
    out = offered.call(v.name, {k: 5, EXCLUDE_PARAM: [full[0]["item_id"], full[2]["item_id"]]}).result["items"]
    assert len(out) == 5 and [it["item_id"] for it in out[:3]] == [
        full[1]["item_id"],
        full[3]["item_id"],
        full[4]["item_id"],
    ]
    assert [it["rank"] for it in out] == [1, 2, 3, 4, 5]
    bad = offered.call(v.name, {k: 0})
    assert not bad.ok and bad.error.field == k and bad.error.message.startswith(f"{k}:")
    d = pool.distractors[0]
    assert offered.call(d.name, {}).error.error == "not_implemented"
    assert offered.call("nope", {}).error.error == "unknown_tool"


def hand_sample(calls: list[list[tuple[str, dict]]], user: str, tools: list[dict], variants: dict) -> Sample:
    msgs = [{"role": "user", "content": user}]
    n = 0
    for step in calls:
        tcs = []
        for name, args in step:
            n += 1
            tcs.append({"id": f"c{n}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}})
        msgs.append({"role": "assistant", "content": None, "tool_calls": tcs})
        for tc, (name, _) in zip(tcs, step):
            result = {"items": [{"item_id": f"i{tc['id']}", "title": "T", "year": 1990, "genres": []}]}
            msgs.append(
                {
                    "role": "tool",
                    "tool_call_id": tc["id"],
                    "name": name,
                    "content": result_text(result),
                    "artifact": json.dumps(result),
                }
            )
    msgs.append({"role": "assistant", "content": "done"})
    return Sample(msgs, tools, "chain", "train", "1", None, "movies", variants, 0)


def test_complexity_features_and_levels_on_hand_built_dialogs():
    def tool(name, desc):
        return {
            "type": "function",
            "function": {
                "name": name,
                "description": desc,
                "parameters": {"type": "object", "properties": {"q": {}}},
            },
        }

    tools = [
        tool("search", "search films by description"),
        tool("similar", "similar films"),
        tool("rank", "rank films"),
    ]
    variants = {t["function"]["name"]: {"core": "x", "params": {}} for t in tools}
    easy = hand_sample([[("search", {"q": "x"})]], "search films by description please", tools, variants)
    f = features(easy)
    assert (f["calls"], f["depth"], f["tools_offered"], f["user_turns"]) == (1, 1, 3, 1)
    assert f["phrasing_distance"] == 0.0 and structural_level(f)[0] == "easy"
    chain = hand_sample(
        [[("search", {"q": "x"})], [("similar", {"q": "x"})], [("rank", {"q": "x"})]],
        "something cosy for a rainy evening",
        tools,
        variants,
    )
    chain.messages[3]["tool_calls"][0]["function"]["arguments"] = json.dumps({"item_ids": ["ic1"]})
    chain.messages[5]["tool_calls"][0]["function"]["arguments"] = json.dumps({"item_ids": ["ic2"]})
    f = features(chain)
    assert (f["calls"], f["depth"]) == (3, 3) and f["phrasing_distance"] == 1.0
    assert structural_level(f) == ("hard", 2 + 3.0 + 1.0)
    assert [loss_level(x, 0.3, 1.0) for x in (0.1, 0.5, 2.0)] == ["easy", "medium", "hard"]


def test_judge_verdicts_are_parsed_never_evaluated():
    assert parse_verdict('{"matches_intent": true, "reason": "ok"}') == {"passed": True, "reason": "ok"}
    assert parse_verdict('```json\n{"matches_intent": false, "reason": "wrong genre"}\n```')["passed"] is False
    for bad in ("yes", '{"matches_intent": "true"}', "__import__('os').system('x')", "{'matches_intent': True}"):
        v = parse_verdict(bad)
        assert v["passed"] is False and "not the expected JSON" in v["reason"]


def test_judge_layer_rejects_dialogs_the_model_disagrees_with(ml100k_env, tmp_path):
    replies = [
        completion({"content": '{"matches_intent": true, "reason": "fine"}'}),
        completion({"content": '{"matches_intent": false, "reason": "asked for comedy, searched horror"}'}),
        completion({"content": "I think so"}),
    ] * 4
    stub = Stub(replies)
    try:
        judge = PolicyConfig(kind="openai", model="judge", base_url=stub.url, max_retries=0)
        cfg = SynthConfig.build(n=4, seed=4, judge=judge.model_dump(), kinds={"single": 1}, exports=[])
        result = synthesize(cfg, tmp_path, env=ml100k_env, progress=False)
    finally:
        stub.close()
    rejected = [json.loads(line) for line in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert result.rejected == len(rejected) >= 4
    reasons = {r for row in rejected for r in row["meta"]["reasons"]}
    assert "judge: asked for comedy, searched horror" in reasons
    assert any("not the expected JSON" in r for r in reasons)
    kept = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert all(r["meta"]["verification"]["judge"]["passed"] for r in kept)
    assert "USER:" in stub.requests[0]["messages"][1]["content"], "the judge reads the conversation"


def test_judge_server_down_stops_the_run_with_one_message(ml100k_env, tmp_path):
    from recagent.errors import RecagentError

    judge = PolicyConfig(kind="openai", model="judge", base_url="http://127.0.0.1:9/v1", max_retries=0)
    cfg = SynthConfig.build(n=10, judge=judge.model_dump(), kinds={"single": 1}, exports=[])
    with pytest.raises(RecagentError, match="judge unavailable: cannot reach the policy server"):
        synthesize(cfg, tmp_path, env=ml100k_env, progress=False)
    assert len((tmp_path / "rejected.jsonl").read_text().splitlines()) == 3, "work done so far is kept"


def test_llm_generator_plays_user_and_assistant_against_the_real_tools(ml100k_env, tmp_path):
    from recagent.synth.programmatic import PLANS

    stub = Stub([])
    try:
        cfg = SynthConfig.build(
            n=1,
            seed=1,
            generator="llm",
            kinds={"single": 1},
            test_fraction=0.0,
            tools_per_dialog=(1, 1),
            max_distractors=0,
            variants_per_tool=0,
            exports=[],
            llm={"kind": "openai", "model": "gen", "base_url": stub.url, "max_retries": 0},
        )
        synth = Synthesizer(cfg, ml100k_env)
        req = synth.request(0)
        tool = req.rng.choice(PLANS["single"])[1][0]  # the tool generate() offers for attempt 0 (same seeded draws)
        args = {
            "search_items": {"query": "funny films from the 1990s", "k": 3},
            "filter_items": {"genres": ["Comedy"], "k": 3},
            "popular_items": {"genre": "Comedy", "k": 3},
            "retrieve_for_user": {"user_id": req.task.user_id, "k": 3},
            "get_item": {"title": "Toy Story"},
            "get_user_history": {"user_id": req.task.user_id, "last_n": 3},
        }[tool]
        result = build_registry(ml100k_env.session()).call(tool, args).result
        items = result.get("items") or [result["item"]]
        answer = "Try " + "; ".join(f"{it['title']} [{it['item_id']}]" for it in items[:2])
        stub.replies[:] = [
            completion({"content": "I'd love a funny film from the nineties."}),  # the user agent
            completion(tool_call_message(tool, json.dumps(args))),  # the assistant agent calls a tool
            completion({"content": answer}),  # and answers from the real result
        ]
        result = synth.run(tmp_path, progress=False)
    finally:
        stub.close()
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert result.accepted["train"] == 1 and rows[0]["meta"]["generator"] == "llm"
    msgs = rows[0]["messages"]
    assert msgs[1] == {"role": "user", "content": "I'd love a funny film from the nineties."}
    assert msgs[2]["tool_calls"][0]["function"] == {"name": tool, "arguments": json.dumps(args)}
    out = build_registry(ml100k_env.session()).call(tool, args)
    assert json.loads(msgs[3]["artifact"]) == out.result and msgs[3]["content"] == out.content()
    assert rows[0]["meta"]["kind"] == "single"
    secret = ml100k_env.catalog.titles[ml100k_env.catalog.index_of[rows[0]["meta"]["target_item"]]]
    brief = stub.requests[0]["messages"][1]["content"]
    assert "never say it" in brief and stub.requests[1]["tools"], "the assistant agent was offered the tools"
    assert secret.split(",")[0] in brief  # the user agent is told the secret only to avoid it


def test_cli_synth_runs_resumes_and_rebuilds_the_report(dataset_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["synth", "--n", "25", "--out", str(out), "--dataset", dataset_dir, "--no-progress"]) == 0
    assert "done: " in capsys.readouterr().out
    n = sum(1 for f in ("train", "test") for _ in (out / f"{f}.jsonl").read_text().splitlines())
    assert n == 25
    assert main(["synth", "--n", "30", "--out", str(out), "--dataset", dataset_dir, "--no-progress"]) == 0
    assert sum(1 for f in ("train", "test") for _ in (out / f"{f}.jsonl").read_text().splitlines()) == 30
    (out / "report.md").unlink()
    assert main(["synth", "--out", str(out), "--dataset", dataset_dir, "--report-only", "-o", "n=30"]) == 0
    assert (out / "report.md").is_file()
    capsys.readouterr()
    assert main(["synth", "--out", str(out), "--dataset", dataset_dir, "-o", "kinds.monologue=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown kind(s) ['monologue']" in err and "Traceback" not in err


@pytest.mark.slow
def test_target_model_loss_labels_complexity_on_assistant_tokens_only(ml100k_env, local_checkpoint, tmp_path):
    from recagent.synth.complexity import LossScorer

    cfg = SynthConfig.build(
        n=6, seed=2, target_model=str(local_checkpoint), loss_easy_below=0.5, loss_hard_above=2.0, exports=[]
    )
    synth = Synthesizer(cfg, ml100k_env)
    synth.run(tmp_path, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    rows += [json.loads(line) for line in (tmp_path / "test.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    for r in rows:
        c = r["meta"]["complexity"]
        assert c["source"] == "target_model" and c["loss"] > 0 and c["structural_level"] in ("easy", "medium", "hard")
        assert c["level"] == loss_level(c["loss"], 0.5, 2.0)
    scorer: LossScorer = synth.scorer
    sample = Sample.from_row(rows[0])
    ids, labels = scorer.token_labels(sample)
    learned = scorer.tok.decode([t for t, lab in zip(ids, labels) if lab != -100])
    from recagent.agents.prompt_format import render_openai_messages

    expected = "".join(
        t["content"] + "<|im_end|>\n"
        for t in render_openai_messages(sample.messages, sample.tools)
        if t["role"] == "assistant"
    )
    assert learned.replace("\n", "") == expected.replace("\n", "")


def test_every_id_parameter_of_every_variant_is_grounded_by_the_local_grammar(pool):
    # The local policy's grammar narrows id arguments to the conversation's ids by the tools' id types (under any
    # offered name); a variant parameter that lost its type would let the model invent ids there.
    from recagent.agents.policies.grammar import CallIds, ground_call_arguments

    id_params = {"user_id", "item_id", "item_ids", "history", EXCLUDE_PARAM}
    checked = set()
    for v in pool.all_variants():
        props = v.schema["function"]["parameters"]["properties"]
        narrowed = ground_call_arguments([v.schema], CallIds(users=("1",), items=("2",)))[0]
        for name, schema in props.items():
            if v.core_param(name) in id_params:
                assert narrowed["function"]["parameters"]["properties"][name] != schema, (v.name, name)
                checked.add(v.core_param(name))
    assert checked == id_params, f"the pool offers every kind of id parameter: {checked}"


def test_every_saved_set_and_count_parameter_of_every_variant_is_grounded_by_the_local_grammar(pool):
    # As ids: a variant's set-reading and count parameters keep their types under any name, so the grammar can
    # narrow them to the conversation's saved sets and counts
    from recagent.agents.policies.grammar import CallIds, ground_call_arguments

    grounded_params = {"candidates", "name", "k", "last_n"}
    checked = set()
    for v in pool.all_variants():
        props = v.schema["function"]["parameters"]["properties"]
        narrowed = ground_call_arguments([v.schema], CallIds(sets=("pool",), counts=(10, 20)))[0]
        for name, schema in props.items():
            if v.core_param(name) in grounded_params:
                assert narrowed["function"]["parameters"]["properties"][name] != schema, (v.name, name)
                checked.add(v.core_param(name))
    assert checked == grounded_params, f"the pool offers every kind of set and count parameter: {checked}"


def test_every_year_parameter_of_every_variant_is_grounded_by_the_local_grammar(pool):
    # As counts: a variant's year parameters keep their type (schemas.Year) under any name, so the grammar can narrow
    # them to the conversation's years, or leave them out where nobody wrote one
    from recagent.agents.policies.grammar import CallIds, ground_call_arguments

    year_params = {"year_min", "year_max"}
    checked = set()
    for v in pool.all_variants():
        props = v.schema["function"]["parameters"]["properties"]
        narrowed = ground_call_arguments([v.schema], CallIds(years=(1980, 1989)))[0]["function"]["parameters"]
        dropped = ground_call_arguments([v.schema], CallIds())[0]["function"]["parameters"]
        for name, schema in props.items():
            if v.core_param(name) in year_params:
                assert narrowed["properties"][name] != schema, (v.name, name)
                assert name not in dropped["properties"], (v.name, name)
                checked.add(v.core_param(name))
    assert checked == year_params, f"the pool offers every kind of year parameter: {checked}"
