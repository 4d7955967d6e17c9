"""The epoch loop shared by the torch recommenders: progress, early stopping on valid, resume.

Model selection uses the validation targets only. After every epoch the loop writes a
resume file (model, optimiser, best state, counters) so an interrupted run continues where
it stopped; the file is removed once training finishes.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from recagent.tools.data.split import LeaveOneOutSplit
from recagent.tools.recommenders.base import FitReport
from recagent.tools.recommenders.evaluate import evaluate

RESUME_FILE = "resume.pt"


def train_with_early_stopping(
    model,  # a Recommender with torch modules in `model.net`
    optimizer: torch.optim.Optimizer,
    run_epoch: Callable[[int], float],
    split: LeaveOneOutSplit,
    max_epochs: int,
    patience: int,
    valid_metric: str = "NDCG@10",
    eval_every: int = 1,
    show_progress: bool = True,
    checkpoint_dir: Path | None = None,
) -> FitReport:
    """Run ``run_epoch`` until the validation metric stops improving; keep the best weights."""
    report = FitReport()
    best_state = None
    best_score, bad_evals, start_epoch = -1.0, 0, 0
    resume_path = checkpoint_dir / RESUME_FILE if checkpoint_dir else None
    if resume_path is not None and resume_path.is_file():
        blob = torch.load(resume_path, map_location="cpu", weights_only=False)
        model.net.load_state_dict(blob["net"])
        optimizer.load_state_dict(blob["optimizer"])
        best_state, best_score, bad_evals = blob["best_state"], blob["best_score"], blob["bad_evals"]
        start_epoch, report = blob["epoch"], blob["report"]
        torch.set_rng_state(blob["rng"])
    t0 = time.perf_counter() - report.seconds
    bar = tqdm(range(start_epoch, max_epochs), desc=f"train {model.name}", disable=not show_progress, leave=False)
    for epoch in bar:
        model.net.train()
        loss = run_epoch(epoch)
        entry = {"epoch": epoch + 1, "loss": float(loss), "seconds": time.perf_counter() - t0}
        stop = False
        if (epoch + 1) % eval_every == 0 or epoch + 1 == max_epochs:
            model.net.eval()
            with torch.no_grad():
                valid = evaluate(model, split, "valid")
            entry.update({f"valid_{k}": v for k, v in valid.items()})
            score = valid[valid_metric]
            if score > best_score:
                best_score, bad_evals = score, 0
                best_state = copy.deepcopy(model.net.state_dict())
                report.best_epoch, report.best_valid = epoch + 1, valid
            else:
                bad_evals += 1
                stop = bad_evals >= patience
            bar.set_postfix(loss=f"{loss:.4f}", **{valid_metric: f"{score:.4f}", "best": f"{best_score:.4f}"})
        report.log.append(entry)
        report.epochs = epoch + 1
        report.seconds = time.perf_counter() - t0
        if resume_path is not None:
            resume_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = resume_path.with_suffix(".tmp")
            torch.save(
                {
                    "net": model.net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "best_state": best_state,
                    "best_score": best_score,
                    "bad_evals": bad_evals,
                    "epoch": epoch + 1,
                    "report": report,
                    "rng": torch.get_rng_state(),
                },
                tmp,
            )
            tmp.replace(resume_path)
        if stop:
            break
    bar.close()
    if best_state is not None:
        model.net.load_state_dict(best_state)
    model.net.eval()
    if resume_path is not None and resume_path.is_file():
        resume_path.unlink()
    return report
