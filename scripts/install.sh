#!/usr/bin/env bash
# Install iteration-head and its dependencies into the current Python environment.
#   bash scripts/install.sh           # the tested versions: requirements/lock.txt (what `make` and CI use)
#   IH_DEPS=newest bash scripts/install.sh   # the newest releases pyproject.toml's ranges allow
#   bash scripts/install.sh --check   # exit 0 if this environment already holds this checkout's install
# torch comes first: a CPU-only machine gets the CPU wheel of TORCH_VERSION (PyPI's Linux wheel is a
# multi-GB CUDA build). Set TORCH_SPEC to choose another build, e.g. TORCH_SPEC="torch" on a GPU machine.
# An install is skipped when nothing it depends on changed (pyproject.toml, the lock, the mode, this
# Python, this checkout): a stamp per environment, .install-stamp-<env>, records them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
DEPS=${IH_DEPS:-locked}
case "$DEPS" in locked|newest) ;; *) echo "IH_DEPS=$DEPS: use locked or newest" >&2; exit 2;; esac

stamp() {  # what the install depends on, hashed
  { cat pyproject.toml requirements/lock.txt; echo "$DEPS $TORCH_VERSION ${TORCH_SPEC:-}"
    "$PY" -I -c "import sys; print(sys.prefix, sys.version)"; pwd -P; } | sha256sum | cut -d' ' -f1
}
installed_here() {  # the package resolves to this checkout (editable install), outside the cwd too
  [ "$("$PY" -I -c "import importlib.util as u; s = u.find_spec('modeling'); print(s.origin if s else '')" 2>/dev/null)" \
    = "$(pwd -P)/modeling/__init__.py" ]
}
STAMP=.install-stamp-$("$PY" -I -c "import sys; print(sys.prefix)" | sha256sum | cut -c1-12)
up_to_date() { [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp)" ] && installed_here; }

if [ "${1:-}" = "--check" ]; then
  if up_to_date; then echo "install: up to date ($DEPS)"; exit 0; fi
  echo "install: needed ($DEPS)"; exit 1
fi
if up_to_date; then
  echo "install: up to date ($DEPS versions; pyproject.toml and requirements/lock.txt unchanged)"
  exit 0
fi
rm -f "$STAMP"
if ! "$PY" -c "import torch" 2>/dev/null; then
  if [ -n "${TORCH_SPEC:-}" ]; then
    "$PY" -m pip install "$TORCH_SPEC"
  elif command -v nvidia-smi >/dev/null 2>&1; then
    "$PY" -m pip install "torch==$TORCH_VERSION"
  else
    # CPU wheel; pip also looks in any local wheel folder it is configured with.
    "$PY" -m pip install --retries 1 "torch==$TORCH_VERSION" --extra-index-url https://download.pytorch.org/whl/cpu
  fi
fi
if [ "$DEPS" = newest ]; then
  "$PY" -m pip install -q --upgrade --upgrade-strategy eager -e ".[test,interop,space]"
else
  "$PY" -m pip install -q -c requirements/lock.txt -e ".[test,interop,space]"
fi
stamp > "$STAMP"
echo "install: done ($DEPS versions)"
