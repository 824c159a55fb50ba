"""What the interactive explorer computes (``hub/iteration-head-explorer/app.py`` only lays it out).

Kept free of Gradio so it is tested without a browser and so the Space runs the released code:
every score, ablation and accuracy comes from :mod:`modeling.analysis` and
:mod:`modeling.evaluation`; inputs and rows from :mod:`datasets_builders.tasks`. This module adds
what a person needs to *look*: a catalogue of the released folders (``hub/<name>`` and the
``step{N}`` snapshots in ``hub/revisions/<name>/``), input parsing with messages instead of
tracebacks, the generated chain marked right/wrong per state, the probability of every answer token,
activation patching, a direct logit attribution, accuracy per length beyond the training lengths
(:func:`extrapolate`), the emergence curve marked at a revision's step, and interactive figures
(plotly ``Figure`` objects: hover names the tokens and the value; matplotlib stays for the cards' PNGs).

Layers and heads are numbered from 1 on the page, as in the paper (``layer 2 head 1`` is the
iteration head of a 2-layer model; component names ``L2H1``, ``L1MLP``); the hook names of the model
(``blocks.1.attn.hook_z``) keep counting from 0.

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
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

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
    "training_lengths",
    "beyond_training",
    "extrapolate",
    "extrapolation_figure",
    "extrapolation_markdown",
    "input_length",
    "answer_probabilities",
    "probability_figure",
    "corrupt_input",
    "patch",
    "patching_figure",
    "patching_markdown",
    "logit_attribution",
    "attribution_figure",
    "attribution_markdown",
    "emergence",
    "emergence_points",
    "revision_step",
    "emergence_figure",
    "card",
]

CONSTRUCTION = "hand-built construction"  # the model option built by modeling/construction.py
MAIN = "main"  # the final weights of a released folder (its Hub revision name)
MEAN_N = 256  # inputs averaged by the "mean over many inputs" view (all of them when fewer exist)
ABLATION_N = 64  # inputs per length for an ablation (enough for accuracies to 1/64)
MIN_LOGIT_DIFFERENCE = 1e-3  # patching: positions whose clean and corrupted logit differences are closer are blank


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
    train_max_length: int | None = None  # the longest input length it was trained on (None: not trained)


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
    return Selection(_load(path), label, path, settings.get("cot", True), settings.get("task"),
                     settings.get("train_max_length"))


def training_lengths(selection: Selection) -> range | None:
    """The input lengths the model was trained on (``1 … train_max_length`` of its run files), or
    ``None`` when the folder does not say (and for the construction, which is not trained)."""
    return range(1, selection.train_max_length + 1) if selection.train_max_length else None


def beyond_training(selection: Selection, length: int) -> str:
    """``""`` for an input length the model was trained on, else a sentence saying it was not (the
    positions past the training rows never received a gradient): what the page shows above the chain."""
    trained = training_lengths(selection)
    if trained is None or length in trained:
        return ""
    return (f"length {length} is beyond the training lengths {trained.start}-{trained.stop - 1}: positions "
            f"never trained (the rows of length {trained.stop - 1} end at position "
            f"{tasks.row_length(trained.stop - 1, selection.cot) - 1}); the chain and maps below still show "
            f"what the model does")


def _name(layer: int, head: int | None) -> str:
    """A component's name on the page, counted from 1 as in the paper: ``L2H1``, ``L1MLP``."""
    return f"L{layer + 1}MLP" if head is None else f"L{layer + 1}H{head + 1}"


def _title(layer: int, head: int | None) -> str:
    return f"layer {layer + 1} MLP" if head is None else f"layer {layer + 1} head {head + 1}"


def _known(model) -> dict:
    """``{page name: (layer, head or None)}`` with layer and head counted from 0 (as the hooks)."""
    return {_name(layer, head): (layer, head) for _, layer, head in analysis._components(model)}


def components(selection: Selection) -> list[str]:
    """Names of the heads and MLPs (ablation, patching), counted from 1: ``L{l}H{h}``, ``L{l}MLP``."""
    return list(_known(selection.model))


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
    """What one interaction shows: the chain (HTML), the attention figure, the head scores
    (Markdown), and the probability of every answer token (a dict and its bar chart)."""

    chain_html: str
    figure: go.Figure
    scores_markdown: str
    right: int  # states (and the closing <eos>) generated right
    total: int
    probabilities: dict
    probability_figure: go.Figure
    note: str = ""  # beyond_training(): "" for a length the model was trained on


def _chain(selection: Selection, task: tasks.Task, inputs: np.ndarray) -> tuple[np.ndarray, list[int], list[int]]:
    """The reference row, the greedy answer (tokens after ``<eoi>``) and the reference answer."""
    row = tasks.build_rows(task, inputs[None], selection.cot)[0]
    answer = evaluation.generate_answers(selection.model, [row])[0]  # padded to the reference length
    return row, [int(t) for t in answer], row[evaluation.answer_slice(len(inputs))].tolist()


