"""The figures of ``RESULTS.md`` (``results/figures/*.png``), drawn from the arms of a results table
(``training.tables``): accuracy against length, emergence curves, the scaling maps, a task family by
its structure and a crossed design at a glance. Matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from .results import STRUCTURE
from .tables import (HEAD, MAP_FROM, POSITION_KEYS, _cell_means, _lengths, _num, arms, crossing, label, run_id,
                     scaling_cells, words)


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
    """Mean and std over ``runs`` of ``metric`` at every evaluated ``x`` (the step, the sequences seen,
    or ``time_s``); a run in ``extend_to`` (one that stopped early, at its target) keeps its last value
    up to the ``x`` given there (its own budget); any other run ends at its last evaluation. Against
    time, each run's evaluations are binned to 50 points."""
    extend_to = extend_to or {}
    per_run: dict[str, dict[float, float]] = {}
    width = until / 50 if x == "time_s" else None
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


X_LABELS = {"step": "training step", "sequences": "sequences seen (steps x batch size)",
            "time_s": "training seconds (evaluations excluded; same machine)"}


def with_sequences(table: list[dict]) -> list[dict]:
    """``table`` (curves or runs) with ``sequences`` (steps x batch size) and ``max_sequences``
    (max_steps x batch size), the axis of arms that differ in batch size."""
    if table and "batch_size" not in table[0]:
        raise ValueError("a figure against sequences seen needs the batch_size column: rebuild the table "
                         "with python -m training.results")
    out = []
    for r in table:
        batch = float(r["batch_size"])
        out.append({**r, "sequences": float(r["step"]) * batch if "step" in r else None,
                    "max_sequences": _num(r.get("max_steps")) and _num(r["max_steps"]) * batch})
    return out


def emergence_figure(curves: list[dict], rows: list[dict], out: Path, x: str = "step") -> None:
    """Mean ± std over seeds of test accuracy and both attention scores (layer 1 on ``<eoi>``, the
    later layer's iteration head) against ``x`` (the training step; ``sequences``: sequences seen,
    for arms that differ in batch size; or ``time_s``: training seconds), one line per arm; an arm
    without a score (no chain of thought) has no line there."""
    if x not in X_LABELS:
        raise ValueError(f"x={x!r}: choose one of {', '.join(X_LABELS)}")
    if x == "sequences":
        curves, rows = with_sequences(curves), with_sequences(rows)
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
        ax.set_xlabel(X_LABELS[x])
        ax.xaxis.set_major_formatter(_eng())  # 10k, 2M: long budgets' tick labels do not run together
    _save(fig, out, out.stem)


def _eng():
    from matplotlib.ticker import EngFormatter
    return EngFormatter(sep="")


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
        budget = "max_sequences" if x == "sequences" else "max_steps"
        extend = {run_id(r): _num(r.get(budget)) or until for r in rs
                  if x != "time_s" and r.get("stop_reason", "").startswith("target")}
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

    def learned(r):  # the task a run learns (mix_with's, with copy rows)
        return r.get("mix_with") if r["task"] == "mix" else r["task"]
    others = [k for k in keys if k not in ("task", "mix_with", *STRUCTURE)]
    if "task" in keys and len({r["task"] == "mix" for r in rows}) > 1:
        others.insert(0, "task")  # copy rows or not: a condition beside the task
    conditions = list(dict.fromkeys(words(others, r) for r in rows)) if others else [""]
    markers = dict(zip(conditions, "o^sDv"))
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    cells: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if _num(r.get("entries")) is not None:
            cells.setdefault((learned(r), words(others, r) if others else ""), []).append(r)
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
