"""The wall time a newcomer waits for ``make demo``, on a quiet machine and with one core kept busy.

    python bench/bench_make_demo.py [--seed 0] [--out results/make_demo_wall.csv]

Runs ``make demo`` (everything already installed: its install step is the skip check) in one session:
on the machine as it is, then beside a process that keeps one core busy (a Python spin loop), so the
ratio compares like with like; where the CPU multiplies bf16 in hardware (``native_bf16``), a third
time quiet with the fast step (``ACCELERATE_MIXED_PRECISION=bf16``: bf16 autocast). Each run's stage lines (``wall time … s: start-up,
training, evaluation, figures``) and what the demo learned (parity's worst length, the iteration
score) go into the table beside the wall time; the README's demo section quotes it
(``tests/test_release.py`` checks the quote). Run it with nothing else running for the quiet number.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datasets_builders.files import write_text_atomic  # noqa: E402

COLUMNS = ["condition", "wall_s", "polynomial_stage", "parity_stage", "parity_accuracy_min", "iteration_score",
           "machine", "cores"]
STAGE = re.compile(r"^wall time .*$", re.M)
QUIET_BF16 = "quiet, bf16"


def make_demo(seed: int, precision: str | None = None) -> tuple[float, list[str]]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", SEED=str(seed))
    if precision:
        env["ACCELERATE_MIXED_PRECISION"] = precision
    start = time.perf_counter()
    res = subprocess.run(["make", "demo"], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"make demo failed (exit {res.returncode}):\n{res.stderr[-2000:]}")
    return wall, STAGE.findall(res.stdout)


def measure(condition: str, seed: int) -> dict:
    spinner = None
    if condition == "one core busy":
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(1.0)
    try:
        wall, stages = make_demo(seed, "bf16" if condition == QUIET_BF16 else None)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    parity = json.loads((ROOT / "runs" / "demo" / "parity" / "summary.json").read_text())
    print(f"{condition}: make demo {wall:.1f} s wall; " + "; ".join(stages), flush=True)
    return {"condition": condition, "wall_s": round(wall, 1),
            "polynomial_stage": stages[0] if stages else "", "parity_stage": stages[1] if len(stages) > 1 else "",
            "parity_accuracy_min": round(parity["test_accuracy_min"], 4),
            "iteration_score": round(parity["iteration_score"], 4),
            "machine": machine(), "cores": os.cpu_count()}


def machine() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else the platform's word for it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def readme_sentence(rows: list[dict]) -> str:
    """What the README's demo section says, from the table (``tests/test_release.py`` checks it)."""
    quiet, busy = (next(r for r in rows if r["condition"] == c) for c in ("quiet", "one core busy"))
    q, b = float(quiet["wall_s"]), float(busy["wall_s"])
    return (f"`make demo` with everything installed (`bench/bench_make_demo.py`, one session, {quiet['machine']}, "
            f"{quiet['cores']} cores): **{q:.1f} s** of wall time on the machine as it was, **{b:.1f} s** with "
            f"one core kept busy by another process ({b / q:.2f}x)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "results" / "make_demo_wall.csv"))
    args = ap.parse_args(argv)
    make_demo(args.seed)  # warm: the first run compiles .pyc files and fills the page cache
    from modeling.fast_step import native_bf16
    conditions = ("quiet", "one core busy") + ((QUIET_BF16,) if native_bf16() else ())
    rows = [measure(c, args.seed) for c in conditions]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(Path(args.out), buf.getvalue())
    print(f"one core busy / quiet: {rows[1]['wall_s'] / rows[0]['wall_s']:.2f}x -> {args.out}")
    print("README:", readme_sentence(rows))


if __name__ == "__main__":
    main()
