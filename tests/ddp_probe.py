"""A callback that records what each DDP rank trains on, for tests/test_ddp.py (importable by spawned ranks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch


class RankProbe(L.Callback):
    """Saves every batch a rank trains on, the initial weights, and the first step's averaged gradients."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if trainer.global_rank == 0:
            torch.save(pl_module.model.state_dict(), self.out_dir / "initial.pt")

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        torch.save(batch.cpu(), self.out_dir / f"rank{trainer.global_rank}_batch{batch_idx}.pt")

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        if trainer.global_step == 0:
            grads = {n: p.grad.detach().cpu() for n, p in pl_module.model.named_parameters()}
            torch.save(grads, self.out_dir / f"rank{trainer.global_rank}_grads.pt")
