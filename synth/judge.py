"""Stage 4, model layer: an LLM judge (any OpenAI-compatible model) checks that the calls match the user's intent.

The judge reads the user's messages, the offered tools (name and description) and the
assistant's calls and final reply, and answers with a JSON object. Its reply is parsed with
``json.loads`` (never evaluated); a reply that cannot be read counts as a rejection with that
reason, so an unreliable judge lowers the pass rate visibly instead of passing samples silently.
"""

from __future__ import annotations

import json
import re
from typing import Any

from recagent.agents.config import PolicyConfig
from recagent.synth.sample import Sample

JUDGE_PROMPT = (
    "You review synthetic conversations between a user and a recommender assistant that uses tools. Decide "
    "whether the assistant's tool calls (which tools, which arguments) and its final reply do what the user "
    "asked, using only the offered tools. Answer with one JSON object and nothing else: "
    '{"matches_intent": true or false, "reason": "<one sentence>"}'
)


def render_for_judge(sample: Sample) -> str:
    """The conversation as the judge reads it: tools, user turns, calls with arguments, replies."""
    lines = ["Offered tools:"]
    for t in sample.tools:
        fn = t["function"]
        lines.append(f"- {fn['name']}({', '.join(fn['parameters'].get('properties', {}))}): {fn['description']}")
    lines.append("Conversation:")
    for m in sample.messages:
        role = m.get("role")
        if role == "user":
            lines.append(f"USER: {m.get('content')}")
        elif role == "assistant" and m.get("tool_calls"):
            for tc in m["tool_calls"]:
                lines.append(f"ASSISTANT CALLS {tc['function']['name']}({tc['function']['arguments']})")
        elif role == "assistant":
            lines.append(f"ASSISTANT: {m.get('content')}")
        elif role == "tool":
            lines.append(f"TOOL RESULT ({len(str(m.get('content')))} chars)")
    return "\n".join(lines)


def parse_verdict(text: str) -> dict[str, Any]:
    """``{"passed", "reason"}`` from the judge's reply; unreadable replies are rejections that say so."""
    body = text.strip()
    fence = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", body, re.DOTALL)
    if fence:
        body = fence.group(1)
    start, end = body.find("{"), body.rfind("}")
    try:
        obj = json.loads(body[start : end + 1]) if start >= 0 and end > start else None
    except json.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict) or not isinstance(obj.get("matches_intent"), bool):
        return {"passed": False, "reason": f"judge reply is not the expected JSON object: {text[:160]!r}"}
    return {"passed": obj["matches_intent"], "reason": str(obj.get("reason", ""))[:300]}


class LLMJudge:
    """Asks an OpenAI-compatible model whether a dialog's calls match the user's intent."""

    def __init__(self, cfg: PolicyConfig, chat_model: Any | None = None):
        from recagent.agents.policies.openai_compat import openai_chat_model

        self.cfg = cfg
        self.model = chat_model or openai_chat_model(cfg)

    def __call__(self, sample: Sample) -> dict[str, Any]:
        """The judge's verdict on one sample (``passed``, ``reason``, ``model``)."""
        from langchain_core.messages import HumanMessage, SystemMessage

        from recagent.agents.policies.openai_compat import explain_failure

        try:
            reply = self.model.invoke([SystemMessage(JUDGE_PROMPT), HumanMessage(render_for_judge(sample))])
        except Exception as e:  # a server failure is recorded on the sample; the run goes on
            reason = explain_failure(e, self.cfg) or f"{type(e).__name__}: {e}"
            return {"passed": False, "reason": f"judge unavailable: {reason}", "model": self.cfg.model}
        return {**parse_verdict(str(reply.content)), "model": self.cfg.model}
