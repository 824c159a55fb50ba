"""The task datasets: states against F written out by hand, layout, splits, determinism, export.

Tiny configs (lengths <= 6, a few dozen rows per length) keep the file to a few seconds.
"""

from __future__ import annotations

import functools
import glob
import os

import numpy as np
import pytest

import datasets
from datasets_builders import export as export_mod
from datasets_builders import iteration_tasks as it
from datasets_builders import tasks

datasets.disable_progress_bars()

SMALL = dict(max_length=6, examples_per_length=24, test_fraction=0.5)


def small(name: str, **kwargs) -> it.IterationTaskConfig:
    """A named config with small sizes (and any field overridden)."""
    base = it.IterationTasks.builder_configs[name]
    fields = dict(task=base.task, cot=base.cot, **{**SMALL, **kwargs})
    return it.IterationTaskConfig(name=name, **fields)


# ---------------------------------------------------------------------------------------------
# The definition of each task, written out without the package's tables
# ---------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def builtin_task(name: str) -> tasks.Task:
    return tasks.make_task(name)  # S_5's table takes ~0.1 s to build: once per test session


def reference_states(task: str, xs: list[int], p: int = 11, poly=((1, 1, 1), (0, 0, 1))) -> list[int]:
    if task in it.BUILTIN_TASKS:  # s_t = F(s_{t-1}, x_t) one step at a time (test_task_family checks F)
        t = builtin_task(task)
        out, s = [], t.start
        for x in xs:
            s = t.step(s, x)
            out.append(s)
        return out
    if task == "copy":  # s_t = x_t
        return list(xs)
    if task == "parity":  # s_0 = 0, s_t = s_{t-1} + x_t mod 2
        out, s = [], 0
        for x in xs:
            s = (s + x) % 2
            out.append(s)
        return out
    if task == "polynomial":  # s_1 = x_1, s_t = P(s_{t-1}, x_t) mod p
        out, s = [xs[0]], xs[0]
        for x in xs[1:]:
            s = sum(c * s ** a * x ** b for a, b, c in poly) % p
            out.append(s)
        return out
    raise AssertionError(task)


def check_rows(table, config: it.IterationTaskConfig, lengths) -> None:
    """Every row: layout, input alphabet, and states equal to the hand-written F."""
    inputs_allowed = {"copy": {0, 1}, "parity": {0, 1}, "polynomial": set(range(1, config.modulus)),
                      **{t: set(builtin_task(t).input_values) for t in config.subtasks if t in it.BUILTIN_TASKS}}
    seen_lengths = set()
    for row in table.to_pylist():
        ids, length, name = row["input_ids"], row["length"], row["task"]
        seen_lengths.add(length)
        assert name in config.subtasks
        assert len(ids) == (2 * length + 3 if config.cot else length + 4)
        assert ids[0] == (tasks.TOKEN_TO_ID[f"<{name}>"] if name in tasks.TASK_NAMES else tasks.BOS_ID)
        xs = ids[1:length + 1]
        assert set(xs) <= inputs_allowed[name]
        assert ids[length + 1] == tasks.EOI_ID and ids[-1] == tasks.EOS_ID
        assert tasks.EOI_ID not in ids[length + 2:] and tasks.EOS_ID not in ids[:-1]
        states = reference_states(name, xs, config.modulus, config.polynomial)
        assert ids[length + 2:-1] == (states if config.cot else states[-1:])
        assert row["text"] == tasks.decode(ids, tasks.MAX_VOCAB_SIZE)
    assert seen_lengths == set(lengths)


@pytest.mark.parametrize("name", export_mod.ALL_CONFIGS)
def test_every_named_config_layout_and_states(name):
    config = small(name)
    for split in config.splits:
        check_rows(it.split_table(config, split), config, config.lengths)


def test_custom_polynomial_and_modulus():
    poly = ((2, 0, 2), (0, 1, 3), (0, 0, 1))  # P(s, x) = 2 s^2 + 3 x + 1 mod 7
    config = it.IterationTaskConfig(name="poly7", task="polynomial", modulus=7, polynomial=poly, **SMALL)
    table = it.split_table(config, "train")
    check_rows(table, config, config.lengths)
    # A different P gives different states on the same inputs (the table is really used).
    default = it.IterationTaskConfig(name="poly7", task="polynomial", modulus=7, **SMALL)
    assert table.column("input_ids").to_pylist() != it.split_table(default, "train").column("input_ids").to_pylist()
    # A list-of-lists polynomial is normalised to tuples (hashable, same data).
    as_lists = it.IterationTaskConfig(name="poly7", task="polynomial", modulus=7,
                                      polynomial=[list(t) for t in poly], **SMALL)
    assert as_lists.polynomial == poly and it.split_table(as_lists, "train").equals(table)


