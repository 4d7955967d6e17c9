"""benchmarks/policy_checkpoints.py's plumbing: every checkpoint asked for is scored, written and paired (the scoring
itself, a llama.cpp run per task, is faked: its own code is the agent's, tested elsewhere)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_every_checkpoint_asked_for_is_scored_and_paired(synthetic_synth_run, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import policy_checkpoints

    run = tmp_path / "run"
    for name in ("checkpoint-a", "checkpoint-b"):
        (run / name).mkdir(parents=True)
    (run / "sft_config.yaml").write_text(f"data_dir: {synthetic_synth_run}\n")
    scored: list[str | None] = []

    def fake_score(kwargs: dict, tasks: list[dict], dataset) -> dict:
        scored.append(kwargs["adapter_path"])
        return {"passed": ("1" if kwargs["adapter_path"].endswith("b") else "0") * len(tasks)}

    monkeypatch.setattr(policy_checkpoints, "score", fake_score)
    monkeypatch.setattr(policy_checkpoints, "synthesis_dataset", lambda data: None)
    out = tmp_path / "scores.json"
    argv = ["policy_checkpoints.py", "--run", str(run), "--checkpoints", "checkpoint-a", "checkpoint-b"]
    monkeypatch.setattr(sys, "argv", [*argv, "--tasks", "5", "--answer-tasks", "0", "--out", str(out)])
    policy_checkpoints.main()
    results = json.loads(out.read_text())
    assert scored == [str(run / "checkpoint-a"), str(run / "checkpoint-b")]
    assert set(results["scores"]) == {"checkpoint-a", "checkpoint-b"} and results["tasks"] > 0
    assert results["paired"]["checkpoint-b - checkpoint-a"]["mean"] == 1.0
