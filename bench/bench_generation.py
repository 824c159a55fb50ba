"""Time the generation of one million parity sequences (train + test), three ways.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python bench/bench_generation.py [--rows 1000000] [--skip-generator]

1. ``generate_split``: token rows as numpy arrays, what a trainer uses in memory;
2. ``split_table``: the same as Arrow tables with all four columns (``text`` included);
3. ``download_and_prepare`` of the ``IterationTasks`` builder (an ``ArrowBasedBuilder``: one
   Arrow table per length), next to the same data through a ``GeneratorBasedBuilder`` (one Python
   dict per row through ``datasets``' example encoder), which is why the builder is Arrow-based.

Lengths 17 … 32 (so 1M *distinct* sequences exist at every length), ``rows / 16`` per length,
split 50/50. Prints seconds; the ratio line compares the two builders measured in this run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import datasets  # noqa: E402
import pyarrow as pa  # noqa: E402

from datasets_builders import iteration_tasks as it  # noqa: E402


class GeneratorIterationTasks(datasets.GeneratorBasedBuilder):
    """Same configs and data as ``IterationTasks``, handed to ``datasets`` one dict per row."""

    VERSION = it.IterationTasks.VERSION
    BUILDER_CONFIG_CLASS = it.IterationTaskConfig
    BUILDER_CONFIGS = it.NAMED_CONFIGS
    _info = it.IterationTasks._info
    _split_generators = it.IterationTasks._split_generators

    def _generate_examples(self, split):
        key = 0
        for length, rows in it.generate_split(self.config, split).items():
            columns = it._arrow_columns(rows, length)  # vectorised; only the hand-off loops
            for example in pa.Table.from_arrays(columns, schema=it.FEATURES.arrow_schema).to_pylist():
                yield key, example
                key += 1


def timed(label: str, fn) -> float:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    print(f"{label:<58s} {seconds:7.2f} s")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="total rows, train + test")
    parser.add_argument("--skip-generator", action="store_true", help="skip the slow GeneratorBasedBuilder run")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    kwargs = dict(min_length=17, max_length=32, examples_per_length=args.rows // 16, extrapolation_lengths=())
    config = it.IterationTaskConfig(name="bench", task="parity", **kwargs)
    n = sum(c["drawn"] for c in it.length_counts(config))
    print(f"parity, lengths 17..32, {n:,} distinct sequences (train + test), datasets {datasets.__version__}")

    timed("generate_split (numpy rows)", lambda: [it.generate_split(config, s) for s in ("train", "test")])
    timed("split_table (Arrow, every column)", lambda: [it.split_table(config, s) for s in ("train", "test")])
    with tempfile.TemporaryDirectory() as tmp:
        arrow = timed("IterationTasks.download_and_prepare (ArrowBasedBuilder)", lambda: it.IterationTasks(
            config_name="parity", cache_dir=os.path.join(tmp, "arrow"), **kwargs).download_and_prepare())
        if not args.skip_generator:
            gen = timed("same data via a GeneratorBasedBuilder (dict per row)", lambda: GeneratorIterationTasks(
                config_name="parity", cache_dir=os.path.join(tmp, "gen"), **kwargs).download_and_prepare())
            print(f"GeneratorBasedBuilder / ArrowBasedBuilder time ratio: {gen / arrow:.1f}x")


if __name__ == "__main__":
    main()
