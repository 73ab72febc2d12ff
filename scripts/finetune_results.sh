#!/usr/bin/env bash
# Finetunes every task on every dataset in ../shared/data, from scratch and from
# a pretrained checkpoint, and prints the README's results table.
#
#   scripts/finetune_results.sh PIXEL_BINARY OUT_DIR [PRETRAINED_CHECKPOINT]
#
# Settings are sized for a 2-core CPU and the tiny model (the SPEC 6.2 recipe,
# 15,000 steps at batch 64, is for PIXEL-base on a GPU): batch 32, 400 steps,
# lr 1e-3 with 40 warmup steps, dev evaluation every 100 steps, the task's
# sequence length (256; 196 for NER). Set INITS="scratch" to skip pretrained runs.
set -euo pipefail
bin=$1
out=$2
pretrained=${3:-}
data=${PIXEL_DATA:-$(dirname "$0")/../../shared/data}
steps=${STEPS:-400}
inits=${INITS:-scratch pretrained}
mkdir -p "$out"

run() { # task name train dev [extra args...]
    local task=$1 name=$2 train=$3 dev=$4
    shift 4
    for init in $inits; do
        local dir="$out/$task-$name-$init"
        [ -f "$dir/summary.json" ] && continue
        local init_args=(--config tiny)
        if [ "$init" = pretrained ]; then
            [ -n "$pretrained" ] || continue
            init_args=(--init "$pretrained")
        fi
        echo "== $task $name $init" >&2
        "$bin" finetune --task "$task" --train "$train" --dev "$dev" --out "$dir" \
            "${init_args[@]}" --batch-size 32 --grad-accum 1 --steps "$steps" \
            --warmup-steps 40 --lr 1e-3 --eval-every 100 "$@" 2>"$dir.log" || {
            echo "failed: see $dir.log" >&2
            continue
        }
    done
}

ud=$data/ud
run pos en_ewt "$ud/UD_English-EWT/en_ewt-ud-train.conllu" "$ud/UD_English-EWT/en_ewt-ud-dev.conllu"
run pos ta_ttb "$ud/UD_Tamil-TTB/ta_ttb-ud-train.conllu" "$ud/UD_Tamil-TTB/ta_ttb-ud-dev.conllu"
run pos cop_scriptorium "$ud/UD_Coptic-Scriptorium/cop_scriptorium-ud-train.conllu" "$ud/UD_Coptic-Scriptorium/cop_scriptorium-ud-dev.conllu"
run parse en_ewt "$ud/UD_English-EWT/en_ewt-ud-train.conllu" "$ud/UD_English-EWT/en_ewt-ud-dev.conllu"
run parse ta_ttb "$ud/UD_Tamil-TTB/ta_ttb-ud-train.conllu" "$ud/UD_Tamil-TTB/ta_ttb-ud-dev.conllu"
run parse cop_scriptorium "$ud/UD_Coptic-Scriptorium/cop_scriptorium-ud-train.conllu" "$ud/UD_Coptic-Scriptorium/cop_scriptorium-ud-dev.conllu"
run ner amh "$data/ner/masakhaner1/amh/train.txt" "$data/ner/masakhaner1/amh/dev.txt"
run ner pcm "$data/ner/masakhaner1/pcm/train.txt" "$data/ner/masakhaner1/pcm/dev.txt"
run classify sst2 "$data/sst2/train.tsv" "$data/sst2/dev.tsv"

# The table: one row per run, from each summary.json.
python3 - "$out" <<'PY'
import json, pathlib, sys
rows = []
for p in sorted(pathlib.Path(sys.argv[1]).glob("*/summary.json")):
    s = json.loads(p.read_text())
    init = "pretrained" if s["init"] else "scratch"
    parent = pathlib.Path(s["train"]).parent.name
    name = {"amh": "MasakhaNER amh", "pcm": "MasakhaNER pcm", "sst2": "SST-2"}.get(parent, parent)
    rows.append(f"| {s['task']} | {name} ({s['train_examples']} / {s['dev_examples']}) | {init} | {s['steps']} (best {s['best_step']}) "
                f"| {s['seconds'] / 60:.1f} min | {s['metric']} {s['best_metric']:.1f} | {s['baseline_metric']:.1f} |")
print("| task | data (train / dev sentences) | init | steps | wall | dev metric | majority baseline |")
print("|---|---|---|---|---|---|---|")
print("\n".join(rows))
PY
