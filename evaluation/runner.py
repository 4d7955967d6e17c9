"""``recagent eval``: run every protocol for every system, append each answer to ``records.jsonl``, resume, report.

One record per (section, system, request): a killed run loses at most the answer in flight, and
running the same command again skips what is recorded. The leakage check runs before any
system is asked anything. The folder holds ``config.yaml`` (a different config in the same
folder is refused), ``records.jsonl``, ``results.json``, ``report.md`` and the plots.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from recagent.errors import RecagentError
from recagent.evaluation.config import EvalConfig
from recagent.evaluation.leakage import (
    REQUIRED_UPTO,
    check_models,
    check_policy_data,
    check_split_and_histories,
    training_data_dirs,
)
from recagent.evaluation.protocols import build_requests, sample_cases

logger = logging.getLogger(__name__)
RECORDS = "records.jsonl"


def default_out(cfg: EvalConfig) -> Path:
    """``$RECAGENT_HOME/runs/eval-<dataset>``."""
    from recagent.paths import recagent_home

    return recagent_home() / "runs" / f"eval-{Path(cfg.dataset).name}"


class RecordLog:
    """Append-only JSONL of finished answers; a torn last line (killed mid-write) is dropped on resume."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict[str, Any]] = []
        text = path.read_text() if path.is_file() else ""
        good = []
        for line in text.splitlines():
            try:
                self.rows.append(json.loads(line))
                good.append(line + "\n")
            except json.JSONDecodeError:
                logger.warning("dropping an unfinished record from %s (the run was killed while writing it)", path)
        if text != "".join(good):  # rewrite without the torn line, so new records start on a line of their own
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(good))
            tmp.replace(path)
        self.done = {(r["section"], r["system"], r["key"]) for r in self.rows}

    def add(self, row: dict[str, Any]) -> None:
        """Append one record and make it durable before going on."""
        self.rows.append(row)
        self.done.add((row["section"], row["system"], row["key"]))
        with self.path.open("a") as f:
            f.write(json.dumps(row, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())


# sizes that only add or drop requests: users are a seeded prefix, tasks and episodes are taken in order, so the
# answers already recorded stay valid when these change
GROWABLE = ("users", "tool_call_tasks", "simulator.users", "chat_requests_limit")


def _comparable(cfg: EvalConfig) -> dict:
    data = cfg.model_dump(mode="json", exclude={"out", "users", "tool_call_tasks", "chat_requests_limit"})
    data["simulator"].pop("users", None)
    return data


def _prepare_out(cfg: EvalConfig) -> Path:
    out = Path(cfg.out) if cfg.out else default_out(cfg)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "config.yaml"
    if saved.is_file():
        old, new = _comparable(EvalConfig.from_yaml(saved)), _comparable(cfg)
        if old != new:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise RecagentError(
                f"{out} holds an evaluation with a different config ({', '.join(diff)} differ); "
                f"use another --out, or the same config to resume (only {', '.join(GROWABLE)} may change)"
            )
    cfg.to_yaml(saved)
    return out


def load_env(cfg: EvalConfig):
    """The tool environment of the run: the agent's tool config on the run's dataset, the protocol's history, every model."""
    from recagent.tools.env import ToolEnv

    tools = cfg.agent.tools
    models = list(dict.fromkeys([*tools.models, *cfg.baselines])) if cfg.include_agent else list(cfg.baselines)
    default = tools.default_model if tools.default_model in models else models[0]
    return ToolEnv.load(
        tools.model_copy(
            update={
                "dataset": cfg.dataset,
                "history_upto": REQUIRED_UPTO[cfg.part],
                "models": models,
                "default_model": default,
            }
        )
    )


def run_eval(cfg: EvalConfig, env=None, agent=None, progress: bool = True) -> Path:
    """Run (or resume) the evaluation ``cfg`` describes; returns the output folder."""
    from tqdm.auto import tqdm

    from recagent.evaluation.aggregate import aggregate
    from recagent.evaluation.report import write_report
    from recagent.evaluation.systems import AgentSystem, RecommenderSystem
    from recagent.paths import model_dir

    out = _prepare_out(cfg)
    env = env or load_env(cfg)
    split = env.split
    cases = sample_cases(split, cfg.part, cfg.users, cfg.seed)
    # the leakage check comes before any system is asked anything
    check_split_and_histories(split, cfg.part, cases, env)
    check_models(split, {name: model_dir(split.dataset.name, name) for name in env.models})
    notes = []
    if cfg.include_agent and cfg.agent.tools.history_upto != REQUIRED_UPTO[cfg.part]:
        notes.append(
            f"the agent's tools.history_upto was set to {REQUIRED_UPTO[cfg.part]!r} for {cfg.part} targets, "
            "so its tools see exactly the baselines' history"
        )
    test_rows = _synth_test_rows(cfg) if cfg.include_agent and "tool_calls" in cfg.protocols else None
    chat_requests = _chat_requests(cfg, env, notes) if "chat_requests" in cfg.protocols else None
    if cfg.include_agent:
        policy_dirs = [d for d in (cfg.agent.policy.model, cfg.agent.policy.adapter_folder()) if d]
        notes += check_policy_data(
            split, [p for d in policy_dirs for p in training_data_dirs(d)], test_rows, chat_requests
        )
        if not policy_dirs or cfg.agent.policy.kind == "openai":
            notes.append("policy not trained by recagent here: no training dialogs to check")
    log = RecordLog(out / RECORDS)
    systems: list[Any] = [
        RecommenderSystem(n, env.models[n], env.catalog.ids, env.catalog.index_of) for n in cfg.baselines
    ]
    if cfg.include_agent:
        if agent is None:
            from recagent.agents import Agent

            agent = Agent.from_config(cfg.agent, env=env, db_path=out / "sessions.sqlite")
        systems.append(AgentSystem(agent))
    requests = build_requests(split, cases, list(cfg.protocols), cfg.k, cfg.n_candidates, cfg.history_lengths, cfg.seed)
    pending = [(s, r) for s in systems for r in requests if ("rank", s.name, r.key) not in log.done]
    for system, req in tqdm(pending, desc="rank requests", disable=not progress or not pending, unit="req"):
        resp = system.answer(req)
        log.add(
            {
                "section": "rank",
                "system": system.name,
                "key": req.key,
                "protocol": req.protocol,
                "user_id": req.user_id,
                "target": req.target,
                "candidates": list(req.candidates),
                "history_len": int(len(req.history)),
                **resp.to_dict(),
            }
        )
    if cfg.include_agent and "tool_calls" in cfg.protocols:
        if test_rows is None:
            notes.append("tool_calls skipped: set synth_dir to a `recagent synth` run")
        else:
            _run_tool_calls(cfg, agent, env, test_rows, log, progress)
    if cfg.include_agent and "simulator" in cfg.protocols:
        _run_simulator(cfg, agent, env, cases, log, progress)
    if chat_requests:
        _run_chat_requests(cfg, agent if cfg.include_agent else None, env, chat_requests, log, progress, notes)
    # records of this run's requests only: an earlier, larger run in the same folder may have answered more
    wanted = {("rank", r.key) for r in requests}
    if test_rows is not None:
        from recagent.evaluation.tool_calls import call_tasks

        wanted |= {("tool_call", t.id) for t in call_tasks(test_rows, cfg.tool_call_tasks)}
    wanted |= {("simulator", env.dataset.users.ids[c.user]) for c in _simulated(cfg, cases)}
    if chat_requests:
        from recagent.evaluation.chat_requests import SECTION, request_key

        wanted |= {(SECTION, request_key(r)) for r in chat_requests}
    rows = [r for r in log.rows if (r["section"], r["key"]) in wanted]
    results = aggregate(cfg, env, cases, rows, notes, chat_requests=chat_requests)
    (out / "results.json").write_text(json.dumps(results.to_dict(), indent=2, default=str) + "\n")
    write_report(results, out)
    return out


def _synth_test_rows(cfg: EvalConfig) -> list[dict] | None:
    if not cfg.synth_dir:
        return None
    from recagent.dialogs import read_rows

    path = Path(cfg.synth_dir) / "test.jsonl"
    if not path.is_file():
        raise RecagentError(
            f"synth_dir {cfg.synth_dir} has no test.jsonl; run `recagent synth --out {cfg.synth_dir}` first"
        )
    return read_rows(path)


def _run_tool_calls(cfg: EvalConfig, agent, env, rows: list[dict], log: RecordLog, progress: bool) -> None:
    from dataclasses import asdict

    from tqdm.auto import tqdm

    from recagent.evaluation.tool_calls import call_tasks, evaluate_task

    tasks = [t for t in call_tasks(rows, cfg.tool_call_tasks) if ("tool_call", "agent", t.id) not in log.done]
    pc = cfg.agent.policy
    # the same first-step tool choice the agent uses when serving
    choice = pc.initial_tool_choice()
    choice = None if choice == "auto" else choice
    for task in tqdm(tasks, desc="tool-call tasks", disable=not progress or not tasks, unit="task"):
        outcome = evaluate_task(agent.context.policy, task, env, choice, grounded_ids=agent.context.grounded_decoding())
        log.add({"section": "tool_call", "system": "agent", "key": task.id, **asdict(outcome)})


def _simulated(cfg: EvalConfig, cases):
    """The cases that get a simulated conversation (the first ``simulator.users``)."""
    if not cfg.include_agent or "simulator" not in cfg.protocols:
        return []
    return cases[: cfg.simulator.users] if cfg.simulator.users else cases


def _run_simulator(cfg: EvalConfig, agent, env, cases, log: RecordLog, progress: bool) -> None:
    """Simulated conversations with the agent, then with each loaded baseline as a chat agent (the same users)."""
    from dataclasses import asdict

    from tqdm.auto import tqdm

    from recagent.evaluation.simulator import (
        AttributeSimulator,
        LLMSimulator,
        RecommenderAgent,
        TargetProfile,
        run_episode,
    )

    sim_cfg = cfg.simulator
    systems = {"agent": agent, **{b: RecommenderAgent(env, b, cfg.k) for b in cfg.baselines if b in env.models}}
    todo = [
        (name, case)
        for name in systems
        for case in _simulated(cfg, cases)
        if ("simulator", name, env.dataset.users.ids[case.user]) not in log.done
    ]
    chat_model = None
    if sim_cfg.kind == "llm" and todo:
        from recagent.agents.config import make_policy

        chat_model = make_policy(sim_cfg.llm)
    for name, case in tqdm(todo, desc="simulated users", disable=not progress or not todo, unit="episode"):
        uid = env.dataset.users.ids[case.user]
        target = TargetProfile.from_catalog(env.catalog, case.target, env.popularity)
        sim = LLMSimulator(target, chat_model) if chat_model is not None else AttributeSimulator(target)
        ep = run_episode(systems[name], sim, target, uid, sim_cfg.max_turns, f"eval-sim-{name}-{uid}", env.catalog)
        log.add({"section": "simulator", "system": name, "key": uid, **asdict(ep)})


def _chat_requests(cfg: EvalConfig, env, notes: list[str]) -> list | None:
    """The hand-written chat requests of the run (checked against the catalog), or None with a note when they do not fit."""
    from recagent.heldout_requests import check_against_catalog, load_chat_requests, requests_dataset

    written_for = requests_dataset(cfg.chat_requests_file)
    if written_for and written_for != env.dataset.name:
        notes.append(
            f"chat_requests skipped: the requests are written for {written_for}, this run is on {env.dataset.name}"
        )
        return None
    requests = load_chat_requests(cfg.chat_requests_file)
    check_against_catalog(requests, env.catalog.all_genres, env.catalog.ids, env.dataset.users.ids)
    return requests[: cfg.chat_requests_limit] if cfg.chat_requests_limit else requests


def _run_chat_requests(
    cfg: EvalConfig, agent, env, requests: list, log: RecordLog, progress: bool, notes: list[str]
) -> None:
    from tqdm.auto import tqdm

    from recagent.evaluation.chat_requests import SECTION, agent_answer, baseline_answer, baseline_name, request_key

    model = cfg.chat_baseline_model
    if model in env.models:  # the conventional recommender alone, on the same requests (fast)
        name = baseline_name(model)
        for req in requests:
            if (SECTION, name, request_key(req)) not in log.done:
                log.add(
                    {
                        "section": SECTION,
                        "system": name,
                        "key": request_key(req),
                        **baseline_answer(env, req, model, cfg.k),
                    }
                )
    else:
        notes.append(
            f"chat_requests: {model} is not loaded, so the conventional baseline was not run (add it to baselines)"
        )
    if agent is None:
        return
    pc = cfg.agent.policy
    if pc.initial_tool_choice() == "required":
        notes.append(
            "chat_requests: the agent must call a tool before its first answer (policy.first_tool_choice "
            "'required', the default of the untrained base model), so it cannot pass a no-tool request"
        )
    todo = [r for r in requests if (SECTION, "agent", request_key(r)) not in log.done]
    for req in tqdm(todo, desc="chat requests", disable=not progress or not todo, unit="req"):
        log.add({"section": SECTION, "system": "agent", "key": request_key(req), **agent_answer(agent, req)})