def _answer_names(reference: list[int], length: int) -> list[str]:
    """``s1 … sL <eos>`` (or ``sL <eos>`` without chain of thought)."""
    return ["<eos>" if want == tasks.EOS_ID else f"s{i + 1}" if len(reference) > 2 else f"s{length}"
            for i, want in enumerate(reference)]


def chain_html(row: np.ndarray, answer: list[int], reference: list[int], length: int) -> tuple[str, int]:
    """The prompt, then every generated token green when right, red (with the right one) when wrong."""
    def span(cls, text, title=""):
        return f'<span class="tok {cls}" title="{html.escape(title)}">{html.escape(text)}</span>'

    prompt = [span("prompt", tasks.token_text(t)) for t in row[:tasks.eoi_position(length) + 1]]
    cells, right = [], 0
    for name, got, want in zip(_answer_names(reference, length), answer, reference):
        if got == want:
            right += 1
            cells.append(span("right", tasks.token_text(got), f"{name}: right"))
        else:
            cells.append(span("wrong", f"{tasks.token_text(got)}≠{tasks.token_text(want)}",
                              f"{name}: generated {tasks.token_text(got)}, the task gives {tasks.token_text(want)}"))
    verdict = "all right" if right == len(reference) else f"{len(reference) - right} wrong"
    summary = f'<div class="verdict">{right}/{len(reference)} generated tokens right ({verdict})</div>'
    return f'<div class="chain">{" ".join(prompt + cells)}</div>{summary}', right


def _outline_shapes(length: int, cot: bool, xref: str, yref: str) -> list[dict]:
    """The ``<eoi>`` column (its chain-of-thought queries; dashed white) and the iteration diagonal
    ``L+t -> t`` (red squares), as plotly shapes on one panel."""
    e = tasks.eoi_position(length)
    last = 2 * length + 1 if cot else length + 2  # the last query that writes an answer token
    shapes = [dict(type="rect", xref=xref, yref=yref, x0=e - 0.5, x1=e + 0.5, y0=e + 0.5, y1=last + 0.5,
                   line=dict(color="white", width=1.5, dash="dash"))]
    if cot:
        shapes += [dict(type="rect", xref=xref, yref=yref, x0=t - 0.5, x1=t + 0.5, y0=e - 1 + t - 0.5,
                        y1=e - 1 + t + 0.5, line=dict(color="red", width=1.5)) for t in range(1, length + 1)]
    return shapes


