"""Sweep results as one tidy table: one row per run, a column for every config key that varies, the
keys every finding is read by, and the run's measured outcome (``summary.json``).

Written at the end of every ``python train.py --multirun ...`` by :class:`ResultsCallback`, and on
demand (a partly finished or re-run sweep, or runs gathered by hand)::

    python -m training.results runs/sweeps/<date>            # -> runs/sweeps/<date>/results.csv + .parquet
    python -m training.results runs/experiments/f4 --out results/f4_scaling.csv --experiment f4_scaling

An experiment that outgrows one session (run folders do not survive a new machine; the committed tables
do) adds its new runs to its committed table with ``--merge``: a run of the table that the sweep ran
again (same arm, same seed) is replaced, every other row is kept, and a config column the sweep
varies but the table lacks is filled for the kept rows from ``--assume`` (what those runs had)::

    python -m training.results runs/experiments/paper_ingredients --out results/paper_ingredients.csv \
        --experiment paper_ingredients --merge --assume batch_size=64 --assume packing=true --run-prefix 2026-12-06/

A run folder without ``summary.json`` (still training, killed) gets ``status`` ``unfinished`` and its
last evaluation's numbers, so a partial sweep can already be read. A sweep job that failed, or a run
whose files are damaged, gets ``status`` ``failed`` and an ``error`` naming the file; the command (and
a ``--multirun``) then exits non-zero with the number of failed runs.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path


from datasets_builders.files import write_text_atomic

from .report import main_task, summary
from .run_folder import RunFolderError, read_metrics

__all__ = ["collect", "write_results", "ResultsCallback", "main", "ID_KEYS"]

# Always columns (the keys the paper's findings are read by, and the step budget a table is compared
# at when it shares rows with another), whether they vary or not.
ID_KEYS = ("data.task", "data.cot", "model.n_layer", "model.n_embd", "model.position_embedding",
           "data.max_length", "optim.max_steps", "seed")
SKIP_KEYS = {"output_dir", "resume", "overwrite", "progress", "report_to", "threads", "record"}


FAILED_JOBS = "failed_jobs"  # <sweep dir>/failed_jobs/<job>.json: the error of a failed sweep job (training.cli)


def _run_row(folder: Path, failure: dict | None = None) -> dict:
    """``{"status", "config": {dotted key: value}, "outcome": {...}}`` of one run folder. A sweep job
    that failed (``failure``), or a folder whose files cannot be read, is a ``failed`` row whose
    ``error`` names the file: it stays in the table instead of silently leaving its arm."""
    from .config import ConfigError, from_dict
    try:
        if failure is not None and failure.get("config"):  # the job's own arm, whatever its folder holds
            cfg, config = _flat_config(from_dict(failure["config"]))
        else:
            cfg, config = _read_config(folder)
    except ConfigError as err:
        return {"status": "failed", "config": {}, "outcome": {"error": failure["error"] if failure else str(err)}}
    if failure is not None:
        return {"status": "failed", "config": config, "outcome": {"error": failure["error"]}}
    try:
        if (folder / "summary.json").exists():
            outcome = _read_json(folder / "summary.json")
            if cfg.data.source == "paper" and "unseen_accuracy" not in outcome:
                outcome.update(unseen_accuracy_of(folder, cfg))
            return {"status": "finished", "config": config, "outcome": outcome}
        records = read_metrics(folder / "metrics.jsonl")
    except RunFolderError as err:
        return {"status": "failed", "config": config, "outcome": {"error": str(err)}}
    outcome = summary(records, cfg, "unfinished") if any("test" in r for r in records) else {}
    return {"status": "unfinished", "config": config, "outcome": outcome}


def unseen_accuracy_of(folder: Path, cfg) -> dict:
    """``unseen_accuracy`` and ``unseen_acc_L<L>`` of a finished ``data.source=paper`` run that
    predates them in its ``summary.json``: its ``final/`` model evaluated, as training now evaluates
    it, on the test rows its train half did not draw (``TaskData.eval_sets``'s ``"unseen"``). Empty
    when the run has no ``final/``."""
    if not (folder / "final" / "model.safetensors").is_file():
        return {}
    import torch

    from modeling.analysis import load_model

    from .data import TaskData
    from .report import run_eval, task_metrics

    data = TaskData(cfg)
    torch.manual_seed(0)
    model = load_model(str(folder / "final"))
    metrics = run_eval(model, data, {"unseen": data.eval_sets(cfg.eval_per_length)["unseen"]}, cfg)
    if "unseen" not in metrics:
        return {}
    u = task_metrics({"test": metrics["unseen"]}, main_task(cfg))
    return {"unseen_accuracy": u["accuracy_mean"], **{f"unseen_acc_L{L}": a for L, a in u["accuracy"].items()}}


def _read_config(folder: Path):
    from .config import read_saved
    return _flat_config(read_saved(folder / "train_config.yaml"))


def _flat_config(cfg):
    """A config and its flat resolved values (keys a run's version did not write get their defaults,
    derived model values as the model had them)."""
    from .config import flatten, model_config, to_dict
    values = to_dict(cfg)
    resolved = model_config(cfg)
    values["model"] = {k: getattr(resolved, k) for k in values["model"]}
    return cfg, {k: json.dumps(v) if isinstance(v, list) else v for k, v in flatten(values).items() if k not in SKIP_KEYS}


def _read_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise RunFolderError(f"{path}: not readable JSON ({err}); the file is damaged") from None
    if not isinstance(doc, dict):
        raise RunFolderError(f"{path}: not a JSON object; the file is damaged")
    return doc


def _failures(root: Path) -> dict[Path, dict]:
    """``{run folder: {"error", "config"}}`` of the failed sweep jobs recorded under ``root``."""
    out = {}
    for path in root.rglob(f"{FAILED_JOBS}/*.json"):
        try:
            doc = _read_json(path)
        except RunFolderError as err:
            doc = {"error": str(err)}
        out[path.parent.parent / str(doc.get("run", path.stem))] = {"config": doc.get("config"),
                                                                     "error": str(doc.get("error"))}
    return out


def collect(sweep_dir: str | Path) -> list[dict]:
    """Every run folder (a ``train_config.yaml``) and every failed sweep job under ``sweep_dir`` (any
    depth), in path order."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise RunFolderError(f"{root} is not a folder")

    def natural(path: Path) -> tuple:  # job 2 before job 10
        return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in path.relative_to(root).parts)

    failures = _failures(root)
    rows = []
    for folder in sorted({p.parent for p in root.rglob("train_config.yaml")} | set(failures), key=natural):
        if {"checkpoints", "snapshots", "final"} & set(folder.relative_to(root).parts):
            continue
        rows.append({"run": folder.relative_to(root).as_posix(), **_run_row(folder, failures.get(folder))})
    return rows


