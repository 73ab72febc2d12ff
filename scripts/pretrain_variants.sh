#!/usr/bin/env bash
# Pretraining variants side by side (issue #14): runs `pixel pretrain` for every
# line of a runs file, two at a time with one rayon thread each (a 2-core box
# spends its cores best this way: one thread is ~0.8x of two for the small
# presets), then prints one markdown row per run and draws their eval curves
# (`pixel compare`).
#
#   scripts/pretrain_variants.sh PIXEL_BINARY OUT_DIR RUNS_FILE
#
# RUNS_FILE: one run a line, `name: pretrain flags...`; `#` starts a comment.
# A run whose OUT_DIR/name/log.csv already has its last step is skipped, so the
# script can be rerun to add rows. Budgets are in steps, not seconds, so a run's
# numbers do not depend on what else the machine was doing; scripts/variants.txt
# gives the steps each preset reaches in 10, 30 and 60 minutes of one core.
set -euo pipefail
bin=$1
out=$2
runs=$3
jobs=${JOBS:-2}
mkdir -p "$out"

finished() { # dir steps
    [ -f "$1/log.csv" ] && tail -n 1 "$1/log.csv" | grep -q "^$2,"
}

while IFS= read -r line; do
    line=${line%%#*}
    [ -n "${line// /}" ] || continue
    name=${line%%:*}
    name=${name// /}
    read -r -a args <<<"${line#*:}"
    steps=$(printf '%s\n' "${args[@]}" | grep -A1 -x -- --steps | tail -n 1 || true)
    steps=${steps:-20000} # pixel pretrain's default
    if finished "$out/$name" "$steps"; then continue; fi
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    echo "== $name: ${args[*]}" >&2
    RAYON_NUM_THREADS=1 "$bin" pretrain --out "$out/$name" "${args[@]}" \
        >"$out/$name.log" 2>&1 || echo "failed: see $out/$name.log" >&2 &
done <"$runs"
wait

# The table and OUT_DIR/compare.png (eval loss / constant over minutes).
names=()
while IFS= read -r line; do
    line=${line%%#*}
    [ -n "${line// /}" ] || continue
    name=${line%%:*}
    names+=("$out/${name// /}")
done <"$runs"
"$bin" compare "${names[@]}" -o "$out/compare.png"
