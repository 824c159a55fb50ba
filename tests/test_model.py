"""Tests of IterGPT (modeling/): config, save/load (package and trust_remote_code), attention paths,
KV cache and generation, hooks and weight views, and bad inputs. Tiny configs, CPU, a few seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, DynamicCache

import modeling
from modeling import HookPoint, IterGPTConfig, IterGPTForCausalLM, IterGPTModel
from modeling.modeling_itergpt import sinusoidal_table
from helpers import ROOT, TINY_MODEL, clean_env, tiny_model

PAD, BOS, EOI, EOS, PARITY = 63, 60, 61, 62, 58

VARIANTS = {
    "default": {},
    "reference-rmsnorm-sinusoidal": dict(residual="reference", norm="rmsnorm", position_embedding="sinusoidal"),
    "frozen-positions": dict(position_embedding="frozen"),
    "tied-biased-gelu_new": dict(tie_word_embeddings=True, bias=True, norm_bias=True, activation="gelu_new"),
}


def random_ids(batch: int = 2, length: int = 7, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 64, (batch, length), generator=g)


def left_pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.tensor([[PAD] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


PROMPTS = [[PARITY, 1, 0, 1, EOI], [PARITY, 1, EOI], [PARITY, 0, 1, 1, 0, 1, EOI]]


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------
def test_config_defaults_follow_the_paper_and_aliases():
    c = IterGPTConfig()
    assert (c.n_layer, c.n_head, c.n_embd, c.n_inner, c.vocab_size) == (2, 1, 128, 512, 64)
    assert (c.activation, c.norm, c.bias, c.norm_bias) == ("gelu", "layernorm", False, False)
    assert c.position_embedding == "learned" and c.residual == "standard"
    assert (c.embd_pdrop, c.attn_pdrop, c.resid_pdrop, c.tie_word_embeddings) == (0.1, 0.0, 0.0, False)
    assert (c.pad_token_id, c.bos_token_id, c.eoi_token_id, c.eos_token_id) == (PAD, BOS, EOI, EOS)
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads) == (2, 128, 1)
    assert (c.max_position_embeddings, c.intermediate_size) == (64, 512)
    assert IterGPTConfig(n_embd=48, n_head=3).d_head == 16


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(n_embd=30, n_head=4), "n_embd"),
        (dict(activation="tanh"), "activation"),
        (dict(norm="batchnorm"), "norm"),
        (dict(residual="post"), "residual"),
        (dict(position_embedding="rope"), "position_embedding"),
        (dict(n_layer=0), "n_layer"),
        (dict(n_embd=-8), "n_embd"),
        (dict(n_positions=0), "n_positions"),
        (dict(norm="rmsnorm", norm_bias=True), "norm_bias"),
        (dict(embd_pdrop=1.5), "embd_pdrop"),
        (dict(pad_token_id=64), "pad_token_id"),
        (dict(position_init="zeros"), "position_init"),
        (dict(position_embedding="frozen", position_init="sinusoidal"), "position_init"),
        (dict(position_init="sinusoidal", position_init_scale=0.0), "position_init_scale"),
    ],
)
def test_config_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=field):
        IterGPTConfig(**kwargs)


def test_unknown_choice_error_lists_allowed_values():
    with pytest.raises(ValueError, match="gelu, gelu_new, relu, silu"):
        IterGPTConfig(activation="tanh")


# ---------------------------------------------------------------------------------------------
# Save / load
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_save_load_round_trip_through_auto_classes(tmp_path, variant):
    model = tiny_model(**VARIANTS[variant])
    ids = random_ids()
    model.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert {"model.safetensors", "config.json", "configuration_itergpt.py", "modeling_itergpt.py"} <= files
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_itergpt.IterGPTConfig",
        "AutoModel": "modeling_itergpt.IterGPTModel",
        "AutoModelForCausalLM": "modeling_itergpt.IterGPTForCausalLM",
    }

    assert isinstance(AutoConfig.from_pretrained(tmp_path), IterGPTConfig)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is IterGPTForCausalLM
    assert loaded.config.to_dict() | {"_name_or_path": None} == model.config.to_dict() | {"_name_or_path": None}
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)
    base = AutoModel.from_pretrained(tmp_path).eval()
    assert type(base) is IterGPTModel
    torch.testing.assert_close(base(ids).last_hidden_state, model.model(ids).last_hidden_state, rtol=0, atol=0)

    cfg = loaded.config
    if cfg.position_embedding == "sinusoidal":  # a buffer, rebuilt on load rather than saved
        assert not any("pos_embed" in k for k in loaded.state_dict())
        torch.testing.assert_close(loaded.model.pos_embed.weight, sinusoidal_table(16, 32))
        assert not any(p is loaded.model.pos_embed.weight for p in loaded.parameters())
    if cfg.position_embedding == "frozen":  # a saved buffer: same table, never a parameter
        torch.testing.assert_close(loaded.model.pos_embed.weight, model.model.pos_embed.weight, rtol=0, atol=0)
        loaded.requires_grad_(True)
        assert not any(p is loaded.model.pos_embed.weight for p in loaded.parameters())
        assert loaded.model.pos_embed.weight.abs().max() > 0
    if cfg.tie_word_embeddings:
        assert loaded.lm_head.weight.data_ptr() == loaded.model.embed.weight.data_ptr()
    else:
        assert loaded.lm_head.weight.data_ptr() != loaded.model.embed.weight.data_ptr()


_REMOTE_SCRIPT = r"""
import json, os, sys
root, folder, ids = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
assert all(os.path.abspath(p or os.curdir) != root for p in sys.path), "repo on sys.path"
import torch
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
assert "modeling" not in sys.modules, "the repo's package was imported"
assert not any(name == "modeling" or name.startswith("modeling.") for name in sys.modules)
with torch.no_grad():
    logits = model(torch.tensor(ids)).logits
