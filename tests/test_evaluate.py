"""Tests of evaluate.py, modeling/evaluation.py and the sequence_accuracy metric (seconds, CPU).

An *oracle* language model (a tiny ``PreTrainedModel`` with ``GenerationMixin`` whose logits are
one-hot on the true next token, computed from the row's own inputs) gives known accuracies:
1.0 when it is honest, and an exact, predictable fraction when it lies about one state on the rows
whose first input is 1. Randomly initialised IterGPTs check the real model path (cache vs no cache,
teacher-forced vs generated), and the hand-built iteration-head model must be exact.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from datasets_builders import tasks
from modeling import analysis
from modeling import evaluation as ev
from helpers import ROOT, run_cli, tiny_model

PARITY = tasks.make_task("parity")


# ---------------------------------------------------------------------------------------------
# Test models
# ---------------------------------------------------------------------------------------------
class OracleConfig(PretrainedConfig):
    model_type = "oracle-for-tests"

    def __init__(self, task: str = "parity", cot: bool = True, lie_at: int | None = None, **kwargs):
        self.task, self.cot, self.lie_at = task, cot, lie_at
        self.vocab_size, self.n_positions, self.num_hidden_layers = tasks.VOCAB_SIZE, 64, 1
        kwargs.setdefault("eos_token_id", tasks.EOS_ID)
        kwargs.setdefault("pad_token_id", tasks.PAD_ID)
        super().__init__(**kwargs)


class Oracle(PreTrainedModel, GenerationMixin):
    """Predicts the true next token from the row's own inputs (whatever it generated before).

    ``lie_at=k``: on rows whose ``x_1`` is 1, answer position ``k`` gets a wrong value.
    No KV cache: every step sees the whole prefix, with or without ``use_cache``.
    """

    config_class = OracleConfig

    def __init__(self, config: OracleConfig):
        super().__init__(config)
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the model a device
        self.task = tasks.make_task(config.task)
        self.post_init()

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def forward(self, input_ids, attention_mask=None, **kwargs):
        ids = input_ids.cpu().numpy()
        nxt = np.full(ids.shape, tasks.PAD_ID)
        for i, row in enumerate(ids):
            e = int(np.flatnonzero(row == tasks.EOI_ID)[0])
            full = tasks.build_rows(self.task, row[None, 1:e], self.config.cot)[0]
            if self.config.lie_at is not None and row[1] == 1:
                full[e + 1 + self.config.lie_at] = 1 - full[e + 1 + self.config.lie_at]  # a wrong bit
            n = min(len(row), len(full) - 1)
            nxt[i, :n] = full[1:n + 1]
        logits = torch.nn.functional.one_hot(torch.as_tensor(nxt), tasks.VOCAB_SIZE).float()
        return CausalLMOutputWithPast(logits=logits.to(self.anchor.device))


def tiny_itergpt(seed: int = 0, **overrides):
    """The tiny model with one head and the full 64-position context."""
    return tiny_model(seed, **{"n_head": 1, "n_positions": 64, "embd_pdrop": 0.0, **overrides})


@pytest.fixture(scope="module")
def random_model():
    return tiny_itergpt()


@pytest.fixture(scope="module")
def metric():
    """The sequence_accuracy metric, loaded with the ``evaluate`` library (``import evaluate`` finds it)."""
    import evaluate

    return evaluate.load(ev.METRIC_PATH)


def load_cli():
    """The command's module (``evaluate.py`` runs its ``cli``), so its ``main`` runs in-process."""
    from modeling import evaluate_cli
    return evaluate_cli


# ---------------------------------------------------------------------------------------------
# The name clash with the evaluate library
# ---------------------------------------------------------------------------------------------
def test_pytest_imports_the_evaluate_library():
    import evaluate

    assert hasattr(evaluate, "load") and hasattr(evaluate, "Metric")
    assert os.path.dirname(os.path.abspath(evaluate.__file__)) != str(ROOT)