def _short(columns: list[str]) -> dict[str, str]:
    """``model.n_embd`` -> ``n_embd`` where the last part is unique among the columns."""
    last = [c.rsplit(".", 1)[-1] if c.startswith(("model.", "data.", "optim.")) else c for c in columns]
    return {c: (s if last.count(s) == 1 else c) for c, s in zip(columns, last)}


def _config_columns(rows: list[dict]) -> list[str]:
    """The identity keys, then every config key whose value differs between runs."""
    keys = list(dict.fromkeys(k for r in rows for k in r["config"]))
    return list(ID_KEYS) + [k for k in keys if k not in ID_KEYS
                            and len({json.dumps(r["config"].get(k), sort_keys=True) for r in rows}) > 1]


STRUCTURE = ("states", "inputs", "entries", "group", "abelian", "solvable")  # tasks.structure's measures


def _structure(name) -> dict:
    """A task's complexity measures (``tasks.structure``), empty where the task cannot be built here
    (a task file that has moved)."""
    from datasets_builders import tasks
    try:
        return tasks.structure(tasks.make_task(name))
    except (ValueError, OSError):
        return {}


def _task_of(config: dict) -> str | None:
    """The task a run learns: ``data.mix_with`` when copy rows are mixed in (``data.task=mix``)."""
    task = config.get("data.task")
    return config.get("data.mix_with") if task == "mix" else task


