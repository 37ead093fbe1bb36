"""Whole-process wall time: `python -m ablations.evaluate` (our adapter) vs `lm_eval --model hf` (lm-eval's own
LLaMA path through transformers) on the same weights, tasks, rows, batch size and machine.

    python bench/eval.py [--model mobilellm_125m] [--tasks arc_easy,hellaswag,...] [--limit 100] [--batch-size 16]
                         [--repeats 1] [--ckpt NATIVE_MODEL_DIR]

Without --ckpt a random model of the `--model` preset (vocabulary padded to the paper's 32000) is built with a
byte-level BPE tokenizer trained on benchmark text (speed depends only on the shapes), saved as a native model
directory and exported to a LLaMA directory. Each command is timed from process start to exit (imports, task
loading, scoring, writing), the two interleaved `--repeats` times, best of each. Prints both scores (they must
agree) and the ratio (the goal: ours >= 2x). Needs `../shared/benchmarks` (or --data-dir) and `accelerate`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ablations.eval.tasks import PAPER_ZERO_SHOT
from ablations.records.run_dir import RunDir

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCHMARKS = REPO.parent / "shared" / "benchmarks"  # the full splits (the packaged ones hold 40 rows)


def write_models(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    """(native model dir, LLaMA export dir) of the benchmarked weights."""
    import torch

    from ablations.eval.loading import load_for_eval
    from ablations.job.config import compose_config, job_config
    from ablations.model.architecture import MobileLLM
    from ablations.model.checkpoint import save_model_dir
    from ablations.model.hf_interop import export_llama
    from tests.eval_fixtures import make_tokenizer

    if args.ckpt:
        model, tokenizer = load_for_eval(args.ckpt)
    else:
        tokenizer = make_tokenizer(args.vocab)
        vocab = max(len(tokenizer), args.model_vocab)  # padded past the tokenizer's, as the paper's 32000
        cfg = job_config(compose_config([f"model={args.model}", f"model.vocab_size={vocab}"])).model
        torch.manual_seed(0)
        model = MobileLLM(cfg).eval()
    native = save_model_dir(model, work / "native", tokenizer)
    hf = work / "hf"
    export_llama(model, hf, tokenizer)
    return native, hf


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    return seconds


def hf_scores(out_dir: Path) -> dict[str, dict[str, float]]:
    (results,) = out_dir.rglob("results_*.json")
    raw = json.loads(results.read_text())["results"]
    return {task: scores_of(metrics) for task, metrics in raw.items()}


def scores_of(metrics: dict[str, object]) -> dict[str, float]:
    """`{"acc,none": x, ...}` or `{"acc": x, ...}` → the accuracies alone."""
    out = {}
    for key, value in metrics.items():
        name = key.split(",")[0]
        if name in ("acc", "acc_norm") and isinstance(value, float):
            out[name] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default=None, help="a native model dir with its tokenizer (else random)")
    parser.add_argument("--model", default="mobilellm_125m")
    parser.add_argument("--vocab", type=int, default=4096, help="tokenizer vocabulary trained for the bench")
    parser.add_argument("--model-vocab", type=int, default=32000, help="model vocabulary (>= tokenizer's)")
    parser.add_argument("--tasks", default=",".join(PAPER_ZERO_SHOT))
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per command; the best counts")
    parser.add_argument("--data-dir", default=str(SHARED_BENCHMARKS))
    args = parser.parse_args()

    from ablations.eval.tasks import write_task_configs

    tasks = args.tasks.split(",")
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        native, hf = write_models(args, work)
        include = write_task_configs(tasks, work / "tasks", args.data_dir)
        ours = [
            sys.executable, "-m", "ablations.evaluate", f"ckpt={native}", f"out={work / 'ours'}",
            f"eval.tasks=[{','.join(tasks)}]", f"eval.limit={args.limit}", f"eval.batch_size={args.batch_size}",
            f"eval.data_dir={args.data_dir}", "eval.device=cpu",
        ]  # fmt: skip
        theirs = [
            sys.executable, "-m", "lm_eval", "run", "--model", "hf",
            "--model_args", f"pretrained={hf},dtype=float32", "--tasks", ",".join(tasks),
            "--include_path", str(include), "--limit", str(args.limit), "--batch_size", str(args.batch_size),
            "--device", "cpu", "--output_path", str(work / "hf_out"),
        ]  # fmt: skip
        runs_ours, runs_hf = [], []
        for _ in range(args.repeats):  # interleaved: the machine may be shared with other jobs
            runs_ours.append(timed(ours, env))
            runs_hf.append(timed(theirs, env))
        record = json.loads(RunDir(work / "ours").eval_record.read_text())
        mine = {task: scores_of(m) for task, m in record["eval"]["tasks"].items()}
        ref = hf_scores(work / "hf_out")

    t_ours, t_hf = min(runs_ours), min(runs_hf)
    print(f"\n{args.model}: {len(tasks)} tasks x {args.limit} rows, batch {args.batch_size}, whole processes")
    print(f"{'task':<14}{'metric':<10}{'ours':>10}{'hf':>10}")
    worst = 0.0
    for task in tasks:
        for name, value in mine[task].items():
            worst = max(worst, abs(value - ref[task][name]))
            print(f"{task:<14}{name:<10}{value:>10.4f}{ref[task][name]:>10.4f}")
    print(f"max |score difference|: {worst:.2e}")
    print(f"runs (s): ours {[round(t, 1) for t in runs_ours]}, hf {[round(t, 1) for t in runs_hf]}")
    print(f"wall time (best of {args.repeats}): ours {t_ours:.1f} s, hf {t_hf:.1f} s -> {t_hf / t_ours:.2f}x")


if __name__ == "__main__":
    main()