def attention_figure(patterns: np.ndarray, labels: list[str], length: int, cot: bool, title: str,
                     roles: list[str] | None = None) -> go.Figure:
    """Every (layer, head) of ``patterns`` ``(n_layer, n_head, T, T)`` as an interactive heat map (a
    column per layer, a row per head, numbered from 1): hovering a cell names the query and the key
    (token and position) and the weight; drag to zoom. The ``<eoi>`` column (dashed white: the
    chain-of-thought queries that the first score averages) and the iteration diagonal ``L+t -> t``
    (red squares) are outlined. ``roles`` (``x1 … s1 …``) name the tokens in the hover text."""
    n_layer, n_head, T, _ = patterns.shape
    roles = roles or labels
    named = [f"{lab} (position {i})" if role == lab else f"{role} = {lab} (position {i})"
             for i, (role, lab) in enumerate(zip(roles, labels))]
    custom = np.empty((T, T, 2), dtype=object)  # [query, key] of each cell
    custom[:, :, 0] = np.array(named, dtype=object)[:, None]
    custom[:, :, 1] = np.array(named, dtype=object)[None, :]
    font = max(6, min(11, 300 // T))
    # Margins are fixed, not plotly's automargin: measuring every tick label again and again in a
    # large page was most of the time of drawing the figure in the browser (1.2-1.7 s).
    label = 0.62 * font * max(len(t) for t in labels) + 28  # room for the tick labels and the axis title, px
    fig = make_subplots(rows=n_head, cols=n_layer, horizontal_spacing=min(0.3, (label + 30) / 1100),
                        vertical_spacing=min(0.3, (label + 40) / (n_head * min(260 + 9 * T, 540))),
                        subplot_titles=[_title(l, h) for h in range(n_head) for l in range(n_layer)])
    for l in range(n_layer):
        for h in range(n_head):
            fig.add_trace(go.Heatmap(
                z=patterns[l, h], zmin=0, zmax=1, colorscale="Viridis", customdata=custom,
                colorbar=dict(title=dict(text="attention weight", side="right"), len=0.8),
                showscale=(l, h) == (0, 0), name=_title(l, h),
                hovertemplate="query %{customdata[0]}<br>key %{customdata[1]}<br>weight %{z:.3f}"
                              f"<extra>{_title(l, h)}</extra>"), row=h + 1, col=l + 1)
            k = h * n_layer + l + 1
            x, y = f"x{k if k > 1 else ''}", f"y{k if k > 1 else ''}"
            for shape in _outline_shapes(length, cot, x, y):
                fig.add_shape(**shape)
            common = dict(tickmode="array", tickvals=list(range(T)), ticktext=labels, tickfont=dict(size=font),
                          showgrid=False, zeroline=False, automargin=False, row=h + 1, col=l + 1)
            fig.update_xaxes(title_text="key", title_standoff=4, tickangle=-90, constrain="domain", **common)
            fig.update_yaxes(title_text="query", title_standoff=4, autorange="reversed", scaleanchor=x,
                             constrain="domain", **common)
    side = min(260 + 9 * T, 540)  # a panel's height, px (its width is what the page gives it, kept square)
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=n_head * side + 90 + label,
                      margin=dict(l=label + 10, r=10, t=70, b=label + 10), plot_bgcolor="white")
    return fig


def scores_markdown(scores: dict | None, n: int) -> str:
    """The head scores of :func:`analysis.head_scores` as a table (layers and heads from 1), with
    the detector's labels."""
    if scores is None:
        return "Head scores need a chain of thought: this model answers with s_L only."
    rows = ["| layer | head | to `<eoi>` | iteration (L+t → t) | invariance | label |", "|---|---|---|---|---|---|"]
    for l, h in np.ndindex(*scores["first_mean"].shape):
        tags = [t for t, k in (("iteration head", "iteration_mean"), ("attends to `<eoi>`", "first_mean"))
                if scores[k][l, h] >= analysis.HEAD_THRESHOLD]
        inv = f"{scores['iteration_invariance'][l, h]:.3f}" if n > 1 else "–"
        rows.append(f"| {l + 1} | {h + 1} | {scores['first_mean'][l, h]:.3f} | {scores['iteration_mean'][l, h]:.3f} | "
                    f"{inv} | {', '.join(tags) or '–'} |")
    what = "this input" if n == 1 else f"the mean over {n} distinct random inputs of this length"
    return f"Head scores on {what} (label when ≥ {analysis.HEAD_THRESHOLD}):\n\n" + "\n".join(rows)


def _device(model):
    return next(model.parameters()).device


@torch.no_grad()
def _probabilities(model, row: np.ndarray, length: int) -> dict:
    """Teacher-forced probability of the right token at every answer position of ``row``."""
    logits = model(input_ids=torch.as_tensor(row[None], device=_device(model)), use_cache=False).logits[0]
    probs = logits.float().softmax(-1).cpu().numpy()
    start = evaluation.answer_slice(length).start
    reference = [int(t) for t in row[start:]]
    at = [probs[p - 1] for p in range(start, len(row))]  # the logits at p - 1 predict the token at p
    return {"names": _answer_names(reference, length), "positions": list(range(start, len(row))),
            "right": [tasks.token_text(t) for t in reference],
            "p_right": [float(p[t]) for p, t in zip(at, reference)],
            "top": [tasks.token_text(int(p.argmax())) for p in at], "p_top": [float(p.max()) for p in at]}


def answer_probabilities(selection: Selection, task_name: str, text: str) -> dict:
    """The probability the model gives the right token at every answer position (``s_1 … s_L``,
    ``<eos>``), teacher forced on the task's row, and its most likely token there. Returns
    ``{"names", "positions", "right", "p_right", "top", "p_top"}`` (lists, one entry per position)."""
    task = _task(task_name)
    inputs = parse_input(text, task, analysis.max_length(selection.model, selection.cot))
    with _MODEL_LOCK:
        return _probabilities(selection.model, tasks.build_rows(task, inputs[None], selection.cot)[0], len(inputs))


def probability_figure(probs: dict, label: str) -> go.Figure:
    """A bar per answer position: the probability of the right token (green when it is also the
    most likely token, red when another one is; hover names both)."""
    right = [r == t for r, t in zip(probs["right"], probs["top"])]
    custom = [list(c) for c in zip(probs["right"], probs["top"], probs["p_top"], probs["positions"])]
    fig = go.Figure(go.Bar(
        x=probs["names"], y=probs["p_right"], customdata=custom, text=[f"{p:.2f}" for p in probs["p_right"]],
        textposition="outside", marker_color=["#16a34a" if ok else "#dc2626" for ok in right],
        hovertemplate="%{x} (position %{customdata[3]}): right token %{customdata[0]}, p = %{y:.4f}<br>"
                      "most likely %{customdata[1]}, p = %{customdata[2]:.4f}<extra></extra>"))
    fig.update_layout(title=dict(text=f"{label}: probability of the right token (teacher forced)", font=dict(size=13)),
                      yaxis=dict(range=[0, 1.15], title=dict(text="p(right token)", standoff=4), automargin=False),
                      xaxis=dict(type="category", tickangle=0, automargin=False),  # fixed margins: see attention_figure
                      height=260, margin=dict(l=60, r=10, t=40, b=30), plot_bgcolor="white")
    return fig


@_serialized
def explore(selection: Selection, task_name: str, text: str, mean: bool = False, seed: int = 0) -> Exploration:
    """One interaction: generate the chain for the typed input, the probability of every right
    answer token, and the attention of every head (on that input, or averaged over :data:`MEAN_N`
    random inputs of its length)."""
    task = _task(task_name)
    inputs = parse_input(text, task, analysis.max_length(selection.model, selection.cot))
    L = len(inputs)
    row, answer, reference = _chain(selection, task, inputs)
    chain, right = chain_html(row, answer, reference, L)
    probs = _probabilities(selection.model, row, L)
    if mean:
        rows = analysis.sample_rows(task, [L], MEAN_N, seed, selection.cot)[L]
        labels = analysis._generic_labels(L, selection.cot)
    else:
        rows, labels = row[None], [tasks.token_text(t) for t in row]
    patterns = analysis.attention_patterns(selection.model, rows)  # (N, n_layer, n_head, T, T)
    scores = analysis.head_scores(patterns, L) if selection.cot else None
    what = f"mean of {len(rows)} inputs" if mean else "this input, teacher forced"
    note = beyond_training(selection, L)
    figure = attention_figure(patterns.mean(0).numpy(), labels, L, selection.cot,
                              f"{selection.label}: attention at length {L} ({what})"
                              + (" — beyond the training lengths" if note else ""),
                              analysis._generic_labels(L, selection.cot))
    if note:
        chain = f'<div class="beyond">{html.escape(note)}</div>{chain}'
    return Exploration(chain, figure, scores_markdown(scores, len(rows)), right, len(reference), probs,
                       probability_figure(probs, selection.label), note)


def input_length(text: str, task_name: str) -> int | None:
    """How many values ``text`` holds (``1011`` counts 4 for a binary task); ``None`` when it is not
    an input of the task. The page keeps its "random length" box on it."""
    try:
        return len(parse_input(text, _task(task_name), 10 ** 6))
    except InputError:
        return None


# ---------------------------------------------------------------------------------------------
# Ablation: one head or MLP knocked out, accuracy per length
# ---------------------------------------------------------------------------------------------
def _component(model, component: str) -> tuple[int, int | None]:
    known = _known(model)
    if component not in known:
        raise InputError(f"component {component!r} is unknown: choose one of {', '.join(known)} "
                         f"(layers and heads count from 1)")
    return known[component]


@_serialized
def ablate(selection: Selection, task_name: str, component: str, mode: str = "zero", lengths: str = "1-16",
           n: int = ABLATION_N, seed: int = 0) -> dict:
    """Teacher-forced accuracy per length without and with ``component`` (``L{l}H{h}`` or
    ``L{l}MLP``, counted from 1) ablated (``zero`` or ``mean``). Returns ``{"baseline": {L: acc},
    "ablated": {L: acc}, "baseline_mean", "ablated_mean"}``."""
    model = selection.model
    layer, head = _component(model, component)
    if mode not in analysis.ABLATION_MODES:
        raise InputError(f"mode {mode!r} is unknown: choose one of {', '.join(analysis.ABLATION_MODES)}")
    try:
        chosen = analysis.check_lengths(model, analysis.parse_lengths(lengths), selection.cot)
    except ValueError as err:
        raise InputError(str(err)) from None
    rows = analysis.sample_rows(_task(task_name), chosen, n, seed, selection.cot)
    hook_name = f"L{layer}MLP" if head is None else f"L{layer}H{head}"  # analysis counts from 0

    def hooks(L):
        mean = analysis.component_means(model, rows[L])[hook_name] if mode == "mean" else None
        if head is None:
            return analysis.ablate_mlp(model, layer, mode, mean)
        return analysis.ablate_head(model, layer, head, mode, mean)

    base = analysis.evaluate_lengths(model, rows, with_heads=False, cot=selection.cot)["accuracy"]
    hit = analysis.evaluate_lengths(model, rows, with_heads=False, cot=selection.cot, fwd_hooks=hooks)["accuracy"]
    return {"baseline": base, "ablated": hit, "component": component, "mode": mode,
            "baseline_mean": float(np.mean(list(base.values()))), "ablated_mean": float(np.mean(list(hit.values())))}


def ablation_figure(result: dict, label: str) -> go.Figure:
    """Accuracy per length, without and with the ablation."""
    lengths = sorted(result["baseline"])
    fig = go.Figure([go.Scatter(x=lengths, y=[result["baseline"][L] for L in lengths], mode="lines+markers",
                                name="no ablation"),
                     go.Scatter(x=lengths, y=[result["ablated"][L] for L in lengths], mode="lines+markers",
                                name=f"{result['component']} {result['mode']}-ablated", marker_symbol="square")])
    fig.update_layout(title=dict(text=label, font=dict(size=13)), height=320, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_title="input length", yaxis=dict(title="sequence accuracy (teacher forced)",
                                                             range=[-0.03, 1.03]),
                      hovermode="x unified")
    return fig


def ablation_markdown(result: dict) -> str:
    drop = result["baseline_mean"] - result["ablated_mean"]
    return (f"Mean accuracy **{result['baseline_mean']:.3f} → {result['ablated_mean']:.3f}** "
            f"(drop {drop:+.3f}) with {result['component']} {result['mode']}-ablated.")


# ---------------------------------------------------------------------------------------------
# Beyond the training lengths: accuracy and the iteration score per length, up to the context
# ---------------------------------------------------------------------------------------------
HOLDS = 0.95  # extrapolation_markdown: "holds" up to the last length with at least this accuracy


@_serialized
def extrapolate(selection: Selection, task_name: str, n: int = ABLATION_N, seed: int = 0) -> dict:
    """Teacher-forced sequence accuracy (:func:`analysis.evaluate_lengths`, ``n`` random inputs per
    length) at every length from 1 to the longest that fits the context, and, with chain of thought,
    the iteration score (``L+t → t``) of the head that has the highest one at each length. Returns
    ``{"lengths", "accuracy" {L: acc}, "iteration" {L: score} (empty without CoT), "head" {L: name},
    "trained" (the training lengths, [] when unknown), "beyond" (the lengths past them), "n"}``."""
    model, task = selection.model, _task(task_name)
    lengths = list(range(1, analysis.max_length(model, selection.cot) + 1))
    rows = analysis.sample_rows(task, lengths, n, seed, selection.cot)
    result = analysis.evaluate_lengths(model, rows, with_heads=True, cot=selection.cot)
    iteration, head = {}, {}
    for L, scores in result["heads"].items():
        it = np.asarray(scores["iteration_mean"])
        l, h = np.unravel_index(int(np.argmax(it)), it.shape)
        iteration[L], head[L] = float(it[l, h]), _name(int(l), int(h))
    trained = list(training_lengths(selection) or [])
    return {"lengths": lengths, "accuracy": {L: float(a) for L, a in result["accuracy"].items()},
            "iteration": iteration, "head": head, "trained": trained,
            "beyond": [L for L in lengths if trained and L > trained[-1]], "n": n, "task": task.name}


def extrapolation_figure(result: dict, label: str) -> go.Figure:
    """Accuracy (and the best iteration score) per length; the training lengths shaded."""
    lengths = result["lengths"]
    traces = [go.Scatter(x=lengths, y=[result["accuracy"][L] for L in lengths], mode="lines+markers",
                         name="sequence accuracy (teacher forced)",
                         hovertemplate="length %{x}: accuracy %{y:.3f}<extra></extra>")]
    if result["iteration"]:
        traces.append(go.Scatter(
            x=lengths, y=[result["iteration"][L] for L in lengths], mode="lines+markers", marker_symbol="square",
            name="iteration score (L+t → t) of the best head", customdata=[result["head"][L] for L in lengths],
            hovertemplate="length %{x}: %{customdata} scores %{y:.3f}<extra></extra>"))
    fig = go.Figure(traces)
    if result["trained"]:
        fig.add_vrect(x0=result["trained"][0] - 0.5, x1=result["trained"][-1] + 0.5, fillcolor="#16a34a",
                      opacity=0.08, line_width=0, annotation_text="training lengths", annotation_position="top left")
    fig.update_layout(title=dict(text=f"{label}: accuracy per length, up to the context", font=dict(size=13)),
                      height=340, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="input length",
                      yaxis=dict(title="accuracy / attention weight", range=[-0.03, 1.08]),
                      hovermode="x unified", legend=dict(orientation="h", y=-0.25))
    return fig


def extrapolation_markdown(result: dict) -> str:
    acc, lengths = result["accuracy"], result["lengths"]
    if not result["trained"]:
        return (f"Accuracy on lengths 1-{lengths[-1]} ({result['n']} inputs each): mean "
                f"{np.mean(list(acc.values())):.3f}. The training lengths are unknown for this model (the "
                f"construction is not trained), so nothing is marked as beyond them.")
    top = result["trained"][-1]
    if not result["beyond"]:
        return f"Trained on lengths 1-{top}, which already fill the context ({lengths[-1]}): nothing beyond."
    beyond = result["beyond"]
    holds = top
    for L in beyond:
        if acc[L] < HOLDS:
            break
        holds = L
    first_low = next((L for L in beyond if acc[L] < 0.5), None)
    text = (f"Trained on lengths 1-{top}; beyond them, up to the context ({beyond[0]}-{beyond[-1]}, "
            f"{result['n']} inputs each): mean accuracy **{np.mean([acc[L] for L in beyond]):.3f}** "
            f"(on the training lengths {np.mean([acc[L] for L in result['trained']]):.3f}). ")
    text += (f"Accuracy stays ≥ {HOLDS} up to length **{holds}**" if holds > top
             else f"Accuracy is below {HOLDS} from length **{top + 1}**, the first one never trained")
    text += f"; first below 0.5 at length **{first_low}**." if first_low else "; never below 0.5."
    if result["iteration"]:
        text += (f" Iteration score of the best head: {result['iteration'][top]:.3f} at length {top}, "
                 f"{result['iteration'][beyond[-1]]:.3f} at length {beyond[-1]}.")
    return text


# ---------------------------------------------------------------------------------------------
# Activation patching: a clean input and a corrupted one (one value changed)
# ---------------------------------------------------------------------------------------------
def corrupt_input(text: str, task_name: str, position, value=None, longest: int = 10 ** 6) -> str:
    """``text`` with the value at ``position`` (1 … L) replaced by ``value`` (default: the next
    value of the task, e.g. the flipped bit of parity)."""
    task = _task(task_name)
    inputs = parse_input(text, task, longest)
    try:
        position = int(position)
    except (TypeError, ValueError):
        raise InputError(f"position {position!r} is not a whole number: choose 1 to {len(inputs)}") from None
    if not 1 <= position <= len(inputs):
        raise InputError(f"position {position} is out of range: the input has {len(inputs)} values, choose 1 to "
                         f"{len(inputs)}")
    values = list(task.input_values)
    old = int(inputs[position - 1])
    if value in (None, ""):
        new = values[(values.index(old) + 1) % len(values)]
    else:
        words = {tasks.token_text(v): v for v in values}
        if str(value).strip() not in words:
            raise InputError(f"value {value!r} is not a {task.name} input: its values are {' '.join(words)}")
        new = words[str(value).strip()]
    if new == old:
        raise InputError(f"x{position} is already {tasks.token_text(old)}: choose another value to corrupt it with")
    inputs[position - 1] = new
    return " ".join(tasks.token_text(int(v)) for v in inputs)


def _patch_hook(clean: torch.Tensor, head: int | None):
    def hook(t, hook=None):
        t = t.clone()
        if head is None:
            t[:] = clean.to(t.dtype)
        else:
            t[:, :, head] = clean[:, :, head].to(t.dtype)
        return t
    return hook


@_serialized
@torch.no_grad()
def patch(selection: Selection, task_name: str, text: str, position=1, value=None) -> dict:
    """Activation patching. The clean row is the task's row of ``text``; the corrupted row, the
    task's row of the input with ``x_position`` changed (:func:`corrupt_input`), its own chain of
    thought included. Each head's output ``z`` and each MLP's hidden activations are copied from the
    clean run into the corrupted run (at every position), one component at a time. At every answer
    position where the two rows differ, the logit difference ``LD = logit(clean token) -
    logit(corrupted token)`` (teacher forced) gives the fraction restored ``(LD_patched - LD_corrupted)
    / (LD_clean - LD_corrupted)``: 1 = the component alone brings back the clean answer there, 0 =
    nothing. Returns ``{"clean", "corrupted", "components", "names", "positions", "restored" (component ×
    position), "ld_clean", "ld_corrupted", "mean" (per component)}``."""
    model, task = selection.model, _task(task_name)
    longest = analysis.max_length(model, selection.cot)
    inputs = parse_input(text, task, longest)
    corrupted_text = corrupt_input(text, task_name, position, value, longest)
    L = len(inputs)
    clean = tasks.build_rows(task, inputs[None], selection.cot)[0]
    corrupt = tasks.build_rows(task, parse_input(corrupted_text, task, longest)[None], selection.cot)[0]
    start = evaluation.answer_slice(L).start
    where = [p for p in range(start, len(clean)) if clean[p] != corrupt[p]]
    if not where:
        raise InputError(f"changing x{position} changes no answer token of {task.name} on this input: choose "
                         f"another position or value")
    names = [_answer_names(clean[start:].tolist(), L)[p - start] for p in where]
    known = _known(model)
    hooks = {c: (f"blocks.{l}.mlp.hook_post" if h is None else f"blocks.{l}.attn.hook_z", h)
             for c, (l, h) in known.items()}
    device = _device(model)
    ids = {k: torch.as_tensor(r[None], device=device) for k, r in (("clean", clean), ("corrupt", corrupt))}
    model.eval()
    logits_clean, cache = model.run_with_cache(ids["clean"], names_filter=lambda n: n in {v[0] for v in hooks.values()},
                                               use_cache=False)
    q = torch.as_tensor([p - 1 for p in where])  # the logits at p - 1 predict the token at p
    good, bad = torch.as_tensor(clean[where]), torch.as_tensor(corrupt[where])

    def ld(logits):
        lg = logits[0].float().cpu()[q]
        return (lg[torch.arange(len(q)), good] - lg[torch.arange(len(q)), bad]).numpy()

    ld_clean = ld(logits_clean.logits)
    ld_corrupt = ld(model(input_ids=ids["corrupt"], use_cache=False).logits)
    span = ld_clean - ld_corrupt
    restored = []
    for c, (hook_name, head) in hooks.items():
        out = model.run_with_hooks(ids["corrupt"], fwd_hooks=[(hook_name, _patch_hook(cache[hook_name], head))],
                                   return_type="logits", use_cache=False)
        with np.errstate(divide="ignore", invalid="ignore"):
            restored.append(np.where(np.abs(span) > MIN_LOGIT_DIFFERENCE, (ld(out) - ld_corrupt) / span, np.nan))
    restored = np.array(restored)
    mean = [float("nan") if np.all(np.isnan(r)) else float(np.nanmean(r)) for r in restored]
    return {"clean": text, "corrupted": corrupted_text, "components": list(hooks), "names": names,
            "positions": where, "restored": restored.tolist(), "ld_clean": ld_clean.tolist(),
            "ld_corrupted": ld_corrupt.tolist(), "mean": mean}


def patching_figure(result: dict, label: str) -> go.Figure:
    """Fraction of the clean logit difference each component restores, per answer position."""
    z = np.array(result["restored"], dtype=float)
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"{n} (pos {p})" for n, p in zip(result["names"], result["positions"])], y=result["components"],
        zmin=-1, zmax=1, colorscale="RdBu", text=[["" if np.isnan(v) else f"{v:.2f}" for v in row] for row in z],
        texttemplate="%{text}",
        colorbar=dict(title=dict(text="restored", side="right")),
        hovertemplate="%{y} patched in, at %{x}: %{z:.3f} of the clean logit difference<extra></extra>"))
    fig.update_layout(title=dict(text=f"{label}: activation patching, clean {result['clean']!s} / corrupted "
                                      f"{result['corrupted']!s}", font=dict(size=12)),
                      height=120 + 40 * len(z), margin=dict(l=10, r=10, t=50, b=10),
                      yaxis=dict(autorange="reversed", type="category"), xaxis=dict(type="category"))
    return fig