def table(rows: list[dict], experiment: str | None = None) -> tuple[list[str], list[dict]]:
    """Columns and flat rows: identity keys, the config keys that vary, then every outcome. A sweep
    over tasks (the task a run learns, copy rows or not) also gets each task's complexity measures
    (``STRUCTURE``) after its task column (``mix_with`` where it varies)."""
    config_columns = _config_columns(rows)
    names = _short(config_columns)
    columns = (["experiment"] if experiment else []) + ["run", "status"] + [names[c] for c in config_columns]
    over_tasks = len({_task_of(r["config"]) for r in rows}) > 1
    if over_tasks:
        anchor = names["data.mix_with"] if names.get("data.mix_with") in columns else names.get("data.task")
        at = columns.index(anchor) + 1 if anchor in columns else len(columns)
        columns[at:at] = STRUCTURE
        structures = {t: _structure(t) for t in {_task_of(r["config"]) for r in rows}}
    columns += [k for k in dict.fromkeys(k for r in rows for k in r["outcome"]) if k not in columns]
    flat = []
    for r in rows:
        row = {"experiment": experiment} if experiment else {}
        row.update({"run": r["run"], "status": r["status"]})
        row.update({names[c]: r["config"].get(c) for c in config_columns})
        if over_tasks:
            row.update({k: structures[_task_of(r["config"])].get(k) for k in STRUCTURE})
        row.update({k: v for k, v in r["outcome"].items() if k not in row})
        flat.append(row)
    return columns, flat


def write_results(sweep_dir: str | Path, out: str | Path | None = None, experiment: str | None = None,
                  merge: bool = False, assume: dict[str, str] | None = None, run_prefix: str = "") -> Path:
    """Collect ``sweep_dir`` and write ``results.csv`` (+ ``.parquet``) atomically; returns the csv.
    ``merge``: keep the rows of the table already at ``out`` that the sweep did not run again
    (:func:`merge_tables`; ``assume`` fills the config columns they lack). ``run_prefix`` goes before
    every run's name (``2026-12-06/3``: run numbers restart in every sweep)."""
    rows = collect(sweep_dir)
    if not rows:
        raise RunFolderError(f"no run folder (train_config.yaml) under {sweep_dir}")
    long = curves(rows, Path(sweep_dir), experiment)
    for r in rows + long:
        r["run"] = run_prefix + r["run"]
    columns, data = table(rows, experiment)
    out = Path(out) if out else Path(sweep_dir) / "results.csv"
    long_columns = list(long[0]) if long else []
    curves_path = out.with_name(out.stem + "_curves.csv")
    if merge:  # everything is read and checked before anything is written
        columns, data, long_columns, long = merge_tables(out, rows, columns, data, long_columns, long,
                                                        dict(assume or {}))
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_csv(out, columns, data)
    _write_parquet(out.with_suffix(".parquet"), columns, data)
    if long:
        _write_csv(curves_path, long_columns, long)
    return out


def _config_part(columns: list[str]) -> list[str]:
    """The config columns of a table (before ``steps``, the first outcome), without the run's name."""
    at = columns.index("steps") if "steps" in columns else len(columns)
    return [c for c in columns[:at] if c not in ("experiment", "run", "status", *STRUCTURE)]


