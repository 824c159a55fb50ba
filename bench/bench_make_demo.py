"""The wall time a newcomer waits for ``make demo``, on a quiet machine and with one core kept busy.

    python bench/bench_make_demo.py [--seed 0] [--out results/make_demo_wall.csv]

Runs ``make demo`` (everything already installed: its install step is the skip check) in one session,
in ``--rounds`` rounds that each run every condition once: on the machine as it is, and beside a
process that keeps one core busy (a Python spin loop); where the CPU multiplies bf16 in hardware
(``native_bf16``), the last round also runs it quiet with the fast step (``ACCELERATE_MIXED_PRECISION=bf16``:
bf16 autocast). A row per run; the README quotes the median per condition with its range, so a
virtual machine's run-to-run drift (seen here: 40-54 s for the same command) shows instead of hiding. Each run's stage lines (``wall time … s: start-up,
training, evaluation, figures``) and what the demo learned (parity's worst length, the iteration
score) go into the table beside the wall time; the README's demo section quotes it
(``tests/test_release.py`` checks the quote). Run it with nothing else running for the quiet number.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datasets_builders.files import write_csv_atomic  # noqa: E402
from training.plan import machine  # noqa: E402

COLUMNS = ["round", "condition", "wall_s", "polynomial_stage", "parity_stage", "parity_steps", "parity_accuracy_min",
           "iteration_score", "machine", "cores"]
STAGE = re.compile(r"^wall time .*$", re.M)
STEPS = re.compile(r"^stopped at step (\d+)", re.M)
QUIET_BF16 = "quiet, bf16"


def make_demo(seed: int, precision: str | None = None) -> tuple[float, list[str], list[int]]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", SEED=str(seed))
    if precision:
        env["ACCELERATE_MIXED_PRECISION"] = precision
    start = time.perf_counter()
    res = subprocess.run(["make", "demo"], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"make demo failed (exit {res.returncode}):\n{res.stderr[-2000:]}")
    return wall, STAGE.findall(res.stdout), [int(n) for n in STEPS.findall(res.stdout)]


def measure(condition: str, seed: int, round_: int) -> dict:
    spinner = None
    if condition == "one core busy":
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(1.0)
    try:
        wall, stages, steps = make_demo(seed, "bf16" if condition == QUIET_BF16 else None)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    parity = json.loads((ROOT / "runs" / "demo" / "parity" / "summary.json").read_text())
    print(f"{condition}: make demo {wall:.1f} s wall; " + "; ".join(stages), flush=True)
    return {"round": round_, "condition": condition, "wall_s": round(wall, 1),
            "polynomial_stage": stages[0] if stages else "", "parity_stage": stages[1] if len(stages) > 1 else "",
            "parity_steps": steps[1] if len(steps) > 1 else "",
            "parity_accuracy_min": round(parity["test_accuracy_min"], 4),
            "iteration_score": round(parity["iteration_score"], 4),
            "machine": machine(), "cores": os.cpu_count()}


def median_wall(rows: list[dict], condition: str) -> tuple[float, float, float, int]:
    """(median, lowest, highest, runs) of the wall times of ``condition``."""
    walls = sorted(float(r["wall_s"]) for r in rows if r["condition"] == condition)
    return statistics.median(walls), walls[0], walls[-1], len(walls)


def readme_sentence(rows: list[dict]) -> str:
    """What the README's demo section says, from the table (``tests/test_release.py`` checks it)."""
    first = rows[0]
    (q, q_lo, q_hi, n), (b, b_lo, b_hi, _) = (median_wall(rows, c) for c in ("quiet", "one core busy"))
    return (f"`make demo` with everything installed (`bench/bench_make_demo.py`, one session, {first['machine']}, "
            f"{first['cores']} cores, median of {n} runs each): **{q:.1f} s** of wall time on the machine as it "
            f"was (runs {q_lo:.1f}–{q_hi:.1f} s), **{b:.1f} s** with one core kept busy by another process "
            f"(runs {b_lo:.1f}–{b_hi:.1f} s; {b / q:.2f}x)")


def bf16_sentence(rows: list[dict]) -> str | None:
    """The README's sentence on the bf16 run, or ``None`` when the CPU had no native bf16 (no such row)."""
    bf16 = [r for r in rows if r["condition"] == QUIET_BF16]
    if not bf16:
        return None
    quiet = [r for r in rows if r["condition"] == "quiet" and r["round"] == bf16[0]["round"]]
    b, q = bf16[0], quiet[0]
    return (f"With bf16 autocast, which this CPU computes natively (`ACCELERATE_MIXED_PRECISION=bf16 make demo`), "
            f"the same round took **{float(b['wall_s']):.1f} s** against {float(q['wall_s']):.1f} s: the parity "
            f"stage needed {int(b['parity_steps']):,} steps instead of {int(q['parity_steps']):,}, so the demo "
            "keeps float32")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3, help="runs of each condition (default 3)")
    ap.add_argument("--out", default=str(ROOT / "results" / "make_demo_wall.csv"))
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error(f"--rounds {args.rounds}: give at least 1")
    make_demo(args.seed)  # warm: the first run compiles .pyc files and fills the page cache
    from modeling.fast_step import native_bf16
    rows = []
    for r in range(1, args.rounds + 1):
        last = r == args.rounds
        for condition in ("quiet", "one core busy") + ((QUIET_BF16,) if last and native_bf16() else ()):
            rows.append(measure(condition, args.seed, r))
    write_csv_atomic(Path(args.out), COLUMNS, rows)
    print(f"-> {args.out}")
    print("README:", readme_sentence(rows))
    if bf16_sentence(rows):
        print("README:", bf16_sentence(rows))


if __name__ == "__main__":
    main()
