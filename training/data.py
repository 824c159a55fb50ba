"""Training data: batches are a pure function of (seed, step, process), so a resumed run, or a run on
any number of processes, sees exactly the same global batch at every step.

The held-out test split always comes from the dataset builder (``split_inputs``) or a released
dataset: fresh training draws never produce a test sequence. ``data.source=paper`` instead uses the
reference's own data (``paper_split_inputs``: draws with replacement, half/half, overlapping at short
lengths), to compare with the paper under its exact data conditions.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from datasets_builders import tasks
from datasets_builders.iteration_tasks import (SequenceSet, drawn, paper_split_inputs, run_split_config,
                                               sample_fresh_inputs, sequence_keys, split_inputs)

from .config import ConfigError, TrainConfig, dataset_config, run_tasks

__all__ = ["TaskData", "collate", "labels_for", "steps_per_epoch", "FIXED_SOURCES"]

FIXED_SOURCES = ("fixed", "paper")  # a fixed training split, reshuffled every epoch
_NOTHING = SequenceSet()  # no test sequence to avoid


class TaskData:
    """Training batches and evaluation sets for one data config."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        d = cfg.data
        self.cot = d.cot
        self.lengths = np.arange(d.min_length, d.max_length + 1)
        self.length_p = np.full(len(self.lengths), 1 / len(self.lengths))  # uniform over lengths
        self.tasks = run_tasks(d)
        self.task_p = np.array([d.mix_ratio, 1 - d.mix_ratio]) if d.task == "mix" else np.ones(1)
        self.splits = self._load_splits()
        # Test inputs per (task, length): fresh draws must never produce one.
        self.test_keys = {(name, length): SequenceSet(sequence_keys(rows[:, 1:length + 1]))
                          for (name, length), rows in self.splits["test"].items()}
        if d.source in FIXED_SOURCES:
            # Each task's training rows (lengths in order); a mix run keeps them apart to honour mix_ratio.
            self.train_rows = {name: [r for (n, _), rows in self.splits["train"].items() if n == name for r in rows]
                               for name in self.tasks}

    def _load_splits(self) -> dict:
        """``{"train"|"test": {(task, length): rows}}`` from the builder or a Hub-layout dataset."""
        d = self.cfg.data
        if d.dataset:
            return self._read_dataset()
        # Each task's split comes from that task's own config (for mix too), so a mix run
        # excludes exactly the test split of the released `parity` / `copy` datasets.
        out = {"train": {}, "test": {}}
        for name, task in self.tasks.items():
            config = run_split_config(dataclasses.asdict(d), name)
            for length in self.lengths:
                parts = (paper_split_inputs(task, int(length), d.examples_per_length, d.seed) if d.source == "paper"
                         else split_inputs(config, int(length)))
                for split, inputs in parts.items():
                    out[split][name, int(length)] = tasks.build_rows(task, inputs, self.cot)
        return out

    def _read_dataset(self) -> dict:
        """Both splits of ``data.dataset`` through the one dataset reader (validated rows). Every
        trained length must be in both splits: a trained length never tested would escape the stop rule."""
        from modeling.evaluation import DatasetFormatError, read_split

        d = self.cfg.data
        config = dataset_config(d)
        try:
            return {split: read_split(d.dataset, config, split, self.tasks, self.cot, self.lengths.tolist())
                    for split in ("train", "test")}
        except DatasetFormatError as err:
            raise ConfigError(f"data.dataset={d.dataset!r}: {err}. Set data.min_length/data.max_length "
                              "within its lengths and data.task/data.cot to one of its configs") from None

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
        if self.cfg.data.source in FIXED_SOURCES:
            return self.fixed_rows(step)[lo:hi]
        rng = np.random.default_rng([self.cfg.seed, step, 1])
        # Draw the whole global batch, then keep this process's slice: any world size sees the
        # same global batch at a given step.
        lengths = rng.choice(self.lengths, size=global_bs, p=self.length_p)
        kinds = rng.choice(len(self.tasks), size=global_bs, p=self.task_p)
        inputs = np.empty((global_bs, self.lengths[-1]), dtype=np.int64)  # row j: its first lengths[j] columns
        for k, name in enumerate(self.tasks):
            for length in np.unique(lengths):
                where = np.flatnonzero((lengths == length) & (kinds == k))
                if len(where):
                    inputs[where, :length] = self.fresh_inputs(name, int(length), len(where), rng)
        rows = [None] * global_bs
        for k, name in enumerate(self.tasks):
            where = np.flatnonzero(kinds == k)
            for j, row in zip(where, tasks.build_rows_of_lengths(self.tasks[name], inputs[where], lengths[where], self.cot)):
                rows[j] = row
        return rows[lo:hi]

    def fresh_inputs(self, name: str, length: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` random inputs of ``length`` that are not in the test split."""
        banned = self.test_keys.get((name, length), _NOTHING)
        if len(banned) >= self.tasks[name].num_sequences(length):
            raise ConfigError(f"every {name} sequence of length {length} is in the test split: "
                              "nothing is left to train on; lower data.test_fraction")
        return sample_fresh_inputs(self.tasks[name], length, n, rng, exclude=banned)

    def fixed_rows(self, step: int) -> list[np.ndarray]:
        """The global batch of ``step`` from the fixed training split, reshuffled every epoch (the
        reference's loader). A mix run draws ``round(batch_size * mix_ratio)`` copy rows and the rest
        from ``mix_with``, each task with its own epochs, then shuffles them together."""
        bs, seed = self.cfg.optim.batch_size, self.cfg.seed
        if len(self.tasks) == 1:
            (rows,) = self.train_rows.values()
            return _epoch_slice(rows, step, bs, [seed])
        n_copy = int(np.floor(bs * self.cfg.data.mix_ratio + 0.5))
        batch = []
        for k, (name, n) in enumerate(zip(self.tasks, (n_copy, bs - n_copy))):
            batch += _epoch_slice(self.train_rows[name], step, n, [seed, k + 1])
        order = np.random.default_rng([seed, step, 3]).permutation(len(batch))
        return [batch[j] for j in order]

    def unseen_test_rows(self) -> dict[tuple[str, int], np.ndarray]:
        """The test rows whose input sequence is not among the training rows, per (task, length),
        leaving out keys with none (with the reference's data: every parity length up to 7)."""
        out = {}
        for (name, length), rows in self.splits["test"].items():
            kept = rows[~drawn(rows[:, 1:length + 1], self.splits["train"][name, length][:, 1:length + 1])]
            if len(kept):
                out[name, length] = kept
        return out

    def eval_sets(self, n: int) -> dict[str, dict]:
        """``{"train"|"test": {(task, length): rows}}`` with at most ``n`` rows per key; a run on the
        reference's data (``data.source=paper``, whose test half overlaps its train half) also gets
        ``"unseen"``: the test rows its train half did not draw, where a length has any."""
        out = {"test": {k: v[:n] for k, v in self.splits["test"].items()}}
        if self.cfg.data.source == "paper":
            out["unseen"] = {k: v[:n] for k, v in self.unseen_test_rows().items()}
        if self.cfg.data.source in FIXED_SOURCES:
            out["train"] = {k: v[:n] for k, v in self.splits["train"].items()}
        else:  # a fixed sample of the training distribution
            rng = np.random.default_rng([self.cfg.seed, 2**31])
            out["train"] = {(name, int(L)): tasks.build_rows(self.tasks[name], self.fresh_inputs(name, int(L), n, rng), self.cot)
                            for name in self.tasks for L in self.lengths}
        return out


def steps_per_epoch(data, batch_size: int) -> int:
    """Optimizer steps in one epoch of the fixed training split of ``data`` (a run's data section:
    a dict, a ``DataConfig`` or an OmegaConf node), as :meth:`TaskData.fixed_rows` deals it:
    ``rows // batch_size``. ``${epochs:N}`` in a config is ``N`` times this (the paper counts epochs:
    64 steps at max length 16, batch 256, the reference's 1,024 training draws per length)."""
    d = _plain(data)
    if d["source"] not in FIXED_SOURCES:
        raise ConfigError(f"${{epochs:N}} counts epochs of a fixed training split, but data.source={d['source']!r} "
                          "draws new sequences every step: set data.source=fixed or paper, or give steps")
    if d["task"] == "mix" or d.get("dataset"):
        raise ConfigError(f"${{epochs:N}} with data.task={d['task']!r}"
                          + (f" and data.dataset={d['dataset']!r}" if d.get("dataset") else "")
                          + ": epochs are counted on one task's builder split; give steps instead")
    lengths = d["max_length"] - d["min_length"] + 1
    if d["source"] == "paper":
        rows = d["examples_per_length"] // 2 * lengths  # paper_split_inputs: the first half trains
    else:
        from datasets_builders.iteration_tasks import length_counts
        rows = sum(c["train"] for c in length_counts(run_split_config(d, d["task"])))
    return max(rows // batch_size, 1)


def _plain(data) -> dict:
    if dataclasses.is_dataclass(data):
        return dataclasses.asdict(data)
    if isinstance(data, dict):
        return data
    from omegaconf import OmegaConf
    return OmegaConf.to_container(data, resolve=True)


def _epoch_slice(rows: list, step: int, n: int, key: list[int]) -> list:
    """The ``n`` rows of ``step`` when ``rows`` are dealt ``n`` at a time in a fresh permutation every
    epoch (permutation seeded by ``key + [epoch]``): a pure function of the step, so resume is exact."""
    if n == 0 or not rows:
        return []
    per_epoch = max(len(rows) // n, 1)
    epoch, i = divmod(step, per_epoch)
    order = np.random.default_rng(key + [epoch]).permutation(len(rows))
    return [rows[j] for j in order[i * n:(i + 1) * n]]


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