print(json.dumps({"module": type(model).__module__, "logits": logits.tolist()}))
"""


@pytest.mark.integration
def test_fresh_process_loads_with_trust_remote_code_only(tmp_path):
    model = tiny_model(residual="reference", position_embedding="sinusoidal")
    folder = tmp_path / "checkpoint"
    model.save_pretrained(folder)
    ids = random_ids()
    proc = subprocess.run(
        [sys.executable, "-c", _REMOTE_SCRIPT, str(ROOT), str(folder), json.dumps(ids.tolist())],
        cwd=tmp_path, env=clean_env(HF_MODULES_CACHE=str(tmp_path / "hf_modules")), capture_output=True, text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["module"].startswith("transformers_modules.") and result["module"].endswith("modeling_itergpt")
    with torch.no_grad():
        expected = model(ids).logits
    torch.testing.assert_close(torch.tensor(result["logits"]), expected, rtol=0, atol=1e-6)


def test_checkpoint_that_does_not_match_its_config_raises(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())

    (tmp_path / "config.json").write_text(json.dumps({**config, "n_embd": 64, "n_inner": 256}))
    with pytest.raises(RuntimeError, match="mismatched"):  # transformers' own error on shapes
        AutoModelForCausalLM.from_pretrained(tmp_path)

    (tmp_path / "config.json").write_text(json.dumps({**config, "n_layer": 3}))  # would be silent in transformers
    with pytest.raises(ValueError, match="does not match its config.*blocks.2"):
        AutoModelForCausalLM.from_pretrained(tmp_path)

    (tmp_path / "config.json").write_text(json.dumps({**config, "n_layer": 1}))
    with pytest.raises(ValueError, match="unexpected weights.*blocks.1"):
        AutoModelForCausalLM.from_pretrained(tmp_path)


# ---------------------------------------------------------------------------------------------
# Attention paths
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["default", "reference-rmsnorm-sinusoidal"])
def test_eager_and_sdpa_paths_give_the_same_logits(variant):
    model = tiny_model(**VARIANTS[variant])
    ids, mask = left_pad(PROMPTS)
    for kwargs in (dict(), dict(attention_mask=mask)):
        fast = model(ids, **kwargs)
        eager = model(ids, output_attentions=True, **kwargs)
        assert fast.attentions is None and len(eager.attentions) == 2
        torch.testing.assert_close(eager.logits, fast.logits, rtol=0, atol=1e-5)

    assert model.config._attn_implementation == "sdpa"
    model.set_attn_implementation("eager")
    assert model.config._attn_implementation == "eager"
    torch.testing.assert_close(model(ids, attention_mask=mask).logits, fast.logits, rtol=0, atol=1e-5)


def test_attention_patterns_are_causal_distributions_that_skip_padding():
    model = tiny_model()
    ids, mask = left_pad(PROMPTS)
    out = model(ids, attention_mask=mask, output_attentions=True)
    for pattern in out.attentions:
        assert pattern.shape == (3, 2, ids.shape[1], ids.shape[1])
        torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]))
        assert torch.all(pattern.triu(1) == 0)
        real_query_to_pad_key = pattern * mask[:, None, :, None] * (1 - mask)[:, None, None, :]
        assert torch.all(real_query_to_pad_key == 0)


def test_left_padding_does_not_change_the_real_tokens_logits():
    model = tiny_model()
    ids, mask = left_pad(PROMPTS)
    batched = model(ids, attention_mask=mask).logits
    for row, prompt in enumerate(PROMPTS):
        alone = model(torch.tensor([prompt])).logits[0]
        torch.testing.assert_close(batched[row, -len(prompt):], alone, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Cache and generation
# ---------------------------------------------------------------------------------------------
def test_forward_continues_from_a_cache_under_both_names():
    model = tiny_model()
    ids = random_ids(length=10)
    full = model(ids, use_cache=False)
    assert full.cache is None

    prefix = model(ids[:, :6], use_cache=True)
    assert isinstance(prefix.cache, DynamicCache) and prefix.cache.get_seq_length() == 6
    rest = model(ids[:, 6:], past_key_values=prefix.cache)  # the pre-5.x name still works
    assert rest.cache is prefix.cache and rest.cache.get_seq_length() == 10
    torch.testing.assert_close(rest.logits, full.logits[:, 6:], rtol=0, atol=1e-5)

    cache = DynamicCache(config=model.config)
    model(ids[:, :3], cache=cache)
    for t in range(3, 10):  # one token at a time, as generate does
        step = model(ids[:, t : t + 1], cache=cache)
        torch.testing.assert_close(step.logits[:, 0], full.logits[:, t], rtol=0, atol=1e-5)


def test_cached_forward_with_left_padding_matches_full_forward():
    model = tiny_model()
    ids, mask = left_pad(PROMPTS)
    full = model(ids, attention_mask=mask, use_cache=False).logits
    prefix = model(ids[:, :4], attention_mask=mask[:, :4])
    rest = model(ids[:, 4:], attention_mask=mask, cache=prefix.cache).logits
    real = mask[:, 4:].bool()
    torch.testing.assert_close(rest[real], full[:, 4:][real], rtol=0, atol=1e-5)


def greedy_without_cache(model, prompt: list[int], new_tokens: int) -> list[int]:
    """Plain argmax loop on one unpadded row, no cache; stops like generate (eos, then padding)."""
    seq = list(prompt)
    for _ in range(new_tokens):
        token = int(model(torch.tensor([seq]), use_cache=False).logits[0, -1].argmax())
        seq.append(token)
        if token == EOS:
            break
    return seq


@pytest.mark.parametrize("use_cache", [True, False])
def test_generate_matches_a_plain_greedy_loop(use_cache):
    model = tiny_model(seed=3)
    new = 8
    seen_lengths = []  # tokens fed to each forward inside generate
    handle = model.register_forward_pre_hook(
        lambda m, args, kw: seen_lengths.append(kw["input_ids"].shape[1]), with_kwargs=True
    )
    prompt = PROMPTS[0]
    greedy = dict(max_new_tokens=new, do_sample=False, pad_token_id=PAD, use_cache=use_cache)
    out = model.generate(torch.tensor([prompt]), **greedy)
    handle.remove()
    assert out[0].tolist() == greedy_without_cache(model, prompt, new)
    if use_cache:  # after the prefill, one new token per step: the cache is really used
        assert seen_lengths[0] == len(prompt) and set(seen_lengths[1:]) == {1}
    else:
        assert seen_lengths == list(range(len(prompt), len(prompt) + len(seen_lengths)))

    ids, mask = left_pad(PROMPTS)
    out = model.generate(ids, attention_mask=mask, **greedy)
    for row, prompt in enumerate(PROMPTS):
        expected = greedy_without_cache(model, prompt, new)
        got = out[row, ids.shape[1] - len(prompt):].tolist()
        assert got[: len(expected)] == expected
        assert all(t == PAD for t in got[len(expected):])  # finished rows are padded


def test_generate_past_the_context_raises_instead_of_truncating():
    model = tiny_model()
    with pytest.raises(ValueError, match="n_positions=16"):
        model.generate(
            torch.tensor([PROMPTS[2]]), max_new_tokens=20, min_new_tokens=20, do_sample=False, pad_token_id=PAD
        )


# ---------------------------------------------------------------------------------------------
# Hooks, caches of activations, weight views
# ---------------------------------------------------------------------------------------------
def expected_shape(name: str, B: int, T: int, H: int = 2, dh: int = 16, D: int = 32) -> tuple:
    suffix = name.rsplit(".", 1)[-1]
    return {
        "hook_q": (B, T, H, dh), "hook_k": (B, T, H, dh), "hook_v": (B, T, H, dh), "hook_z": (B, T, H, dh),
        "hook_attn_scores": (B, H, T, T), "hook_pattern": (B, H, T, T), "hook_result": (B, T, H, D),
        "hook_pre": (B, T, 4 * D), "hook_post": (B, T, 4 * D), "hook_scale": (B, T, 1),
    }.get(suffix, (B, T, D))


def test_every_hook_point_fires_with_its_documented_shape():
    model = tiny_model()
    points = model.hook_points()
    assert points == model.model.hook_points() and len(points) == 2 + 20 * 2 + 3
    assert all(isinstance(p, HookPoint) and p.name == n for n, p in points.items())
    ids = random_ids(batch=2, length=7)
    out, cache = model.run_with_cache(ids)
    assert set(cache) == set(points)
    for name, tensor in cache.items():
        assert tuple(tensor.shape) == expected_shape(name, 2, 7), name
        assert not tensor.requires_grad
    torch.testing.assert_close(out.logits, model(ids).logits, rtol=0, atol=1e-5)
    # hooks are gone afterwards, and the pattern is the one output_attentions returns
    assert not any(p.has_hooks() for p in points.values())
    torch.testing.assert_close(cache["blocks.1.attn.hook_pattern"], model(ids, output_attentions=True).attentions[1])

    _, some = model.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_pattern"))
    assert set(some) == {"blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"}
    _, one = model.run_with_cache(ids, names_filter="blocks.0.mlp.hook_post")
    assert list(one) == ["blocks.0.mlp.hook_post"]


def test_hidden_states_are_the_residual_stream():
    model = tiny_model()
    ids = random_ids()
    out, cache = model.run_with_cache(ids, output_hidden_states=True)
    assert len(out.hidden_states) == 3
    torch.testing.assert_close(out.hidden_states[0], cache["blocks.0.hook_resid_pre"])
    torch.testing.assert_close(out.hidden_states[1], cache["blocks.1.hook_resid_pre"])
    torch.testing.assert_close(out.hidden_states[2], cache["blocks.1.hook_resid_post"])
    torch.testing.assert_close(model.lm_head(cache["ln_final.hook_out"]), out.logits)


def test_no_op_hooks_keep_logits_and_head_ablation_changes_them():
    model = tiny_model()
    ids = random_ids()
    clean = model(ids).logits
    everywhere = [(lambda n: True, lambda x, hook: None), (lambda n: True, lambda x, hook: x.clone())]
    torch.testing.assert_close(model.run_with_hooks(ids, fwd_hooks=everywhere).logits, clean, rtol=0, atol=1e-5)

    def zero_head(x, hook, head=1):
        x = x.clone()
        x[:, :, head] = 0.0
        return x

    ablated = model.run_with_hooks(ids, fwd_hooks=[("blocks.1.attn.hook_z", zero_head)]).logits
    assert (ablated - clean).abs().max() > 1e-3
    via_result = model.run_with_hooks(ids, fwd_hooks=[("blocks.1.attn.hook_result", zero_head)]).logits
    torch.testing.assert_close(via_result, ablated, rtol=0, atol=1e-5)
    torch.testing.assert_close(model(ids).logits, clean, rtol=0, atol=0)  # nothing left attached


def test_patching_the_pattern_takes_effect():
    model = tiny_model()
    ids = random_ids()
    uniform = lambda p, hook: torch.tril(torch.ones_like(p)) / torch.tril(torch.ones_like(p)).sum(-1, keepdim=True)
    with model.hooks([("blocks.0.attn.hook_pattern", uniform)]):
        patched, cache = model.run_with_cache(ids, names_filter="blocks.0.attn.hook_pattern")
    torch.testing.assert_close(cache["blocks.0.attn.hook_pattern"][0, 0, 3], torch.tensor([0.25] * 4 + [0.0] * 3))
    assert (patched.logits - model(ids).logits).abs().max() > 1e-4


def test_hooks_are_removed_when_the_forward_fails():
    model = tiny_model()

    def boom(x, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        model.run_with_hooks(random_ids(), fwd_hooks=[("blocks.0.hook_resid_mid", boom)])
    assert not any(p.has_hooks() for p in model.hook_points().values())
    with pytest.raises(ValueError, match="unknown hook point"):
        model.run_with_cache(random_ids(), names_filter=["blocks.0.hook_nope"])


@pytest.mark.parametrize("variant", ["default", "tied-biased-gelu_new"])
def test_weight_views_reproduce_the_computation(variant):
    model = tiny_model(**VARIANTS[variant])
    n_layer, H, D, dh = 2, 2, 32, 16
    assert model.W_Q.shape == model.W_K.shape == model.W_V.shape == (n_layer, H, D, dh)
    assert model.W_O.shape == (n_layer, H, dh, D)
    assert model.W_in.shape == (n_layer, D, 4 * D) and model.W_out.shape == (n_layer, 4 * D, D)
    assert model.W_E.shape == (64, D) and model.W_pos.shape == (16, D) and model.W_U.shape == (D, 64)
    ids = random_ids()
    _, cache = model.run_with_cache(ids)
    for layer, block in enumerate(model.model.blocks):
        attn = block.attn
        normed = block.ln1(cache[f"blocks.{layer}.hook_resid_pre"])  # (B, T, D)
        for which, W, b in (("q", model.W_Q, attn.b_Q), ("k", model.W_K, attn.b_K), ("v", model.W_V, attn.b_V)):
            manual = torch.einsum("btm,hmd->bthd", normed, W[layer]) + b  # (B, T, H, dh)
            torch.testing.assert_close(manual, cache[f"blocks.{layer}.attn.hook_{which}"], rtol=0, atol=1e-5)
        z = cache[f"blocks.{layer}.attn.hook_z"]
        per_head = torch.einsum("bthd,hdm->bthm", z, model.W_O[layer])
        torch.testing.assert_close(per_head, cache[f"blocks.{layer}.attn.hook_result"], rtol=0, atol=1e-5)
        attn_out = cache[f"blocks.{layer}.hook_resid_mid"] - cache[f"blocks.{layer}.hook_resid_pre"]
        torch.testing.assert_close(per_head.sum(2) + attn.b_O, attn_out, rtol=0, atol=1e-5)


def test_reference_block_follows_the_paper_code():
    """pal/src/cot/models/transformer.py: x = norm_1(x); x = x + attn(x); x = x + ffn(norm_2(x))."""
    model = tiny_model(residual="reference")
    ids = random_ids()
    _, cache = model.run_with_cache(ids)
    for layer, block in enumerate(model.model.blocks):
        x = block.ln1(cache[f"blocks.{layer}.hook_resid_pre"])
        x = x + block.attn(x)[0]
        torch.testing.assert_close(x, cache[f"blocks.{layer}.hook_resid_mid"], rtol=0, atol=1e-5)
        x = x + block.mlp(block.ln2(x))
        torch.testing.assert_close(x, cache[f"blocks.{layer}.hook_resid_post"], rtol=0, atol=1e-5)
    standard = tiny_model()
    assert (standard(ids).logits - model(ids).logits).abs().max() > 1e-3  # same weights, other layout


# ---------------------------------------------------------------------------------------------
# Loss and bad inputs
# ---------------------------------------------------------------------------------------------
def test_loss_is_shifted_cross_entropy_over_unmasked_targets():
    model = tiny_model()
    ids = random_ids(length=9)
    labels = ids.clone()
    labels[:, :5] = -100
    out = model(ids, labels=labels)
    manual = F.cross_entropy(out.logits[:, 4:-1].reshape(-1, 64), ids[:, 5:].reshape(-1))
    torch.testing.assert_close(out.loss, manual)
    out.loss.backward()
    assert model.model.embed.weight.grad is not None


def test_return_dict_false_gives_a_tuple():
    model = tiny_model()
    logits, cache = model(random_ids(), return_dict=False)
    assert logits.shape == (2, 7, 64) and isinstance(cache, DynamicCache)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m(torch.zeros(1, 17, dtype=torch.long)), "exceeds the context of n_positions=16"),
        (lambda m: m(torch.tensor([[1, 64]])), r"outside \[0, vocab_size=64\)"),
        (lambda m: m(torch.tensor([[-1, 3]])), "outside"),
        (lambda m: m(torch.tensor([[1.0, 2.0]])), "integer token ids"),
        (lambda m: m(torch.tensor([1, 2, 3])), r"shape \(batch, seq_len\)"),
        (lambda m: m(torch.tensor([[1, 2, 3]]), attention_mask=torch.ones(1, 2)), "attention_mask must have shape"),
        (lambda m: m(torch.tensor([[1, 2, 3]]), attention_mask=torch.ones(1, 1, 3, 3)), "4-D attention_mask must be boolean"),
        (lambda m: m(torch.tensor([[1, 2, 3]]), attention_mask=torch.ones(1, 1, 3, 2, dtype=torch.bool)), r"\(1, 1, 3, 3\)"),
        (lambda m: m(torch.tensor([[1, 2]]), position_ids=torch.tensor([[3, 16]])), "position_ids"),
        (lambda m: m(torch.tensor([[1, 2]]), past_key_values=((torch.zeros(1),),)), "Cache"),
        (lambda m: m(torch.tensor([[1, 2]]), labels=torch.tensor([[1, 2, 3]])), "labels must have shape"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(tiny_model())


def test_cache_plus_new_tokens_beyond_the_context_raises():
    model = tiny_model()
    cache = model(torch.zeros(1, 12, dtype=torch.long)).cache
    with pytest.raises(ValueError, match="12 cached \\+ 5 new"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)


def test_sinusoidal_position_init_is_a_trained_table_that_round_trips(tmp_path):
    model = tiny_model(position_init="sinusoidal", position_init_scale=0.5)
    table = model.model.pos_embed.weight
    torch.testing.assert_close(table, 0.5 * sinusoidal_table(16, 32), rtol=0, atol=0)
    assert table.requires_grad and any(p is table for p in model.parameters())
    with torch.no_grad():
        table.add_(0.25)  # "trained": the saved values, not the initial table, must come back
    model.save_pretrained(tmp_path)
    loaded = IterGPTForCausalLM.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded.model.pos_embed.weight, table, rtol=0, atol=0)
    # The default stays the reference code's N(0, initializer_range) table.
    assert tiny_model().model.pos_embed.weight.std().item() == pytest.approx(0.02, rel=0.2)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_block_diagonal_mask_with_restarted_positions_equals_separate_rows(implementation):
    # Two sequences packed in one row attend only within themselves: their logits are those of the
    # sequences run alone (what packed training relies on).
    model = tiny_model()
    model.config._attn_implementation = implementation
    a, b = torch.tensor([[PARITY, 1, 0, EOI, 1, 1]]), torch.tensor([[PARITY, 1, EOI, 1]])
    packed = torch.cat([a, b], dim=1)
    seg = torch.tensor([0] * 6 + [1] * 4)
    mask = (seg[:, None] == seg[None, :]) & torch.ones(10, 10, dtype=torch.bool).tril()
    positions = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 1, 2, 3]])
    logits = model(packed, attention_mask=mask[None, None], position_ids=positions).logits
    torch.testing.assert_close(logits[:, :6], model(a).logits)
    torch.testing.assert_close(logits[:, 6:], model(b).logits)
    # Without the mask, the second sequence sees the first and its logits change.
    assert not torch.allclose(model(packed, position_ids=positions).logits[:, 6:], model(b).logits, atol=1e-4)


def test_package_import_registers_the_auto_classes():
    assert modeling.IterGPTConfig.model_type == "itergpt"
    config = AutoConfig.for_model("itergpt", **TINY_MODEL)
    assert type(AutoModelForCausalLM.from_config(config)) is IterGPTForCausalLM
    assert type(AutoModel.from_config(config)) is IterGPTModel


# ---------------------------------------------------------------------------------------------
# One source: field metadata, the v5 forward decorators, hook_points.py
# ---------------------------------------------------------------------------------------------
def _bounded_fields():
    import dataclasses
    return [f for f in dataclasses.fields(IterGPTConfig) if {"ge", "gt", "le", "lt"} & set(f.metadata)]


@pytest.mark.parametrize("field", _bounded_fields(), ids=lambda f: f.name)
def test_config_enforces_the_bounds_its_fields_declare(field):
    """Each bound in a field's metadata is the one the config enforces: the bound itself is accepted
    (``ge``/``le``), a value just past it is a ValueError naming the field, the value and the bound."""
    integer = field.type.startswith("int")
    step = 1 if integer else 1e-3
    extra = {"n_embd": dict(n_head=1),  # what the smallest value of a field needs of the others
             "vocab_size": dict(pad_token_id=None, bos_token_id=None, eos_token_id=None, eoi_token_id=None),
             }.get(field.name, {})
    for key, past in (("ge", -step), ("gt", 0.0), ("le", step), ("lt", 0.0)):
        bound = field.metadata.get(key)
        if bound is None:
            continue
        if key in ("ge", "le"):
            assert getattr(IterGPTConfig(**{**extra, field.name: bound}), field.name) == bound
        bad = bound + past
        with pytest.raises(ValueError, match=rf"{field.name}={bad!r} is invalid: it must be .*{bound}"):
            IterGPTConfig(**{**extra, field.name: bad})


def test_train_config_reads_help_and_ranges_from_the_config_fields():
    import dataclasses
    from training.config import ModelConfig, describe

    declared = {f.name: f for f in dataclasses.fields(IterGPTConfig)}
    for f in dataclasses.fields(ModelConfig):
        assert f.default == declared[f.name].default, f.name
        assert f.metadata["help"] == declared[f.name].metadata["help"] != "", f.name
        for key in ("ge", "gt", "le", "lt", "choices"):
            assert f.metadata.get(key) == declared[f.name].metadata.get(key), (f.name, key)
    assert "model.activation = 'gelu'  [gelu|gelu_new|relu|silu]" in describe()


def test_past_key_values_is_renamed_silently_and_both_names_raise():
    import warnings

    model = tiny_model()
    ids = random_ids(length=8)
    for forward in (model, model.model):  # the causal LM and the bare model
        prefix = forward(ids[:, :5])
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # as before: no warning for the older name
            rest = forward(ids[:, 5:], past_key_values=prefix.cache)
        assert rest.cache is prefix.cache and rest.cache.get_seq_length() == 8
        with pytest.raises(ValueError, match="Pass the cache once"):
            forward(ids[:, 5:], cache=prefix.cache, past_key_values=prefix.cache)
    out = model.model(ids, return_dict=False)  # the bare model's tuple: (last_hidden_state, cache)
    assert isinstance(out, tuple) and out[0].shape == (2, 8, 32) and isinstance(out[1], DynamicCache)


def test_hook_points_live_in_their_own_shipped_module(tmp_path):
    from modeling import hook_points

    assert HookPoint is hook_points.HookPoint and HookPoint.__module__ == "modeling.hook_points"
    assert isinstance(tiny_model(), hook_points.HookedRootMixin)
    tiny_model().save_pretrained(tmp_path)  # save_pretrained copies the relative import beside the model
    source = os.path.join(ROOT, "modeling", "hook_points.py")
    assert (tmp_path / "hook_points.py").read_bytes() == open(source, "rb").read()