def _key(value) -> str:
    """A cell as the CSV writes it, so a typed value and its text compare equal."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def merge_tables(out: Path, rows: list[dict], columns: list[str], data: list[dict], long_columns: list[str],
                 long: list[dict], assume: dict[str, str]) -> tuple[list[str], list[dict], list[str], list[dict]]:
    """The committed table at ``out`` (its parquet, typed) with a sweep's rows added.

    - A new row gets every config column of the old table, from its run's full config.
    - An old row gets the config columns only the sweep varies from ``assume`` (column: value, what
      the old runs had); one missing is an error naming it.
    - An old row is replaced when a new row has the same value in every config column (the same arm
      and seed); its curves go with it. Run names must not clash.
    """
    import pyarrow.parquet as pq
    parquet = out.with_suffix(".parquet")
    if not parquet.is_file():
        raise RunFolderError(f"--merge: {parquet} does not exist: there is no committed table to add the runs "
                             "to (drop --merge to write a new one)")
    try:
        old = pq.read_table(parquet).to_pylist()
    except Exception as err:  # noqa: BLE001  pyarrow raises several kinds for a damaged file
        raise RunFolderError(f"--merge: {parquet} is not a readable parquet file ({err}); regenerate it") from None
    old_columns = list(old[0]) if old else []
    named = {row.get("experiment") for row in old} - {None}
    if named and {row.get("experiment") for row in data} != named:
        raise RunFolderError(f"--merge: {out} holds experiment {', '.join(sorted(named))}: give the sweep the same "
                             f"name (--experiment {sorted(named)[0]})")
    new_config, old_config = _config_part(columns), _config_part(old_columns)
    # the old table's config columns, for the new rows: from each run's full config
    short = {}
    for r in rows:
        for dotted, name in _short(list(r["config"])).items():
            short.setdefault(name, dotted)
    for name in old_config:
        if name not in new_config and name not in short:
            raise RunFolderError(f"--merge: {out} has the config column {name!r}, which the sweep's runs do not "
                                 "have: they are not runs of the same experiment")
    for row, r in zip(data, rows):
        for name in old_config:
            if name not in row:
                row[name] = r["config"].get(short[name])
    lacking = [c for c in new_config if c not in old_config]
    unknown = [c for c in assume if c not in lacking]
    if unknown:
        raise RunFolderError(f"--merge: --assume {', '.join(unknown)}: the committed table already has "
                             f"{'this column' if len(unknown) == 1 else 'these columns'}, or the sweep does not vary "
                             f"{'it' if len(unknown) == 1 else 'them'}; assume only {', '.join(lacking) or 'nothing'}")
    missing = [c for c in lacking if c not in assume]
    if missing:
        hint = " ".join(f"--assume {c}=<value>" for c in missing)
        raise RunFolderError(f"--merge: {out} has no column {', '.join(missing)}, which the sweep varies: say what "
                             f"its runs had ({hint})")
    for row in old:
        row.update({c: assume[c] for c in lacking})
    config = old_config + lacking
    new_keys = {tuple(_key(row.get(c)) for c in config) for row in data}
    kept = [row for row in old if tuple(_key(row.get(c)) for c in config) not in new_keys]
    clash = {row["run"] for row in kept} & {row["run"] for row in data}
    if clash:
        raise RunFolderError(f"--merge: run name(s) {', '.join(sorted(clash))} are in {out} and in the sweep: "
                             "name the sweep's runs apart with --run-prefix (e.g. --run-prefix <today's date>/)")
    at = old_columns.index("steps") if "steps" in old_columns else len(old_columns)
    merged_columns = list(dict.fromkeys(old_columns[:at] + lacking + old_columns[at:] + columns))
    old_runs = {row["run"] for row in kept}
    curves_path = out.with_name(out.stem + "_curves.csv")
    old_long = []
    if curves_path.is_file():
        with open(curves_path, newline="") as f:
            old_long = [row for row in csv.DictReader(f) if row["run"] in old_runs]
    for row in old_long:
        row.update({c: assume[c] for c in lacking})
    runs = {row["run"]: row for row in data}
    for row in long:
        row.update({c: runs[row["run"]].get(c) for c in config if c not in row})
    merged_long_columns = list(dict.fromkeys((list(old_long[0]) if old_long else []) + long_columns + lacking
                                             + [c for c in config if c not in long_columns]))
    for row in kept + data:
        for c in merged_columns:
            row.setdefault(c, None)
    return merged_columns, kept + data, merged_long_columns, old_long + long


def curves(rows: list[dict], sweep_dir: Path, experiment: str | None = None) -> list[dict]:
    """The long table of every evaluation of every run: the same identity and varying config columns
    as :func:`table`, then per step the main task's test accuracy (mean, min) and head scores.
    Emergence figures are drawn from it."""
    from .config import read_saved
    from .report import task_metrics, main_task
    config_columns = _config_columns(rows)
    names = _short(config_columns)
    out = []
    for r in rows:
        if r["status"] == "failed":
            continue
        folder = Path(sweep_dir) / r["run"]
        cfg = read_saved(folder / "train_config.yaml")
        ident = {"experiment": experiment} if experiment else {}
        ident.update({"run": r["run"], **{names[c]: r["config"].get(c) for c in config_columns}})
        for rec in read_metrics(folder / "metrics.jsonl"):
            if "test" in rec:
                m = task_metrics(rec, main_task(cfg))
                out.append({**ident, "step": rec["step"], "time_s": rec.get("time_s"),
                            "test_accuracy": m["accuracy_mean"], "test_accuracy_min": m["accuracy_min"],
                            "eoi_score": m.get("first_mean"), "iteration_score": m.get("iteration_mean")})
    return out


def _write_csv(path: Path, columns: list[str], data: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()} for r in data])
    write_text_atomic(path, buf.getvalue())


def _write_parquet(path: Path, columns: list[str], data: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    cols = {}
    for c in columns:
        values = [r.get(c) for r in data]
        if any(isinstance(v, (list, dict)) for v in values) or len({type(v) for v in values if v is not None}) > 1:
            values = [None if v is None else json.dumps(v) if isinstance(v, (list, dict)) else str(v) for v in values]
        cols[c] = values
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.table(cols), tmp)
    tmp.replace(path)


def print_table(csv_path: Path, rows: int = 12) -> None:
    """The table's size and path, then its first rows (the columns that vary, and the outcome)."""
    with open(csv_path) as f:
        data = list(csv.DictReader(f))
    print(f"{len(data)} run(s) -> {csv_path} (+ .parquet)")
    for r in data:
        if r["status"] == "failed":
            print(f"  failed: {r['run']}: {r.get('error', '')}")
    config = list(data[0])[:list(data[0]).index("steps")] if data else []
    shown = [c for c in config if c not in ("experiment", "run", "status") and len({r[c] for r in data}) > 1]
    shown = ["run", "status", *shown, "steps", "steps_to_target", "test_accuracy", "iteration_score"]
    print("  ".join(shown))
    for r in data[:rows]:
        print("  ".join(str(r.get(c, ""))[:10] for c in shown))


