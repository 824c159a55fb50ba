"""Verdicts as strong as their evidence: every experiment has a declared record, its verdict words
come from the record's rule and a library's test, numbers in the records are right, free text carries
no verdict word, and a record changed after its runs is flagged."""

import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from scipy.stats import fisher_exact, mannwhitneyu, spearmanr
from statsmodels.stats.proportion import proportion_confint

from training import evidence
from training.findings import EXPERIMENTS, record_check, render, tables_for

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
NAMES = [n for n in EXPERIMENTS if (RESULTS / f"{n}.csv").exists()]
VERDICT_WORDS = re.compile(r"\b(reproduc\w*|contradict\w*|differs?|collaps\w*|resolved|confirm\w*|settled|"
                           r"no difference|significant\w*|proves?|fails?|rises with|falls with|no trend)\b", re.I)


def test_every_experiment_has_a_valid_record():
    for name in EXPERIMENTS:
        record = evidence.read_record(name)
        assert (ROOT / "configs" / "experiment" / f"{name}.yaml").is_file()
        assert yaml.safe_load((ROOT / "configs" / "experiment" / f"{name}.yaml").read_text())["record"] == name


def test_readme_names_the_records_written_after_their_runs():
    """The README says which records were written after their runs (exploratory verdicts): exactly
    those whose ``declared`` says so."""
    text = " ".join((ROOT / "README.md").read_text().split())
    said = re.search(r"The records of (.+?) were written after their runs", text)
    assert said, "README.md no longer says which records were written after their runs"
    named = set(re.findall(r"`(\w+)`", said.group(1)))
    after = {name for name in EXPERIMENTS if evidence.read_record(name)["declared"] == "after the runs"}
    assert named == after, (sorted(named - after), sorted(after - named))


@pytest.mark.parametrize("name", NAMES)
def test_every_verdict_is_recomputed_from_the_rows(name):
    """Each claim's counts, interval and p-value, derived again here from the rows with scipy/statsmodels."""
    record, tables = evidence.read_record(name), tables_for(RESULTS)
    stopped = any(a["change"].startswith("Stopped after") for a in record.get("amendments") or [])
    if not stopped:  # an experiment that grows over sessions: fewer runs in its table than its sweep has
        from training.plan import plan
        stopped = len(tables[name]) < len(plan([f"experiment={name}"]).jobs)
    for claim, (word, sentence) in zip(record["claims"], evidence.verdicts(record, tables)):
        if word == "not run" and stopped:  # a sweep stopped early, or not finished yet: the arms it has not run
            continue
        assert word != "not run", sentence
        kind, _, f = evidence.MEASURES[claim["measure"]]
        if "trend" in claim:  # Spearman's rho of the measure (a count as 0/1) against the column
            rs = evidence.select(tables, name, claim.get("arm") or {})
            pairs = [(float(r[claim["trend"]]), float(f(r))) for r in rs if r[claim["trend"]] and f(r) is not None]
            xs, ys = zip(*pairs)
            rho, p = spearmanr(xs, ys) if len(set(xs)) > 1 and len(set(ys)) > 1 else (0.0, 1.0)  # constant: no rank order
            expected = ("rises" if rho > 0 else "falls") if p < 0.05 else "no trend shown"
            assert f"rho = {rho:.2f} (two-sided, p = {p:.3g})" in sentence, sentence
            assert word.startswith(expected) and f"over {len(pairs)} runs" in sentence, sentence
            continue
        arms = [claim["arm"]] if "arm" in claim else claim["contrast"]
        rows = [evidence.select(tables, name, arm) for arm in arms]
        if kind == "count":
            counts = [(sum(bool(f(r)) for r in rs), len(rs)) for rs in rows]
            for k, n in counts:
                assert f"{k}/{n}" in sentence, sentence
        if "arm" in claim:
            (k, n), = counts
            lo, hi = proportion_confint(k, n, method="wilson")
            assert f"{lo:.2f}–{hi:.2f}" in sentence
            expected = ("reproduced" if (lo > 0.5 if claim["expect"] == "most" else hi < 0.5) else
                        "contradicted" if (hi < 0.5 if claim["expect"] == "most" else lo > 0.5) else "not settled")
        else:
            if kind == "count":
                (k1, n1), (k2, n2) = counts
                p = fisher_exact([[k1, n1 - k1], [k2, n2 - k2]])[1]
            else:
                xs, ys = ([v for v in map(f, rs) if v is not None] for rs in rows)
                p = mannwhitneyu(xs, ys, alternative="two-sided").pvalue if len(set(xs) | set(ys)) > 1 else 1.0
            assert f"p = {p:.3g})" in sentence, sentence
            expected = "differs" if p < 0.05 else "no difference shown"
        assert word == expected and f"**{expected}**" in sentence, sentence


