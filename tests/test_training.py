"""Real Lightning training runs of the tiny model on the embedded corpus (CPU)."""

from __future__ import annotations

import json
import math
import shutil
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode

from ablations.job.config import compose_config
from ablations.job.stages import run_job
from ablations.model.checkpoint import load_model_dir
from ablations.records.metrics import read_metrics
from ablations.records.result import read_result
from ablations.train.module import LitMobileLLM

# 8 windows of 64 tokens per step: fast on 2 cores, long enough to learn
SMALL = [
    "train.micro_batch_size=8",
    "train.seq_len=64",
    "train.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    "data.progress=false",
    "logger=none",
    "eval=none",
]


def tokens_for(steps: int) -> str:
    return f"train.tokens={steps * 8 * 64}"


def losses(run_dir: Path) -> dict[int, float]:
    return {
        row["step"]: row["train/loss"]
        for row in read_metrics(run_dir / "metrics.jsonl")
        if "train/loss" in row
    }


def test_smoke_training_lowers_the_loss_and_records_the_run(tmp_path: Path) -> None:
    cfg = compose_config(
        [
            *SMALL,
            tokens_for(60),
            "train.warmup_steps=5",
            "train.val_every_n_steps=30",
            "train.val_batches=4",
            "train.ckpt_every_n_steps=30",
            "eval=smoke",
            "eval.limit=4",
            "eval.tasks=[arc_easy,piqa]",
        ]
    )
    record = run_job(cfg, tmp_path, name="tiny")
    assert record["status"] == "complete"
    saved = read_result(tmp_path)
    assert saved["status"] == "complete" and saved["error"] is None
    assert saved["tokens_seen"] == 60 * 8 * 64 and saved["train"]["steps"] == 60
    assert saved["params"]["total"] == sum(p.numel() for p in load_model_dir(tmp_path / "model").parameters())
    curve = list(losses(tmp_path).values())
    assert len(curve) == 60 and all(math.isfinite(x) for x in curve)
    assert sum(curve[-5:]) / 5 < sum(curve[:5]) / 5 - 0.5  # it learns: > 0.5 nat lower after 60 steps
    assert saved["train"]["val_loss"] < curve[0]
    # the final validation covers the whole held-out split: every val token after the first is a target
    train = saved["train"]
    assert train["val_tokens"] == saved["data"]["splits"]["val"]["tokens"] - 1 and train["val_documents"] > 1
    assert train["val_bpb"] == pytest.approx(
        train["val_loss"] * train["val_tokens"] / train["val_bytes"] / math.log(2)
    )
    assert 0 < train["val_loss_se"] < 0.1 and train["val_bpb_se"] > 0 and train["fit_seconds"] > 0
    per_document = json.loads((tmp_path / "validation.json").read_text())["per_document"]
    assert (
        sum(per_document["tokens"]) == train["val_tokens"]
        and sum(per_document["bytes"]) == train["val_bytes"]
    )
    assert saved["train"]["final_loss"] == curve[-1]
    assert saved["train"]["tokens_per_s"] > 0
    assert saved["data"]["tokenizer"] and (tmp_path / "model" / "tokenizer.json").is_file()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    # the eval stage scored the trained model: per-task metrics, the average, per-sample outputs
    assert set(saved["eval"]["tasks"]) == {"arc_easy", "piqa"} and 0 <= saved["eval"]["paper_avg"] <= 1
    assert len((tmp_path / "eval_samples" / "piqa.jsonl").read_text().splitlines()) == 4


def test_resume_from_a_mid_run_checkpoint_repeats_the_same_losses(tmp_path: Path) -> None:
    common = [
        *SMALL,
        tokens_for(12),
        "train.warmup_steps=3",
        "train.val_every_n_steps=0",
        "train.ckpt_every_n_steps=1",
        "train.keep_checkpoints=-1",
    ]
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    run_job(compose_config(common), full, name="full")
    # a job killed after step 5 leaves exactly this checkpoint behind as its last.ckpt
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(full / "checkpoints" / "step-0000005.ckpt", resumed / "checkpoints" / "last.ckpt")
    run_job(compose_config([*common, "ckpt_path=auto"]), resumed, name="resumed")
    uninterrupted, continued = losses(full), losses(resumed)
    # rows are keyed by the 0-based index of the optimizer step: 5..11 are the steps after the checkpoint
    assert sorted(uninterrupted) == list(range(12)) and sorted(continued) == list(range(5, 12))
    assert [continued[s] for s in range(5, 12)] == [uninterrupted[s] for s in range(5, 12)]
    assert read_result(resumed)["tokens_seen"] == read_result(full)["tokens_seen"] == 12 * 8 * 64


@pytest.fixture(scope="module")
def eager_fp32_losses(tmp_path_factory: pytest.TempPathFactory) -> dict[int, float]:
    run_dir = tmp_path_factory.mktemp("eager")
    run_job(compose_config([*SMALL, tokens_for(6), "train.val_every_n_steps=0"]), run_dir, name="eager")
    return losses(run_dir)


