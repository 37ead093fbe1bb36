"""Data-parallel evaluation: 2 gloo ranks share the docs, rank 0 gathers; the scores equal one process's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ablations.eval.config import EvalConfig
from ablations.eval.scoring import run_evaluation
from tests.eval_fixtures import BENCHMARKS

# odd limits: the ranks get unequal shares and lm-eval pads the shorter one
TASKS, LIMIT = ["piqa", "wikitext"], 3


def eval_config() -> EvalConfig:
    return EvalConfig(tasks=TASKS, limit=LIMIT, data_dir=str(BENCHMARKS), batch_size=4, bootstrap_iters=0)


def rank_main(rank: int, tmp: Path) -> None:
    from ablations.eval.loading import load_for_eval

    dist.init_process_group("gloo", init_method=f"file://{tmp / 'rendezvous'}", rank=rank, world_size=2)
    try:
        model, tokenizer = load_for_eval(tmp / "model")
        section = run_evaluation(model, tokenizer, eval_config(), tmp / "ddp", data_parallel=True)
        if rank == 0:
            (tmp / "ddp_section.json").write_text(json.dumps(section))
        else:
            assert section is None
    finally:
        dist.destroy_process_group()


def sample_lines(out: Path, task: str) -> list[dict]:
    return [json.loads(line) for line in (out / "eval_samples" / f"{task}.jsonl").read_text().splitlines()]


@pytest.mark.skipif(not BENCHMARKS.is_dir(), reason=f"{BENCHMARKS} absent")
def test_two_gloo_ranks_score_as_one_process(tmp_path, eval_model, eval_tokenizer):
    from ablations.eval.loading import load_for_eval
    from ablations.model.checkpoint import save_model_dir

    save_model_dir(eval_model, tmp_path / "model", eval_tokenizer)
    mp.spawn(rank_main, args=(tmp_path,), nprocs=2, join=True)
    ddp = json.loads((tmp_path / "ddp_section.json").read_text())
    model, tokenizer = load_for_eval(tmp_path / "model")
    alone = run_evaluation(model, tokenizer, eval_config(), tmp_path / "alone")
    assert ddp["world_size"] == 2 and alone["world_size"] == 1
    for task in TASKS:
        assert ddp["tasks"][task]["n_docs"] == alone["tasks"][task]["n_docs"] == LIMIT
        for metric, value in alone["tasks"][task].items():
            assert ddp["tasks"][task][metric] == pytest.approx(value, rel=1e-9), (task, metric)
        ddp_lines, alone_lines = sample_lines(tmp_path / "ddp", task), sample_lines(tmp_path / "alone", task)
        assert [x["doc_id"] for x in ddp_lines] == [x["doc_id"] for x in alone_lines] == list(range(LIMIT))
        for ours, theirs in zip(ddp_lines, alone_lines, strict=True):
            got, want = torch.tensor(ours["resps"], dtype=torch.float64), torch.tensor(theirs["resps"])
            assert torch.allclose(got, want.double(), atol=1e-4)
