"""Record and verify the sha256 of every file of a released folder (``manifest.json``).

The release writes ``manifest.json`` into each model folder and each revision folder once
everything in it is final; it lists every file with its size and sha256. A weight file or a config
changed afterwards (a config whose activation or head count no longer matches the trained weights
cannot be seen from the tensor shapes) fails the check::

    python -m model_cards.verify hub/iteration-head-parity            # one folder
    python -m model_cards.verify hub                                  # every released folder below
    python -m model_cards.verify hub/iteration-head-parity --write    # re-record after a deliberate change

A revision folder (``revisions/<repo>/step<N>``) stores only what differs from ``main`` (config,
weights, training info); the files that the upload adds to its branch (model code, tokenizer,
generation config) are recorded under ``added_at_upload`` and checked when present, so a
downloaded branch verifies too. Exit status 1 and one line per problem when a check fails.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from datasets_builders.files import MANIFEST, manifest_problems, sha256_file, write_manifest

__all__ = ["MANIFEST", "ManifestError", "VERSION_STAMPS", "find_manifests", "main", "problems", "sha256_file",
           "verify", "without_version_stamps", "write_manifest"]

# Keys a library writes with its own version into every file it saves (config.json,
# generation_config.json): they change with each of its releases and say nothing about the model, so
# a comparison of a shipped file with a fresh one leaves them out.
VERSION_STAMPS = frozenset({"transformers_version"})


def without_version_stamps(doc):
    """``doc`` (parsed JSON) without its :data:`VERSION_STAMPS`, at any depth: what to compare."""
    if isinstance(doc, dict):
        return {k: without_version_stamps(v) for k, v in doc.items() if k not in VERSION_STAMPS}
    if isinstance(doc, list):
        return [without_version_stamps(v) for v in doc]
    return doc


class ManifestError(ValueError):
    """A released folder whose files differ from its manifest (or that has none)."""


def problems(folder: str | os.PathLike) -> list[str]:
    """Every difference between a released ``folder`` and its manifest (empty: as released)."""
    return manifest_problems(folder, "release")


def verify(folder: str | os.PathLike) -> None:
    """Raise :class:`ManifestError` listing every problem of ``folder``."""
    found = problems(folder)
    if found:
        raise ManifestError("; ".join(found))


def find_manifests(root: str | os.PathLike) -> list[Path]:
    """The released folders at or below ``root``: those holding a manifest (or ``root`` itself)."""
    root = Path(root)
    if (root / MANIFEST).is_file():
        return [root]
    return sorted(p.parent for p in root.rglob(MANIFEST))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_cards.verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="released folder(s), or a release root such as hub")
    parser.add_argument("--write", action="store_true", help="(re)write the manifest of each folder instead")
    args = parser.parse_args(argv)
    failed = False
    for given in args.folders:
        if not Path(given).is_dir():
            print(f"error: {given} is not a folder: give a released model folder or a release root (hub)",
                  file=sys.stderr)
            return 1
        folders = [Path(given)] if args.write else find_manifests(given)
        if not folders:
            print(f"error: {given} holds no {MANIFEST}: it was not written by the release", file=sys.stderr)
            return 1
        for folder in folders:
            if args.write:
                print(f"wrote {write_manifest(folder)}")
                continue
            found = problems(folder)
            failed |= bool(found)
            for line in found:
                print(f"error: {line}", file=sys.stderr)
            if not found:
                print(f"ok: {folder}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
