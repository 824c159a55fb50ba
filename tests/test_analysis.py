"""The analysis module: metrics, the iteration-head detector, ablations, figures, report and CLI.

The hand-built model of ``modeling/construction.py`` is the known answer: it has an iteration head
at layer 1 (0-based) and a layer-0 head on ``<eoi>``, and every one of its components is needed.
"""

import json
import os
import runpy
import shutil
import sys

import numpy as np
import pytest
import torch

from datasets_builders import tasks
from modeling import IterGPTConfig, IterGPTForCausalLM
from modeling import analysis as A
from modeling.construction import build_iteration_head_model

N_POSITIONS = 24  # lengths 1 … 10: small and fast
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def hand():
    return build_iteration_head_model("parity", n_positions=N_POSITIONS)


@pytest.fixture(scope="module")
def random_model(hand):
    torch.manual_seed(0)
    return IterGPTForCausalLM(hand.config).eval()  # same shapes, random weights


@pytest.fixture(scope="module")
def rows():
    return A.sample_rows("parity", range(1, 11), 32, seed=0)


@pytest.fixture(scope="module")
def saved(hand, random_model, tmp_path_factory):
    """A checkpoint folder and a run folder with two snapshots (random at step 0, solved at step 100)."""
    root = tmp_path_factory.mktemp("ckpt")
    hand.save_pretrained(root / "model")
    random_model.save_pretrained(root / "run" / "snapshots" / "step_0")
    hand.save_pretrained(root / "run" / "snapshots" / "step_100")
    return root


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------
def test_teacher_forced_correct_scores_only_targets_after_eoi():
    rows = tasks.build_rows(tasks.make_task("parity"), np.array([[1, 0, 1], [0, 0, 1]]))  # (2, 9)
    ids = torch.as_tensor(np.concatenate([rows, np.full((2, 2), tasks.PAD_ID)], axis=1))  # padded
    logits = torch.zeros(2, ids.shape[1], tasks.VOCAB_SIZE)
    logits[:, :-1].scatter_(2, ids[:, 1:, None], 1.0)  # perfect predictions of the next token
    assert A.teacher_forced_correct(logits, ids).tolist() == [True, True]
    bad = logits.clone()
    bad[:, 1, :] = 0  # wrong guess of x_2 (an input): not a target
    bad[:, -1, :] = 0  # position after padding: not a target
    assert A.teacher_forced_correct(bad, ids).tolist() == [True, True]
    bad[1, 5, :] = 0
    bad[1, 5, tasks.EOS_ID] = 1  # row 1 writes <eos> instead of s_2
    assert A.teacher_forced_correct(bad, ids).tolist() == [True, False]


def test_head_scores_on_templates():
    L, T = 3, tasks.row_length(3)
    e = L + 1
    pat = torch.zeros(4, 2, 1, T, T)
    pat[:, 0, 0, :, 0] = 1  # layer 0: everything on <task> …
    pat[:, 0, 0, e:, e] = 1  # … except the chain of thought: on <eoi>
    pat[:, 0, 0, e:, 0] = 0
    pat[:, 1, 0] = torch.eye(T)  # layer 1: on itself …
    for t in range(1, L + 1):  # … except query L+t: on x_t
        pat[:, 1, 0, e - 1 + t] = 0
        pat[:, 1, 0, e - 1 + t, t] = 1
    pat[0, 1, 0, e, 1], pat[0, 1, 0, e, 0] = 0.5, 0.5  # one example splits its weight
    s = A.head_scores(pat, L)
    assert s["first_mean"][:, 0].tolist() == [1.0, 0.0]
    assert s["iteration_mean"][1, 0] == pytest.approx(1 - 0.5 / (4 * L))
    assert s["iteration_frac"][1, 0] == pytest.approx(1 - 1 / (4 * L))
    assert s["iteration_invariance"][1, 0] < 1 and s["first_invariance"][0, 0] == 1
    with pytest.raises(ValueError, match="length"):
        A.head_scores(pat, 4)


