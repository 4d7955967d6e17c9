"""Dataset-level leakage check of a synthesis run: it fails loudly, it never repairs silently.

Per sample, the ``no_leakage`` rule check already rejects a training dialog that answers with
its user's valid/test items. Across samples this module checks what no single sample can
show: train and test users are disjoint (so no held-out target of a test user is a training
target), no training answer names a user's valid/test item, and no held-out tool variant is
offered in any training dialog (:func:`find_leaks`, shared with SFT and evaluation, lives in
:mod:`recagent.agents.training_leaks` and is re-exported here). Validation dialogs (``validation_n``)
come from test-side users, so they share no user with training, and pass the training dialogs' checks
(:func:`validation_leaks`).
"""

from __future__ import annotations

from collections.abc import Iterable

from recagent.agents.training_leaks import find_leaks, held_items  # noqa: F401  (held_items re-exported)
from recagent.dialogs import Sample
from recagent.errors import RecagentError
from recagent.tools.data import LeaveOneOutSplit


class SynthLeakageError(RecagentError):
    """Evaluation data reached the synthesized training split."""


def check_leakage(
    train: Iterable[Sample], test: Iterable[Sample], split: LeaveOneOutSplit, validation: Iterable[Sample] = ()
) -> None:
    """Raise :class:`SynthLeakageError` naming the leaks, if any (validation dialogs: see :func:`validation_leaks`)."""
    train, test = list(train), list(test)
    leaks = find_leaks(train, test, split) + validation_leaks(train, test, validation, split)
    if leaks:
        more = f" (and {len(leaks) - 5} more)" if len(leaks) > 5 else ""
        raise SynthLeakageError("synthesized data leaks evaluation data: " + "; ".join(leaks[:5]) + more)


def validation_leaks(
    train: list[Sample], test: list[Sample], validation: Iterable[Sample], split: LeaveOneOutSplit
) -> list[str]:
    """Validation dialogs share no user with training, are no test dialog, and name or target no valid/test item.

    Their users are test-side users on purpose (the policy never trained on them); their tasks are
    training-style, so the checks a training dialog passes (:func:`find_leaks` with validation in the
    training role) apply to them too, apart from sharing users with the test dialogs.
    """
    validation = list(validation)
    if not validation:
        return []
    leaks = []
    shared = sorted({s.user_id for s in train} & {s.user_id for s in validation})
    if shared:
        leaks.append(f"{len(shared)} user(s) appear in both train and validation dialogs, e.g. {shared[:5]}")
    copies = sorted({s.id for s in validation} & {s.id for s in test + train})
    if copies:
        leaks.append(f"{len(copies)} validation dialog(s) are also training or test dialogs, e.g. {copies[:3]}")
    # the training checks apart from the users (test users on purpose): no valid/test item, no held-out tool
    return leaks + find_leaks(validation, [], split, role="validation")
