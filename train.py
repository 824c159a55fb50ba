"""Train an IterGPT on the paper's iterative tasks with accelerate.

One process (CPU or one GPU)::

    python train.py --recipe parity
    accelerate launch train.py --recipe parity

Data-parallel on several GPUs, or two real processes on a CPU (gloo)::

    accelerate launch --multi_gpu --num_processes 8 train.py --recipe parity
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 train.py --recipe parity

Hyper-parameters live in a typed config (the dataclasses below), filled from a recipe file
(``configs/<recipe>.yaml``) and overridden on the command line with ``section.key=value``::

    python train.py --recipe parity optim.lr=3e-3 model.n_embd=128 --output_dir runs/wide

Infrastructure (output folder, resuming, precision, ...) are ``--flags``. ``python train.py --help``
lists every flag and every config key with its default.

A run folder holds ``train_config.yaml`` (the resolved config), ``metrics.jsonl``, TensorBoard logs,
``checkpoints/step_<N>/`` (``accelerator.save_state``, for ``--resume_from_checkpoint``),
``snapshots/step_<N>/`` (``save_pretrained`` folders, for learning-dynamics analysis) and
``final/`` (the trained model with tokenizer, generation config and code files).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import time
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import yaml

from datasets_builders import tasks
from datasets_builders.iteration_tasks import (IterationTaskConfig, sample_fresh_inputs, sequence_keys,
                                               split_inputs)
from modeling import IterGPTConfig, IterGPTForCausalLM
from modeling.analysis import HEAD_THRESHOLD, evaluate_lengths, find_iteration_heads

RECIPES_DIR = Path(__file__).resolve().parent / "configs"


# ---------------------------------------------------------------------------------------------
# The typed config
# ---------------------------------------------------------------------------------------------
@dataclass
class ModelArgs:
    """Architecture (see ``modeling.IterGPTConfig``); ignored for keys taken from ``--init_from``."""

    n_layer: int = 2
    n_head: int = 1
    n_embd: int = 64
    n_inner: int | None = None  # None: 4 * n_embd
    n_positions: int = 64
    activation: str = "gelu"
    norm: str = "layernorm"
    bias: bool = False
    position_embedding: str = "learned"  # or "sinusoidal" (fixed) or "frozen" (random, fixed)
    position_init: str = "normal"  # learned table: "normal" or "sinusoidal" (then trained)
    position_init_scale: float = 1.0
    residual: str = "standard"  # or "reference" (the paper code's block)
    embd_pdrop: float = 0.0
    attn_pdrop: float = 0.0
    resid_pdrop: float = 0.0
    initializer_range: float = 0.02


@dataclass
class DataArgs:
    """Which task and how training sequences are drawn."""

    task: str = "parity"  # copy | parity | polynomial | mix
    cot: bool = True
    min_length: int = 1
    max_length: int = 16
    modulus: int = 11  # polynomial only
    polynomial: list = field(default_factory=lambda: [list(t) for t in tasks.DEFAULT_POLYNOMIAL])
    mix_ratio: float = 0.5  # mix only: fraction of copy rows
    mix_with: str = "parity"  # mix only: the task mixed with copy (the paper's mix is copy + parity)
    # "fresh": new random sequences every step (never a test sequence); "fixed": the builder's
    # train split, shuffled every epoch (the paper's setting).
    source: str = "fresh"
    examples_per_length: int = 2048  # builder split size per length (before the train/test split)
    # 0.25, not the paper's 0.5: at length 2 a half split leaves train = {00, 11}, whose s_2 is
    # always 0, and the model learns that shortcut instead of parity (seen: test accuracy 0 at L=2).
    test_fraction: float = 0.25
    # Pack several sequences into each row (positions restart, attention stays within a sequence):
    # the same loss as padding each batch to its longest row, with ~38% fewer tokens to compute.
    packing: bool = True
    dataset: str | None = None  # a dataset folder / Hub repo in Hub layout instead of the builder
    seed: int = 0  # seed of the builder's splits (the test set)


@dataclass
class OptimArgs:
    lr: float = 3e-3
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    warmup_steps: int = 200
    schedule: str = "cosine"  # constant | cosine | linear (after warm-up)
    min_lr_ratio: float = 0.1  # floor of cosine / linear decay, as a fraction of lr
    grad_clip: float = 1.0
    batch_size: int = 64  # global: split over processes
    max_steps: int = 6000


@dataclass
class TrainConfig:
    model: ModelArgs = field(default_factory=ModelArgs)
    data: DataArgs = field(default_factory=DataArgs)
    optim: OptimArgs = field(default_factory=OptimArgs)
    seed: int = 0  # model init, dropout and the order of training data
    eval_every: int = 250
    eval_per_length: int = 256  # sequences per length for each evaluation (train and test)
    eval_heads: bool = True  # score every (layer, head) at each evaluation
    save_every: int = 1000  # accelerator.save_state every N steps (0: never)
    keep_checkpoints: int = 2
    snapshot_steps: list = field(default_factory=list)  # save_pretrained at these steps
    target_accuracy: float | None = None  # stop once every test length reaches it
    max_minutes: float | None = None  # stop after this much training time
    trainable: list = field(default_factory=list)  # glob patterns of trainable parameters ([]: all)


SECTIONS = {"model": ModelArgs, "data": DataArgs, "optim": OptimArgs}


def _check_keys(cls, values: dict, where: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(repr(k) for k in unknown)} in {where}; "
                         f"known keys: {', '.join(sorted(known))}")


def _coerce(cls, values: dict, prefix: str) -> dict:
    """Check each value against its field's type (YAML reads ``3e-3`` as a string: make it a float)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in values.items():
        want = hints[key]
        optional = type(None) in typing.get_args(want)
        base = next((t for t in typing.get_args(want) if t is not type(None)), want)
        base = typing.get_origin(base) or base
        if value is None and optional:
            out[key] = None
            continue
        try:
            if base is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
                value = float(value)
            elif base is int and isinstance(value, float) and value.is_integer():
                value = int(value)
            ok = isinstance(value, base) and not (base in (int, float) and isinstance(value, bool))
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{prefix}{key}={value!r} is invalid: it must be {getattr(base, '__name__', base)}"
                             + (" or null" if optional else ""))
        out[key] = value
    return out


