#!/usr/bin/env bash
# The by-hand half of the "do the methods learn?" proof (docs/methods.md): SmolLM2-135M-Instruct variants
# of the method examples in recipes/examples/, trained one after another on Anthropic HH, then one
# markdown row per method with the held-out accuracy, margin and loss before and after.
#
#   scripts/method-table.sh                  # every method, the budget below
#   scripts/method-table.sh dpo simpo        # some of them
#   STEPS=20 scripts/method-table.sh dpo     # a smoke run
#
# Budget (environment): STEPS optimizer steps of PAIRS pairs at MAX_LENGTH tokens, AdamW at LR (cosine,
# 10 warm-up steps); the first LIMIT HH pairs, EVAL of them held out by a seeded split. Reference
# log-probs are cached where the method allows it (not for TR-DPO, whose reference moves, nor SimPO,
# which has none, nor ORPO). The hard TR-DPO example syncs every 8 steps; here every 64, so that the final
# evaluation (at STEPS) is not taken right after a sync. Recipes, database and runs go to
# var/method-table/ (OUT); the table is appended to OUT/table.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
keel=${KEEL:-$root/.build/release/keel}
model=$root/var/models/SmolLM2-135M-Instruct.Q4_1.gguf
hh=$root/../shared/data/hh-harmless-1800.jsonl
out=${OUT:-$root/var/method-table}
STEPS=${STEPS:-200} PAIRS=${PAIRS:-2} MAX_LENGTH=${MAX_LENGTH:-128} LR=${LR:-1.0e-5}
LIMIT=${LIMIT:-464} EVAL=${EVAL:-64}
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(dpo cdpo robust hinge ipo rpo dpo-poet simpo simpo-poet orpo tr-dpo-soft tr-dpo-hard)
for need in "$keel" "$model" "$hh"; do [ -e "$need" ] || { echo "method-table: missing $need (run scripts/setup.sh)" >&2; exit 1; }; done
mkdir -p "$out/recipes"

recipe() {   # $1 = method; writes the SmolLM2 variant of recipes/examples/$1.yaml to stdout
    local cache="reference: {cache_logprobs: true}"
    case $1 in tr-dpo-*|simpo*|orpo) cache="" ;; esac
    sed -e "/^output: /d" -e "s|^model: .*|model: $model|" \
        -e "s|{name: synthetic-preferences, count: 640, seed: 0}|{name: hh, path: $hh, limit: $LIMIT}|" \
        -e "s|^  - {name: shuffle}|  - {name: shuffle}\n  - {name: split, eval_count: $EVAL}|" \
        -e "s|{name: ref-sync, tau: 8, alpha: 1.0}|{name: ref-sync, tau: 64, alpha: 1.0}|" \
        -e "s|^optimizer: .*|optimizer: {lr: $LR, schedule: cosine, warmup_steps: 10, weight_decay: 0.0}|" \
        -e "s|^training: .*|training: {steps: $STEPS, batch_size: $PAIRS, max_length: $MAX_LENGTH, seed: 0, eval_every: $STEPS, checkpoint_every: 0, keep_checkpoints: 1, log_every: 10}\n$cache\noutput: {name: smol-$1}|" \
        "recipes/examples/$1.yaml"
}

metric() {   # $1 = run id, $2 = step, $3 = metric name (a loss-prefixed name is tried too)
    sqlite3 "$out/var/keel.db" "SELECT printf('%.4f', value) FROM metrics WHERE run_id = '$1' AND split = 'eval'
        AND step = $2 AND name IN ('$3', 'dpo/$3', 'simpo/$3') ORDER BY length(name) LIMIT 1"
}

[ -s "$out/table.md" ] || {
    echo "| method | steps × pairs | eval accuracy before → after | eval margin before → after | eval loss before → after | wall time |"
    echo "|---|---|---|---|---|---|"
} > "$out/table.md"
for m in "${methods[@]}"; do
    recipe "$m" > "$out/recipes/$m.yaml"
    start=$(date +%s)
    "$keel" run "$out/recipes/$m.yaml" --var "$out/var" > "$out/$m.log" 2>&1 || { echo "method-table: $m failed, see $out/$m.log" >&2; continue; }
    seconds=$(( $(date +%s) - start ))
    run=$(sqlite3 "$out/var/keel.db" "SELECT id FROM runs WHERE recipe_path LIKE '%/$m.yaml' ORDER BY created_at DESC LIMIT 1")
    last=$(sqlite3 "$out/var/keel.db" "SELECT max(step) FROM metrics WHERE run_id = '$run' AND split = 'eval'")
    row="| $m | $STEPS × $PAIRS | $(metric "$run" 0 rewards/accuracies) → $(metric "$run" "$last" rewards/accuracies)"
    row+=" | $(metric "$run" 0 rewards/margins) → $(metric "$run" "$last" rewards/margins)"
    row+=" | $(metric "$run" 0 loss) → $(metric "$run" "$last" loss) | ${seconds} s |"
    echo "$row" | tee -a "$out/table.md"
done
