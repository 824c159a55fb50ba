"""Nothing lost, nothing silent (training side): a run folder is only ever replaced when it is one of
ours and the new run can start; writes are atomic; damage is detected; concurrent starts, kills and a
full disk are handled. Real processes, real signals, real resource limits."""

import json
import multiprocessing as mp
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from training.config import ConfigError, compose, validate
from training.data import TaskData
from training.loop import check_resume, resolve
from datasets_builders.files import write_text_atomic
from training.run_folder import (RunFolder, RunFolderError, read_metrics, verify_manifest,
                                 write_manifest)

from helpers import ROOT, in_namespace, need_mount, run_cli, train_cmd

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("safety") / "done"
    res = run_cli(train_cmd(out, "optim.max_steps=20", "eval_every=10", "save_every=10"), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


# ---------------------------------------------------------------------------------------------
# data loss made impossible
# ---------------------------------------------------------------------------------------------
@pytest.mark.integration
def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("my thesis")
    (tmp_path / "data").mkdir()
    res = run_cli(train_cmd(tmp_path, "overwrite=true", "optim.max_steps=5"), timeout=300)
    assert res.returncode == 2 and "is not a run folder of train.py" in res.stderr and "nothing was deleted" in res.stderr
    assert (tmp_path / "notes.txt").read_text() == "my thesis" and (tmp_path / "data").is_dir()
    with pytest.raises(RunFolderError, match="not a run folder"):
        RunFolder(ROOT).check(resume=None, overwrite=True)  # an unset variable: output_dir=.


@pytest.mark.integration
def test_overwrite_refuses_a_run_folder_holding_foreign_files(finished_run, tmp_path):
    folder = tmp_path / "run"
    subprocess.run(["cp", "-r", str(finished_run), str(folder)], check=True)
    (folder / "paper_draft.tex").write_text("keep me")
    with pytest.raises(RunFolderError, match="paper_draft.tex"):
        RunFolder(folder).check(resume=None, overwrite=True)


@pytest.mark.integration
@pytest.mark.parametrize("bad", ["optim.lr=-1", "init_from=runs/typo/final", "data.mix_ratio=1.5",
                                 "data.dataset=/no/such/dataset", "model.n_head=3"])
def test_overwrite_with_bad_settings_keeps_the_old_run(finished_run, bad):
    before = snapshot(finished_run)
    res = run_cli(train_cmd(finished_run, "optim.max_steps=20", "eval_every=10", "save_every=10",
                            "overwrite=true", bad), timeout=300)
    assert res.returncode == 2 and res.stderr.startswith("error: "), res.stderr[-2000:]
    assert snapshot(finished_run) == before


def test_output_dir_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunFolderError, match="is a file"):
        RunFolder(tmp_path / "f").check(resume=None, overwrite=True)


def _claim_and_hold(path, results):
    try:
        RunFolder(path).claim(replace=False)
        results.put("ok")
        time.sleep(2)
    except RunFolderError as err:
        results.put(str(err))


def test_lock_is_atomic_between_concurrent_processes(tmp_path):
    ctx = mp.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_claim_and_hold, args=(tmp_path / "run", results)) for _ in range(8)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    assert outcomes.count("ok") == 1, outcomes
    assert all("is in use by process" in o for o in outcomes if o != "ok")


