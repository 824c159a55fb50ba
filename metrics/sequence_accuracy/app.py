"""The Hub Space of this metric (as `evaluate`'s own metric Spaces): a form to try it. The release
copies this folder to ``hub/sequence_accuracy/``; ``evaluate.load("<namespace>/sequence_accuracy")``
reads ``sequence_accuracy.py`` from that Space."""

from pathlib import Path

import evaluate
from evaluate.utils import launch_gradio_widget

launch_gradio_widget(evaluate.load(str(Path(__file__).with_name("sequence_accuracy.py"))))
