"""One synthesized dialog: OpenAI-format messages and tools, plus the metadata every later stage reads.

The row format itself (:class:`Sample`, :func:`dedup_key`, :func:`iter_calls`) lives in core,
:mod:`recagent.dialogs`; this module re-exports it and adds the synthesis vocabulary (kinds, levels).

A row of the output JSONL is ``{"id", "messages", "tools", "meta"}``. ``messages`` and
``tools`` are exactly the OpenAI Chat Completions layout (assistant ``tool_calls`` with
``function.arguments`` as a JSON *string*, ``tool`` messages with ``tool_call_id``), so
``datasets.load_dataset("json", ...)`` and TRL's ``SFTTrainer`` read them as they are.
``meta`` holds what the pipeline knows about the sample (kind, user, target, tool variants,
complexity, verification, the agent's :class:`~recagent.agents.steps.StepRecord` steps);
nested values whose shape varies between samples (call arguments) are JSON strings there too,
so that Arrow can load every row under one schema.
"""

from __future__ import annotations

from typing import Literal

# the row format lives in core (recagent.dialogs) so that rl, serve and evaluation can read rows without
# importing synthesis; these names stay importable from here
from recagent.dialogs import (  # noqa: F401  (re-exported)
    CheckResult,
    Sample,
    SplitName,
    Verification,
    dedup_key,
    iter_calls,
)

# listwise: a list-wise episode as `Agent.recommend` runs it (ToolRec-style: act for a dataset user, answer ids)
Kind = Literal["single", "parallel", "chain", "clarify", "no_tool", "listwise"]
KINDS: tuple[str, ...] = ("single", "parallel", "chain", "clarify", "no_tool", "listwise")
Level = Literal["easy", "medium", "hard"]
LEVELS: tuple[str, ...] = ("easy", "medium", "hard")
