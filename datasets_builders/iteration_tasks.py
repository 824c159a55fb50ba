"""The iterative tasks as a ``datasets`` builder: the paper's copy, parity, polynomial iteration and
mix, and the twelve built-in tasks beyond them (``tasks.BUILTIN_TASKS``: group word problems and
automata).

Thirty-three named configs, each task with and without chain of thought, then the polynomial
recipe's copy + polynomial mix::

    copy  parity  polynomial  mix  copy_nocot  parity_nocot  polynomial_nocot  mix_nocot
    cyclic3  cyclic5  flipflop  gridworld5  dihedral3  quaternion  dihedral4  alternating4
    symmetric4  alternating5  symmetric5  random5x3                    (and each <task>_nocot)
    mix_polynomial

The configs of the twelve keep ``max_rows_per_length=256`` of each length's 2,048 drawn sequences
(``BUILTIN_MAX_ROWS_PER_LENGTH``; the reason is there). Every named config has a ``test_longer``
split (``PAPER_EXTRAPOLATION_LENGTHS``: 17-20; 256 rows per length in the twelve's configs, 512 in the
paper's eight); ``mix_polynomial`` takes each half from
its task's own config (``task_splits``) and has a ``metadata`` column (``row_metadata``, which gives
the same per-row task parameters for every named config).

Use it in-process (``load_dataset`` no longer runs scripts, datasets >= 4)::

    from datasets_builders.iteration_tasks import IterationTasks
    builder = IterationTasks(config_name="parity", max_length=8)  # any config field as a keyword
    builder.download_and_prepare()
    ds = builder.as_dataset()  # DatasetDict: train, test (and test_longer)

or load the exported parquet release (``python -m datasets_builders.export``) with
``load_dataset("<folder or repo>", "parity")``.

The split rule. For every input length ``L`` in ``min_length … max_length`` we draw
``examples_per_length`` *distinct* input sequences and put ``round(examples_per_length ·
test_fraction)`` of them in ``test``, the rest in ``train``: no test input sequence is ever in
train (the reference draws with replacement and its splits overlap at short lengths). A length with
fewer distinct sequences than asked (parity at ``L = 1`` has 2) uses all of them, split by the same
fraction with at least one on each side (a single drawn sequence goes to train, and a config whose
test split would be empty is refused); ``exhaustive_short_lengths=False`` raises instead. ``mix``
does this for copy and ``mix_with`` (parity by default) separately (``mix_ratio`` of the rows are
copy). ``extrapolation_lengths`` adds a ``test_longer`` split with
``round(examples_per_length · test_fraction)`` distinct sequences per longer length.
``max_rows_per_length`` keeps fewer rows without changing the split: of each length's drawn
sequences, the first ``round(max_rows_per_length · test_fraction)`` of its test part and the first
of its train part (and the first ``max_rows_per_length`` of each longer length's ``test_longer``), so
every kept test row is in the test split of the same config without the cap (the one ``train.py``
holds out), and every kept ``test_longer`` row in its ``test_longer``.

Randomness comes from one stream per (seed, config task, sub-task, length, purpose), so a length's
data does not change when other lengths are added, and ``parity`` / ``parity_nocot`` share their
input sequences (with CoT vs without is compared on the same inputs). Same config ⇒ same bytes
(for a given numpy version).

Every row is ``<task> x_1 … x_L <eoi> s_1 … s_L <eos>`` (``… <eoi> s_L <eos>`` without CoT), see
``tasks.py``. Columns: ``input_ids`` (int32 list), ``length`` (int32), ``task`` (string), ``text``, and
for ``Trainer``/TRL ``prompt`` (text up to ``<eoi>``), ``completion`` (the rest) and ``labels``
(``input_ids`` with ``-100`` up to and at ``<eoi>``: ``tasks.loss_mask``, the paper's loss, which a causal
LM's shifted cross-entropy then applies to the tokens after ``<eoi>`` only).
"""

from __future__ import annotations

import collections.abc
import functools
import hashlib
import math
import os
import re
from dataclasses import dataclass
from typing import Iterable, Iterator

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import tasks

__all__ = [
    "TASKS", "MIX_TASKS", "MIX_WITH", "SPLITS", "FEATURES", "CITATION", "NAMED_CONFIGS", "NAMED_CONFIG_NAMES",
    "SOURCE_HASH", "BUILTIN_TASKS", "BUILTIN_MAX_ROWS_PER_LENGTH", "TASK_DESCRIPTIONS",
    "PAPER_EXTRAPOLATION_LENGTHS", "METADATA_FEATURES", "FEATURES_WITH_METADATA", "row_metadata",
    "IterationTaskConfig", "IterationTasks", "task_description",
    "length_counts", "run_split_config", "split_inputs", "generate_split", "split_table",
    "sequence_keys", "test_sequences", "sample_fresh_inputs", "SequenceSet", "score", "drawn",
]

TASKS = ("copy", "parity", "polynomial", "mix")
MIX_TASKS = ("copy", "parity")  # the two halves of ``mix`` by default (``mix_with`` picks the second)
MIX_WITH = ("parity", "polynomial")  # what ``mix`` may mix copy rows with
SPLITS = ("train", "test", "test_longer")
BUILTIN_TASKS = tasks.BUILTIN_TASKS  # named configs beyond the paper's: groups and automata (issue 25 §1)
# Rows kept per length in the named configs of BUILTIN_TASKS. Their 24 configs at the paper's 2,048
# rows per length would be 25.5 MB of parquet (random inputs over up to 120 values compress little),
# and hub/ (models, revisions and this dataset) must stay under 30 MB (model_cards.release); 256
# keeps them at 3.7 MB (5.2 MB with their test_longer, 256 rows at each of 17-20). The split is still that
# of 2,048 (see max_rows_per_length): every kept test row is held out by a train.py run at the defaults
# (e.g. experiment=task_family).
BUILTIN_MAX_ROWS_PER_LENGTH = 256
# Lengths of the ``test_longer`` split of every named config (first the paper's tasks' and mix_polynomial's,
# then, issue 25 §1, the built-in tasks'): the four after their max_length=16, each inside every released
# model's context (2L + 3 <= 64 positions) but at positions no training row reached (issue 26). A builder
# given another max_length drops them unless extrapolation_lengths is given too
# (IterationTasks._create_builder_config). Each length has its own random stream (_rng), so adding them
# left every train/test row (and file) of the built-in configs as it was.
PAPER_EXTRAPOLATION_LENGTHS = (17, 18, 19, 20)

