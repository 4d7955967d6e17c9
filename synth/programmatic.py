"""The offline generator: catalog-grounded dialog plans played by a user, an assistant and the real tools.

Each *plan* is one way a conversation of a given kind can go (a single search, two
parallel lookups, look-up -> similar -> filter -> rank, a clarifying question before a
call, a refusal when no offered tool fits). The user side speaks from a :class:`UserTask`
(a real user's history and a held-out target described by its genres, era and a similar
title it never names); the assistant side acts only through tool calls whose arguments come
from the user's words and from earlier results; the tool side is the real tool registry.
A plan that cannot complete on real data (an empty filter result, a failed call) raises
:class:`GenerationFailed` and the attempt is dropped, never patched.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from recagent.agents.grounding import citation
from recagent.agents.prompts import CHAT
from recagent.synth import phrasing as ph
from recagent.synth.builder import DialogBuilder, GenerationFailed
from recagent.synth.sample import Sample
from recagent.synth.tasks import UserTask
from recagent.synth.tool_pool import DOMAIN_NOUNS, OfferedTools, ToolPool, ToolVariant
from recagent.tools.env import ToolEnv
from recagent.tools.toolkit import ToolRegistry

SET_NAMES = ["picks", "shortlist", "recs", "pool", "matches", "cands", "similar", "mine"]
OUT_OF_SCOPE: dict[str, list[str]] = {
    "tickets": ["Can you book two tickets for {t} tonight?", "Where is {t} showing near me this weekend?"],
    "reviews": ["What did the critics say about {t}?", "Show me reviews of {t}."],
    "watchlist": ["Add {t} to my watchlist.", "Please save {t} to my list for later."],
    "rating": ["Rate {t} five stars for me.", "I want to give {t} a 2 out of 5."],
    "streaming": ["Where can I stream {t}?", "Is {t} on any streaming service in Germany?"],
    "cast": ["Who starred in {t}?", "Who directed {t}?"],
    "purchase": ["Buy me a copy of {t}.", "Order {t} for me, please."],
    "weather": ["What's the weather like tomorrow?", "Will it rain this evening?"],
    "translation": ["Translate 'good evening' into French.", "How do you say 'thank you' in Japanese?"],
}


@dataclass
class PlanContext:
    """What a plan works with: the task, the builder, the offered tools and a seeded RNG."""

    task: UserTask
    env: ToolEnv
    b: DialogBuilder
    rng: random.Random
    domain: str
    user_known: bool  # the system prompt names the user
    noun: str = ""
    nouns: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.noun, self.nouns = DOMAIN_NOUNS[self.domain]

    # -- target attributes ------------------------------------------------------------------------------------------

    @property
    def catalog(self):
        return self.env.catalog

    def target_genres(self, n: int = 2) -> list[str]:
        genres = list(self.catalog.genres[self.task.target]) or ["Drama"]
        return self.rng.sample(genres, min(n, len(genres)))

    def target_era(self) -> tuple[int | None, int | None]:
        year = int(self.catalog.years[self.task.target])
        if not year:
            return None, None
        style = self.rng.random()
        d = ph.decade(year)
        if style < 0.6:
            return d, d + 9
        return (d, None) if style < 0.8 else (None, d + 9)

    def similar_title(self) -> int:
        """The liked history item sharing most genres with the target (a reference the user can name)."""
        target = set(self.catalog.genres[self.task.target])
        liked = self.task.liked(15) or list(self.task.history[-5:])
        return max(liked, key=lambda i: (len(target & set(self.catalog.genres[i])), -liked.index(i)))

    def title(self, i: int) -> str:
        return ph.short_title(self.catalog.titles[i])

    def k(self) -> int:
        return self.rng.choice([3, 5, 5, 5, 8, 10])

    def set_name(self) -> str:
        return self.rng.choice(SET_NAMES)

    def uid_phrase(self) -> str:
        """How the user mentions their id when the system prompt does not."""
        if self.user_known:
            return ""
        return self.rng.choice([f"I'm user {self.task.user_id}. ", f"My user id is {self.task.user_id}. ",
                                f"(user {self.task.user_id}) "])  # fmt: skip

    # -- answers ----------------------------------------------------------------------------------------------------

    def pick(self, results: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
        """Up to ``n`` items from results, never an item this training user must not be answered with."""
        forbidden = {self.catalog.ids[i] for i in self.task.forbidden} if self.task.split == "train" else set()
        seen, out = set(), []
        for res in results:
            for it in res.get("items", []):
                if it["item_id"] in forbidden or it["item_id"] in seen:
                    continue
                seen.add(it["item_id"])
                out.append(it)
        if not out:
            raise GenerationFailed("no answerable items in the results")
        return out[:n]

    def answer(self, items: list[dict[str, Any]], lead: str | None = None) -> None:
        lead = lead or self.rng.choice([
            f"Here are some {self.nouns} you might like:", f"You could try these {self.nouns}:",
            "Based on the results, I'd suggest:", f"These {self.nouns} fit what you asked for:",
        ])  # fmt: skip
        lines = [f"{n}. {item_line(it)}" for n, it in enumerate(items, 1)]
        self.b.say(lead + "\n" + "\n".join(lines))
        tid = self.catalog.ids[self.task.target]
        self.info["answer_ids"] = [it["item_id"] for it in items]
        self.info["target_in_answer"] = tid in self.info["answer_ids"]


def item_line(it: dict[str, Any]) -> str:
    """``[id] Title (Year)`` plus genres: the citation format the agent's grounding check reads."""
    year = f" ({it['year']})" if it.get("year") else ""
    genres = ", ".join(it.get("genres", [])[:3])
    return citation(it["item_id"], f"{it['title']}{year}") + (f", {genres}" if genres else "")


