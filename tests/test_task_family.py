"""Any iterative task (issue 25 §1): the built-in families of ``datasets_builders.tasks`` are the
groups and automata they claim to be, the hand-built two-layer construction solves every one of
them exactly, a task written in a ten-line file goes through training, ``evaluate.py``, the analysis
and the explorer with no code change, and tasks with more than 57 values extend the vocabulary
without moving a single existing id.
"""

import json
import os
import sys

import numpy as np
import pytest
import torch

from datasets_builders import tasks
from datasets_builders.iteration_tasks import IterationTaskConfig, split_table
from datasets_builders.tokenizer import build_tokenizer, decode, encode
from modeling import explorer
from modeling.construction import build_iteration_head_model
from helpers import HUB, ROOT, hub_mark, run_cli


TASK_FILE = """\
# A 3-state counter that resets on input 2: s_t = F(s_{t-1}, x_t)
name: reset-counter
description: counts the 1s mod 3; input 2 resets the count to 0
inputs: [0, 1, 2]
start: 0
table:            # one row per state, one next state per input (in the order of inputs)
  - [0, 1, 0]
  - [1, 2, 0]
  - [2, 0, 0]
"""

GROUPS = {"cyclic5": (5, True), "dihedral3": (6, False), "dihedral4": (8, False), "quaternion": (8, False),
          "symmetric3": (6, False), "alternating4": (12, False), "symmetric4": (24, False),
          "alternating5": (60, False), "symmetric5": (120, False)}


def _group_table(name):
    """The multiplication table over element indices 0 … n-1 (ids mapped back to values)."""
    task = tasks.make_task(name)
    ids = list(task.input_values)
    index = {i: k for k, i in enumerate(ids)}
    return np.array([[index[int(task.table[a, b])] for b in ids] for a in ids])


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_group_word_problems_are_groups(name):
    """Closure, identity (value 0, the start state), inverses, associativity, order, (non-)abelian."""
    order, abelian = GROUPS[name]
    m = _group_table(name)
    n = len(m)
    assert n == order and tasks.make_task(name).start == tasks.value_id(0)
    assert (m[0] == np.arange(n)).all() and (m[:, 0] == np.arange(n)).all()
    assert all(sorted(row) == list(range(n)) for row in m)  # a Latin square: inverses exist
    a, b, c = np.meshgrid(np.arange(n), np.arange(n), np.arange(n), indexing="ij")
    assert (m[m[a, b], c] == m[a, m[b, c]]).all()
    assert bool((m == m.T).all()) is abelian


def test_quaternion_and_dihedral4_are_different_groups():
    """Both have order 8; Q_8 has one element of order 2 (-1), D_4 has five."""
    def involutions(name):
        m = _group_table(name)
        return sum(1 for g in range(1, len(m)) if m[g, g] == 0)
    assert involutions("quaternion") == 1 and involutions("dihedral4") == 5


def test_alternating5_is_not_solvable_and_alternating4_is():
    """The derived series of A_5 stops at A_5 itself (it is perfect); that of A_4 reaches {e}."""
    def derived_series_end(name):
        m = _group_table(name)
        inverse = {g: int(np.flatnonzero(m[g] == 0)[0]) for g in range(len(m))}
        group = set(range(len(m)))
        while True:
            commutators = {m[m[inverse[a], inverse[b]], m[a, b]] for a in group for b in group}
            sub = set(commutators)
            while True:  # the subgroup they generate
                more = {m[x, y] for x in sub for y in sub} | sub
                if more == sub:
                    break
                sub = more
            if sub == group:
                return len(group)
            group = sub
    assert derived_series_end("alternating5") == 60
    assert derived_series_end("alternating4") == 1


def test_small_automata_follow_their_definitions():
    flip = tasks.make_task("flipflop")
    assert flip.states(np.array([[2, 0, 0, 1, 0, 2]])).tolist() == [[1, 1, 1, 0, 0, 1]]
    grid = tasks.make_task("gridworld4")
    assert grid.states(np.array([[0, 1, 1, 1, 1, 0]])).tolist() == [[0, 1, 2, 3, 3, 2]]
    assert tasks.make_task("cyclic2").table[:2, :2].tolist() == tasks.make_task("parity").table.tolist()
    a, b = tasks.make_task("random5x3s1"), tasks.make_task("random5x3s1")
    assert (a.table == b.table).all() and not (a.table == tasks.make_task("random5x3s2").table).all()


