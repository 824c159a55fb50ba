"""Write the iterative tasks in the Hub's no-code layout (parquet per config + a dataset card).

    python -m datasets_builders.export --out hub/iteration-head-tasks --overwrite     # all 33 configs
    python -m datasets_builders.export --out /tmp/ih --configs parity parity_nocot --max-length 8
    python -m datasets_builders.export --out hub/iteration-head-tasks --push --repo-id org/iteration-head-tasks

The folder holds::

    README.md                                        card: YAML `configs:` + `dataset_info`, description
    data/<config>/<split>-00000-of-00001.parquet     train, test (and test_longer)
    tokenizer/                                       tokenizer.json + tokenizer_config.json (every id the
                                                     exported tasks use: 127 with symmetric5)

so ``load_dataset(folder_or_repo, "parity")`` needs no code, and
``AutoTokenizer.from_pretrained(folder + "/tokenizer")`` gives the matching tokenizer.
Same arguments ⇒ same bytes (parquet from pyarrow carries no timestamp; the card has no date).

``--push`` uploads the folder with ``huggingface_hub``; it needs a token (``hf auth login`` or
``HF_TOKEN``) and the network, and stops before exporting anything when either is missing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import datasets
import huggingface_hub
import pyarrow.parquet as pq
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from . import tasks
from .iteration_tasks import (CITATION, NAMED_CONFIG_NAMES, SPLITS, TASKS, IterationTaskConfig, IterationTasks,
                              length_counts, task_description)
from .files import describe_os_error, staging_folder, swap_in, write_text_atomic
from .tokenizer import build_tokenizer

__all__ = ["ALL_CONFIGS", "export", "push", "check_push_possible", "main"]

ALL_CONFIGS = NAMED_CONFIG_NAMES  # the paper's 8, the built-in tasks' 24, then mix_polynomial
DEFAULT_REPO_ID = "<org>/iteration-head-tasks"
_OWNED = ("README.md", "data", "tokenizer")  # what an export writes, and --overwrite replaces
_CARD_MARK = "# Iteration Head: iterative tasks"  # the heading of every card the exporter writes


def parquet_path(config_name: str, split: str) -> str:
    return f"data/{config_name}/{split}-00000-of-00001.parquet"


def check_replaceable(out: str, overwrite: bool) -> None:
    """``out`` may be written: missing, empty, or (with ``overwrite``) a previous export, recognised by
    holding only what an export writes and this project's card. Anything else is refused, naming it:
    ``--overwrite`` never deletes what the exporter did not create."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise FileExistsError(f"{out} is a file: give a folder for the export")
    if not os.path.isdir(out) or not os.listdir(out):
        return
    if not overwrite:
        raise FileExistsError(f"{out} is not empty: pass overwrite=True (--overwrite) to replace the export in it")
    foreign = sorted(set(os.listdir(out)) - set(_OWNED))
    card = os.path.join(out, "README.md")
    ours = os.path.isfile(card) and _CARD_MARK in Path(card).read_text(encoding="utf-8", errors="replace")
    if foreign or not ours:
        what = f"holds {', '.join(foreign[:5])}" if foreign else "has no card of this exporter (README.md)"
        raise FileExistsError(f"{out} {what}, so it is not an export of this project: --overwrite replaces only "
                              "a previous export; nothing was deleted. Choose another --out")


