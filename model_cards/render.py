"""Model and dataset cards rendered from measured files only.

A model folder in Hub layout (as ``python -m model_cards.release`` assembles it) holds everything
its card says::

    config.json, model.safetensors        architecture table, parameter count, sha256 of the weights
    training_info.json, train_config.yaml training data, hyper-parameters, steps, training time
    eval_results.json                     YAML model-index and the per-length table (evaluate.py)
    analysis.json (+ its PNG figures)     head scores, ablations, emergence (modeling/analysis.py)
    ../revisions/<repo>/step<N>/          the intermediate checkpoints (branches step<N>)

No number of a card is typed by hand: each is read from one of those files (and formatted with a
fixed precision: 4 decimals for accuracies, 3 for head scores), so re-rendering the same files gives
the same bytes. The templates are ``model_cards/templates/model_card.md`` (jinja2, through
``huggingface_hub.ModelCard.from_template``) and ``dataset_card.md`` (a "models" section added to
the card that ``datasets_builders.export`` writes).

Re-render the card of an assembled folder (the release does this itself)::

    python -m model_cards.render hub/iteration-head-parity --namespace <org>
"""

from __future__ import annotations

import argparse
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results

from datasets_builders import tasks
from datasets_builders.files import write_text_atomic
from datasets_builders.iteration_tasks import CITATION
from modeling.evaluation import to_model_index
from training.config import flatten

from .suite import DATASET_NAME, METRIC_NAME, SEEDS, SUITE, SUITE_BY_KEY, ModelSpec, repo_id
from . import verify
from .verify import sha256_file

__all__ = [
    "ACCURACY_DIGITS",
    "Measured",
    "accuracy",
    "add_models_to_dataset_card",
    "gpt2_unknown_token",
    "interop",
    "load_measured",
    "render_dataset_section",
    "render_model_card",
    "revision_steps",
    "safetensors_parameters",
    "sha256_file",
    "spec_for_folder",
    "write_model_card",
]

TEMPLATES = Path(__file__).resolve().parent / "templates"
MODEL_TEMPLATE = TEMPLATES / "model_card.md"
RESULTS = Path(__file__).resolve().parents[1] / "results"  # the experiments' per-run tables
DATASET_TEMPLATE = TEMPLATES / "dataset_card.md"
DATASET_BEGIN = "<!-- models: rendered by model_cards/render.py"
DATASET_END = "<!-- end of models -->"

ACCURACY_DIGITS = 4  # accuracies in tables
SCORE_DIGITS = 3  # attention scores in tables


def accuracy(value: float) -> str:
    """How every accuracy of a table is written (the tests parse it back)."""
    return f"{value:.{ACCURACY_DIGITS}f}"


def _score(value) -> str:
    return "–" if value is None else f"{value:.{SCORE_DIGITS}f}"


def _table(header: list[str], rows: list[list], align: str | None = None) -> str:
    align = align or "|" + "---|" * len(header)
    lines = ["| " + " | ".join(header) + " |", align]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Measured files