@pytest.mark.parametrize("name", tasks.TASK_NAMES + tasks.BUILTIN_TASKS)
def test_the_construction_is_exact_on_every_builtin_task(name):
    """The paper's claim that two layers suffice for any F: greedy next tokens equal every state."""
    task = tasks.make_task(name)
    model = build_iteration_head_model(task, n_positions=37)  # lengths 1 … 17
    rng = np.random.default_rng(0)
    for length in (1, 2, 5, 17):
        rows = torch.as_tensor(tasks.build_rows(task, tasks.sample_inputs(task, length, 16, rng)))
        with torch.no_grad():
            predicted = model(rows).logits.argmax(-1)[:, length + 1:-1]
        assert (predicted == rows[:, length + 2:]).all(), (name, length)


@hub_mark(HUB)
def test_the_base_vocabulary_never_moves():
    """Every base id is what the released tokenizers say; the extension only appends."""
    released = json.loads((HUB / "iteration-head-parity" / "tokenizer.json").read_text())["model"]["vocab"]
    assert {w: i for i, w in enumerate(tasks.VOCAB)} == released
    extended = build_tokenizer(vocab_size=tasks.make_task("symmetric5").vocab_size)
    assert len(extended) == 127
    assert {w: extended.get_vocab()[w] for w in tasks.VOCAB} == released
    assert [tasks.value_id(v) for v in (0, 56, 57, 119)] == [0, 56, 64, 126]
    for name in ("copy", "parity", "polynomial", "cyclic5", "symmetric4"):
        assert tasks.make_task(name).vocab_size == 64, name


def test_tasks_beyond_57_values_write_extended_tokens_that_round_trip():
    task = tasks.make_task("symmetric5")
    config = IterationTaskConfig(name="s5", task="symmetric5", min_length=2, max_length=3, examples_per_length=40)
    table = split_table(config, "test")
    tok = build_tokenizer(vocab_size=task.vocab_size)
    for text, ids, kind in zip(table["text"].to_pylist(), table["input_ids"].to_pylist(), table["task"].to_pylist()):
        assert kind == "symmetric5" and text.startswith("<bos> ")
        assert encode(tok, text) == ids and decode(tok, ids) == text == tasks.decode(ids, task.vocab_size)
    assert max(max(ids) for ids in table["input_ids"].to_pylist()) >= 64  # values >= 57 occur


def test_a_model_too_small_for_a_task_is_refused_naming_both():
    from modeling import analysis, evaluation

    small = build_iteration_head_model("parity")
    for check in (analysis.check_model, evaluation.check_model):
        with pytest.raises(ValueError, match=r"vocab_size=64 .*symmetric5.* needs 127"):
            check(small, tasks.make_task("symmetric5"))
        check(small, tasks.make_task("symmetric4"))  # 24 values fit the base vocabulary


@pytest.mark.parametrize("definition, match", [
    ({"inputs": [0, 1], "table": [[0, 1], [1, 5]]}, r"table entry 5 is not a state"),
    ({"inputs": [0, 1], "table": [[0, 1], [1, 0]], "start": 3}, r"start=3 is not a state"),
    ({"inputs": [0, 0], "table": [[0, 0]]}, r"distinct values"),
    ({"inputs": [0, 1], "table": [[0]]}, r"one next state per input \(2\)"),
    ({"inputs": [0, 1], "table": [[0, 1], [1, 0]], "alphabet": 3}, r"unknown key\(s\) alphabet"),
])
def test_bad_task_definitions_are_clear_errors(definition, match):
    with pytest.raises(ValueError, match=match):
        tasks.task_from_definition(definition, "mine")


