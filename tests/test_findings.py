"""RESULTS.md is rendered only from the per-run tables in results/: re-rendering gives the committed
file (every number equals the table it came from), and the arm statistics are what the rows say."""

import csv
import statistics
from pathlib import Path

import pytest

from training.findings import EXPERIMENTS, render, rows_of
from training.tables import TableError, arm_table, arms, length_table, read

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


def test_results_md_is_rendered_from_the_tables():
    assert (ROOT / "RESULTS.md").read_text() == render(RESULTS, draw=False) + "\n", \
        "RESULTS.md differs from the tables: run `python -m training.findings`"


@pytest.mark.parametrize("name", [n for n in EXPERIMENTS if (RESULTS / f"{n}.csv").exists()])
def test_every_arm_row_matches_its_runs(name):
    rows = rows_of(RESULTS, name)
    keys, groups = arms(rows)
    lines = arm_table(rows)[2:]
    assert len(lines) == len(groups)
    for line, (key, runs) in zip(lines, groups.items()):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[:len(keys)] == [v or "null" for v in key]
        unfinished = sum(r["status"] != "finished" for r in runs)
        assert cells[len(keys)] == str(len(runs)) + (f" ({unfinished} unfinished)" if unfinished else "")
        acc = [float(r["test_accuracy"]) for r in runs]
        std = statistics.stdev(acc) if len(acc) > 1 else 0.0
        assert cells[len(keys) + 3] == f"{statistics.mean(acc):.3f} ± {std:.3f}"
        heads = sum(float(r["iteration_score"] or 0) >= 0.5 for r in runs)
        assert cells[-1].startswith(f"{heads}/{len(runs)} [")


def test_arms_pool_seeds_and_keep_what_varies():
    rows = [{"experiment": "x", "run": str(i), "status": "finished", "task": "parity", "n_embd": str(w),
             "seed": str(s), "steps": "10", "test_accuracy": str(a), "test_accuracy_min": "0", "steps_to_target": "",
             "eoi_score": "0.5", "iteration_score": str(h)}
            for i, (w, s, a, h) in enumerate([(8, 0, 0.5, 0.1), (8, 1, 0.7, 0.9), (16, 0, 1.0, 0.95)])]
    keys, groups = arms(rows)
    assert keys == ["n_embd"] and [(k, len(v)) for k, v in groups.items()] == [(("8",), 2), (("16",), 1)]
    table = arm_table(rows)
    assert table[2].startswith("| 8 | 2 | 0/2 [0.00, 0.66] | — | 0.600 ± 0.141") and table[2].endswith("| 1/2 [0.09, 0.91] |")
    assert table[3].startswith("| 16 | 1 | 0/1 [0.00, 0.79] | — | 1.000 ± 0.000")


def test_figures_name_arms_in_words():
    from training.tables import words
    keys = ["task", "position_init", "position_init_std", "init", "source"]
    row = {"recipe": "parity", "mix_with": "parity", "task": "mix", "position_init": "normal",
           "position_init_std": "", "init": "normal", "source": "fresh"}
    assert words(keys, row) == "30% copy rows, positions N(0, 0.02), fresh data"
    row = {**row, "task": "parity", "position_init_std": "1.0", "init": "pytorch", "source": "fixed"}
    assert words(keys, row) == "no copy rows, positions N(0, 1), PyTorch's default init, fixed split"
    # the reference's N(0, 1) table under our init sits beside much smaller tokens: the name says so
    assert words(keys, {**row, "init": "normal"}) == "no copy rows, positions N(0, 1) beside tokens N(0, 0.02), fixed split"
    row = {**row, "position_init": "sinusoidal", "position_init_std": ""}
    assert words(keys, row).startswith("no copy rows, positions from sin/cos, PyTorch's")
    # a column it has no words for keeps its key=value; a constant std still names the table
    assert words(["position_init", "lr"], {"position_init": "normal", "position_init_std": "1.0", "lr": "0.003"}) \
        == "positions N(0, 1), lr=0.003"
    assert words(["init_from", "trainable"], {"init_from": "hub/revisions/iteration-head-polynomial/step500",
                                              "trainable": '["model.blocks.1.mlp.*"]'}) \
        == "from iteration-head-polynomial/step500, only model.blocks.1.mlp.*"
    assert words(["init_from", "trainable"], {"init_from": "", "trainable": "[]"}) == "from scratch, all weights"


