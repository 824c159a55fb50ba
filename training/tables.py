"""The per-run tables of ``results/`` (``python -m training.results`` writes them): read and checked,
grouped into arms (the config columns that vary, seeds pooled), and the text tables ``RESULTS.md``
shows (mean ± std over seeds with n, intervals for seed counts, per-length and scaling tables).

Nothing here knows an experiment: ``training.findings`` reads the declared records and decides which
table goes where; ``training.figures`` draws from the same arms.
"""

from __future__ import annotations

import csv
import math
import re
import statistics
from pathlib import Path

from . import evidence
from .results import STRUCTURE


HEAD = evidence.HEAD  # a seed "has the head" when its iteration score reaches it
IGNORED = {"experiment", "run", "status", "seed"}
# Kept as arm columns whenever they vary; a sweep over tasks also keeps each task's structure (its
# complexity measures, training.results.STRUCTURE), and its arms are ordered by table size.
FACTORS = {"recipe", "task", "source", "cot", "n_layer", "position_embedding", *STRUCTURE}
GRID = ("n_embd", "max_length")
MAP_FROM = evidence.PAPER_FROM  # the reference averages accuracy and peakiness over lengths >= 4


class TableError(ValueError):
    """A results table that cannot be trusted (a truncated or edited row): nothing is rendered from it."""


# What every measured column may hold; an empty cell is a value not measured (an unfinished run).
FRACTION_COLUMNS = re.compile(r"(test_accuracy(_min(_all_tasks)?)?|(eoi|iteration)_(score|peakiness)|target|"
                              r"acc_L\d+|(first|iteration)_mean_[\d.]+)")


COUNT_COLUMNS = re.compile(r"(seed|steps|steps_to_target|step|head_step|max_steps|n_layer|n_embd|max_length|"
                           r"num_processes|threads)")


NONNEGATIVE_COLUMNS = re.compile(r"(time_s|time_to_target_s|final_loss)")


STATUSES = ("finished", "unfinished", "failed")


def _check_cell(column: str, value: str) -> str | None:
    """What is wrong with one cell, or ``None``."""
    if value == "":
        return None
    if column == "status":
        return None if value in STATUSES else f"must be one of {', '.join(STATUSES)}"
    if column in ("cot", "reached_target"):
        return None if value in ("True", "False") else "must be True or False"
    numeric = [(FRACTION_COLUMNS, 0.0, 1.0, "a fraction in [0, 1]"), (COUNT_COLUMNS, 0.0, math.inf, "a count >= 0"),
               (NONNEGATIVE_COLUMNS, 0.0, math.inf, "a number >= 0")]
    for pattern, lo, hi, what in numeric:
        if pattern.fullmatch(column):
            number = _num(value)
            if number is None or not (lo <= number <= hi) or (pattern is COUNT_COLUMNS and number != int(number)):
                return f"must be {what}"
    return None


