"""Latency and isolation of ``recagent serve`` under concurrent sessions over loopback, on ML-100K.

The server runs in its own process (so the load generator does not share its interpreter) and the
load is ``recagent.serve.loadtest.run_load``: N sessions at once, each sending its turns one after
another (half of them streaming), every message carrying a code unique to its session and turn; an
answer quoting another session's code is an isolation failure. 503 (queue full) is the documented
overload answer: the loop backs off 0.5 s and retries, and counts it.

Scenarios (tools are real in all of them: the trained recommenders and the text index):
- ``echo``: the EchoPolicy (no model): the server's own cost, tool calls, session storage, streaming.
- ``echo-200ms``: the same with 200 ms of serialised "model" time per policy call (two per turn), i.e. what
  queueing behind one local model looks like.
- ``local``: the default offline policy (the shipped adapter) for real (CPU, serialised), fewer turns.

    python benchmarks/serve_load.py                        # echo + echo-200ms: 24 sessions x 5 turns
    python benchmarks/serve_load.py --scenarios local --sessions 20 --turns 1

Writes ``results/serve_load.json`` (merged by scenario) and ``results/serve_load.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCENARIOS = {
    "echo": {"policy": "echo", "think_s": 0.0, "workers": 4, "max_queue": 16},
    "echo-200ms": {"policy": "echo", "think_s": 0.2, "workers": 4, "max_queue": 16},
    "local": {"policy": "local", "workers": 4, "max_queue": 16},  # the agent as `recagent serve` runs it
}
ABOUT = {
    "echo": "EchoPolicy, no model: the server, real tool calls, session storage and streaming",
    "echo-200ms": "EchoPolicy with 200 ms of serialised model time per policy call (2 per turn): queueing behind one model",
    "local": "the default offline policy (SmolLM2-135M + the shipped LoRA adapter, llama.cpp) on CPU for real "
    "(serialised; default step and token budgets)",
}


def serve(scenario: str, port: int, db: str) -> None:
    """Child process: build the agent for ``scenario`` and serve it on ``port`` until killed."""
    import uvicorn

    from recagent.agents import Agent, AgentConfig
    from recagent.agents.policies.scripted import EchoPolicy
    from recagent.serve.app import create_app
    from recagent.serve.config import ServeConfig

    spec = SCENARIOS[scenario]
    agent_cfg = AgentConfig()  # the defaults `recagent serve` uses: the shipped local policy, its budgets
    policy = EchoPolicy(think_s=spec["think_s"]) if spec["policy"] == "echo" else None
    if policy is None:
        from recagent.agents.local_model import ensure_default_model

        ensure_default_model(progress=False)
    agent = Agent.from_config(agent_cfg, policy=policy, db_path=Path(db))
    cfg = ServeConfig(
        agent=agent_cfg, port=port, workers=spec["workers"], max_queue=spec["max_queue"], serialize_policy=True
    )
    from recagent.serve.transport import uvicorn_options

    # the limits `recagent serve` runs with (header deadline, connection cap): the load is measured as served
    uvicorn.run(create_app(cfg, agent), host="127.0.0.1", port=port, log_level="warning", **uvicorn_options(cfg))


def run(scenario: str, sessions: int, turns: int, tmp: Path) -> dict:
    """Start the server for ``scenario``, put the load on it, return the summary."""
    from recagent.serve.loadtest import run_load, summarise

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tmp / f"{scenario}.sqlite"
    db.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, __file__, "--serve", scenario, "--port", str(port), "--db", str(db)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 600
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"the {scenario} server did not start")
            time.sleep(1)
        if SCENARIOS[scenario]["policy"] == "local":  # load the model once before timing (first call loads it)
            httpx.post(
                f"{url}/v1/chat/completions",
                timeout=600,
                json={"model": "recagent", "messages": [{"role": "user", "content": "hello"}]},
            )
        t0 = time.perf_counter()
        records = run_load(url, sessions=sessions, turns=turns, user_ids=[str(u) for u in range(1, 51)])
        wall = time.perf_counter() - t0
        metrics = httpx.get(f"{url}/metrics", timeout=10).json()
    finally:
        proc.terminate()
        proc.wait(60)
    out = summarise(records)
    fives = {k: v for k, v in out["by_status"].items() if k.startswith("5") and k != "503"}
    out.update(
        scenario=scenario,
        spec=SCENARIOS[scenario],
        sessions=sessions,
        turns_per_session=turns,
        wall_s=round(wall, 1),
        answered_per_s=round(out["answered"] / wall, 2),
        other_5xx=fives,
        streamed_share=round(sum(r.streamed for r in records if r.status == 200) / max(1, out["answered"]), 2),
        server={k: metrics[k] for k in ("peak_running", "turns", "tool_calls", "tokens")},
        server_route_latency=metrics["routes"].get("POST /v1/chat/completions"),
    )
    return out


def write(results: dict) -> None:
    """The JSON and the markdown table."""
    from machine import describe  # benchmarks/machine.py (this script's folder is on sys.path)

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serve_load.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# recagent serve under concurrent sessions (ML-100K, loopback)",
        "",
        f"Machine: {describe(results['machine'])}. Generated by `benchmarks/serve_load.py`; latency is per answered turn, "
        "measured by the client (queueing included); 503s are retried after 0.5 s and counted. With more sessions than "
        "`workers + max_queue` the latency is mostly waiting: one turn costs about 1/(turns/s) of the server.",
        "",
        "| scenario | sessions x turns | answered | 503 | other 5xx | isolation failures | p50 ms | p95 ms | p99 ms | turns/s | peak turns running |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    about = [
        f"- `{name}`: {ABOUT[name]}; {r['spec']['workers']} workers, queue {r['spec']['max_queue']}; {r['wall_s']} s in all."
        for name, r in results["scenarios"].items()
    ]
    lines[4:4] = [*about, ""]
    for name, r in results["scenarios"].items():
        lines.append(
            f"| {name} | {r['sessions']} x {r['turns_per_session']} | {r['answered']} | {r['by_status'].get('503', 0)} | "
            f"{sum(r['other_5xx'].values())} | {r['foreign_code_answers']} | {r['p50_ms']} | {r['p95_ms']} | "
            f"{r['p99_ms']} | {r['answered_per_s']} | {r['server']['peak_running']} |"
        )
    (RESULTS / "serve_load.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    from machine import machine_info  # benchmarks/machine.py (this script's folder is on sys.path)

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", nargs="+", default=["echo", "echo-200ms"], choices=list(SCENARIOS))
    ap.add_argument("--sessions", type=int, default=24)
    ap.add_argument("--turns", type=int, default=5)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args.serve, args.port, args.db)
    path = RESULTS / "serve_load.json"
    results = json.loads(path.read_text()) if path.is_file() else {"scenarios": {}}
    results["machine"] = machine_info()
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "recagent-serve-bench"
    tmp.mkdir(parents=True, exist_ok=True)
    for name in args.scenarios:
        print(f"{name}: {args.sessions} sessions x {args.turns} turns ...", flush=True)
        results["scenarios"][name] = r = run(name, args.sessions, args.turns, tmp)
        print(
            json.dumps({k: r[k] for k in ("answered", "by_status", "foreign_code_answers", "p50_ms", "p95_ms")}),
            flush=True,
        )
        write(results)


if __name__ == "__main__":
    main()
