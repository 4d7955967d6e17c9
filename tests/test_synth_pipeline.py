"""The synthesis pipeline end to end on ML-100K: output format, splits, leakage, exports, report, resume."""

from __future__ import annotations

import json
import re

import pytest

from recagent.errors import ConfigError
from recagent.synth.config import SynthConfig
from recagent.synth.leakage import SynthLeakageError, check_leakage, find_leaks, held_items
from recagent.synth.pipeline import Synthesizer, read_rows, synthesize
from recagent.synth.sample import KINDS, Sample
from recagent.synth.verify import CHECKS


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_timings(row):
    """A row with step latencies (wall-clock, not content) removed."""
    row = json.loads(json.dumps(row))
    for s in row["meta"].get("steps", []):
        s.pop("latency_ms", None)
    return row


@pytest.fixture(scope="module")
def run(ml100k_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    result = synthesize(SynthConfig.build(n=150, seed=3), out, env=ml100k_env, progress=False)
    return out, result


def test_run_writes_verified_train_and_test_dialogs_of_every_kind(run):
    out, result = run
    train, test = rows(out / "train.jsonl"), rows(out / "test.jsonl")
    assert len(train) + len(test) == 150 and test, "n verified dialogs, some of them test"
    assert result.accepted == {"train": len(train), "test": len(test), "validation": 0}
    assert not (out / "validation.jsonl").read_text(), "validation_n=0: no validation dialogs"
    for r in train + test:
        assert set(r) == {"id", "messages", "tools", "meta"}
        assert r["meta"]["verification"]["passed"] is True
        assert all(c["passed"] for c in r["meta"]["verification"]["checks"])
        assert {c["name"] for c in r["meta"]["verification"]["checks"]} == set(CHECKS)
    assert {r["meta"]["kind"] for r in train} == set(KINDS)
    assert len({r["id"] for r in train + test}) == len(train + test), "deduplicated"
    levels = {r["meta"]["complexity"]["level"] for r in train + test}
    assert levels == {"easy", "medium", "hard"}


def test_messages_and_tools_are_openai_format_and_load_with_datasets(run):
    from datasets import load_dataset

    out, _ = run
    ds = load_dataset("json", data_files={"train": str(out / "train.jsonl"), "test": str(out / "test.jsonl")})
    row = ds["train"][0]
    assert set(ds["train"].column_names) >= {"messages", "tools"}
    assert all(t["type"] == "function" and t["function"]["parameters"]["type"] == "object" for t in row["tools"])
    first = rows(out / "train.jsonl")[0]
    # datasets keeps every tool schema exactly (varying parameter objects are not null-padded)
    assert [t["function"]["parameters"] for t in row["tools"]] == [t["function"]["parameters"] for t in first["tools"]]
    for r in rows(out / "train.jsonl"):
        for m in r["messages"]:
            assert m["role"] in ("system", "user", "assistant", "tool")
            for tc in m.get("tool_calls") or []:
                assert tc["type"] == "function" and isinstance(json.loads(tc["function"]["arguments"]), dict)


def test_train_and_test_never_share_users_and_heldout_tools_stay_in_test(run, ml100k_split):
    out, _ = run
    train = [Sample.from_row(r) for r in rows(out / "train.jsonl")]
    test = [Sample.from_row(r) for r in rows(out / "test.jsonl")]
    assert not {s.user_id for s in train} & {s.user_id for s in test}
    assert not any(rec["heldout"] for s in train for rec in s.tool_variants.values())
    assert any(rec["heldout"] for s in test for rec in s.tool_variants.values()), "held-out variants are tested"
    # a test dialog's target is the user's leave-one-out test item
    ds = ml100k_split.dataset
    test_item = {ds.users.ids[u]: ds.items.ids[i] for u, i in zip(ml100k_split.test.users, ml100k_split.test.items)}
    assert all(s.target_item == test_item[s.user_id] for s in test)
    check_leakage(train, test, ml100k_split)


def test_leakage_check_catches_a_training_answer_with_the_users_test_item(run, ml100k_split):
    out, _ = run
    train = [Sample.from_row(r) for r in rows(out / "train.jsonl")]
    test = [Sample.from_row(r) for r in rows(out / "test.jsonl")]
    ds = ml100k_split.dataset
    victim = next(s for s in train if s.kind != "no_tool")
    u = ds.users.index_of[victim.user_id]
    held = ds.items.ids[int(ml100k_split.test.items[ml100k_split.test.users == u][0])]
    victim.messages[-1] = {"role": "assistant", "content": f"Try {ds.items.titles[ds.items.index_of[held]]} [{held}]"}
    leaks = find_leaks(train, test, ml100k_split)
    assert any(f"valid/test items ['{held}']" in line for line in leaks)
    with pytest.raises(SynthLeakageError, match="leaks evaluation data"):
        check_leakage(train, test, ml100k_split)
    moved = test[0]
    moved_copy = Sample.from_row(moved.to_row())
    moved_copy.split = "train"
    assert any("appear in both train and test" in line for line in find_leaks([moved_copy], test, ml100k_split))


def test_every_synthesized_answer_passes_the_answer_filter_as_it_is_written(run, ml100k_env):
    # the filter the local policy decodes answers under (cite each item once per section, never run on, end a
    # citation's line) must let every synthesized answer through, prefix by prefix, citing only the items it cites
    from recagent.agents.policies.grammar import cited_items, filter_cut

    out, _ = run
    catalog, answers = ml100k_env.catalog, 0
    for row in rows(out / "train.jsonl") + rows(out / "test.jsonl"):
        for m in row["messages"]:
            text = m.get("content") or ""
            if m["role"] != "assistant" or m.get("tool_calls"):
                continue
            items = cited_items(text, catalog)
            if not items:
                continue
            answers += 1
            assert len(items) == len(set(re.findall(r"\[(\d+)\] ", text))), text  # every cited id is a catalog item
            assert filter_cut(text, items) is None, text
    assert answers > 50


def test_exports_and_report(run):
    out, _ = run
    sharegpt = json.loads((out / "exports" / "train.sharegpt.json").read_text())
    assert sharegpt and {c["from"] for d in sharegpt for c in d["conversations"]} >= {
        "human",
        "gpt",
        "function_call",
        "observation",
    }
    toolace = json.loads((out / "exports" / "train.toolace.json").read_text())
    assert any(c["value"].startswith("[") and c["from"] == "assistant" for d in toolace for c in d["conversations"])
    bfcl = rows(out / "exports" / "test.bfcl.jsonl")
    assert bfcl
    for e in bfcl:
        names = {f["name"] for f in e["function"]}
        for truth in e["ground_truth"]:
            ((name, allowed),) = truth.items()
            assert name in names and all(isinstance(v, list) and v for v in allowed.values())
        assert e["question"][-1]["role"] in ("user", "tool")
    assert json.loads((out / "dataset.json").read_text())["name"] == "ml-100k"
    report = json.loads((out / "report.json").read_text())
    assert report["verified"]["total"] == 150
    assert set(report["check_pass_rate"]) == set(CHECKS)
    assert (out / "report.md").read_text().startswith("# Synthesis report")
    assert (out / "report_mix.png").stat().st_size > 1000 and (out / "report_checks.png").stat().st_size > 1000


def test_an_interrupted_run_resumes_without_losing_or_duplicating(ml100k_env, tmp_path, monkeypatch):
    cfg = SynthConfig.build(n=40, seed=5, exports=[])
    whole = tmp_path / "whole"
    synthesize(cfg, whole, env=ml100k_env, progress=False)

    cut = tmp_path / "cut"
    synth = Synthesizer(cfg, ml100k_env)
    real_make, calls = synth.make, {"n": 0}

    def make_then_stop(*a, **kw):
        calls["n"] += 1
        if calls["n"] > 17:
            raise KeyboardInterrupt
        return real_make(*a, **kw)

    monkeypatch.setattr(synth, "make", make_then_stop)
    with pytest.raises(KeyboardInterrupt):
        synth.run(cut, progress=False)
    with (cut / "train.jsonl").open("a") as f:  # a write torn by the kill
        f.write('{"id": "torn", "messages": [')
    synthesize(cfg, cut, env=ml100k_env, progress=False)
    for name in ("train", "test", "rejected", "skipped"):
        a = [without_timings(r) for r in read_rows(whole / f"{name}.jsonl")]
        b = [without_timings(r) for r in read_rows(cut / f"{name}.jsonl")]
        assert a == b, name


def test_validation_dialogs_are_of_users_no_training_dialog_has_and_leave_train_and_test_as_they_were(
    ml100k_env, ml100k_split, tmp_path, monkeypatch
):
    from recagent.synth.tasks import TaskSampler

    plain = synthesize(SynthConfig.build(n=30, seed=4, exports=[]), tmp_path / "plain", env=ml100k_env, progress=False)
    cfg = SynthConfig.build(n=30, seed=4, exports=[], validation_n=12)
    whole = synthesize(cfg, tmp_path / "whole", env=ml100k_env, progress=False)
    synth = Synthesizer(cfg, ml100k_env)  # killed in the middle of the validation pass, then resumed
    real_make, calls = synth.make, {"validation": 0}

    def make_then_stop(*a, **kw):
        calls["validation"] += bool(kw.get("validation"))
        if calls["validation"] > 5:
            raise KeyboardInterrupt
        return real_make(*a, **kw)

    monkeypatch.setattr(synth, "make", make_then_stop)
    with pytest.raises(KeyboardInterrupt):
        synth.run(tmp_path / "cut", progress=False)
    cut = synthesize(cfg, tmp_path / "cut", env=ml100k_env, progress=False)
    assert whole.accepted == cut.accepted == {**plain.accepted, "validation": 12}
    assert json.loads((whole.out / "report.json").read_text())["verified"]["validation"] == 12
    for name in ("train", "test", "validation", "rejected", "skipped"):
        a = [without_timings(r) for r in read_rows(whole.out / f"{name}.jsonl")]
        assert a == [without_timings(r) for r in read_rows(cut.out / f"{name}.jsonl")], name
        if name in ("train", "test"):  # the validation pass draws from its own seeds
            assert a == [without_timings(r) for r in read_rows(plain.out / f"{name}.jsonl")], name
    train = [Sample.from_row(r) for r in rows(whole.out / "train.jsonl")]
    validation = [Sample.from_row(r) for r in rows(whole.out / "validation.jsonl")]
    sampler = TaskSampler(ml100k_split, cfg.seed, cfg.test_user_fraction, cfg.min_history)
    assert {s.split for s in validation} == {"validation"}
    assert all(sampler.is_test_user(s.user_id) for s in validation)
    assert not {s.user_id for s in validation} & {s.user_id for s in train}
    held = held_items(ml100k_split)
    assert not any(s.target_item in held.get(s.user_id, ()) for s in validation), "targets are training items"
    assert not any(rec.get("heldout") for s in validation for rec in s.tool_variants.values()), "seen tools only"
    moved = Sample.from_row(train[0].to_row())
    moved.user_id = validation[0].user_id
    with pytest.raises(SynthLeakageError, match="appear in both train and validation"):
        check_leakage(train + [moved], [], ml100k_split, validation)


def test_the_same_seed_gives_the_same_dialogs_and_another_seed_does_not(ml100k_env, tmp_path):
    a = synthesize(SynthConfig.build(n=15, seed=9, exports=[]), tmp_path / "a", env=ml100k_env, progress=False)
    b = synthesize(SynthConfig.build(n=15, seed=9, exports=[]), tmp_path / "b", env=ml100k_env, progress=False)
    c = synthesize(SynthConfig.build(n=15, seed=10, exports=[]), tmp_path / "c", env=ml100k_env, progress=False)
    ids = [[r["id"] for r in rows(x.out / "train.jsonl") + rows(x.out / "test.jsonl")] for x in (a, b, c)]
    assert ids[0] == ids[1] and ids[0] != ids[2]


def test_resuming_with_other_generation_settings_is_refused(ml100k_env, tmp_path):
    synthesize(SynthConfig.build(n=5, seed=1, exports=[]), tmp_path, env=ml100k_env, progress=False)
    with pytest.raises(ConfigError, match="different settings \\(seed\\)"):
        synthesize(SynthConfig.build(n=5, seed=2, exports=[]), tmp_path, env=ml100k_env, progress=False)
    more = synthesize(SynthConfig.build(n=8, seed=1, exports=[]), tmp_path, env=ml100k_env, progress=False)
    assert sum(more.accepted.values()) == 8, "raising n extends a run"


def test_the_complexity_mix_is_met_exactly(ml100k_env, tmp_path):
    cfg = SynthConfig.build(n=30, seed=2, mix={"easy": 0.2, "medium": 0.3, "hard": 0.5}, exports=[])
    synthesize(cfg, tmp_path, env=ml100k_env, progress=False)
    levels = [r["meta"]["complexity"]["level"] for r in rows(tmp_path / "train.jsonl") + rows(tmp_path / "test.jsonl")]
    assert {lv: levels.count(lv) for lv in ("easy", "medium", "hard")} == {"easy": 6, "medium": 9, "hard": 15}
    skipped = rows(tmp_path / "skipped.jsonl")
    assert any(r["reason"] == "level_full" for r in skipped)


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="unknown kind"):
        SynthConfig.build(kinds={"single": 1, "monologue": 1})
    with pytest.raises(ConfigError, match="generator=llm needs an llm section"):
        SynthConfig.build(generator="llm")
    with pytest.raises(ConfigError, match="mix: unknown level"):
        SynthConfig.build(mix={"trivial": 1})
    assert SynthConfig.build(n=7, mix={"easy": 1, "hard": 1}).quotas() == {"easy": 4, "medium": 0, "hard": 3}


