"""What a sweep will cost, before it starts: its jobs, steps and sequences, and the time measured here.

    python -m training.plan experiment=f4_paper                    # the paper's F4 grid: 3,360 runs
    python -m training.plan experiment=no_early_stop --no-measure  # counts only

It reads the sweep exactly as ``python train.py --multirun <overrides>`` would (the experiment's
``hydra.sweeper.params``, then the command line, through Hydra's own sweeper), resolves every job's
config (composed once per choice of config groups), and sums optimizer steps, sequences and tokens (every row padded to the batch's longest: an
upper bound for packed batches). With ``--measure`` (the default) it times a few training steps of the
cheapest, the median and the dearest job on this machine (one process, the torch threads a sweep job
gets), fits seconds per step against the step's work (tokens x width), and prints the estimate. On a
machine with several cores it also times the dearest job with one copy per core stepping at once (runs
side by side share memory bandwidth and caches, and slow each other), so the side-by-side estimate is
measured too, not the one-at-a-time time divided by the cores.
``python train.py --multirun`` prints the same plan before its first job; sweeps of more than a
million steps also time a few steps first (under a minute, well under 1% of such a sweep).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import statistics
import sys
import time
from dataclasses import dataclass

from .config import CONFIG_DIR, ConfigError, TrainConfig, compose_values

__all__ = ["Job", "Plan", "sweep_jobs", "plan", "measure_step", "MEASURE_ABOVE_STEPS"]

MEASURE_ABOVE_STEPS = 1_000_000  # a multirun times a few steps first when it will run more than this
GROUPS = tuple(sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir()))  # recipe, posinit, ...


@dataclass(frozen=True)
class Job:
    """One job of a sweep: its overrides and what its cost depends on."""
    overrides: tuple[str, ...]  # the whole job (what ``train.py`` gets)
    steps: int
    batch_size: int
    max_length: int
    cot: bool
    n_embd: int
    n_layer: int

    @property
    def row_tokens(self) -> int:
        from datasets_builders import tasks
        return tasks.row_length(self.max_length, self.cot)

    @property
    def work(self) -> float:
        """A step's work, up to a constant: tokens x width x layers (the linear layers dominate)."""
        return self.batch_size * self.row_tokens * self.n_embd * self.n_layer

    def config(self) -> TrainConfig:
        """The job's whole config, as ``train.py`` composes it."""
        from .config import compose
        return compose(list(self.overrides))


@dataclass
class Plan:
    jobs: list[Job]
    seconds_per_step: dict[int, float] = dataclasses.field(default_factory=dict)  # job index -> measured
    slowdown: float | None = None  # a step's time with one run per core at once / alone (measured)

    @property
    def steps(self) -> int:
        return sum(j.steps for j in self.jobs)

    @property
    def sequences(self) -> int:
        return sum(j.steps * j.batch_size for j in self.jobs)

    @property
    def tokens(self) -> int:
        return sum(j.steps * j.batch_size * j.row_tokens for j in self.jobs)

    def estimate_s(self) -> float | None:
        """Seconds of training for every job, one at a time: seconds per step = a + b * work, fitted to
        the measured jobs (a single measurement: proportional to work)."""
        if not self.seconds_per_step:
            return None
        xs = [self.jobs[i].work for i in self.seconds_per_step]
        ys = list(self.seconds_per_step.values())
        if len(set(xs)) > 1:
            b, a = statistics.linear_regression(xs, ys)
            if b < 0 or a < 0:  # noise on near-equal jobs: fall back to proportional
                a, b = 0.0, sum(ys) / sum(xs)
        else:
            a, b = 0.0, ys[0] / xs[0]
        return sum(j.steps * (a + b * j.work) for j in self.jobs)

    def estimate_side_by_side_s(self) -> float | None:
        """Seconds of training with one run per core at once: one at a time / cores x the measured
        slowdown of a step when every core runs one (no slowdown assumed when it was not measured)."""
        est = self.estimate_s()
        return None if est is None else est * (self.slowdown or 1.0) / _parallel()

    def lines(self) -> list[str]:
        n = len(self.jobs)
        steps = sorted(j.steps for j in self.jobs)
        out = [f"plan: {n:,} run(s), {self.steps:,} optimizer steps (per run {steps[0]:,}"
               + (f" to {steps[-1]:,}" if steps[-1] != steps[0] else "") + f"), {self.sequences:,} sequences seen, "
               f"<= {self.tokens:,} tokens"]
        same = set.intersection(*(set(j.overrides) for j in self.jobs))  # what every job shares
        for i, s in self.seconds_per_step.items():
            j = self.jobs[i]
            swept = " ".join(o for o in j.overrides if o not in same)
            out.append(f"  measured here: {1000 * s:.1f} ms/step at width {j.n_embd}, max length {j.max_length}, "
                       f"batch {j.batch_size}" + (f" ({swept})" if swept else ""))
        est, both = self.estimate_s(), self.estimate_side_by_side_s()
        if est is not None:
            side = ""
            if _parallel() > 1:
                side = (f" ({_duration(both)} with {_parallel()} run(s) side by side" +
                        (f", each step {self.slowdown:.2f}x slower then, measured)" if self.slowdown
                         else ", if they did not slow each other: not measured)"))
            out.append(f"  estimate on this machine: {_duration(est)} of training one run at a time{side}, "
                       "evaluations and start-up not included")
        return out


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:,.1f} h"


