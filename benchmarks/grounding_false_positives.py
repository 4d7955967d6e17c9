"""False alarms of the answer check on answers whose items all came from tools, and what it still catches.

The answer check (``agents/graph.py: check``) sends an answer back when
``recagent.agents.grounding.ground_answer`` finds an item that no tool returned (unsupported) or
that is not in the catalog (unknown); since issue 18 it also reads titles written in plain text
(``agents/title_match.py``). A *false positive* is an answer flagged although every item it names
came from a tool result of its conversation. Two answer sources:

1. **Synthesized dialogs** (``--synth``, default ``examples/synth_sample.jsonl``; more files, e.g. a
   ``recagent synth`` output's ``train.jsonl``/``test.jsonl``, may be added): every assistant text
   turn, checked against the ids of the tool results before it (as ``synth/verify.py`` does). The
   pipeline writes ``[id] Title (Year)`` citations; the turns with no tool result before them
   (greetings, clarifications, capability lists) are prose that must not alarm either.
2. **Hand-written chat requests** (``recagent/data/chat_requests_ml100k.yaml``). They have no gold
   answers, so for each request that needs a tool, its first accepted call is run on the real
   ML-100K tools (trained models from ``$RECAGENT_HOME``) and the answer is written by the agent's
   own fallback formatter (``agents.graph.fallback``: "Here is what I found:" and ``[id] Title
   (Year)`` lines, the first five ids of the result). Requests whose right first step is no tool
   have no tool result to answer from and are left out (their prose is covered by 1).

Citations with ids are what the old reader already handled, so the same supported items are also
rendered the ways a policy writes them without ids (``--styles``): ``title_year`` ("1. Heat
(1995)"), ``plain_list`` ("1. The Fifth Element": article in front, no year), ``plain_inline``
("Top picks: 1. A 2. B"), ``lead_in`` ("I recommend A, B and C. I hope you enjoy them!"),
``year_comma`` ("- A, 1997") and ``bold_dash`` ("1. **A** - a comedy pick"). Each rendered answer
is also checked with its last item replaced by a catalog item no tool returned (``swap``: is it
flagged?) and by an invented title (``invented``: is it flagged?), to show what the reader catches.

Writes ``results/grounding_false_positives.json``::

    python benchmarks/grounding_false_positives.py
    python benchmarks/grounding_false_positives.py --synth examples/synth_sample.jsonl RUN/test.jsonl
    python benchmarks/grounding_false_positives.py --no-requests   # no trained models needed
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from machine import machine_info  # benchmarks/machine.py: the same machine block in every results file

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
STYLES = ("title_year", "plain_list", "plain_inline", "lead_in", "year_comma", "bold_dash")
# titles that are in no catalog (checked at run time: one that is found is left out)
INVENTED = (
    "Galaxy Quest Returns",
    "The Matrix Reloaded",
    "Midnight Harbor",
    "The Last Lighthouse Keeper",
    "Echoes of Tomorrow",
    "Crimson Valley Road",
    "The Paper Astronaut",
    "Silent Orchard",
    "Neon Requiem",
    "A Winter in Lisbon",
)
# replies that name no item, in the registers a chat policy uses (greeting, capabilities, clarification,
# refusal, sign-off); written for this benchmark, so a small sanity set, not an independent sample
PROSE = (
    "Hi there! I'm your movie assistant. Tell me your user id or a genre you like, and I'll find something.",
    "Good Morning! How can I help you today?",
    "Happy Friday! Want something light for the weekend?",
    "Sure, I can help with that. Do you prefer Action or Comedy?",
    "Here are some picks for you",
    "I hope you enjoy them!",
    "Based on your history (lots of Drama and Romance), here are some picks.",
    "Welcome back, User 42! What are you in the mood for tonight?",
    "Of course! Which genre: Horror, Western or Film-Noir?",
    "Thanks! Enjoy the movies and have a Great Weekend.",
    "Sorry, I can't help with homework. I Recommend asking a teacher.",
    "I don't know that, but I can recommend movies from the MovieLens catalog.",
    "Watch Out for spoilers!",
    "Tom Hanks and Meg Ryan star in several romantic comedies.",
    "Heat is rising, so a light comedy may suit you.",
    "It was fun. Kids love it.",
    "Fargo is a long drive from here.",
    "Speed matters less than mood.",
    "I can: 1. Recommend films for a user 2. Search the catalog 3. Rank candidates",
    "I can:\n- Show Your History\n- Search by genre or year\n- Rank candidates for you",
    "Pick one:\n1. Action\n2. Comedy\n3. Something Else",
    "Let me know if you'd like More Options!",
)
_TRAILING_ARTICLE = re.compile(r"^(?P<rest>.*), (?P<art>The|A|An)$")
_CITED = re.compile(r"\[([A-Za-z0-9_\-]{1,64})\]")


# -- answers ------------------------------------------------------------------------------------------------------------


def result_ids(artifact: Any) -> list[str]:
    """Catalog ids a tool result names, as the graph reads them (``agents.steps.summarise_result``)."""
    from recagent.agents.steps import summarise_result

    if isinstance(artifact, str):
        try:
            artifact = json.loads(artifact)
        except json.JSONDecodeError:
            return []
    return summarise_result(artifact if isinstance(artifact, dict) else None)[1]


def synth_answers(path: Path) -> list[dict[str, Any]]:
    """Every assistant text turn of a synthesized dialog file, with the tool-returned ids before it."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        dialog = json.loads(line)
        seen: set[str] = set()
        for m in dialog["messages"]:
            if m["role"] == "tool":
                seen |= set(result_ids(m.get("artifact")))
            elif m["role"] == "assistant" and m.get("content") and not m.get("tool_calls"):
                cited = [i for i in dict.fromkeys(_CITED.findall(m["content"])) if i in seen]
                out.append(
                    {
                        "source": dialog.get("id"),
                        "text": m["content"],
                        "seen": set(seen),
                        "items": cited,
                        "after_tool": bool(seen),
                    }
                )
    return out


