"""Evaluate a checkpoint on an iterative task: teacher-forced and generated chain-of-thought accuracy.

The reusable half of ``evaluate.py`` (which is only a command line around this module):

- :func:`generated_correct` -- greedy ``generate`` from ``<task> x_1 … x_L <eoi>`` (batched, rows
  grouped by length so no padding is needed, with or without the KV cache) and, per row, whether
  the whole answer (every state and the closing ``<eos>``) is right and whether the final state
  ``s_L`` is right;
- :func:`evaluate_model` -- per input length: teacher-forced sequence accuracy (through
  :func:`modeling.analysis.evaluate_lengths`, the one implementation shared with ``train.py``),
  generated accuracy, and optionally the head scores of every (layer, head);
- :func:`read_split` / :func:`load_dataset_rows` / :func:`run_test_rows` -- the evaluation rows read,
  and validated, from a dataset in Hub layout (``load_dataset(folder_or_repo, "parity")``, or
  ``"parity_nocot"`` without chain of thought; ``read_split`` is also training's reader) or from the
  run's test split; sampled rows come from
  :func:`modeling.analysis.sample_rows` (seeded per length);
- :func:`sequence_accuracy` -- exact-match, token and per-position accuracy of generated answers
  (the numbers of the ``metrics/sequence_accuracy`` module, without importing ``evaluate``);
- :func:`build_results` / :func:`to_model_index` / :func:`format_table` -- the ``eval_results.json``
  document, its Hub ``model-index`` entries (ready for a model card's YAML) and a readable table.

Teacher-forced and generated *sequence* accuracy measure the same event for a greedy decoder: the
generation is right exactly when every argmax under teacher forcing is right. They can differ only
through numerics (a near tie resolved differently by the cached and the full forward pass), so a
gap between them points at a bug in the model's cache or masking, not at the model's skill. The
generated numbers add the *final-answer* accuracy (only ``s_L`` right), which teacher forcing
cannot give.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from transformers import GenerationConfig

try:  # inside the repository
    from datasets_builders import tasks
except ImportError:  # pragma: no cover - shipped next to a checkpoint: tasks.py sits beside this file
    import tasks  # type: ignore[no-redef]

from . import analysis

__all__ = [
    "DatasetFormatError",
    "GENERATED",
    "GENERATED_FINAL",
    "Generated",
    "METRIC_PATH",
    "RUN_FILES",
    "TEACHER_FORCED",
    "answer_slice",
    "build_results",
    "check_lengths",
    "check_model",
    "drop_trained_rows",
    "evaluate_model",
    "find_run_settings",
    "format_table",
    "generate_answers",
    "generated_correct",
    "load_dataset_rows",
    "read_split",
    "max_length_in_context",
    "n_positions_of",
    "run_test_rows",
    "run_training_data",
    "sequence_accuracy",
    "to_model_index",
    "trim_at_eos",
    "validate_rows",
]

#: The ``evaluate`` metric module of this repository (``evaluate.load(METRIC_PATH)`` works offline).
METRIC_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "metrics",
                           "sequence_accuracy")

# Metric types of the model-index entries (Hub `model-index`: metrics[].type).
TEACHER_FORCED = "sequence_accuracy_teacher_forced"
GENERATED = "sequence_accuracy_generated"
GENERATED_FINAL = "final_answer_accuracy_generated"


class DatasetFormatError(ValueError):
    """A dataset split that is not in the release's format (columns, token ids, row layout)."""


# ---------------------------------------------------------------------------------------------
# Lengths, context and model checks
# ---------------------------------------------------------------------------------------------
def max_length_in_context(n_positions: int, cot: bool = True) -> int:
    """The longest input length whose whole row (``tasks.row_length``) fits in ``n_positions``."""
    if cot:
        return (n_positions - 3) // 2  # 2L + 3 <= n_positions
    return n_positions - 4  # L + 4 <= n_positions


def n_positions_of(model) -> int:
    """The model's context length (``n_positions``, or the standard ``max_position_embeddings``)."""
    config = model.config
    value = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    if not value:
        raise ValueError("the model's config states no context length (n_positions)")
    return int(value)


