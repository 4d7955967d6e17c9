"""Stage 1, the tool pool: the real tools, evolved variants with real code behind them, and distractors.

ToolACE evolves an API pool so a model learns to read schemas instead of memorising names.
Our tools are executable, so every evolved variant stays executable: a :class:`ToolVariant`
is a new *surface* (name, parameter names, descriptions, catalog enums, domain wording,
extra optional parameters) over one core tool of the registry, and :class:`OfferedTools`
translates a call on that surface back to the core tool and runs it (both live in the tool
layer, :mod:`recagent.tools.variants`, and are re-exported here). Extra parameters are
implemented for real (``exclude_item_ids`` post-filters the core result). Distractors are
look-alike schemas with no implementation, offered only so that "no tool fits" is learnable;
calling one is an error.
"""

from __future__ import annotations

import copy
import random
import re
from dataclasses import dataclass
from typing import Any

from recagent.tools.schemas import ITEM_ID_DESCRIPTION
from recagent.tools.toolkit import ToolRegistry
from recagent.tools.variants import EXCLUDE_PARAM, OfferedTools, Origin, ToolVariant  # noqa: F401  (re-exported)

# How each domain names an item; the original tools speak of generic "items" in a movie catalog.
DOMAIN_NOUNS: dict[str, tuple[str, str]] = {
    "movies": ("movie", "movies"),
    "films": ("film", "films"),
    "books": ("book", "books"),
    "music": ("track", "tracks"),
}

# Alternative function names per core tool; "{n}" is the domain's plural noun.
NAME_SYNONYMS: dict[str, list[str]] = {
    "search_items": ["search_{n}", "semantic_search", "find_{n}_by_description", "query_catalog", "lookup_{n}"],
    "filter_items": ["filter_{n}", "browse_{n}", "filter_catalog", "find_{n}_by_attributes", "select_{n}"],
    "retrieve_for_user": ["recommend_for_user", "personal_{n}", "user_recommendations", "suggest_{n}", "for_you"],
    "similar_items": ["similar_{n}", "more_like_these", "find_related_{n}", "neighbours_of", "related_items"],
    "popular_items": ["popular_{n}", "top_{n}", "trending_{n}", "most_watched", "bestsellers"],
    "rank_items": ["rank_{n}", "score_candidates", "order_for_user", "personal_ranking", "sort_by_taste"],
    "rank_by_preference": [
        "rank_with_preferences",
        "rerank_{n}",
        "preference_ranking",
        "tailor_ranking",
        "rank_by_taste",
    ],
    "get_item": ["get_{s}", "item_details", "lookup_title", "{s}_info", "find_{s}"],
    "get_user_history": ["user_history", "get_watch_history", "recent_{n}_of_user", "user_activity", "history_of"],
    "get_candidates": ["show_candidates", "read_set", "get_saved_{n}", "candidate_set", "list_saved"],
}

# More names per core tool, composed as "{verb}_{object}", for the extra variants of a large pool: with a few names per
# tool a small model learns the names, not the descriptions (the shipped policy matched 0 of 24 calls on held-out
# variants after training on 4 names per tool), so many names make the name a weak cue and the description the one
# to read.
NAME_PARTS: dict[str, tuple[list[str], list[str]]] = {
    "search_items": (
        ["search", "find", "lookup", "query", "match"],
        ["{n}_by_text", "{n}_by_description", "catalog_text", "{n}_semantic", "by_keywords"],
    ),
    "filter_items": (
        ["filter", "browse", "select", "list", "narrow"],
        ["{n}_by_genre", "catalog", "{n}_by_year", "by_attributes", "{n}_by_era"],
    ),
    "retrieve_for_user": (
        ["recommend", "suggest", "personalize", "pick", "retrieve"],
        ["{n}_for_user", "for_member", "user_{n}", "for_customer", "for_listener"],
    ),
    "similar_items": (
        ["similar", "related", "find_similar", "neighbour", "lookalike"],
        ["{n}", "to_{n}", "{n}_of", "titles", "{n}_like_these"],
    ),
    "popular_items": (
        ["popular", "top", "trending", "most_liked", "bestselling"],
        ["{n}", "{n}_now", "{n}_by_genre", "charts", "overall"],
    ),
    "rank_items": (
        ["rank", "score", "order", "sort", "predict"],
        ["{n}_for_user", "candidates", "by_user_taste", "candidate_{n}", "pool_for_user"],
    ),
    "rank_by_preference": (
        ["rank", "rerank", "tailor", "adjust", "boost"],
        ["by_preferences", "with_likes", "to_taste", "by_genre_and_era", "with_constraints"],
    ),
    "get_item": (
        ["get", "lookup", "describe", "fetch", "show"],
        ["{s}", "{s}_details", "{s}_info", "title", "{s}_by_title"],
    ),
    "get_user_history": (
        ["get", "fetch", "read", "show", "list"],
        ["user_history", "watch_history", "user_activity", "recent_{n}", "past_{n}"],
    ),
    "get_candidates": (
        ["show", "read", "get", "load", "open"],
        ["saved_set", "candidates", "saved_{n}", "candidate_list", "stored_{n}"],
    ),
}