FEATURES = datasets.Features({
    "input_ids": datasets.List(datasets.Value("int32")),
    "length": datasets.Value("int32"),
    "task": datasets.Value("string"),
    "text": datasets.Value("string"),
    # For Trainer / TRL: the paper's loss is on the tokens after <eoi> only.
    "prompt": datasets.Value("string"),  # "<task> x_1 … x_L <eoi>"
    "completion": datasets.Value("string"),  # "s_1 … s_L <eos>"; prompt + " " + completion == text
    "labels": datasets.List(datasets.Value("int32")),  # input_ids after <eoi>, -100 up to and at it
})

# Per-row task parameters (reasoning-gym's ``metadata``), a column of the configs made with
# ``metadata=True`` (mix_polynomial). The paper's configs keep their released bytes and columns:
# ``row_metadata(row, config_name)`` gives the same dict for any row of any named config.
METADATA_FEATURES = {
    "config": datasets.Value("string"),  # the dataset config the row belongs to
    "task": datasets.Value("string"),  # the row's own task (a half of mix)
    "cot": datasets.Value("bool"),  # every state after <eoi>, or only s_L
    "length": datasets.Value("int32"),  # L, the number of inputs
    "modulus": datasets.Value("int32"),  # p of polynomial iteration; None for the other tasks
    "polynomial": datasets.Value("string"),  # P(s, x) of polynomial iteration ("s·x + 1"); None otherwise
    "states": datasets.Value("int32"),  # the task's reachable states (tasks.structure)
    "inputs": datasets.Value("int32"),  # the task's input values
    "group": datasets.Value("bool"),  # whether the task is the word problem of a group
    "seed": datasets.Value("int32"),  # the generator's base seed
}
FEATURES_WITH_METADATA = datasets.Features({**FEATURES, "metadata": METADATA_FEATURES})

CITATION = """\
@inproceedings{cabannes2024iteration,
  title     = {Iteration Head: A Mechanistic Study of Chain-of-Thought},
  author    = {Cabannes, Vivien and Arnal, Charles and Bouaziz, Wassim and Yang, Alice and
               Charton, Fran{\\c{c}}ois and Kempe, Julia},
  booktitle = {Advances in Neural Information Processing Systems},
  volume    = {37},
  year      = {2024},
  eprint    = {2406.02128},
  archivePrefix = {arXiv},
}
"""

DESCRIPTION = (
    "Iterative tasks from 'Iteration Head: A Mechanistic Study of Chain-of-Thought' (NeurIPS 2024): "
    "s_t = F(s_{t-1}, x_t) for copy, parity and polynomial iteration mod p, and for the word problems of "
    "groups and small automata beyond the paper, with or without the chain of thought s_1 ... s_L. Train "
    "and test input sequences are disjoint at every length."
)

TASK_DESCRIPTIONS = {
    "copy": "bits x_t in {0, 1}; F(s, x) = x, so the states repeat the input.",
    "parity": "bits x_t in {0, 1}; F(s, x) = s + x mod 2 with s_0 = 0: s_t is the running parity.",
    "polynomial": "x_t in {1, ..., p-1}; s_1 = x_1, then s_t = P(s_{t-1}, x_t) mod p (default P = s·x + 1, p = 11).",
    "mix": "copy and parity rows together (mix_ratio of them copy), each introduced by its own task token.",
    # A named config, not a task: the data of the polynomial recipe (configs/recipe/polynomial.yaml).
    "mix_polynomial": "copy and polynomial rows (p = 11, P = s·x + 1), what the polynomial recipe trains on "
                      "(configs/recipe/polynomial.yaml): 30% of each length's train rows copy where copy has "
                      "enough train sequences (L >= 10). Its test and test_longer are exactly those of the copy "
                      "and polynomial configs (what a run of the recipe holds out).",
}

_LIU = 'Liu et al., "Transformers Learn Shortcuts to Automata", ICLR 2023'
_BARRINGTON = ('Barrington, "Bounded-width polynomial-size branching programs recognize exactly those '
               'languages in NC^1", JCSS 1989')
# What each built-in task is, and where it comes from (task_description adds its states × inputs,
# counted on the task); tests/test_datasets.py checks every (non-)abelian / (not) solvable / not a
# group claim against tasks.structure.
_BUILTIN_TEXT = {
    "cyclic3": ("Z_3, the cyclic group of order 3 (abelian): s_t = s_{t-1} + x_t mod 3", _LIU),
    "cyclic5": ("Z_5, the cyclic group of order 5 (abelian): s_t = s_{t-1} + x_t mod 5", _LIU),
    "flipflop": ("a flip-flop, one bit of memory (an automaton, not a group): input 0 reads (keeps s), "
                 "1 writes 0, 2 writes 1", _LIU),
    "gridworld5": ("a walk on 0 … 4 that stops at the ends (an automaton, not a group): input 0 steps "
                   "left, 1 steps right", _LIU),
    "dihedral3": ("D_3, the symmetries of a triangle (non-abelian, solvable; it is S_3): s_t = s_{t-1} x_t, "
                  "r^k s^f is value k + 3f", _LIU),
    "quaternion": ("Q_8 = {±1, ±i, ±j, ±k} (non-abelian, solvable): s_t = s_{t-1} x_t, values 0 … 7 are "
                   "1, i, j, k, -1, -i, -j, -k", _LIU),
    "dihedral4": ("D_4, the symmetries of a square (non-abelian, solvable): s_t = s_{t-1} x_t, r^k s^f is "
                  "value k + 4f", _LIU),
    "alternating4": ("A_4, the even permutations of 4 points (non-abelian, solvable): s_t = s_{t-1} then "
                     "x_t, in lexicographic order", _LIU),
    "symmetric4": ("S_4, the permutations of 4 points (non-abelian, solvable): s_t = s_{t-1} then x_t, in "
                   "lexicographic order", _LIU),
    "alternating5": ("A_5, the even permutations of 5 points (non-abelian, not solvable: the smallest "
                     "non-solvable group): s_t = s_{t-1} then x_t", f"{_LIU}; {_BARRINGTON}"),
    "symmetric5": ("S_5, the permutations of 5 points (non-abelian, not solvable): s_t = s_{t-1} then x_t",
                   f"{_LIU}; {_BARRINGTON}"),
    "random5x3": ("a random automaton (not a group): each F(s, x) drawn uniformly among 5 states, "
                  "seed 0; a control with no structure", _LIU),
}