def test_named_configs():
    names = [c.name for c in it.IterationTasks.BUILDER_CONFIGS]
    assert names[:8] == ["copy", "parity", "polynomial", "mix", "copy_nocot", "parity_nocot", "polynomial_nocot",
                         "mix_nocot"]  # as first released
    assert names[8:] == list(tasks.BUILTIN_TASKS) + [f"{t}_nocot" for t in tasks.BUILTIN_TASKS] + ["mix_polynomial"]
    assert tuple(names) == it.NAMED_CONFIG_NAMES == export_mod.ALL_CONFIGS
    for c in it.IterationTasks.BUILDER_CONFIGS:
        paper = c.task in it.TASKS
        assert c.cot == (not c.name.endswith("_nocot")) and c.name.startswith(c.task)
        assert (c.min_length, c.max_length, c.examples_per_length, c.test_fraction, c.modulus) == (1, 16, 2048, 0.25, 11)
        assert c.extrapolation_lengths == it.PAPER_EXTRAPOLATION_LENGTHS  # the built-in tasks' too (issue 25 §1)
        assert c.splits == ("train", "test", "test_longer")
        assert c.max_rows_per_length == (None if paper else it.BUILTIN_MAX_ROWS_PER_LENGTH)
        about = it.task_description(c.name if c.name in it.TASK_DESCRIPTIONS else c.task)
        assert c.description.startswith(f"{c.task}: {about} Answer with")
        assert (c.task_splits, c.metadata) == ((True, True) if c.name == "mix_polynomial" else (False, False))
    # The polynomial recipe's data (configs/recipe/polynomial.yaml).
    recipe = it.IterationTasks.builder_configs["mix_polynomial"]
    assert (recipe.mix_with, recipe.mix_ratio, recipe.cot, recipe.polynomial) == (
        "polynomial", 0.3, True, ((1, 1, 1), (0, 0, 1)))
    # Another max_length drops the named test_longer lengths unless they are given too.
    assert it.IterationTasks(config_name="parity", max_length=6).config.extrapolation_lengths == ()
    assert it.IterationTasks(config_name="parity", max_length=6, extrapolation_lengths=(8,)).config.splits[-1] == (
        "test_longer")


def test_max_rows_per_length_keeps_a_prefix_of_each_side_of_the_split():
    """The kept rows are the first of the full split's test part and of its train part: every kept test
    row is held out by a run at the same parameters without the cap, and the proportion is kept. A longer
    length keeps the first max_rows_per_length of its test_longer (all of it where fewer are drawn)."""
    capped = it.IterationTaskConfig(name="x", task="cyclic3", max_length=7, examples_per_length=200,
                                    max_rows_per_length=40, extrapolation_lengths=(8,))
    full = it.IterationTaskConfig(name="x", task="cyclic3", max_length=7, examples_per_length=200,
                                  extrapolation_lengths=(8,))
    counts = {c["length"]: c for c in it.length_counts(capped)}
    for length in (*capped.lengths, 8):
        kept, whole = it.split_inputs(capped, length), it.split_inputs(full, length)
        for split, rows in kept.items():
            n = len(whole[split]) if counts[length]["drawn"] <= 40 and split != "test_longer" else len(rows)
            assert np.array_equal(rows, whole[split][:n]), (length, split)  # a prefix of the full split
            assert len(rows) == counts[length][split]
    assert [(c["length"], c["train"], c["test"], c["test_longer"]) for c in counts.values()] == [
        (1, 2, 1, 0), (2, 7, 2, 0), (3, 20, 7, 0), (4, 30, 10, 0), (5, 30, 10, 0), (6, 30, 10, 0), (7, 30, 10, 0),
        (8, 0, 0, 40)]  # L <= 3: all of 3**L (fewer than 40); then round(40 * 0.25) = 10 test, 30 train;
    # L = 8: the first 40 of the round(200 * 0.25) = 50 drawn
    mix = it.IterationTaskConfig(name="x", task="mix", min_length=8, max_length=8, max_rows_per_length=40,
                                 extrapolation_lengths=(9,))
    assert [(c["task"], c["train"], c["test"], c["test_longer"]) for c in it.length_counts(mix)] == [
        ("copy", 15, 5, 0), ("parity", 15, 5, 0), ("copy", 0, 0, 20), ("parity", 0, 0, 20)]
    few = it.IterationTaskConfig(name="x", task="cyclic3", max_length=7, examples_per_length=100,
                                 max_rows_per_length=40, extrapolation_lengths=(8,))
    assert it.length_counts(few)[-1]["test_longer"] == 25  # round(100 * 0.25) drawn, fewer than the cap
    check_rows(it.split_table(capped, "test"), capped, capped.lengths)
    with pytest.raises(ValueError, match=r"max_rows_per_length=1 is invalid: it must be an integer >= 2 \(or None"):
        it.IterationTaskConfig(name="x", task="cyclic3", max_rows_per_length=1)
    with pytest.raises(ValueError, match=r"the 'test' split would be empty.*max_rows_per_length=2\): raise "
                                         r"examples_per_length or max_rows_per_length"):
        it.IterationTaskConfig(name="x", task="mix", max_rows_per_length=2)


