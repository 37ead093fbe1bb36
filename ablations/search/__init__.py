"""Sweeps and searches: what a declarative sweep or an Optuna trial adds to a job.

- `config`: `SolveSpec` (fit a model to a parameter budget), `OptunaTrialConfig` (the trial handle). Torch-free.
- `sweep`: solved widths, stable variant directories, declared skips, the config resolvers. Torch-free.
- `pruning`: the job side of a search trial (report val/loss to the stored trial, prune).

May import: `ablations.records`, `ablations.model`. The sweeper itself is a Hydra plugin
(`hydra_plugins/ablations_optuna_sweeper/`).
"""
