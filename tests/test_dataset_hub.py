"""The shipped dataset ``hub/iteration-head-tasks`` (``python -m datasets_builders.export --out
hub/iteration-head-tasks --overwrite``), as a user loads it offline: every config of the built-in
tasks beyond the paper's, its disjoint splits, its rows against the task's own transition function
through the shipped tokenizer, the card's table of tasks against the files, and the paper's eight
configs byte for byte as first released. Skipped when the folder is absent.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

import datasets
from datasets_builders import iteration_tasks as it
from datasets_builders import tasks
from datasets_builders.export import ALL_CONFIGS, parquet_path

DATASET = Path(__file__).resolve().parents[1] / "hub" / "iteration-head-tasks"
pytestmark = [pytest.mark.hub, pytest.mark.skipif(not DATASET.is_dir(), reason=f"{DATASET} is absent: make it with "
                                                  "`python -m datasets_builders.export --out hub/iteration-head-tasks`")]
datasets.disable_progress_bars()

BUILTIN_CONFIGS = [tasks.dataset_config_name(t, cot) for cot in (True, False) for t in tasks.BUILTIN_TASKS]

# sha256 of the paper's eight configs as first released (commit 400a16d and before): adding configs
# must leave every byte of them as it was.
RELEASED = {
    "copy/test": "86dbae90f7887bb103d92a56b4422b4a9c018a2896de87bb22c04b16045b6092",
    "copy/train": "00874cd471e447fb8795d1f856bc7f3701d773de3948426346c2cc952ef766c6",
    "copy_nocot/test": "e9d57cd5abaeb8780a4667dbdf1e067261d29f01928d409f0a91f7f224fda079",
    "copy_nocot/train": "536e0e42484830eda36855aee64363dc37c313382083163b77b689e83e987180",
    "mix/test": "c8faceedaba296a843159b4331cb7d44bd7fe02f1f2bd89b22fb97cd938dc029",
    "mix/train": "f52bb90d721e5c5e388f48fe70993e3fcf00eaeacaa32cd31fd98c7723f613e6",
    "mix_nocot/test": "69f6c5f9f59f84161ffb95188205b0967a88025e99b3b060b1f07bdeb0339fba",
    "mix_nocot/train": "801c46ba8bd043f1e14ef1e2f7d6f22511eac0d4b86c2e95524dfaa75305e336",
    "parity/test": "ad017ce13145c51f530ca7e1f72ce2c59dd27c8ea689f2674f83afc4db56a6bd",
    "parity/train": "3fc6c873683a6cec75911ed673dd3be0bf8ae7dbf043a06aa60bb721092c10f5",
    "parity_nocot/test": "f4acba85cda65d29e40f8cd2eab3fe19bb2545251c5ce252ad692038a6dc968f",
    "parity_nocot/train": "f598345cc8b8cb03a5f0d6e28edbe09284e2bd6578dde2c90bc9456bd8256aed",
    "polynomial/test": "6b1dd9798ea81da55bcc120525580cb9ad745159d1fb8057a05b46b3eb33f378",
    "polynomial/train": "dcec620c82975814796ccb9db98e05c39f30a9d33f81c2ba49d57108bc963999",
    "polynomial_nocot/test": "6bb9bf7761489b8e7a0b9c041c84e6e21c3d5640d233714faf4fce2b3a3ed865",
    "polynomial_nocot/train": "63d1194793515dc553406b65c431c8c55e2024ecdecb7fc5a060e38245dd6464",
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("hf_datasets_cache"))


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(DATASET / "tokenizer"))


def load(config: str, cache: str) -> datasets.DatasetDict:
    return datasets.load_dataset(str(DATASET), config, cache_dir=cache)


def card_table(heading_row: str) -> list[dict[str, str]]:
    """The card's markdown table whose header starts with ``heading_row``, as dicts by column."""
    lines = (DATASET / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading_row))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def test_every_named_config_is_shipped():
    card = (DATASET / "README.md").read_text(encoding="utf-8")
    for name in ALL_CONFIGS:
        assert f"config_name: {name}\n" in card, name
        for split in ("train", "test"):
            assert (DATASET / parquet_path(name, split)).is_file(), (name, split)
    assert sorted(p.name for p in (DATASET / "data").iterdir()) == sorted(ALL_CONFIGS)