def read(path: Path) -> list[dict]:
    """The rows of a results table, every cell checked (complete rows, types, ranges): a damaged table
    is a :class:`TableError` naming the file, line, column and value, never a quietly wrong mean."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = reader.fieldnames or []
    except (OSError, csv.Error, UnicodeDecodeError) as err:
        raise TableError(f"{path}: cannot be read ({err})") from None
    if not columns:
        raise TableError(f"{path}: empty (no header); regenerate it with python -m training.results")
    for line, row in enumerate(rows, 2):
        if None in row:
            raise TableError(f"{path}: line {line} has {len(row[None])} cell(s) more than the header's {len(columns)}")
        missing = [c for c in columns if row[c] is None]
        if missing:
            raise TableError(f"{path}: line {line} is truncated (no value for {', '.join(missing[:3])}"
                             f"{', ...' if len(missing) > 3 else ''}); regenerate the table")
        for column in columns:
            problem = _check_cell(column, row[column])
            if problem:
                raise TableError(f"{path}: line {line}, column {column}: {row[column]!r} {problem}; "
                                 "the table is damaged: regenerate it with python -m training.results")
    return rows


def run_id(row: dict) -> str:
    """A run's key across tables (run numbers restart in every sweep)."""
    return f"{row['experiment']}/{row['run']}"


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def arms(rows: list[dict]) -> tuple[list[str], dict[tuple, list[dict]]]:
    """The arm columns (config columns that vary, seeds pooled) and the rows of each arm."""
    first_outcome = list(rows[0]).index("steps")
    config = [c for c in list(rows[0])[:first_outcome] if c not in IGNORED]
    varying = [c for c in config if len({r[c] for r in rows}) > 1]
    # of two equivalent columns the recipe names an arm best, and packing (padded batches go with the
    # paper's batch of 256) the worst
    varying.sort(key=lambda c: (c != "recipe", c == "packing"))

    def determined_by(c: str, d: str) -> bool:  # each value of d goes with one value of c
        return all(len({r[c] for r in rows if r[d] == v}) == 1 for v in {r[d] for r in rows})

    # A column that another arm column determines says nothing more (max_steps follows the recipe;
    # position_init follows init_from): left out, the earlier of two equivalent columns kept. The
    # factors of the designs always stay (copy rows and fixed data can go together in one arm).
    keys = [c for i, c in enumerate(varying)
            if c in FACTORS or not any(d != c and determined_by(c, d) and (not determined_by(d, c) or j < i)
                                       for j, d in enumerate(varying))]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    def sort_key(key):
        ordered = ([key[keys.index("entries")]] if "entries" in keys else []) + list(key)
        return tuple((0, _num(v), "") if _num(v) is not None else (1, 0.0, v) for v in ordered)
    order = sorted(groups, key=sort_key)
    return keys, {key: groups[key] for key in order}


def mean_std(values) -> str:
    xs = [x for x in map(_num, values) if x is not None and not math.isnan(x)]
    if not xs:
        return "n/a"
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs) if len(xs) > 1 else 0.0:.3f}"


def label(keys, values) -> str:
    """``key=value, ...`` naming an arm or a condition (an empty value is the config's null)."""
    return ", ".join(f"{k}={v or 'null'}" for k, v in zip(keys, values))


# How figures name an arm: a column's value in words where the raw `key=value` says little to a reader.
WORDS = {("task", "mix"): "30% copy rows", ("source", "fresh"): "fresh data", ("source", "fixed"): "fixed split",
         ("source", "paper"): "the paper's split (with replacement, half/half)",
         ("position_init", "sinusoidal"): "positions from sin/cos", ("init", "pytorch"): "PyTorch's default init",
         ("init", "normal"): "", ("cot", "True"): "CoT", ("cot", "False"): "no CoT",
         ("position_embedding", "learned"): "learned", ("position_embedding", "frozen"): "frozen"}


def words(keys, row: dict) -> str:
    """An arm's name for a figure, from its columns ``keys`` of one of its runs ``row``: :data:`WORDS`
    where it has the value; the position table's initialisation as N(0, std) (a null std is the
    model's initializer_range, 0.02), beside the token embeddings' N(0, 0.02) if it differs from them
    under our initialisation; the task a ``mix`` recipe mixes with means no copy rows;
    anything else ``key=value``."""
    out = []
    for k in keys:
        v = row[k]
        if (k, v) in WORDS:
            out.append(WORDS[k, v])
        elif k in ("position_init", "position_init_std"):
            std = _num(row.get("position_init_std"))
            if row.get("position_init") == "normal" and (k == "position_init_std" or "position_init_std" not in keys):
                tokens = " beside tokens N(0, 0.02)" if std not in (None, 0.02) and row.get("init") == "normal" else ""
                out.append(f"positions N(0, {0.02 if std is None else std:g}){tokens}")
        elif k == "task" and v == row.get("mix_with"):  # the recipe's own task without the copy rows
            out.append("no copy rows")
        elif k == "recipe":
            out.append(v)
        elif k == "init_from":  # fine-tuning: which model it starts from
            out.append("from scratch" if not v else "from " + "/".join(Path(v).parts[-2:] if "revisions" in v
                                                                      else Path(v).parts[-1:]))
        elif k == "trainable":
            out.append("all weights" if v in ("", "[]") else "only " + v.strip("[]").replace('"', ""))
        elif k == "reinit":
            out.append("nothing drawn afresh" if v in ("", "[]") else v.strip("[]").replace('"', "") + " drawn afresh")
        else:
            out.append(f"{k}={v or 'null'}")
    return ", ".join(w for w in out if w)


