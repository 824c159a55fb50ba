"""Sequence accuracy: the fraction of predicted token sequences that equal their reference exactly.

An ``evaluate`` metric over token ids, used by ``evaluate.py`` for the *generated* chain-of-thought
accuracy of the Iteration Head release. A prediction is right only when it has the same length as
its reference and every token matches (for a chain of thought: every state and the closing
``<eos>``). Optionally it also reports token accuracy and accuracy per position.

Load it offline from a checkout::

    import evaluate
    metric = evaluate.load("metrics/sequence_accuracy")
    metric.compute(predictions=[[1, 0, 62], [1, 1, 62]], references=[[1, 0, 62], [1, 0, 62]])
    # {'sequence_accuracy': 0.5}

This file is self-contained on purpose: ``evaluate.load`` copies it alone, and it runs as its own Space
(``hub/sequence_accuracy``). So its computation repeats ``modeling.evaluation.sequence_accuracy`` (the
command line's, free of the ``evaluate`` library) and its citation repeats
``datasets_builders.iteration_tasks.CITATION``; ``tests/test_evaluate.py`` checks that both agree.
"""

from __future__ import annotations

import datasets
import evaluate

_DESCRIPTION = """\
Exact sequence match rate between predicted and reference token-id sequences. A prediction counts
as right only if it has exactly the reference's length and every token equals the reference's.
With `per_position=True` it also returns `token_accuracy` (matching tokens over all reference
tokens; a missing predicted token counts as wrong) and `per_position_accuracy` (for each position
i, the fraction of references longer than i whose prediction has the right token at i).
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions (`list` of `list` of `int`): predicted token ids, one sequence per example.
    references (`list` of `list` of `int`): reference token ids, one sequence per example.
    per_position (`bool`, default `False`): also return token and per-position accuracy.

Returns:
    sequence_accuracy (`float`): fraction of exact matches, in [0, 1] (0.0 when there are no
        examples).
    token_accuracy (`float`, only with `per_position=True`): matching tokens / reference tokens.
    per_position_accuracy (`list` of `float`, only with `per_position=True`): accuracy at each
        position up to the longest reference.

Examples:
    >>> metric = evaluate.load("metrics/sequence_accuracy")
    >>> metric.compute(predictions=[[1, 0, 62], [1, 1]], references=[[1, 0, 62], [1, 0, 62]],
    ...                per_position=True)
    {'sequence_accuracy': 0.5, 'token_accuracy': 0.6666666666666666, 'per_position_accuracy': [1.0, 0.5, 0.5]}
"""

_CITATION = """\
@inproceedings{cabannes2024iteration,
  title     = {Iteration Head: A Mechanistic Study of Chain-of-Thought},
  author    = {Cabannes, Vivien and Arnal, Charles and Bouaziz, Wassim and Yang, Alice and
               Charton, Fran{\\c{c}}ois and Kempe, Julia},
  booktitle = {Advances in Neural Information Processing Systems},
  volume    = {37},
  year      = {2024},
  eprint    = {2406.02128},
  archivePrefix = {arXiv},
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SequenceAccuracy(evaluate.Metric):
    """Exact-match accuracy over token-id sequences (and, optionally, per-position accuracy)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("int64")),
                "references": datasets.Sequence(datasets.Value("int64")),
            }),
            reference_urls=["https://arxiv.org/abs/2406.02128"],
        )

    def _compute(self, predictions, references, per_position: bool = False) -> dict:
        n = len(references)
        exact = sum(list(p) == list(r) for p, r in zip(predictions, references))
        out = {"sequence_accuracy": exact / n if n else 0.0}
        if not per_position:
            return out
        width = max((len(r) for r in references), default=0)
        hits, counts = [0] * width, [0] * width
        for p, r in zip(predictions, references):
            for i, want in enumerate(r):
                counts[i] += 1
                hits[i] += int(i < len(p) and p[i] == want)
        total = sum(counts)
        out["token_accuracy"] = sum(hits) / total if total else 0.0
        out["per_position_accuracy"] = [h / c for h, c in zip(hits, counts)]
        return out
