#!/usr/bin/env bash
# The findings at scale=proxy_cpu (docs/findings.md): the exact commands that made the committed records.
#
#   bash bench/findings_cpu.sh run a &   # two queues side by side, one thread each (about 5-8 hours on
#   bash bench/findings_cpu.sh run b &   # 2 cores; a variant whose record is complete is skipped on re-run)
#   bash bench/findings_cpu.sh collect   # copy the records into docs/findings/records, regenerate the report
#
# CORPUS (default ../shared/corpus/prose.jsonl: 4,706 documents of Python docs and Shakespeare, sha256
# cadd99cc…) and RUNS (default multirun/, where the sweeps write) tune it. Each queue runs seed after seed,
# so every finding has seed 0 before any has seed 1. A model two findings share is run once: the GQA
# finding's 16/4 model is the layer-sharing sweep's unshared base, and at this scale the depth finding's 12-
# and 30-layer models are the FFN sweep's SwiGLU model and the embedding sweep's untied one (the committed
# seed-0 records also hold the depth sweep's 12-layer and the embedding sweep's untied runs, identical, from an
# earlier queue).
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${CORPUS:-../shared/corpus/prose.jsonl}
RUNS=${RUNS:-multirun}
SWEEPS=(lr ffn_type depth_width emb_share heads_kv layer_sharing)

job() {  # one multirun at the proxy scale, single-threaded (two queues share 2 cores)
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python run.py -m "$@" \
    scale=proxy_cpu data=local_files "data.paths=[$CORPUS]" "hydra.sweep.dir=$RUNS/\${sweep}/\${scale.name}"
}

case "${1:-}" in
  run)
    case "${2:-}" in
      a)
        job +sweep=lr axes.lr=2.0e-3,4.0e-3,8.0e-3  # the scale's LR (conf/scale/proxy_cpu.yaml)
        for seed in 0 1 2; do
          job +sweep=ffn_type seed="$seed" axes.ffn_type=swiglu,relu
          job +sweep=depth_width seed="$seed" axes.budget=125M axes.n_layers=30
        done
        job +sweep=ffn_type seed=3 axes.ffn_type=swiglu,relu  # 3 seeds left the FFN's interval across 0
        for seed in 0 1 2; do
          job +sweep=depth_width seed="$seed" axes.budget=125M axes.n_layers=4
          job +sweep=emb_share seed="$seed" axes.embedding=tied_30l,tied_32l
        done
        # more seeds for the embedding finding: 3 seeds left it unresolved, and 4 gave "≈6 seeds at this Δ and
        # spread", so seeds 3-5 (fixed at 6 before seeds 4 and 5 ran); seed 3 also gives the depth finding's
        # 30-layer model a fourth seed beside the 12-layer one's (the FFN sweep's seed 3)
        for seed in 3 4 5; do
          job +sweep=emb_share seed="$seed" axes.embedding=untied_30l,tied_30l,tied_32l
        done
        ;;
      b)
        for seed in 0 1 2; do
          job +sweep=layer_sharing seed="$seed" axes.budget=125M axes.sharing_scheme=none,immediate \
            axes.sharing_repeats=2
        done
        for seed in 0 1 2; do
          job +sweep=heads_kv seed="$seed" axes.budget=125M axes.n_heads=16 axes.n_kv_heads=16
        done
        for seed in 0 1 2; do
          job +sweep=layer_sharing seed="$seed" axes.budget=125M axes.sharing_scheme=immediate axes.sharing_repeats=3
        done
        for seed in 0 1 2; do
          job +sweep=layer_sharing seed="$seed" axes.budget=125M axes.sharing_scheme=repeat_all_over \
            axes.sharing_repeats=2
        done
        ;;
      *) echo "usage: bash bench/findings_cpu.sh run a|b" >&2; exit 2 ;;
    esac
    ;;
  collect)
    # a complete record with what the analysis reads: result.json, metrics.jsonl, validation.json, per-row
    # zero-shot outputs (no checkpoints, no model)
    for sweep in "${SWEEPS[@]}"; do
      for record in "$RUNS/$sweep"/proxy_cpu/*/seed=*/result.json; do
        [ -f "$record" ] || continue
        grep -q '"status": "complete"' "$record" || continue
        run=$(dirname "$record")
        dest=docs/findings/records/$sweep/$(basename "$(dirname "$run")")/$(basename "$run")
        mkdir -p "$dest"
        cp "$run"/result.json "$run"/metrics.jsonl "$run"/validation.json "$dest"/
        cp -r "$run"/eval_samples "$dest"/
      done
    done
    python -m analysis.findings docs/findings/records --out docs
    ;;
  *)
    echo "usage: bash bench/findings_cpu.sh run a|b | collect" >&2
    exit 2
    ;;
esac