def test_the_committed_example_is_in_the_current_format(ml100k_env):
    from pathlib import Path

    from recagent.synth.verify import VerifyContext, verify
    from recagent.tools.recommender_tools import build_registry

    path = Path(__file__).resolve().parents[1] / "examples" / "synth_sample.jsonl"
    samples = [Sample.from_row(json.loads(line)) for line in path.read_text().splitlines()]
    # the example predates list-wise dialogs (kind listwise); every other kind is in it
    kinds = set(KINDS) - {"listwise"}
    assert len(samples) >= 24 and {s.kind for s in samples} == kinds - ({"no_tool"} - {s.kind for s in samples})
    # the checks that do not depend on how this machine's recommenders were trained
    static = {k: v for k, v in CHECKS.items() if k not in ("executes", "same_result")}
    ctx = VerifyContext(ml100k_env, build_registry)
    for s in samples:
        v = verify(s, ctx, static)
        assert v.passed, (s.id, v.failures())


def test_serving_tool_dialogs_offer_exactly_the_chat_agents_tool_block(ml100k_env, tmp_path):
    from recagent.agents.prompt_format import render_tools
    from recagent.tools.recommender_tools import build_registry

    cfg = SynthConfig.build(n=24, seed=3, serving_tools_share=0.5, exports=[])
    synthesize(cfg, tmp_path, env=ml100k_env, progress=False)
    rows = [json.loads(line) for f in ("train.jsonl", "test.jsonl") for line in (tmp_path / f).read_text().splitlines()]
    served = render_tools(build_registry(ml100k_env.session()).openai_schemas())
    serving = [r for r in rows if render_tools(r["tools"]) == served]
    assert 0.25 * len(rows) <= len(serving) <= 0.75 * len(rows), "about half offer the agent's own tool block"
    assert all(
        json.loads(r["meta"]["tool_variants"]).keys() == {t["function"]["name"] for t in r["tools"]} for r in serving
    )
    assert len(serving) < len(rows), "the others keep their variants and distractors"