def check_lengths(lengths: Iterable[int], n_positions: int, cot: bool = True) -> None:
    """Raise a ``ValueError`` naming the lengths whose rows do not fit in the model's context."""
    limit = max_length_in_context(n_positions, cot)
    too_long = [L for L in lengths if L > limit]
    if too_long:
        rows = "2L+3" if cot else "L+4"
        raise ValueError(
            f"lengths {too_long} do not fit in the model's context: a row of input length L has {rows} "
            f"tokens and n_positions={n_positions}, so the longest evaluable length is {limit}"
        )


check_model = analysis.check_model  # the one vocabulary check (also shipped with each checkpoint)


RUN_FILES = ("training_info.json", "run_config.json", "train_config.json", "training_args.json", "run.json")


def _dicts(data: dict) -> list[dict]:
    """``data`` and every dict nested in it, breadth first (run files nest their settings)."""
    out, queue = [], [data]
    while queue:
        d = queue.pop(0)
        out.append(d)
        queue.extend(v for v in d.values() if isinstance(v, dict))
    return out


def find_run_settings(model, source: str | None = None) -> dict[str, Any]:
    """What the checkpoint says about its training: ``task``, ``cot``, ``train_max_length``,
    ``modulus``, ``polynomial`` (and ``tasks``, the two tasks of a ``mix`` run).

    Looked up, first hit wins, in the model's config (attributes ``task``, ``cot``,
    ``train_max_length`` / ``max_train_length`` / ``n_len`` / ``train_lengths``, ``modulus``,
    ``polynomial``) and then, for a local folder, in the run files :data:`RUN_FILES` at any nesting
    depth (``train.py`` writes ``training_info.json`` with ``train_config.data.{task, cot,
    max_length, modulus, polynomial}``); run files may also say ``max_length`` or ``lengths``.
    Keys that are not found are left out.
    """
    candidates: list[tuple[dict, bool]] = [(dict(getattr(model.config, "__dict__", {})), True)]
    if source and os.path.isdir(source):
        for name in RUN_FILES:
            path = os.path.join(source, name)
            if not os.path.isfile(path):
                continue
            try:
                with open(path, encoding="utf-8") as f:
                    data = json.load(f)
            except (OSError, ValueError) as err:  # never read as "the checkpoint does not say"
                raise ValueError(f"{path} is damaged ({err}): restore it, or move it away and pass --task "
                                 "(and --lengths) yourself") from None
            if isinstance(data, dict):
                candidates.extend((d, False) for d in _dicts(data))
    found: dict[str, Any] = {}
    for data, is_config in candidates:
        if "task" not in found and _known_task(data.get("task")):
            found["task"] = data["task"]
        elif "task" not in found and data.get("task") == "mix":  # copy rows + the task it is for
            found["task"] = data.get("mix_with", "parity")
            found["tasks"] = ("copy", found["task"])
        if "cot" not in found and isinstance(data.get("cot"), bool):
            found["cot"] = data["cot"]
        if "modulus" not in found and _is_positive_int(data.get("modulus")):
            found["modulus"] = data["modulus"]
        if "polynomial" not in found and isinstance(data.get("polynomial"), (list, tuple)) and data["polynomial"]:
            found["polynomial"] = [tuple(term) for term in data["polynomial"]]
        if "train_max_length" not in found:
            # In a model config `max_length` is a generation default, not a training length.
            keys = ("train_max_length", "max_train_length", "n_len", "train_lengths")
            keys += () if is_config else ("max_length", "lengths")
            for key in keys:
                value = data.get(key)
                if isinstance(value, (list, tuple)) and value and all(_is_positive_int(v) for v in value):
                    value = max(value)
                if _is_positive_int(value):
                    found["train_max_length"] = value
                    break
    return found


