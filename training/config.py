"""The typed training config: one schema for Hydra, the command line, validation and ``--help``.

The dataclasses below *are* the schema (registered with Hydra's ``ConfigStore`` as ``train_schema``).
YAML files only set values: ``configs/train.yaml`` (defaults), ``configs/recipe/*.yaml`` (named
recipes), ``configs/experiment/*.yaml`` (the paper's experiments as multirun grids). The command line
overrides any key with the same dotted name (``optim.lr=3e-3``); OmegaConf rejects unknown keys and
wrong types, and :func:`validate` checks every value against the range written next to its field.

The ``model`` section is not written here: it is generated from :class:`modeling.IterGPTConfig`,
the single source of the architecture's fields, defaults and checks.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, List, Optional

from datasets_builders import tasks
from datasets_builders.iteration_tasks import IterationTaskConfig
from modeling import IterGPTConfig

__all__ = ["TrainConfig", "DataConfig", "OptimConfig", "ModelConfig", "ConfigError", "validate",
           "model_config", "describe", "register", "to_dict", "from_dict", "read_saved", "compose",
           "INFRASTRUCTURE_KEYS"]


class ConfigError(ValueError):
    """A config value out of its documented range (the message names the key, value and range)."""


def opt(default: Any = dataclasses.MISSING, help: str = "", *, ge=None, gt=None, le=None, lt=None,
        choices: tuple | None = None, factory=None):
    """A field with its help text and valid range, both read by :func:`validate` and :func:`describe`."""
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# ---------------------------------------------------------------------------------------------
# model: generated from IterGPTConfig (its fields: types, defaults, help and valid values)
# ---------------------------------------------------------------------------------------------
# The architecture keys a run may set; vocabulary and special ids come from the tasks.
MODEL_KEYS = ("n_layer", "n_head", "n_embd", "n_inner", "n_positions", "activation", "norm", "norm_eps",
              "bias", "norm_bias", "residual", "position_embedding", "position_init", "position_init_scale",
              "init", "position_init_std", "embd_pdrop", "attn_pdrop", "resid_pdrop",
              "tie_word_embeddings", "initializer_range")


def _model_dataclass():
    """``ModelConfig``: the :data:`MODEL_KEYS` of ``IterGPTConfig`` with their annotations, defaults and
    metadata (help, bounds, choices) as that class declares them; :func:`validate` checks the bounds
    first, so that a bad value reads as its key (``model.n_layer=0``), and ``IterGPTConfig`` checks again."""
    own = {}
    for klass in reversed(IterGPTConfig.__mro__):  # only our fields' annotations (strings)
        own.update(getattr(klass, "__annotations__", {}))
    declared = {f.name: f for f in dataclasses.fields(IterGPTConfig)}
    specs = []
    for name in MODEL_KEYS:
        meta = dict(declared[name].metadata)
        specs.append((name, own[name], opt(declared[name].default, meta.pop("help", ""), **meta)))
    cls = dataclasses.make_dataclass("ModelConfig", specs)
    cls.__module__ = __name__  # picklable as training.config.ModelConfig (sweep workers)
    cls.__doc__ = "Architecture: the fields of ``modeling.IterGPTConfig`` (defaults: the paper's model)."
    return cls


ModelConfig = _model_dataclass()


# ---------------------------------------------------------------------------------------------
# data and optimisation
# ---------------------------------------------------------------------------------------------
_SPLIT = IterationTaskConfig  # the builder owns the split rule and its defaults


@dataclass
class DataConfig:
    """Which task, and how training sequences are drawn."""

    task: str = opt("parity", "copy | parity | polynomial | mix (copy rows mixed with mix_with) | any task "
                    "of datasets_builders.tasks.FAMILIES (cyclic5, dihedral4, quaternion, symmetric5, "
                    "alternating5, flipflop, gridworld6, random5x3, ...) | the path of a .json/.yaml task file")
    cot: bool = opt(True, "write every state s_1..s_L after <eoi> (chain of thought), or only s_L")
    min_length: int = opt(_SPLIT.min_length, "shortest input length L trained and tested", ge=1)
    max_length: int = opt(_SPLIT.max_length, "longest input length L trained and tested", ge=1)
    modulus: int = opt(_SPLIT.modulus, "p of polynomial iteration; inputs are 1..p-1", ge=2,
                       le=tasks.MAX_VALUES)
    polynomial: List[List[int]] = opt(help="P(s, x) mod p as [power_of_s, power_of_x, coefficient] triples",
                                      factory=lambda: [list(t) for t in tasks.DEFAULT_POLYNOMIAL])
    mix_ratio: float = opt(0.5, "mix only: fraction of copy rows", gt=0.0, lt=1.0)
    mix_with: str = opt("parity", "mix only: the task mixed with copy rows: parity, polynomial or any other "
                        "task (its own rows open with <bos>; the copy rows stay binary and teach the "
                        "position-to-position look-up of the iteration head)")
    source: str = opt("fresh", "fresh: new random sequences every step (never a test one); fixed: the "
                      "builder's disjoint train split, reshuffled every epoch; paper: the reference's data, "
                      "examples_per_length draws with replacement split half/half (train and test overlap at "
                      "short lengths), the train half reshuffled every epoch",
                      choices=("fresh", "fixed", "paper"))
    examples_per_length: int = opt(_SPLIT.examples_per_length, "distinct sequences per length before the "
                                   "train/test split", ge=2)
    test_fraction: float = opt(_SPLIT.test_fraction, "share of each length held out for test (0.25, not "
                               "the paper's 0.5: see datasets_builders.iteration_tasks)", gt=0.0, lt=1.0)
    packing: bool = opt(True, "pack several sequences per row (same loss as padding, fewer tokens)")
    dataset: Optional[str] = opt(None, "a dataset folder in Hub layout instead of the builder")
    seed: int = opt(_SPLIT.seed, "seed of the builder's train/test split", ge=0)


@dataclass
class OptimConfig:
    """AdamW with warm-up then constant, cosine or linear decay."""

    lr: float = opt(3e-3, "peak learning rate", gt=0.0)
    weight_decay: float = opt(0.01, "AdamW weight decay", ge=0.0)
    beta1: float = opt(0.9, "Adam beta1", ge=0.0, lt=1.0)
    beta2: float = opt(0.99, "Adam beta2", ge=0.0, lt=1.0)
    warmup_steps: int = opt(200, "linear warm-up steps", ge=0)
    schedule: str = opt("cosine", "decay after warm-up", choices=("constant", "cosine", "linear"))
    min_lr_ratio: float = opt(0.1, "floor of the decay, as a fraction of lr", ge=0.0, le=1.0)
    grad_clip: float = opt(1.0, "clip the gradient norm to this (a huge value: no clipping)", gt=0.0)
    batch_size: int = opt(64, "global batch size (split over processes)", ge=1)
    grad_accum: int = opt(1, "micro-batches per optimizer step (batch_size is per step, in total)", ge=1)
    max_steps: int = opt(6000, "optimizer steps", ge=1)
    fused: bool = opt(True, "AdamW's fused kernel (one call for all parameters); false: torch's default "
                            "implementation (the same update up to float rounding)")


@dataclass
class TrainConfig:
    """One training run. Infrastructure keys (output_dir, resume, ...) do not change what is learned."""

    recipe: str = opt("parity", "the recipe this config started from (configs/recipe/<name>.yaml)")
    model: ModelConfig = field(default_factory=ModelConfig)  # type: ignore[valid-type]
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = opt(0, "model init, dropout and the order of training data", ge=0)
    init_from: Optional[str] = opt(None, "start from this model folder (fine-tuning); its architecture wins")
    trainable: List[str] = opt(help="glob patterns of trainable parameters ([]: all)", factory=list)
    reinit: List[str] = opt(help="glob patterns of init_from's parameters drawn afresh (the model's own "
                            "initialisation, seeded by seed) before fine-tuning ([]: none)", factory=list)
    init_grow_vocab: bool = opt(False, "let init_from be a model with fewer token ids than the task needs: "
                                "its token embedding and output head grow to the task's vocabulary, the old "
                                "rows unchanged, the new ones drawn with the model's own initialisation "
                                "(seeded by seed); false: such a model is refused")
    eval_every: int = opt(250, "evaluate every N steps", ge=1)
    eval_per_length: int = opt(256, "sequences per length in each evaluation", ge=1)
    eval_heads: bool = opt(True, "score every (layer, head) at each evaluation")
    eval_train: bool = opt(True, "also evaluate on a sample of the training data (the test split always is)")
    target_accuracy: Optional[float] = opt(None, "stop once every test length reaches it", gt=0.0, le=1.0)
    max_minutes: Optional[float] = opt(None, "stop after this much training time", gt=0.0)
    save_every: int = opt(1000, "save a resumable checkpoint every N steps (0: never)", ge=0)
    keep_checkpoints: int = opt(2, "checkpoints kept (older ones are deleted)", ge=1)
    snapshot_steps: List[int] = opt(help="save a from_pretrained folder at these steps", factory=list)
    figures: bool = opt(False, "at the end, draw the attention map (longest length) and the emergence plot "
                        "into the run folder")
    # --- infrastructure ---
    output_dir: Optional[str] = opt(None, "run folder (default runs/<recipe>; in a sweep: the job's folder)")
    resume: Optional[str] = opt(None, "latest | step_<N>: continue the run in output_dir exactly; auto: "
                                "continue it if there is one, else start (re-running a sweep)")
    overwrite: bool = opt(False, "replace the run in output_dir (only a run folder of this project)")
    flush_denormal: bool = opt(False, "treat subnormal floats (below 1.2e-38) as zero on the CPU (torch."
                               "set_flush_denormal): arithmetic on them is slow on most CPUs, and a run whose "
                               "activations or gradients hold them steps several times slower; with it, its "
                               "numbers are no longer bit-identical to the same run without")
    mixed_precision: Optional[str] = opt(None, "no | bf16 | fp16; null: what accelerate launch / accelerate "
                                         "config says", choices=(None, "no", "bf16", "fp16"))
    report_to: str = opt("tensorboard", "accelerate tracker(s), comma-separated, or none (metrics.jsonl "
                         "is always written)")
    threads: Optional[int] = opt(None, "torch threads (null: the cores idle when the run starts for one run, "
                                 "1 per sweep job)", ge=1)
    record: Optional[str] = opt(None, "the declared experiment record this run belongs to (configs/records/"
                                "<name>.yaml, set by configs/experiment/<name>.yaml): its sha256 goes into "
                                "summary.json, so a record changed after its runs started is flagged")
    progress: bool = opt(True, "show a progress bar")


INFRASTRUCTURE_KEYS = ("output_dir", "resume", "overwrite", "mixed_precision", "report_to", "threads",
                       "progress", "max_minutes", "record")
SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig}


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
def _check_field(key: str, value, meta: dict) -> None:
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(f"{key}={value!r} is invalid: choose one of "
                          f"{', '.join('null' if c is None else str(c) for c in meta['choices'])}")
    if value is None or isinstance(value, (str, bool, list)):
        return
    for bound, ok, words in (("ge", value.__ge__, ">="), ("gt", value.__gt__, ">"),
                             ("le", value.__le__, "<="), ("lt", value.__lt__, "<")):
        if meta.get(bound) is not None and not ok(meta[bound]):
            raise ConfigError(f"{key}={value!r} is out of range: it must be {words} {meta[bound]}")


def _check_section(obj, prefix: str = "") -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _check_section(value, f"{f.name}.")
        else:
            _check_field(prefix + f.name, value, f.metadata)


def run_tasks(d: DataConfig) -> dict[str, tasks.Task]:
    """The tasks a run's data section trains on, by name (copy and ``mix_with`` for mix)."""
    names = ["copy", d.mix_with] if d.task == "mix" else [d.task]
    try:
        return {n: tasks.make_task(n, d.modulus, d.polynomial) for n in names}
    except ValueError as err:  # "task='x' is unknown ..." reads as the key it came from
        message = str(err)
        raise ConfigError(f"data.{message}" if message.startswith("task=") else f"data.task: {message}") from None


