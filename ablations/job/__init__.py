"""One job: the typed job config and the stages that run it.

- `config`: `JobConfig`, the whole job as typed dataclasses registered in Hydra's ConfigStore (so an
  unknown or mistyped key is refused at compose time); `compose_config` and `job_config` (the one
  conversion from a composed config to typed objects). Torch-free.
- `validate`: every rule that refuses a job before anything is built (config, launch, callbacks, devices,
  evaluation data, the checkpoint to resume and what may change).
- `stages`: plan → data → model → train → evaluate → record, one function each, after `validate`; `run_job`.
- `entry`: the Hydra entry point (`run.py`, `mobilellm-run`): the variant's name, declared skips, a sweep's
  complete variants, exit codes.

The top layer: it may import every other package; nothing imports it but the command-line entry points
(`run.py`, `ablations.budget`, `ablations.evaluate`) and the Optuna sweeper plugin.
"""
