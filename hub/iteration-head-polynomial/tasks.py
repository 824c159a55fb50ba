"""The paper's iterative tasks, the shared vocabulary and the sequence layout, in plain numpy.

This file is self-contained (numpy only) so it can ship next to a checkpoint on the Hub.

An iterative task reads inputs ``x_1 … x_L`` and keeps a state ``s_t = F(s_{t-1}, x_t)``.
One example of input length ``L`` is laid out as (positions 0-based)::

    pos:  0       1 … L        L+1     L+2 … 2L+1     2L+2
    tok:  <task>  x_1 … x_L    <eoi>   s_1 … s_L      <eos>          (chain of thought)
    tok:  <task>  x_1 … x_L    <eoi>   s_L            <eos>          (no chain of thought)

Rows of a batch are right-padded with ``<pad>``. The loss is taken only on targets after ``<eoi>``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# ---------------------------------------------------------------------------------------------
# Vocabulary: one for every task, so one model can learn several (transfer, mix).
# ---------------------------------------------------------------------------------------------
NUM_VALUE_TOKENS = 57  # value tokens "0" … "56": the largest modulus is 57
TASK_NAMES = ("copy", "parity", "polynomial")
SPECIAL_TOKENS = ("<copy>", "<parity>", "<polynomial>", "<bos>", "<eoi>", "<eos>", "<pad>")
VOCAB: tuple[str, ...] = tuple(str(v) for v in range(NUM_VALUE_TOKENS)) + SPECIAL_TOKENS
TOKEN_TO_ID: dict[str, int] = {tok: i for i, tok in enumerate(VOCAB)}
VOCAB_SIZE = len(VOCAB)  # 64

TASK_TOKEN_ID = {name: TOKEN_TO_ID[f"<{name}>"] for name in TASK_NAMES}
BOS_ID = TOKEN_TO_ID["<bos>"]
EOI_ID = TOKEN_TO_ID["<eoi>"]
EOS_ID = TOKEN_TO_ID["<eos>"]
PAD_ID = TOKEN_TO_ID["<pad>"]

DEFAULT_MODULUS = 11
# P(s, x) as (power of s, power of x, coefficient) terms; default s·x + 1.
DEFAULT_POLYNOMIAL: tuple[tuple[int, int, int], ...] = ((1, 1, 1), (0, 0, 1))


def row_length(length: int, cot: bool = True) -> int:
    """Number of tokens of one example of input length ``length`` (with ``<eos>``, no padding)."""
    return 2 * length + 3 if cot else length + 4


def dataset_config_name(task: str, cot: bool = True) -> str:
    """The dataset config of a task: ``parity`` with chain of thought, ``parity_nocot`` without."""
    return task if cot else f"{task}_nocot"


def eoi_position(length: int) -> int:
    return length + 1


@dataclass(frozen=True)
class Task:
    """One iterative task: its input alphabet and its transition table ``F[s, x]``.

    ``first_state_is_input``: the reference's polynomial task sets ``s_1 = x_1`` (and applies
    ``F`` from ``t = 2`` on); copy and parity start from ``s_0 = 0``.
    """

    name: str
    input_values: tuple[int, ...]
    table: np.ndarray  # (n_states, n_inputs) -> next state, indexed by value
    first_state_is_input: bool = False

    @property
    def token_id(self) -> int:
        return TASK_TOKEN_ID[self.name]

    def num_sequences(self, length: int) -> int:
        """How many distinct input sequences of this length exist."""
        return len(self.input_values) ** length

    def states(self, inputs: np.ndarray) -> np.ndarray:
        """States ``s_1 … s_L`` for a batch of inputs ``(n, L)``; vectorised over the batch.

        One table look-up per position on a contiguous int16 column (values and states are < 57,
        so ``s * n_inputs + x`` fits): ~0.4 s for a million rows of length 32 on one CPU core.
        """
        inputs = np.asarray(inputs)
        if inputs.shape[1] == 0:
            return np.empty_like(inputs)
        width = self.table.shape[1]
        flat = self.table.ravel().astype(np.int16)  # F(s, x) = flat[s * width + x]
        xt = np.ascontiguousarray(inputs.T, dtype=np.int16)  # (L, n): one contiguous row per step
        out = np.empty_like(xt)
        out[0] = xt[0] if self.first_state_is_input else flat[xt[0]]  # F(s_0 = 0, x_1)
        for t in range(1, xt.shape[0]):
            out[t] = flat[out[t - 1] * width + xt[t]]
        return np.ascontiguousarray(out.T, dtype=inputs.dtype)

    def step(self, state: int, x: int) -> int:
        """``F(s, x)`` for one pair: the plain-Python definition tests compare against."""
        return int(self.table[state, x])


def make_task(name: str, modulus: int = DEFAULT_MODULUS,
              polynomial: tuple[tuple[int, int, int], ...] | list = DEFAULT_POLYNOMIAL) -> Task:
    """Build a task by name. ``modulus`` and ``polynomial`` only matter for ``polynomial``."""
    if name == "copy":
        table = np.array([[0, 1], [0, 1]], dtype=np.int64)  # F(s, x) = x
        return Task("copy", (0, 1), table)
    if name == "parity":
        table = np.array([[0, 1], [1, 0]], dtype=np.int64)  # F(s, x) = s + x mod 2
        return Task("parity", (0, 1), table)
    if name == "polynomial":
        if not isinstance(modulus, (int, np.integer)) or not 2 <= modulus <= NUM_VALUE_TOKENS:
            raise ValueError(f"modulus p={modulus!r} is invalid: it must be an integer in [2, {NUM_VALUE_TOKENS}]")
        terms = [tuple(int(v) for v in term) for term in polynomial]
        if not terms or any(len(t) != 3 or t[0] < 0 or t[1] < 0 for t in terms):
            raise ValueError(f"polynomial={polynomial!r} is invalid: give (power_of_s, power_of_x, coefficient) "
                             "triples with non-negative powers")
        s = np.arange(modulus)[:, None]
        x = np.arange(modulus)[None, :]
        table = np.zeros((modulus, modulus), dtype=np.int64)
        for ps, px, c in terms:  # exact modular arithmetic, no float powers
            table = (table + c * _powmod(s, ps, modulus) * _powmod(x, px, modulus)) % modulus
        return Task("polynomial", tuple(range(1, modulus)), table, first_state_is_input=True)
    raise ValueError(f"task={name!r} is unknown: choose one of {', '.join(TASK_NAMES)}")


def _powmod(base: np.ndarray, exponent: int, modulus: int) -> np.ndarray:
    out = np.ones_like(base) % modulus
    for _ in range(exponent):
        out = (out * base) % modulus
    return out


def sample_inputs(task: Task, length: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` input sequences of ``length`` drawn uniformly with replacement, shape ``(n, length)``."""
    values = np.asarray(task.input_values, dtype=np.int64)
    return values[rng.integers(0, len(values), size=(n, length))]


