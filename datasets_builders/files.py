"""Writes that never leave a half-written file or folder: the exporter, the release and the command
lines build their output aside, then swap it in with one rename.

- :func:`write_text_atomic` -- a file written to a temporary name beside it, flushed, then renamed
  over the target (``os.replace``): a reader sees the old file or the new one, never a part.
- :func:`staging_folder` / :func:`swap_in` -- a folder built as ``.<name>.staging-<pid>`` beside
  the target (same file system), then exchanged with the target in one atomic ``renameat2``
  (``RENAME_EXCHANGE``; two renames where the kernel lacks it) and the old content deleted. A kill
  at any point leaves the old folder or the new one in place, plus at most a hidden staging or old
  folder, which :func:`remove_stale` deletes on the next run when its process is gone.
- :func:`check_writable` -- a folder can take a file (probed by creating one: ``root`` ignores
  permission bits, read-only mounts and full disks do not).
- :func:`describe_os_error` -- one line for a failed write: what, where, and what to do
  (``no space left on device`` for ENOSPC/EFBIG, ``read-only`` for EROFS/EACCES).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = ["check_writable", "copy_tree", "describe_os_error", "remove_stale", "staging_folder", "swap_in",
           "write_text_atomic", "write_csv_atomic",
           "MANIFEST", "sha256_file", "write_manifest", "manifest_problems"]

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def write_csv_atomic(path: str | os.PathLike, columns: list[str], rows: list[dict], lineterminator: str = "\r\n") -> None:
    """A table with a header row, written with :func:`write_text_atomic` (``csv``'s own line ending by
    default, as the committed tables written this way have)."""
    import csv
    import io
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator=lineterminator)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it (``.<name>.tmp-<pid>``, the name a
    run folder recognises as a killed writer's) and a rename: never a half-written file. The temporary
    file is removed when the write fails (a full disk keeps no partial file); a replaced file keeps its
    permissions. The one atomic text writer of the project."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with _ignored():
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(folder: str | os.PathLike) -> None:
    """Raise ``OSError`` unless a file can be created in ``folder`` (made when missing). A path that
    is a file is ``NotADirectoryError``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder", str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
    os.close(fd)
    os.unlink(probe)


def describe_os_error(err: OSError, what: str) -> str:
    """``"<what>: <path>: <reason>; <what to do>"`` for a failed write."""
    where = f"{err.filename}: " if err.filename else ""
    if err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return f"{what}: {where}no space left on device (or file size limit reached): free space or write elsewhere"
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{what}: {where}the folder is read-only or not writable: choose a writable place"
    if err.errno == errno.ENOTDIR:
        return f"{what}: {where}is a file, not a folder: give a folder path"
    return f"{what}: {where}{err.strerror or err}"


