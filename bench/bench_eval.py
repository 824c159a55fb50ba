"""Time the evaluation of 10,000 test sequences (lengths 1-16, 625 per length) at the paper's size.

    python bench/bench_eval.py                       # IterGPTConfig() defaults, random weights
    python bench/bench_eval.py --threads 1 --repeats 3

Measures, in one run and on the same rows: teacher-forced accuracy (one forward pass per batch,
``modeling.analysis.evaluate_lengths``), generated accuracy with the KV cache (``generate``, one
new token per step) and without it (every step re-reads the whole prefix), plus the cost of
scoring the generations with ``modeling.evaluation.sequence_accuracy``. Random weights are fine
for timing: a batch generates until its answer length or until every row has written ``<eos>``
(rare with random weights; the header says how many tokens were generated). Prints the best of
``--repeats`` runs per mode and the ratios, all measured in the same run.
"""

from __future__ import annotations

import argparse
import time


import numpy as np  # noqa: E402
import torch  # noqa: E402

import modeling  # noqa: E402
from datasets_builders import tasks  # noqa: E402
from modeling import analysis  # noqa: E402
from modeling import evaluation as ev  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", default="parity", choices=tasks.TASK_NAMES, help="task of the rows")
    p.add_argument("--max-length", type=int, default=16, help="lengths 1 .. max-length")
    p.add_argument("--per-length", type=int, default=625, help="rows per length (drawn with replacement)")
    p.add_argument("--batch-size", type=int, default=1000, help="rows per forward / generate call")
    p.add_argument("--repeats", type=int, default=1, help="runs per mode; the best is reported")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")

    torch.manual_seed(0)
    config = modeling.IterGPTConfig()
    model = modeling.IterGPTForCausalLM(config).to(device).eval()
    task = tasks.make_task(args.task)
    rng = np.random.default_rng(0)
    rows = {L: tasks.build_rows(task, tasks.sample_inputs(task, L, args.per_length, rng))
            for L in range(1, args.max_length + 1)}
    n = sum(len(r) for r in rows.values())
    answer_tokens = sum(r.shape[0] * (r.shape[1] - tasks.eoi_position(L) - 1) for L, r in rows.items())

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def best(fn) -> tuple[float, object]:
        times, out = [], None
        for _ in range(args.repeats):
            sync()
            start = time.perf_counter()
            out = fn()
            sync()
            times.append(time.perf_counter() - start)
        return min(times), out

    def generate(use_cache: bool):
        return [ev.generated_correct(model, r, batch_size=args.batch_size, use_cache=use_cache)
                for r in rows.values()]

    t_tf, _ = best(lambda: analysis.evaluate_lengths(model, rows, batch_size=args.batch_size, with_heads=False))
    t_cache, gen = best(lambda: generate(True))
    t_plain, gen_plain = best(lambda: generate(False))
    t_metric, _ = best(lambda: [ev.sequence_accuracy(g.predictions, g.references, per_position=True)
                                for g in gen])
    same = all(a.predictions == b.predictions for a, b in zip(gen, gen_plain))
    generated = sum(len(p) for g in gen for p in g.predictions)

    print(f"IterGPTConfig() defaults: n_layer {config.n_layer}, n_head {config.n_head}, n_embd {config.n_embd}, "
          f"n_positions {config.n_positions}; random weights; device {device}, torch threads "
          f"{torch.get_num_threads()}, batch {args.batch_size}")
    print(f"{n} {args.task} rows, lengths 1-{args.max_length} x {args.per_length}; "
          f"{answer_tokens} answer tokens, {generated} generated before <eos>/stop")
    print(f"{'mode':<34} {'seconds':>8} {'rows/s':>9} {'vs cached generate':>19}")
    for name, t in (("teacher-forced (1 forward / batch)", t_tf), ("generated, KV cache", t_cache),
                    ("generated, no KV cache", t_plain), ("sequence_accuracy scoring only", t_metric)):
        print(f"{name:<34} {t:>8.2f} {n / t:>9.0f} {t / t_cache:>18.2f}x")
    print(f"no-cache / cache time ratio: {t_plain / t_cache:.2f}; same predictions with and without cache: {same}")


if __name__ == "__main__":
    main()