def _row(experiment, run, **values):
    base = {"experiment": experiment, "run": str(run), "status": "finished", "recipe": "parity", "cot": "True",
            "n_layer": "2", "n_embd": "64", "position_embedding": "learned", "max_length": "16", "seed": "0",
            "steps": "10", "test_accuracy": "0.5", "test_accuracy_min": "0",
            "steps_to_target": "", "eoi_score": "", "iteration_score": "", "iteration_peakiness": "",
            "acc_L1": "1.0", "acc_L2": "0.5", "acc_L3": "", "acc_L4": "", "acc_L5": "",
            "device": "cpu", "threads": "1", "time_s": "60"}
    return {**base, **{k: str(v) for k, v in values.items()}}


def _write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_the_crossing_table_puts_every_arm_in_one_cell():
    """F3's crossing at a glance: each cell is its arm's seeds with the head, seeds at 99% and mean
    accuracy; "no copy rows" is one column for both tasks; every run is counted once."""
    from training.findings import CROSSING
    from training.tables import crossing_table, seeds_reached, seeds_with_head, words
    rows = rows_of(RESULTS, "f3_emergence")
    by, across, order = CROSSING["f3_emergence"]
    lines = crossing_table(rows, by, across, order)
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[2:] == list(order)  # both tasks' "no copy rows" columns are one
    keys, groups = arms(rows)
    down = [k for k in keys if k != by and k not in across]
    counted = 0
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for column, cell in zip(header[2:], cells[2:]):
            rs = [r for r in rows if r[by] == cells[0] and words(down, r) == cells[1]
                  and words([k for k in keys if k in across], r) == column]
            if not rs:
                assert cell == "not run"
                continue
            acc = statistics.mean(float(r["test_accuracy"]) for r in rs)
            assert cell == f"{seeds_with_head(rs)}/{len(rs)} · {seeds_reached(rs)}/{len(rs)} · {acc:.3f}"
            counted += len(rs)
    assert counted == len(rows)


def test_f2_shares_f1s_cot_runs_and_per_length_means_are_the_rows(tmp_path):
    _write(tmp_path / "f1_cot.csv", [_row("f1_cot", 0, seed=0, acc_L2=0.25), _row("f1_cot", 1, seed=1, acc_L2=0.75),
                                     _row("f1_cot", 2, cot=False, acc_L2=0.0)])
    _write(tmp_path / "f2_layers.csv", [_row("f2_layers", 0, n_layer=1, acc_L2=0.1)])
    rows = rows_of(tmp_path, "f2_layers")
    assert sorted((r["experiment"], r["n_layer"], r["cot"]) for r in rows) == [
        ("f1_cot", "2", "True"), ("f1_cot", "2", "True"), ("f2_layers", "1", "True")]
    keys, groups = arms(rows)
    assert keys == ["n_layer"] and {k: len(v) for k, v in groups.items()} == {("1",): 1, ("2",): 2}
    assert length_table(rows)[2:] == ["| 1 | 1 | 1.00 | 0.10 |", "| 2 | 2 | 1.00 | 0.50 |"]
    text = render(tmp_path, draw=False)
    assert "Shared with `f1_cot` (not trained twice): its runs with cot=True." in text
    assert "| 2 | 2 | 1.00 | 0.50 |" in text.split("## f2_layers")[1]


def test_readme_quotes_results_md():
    """The README's rendered blocks (the findings, the recipes' table from F1) are rendered from the
    same tables (python -m training.findings)."""
    from training.findings import README_START, readme_blocks
    text = (ROOT / "README.md").read_text()
    blocks = {}
    for start, end, rendered in readme_blocks(RESULTS):
        assert start in text, f"README has no {start} block"
        blocks[start] = start + text.split(start, 1)[1].split(end, 1)[0] + end
        assert blocks[start] == rendered, f"README's {start[5:12]} block is stale: run `python -m training.findings`"
    block = blocks[README_START]
    for name in EXPERIMENTS:
        if (RESULTS / f"{name}.csv").exists():
            assert f"RESULTS.md#{name}" in block and f"## {name}" in (ROOT / "RESULTS.md").read_text()