def config_from_dict(values: dict, where: str = "config") -> TrainConfig:
    """A ``TrainConfig`` from nested dicts; unknown keys and wrongly typed values are an error."""
    values = dict(values or {})
    _check_keys(TrainConfig, values, where)
    kwargs = {}
    for name, value in values.items():
        if name in SECTIONS:
            if not isinstance(value, dict):
                raise ValueError(f"{where}: {name!r} must be a mapping, got {value!r}")
            _check_keys(SECTIONS[name], value, f"{where} [{name}]")
            kwargs[name] = SECTIONS[name](**_coerce(SECTIONS[name], value, f"{name}."))
        else:
            kwargs.update(_coerce(TrainConfig, {name: value}, ""))
    return TrainConfig(**kwargs)


def available_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def load_recipe(name_or_path: str) -> dict:
    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ValueError(f"recipe {name_or_path!r} not found; available recipes: "
                         f"{', '.join(available_recipes())} (or a path to a .yaml file)")
    return yaml.safe_load(path.read_text()) or {}


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to nested dicts."""
    values = json.loads(json.dumps(values))  # deep copy
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value (e.g. optim.lr=3e-3)")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw)
        parts = key.split(".")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] not in SECTIONS):
            raise ValueError(f"override key {key!r} is invalid: use <key> or <section>.<key> with "
                             f"section one of {', '.join(SECTIONS)}")
        target = values
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return values


def validate(cfg: TrainConfig) -> None:
    d, o = cfg.data, cfg.optim
    if d.task not in ("copy", "parity", "polynomial", "mix"):
        raise ValueError(f"data.task={d.task!r} is unknown: choose copy, parity, polynomial or mix")
    if d.task == "mix" and d.mix_with not in ("parity", "polynomial"):
        raise ValueError(f"data.mix_with={d.mix_with!r} is invalid: choose 'parity' or 'polynomial'")
    if d.task == "mix" and d.mix_with != "parity" and (d.source == "fixed" or d.dataset):
        raise ValueError("data.mix_with other than 'parity' needs data.source=fresh (the datasets' "
                         "mix config is copy + parity)")
    if d.source not in ("fresh", "fixed"):
        raise ValueError(f"data.source={d.source!r} is invalid: choose 'fresh' or 'fixed'")
    if not 1 <= d.min_length <= d.max_length:
        raise ValueError(f"data.min_length={d.min_length} / data.max_length={d.max_length}: need "
                         "1 <= min_length <= max_length")
    if tasks.row_length(d.max_length, d.cot) > cfg.model.n_positions:
        raise ValueError(f"data.max_length={d.max_length} needs {tasks.row_length(d.max_length, d.cot)} "
                         f"positions but model.n_positions={cfg.model.n_positions}")
    if o.schedule not in ("constant", "cosine", "linear"):
        raise ValueError(f"optim.schedule={o.schedule!r} is invalid: choose constant, cosine or linear")
    for name in ("batch_size", "max_steps"):
        if getattr(o, name) < 1:
            raise ValueError(f"optim.{name}={getattr(o, name)} must be >= 1")
    if cfg.eval_every < 1 or cfg.eval_per_length < 1:
        raise ValueError("eval_every and eval_per_length must be >= 1")


def describe_config() -> str:
    """Every config key with its default, for ``--help``."""
    lines = []
    for name, cls in [("", TrainConfig)] + [(s + ".", c) for s, c in SECTIONS.items()]:
        for f in fields(cls):
            if f.name in SECTIONS:
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            lines.append(f"  {name}{f.name} = {default!r}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Data: a pure function of (seed, step, process), so a resumed run sees the same batches
# ---------------------------------------------------------------------------------------------
class TaskData:
    """Training batches and evaluation sets for one data config."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        d = cfg.data
        self.cot = d.cot
        self.lengths = np.arange(d.min_length, d.max_length + 1)
        self.length_p = np.full(len(self.lengths), 1 / len(self.lengths))  # uniform over lengths
        names = ["copy", d.mix_with] if d.task == "mix" else [d.task]
        self.tasks = {n: tasks.make_task(n, d.modulus, d.polynomial) for n in names}
        self.task_p = np.array([d.mix_ratio, 1 - d.mix_ratio]) if d.task == "mix" else np.ones(1)
        self.splits = self._load_splits()
        # Test inputs per (task, length): fresh draws must never produce one.
        self.test_keys = {(name, length): set(sequence_keys(rows[:, 1:length + 1]))
                          for (name, length), rows in self.splits["test"].items()}
        if d.source == "fixed":
            self.train_rows = [r for rows in self.splits["train"].values() for r in rows]

    def _load_splits(self) -> dict:
        """``{"train"|"test": {(task, length): rows}}`` from the builder or a Hub-layout dataset."""
        d = self.cfg.data
        if d.dataset:
            return load_dataset_rows(d.dataset, d.task + ("" if d.cot else "_nocot"), self.lengths)
        # Each task's split comes from that task's own config (for mix too), so a mix run
        # excludes exactly the test split of the released `parity` / `copy` datasets.
        out = {"train": {}, "test": {}}
        for name, task in self.tasks.items():
            config = IterationTaskConfig(
                name=name, task=name, cot=d.cot, min_length=d.min_length, max_length=d.max_length,
                examples_per_length=d.examples_per_length, test_fraction=d.test_fraction, seed=d.seed,
                modulus=d.modulus, polynomial=d.polynomial)
            for length in self.lengths:
                for split, inputs in split_inputs(config, int(length)).items():
                    out[split][name, int(length)] = tasks.build_rows(task, inputs, self.cot)
        return out

    def batch(self, step: int, rank: int, world: int) -> dict[str, torch.Tensor]:
        """This process's share of the global batch of ``step``, as model inputs (see ``collate``)."""
        return collate(self.rows(step, rank, world), self.cfg.data.packing)

    def rows(self, step: int, rank: int, world: int) -> list[np.ndarray]:
        """This process's share of the global batch of ``step``: token rows of different lengths."""
        global_bs = self.cfg.optim.batch_size
        lo, hi = rank * global_bs // world, (rank + 1) * global_bs // world
        if self.cfg.data.source == "fixed":
            per_epoch = max(len(self.train_rows) // global_bs, 1)
            epoch, i = divmod(step, per_epoch)
            order = np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.train_rows))
            idx = order[i * global_bs:(i + 1) * global_bs][lo:hi]
            return [self.train_rows[j] for j in idx]
        rng = np.random.default_rng([self.cfg.seed, step, 1])
        # Draw the whole global batch, then keep this process's slice: any world size sees the
        # same global batch at a given step.
        lengths = rng.choice(self.lengths, size=global_bs, p=self.length_p)
        kinds = rng.choice(len(self.tasks), size=global_bs, p=self.task_p)
        rows = [None] * global_bs
        for k, name in enumerate(self.tasks):
            for length in np.unique(lengths):
                where = np.flatnonzero((lengths == length) & (kinds == k))
                if len(where):
                    inputs = self.fresh_inputs(name, int(length), len(where), rng)
                    for j, row in zip(where, tasks.build_rows(self.tasks[name], inputs, self.cot)):
                        rows[j] = row
        return rows[lo:hi]

    def fresh_inputs(self, name: str, length: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` random inputs of ``length`` that are not in the test split."""
        banned = self.test_keys.get((name, length), set())
        if len(banned) >= self.tasks[name].num_sequences(length):
            raise ValueError(f"every {name} sequence of length {length} is in the test split: "
                             "nothing is left to train on; lower data.test_fraction")
        return sample_fresh_inputs(self.tasks[name], length, n, rng, exclude=banned)

    def eval_sets(self, n: int) -> dict[str, dict]:
        """``{"train"|"test": {(task, length): rows}}`` with at most ``n`` rows per key."""
        out = {"test": {k: v[:n] for k, v in self.splits["test"].items()}}
        if self.cfg.data.source == "fixed":
            out["train"] = {k: v[:n] for k, v in self.splits["train"].items()}
        else:  # a fixed sample of the training distribution
            rng = np.random.default_rng([self.cfg.seed, 2**31])
            out["train"] = {(name, int(L)): tasks.build_rows(self.tasks[name], self.fresh_inputs(name, int(L), n, rng), self.cot)
                            for name in self.tasks for L in self.lengths}
        return out


def load_dataset_rows(path: str, config_name: str, lengths) -> dict:
    """Rows of a dataset in Hub layout (a folder or a Hub repo), grouped by (task, length)."""
    import datasets

    ds = datasets.load_dataset(path, config_name)
    for split in ("train", "test"):
        if split not in ds:
            raise ValueError(f"dataset {path!r} ({config_name}) has no {split!r} split: {list(ds)}")
    out = {}
    for split in ("train", "test"):
        groups: dict = {}
        for ids, length, task in zip(ds[split]["input_ids"], ds[split]["length"], ds[split]["task"]):
            if length in lengths:
                groups.setdefault((task, int(length)), []).append(ids)
        if not groups:
            raise ValueError(f"dataset {path!r} ({config_name}) split {split!r} has no row of lengths "
                             f"{lengths[0]}-{lengths[-1]}")
        out[split] = {k: np.asarray(v, dtype=np.int64) for k, v in groups.items()}
    return out


def collate(rows: list[np.ndarray], packing: bool) -> dict[str, torch.Tensor]:
    """Model inputs for token rows: ``input_ids`` and ``labels`` (``-100`` off the loss), padded to the
    longest row; with ``packing``, rows packed end to end (``tasks.pack_rows``) plus their
    ``position_ids`` and a block-diagonal causal ``attention_mask`` (B, 1, T, T)."""
    if not packing:
        ids = torch.as_tensor(tasks.pad_rows(rows))
        return {"input_ids": ids, "labels": labels_for(ids)}
    packed = {k: torch.as_tensor(v) for k, v in tasks.pack_rows(rows).items()}
    ids, seg = packed["input_ids"], packed["segment_ids"]  # (B, T)
    T = ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    # Same segment and not in the future; padding (segment -1) only sees padding.
    mask = (seg[:, :, None] == seg[:, None, :]) & causal  # (B, T, T)
    return {"input_ids": ids, "labels": torch.where(packed["loss_mask"], ids, -100),
            "position_ids": packed["position_ids"], "attention_mask": mask[:, None]}


def labels_for(input_ids: torch.Tensor) -> torch.Tensor:
    """Targets for the loss: the token itself after ``<eoi>``, ``-100`` elsewhere (inputs, padding)."""
    mask = torch.as_tensor(tasks.loss_mask(input_ids.cpu().numpy()), device=input_ids.device)
    return torch.where(mask, input_ids, torch.full_like(input_ids, -100))


# ---------------------------------------------------------------------------------------------
# Run folder: locking, atomic saves, checkpoints
# ---------------------------------------------------------------------------------------------
class RunFolderError(RuntimeError):
    pass


def acquire_lock(out: Path) -> Path:
    """Refuse to share a run folder with a live process (a stale lock from a killed run is taken over)."""
    lock = out / ".lock"
    if lock.exists():
        try:
            pid = int(lock.read_text().strip() or 0)
        except ValueError:
            pid = 0
        if pid and pid != os.getpid() and _alive(pid):
            raise RunFolderError(f"output folder {out} is in use by process {pid}; wait for it, or "
                                 "choose another --output_dir")
    lock.write_text(str(os.getpid()))
    return lock


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped) is not a user of the folder.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def atomic_dir(final: Path, write) -> None:
    """Write a folder next to ``final`` then rename it in place: a kill never leaves half a folder."""
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    write(tmp)
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)


def checkpoint_steps(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return sorted(int(p.name.split("_")[1]) for p in folder.glob("step_*")
                  if p.name.split("_")[1].isdigit() and (p / "trainer_state.json").exists())


def save_model_folder(path: Path, model, tokenizer, extra: dict | None = None) -> None:
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    if extra:
        (path / "training_info.json").write_text(json.dumps(extra, indent=2))


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def lr_lambda(o: OptimArgs):
    def f(step: int) -> float:
        if step < o.warmup_steps:
            return (step + 1) / o.warmup_steps
        if o.schedule == "constant":
            return 1.0
        progress = min((step - o.warmup_steps) / max(o.max_steps - o.warmup_steps, 1), 1.0)
        decay = 0.5 * (1 + math.cos(math.pi * progress)) if o.schedule == "cosine" else 1 - progress
        return o.min_lr_ratio + (1 - o.min_lr_ratio) * decay
    return f


def build_model(cfg: TrainConfig, init_from: str | None):
    if init_from:
        model = IterGPTForCausalLM.from_pretrained(init_from)
        if model.config.vocab_size != tasks.VOCAB_SIZE:
            raise ValueError(f"--init_from {init_from}: vocab_size={model.config.vocab_size} but the "
                             f"tasks' vocabulary has {tasks.VOCAB_SIZE} tokens")
        return model
    m = cfg.model
    config = IterGPTConfig(vocab_size=tasks.VOCAB_SIZE, **asdict(m))
    return IterGPTForCausalLM(config)


def set_trainable(model, patterns: list[str]) -> int:
    """Freeze every parameter whose name matches none of ``patterns``; returns the trainable count."""
    if not patterns:
        return sum(p.numel() for p in model.parameters() if p.requires_grad)
    from fnmatch import fnmatch
    names = [n for n, _ in model.named_parameters()]
    for pat in patterns:
        if not any(fnmatch(n, pat) for n in names):
            raise ValueError(f"trainable pattern {pat!r} matches no parameter; names look like "
                             f"{', '.join(names[:4])}, ...")
    for name, p in model.named_parameters():
        p.requires_grad_(any(fnmatch(name, pat) for pat in patterns))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def summarise(result: dict) -> dict:
    """Flatten ``evaluate_lengths`` output for logging: accuracy, and each head's scores averaged
    over lengths >= 2 (as the detector does: at length 1 the diagonal is the previous token)."""
    acc = list(result["accuracy"].values())
    out = {"accuracy_mean": float(np.mean(acc)), "accuracy_min": float(np.min(acc)),
           "accuracy": {str(k): v for k, v in result["accuracy"].items()}}
    if result["heads"]:
        per = [s for L, s in result["heads"].items() if L >= 2] or list(result["heads"].values())
        first = np.mean([s["first_mean"] for s in per], axis=0)  # (n_layer, n_head)
        it = np.mean([s["iteration_mean"] for s in per], axis=0)
        out["first_mean"] = float(first[0].max())  # best layer-1 head: attends to <eoi>
        out["iteration_mean"] = float(it[1:].max()) if it.shape[0] > 1 else float(it.max())
        out["heads"] = {"first_mean": first.round(4).tolist(), "iteration_mean": it.round(4).tolist(),
                        "iteration_heads": find_iteration_heads(result)}
    return out


def run_eval(model, data: TaskData, sets: dict, cfg: TrainConfig) -> dict:
    metrics = {}
    for split, rows in sets.items():
        per_task = {}
        for name in data.tasks:
            r = evaluate_lengths(model, {L: v for (t, L), v in rows.items() if t == name},
                                 with_heads=cfg.eval_heads, cot=data.cot)
            per_task[name] = summarise(r)
        if len(per_task) == 1:
            metrics[split] = next(iter(per_task.values()))
        else:
            merged = {"accuracy_mean": float(np.mean([v["accuracy_mean"] for v in per_task.values()])),
                      "accuracy_min": float(np.min([v["accuracy_min"] for v in per_task.values()]))}
            merged.update({k: v for k, v in per_task.items()})
            metrics[split] = merged
    return metrics


def train(cfg: TrainConfig, args) -> Path:
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from tqdm.auto import tqdm

    from datasets_builders.tokenizer import build_tokenizer

    out = Path(args.output_dir)
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )
    main = accelerator.is_main_process
    ckpt_dir, snap_dir, final_dir = out / "checkpoints", out / "snapshots", out / "final"

    # --- run folder policy: every process checks the folder, then only the main one writes ---
    resume_step = None
    if args.resume_from_checkpoint:
        steps = checkpoint_steps(ckpt_dir)
        if args.resume_from_checkpoint == "latest":
            if not steps:
                raise RunFolderError(f"--resume_from_checkpoint latest: no checkpoint in {ckpt_dir}")
            resume_step = steps[-1]
        else:
            name = Path(args.resume_from_checkpoint).name
            if not name.startswith("step_") or int(name[5:]) not in steps:
                raise RunFolderError(f"--resume_from_checkpoint {args.resume_from_checkpoint}: not a "
                                     f"complete checkpoint; available: {steps}")
            resume_step = int(name[5:])
        saved = config_from_dict(yaml.safe_load((out / "train_config.yaml").read_text()))
        if asdict(saved) != asdict(cfg):
            diff = [k for k, v in _flat(asdict(cfg)).items() if _flat(asdict(saved)).get(k) != v]
            raise RunFolderError(f"cannot resume {out}: its config differs in {', '.join(diff)}; "
                                 "resume with the same recipe and overrides")
    elif out.exists() and any(out.iterdir()):
        if not args.overwrite:
            what = "a finished run" if final_dir.exists() else "an earlier run"
            raise RunFolderError(f"output folder {out} holds {what}; use --resume_from_checkpoint "
                                 "latest to continue it or --overwrite to replace it")
    accelerator.wait_for_everyone()  # every process has read the folder before main writes to it
    if main:
        out.mkdir(parents=True, exist_ok=True)
        lock = acquire_lock(out)
        if args.overwrite and not args.resume_from_checkpoint:
            for p in out.iterdir():
                if p.name != ".lock":
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
        (out / "train_config.yaml").write_text(yaml.safe_dump(asdict(cfg), sort_keys=False))
    accelerator.wait_for_everyone()

    set_seed(cfg.seed)
    data = TaskData(cfg)
    eval_sets = data.eval_sets(cfg.eval_per_length)
    model = build_model(cfg, args.init_from)
    n_trainable = set_trainable(model, cfg.trainable)
    tokenizer = build_tokenizer()
    o = cfg.optim
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=o.lr,
                                  betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(o))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    raw = accelerator.unwrap_model(model)

    start = 0
    metrics_path = out / "metrics.jsonl"
    if resume_step is not None:
        accelerator.load_state(str(ckpt_dir / f"step_{resume_step}"))
        start = resume_step
        state = json.loads((ckpt_dir / f"step_{resume_step}" / "trainer_state.json").read_text())
        if main and metrics_path.exists():  # drop what the interrupted run logged after the checkpoint
            kept = [l for l in metrics_path.read_text().splitlines() if l and json.loads(l)["step"] <= start]
            metrics_path.write_text("".join(l + "\n" for l in kept))
    if accelerator.log_with:
        accelerator.init_trackers("train", config=_flat(asdict(cfg)))
    accelerator.print(f"model: {sum(p.numel() for p in raw.parameters()):,} parameters "
                      f"({n_trainable:,} trainable); {accelerator.num_processes} process(es) on "
                      f"{accelerator.device}; task {cfg.data.task} lengths "
                      f"{cfg.data.min_length}-{cfg.data.max_length}, cot={cfg.data.cot}")

    def log(record: dict) -> None:
        if main:
            with metrics_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        if accelerator.log_with:
            accelerator.log({k: v for k, v in _flat(record).items() if isinstance(v, (int, float))},
                            step=record["step"])

    def save_checkpoint(step: int) -> None:
        accelerator.wait_for_everyone()
        final = ckpt_dir / f"step_{step}"
        if main:
            ckpt_dir.mkdir(exist_ok=True)

            def write(tmp: Path) -> None:
                accelerator.save_state(str(tmp), safe_serialization=True)
                (tmp / "trainer_state.json").write_text(json.dumps(
                    {"step": step, "loss_sum": loss_sum.item(), "loss_steps": loss_steps}))
            atomic_dir(final, write)
            for old in checkpoint_steps(ckpt_dir)[:-cfg.keep_checkpoints]:
                shutil.rmtree(ckpt_dir / f"step_{old}")
        accelerator.wait_for_everyone()

    def save_snapshot(step: int, folder: Path) -> None:
        if main:
            folder.parent.mkdir(parents=True, exist_ok=True)
            atomic_dir(folder, lambda tmp: save_model_folder(tmp, raw, tokenizer, {"step": step}))

    bar = tqdm(total=o.max_steps, initial=start, disable=not main or args.no_progress,
               desc=f"{cfg.data.task}", dynamic_ncols=True)
    clock, last_test = time.perf_counter(), None
    elapsed = 0.0
    if resume_step is not None and main and metrics_path.exists():
        lines = metrics_path.read_text().splitlines()
        elapsed = json.loads(lines[-1]).get("time_s", 0.0) if lines else 0.0
    # Mean training loss since the last evaluation (a single batch's loss is too noisy to log).
    loss_sum, loss_steps = torch.zeros((), device=accelerator.device), 0
    if resume_step is not None:
        loss_sum += state.get("loss_sum", 0.0)
        loss_steps = state.get("loss_steps", 0)

    def mean_loss() -> float:
        return accelerator.reduce(loss_sum / max(loss_steps, 1), reduction="mean").item()

    model.train()
    stop_reason = "max_steps"
    step = start
    while step < o.max_steps:
        inputs = {k: v.to(accelerator.device)
                  for k, v in data.batch(step, accelerator.process_index, accelerator.num_processes).items()}
        with accelerator.autocast():
            loss = model(**inputs, use_cache=False).loss
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), o.grad_clip)
        if not torch.isfinite(grad_norm):  # same value on every process (gradients are all-reduced)
            good = checkpoint_steps(ckpt_dir)
            raise FloatingPointError(
                f"non-finite loss/gradient at step {step} (loss {loss.item():.4g}); training stopped "
                f"without saving. Last good checkpoint: "
                f"{ckpt_dir / f'step_{good[-1]}' if good else 'none'}. Lower optim.lr or check the data.")
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_sum += loss.detach().float()
        loss_steps += 1
        step += 1
        bar.update(1)

        if step % cfg.eval_every == 0 or step == o.max_steps:
            elapsed += time.perf_counter() - clock
            record = {"step": step, "time_s": round(elapsed, 2), "loss": mean_loss(),
                      "lr": scheduler.get_last_lr()[0]}
            loss_sum.zero_()
            loss_steps = 0
            if main:
                record.update(run_eval(raw, data, eval_sets, cfg))
                last_test = record["test"]
                bar.set_postfix(loss=f"{record['loss']:.3f}", test_acc=f"{last_test['accuracy_mean']:.3f}",
                                min_len_acc=f"{last_test['accuracy_min']:.3f}")
            log(record)
            reached = torch.tensor(float(main and cfg.target_accuracy is not None
                                         and last_test["accuracy_min"] >= cfg.target_accuracy),
                                   device=accelerator.device)
            if accelerator.reduce(reached, reduction="sum").item() > 0:
                stop_reason = f"target accuracy {cfg.target_accuracy} reached"
            clock = time.perf_counter()
        if cfg.max_minutes is not None and elapsed + time.perf_counter() - clock > 60 * cfg.max_minutes:
            flag = torch.tensor(1.0 if main else 0.0, device=accelerator.device)
            if accelerator.reduce(flag, reduction="sum").item() > 0:
                stop_reason = f"time limit {cfg.max_minutes} min"
        if step in cfg.snapshot_steps:
            save_snapshot(step, snap_dir / f"step_{step}")
        if cfg.save_every and step % cfg.save_every == 0:
            save_checkpoint(step)
        if stop_reason != "max_steps":
            break
    bar.close()

    accelerator.wait_for_everyone()
    if main:
        if last_test is None or not (step % cfg.eval_every == 0 or step == o.max_steps):
            elapsed += time.perf_counter() - clock
            # This process's mean: no collective after the loop (see the gloo note at the end).
            record = {"step": step, "time_s": round(elapsed, 2), "loss": loss_sum.item() / max(loss_steps, 1)}
            record.update(run_eval(raw, data, eval_sets, cfg))
            last_test = record["test"]
            log(record)
        info = {"step": step, "stop_reason": stop_reason, "time_s": round(elapsed, 2),
                "train_config": asdict(cfg), "init_from": args.init_from, "test": last_test}
        save_snapshot(step, final_dir)
        (final_dir / "training_info.json").write_text(json.dumps(info, indent=2))
        print_report(raw, data, cfg, step, elapsed, stop_reason)
        lock.unlink(missing_ok=True)
    accelerator.end_training()
    if accelerator.num_processes > 1 and accelerator.device.type == "cpu":
        # Everything is written. Freeing the DDP model now can deadlock a gloo rank for good (seen
        # in CI: ~ProcessGroupGloo joins a worker thread that waits for the GIL to free a tensor of
        # the last all-reduce), leaving the launcher waiting; end the worker process here instead.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return final_dir


def print_report(model, data: TaskData, cfg: TrainConfig, step: int, elapsed: float, reason: str) -> None:
    """Per-length test accuracy and the heads' scores, on a fresh full evaluation."""
    sets = data.eval_sets(cfg.eval_per_length)["test"]
    print(f"\nstopped at step {step} after {elapsed:.0f}s of training ({reason})")
    for name in data.tasks:
        res = evaluate_lengths(model, {L: v for (t, L), v in sets.items() if t == name}, cot=data.cot)
        print(f"\n{name}: teacher-forced test sequence accuracy per length "
              f"(mean {np.mean(list(res['accuracy'].values())):.4f})")
        print("  ".join(f"L{L}:{a:.3f}" for L, a in res["accuracy"].items()))
        if res["heads"]:
            keys = ("first_mean", "iteration_mean", "iteration_invariance")
            per = [v for L, v in res["heads"].items() if L >= 2] or list(res["heads"].values())
            scores = {k: np.mean([s[k] for s in per], axis=0) for k in keys}
            found = find_iteration_heads(res)
            print(f"head scores (mean over lengths >= 2; iteration head when >= {HEAD_THRESHOLD}):")
            print("  layer.head  <eoi>-attention  iteration-head  invariance")
            n_layer, n_head = scores["first_mean"].shape
            for layer in range(n_layer):
                for head in range(n_head):
                    tag = "  <- iteration head" if (layer, head) in found else ""
                    print(f"  {layer}.{head}         {scores['first_mean'][layer, head]:.3f}            "
                          f"{scores['iteration_mean'][layer, head]:.3f}           "
                          f"{scores['iteration_invariance'][layer, head]:.3f}{tag}")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="config keys (override with section.key=value):\n" + describe_config())
    p.add_argument("overrides", nargs="*", help="config overrides: key=value or section.key=value")
    p.add_argument("--recipe", default="parity",
                   help=f"recipe name in configs/ or a .yaml path (available: {', '.join(available_recipes())})")
    p.add_argument("--output_dir", default=None, help="run folder (default: runs/<recipe>)")
    p.add_argument("--resume_from_checkpoint", default=None,
                   help="'latest' or a checkpoints/step_<N> folder of --output_dir")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--init_from", default=None,
                   help="start from this model folder or Hub id (fine-tuning); its architecture wins")
    p.add_argument("--mixed_precision", default="no", choices=["no", "bf16", "fp16"],
                   help="bf16 works on recent CPUs and GPUs; fp16 needs a GPU")
    p.add_argument("--report_to", default="tensorboard", choices=["tensorboard", "none"],
                   help="experiment tracker (metrics.jsonl is always written)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    values = apply_overrides(load_recipe(args.recipe), args.overrides)
    cfg = config_from_dict(values, where=f"recipe {args.recipe!r} + overrides")
    validate(cfg)
    if args.output_dir is None:
        args.output_dir = str(Path("runs") / Path(args.recipe).stem)
    if args.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ValueError("--mixed_precision fp16 needs a GPU (on a CPU it silently does nothing); use bf16")
    return cfg, args


def main(argv=None) -> None:
    try:
        cfg, args = parse_args(argv)
        train(cfg, args)
    except (ValueError, RunFolderError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