def patching_markdown(result: dict) -> str:
    if np.all(np.isnan(result["mean"])):
        return (f"Clean `{result['clean']}`, corrupted `{result['corrupted']}`: the model's logit difference is "
                f"the same on both (it changes by less than {MIN_LOGIT_DIFFERENCE} at every answer position where "
                f"they differ): the model does not tell them apart, there is nothing to restore.")
    best = int(np.nanargmax(result["mean"]))
    return (f"Clean `{result['clean']}`, corrupted `{result['corrupted']}`: {len(result['positions'])} answer "
            f"token(s) differ. Most restored on average: **{result['components'][best]}** "
            f"({result['mean'][best]:.2f} of the clean logit difference).")


# ---------------------------------------------------------------------------------------------
# Direct logit attribution: what each layer's attention and MLP add to the right token's logit
# ---------------------------------------------------------------------------------------------
@_serialized
@torch.no_grad()
def logit_attribution(selection: Selection, task_name: str, text: str) -> dict:
    """Direct logit attribution at every answer position (teacher forced on the task's row): the
    final residual stream is the sum of the embeddings (token + position) and of what each layer's
    attention and MLP add; through the final norm, its scale frozen at this input, each term's share
    of the right token's logit (the norm's bias, when it has one, is a term of its own). The terms
    add up to the logit. Returns ``{"terms", "names", "positions", "right", "contributions" (term ×
    position), "logit" (per position)}``."""
    model, task = selection.model, _task(task_name)
    if model.config.residual != "standard":
        raise InputError(f"logit attribution needs the standard residual stream; {selection.label} uses "
                         f"residual={model.config.residual!r} (its norm replaces the stream)")
    inputs = parse_input(text, task, analysis.max_length(model, selection.cot))
    L = len(inputs)
    row = tasks.build_rows(task, inputs[None], selection.cot)[0]
    n_layer = model.config.n_layer
    parts = [("embeddings", ["hook_embed", "hook_pos_embed"])]
    for l in range(n_layer):
        parts += [(f"layer {l + 1} attention", [f"blocks.{l}.hook_attn_out"]),
                  (f"layer {l + 1} MLP", [f"blocks.{l}.hook_mlp_out"])]
    wanted = {n for _, ns in parts for n in ns} | {"ln_final.hook_scale"}
    model.eval()
    out, cache = model.run_with_cache(torch.as_tensor(row[None], device=_device(model)),
                                      names_filter=lambda n: n in wanted, use_cache=False)
    start = evaluation.answer_slice(L).start
    q = list(range(start - 1, len(row) - 1))
    right = torch.as_tensor(row[start:])
    norm = model.model.ln_final if hasattr(model, "model") else model.ln_final
    unembed = model.lm_head.weight.float().cpu()[right]  # (P, d_model): the right token of each position
    scale = cache["ln_final.hook_scale"][0, q].float().cpu()  # (P, 1)
    weight = norm.weight.float().cpu()
    rows, terms = [], []
    for term, names in parts:
        x = sum(cache[n][0, q].float().cpu() for n in names)  # (P, d_model)
        if not norm.rms:
            x = x - x.mean(-1, keepdim=True)
        rows.append(((x / scale * weight) * unembed).sum(-1).numpy())
        terms.append(term)
    if norm.bias is not None:
        rows.append((norm.bias.float().cpu() * unembed).sum(-1).numpy())
        terms.append("final norm bias")
    logits = out.logits[0].float().cpu()[q, right].numpy()
    reference = row[start:].tolist()
    return {"terms": terms, "names": _answer_names(reference, L), "positions": list(range(start, len(row))),
            "right": [tasks.token_text(t) for t in reference], "contributions": np.array(rows).tolist(),
            "logit": logits.tolist()}


