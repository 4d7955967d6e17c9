"""Datasets: typed interaction data, readers for common formats, fetching and leakage-free splits."""

from recagent.tools.data.fetch import KNOWN, fetch, load_dataset
from recagent.tools.data.readers import (
    AtomicColumns,
    TableMapping,
    read_atomic,
    read_movielens_1m,
    read_movielens_raw,
    read_table,
)
from recagent.tools.data.schema import Dataset, Interactions, ItemCatalog, UserTable
from recagent.tools.data.split import EvalCase, LeakageError, LeaveOneOutSplit, leave_one_out

__all__ = [
    "KNOWN",
    "AtomicColumns",
    "Dataset",
    "EvalCase",
    "Interactions",
    "ItemCatalog",
    "LeakageError",
    "LeaveOneOutSplit",
    "TableMapping",
    "UserTable",
    "fetch",
    "leave_one_out",
    "load_dataset",
    "read_atomic",
    "read_movielens_1m",
    "read_movielens_raw",
    "read_table",
]