def request_answers(env, requests) -> tuple[list[dict[str, Any]], list[str]]:
    """One fallback-formatted answer per tool request, from its first accepted call that runs on the real tools."""
    from recagent.agents.config import AgentConfig
    from recagent.agents.graph import fallback
    from recagent.agents.steps import StepRecord
    from recagent.tools.recommender_tools import build_registry

    runtime = SimpleNamespace(context=SimpleNamespace(env=env, config=AgentConfig()))
    out, failed = [], []
    for req in requests:
        if req.no_tool:
            continue
        registry = build_registry(env.session())
        for accepted in req.accepted_first_calls:
            args = dict(accepted.args)
            if accepted.tool == "search_items":
                args.setdefault("query", req.text)  # "any query": the user's own words
            res = registry.call(accepted.tool, args)
            ids = result_ids(res.result) if res.ok else []
            if ids:
                break
        else:
            failed.append(req.id)
            continue
        step = StepRecord(
            turn=0,
            index=0,
            kind="tool_call",
            tool=accepted.tool,
            arguments=args,
            call_id="bench",
            valid=True,
            result_item_ids=ids,
        )
        done = fallback({"trace": [step], "turn": 0, "steps": 1, "messages": []}, runtime)
        out.append(
            {
                "source": req.id,
                "text": done["answer"],
                "seen": set(ids),
                "items": list(done["recommended"]),
                "after_tool": True,
                "tool": accepted.tool,
            }
        )
    return out, failed


def natural_title(title: str) -> str:
    """A catalog title as prose writes it: "Fifth Element, The" -> "The Fifth Element"."""
    m = _TRAILING_ARTICLE.match(title)
    return f"{m.group('art')} {m.group('rest')}" if m else title


def render(style: str, names: list[tuple[str, int, str]]) -> str:
    """An answer naming ``names`` ((title, year, genre)) in one of :data:`STYLES`."""
    if style == "title_year":
        return "Here is what I found:\n" + "\n".join(f"{n}. {t} ({y})" for n, (t, y, _) in enumerate(names, 1))
    if style == "plain_list":
        return "Here is what I found:\n" + "\n".join(f"{n}. {t}" for n, (t, _, _) in enumerate(names, 1))
    if style == "plain_inline":
        return "Top picks: " + " ".join(f"{n}. {t}" for n, (t, _, _) in enumerate(names, 1))
    if style == "lead_in":
        titles = [t for t, _, _ in names]
        joined = titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]
        return f"I recommend {joined}. I hope you enjoy them!"
    if style == "year_comma":
        return "\n".join(f"- {t}, {y}" for t, y, _ in names)
    if style == "bold_dash":
        return "\n".join(f"{n}. **{t}** - a {g.lower()} pick" for n, (t, _, g) in enumerate(names, 1))
    raise ValueError(style)


