"""Time to accuracy, side by side: our demo recipe against the paper's recipe on this machine.

    python bench/bench_time_to_accuracy.py [--minutes 10] [--threads 2] [--out runs/bench_tta]
    python bench/bench_time_to_accuracy.py --collect    # re-read the finished run folders, train nothing

Each recipe trains in its own run folder (one after the other, the same thread count) until every
test length reaches 99% or the wall-clock budget ends; the table gives the training time (evaluation
excluded) and steps to 99%, or the accuracy reached within the budget, and the ratio. Numbers come
from each run's ``summary.json``; the table goes to ``results/time_to_accuracy.csv``, whose sentence
the README's performance table quotes (``tests/test_release.py`` checks it).
"""

from __future__ import annotations

import argparse
import json
import platform
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
COLUMNS = ["recipe", "name", "budget_min", "threads", "machine", "steps", "time_s", "reached_target",
           "time_to_target_s", "test_accuracy", "test_accuracy_min"]
RECIPES = {"ours (recipe=parity)": "parity", "paper_reference (the paper's recipe)": "paper_reference"}


def run(recipe: str, out: Path, minutes: float, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, "train.py", f"recipe={recipe}", f"output_dir={out}", f"max_minutes={minutes}",
           "target_accuracy=0.99", "report_to=none", "progress=false", "save_every=0", "snapshot_steps=[]",
           f"threads={threads}", "overwrite=true"]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "summary.json").read_text())


def row(name: str, recipe: str, s: dict, minutes: float, threads: int) -> dict:
    return {"recipe": recipe, "name": name, "budget_min": minutes, "threads": threads,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "steps": s["steps"],
            "time_s": round(s["time_s"], 1), "reached_target": s["reached_target"],
            "time_to_target_s": "" if s["time_to_target_s"] is None else round(s["time_to_target_s"], 1),
            "test_accuracy": round(s["test_accuracy"], 4), "test_accuracy_min": round(s["test_accuracy_min"], 4)}


def readme_sentence(rows: list[dict]) -> str:
    """The README performance table's cell, from ``results/time_to_accuracy.csv``."""
    ours, paper = rows
    t = float(ours["time_to_target_s"])
    head = (f"our parity recipe reached 99% on every length in {t:.0f} s of training ({int(ours['steps']):,} steps); "
            f"the paper's recipe ")
    if str(paper["reached_target"]) == "True":
        return head + f"in {float(paper['time_to_target_s']):.0f} s: {float(paper['time_to_target_s']) / t:.1f}x"
    return head + (f"did not within {float(paper['time_s']):.0f} s ({int(paper['steps']):,} steps, test accuracy "
                   f"{float(paper['test_accuracy']):.2f}): more than {float(paper['time_s']) / t:.1f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="training budget per recipe (wall clock)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/bench_tta")
    p.add_argument("--table", default=str(ROOT / "results" / "time_to_accuracy.csv"))
    p.add_argument("--collect", action="store_true", help="re-read the finished run folders, train nothing")
    args = p.parse_args()
    if args.collect:
        results = {name: json.loads((Path(args.out) / recipe / "summary.json").read_text())
                   for name, recipe in RECIPES.items()}
        minutes = {name: json.loads((Path(args.out) / recipe / "final" / "training_info.json").read_text())
                   ["train_config"]["max_minutes"] for name, recipe in RECIPES.items()}
        threads = {name: s.get("threads", args.threads) for name, s in results.items()}
    else:
        results = {name: run(recipe, Path(args.out) / recipe, args.minutes, args.threads)
                   for name, recipe in RECIPES.items()}
        minutes = dict.fromkeys(RECIPES, args.minutes)
        threads = dict.fromkeys(RECIPES, args.threads)
    rows = [row(name, recipe, results[name], minutes[name], threads[name]) for name, recipe in RECIPES.items()]
    print(f"\n{os.cpu_count()} CPU cores, {rows[0]['threads']} torch threads, budget {rows[0]['budget_min']} min per recipe")
    print(f"{'recipe':40s} {'steps':>7s} {'train s':>8s} {'to 99%':>10s} {'test acc (mean/min)':>20s}")
    for name, s in results.items():
        hit = f"{s['time_to_target_s']:.0f} s" if s["reached_target"] else "not reached"
        print(f"{name:40s} {s['steps']:7d} {s['time_s']:8.0f} {hit:>10s} "
              f"{s['test_accuracy']:.3f} / {s['test_accuracy_min']:.3f}")
    from datasets_builders.files import write_csv_atomic
    write_csv_atomic(Path(args.table), COLUMNS, rows)
    print(f"-> {args.table}")
    if rows[0]["reached_target"]:
        print("README:", readme_sentence(rows))


if __name__ == "__main__":
    main()
