"""The training run: set-up (everything validated before the run folder is touched), the loop, the end.

Order (as accelerate's examples): Accelerator -> seed -> data -> model -> optimizer -> prepare ->
loop -> evaluate on the main process -> save. Batches are a pure function of (seed, step), checkpoints
hold the optimizer, scheduler and RNG states, so ``resume=latest`` continues bit-exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from datasets_builders import tasks
from modeling import IterGPTConfig, IterGPTForCausalLM
from modeling.fast_step import fast_adamw

from datasets_builders.files import write_text_atomic

from .config import (INFRASTRUCTURE_KEYS, ConfigError, TrainConfig, flatten, model_config, read_saved, to_dict,
                     validate, vocab_size)
from .data import TaskData
from .report import one_line, print_report, run_eval, summary, write_figures
from .run_folder import (RunFolder, RunFolderError, atomic_dir, checkpoint_steps,
                         is_write_error, no_space_message, write_manifest)

__all__ = ["train", "resolve", "build_model", "grow_vocab", "set_trainable", "lr_lambda", "TrainingError"]


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss); the message names the last good checkpoint."""


# ---------------------------------------------------------------------------------------------
# set-up: the config a run really trains, and its parts
# ---------------------------------------------------------------------------------------------
def resolve(cfg: TrainConfig, sweep_dir: str | None = None) -> TrainConfig:
    """Validate ``cfg`` and fill what it leaves open: the output folder, and the architecture of an
    ``init_from`` model (recorded in the run folder, so a resume rebuilds the model really trained)."""
    config = validate(cfg)  # the model's config, built once (None with init_from)
    out = cfg.output_dir or sweep_dir or str(Path("runs") / cfg.recipe)
    cfg = dataclasses.replace(cfg, output_dir=out)
    # The model section as trained: derived values filled in, or the init model's architecture,
    # which is checked against the data (positions, vocabulary) like a model section of the config.
    if cfg.init_from is None:
        return _with_model(cfg, config)
    cfg = _with_model(cfg, init_model_config(cfg.init_from, vocab_size(cfg.data), grow=cfg.init_grow_vocab))
    validate(cfg)
    return cfg


def _with_model(cfg: TrainConfig, config: IterGPTConfig) -> TrainConfig:
    """``cfg`` with its model section read from ``config`` (derived values such as n_inner filled)."""
    model = dataclasses.replace(cfg.model, **{k: getattr(config, k) for k in to_dict(cfg)["model"]})
    return dataclasses.replace(cfg, model=model)


def init_model_config(path: str, need: int = tasks.VOCAB_SIZE, grow: bool = False) -> IterGPTConfig:
    """The config of an ``init_from`` model, checked: a model folder, a vocabulary as large as the run's
    task needs (or ``grow``: smaller is allowed, :func:`grow_vocab` enlarges it), the tasks' special ids
    (else a ConfigError naming the value and what to do)."""
    if not Path(path).is_dir():
        raise ConfigError(f"init_from={path!r} is not a model folder (save_pretrained output, e.g. "
                          "runs/<name>/final)")
    try:
        config = IterGPTConfig.from_pretrained(path)
    except Exception as err:  # a missing or garbage config.json
        raise ConfigError(f"init_from={path!r}: its config.json cannot be read ({err})") from None
    if config.vocab_size < max(need, tasks.VOCAB_SIZE) and not grow:
        raise ConfigError(f"init_from={path!r}: its vocabulary has {config.vocab_size} ids but this run's task needs "
                          f"{max(need, tasks.VOCAB_SIZE)} (datasets_builders.tasks.vocabulary): set "
                          "init_grow_vocab=true to grow its embedding and output head (new rows drawn afresh), "
                          "start from a model trained with a vocabulary that large, or train this task from scratch")
    ours = {"pad_token_id": tasks.PAD_ID, "bos_token_id": tasks.BOS_ID, "eos_token_id": tasks.EOS_ID,
            "eoi_token_id": tasks.EOI_ID}
    foreign = [f"{k}={getattr(config, k)} (the tasks': {v})" for k, v in ours.items() if getattr(config, k) != v]
    if foreign:  # it would train, then evaluate.py and the analysis would refuse the model it saved
        raise ConfigError(f"init_from={path!r} has special token ids of another vocabulary: {', '.join(foreign)}; "
                          "start from a model trained on this project's tokenizer")
    return config


