"""What a sweep will cost before it starts (``training.plan``), ``${epochs:N}`` (steps counted in the
run's own epochs), and the paper's full F4 grid (``experiment=f4_paper``): it composes to the paper's
3,360 runs, and one of its cells trains here."""

import sys

import pytest
import yaml

from helpers import ROOT, run_cli
from training.config import ConfigError, compose
from training.plan import _parallel, plan, print_plan


def test_epochs_are_the_runs_own_epochs_and_need_a_fixed_split():
    # The paper: 1000 epochs of 64 steps (1,024 training draws per length x 16 lengths / batch 256).
    cfg = compose(["recipe=paper_reference", "optim.max_steps=${epochs:1000}", "eval_every=${epochs:10}"])
    assert (cfg.optim.max_steps, cfg.eval_every) == (64_000, 640)
    assert compose(["recipe=paper_reference", "data.max_length=4", "optim.max_steps=${epochs:3}"]).optim.max_steps == 48
    # ${sequences:N}: budgets matched in sequences seen across batch sizes (rounded up)
    assert compose(["recipe=paper_reference", "optim.max_steps=${sequences:2000000}"]).optim.max_steps == 7813
    assert compose(["recipe=parity", "optim.max_steps=${sequences:2000000}"]).optim.max_steps == 31250
    with pytest.raises(ConfigError, match="data.source='fresh' draws new sequences every step"):
        compose(["recipe=parity", "optim.max_steps=${epochs:2}"])
    with pytest.raises(ConfigError, match=r"\$\{epochs:0\}: give a whole number of epochs"):
        compose(["recipe=paper_reference", "optim.max_steps=${epochs:0}"])


def test_the_papers_f4_grid_is_3360_runs_each_stopped_at_its_epoch_960():
    p = plan(["experiment=f4_paper"])
    assert len(p.jobs) == 2 * 60 * 28  # learned / frozen positions x widths 4..63 x max lengths 4..31, one seed
    cells = {(j.n_embd, j.max_length) for j in p.jobs}
    assert cells == {(w, L) for w in range(4, 64) for L in range(4, 32)}
    for j in p.jobs:  # 960 epochs of 4 x max length steps (1,024 draws per length, batch 256)
        assert (j.steps, j.batch_size) == (960 * 4 * j.max_length, 256), j.overrides
    assert {o for j in p.jobs for o in j.overrides if o.startswith("posinit=")} == {"posinit=paper", "posinit=paper_frozen"}
    assert p.steps == 2 * 60 * sum(960 * 4 * L for L in range(4, 32))
    assert p.lines()[0].startswith("plan: 3,360 run(s), 225,792,000 optimizer steps (per run 15,360 to 119,040)")
    readme = (ROOT / "README.md").read_text()  # the README quotes this plan
    assert f"{len(p.jobs):,} runs and {p.steps / 1e6:.0f}M optimizer steps per condition" in readme


def test_a_plan_measures_steps_here_and_estimates_the_sweep(capsys):
    p = print_plan(["recipe=copy", "model.n_embd=8", "data.max_length=4", "optim.max_steps=50", "seed=0,1"],
                   measure_it=True)
    out = capsys.readouterr().out
    assert len(p.jobs) == 2 and len(p.seconds_per_step) == 1  # equal work: timed once
    assert p.estimate_s() == pytest.approx(100 * next(iter(p.seconds_per_step.values())))
    assert "measured here:" in out and "estimate on this machine:" in out
    cores = _parallel()
    if cores > 1:  # the side-by-side estimate is measured with one copy per core at once, not divided
        assert p.slowdown is not None and p.slowdown > 0
        assert p.estimate_side_by_side_s() == pytest.approx(p.estimate_s() * p.slowdown / cores)
        assert f"with {cores} run(s) side by side, each step {p.slowdown:.2f}x slower then, measured)" in out
        p.slowdown = None  # a failed side-by-side timing: the line says what it assumed
        assert "if they did not slow each other: not measured)" in p.lines()[-1]
    with pytest.raises(ConfigError, match="data.source='fresh'"):  # a job that cannot be composed names itself
        plan(["recipe=parity", "optim.max_steps=${epochs:2}", "seed=0,1"])


@pytest.mark.parametrize("precision, dtype", [("no", "torch.float32"), ("bf16", "torch.bfloat16")])
def test_a_plan_times_a_bf16_sweep_in_bf16_as_its_runs_train(precision, dtype):
    """measure_step runs the step under the precision the run would use: the linear layers' outputs
    are bf16 exactly when the config says mixed_precision=bf16 (a float32 timing would mislead a
    bf16 sweep's estimate by ~2x where the CPU has native bf16)."""
    import torch

    from training.plan import measure_step

    cfg = compose(["recipe=copy", "model.n_embd=8", "data.max_length=4", f"mixed_precision={precision}"])
    unset = compose(["recipe=copy", "model.n_embd=8", "data.max_length=4"])  # null: accelerate's choice
    seen = set()

    def hook(module, args, output):
        if isinstance(module, torch.nn.Linear):
            seen.add(str(output.dtype))
    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        assert measure_step(cfg, steps=1, warmup=0) > 0
        assert seen == {dtype}
        seen.clear()
        with pytest.MonkeyPatch.context() as env:
            env.setenv("ACCELERATE_MIXED_PRECISION", precision)  # as accelerate launch --mixed_precision sets it
            assert measure_step(unset, steps=1, warmup=0) > 0
        assert seen == {dtype}
    finally:
        handle.remove()


@pytest.mark.integration
def test_a_cell_of_the_papers_f4_trains_here_for_its_own_epochs(tmp_path):
    out = tmp_path / "f4"
    res = run_cli([sys.executable, "train.py", "--multirun", "experiment=f4_paper", "posinit=paper_frozen",
                   "model.n_embd=8", "data.max_length=4", "optim.max_steps=${epochs:1}", "eval_every=${epochs:1}",
                   "progress=false", f"hydra.sweep.dir={out}"], timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "plan: 1 run(s), 16 optimizer steps (per run 16), 4,096 sequences seen" in res.stdout
    saved = yaml.safe_load((out / "0" / "train_config.yaml").read_text())
    assert saved["optim"]["max_steps"] == 16 and saved["save_every"] == 4 * 4 * 40  # resolved, per run
    assert (saved["data"]["task"], saved["data"]["source"], saved["model"]["position_embedding"]) == \
        ("polynomial", "paper", "frozen")
    assert (out / "0" / "summary.json").exists() and "1 run(s) ->" in res.stdout


def test_a_fine_tuning_sweep_is_planned_with_its_init_models_architecture():
    """what_transfers fine-tunes the released polynomial model (width 64) under a recipe whose model
    section says width 128: the plan counts the model really trained."""
    p = plan(["experiment=what_transfers"])
    assert len(p.jobs) == 30 and {(j.n_embd, j.n_layer) for j in p.jobs} == {(64, 2)}
