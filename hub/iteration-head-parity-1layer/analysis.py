"""Measure chain-of-thought and find iteration heads (Cabannes et al., *Iteration Head: A Mechanistic
Study of Chain-of-Thought*, NeurIPS 2024, arXiv:2406.02128: the iteration-head mechanism of its
Figure 5 and the accuracy and attention-peakiness measures of its experiments).

One implementation of the paper's metrics, shared by ``train.py`` (evaluation during training),
``evaluate.py`` and the analysis command shipped next to every checkpoint on the Hub::

    python -m modeling.analysis --model runs/parity --task parity --lengths 1-16 --out analysis/
    python analysis.py --model . --task parity            # next to a checkpoint (and tasks.py)

For a sequence of input length ``L`` the end of input ``<eoi>`` sits at position ``e = L + 1``:

- **sequence accuracy** (teacher forced): every argmax prediction of a target after ``<eoi>``
  (the states and the closing ``<eos>``) equals the target;
- **first-attention peakiness**: attention weight from the chain-of-thought queries
  ``e+1 … 2L+1`` to the key ``e`` (the ``<eoi>`` token);
- **iteration-head score**: attention weight from query ``e-1+t`` (which writes ``s_t``) to key
  ``t`` (which holds ``x_t``), for ``t = 1 … L``;
- **invariance**: ``1 - std`` over sequences of those weights, averaged over positions: a real
  iteration head does not depend on the input values.

Each score is given for every (layer, head) as its mean and as the fraction of weights above 0.5.
Layers and heads are numbered from 0 (TransformerLens style): the paper's "layer-2 attention", the
iteration head of a 2-layer model, is ``(1, 0)`` here.

**Head labels** (TransformerLens head-detector style, :func:`detect_heads`): a head is an
*iteration head* when its iteration-head score, averaged over the evaluated lengths ``L >= 2``, is
at least :data:`HEAD_THRESHOLD` (0.5: most of the head's attention lands on ``x_t``). Length 1 is
left out because its only diagonal query ``e`` -> key ``1`` is also the *previous token*, so a
previous-token head would pass; when only ``L = 1`` is evaluated it is used anyway. A head
*attends to <eoi>* under the same rule with the first-attention score.

The command also draws attention maps, ablates every head and MLP (zero and mean ablation through
``run_with_hooks``), plots accuracy and both peakiness scores against training step from a run
folder, and writes ``analysis.json`` + ``analysis.md``. Only numpy, torch, matplotlib, transformers
and ``tasks.py`` are imported, so the file runs next to a checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys

import numpy as np
import torch

try:  # inside the repository
    from datasets_builders import tasks
except ImportError:  # shipped next to a checkpoint: tasks.py sits beside this file
    import tasks  # type: ignore[no-redef]

__all__ = [
    "HEAD_THRESHOLD",
    "CheckpointError",
    "check_checkpoint_files",
    "load_model",
    "read_records",
    "check_device",
    "teacher_forced_correct",
    "knock_out_eoi",
    "head_scores",
    "evaluate_lengths",
    "check_model",
    "check_lengths",
    "max_length",
    "parse_lengths",
    "sample_rows",
    "read_training_points",
    "training_points",
    "detect_heads",
    "find_iteration_heads",
    "find_eoi_heads",
    "attention_patterns",
    "plot_attention",
    "ablate_head",
    "ablate_mlp",
    "component_means",
    "ablation_study",
    "training_curve",
    "plot_training",
    "analyze",
    "cli",
    "main",
]

# A head is labelled an iteration head when its iteration-head score (mean weight on the
# diagonal t -> x_t), averaged over the evaluated lengths L >= 2, is at least this.
HEAD_THRESHOLD = 0.5
MIN_DETECT_LENGTH = 2  # lengths below this are left out of the detector's average (see above)
ABLATION_MODES = ("zero", "mean")


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------
def _config(model):
    """The model's config, also through a ``DistributedDataParallel``-style ``.module`` wrapper."""
    config = getattr(model, "config", None) or getattr(getattr(model, "module", None), "config", None)
    if config is None:
        raise ValueError(f"{type(model).__name__} has no config: pass a transformers (IterGPT) model")
    return config


def check_model(model, task: "tasks.Task | None" = None) -> None:
    """``ValueError`` unless ``model`` speaks the task vocabulary: the 64 base ids with the same special
    ids (``<eoi>``, ``<eos>``, ``<pad>``, where its config names them), and every id of ``task`` (a task
    with more than 57 values extends it, ``tasks.vocabulary``). The one check of a model's vocabulary
    (analysis, ``evaluate.py``, the explorer)."""
    config = _config(model)
    vocab = getattr(config, "vocab_size", None)
    need = task.vocab_size if task is not None else tasks.VOCAB_SIZE
    if not isinstance(vocab, int) or vocab < need:
        what = f"task {task.name!r} needs" if task is not None else "the task vocabulary has"
        raise ValueError(f"model vocab_size={vocab} does not fit: {what} {need} tokens (datasets_builders/"
                         "tasks.py): this checkpoint was not trained on this task's vocabulary")
    for name, want in (("eoi_token_id", tasks.EOI_ID), ("eos_token_id", tasks.EOS_ID), ("pad_token_id", tasks.PAD_ID)):
        have = getattr(config, name, None)
        if have is not None and have != want:
            raise ValueError(f"the model's {name}={have} but the task vocabulary uses {want}")


def max_length(model, cot: bool = True) -> int:
    """Longest input length whose row fits the model's context (``2L+3 <= n_positions`` with CoT)."""
    n_positions = _config(model).n_positions
    return (n_positions - 3) // 2 if cot else n_positions - 4


def check_lengths(model, lengths, cot: bool = True) -> list[int]:
    """Sorted lengths; ``ValueError`` for a length < 1 or one whose row does not fit the context."""
    lengths = sorted({int(L) for L in lengths})
    if not lengths:
        raise ValueError("no input length to evaluate")
    n_positions = _config(model).n_positions
    for L in lengths:
        if L < 1:
            raise ValueError(f"length {L} is invalid: input lengths start at 1")
        if tasks.row_length(L, cot) > n_positions:
            raise ValueError(f"length {L} does not fit the context: a row needs {tasks.row_length(L, cot)} "
                             f"tokens but n_positions={n_positions}; the longest is {max_length(model, cot)}")
    return lengths