def test_builtin_descriptions_say_what_the_tables_are():
    """Each built-in task's line: its states × inputs, and every group / abelian / solvable claim as
    ``tasks.structure`` computes it from the table (test_task_family checks that against the groups)."""
    for name in tasks.BUILTIN_TASKS:
        line, st = it.task_description(name), tasks.structure(tasks.make_task(name))
        assert line.startswith(f"{st['states']} states × {st['inputs']} inputs; ") and "Liu et al." in line, name
        assert ("not a group" in line) == (not st["group"]), name
        if st["group"]:
            assert ("(abelian" in line) == st["abelian"] and ("non-abelian" in line) == (not st["abelian"]), name
            assert ("not solvable" in line) == (not st["solvable"]), name
            assert st["abelian"] or "solvable" in line, name  # a non-abelian group says which


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------
def inputs_by_task_length(table) -> dict[tuple[str, int], list[tuple]]:
    out: dict[tuple[str, int], list[tuple]] = {}
    for ids, length, name in zip(*(table.column(c).to_pylist() for c in ("input_ids", "length", "task"))):
        out.setdefault((name, length), []).append(tuple(ids[1:length + 1]))
    return out


@pytest.mark.parametrize("name", export_mod.ALL_CONFIGS)
def test_train_test_disjoint_and_distinct(name):
    config = small(name, examples_per_length=40)
    train = inputs_by_task_length(it.split_table(config, "train"))
    test = inputs_by_task_length(it.split_table(config, "test"))
    counts = {(c["task"], c["length"]): c for c in it.length_counts(config)}
    assert set(train) == set(counts)
    for key, c in counts.items():
        tr, te = train[key], test.get(key, [])
        assert len(set(tr)) == len(tr) == c["train"] and len(set(te)) == len(te) == c["test"]
        assert not set(tr) & set(te), f"{name} {key}: a test sequence is in train"
        assert len(tr) >= 1 and len(te) >= 1  # every length here has >= 2 sequences
        if c["available"] <= 40 * (0.5 if config.task == "mix" else 1):  # short length: all of them used
            assert len(tr) + len(te) == c["available"]


def test_split_counts_and_rounding():
    config = it.IterationTaskConfig(name="x", task="parity", max_length=3, examples_per_length=5, test_fraction=0.3)
    got = [(c["length"], c["drawn"], c["train"], c["test"]) for c in it.length_counts(config)]
    # L=1: 2 exist -> 1 / 1; L=2: 4 exist, round(1.2)=1 test; L=3: 5 drawn, round(1.5)=2 test (half up)
    assert got == [(1, 2, 1, 1), (2, 4, 3, 1), (3, 5, 3, 2)]
    mix = it.IterationTaskConfig(name="x", task="mix", min_length=8, max_length=8, examples_per_length=10,
                                 mix_ratio=0.3)
    assert [(c["task"], c["drawn"]) for c in it.length_counts(mix)] == [("copy", 3), ("parity", 7)]
    # A single drawn sequence goes to train (mix of 3: round(1.5) = 2 copy, 1 parity).
    odd = it.IterationTaskConfig(name="x", task="mix", min_length=4, max_length=4, examples_per_length=3)
    assert [(c["task"], c["train"], c["test"]) for c in it.length_counts(odd)] == [("copy", 1, 1), ("parity", 1, 0)]
    # ... and a config whose test split would be empty is refused (datasets cannot read it back).
    with pytest.raises(ValueError, match=r"the 'test' split would be empty.*examples_per_length=1"):
        it.IterationTaskConfig(name="x", task="parity", examples_per_length=1)
    with pytest.raises(ValueError, match=r"the 'test' split would be empty.*modulus=2"):
        it.IterationTaskConfig(name="x", task="polynomial", modulus=2, max_length=3)