@pytest.mark.parametrize(
    ("overrides", "tolerance"),
    [
        # the GPU run's graph: torch.compile (inductor, on CPU here) of the checkpointed blocks
        (["train.compile=true", "train.activation_checkpointing=full"], 1e-4),
        (["trainer.precision=bf16-mixed"], 2e-2),  # the paper's precision: bf16 autocast, fp32 weights
    ],
    ids=["compile+checkpointing", "bf16-mixed"],
)
def test_the_gpu_recipe_options_train_like_the_eager_fp32_run(
    tmp_path: Path, eager_fp32_losses: dict[int, float], overrides: list[str], tolerance: float
) -> None:
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    cfg = compose_config([*SMALL, tokens_for(6), "train.val_every_n_steps=0", *overrides])
    assert run_job(cfg, tmp_path, name="variant")["status"] == "complete"
    variant = losses(tmp_path)
    assert sorted(variant) == sorted(eager_fp32_losses) == list(range(6))
    for step, loss in variant.items():
        assert loss == pytest.approx(eager_fp32_losses[step], abs=tolerance)
    compiled_graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    if "train.compile=true" in overrides:
        assert compiled_graphs > 0  # dynamo really captured the model
    else:  # autocast really ran in bf16: the losses move, within bf16's precision
        assert compiled_graphs == 0 and variant != eager_fp32_losses


# Tensor → host reads: each is a device sync when the tensor is on a GPU
HOST_READS = {
    torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.cpu,
    torch.Tensor.__bool__, torch.Tensor.__float__, torch.Tensor.__int__,
}  # fmt: skip


class HostReadRecorder(TorchFunctionMode):
    """Records every host read of a tensor, and the file of the Python code that made it."""

    def __init__(self, events: list[tuple[str, str]]) -> None:
        super().__init__()
        self.events = events

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: tuple[type, ...],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if func in HOST_READS:
            self.events.append((func.__name__, traceback.extract_stack(limit=2)[0].filename))
        return func(*args, **(kwargs or {}))


def test_steps_between_log_intervals_never_read_a_device_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, str]] = []
    training_step = LitMobileLLM.training_step

    def marked_training_step(self: LitMobileLLM, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        events.append(("step", str(batch_idx)))
        return training_step(self, batch, batch_idx)

    monkeypatch.setattr(LitMobileLLM, "training_step", marked_training_step)
    cfg = compose_config(
        [*SMALL, tokens_for(12), "train.log_every_n_steps=4", "train.val_every_n_steps=0",
         "trainer.enable_progress_bar=true"]  # the GPU preset's bar: it must not read the loss per batch
    )  # fmt: skip
    with HostReadRecorder(events):
        assert run_job(cfg, tmp_path, name="sync-free")["status"] == "complete"
    reads: dict[int, list[str]] = {}
    step = None
    for name, where in events:
        if name == "step":
            step = int(where)
            reads[step] = []
        # on CUDA AdamW is fused and keeps its step counter on the device; on CPU it reads a host tensor
        elif step is not None and "torch/optim/" not in where:
            reads[step].append(f"{name} in {where}")
    # step k's work (backward, clipping, logging) runs until step k + 1 starts; the last one runs into the
    # end of training. Optimizer steps 4 and 8 (indices 3, 7) are the log steps: loss, norm, divergence.
    logged = {3, 7}
    assert sorted(reads) == list(range(12))
    assert all(reads[k] for k in logged), reads
    assert not any(reads[k] for k in range(11) if k not in logged), reads


def test_diverging_loss_stops_the_job_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    cfg = compose_config(
        [
            *SMALL,
            tokens_for(40),
            "train.lr=1e4",
            "train.warmup_steps=0",
            "train.grad_clip=0",
            "train.val_every_n_steps=0",
            "train.ckpt_every_n_steps=1",
            "train.keep_checkpoints=1",
        ]
    )
    with pytest.raises(RuntimeError, match="non-finite gradient norm"):
        run_job(cfg, tmp_path, name="diverging")
    record = read_result(tmp_path)
    assert record["status"] == "diverged" and "diverged" in record["error"]
    kept = sorted((tmp_path / "checkpoints").glob("step-*.ckpt"))
    assert kept, "the last good checkpoint is kept"
    state = torch.load(kept[-1], map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.isfinite(t).all() for t in state.values())


def test_config_errors_are_recorded_before_anything_is_built(tmp_path: Path) -> None:
    from ablations.records.errors import ConfigError

    with pytest.raises(ConfigError, match=r"n_heads \(4\) must be divisible by n_kv_heads \(3\)"):
        run_job(compose_config([*SMALL, "model.n_kv_heads=3"]), tmp_path, name="bad")
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["status"] == "failed" and "n_kv_heads" in record["error"]
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.jsonl").exists()


def test_wandb_offline_run_is_written_and_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = compose_config(
        [
            *SMALL,
            tokens_for(3),
            "logger=wandb",
            "train.val_every_n_steps=0",
            "+axes.sharing_scheme=none",
        ]
    )
    run_job(cfg, tmp_path, name="wandb-run", sweep="unit", axes={"sharing_scheme": "none"})
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))
    assert wandb.run is None  # finished: a next job in this process starts a new run
