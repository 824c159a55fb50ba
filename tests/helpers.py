"""What several test files share: the tiny model and the tiny run, the environment of a user's
fresh process, the command runners, and the one rule for a missing requirement (:func:`require`).

Test files import it as ``from helpers import ...`` (pytest puts ``tests/`` on ``sys.path``, as for
any test module there); nothing outside ``tests/`` imports it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from modeling import IterGPTConfig, IterGPTForCausalLM

ROOT = Path(__file__).resolve().parents[1]
HUB = ROOT / "hub"

# ---------------------------------------------------------------------------------------------
# A missing requirement: skipped with its reason here, a failure in CI
# ---------------------------------------------------------------------------------------------
REQUIRE_ALL = "ITERATION_HEAD_REQUIRE_ALL"  # .ci/run sets it: CI installs every extra and Chromium


def require(what: str | Path, reason: str):
    """``what``: a module (``"nnsight"``: returned, imported) or a file (a path, e.g. the browser
    ``/usr/bin/chromium``: returned). Where it is missing the test is skipped with ``reason``, or
    fails when ``ITERATION_HEAD_REQUIRE_ALL=1`` (CI, where every extra is installed)."""
    if isinstance(what, Path) or os.sep in what:
        if Path(what).exists():
            return Path(what)
    else:
        try:
            return importlib.import_module(what)
        except ImportError:
            pass
    if os.environ.get(REQUIRE_ALL) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ALL}=1: a missing requirement fails)")
    pytest.skip(reason)


def hub_mark(folder: Path):
    """``@pytest.mark.hub``, skipped where ``folder`` (a release made by ``python -m
    model_cards.release --out hub``) is absent: hub/ is the release, not an install."""
    def mark(test):
        skip = pytest.mark.skipif(not folder.is_dir(), reason=f"{folder} is absent: make it with "
                                  "`python -m model_cards.release --out hub --namespace <org>`")
        return pytest.mark.hub(skip(test))
    return mark


# ---------------------------------------------------------------------------------------------
# The tiny model and the tiny run
# ---------------------------------------------------------------------------------------------
TINY_MODEL = dict(n_embd=32, n_layer=2, n_head=2, n_positions=16)


def tiny_model(seed: int = 0, **overrides) -> IterGPTForCausalLM:
    """A 2-layer, 2-head, width-32 model in eval mode; every bias (there are none by default) drawn
    from N(0, 0.1), since biases start at zero and would not matter."""
    torch.manual_seed(seed)
    model = IterGPTForCausalLM(IterGPTConfig(**{**TINY_MODEL, **overrides})).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    return model


# A tiny copy run of train.py: lengths 1-5 fit a 16-position context. Dropout is on so that an
# exact resume must also restore the RNG.
TINY_RUN = ["recipe=copy", "model.n_embd=32", "model.n_positions=16", "model.embd_pdrop=0.1",
            "data.max_length=5", "data.examples_per_length=64", "optim.batch_size=32", "optim.warmup_steps=10",
            "eval_per_length=32", "eval_heads=false", "max_minutes=null", "target_accuracy=null",
            "snapshot_steps=[]", "report_to=none", "progress=false"]


def train_cmd(out, *extra) -> list[str]:
    return [sys.executable, "train.py", *TINY_RUN, f"output_dir={out}", *extra]


# ---------------------------------------------------------------------------------------------
# Commands in real processes
# ---------------------------------------------------------------------------------------------
def clean_env(**extra) -> dict:
    """The environment of a user's fresh process: offline, no PYTHONPATH, no token, one thread."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "OMP_NUM_THREADS": "1"})
    env.update(extra)
    return env


def run_cli(args, env_extra=None, **kw) -> subprocess.CompletedProcess:
    """``args`` run from the repository root in :func:`clean_env`, output captured as text."""
    return subprocess.run(args, cwd=ROOT, env=clean_env(**(env_extra or {})), capture_output=True, text=True, **kw)


MOUNTS = {"ro": ("mount --bind /tmp /tmp && mount -o remount,ro,bind /tmp", "a read-only bind mount"),
          "tmpfs": ("mount -t tmpfs -o size=64k tmpfs /tmp", "a small tmpfs")}


def need_mount(kind: str) -> None:
    """Skips the test unless this machine gives a private mount namespace (``unshare -r -m``) for a
    read-only bind mount (``"ro"``) or a small tmpfs (``"tmpfs"``): a kernel or container setting,
    not something an install provides, so a skip in CI too."""
    probe, what = MOUNTS[kind]
    try:
        works = bool(shutil.which("unshare")) and subprocess.run(
            ["unshare", "-r", "-m", "sh", "-c", probe], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        works = False
    if not works:
        pytest.skip(f"no private mount namespace here (unshare -r -m) for {what}")


def in_namespace(setup: str, cmd: list[str], after: str = "") -> list[str]:
    """``cmd`` in a private mount namespace (``unshare -r -m``) after the ``setup`` mounts; the
    mounts vanish with the process. ``after`` runs in the same namespace (e.g. to list a tmpfs)."""
    script = f'{setup} || exit 97; "$@"; rc=$?; {after or ":"}; exit $rc'
    return ["unshare", "-r", "-m", "sh", "-c", script, "sh", *cmd]


# ---------------------------------------------------------------------------------------------
# The explorer Space's app in a subprocess
# ---------------------------------------------------------------------------------------------
APP = HUB / "iteration-head-explorer" / "app.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(log: Path, args: tuple[str, ...] = (), env: dict | None = None, timeout: float = 120):
    """``python hub/iteration-head-explorer/app.py --models hub <args>`` in a subprocess, offline, one
    torch thread; yields its URL once it answers (the port: ``--port`` in ``args`` or
    ``GRADIO_SERVER_PORT`` in ``env``); stopped on exit. A start that fails names the app's log."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    port = args[args.index("--port") + 1] if "--port" in args else env["GRADIO_SERVER_PORT"]
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(APP), "--models", str(HUB), *args], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if urllib.request.urlopen(url, timeout=2).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the app did not answer on {url} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