def test_the_paper_configs_are_byte_identical_to_their_release():
    for key, digest in RELEASED.items():
        config, split = key.split("/")
        path = DATASET / parquet_path(config, split)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{path} changed since its release"
    assert sorted(RELEASED) == sorted(f"{c}/{s}" for c in ALL_CONFIGS[:8] for s in ("train", "test"))


def test_the_shipped_tokenizer_covers_every_task_and_moves_no_id(tokenizer):
    vocab = tokenizer.get_vocab()
    largest = max(tasks.make_task(t).vocab_size for t in tasks.TASK_NAMES + tasks.BUILTIN_TASKS)
    assert largest == tasks.make_task("symmetric5").vocab_size == 127
    assert len(tokenizer) == largest and vocab == {w: i for i, w in enumerate(tasks.vocabulary(largest))}
    assert {w: vocab[w] for w in tasks.VOCAB} == tasks.TOKEN_TO_ID  # the 64 base ids, unchanged
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (
        tasks.BOS_ID, tasks.EOS_ID, tasks.PAD_ID)


@pytest.mark.parametrize("name", BUILTIN_CONFIGS)
def test_builtin_config_loads_offline_with_disjoint_splits_and_the_tasks_states(name, cache, tokenizer):
    """Loads with ``load_dataset`` (no code); train and test are disjoint per length and a prefix of the
    full split a train.py run holds out; every row decodes with the shipped tokenizer and spells the
    states of the task's own transition function."""
    ds = load(name, cache)
    config = it.IterationTasks.builder_configs[name]
    task = tasks.make_task(config.task)
    assert set(ds) == {"train", "test"} and ds["train"].features == it.FEATURES
    full = it.IterationTaskConfig(name=name, task=config.task, cot=config.cot)  # the split train.py holds out
    keys = {}
    for split in ("train", "test"):
        table = ds[split].data.table.select(list(it.FEATURES))
        assert table.equals(it.split_table(config, split)), f"{name}/{split}: the files are not the builder's"
        columns = table.to_pydict()
        texts, ids_list = columns["text"], columns["input_ids"]
        assert tokenizer(texts)["input_ids"] == ids_list
        assert tokenizer.batch_decode(ids_list) == texts
        keys[split] = {}
        for ids, length, label in zip(ids_list, columns["length"], columns["task"]):
            assert label == config.task and ids[0] == tasks.BOS_ID and ids[length + 1] == tasks.EOI_ID
            xs, s, states = ids[1:length + 1], task.start, []
            for x in xs:  # F, one plain-Python step at a time
                assert x in task.input_values
                s = task.step(s, x)
                states.append(s)
            assert ids[length + 2:-1] == (states if config.cot else states[-1:]) and ids[-1] == tasks.EOS_ID
            keys[split].setdefault(length, set()).add(tuple(xs))
    for length in config.lengths:
        train, test = keys["train"][length], keys["test"][length]
        assert train and test and not train & test, f"{name} L={length}: a test sequence is in train"
        held_out = {tuple(r) for r in it.split_inputs(full, length)["test"]}
        assert test <= held_out, f"{name} L={length}: a test row is not held out at the defaults"


