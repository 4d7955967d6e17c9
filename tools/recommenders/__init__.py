"""Conventional recommenders (popularity, ItemKNN, BPR-MF, SASRec) behind one small interface."""

from recagent.tools.recommenders.base import FitReport, Query, Recommender, RecommenderConfig
from recagent.tools.recommenders.registry import MODELS, get_model_class, load_trained, train

__all__ = [
    "MODELS",
    "FitReport",
    "Query",
    "Recommender",
    "RecommenderConfig",
    "get_model_class",
    "load_trained",
    "train",
]