def composed_names(core: str) -> list[str]:
    """The composed name templates of ``core`` ("{verb}_{object}"; "{s}"/"{n}" are the domain nouns)."""
    verbs, objects = NAME_PARTS.get(core, ([], []))
    return [f"{v}_{o}" for v in verbs for o in objects]


# Alternative parameter names (the core name is kept in the variant's mapping).
PARAM_SYNONYMS: dict[str, list[str]] = {
    "query": ["text", "description", "q", "request"],
    "k": ["limit", "top_n", "count", "n"],
    "user_id": ["uid", "user", "customer_id", "member_id"],
    "item_id": ["id", "{s}_id"],
    "item_ids": ["ids", "seed_ids", "{s}_ids"],
    "title": ["name", "{s}_title"],
    "genres": ["categories", "genre_list", "tags"],
    "genre": ["category", "tag"],
    "year_min": ["released_after", "from_year", "min_year"],
    "year_max": ["released_before", "to_year", "max_year"],
    "exclude_seen_by": ["unseen_by", "not_seen_by_user"],
    "candidates": ["candidate_set", "from_set", "pool"],
    "save_as": ["store_as", "remember_as", "set_name"],
    "last_n": ["recent", "how_many"],
    "history": ["liked_ids", "history_ids", "seed_history"],
    "prefer_genres": ["wanted_genres", "boost_genres"],
    "avoid_genres": ["unwanted_genres", "skip_genres"],
    "name": ["set_name", "candidate_set"],
}

# Description rewrites per core tool ("{s}"/"{n}" are the domain nouns); ToolACE's "different descriptions".
DESCRIPTIONS: dict[str, list[str]] = {
    "search_items": [
        "Find {n} whose title, year and genres match a free-text description.",
        "Semantic search of the {s} catalog by what the user describes in words.",
    ],
    "filter_items": [
        "List {n} with given genres and release years, optionally unseen by a user.",
        "Browse the catalog by genre and era; results ordered by popularity unless told otherwise.",
    ],
    "retrieve_for_user": [
        "Personalised {s} recommendations for a known user, from their past activity.",
        "Suggest {n} a given user has not seen yet, using a trained recommender.",
    ],
    "similar_items": [
        "Find {n} similar to the given ones (people who liked these also liked...).",
        "Neighbours of one or more {n}, by co-consumption or by description.",
    ],
    "popular_items": [
        "The most popular {n}, overall or in one genre.",
        "Top {n} by number of interactions, optionally for a single genre.",
    ],
    "rank_items": [
        "Order candidate {n} by how much a user (or a history of liked {n}) would like them.",
        "Score and sort a list of candidate {n} for a user with a recommender.",
    ],
    "rank_by_preference": [
        "Rank candidate {n} for a user, boosting wanted genres or an era.",
        "Re-rank candidates mixing the recommender with stated likes and dislikes.",
    ],
    "get_item": [
        "Details of one {s} by id or by (approximate) title.",
        "Look up a {s}: title, year, genres and popularity.",
    ],
    "get_user_history": [
        "The {n} a user interacted with most recently, and their favourite genres.",
        "Recent activity of a user, newest last.",
    ],
    "get_candidates": ["Show the {n} of a candidate set saved earlier.", "Read back a saved list of candidate {n}."],
}

LIST_TOOLS = {"search_items", "filter_items", "retrieve_for_user", "similar_items", "popular_items"}
GENRE_PARAMS = {"genres": "array", "genre": "string", "prefer_genres": "array", "avoid_genres": "array"}


@dataclass(frozen=True)
class Distractor:
    """An unimplemented look-alike tool and the topic of requests it would serve."""

    name: str
    topic: str
    description: str
    parameters: dict[str, Any]


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