# -- plans ---------------------------------------------------------------------------------------------------------

Plan = Callable[[PlanContext], None]


def _search_query(c: PlanContext) -> tuple[str, str]:
    genres = c.target_genres(c.rng.choice([1, 2]))
    lo, hi = c.target_era()
    era = ph.era_phrase(lo, hi, c.rng) if c.rng.random() < 0.6 else ""
    words = f"{ph.genres_phrase(genres, c.rng)} {c.nouns} {era}".strip()
    return words, ph.request(c.rng.choice(["some ", "a few ", "good "]) + words, c.rng)


def s_search(c: PlanContext) -> None:
    query, text = _search_query(c)
    c.b.user(text)
    res = c.b.call(("search_items", {"query": query, "k": c.k()}))
    c.answer(c.pick(res, 5))


def s_filter(c: PlanContext) -> None:
    genres = c.target_genres(c.rng.choice([1, 2]))
    lo, hi = c.target_era()
    match = "all" if len(genres) > 1 and c.rng.random() < 0.5 else "any"
    unseen = c.rng.random() < 0.5
    joined = (" and " if match == "all" else " or ").join(ph.genre_word(g, c.rng) for g in genres)
    what = f"{joined} {c.nouns} {ph.era_phrase(lo, hi, c.rng)}".strip()
    text = c.uid_phrase() * unseen + ph.request(f"{what}" + (" that I haven't seen" if unseen else ""), c.rng)
    c.b.user(text)
    args = {"genres": genres, "match": match if match == "all" else None, "year_min": lo, "year_max": hi,
            "exclude_seen_by": c.task.user_id if unseen else None, "k": c.k()}  # fmt: skip
    res = c.b.call(("filter_items", args))
    c.answer(c.pick(res, 5))


OPENER_Q = ["What are {what}?", "Show me {what}.", "Which are {what}?", "List {what}, please."]


def s_popular(c: PlanContext) -> None:
    g = c.target_genres(1)[0]
    c.b.user(c.rng.choice(OPENER_Q).format(what=f"the most popular {ph.genre_word(g, c.rng)} {c.nouns}"))
    res = c.b.call(("popular_items", {"genre": g, "k": c.k()}))
    c.answer(c.pick(res, 5))


def s_retrieve(c: PlanContext) -> None:
    c.b.user(c.uid_phrase() + ph.request(c.rng.choice([f"some {c.nouns} for me", f"my next {c.noun}",
                                                       f"{c.nouns} I would enjoy"]), c.rng))  # fmt: skip
    res = c.b.call(("retrieve_for_user", {"user_id": c.task.user_id, "k": c.k()}))
    c.answer(c.pick(res, 5), lead=f"Based on your history, you might enjoy these {c.nouns}:")


def s_get_item(c: PlanContext) -> None:
    i = c.similar_title()
    c.b.user(c.rng.choice(["Tell me about {t}.", "What kind of {n} is {t}?", "When did {t} come out?",
                           "What genre is {t}?"]).format(t=c.title(i), n=c.noun))  # fmt: skip
    res = c.b.call(("get_item", {"title": c.title(i)}))[0]
    it = res["item"]
    c.b.say(f"{item_line(it)}: a {', '.join(g.lower() for g in it['genres']) or 'uncategorised'} {c.noun}"
            f"{' from ' + str(it['year']) if it.get('year') else ''}, with {res['popularity']} interactions in the data.")


