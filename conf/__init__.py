"""The Hydra config tree (`config.yaml` and one folder per config group), installed as package data so an
installed project composes from any folder (`ablations.job.config.CONF_DIR`). Holds no code."""
