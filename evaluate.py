"""The evaluation command: ``python evaluate.py --model runs/<name>/final`` (``--help`` lists every flag).

Its code and documentation are in ``modeling/evaluate_cli.py``. This file only keeps the command's
name, which is also the name of the Hugging Face ``evaluate`` library: where this folder comes first
on ``sys.path`` (a notebook or a ``python`` started in the repository root), ``import evaluate``
finds this file, which then loads the library in its place, so ``evaluate.load(...)`` works there too.
"""

import os
import sys

if __name__ == "__main__":
    from modeling.evaluate_cli import cli

    sys.exit(cli())
elif __name__ == "evaluate":  # imported by that name: be the library, looked up past this folder
    import importlib.machinery
    import importlib.util

    _here = os.path.dirname(os.path.abspath(__file__))
    _spec = importlib.machinery.PathFinder.find_spec(
        "evaluate", [p for p in sys.path if os.path.abspath(p or os.curdir) != _here])
    if _spec is None:
        raise ImportError("`import evaluate` found iteration-head's evaluate.py command, and the Hugging Face "
                          "evaluate library is not installed: pip install evaluate")
    _library = importlib.util.module_from_spec(_spec)
    sys.modules["evaluate"] = _library  # what `import evaluate` returns once this file has run
    _spec.loader.exec_module(_library)
