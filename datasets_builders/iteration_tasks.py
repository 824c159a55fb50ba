"""The paper's iterative tasks as a ``datasets`` builder: copy, parity, polynomial iteration, mix.

Eight named configs, each task with and without chain of thought::

    copy  parity  polynomial  mix  copy_nocot  parity_nocot  polynomial_nocot  mix_nocot

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
    "TASKS", "MIX_TASKS", "MIX_WITH", "SPLITS", "FEATURES", "CITATION", "NAMED_CONFIGS", "SOURCE_HASH",
    "IterationTaskConfig", "IterationTasks",
    "length_counts", "run_split_config", "split_inputs", "generate_split", "split_table",
    "sequence_keys", "test_sequences", "sample_fresh_inputs",
]

TASKS = ("copy", "parity", "polynomial", "mix")
MIX_TASKS = ("copy", "parity")  # the two halves of ``mix`` by default (``mix_with`` picks the second)
MIX_WITH = ("parity", "polynomial")  # what ``mix`` may mix copy rows with
SPLITS = ("train", "test", "test_longer")

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
    "s_t = F(s_{t-1}, x_t) for copy, parity and polynomial iteration mod p, with or without the chain "
    "of thought s_1 ... s_L. Train and test input sequences are disjoint at every length."
)

TASK_DESCRIPTIONS = {
    "copy": "bits x_t in {0, 1}; F(s, x) = x, so the states repeat the input.",
    "parity": "bits x_t in {0, 1}; F(s, x) = s + x mod 2 with s_0 = 0: s_t is the running parity.",
    "polynomial": "x_t in {1, ..., p-1}; s_1 = x_1, then s_t = P(s_{t-1}, x_t) mod p (default P = s·x + 1, p = 11).",
    "mix": "copy and parity rows together (mix_ratio of them copy), each introduced by its own task token.",
}

# Random streams: entropy = [seed, config task, sub-task, length, purpose].
_STREAM_IDS = {name: i for i, name in enumerate(TASKS)}
_POOL, _LONGER = 0, 1

# Digest of the generating code: part of the cache path, so editing the code never reuses stale data.
_HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_HASH = hashlib.sha256(b"".join(
    open(os.path.join(_HERE, f), "rb").read() for f in ("tasks.py", "iteration_tasks.py"))).hexdigest()[:16]


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

    def __post_init__(self):
        super().__post_init__()
        if self.task not in TASKS:
            try:
                tasks.make_task(self.task)  # any other task: a family or a task file
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
        tasks.make_task("polynomial", self.modulus, self.polynomial)  # raises on a bad polynomial
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
        counts = length_counts(self)  # strict mode: raises on a length with too few distinct sequences
        for split in self.splits:  # datasets cannot read an empty split back
            if not sum(c[split] for c in counts):
                raise ValueError(
                    f"the {split!r} split would be empty: no length draws 2 or more distinct sequences per task "
                    f"(examples_per_length={self.examples_per_length}, modulus={self.modulus}): "
                    "raise examples_per_length (or modulus: p = 2 has a single input value)")

    @property
    def lengths(self) -> range:
        return range(self.min_length, self.max_length + 1)

    @property
    def splits(self) -> tuple[str, ...]:
        return SPLITS if self.extrapolation_lengths else SPLITS[:2]

    @property
    def subtasks(self) -> tuple[str, ...]:
        return ("copy", self.mix_with) if self.task == "mix" else (self.task,)

    def make_task(self, name: str | None = None) -> tasks.Task:
        """The ``tasks.Task`` of this config (``name`` picks a half of ``mix``)."""
        name = self._subtask(name)
        return tasks.make_task(name, self.modulus, self.polynomial)

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


def length_counts(config: IterationTaskConfig) -> list[dict]:
    """One row per (sub-task, length): distinct sequences that exist, drawn, and per split.

    Keys: ``task``, ``length``, ``available``, ``drawn``, ``train``, ``test``, ``test_longer``.
    Raises ``ValueError`` in strict mode (``exhaustive_short_lengths=False``) when a length is short.
    """
    rows = []
    n_longer = max(1, _round(config.examples_per_length * config.test_fraction))
    for length in list(config.lengths) + list(config.extrapolation_lengths):
        longer = length > config.max_length
        for name, requested in _share(config, n_longer if longer else config.examples_per_length).items():
            available = tasks.make_task(name, config.modulus, config.polynomial).num_sequences(length)
            drawn = _cap(config, name, length, requested, available, longer)
            if longer:
                train, test, test_longer = 0, 0, drawn
            else:
                test = min(max(_round(drawn * config.test_fraction), 1), drawn - 1) if drawn >= 2 else 0
                train, test_longer = drawn - test, 0
            rows.append(dict(task=name, length=length, available=available, drawn=drawn,
                             train=train, test=test, test_longer=test_longer))
    return rows


def _stream_id(name: str) -> int:
    """The paper's tasks keep their index in ``TASKS`` (their data never changes); any other task
    gets a digest of its name (``tasks.Task.stream_id``)."""
    return _STREAM_IDS[name] if name in _STREAM_IDS else tasks.make_task(name).stream_id


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
    purpose = _LONGER if longer else _POOL
    pool = tasks.sample_unique_inputs(config.make_task(name), length, c["drawn"], _rng(config, name, length, purpose))
    if longer:
        return {"test_longer": pool}
    return {"test": pool[:c["test"]], "train": pool[c["test"]:]}


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
        blocks = [tasks.build_rows(config.make_task(name), split_inputs(config, length, name)[split],
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


def split_table(config: IterationTaskConfig, split: str) -> pa.Table:
    """One split as an Arrow table with the dataset's exact columns and schema."""
    schema = FEATURES.arrow_schema
    tables = [pa.Table.from_arrays(_arrow_columns(rows, length, config.task), schema=schema)
              for length, rows in generate_split(config, split).items()]
    return pa.concat_tables(tables) if tables else schema.empty_table()


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


