"""Test-session set-up shared by every test.

The repository root holds ``evaluate.py``. ``python -m pytest`` puts the root first on ``sys.path``,
where that script would shadow the ``evaluate`` library. Keep the root importable (for
``modeling`` and ``datasets_builders``) but *after* site-packages.
"""

import os
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != ROOT] + [ROOT]

# Tests never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
