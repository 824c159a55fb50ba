"""Configuration of IterGPT, the small decoder-only transformer of the Iteration Head paper.

Defaults follow the reference model of Cabannes et al. (NeurIPS 2024), section 2 of the paper:
2 layers, 1 head, width 128, learned absolute positions, GELU MLP of width 4x, LayerNorm without
bias, no bias in linear layers, untied embeddings, dropout 0.1 on the embeddings only, and the
64-token vocabulary of ``datasets_builders/tasks.py``.

The file imports only ``transformers`` (and the standard library) so that ``save_pretrained`` can ship
it next to a checkpoint (``trust_remote_code=True`` loading).
"""

from __future__ import annotations

import operator
from dataclasses import field, fields

from transformers import PreTrainedConfig

__all__ = ["IterGPTConfig"]

# Documented choices; anything else is a ValueError at construction time.
ACTIVATIONS = ("gelu", "gelu_new", "relu", "silu")
NORMS = ("layernorm", "rmsnorm")
RESIDUALS = ("standard", "reference")
POSITION_EMBEDDINGS = ("learned", "sinusoidal", "frozen")
POSITION_INITS = ("normal", "sinusoidal")
INITS = ("normal", "pytorch")

# The keys of a field's metadata that bound its value, beside its "help".
BOUNDS = (("ge", ">=", operator.ge), ("gt", ">", operator.gt), ("le", "<=", operator.le), ("lt", "<", operator.lt))


def _field(default, help: str, **valid):
    """A field with its help text and its valid values (``ge``/``gt``/``le``/``lt`` bounds, or
    ``choices``) in its metadata: declared once, checked by the config itself, and read from
    ``dataclasses.fields(IterGPTConfig)`` by ``training.config`` (``train.py --help`` and its checks)."""
    return field(default=default, metadata={"help": help, **valid})