def test_the_card_table_of_tasks_matches_the_data(cache):
    rows = card_table("| task | configs |")
    by_task = {r["task"]: r for r in rows}
    assert list(by_task) == ["copy", "parity", "polynomial", "mix (copy + parity)", *tasks.BUILTIN_TASKS,
                             "mix (copy + polynomial)"]
    for label, row in by_task.items():
        names = re.findall(r"`([^`]+)`", row["configs"])
        task_name = label.split(" ")[0]
        assert names == (["mix_polynomial"] if label == "mix (copy + polynomial)" else [task_name, f"{task_name}_nocot"])
        loaded = [load(n, cache) for n in names]
        for split in ("train", "test", "test_longer"):
            want = row[f"{split} rows"].replace(",", "")
            assert {len(d[split]) if split in d else "–" for d in loaded} == {int(want) if want != "–" else want}, (
                label, split)
        if task_name == "mix":
            halves = set(label[len("mix ("):-1].split(" + "))
            assert set(loaded[0]["test"].data.column("task").to_pylist()) == halves
            continue
        task = tasks.make_task(task_name)
        st = tasks.structure(task)
        assert [int(row[k].replace(",", "")) for k in ("states", "inputs", "table entries (states × inputs)")] == [
            st["states"], st["inputs"], st["states"] * st["inputs"]]
        assert row["group (order)"] == (f"yes ({st['states']})" if st["group"] else "no")
        for key in ("abelian", "solvable"):
            assert row[key] == {None: "–", True: "yes", False: "no"}[st[key]], (label, key)
        # The data agree: inputs and states seen are the task's (every one of them, for the CoT config).
        seen_x, seen_s = set(), set()
        both = [loaded[0][split].data.table.select(["input_ids", "length"]).to_pydict() for split in ("train", "test")]
        for ids, length in zip(both[0]["input_ids"] + both[1]["input_ids"], both[0]["length"] + both[1]["length"]):
            seen_x.update(ids[1:length + 1])
            seen_s.update(ids[length + 2:-1])
        assert seen_x == set(task.input_values) and seen_s == set(task.state_values), label


# ------------------------------------------------------------------------------------ the verifier
@pytest.mark.parametrize("name", ["parity", "polynomial_nocot", "mix", "symmetric5"])
def test_score_accepts_every_shipped_answer_and_rejects_a_changed_one(name, cache):
    """``it.score`` on the rows as ``load_dataset`` returns them: the ``completion`` column (text), the
    answer ids, a whole row (prompt + answer) and a padded generation score 1.0; one state changed,
    ``<eos>`` missing or an extra token before it scores 0.0."""
    ds = datasets.load_dataset(str(DATASET), name, split="test", cache_dir=cache)
    assert all(it.score(row, row["completion"]) == 1.0 for row in ds)
    assert all(it.score(row, row["input_ids"]) == 1.0 for row in ds)  # a whole generate() output
    row = ds[len(ds) - 1]
    ids = row["input_ids"]
    eoi = ids.index(tasks.EOI_ID)
    answer = ids[eoi + 1:]
    assert it.score(row, answer + [tasks.PAD_ID] * 3) == 1.0 == it.score(row["input_ids"], answer)
    assert it.score(row, answer + [5, 6]) == 1.0  # after the first <eos>: ignored
    values = sorted(set(ids[1:eoi]) | set(answer[:-1]))
    other = next(v for v in values + [0, 1] if v != answer[0])
    assert it.score(row, [other] + answer[1:]) == 0.0
    assert it.score(row, answer[:-1]) == 0.0  # no <eos>
    assert it.score(row, answer[:-1] + [answer[0], tasks.EOS_ID]) == 0.0
    assert it.score(row, "") == 0.0 and it.score(row, []) == 0.0
    assert it.score(row, " ".join(tasks.token_text(t) for t in answer)) == 1.0