def test_p_values_quoted_in_the_records_are_right():
    quoted = 0
    for path in sorted(evidence.RECORDS_DIR.glob("*.yaml")):
        for k1, n1, k2, n2, p in re.findall(r"(\d+)/(\d+) vs (\d+)/(\d+) gives p = (\d+(?:\.\d+)?)", path.read_text()):
            k1, n1, k2, n2 = map(int, (k1, n1, k2, n2))
            assert float(p) == pytest.approx(evidence.fisher(k1, n1, k2, n2), abs=0.0015), (path.name, k1, n1, k2, n2)
            quoted += 1
    assert quoted >= 5


def test_free_text_carries_no_verdict_word():
    """Verdict words are the rules' alone: not in the records' notes, nor in what each table answers,
    nor anywhere in RESULTS.md or the README's findings block outside a computed verdict line."""
    for name in EXPERIMENTS:
        record = evidence.read_record(name)
        for field in ("notes", "arms", "primary"):
            assert not VERDICT_WORDS.search(str(record.get(field, ""))), (name, field)
        assert not VERDICT_WORDS.search(EXPERIMENTS[name][1]), name  # [0] is the paper's own claim
    computed = {s for n in NAMES for _, s in evidence.verdicts(evidence.read_record(n), tables_for(RESULTS))}
    from training.findings import summary
    for line in (ROOT / "RESULTS.md").read_text().splitlines() + summary(RESULTS).splitlines():
        if line.startswith("- ") and line[2:] in computed:
            continue
        if line.startswith("| ") and line.endswith(" |") and "verdicts" not in line:  # a table's verdict column
            cells = line.strip("|").split("|")
            if VERDICT_WORDS.search(cells[-1]) and not VERDICT_WORDS.search("|".join(cells[:-1])):
                continue
        if line.startswith("- **[") and "computed verdicts" in line:  # the README's list of computed words
            continue
        if line.startswith(("**Record**", "**The paper:**")):  # what was expected or claimed, not found
            continue
        assert not VERDICT_WORDS.search(line), line


def test_a_record_changed_after_its_runs_is_flagged(tmp_path):
    sha = evidence.record_sha256("f1_cot")
    assert record_check("f1_cot", [{"record_sha256": sha}] * 3) is None
    assert "written after its runs" in record_check("f1_cot", [{"record_sha256": ""}, {}])
    assert "changed after its runs started: 1 of 2" in record_check("f1_cot", [{"record_sha256": sha},
                                                                              {"record_sha256": "0" * 64}])
    assert "⚠ no run of this table recorded the record's hash" in (ROOT / "RESULTS.md").read_text()


def test_one_arm_rules_and_contrasts_give_their_words():
    rows = lambda ks: [{"steps_to_target": "10" if k else "", "iteration_score": "0.9" if k else "0.1",  # noqa: E731
                        "test_accuracy": str(0.5 + 0.1 * i), "steps": "10"} for i, k in enumerate(ks)]
    claim = {"name": "x", "measure": "reached", "expect": "most"}
    assert evidence.one_arm(claim, rows([1] * 4))[0] == "reproduced"  # Wilson 4/4: [0.51, 1]
    assert evidence.one_arm(claim, rows([1] * 3))[0] == "not settled"  # 3/3: [0.44, 1]
    assert evidence.one_arm(claim, rows([0] * 4))[0] == "contradicted"
    assert "at least 4 seeds" in evidence.one_arm(claim, rows([1, 1, 0]))[1]
    contrast = {"name": "c", "measure": "head", "contrast": [{"label": "a"}, {"label": "b"}]}
    word, sentence = evidence.two_arms(contrast, rows([1] * 10), rows([0] * 10))
    assert word == "differs" and "10/10 vs b 0/10" in sentence
    word, sentence = evidence.two_arms(contrast, rows([1] * 3), rows([0] * 3))
    assert word == "no difference shown" and "even 3/3 against 0/3 gives p = 0.10" in sentence
    value = {"name": "v", "measure": "test_accuracy", "contrast": [{"label": "a"}, {"label": "b"}]}
    word, sentence = evidence.two_arms(value, rows([1] * 3), rows([1] * 3))
    assert word == "no difference shown" and "cannot go below p = 0.1" in sentence