_S, _I = {"type": "string"}, {"type": "integer"}
DISTRACTORS: tuple[Distractor, ...] = (
    Distractor(
        "get_showtimes",
        "tickets",
        "Cinema showtimes for a {s} in a city on a date.",
        _obj({"item_id": _S, "city": _S, "date": {"type": "string", "format": "date"}}, ["item_id", "city"]),
    ),
    Distractor(
        "book_tickets",
        "tickets",
        "Book seats for a showtime.",
        _obj({"showtime_id": _S, "seats": {"type": "integer", "minimum": 1}}, ["showtime_id", "seats"]),
    ),
    Distractor("get_reviews", "reviews", "Critic reviews of a {s}.", _obj({"item_id": _S, "limit": _I}, ["item_id"])),
    Distractor(
        "add_to_watchlist",
        "watchlist",
        "Add a {s} to a user's saved list.",
        _obj({"user_id": _S, "item_id": _S}, ["user_id", "item_id"]),
    ),
    Distractor(
        "rate_item",
        "rating",
        "Store a user's rating of a {s}.",
        _obj(
            {"user_id": _S, "item_id": _S, "stars": {"type": "integer", "minimum": 1, "maximum": 5}},
            ["user_id", "item_id", "stars"],
        ),
    ),
    Distractor(
        "check_streaming",
        "streaming",
        "Where a {s} can be streamed in a country.",
        _obj({"item_id": _S, "country": _S}, ["item_id", "country"]),
    ),
    Distractor("get_cast", "cast", "Cast and crew of a {s}.", _obj({"item_id": _S}, ["item_id"])),
    Distractor(
        "buy_item",
        "purchase",
        "Buy a copy of a {s}.",
        _obj({"item_id": _S, "quantity": {"type": "integer", "minimum": 1}}, ["item_id"]),
    ),
)


@dataclass
class ToolPool:
    """Every variant of every core tool, and the distractors, for one catalog."""

    variants: dict[str, list[ToolVariant]]  # core name -> variants (the original first)
    distractors: list[ToolVariant]

    def for_core(self, core: str, split: str, domain: str, rng: random.Random, heldout: bool = False) -> ToolVariant:
        """A variant of ``core`` for a dialog: held-out ones only for test dialogs that ask for them."""
        every = self.variants[core]
        in_domain = [v for v in every if v.domain == domain or v.origin == "original"]
        if split == "test" and heldout:  # held-out surfaces are few: take one from another domain if need be
            options = [v for v in in_domain if v.heldout] or [v for v in every if v.heldout]
            if options:
                return rng.choice(options)
        return rng.choice([v for v in in_domain if not v.heldout])

    def all_variants(self) -> list[ToolVariant]:
        """Every implemented variant."""
        return [v for vs in self.variants.values() for v in vs]

    def heldout_names(self) -> set[str]:
        """Names of the variants reserved for testing."""
        return {v.name for v in self.all_variants() if v.heldout}


def _domain_text(text: str, domain: str) -> str:
    s, n = DOMAIN_NOUNS[domain]
    return text.replace("{s}", s).replace("{n}", n)


def _retarget(text: str, domain: str) -> str:
    """Reword a core description for a domain ('items' -> 'books')."""
    s, n = DOMAIN_NOUNS[domain]
    text = re.sub(r"\bitems\b", n, text)
    text = re.sub(r"\bitem\b", s, text)
    return text.replace("film", s) if domain in ("books", "music") else text


def _genre_enum(schema: dict[str, Any], genres: list[str]) -> None:
    """Restrict a string (or the items of an array of strings) to the catalog's genres, in place."""
    target = schema.get("items", schema) if schema.get("type") == "array" else schema
    if "anyOf" in target:  # Optional[str]: put the enum on the string branch
        for branch in target["anyOf"]:
            if branch.get("type") == "string":
                branch["enum"] = list(genres)
        return
    target["enum"] = list(genres)