def seeds_reached(rs: list[dict]) -> int:
    """How many runs reached the target accuracy (99% on every test length) within their budget."""
    return sum(_num(r["steps_to_target"]) is not None for r in rs)


def unfinished_note(rs: list[dict]) -> str:
    """`` (N unfinished)`` when N of the runs did not finish (they are reported at their last evaluation)."""
    n = sum(r["status"] != "finished" for r in rs)
    return f" ({n} unfinished)" if n else ""


def seeds_with_head(rs: list[dict]) -> int:
    """How many runs have the iteration head (iteration score >= HEAD)."""
    return sum(bool(evidence.has_head(r)) for r in rs)


def arm_table(rows: list[dict]) -> list[str]:
    keys, groups = arms(rows)
    head = keys + ["n", "reached 99% [95% CI]", "steps to 99% (median)", "test accuracy", "min over lengths",
                   "accuracy over L ≥ 4", "<eoi> score", "iteration score", "peakiness (L ≥ 4)",
                   "head by peakiness", "seeds with the head [95% CI]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, rs in groups.items():
        reached = [int(float(r["steps_to_target"])) for r in rs if _num(r["steps_to_target"]) is not None]
        with_head = seeds_with_head(rs)
        peaked = sum((_num(r.get("iteration_peakiness")) or 0) >= HEAD for r in rs)
        cells = [v if v != "" else "null" for v in key] + [f"{len(rs)}{unfinished_note(rs)}",
                             f"{len(reached)}/{len(rs)} {_interval(len(reached), len(rs))}",
                             f"{statistics.median(reached):.0f}" if reached else "—",
                             mean_std(r["test_accuracy"] for r in rs), mean_std(r["test_accuracy_min"] for r in rs),
                             mean_std(accuracy_from(r) for r in rs),
                             mean_std(r["eoi_score"] for r in rs), mean_std(r["iteration_score"] for r in rs),
                             mean_std(r.get("iteration_peakiness") for r in rs), f"{peaked}/{len(rs)}",
                             f"{with_head}/{len(rs)} {_interval(with_head, len(rs))}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _by_run(ablations: list[dict]) -> dict[str, dict]:
    by_run: dict[str, dict] = {}
    for a in ablations:
        by_run.setdefault(run_id(a), {})[a["component"], a["mode"]] = a
    return by_run


HEAD_WORDS = {True: "yes", False: "no", None: "—"}  # the ablation table's head column


def ablation_table(rows: list[dict], ablations: list[dict]) -> list[str]:
    """Per arm (as :func:`arm_table`) and, where runs have head scores, per the detector's word on each
    seed (``head``: yes or no, so the ablations of the seeds with the head are not averaged with those
    without), the mean test accuracy of the final models with each component zero- or mean-ablated
    (``training.ablation``), mean ± std over the seeds that have the table; arms without ablations
    (shared rows whose models are not here) are left out."""
    keys, groups = arms(rows)
    by_run = _by_run(ablations)
    columns = list(dict.fromkeys((a["component"], a["mode"]) for a in ablations))
    scored = any(evidence.has_head(r) is not None for r in rows)
    head = keys + (["head"] if scored else []) + ["n", "no ablation"] + [f"{c} {m}" for c, m in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, rs in groups.items():
        for word in ((True, False, None) if scored else (None,)):  # None: a run without a score (no CoT)
            have = [by_run[run_id(r)] for r in rs if run_id(r) in by_run and evidence.has_head(r) is word]
            if not have:
                continue
            cells = [v if v != "" else "null" for v in key] + ([HEAD_WORDS[word]] if scored else [])
            cells += [str(len(have)), mean_std(next(iter(h.values()))["baseline"] for h in have)]
            cells += [mean_std(h[c]["test_accuracy"] for h in have if c in h) for c in columns]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def head_ablation_by_length(rows: list[dict], ablations: list[dict]) -> list[str]:
    """Is the head causal length by length? For the seeds that formed it (the detector), per arm: the
    mean teacher-forced test accuracy at each length with the later layer's head zero- or
    mean-ablated, and with layer 1's attention to ``<eoi>`` knocked out (the circuit's first step);
    empty when no seed with the head has ablations."""
    keys, groups = arms(rows)
    by_run = _by_run(ablations)
    lengths = sorted(int(c[5:]) for c in (ablations[0] if ablations else {}) if c.startswith("acc_L"))
    head = keys + ["n", "ablated", "mean"] + [f"L={L}" for L in lengths]
    lines = []
    for key, rs in groups.items():
        have = [(r, by_run[run_id(r)]) for r in rs if run_id(r) in by_run and evidence.has_head(r)]
        if not have:
            continue
        later = max(int(r["n_layer"]) for r, _ in have)
        for component, mode in [(f"layer-{later} head", "zero"), (f"layer-{later} head", "mean"),
                                ("layer-1 head -> eoi", "knockout")]:
            found = [h[component, mode] for _, h in have if (component, mode) in h]
            if not found:
                continue
            cells = [v if v != "" else "null" for v in key] + [str(len(found)), f"{component} {mode}",
                                                                mean_std(a["test_accuracy"] for a in found)]
            cells += [mean_std(a[f"acc_L{L}"] for a in found) for L in lengths]
            lines.append("| " + " | ".join(cells) + " |")
    return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + lines) if lines else []


def _interval(k: int, n: int) -> str:
    lo, hi = evidence.wilson(k, n)
    return f"[{lo:.2f}, {hi:.2f}]"


def budget_table(rows: list[dict]) -> list[str]:
    """Per arm, what the same wall-clock budget bought: steps, training time, accuracy (mean over seeds)."""
    keys, groups = arms(rows)
    head = keys + ["n", "steps in the budget", "training time (min)", "test accuracy", "min over lengths"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, rs in groups.items():
        steps = statistics.mean(float(r["steps"]) for r in rs)
        minutes = statistics.mean(float(r["time_s"]) for r in rs) / 60
        cells = [v if v != "" else "null" for v in key] + [str(len(rs)), f"{steps:,.0f}", f"{minutes:.1f}",
                 mean_std(r["test_accuracy"] for r in rs), mean_std(r["test_accuracy_min"] for r in rs)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _lengths(rows: list[dict]) -> list[int]:
    return sorted(int(c[5:]) for c in rows[0] if c.startswith("acc_L") and any(_num(r[c]) is not None for r in rows))


def length_table(rows: list[dict]) -> list[str]:
    """Mean test sequence accuracy per length and arm (over seeds; the std is in the figure)."""
    keys, groups = arms(rows)
    lengths = _lengths(rows)
    head = keys + ["n"] + [f"L={L}" for L in lengths]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, rs in groups.items():
        cells = [v if v != "" else "null" for v in key] + [str(len(rs))]
        for L in lengths:
            xs = [x for x in (_num(r[f"acc_L{L}"]) for r in rs) if x is not None]
            cells.append(f"{statistics.mean(xs):.2f}" if xs else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


accuracy_from = evidence.accuracy_from  # the reference's average over lengths >= 4 (one definition)


def scaling_cells(rows: list[dict]) -> tuple[list[str], dict[tuple, dict[tuple[int, int], list[dict]]]]:
    """The condition columns (what varies besides width, max length and seed) and, per condition,
    the runs of every (n_embd, max_length) cell."""
    keys, _ = arms(rows)
    conditions = [k for k in keys if k not in GRID]
    out: dict[tuple, dict[tuple[int, int], list[dict]]] = {}
    for r in rows:
        cell = (int(r["n_embd"]), int(r["max_length"]))
        out.setdefault(tuple(r[k] for k in conditions), {}).setdefault(cell, []).append(r)
    return conditions, dict(sorted(out.items()))


def _cell_means(rs: list[dict]) -> tuple[float | None, float | None]:
    acc = [a for a in map(accuracy_from, rs) if a is not None]
    peak = [p for p in (_num(r.get("iteration_peakiness")) for r in rs) if p is not None and not math.isnan(p)]
    return (statistics.mean(acc) if acc else None), (statistics.mean(peak) if peak else None)


def scaling_tables(rows: list[dict]) -> list[str]:
    """Per condition, a width x max-length table: mean over seeds of the test accuracy over lengths
    >= 4 / the iteration head's thresholded peakiness (fraction of weights > 0.5), and n."""
    conditions, cells = scaling_cells(rows)
    lines = []
    for cond, grid in cells.items():
        widths = sorted({w for w, _ in grid})
        lengths = sorted({L for _, L in grid})
        title = label(conditions, cond) or "all runs"
        lines += [f"**{title}**: test accuracy over lengths ≥ {MAP_FROM} / iteration peakiness (n seeds)", "",
                  "| width \\ max length | " + " | ".join(map(str, lengths)) + " |",
                  "|---|" + "---|" * len(lengths)]
        for w in widths:
            row = []
            for L in lengths:
                rs = grid.get((w, L), [])
                acc, peak = _cell_means(rs) if rs else (None, None)
                fmt = lambda x: "—" if x is None else f"{x:.2f}"  # noqa: E731
                row.append(f"{fmt(acc)} / {fmt(peak)} ({len(rs)})" if rs else "—")
            lines.append(f"| {w} | " + " | ".join(row) + " |")
        lines.append("")
    return lines


POSITION_KEYS = ("position_embedding", "position_init", "position_init_std", "init")  # the maps' columns


def scaling_summary(rows: list[dict]) -> list[str]:
    """One line per condition for the README: how many cells reach 0.9, and the means over cells."""
    conditions, cells = scaling_cells(rows)
    lines = []
    for cond, grid in cells.items():
        means = [_cell_means(rs) for rs in grid.values()]
        acc = [a for a, _ in means if a is not None]
        peak = [p for _, p in means if p is not None]
        seeds = sorted({len(rs) for rs in grid.values()})
        title = label(conditions, cond) or "all runs"
        lines.append(f"  - {title}: {len(grid)} cell{'s' * (len(grid) != 1)} × {'-'.join(map(str, seeds))} "
                     f"seed{'s' * (seeds != [1])}; "
                     f"{sum(a >= 0.9 for a in acc)}/{len(grid)} cells at ≥ 0.90 accuracy over lengths ≥ {MAP_FROM}; "
                     f"mean over cells: accuracy {statistics.mean(acc):.2f}"
                     + (f", iteration peakiness {statistics.mean(peak):.2f}" if peak else ""))
    return lines


def crossing(rows: list[dict], by: str, across: tuple[str, ...], order: tuple[str, ...] = ()):
    """A crossed design: ``(down, columns, cells)``: ``down`` the arm columns but ``by`` and ``across``;
    ``columns`` the conditions of the arm columns ``across``, in words (so that "no copy rows" is one
    condition whichever task it is), those in ``order`` first and in that order; and
    ``cells[by value][down key][column]`` the runs of that arm."""
    keys, groups = arms(rows)
    down = [k for k in keys if k != by and k not in across]
    across = [k for k in keys if k in across]
    cells: dict = {}
    for key, rs in groups.items():
        value = key[keys.index(by)] if by in keys else ""
        row = tuple(key[keys.index(k)] for k in down)
        cells.setdefault(value, {}).setdefault(row, {})[words(across, rs[0]) or "all runs"] = rs
    named = {c for grid in cells.values() for by_column in grid.values() for c in by_column}
    columns = [c for c in order if c in named] + sorted(named - set(order))
    return down, columns, cells


def crossing_table(rows: list[dict], by: str, across: tuple[str, ...], order: tuple[str, ...] = ()) -> list[str]:
    """The crossed design at a glance: a row per ``by`` value and arm of the other columns, a column per
    condition of ``across``; each cell: seeds with the head · seeds at 99% · mean test accuracy."""
    down, columns, cells = crossing(rows, by, across, order)
    head = [by, "position table" if set(down) <= set(POSITION_KEYS) else ", ".join(down) or "arm"] + columns
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for value, grid in cells.items():
        for row, by_column in grid.items():
            some = next(iter(by_column.values()))[0]
            out = [value, words(down, some) or "all runs"]
            for c in columns:
                rs = by_column.get(c)
                out.append("not run" if rs is None else
                           f"{seeds_with_head(rs)}/{len(rs)} · {seeds_reached(rs)}/{len(rs)} · "
                           f"{statistics.mean(float(r['test_accuracy']) for r in rs):.3f}")
            lines.append("| " + " | ".join(out) + " |")
    return lines
