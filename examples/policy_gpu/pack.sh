#!/usr/bin/env bash
# The GPU SFT recipe, between step 1 (export the token rows) and step 2 (train on the device machine): pack what that
# machine lacks into folders that `run` calls can carry.
#   bash examples/policy_gpu/pack.sh TOKENS [INIT_ADAPTER]      ->  .gpu/1, .gpu/2, ... and the calls to make
# Why: a call carries at most 64 MiB with the working tree (tracked files, ~14 MB), and the base GGUF alone is 98 MB.
# So the base, the token rows, the wheels the device lacks (peft; gguf, which transformers needs to read a GGUF) and
# an adapter to continue go into one tar, cut into parts that fit beside the tree, one folder per call. Each call
# runs unpack.sh on its part; the call that brings the last part unpacks all of them into /tmp/m. Make the calls
# back to back: the machine stays warm (and /tmp with it) for only 30 s after each. Add `/.gpu/` to
# .git/info/exclude first, so the parts travel only when carried.
set -euo pipefail
tokens=${1:?usage: pack.sh TOKENS [INIT_ADAPTER]}
adapter=${2:-}
out=.gpu
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

gguf=$(python -c "from recagent.agents.local_model import find_default_gguf; print(find_default_gguf())")
cp "$gguf" "$stage/base.gguf"
cp "$tokens" "$stage/tokens.npz.xz"
if [ -n "$adapter" ]; then
    mkdir "$stage/init_adapter"
    cp "$adapter"/adapter_config.json "$adapter"/adapter_model.safetensors "$stage/init_adapter/"
fi
# the device's Python is 3.12 (see the device tool's KINDS.md): pure-Python wheels of the versions tested here
versions=$(python -c "import importlib.metadata as m; print(' '.join(f'{p}=={m.version(p)}' for p in ('peft', 'gguf')))")
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d "$stage/wheels" $versions

tree=$(git ls-files -z | du --files0-from=- -cb | tail -1 | cut -f1)
part=$(( 64 * 1024 * 1024 - tree - 4 * 1024 * 1024 ))  # 4 MiB spare: untracked files that travel too
mkdir -p "$out" && rm -rf "$out"/[0-9]*  # earlier parts only: the token rows may live in .gpu/ too
tar -C "$stage" -cf - . | split -b "$part" -d -a 1 - "$out/part."
n=$(ls "$out"/part.* | wc -l)
for f in "$out"/part.*; do
    k=$(( ${f##*.} + 1 ))
    mkdir -p "$out/$k" && mv "$f" "$out/$k/" && echo "$n" > "$out/$k/parts"
done
echo "packed $(du -sh --apparent-size "$stage" | cut -f1) into $n parts; make these calls back to back:"
for k in $(seq 1 "$n"); do
    echo "  run carry=[\".gpu/$k\"] command='. examples/policy_gpu/unpack.sh .gpu/$k && ...'"
done
echo "the last call then trains, e.g. python rl/train_tokens.py --tokens /tmp/m/tokens.npz.xz --base /tmp/m/base.gguf \\"
echo "  --out \$OUT/runA ${adapter:+--init_adapter /tmp/m/init_adapter }--learning_rate 1e-3 --time_budget_s 420"
