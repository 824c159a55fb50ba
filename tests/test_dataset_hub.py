"""The shipped dataset ``hub/iteration-head-tasks`` (``python -m datasets_builders.export --out
hub/iteration-head-tasks --overwrite``), as a user loads it offline: every config of the built-in
tasks beyond the paper's, its disjoint splits, its rows against the task's own transition function
through the shipped tokenizer, the card's table of tasks against the files, every config's
``test_longer`` (lengths 17-20; the built-in tasks' too), the paper's eight configs byte for byte as
first released and every file shipped before the built-in test_longer by sha256. Skipped when the
folder is absent.
"""

from __future__ import annotations

import collections
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

# sha256 of every other file shipped before the built-in configs got their test_longer split (issue 25
# §1): the paper's test_longer, the built-in configs' train/test and mix_polynomial. Adding a split or a
# config must leave them as they were (each length has its own random stream).
PINNED = {
    "copy/test_longer": "1f08e888eb0ab89ee09e0dc8360c2c0383c83c66859c2420127aef04550410d4",
    "parity/test_longer": "0e738109e4dd858db3457daa3df0bb43b82cd143529c684bec1aa1bcacaa7deb",
    "polynomial/test_longer": "51dfed1f14ed4fb1d931d8518112ec93a36d207f7624ca0900ed551726b96fe7",
    "mix/test_longer": "ee79e03bb30cf45eb317debe923063613c548081c9c990529f2e7bc0f45669e9",
    "copy_nocot/test_longer": "e228eab401cca67783a9470866d509b602ccde8285d53853454a9fd2a97f0d59",
    "parity_nocot/test_longer": "49b187782f92b5e7280f8f2f09171409b106288d0fddada435fbaf93ec375ad6",
    "polynomial_nocot/test_longer": "e43e6f4791ed3e97b26f6e68d1d67e813d03c77c16a28f14c83f9f8a84cafd5b",
    "mix_nocot/test_longer": "6090e4eb655363696623e034e4d31bc80132095e1834206c4b9c171cffb5ff35",
    "cyclic3/test": "669ab2c93d3e2528936985e687785e53a81524a617acf6937ce4324b4065001b",
    "cyclic3/train": "c42273e978d172e37d4c3de603b2b4127716df509f5a09843f890133ff574162",
    "cyclic5/test": "7caeae2dfba5c824f3cab67cef876de13ef457dc3eff8f99e7f9e04f16dd7411",
    "cyclic5/train": "b6937b1eccb16920f944cf45684f5acfed21b6af5f919081503af05b65f9d5b9",
    "flipflop/test": "91edca3e84bed1773e329a129619f284c181f8f017dd421f819e16f861263cfd",
    "flipflop/train": "ac4da0554a064259ec6fbbe9d51bfec91deb044d1fcbf81034fc057aafe68a18",
    "gridworld5/test": "5c7a758aec1e3c829d87fade3c0789a85fba451a84ce15f51c02bd393e9805c0",
    "gridworld5/train": "d3c485eb8cc1f04f8e81df4ea603013c74c1de69e115767c6d8e487653265593",
    "dihedral3/test": "aa9c460b5165760926472bb5e32ec9dd18b81e2827dd3aa172f601030fd33500",
    "dihedral3/train": "9f10e24ad737f6cb5d58f5772ea4da16ab7ade4d445f733f028674d2c23efd6a",
    "quaternion/test": "9ef60f22ba5baaf17eb163f82c06019460a0637dd7de09cb6e28135e94c9125f",
    "quaternion/train": "bf4c4b166374878955a04bced22b5a25197221a1723fd781dda12b9ac36446dd",
    "dihedral4/test": "8cb69bb52232b5962af8bd1201e17c7599e77acfb07e69ba53cdf809c228a351",
    "dihedral4/train": "93f8b8d9d42250441d09216acb3e25923bc7f850b93d5bfabe4d14fe8181089f",
    "alternating4/test": "846185b948e97f62f9827d030ff4ef46ca40f22d4ae1fe2285fe824536ceb8b6",
    "alternating4/train": "a25d9e267319634cc44c883010a28b1f66d20dec337c7f9c6beb15385da6dc0c",
    "symmetric4/test": "1f45b4ce50d2cb2b7c6903a3a753f385831f18dbd60391fc317a44f4125f9e51",
    "symmetric4/train": "e51ae365fdc39834cee0ba6e942801f5fb9433d8d10191d9631560c2cba3e183",
    "alternating5/test": "69db48ff20ccbece2f228681ca5675a2283bbe58b25510406bfa73957a2e8768",
    "alternating5/train": "2e8899ba032c7c33d4fd2536dfa6b739a8fcafb7886d8ba18ec46ada8f85b0d4",
    "symmetric5/test": "d919deae937d970a7857cdaad5a3cef30173c432dfcc0f37064fd3ed52be58c5",
    "symmetric5/train": "479309ab5295b9b0b6ab1491a79a146a4a8660666024ef9f039838553cf707ed",
    "random5x3/test": "6b1d4a8fe900cddfed9129cbf3a06bccaba39b373fa8ce95e5b344398fddc458",
    "random5x3/train": "7048af1f4c4c4baed7061757841de4e11957347225f8d0848f984e5fce7358dc",
    "cyclic3_nocot/test": "8a5bd934d5e908b90e14969c48aab0a2f3c3ac50666a612666e60ba88ff729b8",
    "cyclic3_nocot/train": "887fa09ab482116cabf40921aea409bdda2b1109bc95845456f996426c5f9004",
    "cyclic5_nocot/test": "dcd83d7c8a870b8c37350ad41de0853309405aabec567cf5a2b4f99bd062b06f",
    "cyclic5_nocot/train": "b9c50ad290ca58702ee014147cfa6d232df4a606e85918d77fcf09055cfa44c4",
    "flipflop_nocot/test": "bee93f2ff3718192514d52284a0d9cf777dc6a6a63276b1fff25f82c71bbe7d1",
    "flipflop_nocot/train": "82ee0ef2081eb3a285956f5926f52ae19fd8c15e6a4a87637f3cea601a6f2bb8",
    "gridworld5_nocot/test": "649f01f332e68b8ed7a2cde0be68dce284c8650d37a9852378b38258ad737680",
    "gridworld5_nocot/train": "c06b3c8a5094c88c908d0c6f8821c6eb7a5e84e065c314f5c0f2a319a3272c80",
    "dihedral3_nocot/test": "d7f82db2f124092123ff557117da8f50e60da748d86eb8f8f35833642a722f4b",
    "dihedral3_nocot/train": "391a0edfa3a4bd26991984d207cf3ae18cd2134ba26f9ae6a9c6a91e723eb8bd",
    "quaternion_nocot/test": "bfd2c4fcce2712188b7b405b09045915cf22ee5b0bc14510e04834c1745e5c6f",
    "quaternion_nocot/train": "f5e2f308a37fd4eacaed5a9403950f977d02f1c8454fdcd4a9bc680158bb95ce",
    "dihedral4_nocot/test": "0906e0cb053de7d1a987412807f2e9626cd1ea7f55a5a1acafb56ca8d30a801b",
    "dihedral4_nocot/train": "567a1be47afef4efaac6ede9d9b5076a49cf2bdc3fdf0cfb3658eb2bd8a64025",
    "alternating4_nocot/test": "0a7cee721cdd3e9e80949b6f937a943a66f0da1c1d619f9e9b58183bd51ec77b",
    "alternating4_nocot/train": "6fff652d0323b5acde57eddcc15278a4186aaaf192f8fcca891e8d658d2306b5",
    "symmetric4_nocot/test": "686f3e80a05cce92db0f92ccfa645007958fa4f6c51d05cd6efcc7aab9d3115a",
    "symmetric4_nocot/train": "c5e58df6281af7f1867d2a15f386e8185377610e884d527d9d2f11e3ccd757eb",
    "alternating5_nocot/test": "b855050969d1ea81bc76490564478cf5761d202c191e8d8e2daa9cb91f871435",
    "alternating5_nocot/train": "87ac2d132b0c14206bf23326d889b3286648d9a35797670d848c47be728a13d6",
    "symmetric5_nocot/test": "eb6c7e68b3a639bdcb784db05abefa78d52bad5a9e0c8a47664f3c9d0331decb",
    "symmetric5_nocot/train": "a6d5a64bf0b0eab37d3a8a1ace41db3eb7375224b9098cc42372c0c663949eb3",
    "random5x3_nocot/test": "8197c7f208765c6940476cc8321909921071196d8c19b23487d240da92e53c1b",
    "random5x3_nocot/train": "5f5593b69c04a5e8e23c863b628730aed6bb44a6f100bc3af6e311a3a55221c0",
    "mix_polynomial/test": "4b667483512efb38a351f437721f22bbf72fc21165b963ea970b8a39d470d93e",
    "mix_polynomial/test_longer": "e2c401446fc661ac0d9f877abefbc72fb39808ffdfeeaaa517937ffc93151eb8",
    "mix_polynomial/train": "5c944691a987fb8c3c2548e7b20ffa8edfe94384fb6bd838610f09c481d1c92b",
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


def test_every_earlier_file_is_byte_identical():
    """Every file shipped before the built-in configs' test_longer split, beyond the 16 above: the new
    split (and any later one) must not move a row of them."""
    for key, digest in PINNED.items():
        config, split = key.split("/")
        path = DATASET / parquet_path(config, split)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{path} changed"
    assert sorted(PINNED) == sorted({f"{c}/{s}" for c in BUILTIN_CONFIGS for s in ("train", "test")}
                                    | {f"{c}/test_longer" for c in ALL_CONFIGS[:8]}
                                    | {f"mix_polynomial/{s}" for s in it.SPLITS})


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
    full split a train.py run holds out; test_longer holds 256 rows at each of lengths 17-20 (a prefix of
    the uncapped config's), inside the models' 64 positions; every row decodes with the shipped tokenizer
    and spells the states of the task's own transition function."""
    ds = load(name, cache)
    config = it.IterationTasks.builder_configs[name]
    task = tasks.make_task(config.task)
    assert set(ds) == set(it.SPLITS) and ds["train"].features == ds["test_longer"].features == it.FEATURES
    full = it.IterationTaskConfig(name=name, task=config.task, cot=config.cot,  # the split train.py holds out
                                  extrapolation_lengths=it.PAPER_EXTRAPOLATION_LENGTHS)
    keys = {}
    for split in it.SPLITS:
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
    # test_longer: lengths 17-20 only (so none of its rows is a train or test row), 256 distinct each
    assert sorted(keys["test_longer"]) == list(it.PAPER_EXTRAPOLATION_LENGTHS) and not set(config.lengths) & set(
        keys["test_longer"])
    longer = ds["test_longer"].data.table.select(["input_ids", "length"]).to_pydict()
    assert max(map(len, longer["input_ids"])) <= 2 * max(it.PAPER_EXTRAPOLATION_LENGTHS) + 3 <= 64
    for length in it.PAPER_EXTRAPOLATION_LENGTHS:
        ids = np.array([r for r, L in zip(longer["input_ids"], longer["length"]) if L == length])
        assert len(ids) == len(keys["test_longer"][length]) == it.BUILTIN_MAX_ROWS_PER_LENGTH, (name, length)
        states = task.states(ids[:, 1:length + 1])  # the task's own (vectorised) states
        np.testing.assert_array_equal(ids[:, length + 2:-1], states if config.cot else states[:, -1:])
        whole = it.split_inputs(full, length)["test_longer"]  # 512 drawn, the first 256 kept
        np.testing.assert_array_equal(ids[:, 1:length + 1], whole[:it.BUILTIN_MAX_ROWS_PER_LENGTH])


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
        if task_name in tasks.BUILTIN_TASKS:  # 256 rows at each of the four test_longer lengths
            longer_rows = len(it.PAPER_EXTRAPOLATION_LENGTHS) * it.BUILTIN_MAX_ROWS_PER_LENGTH
            assert row["test_longer rows"] == f"{longer_rows:,}" == "1,024", label
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


def test_the_card_counts_quote_every_test_longer_length(cache):
    """The card's tables of sequences per length quote, for every task, the test_longer rows of each
    longer length as the files hold them (``256 (test_longer)`` for a built-in task), and how many exist."""
    lines = (DATASET / "README.md").read_text(encoding="utf-8").splitlines()
    cells = {}
    for heading in (line for line in lines if line.startswith("| L | ")):
        for row in card_table(heading):
            cells.update({(int(row["L"]), col): value for col, value in row.items() if col != "L"})
    for name in [*ALL_CONFIGS[:4], *tasks.BUILTIN_TASKS]:
        config = it.IterationTasks.builder_configs[name]
        longer = load(name, cache)["test_longer"]
        per_length = collections.Counter(zip(longer["task"], longer["length"]))
        for sub in config.subtasks:
            col = name if config.task != "mix" else f"{name}: {sub}"
            for length in it.PAPER_EXTRAPOLATION_LENGTHS:
                want = per_length[sub, length]
                if name in tasks.BUILTIN_TASKS:
                    assert want == it.BUILTIN_MAX_ROWS_PER_LENGTH
                assert cells[length, f"{col}: train / test"] == f"{want} (test_longer)", (name, sub, length)
                assert cells[length, f"{col}: exist"] == f"{config.make_task(sub).num_sequences(length):,}"


def test_every_config_and_split_loads_offline_as_the_card_lists_it(cache, monkeypatch):
    """``load_dataset(folder, config)`` with the Hub offline, for every config: the splits of the card's
    YAML and of the builder, each the builder's table (the 16 pinned files are checked byte for byte
    above), with the config's columns (``metadata`` only where the builder adds it)."""
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    card = (DATASET / "README.md").read_text(encoding="utf-8")
    assert WITH_LONGER == list(ALL_CONFIGS)  # the built-in tasks' too (issue 25 §1)
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
            assert collections.Counter(ds["test_longer"]["length"]) == {
                L: sum(c["test_longer"] for c in it.length_counts(config) if c["length"] == L)
                for L in it.PAPER_EXTRAPOLATION_LENGTHS}, name  # 256 per length in the built-in configs
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


def test_the_readme_quotes_the_dataset_as_shipped():
    """The README's sizes of the dataset: every parquet file, and the paper's eight configs' train/test."""
    import re
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8").split())
    m = re.search(r"(\d+) configs, ([\d.]+) MB \(the paper's eight train/test files byte for byte as first "
                  r"released, ([\d.]+) MB\)", readme)
    assert m, "the README's sentence on the dataset's size is gone"
    files = list((DATASET / "data").rglob("*.parquet"))
    paper = [DATASET / parquet_path(c, s) for c in ALL_CONFIGS[:8] for s in ("train", "test")]
    assert int(m.group(1)) == len(ALL_CONFIGS)
    assert m.group(2) == f"{sum(f.stat().st_size for f in files) / 1e6:.1f}"
    assert m.group(3) == f"{sum(f.stat().st_size for f in paper) / 1e6:.1f}"
