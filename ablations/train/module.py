"""The LightningModule: next-token loss on the inner MobileLLM, AdamW + schedule, FSDP2 sharding in
`configure_model`, gradient clipping whose norm is the logged one, divergence detection without a per-step
host sync."""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from ablations.model.architecture import MobileLLM
from ablations.model.config import ModelConfig
from ablations.records.errors import DivergenceError
from ablations.records.secrets import mask_secrets
from ablations.train.config import TrainConfig, TrainerConfig
from ablations.train.loss import lm_loss
from ablations.train.optim import build_optimizer, clip_grad_norm
from ablations.train.plan import TrainPlan
from ablations.train.sharding import fsdp_mesh, shard_model


class LitMobileLLM(L.LightningModule):
    def __init__(
        self,
        model_config: dict[str, Any],
        train_config: dict[str, Any],
        plan: dict[str, Any],
        trainer_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # plain dicts, so checkpoints reload without this package's classes: hyper_parameters["model_config"];
        # secrets masked, as the checkpoint and every logger's hparams get them (training reads the real ones)
        self.save_hyperparameters(
            mask_secrets(
                {
                    "model_config": model_config,
                    "train_config": train_config,
                    "plan": plan,
                    "trainer_config": trainer_config,
                }
            )
        )
        self.train_cfg = TrainConfig(**train_config)
        self.trainer_cfg = TrainerConfig(**(trainer_config or {}))
        self.plan = TrainPlan(**plan)
        # built (and initialised) here for every strategy, so a sharded run starts from the same weights
        self.model = MobileLLM(ModelConfig.from_dict(model_config))
        self.model.set_activation_checkpointing(  # the plan's: `auto` resolved by the memory plan
            self.plan.activation_checkpointing, self.train_cfg.activation_checkpointing_every
        )
        if self.train_cfg.compile:
            self.model.compile()  # in place: state_dict keys stay model.<name>; self.log stays eager
        self.tokens_seen = 0
        self.sharded = False
        """Whether `configure_model` applied FSDP2 to the inner model (its parameters are then DTensor shards)."""
        self.grad_norm: Tensor | None = None
        """The last step's gradient norm, as returned by the clipping call (a device tensor: no sync)."""
        self._nonfinite: Tensor | None = None
        """True on the device once any step's gradient norm was NaN/Inf; read at log and checkpoint time."""

    def configure_model(self) -> None:
        """Under ModelParallelStrategy (trainer=fsdp): FSDP2 `fully_shard` per block and the root."""
        if self._device_mesh is None or self.sharded:
            return
        mesh = fsdp_mesh(self.device_mesh["data_parallel"], self.trainer_cfg.fsdp_replicate_groups)
        shard_model(self.model, mesh, self.trainer_cfg)
        self.sharded = True  # Lightning calls configure_model again for each later stage: shard once

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss = lm_loss(self.model, batch, self.train_cfg.loss_chunk_tokens)
        self.tokens_seen += batch[:, 1:].numel() * self.trainer.world_size
        # not prog_bar: the bar would read it (.item(), a host sync) every batch; it shows the logged value
        self.log("train/loss", loss, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss = lm_loss(self.model, batch, self.train_cfg.loss_chunk_tokens)
        self.log("val/loss", loss, prog_bar=True, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        # gradients are already averaged across ranks here, so every rank computes the same global norm
        self.grad_norm = clip_grad_norm(self.model.parameters(), self.train_cfg.grad_clip)
        nonfinite = ~torch.isfinite(self.grad_norm)
        self._nonfinite = nonfinite if self._nonfinite is None else self._nonfinite | nonfinite
        self.log("train/grad_norm", self.grad_norm, on_step=True, on_epoch=False)
        self.log("train/lr", optimizer.param_groups[0]["lr"], on_step=True, on_epoch=False)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # the one host sync of divergence detection, at log intervals (checkpoints check it too)
        step = self.trainer.global_step
        if step % self.train_cfg.log_every_n_steps == 0 or step >= self.plan.steps:
            self.raise_if_diverged()

    def raise_if_diverged(self) -> None:
        """DivergenceError when any step since the start had a non-finite gradient norm."""
        if self._nonfinite is not None and bool(self._nonfinite):
            raise DivergenceError(
                f"non-finite gradient norm ({float(self.grad_norm)}) by step {self.global_step}: the loss "
                "diverged; the last checkpoint before this step is kept"
            )

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer, scheduler = build_optimizer(self.model, self.train_cfg, self.plan)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.raise_if_diverged()  # never write a checkpoint of diverged weights
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