def test_unknown_tasks_and_files_name_what_to_give(tmp_path):
    with pytest.raises(ValueError, match=r"task='sorting' is unknown: choose one of copy, parity, polynomial, cyclic<n>"):
        tasks.make_task("sorting")
    with pytest.raises(ValueError, match=r"task file .*nope.json' does not exist"):
        tasks.make_task(str(tmp_path / "nope.json"))
    with pytest.raises(ValueError, match=r"symmetric<n> needs n in \[2, 5\]"):
        tasks.make_task("symmetric6")


@pytest.mark.integration
def test_a_task_in_a_ten_line_file_trains_evaluates_is_analysed_and_is_explored(tmp_path):
    """No code change: the file's path is the task everywhere."""
    from training.cli import run_config
    from training.config import compose

    path = tmp_path / "counter.yaml"
    path.write_text(TASK_FILE)
    assert len(TASK_FILE.splitlines()) <= 10
    models = tmp_path / "models"
    out = models / "counter"
    config = compose([f"data.task={path}", "data.max_length=6", "model.n_embd=32", "optim.max_steps=40",
                      "eval_every=20", "threads=1", f"output_dir={tmp_path / 'run'}", "figures=false"])
    run_config(config)
    models.mkdir()
    os.rename(tmp_path / "run" / "final", out)
    info = json.loads((out / "training_info.json").read_text())
    assert info["train_config"]["data"]["task"] == str(path)

    res = run_cli([sys.executable, str(ROOT / "evaluate.py"), "--model", str(out), "--out",
                   str(tmp_path / "eval.json"), "--lengths", "1-6"])
    assert res.returncode == 0, res.stderr
    results = json.loads((tmp_path / "eval.json").read_text())
    assert str(path) in json.dumps(results)

    from modeling.analysis import analyze, load_model
    report = analyze(load_model(str(out)), str(path), out=str(tmp_path / "analysis"), lengths=[2, 4, 6], modes=())
    assert set(report["accuracy"]) >= {2, 4, 6} or report

    catalogue = explorer.find_catalogue(str(models))
    selection = explorer.select(catalogue, "counter", task=str(path))
    assert selection.trained_task == str(path)
    shown = explorer.explore(selection, str(path), "1 1 2 1")
    assert shown.total == 5 and "&lt;bos&gt;" in shown.chain_html  # 4 states and <eos>
    with pytest.raises(explorer.InputError, match=r"'3' is not .* input: its values are 0 1 2"):
        explorer.parse_input("1 3", tasks.make_task(str(path)), 6)


def test_structure_measures_every_builtin_task():
    """tasks.structure (the complexity measures the task_family table carries) against the oracles above:
    GROUPS' orders and commutativity, A_5 / S_5 the only non-solvable ones, automata not groups."""
    for name in tasks.TASK_NAMES + tasks.BUILTIN_TASKS:
        s = tasks.structure(tasks.make_task(name))
        assert s["entries"] == s["states"] * s["inputs"], name
        if name in GROUPS:
            order, abelian = GROUPS[name]
            assert (s["group"], s["states"], s["inputs"], s["abelian"]) == (True, order, order, abelian), name
            assert s["solvable"] is (name not in ("alternating5", "symmetric5")), name
        elif name in ("parity", "cyclic3"):
            assert (s["group"], s["abelian"], s["solvable"]) == (True, True, True), name
        else:  # copy (every row the same), polynomial (s_1 = x_1), flip-flop, gridworld, a random automaton
            assert (s["group"], s["abelian"], s["solvable"]) == (False, None, None), name
    assert tasks.structure(tasks.make_task("flipflop"))["entries"] == 6  # 2 states x 3 inputs