def vocab_size(d: DataConfig) -> int:
    """The vocabulary a run's model needs: 64 ids, more for a task with more than 57 values."""
    return max(t.vocab_size for t in run_tasks(d).values())


def model_config(cfg: TrainConfig) -> IterGPTConfig:
    """The ``IterGPTConfig`` of a run (its own checks apply: they name the field)."""
    try:
        return IterGPTConfig(vocab_size=vocab_size(cfg.data), **to_dict(cfg)["model"])
    except (ValueError, TypeError) as err:
        raise ConfigError(f"model: {err}") from None


def dataset_config(d: DataConfig) -> str | None:
    """The config of the released dataset that holds this data section's task (``parity``,
    ``parity_nocot``, ``mix`` for copy + parity, ``mix_polynomial`` for copy + polynomial with CoT at
    the default p and P), or ``None`` when no released config does."""
    if d.task == "mix" and d.mix_with == "polynomial":
        default = d.modulus == tasks.DEFAULT_MODULUS and tuple(map(tuple, d.polynomial)) == tasks.DEFAULT_POLYNOMIAL
        return "mix_polynomial" if d.cot and default else None
    if d.task == "mix" and d.mix_with != "parity":
        return None
    return tasks.dataset_config_name(d.task, d.cot)


def validate(cfg: TrainConfig) -> IterGPTConfig | None:
    """Every range, then the checks that involve several keys. Raises :class:`ConfigError`. Returns
    the model's ``IterGPTConfig`` that the checks built (``None`` with ``init_from``: that model's
    own config is read by ``training.loop.resolve``)."""
    _check_section(cfg)
    d, o = cfg.data, cfg.optim
    for key, value in (("output_dir", cfg.output_dir), ("init_from", cfg.init_from), ("data.dataset", d.dataset)):
        if value is not None and not str(value).strip():  # `output_dir=$UNSET` must not mean "the default"
            raise ConfigError(f"{key}={value!r} is empty (an unset shell variable?): give a path, or leave "
                              f"{key} out for its default")
    if d.min_length > d.max_length:
        raise ConfigError(f"data.min_length={d.min_length} > data.max_length={d.max_length}")
    if d.task == "mix" and d.mix_with in ("copy", "mix"):
        raise ConfigError(f"data.mix_with={d.mix_with!r}: mix already brings the copy rows; give the task they "
                          "are mixed with (parity, polynomial, cyclic5, a task file, ...)")
    if d.task == "mix" and d.dataset and dataset_config(d) is None:
        raise ConfigError(f"data.mix_with={d.mix_with!r} (cot={d.cot}, modulus={d.modulus}) with data.dataset: the "
                          "dataset's mix configs are copy + parity (`mix`, `mix_nocot`) and copy + polynomial with CoT, "
                          f"p = {tasks.DEFAULT_MODULUS} (`mix_polynomial`); drop data.dataset (the builder's splits "
                          "are used) or choose one of those")
    if d.source == "paper" and d.dataset:
        raise ConfigError("data.source=paper draws the reference's split itself: drop data.dataset (a dataset "
                          "brings its own disjoint split) or use data.source=fixed")
    need = tasks.row_length(d.max_length, d.cot)
    if need > cfg.model.n_positions:
        raise ConfigError(f"data.max_length={d.max_length} needs {need} positions but "
                          f"model.n_positions={cfg.model.n_positions}: raise model.n_positions or lower "
                          "data.max_length")
    if o.batch_size % o.grad_accum:
        raise ConfigError(f"optim.batch_size={o.batch_size} is not divisible by optim.grad_accum="
                          f"{o.grad_accum}")
    bad = [s for s in cfg.snapshot_steps if s < 1]
    if bad:
        raise ConfigError(f"snapshot_steps={bad}: steps must be >= 1")
    if cfg.resume is not None and cfg.resume not in ("latest", "auto") and not re.fullmatch(r"step_\d+", cfg.resume):
        raise ConfigError(f"resume={cfg.resume!r} is invalid: use latest, auto or step_<N>")
    if cfg.resume is not None and cfg.overwrite:
        raise ConfigError("resume and overwrite=true contradict each other: choose one")
    run_tasks(d)  # an unknown task, a bad polynomial or task file: its own clear error
    config = None
    if cfg.init_from is None:
        config = model_config(cfg)
        if cfg.reinit:
            raise ConfigError(f"reinit={cfg.reinit} draws parts of a pre-trained model afresh: give init_from "
                              "(a fresh model is all drawn afresh already)")
        if cfg.init_grow_vocab:
            raise ConfigError("init_grow_vocab=true grows the vocabulary of a pre-trained model: give init_from "
                              "(a fresh model has the task's vocabulary already)")
    from .evidence import RECORDS_DIR
    if cfg.record is not None and not (RECORDS_DIR / f"{cfg.record}.yaml").is_file():
        raise ConfigError(f"record={cfg.record!r}: no {RECORDS_DIR / (cfg.record + '.yaml')}; an experiment "
                          "declares its record before its runs (see training/evidence.py)")
    return config