def _check_layer(model, layer: int) -> None:
    n_layer = _config(model).n_layer
    if not isinstance(layer, (int, np.integer)) or not 0 <= layer < n_layer:
        raise ValueError(f"layer={layer!r} is out of range: the model has {n_layer} layers (0..{n_layer - 1})")


def _check_head(model, layer: int, head: int) -> None:
    _check_layer(model, layer)
    n_head = _config(model).n_head
    if not isinstance(head, (int, np.integer)) or not 0 <= head < n_head:
        raise ValueError(f"head={head!r} is out of range: layer {layer} has {n_head} heads (0..{n_head - 1})")


def _check_mode(mode: str, mean=None, need_mean: bool = True) -> None:
    if mode not in ABLATION_MODES:
        raise ValueError(f"mode={mode!r} is unknown: choose one of {', '.join(ABLATION_MODES)}")
    if need_mean and mode == "mean" and mean is None:
        raise ValueError("mode='mean' needs the mean activation (see component_means)")


def parse_lengths(spec: str) -> list[int]:
    """``"1-16"``, ``"8"`` or ``"1,2,4-6"`` -> sorted distinct lengths, each >= 1.

    Strict: every comma-separated part must be a length or a range ``lo-hi`` with ``lo <= hi``
    (spaces are ignored), so an empty part (``"1,,3"``, ``"1,"``, ``""``) is an error rather than
    skipped -- a stray comma is more often a typo than a request. The one parser of the project
    (``evaluate.py``, this module's command line and the explorer).
    """
    out = set()
    for part in str(spec).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"lengths={spec!r} is invalid: write e.g. 1-16, 8 or 1,2,4-6 (no empty parts)")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ValueError(f"lengths={spec!r} is invalid: the range {lo}-{hi} is empty")
        out.update(range(lo, hi + 1))
    if min(out) < 1:
        raise ValueError(f"length {min(out)} is invalid: input lengths start at 1 (lengths={spec!r})")
    return sorted(out)


def sample_rows(task, lengths, n_per_length: int = 256, seed: int = 0, cot: bool = True) -> dict[int, np.ndarray]:
    """``{L: rows (n, row_length(L))}`` of distinct random inputs, ``L`` in increasing order.

    ``task`` is a :class:`tasks.Task` or a task name. Each length has its own generator
    ``default_rng([seed, L])``, so the rows of a length do not depend on which other lengths are
    asked for. When a length has fewer than ``n_per_length`` distinct inputs (parity of length 9
    has 512), every one of them is used once.
    """
    if n_per_length < 1:
        raise ValueError(f"n_per_length={n_per_length} is invalid: it must be >= 1")
    task = tasks.make_task(task) if isinstance(task, str) else task
    out = {}
    for L in sorted(lengths):
        n = min(n_per_length, task.num_sequences(L))
        inputs = tasks.sample_unique_inputs(task, L, n, np.random.default_rng([seed, L]))
        out[L] = tasks.build_rows(task, inputs, cot)
    return out


def _progress(iterable, enabled: bool, desc: str, total: int | None = None):
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with huggingface_hub
        return iterable
    return tqdm(iterable, desc=desc, total=total, file=sys.stderr, leave=False)


# ---------------------------------------------------------------------------------------------
# The paper's metrics (used by the trainer; keep the signatures)
# ---------------------------------------------------------------------------------------------
def _batches(rows: np.ndarray, batch_size: int):
    for start in range(0, len(rows), batch_size):
        yield rows[start:start + batch_size]