@pytest.mark.integration
def test_a_notebook_at_the_root_imports_the_evaluate_library():
    """`import evaluate` where the root comes first on sys.path (python started there, a notebook)
    finds evaluate.py, which hands over to the library: its functions and submodules work."""
    code = ("import sys; assert sys.path[0] == ''; import evaluate, evaluate.loading; from evaluate import load; "
            "print(evaluate.__file__, load is evaluate.load, evaluate.loading.load is load)")
    out = run_cli([sys.executable, "-c", code], timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    path, same, submodule = out.stdout.split()
    assert os.path.dirname(os.path.dirname(path)) != str(ROOT) and path.endswith(os.path.join("evaluate", "__init__.py"))
    assert same == submodule == "True"


@pytest.mark.integration
def test_script_help_from_the_root():
    out = run_cli([sys.executable, "evaluate.py", "--help"], timeout=120)
    assert out.returncode == 0, out.stderr
    for flag in ("--model", "--task", "--dataset", "--lengths", "--extrapolate", "--no-cot", "--out"):
        assert flag in out.stdout


# ---------------------------------------------------------------------------------------------
# The evaluate metric
# ---------------------------------------------------------------------------------------------
def test_metric_loads_offline_and_scores(metric, monkeypatch):
    import evaluate

    monkeypatch.chdir(ROOT)  # the documented relative path works too
    relative = evaluate.load("metrics/sequence_accuracy")
    preds, refs = [[1, 0, 62], [1, 1], [0, 62, 63]], [[1, 0, 62], [1, 0, 62], [0, 62]]
    assert relative.compute(predictions=preds, references=refs)["sequence_accuracy"] == pytest.approx(1 / 3)
    full = metric.compute(predictions=preds, references=refs, per_position=True)
    assert full["sequence_accuracy"] == pytest.approx(1 / 3)  # extra tokens are wrong, missing too
    assert full["token_accuracy"] == pytest.approx(6 / 8)
    assert full["per_position_accuracy"] == pytest.approx([1.0, 2 / 3, 0.5])
    assert ev.sequence_accuracy(preds, refs, per_position=True) == full


def test_our_sequence_accuracy_equals_the_evaluate_module(metric):
    """evaluate.py scores with modeling.evaluation.sequence_accuracy (no `evaluate` import in its
    process); users of evaluate.load("metrics/sequence_accuracy") must get the same numbers."""
    rng = np.random.default_rng(0)
    for trial in range(20):
        refs = [rng.integers(0, 3, rng.integers(1, 6)).tolist() for _ in range(rng.integers(1, 30))]
        preds = [r if rng.random() < 0.4 else rng.integers(0, 3, rng.integers(0, 7)).tolist() for r in refs]
        ours = ev.sequence_accuracy(preds, refs, per_position=True)
        theirs = metric.compute(predictions=preds, references=refs, per_position=True)
        assert ours == theirs, trial
        assert ev.sequence_accuracy(preds, refs) == metric.compute(predictions=preds, references=refs)
    from datasets_builders.iteration_tasks import CITATION
    assert " ".join(metric.citation.split()) == " ".join(CITATION.split())  # the self-contained file's copy


# ---------------------------------------------------------------------------------------------
# Accuracies
# ---------------------------------------------------------------------------------------------
def test_honest_oracle_scores_one_with_and_without_cache():
    rows = analysis.sample_rows(PARITY, [1, 3, 6], 16, seed=1)
    oracle = Oracle(OracleConfig())
    for use_cache in (True, False):
        out = ev.evaluate_model(oracle, rows, use_cache=use_cache)
        assert all(r["teacher_forced"] == r["generated"] == r["generated_final"] == 1.0 for r in out.values())


def test_lying_oracle_gives_exact_fractions_everywhere():
    """A wrong first state on rows with x_1 = 1: teacher-forced = generated = share of x_1 = 0 rows;
    the final answer stays right (L >= 2); per-position accuracy shows where the lie is."""
    rows = analysis.sample_rows(PARITY, [1, 4, 7], 40, seed=2)
    oracle = Oracle(OracleConfig(lie_at=0))
    out = ev.evaluate_model(oracle, rows)
    for L, r in out.items():
        honest = float(np.mean(rows[L][:, 1] == 0))
        assert 0 < honest < 1
        assert r["teacher_forced"] == pytest.approx(honest)
        assert r["generated"] == pytest.approx(honest)
        assert r["generated_final"] == pytest.approx(honest if L == 1 else 1.0)
        assert r["generated_per_position"][0] == pytest.approx(honest)  # the lie is at position 0
        assert r["generated_per_position"][1:] == pytest.approx([1.0] * L)


def test_no_cot_oracle():
    task = tasks.make_task("parity")
    rows = analysis.sample_rows(task, [2, 5], 16, seed=3, cot=False)
    assert rows[5].shape[1] == tasks.row_length(5, cot=False)
    out = ev.evaluate_model(Oracle(OracleConfig(cot=False)), rows, cot=False)
    assert all(r["teacher_forced"] == r["generated"] == r["generated_final"] == 1.0 for r in out.values())
    with pytest.raises(ValueError, match="not a chain-of-thought row"):
        ev.generated_correct(Oracle(OracleConfig(cot=False)), rows[5], cot=True)
    lying = ev.evaluate_model(Oracle(OracleConfig(cot=False, lie_at=0)), rows, cot=False)
    for L, r in lying.items():  # without CoT the only state is the final answer
        assert r["generated"] == r["generated_final"] == pytest.approx(np.mean(rows[L][:, 1] == 0))


def test_random_model_is_clearly_worse_and_consistent(random_model):
    rows = analysis.sample_rows(PARITY, [2, 5, 9], 24, seed=4)
    out = ev.evaluate_model(random_model, rows)
    assert np.mean([r["teacher_forced"] for r in out.values()]) < 0.5
    assert np.mean([r["generated"] for r in out.values()]) < 0.5
    for L, block in rows.items():  # greedy generation is right exactly when teacher forcing is
        ids = torch.as_tensor(block)
        with torch.no_grad():
            tf = analysis.teacher_forced_correct(random_model(ids).logits, ids).numpy()
        np.testing.assert_array_equal(ev.generated_correct(random_model, block).sequence, tf)


def test_generation_with_and_without_kv_cache_agree(random_model):
    # A random model writes arbitrary tokens: equal predictions test the cache, not just accuracy.
    rows = [r for block in analysis.sample_rows(PARITY, [3, 8, 12], 8, seed=5).values() for r in block]
    rows = rows[::-1]  # mixed lengths, any order: results come back in the given order
    cached = ev.generated_correct(random_model, rows, batch_size=5, use_cache=True)
    plain = ev.generated_correct(random_model, rows, batch_size=7, use_cache=False)
    assert cached.predictions == plain.predictions
    assert len(set(map(tuple, cached.predictions))) > 1
    assert cached.references == [r[tasks.eoi_position(len(r) // 2 - 1) + 1:].tolist() for r in rows]


def test_generation_ignores_the_checkpoints_generation_config():
    # no_repeat_ngram_size=1 in a checkpoint's generation_config.json would ban every bit already in
    # the prompt; evaluation must stay plain argmax decoding, and leave the model's config as it was.
    oracle = Oracle(OracleConfig())
    oracle.generation_config.no_repeat_ngram_size = 1
    rows = analysis.sample_rows(PARITY, [4], 8, seed=7)[4]
    assert ev.generated_correct(oracle, rows).sequence.all()
    assert oracle.generation_config.no_repeat_ngram_size == 1
    prompts = torch.as_tensor(rows[:, :6])
    banned = oracle.generate(prompts, max_new_tokens=5, do_sample=False, pad_token_id=tasks.PAD_ID)
    assert not np.array_equal(banned[:, 6:].numpy(), rows[:, 6:])  # what the guard prevents


def test_hand_built_model_is_exact_generated_equals_teacher_forced():
    from modeling.construction import build_iteration_head_model

    model = build_iteration_head_model("parity")
    limit = ev.max_length_in_context(model.config.n_positions)
    rows = analysis.sample_rows(PARITY, [1, 5, 16, limit], 16, seed=6)
    out = ev.evaluate_model(model, rows)
    for L, r in out.items():
        assert r["teacher_forced"] == r["generated"] == r["generated_final"] == 1.0, (L, r)


# ---------------------------------------------------------------------------------------------
# Results and model-index
# ---------------------------------------------------------------------------------------------
def check_model_index_entry(entry: dict) -> None:
    assert entry["task"]["type"] == "text-generation" and entry["task"]["name"]
    assert set(entry["dataset"]) >= {"name", "type", "config", "split"}
    types = [m["type"] for m in entry["metrics"]]
    assert types == [ev.TEACHER_FORCED, ev.GENERATED, ev.GENERATED_FINAL]
    assert all(0.0 <= m["value"] <= 1.0 and m["name"] for m in entry["metrics"])


def test_results_and_model_index_shape():
    per_length = {L: {"n": 4, "teacher_forced": a, "generated": a, "generated_final": 1.0}
                  for L, a in ((1, 1.0), (2, 0.5), (3, 0.25))}
    results = ev.build_results(per_length, model_name="m", task="parity", cot=True, n_positions=64,
                               dataset={"name": "d", "type": "d", "config": "parity", "split": "test"},
                               train_max_length=2, sources={3: "test_longer"})
    within, beyond = results["results"]
    check_model_index_entry(within)
    check_model_index_entry(beyond)
    assert within["metrics"][0]["value"] == pytest.approx(0.75)  # unweighted mean over L = 1, 2
    assert beyond["dataset"]["split"] == "test_longer" and beyond["metrics"][1]["value"] == 0.25
    assert results["per_length"]["3"]["extrapolated"] and not results["per_length"]["2"]["extrapolated"]
    index = ev.to_model_index(results, "org/itergpt-parity")
    assert index == [{"name": "org/itergpt-parity", "results": results["results"]}]
    assert ev.to_model_index(results["results"], "x")[0]["results"] == results["results"]
    assert "3*" in ev.format_table(results)


@pytest.mark.integration
def test_cli_end_to_end_subprocess(tmp_path):
    """`python evaluate.py` from the root, where its own name shadows the `evaluate` library: the
    process imports no module called `evaluate` (neither the library nor itself a second time)."""
    model_dir = tmp_path / "model"
    tiny_itergpt(n_positions=16).save_pretrained(model_dir)
    out = tmp_path / "eval_results.json"
    run = run_cli(
        [sys.executable, "-X", "importtime", "evaluate.py", "--model", str(model_dir), "--task", "parity", "--lengths", "1-3",
         "--n-per-length", "6", "--extrapolate", "--train-max-length", "3", "--out", str(out), "--threads", "1"],
        timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(out.read_text())
    assert sorted(map(int, results["per_length"])) == [1, 2, 3, 4, 5, 6]  # 2L+3 <= 16 up to L = 6
    assert [L for L, r in results["per_length"].items() if r["extrapolated"]] == ["4", "5", "6"]
    assert len(results["results"]) == 2
    for entry in results["results"]:
        check_model_index_entry(entry)
    assert "generated_token_accuracy" in results["per_length"]["1"]
    assert "teacher-forced" in run.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")]
    assert "modeling.evaluation" in imported
    assert not [m for m in imported if m == "evaluate" or m.startswith("evaluate.")], "evaluate was imported"


# ---------------------------------------------------------------------------------------------
# --dataset
# ---------------------------------------------------------------------------------------------
def write_hub_folder(folder, splits: dict[str, dict], config: str = "parity") -> str:
    """A Hub-layout dataset by hand: ``data/<config>/<split>-00000-of-00001.parquet`` + card YAML."""
    os.makedirs(folder / "data" / config, exist_ok=True)
    files = []
    for split, columns in splits.items():
        pq.write_table(pa.table(columns), str(folder / "data" / config / f"{split}-00000-of-00001.parquet"))
        files.append(f"  - split: {split}\n    path: data/{config}/{split}-*.parquet\n")
    (folder / "README.md").write_text(f"---\nconfigs:\n- config_name: {config}\n  data_files:\n{''.join(files)}---\n")
    return str(folder)


def parity_columns(lengths, n: int, seed: int = 0) -> dict:
    rows = [r for block in analysis.sample_rows(PARITY, lengths, n, seed).values() for r in block]
    return {"input_ids": pa.array([r.tolist() for r in rows], type=pa.list_(pa.int32())),
            "length": pa.array([len(r) // 2 - 1 for r in rows], type=pa.int32()),
            "task": ["parity"] * len(rows), "text": [tasks.decode(r) for r in rows]}


@pytest.fixture(scope="module")
def hub_dataset(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("hub")
    try:
        from datasets_builders.export import export
    except ImportError:
        return write_hub_folder(folder, {"test": parity_columns([1, 2, 3], 6),
                                         "test_longer": parity_columns([5], 6)})
    export(str(folder), configs=["parity"], max_length=3, examples_per_length=12, extrapolation_lengths=(5,),
           overwrite=True)
    return str(folder)


def test_dataset_rows_validated_and_grouped(hub_dataset):
    rows = ev.load_dataset_rows(hub_dataset, PARITY, "test")
    assert sorted(rows) == [1, 2, 3]
    for L, block in rows.items():
        assert block.shape[1] == tasks.row_length(L)
    assert sorted(ev.load_dataset_rows(hub_dataset, PARITY, "test", lengths=[2], n_per_length=1)) == [2]
    with pytest.raises(ev.DatasetFormatError, match=r"no rows of length\(s\) \[9\]"):
        ev.load_dataset_rows(hub_dataset, PARITY, "test", lengths=[9])


def test_cli_with_dataset_and_test_longer(hub_dataset, tmp_path):
    cli = load_cli()
    model_dir = tmp_path / "model"
    tiny_itergpt(n_positions=16).save_pretrained(model_dir)
    results = cli.main(["--model", str(model_dir), "--task", "parity", "--dataset", hub_dataset,
                        "--extrapolate", "--train-max-length", "3", "--out", str(tmp_path / "r.json")])
    sources = {L: r["source"] for L, r in results["per_length"].items()}
    assert sources == {"1": "test", "2": "test", "3": "test", "4": "sampled", "5": "test_longer", "6": "sampled"}
    within, beyond = results["results"]
    assert within["dataset"] == {"name": os.path.basename(hub_dataset), "type": os.path.basename(hub_dataset),
                                 "config": "parity", "split": "test"}
    assert beyond["dataset"]["split"] == "sampled+test_longer"
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(results))


@pytest.mark.parametrize("columns, message", [
    ({"input_ids": pa.array([], type=pa.list_(pa.int32())), "length": pa.array([], type=pa.int32())}, "empty"),
    ({"input_ids": [[58, 1, 61, 1, 62]]}, r"lacks the column\(s\) \['length'\]"),
    ({"input_ids": ["58 1 61 1 62"], "length": [1]}, "must be a list of integers"),
    ({"input_ids": [[58, 1, 61, 0, 62]], "length": [1]}, "malformed"),  # parity of 1 is 1
    ({"input_ids": [[58, 1, 61, 1, 99]], "length": [1]}, r"outside \[0, 64\)"),
    ({"input_ids": [[58, 1, 0, 61, 1, 1, 62]], "length": [1]}, "needs 5"),
    ({"input_ids": [[57, 1, 61, 1, 62]], "length": [1]}, "not a 'parity' example"),
])
def test_bad_datasets_raise_clear_errors(tmp_path, columns, message):
    # A unique folder name: `datasets` caches a local folder by its name, relative paths and mtimes.
    folder = write_hub_folder(tmp_path / tmp_path.name, {"test": columns})
    with pytest.raises(ev.DatasetFormatError, match=message):
        ev.load_dataset_rows(folder, PARITY, "test")


def test_no_cot_rows_in_a_cot_evaluation_get_a_hint():
    rows = tasks.build_rows(PARITY, np.array([[1, 0, 1]]), cot=False)
    with pytest.raises(ev.DatasetFormatError, match="pass --no-cot"):
        ev.validate_rows(list(rows), [3], PARITY, cot=True)


# ---------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------
def test_model_vocab_must_be_the_task_vocab(tmp_path):
    model_dir = tmp_path / "wrong_vocab"
    tiny_itergpt(vocab_size=40, pad_token_id=None, eos_token_id=None, bos_token_id=None,
                 eoi_token_id=None).save_pretrained(model_dir)
    with pytest.raises(ValueError, match="vocab_size=40 does not fit: the task vocabulary has 64 tokens"):
        load_cli().main(["--model", str(model_dir), "--task", "parity", "--out", str(tmp_path / "r.json")])


def test_lengths_beyond_the_context_are_refused(tmp_path, random_model):
    with pytest.raises(ValueError, match=r"lengths \[31, 40\] do not fit .* longest evaluable length is 30"):
        ev.check_lengths([4, 31, 40], n_positions=64)
    ev.check_lengths([60], n_positions=64, cot=False)  # L + 4 tokens without CoT
    model_dir = tmp_path / "small"
    tiny_itergpt(n_positions=16).save_pretrained(model_dir)
    with pytest.raises(ValueError, match="longest evaluable length is 6"):
        load_cli().main(["--model", str(model_dir), "--task", "parity", "--lengths", "1-8",
                         "--out", str(tmp_path / "r.json")])


def test_run_settings_from_training_info(tmp_path, random_model):
    (tmp_path / "training_info.json").write_text(json.dumps(
        {"step": 10, "train_config": {"data": {"task": "polynomial", "cot": False, "max_length": 12,
                                               "modulus": 7, "polynomial": [[1, 1, 1], [0, 0, 1]]}}}))
    found = ev.find_run_settings(random_model, str(tmp_path))
    assert found == {"task": "polynomial", "cot": False, "train_max_length": 12, "modulus": 7,
                     "polynomial": [(1, 1, 1), (0, 0, 1)]}
    assert ev.find_run_settings(random_model, None) == {}


def test_run_test_rows_are_the_runs_held_out_split(tmp_path):
    """Without --dataset, a train.py run folder is evaluated on its own test split."""
    import json as _json

    from datasets_builders.iteration_tasks import IterationTaskConfig, split_inputs
    from modeling import evaluation as ev
    from training.config import compose, to_dict

    cfg = compose(["recipe=parity", "data.max_length=6", "model.n_positions=16"])
    (tmp_path / "training_info.json").write_text(_json.dumps({"train_config": to_dict(cfg)}))
    rows = ev.run_test_rows(str(tmp_path), "parity", [1, 2, 3, 6, 7], 10)
    assert sorted(rows) == [1, 2, 3, 6]  # 7 is beyond the run's lengths: sampled instead
    config = IterationTaskConfig(name="x", task="parity", max_length=6, examples_per_length=2048)
    for L, r in rows.items():
        split = split_inputs(config, L)
        assert np.array_equal(r[:, 1:L + 1], split["test"][:10])
        train_keys = {bytes(x.astype(np.uint8)) for x in split["train"]}
        assert not any(bytes(x.astype(np.uint8)) in train_keys for x in r[:, 1:L + 1])
    assert ev.run_test_rows(str(tmp_path / "nowhere"), "parity", [1], 10) is None


def test_a_run_on_the_papers_data_is_evaluated_only_on_sequences_it_never_drew(tmp_path, random_model, capsys):
    """The reference's train and test halves overlap (draws with replacement): without --dataset, a
    data.source=paper run is evaluated on its test half less every sequence its train half drew, and
    a length where nothing is left (length 2: four sequences, 1,024 draws) is not evaluated at all,
    neither from the test half nor from sampled rows (which would be training sequences)."""
    import json as _json

    from datasets_builders.iteration_tasks import paper_split_inputs
    from training.config import compose, to_dict

    cfg = compose(["recipe=paper_reference", "data.max_length=12", "model.n_positions=32"])
    (tmp_path / "training_info.json").write_text(_json.dumps({"train_config": to_dict(cfg)}))
    rows = ev.run_test_rows(str(tmp_path), "parity", [2, 9, 12], 10_000)
    parity = tasks.make_task("parity")
    for L, block in rows.items():
        halves = paper_split_inputs(parity, L, cfg.data.examples_per_length, cfg.data.seed)
        train = {bytes(x.astype(np.uint8)) for x in halves["train"]}
        kept = [x for x in halves["test"] if bytes(x.astype(np.uint8)) not in train]
        assert np.array_equal(block[:, 1:L + 1], np.array(kept).reshape(len(kept), L)), L
    assert len(rows[2]) == 0 and 0 < len(rows[9]) < len(rows[12]) < 1024  # even at 2^12 = 4,096 some are shared
    model_dir = tmp_path
    random_model.save_pretrained(model_dir)
    out = load_cli().main(["--model", str(model_dir), "--lengths", "1-3,9", "--n-per-length", "50",
                           "--out", str(tmp_path / "r.json")])
    assert sorted(int(L) for L in out["per_length"]) == [9], out["per_length"].keys()
    assert "length(s) 1, 2, 3 not evaluated" in capsys.readouterr().err


def test_rows_a_paper_run_drew_for_training_are_dropped_from_any_source():
    """Dataset or sampled rows: a data.source=paper run loses exactly the rows its train half drew
    (lengths beyond its training range are untouched, lengths with nothing left are gone); a run on
    the builder's data keeps every row (its test split is disjoint by construction)."""
    from datasets_builders.iteration_tasks import paper_split_inputs
    from modeling.analysis import sample_rows
    from training.config import compose, to_dict

    paper = to_dict(compose(["recipe=paper_reference", "data.max_length=10", "model.n_positions=32"]))["data"]
    rows = sample_rows(tasks.make_task("parity"), [2, 9, 10, 12], 300, 0, True)
    kept, dropped = ev.drop_trained_rows(rows, paper, "parity")
    parity = tasks.make_task("parity")
    for L in (9, 10):
        train = {bytes(x.astype(np.uint8)) for x in paper_split_inputs(parity, L, 2048, paper["seed"])["train"]}
        expected = [r for r in rows[L] if bytes(r[1:L + 1].astype(np.uint8)) not in train]
        assert np.array_equal(kept[L], np.array(expected)) and dropped[L] == len(rows[L]) - len(expected) > 0, L
    assert 2 not in kept and dropped[2] == len(rows[2]) > 0  # four sequences, 1,024 draws: all trained on
    assert np.array_equal(kept[12], rows[12]) and 12 not in dropped  # beyond its lengths: never drawn
    fresh = to_dict(compose(["recipe=parity"]))["data"]
    assert ev.drop_trained_rows(rows, fresh, "parity") == (rows, {})
    assert ev.drop_trained_rows(rows, None, "parity") == (rows, {})


def test_run_settings_of_a_mix_run_name_the_task_it_is_for(tmp_path):
    """A run trained on copy rows + parity (data.task: mix) is a parity model to evaluate.py."""
    import json as _json
    from types import SimpleNamespace

    from modeling import evaluation as ev

    data = {"task": "mix", "mix_with": "polynomial", "cot": True, "max_length": 12, "modulus": 7,
            "polynomial": [[1, 1, 1]]}
    (tmp_path / "training_info.json").write_text(_json.dumps({"train_config": {"data": data}}))
    found = ev.find_run_settings(SimpleNamespace(config=SimpleNamespace()), str(tmp_path))
    assert found["task"] == "polynomial" and found["train_max_length"] == 12 and found["modulus"] == 7