def attribution_figure(result: dict, label: str) -> go.Figure:
    """Each term's contribution to the right token's logit, per answer position."""
    z = np.array(result["contributions"], dtype=float)
    x = [f"{n} = {r}" for n, r in zip(result["names"], result["right"])]
    top = float(np.abs(z).max()) or 1.0
    fig = go.Figure(go.Heatmap(
        z=z, x=x, y=result["terms"], zmin=-top, zmax=top, zmid=0, colorscale="RdBu", text=np.round(z, 1),
        texttemplate="%{text}", colorbar=dict(title=dict(text="logit", side="right")),
        customdata=np.array([[f"{v:.2f}" for v in result["logit"]]] * len(z)),
        hovertemplate="%{y} adds %{z:.2f} to the logit of %{x}<br>(the logit: %{customdata})<extra></extra>"))
    fig.update_layout(title=dict(text=f"{label}: direct logit attribution of the right token", font=dict(size=13)),
                      height=140 + 40 * len(z), margin=dict(l=10, r=10, t=50, b=10),
                      yaxis=dict(autorange="reversed", type="category"), xaxis=dict(type="category"))
    return fig


def attribution_markdown(result: dict) -> str:
    z = np.array(result["contributions"])
    share = z.mean(1)
    order = np.argsort(-share)
    parts = ", ".join(f"{result['terms'][i]} {share[i]:+.2f}" for i in order)
    return (f"Mean contribution to the right token's logit over {len(result['names'])} answer positions: {parts} "
            f"(the terms add up to the logit, mean {np.mean(result['logit']):.2f}).")


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


