"""The tokenizer of the iterative tasks: one word per token over the 64-id vocabulary of ``tasks.py``.

``text`` columns of the dataset ("<parity> 1 0 <eoi> 1 1 <eos>") map to exactly the dataset's
``input_ids`` and back. It is a plain ``PreTrainedTokenizerFast`` (a ``tokenizers`` WordLevel model
with a whitespace pre-tokenizer), so a saved folder loads with ``AutoTokenizer.from_pretrained``
without custom code::

    from datasets_builders.tokenizer import build_tokenizer
    tok = build_tokenizer()
    tok.save_pretrained("runs/my_run")               # tokenizer.json + tokenizer_config.json
    tok("<parity> 1 0 <eoi> 1 1 <eos>").input_ids  # [58, 1, 0, 61, 1, 1, 62], nothing added
    tok.decode([58, 1, 0, 61, 1, 1, 62])            # "<parity> 1 0 <eoi> 1 1 <eos>"

Unknown words. The vocabulary has no ``<unk>`` on purpose: an unknown word makes the ``tokenizers``
backend raise ``Exception("WordLevel error: Missing [UNK] token from the vocabulary")`` instead of
silently mapping it to an id. That message cannot name the word (``tokenizers`` builds it, and a
plain tokenizer loaded by ``AutoTokenizer`` runs no code of ours); ``check_text`` raises a
``ValueError`` that does, and ``encode`` runs it before tokenizing.

Decoding keeps ``<pad>`` (``tok.decode`` shows what the model saw); ``tasks.decode`` drops it.
An id outside the vocabulary cannot be decoded: ``decode`` raises a ``ValueError`` naming it. (The
plain ``tok.decode`` of ``tokenizers`` skips such an id silently, and a tokenizer that loads
without custom code cannot change that: decode model outputs with ``decode``.)
"""

from __future__ import annotations

import re

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from . import tasks

__all__ = ["SPECIAL_TOKENS", "build_tokenizer", "save_tokenizer", "check_text", "encode", "decode"]

# Named special tokens; the task tokens and <eoi> are "additional" (extra) special tokens.
SPECIAL_TOKENS = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"}
EXTRA_SPECIAL_TOKENS = ["<eoi>"] + [f"<{name}>" for name in tasks.TASK_NAMES]
_SPECIAL_PATTERN = re.compile("(" + "|".join(re.escape(t) for t in tasks.SPECIAL_TOKENS) + ")")


# The context of the released models (IterGPTConfig's default n_positions); train.py passes the model's.
DEFAULT_CONTEXT = 64


def build_tokenizer(padding_side: str = "left", model_max_length: int | None = DEFAULT_CONTEXT,
                    vocab_size: int = tasks.VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """The task tokenizer: ids are ``tasks.TOKEN_TO_ID``, no token is added when encoding.

    ``vocab_size`` above 64 (a task with more than 57 values, e.g. ``symmetric5``) appends the
    values ``"57"``, ``"58"``, … at ids 64, 65, … (``tasks.vocabulary``): every base id is unchanged.

    ``padding_side`` defaults to ``"left"``: a decoder generates after the last position, which must
    be a real token (right-padded prompts would continue from ``<pad>``). ``model_max_length``: the
    model's context (what ``truncation=True`` cuts to and what tools read as the maximum length);
    ``None`` leaves transformers' "no limit" placeholder (1e30).
    """
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side={padding_side!r} is invalid: choose 'right' or 'left'")
    words = {word: i for i, word in enumerate(tasks.vocabulary(vocab_size))}
    backend = Tokenizer(models.WordLevel(vocab=words, unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # No post-processor: no BOS/EOS is inserted, the rows already carry <task> … <eos>.
    kwargs = {} if model_max_length is None else {"model_max_length": model_max_length}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        **SPECIAL_TOKENS,
        additional_special_tokens=EXTRA_SPECIAL_TOKENS,
        padding_side=padding_side,
        clean_up_tokenization_spaces=False,  # "1 0" must decode to "1 0", nothing merged
        **kwargs,
    )
    assert tokenizer.get_vocab() == words, "special tokens must not add ids"
    return tokenizer


def save_tokenizer(path: str, **kwargs) -> list[str]:
    """``build_tokenizer(**kwargs).save_pretrained(path)``; returns the written files."""
    return list(build_tokenizer(**kwargs).save_pretrained(path))


def check_text(text: str | list[str], vocab_size: int = tasks.VOCAB_SIZE) -> None:
    """Raise ``ValueError`` naming the first word of ``text`` that is not in the vocabulary."""
    known = set(tasks.vocabulary(vocab_size))
    for line in [text] if isinstance(text, str) else text:
        for piece in _SPECIAL_PATTERN.split(line):  # special tokens match even without spaces
            for word in piece.split():
                if word not in known:
                    top = vocab_size - len(tasks.SPECIAL_TOKENS) - 1
                    raise ValueError(f"unknown token {word!r} in text {line!r}: the vocabulary is the values "
                                     f"0 … {top} and {', '.join(tasks.SPECIAL_TOKENS)}")


def encode(tokenizer: PreTrainedTokenizerFast, text: str | list[str]) -> list[int] | list[list[int]]:
    """Token ids of ``text`` (one string or a list), with an error naming any unknown word."""
    check_text(text, len(tokenizer))
    return tokenizer(text)["input_ids"]


def decode(tokenizer: PreTrainedTokenizerFast, ids) -> str:
    """Text of ``ids`` (one sequence); ``ValueError`` naming the first id outside the vocabulary,
    which ``tokenizer.decode`` would drop without a word."""
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < len(tokenizer)]
    if bad:
        raise ValueError(f"token id {bad[0]} is outside the vocabulary (ids 0 … {len(tokenizer) - 1}): "
                         "it cannot be decoded; the ids do not come from this tokenizer's model")
    return tokenizer.decode(ids)
