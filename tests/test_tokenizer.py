"""The task tokenizer: text <-> the dataset's input_ids, saved and loaded with AutoTokenizer."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from datasets_builders import iteration_tasks as it
from datasets_builders import tasks
from datasets_builders.tokenizer import build_tokenizer, check_text, encode, save_tokenizer


@pytest.fixture(scope="module")
def rows():
    """Rows of every task of the 64-id vocabulary, with and without CoT, and a polynomial with large
    values (p = 57). (A_5 and S_5 need more ids: their rows and the shipped tokenizer that covers them
    are tested in test_dataset_hub.py.)"""
    configs = [it.IterationTaskConfig(name=n, task=c.task, cot=c.cot, max_length=5, examples_per_length=6)
               for n, c in it.IterationTasks.builder_configs.items()
               if max(c.make_task(t).vocab_size for t in c.subtasks) == tasks.VOCAB_SIZE]
    configs.append(it.IterationTaskConfig(name="p57", task="polynomial", modulus=57, max_length=5,
                                          examples_per_length=6))
    return [r for c in configs for r in it.split_table(c, "train").to_pylist()]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    save_tokenizer(str(folder))
    return str(folder)


def test_round_trip_matches_dataset(rows):
    tok = build_tokenizer()
    assert isinstance(tok, PreTrainedTokenizerFast) and len(tok) == tasks.VOCAB_SIZE == 64
    assert tok.get_vocab() == tasks.TOKEN_TO_ID
    texts = [r["text"] for r in rows]
    assert tok(texts)["input_ids"] == [r["input_ids"] for r in rows]  # nothing added (no BOS/EOS)
    assert tok.batch_decode([r["input_ids"] for r in rows]) == texts
    assert tok.decode(tok("<parity> 1 0 <eoi> 1 1 <eos>").input_ids) == "<parity> 1 0 <eoi> 1 1 <eos>"


def test_special_tokens():
    tok = build_tokenizer()
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (tasks.BOS_ID, tasks.EOS_ID, tasks.PAD_ID)
    assert set(tok.all_special_ids) == {57, 58, 59, 60, 61, 62, 63}
    assert tok.convert_tokens_to_ids("<eoi>") == tasks.EOI_ID
    assert tok.decode([58, 1, 61, 1, 62, 63], skip_special_tokens=True) == "1 1"
    assert tok("<polynomial>10 3<eoi>").input_ids == [59, 10, 3, 61]  # special tokens split without spaces


def test_autotokenizer_loads_saved_folder(saved, rows):
    tok = AutoTokenizer.from_pretrained(saved)
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert tok([r["text"] for r in rows])["input_ids"] == [r["input_ids"] for r in rows]
    assert tok.decode(rows[0]["input_ids"]) == rows[0]["text"]
    assert (tok.pad_token, tok.eos_token, tok.bos_token) == ("<pad>", "<eos>", "<bos>")


@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_side(side, tmp_path):
    save_tokenizer(str(tmp_path), padding_side=side)
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    batch = tok(["<parity> 1 <eoi> 1 <eos>", "<parity> 1 0 <eoi> 1 1 <eos>"], padding=True)
    short = [58, 1, 61, 1, 62]
    assert batch["input_ids"][0] == (short + [63, 63] if side == "right" else [63, 63] + short)
    assert batch["attention_mask"][0] == ([1] * 5 + [0, 0] if side == "right" else [0, 0] + [1] * 5)
    with pytest.raises(ValueError, match="padding_side='middle' is invalid"):
        build_tokenizer(padding_side="middle")


def test_unknown_token_is_an_error(saved):
    tok = AutoTokenizer.from_pretrained(saved)
    for text in ("<parity> 1 x <eoi>", "<parity> 57 <eoi>", "<unk>"):
        # The plain tokenizer raises (tokenizers' own message, which cannot name the word) ...
        with pytest.raises(Exception, match=r"Missing \[UNK\] token"):
            tok(text)
    # ... and check_text / encode name it.
    with pytest.raises(ValueError, match=r"unknown token 'x' in text '<parity> 1 x <eoi>'"):
        encode(tok, "<parity> 1 x <eoi>")
    with pytest.raises(ValueError, match=r"unknown token '57'"):
        check_text(["<parity> 1 <eoi> 1 <eos>", "<parity>57<eoi>"])
    assert encode(tok, ["<copy> 1 <eoi> 1 <eos>"]) == [[57, 1, 61, 1, 62]]


def test_decode_of_an_id_outside_the_vocabulary_is_an_error(saved):
    """The plain tokenizer drops id 99 silently (what `decode` exists for); ours names it."""
    from datasets_builders.tokenizer import decode

    tok = AutoTokenizer.from_pretrained(saved)
    assert tok.decode([58, 1, 99, 61, 1, 62]) == "<parity> 1 <eoi> 1 <eos>"  # the silent loss
    assert decode(tok, [58, 1, 61, 1, 62]) == "<parity> 1 <eoi> 1 <eos>"
    for bad in (99, 64, -1):
        with pytest.raises(ValueError, match=f"token id {bad} is outside the vocabulary"):
            decode(tok, [58, 1, bad, 61, 1, 62])
        with pytest.raises(ValueError, match=f"token id {bad} is outside the vocabulary"):
            tasks.decode([58, 1, bad])