# ---------------------------------------------------------------------------------------------
# conversions, help, Hydra registration
# ---------------------------------------------------------------------------------------------
def flatten(d: dict, sep: str = ".", prefix: str = "") -> dict:
    """A nested dict on one level, keys joined by ``sep``: ``{"optim": {"lr": 1e-3}}`` -> ``{"optim.lr": 1e-3}``
    (the one flattener: config tables, tracker logs, card tables)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, sep, f"{prefix}{k}{sep}"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def to_dict(cfg) -> dict:
    """Plain nested dict of a TrainConfig (or an OmegaConf node of one)."""
    from omegaconf import OmegaConf
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return dataclasses.asdict(cfg)
    return OmegaConf.to_container(cfg, resolve=True)


def from_dict(values: dict, where: str = "config") -> TrainConfig:
    """A validated-by-type TrainConfig from plain dicts (e.g. a run's saved ``train_config.yaml``)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), values or {})
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{where}: {_omegaconf_message(err)}") from None


# Keys every saved config of this project holds (a file without them is cut down or not ours: read
# with defaults it would describe another run, e.g. the default task).
SAVED_KEYS = ("recipe", "seed", "data.task", "data.cot", "data.max_length", "model.n_layer", "model.n_embd",
              "optim.max_steps", "optim.lr")


def read_saved(path: str | Path) -> TrainConfig:
    """A run's saved ``train_config.yaml`` (or a sweep job's composed config), checked: readable YAML,
    a mapping, the :data:`SAVED_KEYS`, and the schema's types. Errors name the file."""
    import yaml
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror or err})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]}); the run's saved config is "
                          "damaged") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: holds {type(values).__name__}, not a mapping of config keys; the run's saved "
                          "config is damaged")

    def has(key: str) -> bool:
        node = values
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True
    missing = [k for k in SAVED_KEYS if not has(k)]
    if missing:
        raise ConfigError(f"{path}: lacks {', '.join(missing)}; the file is cut down or not a train.py config, "
                          "so the run it belongs to is unknown")
    return from_dict(values, where=str(path))