def test_a_trend_rises_falls_or_is_not_shown():
    rows = [{"entries": str(e), "steps": str(s), "iteration_score": str(h)}
            for e, s, h in [(9, 100, 0.9), (25, 300, 0.8), (36, 200, 0.9), (64, 900, 0.1), (144, 800, 0.2),
                            (576, 1500, 0.1), (3600, 3000, 0.0), (14400, 2500, 0.1)]]
    word, sentence = evidence.trend({"name": "t", "trend": "entries", "measure": "steps"}, rows)
    assert word == "rises with entries" and "rho = 0.93" in sentence and "over 8 runs" in sentence
    word, sentence = evidence.trend({"name": "t", "trend": "entries", "measure": "head"}, rows)
    assert word == "falls with entries" and "runs that formed the head" in sentence
    flat = [dict(r, steps="500") for r in rows]
    assert evidence.trend({"name": "t", "trend": "entries", "measure": "steps"}, flat)[0] == "no trend shown"
    word, sentence = evidence.trend({"name": "t", "trend": "entries", "measure": "steps"}, rows[:3])
    assert word == "no trend shown" and "at n = 3" in sentence
    with pytest.raises(evidence.NotRun, match="no column 'states'"):
        evidence.trend({"name": "t", "trend": "states", "measure": "steps"}, rows)


def test_a_bad_record_is_a_clear_error(tmp_path):
    (tmp_path / "x.yaml").write_text("question: q\n")
    with pytest.raises(evidence.RecordError, match=r"x.yaml: lacks hypothesis, declared"):
        evidence.read_record("x", tmp_path)
    good = yaml.safe_load((evidence.RECORDS_DIR / "f1_cot.yaml").read_text())
    good["claims"][0]["measure"] = "vibes"
    (tmp_path / "y.yaml").write_text(yaml.safe_dump(good))
    with pytest.raises(evidence.RecordError, match=r"claims\[0\]: measure='vibes'"):
        evidence.read_record("y", tmp_path)
    good["claims"][0] = {"name": "t", "trend": ["entries"], "measure": "steps"}
    (tmp_path / "z.yaml").write_text(yaml.safe_dump(good))
    with pytest.raises(evidence.RecordError, match=r"claims\[0\]: trend=\['entries'\]: name the numeric column"):
        evidence.read_record("z", tmp_path)


def test_a_bad_layout_is_a_clear_error(tmp_path):
    good = yaml.safe_load((evidence.RECORDS_DIR / "f2_layers.yaml").read_text())
    for change, message in [({"view": "pie"}, r"layout.view='pie': choose one of arms, per_length"),
                            ({"view": "arms", "colour": "red"}, r"unknown keys \['colour'\]"),
                            ({"view": "arms", "shared": [{"table": "f1_cot"}]}, r"layout.shared\[0\] must be"),
                            ({"view": "arms", "crossing": {"by": "recipe"}}, r"layout.crossing must be"),
                            ({"view": "arms", "x": "epochs"}, r"layout.x='epochs': choose one of step, sequences")]:
        (tmp_path / "z.yaml").write_text(yaml.safe_dump({**good, "layout": change}))
        with pytest.raises(evidence.RecordError, match=message):
            evidence.read_record("z", tmp_path)
    (tmp_path / "z.yaml").write_text(yaml.safe_dump({**good, "order": 1}))
    (tmp_path / "w.yaml").write_text(yaml.safe_dump({**good, "order": 1}))
    with pytest.raises(evidence.RecordError, match=r"two records share an order"):
        evidence.read_records(tmp_path)