def _parallel() -> int:
    import os
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def sweep_jobs(overrides: list[str]) -> list[tuple[str, ...]]:
    """The override list of every job of ``python train.py --multirun <overrides>``, in Hydra's order:
    the composed config's ``hydra.sweeper.params``, then the command line (Hydra's BasicSweeper)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(list(overrides))
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    values = compose_values(fixed, hydra=True)
    params = [f"{k}={v}" for k, v in (values["hydra"]["sweeper"].get("params") or {}).items()]
    (batch,) = BasicSweeper.split_arguments(parser.parse_overrides(params + list(overrides)), None)
    return [tuple(job) for job in batch]


def _is_group(override: str) -> bool:
    key = override.lstrip("+~").split("=", 1)[0].lstrip("/")
    return key in GROUPS


def plan(overrides: list[str]) -> Plan:
    """Every job's cost-relevant values. Hydra's composition is done once per distinct choice of
    config groups (recipe, posinit, ...); a job's other overrides are merged onto that (every job of
    a sweep sets the same keys, so one config per choice is updated job after job), and
    ``${epochs:N}`` is resolved with the job's own data."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    parser = OverridesParser.create()
    bases: dict = {}
    jobs = []
    for job in sweep_jobs(overrides):
        groups = tuple(o for o in job if _is_group(o))
        if groups not in bases:
            bases[groups] = OmegaConf.create(compose_values(list(groups)))
        cfg = bases[groups]
        for o in parser.parse_overrides([o for o in job if not _is_group(o)]):  # as Hydra reads them back
            OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True, force_add=True)
        try:
            m, d, o = cfg.model, cfg.data, cfg.optim
            width, layers = _init_architecture(cfg.init_from) if cfg.get("init_from") else (m.n_embd, m.n_layer)
            jobs.append(Job(tuple(job), int(o.max_steps), int(o.batch_size), int(d.max_length), bool(d.cot),
                            int(width), int(layers)))
        except Exception as err:  # noqa: BLE001  OmegaConf wraps a resolver's ConfigError
            raise ConfigError(f"{' '.join(job)}: {str(err).splitlines()[0]}") from None
    if not jobs:
        raise ConfigError(f"{' '.join(overrides)}: the sweep has no job")
    return Plan(jobs)


@functools.lru_cache(maxsize=None)
def _init_architecture(path: str) -> tuple[int, int]:
    """Width and layers of an ``init_from`` model: a fine-tuning job trains that model, whatever
    its recipe's model section says."""
    from .loop import init_model_config
    config = init_model_config(path)
    return config.n_embd, config.n_layer


def measure_step(cfg: TrainConfig, steps: int = 6, warmup: int = 2, start=None) -> float:
    """Median seconds of one training step of ``cfg`` here (forward, backward, clipping, AdamW), on its
    own batches, as the training loop takes it (under bf16 autocast when ``mixed_precision=bf16``).
    ``start``, if given, is called once the model is built, before the first step (a barrier)."""
    import torch
    from modeling.fast_step import fast_adamw

    from .data import TaskData
    from .loop import build_model

    # null: what accelerate would choose (ACCELERATE_MIXED_PRECISION, e.g. from accelerate launch)
    precision = cfg.mixed_precision or os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    torch.manual_seed(cfg.seed)
    torch.set_flush_denormal(cfg.flush_denormal)
    data, model = TaskData(cfg), build_model(cfg, resuming=False).train()
    o = cfg.optim
    opt = fast_adamw(model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
    if start is not None:
        start()
    times = []
    for step in range(warmup + steps):
        t = time.perf_counter()
        for batch in data.batches(step, 0, 1):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = model(**batch, use_cache=False).loss
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times[warmup:])


def _measure_in_child(cfg: TrainConfig, threads: int, barrier, results) -> None:
    import torch
    torch.set_num_threads(threads)
    try:
        results.put(measure_step(cfg, steps=8, warmup=2, start=lambda: barrier.wait(timeout=300)))
    except Exception as err:  # noqa: BLE001  reported to the parent, which goes on without the slowdown
        results.put(f"{type(err).__name__}: {err}")