def emergence_points(catalogue: Catalogue, name: str) -> list[dict]:
    """The ``training`` points of the folder's ``analysis.json`` (``{"step", "accuracy_mean",
    "first_mean", "iteration_mean"}``, sorted by step); ``[]`` when there are none."""
    if name == CONSTRUCTION or name not in catalogue.models:
        return []
    return _points(catalogue.models[name])


@functools.lru_cache(maxsize=64)
def _points(folder: str) -> list[dict]:
    try:
        with open(os.path.join(folder, "analysis.json")) as f:
            points = json.load(f).get("training") or []
    except (OSError, ValueError):
        return []
    return sorted((p for p in points if isinstance(p, dict) and "step" in p), key=lambda p: p["step"])


def revision_step(catalogue: Catalogue, name: str, revision: str) -> int | None:
    """The training step of a revision: ``N`` of ``step{N}``; for :data:`MAIN`, the final step the
    folder's ``training_info.json`` records (else the last point of the curve); ``None`` if unknown."""
    m = re.fullmatch(r"step(\d+)", str(revision))
    if m:
        return int(m.group(1))
    if revision != MAIN or name not in catalogue.models:
        return None
    try:
        with open(os.path.join(catalogue.models[name], "training_info.json")) as f:
            step = json.load(f).get("step")
        if isinstance(step, int) and step >= 0:
            return step
    except (OSError, ValueError, AttributeError):
        pass
    points = emergence_points(catalogue, name)
    return points[-1]["step"] if points else None


