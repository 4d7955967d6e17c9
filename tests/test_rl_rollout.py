"""Rollouts: a scripted policy plays real episodes on ML-100K tools; tokens, masks, spans and rewards are checked."""

from __future__ import annotations

import json
from functools import partial

import pytest

from recagent.agents.prompt_format import render_openai_messages
from recagent.rl.rewards import RewardWeights
from recagent.rl.rollout import (
    Generated,
    RolloutEnvironment,
    Task,
    generate_turns,
    run_episode,
    run_episodes,
    tasks_from_synth,
)
from recagent.rl.vllm_turns import VLLMTurns
from recagent.tools.recommender_tools import build_registry
from tests.scripted_batch_policy import ScriptedBatchPolicy


@pytest.fixture(scope="module")
def task(ml100k_env):
    tools = build_registry(ml100k_env).openai_schemas()
    return Task(
        task_id="t1",
        messages=[
            {"role": "system", "content": "You recommend movies."},
            {"role": "user", "content": "The two most popular war films, please."},
        ],
        tools=tools,
        tool_variants={},
        target="50",
    )


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
    ep = run_episode(
        scripted(tok, [call, answer]),
        tok,
        RolloutEnvironment(ml100k_env),
        task,
        weights=RewardWeights(success=1.0, contribution=1.0, task=2.0),
    )
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
    ep = run_episode(
        scripted(tok, ['<tool_call>{"name": "popular_items", "arguments": {"genre": "War", k: 2}}</tool_call>']),
        tok,
        RolloutEnvironment(ml100k_env),
        task,
    )
    assert [r.kind for r in ep.records] == ["invalid_call"] and "not valid JSON" in ep.records[0].error
    assert ep.rewards[0].components["success"] == 0.0 and len(ep.spans) == 1 and all(ep.action_mask)
    ep = run_episode(
        scripted(tok, ['<tool_call>{"name": "popular_items", "arguments": {"genre": "Polka"}}</tool_call>', "Sorry."]),
        tok,
        RolloutEnvironment(ml100k_env),
        task,
    )
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


WAR = '<tool_call>{"name": "popular_items", "arguments": {"genre": "War", "k": 2}}</tool_call>'
SAVE = '<tool_call>{"name": "popular_items", "arguments": {"k": 3, "save_as": "mine"}}</tool_call>'
READ = '<tool_call>{"name": "get_candidates", "arguments": {"name": "mine"}}</tool_call>'


def test_lockstep_rollouts_batch_the_live_episodes_and_match_one_at_a_time(smollm2_tokenizer, ml100k_env, task):
    tok = smollm2_tokenizer
    scripts = [[WAR, "Try Star Wars (1977) [50]."], ["Nothing to call."], [SAVE, READ, "ok"]]
    policy = ScriptedBatchPolicy(tok, scripts)
    batch = run_episodes(policy, tok, [RolloutEnvironment(ml100k_env) for _ in scripts], [task] * 3)
    assert policy.calls == [3, 2, 1], "each round is one call for the episodes still playing"
    for script, ep in zip(scripts, batch):
        alone = run_episode(scripted(tok, script), tok, RolloutEnvironment(ml100k_env), task)
        assert ep.completion_ids == alone.completion_ids and ep.action_mask == alone.action_mask
        assert ep.spans == alone.spans and [r.total for r in ep.rewards] == [r.total for r in alone.rewards]
    assert [r.kind for r in batch[2].records] == ["tool_call", "tool_call", "answer"]


def test_episodes_played_together_do_not_share_state(smollm2_tokenizer, ml100k_env, task):
    tok = smollm2_tokenizer  # the second episode reads a set the first one saved in the same round: it must not exist
    eps = run_episodes(
        ScriptedBatchPolicy(tok, [[SAVE, "ok"], [WAR, READ, "ok"]]),
        tok,
        [RolloutEnvironment(ml100k_env) for _ in range(2)],
        [task] * 2,
    )
    assert eps[0].records[0].kind == "tool_call"
    assert eps[1].records[1].kind == "invalid_call" and "no candidate set named 'mine'" in eps[1].records[1].error
    with pytest.raises(ValueError, match="one environment of its own"):
        shared = RolloutEnvironment(ml100k_env)
        run_episodes(ScriptedBatchPolicy(tok, [["a"], ["b"]]), tok, [shared, shared], [task] * 2)


