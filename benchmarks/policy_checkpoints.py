"""Score the checkpoints of a policy SFT or RL run on validation dialogs, to choose one (never on test dialogs).

Validation dialogs are the synthesis run's ``validation.jsonl`` when it has one (``validation_n``: dialogs of
users no training dialog has, so a checkpoint that fits the training users' dialogs gains nothing there),
else the rows of its ``train.jsonl`` after the run's ``max_samples`` (the training job never reads them, but
their users are training users), or after ``--validation-from`` when an earlier stage trained on more rows. Every
assistant turn of a validation dialog is one task: the turns that call tools are checked by BFCL-style
AST match (``recagent.evaluation.ast_match``) and the first turn of a no-tool dialog must not call. ``first_calls_serving`` is the subset that opens a dialog on the served tools.
``--answer-tasks N`` adds N turns (a separate seeded sample, so the call tasks stay the same) that answer
in words right after a tool result: ``answers_after_results`` is the share that does not call again (a
policy that keeps calling runs every chat turn to the step limit).
The policy is the local one as served: llama.cpp, grammar-constrained,
tool choice ``auto`` (it decides whether to call), greedy, with the checkpoint's LoRA adapter
(and, as served for a trained policy, several calls per reply allowed; scores before 2026-12-02 allowed one),
its calls' ids, saved sets and counts grounded in the conversation as the agent grounds them
(``recagent.agents.call_ids``; scores before 2026-12-05 left every argument free).
``--training-rows N`` scores the last N rows the run trained on instead (underfit or overfit?); with
``shared_tool_blocks_only`` only their served-block rows (``*_serving``) were really trained on.

    python benchmarks/policy_checkpoints.py --run ~/.cache/recagent/runs/policy/sft --tasks 80
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _rows(data_dir: Path, first_row: int, last_row: int | None, file: str = "train.jsonl") -> list[dict]:
    """Rows ``first_row`` to ``last_row`` of the synthesis run's ``file``."""
    return [json.loads(line) for line in (data_dir / file).read_text().splitlines()][first_row:last_row]


def synthesis_dataset(data_dir: Path):
    """The dataset a synthesis run was made on (its saved ``config.yaml``), or a one-line exit."""
    from recagent.config import ConfigError
    from recagent.synth.config import SynthConfig
    from recagent.tools.data import load_dataset

    try:
        return load_dataset(SynthConfig.from_yaml(data_dir / "config.yaml").tools.dataset)
    except ConfigError as e:
        raise SystemExit(f"{data_dir} is no synthesis run's folder: {e}") from None


def validation_tasks(
    data_dir: Path, first_row: int, n: int, seed: int = 0, last_row: int | None = None, file: str = "train.jsonl"
) -> list[dict]:
    """Call turns and no-tool first turns of ``file`` rows ``first_row`` to ``last_row`` (default: the end),
    a seeded sample of ``n``."""
    from synth_first_calls import is_serving, serving_tool_names  # this folder: one definition of a serving row

    from recagent.synth.export import to_bfcl
    from recagent.synth.sample import Sample

    served = serving_tool_names()
    tasks = []
    for row in _rows(data_dir, first_row, last_row, file):
        sample = Sample.from_row(row)
        serving = is_serving(row, served)
        for j, e in enumerate(to_bfcl(sample)):
            tasks.append(
                {
                    "entry": e,
                    "tools": sample.tools,
                    "kind": sample.kind,
                    "serving": serving,
                    "no_tool": False,
                    "first": j == 0,
                }
            )
        if sample.kind == "no_tool":
            first_user = next(i for i, m in enumerate(sample.messages) if m["role"] == "user")
            entry = {
                "id": f"{sample.id}_notool",
                "question": sample.messages[: first_user + 1],
                "ground_truth": [],
                "function": [t["function"] for t in sample.tools],
            }
            tasks.append(
                {"entry": entry, "tools": sample.tools, "kind": "no_tool", "serving": serving, "no_tool": True}
            )
    random.Random(seed).shuffle(tasks)
    return tasks[:n]


