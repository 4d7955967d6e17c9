"""Rollouts: a scripted policy plays real episodes on ML-100K tools; tokens, masks, spans and rewards are checked."""

from __future__ import annotations

import json

import pytest

from recagent.agents.prompt_format import render_openai_messages
from recagent.rl.rewards import RewardWeights
from recagent.rl.rollout import RolloutEnvironment, Task, run_episode, tasks_from_synth
from recagent.tools.recommender_tools import build_registry


@pytest.fixture(scope="module")
def task(ml100k_env):
    tools = build_registry(ml100k_env).openai_schemas()
    return Task(
        task_id="t1",
        messages=[{"role": "system", "content": "You recommend movies."},
                  {"role": "user", "content": "The two most popular war films, please."}],
        tools=tools, tool_variants={}, target="50",
    )  # fmt: skip


def scripted(tokenizer, replies):
    """A policy that writes the given texts, one per turn, each ending with EOS."""
    queue = list(replies)

    def generate(_ids):
        text = queue.pop(0)
        return tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]

    return generate


def test_an_episode_runs_real_tools_and_records_tokens_spans_and_rewards(smollm2_tokenizer, ml100k_env, task):
    tok = smollm2_tokenizer
    call = '<tool_call>{"name": "popular_items", "arguments": {"genre": "War", "k": 2}}</tool_call>'
    answer = "Try Star Wars (1977) [50]."
    ep = run_episode(scripted(tok, [call, answer]), tok, RolloutEnvironment(ml100k_env), task,
                     weights=RewardWeights(success=1.0, contribution=1.0, task=2.0))  # fmt: skip
    assert [r.kind for r in ep.records] == ["tool_call", "answer"]
    assert ep.records[0].result_item_ids[:2] == ["50", "181"], "the real popular_items result"
    # the token stream is exactly the serving prompt format of the final conversation
    full = tok.decode(ep.prompt_ids + ep.completion_ids)
    expected = tok.apply_chat_template(render_openai_messages(ep.messages, task.tools), tokenize=False)
    assert full == expected.rstrip("\n")
    # the policy wrote exactly the two spans; everything between them is observation
    assert len(ep.spans) == 2 and ep.spans[0][0] == 0 and ep.spans[1][1] == len(ep.completion_ids)
    written = [i for i, m in enumerate(ep.action_mask) if m]
    assert written == [*range(*ep.spans[0]), *range(*ep.spans[1])]
    obs = tok.decode([t for t, m in zip(ep.completion_ids, ep.action_mask) if not m])
    assert obs.startswith("\n<|im_start|>user\n<tool_response>") and obs.endswith("<|im_start|>assistant\n")
    # rewards: the call worked (success 1), the target entered at rank 1 (contribution 1), the answer hit it (task 2)
    assert ep.rewards[0].components == {"success": 1.0, "contribution": 1.0, "task": 0.0}
    assert ep.rewards[1].components == {"success": 0.0, "contribution": 0.0, "task": 2.0}


def test_invalid_calls_end_the_episode_with_zero_success(smollm2_tokenizer, ml100k_env, task):
    tok = smollm2_tokenizer
    ep = run_episode(scripted(tok, ['<tool_call>{"name": "popular_items", "arguments": {"genre": "War", k: 2}}</tool_call>']),
                     tok, RolloutEnvironment(ml100k_env), task)  # fmt: skip
    assert [r.kind for r in ep.records] == ["invalid_call"] and "not valid JSON" in ep.records[0].error
    assert ep.rewards[0].components["success"] == 0.0 and len(ep.spans) == 1 and all(ep.action_mask)
    ep = run_episode(scripted(tok, ['<tool_call>{"name": "popular_items", "arguments": {"genre": "Polka"}}</tool_call>',
                                    "Sorry."]), tok, RolloutEnvironment(ml100k_env), task)  # fmt: skip
    assert ep.records[0].kind == "invalid_call" and "unknown genre" in ep.records[0].error
    assert ep.records[1].kind == "answer", "a tool error is shown to the policy, which goes on"


def test_every_rollout_of_a_task_starts_from_the_same_state(smollm2_tokenizer, ml100k_env, task):
    tok = smollm2_tokenizer
    save = '<tool_call>{"name": "popular_items", "arguments": {"k": 3, "save_as": "mine"}}</tool_call>'
    read = '<tool_call>{"name": "get_candidates", "arguments": {"name": "mine"}}</tool_call>'
    environment = RolloutEnvironment(ml100k_env)
    first = run_episode(scripted(tok, [save, read, "ok"]), tok, environment, task)
    assert [r.kind for r in first.records] == ["tool_call", "tool_call", "answer"]
    second = run_episode(scripted(tok, [read, "ok"]), tok, environment, task)
    assert second.records[0].kind == "invalid_call" and "no candidate set named 'mine'" in second.records[0].error


def test_tasks_from_synthesized_dialogs_carry_their_gold_calls(ml100k_env, tmp_path):
    from recagent.synth.config import SynthConfig
    from recagent.synth.pipeline import synthesize

    synthesize(SynthConfig.build(n=10, seed=1, kinds={"single": 1}, exports=[]), tmp_path, env=ml100k_env, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    tasks = tasks_from_synth(rows)
    assert len(tasks) == len(rows)
    for t, r in zip(tasks, rows):
        assert t.messages[-1]["role"] == "user" and t.gold_calls
        first_call = next(m for m in r["messages"] if m.get("tool_calls"))["tool_calls"][0]["function"]
        assert t.gold_calls[0] == {"name": first_call["name"], "arguments": json.loads(first_call["arguments"])}