def test_a_sweep_over_tasks_gets_their_structure_in_its_table():
    from training.results import STRUCTURE, table
    rows = [{"run": str(i), "status": "finished", "config": {"data.task": t, "seed": 0}, "outcome": {"steps": 10}}
            for i, t in enumerate(("cyclic5", "symmetric5", "flipflop"))]
    columns, flat = table(rows, "task_family")
    assert columns[columns.index("task") + 1:columns.index("task") + 1 + len(STRUCTURE)] == list(STRUCTURE)
    assert [(r["entries"], r["group"], r["solvable"]) for r in flat] == [(25, True, True), (14400, True, False),
                                                                         (6, False, None)]
    one_task = table([dict(r, config={"data.task": "parity", "seed": 0}) for r in rows])[0]
    assert "entries" not in one_task
    # With copy rows (data.task=mix) the task is mix_with's: a mix sweep over tasks gets theirs, after mix_with
    mixed = [{"run": str(i), "status": "finished", "config": {"data.task": task, "data.mix_with": w, "seed": 0},
              "outcome": {"steps": 10}} for i, (task, w) in enumerate((("mix", "cyclic3"), ("mix", "quaternion"),
                                                                      ("quaternion", "quaternion")))]
    columns, flat = table(mixed, "task_recipe")
    assert columns[columns.index("mix_with") + 1:columns.index("mix_with") + 1 + len(STRUCTURE)] == list(STRUCTURE)
    assert [(r["task"], r["entries"], r["abelian"]) for r in flat] == [("mix", 9, True), ("mix", 64, False),
                                                                      ("quaternion", 64, False)]
    only_mix = table([dict(r, config={"data.task": "mix", "data.mix_with": w, "seed": 0})
                      for r, w in zip(rows, ("cyclic3", "dihedral3", "cyclic5"))])[1]
    assert [r["entries"] for r in only_mix] == [9, 36, 25]  # data.task alike, the tasks differ


def test_a_sweep_over_tasks_is_drawn_against_table_size(tmp_path):
    from training.figures import structure_figure
    from training.tables import arms
    from training.results import _structure
    rows = [{"task": t, **{k: str(v) for k, v in _structure(t).items()}, "seed": str(seed), "steps": "6000",
             "iteration_score": "0.9", "steps_to_target": "" if seed else "3000"}
            for t in ("symmetric4", "cyclic5", "flipflop") for seed in (0, 1)]
    structure_figure(rows, tmp_path / "structure.png")
    assert (tmp_path / "structure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keys, groups = arms(rows)
    assert keys[:3] == ["task", "states", "inputs"] and [k[0] for k in groups] == ["flipflop", "cyclic5", "symmetric4"]


def test_copy_rows_mix_with_any_task_and_stay_binary():
    """``data.task=mix data.mix_with=<any task>``: the copy rows (binary, ``<copy>``) beside the task's own
    rows (``<bos>``), in the recipe's share, each row its own task's rows; copy itself is refused."""
    from datasets_builders.tasks import BOS_ID, TASK_TOKEN_ID
    from training.config import ConfigError, compose, validate
    from training.data import TaskData

    cfg = compose(["recipe=polynomial", "data.mix_with=cyclic3", "data.max_length=6", "optim.batch_size=200"])
    validate(cfg)
    data = TaskData(cfg)
    assert list(data.tasks) == ["copy", "cyclic3"]
    rows = data.rows(step=3, rank=0, world=1)
    copy = [r for r in rows if r[0] == TASK_TOKEN_ID["copy"]]
    cyclic = [r for r in rows if r[0] == BOS_ID]
    assert len(copy) + len(cyclic) == 200 and 30 <= len(copy) <= 90  # mix_ratio 0.3 of 200, drawn per row
    for row in copy:
        length = (len(row) - 3) // 2
        assert set(row[1:length + 1].tolist()) <= {0, 1} and row[length + 2:2 * length + 2].tolist() == row[1:length + 1].tolist()
    task = tasks.make_task("cyclic3")
    for row in cyclic:
        length = (len(row) - 3) // 2
        assert row[length + 2:2 * length + 2].tolist() == task.states(row[None, 1:length + 1])[0].tolist()
    assert {name for name, _ in data.splits["test"]} == {"copy", "cyclic3"}
    with pytest.raises(ConfigError, match=r"data.mix_with='copy': mix already brings the copy rows"):
        validate(compose(["recipe=polynomial", "data.mix_with=copy"]))
    with pytest.raises(ConfigError, match=r"data.task='dihedral1'"):
        validate(compose(["recipe=polynomial", "data.mix_with=dihedral1"]))
