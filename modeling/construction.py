"""The paper's iteration head, written by hand: a 2-layer, 1-head IterGPT that solves copy, parity
and polynomial iteration exactly, with no training (Cabannes et al., *Iteration Head: A Mechanistic
Study of Chain-of-Thought*, NeurIPS 2024, arXiv:2406.02128, the two-layer construction of Figure 5).

``build_iteration_head_model("parity")`` returns an ordinary :class:`IterGPTForCausalLM` (standard
pre-norm blocks, learned position table, ReLU MLPs, no biases, dropout 0): it saves and loads with
``save_pretrained`` / ``from_pretrained`` and is analysed like any trained checkpoint.

Sequence of input length ``L`` (0-based)::

    pos:  0       1 … L        e = L+1   L+2 … 2L+1    2L+2
    tok:  <task>  x_1 … x_L    <eoi>     s_1 … s_L     <eos>

Standing at query position ``q >= e`` the model must write token ``q + 1``: ``s_t`` with
``t = q - e + 1`` (``s_1`` at ``q = e``), and ``<eos>`` at ``q = 2L+1``. The trick for the end: the
position ``t = q - e + 1`` that the iteration head reads is ``x_t`` for ``t <= L`` and, at
``q = 2L+1``, it is ``t = L+1 = e``: the ``<eoi>`` token itself. "Copied ``<eoi>``" means "done",
so the model needs no counter to know that it has reached the end.

Residual stream (``n_embd = 200``; positions scaled ``u(p) = p / N`` with ``N = n_positions``)::

    dim        holds                                  written by
    0  ONE     +M (a constant, M = 1e4)               position embedding
    1  NEG     -M                                     position embedding
    2  BAL     minus the sum of every content dim      every writer (see "norms" below)
    3  POS     u(p)                                   position embedding
    4  POS_SQ  u(p)^2                                 position embedding
    5  EOI_POS u(e): where <eoi> is                   layer-1 attention (head 0 of block 0)
    6  OFFSET  u(t) = u(p) - u(e) + 1/N               layer-1 MLP (one ReLU unit)
    7 …70      TOK: one-hot of the current token      token embedding
    71…134     COPY: one-hot of the copied token      layer-2 attention (the iteration head)
    135…198    OUT: one-hot of the next token         layer-2 MLP; lm_head reads it (× LOGIT)
    199        unused (an even width makes CPU matmuls ~2x faster than 199)

The four steps of the construction (the paper's Figure 5):

1. Layer-1 attention. Query = constant, key = ``[token is <eoi>]``: every position after
   ``<eoi>`` attends to it (logit gap ``GAP``) and copies its position ``u(e)`` into EOI_POS.
2. Layer-1 MLP. One unit ``ReLU(u(p) - u(e) + 1/N)`` = ``u(t)`` (positive for every ``p >= e``).
3. Layer-2 attention, the iteration head. Score of key ``k`` from a query holding ``t``:
   ``GAP * (2 t k - k^2) = GAP * (t^2 - (k - t)^2)`` (a bilinear form: query ``(2 u(t), -1)``,
   key ``(u(k), u(k)^2)``, scaled by ``GAP N^2``): maximal at ``k = t`` with a margin of ``GAP``
   to its neighbours. The value copies the key's token one-hot into COPY.
4. Layer-2 MLP, an exact lookup table: one unit per (current token ``a``, copied input ``b``),
   ``ReLU(2 [TOK=a] + 2 [COPY=b] - 3)`` is 1 when both hold and 0 otherwise (margin 1); it writes
   ``F(a, b)`` into OUT. ``a = <eoi>`` plays ``s_0`` (for polynomial iteration it writes
   ``s_1 = x_1``); one more unit ``ReLU(2 [COPY=<eoi>] - 1)`` writes ``<eos>``.

Norms (LayerNorm or RMSNorm) are made harmless, not removed:

- every writer also writes minus the sum of what it writes into BAL, so the mean over dims is 0
  and LayerNorm's centring does nothing (LayerNorm then equals RMSNorm);
- the constant pair ``±M`` dominates the norm (content is O(1), ``M = 1e4``), so every norm divides
  by the same ``R = M sqrt(2 / n_embd)`` up to ~1e-7 relative; the norm weights are ``R`` (``R / M``
  on ONE and NEG), which gives back ``x`` with ONE reading ``1``: a bias dimension for the readers.

The arithmetic needs float32 (or float64): in bfloat16 the position arithmetic fails on long
inputs (at ``L = 20`` with ``n_positions = 64``) and in float16 ``M^2`` overflows inside the norm.

Nothing reads BAL or NEG. Positions before ``<eoi>`` compute garbage in EOI_POS / OFFSET / COPY /
OUT; that is harmless because their predictions are never scored and layer 2 reads keys (POS,
POS_SQ) and values (TOK) only from dims that the embeddings wrote.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from datasets_builders import tasks

from .configuration_itergpt import IterGPTConfig
from .modeling_itergpt import IterGPTForCausalLM

__all__ = ["build_iteration_head_model", "LAYOUT"]

V = tasks.VOCAB_SIZE  # 64 (a task with more than 57 values widens every one-hot block to its vocabulary)
M = 1e4  # the constant that dominates every norm
GAP = 30.0  # attention logit margin: off-target weights are ~exp(-GAP)
LOGIT = 30.0  # logit of the right next token (all others are 0)

# Residual-stream layout: name -> dim (a slice of V dims for the one-hot blocks).
ONE, NEG, BAL, POS, POS_SQ, EOI_POS, OFFSET = range(7)
TOK = 7
COPY = TOK + V
OUT = COPY + V
N_EMBD = OUT + V + 1  # 200: one spare dim
LAYOUT = {"ONE": ONE, "NEG": NEG, "BAL": BAL, "POS": POS, "POS_SQ": POS_SQ, "EOI_POS": EOI_POS,
          "OFFSET": OFFSET, "TOK": slice(TOK, TOK + V), "COPY": slice(COPY, COPY + V),
          "OUT": slice(OUT, OUT + V)}


def _blocks(vocab: int) -> tuple[int, int, int]:
    """COPY, OUT and n_embd for a vocabulary of ``vocab`` ids (the one-hot blocks follow TOK)."""
    copy = TOK + vocab
    return copy, copy + vocab, copy + 2 * vocab + 1


def _balanced(write: torch.Tensor) -> torch.Tensor:
    """``write`` is ``(n_embd, k)`` (columns are what each input writes); set BAL = -sum of the rest."""
    write[BAL] = 0
    write[BAL] = -(write.sum(dim=0) - write[ONE] - write[NEG])
    return write


def _lookup(task: tasks.Task) -> list[tuple[int, int, int]]:
    """The layer-2 MLP's table: (current token, copied token, next token) triples."""
    rows = []
    for b in task.input_values:  # current token <eoi> plays s_0
        s1 = b if task.first_state_is_input else task.step(0, b)
        rows.append((tasks.EOI_ID, b, s1))
    for a in task.state_values:  # current token s_{t-1}
        for b in task.input_values:
            rows.append((a, b, task.step(a, b)))
    return rows