def answer_tasks(
    data_dir: Path, first_row: int, n: int, seed: int = 0, last_row: int | None = None, file: str = "train.jsonl"
) -> list[dict]:
    """Assistant turns in words that directly follow a tool result (rows ``first_row`` to ``last_row``), a seeded
    sample of ``n``: the policy should answer, not call again."""
    from synth_first_calls import is_serving, serving_tool_names

    served = serving_tool_names()
    tasks = []
    for k, row in enumerate(_rows(data_dir, first_row, last_row, file)):
        msgs = row["messages"]
        for j, m in enumerate(msgs):
            if m["role"] == "assistant" and not m.get("tool_calls") and j and msgs[j - 1]["role"] == "tool":
                entry = {
                    "id": f"answer_{first_row + k}_{j}",
                    "question": msgs[:j],
                    "ground_truth": [],
                    "function": [t["function"] for t in row["tools"]],
                }
                tasks.append(
                    {"entry": entry, "tools": row["tools"], "serving": is_serving(row, served), "answer": True}
                )
    random.Random(seed).shuffle(tasks)
    return tasks[:n]


def score(policy_kwargs: dict, tasks: list[dict], dataset) -> dict:
    """AST match on call turns, no-call rate on no-tool turns, tool-name match, latency, and the most common
    wrong tool choices of served first turns (gold -> said), and the first 20 wrong first turns in full; calls are
    grounded in ``dataset``'s users and items."""
    from langchain_core.messages import convert_to_messages

    from recagent.agents.call_ids import conversation_call_ids
    from recagent.agents.policies.local import LocalChatModel
    from recagent.evaluation.ast_match import PredictedCall, check_turn

    model = LocalChatModel(**policy_kwargs)
    tally: dict[str, list[int]] = {}
    names, seconds = [], []
    confusions: dict[str, int] = {}
    mistakes: list[dict] = []
    answer_mistakes: list[list[dict]] = []  # the calls made where a tool result should have been answered
    passed = []  # per task in order, 1 = right: two checkpoints scored on the same tasks compare paired
    errors: dict[str, int] = {}  # why call turns failed: which lever (decision, tool, argument) would fix them
    retried = 0  # replies the no_repeat_calls guard decoded again (their first call repeated an earlier one)
    for t in tasks:
        bound = model.bind_tools(t["tools"], tool_choice="auto")
        messages = convert_to_messages(t["entry"]["question"])
        ids = conversation_call_ids(
            messages,
            dataset.users.index_of,
            dataset.items.index_of,
            catalog_genres=dataset.items.all_genres,
            catalog=dataset.items,
        )
        t0 = time.perf_counter()
        ai = bound.invoke(messages, call_ids=ids)
        seconds.append(time.perf_counter() - t0)
        retried += bool(ai.response_metadata.get("repeated_calls"))
        calls = [PredictedCall(c["name"], c.get("args")) for c in ai.tool_calls]
        calls += [PredictedCall(c.get("name"), None) for c in ai.invalid_tool_calls]
        checked = check_turn(calls, t["entry"])
        ok = checked.valid
        passed.append(str(int(not calls if t.get("answer") else ok)))
        if t.get("answer"):
            tally.setdefault("answers_after_results", []).append(int(not calls))
            if calls and len(answer_mistakes) < 10:
                answer_mistakes.append([{"name": c.name, "args": c.arguments} for c in calls])
            continue
        groups = ["no_tool"] if t["no_tool"] else ["calls", "calls_serving" if t["serving"] else "calls_variants"]
        if t.get("first") and t["serving"]:
            groups.append("first_calls_serving")  # what the decision-only stages train and a new chat opens with
        for g in groups:
            tally.setdefault(g, []).append(int(ok))
        if not ok and not t["no_tool"]:
            kind = _error_kind(checked, calls, t["entry"])
            errors[kind] = errors.get(kind, 0) + 1
        said = "+".join(sorted(c.name or "?" for c in calls)) or "<words>"
        if not t["no_tool"]:
            gold = "+".join(sorted(next(iter(g)) for g in t["entry"]["ground_truth"]))
            names.append(int(said == gold))
        else:
            gold = "<words>"
        if t.get("first") and t["serving"] or t["no_tool"]:
            if said != gold:  # which decisions go wrong, and into what
                confusions[f"{gold} -> {said}"] = confusions.get(f"{gold} -> {said}", 0) + 1
            if not ok and len(mistakes) < 20:  # the request itself: a wrong label reads differently from a weak model
                mistakes.append(
                    {
                        "request": str(t["entry"]["question"][-1].get("content", ""))[:200],
                        "gold": t["entry"]["ground_truth"],
                        "said": [{"name": c.name, "args": c.arguments} for c in calls] or ai.content[:120],
                    }
                )
    out = {g: {"n": len(v), "accuracy": round(sum(v) / len(v), 3)} for g, v in sorted(tally.items())}
    out["tool_names"] = {"n": len(names), "accuracy": round(sum(names) / max(1, len(names)), 3)}
    out["latency_s_mean"] = round(sum(seconds) / max(1, len(seconds)), 2)
    out["repeat_retries"] = retried
    out["call_errors"] = dict(sorted(errors.items(), key=lambda kv: -kv[1]))
    out["first_call_confusions"] = dict(sorted(confusions.items(), key=lambda kv: -kv[1])[:12])
    out["first_call_mistakes"] = mistakes
    out["passed"] = "".join(passed)
    if answer_mistakes:
        out["calls_instead_of_answers"] = answer_mistakes
    return out


