"""Hydra entry point: one job = one architecture variant.

python run.py                         # the `tiny` model (summary of its shape and budget)
python run.py model=mobilellm_125m    # any preset or override, e.g. model.sharing_scheme=reverse
python run.py eval=smoke eval.ckpt=DIR # evaluate a checkpoint (eval stage; see README "Evaluation")
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from ablations.budget import print_summary
    from ablations.hydra_config import model_config_from

    model_cfg = model_config_from(cfg)  # validated before anything is built
    print_summary(model_cfg, f"model={HydraConfig.get().runtime.choices.model}")

    if cfg.eval.tasks:  # eval stage (on `eval.ckpt` until training passes its model in)
        from ablations.evaluate import print_results
        from ablations.evaluation import evaluate_stage

        record = evaluate_stage(cfg, HydraConfig.get().runtime.output_dir)
        if record is None:
            print("eval: skipped (no trained model in this job and eval.ckpt is null)")
        else:
            print_results(record["eval"], "eval")


if __name__ == "__main__":
    main()