def test_mix_with_polynomial_is_copy_plus_polynomial():
    # The same meaning as train.py's data.task=mix data.mix_with=polynomial.
    mix = it.IterationTaskConfig(name="x", task="mix", mix_with="polynomial", min_length=3, max_length=3,
                                 examples_per_length=10, mix_ratio=0.3)
    assert mix.subtasks == ("copy", "polynomial")
    assert [(c["task"], c["drawn"]) for c in it.length_counts(mix)] == [("copy", 3), ("polynomial", 7)]
    rows = it.generate_split(mix, "train")[3]
    assert set(rows[:, 0]) == {tasks.TASK_TOKEN_ID["copy"], tasks.TASK_TOKEN_ID["polynomial"]}
    with pytest.raises(ValueError, match=r"mix_with='addition' is unknown: choose one of parity, polynomial"):
        it.IterationTaskConfig(name="x", task="mix", mix_with="addition")


def test_strict_mode_names_length_and_count():
    with pytest.raises(ValueError, match=r"examples_per_length=8 asks for 8 distinct parity sequences of length 1, "
                                         r"but only 2 exist.*exhaustive_short_lengths"):
        it.IterationTaskConfig(name="x", task="parity", max_length=4, examples_per_length=8,
                               exhaustive_short_lengths=False)
    ok = it.IterationTaskConfig(name="x", task="parity", min_length=3, max_length=4, examples_per_length=8,
                                exhaustive_short_lengths=False)
    assert [c["drawn"] for c in it.length_counts(ok)] == [8, 8]
    # Exhaustive mode caps longer lengths too: 3 bits have 8 sequences, round(100 * 0.5) are asked.
    capped = it.IterationTaskConfig(name="x", task="parity", max_length=2, examples_per_length=100,
                                    extrapolation_lengths=(3,))
    assert [c["test_longer"] for c in it.length_counts(capped)] == [0, 0, 8]
    with pytest.raises(ValueError, match=r"copy sequences \(mix_ratio=0.5\) of length 2"):
        it.IterationTaskConfig(name="x", task="mix", max_length=2, min_length=2, examples_per_length=16,
                               exhaustive_short_lengths=False)


def test_extrapolation_split():
    config = small("mix", extrapolation_lengths=[9, 8])
    assert config.extrapolation_lengths == (8, 9) and config.splits == ("train", "test", "test_longer")
    longer = it.split_table(config, "test_longer")
    check_rows(longer, config, (8, 9))
    per = inputs_by_task_length(longer)
    assert {k: len(v) for k, v in per.items()} == {("copy", 8): 6, ("parity", 8): 6, ("copy", 9): 6, ("parity", 9): 6}
    assert "test_longer" not in small("parity").splits


def test_cot_and_nocot_share_inputs_and_lengths_are_independent():
    a = inputs_by_task_length(it.split_table(small("parity"), "test"))
    b = inputs_by_task_length(it.split_table(small("parity_nocot"), "test"))
    assert a == b
    longer = inputs_by_task_length(it.split_table(small("parity", max_length=8), "test"))
    assert all(longer[k] == v for k, v in a.items())  # adding lengths leaves the others alone
    other_seed = inputs_by_task_length(it.split_table(small("parity", seed=1), "test"))
    assert other_seed[("parity", 6)] != a[("parity", 6)]


def test_generate_split_rows():
    config = small("polynomial_nocot", min_length=2)  # 10 sequences at L = 1, 24 drawn from 100+ after
    rows = it.generate_split(config, "test")
    assert list(rows) == list(config.lengths)
    for length, block in rows.items():
        assert block.dtype == np.int32 and block.shape == (12, tasks.row_length(length, cot=False))
    with pytest.raises(ValueError, match="split='test_longer'"):
        it.generate_split(config, "test_longer")