def _error_kind(checked, calls: list, entry: dict) -> str:
    """Why a call turn failed: words instead of a call, too many or too few calls, a wrong tool, or the argument
    (by name) whose value or type was wrong."""
    if checked.error == "wrong_count":
        gold = len(entry["ground_truth"])
        return "words, no call" if not calls else ("more calls" if len(calls) > gold else "fewer calls")
    if checked.error in ("value_not_allowed", "wrong_type"):  # the message starts "tool.param: ..."
        return f"{checked.error}: {checked.message.split(':')[0].split('.')[-1]}"
    return str(checked.error)


def paired(scores: dict, n_tasks: int, against: str) -> dict:
    """Each checkpoint minus ``against`` on the same call and no-tool tasks (answer tasks left out), with a paired
    bootstrap 95% CI: at a few hundred tasks an unpaired gap of 0.04 is within the noise, a paired one may not be."""
    from recagent.evaluation.metrics import paired_difference_ci

    base = scores[against].get("passed", "")[:n_tasks]
    out = {}
    for name, s in scores.items():
        mine = s.get("passed", "")[:n_tasks]
        if name == against or len(mine) != n_tasks or len(base) != n_tasks:
            continue  # scored on other tasks (an older call) or before per-task results were kept
        mean, low, high = paired_difference_ci([int(c) for c in mine], [int(c) for c in base])
        out[f"{name} - {against}"] = {"mean": round(mean, 3), "ci_low": round(low, 3), "ci_high": round(high, 3)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="SFT or RL output folder (checkpoint-* inside)")
    ap.add_argument("--data", type=Path, default=None, help="synthesis run (default: the run's data_dir)")
    ap.add_argument("--tasks", type=int, default=80)
    ap.add_argument("--answer-tasks", type=int, default=40, help="turns that answer a tool result (0: none)")
    ap.add_argument("--checkpoints", nargs="*", default=None, help="names to score (default: all, and the base)")
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: every core)")
    ap.add_argument(
        "--router-top-k",
        type=int,
        default=None,
        help="policy.router_top_k for checkpoints whose folder holds a tool router (default: as served)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "policy_checkpoints.json")
    ap.add_argument(
        "--training-rows",
        type=int,
        default=0,
        help="score the last N rows the run TRAINED on instead of validation rows: as wrong there as on "
        "validation rows means the adapter underfits (more updates, a higher learning rate), not that it overfits",
    )
    ap.add_argument(
        "--validation-from",
        type=int,
        default=None,
        help="first validation row when an earlier stage trained on more rows than this run (an RL run from an "
        "SFT adapter trained on 6600 rows: 6600); never before this run's own max_samples",
    )
    ap.add_argument(
        "--paired-against",
        default=None,
        help="checkpoint NAME the others are compared with, task by task (default: the first one named)",
    )
    ap.add_argument(
        "--compare-with",
        type=Path,
        default=None,
        help="an earlier output of this script (other code, same tasks): its checkpoints join the paired comparison "
        "as 'NAME (FILE)', e.g. --paired-against 'checkpoint-shipped (policy_checkpoints_router)'",
    )
    ap.add_argument(
        "--paired-only",
        action="store_true",
        help="score nothing: compare the checkpoints already in --out (and --compare-with) task by task",
    )
    ap.add_argument("--note", default=None, help="how these checkpoints were measured (default: keep the file's note)")
    args = ap.parse_args()
    if args.compare_with is not None and not args.compare_with.is_file():
        raise SystemExit(f"--compare-with {args.compare_with}: no such file")
    if args.router_top_k is not None and args.router_top_k < 0:
        raise SystemExit(f"--router-top-k {args.router_top_k}: expected 0 (no router) or more tools")

    import yaml
    from machine import machine_info  # benchmarks/machine.py (this script's folder is on sys.path)

    from recagent.agents.config import PolicyConfig
    from recagent.agents.tool_router import router_file

    saved = next((args.run / f for f in ("sft_config.yaml", "rl_config.yaml") if (args.run / f).is_file()), None)
    tokens_cfg = args.run / "train_tokens_config.json"  # rl/train_tokens.py: rows_from, its rows' SFT job config
    if saved is not None:
        cfg = yaml.safe_load(saved.read_text())
    elif tokens_cfg.is_file():
        cfg = json.loads(tokens_cfg.read_text())["rows_from"]
    else:
        raise SystemExit(
            f"{args.run} has no sft_config.yaml, rl_config.yaml or train_tokens_config.json: is it a training run's "
            "folder?"
        )
    data = args.data or Path(cfg["data_dir"])
    first = int(cfg.get("max_samples") or 0)
    held_out_users = (data / "validation.jsonl").is_file() and args.validation_from is None and not args.training_rows
    if held_out_users:
        file, start, end, scored = "validation.jsonl", 0, None, "validation.jsonl (users no training dialog has)"
    else:
        if not first:
            raise SystemExit(
                f"the run trained on every row (max_samples unset) and {data} has no validation.jsonl: there are no "
                "validation dialogs (make them with `recagent synth ... -o validation_n=400` on the same --out)"
            )
        if args.validation_from is not None:
            if args.validation_from < first:  # rows before max_samples are this run's training rows
                raise SystemExit(f"--validation-from {args.validation_from} is before the run's max_samples {first}")
            first = args.validation_from
        start, end = (max(0, first - args.training_rows), first) if args.training_rows else (first, None)
        file, scored = "train.jsonl", f"training rows {start}-{end - 1}" if end else f"validation rows {first}-"
    tasks = validation_tasks(data, start, args.tasks, last_row=end, file=file)
    dataset = synthesis_dataset(data)
    answers = answer_tasks(data, start, args.answer_tasks, last_row=end, file=file)
    names = args.checkpoints or ["base"] + sorted(
        (p.name for p in args.run.glob("checkpoint-*")), key=lambda s: int(s.split("-")[1])
    )
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results.update(
        {
            "what": __doc__.splitlines()[0],
            "machine": machine_info(),
            "run": str(args.run),
            "validation_rows_from": None if held_out_users else first,
            "scored_rows": scored,
            "tasks": len(tasks),
            "answer_tasks": len(answers),
        }
    )
    if args.note or "note" not in results:  # one note for the file: scores of earlier calls keep theirs
        results["note"] = args.note or "latencies are clean only if nothing else ran on the machine"
    scores = results.setdefault("scores", {})
    if args.compare_with is not None:  # scored by other code on the same tasks: compared task by task
        earlier = json.loads(args.compare_with.read_text())
        if earlier.get("tasks") != len(tasks) or earlier.get("scored_rows") != scored:
            raise SystemExit(f"--compare-with {args.compare_with} scored other tasks ({earlier.get('tasks')} tasks)")
        for name, s in earlier.get("scores", {}).items():
            scores[f"{name} ({args.compare_with.stem})"] = s
    if args.paired_only:
        against = args.paired_against or next(iter(scores), None)
        if against not in scores:
            raise SystemExit(f"--paired-against {against!r}: not among the scores ({', '.join(scores)})")
        results["paired"] = {"tasks": "call and no-tool tasks", **paired(scores, len(tasks), against)}
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results["paired"], indent=1))
        return
    for name in names:
        adapter = None if name == "base" else str(args.run / name)
        served = PolicyConfig(adapter=adapter)
        router = router_file(adapter)
        kwargs = {
            "adapter_path": adapter,
            "num_threads": args.threads,
            "parallel_tool_calls": served.parallel_calls(),  # as served
            "router_path": str(router) if router else None,
            "router_top_k": served.router_top_k if args.router_top_k is None else args.router_top_k,
            "router_reply": served.router_reply,
            "router_answer_p": served.router_answer_p,
            "router_call_p": served.router_call_p,
            "router_save_p": served.router_save_p,
            "ask_for_user": served.ask_for_user,
        }
        scores[name] = score(kwargs, tasks + answers, dataset)
        scores[name]["router_top_k"] = kwargs["router_top_k"] if router else None  # None: no router in the folder
        print(name, json.dumps(scores[name]), flush=True)
        against = args.paired_against or names[0]
        if against in scores:
            results["paired"] = {"tasks": "call and no-tool tasks", **paired(scores, len(tasks), against)}
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