def emergence_figure(points: list[dict], label: str, step: int | None = None) -> go.Figure:
    """Test accuracy and both head scores against the training step (the numbers of ``analysis.json``,
    as :func:`analysis.plot_training` draws them for the card), with a vertical line at ``step``
    (the revision the page shows)."""
    fig = go.Figure()
    steps = [p["step"] for p in points]
    for key, name in (("accuracy_mean", "test accuracy (mean over lengths)"),
                      ("first_mean", "first-attention peakiness (to <eoi>)"),
                      ("iteration_mean", "iteration-head peakiness (L+t → x_t)")):
        values = [p.get(key) for p in points]
        if any(v is not None for v in values):
            fig.add_trace(go.Scatter(x=steps, y=values, mode="lines+markers", name=name,
                                     hovertemplate="step %{x}: %{y:.3f}<extra>" + name + "</extra>"))
    if step is not None:
        fig.add_vline(x=step, line=dict(color="#dc2626", width=2, dash="dot"), annotation_text=f"step {step}",
                      annotation_position="top")
    if not points:
        fig.add_annotation(text="no training history in this folder", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
    fig.update_layout(title=dict(text=f"{label}: emergence" + (f" (at step {step})" if step is not None else ""),
                                 font=dict(size=13)),
                      height=340, margin=dict(l=10, r=10, t=50, b=10), xaxis_title="training step",
                      yaxis=dict(title="accuracy / attention weight", range=[-0.03, 1.08]),
                      legend=dict(orientation="h", y=-0.3))
    return fig


def card(catalogue: Catalogue, name: str, file_url=None) -> tuple[str | None, str]:
    """A released model's card (``<folder>/README.md``): its path and its text as Markdown, without
    the YAML header; ``file_url(path)`` (the app's file route) rewrites its relative image links."""
    if name == CONSTRUCTION or name not in catalogue.models:
        return None, ("The hand-built construction has no card: it is written by `modeling/construction.py` "
                      "(a 2-layer, 1-head iteration head, exact on every length).")
    path = os.path.join(catalogue.models[name], "README.md")
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None, f"{name} has no README.md in {catalogue.models[name]}."
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)
    if file_url is not None:
        text = re.sub(r"!\[([^\]]*)\]\(([^)\s:]+)\)",
                      lambda m: f"![{m.group(1)}]({file_url(os.path.join(catalogue.models[name], m.group(2)))})", text)
    return path, text
