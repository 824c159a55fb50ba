"""Interoperability: the GPT-2 export (tiny models and the released ones in hub/), TransformerLens 4,
nnsight, and the TransformerLens-style hook API's strictness (unknown arguments, backward hooks,
return_type, the added hook points). Tiny configs and the six released models, CPU, seconds."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

from modeling import IterGPTConfig, IterGPTForCausalLM
from model_cards.verify import without_version_stamps
from modeling.gpt2 import ConversionError, from_gpt2, to_gpt2, write_gpt2
from helpers import HUB, TINY_MODEL, clean_env, hub_mark, require, run_cli, tiny_model

RELEASED_ALL = sorted(p.name for p in HUB.glob("iteration-head-*") if (p / "config.json").is_file())
# The released models with a stock GPT-2 copy: every one whose architecture converts (checked below).
RELEASED = [name for name in RELEASED_ALL if (HUB / name / "gpt2").is_dir()]
PAD, EOI, PARITY = 63, 61, 58
PROMPTS = [[PARITY, 1, 0, 1, EOI], [PARITY, 1, 1, 0, 0, 1, 0, EOI], [PARITY, 0, EOI]]
INTEROP_EXTRA = "the 'interop' extra is not installed (pip install -e '.[interop]')"
needs_hub = hub_mark(HUB)
pytestmark = pytest.mark.interop


def ids(rows=PROMPTS) -> torch.Tensor:
    return torch.tensor([rows[1]])  # the longest prompt, unpadded


def greedy(model, prompt: list[int], n: int = 6) -> list[int]:
    out = model.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False, pad_token_id=PAD)
    return out[0, len(prompt):].tolist()


# ---------------------------------------------------------------------------------------------
# GPT-2 export
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [{}, dict(bias=True, norm_bias=True, activation="gelu_new"),
                                       dict(position_embedding="sinusoidal", tie_word_embeddings=True)])
def test_gpt2_export_has_our_logits_and_generations_and_converts_back(overrides):
    model = tiny_model(**overrides)
    gpt2 = to_gpt2(model)
    assert type(gpt2) is GPT2LMHeadModel and not gpt2.training
    x = torch.randint(0, 64, (3, 11), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(gpt2(x).logits, model(x).logits, rtol=0, atol=1e-5)
    for prompt in PROMPTS:
        assert greedy(gpt2, prompt) == greedy(model, prompt)
    back = from_gpt2(gpt2)
    assert (back.config.bias, back.config.norm_bias) == (model.config.bias, model.config.norm_bias)
    assert back.config.eoi_token_id == EOI
    mine = dict(model.named_parameters())  # a fixed position table is no parameter: compared below
    for name, value in back.named_parameters():
        if name != "model.pos_embed.weight":
            torch.testing.assert_close(value, mine[name], rtol=0, atol=0, msg=name)
    torch.testing.assert_close(back.model.pos_embed.weight, model.model.pos_embed.weight, rtol=0, atol=0)
    assert back.config.position_embedding == "learned"  # GPT-2 has no fixed table
    torch.testing.assert_close(back(x).logits, model(x).logits, rtol=0, atol=1e-6)


@pytest.mark.parametrize("field, value", [("residual", "reference"), ("norm", "rmsnorm")])
def test_unconvertible_architectures_name_the_field(field, value):
    with pytest.raises(ConversionError, match=f"{field}='{value}' has no GPT-2 equivalent"):
        to_gpt2(tiny_model(**{field: value}))


def test_gpt2_with_a_feature_we_lack_is_refused():
    gpt2 = to_gpt2(tiny_model())
    gpt2.config.scale_attn_by_inverse_layer_idx = True
    with pytest.raises(ConversionError, match="scale_attn_by_inverse_layer_idx=True"):
        from_gpt2(gpt2)


@needs_hub
@pytest.mark.parametrize("name", RELEASED)
def test_released_gpt2_copy_is_the_converters_output_with_equal_logits(name, tmp_path):
    folder = HUB / name
    ours = IterGPTForCausalLM.from_pretrained(folder).eval()
    shipped = GPT2LMHeadModel.from_pretrained(folder / "gpt2").eval()  # stock class, no remote code
    expected = to_gpt2(ours)
    expected.save_pretrained(tmp_path)
    for doc in ("config.json", "generation_config.json"):
        shipped_doc, fresh = (without_version_stamps(json.loads(p.read_text())) for p in (folder / "gpt2" / doc, tmp_path / doc))
        assert shipped_doc == fresh, (
            f"hub/{name}/gpt2/{doc} is stale: rerun python -m modeling.gpt2 --model hub/{name} --out hub/{name}/gpt2")
    want = expected.state_dict()
    for key, value in shipped.state_dict().items():
        torch.testing.assert_close(value, want[key], rtol=0, atol=0, msg=key)
    write_gpt2(folder, tmp_path / "gpt2")  # the tokenizer files as the converter writes them
    for copied in ("tokenizer.json", "tokenizer_config.json"):
        assert (folder / "gpt2" / copied).read_bytes() == (tmp_path / "gpt2" / copied).read_bytes(), (
            f"hub/{name}/gpt2/{copied} is stale: rerun python -m model_cards.release --out hub --sync-code")
    x = torch.tensor([[58, 1, 0, 1, 1, 0, 61, 1, 1, 0, 0, 0]])
    torch.testing.assert_close(shipped(x).logits, ours(x).logits, rtol=0, atol=1e-5)
    for prompt in PROMPTS:
        assert greedy(shipped, prompt) == greedy(ours, prompt)


@pytest.mark.integration
@needs_hub
def test_a_released_model_lacks_a_gpt2_copy_only_when_it_cannot_convert():
    """Every released model ships gpt2/ unless the converter refuses its architecture, and then its
    card says why (the paper-recipe model: the reference's block layout)."""
    without = [name for name in RELEASED_ALL if name not in RELEASED]
    for name in without:
        with pytest.raises(ConversionError, match="residual"):
            to_gpt2(IterGPTForCausalLM.from_pretrained(HUB / name))
        assert "This model ships no stock GPT-2 copy: its blocks follow the paper code's layout" in (
            HUB / name / "README.md").read_text()
    assert "iteration-head-parity" in RELEASED and len(RELEASED) >= 6


def test_gpt2_cli_writes_atomically_and_only_replaces_its_own_output(tmp_path):
    model = tmp_path / "model"
    tiny_model().save_pretrained(model)
    out = tmp_path / "model" / "gpt2"
    cmd = [sys.executable, "-m", "modeling.gpt2", "--model", str(model), "--out", str(out)]
    done = run_cli(cmd, timeout=120)
    assert done.returncode == 0, done.stderr
    assert GPT2LMHeadModel.from_pretrained(out).config.converted_from == "IterGPTForCausalLM"
    write_gpt2(model, out)  # its own output: replaced
    assert sorted(p.name for p in tmp_path.joinpath("model").iterdir() if p.name.startswith(".")) == []

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    done = run_cli(cmd[:-1] + [str(foreign)], timeout=120)
    assert done.returncode == 2 and "error:" in done.stderr and "refusing to overwrite" in done.stderr
    assert (foreign / "notes.txt").read_text() == "mine"

    reference = tmp_path / "reference"
    tiny_model(residual="reference").save_pretrained(reference)
    with pytest.raises(ConversionError, match="residual='reference'"):
        write_gpt2(reference, tmp_path / "ref-gpt2")
    assert not (tmp_path / "ref-gpt2").exists()
    with pytest.raises(ValueError, match="not a saved IterGPT model"):
        write_gpt2(tmp_path / "nothing", tmp_path / "x")


# ---------------------------------------------------------------------------------------------
# TransformerLens 4 and nnsight
# ---------------------------------------------------------------------------------------------
@needs_hub
def test_transformer_lens_bridge_patterns_equal_ours():
    require("transformer_lens", INTEROP_EXTRA)
    from modeling.gpt2 import transformer_lens_bridge

    folder = HUB / "iteration-head-parity"
    bridge = transformer_lens_bridge(folder)
    tokens = bridge.to_tokens("<parity> 1 0 1 1 <eoi> 1 1 0")
    assert tokens.tolist() == [[58, 1, 0, 1, 1, 61, 1, 1, 0]]  # no BOS prepended
    logits, cache = bridge.run_with_cache(tokens)
    ours = IterGPTForCausalLM.from_pretrained(folder).eval()
    out, mine = ours.run_with_cache(tokens)
    torch.testing.assert_close(logits, out.logits, rtol=0, atol=1e-4)
    for layer in range(ours.config.n_layer):
        for name in ("attn.hook_pattern", "attn.hook_z", "hook_attn_out", "ln1.hook_scale", "ln1.hook_normalized"):
            key = f"blocks.{layer}.{name}"
            torch.testing.assert_close(cache[key], mine[key], rtol=0, atol=1e-4, msg=key)


@needs_hub
def test_transformer_lens_boots_a_released_gpt2_copy_as_it_stands():
    """TransformerLens 4's own loader on hub/<repo>/gpt2, no helper of ours: its tokenizer probe
    (encode("a")) meets the copy's unknown token; patterns and logits are ours."""
    require("transformer_lens", INTEROP_EXTRA)
    from transformer_lens.model_bridge import TransformerBridge

    folder = HUB / "iteration-head-parity"
    bridge = TransformerBridge.boot_transformers(str(folder / "gpt2"), device="cpu")
    tokens = bridge.to_tokens("<parity> 1 0 1 1 <eoi> 1 1 0", prepend_bos=False)
    assert tokens.tolist() == [[58, 1, 0, 1, 1, 61, 1, 1, 0]]
    logits, cache = bridge.run_with_cache(tokens)
    ours = IterGPTForCausalLM.from_pretrained(folder).eval()
    out, mine = ours.run_with_cache(tokens)
    torch.testing.assert_close(logits, out.logits, rtol=0, atol=1e-4)
    for layer in range(ours.config.n_layer):
        for name in ("attn.hook_pattern", "attn.hook_z", "hook_attn_out"):
            key = f"blocks.{layer}.{name}"
            torch.testing.assert_close(cache[key], mine[key], rtol=0, atol=1e-4, msg=key)


@needs_hub
@pytest.mark.parametrize("name", RELEASED)
def test_released_gpt2_tokenizer_maps_unknown_words_to_a_token_no_training_row_holds(name):
    """The copy's tokenizer: the model's ids, plus an unknown token that is an existing token absent
    from every training row of the model's task(s) (rows built as the training data builds them)."""
    from datasets_builders import tasks
    from modeling.gpt2 import unknown_token

    folder = HUB / name
    mine, copy = (PreTrainedTokenizerFast.from_pretrained(f) for f in (folder, folder / "gpt2"))
    assert copy.get_vocab() == mine.get_vocab() and len(copy) == len(mine) == 64  # no id added or moved
    unk = unknown_token(folder)
    assert copy.unk_token == unk and copy.unk_token_id == mine.convert_tokens_to_ids(unk)
    assert copy("a <eoi> 1").input_ids == [copy.unk_token_id, 61, 1]
    assert copy("<parity> 1 0 <eoi>").input_ids == mine("<parity> 1 0 <eoi>").input_ids == [58, 1, 0, 61]
    with pytest.raises(Exception, match="UNK"):
        mine("a")  # the model's own tokenizer still rejects an unknown word
    data = json.loads((folder / "training_info.json").read_text())["train_config"]["data"]
    names = ["copy", data["mix_with"]] if data["task"] == "mix" else [data["task"]]
    rng = np.random.default_rng(0)
    for task_name in names:
        task = tasks.make_task(task_name, data["modulus"], [tuple(t) for t in data["polynomial"]])
        for length in range(data["min_length"], data["max_length"] + 1):
            inputs = tasks.sample_unique_inputs(task, length, min(64, task.num_sequences(length)), rng)
            assert copy.unk_token_id not in tasks.build_rows(task, inputs, data["cot"]), (task_name, length)
    # The first choice is <bos>; a model whose rows open with <bos> (the tasks beyond the paper's) gets the next.
    opens_with_bos = any(tasks.make_task(n, data["modulus"]).token_id == tasks.BOS_ID for n in names)
    assert (unk == "<bos>") != opens_with_bos, (name, unk)


def test_unknown_token_follows_the_tasks_of_the_run(tmp_path):
    from modeling.gpt2 import unknown_token

    assert unknown_token(tmp_path) == "<bos>"  # no training_info.json
    for task, expected in (("parity", "<bos>"), ("mix", "<bos>"), ("cyclic3", "<copy>"), ("symmetric3", "<copy>")):
        info = {"train_config": {"data": {"task": task, "mix_with": "polynomial"}}}
        (tmp_path / "training_info.json").write_text(json.dumps(info))
        assert unknown_token(tmp_path) == expected, task


@needs_hub
def test_nnsight_reads_a_pattern_and_patches_a_head():
    """nnsight wraps modules instead of attaching torch hooks; the lazy points (eager pattern, per-head
    result, the norms' scale) are computed while its trace runs, with no materialize_hooks flag."""
    nnsight = require("nnsight", INTEROP_EXTRA)
    from modeling.modeling_itergpt import _watched

    folder = HUB / "iteration-head-parity"
    model = IterGPTForCausalLM.from_pretrained(folder).eval()  # as loaded: no flag
    assert not model.config.materialize_hooks
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    lm = nnsight.TransformersModel(model, task="text-generation", tokenizer=tokenizer)
    x = torch.tensor([[58, 1, 0, 1, 1, 61, 1, 1, 0]])
    with lm.trace(x):  # in the order the forward pass reaches them
        scale = lm.model.blocks[0].ln1.hook_scale.output.save()
        scores = lm.model.blocks[1].attn.hook_attn_scores.output.save()
        pattern = lm.model.blocks[1].attn.hook_pattern.output.save()
        result = lm.model.blocks[1].attn.hook_result.output.save()
        normalized = lm.model.ln_final.hook_normalized.output.save()
        clean = lm.output.logits.save()
    names = ["blocks.0.ln1.hook_scale", "blocks.1.attn.hook_attn_scores", "blocks.1.attn.hook_pattern",
             "blocks.1.attn.hook_result", "ln_final.hook_normalized"]
    out, mine = model.run_with_cache(x)  # every point hooked: the path the trace took
    for name, got in zip(names, (scale, scores, pattern, result, normalized)):
        torch.testing.assert_close(got, mine[name], rtol=1e-5, atol=1e-6, msg=name)  # scores reach ~60
    torch.testing.assert_close(clean, out.logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(clean, model(x).logits, rtol=0, atol=1e-4)  # the fused plain forward
    # Outside a trace the wrapped model stays lazy: a plain forward keeps the fused kernels.
    points = model.hook_points()
    assert not any(_watched(model.config, points[name]) for name in names)

    with lm.trace(x):
        lm.model.blocks[1].attn.hook_z.output[:, :, 0] = 0.0  # ablate head 0 of layer 1
        patched = lm.output.logits.save()

    def zero_head(z, hook):
        z = z.clone()
        z[:, :, 0] = 0.0
        return z

    expected = model.run_with_hooks(x, fwd_hooks=[("blocks.1.attn.hook_z", zero_head)]).logits
    torch.testing.assert_close(patched, expected, rtol=0, atol=1e-4)  # fused kernels where nothing is hooked
    assert (patched - clean).abs().max() > 1e-2  # the head matters


def test_lazy_points_are_invisible_without_materialize_hooks_and_logits_do_not_change():
    model = tiny_model()
    x = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(3))
    lazy = model(x).logits
    model.config.materialize_hooks = True
    seen = []
    for name, point in model.hook_points().items():
        point.forward = (lambda n, f: lambda t: (seen.append(n), f(t))[1])(name, point.forward)  # not a torch hook
    torch.testing.assert_close(model(x).logits, lazy, rtol=0, atol=1e-5)
    assert set(seen) == set(model.hook_points())
    model.config.materialize_hooks = False
    seen.clear()
    model(x)
    lazy_names = {n for n in model.hook_points() if n.rsplit(".", 1)[-1] in
                  ("hook_attn_scores", "hook_pattern", "hook_result", "hook_scale", "hook_normalized")}
    assert lazy_names and not lazy_names & set(seen)


# ---------------------------------------------------------------------------------------------
# The TransformerLens-style API fails loudly
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwarg", ["incl_bwd", "fwd_hooks", "retrun_type", "cache_position"])
def test_forward_rejects_unknown_arguments(kwarg):
    model = tiny_model()
    with pytest.raises(TypeError, match=kwarg):
        model(ids(), **{kwarg: True})
    with pytest.raises(TypeError, match=kwarg):
        model.model(ids(), **{kwarg: True})
    with pytest.raises(TypeError, match=kwarg):
        model.run_with_hooks(ids(), **{kwarg: True}) if kwarg != "fwd_hooks" else model(ids(), fwd_hooks=[])
    with pytest.raises(ValueError, match="return_type='logit' is unknown"):
        model.run_with_cache(ids(), return_type="logit")


def test_return_type_as_in_transformer_lens():
    model = tiny_model()
    x = ids()
    out = model(x, labels=x)
    torch.testing.assert_close(model.run_with_hooks(x, return_type="logits"), out.logits)
    torch.testing.assert_close(model.run_with_hooks(x, return_type="loss"), out.loss)
    logits, loss = model.run_with_cache(x, return_type="both")[0]
    torch.testing.assert_close(loss, out.loss)
    assert model.run_with_hooks(x, return_type=None) is None


def test_backward_hooks_see_and_replace_gradients():
    model = tiny_model()
    x = ids()
    seen = {}

    def record(grad, hook):
        seen[hook.name] = grad.clone()

    loss = model.run_with_hooks(x, bwd_hooks=[("blocks.1.hook_resid_mid", record)], return_type="loss")
    loss.backward()  # after run_with_hooks returned: the hook is attached to this pass's activations
    assert seen["blocks.1.hook_resid_mid"].shape == (1, x.shape[1], TINY_MODEL["n_embd"])

    _, cache = model.run_with_cache(x, names_filter=["blocks.0.hook_mlp_out", "blocks.1.hook_resid_mid"],
                                    incl_bwd=True)
    torch.testing.assert_close(cache["blocks.1.hook_resid_mid_grad"], seen["blocks.1.hook_resid_mid"])
    assert cache["blocks.0.hook_mlp_out_grad"].abs().sum() > 0

    model.zero_grad()
    model.run_with_hooks(x, bwd_hooks=[("blocks.1.hook_resid_post", lambda g, h: torch.zeros_like(g))],
                         return_type="loss").backward()
    assert model.model.blocks[0].mlp.fc_in.weight.grad.abs().sum() == 0  # every path crosses resid_post of 1


def test_new_hook_points_add_up_and_hook_final_is_an_alias():
    model = tiny_model(norm_bias=True)
    x = ids()
    out, cache = model.run_with_cache(x)
    for layer in range(2):
        b = f"blocks.{layer}."
        torch.testing.assert_close(cache[b + "hook_resid_pre"] + cache[b + "hook_attn_out"], cache[b + "hook_resid_mid"])
        torch.testing.assert_close(cache[b + "hook_resid_mid"] + cache[b + "hook_mlp_out"], cache[b + "hook_resid_post"])
        torch.testing.assert_close(cache[b + "attn.hook_result"].sum(2), cache[b + "hook_attn_out"], atol=1e-5, rtol=0)
        resid, ln = cache[b + "hook_resid_pre"], model.model.blocks[layer].ln1
        centred = resid - resid.mean(-1, keepdim=True)
        torch.testing.assert_close(cache[b + "ln1.hook_normalized"], centred / cache[b + "ln1.hook_scale"])
        torch.testing.assert_close(cache[b + "ln1.hook_out"], cache[b + "ln1.hook_normalized"] * ln.weight + ln.bias)
    _, final = model.run_with_cache(x, names_filter="hook_final")
    assert list(final) == ["ln_final.hook_out"]
    torch.testing.assert_close(model.lm_head(final["ln_final.hook_out"]), out.logits)
    # editing the scale reaches the output
    doubled = model.run_with_hooks(x, fwd_hooks=[("ln_final.hook_scale", lambda s, h: s * 2)]).logits
    normalized = model.run_with_cache(x, names_filter="ln_final.hook_normalized")[1]["ln_final.hook_normalized"]
    ln = model.model.ln_final
    torch.testing.assert_close(doubled, model.lm_head(normalized / 2 * ln.weight + ln.bias))


def test_standard_config_names():
    config = IterGPTConfig(**TINY_MODEL)
    assert (config.head_dim, config.d_head, config.hidden_act) == (16, 16, "gelu")
    config.d_head = 16  # TransformerLens copies it over: same value, accepted
    config.hidden_act = "relu"
    assert config.activation == "relu"
    with pytest.raises(ValueError, match="head_dim=8 is derived"):
        config.head_dim = 8


def test_gradient_checkpointing_gives_the_same_gradients():
    x = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(5))
    grads = []
    for checkpointing in (False, True):
        model = tiny_model().train()
        model.config.embd_pdrop = 0.0
        if checkpointing:
            model.activation_checkpointing_enable()  # formerly gradient_checkpointing_enable
            assert all(block.gradient_checkpointing for block in model.model.blocks)
        model(x, labels=x).loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=0, atol=1e-6, msg=name)


