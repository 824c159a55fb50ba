"""``RESULTS.md`` and its figures, rendered only from the per-run tables in ``results/``.

    python -m training.findings                 # results/*.csv -> RESULTS.md + results/figures/*.png

Each experiment of ``configs/experiment/`` writes a sweep; ``python -m training.results <sweep>
--out results/<experiment>.csv --experiment <experiment>`` turns it into a table (and
``<experiment>_curves.csv``: every evaluation of every run). This module groups a table by its arms
(the config columns that vary, seeds pooled), reports mean ± std over seeds with n, and draws the
emergence curves; an experiment without a table is listed with the command that makes it. Numbers
are never typed by hand: ``tests/test_findings.py`` re-derives every number of ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
import statistics
from pathlib import Path

from . import evidence
from .results import STRUCTURE

__all__ = ["EXPERIMENTS", "SHARED", "arms", "arm_table", "length_table", "render", "rows_of", "scaling_tables", "seeds_reached", "seeds_with_head", "summary", "recipes_table", "main"]

ROOT = Path(__file__).resolve().parents[1]
HEAD = evidence.HEAD  # a seed "has the head" when its iteration score reaches it

# Every experiment is data: its declared record (configs/records/<name>.yaml) holds the paper's claim,
# the question our table answers and how RESULTS.md lays the table out (``layout``); nothing here is
# per experiment. experiment -> (the paper's claim, the question our table answers), in RESULTS.md's order.
RECORDS = {r.name: r for r in evidence.read_records()}
EXPERIMENTS = {name: (r["paper_claim"], r["here"]) for name, r in RECORDS.items()}
IGNORED = {"experiment", "run", "status", "seed"}
# Kept as arm columns whenever they vary; a sweep over tasks also keeps each task's structure (its
# complexity measures, training.results.STRUCTURE), and its arms are ordered by table size.
FACTORS = {"recipe", "task", "source", "cot", "n_layer", "position_embedding", *STRUCTURE}
# Rows an experiment shares with another instead of training them twice (``layout.shared``): F2's
# two-layer arm is F1's CoT arm (same recipes, seeds and budget). experiment -> [(other table, {column: value})].
SHARED = {n: [(s["table"], s["where"]) for s in r["layout"]["shared"]] for n, r in RECORDS.items() if "shared" in r["layout"]}
# A config column that does not vary within either table but tells the shared arms apart
# (``layout.label``): experiment -> (column, {source table: value}).
LABELS = {n: (r["layout"]["label"]["column"], r["layout"]["label"]["values"]) for n, r in RECORDS.items()
          if "label" in r["layout"]}
VIEWS = {view: {n for n, r in RECORDS.items() if r["layout"]["view"] == view} for view in evidence.VIEWS}
PER_LENGTH = VIEWS["per_length"]  # findings about length: a per-length table and figure
WALL_CLOCK = VIEWS["wall_clock"]  # compared at equal wall-clock time: curves against training seconds
SCALING = VIEWS["scaling"]  # maps over width x max length, one per condition, instead of one row per arm
# A crossed design shown at a glance (``layout.crossing``): experiment -> (the column that makes a figure
# per value, the arm columns whose conditions make its columns, named in words and shown in this order);
# the other arm columns make its rows (and its lines).
CROSSING = {n: (c["by"], tuple(c["across"]), tuple(c["order"])) for n, r in RECORDS.items()
            if (c := r["layout"].get("crossing"))}
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


def rows_of(results: Path, name: str) -> list[dict]:
    """The rows of an experiment: its own table plus the rows it shares with another (``SHARED``),
    on the own table's columns (and the ``LABELS`` column that tells the sources apart)."""
    rows = read(results / f"{name}.csv")
    columns = list(rows[0])
    for other, where in SHARED.get(name, []):
        if (results / f"{other}.csv").exists():
            rows += [r for r in read(results / f"{other}.csv") if all(r[k] == v for k, v in where.items())]
    if name in LABELS:
        column, values = LABELS[name]
        at = columns.index("steps")
        columns = columns[:at] + [column] + columns[at:]
        rows = [{**r, column: values[r["experiment"]]} for r in rows]
    return [{c: r.get(c, "") for c in columns} for r in rows]


