"""Training IterGPT on the paper's tasks: the typed config (``config``), data (``data``), the run
folder (``run_folder``), the loop (``loop``), what a run reports (``report``), sweep tables
(``results``) and the command line behind ``train.py`` (``cli``)."""

from .config import ConfigError, TrainConfig
from .loop import TrainingError, train
from .run_folder import RunFolderError

__all__ = ["ConfigError", "RunFolderError", "TrainConfig", "TrainingError", "train"]