def build_model(cfg: TrainConfig, resuming: bool) -> IterGPTForCausalLM:
    """The model: from ``init_from`` (fine-tuning), else a fresh one; on resume only the architecture
    (the checkpoint brings the weights)."""
    if cfg.init_from and not resuming:
        try:
            model = IterGPTForCausalLM.from_pretrained(cfg.init_from)
        except Exception as err:
            raise ConfigError(f"init_from={cfg.init_from!r} cannot be loaded: {err}") from None
        if cfg.init_grow_vocab:
            old, new = grow_vocab(model, vocab_size(cfg.data))
            if new != old:
                print(f"init_grow_vocab: grew {cfg.init_from}'s vocabulary from {old} to {new} ids (token "
                      f"embedding and output head; rows {old}-{new - 1} drawn afresh, the others unchanged)")
        reinitialise(model, cfg.reinit)
        return model
    return IterGPTForCausalLM(model_config(cfg))


def grow_vocab(model: IterGPTForCausalLM, need: int) -> tuple[int, int]:
    """Grow ``model``'s token embedding and output head (untied or tied) to ``need`` ids, in place:
    rows of the old ids are kept bit for bit, the new rows are drawn by the model's own ``_init_weights``
    (N(0, initializer_range); torch's current seed), and ``config.vocab_size`` follows, so the saved
    model loads with its new size. Never shrinks. Returns (old, new) vocabulary sizes."""
    old = model.config.vocab_size
    if need > old:
        # mean_resizing=False: transformers' default would draw the new rows around the mean of the old
        # ones; this keeps the model's initialisation, the same draw as a fresh model of that config.
        model.resize_token_embeddings(need, mean_resizing=False)
    return old, model.config.vocab_size


def matching_parameters(model, patterns: list[str], key: str) -> list[str]:
    """Names of ``model``'s parameters that match any glob of ``patterns`` (the config key ``key``:
    trainable, reinit); a pattern that matches nothing is a :class:`ConfigError` showing real names."""
    from fnmatch import fnmatch
    names = [n for n, _ in model.named_parameters()]
    for pat in patterns:
        if not any(fnmatch(n, pat) for n in names):
            raise ConfigError(f"{key} pattern {pat!r} matches no parameter; names look like "
                              f"{', '.join(names[:4])}, ...")
    return [n for n in names if any(fnmatch(n, pat) for pat in patterns)]


def reinitialise(model: IterGPTForCausalLM, patterns: list[str]) -> list[str]:
    """Draw the parameters matching ``patterns`` afresh, as a new model of the same config would have
    them (torch's current seed); returns their names."""
    if not patterns:
        return []
    chosen = set(matching_parameters(model, patterns, "reinit"))
    fresh = dict(IterGPTForCausalLM(model.config).named_parameters())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in chosen:
                p.copy_(fresh[name])
    return sorted(chosen)


def set_trainable(model, patterns: list[str]) -> int:
    """Freeze every parameter whose name matches none of ``patterns``; returns the trainable count."""
    if patterns:
        chosen = set(matching_parameters(model, patterns, "trainable"))
        for name, p in model.named_parameters():
            p.requires_grad_(name in chosen)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def lr_lambda(o):
    def f(step: int) -> float:
        if step < o.warmup_steps:
            return (step + 1) / o.warmup_steps
        if o.schedule == "constant":
            return 1.0
        progress = min((step - o.warmup_steps) / max(o.max_steps - o.warmup_steps, 1), 1.0)
        decay = 0.5 * (1 + math.cos(math.pi * progress)) if o.schedule == "cosine" else 1 - progress
        return o.min_lr_ratio + (1 - o.min_lr_ratio) * decay
    return f


def _learning(values: dict) -> dict:
    """The keys that change what is learned (infrastructure keys left out), flat."""
    flat = {}
    for k, v in values.items():
        if isinstance(v, dict):
            flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        elif k not in INFRASTRUCTURE_KEYS:
            flat[k] = v
    return flat


