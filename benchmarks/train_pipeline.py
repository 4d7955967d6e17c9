"""Base -> SFT -> SFT+RL on held-out tasks: tool-call accuracy, list-wise NDCG@10 vs SASRec, fallbacks, throughput.

1. Synthesizes a run on ML-100K (train dialogs from training users; test dialogs from disjoint users,
   half of them offering held-out tool variants).
2. Evaluates a policy on the first assistant turn of every test dialog (greedy, unconstrained, the
   serving prompt format): exact call match (names and arguments, order-free), separately for
   held-out and seen tool variants (all test users are held-out users); and in list-wise mode
   (the agent with the local policy) on validation users: NDCG@10 / HR@10 against the user's
   held-out validation item, next to the SASRec tool alone on the same users with the same
   (training) history, and the share of list slots the agent had to fill by fallback.
3. Trains SFT (``recagent.rl.sft``) then step-grained GRPO (``recagent.rl.train_rl``) and evaluates each.

``--reduced`` (CPU): short dialogs, a few optimiser steps, few users; it shows the pipeline end to
end, not a trained model. The full run wants a GPU. Writes ``results/train_pipeline_<tag>.json``
and ``.md`` with the hardware named.

    python benchmarks/train_pipeline.py --reduced --tag cpu
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def call_accuracy(model_dir: Path, test_rows: list[dict], max_new_tokens: int) -> dict:
    """Exact first-turn call match on test dialogs, split by held-out vs seen tool variants."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from recagent.agents.prompt_format import parse_assistant_output, render_openai_messages, tool_names_of
    from recagent.rl.rewards import Call, match_calls
    from recagent.rl.rollout import generate_turn, tasks_from_synth

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tally = {"heldout": [0, 0], "seen": [0, 0]}
    names = {"heldout": 0.0, "seen": 0.0}  # ToolRL's tool-name match: partial credit an exact match hides
    parsed_ok, tokens, seconds = 0, 0, 0.0
    for task, row in zip(tasks_from_synth(test_rows), test_rows):
        prompt = tok.apply_chat_template(
            render_openai_messages(task.messages, task.tools), tokenize=False, add_generation_prompt=True
        )
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        t0 = time.perf_counter()
        new = generate_turn(model, tok, ids, max_new_tokens, sample=False)
        seconds += time.perf_counter() - t0
        tokens += len(new)
        parsed = parse_assistant_output(tok.decode(new, skip_special_tokens=True), tool_names_of(task.tools))
        parsed_ok += not parsed.invalid_tool_calls
        calls = [Call(c["name"], c["args"], True) for c in parsed.tool_calls]
        calls += [Call(c.get("name"), None, False) for c in parsed.invalid_tool_calls]
        m = match_calls(calls, task.gold_calls or [])
        exact = m["name"] == 1.0 and m["param_name"] == 1.0 and m["param_value"] == 1.0 and m["format"] == 1.0
        variants = json.loads(row["meta"]["tool_variants"])
        side = "heldout" if any(v.get("heldout") for v in variants.values()) else "seen"
        tally[side][0] += exact
        tally[side][1] += 1
        names[side] += m["name"]
    n = sum(t[1] for t in tally.values())
    return {
        "call_exact_heldout_tools": round(tally["heldout"][0] / max(tally["heldout"][1], 1), 4),
        "call_exact_seen_tools": round(tally["seen"][0] / max(tally["seen"][1], 1), 4),
        "name_match_heldout_tools": round(names["heldout"] / max(tally["heldout"][1], 1), 4),
        "name_match_seen_tools": round(names["seen"] / max(tally["seen"][1], 1), 4),
        "n_heldout": tally["heldout"][1],
        "n_seen": tally["seen"][1],
        "parse_rate": round(parsed_ok / max(n, 1), 4),
        "generate_tokens_per_s": round(tokens / seconds, 1) if seconds else None,
    }


