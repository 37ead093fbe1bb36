"""The LightningModule: next-token loss on the inner MobileLLM, AdamW + schedule, divergence detection."""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch import Tensor

from ablations.model.architecture import MobileLLM
from ablations.model.config import ModelConfig
from ablations.records.errors import DivergenceError
from ablations.train.config import TrainConfig
from ablations.train.loss import lm_loss
from ablations.train.optim import build_optimizer
from ablations.train.plan import TrainPlan


class LitMobileLLM(L.LightningModule):
    def __init__(
        self, model_config: dict[str, Any], train_config: dict[str, Any], plan: dict[str, Any]
    ) -> None:
        super().__init__()
        # plain dicts, so checkpoints reload without this package's classes: hyper_parameters["model_config"]
        self.save_hyperparameters()
        self.train_cfg = TrainConfig(**train_config)
        self.plan = TrainPlan(**plan)
        self.model = MobileLLM(ModelConfig.from_dict(model_config))
        self.model.set_activation_checkpointing(
            self.train_cfg.activation_checkpointing, self.train_cfg.activation_checkpointing_every
        )
        if self.train_cfg.compile:
            self.model.compile()  # in place: state_dict keys stay model.<name>; self.log stays eager
        self.tokens_seen = 0

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss = lm_loss(self.model, batch, self.train_cfg.loss_chunk_tokens)
        self.tokens_seen += batch[:, 1:].numel() * self.trainer.world_size
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss = lm_loss(self.model, batch, self.train_cfg.loss_chunk_tokens)
        self.log("val/loss", loss, prog_bar=True, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # gradients are already averaged across ranks here, so every rank takes the same decision
        norm = self._grad_norm()
        if not torch.isfinite(norm):
            raise DivergenceError(
                f"non-finite gradient norm ({norm.item()}) at step {self.global_step}: the loss diverged; "
                "the last checkpoint before this step is kept"
            )
        self.log("train/grad_norm", norm, on_step=True, on_epoch=False)
        self.log("train/lr", optimizer.param_groups[0]["lr"], on_step=True, on_epoch=False)

    def _grad_norm(self) -> Tensor:
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        squared = torch.stack([g.detach().float().pow(2).sum() for g in grads]).sum()
        if isinstance(self.trainer.strategy, FSDPStrategy):  # sharded grads: sum the shards
            squared = self.trainer.strategy.reduce(squared, reduce_op="sum")
        return squared.sqrt()

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        if self.train_cfg.grad_clip > 0:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.train_cfg.grad_clip, gradient_clip_algorithm="norm"
            )

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer, scheduler = build_optimizer(self.model, self.train_cfg, self.plan)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tokens_seen"] = self.tokens_seen
        checkpoint["rng"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            # as a tensor: Lightning loads checkpoints with weights_only=True, which refuses numpy arrays
            "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
            "numpy_pos": np.random.get_state()[2],
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.tokens_seen = checkpoint.get("tokens_seen", 0)
        rng = checkpoint.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            if rng["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
            np.random.set_state(("MT19937", rng["numpy"].numpy().astype(np.uint32), rng["numpy_pos"], 0, 0.0))
            random.setstate(rng["python"])
