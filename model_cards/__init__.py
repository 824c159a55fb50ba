"""Release of the Iteration Head suite on the Hugging Face Hub: model cards, dataset card, upload.

- :mod:`model_cards.suite` -- which models make up the suite (recipes, repo names, one line each);
- :mod:`model_cards.render` -- model and dataset cards rendered from *measured* files only
  (``eval_results.json``, ``analysis.json``, ``training_info.json`` / ``train_config.yaml``,
  ``config.json`` and the weights), through the templates in ``model_cards/templates/``;
- :mod:`model_cards.release` -- the command that trains (or takes) the runs, evaluates and
  analyses each, assembles ``hub/`` in Hub layout and, with ``--push``, uploads it::

      python -m model_cards.release --out hub --namespace <org>
"""
