#!/usr/bin/env bash
# Install iteration-head and its dependencies into the current Python environment.
#   scripts/install.sh          # the package + test tools + interpretability libraries + the explorer Space
# torch comes first: a CPU-only machine gets the CPU wheel (PyPI's Linux wheel is a multi-GB CUDA
# build). Set TORCH_SPEC to choose another build, e.g. TORCH_SPEC="torch" on a GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  if [ -n "${TORCH_SPEC:-}" ]; then
    "$PY" -m pip install "$TORCH_SPEC"
  elif command -v nvidia-smi >/dev/null 2>&1; then
    "$PY" -m pip install "torch>=2.6"
  else
    # CPU wheel; pip also looks in any local wheel folder it is configured with.
    "$PY" -m pip install --retries 1 "torch==2.13.0" --extra-index-url https://download.pytorch.org/whl/cpu
  fi
fi
"$PY" -m pip install -q -e ".[test,interop,space]"
