"""IterGPT: the small decoder-only transformer of the Iteration Head paper, probe-ready.

A GPT in one file, with a Hugging Face interface (``PreTrainedModel`` + ``GenerationMixin``, KV cache,
``save_pretrained`` / ``from_pretrained``) and a TransformerLens-style one: every activation a
researcher may want is an identity ``HookPoint`` module whose name is its path in ``IterGPTModel``
(``blocks.1.attn.hook_pattern``), read with ``run_with_cache`` and edited with ``run_with_hooks``. That
machinery lives in ``hook_points.py`` (as in TransformerLens); this file holds the model.

Module tree and hook shapes (B batch, T new tokens, S = cached + new tokens, H heads)::

    IterGPTForCausalLM
      .model  IterGPTModel
        .embed (Embedding)                     hook_embed      (B, T, d_model)
        .pos_embed (Embedding | fixed table)   hook_pos_embed  (B, T, d_model)
        .drop
        .blocks[i]  IterGPTBlock               hook_resid_pre / hook_resid_mid / hook_resid_post (B, T, d_model)
                                               hook_attn_out / hook_mlp_out  (B, T, d_model) added to the stream
          .ln1, .ln2  IterGPTLayerNorm         hook_scale (B, T, 1) / hook_normalized / hook_out (B, T, d_model)
          .attn  IterGPTAttention  q_proj k_proj v_proj o_proj
                                              hook_q / hook_k / hook_v  (B, T, H, d_head)
                                              hook_attn_scores          (B, H, T, S)  pre-softmax, masked
                                              hook_pattern              (B, H, T, S)
                                              hook_z                    (B, T, H, d_head)
                                              hook_result               (B, T, H, d_model)  per-head output
          .mlp   IterGPTMLP  fc_in act fc_out  hook_pre / hook_post     (B, T, d_mlp)
        .ln_final                              ln_final.hook_out (B, T, d_model) fed to lm_head (alias: hook_final)
      .lm_head (Linear d_model -> vocab, no bias)

With nothing attached a hook point is one identity call (bench/bench_model.py measures it). The
costly ones are lazy: ``hook_result`` (a per-head einsum) and a norm's ``hook_scale`` /
``hook_normalized`` are only computed when watched, and watching ``hook_pattern`` /
``hook_attn_scores`` (or ``output_attentions=True``) switches that layer from the fused SDPA kernel to
the eager attention that materialises the pattern. A point is watched while a torch hook is attached
to it (``run_with_cache``, ``run_with_hooks``, pyvene) or while an nnsight trace runs (nnsight wraps
modules instead of hooking them; no flag needed). ``config.materialize_hooks=True`` computes them all
on every pass, for other tools that find activations by other means. Same logits either way.

This file imports only torch, transformers and (relatively) its configuration and ``hook_points.py``,
so that ``save_pretrained`` ships the three with the weights for ``trust_remote_code=True`` loading.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import can_return_tuple

from .configuration_itergpt import IterGPTConfig
from .hook_points import HookedRootMixin, HookPoint, is_hooked, is_traced

__all__ = [
    "FixedPositionEmbedding",
    "IterGPTAttention",
    "IterGPTBlock",
    "IterGPTForCausalLM",
    "IterGPTMLP",
    "IterGPTModel",
    "IterGPTPreTrainedModel",
    "eager_attention_forward",
    "sinusoidal_table",
]

# transformers >= 5.x names the output cache field `cache` (older 5.x: `past_key_values`); generate
# reads it back under that name, so write it under whichever name this version declares.
_CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"
# `forward(past_key_values=...)` becomes `cache=` (`deprecate_kwarg`). The version is the one that
# deprecated the name (v5.0): at or past it the rename is silent, so the old name keeps working without
# a warning (early 5.x generate passes it on every step). Both names at once raise.
_CACHE_RENAMED_IN = "5.0.0"
_BOTH_CACHES = "Pass the cache once, as cache= (past_key_values= is its older name)."


# ---------------------------------------------------------------------------------------------
# Lazy hook points
# ---------------------------------------------------------------------------------------------
def _watched(config, *points) -> bool:
    """Whether the lazy hook points ``points`` (siblings: nnsight wraps all or none of them) are computed
    on this pass: always with ``config.materialize_hooks``, else while a torch hook is attached to one
    or an nnsight trace runs."""
    return config.materialize_hooks or any(is_hooked(p) for p in points) or is_traced(points[0])


# ---------------------------------------------------------------------------------------------
# Attention functions
# ---------------------------------------------------------------------------------------------
def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference attention that materialises the pattern; softmax in float32.

    query (B, H, T, d_head), key/value (B, H, S, d_head). ``attention_mask`` is boolean, ``True`` where
    a query may attend, broadcastable to (B, H, T, S); ``None`` means plain causal (queries are the
    last T of the S positions). Returns the output (B, T, H, d_head) and the pattern (B, H, T, S).
    The module's ``hook_attn_scores`` / ``hook_pattern`` points, when present, see the masked scores
    and the pattern.
    """
    q_len, kv_len = query.shape[-2], key.shape[-2]
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling  # (B, H, T, S)
    if attention_mask is None:
        attention_mask = torch.ones(q_len, kv_len, dtype=torch.bool, device=query.device).tril(kv_len - q_len)
    # Finite fill: hooked scores stay usable for arithmetic; exp underflows to exactly 0 anyway.
    scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    if (hook := getattr(module, "hook_attn_scores", None)) is not None:
        scores = hook(scores)
    weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)  # (B, H, T, S)
    if (hook := getattr(module, "hook_pattern", None)) is not None:
        weights = hook(weights)
    probs = F.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(probs, value)  # (B, H, T, d_head)
    return output.transpose(1, 2).contiguous(), weights  # (B, T, H, d_head)


