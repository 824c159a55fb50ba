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
import statistics
from pathlib import Path

__all__ = ["EXPERIMENTS", "arms", "render", "main"]

ROOT = Path(__file__).resolve().parents[1]
HEAD = 0.5  # modeling.analysis.HEAD_THRESHOLD: a seed "has the head" when its iteration score reaches it

# experiment -> (the paper's claim, the question our table answers)
EXPERIMENTS = {
    "f1_cot": ("With CoT the 2-layer model learns parity and polynomial iteration on every trained "
               "length; without CoT accuracy collapses with length.", "CoT vs none, same inputs and budget"),
    "f2_layers": ("A 1-layer model does not learn these tasks with CoT.", "1 vs 2 layers"),
    "f3_emergence": ("When accuracy is high the iteration head is there (layer 1 on <eoi>, layer 2 on the "
                     "diagonal), and it forms when accuracy jumps.",
                     "under matched recipes, which ingredient decides whether the head forms?"),
    "f4_scaling": ("Accuracy and peakiness over width x max length; with CoT, without, one layer; "
                   "learned vs frozen positions.", "heat maps, mean over seeds"),
    "f5_transfer": ("A model pre-trained on polynomial iteration learns parity much faster than from "
                    "scratch, reusing its iteration head.", "is the speed-up the head? (copy: no head)"),
    "paper_reference": ("The reference recipe (1000 epochs) learns parity.", "how far it gets in our budget"),
}
IGNORED = {"experiment", "run", "status", "seed"}
OUTCOMES = ("steps", "time_s", "stop_reason", "target", "reached_target", "steps_to_target")


def read(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def arms(rows: list[dict]) -> tuple[list[str], dict[tuple, list[dict]]]:
    """The arm columns (config columns that vary, seeds pooled) and the rows of each arm."""
    first_outcome = list(rows[0]).index("steps")
    config = [c for c in list(rows[0])[:first_outcome] if c not in IGNORED]
    keys = [c for c in config if len({r[c] for r in rows}) > 1]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    order = sorted(groups, key=lambda key: tuple((0, _num(v), "") if _num(v) is not None else (1, 0.0, v)
                                                  for v in key))
    return keys, {key: groups[key] for key in order}


def mean_std(values) -> str:
    xs = [x for x in map(_num, values) if x is not None and not math.isnan(x)]
    if not xs:
        return "n/a"
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs) if len(xs) > 1 else 0.0:.3f}"


def arm_table(rows: list[dict]) -> list[str]:
    keys, groups = arms(rows)
    head = keys + ["n", "reached 99%", "steps to 99% (median)", "test accuracy", "min over lengths",
                   "<eoi> score", "iteration score", "seeds with the head"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, rs in groups.items():
        reached = [int(float(r["steps_to_target"])) for r in rs if _num(r["steps_to_target"]) is not None]
        with_head = sum((_num(r["iteration_score"]) or 0) >= HEAD for r in rs)
        cells = list(key) + [str(len(rs)), f"{len(reached)}/{len(rs)}",
                             f"{statistics.median(reached):.0f}" if reached else "—",
                             mean_std(r["test_accuracy"] for r in rs), mean_std(r["test_accuracy_min"] for r in rs),
                             mean_std(r["eoi_score"] for r in rs), mean_std(r["iteration_score"] for r in rs),
                             f"{with_head}/{len(rs)}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def emergence_figure(curves: list[dict], rows: list[dict], out: Path) -> Path:
    """Mean ± std over seeds of test accuracy and iteration score against the step, one line per arm."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys, groups = arms(rows)
    arm_of = {r["run"]: ", ".join(f"{k}={v}" for k, v in zip(keys, key)) for key, rs in groups.items() for r in rs}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for arm in sorted(set(arm_of.values())):
        by_step: dict[int, list[dict]] = {}
        for c in curves:
            if arm_of.get(c["run"]) == arm:
                by_step.setdefault(int(c["step"]), []).append(c)
        steps = sorted(s for s, cs in by_step.items() if len(cs) == max(map(len, by_step.values())))
        for ax, metric in zip(axes, ("test_accuracy", "iteration_score")):
            vals = [[_num(c[metric]) or 0.0 for c in by_step[s]] for s in steps]
            mean = [statistics.mean(v) for v in vals]
            std = [statistics.pstdev(v) for v in vals]
            line, = ax.plot(steps, mean, label=arm)
            ax.fill_between(steps, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                            color=line.get_color(), alpha=0.15)
    for ax, title in zip(axes, ("test sequence accuracy (mean over lengths)", "iteration-head score (layer 2)")):
        ax.set_title(title)
        ax.set_xlabel("training step")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{out.stem}: mean ± std over seeds")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def render(results: Path = ROOT / "results") -> str:
    lines = ["# Results", "", "Rendered by `python -m training.findings` from the per-run tables in `results/` "
             "(one row per run; `*_curves.csv`: every evaluation). Mean ± std over seeds; n = seeds.", ""]
    for name, (claim, question) in EXPERIMENTS.items():
        lines += [f"## {name}", "", f"**The paper:** {claim}", f"**Here:** {question}.", ""]
        table = results / f"{name}.csv"
        if not table.exists():
            lines += [f"Not run yet: `python train.py --multirun experiment={name}`, then "
                      f"`python -m training.results runs/experiments/{name} --out results/{name}.csv "
                      f"--experiment {name}`.", ""]
            continue
        rows = read(table)
        machine = sorted({f"{r.get('device', '?')}, {r.get('threads', '?')} thread(s)" for r in rows})
        lines += [f"{len(rows)} runs ({', '.join(machine)}).", ""] + arm_table(rows) + [""]
        curves = results / f"{name}_curves.csv"
        if curves.exists():
            fig = emergence_figure(read(curves), rows, results / "figures" / f"{name}.png")
            lines += [f"![{name}]({fig.relative_to(results.parent).as_posix()})", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.findings", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=str(ROOT / "results"), help="folder of the per-run tables")
    p.add_argument("--out", default=str(ROOT / "RESULTS.md"))
    args = p.parse_args(argv)
    text = render(Path(args.results))
    from .run_folder import atomic_write_text
    atomic_write_text(Path(args.out), text + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
