"""The install that `make` and CI use: the lock pins every dependency inside pyproject.toml's ranges,
the environment under test holds the locked versions, and a skipped install is never a stale one."""

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"


def pins() -> dict[str, str]:
    return {m.group(1).lower().replace("_", "-"): m.group(2)
            for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)$", LOCK.read_text(), re.M)}


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in project["dependencies"] + extras["test"] + extras["interop"] + extras["space"]]


def test_the_lock_pins_every_dependency_inside_its_range():
    locked = pins()
    for req in requirements():
        name = req.name.lower().replace("_", "-")
        if name == "torch":  # installed first by scripts/install.sh (CPU or CUDA build of TORCH_VERSION)
            assert "torch" not in locked
            continue
        assert name in locked, f"{name} is not in {LOCK}: run `make lock`"
        assert req.specifier.contains(locked[name], prereleases=True), \
            f"{name}=={locked[name]} in the lock is outside pyproject.toml's {req.specifier}: run `make lock`"


@pytest.mark.skipif(os.environ.get("IH_DEPS") == "newest", reason="the newest-releases suite tests other versions")
def test_the_environment_under_test_holds_the_locked_versions():
    locked = pins()
    for name in ("transformers", "datasets", "accelerate", "huggingface-hub", "tokenizers", "safetensors",
                 "hydra-core", "gradio", "nnsight", "transformer-lens"):
        assert metadata.version(name) == locked[name], (
            f"{name} {metadata.version(name)} is installed but the lock says {locked[name]}: run `make install`")


@pytest.mark.integration
def test_a_skipped_install_is_never_a_stale_one():
    check = [os.environ.get("SHELL_BASH", "bash"), "scripts/install.sh", "--check"]
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("IH_DEPS", None)
    res = subprocess.run(check, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        pytest.skip("this environment was not installed by scripts/install.sh (make install)")
    assert "up to date" in res.stdout
    for change in ({"IH_DEPS": "newest"}, {"TORCH_VERSION": "0.0.1"}):  # what the install depends on changed
        res = subprocess.run(check, cwd=ROOT, env={**env, **change}, capture_output=True, text=True, timeout=120)
        assert res.returncode == 1 and "needed" in res.stdout, (change, res.stdout)
    # an edited pyproject.toml (a new dependency, a changed range) re-installs; restored, it is up to date again
    pyproject = ROOT / "pyproject.toml"
    original = pyproject.read_bytes()
    try:
        pyproject.write_bytes(original + b"\n# an edit\n")
        res = subprocess.run(check, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 1 and "needed" in res.stdout, res.stdout
    finally:
        pyproject.write_bytes(original)
    res = subprocess.run(check, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "up to date" in res.stdout