def test_the_recipe_table_has_a_row_per_f1_cot_run():
    from training.findings import recipes_table
    cot = [r for r in read(RESULTS / "f1_cot.csv") if r["cot"] == "True"]
    assert recipes_table(RESULTS).count("\n| `") == len(cot) == 6


def test_update_readme_rewrites_every_block_and_nothing_else(tmp_path):
    from training.findings import RECIPES_END, RECIPES_START, README_END, README_START, update_readme
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold\n{README_END}\nmiddle\n{RECIPES_START}\nold\n{RECIPES_END}\nend\n")
    assert update_readme(readme, RESULTS)
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("\nend\n") and "\nmiddle\n" in text
    assert "| `polynomial` | 2 |" in text and "RESULTS.md#f1_cot" in text
    (tmp_path / "plain.md").write_text("no blocks\n")
    assert not update_readme(tmp_path / "plain.md", RESULTS)
    assert (tmp_path / "plain.md").read_text() == "no blocks\n"


def test_scaling_maps_average_lengths_from_4_and_seeds_per_cell(tmp_path):
    rows = [_row("f4_scaling", i, n_embd=w, max_length=L, seed=s, position_embedding=pe, iteration_peakiness=p,
                 acc_L1=0.0, acc_L2=0.0, acc_L3=0.0, acc_L4=a4, acc_L5=a5)
            for i, (w, L, s, pe, p, a4, a5) in enumerate([
                (8, 5, 0, "learned", 0.2, 1.0, 0.5), (8, 5, 1, "learned", 0.4, 0.5, 0.0),
                (16, 5, 0, "learned", 1.0, 1.0, 1.0), (8, 5, 0, "frozen", 0.0, 0.0, 0.0)])]
    _write(tmp_path / "f4_scaling.csv", rows)
    text = render(tmp_path, draw=False).split("## f4_scaling")[1].split("## f5")[0]
    learned = text.split("**position_embedding=learned**")[1]
    # width 8: accuracy over L >= 4 per seed 0.75 and 0.25 -> 0.50; peakiness (0.2 + 0.4) / 2 = 0.30
    assert "| 8 | 0.50 / 0.30 (2) |" in learned and "| 16 | 1.00 / 1.00 (1) |" in learned
    assert "| 8 | 0.00 / 0.00 (1) |" in text.split("**position_embedding=frozen**")[1]
    from training.findings import summary
    readme = summary(tmp_path)
    assert ("  - position_embedding=learned: 2 cells × 1-2 seeds; 1/2 cells at ≥ 0.90 accuracy over lengths ≥ 4; "
            "mean over cells: accuracy 0.75, iteration peakiness 0.65") in readme
    assert "  - position_embedding=frozen: 1 cell × 1 seed; 0/1 cells" in readme


def test_a_label_column_tells_shared_arms_apart(tmp_path):
    _write(tmp_path / "f1_cot.csv", [_row("f1_cot", 0, recipe="parity"), _row("f1_cot", 1, recipe="polynomial")])
    own = [{k: v for k, v in _row("optimizer_control", 0, acc_L2=0.0).items() if k != "recipe"}]
    _write(tmp_path / "optimizer_control.csv", own)
    rows = rows_of(tmp_path, "optimizer_control")
    assert [(r["experiment"], r["fused"]) for r in rows] == [("optimizer_control", "False"), ("f1_cot", "True")]
    assert list(rows[0]).index("fused") < list(rows[0]).index("steps")  # a config column, not an outcome
    keys, groups = arms(rows)
    assert keys == ["fused"] and sorted(groups) == [("False",), ("True",)]


def test_paper_reference_is_compared_at_equal_wall_clock(tmp_path):
    rows = [_row("paper_reference", 0, recipe="paper_reference", steps=4000, time_s=1200, test_accuracy=0.25),
            _row("paper_reference", 1, recipe="parity", steps=7750, time_s=600, test_accuracy=1.0)]
    _write(tmp_path / "paper_reference.csv", rows)
    text = render(tmp_path, draw=False).split("## paper_reference")[1]
    assert "| paper_reference | 1 | 4,000 | 20.0 | 0.250 ± 0.000 |" in text
    assert "| parity | 1 | 7,750 | 10.0 | 1.000 ± 0.000 |" in text


