"""The training recipe's arithmetic: token budget → steps, LR scaling and schedule, decay groups, MFU."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ablations.job.config import compose_config, job_config
from ablations.job.stages import plan, run_job
from ablations.model.architecture import MobileLLM
from ablations.records.errors import ConfigError
from ablations.train.config import TrainConfig
from ablations.train.optim import build_optimizer, param_groups
from ablations.train.perf import mfu, peak_tflops
from ablations.train.plan import lr_multiplier, plan_training
from tests.conftest import small_config


def test_paper_exploration_is_120k_steps_at_the_papers_batch() -> None:
    cfg = job_config(compose_config(["train=paper_exploration", "model=mobilellm_125m"])).train
    plan = plan_training(cfg, world_size=32, model_max_seq_len=2048)
    assert plan.global_batch_tokens == 32 * 32 * 2048 == 2_097_152
    assert plan.steps == 120_000 and plan.peak_lr == pytest.approx(2e-3)
    final = plan_training(job_config(compose_config(["train=paper_final"])).train, 32, 2048)
    assert final.steps == 480_000 and final.tokens == 1_006_632_960_000


def test_lr_scales_linearly_with_global_batch() -> None:
    # without a fixed global batch, the batch (and so the LR and the step count) follows the world size
    cfg = job_config(compose_config(["train=paper_exploration", "train.global_batch_size=null"])).train
    one_node = plan_training(cfg, world_size=8, model_max_seq_len=2048)  # MobileLLM's pretrain.sh: 5e-4
    assert one_node.peak_lr == pytest.approx(5e-4) and one_node.steps == 480_000
    accumulated = plan_training(TrainConfig(grad_accum_steps=4), world_size=8, model_max_seq_len=2048)
    assert accumulated.peak_lr == pytest.approx(2e-3) and accumulated.global_batch_sequences == 1024


@pytest.mark.parametrize(
    ("world_size", "micro", "accumulation"), [(1, 32, 32), (2, 32, 16), (32, 32, 1), (8, 8, 16)]
)
def test_paper_global_batch_is_fixed_whatever_the_gpu_count(
    world_size: int, micro: int, accumulation: int
) -> None:
    cfg = job_config(compose_config(["train=paper_exploration", f"train.micro_batch_size={micro}"])).train
    plan = plan_training(cfg, world_size, model_max_seq_len=2048)
    assert (plan.steps, plan.peak_lr, plan.global_batch_sequences) == (120_000, pytest.approx(2e-3), 1024)
    assert plan.grad_accum_steps == accumulation and plan.world_size == world_size


def test_a_global_batch_the_gpus_cannot_divide_is_refused() -> None:
    cfg = TrainConfig(global_batch_size=1024, micro_batch_size=32)
    with pytest.raises(ConfigError, match=r"global_batch_size=1024 is not a multiple of .* = 96"):
        plan_training(cfg, world_size=3, model_max_seq_len=2048)


def test_hsdp_replicas_that_do_not_divide_the_ranks_are_refused_by_the_plan() -> None:
    # before any data is prepared, not when FSDP2 builds its mesh after it
    job = job_config(compose_config(["trainer=fsdp_cpu", "trainer.fsdp_replicate_groups=3"]))
    with pytest.raises(ConfigError, match=r"trainer.fsdp_replicate_groups=3 does not divide the 2 ranks"):
        plan(job)
    # the paper's cluster (4 nodes × 8 GPUs) sharded within each node
    paper = ["scale=paper", "trainer.strategy=fsdp", "trainer.fsdp_replicate_groups=4"]
    assert plan(job_config(compose_config(paper))).world_size == 32


def test_scale_paper_plans_the_papers_run_on_its_cluster() -> None:
    job = job_config(compose_config(["scale=paper", "model=mobilellm_125m"]))
    job_plan = plan(job)
    assert (job.trainer.num_nodes, job.trainer.devices) == (4, 8) and job_plan.world_size == 32
    assert job_plan.train.steps == 120_000 and job_plan.train.peak_lr == pytest.approx(2e-3)
    assert job_plan.train.grad_accum_steps == 1
    one_gpu = plan(job_config(compose_config(["scale=paper", "model=mobilellm_125m", "trainer=gpu"])))
    assert one_gpu.train.steps == 120_000 and one_gpu.train.grad_accum_steps == 32


def test_token_budget_rounds_steps_up_and_reports_the_real_token_count() -> None:
    plan = plan_training(TrainConfig(tokens=10_000, micro_batch_size=4, lr=1e-3), 2, model_max_seq_len=256)
    assert plan.global_batch_tokens == 2048 and plan.steps == math.ceil(10_000 / 2048) == 5
    assert plan.tokens == 10_240 and plan.peak_lr == 1e-3


def test_schedule_warmup_peak_and_end() -> None:
    schedule = dict(warmup_steps=1000, total_steps=120_000, min_lr_ratio=0.1)
    assert lr_multiplier(0, **schedule) == 0.0
    assert lr_multiplier(500, **schedule) == 0.5
    assert lr_multiplier(1000, **schedule) == 1.0
    midpoint = 1000 + (120_000 - 1000) // 2
    assert lr_multiplier(midpoint, **schedule) == pytest.approx(0.55, abs=1e-4)
    assert lr_multiplier(120_000, **schedule) == pytest.approx(0.1)
    assert lr_multiplier(200_000, **schedule) == pytest.approx(0.1)  # stays at the floor, as MobileLLM's code


def test_optimizer_follows_the_recipe() -> None:
    model = MobileLLM(small_config(share_embeddings=False))
    cfg = TrainConfig(tokens=1000, micro_batch_size=1, lr=2e-3, warmup_steps=10)
    optimizer, scheduler = build_optimizer(model, cfg, plan_training(cfg, 1, 64))
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert optimizer.defaults["betas"] == (0.9, 0.95) and optimizer.defaults["eps"] == 1e-8
    decayed = {id(p) for p in decay["params"]}
    for name, param in model.named_parameters():
        assert (id(param) in decayed) == (not name.endswith("norm.weight")), name  # embeddings decayed too
    assert scheduler.get_last_lr()[0] == 0.0  # warmup starts from zero
    assert sum(len(g["params"]) for g in param_groups(model, 0.1)) == len(list(model.parameters()))


def test_invalid_train_config_is_rejected_by_rule() -> None:
    with pytest.raises(ConfigError, match=r"train.micro_batch_size must be a positive integer \(got 0\)"):
        TrainConfig(micro_batch_size=0)
    with pytest.raises(ConfigError, match=r"train.seq_len \(4096\) exceeds model.max_seq_len \(2048\)"):
        plan_training(TrainConfig(seq_len=4096), 1, 2048)
    with pytest.raises(ConfigError, match=r"train\.learning_rate: unknown key"):
        job_config(compose_config(["+train.learning_rate=1e-3"]))


def test_mfu_by_hand_and_device_peaks() -> None:
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops("NVIDIA H200") == 989.0
    assert peak_tflops("cpu") is None
    # 125M at seq 2048: 1,172,275,200 FLOPs/token; 400k tokens/s on one H100 → 47.4% MFU
    assert mfu(400_000, 1_172_275_200, 1, 989.0) == pytest.approx(400_000 * 1_172_275_200 / 989e12)
    assert mfu(1.0, 1, 1, None) is None


def test_plan_only_prints_the_plan_and_builds_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = compose_config(["scale=paper", "model=mobilellm_125m", "trainer=gpu", "plan_only=true"])
    record = run_job(cfg, tmp_path / "run", name="plan")
    printed = capsys.readouterr().out
    assert record["status"] == "planned" and not (tmp_path / "run").exists()  # no record, data or checkpoint
    for row in ("optimizer steps", "tokens per step", "gradient accumulation", "micro-batch", "world size"):
        assert row in printed
    assert "120,000" in printed and "2,097,152" in printed and "estimated hours" in printed
    assert record["train"]["plan"]["grad_accum_steps"] == 32
