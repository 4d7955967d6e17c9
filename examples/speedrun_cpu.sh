#!/usr/bin/env bash
# recagent, the whole pipeline on 2 CPU cores, top to bottom:
#   data -> recommenders -> synthesized dialogs -> SFT -> step-grained RL -> evaluation -> one chat turn.
#
# Time: the full recipe (SPEEDRUN_SCALE=full, the default) is bounded by its training budgets, SFT <= 90 min
# and RL <= 60 min, plus about 20 min for the rest. SPEEDRUN_SCALE=smoke runs every stage at toy size to check
# the wiring; its last run's summary is examples/speedrun_cpu_smoke.log (total time in its last line).
#
#   bash examples/speedrun_cpu.sh                         # after the README's install command
#   SPEEDRUN_SCALE=smoke bash examples/speedrun_cpu.sh    # every stage, toy size
#
# Every stage resumes where it stopped: rerun the same command after an interruption. Outputs go under $RUN.
# Each stage prints one "== stage: seconds, headline" line; `grep '^==' LOG` is the summary.
set -euo pipefail

SCALE=${SPEEDRUN_SCALE:-full}
RUN=${RUN:-${RECAGENT_HOME:-$HOME/.cache/recagent}/runs/speedrun-$SCALE}
RUN=$(mkdir -p "$RUN" && cd "$RUN" && pwd)
T0=$(date +%s)

# One headline number per stage, read from what the stage wrote (never from its log text).
stage_end() {  # stage_end NAME START HEADLINE
  echo "== $1: $(($(date +%s) - $2)) s, $3"
}
json() {  # json FILE EXPR: evaluate a Python expression over the JSON document `d`
  python -c "import json, sys; d = json.load(open(sys.argv[1])); print($2)" "$1"
}

# The two scales differ only in sizes; the configs are the CPU recipe in examples/policy_cpu/.
if [ "$SCALE" = smoke ]; then
  # a home of its own: toy recommenders must never replace the real ones other runs use
  export RECAGENT_HOME="$RUN/home"
  RECS=(-o params.max_epochs=2)
  SYNTH=(-o n=120 -o seed=0 -o validation_n=20)
  SFT=(-o max_steps=4 -o max_samples=100 -o save_steps=2)
  RL=(-o max_steps=1 -o max_samples=100 -o max_tasks=4 -o save_steps=1 -o per_device_train_batch_size=4 -o num_generations=4)
  EVAL=(-o users=3 -o tool_call_tasks=4 -o simulator.users=1 -o bootstrap=100 -o 'protocols=[full,tool_calls]')
else
  RECS=()
  SYNTH=(-o n=4000 -o seed=1)
  SFT=()
  RL=()
  EVAL=(-o users=200)
fi

# 1. Data: MovieLens-100K (checksummed; read from the recbole wheel's files when present) and its
#    leave-one-out split by time.
t=$(date +%s)
recagent data fetch ml-100k
recagent data info ml-100k --json > "$RUN/data_info.json"
stage_end data "$t" "$(json "$RUN/data_info.json" '"%d users, %d items, %d interactions" % (d["users"], d["items"], d["interactions"])')"

# 2. The conventional recommenders the tools expose (popularity, ItemKNN, BPR-MF, SASRec), trained on train+valid
#    and scored on the test split with full ranking. Headline: SASRec's NDCG@10.
t=$(date +%s)
recagent recs train --model pop --no-progress
recagent recs train --model itemknn --no-progress
recagent recs train --model bpr --no-progress "${RECS[@]}"
recagent recs train --model sasrec --no-progress "${RECS[@]}"
recagent recs eval --model all --json > "$RUN/recs_eval.json"
stage_end recommenders "$t" "SASRec NDCG@10 $(json "$RUN/recs_eval.json" 'round(d["sasrec"]["NDCG@10"], 4)')"

# 3. Verified tool-calling dialogs (ToolACE-style: every call executed on the real tools and checked).
t=$(date +%s)
recagent synth --config examples/policy_cpu/synth.yaml --out "$RUN/synth" --no-progress "${SYNTH[@]}"
stage_end synth "$t" "$(json "$RUN/synth/report.json" '"%d train + %d test + %d validation dialogs" % (d["verified"]["train"], d["verified"]["test"], d["verified"]["validation"])')"

# 4. SFT: LoRA on SmolLM2-135M-Instruct, bf16 autocast where the CPU has it, the served prompt format.
#    Headline: the last logged training loss.
t=$(date +%s)
recagent train sft --config examples/policy_cpu/sft.yaml --data "$RUN/synth" --out "$RUN/sft" --no-progress \
  "${SFT[@]}"
stage_end sft "$t" "final loss $(json "$RUN/sft/final/sft_run.json" '[h["loss"] for h in d["log_history"] if "loss" in h][-1]')"

# 5. Step-grained GRPO (StepTool rewards + ToolRL components) from the SFT adapter, rollouts on the real tools.
#    Headline: the mean reward of the last update.
t=$(date +%s)
recagent train rl --config examples/policy_cpu/grpo.yaml --data "$RUN/synth" --base-model "$RUN/sft/final" \
  --out "$RUN/grpo" --no-progress "${RL[@]}"
stage_end rl "$t" "last reward $(json "$RUN/grpo/final/rl_run.json" '[h["reward"] for h in d["log_history"] if "reward" in h][-1]')"

# 6. Evaluation of the trained agent beside the conventional recommenders, on the same users; held-out
#    synthesized dialogs for tool-call accuracy. Headline: the agent's NDCG@10 (full ranking protocol).
t=$(date +%s)
printf 'policy:\n  kind: local\n  adapter: %s\n' "$RUN/grpo/final" > "$RUN/agent.yaml"
recagent eval --config examples/eval_small.yaml --agent "$RUN/agent.yaml" --synth-dir "$RUN/synth" \
  --out "$RUN/eval" --no-progress "${EVAL[@]}"
stage_end eval "$t" "agent NDCG@10 $(json "$RUN/eval/results.json" 'round(d["utility"]["agent"]["full"]["NDCG@10"]["mean"], 4)')"

# 7. One chat turn with the trained policy.
t=$(date +%s)
recagent chat --config "$RUN/agent.yaml" -m "hello! what can you do?" --json > "$RUN/chat.json"
stage_end chat "$t" "answer: $(json "$RUN/chat.json" 'd["answer"][:80].replace(chr(10), " ")')"

echo "== total: $(($(date +%s) - T0)) s (scale $SCALE, $(nproc) cores, $(python -c 'import platform; print(platform.processor() or platform.machine())'))"
