"""How far training moved a LoRA adapter: each checkpoint's relative change from the adapter it started from.

The relative change is ||after - before|| / ||before|| over the LoRA B matrices (the ones a fresh adapter starts
at zero, so they carry what training learned) and over every adapter tensor. An RL run whose adapter moved a
fraction of a percent cannot have changed the policy much, whatever its rewards said.

    python benchmarks/adapter_drift.py --start agents/weights/recagent-smollm2-135m \\
        --checkpoint lr2e-5_5=RUN/checkpoint-5 --checkpoint lr1e-4_50=RUN2/checkpoint-50 --out results/adapter_drift.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def relative_change(before: dict, after: dict, only: str | None = None) -> float:
    """||after - before|| / ||before|| over the tensors whose name contains ``only`` (None: all)."""
    keys = [k for k in before if only is None or only in k]
    if sorted(keys) != sorted(k for k in after if only is None or only in k):
        raise SystemExit("the two adapters have different tensors: not the same LoRA layout")
    num = sum(float(((after[k].float() - before[k].float()) ** 2).sum()) for k in keys)
    den = sum(float((before[k].float() ** 2).sum()) for k in keys)
    return (num / den) ** 0.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", type=Path, required=True, help="the adapter folder training started from")
    ap.add_argument("--checkpoint", action="append", required=True, help="NAME=ADAPTER_FOLDER, one per checkpoint")
    ap.add_argument("--out", type=Path, default=RESULTS / "adapter_drift.json")
    a = ap.parse_args()

    from machine import machine_info  # benchmarks/machine.py (this script's folder is on sys.path)
    from safetensors.torch import load_file

    def load(folder: Path) -> dict:
        path = folder / "adapter_model.safetensors"
        if not path.is_file():
            raise SystemExit(f"{folder} has no adapter_model.safetensors: is it a LoRA adapter folder?")
        return load_file(path)

    before = load(a.start)
    drift = {}
    for spec in a.checkpoint:
        name, _, folder = spec.partition("=")
        after = load(Path(folder))
        drift[name] = {
            "folder": folder,
            "lora_B": round(relative_change(before, after, "lora_B"), 5),
            "all": round(relative_change(before, after), 5),
        }
        print(name, drift[name])
    out = {"what": __doc__.splitlines()[0], "machine": machine_info(), "start": str(a.start), "drift": drift}
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