# Random streams: entropy = [seed, config task, sub-task, length, purpose].
_STREAM_IDS = {name: i for i, name in enumerate(TASKS)}
_POOL, _LONGER = 0, 1

# Digest of the generating code: part of the cache path, so editing the code never reuses stale data.
_HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_HASH = hashlib.sha256(b"".join(
    open(os.path.join(_HERE, f), "rb").read() for f in ("tasks.py", "iteration_tasks.py"))).hexdigest()[:16]


@functools.lru_cache(maxsize=64)
def _cached_task(name: str, modulus: int, polynomial: tuple) -> tasks.Task:
    task = tasks.make_task(name, modulus, polynomial)
    task.table.flags.writeable = False  # shared by every caller of _task
    return task


def _task(name: str, modulus: int = tasks.DEFAULT_MODULUS, polynomial=tasks.DEFAULT_POLYNOMIAL) -> tasks.Task:
    """``tasks.make_task``, built once per name and parameters: the builder asks for a task at every
    length, and S_5's table takes ~50 ms to build. A task file is read again every time (it may change)."""
    if isinstance(name, str) and not name.endswith((".json", ".yaml", ".yml")):
        try:
            key = (int(modulus), tuple(tuple(int(v) for v in term) for term in polynomial))
        except (TypeError, ValueError):
            return tasks.make_task(name, modulus, polynomial)  # raises, naming the bad value
        return _cached_task(name, *key)
    return tasks.make_task(name, modulus, polynomial)


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------
def _check_int(name: str, value, low: int, high: int | None = None, hint: str = "") -> None:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        allowed = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
        raise ValueError(f"{name}={value!r} is invalid: it must be {allowed}{hint}")


def _check_fraction(name: str, value) -> None:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    if not ok or not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name}={value!r} is invalid: it must be a number in the open interval (0, 1)")


