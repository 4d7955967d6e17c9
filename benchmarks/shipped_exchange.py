"""A real exchange with the default offline policy, as ``recagent chat`` runs it, for the README's quickstart.

Fixed, hand-written messages (not generated, never trained on) go to one chat session of the
default agent (the shipped LoRA policy on llama.cpp, tool choice ``auto``, greedy); each turn's
calls, answer, recommended ids, whether the policy itself answered (or the fallback did) and its
seconds are written to ``results/shipped_exchange.{json,md}``. The README quotes the markdown.

    python benchmarks/shipped_exchange.py      # about a minute on 2 cores
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from machine import machine_info

RESULTS = Path(__file__).resolve().parent / "results"

# (dataset user attached to the session or None, message): one session, in this order
MESSAGES: list[tuple[str | None, str]] = [
    (None, "hello"),
    (None, "Recommend three 1990s science fiction movies."),
    (None, "what can you do?"),
    ("42", "Suggest 3 comedies I haven't seen."),
]


def run() -> dict:
    """Each message's turn: calls the policy made, answer, recommended ids, who answered, seconds."""
    from recagent.agents import Agent, AgentConfig
    from recagent.agents.config import PolicyConfig
    from recagent.agents.steps import policy_calls
    from recagent.tools.env import ToolEnv

    policy = PolicyConfig()
    adapter = policy.adapter_folder()
    if adapter is None:
        raise SystemExit("no trained policy is installed (agents/weights): run `recagent train ship` first")
    with tempfile.TemporaryDirectory() as tmp:
        agent = Agent.from_config(AgentConfig(policy=policy), env=ToolEnv.load(), db_path=Path(tmp) / "s.sqlite")
        turns = []
        for user, text in MESSAGES:
            t0 = time.perf_counter()
            r = agent.chat(text, session="readme", user_id=user)
            turns.append(
                {
                    "user_id": user,
                    "message": text,
                    "calls": [{"tool": s.tool, "arguments": s.arguments} for s in policy_calls(r.trace)],
                    "answer": r.answer,
                    "recommended": r.recommended,
                    "policy_answered": r.policy_answer is not None,
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            )
            print(json.dumps(turns[-1], ensure_ascii=False), flush=True)
    return {"what": __doc__.splitlines()[0], "adapter": Path(adapter).name, "machine": machine_info(), "turns": turns}


def markdown(report: dict) -> str:
    """The exchange as the README shows it."""
    lines = []
    for t in report["turns"]:
        who = f" (user {t['user_id']})" if t["user_id"] else ""
        lines.append(f"> **you**{who}: {t['message']}")
        lines.append(">")
        for c in t["calls"]:
            lines.append(f"> `{c['tool']}({json.dumps(c['arguments'], ensure_ascii=False)})`")
            lines.append(">")
        answer = t["answer"].strip().replace("\n", "  \n> ")
        source = "" if t["policy_answered"] else " *(fallback)*"
        lines.append(f"> **recagent**{source} ({t['seconds']:.1f} s): {answer}")
        lines.append("")
    m = report["machine"]
    lines.append(
        f"{report['adapter']}, greedy, on {m['cpu']} ({m['cpu_count']} cores), {m['date'][:10]}; the first turn's "
        "seconds include loading the model. Calls are the policy's own; a fallback answer would be marked."
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    report = run()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "shipped_exchange.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (RESULTS / "shipped_exchange.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