@pytest.mark.integration
def test_lock_of_a_killed_process_is_released(tmp_path):
    code = ("import time; from training.run_folder import RunFolder; "
            f"RunFolder({str(tmp_path / 'run')!r}).claim(replace=False); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(RunFolderError, match=f"in use by process {proc.pid}"):
        RunFolder(tmp_path / "run").claim(replace=False)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    RunFolder(tmp_path / "run").claim(replace=False)  # the kernel released the dead process's lock


# ---------------------------------------------------------------------------------------------
# metrics and checkpoints: atomic writes, damage detected
# ---------------------------------------------------------------------------------------------
def test_half_written_last_metrics_line_is_dropped_with_a_warning(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 10}\n{"step": 20}\n{"step": 3')
    with pytest.warns(UserWarning, match="line 3 is incomplete"):
        assert [r["step"] for r in read_metrics(path)] == [10, 20]
    path.write_text('{"step": 10}\ngarbage\n{"step": 30}\n')
    with pytest.raises(RunFolderError, match=r"metrics.jsonl: line 2 is not JSON"):
        read_metrics(path)


def _limited(limit_bytes):
    def preexec():  # CPython ignores SIGXFSZ: a write past the limit fails with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return preexec


@pytest.mark.integration
def test_atomic_rewrite_survives_a_failed_write(tmp_path):
    path = tmp_path / "metrics.jsonl"
    original = "".join(json.dumps({"step": s, "pad": "x" * 2000}) + "\n" for s in range(1, 50))
    path.write_text(original)
    code = ("from training.run_folder import RunFolder; import sys; "
            f"RunFolder({str(tmp_path)!r}).truncate_metrics(40)")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, preexec_fn=_limited(20_000),
                         capture_output=True, text=True)
    assert res.returncode != 0 and "File too large" in res.stderr
    assert path.read_text() == original and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


@pytest.mark.integration
def test_full_disk_during_training_is_one_clear_error_and_leaves_no_temporary_folder(tmp_path):
    out = tmp_path / "full"
    res = run_cli(train_cmd(out, "optim.max_steps=20", "eval_every=10", "save_every=10"), timeout=300,
                  preexec_fn=_limited(60_000))
    assert res.returncode == 2, res.stderr[-3000:]
    assert res.stderr.strip().splitlines()[-1].startswith("error: no space left writing"), res.stderr[-2000:]
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    folder = RunFolder(tmp_path)
    for step in (10, 20):
        ckpt = tmp_path / "checkpoints" / f"step_{step}"
        ckpt.mkdir(parents=True)
        (ckpt / "model.safetensors").write_bytes(os.urandom(1000))
        (ckpt / "random_states_0.pkl").write_bytes(os.urandom(100))
        (ckpt / "trainer_state.json").write_text(json.dumps({"step": step}))
        write_manifest(ckpt)
    assert folder.resumable_checkpoint("latest")[0] == 20
    (tmp_path / "checkpoints" / "step_20" / "random_states_0.pkl").write_bytes(b"garbage")  # damaged RNG state
    with pytest.warns(UserWarning, match="step_20 is damaged.*random_states_0.pkl"):
        assert folder.resumable_checkpoint("latest")[0] == 10
    with pytest.raises(RunFolderError, match="damaged"):
        folder.resumable_checkpoint("step_20")
    with open(tmp_path / "checkpoints" / "step_10" / "model.safetensors", "r+b") as f:
        f.truncate(10)  # a truncated weights file
    assert "model.safetensors is damaged" in verify_manifest(tmp_path / "checkpoints" / "step_10")
    with pytest.warns(UserWarning), pytest.raises(RunFolderError, match="no intact checkpoint"):
        folder.resumable_checkpoint("latest")


def test_checkpoints_and_releases_share_one_manifest_and_older_checkpoints_still_verify(tmp_path):
    from datasets_builders.files import sha256_file
    from model_cards import verify

    ckpt = tmp_path / "step_10"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(os.urandom(1000))
    write_manifest(ckpt)
    doc = json.loads((ckpt / "manifest.json").read_text())
    assert doc == {"algorithm": "sha256", "files": {"model.safetensors": {"bytes": 1000, "sha256": sha256_file(
        ckpt / "model.safetensors")}}}
    assert verify_manifest(ckpt) is None and verify.problems(ckpt) == []  # one format, one verifier
    # a checkpoint written before the formats were one: {name: sha256}
    (ckpt / "manifest.json").write_text(json.dumps({"model.safetensors": sha256_file(ckpt / "model.safetensors")}))
    assert verify_manifest(ckpt) is None
    (ckpt / "model.safetensors").write_bytes(os.urandom(1000))
    assert verify_manifest(ckpt) == "model.safetensors is damaged (sha256 differs from the manifest)"


# ---------------------------------------------------------------------------------------------
# silent wrong results made errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.integration
def test_init_from_run_records_and_resumes_the_architecture_it_trained(finished_run, tmp_path):
    init = str(finished_run / "final")
    cfg = resolve(compose(["recipe=parity_finetune", f"init_from={init}", f"output_dir={tmp_path / 'ft'}",
                           "data.max_length=5"]))
    assert cfg.model.n_embd == 32 and cfg.model.n_positions == 16  # the init model's, not the recipe's 128 / 64
    folder = RunFolder(tmp_path / "ft")
    folder.path.mkdir()
    write_text_atomic(folder.config_path, yaml.safe_dump(__import__("training.config").config.to_dict(cfg)))
    check_resume(cfg, folder)  # the same command resumes
    plain = resolve(compose(["recipe=parity_finetune", f"output_dir={tmp_path / 'ft'}", "resume=latest",
                             "data.max_length=5", "model.n_positions=16"]))
    with pytest.raises(RunFolderError, match="init_from"):
        check_resume(plain, folder)  # without init_from it would build another architecture: refused


@pytest.mark.integration
def test_reinit_draws_exactly_the_named_parts_afresh_and_refuses_what_it_cannot_do(finished_run):
    """reinit= (what_transfers): the matching parameters of the init_from model are those of a fresh
    model of the same seed; every other weight is the pre-trained one."""
    import torch
    from accelerate.utils import set_seed
    from modeling import IterGPTForCausalLM
    from training.config import validate
    from training.loop import build_model

    init = str(finished_run / "final")
    cfg = resolve(compose(["recipe=parity_finetune", f"init_from={init}", "data.max_length=5", "seed=3",
                           "reinit=[model.blocks.1.attn.q_proj.*,model.blocks.1.attn.k_proj.*]"]))
    set_seed(3)
    model = build_model(cfg, resuming=False)
    set_seed(3)
    fresh = dict(IterGPTForCausalLM(model.config).named_parameters())
    trained = dict(IterGPTForCausalLM.from_pretrained(init).named_parameters())
    for name, p in model.named_parameters():
        drawn = name.startswith(("model.blocks.1.attn.q_proj", "model.blocks.1.attn.k_proj"))
        assert torch.equal(p, (fresh if drawn else trained)[name]), name
        assert drawn or not torch.equal(p, fresh[name]), name
    with pytest.raises(ConfigError, match="reinit pattern 'model.block.1.*' matches no parameter"):
        build_model(resolve(compose(["recipe=parity_finetune", f"init_from={init}", "data.max_length=5",
                                     "reinit=[model.block.1.*]"])), resuming=False)
    with pytest.raises(ConfigError, match="give init_from"):
        validate(compose(["recipe=parity", "reinit=[model.embed.*]"]))


def test_max_length_beyond_the_datasets_lengths_is_refused():
    cfg = compose(["recipe=parity", "data.task=parity", f"data.dataset={ROOT / 'hub' / 'iteration-head-tasks'}",
                   "data.max_length=20"])
    with pytest.raises(ConfigError, match=r"has no rows of length\(s\) \[17, 18, 19, 20\]"):
        TaskData(cfg)


# ---------------------------------------------------------------------------------------------
# the re-audit's cases: each a clear refusal that changes nothing, in real processes
# ---------------------------------------------------------------------------------------------
def _copy(run: Path, to: Path) -> Path:
    subprocess.run(["cp", "-r", str(run), str(to)], check=True)
    return to


@pytest.mark.integration
def test_resume_without_its_config_refuses_and_names_what_is_left(finished_run, tmp_path):
    folder = _copy(finished_run, tmp_path / "run")
    (folder / "summary.json").unlink()
    (folder / "train_config.yaml").unlink()
    before = snapshot(folder)
    for resume in ("latest", "auto"):
        res = run_cli(train_cmd(folder, "optim.max_steps=20", "eval_every=10", "save_every=10", f"resume={resume}"),
                      timeout=300)
        assert res.returncode == 2, res.stdout[-2000:]
        line = res.stderr.strip().splitlines()[-1]
        assert "train_config.yaml is missing" in line and "checkpoints" in line and "metrics.jsonl" in line, line
        assert snapshot(folder) == before  # no restart from step 0, no second history


@pytest.mark.parametrize("key", ["output_dir", "init_from", "data.dataset"])
def test_an_explicitly_empty_path_is_an_error_not_the_default(key):
    with pytest.raises(ConfigError, match=f"{key}='' is empty"):
        validate(compose(["recipe=copy", f"{key}=", "optim.max_steps=5", "report_to=none"]))


@pytest.mark.integration
def test_a_folder_of_lookalike_files_is_not_a_run_folder(tmp_path):
    (tmp_path / "train_config.yaml").write_text("my: notes\n")
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    before = snapshot(tmp_path)
    res = run_cli(train_cmd(tmp_path, "overwrite=true", "optim.max_steps=5"), timeout=300)
    assert res.returncode == 2 and "is not a run folder of train.py" in res.stderr, res.stderr[-2000:]
    assert snapshot(tmp_path) == before


@pytest.mark.integration
def test_resume_removes_the_temporary_files_of_killed_writers(finished_run, tmp_path):
    folder = _copy(finished_run, tmp_path / "run")
    (folder / "summary.json").unlink()
    stale = [folder / ".final.tmp-999999", folder / "checkpoints" / ".step_30.tmp-999998",
             folder / ".metrics.jsonl.tmp-999997"]
    stale[0].mkdir()
    (stale[0] / "model.safetensors").write_bytes(b"x" * 1000)
    stale[1].mkdir()
    stale[2].write_text("half")
    res = run_cli(train_cmd(folder, "optim.max_steps=20", "eval_every=10", "save_every=10", "resume=latest"),
                  timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "removed 3 temporary file(s) of a killed run" in res.stdout
    assert not [p for p in folder.rglob("*") if ".tmp-" in p.name]


@pytest.mark.integration
def test_a_garbage_config_on_resume_is_one_line_naming_the_file(finished_run, tmp_path):
    folder = _copy(finished_run, tmp_path / "run")
    (folder / "summary.json").unlink()
    (folder / "train_config.yaml").write_text("model: [unclosed\n")
    res = run_cli(train_cmd(folder, "optim.max_steps=20", "eval_every=10", "save_every=10", "resume=latest"),
                  timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    line = res.stderr.strip().splitlines()[-1]
    assert "train_config.yaml: not valid YAML" in line and "overwrite=true" in line, line


@pytest.mark.integration
def test_init_from_a_model_of_another_vocabulary_is_refused_before_training(finished_run, tmp_path):
    model = tmp_path / "foreign"
    subprocess.run(["cp", "-r", str(finished_run / "final"), str(model)], check=True)
    config = json.loads((model / "config.json").read_text())
    config["eoi_token_id"] = 5
    (model / "config.json").write_text(json.dumps(config))
    out = tmp_path / "ft"
    res = run_cli(train_cmd(out, f"init_from={model}", "optim.max_steps=5"), timeout=300)
    assert res.returncode == 2 and "eoi_token_id=5 (the tasks': 61)" in res.stderr, res.stderr[-2000:]
    assert not out.exists()


@pytest.mark.integration
def test_disk_full_while_saving_a_checkpoint_on_a_real_tmpfs_is_one_line(tmp_path):
    """torch.save on a full disk raises "[enforce fail at inline_container.cc] unexpected pos" with no
    errno: a real 200 KiB tmpfs (room for the config and metrics, not for the checkpoint)."""
    need_mount("tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    cmd = train_cmd(disk / "run", "optim.max_steps=20", "eval_every=10", "save_every=10")
    res = run_cli(in_namespace(f"mount -t tmpfs -o size=200k tmpfs {disk}", cmd,
                               after=f"ls -A {disk}/run {disk}/run/checkpoints"), timeout=300)
    assert res.returncode == 2, res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.strip()]
    assert errors[-1].startswith("error: no space left writing") and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert ".tmp-" not in res.stdout  # the half-written checkpoint folder was removed
