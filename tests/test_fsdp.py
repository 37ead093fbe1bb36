"""FSDP2 (`trainer=fsdp`): real 2-process runs on gloo through the preset, and the sharded optimizer pieces.

Lightning's ModelParallelStrategy re-executes the command for rank 1, so the runs are `python run.py`
commands; the DDP reference runs in-process with spawned ranks (trainer=ddp_cpu).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from ablations.data.shards import prepare_shards
from ablations.eval.scoring import evaluate_checkpoint
from ablations.job.config import compose_config, job_config
from ablations.job.stages import plan, prepare_data, run_job
from ablations.model.architecture import MobileLLM
from ablations.model.checkpoint import load_model_dir
from ablations.records.metrics import read_metrics
from ablations.records.result import read_result
from ablations.train.optim import clip_grad_norm, param_groups
from tests.conftest import REPO, small_config
from tests.eval_fixtures import BENCHMARKS

STEPS = 4
CLIP = 0.05  # far below the tiny model's gradient norm (~2): clipping acts at every step
RUN = [
    "model.sharing_scheme=immediate",  # a layer-shared variant: each stored block is applied twice
    "model.sharing_repeats=2",
    "train.micro_batch_size=4",
    "train.seq_len=32",
    f"train.tokens={STEPS * 2 * 4 * 32}",  # 2 ranks × 4 windows × 32 tokens per step
    "train.warmup_steps=0",
    "train.val_every_n_steps=0",
    "train.val_batches=2",
    "train.log_every_n_steps=1",
    "train.ckpt_every_n_steps=2",
    "train.keep_checkpoints=-1",
    f"train.grad_clip={CLIP}",
    "data.progress=false",
    "logger=none",
    "eval=none",
]
# odd: the two ranks get unequal shares of the docs
EVAL = ["eval=smoke", "eval.tasks=[piqa,arc_easy]", "eval.limit=3", f"eval.data_dir={BENCHMARKS}"]


def run_fsdp(run_dir: Path, *overrides: str) -> None:
    command = [sys.executable, "run.py", f"hydra.run.dir={run_dir}", "trainer=fsdp_cpu", *RUN, *overrides]
    done = subprocess.run(
        command, cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def logged(run_dir: Path, key: str) -> dict[int, float]:
    return {row["step"]: row[key] for row in read_metrics(run_dir / "metrics.jsonl") if key in row}


def shared_shards() -> list[str]:
    """Overrides that make every run read one set of shards, prepared once here."""
    job = job_config(compose_config(RUN))
    datamodule = prepare_data(job, plan(job))
    shard_dir = prepare_shards(job.data, job.tokenizer, datamodule.tokenizer)
    return [
        "data=pretokenized",
        f"data.shards_dir={shard_dir}",
        "tokenizer=hf",
        f"tokenizer.name_or_path={shard_dir / 'tokenizer'}",
    ]


@pytest.fixture(scope="module")
def ddp_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Path]:
    """(overrides naming the shared shards, the run dir of a 2-rank fp32 DDP run on them)."""
    data, ddp = shared_shards(), tmp_path_factory.mktemp("ddp")
    run_job(compose_config(["trainer=ddp_cpu", *RUN, *data]), ddp, name="ddp")
    return data, ddp


def test_fsdp_trains_like_ddp_and_resumes_from_a_distributed_checkpoint(
    tmp_path: Path, ddp_reference: tuple[list[str], Path]
) -> None:
    fsdp, resumed = tmp_path / "fsdp", tmp_path / "resumed"
    data, ddp = ddp_reference
    run_fsdp(fsdp, *data, *(EVAL if BENCHMARKS.is_dir() else []))

    # same seed, same data, same updates: the sharded run's losses are the replicated run's
    sharded, replicated = logged(fsdp, "train/loss"), logged(ddp, "train/loss")
    assert sorted(sharded) == list(range(STEPS))
    for step in range(STEPS):
        assert sharded[step] == pytest.approx(replicated[step], abs=1e-4)
    # the logged norm is the one clipping computed (before clipping), equal across strategies and > clip
    norms, ddp_norms = logged(fsdp, "train/grad_norm"), logged(ddp, "train/grad_norm")
    assert all(norms[s] > CLIP and norms[s] == pytest.approx(ddp_norms[s], rel=1e-4) for s in range(STEPS))
    assert sharded[STEPS - 1] < sharded[0]  # a layer-shared variant trains under FSDP2

    # checkpoints are distributed checkpoint dirs; the export is a whole model
    last = fsdp / "checkpoints" / "last.ckpt"
    assert last.is_dir() and (last / "meta.pt").is_file() and len(list(last.glob("*.distcp"))) == 2
    record = read_result(fsdp)
    assert record["status"] == "complete" and record["train"]["steps"] == STEPS
    assert record["tokens_seen"] == STEPS * 2 * 4 * 32
    exported = load_model_dir(fsdp / "model")
    assert sum(p.numel() for p in exported.parameters()) == record["params"]["total"]
    if BENCHMARKS.is_dir():  # both training ranks scored a share of the docs: the scores of one process
        alone = evaluate_checkpoint(fsdp / "model", job_config(compose_config(EVAL)).eval, tmp_path / "alone")
        assert record["eval"]["world_size"] == 2 and alone["eval"]["world_size"] == 1
        assert record["eval"]["tasks"] == alone["eval"]["tasks"]

    # a job killed after step 2 leaves that checkpoint as its last.ckpt; ckpt_path=auto resumes from it
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(fsdp / "checkpoints" / "step-0000002.ckpt", resumed / "checkpoints" / "last.ckpt")
    run_fsdp(resumed, *data, "ckpt_path=auto")
    continued = logged(resumed, "train/loss")
    assert sorted(continued) == list(range(2, STEPS))
    assert [continued[s] for s in range(2, STEPS)] == pytest.approx(
        [sharded[s] for s in range(2, STEPS)], abs=1e-6
    )
    assert read_result(resumed)["tokens_seen"] == record["tokens_seen"]


def test_the_gpu_presets_mixed_precision_and_hsdp_train_like_ddp(
    tmp_path: Path, ddp_reference: tuple[list[str], Path]
) -> None:
    """`trainer=fsdp` as a GPU run uses it: its policy (parameters all-gathered and computed in bf16,
    gradients reduced in fp32) with `train.compile=true`, and its multi-node layout: HSDP over a 2-D mesh
    (here 2 replicas of 1 shard)."""
    data, ddp = ddp_reference
    replicated = logged(ddp, "train/loss")
    run_fsdp(tmp_path / "bf16", *data, "trainer.fsdp_param_dtype=bfloat16", "train.compile=true")
    mixed = logged(tmp_path / "bf16", "train/loss")
    assert sorted(mixed) == list(range(STEPS)) and mixed != replicated  # bf16 really computed
    for step in range(STEPS):
        assert mixed[step] == pytest.approx(replicated[step], abs=2e-2)
    assert mixed[STEPS - 1] < mixed[0]
    exported = load_model_dir(tmp_path / "bf16" / "model")  # the export holds the fp32 master weights
    assert all(p.dtype == torch.float32 for p in exported.parameters())

    run_fsdp(tmp_path / "hsdp", *data, "trainer.fsdp_replicate_groups=2")
    hybrid = logged(tmp_path / "hsdp", "train/loss")
    assert sorted(hybrid) == list(range(STEPS))
    for step in range(STEPS):
        assert hybrid[step] == pytest.approx(replicated[step], abs=1e-4)
    assert read_result(tmp_path / "hsdp")["status"] == "complete"


@pytest.fixture
def one_rank_group(tmp_path: Path):
    """A real 1-rank gloo process group, so fully_shard makes real DTensor parameters in this process."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def sharded_model() -> MobileLLM:
    model = MobileLLM(small_config(norm_type="layernorm", share_embeddings=False))
    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)
    return model


