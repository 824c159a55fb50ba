"""Evaluate an IterGPT checkpoint on an iterative task; write ``eval_results.json``.

Per input length L it measures (the accuracies of Cabannes et al., NeurIPS 2024, arXiv:2406.02128):

- teacher-forced sequence accuracy: every argmax prediction after ``<eoi>`` is right;
- generated accuracy: greedy ``generate`` from ``<task> x_1 … x_L <eoi>`` with the KV cache, scored
  as "every state right" (the whole chain of thought and ``<eos>``) and "final answer right" (s_L);
- with ``--extrapolate``, the same on the lengths beyond training that fit in the context
  (``2L + 3 <= n_positions``).

Examples::

    python evaluate.py --model runs/parity/final                # task, CoT, lengths from the run
    python evaluate.py --model runs/parity/final --task parity --lengths 1-16 --n-per-length 1000
    python evaluate.py --model runs/parity/final --extrapolate  # + every longer length in context
    python evaluate.py --model runs/parity/final --dataset hub/iteration-head-tasks --split test
    python evaluate.py --model <org>/itergpt-parity-nocot --task parity --no-cot --train-max-length 16

Without ``--dataset``, a run folder written by ``train.py`` is evaluated on that run's held-out
test split (the builder's split for the run's data config: never trained on), and other lengths on
sequences sampled with ``datasets_builders.tasks`` (distinct inputs, one seeded stream per length);
with ``--dataset`` the rows come from the dataset's split (``load_dataset(dataset,
"parity")``, or ``"parity_nocot"``), validated row by row. Task, chain of thought and training
lengths are read from the checkpoint (``training_info.json`` written by ``train.py``) when the flags
do not say them.

The results are Hub ``model-index`` entries plus a per-length section; see
``modeling.evaluation.to_model_index`` to put them in a model card. The logic lives in
``modeling/evaluation.py``; this file is the command line.

``evaluate.py`` at the repository root is only the command's name (the design card's); its code is
this module, so tests and tools import ``modeling.evaluate_cli`` like any other module. Where the
root comes first on ``sys.path``, ``import evaluate`` finds that file, which then hands over to the
Hugging Face ``evaluate`` library (see ``evaluate.py``). This command itself never imports that
library: sequence accuracy is ``modeling.evaluation.sequence_accuracy`` (equal to the
``metrics/sequence_accuracy`` module of ``evaluate.load``; tested).

Models load with the installed ``modeling`` package, never with code shipped in the model folder,
unless ``--trust_remote_code`` says so (only for a source you trust). Every bad argument ends in one
line ``error: ...`` and exit status 1; the results file is written atomically.
"""

import argparse
import json
import os
import sys
import time