def _known_task(name) -> bool:
    """A task name ``tasks.make_task`` builds (the paper's, a family, an existing task file); not mix."""
    if not isinstance(name, str) or name == "mix":
        return False
    try:
        tasks.make_task(name)
    except ValueError:
        return False
    return True


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# ---------------------------------------------------------------------------------------------
# Evaluation rows
# ---------------------------------------------------------------------------------------------
def run_training_data(source: str | None) -> dict | None:
    """The data section of the run that trained the checkpoint ``source``: ``train_config.data`` of
    its ``training_info.json``, read from a local folder or, for a Hub id, from the repository (or
    the cache offline). ``None`` when there is no such file (a checkpoint ``train.py`` did not make)."""
    if not source:
        return None
    if os.path.isdir(source):
        path = os.path.join(source, "training_info.json")
        if not os.path.isfile(path):
            return None
    else:
        from huggingface_hub import hf_hub_download  # noqa: PLC0415
        from huggingface_hub.errors import EntryNotFoundError  # noqa: PLC0415
        try:
            path = hf_hub_download(source, "training_info.json")
        except (OSError, ValueError, EntryNotFoundError):  # not a repo id, no such file, offline and not cached
            return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f).get("train_config", {}).get("data")
    except (OSError, ValueError) as err:  # never read as "no run": the held-out rows depend on it
        raise ValueError(f"{path} is damaged ({err}): restore it (which rows are held out from the run is "
                         "read from it), or evaluate a copy of the model folder without it") from None
    return data if isinstance(data, dict) else None


def drop_trained_rows(rows: dict[int, np.ndarray], data: dict | None,
                      task_name: str) -> tuple[dict[int, np.ndarray], dict[int, int]]:
    """``rows`` (``{L: rows}``) less every row the run trained on, where a test split can hold some.

    A run on the reference's data (``data.source=paper``, ``data`` its data section) drew its train
    half with replacement from all sequences of a length, so a dataset's test split holds training
    sequences too: all of them at the shortest lengths. Those rows are dropped, and a length with
    none left is left out. Any other run trained on sequences outside the builder's test split, so
    ``rows`` come back unchanged. Returns ``(kept, {L: rows dropped})``; the order of kept rows is kept.
    """
    if not data or data.get("source") != "paper" or data.get("task") not in (task_name, "mix"):
        return rows, {}
    from datasets_builders.iteration_tasks import drawn, paper_split_inputs, run_split_config  # noqa: PLC0415

    config = run_split_config(data, task_name)
    task = config.make_task()
    kept, dropped = {}, {}
    for L, block in rows.items():
        mask = np.zeros(len(block), dtype=bool)
        if config.min_length <= L <= config.max_length and len(block):
            train = paper_split_inputs(task, L, config.examples_per_length, config.seed)["train"]
            mask = drawn(np.asarray(block)[:, 1:L + 1], train)
        if mask.any():
            dropped[L] = int(mask.sum())
        if (~mask).any():
            kept[L] = np.asarray(block)[~mask]
    return kept, dropped


def run_test_rows(source: str, task_name: str, lengths: Iterable[int], n_per_length: int,
                  cot: bool = True) -> dict[int, np.ndarray] | None:
    """The held-out rows of the run that trained the checkpoint in folder ``source``.

    ``train.py`` writes ``training_info.json`` with its data config; the builder's test split of
    that config (same seed and sizes) holds sequences the run never trained on (fresh draws
    exclude them). A run on the reference's data (``data.source=paper``) is tested on the
    reference's test half *less every sequence its train half also drew*: the two halves overlap
    where a length has few sequences, and at the shortest lengths nothing is left (an empty block:
    no held-out row exists, so the length is not evaluated). Returns ``{L: rows}`` for the lengths
    inside the training range, at most ``n_per_length`` each, or ``None`` when ``source`` is not
    such a run folder.
    """
    data = run_training_data(source) if os.path.isdir(source) else None
    if not data or data.get("dataset") or data.get("task") not in (task_name, "mix"):
        return None
    from datasets_builders.iteration_tasks import paper_split_inputs, run_split_config, split_inputs  # noqa: PLC0415

    config = run_split_config({**data, "cot": cot}, task_name)
    task = config.make_task()
    lengths = [L for L in lengths if config.min_length <= L <= config.max_length]
    if data.get("source") != "paper":
        return {L: tasks.build_rows(task, split_inputs(config, L)["test"][:n_per_length], cot) for L in lengths}
    # The reference's test half, less what its train half drew (drop_trained_rows); empty where nothing is left.
    halves = {L: tasks.build_rows(task, paper_split_inputs(task, L, config.examples_per_length, config.seed)["test"], cot)
              for L in lengths}
    kept, _ = drop_trained_rows(halves, data, task_name)
    return {L: kept[L][:n_per_length] if L in kept else halves[L][:0] for L in lengths}