def test_score_names_a_malformed_row_or_completion():
    row = {"input_ids": [58, 1, 0, 61, 1, 1, 62], "length": 2, "task": "parity"}
    assert it.score(row, "1 1 <eos>") == 1.0 and it.score(row, "1 0 <eos>") == 0.0
    for bad_row, message in [
        ({"text": "<parity> 1 <eoi> 1 <eos>"}, "malformed row"),
        ("<parity> 1 <eoi> 1 <eos>", "malformed row: expected a dataset row"),
        ([58, 1, 0, 1, 1, 62], "one <eoi> and one final <eos>"),
        ([58, 1, 0, 61, 1, 1], "one <eoi> and one final <eos>"),
        ([58, 1, 0, 61, 1, 62, 1, 62], "one <eoi> and one final <eos>"),
        ([58, 1, 0, 1, 61, 1, 1, 62], "3 inputs but 2 answer tokens"),
        ({**row, "length": 3}, "its 'length' is 3 but its input_ids hold 2 inputs"),
        ([58, 1, 999, 61, 1, 62], "outside the vocabulary"),
        ([58, 1.5, 61, 1, 62], "must be whole numbers"),
    ]:
        with pytest.raises(ValueError, match=message):
            it.score(bad_row, "1 <eos>")
    for bad, message in [("1 one <eos>", "'one' is not a word of the vocabulary"),
                         ([1, 300, 62], "outside the vocabulary"), ([1, -1], "outside the vocabulary"),
                         (["1", "<eos>"], "token ids must be whole numbers"), (7, "expected token ids or the answer"),
                         (None, "expected token ids or the answer")]:
        with pytest.raises(ValueError, match=f"malformed completion.*{message}"):
            it.score(row, bad)


def test_the_card_documents_the_verifier():
    card = (DATASET / "README.md").read_text(encoding="utf-8")
    assert "## Scoring a completion" in card and "from datasets_builders.iteration_tasks import score" in card


# ------------------------------------------ test_longer, the polynomial recipe's mix, per-row metadata
WITH_LONGER = [name for name in ALL_CONFIGS if it.IterationTasks.builder_configs[name].extrapolation_lengths]


def test_every_config_and_split_loads_offline_as_the_card_lists_it(cache, monkeypatch):
    """``load_dataset(folder, config)`` with the Hub offline, for every config: the splits of the card's
    YAML and of the builder, each the builder's table (the 16 pinned files are checked byte for byte
    above), with the config's columns (``metadata`` only where the builder adds it)."""
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    card = (DATASET / "README.md").read_text(encoding="utf-8")
    assert WITH_LONGER == [*ALL_CONFIGS[:8], "mix_polynomial"]
    for name in ALL_CONFIGS:
        config = it.IterationTasks.builder_configs[name]
        ds = load(name, cache)
        assert tuple(ds) == config.splits, name
        for split in config.splits:
            assert f"  - split: {split}\n    path: {parquet_path(name, split)}\n" in card, (name, split)
            assert ds[split].features == config.dataset_features, (name, split)
            if split == "test_longer" or name == "mix_polynomial":
                assert ds[split].data.table.equals(it.split_table(config, split)), f"{name}/{split}: not the builder's"
        if "test_longer" in ds:
            assert sorted(set(ds["test_longer"]["length"])) == list(it.PAPER_EXTRAPOLATION_LENGTHS)
            assert max(len(ids) for ids in ds["test_longer"]["input_ids"]) <= 64  # in the models' context


def _rows(ds) -> list[tuple]:
    return [tuple(ids) for ids in ds["input_ids"]]


