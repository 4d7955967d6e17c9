"""Dataset-level leakage check of a synthesis run: it fails loudly, it never repairs silently.

Per sample, the ``no_leakage`` rule check already rejects a training dialog that answers with
its user's valid/test items. Across samples this module checks what no single sample can
show: train and test users are disjoint (so no held-out target of a test user is a training
target), no training answer names a user's valid/test item, and no held-out tool variant is
offered in any training dialog (:func:`find_leaks`, shared with SFT and evaluation, lives in
:mod:`recagent.agents.training_leaks` and is re-exported here).
"""

from __future__ import annotations

from collections.abc import Iterable

from recagent.agents.training_leaks import find_leaks, held_items  # noqa: F401  (held_items re-exported)
from recagent.dialogs import Sample
from recagent.errors import RecagentError
from recagent.tools.data import LeaveOneOutSplit


class SynthLeakageError(RecagentError):
    """Evaluation data reached the synthesized training split."""


def check_leakage(train: Iterable[Sample], test: Iterable[Sample], split: LeaveOneOutSplit) -> None:
    """Raise :class:`SynthLeakageError` naming the leaks, if any."""
    leaks = find_leaks(train, test, split)
    if leaks:
        more = f" (and {len(leaks) - 5} more)" if len(leaks) > 5 else ""
        raise SynthLeakageError("synthesized data leaks evaluation data: " + "; ".join(leaks[:5]) + more)
