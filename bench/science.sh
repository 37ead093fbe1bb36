#!/usr/bin/env bash
# The findings at scale=proxy_gpu (docs/findings.md) on one GPU as one prepared command, for a GPU machine
# that has a CUDA torch, lightning, transformers, pandas and pyarrow but not this project's other Python
# dependencies and no network (such as the H100/H200 lent to some sessions here).
#
#   bash bench/science.sh wheels   # on a machine with PyPI: the wheels it needs (CPython 3.12, manylinux),
#                                  # into .whl/, and the corpus into .corpus/ (both git-ignored)
#   bash bench/science.sh run      # on the GPU machine, from the repo root with .whl/ and .corpus/ beside it:
#                                  # install into /tmp/site, then train and record variants seed by seed,
#                                  # FFN and layer sharing first, while BUDGET seconds (default 480) last;
#                                  # records under $OUT/records, the report in $OUT (python -m analysis.findings)
#
# TOKENS (default 100M: the lent machine holds a 17 MB corpus, not scale=proxy_gpu's 0.5B tokens of FineWeb)
# and SEEDS (default 3) tune the run. A variant starts only if the last one's duration still fits the budget.
set -euo pipefail
cd "$(dirname "$0")/.."
# what this project needs that the GPU image lacks (its package list: .library/device/KINDS.md), pinned to
# the versions a fresh install of this project resolves today
WHEELS=(hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3 lm-eval==0.4.13 evaluate==0.4.6
  datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 sqlitedict==2.1.0 pytablewriter==1.2.1 dataproperty==1.1.1
  mbstrdecoder==1.1.5 pathvalidate==3.3.1 tabledata==1.3.5 tcolorpy==0.1.7 typepy==1.3.5 chardet==6.0.0.post1
  word2number==1.1 more-itertools==11.2.1 rouge-score==0.1.2 nltk==3.10.4 optuna==5.1.0 alembic==1.20.1
  mako==1.4.3 colorlog==6.12.0)
BUILT_FOR_312=(multiprocess==0.70.19 sqlalchemy==2.1.9)  # wheels made per Python version
CORPUS=${CORPUS:-../shared/corpus/prose.jsonl}
# variants in the order they are run (each: sweep and its axis overrides; FFN and layer sharing first)
VARIANTS=(
  "+sweep=ffn_type axes.ffn_type=swiglu"
  "+sweep=ffn_type axes.ffn_type=relu"
  "+sweep=layer_sharing axes.budget=125M axes.sharing_scheme=none axes.sharing_repeats=2"
  "+sweep=layer_sharing axes.budget=125M axes.sharing_scheme=immediate axes.sharing_repeats=2"
  "+sweep=layer_sharing axes.budget=125M axes.sharing_scheme=repeat_all_over axes.sharing_repeats=2"
  "+sweep=layer_sharing axes.budget=125M axes.sharing_scheme=immediate axes.sharing_repeats=3"
  "+sweep=heads_kv axes.budget=125M axes.n_heads=16 axes.n_kv_heads=16"
  "+sweep=depth_width axes.budget=125M axes.n_layers=12"
  "+sweep=depth_width axes.budget=125M axes.n_layers=30"
  "+sweep=depth_width axes.budget=125M axes.n_layers=4"
  "+sweep=emb_share axes.embedding=untied_30l"
  "+sweep=emb_share axes.embedding=tied_30l"
  "+sweep=emb_share axes.embedding=tied_32l"
)

case "${1:-}" in
  wheels)
    python3 -m pip wheel -q --no-deps -w .whl "${WHEELS[@]}"  # pure Python: any CPython 3 (antlr4: an sdist)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d .whl "${BUILT_FOR_312[@]}"
    mkdir -p .corpus && cp "$CORPUS" .corpus/
    ls .whl .corpus
    ;;
  run)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
    out=${OUT:-/tmp}
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    start=$(date +%s) last=0
    for seed in $(seq 0 $((${SEEDS:-3} - 1))); do
      for variant in "${VARIANTS[@]}"; do
        now=$(date +%s)
        if (( now - start + last > ${BUDGET:-480} )); then
          echo "budget spent: stopping before seed=$seed $variant"
          break 2
        fi
        # shellcheck disable=SC2086  # a variant is several overrides
        python3 run.py -m $variant seed="$seed" scale=proxy_gpu train.tokens="${TOKENS:-100007936}" \
          data=local_files "data.paths=[$PWD/.corpus/$(basename "$CORPUS")]" data.max_epochs=null \
          "hydra.sweep.dir=$out/records/\${sweep}" 2>&1 | tail -n 3
        last=$(($(date +%s) - now))
      done
    done
    python3 -m analysis.findings "$out/records" --out "$out"
    ;;
  *)
    echo "usage: bash bench/science.sh wheels|run" >&2
    exit 2
    ;;
esac