def test_a_run_stopped_at_its_target_counts_until_its_own_budget():
    from training.figures import _series
    curves = [{"experiment": "x", "run": run, "step": str(step), "acc": str(value)}
              for run, step, value in [("a", 1, 0.5), ("a", 2, 1.0), ("b", 1, 0.0), ("b", 2, 0.2), ("b", 3, 0.4),
                                       ("b", 4, 0.6), ("c", 10, 0.3)]]
    steps, mean, _ = _series(curves, {"x/a", "x/b"}, "acc", until=10, extend_to={"x/a": 4.0})
    assert steps == [1, 2, 3, 4] and mean == [0.25, 0.6, 0.7, 0.8]  # a keeps 1.0 to step 4, not to 10


def test_arms_matched_in_sequences_are_drawn_against_sequences_seen():
    """sample_matched's arms train at batch 256 and 64 for the same 2.0M sequences: its record draws the
    curves against sequences seen (layout.x), so both arms end at 2.0M, not at 7,813 and 31,250 steps."""
    from training.figures import _series, with_sequences
    from training.findings import RECORDS
    assert RECORDS["sample_matched"]["layout"]["x"] == "sequences"
    curves = with_sequences(
        [{"experiment": "x", "run": run, "step": str(step), "batch_size": str(batch), "acc": str(value)}
         for run, batch, step, value in [("a", 256, 250, 0.2), ("a", 256, 500, 0.4),
                                         ("b", 64, 1000, 0.6), ("b", 64, 2000, 0.8)]])
    xs, mean, _ = _series(curves, {"x/a", "x/b"}, "acc", until=128_000, x="sequences")
    assert xs == [64_000, 128_000] and mean == pytest.approx([0.4, 0.6])  # the same sequences, side by side
    with pytest.raises(ValueError, match="needs the batch_size column"):
        with_sequences([{"step": "1"}])
    rows = rows_of(RESULTS, "sample_matched")  # the table's own runs: each arm's budget is 2.0M sequences
    assert {r["max_sequences"] for r in with_sequences(rows)} == {7813 * 256.0, 31250 * 64.0}


def test_f4_verdict_holds_in_its_table():
    """What F4's verdict says, checked cell by cell against results/f4_scaling.csv."""
    from training.tables import _cell_means, accuracy_from, scaling_cells
    rows = rows_of(RESULTS, "f4_scaling")
    conditions, cells = scaling_cells(rows)

    def grid(**where):
        (key,) = [k for k in cells if all(k[conditions.index(c)] == v for c, v in where.items())]
        return cells[key]

    sincos = grid(recipe="polynomial", cot="True", n_layer="2", position_init="sinusoidal")
    for L in (12, 16):  # width 64 learns the long max lengths on every seed, with the head
        assert all(accuracy_from(r) >= 0.9 and float(r["iteration_peakiness"]) >= 0.9 for r in sincos[64, L])
    assert all(_cell_means(sincos[w, L])[0] < 0.5 for w in (8, 16) for L in (4, 8, 12, 16))
    assert any(accuracy_from(r) >= 0.9 for L in (4, 8) for r in sincos[32, L])
    assert _cell_means(sincos[64, 4])[0] < 0.9
    for pe in ("learned", "frozen"):  # N(0, 1) tables beside N(0, 0.02) tokens: almost nothing learned
        g = grid(recipe="polynomial", cot="True", n_layer="2", position_init="normal", position_embedding=pe,
                 init="normal")
        assert statistics.mean(_cell_means(rs)[0] for rs in g.values()) < 0.1
    # The paper's own initialisation (tokens N(0, 1) too): accuracy rises with width and falls with
    # max length.
    paper = {pe: grid(recipe="polynomial", cot="True", n_layer="2", position_embedding=pe, init="pytorch")
             for pe in ("learned", "frozen")}
    acc = {pe: {cell: _cell_means(rs)[0] for cell, rs in g.items()} for pe, g in paper.items()}
    for pe, a in acc.items():
        assert all(len(rs) >= 3 for rs in paper[pe].values()) and len(a) == 16
        assert all(a[8, L] < 0.1 for L in (4, 8, 12, 16)) and all(a[w, 4] >= 0.9 for w in (16, 32, 64))
        assert all(a[w, 4] > a[w, 16] for w in (16, 32, 64))
    assert all(acc["learned"][64, L] >= 0.9 for L in (4, 8, 12))
    better = {(16, 8), (64, 12)}  # learned much better where the frozen table is at its limit, alike elsewhere
    assert all(acc["learned"][c] - acc["frozen"][c] >= 0.3 for c in better)
    assert all(abs(acc["learned"][c] - acc["frozen"][c]) <= 0.15 for c in acc["learned"] if c not in better)
    for where in ({"cot": "False"}, {"n_layer": "1"}, {"recipe": "parity"}):
        for key, g in cells.items():
            if all(key[conditions.index(c)] == v for c, v in where.items()):
                assert len(g) == 16 and all(len(rs) >= 3 for rs in g.values()), (where, key)
                if where == {"n_layer": "1"}:  # nothing beyond max length 4; that, at the widest widths
                    assert max(_cell_means(rs)[0] for (w, L), rs in g.items() if L > 4) < 0.2, key
                    best = max(g, key=lambda cell: _cell_means(g[cell])[0])
                    assert best[1] == 4 and best[0] >= 32, (key, best)
                    if key[conditions.index("position_embedding")] == "learned":
                        assert _cell_means(g[best])[0] >= 0.3, (key, best)
                else:
                    assert max(_cell_means(rs)[0] for rs in g.values()) < (0.2 if where == {"cot": "False"} else 0.9), key
    assert _cell_means(grid(n_layer="1", init="pytorch")[64, 4])[0] >= 0.99
    parity = {key: statistics.mean(_cell_means(rs)[0] for rs in g.values()) for key, g in cells.items()
              if key[conditions.index("recipe")] == "parity"}
    best = max(parity, key=parity.get)  # parity comes closest under the paper's initialisation
    assert best[conditions.index("init")] == "pytorch" and best[conditions.index("position_embedding")] == "learned"


