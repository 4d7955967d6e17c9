"""Multi-turn evaluation with a simulated user (InteRecAgent / iEvaLM style) and an audit that it never leaks the target.

The simulated user wants one held-out item. It knows the item's attributes (genres, decade,
whether it is popular) but is never given the title, and reveals one attribute per turn or
answers the agent's question from them. Success = the target's id is among the agent's
recommendations within ``max_turns`` turns. Offline the simulator is deterministic
(:class:`AttributeSimulator`); with a configured chat model it is an LLM (:class:`LLMSimulator`).
Every simulator message passes :func:`leaks` before the agent sees it: a message naming the
title or the id ends the episode as a failure flagged ``leaked`` (counted, never hidden).
Every agent turn is also checked for what it shipped (:mod:`recagent.evaluation.shipped`): items
its answer text or list names that no tool had returned in the conversation by then.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from recagent.agents.steps import policy_calls
from recagent.tools.lookup_tools import normalise_title

_GENRE_Q = re.compile(r"\b(genre|genres|kind|type|sort|mood|style)\b", re.I)
_ERA_Q = re.compile(r"\b(year|years|decade|era|old|older|recent|new|newer|classic|when)\b", re.I)


@dataclass(frozen=True)
class TargetProfile:
    """The held-out item a simulated user wants: its id and title (hidden) and the attributes it may reveal."""

    item_id: str
    title: str
    year: int
    genres: tuple[str, ...]
    popular: bool  # in the most-interacted fifth of the catalog (training counts)

    @classmethod
    def from_catalog(cls, catalog, index: int, popularity: np.ndarray) -> TargetProfile:
        """Profile of catalog item ``index`` (``popularity``: training interaction counts)."""
        popular = bool(popularity[index] >= np.quantile(popularity, 0.8))
        return cls(
            catalog.ids[index], catalog.titles[index], int(catalog.years[index]), tuple(catalog.genres[index]), popular
        )

    @property
    def decade(self) -> str | None:
        """E.g. ``the 1990s``; None when the year is unknown."""
        return f"the {self.year // 10 * 10}s" if self.year else None


def leaks(text: str, target: TargetProfile) -> list[str]:
    """What in ``text`` gives the target away: its title (normalised, as words) or its id."""
    found = []
    title = normalise_title(target.title)
    if title and re.search(rf"(?<!\w){re.escape(title)}(?!\w)", normalise_title(text)):
        found.append(f"title {target.title!r}")
    if re.search(rf"(\[|\bid\W{{0,3}}|#){re.escape(target.item_id)}\b", text, re.I):
        found.append(f"id {target.item_id}")
    return found


class SimulatedUser(Protocol):
    """A user who wants one item and talks about it."""

    def opening(self) -> str:
        """The first request."""
        ...

    def reply(self, answer: str, recommended: list[str]) -> str:
        """The next message after an agent answer that missed the target."""
        ...


class AttributeSimulator:
    """Deterministic simulated user: one attribute per turn, questions answered from the attributes."""

    def __init__(self, target: TargetProfile):
        self.target = target
        self._revealed: set[str] = set()

    def _facts(self) -> list[tuple[str, str]]:
        t = self.target
        facts = [(f"genre:{g}", f"It should be {_a(g)} {g.lower()} film.") for g in t.genres[1:]]
        if t.decade:
            facts.append(("era", f"Something from {t.decade}."))
        facts.append(("popularity", "A well-known one." if t.popular else "Not a blockbuster, something lesser-known."))
        return facts

    def opening(self) -> str:
        """Ask for the target's first genre (or just a film)."""
        g = self.target.genres[0] if self.target.genres else None
        return f"Can you recommend {_a(g)} {g.lower()} film?" if g else "Can you recommend a film?"

    def reply(self, answer: str, recommended: list[str]) -> str:
        """Answer a question about genre or era from the attributes, else reveal the next attribute."""
        t = self.target
        question = answer.rstrip().endswith("?") or "?" in answer[-200:]
        if question and _GENRE_Q.search(answer) and t.genres:
            self._revealed.update(f"genre:{g}" for g in t.genres[1:])
            return "I'd like " + " and ".join(g.lower() for g in t.genres) + "."
        if question and _ERA_Q.search(answer) and t.decade:
            self._revealed.add("era")
            return f"Something from {t.decade}."
        lead = "None of those is what I have in mind. " if recommended else ""
        for key, text in self._facts():
            if key not in self._revealed:
                self._revealed.add(key)
                return lead + text
        return lead + "Can you show me different ones?"


def _a(word: str | None) -> str:
    return "an" if word and word[0].lower() in "aeiou" else "a"


