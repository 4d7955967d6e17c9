"""Name -> recommender class, plus train/load helpers that use the artifact folders."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from recagent.config import JobConfig
from recagent.errors import ModelNotFoundError, RecagentError
from recagent.paths import model_dir
from recagent.tools.data.split import LeaveOneOutSplit
from recagent.tools.recommenders.base import Recommender, RecommenderConfig
from recagent.tools.recommenders.bpr import BPR
from recagent.tools.recommenders.evaluate import evaluate
from recagent.tools.recommenders.itemknn import ItemKNN
from recagent.tools.recommenders.popularity import Popularity
from recagent.tools.recommenders.sasrec import SASRec

MODELS: dict[str, type[Recommender]] = {cls.name: cls for cls in (Popularity, ItemKNN, BPR, SASRec)}


def get_model_class(name: str) -> type[Recommender]:
    """The recommender class called ``name``, with a clear error listing the choices."""
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise RecagentError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None


def train(
    split: LeaveOneOutSplit,
    name: str,
    config: RecommenderConfig | dict | None = None,
    out_dir: Path | None = None,
    show_progress: bool = True,
) -> tuple[Recommender, dict]:
    """Fit model ``name`` on ``split``, evaluate it on valid and test, save it; return (model, metrics)."""
    cls = get_model_class(name)
    cfg = config if isinstance(config, RecommenderConfig) else cls.config_cls.model_validate(config or {})
    out = out_dir or model_dir(split.dataset.name, cls.name)
    model = cls(cfg)
    t0 = time.perf_counter()
    report = model.fit(split, show_progress=show_progress, checkpoint_dir=out)
    seconds = time.perf_counter() - t0
    metrics = {
        "valid": evaluate(model, split, "valid"),
        "test": evaluate(model, split, "test"),
        "train_seconds": seconds,
        "epochs": report.epochs,
        "best_epoch": report.best_epoch,
    }
    model.save(
        out, report, meta={"dataset": split.dataset.name, "train_digest": split.train_digest(), "metrics": metrics}
    )
    return model, metrics


def load_trained(dataset: str, name: str, directory: Path | None = None) -> Recommender:
    """Load a trained model of ``dataset`` from the artifact folder (clear error if untrained)."""
    cls = get_model_class(name)
    path = directory or model_dir(dataset, cls.name)
    if not (path / "model.pt").is_file():
        raise ModelNotFoundError(
            f"no trained {cls.name} model for {dataset} in {path}; run: recagent recs train --model {cls.name} --dataset {dataset}"
        )
    return cls.load(path)


def saved_metrics(dataset: str, name: str) -> dict | None:
    """Metrics recorded when the model was trained, if any."""
    path = model_dir(dataset, get_model_class(name).name) / "meta.json"
    return json.loads(path.read_text()).get("metrics") if path.is_file() else None


class TrainJobConfig(JobConfig):
    """Config of ``recagent recs train``: which model on which dataset, with which hyper-parameters."""

    dataset: str = Field("ml-100k", description="dataset name (fetched) or folder")
    model: str = Field("sasrec", description=f"one of: {', '.join(MODELS)}")
    params: dict[str, Any] = Field(default_factory=dict, description="hyper-parameters of the model's config")
    out_dir: Path | None = Field(
        None, description="checkpoint folder (default: $RECAGENT_HOME/models/<dataset>/<model>)"
    )

    @model_validator(mode="after")
    def _check(self) -> TrainJobConfig:
        cls = MODELS.get(self.model.lower())
        if cls is None:
            raise ValueError(f"unknown model {self.model!r}; choose one of: {', '.join(MODELS)}")
        try:  # fail before any work if a hyper-parameter is wrong
            cls.config_cls.model_validate(self.params)
        except ValidationError as e:
            bad = "; ".join(f"params.{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
            raise ValueError(f"{bad} (valid params of {cls.name}: {', '.join(cls.config_cls.model_fields)})") from None
        return self
