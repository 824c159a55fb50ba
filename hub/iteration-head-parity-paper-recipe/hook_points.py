"""Hook points: named identity modules that mark activations, and the probing API over them.

As in TransformerLens' ``hook_points.py``, this file holds the machinery and no model. A model puts a
``HookPoint`` wherever a researcher may want to read or replace an activation; its name is its module
path (``blocks.1.attn.hook_pattern``). A model that also inherits :class:`HookedRootMixin` gets
``hook_points()``, ``run_with_cache``, ``run_with_hooks``, the ``hooks(...)`` context manager and
``reset_hooks()``.

With nothing attached a hook point is one identity call. :func:`is_hooked` and :func:`is_traced` tell
whether anything reads a point now (a torch hook, or an nnsight trace), so that a model can skip
computing the costly ones otherwise.

This file imports only torch, so that it ships next to ``modeling_itergpt.py`` (which imports it
relatively) for ``trust_remote_code=True`` loading.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

__all__ = ["HookFn", "HookPoint", "HookedRootMixin", "RETURN_TYPES", "is_hooked", "is_traced"]

# A hook is `fn(tensor, hook) -> tensor | None`; a non-None return value replaces the activation.
HookFn = Callable[[torch.Tensor, "HookPoint"], "torch.Tensor | None"]

# run_with_hooks / run_with_cache ``return_type`` values (TransformerLens' plus our default).
RETURN_TYPES = ("outputs", "logits", "loss", "both", None)


class HookPoint(nn.Module):
    """Identity module marking an activation. Attach torch forward hooks to read or replace it.

    ``name`` is the module path inside the model that names its points (set by that model), e.g.
    ``"blocks.0.attn.hook_pattern"``.
    """

    def __init__(self):
        super().__init__()
        self.name: str | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def add_hook(self, fn: HookFn) -> torch.utils.hooks.RemovableHandle:
        """Register ``fn(tensor, hook)``; a non-``None`` return value replaces the activation."""
        return self.register_forward_hook(lambda module, args, output: fn(output, module))

    def add_backward_hook(self, fn: HookFn) -> torch.utils.hooks.RemovableHandle:
        """Register ``fn(grad, hook)``, called in backward with the gradient of this activation (same
        shape); a non-``None`` return value replaces the gradient. It is attached to the activations of
        the forward passes run while the handle is alive; ``backward()`` may come after its removal."""

        def attach(module, args, output):
            if output.requires_grad:
                output.register_hook(lambda grad: fn(grad, module))

        return self.register_forward_hook(attach)

    def has_hooks(self) -> bool:
        return bool(self._forward_hooks or self._forward_pre_hooks)

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


def is_hooked(point) -> bool:
    """True when something is attached to this hook point (tolerates a plain function in its place)."""
    return bool(getattr(point, "_forward_hooks", None) or getattr(point, "_forward_pre_hooks", None))


def is_traced(point) -> bool:
    """True while an nnsight trace runs over ``point``. nnsight wraps modules instead of attaching torch
    hooks: it installs its own ``forward`` on every module it wraps (for good) and keeps, in the
    module's ``__nnsight__``, a state whose ``active()`` names the trace running now (a version without
    ``active()``: always). Other tools that set ``forward`` need the model to compute every point."""
    if torch.compiler.is_compiling():
        return False  # nnsight does not trace a compiled graph
    state = getattr(point, "__dict__", {}).get("__nnsight__")
    if state is None:
        return False
    active = getattr(state, "active", None)
    if not callable(active):
        return True
    try:
        return active()[0] is not None
    except Exception:  # noqa: BLE001 - another nnsight version: compute the point
        return True


class HookedRootMixin:
    """The probing API of a model whose activations are :class:`HookPoint` modules (TransformerLens'
    ``HookedRootModule``, as a mixin for an ``nn.Module`` that is also a ``PreTrainedModel``).

    Hook names are module paths relative to :meth:`_hook_root` (the model itself unless it says
    otherwise), e.g. ``"blocks.1.attn.hook_pattern"``; a leading ``"model."`` is accepted, and
    ``hook_aliases`` maps former names to current ones.
    """

    # Former names of hook points, still accepted by names filters.
    hook_aliases: dict[str, str] = {}

    def _hook_root(self) -> nn.Module:
        return self

    def hook_points(self) -> dict[str, HookPoint]:
        """All hook points by name (relative to :meth:`_hook_root`), in module order."""
        return {name: m for name, m in self._hook_root().named_modules() if isinstance(m, HookPoint)}

    def _resolve_names(self, names_filter) -> list[str]:
        points = self.hook_points()
        if names_filter is None:
            return list(points)
        if callable(names_filter):
            return [name for name in points if names_filter(name)]
        names = [names_filter] if isinstance(names_filter, str) else list(names_filter)
        names = [self.hook_aliases.get(n.removeprefix("model."), n.removeprefix("model.")) for n in names]
        unknown = [n for n in names if n not in points]
        if unknown:
            raise ValueError(
                f"unknown hook point(s) {unknown}; names look like 'blocks.0.attn.hook_pattern' "
                f"(see model.hook_points(); {len(points)} available)"
            )
        return names

    @contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple] = (), bwd_hooks: Iterable[tuple] = ()) -> Iterator["HookedRootMixin"]:
        """Context manager attaching ``[(name_or_filter, fn)]``. Forward hooks: ``fn(tensor, hook)`` may
        return a replacement tensor. Backward hooks: ``fn(grad, hook)`` sees the gradient of the
        activations computed inside the context (call ``backward()`` inside or after it) and may
        return a replacement gradient. Attaching is removed on exit, also when the body raises."""
        points = self.hook_points()
        handles = []
        try:
            for hook_list, attach in ((fwd_hooks, HookPoint.add_hook), (bwd_hooks, HookPoint.add_backward_hook)):
                for names_filter, fn in hook_list:
                    for name in self._resolve_names(names_filter):
                        handles.append(attach(points[name], fn))
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def _run(self, input_ids, return_type, kwargs, need_loss: bool = False):
        """One forward pass; ``return_type`` as in TransformerLens: "logits", "loss" (next-token
        cross-entropy over ``input_ids`` unless ``labels`` are given), "both" (logits, loss), None;
        or "outputs" (default): the model's usual output object. Returns (selected, outputs)."""
        if return_type not in RETURN_TYPES:
            raise ValueError(f"return_type={return_type!r} is unknown: choose one of {RETURN_TYPES}")
        if (need_loss or return_type in ("loss", "both")) and kwargs.get("labels") is None:
            if not hasattr(self, "lm_head"):
                raise ValueError(f"a loss (return_type='loss'/'both', incl_bwd=True) needs a language-model "
                                 f"head (lm_head): {type(self).__name__} has none; load the causal-LM class")
            kwargs = {**kwargs, "labels": input_ids}
        outputs = self(input_ids=input_ids, **kwargs)
        logits, loss = getattr(outputs, "logits", None), getattr(outputs, "loss", None)
        selected = {"outputs": outputs, "logits": logits, "loss": loss, "both": (logits, loss), None: None}
        return selected[return_type], outputs

    def run_with_hooks(
        self,
        input_ids: torch.Tensor | None = None,
        fwd_hooks: Iterable[tuple] = (),
        bwd_hooks: Iterable[tuple] = (),
        return_type: str | None = "outputs",
        **kwargs,
    ):
        """One forward pass with temporary hooks (e.g. ablate a head by zeroing its slice of
        ``hook_z``). ``bwd_hooks`` stay attached to this pass's activations, so a later
        ``loss.backward()`` calls them. Other arguments go to ``forward`` (unknown ones raise)."""
        with self.hooks(fwd_hooks, bwd_hooks):
            return self._run(input_ids, return_type, kwargs)[0]

    def run_with_cache(
        self,
        input_ids: torch.Tensor | None = None,
        names_filter=None,
        attention_mask: torch.Tensor | None = None,
        return_type: str | None = "outputs",
        incl_bwd: bool = False,
        **kwargs,
    ) -> tuple[object, dict[str, torch.Tensor]]:
        """One forward pass recording activations: returns ``(outputs, {hook_name: tensor})``.

        ``outputs`` is the model's usual output object (``outputs.logits`` for a causal LM), or what
        ``return_type`` asks for ("logits", "loss", "both", None). The tensors are detached, keyed
        by hook point name (``blocks.0.attn.hook_pattern``; aliases such as ``hook_final`` resolve to
        their current name). ``names_filter``: ``None`` (all), a name, a list of names or a predicate
        on names. ``incl_bwd=True`` also runs ``backward()`` on the loss (next-token cross-entropy
        over ``input_ids`` unless ``labels`` are given) and records each activation's gradient as
        ``"<name>_grad"``. Recording ``hook_pattern``/``hook_attn_scores`` uses the eager path and
        ``hook_result`` computes the per-head outputs; call ``model.eval()`` first to disable dropout.
        """
        store: dict[str, torch.Tensor] = {}

        def save(tensor: torch.Tensor, hook: HookPoint) -> None:
            store[hook.name] = tensor.detach()

        def save_grad(grad: torch.Tensor, hook: HookPoint) -> None:
            store[f"{hook.name}_grad"] = grad.detach()

        names = self._resolve_names(names_filter)
        kwargs["attention_mask"] = attention_mask
        with self.hooks([(names, save)] if names else [], [(names, save_grad)] if names and incl_bwd else []):
            selected, outputs = self._run(input_ids, return_type, kwargs, need_loss=incl_bwd)
            if incl_bwd:
                outputs.loss.backward()
        return selected, store

    def reset_hooks(self) -> None:
        """Remove every forward hook attached to a hook point (e.g. after an interrupted session)."""
        for point in self.hook_points().values():
            point._forward_hooks.clear()
            point._forward_pre_hooks.clear()
