"""The hand-written chat requests in ``recagent eval``: one chat turn per request, scored on its first step and items.

The requests (:mod:`recagent.heldout_requests`, ``protocols: [..., chat_requests]``) are put to the
agent one at a time, as ``recagent chat`` would: a fresh session, the request's earlier turns (if
any) seeded as context, no dataset user attached (a request names its user in words), one
:meth:`~recagent.agents.agent.Agent.chat` turn with the answer check as deployed. A record keeps
what the agent did (its first step's calls, the recommended ids, the answer, cost and latency);
scoring reads the records against the requests, so a corrected request re-scores old answers:

- **first call** (requests that need a tool): the first call of the turn names the core tool of an
  accepted alternative and every key argument of that alternative matches (:func:`call_matches`):
  ids as strings, id lists and genres as sets (genres case-insensitive), ``title``/``query`` when
  each listed word starts a word of the call's value, numbers equal; an argument the call leaves
  out takes the tool's default. A tool variant of the synthesis pool (renamed tool or parameters)
  is translated back to its core tool first when the variants are given. The first call is the
  first one the policy wrote in its first calling step (the fallback's calls are not the policy's);
- **no tool** (requests that need none): the turn made no policy call;
- **constraint satisfaction**: the share of recommended item slots (the turn's ``recommended`` ids)
  that meet the request's constraints on catalog metadata (:func:`item_satisfies`); requests that
  state none are left out, an item that is no catalog item fails;
- **unsupported items shipped** (:mod:`recagent.evaluation.shipped`) and **latency per turn**.

The conventional recommender alone answers the same requests (:func:`baseline_answer`): SASRec's
top-10 unseen items for a request that names a dataset user, the ten most popular items otherwise,
whatever the text asks; it is scored with the same constraint satisfaction.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from recagent.heldout_requests import AcceptedCall, ChatRequest, ItemConstraints, normalise_text

SECTION = "chat_request"
ID_ARGS = frozenset({"user_id", "item_id", "exclude_seen_by"})
ID_LIST_ARGS = frozenset({"item_ids", "history"})
GENRE_LIST_ARGS = frozenset({"genres", "prefer_genres", "avoid_genres"})
TEXT_ARGS = frozenset({"title", "query"})


def baseline_name(model: str) -> str:
    """The system name of the conventional baseline: ``model`` for a named user, popularity otherwise."""
    return f"{model}+pop"


def request_key(req: ChatRequest) -> str:
    """Identity of a request within a run: its id and a digest of what the agent is shown (text and context)."""
    shown = json.dumps([req.text, [(t.role, t.text) for t in req.context]], ensure_ascii=False)
    return f"{req.id}|{hashlib.sha256(shown.encode()).hexdigest()[:10]}"


# -- matching a call against an accepted alternative ----------------------------------------------------------------


def tool_defaults(registry) -> dict[str, dict[str, Any]]:
    """Per core tool, the default of every optional argument (what a call that leaves it out gets)."""
    out: dict[str, dict[str, Any]] = {}
    for name in registry.names():
        fields = registry[name].args_model.model_fields
        out[name] = {
            f: info.get_default(call_default_factory=True) for f, info in fields.items() if not info.is_required()
        }
    return out


def _id(v: Any) -> str | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip()


def _as_list(v: Any) -> list:
    if v is None:
        return []
    if isinstance(v, str):
        return [x for x in re.split(r"\s*,\s*", v) if x]
    return list(v) if isinstance(v, (list, tuple, set)) else [v]


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _genre_set(v: Any) -> set[str]:
    return {str(x).strip().lower() for x in _as_list(v)}


def _words_start(wanted: str, got: str) -> bool:
    have = normalise_text(got).split()
    return all(any(h.startswith(w) for h in have) for w in normalise_text(wanted).split())


def arg_matches(key: str, wanted: Any, got: Any) -> bool:
    """Whether a call's value ``got`` of argument ``key`` matches the accepted ``wanted``."""
    if key in ID_ARGS:
        return _id(got) is not None and _id(got) == _id(wanted)
    if key in ID_LIST_ARGS:
        return {_id(x) for x in _as_list(got)} == {_id(x) for x in _as_list(wanted)}
    if key in GENRE_LIST_ARGS or key == "genre":
        return _genre_set(got) == _genre_set(wanted)
    if key in TEXT_ARGS:
        return isinstance(got, str) and _words_start(str(wanted), got)
    if isinstance(wanted, (int, float)) and not isinstance(wanted, bool):
        return _number(got) is not None and _number(got) == float(wanted)
    if isinstance(wanted, str):
        return isinstance(got, str) and got.strip().lower() == wanted.strip().lower()
    return got == wanted


