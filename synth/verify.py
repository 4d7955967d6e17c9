"""Stage 4, rule layer of the dual-layer verification: every check executes against the real data and tools.

APIGen checks format, execution and semantics; ToolACE adds a rule layer and a model layer.
Our tools are real, so the rule layer re-runs each dialog's calls in a fresh session and
compares, on top of the static checks. Each check is a function ``(sample, ctx) -> (ok,
message)`` named in :data:`CHECKS`; all run on every sample (a failing sample lists every
reason, not just the first), and the model layer (:mod:`recagent.synth.judge`) adds a verdict.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from recagent.agents.grounding import ground_answer
from recagent.agents.prompt_format import strict_call_json
from recagent.agents.prompts import is_listwise_prompt, listwise_ids
from recagent.synth.sample import KINDS, CheckResult, Sample, Verification
from recagent.synth.tool_pool import EXCLUDE_PARAM, OfferedTools, ToolVariant
from recagent.tools.env import ToolEnv
from recagent.tools.toolkit import ToolRegistry, recorded_result

USER_FIELDS = {"user_id", "exclude_seen_by"}
ITEM_FIELDS = {"item_id", "item_ids", "history", EXCLUDE_PARAM}
SET_FIELDS = {"candidates"}
SET_READERS = {"get_candidates": "name"}  # tools whose own parameter names a set
# Item ids a user states: after an item word ("movie 318", "items 7 and 64", "ids: 5, 9", "film #3") or as "#318"
# (not "user #42", which is a user id).
_ITEM_REF = re.compile(
    r"(?:\b(?:items?|movies?|films?|books?|tracks?|titles?|ids?)\b\s*(?:(?:no\.?|number|#|id)\s*)?:?\s*"
    r"|(?<!user )(?<!user)(?<!i'm )(?<!im )#\s*)"
    r"(#?\d+(?:\s*(?:,\s*(?:(?:and|or)\s+|&\s*)?|\band\b|\bor\b|&|/|\+)\s*#?\d+)*)(?!\w)",
    re.IGNORECASE,
)


@dataclass
class CallTrace:
    """One call as the verifier sees it: offered and core names, arguments, recorded result, dependencies."""

    message: int
    call_id: str
    name: str
    raw_arguments: Any
    arguments: dict[str, Any] | None  # parsed JSON object, None when unparsable
    core: str | None
    core_arguments: dict[str, Any]
    result: dict[str, Any] | None  # recorded tool result (None when missing or an error)
    deps: set[int] = field(default_factory=set)
    depth: int = 1


@dataclass
class VerifyContext:
    """What the checks need: the tool environment, how to build a registry, and the split for leakage."""

    env: ToolEnv
    registry_factory: Callable[[ToolEnv], ToolRegistry]
    _replays: dict[int, list] = field(default_factory=dict)  # per sample, so two checks share one re-run

    @property
    def catalog(self):
        return self.env.catalog


def variants_of(sample: Sample) -> dict[str, ToolVariant]:
    """The offered tools of a sample rebuilt from its schemas and variant records."""
    out = {}
    for t in sample.tools:
        name = t.get("function", {}).get("name") if isinstance(t, dict) else None
        if isinstance(name, str):
            out[name] = ToolVariant.from_record(
                t, sample.tool_variants.get(name, {"core": None, "origin": "distractor"})
            )
    return out


def _result_ids(result: Any) -> set[str]:
    """Every catalog id a tool result shows (list items, a looked-up item and its alternatives, history)."""
    ids: set[str] = set()
    if isinstance(result, dict):
        for key in ("items", "alternatives"):
            for it in result.get(key) or []:
                if isinstance(it, dict) and "item_id" in it:
                    ids.add(str(it["item_id"]))
        if isinstance(result.get("item"), dict) and "item_id" in result["item"]:
            ids.add(str(result["item"]["item_id"]))
    return ids


def trace_calls(sample: Sample) -> list[CallTrace]:
    """Every call with its recorded result and the earlier calls whose ids or sets it used."""
    variants = variants_of(sample)
    tool_msgs = {m.get("tool_call_id"): m for m in sample.messages if m.get("role") == "tool"}
    traces: list[CallTrace] = []
    producer_of_id: dict[str, int] = {}
    producer_of_set: dict[str, int] = {}
    for mi, m in enumerate(sample.messages):
        if m.get("role") != "assistant":
            continue
        for tc in m.get("tool_calls") or []:
            fn = tc.get("function") or {}
            raw = fn.get("arguments")
            try:
                args = strict_call_json(raw) if isinstance(raw, str) else None
            except ValueError:
                args = None
            args = args if isinstance(args, dict) else None
            v = variants.get(fn.get("name"))
            core = v.core if v else None
            core_args = {v.core_param(k): val for k, val in (args or {}).items()} if v else dict(args or {})
            result = None
            tm = tool_msgs.get(tc.get("id"))
            if tm is not None:
                result = recorded_result(tm)
                if isinstance(result, dict) and "error" in result and "items" not in result and "item" not in result:
                    result = None
            t = CallTrace(mi, tc.get("id"), fn.get("name"), raw, args, core, core_args, result)
            for key in ITEM_FIELDS:
                for val in _as_list(core_args.get(key)):
                    if str(val) in producer_of_id:
                        t.deps.add(producer_of_id[str(val)])
            set_keys = SET_FIELDS | ({SET_READERS[core]} if core in SET_READERS else set())
            for key in set_keys:
                if isinstance(core_args.get(key), str) and core_args[key] in producer_of_set:
                    t.deps.add(producer_of_set[core_args[key]])
            t.depth = 1 + max((traces[d].depth for d in t.deps), default=0)
            traces.append(t)
        # results become available after the whole (parallel) message
        for idx in range(len(traces)):
            t = traces[idx]
            if t.message == mi and t.result is not None:
                for rid in _result_ids(t.result):
                    producer_of_id.setdefault(rid, idx)
                if isinstance(t.core_arguments.get("save_as"), str):
                    producer_of_set[t.core_arguments["save_as"]] = idx
    return traces


def infer_kind(sample: Sample) -> str:
    """The dialog kind its shape shows: listwise (the agent's list-wise prompt), no_tool, clarify, chain, parallel
    or single."""
    system = sample.messages[0] if sample.messages and sample.messages[0].get("role") == "system" else {}
    if is_listwise_prompt(system.get("content") or ""):
        return "listwise"
    traces = trace_calls(sample)
    if not traces:
        return "no_tool"
    first_call_msg = traces[0].message
    first_user = next((i for i, m in enumerate(sample.messages) if m.get("role") == "user"), 0)
    if any(
        m.get("role") == "assistant" and not m.get("tool_calls") for m in sample.messages[first_user:first_call_msg]
    ):
        return "clarify"
    call_messages = {t.message for t in traces}
    if any(t.deps for t in traces) or len(call_messages) > 1:
        return "chain"
    return "parallel" if len(traces) > 1 else "single"


def _as_list(v: Any) -> list:
    return v if isinstance(v, list) else ([] if v is None else [v])


# -- the checks ---------------------------------------------------------------------------------------------------

Check = Callable[[Sample, VerifyContext], tuple[bool, str]]


def check_schemas(sample: Sample, ctx: VerifyContext) -> tuple[bool, str]:
    """Every offered tool is an OpenAI function whose parameters are valid JSON Schema; names are unique."""
    names = []
    for t in sample.tools:
        fn = t.get("function") if isinstance(t, dict) and t.get("type") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            return False, f"not an OpenAI function tool: {json.dumps(t)[:120]}"
        if not isinstance(fn.get("description"), str):
            return False, f"{fn['name']}: no description"
        params = fn.get("parameters")
        if not isinstance(params, dict) or params.get("type") != "object":
            return False, f"{fn['name']}: parameters must be a JSON Schema object"
        try:
            Draft202012Validator.check_schema(params)
        except SchemaError as e:
            return False, f"{fn['name']}: invalid JSON Schema: {e.message}"
        for req in params.get("required", []):
            if req not in params.get("properties", {}):
                return False, f"{fn['name']}: required parameter {req!r} is not a property"
        names.append(fn["name"])
    if len(set(names)) != len(names):
        return False, f"duplicate tool names: {sorted(n for n in set(names) if names.count(n) > 1)}"
    missing = sorted(set(names) ^ set(sample.tool_variants))
    if missing:
        return False, f"tools and tool_variants disagree on {missing}"
    return True, ""


def check_roles(sample: Sample, ctx: VerifyContext) -> tuple[bool, str]:
    """Roles in order: system first, user opens, each call followed by exactly its results, an assistant ends."""
    msgs = sample.messages
    if not msgs:
        return False, "no messages"
    i = 1 if msgs[0].get("role") == "system" else 0
    if i >= len(msgs) or msgs[i].get("role") != "user":
        return False, "the dialog must start with a user message (after an optional system message)"
    prev = None
    while i < len(msgs):
        m, role = msgs[i], msgs[i].get("role")
        if role not in ("user", "assistant", "tool"):
            return False, f"message {i}: role {role!r} not allowed here"
        if role == "tool":
            return False, f"message {i}: tool result without a preceding call"
        if role == "user" and prev == "user":
            return False, f"message {i}: two user messages in a row"
        if role == "assistant":
            calls = m.get("tool_calls") or []
            if not calls and not (isinstance(m.get("content"), str) and m["content"].strip()):
                return False, f"message {i}: empty assistant message"
            ids = [tc.get("id") for tc in calls]
            if len(set(ids)) != len(ids) or not all(ids):
                return False, f"message {i}: tool call ids missing or repeated"
            for j, cid in enumerate(ids):
                k = i + 1 + j
                if k >= len(msgs) or msgs[k].get("role") != "tool":
                    return False, f"message {i}: call {cid} has no result message"
                if msgs[k].get("tool_call_id") != cid:
                    return False, f"message {k}: result for {msgs[k].get('tool_call_id')!r}, expected {cid!r}"
            i += len(ids)
        prev = role
        i += 1
    last = msgs[-1]
    if last.get("role") != "assistant" or last.get("tool_calls"):
        return False, "the dialog must end with an assistant text message"
    return True, ""


def check_calls_parse(sample: Sample, ctx: VerifyContext) -> tuple[bool, str]:
    """Every call has a name and arguments that are a JSON object (strict JSON, no duplicates)."""
    for t in trace_calls(sample):
        if not isinstance(t.name, str) or not t.name:
            return False, f"call {t.call_id}: no function name"
        if not isinstance(t.raw_arguments, str):
            return False, f"{t.name}: arguments must be a JSON string (OpenAI format)"
        try:
            obj = strict_call_json(t.raw_arguments)
        except ValueError as e:
            return False, f"{t.name}: arguments are not valid JSON: {e}"
        if not isinstance(obj, dict):
            return False, f"{t.name}: arguments must be a JSON object"
    return True, ""


def check_tool_offered(sample: Sample, ctx: VerifyContext) -> tuple[bool, str]:
    """Every called name is an offered tool with an implementation (not a distractor)."""
    variants = variants_of(sample)
    for t in trace_calls(sample):
        v = variants.get(t.name)
        if v is None:
            return False, f"{t.name!r} is not among the offered tools"
        if v.core is None:
            return False, f"{t.name!r} is a distractor with no implementation"
    return True, ""


def check_arguments(sample: Sample, ctx: VerifyContext) -> tuple[bool, str]:
    """Arguments satisfy the offered schema: required present, types, enums, bounds, no unknown keys."""
    variants = variants_of(sample)
    for t in trace_calls(sample):
        v = variants.get(t.name)
        if v is None or t.arguments is None:
            continue  # reported by tool_offered / calls_parse
        errors = sorted(Draft202012Validator(v.schema["function"]["parameters"]).iter_errors(t.arguments), key=str)
        if errors:
            e = errors[0]
            where = ".".join(str(p) for p in e.absolute_path) or "arguments"
            return False, f"{t.name}: {where}: {e.message}"
    return True, ""


def check_ids_exist(sample: Sample, ctx: VerifyContext) -> tuple[bool, str]:
    """Every user id and item id in the arguments exists in the dataset."""
    users, items = ctx.env.dataset.users.index_of, ctx.catalog.index_of
    for t in trace_calls(sample):
        for key in USER_FIELDS:
            if key in t.core_arguments and str(t.core_arguments[key]) not in users:
                return False, f"{t.name}: unknown user id {t.core_arguments[key]!r}"
        for key in ITEM_FIELDS:
            for val in _as_list(t.core_arguments.get(key)):
                if str(val) not in items:
                    return False, f"{t.name}: unknown item id {val!r}"
    return True, ""


def check_k(sample: Sample, ctx: VerifyContext) -> tuple[bool, str]:
    """Every k (and last_n) is within 1..max_k."""
    hi = ctx.env.config.max_k
    for t in trace_calls(sample):
        for key in ("k", "last_n"):
            val = t.core_arguments.get(key)
            if val is not None and (not isinstance(val, int) or isinstance(val, bool) or not 1 <= val <= hi):
                return False, f"{t.name}: {key}={val!r} outside 1..{hi}"
    return True, ""


def check_ids_from_results(sample: Sample, ctx: VerifyContext) -> tuple[bool, str]:
    """Item ids and candidate sets passed to a tool came from earlier results; user ids from the conversation."""
    seen_ids: set[str] = set()
    saved: set[str] = set()
    said = ""
    traces = trace_calls(sample)
    by_msg: dict[int, list[CallTrace]] = {}
    for t in traces:
        by_msg.setdefault(t.message, []).append(t)
    for mi, m in enumerate(sample.messages):
        if m.get("role") in ("system", "user"):
            said += " " + str(m.get("content") or "")
        for t in by_msg.get(mi, []):
            for key in ITEM_FIELDS:
                for val in _as_list(t.core_arguments.get(key)):
                    if (
                        str(val) not in seen_ids
                        and f"[{val}]" not in said
                        and f"id {val}" not in said
                        and str(val) not in given_item_ids(said)
                    ):
                        return False, f"{t.name}: item id {val!r} did not come from an earlier tool result"
            for key in SET_FIELDS | ({SET_READERS[t.core]} if t.core in SET_READERS else set()):
                name = t.core_arguments.get(key)
                if name is not None and name not in saved:
                    return False, f"{t.name}: candidate set {name!r} was not saved by an earlier call"
            for key in USER_FIELDS:
                uid = t.core_arguments.get(key)
                if uid is not None and not _mentions(said, str(uid)):
                    return False, f"{t.name}: user id {uid!r} was never given in the conversation"
        for t in by_msg.get(mi, []):  # parallel calls cannot use each other's results
            if t.result is not None:
                seen_ids |= _result_ids(t.result)
                if isinstance(t.core_arguments.get("save_as"), str):
                    saved.add(t.core_arguments["save_as"])
    return True, ""


def given_item_ids(text: str) -> set[str]:
    """Item ids a text states after an item word or a '#': 'movie 127', 'items 12 and 100', '#5, #9 or #40'.

    A bare number ('5 movies', 'from 1990') is not an item id; each id of a list after one item word is.
    """
    return {n for m in _ITEM_REF.finditer(text) for n in re.findall(r"\d+", m.group(1))}


def _mentions(text: str, token: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(token)}(?![\w])", text) is not None


def _replay(sample: Sample, ctx: VerifyContext) -> list[tuple[CallTrace, Any]]:
    key = id(sample)
    if key not in ctx._replays:
        variants = variants_of(sample)
        session = ctx.env.session()
        offered = OfferedTools(list(variants.values()), ctx.registry_factory(session))
        ctx._replays[key] = [
            (t, offered.call(t.name, t.raw_arguments if isinstance(t.raw_arguments, str) else {}))
            for t in trace_calls(sample)
        ]
    return ctx._replays[key]


def check_executes(sample: Sample, ctx: VerifyContext) -> tuple[bool, str]:
    """Re-running every call, in order, in a fresh session succeeds."""
    for t, out in _replay(sample, ctx):
        if not out.ok:
            return False, f"{t.name}: {out.error.error}: {out.error.message}"
    return True, ""


def check_same_result(sample: Sample, ctx: VerifyContext) -> tuple[bool, str]:
    """Re-running every call gives exactly the result recorded in the dialog."""
    tool_msgs = {m.get("tool_call_id"): m for m in sample.messages if m.get("role") == "tool"}
    for t, out in _replay(sample, ctx):
        recorded = tool_msgs.get(t.call_id)
        # both what the model read and the structured result behind it must be what the tool gives now
        same = (
            recorded is not None
            and recorded.get("content") == out.content()
            and recorded_result(recorded) == out.payload()
        )
        if not same:
            return False, f"{t.name}: re-running gives a different result than the recorded one"
    return True, ""


def check_answer_grounded(sample: Sample, ctx: VerifyContext) -> tuple[bool, str]:
    """Every assistant text names only real items that appeared in tool results before it."""
    seen: set[str] = set()
    traces = trace_calls(sample)
    for mi, m in enumerate(sample.messages):
        for t in traces:
            if t.message < mi and t.result is not None:
                seen |= _result_ids(t.result)
        if m.get("role") == "assistant" and not m.get("tool_calls") and m.get("content"):
            g = ground_answer(m["content"], ctx.catalog, seen)
            if not g.ok:
                return False, f"message {mi} names items not from tool results: {g.unknown + g.unsupported}"
            listed = [i for i in _listed_ids(sample, m["content"]) if i not in seen]
            if listed:
                return False, f"message {mi} lists items not from tool results: {listed}"
    return True, ""


def _listed_ids(sample: Sample, text: str) -> list[str]:
    """The ids of a list-wise answer (nothing for any other dialog: its answers cite items instead)."""
    return listwise_ids(text) if infer_kind(sample) == "listwise" else []


def check_filters(sample: Sample, ctx: VerifyContext) -> tuple[bool, str]:
    """Returned items satisfy the call's genre, year, unseen and exclusion constraints, by catalog metadata."""
    cat = ctx.catalog
    for t in trace_calls(sample):
        if t.result is None or not isinstance(t.result.get("items"), list):
            continue
        a = t.core_arguments
        excluded = {str(x) for x in _as_list((t.arguments or {}).get(EXCLUDE_PARAM))}
        for it in t.result["items"]:
            i = cat.index_of.get(str(it.get("item_id")))
            if i is None:
                return False, f"{t.name}: returned unknown item {it.get('item_id')!r}"
            genres, year = set(cat.genres[i]), int(cat.years[i])
            if set(it.get("genres", [])) != genres or (it.get("year") or 0) != year:
                return False, f"{t.name}: metadata of item {it['item_id']} differs from the catalog"
            if it["item_id"] in excluded:
                return False, f"{t.name}: returned excluded item {it['item_id']}"
            if t.core == "filter_items":
                want = {g.lower() for g in _as_list(a.get("genres"))}
                have = {g.lower() for g in genres}
                if want and not (want <= have if a.get("match") == "all" else want & have):
                    return False, f"{t.name}: item {it['item_id']} ({sorted(genres)}) misses genres {sorted(want)}"
                unwanted = {g.lower() for g in _as_list(a.get("exclude_genres"))} & {g.lower() for g in genres}
                if unwanted:
                    return False, f"{t.name}: item {it['item_id']} has excluded genres {sorted(unwanted)}"
                if a.get("year_min") is not None and year < a["year_min"]:
                    return False, f"{t.name}: item {it['item_id']} from {year} is before {a['year_min']}"
                if a.get("year_max") is not None and (year > a["year_max"] or year == 0):
                    return False, f"{t.name}: item {it['item_id']} from {year} is after {a['year_max']}"
                if a.get("exclude_seen_by") is not None:
                    u = ctx.env.dataset.users.index_of.get(str(a["exclude_seen_by"]))
                    if u is not None and i in set(ctx.env.history(u).tolist()):
                        return False, f"{t.name}: item {it['item_id']} was already seen by user {a['exclude_seen_by']}"
            if t.core == "popular_items" and a.get("genre"):
                if a["genre"].lower() not in {g.lower() for g in genres}:
                    return False, f"{t.name}: item {it['item_id']} is not {a['genre']}"
    return True, ""


def check_leakage(sample: Sample, ctx: VerifyContext) -> tuple[bool, str]:
    """A training or validation dialog never answers with (or targets) the user's valid/test items and offers no
    held-out tool."""
    if sample.split == "test":
        return True, ""
    split = ctx.env.split
    u = ctx.env.dataset.users.index_of.get(sample.user_id)
    if u is None:
        return False, f"unknown user {sample.user_id!r}"
    held = {ctx.catalog.ids[i] for part in (split.valid, split.test) for i in part.items[part.users == u].tolist()}
    if sample.target_item in held:
        return False, f"target {sample.target_item} is one of the user's valid/test items"
    for m in sample.messages:
        if m.get("role") == "assistant" and m.get("content"):
            g = ground_answer(m["content"], ctx.catalog, set())
            bad = held & set(g.supported + g.unsupported + _listed_ids(sample, m["content"]))
            if bad:
                return False, f"answer names the user's held-out items {sorted(bad)}"
    heldout = sorted(n for n, rec in sample.tool_variants.items() if rec.get("heldout"))
    if heldout:
        return False, f"held-out tool variants offered in training: {heldout}"
    return True, ""


def check_kind(sample: Sample, ctx: VerifyContext) -> tuple[bool, str]:
    """The declared dialog kind matches the dialog's shape."""
    if sample.kind not in KINDS:
        return False, f"unknown kind {sample.kind!r}"
    shape = infer_kind(sample)
    return (shape == sample.kind, "" if shape == sample.kind else f"declared {sample.kind}, shape is {shape}")


CHECKS: dict[str, Check] = {
    "schema_valid": check_schemas,
    "roles": check_roles,
    "calls_parse": check_calls_parse,
    "tool_offered": check_tool_offered,
    "arguments_valid": check_arguments,
    "ids_exist": check_ids_exist,
    "k_in_bounds": check_k,
    "ids_from_results": check_ids_from_results,
    "executes": check_executes,
    "same_result": check_same_result,
    "answer_grounded": check_answer_grounded,
    "filter_constraints": check_filters,
    "no_leakage": check_leakage,
    "kind_matches": check_kind,
}


def verify(sample: Sample, ctx: VerifyContext, checks: dict[str, Check] | None = None) -> Verification:
    """Run every rule check on a sample; a check that crashes fails with its exception, it never aborts the run."""
    out = Verification()
    ctx._replays.pop(id(sample), None)
    for name, fn in (checks or CHECKS).items():
        try:
            ok, msg = fn(sample, ctx)
        except Exception as e:  # a malformed sample must be rejected with a reason, not stop the pipeline
            ok, msg = False, f"check crashed on this sample: {type(e).__name__}: {e}"
        out.checks.append(CheckResult(name, ok, msg))
    ctx._replays.pop(id(sample), None)
    return out