def test_paper_reference_verdict_holds_in_its_table():
    """What the paper_reference verdict says, against results/paper_reference.csv: the paper's recipe
    for 40 minutes a seed right on every length from 5 on, the head on most seeds; length 2 (two
    training sequences) wrong on all; our recipe on the same machine as accurate on average, with no head."""
    from training.tables import seeds_with_head
    rows = rows_of(RESULTS, "paper_reference")
    paper = [r for r in rows if r["recipe"] == "paper_reference"]
    ours = [r for r in rows if r["recipe"] == "parity"]
    assert len(paper) >= 3 and len(ours) >= 3
    assert {float(r["max_minutes"]) for r in paper} == {40.0}
    assert all(float(r[f"acc_L{L}"]) >= 0.98 for r in paper for L in range(5, 17))
    assert all(float(r["acc_L2"]) == 0.0 for r in paper)
    assert seeds_with_head(paper) >= 2 and min(float(r["iteration_score"]) for r in paper) >= 0.45
    assert seeds_with_head(ours) == 0  # ... in a fraction of the time, at a similar mean accuracy
    assert max(float(r["time_s"]) for r in ours) < 300 and min(float(r["time_s"]) for r in paper) >= 2400
    mean = lambda rs: statistics.mean(float(r["test_accuracy"]) for r in rs)  # noqa: E731
    assert abs(mean(ours) - mean(paper)) < 0.05


