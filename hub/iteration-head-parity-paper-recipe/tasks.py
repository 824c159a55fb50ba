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

import hashlib
import itertools
import json
import os
import re
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

# Tasks with more than 57 symbols (S_5 has 120 states) extend the vocabulary *after* id 63: value
# v >= 57 is the word str(v) at id v + 7, so no existing id ever changes (the released models and
# the released dataset stay valid). A model's config records the vocabulary it was trained with.
MAX_VALUES = 249  # values 0 … 248: ids stay below 256 (sequence keys are bytes)


MAX_VOCAB_SIZE = VOCAB_SIZE + MAX_VALUES - NUM_VALUE_TOKENS  # 256: the largest extended vocabulary


def value_id(value: int) -> int:
    """The token id of value ``value``: ``value`` below 57, ``value + 7`` above (after the specials)."""
    return int(value) if value < NUM_VALUE_TOKENS else int(value) + len(SPECIAL_TOKENS)


def value_ids(n: int) -> np.ndarray:
    """The token ids of the values ``0 … n-1``."""
    if not 1 <= n <= MAX_VALUES:
        raise ValueError(f"{n} values do not fit the vocabulary: at most {MAX_VALUES}")
    return np.array([value_id(v) for v in range(n)], dtype=np.int64)


def token_text(token_id: int) -> str:
    """The word of a token id, in the base vocabulary or its extension (id 64 is ``"57"``)."""
    token_id = int(token_id)
    if 0 <= token_id < VOCAB_SIZE:
        return VOCAB[token_id]
    if VOCAB_SIZE <= token_id < MAX_VOCAB_SIZE:
        return str(token_id - len(SPECIAL_TOKENS))
    raise ValueError(f"token id {token_id} is outside the vocabulary (ids 0 … {MAX_VOCAB_SIZE - 1}, "
                     "the largest extended one)")


