"""The fast training step (``modeling.fast_step``) learns what today's float32 step learns.

On one packed parity batch and a tiny model, a step is: forward (autocast when bf16), backward, one
AdamW update. Tolerances:
- float32 fast step (fused AdamW) against the reference (AdamW's loop): the same arithmetic in
  another order, so loss and gradients agree to 1e-5 relative and the updated
  parameters to 1e-6;
- bf16 autocast with float32 attention: bf16 keeps 8 bits of mantissa (relative rounding 2^-9 per
  operand), so the loss agrees to 1e-3 relative and every gradient tensor to 3e-2 (the norm of the
  difference over the norm of the reference): ~5x above what the step gives here (loss 4e-5,
  gradients at most 0.6%), far below what a wrong step does (a missing or unscaled term).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datasets_builders import tasks
from modeling import IterGPTConfig, IterGPTForCausalLM
from modeling.fast_step import fast_adamw, fast_mixed_precision, native_bf16
from helpers import TINY_MODEL

TINY = {**TINY_MODEL, "vocab_size": tasks.VOCAB_SIZE, "n_positions": 40}


def packed_parity_batch(n_rows: int = 24, max_length: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    """Parity rows of mixed lengths packed as the demo packs them (block-diagonal causal mask)."""
    rng = np.random.default_rng(seed)
    task = tasks.make_task("parity")
    rows = [tasks.build_rows(task, tasks.sample_inputs(task, int(L), 1, rng))[0]
            for L in rng.integers(1, max_length + 1, size=n_rows)]
    packed = {k: torch.as_tensor(v) for k, v in tasks.pack_rows(rows).items()}
    seg, T = packed["segment_ids"], packed["input_ids"].shape[1]
    mask = (seg[:, :, None] == seg[:, None, :]) & torch.ones(T, T, dtype=torch.bool).tril()  # (B, T, T)
    return {"input_ids": packed["input_ids"], "position_ids": packed["position_ids"],
            "attention_mask": mask[:, None], "labels": torch.where(packed["loss_mask"], packed["input_ids"], -100)}


def one_step(fast: bool, precision: str, batch: dict, attention: str = "sdpa") -> tuple[float, dict, dict]:
    """(loss, gradients, parameters after the AdamW update) of one training step from the same init."""
    torch.manual_seed(0)
    model = IterGPTForCausalLM(IterGPTConfig(**TINY, attn_implementation=attention)).train()
    if fast:
        optimizer = fast_adamw(model.parameters(), lr=1e-3, weight_decay=0.01)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = model(**batch, use_cache=False).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    optimizer.step()
    return loss.item(), grads, {n: p.detach().clone() for n, p in model.named_parameters()}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


def test_fast_fp32_step_matches_reference():
    batch = packed_parity_batch()
    ref_loss, ref_grads, ref_params = one_step(False, "no", batch)
    loss, grads, params = one_step(True, "no", batch)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    for name, g in ref_grads.items():
        assert rel_err(grads[name], g) < 1e-5, name
    for name, p in ref_params.items():
        torch.testing.assert_close(params[name], p, rtol=1e-6, atol=1e-6, msg=name)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_bf16_step_matches_fp32_within_bf16_tolerance(attention):
    batch = packed_parity_batch()
    ref_loss, ref_grads, _ = one_step(False, "no", batch)
    loss, grads, _ = one_step(True, "bf16", batch, attention)
    assert loss == pytest.approx(ref_loss, rel=1e-3)
    errors = {name: rel_err(grads[name], g) for name, g in ref_grads.items()}
    assert max(errors.values()) < 3e-2, errors
    assert all(g.dtype == torch.float32 for g in grads.values())  # autocast keeps float32 weights


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_attention_runs_in_float32_under_cpu_autocast(implementation):
    """The projections run in bf16; the attention kernel gets float32 q, k, v and returns float32."""
    torch.manual_seed(0)
    model = IterGPTForCausalLM(IterGPTConfig(**TINY, attn_implementation=implementation)).eval()
    batch = packed_parity_batch(n_rows=6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, cache = model.run_with_cache(batch["input_ids"], position_ids=batch["position_ids"],
                                        attention_mask=batch["attention_mask"],
                                        names_filter=lambda name: name.endswith(("hook_q", "hook_z")))
    assert cache["blocks.0.attn.hook_q"].dtype == torch.bfloat16
    assert cache["blocks.0.attn.hook_z"].dtype == torch.float32


def test_fast_precision_follows_the_hardware():
    assert fast_mixed_precision("cpu") == ("bf16" if native_bf16("cpu") else "no")
    model = IterGPTForCausalLM(IterGPTConfig(**TINY))
    assert fast_adamw(model.parameters(), lr=1e-3).defaults["fused"]
