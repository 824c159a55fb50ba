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

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests run tiny matrices on a small shared CPU, where a second intra-op thread only adds
    contention (measured 5-20x slower per forward under load). Subprocesses set OMP_NUM_THREADS."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
