"""``make demo``: grow the iteration head on polynomial iteration, then fine-tune parity from it.

    python -m training.demo                      # seed 0, run folders runs/demo/{polynomial,parity}
    python -m training.demo --seed 1 --out runs/demo1 optim.lr=2e-3   # any train.py override, both stages

The two stages are exactly these two ``train.py`` commands (each is printed before it starts), run
in one process so the libraries are imported once::

    python train.py recipe=demo_polynomial seed=0 output_dir=runs/demo/polynomial overwrite=true
    python train.py recipe=demo_parity seed=0 init_from=runs/demo/polynomial/final output_dir=runs/demo/parity overwrite=true

Each stage prints per-length accuracy, every head's scores, when the head formed and where its wall
time went, and writes its attention map and emergence plot into its run folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli import run_config
from .config import ConfigError, compose

__all__ = ["stages", "main"]


def stages(seed: int, out: str | Path, extra: list[str] = ()) -> list[list[str]]:
    """The ``train.py`` overrides of the demo's two stages."""
    out = Path(out)
    common = [f"seed={seed}", "overwrite=true", *extra]
    return [["recipe=demo_polynomial", f"output_dir={out / 'polynomial'}", *common],
            ["recipe=demo_parity", f"init_from={out / 'polynomial' / 'final'}", f"output_dir={out / 'parity'}", *common]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="seed of both stages (default 0)")
    p.add_argument("--out", default="runs/demo", help="run folders <out>/polynomial and <out>/parity")
    p.add_argument("overrides", nargs="*", help="train.py overrides for both stages, e.g. threads=1")
    args = p.parse_args(argv)
    if args.seed < 0:
        p.error(f"--seed {args.seed}: give a seed >= 0")
    for overrides in stages(args.seed, args.out, args.overrides):
        print("$ python train.py " + " ".join(overrides), flush=True)
        try:
            config = compose(overrides)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        run_config(config)  # an expected failure prints one error line and exits 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