def build_pool(
    registry: ToolRegistry,
    genres: list[str],
    seed: int = 0,
    variants_per_tool: int = 6,
    heldout_fraction: float = 0.25,
    domains: list[str] | None = None,
    extra_variants_per_tool: int = 0,
) -> ToolPool:
    """Evolve ``variants_per_tool`` surfaces per registry tool; a share of them is held out for testing.

    ``extra_variants_per_tool`` more per tool (none when ``variants_per_tool`` is 0: no variants at all) take
    composed names (:data:`NAME_PARTS`). They are drawn after all the others from their own random stream, so the
    rest of the pool, its held-out variants included, is the pool the same seed gives without them: data made
    with extra variants never offers a smaller pool's held-out ones."""
    rng = random.Random(f"pool:{seed}")
    domains = domains or list(DOMAIN_NOUNS)
    base = {s["function"]["name"]: s for s in registry.openai_schemas()}
    used: set[str] = set(base) | {d.name for d in DISTRACTORS}
    variants: dict[str, list[ToolVariant]] = {}
    for core, schema in base.items():
        fn = schema["function"]
        original = {"type": "function", "function": {**copy.deepcopy(fn)}}
        original["function"]["parameters"].setdefault("additionalProperties", False)
        out = [ToolVariant(core, core, "original", "movies", original)]
        evolved: list[ToolVariant] = []
        for j in range(variants_per_tool * 4):  # a few spare draws: names may collide
            if len(evolved) >= variants_per_tool:
                break
            domain = domains[j % len(domains)]
            name = _domain_text(rng.choice(NAME_SYNONYMS.get(core, [core + "_v"])), domain)
            name = name.replace("-", "_")
            if name in used:
                continue
            variant = _evolve(core, fn, name, domain, genres, rng)
            used.add(name)
            evolved.append(variant)
        variants[core] = out + _hold_out(evolved, heldout_fraction, rng)
    extra_rng = random.Random(f"pool-extra:{seed}")
    for core, schema in base.items() if extra_variants_per_tool and variants_per_tool else ():
        extra = _more_variants(
            core, schema["function"], extra_variants_per_tool, domains, genres, used, extra_rng, heldout_fraction
        )
        variants[core] += extra
    distractors = [
        ToolVariant(
            d.name,
            None,
            "distractor",
            "movies",
            {
                "type": "function",
                "function": {
                    "name": d.name,
                    "description": _domain_text(d.description, "movies"),
                    "parameters": d.parameters,
                },
            },
            topic=d.topic,
        )
        for d in DISTRACTORS
    ]
    return ToolPool(variants, distractors)


def _more_variants(
    core: str,
    fn: dict[str, Any],
    n: int,
    domains: list[str],
    genres: list[str],
    used: set[str],
    rng: random.Random,
    heldout_fraction: float,
) -> list[ToolVariant]:
    """Up to ``n`` variants of ``core`` named from its composed names (``used`` grows); a share held out."""
    names = [(t, d) for t in composed_names(core) for d in domains]
    rng.shuffle(names)
    out: list[ToolVariant] = []
    for template, domain in names:
        if len(out) >= n:
            break
        name = _domain_text(template, domain)
        if name in used:  # a template without nouns reads the same in every domain
            continue
        used.add(name)
        out.append(_evolve(core, fn, name, domain, genres, rng))
    return _hold_out(out, heldout_fraction, rng)


def _hold_out(evolved: list[ToolVariant], fraction: float, rng: random.Random) -> list[ToolVariant]:
    """``evolved`` with a seeded ``fraction`` of them (rounded) marked held out for testing."""
    n_held = round(len(evolved) * fraction)
    held = set(rng.sample(range(len(evolved)), n_held)) if n_held else set()
    return [_with(v, heldout=i in held) for i, v in enumerate(evolved)]


def _with(v: ToolVariant, **changes: Any) -> ToolVariant:
    return ToolVariant(**{**v.__dict__, **changes})


def _evolve(
    core: str, fn: dict[str, Any], name: str, domain: str, genres: list[str], rng: random.Random
) -> ToolVariant:
    params = copy.deepcopy(fn["parameters"])
    props: dict[str, Any] = params.get("properties", {})
    required: list[str] = list(params.get("required", []))
    renames: dict[str, str] = {}
    new_props: dict[str, Any] = {}
    taken = set(props)
    for pname, pschema in props.items():
        pschema = copy.deepcopy(pschema)
        if "description" in pschema:
            pschema["description"] = _retarget(pschema["description"], domain)
        if pname in GENRE_PARAMS and rng.random() < 0.6:
            _genre_enum(pschema, genres)  # enums drawn from the real catalog
        offered = pname
        options = [_domain_text(o, domain) for o in PARAM_SYNONYMS.get(pname, [])]
        options = [o for o in options if o not in taken]
        if options and rng.random() < 0.5:
            offered = rng.choice(options)
            taken.add(offered)
            renames[offered] = pname
        new_props[offered] = pschema
    if core in LIST_TOOLS and rng.random() < 0.35 and EXCLUDE_PARAM not in taken:
        new_props[EXCLUDE_PARAM] = {
            "type": "array",
            "items": {"type": "string", "description": ITEM_ID_DESCRIPTION},  # the grammar grounds ids by this type
            "maxItems": 50,
            "description": f"{DOMAIN_NOUNS[domain][1]} to leave out of the result (ids)",
        }
    required = [next((o for o, c in renames.items() if c == r), r) for r in required]
    description = (
        _domain_text(rng.choice(DESCRIPTIONS[core]), domain)
        if core in DESCRIPTIONS and rng.random() < 0.7
        else _retarget(fn["description"], domain)
    )
    parameters = {"type": "object", "properties": new_props, "required": required, "additionalProperties": False}
    schema = {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}
    return ToolVariant(name, core, "evolved", domain, schema, params=renames)