# ---------------------------------------------------------------------------------------------
def safetensors_parameters(path: str | os.PathLike) -> int:
    """Number of parameters stored in a ``.safetensors`` file (read from its JSON header)."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    return int(sum(np.prod(v["shape"], dtype=np.int64) for k, v in header.items() if k != "__metadata__"))


def _read_json(path: Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@dataclass
class Measured:
    """Everything a model card is rendered from (see the module docstring)."""

    folder: Path
    config: dict
    training_info: dict
    train_config: dict
    eval_results: dict
    analysis: dict | None
    sha256: str
    n_parameters: int

    @property
    def data(self) -> dict:
        return self.train_config["data"]

    @property
    def task(self) -> str:
        return self.eval_results.get("task") or self.data["task"]

    @property
    def cot(self) -> bool:
        return bool(self.eval_results.get("cot", self.data["cot"]))


def load_measured(folder: str | os.PathLike) -> Measured:
    """Read the measured files of an assembled model folder; ``FileNotFoundError`` names a missing one."""
    folder = Path(folder)
    need = ["config.json", "model.safetensors", "training_info.json", "eval_results.json"]
    missing = [n for n in need if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}: assemble it with "
                                "`python -m model_cards.release` first")
    info = _read_json(folder / "training_info.json")
    if (folder / "train_config.yaml").is_file():
        train_config = yaml.safe_load((folder / "train_config.yaml").read_text(encoding="utf-8"))
    else:
        train_config = info["train_config"]
    analysis = _read_json(folder / "analysis.json") if (folder / "analysis.json").is_file() else None
    return Measured(folder=folder, config=_read_json(folder / "config.json"), training_info=info,
                    train_config=train_config, eval_results=_read_json(folder / "eval_results.json"),
                    analysis=analysis, sha256=sha256_file(folder / "model.safetensors"),
                    n_parameters=safetensors_parameters(folder / "model.safetensors"))


def revision_steps(hub_dir: str | os.PathLike, repo: str) -> list[int]:
    """Steps of the intermediate checkpoints stored as ``<hub_dir>/revisions/<repo>/step<N>/``."""
    root = Path(hub_dir) / "revisions" / repo
    if not root.is_dir():
        return []
    return sorted(int(p.name[4:]) for p in root.iterdir() if p.is_dir() and p.name[:4] == "step" and p.name[4:].isdigit())


def spec_for_folder(folder: str | os.PathLike) -> ModelSpec:
    name = Path(folder).resolve().name
    for spec in SUITE:
        if spec.repo == name:
            return spec
    raise ValueError(f"{folder}: {name!r} is not a repository of the suite "
                     f"({', '.join(s.repo for s in SUITE)}); pass the spec explicitly")


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------
def _lengths(m: Measured) -> tuple[int, int]:
    return int(m.data["min_length"]), int(m.data["max_length"])


def _span(lo: int, hi: int) -> str:
    return f"{lo}–{hi}" if hi > lo else str(lo)


def _generated_mean(results: dict) -> float | None:
    """The model-index value of generated sequence accuracy over the training lengths."""
    for entry in results.get("results", []):
        if "length generalisation" in entry["task"]["name"]:
            continue
        for metric in entry["metrics"]:
            if metric["type"] == "sequence_accuracy_generated":
                return metric["value"]
    return None


def suite_table(hub_dir: Path, namespace: str, current: str) -> str:
    """The models of the suite present in ``hub_dir``, with links and their measured accuracy."""
    rows = []
    for spec in SUITE:
        folder = hub_dir / spec.repo
        if spec.repo != current and not (folder / "eval_results.json").is_file():
            continue  # not part of this release
        results = _read_json(folder / "eval_results.json") if (folder / "eval_results.json").is_file() else {}
        config = _read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
        value = _generated_mean(results)
        name = f"[{spec.repo}](https://huggingface.co/{repo_id(namespace, spec.repo)})"
        if spec.repo == current:
            name = f"**{spec.repo}** (this model)"
        rows.append([name, spec.title, config.get("n_layer", "–"), "–" if value is None else accuracy(value)])
    return _table(["model", "what it is", "layers", "test accuracy"], rows)


def architecture_table(m: Measured) -> str:
    c = m.config
    n_inner = c.get("n_inner") or 4 * c["n_embd"]
    rows = [
        ["layers", c["n_layer"]],
        ["attention heads per layer", c["n_head"]],
        ["residual width (d_model)", c["n_embd"]],
        ["head width (d_head)", c["n_embd"] // c["n_head"]],
        ["MLP width", n_inner],
        ["MLP activation", c["activation"]],
        ["normalisation", f"{c['norm']} (bias: {c.get('norm_bias', False)})"],
        ["block", c["residual"] + (" (pre-norm: x + attn(ln(x)))" if c["residual"] == "standard"
                                   else " (the paper code's: x = ln(x); x = x + attn(x))")],
        ["position embedding", c["position_embedding"]],
        ["context (n_positions)", c["n_positions"]],
        ["vocabulary", c["vocab_size"]],
        ["biases in linear layers", c["bias"]],
        ["tied input/output embeddings", c.get("tie_word_embeddings", False)],
        ["dropout (embeddings / attention / residual)", f"{c['embd_pdrop']} / {c['attn_pdrop']} / {c['resid_pdrop']}"],
        ["parameters", f"{m.n_parameters:,}"],
    ]
    return _table(["", ""], rows)


def _example(m: Measured, length: int):
    """A deterministic example row of the task: (prompt text, answer text, answer tokens)."""
    d = m.data
    task = tasks.make_task(m.task, d.get("modulus", tasks.DEFAULT_MODULUS),
                           [tuple(t) for t in d.get("polynomial", tasks.DEFAULT_POLYNOMIAL)])
    inputs = tasks.sample_unique_inputs(task, length, 1, np.random.default_rng(0))
    row = tasks.build_rows(task, inputs, m.cot)[0]
    eoi = tasks.eoi_position(length)
    words = [tasks.token_text(int(i)) for i in row]
    return " ".join(words[:eoi + 1]), " ".join(words[eoi + 1:]), len(words) - eoi - 1


def _probe_head(m: Measured) -> tuple[int, int]:
    """The head to probe: the first detected iteration head, else head 0 of the last layer."""
    if m.analysis and m.analysis.get("iteration_heads"):
        layer, head = m.analysis["iteration_heads"][0]
        return int(layer), int(head)
    return int(m.config["n_layer"]) - 1, 0


def quickstart(m: Measured, rid: str) -> tuple[str, str]:
    """The two code blocks of the Quickstart: generate an answer, then read attention patterns."""
    lo, hi = _lengths(m)
    prompt, answer, n_new = _example(m, hi)
    what = "the chain of thought s_1 … s_L and <eos>" if m.cot else "the final state s_L and <eos>"
    gen = f'''\
from transformers import AutoModelForCausalLM, AutoTokenizer

repo = "{rid}"
model = AutoModelForCausalLM.from_pretrained(repo, trust_remote_code=True, revision="main").eval()
# trust_remote_code only silences a prompt: the tokenizer itself is a plain tokenizers file.
tokenizer = AutoTokenizer.from_pretrained(repo, trust_remote_code=True, revision="main")

# <task> x_1 … x_L <eoi>, L = {hi}; the model writes {what}.
prompt = "{prompt}"
inputs = tokenizer(prompt, return_tensors="pt")
output = model.generate(**inputs, max_new_tokens={n_new}, do_sample=False)
print(tokenizer.decode(output[0, inputs.input_ids.shape[1]:]))
# the right answer: {answer}'''
    layer, head = _probe_head(m)
    name = f"blocks.{layer}.attn.hook_pattern"
    found = bool(m.analysis and m.analysis.get("iteration_heads"))
    expect = "iteration head: close to 1" if found else "an iteration head would give 1s; this model has none"
    if m.cot:
        probe = f'''\
# Attention pattern of layer {layer}, head {head} (layers and heads count from 0): (batch, head, query, key).
_, cache = model.run_with_cache(output, names_filter="{name}")
pattern = cache["{name}"][0, {head}]
L = {hi}  # input length: x_t sits at position t, <eoi> at L + 1, and query L + t writes s_t
print([round(pattern[L + t, t].item(), 3) for t in range(1, L + 1)])  # {expect}'''
    else:
        probe = f'''\
# Attention pattern of layer {layer}, head {head} (layers and heads count from 0): (batch, head, query, key).
_, cache = model.run_with_cache(output, names_filter="{name}")
pattern = cache["{name}"][0, {head}]
L = {hi}  # input length: x_t sits at position t; the query at <eoi> (position L + 1) writes s_L
print([round(pattern[L + 1, t].item(), 3) for t in range(1, L + 1)])  # where the answer looks'''
    return gen, probe


def gpt2_unknown_token(m: Measured) -> tuple[str, int] | None:
    """The ``gpt2/`` copy's unknown token and its id (``gpt2/tokenizer_config.json``, ``tokenizer.json``);
    None without a copy."""
    copy = m.folder / "gpt2"
    if not (copy / "config.json").is_file():
        return None
    token = _read_json(copy / "tokenizer_config.json").get("unk_token")
    vocab = _read_json(copy / "tokenizer.json")["model"]["vocab"]
    if token not in vocab:
        raise ValueError(f"{copy}: the tokenizer's unknown token {token!r} is not in its vocabulary: "
                         "regenerate the copy (python -m modeling.gpt2)")
    return token, int(vocab[token])


def interop(m: Measured) -> str | None:
    """The Quickstart's third block: the ``gpt2/`` copy as stock GPT-2, TransformerLens on it as it
    stands, and nnsight on the model itself (no ``materialize_hooks``). None without a ``gpt2/`` copy."""
    if gpt2_unknown_token(m) is None:
        return None
    layer, _ = _probe_head(m)
    name = f"blocks.{layer}.attn.hook_pattern"
    return f'''\
# gpt2/: the same weights as a stock GPT2LMHeadModel (zero biases, same logits), no remote code.
from transformers import GPT2LMHeadModel
gpt2 = GPT2LMHeadModel.from_pretrained(repo, subfolder="gpt2", revision="main").eval()
print((gpt2(**inputs).logits - model(**inputs).logits).abs().max().item() < 1e-4)  # True

# TransformerLens 4 (pip install transformer-lens) boots the gpt2/ folder as it stands.
from huggingface_hub import snapshot_download
from transformer_lens.model_bridge import TransformerBridge
bridge = TransformerBridge.boot_transformers(snapshot_download(repo, revision="main") + "/gpt2", device="cpu")
tokens = bridge.to_tokens(prompt, prepend_bos=False)  # rows open with their task token, never <bos>
_, tl_cache = bridge.run_with_cache(tokens)

# nnsight (pip install nnsight) on the model itself; run it from a file or a notebook (nnsight reads
# the trace's body from its source). No materialize_hooks=True needed: the lazy points
# (hook_pattern, hook_result, the norms' hook_scale) are computed while a trace runs.
import nnsight
lm = nnsight.TransformersModel(model, task="text-generation", tokenizer=tokenizer)
with lm.trace(inputs.input_ids):
    nn_pattern = lm.model.blocks[{layer}].attn.hook_pattern.output.save()
print((nn_pattern - tl_cache["{name}"]).abs().max().item() < 1e-4)  # True: the same pattern'''


def no_gpt2_reason(m: Measured) -> str | None:
    """Why the model has no ``gpt2/`` copy (what ``modeling.gpt2`` refuses), or None when it has one."""
    if gpt2_unknown_token(m) is not None:
        return None
    if m.config.get("residual") == "reference":
        return ("its blocks follow the paper code's layout (`residual: reference`: the residual stream itself "
                "is normalised before attention, `x = ln1(x); x = x + attn(x)`), which no GPT-2 block computes")
    if m.config.get("norm") == "rmsnorm":
        return "GPT-2 has no RMSNorm (`norm: rmsnorm`)"
    return "its architecture does not convert (see `modeling/gpt2.py` in the source repository)"


def data_description(m: Measured, dataset_repo: str, base_model: str | None) -> str:
    d = m.data
    lo, hi = _lengths(m)
    config = tasks.dataset_config_name(m.task, m.cot)
    link = f"[`{dataset_repo}`](https://huggingface.co/datasets/{dataset_repo}) config `{config}`"
    task_words = {"copy": "bit strings, copied", "parity": "bit strings and their running parity",
                  "mix": f"{d.get('mix_with') or 'parity'} rows and copy rows, a fraction {d.get('mix_ratio')} of "
                         "them copy",
                  "polynomial": f"integers 1 … {d.get('modulus')} − 1 and the iterates of "
                                f"P(s, x) = {tasks.polynomial_text(d.get('polynomial'))} mod {d.get('modulus')}",
                  }.get(d["task"], d["task"])
    held_out = (f"the test split of {link} ({d['examples_per_length']} distinct input sequences drawn per "
                f"length, a fraction {d['test_fraction']} of them held out, seed {d['seed']})")
    if d["task"] == "mix":
        other = "copy" if m.task != "copy" else "parity"
        other_config = tasks.dataset_config_name(other, m.cot)
        held_out += f" (nor, for its {other} rows, one of the test split of config `{other_config}`)"
    if d.get("source") == "paper":
        text = (f"The paper's own data (`data.source=paper`, as in the reference's code): {d['examples_per_length']:,} "
                f"sequences drawn per input length uniformly *with replacement* (seed {d['seed']}), the first half "
                f"for training, reshuffled every epoch; input lengths {_span(lo, hi)}, {task_words}, "
                f"{'with' if m.cot else 'without'} chain of thought. Drawn with replacement, the train half holds "
                "every sequence of the shortest lengths, so no test split is held out from it: the evaluation "
                f"below uses the test split of {link} less every sequence the train half drew.")
    elif d.get("source") == "fixed":
        text = (f"The train split of {link}, reshuffled every epoch; input lengths {_span(lo, hi)}, "
                f"{task_words}, {'with' if m.cot else 'without'} chain of thought. Held out: {held_out}.")
    else:
        text = (f"Fresh random sequences at every step ({task_words}; input lengths {_span(lo, hi)}, "
                f"{'with' if m.cot else 'without'} chain of thought), never one of {held_out}.")
    text += " Loss: next-token cross-entropy on the targets after `<eoi>` only."
    if base_model:
        text += f" Initial weights: [{base_model}](https://huggingface.co/{base_model}) (its `main`)."
    return text


def hyperparameters_table(m: Measured, fine_tuned: bool) -> str:
    rows = []
    for key, value in flatten(m.train_config).items():
        if fine_tuned and key.startswith("model."):
            continue  # the architecture comes from the base model (see the architecture table)
        text = json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)
        rows.append([f"`{key}`", f"`{text}`"])
    return _table(["key", "value"], rows)


def training_summary(m: Measured) -> str:
    info = m.training_info
    text = (f"Trained for {info['step']} steps (stop: {info['stop_reason']}) in {info['time_s']} s of "
            "training time (on the machine that trained it).")
    test = info.get("test") or {}
    if "accuracy_mean" in test:
        text += (f" At the last step the run's own evaluation gave a mean test accuracy of "
                 f"{accuracy(test['accuracy_mean'])} (teacher forced, up to "
                 f"{m.train_config.get('eval_per_length')} test sequences per length).")
    return text


def per_length_table(results: dict) -> str:
    """Per input length: rows evaluated and the three accuracies (``eval_results.json``)."""
    rows = []
    for L, r in sorted(results["per_length"].items(), key=lambda kv: int(kv[0])):
        rows.append([f"{L}{'*' if r.get('extrapolated') else ''}", r["n"], accuracy(r["teacher_forced"]),
                     accuracy(r["generated"]), accuracy(r["generated_final"])])
    return _table(["L", "test rows", "teacher-forced", "generated", "final answer"], rows,
                  "|---:|---:|---:|---:|---:|")


def evaluation_intro(results: dict) -> str:
    per = results["per_length"]
    n = sum(r["n"] for r in per.values())
    lengths = sorted(int(L) for L in per)
    entry = results["results"][0]
    ds = entry["dataset"]
    where = (f"the `{ds['split']}` split of [`{ds['type']}`](https://huggingface.co/datasets/{ds['type']}) "
             f"config `{ds['config']}`") if ds["split"] != "sampled" else f"random sequences ({ds['name']})"
    means = ", ".join(f"{m['name'].split(',')[0].lower()} **{accuracy(m['value'])}**" for m in entry["metrics"])
    text = (f"{n:,} sequences of {where}, input lengths {_span(lengths[0], lengths[-1])}. "
            f"Mean over lengths (the `model-index` values): {means}.")
    if any(r.get("extrapolated") for r in per.values()):
        text += " Lengths marked * are beyond training."
    dropped = (results.get("heldout_check") or {}).get("trained_rows_dropped")
    if dropped:
        gone = results["heldout_check"].get("lengths_not_evaluated") or []
        contiguous = gone == list(range(gone[0], gone[-1] + 1)) if gone else False
        gone_text = _span(gone[0], gone[-1]) if contiguous else ", ".join(map(str, gone))
        text += (f" The run trained on its own draws of every length (the paper's data, with replacement), so "
                 f"{sum(dropped.values()):,} test rows it also drew for training were left out"
                 + (f", and input lengths {gone_text} are not evaluated: every test sequence there was a "
                    "training sequence" if gone else "")
                 + ". `evaluate.py` leaves out the same rows.")
    return text


def heads_table(analysis: dict) -> str:
    rows = []
    for h in analysis["heads"]:
        rows.append([h["layer"], h["head"], _score(h["first_mean"]), _score(h["iteration_mean"]),
                     _score(h["iteration_frac"]), _score(h["iteration_invariance"]),
                     ", ".join(lab.replace("<eoi>", "`<eoi>`") for lab in h["labels"]) or "–"])
    return _table(["layer", "head", "→ `<eoi>`", "iteration", "iteration > 0.5", "invariance", "label"], rows)


def heads_summary(analysis: dict) -> str:
    found = ", ".join(f"layer {l} head {h}" for l, h in analysis["iteration_heads"])
    rule = (f"a head is labelled when its score, averaged over lengths ≥ {analysis['detector_min_length']}, "
            f"is at least {analysis['threshold']}")
    if found:
        return f"Iteration head: **{found}** ({rule})."
    return f"No head passes the iteration-head detector ({rule})."


def ablation_table(analysis: dict) -> str | None:
    ab = analysis.get("ablation")
    if not ab or not ab.get("components"):
        return None
    modes = list(next(iter(ab["components"].values())))
    rows = [["none", *[accuracy(ab["baseline"]["mean"])] * len(modes)]]
    for name, per_mode in ab["components"].items():
        rows.append([f"`{name}`", *[f"{accuracy(per_mode[mode]['mean'])} ({per_mode[mode]['drop']:+.{ACCURACY_DIGITS}f})"
                                    for mode in modes]])
    return _table(["knocked out", *[f"{mode} ablation (drop)" for mode in modes]], rows)


def revisions_table(steps: list[int], analysis: dict | None) -> str | None:
    if not steps:
        return None
    points = {p["step"]: p for p in (analysis or {}).get("training", [])}
    scores = any(points.get(s, {}).get("iteration_mean") is not None for s in steps)
    rows = []
    for step in steps:
        p = points.get(step, {})
        acc = p.get("accuracy_mean")
        row = [f"`step{step}`", step, "–" if acc is None else accuracy(acc)]
        rows.append(row + ([_score(p.get("first_mean")), _score(p.get("iteration_mean"))] if scores else []))
    header = ["revision", "step", "test accuracy"] + (["→ `<eoi>`", "iteration"] if scores else [])
    return _table(header, rows)


# ---------------------------------------------------------------------------------------------
# The model card
# ---------------------------------------------------------------------------------------------
def card_model_index(eval_results: dict, repo: str, namespace: str) -> list[dict]:
    """The card's ``model-index``: the entries of ``eval_results.json`` with each metric's ``type`` the
    shipped metric (``<namespace>/sequence_accuracy``, the ``evaluate`` module every value is an exact
    match rate of) and its ``config`` the measurement (``sequence_accuracy_teacher_forced``,
    ``sequence_accuracy_generated``, ``final_answer_accuracy_generated``: ``eval_results.json``'s type)."""
    index = to_model_index(eval_results, repo)
    for entry in index[0]["results"]:
        entry["metrics"] = [dict(metric, type=repo_id(namespace, METRIC_NAME), config=metric["type"])
                            for metric in entry["metrics"]]
    return index


def card_data(m: Measured, spec: ModelSpec, namespace: str, base_model: str | None) -> ModelCardData:
    """The YAML metadata: license, library, tags, dataset, base model and the measured model-index."""
    name, eval_results = model_index_to_eval_results(card_model_index(m.eval_results, spec.repo, namespace))
    extra = {"base_model_relation": "finetune"} if base_model else {}
    return ModelCardData(license="mit", library_name="transformers", pipeline_tag="text-generation",
                         tags=spec.tags, datasets=[repo_id(namespace, DATASET_NAME)], base_model=base_model,
                         model_name=name, eval_results=eval_results, **extra)


def seeds_summary(key: str, results: Path = RESULTS) -> str | None:
    """What the model's recipe did over seeds (``SEEDS``), from the experiment's per-run table: the
    sentence a card puts next to its single run; ``None`` when no experiment covers it."""
    from training.findings import rows_of
    from training.tables import HEAD, _num, mean_std, seeds_reached, seeds_with_head
    if key not in SEEDS or not (results / f"{SEEDS[key][0]}.csv").exists():
        return None
    experiment, where, words = SEEDS[key]
    rows = [r for r in rows_of(results, experiment) if all(r.get(k) == v for k, v in where.items())]
    if not rows:
        return None
    n = len(rows)
    budget = {int(float(r["max_steps"])) for r in rows if _num(r.get("max_steps")) is not None}
    within = f" within {budget.pop():,} steps" if len(budget) == 1 else ""
    from training.evidence import wilson

    def k_of_n(k: int) -> str:  # with its Wilson 95% interval: n is small
        lo, hi = wilson(k, n)
        return f"{k}/{n} [95% CI {lo:.2f}–{hi:.2f}]"
    heads = (f", {k_of_n(seeds_with_head(rows))} with the iteration head (score ≥ {HEAD})"
             if any(_num(r.get("iteration_score")) is not None for r in rows) else "")
    return (f"Over seeds, {words} (`{experiment}` in the source repository's RESULTS.md, with its computed "
            f"verdicts; `results/{experiment}.csv`): {k_of_n(seeds_reached(rows))} seeds reached 99% on every "
            f"test length{within}; mean test accuracy {mean_std(r['test_accuracy'] for r in rows)} over seeds{heads}.")


def render_model_card(folder: str | os.PathLike, namespace: str, spec: ModelSpec | None = None,
                      hub_dir: str | os.PathLike | None = None) -> str:
    """The README.md of an assembled model folder, from its measured files.

    ``hub_dir`` (default: the folder's parent) holds the other models of the release (for the suite
    table) and ``revisions/<repo>/step<N>/`` (for the intermediate checkpoints).
    """
    folder = Path(folder)
    spec = spec or spec_for_folder(folder)
    hub_dir = Path(hub_dir) if hub_dir is not None else folder.resolve().parent
    m = load_measured(folder)
    rid = repo_id(namespace, spec.repo)
    dataset_repo = repo_id(namespace, DATASET_NAME)
    base_model = repo_id(namespace, SUITE_BY_KEY[spec.init_from].repo) if spec.init_from else None
    lo, hi = _lengths(m)
    gen, probe = quickstart(m, rid)
    unknown = gpt2_unknown_token(m)
    steps = revision_steps(hub_dir, spec.repo)
    a = m.analysis
    has_heads = bool(a and a.get("heads"))
    figures = (a or {}).get("figures", {})
    task_arg = f"--task {m.task}" + (f" --modulus {m.data['modulus']}" if m.task == "polynomial" else "")
    results = m.eval_results
    eval_command = results.get("command")
    kwargs = dict(
        paper_repos=", ".join(f"`{r}`" for r in paper_trained_repos(hub_dir, (spec.repo, m))),
        repo_name=spec.repo, title=spec.title, summary=spec.summary, task=m.task, cot=m.cot,
        base_model=base_model, dataset_repo=dataset_repo,
        suite_table=suite_table(hub_dir, namespace, spec.repo),
        architecture_table=architecture_table(m),
        vocab_size=m.config["vocab_size"], n_positions=m.config["n_positions"], n_layer=m.config["n_layer"],
        lengths=_span(lo, hi),
        max_length_in_context=(m.config["n_positions"] - 3) // 2 if m.cot else m.config["n_positions"] - 4,
        quickstart=gen, probe=probe, interop=interop(m), no_gpt2=no_gpt2_reason(m),
        paper_trained=m.data.get("source") == "paper",
        iteration_head_found=bool(a and a.get("iteration_heads")),
        unknown_token=unknown[0] if unknown else None, unknown_id=unknown[1] if unknown else None,
        revisions_table=revisions_table(steps, a), final_step=m.training_info.get("step"),
        eval_per_length=m.train_config.get("eval_per_length"),
        data_description=data_description(m, dataset_repo, base_model),
        hyperparameters_table=hyperparameters_table(m, fine_tuned=base_model is not None),
        training_summary=training_summary(m), sha256=m.sha256,
        train_command=(f"python train.py --recipe train_config.yaml --output_dir runs/{spec.key}"
                       + (f" --init_from {base_model}" if base_model else "")),
        evaluation_intro=evaluation_intro(results), per_length_table=per_length_table(results),
        eval_command=eval_command, metric_id=repo_id(namespace, METRIC_NAME),
        heads_table=heads_table(a) if has_heads else None,
        heads_summary=heads_summary(a) if has_heads else None,
        analysis_description=(f"{max(a['n_per_length'].values())} random sequences per length, lengths "
                              f"{_span(a['lengths'][0], a['lengths'][-1])}, seed {a['seed']}") if has_heads else "",
        attention_figures=[(k, v) for k, v in figures.items() if k != "emergence"],
        ablation_table=ablation_table(a) if has_heads else None,
        analysis_command=(f"python analysis.py --model . {task_arg} --lengths {a['lengths'][0]}-{a['lengths'][-1]} "
                          f"--n {max(a['n_per_length'].values())} --seed {a['seed']}") if has_heads else "",
        emergence_figure=figures.get("emergence"),
        emergence_description=_emergence_description(a) if a else "",
        citation=CITATION.strip(), seeds_summary=seeds_summary(spec.key),
    )
    card = ModelCard.from_template(card_data(m, spec, namespace, base_model), template_path=str(MODEL_TEMPLATE),
                                   **kwargs)
    return str(card).rstrip("\n") + "\n"


def _emergence_description(analysis: dict) -> str:
    points = analysis.get("training") or []
    if not points:
        return ""
    span = f"{len(points)} evaluations of the training run, steps {points[0]['step']}–{points[-1]['step']}"
    if any(p.get("iteration_mean") is not None for p in points):
        return (f"Mean test accuracy, attention of the first layer to `<eoi>` and iteration-head score (best "
                f"head of the later layers) at {span} (`analysis.json`, `training`). In the paper both "
                "attention scores rise together with the jump in accuracy.")
    return f"Mean test accuracy at {span} (`analysis.json`, `training`)."


def write_model_card(folder: str | os.PathLike, namespace: str, spec: ModelSpec | None = None,
                     hub_dir: str | os.PathLike | None = None) -> Path:
    path = Path(folder) / "README.md"
    write_text_atomic(path, render_model_card(folder, namespace, spec, hub_dir))
    return path


# ---------------------------------------------------------------------------------------------
# The dataset card: a "models" section in the card written by datasets_builders.export
# ---------------------------------------------------------------------------------------------
def paper_trained_repos(hub_dir: Path, also: tuple[str, Measured] | None = None) -> list[str]:
    """The repos of the release in ``hub_dir`` (and ``also``: a repo and its measured files) trained on
    the paper's own draws (``data.source=paper``): no test split is held out from them."""
    out = []
    for spec in SUITE:
        if also and spec.repo == also[0]:
            data = also[1].data
        elif (hub_dir / spec.repo / "training_info.json").is_file():
            data = _read_json(hub_dir / spec.repo / "training_info.json")["train_config"]["data"]
        else:
            continue
        if data.get("source") == "paper":
            out.append(spec.repo)
    return out


def render_dataset_section(hub_dir: str | os.PathLike, namespace: str) -> str:
    """The dataset card's section listing the models of the release present in ``hub_dir``."""
    import jinja2

    hub_dir = Path(hub_dir)
    rows = []
    for spec in SUITE:
        path = hub_dir / spec.repo / "eval_results.json"
        if not path.is_file():
            continue
        results = _read_json(path)
        value = _generated_mean(results)
        ds = results["results"][0]["dataset"]
        config = f"`{ds['config']}`"
        rows.append([f"[{spec.repo}](https://huggingface.co/{repo_id(namespace, spec.repo)})", spec.title,
                     config, "–" if value is None else accuracy(value)])
    table = _table(["model", "what it is", "config", "test accuracy"], rows)
    text = jinja2.Template(DATASET_TEMPLATE.read_text(encoding="utf-8"), keep_trailing_newline=True).render(
        models_table=table, paper_repos=", ".join(f"`{r}`" for r in paper_trained_repos(hub_dir)))
    return text.rstrip("\n") + "\n" + DATASET_END + "\n"


def add_models_to_dataset_card(dataset_dir: str | os.PathLike, hub_dir: str | os.PathLike, namespace: str) -> Path:
    """Insert (or replace) the models section before the ``## Citation`` of the dataset's README."""
    path = Path(dataset_dir) / "README.md"
    text = path.read_text(encoding="utf-8")
    if DATASET_BEGIN in text and DATASET_END in text:  # re-render: drop the previous section
        start, end = text.index(DATASET_BEGIN), text.index(DATASET_END) + len(DATASET_END)
        text = text[:start].rstrip("\n") + "\n\n" + text[end:].lstrip("\n")
    section = render_dataset_section(hub_dir, namespace)
    anchor = text.find("\n## Citation")
    if anchor < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        text = text[:anchor].rstrip("\n") + "\n\n" + section + "\n" + text[anchor:].lstrip("\n")
    write_text_atomic(path, text)
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Render the README.md of assembled model folders from their measured files.")
    p.add_argument("folders", nargs="+", help="model folders in Hub layout (hub/iteration-head-parity ...)")
    p.add_argument("--namespace", required=True, help="Hub user or organisation of the repositories")
    args = p.parse_args(argv)
    for folder in args.folders:
        # A released folder: nothing but its card may have changed, and its manifest is re-recorded.
        released = (Path(folder) / verify.MANIFEST).is_file()
        found = [p for p in verify.problems(folder) if not p.startswith(str(Path(folder) / "README.md"))] if released else []
        if found:
            raise SystemExit("error: will not re-render a folder changed since the release: " + "; ".join(found))
        print(f"wrote {write_model_card(folder, args.namespace)}")
        if released:
            verify.write_manifest(folder)


if __name__ == "__main__":
    main()