def export(out: str, configs: list[str] | tuple[str, ...] = ALL_CONFIGS, overwrite: bool = False,
           repo_id: str | None = None, **overrides) -> dict[str, datasets.DatasetInfo]:
    """Prepare ``configs`` with the builder (``overrides``: any ``IterationTaskConfig`` field) and
    write parquet files, the tokenizer and the card under ``out``. Returns each config's info.

    Every config is validated before anything is written; the export is built in a staging folder
    beside ``out`` and swapped in at once (``datasets_builders.files``): a bad argument, a full disk
    or a kill leaves a previous export as it was.
    """
    unknown = [c for c in configs if c not in ALL_CONFIGS]
    if unknown or not configs:
        raise ValueError(f"configs={list(configs)!r} is invalid: choose among {', '.join(ALL_CONFIGS)}")
    configs = [c for c in ALL_CONFIGS if c in configs]  # canonical order, no duplicates
    check_replaceable(out, overwrite)
    infos, builders = {}, {}
    with tempfile.TemporaryDirectory() as cache:
        prepared = [IterationTasks(config_name=name, cache_dir=cache, **overrides) for name in configs]  # validates
        with staging_folder(out) as stage:
            for builder in prepared:
                name = builder.config.name
                builder.download_and_prepare()
                download_size = 0
                for split in builder.config.splits:
                    path = os.path.join(stage, parquet_path(name, split))
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    # The prepared Arrow table (features in its schema metadata) as zstd parquet.
                    pq.write_table(builder.as_dataset(split).data.table, path, compression="zstd")
                    download_size += os.path.getsize(path)
                infos[name] = datasets.DatasetInfo(features=builder.info.features, splits=builder.info.splits,
                                                   download_size=download_size,
                                                   dataset_size=builder.info.dataset_size, config_name=name)
                builders[name] = builder.config
            build_tokenizer(vocab_size=vocab_size(builders.values())).save_pretrained(os.path.join(stage, "tokenizer"))
            write_text_atomic(os.path.join(stage, "README.md"),
                              dataset_card(infos, builders, repo_id or DEFAULT_REPO_ID, overrides))
            swap_in(stage, out)
    return infos


def vocab_size(configs) -> int:
    """Token ids the tokenizer of an export needs: the largest of its tasks' vocabularies (64, or
    more for a task with values past 56: ``symmetric5`` needs 127). Every base id stays where it is."""
    return max(c.make_task(name).vocab_size for c in configs for name in c.subtasks)