try:
    from hydra.experimental.callback import Callback
except ImportError:  # hydra is a dependency; this keeps `python -m training.results` importable without it
    Callback = object  # type: ignore[misc,assignment]


class ResultsCallback(Callback):
    """Hydra callback: before a multirun, print its plan (``training.plan``); when it ends, write its
    sweep folder's ``results.csv``."""

    def on_multirun_start(self, config, **kwargs) -> None:
        """Before the first job: the sweep's plan (runs, steps, sequences; for a sweep of more than a
        million steps, the time measured here). A plan that cannot be made never stops the sweep."""
        from .plan import print_plan
        try:
            print_plan(list(config.hydra.overrides.task))
        except Exception as err:  # noqa: BLE001  Hydra's own checks of the jobs follow
            print(f"plan: not available ({str(err).splitlines()[0] if str(err) else type(err).__name__})",
                  file=sys.stderr)

    def on_multirun_end(self, config, **kwargs) -> None:
        """Write the table, then end the sweep with the number of failed jobs as its exit status."""
        try:
            path = write_results(config.hydra.sweep.dir)
            print_table(path)
        except (RunFolderError, ValueError, OSError) as err:  # ConfigError is a ValueError
            print(f"results: {err}; re-collect with python -m training.results {config.hydra.sweep.dir}",
                  file=sys.stderr)
            sys.exit(1)
        failed = failed_runs(path)
        if failed:
            print(f"error: {failed} job(s) of the sweep failed (status=failed in {path})", file=sys.stderr)
            sys.exit(min(failed, 100))


def failed_runs(csv_path: Path) -> int:
    with open(csv_path) as f:
        return sum(r["status"] == "failed" for r in csv.DictReader(f))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.results", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dir", help="a sweep folder (or any folder holding run folders)")
    p.add_argument("--out", default=None, help="csv path (default: <sweep_dir>/results.csv); parquet beside it")
    p.add_argument("--experiment", default=None, help="an experiment name for the first column")
    p.add_argument("--merge", action="store_true", help="add the runs to the table already at --out (rows the "
                   "sweep ran again are replaced, the others kept)")
    p.add_argument("--assume", action="append", default=[], metavar="COLUMN=VALUE",
                   help="with --merge: the value a config column the sweep varies had in the table's runs")
    p.add_argument("--run-prefix", default="", help="goes before every run's name (e.g. 2026-12-06/): run numbers "
                   "restart in every sweep, so a merged table tells sessions apart by it")
    args = p.parse_args(argv)
    assume = {}
    for item in args.assume:
        column, sep, value = item.partition("=")
        if not sep or not column:
            print(f"error: --assume {item!r}: write COLUMN=VALUE, e.g. --assume batch_size=64", file=sys.stderr)
            sys.exit(2)
        assume[column] = value
    if (args.assume or args.merge) and not args.out:
        print("error: --merge adds runs to a committed table: name it with --out results/<experiment>.csv",
              file=sys.stderr)
        sys.exit(2)
    if args.assume and not args.merge:
        print("error: --assume only fills columns of a --merge", file=sys.stderr)
        sys.exit(2)
    try:
        path = write_results(args.sweep_dir, args.out, args.experiment, merge=args.merge, assume=assume,
                             run_prefix=args.run_prefix)
    except (RunFolderError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print_table(path)
    if failed_runs(path):
        print(f"error: {failed_runs(path)} run(s) failed or could not be read (status=failed in {path})",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