def s_history(c: PlanContext) -> None:
    n = c.rng.choice([3, 5])
    c.b.user(c.uid_phrase() + c.rng.choice([f"What were the last {n} {c.nouns} I watched?",
                                            f"Remind me of my {n} most recent {c.nouns}."]))  # fmt: skip
    res = c.b.call(("get_user_history", {"user_id": c.task.user_id, "last_n": n}))[0]
    fav = ", ".join(res["favourite_genres"])
    lines = "\n".join(f"{j}. {item_line(it)}" for j, it in enumerate(res["items"], 1))
    c.b.say(f"Your most recent {c.nouns} (newest last):\n{lines}\nYour favourite genres are {fav}.")


def p_popular2(c: PlanContext) -> None:
    genres = list(c.catalog.genres[c.task.target])
    extra = [g for g in c.catalog.all_genres if g not in genres and g != "unknown"]
    pair = (genres[:1] or ["Drama"]) + [c.rng.choice(extra)]
    c.rng.shuffle(pair)
    words = [ph.genre_word(g, c.rng) for g in pair]
    c.b.user(ph.request(f"popular {c.nouns}: a few {words[0]} ones and a few {words[1]} ones", c.rng))
    k = c.rng.choice([3, 4, 5])
    res = c.b.call(*[("popular_items", {"genre": g, "k": k}) for g in pair])
    items = [c.pick([r], 3) for r in res]
    body = "\n\n".join(f"{w.capitalize()}:\n" + "\n".join(f"- {item_line(it)}" for it in its) for w, its in zip(words, items))
    c.b.say(f"Popular picks in both genres:\n{body}")
    c.info["answer_ids"] = [it["item_id"] for its in items for it in its]


def p_items2(c: PlanContext) -> None:
    liked = list(dict.fromkeys(c.task.liked(6)))
    if len(liked) < 2:
        raise GenerationFailed("needs two liked items")
    a, b = c.rng.sample(liked, 2)
    if c.title(a) == c.title(b):
        raise GenerationFailed("same title twice")
    c.b.user(c.rng.choice(["Which is older, {a} or {b}?", "What genres are {a} and {b}?",
                           "Tell me about {a} and {b}."]).format(a=c.title(a), b=c.title(b)))  # fmt: skip
    res = c.b.call(("get_item", {"title": c.title(a)}), ("get_item", {"title": c.title(b)}))
    lines = [f"- {item_line(r['item'])}" for r in res]
    c.b.say("Here they are:\n" + "\n".join(lines))


def p_search_filter(c: PlanContext) -> None:
    query, _ = _search_query(c)
    genres = c.target_genres(1)
    lo, hi = c.target_era()
    c.b.user(ph.request(f"{query}; also show me the most popular {ph.genre_word(genres[0], c.rng)} {c.nouns} "
                        f"{ph.era_phrase(lo, hi, c.rng)}".rstrip(), c.rng))  # fmt: skip
    k = c.rng.choice([3, 5])
    res = c.b.call(("search_items", {"query": query, "k": k}),
                   ("filter_items", {"genres": genres, "year_min": lo, "year_max": hi, "k": k}))  # fmt: skip
    first, second = c.pick([res[0]], 3), c.pick([res[1]], 3)
    c.b.say("Matching your description:\n" + "\n".join(f"- {item_line(it)}" for it in first)
            + "\n\nMost popular in that genre and era:\n" + "\n".join(f"- {item_line(it)}" for it in second))  # fmt: skip
    c.info["answer_ids"] = [it["item_id"] for it in first + second]


def p_models(c: PlanContext) -> None:
    models = [m for m in ("sasrec", "bpr", "itemknn", "pop") if m in c.env.models]
    if len(models) < 2:
        raise GenerationFailed("needs two recommenders")
    m1, m2 = c.rng.sample(models, 2)
    c.b.user(c.uid_phrase() + f"Compare what the {m1} and {m2} recommenders suggest for me.")
    k = c.rng.choice([3, 5])
    res = c.b.call(("retrieve_for_user", {"user_id": c.task.user_id, "model": m1, "k": k}),
                   ("retrieve_for_user", {"user_id": c.task.user_id, "model": m2, "k": k}))  # fmt: skip
    a, b = c.pick([res[0]], k), c.pick([res[1]], k)
    c.b.say(f"{m1}:\n" + "\n".join(f"- {item_line(it)}" for it in a) + f"\n\n{m2}:\n"
            + "\n".join(f"- {item_line(it)}" for it in b))  # fmt: skip
    c.info["answer_ids"] = [it["item_id"] for it in a + b]