def test_sampling_logprobs_follow_the_tokens_and_observations_get_none(smollm2_tokenizer, ml100k_env, task):
    tok = smollm2_tokenizer
    turns = [
        tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in (WAR, "Try Star Wars (1977) [50].")
    ]
    queue = [Generated(ids, [-0.5] * len(ids)) for ids in turns]
    ep = run_episodes(lambda batch: [queue.pop(0) for _ in batch], tok, [RolloutEnvironment(ml100k_env)], [task])[0]
    assert len(ep.sampling_logprobs) == len(ep.completion_ids)
    assert all(
        (lp == -0.5) == bool(m) and (lp is None) == (not m) for lp, m in zip(ep.sampling_logprobs, ep.action_mask)
    )
    # a backend without log-probs gives none at all, rather than a partial list
    assert run_episode(scripted(tok, [WAR, "ok"]), tok, RolloutEnvironment(ml100k_env), task).sampling_logprobs is None


@pytest.fixture()
def tiny_llama(smollm2_tokenizer):
    """A 2-layer random Llama with SmolLM2's vocabulary: generation mechanics, not quality."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = smollm2_tokenizer
    torch.manual_seed(0)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.eos_token_id,
        )
    ).eval()


def test_batched_generation_equals_one_at_a_time(smollm2_tokenizer, tiny_llama):
    tok, model = smollm2_tokenizer, tiny_llama
    inputs = [
        tok(t, add_special_tokens=False)["input_ids"]
        for t in ("Hi", "A much longer prompt than the first one", "Mid size")
    ]
    together = generate_turns(model, tok, inputs, 6, sample=False)
    assert together == [generate_turns(model, tok, [x], 6, sample=False)[0] for x in inputs], (
        "left padding changes nothing"
    )
    assert generate_turns(model, tok, inputs, 6, sample=False, batch_size=2) == together, (
        "chunks of at most 2, in order"
    )
    assert generate_turns(model, tok, [], 6) == []


def test_identical_prompts_share_one_prompt_forward_and_still_sample_apart(smollm2_tokenizer, tiny_llama):
    """A GRPO group's first turns: one forward over the prompt, the same greedy turns as alone, distinct samples."""
    import torch

    tok, model = smollm2_tokenizer, tiny_llama
    group = tok("A prompt that four rollouts of one task share, long enough to matter", add_special_tokens=False)[
        "input_ids"
    ]
    other = tok("Another task", add_special_tokens=False)["input_ids"]
    embedded: list[int] = []
    hook = model.model.embed_tokens.register_forward_hook(lambda m, args, out: embedded.append(args[0].numel()))
    turns = generate_turns(model, tok, [group, other, group, group], 6, sample=False)
    hook.remove()
    alone = generate_turns(model, tok, [group], 6, sample=False)[0]
    assert turns == [alone, generate_turns(model, tok, [other], 6, sample=False)[0], alone, alone]
    # the group: its prompt once, then per step one token per row (3 rows x 6 steps); the other task: its own
    assert sum(embedded) <= (len(group) - 1) + 3 * 6 + len(other) + 6, embedded
    torch.manual_seed(1)
    sampled = generate_turns(model, tok, [group] * 4, 6, sample=True, temperature=1.0)
    assert len({tuple(t) for t in sampled}) > 1, "the rows of a shared prompt sample independently"


def _served_grammar(tok, model, env):
    """The served chat model's grammar (the shipped tool router, narrowing to one tool) over ``model``."""
    from recagent.agents.local_model import shipped_folder
    from recagent.agents.policies.engines import TransformersEngine
    from recagent.agents.policies.local import LocalChatModel
    from recagent.rl.served_grammar import ServedGrammar

    chat = LocalChatModel(
        engine="transformers", router_path=str(shipped_folder() / "tool_router.npz"), router_top_k=1
    ).attach(TransformersEngine(model, tok))
    return ServedGrammar(chat, env.dataset.users.index_of, env.catalog.index_of, env.catalog.all_genres)


def _accepted(grammar, ids: list[int]) -> int:
    """How many of ``ids`` (from the start) the grammar accepts."""
    import xgrammar as xgr

    matcher = xgr.GrammarMatcher(grammar)
    for n, t in enumerate(ids):
        if not matcher.accept_token(t):
            return n
    return len(ids)


