"""What a run measures while it trains, and what it tells at the end.

- :func:`run_eval`: teacher-forced accuracy per length and every head's scores (``modeling.analysis``),
  on the held-out test split and on a fixed sample of the training distribution; one record of
  ``metrics.jsonl``.
- :func:`summary`: the run's outcome in one flat record (``summary.json``), from its metrics: steps
  and time to the target, final accuracy per length, every head's scores, when the head formed.
  Sweep tables (``training.results``) are built from these records only.
- :func:`print_report`: the end-of-run report (per-length accuracy, head table, emergence).
"""

from __future__ import annotations

import numpy as np

from modeling.analysis import HEAD_THRESHOLD, MIN_DETECT_LENGTH, evaluate_lengths, find_iteration_heads

from .config import TrainConfig
from .data import TaskData

__all__ = ["run_eval", "summarise", "summary", "print_report", "one_line", "write_figures", "main_task", "task_metrics", "REPORT_TARGET"]

REPORT_TARGET = 0.99  # "reached" in summaries when the run has no target_accuracy of its own
PEAK_MIN_LENGTH = 4  # the reference averages thresholded peakiness over lengths >= 4


def _mean_over(heads: dict, metric: str, min_length: int) -> np.ndarray:
    used = [L for L in heads if L >= min_length] or list(heads)
    return np.mean([heads[L][metric] for L in used], axis=0)  # (n_layer, n_head)


def summarise(result: dict) -> dict:
    """Flatten ``evaluate_lengths`` output for logging: accuracy, and each head's scores averaged over
    lengths >= 2 (as the detector does), plus the reference's thresholded peakiness (lengths >= 4)."""
    acc = list(result["accuracy"].values())
    out = {"accuracy_mean": float(np.mean(acc)), "accuracy_min": float(np.min(acc)),
           "accuracy": {str(k): v for k, v in result["accuracy"].items()}}
    heads = result["heads"]
    if heads:
        first, it = (_mean_over(heads, m, MIN_DETECT_LENGTH) for m in ("first_mean", "iteration_mean"))
        first_frac = _mean_over(heads, "first_frac", PEAK_MIN_LENGTH)
        it_frac = _mean_over(heads, "iteration_frac", PEAK_MIN_LENGTH)
        later = slice(1, None) if it.shape[0] > 1 else slice(None)
        out["first_mean"] = float(first[0].max())  # best layer-1 head: attends to <eoi>
        out["iteration_mean"] = float(it[later].max())  # best later head: the iteration head
        out["first_frac"] = float(first_frac[0].max())
        out["iteration_frac"] = float(it_frac[later].max())
        out["heads"] = {"first_mean": first.round(4).tolist(), "iteration_mean": it.round(4).tolist(),
                        "iteration_heads": find_iteration_heads(result)}
    return out


def run_eval(model, data: TaskData, sets: dict, cfg: TrainConfig) -> dict:
    """``{"train": {...}, "test": {...}}`` (and ``"unseen"`` when ``sets`` has it, without head
    scores); a mix run has the merged accuracy plus one entry per task."""
    metrics = {}
    for split, rows in sets.items():
        per_task = {}
        for name in data.tasks:
            by_length = {L: v for (t, L), v in rows.items() if t == name}
            if not by_length:  # "unseen" of a task with no unseen row
                continue
            r = evaluate_lengths(model, by_length, with_heads=cfg.eval_heads and split != "unseen", cot=data.cot)
            per_task[name] = summarise(r)
        if not per_task:
            continue
        if len(per_task) == 1:
            metrics[split] = next(iter(per_task.values()))
        else:
            metrics[split] = {"accuracy_mean": float(np.mean([v["accuracy_mean"] for v in per_task.values()])),
                              "accuracy_min": float(np.min([v["accuracy_min"] for v in per_task.values()])),
                              **per_task}
    return metrics


def main_task(cfg: TrainConfig) -> str:
    """The task a run is about: ``mix_with`` for a mix run (its copy rows are a training aid)."""
    return cfg.data.mix_with if cfg.data.task == "mix" else cfg.data.task


def task_metrics(record: dict, task: str) -> dict:
    test = record.get("test", {})
    return test.get(task, test) if isinstance(test.get(task), dict) else test


def _first_step(records: list[dict], ok) -> tuple[int | None, float | None]:
    for r in records:
        if "test" in r and ok(r):
            return r["step"], r.get("time_s")
    return None, None


