"""The hand-built iteration head (modeling/construction.py) solves every task at every length."""

import numpy as np
import pytest
import torch

from datasets_builders import tasks
from modeling import IterGPTConfig, IterGPTForCausalLM
from modeling.analysis import evaluate_lengths, find_eoi_heads, find_iteration_heads, sample_rows, max_length
from modeling.construction import LAYOUT, build_iteration_head_model

N_PER_LENGTH = 8  # teacher-forced rows per length (short lengths: every sequence up to this many)
N_GENERATED = 3  # generated rows per length


@torch.no_grad()
def generated_accuracy(model, rows_by_length: dict) -> dict:
    """Greedy ``generate`` from ``<task> x_1 … x_L <eoi>`` (all lengths in one left-padded batch):
    a row is right when it writes exactly ``s_1 … s_L <eos>`` and then stops."""
    prompts = [(L, r) for L, rows in sorted(rows_by_length.items()) for r in rows]
    width = max(L + 2 for L, _ in prompts)
    ids = torch.full((len(prompts), width), tasks.PAD_ID)
    mask = torch.zeros_like(ids)
    for i, (L, r) in enumerate(prompts):
        ids[i, width - L - 2:] = torch.as_tensor(r[:L + 2])
        mask[i, width - L - 2:] = 1
    out = model.generate(ids, attention_mask=mask, max_new_tokens=max(rows_by_length) + 1, do_sample=False,
                         eos_token_id=tasks.EOS_ID, pad_token_id=tasks.PAD_ID)
    new = out[:, width:]
    right = {L: [] for L in rows_by_length}
    for i, (L, r) in enumerate(prompts):
        want = torch.as_tensor(r[L + 2:])  # s_1 … s_L <eos>
        tail = new[i, len(want):]
        right[L].append(bool((new[i, :len(want)] == want).all()) and bool((tail == tasks.PAD_ID).all()))
    return {L: float(np.mean(v)) for L, v in right.items()}


@pytest.fixture(scope="module", params=tasks.TASK_NAMES)
def built(request):
    model = build_iteration_head_model(request.param)
    lengths = range(1, max_length(model) + 1)  # 1 … 30 for n_positions = 64
    rows = sample_rows(request.param, lengths, N_PER_LENGTH, seed=1)
    return request.param, model, rows, evaluate_lengths(model, rows)


def test_context_allows_lengths_1_to_30(built):
    _, model, rows, _ = built
    assert model.config.n_positions == 64 and sorted(rows) == list(range(1, 31))
    assert tasks.row_length(30) <= 64 < tasks.row_length(31)


def test_teacher_forced_accuracy_is_one_on_every_length(built):
    _, _, _, res = built
    assert res["accuracy"] == {L: 1.0 for L in range(1, 31)}


def test_generated_accuracy_is_one_on_every_length(built):
    _, model, rows, _ = built
    rows = {L: r[:N_GENERATED] for L, r in rows.items()}
    assert generated_accuracy(model, rows) == {L: 1.0 for L in range(1, 31)}


def test_heads_are_labelled(built):
    _, _, _, res = built
    assert find_iteration_heads(res) == [(1, 0)]
    assert find_eoi_heads(res) == [(0, 0)]
    for L, scores in res["heads"].items():
        assert scores["iteration_mean"][1, 0] > 0.999, L
        assert scores["iteration_invariance"][1, 0] > 0.999, L
        assert scores["first_mean"][0, 0] > 0.999, L
        assert scores["iteration_mean"][0, 0] < 0.01, L


def test_residual_stream_holds_what_the_docstring_says():
    model = build_iteration_head_model("parity")
    L, N = 7, model.config.n_positions
    e = L + 1
    ids = torch.as_tensor(sample_rows("parity", [L], 8, seed=4)[L])  # (8, 2L+3)
    names = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_mid", "blocks.1.hook_resid_post"]
    with torch.no_grad():
        _, cache = model.run_with_cache(ids, names_filter=names)
    cot = torch.arange(e, 2 * L + 2)  # query positions that write s_1 … s_L, <eos>
    t = cot - e + 1
    after_l1 = cache["blocks.0.hook_resid_post"][:, cot]
    close = dict(atol=1e-4, rtol=0)  # float32 rounding next to the constant M = 1e4
    torch.testing.assert_close(after_l1[..., LAYOUT["EOI_POS"]], torch.full((8, L + 1), e / N), **close)
    torch.testing.assert_close(after_l1[..., LAYOUT["OFFSET"]], (t / N).expand(8, -1).float(), **close)
    copied = cache["blocks.1.hook_resid_mid"][:, cot, LAYOUT["COPY"]].argmax(-1)
    assert torch.equal(copied, ids[:, t])  # x_1 … x_L, then <eoi> (the end signal)
    written = cache["blocks.1.hook_resid_post"][:, cot, LAYOUT["OUT"]]
    assert torch.equal(written.argmax(-1), ids[:, cot + 1])  # s_1 … s_L <eos>
    torch.testing.assert_close(written.max(-1).values, torch.ones(8, L + 1), **close)
    assert torch.all(written.sum(-1) < 1 + 1e-4)  # one-hot: nothing else is written


def test_random_model_is_far_worse():
    torch.manual_seed(0)
    model = IterGPTForCausalLM(IterGPTConfig()).eval()
    rows = sample_rows("parity", range(1, 9), 32, seed=1)
    res = evaluate_lengths(model, rows)
    assert np.mean(list(res["accuracy"].values())) < 0.2
    assert find_iteration_heads(res) == []
    assert generated_accuracy(model, {L: rows[L][:4] for L in (2, 5)}) == {2: 0.0, 5: 0.0}


def test_rmsnorm_and_other_polynomial_are_exact():
    poly = ((2, 0, 1), (0, 1, 3))  # s^2 + 3x mod 7
    model = build_iteration_head_model("polynomial", n_positions=25, modulus=7, polynomial=poly, norm="rmsnorm")
    task = tasks.make_task("polynomial", 7, poly)
    rows = sample_rows(task, range(1, max_length(model) + 1), 8, seed=2)
    assert max(rows) == 11
    assert set(evaluate_lengths(model, rows)["accuracy"].values()) == {1.0}
    assert set(generated_accuracy(model, {L: r[:N_GENERATED] for L, r in rows.items()}).values()) == {1.0}


def test_save_and_load(tmp_path):
    from transformers import AutoModelForCausalLM

    model = build_iteration_head_model("parity", n_positions=20)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, trust_remote_code=True).eval()
    rows = sample_rows("parity", range(1, 9), 16, seed=3)
    assert set(evaluate_lengths(loaded, rows)["accuracy"].values()) == {1.0}
    ids = torch.as_tensor(rows[8])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits)


def test_bad_arguments():
    with pytest.raises(ValueError, match="task"):
        build_iteration_head_model("sorting")
    with pytest.raises(ValueError, match="n_positions"):
        build_iteration_head_model("parity", n_positions=4)
    with pytest.raises(ValueError, match="modulus"):
        build_iteration_head_model("polynomial", modulus=250)