def check_resume(cfg: TrainConfig, folder: RunFolder) -> None:
    """A resumed run must be the run in the folder: same learning config (infrastructure may differ)."""
    try:
        saved = read_saved(folder.config_path)
    except ConfigError as err:
        raise RunFolderError(f"cannot resume {folder.path}: {err}. Restore the file to continue the run, or use "
                             "overwrite=true (instead of resume) to train it again from step 0") from None
    saved = _with_model(saved, model_config(saved))  # a run folder of an older version: derived values
    old, new = _learning(to_dict(saved)), _learning(to_dict(cfg))
    diff = [k for k in sorted(old) if old[k] != new.get(k)]
    if diff:
        hint = f" (this run used recipe={saved.recipe})" if saved.recipe != cfg.recipe else ""
        raise RunFolderError(f"cannot resume {folder.path}: its config differs in "
                             f"{', '.join(f'{k}={old[k]!r} (now {new.get(k)!r})' for k in diff[:6])}"
                             f"{hint}; resume with the same recipe and overrides")


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    cfg: TrainConfig
    folder: RunFolder
    accelerator: object
    data: TaskData
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    step: int = 0
    elapsed: float = 0.0
    records: list = field(default_factory=list)
    loss_sum: float = 0.0
    loss_steps: int = 0
    last_eval: int = -1  # step of the last evaluation (every process knows it)
    stop_reason: str = "max_steps"
    wall: "WallClock" = field(default_factory=lambda: WallClock())

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def raw(self):
        return self.accelerator.unwrap_model(self.model)


class WallClock:
    """Where a run's wall time goes, printed as one line at its end: start-up (the process's start, or
    the run's call in a process that runs several, to its first step: imports, data, model),
    training (the steps), evaluation, saving (checkpoints, snapshots, ``final/``) and figures."""

    PARTS = ("start-up", "training", "evaluation", "saving", "figures")

    def __init__(self, start: float | None = None):
        self.start = _process_start() if start is None else start
        self.parts = dict.fromkeys(self.PARTS, 0.0)

    def add(self, part: str, since: float) -> float:
        """Count the seconds since ``since`` (a ``time.time()``) to ``part``; returns now."""
        now = time.time()
        self.parts[part] += now - since
        return now

    def line(self) -> str:
        total = time.time() - self.start
        other = total - sum(self.parts.values())
        parts = [f"{k} {v:.1f} s" for k, v in {**self.parts, "other": other}.items() if v >= 0.05]
        return f"wall time {total:.1f} s: " + ", ".join(parts)


def _process_start() -> float:
    """When this process started (``time.time()`` scale), or now when it cannot be told."""
    try:
        import psutil
        return psutil.Process().create_time()
    except Exception:  # noqa: BLE001  no psutil, or a platform it cannot read
        return time.time()


_RUNS_IN_PROCESS = []  # a process's first run starts with the process, a later one at its train() call


def _accelerator(cfg: TrainConfig, out: Path):
    """The Accelerator of a run. ``TaskData`` already deals each process its share of one global batch
    and the loop accumulates micro-batches itself, so accelerate must do neither: the scheduler steps
    once per optimizer step (not once per process) and ``backward`` never divides the loss."""
    from accelerate import Accelerator
    from accelerate.utils import GradientAccumulationPlugin, ProjectConfiguration
    _refuse_launcher_accumulation(cfg)
    trackers = [t.strip() for t in cfg.report_to.split(",") if t.strip() and t.strip() != "none"]
    try:
        return Accelerator(mixed_precision=cfg.mixed_precision, log_with=trackers or None,
                           step_scheduler_with_optimizer=False,
                           gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=1),
                           project_config=ProjectConfiguration(project_dir=str(out),
                                                               logging_dir=str(out / "logs")))
    except (ValueError, ImportError) as err:
        raise ConfigError(f"report_to={cfg.report_to!r} / mixed_precision={cfg.mixed_precision!r}: {err}") from None