def _to_core(name: str, args: dict[str, Any], variants: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    v = (variants or {}).get(name)
    if v is None or getattr(v, "core", None) is None:
        return name, args
    return v.core, {v.core_param(k): val for k, val in args.items()}


def call_matches(
    name: str | None,
    args: Any,
    accepted: AcceptedCall,
    defaults: Mapping[str, Mapping[str, Any]] | None = None,
    variants: Mapping[str, Any] | None = None,
) -> bool:
    """Whether a call (tool ``name`` with ``args``) matches one accepted alternative.

    ``defaults``: per core tool, the default of every optional argument (:func:`tool_defaults`);
    ``variants``: offered tool name -> a synthesis ``ToolVariant`` (anything with ``core`` and
    ``core_param``), to translate a renamed tool and its parameters back to the core tool.
    """
    if accepted.no_tool or not name:
        return False
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return False
    if not isinstance(args, dict):
        return False
    core, core_args = _to_core(name, args, variants)
    if core != accepted.tool:
        return False
    filled = {**(defaults or {}).get(core, {}), **core_args}
    return all(key in filled and arg_matches(key, want, filled[key]) for key, want in accepted.args.items())


def first_step_calls(trace: Iterable) -> list[dict[str, Any]]:
    """The calls of the policy's first calling step of a turn (tool, arguments, valid), in the order written.

    Within a step, the trace holds unparseable calls (written by the policy node) before the parsed ones
    (run by the tool node); parsed calls come first here, in the policy's order, then the unparseable.
    """
    from recagent.agents.steps import policy_calls

    calls = policy_calls(list(trace))
    if not calls:
        return []
    step = min(c.index for c in calls)
    mine = [c for c in calls if c.index == step]
    mine.sort(key=lambda c: c.kind != "tool_call")  # stable: keeps the written order within each kind
    return [{"tool": c.tool, "arguments": c.arguments, "valid": c.valid, "error": c.error} for c in mine]


# -- constraints ------------------------------------------------------------------------------------------------------


class ConstraintChecker:
    """Checks items against a request's constraints on catalog metadata (and users' visible histories)."""

    def __init__(self, env):
        self.env = env
        self._seen: dict[str, set[int]] = {}

    def seen(self, user_id: str) -> set[int]:
        """Internal ids of the items in the user's visible history."""
        if user_id not in self._seen:
            u = self.env.dataset.users.index_of.get(str(user_id))
            self._seen[user_id] = set(self.env.seen(u).tolist()) if u is not None else set()
        return self._seen[user_id]

    def item_satisfies(self, item_id: str, c: ItemConstraints) -> bool:
        """True when catalog item ``item_id`` meets every constraint (an id not in the catalog never does)."""
        catalog = self.env.catalog
        i = catalog.index_of.get(str(item_id))
        if i is None:
            return False
        genres = set(catalog.genres[i])
        year = int(catalog.years[i])
        if c.genres_any and not genres & set(c.genres_any):
            return False
        if c.genres_all and not set(c.genres_all) <= genres:
            return False
        if genres & set(c.genres_none):
            return False
        if (c.year_min is not None or c.year_max is not None) and year <= 0:
            return False  # an unknown year is not in any range
        if c.year_min is not None and year < c.year_min:
            return False
        if c.year_max is not None and year > c.year_max:
            return False
        if c.unseen_by is not None and i in self.seen(c.unseen_by):
            return False
        if c.among and str(item_id) not in set(c.among):
            return False
        return True

    def count(self, recommended: list[str], c: ItemConstraints) -> tuple[int, int]:
        """(slots satisfying the constraints, slots) of a recommended list."""
        return sum(self.item_satisfies(i, c) for i in recommended), len(recommended)


def item_satisfies(env, item_id: str, c: ItemConstraints) -> bool:
    """Whether catalog item ``item_id`` meets constraints ``c`` (see :class:`ConstraintChecker`)."""
    return ConstraintChecker(env).item_satisfies(item_id, c)


# -- running the systems --------------------------------------------------------------------------------------------


def agent_answer(agent, req: ChatRequest, session: str | None = None) -> dict[str, Any]:
    """One chat turn of ``agent`` on ``req`` in a fresh session; a failing turn is recorded with its error."""
    from recagent.agents.steps import policy_calls
    from recagent.evaluation.shipped import classify_shipped, tool_result_ids

    session = session or f"eval-chat-{req.id}"
    row: dict[str, Any] = {
        "request_id": req.id,
        "kind": req.kind,
        "first_step": [],
        "called": False,
        "n_calls": 0,
        "invalid_calls": 0,
        "recommended": [],
        "filled": 0,
        "answer": "",
        "latency_s": 0.0,
        "llm_calls": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "shipped_items": 0,
        "unsupported_shipped": [],
        "error": None,
    }
    t0 = time.perf_counter()
    try:
        agent.reset(session)
        agent.seed(session, [(t.role, t.text) for t in req.context])
        t0 = time.perf_counter()
        out = agent.chat(req.text, session=session)
        row["latency_s"] = time.perf_counter() - t0
    except Exception as e:  # one failing turn must not end the run; it scores as a miss on everything
        row.update(latency_s=time.perf_counter() - t0, error=f"{type(e).__name__}: {e}"[:300])
        return row
    finally:
        try:
            agent.reset(session)
        except Exception:  # noqa: BLE001 - cleaning up a session must not hide the turn's outcome
            pass
    calls = policy_calls(out.trace)
    shipped = classify_shipped(
        out.recommended, out.filled, tool_result_ids(out.trace), agent.context.env.catalog, answer=out.answer
    )
    row.update(
        first_step=first_step_calls(out.trace),
        called=bool(calls),
        n_calls=len(calls),
        invalid_calls=sum(not c.valid for c in calls),
        recommended=list(out.recommended),
        filled=out.filled,
        answer=(out.answer or "")[:1000],
        llm_calls=out.usage.get("llm_calls", 0),
        input_tokens=out.usage.get("input_tokens", 0),
        output_tokens=out.usage.get("output_tokens", 0),
        shipped_items=len(shipped.items),
        unsupported_shipped=shipped.unsupported,
    )
    return row


def baseline_answer(env, req: ChatRequest, model: str = "sasrec", k: int = 10) -> dict[str, Any]:
    """The conventional recommender alone: ``model``'s top-k unseen items for a named user, else the k most popular."""
    t0 = time.perf_counter()
    u = env.dataset.users.index_of.get(str(req.user_id)) if req.user_id is not None else None
    if u is not None:
        top, _ = env.model(model).topk(env.query(u, env.history(u)), k, exclude=env.seen(u))
        source = model
    else:
        items = np.arange(env.dataset.n_items)
        top, source = items[np.lexsort((items, -env.popularity))][:k], "popularity"
    return {
        "request_id": req.id,
        "kind": req.kind,
        "recommended": [env.catalog.ids[int(i)] for i in top],
        "source": source,
        "latency_s": time.perf_counter() - t0,
        "error": None,
    }


# -- scoring ------------------------------------------------------------------------------------------------------------


def score_record(
    row: Mapping[str, Any],
    req: ChatRequest,
    checker: ConstraintChecker,
    defaults: Mapping[str, Mapping[str, Any]] | None = None,
    variants: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Scores of one record: first call / no tool (None where not applicable or not measured), constraint slots."""
    out: dict[str, Any] = {"first_call": None, "no_tool": None, "first_step": None, "satisfied": None, "slots": None}
    if "first_step" in row:  # an agent's record; the baseline makes no calls
        first = (row.get("first_step") or [None])[0]
        failed = bool(row.get("error"))
        if req.no_tool:
            out["no_tool"] = (not failed) and not row.get("called")
            out["first_step"] = out["no_tool"]
        else:
            ok = (
                (not failed)
                and first is not None
                and any(
                    call_matches(first.get("tool"), first.get("arguments"), a, defaults, variants)
                    for a in req.accepted_first_calls
                )
            )
            out["first_call"] = out["first_step"] = ok
    if not req.constraints.is_empty():
        out["satisfied"], out["slots"] = checker.count([str(i) for i in row.get("recommended") or []], req.constraints)
    return out