def _omegaconf_message(err) -> str:
    first = str(err).splitlines()[0]
    key = getattr(err, "full_key", None)
    return f"{key}: {first}" if key and key not in first else first


def describe() -> str:
    """Every key with its type, default, valid range and help, for ``python train.py --help``."""
    lines = []

    def walk(cls, prefix):
        for f in dataclasses.fields(cls):
            if f.name in SECTIONS:
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            m = f.metadata
            rng = [f"{w}{m[b]}" for b, w in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
                   if m.get(b) is not None]
            if m.get("choices"):
                rng = ["|".join("null" if c is None else str(c) for c in m["choices"])]
            lines.append(f"  {prefix}{f.name} = {default!r}" + (f"  [{', '.join(rng)}]" if rng else "")
                         + (f"\n      {m['help']}" if m.get("help") else ""))

    walk(TrainConfig, "")
    for name, cls in SECTIONS.items():
        walk(cls, f"{name}.")
    return "\n".join(lines)


def _epochs(n, *, _root_) -> int:
    """``${epochs:N}``: N epochs of the run's fixed training split, in optimizer steps (the paper
    counts epochs; ``optim.max_steps: ${epochs:960}``, ``eval_every: ${epochs:40}``)."""
    from .data import steps_per_epoch
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"${{epochs:{n}}}: give a whole number of epochs >= 1")
    return n * steps_per_epoch(_root_.data, _root_.optim.batch_size)