def test_static_cache_is_a_clear_error():
    model = tiny_model()
    with pytest.raises(ValueError, match="cache_implementation='static'"):
        model.generate(torch.tensor([PROMPTS[0]]), max_new_tokens=3, cache_implementation="static",
                       do_sample=False, pad_token_id=PAD)


# ---------------------------------------------------------------------------------------------
# Honest defaults in the files users load
# ---------------------------------------------------------------------------------------------
@needs_hub
def test_tokenizer_defaults_fit_generation_and_the_context(tmp_path):
    from datasets_builders.tokenizer import build_tokenizer

    build_tokenizer().save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert (saved["model_max_length"], saved["padding_side"]) == (64, "left")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    model = IterGPTForCausalLM.from_pretrained(HUB / "iteration-head-parity").eval()
    prompts = ["<parity> 1 0 1 1 <eoi>", "<parity> 1 <eoi>", "<parity> 0 1 1 0 1 0 0 1 <eoi>"]
    batch = tokenizer(prompts, padding=True, return_tensors="pt")  # the tokenizer's default side
    out = model.generate(**batch, max_new_tokens=12, do_sample=False)
    for row, prompt in enumerate(prompts):
        alone = tokenizer(prompt, return_tensors="pt").input_ids
        single = model.generate(alone, max_new_tokens=12, do_sample=False)[0, alone.shape[1]:]
        got = out[row, batch.input_ids.shape[1]:]
        assert got[: len(single)].tolist() == single.tolist(), prompt