def c_similar(c: PlanContext, rank: bool = False) -> None:
    i = c.similar_title()
    c.b.user(c.uid_phrase() * rank + ph.request(f"{c.nouns} like {c.title(i)}", c.rng))
    found = c.b.call(("get_item", {"title": c.title(i)}))[0]
    name = c.set_name() if rank else None
    k = c.k()
    res = c.b.call(("similar_items", {"item_ids": [found["item"]["item_id"]], "k": k if not rank else 20, "save_as": name}))
    if rank:
        res = c.b.call(("rank_items", {"user_id": c.task.user_id, "candidates": name, "k": k}))
    c.answer(c.pick(res, 5))


def c_similar_rank(c: PlanContext) -> None:
    c_similar(c, rank=True)


def c_retrieve_filter(c: PlanContext) -> None:
    genres = c.target_genres(1)
    c.b.user(c.uid_phrase() + ph.request(f"{ph.genre_word(genres[0], c.rng)} {c.nouns} picked for my taste", c.rng))
    name = c.set_name()
    c.b.call(("retrieve_for_user", {"user_id": c.task.user_id, "k": c.rng.choice([5, 10]), "save_as": name}))
    res = c.b.call(("filter_items", {"genres": genres, "candidates": name, "sort_by": "input", "k": c.k()}))
    c.answer(c.pick(res, 5))


def c_search_prefer(c: PlanContext) -> None:
    query, text = _search_query(c)
    genres = c.target_genres(1)
    lo, hi = c.target_era()
    c.b.user(c.uid_phrase() + text)
    name = c.set_name()
    c.b.call(("search_items", {"query": query, "k": c.rng.choice([10, 20]), "save_as": name}))
    res = c.b.call(("rank_by_preference", {"user_id": c.task.user_id, "candidates": name, "prefer_genres": genres,
                                           "year_min": lo, "year_max": hi, "k": c.k()}))  # fmt: skip
    c.answer(c.pick(res, 5))


def c_history_similar(c: PlanContext) -> None:
    c.b.user(c.uid_phrase() + ph.request(f"more {c.nouns} like the ones I watched recently", c.rng))
    hist = c.b.call(("get_user_history", {"user_id": c.task.user_id, "last_n": c.rng.choice([5, 10])}))[0]
    best = sorted(hist["items"], key=lambda it: -it["rating"])[: c.rng.choice([1, 2, 3])]
    res = c.b.call(("similar_items", {"item_ids": [it["item_id"] for it in best], "k": c.k()}))
    c.answer(c.pick(res, 5))


def c_deep(c: PlanContext) -> None:
    i = c.similar_title()
    lo, hi = c.target_era()
    if lo is None and hi is None:
        raise GenerationFailed("target has no year")
    c.b.user(c.uid_phrase() + ph.request(f"{c.nouns} like {c.title(i)}, {ph.era_phrase(lo, hi, c.rng)}, ranked for me", c.rng))
    found = c.b.call(("get_item", {"title": c.title(i)}))[0]
    s1, s2 = c.rng.sample(SET_NAMES, 2)
    c.b.call(("similar_items", {"item_ids": [found["item"]["item_id"]], "k": 20, "save_as": s1}))
    c.b.call(("filter_items", {"candidates": s1, "year_min": lo, "year_max": hi, "sort_by": "input", "k": 10, "save_as": s2}))
    res = c.b.call(("rank_items", {"user_id": c.task.user_id, "candidates": s2, "k": c.k()}))
    c.answer(c.pick(res, 5))


def c_refine(c: PlanContext) -> None:
    c.b.user(c.uid_phrase() + ph.request(f"some {c.nouns} for me", c.rng))
    name = c.set_name()
    first = c.b.call(("retrieve_for_user", {"user_id": c.task.user_id, "k": 5, "save_as": name}))
    c.answer(c.pick(first, 3))
    g = c.target_genres(1)[0]
    c.b.user(c.rng.choice(["Hmm, anything more {g}?", "Can you narrow it to {g} ones?", "Only {g} {n}, please."])
             .format(g=ph.genre_word(g, c.rng), n=c.nouns))  # fmt: skip
    res = c.b.call(("filter_items", {"genres": [g], "candidates": name, "sort_by": "input", "k": c.k()}))
    c.answer(c.pick(res, 5))