def test_fresh_training_inputs_avoid_test():
    config = small("parity", examples_per_length=8)
    held_out = it.test_sequences(config)
    assert {k: len(v) for k, v in held_out.items()} == {1: 1, 2: 2, 3: 4, 4: 4, 5: 4, 6: 4}
    task, rng = config.make_task(), np.random.default_rng(0)
    for length in (1, 3, 6):
        fresh = it.sample_fresh_inputs(task, length, 500, rng, exclude=held_out[length])
        assert fresh.shape == (500, length)
        assert not set(it.sequence_keys(fresh)) & held_out[length]
    assert len({tuple(r) for r in it.sample_fresh_inputs(task, 3, 500, rng, held_out[3])}) == 4  # 8 - 4 held out
    with pytest.raises(ValueError, match="exclude holds all 2"):
        it.sample_fresh_inputs(task, 1, 5, rng, exclude=it.sequence_keys(np.array([[0], [1]])))
    mix = small("mix")
    with pytest.raises(ValueError, match="task=None is ambiguous for mix"):
        it.test_sequences(mix)
    assert set(it.test_sequences(mix, task="copy")) == set(mix.lengths)


def test_sample_unique_inputs_every_branch():
    rng = np.random.default_rng(0)
    cases = [(tasks.make_task("parity"), 10, 1000),       # small space: choose codes
             (tasks.make_task("parity"), 40, 5000),       # large: codes with replacement + dedupe
             (tasks.make_task("polynomial"), 30, 5000)]  # 10**30 > 2**62: digits + row hash
    for task, length, n in cases:
        x = tasks.sample_unique_inputs(task, length, n, rng)
        assert x.shape == (n, length) and len(np.unique(x, axis=0)) == n
        assert set(np.unique(x)) <= set(task.input_values)
    with pytest.raises(ValueError, match="only 4"):
        tasks.sample_unique_inputs(tasks.make_task("copy"), 2, 5, rng)


# ---------------------------------------------------------------------------------------------
# The builder: prepare, determinism
# ---------------------------------------------------------------------------------------------
def prepare(cache_dir, name="mix", **kwargs) -> it.IterationTasks:
    builder = it.IterationTasks(config_name=name, cache_dir=str(cache_dir), **{**SMALL, **kwargs})
    builder.download_and_prepare()
    return builder


def test_builder_matches_split_table_and_is_deterministic(tmp_path):
    a = prepare(tmp_path / "a", extrapolation_lengths=(7,))
    b = prepare(tmp_path / "b", extrapolation_lengths=(7,))
    ds = a.as_dataset()
    assert set(ds) == {"train", "test", "test_longer"}
    assert ds["train"].features == it.FEATURES
    for split in ds:
        assert ds[split].data.table.select(list(it.FEATURES)).equals(
            it.split_table(a.config, split))
    files_a = sorted(glob.glob(os.path.join(a.cache_dir, "*.arrow")))
    files_b = sorted(glob.glob(os.path.join(b.cache_dir, "*.arrow")))
    assert len(files_a) == 3 and [os.path.basename(f) for f in files_a] == [os.path.basename(f) for f in files_b]
    for fa, fb in zip(files_a, files_b):
        assert open(fa, "rb").read() == open(fb, "rb").read(), f"{fa} differs between two runs"
    other = prepare(tmp_path / "c", seed=3, extrapolation_lengths=(7,))
    assert other.as_dataset("test")["input_ids"] != ds["test"]["input_ids"]


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    (dict(task="addition"), r"task='addition' is unknown: choose one of copy, parity, polynomial, cyclic<n>.*\(or mix"),
    (dict(min_length=0), r"min_length=0 is invalid: it must be an integer >= 1"),
    (dict(max_length=0), r"max_length=0 is invalid"),
    (dict(min_length=5, max_length=3), r"min_length=5 > max_length=3"),
    (dict(modulus=1), r"modulus=1 is invalid: it must be an integer in \[2, 249\]"),
    (dict(modulus=250), r"modulus=250 is invalid: it must be an integer in \[2, 249\]"),
    (dict(examples_per_length=0), r"examples_per_length=0 is invalid: it must be an integer >= 1"),
    (dict(test_fraction=0.0), r"test_fraction=0.0 is invalid: it must be a number in the open interval \(0, 1\)"),
    (dict(test_fraction=1), r"test_fraction=1 is invalid"),
    (dict(mix_ratio=1.5), r"mix_ratio=1.5 is invalid: it must be a number in the open interval \(0, 1\)"),
    (dict(extrapolation_lengths=(16,)), r"extrapolation_lengths=16 is invalid: .* exceed max_length=16"),
    (dict(polynomial=((1, 1),)), r"polynomial=.* is invalid"),
    (dict(cot="yes"), r"cot='yes' is invalid"),
    (dict(seed=-1), r"seed=-1 is invalid"),
])
def test_bad_config_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        it.IterationTaskConfig(name="bad", **kwargs)


