"""Intermediate checkpoints as revision branches: which snapshots of a run become ``step<N>``
revisions, their files in ``hub/revisions/<repo>/step<N>/``, what their branch gets at upload, and
their manifests. ``main`` is the final model; the release (:mod:`model_cards.release`) calls these
after evaluating a model, and :mod:`model_cards.publish` uploads each revision as a branch.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from . import verify
from .suite import ModelSpec

__all__ = ["MAX_REVISIONS", "MODEL_CODE", "REVISION_FILES", "SHARED_WITH_MAIN", "branch_extras", "branch_folder",
           "copy_revisions", "select_revisions", "write_manifests"]

MAX_REVISIONS = 4  # intermediate checkpoints published per model
# The repository's model code replaces the copy a run saved: every released folder and revision
# loads with today's code (tested), also when a run predates a later change to it.
_MODELING = Path(__file__).resolve().parents[1] / "modeling"
MODEL_CODE = {"configuration_itergpt.py": _MODELING / "configuration_itergpt.py",
              "modeling_itergpt.py": _MODELING / "modeling_itergpt.py",
              "hook_points.py": _MODELING / "hook_points.py"}  # modeling_itergpt imports it
# A revision folder keeps what differs from main; its branch gets the rest at upload (push_release):
# the model code (from the source) and main's tokenizer and generation config. Locally a revision
# loads with the installed package (`import modeling`), like every checkpoint of the project.
REVISION_FILES = ("config.json", "model.safetensors", "training_info.json")
SHARED_WITH_MAIN = ("tokenizer.json", "tokenizer_config.json", "generation_config.json")


def select_revisions(steps: list[int], final_step: int, points: list[dict], keep: int = MAX_REVISIONS) -> list[int]:
    """At most ``keep`` snapshot steps (before ``final_step``) that follow the rise of accuracy.

    The first snapshot, then the first snapshots whose test accuracy (``points``: the run's
    evaluations) reaches 25 %, 50 % and 75 % of the way from the first snapshot's accuracy to the
    final one; when accuracy hardly moves, or fewer steps were picked, the snapshots farthest from
    the ones chosen. Deterministic.
    """
    candidates = sorted(s for s in set(steps) if s < final_step)
    if len(candidates) <= keep:
        return candidates
    by_step = {p["step"]: p.get("accuracy_mean") for p in points}

    def acc(step: int) -> float | None:
        known = [s for s in by_step if s <= step and by_step[s] is not None]
        return by_step[max(known)] if known else None

    chosen = [candidates[0]]
    start, end = acc(candidates[0]), acc(final_step)
    if start is not None and end is not None and end - start >= 0.05:
        for q in (0.25, 0.5, 0.75):
            target = start + q * (end - start)
            hit = next((s for s in candidates if (acc(s) or 0.0) >= target), None)
            if hit is not None and hit not in chosen:
                chosen.append(hit)
    index = {s: i for i, s in enumerate(candidates)}
    while len(chosen) < keep:
        far = max((s for s in candidates if s not in chosen),
                  key=lambda s: (min(abs(index[s] - index[c]) for c in chosen), -s))
        chosen.append(far)
    return sorted(chosen[:keep])


def copy_revisions(run_dir: Path, out: Path, spec: ModelSpec, steps: list[int]) -> list[int]:
    """``out/revisions/<repo>/step<N>/``: the snapshot's :data:`REVISION_FILES` only."""
    root = out / "revisions" / spec.repo
    if root.exists():
        shutil.rmtree(root)
    for step in steps:
        source, target = run_dir / "snapshots" / f"step_{step}", root / f"step{step}"
        target.mkdir(parents=True)
        for name in REVISION_FILES:
            shutil.copyfile(source / name, target / name)
    return steps


def branch_extras(folder: Path) -> dict[str, Path]:
    """What a revision's branch gets at upload besides its own files: ``{name: source}``."""
    return {**MODEL_CODE, **{name: folder / name for name in SHARED_WITH_MAIN}}


def write_manifests(out: Path, spec: ModelSpec) -> None:
    """``manifest.json`` (sha256 of every file) in the model folder and each of its revisions."""
    from . import render

    folder = out / spec.repo
    for step in render.revision_steps(out, spec.repo):
        verify.write_manifest(out / "revisions" / spec.repo / f"step{step}", added_at_upload=branch_extras(folder))
    verify.write_manifest(folder, added_at_upload={})


@contextlib.contextmanager
def branch_folder(path: Path, main: Path):
    """The folder to upload as a branch: ``main`` itself, or a revision completed with
    :func:`branch_extras` (model code from the source, main's tokenizer) in a temporary folder."""
    if path == main:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=f"{path.name}.") as tmp:
        upload = Path(tmp) / path.name
        shutil.copytree(path, upload)
        for name, source in branch_extras(main).items():
            shutil.copyfile(source, upload / name)
        verify.verify(upload)
        yield upload