def cl_user(c: PlanContext) -> None:
    c.b.user(ph.request(f"{c.nouns} based on what I've watched before", c.rng))
    c.b.say(c.rng.choice(["Sure! What is your user id?", "Happy to. Which user id are you?",
                          "I can do that with your history. What's your user id?"]))  # fmt: skip
    c.b.user(c.rng.choice(["It's {u}.", "{u}", "User {u}.", "My id is {u}."]).format(u=c.task.user_id))
    res = c.b.call(("retrieve_for_user", {"user_id": c.task.user_id, "k": c.k()}))
    c.answer(c.pick(res, 5))


def cl_title(c: PlanContext) -> None:
    c.b.user(ph.request(f"{c.nouns} similar to one I loved", c.rng))
    c.b.say(c.rng.choice([f"Which {c.noun} was it?", f"Sure, which {c.noun} did you love?",
                          f"Tell me the title of the {c.noun} and I'll find similar ones."]))  # fmt: skip
    i = c.similar_title()
    c.b.user(c.rng.choice(["{t}", "It was {t}.", "{t}, definitely."]).format(t=c.title(i)))
    found = c.b.call(("get_item", {"title": c.title(i)}))[0]
    res = c.b.call(("similar_items", {"item_ids": [found["item"]["item_id"]], "k": c.k()}))
    c.answer(c.pick(res, 5))


def cl_history(c: PlanContext) -> None:
    c.b.user(c.rng.choice([f"What {c.nouns} did I watch last?", "Show me my recent history."]))
    c.b.say(c.rng.choice(["Sure, what's your user id?", "Which user id should I look up?"]))
    c.b.user(c.rng.choice(["{u}", "I'm {u}.", "User id {u}."]).format(u=c.task.user_id))
    res = c.b.call(("get_user_history", {"user_id": c.task.user_id, "last_n": 5}))[0]
    lines = "\n".join(f"{j}. {item_line(it)}" for j, it in enumerate(res["items"], 1))
    c.b.say(f"Your most recent {c.nouns} (newest last):\n{lines}")


def n_out_of_scope(c: PlanContext) -> None:
    topic = c.info["topic"]
    c.b.user(c.rng.choice(OUT_OF_SCOPE[topic]).format(t=c.title(c.similar_title())))
    can = sorted({v.schema["function"]["description"].rstrip(".").lower() for v in c.info["offered_real"]})[:3]
    c.b.say(c.rng.choice(["Sorry, I can't do that: none of my tools covers it.", "I'm afraid that is outside what my tools can do."])
            + (" What I can do: " + "; ".join(can) + "." if can else ""))  # fmt: skip


def n_greeting(c: PlanContext) -> None:
    c.b.user(c.rng.choice(["Hi! What can you do?", "Hello, how can you help me?", "What are you able to do for me?"]))
    can = [v.schema["function"]["description"].rstrip(".") for v in c.info["offered_real"]][:4]
    c.b.say(f"I help you find {c.nouns}. With my tools I can: " + "; ".join(can) + ". What are you in the mood for?")


PLANS: dict[str, list[tuple[str, tuple[str, ...], Plan]]] = {
    "single": [
        ("search", ("search_items",), s_search), ("filter", ("filter_items",), s_filter),
        ("popular", ("popular_items",), s_popular), ("retrieve", ("retrieve_for_user",), s_retrieve),
        ("get_item", ("get_item",), s_get_item), ("history", ("get_user_history",), s_history),
    ],
    "parallel": [
        ("popular2", ("popular_items",), p_popular2), ("items2", ("get_item",), p_items2),
        ("search_filter", ("search_items", "filter_items"), p_search_filter),
        ("models", ("retrieve_for_user",), p_models),
    ],
    "chain": [
        ("similar", ("get_item", "similar_items"), c_similar),
        ("similar_rank", ("get_item", "similar_items", "rank_items"), c_similar_rank),
        ("retrieve_filter", ("retrieve_for_user", "filter_items"), c_retrieve_filter),
        ("search_prefer", ("search_items", "rank_by_preference"), c_search_prefer),
        ("history_similar", ("get_user_history", "similar_items"), c_history_similar),
        ("deep", ("get_item", "similar_items", "filter_items", "rank_items"), c_deep),
        ("refine", ("retrieve_for_user", "filter_items"), c_refine),
    ],
    "clarify": [
        ("ask_user", ("retrieve_for_user",), cl_user), ("ask_title", ("get_item", "similar_items"), cl_title),
        ("ask_history", ("get_user_history",), cl_history),
    ],
    "no_tool": [("out_of_scope", (), n_out_of_scope), ("greeting", (), n_greeting)],
}  # fmt: skip
NEEDS_USER_ID = {"retrieve", "history", "models", "similar_rank", "retrieve_filter", "search_prefer",
                 "history_similar", "deep", "refine"}  # fmt: skip


