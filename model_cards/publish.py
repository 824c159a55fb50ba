"""Publishing the release: the checks that must pass before anything is uploaded (token and network,
every folder complete and as its manifest records it, the size limit) and the upload itself (the
dataset, the metric Space, every model's ``main`` and one branch per revision).
"""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import HfApi

from . import ReleaseError, log, verify
from .revisions import REVISION_FILES, branch_folder
from .suite import DATASET_NAME, METRIC_NAME, ModelSpec, repo_id

__all__ = ["MAX_HUB_BYTES", "REQUIRED_FILES", "check_folders", "hub_size", "preflight_push", "push_release"]

MAX_HUB_BYTES = 45_000_000  # the whole hub/ folder (models, revisions, dataset); 30 MB until the width-128
# paper-recipe model (weights, GPT-2 copy and 4 revisions: ~10 MB) joined the six width-64 ones
REQUIRED_FILES = ("config.json", "model.safetensors", "configuration_itergpt.py", "modeling_itergpt.py",
                  "hook_points.py", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "training_info.json",
                  "train_config.yaml", "README.md", "eval_results.json", "analysis.json", "analysis.md",
                  "analysis.py", "tasks.py", verify.MANIFEST)


def hub_size(out: Path) -> int:
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def check_folders(out: Path, specs: list[ModelSpec]) -> None:
    """Every model folder complete and as its manifest records it (sha256 of every file), every
    revision complete, the dataset present, ``out`` < 45 MB."""
    from . import render

    problems = []
    for spec in specs:
        folder = out / spec.repo
        missing = [n for n in REQUIRED_FILES if not (folder / n).is_file()]
        if missing:
            problems.append(f"{folder} lacks {', '.join(missing)}")
        for step in render.revision_steps(out, spec.repo):
            rev = out / "revisions" / spec.repo / f"step{step}"
            missing = [n for n in REVISION_FILES if not (rev / n).is_file()]
            if missing:
                problems.append(f"{rev} lacks {', '.join(missing)}")
        for path in [folder] + [out / "revisions" / spec.repo / f"step{s}" for s in render.revision_steps(out, spec.repo)]:
            if (path / verify.MANIFEST).is_file():
                problems.extend(verify.problems(path))
    if not (out / DATASET_NAME / "README.md").is_file():
        problems.append(f"{out / DATASET_NAME} holds no exported dataset")
    if problems:
        raise ReleaseError("the release folder is incomplete: " + "; ".join(problems))
    size = hub_size(out)
    if size >= MAX_HUB_BYTES:
        parts = sorted(((hub_size(p), p.name) for p in out.iterdir() if p.is_dir()), reverse=True)
        raise ReleaseError(f"{out} holds {size / 1e6:.1f} MB, over the {MAX_HUB_BYTES / 1e6:.0f} MB limit; "
                           "largest: " + ", ".join(f"{name} {b / 1e6:.1f} MB" for b, name in parts[:4]))


def preflight_push() -> str:
    """The token to upload with; ``SystemExit`` (nothing uploaded) when offline or logged out."""
    from datasets_builders.export import check_push_possible  # noqa: PLC0415 - imports datasets

    return check_push_possible()


def push_release(out: Path, namespace: str, specs: list[ModelSpec], private: bool = False, api=None) -> list[str]:
    """Upload the dataset and every model (``main`` + one branch per revision) once all checks pass.

    Each upload replaces the remote files of its revision (``delete_patterns="*"``; the Hub keeps
    ``.gitattributes``), so a re-push leaves no stale file. ``main`` is also published as branch
    ``step<final step>``. Returns the commit URLs.
    """
    from . import render

    token = preflight_push()
    api = api or HfApi(token=token)
    try:
        user = api.whoami()
    except Exception as err:  # noqa: BLE001 - network errors and auth errors alike stop the push
        raise SystemExit(f"--push: the Hub cannot be reached or the token is refused ({err}); nothing was uploaded.") from None
    check_folders(out, specs)
    log(f"push: as {user.get('name', '?')} to {namespace}: {DATASET_NAME} and {len(specs)} model(s)")
    urls = []
    dataset = repo_id(namespace, DATASET_NAME)
    api.create_repo(dataset, repo_type="dataset", private=private, exist_ok=True)
    urls.append(api.upload_folder(repo_id=dataset, repo_type="dataset", folder_path=str(out / DATASET_NAME),
                                  delete_patterns="*", commit_message="Iteration Head tasks").commit_url)
    metric = repo_id(namespace, METRIC_NAME)  # the model-index metric type: a Space, as evaluate's metrics are
    api.create_repo(metric, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    urls.append(api.upload_folder(repo_id=metric, repo_type="space", folder_path=str(out / METRIC_NAME),
                                  delete_patterns="*", commit_message="sequence_accuracy metric").commit_url)
    for spec in specs:
        rid = repo_id(namespace, spec.repo)
        folder = out / spec.repo
        final_step = json.loads((folder / "training_info.json").read_text(encoding="utf-8"))["step"]
        api.create_repo(rid, private=private, exist_ok=True)
        log(f"push: {rid} main")
        urls.append(api.upload_folder(repo_id=rid, folder_path=str(folder), delete_patterns="*",
                                      commit_message=f"{spec.title}: final model (step {final_step})").commit_url)
        branches = [(f"step{s}", out / "revisions" / spec.repo / f"step{s}") for s in render.revision_steps(out, spec.repo)]
        branches.append((f"step{final_step}", folder))
        for branch, path in branches:
            log(f"push: {rid} {branch}")
            api.create_branch(rid, branch=branch, exist_ok=True)
            with branch_folder(path, folder) as upload:
                urls.append(api.upload_folder(repo_id=rid, folder_path=str(upload), revision=branch,
                                              delete_patterns="*", commit_message=f"{spec.title}: {branch}").commit_url)
    return urls