def copy_tree(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Copy every file of ``source`` into ``target`` (merged); the first failure is raised as the
    ``OSError`` it is (``shutil.copytree`` folds them into one ``shutil.Error`` without errno)."""
    for root, _, names in os.walk(source):
        into = os.path.join(target, os.path.relpath(root, source))
        os.makedirs(into, exist_ok=True)
        for name in names:
            shutil.copy2(os.path.join(root, name), os.path.join(into, name))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(target: str | os.PathLike) -> list[Path]:
    """Delete the hidden staging/old folders of ``target`` left by killed processes; returns them."""
    target = Path(target)
    removed = []
    if not target.parent.is_dir():
        return removed
    for path in target.parent.glob(f".{target.name}.*-*"):
        kind, _, pid = path.name[len(target.name) + 2:].rpartition("-")
        if kind in ("staging", "old") and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextmanager
def staging_folder(target: str | os.PathLike):
    """An empty folder beside ``target`` to build the new content in; swap it in with :func:`swap_in`
    inside the block. Whatever is left of it at the end (the block raised) is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    staging = target.parent / f".{target.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux ``renameat2``); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def swap_in(staging: str | os.PathLike, target: str | os.PathLike) -> None:
    """Put the finished ``staging`` folder at ``target`` in one step, then delete the old content."""
    staging, target = Path(staging), Path(target)
    if not target.exists():
        os.rename(staging, target)
        return
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    if _exchange(staging, target):
        os.rename(staging, old)  # staging now holds the old content
    else:
        os.rename(target, old)
        os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _ignored():
    try:
        yield
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------
# manifests: the sha256 of every file of a folder (released folders and training checkpoints)
# ---------------------------------------------------------------------------------------------
MANIFEST = "manifest.json"


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entries(paths: list[Path], root: Path) -> dict:
    return {p.relative_to(root).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(paths)}


def write_manifest(folder: str | os.PathLike, added_at_upload: dict[str, str | os.PathLike] | None = None) -> Path:
    """Record every file of ``folder`` (recursively, the manifest excepted) in ``manifest.json``:
    ``{"algorithm": "sha256", "files": {name: {"bytes", "sha256"}}}``; ``added_at_upload``: ``{name:
    source file}`` that an upload adds to the folder (recorded, not required locally); None keeps those
    of the manifest being replaced. The one manifest writer (the release and the training checkpoints)."""
    folder = Path(folder)
    old = folder / MANIFEST
    files = [p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST]
    doc = {"algorithm": "sha256", "files": _entries(files, folder)}
    if added_at_upload is None and old.is_file():
        try:
            kept = json.loads(old.read_text(encoding="utf-8")).get("added_at_upload")
        except (ValueError, AttributeError):
            kept = None
        if kept:
            doc["files"] = {k: v for k, v in doc["files"].items() if k not in kept}
            doc["added_at_upload"] = kept
    elif added_at_upload:
        doc["added_at_upload"] = {name: {"bytes": Path(src).stat().st_size, "sha256": sha256_file(src)}
                                  for name, src in sorted(added_at_upload.items())}
    write_text_atomic(folder / MANIFEST, json.dumps(doc, indent=1) + "\n")
    return folder / MANIFEST


def manifest_problems(folder: str | os.PathLike, kind: str = "release") -> list[str]:
    """Every difference between ``folder`` and its manifest (empty: intact). The one verifier.

    ``kind="release"`` (a released folder): a file not in the manifest is a problem too (added after
    the release), and messages name the file's path; ``kind="checkpoint"`` (a training checkpoint):
    only recorded files are checked, messages name them relative to the folder, and a manifest of the
    older flat ``{name: sha256}`` form still verifies."""
    folder = Path(folder)
    path = folder / MANIFEST
    release = kind == "release"
    if not path.is_file():
        return [f"{folder}: no {MANIFEST}; this folder was not written by the release" if release
                else f"{MANIFEST} is missing or unreadable"]
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if release or "files" in doc:
            recorded, optional = doc["files"], doc.get("added_at_upload", {})
        else:  # a checkpoint of an earlier version: {name: sha256}
            recorded, optional = {k: {"sha256": v} for k, v in doc.items()}, {}
        for want in recorded.values():
            want["sha256"]  # noqa: B018  every entry has its digest
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        return [f"{path}: damaged manifest ({err})" if release else f"{MANIFEST} is missing or unreadable"]
    out = []
    for name, want in {**optional, **recorded}.items():
        file = folder / name
        shown = file if release else name
        if not file.is_file():
            if name in recorded:
                out.append(f"{shown}: missing" if release else f"{name} is missing")
            continue
        if ("bytes" in want and file.stat().st_size != want["bytes"]) or sha256_file(file) != want["sha256"]:
            out.append(f"{shown}: changed since the release (sha256 differs from {MANIFEST})" if release
                       else f"{name} is damaged (sha256 differs from the manifest)")
    if release:
        for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
            name = file.relative_to(folder).as_posix()
            if name not in recorded and name not in optional and "/.cache/" not in f"/{name}":
                out.append(f"{file}: not recorded in {MANIFEST} (added after the release)")
    return out
