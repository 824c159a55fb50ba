"""``train.py``'s command line: Hydra composes the config, this module runs it and turns every
expected failure into one ``error: ...`` line."""

from __future__ import annotations

import sys

import torch

from .config import ConfigError, describe, register
from .loop import TrainingError, train
from .run_folder import RunFolderError

__all__ = ["run", "setup"]

HELP = """train.py: train an IterGPT on the paper's iterative tasks (Hydra app).

  python train.py recipe=parity                                  one run -> runs/parity
  python train.py recipe=parity optim.lr=3e-3 output_dir=runs/x  any key, dotted
  python train.py output_dir=runs/x resume=latest                continue exactly (or step_<N>)
  python train.py --multirun recipe=polynomial model.n_embd=8,16 seed=0,1,2   a grid, in parallel
  python train.py --multirun experiment=f1_cot                   a named experiment (configs/experiment)
  ... hydra/launcher=submitit_slurm                              the same grid on a Slurm cluster

$APP_CONFIG_GROUPS
Every key (default, [valid range]):
{keys}

Hydra flags:
$FLAGS_HELP"""


def setup() -> None:
    """Register the schema and the help text (before ``hydra.main`` composes anything)."""
    from omegaconf import OmegaConf
    register()
    if not OmegaConf.has_resolver("train_help"):
        OmegaConf.register_new_resolver("train_help", lambda: HELP.replace("{keys}", describe()))


def _sweep_job_dir() -> str | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return hc.runtime.output_dir if hc.mode == RunMode.MULTIRUN else None


def run(cfg) -> dict:
    """Run one composed config; in a sweep, a failed job reports its error and the sweep goes on."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException
    sweep_dir = _sweep_job_dir()
    try:
        config = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        return _fail(ConfigError(str(err).splitlines()[0]), sweep_dir)
    torch.set_num_threads(config.threads or (1 if sweep_dir else torch.get_num_threads()))
    if sweep_dir and not _explicit("progress"):
        config.progress = False  # parallel jobs' bars would interleave; each prints its summary
    try:
        return train(config, sweep_dir)
    except (ConfigError, RunFolderError, TrainingError, ValueError) as err:
        return _fail(err, sweep_dir)


def _explicit(key: str) -> bool:
    """Whether the command line set ``key`` (in a sweep job: its own overrides)."""
    from hydra.core.hydra_config import HydraConfig
    return any(o.split("=", 1)[0].lstrip("+~") == key for o in HydraConfig.get().overrides.task)


def _fail(err: Exception, sweep_dir: str | None) -> dict:
    print(f"error: {err}", file=sys.stderr)
    if sweep_dir is None:
        sys.exit(2)
    return {"error": str(err)}