@needs_hub
def test_generation_max_length_is_the_context_also_for_released_configs(tmp_path):
    shutil.copytree(HUB / "iteration-head-parity", tmp_path / "old", ignore=shutil.ignore_patterns("gpt2"))
    path = tmp_path / "old" / "generation_config.json"
    path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "max_length"}))
    model = IterGPTForCausalLM.from_pretrained(tmp_path / "old")  # a file saved without max_length
    assert model.generation_config.max_length == model.config.n_positions == 64
    tiny_model().save_pretrained(tmp_path)
    assert json.loads((tmp_path / "generation_config.json").read_text())["max_length"] == TINY_MODEL["n_positions"]
    prompt = torch.tensor([[PARITY] + [1, 0] * 11 + [EOI]])  # 24 tokens: past transformers' default 20
    assert model.generate(prompt, do_sample=False).shape[1] > 24


@contextlib.contextmanager
def length_warnings():
    """What transformers says while the block runs (its logger's warnings and Python warnings) about
    ``max_length`` / ``max_new_tokens``, collected into the list it yields."""
    records, said = [], []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield said
    finally:
        logger.removeHandler(handler)
        said += [m for m in [r.getMessage() for r in records if r.levelno >= logging.WARNING]
                 + [str(w.message) for w in caught] if "max_length" in m or "max_new_tokens" in m]


