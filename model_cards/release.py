"""Release the Iteration Head suite on the Hub: train (or take) the runs, evaluate, analyse, assemble
``hub/`` in Hub layout and, with ``--push``, upload it.

The whole suite, trained here, then assembled (the lead's command; ~1 hour on a 2-core CPU)::

    python -m model_cards.release --out hub --namespace <org>

Reuse finished runs (``<runs-dir>/<key>/final``), e.g. to re-render after a template change; the
same runs give byte-identical folders::

    python -m model_cards.release --out hub --namespace <org> --take-existing
    python -m model_cards.release --out hub --namespace <org> --take-existing --push     # upload

A tiny end-to-end rehearsal (models of width 32 trained for a few steps; minutes)::

    python -m model_cards.release --out /tmp/hub --namespace test --runs-dir /tmp/runs --quick

For each model of the suite (``model_cards.suite``; ``--models`` picks some), progress is printed as
``[i/n] <repo>: <stage>``:

1. **train** -- ``python train.py recipe=<recipe> output_dir=<runs-dir>/<key>`` with
   ``snapshot_steps`` at every evaluation step (the fine-tuned model gets ``--init_from`` the
   polynomial run's ``final/``); skipped with ``--take-existing``.
2. **assemble** -- ``hub/<repo>/``: the files of ``final/`` (config, weights, tokenizer,
   generation config with the context as ``max_length``, ``training_info.json``), ``train_config.yaml``,
   the shipped code generated from the source (``configuration_itergpt.py``, ``modeling_itergpt.py``,
   ``hook_points.py``, ``analysis.py``, ``tasks.py``) so the model loads with ``trust_remote_code`` and the
   analysis runs next to it, and the stock GPT-2 copy ``gpt2/`` (``modeling.gpt2``: no remote code; TransformerLens
   boots it as it stands).
3. **held-out check** -- the evaluation rows are the test split of the model's task's dataset config
   (``parity``, ``parity_nocot``, ...); each must be in the test split the run held out
   (``training.data.TaskData``; a ``mix`` run holds out each task's own split), otherwise the release stops.
4. **evaluate** -- ``modeling.evaluation`` (under ``evaluate.py``) on those rows -> ``eval_results.json``.
5. **analyse** -- ``modeling.analysis.analyze`` -> ``analysis.json``, ``analysis.md``, attention
   map and emergence plot (PNG, metadata stripped); without chain of thought only the training curve.
6. **revisions** (``model_cards.revisions``) -- at most 4 snapshots, chosen along the rise of test
   accuracy: their config, weights and training info in ``hub/revisions/<repo>/step<N>/`` (published
   as branches ``step<N>``, completed at upload with the code and main's tokenizer; ``main`` is the final).
7. **card** -- ``README.md`` rendered by ``model_cards.render`` from the files above, then
   ``manifest.json`` (sha256 of every file; ``python -m model_cards.verify``) in every folder.

Every run is checked against its model, and the dataset's split agreed with the runs *and* with
the models already released in ``--out`` that this release leaves alone, before anything is
written. Then the release is built in a copy of ``--out`` beside it (``.<out>.staging-<pid>``),
checked, and swapped in with one atomic rename: an error, Ctrl-C, kill or full disk leaves the
previous release as it was. ``--out`` must be new, empty or a previous release.

The dataset ``hub/iteration-head-tasks`` is exported first (``datasets_builders.export``) with the
split parameters of the runs, so that its test split *is* the models' held-out split; its card gets
a section listing the models. ``hub/`` must stay under 45 MB (checked). Evaluation and analysis are
seeded and single-threaded by default (``--threads``, which also sets the threads of training), cards
carry no date and PNGs no metadata: the same runs give the same bytes.

``--push`` checks everything first (token, network, every folder, size) and uploads only then
(``model_cards.publish``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import yaml
from datasets_builders.files import check_writable, copy_tree, describe_os_error, staging_folder, swap_in
from datasets_builders.tasks import dataset_config_name
from datasets_builders.tokenizer import save_tokenizer
from training.run_folder import saved_steps

from . import ReleaseError, log, verify
from .publish import check_folders, hub_size, preflight_push, push_release
from .revisions import MODEL_CODE, copy_revisions, select_revisions, write_manifests
from .suite import DATASET_NAME, METRIC_NAME, SPACE_NAME, SUITE, SUITE_BY_KEY, ModelSpec, repo_id

REPO_ROOT = Path(__file__).resolve().parents[1]

# torch, transformers and datasets are imported by the stages that need them, so that a push that
# cannot happen (no token, offline) stops within a second.

__all__ = [
    "QUICK_TRAIN_ARGS",
    "analyse_folder",
    "assemble_folder",
    "dataset_parameters",
    "evaluate_folder",
    "heldout_test_rows",
    "main",
    "process_model",
    "strip_png_metadata",
]

SHIPPED_CODE = {**MODEL_CODE, "analysis.py": REPO_ROOT / "modeling" / "analysis.py",
                "tasks.py": REPO_ROOT / "datasets_builders" / "tasks.py"}
# Split parameters shared by the runs and the dataset (IterationTaskConfig fields).
SPLIT_KEYS = ("min_length", "max_length", "examples_per_length", "test_fraction", "seed")

#: ``--quick``: tiny models and short runs, for a rehearsal of the whole release in minutes.
QUICK_TRAIN_ARGS = ("model.n_embd=32", "data.max_length=4", "data.examples_per_length=64",
                    "optim.max_steps=30", "optim.warmup_steps=5", "optim.batch_size=64", "eval_every=10",
                    "eval_per_length=16", "save_every=0", "max_minutes=null", "target_accuracy=null",
                    "snapshot_steps=[10,20]")
QUICK_EVAL_N = 16
QUICK_ANALYSIS_N = 16


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def default_snapshot_steps(spec: ModelSpec, overrides: list[str]) -> list[int] | None:
    """Every evaluation step before ``max_steps``; None when the recipe or the overrides already
    choose ``snapshot_steps`` (then theirs are kept)."""
    from training.config import compose

    cfg = compose([f"recipe={spec.recipe}", *overrides])
    if cfg.snapshot_steps:
        return None
    return list(range(cfg.eval_every, cfg.optim.max_steps, cfg.eval_every))


def train_run(spec: ModelSpec, run_dir: Path, overrides: list[str], init_from: Path | None,
              retrain: bool, progress: bool, threads: int | None = None) -> None:
    """``train.py`` in a subprocess (its own accelerate state); raises ``ReleaseError`` on failure.

    ``threads``: ``OMP_NUM_THREADS`` of the subprocess (None: inherited).
    """
    overrides = list(overrides)
    steps = default_snapshot_steps(spec, overrides)
    if steps is not None:
        overrides.append(f"snapshot_steps={json.dumps(steps)}")
    cmd = [sys.executable, "train.py", f"recipe={spec.recipe}", f"output_dir={run_dir}", "report_to=none",
           *overrides]
    if init_from is not None:
        cmd.append(f"init_from={init_from}")
    if retrain:
        cmd.append("overwrite=true")
    if not progress:
        cmd.append("progress=false")
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    log("  $ " + (f"OMP_NUM_THREADS={threads} " if threads else "") + shlex.join(cmd))
    if subprocess.run(cmd, cwd=REPO_ROOT, env=env).returncode != 0:
        raise ReleaseError(f"training {spec.key} failed (command above); nothing was assembled for it")


# ---------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------
def dataset_parameters(train_configs: dict[str, dict]) -> dict:
    """The ``IterationTaskConfig`` overrides that make the dataset's splits those of the runs.

    Every run must share the split parameters (lengths, examples per length, test fraction, seed;
    modulus and polynomial among polynomial runs): the dataset has one
    test split per config. Only values that differ from the builder's defaults are returned.
    """
    from datasets_builders.iteration_tasks import IterationTaskConfig

    seen: dict[str, dict] = {}
    for name, tc in train_configs.items():
        d = tc["data"]
        if d.get("dataset"):
            raise ReleaseError(f"run {name} trained on data.dataset={d['dataset']!r}; the release exports its "
                               "own dataset from the builder: train from the builder (data.dataset: null)")
        if d.get("source") == "paper":
            continue  # the reference's own draws, not a builder split: tested on the rows it never drew
        values = {k: d[k] for k in SPLIT_KEYS}
        if "polynomial" in (d["task"], d.get("mix_with")):
            values["modulus"] = d["modulus"]
            values["polynomial"] = tuple(tuple(t) for t in d["polynomial"])
        # A mix run holds out each task's own test split (train.py), so its mix_ratio does not
        # shape the dataset: the dataset's `mix` config keeps the builder's ratio.
        for k, v in values.items():
            seen.setdefault(k, {}).setdefault(v, []).append(name)
    conflicts = {k: v for k, v in seen.items() if len(v) > 1}
    if conflicts:
        raise ReleaseError("the runs disagree on the data split, so one dataset cannot hold every model's "
                           "held-out test split: " + "; ".join(
                               f"data.{k}: " + ", ".join(f"{val!r} ({', '.join(names)})" for val, names in v.items())
                               for k, v in conflicts.items()))
    defaults = IterationTaskConfig.__dataclass_fields__
    out = {}
    for k, v in seen.items():
        value = next(iter(v))
        if value != defaults[k].default:
            out[k] = value
    return out


def export_dataset(out: Path, namespace: str, parameters: dict) -> Path:
    import datasets

    from datasets_builders.export import ALL_CONFIGS, export

    folder = out / DATASET_NAME
    datasets.disable_progress_bars()
    export(str(folder), ALL_CONFIGS, overwrite=True, repo_id=repo_id(namespace, DATASET_NAME), **parameters)
    return folder


def heldout_test_rows(train_config: dict, dataset_dir: Path, task: str,
                      n_per_length: int | None = None) -> tuple[list, list, dict]:
    """The test split of ``task``'s dataset config, checked to be held out from the run.

    Every row must be in the test split that the run held out, recomputed by ``training.data.TaskData``
    from its resolved config exactly as training did (a ``mix`` run holds out each of its tasks'
    own test split); otherwise ``ReleaseError``. A run on the reference's data (``data.source=paper``)
    has no such split, its train half being drawn with replacement from every sequence: it is tested
    on the rows its train half never drew (``modeling.evaluation.drop_trained_rows``, which
    ``evaluate.py`` applies the same way), and a length with none left is not evaluated. Keeps the
    first ``n_per_length`` rows of each length (all when None) before that. Returns ``(input_ids,
    lengths, summary)``; the summary goes to ``eval_results.json``.
    """
    from datasets_builders import tasks
    from datasets_builders.iteration_tasks import sequence_keys
    from modeling.evaluation import DatasetFormatError, drop_trained_rows, read_split
    from training.config import from_dict
    from training.data import TaskData

    data = train_config["data"]
    config = dataset_config_name(task, data["cot"])
    task_obj = tasks.make_task(task, data["modulus"], data["polynomial"])
    try:
        rows = read_split(str(dataset_dir), config, "test", {task: task_obj}, data["cot"], n_per_length=n_per_length)
    except DatasetFormatError as err:
        raise ReleaseError(str(err)) from None
    if not rows:
        raise ReleaseError(f"{dataset_dir.name}/{config} (test) holds no {task} row")
    summary = {"config": config, "split": "test"}
    if data.get("source") == "paper":
        kept, dropped = drop_trained_rows({L: block for (_, L), block in rows.items()}, data, task)
        if not kept:
            raise ReleaseError(f"the run drew every test row of {dataset_dir.name}/{config} for training: "
                               "nothing is left to evaluate it on")
        rows = {(task, L): block for L, block in kept.items()}
        summary["trained_rows_dropped"] = {str(L): n for L, n in sorted(dropped.items())}
        summary["lengths_not_evaluated"] = sorted(L for L in dropped if L not in kept)
        held_out = None
    else:
        held_out = TaskData(from_dict(train_config)).test_keys
    ids_out, lengths_out, outside = [], [], {}
    for (_, length), block in rows.items():
        if held_out is not None:
            keys = sequence_keys(block[:, 1:length + 1])
            n_out = sum(k not in held_out.get((task, length), ()) for k in keys)
            if n_out:
                outside[length] = n_out
        ids_out += block.tolist()
        lengths_out += [length] * len(block)
    if outside:
        raise ReleaseError(f"{sum(outside.values())} of the {len(ids_out)} test rows of {dataset_dir.name}/{config} "
                           f"are not in the run's held-out split (per length: {outside}): the model may have "
                           "trained on them. Export the dataset with the runs' data parameters.")
    return ids_out, lengths_out, {**summary, "rows": len(ids_out), "rows_outside_heldout_split": 0}


# ---------------------------------------------------------------------------------------------
# One model folder
# ---------------------------------------------------------------------------------------------
def check_run(run_dir: Path, spec: ModelSpec, namespace: str) -> dict:
    """The run's ``training_info.json``, checked to be a finished run of ``spec`` (its task, its
    base model); ``init_from`` (a local path in the run) is replaced by the base model's Hub id.
    Run by the release for every model before anything is written."""
    final = run_dir / "final"
    if not (final / "model.safetensors").is_file():
        raise ReleaseError(f"{run_dir} has no finished run (final/model.safetensors is missing)")
    info = json.loads((final / "training_info.json").read_text(encoding="utf-8"))
    train_config = info["train_config"]
    trained = train_config["data"]["task"]
    if spec.task not in (("copy", train_config["data"].get("mix_with", "parity")) if trained == "mix" else (trained,)):
        raise ReleaseError(f"run {run_dir} trained on {trained!r}, but {spec.key} is a "
                           f"{spec.task} model")
    if spec.init_from:
        info["init_from"] = repo_id(namespace, SUITE_BY_KEY[spec.init_from].repo)
    elif info.get("init_from"):
        raise ReleaseError(f"run {run_dir} was initialised from {info['init_from']!r}, but {spec.key} is "
                           "trained from scratch in the suite")
    saved = run_dir / "train_config.yaml"
    if saved.is_file() and yaml.safe_load(saved.read_text(encoding="utf-8")) != train_config:
        raise ReleaseError(f"{saved} differs from final/training_info.json: the run folder mixes two runs")
    return info


# The accuracy metric as the Hub Space that evaluate.load("<namespace>/sequence_accuracy") reads (the
# cards' model-index type): the module, its card (with the Space's YAML) and the Space's app, copied
# from the source folder by every release and --sync-code (tests/test_release.py checks the copy).
METRIC_SOURCE = REPO_ROOT / "metrics" / METRIC_NAME
METRIC_FILES = ("README.md", f"{METRIC_NAME}.py", "app.py")


def write_metric(out: Path) -> Path:
    """``<out>/sequence_accuracy/``: the shipped metric, copied from ``metrics/sequence_accuracy/``."""
    folder = out / METRIC_NAME
    folder.mkdir(parents=True, exist_ok=True)
    for name in METRIC_FILES:
        shutil.copyfile(METRIC_SOURCE / name, folder / name)
    return folder


def write_shipped_code(folder: Path) -> None:
    """The model code, ``analysis.py`` and ``tasks.py``, generated from the repository's source."""
    for name, source in SHIPPED_CODE.items():
        shutil.copyfile(source, folder / name)