def test_bad_values_through_the_builder(tmp_path):
    # datasets sets overrides on a named config with setattr; the builder validates again.
    with pytest.raises(ValueError, match=r"test_fraction=2.0 is invalid"):
        it.IterationTasks(config_name="parity", cache_dir=str(tmp_path), test_fraction=2.0)
    with pytest.raises(ValueError, match=r"min_length=4 > max_length=2"):
        it.IterationTasks(config_name="copy", cache_dir=str(tmp_path), min_length=4, max_length=2)
    with pytest.raises(ValueError, match=r"length 1, but only 2 exist"):
        it.IterationTasks(config_name="parity_nocot", cache_dir=str(tmp_path), exhaustive_short_lengths=False)


# ---------------------------------------------------------------------------------------------
# The Hub layout
# ---------------------------------------------------------------------------------------------
EXPORT = dict(max_length=4, examples_per_length=12, extrapolation_lengths=(5,), test_fraction=0.5)


def test_export_loads_back_offline(tmp_path):
    out = tmp_path / "hub"
    infos = export_mod.export(str(out), ["parity", "mix_nocot"], **EXPORT)
    assert sorted(os.path.relpath(p, out) for p in glob.glob(str(out / "data/*/*.parquet"))) == [
        f"data/{c}/{s}-00000-of-00001.parquet"
        for c in ("mix_nocot", "parity") for s in ("test", "test_longer", "train")]
    assert os.path.exists(out / "tokenizer" / "tokenizer.json")
    card = (out / "README.md").read_text()
    for needle in ("config_name: parity", "path: data/parity/train-00000-of-00001.parquet", "dataset_info:",
                   "num_examples:", "arXiv:2406.02128", "@inproceedings{cabannes2024iteration",
                   "| L | parity: exist", "no test input sequence appears in train"):
        assert needle in card
    assert infos["parity"].splits["test_longer"].num_examples == 6

    ds = datasets.load_dataset(str(out), "parity", cache_dir=str(tmp_path / "cache"))
    assert set(ds) == {"train", "test", "test_longer"} and ds["train"].features == it.FEATURES
    config = small("parity", **EXPORT)
    for split in ds:
        assert ds[split]["input_ids"] == it.split_table(config, split).column("input_ids").to_pylist()
    mix = datasets.load_dataset(str(out), "mix_nocot", split="test", cache_dir=str(tmp_path / "cache"))
    assert set(mix["task"]) == {"copy", "parity"}

    again = tmp_path / "again"
    export_mod.export(str(again), ["parity", "mix_nocot"], **EXPORT)
    for path in glob.glob(str(out / "**/*.*"), recursive=True):
        assert open(path, "rb").read() == open(again / os.path.relpath(path, out), "rb").read(), path

    with pytest.raises(FileExistsError, match="overwrite"):
        export_mod.export(str(out), ["parity"], **EXPORT)
    export_mod.export(str(out), ["copy"], overwrite=True, **EXPORT)
    assert os.listdir(out / "data") == ["copy"]
    with pytest.raises(ValueError, match=r"configs=\['pairty'\] is invalid"):
        export_mod.export(str(tmp_path / "x"), ["pairty"])


