"""Training one variant with Lightning: recipe, plan, optimizer, LightningModule, callbacks, Trainer.

- `config`: `TrainConfig` (recipe), `TrainerConfig` (devices, strategy), `LoggerConfig`. Torch-free.
- `plan`: token budget → steps, global batch, peak LR; the LR schedule. Torch-free.
- `perf`: the MFU formula and the device peak table. Torch-free.
- `memory_plan`: the per-GPU memory plan, the device memory table, the largest micro-batch that fits. Torch-free.
- `micro_batch`: the memory layout gate: micro-batch and checkpointing (`auto` resolved) checked against the
  training device.
- `loss`: the next-token loss, plain or chunked (the [tokens × vocab] fp32 logits never whole).
- `optim`: AdamW decay groups and the warmup + cosine schedule.
- `module`: `LitMobileLLM` (next-token loss, divergence check, gradient clipping, checkpointed RNG).
- `signals`: the process's pre-emption flag (SIGTERM/SIGUSR2 noted from job start). Torch-free.
- `callbacks`, `loggers`: throughput/MFU, progress, last/SIGTERM checkpoint; metrics.jsonl, CSV, W&B.
- `trainer`: the Trainer of a job (strategy, cluster environment, checkpoints).
- `fit`: the training stage, returning a `TrainResult`.

May import: `ablations.records`, `ablations.model`, `ablations.data`.
"""