def test_mix_polynomial_holds_out_exactly_the_splits_the_recipe_and_the_models_were_evaluated_on(cache):
    """The polynomial recipe's data (copy + polynomial, 30% copy): its test and test_longer are the
    released copy and polynomial ones row for row, which is what a run of the recipe holds out
    (``run_split_config`` of the released model's ``train_config.yaml``) and what its card's numbers
    were measured on; its train rows are train rows of those configs, never a test row."""
    import yaml

    mix = load("mix_polynomial", cache)
    parts = {name: load(name, cache) for name in ("copy", "polynomial")}
    released = yaml.safe_load((DATASET.parent / "iteration-head-polynomial" / "train_config.yaml").read_text())["data"]
    assert (released["task"], released["mix_with"], released["mix_ratio"], released["modulus"]) == (
        "mix", "polynomial", 0.3, 11)
    for split in ("test", "test_longer"):
        for name, ds in parts.items():
            mine = mix[split].filter(lambda row: row["task"] == name)
            assert _rows(mine) == _rows(ds[split]), (split, name)
            if split == "test":
                held_out = it.run_split_config(released, name)
                expected = [tuple(r) for L in held_out.lengths for r in
                            tasks.build_rows(tasks.make_task(name, 11), it.split_inputs(held_out, L)["test"], True)]
                assert _rows(mine) == expected, f"{name}: not the test split the polynomial run held out"
    for name, ds in parts.items():
        train = set(_rows(mix["train"].filter(lambda row: row["task"] == name)))
        assert train <= set(_rows(ds["train"])) and not train & set(_rows(ds["test"])), name
    lengths = np.array(mix["train"]["length"])
    is_copy = np.array(mix["train"]["task"]) == "copy"
    for L in range(10, 17):  # where both train parts are large enough: the recipe's 30%
        assert (is_copy[lengths == L].sum(), (~is_copy[lengths == L]).sum()) == (461, 1075), L


def test_metadata_column_and_row_metadata_agree_on_every_config(cache):
    """``mix_polynomial``'s ``metadata`` column is ``row_metadata(row, config)``; for the pinned paper
    configs and the built-in tasks, ``row_metadata`` derives the same parameters from the row."""
    mix = load("mix_polynomial", cache)
    for split in mix:
        rows = mix[split].select_columns(["task", "length", "metadata"]).to_list()
        assert all(row["metadata"] == it.row_metadata(row, "mix_polynomial") for row in rows), split
    assert it.row_metadata(mix["test"][0], "mix_polynomial") == {
        "config": "mix_polynomial", "task": "copy", "cot": True, "length": 1, "modulus": None, "polynomial": None,
        "states": 2, "inputs": 2, "group": False, "seed": 0}
    poly = datasets.load_dataset(str(DATASET), "polynomial_nocot", split="test_longer", cache_dir=cache)[0]
    assert it.row_metadata(poly, "polynomial_nocot") == {
        "config": "polynomial_nocot", "task": "polynomial", "cot": False, "length": 17, "modulus": 11,
        "polynomial": "s·x + 1", "states": 11, "inputs": 10, "group": False, "seed": 0}
    assert it.row_metadata(load("symmetric5", cache)["test"][0], "symmetric5")["group"] is True
    parity = load("mix", cache)["train"].to_list()
    assert {it.row_metadata(r, "mix")["task"] for r in parity} == {"copy", "parity"}
    with pytest.raises(ValueError, match="not a task of config 'parity'"):
        it.row_metadata({"task": "copy", "length": 3}, "parity")
    with pytest.raises(ValueError, match="not a named config"):
        it.row_metadata(parity[0], "pairty")
    card = (DATASET / "README.md").read_text(encoding="utf-8")
    assert "row_metadata(row, \"parity\")" in card and "The config `mix_polynomial` holds it in a `metadata` column" in card


def test_the_polynomial_recipe_trains_from_the_released_mix_polynomial_config():
    """``data.dataset`` with copy + polynomial reads ``mix_polynomial``: the same held-out rows as the
    builder's split of the polynomial recipe, and train rows that are none of them; another p is refused."""
    from training.config import ConfigError, compose, validate
    from training.data import TaskData
    cfg = compose(["recipe=polynomial", f"data.dataset={DATASET}", "data.source=fixed"])
    released, built = TaskData(cfg), TaskData(compose(["recipe=polynomial"]))
    assert released.splits["test"].keys() == built.splits["test"].keys()
    for key, rows in built.splits["test"].items():
        np.testing.assert_array_equal(released.splits["test"][key], rows)
        trained = {r.tobytes() for r in released.splits["train"][key]}
        assert trained and not trained & {r.tobytes() for r in rows}
    with pytest.raises(ConfigError, match="mix_polynomial"):
        validate(compose(["recipe=polynomial", f"data.dataset={DATASET}", "data.modulus=7"]))