def curves_of(results: Path, name: str) -> list[dict]:
    out = []
    for table in [name] + [other for other, _ in SHARED.get(name, [])]:
        if (results / f"{table}_curves.csv").exists():
            out += read(results / f"{table}_curves.csv")
    return out


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
    varying.sort(key=lambda c: c != "recipe")  # of two equivalent columns the recipe names an arm best

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
    return sum((_num(r["iteration_score"]) or 0) >= HEAD for r in rs)


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


def ablation_table(rows: list[dict], ablations: list[dict]) -> list[str]:
    """Per arm (as :func:`arm_table`), the mean test accuracy of its final models with each component
    zero- or mean-ablated (``training.ablation``), mean ± std over the seeds that have the table;
    arms without ablations (shared rows whose models are not here) are left out."""
    keys, groups = arms(rows)
    by_run: dict[str, dict] = {}
    for a in ablations:
        by_run.setdefault(run_id(a), {})[a["component"], a["mode"]] = a
    columns = list(dict.fromkeys((a["component"], a["mode"]) for a in ablations))
    head = keys + ["n", "no ablation"] + [f"{c} {m}" for c, m in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, rs in groups.items():
        have = [by_run[run_id(r)] for r in rs if run_id(r) in by_run]
        if not have:
            continue
        cells = [v if v != "" else "null" for v in key]
        cells += [str(len(have)), mean_std(next(iter(h.values()))["baseline"] for h in have)]
        cells += [mean_std(h[c]["test_accuracy"] for h in have if c in h) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


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


MEASURES = (f"test accuracy over lengths ≥ {MAP_FROM}", "iteration peakiness (fraction of weights > 0.5)")


def heatmap_figure(rows: list[dict], out: Path, measure: int = 0) -> None:
    """The paper's scaling maps of one measure (0: accuracy, 1: iteration peakiness): one row per task
    condition (task, CoT, layers), one column per position table (learned / frozen, its
    initialisation), each map over width x max length; mean over seeds, the value in every cell."""
    plt = _plt()
    conditions, cells = scaling_cells(rows)
    pos = [i for i, k in enumerate(conditions) if k in POSITION_KEYS]
    task = [i for i, k in enumerate(conditions) if k not in POSITION_KEYS]
    task_keys = sorted({tuple(c[i] for i in task) for c in cells})
    pos_keys = sorted({tuple(c[i] for i in pos) for c in cells})

    def name(idx, key):  # a condition's words, from one of its runs
        first = next(rs[0] for c, grid in cells.items() for rs in grid.values()
                     if tuple(c[i] for i in idx) == key)
        return words([conditions[i] for i in idx], first)

    fig, axes = plt.subplots(len(task_keys), len(pos_keys), squeeze=False,
                             figsize=(3.4 * len(pos_keys), 3.0 * len(task_keys) + 0.6))
    for r, tk in enumerate(task_keys):
        for c, pk in enumerate(pos_keys):
            ax = axes[r][c]
            cond = tuple(tk[task.index(i)] if i in task else pk[pos.index(i)] for i in range(len(conditions)))
            grid = cells.get(cond, {})
            if r == 0:
                ax.set_title(name(pos, pk) or "all runs", fontsize=8)
            widths = sorted({w for w, _ in grid})
            lengths = sorted({L for _, L in grid})
            values = [[(_cell_means(grid[w, L])[measure] if (w, L) in grid else None) for L in lengths] for w in widths]
            if not any(v is not None for row in values for v in row):  # not run, or no score (no CoT)
                ax.text(0.5, 0.5, "no score (no CoT)" if grid else "not run", ha="center", va="center",
                        transform=ax.transAxes, fontsize=8)
                ax.set_xticks([])
                ax.set_yticks([])
                if c == 0:
                    ax.set_ylabel(name(task, tk), fontsize=8)
                continue
            ax.imshow([[math.nan if v is None else v for v in row] for row in values],
                      vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto")
            for y, row in enumerate(values):
                for x, v in enumerate(row):
                    if v is not None:
                        ax.text(x, y, f"{v:.2f}", ha="center", va="center", fontsize=7,
                                color="black" if v > 0.6 else "white")
            ax.set_xticks(range(len(lengths)), lengths)
            ax.set_yticks(range(len(widths)), widths)
            if r == len(task_keys) - 1:
                ax.set_xlabel("max length")
            ax.set_ylabel((name(task, tk) + "\nwidth") if c == 0 else "width", fontsize=8)
    fig.suptitle(f"{out.stem}: {MEASURES[measure]}, mean over seeds", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


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


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def length_figure(rows: list[dict], out: Path) -> None:
    """Mean ± std over seeds of the test sequence accuracy against the input length, one line per arm."""
    plt = _plt()
    keys, groups = arms(rows)
    lengths = _lengths(rows)
    fig, ax = plt.subplots(figsize=(7, 4.2 + 0.2 * len(groups)))
    for key, rs in groups.items():
        name = f"{label(keys, key)} (n={len(rs)})"
        cols = [[x for x in (_num(r[f"acc_L{L}"]) for r in rs) if x is not None] for L in lengths]
        mean = [statistics.mean(c) for c in cols]
        std = [statistics.pstdev(c) for c in cols]
        line, = ax.plot(lengths, mean, marker="o", ms=3, label=name)
        ax.fill_between(lengths, [m - d for m, d in zip(mean, std)], [m + d for m, d in zip(mean, std)],
                        color=line.get_color(), alpha=0.15)
    ax.set_xlabel("input length L")
    ax.set_ylabel("test sequence accuracy (mean ± std over seeds)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(out.stem.replace("_lengths", "") + ": accuracy per length at the end of training", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _series(curves: list[dict], runs: set[str], metric: str, until: float,
            extend_to: dict[str, float] | None = None, x: str = "step") -> tuple[list[float], list[float], list[float]]:
    """Mean and std over ``runs`` of ``metric`` at every evaluated ``x`` (the step, or ``time_s``); a
    run in ``extend_to`` (one that stopped early, at its target) keeps its last value up to the ``x``
    given there (its own step budget); any other run ends at its last evaluation. Against time, each
    run's evaluations are binned to 50 points."""
    extend_to = extend_to or {}
    per_run: dict[str, dict[float, float]] = {}
    width = until / 50 if x != "step" else None
    for c in curves:
        if run_id(c) in runs and _num(c[metric]) is not None:
            at = float(c[x]) if width is None else math.ceil(float(c[x]) / width) * width
            per_run.setdefault(run_id(c), {})[at] = float(c[metric])
    steps = sorted({s for values in per_run.values() for s in values}
                   | {extend_to[r] for r in per_run if r in extend_to})
    table = []
    for run, values in per_run.items():
        last, row, end = None, [], extend_to.get(run, max(values))
        for s in steps:
            last = values.get(s, last)
            row.append(last if s <= end else None)
        table.append(row)
    cols = [[v for v in col if v is not None] for col in zip(*table)]
    keep = [i for i, col in enumerate(cols) if col]
    return ([steps[i] for i in keep], [statistics.mean(cols[i]) for i in keep],
            [statistics.pstdev(cols[i]) for i in keep])


def emergence_figure(curves: list[dict], rows: list[dict], out: Path, x: str = "step") -> None:
    """Mean ± std over seeds of test accuracy and both attention scores (layer 1 on ``<eoi>``, the
    later layer's iteration head) against ``x`` (the training step, or ``time_s``: training
    seconds), one line per arm; an arm without a score (no chain of thought) has no line there."""
    plt = _plt()
    keys, groups = arms(rows)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(15, 4.6), sharex=True)
    named = {words(keys, rs[0]) or "all runs": rs for rs in groups.values()}
    if len(named) < len(groups):  # two arms in the same words: their key=value names tell them apart
        named = {label(keys, key): rs for key, rs in groups.items()}
    _draw_arms(axes, curves, named, x)
    for ax, title in zip(axes, METRICS.values()):
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel("mean ± std over seeds")
    axes[-1].legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for ax in axes:
        ax.set_xlabel("training step" if x == "step" else "training seconds (evaluations excluded; same machine)")
    _save(fig, out, out.stem)


METRICS = {"test_accuracy": "test sequence accuracy (mean over lengths)", "eoi_score": "layer-1 attention on <eoi>",
           "iteration_score": "iteration-head score (later layer)"}


def _draw_arms(axes, curves: list[dict], named: dict[str, list[dict]], x: str = "step",
               colors: dict[str, object] | None = None) -> None:
    """On ``axes`` (one per metric of :data:`METRICS`), each arm of ``named`` (its name -> its runs) as
    mean ± std over its seeds; ``colors`` gives an arm's colour by name (default: tab10/tab20 in order)."""
    plt = _plt()
    if colors is None:
        cmap = plt.get_cmap("tab10" if len(named) <= 10 else "tab20").colors
        colors = {name: cmap[i % len(cmap)] for i, name in enumerate(named)}
    until = max(float(c[x]) for c in curves)
    for name, rs in named.items():
        # A run that stopped at its target keeps its value to the end of its own step budget (a table
        # without a max_steps column has one budget for all: the last step of any run).
        extend = {run_id(r): _num(r.get("max_steps")) or until for r in rs
                  if x == "step" and r.get("stop_reason", "").startswith("target")}
        for ax, metric in zip(axes, METRICS):
            steps, mean, std = _series(curves, {run_id(r) for r in rs}, metric, until, extend, x)
            ax.plot(steps, mean, label=f"{name} (n={len(rs)})", color=colors[name])
            ax.fill_between(steps, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                            color=colors[name], alpha=0.15)
    for ax in axes:
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)


def structure_figure(rows: list[dict], out: Path) -> None:
    """A sweep over tasks against each task's table size (states x inputs, log scale): every run's
    iteration score (left) and training steps (right; filled: reached 99% on every length, open: its
    budget ran out), groups and automata in two colours, the tasks named above the panels; where the
    sweep crosses the tasks with other arms (the starting weights of a fine-tuning sweep), one marker per arm."""
    plt = _plt()
    from matplotlib.transforms import blended_transform_factory
    keys, _ = arms(rows)
    others = [k for k in keys if k != "task" and k not in STRUCTURE]
    conditions = list(dict.fromkeys(words(others, r) for r in rows)) if others else [""]
    markers = dict(zip(conditions, "o^sDv"))
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    cells: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if _num(r.get("entries")) is not None:
            cells.setdefault((r["task"], words(others, r) if others else ""), []).append(r)
    names_at: dict[float, set[str]] = {}
    for (task, condition), rs in cells.items():
        x = _num(rs[0]["entries"])
        names_at.setdefault(x, set()).add(task)
        colour = "tab:blue" if rs[0]["group"] == "True" else "tab:orange"
        shift = conditions.index(condition) - (len(conditions) - 1) / 2
        jitter = [x * (1 + 0.05 * (i - (len(rs) - 1) / 2) + 0.12 * shift) for i in range(len(rs))]
        axes[0].scatter(jitter, [_num(r["iteration_score"]) or 0.0 for r in rs], color=colour, s=18,
                        marker=markers[condition])
        for xj, r in zip(jitter, rs):
            reached = _num(r["steps_to_target"]) is not None
            axes[1].scatter([xj], [_num(r["steps"])], s=18, color=colour, marker=markers[condition],
                            facecolors=colour if reached else "none")
    axes[0].axhline(HEAD, color="grey", ls="--", lw=0.8)
    axes[0].set_ylabel("iteration score (detector; dashed: the head's threshold)")
    axes[1].set_ylabel("training steps (filled: reached 99% on every length)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("table entries (states x inputs)")
        ax.grid(alpha=0.3)
        on_top = blended_transform_factory(ax.transData, ax.transAxes)
        for x, names in names_at.items():
            ax.text(x, 1.01, " / ".join(sorted(names)), transform=on_top, rotation=90, fontsize=7,
                    ha="center", va="bottom")
    axes[0].scatter([], [], color="tab:blue", label="group word problems")
    axes[0].scatter([], [], color="tab:orange", label="automata (not groups)")
    for condition in conditions if others else []:
        axes[0].scatter([], [], color="grey", marker=markers[condition], label=condition)
    axes[0].legend(fontsize=8, loc="center left")
    _save(fig, out, f"Each run against its task's table size (n = {len(rows)} runs)")


def _save(fig, out: Path, title: str) -> None:
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    fig.clf()
    _plt().close(fig)


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


def crossing_figures(curves: list[dict], rows: list[dict], folder: Path, name: str, by: str,
                     across: tuple[str, ...], order: tuple[str, ...] = (), draw: bool = True) -> list[Path]:
    """One emergence figure per ``by`` value (``<name>_<value>.png``): a column of panels per condition
    of ``across``, a row per metric, a line per arm of the other columns (the same colour in every
    figure). Returns the figures' paths (drawn only with ``draw``)."""
    down, columns, cells = crossing(rows, by, across, order)
    outs = [folder / f"{name}_{value}.png" for value in cells]
    if not draw:
        return outs
    plt = _plt()
    names = list(dict.fromkeys(words(down, rs[0]) for grid in cells.values()
                               for r in grid.values() for rs in r.values()))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20").colors
    colors = {n: cmap[i % len(cmap)] for i, n in enumerate(names)}
    for out, (value, grid) in zip(outs, cells.items()):
        fig, axes = plt.subplots(len(METRICS), len(columns), figsize=(4.2 * len(columns), 3.4 * len(METRICS)),
                                 sharex=True, squeeze=False)
        for j, c in enumerate(columns):
            panel = {words(down, by_column[c][0]): by_column[c] for by_column in grid.values() if c in by_column}
            col_axes = [axes[i][j] for i in range(len(METRICS))]
            if panel:
                _draw_arms(col_axes, curves, panel, colors=colors)
            else:
                col_axes[0].text(0.5, 0.5, "not run", ha="center", va="center", transform=col_axes[0].transAxes)
            axes[0][j].set_title(c, fontsize=10)
            axes[-1][j].set_xlabel("training step")
        for i, title in enumerate(METRICS.values()):
            axes[i][0].set_ylabel(f"{title}\nmean ± std over seeds", fontsize=9)
        handles = [plt.Line2D([], [], color=colors[n]) for n in names]
        fig.legend(handles, names, loc="lower center", ncol=min(len(names), 4), frameon=False,
                   bbox_to_anchor=(0.5, -0.04), fontsize=9)
        _save(fig, out, f"{name}, {value}: one panel column per data condition, one line per position table")
    return outs


def render(results: Path = ROOT / "results", draw: bool = True) -> str:
    """The markdown of RESULTS.md; with ``draw``, the figures are (re)drawn too."""
    lines = ["# Results", "", "Rendered by `python -m training.findings` from the per-run tables in `results/` "
             "(one row per run; `*_curves.csv`: every evaluation). Mean ± std over seeds; n = seeds.", ""]
    for name, (claim, question) in EXPERIMENTS.items():
        lines += [f"## {name}", "", f"**The paper:** {claim}", f"**Here:** {question}", ""]
        if not (results / f"{name}.csv").exists():
            lines += [f"Not run yet: `python train.py --multirun experiment={name}`, then "
                      f"`python -m training.results runs/experiments/{name} --out results/{name}.csv "
                      f"--experiment {name}`.", ""]
            continue
        rows = rows_of(results, name)
        done = [r for r in rows if r["status"] == "finished"]
        machine = sorted({f"{r['device']}, {r['threads']} torch thread(s) per run" for r in done})
        unfinished = len(rows) - len(done)
        times = [t for t in (_num(r.get("time_s")) for r in rows) if t is not None]
        spent = (f"; {sum(times) / 3600:.1f} h of training in all, {statistics.median(times) / 60:.1f} min per run "
                 "(median)") if times else ""
        lines += [f"{len(rows)} runs ({'; '.join(machine)}){spent}"
                  + (f"; {unfinished} unfinished, reported at their last evaluation" if unfinished else "")
                  + ". A seed has the head when its iteration score is at least 0.5. Re-run: "
                  f"`python train.py --multirun experiment={name}`.", ""]
        for other, where in SHARED.get(name, []):
            if (results / f"{other}.csv").exists():
                lines += [f"Shared with `{other}` (not trained twice): its runs with "
                          + ", ".join(f"{k}={v}" for k, v in where.items()) + ".", ""]
        if name in CROSSING:
            lines += ["The crossing at a glance (each cell: seeds with the head · seeds at 99% on every length · mean "
                      "test accuracy; the arm table below has the spreads):", ""] + crossing_table(rows, *CROSSING[name]) + [""]
        lines += (scaling_tables(rows) if name in SCALING else arm_table(rows) + [""])
        if name in WALL_CLOCK:
            lines += ["What each run did on the same machine (the wall-clock budget stops a run unless its "
                      "step budget ends first):", ""] + budget_table(rows) + [""]
        if name in PER_LENGTH:
            lines += ["Test sequence accuracy per input length (mean over seeds):", ""] + length_table(rows) + [""]
        if (results / f"{name}_ablation.csv").exists():
            lines += ["Ablations of the final models (`python -m training.ablation`; mean teacher-forced test "
                      "accuracy over the trained lengths with one component zero-ablated, or mean-ablated: "
                      "replaced by its mean over the test inputs at each position; mean ± std over seeds):", ""]
            lines += ablation_table(rows, read(results / f"{name}_ablation.csv")) + [""]
        lines += record_section(name, results)
        figures = []
        if name in PER_LENGTH:
            figures.append((results / "figures" / f"{name}_lengths.png", lambda out: length_figure(rows, out)))
        if name in SCALING:
            figures.append((results / "figures" / f"{name}.png", lambda out: heatmap_figure(rows, out, 0)))
            figures.append((results / "figures" / f"{name}_peakiness.png", lambda out: heatmap_figure(rows, out, 1)))
        if rows and "entries" in rows[0]:  # a sweep over tasks: each run against its task's table size
            figures.append((results / "figures" / f"{name}_structure.png", lambda out: structure_figure(rows, out)))
        curves = [] if name in SCALING else curves_of(results, name)
        if curves and name in CROSSING:
            figures += [(out, lambda out: None) for out in
                        crossing_figures(curves, rows, results / "figures", name, *CROSSING[name], draw=draw)]
        elif curves:
            x = "time_s" if name in WALL_CLOCK else "step"
            figures.append((results / "figures" / f"{name}.png",
                            lambda out: emergence_figure(curves, rows, out, x)))
        for fig, draw_it in figures:
            if draw:
                draw_it(fig)
            lines += [f"![{fig.stem}]({fig.relative_to(results.parent).as_posix()})", ""]
    return "\n".join(lines)


def tables_for(results: Path) -> dict[str, list[dict]]:
    """Every experiment's rows (with what it shares), for the records' arms."""
    return {n: rows_of(results, n) for n in EXPERIMENTS if (results / f"{n}.csv").exists()}


def record_check(name: str, rows: list[dict]) -> str | None:
    """A warning when the runs of a table do not carry the hash of the record as it is now: a record
    changed after its runs started, or runs older than their record."""
    sha = evidence.record_sha256(name)
    hashes = {r.get("record_sha256") or "" for r in rows if r.get("experiment", name) == name}
    if hashes == {sha}:
        return None
    amended = {a["sha256"]: a["change"] for a in RECORDS[name].get("amendments") or []}
    if hashes and hashes <= {sha} | set(amended):
        changes = ". ".join(amended[h].rstrip(".") for h in amended if h in hashes)  # in the record's order
        return f"amended after its runs started (the runs carry the hash of the record before): {changes}"
    if hashes <= {""}:
        return "no run of this table recorded the record's hash: the record was written after its runs"
    return (f"the record changed after its runs started: {sum(r.get('record_sha256') != sha for r in rows)} of "
            f"{len(rows)} runs carry another hash (or none)")


def record_section(name: str, results: Path) -> list[str]:
    """The declared record, the verdicts computed from it (training/evidence.py), the paper beside us."""
    record = RECORDS[name]
    tables = tables_for(results)
    rows = tables[name]
    flag = record_check(name, rows)
    rel = record.path.relative_to(ROOT).as_posix()
    lines = [f"**Record** ([`{rel}`]({rel}), declared {record['declared']}"
             + (f"; ⚠ {flag}" if flag else "") + f"). Question: {record['question']} Hypothesis: "
             f"{record['hypothesis']} Arms: {record['arms']}. Primary measure: {record['primary']}. Seeds: "
             f"{record['seeds']} ({record['seeds_why'].rstrip('.')}).", "",
             "**Verdicts** (computed from the record's rules by `training/evidence.py`: Wilson 95% intervals "
             "for seed counts, Fisher's exact test for two counts, bootstrap intervals and the Mann-Whitney U "
             "test for continuous measures; a word in bold comes from the rule):", ""]
    found = evidence.verdicts(record, tables)
    lines += [f"- {sentence}" for _, sentence in found] + [""]
    paper = record.get("paper")
    if paper:
        ratio = evidence.budget_ratio(record, rows) or "—"
        words_ = ", ".join(f"{w} {sum(x == w for x, _ in found)}" for w in dict.fromkeys(x for x, _ in found))
        lines += ["| the paper's evidence | here | budget | verdicts |", "|---|---|---|---|",
                  f"| {paper['evidence']} | {len(rows)} runs, {record['seeds']} seeds per arm | {ratio} | {words_} |", ""]
    if record.get("notes"):
        lines += [f"**Notes** (what the tables show beyond the verdicts; no verdict words): {record['notes']}", ""]
    return lines


README_START = "<!-- findings: rendered from results/*.csv by `python -m training.findings`; do not edit -->"
README_END = "<!-- /findings -->"
RECIPES_START = "<!-- recipes: rendered from results/f1_cot.csv by `python -m training.findings`; do not edit -->"
RECIPES_END = "<!-- /recipes -->"


def recipes_table(results: Path = ROOT / "results") -> str:
    """What the README says each recipe costs and reaches on this machine: F1's chain-of-thought
    runs, one row per seed (the recipes exactly as shipped, from scratch)."""
    lines = [RECIPES_START]
    if not (results / "f1_cot.csv").exists():
        lines.append("Not run yet (`python train.py --multirun experiment=f1_cot`).")
        return "\n".join(lines + [RECIPES_END])
    rows = [r for r in read(results / "f1_cot.csv") if r["cot"] == "True"]
    rows.sort(key=lambda r: (r["recipe"], int(r["seed"])))
    lines += ["| recipe | seed | steps to 99% on every length | training time | mean test accuracy | worst length "
              "| layer-2 iteration score |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        reached = _num(r["steps_to_target"]) is not None
        steps = f"{int(float(r['steps_to_target'])):,}" if reached else f"not within {int(float(r['steps'])):,}"
        seconds = float(r["time_to_target_s"] if reached else r["time_s"])
        lines.append(f"| `{r['recipe']}` | {r['seed']} | {steps} | {seconds:.0f} s | {float(r['test_accuracy']):.3f} "
                     f"| {float(r['test_accuracy_min']):.3f} | {float(r['iteration_score']):.3f} |")
    machines = sorted({f"{r['device']} with {r['threads']} torch thread(s) per run" for r in rows})
    lines += ["", f"Device: {'; '.join(machines)}."]
    return "\n".join(lines + [RECIPES_END])


def summary(results: Path = ROOT / "results") -> str:
    """What the README quotes from RESULTS.md: per experiment with a table, each arm's headline
    numbers and the verdict."""
    lines = []
    for name, (claim, _) in EXPERIMENTS.items():
        if not (results / f"{name}.csv").exists():
            lines.append(f"- **{name}**: not run yet (`python train.py --multirun experiment={name}`).")
            continue
        rows = rows_of(results, name)
        record = RECORDS[name]
        found = evidence.verdicts(record, tables_for(results))
        share = evidence.budget_share(record, rows)
        at = f", at {100 * share:.0f}% of the paper's budget" if share is not None and share < 0.5 else ""
        claims = "; ".join(f"{sentence.split(':', 1)[0]}: {word}" for word, sentence in found)
        lines.append(f"- **[{name}](RESULTS.md#{name})** ({len(rows)} runs{at}; computed verdicts): {claims}.")
        if name in SCALING:
            lines += scaling_summary(rows)
            continue
        if name in CROSSING:
            lines += ["", "  Each cell: seeds with the head · seeds at 99% on every length · mean test accuracy.", ""]
            lines += crossing_table(rows, *CROSSING[name]) + [""]
            continue
        keys, groups = arms(rows)
        for key, rs in groups.items():
            lines.append(f"  - {label(keys, key)}{unfinished_note(rs)}: "
                         f"{seeds_reached(rs)}/{len(rs)} seeds reached 99%, test accuracy "
                         f"{mean_std(r['test_accuracy'] for r in rs)}, {seeds_with_head(rs)}/{len(rs)} with the head")
    return "\n".join([README_START] + lines + [README_END])


def readme_blocks(results: Path) -> list[tuple[str, str, str]]:
    """The README's rendered blocks: (start marker, end marker, text with both markers)."""
    return [(README_START, README_END, summary(results)), (RECIPES_START, RECIPES_END, recipes_table(results))]


def update_readme(readme: Path, results: Path) -> bool:
    """Replace each rendered block the README has (:func:`readme_blocks`); False when it has none."""
    text = original = readme.read_text()
    found = False
    for start, end, block in readme_blocks(results):
        if start in text and end in text:
            before, rest = text.split(start, 1)
            text = before + block + rest.split(end, 1)[1]
            found = True
    if text != original:
        from datasets_builders.files import write_text_atomic
        write_text_atomic(readme, text)
    return found


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.findings", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=str(ROOT / "results"), help="folder of the per-run tables")
    p.add_argument("--out", default=str(ROOT / "RESULTS.md"))
    args = p.parse_args(argv)
    try:
        text = render(Path(args.results))  # every table is read and checked before anything is written
    except TableError as err:
        print(f"error: {err}; nothing was written", file=sys.stderr)
        sys.exit(2)
    from datasets_builders.files import write_text_atomic
    write_text_atomic(Path(args.out), text + "\n")
    print(f"wrote {args.out}")
    if Path(args.out).resolve() == (ROOT / "RESULTS.md").resolve() and update_readme(ROOT / "README.md", Path(args.results)):
        print("updated the rendered blocks of README.md")


if __name__ == "__main__":
    main()
