"""Sweeps: a real local multirun (parallel joblib workers), its tidy results table, the results command
on a partly finished sweep, a sweep that goes on past a failed job, and the Slurm launcher's config."""

import csv
import json
import shutil
import sys

import pyarrow.parquet as pq
import pytest

from helpers import TINY_RUN, run_cli
from training import results

pytestmark = pytest.mark.integration
GRID = ["--multirun", *TINY_RUN, "optim.max_steps=20", "eval_every=10", "save_every=10",
        "model.n_embd=16,32", "seed=0,1"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "grid"
    res = run_cli([sys.executable, "train.py", *GRID, f"hydra.sweep.dir={out}", "hydra.launcher.n_jobs=2"],
                  timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_multirun_writes_one_run_folder_per_job_and_a_tidy_table(sweep):
    out, res = sweep
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    for job in "0123":
        assert (out / job / "final" / "model.safetensors").exists() and (out / job / "summary.json").exists()
        assert not (out / job / ".hydra").exists()  # Hydra writes nothing into a run folder
    rows = read_csv(out / "results.csv")
    assert len(rows) == 4 and res.stdout.count("4 run(s) ->") == 1
    # its plan came first, from the same sweep Hydra ran: 4 runs of 20 steps at batch 32
    plan = res.stdout.index("plan: 4 run(s), 80 optimizer steps (per run 20), 2,560 sequences seen")
    assert plan < res.stdout.index("model:")
    assert {(r["n_embd"], r["seed"]) for r in rows} == {("16", "0"), ("16", "1"), ("32", "0"), ("32", "1")}
    for column in ("task", "cot", "n_layer", "position_embedding", "max_length", "steps", "test_accuracy",
                   "eoi_score", "iteration_score", "steps_to_target", "acc_L5", "status"):
        assert column in rows[0], column
    assert all(r["status"] == "finished" and r["steps"] == "20" for r in rows)
    for r in rows:  # every number is the run's own summary
        summary = json.loads((out / r["run"] / "summary.json").read_text())
        assert float(r["test_accuracy"]) == summary["test_accuracy"]
        assert int(r["n_embd"]) == int(__import__("yaml").safe_load((out / r["run"] / "train_config.yaml")
                                                                     .read_text())["model"]["n_embd"])
    assert pq.read_table(out / "results.parquet").num_rows == 4
    assert "optim.lr" not in rows[0] and "lr" not in rows[0]  # only the keys that vary, plus the identity keys


def test_results_command_recollects_a_partly_finished_sweep(sweep, tmp_path, capsys):
    out, _ = sweep
    copy = tmp_path / "partial"
    shutil.copytree(out, copy)
    for name in ("summary.json", "final"):  # job 3 "killed" before its end
        path = copy / "3" / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    res = run_cli([sys.executable, "-m", "training.results", str(copy), "--out", str(tmp_path / "t.csv"),
                   "--experiment", "demo"], timeout=120)
    assert res.returncode == 0, res.stderr
    rows = read_csv(tmp_path / "t.csv")
    assert [r["status"] for r in rows] == ["finished"] * 3 + ["unfinished"] and rows[0]["experiment"] == "demo"
    assert rows[3]["steps"] == "20"  # its last evaluation is still reported
    with pytest.raises(SystemExit) as stopped:  # a bad argument: the command's check, in-process
        results.main([str(tmp_path / "nothing")])
    assert stopped.value.code == 2 and capsys.readouterr().err.startswith("error:")


def test_rerun_with_resume_auto_continues_and_a_failed_job_does_not_stop_the_sweep(sweep, tmp_path):
    out, _ = sweep
    copy = tmp_path / "again"
    shutil.copytree(out, copy)
    (copy / "1" / "summary.json").unlink()  # job 1 unfinished: it resumes from its step-20 checkpoint
    config = copy / "2" / "train_config.yaml"  # job 2's folder holds another run: it must not resume it
    config.write_text(config.read_text().replace("lr: 0.003", "lr: 0.001"))
    (copy / "2" / "summary.json").unlink()
    res = run_cli([sys.executable, "train.py", *GRID, f"hydra.sweep.dir={copy}", "hydra.launcher.n_jobs=2",
                   "resume=auto"], timeout=900)
    assert res.returncode == 1, res.stderr[-3000:]  # the sweep's exit status: one job failed
    assert "error: 1 job(s) of the sweep failed" in res.stderr
    assert res.stdout.count("holds a finished run") == 2  # jobs 0 and 3: nothing retrained
    assert (copy / "1" / "summary.json").exists()
    assert "error: cannot resume" in res.stderr and "optim.lr=0.001 (now 0.003)" in res.stderr
    rows = read_csv(copy / "results.csv")
    assert [(r["run"], r["status"]) for r in rows] == [("0", "finished"), ("1", "finished"), ("2", "failed"),
                                                       ("3", "finished")]
    assert "cannot resume" in rows[2]["error"] and rows[2]["n_embd"] == "32"  # its arm stays in the table
    assert "lr" not in rows[2]  # the job's own config (lr 0.003 as all jobs), not the other run's in its folder
    # The failure is recorded beside the run folders, never inside the folder of the other run.
    assert {p.name for p in (copy / "2").iterdir()} == {p.name for p in (out / "2").iterdir()} - {"summary.json"}
    assert (copy / "failed_jobs" / "2.json").is_file()


def test_a_job_that_fails_before_its_run_folder_is_a_failed_row_and_the_exit_status(tmp_path):
    out = tmp_path / "bad"
    res = run_cli([sys.executable, "train.py", "--multirun", *TINY_RUN, "optim.max_steps=10", "eval_every=10",
                   "save_every=0", "optim.lr=3e-3,-1", f"hydra.sweep.dir={out}", "hydra.launcher.n_jobs=1"],
                  timeout=600)
    assert res.returncode == 1, res.stderr[-3000:]
    rows = read_csv(out / "results.csv")
    assert [(r["run"], r["status"]) for r in rows] == [("0", "finished"), ("1", "failed")]
    assert "optim.lr=-1" in rows[1]["error"] and rows[1]["n_embd"] == "32"
    assert "failed: 1: " in res.stdout
    # Re-run with the arm fixed: its failure record goes, the table is whole.
    res = run_cli([sys.executable, "train.py", "--multirun", *TINY_RUN, "optim.max_steps=10", "eval_every=10",
                   "save_every=0", "optim.lr=3e-3,1e-3", f"hydra.sweep.dir={out}", "hydra.launcher.n_jobs=1",
                   "resume=auto"], timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [r["status"] for r in read_csv(out / "results.csv")] == ["finished", "finished"]


def test_merge_adds_a_later_sessions_runs_to_a_committed_table(sweep, tmp_path):
    """An experiment over two sessions: the first session's table is committed, its run folders are gone;
    the second session's sweep re-runs one arm and seed, adds others and varies a key the first did not."""
    out, _ = sweep
    arm = {r["run"]: (r["n_embd"], r["seed"]) for r in read_csv(out / "results.csv")}
    small = sorted(job for job, (width, _) in arm.items() if width == "16")
    first, second, table = tmp_path / "first", tmp_path / "second", tmp_path / "t.csv"
    for job in small:
        shutil.copytree(out / job, first / job)
    assert results.main([str(first), "--out", str(table), "--experiment", "demo"]) is None
    shutil.rmtree(first)  # a new machine: only the committed table is left
    again = [job for job in sorted(arm) if job != small[0]]
    for i, job in enumerate(again):
        shutil.copytree(out / job, second / str(i))  # numbered from 0 again, as every sweep is
    varied = second / str(len(again) - 1) / "train_config.yaml"  # a key the first session did not vary
    varied.write_text(varied.read_text().replace("lr: 0.003", "lr: 0.001"))
    before = {p.name: p.read_bytes() for p in tmp_path.glob("t*")}
    merge = [sys.executable, "-m", "training.results", str(second), "--out", str(table), "--experiment", "demo",
             "--merge"]

    res = run_cli(merge + ["--run-prefix", "s2/"], timeout=120)
    # the first session had one width: its table lacks n_inner (4 x n_embd) as well as lr
    assert res.returncode == 2 and "has no column n_inner, lr, which the sweep varies" in res.stderr
    assert "(--assume n_inner=<value> --assume lr=<value>)" in res.stderr
    res = run_cli(merge + ["--assume", "n_inner=64", "--assume", "lr=0.003"], timeout=120)
    assert res.returncode == 2 and f"run name(s) {small[0]} are in" in res.stderr and "--run-prefix" in res.stderr
    res = run_cli(merge[:-3] + ["--merge", "--run-prefix", "s2/"], timeout=120)  # no --experiment
    assert res.returncode == 2 and "holds experiment demo: give the sweep the same name (--experiment demo)" in res.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.glob("t*")} == before  # nothing written

    res = run_cli(merge + ["--assume", "n_inner=64", "--assume", "lr=0.003", "--run-prefix", "s2/"], timeout=120)
    assert res.returncode == 0, res.stderr
    rows = read_csv(table)
    # the re-run arm (n_embd 16, the second seed) replaced its row; the first seed's row stayed
    assert [r["run"] for r in rows] == [small[0]] + [f"s2/{i}" for i in range(len(again))]
    assert {(r["n_embd"], r["seed"], r["lr"]) for r in rows} == {(*arm[job], "0.001" if job == again[-1] else "0.003")
                                                                 for job in arm}
    assert all(r["experiment"] == "demo" and r["status"] == "finished" for r in rows)
    assert pq.read_table(table.with_suffix(".parquet")).num_rows == 4
    long = read_csv(tmp_path / "t_curves.csv")  # the replaced run's curve went with it
    assert {r["run"] for r in long} == {r["run"] for r in rows} and all(r["lr"] for r in long)


def test_results_of_damaged_runs_name_the_run_and_file_and_keep_the_rest(sweep, tmp_path):
    out, _ = sweep
    copy = tmp_path / "damaged"
    shutil.copytree(out, copy)
    (copy / "0" / "train_config.yaml").write_text("seed: 0\n")  # cut down: would read as the default task
    (copy / "1" / "train_config.yaml").write_text("model: [unclosed\n")  # not YAML
    summary = copy / "2" / "summary.json"
    summary.write_text(summary.read_text()[:40])  # truncated
    res = run_cli([sys.executable, "-m", "training.results", str(copy)], timeout=120)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    rows = read_csv(copy / "results.csv")
    assert [(r["run"], r["status"]) for r in rows] == [("0", "failed"), ("1", "failed"), ("2", "failed"),
                                                       ("3", "finished")]
    assert "0/train_config.yaml: lacks recipe" in rows[0]["error"]
    assert "1/train_config.yaml: not valid YAML" in rows[1]["error"]
    assert "2/summary.json: not readable JSON" in rows[2]["error"]


def test_slurm_launcher_config_composes():
    res = run_cli([sys.executable, "train.py", "recipe=parity", "hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=30", "--cfg", "hydra",
                   "--package", "hydra.launcher"], timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "SlurmLauncher" in res.stdout and "partition:" in res.stdout and "timeout_min: 30" in res.stdout


def test_a_run_on_the_papers_data_reports_accuracy_on_sequences_it_never_drew(tmp_path):
    """data.source=paper tests on a test half that overlaps the train half (draws with replacement).
    Training also evaluates the test rows the train half did not draw (``unseen_accuracy``,
    ``unseen_acc_L<L>``: parity has none up to length 7 at 2,048 draws), without changing what it
    learns; ``training.results`` gives a run that predates it the same columns from its ``final/``."""
    from modeling.construction import build_iteration_head_model
    import yaml

    from training.config import compose, to_dict
    from training.data import TaskData
    from training.results import _read_config, unseen_accuracy_of

    cfg = compose(["recipe=paper_reference", "data.max_length=12", "model.n_positions=32"])
    unseen = TaskData(cfg).eval_sets(64)["unseen"]
    assert sorted(L for _, L in unseen) == list(range(8, 13))  # lengths 1-7: every test draw was trained on
    # An exact parity model in a finished run folder that predates the columns: 1.0 on every unseen length.
    folder = tmp_path / "old"
    build_iteration_head_model("parity", n_positions=32).save_pretrained(folder / "final")
    (folder / "train_config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    cfg_read, _ = _read_config(folder)
    got = unseen_accuracy_of(folder, cfg_read)
    assert got == {"unseen_accuracy": 1.0, **{f"unseen_acc_L{L}": 1.0 for L in range(8, 13)}}
    # A real run writes them itself, and they are what the backfill computes from its final model.
    out = tmp_path / "run"
    done = run_cli([sys.executable, "train.py", "recipe=paper_reference", "model.n_embd=32", "data.max_length=9",
                    "model.n_positions=24", "optim.max_steps=20", "eval_every=10", "eval_per_length=32",
                    "save_every=0", "report_to=none", "progress=false", f"output_dir={out}"])
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    written = {k: v for k, v in summary.items() if k.startswith("unseen")}
    assert sorted(written) == ["unseen_acc_L8", "unseen_acc_L9", "unseen_accuracy"]
    assert unseen_accuracy_of(out, _read_config(out)[0]) == written
