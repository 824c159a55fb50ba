"""The fast training step: what a training loop sets up so that a step of our small models is cheap
and learns the same thing as the plain float32 step.

Three choices, each measured by ``bench/bench_step.py`` on the demo's packed batches (rows of ~35
tokens) and checked by ``tests/test_fast_step.py`` (same loss and gradients as the float32 step):

- **attention kernel** (``use_fast_attention``): on a CPU the eager kernel (matmul + float32 softmax)
  runs forward + backward faster than SDPA's flash kernel at rows this short; on a GPU SDPA stays.
- **optimizer** (``fast_adamw``): AdamW's fused kernel, one call for every parameter instead of a
  Python loop of small element-wise ops.
- **precision** (``fast_mixed_precision``): bf16 autocast only where the CPU computes bf16 natively
  (AVX512-BF16 or AMX). Attention then still runs in float32 (``IterGPTAttention`` leaves autocast
  on a CPU, because the CPU attention kernels' backward is several times slower in bf16). Without
  native bf16 the GEMMs are emulated and ~5x slower than float32, so the answer there is ``"no"``.

A loop wires it as::

    accelerator = Accelerator(mixed_precision=fast_mixed_precision(), ...)
    model = use_fast_attention(build_model(...), accelerator.device)
    optimizer = fast_adamw(trainable_parameters, lr=..., betas=..., weight_decay=...)
"""

from __future__ import annotations

from typing import Iterable

import torch

__all__ = ["fast_adamw", "fast_mixed_precision", "native_bf16", "use_fast_attention"]


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """True when ``device`` multiplies bf16 matrices in hardware (a CPU with AVX512-BF16 or AMX, or a
    GPU that supports bf16); on other CPUs torch emulates bf16 GEMMs, several times slower than fp32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    # Private torch helpers, present since torch 2.3; a CPU they do not know about gets fp32.
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(check is not None and check() for check in checks)


def fast_mixed_precision(device: torch.device | str | None = None) -> str:
    """accelerate's ``mixed_precision`` for the fast step on ``device`` (default: CUDA if available,
    else the CPU): ``"bf16"`` where bf16 is native, else ``"no"``."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return "bf16" if native_bf16(device) else "no"


def use_fast_attention(model, device: torch.device | str):
    """Select the attention kernel that trains fastest on ``device``; returns ``model``.

    On a CPU that is the eager kernel: for rows of a few dozen tokens, two small matmuls and a softmax
    beat SDPA's flash kernel (whose backward dominates the attention time). Eager and SDPA give the
    same outputs (the model's tests check it); the choice lives in ``config._attn_implementation``,
    which ``save_pretrained`` does not write, so a saved model loads with its usual default.
    """
    if torch.device(device).type == "cpu":
        model.set_attn_implementation("eager")
    return model


def fast_adamw(params: Iterable[torch.nn.Parameter], **kwargs) -> torch.optim.AdamW:
    """``torch.optim.AdamW(params, **kwargs)`` with the fused kernel when every parameter allows it
    (floating point, on a CPU or a CUDA device); the same update as the default implementation."""
    params = list(params)
    fusable = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(params, fused=fusable or None, **kwargs)
