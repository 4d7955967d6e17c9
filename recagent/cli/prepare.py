"""First use, once for every command: fetch the dataset, train the recommenders it lacks, convert the local model.

``recagent quickstart``, ``chat``, ``recommend``, ``serve`` and ``mcp`` call :func:`prepare`; nothing else fetches
or trains on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape

_notices = Console(stderr=True, soft_wrap=True)  # stdout stays clean for --json


def notice(line: str) -> None:
    """A dim progress line on stderr (the default ``log`` of :func:`prepare`)."""
    _notices.print(f"[dim]{escape(line)}[/]", highlight=False)


@dataclass
class Prepared:
    """What :func:`prepare` left ready: the dataset and each recommender's metrics recorded when it was trained."""

    dataset: Any  # recagent.tools.data.Dataset
    metrics: dict[str, dict] = field(default_factory=dict)
    trained: list[str] = field(default_factory=list)  # the models trained by this call


def prepare(
    dataset: str,
    models: Iterable[str],
    policy: Any = None,
    retrain: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = notice,
) -> Prepared:
    """Make ``dataset`` and its ``models`` ready: fetch a known dataset (idempotent, checksums verified), train
    every model without a checkpoint, and, for a local ``policy`` with no model folder, convert the default model.

    A model counts as trained when its ``model.pt`` and the metrics recorded at training (``meta.json``) are in
    its folder (training writes both); ``retrain`` trains every model again. ``progress`` shows progress bars;
    ``log`` gets one line per step (fetch, each model trained).
    """
    from recagent.paths import model_dir
    from recagent.tools.data import KNOWN, fetch, leave_one_out, load_dataset
    from recagent.tools.recommenders import get_model_class
    from recagent.tools.recommenders.registry import saved_metrics, train

    if dataset in KNOWN:
        fetch(dataset, log=log)
    ds = load_dataset(dataset)
    out = Prepared(ds)
    split = None
    for name in dict.fromkeys(get_model_class(m).name for m in models):
        metrics = None if retrain else saved_metrics(ds.name, name)
        if metrics is None or not (model_dir(ds.name, name) / "model.pt").is_file():
            split = split or leave_one_out(ds)
            log(f"{'training' if retrain else 'first use: training'} {name} on {ds.name} ...")
            _, metrics = train(split, name, out_dir=model_dir(ds.name, name), show_progress=progress)
            out.trained.append(name)
        out.metrics[name] = metrics
    if policy is not None and policy.kind == "local" and not policy.model:
        from recagent.agents.local_model import ensure_default_model

        ensure_default_model(progress=progress)
    return out