def test_f3_verdict_holds_in_its_table():
    """F3's verdict, claim by claim, against the crossing (position table × copy rows × data, 5 seeds)."""
    from training.tables import seeds_reached, seeds_with_head
    rows = rows_of(RESULTS, "f3_emergence")
    tables = {"sincos": ("normal", "sinusoidal", ""), "gpt2": ("normal", "normal", ""),
              "reference": ("normal", "normal", "1.0"), "paper": ("pytorch", "normal", "1.0")}
    conditions = [(copy, source) for copy in (True, False) for source in ("fresh", "fixed")]

    def arm(recipe, table, copy=True, source="fresh"):
        init, position_init, std = tables[table]
        rs = [r for r in rows if r["recipe"] == recipe and r["init"] == init and r["position_init"] == position_init
              and r["position_init_std"] == std and (r["task"] == "mix") == copy and r["source"] == source]
        assert len(rs) == 5, (recipe, table, copy, source)
        return rs, seeds_with_head(rs), seeds_reached(rs)

    mean = lambda rs: statistics.mean(float(r["test_accuracy"]) for r in rs)  # noqa: E731
    # the crossing is complete for the three tables of the verdict
    for recipe in ("parity", "polynomial"):
        for table in ("gpt2", "sincos", "paper"):
            for copy, source in conditions:
                arm(recipe, table, copy, source)
    # polynomial: the table's scale and the copy rows together
    for table in ("sincos", "paper"):
        for source in ("fresh", "fixed"):
            assert arm("polynomial", table, True, source)[1] > 5 / 2  # both: most seeds
            _, heads, reached = arm("polynomial", table, False, source)
            assert heads <= 2 and (table != "sincos" or reached == 0)  # no copy rows: at most two
    assert arm("polynomial", "sincos")[1:] == (5, 5)
    assert max(arm("polynomial", "paper", False, s)[1] for s in ("fresh", "fixed")) == 2
    assert [arm("polynomial", "gpt2", c, s)[1] for c, s in conditions] == [0, 0, 0, 0]
    assert [arm("polynomial", "gpt2", c, s)[2] for c, s in conditions] == [1, 0, 0, 0]
    for copy, source in ((True, "fresh"), (False, "fixed")):  # the N(0, 1) table beside small tokens
        _, heads, reached = arm("polynomial", "reference", copy, source)
        assert heads > 0 and reached == 0
    for table in ("sincos", "paper", "gpt2"):  # the fixed split: a seed or two either way
        for copy in (True, False):
            assert abs(arm("polynomial", table, copy, "fresh")[1] - arm("polynomial", table, copy, "fixed")[1]) <= 2
    # parity: no reliable head anywhere; most accurate without one from N(0, 0.02)
    parity = {(t, c, s): arm("parity", t, c, s) for t in ("gpt2", "sincos", "paper") for c, s in conditions}
    parity.update({("reference", c, s): arm("parity", "reference", c, s) for c, s in ((True, "fresh"), (False, "fixed"))})
    assert max(h for _, h, _ in parity.values()) == 2 and parity["paper", True, "fixed"][1] == 2
    assert all(parity["gpt2", c, s][1] == 0 for c, s in conditions)
    best = max(parity, key=lambda k: mean(parity[k][0]))
    assert best == ("gpt2", True, "fresh") and parity[best][2] > 5 / 2
    assert parity["paper", False, "fixed"][1] == 1
    for t in ("gpt2", "sincos", "paper"):  # the fixed split lowers parity's accuracy in every matched pair
        for c in (True, False):
            assert mean(parity[t, c, "fixed"][0]) < mean(parity[t, c, "fresh"][0])
    for s in ("fresh", "fixed"):  # copy rows: up from N(0, 0.02), down under the paper's init
        assert mean(parity["gpt2", True, s][0]) > mean(parity["gpt2", False, s][0])
        assert mean(parity["paper", True, s][0]) < mean(parity["paper", False, s][0])
    best_paper = max(conditions, key=lambda cs: mean(parity[("paper", *cs)][0]))
    assert best_paper == (False, "fresh") and parity["paper", False, "fresh"][1:] == (1, 1)
    reached_with_head = [r for r in parity["paper", False, "fresh"][0]
                         if r["steps_to_target"] and float(r["iteration_score"]) >= 0.5]
    assert len(reached_with_head) == 1


