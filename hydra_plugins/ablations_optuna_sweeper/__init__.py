"""A Hydra sweeper on Optuna 5's ask/tell API: `hydra/sweeper=ablations_optuna` (see `optuna_sweeper.py`)."""
