"""Verified dialogs per minute of the offline synthesis pipeline on ML-100K, and its pass rates.

Runs ``recagent synth`` (programmatic generator, every rule check, no judge) into a temporary
folder and records throughput (verified dialogs per minute of generation time, which includes
generating, labelling, verifying with re-execution, and writing), the pass rate overall and per
check, and the mix of kinds and levels. Needs the trained models (``recagent quickstart``).
Writes ``results/synth_ml100k.json`` and ``results/synth_ml100k.md``.

    python benchmarks/synth_throughput.py --n 5000
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from machine import describe, machine_info  # benchmarks/machine.py (this script's folder is on sys.path)

    from recagent.synth.config import SynthConfig
    from recagent.synth.pipeline import synthesize
    from recagent.tools.env import ToolEnv

    cfg = SynthConfig.build(n=args.n, seed=args.seed)
    t0 = time.perf_counter()
    env = ToolEnv.load(cfg.tools)
    env.text_index()
    load_s = time.perf_counter() - t0
    out = Path(tempfile.mkdtemp(prefix="synth-bench-"))
    try:
        result = synthesize(cfg, out, env=env)
        report = json.loads((out / "report.json").read_text())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    data = {
        "what": "offline synthesis on ML-100K: programmatic generator, 14 rule checks with re-execution, no judge",
        "machine": machine_info(),
        "n": args.n,
        "seed": args.seed,
        "env_load_seconds": round(load_s, 2),
        "generation_seconds": result.seconds,
        "verified_per_minute": result.verified_per_minute,
        "pass_rate": report["pass_rate"],
        "check_pass_rate": report["check_pass_rate"],
        "rejected": report["rejected"],
        "skipped": report["skipped"],
        "verified": report["verified"],
        "kinds": report["kinds"],
        "levels": report["levels"],
        "calls": report["calls"],
        "depth": report["depth"],
        "test_dialogs_with_heldout_tools": report["test_dialogs_with_heldout_tools"],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "synth_ml100k.json").write_text(json.dumps(data, indent=2))
    lines = [
        "# Synthesis throughput on ML-100K",
        "",
        f"{describe(data['machine'])}; n = {args.n}, seed {args.seed}.",
        "",
        f"- verified dialogs per minute: **{data['verified_per_minute']}** (target: at least 500)",
        f"- pass rate through the rule checks: **{100 * data['pass_rate']:.2f}%** "
        f"({data['rejected']} rejected; skipped: {data['skipped'] or 'none'})",
        f"- verified: {data['verified']['train']} train, {data['verified']['test']} test "
        f"({data['test_dialogs_with_heldout_tools']} test dialogs offer held-out tool variants)",
        "",
        "| check | pass rate |",
        "|---|---:|",
        *[f"| {k} | {100 * v:.2f}% |" for k, v in data["check_pass_rate"].items()],
    ]
    (RESULTS / "synth_ml100k.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