@dataclass
class IterationTaskConfig(datasets.BuilderConfig):
    """One iterative-task dataset. Validated (and normalised) on creation.

    Attributes:
        task: ``copy``, ``parity``, ``polynomial`` or ``mix`` (copy + ``mix_with``).
        cot: write every state ``s_1 … s_L`` (chain of thought) or only ``s_L``.
        min_length, max_length: input lengths ``L`` of ``train`` / ``test`` (inclusive).
        examples_per_length: distinct input sequences drawn per length, before the train/test split
            (the reference effectively used 2048: 1024 train + 1024 test).
        test_fraction: share of each length's sequences that go to ``test``, in (0, 1). The default
            0.25 (not the reference's 0.5) keeps short lengths learnable: a half split of the four
            parity inputs of length 2 leaves train = {00, 11}, whose s_2 is always 0, and models
            learn that shortcut. These defaults are ``train.py``'s, so the test split of a default
            config is exactly what the released models never trained on.
        seed: base seed of every random stream.
        modulus: ``p`` of polynomial iteration, in [2, 57]; inputs are ``1 … p-1``.
        polynomial: ``P(s, x) mod p`` as ``(power_of_s, power_of_x, coefficient)`` triples.
        mix_ratio: share of copy rows in ``mix``, in (0, 1); the rest are ``mix_with``.
        mix_with: the task ``mix`` mixes copy rows with: ``parity`` (the named ``mix`` configs) or
            ``polynomial``. The same meaning as ``train.py``'s ``data.task=mix data.mix_with=…``.
        extrapolation_lengths: lengths ``> max_length`` for an extra ``test_longer`` split (empty: none).
        exhaustive_short_lengths: at lengths with fewer distinct sequences than asked, use them all
            (``True``) or raise ``ValueError`` (``False``).
        max_rows_per_length: keep at most this many of each length's drawn sequences (``None``: all):
            the first ``round(max_rows_per_length · test_fraction)`` of the length's test part and the
            first of its train part, and the first ``max_rows_per_length`` of each longer length's
            ``test_longer`` (per task of a mix, shared by ``mix_ratio``; a prefix of the
            ``round(examples_per_length · test_fraction)`` drawn there, all of them if fewer). The split
            itself stays that of ``examples_per_length``, so every kept test row is in the test split
            that ``train.py`` holds out at the same parameters; only the files get smaller (the named
            configs of ``BUILTIN_TASKS`` use ``BUILTIN_MAX_ROWS_PER_LENGTH``).
        task_splits: ``mix`` only: take each half's rows from that task's own config (the one
            ``run_split_config`` gives, which a ``train.py`` mix run holds out), so ``test`` (and
            ``test_longer``) is exactly the union of the ``copy`` and ``mix_with`` configs' splits, and
            ``train`` keeps, per length, the first ``mix_ratio`` share of ``examples_per_length`` minus
            its test count (1,536 at the defaults: 461 copy, 1,075 ``mix_with``) of each task's train
            part, all of it where that part is smaller (copy at L <= 9). The named ``mix_polynomial``.
        metadata: add a ``metadata`` column with each row's task parameters (``METADATA_FEATURES``,
            the dict ``row_metadata`` gives).
    """

    task: str = "parity"
    cot: bool = True
    min_length: int = 1
    max_length: int = 16
    examples_per_length: int = 2048
    test_fraction: float = 0.25
    seed: int = 0
    modulus: int = tasks.DEFAULT_MODULUS
    polynomial: tuple = tasks.DEFAULT_POLYNOMIAL
    mix_ratio: float = 0.5
    mix_with: str = "parity"
    extrapolation_lengths: tuple = ()
    exhaustive_short_lengths: bool = True
    max_rows_per_length: int | None = None
    task_splits: bool = False
    metadata: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.task not in TASKS:
            try:
                _task(self.task)  # any other task: a family or a task file
            except ValueError as err:
                raise ValueError(f"{err} (or mix: copy rows mixed with mix_with)") from None
        if not isinstance(self.cot, (bool, np.bool_)):
            raise ValueError(f"cot={self.cot!r} is invalid: it must be True or False")
        _check_int("min_length", self.min_length, 1)
        _check_int("max_length", self.max_length, 1)
        if self.min_length > self.max_length:
            raise ValueError(f"min_length={self.min_length} > max_length={self.max_length}: "
                             "min_length must be <= max_length")
        _check_int("examples_per_length", self.examples_per_length, 1)
        _check_fraction("test_fraction", self.test_fraction)
        _check_fraction("mix_ratio", self.mix_ratio)
        if self.mix_with not in MIX_WITH:
            raise ValueError(f"mix_with={self.mix_with!r} is unknown: choose one of {', '.join(MIX_WITH)}")
        _check_int("seed", self.seed, 0)
        _check_int("modulus", self.modulus, 2, tasks.MAX_VALUES, hint=" (the polynomial task's p)")
        if isinstance(self.polynomial, (str, bytes)):
            raise ValueError(f"polynomial={self.polynomial!r} is invalid: give (power_of_s, power_of_x, "
                             "coefficient) triples")
        try:
            self.polynomial = tuple(tuple(int(v) for v in term) for term in self.polynomial)
        except (TypeError, ValueError):
            raise ValueError(f"polynomial={self.polynomial!r} is invalid: give (power_of_s, power_of_x, "
                             "coefficient) triples") from None
        _task("polynomial", self.modulus, self.polynomial)  # raises on a bad polynomial
        if isinstance(self.extrapolation_lengths, (int, np.integer)):
            self.extrapolation_lengths = (self.extrapolation_lengths,)
        lengths = tuple(self.extrapolation_lengths or ())
        for length in lengths:
            _check_int("extrapolation_lengths", length, self.max_length + 1,
                       hint=f" (every longer length must exceed max_length={self.max_length})")
        self.extrapolation_lengths = tuple(sorted({int(v) for v in lengths}))
        if not isinstance(self.exhaustive_short_lengths, (bool, np.bool_)):
            raise ValueError(f"exhaustive_short_lengths={self.exhaustive_short_lengths!r} is invalid: "
                             "it must be True or False")
        if self.max_rows_per_length is not None:
            _check_int("max_rows_per_length", self.max_rows_per_length, 2,
                       hint=" (or None to keep every drawn sequence)")
        for flag in ("task_splits", "metadata"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise ValueError(f"{flag}={getattr(self, flag)!r} is invalid: it must be True or False")
        if self.task_splits and (self.task != "mix" or self.max_rows_per_length is not None):
            raise ValueError("task_splits=True takes each half of a mix from its own task's config: it needs "
                             f"task='mix' (got {self.task!r}) and max_rows_per_length=None")
        counts = length_counts(self)  # strict mode: raises on a length with too few distinct sequences
        for split in self.splits:  # datasets cannot read an empty split back
            if not sum(c[split] for c in counts):
                capped = self.max_rows_per_length is not None
                raise ValueError(
                    f"the {split!r} split would be empty: no length draws 2 or more distinct sequences per task "
                    f"(examples_per_length={self.examples_per_length}, modulus={self.modulus}"
                    + (f", max_rows_per_length={self.max_rows_per_length}" if capped else "") + "): "
                    "raise examples_per_length" + (" or max_rows_per_length" if capped else "")
                    + " (or modulus: p = 2 has a single input value)")

    @property
    def lengths(self) -> range:
        return range(self.min_length, self.max_length + 1)

    @property
    def splits(self) -> tuple[str, ...]:
        return SPLITS if self.extrapolation_lengths else SPLITS[:2]

    @property
    def dataset_features(self) -> datasets.Features:
        return FEATURES_WITH_METADATA if self.metadata else FEATURES

    @property
    def subtasks(self) -> tuple[str, ...]:
        return ("copy", self.mix_with) if self.task == "mix" else (self.task,)

    def make_task(self, name: str | None = None) -> tasks.Task:
        """The ``tasks.Task`` of this config (``name`` picks a half of ``mix``)."""
        name = self._subtask(name)
        return tasks.make_task(name, self.modulus, self.polynomial)

    def _task(self, name: str | None = None) -> tasks.Task:
        """:meth:`make_task`, shared and read-only (the builder's own look-ups)."""
        return _task(self._subtask(name), self.modulus, self.polynomial)

    def _subtask(self, name: str | None) -> str:
        if name is None:
            if self.task == "mix":
                raise ValueError(f"task=None is ambiguous for mix: choose one of {', '.join(self.subtasks)}")
            return self.task
        if name not in self.subtasks:
            raise ValueError(f"task={name!r} is not part of config task {self.task!r}: "
                             f"choose one of {', '.join(self.subtasks)}")
        return name


# ---------------------------------------------------------------------------------------------
# How many sequences, and which
# ---------------------------------------------------------------------------------------------
def _round(x: float) -> int:
    return int(math.floor(x + 0.5))  # half up; Python's round() would round half to even


def _share(config: IterationTaskConfig, n: int) -> dict[str, int]:
    """Split a per-length count among the config's sub-tasks (copy and ``mix_with`` for mix)."""
    if config.task != "mix":
        return {config.task: n}
    n_copy = _round(n * config.mix_ratio)
    return {"copy": n_copy, config.mix_with: n - n_copy}


def _cap(config: IterationTaskConfig, name: str, length: int, requested: int, available: int, longer: bool) -> int:
    """How many distinct sequences to draw: all that exist when fewer than asked (or raise, strict)."""
    if requested <= available:
        return requested
    if not config.exhaustive_short_lengths:
        asked = (f"extrapolation_lengths: length {length} needs round(examples_per_length · test_fraction)"
                 if longer else f"examples_per_length={config.examples_per_length} asks for")
        share = f" (mix_ratio={config.mix_ratio})" if config.task == "mix" else ""
        raise ValueError(
            f"{asked} {requested} distinct {name} sequences{share} of length {length}, but only {available} "
            "exist: lower examples_per_length, raise min_length, or set exhaustive_short_lengths=True")
    return available


def _test_count(drawn: int, test_fraction: float) -> int:
    """How many of ``drawn`` sequences go to test: the fraction, at least one on each side."""
    return min(max(_round(drawn * test_fraction), 1), drawn - 1) if drawn >= 2 else 0


def length_counts(config: IterationTaskConfig) -> list[dict]:
    """One row per (sub-task, length): distinct sequences that exist, drawn, and per split.

    Keys: ``task``, ``length``, ``available``, ``drawn``, ``train``, ``test``, ``test_longer``
    (the rows written: fewer than drawn under ``max_rows_per_length``).
    Raises ``ValueError`` in strict mode (``exhaustive_short_lengths=False``) when a length is short.
    """
    if config.task_splits:  # each half as its own task's config draws it; train a prefix (mix_ratio)
        want = _share(config, config.examples_per_length - _test_count(config.examples_per_length,
                                                                        config.test_fraction))
        rows = [dict(c, train=min(c["train"], want[name])) for name in config.subtasks
                for c in length_counts(_own_config(config, name))]
        order = {name: i for i, name in enumerate(config.subtasks)}
        return sorted(rows, key=lambda c: (c["length"], order[c["task"]]))
    rows = []
    n_longer = max(1, _round(config.examples_per_length * config.test_fraction))
    keep = config.max_rows_per_length
    keep_in = _share(config, keep) if keep is not None else {}
    keep_longer = _share(config, keep) if keep is not None else {}  # a longer length keeps up to the cap
    for length in list(config.lengths) + list(config.extrapolation_lengths):
        longer = length > config.max_length
        for name, requested in _share(config, n_longer if longer else config.examples_per_length).items():
            available = _task(name, config.modulus, config.polynomial).num_sequences(length)
            drawn = _cap(config, name, length, requested, available, longer)
            if longer:
                train, test, test_longer = 0, 0, min(drawn, keep_longer.get(name, drawn))
            else:
                test = _test_count(drawn, config.test_fraction)
                train, test_longer = drawn - test, 0
                if name in keep_in and drawn > keep_in[name]:  # a prefix of each side of the split
                    test = min(test, _test_count(keep_in[name], config.test_fraction))
                    train = min(train, keep_in[name] - test)
            rows.append(dict(task=name, length=length, available=available, drawn=drawn,
                             train=train, test=test, test_longer=test_longer))
    return rows


def _stream_id(name: str) -> int:
    """The paper's tasks keep their index in ``TASKS`` (their data never changes); any other task
    gets a digest of its name (``tasks.Task.stream_id``)."""
    return _STREAM_IDS[name] if name in _STREAM_IDS else _task(name).stream_id


def _rng(config: IterationTaskConfig, name: str, length: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng([int(config.seed), _stream_id(config.task), _stream_id(name), length, purpose])


def run_split_config(data: dict, task: str) -> IterationTaskConfig:
    """The builder config whose ``test`` split a training run held out for ``task``: ``data`` is the
    run's data section (``train_config.yaml``). A mix run takes each task's split from that task's
    own config, so it holds out exactly the released ``copy`` / ``parity`` test splits. The one place
    that decides which rows a run never trained on (training, ``evaluate.py``, the release)."""
    return IterationTaskConfig(
        name=re.sub(r"[^A-Za-z0-9_.-]", "_", task), task=task, cot=data["cot"], min_length=data["min_length"], max_length=data["max_length"],
        examples_per_length=data["examples_per_length"], test_fraction=data["test_fraction"], seed=data["seed"],
        modulus=data["modulus"], polynomial=data["polynomial"])


def _own_config(config: IterationTaskConfig, name: str) -> IterationTaskConfig:
    """The config of one half of a ``task_splits`` mix: ``name`` alone at the mix's parameters, as
    ``run_split_config`` builds it for a mix run (so the named ``copy`` / ``polynomial`` configs)."""
    return IterationTaskConfig(
        name=name, task=name, cot=config.cot, min_length=config.min_length, max_length=config.max_length,
        examples_per_length=config.examples_per_length, test_fraction=config.test_fraction, seed=config.seed,
        modulus=config.modulus, polynomial=config.polynomial, extrapolation_lengths=config.extrapolation_lengths,
        exhaustive_short_lengths=config.exhaustive_short_lengths)


def split_inputs(config: IterationTaskConfig, length: int, task: str | None = None) -> dict[str, np.ndarray]:
    """Input sequences ``(n, length)`` of one length, per split: ``{"train", "test"}`` for lengths in
    ``min_length … max_length``, ``{"test_longer"}`` for extrapolation lengths. ``task`` picks a half
    of ``mix``. Rows are distinct within and across the returned splits.
    """
    name = config._subtask(task)
    counts = [c for c in length_counts(config) if c["task"] == name and c["length"] == length]
    if not counts:
        raise ValueError(f"length={length} is not a length of this config: use min_length..max_length "
                         f"({config.min_length}..{config.max_length}) or extrapolation_lengths "
                         f"{list(config.extrapolation_lengths)}")
    c, longer = counts[0], length > config.max_length
    if config.task_splits:  # the task's own split: test (test_longer) whole, a prefix of train
        own = split_inputs(_own_config(config, name), length)
        return {split: rows[:c[split]] for split, rows in own.items()}
    purpose = _LONGER if longer else _POOL
    pool = tasks.sample_unique_inputs(config._task(name), length, c["drawn"], _rng(config, name, length, purpose))
    if longer:
        return {"test_longer": pool[:c["test_longer"]]}
    n_test = _test_count(c["drawn"], config.test_fraction)  # the whole split; max_rows_per_length keeps a prefix
    return {"test": pool[:n_test][:c["test"]], "train": pool[n_test:][:c["train"]]}


def drawn(inputs: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Which rows of ``inputs`` (``(n, length)``) hold a sequence also in ``among``: with the
    reference's data, the test draws that its train half drew too (a boolean mask)."""
    return SequenceSet(sequence_keys(among)).holds(inputs)


def paper_split_inputs(task: tasks.Task, length: int, n: int, seed: int) -> dict[str, np.ndarray]:
    """The reference's data for one length (``projects/cot`` of facebookresearch/pal): ``n`` sequences
    drawn uniformly *with replacement*, the first half for training and the second for testing. Train
    and test overlap where a length has few sequences (a length-2 bit string has 4 values: nearly every
    test input is a training input) and duplicates are kept; our builder's split
    (:func:`split_inputs`) is disjoint instead. Deterministic in ``(seed, task, length)``."""
    rng = np.random.default_rng([seed, task.stream_id, length, 2024])
    inputs = tasks.sample_inputs(task, length, n, rng)
    return {"train": inputs[:n // 2], "test": inputs[n // 2:]}


def generate_split(config: IterationTaskConfig, split: str) -> dict[int, np.ndarray]:
    """Token rows of one split, per input length: ``{L: int32 array (n_L, row_length(L, cot))}``.

    This is the dataset's ``input_ids`` column, grouped by length (no padding needed within a group).
    Order: by length, then (mix) copy rows before ``mix_with`` rows, each in random draw order.
    """
    if split not in config.splits:
        raise ValueError(f"split={split!r} is unknown for this config: choose one of {', '.join(config.splits)}")
    lengths = config.extrapolation_lengths if split == "test_longer" else config.lengths
    out = {}
    for length in lengths:
        blocks = [tasks.build_rows(config._task(name), split_inputs(config, length, name)[split],
                                   config.cot, dtype=np.int32) for name in config.subtasks]
        out[length] = np.concatenate(blocks)
    return out


_VOCAB_ARRAY = pa.array(tasks.vocabulary(tasks.MAX_VOCAB_SIZE), type=pa.string())
_TASK_OF_TOKEN = np.array([""] * tasks.VOCAB_SIZE, dtype=object)
for _name, _id in tasks.TASK_TOKEN_ID.items():
    _TASK_OF_TOKEN[_id] = _name


def _arrow_columns(rows: np.ndarray, length: int, task: str = "") -> list[pa.Array]:
    """The dataset columns for one length's rows, built without a Python loop over rows. ``task``
    names the rows that open with ``<bos>`` (every task but the paper's three)."""
    n, width = rows.shape
    offsets = pa.array(np.arange(0, n * width + 1, width, dtype=np.int32))
    input_ids = pa.ListArray.from_arrays(offsets, pa.array(rows.ravel(), type=pa.int32()))
    words = pa.ListArray.from_arrays(offsets, _VOCAB_ARRAY.take(pa.array(rows.ravel())))
    text = pc.binary_join(words, " ")  # == tasks.decode(row): rows hold no padding
    eoi = length + 1  # every row is <task> x_1 … x_L <eoi> …
    assert n == 0 or bool((rows[:, eoi] == tasks.EOI_ID).all()), "rows must have <eoi> after the L inputs"
    prompt = pc.binary_join(pc.list_slice(words, 0, eoi + 1), " ")
    completion = pc.binary_join(pc.list_slice(words, eoi + 1, width), " ")
    labels = np.where(tasks.loss_mask(rows), rows, -100).astype(np.int32)
    labels = pa.ListArray.from_arrays(offsets, pa.array(labels.ravel(), type=pa.int32()))
    return [input_ids, pa.array(np.full(n, length, dtype=np.int32)),
            pa.array(np.where(rows[:, 0] == tasks.BOS_ID, task, _TASK_OF_TOKEN[rows[:, 0]]), type=pa.string()),
            text, prompt, completion, labels]


def _length_table(config: IterationTaskConfig, rows: np.ndarray, length: int) -> pa.Table:
    """One length's rows as an Arrow table with the config's columns (``metadata`` when it has it)."""
    columns = _arrow_columns(rows, length, config.task)
    if config.metadata:
        meta = {name: row_metadata({"task": name, "length": length}, config) for name in config.subtasks}
        columns.append(pa.array([meta[name] for name in columns[2].to_pylist()],
                                type=FEATURES_WITH_METADATA.arrow_schema.field("metadata").type))
    return pa.Table.from_arrays(columns, schema=config.dataset_features.arrow_schema)


def split_table(config: IterationTaskConfig, split: str) -> pa.Table:
    """One split as an Arrow table with the dataset's exact columns and schema."""
    tables = [_length_table(config, rows, length) for length, rows in generate_split(config, split).items()]
    return pa.concat_tables(tables) if tables else config.dataset_features.arrow_schema.empty_table()


@functools.lru_cache(maxsize=256)
def _task_parameters(name: str, modulus: int, polynomial: tuple) -> dict:
    st = tasks.structure(_task(name, modulus, polynomial))
    poly = name == "polynomial"
    return {"modulus": modulus if poly else None, "polynomial": tasks.polynomial_text(polynomial) if poly else None,
            "states": st["states"], "inputs": st["inputs"], "group": st["group"]}


def row_metadata(row, config: str | IterationTaskConfig) -> dict:
    """The task parameters of one row (reasoning-gym's per-row ``metadata``): ``config``, the row's
    own ``task`` (a half of a mix), ``cot``, ``length``, ``modulus`` and ``polynomial`` (polynomial rows;
    else None), the task's ``states``, ``inputs`` and whether it is a ``group``, and the ``seed``.

    ``row``: a dataset row (``task`` and ``length`` are read); ``config``: its config's name (any named
    config, e.g. ``"parity"``) or the config itself. The ``metadata`` column of ``mix_polynomial`` holds
    exactly this dict; for the paper's configs, whose released files have no such column, this is how to
    get it: ``ds.map(lambda r: {"metadata": row_metadata(r, "parity")})``."""
    if isinstance(config, str):
        if config not in IterationTasks.builder_configs:
            raise ValueError(f"config={config!r} is not a named config: choose one of {', '.join(NAMED_CONFIG_NAMES)}")
        config = IterationTasks.builder_configs[config]
    task, length = row["task"], int(row["length"])
    if task not in config.subtasks:
        raise ValueError(f"row task {task!r} is not a task of config {config.name!r} ({', '.join(config.subtasks)})")
    return {"config": config.name, "task": task, "cot": bool(config.cot), "length": length,
            **_task_parameters(task, int(config.modulus), config.polynomial), "seed": int(config.seed)}


# ---------------------------------------------------------------------------------------------
# Fresh training data that never hits the test split
# ---------------------------------------------------------------------------------------------
def sequence_keys(inputs: np.ndarray) -> list[bytes]:
    """A hashable key per input row ``(n, L)``: its values as bytes (values are < 57)."""
    inputs = np.ascontiguousarray(inputs, dtype=np.uint8)
    return inputs.view(np.dtype((np.void, inputs.shape[1]))).ravel().tolist()


def test_sequences(config: IterationTaskConfig, task: str | None = None, split: str = "test") -> dict[int, set[bytes]]:
    """Keys (``sequence_keys``) of a split's input sequences, per length. ``task`` picks a half of mix."""
    lengths = config.extrapolation_lengths if split == "test_longer" else config.lengths
    return {length: set(sequence_keys(split_inputs(config, length, task)[split])) for length in lengths}


class SequenceSet(frozenset):
    """A frozen set of ``sequence_keys`` of one length that also tests a whole batch of input rows at
    once (``holds``): a 64-bit hash per row narrows the look-up to the rows that may be members, and
    only those are checked against the keys, so the answer is exact."""

    _WEIGHTS = np.random.default_rng(0x5E75).integers(1, 1 << 63, size=256, dtype=np.uint64) | np.uint64(1)

    def __new__(cls, keys: Iterable[bytes] = ()):
        self = super().__new__(cls, keys)
        widths = {len(k) for k in self}
        if len(widths) > 1:
            raise ValueError(f"a SequenceSet holds sequences of one length, got lengths {sorted(widths)}")
        rows = np.frombuffer(b"".join(self), dtype=np.uint8).reshape(len(self), widths.pop() if widths else 0)
        self._hashes = np.sort(cls._hash(rows))
        return self

    @classmethod
    def _hash(cls, inputs: np.ndarray) -> np.ndarray:
        inputs = np.asarray(inputs).astype(np.uint64)
        if inputs.shape[1] > len(cls._WEIGHTS):
            raise ValueError(f"sequences longer than {len(cls._WEIGHTS)} are not supported")
        return (inputs * cls._WEIGHTS[:inputs.shape[1]]).sum(axis=1)  # wraps mod 2**64

    def holds(self, inputs: np.ndarray) -> np.ndarray:
        """``(n,)`` booleans: which rows of ``inputs`` ``(n, L)`` are in the set."""
        if not self:
            return np.zeros(len(inputs), dtype=bool)
        h = self._hash(inputs)
        at = np.minimum(np.searchsorted(self._hashes, h), len(self._hashes) - 1)
        out = self._hashes[at] == h
        maybe = np.flatnonzero(out)
        if len(maybe):
            out[maybe] = [k in self for k in sequence_keys(np.asarray(inputs)[maybe])]
        return out


def sample_fresh_inputs(task: tasks.Task, length: int, n: int, rng: np.random.Generator,
                        exclude: Iterable[bytes] = ()) -> np.ndarray:
    """``n`` inputs ``(n, length)`` drawn uniformly with replacement among the sequences whose key is
    not in ``exclude`` (rejection sampling), e.g. ``exclude=test_sequences(config)[length]``. Pass a
    ``SequenceSet`` when drawing many times from one exclusion (training batches): it is built once.
    """
    exclude = exclude if isinstance(exclude, SequenceSet) else SequenceSet(exclude)
    if len(exclude) >= task.num_sequences(length):
        raise ValueError(f"exclude holds all {task.num_sequences(length)} sequences of length {length}: "
                         "nothing is left to draw")
    kept, have = [], 0
    while have < n:
        draw = tasks.sample_inputs(task, length, max(2 * (n - have), 64), rng)
        draw = draw[~exclude.holds(draw)]
        kept.append(draw[:n - have])
        have += len(kept[-1])
    return np.concatenate(kept)


# ---------------------------------------------------------------------------------------------
# What a task is
# ---------------------------------------------------------------------------------------------
def task_description(name: str) -> str:
    """One line on a task of the named configs: ``TASK_DESCRIPTIONS`` for the paper's, and for a
    built-in task its states × inputs (counted on the task), what it is and a reference."""
    if name in TASK_DESCRIPTIONS:
        return TASK_DESCRIPTIONS[name]
    task = _task(name)  # a task added to tasks.BUILTIN_TASKS without its text here gets a plain line
    text, reference = _BUILTIN_TEXT.get(name, (f"{name}, a built-in task", "datasets_builders.tasks.FAMILIES"))
    return f"{len(task.state_values)} states × {len(task.input_values)} inputs; {text} ({reference})."


# ---------------------------------------------------------------------------------------------
# The builder
# ---------------------------------------------------------------------------------------------
def _config(name: str, task: str, cot: bool, **fields) -> IterationTaskConfig:
    what = "with chain of thought (every state s_1 ... s_L)" if cot else "without chain of thought (only s_L)"
    capped = {} if task in TASKS else {"max_rows_per_length": BUILTIN_MAX_ROWS_PER_LENGTH}
    fields = {"extrapolation_lengths": PAPER_EXTRAPOLATION_LENGTHS, **capped, **fields}
    about = task_description(name if name in TASK_DESCRIPTIONS else task)
    return IterationTaskConfig(name=name, task=task, cot=cot, version=datasets.Version("1.0.0"),
                               description=f"{task}: {about} Answer {what}.", **fields)


# The paper's eight first (as released), then the built-in tasks' 24, then the copy + polynomial mix
# that the polynomial recipe trains on: (config name, task, cot, other fields).
_NAMED = ([(tasks.dataset_config_name(t, cot), t, cot, {}) for cot in (True, False) for t in TASKS]
          + [(tasks.dataset_config_name(t, cot), t, cot, {}) for cot in (True, False) for t in BUILTIN_TASKS]
          + [("mix_polynomial", "mix", True,
              dict(mix_with="polynomial", mix_ratio=0.3, task_splits=True, metadata=True))])
NAMED_CONFIG_NAMES = tuple(named[0] for named in _NAMED)


class _NamedConfigs(collections.abc.Sequence):
    """The named configs, validated on first use rather than at import: the built-in groups' tables
    (S_5's above all) take ~0.1 s to build, which importing this module (train.py, evaluate.py)
    should not pay."""

    def __init__(self):
        self._configs = None

    def _all(self) -> list[IterationTaskConfig]:
        if self._configs is None:
            self._configs = [_config(*named[:3], **named[3]) for named in _NAMED]
        return self._configs

    def __getitem__(self, i):
        return self._all()[i]

    def __len__(self) -> int:
        return len(_NAMED)

    def __repr__(self) -> str:
        return f"NAMED_CONFIGS({', '.join(NAMED_CONFIG_NAMES)})"


NAMED_CONFIGS = _NamedConfigs()


class IterationTasks(datasets.ArrowBasedBuilder):
    """Copy, parity, polynomial iteration, mix and the built-in groups and automata, with and without
    chain of thought.

    An ``ArrowBasedBuilder`` rather than a ``GeneratorBasedBuilder``: every length's rows are built
    as one Arrow table, and ``datasets``' per-example encoder costs ~13x more than the generation
    itself (1M rows: ~6 s here vs ~76 s for a per-row ``_generate_examples``, see
    ``bench/bench_generation.py``). Same configs, splits, features and data either way.
    """

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = IterationTaskConfig
    BUILDER_CONFIGS = NAMED_CONFIGS
    DEFAULT_CONFIG_NAME = "parity"
    DEFAULT_WRITER_BATCH_SIZE = 10_000  # rows are tiny; bigger Arrow batches write faster

    def __init__(self, *args, hash: str | None = None, **kwargs):
        super().__init__(*args, hash=hash or SOURCE_HASH, **kwargs)

    def _create_builder_config(self, config_name=None, custom_features=None, config_id=None, **config_kwargs):
        # A named config's test_longer lengths follow its max_length=16: another max_length drops them
        # unless extrapolation_lengths is given too.
        named = self.builder_configs.get(config_name or self.DEFAULT_CONFIG_NAME)
        if (named is not None and "extrapolation_lengths" not in config_kwargs
                and config_kwargs.get("max_length", named.max_length) != named.max_length):
            config_kwargs["extrapolation_lengths"] = ()
        # datasets overrides a named config's fields with setattr, which skips __post_init__: re-validate.
        config, config_id = super()._create_builder_config(config_name, custom_features, config_id, **config_kwargs)
        config.__post_init__()
        return config, config_id

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(description=DESCRIPTION, features=self.config.dataset_features, citation=CITATION,
                                    homepage="https://arxiv.org/abs/2406.02128")

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        return [datasets.SplitGenerator(name=split, gen_kwargs={"split": split}) for split in self.config.splits]

    def _generate_tables(self, split: str) -> Iterator[tuple[int, pa.Table]]:
        for length, rows in generate_split(self.config, split).items():
            yield length, _length_table(self.config, rows, length)


# ---------------------------------------------------------------------------------------------
# A verifier (reasoning-gym style): score(row, completion) -> 1.0 or 0.0
# ---------------------------------------------------------------------------------------------
_WORD_ID = {w: i for i, w in enumerate(tasks.vocabulary(tasks.MAX_VOCAB_SIZE))}


def _row_ids(row) -> list[int]:
    ids = row.get("input_ids") if isinstance(row, collections.abc.Mapping) else row
    if isinstance(ids, (str, bytes)) or not isinstance(ids, collections.abc.Iterable):
        raise ValueError(f"malformed row: expected a dataset row (a dict with 'input_ids') or its token ids, "
                         f"got {type(row).__name__}")
    ids = list(ids)
    if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in ids):
        raise ValueError(f"malformed row: input_ids must be whole numbers, got {ids[:8]!r}")
    ids = [int(i) for i in ids]
    if any(not 0 <= i < tasks.MAX_VOCAB_SIZE for i in ids):
        raise ValueError(f"malformed row: token id outside the vocabulary (0 … {tasks.MAX_VOCAB_SIZE - 1}) "
                         f"in {ids!r}")
    if ids.count(tasks.EOI_ID) != 1 or ids[-1] != tasks.EOS_ID or ids.count(tasks.EOS_ID) != 1:
        raise ValueError(f"malformed row {tasks.decode(ids, tasks.MAX_VOCAB_SIZE)!r}: a row is <task> x_1 … x_L "
                         f"<eoi> s_1 … s_L <eos> (or … <eoi> s_L <eos>), with one <eoi> and one final <eos>")
    length = ids.index(tasks.EOI_ID) - 1
    answer = len(ids) - length - 3  # the states (L with chain of thought, 1 without)
    if length < 1 or answer not in (length, 1):
        raise ValueError(f"malformed row {tasks.decode(ids, tasks.MAX_VOCAB_SIZE)!r}: {length} inputs but "
                         f"{answer} answer tokens before <eos> (expected {length}, or 1 without chain of thought)")
    if isinstance(row, collections.abc.Mapping) and row.get("length") is not None and int(row["length"]) != length:
        raise ValueError(f"malformed row: its 'length' is {row['length']} but its input_ids hold {length} inputs")
    return ids


def _completion_ids(completion, prompt: list[int]) -> list[int]:
    if isinstance(completion, str):
        words = completion.split()
        unknown = [w for w in words if w not in _WORD_ID]
        if unknown:
            raise ValueError(f"malformed completion {completion!r}: {unknown[0]!r} is not a word of the vocabulary "
                             f"(values, <eos>, …; separate the tokens with spaces)")
        ids = [_WORD_ID[w] for w in words]
    elif isinstance(completion, collections.abc.Iterable) and not isinstance(completion, (bytes, dict)):
        ids = list(np.asarray(completion).reshape(-1).tolist()) if isinstance(completion, np.ndarray) \
            else list(completion)
        if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in ids):
            raise ValueError(f"malformed completion: token ids must be whole numbers, got {ids[:8]!r}")
        ids = [int(i) for i in ids]
        if any(not 0 <= i < tasks.MAX_VOCAB_SIZE for i in ids):
            raise ValueError(f"malformed completion: token id outside the vocabulary "
                             f"(0 … {tasks.MAX_VOCAB_SIZE - 1}) in {ids!r}")
    else:
        raise ValueError(f"malformed completion: expected token ids or the answer's text, got "
                         f"{type(completion).__name__}")
    if ids[:len(prompt)] == prompt:  # the whole row generated (prompt + answer): keep the answer
        ids = ids[len(prompt):]
    ids = [i for i in ids if i != tasks.PAD_ID]
    return ids[:ids.index(tasks.EOS_ID) + 1] if tasks.EOS_ID in ids else ids


def score(row, completion) -> float:
    """1.0 when ``completion`` is the row's answer, else 0.0: every state ``s_1 … s_L`` (``s_L`` alone
    for a ``_nocot`` row) and then ``<eos>``, as the row's ``input_ids`` hold them after ``<eoi>``.

    ``row``: a dataset row as ``load_dataset`` returns it (a dict with ``input_ids``; ``length`` is
    checked when present) or its token ids. ``completion``: token ids or text (``"1 1 0 <eos>"``, the
    ``completion`` column's form); a completion that repeats the prompt (``<task> x_1 … x_L <eoi>``, e.g.
    a whole ``generate`` output) is scored on what follows it; ``<pad>`` tokens are dropped and
    anything after the first ``<eos>`` is ignored. A missing ``<eos>`` or a wrong state scores 0.0.
    The reference is the row itself (the states are not recomputed: a config with another modulus or
    polynomial scores the same way). ``ValueError`` names a malformed row (no single ``<eoi>``, no final
    ``<eos>``, an answer of the wrong size, a ``length`` that disagrees) or completion (unknown word,
    id outside the vocabulary, not ids or text)."""
    ids = _row_ids(row)
    eoi = ids.index(tasks.EOI_ID)
    got = _completion_ids(completion, ids[:eoi + 1])
    return 1.0 if got == ids[eoi + 1:] else 0.0