def sample_fresh_inputs(task: tasks.Task, length: int, n: int, rng: np.random.Generator,
                        exclude: Iterable[bytes] = ()) -> np.ndarray:
    """``n`` inputs ``(n, length)`` drawn uniformly with replacement among the sequences whose key is
    not in ``exclude`` (rejection sampling), e.g. ``exclude=test_sequences(config)[length]``.
    """
    exclude = exclude if isinstance(exclude, (set, frozenset)) else set(exclude)
    if len(exclude) >= task.num_sequences(length):
        raise ValueError(f"exclude holds all {task.num_sequences(length)} sequences of length {length}: "
                         "nothing is left to draw")
    kept, have = [], 0
    while have < n:
        draw = tasks.sample_inputs(task, length, max(2 * (n - have), 64), rng)
        draw = draw[np.fromiter((k not in exclude for k in sequence_keys(draw)), bool, len(draw))]
        kept.append(draw[:n - have])
        have += len(kept[-1])
    return np.concatenate(kept)


# ---------------------------------------------------------------------------------------------
# The builder
# ---------------------------------------------------------------------------------------------
def _config(name: str, task: str, cot: bool) -> IterationTaskConfig:
    what = "with chain of thought (every state s_1 ... s_L)" if cot else "without chain of thought (only s_L)"
    return IterationTaskConfig(name=name, task=task, cot=cot, version=datasets.Version("1.0.0"),
                               description=f"{task}: {TASK_DESCRIPTIONS[task]} Answer {what}.")


NAMED_CONFIGS = [_config(tasks.dataset_config_name(t, cot), t, cot) for cot in (True, False) for t in TASKS]


class IterationTasks(datasets.ArrowBasedBuilder):
    """Copy, parity, polynomial iteration and mix, with and without chain of thought.

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
        # datasets overrides a named config's fields with setattr, which skips __post_init__: re-validate.
        config, config_id = super()._create_builder_config(config_name, custom_features, config_id, **config_kwargs)
        config.__post_init__()
        return config, config_id

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(description=DESCRIPTION, features=FEATURES, citation=CITATION,
                                    homepage="https://arxiv.org/abs/2406.02128")

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        return [datasets.SplitGenerator(name=split, gen_kwargs={"split": split}) for split in self.config.splits]

    def _generate_tables(self, split: str) -> Iterator[tuple[int, pa.Table]]:
        schema = FEATURES.arrow_schema
        for length, rows in generate_split(self.config, split).items():
            yield length, pa.Table.from_arrays(_arrow_columns(rows, length, self.config.task), schema=schema)