def launcher_accumulation() -> int | None:
    """The N of ``accelerate launch --gradient_accumulation_steps N`` (or its environment variable),
    if this process was started that way. accelerate forwards the flag to DeepSpeed runs only; for
    every other launch it is read from the launcher's command line (Linux ``/proc``)."""
    env = os.environ.get("ACCELERATE_GRADIENT_ACCUMULATION_STEPS")
    if env:
        return int(env)
    try:
        argv = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    if not any("accelerate" in Path(a).name for a in argv[:3]):
        return None
    for i, a in enumerate(argv):
        if a.startswith("--gradient_accumulation_steps"):
            value = a.split("=", 1)[1] if "=" in a else (argv[i + 1] if i + 1 < len(argv) else "")
            return int(value) if value.isdigit() else None
    return None


def _refuse_launcher_accumulation(cfg: TrainConfig) -> None:
    n = launcher_accumulation()
    if n is not None and n != cfg.optim.grad_accum:
        raise ConfigError(f"accelerate launch --gradient_accumulation_steps {n} is not applied by train.py "
                          f"(optim.grad_accum={cfg.optim.grad_accum}); drop the launcher flag and set "
                          f"optim.grad_accum={n}: optim.batch_size stays the global batch per step")


def _setup(cfg: TrainConfig) -> tuple[Run, tuple[int, Path] | None]:
    """Check the folder, build everything in memory (data, model, optimizer), and only then claim the
    folder: a bad value never costs an existing run."""
    from accelerate.utils import set_seed
    folder = RunFolder(cfg.output_dir)
    folder.check(cfg.resume, cfg.overwrite)
    resuming = cfg.resume is not None and folder.config_path.exists()
    if resuming:
        check_resume(cfg, folder)
    checkpoint = folder.resumable_checkpoint(cfg.resume) if resuming else None
    accelerator = _accelerator(cfg, folder.path)
    if accelerator.mixed_precision == "fp16" and accelerator.device.type == "cpu":
        raise ConfigError("mixed_precision=fp16 needs a GPU (on a CPU it silently does nothing); use bf16")
    # Record the precision really used (a launcher or `accelerate config` may have chosen it).
    cfg = dataclasses.replace(cfg, mixed_precision=accelerator.mixed_precision)
    set_seed(cfg.seed)
    data = TaskData(cfg)
    model = build_model(cfg, resuming=checkpoint is not None)
    set_trainable(model, cfg.trainable)
    o = cfg.optim
    adamw = fast_adamw if o.fused else torch.optim.AdamW
    optimizer = adamw([p for p in model.parameters() if p.requires_grad], lr=o.lr,
                      betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(o))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    run = Run(cfg, folder, accelerator, data, model, optimizer, scheduler)
    accelerator.wait_for_everyone()  # every process has read the folder before the main one writes
    fresh = checkpoint is None  # resume=auto on a run killed before its first checkpoint starts it over
    if run.main:
        folder.claim(replace=cfg.overwrite or (resuming and fresh))
        if folder.removed_temporaries:
            names = ", ".join(str(p.relative_to(folder.path)) for p in folder.removed_temporaries[:4])
            print(f"removed {len(folder.removed_temporaries)} temporary file(s) of a killed run: {names}")
        # A resumed run's learning config is the saved one (check_resume); its infrastructure (the
        # max_minutes it is continued with, threads, trackers) is this session's: recorded, so the
        # folder says what budget the finished run had.
        write_text_atomic(folder.config_path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
    accelerator.wait_for_everyone()
    return run, checkpoint


def _restore(run: Run, checkpoint: tuple[int, Path]) -> None:
    step, path = checkpoint
    run.accelerator.load_state(str(path))
    state = json.loads((path / "trainer_state.json").read_text())
    run.step, run.elapsed = step, state.get("time_s", 0.0)
    run.loss_sum, run.loss_steps = state.get("loss_sum", 0.0), state.get("loss_steps", 0)
    if run.main:
        run.records = run.folder.truncate_metrics(step)
    run.accelerator.print(f"resumed from {path} (step {step})")


def _save_checkpoint(run: Run) -> None:
    acc, folder, t = run.accelerator, run.folder, time.time()
    acc.wait_for_everyone()
    if run.main:
        folder.ckpt_dir.mkdir(exist_ok=True)

        def write(tmp: Path) -> None:
            acc.save_state(str(tmp), safe_serialization=True)
            (tmp / "trainer_state.json").write_text(json.dumps(
                {"step": run.step, "time_s": run.elapsed, "loss_sum": run.loss_sum,
                 "loss_steps": run.loss_steps}))
            write_manifest(tmp)
        atomic_dir(folder.ckpt_dir / f"step_{run.step}", write)
        folder.prune_checkpoints(run.cfg.keep_checkpoints)
    acc.wait_for_everyone()
    run.wall.add("saving", t)


def _save_model(run: Run, path: Path, info: dict) -> None:
    from datasets_builders.tokenizer import build_tokenizer
    t = time.time()

    def write(tmp: Path) -> None:
        run.raw.save_pretrained(tmp, safe_serialization=True)
        build_tokenizer(model_max_length=run.cfg.model.n_positions,
                        vocab_size=run.raw.config.vocab_size).save_pretrained(tmp)
        (tmp / "training_info.json").write_text(json.dumps(info, indent=2))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_dir(path, write)
    run.wall.add("saving", t)


def _train_step(run: Run) -> None:
    """One optimizer step over ``grad_accum`` micro-batches; the loss is the mean over every target
    token of the step's global batch, as one big batch on one process would give."""
    acc, o = run.accelerator, run.cfg.optim
    micro = [{k: v.to(acc.device) for k, v in b.items()}
             for b in run.data.batches(run.step, acc.process_index, acc.num_processes)]
    n_targets = sum(int((b["labels"] != -100).sum()) for b in micro)
    if acc.num_processes > 1:  # DDP averages the processes' gradients: weigh by the global count
        n_targets = acc.reduce(torch.tensor(n_targets, device=acc.device), reduction="sum").item() / acc.num_processes
    total = 0.0
    for i, batch in enumerate(micro):
        weight = int((batch["labels"] != -100).sum()) / max(n_targets, 1)
        sync = acc.no_sync(run.model) if i < len(micro) - 1 else _nullcontext()
        with sync, acc.autocast():
            loss = run.model(**batch, use_cache=False).loss * weight
        acc.backward(loss)
        total += loss.detach().float().item()
    grad_norm = acc.clip_grad_norm_(run.model.parameters(), o.grad_clip)
    if not torch.isfinite(grad_norm):  # same value on every process (gradients are all-reduced)
        good = checkpoint_steps(run.folder.ckpt_dir)
        raise TrainingError(f"non-finite loss/gradient at step {run.step} (loss {total:.4g}); training "
                            f"stopped without saving. Last good checkpoint: "
                            f"{run.folder.ckpt_dir / f'step_{good[-1]}' if good else 'none'}. Lower "
                            "optim.lr or check the data.")
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.loss_sum += total
    run.loss_steps += 1
    run.step += 1


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _evaluate(run: Run, eval_sets: dict) -> None:
    """A metrics record: mean training loss since the last one, then (main process) the evaluation."""
    acc, t = run.accelerator, time.time()
    loss = torch.tensor(run.loss_sum / max(run.loss_steps, 1), device=acc.device)
    loss = acc.reduce(loss, reduction="mean").item() if run.loss_steps else None  # None: step 0
    record = {"step": run.step, "time_s": round(run.elapsed, 2), "loss": loss,
              "lr": run.scheduler.get_last_lr()[0]}
    run.loss_sum, run.loss_steps, run.last_eval = 0.0, 0, run.step
    if run.main:
        record.update(run_eval(run.raw, run.data, eval_sets, run.cfg))
        run.folder.append_metrics(record)
        run.records.append(record)
    if acc.log_with:
        acc.log({k: v for k, v in flatten(record, "/").items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)}, step=run.step)
    target = run.cfg.target_accuracy
    reached = torch.tensor(float(run.main and target is not None and record["test"]["accuracy_min"] >= target),
                           device=acc.device)
    if acc.reduce(reached, reduction="sum").item() > 0:
        run.stop_reason = f"target accuracy {target} reached"
    run.wall.add("evaluation", t)


