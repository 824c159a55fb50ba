"""Measure what a recipe ingredient buys, over seeds: runs of train.py side by side, then a table.

    python bench/sweep.py bench/sweeps/ingredients.yaml --seeds 0 1 2 --jobs 2 --out runs/sweep

A grid file lists named variants, each a recipe plus ``section.key=value`` overrides::

    base: {recipe: parity}
    sinusoidal_init: {recipe: parity, overrides: [model.position_init=sinusoidal]}

Every (variant, seed) is one ``python train.py`` process (``seed=<s>`` is added to its overrides)
in ``<out>/<variant>/seed<s>``; ``--jobs`` of them run at once, each with one torch thread on a CPU
(or sharing the GPU). A run folder that already finished is read, not retrained, so an interrupted
sweep continues where it stopped. The table gives, per variant, how many seeds reached the
recipe's ``target_accuracy`` on every test length, the median step and training time (evaluation
excluded) at which they did, and the final mean test accuracy and layer-2 iteration-head score.
``--summary`` alone prints the table of an existing ``--out`` folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def load_grid(path: str, only: list[str] | None) -> dict:
    grid = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"{path}: expected a mapping of variant name -> {{recipe, overrides}}")
    for name, spec in grid.items():
        if not isinstance(spec, dict) or "recipe" not in spec:
            raise ValueError(f"{path}: variant {name!r} needs a 'recipe' key, got {spec!r}")
        unknown = set(spec) - {"recipe", "overrides"}
        if unknown:
            raise ValueError(f"{path}: variant {name!r} has unknown key(s) {sorted(unknown)}")
    if only:
        missing = [n for n in only if n not in grid]
        if missing:
            raise ValueError(f"--only {missing}: not in {path} (variants: {', '.join(grid)})")
        grid = {n: grid[n] for n in only}
    return grid


def run_one(name: str, spec: dict, seed: int, out: Path, extra: list[str]) -> Path:
    folder = out / name / f"seed{seed}"
    if (folder / "final" / "training_info.json").exists():
        return folder
    cmd = [sys.executable, str(ROOT / "train.py"), "--recipe", spec["recipe"], "--output_dir", str(folder),
           "--overwrite", "--report_to", "none", "--no_progress", *map(str, spec.get("overrides", [])),
           *extra, f"seed={seed}"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"seed{seed}.log", "w") as log:
        subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    return folder


def read_run(folder: Path) -> dict | None:
    """What one run folder says: steps/time to target, final accuracy and head score."""
    metrics = folder / "metrics.jsonl"
    if not metrics.exists():
        return None
    records = [json.loads(l) for l in metrics.read_text().splitlines() if l.strip()]
    if not records:
        return None
    cfg = yaml.safe_load((folder / "train_config.yaml").read_text())
    target = cfg.get("target_accuracy") or 0.99
    hit = next((r for r in records if r["test"]["accuracy_min"] >= target), None)
    last = records[-1]["test"]
    # In a mix run the layer-2 score of the main task (not copy) is the one of interest.
    main = last.get(cfg["data"].get("mix_with", "parity"), last) if cfg["data"]["task"] == "mix" else last
    return {"done": (folder / "final" / "training_info.json").exists(), "target": target,
            "hit_step": hit["step"] if hit else None, "hit_time": hit["time_s"] if hit else None,
            "last_step": records[-1]["step"], "last_time": records[-1]["time_s"],
            "acc_mean": last["accuracy_mean"], "acc_min": last["accuracy_min"],
            "iteration": main.get("iteration_mean"), "first": main.get("first_mean")}


def summary(out: Path, names: list[str] | None = None) -> str:
    names = names or sorted(p.name for p in out.iterdir() if p.is_dir())
    head = (f"{'variant':28s} {'reached':>7s} {'median step':>11s} {'median s':>8s} {'steps (each seed)':>22s} "
            f"{'final acc':>9s} {'min len':>7s} {'<eoi> L1':>8s} {'iter L2':>7s}")
    lines = [head, "-" * len(head)]
    for name in names:
        runs = [r for f in sorted((out / name).glob("seed*")) if f.is_dir() and (r := read_run(f))]
        if not runs:
            continue
        hits = [r for r in runs if r["hit_step"] is not None]
        most = len(hits) * 2 > len(runs)
        med_step = f"{statistics.median(r['hit_step'] for r in hits):.0f}" if most else "-"
        med_time = f"{statistics.median(r['hit_time'] for r in hits):.0f}" if most else "-"
        each = ",".join(str(r["hit_step"]) if r["hit_step"] else f">{r['last_step']}" for r in runs)

        def mean(key: str) -> float:
            values = [r[key] for r in runs if r[key] is not None]
            return statistics.mean(values) if values else float("nan")

        lines.append(f"{name:28s} {len(hits):>3d}/{len(runs):<3d} {med_step:>11s} {med_time:>8s} {each:>22s} "
                     f"{mean('acc_mean'):9.3f} {mean('acc_min'):7.3f} {mean('first'):8.3f} {mean('iteration'):7.3f}")
    lines.append("(median over seeds when most seeds reached the target; '>N': not reached by step N; "
                 "times exclude evaluation)")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("grid", nargs="?", default=str(ROOT / "bench" / "sweeps" / "ingredients.yaml"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2)))
    p.add_argument("--out", default="runs/sweep")
    p.add_argument("--only", nargs="+", help="run only these variants of the grid")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="overrides added to every run (e.g. eval_per_length=128)")
    p.add_argument("--summary", action="store_true", help="print the table of --out and exit")
    a = p.parse_args(argv)
    out = Path(a.out)
    if a.summary:
        print(summary(out))
        return
    try:
        grid = load_grid(a.grid, a.only)
    except ValueError as err:
        sys.exit(f"error: {err}")
    jobs = [(n, s, seed) for seed in a.seeds for n, s in grid.items()]  # every variant's seed 0 first
    print(f"{len(jobs)} runs ({len(grid)} variants x {len(a.seeds)} seeds), {a.jobs} at a time, in {out}",
          flush=True)
    start, done = time.time(), 0
    with ThreadPoolExecutor(a.jobs) as pool:
        futures = [pool.submit(run_one, n, s, seed, out, a.set) for n, s, seed in jobs]
        for fut, (n, _, seed) in zip(futures, jobs):
            folder = fut.result()
            done += 1
            r = read_run(folder)
            state = "no metrics (see the log)" if r is None else (
                f"target at step {r['hit_step']} ({r['hit_time']:.0f}s)" if r["hit_step"] else
                f"acc {r['acc_mean']:.3f} (min {r['acc_min']:.3f}) at step {r['last_step']}")
            print(f"[{done}/{len(jobs)} {time.time() - start:5.0f}s] {n} seed {seed}: {state}", flush=True)
    print()
    print(summary(out, list(grid)))


if __name__ == "__main__":
    main()
