"""``RESULTS.md`` and its figures, rendered only from the per-run tables in ``results/``.

    python -m training.findings                 # results/*.csv -> RESULTS.md + results/figures/*.png

Each experiment of ``configs/experiment/`` writes a sweep; ``python -m training.results <sweep>
--out results/<experiment>.csv --experiment <experiment>`` turns it into a table (and
``<experiment>_curves.csv``: every evaluation of every run). This module groups a table by its arms
(the config columns that vary, seeds pooled), reports mean ± std over seeds with n, and draws the
emergence curves; an experiment without a table is listed with the command that makes it. Numbers
are never typed by hand: ``tests/test_findings.py`` re-derives every number of ``RESULTS.md``.

This module decides what goes where, from each experiment's declared record; the tables come from
``training.tables`` and the figures from ``training.figures``, neither of which knows an experiment.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from . import evidence
from .figures import crossing_figures, emergence_figure, heatmap_figure, length_figure, structure_figure
from .tables import (HEAD, TableError, _num, ablation_table, arm_table, arms, budget_table, crossing_table,
                     head_ablation_by_length, label, length_table, mean_std, read, scaling_summary, scaling_tables,
                     seeds_reached, seeds_with_head, unfinished_note)

__all__ = ["EXPERIMENTS", "SHARED", "render", "rows_of", "summary", "recipes_table", "main"]

ROOT = Path(__file__).resolve().parents[1]

# Every experiment is data: its declared record (configs/records/<name>.yaml) holds the paper's claim,
# the question our table answers and how RESULTS.md lays the table out (``layout``); nothing here is
# per experiment. experiment -> (the paper's claim, the question our table answers), in RESULTS.md's order.
RECORDS = {r.name: r for r in evidence.read_records()}
EXPERIMENTS = {name: (r["paper_claim"], r["here"]) for name, r in RECORDS.items()}
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


SESSION_HOURS = 3  # what one working session can give an experiment on its machine


def not_run_cost(results: Path, name: str) -> str:
    """What an experiment not run yet would cost, from its plan (``python -m training.plan
    experiment=<name> --out results/plans/<name>.json``): runs, steps and the training time measured
    on that machine, beside the hours of one working session there; empty without a plan."""
    path = results / "plans" / f"{name}.json"
    if not path.is_file():
        return ""
    try:
        p = json.loads(path.read_text())
        runs, steps, est, side, both = (p["runs"], p["steps"], p["estimate_s"], p["side_by_side"],
                                        p["estimate_side_by_side_s"])
    except (ValueError, KeyError, TypeError) as err:
        raise TableError(f"{path}: not a plan written by python -m training.plan --out ({err}); write it again") from None
    out = (f" Its cost (`python -m training.plan experiment={name} --out results/plans/{name}.json`, {p['date']}, "
           f"{p['machine']}): {runs:,} runs, {steps:,} optimizer steps")
    if est is None:
        return out + " (not timed)."
    slowdown = p.get("slowdown_side_by_side")  # plans before 2026-12-07 did not measure it
    how = (f"each step {slowdown:.2f}x slower then, measured" if slowdown
           else "if they did not slow each other: not measured")
    return out + (f", {est / 3600:.1f} h of training one run at a time ({both / 3600:.1f} h with {side} side by side, "
                  f"{how}; evaluations and start-up not included; a working session here has {SESSION_HOURS} hours of "
                  "this machine, and a run must end within one: `python -m training.results --merge` adds "
                  "each session's runs to the table).")


def render(results: Path = ROOT / "results", draw: bool = True) -> str:
    """The markdown of RESULTS.md; with ``draw``, the figures are (re)drawn too."""
    lines = ["# Results", "", "Rendered by `python -m training.findings` from the per-run tables in `results/` "
             "(one row per run; `*_curves.csv`: every evaluation). Mean ± std over seeds; n = seeds.", ""]
    for name, (claim, question) in EXPERIMENTS.items():
        lines += [f"## {name}", "", f"**The paper:** {claim}", f"**Here:** {question}", ""]
        if not (results / f"{name}.csv").exists():
            lines += [f"Not run yet: `python train.py --multirun experiment={name}`, then "
                      f"`python -m training.results runs/experiments/{name} --out results/{name}.csv "
                      f"--experiment {name}`." + not_run_cost(results, name), ""]
            check = evidence.pilot_check(RECORDS[name], tables_for(results))
            if check:
                lines += ["**Design check** (computed by `training/evidence.py` from the record's pilot, before "
                          "any run of this experiment): " + check[1], ""]
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
            ablations = read(results / f"{name}_ablation.csv")
            lines += ["Ablations of the final models (`python -m training.ablation`; mean teacher-forced test "
                      "accuracy over the trained lengths with one component zero-ablated, or mean-ablated: "
                      "replaced by its mean over the test inputs at each position; mean ± std over seeds; "
                      f"head: the seed formed the head by the detector, iteration score ≥ {HEAD}):", ""]
            lines += ablation_table(rows, ablations) + [""]
            by_length = head_ablation_by_length(rows, ablations)
            if by_length:
                lines += ["The seeds with the head, length by length (mean teacher-forced test accuracy per "
                          "input length with the later layer's head ablated, or layer 1's attention to "
                          "`<eoi>` knocked out; mean ± std over those seeds):", ""] + by_length + [""]
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
            x = "time_s" if name in WALL_CLOCK else RECORDS[name]["layout"].get("x", "step")
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
    amendments = RECORDS[name].get("amendments") or []
    amended = {a["sha256"]: a["change"] for a in amendments}
    if hashes and hashes <= {sha} | set(amended):
        # every change since the earliest record a run carries, in the record's order (a later change
        # that no run saw, such as closing the experiment, is one too)
        first = min(i for i, a in enumerate(amendments) if a["sha256"] in hashes)
        changes = ". ".join(a["change"].rstrip(".") for a in amendments[first:])
        return f"amended after its runs started (the runs carry the hash of the record before): {changes}"
    if hashes <= {""}:
        return "no run of this table recorded the record's hash: the record was written after its runs"
    return (f"the record changed after its runs started: {sum(r.get('record_sha256') != sha for r in rows)} of "
            f"{len(rows)} runs carry another hash (or none)")


def seeds_so_far(record, rows: list[dict]) -> str | None:
    """Where an experiment that runs over several sessions stands: None when every arm has the seeds its
    record declares, else how many each arm has so far (the verdicts below are computed at that n)."""
    if not rows:
        return None
    keys, groups = arms(rows)
    counts = {key: len({r["seed"] for r in rs}) for key, rs in groups.items()}
    short = {key: n for key, n in counts.items() if n < record["seeds"]}
    if not short:
        return None
    where = "every arm" if len(short) == len(counts) else "; ".join(label(keys, key) for key in short)
    ns = sorted(set(short.values()))
    have = str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
    return (f"not finished: {where} has {have} of the {record['seeds']} declared seeds so far, and the verdicts "
            "below are computed at that n")


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
             f"{record['seeds']} ({record['seeds_why'].rstrip('.')}).", ""]
    partial = seeds_so_far(record, rows)
    if partial:
        lines += [f"⚠ **{partial[0].upper() + partial[1:]}.**", ""]
    lines += ["**Verdicts** (computed from the record's rules by `training/evidence.py`: Wilson 95% intervals "
              "for seed counts, Fisher's exact test for two counts, bootstrap intervals and the Mann-Whitney U "
              "test for continuous measures; a word in bold comes from the rule):", ""]
    found = evidence.verdicts(record, tables)
    lines += [f"- {sentence}" for _, sentence in found] + [""]
    paper = record.get("paper")
    if paper:
        ratio = evidence.budget_ratio(record, rows) or "—"
        words_ = ", ".join(f"{w} {sum(x == w for x, _ in found)}" for w in dict.fromkeys(x for x, _ in found))
        lines += ["| the paper's evidence | here | budget | verdicts |", "|---|---|---|---|",
                  f"| {paper['evidence']} | {len(rows)} runs, {record['seeds']} seeds per arm"
                  + (" declared (fewer so far)" if partial else "") + f" | {ratio} | {words_} |", ""]
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
            check = evidence.pilot_check(RECORDS[name], tables_for(results))
            lines.append(f"- **{name}**: not run yet (`python train.py --multirun experiment={name}`)."
                         + (f" Design check, from its pilot: at the pilot's budget it {check[0]} what it asks "
                            f"([RESULTS.md](RESULTS.md#{name}))." if check else ""))
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