def _is_int_list_feature(feature) -> bool:
    import datasets  # noqa: PLC0415 - only needed for datasets

    inner = getattr(feature, "feature", None)
    if not isinstance(feature, (datasets.List, datasets.LargeList, datasets.Sequence)) or inner is None:
        return False
    return isinstance(inner, datasets.Value) and inner.dtype.startswith(("int", "uint"))


def validate_rows(rows: Sequence[Sequence[int]], lengths: Sequence[int], task: tasks.Task,
                  cot: bool = True, where: str = "dataset") -> dict[int, np.ndarray]:
    """Check rows against the release's layout and group them: ``{L: rows (n, row_length)}``.

    Every row must hold ids in ``[0, 64)``, have ``row_length(L)`` tokens for its ``length``, start
    with the task token and equal ``tasks.build_rows`` of its own inputs (right ``<eoi>``, states and
    ``<eos>``). Raises :class:`DatasetFormatError` naming the first bad row.
    """
    if len(rows) != len(lengths):
        raise DatasetFormatError(f"{where}: {len(rows)} rows but {len(lengths)} lengths")
    by_length: dict[int, list[int]] = {}
    for i, (row, L) in enumerate(zip(rows, lengths)):
        if not isinstance(L, (int, np.integer)) or L < 1:
            raise DatasetFormatError(f"{where}: row {i} has length={L!r}; lengths must be integers >= 1")
        if row is None or len(row) != tasks.row_length(int(L), cot):
            other = tasks.row_length(int(L), not cot)
            hint = (f" (that is the {'no-' if cot else ''}chain-of-thought layout: "
                    f"{'pass --no-cot' if cot else 'drop --no-cot'})") if row is not None and len(row) == other else ""
            raise DatasetFormatError(
                f"{where}: row {i} has {0 if row is None else len(row)} tokens but length={L} needs "
                f"{tasks.row_length(int(L), cot)} with{'' if cot else 'out'} chain of thought{hint}"
            )
        by_length.setdefault(int(L), []).append(i)
    out = {}
    for L, index in sorted(by_length.items()):
        block = np.asarray([rows[i] for i in index], dtype=np.int64)  # (n, row_length)
        bad = np.flatnonzero(((block < 0) | (block >= task.vocab_size)).any(axis=1))
        if len(bad):
            raise DatasetFormatError(
                f"{where}: row {index[bad[0]]} has token ids outside [0, {task.vocab_size}): "
                f"{block[bad[0]].tolist()}"
            )
        inputs = block[:, 1:L + 1]
        bad = np.flatnonzero(~np.isin(inputs, task.input_values).all(axis=1) | (block[:, 0] != task.token_id))
        if len(bad):
            raise DatasetFormatError(
                f"{where}: row {index[bad[0]]} is not a {task.name!r} example (its task token or an input "
                f"value is wrong): {tasks.decode(block[bad[0]], task.vocab_size)!r}"
            )
        expected = tasks.build_rows(task, inputs, cot)
        bad = np.flatnonzero((block != expected).any(axis=1))
        if len(bad):
            raise DatasetFormatError(
                f"{where}: row {index[bad[0]]} is malformed: {tasks.decode(block[bad[0]], task.vocab_size)!r}, expected "
                f"{tasks.decode(expected[bad[0]], task.vocab_size)!r}"
            )
        out[L] = block
    return out


def _causes(err: BaseException) -> str:
    """The messages of an exception and of what caused it (``datasets`` wraps the real reason)."""
    messages, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if str(err) and str(err) not in messages:
            messages.append(str(err))
        err = err.__cause__ or err.__context__
    return ": ".join(messages)


