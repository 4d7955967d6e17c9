"""One lock around loading Hugging Face models and tokenizers, whichever thread loads them.

Why: transformers resolves its names lazily on first use, and that is not thread-safe. The agent
loads its text encoder (sentence-transformers) in a background thread while the first chat turn
loads the policy's tokenizer; measured here, 2 of 3 such starts failed with "ImportError: cannot
import name 'AutoTokenizer' from 'transformers'". Loads are rare and seconds long, so one
process-wide lock costs nothing after the first turn.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

HF_LOAD_LOCK = threading.RLock()

P = ParamSpec("P")
R = TypeVar("R")


def hf_loading(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` holding :data:`HF_LOAD_LOCK` (for functions that import or load transformers models)."""

    @functools.wraps(fn)
    def locked(*args: P.args, **kwargs: P.kwargs) -> R:
        with HF_LOAD_LOCK:
            return fn(*args, **kwargs)

    return locked
