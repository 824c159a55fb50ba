"""The models of the Iteration Head suite and the names they get on the Hub.

Each entry names the training recipe (``configs/<recipe>.yaml``), the Hub repository and, for the
fine-tuned model, the suite model it starts from. Descriptions are words only: every number shown
in a card comes from a measured file (see :mod:`model_cards.render`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DATASET_NAME", "METRIC_NAME", "ModelSpec", "SEEDS", "SUITE", "SUITE_BY_KEY", "repo_id"]

#: Name of the dataset repository (made with ``datasets_builders.export``).
DATASET_NAME = "iteration-head-tasks"
SPACE_NAME = "iteration-head-explorer"  # the explorer Space, shipped beside the release (kept as it is)
#: The accuracy metric as a Hub ``evaluate`` module (a Space, as evaluate's metrics are; written by the
#: release from ``metrics/sequence_accuracy/``): ``evaluate.load("<namespace>/sequence_accuracy")``. The
#: cards' ``model-index`` entries name it as their metric ``type``.
METRIC_NAME = "sequence_accuracy"
#: What every model card says about itself in its YAML ``tags``.
COMMON_TAGS = ("iteration-head", "chain-of-thought", "interpretability", "mechanistic-interpretability",
               "synthetic-tasks", "itergpt")


@dataclass(frozen=True)
class ModelSpec:
    """One model of the suite.

    ``key``: short name used on the command line (``--models``) and as run folder name;
    ``repo``: Hub repository name; ``recipe``: ``configs/<recipe>.yaml``; ``task``: the task the
    model is released for (evaluated and analysed on), which its recipe may train together with
    another (``data.task: mix`` adds copy rows to parity); ``init_from``: key of the
    suite model whose final weights this one starts from (fine-tuning), if any; ``title`` and
    ``summary``: words for the cards; ``extra_tags``: YAML tags beyond the common ones.
    """

    key: str
    repo: str
    recipe: str
    task: str
    title: str
    summary: str
    init_from: str | None = None
    extra_tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def tags(self) -> list[str]:
        return list(COMMON_TAGS) + [t for t in self.extra_tags if t not in COMMON_TAGS]


SUITE: tuple[ModelSpec, ...] = (
    ModelSpec("parity", "iteration-head-parity", "parity", "parity", "Parity with chain of thought",
              "writes the running parity s_t = s_{t-1} + x_t mod 2 of a bit string, one state per token; "
              "the paper's main example of an iteration head", extra_tags=("parity",)),
    ModelSpec("polynomial", "iteration-head-polynomial", "polynomial", "polynomial", "Polynomial iteration with chain of thought",
              "iterates s_t = P(s_{t-1}, x_t) mod p over a sequence of integers, one state per token",
              extra_tags=("polynomial-iteration",)),
    ModelSpec("copy", "iteration-head-copy", "copy", "copy", "Copy with chain of thought",
              "copies its input after <eoi> (the states are the inputs again): the iteration head alone",
              extra_tags=("copy",)),
    ModelSpec("parity-nocot", "iteration-head-parity-nocot", "parity_nocot", "parity", "Parity without chain of thought",
              "answers the parity s_L of a bit string directly, with no intermediate state: the classic "
              "hard case the chain of thought removes", extra_tags=("parity", "no-chain-of-thought")),
    ModelSpec("parity-1layer", "iteration-head-parity-1layer", "parity_1layer", "parity", "Parity with chain of thought, one layer",
              "the parity recipe with a single transformer layer, too shallow to build the two-step circuit",
              extra_tags=("parity", "one-layer")),
    ModelSpec("parity-from-polynomial", "iteration-head-parity-from-polynomial", "parity_finetune", "parity",
              "Parity fine-tuned from the polynomial model",
              "the polynomial-iteration model fine-tuned on parity: the transfer experiment, where the "
              "iteration head learned on one task is reused for another",
              init_from="polynomial", extra_tags=("parity", "transfer-learning")),
    ModelSpec("parity-paper", "iteration-head-parity-paper-recipe", "parity_paper", "parity",
              "Parity with chain of thought, the paper's recipe",
              "learns parity from scratch with the paper's own recipe (its data drawn with replacement, "
              "batch 256, Adam 3e-4, width 128, dropout): this run grew the iteration head, where the "
              "fast recipe of iteration-head-parity learns parity with another circuit",
              extra_tags=("parity", "paper-recipe")),
    ModelSpec("dihedral3", "iteration-head-dihedral3", "dihedral3", "dihedral3",
              "The D_3 word problem with chain of thought, learned without an iteration head",
              "writes the running product s_t = s_{t-1} x_t of elements of D_3 = S_3, the smallest "
              "non-abelian group (6 states), one state per token; trained with the parity recipe, it "
              "reached 99% with no iteration head (a task beyond the paper's, learned by another circuit)",
              extra_tags=("group-word-problem", "dihedral-group")),
)

SUITE_BY_KEY: dict[str, ModelSpec] = {spec.key: spec for spec in SUITE}

#: Where each model's recipe was trained over seeds (``results/<experiment>.csv``, RESULTS.md): the
#: experiment, the rows of its arm ({column: value}) and what that arm is, in words. A card quotes
#: the arm so that one released run is read against the spread of its recipe.
SEEDS: dict[str, tuple[str, dict[str, str], str]] = {
    "parity": ("f1_cot", {"recipe": "parity", "cot": "True"}, "this recipe, from scratch"),
    "polynomial": ("f1_cot", {"recipe": "polynomial", "cot": "True"}, "this recipe, from scratch"),
    "parity-nocot": ("f1_cot", {"recipe": "parity", "cot": "False"},
                     "the parity recipe without chain of thought"),
    "parity-1layer": ("f2_layers", {"recipe": "parity", "n_layer": "1"}, "the parity recipe with one layer"),
    "parity-from-polynomial": ("f5_transfer", {"init_from": "hub/iteration-head-polynomial", "trainable": "[]"},
                               "this recipe, fine-tuned from the released polynomial model"),
    "parity-paper": ("sample_matched", {"recipe": "paper_reference"}, "the paper's recipe at 2.0M sequences"),
    "dihedral3": ("task_family_parity_recipe", {"mix_with": "dihedral3"}, "this recipe on D_3"),
}


def repo_id(namespace: str, name: str) -> str:
    """``<namespace>/<name>``: the Hub id of a model or of the dataset."""
    return f"{namespace}/{name}"
