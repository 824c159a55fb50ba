#!/usr/bin/env bash
# A quick part of the test suite against the newest releases that pyproject.toml's ranges allow, in an
# environment of its own (.venv-newest), so that a dependency's new release is seen before it turns a
# checkout red. CI runs it before `make test` and reports its outcome as a warning; `make test` (the
# whole suite, tested versions of requirements/lock.txt) decides whether CI passes.
# What it runs: -m "not slow and not faults and not integration" (the markers: pyproject.toml), the
# in-process tests (about four in five): the model and its Auto classes, GPT-2, TransformerLens and
# nnsight, the datasets and tokenizer, evaluation, the release pipeline and the released hub/
# folders, the explorer's handlers, the training config and data. Left to `make test`: fault
# injection and every run of a whole command in a subprocess (train.py and accelerate launch,
# sweeps, the Space's app).
# Measured file by file on a shared 2-core machine: ~430 s of test time against ~1,150 s for all.
# Exit status: pytest's.
#   bash scripts/test_newest.sh                      # log: .venv-newest/pytest.log
#   NEWEST_MARKERS="" bash scripts/test_newest.sh    # the whole suite
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-newest
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || exit 2
IH_DEPS=newest PYTHON="$VENV/bin/python" bash scripts/install.sh >"$VENV/install.log" 2>&1 \
  || { echo "newest releases: the install failed (see $VENV/install.log):"; tail -5 "$VENV/install.log"; exit 2; }
"$VENV/bin/python" -m pip freeze 2>/dev/null | grep -iE '^(torch|transformers|datasets|accelerate|huggingface.hub|tokenizers|safetensors|gradio|nnsight|transformer.lens)=' \
  | tr '\n' ' ' | sed 's/^/newest releases under test: /'; echo
MARKERS=${NEWEST_MARKERS-not slow and not faults and not integration}
IH_DEPS=newest HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 "$VENV/bin/python" -m pytest tests -q -p no:cacheprovider -rf \
  ${MARKERS:+-m "$MARKERS"} >"$VENV/pytest.log" 2>&1
rc=$?
failed=$(grep -E '^FAILED ' "$VENV/pytest.log" | sed 's/^FAILED /  /; s/ - .*//')
if [ $rc -eq 0 ]; then
  echo "newest releases: the selected tests pass (-m \"${MARKERS:-all}\")"
else
  echo "WARNING newest releases: pytest exit status $rc; failing tests (log: $VENV/pytest.log):"
  echo "${failed:-  (none listed: see the log)}"
fi
exit $rc