@needs_hub
@pytest.mark.parametrize("name", RELEASED)
def test_neither_the_model_nor_its_gpt2_copy_warns_on_generate_with_max_new_tokens(name):
    """generate(max_new_tokens=...) says nothing about lengths for the IterGPT model (remote code) nor
    its stock GPT-2 copy. The model's generation_config.json carries max_length = n_positions; the
    copy's carries the limit as max_new_tokens (the longest chain that fits the context), not
    max_length: generate() alone still completes a chain past transformers' default 20 tokens, and
    never runs past the 64 positions."""
    folder = HUB / name
    saved = json.loads((folder / "generation_config.json").read_text())
    assert saved["max_length"] == json.loads((folder / "config.json").read_text())["n_positions"] == 64
    gpt2_saved = json.loads((folder / "gpt2" / "generation_config.json").read_text())
    assert "max_length" not in gpt2_saved and gpt2_saved["max_new_tokens"] == (64 - 3) // 2 + 1
    long_prompt = torch.tensor([[PARITY] + [1, 0] * 11 + [EOI]])  # 24 tokens, L = 22
    for model in (IterGPTForCausalLM.from_pretrained(folder).eval(), GPT2LMHeadModel.from_pretrained(folder / "gpt2").eval()):
        kind = type(model).__name__
        with length_warnings() as said:
            out = model.generate(torch.tensor([PROMPTS[1]]), max_new_tokens=8, do_sample=False)
            full = model.generate(long_prompt, do_sample=False)
            shortest = model.generate(long_prompt, max_new_tokens=1, do_sample=False)
        assert not said, (kind, said)
        assert out.shape[1] <= len(PROMPTS[1]) + 8 and shortest.shape[1] == 25, kind  # max_new_tokens honoured
        assert 24 < full.shape[1] <= 64, kind  # the default neither cuts at 20 tokens nor leaves the context