@torch.no_grad()
def build_iteration_head_model(task: "str | tasks.Task" = "parity", n_positions: int = 64,
                               modulus: int = tasks.DEFAULT_MODULUS, polynomial=tasks.DEFAULT_POLYNOMIAL,
                               norm: str = "layernorm") -> IterGPTForCausalLM:
    """A hand-built 2-layer, 1-head IterGPT that solves ``task`` exactly for every input length
    ``L`` with ``2L + 3 <= n_positions`` (the module docstring explains every weight).

    ``task``: any task of ``tasks.make_task`` (a name: the paper's, a family, a task file; or a
    ``tasks.Task``), ``modulus`` / ``polynomial`` for ``polynomial``; the paper's claim is that two
    layers suffice for *any* ``F``, and the layer-2 MLP is ``F``'s table. ``norm``: ``layernorm`` or
    ``rmsnorm``. Returned in eval mode, float32.
    """
    spec = task if isinstance(task, tasks.Task) else tasks.make_task(task, modulus, polynomial)  # ValueError on a bad one
    V = spec.vocab_size
    COPY, OUT, N_EMBD = _blocks(V)
    if not isinstance(n_positions, int) or n_positions < tasks.row_length(1):
        raise ValueError(f"n_positions={n_positions!r} is too small: length 1 already needs "
                         f"{tasks.row_length(1)} positions")
    table = _lookup(spec)
    config = IterGPTConfig(
        vocab_size=V, n_positions=n_positions, n_layer=2, n_head=1, n_embd=N_EMBD,
        n_inner=len(table) + 1, activation="relu", norm=norm, bias=False, norm_bias=False,
        position_embedding="learned", embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0,
        tie_word_embeddings=False, residual="standard",
    )
    model = IterGPTForCausalLM(config)
    for p in model.parameters():
        p.zero_()
    N, d = n_positions, N_EMBD
    inner = model.model
    b1, b2 = inner.blocks

    # Embeddings (nn.Embedding rows are what each id writes).
    tok = torch.zeros(d, V)
    tok[TOK:TOK + V] = torch.eye(V)
    inner.embed.weight.copy_(_balanced(tok).T)
    u = torch.arange(N, dtype=torch.float64) / N
    pos = torch.zeros(d, N, dtype=torch.float64)
    pos[ONE], pos[NEG], pos[POS], pos[POS_SQ] = M, -M, u, u ** 2
    inner.pos_embed.weight.copy_(_balanced(pos).T.float())

    # Every norm: divide by ~R, multiply back by R; the constant then reads 1.
    R = M * math.sqrt(2.0 / d)
    for ln in (b1.ln1, b1.ln2, b2.ln1, b2.ln2, inner.ln_final):
        ln.weight.fill_(R)
        ln.weight[ONE] = ln.weight[NEG] = R / M

    sqrt_dh = math.sqrt(config.d_head)  # the attention divides q·k by sqrt(d_head)

    # 1. Layer-1 attention: every position looks at <eoi> and copies u(e) into EOI_POS.
    a = b1.attn
    a.q_proj.weight[0, ONE] = GAP * sqrt_dh
    a.k_proj.weight[0, TOK + tasks.EOI_ID] = 1.0
    a.v_proj.weight[0, POS] = 1.0
    out = torch.zeros(d, d)
    out[EOI_POS, 0] = 1.0
    a.o_proj.weight.copy_(_balanced(out))

    # 2. Layer-1 MLP: OFFSET = ReLU(u(p) - u(e) + 1/N) = u(t).
    m = b1.mlp
    m.fc_in.weight[0, POS], m.fc_in.weight[0, EOI_POS], m.fc_in.weight[0, ONE] = 1.0, -1.0, 1.0 / N
    out = torch.zeros(d, config.n_inner)
    out[OFFSET, 0] = 1.0
    m.fc_out.weight.copy_(_balanced(out))

    # 3. Layer-2 attention, the iteration head: score GAP * (2tk - k^2), value = token one-hot.
    a = b2.attn
    a.q_proj.weight[0, OFFSET] = 2 * GAP * N * N * sqrt_dh
    a.q_proj.weight[1, ONE] = -GAP * N * N * sqrt_dh
    a.k_proj.weight[0, POS] = 1.0
    a.k_proj.weight[1, POS_SQ] = 1.0
    a.v_proj.weight[:V, TOK:TOK + V] = torch.eye(V)
    out = torch.zeros(d, d)
    out[COPY:COPY + V, :V] = torch.eye(V)
    a.o_proj.weight.copy_(_balanced(out))

    # 4. Layer-2 MLP: exact lookup (current, copied) -> next token; copied <eoi> -> <eos>.
    m = b2.mlp
    out = torch.zeros(d, config.n_inner)
    for unit, (cur, copied, nxt) in enumerate(table):
        m.fc_in.weight[unit, TOK + cur] = 2.0
        m.fc_in.weight[unit, COPY + copied] = 2.0
        m.fc_in.weight[unit, ONE] = -3.0
        out[OUT + nxt, unit] = 1.0
    end = len(table)
    m.fc_in.weight[end, COPY + tasks.EOI_ID] = 2.0
    m.fc_in.weight[end, ONE] = -1.0
    out[OUT + tasks.EOS_ID, end] = 1.0
    m.fc_out.weight.copy_(_balanced(out))

    # Unembedding: logit of token v = LOGIT * OUT[v].
    model.lm_head.weight[:, OUT:OUT + V] = LOGIT * torch.eye(V)

    if getattr(model, "generation_config", None) is not None:
        model.generation_config.eos_token_id = tasks.EOS_ID
        model.generation_config.pad_token_id = tasks.PAD_ID
    return model.eval()


def _self_check(task: str = "parity", n: int = 16, seed: int = 0) -> float:  # pragma: no cover
    """Teacher-forced accuracy over every length the context allows (a quick sanity check)."""
    spec = tasks.make_task(task)
    model = build_iteration_head_model(spec)
    rng = np.random.default_rng(seed)
    ok = total = 0
    for L in range(1, (model.config.n_positions - 3) // 2 + 1):
        rows = torch.as_tensor(tasks.build_rows(spec, tasks.sample_inputs(spec, L, n, rng)))
        pred = model(rows).logits.argmax(-1)[:, L + 1:-1]
        ok += int((pred == rows[:, L + 2:]).all(dim=1).sum())
        total += n
    return ok / total


if __name__ == "__main__":  # pragma: no cover
    for name in tasks.TASK_NAMES + tasks.BUILTIN_TASKS:
        print(name, _self_check(name))