def item_name(catalog, item_id: str) -> tuple[str, int, str]:
    """(title as prose writes it, year, first genre) of a catalog item."""
    i = catalog.index_of[item_id]
    genre = catalog.genres[i][0] if catalog.genres[i] else "film"
    return natural_title(catalog.titles[i]), int(catalog.years[i]), genre


# -- measuring ----------------------------------------------------------------------------------------------------------


def flagged(text: str, catalog, seen: set[str]) -> tuple[bool, dict[str, list[str]]]:
    """Whether the check would send ``text`` back, and why."""
    from recagent.agents.grounding import ground_answer

    g = ground_answer(text, catalog, seen)
    return not g.ok, {"unsupported": g.unsupported, "unknown": g.unknown}


def rate(hits: int, n: int) -> float | None:
    return round(hits / n, 4) if n else None


def false_positives(answers: list[dict[str, Any]], catalog, style: str | None) -> dict[str, Any]:
    """Answers flagged although their items are supported: as written (``style`` None) or rendered in ``style``."""
    n, bad, examples = 0, 0, []
    for a in answers:
        if style is None:
            text = a["text"]
        elif a["items"]:
            text = render(style, [item_name(catalog, i) for i in a["items"]])
        else:
            continue
        n += 1
        is_bad, why = flagged(text, catalog, a["seen"])
        if is_bad:
            bad += 1
            if len(examples) < 10:
                examples.append({"source": a["source"], "text": text[:300], **why})
    return {"answers": n, "flagged": bad, "false_positive_rate": rate(bad, n), "examples": examples}


def detection(answers: list[dict[str, Any]], catalog, style: str, invented: list[str], seed: int) -> dict[str, Any]:
    """How often a rendered answer is flagged once its last item is swapped for an unsupported or invented one."""
    rng = random.Random(seed)
    n = swap_hits = inv_hits = 0
    missed: dict[str, list[str]] = {"swap": [], "invented": []}
    for a in answers:
        if not a["items"]:
            continue
        names = [item_name(catalog, i) for i in a["items"]]
        other = rng.choice([i for i in catalog.ids if i not in a["seen"]])
        swapped = names[:-1] + [item_name(catalog, other)]
        fake = (invented[n % len(invented)], 1999, "Drama")
        n += 1
        if flagged(render(style, swapped), catalog, a["seen"])[0]:
            swap_hits += 1
        elif len(missed["swap"]) < 10:
            missed["swap"].append(swapped[-1][0])
        if flagged(render(style, names[:-1] + [fake]), catalog, a["seen"])[0]:
            inv_hits += 1
        elif len(missed["invented"]) < 10:
            missed["invented"].append(fake[0])
    return {
        "answers": n,
        "swap_detected": rate(swap_hits, n),
        "invented_detected": rate(inv_hits, n),
        "missed_examples": missed,
    }


def measure_set(answers: list[dict[str, Any]], catalog, styles: list[str], invented: list[str], seed: int) -> dict:
    """False positives as written and per style, plus detection per style, for one answer source."""
    after = [a for a in answers if a["after_tool"]]
    prose = [a for a in answers if not a["after_tool"]]
    return {
        "answers": len(answers),
        "with_items": sum(bool(a["items"]) for a in answers),
        "as_written": {
            "after_tool_results": false_positives(after, catalog, None),
            "no_tool_result_yet": false_positives(prose, catalog, None),
        },
        "rendered": {s: false_positives(after, catalog, s) for s in styles},
        "detection": {s: detection(after, catalog, s, invented, seed) for s in styles},
    }


