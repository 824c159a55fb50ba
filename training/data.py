"""Training data: batches are a pure function of (seed, step, process), so a resumed run, or a run on
any number of processes, sees exactly the same global batch at every step.

The held-out test split always comes from the dataset builder (``split_inputs``) or a released
dataset: fresh training draws never produce a test sequence.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from datasets_builders import tasks
from datasets_builders.iteration_tasks import run_split_config, sample_fresh_inputs, sequence_keys, split_inputs

from .config import ConfigError, TrainConfig

__all__ = ["TaskData", "collate", "labels_for", "load_dataset_rows"]


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
            return load_dataset_rows(d.dataset, tasks.dataset_config_name(d.task, d.cot), self.lengths)
        # Each task's split comes from that task's own config (for mix too), so a mix run
        # excludes exactly the test split of the released `parity` / `copy` datasets.
        out = {"train": {}, "test": {}}
        for name, task in self.tasks.items():
            config = run_split_config(dataclasses.asdict(d), name)
            for length in self.lengths:
                for split, inputs in split_inputs(config, int(length)).items():
                    out[split][name, int(length)] = tasks.build_rows(task, inputs, self.cot)
        return out

    def batches(self, step: int, rank: int, world: int) -> list[dict[str, torch.Tensor]]:
        """This process's share of the global batch of ``step`` as ``optim.grad_accum`` micro-batches
        of model inputs (see ``collate``)."""
        rows, k = self.rows(step, rank, world), self.cfg.optim.grad_accum
        return [collate(rows[i * len(rows) // k:(i + 1) * len(rows) // k], self.cfg.data.packing)
                for i in range(k)]

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
            raise ConfigError(f"every {name} sequence of length {length} is in the test split: "
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
    """Rows of a dataset in Hub layout (a folder or a Hub repo), grouped by (task, length). Every
    length of ``lengths`` must be in both splits: a trained length that is never tested would escape
    the stop rule."""
    import datasets

    try:
        ds = datasets.load_dataset(path, config_name)
    except Exception as err:  # datasets raises many types for a missing or malformed dataset
        raise ConfigError(f"data.dataset={path!r} (config {config_name!r}) cannot be loaded: "
                          f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
    out = {}
    for split in ("train", "test"):
        if split not in ds:
            raise ConfigError(f"data.dataset={path!r} ({config_name}) has no {split!r} split: {list(ds)}")
        groups: dict = {}
        for ids, length, task in zip(ds[split]["input_ids"], ds[split]["length"], ds[split]["task"]):
            if length in lengths:
                groups.setdefault((task, int(length)), []).append(ids)
        missing = sorted(set(int(L) for L in lengths) - {L for _, L in groups})
        if missing:
            raise ConfigError(f"data.dataset={path!r} ({config_name}) split {split!r} has no row of "
                              f"length(s) {missing}: set data.min_length/data.max_length within the "
                              "dataset's lengths")
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
