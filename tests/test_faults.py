"""Fault injection outside training: nothing lost, nothing silent (issue 10).

Real processes, real signals, real damaged files and real file-system limits:

- the command lines (``evaluate.py``, ``python -m modeling.analysis``) end every bad argument in
  one line ``error: ...`` and exit status 1 (missing model, Hub id offline, garbage config,
  truncated weights, remote code, a flag that contradicts the checkpoint, outputs that cannot be
  written);
- a full disk is simulated with ``RLIMIT_FSIZE`` (``EFBIG``: works for any user) and, where mounts
  are allowed, a real 1 MiB tmpfs (``ENOSPC``); a read-only folder is a read-only bind mount in a
  private mount namespace (``unshare``; ``root`` ignores permission bits, a mount does not);
- the release and the exporter are interrupted (SIGINT, SIGKILL) while they write, and must leave
  the previous folder byte for byte as it was; released folders are tampered with and
  ``model_cards.verify`` must say so.

The slow part (whole releases in subprocesses) is marked ``slow``: ``pytest -m "not slow"`` skips it.
"""

from __future__ import annotations

import hashlib
import json
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from datasets_builders import export as export_mod
from datasets_builders import files
from model_cards import publish, release, verify
from model_cards.suite import SUITE_BY_KEY
from modeling import IterGPTConfig, IterGPTForCausalLM
from modeling import analysis
from helpers import ROOT, clean_env, in_namespace, need_mount, run_cli
from test_release import LENGTHS, NS, fake_release, make_run  # noqa: F401 - the fixture

pytestmark = pytest.mark.faults

DATA = {"task": "polynomial", "cot": True, "min_length": 1, "max_length": 3, "examples_per_length": 16,
        "test_fraction": 0.25, "seed": 0, "modulus": 11, "polynomial": [[1, 1, 1], [0, 0, 1]], "dataset": None}


def digest(folder: Path) -> dict:
    """Every file below ``folder`` (hidden ones too) with its sha256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(parent: Path) -> list[str]:
    """Staging, old or temporary entries that a writer left beside its targets."""
    return sorted(p.name for p in parent.rglob(".*") if "staging" in p.name or ".old-" in p.name
                  or p.name.endswith(".tmp"))


def save_model(folder: Path, data: dict | None = DATA) -> Path:
    torch.manual_seed(0)
    IterGPTForCausalLM(IterGPTConfig(n_embd=16, n_positions=16)).save_pretrained(folder)
    if data is not None:
        (folder / "training_info.json").write_text(json.dumps({"step": 1, "train_config": {"data": data}}))
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny polynomial (mod 11) checkpoint with the training_info.json of its run."""
    return save_model(tmp_path_factory.mktemp("faults") / "poly")


def load_cli():
    from modeling import evaluate_cli
    return evaluate_cli