def summary(records: list[dict], cfg: TrainConfig, stop_reason: str, extra: dict | None = None) -> dict:
    """One flat record of a run's outcome, computed from its ``metrics.jsonl`` records only."""
    task = main_task(cfg)
    target = cfg.target_accuracy or REPORT_TARGET
    last = next(r for r in reversed(records) if "test" in r)
    m = task_metrics(last, task)
    steps_to_target, time_to_target = _first_step(records, lambda r: r["test"]["accuracy_min"] >= target)
    head_step, _ = _first_step(records, lambda r: task_metrics(r, task).get("iteration_mean", 0) >= HEAD_THRESHOLD)
    out = {"task": task, "steps": last["step"], "time_s": last.get("time_s"), "stop_reason": stop_reason,
           "target": target, "reached_target": steps_to_target is not None,
           "steps_to_target": steps_to_target, "time_to_target_s": time_to_target,
           "test_accuracy": m["accuracy_mean"], "test_accuracy_min": m["accuracy_min"],
           "test_accuracy_min_all_tasks": last["test"]["accuracy_min"],
           "eoi_score": m.get("first_mean"), "iteration_score": m.get("iteration_mean"),
           "eoi_peakiness": m.get("first_frac"), "iteration_peakiness": m.get("iteration_frac"),
           "iteration_heads": m.get("heads", {}).get("iteration_heads"),
           "head_step": head_step, "final_loss": last.get("loss")}
    out.update({f"acc_L{L}": a for L, a in m["accuracy"].items()})
    if "unseen" in last:  # data.source=paper: accuracy on the test rows its train half did not draw
        u = task_metrics({"test": last["unseen"]}, task)
        out["unseen_accuracy"] = u["accuracy_mean"]
        out.update({f"unseen_acc_L{L}": a for L, a in u["accuracy"].items()})
    for metric in ("first_mean", "iteration_mean"):
        for layer, row in enumerate(m.get("heads", {}).get(metric, [])):
            out.update({f"{metric}_{layer}.{h}": v for h, v in enumerate(row)})
    out.update(extra or {})
    return out


def one_line(s: dict, where: str) -> str:
    """A run's outcome in one line (sweep jobs print this instead of the full report)."""
    head = f"head at step {s['head_step']}" if s["head_step"] is not None else "no iteration head"
    it = f"{s['iteration_score']:.3f}" if s["iteration_score"] is not None else "n/a"
    return (f"{where}: {s['task']} step {s['steps']} ({s['stop_reason']}), test accuracy mean "
            f"{s['test_accuracy']:.3f} min {s['test_accuracy_min']:.3f}, iteration score {it}, {head}")


def write_figures(model, data: TaskData, cfg: TrainConfig, records: list[dict], folder) -> list[str]:
    """The attention map at the longest trained length and the emergence plot (accuracy and both head
    scores against the step, from ``metrics.jsonl``), as PNGs in the run folder."""
    from modeling.analysis import plot_attention, plot_training, training_points
    task, L = main_task(cfg), cfg.data.max_length
    paths = []
    if data.cot:
        rows = data.eval_sets(64)["test"][task, L]
        paths.append(plot_attention(model, rows, str(folder / f"attention_L{L}.png")))
    points = training_points(records, task)
    paths.append(plot_training(points, str(folder / "emergence.png"), model_name=f"{cfg.recipe} ({task})"))
    return paths


def print_report(s: dict) -> None:
    """The end-of-run report, from the run's summary (nothing is re-measured)."""
    print(f"\nstopped at step {s['steps']} after {s['time_s']:.0f}s of training ({s['stop_reason']})")
    accs = {k[5:]: v for k, v in s.items() if k.startswith("acc_L")}
    print(f"{s['task']}: test sequence accuracy per length (mean {s['test_accuracy']:.4f}, "
          f"min {s['test_accuracy_min']:.4f})")
    print("  ".join(f"L{L}:{a:.3f}" for L, a in accs.items()))
    layers = sorted({k.split("_", 2)[2] for k in s if k.startswith("first_mean_")})
    if layers:
        print(f"head scores (mean over lengths >= 2; iteration head when >= {HEAD_THRESHOLD}):")
        print("  layer.head  <eoi>-attention  iteration-head")
        found = {f"{l}.{h}" for l, h in s["iteration_heads"] or []}
        for lh in layers:
            tag = "  <- iteration head" if lh in found else ""
            print(f"  {lh:<10}  {s['first_mean_' + lh]:.3f}            {s['iteration_mean_' + lh]:.3f}{tag}")
    jump = s["steps_to_target"]
    if s["head_step"] is not None:
        reached = (f"every test length reached {s['target']} at step {jump}" if jump is not None
                   else f"not every test length has reached {s['target']} yet")
        print(f"the iteration head formed by step {s['head_step']} (score >= {HEAD_THRESHOLD}); {reached}")
    elif layers:
        print("no iteration head was found (no later-layer head scored >= "
              f"{HEAD_THRESHOLD}): the model solved the task another way, or not at all")
