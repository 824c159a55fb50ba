# The two commands of the README. Both install what they need first (scripts/install.sh).
.PHONY: install demo test bench

install:
	bash scripts/install.sh

# Train the demo parity model on the CPU, then print its per-length accuracy and iteration head.
demo: install
	python train.py --recipe parity --output_dir runs/parity --overwrite

# The test suite, offline (the Hub is never contacted).
test: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python -m pytest tests -q

bench: install
	for f in bench/bench_*.py; do python $$f; done

# The explorer Space on the released models in hub/, offline; then open http://127.0.0.1:7860
.PHONY: explore
explore: install
	python hub/iteration-head-explorer/app.py --models hub