def sample_unique_inputs(task: Task, length: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` *distinct* input sequences of ``length`` in random order (vectorised).

    A sequence is identified with its base-``k`` code (``k`` input values). Small spaces: choose
    ``n`` distinct codes. Large spaces: draw codes with replacement, keep first occurrences, top up.
    Astronomical spaces (``k**L >= 2**62``, e.g. polynomial inputs longer than 18): draw digits and
    deduplicate on a 64-bit hash of the row; equal rows always share a hash, so the result is
    distinct, and a rare hash collision only discards a row that gets redrawn.
    """
    total = task.num_sequences(length)
    if n > total:
        raise ValueError(f"asked for {n} unique sequences of length {length} but task {task.name!r} "
                         f"has only {total}")
    k = len(task.input_values)
    values = np.asarray(task.input_values, dtype=np.int64)
    if total <= max(4 * n, 1 << 20):
        codes = rng.choice(total, size=n, replace=False)
    elif total < 1 << 62:
        codes = np.empty(0, dtype=np.int64)
        while len(codes) < n:
            draw = rng.integers(0, total, size=int((n - len(codes)) * 1.1) + 16, dtype=np.int64)
            codes = _keep_first_unique(np.concatenate([codes, draw]))
        codes = codes[:n]
    else:
        weights = np.random.default_rng(0x1D2A).integers(1, 1 << 63, size=length, dtype=np.uint64) | np.uint64(1)
        digits = np.empty((0, length), dtype=np.int64)
        while len(digits) < n:
            draw = rng.integers(0, k, size=(int((n - len(digits)) * 1.1) + 16, length), dtype=np.int64)
            digits = np.concatenate([digits, draw])
            hashes = (digits.astype(np.uint64) * weights).sum(axis=1)  # wraps mod 2**64
            digits = digits[_first_occurrences(hashes)]
        return values[digits[:n]]
    powers = k ** np.arange(length - 1, -1, -1, dtype=np.int64)  # k**L < 2**62 on every branch here
    return values[(codes[:, None] // powers[None, :]) % k]


def _first_occurrences(keys: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct key, in their original order."""
    _, first = np.unique(keys, return_index=True)
    return np.sort(first)


def _keep_first_unique(keys: np.ndarray) -> np.ndarray:
    return keys[_first_occurrences(keys)]


def build_rows(task: Task, inputs: np.ndarray, cot: bool = True, dtype=np.int64) -> np.ndarray:
    """Token ids of the examples for ``inputs`` ``(n, L)``: ``(n, row_length(L, cot))``, no padding."""
    inputs = np.asarray(inputs, dtype=np.int64)
    n, length = inputs.shape
    states = task.states(inputs)
    answer = states if cot else states[:, -1:]
    rows = np.empty((n, row_length(length, cot)), dtype=dtype)
    rows[:, 0] = task.token_id
    rows[:, 1:length + 1] = inputs  # value v has token id v
    rows[:, length + 1] = EOI_ID
    rows[:, length + 2:-1] = answer
    rows[:, -1] = EOS_ID
    return rows


def decode(ids) -> str:
    """Readable text of a row, e.g. ``"<parity> 1 0 <eoi> 1 1 <eos>"`` (padding dropped)."""
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < VOCAB_SIZE]
    if bad:  # a negative id would silently index from the end
        raise ValueError(f"token id {bad[0]} is outside the vocabulary (ids 0 … {VOCAB_SIZE - 1})")
    return " ".join(VOCAB[i] for i in ids if i != PAD_ID)


def pad_rows(rows: list[np.ndarray], pad_id: int = PAD_ID) -> np.ndarray:
    """Right-pad rows of different lengths to the longest one: ``(n, max_len)``."""
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), pad_id, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def pack_rows(rows: list[np.ndarray], pad_id: int = PAD_ID) -> dict[str, np.ndarray]:
    """Pack rows end to end into as few lines as possible, each no longer than the longest row.

    First-fit decreasing: rows are taken longest first and each goes into the first line with room.
    Returns ``(n_lines, width)`` arrays: ``input_ids``; ``position_ids`` (restarting at 0 for each
    row, 0 on padding); ``segment_ids`` (the row's index, -1 on padding), so a model attends only
    within a row; ``loss_mask`` (``loss_mask`` of each row, False on padding). Training on the
    packed lines gives the same loss as on the padded rows, with less padding to compute.
    """
    width = max(len(r) for r in rows)
    lines: list[list[int]] = []  # row indices per line
    room: list[int] = []
    for i in sorted(range(len(rows)), key=lambda i: -len(rows[i])):  # stable: ties keep their order
        j = next((j for j, r in enumerate(room) if r >= len(rows[i])), None)
        if j is None:  # no line has room: open one
            j = len(lines)
            lines.append([])
            room.append(width)
        lines[j].append(i)
        room[j] -= len(rows[i])
    out = {"input_ids": np.full((len(lines), width), pad_id, dtype=np.int64),
           "position_ids": np.zeros((len(lines), width), dtype=np.int64),
           "segment_ids": np.full((len(lines), width), -1, dtype=np.int64),
           "loss_mask": np.zeros((len(lines), width), dtype=bool)}
    for j, members in enumerate(lines):
        at = 0
        for i in members:
            n = len(rows[i])
            out["input_ids"][j, at:at + n] = rows[i]
            out["position_ids"][j, at:at + n] = np.arange(n)
            out["segment_ids"][j, at:at + n] = i
            out["loss_mask"][j, at:at + n] = loss_mask(rows[i])
            at += n
    return out


def loss_mask(input_ids: np.ndarray) -> np.ndarray:
    """``True`` where a *target* (the token at that position) is after ``<eoi>`` and not padding.

    The states and the closing ``<eos>`` are the only trained targets; inputs never are.
    """
    input_ids = np.asarray(input_ids)
    after_eoi = np.cumsum(input_ids == EOI_ID, axis=-1) - (input_ids == EOI_ID) > 0
    return after_eoi & (input_ids != PAD_ID)