def test_paper_ingredients_verdict_holds_in_its_table():
    """The paper_ingredients table over its two sessions: the first session's optimizer, dropout and
    residual arms (3 seeds), the second's none, width 128 and batch 256 arms (5 seeds, run names
    2026-12-06/<job>, added with training.results --merge); every row in one arm; dropout the only seed
    at 99%; heads 1 of 5 without an ingredient, 2 of 5 with batch 256, none at width 128; and the none arm
    repeats F3's runs of its seeds to the last digit, across the two sessions."""
    from training.tables import seeds_reached, seeds_with_head
    rows = rows_of(RESULTS, "paper_ingredients")
    base = {"n_embd": "64", "residual": "standard", "embd_pdrop": "0.0", "lr": "0.003", "batch_size": "64"}

    def arm(**changed):
        want = {**base, **changed}
        return [r for r in rows if all(r[k] == v for k, v in want.items())]

    mean = lambda rs: statistics.mean(float(r["test_accuracy"]) for r in rs)  # noqa: E731
    arms_ = {"none": arm(), "optimizer": arm(lr="0.0003"), "dropout": arm(embd_pdrop="0.1"),
             "residual": arm(residual="reference"), "width": arm(n_embd="128"), "batch": arm(batch_size="256")}
    assert {n: len(rs) for n, rs in arms_.items()} == {"none": 5, "optimizer": 3, "dropout": 3, "residual": 3,
                                                        "width": 5, "batch": 5}
    assert sum(map(len, arms_.values())) == len(rows) and all(r["status"] == "finished" for r in rows)
    for name in ("none", "width", "batch"):
        assert {r["run"].split("/")[0] for r in arms_[name]} == {"2026-12-06"} and \
            sorted(r["seed"] for r in arms_[name]) == list("01234"), name
    assert [seeds_reached(arms_[n]) for n in arms_] == [0, 0, 1, 0, 0, 0]
    (won,) = [r for r in arms_["dropout"] if r["steps_to_target"]]
    assert float(won["iteration_score"]) >= 0.5
    assert [seeds_with_head(arms_[n]) for n in arms_] == [1, 1, 1, 1, 0, 2]
    assert mean(arms_["batch"]) > mean(arms_["none"]) > mean(arms_["width"])
    assert all(r["packing"] == ("False" if r["batch_size"] == "256" else "True") for r in rows)  # the paper pads
    f3 = {r["seed"]: r for r in rows_of(RESULTS, "f3_emergence") if r["run"].startswith("pytorch_init_paper_data/")
          and r["recipe"] == "parity"}
    for r in arms_["none"]:
        assert (r["test_accuracy"], r["iteration_score"]) == (f3[r["seed"]]["test_accuracy"], f3[r["seed"]]["iteration_score"])