def test_detector_rule_leaves_out_length_one():
    def scores(value):
        return {"iteration_mean": np.array([[value]]), "first_mean": np.array([[0.0]])}

    # A previous-token head scores 1 at L = 1 only: not an iteration head.
    assert A.find_iteration_heads({1: scores(1.0), 2: scores(0.1), 3: scores(0.2)}) == []
    assert A.find_iteration_heads({1: scores(1.0)}) == [(0, 0)]  # only L = 1: used anyway
    at = A.HEAD_THRESHOLD
    assert A.find_iteration_heads({2: scores(at), 3: scores(at)}) == [(0, 0)]
    assert A.find_iteration_heads({2: scores(at - 0.01), 3: scores(at)}) == []


def test_detector_finds_the_hand_built_heads_and_none_in_a_random_model(hand, random_model, rows):
    built = A.evaluate_lengths(hand, rows)
    assert set(built["accuracy"].values()) == {1.0}
    assert A.find_iteration_heads(built) == [(1, 0)]
    assert A.find_eoi_heads(built) == [(0, 0)]
    rand = A.evaluate_lengths(random_model, rows)
    assert np.mean(list(rand["accuracy"].values())) < 0.2
    assert A.find_iteration_heads(rand) == [] and A.find_eoi_heads(rand) == []


# ---------------------------------------------------------------------------------------------
# Ablations
# ---------------------------------------------------------------------------------------------
def test_ablations_of_the_hand_built_model(hand):
    rows = A.sample_rows("parity", range(4, 8), 128, seed=0)  # every sequence of L = 4 … 7
    res = A.ablation_study(hand, rows)
    assert res["baseline"]["mean"] == 1.0
    comps = res["components"]
    assert sorted(comps) == ["L0H0", "L0MLP", "L1H0", "L1MLP"]
    for name, per_mode in comps.items():  # every component is necessary
        assert per_mode["zero"]["mean"] == 0.0, name
    # Mean ablation of the iteration head leaves the average of x_t: only the all-zero input
    # (targets all 0, the fallback argmax) survives, i.e. chance 2^-L for a whole sequence.
    for L, acc in comps["L1H0"]["mean"]["accuracy"].items():
        assert acc == pytest.approx(2.0 ** -L) and acc <= 0.0625
    # The layer-0 head only carries the position of <eoi>, which is constant within one length:
    # its per-position mean is the same signal, so mean ablation costs nothing.
    assert comps["L0H0"]["mean"]["drop"] == 0.0


def test_knocking_out_the_eoi_edge_breaks_the_hand_built_circuit_only_where_it_is(hand):
    """The hand-built layer-1 head finds <eoi> and the layer-2 head reads x_t from there: removing the
    layer-1 head's attention to <eoi> breaks every sequence, removing the layer-2 head's (which attends
    there only where it predicts <eos>, a query the knockout leaves alone) changes nothing, while mean-ablating the layer-1 head costs nothing (its output is
    constant within a length): the edge knockout sees what the head ablation cannot."""
    rows = A.sample_rows("parity", range(4, 8), 128, seed=0)
    res = A.ablation_study(hand, rows, eoi_knockout=True)
    comps = res["components"]
    assert comps["L0H0"]["mean"]["drop"] == 0.0
    assert comps["L0H0->eoi"]["knockout"]["mean"] < 0.1
    assert comps["L1H0->eoi"]["knockout"]["mean"] == 1.0
    assert "L0H0->eoi" not in A.ablation_study(hand, rows)["components"]  # only when asked
    ids = torch.as_tensor(rows[5])
    seen = {}
    hooks = A.knock_out_eoi(hand, 0, 0, 5) + [("blocks.0.attn.hook_pattern", lambda p, hook: seen.setdefault("p", p))]
    with torch.no_grad():
        hand.run_with_hooks(ids, fwd_hooks=hooks)
    e = 6
    assert torch.count_nonzero(seen["p"][:, 0, e + 1:2 * 5 + 1, e]) == 0  # the CoT queries: nothing on <eoi>
    assert torch.allclose(seen["p"].sum(-1), torch.ones(()))  # attention renormalised over the other keys
    with pytest.raises(ValueError, match="length=0"):
        A.knock_out_eoi(hand, 0, 0, 0)


