"""What the interactive explorer computes (``hub/iteration-head-explorer/app.py`` only lays it out).

Kept free of Gradio so it is tested without a browser and so the Space runs the released code:
every score, ablation and accuracy comes from :mod:`modeling.analysis` and
:mod:`modeling.evaluation`; inputs and rows from :mod:`datasets_builders.tasks`. This module adds
what a person needs to *look*: a catalogue of the released folders (``hub/<name>`` and the
``step{N}`` snapshots in ``hub/revisions/<name>/``), input parsing with messages instead of
tracebacks, the generated chain marked right/wrong per state, and figures (matplotlib ``Figure``
objects, never pyplot state, so concurrent requests do not share a figure).

Errors a user can cause are :class:`InputError` (a ``ValueError``) whose text says what to do.
"""

from __future__ import annotations

import functools
import html
import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from datasets_builders import tasks

from . import analysis, evaluation
from .construction import build_iteration_head_model

__all__ = [
    "CONSTRUCTION",
    "MAIN",
    "InputError",
    "Catalogue",
    "Selection",
    "find_catalogue",
    "parse_input",
    "random_input",
    "fit_input",
    "select",
    "components",
    "default_component",
    "Exploration",
    "explore",
    "chain_html",
    "attention_figure",
    "scores_markdown",
    "ablate",
    "ablation_figure",
    "ablation_markdown",
    "emergence",
]

CONSTRUCTION = "hand-built construction"  # the model option built by modeling/construction.py
MAIN = "main"  # the final weights of a released folder (its Hub revision name)
MEAN_N = 256  # inputs averaged by the "mean over many inputs" view (all of them when fewer exist)
ABLATION_N = 64  # inputs per length for an ablation (enough for accuracies to 1/64)


class InputError(ValueError):
    """Something the user chose or typed is not usable; the message says what to do instead."""


# The cached models are shared by every request of the app, and an ablation hooks into the model
# it runs (run_with_hooks) while generate() swaps its generation config: one computation at a time.
_MODEL_LOCK = threading.RLock()