def _out_of_time(run: Run, clock: float) -> bool:
    if run.cfg.max_minutes is None:
        return False
    flag = torch.tensor(float(run.main and run.elapsed + time.perf_counter() - clock > 60 * run.cfg.max_minutes),
                        device=run.accelerator.device)
    return run.accelerator.reduce(flag, reduction="sum").item() > 0


def _loop(run: Run) -> None:
    from tqdm.auto import tqdm
    cfg = run.cfg
    eval_sets = run.data.eval_sets(cfg.eval_per_length)
    if not cfg.eval_train:
        del eval_sets["train"]
    run.wall.add("start-up", run.wall.start)
    bar = tqdm(total=cfg.optim.max_steps, initial=run.step, desc=cfg.recipe, dynamic_ncols=True,
               disable=not run.main or not cfg.progress)
    if cfg.init_from and run.step == 0:
        _evaluate(run, eval_sets)  # where fine-tuning starts from: transfer is visible at step 0
    run.model.train()
    clock, first, elapsed_before = time.perf_counter(), run.step, run.elapsed
    while run.step < cfg.optim.max_steps and run.stop_reason == "max_steps":
        _train_step(run)
        bar.update(1)
        if run.step % cfg.eval_every == 0 or run.step == cfg.optim.max_steps:
            run.elapsed += time.perf_counter() - clock
            _evaluate(run, eval_sets)
            clock = time.perf_counter()
            if run.main:
                t = run.records[-1]["test"]
                bar.set_postfix(loss=f"{run.records[-1]['loss']:.3f}", test_acc=f"{t['accuracy_mean']:.3f}",
                                min_len_acc=f"{t['accuracy_min']:.3f}")
        if run.stop_reason == "max_steps" and _out_of_time(run, clock):
            run.stop_reason = f"time limit {cfg.max_minutes} min"
        if run.step in cfg.snapshot_steps and run.main:
            run.elapsed += time.perf_counter() - clock  # training time leaves out the saving
            _save_model(run, run.folder.snap_dir / f"step_{run.step}", {"step": run.step})
            clock = time.perf_counter()
        if cfg.save_every and run.step % cfg.save_every == 0:
            now = time.perf_counter()
            run.elapsed, clock = run.elapsed + now - clock, now  # the checkpoint records the time so far
            _save_checkpoint(run)
            clock = time.perf_counter()
    run.elapsed += time.perf_counter() - clock
    run.wall.parts["training"] += run.elapsed - elapsed_before
    bar.close()
    if run.step != first and run.last_eval != run.step:
        _evaluate(run, eval_sets)  # stopped (time limit) between two evaluations
    if (run.stop_reason.startswith("time limit") and cfg.save_every and run.step != first
            and run.step % cfg.save_every != 0):
        _save_checkpoint(run)  # where a larger max_minutes continues it (resume=latest)


