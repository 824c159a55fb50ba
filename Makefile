# The two commands of the README. Both install what they need first (scripts/install.sh).
.PHONY: install demo test bench lock test-newest

# The tested versions (requirements/lock.txt); skipped when nothing it depends on changed.
install:
	bash scripts/install.sh

# Re-resolve requirements/lock.txt from pyproject.toml's ranges (then run `make test` and commit it).
lock:
	bash scripts/lock.sh

# The suite against the newest releases the ranges allow, in .venv-newest (CI runs it as a warning).
test-newest:
	bash scripts/test_newest.sh

# The demo on the CPU: grow the iteration head on polynomial iteration (stage 1), then fine-tune
# parity from it (stage 2); each stage prints per-length accuracy, every head's scores and when the
# head formed, and writes its attention map and emergence plot into its run folder.
SEED ?= 0
# Both stages run in one process (python -m training.demo prints the two train.py commands they are).
demo: install
	python -m training.demo --seed $(SEED)

# The test suite, offline (the Hub is never contacted).
test: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python -m pytest tests -q

bench: install
	for f in bench/bench_*.py; do python $$f; done

# The explorer Space on the released models in hub/, offline; then open http://127.0.0.1:7860
.PHONY: explore
explore: install
	python hub/iteration-head-explorer/app.py --models hub
