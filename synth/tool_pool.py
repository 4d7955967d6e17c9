"""Stage 1, the tool pool: the real tools, evolved variants with real code behind them, and distractors.

ToolACE evolves an API pool so a model learns to read schemas instead of memorising names.
Our tools are executable, so every evolved variant stays executable: a :class:`ToolVariant`
is a new *surface* (name, parameter names, descriptions, catalog enums, domain wording,
extra optional parameters) over one core tool of the registry, and :class:`OfferedTools`
translates a call on that surface back to the core tool and runs it. Extra parameters are
implemented for real (``exclude_item_ids`` post-filters the core result). Distractors are
look-alike schemas with no implementation, offered only so that "no tool fits" is learnable;
calling one is an error.
"""

from __future__ import annotations

import copy
import json
import random
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from recagent.tools.toolkit import ToolError, ToolOutcome, ToolRegistry

Origin = Literal["original", "evolved", "distractor"]

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
    "rank_by_preference": ["rank_with_preferences", "rerank_{n}", "preference_ranking", "tailor_ranking", "rank_by_taste"],
    "get_item": ["get_{s}", "item_details", "lookup_title", "{s}_info", "find_{s}"],
    "get_user_history": ["user_history", "get_watch_history", "recent_{n}_of_user", "user_activity", "history_of"],
    "get_candidates": ["show_candidates", "read_set", "get_saved_{n}", "candidate_set", "list_saved"],
}  # fmt: skip

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
    "search_items": ["Find {n} whose title, year and genres match a free-text description.",
                     "Semantic search of the {s} catalog by what the user describes in words."],
    "filter_items": ["List {n} with given genres and release years, optionally unseen by a user.",
                     "Browse the catalog by genre and era; results ordered by popularity unless told otherwise."],
    "retrieve_for_user": ["Personalised {s} recommendations for a known user, from their past activity.",
                          "Suggest {n} a given user has not seen yet, using a trained recommender."],
    "similar_items": ["Find {n} similar to the given ones (people who liked these also liked...).",
                      "Neighbours of one or more {n}, by co-consumption or by description."],
    "popular_items": ["The most popular {n}, overall or in one genre.",
                      "Top {n} by number of interactions, optionally for a single genre."],
    "rank_items": ["Order candidate {n} by how much a user (or a history of liked {n}) would like them.",
                   "Score and sort a list of candidate {n} for a user with a recommender."],
    "rank_by_preference": ["Rank candidate {n} for a user, boosting wanted genres or an era.",
                           "Re-rank candidates mixing the recommender with stated likes and dislikes."],
    "get_item": ["Details of one {s} by id or by (approximate) title.",
                 "Look up a {s}: title, year, genres and popularity."],
    "get_user_history": ["The {n} a user interacted with most recently, and their favourite genres.",
                         "Recent activity of a user, newest last."],
    "get_candidates": ["Show the {n} of a candidate set saved earlier.",
                       "Read back a saved list of candidate {n}."],
}  # fmt: skip

LIST_TOOLS = {"search_items", "filter_items", "retrieve_for_user", "similar_items", "popular_items"}
GENRE_PARAMS = {"genres": "array", "genre": "string", "prefer_genres": "array", "avoid_genres": "array"}
EXCLUDE_PARAM = "exclude_item_ids"


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
    Distractor("get_showtimes", "tickets", "Cinema showtimes for a {s} in a city on a date.",
               _obj({"item_id": _S, "city": _S, "date": {"type": "string", "format": "date"}}, ["item_id", "city"])),
    Distractor("book_tickets", "tickets", "Book seats for a showtime.",
               _obj({"showtime_id": _S, "seats": {"type": "integer", "minimum": 1}}, ["showtime_id", "seats"])),
    Distractor("get_reviews", "reviews", "Critic reviews of a {s}.", _obj({"item_id": _S, "limit": _I}, ["item_id"])),
    Distractor("add_to_watchlist", "watchlist", "Add a {s} to a user's saved list.",
               _obj({"user_id": _S, "item_id": _S}, ["user_id", "item_id"])),
    Distractor("rate_item", "rating", "Store a user's rating of a {s}.",
               _obj({"user_id": _S, "item_id": _S, "stars": {"type": "integer", "minimum": 1, "maximum": 5}},
                    ["user_id", "item_id", "stars"])),
    Distractor("check_streaming", "streaming", "Where a {s} can be streamed in a country.",
               _obj({"item_id": _S, "country": _S}, ["item_id", "country"])),
    Distractor("get_cast", "cast", "Cast and crew of a {s}.", _obj({"item_id": _S}, ["item_id"])),
    Distractor("buy_item", "purchase", "Buy a copy of a {s}.",
               _obj({"item_id": _S, "quantity": {"type": "integer", "minimum": 1}}, ["item_id"])),
)  # fmt: skip