@dataclass
class GenRequest:
    """One generation attempt: which kind, split, user task and domain, with its seeded RNG."""

    attempt: int
    kind: str
    split: str
    task: UserTask
    domain: str
    heldout_tools: bool
    rng: random.Random
    tools_per_dialog: tuple[int, int] = (3, 8)
    max_distractors: int = 2


class ProgrammaticGenerator:
    """Offline, template-driven multi-agent dialog generator over the real tools."""

    name = "programmatic"

    def __init__(self, env: ToolEnv, registry_factory: Callable[[ToolEnv], ToolRegistry], pool: ToolPool, dataset: str):
        self.env, self.registry_factory, self.pool, self.dataset = env, registry_factory, pool, dataset

    def offer(self, req: GenRequest, cores: tuple[str, ...], topic: str | None = None) -> list[ToolVariant]:
        """The tools offered in a dialog: the plan's tools, some others and a few distractors, shuffled."""
        rng = req.rng
        lo, hi = req.tools_per_dialog
        others = [c for c in self.pool.variants if c not in cores]
        n_other = max(0, rng.randint(lo, hi) - len(cores))
        chosen = list(cores) + rng.sample(others, min(n_other, len(others)))
        offered = [self.pool.for_core(c, req.split, req.domain, rng, req.heldout_tools) for c in chosen]
        distractors = [d for d in self.pool.distractors if d.topic != topic]
        n_d = rng.randint(min(1 if req.kind == "no_tool" else 0, req.max_distractors), req.max_distractors)
        offered += rng.sample(distractors, min(n_d, len(distractors)))
        rng.shuffle(offered)
        return offered

    def generate(self, req: GenRequest) -> Sample:
        """Play one dialog of ``req.kind``; raises :class:`GenerationFailed` when real data does not allow it."""
        rng = req.rng
        plan_name, cores, plan = rng.choice(PLANS[req.kind])
        topic = rng.choice(list(OUT_OF_SCOPE)) if plan_name == "out_of_scope" else None
        variants = self.offer(req, cores, topic)
        session = self.env.session()
        offered = OfferedTools(variants, self.registry_factory(session))
        b = DialogBuilder(offered, session.catalog, f"{req.attempt}")
        user_known = req.kind not in ("clarify", "no_tool") and plan_name in NEEDS_USER_ID and rng.random() < 0.5
        noun = DOMAIN_NOUNS[req.domain][0]
        about = f" About the user: the user is user_id {req.task.user_id} of the dataset." if user_known else ""
        b.system(CHAT.format(dataset=self.dataset, user=about).replace("movie recommender", f"{noun} recommender"))
        ctx = PlanContext(req.task, session, b, rng, req.domain, user_known)
        ctx.info.update(topic=topic, offered_real=[v for v in variants if v.core is not None])
        plan(ctx)
        if req.kind != "no_tool" and rng.random() < 0.15:  # a closing no-tool turn
            b.user(rng.choice(ph.THANKS))
            b.say(rng.choice(ph.WELCOME))
        tid = session.catalog.ids[req.task.target]
        seen = b.seen_ids
        return Sample(
            messages=b.messages,
            tools=offered.schemas(),
            kind=req.kind,
            split=req.split,
            user_id=req.task.user_id,
            target_item=tid,
            domain=req.domain,
            tool_variants={v.name: v.describe() for v in variants},
            attempt=req.attempt,
            generator=self.name,
            steps=[s.to_dict() for s in b.steps],
            extra={"plan": plan_name, "target_in_results": tid in seen,
                   "answer_ids": ctx.info.get("answer_ids", []), "topic": topic},
        )  # fmt: skip
