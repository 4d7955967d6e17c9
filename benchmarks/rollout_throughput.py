"""Rollout generation: episodes one at a time vs in lock-step (one batched call per round), tokens per second.

Plays the same multi-step episodes (tasks from ``examples/synth_sample.jsonl``, real ML-100K tools,
``--group`` rollouts of each task as in a GRPO batch) with the default SmolLM2-135M policy, sampled, twice per repeat, alternating the order so machine load
hits both alike: ``sequential`` (``run_episode`` per task, as the trainers did before),
``lockstep`` (``run_episodes``: every round one left-padded ``generate`` for the live episodes) and
``recipe`` (``run_episodes`` with ``rollout_batch_size`` 1, as ``examples/policy_cpu/grpo.yaml``: distinct
inputs one at a time, a group's identical first-turn prompts from one shared prompt forward). The
policy-written tokens per second of wall time is the measure; a forward probe (2000-token prefill,
16 decode steps, batch 1 and ``--group``) shows where the time goes (sampled episodes differ in length
between the modes, so time per episode alone would mislead). Writes ``results/rollout_throughput_<tag>.json``.

    python benchmarks/rollout_throughput.py --episodes 8 --group 4 --repeats 2 --tag cpu
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def forward_probe(model, batches: list[int], length: int = 2000, steps: int = 16) -> dict:
    """Where rollout time goes: prefill tokens/s of a tool-prompt-sized input and decode tokens/s, per batch size."""
    import torch

    out = {}
    device = next(model.parameters()).device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for b in batches:
        ids = torch.randint(100, 40000, (b, length), device=device)
        with torch.no_grad():
            sync()
            t0 = time.perf_counter()
            res = model(input_ids=ids, use_cache=True)
            sync()
            prefill = time.perf_counter() - t0
            cache, nxt = res.past_key_values, ids[:, -1:]
            t0 = time.perf_counter()
            for _ in range(steps):
                cache = model(input_ids=nxt, past_key_values=cache, use_cache=True).past_key_values
            sync()
            decode = (time.perf_counter() - t0) / steps
        out[f"batch_{b}"] = {
            "prefill_tokens_per_s": round(b * length / prefill),
            "decode_tokens_per_s": round(b / decode, 1),
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument(
        "--group", type=int, default=4, help="rollouts per task, as a GRPO group (1: every episode its own task)"
    )
    p.add_argument("--max-steps", type=int, default=3)
    p.add_argument("--max-turn-tokens", type=int, default=64)
    p.add_argument("--model", default=None, help="checkpoint folder (default: the offline SmolLM2-135M)")
    p.add_argument("--tag", default="cpu")
    a = p.parse_args()

    import torch
    from machine import machine_info  # benchmarks/machine.py (this script's folder is on sys.path)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from recagent.agents.chat_template import apply_tool_template
    from recagent.agents.local_model import ensure_default_model
    from recagent.rl.rollout import (
        RolloutEnvironment,
        generate_turn,
        generate_turns,
        run_episode,
        run_episodes,
        tasks_from_synth,
    )
    from recagent.tools.env import ToolEnv, ToolEnvConfig

    cuda = torch.cuda.is_available()
    model_dir = Path(a.model) if a.model else ensure_default_model()
    tok = apply_tool_template(AutoTokenizer.from_pretrained(model_dir))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if cuda else torch.float32)
    model = model.to("cuda" if cuda else "cpu").eval()
    env = ToolEnv.load(ToolEnvConfig(dataset="ml-100k"))
    rows = [json.loads(line) for line in (ROOT / "examples" / "synth_sample.jsonl").read_text().splitlines()]
    if a.episodes % a.group:
        raise SystemExit(f"--episodes ({a.episodes}) must be a multiple of --group ({a.group})")
    tasks = [t for t in tasks_from_synth(rows)[: a.episodes // a.group] for _ in range(a.group)]

    def sequential(seed: int):
        torch.manual_seed(seed)
        gen = lambda ids: generate_turn(model, tok, ids, a.max_turn_tokens)  # noqa: E731
        return [run_episode(gen, tok, RolloutEnvironment(env), t, a.max_steps) for t in tasks]

    def lockstep(seed: int):
        torch.manual_seed(seed)
        gen = lambda batch: generate_turns(model, tok, batch, a.max_turn_tokens)  # noqa: E731
        return run_episodes(gen, tok, [RolloutEnvironment(env) for _ in tasks], tasks, a.max_steps)

    def recipe(seed: int):
        torch.manual_seed(seed)
        gen = lambda batch: generate_turns(model, tok, batch, a.max_turn_tokens, batch_size=1)  # noqa: E731
        return run_episodes(gen, tok, [RolloutEnvironment(env) for _ in tasks], tasks, a.max_steps)

    modes = {"sequential": sequential, "lockstep": lockstep, "recipe": recipe}
    lockstep(0)  # warm-up (allocator, kernels)
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for r in range(a.repeats):
        for name in list(modes) if r % 2 == 0 else list(reversed(modes)):
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            eps = modes[name](r + 1)
            if cuda:
                torch.cuda.synchronize()
            secs = time.perf_counter() - t0
            written = sum(sum(ep.action_mask) for ep in eps)
            runs[name].append(
                {
                    "seconds": round(secs, 2),
                    "policy_tokens": written,
                    "turns": sum(len(ep.spans) for ep in eps),
                    "tokens_per_s": round(written / secs, 1),
                    "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None,
                }
            )
    summary = {
        m: {
            "tokens_per_s": round(sum(x["policy_tokens"] for x in v) / sum(x["seconds"] for x in v), 1),
            "seconds_per_episode": round(sum(x["seconds"] for x in v) / (len(v) * len(tasks)), 2),
        }
        for m, v in runs.items()
    }
    summary["forward_probe"] = forward_probe(model, [1, a.group])
    summary["speedup_tokens_per_s"] = round(
        summary["lockstep"]["tokens_per_s"] / summary["sequential"]["tokens_per_s"], 2
    )
    summary["recipe_speedup_tokens_per_s"] = round(
        summary["recipe"]["tokens_per_s"] / summary["sequential"]["tokens_per_s"], 2
    )
    out = {
        "machine": machine_info(torch_threads=torch.get_num_threads()),
        "dtype": str(model.dtype),
        "model": model_dir.name,
        "settings": vars(a),
        "summary": summary,
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"rollout_throughput_{a.tag}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
