"""The run folder: what a run writes, how it is locked, replaced, resumed and never half-written.

Layout::

    <output_dir>/
      .iteration-head-run     marker: this folder was created by train.py (nothing else is ever deleted)
      .lock                   held (flock) by the process that trains in it
      train_config.yaml       the resolved config, with the architecture actually trained
      metrics.jsonl           one JSON record per evaluation
      summary.json            the run's outcome in one record (written at the end)
      logs/                   tracker logs (TensorBoard, ...)
      checkpoints/step_<N>/   accelerate save_state + trainer_state.json + manifest.json (sha256)
      snapshots/step_<N>/     save_pretrained folders (learning dynamics)
      final/                  the trained model (from_pretrained), training_info.json
      *.png                   figures of the report

Every file is written to a temporary name and renamed into place; a folder is written beside its
final name and renamed. ``overwrite`` deletes only the entries listed above, and only in a folder that
carries the marker (or an older run folder of this project), after the new run has been validated.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import warnings
from pathlib import Path

from datasets_builders.files import manifest_problems, write_manifest, write_text_atomic

__all__ = ["RunFolder", "RunFolderError", "atomic_dir", "read_metrics",
           "checkpoint_steps", "verify_manifest", "write_manifest", "no_space_message", "is_write_error"]

MARKER = ".iteration-head-run"
OWN_ENTRIES = {MARKER, ".lock", "train_config.yaml", "metrics.jsonl", "summary.json", "logs",
               "checkpoints", "snapshots", "final"}
OWN_SUFFIXES = (".png",)


class RunFolderError(RuntimeError):
    """The run folder cannot be used as asked (the message says why and what to do)."""


# torch.save reports a failed write without its errno: "[enforce fail at inline_container.cc:...]
# unexpected pos ...", "PytorchStreamWriter failed writing file ...", "basic_ios::clear: iostream error".
TORCH_WRITE_ERRORS = re.compile(r"inline_container\.cc|PytorchStreamWriter failed|iostream error|file write failed")


def _free_bytes(path) -> int | None:
    for p in (Path(path), *Path(path).parents):
        try:
            st = os.statvfs(p)
            return st.f_bavail * st.f_frsize
        except OSError:
            continue
    return None


def no_space_message(err: Exception, path) -> str:
    """One line for a failed write: an ``OSError``, or a library's error that wraps one (safetensors
    says "I/O error: ... (os error 28)"; torch.save no errno at all: then the free space decides)."""
    code = getattr(err, "errno", None)
    if code is None:
        found = re.search(r"os error (\d+)", str(err))
        code = int(found.group(1)) if found else None
    if code is None and TORCH_WRITE_ERRORS.search(str(err)):
        free = _free_bytes(path)
        code = errno.ENOSPC if free is not None and free < (1 << 20) else None
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"no space left writing {path} ({os.strerror(code)}); free some space, then resume=latest"
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write {path} ({os.strerror(code)}): choose a writable output_dir"
    return f"cannot write {path}: {getattr(err, 'strerror', None) or err}"


def is_write_error(err: Exception) -> bool:
    return isinstance(err, OSError) or "os error" in str(err) or bool(TORCH_WRITE_ERRORS.search(str(err)))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def atomic_dir(final: Path, write) -> None:
    """Write a folder beside ``final`` then rename it in place: a kill never leaves half a folder,
    and a failed write (disk full) removes what it wrote."""
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        write(tmp)
    except BaseException:
        _remove(tmp)
        raise
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        tmp.rename(final)
        _remove(old)
    else:
        tmp.rename(final)


def _temporary(name: str) -> bool:
    """A name :func:`write_text_atomic` / :func:`atomic_dir` use while writing or replacing."""
    return re.fullmatch(r"\..+\.(tmp|old)-\d+", name) is not None


def verify_manifest(folder: Path) -> str | None:
    """``None`` if every file of a checkpoint's manifest is present and intact, else the first problem."""
    found = manifest_problems(folder, "checkpoint")
    return found[0] if found else None