def _finish(run: Run, quiet: bool) -> dict:
    """Write ``final/`` and ``summary.json`` (main process) and print the report."""
    acc, cfg = run.accelerator, run.cfg
    extra = {"mixed_precision": acc.mixed_precision, "num_processes": acc.num_processes,
             "threads": torch.get_num_threads(), "device": acc.device.type}
    if cfg.init_grow_vocab:  # the vocabulary the run started from, and the one it trained and saved
        extra["init_vocab_size"] = IterGPTConfig.from_pretrained(cfg.init_from).vocab_size
        extra["vocab_size"] = run.raw.config.vocab_size
    if cfg.record:  # which version of the experiment's declared record this run was made under
        from .evidence import record_sha256
        extra["record_sha256"] = record_sha256(cfg.record)
    s = summary(run.records, cfg, run.stop_reason, extra)
    info = {"step": run.step, "stop_reason": run.stop_reason, "time_s": round(run.elapsed, 2),
            "train_config": to_dict(cfg), "init_from": cfg.init_from, "test": run.records[-1]["test"], **extra}
    _save_model(run, run.folder.final_dir, info)
    write_text_atomic(run.folder.path / "summary.json", json.dumps(s, indent=1) + "\n")
    if quiet:
        print(one_line(s, str(run.folder.path)))
    else:
        print_report(s)
    if cfg.figures:
        t = time.time()
        for path in write_figures(run.raw, run.data, cfg, run.records, run.folder.path):
            print(f"wrote {path}")
        run.wall.add("figures", t)
    print(run.wall.line())
    return s