@dataclass(frozen=True)
class ToolVariant:
    """One offered tool: its OpenAI schema and, unless it is a distractor, the core tool and renames behind it."""

    name: str
    core: str | None  # registry tool name; None for a distractor
    origin: Origin
    domain: str
    schema: dict[str, Any]  # {"type": "function", "function": {...}}
    params: dict[str, str] = field(default_factory=dict)  # offered parameter name -> core parameter name
    heldout: bool = False  # never offered in training dialogs
    topic: str | None = None  # distractors: what they would serve

    def core_param(self, name: str) -> str:
        """The core parameter an offered parameter maps to (itself when not renamed)."""
        return self.params.get(name, name)

    def offered_param(self, core_name: str) -> str:
        """The offered name of a core parameter."""
        for offered, core in self.params.items():
            if core == core_name:
                return offered
        return core_name

    def describe(self) -> dict[str, Any]:
        """What the dataset records about a variant."""
        return {"core": self.core, "origin": self.origin, "heldout": self.heldout, "domain": self.domain,
                "params": dict(self.params), "topic": self.topic}

    @classmethod
    def from_record(cls, schema: dict[str, Any], record: dict[str, Any]) -> ToolVariant:
        """Rebuild a variant from a dataset's tool schema and its ``tool_variants`` record."""
        return cls(schema["function"]["name"], record.get("core"), record.get("origin", "evolved"),
                   record.get("domain", "movies"), schema, dict(record.get("params") or {}),
                   bool(record.get("heldout")), record.get("topic"))  # fmt: skip


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
) -> ToolPool:
    """Evolve ``variants_per_tool`` surfaces per registry tool; a share of them is held out for testing."""
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
        n_held = round(len(evolved) * heldout_fraction)
        held = set(rng.sample(range(len(evolved)), n_held)) if n_held else set()
        out += [_with(v, heldout=i in held) for i, v in enumerate(evolved)]
        variants[core] = out
    distractors = [
        ToolVariant(d.name, None, "distractor", "movies", {
            "type": "function",
            "function": {"name": d.name, "description": _domain_text(d.description, "movies"), "parameters": d.parameters},
        }, topic=d.topic)
        for d in DISTRACTORS
    ]  # fmt: skip
    return ToolPool(variants, distractors)


def _with(v: ToolVariant, **changes: Any) -> ToolVariant:
    return ToolVariant(**{**v.__dict__, **changes})


def _evolve(core: str, fn: dict[str, Any], name: str, domain: str, genres: list[str], rng: random.Random) -> ToolVariant:
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
            "type": "array", "items": {"type": "string"}, "maxItems": 50,
            "description": f"{DOMAIN_NOUNS[domain][1]} to leave out of the result (ids)",
        }  # fmt: skip
    required = [next((o for o, c in renames.items() if c == r), r) for r in required]
    description = _domain_text(rng.choice(DESCRIPTIONS[core]), domain) if core in DESCRIPTIONS and rng.random() < 0.7 else _retarget(fn["description"], domain)
    parameters = {"type": "object", "properties": new_props, "required": required, "additionalProperties": False}
    schema = {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}
    return ToolVariant(name, core, "evolved", domain, schema, params=renames)


