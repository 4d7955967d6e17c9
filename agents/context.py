"""Keep a conversation within the policy's context window: whole turns, newest first.

langchain-core's ``trim_messages`` may cut at any human message, including the answer check's
feedback inside the turn being answered; the agent needs whole turns (a tool call stays with its
results) and must never drop the current turn, so the cut is chosen here. Tokens are counted with
langchain-core's ``count_tokens_approximately`` (about 4 characters a token), which needs no tokenizer.
"""

from __future__ import annotations

from langchain_core.messages import AnyMessage, HumanMessage
from langchain_core.messages.utils import count_tokens_approximately

FEEDBACK = "recagent_feedback"  # marks human messages written by the answer check, not by the user


def turn_starts(messages: list[AnyMessage]) -> list[int]:
    """Indices of the user's own messages (each opens a turn)."""
    return [i for i, m in enumerate(messages) if isinstance(m, HumanMessage) and not m.additional_kwargs.get(FEEDBACK)]


def trim_turns(messages: list[AnyMessage], budget: int | None) -> list[AnyMessage]:
    """The latest whole turns that fit in ``budget`` tokens; the current turn is always kept whole."""
    starts = turn_starts(messages)
    if budget is None or len(starts) < 2:
        return messages
    keep, used = starts[-1], count_tokens_approximately(messages[starts[-1] :])
    for begin, end in zip(reversed(starts[:-1]), reversed(starts[1:])):
        used += count_tokens_approximately(messages[begin:end])
        if used > budget:
            break
        keep = begin
    return messages[keep:]
