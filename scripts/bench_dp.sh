#!/usr/bin/env bash
# Data-parallel pretraining on one machine: 1 rank x 2 threads against
# 2 ranks x 1 thread (the same global batch), with the gradient all-reduce
# overlapped with backward and not, for the tiny, small and base presets.
# Prints a markdown table (the README's) and keeps the runs' output in OUT.
#
#   scripts/bench_dp.sh [OUT]        (a build with --features mpi, Open MPI)
#
# PRESETS="tiny small" and STEPS_<preset>=N narrow it down. Base runs at a
# short sequence (L = 64): at L = 529 one step takes minutes on 2 cores.
# Step time: median of log.csv's ms_per_step, the first 2 steps left out.
# All-reduce, its share and what overlap leaves exposed: rank 0's summary line
# ("exposed": the wall time after backward until the reduced gradients are
# back in place, bucket copies included; with overlap off that is more than
# the all-reduce calls alone).
set -euo pipefail

OUT=${1:-/tmp/pixel-bench-dp}
PIXEL=${PIXEL:-target/release/pixel}
PRESETS=${PRESETS:-tiny small base}
MPIRUN=(mpirun --allow-run-as-root --oversubscribe -np 2 -x RAYON_NUM_THREADS=1)
mkdir -p "$OUT"

# preset -> "L per-rank-batch steps bucket-MB"
settings() {
    case $1 in
        tiny) echo "32 16 ${STEPS_tiny:-60} 0.1" ;;
        small) echo "128 4 ${STEPS_small:-10} 25" ;;
        base) echo "64 2 ${STEPS_base:-6} 25" ;;
    esac
}

median_ms() { # log.csv -> median ms_per_step of steps 3..
    awk -F, 'NR > 3 { print $6 }' "$1" | sort -n | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "n/a"; exit }
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f", m }'
}

common() { # preset L batch steps bucket out
    echo pretrain --config "$1" --max-seq-length "$2" --batch-size "$3" --steps "$4" \
        --warmup-steps 1 --eval-every 100000 --save-every 100000 --recon-every 100000 \
        --bucket-mb "$5" --seed 5 --out "$6"
}

echo "| preset (L, global batch) | run | step ms | all-reduce ms/step | share of step | exposed after backward ms/step | reduced per step per rank |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
for p in $PRESETS; do
    read -r L B STEPS MB <<<"$(settings "$p")"
    label="$p (L $L, batch $((2 * B)))"
    d="$OUT/$p-1rank"
    rm -rf "$d"
    # shellcheck disable=SC2046
    RAYON_NUM_THREADS=2 "$PIXEL" $(common "$p" "$L" $((2 * B)) "$STEPS" "$MB" "$d") \
        >"$d.txt" 2>&1 </dev/null
    echo "| $label | 1 rank x 2 threads | $(median_ms "$d/log.csv") | - | - | - | - |"
    for overlap in true false; do
        d="$OUT/$p-2ranks-overlap-$overlap"
        rm -rf "$d"
        # shellcheck disable=SC2046
        "${MPIRUN[@]}" "$PIXEL" $(common "$p" "$L" "$B" "$STEPS" "$MB" "$d") \
            --overlap-comm "$overlap" >"$d.txt" 2>&1 </dev/null
        line=$(grep '^data parallel:' "$d.txt")
        reduce=$(sed -E 's/.*all-reduce ([0-9.]+) ms per step.*/\1/' <<<"$line")
        share=$(sed -E 's/.*\(([0-9.]+)% of the step\).*/\1/' <<<"$line")
        exposed=$(sed -E 's/.*, ([0-9.]+) ms per step waited for after backward.*/\1/' <<<"$line")
        bytes=$(sed -E 's/.*\), (.*) per step per rank/\1/' <<<"$line")
        echo "| $label | 2 ranks x 1 thread, overlap $overlap | $(median_ms "$d/log.csv") | $reduce | $share% | $exposed | $bytes |"
    done
done