def saved_steps(folder: Path, marker: str | None = None) -> list[int]:
    """Steps of the ``step_<N>`` folders in ``folder`` (a run's checkpoints or snapshots), ascending; with
    ``marker``, only the folders that hold that file. Both kinds are renamed into place when complete."""
    if not folder.is_dir():
        return []
    return sorted(int(p.name[5:]) for p in folder.glob("step_*")
                  if p.name[5:].isdigit() and (marker is None or (p / marker).exists()))


def checkpoint_steps(folder: Path) -> list[int]:
    """Steps of the complete checkpoints (renamed into place) of ``folder``, ascending."""
    return saved_steps(folder, "trainer_state.json")


def read_metrics(path: Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` (``modeling.analysis.read_records``, the reader that ships
    with every checkpoint): a half-written last line is dropped with a warning, a damaged line
    elsewhere is a :class:`RunFolderError` naming the file and the line."""
    from modeling.analysis import read_records
    try:
        return read_records(str(path))
    except ValueError as err:
        raise RunFolderError(str(err)) from None


class RunFolder:
    """One run's folder. Check first (:meth:`check`), then :meth:`claim` (lock, replace, mark)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.ckpt_dir = self.path / "checkpoints"
        self.snap_dir = self.path / "snapshots"
        self.final_dir = self.path / "final"
        self.metrics_path = self.path / "metrics.jsonl"
        self.config_path = self.path / "train_config.yaml"
        self._lock_fd: int | None = None
        self.removed_temporaries: list[Path] = []

    # --- what is there ------------------------------------------------------------------------
    def entries(self) -> list[Path]:
        return sorted(self.path.iterdir()) if self.path.is_dir() else []

    def is_run_folder(self) -> bool:
        """Created by train.py: the marker, or the complete layout of a run of an older version (its
        config, its metrics and at least one complete checkpoint). A config and a metrics file alone
        prove nothing: any folder can hold files of those names."""
        return (self.path / MARKER).exists() or (
            self.config_path.exists() and self.metrics_path.exists() and bool(checkpoint_steps(self.ckpt_dir)))

    def leftovers(self) -> list[str]:
        """What a run left in the folder, besides its marker, lock and temporary files."""
        return [p.name for p in self.entries() if p.name not in (MARKER, ".lock") and not _temporary(p.name)]

    def remove_temporaries(self) -> list[Path]:
        """Delete the temporary files and folders of writers that were killed (``.<name>.tmp-<pid>``,
        ``.<name>.old-<pid>``) anywhere in the run folder. Only safe while holding the lock: no live
        writer of this folder can exist then."""
        found = [p for where in (self.path, self.ckpt_dir, self.snap_dir) if where.is_dir()
                 for p in where.iterdir() if _temporary(p.name)]
        for p in found:
            _remove(p)
        return found

    def foreign_entries(self) -> list[str]:
        return [p.name for p in self.entries() if not self._own(p.name)]

    @staticmethod
    def _own(name: str) -> bool:
        return name in OWN_ENTRIES or name.endswith(OWN_SUFFIXES) or _temporary(name)

    def is_finished(self) -> bool:
        return (self.final_dir / "training_info.json").exists() and (self.path / "summary.json").exists()

    # --- policy ---------------------------------------------------------------------------------
    def check(self, resume: str | None, overwrite: bool) -> None:
        """Refuse, before anything is written, every use of the folder that could lose data."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise RunFolderError(f"output_dir={str(p)!r} is a file, not a folder: choose another output_dir")
        entries = self.entries()
        if resume is not None:
            if entries and not self.is_run_folder():
                raise RunFolderError(f"cannot resume {p}: it is not a run folder of train.py")
            left = self.leftovers()
            if left and not self.config_path.exists():
                raise RunFolderError(f"cannot resume {p}: its train_config.yaml is missing, so the run it holds "
                                     f"({', '.join(left)}) cannot be checked against this config; nothing was "
                                     "changed. Restore train_config.yaml to continue it, or use overwrite=true "
                                     "(instead of resume) to train it again from step 0")
            if not entries and resume != "auto":
                raise RunFolderError(f"cannot resume {p}: there is no run there (resume=auto starts one)")
            return
        if not entries:
            return
        if not self.is_run_folder():
            raise RunFolderError(f"output_dir={str(p)!r} is not empty and is not a run folder of train.py "
                                 f"(it holds {', '.join(e.name for e in entries[:5])}"
                                 f"{', ...' if len(entries) > 5 else ''}); nothing was deleted: choose "
                                 "a new or empty output_dir")
        if not overwrite:
            what = "a finished run" if self.final_dir.exists() else "an unfinished run"
            raise RunFolderError(f"output_dir {p} holds {what}; add resume=latest to continue it or "
                                 "overwrite=true to replace it")
        foreign = self.foreign_entries()
        if foreign:
            raise RunFolderError(f"cannot overwrite {p}: it also holds files train.py did not write "
                                 f"({', '.join(foreign)}); nothing was deleted: move them away first")

    def claim(self, replace: bool) -> None:
        """Create the folder, take its lock (refusing a live owner), delete the old run's entries when
        ``replace`` and the temporary files of killed writers in any case, and mark the folder. Call only once the new run is known to be able to start."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock()
            if replace:
                for entry in self.entries():
                    if entry.name != ".lock" and self._own(entry.name):
                        _remove(entry)
            self.removed_temporaries = self.remove_temporaries()
            marker = self.path / MARKER
            if not marker.exists():
                write_text_atomic(marker, json.dumps({"created_by": "iteration-head train.py"}) + "\n")
        except OSError as err:
            self.release()
            raise RunFolderError(no_space_message(err, self.path)) from None

    def _lock(self) -> None:
        """An OS lock (``flock``): atomic, and released by the kernel when the process dies."""
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunFolderError(f"output_dir {self.path} is in use by process {owner}; wait for it or "
                                 "choose another output_dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- metrics --------------------------------------------------------------------------------
    def append_metrics(self, record: dict) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def truncate_metrics(self, step: int) -> list[dict]:
        """Keep the records up to ``step`` (what an interrupted run logged after its checkpoint goes),
        rewritten atomically."""
        kept = [r for r in read_metrics(self.metrics_path) if r["step"] <= step]
        write_text_atomic(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))
        return kept

    # --- checkpoints ----------------------------------------------------------------------------
    def resumable_checkpoint(self, resume: str) -> tuple[int, Path] | None:
        """The checkpoint to resume from: ``step_<N>`` as asked, or the latest intact one (a damaged
        latest checkpoint is skipped, saying so). ``None`` when there is none and resume is ``auto``."""
        steps = checkpoint_steps(self.ckpt_dir)
        if resume.startswith("step_"):
            step = int(resume[5:])
            if step not in steps:
                raise RunFolderError(f"resume={resume}: no complete checkpoint {self.ckpt_dir / resume}; "
                                     f"available: {['step_%d' % s for s in steps] or 'none'}")
            problem = verify_manifest(self.ckpt_dir / resume)
            if problem:
                raise RunFolderError(f"checkpoint {self.ckpt_dir / resume} is damaged: {problem}")
            return step, self.ckpt_dir / resume
        for step in reversed(steps):
            folder = self.ckpt_dir / f"step_{step}"
            problem = verify_manifest(folder)
            if problem is None:
                return step, folder
            warnings.warn(f"checkpoint {folder} is damaged ({problem}); trying the previous one")
        if resume == "auto":
            return None
        raise RunFolderError(f"resume={resume}: no intact checkpoint in {self.ckpt_dir}; start again with "
                             "overwrite=true")

    def prune_checkpoints(self, keep: int) -> None:
        for old in checkpoint_steps(self.ckpt_dir)[:-keep]:
            _remove(self.ckpt_dir / f"step_{old}")
