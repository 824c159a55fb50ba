"""Speed of IterGPT on the paper's setting: eager vs SDPA attention, and the cost of idle hook points.

The paper's default model (``IterGPTConfig()``: 2 layers, 1 head, width 128) on one training batch
of 256 parity sequences of input length 16 (35 tokens each, loss after ``<eoi>`` only), CPU.

1. forward + backward per step, eager attention (pattern materialised) vs the SDPA fast path;
2. forward (inference) with the hook points in place vs the same model with every hook point
   replaced by a plain Python identity function, i.e. the overhead of having hook points at all.

Timings alternate between the two variants of each pair so that load from other processes on a
shared machine hits both alike; medians are reported. Run from the repository root::

    python bench/bench_model.py              # torch's default thread count
    python bench/bench_model.py --threads 1
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch


from datasets_builders import tasks  # noqa: E402
from modeling import IterGPTConfig, IterGPTForCausalLM  # noqa: E402


def parity_batch(batch: int = 256, length: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, labels) of shape (batch, 2 * length + 3); labels are -100 up to ``<eoi>``."""
    task = tasks.make_task("parity")
    rows = tasks.build_rows(task, tasks.sample_inputs(task, length, batch, np.random.default_rng(seed)))
    ids = torch.from_numpy(rows)
    labels = torch.where(torch.from_numpy(tasks.loss_mask(rows)), ids, torch.full_like(ids, -100))
    return ids, labels


def bypass_hook_points(model: IterGPTForCausalLM) -> IterGPTForCausalLM:
    """A copy of ``model`` whose hook points are plain identity functions (no nn.Module call)."""
    model = copy.deepcopy(model)
    for name in model.hook_points():
        parent_name, _, attr = name.rpartition(".")
        parent = model.model.get_submodule(parent_name) if parent_name else model.model
        delattr(parent, attr)  # removes the HookPoint from parent._modules
        setattr(parent, attr, _identity)
    assert not model.hook_points()
    return model


def _identity(x):
    return x


def time_pair(step_a, step_b, repeats: int, warmup: int) -> tuple[float, float]:
    """Median seconds of ``step_a`` and ``step_b``, measured alternately."""
    for _ in range(warmup):
        step_a()
        step_b()
    times_a, times_b = [], []
    for _ in range(repeats):
        for step, times in ((step_a, times_a), (step_b, times_b)):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed forward+backward steps per variant")
    parser.add_argument("--forwards", type=int, default=20, help="timed forwards per variant (hook overhead)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    ids, labels = parity_batch()
    config = IterGPTConfig()
    print(f"IterGPTConfig() defaults: {config.n_layer} layers, {config.n_head} head, width {config.n_embd}; "
          f"batch {tuple(ids.shape)} parity L=16; torch {torch.__version__}, {torch.get_num_threads()} threads")

    # 1. Training step, eager vs SDPA (same weights, train mode: dropout on as in training).
    fast = IterGPTForCausalLM(config).train()
    eager = copy.deepcopy(fast)
    eager.set_attn_implementation("eager")
    assert fast.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"

    def train_step(model):
        def step():
            model.zero_grad(set_to_none=True)
            model(ids, labels=labels, use_cache=False).loss.backward()
        return step

    t_eager, t_fast = time_pair(train_step(eager), train_step(fast), args.steps, args.warmup)
    tokens = ids.numel()
    print(f"forward+backward  eager {t_eager * 1e3:7.1f} ms/step   sdpa {t_fast * 1e3:7.1f} ms/step   "
          f"eager/sdpa = {t_eager / t_fast:.2f}   ({tokens / t_fast / 1e3:.0f}k tokens/s with sdpa)")

    # 2. Idle hook points: inference forward, with vs without them.
    hooked = fast.eval()
    bare = bypass_hook_points(hooked)
    with torch.no_grad():
        torch.testing.assert_close(bare(ids).logits, hooked(ids).logits, rtol=0, atol=0)

        def forward(model):
            return lambda: model(ids, use_cache=False)

        t_hooked, t_bare = time_pair(forward(hooked), forward(bare), args.forwards, args.warmup)
    n_points = len(hooked.hook_points())
    print(f"forward           with {n_points} hook points {t_hooked * 1e3:7.2f} ms   bypassed {t_bare * 1e3:7.2f} ms   "
          f"ratio = {t_hooked / t_bare:.3f}")


if __name__ == "__main__":
    main()
