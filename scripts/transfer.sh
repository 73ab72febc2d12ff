#!/usr/bin/env bash
# Transfer check of issue #14: POS (UD English-EWT) and NER (MasakhaNER pcm)
# finetuned from pretrained encoders and from scratch with the same budget
# (steps, batch, seed, L, the same few learning rates), two runs at a time with
# one thread each; prints the dev metrics as a markdown table with the majority
# baseline.
#
#   scripts/transfer.sh PIXEL_BINARY OUT_DIR NAME=CHECKPOINT [NAME=CHECKPOINT ...]
#
# Every checkpoint is compared with a scratch model of the same rendering and
# preset (read from its config.json). L must not exceed the checkpoint's (the
# 2-D sin-cos position table of a longer strip is a different table).
# Environment: STEPS (1000), LRS ("1e-3 3e-3"), L (32), SEED (42), PIXEL_DATA.
set -euo pipefail
bin=$1
out=$2
shift 2
data=${PIXEL_DATA:-$(dirname "$0")/../../shared/data}
steps=${STEPS:-1000}
lrs=${LRS:-1e-3 3e-3}
len=${L:-32}
seed=${SEED:-42}
mkdir -p "$out"

ewt=$data/ud/UD_English-EWT
pcm=$data/ner/masakhaner1/pcm
tasks=("pos $ewt/en_ewt-ud-train.conllu $ewt/en_ewt-ud-dev.conllu"
    "ner $pcm/train.txt $pcm/dev.txt")

declare -A launched
run() { # dir task train dev lr [init args...]
    local dir=$1 task=$2 train=$3 dev=$4 lr=$5
    shift 5
    [ -f "$dir/summary.json" ] || [ -n "${launched[$dir]:-}" ] && return 0
    launched[$dir]=1
    while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n || true; done
    echo "== $dir" >&2
    RAYON_NUM_THREADS=1 "$bin" finetune --task "$task" --train "$train" --dev "$dev" \
        --out "$dir" --max-seq-length "$len" --batch-size 32 --steps "$steps" \
        --warmup-steps $((steps / 10)) --eval-every $((steps / 4)) --seed "$seed" \
        --lr "$lr" "$@" >"$dir.log" 2>&1 || echo "failed: see $dir.log" >&2 &
}

for spec in "$@"; do
    name=${spec%%=*}
    ckpt=${spec#*=}
    rendering=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("rendering", "continuous"))' "$ckpt/config.json")
    for t in "${tasks[@]}"; do
        read -r task train dev <<<"$t"
        for lr in $lrs; do
            run "$out/$task-$name-lr$lr" "$task" "$train" "$dev" "$lr" --init "$ckpt"
            run "$out/$task-scratch-$rendering-lr$lr" "$task" "$train" "$dev" "$lr" \
                --config "$ckpt/config.json" --rendering "$rendering"
        done
    done
done
wait

python3 - "$out" <<'PY'
import json, pathlib, sys
rows = {}
for p in sorted(pathlib.Path(sys.argv[1]).glob("*/summary.json")):
    s = json.loads(p.read_text())
    task, init = p.parent.name.split("-", 1)
    init, lr = init.rsplit("-lr", 1)
    rows.setdefault((task, init), []).append((lr, s))
print("| task | init | dev metric per lr (best step) | best | majority baseline |")
print("|---|---|---|---:|---:|")
for (task, init), runs in sorted(rows.items()):
    cells = ", ".join(f"{lr}: {s['best_metric']:.1f} ({s['best_step']})" for lr, s in runs)
    best = max(s["best_metric"] for _, s in runs)
    print(f"| {task} | {init} | {cells} | {best:.1f} | {runs[0][1]['baseline_metric']:.1f} |")
PY