def measure_side_by_side(cfg: TrainConfig, copies: int, threads: int = 1) -> float | None:
    """Median seconds of one step of ``cfg`` with ``copies`` processes stepping it at once (each
    with its own ``threads``, started together at a barrier once every model is built), as a sweep
    runs one job per core; None when a process could not measure (the plan then says so)."""
    import multiprocessing
    import queue

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter each, as a sweep's job is
    barrier, results = ctx.Barrier(copies), ctx.Queue()
    procs = [ctx.Process(target=_measure_in_child, args=(cfg, threads, barrier, results), daemon=True)
             for _ in range(copies)]
    for proc in procs:
        proc.start()
    times = []
    try:
        for _ in procs:
            times.append(results.get(timeout=600))
    except queue.Empty:
        times.append("no answer within 600 s")
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    if not all(isinstance(t, float) for t in times):
        print(f"plan: the side-by-side timing failed ({[t for t in times if not isinstance(t, float)][0]}); "
              "the estimate assumes runs side by side do not slow each other", file=sys.stderr)
        return None
    return statistics.median(times)


def measure(p: Plan, threads: int = 1) -> Plan:
    """Time the cheapest, the median and the dearest job (by work per step) on this machine; with
    several cores, the dearest again with one copy per core at once (``Plan.slowdown``)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        by_work = {}  # one job per distinct work per step, in order of work
        for i in sorted(range(len(p.jobs)), key=lambda i: p.jobs[i].work):
            by_work.setdefault(p.jobs[i].work, i)
        order = list(by_work.values())
        for i in dict.fromkeys([order[0], order[len(order) // 2], order[-1]]):
            p.seconds_per_step[i] = measure_step(p.jobs[i].config())
    finally:
        torch.set_num_threads(before)
    if _parallel() > 1:
        side = measure_side_by_side(p.jobs[order[-1]].config(), _parallel(), threads)
        p.slowdown = None if side is None else side / p.seconds_per_step[order[-1]]
    return p


def print_plan(overrides: list[str], measure_it: bool | None = None, file=None) -> Plan:
    """Print the plan of a sweep; ``measure_it=None``: measure when it runs more than
    :data:`MEASURE_ABOVE_STEPS` steps."""
    file = file or sys.stdout
    p = plan(overrides)
    if measure_it or (measure_it is None and p.steps > MEASURE_ABOVE_STEPS):
        print(f"plan: timing a few steps of up to 3 of its {len(p.jobs):,} run(s) here"
              + (f", then the dearest with {_parallel()} at once" if _parallel() > 1 else "") + " ...",
              file=file, flush=True)
        measure(p)
    print("\n".join(p.lines()), file=file, flush=True)
    return p


def machine() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else the platform's word for it."""
    import platform
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def plan_record(p: Plan, overrides: list[str]) -> dict:
    """A plan as the JSON ``--out`` writes (RESULTS.md quotes it for an experiment not run yet)."""
    import datetime
    return {"overrides": list(overrides), "runs": len(p.jobs), "steps": p.steps, "sequences": p.sequences,
            "tokens": p.tokens, "estimate_s": p.estimate_s(), "side_by_side": _parallel(),
            "slowdown_side_by_side": p.slowdown, "estimate_side_by_side_s": p.estimate_side_by_side_s(),
            "measured": [{"ms_per_step": round(1000 * s, 2), "n_embd": p.jobs[i].n_embd,
                          "max_length": p.jobs[i].max_length, "batch_size": p.jobs[i].batch_size}
                         for i, s in p.seconds_per_step.items()],
            "machine": f"{machine()}, {_parallel()} core(s), 1 torch thread per run",
            "date": datetime.date.today().isoformat()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.plan", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="what you would pass to python train.py --multirun")
    ap.add_argument("--no-measure", dest="measure", action="store_false", help="counts only, no timing")
    ap.add_argument("--out", default=None, help="also write the plan as JSON (results/plans/<experiment>.json is "
                    "what RESULTS.md quotes for an experiment not run yet)")
    args = ap.parse_args(argv)
    if args.out and not args.out.endswith(".json"):
        print(f"error: --out {args.out!r}: give a .json path, e.g. results/plans/<experiment>.json", file=sys.stderr)
        sys.exit(2)
    try:
        p = print_plan(args.overrides, measure_it=args.measure)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if args.out:
        import json
        from pathlib import Path

        from datasets_builders.files import write_text_atomic
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(Path(args.out), json.dumps(plan_record(p, args.overrides), indent=1) + "\n")
        print(f"plan -> {args.out}")


if __name__ == "__main__":
    main()