def test_a_record_amended_after_its_runs_says_so_and_an_unannounced_change_is_flagged(tmp_path):
    """no_early_stop's record was amended after its runs (two labels quoted): its runs carry the old
    hash, which the amendment names, so RESULTS.md says "amended" with the change; a record changed
    without an amendment is flagged as changed; a malformed amendment is a clear error."""
    from training import findings
    rows = findings.rows_of(ROOT / "results", "no_early_stop")
    assert findings.record_check("no_early_stop", rows).startswith(
        "amended after its runs started (the runs carry the hash of the record before): Two contrast labels")
    other = [{**r, "record_sha256": "0" * 64} for r in rows]
    assert findings.record_check("no_early_stop", other).startswith("the record changed after its runs started")
    good = yaml.safe_load((evidence.RECORDS_DIR / "f2_layers.yaml").read_text())
    (tmp_path / "z.yaml").write_text(yaml.safe_dump({**good, "amendments": [{"sha256": "abc", "change": "x"}]}))
    with pytest.raises(evidence.RecordError, match=r"amendments\[0\] must be \{sha256"):
        evidence.read_record("z", tmp_path)


def test_results_layout_is_read_from_the_records_not_written_per_experiment():
    """An experiment is data: the renderer (findings, tables, figures) names no experiment (F1's recipes
    table aside), and every claim, question and layout RESULTS.md uses comes from the experiment's record."""
    from training import findings
    source = "".join((ROOT / "training" / f).read_text() for f in ("findings.py", "tables.py", "figures.py"))
    for name in EXPERIMENTS:
        if name != "f1_cot":
            assert name not in source, name
        record = evidence.read_record(name)
        assert findings.EXPERIMENTS[name] == (record["paper_claim"], record["here"])
        assert (name in findings.SCALING) == (record["layout"]["view"] == "scaling")
    assert list(EXPERIMENTS) == [r.name for r in evidence.read_records()]
    assert findings.SHARED["f2_layers"] == [("f1_cot", {"cot": "True"})]


def test_the_budget_counts_each_runs_own_batch():
    """Arms that differ in batch (sample_matched: 7,813 steps at 256, 31,250 at 64) each see 2.0M
    sequences; the record's budget.batch ("256 / 64") is words, not a number, and is not multiplied."""
    record = evidence.read_record("sample_matched")
    rows = [{"steps": "7813", "batch_size": "256"}, {"steps": "31250", "batch_size": "64"}]
    assert evidence.budget_share(record, rows) == pytest.approx(2_000_000 / (256 * 64000), rel=1e-3)
    assert "2.00M sequences seen (batch 256 / 64)" in evidence.budget_ratio(record, rows)
    one = evidence.read_record("f1_cot")  # one batch for every run: steps x the record's batch
    assert f"× batch {one['budget']['batch']} = " in evidence.budget_ratio(one, [{"steps": "3000"}])


def test_a_claim_quotes_the_budget_of_its_own_runs():
    """The share of the paper's budget in a verdict is that of the runs the claim counts: a contrast of
    arms with different budgets says both (paper_reference: the paper's recipe for 40 minutes against
    ours, stopped at 99%), and a one-arm claim says its arm's alone."""
    record, tables = evidence.read_record("paper_reference"), tables_for(RESULTS)
    found = dict(zip((c["name"] for c in record["claims"]), evidence.verdicts(record, tables)))
    for claim in record["claims"]:
        word, sentence = found[claim["name"]]
        if "contrast" in claim:
            a, b = (evidence.select(tables, record.name, arm) for arm in claim["contrast"])
            shares = [f"{100 * evidence.budget_share(record, rows):.0f}%" for rows in (a, b)]
            assert shares[0] != shares[1], shares  # the arms differ in budget, and the sentence says so
            assert sentence.endswith(f"(the two sides at {shares[0]} and {shares[1]} of the paper's budget "
                                     "in sequences seen)."), sentence
        elif "arm" in claim:
            rows = evidence.select(tables, record.name, claim["arm"])
            assert f"(at {100 * evidence.budget_share(record, rows):.0f}% of the paper's budget" in sentence


