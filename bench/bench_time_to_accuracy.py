"""Time to accuracy, side by side: our demo recipe against the paper's recipe on this machine.

    python bench/bench_time_to_accuracy.py [--minutes 10] [--threads 2] [--out runs/bench_tta]

Each recipe trains in its own run folder (one after the other, the same thread count) until every
test length reaches 99% or the wall-clock budget ends; the table gives the training time (evaluation
excluded) and steps to 99%, or the accuracy reached within the budget, and the ratio. Numbers come
from each run's ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"demo (parity, ours)": "parity", "paper_reference (the paper's recipe)": "paper_reference"}


def run(recipe: str, out: Path, minutes: float, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, "train.py", f"recipe={recipe}", f"output_dir={out}", f"max_minutes={minutes}",
           "target_accuracy=0.99", "report_to=none", "progress=false", "save_every=0", "snapshot_steps=[]",
           f"threads={threads}", "overwrite=true"]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "summary.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="training budget per recipe (wall clock)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/bench_tta")
    args = p.parse_args()
    results = {name: run(recipe, Path(args.out) / recipe, args.minutes, args.threads)
               for name, recipe in RECIPES.items()}
    print(f"\n{os.cpu_count()} CPU cores, {args.threads} torch threads, budget {args.minutes} min per recipe")
    print(f"{'recipe':40s} {'steps':>7s} {'train s':>8s} {'to 99%':>10s} {'test acc (mean/min)':>20s}")
    for name, s in results.items():
        hit = f"{s['time_to_target_s']:.0f} s" if s["reached_target"] else "not reached"
        print(f"{name:40s} {s['steps']:7d} {s['time_s']:8.0f} {hit:>10s} "
              f"{s['test_accuracy']:.3f} / {s['test_accuracy_min']:.3f}")
    ours, paper = results.values()
    if ours["reached_target"] and paper["reached_target"]:
        print(f"time to 99%: {paper['time_to_target_s'] / ours['time_to_target_s']:.1f}x faster")
    elif ours["reached_target"]:
        print(f"time to 99%: ours {ours['time_to_target_s']:.0f} s; the paper's recipe did not reach it in "
              f"{paper['time_s']:.0f} s (> {paper['time_s'] / ours['time_to_target_s']:.1f}x)")


if __name__ == "__main__":
    main()
