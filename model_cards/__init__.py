"""Release of the Iteration Head suite on the Hugging Face Hub: model cards, dataset card, upload.

- :mod:`model_cards.suite` -- which models make up the suite (recipes, repo names, one line each);
- :mod:`model_cards.render` -- model and dataset cards rendered from *measured* files only
  (``eval_results.json``, ``analysis.json``, ``training_info.json`` / ``train_config.yaml``,
  ``config.json`` and the weights), through the templates in ``model_cards/templates/``;
- :mod:`model_cards.release` -- the command that trains (or takes) the runs, evaluates and
  analyses each, assembles ``hub/`` in Hub layout and, with ``--push``, uploads it::

      python -m model_cards.release --out hub --namespace <org>

- :mod:`model_cards.revisions` -- the intermediate checkpoints published as ``step<N>`` branches;
- :mod:`model_cards.publish` -- the checks before an upload and the upload itself.

The error and the progress log that the release's modules share are defined here.
"""

from __future__ import annotations

import time

__all__ = ["ReleaseError", "log"]


class ReleaseError(RuntimeError):
    """A release that cannot go on (missing run, failed check, folder too large): one clear line."""


_STARTED = time.perf_counter()


def log(message: str) -> None:
    """Progress on stdout, with the seconds since the release started."""
    print(f"[release {time.perf_counter() - _STARTED:6.0f}s] {message}", flush=True)

