"""``train.py``'s command line: Hydra composes the config, this module runs it and turns every
expected failure into one ``error: ...`` line."""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

import torch

from datasets_builders.files import write_text_atomic

from .config import ConfigError, describe, register
from .loop import TrainingError, train
from .results import FAILED_JOBS
from .run_folder import RunFolderError

__all__ = ["run", "run_config", "set_threads", "setup"]

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
    if sweep_dir:
        _failure_record().unlink(missing_ok=True)  # a re-run job's earlier failure
    try:
        config = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        return _fail(ConfigError(str(err).splitlines()[0]), sweep_dir, cfg)
    if sweep_dir and not _explicit("progress"):
        config.progress = False  # parallel jobs' bars would interleave; each prints its summary
    return run_config(config, sweep_dir, cfg)


def run_config(config, sweep_dir: str | None = None, cfg=None) -> dict:
    """Train one :class:`~training.config.TrainConfig` (``train.py`` and ``python -m training.demo``):
    its torch threads set, every expected failure one ``error:`` line (exit 2 for a single run)."""
    set_threads(config.threads, sweep_dir is not None)
    try:
        return train(config, sweep_dir)
    except (ConfigError, RunFolderError, TrainingError, ValueError) as err:
        return _fail(err, sweep_dir, cfg)
    except Exception as err:  # noqa: BLE001  in a sweep, an unexpected error fails this job, not the others
        if sweep_dir is None:
            raise
        traceback.print_exc()
        return _fail(RuntimeError(f"{type(err).__name__}: {err}"), sweep_dir, cfg)


def set_threads(threads: int | None, in_sweep: bool = False) -> int:
    """torch's intra-op threads for a run: ``threads`` when given, 1 in a sweep (its jobs run side by
    side), else the cores no other process keeps busy as the run starts (at least 1). A tiny model's
    OpenMP threads wait on each other when another process takes a core: 10-50x slower steps."""
    if threads is None:
        threads = 1 if in_sweep else idle_cores()
        if threads < CORES and not in_sweep:
            print(f"threads: {threads} of {CORES} (other processes keep the rest busy; threads=N chooses)")
    torch.set_num_threads(threads)
    return threads


CORES = torch.get_num_threads()  # torch's default (this machine's cores), before any run changes it


def idle_cores(interval: float = 0.1) -> int:
    """How many of torch's default threads (:data:`CORES`) other processes leave a core for, from the
    system's CPU use over ``interval`` seconds while this process sleeps (at least 1)."""
    cores = CORES
    try:
        import psutil
        busy = psutil.cpu_percent(interval=interval) / 100 * (os.cpu_count() or cores)
    except Exception:  # noqa: BLE001  no psutil, or a platform it cannot read: all cores
        return cores
    return max(1, min(cores, round((os.cpu_count() or cores) - busy)))


def _explicit(key: str) -> bool:
    """Whether the command line set ``key`` (in a sweep job: its own overrides)."""
    from hydra.core.hydra_config import HydraConfig
    return any(o.split("=", 1)[0].lstrip("+~") == key for o in HydraConfig.get().overrides.task)


def _fail(err: Exception, sweep_dir: str | None, cfg=None) -> dict:
    """One ``error:`` line; a single run exits 2, a sweep job records its error where
    ``training.results`` finds it (a ``failed`` row) and the sweep goes on."""
    print(f"error: {err}", file=sys.stderr)
    if sweep_dir is None:
        sys.exit(2)
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf
    record = _failure_record()
    record.parent.mkdir(parents=True, exist_ok=True)
    try:
        config = OmegaConf.to_container(cfg, resolve=True) if cfg is not None else None
    except Exception:  # noqa: BLE001  a config that does not even resolve: the error says why
        config = None
    write_text_atomic(record, json.dumps({"run": HydraConfig.get().sweep.subdir, "error": str(err),
                                          "config": config}) + "\n")
    return {"error": str(err)}


def _failure_record() -> Path:
    """Where a failed sweep job records its error: ``<sweep dir>/failed_jobs/<job>.json`` (beside the
    run folders, never inside one that may hold another run)."""
    from hydra.core.hydra_config import HydraConfig
    hc = HydraConfig.get()
    return Path(hc.sweep.dir) / FAILED_JOBS / f"{str(hc.sweep.subdir).replace('/', '__')}.json"
