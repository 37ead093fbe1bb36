"""One job: the typed job config and the stages that run it.

- `config`: `JobConfig`, the whole job as typed dataclasses registered in Hydra's ConfigStore (so an
  unknown or mistyped key is refused at compose time); `compose_config` and `job_config` (the one
  conversion from a composed config to typed objects). Torch-free.
- `stages`: validate → plan → data → model → train → evaluate → record, one function each; `run_job`.

The top layer: it may import every other package; nothing imports it but the command-line entry points
(`run.py`, `ablations.budget`, `ablations.evaluate`) and the Optuna sweeper plugin.
"""
