#!/usr/bin/env bash
# What a refactoring of the trainer must not change, written down: every example recipe of
# recipes/examples/ trained on its tiny model, and again at MethodLearningTests' budget, with per run the
# metrics table (every value to 17 significant digits; step_time and tokens_per_second, which are wall
# clock, left out), the sha256 of every file it wrote (the final export, the checkpoints) and the events
# that carry results (DEFT's example scores). Two snapshots taken before and after a change compare with
# `diff -r`: identical means bitwise identical training.
#
#   scripts/run-snapshot.sh /tmp/snapshot-before          # every recipe below
#   scripts/run-snapshot.sh /tmp/snapshot-after dpo deft-dpo
#
# The examples read data/preferences.jsonl, a placeholder; here they read the first 240 pairs of
# Anthropic HH (../shared/data/hh-harmless-1800.jsonl) with 32 held out (evaluated every 10 steps, a
# checkpoint every 10; deft-dpo, which does not shuffle, splits before its `deft` filter). `-learn` runs use MethodLearningTests' replacements (1800 pairs, 240 steps of 8,
# lr 3e-3). var-rm scores with the reward-model run's export, var-implicit with the dpo run's export
# against the tr-dpo-soft run's; dpo-cached is dpo with reference.cache_logprobs.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
keel=${KEEL:-$root/.build/release/keel}
hh=$root/../shared/data/hh-harmless-1800.jsonl
out=${1:?usage: scripts/run-snapshot.sh OUT [RECIPE...]}
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(dpo cdpo robust hinge ipo rpo dpo-poet simpo simpo-poet tr-dpo-soft tr-dpo-hard reward-model
                                 deft-dpo var-rm var-implicit dpo-cached tiny-dpo
                                 dpo-learn cdpo-learn robust-learn hinge-learn ipo-learn rpo-learn dpo-poet-learn simpo-learn
                                 simpo-poet-learn tr-dpo-soft-learn tr-dpo-hard-learn)
for need in "$keel" "$hh"; do [ -e "$need" ] || { echo "run-snapshot: missing $need" >&2; exit 1; }; done
mkdir -p "$out/recipes"

export_of() {   # $1 = an earlier run of this snapshot; prints its export folder
    local dir
    dir=$(ls -d "$out/var/$1"/runs/*/export 2>/dev/null | head -1)
    [ -n "$dir" ] || { echo "run-snapshot: $1 must run before the recipes that score with it" >&2; exit 1; }
    echo "$dir"
}

recipe() {   # $1 = name; writes its recipe to stdout
    local name=${1%-learn} example
    example=$name
    [ "$name" = dpo-cached ] && example=dpo
    if [ "$name" = tiny-dpo ]; then cat recipes/examples/tiny-dpo.yaml; return; fi
    if [ "$name" != "$1" ]; then
        sed -e "s|{name: preference-jsonl, path: data/preferences.jsonl}|{name: hh, path: $hh, limit: 1800}|" \
            -e "s|^  - {name: shuffle}|  - {name: shuffle}\n  - {name: split, eval_count: 128}|" \
            -e "s|^optimizer: {lr: 5.0e-6}|optimizer: {lr: 3.0e-3, schedule: cosine, warmup_steps: 10, weight_decay: 0.0}|" \
            -e "s|^training: .*|training: {steps: 240, batch_size: 8, max_length: 64, seed: 0, eval_every: 240, checkpoint_every: 0, log_every: 240}|" \
            "recipes/examples/$example.yaml"
        return
    fi
    sed -e "s|{name: preference-jsonl, path: data/preferences.jsonl}|{name: hh, path: $hh, limit: 240}|" \
        -e "s|^  - {name: shuffle}|  - {name: shuffle}\n  - {name: split, eval_count: 32}|" \
        -e "s|^  - {name: deft,|  - {name: split, eval_count: 32}\n  - {name: deft,|" \
        -e "s|^training: {\(.*\)}|training: {\1, eval_every: 10, checkpoint_every: 10, log_every: 1}|" \
        -e "s|path: models/reward-model|path: $(if [ "$name" = var-rm ]; then export_of reward-model; fi)|" \
        -e "s|policy: models/dpo-policy, reference: models/start|$(if [ "$name" = var-implicit ]; then
                echo "policy: $(export_of dpo), reference: $(export_of tr-dpo-soft)"; fi)|" \
        "recipes/examples/$example.yaml"
    [ "$name" = dpo-cached ] && echo "reference: {cache_logprobs: true}"
    return 0
}

for name in "${names[@]}"; do
    file=$out/recipes/$name.yaml
    recipe "$name" >"$file"
    rm -rf "$out/var/$name"
    started=$(date +%s)
    "$keel" run "$file" --var "$out/var/$name" >"$out/$name.log" 2>&1 || { echo "run-snapshot: $name failed ($out/$name.log)" >&2; exit 1; }
    db=$out/var/$name/keel.db
    run=$(sqlite3 "$db" "select id from runs")
    {
        echo "# $name: metrics (split step name value)"
        sqlite3 -separator ' ' "$db" "select split, step, name, printf('%.17g', value) from metrics where run_id = '$run'
            and name not in ('step_time', 'tokens_per_second') order by split, step, name"
        echo "# files"
        (cd "$out/var/$name/runs/$run" && find . -type f ! -name '*.log' ! -name 'report.md' | sort | xargs sha256sum)
        echo "# result events"
        sqlite3 "$db" "select kind, message from events where run_id = '$run' and kind = 'example-scores' order by id"
    } >"$out/$name.txt"
    echo "$name: $(( $(date +%s) - started )) s, $(grep -c . "$out/$name.txt") lines"
done