@needs_hub
@pytest.mark.integration
def test_tokenizers_load_without_a_remote_code_prompt():
    code = ("from transformers import AutoTokenizer, PreTrainedTokenizerFast\n"
            f"a = AutoTokenizer.from_pretrained({str(HUB / 'iteration-head-parity' / 'gpt2')!r})\n"
            f"b = PreTrainedTokenizerFast.from_pretrained({str(HUB / 'iteration-head-parity')!r})\n"
            "assert a('<parity> 1 <eoi>').input_ids == b('<parity> 1 <eoi>').input_ids == [58, 1, 61]\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd="/", env=clean_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
    assert "[y/N]" not in done.stdout + done.stderr


def test_dataset_prompt_completion_and_labels_reproduce_the_papers_loss():
    from datasets_builders import iteration_tasks as it
    from datasets_builders import tasks
    from datasets_builders.tokenizer import build_tokenizer

    config = it.IterationTaskConfig(name="mix", task="mix", max_length=5, examples_per_length=8)
    rows = it.split_table(config, "train").to_pylist()
    tokenizer = build_tokenizer()
    for row in rows:
        assert row["prompt"] + " " + row["completion"] == row["text"]
        assert row["prompt"].endswith("<eoi>") and row["completion"].endswith("<eos>")
        ids_ = tokenizer(row["prompt"]).input_ids + tokenizer(row["completion"]).input_ids
        assert ids_ == row["input_ids"]  # TRL's prompt-completion tokenisation gives the same row
        eoi = row["input_ids"].index(tasks.EOI_ID)
        assert row["labels"] == [-100] * (eoi + 1) + row["input_ids"][eoi + 1:]
    model = tiny_model(n_positions=32)
    x = torch.tensor([r["input_ids"] for r in rows if r["length"] == 5])
    labels = torch.tensor([r["labels"] for r in rows if r["length"] == 5])
    logits = model(x).logits
    mask = torch.as_tensor(tasks.loss_mask(x.numpy()))[:, 1:]  # the targets after <eoi>
    manual = torch.nn.functional.cross_entropy(logits[:, :-1][mask], x[:, 1:][mask])
    torch.testing.assert_close(model(x, labels=labels).loss, manual)


def test_trainer_on_the_dataset_columns_computes_the_papers_loss(tmp_path):
    """Trainer with a stock collator (left padding, labels padded with -100) on ``input_ids`` +
    ``labels``: its eval loss is the token-mean cross-entropy on the targets after <eoi>, unpadded."""
    import datasets
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from datasets_builders import iteration_tasks as it
    from datasets_builders import tasks
    from datasets_builders.tokenizer import build_tokenizer

    config = it.IterationTaskConfig(name="parity", task="parity", max_length=6, examples_per_length=6)
    table = it.split_table(config, "train")
    rows = table.to_pylist()
    model = tiny_model(n_positions=16)
    nll, count = 0.0, 0
    with torch.no_grad():
        for row in rows:  # one unpadded row at a time
            x = torch.tensor([row["input_ids"]])
            mask = torch.as_tensor(tasks.loss_mask(x.numpy()))[:, 1:]
            logits = model(x).logits[:, :-1][mask]
            nll += torch.nn.functional.cross_entropy(logits, x[:, 1:][mask], reduction="sum").item()
            count += int(mask.sum())
    args = TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=len(rows), report_to=[],
                             use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, eval_dataset=datasets.Dataset(table),
                      data_collator=DataCollatorForSeq2Seq(build_tokenizer(), label_pad_token_id=-100))
    assert trainer.evaluate()["eval_loss"] == pytest.approx(nll / count, rel=1e-5)
