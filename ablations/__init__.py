"""Architecture ablations for sub-billion-parameter LLMs (a MobileLLM reproduction platform).

Packages by concern, each allowed to import only the ones listed before it (a test enforces it):

- `records`: errors, atomic writes, the result record, metrics rows (imports nothing else of ours).
- `model`: axis registries, `ModelConfig`, `MobileLLM`, counts/FLOPs/solver, checkpoints, HF interop.
- `data`: corpus, tokenizer, token shards, loader, Lightning data module.
- `train`: recipe and plan, optimizer, LightningModule, callbacks, loggers, Trainer, the training stage.
- `eval`: lm-eval task suite and adapter, WikiText-2 protocol, the evaluation stage.
- `search`: solved widths, sweep directories and skips, the job side of an Optuna trial.
- `device`: ExecuTorch programs (XNNPACK, torchao quantization) and their on-device measurement.
- `job`: the typed job config (Hydra structured configs) and the job's stages.

Command-line entry points (the top of the graph): `python -m ablations.budget`, `python -m ablations.prepare`,
`python -m ablations.evaluate`, `python -m ablations.fetch_eval_data`, `python -m ablations.device` (its
`__main__`); `run.py` at the repository root (or `mobilellm-run`, installed) runs one job.
Light on import: nothing is imported until a module is.
"""

__version__ = "0.1.0"