@pytest.mark.parametrize("damage, expected", [
    ("truncate", "line 3 is truncated"),
    ("abc", "column test_accuracy: 'abc' must be a fraction in [0, 1]"),
    ("2.5", "column test_accuracy: '2.5' must be a fraction in [0, 1]"),
    ("extra", "line 3 has 1 cell(s) more than the header"),
    ("status", "column status: 'done' must be one of finished, unfinished, failed"),
])
def test_a_damaged_table_is_refused_and_nothing_is_written(damage, expected, tmp_path, capsys):
    import shutil
    from training import findings
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results, ignore=shutil.ignore_patterns("figures", "*.parquet"))
    table = results / "f1_cot.csv"
    lines = table.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    cells = next(csv.reader([lines[2]]))
    if damage == "truncate":
        lines[2] = lines[2][:len(lines[2]) // 3] + "\n"
    elif damage == "extra":
        lines[2] = lines[2].rstrip("\n") + ",1\n"
    else:
        column = "status" if damage == "status" else "test_accuracy"
        cells[header.index(column)] = "done" if damage == "status" else damage
        import io
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(cells)
        lines[2] = buf.getvalue()
    table.write_text("".join(lines))
    out = tmp_path / "RESULTS.md"
    with pytest.raises(SystemExit) as stopped:  # the command's validation, in-process: no traceback, exit 2
        findings.main(["--results", str(results), "--out", str(out)])
    stderr = capsys.readouterr().err
    assert stopped.value.code == 2 and "Traceback" not in stderr, stderr[-2000:]
    line = stderr.strip().splitlines()[-1]
    assert f"{table}: " in line and expected in line and line.endswith("nothing was written"), line
    assert not out.exists()


def test_an_experiment_not_run_yet_quotes_its_plan(tmp_path):
    """An experiment without a table says how to run it and, from its plan file, what it would cost."""
    import json

    from training.findings import SESSION_HOURS, not_run_cost
    from training.plan import plan, plan_record

    assert not_run_cost(tmp_path, "sample_matched") == ""  # no plan: only the commands
    p = plan(["experiment=sample_matched"])
    p.seconds_per_step = {0: 0.25, len(p.jobs) - 1: 0.02}
    (tmp_path / "plans").mkdir()
    for slowdown, how in [(None, "if they did not slow each other: not measured"),
                          (1.5, "each step 1.50x slower then, measured")]:
        p.slowdown = slowdown  # runs side by side slow each other: the plan measures by how much
        record = plan_record(p, ["experiment=sample_matched"])
        assert record["estimate_side_by_side_s"] == pytest.approx(
            record["estimate_s"] * (slowdown or 1) / record["side_by_side"])
        (tmp_path / "plans" / "sample_matched.json").write_text(json.dumps(record))
        text = render(tmp_path, draw=False)
        section = text[text.index("## sample_matched"):text.index("## paper_leave_one_out")]
        assert "Not run yet: `python train.py --multirun experiment=sample_matched`" in section
        assert f"{record['runs']:,} runs, {record['steps']:,} optimizer steps" in section
        hours = record["estimate_side_by_side_s"] / 3600
        assert f"({hours:.1f} h with {record['side_by_side']} side by side, {how};" in section
    assert f"a working session here has {SESSION_HOURS} hours of this machine" in section
    assert "Its cost" not in text[text.index("## paper_leave_one_out"):]  # no plan file: no cost
    (tmp_path / "plans" / "sample_matched.json").write_text('{"runs": 16}')
    with pytest.raises(TableError, match=r"sample_matched.json: not a plan written by python -m training.plan"):
        render(tmp_path, draw=False)


def test_an_experiment_run_over_sessions_says_it_is_not_finished():
    """An arm with fewer seeds than its record declares (an experiment that grows over sessions with
    training.results --merge) is flagged, naming the arm and its n; a finished table is not."""
    from training.findings import RECORDS, seeds_so_far

    record = RECORDS["paper_ingredients"]  # 3 seeds declared; every arm has 3 or 5
    rows = rows_of(RESULTS, "paper_ingredients")
    assert seeds_so_far(record, rows) is None
    cut = [r for r in rows if not (r["n_embd"] == "128" and r["seed"] != "0")]  # the width arm: seed 0 only
    message = seeds_so_far(record, cut)
    assert message.startswith("not finished: n_embd=128, ")
    assert "has 1 of the 3 declared seeds" in message and "batch_size=256" not in message
    every = [r for r in rows if r["seed"] in ("0", "1")]
    assert seeds_so_far(record, every).startswith("not finished: every arm has 2 of the 3")


def test_task_recipe_rule_chose_task_family_parity_recipes_recipe():
    """The pilot's declared rule, applied to its committed table: the arm (copy rows x initialisation)
    with the most tasks at 99%, ties by mean test accuracy, is the recipe of task_family_parity_recipe,
    and the numbers its record quotes (the means, the missed guard on Z_3) are the table's."""
    import yaml

    rows = read(RESULTS / "task_recipe.csv")
    arms_ = {}
    for r in rows:
        arms_.setdefault((r["task"] == "mix", r["init"]), []).append(r)
    assert all(len(rs) == 3 for rs in arms_.values()) and len(arms_) == 4
    score = {arm: (sum(r["reached_target"] == "True" for r in rs), statistics.mean(float(r["test_accuracy"]) for r in rs))
             for arm, rs in arms_.items()}
    chosen = max(score, key=score.get)
    assert chosen == (True, "normal")  # copy rows, N(0, 0.02): the parity recipe
    config = yaml.safe_load((ROOT / "configs" / "experiment" / "task_family_parity_recipe.yaml").read_text())
    recipe = yaml.safe_load((ROOT / "configs" / "recipe" / "parity.yaml").read_text())
    assert config["defaults"] == [{"override /recipe": "parity"}] and recipe["data"]["task"] == "mix"
    assert "init" not in recipe["model"] and "posinit" not in str(config)  # our init, N(0, 0.02) positions
    notes = " ".join(yaml.safe_load((ROOT / "configs" / "records" / "task_family_parity_recipe.yaml").read_text())["notes"].split())
    means = sorted((round(m, 3) for k, m in score.values() if k == 1), reverse=True)
    assert sorted(k for k, _ in score.values()) == [0, 1, 1, 1]  # three arms at 99% on one task each: a tie
    assert f"({means[0]:.3f}, against {means[1]:.3f} and {means[2]:.3f})" in notes
    z3 = next(r for r in arms_[chosen] if r["mix_with"] == "cyclic3")
    assert z3["reached_target"] == "False"  # the guard that did not hold
    assert f"missed 99% on Z_3: {float(z3['test_accuracy']):.3f}, length 9 at {float(z3['acc_L9']):.2f}" in notes
