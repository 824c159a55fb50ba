"""One training step of the demo (or of any recipe): today's float32 step against the fast step, in one run.

    python bench/bench_step.py [--rounds 5] [--steps 20] [--threads 1] [--profile]
    python bench/bench_step.py --recipe paper_reference --steps 6 --rounds 3   # width 128, batch 256

A step is what the training loop does per batch: forward (under autocast when the precision is
bf16), backward, gradient clipping, AdamW, zero_grad, on the demo recipe's packed batches. Variants:

- ``fp32``: today's step (float32, SDPA attention, AdamW's per-parameter loop);
- ``fast``: ``modeling.fast_step`` (fused AdamW, bf16 autocast only where the CPU has native bf16);
- ``bf16-fp32attn``: fused AdamW and bf16 autocast with attention kept in float32, forced even where
  bf16 is emulated, to show what it costs there.

The variants run in interleaved rounds (every round times each variant on the same batches) and
the ratio is of medians, so a machine shared with other work slows all of them alike. Times are this
process's CPU time (``time.process_time``; with one thread, the step's own work, not the time spent
waiting for a core on a shared machine); the wall time is printed beside it. GFLOP/s
is the step's FLOPs (counted by ``torch.utils.flop_counter``) over its time, against the GEMM
rates measured here for the model's linear layers (forward + backward at the batch's shapes) in
float32 and in bf16.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from modeling.fast_step import fast_adamw, fast_mixed_precision, native_bf16  # noqa: E402


def demo_batches(n: int, recipe: str = "parity"):
    """A recipe's config (the demo's by default) and its first ``n`` training batches, as the loop sees
    them. The only place that knows where the loop's data code lives."""
    from training.config import compose
    from training.data import TaskData

    cfg = compose([f"recipe={recipe}"])
    data = TaskData(cfg)
    return cfg, [data.batches(step, 0, 1)[0] for step in range(n)]


def build(cfg, variant: str):
    """(model, optimizer, precision) for a variant, the model initialised from the same seed."""
    from training.loop import build_model

    torch.manual_seed(0)
    model = build_model(cfg, resuming=False).train()
    o = cfg.optim
    kwargs = dict(lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
    if variant == "fp32":
        return model, torch.optim.AdamW(model.parameters(), **kwargs), "no"
    if variant == "fast":
        return model, fast_adamw(model.parameters(), **kwargs), fast_mixed_precision("cpu")
    if variant == "bf16-fp32attn":
        return model, fast_adamw(model.parameters(), **kwargs), "bf16"
    raise ValueError(f"unknown variant {variant!r}")


def make_step(model, optimizer, precision: str, grad_clip: float):
    def step(batch: dict) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(**batch, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss
    return step


def step_flops(cfg, batches) -> float:
    """Mean FLOPs of one step's forward + backward over ``batches`` (the optimizer's are negligible)."""
    model, _, _ = build(cfg, "fp32")
    with FlopCounterMode(display=False) as counter:
        for b in batches:
            model(**b, use_cache=False).loss.backward()
    return counter.get_total_flops() / len(batches)


def gemm_rate(tokens: int, d: int, d_mlp: int, dtype: torch.dtype, reps: int = 30) -> float:
    """GFLOP/s of the model's linear layers alone (d->d, d->d_mlp, d_mlp->d), forward + backward,
    on ``tokens`` rows, in ``dtype``: the GEMM peak at the step's shapes."""
    shapes = [(d, d)] * 4 + [(d, d_mlp), (d_mlp, d)]  # q, k, v, o, fc_in, fc_out
    layers = [(torch.randn(tokens, i, dtype=dtype, requires_grad=True),
               torch.randn(o, i, dtype=dtype, requires_grad=True)) for i, o in shapes]

    def run():
        for x, w in layers:
            torch.nn.functional.linear(x, w).sum().backward()

    run()
    start = time.process_time()
    for _ in range(reps):
        run()
    flops = sum(6 * tokens * i * o for i, o in shapes)  # forward 2, backward 4 per weight and row
    return flops * reps / (time.process_time() - start) / 1e9


def profile_top(step, batches, rows: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for b in batches:
            step(b)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=20, help="steps per variant per round")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--variants", default="fp32,fast,bf16-fp32attn")
    p.add_argument("--recipe", default="parity", help="configs/recipe/<name>.yaml whose step to time (default: "
                   "the demo's, parity; paper_reference: width 128, batch 256)")
    p.add_argument("--flush-denormal", action="store_true", help="treat subnormal floats as zero, as "
                   "flush_denormal=true does in a run")
    p.add_argument("--profile", action="store_true", help="print the top profile entries of each variant")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(args.flush_denormal)
    names = args.variants.split(",")
    cfg, batches = demo_batches(args.steps, args.recipe)
    steps = {}
    for name in names:
        model, optimizer, precision = build(cfg, name)
        steps[name] = make_step(model, optimizer, precision, cfg.optim.grad_clip)
        for b in batches[:3]:  # warm-up
            steps[name](b)
    tokens = round(statistics.mean(b["input_ids"].numel() for b in batches))
    d, d_mlp = cfg.model.n_embd, cfg.model.n_inner or 4 * cfg.model.n_embd
    times = {name: [] for name in names}  # CPU seconds of this process per step
    walls = {name: [] for name in names}
    rates = {torch.float32: [], torch.bfloat16: []}
    for _ in range(args.rounds):
        for name in names:
            start, cpu = time.perf_counter(), time.process_time()
            for b in batches:
                steps[name](b)
            times[name].append((time.process_time() - cpu) / len(batches))
            walls[name].append((time.perf_counter() - start) / len(batches))
        for dtype in rates:  # the GEMM peaks in the same rounds, so under the same load
            rates[dtype].append(gemm_rate(tokens, d, d_mlp, dtype))
    flops = step_flops(cfg, batches)
    peaks = {dtype: statistics.median(r) for dtype, r in rates.items()}
    print(f"recipe={args.recipe} step: {len(batches)} batches of ~{tokens} tokens, {flops / 1e9:.3f} GFLOP each, "
          f"{torch.get_num_threads()} thread(s); native bf16 on this CPU: {native_bf16('cpu')}; "
          f"fast step precision: {fast_mixed_precision('cpu')}")
    print(f"GEMM peak at these shapes (linear layers fwd+bwd): fp32 {peaks[torch.float32]:.0f} GFLOP/s, "
          f"bf16 {peaks[torch.bfloat16]:.0f} GFLOP/s")
    print("per step, median over rounds of this process's CPU time (wall time in brackets):")
    base = statistics.median(times[names[0]])
    for name in names:
        med = statistics.median(times[name])
        print(f"  {name:14s} {1e3 * med:7.2f} ms  ({1e3 * statistics.median(walls[name]):6.2f} ms wall)  "
              f"{flops / med / 1e9:6.1f} GFLOP/s  x{base / med:.2f} vs {names[0]}   "
              f"(rounds: {', '.join(f'{1e3 * t:.1f}' for t in times[name])})")
    if args.profile:
        for name in names:
            print(f"\nprofile of {name}, {len(batches)} steps:")
            print(profile_top(steps[name], batches, 12))


if __name__ == "__main__":
    main()
