"""Regenerate ``synth_sample.jsonl``: a few dozen verified dialogs of every kind, as ``recagent synth`` writes them.

Needs the trained models (``recagent quickstart``). The file holds the train and test rows of
one small run (seed 0); the full output folder of a run also has rejected and skipped
attempts, the ShareGPT/ToolACE/BFCL exports and the report.

    python examples/synth_sample.py
"""

from pathlib import Path
from tempfile import TemporaryDirectory

from recagent.synth.config import SynthConfig
from recagent.synth.pipeline import synthesize

HERE = Path(__file__).resolve().parent

with TemporaryDirectory() as tmp:
    result = synthesize(SynthConfig.build(n=36, seed=0, test_fraction=0.25, exports=[]), tmp, progress=False)
    rows = (Path(tmp) / "train.jsonl").read_text() + (Path(tmp) / "test.jsonl").read_text()
    (HERE / "synth_sample.jsonl").write_text(rows)
    print(f"wrote {len(rows.splitlines())} dialogs to {HERE / 'synth_sample.jsonl'}: {result.accepted}")
