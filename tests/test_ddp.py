"""A real 2-process DDP run on gloo (spawned ranks), through the job like any other run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ablations.job.config import compose_config
from ablations.job.stages import run_job
from ablations.job.validate import validate
from ablations.model.architecture import MobileLLM
from ablations.model.config import ModelConfig
from ablations.records.errors import ConfigError
from ablations.records.result import read_result
from ablations.train.loss import lm_loss


def test_two_ranks_see_disjoint_data_and_average_their_gradients(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    cfg = compose_config(
        [
            "trainer=ddp_cpu",
            "train.micro_batch_size=4",
            "train.seq_len=32",
            f"train.tokens={3 * 2 * 4 * 32}",  # 3 steps of 2 ranks × 4 windows × 32 tokens
            "train.warmup_steps=0",
            "train.val_every_n_steps=0",
            "train.val_batches=2",
            "train.log_every_n_steps=1",
            "data.progress=false",
            "logger=none",
            "eval=none",
            f"+callbacks.probe={{_target_: tests.ddp_probe.RankProbe, out_dir: '{probe}'}}",
        ]
    )
    record = run_job(cfg, tmp_path / "run", name="ddp")
    assert record["status"] == "complete" and read_result(tmp_path / "run")["status"] == "complete"
    assert record["tokens_seen"] == 3 * 2 * 4 * 32 and record["train"]["plan"]["global_batch_sequences"] == 8
    # the spawning process never set its datamodule up: the record still has the manifest and the validation
    assert record["data"]["splits"]["val"]["tokens"] == record["train"]["val_tokens"] + 1
    assert record["train"]["val_bpb"] > 0 and (tmp_path / "run" / "validation.json").is_file()

    batches = {
        rank: [torch.load(probe / f"rank{rank}_batch{i}.pt", weights_only=True) for i in range(3)]
        for rank in (0, 1)
    }
    windows = {rank: {tuple(w.tolist()) for b in batches[rank] for w in b} for rank in (0, 1)}
    assert len(windows[0]) == len(windows[1]) == 12 and not windows[0] & windows[1]  # disjoint data

    # the first step's gradient on both ranks = the mean of the two ranks' own-batch gradients
    model = MobileLLM(ModelConfig.from_dict(record["config"]["model"]))
    model.load_state_dict(torch.load(probe / "initial.pt", weights_only=True))
    local = []
    for rank in (0, 1):
        model.zero_grad()
        lm_loss(model, batches[rank][0]).backward()
        local.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for rank in (0, 1):
        averaged = torch.load(probe / f"rank{rank}_grads.pt", weights_only=True)
        for name, grad in averaged.items():
            torch.testing.assert_close(grad, (local[0][name] + local[1][name]) / 2, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "overrides", [["trainer.devices=2"], ["trainer.num_nodes=2"], ["trainer=ddp", "trainer.accelerator=cpu"]]
)
def test_a_local_multirun_that_lightning_would_re_execute_is_refused(
    overrides: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`auto` on several devices or nodes is Lightning's DDP, which re-executes the command per rank."""
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    cfg = compose_config(["trainer=cpu", *overrides])
    with pytest.raises(ConfigError, match=r"re-executes the command line.*ddp_spawn.*hydra/launcher=slurm"):
        validate(cfg, tmp_path, multirun=True)
    validate(cfg, tmp_path, multirun=False)  # a single run may re-execute itself
    validate(compose_config(["trainer=ddp_cpu"]), tmp_path, multirun=True)  # spawned ranks: allowed
