"""List-wise recommendation (ToolRec-style): the agent acts for a dataset user and returns a top-k list,
compared here with the conventional recommender it can call, on that user's held-out test item.

    python examples/listwise.py --users 1 2 3 -k 10
"""

from __future__ import annotations

import argparse

from recagent.agents import Agent, AgentConfig
from recagent.tools.recommenders import Query


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", nargs="*", default=["1", "2", "3"])
    p.add_argument("-k", type=int, default=10)
    args = p.parse_args()

    agent = Agent.from_config(AgentConfig().with_overrides(["max_steps=3"]))
    env = agent.context.env
    test_item = dict(zip(env.split.test.users.tolist(), env.split.test.items.tolist()))
    for uid in args.users:
        result = agent.recommend(uid, k=args.k)
        u = env.user(uid)
        target = env.catalog.ids[test_item[u]]
        base, _ = env.models["sasrec"].topk(Query(env.history(u), u), args.k, exclude=env.history(u))
        base_ids = [env.catalog.ids[i] for i in base]
        calls = [s.tool for s in result.trace if s.kind == "tool_call"]
        print(
            f"user {uid}: tools {calls}, {result.filled} filled; held-out item {target} "
            f"in agent list: {target in result.recommended}, in SASRec list: {target in base_ids}"
        )
        print("   agent:", result.recommended)
    agent.close()


if __name__ == "__main__":
    main()