def error_line(capsys, cli, argv) -> str:
    """Run a command line in-process: exit status 1 and one line ``error: ...``, no traceback."""
    code = cli(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1, err
    assert "Traceback" not in err and lines and lines[-1].startswith("error: "), err
    assert sum(line.startswith("error: ") for line in lines) == 1, err
    return lines[-1]


# ---------------------------------------------------------------------------------------------
# evaluate.py and the analysis: one line per bad argument
# ---------------------------------------------------------------------------------------------
def damaged(tmp_path: Path, model: Path, what: str) -> str:
    folder = tmp_path / what
    shutil.copytree(model, folder)
    if what == "garbage_config":
        (folder / "config.json").write_text('{"model_type": "itergpt", "n_embd": 16,,,')
    elif what == "truncated_weights":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[:len(data) // 2])
    elif what == "remote_code":  # a model type this project does not define, with code to run
        config = json.loads((folder / "config.json").read_text())
        config.update(model_type="somebody-elses-gpt", auto_map={"AutoConfig": "configuration_x.XConfig",
                                                                 "AutoModelForCausalLM": "modeling_x.XModel"})
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "modeling_x.py").write_text("raise SystemExit('remote code ran')\n")
    elif what == "garbage_training_info":
        (folder / "training_info.json").write_text('{"train_config": {"data": {"task": "poly')
    elif what == "tampered_release":  # a released folder (manifest.json) with one flipped weight byte
        verify.write_manifest(folder)
        data = bytearray((folder / "model.safetensors").read_bytes())
        data[-1] ^= 0x01
        (folder / "model.safetensors").write_bytes(bytes(data))
    return str(folder)


@pytest.mark.parametrize("case, expected", [
    ("missing", "model folder .* does not exist: check the path"),
    ("hub_offline", "not a local folder nor in the Hugging Face cache, and HF_HUB_OFFLINE=1 forbids downloading"),
    ("garbage_config", r"config.json is not valid JSON .*re-save the model"),
    ("truncated_weights", r"model.safetensors is damaged or truncated .*copy or download it again"),
    ("remote_code", "ships its own Python code .*pass --trust_remote_code only if you trust"),
    ("garbage_training_info", r"training_info.json is damaged .*restore it, or move it away and pass --task"),
    ("tampered_release", r"model.safetensors differs from the release's manifest.json \(sha256\)"),
    ("modulus", "--modulus 7: .* was trained with modulus=11: drop --modulus or pass --modulus 11"),
    ("task", "--task parity: .* was trained on polynomial: drop --task or pass --task polynomial"),
    ("no_cot", "--no-cot: .* was trained with chain of thought: drop --no-cot"),
    ("out_is_folder", "--out .* is a folder: give a file name"),
    ("out_under_a_file", "cannot write the results .*is a file, not a folder"),
    ("device", "--device cuda:7: no CUDA GPU is available here|--device 'tpu9' is not a torch device"),
])
def test_evaluate_errors_are_one_line(case, expected, model, tmp_path, capsys):
    path, extra = str(model), []
    if case == "missing":
        path = str(tmp_path / "runs" / "parity" / "final")
    elif case == "hub_offline":
        path = "some-org/some-model"
    elif case in ("garbage_config", "truncated_weights", "remote_code", "garbage_training_info", "tampered_release"):
        path = damaged(tmp_path, model, case)
    out = tmp_path / "r.json"
    if case == "out_is_folder":
        out = tmp_path
    elif case == "out_under_a_file":
        (tmp_path / "a_file").write_text("x")
        out = tmp_path / "a_file" / "r.json"
    extra = {"modulus": ["--modulus", "7"], "task": ["--task", "parity"], "no_cot": ["--no-cot"],
             "device": ["--device", "tpu9" if torch.cuda.is_available() else "cuda:7"]}.get(case, [])
    line = error_line(capsys, load_cli().cli, ["--model", path, "--lengths", "1-2", "--n-per-length", "4",
                                               "--out", str(out), *extra])
    assert re.search(expected, line), line
    assert not out.is_file()


def test_evaluate_agrees_with_the_checkpoint_when_flags_match(model, tmp_path):
    """The same flags as the run (what the release's published command passes) are accepted."""
    results = load_cli().main(["--model", str(model), "--task", "polynomial", "--modulus", "11",
                               "--train-max-length", "3", "--n-per-length", "4", "--out", str(tmp_path / "r.json")])
    assert results["task"] == "polynomial" and sorted(results["per_length"]) == ["1", "2", "3"]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("case, expected", [
    ("missing", "does not exist: check the path"),
    ("garbage_config", "is not valid JSON"),
    ("no_cot", "trained without chain of thought .*does not apply"),
    ("task", "--task copy: .* was trained on 'polynomial' .*: pass --task polynomial"),
    ("modulus", "--modulus 5: .* was trained with modulus 11: drop --modulus or pass --modulus 11"),
    ("out_is_a_file", "cannot write the report to .*: choose another --out"),
    ("lengths", "length 0 is invalid: input lengths start at 1"),
    ("run", "--run .* is not a folder"),
    ("run_metrics", r"metrics.jsonl: line 1 is not JSON; the file is damaged"),
    ("tampered_release", r"differs from the release's manifest.json"),
])
def test_analysis_errors_are_one_line(case, expected, model, tmp_path, capsys):
    path, task, extra = str(model), "polynomial", []
    out = tmp_path / "analysis"
    if case == "missing":
        path = str(tmp_path / "nowhere" / "model")
    elif case in ("garbage_config", "tampered_release"):
        path = damaged(tmp_path, model, case)
    elif case == "run_metrics":
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 10,, broken\n{"step": 20}\n')
    elif case == "no_cot":
        path = str(save_model(tmp_path / "nocot", {**DATA, "cot": False}))
    elif case == "task":
        task = "copy"
    elif case == "out_is_a_file":
        out.write_text("not a folder")
    extra = {"modulus": ["--modulus", "5"], "lengths": ["--lengths", "0-3"],
             "run": ["--run", str(tmp_path / "no_run")], "run_metrics": ["--run", str(tmp_path / "run")]}.get(case, [])
    argv = ["--model", path, "--task", task, "--out", str(out), "--n", "4", "--ablation", "none", "--quiet", *extra]
    line = error_line(capsys, analysis.cli, argv)
    assert re.search(expected, line), line


def test_analysis_runs_on_a_checkpoint_that_matches(model, tmp_path):
    report = analysis.main(["--model", str(model), "--task", "polynomial", "--out", str(tmp_path / "a"),
                            "--lengths", "1-2", "--n", "4", "--ablation", "none", "--quiet"])
    assert report["task"] == "polynomial" and (tmp_path / "a" / "analysis.json").is_file()


def test_remote_code_is_never_run_without_the_flag(model, tmp_path):
    """A folder's own Python is not executed by default, even for a known model type."""
    folder = Path(damaged(tmp_path, model, "plain"))
    (folder / "modeling_itergpt.py").write_text("raise SystemExit('remote code ran')\n")
    (folder / "configuration_itergpt.py").write_text("raise SystemExit('remote code ran')\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_itergpt.IterGPTConfig",
                          "AutoModelForCausalLM": "modeling_itergpt.IterGPTForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    loaded = analysis.load_model(str(folder))  # the installed package's class, not the folder's file
    assert type(loaded).__module__ == "modeling.modeling_itergpt"


# ---------------------------------------------------------------------------------------------
# Full disks and read-only folders, in real processes
# ---------------------------------------------------------------------------------------------
def limit_file_size(limit: int):
    """``preexec_fn``: files beyond ``limit`` bytes fail with EFBIG (Python ignores SIGXFSZ)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def evaluate_cmd(model: Path, out: Path) -> list[str]:
    return [sys.executable, "evaluate.py", "--model", str(model), "--lengths", "1-2", "--n-per-length", "4",
            "--out", str(out), "--threads", "1"]


@pytest.mark.integration
def test_evaluate_on_a_full_disk_says_so_and_leaves_nothing(model, tmp_path):
    out = tmp_path / "results" / "r.json"
    out.parent.mkdir()
    proc = run_cli(evaluate_cmd(model, out), timeout=300, preexec_fn=limit_file_size(200))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot write the results"), proc.stderr
    assert "no space left on device" in proc.stderr and "Traceback" not in proc.stderr
    assert list(out.parent.iterdir()) == []  # no results file, no temporary file


@pytest.mark.integration
def test_evaluate_into_a_read_only_folder(model, tmp_path):
    need_mount("ro")
    folder = tmp_path / "ro"
    folder.mkdir()
    setup = f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder}"
    proc = run_cli(in_namespace(setup, evaluate_cmd(model, folder / "r.json")), timeout=300)
    assert proc.returncode == 1, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: cannot write the results") and "read-only" in line, proc.stderr
    assert list(folder.iterdir()) == []


@pytest.mark.integration
@pytest.mark.slow
def test_export_on_a_real_full_tmpfs(tmp_path):
    """A 1 MiB tmpfs: ``no space left on device``, and the tmpfs holds nothing afterwards."""
    need_mount("tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    cmd = [sys.executable, "-m", "datasets_builders.export", "--out", str(disk / "ds"), "--max-length", "12"]
    proc = run_cli(in_namespace(f"mount -t tmpfs -o size=1m tmpfs {disk}", cmd, after=f"ls -A {disk}"), timeout=600)
    assert proc.returncode == 1, proc.stderr
    assert "no space left on device" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.strip() == "", f"left on the full disk: {proc.stdout}"


# ---------------------------------------------------------------------------------------------
# datasets_builders.export --overwrite
# ---------------------------------------------------------------------------------------------
EXPORT = dict(max_length=3, examples_per_length=8, test_fraction=0.5)


@pytest.fixture
def exported(tmp_path) -> Path:
    out = tmp_path / "ds"
    export_mod.export(str(out), ["parity"], **EXPORT)
    return out


@pytest.mark.parametrize("bad", [{"max_length": -1}, {"test_fraction": 1.5}, {"examples_per_length": 0},
                                 {"no_such_field": 1}])
def test_export_overwrite_validates_before_deleting(exported, bad):
    before = digest(exported)
    with pytest.raises(ValueError):
        export_mod.export(str(exported), ["parity"], overwrite=True, **{**EXPORT, **bad})
    assert digest(exported) == before and leftovers(exported.parent) == []


def test_export_overwrite_refuses_a_folder_it_did_not_write(exported, tmp_path):
    (exported / "notes.txt").write_text("mine")
    before = digest(exported)
    with pytest.raises(FileExistsError, match="holds notes.txt, so it is not an export .*nothing was deleted"):
        export_mod.export(str(exported), ["parity"], overwrite=True, **EXPORT)
    assert digest(exported) == before
    project = tmp_path / "project"  # e.g. --out . in a repository: a README but not our card
    project.mkdir()
    (project / "README.md").write_text("# my project\n")
    with pytest.raises(FileExistsError, match="no card of this exporter"):
        export_mod.export(str(project), ["parity"], overwrite=True, **EXPORT)
    assert (project / "README.md").read_text() == "# my project\n"


def test_export_overwrite_replaces_its_own_export(exported):
    export_mod.export(str(exported), ["copy"], overwrite=True, **EXPORT)
    assert sorted(p.name for p in (exported / "data").iterdir()) == ["copy"]
    assert leftovers(exported.parent) == []


def _default_sigint() -> None:
    """In the child, before exec: Ctrl-C's default action. A child inherits an *ignored* SIGINT from
    its parent (and Python then installs no KeyboardInterrupt handler), so a test process in which
    some library ignored SIGINT would send signals its children never see."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def kill_when(proc: subprocess.Popen, ready, sig: int, timeout: float = 300) -> None:
    """Send ``sig`` to ``proc`` as soon as ``ready()`` is true (polled), then wait for it."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"finished before the kill: {proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, "the chosen point was never reached"
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.communicate(timeout=120)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_export_killed_while_writing_keeps_the_old_export(exported, sig):
    before = digest(exported)
    cmd = [sys.executable, "-m", "datasets_builders.export", "--out", str(exported), "--overwrite",
           "--max-length", "10"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    kill_when(proc, lambda: any(exported.parent.glob(f".{exported.name}.staging-*/data/*/*.parquet")), sig)
    assert digest(exported) == before
    files.remove_stale(exported)  # what the next export does first
    assert leftovers(exported.parent) == []


# ---------------------------------------------------------------------------------------------
# The release
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def released(fake_release, tmp_path) -> Path:
    """A copy of the fake two-model release of test_release (parity from a mix run, copy)."""
    out = tmp_path / "hub"
    shutil.copytree(fake_release["out"], out)
    return out


def release_argv(out: Path, runs: Path, *models: str, **runs_for) -> list[str]:
    argv = ["--out", str(out), "--namespace", NS, "--take-existing", "--runs-dir", str(runs),
            "--eval-n", "4", "--analysis-n", "8", "--models", *models]
    for key, path in runs_for.items():
        argv += ["--run", f"{key}={path}"]
    return argv


def test_release_with_a_wrong_run_changes_nothing(released, fake_release):
    """A copy run given for the parity model: refused before the dataset or any folder is touched."""
    before = digest(released)
    runs = fake_release["root"] / "runs"
    with pytest.raises(SystemExit, match="trained on 'copy', but parity is a parity model"):
        release.main(release_argv(released, runs, "parity", parity=runs / "copy"))
    assert digest(released) == before and leftovers(released.parent) == []


def test_releasing_a_subset_keeps_the_released_split(released, fake_release, tmp_path):
    """Re-releasing parity alone from a run with another split would re-export the shared dataset
    with it, and the released copy model's held-out claim would point at a split that no longer
    exists: refused, naming the model."""
    values = {"model": {"n_positions": 24}, "eval_per_length": 16,
              "data": {"min_length": 1, "max_length": LENGTHS[1] - 1, "examples_per_length": 64, "task": "mix",
                       "mix_ratio": 0.3}}
    from modeling.construction import build_iteration_head_model

    run = tmp_path / "runs" / "parity"
    make_run(run, build_iteration_head_model("copy", n_positions=24), {}, values, final_step=10)
    before = digest(released)
    with pytest.raises(SystemExit, match=r"disagree on the data split.*copy \(released in hub, not in --models\)"):
        release.main(release_argv(released, tmp_path / "runs", "parity"))
    assert digest(released) == before


def test_release_refuses_a_folder_that_is_not_a_release(fake_release, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    with pytest.raises(SystemExit, match="holds thesis.tex, which no release wrote"):
        release.main(release_argv(out, fake_release["root"] / "runs", "copy"))
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


@pytest.mark.parametrize("tamper", ["activation", "weights", "extra_file", "removed"])
def test_verify_detects_a_tampered_release(released, tamper, capsys):
    folder = released / "iteration-head-parity"
    assert verify.problems(folder) == [] and verify.main([str(released)]) == 0
    if tamper == "activation":  # shapes cannot show it: only the manifest does
        config = json.loads((folder / "config.json").read_text())
        config["activation"] = "relu"
        (folder / "config.json").write_text(json.dumps(config, indent=2))
    elif tamper == "weights":
        data = bytearray((folder / "model.safetensors").read_bytes())
        data[-1] ^= 1
        (folder / "model.safetensors").write_bytes(bytes(data))
    elif tamper == "extra_file":
        (folder / "modeling_extra.py").write_text("import os\n")
    else:
        (folder / "tokenizer.json").unlink()
    found = verify.problems(folder)
    assert len(found) == 1, found
    assert verify.main([str(released)]) == 1
    assert capsys.readouterr().err.strip().startswith("error: ")
    with pytest.raises(release.ReleaseError, match="changed since the release|not recorded|missing"):
        publish.check_folders(released, [SUITE_BY_KEY["parity"]])


def test_sync_code_regenerates_only_untampered_folders(released):
    folder = released / "iteration-head-parity"
    (folder / "modeling_itergpt.py").write_text("# stale\n")  # a source changed since the release
    release.sync_shipped_code(released, [SUITE_BY_KEY["parity"]])
    assert verify.problems(folder) == []
    assert (folder / "modeling_itergpt.py").read_bytes() == (ROOT / "modeling" / "modeling_itergpt.py").read_bytes()
    (folder / "config.json").write_text("{}")
    with pytest.raises(release.ReleaseError, match="will not re-record"):
        release.sync_shipped_code(released, [SUITE_BY_KEY["parity"]])


def release_process(out: Path, runs: Path, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "model_cards.release", *release_argv(out, runs, "parity", "copy")]
    return subprocess.Popen(cmd, cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **({"preexec_fn": _default_sigint} | popen))


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_release_interrupted_mid_write_keeps_the_old_release(released, fake_release, sig):
    """Killed (or Ctrl-C) while the second model folder is being written: the old hub/ is intact;
    SIGINT cleans its staging copy at once, SIGKILL's is removed by the next run."""
    before = digest(released)
    proc = release_process(released, fake_release["root"] / "runs")
    staged = released.parent.glob
    kill_when(proc, lambda: any(staged(".hub.staging-*/iteration-head-copy/eval_results.json")), sig)
    assert digest(released) == before
    if sig == signal.SIGINT:
        assert leftovers(released.parent) == []
    files.remove_stale(released)
    assert leftovers(released.parent) == []


@pytest.mark.integration
@pytest.mark.slow
def test_release_on_a_full_disk_keeps_the_old_release(released, fake_release):
    before = digest(released)
    proc = release_process(released, fake_release["root"] / "runs", preexec_fn=limit_file_size(100_000))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err
    assert err.strip().splitlines()[-1].startswith("release: error: cannot write the release"), err
    assert "no space left on device" in err and "previous release is unchanged" in err
    assert digest(released) == before and leftovers(released.parent) == []


def test_rerendering_a_card_keeps_the_folder_verifiable(released):
    from model_cards import render

    folder = released / "iteration-head-parity"
    card = (folder / "README.md").read_text()
    render.main([str(folder), "--namespace", NS])
    assert (folder / "README.md").read_text() == card and verify.problems(folder) == []
    (folder / "config.json").write_text("{}")
    with pytest.raises(SystemExit, match="will not re-render a folder changed since the release"):
        render.main([str(folder), "--namespace", NS])