def test_ablate_head_hooks_zero_the_head(hand, rows):
    ids = torch.as_tensor(rows[5])
    hooks = A.ablate_head(hand, 1, 0)
    seen = {}
    hooks.append(("blocks.1.attn.hook_z", lambda z, hook: seen.setdefault("z", z)))
    with torch.no_grad():
        out = hand.run_with_hooks(ids, fwd_hooks=hooks)
    assert torch.count_nonzero(seen["z"]) == 0
    assert not A.teacher_forced_correct(out.logits, ids).any()


def test_bad_ablation_arguments(hand):
    with pytest.raises(ValueError, match="layer=2"):
        A.ablate_head(hand, 2, 0)
    with pytest.raises(ValueError, match="head=1"):
        A.ablate_head(hand, 1, 1)
    with pytest.raises(ValueError, match="head=-1"):
        A.ablate_head(hand, 0, -1)
    with pytest.raises(ValueError, match="layer=-1"):
        A.ablate_mlp(hand, -1)
    with pytest.raises(ValueError, match="mode"):
        A.ablate_head(hand, 0, 0, mode="resample")
    with pytest.raises(ValueError, match="mean"):
        A.ablate_mlp(hand, 0, mode="mean")


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------
def test_vocab_mismatch_is_refused(rows, tmp_path):
    other = IterGPTForCausalLM(IterGPTConfig(vocab_size=40, n_embd=16, n_inner=16, pad_token_id=None, eos_token_id=None,
                                             bos_token_id=None, eoi_token_id=None)).eval()
    with pytest.raises(ValueError, match="vocab_size=40"):
        A.evaluate_lengths(other, {2: rows[2]})
    with pytest.raises(ValueError, match="vocab_size=40"):
        A.analyze(other, "parity", [2], n=4, out=str(tmp_path), progress=False)
    # A larger vocabulary (a task with more than 57 values extends it after id 63) holds every base id.
    wider = IterGPTForCausalLM(IterGPTConfig(vocab_size=70, n_embd=16, n_inner=16)).eval()
    assert set(A.evaluate_lengths(wider, {2: rows[2]})["accuracy"]) == {2}


def test_lengths_beyond_the_context_are_refused(hand, tmp_path):
    assert A.max_length(hand) == 10
    assert A.check_lengths(hand, [3, 1, 10]) == [1, 3, 10]
    with pytest.raises(ValueError, match="length 11 does not fit the context"):
        A.check_lengths(hand, [1, 11])
    with pytest.raises(ValueError, match="length 0"):
        A.check_lengths(hand, [0])
    with pytest.raises(ValueError, match="context"):
        A.analyze(hand, "parity", [12], n=4, out=str(tmp_path), progress=False)
    with pytest.raises(ValueError, match="context"):
        A.evaluate_lengths(hand, A.sample_rows("parity", [11], 2))


def test_parse_lengths():
    assert A.parse_lengths("1-4") == [1, 2, 3, 4]
    assert A.parse_lengths("1, 2,6-7,2") == [1, 2, 6, 7]
    assert A.parse_lengths("1-4,8, 16") == [1, 2, 3, 4, 8, 16]
    assert A.parse_lengths("3,1,3") == [1, 3]
    for bad in ("1-", "4-2", "a", "", "0-3", "1,,3", "1,"):  # strict: no empty part, every length >= 1
        with pytest.raises(ValueError, match="invalid"):
            A.parse_lengths(bad)


