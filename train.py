"""Train an IterGPT on the paper's iterative tasks with accelerate; configs and sweeps with Hydra.

One run (CPU or one GPU), any number of processes::

    python train.py recipe=parity                       # -> runs/parity
    python train.py recipe=parity optim.lr=3e-3 model.n_embd=128 output_dir=runs/wide
    python train.py recipe=parity output_dir=runs/p resume=latest      # continue exactly
    accelerate launch train.py recipe=parity
    accelerate launch --multi_gpu --num_processes 8 train.py recipe=parity
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 train.py recipe=parity

A grid of runs (one run folder per job, then ``results.csv`` in the sweep folder)::

    python train.py --multirun recipe=polynomial model.n_embd=8,16,32,64 data.max_length=4,8,12,16 seed=0,1,2
    python train.py --multirun experiment=f1_cot          # the paper's experiments: configs/experiment/
    python train.py --multirun ... hydra/launcher=submitit_slurm   # on a Slurm cluster

The schema (every key, its default and range: ``python train.py --help``) is ``training/config.py``;
recipes are ``configs/recipe/*.yaml``; the loop is ``training/loop.py``.
"""

import hydra

from training import cli

cli.setup()


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg) -> dict:
    return cli.run(cfg)


if __name__ == "__main__":
    main()