def test_weight_decay_hits_matrices_and_embeddings_of_a_sharded_model_never_norms(one_rank_group) -> None:
    model = sharded_model()
    assert all(isinstance(p, DTensor) for p in model.parameters())
    lr, decay = 0.5, 0.1
    optimizer = torch.optim.AdamW(param_groups(model, decay), lr=lr)
    before = {name: p.full_tensor().clone() for name, p in model.named_parameters()}
    for p in model.parameters():  # zero gradients: AdamW's update is the decay alone
        p.grad = torch.zeros_like(p)
    optimizer.step()
    after = {name: p.full_tensor() for name, p in model.named_parameters()}
    decayed = (
        "embed_tokens.weight",
        "lm_head.weight",
        "blocks.0.attn.qkv_proj.weight",
        "blocks.2.ffn.down_proj.weight",
    )
    for name in decayed:
        torch.testing.assert_close(after[name], before[name] * (1 - lr * decay))
    kept = ("norm.weight", "norm.bias", "blocks.0.attn_norm.weight", "blocks.1.ffn_norm.bias")
    for name in kept:
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=0)
    assert {n for n in after if not n.endswith(("norm.weight", "norm.bias"))} == {
        n for n in after if not torch.equal(after[n], before[n])
    }


def test_clipping_sharded_gradients_returns_the_global_norm_and_bounds_them(one_rank_group) -> None:
    model = sharded_model()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    numel = sum(p.numel() for p in model.parameters())
    norm = clip_grad_norm(model.parameters(), max_norm=0.01)
    assert not isinstance(norm, DTensor) and norm.item() == pytest.approx(numel**0.5, rel=1e-5)
    clipped = torch.stack([p.grad.full_tensor().pow(2).sum() for p in model.parameters()]).sum().sqrt()
    assert clipped.item() == pytest.approx(0.01, rel=1e-3)