def teacher_forced_correct(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Which rows have every target after ``<eoi>`` predicted right: ``(N,)`` bool.

    ``logits`` ``(N, T, V)`` come from a forward pass on ``input_ids`` ``(N, T)``; the prediction
    for position ``p`` is read at ``p - 1``. Padding is never a target.
    """
    mask = torch.as_tensor(tasks.loss_mask(input_ids.cpu().numpy()), device=input_ids.device)[:, 1:]
    wrong = (logits[:, :-1].argmax(-1) != input_ids[:, 1:]) & mask  # (N, T-1)
    return ~wrong.any(dim=1)


def head_scores(patterns: torch.Tensor, length: int) -> dict[str, np.ndarray]:
    """Scores of every head from attention patterns of chain-of-thought rows of one length.

    ``patterns``: ``(N, n_layer, n_head, T, T)`` with ``T >= 2L + 2``. Returns arrays of shape
    ``(n_layer, n_head)``: ``first_mean``, ``first_frac``, ``first_invariance``, ``iteration_mean``,
    ``iteration_frac``, ``iteration_invariance``.
    """
    L, e = length, length + 1
    if patterns.dim() != 5 or patterns.shape[-1] < 2 * L + 2:
        raise ValueError(f"patterns of shape {tuple(patterns.shape)} do not cover length {L}: expected "
                         f"(N, n_layer, n_head, T, T) with T >= {2 * L + 2}")
    p = patterns.float()
    first = p[:, :, :, e + 1:2 * L + 2, e]  # (N, nl, nh, L): CoT queries -> <eoi>
    t = torch.arange(1, L + 1, device=p.device)
    iteration = p[:, :, :, e - 1 + t, t]  # (N, nl, nh, L): query L+t -> key t
    out = {}
    for name, w in (("first", first), ("iteration", iteration)):
        out[f"{name}_mean"] = w.mean(dim=(0, 3))
        out[f"{name}_frac"] = (w > 0.5).float().mean(dim=(0, 3))
        std = w.std(dim=0, unbiased=False) if len(w) > 1 else torch.zeros_like(w[0])
        out[f"{name}_invariance"] = 1 - std.mean(dim=-1)
    return {k: v.cpu().numpy() for k, v in out.items()}


@torch.no_grad()
def evaluate_lengths(model, rows_by_length: dict[int, np.ndarray], batch_size: int = 512,
                     with_heads: bool = True, cot: bool = True, fwd_hooks=None) -> dict:
    """Teacher-forced accuracy (and head scores) for each length.

    ``rows_by_length`` maps an input length to unpadded token rows ``(n, row_length)``, as made by
    ``tasks.build_rows``. Returns ``{"accuracy": {L: acc}, "n": {L: n}, "heads": {L: scores}}``
    where ``scores`` is the dict of :func:`head_scores` (only for chain-of-thought rows).
    ``fwd_hooks``: ``[(name, fn)]`` for ``model.run_with_hooks`` (ablations), or a function
    ``L -> [(name, fn)]`` when the hooks depend on the length.
    """
    check_model(model)
    if rows_by_length:
        check_lengths(model, rows_by_length, cot)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    result = {"accuracy": {}, "n": {}, "heads": {}}
    want_heads = with_heads and cot
    for length, rows in sorted(rows_by_length.items()):
        hooks = fwd_hooks(length) if callable(fwd_hooks) else fwd_hooks
        correct, sums, count = 0, None, 0
        for chunk in _batches(np.asarray(rows), batch_size):
            ids = torch.as_tensor(chunk, device=device)
            if hooks:
                out = model.run_with_hooks(ids, fwd_hooks=hooks, output_attentions=want_heads, use_cache=False)
            else:
                out = model(input_ids=ids, output_attentions=want_heads, use_cache=False)
            correct += int(teacher_forced_correct(out.logits, ids).sum())
            if want_heads:
                pat = torch.stack(out.attentions, dim=1)  # (N, n_layer, n_head, T, T)
                scores = head_scores(pat, length)
                # Weighted by chunk size; invariance over a chunk is a fine estimate of the whole.
                sums = {k: v * len(chunk) for k, v in scores.items()} if sums is None else \
                    {k: sums[k] + v * len(chunk) for k, v in scores.items()}
            count += len(chunk)
        result["accuracy"][length] = correct / max(count, 1)
        result["n"][length] = count
        if sums is not None:
            result["heads"][length] = {k: v / count for k, v in sums.items()}
    model.train(was_training)
    return result


# ---------------------------------------------------------------------------------------------
# Head detector
# ---------------------------------------------------------------------------------------------
def _heads_by_length(scores) -> dict[int, dict]:
    """Accept the ``evaluate_lengths`` result or its ``"heads"`` entry."""
    if isinstance(scores, dict) and "heads" in scores:
        scores = scores["heads"]
    return {int(L): v for L, v in scores.items()}


def _average_score(scores, metric: str, min_length: int = MIN_DETECT_LENGTH) -> np.ndarray:
    """``metric`` averaged over lengths ``>= min_length`` (all lengths if none is that long)."""
    by_length = _heads_by_length(scores)
    if not by_length:
        raise ValueError("no head scores: evaluate chain-of-thought rows with with_heads=True")
    used = [L for L in by_length if L >= min_length] or list(by_length)
    return np.mean([np.asarray(by_length[L][metric], dtype=float) for L in used], axis=0)  # (nl, nh)


def detect_heads(scores, metric: str = "iteration_mean", threshold: float = HEAD_THRESHOLD,
                 min_length: int = MIN_DETECT_LENGTH) -> list[tuple[int, int]]:
    """Heads whose ``metric`` averaged over lengths ``>= min_length`` is ``>= threshold``.

    ``scores``: ``{L: head_scores(...)}`` or the result of :func:`evaluate_lengths`.
    """
    avg = _average_score(scores, metric, min_length)
    return [(int(l), int(h)) for l, h in zip(*np.nonzero(avg >= threshold))]


def find_iteration_heads(scores, threshold: float = HEAD_THRESHOLD) -> list[tuple[int, int]]:
    """``(layer, head)`` of every iteration head: attention from ``L+t`` to ``x_t`` (module doc)."""
    return detect_heads(scores, "iteration_mean", threshold)


def find_eoi_heads(scores, threshold: float = HEAD_THRESHOLD) -> list[tuple[int, int]]:
    """``(layer, head)`` of every head whose chain-of-thought queries attend to ``<eoi>``."""
    return detect_heads(scores, "first_mean", threshold)


# ---------------------------------------------------------------------------------------------
# Attention maps
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def attention_patterns(model, rows: np.ndarray, batch_size: int = 512) -> torch.Tensor:
    """Attention weights of every head on rows of one length: ``(N, n_layer, n_head, T, T)``."""
    check_model(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for chunk in _batches(np.asarray(rows), batch_size):
        res = model(input_ids=torch.as_tensor(chunk, device=device), output_attentions=True, use_cache=False)
        out.append(torch.stack(res.attentions, dim=1).float().cpu())
    model.train(was_training)
    return torch.cat(out)


def _generic_labels(length: int, cot: bool = True) -> list[str]:
    xs = [f"x{t}" for t in range(1, length + 1)]
    ss = [f"s{t}" for t in range(1, length + 1)] if cot else [f"s{length}"]
    return ["<task>"] + xs + ["<eoi>"] + ss + ["<eos>"]


def plot_attention(model, rows: np.ndarray, path: str, example: int = 0, labels=None) -> str:
    """PNG of the attention of every (layer, head): one example (top) and the mean over ``rows``.

    ``rows``: chain-of-thought rows of one length. ``labels``: id -> text (default: the task vocab).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = np.asarray(rows)
    if not 0 <= example < len(rows):
        raise ValueError(f"example={example} is out of range: {len(rows)} rows")
    pat = attention_patterns(model, rows).numpy()  # (N, nl, nh, T, T)
    n, n_layer, n_head, T, _ = pat.shape
    length = (T - 3) // 2
    labels = labels or tasks.token_text
    ex_labels = [labels(int(i)) for i in rows[example]]
    mean_labels = _generic_labels(length) if T == tasks.row_length(length) else [str(i) for i in range(T)]
    panels = [(l, h) for l in range(n_layer) for h in range(n_head)]
    size = 1.8 + 0.16 * T
    fig, axes = plt.subplots(2, len(panels), figsize=(size * len(panels) + 1.2, 2 * size + 0.4), squeeze=False,
                             layout="constrained")
    font = max(4, min(9, 240 // T))
    for j, (l, h) in enumerate(panels):
        for i, (img, lab, what) in enumerate(((pat[example, l, h], ex_labels, "example"),
                                             (pat[:, l, h].mean(0), mean_labels, f"mean of {n}"))):
            ax = axes[i, j]
            im = ax.imshow(img, vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
            ax.set_title(f"layer {l} head {h}: {what}", fontsize=9)
            ax.set_xticks(range(T), lab, rotation=90, fontsize=font)
            ax.set_yticks(range(T), lab, fontsize=font)
            ax.set_xlabel("key", fontsize=8)
            ax.set_ylabel("query", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.6, label="attention weight")
    fig.suptitle(f"Attention at input length {length}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# Ablations (hooks for run_with_hooks)
# ---------------------------------------------------------------------------------------------
def _replace(t: torch.Tensor, index, mean) -> torch.Tensor:
    t = t.clone()
    if mean is None:
        t[index] = 0
    else:  # mean: (T_max, ...) per position; cut to this forward's length
        t[index] = mean[: t.shape[1]].to(t.device, t.dtype)
    return t


def ablate_head(model, layer: int, head: int, mode: str = "zero", mean: torch.Tensor | None = None):
    """Hooks that knock out one attention head: ``[(name, fn)]`` for ``model.run_with_hooks``.

    ``zero`` sets the head's output ``z`` (``blocks.{layer}.attn.hook_z[:, :, head]``) to 0, so the
    head adds nothing to the residual stream; ``mean`` replaces it by ``mean`` ``(T, d_head)``,
    its mean over the data at each position (:func:`component_means`).
    """
    _check_head(model, layer, head)
    _check_mode(mode, mean)
    mean = None if mode == "zero" else torch.as_tensor(mean)

    def hook(z, hook=None):  # z: (B, T, H, d_head)
        return _replace(z, (slice(None), slice(None), head), mean)

    return [(f"blocks.{layer}.attn.hook_z", hook)]


def ablate_mlp(model, layer: int, mode: str = "zero", mean: torch.Tensor | None = None):
    """Hooks that knock out one MLP: its hidden activations ``blocks.{layer}.mlp.hook_post`` are set
    to 0 (``zero``) or to ``mean`` ``(T, d_mlp)`` (``mean``)."""
    _check_layer(model, layer)
    _check_mode(mode, mean)
    mean = None if mode == "zero" else torch.as_tensor(mean)

    def hook(h, hook=None):  # h: (B, T, d_mlp)
        return _replace(h, (slice(None), slice(None)), mean)

    return [(f"blocks.{layer}.mlp.hook_post", hook)]


def knock_out_eoi(model, layer: int, head: int, length: int):
    """Hooks that stop one head's chain-of-thought queries from attending to ``<eoi>``: an attention-edge
    knockout for rows of input ``length`` with CoT. The pre-softmax scores of the queries ``e+1 … 2L``
    (those that predict the states ``s_2 … s_L``) to the key ``e`` are set to ``-inf``, so each of those
    queries spreads its attention over the other keys, and nothing else changes. The last query
    (``2L+1``, which predicts ``<eos>``) keeps its edge: there the iteration head's own target
    ``x_{L+1}`` is ``<eoi>`` itself, and removing that read would not test the first step. The causal check
    of the circuit's first step (a layer-1 head finds ``<eoi>``, from which the layer-2 head reads
    ``x_t``), where mean-ablating the whole head cannot tell (its output at each position is nearly
    constant within a length)."""
    _check_head(model, layer, head)
    if not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(f"length={length!r}: give the rows' input length (>= 1)")
    e = length + 1

    def hook(scores, hook=None):  # scores: (B, H, T, S), pre-softmax, masked
        scores = scores.clone()
        scores[:, head, e + 1:2 * length + 1, e] = float("-inf")
        return scores

    return [(f"blocks.{layer}.attn.hook_attn_scores", hook)]


@torch.no_grad()
def component_means(model, rows: np.ndarray, batch_size: int = 512) -> dict[str, torch.Tensor]:
    """Mean over ``rows`` (one length) of every head output and MLP activation, per position.

    Returns ``{"L{l}H{h}": (T, d_head), "L{l}MLP": (T, d_mlp)}``.
    """
    n_layer, n_head = model.config.n_layer, model.config.n_head
    names = {f"blocks.{l}.attn.hook_z" for l in range(n_layer)} | {f"blocks.{l}.mlp.hook_post" for l in range(n_layer)}
    device = next(model.parameters()).device
    sums, count = {}, 0
    for chunk in _batches(np.asarray(rows), batch_size):
        _, cache = model.run_with_cache(torch.as_tensor(chunk, device=device),
                                        names_filter=lambda name: name in names, use_cache=False)
        for name in names:
            s = cache[name].float().sum(0).cpu()
            sums[name] = s if name not in sums else sums[name] + s
        count += len(chunk)
    out = {}
    for l in range(n_layer):
        z = sums[f"blocks.{l}.attn.hook_z"] / count  # (T, H, d_head)
        for h in range(n_head):
            out[f"L{l}H{h}"] = z[:, h]
        out[f"L{l}MLP"] = sums[f"blocks.{l}.mlp.hook_post"] / count
    return out


def _components(model) -> list[tuple[str, int, int | None]]:
    c = model.config
    return [(f"L{l}H{h}", l, h) for l in range(c.n_layer) for h in range(c.n_head)] + \
        [(f"L{l}MLP", l, None) for l in range(c.n_layer)]


def ablation_study(model, rows_by_length: dict[int, np.ndarray], modes=ABLATION_MODES,
                   batch_size: int = 512, progress: bool = False, eoi_knockout: bool = False) -> dict:
    """Teacher-forced accuracy with each head and each MLP ablated, per length and overall.

    Returns ``{"baseline": {"accuracy": {L: acc}, "mean": m}, "components": {name: {mode:
    {"accuracy": {L: acc}, "mean": m, "drop": baseline mean - m}}}}``; names are ``L{l}H{h}`` and
    ``L{l}MLP`` (layers 0-based). With ``eoi_knockout`` (rows with CoT), also ``L{l}H{h}->eoi`` in
    mode ``knockout``: each head's chain-of-thought attention to ``<eoi>`` removed
    (:func:`knock_out_eoi`).
    """
    for mode in modes:
        _check_mode(mode, need_mean=False)
    base = evaluate_lengths(model, rows_by_length, batch_size, with_heads=False)["accuracy"]
    base_mean = float(np.mean(list(base.values())))
    means = {}
    if "mean" in modes:
        for L in _progress(sorted(rows_by_length), progress, "mean activations"):
            means[L] = component_means(model, rows_by_length[L], batch_size)
    result = {"baseline": {"accuracy": base, "mean": base_mean}, "components": {}}
    jobs = [(c, mode) for c in _components(model) for mode in modes]
    for (name, layer, head), mode in _progress(jobs, progress, "ablations"):
        def hooks(L, name=name, layer=layer, head=head, mode=mode):
            mean = means[L][name] if mode == "mean" else None
            return ablate_mlp(model, layer, mode, mean) if head is None else ablate_head(model, layer, head, mode, mean)
        acc = evaluate_lengths(model, rows_by_length, batch_size, with_heads=False, fwd_hooks=hooks)["accuracy"]
        m = float(np.mean(list(acc.values())))
        result["components"].setdefault(name, {})[mode] = {"accuracy": acc, "mean": m, "drop": base_mean - m}
    if eoi_knockout:
        heads = [(name, layer, head) for name, layer, head in _components(model) if head is not None]
        for name, layer, head in _progress(heads, progress, "<eoi> knockouts"):
            acc = evaluate_lengths(model, rows_by_length, batch_size, with_heads=False,
                                   fwd_hooks=lambda L, layer=layer, head=head: knock_out_eoi(model, layer, head, L))["accuracy"]
            m = float(np.mean(list(acc.values())))
            result["components"][f"{name}->eoi"] = {"knockout": {"accuracy": acc, "mean": m, "drop": base_mean - m}}
    return result


# ---------------------------------------------------------------------------------------------
# Emergence during training
# ---------------------------------------------------------------------------------------------
CURVE_KEYS = ("accuracy_mean", "first_mean", "iteration_mean")


def _metric_point(rec: dict, task_name: str | None) -> dict | None:
    """The test metrics of one ``metrics.jsonl`` record, flat (``{"step", "split": "test", ...}``) or
    nested by split (``{"step", "test": {...}}``, as ``train.py`` writes); for a multi-task run the
    ``task_name`` sub-dict when there is one. ``None`` when the record has no test accuracy."""
    if not isinstance(rec, dict) or "step" not in rec:
        return None
    if isinstance(rec.get("test"), dict):
        m = rec["test"]
    elif rec.get("split", "test") == "test":
        m = rec
    else:
        return None
    if task_name and isinstance(m.get(task_name), dict):
        m = m[task_name]
    if "accuracy_mean" not in m:
        return None
    return {"step": int(rec["step"]), **{k: float(m[k]) if m.get(k) is not None else None for k in CURVE_KEYS}}


def training_points(records, task_name: str | None = None) -> list[dict]:
    """The curve points ``{"step", "accuracy_mean", "first_mean", "iteration_mean"}`` of parsed
    ``metrics.jsonl`` records (``task_name``'s sub-dict in a multi-task run), sorted by step; a
    step logged twice (a resumed run) keeps its last record."""
    points = {}
    for rec in records:
        if (point := _metric_point(rec, task_name)) is not None:
            points[point["step"]] = point
    return [points[s] for s in sorted(points)]


def read_training_points(path: str, task_name: str | None = None) -> list[dict]:
    """:func:`training_points` of a ``metrics.jsonl`` file (``[]`` when there is none). The one
    reader of curve points, shipped with this file; the training package reads raw records with
    ``training.run_folder.read_metrics``."""
    return training_points(read_records(path), task_name)


def read_records(path: str) -> list[dict]:
    """The records of a ``metrics.jsonl`` (``[]`` when there is none): the one reader of that file,
    shipped with this file (``training.run_folder.read_metrics`` is this function). A half-written last
    line (a run killed while writing it) is dropped with a warning; a damaged line elsewhere is a
    ``ValueError`` naming the file and the line."""
    import warnings

    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            out.append(record)
        elif i == len(lines):
            warnings.warn(f"{path}: line {i} is incomplete (a run killed while writing it); ignored")
        else:
            raise ValueError(f"{path}: line {i} is not JSON; the file is damaged (repair or delete "
                             "that line)")
    return out


def _snapshot_dirs(run_dir: str) -> list[tuple[int, str]]:
    root = os.path.join(run_dir, "snapshots")
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        m = re.fullmatch(r"step_(\d+)", name)
        if m and os.path.isdir(os.path.join(root, name)):
            found.append((int(m.group(1)), os.path.join(root, name)))
    return sorted(found)


def training_curve(run_dir: str, task=None, lengths=None, n: int = 64, seed: int = 0, load=None,
                   batch_size: int = 512, progress: bool = False) -> list[dict]:
    """Points ``{"step", "accuracy_mean", "first_mean", "iteration_mean"}`` of a training run.

    Read from ``<run>/metrics.jsonl`` (test split) when its records carry the head scores.
    Otherwise every ``<run>/snapshots/step_<N>/`` is loaded (``load(path)``, default
    :func:`load_model`) and evaluated on ``task`` / ``lengths``, with ``train.py``'s summary: accuracy
    averaged over lengths, ``first_mean`` of the best layer-0 head and ``iteration_mean`` of the best
    head in the later layers, each averaged over all lengths. Without snapshots, a metrics file
    holding accuracy only gives points whose scores are ``None``.
    """
    task_name = task if isinstance(task, str) or task is None else task.name
    metrics = os.path.join(run_dir, "metrics.jsonl")
    points = read_training_points(metrics, task_name)
    if points and any(p["iteration_mean"] is not None for p in points):
        return points
    snapshots = _snapshot_dirs(run_dir)
    if not snapshots:
        if points:
            return points
        raise ValueError(f"run folder {run_dir!r} has neither a usable metrics.jsonl (records with step and "
                         f"test accuracy_mean) nor snapshots/step_<N>/ folders")
    if task is None:
        raise ValueError("evaluating snapshots needs the task")
    load = load or load_model
    points, rows = [], None
    for step, path in _progress(snapshots, progress, "snapshots"):
        model = load(path)
        if rows is None:
            lengths = check_lengths(model, lengths or range(1, min(16, max_length(model)) + 1))
            rows = sample_rows(task, lengths, n, seed)
        res = evaluate_lengths(model, rows, batch_size)
        first = _average_score(res, "first_mean", min_length=1)  # (n_layer, n_head)
        iteration = _average_score(res, "iteration_mean", min_length=1)
        points.append({"step": step, "accuracy_mean": float(np.mean(list(res["accuracy"].values()))),
                       "first_mean": float(first[0].max()),
                       "iteration_mean": float((iteration[1:] if len(iteration) > 1 else iteration).max())})
    return points


def plot_training(points: list[dict], path: str, title: str | None = None, model_name: str | None = None) -> str:
    """Accuracy and both peakiness scores against training step, in one figure (PNG). Without a
    ``title`` it says what the curves show: whether an iteration head emerged (a later-layer score
    reaching :data:`HEAD_THRESHOLD`), for ``model_name``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not points:
        raise ValueError("no training points to plot")
    if title is None:
        scores = [p["iteration_mean"] for p in points if p.get("iteration_mean") is not None]
        what = ("test accuracy" if not scores
                else "the iteration head is there from the first point" if scores[0] >= HEAD_THRESHOLD
                else "the iteration head emerges" if max(scores) >= HEAD_THRESHOLD
                else "no iteration head emerges")
        title = f"{model_name + ': ' if model_name else ''}{what} during training"
    steps = [p["step"] for p in points]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("accuracy_mean", "test accuracy (mean over lengths)"),
                       ("first_mean", "first-attention peakiness (to <eoi>)"),
                       ("iteration_mean", "iteration-head peakiness (L+t -> x_t)")):
        values = [np.nan if p.get(key) is None else p[key] for p in points]
        if not np.all(np.isnan(values)):  # a run logged without head scores has accuracy only
            ax.plot(steps, values, marker="." if len(points) < 60 else None, label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel("accuracy / attention weight")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x


def analyze(model, task, lengths=None, n: int = 256, out: str = "analysis", run_dir: str | None = None,
            seed: int = 0, plot_lengths=None, modes=ABLATION_MODES, batch_size: int = 512,
            progress: bool = True, labels=None, model_name: str = "model") -> dict:
    """Everything at once: accuracy, head scores and labels, attention maps, ablations and (with
    ``run_dir``) the emergence plot; writes ``analysis.json`` and ``analysis.md`` into ``out``.

    ``task``: a name or :class:`tasks.Task`; ``lengths`` default to ``1 … min(16, context)``;
    ``plot_lengths`` (default: the longest) get an ``attention_L{L}.png``; ``modes`` are ablation
    modes (empty: no ablation). Returns the report dict.
    """
    for mode in modes:
        _check_mode(mode, need_mean=False)
    spec = tasks.make_task(task) if isinstance(task, str) else task
    check_model(model, spec)
    lengths = check_lengths(model, lengths or range(1, min(16, max_length(model)) + 1))
    plot_lengths = check_lengths(model, plot_lengths or [lengths[-1]])
    os.makedirs(out, exist_ok=True)
    rows = sample_rows(spec, set(lengths) | set(plot_lengths), n, seed)
    eval_rows = {L: rows[L] for L in lengths}

    res = evaluate_lengths(model, eval_rows, batch_size)
    iteration, eoi = find_iteration_heads(res), find_eoi_heads(res)
    averages = {k: _average_score(res, k) for k in res["heads"][lengths[0]]}  # (n_layer, n_head) each
    heads = []
    for l in range(model.config.n_layer):
        for h in range(model.config.n_head):
            tags = (["iteration head"] if (l, h) in iteration else []) + (["attends to <eoi>"] if (l, h) in eoi else [])
            heads.append({"layer": l, "head": h, "labels": tags, **{k: float(v[l, h]) for k, v in averages.items()}})
    report = {
        "model": model_name, "task": spec.name, "lengths": lengths, "n_per_length": res["n"], "seed": seed,
        "threshold": HEAD_THRESHOLD, "detector_min_length": MIN_DETECT_LENGTH,
        "accuracy": res["accuracy"], "accuracy_mean": float(np.mean(list(res["accuracy"].values()))),
        "heads": heads, "iteration_heads": iteration, "eoi_heads": eoi,
        "head_scores_by_length": res["heads"], "figures": {},
    }
    for L in _progress(plot_lengths, progress, "attention maps"):
        name = f"attention_L{L}.png"
        plot_attention(model, rows[L], os.path.join(out, name), labels=labels)
        report["figures"][f"attention_L{L}"] = name
    if modes:
        report["ablation"] = ablation_study(model, eval_rows, modes, batch_size, progress)
    if run_dir:
        points = training_curve(run_dir, spec, lengths, min(n, 64), seed, batch_size=batch_size, progress=progress)
        plot_training(points, os.path.join(out, "emergence.png"), model_name=model_name)
        report["training"] = points
        report["figures"]["emergence"] = "emergence.png"
    report = _jsonable(report)
    with open(os.path.join(out, "analysis.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(out, "analysis.md"), "w") as f:
        f.write(_markdown(report))
    return report


def _markdown(r: dict) -> str:
    lines = [f"# Iteration-head analysis: {r['model']} on {r['task']}", "",
             f"Teacher-forced sequence accuracy over lengths {r['lengths'][0]}–{r['lengths'][-1]}: "
             f"**{r['accuracy_mean']:.3f}** (mean over lengths; up to {max(r['n_per_length'].values())} "
             f"sequences per length, seed {r['seed']}).", "",
             "| length | " + " | ".join(str(L) for L in r["lengths"]) + " |",
             "|---|" + "---|" * len(r["lengths"]),
             "| accuracy | " + " | ".join(f"{r['accuracy'][str(L)]:.2f}" for L in r["lengths"]) + " |", "",
             "## Heads", "",
             f"Layers and heads count from 0. Scores averaged over lengths ≥ {r['detector_min_length']}; "
             f"a head is labelled when its score is ≥ {r['threshold']}.", "",
             "| layer | head | to `<eoi>` | iteration | iteration > 0.5 | invariance | label |",
             "|---|---|---|---|---|---|---|"]
    for h in r["heads"]:
        lines.append(f"| {h['layer']} | {h['head']} | {h['first_mean']:.3f} | {h['iteration_mean']:.3f} | "
                     f"{h['iteration_frac']:.3f} | {h['iteration_invariance']:.3f} | "
                     f"{', '.join(lab.replace('<eoi>', '`<eoi>`') for lab in h['labels']) or '–'} |")
    found = ", ".join(f"layer {l} head {h}" for l, h in r["iteration_heads"]) or "none"
    lines += ["", f"Iteration heads: **{found}**.", ""]
    if "ablation" in r:
        ab = r["ablation"]
        modes = list(next(iter(ab["components"].values())).keys()) if ab["components"] else []
        lines += ["## Ablations", "",
                  f"Mean teacher-forced accuracy {ab['baseline']['mean']:.3f} without ablation; "
                  "accuracy (drop) with one component knocked out:", "",
                  "| component | " + " | ".join(f"{m} ablation" for m in modes) + " |",
                  "|---|" + "---|" * len(modes)]
        for name, per_mode in ab["components"].items():
            lines.append(f"| {name} | " + " | ".join(
                f"{per_mode[m]['mean']:.3f} ({per_mode[m]['drop']:+.3f})" for m in modes) + " |")
        lines.append("")
    if r["figures"]:
        lines += ["## Figures", ""] + [f"![{k}]({v})" for k, v in r["figures"].items()] + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
class CheckpointError(ValueError):
    """A model that cannot be loaded: missing folder, Hub id while offline, damaged config or weights,
    or model code that would run without ``trust_remote_code``. The message names the path and the fix."""


def _register_local_code() -> bool:
    """``import modeling`` (the installed package) registers IterGPT with the Auto classes, so the
    project's checkpoints load without running code from the checkpoint. False when absent."""
    try:
        import modeling  # noqa: F401
    except ImportError:
        return False
    return hasattr(modeling, "IterGPTConfig")


def _is_this_folder(path: str) -> bool:
    """``path`` is the folder this file was shipped in: its model code is no more foreign than the
    analysis code already running (``python analysis.py --model .`` next to a checkpoint)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.isdir(path) and os.path.samefile(path, here) and os.path.isfile(os.path.join(here, "modeling_itergpt.py"))


def check_release_manifest(path: str) -> None:
    """A released folder carries ``manifest.json`` (size and sha256 of every file, written by the
    release; ``python -m model_cards.verify`` checks all of it): the files a model is loaded from
    (config, weights, tokenizer) must match it, so a tampered or half-copied release is refused, not
    evaluated. Folders without a manifest (``runs/<name>/final``) are not releases: nothing to check."""
    manifest = os.path.join(path, "manifest.json")
    if not os.path.isfile(manifest):
        return
    try:
        with open(manifest, encoding="utf-8") as f:
            doc = json.load(f)
        recorded = {**doc.get("added_at_upload", {}), **doc["files"]}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{manifest} is damaged ({err}): download the model again") from None
    import hashlib

    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "generation_config.json"):
        file, want = os.path.join(path, name), recorded.get(name)
        if want is None or not os.path.isfile(file):
            continue
        # datasets_builders.files.sha256_file, restated: this script ships alone with every checkpoint.
        digest = hashlib.sha256()
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if os.path.getsize(file) != want.get("bytes") or digest.hexdigest() != want.get("sha256"):
            raise CheckpointError(f"{file} differs from the release's manifest.json (sha256): the folder was "
                                  "changed after its release; download it again, or re-record a deliberate "
                                  f"change with python -m model_cards.verify {path} --write")


def check_checkpoint_files(path: str) -> None:
    """Raise :class:`CheckpointError` when ``path`` is not a loadable model: a local folder needs a
    JSON ``config.json`` and undamaged ``model.safetensors``; anything else must be a Hub id
    (``org/name``) and the Hub must be reachable (not ``HF_HUB_OFFLINE``)."""
    if os.path.isdir(path):
        config = os.path.join(path, "config.json")
        if not os.path.isfile(config):
            raise CheckpointError(f"model folder {path!r} has no config.json: give a folder written by "
                                  "save_pretrained (e.g. runs/parity/final)")
        try:
            with open(config, encoding="utf-8") as f:
                json.load(f)
        except (ValueError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{config} is not valid JSON ({err}): restore the file or re-save the model") from None
        weights = os.path.join(path, "model.safetensors")
        if os.path.isfile(weights):
            from safetensors import safe_open

            try:
                with safe_open(weights, "pt") as f:
                    f.keys()
            except Exception as err:  # noqa: BLE001 - safetensors raises its own error type
                raise CheckpointError(f"{weights} is damaged or truncated ({err}): copy or download it again") from None
        check_release_manifest(path)
        return
    if os.path.exists(path):
        raise CheckpointError(f"model path {path!r} is a file: give the model folder that holds config.json")
    parts = path.split("/")
    if path.startswith((".", "/", "~")) or len(parts) > 2 or not all(parts):
        raise CheckpointError(f"model folder {path!r} does not exist: check the path")
    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(path, "config.json"), str):
        raise CheckpointError(f"model {path!r} is not a local folder nor in the Hugging Face cache, and "
                              "HF_HUB_OFFLINE=1 forbids downloading it from the Hub: check the path, or unset "
                              "HF_HUB_OFFLINE with network access")


def check_device(device: str | None) -> str:
    """``device``, or cuda when available and cpu otherwise; ``ValueError`` for one torch cannot use."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {device!r} is not a torch device: give cpu, cuda or cuda:0") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA GPU is available here: drop --device or pass --device cpu")
    return device


def load_model(path: str, device: str | None = None, trust_remote_code: bool = False):
    """A checkpoint folder or Hub id, through ``AutoModelForCausalLM``.

    IterGPT checkpoints load with the installed ``modeling`` package, without running code shipped
    with the checkpoint; ``trust_remote_code=True`` (the commands' ``--trust_remote_code``) runs the
    checkpoint's own ``modeling_itergpt.py``: only for a source you trust. Next to a checkpoint
    (``python analysis.py --model .``), the folder's own code is used. Raises
    :class:`CheckpointError` with the path and the fix when the model cannot be loaded.
    """
    from transformers import AutoModelForCausalLM

    check_checkpoint_files(path)
    local = _register_local_code()
    trust = bool(trust_remote_code) or _is_this_folder(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust)
    except Exception as err:  # noqa: BLE001 - transformers raises many types: one message for all
        if "trust_remote_code" in str(err):
            hint = "" if local else " (or install this project, pip install -e <repository>, so IterGPT loads without it)"
            raise CheckpointError(f"model {path!r} ships its own Python code (config auto_map); pass "
                                  f"--trust_remote_code only if you trust its source{hint}") from None
        raise CheckpointError(f"model {path!r} could not be loaded: {type(err).__name__}: {err}") from None
    return model.to(device or "cpu").eval()


def _load_labels(path: str):
    """id -> token text from the checkpoint's tokenizer when it has one, else the task vocabulary."""
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        vocab = tok.convert_ids_to_tokens(list(range(len(tok))))
        if len(vocab) >= tasks.VOCAB_SIZE and all(isinstance(v, str) for v in vocab):
            return lambda i: vocab[i]
    except Exception:  # no tokenizer shipped: the task vocabulary names the ids
        pass
    return None


def _saved_data(path: str) -> dict:
    """``train_config.data`` of the run that trained the checkpoint (its ``training_info.json``), or {}."""
    info = os.path.join(path, "training_info.json") if os.path.isdir(path) else ""
    if not os.path.isfile(info):
        return {}
    try:
        with open(info, encoding="utf-8") as f:
            data = json.load(f).get("train_config", {}).get("data", {})
    except (OSError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{info} is damaged ({err}): restore it or delete it") from None
    return data if isinstance(data, dict) else {}


def check_task_matches(path: str, task: str, modulus: int | None) -> int:
    """The modulus to analyse with; :class:`CheckpointError` when the checkpoint's run contradicts
    the request (another task, another modulus, or no chain of thought: the head scores are defined
    on chain-of-thought positions)."""
    data = _saved_data(path)
    trained = data.get("task")
    allowed = ("copy", data.get("mix_with", "parity")) if trained == "mix" else (trained,)
    if trained and task not in allowed:
        raise CheckpointError(f"--task {task}: {path} was trained on {trained!r} (training_info.json): "
                              f"pass --task {allowed[-1]}")
    if data.get("cot") is False:
        raise CheckpointError(f"{path} was trained without chain of thought (training_info.json: cot=false); "
                              "the head scores are defined on chain-of-thought rows, so this analysis does not apply")
    saved = data.get("modulus") if task == "polynomial" else None
    if saved is not None and modulus is not None and modulus != saved:
        raise CheckpointError(f"--modulus {modulus}: {path} was trained with modulus {saved}: drop --modulus "
                              f"or pass --modulus {saved}")
    return modulus or saved or tasks.DEFAULT_MODULUS


def _check_out(out: str) -> set:
    """The entries already in ``out`` (made when missing); ``OSError`` when it cannot take files."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise NotADirectoryError(20, "is a file, not a folder", out)
    os.makedirs(out, exist_ok=True)
    import tempfile

    with tempfile.TemporaryFile(dir=out):
        pass
    return set(os.listdir(out))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        prog="analysis.py", description="Find iteration heads in an IterGPT checkpoint: accuracy per length, "
        "head scores and labels, attention maps, head/MLP ablations and the emergence plot of a training run.")
    parser.add_argument("--model", required=True, help="checkpoint folder or Hub id")
    parser.add_argument("--trust_remote_code", action="store_true",
                        help="run the Python code shipped with the model (only for a source you trust); "
                             "not needed for IterGPT checkpoints when this project is installed")
    parser.add_argument("--task", required=True, help="task the model was trained on: copy, parity, polynomial, "
                        "a family of tasks.FAMILIES (cyclic5, symmetric5, ...) or a .json/.yaml task file")
    parser.add_argument("--lengths", default=None, help="input lengths, e.g. 1-16 or 1,2,8 (default: 1 to "
                        "min(16, longest that fits the context))")
    parser.add_argument("--n", type=int, default=256, help="random sequences per length (default 256)")
    parser.add_argument("--out", default="analysis", help="output folder (default analysis/)")
    parser.add_argument("--run", default=None, help="training run folder (metrics.jsonl or snapshots/step_<N>/) "
                        "for the emergence plot")
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation sequences")
    parser.add_argument("--modulus", type=int, default=None,
                        help=f"modulus p of polynomial iteration (default: the run's, else {tasks.DEFAULT_MODULUS})")
    parser.add_argument("--plot-lengths", default=None, help="lengths with an attention map (default: the longest)")
    parser.add_argument("--ablation", default="zero,mean", help="ablation modes: zero,mean | zero | mean | none")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    try:
        tasks.make_task(args.task)  # an unknown task is a usage error, as it was with fixed choices
    except ValueError as err:
        parser.error(f"--task: {err}")
    if args.n < 1:
        parser.error("--n must be at least 1")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    modes = () if args.ablation == "none" else tuple(m for m in args.ablation.split(",") if m)
    for mode in modes:
        _check_mode(mode, need_mean=False)
    lengths = parse_lengths(args.lengths) if args.lengths else None
    plot_lengths = parse_lengths(args.plot_lengths) if args.plot_lengths else None
    modulus = check_task_matches(args.model, args.task, args.modulus)
    task = tasks.make_task(args.task, modulus)
    if args.run and not os.path.isdir(args.run):
        raise ValueError(f"--run {args.run!r} is not a folder: give the training run folder (with metrics.jsonl)")
    device = check_device(args.device)
    model = load_model(args.model, device, args.trust_remote_code)
    before = _check_out(args.out)
    try:
        report = analyze(model, task, lengths, args.n, args.out, args.run, args.seed, plot_lengths, modes,
                         args.batch_size, not args.quiet, _load_labels(args.model), args.model)
    except OSError:
        for name in set(os.listdir(args.out)) - before:  # what this run wrote: no half-written report
            os.remove(os.path.join(args.out, name))
        raise
    heads = ", ".join(f"layer {l} head {h}" for l, h in report["iteration_heads"]) or "none"
    print(f"accuracy (mean over lengths) {report['accuracy_mean']:.4f}; iteration heads: {heads}; "
          f"report in {os.path.join(args.out, 'analysis.md')}")
    return report


def cli(argv=None) -> int:
    """The command line: 0, or 1 after one line ``error: ...`` on stderr."""
    try:
        main(argv)
    except OSError as err:  # the output folder: a file, read-only, full
        print(f"error: cannot write the report to {err.filename or 'the output folder'}: "
              f"{err.strerror or err}: choose another --out or free space", file=sys.stderr)
        return 1
    except ValueError as err:  # bad arguments, a model that cannot be loaded
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    status = cli()
    if status:  # run_path-friendly: a success returns normally
        sys.exit(status)
