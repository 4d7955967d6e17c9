"""Tool routers alone on the hand-written development requests: is the router's likeliest tool an accepted first tool?

Each development request that needs a tool is one case: its earlier turns (if any) and its text, as the router reads
them (``ToolRouter.text``: a router with slots also reads the request's slots). A router with a reply head is also
asked, at ``policy.router_answer_p``, which requests it answers without a tool: the no-tool ones should be, the
others not; and, at ``policy.router_call_p``, which it calls a tool for: none of the no-tool ones. Development
requests only: they exist to choose, and the test requests are never used to choose. No policy runs here, so it
takes seconds.

    python benchmarks/router_dev_requests.py --router words=ROUTER.npz --router slots=OTHER.npz
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--router", action="append", required=True, help="NAME=PATH of a tool_router.npz (repeatable)")
    ap.add_argument("--out", type=Path, default=RESULTS / "router_dev_requests.json")
    args = ap.parse_args()

    from recagent.agents.config import PolicyConfig
    from recagent.agents.tool_router import ToolRouter, Turn
    from recagent.heldout_requests import load_chat_requests, packaged_path

    routers = {}
    for spec in args.router:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            raise SystemExit(f"--router {spec!r}: expected NAME=PATH of an existing tool_router.npz")
        routers[name] = ToolRouter.load(path)
    requests = load_chat_requests(packaged_path(dev=True))
    cases = [r for r in requests if not r.no_tool]
    answer_p, call_p = PolicyConfig().router_answer_p, PolicyConfig().router_call_p
    command = "python benchmarks/router_dev_requests.py " + " ".join(sys.argv[1:])
    results = {"what": __doc__.splitlines()[0], "command": command, "requests": len(cases), "routers": {}}
    for name, router in routers.items():
        misses = []
        for r in cases:
            turns = [Turn(t.role, t.text) for t in r.context] + [Turn("user", r.text)]
            top = router.rank(router.text(turns))[0]
            if top not in {a.tool for a in r.accepted_first_calls}:
                misses.append({"id": r.id, "text": r.text, "top": top})
        results["routers"][name] = {"slots": router.slots, "top1": len(cases) - len(misses), "misses": misses}
        print(f"{name}: {len(cases) - len(misses)} of {len(cases)}")
        if router.reply_coef is not None:
            decided = {
                r.id: router.reply([Turn(t.role, t.text) for t in r.context] + [Turn("user", r.text)], answer_p, call_p)
                for r in requests
            }
            answered = [r for r in requests if decided[r.id] == "answer"]
            called = [r for r in requests if decided[r.id] == "call"]
            no_tool = sum(r.no_tool for r in requests)
            results["routers"][name]["answered_without_a_tool"] = {
                "answer_p": answer_p,
                "no_tool_requests": f"{sum(r.no_tool for r in answered)} of {no_tool}",
                "tool_requests": f"{sum(not r.no_tool for r in answered)} of {len(cases)}",
                "tool_requests_answered": [{"id": r.id, "text": r.text} for r in answered if not r.no_tool],
            }
            results["routers"][name]["called_a_tool"] = {
                "call_p": call_p,
                "no_tool_requests": f"{sum(r.no_tool for r in called)} of {no_tool}",
                "tool_requests": f"{sum(not r.no_tool for r in called)} of {len(cases)}",
            }
            print(f"{name}: answers {sum(r.no_tool for r in answered)} of {no_tool} no-tool requests", flush=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
