"""The demo's time to a detected iteration head, over seeds: `make demo`'s two stages per seed.

    python bench/bench_demo.py [--seeds 0 1 2] [--threads 1] [--out runs/demo_timing]
    python bench/bench_demo.py --collect          # re-read finished run folders, train nothing

Stage 1 trains ``demo_polynomial`` (1,500 steps: the iteration head forms), stage 2 fine-tunes
``demo_parity`` from it until every test length reaches 99%. Numbers come from each stage's
``summary.json`` (training time excludes evaluations); the table goes to ``results/demo.csv``,
which the README's demo table quotes (``tests/test_release.py`` checks it).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("polynomial", "parity")
COLUMNS = ["seed", "threads", "machine", "polynomial_steps", "polynomial_time_s", "parity_steps", "parity_time_s",
           "training_time_s", "parity_accuracy", "parity_accuracy_min", "copy_accuracy_min", "iteration_score",
           "eoi_score"]


def train(seed: int, out: Path, threads: int) -> None:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1")
    common = [f"seed={seed}", "overwrite=true", "progress=false", f"threads={threads}"]
    for cmd in (["recipe=demo_polynomial", f"output_dir={out / 'polynomial'}"],
                ["recipe=demo_parity", f"init_from={out / 'polynomial' / 'final'}", f"output_dir={out / 'parity'}"]):
        print("$ python train.py", " ".join(cmd + common), flush=True)
        subprocess.run([sys.executable, "train.py", *cmd, *common], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)


def row(seed: int, out: Path) -> dict:
    s = {stage: json.loads((out / stage / "summary.json").read_text()) for stage in STAGES}
    parity = s["parity"]
    copy_min = parity.get("test_accuracy_min_all_tasks", parity["test_accuracy_min"])
    return {"seed": seed, "threads": parity["threads"],
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "polynomial_steps": s["polynomial"]["steps"], "polynomial_time_s": round(s["polynomial"]["time_s"], 1),
            "parity_steps": parity["steps"], "parity_time_s": round(parity["time_s"], 1),
            "training_time_s": round(s["polynomial"]["time_s"] + parity["time_s"], 1),
            "parity_accuracy": round(parity["test_accuracy"], 3), "parity_accuracy_min": round(parity["test_accuracy_min"], 3),
            "copy_accuracy_min": round(copy_min, 3), "iteration_score": round(parity["iteration_score"], 3),
            "eoi_score": round(parity["eoi_score"], 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (OMP_NUM_THREADS)")
    p.add_argument("--out", default="runs/demo_timing", help="run folders: <out>/seed<N>/{polynomial,parity}")
    p.add_argument("--table", default=str(ROOT / "results" / "demo.csv"))
    p.add_argument("--collect", action="store_true", help="only re-read the finished run folders")
    args = p.parse_args()
    out = Path(args.out) if Path(args.out).is_absolute() else ROOT / args.out
    rows = []
    for seed in args.seeds:
        folder = out / f"seed{seed}"
        if not args.collect:
            train(seed, folder, args.threads)
        rows.append(row(seed, folder))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    from datasets_builders.files import write_text_atomic

    write_text_atomic(Path(args.table), buffer.getvalue())
    print(f"{'seed':>4} {'steps (poly + parity)':>22} {'training s':>11} {'parity min':>10} {'iteration':>9} {'<eoi>':>6}")
    for r in rows:
        print(f"{r['seed']:>4} {r['polynomial_steps']:>12,} + {r['parity_steps']:<7,} {r['training_time_s']:>11.1f} "
              f"{r['parity_accuracy_min']:>10.3f} {r['iteration_score']:>9.3f} {r['eoi_score']:>6.3f}")
    times = [r["training_time_s"] for r in rows]
    print(f"median training time over {len(rows)} seed(s): {statistics.median(times):.1f} s "
          f"({rows[0]['machine']}, {rows[0]['threads']} torch thread(s)); wrote {args.table}")


if __name__ == "__main__":
    main()
