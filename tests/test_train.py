"""train.py: real (tiny) training runs, exact resume after SIGKILL, DDP on two CPU processes, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

import train
from datasets_builders import tasks

ROOT = Path(__file__).resolve().parents[1]

# A tiny copy run: lengths 1-5 fit a 16-position context. Dropout is on so that an exact resume
# must also restore the RNG.
TINY = ["model.n_embd=32", "model.n_positions=16", "model.embd_pdrop=0.1", "data.max_length=5",
        "data.examples_per_length=64", "optim.batch_size=32", "optim.warmup_steps=10",
        "eval_per_length=32", "eval_heads=false", "max_minutes=null", "target_accuracy=null"]


def run_cli(args, env_extra=None, **kw):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    env.update(env_extra or {})
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, **kw)


def train_cmd(out, *extra):
    return [sys.executable, "train.py", "--recipe", "copy", "--output_dir", str(out), "--no_progress",
            "--report_to", "none", *TINY, *extra]


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def without_time(recs):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in recs]


# ---------------------------------------------------------------------------------------------
def test_loss_is_masked_before_end_of_input():
    task = tasks.make_task("parity")
    rows = [tasks.build_rows(task, np.array([[1, 0, 1]]))[0], tasks.build_rows(task, np.array([[1]]))[0]]
    ids = torch.as_tensor(tasks.pad_rows(rows))
    labels = train.labels_for(ids)
    # Row 0: <parity> 1 0 1 <eoi> | 1 1 0 <eos>; row 1: <parity> 1 <eoi> | 1 <eos> <pad>...
    assert labels[0].tolist() == [-100] * 5 + [1, 1, 0, tasks.EOS_ID]
    assert labels[1].tolist() == [-100] * 3 + [1, tasks.EOS_ID] + [-100] * 4
    # The model's loss is the mean cross-entropy over exactly those targets.
    from modeling import IterGPTConfig, IterGPTForCausalLM
    model = IterGPTForCausalLM(IterGPTConfig(n_embd=32, n_positions=16, embd_pdrop=0.0)).eval()
    out = model(input_ids=ids, labels=labels)
    logits, keep = out.logits[:, :-1], labels[:, 1:] != -100
    manual = F.cross_entropy(logits[keep], ids[:, 1:][keep])
    torch.testing.assert_close(out.loss, manual)


def test_config_overrides_and_unknown_keys():
    cfg, args = train.parse_args(["--recipe", "parity", "optim.lr=2.5e-3", "model.n_embd=96"])
    assert cfg.optim.lr == 2.5e-3 and cfg.model.n_embd == 96 and cfg.data.task == "mix"
    with pytest.raises(ValueError, match="unknown key.*'lrr'"):
        train.parse_args(["--recipe", "parity", "optim.lrr=1"])
    with pytest.raises(ValueError, match="recipe 'nope' not found.*parity"):
        train.parse_args(["--recipe", "nope"])
    with pytest.raises(ValueError, match="optim.lr=.abc. is invalid: it must be float"):
        train.parse_args(["--recipe", "parity", "optim.lr=abc"])
    with pytest.raises(ValueError, match="not of the form key=value"):
        train.parse_args(["--recipe", "parity", "optim.lr"])
    with pytest.raises(ValueError, match="n_positions"):
        train.parse_args(["--recipe", "parity", "data.max_length=40"])


def test_every_recipe_is_valid():
    for name in train.available_recipes():
        cfg, _ = train.parse_args(["--recipe", name])
        assert cfg.model.n_layer >= 1
    assert {"parity", "copy", "polynomial", "mix", "parity_nocot", "parity_1layer",
            "paper_reference"} <= set(train.available_recipes())


def test_fresh_batches_never_contain_a_test_sequence():
    # The demo recipe: parity with 30% copy rows.
    cfg, _ = train.parse_args(["--recipe", "parity", "data.max_length=6", "model.n_positions=16"])
    data = train.TaskData(cfg)
    names = {tasks.TASK_TOKEN_ID[n]: n for n in tasks.TASK_NAMES}
    seen = {"copy": 0, "parity": 0}
    for step in range(30):
        for row in data.rows(step, 0, 1):
            length = int(np.flatnonzero(row == tasks.EOI_ID)[0]) - 1
            key = bytes(row[1:length + 1].astype(np.uint8))
            assert key not in data.test_keys[names[row[0]], length]
            seen[names[row[0]]] += 1
    assert sum(seen.values()) == 30 * cfg.optim.batch_size
    assert 0.2 < seen["copy"] / sum(seen.values()) < 0.4  # mix_ratio 0.3
    # The parity test split is the one of the released `parity` dataset config.
    from datasets_builders.iteration_tasks import IterationTaskConfig, split_inputs
    config = IterationTaskConfig(name="p", task="parity", max_length=6, examples_per_length=2048,
                                 test_fraction=0.25)
    assert np.array_equal(data.splits["test"]["parity", 5][:, 1:6], split_inputs(config, 5)["test"])
    # A batch is a pure function of the step; two processes split the same global batch.
    both, whole = data.rows(7, 0, 2) + data.rows(7, 1, 2), data.rows(7, 0, 1)
    assert len(both) == len(whole) and all(np.array_equal(x, y) for x, y in zip(both, whole))
    assert all(np.array_equal(x, y) for x, y in zip(data.rows(7, 0, 1), whole))


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


def test_packed_batch_gives_the_padded_batch_loss_and_gradient():
    cfg, _ = train.parse_args(["--recipe", "parity", "model.embd_pdrop=0.0"])
    data = train.TaskData(cfg)
    torch.manual_seed(0)
    model = train.build_model(cfg, None)
    rows = data.rows(3, 0, 1)
    padded, packed = train.collate(rows, packing=False), train.collate(rows, packing=True)
    assert packed["input_ids"].numel() < 0.8 * padded["input_ids"].numel()
    assert int((packed["labels"] != -100).sum()) == int((padded["labels"] != -100).sum())
    losses, grads = [], []
    for batch in (padded, packed):
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        losses.append(loss.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(losses[0], losses[1])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def copy_run(tmp_path_factory):
    """An uninterrupted tiny copy run (60 steps), used as the reference by several tests."""
    out = tmp_path_factory.mktemp("runs") / "copy"
    res = run_cli(train_cmd(out, "optim.max_steps=60", "eval_every=10", "save_every=20",
                            "snapshot_steps=[30]"), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res


def test_tiny_model_learns_copy_and_final_folder_loads(tmp_path):
    out = tmp_path / "learn"
    # The copy recipe's width (64) on lengths 1-6: 100% on every held-out length after ~700 steps.
    res = run_cli([sys.executable, "train.py", "--recipe", "copy", "--output_dir", str(out), "--no_progress",
                   "--report_to", "none", "model.n_positions=16", "data.max_length=6", "optim.max_steps=800",
                   "eval_every=50", "eval_per_length=64", "eval_heads=false", "target_accuracy=1.0",
                   "max_minutes=null", "save_every=0", "snapshot_steps=[]"], timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    last = records(out)[-1]
    assert last["test"]["accuracy_min"] == 1.0, last
    assert "teacher-forced test sequence accuracy per length" in res.stdout

    from transformers import AutoModelForCausalLM, AutoTokenizer
    import modeling  # noqa: F401  (registers the Auto classes)
    model = AutoModelForCausalLM.from_pretrained(out / "final").eval()
    tok = AutoTokenizer.from_pretrained(out / "final")
    task = tasks.make_task("copy")
    test = train.TaskData(train.config_from_dict(yaml.safe_load((out / "train_config.yaml").read_text())))
    inputs = test.splits["test"]["copy", 6][:8, 1:7]  # held-out inputs of length 6
    prompt = tasks.build_rows(task, inputs)[:, :8]  # <copy> x1..x6 <eoi>
    gen = model.generate(torch.as_tensor(prompt), max_new_tokens=7, do_sample=False,
                         pad_token_id=tasks.PAD_ID, eos_token_id=tasks.EOS_ID)
    want = [" ".join(map(str, x)) + " <eos>" for x in inputs]
    assert tok.batch_decode(gen[:, 8:]) == want
    info = json.loads((out / "final" / "training_info.json").read_text())
    assert info["stop_reason"].startswith("target accuracy")

    # bench/sweep.py reads the run as the step and time at which every test length reached the target.
    sys.path.insert(0, str(ROOT / "bench"))
    import sweep
    run = sweep.read_run(out)
    assert (run["hit_step"], run["hit_time"]) == (info["step"], info["time_s"]) and run["done"]
    (tmp_path / "grid" / "variant").mkdir(parents=True)
    out.rename(tmp_path / "grid" / "variant" / "seed0")
    row = sweep.summary(tmp_path / "grid").splitlines()[2].split()
    assert row[:4] == ["variant", "1/1", str(info["step"]), f"{info['time_s']:.0f}"], row


def test_run_folder_layout(copy_run):
    out, _ = copy_run
    recs = records(out)
    assert [r["step"] for r in recs] == [10, 20, 30, 40, 50, 60]
    assert {"loss", "lr", "train", "test"} <= set(recs[0])
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_40", "step_60"]  # keep 2
    assert (out / "snapshots" / "step_30" / "model.safetensors").exists()
    for f in ("config.json", "model.safetensors", "modeling_itergpt.py", "configuration_itergpt.py",
              "tokenizer.json", "generation_config.json", "training_info.json"):
        assert (out / "final" / f).exists(), f
    assert not (out / ".lock").exists()
    assert not list(out.rglob(".*tmp-*"))


def test_exact_resume_after_sigkill(copy_run, tmp_path):
    ref, _ = copy_run
    out = tmp_path / "killed"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    proc = subprocess.Popen(train_cmd(out, "optim.max_steps=60", "eval_every=10", "save_every=20",
                                      "snapshot_steps=[30]"),
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "checkpoints" / "step_20" / "trainer_state.json").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before its first checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "final").exists()
    # Continue it: the run picks up at the last complete checkpoint.
    res = run_cli(train_cmd(out, "optim.max_steps=60", "eval_every=10", "save_every=20",
                            "snapshot_steps=[30]", "--resume_from_checkpoint", "latest"), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert without_time(records(out)) == without_time(records(ref))
    from safetensors.torch import load_file
    a, b = load_file(ref / "final" / "model.safetensors"), load_file(out / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_finished_run_is_not_overwritten_and_resume_checks_config(copy_run):
    out, _ = copy_run
    before = (out / "final" / "model.safetensors").read_bytes()
    res = run_cli(train_cmd(out, "optim.max_steps=60"), timeout=300)
    assert res.returncode == 2 and "finished run" in res.stderr and "--overwrite" in res.stderr
    res = run_cli(train_cmd(out, "optim.max_steps=90", "eval_every=10", "save_every=20",
                            "snapshot_steps=[30]", "--resume_from_checkpoint", "latest"), timeout=300)
    assert res.returncode == 2 and "optim.max_steps" in res.stderr
    assert (out / "final" / "model.safetensors").read_bytes() == before


def test_output_folder_in_use(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / ".lock").write_text(str(os.getpid()))  # this (live) test process holds it
    res = run_cli(train_cmd(out, "optim.max_steps=5", "--overwrite"), timeout=300)
    assert res.returncode == 2 and "in use by process" in res.stderr
    assert (out / ".lock").read_text() == str(os.getpid())


def test_init_from_other_vocabulary_is_refused(tmp_path):
    from modeling import IterGPTConfig, IterGPTForCausalLM
    IterGPTForCausalLM(IterGPTConfig(vocab_size=80, n_embd=32, n_positions=16)).save_pretrained(tmp_path / "m")
    res = run_cli(train_cmd(tmp_path / "ft", "optim.max_steps=5", "--init_from", str(tmp_path / "m")),
                  timeout=300)
    assert res.returncode == 2 and "vocab_size=80" in res.stderr


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    out = tmp_path / "nan"
    res = run_cli(train_cmd(out, "optim.max_steps=40", "save_every=1", "eval_every=100",
                            "optim.lr=1e30", "optim.warmup_steps=1", "optim.grad_clip=1e30"), timeout=300)
    assert res.returncode == 2 and "non-finite" in res.stderr, res.stderr[-2000:]
    assert "Last good checkpoint" in res.stderr
    assert not (out / "final").exists()
    saved = train.checkpoint_steps(out / "checkpoints")
    assert saved, "the checkpoints saved before the failure must remain"
    for step in saved:
        state = out / "checkpoints" / f"step_{step}"
        from safetensors.torch import load_file
        weights = load_file(next(state.glob("model*.safetensors")))
        assert all(torch.isfinite(w).all() for w in weights.values())


def test_two_process_ddp_on_cpu(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           *train_cmd(out, "optim.max_steps=300", "optim.lr=3e-3", "eval_every=50", "save_every=100",
                      "data.max_length=4")[1:]]
    res = run_cli(cmd, env_extra={"ACCELERATE_USE_CPU": "true"}, timeout=600)
    errors = [line for line in res.stderr.splitlines() if "Error" in line]
    assert res.returncode == 0, "\n".join(errors[:10]) + "\n" + res.stderr[-2000:]
    assert "2 process(es)" in res.stdout
    recs = records(out)
    assert [r["step"] for r in recs] == [50, 100, 150, 200, 250, 300]  # one line per eval: main only
    # It learns: the loss falls fourfold and test accuracy rises (short lengths have 1-4 held-out
    # inputs each, so perfect generalisation is not the bar here).
    assert recs[-1]["loss"] < recs[0]["loss"] / 4, [r["loss"] for r in recs]
    assert recs[-1]["test"]["accuracy_mean"] >= recs[0]["test"]["accuracy_mean"] + 0.2, recs[-1]["test"]
    assert res.stdout.count("stopped at step") == 1
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_200", "step_300"]
