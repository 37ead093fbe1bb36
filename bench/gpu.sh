#!/usr/bin/env bash
# The GPU measurement (bench/train.py --gpu: MFU ± compile ± activation checkpointing, beside litgpt) as one
# prepared command, for a GPU machine that has a CUDA torch, lightning and transformers but none of this
# project's other pure-Python dependencies and no network (such as the H200 lent to some sessions here).
#
#   bash bench/gpu.sh wheels   # on a machine with PyPI: the wheels it needs, into .whl/ (git-ignored)
#   bash bench/gpu.sh run      # on the GPU machine, from the repo root with .whl/ beside it: install them
#                              # into /tmp/site, then measure; the log also goes to $OUT (or /tmp)
#
# MODELS (default mobilellm_125m, about 5 minutes on an H200 with compiles; add mobilellm_350m for about
# 5 more) and STEPS (timed optimizer steps per measurement, default 10) tune the run.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3 dill==0.4.1 litgpt==0.5.13)

case "${1:-}" in
  wheels)
    # pure-Python wheels, so any Python 3 and platform will do; litgpt without its pins (only its model,
    # which needs torch and lightning, is used)
    python3 -m pip wheel -q --no-deps -w .whl "${WHEELS[@]}"
    ls .whl
    ;;
  run)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    python3 bench/train.py --gpu --steps "${STEPS:-10}" --gpu-models "${MODELS:-mobilellm_125m}" \
      2>&1 | tee "${OUT:-/tmp}/bench_train_gpu.log"
    ;;
  *)
    echo "usage: bash bench/gpu.sh wheels|run" >&2
    exit 2
    ;;
esac