def _attention_mask_4d(
    attention_mask: torch.Tensor | None, q_len: int, past_len: int, device: torch.device
) -> torch.Tensor | None:
    """Boolean (B or 1, 1, T, S) mask, ``True`` = may attend; ``None`` when plain causal suffices
    (no padding, and either no cache or a single new token, which may see every cached key).

    Padded keys are hidden, except that every query may always see itself: a padding query then has a
    finite (meaningless) output instead of an all-masked row that would give NaN in SDPA.
    """
    if attention_mask is None and (past_len == 0 or q_len == 1):
        return None
    kv_len = past_len + q_len
    q_pos = torch.arange(past_len, kv_len, device=device)[:, None]  # (T, 1)
    k_pos = torch.arange(kv_len, device=device)[None, :]  # (1, S)
    allowed = (k_pos <= q_pos)[None, None]  # (1, 1, T, S)
    if attention_mask is not None:
        keys = attention_mask.to(device=device, dtype=torch.bool)[:, None, None, :]  # (B, 1, 1, S)
        allowed = allowed & (keys | (k_pos == q_pos))  # (B, 1, T, S)
    return allowed


def _build_attention_mask(
    attention_mask: torch.Tensor | None, B: int, T: int, past_len: int, device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Validate the caller's ``attention_mask`` and return ``(mask, padding)``: the boolean
    (B or 1, 1, T, S) mask for the blocks (``None`` when plain causal suffices) and the 2-D (B, S)
    padding mask that position ids are counted from (``None`` when a 4-D mask or none was given).

    A 4-D boolean mask (e.g. packed rows) is used as given; a 2-D one becomes causal + padding.
    """
    if attention_mask is not None and attention_mask.dim() == 4:
        if attention_mask.dtype != torch.bool or attention_mask.shape[1] != 1 or attention_mask.shape[-2:] != (
            T, past_len + T
        ) or attention_mask.shape[0] not in (1, B):
            raise ValueError(
                f"a 4-D attention_mask must be boolean of shape (batch or 1, 1, new tokens, cached + new "
                f"tokens) = {(B, 1, T, past_len + T)}; got {attention_mask.dtype} {tuple(attention_mask.shape)}"
            )
        return attention_mask.to(device), None
    if attention_mask is None:
        return _attention_mask_4d(None, T, past_len, device), None
    if attention_mask.dim() != 2 or attention_mask.shape != (B, past_len + T):
        raise ValueError(
            f"attention_mask must have shape (batch, cached + new tokens) = {(B, past_len + T)} "
            f"(or a 4-D boolean mask); got {tuple(attention_mask.shape)}"
        )
    no_padding = not torch.compiler.is_compiling() and bool(attention_mask.all())
    # no padding: let SDPA use its causal kernel
    return _attention_mask_4d(None if no_padding else attention_mask, T, past_len, device), attention_mask


def _position_ids(
    position_ids: torch.Tensor | None,
    padding: torch.Tensor | None,
    T: int,
    past_len: int,
    device: torch.device,
    n_positions: int,
) -> torch.Tensor:
    """(B or 1, T) positions: the caller's (checked to lie in [0, n_positions)), else
    ``cumsum(padding) - 1`` (0 on padding), else ``arange`` continuing the cache."""
    if position_ids is None:
        if padding is not None:
            position_ids = padding.long().cumsum(-1) - 1
            return position_ids.masked_fill(padding == 0, 0)[:, -T:]  # (B, T)
        return torch.arange(past_len, past_len + T, device=device)[None]  # (1, T)
    position_ids = position_ids.to(device)
    if position_ids.shape[-1] != T:
        raise ValueError(f"position_ids must have {T} columns (one per new token); got {tuple(position_ids.shape)}")
    if not torch.compiler.is_compiling() and (
        bool((position_ids < 0).any()) or bool((position_ids >= n_positions).any())
    ):
        raise ValueError(f"position_ids must lie in [0, n_positions={n_positions})")
    return position_ids


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------
def sinusoidal_table(n_positions: int, dim: int) -> torch.Tensor:
    """Fixed sin/cos position table (Vaswani et al.), shape (n_positions, dim)."""
    position = torch.arange(n_positions, dtype=torch.float32)[:, None]  # (P, 1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))  # (ceil(dim/2),)
    table = torch.zeros(n_positions, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


class FixedPositionEmbedding(nn.Module):
    """A position table that is never trained, held as a buffer and called like ``nn.Embedding``.

    ``sinusoidal``: the sin/cos table, rebuilt on load (not saved). Otherwise a random table drawn at
    initialisation and saved with the weights: the reference code's frozen positions
    (``freeze_pos=True``). A buffer, unlike a parameter with ``requires_grad=False``, stays frozen
    through ``from_pretrained`` and ``model.requires_grad_(True)``.
    """

    def __init__(self, n_positions: int, dim: int, sinusoidal: bool):
        super().__init__()
        self.n_positions, self.dim, self.sinusoidal = n_positions, dim, sinusoidal
        table = sinusoidal_table(n_positions, dim) if sinusoidal else torch.zeros(n_positions, dim)
        self.register_buffer("weight", table, persistent=not sinusoidal)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(position_ids, self.weight)

    def extra_repr(self) -> str:
        return f"{self.n_positions}, {self.dim}, sinusoidal={self.sinusoidal}"


class IterGPTLayerNorm(nn.Module):
    """LayerNorm or RMSNorm (``config.norm``) with TransformerLens 4's hook points.

    ``hook_scale`` (B, T, 1): the divisor ``sqrt(var + eps)`` (RMSNorm: ``sqrt(mean(x^2) + eps)``);
    ``hook_normalized`` (B, T, d_model): ``(x - mean) / scale``, before ``weight`` and ``bias`` (as in
    TransformerLens' bridge); ``hook_out`` (B, T, d_model): the output. Weights are named as in
    ``nn.LayerNorm``/``nn.RMSNorm``. The fused kernel runs unless ``hook_scale``/``hook_normalized`` is
    watched (a torch hook, an nnsight trace, or ``config.materialize_hooks``): then the steps are
    explicit so a hook can edit them.
    """

    def __init__(self, config: IterGPTConfig):
        super().__init__()
        self.config = config
        self.rms, self.eps = config.norm == "rmsnorm", config.norm_eps
        self.weight = nn.Parameter(torch.ones(config.n_embd))
        self.bias = nn.Parameter(torch.zeros(config.n_embd)) if config.norm_bias else None
        self.hook_scale = HookPoint()  # (B, T, 1)
        self.hook_normalized = HookPoint()  # (B, T, d_model)
        self.hook_out = HookPoint()  # (B, T, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _watched(self.config, self.hook_scale, self.hook_normalized):
            centred = x if self.rms else x - x.mean(-1, keepdim=True)
            scale = self.hook_scale((centred.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())  # (B, T, 1)
            out = self.hook_normalized(centred / scale) * self.weight
            out = out + self.bias if self.bias is not None else out
        elif self.rms:
            out = F.rms_norm(x, x.shape[-1:], self.weight, self.eps)
        else:
            out = F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)
        return self.hook_out(out)  # (B, T, d_model)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}, rms={self.rms}, bias={self.bias is not None}"


def _make_norm(config: IterGPTConfig) -> nn.Module:
    return IterGPTLayerNorm(config)


def _make_activation(name: str) -> nn.Module:
    return {
        "gelu": lambda: nn.GELU(),
        "gelu_new": lambda: nn.GELU(approximate="tanh"),
        "relu": lambda: nn.ReLU(),
        "silu": lambda: nn.SiLU(),
    }[name]()


class IterGPTAttention(nn.Module):
    """Multi-head causal self-attention with per-head hook points and weight views."""

    is_causal = True  # read by transformers' SDPA function

    def __init__(self, config: IterGPTConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.n_head, self.d_head, self.d_model = config.n_head, config.d_head, config.n_embd
        self.scaling = self.d_head**-0.5
        self.attention_dropout = config.attn_pdrop
        d = config.n_embd
        self.q_proj = nn.Linear(d, d, bias=config.bias)
        self.k_proj = nn.Linear(d, d, bias=config.bias)
        self.v_proj = nn.Linear(d, d, bias=config.bias)
        self.o_proj = nn.Linear(d, d, bias=config.bias)
        self.hook_q = HookPoint()  # (B, T, H, d_head)
        self.hook_k = HookPoint()  # (B, T, H, d_head)
        self.hook_v = HookPoint()  # (B, T, H, d_head)
        self.hook_attn_scores = HookPoint()  # (B, H, T, S) pre-softmax, masked
        self.hook_pattern = HookPoint()  # (B, H, T, S)
        self.hook_z = HookPoint()  # (B, T, H, d_head)
        self.hook_result = HookPoint()  # (B, T, H, d_model)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, _ = hidden_states.shape
        H, dh = self.n_head, self.d_head
        q = self.hook_q(self.q_proj(hidden_states).view(B, T, H, dh))  # (B, T, H, dh)
        k = self.hook_k(self.k_proj(hidden_states).view(B, T, H, dh))
        v = self.hook_v(self.v_proj(hidden_states).view(B, T, H, dh))
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, dh)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # (B, H, S, dh)

        # The pattern only exists on the eager path: take it whenever someone asks to see it.
        wants_pattern = output_attentions or _watched(self.config, self.hook_pattern, self.hook_attn_scores)
        implementation = self.config._attn_implementation or "sdpa"
        attention_interface = eager_attention_forward
        if not wants_pattern and implementation != "eager":
            attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        dropout = self.attention_dropout if self.training else 0.0
        if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # Mixed precision on a CPU: the projections gain from bf16 where it is native, but the CPU
            # attention kernels do not (SDPA forward + backward in bf16: ~5x the float32 time), so
            # attention runs in float32.
            with torch.autocast("cpu", enabled=False):
                z, weights = attention_interface(
                    self, q.float(), k.float(), v.float(), attention_mask, dropout=dropout, scaling=self.scaling
                )
        else:
            z, weights = attention_interface(self, q, k, v, attention_mask, dropout=dropout, scaling=self.scaling)
        z = self.hook_z(z.reshape(B, T, H, dh))  # (B, T, H, dh)

        if _watched(self.config, self.hook_result):
            # Per-head contribution to the residual stream; the bias is added once, after the head sum.
            result = self.hook_result(torch.einsum("bthd,hdm->bthm", z, self.W_O))  # (B, T, H, d_model)
            out = result.sum(dim=2)
            if self.o_proj.bias is not None:
                out = out + self.o_proj.bias
        else:
            out = self.o_proj(z.reshape(B, T, H * dh))  # (B, T, d_model)
        return out, weights

    # Per-head weight views (they share storage with the Linear weights).
    # q[b, t, h] = resid[b, t] @ W_Q[h] + b_Q[h];  out = sum_h z[b, t, h] @ W_O[h] + b_O.
    @property
    def W_Q(self) -> torch.Tensor:
        """(n_head, d_model, d_head)"""
        return self.q_proj.weight.view(self.n_head, self.d_head, self.d_model).transpose(1, 2)

    @property
    def W_K(self) -> torch.Tensor:
        """(n_head, d_model, d_head)"""
        return self.k_proj.weight.view(self.n_head, self.d_head, self.d_model).transpose(1, 2)

    @property
    def W_V(self) -> torch.Tensor:
        """(n_head, d_model, d_head)"""
        return self.v_proj.weight.view(self.n_head, self.d_head, self.d_model).transpose(1, 2)

    @property
    def W_O(self) -> torch.Tensor:
        """(n_head, d_head, d_model)"""
        return self.o_proj.weight.view(self.d_model, self.n_head, self.d_head).permute(1, 2, 0)

    def _head_bias(self, linear: nn.Linear) -> torch.Tensor:
        if linear.bias is None:
            return linear.weight.new_zeros(self.n_head, self.d_head)
        return linear.bias.view(self.n_head, self.d_head)

    @property
    def b_Q(self) -> torch.Tensor:
        """(n_head, d_head); zeros when the layer has no bias."""
        return self._head_bias(self.q_proj)

    @property
    def b_K(self) -> torch.Tensor:
        """(n_head, d_head)"""
        return self._head_bias(self.k_proj)

    @property
    def b_V(self) -> torch.Tensor:
        """(n_head, d_head)"""
        return self._head_bias(self.v_proj)

    @property
    def b_O(self) -> torch.Tensor:
        """(d_model,)"""
        bias = self.o_proj.bias
        return bias if bias is not None else self.o_proj.weight.new_zeros(self.d_model)


class IterGPTMLP(nn.Module):
    """Two-layer MLP ``fc_out(act(fc_in(x)))``."""

    def __init__(self, config: IterGPTConfig):
        super().__init__()
        self.fc_in = nn.Linear(config.n_embd, config.n_inner, bias=config.bias)
        self.act = _make_activation(config.activation)
        self.fc_out = nn.Linear(config.n_inner, config.n_embd, bias=config.bias)
        self.hook_pre = HookPoint()  # (B, T, d_mlp) before the activation
        self.hook_post = HookPoint()  # (B, T, d_mlp) after the activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hook_pre(self.fc_in(x))  # (B, T, d_mlp)
        h = self.hook_post(self.act(h))
        return self.fc_out(h)  # (B, T, d_model)

    @property
    def W_in(self) -> torch.Tensor:
        """(d_model, d_mlp)"""
        return self.fc_in.weight.T

    @property
    def W_out(self) -> torch.Tensor:
        """(d_mlp, d_model)"""
        return self.fc_out.weight.T


class IterGPTBlock(GradientCheckpointingLayer):
    """One transformer block, in the GPT-2 pre-norm layout or the paper code's ("reference") layout.

    standard:  x = x + attn(ln1(x));        x = x + mlp(ln2(x))
    reference: x = ln1(x); x = x + attn(x); x = x + mlp(ln2(x))
    In the reference layout ``hook_resid_pre`` is the block input, before ``ln1`` replaces the stream.
    """

    def __init__(self, config: IterGPTConfig, layer_idx: int):
        super().__init__()
        self.reference = config.residual == "reference"
        # Registered in execution order, so hook_points() lists names in the order they fire.
        self.hook_resid_pre = HookPoint()  # (B, T, d_model)
        self.ln1 = _make_norm(config)
        self.attn = IterGPTAttention(config, layer_idx)
        self.hook_attn_out = HookPoint()  # (B, T, d_model) what attention adds to the stream
        self.hook_resid_mid = HookPoint()  # (B, T, d_model)
        self.ln2 = _make_norm(config)
        self.mlp = IterGPTMLP(config)
        self.hook_mlp_out = HookPoint()  # (B, T, d_model) what the MLP adds to the stream
        self.hook_resid_post = HookPoint()  # (B, T, d_model)
        self.drop = nn.Dropout(config.resid_pdrop)

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.hook_resid_pre(x)  # (B, T, d_model)
        if self.reference:
            x = self.ln1(x)
            attn_out, weights = self.attn(x, attention_mask, cache, output_attentions)
        else:
            attn_out, weights = self.attn(self.ln1(x), attention_mask, cache, output_attentions)
        x = self.hook_resid_mid(x + self.hook_attn_out(self.drop(attn_out)))
        x = self.hook_resid_post(x + self.hook_mlp_out(self.drop(self.mlp(self.ln2(x)))))
        return x, weights


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
class IterGPTPreTrainedModel(HookedRootMixin, PreTrainedModel):
    """Weight initialisation, loading glue and the probing API shared by the IterGPT models.

    Probing (``hook_points.HookedRootMixin``; hook names are relative to ``IterGPTModel``, e.g.
    ``"blocks.1.attn.hook_pattern"``): ``hook_points()``, ``run_with_cache``, ``run_with_hooks``, the
    ``hooks(...)`` context manager and ``reset_hooks()``; stacked weights ``W_E``, ``W_pos``,
    ``W_Q``/``W_K``/``W_V`` (n_layer, n_head, d_model, d_head), ``W_O`` (n_layer, n_head, d_head,
    d_model), ``W_in``/``W_out``.
    """

    config_class = IterGPTConfig
    config: IterGPTConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _no_split_modules = ["IterGPTBlock"]
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    supports_gradient_checkpointing = True  # per block; the KV cache is dropped while checkpointing
    hook_aliases = {"hook_final": "ln_final.hook_out"}  # former names, still accepted by names filters

    def _init_weights(self, module: nn.Module) -> None:
        config = self.config
        if module is self._base().pos_embed and isinstance(module, nn.Embedding):
            if config.position_init == "sinusoidal":
                # A learned table that starts as the sin/cos table (then trained like any weight).
                table = sinusoidal_table(config.n_positions, config.n_embd)
                init.copy_(module.weight, table * config.position_init_scale)
            else:
                init.normal_(module.weight, mean=0.0, std=config.position_std)
            return
        if isinstance(module, FixedPositionEmbedding):
            if module.sinusoidal:  # not saved: rebuilt after loading
                init.copy_(module.weight, sinusoidal_table(module.n_positions, module.dim))
            else:  # frozen random table; skipped by transformers when loaded from the checkpoint
                init.normal_(module.weight, mean=0.0, std=config.position_std)
            return
        if config.init == "pytorch":
            # The reference code never re-initialises: every module keeps PyTorch's own default
            # (nn.Embedding ~ N(0, 1), nn.Linear Kaiming-uniform, norms (1, 0)).
            if isinstance(module, (nn.Linear, nn.Embedding)):
                init.kaiming_uniform_(module.weight, a=math.sqrt(5)) if isinstance(module, nn.Linear) \
                    else init.normal_(module.weight, mean=0.0, std=1.0)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    bound = 1 / math.sqrt(module.in_features)
                    init.uniform_(module.bias, -bound, bound)
                return
        # Linear/Embedding ~ N(0, initializer_range), norms = (1, 0): the transformers default.
        super()._init_weights(module)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, strict: bool = True, **kwargs):
        """``PreTrainedModel.from_pretrained``, made strict by default.

        transformers already raises on a weight whose shape differs from the config; it only warns
        on missing or unexpected weights (e.g. a config with 3 layers over a 2-layer checkpoint) and
        initialises the missing ones at random. Here that is a ``ValueError`` unless
        ``strict=False``. The one tolerated extra is ``lm_head.weight`` when loading the bare
        ``IterGPTModel`` from a causal-LM checkpoint.
        """
        output_loading_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(
            pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
        )
        if strict:
            missing = sorted(info.get("missing_keys") or ())
            unexpected = sorted(k for k in info.get("unexpected_keys") or () if not k.startswith("lm_head."))
            if missing or unexpected:
                raise ValueError(
                    f"checkpoint {pretrained_model_name_or_path!s} does not match its config: "
                    f"missing weights {missing[:8]}{' ...' if len(missing) > 8 else ''}, "
                    f"unexpected weights {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''} "
                    "(pass strict=False to load anyway with random initialisation of the missing ones)"
                )
        _fit_generation_length(model)  # a generation_config.json saved without max_length
        return (model, info) if output_loading_info else model

    def save_pretrained(self, save_directory, *args, **kwargs):
        # register_for_auto_class records only the class being saved; list both so that AutoModel and
        # AutoModelForCausalLM load the folder with trust_remote_code=True.
        module = IterGPTModel.__module__.rsplit(".", 1)[-1]
        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        auto_map.setdefault("AutoModel", f"{module}.IterGPTModel")
        auto_map.setdefault("AutoModelForCausalLM", f"{module}.IterGPTForCausalLM")
        self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

    # -- probing ----------------------------------------------------------------------------
    def _base(self) -> "IterGPTModel":
        return self.model if hasattr(self, "model") and isinstance(self.model, IterGPTModel) else self

    def _hook_root(self) -> "IterGPTModel":
        return self._base()

    # -- stacked weight views (copies; index a block's attention for in-place views) ---------
    @property
    def W_E(self) -> torch.Tensor:
        """(vocab, d_model) token embedding."""
        return self._base().embed.weight

    @property
    def W_pos(self) -> torch.Tensor:
        """(n_positions, d_model) position table (learned, frozen or sinusoidal)."""
        return self._base().pos_embed.weight

    def _stack(self, fn) -> torch.Tensor:
        return torch.stack([fn(block) for block in self._base().blocks])

    @property
    def W_Q(self) -> torch.Tensor:
        """(n_layer, n_head, d_model, d_head)"""
        return self._stack(lambda b: b.attn.W_Q)

    @property
    def W_K(self) -> torch.Tensor:
        """(n_layer, n_head, d_model, d_head)"""
        return self._stack(lambda b: b.attn.W_K)

    @property
    def W_V(self) -> torch.Tensor:
        """(n_layer, n_head, d_model, d_head)"""
        return self._stack(lambda b: b.attn.W_V)

    @property
    def W_O(self) -> torch.Tensor:
        """(n_layer, n_head, d_head, d_model)"""
        return self._stack(lambda b: b.attn.W_O)

    @property
    def W_in(self) -> torch.Tensor:
        """(n_layer, d_model, d_mlp)"""
        return self._stack(lambda b: b.mlp.W_in)

    @property
    def W_out(self) -> torch.Tensor:
        """(n_layer, d_mlp, d_model)"""
        return self._stack(lambda b: b.mlp.W_out)


class IterGPTModel(IterGPTPreTrainedModel):
    """The transformer without its unembedding: returns the normalised final residual stream."""

    def __init__(self, config: IterGPTConfig):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.n_embd)
        self.hook_embed = HookPoint()  # (B, T, d_model)
        if config.position_embedding == "learned":
            self.pos_embed = nn.Embedding(config.n_positions, config.n_embd)
        else:  # "sinusoidal" or "frozen": a buffer
            self.pos_embed = FixedPositionEmbedding(
                config.n_positions, config.n_embd, sinusoidal=config.position_embedding == "sinusoidal"
            )
        self.hook_pos_embed = HookPoint()  # (B, T, d_model)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.blocks = nn.ModuleList([IterGPTBlock(config, i) for i in range(config.n_layer)])
        self.ln_final = _make_norm(config)  # ln_final.hook_out (B, T, d_model): fed to lm_head
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed = value

    @deprecate_kwarg("past_key_values", _CACHE_RENAMED_IN, new_name="cache", raise_if_both_names=True,
                     additional_message=_BOTH_CACHES)
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> BaseModelOutputWithPast | tuple:
        """Run the transformer.

        Args:
            input_ids: (B, T) token ids in [0, vocab_size). Exactly one of it and ``inputs_embeds``.
            attention_mask: (B, S) with 1 for real tokens and 0 for padding, S = cached + new tokens.
                Left padding is supported (positions then start at 0 on the first real token).
                Or a boolean (B or 1, 1, T, S) mask, ``True`` where a query may attend, used as given
                (it must include causality); with several sequences packed in a row
                (``datasets_builders.tasks.pack_rows``) pass their ``position_ids`` too.
            position_ids: (B or 1, T); by default ``cumsum(attention_mask) - 1`` (0 on padding), or
                ``arange`` continuing the cache.
            cache: a transformers ``Cache`` (``DynamicCache``) holding earlier keys and values;
                ``past_key_values=`` is its older name, still accepted without a warning.
            inputs_embeds: (B, T, d_model) token embeddings to use instead of ``self.embed(input_ids)``.
            use_cache: create a ``DynamicCache`` when none is given and return it (default
                ``config.use_cache``). A cache that is passed in is always used and returned.
            output_attentions: return per-layer patterns (B, H, T, S) (computed on the eager path).
            output_hidden_states: return the residual stream entering each block plus the output of the
                last block (before ``ln_final``): n_layer + 1 tensors (B, T, d_model).
            return_dict: ``False`` returns ``to_tuple()`` of the output (``can_return_tuple``).
        """
        _check_cache(cache)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        output_attentions = bool(output_attentions) if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        B, T, device = self._check_inputs(input_ids, inputs_embeds)
        if cache is None and use_cache:
            cache = DynamicCache(config=self.config)
        past_len = cache.get_seq_length() if cache is not None else 0
        if past_len + T > self.config.n_positions:
            raise ValueError(
                f"sequence of {past_len + T} tokens ({past_len} cached + {T} new) exceeds the context of "
                f"n_positions={self.config.n_positions}; no truncation is done"
            )
        mask, padding = _build_attention_mask(attention_mask, B, T, past_len, device)
        position_ids = _position_ids(position_ids, padding, T, past_len, device, self.config.n_positions)
        x = self._embed(input_ids, inputs_embeds, position_ids)  # (B, T, d_model)
        x, all_hidden, all_attentions = self._run_blocks(x, mask, cache, output_attentions, output_hidden_states)
        return BaseModelOutputWithPast(
            last_hidden_state=x, hidden_states=all_hidden, attentions=all_attentions, **{_CACHE_FIELD: cache}
        )

    def _check_inputs(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None
    ) -> tuple[int, int, torch.device]:
        """Validate that exactly one of ``input_ids`` (B, T) and ``inputs_embeds`` (B, T, d_model) is
        given, with in-range ids; return ``(B, T, device)``."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if input_ids is not None:
            if input_ids.dim() != 2:
                raise ValueError(f"input_ids must have shape (batch, seq_len); got {tuple(input_ids.shape)}")
            _check_token_ids(input_ids, self.config.vocab_size)
        elif inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.config.n_embd:
            raise ValueError(
                f"inputs_embeds must have shape (batch, seq_len, {self.config.n_embd}); "
                f"got {tuple(inputs_embeds.shape)}"
            )
        given = input_ids if input_ids is not None else inputs_embeds
        B, T = given.shape[:2]
        return B, T, given.device

    def _embed(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, position_ids: torch.Tensor
    ) -> torch.Tensor:
        """Token + position embeddings through ``hook_embed`` / ``hook_pos_embed``, then dropout."""
        if inputs_embeds is None:
            inputs_embeds = self.embed(input_ids)
        B, T = inputs_embeds.shape[:2]
        tok = self.hook_embed(inputs_embeds)  # (B, T, d_model)
        pos = self.hook_pos_embed(self.pos_embed(position_ids).expand(B, T, -1))  # (B, T, d_model)
        return self.drop(tok + pos)

    def _run_blocks(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        cache: Cache | None,
        output_attentions: bool,
        output_hidden_states: bool,
    ) -> tuple[torch.Tensor, tuple | None, tuple | None]:
        """The block stack then ``ln_final``: ``(final (B, T, d_model), hidden states, attentions)``,
        the last two ``None`` unless asked for."""
        all_hidden = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for block in self.blocks:
            if output_hidden_states:
                all_hidden += (x,)
            x, weights = block(x, mask, cache=cache, output_attentions=output_attentions)
            if output_attentions:
                all_attentions += (weights,)
        if output_hidden_states:
            all_hidden += (x,)
        return self.ln_final(x), all_hidden, all_attentions  # ln_final: (B, T, d_model)


class IterGPTForCausalLM(IterGPTPreTrainedModel, GenerationMixin):
    """IterGPT with its language-model head: logits for every position, HF loss and ``generate``."""

    _tied_weights_keys = {"lm_head.weight": "model.embed.weight"}  # only when config.tie_word_embeddings

    def __init__(self, config: IterGPTConfig):
        super().__init__(config)
        self.model = IterGPTModel(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.post_init()
        _fit_generation_length(self)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    @property
    def W_U(self) -> torch.Tensor:
        """(d_model, vocab) unembedding."""
        return self.lm_head.weight.T

    def _prepare_generated_length(self, *args, **kwargs):
        """``generate``'s step that turns ``max_new_tokens`` into a total length. Our
        ``generation_config.max_length`` is the context, a default that ``generation_config.json``
        carries so that ``generate()`` alone never cuts a chain, not the caller's choice: an explicit
        ``max_new_tokens`` takes precedence over it without transformers' warning that both were set."""
        config = kwargs.get("generation_config", args[0] if args else None)
        if (kwargs.get("has_default_max_length") is False and getattr(config, "max_new_tokens", None) is not None
                and config.max_length == self.config.n_positions):
            kwargs["has_default_max_length"] = True
        return super()._prepare_generated_length(*args, **kwargs)

    @deprecate_kwarg("past_key_values", _CACHE_RENAMED_IN, new_name="cache", raise_if_both_names=True,
                     additional_message=_BOTH_CACHES)
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> CausalLMOutputWithPast | tuple:
        """Arguments as ``IterGPTModel.forward``, plus ``labels`` (B, T): the loss is the mean
        cross-entropy of ``logits[:, :-1]`` against ``labels[:, 1:]`` (the shift is done here),
        ignoring ``-100``. ``logits`` (B, T, vocab) cover every position."""
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.lm_head(outputs.last_hidden_state)  # (B, T, vocab)

        loss = None
        if labels is not None:
            if labels.shape != logits.shape[:2]:
                raise ValueError(f"labels must have shape {tuple(logits.shape[:2])}; got {tuple(labels.shape)}")
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                labels[:, 1:].reshape(-1).to(logits.device),
                ignore_index=-100,
            )

        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            **{_CACHE_FIELD: getattr(outputs, _CACHE_FIELD)},
        )


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------
def _check_cache(cache) -> None:
    if cache is not None and not isinstance(cache, Cache):
        raise ValueError(
            f"cache must be a transformers Cache such as DynamicCache, got {type(cache).__name__} "
            "(legacy tuples of tensors are not supported)"
        )
    if cache is not None and getattr(cache, "is_compileable", False):
        raise ValueError(
            f"{type(cache).__name__} (cache_implementation='static' and other fixed-size caches) is not "
            "supported: IterGPT attends over exactly the cached + new keys. Use the default DynamicCache "
            "(drop cache_implementation); a 64-token context gains nothing from a static cache"
        )


def _fit_generation_length(model) -> None:
    """``generation_config.max_length`` = the context when unset or transformers' default (20, which
    cuts the chain of any prompt of 20 tokens or more)."""
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None and generation_config.max_length in (None, 20):
        generation_config.max_length = model.config.n_positions


def _check_token_ids(input_ids: torch.Tensor, vocab_size: int) -> None:
    if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
        raise ValueError(f"input_ids must be integer token ids, got dtype {input_ids.dtype}")
    if torch.compiler.is_compiling() or input_ids.numel() == 0:
        return
    bad = (input_ids < 0) | (input_ids >= vocab_size)
    if bool(bad.any()):
        raise ValueError(
            f"input_ids contain ids outside [0, vocab_size={vocab_size}): "
            f"{sorted(set(input_ids[bad].tolist()))[:10]}"
        )


IterGPTModel.register_for_auto_class("AutoModel")
IterGPTForCausalLM.register_for_auto_class("AutoModelForCausalLM")