def test_sample_rows_are_seeded_per_length():
    """A length's rows depend on the seed and the length only, not on the other lengths asked for."""
    both = A.sample_rows("parity", [7, 3], 16, seed=5)
    assert list(both) == [3, 7] and both[7].shape == (16, tasks.row_length(7))
    np.testing.assert_array_equal(both[7], A.sample_rows("parity", [7], 16, seed=5)[7])
    assert not np.array_equal(both[7], A.sample_rows("parity", [7], 16, seed=6)[7])
    assert len({tuple(r) for r in both[7]}) == 16  # distinct inputs
    assert len(A.sample_rows("parity", [2], 16)[2]) == 4  # every sequence when fewer exist
    with pytest.raises(ValueError, match="n_per_length=0"):
        A.sample_rows("parity", [2], 0)


# ---------------------------------------------------------------------------------------------
# Figures, report, command line
# ---------------------------------------------------------------------------------------------
def _png(path, min_kb=10):
    data = open(path, "rb").read()
    assert data.startswith(PNG) and len(data) > min_kb * 1024, (path, len(data))


def test_attention_map_png(hand, rows, tmp_path):
    path = A.plot_attention(hand, rows[6], str(tmp_path / "att.png"))
    _png(path)
    with pytest.raises(ValueError, match="example"):
        A.plot_attention(hand, rows[6], str(tmp_path / "x.png"), example=99)