def test_served_grammar_rollouts_sample_only_what_the_served_policy_could_decode(
    smollm2_tokenizer, tiny_llama, ml100k_env, task
):
    """A random model under the served grammar writes a turn the grammar accepts token by token (the router is sure
    of a call here, so it opens a call); sampled freely, the same model leaves that grammar within a few tokens."""
    import torch

    tok = smollm2_tokenizer
    served = _served_grammar(tok, tiny_llama, ml100k_env)
    generate = partial(generate_turns, tiny_llama, tok, max_new_tokens=40, temperature=1.0)
    torch.manual_seed(0)
    eps = run_episodes(
        generate, tok, [RolloutEnvironment(ml100k_env) for _ in range(3)], [task] * 3, max_steps=1, constrain=served
    )
    grammar = served(task.messages, task.tools, eps[0].prompt_ids).grammar
    for ep in eps:
        assert _accepted(grammar, ep.completion_ids) == len(ep.completion_ids) > 0
        assert tok.decode(ep.completion_ids).startswith("<tool_call>")
    torch.manual_seed(0)
    free = run_episodes(generate, tok, [RolloutEnvironment(ml100k_env) for _ in range(3)], [task] * 3, max_steps=1)
    assert all(_accepted(grammar, ep.completion_ids) < len(ep.completion_ids) for ep in free)


def test_served_grammar_refuses_a_prompt_that_is_not_the_served_one(smollm2_tokenizer, tiny_llama, ml100k_env, task):
    served = _served_grammar(smollm2_tokenizer, tiny_llama, ml100k_env)
    with pytest.raises(RuntimeError, match="not the served prompt"):
        served(task.messages, task.tools, [1, 2, 3])
    # after a sampled turn the tokens may differ from the served rendering (JSON spacing): that turn samples freely
    later = [*task.messages, {"role": "assistant", "content": "Here you go."}, {"role": "user", "content": "more"}]
    assert served(later, task.tools, [1, 2, 3]) is None


def test_constraints_must_match_the_inputs(smollm2_tokenizer, tiny_llama):
    with pytest.raises(ValueError, match="2 constraints for 1 inputs"):
        generate_turns(tiny_llama, smollm2_tokenizer, [[1, 2]], 4, constraints=[None, None])


class FakeVLLMGeneration:
    """Stands in for TRL's VLLMGeneration (vLLM needs a GPU): records calls, answers by prompt length."""

    def __init__(self):
        self.max_completion_length, self.seen = 512, []

    def generate(self, prompts, images, num_generations):
        self.seen.append((len(prompts), self.max_completion_length, num_generations, images))
        ids = [[len(p), 2] for p in prompts]
        return prompts, ids, [[[-0.1], [-0.2]] for _ in prompts], None


def test_vllm_turns_use_the_turn_budget_and_pad_rounds_for_collective_calls():
    gen = FakeVLLMGeneration()
    turns = VLLMTurns(gen, max_turn_tokens=48, width=4, placeholder=2, pad=True)
    out = turns([[5, 6, 7], [8]])
    assert gen.seen == [(4, 48, 1, None)], "padded to the width, turn budget, one completion each"
    assert gen.max_completion_length == 512, "TRL's own budget is restored"
    assert [o.ids for o in out] == [[3, 2], [1, 2]] and out[0].logprobs == [-0.1, -0.2]
    assert turns([]) == [] and gen.seen[-1][0] == 4, "a process with nothing left still joins the round"
    alone = VLLMTurns(gen, max_turn_tokens=48, width=4, placeholder=2)
    assert alone([]) == [] and len(gen.seen) == 2, "without padding an empty round makes no call"


def test_tasks_from_synthesized_dialogs_carry_their_gold_calls(ml100k_env, tmp_path):
    from recagent.synth.config import SynthConfig
    from recagent.synth.pipeline import synthesize

    synthesize(
        SynthConfig.build(n=10, seed=1, kinds={"single": 1}, exports=[]), tmp_path, env=ml100k_env, progress=False
    )
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    tasks = tasks_from_synth(rows)
    assert len(tasks) == len(rows)
    for t, r in zip(tasks, rows):
        assert t.messages[-1]["role"] == "user" and t.gold_calls
        first_call = next(m for m in r["messages"] if m.get("tool_calls"))["tool_calls"][0]["function"]
        assert t.gold_calls[0] == {"name": first_call["name"], "arguments": json.loads(first_call["arguments"])}
