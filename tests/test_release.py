"""The release: model cards from measured files, the release pipeline, the published folders, push.

Fast tests (seconds, no training): a *fake run* holds the hand-built iteration-head model of
``modeling/construction.py`` -- the *copy* circuit, labelled as a parity run, so that its parity
accuracy is exact but not trivial (a row is right only when its first ``L-1`` bits are 0: accuracy
``2 / 2^L``) -- and the release pipeline (held-out check, ``evaluate.py``, analysis, revisions, card)
runs on it for real.

Tests marked by ``HUB`` check the released folders ``hub/`` (made by ``python -m model_cards.release
--out hub --namespace <org>``) the way a user meets them: a Hugging Face cache populated by hand,
a fresh process, no repository code. They skip only when ``hub/`` is absent. ``ITERATION_HEAD_HUB``
points them at another release folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from training.config import TrainConfig, from_dict, to_dict, validate
from datasets_builders import tasks
from datasets_builders.iteration_tasks import sequence_keys
from datasets_builders.tokenizer import build_tokenizer
from model_cards import publish, release, render, revisions
from model_cards.suite import DATASET_NAME, METRIC_NAME, SPACE_NAME, SUITE, SUITE_BY_KEY
from modeling import IterGPTForCausalLM
from modeling.construction import build_iteration_head_model
from helpers import ROOT, clean_env, hub_mark, run_cli

HUB = Path(os.environ.get("ITERATION_HEAD_HUB", ROOT / "hub"))
NS = "iteration-head-test"
LENGTHS = (1, 6)  # the fake runs' training lengths
HUB_MODELS = ("parity", "polynomial", "copy", "dihedral3")


# ---------------------------------------------------------------------------------------------
# A fake run and the release pipeline on it (no training)
# ---------------------------------------------------------------------------------------------
def make_run(run_dir: Path, final_model, snapshots: dict, values: dict, final_step: int) -> dict:
    """A run folder as train.py writes it: train_config.yaml, snapshots/step_<N>/, final/."""
    cfg = from_dict(values)
    validate(cfg)
    config = to_dict(cfg)
    run_dir.mkdir(parents=True)
    (run_dir / "train_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    tokenizer = build_tokenizer()
    for step, model in snapshots.items():
        save_model_folder(run_dir / "snapshots" / f"step_{step}", model, tokenizer, {"step": step})
    info = {"step": final_step, "stop_reason": "hand-built (test)", "time_s": 0.0, "train_config": config,
            "init_from": None, "test": {}}
    save_model_folder(run_dir / "final", final_model, tokenizer, info)
    return config


def save_model_folder(path: Path, model, tokenizer, info: dict) -> None:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "training_info.json").write_text(json.dumps(info, indent=2))


@pytest.fixture(scope="module")
def fake_release(tmp_path_factory):
    """``hub/`` of a two-model release made by the real pipeline (no training).

    ``parity``: a *mix* run (parity + 30 % copy rows, as the parity recipe trains) holding the copy
    circuit, with two snapshots; ``copy``: a copy run holding the same (exact) circuit, no snapshot.
    """
    root = tmp_path_factory.mktemp("release")
    hand = build_iteration_head_model("copy", n_positions=24)  # see the module doc
    torch.manual_seed(0)
    untrained = IterGPTForCausalLM(hand.config).eval()
    data = {"min_length": LENGTHS[0], "max_length": LENGTHS[1], "examples_per_length": 64}
    common = {"model": {"n_positions": 24}, "eval_per_length": 16}
    configs = {
        "parity": make_run(root / "runs" / "parity", hand, {0: untrained, 100: hand},
                           {**common, "data": {**data, "task": "mix", "mix_ratio": 0.3}}, final_step=200),
        "copy": make_run(root / "runs" / "copy", hand, {}, {**common, "data": {**data, "task": "copy"}}, final_step=50),
        # The paper's data: 16 draws per length with replacement, 8 for training, so it trained on
        # every sequence of the shortest lengths and on some of each longer one's test rows.
        "parity-paper": make_run(root / "runs" / "parity-paper", hand, {}, {**common, "data": {
            **data, "task": "parity", "source": "paper", "examples_per_length": 16, "packing": False}}, final_step=80),
    }
    out = root / "hub"
    out.mkdir()
    dataset = release.export_dataset(out, NS, release.dataset_parameters(configs))

    def run_pipeline():
        for key in configs:
            release.process_model(SUITE_BY_KEY[key], root / "runs" / key, out, NS, dataset, analysis_n=16,
                                  modes=("zero",))
        release.finish_release(out, NS, [SUITE_BY_KEY[key] for key in configs], dataset)

    run_pipeline()
    return {"root": root, "out": out, "dataset": dataset, "folder": out / "iteration-head-parity",
            "copy": out / "iteration-head-copy", "paper": out / "iteration-head-parity-paper-recipe",
            "config": configs["parity"], "paper_config": configs["parity-paper"], "rerun": run_pipeline}


def front_matter(card: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", card, re.S)
    assert match, "the card has no YAML front matter"
    return yaml.safe_load(match.group(1))


def section(card: str, heading: str) -> str:
    """The text under ``heading`` (e.g. ``## Evaluation``) up to the next heading of that level or above."""
    level = heading.split(" ")[0]
    lines, inside, fenced = [], False, False
    for line in card.splitlines():
        if line.startswith("```"):
            fenced = not fenced  # a "# comment" in a code block is no heading
        if not fenced and line.strip() == heading:
            inside = True
            continue
        if inside and not fenced and re.match(r"#{1,%d} " % len(level), line):
            break
        if inside:
            lines.append(line)
    assert inside, f"no {heading!r} section"
    return "\n".join(lines)


def table_rows(text: str) -> list[list[str]]:
    """Body rows of the first Markdown table of ``text``."""
    rows: list[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break  # the end of the first table
    return [[c.strip() for c in r.strip("|").split("|")] for r in rows[2:]]


def python_blocks(text: str) -> str:
    return "\n".join(re.findall(r"```python\n(.*?)```", text, re.S))


def test_card_model_index_equals_eval_results(fake_release):
    """Every YAML model-index value is the one in eval_results.json (parsed two ways); every metric's
    type is the shipped metric (``<namespace>/sequence_accuracy``, written beside the models) and its
    config the measurement (eval_results.json's type)."""
    folder = fake_release["folder"]
    results = json.loads((folder / "eval_results.json").read_text())
    card = (folder / "README.md").read_text()
    meta = front_matter(card)
    shipped = f"{NS}/{METRIC_NAME}"
    assert meta["model-index"] == [{"name": "iteration-head-parity", "results": [
        {**e, "metrics": [{**m, "type": shipped, "config": m["type"]} for m in e["metrics"]]}
        for e in results["results"]]}]
    values = [m["value"] for e in results["results"] for m in e["metrics"]]
    assert any(0 < v < 1 for v in values), "the fake run must give non-trivial accuracies"
    from huggingface_hub import ModelCard

    loaded = ModelCard.load(folder / "README.md").data.eval_results
    assert [(r.metric_type, r.metric_config, r.metric_value, r.dataset_type, r.dataset_config, r.dataset_split)
            for r in loaded] == [
        (shipped, m["type"], m["value"], e["dataset"]["type"], e["dataset"]["config"], e["dataset"]["split"])
        for e in results["results"] for m in e["metrics"]]
    metric = fake_release["out"] / METRIC_NAME
    assert sorted(p.name for p in metric.iterdir()) == sorted(release.METRIC_FILES)
    for name in release.METRIC_FILES:
        assert (metric / name).read_bytes() == (release.METRIC_SOURCE / name).read_bytes(), name
    assert results["results"][0]["dataset"]["type"] == f"{NS}/{DATASET_NAME}"
    assert results["results"][0]["dataset"]["config"] == "parity"  # a mix run holds out parity's own split


def test_card_per_length_table_equals_eval_results(fake_release):
    folder = fake_release["folder"]
    per = json.loads((folder / "eval_results.json").read_text())["per_length"]
    rows = table_rows(section((folder / "README.md").read_text(), "## Evaluation"))
    assert [r[0] for r in rows] == [str(L) for L in range(LENGTHS[0], LENGTHS[1] + 1)] == sorted(per, key=int)
    for L, n, teacher, generated, final in rows:
        r = per[L]
        assert int(n) == r["n"]
        for cell, key in ((teacher, "teacher_forced"), (generated, "generated"), (final, "generated_final")):
            assert float(cell) == round(r[key], render.ACCURACY_DIGITS), (L, key)
    # The copy circuit on parity rows is right exactly when the first L-1 bits are 0 (module doc).
    ids, lengths, _ = release.heldout_test_rows(fake_release["config"], fake_release["dataset"], "parity")
    for L in map(int, per):
        rows = [np.asarray(i) for i, n in zip(ids, lengths) if n == L]
        assert per[str(L)]["n"] == len(rows)
        assert per[str(L)]["teacher_forced"] == np.mean([not r[1:L].any() for r in rows]), L


def test_card_other_numbers_come_from_files(fake_release):
    folder = fake_release["folder"]
    card = (folder / "README.md").read_text()
    analysis = json.loads((folder / "analysis.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    assert render.sha256_file(folder / "model.safetensors") in card
    n_params = sum(t.numel() for t in IterGPTForCausalLM.from_pretrained(folder).state_dict().values())
    assert f"| parameters | {n_params:,} |" in card
    assert f"| residual width (d_model) | {config['n_embd']} |" in card
    heads = table_rows(section(card, "## Iteration head"))
    assert len(heads) == len(analysis["heads"]) == 2
    for row, h in zip(heads, analysis["heads"]):
        assert [int(row[0]), int(row[1])] == [h["layer"], h["head"]]
        assert [float(c) for c in row[2:6]] == [round(h[k], 3) for k in
                                                ("first_mean", "iteration_mean", "iteration_frac", "iteration_invariance")]
    assert analysis["iteration_heads"] == [[1, 0]] and "Iteration head: **layer 1 head 0**" in card
    for name in analysis["figures"].values():  # relative links to the PNGs the analysis wrote
        assert f"]({name})" in card and (folder / name).is_file()
    steps = table_rows(section(card, "### Intermediate checkpoints"))
    assert [r[0] for r in steps] == ["`step0`", "`step100`"]
    assert "<org>" not in card


def test_card_metadata(fake_release):
    folder = fake_release["folder"]
    meta = front_matter((folder / "README.md").read_text())
    assert meta["license"] == "mit" and meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "text-generation"
    assert {"iteration-head", "chain-of-thought", "interpretability"} <= set(meta["tags"])
    assert meta["datasets"] == [f"{NS}/{DATASET_NAME}"]
    assert "base_model" not in meta
    tuned = render.render_model_card(folder, NS, SUITE_BY_KEY["parity-from-polynomial"], fake_release["out"])
    meta = front_matter(tuned)
    assert meta["base_model"] == f"{NS}/iteration-head-polynomial"
    assert meta["base_model_relation"] == "finetune"
    assert "--init_from iteration-head-test/iteration-head-polynomial" in tuned


def test_release_folder_layout(fake_release):
    out, folder = fake_release["out"], fake_release["folder"]
    publish.check_folders(out, [SUITE_BY_KEY["parity"]])
    assert sorted(p.name for p in (out / "revisions" / "iteration-head-parity").iterdir()) == ["step0", "step100"]
    info = json.loads((folder / "training_info.json").read_text())
    assert info["train_config"] == yaml.safe_load((folder / "train_config.yaml").read_text())
    results = json.loads((folder / "eval_results.json").read_text())
    assert "seconds" not in results and results["model"] == f"{NS}/iteration-head-parity"
    assert results["heldout_check"]["rows_outside_heldout_split"] == 0
    assert (folder / "analysis.py").read_bytes() == (ROOT / "modeling" / "analysis.py").read_bytes()
    # generate() alone never cuts a chain; the stock GPT-2 copy boots in TransformerLens (unknown token)
    assert json.loads((folder / "generation_config.json").read_text())["max_length"] == 24
    assert json.loads((folder / "gpt2" / "tokenizer_config.json").read_text())["unk_token"] == "<bos>"
    card = (folder / "README.md").read_text()
    assert "### Stock GPT-2, TransformerLens, nnsight" in card and "maps to `<bos>` (id 60)" in card
    assert "TransformerBridge.boot_transformers(" in card and "materialize_hooks=True needed" in card
    dataset_card = (out / DATASET_NAME / "README.md").read_text()
    assert dataset_card.index("## Models trained on this data") < dataset_card.index("## Citation")
    assert "[iteration-head-parity](https://huggingface.co/iteration-head-test/iteration-head-parity)" in dataset_card


def test_generation_config_gets_the_context_as_max_length(tmp_path):
    """A run saved without max_length (or with transformers' 20) is released with the context; any
    other value is kept."""
    (tmp_path / "config.json").write_text(json.dumps({"n_positions": 48}))
    for saved, released in (({}, 48), ({"max_length": 20}, 48), ({"max_length": 30}, 30)):
        (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 62, **saved}))
        release.fit_generation_config(tmp_path)
        assert json.loads((tmp_path / "generation_config.json").read_text()) == {"eos_token_id": 62,
                                                                                "max_length": released}


def test_sync_code_on_an_up_to_date_release_changes_nothing_and_keeps_its_namespace(fake_release, tmp_path):
    """--sync-code regenerates code, tokenizer, gpt2/, generation config and card from the source: on
    a release made by this source, the same bytes. Another namespace is refused (cards and
    eval_results.json would disagree)."""
    out = tmp_path / "hub"
    shutil.copytree(fake_release["out"], out)
    files = lambda: {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}  # noqa: E731
    before = files()
    with pytest.raises(SystemExit, match=f"released under --namespace {NS}, not someone-else"):
        release.main(["--out", str(out), "--namespace", "someone-else", "--sync-code", "--models", "parity"])
    release.main(["--out", str(out), "--namespace", NS, "--sync-code", "--models", "parity", "copy"])
    after = files()
    assert sorted(after) == sorted(before)
    assert [str(k) for k in after if after[k] != before[k]] == []


def test_release_is_byte_identical_when_rerun(fake_release):
    """Same run, same release: evaluation, analysis, PNGs and cards are deterministic."""
    out = fake_release["out"]

    def digest() -> dict:
        return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(out.rglob("*")) if p.is_file()}

    before = digest()
    fake_release["rerun"]()
    assert digest() == before
    for png in out.rglob("*.png"):
        data = png.read_bytes()
        assert not any(chunk in data for chunk in (b"tEXt", b"iTXt", b"zTXt", b"tIME")), png


@pytest.mark.parametrize("change", [{"seed": 1}, {"test_fraction": 0.1}])
def test_heldout_check_catches_a_foreign_split(fake_release, change):
    """A dataset whose test split is not the one the run held out stops the release."""
    config = json.loads(json.dumps(fake_release["config"]))
    config["data"].update(change)
    with pytest.raises(release.ReleaseError, match="not in the run's held-out split"):
        release.heldout_test_rows(config, fake_release["dataset"], "parity")


@pytest.mark.parametrize("model", ["folder", "paper"])
def test_published_evaluate_command_gives_the_same_numbers(fake_release, model):
    """The card tells users an evaluate.py command: it reproduces eval_results.json (for the
    mix-trained parity model, on parity's own test split; for the paper-recipe run, on the rows of
    that split it never drew, which evaluate.py finds from the checkpoint's training_info.json)."""
    from modeling import evaluate_cli as cli

    folder = fake_release[model]
    results = json.loads((folder / "eval_results.json").read_text())
    assert results["command"] in (folder / "README.md").read_text()
    argv = shlex.split(results["command"])[2:]
    local = {f"{NS}/{folder.name}": str(folder), f"{NS}/{DATASET_NAME}": str(fake_release["dataset"])}
    argv = [local.get(a, a) for a in argv] + ["--out", str(fake_release["root"] / "cli_eval.json")]
    again = cli.main(argv)
    assert again["results"][0]["metrics"] == results["results"][0]["metrics"]
    assert {L: {k: v for k, v in r.items()} for L, r in again["per_length"].items()} == results["per_length"]
    assert again.get("trained_rows_dropped") == results["heldout_check"].get("trained_rows_dropped")


@pytest.mark.integration
def test_the_paper_recipe_cards_command_with_the_hub_id_drops_the_same_rows(fake_release, tmp_path):
    """As a user runs the card's command: evaluate.py in a fresh process, the model by its Hub id from
    a Hugging Face cache (offline). The rows it trained on are found from the repository's
    training_info.json, not from a local run folder, and the numbers are eval_results.json's."""
    folder = fake_release["paper"]
    results = json.loads((folder / "eval_results.json").read_text())
    home = tmp_path / "hf_home"
    hub_cache(home, folder, results["model"])
    argv = shlex.split(results["command"])[1:]
    argv = [str(fake_release["dataset"]) if a == f"{NS}/{DATASET_NAME}" else a for a in argv]
    out = tmp_path / "eval.json"
    proc = run_cli([sys.executable, *argv, "--out", str(out)],
                   env_extra={"HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub")}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads(out.read_text())
    assert again["per_length"] == results["per_length"]
    assert again["trained_rows_dropped"] == results["heldout_check"]["trained_rows_dropped"]
    assert "drew them for training" in proc.stderr


def test_a_paper_recipe_run_is_released_on_the_test_rows_it_never_drew(fake_release):
    """A data.source=paper run has no held-out split (its train half is drawn with replacement): the
    release evaluates it on the dataset's test rows that its train half never drew, counted here
    from the draws themselves, leaves out the lengths with none, and its card says so. Its other
    split parameters need not match the dataset's."""
    import datasets

    from datasets_builders.iteration_tasks import paper_split_inputs

    folder, data = fake_release["paper"], fake_release["paper_config"]["data"]
    assert data["examples_per_length"] != 64  # the dataset's: no agreement is asked of a paper run
    results = json.loads((folder / "eval_results.json").read_text())
    test = datasets.load_dataset(str(fake_release["dataset"]), "parity", split="test")
    parity = tasks.make_task("parity")
    kept, dropped = {}, {}
    for L in range(LENGTHS[0], LENGTHS[1] + 1):
        train = {bytes(x.astype(np.uint8)) for x in paper_split_inputs(parity, L, 16, data["seed"])["train"]}
        rows = [np.asarray(i)[1:L + 1] for i, n in zip(test["input_ids"], test["length"]) if n == L]
        trained = sum(bytes(r.astype(np.uint8)) in train for r in rows)
        dropped[str(L)] = trained
        if len(rows) > trained:
            kept[str(L)] = len(rows) - trained
    assert {L: r["n"] for L, r in results["per_length"].items()} == kept
    check = results["heldout_check"]
    assert check["trained_rows_dropped"] == {L: n for L, n in dropped.items() if n}
    gone = [L for L in range(LENGTHS[0], LENGTHS[1] + 1) if str(L) not in kept]
    assert gone and check["lengths_not_evaluated"] == gone and len(kept) >= 2  # a test that could fail
    span = f"L={min(map(int, kept))}-{max(map(int, kept))}"
    assert span in results["results"][0]["task"]["name"]
    card = (folder / "README.md").read_text()
    assert f"{sum(dropped.values()):,} test rows it also drew for training were left out" in card
    assert "drawn per input length uniformly *with replacement*" in card
    assert "except `iteration-head-parity-paper-recipe`, which drew its" in (fake_release["folder"] / "README.md").read_text()
    dataset_card = (fake_release["dataset"] / "README.md").read_text()
    assert "except\n`iteration-head-parity-paper-recipe`: trained on the paper's own draws" in dataset_card


def test_copy_card(fake_release):
    """The exact copy circuit: accuracy 1 everywhere; its run kept no snapshot, so no branch."""
    folder = fake_release["copy"]
    results = json.loads((folder / "eval_results.json").read_text())
    assert all(r["generated"] == 1.0 for r in results["per_length"].values())
    card = (folder / "README.md").read_text()
    assert "### Intermediate checkpoints" not in card and not (fake_release["out"] / "revisions" / folder.name).exists()
    suite = table_rows(section(card, "## The suite"))
    assert [r[0] for r in suite] == [f"[iteration-head-parity](https://huggingface.co/{NS}/iteration-head-parity)",
                                     "**iteration-head-copy** (this model)",
                                     f"[iteration-head-parity-paper-recipe](https://huggingface.co/{NS}/"
                                     "iteration-head-parity-paper-recipe)"]


def test_dataset_parameters():
    """The exported dataset gets the runs' split parameters; runs that disagree stop the release."""
    from datasets_builders.iteration_tasks import IterationTaskConfig

    base = to_dict(TrainConfig())
    poly = json.loads(json.dumps(base))
    poly["data"]["task"] = "polynomial"
    params = release.dataset_parameters({"parity": base, "polynomial": poly})
    built = IterationTaskConfig(name="parity", task="parity", **params)
    assert {k: getattr(built, k) for k in release.SPLIT_KEYS} == {k: base["data"][k] for k in release.SPLIT_KEYS}
    other = json.loads(json.dumps(base))
    other["data"]["max_length"] = base["data"]["max_length"] - 1
    with pytest.raises(release.ReleaseError, match="disagree on the data split"):
        release.dataset_parameters({"parity": base, "copy": other})
    # Mix runs hold out each task's own split: their mix_ratio leaves the dataset as built.
    mixes = [json.loads(json.dumps(base)) for _ in range(2)]
    for mix, ratio in zip(mixes, (0.3, 0.5)):
        mix["data"].update(task="mix", mix_ratio=ratio)
    assert "mix_ratio" not in release.dataset_parameters({"parity": mixes[0], "parity-nocot": mixes[1]})
    # A run on the paper's own draws has no builder split to agree on (it is tested on what it never drew).
    paper = json.loads(json.dumps(base))
    paper["data"].update(source="paper", examples_per_length=2048, test_fraction=0.5)
    assert release.dataset_parameters({"parity": base, "parity-paper": paper}) == release.dataset_parameters({"parity": base})


# Models released from an experiment's run: the overrides of that run (its row in results/).
FROM_EXPERIMENTS = {
    "parity-paper": ["experiment=sample_matched", "recipe=paper_reference", "seed=2"],  # the seed with the head
    "dihedral3": ["experiment=task_family_parity_recipe", "data.mix_with=dihedral3", "seed=1"],  # first at 99%
}


@pytest.mark.parametrize("key", sorted(FROM_EXPERIMENTS))
def test_a_model_released_from_an_experiment_is_that_run(key):
    """The recipe of a model taken from an experiment composes to exactly the run in its table
    (the same config but for the names), so its card's over-seeds line is read against its own arm."""
    import dataclasses

    from model_cards.suite import SEEDS
    from training.config import compose

    released = dataclasses.asdict(compose([f"recipe={SUITE_BY_KEY[key].recipe}"]))
    measured = dataclasses.asdict(compose(FROM_EXPERIMENTS[key]))
    differ = {k for k in released if released[k] != measured[k]}
    assert differ == {"recipe", "record"}, differ
    assert SEEDS[key][0] == FROM_EXPERIMENTS[key][0].split("=")[1]


def test_select_revisions():
    steps = list(range(100, 1000, 100))
    rise = [{"step": s, "accuracy_mean": a} for s, a in
            zip(range(100, 1100, 100), [0, 0, 0.1, 0.3, 0.6, 0.9, 1, 1, 1, 1])]
    assert revisions.select_revisions(steps, 1000, rise) == [100, 400, 500, 600]
    flat = [{"step": s, "accuracy_mean": 0.1} for s in range(100, 1100, 100)]
    chosen = revisions.select_revisions(steps, 1000, flat)
    assert len(chosen) == 4 and chosen[0] == 100 and chosen[-1] == 900
    assert revisions.select_revisions([100, 200], 200, flat) == [100]  # the final step is main


def test_size_limit_fails_loudly(fake_release, monkeypatch):
    monkeypatch.setattr(publish, "MAX_HUB_BYTES", 1000)
    with pytest.raises(release.ReleaseError, match="over the 0 MB limit"):
        publish.check_folders(fake_release["out"], [SUITE_BY_KEY["parity"]])


# ---------------------------------------------------------------------------------------------
# --push
# ---------------------------------------------------------------------------------------------
@pytest.mark.integration
def test_push_without_token_stops_before_anything(tmp_path):
    """The command as a user runs it: offline, no token, empty HF_HOME -> clear error, nothing done."""
    out = tmp_path / "hub"
    proc = subprocess.run(
        [sys.executable, "-m", "model_cards.release", "--out", str(out), "--namespace", "org", "--take-existing",
         "--runs-dir", str(tmp_path / "runs"), "--push"],
        cwd=ROOT, env=clean_env(HF_HOME=str(tmp_path / "hf_home")), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "nothing was uploaded" in proc.stderr and "HF_HUB_OFFLINE" in proc.stderr, proc.stderr
    assert not out.exists()


class RecordingApi:
    """Stands in for ``HfApi``: records every call; ``whoami`` may fail like a missing network."""

    def __init__(self, whoami_error: Exception | None = None):
        self.calls, self.whoami_error = [], whoami_error

    def whoami(self):
        if self.whoami_error:
            raise self.whoami_error
        return {"name": "tester"}

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return type("Commit", (), {"commit_url": f"https://hub/{len(self.calls)}"})()
        return call


@pytest.fixture
def online(monkeypatch, tmp_path):
    """An environment where only the token and the network decide (offline mode off, no token)."""
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    return monkeypatch


def test_push_without_token_uploads_nothing(fake_release, online):
    api = RecordingApi()
    with pytest.raises(SystemExit, match="no Hugging Face token.*nothing was uploaded"):
        publish.push_release(fake_release["out"], NS, [SUITE_BY_KEY["parity"]], api=api)
    assert api.calls == []


def test_push_without_network_uploads_nothing(fake_release, online):
    import huggingface_hub

    online.setattr(huggingface_hub, "get_token", lambda: "hf_fake")
    api = RecordingApi(whoami_error=OSError("Network is unreachable"))
    with pytest.raises(SystemExit, match="cannot be reached.*nothing was uploaded"):
        publish.push_release(fake_release["out"], NS, [SUITE_BY_KEY["parity"]], api=api)
    assert api.calls == []


def test_push_uploads_main_and_step_branches(fake_release, online):
    import huggingface_hub

    online.setattr(huggingface_hub, "get_token", lambda: "hf_fake")
    api = RecordingApi()
    publish.push_release(fake_release["out"], NS, [SUITE_BY_KEY["parity"]], api=api)
    rid, out = f"{NS}/iteration-head-parity", fake_release["out"]
    summary = [(name, kw.get("repo_id", args[0] if args else None), kw.get("revision") or kw.get("branch"))
               for name, args, kw in api.calls]
    assert summary == [
        ("create_repo", f"{NS}/{DATASET_NAME}", None), ("upload_folder", f"{NS}/{DATASET_NAME}", None),
        ("create_repo", f"{NS}/{METRIC_NAME}", None), ("upload_folder", f"{NS}/{METRIC_NAME}", None),
        ("create_repo", rid, None), ("upload_folder", rid, None),
        ("create_branch", rid, "step0"), ("upload_folder", rid, "step0"),
        ("create_branch", rid, "step100"), ("upload_folder", rid, "step100"),
        ("create_branch", rid, "step200"), ("upload_folder", rid, "step200"),
    ]
    uploads = [kw for name, _, kw in api.calls if name == "upload_folder"]
    assert uploads[0]["repo_type"] == "dataset" and uploads[0]["folder_path"] == str(out / DATASET_NAME)
    assert uploads[1]["repo_type"] == "space" and uploads[1]["folder_path"] == str(out / METRIC_NAME)
    assert uploads[-1]["folder_path"] == str(out / "iteration-head-parity")  # step200 == main
    # A revision branch: its own files plus the code and tokenizer it shares with main, complete
    # and verified in a temporary folder (gone after the upload).
    assert uploads[3]["folder_path"] != str(out / "revisions" / "iteration-head-parity" / "step0")
    assert uploads[3]["folder_path"].endswith("step0") and not os.path.exists(uploads[3]["folder_path"])


# ---------------------------------------------------------------------------------------------
# The released folders (hub/), as a user meets them
# ---------------------------------------------------------------------------------------------
needs_hub = hub_mark(HUB)

USER_SCRIPT = r'''
"""Runs in a fresh process, from a Hugging Face cache: no repository code may be importable."""
import contextlib, io, json, linecache, os, sys, traceback

root, spec_path, result_path = sys.argv[1:4]
assert not any(os.path.abspath(p or os.curdir) == root for p in sys.path), sys.path
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

torch.set_num_threads(1)
results = {}
for key, spec in json.load(open(spec_path)).items():
    try:
        rid = spec["repo_id"]
        model = AutoModelForCausalLM.from_pretrained(rid, trust_remote_code=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(rid)
        assert "modeling" not in sys.modules and "datasets_builders" not in sys.modules, "repository code was imported"
        assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
        correct = {}
        for length, rows in spec["rows"].items():
            prompts, answers = zip(*rows)
            inputs = tokenizer(list(prompts), return_tensors="pt")  # one length: no padding
            output = model.generate(**inputs, max_new_tokens=int(length) + 1, do_sample=False)
            generated = tokenizer.batch_decode(output[:, inputs.input_ids.shape[1]:])
            correct[length] = sum(g == a for g, a in zip(generated, answers))
        card_output = io.StringIO()
        # As if run from a file: nnsight reads a trace's body from its source (linecache).
        source, filename = spec["card_quickstart"], f"{key}/README.md"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        with contextlib.redirect_stdout(card_output):
            exec(compile(source, filename, "exec"), {})
        results[key] = {"correct": correct, "card_output": card_output.getvalue()}
    except Exception:
        results[key] = {"error": traceback.format_exc()}
with open(result_path, "w") as f:  # not stdout: transformers may prompt there
    json.dump(results, f)
'''


def hub_cache(home: Path, folder: Path, rid: str) -> Path:
    """Put ``folder`` in the Hugging Face cache ``home`` as the ``main`` revision of model ``rid``."""
    repo = home / "hub" / ("models--" + rid.replace("/", "--"))
    sha = hashlib.sha1(rid.encode()).hexdigest()
    shutil.copytree(folder, repo / "snapshots" / sha)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    return repo / "snapshots" / sha


def heldout_rows(task: str, info: dict, per_length: int = 48) -> dict[str, list[tuple[str, str]]]:
    """``(prompt, answer)`` texts of test rows of the released dataset (config ``task``, or
    ``<task>_nocot``), each checked to be in the test split that the model's run held out."""
    import datasets

    data = info["train_config"]["data"]
    from training.data import TaskData
    held_out = TaskData(from_dict(info["train_config"])).test_keys
    config = task if data["cot"] else f"{task}_nocot"
    ds = datasets.load_dataset(str(HUB / DATASET_NAME), config, split="test")
    rows: dict[str, list] = {}
    for ids, length, text in zip(ds["input_ids"], ds["length"], ds["text"]):
        if len(rows.setdefault(str(length), [])) >= per_length:
            continue
        key = sequence_keys(np.asarray(ids)[None, 1:length + 1])[0]
        assert key in held_out[(task, length)], f"{config}: a test row of length {length} was trainable"
        prompt, answer = text.split("<eoi>")
        rows[str(length)].append((prompt + "<eoi>", answer.strip()))
    lengths = range(data["min_length"], data["max_length"] + 1)
    assert sorted(map(int, rows)) == list(lengths), f"{config}: the test split misses training lengths"
    return rows


@pytest.fixture(scope="module")
def from_cache(tmp_path_factory):
    """parity, polynomial, copy and D_3 from ``hub/``, as a user gets them.

    A Hugging Face cache is populated by hand (``models--<org>--<name>/snapshots/<sha>/`` and
    ``refs/main``); one fresh process (cwd outside the repository, no PYTHONPATH, offline) loads
    each model with ``AutoModelForCausalLM`` / ``AutoTokenizer``, generates on held-out test rows
    and runs the card's Quickstart; the shipped ``analysis.py`` then runs from each cached snapshot
    folder (the three at once).
    """
    tmp = tmp_path_factory.mktemp("user")
    home = tmp / "hf_home"
    env = clean_env(HF_HOME=str(home), HF_HUB_CACHE=str(home / "hub"))
    models, specs = {}, {}
    for key in HUB_MODELS:
        folder = HUB / SUITE_BY_KEY[key].repo
        if not folder.is_dir():
            models[key] = {"missing": str(folder)}
            continue
        rid = json.loads((folder / "eval_results.json").read_text())["model"]
        info = json.loads((folder / "training_info.json").read_text())
        card = (folder / "README.md").read_text()
        rows = heldout_rows(SUITE_BY_KEY[key].task, info)
        specs[key] = {"repo_id": rid, "rows": rows, "card_quickstart": python_blocks(section(card, "## Quickstart"))}
        models[key] = {"snapshot": hub_cache(home, folder, rid), "info": info, "card": card, "rows": rows}
    (tmp / "spec.json").write_text(json.dumps(specs))
    (tmp / "user.py").write_text(USER_SCRIPT)
    proc = subprocess.run([sys.executable, "user.py", str(ROOT), "spec.json", "result.json"], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for key, result in json.loads((tmp / "result.json").read_text()).items():
        models[key]["user"] = result
    running = {}
    for key, m in models.items():
        if "snapshot" not in m:
            continue
        data = m["info"]["train_config"]["data"]
        m["analysis_out"] = tmp / f"analysis_{key}"
        cmd = [sys.executable, "analysis.py", "--model", str(m["snapshot"]), "--task", SUITE_BY_KEY[key].task,
               "--out", str(m["analysis_out"]), "--lengths", f"{data['min_length']}-{min(data['max_length'], 4)}",
               "--n", "8", "--ablation", "none", "--modulus", str(data["modulus"]), "--quiet"]
        running[key] = subprocess.Popen(cmd, cwd=m["snapshot"], env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for key, p in running.items():
        _, err = p.communicate(timeout=900)
        models[key]["analysis_rc"], models[key]["analysis_stderr"] = p.returncode, err
    return models


@pytest.mark.integration
@needs_hub
@pytest.mark.parametrize("key", HUB_MODELS)
def test_hub_model_from_cache(key, from_cache):
    """Loads from the cache without repository code; with ``generate``, >= 99 % held-out sequence
    accuracy; the card's Quickstart prints the right answer; the shipped analysis.py runs."""
    m = from_cache[key]
    assert "missing" not in m, f"{m.get('missing')} is missing from the release"
    user = m["user"]
    assert "error" not in user, user.get("error")
    total = sum(len(v) for v in m["rows"].values())
    accuracy = sum(user["correct"].values()) / total
    per_length = {L: user["correct"][L] / len(v) for L, v in m["rows"].items()}
    # The bar for parity, polynomial and copy: each run learned its task, and a user
    # measures >= 99 % on held-out inputs with generate.
    assert m["info"]["stop_reason"].startswith("target accuracy"), m["info"]["stop_reason"]
    assert accuracy >= 0.99, f"{key}: held-out sequence accuracy {accuracy:.4f} (per length {per_length})"
    right = re.search(r"# the right answer: (.*)", m["card"]).group(1).strip()
    printed = user["card_output"].splitlines()
    assert printed and printed[0].strip() == right, user["card_output"]
    # Its stock GPT-2 copy (logits), TransformerLens on gpt2/ and nnsight (patterns) agree with the model.
    assert "### Stock GPT-2, TransformerLens, nnsight" in m["card"]
    assert [line.strip() for line in printed[-2:]] == ["True", "True"], user["card_output"]

    assert m["analysis_rc"] == 0, m["analysis_stderr"][-4000:]
    report = json.loads((m["analysis_out"] / "analysis.json").read_text())
    assert report["task"] == SUITE_BY_KEY[key].task
    assert (m["analysis_out"] / "analysis.md").is_file()
    assert report["figures"] and all((m["analysis_out"] / name).is_file() for name in report["figures"].values())


@needs_hub
def test_hub_dataset_loads_offline():
    import datasets

    ds = datasets.load_dataset(str(HUB / DATASET_NAME), "parity")
    assert {"train", "test"} <= set(ds)
    assert {"input_ids", "length", "task", "text"} <= set(ds["test"].column_names)
    parity = tasks.make_task("parity")
    keys = {}
    for split in ("train", "test"):
        rows = ds[split]
        assert len(rows) > 0
        for ids, length in zip(rows["input_ids"][:200], rows["length"][:200]):
            ids = np.asarray(ids)
            assert np.array_equal(ids, tasks.build_rows(parity, ids[None, 1:length + 1])[0])
        keys[split] = {(L, bytes(np.asarray(i[1:L + 1], np.uint8))) for i, L in zip(rows["input_ids"], rows["length"])}
    assert not keys["train"] & keys["test"], "a test sequence is also in train"


# sha256 of the weights of the six models first released (2026-11-26; the revisions have their manifests): a
# later release (a new task, a new model) must not move one of them.
RELEASED_WEIGHTS = {
    "iteration-head-copy": "4fc200e7a80d097840a5ba83a93831c5100fbb9641c545c73392c85e9aafc24a",
    "iteration-head-parity-1layer": "0052f496ab56c1a0e41ce118cb6b5d7d74c63ffbf08d11363e202282607bc837",
    "iteration-head-parity-from-polynomial": "bf835332ddcc463d1eae4f51b5660af1d8ce8ff8bc76f265b5b8ea20fd1b3505",
    "iteration-head-parity-nocot": "5ecd3765559f666c0c8ad4172f553512b6382b8bd47f208b32415630a2c2c264",
    "iteration-head-parity": "1b26ac06ad861a8410cf575301ffc5d1843beea64377db1602ad480246f58b4c",
    "iteration-head-polynomial": "f119489ff645544c17d0f1ef1cf1b9321dae607a2f8995d0a5bdb87e88f3e62a",
}


@needs_hub
def test_the_released_weights_never_move():
    """The six models released first keep their weights byte for byte, whatever was released since."""
    for repo, digest in RELEASED_WEIGHTS.items():
        assert render.sha256_file(HUB / repo / "model.safetensors") == digest, f"{repo}: its released weights changed"


@needs_hub
def test_typed_words_of_the_suite_agree_with_each_models_analysis():
    """The suite's titles and summaries are typed: where they say a released model has or lacks the
    iteration head, its analysis.json's detector must say the same."""
    checked = set()
    for spec in SUITE:
        words = f"{spec.title} {spec.summary}".lower()
        says = ("without an iteration head" in words or "no iteration head" in words,
                "grew the iteration head" in words)
        if not any(says):
            continue
        found = bool(json.loads((HUB / spec.repo / "analysis.json").read_text())["iteration_heads"])
        assert says == (not found, found), (spec.key, found)
        checked.add(spec.key)
    assert {"parity-paper", "dihedral3"} <= checked, checked


@needs_hub
def test_hub_release_is_complete():
    """Every released model folder is complete and the whole hub/ stays under the size limit."""
    specs = [s for s in SUITE if (HUB / s.repo).is_dir()]
    assert {"parity", "polynomial", "copy"} <= {s.key for s in specs}
    publish.check_folders(HUB, specs)


@needs_hub
def test_hub_cards_model_index_names_the_shipped_metric():
    """Every released card's model-index metric ``type`` is the metric shipped beside the models
    (``hub/sequence_accuracy/``, a copy of ``metrics/sequence_accuracy/``: the Space that
    ``evaluate.load("<namespace>/sequence_accuracy")`` reads), its ``config`` the measurement of
    ``eval_results.json`` and its value that file's."""
    import evaluate
    from huggingface_hub import ModelCard

    shipped = HUB / METRIC_NAME
    assert sorted(p.name for p in shipped.iterdir()) == sorted(release.METRIC_FILES)
    for name in release.METRIC_FILES:
        assert (shipped / name).read_bytes() == (release.METRIC_SOURCE / name).read_bytes(), f"{name} is stale"
    metric = evaluate.load(str(shipped))  # what the Hub id resolves to, loaded offline
    assert metric.compute(predictions=[[1, 62], [0]], references=[[1, 62], [1, 62]]) == {"sequence_accuracy": 0.5}
    specs = [s for s in SUITE if (HUB / s.repo).is_dir()]
    assert specs
    for spec in specs:
        folder = HUB / spec.repo
        results = json.loads((folder / "eval_results.json").read_text())
        namespace = results["model"].split("/")[0]
        loaded = ModelCard.load(folder / "README.md").data.eval_results
        assert [(r.metric_type, r.metric_config, r.metric_value) for r in loaded] == [
            (f"{namespace}/{METRIC_NAME}", m["type"], m["value"]) for e in results["results"] for m in e["metrics"]]
        assert f'evaluate.load("{namespace}/{METRIC_NAME}")' in (folder / "README.md").read_text(), spec.repo


@needs_hub
def test_hub_cards_quote_their_recipe_over_seeds_from_the_results_tables():
    """A released model is one run; its card says what the recipe did over seeds, from results/."""
    import csv
    from model_cards.suite import SEEDS
    for spec in SUITE:
        card = (HUB / spec.repo / "README.md").read_text()
        line = render.seeds_summary(spec.key)
        if spec.key not in SEEDS:
            assert line is None and "Over seeds" not in card, spec.key
            continue
        assert line and f"- {line}\n" in card, f"{spec.repo}: card is stale: re-render with python -m model_cards.render"
        experiment, where, _ = SEEDS[spec.key]
        with open(ROOT / "results" / f"{experiment}.csv") as f:
            rows = [r for r in csv.DictReader(f) if all(r.get(k) == v for k, v in where.items())]
        reached = sum(bool(r["steps_to_target"]) for r in rows)
        from statsmodels.stats.proportion import proportion_confint
        lo, hi = proportion_confint(reached, len(rows), method="wilson")
        assert len(rows) >= 3 and f": {reached}/{len(rows)} [95% CI {lo:.2f}–{hi:.2f}] seeds reached 99%" in line, \
            (spec.key, line)


# ---------------------------------------------------------------------------------------------
# The repository README's Quickstart
# ---------------------------------------------------------------------------------------------
@pytest.mark.integration
def test_readme_quickstart_runs_as_written():
    readme = ROOT / "README.md"
    text = readme.read_text() if readme.is_file() else ""
    if not re.search(r"^## Quickstart\s*$", text, re.M):
        pytest.skip("README.md has no '## Quickstart' section yet")
    code = python_blocks(section(text, "## Quickstart"))
    if not code:
        pytest.skip("the README's Quickstart has no ```python block")
    if "hub/" in code and not HUB.is_dir():
        pytest.skip("the Quickstart loads from hub/, which is absent")
    proc = subprocess.run([sys.executable, "-"], input=code, cwd=ROOT, env=clean_env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"the README Quickstart failed:\n{proc.stderr[-4000:]}"


def test_readme_layout_table_matches_the_tree():
    """Every tracked top-level entry and every module of the packages is named in the README's
    layout table, and every path the table names exists."""
    table = section((ROOT / "README.md").read_text(), "## Layout")
    named = set(re.findall(r"`([^`\s]+)`", table))
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    top = {p.split("/")[0] + ("/" if "/" in p else "") for p in tracked}
    top -= {".gitignore", "README.md"}
    unnamed = sorted(t for t in top if not any(n == t.rstrip("/") or n.startswith(t) for n in named))
    assert not unnamed, f"{unnamed} are not in the README's layout table"
    for package in ("datasets_builders", "modeling", "training", "model_cards"):
        modules = {Path(p).name for p in tracked if p.startswith(package + "/") and p.endswith(".py")}
        missing = sorted(m for m in modules - {"__init__.py"} if m not in named)
        assert not missing, f"{package}/: {missing} are not in the README's layout table"
    paths = {n for n in named if "/" in n and n.split("/")[0] + "/" in top and "<" not in n and "*" not in n}
    assert paths and not sorted(n for n in paths if not (ROOT / n).exists()), "the table names missing paths"


@needs_hub
def test_readme_released_models_table_is_the_released_files():
    """The README's table of released models quotes hub/*/training_info.json, eval_results.json and
    analysis.json: steps, training time, generated accuracy and the last layer's iteration score."""
    text = section((ROOT / "README.md").read_text(), "## Training")
    rows = table_rows(text[text.index("| released model (recipe) |"):])
    by_recipe = {s.recipe: s for s in SUITE}
    checked = set()
    for cells in rows:
        recipe = re.search(r"\(`(\w+)`\)$", cells[0])
        if len(cells) != 5 or not recipe or recipe.group(1) not in by_recipe:
            continue
        spec = by_recipe[recipe.group(1)]
        folder = HUB / spec.repo
        info = json.loads((folder / "training_info.json").read_text())
        results = json.loads((folder / "eval_results.json").read_text())["results"][0]["metrics"]
        generated = next(m["value"] for m in results if m["type"] == "sequence_accuracy_generated")
        number = lambda cell: float(re.sub(r"[^0-9.]", "", cell.split("(")[0]))  # noqa: E731
        assert int(number(cells[1])) == info["step"], cells
        assert int(number(cells[2])) == round(info["time_s"]), cells
        assert cells[3] == f"{generated:.3f}", cells
        if cells[4] != "n/a":
            analysis = json.loads((folder / "analysis.json").read_text())
            last = max(h["layer"] for h in analysis["heads"])
            scores = [f"{h['iteration_mean']:.3f}" for h in analysis["heads"] if h["layer"] == last]
            assert re.sub(r"[^0-9.]", "", cells[4].split("(")[0]) in scores, cells
        checked.add(spec.key)
    assert checked == {s.key for s in SUITE}, f"rows checked: {sorted(checked)}"


@needs_hub
def test_readme_released_model_findings_quote_the_hub_files():
    """The numbers of "What the released models show" are those of hub/*/eval_results.json,
    training_info.json and analysis.json (rounded as written)."""
    text = (ROOT / "README.md").read_text()
    text = " ".join(text[text.index("What the released models show"):text.index("**The released polynomial and")].split())

    def generated(repo: str) -> str:
        metrics = json.loads((HUB / repo / "eval_results.json").read_text())["results"][0]["metrics"]
        return f"{next(m['value'] for m in metrics if m['type'] == 'sequence_accuracy_generated'):.3f}"

    def analysis(repo: str) -> dict:
        return json.loads((HUB / repo / "analysis.json").read_text())

    def head(repo: str, layer: int) -> dict:
        return next(h for h in analysis(repo)["heads"] if h["layer"] == layer)

    def steps(repo: str) -> str:
        return f"{json.loads((HUB / repo / 'training_info.json').read_text())['step']:,}"

    nocot, one, poly, tuned = ("iteration-head-parity-nocot", "iteration-head-parity-1layer",
                               "iteration-head-polynomial", "iteration-head-parity-from-polynomial")
    ablated = analysis(poly)["ablation"]["components"]["L1H0"]
    assert f"{ablated['zero']['mean']:.3f}" == f"{ablated['mean']['mean']:.3f}"  # "zero- or mean-ablating"
    expected = [
        f"the parity model is at {generated(nocot)} mean accuracy after its {steps(nocot)} steps",
        f"with one layer, {generated(one)} after its {steps(one)} steps",
        f"`<eoi>` ({head(poly, 0)['first_mean']:.3f})",
        f"({head(poly, 1)['iteration_mean']:.3f}, invariance {head(poly, 1)['iteration_invariance']:.3f}; "
        f"zero- or mean-ablating it drops accuracy to {ablated['zero']['mean']:.3f})",
        f"after {steps(tuned)} steps (the first evaluation)",
        f"the head is reused ({head(tuned, 1)['iteration_mean']:.3f})",
    ]
    paper, d3 = "iteration-head-parity-paper-recipe", "iteration-head-dihedral3"
    paper_results = json.loads((HUB / paper / "eval_results.json").read_text())
    gone = paper_results["heldout_check"]["lengths_not_evaluated"]
    evaluated = sorted(map(int, paper_results["per_length"]))
    paper_ablated = analysis(paper)["ablation"]["components"]["L1H0"]
    d3_ablated = analysis(d3)["ablation"]["components"]
    expected += [
        f"layer 2 from `L+t` to `x_t` at {head(paper, 1)['iteration_mean']:.3f}",
        f"zero-ablating it leaves {paper_ablated['zero']['mean']:.3f}",
        f"lengths {gone[0]}–{gone[-1]} are not evaluated",
        f"{generated(paper)} on the test rows of lengths {evaluated[0]}–{evaluated[-1]} it never drew",
        f"D_3 at {generated(d3)} with no iteration head (layer 2 at {head(d3, 1)['iteration_mean']:.3f})",
        f"zeroing layer 1's head leaves {d3_ablated['L0H0']['zero']['mean']:.3f}, layer 2's "
        f"{d3_ablated['L1H0']['zero']['mean']:.3f}",
    ]
    missing = [e for e in expected if e not in text]
    assert not missing, f"README.md quotes other numbers than hub/: {missing}"


# README rows of "What the ingredients buy" -> the variants of bench/sweeps/results_h100.txt they quote
INGREDIENT_ROWS = {
    "parity demo:": ["base"], "… 50% copy rows": ["base_mix0.5"], "… cosine over 6,000 steps": ["base_6k"],
    "… batch 32": ["base_bs32", "base_bs32_lr2e-3"], "… lr 5e-3": ["base_lr5e-3"],
    "… width 48;": ["base_width48", "width32_sin_init"],
    "… width 128 (lr": ["width128", "width128_lr1e-3", "width128_lr1e-3_20k"],
    "… width 128, batch 128": ["width128_bs128_lr2e-3"], "… learned positions initialised": ["sin_init"],
    "polynomial, default": ["polynomial"], "polynomial, sin/cos-initialised": ["polynomial_sin_init", "polynomial_sin_init_6k"],
    "polynomial, sin/cos positions, no copy rows": ["polynomial_sin_init_no_copy"], "copy, sin/cos": ["copy_sin_init"],
}


def test_readme_ingredients_table_quotes_the_sweep_file():
    sweep = {line.split()[0]: line.split() for line in (ROOT / "bench/sweeps/results_h100.txt").read_text().splitlines()
             if line and not line.startswith(("#", "variant", "-", "("))}
    text = (ROOT / "README.md").read_text()
    rows = table_rows(text[text.index("| variant (3 seeds) |"):])
    assert len(rows) == len(INGREDIENT_ROWS)
    for label, reached, steps in rows:
        variants = next(v for prefix, v in INGREDIENT_ROWS.items() if label.startswith(prefix))
        fractions, expected = re.findall(r"\d/3", reached), [sweep[v][1] for v in variants]
        assert fractions == expected or (len(fractions) == 1 and {*expected} == {*fractions}), label
        quoted = {int(n.replace(",", "")) for n in re.findall(r"\d[\d,]*\d{3}", steps)} - {6000, 10000, 20000}
        measured = {int(n) for v in variants for n in re.findall(r"\d+", sweep[v][4])}
        assert quoted <= measured, (label, quoted - measured)


def test_readme_make_demo_wall_time_is_results_make_demo_wall_csv():
    """The README's `make demo` wall times (quiet, one core busy) are bench/bench_make_demo.py's table,
    and the demo learned the same in both: parity at 99% on every length, with the head."""
    import csv
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_make_demo", ROOT / "bench" / "bench_make_demo.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = list(csv.DictReader(open(ROOT / "results" / "make_demo_wall.csv")))
    default = [r for r in rows if r["condition"] in ("quiet", "one core busy")]
    assert {r["condition"] for r in default} == {"quiet", "one core busy"}
    assert {r["condition"] for r in rows} <= {"quiet", "one core busy", bench.QUIET_BF16}
    readme = (ROOT / "README.md").read_text()
    assert bench.readme_sentence(rows) in readme
    assert bench.bf16_sentence(rows) is None or bench.bf16_sentence(rows) in readme
    for r in default:  # the default precision learned the same in every run
        assert float(r["parity_accuracy_min"]) >= 0.99 and float(r["iteration_score"]) >= 0.9, r
    for r in rows:
        assert r["polynomial_stage"].startswith("wall time ") and r["parity_stage"].startswith("wall time ")


def test_readme_time_to_accuracy_is_results_time_to_accuracy_csv():
    """The README's performance row for bench/bench_time_to_accuracy.py is its table's sentence."""
    import csv
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_tta", ROOT / "bench" / "bench_time_to_accuracy.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = list(csv.DictReader(open(ROOT / "results" / "time_to_accuracy.csv")))
    assert [r["recipe"] for r in rows] == list(bench.RECIPES.values())
    assert bench.readme_sentence(rows) in (ROOT / "README.md").read_text()


def test_readme_demo_table_is_results_demo_csv():
    """The README's demo timings are results/demo.csv (written by bench/bench_demo.py)."""
    import csv
    import statistics

    rows = list(csv.DictReader(open(ROOT / "results" / "demo.csv")))
    text = (ROOT / "README.md").read_text()
    table = table_rows(text[text.index("| seed | steps (polynomial + parity) |"):])
    assert len(table) == len(rows) >= 3
    for cells, r in zip(table, rows):
        assert cells[0] == r["seed"]
        assert cells[1] == f"{int(r['polynomial_steps']):,} + {int(r['parity_steps']):,}"
        assert cells[2] == f"{float(r['polynomial_time_s']):.1f} + {float(r['parity_time_s']):.1f} = {float(r['training_time_s']):.1f} s"
        assert cells[3:] == [f"{float(r[k]):.3f}" for k in ("parity_accuracy_min", "iteration_score", "eoi_score")]
        assert float(r["parity_accuracy_min"]) >= 0.99 and float(r["copy_accuracy_min"]) >= 0.99
        assert float(r["iteration_score"]) >= 0.9  # the demo shows the head, every seed
    median = statistics.median(float(r["training_time_s"]) for r in rows)
    assert f"Median training time **{median:.1f} s**" in text


@needs_hub
def test_shipped_code_is_the_repositorys():
    """Every code file in hub/ is generated from its source at release time and equal to it (the one
    test of that); revision folders hold no code (their branches get it at upload). After a change to
    a source: `python -m model_cards.release --out hub --namespace <org> --sync-code`."""
    shipped = sorted(HUB.rglob("*.py"))
    assert shipped, "hub/ ships no code"
    for path in shipped:
        relative = path.relative_to(HUB)
        if relative.parts[0] == SPACE_NAME:
            continue  # the explorer Space's app.py is its own source (it imports the installed packages)
        if relative.parts[0] == METRIC_NAME:  # the metric Space: a copy of metrics/sequence_accuracy/
            assert path.read_bytes() == (release.METRIC_SOURCE / path.name).read_bytes(), f"{relative} is stale"
            continue
        assert relative.parts[0] != "revisions", f"{relative}: revision folders keep only what differs from main"
        source = release.SHIPPED_CODE.get(path.name)
        assert source is not None, f"{relative} is not generated from a source file"
        assert path.read_bytes() == source.read_bytes(), f"{relative} is stale: run the release with --sync-code"
    for spec in SUITE:
        assert all((HUB / spec.repo / name).is_file() for name in release.SHIPPED_CODE), spec.repo


@needs_hub
def test_hub_folders_verify_and_revisions_load_without_remote_code():
    """Every released folder matches its manifest (sha256 of every file), and a revision, which
    stores only config, weights and training info, loads with the installed package."""
    from model_cards import verify

    folders = verify.find_manifests(HUB)
    assert len(folders) >= len(SUITE) + 4
    for folder in folders:
        assert verify.problems(folder) == [], folder
    step = render.revision_steps(HUB, "iteration-head-parity")[0]
    rev = HUB / "revisions" / "iteration-head-parity" / f"step{step}"
    assert sorted(p.name for p in rev.iterdir()) == sorted(revisions.REVISION_FILES + (verify.MANIFEST,))
    model = analysis_load_model(str(rev))
    assert type(model).__module__ == "modeling.modeling_itergpt"


def analysis_load_model(path: str):
    from modeling.analysis import load_model

    return load_model(path)