def _serialized(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _MODEL_LOCK:
            return fn(*args, **kwargs)
    return wrapper


# ---------------------------------------------------------------------------------------------
# The released folders
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Catalogue:
    """Released models under one folder: ``models[name] = path`` and
    ``revisions[name] = {step: path}`` (from ``<root>/revisions/<name>/step<N>``)."""

    root: str
    models: dict
    revisions: dict

    @property
    def choices(self) -> list[str]:
        return list(self.models) + [CONSTRUCTION]

    def revision_choices(self, name: str) -> list[str]:
        return [MAIN] + [f"step{s}" for s in sorted(self.revisions.get(name, {}))]


def _is_model_folder(path: str) -> bool:
    try:
        with open(os.path.join(path, "config.json")) as f:
            return json.load(f).get("model_type") == "itergpt"
    except (OSError, ValueError):
        return False


def _steps(folder: str) -> dict[int, str]:
    found = {}
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            m = re.fullmatch(r"step(\d+)", name)
            if m and _is_model_folder(os.path.join(folder, name)):
                found[int(m.group(1))] = os.path.join(folder, name)
    return dict(sorted(found.items()))


def find_catalogue(root: str) -> Catalogue:
    """Every IterGPT folder directly under ``root`` (the release layout of ``model_cards.release``)."""
    if not os.path.isdir(root):
        raise InputError(f"models folder {root!r} does not exist: pass the release folder, e.g. --models hub")
    names = sorted(n for n in os.listdir(root) if _is_model_folder(os.path.join(root, n)))
    if not names:
        raise InputError(f"models folder {root!r} holds no IterGPT model (a sub-folder with config.json of "
                         f"model_type 'itergpt'): pass the release folder, e.g. --models hub")
    models = {n: os.path.join(root, n) for n in names}
    revisions = {n: s for n in names if (s := _steps(os.path.join(root, "revisions", n)))}
    return Catalogue(os.path.abspath(root), models, revisions)


# ---------------------------------------------------------------------------------------------
# Models (cached: a released model loads once per process)
# ---------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _load(path: str):
    return analysis.load_model(path)


@functools.lru_cache(maxsize=8)
def _construction(task_name: str):
    return build_iteration_head_model(task_name)


@functools.lru_cache(maxsize=64)
def _settings(path: str) -> dict:
    return evaluation.find_run_settings(_load(path), path)


@dataclass(frozen=True)
class Selection:
    """A loaded model with what the explorer needs to know about it."""

    model: object
    label: str  # e.g. "iteration-head-parity @ step1000"
    path: str | None  # its folder (None for the construction)
    cot: bool
    trained_task: str | None


def select(catalogue: Catalogue | None, name: str, revision: str = MAIN, task: str = "parity") -> Selection:
    """The model called ``name`` (a catalogue entry, or :data:`CONSTRUCTION` for ``task``, which
    needs no catalogue) at ``revision``."""
    if name == CONSTRUCTION:
        return Selection(_construction(_task(task).name), f"{CONSTRUCTION} ({task})", None, True, task)
    if name not in catalogue.models:
        raise InputError(f"model {name!r} is unknown: choose one of {', '.join(catalogue.choices)}")
    revision = revision or MAIN
    if revision == MAIN:
        path = catalogue.models[name]
    else:
        m = re.fullmatch(r"step(\d+)", str(revision))
        steps = catalogue.revisions.get(name, {})
        if not m or int(m.group(1)) not in steps:
            raise InputError(f"revision {revision!r} of {name} is unknown: choose one of "
                             f"{', '.join(catalogue.revision_choices(name))}")
        path = steps[int(m.group(1))]
    settings = _settings(catalogue.models[name])  # the final folder holds the run files
    label = name if revision == MAIN else f"{name} @ {revision}"
    return Selection(_load(path), label, path, settings.get("cot", True), settings.get("task"))


def components(selection: Selection) -> list[str]:
    """Names of the heads and MLPs that can be ablated: ``L{l}H{h}``, ``L{l}MLP``."""
    return [name for name, _, _ in analysis._components(selection.model)]


def default_component(parts: list[str]) -> str:
    """The last head of the last layer: the iteration head of a 2-layer model."""
    return next((p for p in reversed(parts) if not p.endswith("MLP")), parts[-1])


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
def _task(name: str) -> tasks.Task:
    try:
        return tasks.make_task(name)  # the paper's tasks, every family, a task file
    except ValueError as err:
        raise InputError(str(err)) from None


def _words(text) -> list[str]:
    return [w for w in re.split(r"[\s,]+", str(text or "").strip()) if w]


def parse_input(text: str, task: tasks.Task, longest: int) -> np.ndarray:
    """The inputs ``x_1 … x_L`` typed as values separated by spaces or commas (``1 0 1 1``; a
    binary task also takes ``1011``). Returns ``(L,)`` int64; :class:`InputError` says what is wrong."""
    ids = {tasks.token_text(i): i for i in task.input_values}  # the word of a value (id 64 is "57")
    allowed = " ".join(ids)
    words = _words(text)
    if len(words) == 1 and max(task.input_values) < 10 and re.fullmatch(r"\d{2,}", words[0]):
        words = list(words[0])  # "1011" for a binary task
    if not words:
        raise InputError(f"the input is empty: type values of {task.name} ({allowed}) separated by spaces, "
                         f"or draw a random input")
    bad = [w for w in words if w not in ids]
    if bad:
        hint = " (type the inputs only: the explorer adds <task> and <eoi>)" if any("<" in w for w in bad) else ""
        raise InputError(f"{', '.join(repr(w) for w in bad[:5])} {'is' if len(bad) == 1 else 'are'} not "
                         f"{task.name} input{'s' if len(bad) > 1 else ''}: its values are {allowed}{hint}")
    if len(words) > longest:
        raise InputError(f"the input has {len(words)} values but the model's context fits at most {longest} "
                         f"(a row of length L needs {tasks.row_length(len(words))} positions): shorten it")
    return np.array([ids[w] for w in words], dtype=np.int64)


def random_input(task_name: str, length, longest: int, seed: int | None = None) -> str:
    """A random input of ``length`` values as text (what :func:`parse_input` reads)."""
    task = _task(task_name)
    try:
        length = int(length)
    except (TypeError, ValueError):
        raise InputError(f"length {length!r} is not a whole number: choose 1 to {longest}") from None
    if not 1 <= length <= longest:
        raise InputError(f"length {length} is out of range: the model's context fits 1 to {longest}")
    rng = np.random.default_rng(seed)
    return " ".join(tasks.token_text(v) for v in tasks.sample_inputs(task, length, 1, rng)[0])


def fit_input(text: str, task_name: str, longest: int, seed: int | None = None) -> str:
    """``text`` when it is an input of the task, else a random input of as many values (at most
    ``longest``): what the page keeps when the model, and with it the task, changes."""
    try:
        parse_input(text, _task(task_name), longest)
        return text
    except InputError:
        return random_input(task_name, min(max(len(_words(text)), 1), longest), longest, seed)


# ---------------------------------------------------------------------------------------------
# One input: the generated chain, the attention of every head, the head scores
# ---------------------------------------------------------------------------------------------
@dataclass
class Exploration:
    """What one interaction shows: the chain (HTML), the attention figure and the scores (Markdown)."""

    chain_html: str
    figure: Figure
    scores_markdown: str
    right: int  # states (and the closing <eos>) generated right
    total: int


def _chain(selection: Selection, task: tasks.Task, inputs: np.ndarray) -> tuple[np.ndarray, list[int], list[int]]:
    """The reference row, the greedy answer (tokens after ``<eoi>``) and the reference answer."""
    row = tasks.build_rows(task, inputs[None], selection.cot)[0]
    answer = evaluation.generate_answers(selection.model, [row])[0]  # padded to the reference length
    return row, [int(t) for t in answer], row[evaluation.answer_slice(len(inputs))].tolist()


def chain_html(row: np.ndarray, answer: list[int], reference: list[int], length: int) -> tuple[str, int]:
    """The prompt, then every generated token green when right, red (with the right one) when wrong."""
    def span(cls, text, title=""):
        return f'<span class="tok {cls}" title="{html.escape(title)}">{html.escape(text)}</span>'

    prompt = [span("prompt", tasks.token_text(t)) for t in row[:tasks.eoi_position(length) + 1]]
    cells, right = [], 0
    for i, (got, want) in enumerate(zip(answer, reference)):
        name = "<eos>" if want == tasks.EOS_ID else f"s{i + 1}" if len(reference) > 2 else f"s{length}"
        if got == want:
            right += 1
            cells.append(span("right", tasks.token_text(got), f"{name}: right"))
        else:
            cells.append(span("wrong", f"{tasks.token_text(got)}≠{tasks.token_text(want)}",
                              f"{name}: generated {tasks.token_text(got)}, the task gives {tasks.token_text(want)}"))
    verdict = "all right" if right == len(reference) else f"{len(reference) - right} wrong"
    summary = f'<div class="verdict">{right}/{len(reference)} generated tokens right ({verdict})</div>'
    return f'<div class="chain">{" ".join(prompt + cells)}</div>{summary}', right


def _outline(ax, length: int, cot: bool) -> None:
    """The ``<eoi>`` column (its chain-of-thought queries) and the iteration diagonal ``L+t -> t``."""
    e = tasks.eoi_position(length)
    last = 2 * length + 1 if cot else length + 2  # the last query that writes an answer token
    ax.add_patch(Rectangle((e - 0.5, e + 0.5), 1, last - e, fill=False, ec="white", lw=1.4, ls="--"))
    if cot:
        for t in range(1, length + 1):
            ax.add_patch(Rectangle((t - 0.5, e - 1 + t - 0.5), 1, 1, fill=False, ec="red", lw=1.2))


def attention_figure(patterns: np.ndarray, labels: list[str], length: int, cot: bool, title: str) -> Figure:
    """Every (layer, head) of ``patterns`` ``(n_layer, n_head, T, T)`` with token labels (a column
    per layer, a row per head), the ``<eoi>`` column outlined (dashed white: the chain-of-thought
    queries that the first score averages) and the iteration diagonal ``L+t -> t`` (red squares).

    Axes are placed in inches, not by a layout engine: constrained layout draws the figure twice
    and was half of the time of an interaction."""
    n_layer, n_head, T, _ = patterns.shape
    font = max(4, min(9, 220 // T))
    margin = 0.4 + max(len(t) for t in labels) * font * 0.62 / 72  # room for the tick labels, inches
    panel, left, gap, bottom, top, bar = 1.2 + 0.12 * T, margin, margin + 0.15, margin, 0.55, 0.9
    width, height = left + n_layer * panel + (n_layer - 1) * gap + bar, bottom + n_head * (panel + top)
    fig = Figure(figsize=(width, height))
    for l in range(n_layer):
        for h in range(n_head):
            x, y = left + l * (panel + gap), bottom + (n_head - 1 - h) * (panel + top)
            ax = fig.add_axes((x / width, y / height, panel / width, panel / height))
            im = ax.imshow(patterns[l, h], vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
            _outline(ax, length, cot)
            ax.set_title(f"layer {l} head {h}", fontsize=9)
            ax.set_xticks(range(T), labels, rotation=90, fontsize=font)
            ax.set_yticks(range(T), labels, fontsize=font)
            ax.set_xlabel("key", fontsize=8, labelpad=1)
            ax.set_ylabel("query", fontsize=8, labelpad=1)
    cax = fig.add_axes(((width - bar + 0.25) / width, bottom / height, 0.12 / width, panel / height))
    fig.colorbar(im, cax=cax, label="attention weight")
    fig.suptitle(title, fontsize=10, y=1 - 0.08 / height, va="top")
    return fig


def scores_markdown(scores: dict | None, n: int) -> str:
    """The head scores of :func:`analysis.head_scores` as a table, with the detector's labels."""
    if scores is None:
        return "Head scores need a chain of thought: this model answers with s_L only."
    rows = ["| layer | head | to `<eoi>` | iteration (L+t → t) | invariance | label |", "|---|---|---|---|---|---|"]
    for l, h in np.ndindex(*scores["first_mean"].shape):
        tags = [t for t, k in (("iteration head", "iteration_mean"), ("attends to `<eoi>`", "first_mean"))
                if scores[k][l, h] >= analysis.HEAD_THRESHOLD]
        inv = f"{scores['iteration_invariance'][l, h]:.3f}" if n > 1 else "–"
        rows.append(f"| {l} | {h} | {scores['first_mean'][l, h]:.3f} | {scores['iteration_mean'][l, h]:.3f} | "
                    f"{inv} | {', '.join(tags) or '–'} |")
    what = "this input" if n == 1 else f"the mean over {n} distinct random inputs of this length"
    return f"Head scores on {what} (label when ≥ {analysis.HEAD_THRESHOLD}):\n\n" + "\n".join(rows)


@_serialized
def explore(selection: Selection, task_name: str, text: str, mean: bool = False, seed: int = 0) -> Exploration:
    """One interaction: generate the chain for the typed input, and draw the attention of every
    head (on that input, or averaged over :data:`MEAN_N` random inputs of its length)."""
    task = _task(task_name)
    inputs = parse_input(text, task, analysis.max_length(selection.model, selection.cot))
    L = len(inputs)
    row, answer, reference = _chain(selection, task, inputs)
    chain, right = chain_html(row, answer, reference, L)
    if mean:
        rows = analysis.sample_rows(task, [L], MEAN_N, seed, selection.cot)[L]
        labels = analysis._generic_labels(L, selection.cot)
    else:
        rows, labels = row[None], [tasks.token_text(t) for t in row]
    patterns = analysis.attention_patterns(selection.model, rows)  # (N, n_layer, n_head, T, T)
    scores = analysis.head_scores(patterns, L) if selection.cot else None
    what = f"mean of {len(rows)} inputs" if mean else "this input, teacher forced"
    figure = attention_figure(patterns.mean(0).numpy(), labels, L, selection.cot,
                              f"{selection.label}: attention at length {L} ({what})")
    return Exploration(chain, figure, scores_markdown(scores, len(rows)), right, len(reference))


# ---------------------------------------------------------------------------------------------
# Ablation: one head or MLP knocked out, accuracy per length
# ---------------------------------------------------------------------------------------------
@_serialized
def ablate(selection: Selection, task_name: str, component: str, mode: str = "zero", lengths: str = "1-16",
           n: int = ABLATION_N, seed: int = 0) -> dict:
    """Teacher-forced accuracy per length without and with ``component`` (``L{l}H{h}`` or
    ``L{l}MLP``) ablated (``zero`` or ``mean``). Returns ``{"baseline": {L: acc}, "ablated": {L: acc},
    "baseline_mean", "ablated_mean"}``."""
    model = selection.model
    known = {name: (layer, head) for name, layer, head in analysis._components(model)}
    if component not in known:
        raise InputError(f"component {component!r} is unknown: choose one of {', '.join(known)}")
    if mode not in analysis.ABLATION_MODES:
        raise InputError(f"mode {mode!r} is unknown: choose one of {', '.join(analysis.ABLATION_MODES)}")
    try:
        chosen = analysis.check_lengths(model, analysis.parse_lengths(lengths), selection.cot)
    except ValueError as err:
        raise InputError(str(err)) from None
    rows = analysis.sample_rows(_task(task_name), chosen, n, seed, selection.cot)
    layer, head = known[component]

    def hooks(L):
        mean = analysis.component_means(model, rows[L])[component] if mode == "mean" else None
        if head is None:
            return analysis.ablate_mlp(model, layer, mode, mean)
        return analysis.ablate_head(model, layer, head, mode, mean)

    base = analysis.evaluate_lengths(model, rows, with_heads=False, cot=selection.cot)["accuracy"]
    hit = analysis.evaluate_lengths(model, rows, with_heads=False, cot=selection.cot, fwd_hooks=hooks)["accuracy"]
    return {"baseline": base, "ablated": hit, "component": component, "mode": mode,
            "baseline_mean": float(np.mean(list(base.values()))), "ablated_mean": float(np.mean(list(hit.values())))}


def ablation_figure(result: dict, label: str) -> Figure:
    """Accuracy per length, without and with the ablation."""
    fig = Figure(figsize=(7, 3.2), layout="constrained")
    ax = fig.subplots()
    lengths = sorted(result["baseline"])
    ax.plot(lengths, [result["baseline"][L] for L in lengths], marker="o", label="no ablation")
    ax.plot(lengths, [result["ablated"][L] for L in lengths], marker="s",
            label=f"{result['component']} {result['mode']}-ablated")
    ax.set_xlabel("input length")
    ax.set_ylabel("sequence accuracy (teacher forced)")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(label, fontsize=10)
    return fig


def ablation_markdown(result: dict) -> str:
    drop = result["baseline_mean"] - result["ablated_mean"]
    return (f"Mean accuracy **{result['baseline_mean']:.3f} → {result['ablated_mean']:.3f}** "
            f"(drop {drop:+.3f}) with {result['component']} {result['mode']}-ablated.")


# ---------------------------------------------------------------------------------------------
# Emergence: the training history shipped in the folder, and the revisions along it
# ---------------------------------------------------------------------------------------------
def emergence(catalogue: Catalogue, name: str) -> tuple[str | None, list[str]]:
    """The emergence plot (PNG path, drawn by :func:`analysis.plot_training` from the ``training``
    points of the folder's ``analysis.json``) and the revisions along it, final last."""
    if name == CONSTRUCTION or name not in catalogue.models:
        return None, []
    revisions = catalogue.revision_choices(name)[1:] + [MAIN]
    return _emergence_png(catalogue.models[name]), revisions


@functools.lru_cache(maxsize=64)
def _emergence_png(folder: str) -> str | None:
    try:
        with open(os.path.join(folder, "analysis.json")) as f:
            points = json.load(f).get("training") or []
    except (OSError, ValueError):
        return None
    if not points:
        return None
    out = os.path.join(tempfile.mkdtemp(prefix="explorer-"), "emergence.png")
    return analysis.plot_training(points, out, title=f"{os.path.basename(folder)}: emergence")