# ---------------------------------------------------------------------------------------------
# The dataset card
# ---------------------------------------------------------------------------------------------
def _size_category(n: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < bound:
            return label
    return "n>10M"


def _family(name: str) -> str:
    """A config's name without ``_nocot``: with or without CoT, the same sequences and one table row."""
    return name[:-len("_nocot")] if name.endswith("_nocot") else name


def _counts_table(configs: dict[str, IterationTaskConfig]) -> str:
    """Distinct sequences per length (that exist vs drawn, train / test) for each task exported."""
    by_task: dict[str, IterationTaskConfig] = {}
    for name, config in configs.items():  # with or without CoT draw the same sequences
        by_task.setdefault(_family(name), config)
    cols, cells = [], {}
    for task_name, config in by_task.items():
        for c in length_counts(config):
            col = task_name if config.task != "mix" else f"{task_name}: {c['task']}"
            if col not in cols:
                cols.append(col)
            split = f"{c['train']} / {c['test']}" if not c["test_longer"] else f"{c['test_longer']} (test_longer)"
            cells[(c["length"], col)] = f"{c['available']:,} | {split}"
    lengths = sorted({length for length, _ in cells})
    # The paper's tasks in one table (as first released), the others four to a table.
    paper = [col for col in cols if col.split(":")[0] in TASKS]
    others = [col for col in cols if col not in paper]
    groups = [g for g in [paper] + [others[i:i + 4] for i in range(0, len(others), 4)] if g]
    tables = []
    for group in groups:
        head = "| L | " + " | ".join(f"{col}: exist | {col}: train / test" for col in group) + " |"
        rule = "|---:|" + "---:|---:|" * len(group)
        body = [f"| {length} | " + " | ".join(cells.get((length, col), "– | –") for col in group) + " |"
                for length in lengths]
        tables.append("\n".join([head, rule] + body))
    return "\n\n".join(tables)


def _yes_no(value) -> str:
    return "–" if value is None else ("yes" if value else "no")


def _tasks_table(infos: dict[str, datasets.DatasetInfo], configs: dict[str, IterationTaskConfig]) -> str:
    """One row per task exported: states, inputs and algebra computed from its transition table
    (``tasks.structure``), and the rows of each split as written (the configs' split infos)."""
    splits = [s for s in SPLITS if any(s in info.splits for info in infos.values())]
    by_task: dict[str, list[str]] = {}
    for name, config in configs.items():
        by_task.setdefault(_family(name), []).append(name)
    head = ("| task | configs | states | inputs | table entries (states × inputs) | group (order) | abelian "
            "| solvable | " + " | ".join(f"{split} rows" for split in splits) + " |")
    rule = "|---|---|---:|---:|---:|---|---|---|" + "---:|" * len(splits)
    rows = []
    for task_name, names in by_task.items():
        config = configs[names[0]]
        if config.task == "mix":
            task_cell, shape = f"mix ({' + '.join(config.subtasks)})", ["–"] * 6
        else:
            st = tasks.structure(config.make_task())
            task_cell = task_name
            shape = [f"{st['states']:,}", f"{st['inputs']:,}", f"{st['entries']:,}",
                     f"yes ({st['states']})" if st["group"] else "no", _yes_no(st["abelian"]), _yes_no(st["solvable"])]
        counts = []
        for split in splits:
            values = [infos[n].splits[split].num_examples for n in names if split in infos[n].splits]
            counts.append("–" if not values else f"{values[0]:,}" if len(set(values)) == 1
                          else " / ".join(f"{v:,}" for v in values))
        configs_cell = ", ".join(f"`{n}`" for n in names)
        rows.append(f"| {task_cell} | {configs_cell} | " + " | ".join(shape + counts) + " |")
    return "\n".join([head, rule] + rows)


def _params_table(configs: dict[str, IterationTaskConfig]) -> str:
    head = ("| config | task | CoT | lengths | examples / length | rows kept / length | test fraction | seed | p "
            "| P(s, x) | mix ratio | test_longer lengths |\n|---|---|---|---|---:|---:|---:|---:|---:|---|---:|---|")
    rows = []
    for name, c in configs.items():
        poly = tasks.polynomial_text(c.polynomial) if "polynomial" in c.subtasks else "–"
        rows.append(f"| `{name}` | {c.task} | {'yes' if c.cot else 'no'} | {c.min_length}–{c.max_length} "
                    f"| {c.examples_per_length} | {c.max_rows_per_length or 'all'} | {c.test_fraction} | {c.seed} "
                    f"| {c.modulus if 'polynomial' in c.subtasks else '–'} | {poly} "
                    f"| {c.mix_ratio if c.task == 'mix' else '–'} "
                    f"| {', '.join(map(str, c.extrapolation_lengths)) or '–'} |")
    return "\n".join([head] + rows)


# The card's prose is a jinja2 template rendered by huggingface_hub's card templates, as the model
# cards are (model_cards/templates/). It lives here, not beside those, because datasets_builders must
# not import model_cards (model_cards builds on the dataset, never the other way round).
CARD_TEMPLATE = Path(__file__).resolve().parent / "templates" / "dataset_card.md"


def dataset_card(infos: dict[str, datasets.DatasetInfo], configs: dict[str, IterationTaskConfig],
                 repo_id: str, overrides: dict) -> str:
    beyond = any(c.task not in TASKS for c in configs.values())
    data = DatasetCardData(
        license="mit",
        pretty_name="Iteration Head: iterative tasks (copy, parity, polynomial iteration"
                    + (", groups and automata)" if beyond else ")"),
        task_categories=["text-generation"],
        tags=["synthetic", "chain-of-thought", "mechanistic-interpretability", "iteration-head", "parity"]
             + (["group-theory", "automata"] if beyond else []),
        size_categories=[_size_category(sum(s.num_examples for i in infos.values() for s in i.splits.values()))],
    )
    default = "parity" if "parity" in infos else next(iter(infos))
    MetadataConfigs({
        name: {"data_files": [{"split": split, "path": parquet_path(name, split)} for split in info.splits],
               **({"default": True} if name == default else {})}
        for name, info in infos.items()
    }).to_dataset_card_data(data)
    DatasetInfosDict(infos).to_dataset_card_data(data)

    first = next(iter(configs.values()))
    flags = "".join(f" --{k.replace('_', '-')} {_cli_value(v)}" for k, v in sorted(overrides.items()))
    chosen = "" if tuple(infos) == ALL_CONFIGS else f" --configs {' '.join(infos)}"
    command = f"python -m datasets_builders.export --out <folder>{chosen}{flags}"
    task_names = list(dict.fromkeys(_family(name) for name in configs))
    task_lines = "\n".join(f"- **{t}**: {task_description(t)}" for t in task_names)
    vocab = vocab_size(configs.values())
    extension = "" if vocab == tasks.VOCAB_SIZE else (
        f" Values from 57 on are the words `\"57\"`, `\"58\"`, … at ids 64, 65, … (value `v` has id `v + 7`, "
        f"after the specials; here up to `\"{tasks.token_text(vocab - 1)}\"` = {vocab - 1}), so no id of the "
        f"{tasks.VOCAB_SIZE}-id vocabulary of the paper's tasks moves.")
    capped = sorted({c.max_rows_per_length for c in configs.values() if c.max_rows_per_length})
    kept = "" if not capped else (
        f"\n\nConfigs with rows kept per length ({', '.join(map(str, capped))}; see Generation) write fewer "
        "rows without changing the split: of each length's drawn sequences, the first of its test part and "
        "the first of its train part, in the same proportion (and at a `test_longer` length its first "
        "sequences, as many as at the other lengths). Their test rows are thus all in the test split "
        "of the same config drawn in full, the one that `train.py` holds out at the same parameters: a model "
        "trained by `train.py data.task=<task>` with the defaults never saw them.")
    with_column = [f"`{n}`" for n, c in configs.items() if c.metadata]
    metadata_column = "" if not with_column else (
        f" The configs {', '.join(with_column)} hold it in a `metadata` column" if len(with_column) > 1
        else f" The config {with_column[0]} holds it in a `metadata` column") + "."
    longer_lengths = sorted({L for c in configs.values() for L in c.extrapolation_lengths})
    longer = "" if not longer_lengths else (
        f" Here: lengths {', '.join(map(str, longer_lengths))} (in the configs whose Generation row lists "
        "them), round(examples_per_length · test_fraction) distinct sequences of each (per task of a mix)"
        + ("" if not any(c.max_rows_per_length and c.extrapolation_lengths for c in configs.values()) else
           ", of which the configs with rows kept per length keep the first (as many as their other lengths)")
        + "; "
        f"with CoT a row of length {longer_lengths[-1]} is {2 * longer_lengths[-1] + 3} tokens, at positions no "
        "training row reached.")
    split_by_task = [n for n, c in configs.items() if c.task_splits]
    for n in split_by_task:
        c = configs[n]
        counts = {(r["task"], r["length"]): r for r in length_counts(c)}
        full = {t: counts[t, c.max_length]["train"] for t in c.subtasks}
        longer += (
            f"\n\n`{n}` takes each half from its own task's config (`{'` and `'.join(c.subtasks)}`): its "
            "`test` and `test_longer` are exactly theirs, row for row (the split that a `train.py` run of this "
            "mix holds out and evaluates on), and its `train` is a prefix of their train parts: per length "
            f"{sum(full.values()):,} rows, {c.mix_ratio:.0%} copy ({' and '.join(f'{v:,} {t}' for t, v in full.items())}), "
            "or all of a train part where it is smaller (at short lengths), so these hold fewer copy rows than "
            f"a run's fresh draws (with replacement, {c.mix_ratio:.0%} copy at every length).")
    card = DatasetCard.from_template(
        data, template_path=str(CARD_TEMPLATE), metadata_column=metadata_column, longer=longer, beyond=beyond,
        task_lines=task_lines, default=default, tasks_table=_tasks_table(infos, configs), repo_id=repo_id,
        vocab_size=vocab, extension=extension, kept=kept, counts_table=_counts_table(configs),
        params_table=_params_table(configs), command=command, version=first.version, citation=CITATION.strip(),
    )
    return str(card).rstrip("\n") + "\n"  # jinja drops the template's final newline


def _cli_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


# ---------------------------------------------------------------------------------------------
# Upload
# ---------------------------------------------------------------------------------------------
def check_push_possible() -> str:
    """The token to upload with; ``SystemExit`` with a clear message when offline or logged out."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}
    if offline or huggingface_hub.constants.HF_HUB_OFFLINE:
        raise SystemExit("--push: HF_HUB_OFFLINE=1 is set, so nothing can be uploaded. Unset it (with "
                         "network access) to push; nothing was uploaded.")
    token = huggingface_hub.get_token()
    if token is None:
        raise SystemExit("--push: no Hugging Face token found. Run `hf auth login` or set HF_TOKEN; "
                         "nothing was uploaded.")
    return token


def push(folder: str, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Create the dataset repo if needed and upload ``folder``; returns the commit URL."""
    token = token or check_push_possible()
    api = huggingface_hub.HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    commit = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=folder,
                               commit_message="Iteration Head tasks: parquet configs, card, tokenizer")
    return commit.commit_url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--configs", nargs="+", default=list(ALL_CONFIGS), choices=ALL_CONFIGS, metavar="CONFIG",
                        help=f"configs to export (default: all of {', '.join(ALL_CONFIGS)})")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous export in --out")
    gen = parser.add_argument_group("generation (IterationTaskConfig fields; default: the named configs)")
    gen.add_argument("--min-length", type=int)
    gen.add_argument("--max-length", type=int)
    gen.add_argument("--examples-per-length", type=int)
    gen.add_argument("--test-fraction", type=float)
    gen.add_argument("--seed", type=int)
    gen.add_argument("--modulus", type=int)
    gen.add_argument("--mix-ratio", type=float)
    gen.add_argument("--extrapolation-lengths", type=int, nargs="+", metavar="L")
    gen.add_argument("--max-rows-per-length", type=int, metavar="N",
                     help="keep at most N rows per length in every config (the built-in tasks' configs keep "
                          "256; the split stays that of --examples-per-length)")
    hub = parser.add_argument_group("upload")
    hub.add_argument("--push", action="store_true", help="upload the folder to the Hub (needs a token and network)")
    hub.add_argument("--repo-id", help="dataset repo, e.g. org/iteration-head-tasks")
    hub.add_argument("--private", action="store_true")
    args = parser.parse_args(argv)

    token = None
    if args.push:
        if not args.repo_id:
            parser.error("--push needs --repo-id")
        token = check_push_possible()  # before any work, so a failed push costs nothing
    fields = ("min_length", "max_length", "examples_per_length", "test_fraction", "seed", "modulus",
              "mix_ratio", "extrapolation_lengths", "max_rows_per_length")
    overrides = {k: getattr(args, k) for k in fields if getattr(args, k) is not None}
    if "extrapolation_lengths" in overrides:
        overrides["extrapolation_lengths"] = tuple(overrides["extrapolation_lengths"])
    datasets.disable_progress_bars()
    try:
        infos = export(args.out, args.configs, overwrite=args.overwrite, repo_id=args.repo_id, **overrides)
    except (ValueError, FileExistsError) as e:
        raise SystemExit(f"error: {e}") from None
    except OSError as e:  # a full disk, a read-only folder: the previous export is untouched
        raise SystemExit("error: " + describe_os_error(e, f"cannot write the export to {args.out}")) from None
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.out) for f in fs)
    rows = sum(s.num_examples for i in infos.values() for s in i.splits.values())
    print(f"wrote {len(infos)} configs, {rows:,} rows, {size / 1e6:.2f} MB to {args.out}")
    if args.push:
        print(f"uploaded: {push(args.out, args.repo_id, args.private, token)}")


if __name__ == "__main__":
    sys.exit(main())