def test_the_paper_arms_overlap_quoted_in_sample_matched_is_measured():
    """sample_matched's notes quote, per length, the share of the paper recipe's test draws that its
    train half also drew (data.source=paper: draws with replacement): recomputed here from the draws."""
    from datasets_builders import tasks
    from datasets_builders.iteration_tasks import SequenceSet, paper_split_inputs, sequence_keys
    from training.config import compose

    notes = " ".join(evidence.read_record("sample_matched")["notes"].split())
    quoted = re.search(r"also drew \(data\.seed (\d+), the same draws for every seed\): (.+?)\. So", notes)
    assert quoted, notes
    shares = {}
    for part in quoted.group(2).split(", "):
        value, lo, hi = re.fullmatch(r"([01]\.\d{3}) at (?:lengths )?(\d+)(?:-(\d+))?", part).groups()
        shares.update({L: value for L in range(int(lo), int(hi or lo) + 1)})
    parity = tasks.make_task("parity")
    for seed in (0, 5):  # the split does not follow the run's seed
        cfg = compose(["experiment=sample_matched", "recipe=paper_reference", f"seed={seed}"])
        assert cfg.data.seed == int(quoted.group(1))
        assert sorted(shares) == list(range(cfg.data.min_length, cfg.data.max_length + 1))
        for L, value in shares.items():
            halves = paper_split_inputs(parity, L, cfg.data.examples_per_length, cfg.data.seed)
            seen = SequenceSet(sequence_keys(halves["train"])).holds(halves["test"]).mean()
            assert f"{seen:.3f}" == value, (L, seen, value)


def test_a_design_check_says_whether_an_experiment_not_run_could_show_what_it_asks(tmp_path):
    """paper_leave_one_out (not run) declares a pilot, the whole recipe at the budget the CPU allows
    (sample_matched's paper arm): if a leave-one-out arm had the head in none of its 5 seeds, could
    Fisher's test tell it from the pilot? The word follows p < 0.05; RESULTS.md shows the sentence."""
    from training import findings

    record = evidence.read_record("paper_leave_one_out")
    tables = findings.tables_for(RESULTS)
    pilot = [r for r in tables["sample_matched"] if r["recipe"] == "paper_reference"]
    k = sum(float(r["iteration_score"]) >= evidence.HEAD for r in pilot)
    word, sentence = evidence.pilot_check(record, tables)
    p = evidence.fisher(k, len(pilot), 0, record["seeds"])
    assert word == ("can show" if p < 0.05 else "cannot show")
    assert f"{k}/{len(pilot)} seeds formed the head" in sentence and f"p = {p:.3g}" in sentence
    section = render(RESULTS, draw=False).split("## paper_leave_one_out")[1].split("\n## ")[0]
    assert "**Design check**" in section and sentence in section
    readme = (ROOT / "README.md").read_text()  # the README's findings quote the word
    assert f"- **paper_leave_one_out**: not run yet (`python train.py --multirun experiment=paper_leave_one_out`). " \
           f"Design check, from its pilot: at the pilot's budget it {word} what it asks" in readme
    # the rule itself, on made-up pilots: 5/5 against 0/5 can show it (p = 0.0079), 2/5 cannot
    made = {"sample_matched": [{"recipe": "paper_reference", "iteration_score": str(s), "steps": "7813",
                                "batch_size": "256"} for s in (0.9,) * 5]}
    assert evidence.pilot_check(record, made)[0] == "can show"
    made["sample_matched"][:3] = [dict(r, iteration_score="0.1") for r in made["sample_matched"][:3]]
    assert evidence.pilot_check(record, made)[0] == "cannot show"
    assert evidence.pilot_check(evidence.read_record("f1_cot"), tables) is None  # no pilot, no check
    bad = yaml.safe_load(record.path.read_text())
    bad["pilot"]["measure"] = "test_accuracy"  # not a count of seeds
    (tmp_path / "z.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(evidence.RecordError, match=r"pilot must be \{arm:"):
        evidence.read_record("z", tmp_path)
