"""Wall time of our lm-eval adapter vs. lm-eval's own `hf` model on the exported weights, same tasks and rows.

    python bench/eval.py [--ckpt DIR] [--model tiny] [--tasks arc_easy,hellaswag,...] [--limit 100] [--batch-size 16]

Without --ckpt a random model of the `--model` preset (vocabulary padded to the paper's 32000) is built
with a byte-level BPE tokenizer trained on benchmark text. Prints both scores (they must agree) and the speed ratio (wanted: adapter >= 2x).
Needs `../shared/benchmarks` (or --data-dir) and `accelerate` (lm-eval's hf model imports it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ablations.eval.config import BESIDE_REPO_BENCHMARKS
from ablations.eval.tasks import PAPER_ZERO_SHOT


def build_model(args: argparse.Namespace):
    if args.ckpt:
        from ablations.eval.loading import load_for_eval

        return load_for_eval(args.ckpt)
    import torch

    from ablations.job.config import compose_config, job_config
    from ablations.model.architecture import MobileLLM
    from tests.eval_fixtures import make_tokenizer

    tokenizer = make_tokenizer(args.vocab)
    # the model's vocabulary may be padded past the tokenizer's (the paper's 32000 by default)
    vocab = max(len(tokenizer), args.model_vocab)
    cfg = job_config(compose_config([f"model={args.model}", f"model.vocab_size={vocab}"])).model
    torch.manual_seed(0)
    return MobileLLM(cfg).eval(), tokenizer


def timed_eval(lm, tasks: list[str], limit: int, config_dir: Path) -> tuple[float, dict]:
    import lm_eval

    from ablations.eval.tasks import task_manager

    start = time.perf_counter()
    out = lm_eval.simple_evaluate(
        model=lm, tasks=tasks, limit=limit, task_manager=task_manager(config_dir), bootstrap_iters=0
    )
    return time.perf_counter() - start, out["results"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--vocab", type=int, default=4096, help="tokenizer vocabulary trained for the bench")
    parser.add_argument("--model-vocab", type=int, default=32000, help="model vocabulary (>= tokenizer's)")
    parser.add_argument("--tasks", default=",".join(PAPER_ZERO_SHOT))
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per model; the best counts")
    parser.add_argument("--data-dir", default=str(BESIDE_REPO_BENCHMARKS))
    args = parser.parse_args()

    import torch
    from lm_eval.models.huggingface import HFLM
    from transformers import LlamaForCausalLM

    from ablations.eval.adapter import MobileLLMEvalLM
    from ablations.eval.evaluation import _task_metrics
    from ablations.eval.tasks import write_task_configs
    from ablations.model.hf_interop import export_llama

    torch.set_num_threads(max(1, torch.get_num_threads()))
    tasks = args.tasks.split(",")
    model, tokenizer = build_model(args)
    with tempfile.TemporaryDirectory() as work:
        config_dir = write_task_configs(tasks, Path(work) / "tasks", args.data_dir)
        export_llama(model, Path(work) / "hf", tokenizer)
        hf_model = LlamaForCausalLM.from_pretrained(str(Path(work) / "hf")).eval()
        ours = MobileLLMEvalLM(model=model, tokenizer=tokenizer, batch_size=args.batch_size)
        theirs = HFLM(pretrained=hf_model, tokenizer=tokenizer, batch_size=args.batch_size)
        timed_eval(ours, tasks[:1], 2, config_dir)  # warm-up: dataset caches, kernels
        # interleaved repeats, best of each: the CPU may be shared with other jobs
        runs_ours, runs_hf = [], []
        for _ in range(args.repeats):
            runs_ours.append(timed_eval(ours, tasks, args.limit, config_dir))
            runs_hf.append(timed_eval(theirs, tasks, args.limit, config_dir))
        (t_ours, r_ours), (t_hf, r_hf) = min(runs_ours, key=lambda r: r[0]), min(runs_hf, key=lambda r: r[0])

    print(
        f"\n{len(tasks)} tasks x {args.limit} rows, batch {args.batch_size}, {torch.get_num_threads()} threads"
    )
    print(f"{'task':<14}{'metric':<10}{'adapter':>10}{'hf':>10}")
    worst = 0.0
    for task in tasks:
        mine, ref = _task_metrics(r_ours[task]), _task_metrics(r_hf[task])
        for name in (m for m in mine if not m.endswith("_stderr")):
            worst = max(worst, abs(mine[name] - ref[name]))
            print(f"{task:<14}{name:<10}{mine[name]:>10.4f}{ref[name]:>10.4f}")
    print(f"max |score difference|: {worst:.2e}")
    print(
        f"wall time (best of {args.repeats}): adapter {t_ours:.1f} s, hf {t_hf:.1f} s -> adapter is {t_hf / t_ours:.2f}x faster"
    )


if __name__ == "__main__":
    main()
