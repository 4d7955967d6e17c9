"""The synthesis job: draw, generate, label, deduplicate, verify, write; resumable and deterministic.

Every attempt ``a`` draws all its randomness from ``Random(f"{seed}:{a}")`` and ends in
exactly one line in exactly one file: ``train.jsonl``/``test.jsonl`` (verified),
``rejected.jsonl`` (failed a check; kept with its reasons) or ``skipped.jsonl``
(generation failed, duplicate, or its complexity level was already full). Lines are flushed
as they are written, so after an interruption the files say which attempt was the last one
completed: a rerun with the same config drops a torn last line and continues from the next
attempt, with no sample lost and none duplicated.

With ``validation_n`` a second pass follows the ``n`` dialogs: validation attempt ``a`` draws from
``Random(f"{seed}:validation:{a}")`` (so train and test are the same with or without it) a
training-style task of a test-side user (:meth:`TaskSampler.sample`), and its verified dialog goes to
``validation.jsonl``; its rejected and skipped lines carry ``split: validation`` so that each pass
resumes from its own last attempt.

A dialog whose user turn copies a held-out chat request (:mod:`recagent.heldout_requests`: exact,
contained or near copies of the hand-written evaluation requests) is dropped as skipped with
reason ``heldout_request``; the report counts them and the run logs how many.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from recagent.dialogs import read_rows
from recagent.errors import ConfigError, RecagentError
from recagent.heldout_requests import RequestLeakIndex, user_turns
from recagent.synth.builder import GenerationFailed
from recagent.synth.complexity import LossScorer, label, relabel_by_loss
from recagent.synth.config import SynthConfig
from recagent.synth.leakage import check_leakage
from recagent.synth.programmatic import GenRequest, ProgrammaticGenerator
from recagent.synth.sample import Sample
from recagent.synth.tasks import TaskSampler
from recagent.synth.tool_pool import build_pool
from recagent.synth.verify import VerifyContext, verify
from recagent.tools.env import ToolEnv
from recagent.tools.recommender_tools import build_registry
from recagent.tools.toolkit import ToolRegistry

logger = logging.getLogger(__name__)
FILES = ("train", "test", "validation", "rejected", "skipped")
SPLITS = ("train", "test", "validation")  # the files of verified dialogs
JUDGE_DOWN_LIMIT = 3  # consecutive "judge unavailable" verdicts that stop the run


@dataclass
class RunState:
    """What the output folder already holds: counts, dedup keys and the last completed attempt."""

    last_attempt: int = -1
    last_validation_attempt: int = -1  # the validation pass counts its attempts apart
    accepted: Counter = field(default_factory=Counter)  # per split
    levels: Counter = field(default_factory=Counter)  # accepted per complexity level
    keys: set[str] = field(default_factory=set)
    counts: Counter = field(default_factory=Counter)  # lines per file


@dataclass
class SynthResult:
    """What a run produced and how fast."""

    out: Path
    accepted: dict[str, int]
    rejected: int
    skipped: dict[str, int]
    attempts: int
    seconds: float
    verified_per_minute: float


class RunLog:
    """This invocation's line in ``runs.jsonl`` (attempts, seconds), kept current as the run goes.

    The line is appended when the run starts and overwritten in place after every attempt, so a
    run killed with SIGKILL (no ``finally`` runs) still leaves its time behind, and a resumed
    report divides all verified dialogs by all the seconds that made them. The line has a fixed
    width (JSON padded with spaces), so an update is one small ``pwrite`` of the same bytes range:
    microseconds per attempt, and a kill leaves the old line or the new one, never a torn one.
    """

    WIDTH = 160  # characters before the newline; a record is about 100

    def __init__(self, out: Path, last_attempt: int):
        self.path = out / "runs.jsonl"
        runs = read_rows(self.path, repair=True)  # one line per earlier invocation (a torn one is cut off)
        self.t0 = time.perf_counter()
        self.record: dict[str, Any] = {
            "run": len(runs),
            "attempts": 0,
            "seconds": 0.0,
            "last_attempt": last_attempt,
            "finished": False,
        }
        with self.path.open("ab") as f:
            self.offset = f.tell()
            f.write(self._line())
        self.fd = os.open(self.path, os.O_WRONLY)

    def _line(self) -> bytes:
        return (json.dumps(self.record).ljust(self.WIDTH) + "\n").encode()

    def update(self, attempts: int, last_attempt: int, finished: bool = False) -> None:
        """Record progress so far (after every attempt's line is flushed, and once more at the end)."""
        seconds = round(time.perf_counter() - self.t0, 3)
        self.record.update(attempts=attempts, seconds=seconds, last_attempt=last_attempt, finished=finished)
        os.pwrite(self.fd, self._line(), self.offset)

    def close(self) -> None:
        """Close the file (the line stays as last written)."""
        os.close(self.fd)


def load_state(out: Path) -> RunState:
    """Scan the output folder (repairing torn lines) to know where to resume."""
    st = RunState()
    for name in FILES:
        for row in read_rows(out / f"{name}.jsonl", repair=True):
            st.counts[name] += 1
            meta = row.get("meta", row)
            if meta.get("split") == "validation":
                st.last_validation_attempt = max(st.last_validation_attempt, int(meta["attempt"]))
            else:
                st.last_attempt = max(st.last_attempt, int(meta["attempt"]))
            if name in SPLITS:
                st.accepted[name] += 1
                if name != "validation":
                    st.levels[meta["complexity"]["level"]] += 1
            if row.get("id"):
                st.keys.add(row["id"])
            elif meta.get("key"):
                st.keys.add(meta["key"])
    return st


def _check_resume(cfg: SynthConfig, out: Path) -> None:
    saved = out / "config.yaml"
    if not saved.is_file():
        return
    try:
        before = SynthConfig.model_validate(yaml.safe_load(saved.read_text()) or {})
    except Exception as e:  # a hand-edited or foreign file: say so instead of resuming blindly
        raise ConfigError(f"{saved} is not a synthesis config ({e}); use a new --out folder") from None
    old, new = before.generation_settings(), cfg.generation_settings()
    diff = sorted(k for k in new if old.get(k) != new.get(k))
    if diff:
        raise ConfigError(
            f"{out} holds a run with different settings ({', '.join(diff)}); resume with the same settings "
            "(only n, validation_n and max_attempts may change) or choose a new --out folder"
        )


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    keys = [k for k, w in weights.items() if w > 0]
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


class Synthesizer:
    """Runs the pipeline stages for one config over one tool environment."""

    def __init__(
        self,
        cfg: SynthConfig,
        env: ToolEnv,
        registry_factory: Callable[[ToolEnv], ToolRegistry] = build_registry,
        chat_model: Any = None,
        judge_model: Any = None,
    ):
        self.cfg, self.env, self.registry_factory = cfg, env, registry_factory
        self.pool = build_pool(
            registry_factory(env),
            list(env.catalog.all_genres),
            cfg.seed,
            cfg.variants_per_tool,
            cfg.heldout_variant_fraction,
            [d for d, w in cfg.domains.items() if w > 0] + ["movies"],
            cfg.extra_variants_per_tool,
        )
        self.sampler = TaskSampler(env.split, cfg.seed, cfg.test_user_fraction, cfg.min_history)
        self.generator: Any = ProgrammaticGenerator(env, registry_factory, self.pool, env.dataset.name)
        if cfg.generator == "llm":
            from recagent.synth.llm_generator import LLMGenerator

            self.generator = LLMGenerator(self.generator, cfg.llm, chat_model=chat_model)
        self.judge = None
        if cfg.judge is not None:
            from recagent.synth.judge import LLMJudge

            self.judge = LLMJudge(cfg.judge, chat_model=judge_model)
        self.scorer = LossScorer(cfg.target_model) if cfg.target_model else None
        self.vctx = VerifyContext(env, registry_factory)
        self.heldout_requests = RequestLeakIndex()  # the evaluation's hand-written requests: never in synthesized turns

    def request(self, attempt: int, validation: bool = False) -> GenRequest:
        """The seeded draw of attempt ``attempt`` (of the validation pass if ``validation``): split, kind, domain,
        user task, held-out tools or not."""
        cfg = self.cfg
        if validation:
            rng, split = random.Random(f"{cfg.seed}:validation:{attempt}"), "validation"
        else:
            rng = random.Random(f"{cfg.seed}:{attempt}")
            split = "test" if rng.random() < cfg.test_fraction else "train"
        kind = _weighted(rng, cfg.kinds)
        domain = _weighted(rng, cfg.domains)
        heldout = split == "test" and rng.random() < cfg.heldout_tool_share
        task = self.sampler.sample(split, rng)
        # drawn only when asked for, so that runs without serving-tool dialogs keep their seeded dialogs
        serving = cfg.serving_tools_share > 0 and rng.random() < cfg.serving_tools_share
        if serving:
            domain, heldout = "movies", False
        return GenRequest(
            attempt, kind, split, task, domain, heldout, rng, tuple(cfg.tools_per_dialog), cfg.max_distractors, serving
        )

    def make(
        self, attempt: int, state: RunState, quotas: dict[str, int] | None, validation: bool = False
    ) -> tuple[str, dict[str, Any]]:
        """Run one attempt through every stage; returns the file it belongs in and its row."""
        req = self.request(attempt, validation)
        where, row = self._make(req, state, None if validation else quotas)
        if where == "skipped" and validation:
            row["split"] = "validation"  # so that load_state resumes each pass from its own last attempt
        return where, row

    def _make(self, req: GenRequest, state: RunState, quotas: dict[str, int] | None) -> tuple[str, dict[str, Any]]:
        attempt = req.attempt
        try:
            sample = self.generator.generate(req)
        except GenerationFailed as e:
            return "skipped", {"attempt": attempt, "reason": "generation_failed", "detail": str(e), "kind": req.kind}
        leaks = self.heldout_requests.find(user_turns(sample.messages))
        if leaks:
            return "skipped", {
                "attempt": attempt,
                "reason": "heldout_request",
                "request": leaks[0].request_id,
                "detail": leaks[0].describe(),
                "kind": sample.kind,
            }
        sample.complexity = label(sample)
        if sample.id in state.keys:
            return "skipped", {"attempt": attempt, "reason": "duplicate", "key": sample.id, "kind": sample.kind}
        level = sample.complexity["level"]
        if quotas is not None and self.scorer is None and state.levels[level] >= quotas[level]:
            return "skipped", {"attempt": attempt, "reason": "level_full", "level": level, "kind": sample.kind}
        sample.verification = verify(sample, self.vctx)
        if self.scorer is not None and sample.verification.passed:
            relabel_by_loss(sample, self.scorer(sample), self.cfg.loss_easy_below, self.cfg.loss_hard_above)
            level = sample.complexity["level"]
            if quotas is not None and state.levels[level] >= quotas[level]:
                return "skipped", {"attempt": attempt, "reason": "level_full", "level": level, "kind": sample.kind}
        if self.judge is not None and sample.verification.passed:
            sample.verification.judge = self.judge(sample)
        if not sample.verification.passed:
            row = sample.to_row()
            row["meta"]["reasons"] = sample.verification.failures()
            return "rejected", row
        return sample.split, sample.to_row()

    def run(self, out: Path, progress: bool = True) -> SynthResult:
        """Produce ``cfg.n`` verified dialogs, then ``cfg.validation_n`` validation ones, in ``out`` (resuming what
        is there), then check leakage and report."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        out.mkdir(parents=True, exist_ok=True)
        _check_resume(cfg, out)
        cfg.to_yaml(out / "config.yaml")
        # which dataset the dialogs really came from (an env passed in may differ from cfg.tools.dataset)
        ds = self.env.dataset
        (out / "dataset.json").write_text(json.dumps({"name": ds.name, "users": ds.n_users, "items": ds.n_items}))
        state = load_state(out)
        quotas = cfg.quotas()
        max_attempts = cfg.max_attempts or 20 * cfg.n
        handles = {name: (out / f"{name}.jsonl").open("a", encoding="utf-8") for name in FILES}
        done = lambda: state.accepted["train"] + state.accepted["test"]  # noqa: E731  (the n of the first pass)
        attempts_now, judge_down = 0, 0
        log = RunLog(out, state.last_attempt)  # written now: a run killed before its first attempt still shows
        wanted = cfg.n + cfg.validation_n
        bar = tqdm(
            total=wanted,
            initial=min(sum(state.accepted.values()), wanted),
            desc="verified dialogs",
            unit="dlg",
            disable=not progress,
        )

        def record(attempt: int, where: str, row: dict[str, Any]) -> None:
            nonlocal attempts_now, judge_down
            handles[where].write(json.dumps(row, ensure_ascii=False) + "\n")
            handles[where].flush()
            state.counts[where] += 1
            attempts_now += 1
            log.update(attempts_now, state.last_attempt)
            if "id" in row:
                state.keys.add(row["id"])
            if where in SPLITS:
                state.accepted[where] += 1
                if where != "validation":  # level quotas are about the training and test mix
                    state.levels[row["meta"]["complexity"]["level"]] += 1
                bar.update(1)
            judge = (row.get("meta") or {}).get("verification", {}).get("judge") or {}
            judge_down = judge_down + 1 if str(judge.get("reason", "")).startswith("judge unavailable") else 0
            if judge_down >= JUDGE_DOWN_LIMIT:
                raise RecagentError(
                    f"{judge['reason']} ({JUDGE_DOWN_LIMIT} times in a row); finished work is "
                    "saved, rerun the same command to resume"
                )
            bar.set_postfix(attempts=attempt + 1, rejected=state.counts["rejected"], skipped=state.counts["skipped"])

        try:
            attempt = state.last_attempt + 1
            while done() < cfg.n and attempt < max_attempts:
                if quotas is not None and all(state.levels[lv] >= q for lv, q in quotas.items()):
                    break
                where, row = self.make(attempt, state, quotas)
                state.last_attempt = attempt
                record(attempt, where, row)
                attempt += 1
            attempt = state.last_validation_attempt + 1
            while state.accepted["validation"] < cfg.validation_n and attempt < 20 * cfg.validation_n:
                where, row = self.make(attempt, state, quotas, validation=True)
                state.last_validation_attempt = attempt
                record(attempt, where, row)
                attempt += 1
        finally:
            bar.close()
            for h in handles.values():
                h.close()
            log.update(attempts_now, state.last_attempt, finished=True)
            log.close()
        train = [Sample.from_row(r) for r in read_rows(out / "train.jsonl")]
        test = [Sample.from_row(r) for r in read_rows(out / "test.jsonl")]
        validation = [Sample.from_row(r) for r in read_rows(out / "validation.jsonl")]
        check_leakage(train, test, self.env.split, validation)
        from recagent.synth.export import write_exports
        from recagent.synth.report import write_report

        write_exports(out, train, test, cfg.exports)
        write_report(out, cfg)
        skipped = Counter(r["reason"] for r in read_rows(out / "skipped.jsonl"))
        if skipped.get("heldout_request"):
            logger.warning(
                "dropped %d dialog(s) whose user turn copies a held-out chat request", skipped["heldout_request"]
            )
        runs = read_rows(out / "runs.jsonl")
        total_s = sum(r["seconds"] for r in runs)
        verified = len(train) + len(test)
        return SynthResult(
            out=out,
            accepted={"train": len(train), "test": len(test), "validation": len(validation)},
            rejected=state.counts["rejected"],
            skipped=dict(skipped),
            attempts=state.last_attempt + 1,
            seconds=round(total_s, 2),
            verified_per_minute=round(verified / total_s * 60, 1) if total_s > 0 else 0.0,
        )


def synthesize(
    cfg: SynthConfig, out: str | Path, env: ToolEnv | None = None, progress: bool = True, **kwargs: Any
) -> SynthResult:
    """Load the tool environment named in ``cfg`` (unless given) and run the pipeline into ``out``."""
    env = env or ToolEnv.load(cfg.tools)
    return Synthesizer(cfg, env, **kwargs).run(Path(out), progress=progress)