def timing(answers: list[dict[str, Any]], catalog, styles: list[str]) -> dict[str, float]:
    """Index build time and mean check time per answer (as written and rendered)."""
    from recagent.agents.grounding import ground_answer
    from recagent.agents.title_match import TitleIndex

    t0 = time.perf_counter()
    TitleIndex(catalog)
    build_ms = (time.perf_counter() - t0) * 1000
    texts = [a["text"] for a in answers] + [
        render(s, [item_name(catalog, i) for i in a["items"]]) for s in styles for a in answers if a["items"]
    ]
    t0 = time.perf_counter()
    for t in texts:
        ground_answer(t, catalog, set())
    per = (time.perf_counter() - t0) / max(len(texts), 1)
    return {
        "index_build_ms": round(build_ms, 1),
        "check_us_per_answer": round(per * 1e6, 1),
        "answers_timed": len(texts),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--synth",
        type=Path,
        nargs="+",
        default=[ROOT / "examples" / "synth_sample.jsonl"],
        help="synthesized dialog files (JSONL, one dialog a line)",
    )
    p.add_argument("--no-requests", action="store_true", help="skip the chat requests (they need trained models)")
    p.add_argument("--styles", nargs="+", default=list(STYLES), choices=STYLES)
    p.add_argument("--seed", type=int, default=0, help="seed of the swapped-in items")
    p.add_argument("--out", type=Path, default=RESULTS / "grounding_false_positives.json")
    args = p.parse_args()

    from recagent.agents.title_match import title_index
    from recagent.heldout_requests import load_chat_requests, packaged_path
    from recagent.tools.data import load_dataset

    t_start = time.perf_counter()
    catalog = load_dataset("ml-100k").items
    index = title_index(catalog)
    invented = [t for t in INVENTED if not index.exact(t)]
    sets: dict[str, Any] = {}
    all_answers: list[dict[str, Any]] = []
    for path in args.synth:
        answers = synth_answers(path)
        all_answers += answers
        name = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
        sets[f"synth:{name}"] = measure_set(answers, catalog, args.styles, invented, args.seed)
    prose = [
        {"source": f"prose-{n}", "text": t, "seen": set(), "items": [], "after_tool": False}
        for n, t in enumerate(PROSE)
    ]
    sets["prose_without_items"] = {
        "answers": len(prose),
        "no_tool_results": false_positives(prose, catalog, None),
        # the same replies in a conversation where tools had returned items: lists then count as item lists
        "after_tool_results": false_positives([{**a, "seen": {"1"}} for a in prose], catalog, None),
    }
    skipped: dict[str, Any] = {}
    if not args.no_requests:
        from recagent.tools.env import ToolEnv

        env = ToolEnv.load()
        requests = load_chat_requests()
        answers, failed = request_answers(env, requests)
        all_answers += answers
        sets["chat_requests"] = measure_set(answers, catalog, args.styles, invented, args.seed)
        sets["chat_requests"]["requests"] = len(requests)
        skipped = {
            "no_tool": sum(r.no_tool for r in requests),
            "no_tool_result": failed,
            "file": str(packaged_path().relative_to(ROOT))
            if packaged_path().is_relative_to(ROOT)
            else str(packaged_path()),
        }
    report = {
        "what": "answers the check flags (unsupported or unknown items) although every item they name came from a tool "
        "result of their conversation; and, per rendering style, how often an answer is flagged once its last item is "
        "swapped for an unsupported catalog item or an invented title",
        "machine": machine_info(),
        "invented_titles": invented,
        "sets": sets,
        "chat_requests_skipped": skipped,
        "timing": timing(all_answers, catalog, args.styles),
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")

    print(f"{'set':<48}{'style':<14}{'answers':>8}{'flagged':>8}{'FP rate':>9}{'swap':>7}{'invent':>7}")
    for name, s in sets.items():
        if "as_written" not in s:
            for where in ("no_tool_results", "after_tool_results"):
                fp = s[where]
                print(
                    f"{name[-47:]:<48}{where[:13]:<14}{fp['answers']:>8}{fp['flagged']:>8}{fp['false_positive_rate'] or 0:>9.3f}"
                )
            continue
        for where, fp in s["as_written"].items():
            print(
                f"{name[-47:]:<48}{where[:13]:<14}{fp['answers']:>8}{fp['flagged']:>8}{fp['false_positive_rate'] or 0:>9.3f}"
            )
        for style, fp in s["rendered"].items():
            d = s["detection"][style]
            print(
                f"{name[-47:]:<48}{style:<14}{fp['answers']:>8}{fp['flagged']:>8}{fp['false_positive_rate'] or 0:>9.3f}"
                f"{d['swap_detected'] or 0:>7.2f}{d['invented_detected'] or 0:>7.2f}"
            )
    print(f"timing: {report['timing']}; wrote {args.out}")


if __name__ == "__main__":
    main()
