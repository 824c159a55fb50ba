"""The fast training step: what a training loop sets up so that a step of our small models is cheap
and learns the same thing as the plain float32 step.

Two choices, measured by ``bench/bench_step.py`` on the demo's packed batches (rows of ~35 tokens)
and checked by ``tests/test_fast_step.py`` (same loss, gradients and update as the float32 step):

- **optimizer** (``fast_adamw``): AdamW's fused kernel, one call for every parameter instead of a
  Python loop of small element-wise ops (here 0.28 instead of 1.33 ms CPU per step, ~5% of a step).
- **precision** (``fast_mixed_precision``): bf16 autocast only where the CPU computes bf16 natively
  (AVX512-BF16 or AMX). Attention then still runs in float32 (``IterGPTAttention`` leaves autocast
  on a CPU, because the CPU attention kernels' backward is several times slower in bf16). Without
  native bf16 the GEMMs are emulated and several times slower than float32, so the answer there
  is ``"no"``. (SDPA's and the eager attention kernel cost the same CPU time at these rows, float32.)

A loop wires it as::

    accelerator = Accelerator(mixed_precision=fast_mixed_precision(), ...)
    optimizer = fast_adamw(trainable_parameters, lr=..., betas=..., weight_decay=...)
"""

from __future__ import annotations

from typing import Iterable

import torch

__all__ = ["fast_adamw", "fast_mixed_precision", "native_bf16"]


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """True when ``device`` multiplies bf16 matrices in hardware (a CPU with AVX512-BF16 or AMX, or a
    GPU that supports bf16); on other CPUs torch emulates bf16 GEMMs, several times slower than fp32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    # Private torch helpers, present since torch 2.3; a CPU they do not know about gets fp32.
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check is not None and check() for check in checks)


def fast_mixed_precision(device: torch.device | str | None = None) -> str:
    """accelerate's ``mixed_precision`` for the fast step on ``device`` (default: CUDA if available,
    else the CPU): ``"bf16"`` where bf16 is native, else ``"no"``."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return "bf16" if native_bf16(device) else "no"


def fast_adamw(params: Iterable[torch.nn.Parameter], **kwargs) -> torch.optim.AdamW:
    """``torch.optim.AdamW(params, **kwargs)`` with the fused kernel when every parameter allows it
    (floating point, on a CPU or a CUDA device); the same update as the default implementation."""
    params = list(params)
    fusable = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(params, fused=fusable or None, **kwargs)