class OfferedTools:
    """The tools offered in one dialog, executed for real through the core registry."""

    def __init__(self, variants: list[ToolVariant], registry: ToolRegistry):
        names = [v.name for v in variants]
        if len(set(names)) != len(names):
            raise ValueError(f"offered tool names must be unique, got {names}")
        self.variants = {v.name: v for v in variants}
        self.registry = registry

    def schemas(self) -> list[dict[str, Any]]:
        """OpenAI ``tools`` list, in offering order."""
        return [v.schema for v in self.variants.values()]

    def by_core(self, core: str) -> ToolVariant | None:
        """The offered variant of a core tool."""
        return next((v for v in self.variants.values() if v.core == core), None)

    def to_core(self, name: str, args: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Core arguments of an offered call, and ids to exclude from its result."""
        v = self.variants[name]
        offers_exclude = EXCLUDE_PARAM in v.schema["function"]["parameters"]["properties"]
        # a variant without the extra parameter passes it on, so the core rejects it by name
        core_args = {v.core_param(k): val for k, val in args.items() if not (offers_exclude and k == EXCLUDE_PARAM)}
        exclude = [str(x) for x in args.get(EXCLUDE_PARAM) or []] if offers_exclude else []
        return core_args, exclude

    def call(self, name: str, arguments: dict[str, Any] | str) -> ToolOutcome:
        """Run an offered call; unknown names, distractors and bad arguments come back as tool errors."""
        v = self.variants.get(name)
        if v is None:
            return ToolOutcome(name, arguments, False, error=ToolError(
                error="unknown_tool", message=f"no tool named {name!r}; offered tools: {', '.join(self.variants)}"))
        if v.core is None:
            return ToolOutcome(name, arguments, False, error=ToolError(
                error="not_implemented", message=f"{name} is not available in this environment"))
        args: Any = arguments
        if isinstance(arguments, str):
            try:
                args = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as e:
                return ToolOutcome(name, arguments, False, error=ToolError(error="invalid_json", message=f"arguments are not valid JSON: {e}"))
        if not isinstance(args, dict):
            return ToolOutcome(name, arguments, False, error=ToolError(
                error="invalid_arguments", message=f"arguments must be a JSON object, got {type(args).__name__}"))
        bad_exclude = args.get(EXCLUDE_PARAM)
        if bad_exclude is not None and not (isinstance(bad_exclude, list) and all(isinstance(x, str | int) for x in bad_exclude)):
            return ToolOutcome(name, arguments, False, error=ToolError(
                error="invalid_arguments", message=f"{EXCLUDE_PARAM}: must be an array of item ids", field=EXCLUDE_PARAM))
        core_args, exclude = self.to_core(name, args)
        if exclude and "k" in core_args and isinstance(core_args["k"], int):
            # ask the core for enough items that k remain after the exclusion
            core_args["k"] = min(core_args["k"] + len(exclude), self.registry.env.config.max_k)
        elif exclude and "k" not in core_args:
            core_args["k"] = min(10 + len(exclude), self.registry.env.config.max_k)
        out = self.registry.call(v.core, core_args)
        out.name, out.arguments = name, arguments
        if not out.ok:
            out.error = _rename_error(out.error, v)
            return out
        if exclude and isinstance(out.result, dict) and isinstance(out.result.get("items"), list):
            k = args.get(v.offered_param("k"), 10)
            drop = set(exclude)
            kept = [it for it in out.result["items"] if str(it["item_id"]) not in drop][: int(k)]
            out.result["items"] = [{**it, "rank": r + 1} for r, it in enumerate(kept)]
        return out


def _rename_error(err: ToolError | None, v: ToolVariant) -> ToolError | None:
    """Speak of offered parameter names in error messages, not core ones."""
    if err is None or not v.params:
        return err
    msg = err.message
    for offered, core in v.params.items():
        msg = re.sub(rf"(^|; ){re.escape(core)}(?=[:.])", rf"\g<1>{offered}", msg)
    field_ = v.offered_param(err.field.split(".")[0]) if err.field else None
    return ToolError(error=err.error, message=msg, field=field_)
