"""Configuration of IterGPT, the small decoder-only transformer of the Iteration Head paper.

Defaults follow the reference model of Cabannes et al. (NeurIPS 2024), section 2 of the paper:
2 layers, 1 head, width 128, learned absolute positions, GELU MLP of width 4x, LayerNorm without
bias, no bias in linear layers, untied embeddings, dropout 0.1 on the embeddings only, and the
64-token vocabulary of ``datasets_builders/tasks.py``.

The file imports only ``transformers`` so that ``save_pretrained`` can ship it next to a checkpoint
(``trust_remote_code=True`` loading).
"""

from __future__ import annotations

from transformers import PreTrainedConfig

__all__ = ["IterGPTConfig"]

# Documented choices; anything else is a ValueError at construction time.
ACTIVATIONS = ("gelu", "gelu_new", "relu", "silu")
NORMS = ("layernorm", "rmsnorm")
RESIDUALS = ("standard", "reference")
POSITION_EMBEDDINGS = ("learned", "sinusoidal", "frozen")
POSITION_INITS = ("normal", "sinusoidal")
INITS = ("normal", "pytorch")


class IterGPTConfig(PreTrainedConfig):
    r"""Configuration of [`IterGPTModel`] / [`IterGPTForCausalLM`].

    Args:
        vocab_size (`int`, defaults to 64): number of token ids (values 0..56, then the special tokens).
        n_positions (`int`, defaults to 64): context length; longer inputs raise a `ValueError`.
        n_layer (`int`, defaults to 2): number of transformer blocks.
        n_head (`int`, defaults to 1): attention heads per block; must divide `n_embd`.
        n_embd (`int`, defaults to 128): width of the residual stream (`d_model`).
        n_inner (`int`, *optional*): MLP width; `None` means `4 * n_embd` (resolved at construction).
        activation (`str`, defaults to `"gelu"`): MLP non-linearity, one of `gelu` (exact, erf),
            `gelu_new` (tanh approximation), `relu`, `silu`.
        norm (`str`, defaults to `"layernorm"`): `layernorm` or `rmsnorm`.
        norm_eps (`float`, defaults to 1e-5): epsilon of the normalisation layers.
        bias (`bool`, defaults to `False`): bias in the linear layers (attention and MLP projections).
        norm_bias (`bool`, defaults to `False`): bias in LayerNorm (not available with `rmsnorm`).
        position_embedding (`str`, defaults to `"learned"`): `learned` (trained table), `sinusoidal`
            (fixed sin/cos table, a buffer rebuilt on load) or `frozen` (a random N(0, std) table, std
            as in `position_init_std`, saved with the weights but never trained: the reference code's
            `freeze_pos=True`, used in the paper's learned-vs-frozen comparison).
        position_init (`str`, defaults to `"normal"`): initial values of a `learned` table: `normal`
            (N(0, std), std as in `position_init_std`) or `sinusoidal` (the sin/cos table times
            `position_init_scale`, then trained like any other weight).
        position_init_scale (`float`, defaults to 1.0): amplitude of the `sinusoidal` initialisation.
        init (`str`, defaults to `"normal"`): initial weights. `normal`: linear and embedding weights
            ~ N(0, initializer_range), norms (1, 0) (GPT-2 style, the transformers default). `pytorch`:
            each module's own PyTorch default, never overridden -- the reference code's: embeddings
            ~ N(0, 1), linear layers Kaiming-uniform.
        position_init_std (`float`, *optional*): std of a normal-initialised learned or frozen position
            table; `None` follows `init` (initializer_range, or 1.0 with `init="pytorch"`).
        embd_pdrop (`float`, defaults to 0.1): dropout on the summed token + position embeddings.
        attn_pdrop (`float`, defaults to 0.0): dropout on the attention weights.
        resid_pdrop (`float`, defaults to 0.0): dropout on the attention and MLP outputs before they are
            added to the residual stream.
        tie_word_embeddings (`bool`, defaults to `False`): share `lm_head.weight` with the token embedding.
        residual (`str`, defaults to `"standard"`): block layout.
            - `standard` (GPT-2 pre-norm): `x = x + attn(ln1(x)); x = x + mlp(ln2(x))`.
            - `reference` (the paper's code, `facebookresearch/pal` `src/cot/models/transformer.py`):
              `x = ln1(x); x = x + attn(x); x = x + mlp(ln2(x))` -- the stream itself is normalised
              before attention, so attention adds to the *normalised* `x`.
        initializer_range (`float`, defaults to 0.02): std of the normal initialisation of weights.
        pad_token_id / bos_token_id / eos_token_id / eoi_token_id (`int`): special ids of the shared
            vocabulary (`<pad>`=63, `<bos>`=60, `<eos>`=62, `<eoi>`=61).
        use_cache (`bool`, defaults to `True`): return a key/value cache from `forward`.
        materialize_hooks (`bool`, defaults to `False`): compute every hook point on every forward pass:
            eager attention (`hook_attn_scores`, `hook_pattern`), the per-head `hook_result` and the
            norms' `hook_scale` / `hook_normalized`. By default these are computed only while something
            reads them: a torch hook (`run_with_cache`, `run_with_hooks`) or an nnsight trace (nnsight
            wraps modules instead; no flag needed). Set it for other tools that find activations by
            other means, or pass `attn_implementation="eager"` for the patterns alone. Same logits
            either way.

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

    vocab_size: int = 64
    n_positions: int = 64
    n_layer: int = 2
    n_head: int = 1
    n_embd: int = 128
    n_inner: int | None = None
    activation: str = "gelu"
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    bias: bool = False
    norm_bias: bool = False
    position_embedding: str = "learned"
    position_init: str = "normal"
    position_init_scale: float = 1.0
    init: str = "normal"
    position_init_std: float | None = None
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.0
    resid_pdrop: float = 0.0
    tie_word_embeddings: bool = False
    residual: str = "standard"
    initializer_range: float = 0.02
    pad_token_id: int | None = 63
    bos_token_id: int | None = 60
    eos_token_id: int | None = 62
    eoi_token_id: int | None = 61
    use_cache: bool = True
    materialize_hooks: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # Derived once: the saved config.json always states the MLP width explicitly.
        if self.n_inner is None and _is_int(self.n_embd):
            self.n_inner = 4 * self.n_embd
        self._check()

    # Plain ValueErrors (not the `@strict` wrapper errors) that name the field and what is allowed.
    def _check(self) -> None:
        for name in ("vocab_size", "n_positions", "n_layer", "n_head", "n_embd", "n_inner"):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                raise ValueError(f"{name}={value!r} is invalid: it must be a positive integer")
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}: the head width "
                "d_head = n_embd / n_head must be an integer"
            )
        for name, allowed in (
            ("activation", ACTIVATIONS),
            ("norm", NORMS),
            ("residual", RESIDUALS),
            ("position_embedding", POSITION_EMBEDDINGS),
            ("position_init", POSITION_INITS),
            ("init", INITS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is unknown: choose one of {', '.join(allowed)}")
        if self.position_init != "normal" and self.position_embedding != "learned":
            raise ValueError(
                f"position_init={self.position_init!r} only applies to position_embedding='learned' "
                f"(got position_embedding={self.position_embedding!r})"
            )
        if not isinstance(self.position_init_scale, (int, float)) or self.position_init_scale <= 0:
            raise ValueError(f"position_init_scale={self.position_init_scale!r} is invalid: it must be > 0")
        std = self.position_init_std
        if std is not None and (not isinstance(std, (int, float)) or isinstance(std, bool) or std <= 0):
            raise ValueError(f"position_init_std={std!r} is invalid: it must be None or a number > 0")
        if self.norm == "rmsnorm" and self.norm_bias:
            raise ValueError("norm_bias=True is only available with norm='layernorm' (RMSNorm has no bias)")
        for name in ("embd_pdrop", "attn_pdrop", "resid_pdrop"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name}={value!r} is invalid: it must be a probability in [0, 1)")
        if not isinstance(self.norm_eps, (int, float)) or self.norm_eps <= 0:
            raise ValueError(f"norm_eps={self.norm_eps!r} is invalid: it must be a positive number")
        if not isinstance(self.initializer_range, (int, float)) or self.initializer_range < 0:
            raise ValueError(f"initializer_range={self.initializer_range!r} is invalid: it must be >= 0")
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


IterGPTConfig.register_for_auto_class()
