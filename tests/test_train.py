"""Training: the config schema, data and packing (in-process), then real (tiny) runs of train.py:
learning, the run folder, exact resume after SIGKILL, a NaN stop, DDP on two CPU processes, bf16
through accelerate launch."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from datasets_builders import tasks
from training.config import ConfigError, compose, validate
from training.data import TaskData, collate, labels_for
from training.loop import build_model
from training.run_folder import checkpoint_steps, read_metrics
from helpers import ROOT, TINY_RUN, clean_env, run_cli, train_cmd

RECIPES = sorted(p.stem for p in (ROOT / "configs" / "recipe").glob("*.yaml"))


def records(out: Path) -> list[dict]:
    return read_metrics(out / "metrics.jsonl")


def without_time(recs):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in recs]


# ---------------------------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------------------------
def test_overrides_types_and_unknown_keys():
    cfg = compose(["recipe=parity", "optim.lr=2.5e-3", "model.n_embd=96"])
    assert (cfg.optim.lr, cfg.model.n_embd, cfg.data.task, cfg.recipe) == (2.5e-3, 96, "mix", "parity")
    with pytest.raises(ConfigError, match="lrr"):
        compose(["optim.lrr=1"])
    with pytest.raises(ConfigError, match="recipe/nope"):
        compose(["recipe=nope"])
    with pytest.raises(ConfigError, match="optim.lr=abc"):
        compose(["optim.lr=abc"])
    with pytest.raises(ConfigError, match="snapshot_steps"):
        compose(["snapshot_steps=[abc]"])


@pytest.mark.parametrize("override, message", [
    ("optim.grad_clip=-1", "optim.grad_clip=-1.0 is out of range: it must be > 0.0"),
    ("optim.min_lr_ratio=-2", "optim.min_lr_ratio=-2.0 is out of range: it must be >= 0.0"),
    ("optim.lr=-1", "optim.lr=-1.0 is out of range"),
    ("save_every=-1", "save_every=-1 is out of range: it must be >= 0"),
    ("keep_checkpoints=0", "keep_checkpoints=0 is out of range: it must be >= 1"),
    ("data.mix_ratio=1.5", "data.mix_ratio=1.5 is out of range: it must be < 1.0"),
    ("data.task=parityy", "data.task='parityy' is unknown: choose one of copy, parity, polynomial, cyclic<n>"),
    ("model.activation=tanh", "model.activation='tanh' is invalid: choose one of gelu"),
    ("data.max_length=40", "data.max_length=40 needs 83 positions but model.n_positions=64"),
    ("snapshot_steps=[0]", "snapshot_steps=[0]"),
    ("resume=yes", "resume='yes' is invalid"),
    ("model.n_head=3", "n_embd=64 is not divisible by n_head=3"),
    ("optim.batch_size=64 optim.grad_accum=5", "not divisible by optim.grad_accum=5"),
])
def test_every_value_is_checked_against_its_range(override, message):
    cfg = compose(["recipe=parity", *override.split()])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert message in str(err.value)


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_is_valid(recipe):
    cfg = compose([f"recipe={recipe}"])
    validate(cfg)
    assert cfg.recipe == recipe and cfg.model.n_layer >= 1


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml")))
def test_every_experiment_and_each_of_its_arms_is_valid(experiment):
    """Every value of every swept key composes and validates (one key at a time, the others at their
    first value): a typo in an experiment file fails here, not hours into a sweep."""
    import yaml
    params = yaml.safe_load((ROOT / "configs" / "experiment" / f"{experiment}.yaml").read_text())["hydra"]["sweeper"]["params"]
    from hydra.core.override_parser.overrides_parser import OverridesParser
    parser = OverridesParser.create()  # each key's values as Hydra's sweeper reads them (lists, range(...))
    values = {}
    for k, v in params.items():
        o = parser.parse_override(f"{k}={v}")
        values[k] = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
    for key, options in values.items():
        for option in options:
            chosen = {k: v[0] for k, v in values.items()} | {key: option}
            cfg = compose([f"experiment={experiment}"] + [f"{k}={v}" for k, v in chosen.items()])
            if cfg.init_from and not Path(ROOT / cfg.init_from).exists():
                continue  # a released model that this checkout does not hold
            validate(cfg)
            assert cfg.max_minutes is None or experiment == "paper_reference", "experiments stop on steps"


@pytest.mark.parametrize("arm", sorted(p.stem for p in (ROOT / "configs" / "posinit").glob("*.yaml")))
def test_every_position_arm_composes_over_every_recipe(arm):
    for recipe in ("parity", "polynomial"):
        cfg = compose([f"recipe={recipe}", f"posinit={arm}"])
        validate(cfg)
        assert cfg.model.position_embedding == ("frozen" if "frozen" in arm else "learned")


def test_the_paper_arm_is_the_reference_table_under_the_paper_init():
    """posinit=paper is one name for `posinit=reference model.init=pytorch` (how F3/F4's runs were
    launched): the same resolved config, so their runs are one arm."""
    from training.config import to_dict
    assert to_dict(compose(["recipe=polynomial", "posinit=paper"])) == to_dict(
        compose(["recipe=polynomial", "posinit=reference", "model.init=pytorch"]))
    assert to_dict(compose(["posinit=paper_frozen"])) == to_dict(compose(["posinit=frozen", "model.init=pytorch"]))
    assert to_dict(compose(["posinit=paper"])) != to_dict(compose(["posinit=reference"]))


@pytest.mark.parametrize("ingredient", ["optimizer", "batch", "width", "dropout", "residual"])
def test_each_paper_ingredient_adds_the_paper_recipes_values_and_nothing_else(ingredient):
    """experiment=paper_ingredients: the baseline is exactly F3's parity arm under the paper's
    initialisation and data conditions, and each ingredient changes only keys it takes, with the values
    of recipe=paper_reference."""
    from training.config import to_dict
    base = to_dict(compose(["experiment=paper_ingredients", "ingredient=none"]))
    f3 = to_dict(compose(["experiment=f3_emergence", "recipe=parity", "posinit=paper", "copyrows=none",
                          "data.source=fixed"]))
    assert base.pop("record") == "paper_ingredients" and f3.pop("record") == "f3_emergence"  # each its own record
    assert base == f3
    cfg = compose(["experiment=paper_ingredients", f"ingredient={ingredient}"])
    validate(cfg)
    arm, paper = to_dict(cfg), to_dict(compose(["recipe=paper_reference"]))
    changed = {(s, k) for s in ("model", "data", "optim") for k in base[s] if arm[s][k] != base[s][k]}
    assert changed and all(arm[s][k] == paper[s][k] for s, k in changed)
    assert {k for k in arm if k not in ("model", "data", "optim", "record") and arm[k] != base[k]} == set()


def test_model_section_is_the_model_config():
    """One source for the architecture: the schema's model keys and defaults are IterGPTConfig's."""
    from modeling import IterGPTConfig
    from training.config import ModelConfig, model_config
    import dataclasses
    for f in dataclasses.fields(ModelConfig):
        assert f.default == getattr(IterGPTConfig(), f.name) or f.name == "n_inner", f.name
    config = model_config(compose(["recipe=paper_reference"]))
    assert (config.n_embd, config.residual, config.init, config.embd_pdrop) == (128, "reference", "pytorch", 0.1)


@pytest.mark.integration
def test_help_lists_every_key_with_default_and_range():
    res = run_cli([sys.executable, "train.py", "--help"], timeout=120)
    assert res.returncode == 0, res.stderr
    recipes = ", ".join(RECIPES)
    for line in ("optim.lr = 0.003  [>0.0]", "keep_checkpoints = 2  [>=1]", "model.n_embd = 128  [>=1]",
                 "data.task = 'parity'\n      copy | parity | polynomial | mix", f"recipe: {recipes}\n"):
        assert line in res.stdout, line


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def test_loss_is_masked_before_end_of_input():
    task = tasks.make_task("parity")
    rows = [tasks.build_rows(task, np.array([[1, 0, 1]]))[0], tasks.build_rows(task, np.array([[1]]))[0]]
    ids = torch.as_tensor(tasks.pad_rows(rows))
    labels = labels_for(ids)
    # Row 0: <parity> 1 0 1 <eoi> | 1 1 0 <eos>; row 1: <parity> 1 <eoi> | 1 <eos> <pad>...
    assert labels[0].tolist() == [-100] * 5 + [1, 1, 0, tasks.EOS_ID]
    assert labels[1].tolist() == [-100] * 3 + [1, tasks.EOS_ID] + [-100] * 4
    from modeling import IterGPTConfig, IterGPTForCausalLM
    model = IterGPTForCausalLM(IterGPTConfig(n_embd=32, n_positions=16, embd_pdrop=0.0)).eval()
    out = model(input_ids=ids, labels=labels)
    logits, keep = out.logits[:, :-1], labels[:, 1:] != -100
    torch.testing.assert_close(out.loss, F.cross_entropy(logits[keep], ids[:, 1:][keep]))


def test_fresh_batches_never_contain_a_test_sequence():
    cfg = compose(["recipe=parity", "data.max_length=6", "model.n_positions=16"])  # 30% copy rows
    data = TaskData(cfg)
    names = {tasks.TASK_TOKEN_ID[n]: n for n in tasks.TASK_NAMES}
    seen = {"copy": 0, "parity": 0}
    for step in range(30):
        for row in data.rows(step, 0, 1):
            length = int(np.flatnonzero(row == tasks.EOI_ID)[0]) - 1
            assert bytes(row[1:length + 1].astype(np.uint8)) not in data.test_keys[names[row[0]], length]
            seen[names[row[0]]] += 1
    assert sum(seen.values()) == 30 * cfg.optim.batch_size
    assert 0.2 < seen["copy"] / sum(seen.values()) < 0.4  # mix_ratio 0.3
    from datasets_builders.iteration_tasks import IterationTaskConfig, split_inputs
    config = IterationTaskConfig(name="p", task="parity", max_length=6)  # the released dataset's split
    assert np.array_equal(data.splits["test"]["parity", 5][:, 1:6], split_inputs(config, 5)["test"])
    # A batch is a pure function of the step; two processes split the same global batch.
    both, whole = data.rows(7, 0, 2) + data.rows(7, 1, 2), data.rows(7, 0, 1)
    assert len(both) == len(whole) and all(np.array_equal(x, y) for x, y in zip(both, whole))


@pytest.mark.parametrize("mix_with", ["parity", "polynomial"])
def test_fixed_split_mix_honours_mix_ratio_and_only_trains_on_train_rows(mix_with):
    # One meaning of mix everywhere: copy + mix_with, mix_ratio of the rows copy (fresh or fixed data).
    cfg = compose(["recipe=parity", "data.source=fixed", "data.max_length=6", "model.n_positions=16",
                   f"data.mix_with={mix_with}", "data.mix_ratio=0.25"])
    validate(cfg)
    data = TaskData(cfg)
    train = {name: {bytes(r.astype(np.uint8)) for r in rows} for name, rows in data.train_rows.items()}
    names = {tasks.TASK_TOKEN_ID[n]: n for n in tasks.TASK_NAMES}
    for step in (0, 1, 99, 1000):  # 1000 is many epochs on
        rows = data.rows(step, 0, 1)
        assert sum(names[r[0]] == "copy" for r in rows) == 16  # round(64 * 0.25)
        assert all(bytes(r.astype(np.uint8)) in train[names[r[0]]] for r in rows)
        both = data.rows(step, 0, 2) + data.rows(step, 1, 2)
        assert all(np.array_equal(x, y) for x, y in zip(both, rows))
    assert {names[r[0]] for r in data.rows(3, 0, 1)} == {"copy", mix_with}


def test_a_mix_dataset_is_read_and_validated_by_the_one_reader():
    hub = Path(__file__).resolve().parents[1] / "hub" / "iteration-head-tasks"
    cfg = compose(["recipe=parity", f"data.dataset={hub}", "data.source=fixed", "data.max_length=4"])
    data = TaskData(cfg)
    assert sorted(data.splits["test"]) == [(t, L) for t in ("copy", "parity") for L in range(1, 5)]
    for (name, L), rows in data.splits["train"].items():
        assert (rows[:, 0] == tasks.TASK_TOKEN_ID[name]).all() and rows.shape[1] == tasks.row_length(L)
    with pytest.raises(ConfigError, match=r"data.mix_with='polynomial' \(cot=False, modulus=11\) with data.dataset"):
        validate(compose(["recipe=polynomial", "data.cot=false", f"data.dataset={hub}"]))


def test_packed_rows_hold_every_sequence_once_with_restarted_positions():
    task = tasks.make_task("parity")
    rng = np.random.default_rng(0)
    rows = [tasks.build_rows(task, tasks.sample_inputs(task, int(L), 1, rng))[0] for L in rng.integers(1, 17, 64)]
    packed = tasks.pack_rows(rows)
    ids, pos, seg = packed["input_ids"], packed["position_ids"], packed["segment_ids"]
    assert ids.shape[1] == max(len(r) for r in rows) and ids.shape[0] < len(rows)
    for i, row in enumerate(rows):  # each row once, contiguous, positions 0..n-1, its own loss mask
        where = np.argwhere(seg == i)
        line, cols = where[0, 0], where[:, 1]
        assert (where[:, 0] == line).all() and np.array_equal(cols, np.arange(cols[0], cols[0] + len(row)))
        assert np.array_equal(ids[line, cols], row) and np.array_equal(pos[line, cols], np.arange(len(row)))
        assert np.array_equal(packed["loss_mask"][line, cols], tasks.loss_mask(row))
    assert (ids[seg < 0] == tasks.PAD_ID).all() and not packed["loss_mask"][seg < 0].any()


def _loss_and_grad(model, batches):
    model.zero_grad()
    n = sum(int((b["labels"] != -100).sum()) for b in batches)
    total = 0.0
    for b in batches:
        loss = model(**b).loss * int((b["labels"] != -100).sum()) / n
        loss.backward()
        total += loss.item()
    return total, torch.cat([p.grad.flatten() for p in model.parameters()])


def test_packed_and_accumulated_batches_give_the_padded_batch_loss_and_gradient():
    cfg = compose(["recipe=parity", "model.embd_pdrop=0.0", "optim.grad_accum=4"])
    data = TaskData(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, resuming=False)
    rows = data.rows(3, 0, 1)
    padded, packed = collate(rows, packing=False), collate(rows, packing=True)
    assert packed["input_ids"].numel() < 0.8 * padded["input_ids"].numel()
    loss_a, grad_a = _loss_and_grad(model, [padded])
    loss_b, grad_b = _loss_and_grad(model, [packed])
    loss_c, grad_c = _loss_and_grad(model, data.batches(3, 0, 1))  # 4 micro-batches of the same rows
    assert len(data.batches(3, 0, 1)) == 4
    for loss, grad in ((loss_b, grad_b), (loss_c, grad_c)):
        assert abs(loss - loss_a) < 1e-5
        torch.testing.assert_close(grad, grad_a, rtol=1e-4, atol=1e-6)


def test_init_arms_of_the_paper():
    """position init N(0, 0.02) (ours), N(0, 1) (the reference), sin/cos; the reference's own init."""
    def pos_std(*o):
        return build_model(compose(["recipe=parity", *o]), False).model.pos_embed.weight.std().item()
    assert 0.015 < pos_std() < 0.025
    assert 0.9 < pos_std("model.position_init_std=1.0") < 1.1
    assert 0.5 < pos_std("model.position_init=sinusoidal") < 0.8
    ref = build_model(compose(["recipe=paper_reference"]), False)
    assert 0.9 < ref.model.embed.weight.std().item() < 1.1 and 0.9 < ref.model.pos_embed.weight.std().item() < 1.1