def build_parser() -> argparse.ArgumentParser:

    p = argparse.ArgumentParser(
        description="Teacher-forced and generated chain-of-thought accuracy of an IterGPT checkpoint, "
                    "per input length; writes Hub model-index entries to a JSON file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", required=True, help="model folder or Hub id")
    p.add_argument("--trust_remote_code", action="store_true",
                   help="run the Python code shipped with the model (only for a source you trust); IterGPT "
                        "checkpoints load without it when this project is installed")
    p.add_argument("--task", default=None,
                   help="task to evaluate: copy, parity, polynomial, a family of datasets_builders.tasks.FAMILIES "
                        "(cyclic5, symmetric5, ...) or a .json/.yaml task file; default: the task stated by the "
                        "checkpoint's config or run file")
    p.add_argument("--dataset", default=None,
                   help="dataset folder or Hub repo in Hub layout (config = task); default: sample "
                        "sequences with datasets_builders.tasks")
    p.add_argument("--dataset-config", default=None,
                   help="config of --dataset; default: the task name ('parity'), '<task>_nocot' with --no-cot")
    p.add_argument("--split", default="test", help="split of --dataset to evaluate")
    p.add_argument("--lengths", default=None,
                   help="input lengths, e.g. '1-16', '1,2,4' or '1-4,8'; default: the training lengths "
                        "(1 to --train-max-length), or every length of --dataset's split")
    p.add_argument("--n-per-length", type=int, default=None,
                   help="rows per length; default: 1000 sampled rows (all of them when fewer distinct "
                        "inputs exist), or every row of --dataset")
    p.add_argument("--batch-size", type=int, default=512, help="rows per forward / generate call")
    p.add_argument("--extrapolate", action="store_true",
                   help="also evaluate every length beyond training that fits in the context "
                        "(rows from --dataset's test_longer split when it has them, else sampled)")
    p.add_argument("--train-max-length", type=int, default=None,
                   help="longest training length; default: read from the checkpoint's config or run "
                        "file (16 when neither says)")
    p.add_argument("--no-cot", action="store_true",
                   help="the model answers s_L directly (no chain of thought); default: the "
                        "checkpoint's config or run file, else chain of thought")
    p.add_argument("--modulus", type=int, default=None,
                   help="modulus p of the polynomial task; default: the checkpoint's run file, else 11 "
                        "(a value that contradicts the run file is an error)")
    p.add_argument("--no-cache", action="store_true", help="generate without the KV cache (slower)")
    p.add_argument("--heads", action="store_true",
                   help="also store the iteration-head scores of every (layer, head) per length")
    p.add_argument("--out", default="eval_results.json", help="where to write the results")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled rows (one stream per length)")
    p.add_argument("--device", default=None, help="torch device; default: cuda when available, else cpu")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads; default: torch's choice (1 is much faster on a busy small CPU)")
    return p


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.task is not None:
        from datasets_builders.tasks import make_task  # numpy only
        try:
            make_task(args.task)  # an unknown task is a usage error, as it was with fixed choices
        except ValueError as err:
            parser.error(f"--task: {err}")
    if args.batch_size < 1 or (args.n_per_length is not None and args.n_per_length < 1):
        parser.error("--batch-size and --n-per-length must be >= 1")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads {args.threads} is invalid: give a number of threads >= 1")
    if os.path.isdir(args.out):
        raise ValueError(f"--out {args.out!r} is a folder: give a file name, e.g. {args.out}/eval_results.json")

    import torch  # heavy imports after argument parsing keep --help instant
    from transformers import AutoTokenizer

    from datasets_builders import tasks
    from datasets_builders.files import check_writable, write_text_atomic
    from modeling import evaluation as ev
    from modeling.analysis import check_device, load_model

    check_writable(os.path.dirname(os.path.abspath(args.out)))  # before minutes of evaluation
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = check_device(args.device)
    model = load_model(args.model, device, args.trust_remote_code)
    ev.check_model(model)
    _check_tokenizer(AutoTokenizer, args.model, tasks)
    plan = _plan(args, model, ev, tasks)
    ev.check_model(model, plan["task"])  # a task with more than 57 values needs a larger vocabulary

    started = time.perf_counter()
    per_length = ev.evaluate_model(model, plan["rows"], cot=plan["cot"], batch_size=args.batch_size,
                                   use_cache=not args.no_cache, with_heads=args.heads)
    results = ev.build_results(
        per_length, model_name=args.model, task=plan["task_name"], cot=plan["cot"], dataset=plan["dataset"],
        n_positions=plan["n_positions"], train_max_length=plan["train_max"], sources=plan["sources"],
        extra={"seed": args.seed, "device": str(device), "use_cache": not args.no_cache,
               "seconds": round(time.perf_counter() - started, 3),
               **({"trained_rows_dropped": {str(L): n for L, n in sorted(plan["dropped"].items())}}
                  if plan["dropped"] else {})},
    )
    print(ev.format_table(results))
    write_text_atomic(args.out, json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    return results


def _settings(args, model, ev, tasks) -> dict:
    """Task, chain of thought, modulus and training length: the flags, else what the checkpoint
    says; a flag that contradicts the checkpoint's run is an error (the model learned one task)."""
    saved = ev.find_run_settings(model, args.model)
    task_name = args.task or saved.get("task")
    if task_name is None:
        raise ValueError(f"the checkpoint {args.model!r} does not say which task it learned: pass --task")
    allowed = saved.get("tasks", (saved["task"],) if "task" in saved else (task_name,))
    if task_name not in allowed:
        raise ValueError(f"--task {task_name}: the checkpoint {args.model!r} was trained on "
                         f"{' and '.join(allowed)}: drop --task or pass --task {allowed[-1]}")
    if args.no_cot and saved.get("cot") is True:
        raise ValueError(f"--no-cot: the checkpoint {args.model!r} was trained with chain of thought: drop --no-cot")
    for flag, key, value in (("--modulus", "modulus", args.modulus),
                             ("--train-max-length", "train_max_length", args.train_max_length)):
        if key == "modulus" and task_name != "polynomial":
            if value is not None:
                raise ValueError(f"--modulus {value}: the {task_name} task has no modulus: drop --modulus")
            continue
        if value is not None and saved.get(key) is not None and value != saved[key]:
            raise ValueError(f"{flag} {value}: the checkpoint {args.model!r} was trained with {key}={saved[key]}: "
                             f"drop {flag} or pass {flag} {saved[key]}")
    task = tasks.make_task(task_name, modulus=args.modulus or saved.get("modulus", tasks.DEFAULT_MODULUS),
                           polynomial=saved.get("polynomial", tasks.DEFAULT_POLYNOMIAL))
    train_max = args.train_max_length or saved.get("train_max_length")
    if train_max is None and args.extrapolate:
        train_max = 16
        print("note: the checkpoint does not state its training lengths; assuming 1-16 "
              "(set --train-max-length)", file=sys.stderr)
    return {"task_name": task_name, "task": task, "cot": False if args.no_cot else saved.get("cot", True),
            "train_max": train_max}


def _plan(args, model, ev, tasks) -> dict:
    """The rows to evaluate per length, where they come from, and the settings they follow."""
    from modeling.analysis import parse_lengths, sample_rows

    plan = _settings(args, model, ev, tasks)
    task_name, task, cot, train_max = plan["task_name"], plan["task"], plan["cot"], plan["train_max"]
    n_positions = ev.n_positions_of(model)
    limit = ev.max_length_in_context(n_positions, cot)
    lengths = parse_lengths(args.lengths) if args.lengths else None
    if lengths is None and args.dataset is None:
        lengths = list(range(1, min(train_max or 16, limit) + 1))
    if lengths is not None:
        ev.check_lengths(lengths, n_positions, cot)
    beyond: list[int] = []
    if args.extrapolate:
        beyond = [L for L in range(train_max + 1, limit + 1) if lengths is None or L not in lengths]
        if not beyond:
            print(f"note: no length beyond {train_max} fits in n_positions={n_positions}", file=sys.stderr)
    n_sampled = args.n_per_length or 1000
    sources: dict[int, str] = {}
    if args.dataset:
        config = args.dataset_config or tasks.dataset_config_name(task_name, cot)
        rows = ev.load_dataset_rows(args.dataset, task, args.split, cot, lengths, args.n_per_length, config)
        ev.check_lengths(rows, n_positions, cot)
        sources.update({L: args.split for L in rows})
        beyond = [L for L in beyond if L not in rows]
        if beyond and "test_longer" in _split_names(args.dataset, config):
            longer = ev.load_dataset_rows(args.dataset, task, "test_longer", cot, None, args.n_per_length, config)
            for L in beyond:
                if L in longer:
                    rows[L], sources[L] = longer[L], "test_longer"
        missing = [L for L in beyond if L not in rows]
        rows.update(sample_rows(task, missing, n_sampled, args.seed, cot))
        sources.update({L: "sampled" for L in missing})
        name = os.path.basename(os.path.normpath(args.dataset)) if os.path.isdir(args.dataset) else args.dataset
        dataset = {"name": name, "type": name, "config": config, "split": args.split}
    else:
        # Held-out rows: the test split of the run that trained this checkpoint when it says so
        # (training_info.json), fresh samples for the other lengths (never trained on when they
        # are beyond the training range).
        rows = ev.run_test_rows(args.model, task_name, lengths, n_sampled, cot) or {}
        # A run on the reference's data trained on every sequence of its shortest lengths: no held-out
        # row exists there, and a sampled one would be a training sequence, so they are left out.
        all_trained = [L for L, block in rows.items() if not len(block)]
        if all_trained:
            rows = {L: block for L, block in rows.items() if len(block)}
            print(f"note: length(s) {', '.join(map(str, all_trained))} not evaluated: the run (data.source=paper) "
                  "also drew every sequence of its test half there for training", file=sys.stderr)
            if not rows:
                raise ValueError(f"the run of {args.model!r} drew every test sequence for training: no held-out "
                                 "row is left to evaluate; pass --dataset or --lengths beyond its training lengths")
        sources.update({L: "test" for L in rows})
        missing = [L for L in lengths + beyond if L not in rows and L not in all_trained]
        rows.update(sample_rows(task, missing, n_sampled, args.seed, cot))
        sources.update({L: "sampled" for L in missing})
        held_out = any(v == "test" for v in sources.values())
        dataset = {"name": "Iteration tasks (the run's held-out test split)" if held_out else
                   f"Iteration tasks (sampled, seed {args.seed})", "type": "iteration_tasks",
                   "config": tasks.dataset_config_name(task_name, cot), "split": "test" if held_out else "sampled"}
    # A run on the reference's data trained on sequences of any split (draws with replacement): a
    # dataset's test rows, or sampled ones, that it drew for training are no test of it.
    rows, dropped = ev.drop_trained_rows(rows, ev.run_training_data(args.model), task_name)
    if dropped:
        gone = [L for L in dropped if L not in rows]
        print(f"note: {sum(dropped.values())} row(s) left out: the run (data.source=paper) drew them for training "
              f"(per length: {', '.join(f'{L}: {n}' for L, n in sorted(dropped.items()))})"
              + (f"; length(s) {', '.join(map(str, sorted(gone)))} not evaluated, nothing is left there" if gone else ""),
              file=sys.stderr)
        if not rows:
            raise ValueError(f"the run of {args.model!r} drew every row to evaluate for training: pass lengths "
                             "beyond its training lengths (--lengths) or a dataset with other sequences")
        sources = {L: v for L, v in sources.items() if L in rows}
    return {**plan, "rows": rows, "sources": sources, "dataset": dataset, "n_positions": n_positions,
            "dropped": dropped}


def _check_tokenizer(auto_tokenizer, source: str, tasks) -> None:
    """When the checkpoint ships a tokenizer, it must map the task vocabulary to the same ids."""
    try:
        tokenizer = auto_tokenizer.from_pretrained(source)
    except (OSError, ValueError, TypeError):
        return  # no tokenizer saved: the ids are checked through the model config only
    ids = tokenizer.convert_tokens_to_ids(list(tasks.VOCAB))
    if ids != list(range(tasks.VOCAB_SIZE)):
        raise ValueError(f"the tokenizer of {source!r} does not map the task vocabulary to ids "
                         f"0..{tasks.VOCAB_SIZE - 1} (datasets_builders/tasks.py)")


def _split_names(dataset: str, config: str) -> list[str]:
    import datasets  # noqa: PLC0415

    try:
        return list(datasets.get_dataset_split_names(dataset, config))
    except Exception:  # noqa: BLE001 - an unknown layout simply has no extra split to offer
        return []


def cli(argv: list[str] | None = None) -> int:
    """The command line: 0, or 1 after one line ``error: ...`` on stderr."""
    try:
        main(argv)
    except ValueError as err:  # bad inputs (model, lengths, vocab, dataset format): one clear line
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # the results file: a folder that is a file, read-only, or full
        from datasets_builders.files import describe_os_error

        print("error: " + describe_os_error(err, "cannot write the results (--out)"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # python -m modeling.evaluate_cli (the same as python evaluate.py)
    sys.exit(cli())
