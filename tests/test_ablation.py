"""``python -m training.ablation``: each component of a sweep's final models zero- and mean-ablated on
the run's own test split (a real tiny sweep), and the committed ablation tables as RESULTS.md shows them."""

import csv
import sys

import pytest

from helpers import TINY_RUN, run_cli
from training import ablation


@pytest.mark.integration
def test_ablation_command_ablates_every_component_of_every_finished_run(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    res = run_cli([sys.executable, "train.py", "--multirun", *TINY_RUN, "optim.max_steps=30", "eval_every=30",
                   "save_every=0", "seed=0,1", f"hydra.sweep.dir={sweep}", "hydra.launcher.n_jobs=1"], timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    (sweep / "1" / "summary.json").unlink()  # run 1 "killed" before its end: left out, and named
    out = tmp_path / "ablation.csv"
    res = run_cli([sys.executable, "-m", "training.ablation", str(sweep), "--out", str(out), "--experiment", "tiny",
                   "--per-length", "32"], timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "left out: run 1 (no final model)" in res.stderr and "1 run(s), 10 ablation(s)" in res.stdout
    rows = list(csv.DictReader(open(out)))
    assert {(r["component"], r["mode"]) for r in rows} == {
        (c, m) for c in ("layer-1 head", "layer-2 head", "layer-1 MLP", "layer-2 MLP") for m in ("zero", "mean")} | {
        ("layer-1 head -> eoi", "knockout"), ("layer-2 head -> eoi", "knockout")}  # CoT: the <eoi> edges too
    summary = __import__("json").loads((sweep / "0" / "summary.json").read_text())
    for r in rows:
        assert r["experiment"] == "tiny" and r["run"] == "0"
        assert abs(float(r["baseline"]) - float(r["test_accuracy"]) - float(r["drop"])) < 1e-5
        lengths = [c for c in r if c.startswith("acc_L")]
        assert lengths == [f"acc_L{L}" for L in range(1, 6)]  # every trained length
    # the baseline is the run's own final evaluation: the same first 32 held-out rows per length, teacher-forced
    assert abs(float(rows[0]["baseline"]) - summary["test_accuracy"]) < 1e-5
    with pytest.raises(SystemExit) as stopped:  # a bad argument: the command's check, in-process
        ablation.main([str(tmp_path / "nowhere")])
    assert stopped.value.code == 2 and "not a folder" in capsys.readouterr().err
    # A later session's sweep added to the committed table: its runs named apart, the old rows kept.
    ablation.main([str(sweep), "--out", str(out), "--experiment", "tiny", "--per-length", "32", "--merge",
                   "--run-prefix", "s2/"])
    merged = list(csv.DictReader(open(out)))
    assert merged[:10] == rows and [r["run"] for r in merged[10:]] == ["s2/0"] * 10
    assert [r["test_accuracy"] for r in merged[10:]] == [r["test_accuracy"] for r in rows]
    with pytest.raises(SystemExit) as stopped:
        ablation.main([str(sweep), "--out", str(tmp_path / "absent.csv"), "--merge"])
    assert stopped.value.code == 2 and "absent.csv does not exist" in capsys.readouterr().err


def test_the_seeds_with_the_head_are_ablated_apart_and_length_by_length():
    """sample_matched's committed tables as RESULTS.md shows them: the ablation rows of the paper arm's
    seeds with the head (detector) are not averaged with those without, and their per-length table
    is the mean of exactly those seeds' rows (recomputed here from the CSVs)."""
    import statistics

    from helpers import ROOT
    from training.findings import rows_of
    from training.tables import HEAD, ablation_table, head_ablation_by_length, read, run_id

    rows = rows_of(ROOT / "results", "sample_matched")
    ablations = read(ROOT / "results" / "sample_matched_ablation.csv")
    paper = [r for r in rows if r["recipe"] == "paper_reference"]
    with_head = {run_id(r) for r in paper if float(r["iteration_score"]) >= HEAD}
    assert 0 < len(with_head) < len(paper)  # the arm is mixed: the split is what this checks
    table = ablation_table(rows, ablations)
    assert table[0].startswith("| recipe | task | source | head | n | no ablation |")
    yes = [line for line in table if line.startswith("| paper_reference | parity | paper | yes |")]
    no = [line for line in table if line.startswith("| paper_reference | parity | paper | no |")]
    assert [line.split(" | ")[4] for line in yes + no] == [str(len(with_head)), str(len(paper) - len(with_head))]
    by_length = head_ablation_by_length(rows, ablations)
    zero = next(line for line in by_length if "| layer-2 head zero |" in line).strip("| ").split(" | ")
    mine = [a for a in ablations if run_id(a) in with_head and (a["component"], a["mode"]) == ("layer-2 head", "zero")]
    assert len(mine) == len(with_head)
    for L, cell in zip(range(1, 17), zero[6:]):
        assert cell.startswith(f"{statistics.mean(float(a[f'acc_L{L}']) for a in mine):.3f}"), (L, cell)
    assert not any(line.startswith("| parity |") for line in by_length)  # our arm: no seed with the head


def test_a_run_without_a_head_score_keeps_its_ablation_row():
    """A table mixing CoT runs (head scores) and no-CoT runs (none) shows every run: the latter under
    head "—", not dropped for being neither yes nor no."""
    from training.tables import ablation_table

    def run(name, cot, score):
        return {"experiment": "x", "run": name, "cot": cot, "seed": "0", "steps": "10", "iteration_score": score}

    def ablated(name):
        return {"experiment": "x", "run": name, "component": "layer-1 head", "mode": "zero", "baseline": "1.0",
                "test_accuracy": "0.5"}
    table = ablation_table([run("a", "True", "0.9"), run("b", "False", "")], [ablated("a"), ablated("b")])
    assert sorted(line.split(" | ")[:3] for line in table[2:]) == [["| False", "—", "1"], ["| True", "yes", "1"]]