def test_push_stops_before_uploading(tmp_path, monkeypatch):
    import huggingface_hub

    class NoUpload:
        def __init__(self, *a, **k):
            raise AssertionError("HfApi must not be used")

    monkeypatch.setattr(huggingface_hub, "HfApi", NoUpload)
    out = str(tmp_path / "hub")
    argv = ["--out", out, "--configs", "parity", "--max-length", "3", "--push", "--repo-id", "me/tasks"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit, match="HF_HUB_OFFLINE=1 is set.*nothing was uploaded"):
        export_mod.main(argv)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(SystemExit, match="no Hugging Face token.*nothing was uploaded"):
        export_mod.main(argv)
    assert not os.path.exists(out)  # stopped before any work
    with pytest.raises(SystemExit):
        export_mod.main(["--out", out, "--push"])  # --push needs --repo-id


def test_the_batched_builders_give_exactly_what_the_row_by_row_definitions_give():
    """Training batches are built in one pass (``build_rows_of_lengths``, ``SequenceSet.holds``, the
    vectorised ``pack_rows``); each must equal its plain definition, row for row."""
    rng = np.random.default_rng(0)
    for name, cot in (("polynomial", True), ("parity", False), ("cyclic5", True), ("copy", True)):
        task = tasks.make_task(name)
        lengths = rng.integers(1, 17, size=40)
        inputs = tasks.sample_inputs(task, 16, 40, rng)
        built = tasks.build_rows_of_lengths(task, inputs, lengths, cot)
        for row, L, x in zip(built, lengths, inputs):
            np.testing.assert_array_equal(row, tasks.build_rows(task, x[None, :L], cot)[0])
        packed = tasks.pack_rows(built)
        for i, row in enumerate(built):  # every row once, contiguous, with its own positions and mask
            at = packed["segment_ids"] == i
            np.testing.assert_array_equal(packed["input_ids"][at], row)
            np.testing.assert_array_equal(packed["position_ids"][at], np.arange(len(row)))
            np.testing.assert_array_equal(packed["loss_mask"][at], tasks.loss_mask(row))
        assert not packed["loss_mask"][packed["segment_ids"] < 0].any()
    task = tasks.make_task("parity")
    members = tasks.sample_inputs(task, 6, 20, rng)
    held = it.SequenceSet(it.sequence_keys(members))
    draw = tasks.sample_inputs(task, 6, 500, rng)
    np.testing.assert_array_equal(held.holds(draw), [k in held for k in it.sequence_keys(draw)])
    assert held.holds(members).all() and not it.SequenceSet().holds(draw).any()
    with pytest.raises(ValueError, match="one length"):
        it.SequenceSet([b"\x00", b"\x00\x01"])


def test_task_splits_mix_takes_each_half_from_its_own_config():
    """``task_splits``: a mix whose test (and test_longer) is each task's own config's, whole, and
    whose train is a prefix of each task's train part, mix_ratio of the per-length train count."""
    mix = it.IterationTaskConfig(name="m", task="mix", mix_with="polynomial", mix_ratio=0.3, task_splits=True,
                                 metadata=True, max_length=5, examples_per_length=40, extrapolation_lengths=(6,))
    for name in ("copy", "polynomial"):
        own = it.IterationTaskConfig(name=name, task=name, max_length=5, examples_per_length=40,
                                     extrapolation_lengths=(6,))
        for length in (*mix.lengths, 6):
            mine, theirs = it.split_inputs(mix, length, name), it.split_inputs(own, length)
            assert mine.keys() == theirs.keys()
            for split, rows in mine.items():
                whole = split != "train"
                assert np.array_equal(rows, theirs[split] if whole else theirs[split][:len(rows)]), (name, length)
    counts = {(c["task"], c["length"]): c["train"] for c in it.length_counts(mix)}
    assert (counts["copy", 5], counts["polynomial", 5]) == (9, 21)  # 30 train rows per length: 30% copy
    assert counts["copy", 1] == 1  # all of copy's train part where it is smaller
    table = it.split_table(mix, "train")
    assert table.schema == it.FEATURES_WITH_METADATA.arrow_schema
    assert table.column("metadata").to_pylist()[-1] == it.row_metadata(
        {"task": "polynomial", "length": 5}, mix) == {"config": "m", "task": "polynomial", "cot": True, "length": 5,
                                                      "modulus": 11, "polynomial": "s·x + 1", "states": 11,
                                                      "inputs": 10, "group": False, "seed": 0}
    for bad in (dict(task="parity"), dict(task="mix", max_rows_per_length=10)):
        with pytest.raises(ValueError, match="task_splits=True .* needs task='mix'"):
            it.IterationTaskConfig(name="x", task_splits=True, **bad)