class IterGPTConfig(PreTrainedConfig):
    r"""Configuration of [`IterGPTModel`] / [`IterGPTForCausalLM`].

    Each field declares its help text and valid values next to it (`_field(default, help, ge=..., choices=...)`,
    in `dataclasses.fields(IterGPTConfig)[i].metadata`); `python train.py --help` lists them. A value
    outside them is a `ValueError` at construction that names the field, the value and what it must be.
    The checks that involve several fields (`n_head` divides `n_embd`, token ids below `vocab_size`, ...)
    are written out in `_check`. They are plain `ValueError`s, not transformers' `@strict` validators:
    those raise `StrictDataclassFieldValidationError`, which is no `ValueError`, and reject an int given
    for a float field.

    Standard names are aliases (`attribute_map`): `num_hidden_layers` -> `n_layer`, `hidden_size` ->
    `n_embd`, `num_attention_heads` -> `n_head`, `max_position_embeddings` -> `n_positions`,
    `intermediate_size` -> `n_inner`, `hidden_act` -> `activation`. `head_dim` (and its TransformerLens
    name `d_head`) is derived, `n_embd // n_head`; setting it to that value is accepted (tools that copy
    config fields do), any other value is a `ValueError`.

    Example:

    ```python
    >>> from modeling import IterGPTConfig, IterGPTForCausalLM
    >>> config = IterGPTConfig(n_embd=64, n_head=2)
    >>> model = IterGPTForCausalLM(config)
    ```
    """

    model_type = "itergpt"
    keys_to_ignore_at_inference = ["cache", "past_key_values"]
    attribute_map = {
        "num_hidden_layers": "n_layer",
        "hidden_size": "n_embd",
        "num_attention_heads": "n_head",
        "max_position_embeddings": "n_positions",
        "intermediate_size": "n_inner",
        "hidden_act": "activation",
    }

    vocab_size: int = _field(64, "number of token ids (values 0..56, then the special tokens).", ge=1)
    n_positions: int = _field(64, "context length; longer inputs raise a `ValueError`.", ge=1)
    n_layer: int = _field(2, "number of transformer blocks.", ge=1)
    n_head: int = _field(1, "attention heads per block; must divide `n_embd`.", ge=1)
    n_embd: int = _field(128, "width of the residual stream (`d_model`).", ge=1)
    n_inner: int | None = _field(None, "MLP width; `None` means `4 * n_embd` (resolved at construction).", ge=1)
    activation: str = _field("gelu", "MLP non-linearity, one of `gelu` (exact, erf), `gelu_new` (tanh "
                             "approximation), `relu`, `silu`.", choices=ACTIVATIONS)
    norm: str = _field("layernorm", "`layernorm` or `rmsnorm`.", choices=NORMS)
    norm_eps: float = _field(1e-5, "epsilon of the normalisation layers.", gt=0.0)
    bias: bool = _field(False, "bias in the linear layers (attention and MLP projections).")
    norm_bias: bool = _field(False, "bias in LayerNorm (not available with `rmsnorm`).")
    position_embedding: str = _field(
        "learned", "`learned` (trained table), `sinusoidal` (fixed sin/cos table, a buffer rebuilt on load) "
        "or `frozen` (a random N(0, std) table, std as in `position_init_std`, saved with the weights but "
        "never trained: the reference code's `freeze_pos=True`, used in the paper's learned-vs-frozen "
        "comparison).", choices=POSITION_EMBEDDINGS)
    position_init: str = _field(
        "normal", "initial values of a `learned` table: `normal` (N(0, std), std as in `position_init_std`) "
        "or `sinusoidal` (the sin/cos table times `position_init_scale`, then trained like any other weight).",
        choices=POSITION_INITS)
    position_init_scale: float = _field(1.0, "amplitude of the `sinusoidal` initialisation.", gt=0.0)
    init: str = _field(
        "normal", "initial weights. `normal`: linear and embedding weights ~ N(0, initializer_range), norms "
        "(1, 0) (GPT-2 style, the transformers default). `pytorch`: each module's own PyTorch default, never "
        "overridden -- the reference code's: embeddings ~ N(0, 1), linear layers Kaiming-uniform.",
        choices=INITS)
    position_init_std: float | None = _field(
        None, "std of a normal-initialised learned or frozen position table; `None` follows `init` "
        "(initializer_range, or 1.0 with `init=\"pytorch\"`).", gt=0.0)
    embd_pdrop: float = _field(0.1, "dropout on the summed token + position embeddings.", ge=0.0, lt=1.0)
    attn_pdrop: float = _field(0.0, "dropout on the attention weights.", ge=0.0, lt=1.0)
    resid_pdrop: float = _field(0.0, "dropout on the attention and MLP outputs before they are added to the "
                                "residual stream.", ge=0.0, lt=1.0)
    tie_word_embeddings: bool = _field(False, "share `lm_head.weight` with the token embedding.")
    residual: str = _field(
        "standard", "block layout. `standard` (GPT-2 pre-norm): `x = x + attn(ln1(x)); x = x + mlp(ln2(x))`. "
        "`reference` (the paper's code, `facebookresearch/pal` `src/cot/models/transformer.py`): `x = ln1(x); "
        "x = x + attn(x); x = x + mlp(ln2(x))` -- the stream itself is normalised before attention, so "
        "attention adds to the *normalised* `x`.", choices=RESIDUALS)
    initializer_range: float = _field(0.02, "std of the normal initialisation of weights.", ge=0.0)
    pad_token_id: int | None = _field(63, "`<pad>` id of the shared vocabulary (None or below `vocab_size`).")
    bos_token_id: int | None = _field(60, "`<bos>` id of the shared vocabulary (None or below `vocab_size`).")
    eos_token_id: int | None = _field(62, "`<eos>` id of the shared vocabulary (None or below `vocab_size`).")
    eoi_token_id: int | None = _field(61, "`<eoi>` id, end of the input (None or below `vocab_size`).")
    use_cache: bool = _field(True, "return a key/value cache from `forward`.")
    materialize_hooks: bool = _field(
        False, "compute every hook point on every forward pass: eager attention (`hook_attn_scores`, "
        "`hook_pattern`), the per-head `hook_result` and the norms' `hook_scale` / `hook_normalized`. By "
        "default these are computed only while something reads them: a torch hook (`run_with_cache`, "
        "`run_with_hooks`) or an nnsight trace (nnsight wraps modules instead; no flag needed). Set it for "
        "other tools that find activations by other means, or pass `attn_implementation=\"eager\"` for the "
        "patterns alone. Same logits either way.")

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # Derived once: the saved config.json always states the MLP width explicitly.
        if self.n_inner is None and _is_int(self.n_embd):
            self.n_inner = 4 * self.n_embd
        self._check()

    def _check(self) -> None:
        """Every field against the values its metadata declares, in field order, then the checks that
        involve several fields."""
        for f in fields(self):
            if "choices" in f.metadata or any(key in f.metadata for key, _, _ in BOUNDS):
                _check_value(f.name, getattr(self, f.name), f.type, f.metadata)
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}: the head width "
                "d_head = n_embd / n_head must be an integer"
            )
        if self.position_init != "normal" and self.position_embedding != "learned":
            raise ValueError(
                f"position_init={self.position_init!r} only applies to position_embedding='learned' "
                f"(got position_embedding={self.position_embedding!r})"
            )
        if self.norm == "rmsnorm" and self.norm_bias:
            raise ValueError("norm_bias=True is only available with norm='layernorm' (RMSNorm has no bias)")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "eoi_token_id"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or not 0 <= value < self.vocab_size):
                raise ValueError(
                    f"{name}={value!r} is invalid: it must be None or an id in [0, vocab_size={self.vocab_size})"
                )

    @property
    def position_std(self) -> float:
        """Std of a normal-initialised position table (see `position_init_std`)."""
        if self.position_init_std is not None:
            return self.position_init_std
        return 1.0 if self.init == "pytorch" else self.initializer_range

    @property
    def head_dim(self) -> int:
        """Width of one attention head, ``n_embd // n_head`` (the transformers name)."""
        return self.n_embd // self.n_head

    @head_dim.setter
    def head_dim(self, value: int) -> None:
        if value != self.n_embd // self.n_head:
            raise ValueError(
                f"head_dim={value!r} is derived, not set: it is n_embd // n_head = {self.n_embd // self.n_head}; "
                "change n_embd or n_head instead"
            )

    d_head = head_dim  # the TransformerLens name


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_value(name: str, value, annotation: str, valid) -> None:
    """A ``ValueError`` naming the field, its value and what it must be, unless ``value`` is one of the
    field's ``choices`` or, of the type its annotation names (``int``, ``float``, ``... | None``), within
    its bounds."""
    if "choices" in valid:
        if value not in valid["choices"]:
            raise ValueError(f"{name}={value!r} is unknown: choose one of {', '.join(valid['choices'])}")
        return
    optional = "None" in annotation
    if value is None and optional:
        return
    integer = annotation.startswith("int")
    bounds = [(valid[key], words, op) for key, words, op in BOUNDS if valid.get(key) is not None]
    fits = _is_int(value) if integer else isinstance(value, (int, float)) and not isinstance(value, bool)
    if not fits or not all(op(value, bound) for bound, _, op in bounds):
        wanted = ("an integer" if integer else "a number") + "".join(
            f"{' and' if i else ''} {words} {bound}" for i, (bound, words, _) in enumerate(bounds))
        raise ValueError(f"{name}={value!r} is invalid: it must be {'None or ' if optional else ''}{wanted}")


IterGPTConfig.register_for_auto_class()