def continues_on_more_time(done: dict, cfg: TrainConfig) -> bool:
    """Whether ``resume`` continues a finished run (its ``summary.json``): it stopped on its time limit,
    has steps left, and ``cfg`` allows more training time than it had."""
    return (str(done.get("stop_reason", "")).startswith("time limit") and done["steps"] < cfg.optim.max_steps
            and (cfg.max_minutes is None or 60 * cfg.max_minutes > float(done.get("time_s") or 0.0)))


def train(cfg: TrainConfig, sweep_dir: str | None = None) -> dict:
    """Train one run; returns its summary record (``summary.json``)."""
    cfg = resolve(cfg, sweep_dir)
    torch.set_flush_denormal(cfg.flush_denormal)  # part of the run's numbers: a resume sets it the same way
    folder = RunFolder(cfg.output_dir)
    if cfg.resume is not None and folder.is_finished():
        done = json.loads((folder.path / "summary.json").read_text())
        if not continues_on_more_time(done, cfg):
            more = (f" It stopped on its time limit: a larger max_minutes (now {cfg.max_minutes}) continues it."
                    if str(done.get("stop_reason", "")).startswith("time limit") else "")
            print(f"{folder.path} holds a finished run (step {done['steps']}, {done.get('stop_reason')}); "
                  f"nothing to resume.{more} Use overwrite=true to train it again.")
            return done
        if not checkpoint_steps(folder.ckpt_dir):
            print(f"{folder.path} stopped on its time limit at step {done['steps']} but holds no checkpoint "
                  "(save_every=0), so it cannot be continued; nothing was changed. Use overwrite=true to train it again.")
            return done
        print(f"{folder.path} stopped on its time limit at step {done['steps']} after "
              f"{done.get('time_s', 0) / 60:.1f} min of training; continuing it with max_minutes={cfg.max_minutes}")
    start = None if not _RUNS_IN_PROCESS else time.time()
    _RUNS_IN_PROCESS.append(cfg.output_dir)
    run, checkpoint = _setup(cfg)
    run.wall = WallClock(start)
    try:
        if checkpoint is not None:
            _restore(run, checkpoint)
        if run.accelerator.log_with:
            run.accelerator.init_trackers("train", config=_flat_config(cfg))
        n_trainable = sum(p.numel() for p in run.raw.parameters() if p.requires_grad)
        run.accelerator.print(
            f"model: {sum(p.numel() for p in run.raw.parameters()):,} parameters ({n_trainable:,} trainable); "
            f"{run.accelerator.num_processes} process(es) on {run.accelerator.device}, precision "
            f"{run.accelerator.mixed_precision}; task {cfg.data.task}, lengths {cfg.data.min_length}-"
            f"{cfg.data.max_length}, cot={cfg.data.cot}; run folder {cfg.output_dir}")
        _loop(run)
        run.accelerator.wait_for_everyone()
        result = _finish(run, quiet=sweep_dir is not None) if run.main else {}
    except Exception as err:  # a full disk surfaces as OSError or as a library's wrapped I/O error
        if not is_write_error(err) or isinstance(err, (ConfigError, RunFolderError)):
            raise
        raise RunFolderError(no_space_message(err, getattr(err, "filename", None) or cfg.output_dir)) from None
    finally:
        run.folder.release()
    run.accelerator.end_training()
    if run.accelerator.num_processes > 1 and run.accelerator.device.type == "cpu":
        # Everything is written. Freeing the DDP model now can deadlock a gloo rank for good (seen
        # in CI: ~ProcessGroupGloo joins a worker thread that waits for the GIL to free a tensor of
        # the last all-reduce), leaving the launcher waiting; end the worker process here instead.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return result


def _flat_config(cfg: TrainConfig) -> dict:
    """The config as a tracker takes it: dotted keys, values that are not scalars as text."""
    return {k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
            for k, v in flatten(to_dict(cfg)).items()}
