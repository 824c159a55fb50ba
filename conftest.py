"""Test-session set-up shared by every test.

``python -m pytest`` puts the repository root first on ``sys.path``; ``import evaluate`` there finds
the ``evaluate.py`` command, which hands over to the Hugging Face library (as it does for users).
What several test files share (the tiny model and run, the command runners, ``require`` for a missing
extra) is in ``tests/helpers.py``; the markers are registered in ``pyproject.toml``.
"""

import os

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
