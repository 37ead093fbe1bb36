"""The memory plan against what torch really keeps; activation checkpointing; the chunked loss; `auto`."""

from __future__ import annotations

import copy
import dataclasses
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from ablations.job.config import compose_config, job_config
from ablations.job.stages import plan
from ablations.model.activations import activation_bytes
from ablations.model.architecture import MobileLLM
from ablations.records.errors import ConfigError
from ablations.train.config import TrainConfig
from ablations.train.loss import chunked_linear_cross_entropy, lm_loss
from ablations.train.memory_plan import DEVICES, SAFETY_MARGIN, largest_micro_batch, memory_plan
from tests.conftest import AXES, REPO, small_config

SHARING_AXES = {name: axis for name, axis in AXES.items() if "sharing" in name}


def saved_tensor_bytes(model: MobileLLM, batch: torch.Tensor, autocast: bool) -> int:
    """Bytes of the unique storages autograd keeps for backward of the plain loss, parameters excluded
    (a view saved twice, or two views of one storage, count once)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with (
        torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor),
        torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast),
    ):
        lm_loss(model, batch)
    return sum(storages.values())


@pytest.mark.parametrize("autocast", [True, False], ids=["bf16_autocast", "fp32"])
@pytest.mark.parametrize("axis", AXES.values(), ids=AXES.keys())
def test_activation_estimate_matches_the_saved_tensors(axis: dict, autocast: bool) -> None:
    cfg = small_config(**axis)
    micro_batch, seq_len = 2, 48
    batch = torch.randint(0, cfg.vocab_size, (micro_batch, seq_len + 1))
    measured = saved_tensor_bytes(MobileLLM(cfg), batch, autocast)
    estimate = activation_bytes(cfg, micro_batch, seq_len, compute_bytes=2 if autocast else 4).total
    assert abs(estimate - measured) <= 0.1 * measured, (estimate, measured)


def gradients(
    model: MobileLLM, batch: torch.Tensor, chunk_tokens: int | None = None
) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    lm_loss(model, batch, chunk_tokens).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("mode", ["full", "every_k"])
@pytest.mark.parametrize("axis", SHARING_AXES.values(), ids=SHARING_AXES.keys())
def test_activation_checkpointing_keeps_the_gradients(axis: dict, mode: str) -> None:
    cfg = small_config(**axis)
    model = MobileLLM(cfg)
    checkpointed = copy.deepcopy(model)
    checkpointed.set_activation_checkpointing(mode, every=2)
    calls = {"n": 0}
    for block in checkpointed.blocks:
        block.register_forward_pre_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    batch = torch.randint(0, cfg.vocab_size, (2, 33))
    expected = gradients(model, batch)
    got = gradients(checkpointed, batch)
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, rtol=0, atol=1e-6, msg=name)
    # every checkpointed application (a shared block at each use) ran again in backward
    recomputed = sum(checkpointed.checkpointed)
    assert recomputed == (cfg.n_applied_layers if mode == "full" else (cfg.n_applied_layers + 1) // 2)
    assert calls["n"] == cfg.n_applied_layers + recomputed


def test_checkpointing_is_off_when_no_gradient_is_needed() -> None:
    model = MobileLLM(small_config())
    model.set_activation_checkpointing("full")
    tokens = torch.randint(0, 101, (1, 8))
    with torch.no_grad():
        assert torch.equal(model(tokens), MobileLLM.forward(model, tokens))
    assert torch.equal(model.generate(tokens, 3), model.generate(tokens, 3, use_cache=False))


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_chunked_loss_equals_the_plain_loss(tied: bool) -> None:
    cfg = small_config(share_embeddings=tied)
    model = MobileLLM(cfg)
    batch = torch.randint(0, cfg.vocab_size, (3, 21))  # 60 tokens: chunks of 7 leave a remainder
    plain_loss = lm_loss(model, batch)
    plain = gradients(model, batch)
    chunked_loss = lm_loss(model, batch, chunk_tokens=7)
    chunked = gradients(model, batch, chunk_tokens=7)
    torch.testing.assert_close(chunked_loss, plain_loss, rtol=0, atol=1e-5)
    for name, grad in plain.items():
        torch.testing.assert_close(chunked[name], grad, rtol=0, atol=1e-5, msg=name)


def test_chunked_cross_entropy_never_holds_all_logits() -> None:
    hidden = torch.randn(64, 16, requires_grad=True)
    weight = torch.randn(1000, 16, requires_grad=True)
    targets = torch.randint(0, 1000, (64,))
    largest = {"numel": 0}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        largest["numel"] = max(largest["numel"], tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = chunked_linear_cross_entropy(hidden, weight, targets, chunk_tokens=8)
    loss.backward()
    assert largest["numel"] < 64 * 1000  # the plain path keeps the [64 × 1000] fp32 log-softmax
    torch.testing.assert_close(loss, F.cross_entropy(hidden @ weight.T, targets), rtol=0, atol=1e-5)


def test_largest_micro_batch_is_the_last_that_fits() -> None:
    cfg = job_config(compose_config(["model=mobilellm_350m"])).model
    capacity = DEVICES["h100_80gb"]
    args = dict(
        world_size=8, strategy="ddp", precision="bf16-mixed", checkpointing="every_k", loss_chunk_tokens=4096
    )
    best = largest_micro_batch(cfg, 2048, capacity, **args)
    assert memory_plan(cfg, 2048, best, **args).total <= SAFETY_MARGIN * capacity
    assert memory_plan(cfg, 2048, best + 1, **args).total > SAFETY_MARGIN * capacity
    assert largest_micro_batch(cfg, 2048, capacity, **{**args, "checkpointing": "full"}) > best
    with pytest.raises(ConfigError, match="not even one sequence"):
        largest_micro_batch(cfg, 2048, DEVICES["a10g_24gb"] / 100, **args)


def test_fsdp_shards_the_states_and_ddp_does_not() -> None:
    cfg = job_config(compose_config(["model=mobilellm_1.5b"])).model
    ddp = memory_plan(cfg, 2048, 1, world_size=32, strategy="ddp")
    fsdp = memory_plan(cfg, 2048, 1, world_size=32, strategy="fsdp")
    assert ddp.optimizer == 2 * 4 * 1_511_188_800 and fsdp.optimizer == ddp.optimizer // 32
    assert fsdp.ddp_buckets == 0 < ddp.ddp_buckets
    plain = memory_plan(cfg, 2048, 4, loss_chunk_tokens=None)
    assert plain.logits == 4 * 2048 * 32000 * 10  # bf16 logits + fp32 copy + fp32 log-softmax at the peak


def test_auto_micro_batch_is_resolved_by_the_plan_stage() -> None:
    overrides = [
        "model=mobilellm_125m",
        "train=paper_exploration",
        "trainer=gpu",
        "train.micro_batch_size=auto",
    ]
    job = job_config(compose_config([*overrides, "train.device=a100_40gb"]))
    job_plan = plan(job)
    fits = largest_micro_batch(
        job.model, 2048, DEVICES["a100_40gb"], 1, "auto", "bf16-mixed", "none", 2, 4096
    )
    # the paper's global batch of 1024 is kept: the largest micro-batch that fits and divides it
    expected = max(d for d in range(1, fits + 1) if 1024 % d == 0)
    assert job_plan.micro_batch_size == expected > 1 and fits >= expected
    assert job_plan.train.global_batch_sequences == 1024 == expected * job_plan.train.grad_accum_steps
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"train\.device"):
            plan(job_config(compose_config(overrides)))


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("micro_batch_size", "big", "positive integer (got 'big'), or 'auto'"),
        ("micro_batch_size", 0, "positive integer (got 0), or 'auto'"),
        ("device", "tpu_v9", "train.device='tpu_v9' is not one of"),
        ("activation_checkpointing", "some", "activation_checkpointing='some'"),
        ("loss_chunk_tokens", 0, "loss_chunk_tokens must be >= 1"),
    ],
)
def test_bad_memory_settings_are_refused_by_name(field: str, value: object, rule: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(rule)):
        dataclasses.replace(TrainConfig(), **{field: value})


def test_budget_cli_prints_the_per_gpu_memory() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ablations.budget", "model=mobilellm_125m", "train=paper_exploration",
         "trainer=ddp", "device=h100_80gb", "world_size=32", "train.micro_batch_size=auto"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "per-GPU memory on h100_80gb" in result.stdout and "32 GPUs, strategy ddp" in result.stdout
    for row in ("AdamW states", "activations without checkpointing", "logits (peak)", "largest micro-batch"):
        assert row in result.stdout


def test_the_memory_plan_and_its_cli_stay_torch_free() -> None:
    check = "import sys, ablations.budget, ablations.train.memory_plan; assert 'torch' not in sys.modules"
    result = subprocess.run(
        [sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
