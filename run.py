"""One job = validate → plan → data → model → train → evaluate → record one variant (`ablations.job.entry`).

python run.py                                    # tiny model, embedded corpus, CPU, a few minutes
python run.py model=mobilellm_125m trainer=gpu train=paper_exploration
python run.py -m model.sharing_scheme=immediate,repeat_all_over,reverse model.sharing_repeats=2
python run.py -m +sweep=layer_sharing scale=smoke          # a paper ablation (sweeps/sweep/), at CPU size
python run.py -m +search=budget scale=smoke                 # Optuna architecture search (sweeps/search/)

Installed (`pip install .`), the same command is `mobilellm-run`, from any folder.
"""

from ablations.job.entry import cli

if __name__ == "__main__":
    cli()
