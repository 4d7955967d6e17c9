"""Chat with the recommender agent from Python (offline default model, or any OpenAI-compatible server).

python examples/chat.py "I'd like a light comedy for tonight" --user 42
python examples/chat.py "a sci-fi classic" --base-url http://127.0.0.1:8080/v1 --model my-model
"""

from __future__ import annotations

import argparse

from recagent.agents import Agent, AgentConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("message", nargs="?", default="Can you recommend a funny animated film?")
    p.add_argument("--user", default=None, help="dataset user id to chat as")
    p.add_argument("--session", default="example")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible server (key from $OPENAI_API_KEY)")
    p.add_argument("--model", default=None)
    args = p.parse_args()

    overrides = ["max_steps=4"]
    if args.base_url:
        overrides += ["policy.kind=openai", f"policy.base_url={args.base_url}", f"policy.model={args.model}"]
    agent = Agent.from_config(AgentConfig().with_overrides(overrides))
    for kind, data in agent.stream(args.message, session=args.session, user_id=args.user):
        if kind == "step" and data.kind == "tool_call":
            print(f"  [{data.tool}] {'ok' if data.valid else data.error} {data.result_summary or ''}")
        elif kind == "result":
            print("\nagent:", data.answer)
            print("recommended ids:", data.recommended)
    agent.close()


if __name__ == "__main__":
    main()