def longest_gold_turn(model_dir: Path, rows: list[dict]) -> int:
    """Tokens of the longest first assistant turn (the gold calls) in the serving format."""
    from transformers import AutoTokenizer

    from recagent.agents.chat_template import apply_tool_template
    from recagent.agents.prompt_format import render_openai_messages

    tok = apply_tool_template(AutoTokenizer.from_pretrained(model_dir))
    longest = 0
    for r in rows:
        first = next(i for i, m in enumerate(r["messages"]) if m["role"] == "assistant")
        before = tok.apply_chat_template(
            render_openai_messages(r["messages"][:first], r["tools"]), tokenize=False, add_generation_prompt=True
        )
        after = tok.apply_chat_template(render_openai_messages(r["messages"][: first + 1], r["tools"]), tokenize=False)
        longest = max(longest, len(tok(after[len(before) :], add_special_tokens=False)["input_ids"]))
    return longest


def listwise(model_dir: Path, env, users: int, k: int = 10) -> dict:
    """The agent's list-wise NDCG@10 / HR@10 on validation users vs SASRec alone, and its fallback share."""
    from recagent.agents import Agent, AgentConfig
    from recagent.agents.config import PolicyConfig
    from recagent.ranking import ndcg as ndcg_of
    from recagent.tools.recommenders import Query

    cases = env.split.cases("valid")[:users]
    agent = Agent.from_config(AgentConfig(policy=PolicyConfig(model=str(model_dir)), k=k), env=env)
    sasrec = env.model("sasrec")
    ndcg = {"agent": 0.0, "sasrec": 0.0}
    hits = {"agent": 0, "sasrec": 0}
    filled = 0
    for case in cases:
        uid = env.dataset.users.ids[case.user]
        target = env.catalog.ids[case.target]
        got = agent.recommend(uid, k=k)
        filled += got.filled
        hist = env.history(case.user)
        top, _ = sasrec.topk(Query(history=hist, user=case.user), k, exclude=hist)
        for name, ranked in (("agent", list(got.recommended)), ("sasrec", [env.catalog.ids[i] for i in top])):
            if target in ranked[:k]:
                hits[name] += 1
                ndcg[name] += ndcg_of(ranked.index(target), k)
    n = max(len(cases), 1)
    return {
        "users": len(cases),
        "agent_ndcg10": round(ndcg["agent"] / n, 4),
        "sasrec_ndcg10": round(ndcg["sasrec"] / n, 4),
        "agent_hr10": round(hits["agent"] / n, 4),
        "sasrec_hr10": round(hits["sasrec"] / n, 4),
        "fallback_share": round(filled / (n * k), 4),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reduced", action="store_true", help="CPU-sized run")
    p.add_argument("--tag", default="cpu")
    p.add_argument("--work", default=None, help="working folder (default $RECAGENT_HOME/runs/bench-<tag>)")
    p.add_argument("--base-model", default=None, help="start from this checkpoint (default: offline SmolLM2-135M)")
    for name in ("n", "sft_steps", "rl_steps", "users", "eval_tasks"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=None, help=f"override the size's {name}")
    a = p.parse_args()

    import torch
    from machine import machine_info  # benchmarks/machine.py (this script's folder is on sys.path)

    from recagent.agents.local_model import ensure_default_model
    from recagent.paths import recagent_home
    from recagent.rl.sft import load_sft_config, train_sft
    from recagent.rl.train_rl import load_rl_config, train_rl
    from recagent.synth.config import SynthConfig
    from recagent.synth.pipeline import read_rows, synthesize
    from recagent.tools.env import ToolEnv

    size = (
        dict(n=120, sft_steps=8, rl_steps=2, users=8, eval_tasks=40, tools=(1, 3))
        if a.reduced
        else dict(n=5000, sft_steps=600, rl_steps=200, users=200, eval_tasks=500, tools=(3, 8))
    )
    size.update({k: getattr(a, k) for k in ("n", "sft_steps", "rl_steps", "users", "eval_tasks") if getattr(a, k)})
    work = Path(a.work) if a.work else recagent_home() / "runs" / f"bench-{a.tag}"
    work.mkdir(parents=True, exist_ok=True)
    env = ToolEnv.load()
    t0 = time.perf_counter()
    synth = SynthConfig.build(
        n=size["n"],
        seed=0,
        test_fraction=0.25,
        tools_per_dialog=size["tools"],
        max_distractors=1,
        kinds={"single": 0.4, "parallel": 0.2, "chain": 0.4},
        exports=[],
    )
    synthesize(synth, work / "synth", env=env, progress=False)
    test_rows = read_rows(work / "synth" / "test.jsonl")[: size["eval_tasks"]]
    timings = {"synth_s": round(time.perf_counter() - t0, 1)}
    base = Path(a.base_model) if a.base_model else ensure_default_model(progress=False)
    # a turn cut short cannot match: the budget covers the longest gold call turn of the run, with room to spare
    budget = max(160, longest_gold_turn(base, read_rows(work / "synth" / "train.jsonl") + test_rows) + 32)
    results = {}

    def evaluate(name: str, model_dir: Path) -> None:
        t = time.perf_counter()
        results[name] = {**call_accuracy(model_dir, test_rows, budget), **listwise(model_dir, env, size["users"])}
        timings[f"eval_{name}_s"] = round(time.perf_counter() - t, 1)

    evaluate("base", base)
    t = time.perf_counter()
    sft_over = ["warmup_steps=0", "save_steps=1000", "logging_steps=1"] + (
        ["gradient_accumulation_steps=1"] if a.reduced else []
    )
    sft_cfg = load_sft_config(
        None,
        sft_over,
        data_dir=str(work / "synth"),
        output_dir=str(work / "sft"),
        base_model=str(base),
        max_steps=size["sft_steps"],
        disable_tqdm=True,
        learning_rate=1e-4,
    )
    sft_final = train_sft(sft_cfg)
    timings["sft_s"] = round(time.perf_counter() - t, 1)
    evaluate("sft", sft_final)
    t = time.perf_counter()
    rl_cfg = load_rl_config(
        None,
        [
            "num_generations=4",
            "per_device_train_batch_size=4",
            "logging_steps=1",
            "save_steps=1000",
            "learning_rate=1e-6",
            f"max_turn_tokens={budget}",
            "max_episode_steps=3",
            "activation_checkpointing=false",
            "report_to=none",
        ],
        data_dir=str(work / "synth"),
        output_dir=str(work / "rl"),
        base_model=str(sft_final),
        max_steps=size["rl_steps"],
        disable_tqdm=True,
    )
    rl_final = train_rl(rl_cfg, tool_env=env)
    timings["rl_s"] = round(time.perf_counter() - t, 1)
    evaluate("sft_rl", rl_final)
    rl_log = json.loads((rl_final / "rl_run.json").read_text())["log_history"]
    sft_losses = [
        h["loss"] for h in json.loads((sft_final / "sft_run.json").read_text()).get("log_history", []) if "loss" in h
    ]
    machine = machine_info()
    device = machine.get("gpu") or f"CPU ({machine['cpu_count']} cores)"
    data = {
        "machine": machine,
        "reduced": a.reduced,
        "size": size,
        "turn_tokens": budget,
        "results": results,
        "timings_s": timings,
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if torch.cuda.is_available() else None,
        "rl_last_log": rl_log[-1] if rl_log else None,
        "sft_losses": sft_losses,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"train_pipeline_{a.tag}.json").write_text(json.dumps(data, indent=2, default=str))
    rows = [
        "| policy | exact calls, held-out tools | exact calls, seen tools | tool names, held-out / seen | parses "
        "| agent NDCG@10 | SASRec NDCG@10 | fallback |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        rows.append(
            f"| {name} | {r['call_exact_heldout_tools']:.3f} (n={r['n_heldout']}) | {r['call_exact_seen_tools']:.3f} "
            f"(n={r['n_seen']}) | {r['name_match_heldout_tools']:.2f} / {r['name_match_seen_tools']:.2f} | "
            f"{r['parse_rate']:.2f} | {r['agent_ndcg10']:.4f} | {r['sasrec_ndcg10']:.4f} | {r['fallback_share']:.2f} |"
        )
    md = [
        f"# Base -> SFT -> SFT+RL ({'reduced, ' if a.reduced else ''}{device})",
        "",
        *rows,
        "",
        f"Timings (s): {timings}. Peak RSS {data['peak_rss_gb']} GB.",
    ]
    (RESULTS / f"train_pipeline_{a.tag}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
