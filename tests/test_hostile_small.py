"""Issue 18's small ones: empty candidate sets, hostile `tools call` input, a SIGKILLed synth run, the index preload."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from langchain_core.messages import AIMessage

from recagent.agents import Agent, AgentConfig
from recagent.agents.policies.scripted import ScriptedPolicy, call, tool_calls
from recagent.cli.app import main
from recagent.tools.env import ToolEnv, ToolEnvConfig
from recagent.tools.recommender_tools import build_registry

# -- empty candidate sets --------------------------------------------------------------------------------------------


def test_an_empty_candidate_set_filters_ranks_and_shows_as_empty(synthetic_env):
    reg = build_registry(synthetic_env.session())
    made = reg.call("filter_items", {"genres": ["Action"], "year_min": 2100, "save_as": "none_left"})
    assert made.ok and made.result["total_matches"] == 0 and reg.env.buffer.get("none_left") == []
    calls = [
        ("filter_items", {"candidates": "none_left", "genres": ["Comedy"], "save_as": "still_none"}),  # was IndexError
        ("filter_items", {"candidates": "none_left", "exclude_seen_by": 8, "sort_by": "year"}),
        ("filter_items", {"candidates": "still_none", "sort_by": "input"}),
        ("rank_items", {"user_id": 8, "candidates": "none_left"}),
        ("rank_by_preference", {"user_id": 8, "candidates": "none_left", "prefer_genres": ["Drama"], "year_max": 1990}),
        ("get_candidates", {"name": "none_left"}),
    ]
    for name, args in calls:
        out = reg.call(name, args)
        assert out.ok, (name, out.error)
        assert out.result["items"] == [] and out.result["total_matches"] == 0, name


# -- `recagent tools call` with hostile arguments --------------------------------------------------------------------


HOSTILE = [
    ("[" * 1000, "invalid_json", "nest deeper than 32 levels"),
    ('{"k": ' + "7" * 4301 + "}", "invalid_json", "integer of 4301 digits"),
    ('{"k": Infinity}', "invalid_json", "Infinity is not a JSON number"),
    ('{"genre": "\\udc80"}', "invalid_json", "lone surrogate at genre"),
]


def test_tools_call_prints_one_error_line_not_a_traceback(dataset_dir, capsys):
    for args, kind, fragment in HOSTILE:  # one dataset folder for all of them: its models take seconds to train
        code = main(["tools", "call", "popular_items", args, "--dataset", dataset_dir, "--models", "pop"])
        captured = capsys.readouterr()
        assert code == 1, args[:40]
        err = json.loads(captured.out)["error"]  # stdout stays the JSON a script reads
        assert err["error"] == kind and fragment in err["message"], err
        lines = captured.err.strip().splitlines()
        assert lines == [f"error: {kind}: {err['message']}"] and "Traceback" not in captured.err


# -- synth: a run killed with SIGKILL still counts in the report --------------------------------------------------------


def _runs(out: Path) -> list[dict]:
    path = out / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def test_a_sigkilled_synth_run_keeps_its_attempts_and_seconds_for_the_resumed_report(dataset_dir, tmp_path):
    out = tmp_path / "synth"
    cmd = [
        sys.executable,
        "-m",
        "recagent.cli",
        "synth",
        "--n",
        "100000",
        "--out",
        str(out),
        "--dataset",
        dataset_dir,
        "--no-progress",
    ]
    child = subprocess.Popen(cmd, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120  # imports take seconds on a busy 2-core machine
        while time.monotonic() < deadline and child.poll() is None:
            runs = _runs(out)
            if runs and runs[-1]["attempts"] >= 3:
                break
            time.sleep(0.05)
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        child.send_signal(signal.SIGKILL)  # no finally, no atexit: only what was on disk survives
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        child.stderr.close()
    killed = _runs(out)
    assert len(killed) == 1 and killed[0]["finished"] is False and killed[0]["attempts"] >= 3
    assert killed[0]["seconds"] > 0

    # resume: one more verified dialog, then the report over both invocations
    verified = sum(len((out / f"{s}.jsonl").read_text().splitlines()) for s in ("train", "test"))
    assert main(["synth", "--n", str(verified + 1), "--out", str(out), "--dataset", dataset_dir, "--no-progress"]) == 0
    runs = _runs(out)
    assert [r["run"] for r in runs] == [0, 1] and runs[0] == killed[0] and runs[1]["finished"] is True
    lines = sum(len((out / f"{s}.jsonl").read_text().splitlines()) for s in ("train", "test", "rejected", "skipped"))
    # every attempt line is one run's attempt; the kill may land between a line and its run record (one line)
    assert lines - (runs[0]["attempts"] + runs[1]["attempts"]) in (0, 1)
    report = json.loads((out / "report.json").read_text())
    seconds = runs[0]["seconds"] + runs[1]["seconds"]
    assert report["seconds"] == round(seconds, 2)  # before the fix, the killed run's seconds were missing
    assert report["verified"]["total"] == verified + 1
    assert report["verified_per_minute"] == round((verified + 1) / seconds * 60, 1)


# -- the search index is preloaded when the agent loads its own tools ------------------------------------------------


def _answer_from_last_result(messages):
    items = next(m for m in reversed(messages) if m.type == "tool").artifact["items"][:2]
    return AIMessage("Try " + "; ".join(f"{it['title']} ({it['year']}) [{it['item_id']}]" for it in items))


def test_an_agent_over_a_given_env_does_not_load_the_index_for_a_turn_without_search(
    synthetic, synthetic_split, synthetic_env, tmp_path
):
    env = ToolEnv(
        synthetic, synthetic_split, synthetic_env.models, ToolEnvConfig(dataset="synthetic")
    )  # nothing shared
    policy = ScriptedPolicy(script=[tool_calls(call("popular_items", {"k": 3})), _answer_from_last_result])
    agent = Agent.from_config(
        AgentConfig(tools=ToolEnvConfig(dataset="synthetic")), policy=policy, env=env, db_path=tmp_path / "s.sqlite"
    )
    try:
        assert agent.index_preload is None
        assert agent.chat("something popular", session="s").recommended
        assert "text" not in env._shared and "encoder" not in env._shared
    finally:
        agent.close()


def test_an_agent_that_loads_its_tools_preloads_the_index_once(dataset_dir, tmp_path, monkeypatch):
    from recagent.tools.index import text_encoder

    made = []

    class CountedEncoder(text_encoder.TextEncoder):
        def __init__(self, *a, **kw):
            made.append(self)
            super().__init__(*a, **kw)

    monkeypatch.setattr(text_encoder, "TextEncoder", CountedEncoder)
    policy = ScriptedPolicy(
        script=[tool_calls(call("search_items", {"query": "a comedy story", "k": 3})), _answer_from_last_result]
    )
    agent = Agent.from_config(
        AgentConfig(tools=ToolEnvConfig(dataset=dataset_dir)), policy=policy, db_path=tmp_path / "s.sqlite"
    )
    try:
        assert agent.index_preload is not None  # started in the background, so from_config did not wait for it
        # a turn that starts while the preload runs waits for it instead of loading a second index and encoder
        r = agent.chat("a comedy", session="s")
        search = next(s for s in r.trace if s.kind == "tool_call")
        assert search.tool == "search_items" and search.valid and r.recommended
        assert not agent.index_preload.is_alive() and len(made) == 1
        env = agent.context.env
        assert env._shared["encoder"] is made[0] and made[0]._model is not None  # the weights are loaded, too
    finally:
        agent.close()


def test_the_scorer_and_the_verifier_refuse_what_the_serving_parser_refuses():
    """The scorer's JSON rule is the parser's: an overflowing number, a lone surrogate or deep nesting is no call."""
    from recagent.evaluation.ast_match import PredictedCall, check_turn

    entry = {
        "ground_truth": [{"popular_items": {"k": [5]}}],
        "function": [
            {"name": "popular_items", "parameters": {"type": "object", "properties": {"k": {"type": "integer"}}}}
        ],
    }
    assert check_turn([PredictedCall("popular_items", '{"k": 5}')], entry).valid
    for bad in ('{"k": 1e999}', '{"k": 5, "x": "\\ud800"}', '{"k": 5, "x": ' + "[" * 40 + "]" * 40 + "}"):
        result = check_turn([PredictedCall("popular_items", bad)], entry)
        assert not result.valid and "not valid JSON" in result.message, bad