def read_split(dataset: str, config: str, split: str, tasks_by_name: dict[str, tasks.Task], cot: bool = True,
               lengths: Iterable[int] | None = None, n_per_length: int | None = None
               ) -> dict[tuple[str, int], np.ndarray]:
    """Rows of one split of a Hub-layout dataset (``load_dataset(dataset, config)``), validated and
    grouped: ``{(task name, L): rows (n, row_length(L))}``. The one dataset reader (evaluation,
    training with ``data.dataset``, the release).

    Required columns: ``input_ids`` (a list of integers) and ``length``. ``task``, when present, must
    name only tasks of ``tasks_by_name`` (a ``mix`` dataset names two); without it the dataset must be
    of a single task. Keeps the first ``n_per_length`` rows of each (task, length) (all when ``None``)
    and only ``lengths`` when given: then every task must have every length (a trained length that
    is never tested would escape the stop rule). Raises :class:`DatasetFormatError`.
    """
    import datasets  # noqa: PLC0415 - imported only on this path

    where = f"dataset {dataset!r} (config {config!r}, split {split!r})"
    try:
        ds = datasets.load_dataset(dataset, config, split=split)
    except Exception as err:  # noqa: BLE001 - datasets raises many types; report the root cause
        reason = _causes(err)
        if "BatchSize must be greater than 0" in reason:  # pyarrow's word for a parquet file with no rows
            raise DatasetFormatError(f"{where} is empty (its data file has no rows)") from err
        raise DatasetFormatError(f"{where} could not be loaded: {reason}") from err
    missing = [c for c in ("input_ids", "length") if c not in ds.column_names]
    if missing:
        raise DatasetFormatError(f"{where} lacks the column(s) {missing}; it has {ds.column_names}")
    if not _is_int_list_feature(ds.features["input_ids"]):
        raise DatasetFormatError(f"{where}: column 'input_ids' must be a list of integers, "
                                 f"got {ds.features['input_ids']}")
    if len(ds) == 0:
        raise DatasetFormatError(f"{where} is empty")
    table = ds.data
    all_lengths = table.column("length").to_pylist()
    if "task" in ds.column_names:
        names = table.column("task").to_pylist()
        unknown = sorted(set(map(str, names)) - set(tasks_by_name))
        if unknown:
            raise DatasetFormatError(f"{where}: its 'task' column holds {sorted(set(map(str, names)))}, "
                                     f"not only {sorted(tasks_by_name)}")
    elif len(tasks_by_name) == 1:
        names = [next(iter(tasks_by_name))] * len(all_lengths)
    else:
        raise DatasetFormatError(f"{where} has no 'task' column: it cannot hold the rows of "
                                 f"{sorted(tasks_by_name)} apart")
    keep = None if lengths is None else {int(L) for L in lengths}
    chosen: dict[str, list[int]] = {name: [] for name in tasks_by_name}
    counts: dict[tuple[str, int], int] = {}
    for i, (name, L) in enumerate(zip(names, all_lengths)):
        if (keep is not None and L not in keep) or counts.get((name, L), 0) == n_per_length:
            continue
        counts[name, L] = counts.get((name, L), 0) + 1
        chosen[name].append(i)
    if keep is not None:
        for name in tasks_by_name:
            absent = sorted(keep - {L for n, L in counts if n == name})
            if absent:
                which = f" of task {name!r}" if len(tasks_by_name) > 1 else ""
                raise DatasetFormatError(f"{where} has no rows{which} of length(s) {absent}; "
                                         f"it has lengths {sorted(set(all_lengths))}")
    out = {}
    for name, index in chosen.items():
        ids = table.column("input_ids").take(index).to_pylist()
        rows = validate_rows(ids, [all_lengths[i] for i in index], tasks_by_name[name], cot, where)
        out.update({(name, L): block for L, block in rows.items()})
    return out


def load_dataset_rows(dataset: str, task: tasks.Task, split: str = "test", cot: bool = True,
                      lengths: Iterable[int] | None = None, n_per_length: int | None = None,
                      config: str | None = None) -> dict[int, np.ndarray]:
    """The rows of ``task`` in one split, ``{L: rows}`` (:func:`read_split` for a single task).
    ``config`` defaults to ``tasks.dataset_config_name`` (``parity`` / ``parity_nocot``)."""
    config = config or tasks.dataset_config_name(task.name, cot)
    rows = read_split(dataset, config, split, {task.name: task}, cot, lengths, n_per_length)
    return {L: block for (_, L), block in rows.items()}


# ---------------------------------------------------------------------------------------------
# Generated chain of thought
# ---------------------------------------------------------------------------------------------
def answer_slice(length: int) -> slice:
    """Where the answer (states, or ``s_L`` alone, then ``<eos>``) sits in a row of input length L."""
    return slice(tasks.eoi_position(length) + 1, None)


