"""Which components a sweep's final models need: each attention head and each MLP zero- and
mean-ablated, on each run's own held-out test split (a causal check of the head scores).

    python -m training.ablation runs/experiments/no_early_stop --out results/no_early_stop_ablation.csv --experiment no_early_stop

One row per (run, component, mode): ``component`` numbers layers from 1 as the paper and the cards
do (``layer-2 head``; ``layer-2 head 1`` when a layer has several heads), ``mode`` is ``zero`` or
``mean`` (``modeling.analysis.ablation_study``), ``test_accuracy`` the mean teacher-forced sequence
accuracy over the trained lengths with it ablated, ``baseline`` without, ``drop`` their difference,
``acc_L<n>`` per length. With chain of thought, each head's attention to ``<eoi>`` is also knocked out
(component ``layer-1 head -> eoi``, mode ``knockout``: ``modeling.analysis.knock_out_eoi``), the causal
check of the circuit's first step. ``python -m training.findings`` shows the table per arm of the experiment
and per the detector's word on each seed (head: yes / no), and, for the seeds with the head, per length.
A run without a final model (unfinished or failed) is left out and named. For an experiment over
several sessions, ``--merge --run-prefix <date>/`` adds a sweep's rows to the committed table with
the run names ``training.results --merge --run-prefix`` gave them.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from datasets_builders.files import write_csv_atomic

from .config import ConfigError, read_saved
from .run_folder import RunFolderError

__all__ = ["component_name", "ablate_run", "collect", "main", "MODES"]

MODES = ("zero", "mean")


def component_name(name: str, n_head: int) -> str:
    """``L1H0`` -> ``layer-2 head`` (``layer-2 head 1`` with several heads); ``L0MLP`` -> ``layer-1 MLP``;
    ``L0H0->eoi`` (a head's attention to ``<eoi>``) -> ``layer-1 head -> eoi``."""
    if name.endswith("->eoi"):
        return component_name(name[:-len("->eoi")], n_head) + " -> eoi"
    layer, rest = name[1:].split("H", 1) if "H" in name else name[1:].split("M", 1)
    if name.endswith("MLP"):
        return f"layer-{int(layer) + 1} MLP"
    return f"layer-{int(layer) + 1} head" + (f" {int(rest) + 1}" if n_head > 1 else "")


def ablate_run(folder: Path, per_length: int = 256, run_prefix: str = "") -> list[dict]:
    """The ablation rows of one finished run folder (its ``final/`` model on its own test split)."""
    import torch

    from modeling import IterGPTForCausalLM
    from modeling.analysis import ablation_study

    from .data import TaskData
    from .report import main_task

    cfg = read_saved(folder / "train_config.yaml")
    task = main_task(cfg)
    tests = TaskData(cfg).splits["test"]
    rows = {L: r[:per_length] for (name, L), r in sorted(tests.items()) if name == task}
    model = IterGPTForCausalLM.from_pretrained(folder / "final").eval()
    with torch.no_grad():
        study = ablation_study(model, rows, modes=MODES, eoi_knockout=cfg.data.cot)
    base = study["baseline"]
    out = []
    for name, by_mode in study["components"].items():
        for mode, r in by_mode.items():
            out.append({"run": run_prefix + folder.name, "component": component_name(name, model.config.n_head), "mode": mode,
                        "baseline": round(base["mean"], 6), "test_accuracy": round(r["mean"], 6),
                        "drop": round(r["drop"], 6), **{f"acc_L{L}": round(a, 6) for L, a in r["accuracy"].items()}})
    return out


def collect(sweep_dir: str | Path, experiment: str | None = None, per_length: int = 256,
            run_prefix: str = "") -> tuple[list[dict], list[str]]:
    """Rows for every finished run below ``sweep_dir`` (numbered run folders), and the runs left out;
    ``run_prefix`` as ``training.results --run-prefix`` gave the runs' table."""
    from tqdm.auto import tqdm

    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise RunFolderError(f"{sweep_dir}: not a folder; give a sweep folder (runs/experiments/<name>)")
    folders = sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    rows, skipped = [], []
    for folder in tqdm(folders, desc="ablations", unit="run"):
        if not ((folder / "final" / "model.safetensors").exists() and (folder / "summary.json").exists()):
            skipped.append(f"{folder.name} (no final model)")
            continue
        try:
            rows += [{"experiment": experiment or sweep_dir.name, **r} for r in ablate_run(folder, per_length, run_prefix)]
        except (ConfigError, OSError, ValueError) as err:
            skipped.append(f"{folder.name} ({err})")
    return rows, skipped


def write(rows: list[dict], out: Path) -> None:
    write_csv_atomic(out, list(dict.fromkeys(k for r in rows for k in r)), rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.ablation", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep_dir", help="a sweep folder (its numbered run folders)")
    ap.add_argument("--out", default=None, help="csv path (default: <sweep_dir>/ablation.csv)")
    ap.add_argument("--experiment", default=None, help="the experiment's name (first column; default: the folder's)")
    ap.add_argument("--per-length", type=int, default=256, help="test sequences per length (default 256)")
    ap.add_argument("--run-prefix", default="", help="before every run's name, as training.results --run-prefix "
                    "named them in the table")
    ap.add_argument("--merge", action="store_true", help="keep the rows of the ablation table already at --out "
                    "whose runs are not in this sweep (a later session's runs added)")
    args = ap.parse_args(argv)
    out = Path(args.out or Path(args.sweep_dir) / "ablation.csv")
    if args.per_length < 1:
        print(f"error: --per-length={args.per_length}: give at least 1", file=sys.stderr)
        sys.exit(2)
    if args.merge and not out.is_file():
        print(f"error: --merge: {out} does not exist (drop --merge to write a new table)", file=sys.stderr)
        sys.exit(2)
    try:
        rows, skipped = collect(args.sweep_dir, args.experiment, args.per_length, args.run_prefix)
    except (RunFolderError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    for s in skipped:
        print(f"left out: run {s}", file=sys.stderr)
    if not rows:
        print(f"error: no finished run below {args.sweep_dir}", file=sys.stderr)
        sys.exit(1)
    if args.merge:
        with open(out, newline="") as f:
            old = list(csv.DictReader(f))
        new_runs = {r["run"] for r in rows}
        rows = [r for r in old if r["run"] not in new_runs] + rows
    write(rows, out)
    print(f"{len({r['run'] for r in rows})} run(s), {len(rows)} ablation(s) -> {out}")


if __name__ == "__main__":
    main()
