"""IterGPT, the probe-ready transformer of the Iteration Head paper, registered with the Auto classes.

``import modeling`` registers model type ``"itergpt"`` with ``AutoConfig``, ``AutoModel`` and
``AutoModelForCausalLM``, so ``AutoModelForCausalLM.from_pretrained(folder)`` works in-process. A saved
folder also carries ``configuration_itergpt.py``, ``modeling_itergpt.py`` and the ``hook_points.py`` it
imports, plus an ``auto_map``, so elsewhere ``AutoModelForCausalLM.from_pretrained(folder,
trust_remote_code=True)`` needs no repo.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration_itergpt import IterGPTConfig
from .hook_points import HookPoint
from .modeling_itergpt import (
    IterGPTAttention,
    IterGPTBlock,
    IterGPTForCausalLM,
    IterGPTMLP,
    IterGPTModel,
    IterGPTPreTrainedModel,
)

__all__ = [
    "HookPoint",
    "IterGPTAttention",
    "IterGPTBlock",
    "IterGPTConfig",
    "IterGPTForCausalLM",
    "IterGPTMLP",
    "IterGPTModel",
    "IterGPTPreTrainedModel",
]

AutoConfig.register(IterGPTConfig.model_type, IterGPTConfig, exist_ok=True)
AutoModel.register(IterGPTConfig, IterGPTModel, exist_ok=True)
AutoModelForCausalLM.register(IterGPTConfig, IterGPTForCausalLM, exist_ok=True)