def trim_at_eos(tokens: Sequence[int]) -> list[int]:
    """The tokens up to and including the first ``<eos>`` (everything, when there is none)."""
    tokens = [int(t) for t in tokens]
    return tokens[:tokens.index(tasks.EOS_ID) + 1] if tasks.EOS_ID in tokens else tokens


def _input_length(row: np.ndarray) -> int:
    eoi = np.flatnonzero(row == tasks.EOI_ID)
    if not len(eoi):
        raise ValueError(f"row {tasks.decode(row, tasks.MAX_VOCAB_SIZE)!r} has no <eoi> token")
    return int(eoi[0]) - 1


@dataclass
class Generated:
    """What :func:`generated_correct` measured, one entry per row (in the order given).

    ``predictions``: the generated tokens, cut after the first ``<eos>``; ``references``: the
    answer of the row (states, or ``s_L`` alone, then ``<eos>``); ``sequence``: the prediction
    equals the reference; ``final``: the final state ``s_L`` (the last answer token before
    ``<eos>``: position ``L-1`` with chain of thought, ``0`` without) is right, whatever the others.
    """

    sequence: np.ndarray
    final: np.ndarray
    predictions: list[list[int]] = field(repr=False)
    references: list[list[int]] = field(repr=False)


@torch.no_grad()
def generate_answers(model, rows: Sequence[np.ndarray] | np.ndarray, batch_size: int = 512,
                     use_cache: bool = True) -> list[np.ndarray]:
    """Greedy continuation of each row's prompt ``<task> x_1 … x_L <eoi>``.

    ``rows``: complete rows (an array ``(n, T)`` of one length, or a list of rows of mixed lengths).
    Rows are grouped by input length, so every batch is unpadded; each row gets exactly as many new
    tokens as its answer has (``<pad>`` after an early ``<eos>``). Returns one array per row, in order.
    """
    rows = [np.asarray(r, dtype=np.int64) for r in rows]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault((_input_length(row), len(row)), []).append(i)
    device = next(model.parameters()).device
    was_training, saved_config = model.training, model.generation_config
    model.eval()
    # Plain argmax decoding whatever the checkpoint's generation_config.json says: generate() fills
    # every option left unset from it (a repetition_penalty there would change the answers).
    model.generation_config = GenerationConfig(bos_token_id=tasks.BOS_ID, eos_token_id=tasks.EOS_ID,
                                               pad_token_id=tasks.PAD_ID)
    out: list[np.ndarray | None] = [None] * len(rows)
    try:
        for (L, width), index in sorted(groups.items()):
            prompt_len = tasks.eoi_position(L) + 1
            new = width - prompt_len
            for start in range(0, len(index), batch_size):
                chunk = index[start:start + batch_size]
                prompts = torch.as_tensor(np.stack([rows[i][:prompt_len] for i in chunk]), device=device)
                generated = model.generate(
                    prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=new, do_sample=False,
                    num_beams=1, pad_token_id=tasks.PAD_ID, eos_token_id=tasks.EOS_ID, use_cache=use_cache,
                )[:, prompt_len:].cpu().numpy()  # (b, <= new): generation stops when all rows end
                answers = np.full((len(chunk), new), tasks.PAD_ID, dtype=np.int64)
                answers[:, :generated.shape[1]] = generated
                for i, answer in zip(chunk, answers):
                    out[i] = answer
    finally:
        model.train(was_training)
        model.generation_config = saved_config
    return out  # type: ignore[return-value]


def generated_correct(model, rows: Sequence[np.ndarray] | np.ndarray, cot: bool = True,
                      batch_size: int = 512, use_cache: bool = True) -> Generated:
    """Generate every row's answer greedily and score it (see :class:`Generated`).

    ``rows`` are complete rows as made by ``tasks.build_rows`` (their answers are the references);
    ``cot`` says which layout they have (a mismatch is a ``ValueError``).
    """
    references = []
    for row in rows:
        row = np.asarray(row, dtype=np.int64)
        L = _input_length(row)
        if len(row) != tasks.row_length(L, cot):
            raise ValueError(f"row {tasks.decode(row, tasks.MAX_VOCAB_SIZE)!r} is not a {'' if cot else 'no-'}chain-of-thought row "
                             f"({tasks.row_length(L, cot)} tokens for L={L}): check cot")
        references.append(row[answer_slice(L)])
    answers = generate_answers(model, rows, batch_size=batch_size, use_cache=use_cache)
    return Generated(
        sequence=np.array([np.array_equal(a, r) for a, r in zip(answers, references)], dtype=bool),
        final=np.array([a[-2] == r[-2] for a, r in zip(answers, references)], dtype=bool),  # s_L, then <eos>
        predictions=[trim_at_eos(a) for a in answers],
        references=[r.tolist() for r in references],
    )


