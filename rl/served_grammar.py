"""Rollout turns decoded under the grammar the served policy decodes under.

Serving never samples the adapter freely: :class:`~recagent.agents.policies.local.LocalChatModel` decodes every
reply under an xgrammar grammar that the tool router narrows (which tools, call or answer, whether the call saves
its result) and the conversation grounds (which ids, counts and years a call may write). Rollouts sampled without
it spend the reward on mistakes the served policy cannot make (a broken format, a name nobody offered) and none on
the choices it does make. :class:`ServedGrammar` asks the served chat model for the reply's decode job (the same
code path, not a copy of its rules) and hands the rollout its grammar.

What it covers: the calls (router narrowing, save argument, grounded ids) and the call-or-answer decision. An
answer is free text here: the citation rules the agent adds from its state (items a tool returned, list-wise k) are
not rebuilt. A later turn is constrained only where the rollout's tokens are the served rendering of its messages
(a sampled call may space its JSON otherwise); elsewhere it is sampled freely. The loss still reads the model's
unconstrained log-probabilities, so a token the grammar forces gets its step's advantage too (not renormalised).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recagent.rl.rollout import TurnConstraint


@dataclass
class ServedGrammar:
    """The served chat model (its router and rules) over the training model, and the tool data its ids come from."""

    chat: Any  # a LocalChatModel attached to an engine over the training model
    users: dict[str, int]
    items: dict[str, int]
    genres: Any
    catalog: Any = None  # the item catalog whose titles a title argument may name (None: any words of the user)

    @classmethod
    def for_policy(cls, start: str | None, model: Any, tokenizer: Any, env: Any) -> ServedGrammar:
        """The policy served from ``start`` (an adapter folder, with its tool router if it holds one, or a model
        folder), its grammar compiled for ``model``'s vocabulary; ids from ``env``'s dataset and catalog."""
        from pathlib import Path

        from recagent.agents.config import PolicyConfig, make_policy
        from recagent.agents.policies.engines import TransformersEngine

        adapter = start is not None and (Path(start) / "adapter_config.json").is_file()
        served = PolicyConfig(
            model=None if adapter or start is None else start,
            adapter=start if adapter else None,
            engine="transformers",
        )
        chat = make_policy(served).attach(TransformersEngine(model, tokenizer))
        return cls(chat, env.dataset.users.index_of, env.catalog.index_of, env.catalog.all_genres, env.catalog)

    def __call__(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], ids: list[int]
    ) -> TurnConstraint | None:
        """The grammar of the served reply to ``messages`` (OpenAI format) with ``tools`` offered under tool choice
        auto (None: no grammar); ``ids`` are the rollout's tokens so far, which must be the served prompt's."""
        from langchain_core.messages import convert_to_messages

        from recagent.agents.call_ids import conversation_call_ids

        lc = convert_to_messages(messages)
        call_ids = conversation_call_ids(lc, self.users, self.items, catalog_genres=self.genres, catalog=self.catalog)
        job = self.chat.decode_job(lc, tools=tools, tool_choice="auto", call_ids=call_ids)
        if job.ids != list(ids):
            if any(m.get("role") == "assistant" for m in messages):
                return None  # a sampled turn written otherwise than the served rendering of it: sample freely
            raise RuntimeError(
                "the rollout's prompt is not the served prompt for the same messages (train/serve skew in "
                "recagent.agents.prompt_format): cannot decode it under the served grammar"
            )
        return TurnConstraint(job.grammar, frozenset(job.eos_ids)) if job.grammar is not None else None