def _ramp(step):
    return float(1 / (1 + np.exp(-(step - 500) / 80)))


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_emergence_from_metrics_jsonl(tmp_path, layout):
    lines = [{"step": 5, "loss": 3.0}]  # records without test metrics are skipped
    for step in range(0, 1001, 100):
        test = {"accuracy_mean": _ramp(step), "first_mean": min(1, 2 * _ramp(step)), "iteration_mean": _ramp(step)}
        train = {"accuracy_mean": 1.0, "first_mean": 1.0, "iteration_mean": 1.0}
        if layout == "nested":  # as train.py writes it
            lines.append({"step": step, "loss": 1.0, "test": test, "train": train})
        else:
            lines += [{"step": step, "split": "train", **train}, {"step": step, "split": "test", **test}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    points = A.training_curve(str(tmp_path))
    assert [p["step"] for p in points] == list(range(0, 1001, 100))
    assert points[-1]["accuracy_mean"] > 0.99 and points[0]["accuracy_mean"] < 0.01  # the test split
    _png(A.plot_training(points, str(tmp_path / "emergence.png")))


def test_emergence_of_a_multi_task_run_picks_the_task(tmp_path):
    rec = {"step": 10, "test": {"accuracy_mean": 0.5, "copy": {"accuracy_mean": 1.0, "first_mean": 0.9,
                                                               "iteration_mean": 0.8},
                                "parity": {"accuracy_mean": 0.0, "first_mean": 0.1, "iteration_mean": 0.2}}}
    (tmp_path / "metrics.jsonl").write_text(json.dumps(rec) + "\n")
    assert A.training_curve(str(tmp_path), "parity") == [
        {"step": 10, "accuracy_mean": 0.0, "first_mean": 0.1, "iteration_mean": 0.2}]


def test_emergence_without_head_scores(saved, tmp_path):
    # Logged with eval_heads=false: accuracy only. With snapshots beside it, those are evaluated …
    run = tmp_path / "run"
    shutil.copytree(saved / "run", run)
    (run / "metrics.jsonl").write_text(json.dumps({"step": 100, "test": {"accuracy_mean": 1.0}}) + "\n")
    points = A.training_curve(str(run), "parity", [1, 2], n=8)
    assert [p["step"] for p in points] == [0, 100] and points[1]["iteration_mean"] > 0.99
    # … without them the accuracy alone is plotted.
    shutil.rmtree(run / "snapshots")
    points = A.training_curve(str(run), "parity")
    assert points == [{"step": 100, "accuracy_mean": 1.0, "first_mean": None, "iteration_mean": None}]
    _png(A.plot_training(points, str(tmp_path / "acc.png")), min_kb=5)


def test_emergence_from_snapshots(saved):
    points = A.training_curve(str(saved / "run"), "parity", [1, 2, 3, 4], n=16)
    assert [p["step"] for p in points] == [0, 100]
    assert points[0]["accuracy_mean"] < 0.2 and points[1]["accuracy_mean"] == 1.0
    assert points[0]["iteration_mean"] < 0.5 < 0.99 < points[1]["iteration_mean"]
    with pytest.raises(ValueError, match="metrics.jsonl"):
        A.training_curve(str(saved / "model"), "parity")


def test_analyze_writes_report_and_figures(hand, tmp_path):
    report = A.analyze(hand, "parity", range(1, 7), n=32, out=str(tmp_path), progress=False, model_name="hand-built")
    assert report["iteration_heads"] == [[1, 0]] and report["eoi_heads"] == [[0, 0]]
    assert report["accuracy_mean"] == 1.0
    on_disk = json.loads((tmp_path / "analysis.json").read_text())
    assert on_disk["iteration_heads"] == [[1, 0]]
    assert on_disk["heads"][1]["labels"] == ["iteration head"]
    assert on_disk["heads"][0]["labels"] == ["attends to <eoi>"]
    assert on_disk["ablation"]["components"]["L1H0"]["zero"]["drop"] == 1.0
    md = (tmp_path / "analysis.md").read_text()
    assert "Iteration heads: **layer 1 head 0**" in md and "| L1H0 |" in md
    _png(tmp_path / "attention_L6.png")


def test_cli_in_repo(saved, tmp_path, capsys):
    out = tmp_path / "out"
    report = A.main(["--model", str(saved / "model"), "--task", "parity", "--lengths", "1-5", "--n", "16",
                     "--out", str(out), "--run", str(saved / "run"), "--ablation", "zero", "--quiet"])
    assert report["iteration_heads"] == [[1, 0]]
    assert [p["step"] for p in report["training"]] == [0, 100]
    for name in ("analysis.json", "analysis.md"):
        assert (out / name).stat().st_size > 0
    _png(out / "attention_L5.png")
    _png(out / "emergence.png")
    assert "iteration heads: layer 1 head 0" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        A.main(["--model", str(saved / "model"), "--task", "sorting"])


def test_cli_as_a_script_next_to_the_checkpoint(saved, tmp_path, monkeypatch, capsys):
    """As shipped on the Hub: analysis.py and tasks.py copied into the checkpoint folder, no repo."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(saved / "model", ckpt)
    shutil.copy(A.__file__, ckpt / "analysis.py")
    shutil.copy(tasks.__file__, ckpt / "tasks.py")
    monkeypatch.chdir(ckpt)
    monkeypatch.syspath_prepend(str(ckpt))
    monkeypatch.setitem(sys.modules, "datasets_builders", None)  # the repo is not importable there
    monkeypatch.delitem(sys.modules, "tasks", raising=False)
    monkeypatch.setattr(sys, "argv", ["analysis.py", "--model", ".", "--task", "parity", "--lengths", "1-3",
                                      "--n", "8", "--ablation", "none", "--quiet"])
    env = runpy.run_path("analysis.py", run_name="__main__")
    assert os.path.samefile(env["tasks"].__file__, ckpt / "tasks.py")
    report = json.loads((ckpt / "analysis" / "analysis.json").read_text())
    assert report["iteration_heads"] == [[1, 0]] and "ablation" not in report
    assert "iteration heads: layer 1 head 0" in capsys.readouterr().out


def test_one_vocabulary_check_refuses_other_special_ids():
    """The one vocabulary check (evaluation.check_model is analysis.check_model) refuses a model whose
    special ids are not the tasks'."""
    from modeling import evaluation
    assert evaluation.check_model is A.check_model
    model = IterGPTForCausalLM(IterGPTConfig(n_layer=1, n_embd=8, n_head=1, n_positions=16, vocab_size=64,
                                             eoi_token_id=5))
    with pytest.raises(ValueError, match=r"the model's eoi_token_id=5 but the task vocabulary uses 61"):
        A.check_model(model)