def sequence_accuracy(predictions: Sequence[Sequence[int]], references: Sequence[Sequence[int]],
                      per_position: bool = False) -> dict:
    """Exact-match rate of token-id sequences (same length, every token equal).

    With ``per_position``: ``token_accuracy`` (matching tokens over reference tokens; a missing
    prediction token is wrong) and ``per_position_accuracy`` (at each position ``i``, over the
    references longer than ``i``). The ``evaluate`` module ``metrics/sequence_accuracy`` computes
    the same numbers (tested), for users of ``evaluate.load``; this function keeps the command line
    free of the ``evaluate`` library, whose name ``evaluate.py`` shares.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    n = len(references)
    exact = sum(list(p) == list(r) for p, r in zip(predictions, references))
    out = {"sequence_accuracy": exact / n if n else 0.0}
    if not per_position:
        return out
    width = max((len(r) for r in references), default=0)
    hits, counts = [0] * width, [0] * width
    for p, r in zip(predictions, references):
        for i, want in enumerate(r):
            counts[i] += 1
            hits[i] += int(i < len(p) and p[i] == want)
    total = sum(counts)
    out["token_accuracy"] = sum(hits) / total if total else 0.0
    out["per_position_accuracy"] = [h / c for h, c in zip(hits, counts)]
    return out


# ---------------------------------------------------------------------------------------------
# Whole evaluation
# ---------------------------------------------------------------------------------------------
def evaluate_model(model, rows_by_length: dict[int, np.ndarray], cot: bool = True, batch_size: int = 512,
                   use_cache: bool = True, with_heads: bool = False) -> dict[int, dict]:
    """Per input length: ``{L: {"n", "teacher_forced", "generated", "generated_final", ...}}``.

    Teacher-forced accuracy comes from :func:`modeling.analysis.evaluate_lengths`; generated
    accuracy from :func:`generated_correct`, with ``generated_token_accuracy`` and
    ``generated_per_position`` (accuracy at each answer position) from :func:`sequence_accuracy`.
    ``with_heads`` adds the head scores of :func:`modeling.analysis.head_scores` (chain-of-thought
    rows only; needs attention patterns).
    """
    teacher = analysis.evaluate_lengths(model, rows_by_length, batch_size=batch_size,
                                        with_heads=with_heads and cot, cot=cot)
    out: dict[int, dict] = {}
    for L, rows in sorted(rows_by_length.items()):
        gen = generated_correct(model, rows, cot=cot, batch_size=batch_size, use_cache=use_cache)
        entry = {
            "n": int(teacher["n"][L]),
            "teacher_forced": float(teacher["accuracy"][L]),
            "generated": float(gen.sequence.mean()),
            "generated_final": float(gen.final.mean()),
        }
        scores = sequence_accuracy(gen.predictions, gen.references, per_position=True)
        entry["generated_token_accuracy"] = float(scores["token_accuracy"])
        entry["generated_per_position"] = [round(float(v), 6) for v in scores["per_position_accuracy"]]
        if L in teacher["heads"]:
            entry["heads"] = {k: np.asarray(v).round(6).tolist() for k, v in teacher["heads"][L].items()}
        out[L] = entry
    return out


def _span(lengths: Sequence[int]) -> str:
    lengths = sorted(lengths)
    if lengths == list(range(lengths[0], lengths[-1] + 1)):
        return f"{lengths[0]}-{lengths[-1]}" if len(lengths) > 1 else str(lengths[0])
    return ",".join(map(str, lengths))


def _mean(per_length: dict[int, dict], lengths: Sequence[int], key: str) -> float:
    return float(np.mean([per_length[L][key] for L in lengths]))


def build_results(per_length: dict[int, dict], *, model_name: str, task: str, cot: bool,
                  dataset: dict[str, str], n_positions: int, train_max_length: int | None = None,
                  sources: dict[int, str] | None = None, extra: dict[str, Any] | None = None) -> dict:
    """The ``eval_results.json`` document.

    ``results``: Hub ``model-index`` entries (one for the training lengths -- or for all lengths
    when they are unknown -- and one for the lengths beyond training); each metric is the unweighted
    mean over lengths of the per-length accuracy (the paper -- Cabannes et al., NeurIPS 2024, arXiv:2406.02128 -- reports accuracy per length in its experiments).
    ``dataset``: ``{"name", "type", "config", "split"}`` of the in-distribution rows; rows of the
    extrapolation entry are named by ``sources`` (``{L: split}``; ``"sampled"`` for generated rows).
    ``per_length``: the :func:`evaluate_model` entries keyed by length (as strings, for JSON), each
    with ``extrapolated`` and ``source``.
    """
    lengths = sorted(per_length)
    sources = sources or {}
    beyond = [L for L in lengths if train_max_length is not None and L > train_max_length]
    within = [L for L in lengths if L not in beyond]
    mode = "with chain of thought" if cot else "without chain of thought"
    entries = []
    for group, label in ((within, "trained lengths" if train_max_length else "evaluated lengths"),
                         (beyond, "length generalisation")):
        if not group:
            continue
        split = dataset["split"]
        group_sources = sorted({sources.get(L, split) for L in group})
        if group is beyond:
            split = "+".join(group_sources)
        span = _span(group)
        entries.append({
            "task": {"type": "text-generation", "name": f"{task.capitalize()} {mode} ({label}, L={span})"},
            "dataset": {**dataset, "split": split},
            "metrics": [
                {"type": TEACHER_FORCED, "value": round(_mean(per_length, group, "teacher_forced"), 6),
                 "name": f"Teacher-forced sequence accuracy, mean over L={span}"},
                {"type": GENERATED, "value": round(_mean(per_length, group, "generated"), 6),
                 "name": f"Generated sequence accuracy (greedy), mean over L={span}"},
                {"type": GENERATED_FINAL, "value": round(_mean(per_length, group, "generated_final"), 6),
                 "name": f"Generated final-answer accuracy (greedy), mean over L={span}"},
            ],
        })
    return {
        "model": model_name,
        "task": task,
        "cot": cot,
        "n_positions": n_positions,
        "train_max_length": train_max_length,
        **(extra or {}),
        "results": entries,
        "per_length": {
            str(L): {**per_length[L], "extrapolated": L in beyond, "source": sources.get(L, dataset["split"])}
            for L in lengths
        },
    }


def to_model_index(results: dict | list, model_name: str) -> list[dict]:
    """The ``model-index`` value of a model card's YAML: ``[{"name": model_name, "results": [...]}]``.

    ``results``: an ``eval_results.json`` document (or its ``results`` list).
    """
    entries = results["results"] if isinstance(results, dict) else results
    return [{"name": model_name, "results": json.loads(json.dumps(entries))}]


def format_table(results: dict) -> str:
    """A readable per-length table of an ``eval_results.json`` document."""
    cot = results["cot"]
    lines = [
        f"{results['task']} {'with' if cot else 'without'} chain of thought -- {results['model']} "
        f"(n_positions {results['n_positions']}"
        + (f", trained on L <= {results['train_max_length']})" if results.get("train_max_length") else ")"),
        f"{'L':>4} {'n':>6}  {'teacher-forced':>14}  {'generated':>9}  {'final answer':>12}  source",
    ]
    for L, r in sorted(results["per_length"].items(), key=lambda kv: int(kv[0])):
        mark = "*" if r["extrapolated"] else " "
        lines.append(f"{L:>3}{mark} {r['n']:>6}  {r['teacher_forced']:>14.4f}  {r['generated']:>9.4f}  "
                     f"{r['generated_final']:>12.4f}  {r['source']}")
    for entry in results["results"]:
        values = "  ".join(f"{m['value']:.4f}" for m in entry["metrics"])
        lines.append(f"mean  {entry['task']['name']}: {values}  (teacher-forced, generated, final answer)")
    if any(r["extrapolated"] for r in results["per_length"].values()):
        lines.append("* beyond the training lengths")
    return "\n".join(lines)