def vocabulary(vocab_size: int = None) -> tuple[str, ...]:
    """The words of ids ``0 … vocab_size-1``: the 64-word base vocabulary, then values 57, 58, …"""
    vocab_size = VOCAB_SIZE if vocab_size is None else int(vocab_size)
    if vocab_size < VOCAB_SIZE:
        raise ValueError(f"vocab_size={vocab_size} is smaller than the base vocabulary ({VOCAB_SIZE} ids)")
    return tuple(token_text(i) for i in range(vocab_size))


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
    ``F`` from ``t = 2`` on); copy and parity start from ``s_0 = 0``; ``start`` is ``s_0``.

    Inputs and states are written as token ids (``value_id``): below 57 a value is its own id, so
    ``table`` is indexed by id directly (rows and columns of the ids 57 … 63 are never read).
    The paper's three tasks open a row with their own token; every other task with ``<bos>``.
    """

    name: str
    input_values: tuple[int, ...]
    table: np.ndarray  # (n_states, n_inputs) -> next state, indexed by value
    first_state_is_input: bool = False
    start: int = 0

    @property
    def token_id(self) -> int:
        return TASK_TOKEN_ID.get(self.name, BOS_ID)

    @property
    def vocab_size(self) -> int:
        """Token ids a model needs for this task: 64, or more where its values go past 56."""
        return max(VOCAB_SIZE, int(self.table.shape[0]), int(self.table.shape[1]))

    @property
    def state_values(self) -> tuple[int, ...]:
        """The ids of the states reachable from ``s_0`` (or from ``s_1 = x_1``)."""
        seen = set(self.input_values) if self.first_state_is_input else {int(self.table[self.start, x]) for x in self.input_values}
        frontier = list(seen)
        while frontier:
            s = frontier.pop()
            for x in self.input_values:
                nxt = int(self.table[s, x])
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        return tuple(sorted(seen))

    @property
    def stream_id(self) -> int:
        """A stable number for random streams: the task token's id for the paper's tasks (as before),
        a digest of the name for every other task."""
        if self.name in TASK_TOKEN_ID:
            return TASK_TOKEN_ID[self.name]
        return int(hashlib.sha256(self.name.encode()).hexdigest()[:8], 16)

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
        kind = np.int16 if self.table.size < 1 << 15 else np.int32
        flat = self.table.ravel().astype(kind)  # F(s, x) = flat[s * width + x]
        xt = np.ascontiguousarray(inputs.T, dtype=kind)  # (L, n): one contiguous row per step
        out = np.empty_like(xt)
        out[0] = xt[0] if self.first_state_is_input else flat[self.start * width + xt[0]]  # F(s_0, x_1)
        for t in range(1, xt.shape[0]):
            out[t] = flat[out[t - 1] * width + xt[t]]
        return np.ascontiguousarray(out.T, dtype=inputs.dtype)

    def step(self, state: int, x: int) -> int:
        """``F(s, x)`` for one pair: the plain-Python definition tests compare against."""
        return int(self.table[state, x])


def polynomial_text(terms=DEFAULT_POLYNOMIAL) -> str:
    """``P(s, x)`` in words: ``((1, 1, 1), (0, 0, 1))`` -> ``s·x + 1`` (no terms: the default, ``s·x + 1``)."""
    def term(a: int, b: int, k: int) -> str:
        powers = [v if e == 1 else f"{v}^{e}" for v, e in (("s", a), ("x", b)) if e]
        return "·".join(([str(k)] if k != 1 or not powers else []) + powers)
    return " + ".join(term(*t) for t in (terms or DEFAULT_POLYNOMIAL))


def make_task(name: str, modulus: int = DEFAULT_MODULUS,
              polynomial: tuple[tuple[int, int, int], ...] | list = DEFAULT_POLYNOMIAL) -> Task:
    """Build a task by name. ``modulus`` and ``polynomial`` only matter for ``polynomial``.

    Besides the paper's ``copy``, ``parity`` and ``polynomial``: every family of ``FAMILIES``
    (``cyclic5``, ``dihedral4``, ``quaternion``, ``symmetric3`` … ``symmetric5``, ``alternating4``,
    ``alternating5``, ``flipflop``, ``gridworld6``, ``random5x3`` or ``random5x3s7``), and a task
    defined in a JSON or YAML file (its path; see :func:`task_from_definition`).
    """
    if name not in TASK_NAMES:
        return _other_task(name)
    if name == "copy":
        table = np.array([[0, 1], [0, 1]], dtype=np.int64)  # F(s, x) = x
        return Task("copy", (0, 1), table)
    if name == "parity":
        table = np.array([[0, 1], [1, 0]], dtype=np.int64)  # F(s, x) = s + x mod 2
        return Task("parity", (0, 1), table)
    if name == "polynomial":
        if not isinstance(modulus, (int, np.integer)) or not 2 <= modulus <= MAX_VALUES:
            raise ValueError(f"modulus p={modulus!r} is invalid: it must be an integer in [2, {MAX_VALUES}]")
        terms = [tuple(int(v) for v in term) for term in polynomial]
        if not terms or any(len(t) != 3 or t[0] < 0 or t[1] < 0 for t in terms):
            raise ValueError(f"polynomial={polynomial!r} is invalid: give (power_of_s, power_of_x, coefficient) "
                             "triples with non-negative powers")
        s = np.arange(modulus)[:, None]
        x = np.arange(modulus)[None, :]
        table = np.zeros((modulus, modulus), dtype=np.int64)
        for ps, px, c in terms:  # exact modular arithmetic, no float powers
            table = (table + c * _powmod(s, ps, modulus) * _powmod(x, px, modulus)) % modulus
        return _in_ids("polynomial", table, range(1, modulus), first_state_is_input=True)
    raise ValueError(f"task={name!r} is unknown: choose one of {', '.join(TASK_NAMES)}")


def _powmod(base: np.ndarray, exponent: int, modulus: int) -> np.ndarray:
    out = np.ones_like(base) % modulus
    for _ in range(exponent):
        out = (out * base) % modulus
    return out


# ---------------------------------------------------------------------------------------------
# Any iterative task: a transition table over values 0 … n-1, written in token ids
# ---------------------------------------------------------------------------------------------
FAMILIES = {
    "cyclic<n>": "Z_n, counting mod n: s_t = s_{t-1} + x_t mod n, inputs 0 … n-1 (cyclic2 is parity)",
    "dihedral<n>": "D_n, the 2n symmetries of an n-gon: element r^k s^f is value k + n f; s_t = s_{t-1} x_t",
    "quaternion": "Q_8 = {±1, ±i, ±j, ±k} as values 0 … 7 (1, i, j, k, -1, -i, -j, -k); s_t = s_{t-1} x_t",
    "symmetric<n>": "S_n (n = 2 … 5), permutations in lexicographic order (value 0 the identity); "
                    "s_t = s_{t-1} then x_t",
    "alternating<n>": "A_n (n = 3 … 5), the even permutations in lexicographic order; A_5 is the smallest "
                      "non-solvable group",
    "flipflop": "states 0/1, inputs 0 = read (keep), 1 = write 0, 2 = write 1 (Liu et al. 2023)",
    "gridworld<n>": "a bounded counter on 0 … n-1: input 0 steps left, 1 steps right, clipped at the ends",
    "random<n>x<k>[s<seed>]": "a random automaton: n states, k inputs, each F(s, x) uniform (seeded)",
}
# The built-in tasks beyond the paper's, one of each family, smallest to largest (the task_family experiment).
BUILTIN_TASKS = ("cyclic3", "cyclic5", "flipflop", "gridworld5", "dihedral3", "quaternion", "dihedral4",
                 "alternating4", "symmetric4", "alternating5", "symmetric5", "random5x3")
_FAMILY = re.compile(r"(cyclic|dihedral|symmetric|alternating|gridworld)(\d+)|random(\d+)x(\d+)(?:s(\d+))?")


def _in_ids(name: str, table, inputs, start: int = 0, first_state_is_input: bool = False) -> Task:
    """A task from its table over values ``0 … n-1`` (``table[s, j]`` for the ``j``-th input of
    ``inputs``, or indexed by value when the table is square over all values), written in token ids."""
    table = np.asarray(table, dtype=np.int64)
    inputs = [int(v) for v in inputs]
    by_value = table.shape[1] != len(inputs)  # a square table indexed by value (polynomial: inputs 1 … p-1)
    n = int(max(table.max() + 1, table.shape[0], max(inputs) + 1, start + 1, table.shape[1] if by_value else 0))
    ids = value_ids(n)
    full = np.zeros((int(ids[-1]) + 1,) * 2, dtype=np.int64)
    columns = list(enumerate(range(table.shape[1]))) if by_value else list(enumerate(inputs))
    for s in range(table.shape[0]):
        for j, x in columns:
            full[ids[s], ids[x]] = ids[table[s, j]]
    return Task(name, tuple(int(ids[x]) for x in inputs), full, first_state_is_input, int(ids[start]))


def _group(name: str, elements: list, multiply) -> Task:
    """The word problem of a group: the state is the running product ``s_t = s_{t-1} · x_t`` of its
    elements (value 0, the first element, is the identity and ``s_0``); every element is an input."""
    index = {e: i for i, e in enumerate(elements)}
    table = [[index[multiply(a, b)] for b in elements] for a in elements]
    return _in_ids(name, table, range(len(elements)))


def _permutations(n: int, even_only: bool = False) -> list[tuple[int, ...]]:
    perms = list(itertools.permutations(range(n)))  # lexicographic: the identity first
    if even_only:
        perms = [p for p in perms if sum(p[i] > p[j] for i in range(n) for j in range(i + 1, n)) % 2 == 0]
    return perms


def _quaternion(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """Units (sign, u) with u in 1, i, j, k = 0 … 3: (±u)(±v) by the rules i² = j² = k² = ijk = -1."""
    unit = {(0, 0): (1, 0), (0, 1): (1, 1), (0, 2): (1, 2), (0, 3): (1, 3), (1, 0): (1, 1), (2, 0): (1, 2),
            (3, 0): (1, 3), (1, 1): (-1, 0), (2, 2): (-1, 0), (3, 3): (-1, 0), (1, 2): (1, 3), (2, 3): (1, 1),
            (3, 1): (1, 2), (2, 1): (-1, 3), (3, 2): (-1, 1), (1, 3): (-1, 2)}
    sign, u = unit[a[1], b[1]]
    return (a[0] * b[0] * sign, u)


def _other_task(name: str) -> Task:
    if not isinstance(name, str):
        raise ValueError(f"task={name!r} is invalid: give a task name or the path of a task file")
    if name.endswith((".json", ".yaml", ".yml")):
        return task_from_file(name)
    m = _FAMILY.fullmatch(name)
    if name == "quaternion":
        elements = [(sign, u) for sign in (1, -1) for u in range(4)]
        return _group(name, elements, _quaternion)
    if name == "flipflop":
        return _in_ids(name, [[0, 0, 1], [1, 0, 1]], range(3))
    if m and m.group(1):
        family, n = m.group(1), int(m.group(2))
        limits = {"cyclic": (2, MAX_VALUES), "dihedral": (3, MAX_VALUES // 2), "symmetric": (2, 5),
                  "alternating": (3, 5), "gridworld": (2, MAX_VALUES)}
        low, high = limits[family]
        if not low <= n <= high:
            raise ValueError(f"task={name!r}: {family}<n> needs n in [{low}, {high}]")
        if family == "cyclic":
            return _in_ids(name, (np.arange(n)[:, None] + np.arange(n)[None, :]) % n, range(n))
        if family == "gridworld":
            return _in_ids(name, [[max(s - 1, 0), min(s + 1, n - 1)] for s in range(n)], range(2))
        if family == "dihedral":  # r^k s^f · r^l s^g = r^(k + (-1)^f l) s^(f + g)
            elements = [(k, f) for f in (0, 1) for k in range(n)]
            return _group(name, elements, lambda a, b: ((a[0] + (-1) ** a[1] * b[0]) % n, a[1] ^ b[1]))
        elements = _permutations(n, even_only=family == "alternating")
        return _group(name, elements, lambda a, b: tuple(b[a[i]] for i in range(n)))  # a, then b
    if m:
        n, k, seed = int(m.group(3)), int(m.group(4)), int(m.group(5) or 0)
        if not (1 <= n <= MAX_VALUES and 1 <= k <= MAX_VALUES):
            raise ValueError(f"task={name!r}: random<n>x<k> needs 1 <= n, k <= {MAX_VALUES}")
        table = np.random.default_rng([n, k, seed, 0x1A7E]).integers(0, n, size=(n, k))
        return _in_ids(name, table, range(k))
    known = ", ".join(TASK_NAMES + tuple(FAMILIES))
    raise ValueError(f"task={name!r} is unknown: choose one of {known}, or the path of a .json/.yaml task file")


def structure(task: Task) -> dict:
    """Simple measures of a task's complexity: ``states`` (reachable), ``inputs``, ``entries`` (states x
    inputs, the table a model must learn), and whether it is the word problem of a ``group`` (the
    inputs are the states, ``s_0`` is the identity, each row and column is a permutation, the product
    is associative), then ``abelian`` and ``solvable`` (its derived series reaches the identity);
    those two are ``None`` for a task that is not a group (an automaton, a semigroup)."""
    states, inputs = task.state_values, task.input_values
    out = {"states": len(states), "inputs": len(inputs), "entries": len(states) * len(inputs),
           "group": False, "abelian": None, "solvable": None}
    if task.first_state_is_input or set(states) != set(inputs) or task.start not in states:
        return out
    ids = list(states)
    index = {v: k for k, v in enumerate(ids)}
    m = np.array([[index[int(task.table[a, b])] for b in ids] for a in ids])  # a · b over indices
    n, e = len(ids), index[task.start]
    latin = all(sorted(row) == list(range(n)) for row in m) and all(sorted(col) == list(range(n)) for col in m.T)
    a, b, c = np.meshgrid(np.arange(n), np.arange(n), np.arange(n), indexing="ij")
    if not (latin and (m[e] == np.arange(n)).all() and (m[:, e] == np.arange(n)).all()
            and (m[m[a, b], c] == m[a, m[b, c]]).all()):
        return out
    inverse = {g: int(np.flatnonzero(m[g] == e)[0]) for g in range(n)}
    group = set(range(n))
    while len(group) > 1:  # the derived series: G, [G, G], [[G, G], [G, G]], ...
        sub = {int(m[m[inverse[x], inverse[y]], m[x, y]]) for x in group for y in group}
        while True:  # the subgroup the commutators generate
            more = sub | {int(m[x, y]) for x in sub for y in sub}
            if more == sub:
                break
            sub = more
        if sub == group:
            break
        group = sub
    return {**out, "group": True, "abelian": bool((m == m.T).all()), "solvable": len(group) == 1}


def task_from_definition(spec: dict, name: str) -> Task:
    """A task from its definition: ``inputs`` (the input values), ``table`` (one row per state, one
    next state per input, in the order of ``inputs``), and optionally ``start`` (``s_0``, default 0)
    and ``first_state_is_input`` (default false). States and inputs are values ``0 … 248``, written
    as the words ``"0"``, ``"1"``, … Example (a 3-state counter that resets on input 2)::

        {"inputs": [0, 1, 2], "table": [[0, 1, 0], [1, 2, 0], [2, 0, 0]], "start": 0}
    """
    if not isinstance(spec, dict):
        raise ValueError(f"task {name!r}: a task definition is a mapping with inputs and table, not {type(spec).__name__}")
    unknown = sorted(set(spec) - {"name", "description", "reference", "inputs", "table", "start", "first_state_is_input"})
    if unknown:
        raise ValueError(f"task {name!r}: unknown key(s) {', '.join(unknown)}: use inputs, table, start, "
                         "first_state_is_input (and name, description, reference)")
    inputs, table, start = spec.get("inputs"), spec.get("table"), spec.get("start", 0)
    if not isinstance(inputs, list) or not inputs or not all(_is_value(x) for x in inputs) or len(set(inputs)) != len(inputs):
        raise ValueError(f"task {name!r}: inputs={inputs!r} must be a non-empty list of distinct values in [0, {MAX_VALUES - 1}]")
    if (not isinstance(table, list) or not table
            or not all(isinstance(row, list) and len(row) == len(inputs) for row in table)):
        raise ValueError(f"task {name!r}: table must be a list of rows (one per state), each with one next state "
                         f"per input ({len(inputs)})")
    n = len(table)
    bad = [v for row in table for v in row if not _is_value(v) or v >= n]
    if bad:
        raise ValueError(f"task {name!r}: table entry {bad[0]!r} is not a state: states are 0 … {n - 1} (one row each)")
    if not _is_value(start) or start >= n:
        raise ValueError(f"task {name!r}: start={start!r} is not a state (0 … {n - 1})")
    first_is_input = spec.get("first_state_is_input", False)
    if not isinstance(first_is_input, bool):
        raise ValueError(f"task {name!r}: first_state_is_input={first_is_input!r} must be true or false")
    if first_is_input and max(inputs) >= n:
        raise ValueError(f"task {name!r}: first_state_is_input needs every input to be a state (0 … {n - 1})")
    return _in_ids(name, table, inputs, start, first_is_input)


def task_from_file(path: str) -> Task:
    """:func:`task_from_definition` of a JSON or YAML file (YAML needs PyYAML); the task's name is the path."""
    if not os.path.isfile(path):
        raise ValueError(f"task file {path!r} does not exist: give the path of a .json or .yaml task definition")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        if path.endswith(".json"):
            spec = json.loads(text)
        else:
            import yaml  # noqa: PLC0415 - only for YAML task files
            spec = yaml.safe_load(text)
    except Exception as err:  # json.JSONDecodeError, yaml.YAMLError
        raise ValueError(f"task file {path!r} cannot be parsed: {err}") from None
    return task_from_definition(spec, path)