def _sequences(n, *, _root_) -> int:
    """``${sequences:N}``: the optimizer steps that show N training sequences at the run's batch size
    (rounded up): budgets matched in sequences seen across batch sizes."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"${{sequences:{n}}}: give a whole number of sequences >= 1")
    return -(-n // int(_root_.optim.batch_size))


def register() -> None:
    """Register the schema with Hydra's ConfigStore (``defaults: [train_schema, ...]``) and the
    ``${epochs:N}`` and ``${sequences:N}`` resolvers."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    for name, fn in (("epochs", _epochs), ("sequences", _sequences)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def compose(overrides: list[str] | tuple = ()) -> TrainConfig:
    """The TrainConfig that ``python train.py <overrides>`` would run (Hydra's compose API), for
    tools and tests; not validated yet (see :func:`validate`)."""
    return from_dict(compose_values(overrides))


def compose_values(overrides: list[str] | tuple = (), hydra: bool = False) -> dict:
    """The composed config of ``python train.py <overrides>`` as plain, unresolved values (with
    ``hydra``: Hydra's own section too, e.g. the sweeper's params)."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    register()
    # Inside a running Hydra app (a multirun's callback), compose beside it and leave it as it was.
    running = GlobalHydra.instance().is_initialized()
    saved = (GlobalHydra.instance().hydra, HydraConfig.instance().cfg) if running else None
    if running:
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR), job_name="compose"):
            cfg = hydra_compose("train", overrides=list(overrides), return_hydra_config=True)
            values = OmegaConf.to_container(cfg, resolve=False)
            values["recipe"] = cfg.hydra.runtime.choices.recipe
            if hydra:
                values["hydra"] = OmegaConf.to_container(cfg.hydra, resolve=False)
            else:
                values.pop("hydra")
    except (OmegaConfBaseException, HydraException) as err:
        raise ConfigError(str(err).splitlines()[0]) from None
    finally:
        if saved is not None:
            GlobalHydra.instance().clear()
            GlobalHydra.instance().initialize(saved[0])
            HydraConfig.instance().cfg = saved[1]
    return values