class LLMSimulator:
    """An LLM plays the user from the target's attributes (never its title), through any langchain chat model."""

    PROMPT = (
        "You are a person chatting with a movie recommender. You want one specific film but you do not know its "
        "title. What you know about it: {facts}. Speak as the user, in one or two short sentences. Start by asking "
        "for a film in general terms; when the recommender asks a question, answer it from what you know; when its "
        "suggestions miss, say so and add one more thing you know. Never name a specific film."
    )

    def __init__(self, target: TargetProfile, chat_model: Any):
        self.target, self.model = target, chat_model
        facts = []
        if target.genres:
            facts.append("genres " + ", ".join(target.genres))
        if target.decade:
            facts.append(f"released in {target.decade}")
        facts.append("a well-known film" if target.popular else "a lesser-known film")
        self._history: list[Any] = []
        self._system = self.PROMPT.format(facts="; ".join(facts))

    def _ask(self, content: str) -> str:
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        # roles are flipped for the simulator's model: the recommender speaks as the human
        self._history.append(HumanMessage(content))
        out = self.model.invoke([SystemMessage(self._system), *self._history])
        text = out.text if isinstance(out.text, str) else str(out.content)
        self._history.append(AIMessage(text))
        return text.strip()

    def opening(self) -> str:
        """The model's first request."""
        return self._ask("(The recommender greets you: what are you looking for?)")

    def reply(self, answer: str, recommended: list[str]) -> str:
        """The model's answer to the recommender's message."""
        return self._ask(answer + ("\n(None of these is the film you want.)" if recommended else ""))


@dataclass
class Episode:
    """One simulated conversation: whether and when the target was recommended, and what it cost."""

    user_id: str
    target: str
    success: bool = False
    turns: int = 0  # agent turns taken (the hit turn on success, max_turns otherwise)
    leaked: list[str] = field(default_factory=list)
    tool_calls: int = 0
    llm_calls: int = 0
    tokens: int = 0
    latency_s: float = 0.0
    messages: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    shipped_items: int = 0  # distinct items each answer named or listed, summed over turns
    unsupported_shipped: list[str] = field(default_factory=list)  # of those, the ones no tool had returned (per turn)


class RecommenderAgent:
    """The conventional recommender as a chat agent (the simulator's baseline): each turn lists ``model``'s next
    ``k`` unseen items for the user, whatever the user said; it pages on, never showing an item twice."""

    def __init__(self, env, model: str, k: int = 10):
        self.env, self.model, self.k = env, model, k
        self._user: dict[str, int] = {}  # session -> user index
        self._shown: dict[str, list[int]] = {}  # session -> item indices listed so far

    def reset(self, session: str) -> None:
        """Forget the session."""
        self._user.pop(session, None)
        self._shown.pop(session, None)

    def set_user(self, session: str, user_id: str) -> None:
        """Whose history the ranking reads."""
        self._user[session] = self.env.user(user_id)

    def chat(self, message: str, session: str):
        """The next page of the ranking (the message is not read: a conventional recommender cannot)."""
        from recagent.agents.agent import TurnResult
        from recagent.tools.result_text import answer_line

        env, u = self.env, self._user[session]
        shown = self._shown.setdefault(session, [])
        exclude = np.concatenate([np.asarray(env.seen(u), dtype=np.int64), np.asarray(shown, dtype=np.int64)])
        top, _ = env.model(self.model).topk(env.query(u, env.history(u)), self.k, exclude=exclude)
        shown += [int(i) for i in top]
        cat = env.catalog
        lines = [answer_line(cat.ids[int(i)], cat.display(int(i)), cat.genres[int(i)]) for i in top]
        ids = [cat.ids[int(i)] for i in top]
        # every listed item comes from the recommender, as the agent's fallback fill does: none is unsupported
        return TurnResult(answer="\n".join(lines), recommended=ids, filled=len(ids))


def run_episode(
    agent, simulator: SimulatedUser, target: TargetProfile, user_id: str, max_turns: int, session: str, catalog
) -> Episode:
    """Converse until the target is recommended, ``max_turns`` pass, or the simulator leaks the target."""
    import time

    from recagent.evaluation.shipped import classify_shipped, tool_result_ids

    ep = Episode(user_id=user_id, target=target.item_id)
    message = simulator.opening()
    grounded: set[str] = set()  # every id a tool returned in this conversation so far
    try:
        agent.reset(session)
        agent.set_user(session, user_id)
        for turn in range(1, max_turns + 1):
            found = leaks(message, target)
            ep.messages.append({"role": "user", "content": message})
            if found:
                ep.leaked = found
                break
            t0 = time.perf_counter()
            out = agent.chat(message, session=session)
            ep.latency_s += time.perf_counter() - t0
            ep.turns = turn
            ep.tool_calls += len(policy_calls(out.trace))
            ep.llm_calls += out.usage.get("llm_calls", 0)
            ep.tokens += out.usage.get("input_tokens", 0) + out.usage.get("output_tokens", 0)
            grounded.update(tool_result_ids(out.trace))
            shipped = classify_shipped(out.recommended, out.filled, grounded, catalog, answer=out.answer)
            ep.shipped_items += len(shipped.items)
            ep.unsupported_shipped += shipped.unsupported
            ep.messages.append(
                {
                    "role": "assistant",
                    "content": out.answer,
                    "recommended": out.recommended,
                    "unsupported_shipped": shipped.unsupported,
                }
            )
            if target.item_id in out.recommended:
                ep.success = True
                break
            message = simulator.reply(out.answer, out.recommended)
    except Exception as e:  # a failing turn ends this episode as a failure; the run goes on
        ep.error = f"{type(e).__name__}: {e}"[:300]
    finally:
        agent.reset(session)
    return ep