def _is_value(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v < MAX_VALUES


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


def build_rows_of_lengths(task: Task, inputs: np.ndarray, lengths: np.ndarray, cot: bool = True) -> list[np.ndarray]:
    """``build_rows`` for a batch of different input lengths at once: row ``i``'s inputs are the first
    ``lengths[i]`` columns of ``inputs`` ``(n, max_length)`` (the rest is ignored). Returns the ``n``
    rows, each exactly what ``build_rows`` makes for it (a training batch is built in one pass)."""
    inputs, lengths = np.asarray(inputs, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
    n, width_in = inputs.shape
    L = lengths[:, None]
    col = np.arange(width_in)[None, :]
    inputs = np.where(col < L, inputs, task.input_values[0])  # any valid input past the row's end
    states = task.states(inputs)
    pos = np.arange(row_length(width_in, cot))[None, :]
    out = np.full((n, pos.shape[1]), PAD_ID, dtype=np.int64)
    out[:, 0] = task.token_id
    at = np.clip(pos - 1, 0, width_in - 1).repeat(n, 0)
    out = np.where((pos >= 1) & (pos <= L), np.take_along_axis(inputs, at, 1), out)
    out = np.where(pos == L + 1, EOI_ID, out)
    if cot:
        at = np.clip(pos - L - 2, 0, width_in - 1)
        out = np.where((pos >= L + 2) & (pos <= 2 * L + 1), np.take_along_axis(states, at, 1), out)
        out = np.where(pos == 2 * L + 2, EOS_ID, out)
    else:
        out = np.where(pos == L + 2, states[np.arange(n), lengths - 1][:, None], out)
        out = np.where(pos == L + 3, EOS_ID, out)
    return [out[i, :row_length(int(length), cot)] for i, length in enumerate(lengths)]


def decode(ids, vocab_size: int = VOCAB_SIZE) -> str:
    """Readable text of a row, e.g. ``"<parity> 1 0 <eoi> 1 1 <eos>"`` (padding dropped).
    ``vocab_size``: the model's vocabulary (a task with more than 57 values extends the 64 ids)."""
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:  # a negative id would silently index from the end
        raise ValueError(f"token id {bad[0]} is outside the vocabulary (ids 0 … {vocab_size - 1})")
    return " ".join(token_text(i) for i in ids if i != PAD_ID)


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
    lengths = np.fromiter((len(r) for r in rows), np.int64, len(rows))
    width = int(lengths.max())
    line_of = np.empty(len(rows), dtype=np.int64)  # the line each row goes to, and where in it
    start_in_line = np.empty(len(rows), dtype=np.int64)
    room: list[int] = []
    for i in np.argsort(-lengths, kind="stable").tolist():  # longest first; ties keep their order
        n = int(lengths[i])
        j = next((j for j, r in enumerate(room) if r >= n), None)
        if j is None:  # no line has room: open one
            j = len(room)
            room.append(width)
        line_of[i], start_in_line[i] = j, width - room[j]
        room[j] -= n
    # Every token of every row, in row order: its line, its column, its position within its row.
    ids = np.concatenate(rows).astype(np.int64, copy=False)
    row_start = np.cumsum(lengths) - lengths
    segment = np.repeat(np.arange(len(rows)), lengths)
    position = np.arange(len(ids)) - row_start[segment]
    line, column = line_of[segment], start_in_line[segment] + position
    eoi = ids == EOI_ID  # loss_mask per row: after the row's own <eoi>, not padding
    eoi_before = np.cumsum(eoi) - eoi
    after_eoi = eoi_before - (eoi_before[row_start])[segment] > 0
    out = {"input_ids": np.full((len(room), width), pad_id, dtype=np.int64),
           "position_ids": np.zeros((len(room), width), dtype=np.int64),
           "segment_ids": np.full((len(room), width), -1, dtype=np.int64),
           "loss_mask": np.zeros((len(room), width), dtype=bool)}
    out["input_ids"][line, column] = ids
    out["position_ids"][line, column] = position
    out["segment_ids"][line, column] = segment
    out["loss_mask"][line, column] = after_eoi & (ids != PAD_ID)
    return out


def loss_mask(input_ids: np.ndarray) -> np.ndarray:
    """``True`` where a *target* (the token at that position) is after ``<eoi>`` and not padding.

    The states and the closing ``<eos>`` are the only trained targets; inputs never are.
    """
    input_ids = np.asarray(input_ids)
    after_eoi = np.cumsum(input_ids == EOI_ID, axis=-1) - (input_ids == EOI_ID) > 0
    return after_eoi & (input_ids != PAD_ID)