def assemble_folder(run_dir: Path, folder: Path, spec: ModelSpec, namespace: str) -> dict:
    """Copy the run's final model, config and the shipped scripts into ``folder`` (made empty first;
    the release builds it in a staging copy of ``out``). Returns the resolved training config."""
    info = check_run(run_dir, spec, namespace)
    train_config = info["train_config"]
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for path in sorted((run_dir / "final").iterdir()):
        if path.is_file() and path.name not in ("training_info.json", "tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(path, folder / path.name)
    fit_generation_config(folder)
    # The tokenizer from the source (left padding, the model's context as model_max_length), not the
    # one an older run saved.
    save_tokenizer(str(folder), model_max_length=train_config["model"]["n_positions"])
    (folder / "training_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    (folder / "train_config.yaml").write_text(yaml.safe_dump(train_config, sort_keys=False), encoding="utf-8")
    write_shipped_code(folder)
    write_gpt2_copy(folder)
    return train_config


def fit_generation_config(folder: Path) -> None:
    """``generation_config.json`` carries ``max_length`` = the model's context (``n_positions``) when
    the run saved it without one (or with transformers' default 20, which cuts the chain of longer
    prompts): ``generate()`` alone then writes the whole chain, and IterGPT lets an explicit
    ``max_new_tokens`` take precedence without transformers' warning that both were set. Any other
    value is kept."""
    path = folder / "generation_config.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    if doc.get("max_length") in (None, 20):
        doc["max_length"] = json.loads((folder / "config.json").read_text(encoding="utf-8"))["n_positions"]
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")  # as transformers writes it


def write_gpt2_copy(folder: Path) -> bool:
    """``<folder>/gpt2/``: the model as a stock ``GPT2LMHeadModel`` (no remote code), when its
    architecture converts exactly; returns whether it did."""
    from modeling.gpt2 import ConversionError, write_gpt2
    try:
        write_gpt2(folder, folder / "gpt2")
        return True
    except ConversionError as err:
        log(f"  {folder.name}: no GPT-2 copy ({err})")
        return False


def evaluate_folder(folder: Path, namespace: str, spec: ModelSpec, train_config: dict, dataset_dir: Path,
                    n_per_length: int | None = None) -> dict:
    """Per-length accuracy on the held-out test split -> ``eval_results.json``.

    ``modeling.evaluation`` (the library under ``evaluate.py``) on the rows of
    :func:`heldout_test_rows`: teacher-forced, generated and final-answer accuracy per length, in
    its ``build_results`` document with Hub ids in the identity fields, plus the held-out check and
    the ``evaluate.py`` command that gives the same numbers from the Hub (a test checks it).
    """
    from transformers import AutoTokenizer

    from datasets_builders import tasks
    from modeling import evaluation as ev
    from modeling.analysis import load_model

    d = train_config["data"]
    cot = d["cot"]
    model = load_model(str(folder))
    ev.check_model(model)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    if tokenizer.convert_tokens_to_ids(list(tasks.VOCAB)) != list(range(tasks.VOCAB_SIZE)):
        raise ReleaseError(f"{folder}: the tokenizer does not map the task vocabulary to ids 0..{tasks.VOCAB_SIZE - 1}")
    task = tasks.make_task(spec.task, d["modulus"], [tuple(t) for t in d["polynomial"]])
    ids, lengths, heldout = heldout_test_rows(train_config, dataset_dir, spec.task, n_per_length)
    rows = ev.validate_rows(ids, lengths, task, cot, where=f"{DATASET_NAME}/{heldout['config']} (test)")
    n_positions = ev.n_positions_of(model)
    ev.check_lengths(rows, n_positions, cot)
    per_length = ev.evaluate_model(model, rows, cot=cot)
    rid, dataset_repo = repo_id(namespace, spec.repo), repo_id(namespace, DATASET_NAME)
    dataset = {"name": DATASET_NAME, "type": dataset_repo, "config": heldout["config"], "split": "test"}
    results = ev.build_results(per_length, model_name=rid, task=spec.task, cot=cot, dataset=dataset,
                               n_positions=n_positions, train_max_length=d["max_length"],
                               sources={L: "test" for L in rows}, extra={"seed": 0, "use_cache": True})
    results["command"] = (f"python evaluate.py --model {rid} --task {spec.task}" + ("" if cot else " --no-cot")
                          + f" --train-max-length {d['max_length']}"
                          + (f" --modulus {d['modulus']}" if spec.task == "polynomial" else "")
                          + f" --dataset {dataset_repo} --split test"
                          + (f" --n-per-length {n_per_length}" if n_per_length else ""))
    results["heldout_check"] = {"dataset": dataset_repo, **heldout}
    (folder / "eval_results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def analyse_folder(folder: Path, run_dir: Path, rid: str, task_name: str, train_config: dict, n: int,
                   modes: tuple[str, ...], progress: bool) -> dict:
    """``analysis.json`` / ``analysis.md`` / figures in ``folder``.

    With chain of thought: ``modeling.analysis.analyze`` on ``task_name`` and the training lengths
    (head scores, attention map of the longest length, ablations, emergence plot from the run).
    Without: the head scores do not apply (they are defined on chain-of-thought positions); the
    report holds the run's test-accuracy curve and its plot.
    """
    from datasets_builders import tasks
    from modeling import analysis

    d = train_config["data"]
    if d["cot"]:
        model = analysis.load_model(str(folder))
        task = tasks.make_task(task_name, d["modulus"], [tuple(t) for t in d["polynomial"]])
        lengths = list(range(d["min_length"], d["max_length"] + 1))
        has_curve = (run_dir / "metrics.jsonl").is_file() or bool(saved_steps(run_dir / "snapshots"))
        report = analysis.analyze(model, task, lengths, n=n, out=str(folder), seed=0, modes=modes,
                                  run_dir=str(run_dir) if has_curve else None, progress=progress, model_name=rid)
    else:
        points = analysis.read_training_points(str(run_dir / "metrics.jsonl"), task_name)
        report = {"model": rid, "task": task_name, "cot": False,
                  "note": "no chain of thought: the iteration-head scores (attention from the query that "
                          "writes s_t to x_t) do not apply; the training curve is the run's test accuracy",
                  "training": points, "figures": {}}
        if points:
            analysis.plot_training(points, str(folder / "emergence.png"),
                                   title="Test accuracy during training (no chain of thought)")
            report["figures"]["emergence"] = "emergence.png"
        (folder / "analysis.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
        (folder / "analysis.md").write_text(
            f"# Analysis: {rid} on {task_name} without chain of thought\n\n{report['note']}.\n\n"
            + ("![emergence](emergence.png)\n" if points else ""), encoding="utf-8")
    for png in sorted(folder.glob("*.png")):
        strip_png_metadata(png)
    return report


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_METADATA = {b"tEXt", b"zTXt", b"iTXt", b"tIME"}


def strip_png_metadata(path: str | os.PathLike) -> None:
    """Drop the text and time chunks of a PNG (matplotlib writes its version there): pixels only."""
    data = Path(path).read_bytes()
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError(f"{path} is not a PNG file")
    kept, pos = [_PNG_SIGNATURE], len(_PNG_SIGNATURE)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        end = pos + 12 + length  # length, type, data, crc
        if data[pos + 4:pos + 8] not in _PNG_METADATA:
            kept.append(data[pos:end])
        pos = end
    Path(path).write_bytes(b"".join(kept))


def released_namespace(folder: Path) -> str:
    """The namespace a model folder was released under (its ``eval_results.json`` names the model)."""
    model = json.loads((folder / "eval_results.json").read_text(encoding="utf-8")).get("model", "")
    namespace, _, name = model.rpartition("/")
    if not namespace or name != folder.name:
        raise ReleaseError(f"{folder}/eval_results.json names the model {model!r}, not <namespace>/{folder.name}")
    return namespace


def sync_shipped_code(out: Path, specs: list[ModelSpec], namespace: str | None = None) -> list[Path]:
    """Regenerate what every released folder in ``out`` ships from the source (model code, analysis,
    tasks, tokenizer, GPT-2 copy, the context as ``generation_config.json``'s ``max_length``, the card
    from its template) and re-record the manifests, after a change to the source, without re-running
    the release. Each folder must verify first: a tampered folder is not re-signed. ``namespace``
    (default: the one each folder was released under) must be the released one."""
    from . import render

    write_metric(out)
    done = []
    for spec in specs:
        folder = out / spec.repo
        if not folder.is_dir():
            continue
        released = released_namespace(folder)
        if namespace is not None and namespace != released:
            raise ReleaseError(f"{folder} was released under --namespace {released}, not {namespace}: pass "
                               f"--namespace {released} (a new namespace needs a release, not --sync-code)")
        stale = {str(folder / name) for name in (*SHIPPED_CODE, "tokenizer.json", "tokenizer_config.json")}
        found = [p for p in verify.problems(folder)
                 if p.split(":")[0] not in stale and not p.startswith(str(folder / "gpt2"))]
        for step in render.revision_steps(out, spec.repo):
            found += verify.problems(out / "revisions" / spec.repo / f"step{step}")
        if found:
            raise ReleaseError("will not re-record a folder changed since the release: " + "; ".join(found))
        write_shipped_code(folder)
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        save_tokenizer(str(folder), model_max_length=config["n_positions"])
        fit_generation_config(folder)
        write_gpt2_copy(folder)
        render.write_model_card(folder, released, spec, out)
        write_manifests(out, spec)
        done.append(folder)
    return done


def process_model(spec: ModelSpec, run_dir: Path, out: Path, namespace: str, dataset_dir: Path,
                  eval_n: int | None = None, analysis_n: int = 256, modes: tuple[str, ...] = ("zero", "mean"),
                  threads: int = 1, progress: bool = False, step_label: str = "") -> Path:
    """Stages 2-6 for one model (the card is rendered once every model is done)."""
    import torch
    from transformers.utils import logging as transformers_logging

    if threads:
        torch.set_num_threads(threads)
    transformers_logging.disable_progress_bar()  # "Loading weights" bars: noise in the release log
    folder = out / spec.repo
    rid = repo_id(namespace, spec.repo)
    log(f"{step_label}{spec.repo}: assemble from {run_dir}")
    train_config = assemble_folder(run_dir, folder, spec, namespace)
    log(f"{step_label}{spec.repo}: held-out check and evaluation on "
        f"{DATASET_NAME}/{dataset_config_name(spec.task, train_config['data']['cot'])} (test)")
    results = evaluate_folder(folder, namespace, spec, train_config, dataset_dir, eval_n)
    log(f"{step_label}{spec.repo}: " + "; ".join(f"{m['name'].split(',')[0]} {m['value']:.4f}"
                                                  for m in results["results"][0]["metrics"]))
    log(f"{step_label}{spec.repo}: analyse")
    report = analyse_folder(folder, run_dir, rid, spec.task, train_config, analysis_n, modes, progress)
    snapshots = saved_steps(run_dir / "snapshots")
    info = json.loads((folder / "training_info.json").read_text(encoding="utf-8"))
    from modeling.analysis import read_training_points

    points = report.get("training") or read_training_points(str(run_dir / "metrics.jsonl"), spec.task)
    steps = select_revisions(snapshots, info["step"], points)
    copy_revisions(run_dir, out, spec, steps)
    log(f"{step_label}{spec.repo}: revisions {', '.join(f'step{s}' for s in steps) or 'none'} "
        f"(of {len(snapshots)} snapshots)")
    return folder


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def _parse_runs(items: list[str]) -> dict[str, Path]:
    out = {}
    for item in items:
        key, sep, path = item.partition("=")
        if not sep or key not in SUITE_BY_KEY:
            raise ReleaseError(f"--run {item!r}: write KEY=PATH with KEY one of {', '.join(SUITE_BY_KEY)}")
        out[key] = Path(path)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model_cards.release", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="models: " + ", ".join(f"{s.key} ({s.repo})" for s in SUITE))
    p.add_argument("--out", required=True, help="release folder in Hub layout (e.g. hub)")
    p.add_argument("--namespace", required=True, help="Hub user or organisation of the repositories")
    p.add_argument("--runs-dir", default="runs/release", help="where the runs are trained / taken (<runs-dir>/<key>)")
    p.add_argument("--run", action="append", default=[], metavar="KEY=PATH",
                   help="take this run folder for KEY instead of <runs-dir>/<key> (implies it exists)")
    p.add_argument("--models", nargs="+", default=[s.key for s in SUITE], choices=list(SUITE_BY_KEY), metavar="KEY",
                   help="models to release (default: the whole suite)")
    p.add_argument("--take-existing", action="store_true", help="use finished runs, train nothing")
    p.add_argument("--retrain", action="store_true", help="train again over finished runs (train.py overwrite=true)")
    p.add_argument("--train-args", default="", help='extra train.py overrides, e.g. "optim.max_steps=60 model.n_embd=32"')
    p.add_argument("--quick", action="store_true",
                   help="tiny rehearsal: " + " ".join(QUICK_TRAIN_ARGS) + f"; {QUICK_EVAL_N} eval rows and "
                        f"{QUICK_ANALYSIS_N} analysis rows per length")
    p.add_argument("--eval-n", type=int, default=None, help="test rows per length to evaluate (default: all)")
    p.add_argument("--analysis-n", type=int, default=256, help="random sequences per length for the analysis")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads of training (OMP_NUM_THREADS of train.py), evaluation and analysis; 0: "
                        "torch's default. Tiny models on a shared 2-core CPU run far faster on 1 (default)")
    p.add_argument("--push", action="store_true", help="upload to the Hub after every check passed")
    p.add_argument("--sync-code", action="store_true",
                   help="only regenerate what the released folders in --out ship from the source (code, "
                        "tokenizer, GPT-2 copy, generation config's max_length, card) and re-record their "
                        "manifests (each must verify first; --namespace must be the released one)")
    p.add_argument("--private", action="store_true", help="create private repositories")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except ReleaseError as err:
        raise SystemExit(f"release: error: {err}") from None
    except OSError as err:  # a full disk, a read-only folder: the previous release is untouched
        raise SystemExit("release: error: " + describe_os_error(err, "cannot write the release")
                         + "; the previous release is unchanged") from None


def check_out_folder(out: Path) -> None:
    """``out`` must be new, empty or a previous release: the release rewrites it as a whole (a
    copy built aside, then swapped in), so a folder with anything else in it is refused."""
    if out.exists() and not out.is_dir():
        raise ReleaseError(f"--out {out} is a file: give a folder (e.g. hub)")
    if not out.is_dir():
        return
    known = {DATASET_NAME, SPACE_NAME, METRIC_NAME, "revisions"} | {s.repo for s in SUITE}
    foreign = sorted(p.name for p in out.iterdir() if p.name not in known and not p.name.startswith("."))
    if foreign:
        raise ReleaseError(f"--out {out} holds {', '.join(foreign[:5])}, which no release wrote: give an empty "
                           "folder or a previous release folder; nothing was changed")


def released_configs(out: Path, specs: list[ModelSpec]) -> dict[str, dict]:
    """Training configs of the models already released in ``out`` that this release leaves as they
    are: their held-out claims point at the dataset's split, so it must keep it."""
    keep = {}
    for spec in SUITE:
        info = out / spec.repo / "training_info.json"
        if spec not in specs and info.is_file():
            keep[f"{spec.key} (released in {out.name}, not in --models)"] = json.loads(info.read_text())["train_config"]
    return keep


def finish_release(out: Path, namespace: str, specs: list[ModelSpec], dataset_dir: Path) -> None:
    """Cards, the dataset card's model list, manifests, and every check of the finished folder."""
    from . import render

    log(f"metric: {write_metric(out)}")
    for spec in specs:
        log(f"card: {render.write_model_card(out / spec.repo, namespace, spec, out)}")
    render.add_models_to_dataset_card(dataset_dir, out, namespace)
    for spec in specs:
        write_manifests(out, spec)
    check_folders(out, specs)


def train_runs(args, specs: list[ModelSpec], runs: dict[str, Path], given: dict[str, Path]) -> None:
    """Stage 1: train (or take) every run the release needs, base models first."""
    bases = {s.init_from for s in specs if s.init_from}
    needed = [s for s in SUITE if s in specs or s.key in bases]
    overrides = (list(QUICK_TRAIN_ARGS) if args.quick else []) + shlex.split(args.train_args)
    progress = sys.stderr.isatty()
    for i, spec in enumerate(needed, 1):
        run_dir, done = runs[spec.key], (runs[spec.key] / "final" / "model.safetensors").is_file()
        if args.take_existing or spec.key in given:
            if not done:
                raise ReleaseError(f"{spec.key}: {run_dir} holds no finished run (final/); train it first "
                                   "(drop --take-existing)")
            log(f"[{i}/{len(needed)}] {spec.repo}: take the finished run {run_dir}")
            continue
        if done and not args.retrain:
            raise ReleaseError(f"{spec.key}: {run_dir} already holds a finished run: pass --take-existing to "
                               "use it or --retrain to train it again")
        log(f"[{i}/{len(needed)}] {spec.repo}: train (recipe {spec.recipe})")
        init = runs[spec.init_from] / "final" if spec.init_from else None
        train_run(spec, run_dir, overrides, init, args.retrain, progress, args.threads)


def run(args) -> None:
    started = time.perf_counter()
    if args.push:
        preflight_push()  # before hours of training; checked again right before uploading
    if args.take_existing and args.retrain:
        raise ReleaseError("--take-existing and --retrain exclude each other")
    # Absolute paths: train.py runs with the repository root as working directory.
    out, runs_dir = Path(args.out).resolve(), Path(args.runs_dir).resolve()
    specs = [SUITE_BY_KEY[k] for k in SUITE_BY_KEY if k in args.models]
    check_out_folder(out)
    if args.sync_code:
        for folder in sync_shipped_code(out, specs, args.namespace):
            log(f"code, card and manifest regenerated: {folder}")
        return
    check_writable(out.parent)
    given = _parse_runs(args.run)
    runs = {s.key: given.get(s.key, runs_dir / s.key).resolve() for s in SUITE}
    train_runs(args, specs, runs, given)

    # Every run checked against its model, and the dataset's split agreed, before anything is written.
    infos = {s.key: check_run(runs[s.key], s, args.namespace) for s in specs}
    parameters = dataset_parameters({**{k: i["train_config"] for k, i in infos.items()}, **released_configs(out, specs)})
    eval_n = args.eval_n or (QUICK_EVAL_N if args.quick else None)
    analysis_n = QUICK_ANALYSIS_N if args.quick else args.analysis_n
    # The whole release is built in a copy of `out` beside it, checked, then swapped in at once:
    # an error, Ctrl-C or kill leaves the previous release as it was.
    with staging_folder(out) as stage:
        if out.is_dir():
            copy_tree(out, stage)
        log(f"dataset: export {DATASET_NAME} ({', '.join(f'{k}={v}' for k, v in parameters.items()) or 'builder defaults'})")
        dataset_dir = export_dataset(stage, args.namespace, parameters)
        for i, spec in enumerate(specs, 1):
            process_model(spec, runs[spec.key], stage, args.namespace, dataset_dir, eval_n, analysis_n,
                          threads=args.threads, progress=sys.stderr.isatty(), step_label=f"[{i}/{len(specs)}] ")
        finish_release(stage, args.namespace, specs, dataset_dir)
        swap_in(stage, out)
    sizes = ", ".join(f"{p.name} {hub_size(p) / 1e6:.2f} MB" for p in sorted(out.iterdir()) if p.is_dir())
    log(f"done in {time.perf_counter() - started:.0f} s: {out} holds {hub_size(out) / 1e6:.2f} MB ({sizes})")
    if args.push:
        for url in push_release(out, args.namespace, specs, args.private):
            log(f"uploaded {url}")


if __name__ == "__main__":
    main()