# ---------------------------------------------------------------------------------------------
# real runs
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def copy_run(tmp_path_factory):
    """An uninterrupted tiny copy run (60 steps), used as the reference by several tests."""
    out = tmp_path_factory.mktemp("runs") / "copy"
    res = run_cli(train_cmd(out, "optim.max_steps=60", "eval_every=10", "save_every=20", "snapshot_steps=[30]"),
                  timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res


@pytest.mark.integration
def test_tiny_model_learns_copy_and_final_folder_loads(tmp_path):
    out = tmp_path / "learn"
    # The copy recipe's width (64) on lengths 1-6: 100% on every held-out length after ~700-1,000 steps.
    res = run_cli([sys.executable, "train.py", "recipe=copy", f"output_dir={out}", "progress=false",
                   "report_to=none", "model.n_positions=16", "data.max_length=6", "optim.max_steps=1500",
                   "eval_every=50", "eval_per_length=64", "eval_heads=false", "target_accuracy=1.0",
                   "max_minutes=null", "save_every=0", "snapshot_steps=[]"], timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert records(out)[-1]["test"]["accuracy_min"] == 1.0
    assert "copy: test sequence accuracy per length" in res.stdout

    from transformers import AutoModelForCausalLM, AutoTokenizer
    import modeling  # noqa: F401  (registers the Auto classes)
    model = AutoModelForCausalLM.from_pretrained(out / "final").eval()
    tok = AutoTokenizer.from_pretrained(out / "final")
    from training.config import from_dict
    import yaml
    test = TaskData(from_dict(yaml.safe_load((out / "train_config.yaml").read_text())))
    inputs = test.splits["test"]["copy", 6][:8, 1:7]  # held-out inputs of length 6
    prompt = tasks.build_rows(tasks.make_task("copy"), inputs)[:, :8]  # <copy> x1..x6 <eoi>
    gen = model.generate(torch.as_tensor(prompt), max_new_tokens=7, do_sample=False,
                         pad_token_id=tasks.PAD_ID, eos_token_id=tasks.EOS_ID)
    assert tok.batch_decode(gen[:, 8:]) == [" ".join(map(str, x)) + " <eos>" for x in inputs]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"].startswith("target accuracy") and summary["reached_target"]
    assert summary["steps_to_target"] == summary["steps"] == records(out)[-1]["step"]
    assert summary["acc_L6"] == 1.0 and summary["mixed_precision"] == "no"


@pytest.mark.integration
def test_run_folder_layout(copy_run):
    out, _ = copy_run
    recs = records(out)
    assert [r["step"] for r in recs] == [10, 20, 30, 40, 50, 60]
    assert {"loss", "lr", "train", "test"} <= set(recs[0])
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_40", "step_60"]  # keep 2
    assert (out / "checkpoints" / "step_60" / "manifest.json").exists()
    assert (out / "snapshots" / "step_30" / "model.safetensors").exists()
    for f in ("config.json", "model.safetensors", "modeling_itergpt.py", "configuration_itergpt.py",
              "tokenizer.json", "generation_config.json", "training_info.json"):
        assert (out / "final" / f).exists(), f
    assert (out / ".iteration-head-run").exists() and (out / "summary.json").exists()
    assert not list(out.rglob(".*tmp-*"))


@pytest.mark.integration
def test_exact_resume_after_sigkill(copy_run, tmp_path):
    ref, _ = copy_run
    out = tmp_path / "killed"
    args = ["optim.max_steps=60", "eval_every=10", "save_every=20", "snapshot_steps=[30]"]
    proc = subprocess.Popen(train_cmd(out, *args), cwd=ROOT, env=clean_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "checkpoints" / "step_20" / "trainer_state.json").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before its first checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "final").exists()
    res = run_cli(train_cmd(out, *args, "resume=latest"), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert without_time(records(out)) == without_time(records(ref))
    from safetensors.torch import load_file
    a, b = load_file(ref / "final" / "model.safetensors"), load_file(out / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Resuming the finished run says so and changes nothing (no duplicate record).
    res = run_cli(train_cmd(out, *args, "resume=latest"), timeout=300)
    assert res.returncode == 0 and "finished run" in res.stdout
    assert [r["step"] for r in records(out)] == [10, 20, 30, 40, 50, 60]


@pytest.mark.integration
def test_a_run_stopped_by_its_time_limit_continues_with_more_time(copy_run, tmp_path):
    """max_minutes stops a run with a checkpoint at that step; resume with a larger budget continues it
    to the same weights as the uninterrupted run, and the same budget changes nothing."""
    ref, _ = copy_run
    out = tmp_path / "timed"
    args = ["optim.max_steps=60", "eval_every=10", "save_every=20", "snapshot_steps=[30]"]
    res = run_cli(train_cmd(out, *args, "max_minutes=0.0005"), timeout=600)  # 30 ms of training
    assert res.returncode == 0, res.stderr[-3000:]
    first = json.loads((out / "summary.json").read_text())
    stop = first["steps"]
    assert first["stop_reason"] == "time limit 0.0005 min" and 0 < stop < 60, first
    assert stop in checkpoint_steps(out / "checkpoints") and records(out)[-1]["step"] == stop
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    res = run_cli(train_cmd(out, *args, "max_minutes=0.0005", "resume=latest"), timeout=300)
    assert res.returncode == 0 and "a larger max_minutes" in res.stdout, res.stdout[-2000:]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    res = run_cli(train_cmd(out, *args, "max_minutes=null", "resume=latest"), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"stopped on its time limit at step {stop}" in res.stdout
    done = json.loads((out / "summary.json").read_text())
    assert (done["steps"], done["stop_reason"]) == (60, "max_steps")
    import yaml  # the folder records the budget the run finished under, not the first one
    assert yaml.safe_load((out / "train_config.yaml").read_text())["max_minutes"] is None
    from safetensors.torch import load_file
    a, b = load_file(ref / "final" / "model.safetensors"), load_file(out / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [r["step"] for r in records(out)]
    assert steps == sorted({10, 20, 30, 40, 50, 60, stop}), steps
    same = {r["step"]: r["test"] for r in records(ref)}
    assert all(r["test"] == same[r["step"]] for r in records(out) if r["step"] in same)
    assert (out / "snapshots" / "step_30" / "model.safetensors").exists()


@pytest.mark.integration
def test_a_time_limited_run_without_checkpoints_is_never_restarted_by_resume(tmp_path):
    out = tmp_path / "timed"
    args = ["optim.max_steps=60", "eval_every=10", "save_every=0", "max_minutes=0.0005"]
    assert run_cli(train_cmd(out, *args), timeout=600).returncode == 0
    before = {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*")}
    res = run_cli(train_cmd(out, *args[:-1], "max_minutes=null", "resume=auto"), timeout=300)
    assert res.returncode == 0 and "cannot be continued" in res.stdout, res.stdout[-2000:]
    assert {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*")} == before


@pytest.mark.integration
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    out = tmp_path / "nan"
    res = run_cli(train_cmd(out, "optim.max_steps=40", "save_every=1", "eval_every=100", "optim.lr=1e30",
                            "optim.warmup_steps=1", "optim.grad_clip=1e30"), timeout=300)
    assert res.returncode == 2 and "non-finite" in res.stderr and "Last good checkpoint" in res.stderr
    assert not (out / "final").exists()
    saved = checkpoint_steps(out / "checkpoints")
    assert saved, "the checkpoints saved before the failure must remain"
    from safetensors.torch import load_file
    for step in saved:
        weights = load_file(next((out / "checkpoints" / f"step_{step}").glob("model*.safetensors")))
        assert all(torch.isfinite(w).all() for w in weights.values())


def _launch(out, *extra, launcher=("--multi_gpu", "--num_processes", "2")):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *launcher, "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", *train_cmd(out, *extra)[1:]]
    return run_cli(cmd, env_extra={"ACCELERATE_USE_CPU": "true"}, timeout=600)


@pytest.mark.integration
def test_two_processes_train_the_same_recipe_as_one(tmp_path):
    """Real DDP on two CPU processes (gloo): the same lr schedule step for step (accelerate would step
    it once per process), the same loss curve up to float rounding (each process weighs its loss by the
    global target count), and the run folder written once, by the main process."""
    args = ["optim.max_steps=200", "optim.lr=3e-3", "optim.warmup_steps=20", "eval_every=20",
            "save_every=100", "data.max_length=4", "model.embd_pdrop=0.0"]
    one = run_cli(train_cmd(tmp_path / "one", *args), timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    res = _launch(tmp_path / "ddp", *args)
    errors = [line for line in res.stderr.splitlines() if "Error" in line]
    assert res.returncode == 0, "\n".join(errors[:10]) + "\n" + res.stderr[-2000:]
    assert "2 process(es)" in res.stdout and res.stdout.count("stopped at step") == 1
    ref, recs = records(tmp_path / "one"), records(tmp_path / "ddp")
    assert [r["step"] for r in recs] == [r["step"] for r in ref] == list(range(20, 201, 20))
    assert [r["lr"] for r in recs] == pytest.approx([r["lr"] for r in ref], rel=1e-9)
    assert recs[0]["lr"] == pytest.approx(3e-3, rel=1e-9)  # warm-up ends at step 20, not at step 10
    assert [r["loss"] for r in recs] == pytest.approx([r["loss"] for r in ref], rel=2e-3)
    assert recs[-1]["loss"] < recs[0]["loss"] / 4, [r["loss"] for r in recs]
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == ["step_100", "step_200"]
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["num_processes"] == 2


@pytest.mark.integration
def test_the_launchers_gradient_accumulation_flag_is_refused_not_ignored(tmp_path):
    res = _launch(tmp_path / "acc", "optim.max_steps=5",
                  launcher=("--cpu", "--num_processes", "1", "--gradient_accumulation_steps", "4"))
    assert res.returncode != 0 and "set optim.grad_accum=4" in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "acc").exists()


@pytest.mark.integration
def test_accelerate_launch_mixed_precision_is_honoured_and_recorded(tmp_path):
    out = tmp_path / "bf16"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
           "--num_machines", "1", "--mixed_precision", "bf16", "--dynamo_backend", "no",
           *train_cmd(out, "optim.max_steps=10", "eval_every=10", "save_every=0")[1:]]
    res = run_cli(cmd, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "precision bf16" in res.stdout
    assert json.loads((out / "summary.json").read_text())["mixed_precision"] == "bf16"
    assert json.loads((out / "final" / "training_info.json").read_text())["mixed_precision"] == "bf16"
    import yaml  # the config the folder keeps says what the launcher chose, not null
    assert yaml.safe_load((out / "train_config.yaml").read_text())["mixed_precision"] == "bf16"


@pytest.mark.integration
def test_fine_tuning_records_the_architecture_and_starts_with_a_step0_evaluation(copy_run, tmp_path):
    ref, _ = copy_run
    out = tmp_path / "ft"
    res = run_cli([sys.executable, "train.py", "recipe=parity_finetune", f"init_from={ref / 'final'}",
                   f"output_dir={out}", "data.max_length=5", "optim.max_steps=10", "eval_every=10",
                   "eval_per_length=16", "target_accuracy=null", "report_to=none", "progress=false",
                   "trainable=[model.blocks.1.mlp.*]"], timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    recs = records(out)
    assert [r["step"] for r in recs] == [0, 10] and recs[0]["loss"] is None  # where fine-tuning starts
    import yaml
    model = yaml.safe_load((out / "train_config.yaml").read_text())["model"]
    assert (model["n_embd"], model["n_positions"]) == (32, 16)  # the init model's, not the recipe's
    assert "(" in res.stdout and "trainable)" in res.stdout


@pytest.mark.integration
def test_a_run_of_an_experiment_records_its_records_hash(tmp_path):
    from training.evidence import record_sha256
    out = tmp_path / "rec"
    res = run_cli(train_cmd(out, "optim.max_steps=5", "eval_every=5", "save_every=0", "record=f1_cot"), timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((out / "summary.json").read_text())["record_sha256"] == record_sha256("f1_cot")
    with pytest.raises(ConfigError, match="record='nope': no .*records/nope.yaml"):
        validate(compose(["recipe=copy", "record=nope"]))


def test_the_papers_data_conditions_draw_with_replacement_and_split_half_half():
    """data.source=paper: the reference's data (2,048 draws per length with replacement, half train,
    half test), so train and test overlap at short lengths, as in the paper; training rows come only
    from the train half, reshuffled every epoch."""
    cfg = compose(["recipe=parity", "data.task=parity", "data.source=paper", "data.max_length=8"])
    validate(cfg)
    data = TaskData(cfg)
    for L in (2, 8):
        train, test = data.splits["train"]["parity", L], data.splits["test"]["parity", L]
        assert len(train) == len(test) == 1024
        keys = lambda rows: {r[1:L + 1].tobytes() for r in rows}  # noqa: E731
        if L == 2:
            assert keys(test) <= keys(train) and len(keys(train)) == 4  # every short test input is trained on
        else:
            assert 0 < len(keys(test) & keys(train)) < len(keys(test))
            assert len(keys(train)) < len(train)  # duplicates kept: drawn with replacement
    trained = {r.tobytes() for rows in data.splits["train"].values() for r in rows}
    assert all(r.tobytes() in trained for step in range(40) for r in data.rows(step, 0, 1))
    with pytest.raises(ConfigError, match="data.source=paper draws the reference's split itself"):
        validate(compose(["recipe=parity", "data.source=paper", f"data.dataset={ROOT / 'hub' / 'iteration-head-tasks'}"]))
    again = TaskData(cfg).splits["test"]["parity", 8]
    assert (again == data.splits["test"]["parity", 8]).all()  # deterministic


@pytest.mark.integration
def test_the_demo_runs_both_stages_in_one_process_and_says_where_the_time_went(tmp_path, capsys):
    """`make demo` (python -m training.demo): the two train.py commands it stands for, printed and run
    in one process; each stage ends with its wall-time line; the test split alone is evaluated."""
    from training import demo
    out = tmp_path / "demo"
    small = ["optim.max_steps=10", "eval_every=5", "eval_per_length=8", "figures=false", "progress=false",
             "model.n_embd=16", "threads=1"]
    done = run_cli([sys.executable, "-m", "training.demo", "--seed", "3", "--out", str(out), *small], timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    commands = [line for line in done.stdout.splitlines() if line.startswith("$ python train.py")]
    assert [c.split()[3] for c in commands] == ["recipe=demo_polynomial", "recipe=demo_parity"]
    assert f"init_from={out / 'polynomial' / 'final'}" in commands[1]
    walls = [line for line in done.stdout.splitlines() if line.startswith("wall time")]
    assert len(walls) == 2 and all("start-up" in w and "training" in w and "evaluation" in w for w in walls)
    for stage in ("polynomial", "parity"):
        assert json.loads((out / stage / "final" / "training_info.json").read_text())["train_config"]["seed"] == 3
        records = [json.loads(line) for line in (out / stage / "metrics.jsonl").read_text().splitlines()]
        assert records and all("test" in r and "train" not in r for r in records)
    # a bad override: the config's own error, in-process
    returncode = demo.main(["--out", str(tmp_path / "x"), "optim.lr=abc"])
    assert returncode == 2 and "error:" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_threads_are_as_asked_one_per_sweep_job_and_never_more_than_the_cores():
    from training import cli
    before = torch.get_num_threads()
    try:
        assert cli.set_threads(3) == 3 and torch.get_num_threads() == 3
        assert cli.set_threads(None, in_sweep=True) == 1 and torch.get_num_threads() == 1
        assert 1 <= cli.set_threads(None) <= cli.CORES
    finally:
        torch.set_num_threads(before)


def test_flush_denormal_is_part_of_the_run(tmp_path):
    """``flush_denormal=true`` sets the CPU to treat subnormal floats as zero for the run, and the run
    records it (a config key like any other: a resume compares it)."""
    import torch
    import yaml

    from training.config import compose
    from training.loop import train
    tiny = 1e-40  # a subnormal float32
    assert torch.tensor([tiny]).item() != 0
    try:
        train(compose([*TINY_RUN, "optim.max_steps=4", "eval_every=4", "save_every=4", "flush_denormal=true",
                       f"output_dir={tmp_path / 'run'}"]))
        assert torch.tensor([tiny]).item() == 0  # flushed to zero
        assert yaml.safe_load((tmp_path / "run" / "train_config.yaml").read_text())["flush_denormal"] is True
    finally:
        torch.set_flush_denormal(False)
