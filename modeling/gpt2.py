"""IterGPT <-> GPT-2: the stock-architecture copy that needs no remote code.

With ``residual="standard"`` and ``norm="layernorm"`` an IterGPT block is exactly a GPT-2 block
(pre-norm, attention then MLP, scaled dot-product attention, learned absolute positions). What the
default IterGPT leaves out GPT-2 simply holds as zeros: linear and LayerNorm biases. So
``to_gpt2(model)`` is a ``GPT2LMHeadModel`` with the same logits (to float rounding), and every tool that
knows GPT-2 (``pipeline``, TransformerLens, nnsight, pyvene) loads it with no ``trust_remote_code``.
``from_gpt2`` is the inverse (biases that are all zero become ``bias=False`` / ``norm_bias=False``).

What converts and what does not:

- ``residual="reference"`` (the paper code's block, which normalises the stream itself) and
  ``norm="rmsnorm"`` have no GPT-2 form: ``ConversionError`` names the field.
- ``position_embedding="sinusoidal"`` / ``"frozen"``: the fixed table becomes GPT-2's ``wpe`` weights,
  exact at inference; GPT-2 would train it, and ``from_gpt2`` gives back ``"learned"``.
- Activations ``gelu`` (exact), ``gelu_new``, ``relu``, ``silu`` keep their transformers names.

Released models ship the copy in a ``gpt2/`` subfolder of their repository (weights, config, tokenizer,
generation config), made by::

    python -m modeling.gpt2 --model hub/iteration-head-parity --out hub/iteration-head-parity/gpt2

and loaded with ``GPT2LMHeadModel.from_pretrained(repo, subfolder="gpt2")`` (or ``AutoModelForCausalLM``),
or by TransformerLens as it stands: ``TransformerBridge.boot_transformers("<repo folder>/gpt2")``.
The command writes atomically and only replaces a folder it wrote itself (its ``config.json`` records
``converted_from``).

The copy's tokenizer is the model's, ids unchanged, plus an unknown token: tools probe a tokenizer with
an arbitrary word (TransformerLens encodes ``"a"``), which the model's own tokenizer rejects. An
unknown word maps to an existing token that no training row of the model holds (``unknown_token``:
``<bos>`` for the paper's tasks, whose rows open with their task token), so the model never saw it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from .configuration_itergpt import ACTIVATIONS, IterGPTConfig
from .modeling_itergpt import IterGPTForCausalLM

__all__ = [
    "ConversionError", "check_convertible", "from_gpt2", "gpt2_config", "to_gpt2", "transformer_lens_bridge",
    "unknown_token", "write_gpt2",
]

CONVERTED_FROM = "IterGPTForCausalLM"  # recorded in the GPT-2 config.json: the folder is ours to replace
# Files copied from the IterGPT folder next to the converted weights (the tokenizer gains an unknown token).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
REQUIRED = {"residual": "standard", "norm": "layernorm"}
# The GPT-2 copy's unknown token, in order of preference: existing special tokens only (no id moves).
UNKNOWN_CANDIDATES = ("<bos>", "<copy>", "<parity>", "<polynomial>")


class ConversionError(ValueError):
    """The architecture has no exact GPT-2 (or IterGPT) equivalent; the message names the field."""


def check_convertible(config: IterGPTConfig) -> None:
    """Raise ``ConversionError`` naming the first field that GPT-2 cannot represent."""
    for field, needed in REQUIRED.items():
        value = getattr(config, field)
        if value != needed:
            raise ConversionError(
                f"{field}={value!r} has no GPT-2 equivalent: GPT-2 is a pre-norm block with "
                f"{', '.join(f'{k}={v!r}' for k, v in REQUIRED.items())}; keep using the IterGPT code "
                "(trust_remote_code=True) for this model"
            )


def gpt2_config(config: IterGPTConfig) -> GPT2Config:
    """The ``GPT2Config`` of the same architecture (``eoi_token_id`` kept as an extra field)."""
    check_convertible(config)
    return GPT2Config(
        vocab_size=config.vocab_size, n_positions=config.n_positions, n_embd=config.n_embd,
        n_layer=config.n_layer, n_head=config.n_head, n_inner=config.n_inner,
        activation_function=config.activation, layer_norm_epsilon=config.norm_eps,
        embd_pdrop=config.embd_pdrop, attn_pdrop=config.attn_pdrop, resid_pdrop=config.resid_pdrop,
        initializer_range=config.initializer_range, tie_word_embeddings=config.tie_word_embeddings,
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id,
        eoi_token_id=config.eoi_token_id, converted_from=CONVERTED_FROM, architectures=["GPT2LMHeadModel"],
    )


def _or_zeros(tensor: torch.Tensor | None, like: torch.Tensor, size: int) -> torch.Tensor:
    return tensor.detach().clone() if tensor is not None else like.new_zeros(size)


@torch.no_grad()
def to_gpt2(model: IterGPTForCausalLM) -> GPT2LMHeadModel:
    """A ``GPT2LMHeadModel`` computing the same function as ``model`` (weights copied, zero biases).

    GPT-2's ``Conv1D`` stores weights as (in, out), the transpose of ``nn.Linear``; ``c_attn`` is the
    concatenation of the query, key and value projections, in that order.
    """
    config = gpt2_config(model.config)
    base, d = model.model, model.config.n_embd
    state = {"transformer.wte.weight": base.embed.weight, "transformer.wpe.weight": base.pos_embed.weight}
    for i, block in enumerate(base.blocks):
        p, attn, mlp = f"transformer.h.{i}.", block.attn, block.mlp
        for ours, theirs in ((block.ln1, "ln_1"), (block.ln2, "ln_2")):
            state[p + theirs + ".weight"] = ours.weight
            state[p + theirs + ".bias"] = _or_zeros(ours.bias, ours.weight, d)
        qkv = (attn.q_proj, attn.k_proj, attn.v_proj)
        state[p + "attn.c_attn.weight"] = torch.cat([lin.weight for lin in qkv]).T  # (d, 3d)
        state[p + "attn.c_attn.bias"] = torch.cat([_or_zeros(lin.bias, lin.weight, d) for lin in qkv])
        for ours, theirs in ((attn.o_proj, "attn.c_proj"), (mlp.fc_in, "mlp.c_fc"), (mlp.fc_out, "mlp.c_proj")):
            state[p + theirs + ".weight"] = ours.weight.T
            state[p + theirs + ".bias"] = _or_zeros(ours.bias, ours.weight, ours.weight.shape[0])
    state["transformer.ln_f.weight"] = base.ln_final.weight
    state["transformer.ln_f.bias"] = _or_zeros(base.ln_final.bias, base.ln_final.weight, d)
    state["lm_head.weight"] = model.lm_head.weight
    gpt2 = GPT2LMHeadModel(config).to(dtype=model.dtype)
    gpt2.load_state_dict({k: v.detach().clone().contiguous() for k, v in state.items()}, strict=True)
    # A length limit as max_new_tokens, not max_length: a stock GPT-2 whose generation config sets
    # max_length warns on every generate(max_new_tokens=...) ("Both `max_new_tokens` and `max_length`
    # seem to have been set"; IterGPT silences it for its own context, GPT-2 cannot). The limit is the
    # longest chain of thought that fits the context (s_1 … s_L <eos> for L = (n_positions - 3) // 2),
    # so generate() alone completes every row that fits, and an explicit max_new_tokens replaces it.
    settings = {k: v for k, v in model.generation_config.to_dict().items() if k != "max_length"}
    settings["max_new_tokens"] = (model.config.n_positions - 3) // 2 + 1
    gpt2.generation_config = model.generation_config.__class__.from_dict(settings)
    return gpt2.train(model.training)


def _check_gpt2_config(config: GPT2Config) -> None:
    unsupported = {
        "scale_attn_weights": (config.scale_attn_weights, True),
        "scale_attn_by_inverse_layer_idx": (config.scale_attn_by_inverse_layer_idx, False),
        "add_cross_attention": (config.add_cross_attention, False),
    }
    for field, (value, needed) in unsupported.items():
        if value != needed:
            raise ConversionError(f"{field}={value!r} has no IterGPT equivalent (IterGPT needs {needed!r})")
    if config.activation_function not in ACTIVATIONS:
        raise ConversionError(
            f"activation_function={config.activation_function!r} has no IterGPT equivalent: "
            f"choose one of {', '.join(ACTIVATIONS)}"
        )


@torch.no_grad()
def from_gpt2(gpt2: GPT2LMHeadModel) -> IterGPTForCausalLM:
    """The inverse of ``to_gpt2``: an ``IterGPTForCausalLM`` with the same function as ``gpt2``."""
    c = gpt2.config
    _check_gpt2_config(c)
    state = gpt2.state_dict()
    linear_bias = any(bool(v.any()) for k, v in state.items() if k.endswith(".bias") and ".ln_" not in k)
    norm_bias = any(bool(v.any()) for k, v in state.items() if k.endswith(".bias") and (".ln_" in k))
    eoi = getattr(c, "eoi_token_id", None)
    config = IterGPTConfig(
        vocab_size=c.vocab_size, n_positions=c.n_positions, n_embd=c.n_embd, n_layer=c.n_layer,
        n_head=c.n_head, n_inner=c.n_inner or 4 * c.n_embd, activation=c.activation_function,
        norm_eps=c.layer_norm_epsilon, bias=linear_bias, norm_bias=norm_bias,
        embd_pdrop=c.embd_pdrop, attn_pdrop=c.attn_pdrop, resid_pdrop=c.resid_pdrop,
        initializer_range=c.initializer_range, tie_word_embeddings=c.tie_word_embeddings,
        bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id,
        eoi_token_id=eoi if eoi is not None and 0 <= eoi < c.vocab_size else None,
    )
    model = IterGPTForCausalLM(config).to(dtype=gpt2.dtype)
    ours = {"model.embed.weight": state["transformer.wte.weight"],
            "model.pos_embed.weight": state["transformer.wpe.weight"], "lm_head.weight": state["lm_head.weight"]}
    d = c.n_embd
    for i in range(c.n_layer):
        p, q = f"transformer.h.{i}.", f"model.blocks.{i}."
        w_q, w_k, w_v = state[p + "attn.c_attn.weight"].T.split(d)
        b_q, b_k, b_v = state[p + "attn.c_attn.bias"].split(d)
        ours.update({q + "attn.q_proj.weight": w_q, q + "attn.k_proj.weight": w_k, q + "attn.v_proj.weight": w_v,
                     q + "attn.q_proj.bias": b_q, q + "attn.k_proj.bias": b_k, q + "attn.v_proj.bias": b_v})
        for theirs, mine in (("attn.c_proj", "attn.o_proj"), ("mlp.c_fc", "mlp.fc_in"), ("mlp.c_proj", "mlp.fc_out")):
            ours[q + mine + ".weight"] = state[p + theirs + ".weight"].T
            ours[q + mine + ".bias"] = state[p + theirs + ".bias"]
        for theirs, mine in (("ln_1", "ln1"), ("ln_2", "ln2")):
            ours[q + mine + ".weight"], ours[q + mine + ".bias"] = state[p + theirs + ".weight"], state[p + theirs + ".bias"]
    ours["model.ln_final.weight"], ours["model.ln_final.bias"] = state["transformer.ln_f.weight"], state["transformer.ln_f.bias"]
    expected = model.state_dict()
    model.load_state_dict({k: v.clone().contiguous() for k, v in ours.items() if k in expected}, strict=True)
    return model.train(gpt2.training)


def _owned(out: Path) -> bool:
    """True when ``out`` is a folder this module wrote (its config.json records ``converted_from``)."""
    try:
        return json.loads((out / "config.json").read_text()).get("converted_from") == CONVERTED_FROM
    except (OSError, ValueError):
        return False


def unknown_token(model_folder: str | os.PathLike) -> str:
    """The word the ``gpt2/`` copy's tokenizer gives an unknown word: the first of ``<bos>``, ``<copy>``,
    ``<parity>``, ``<polynomial>`` that no training row of the model holds. A row is ``<task> x_1 … x_L
    <eoi> s_1 … <eos>`` (then ``<pad>``), opened by its task's token: ``<copy>``, ``<parity>`` or
    ``<polynomial>`` for the paper's tasks, ``<bos>`` for every other task; the tasks are those of
    ``training_info.json`` (``data.task``, both tasks of a ``mix``). A folder without it gets
    ``<bos>``. The data of a base model (``init_from``) is not read."""
    from datasets_builders import tasks  # the vocabulary (not shipped with the copy: only used here)

    try:
        data = json.loads((Path(model_folder) / "training_info.json").read_text())["train_config"]["data"]
    except (OSError, ValueError, KeyError, TypeError):
        return UNKNOWN_CANDIDATES[0]
    names = ["copy", data.get("mix_with") or "parity"] if data.get("task") == "mix" else [data.get("task")]
    used = {tasks.TASK_TOKEN_ID.get(name, tasks.BOS_ID) for name in names}
    for token in UNKNOWN_CANDIDATES:
        if tasks.TOKEN_TO_ID[token] not in used:
            return token
    raise ValueError(f"{model_folder}: every one of {', '.join(UNKNOWN_CANDIDATES)} opens a training row")


def _add_unknown_token(folder: Path, token: str) -> None:
    """Give the tokenizer files in ``folder`` the unknown token ``token`` (an existing word: no id changes)."""
    path = folder / "tokenizer.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    model = doc["model"]
    if model.get("type") != "WordLevel" or token not in model["vocab"]:
        raise ValueError(f"{path}: not a WordLevel vocabulary holding {token!r}")
    model["unk_token"] = token
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")  # as `tokenizers` writes it
    path = folder / "tokenizer_config.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["unk_token"] = token
    path.write_text(json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write_gpt2(model_folder: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Convert the IterGPT checkpoint in ``model_folder`` and save the GPT-2 copy to ``out``.

    ``out`` gets the weights, ``config.json``, ``generation_config.json`` and the tokenizer files of
    ``model_folder``, with the unknown token of :func:`unknown_token`. Written to a temporary sibling
    folder, then renamed into place; an existing ``out`` is replaced only if this function wrote it
    (else ``FileExistsError``).
    """
    model_folder, out = Path(model_folder), Path(out)
    try:
        model_type = json.loads((model_folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError) as error:
        raise ValueError(f"{model_folder} is not a saved IterGPT model (no readable config.json): {error}") from None
    if model_type != IterGPTConfig.model_type:
        raise ValueError(f"{model_folder} holds model_type={model_type!r}, not {IterGPTConfig.model_type!r}")
    if out.exists() and not _owned(out):
        raise FileExistsError(f"{out} exists and was not written by modeling.gpt2: refusing to overwrite it; "
                              "choose another --out or remove it yourself")
    gpt2 = to_gpt2(IterGPTForCausalLM.from_pretrained(model_folder))  # ConversionError before any write
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the result is a folder like any other
        gpt2.save_pretrained(tmp)
        for name in TOKENIZER_FILES:
            if (model_folder / name).is_file():
                shutil.copy2(model_folder / name, tmp / name)
        if (tmp / "tokenizer.json").is_file() and (tmp / "tokenizer_config.json").is_file():
            _add_unknown_token(tmp, unknown_token(model_folder))
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def transformer_lens_bridge(source, device: str = "cpu"):
    """A TransformerLens 4 ``TransformerBridge`` over the GPT-2 form of ``source``.

    ``source``: an ``IterGPTForCausalLM``, an IterGPT folder, or a GPT-2 copy (a ``gpt2/`` folder).
    Hook names and ``run_with_cache`` are TransformerLens' (``blocks.0.attn.hook_pattern``).
    A released ``gpt2/`` folder also boots with TransformerLens alone,
    ``TransformerBridge.boot_transformers(folder)`` (its tokenizer has an unknown token for the probe);
    this helper also takes a model in memory or an IterGPT folder, whose own tokenizer rejects the
    probe's word "a" (on purpose): the bridge is built from the module and the tokenizer attached
    afterwards. ``prepend_bos`` is off either way (rows start with the task token, never ``<bos>``).
    """
    from transformer_lens.model_bridge.sources import build_bridge_from_module
    from transformers import PreTrainedTokenizerFast

    tokenizer = None
    if isinstance(source, IterGPTForCausalLM):
        gpt2 = to_gpt2(source)
    else:
        folder = Path(source)
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
        if model_type == "gpt2":
            gpt2 = GPT2LMHeadModel.from_pretrained(folder)
        else:
            gpt2 = to_gpt2(IterGPTForCausalLM.from_pretrained(folder))
        if (folder / "tokenizer.json").is_file():
            tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    bridge = build_bridge_from_module(gpt2.eval().to(device), "GPT2LMHeadModel", hf_config=gpt2.config,
                                      model_name=str(getattr(source, "name_or_path", source)))
    bridge.cfg.default_prepend_bos = False
    bridge.cfg.tokenizer_prepends_bos = False
    if tokenizer is not None:
        bridge.tokenizer = tokenizer  # first assignment: no encode("a") probe
    return bridge


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modeling.gpt2",
        description="Write the GPT-2 (no remote code) copy of an IterGPT checkpoint folder.",
    )
    parser.add_argument("--model", required=True, help="IterGPT folder (config.json + model.safetensors)")
    parser.add_argument("--out", required=True, help="output folder, e.g. <model>/gpt2; replaced only if ours")
    args = parser.parse_args(argv)
    try:
        path = write_gpt2(args.model, args.out)
    except (ValueError, FileExistsError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
