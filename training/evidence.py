"""Verdicts computed from the declared records of the experiments (``configs/records/<name>.yaml``).

A record says, before its runs (or, for the experiments that predate records, says that it was written
after them), what an experiment asks, which arms it contrasts, by which measure, and the rule that
turns the test into the verdict's word. This module reads a record, selects the arms' rows from the
per-run tables, runs the test with a well-kept library, and writes the verdict sentence. No verdict
word is typed anywhere else: ``reproduced``, ``contradicted`` and ``differs`` appear only when the
record's rule says so; otherwise the sentence says ``not settled`` or ``no difference shown`` at the
seeds it had, and how many would be needed.

Statistics (each with n beside it):

- seed counts (k of n runs meet a criterion): the Wilson 95% interval (``statsmodels``);
- two counts: Fisher's exact test, two-sided (``scipy.stats.fisher_exact``), with the smallest
  difference the design could show at that n, and the seeds per arm at which the observed
  proportions would reach p < 0.05;
- continuous measures (accuracy, head scores): mean with a bootstrap 95% interval (``scipy.stats.bootstrap``,
  percentile, 10,000 resamples, fixed seed) and the Mann-Whitney U test, two-sided (exact for small n
  without ties), with the smallest p the exact test can reach at that n;
- a measure against a numeric column across runs (a trend, e.g. over the tasks' table sizes):
  Spearman's rank correlation, two-sided (``scipy.stats.spearmanr``).
"""

from __future__ import annotations

import hashlib
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from modeling.analysis import HEAD_THRESHOLD

from .report import PEAK_MIN_LENGTH

__all__ = ["RecordError", "NotRun", "Record", "MEASURES", "read_record", "record_sha256", "select", "verdicts",
           "wilson", "fisher", "compare_values", "trend", "bootstrap_mean", "budget_ratio", "budget_share", "RECORDS_DIR"]

ROOT = Path(__file__).resolve().parents[1]
RECORDS_DIR = ROOT / "configs" / "records"
ALPHA = 0.05
POWER = 0.8
PAPER_FROM = PEAK_MIN_LENGTH  # the reference averages accuracy and peakiness over lengths >= 4
HEAD = HEAD_THRESHOLD  # a seed "has the head" when its iteration score reaches it


class RecordError(ValueError):
    """A record that cannot be used as written (the message names the file and the field)."""


def _num(v):
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def has_head(row: dict) -> bool | None:
    """The detector's word on one run: iteration score >= HEAD; None without a score (no CoT)."""
    score = _num(row.get("iteration_score"))
    return None if score is None else score >= HEAD


def accuracy_from(row: dict, start: int = PAPER_FROM) -> float | None:
    """Mean test sequence accuracy over the lengths ``start … max_length`` of a run (the reference's
    average for its maps); all lengths when the run trained none that long."""
    lengths = sorted(int(c[5:]) for c in row if c.startswith("acc_L") and c[5:].isdigit())
    top = int(float(row["max_length"])) if _num(row.get("max_length")) is not None else max(lengths, default=0)
    xs = [(L, _num(row.get(f"acc_L{L}"))) for L in range(1, top + 1)]
    longer = [x for L, x in xs if L >= start and x is not None]
    every = [x for _, x in xs if x is not None]
    return statistics.mean(longer or every) if every else None


UNSEEN_FROM = 8  # with the reference's data (2,048 draws per length) parity's first length with unseen test rows


def unseen_accuracy_from(row: dict, start: int = UNSEEN_FROM) -> float | None:
    """Mean accuracy over lengths ``start … max_length`` on test sequences the run never trained on:
    ``unseen_acc_L<L>`` for a run on the reference's data (``data.source=paper``, whose test half
    overlaps its train half), the test accuracy ``acc_L<L>`` for any other (its test split is
    disjoint from what it trains on). None for a ``source=paper`` row without the unseen columns, or
    where a length has no value."""
    prefix = "unseen_acc_L" if row.get("source") == "paper" else "acc_L"
    top = _num(row.get("max_length"))
    if top is None:
        return None
    xs = [_num(row.get(f"{prefix}{L}")) for L in range(start, int(top) + 1)]
    return statistics.mean(xs) if xs and all(x is not None for x in xs) else None


def _late_head(row: dict) -> bool:
    """The run ends with the head, and the first evaluation that saw it came after the first one at
    99% on every test length (the head grew after accuracy saturated)."""
    head, reached = _num(row.get("head_step")), _num(row.get("steps_to_target"))
    return ((_num(row["iteration_score"]) or 0.0) >= HEAD and head is not None and reached is not None
            and head > reached)


# measure -> (kind, words, function of a row). Counts are criteria a seed meets or not.
MEASURES = {
    "reached": ("count", "reached 99% on every test length",
                lambda r: _num(r["steps_to_target"]) is not None),
    "learned_from_4": ("count", f"reached a mean test accuracy of 0.9 over lengths >= {PAPER_FROM} (the paper's maps)",
                       lambda r: (accuracy_from(r) or 0.0) >= 0.9),
    "head": ("count", f"formed the head (detector: iteration score >= {HEAD})", lambda r: bool(has_head(r))),
    "peaked_head": ("count", f"formed the head (the paper's thresholded peakiness >= {HEAD}, lengths >= {PAPER_FROM})",
                    lambda r: (_num(r.get("iteration_peakiness")) or 0.0) >= HEAD),
    "late_head": ("count", "formed the head (detector, at the last step) first seen after reaching 99% on every length",
                  _late_head),
    "test_accuracy": ("value", "mean test sequence accuracy", lambda r: _num(r["test_accuracy"])),
    "accuracy_from_4": ("value", f"mean test accuracy over lengths >= {PAPER_FROM}", accuracy_from),
    "unseen_accuracy_from_8": ("value", f"mean accuracy over lengths >= {UNSEEN_FROM} on test sequences the run "
                               "never trained on", unseen_accuracy_from),
    "worst_length": ("value", "test accuracy of the worst length", lambda r: _num(r["test_accuracy_min"])),
    "iteration_score": ("value", "iteration score (detector)", lambda r: _num(r["iteration_score"])),
    "iteration_peakiness": ("value", f"thresholded peakiness (lengths >= {PAPER_FROM})",
                            lambda r: _num(r.get("iteration_peakiness"))),
    "steps": ("value", "training steps", lambda r: _num(r["steps"])),
}


# ---------------------------------------------------------------------------------------------
# statistics (libraries, not hand-rolled)
# ---------------------------------------------------------------------------------------------
def wilson(k: int, n: int) -> tuple[float, float]:
    """The Wilson 95% interval of k successes in n."""
    from statsmodels.stats.proportion import proportion_confint
    lo, hi = proportion_confint(k, n, alpha=ALPHA, method="wilson")
    return float(lo), float(hi)


def fisher(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p-value of Fisher's exact test of k1/n1 against k2/n2."""
    from scipy.stats import fisher_exact
    return float(fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="two-sided")[1])


def smallest_detectable(n1: int, n2: int) -> str:
    """The smallest contrast of counts Fisher's test calls significant at these n (all of one arm
    against the fewest of the other), as words."""
    for k2 in range(n2, -1, -1):
        if fisher(n1, n1, k2, n2) < ALPHA:
            return f"{n1}/{n1} against {k2}/{n2} or fewer"
    return f"none (even {n1}/{n1} against 0/{n2} gives p = {fisher(n1, n1, 0, n2):.2f})"


def seeds_to_show(p1: float, p2: float) -> int | None:
    """Seeds per arm at which the observed proportions, held fixed, would give Fisher's p < 0.05
    (None when they are equal, or beyond 1,000 seeds)."""
    if abs(p1 - p2) < 1e-9:
        return None
    return next((n for n in range(2, 1001) if fisher(round(p1 * n), n, round(p2 * n), n) < ALPHA), None)


def smallest_rank_p(n1: int, n2: int) -> float:
    """The smallest two-sided p-value the exact Mann-Whitney test can give at these n."""
    return 2 / math.comb(n1 + n2, n1)


def bootstrap_mean(xs: list[float]) -> tuple[float, float, float]:
    """Mean and its bootstrap 95% percentile interval (degenerate for fewer than 2 distinct values)."""
    mean = statistics.mean(xs)
    if len(set(xs)) < 2:
        return mean, mean, mean
    from scipy.stats import bootstrap
    res = bootstrap((xs,), statistics.mean, n_resamples=10_000, confidence_level=0.95, method="percentile",
                    random_state=0, vectorized=False)
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high)


def compare_values(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (exact for small samples without ties)."""
    from scipy.stats import mannwhitneyu
    if len(set(a) | set(b)) < 2:
        return 1.0
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


# ---------------------------------------------------------------------------------------------
# records
# ---------------------------------------------------------------------------------------------
@dataclass
class Record:
    name: str
    path: Path
    doc: dict

    def __getitem__(self, key):
        return self.doc[key]

    def get(self, key, default=None):
        return self.doc.get(key, default)


REQUIRED = ("question", "hypothesis", "declared", "arms", "primary", "budget", "seeds", "seeds_why", "claims",
            "order", "paper_claim", "here", "layout")
# How RESULTS.md shows an experiment (``layout.view``): one row per arm, a per-length table and figure
# (findings about length), curves against training seconds (compared at equal wall-clock time), or
# maps over width x max length (one per condition).
VIEWS = ("arms", "per_length", "wall_clock", "scaling")
CURVE_AXES = ("step", "sequences")  # layout.x: what the curves are drawn against (wall_clock: seconds)


def read_record(name: str, folder: Path = RECORDS_DIR) -> Record:
    """The declared record of experiment ``name``, checked (every field the renderer reads)."""
    import yaml
    path = folder / f"{name}.yaml"
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as err:
        raise RecordError(f"{path}: cannot be read ({err.strerror or err}); every experiment needs its record") from None
    except yaml.YAMLError as err:
        raise RecordError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise RecordError(f"{path}: not a mapping")
    missing = [k for k in REQUIRED if k not in doc]
    if missing:
        raise RecordError(f"{path}: lacks {', '.join(missing)}")
    if doc["declared"] not in ("before the runs", "after the runs"):
        raise RecordError(f"{path}: declared={doc['declared']!r}: say 'before the runs' or 'after the runs'")
    for i, claim in enumerate(doc["claims"]):
        where = f"{path}: claims[{i}]"
        if claim.get("measure") not in MEASURES:
            raise RecordError(f"{where}: measure={claim.get('measure')!r}: choose one of {', '.join(MEASURES)}")
        kind = MEASURES[claim["measure"]][0]
        if "contrast" in claim:
            if not (isinstance(claim["contrast"], list) and len(claim["contrast"]) == 2):
                raise RecordError(f"{where}: contrast must list two arms")
        elif "trend" in claim:
            if not isinstance(claim["trend"], str):
                raise RecordError(f"{where}: trend={claim['trend']!r}: name the numeric column the measure may rise or fall with")
        elif "arm" in claim:
            if kind != "count" or "expect" not in claim:
                raise RecordError(f"{where}: a one-arm claim needs a count measure and expect: most | few")
            if claim["expect"] not in ("most", "few"):
                raise RecordError(f"{where}: expect={claim['expect']!r}: say most or few")
        else:
            raise RecordError(f"{where}: give arm (a claim about one arm), contrast (two arms) or trend (a column)")
    _check_layout(path, doc["layout"])
    pilot = doc.get("pilot")
    if pilot is not None:
        if not (isinstance(pilot, dict) and isinstance(pilot.get("arm"), dict) and isinstance(pilot.get("why"), str)
                and pilot.get("measure") in MEASURES and MEASURES[pilot["measure"]][0] == "count"):
            raise RecordError(f"{path}: pilot must be {{arm: {{table: <experiment>, column: value}}, measure: <a count "
                              "measure>, why: <what the pilot's arm is>}")
    for i, a in enumerate(doc.get("amendments") or []):
        if not (isinstance(a, dict) and isinstance(a.get("change"), str) and isinstance(a.get("sha256"), str)
                and len(a["sha256"]) == 64 and all(c in "0123456789abcdef" for c in a["sha256"])):
            raise RecordError(f"{path}: amendments[{i}] must be {{sha256: <the record's sha256 before the change>, "
                              "change: <what changed and why>}")
    if not isinstance(doc["order"], int) or isinstance(doc["order"], bool):
        raise RecordError(f"{path}: order={doc['order']!r}: give the experiment's place in RESULTS.md as an integer")
    return Record(name, path, doc)


def _check_layout(path: Path, layout) -> None:
    """``layout``: ``view`` (one of VIEWS); optional ``shared`` (rows of another table, ``[{table, where}]``),
    ``label`` (``{column, values: {table: value}}``, the column that tells shared rows apart) and
    ``crossing`` (``{by, across: [columns], order: [conditions in words]}``, a crossed design at a glance)
    and ``x`` (the curves' axis: ``step``, the default, or ``sequences``, for arms matched in sequences
    seen at different batch sizes)."""
    if not isinstance(layout, dict) or layout.get("view") not in VIEWS:
        view = layout.get("view") if isinstance(layout, dict) else layout
        raise RecordError(f"{path}: layout.view={view!r}: choose one of {', '.join(VIEWS)}")
    unknown = set(layout) - {"view", "shared", "label", "crossing", "x"}
    if unknown:
        raise RecordError(f"{path}: layout has unknown keys {sorted(unknown)}: use view, shared, label, crossing, x")
    if layout.get("x", "step") not in CURVE_AXES:
        raise RecordError(f"{path}: layout.x={layout['x']!r}: choose one of {', '.join(CURVE_AXES)}")
    for i, share in enumerate(layout.get("shared", [])):
        if not (isinstance(share, dict) and isinstance(share.get("table"), str) and isinstance(share.get("where"), dict)):
            raise RecordError(f"{path}: layout.shared[{i}] must be {{table: <experiment>, where: {{column: value}}}}")
    label = layout.get("label")
    if label is not None and not (isinstance(label, dict) and isinstance(label.get("column"), str)
                                  and isinstance(label.get("values"), dict)):
        raise RecordError(f"{path}: layout.label must be {{column: <name>, values: {{table: value}}}}")
    crossing = layout.get("crossing")
    if crossing is not None and not (isinstance(crossing, dict) and isinstance(crossing.get("by"), str)
                                     and isinstance(crossing.get("across"), list)
                                     and isinstance(crossing.get("order"), list)):
        raise RecordError(f"{path}: layout.crossing must be {{by: <column>, across: [columns], order: [conditions]}}")


def read_records(folder: Path = RECORDS_DIR) -> list[Record]:
    """Every declared record of ``folder``, in RESULTS.md's order (each record's ``order``)."""
    records = [read_record(p.stem, folder) for p in sorted(folder.glob("*.yaml"))]
    orders = [r["order"] for r in records]
    if len(set(orders)) != len(orders):
        raise RecordError(f"{folder}: two records share an order ({sorted(orders)}): give each its own place")
    return sorted(records, key=lambda r: r["order"])


def record_sha256(name: str, folder: Path = RECORDS_DIR) -> str:
    return hashlib.sha256((folder / f"{name}.yaml").read_bytes()).hexdigest()


def select(tables: dict[str, list[dict]], default: str, arm: dict) -> list[dict]:
    """The rows of one arm: ``{table: <experiment>, column: value, ...}`` (values as the table writes
    them; a list means any of them). The table defaults to the record's own."""
    spec = dict(arm)
    name = spec.pop("table", default)
    label = spec.pop("label", None)  # noqa: F841  (a name for the sentence, not a column)
    if name not in tables:
        raise NotRun(f"no table results/{name}.csv")
    rows = tables[name]
    for column, want in spec.items():
        if rows and column not in rows[0]:
            raise NotRun(f"results/{name}.csv has no column {column!r}")
        wanted = {str(w) for w in want} if isinstance(want, list) else {str(want)}
        rows = [r for r in rows if r[column] in wanted]
    if not rows:
        raise NotRun(f"no run of results/{name}.csv matches {_arm_name(arm)}")
    return rows


def _arm_name(arm: dict) -> str:
    return arm.get("label") or ", ".join(f"{k}={v}" for k, v in arm.items() if k != "table")


def _count(rows, measure) -> tuple[int, int]:
    f = MEASURES[measure][2]
    return sum(bool(f(r)) for r in rows), len(rows)


def _values(rows, measure) -> list[float]:
    f = MEASURES[measure][2]
    return [x for x in (f(r) for r in rows) if x is not None]


def one_arm(claim: dict, rows: list[dict]) -> tuple[str, str]:
    """(word, sentence) for a claim that most (or few) seeds of an arm meet a criterion: reproduced
    when the Wilson interval lies above 1/2 (most) or below it (few), contradicted when it lies on
    the other side, else not settled, with the all-agreeing seed count that would settle it."""
    k, n = _count(rows, claim["measure"])
    lo, hi = wilson(k, n)
    most = claim["expect"] == "most"
    if (lo > 0.5) if most else (hi < 0.5):
        word = "reproduced"
    elif (hi < 0.5) if most else (lo > 0.5):
        word = "contradicted"
    else:
        word = "not settled"
    need = next(m for m in range(1, 100) if (wilson(m, m)[0] > 0.5 if most else wilson(0, m)[1] < 0.5))
    sentence = (f"{claim['name']}: {k}/{n} seeds {MEASURES[claim['measure']][1]} (95% Wilson interval "
                f"{lo:.2f}–{hi:.2f}): **{word}**")
    if word == "not settled":
        sentence += f" at n = {n} (settling it takes at least {need} seeds, all agreeing)"
    return word, sentence + "."


def two_arms(claim: dict, a: list[dict], b: list[dict]) -> tuple[str, str]:
    """(word, sentence) for a contrast of two arms: differs when the test's p < 0.05, else no
    difference shown at these n, with what the design could detect."""
    measure = claim["measure"]
    kind, words_, _ = MEASURES[measure]
    name_a, name_b = (_arm_name(x) for x in claim["contrast"])
    if kind == "count":
        (k1, n1), (k2, n2) = _count(a, measure), _count(b, measure)
        p = fisher(k1, n1, k2, n2)
        stats = (f"{name_a} {k1}/{n1} vs {name_b} {k2}/{n2} seeds {words_} (Fisher's exact test, two-sided, "
                 f"p = {p:.3g})")
        if p < ALPHA:
            return "differs", f"{claim['name']}: {stats}: **differs**."
        need = seeds_to_show(k1 / n1, k2 / n2)
        more = (f"; the smallest contrast this design could show is {smallest_detectable(n1, n2)}"
                + (f"; the observed proportions would reach p < 0.05 at {need} seeds per arm" if need
                   else "; the arms agree exactly" if k1 * n2 == k2 * n1 else ""))
        return "no difference shown", f"{claim['name']}: {stats}: **no difference shown** at n = {n1}, {n2}{more}."
    xs, ys = _values(a, measure), _values(b, measure)
    p = compare_values(xs, ys)
    (ma, la, ha), (mb, lb, hb) = bootstrap_mean(xs), bootstrap_mean(ys)
    f = ".0f" if measure == "steps" else ".3f"  # steps are counted, accuracies and scores are fractions
    stats = (f"{words_} {name_a} {ma:{f}} [{la:{f}}, {ha:{f}}] (n = {len(xs)}) vs {name_b} {mb:{f}} "
             f"[{lb:{f}}, {hb:{f}}] (n = {len(ys)}) (mean, bootstrap 95% interval; Mann-Whitney U, "
             f"two-sided, p = {p:.3g})")
    word = "differs" if p < ALPHA else "no difference shown"
    floor = smallest_rank_p(len(xs), len(ys))
    tail = "" if p < ALPHA else f" at n = {len(xs)}, {len(ys)}" + (
        f" (the exact rank test cannot go below p = {floor:.2g} at these n)" if floor >= ALPHA else "")
    return word, f"{claim['name']}: {stats}: **{word}**{tail}."


def trend(claim: dict, rows: list[dict]) -> tuple[str, str]:
    """(word, sentence) for a claim that a measure rises or falls with a numeric column across runs
    (a count measure as 0/1 per run): Spearman's rank correlation, two-sided; rises / falls with the
    column when p < 0.05, else no trend shown at this n."""
    column, measure = claim["trend"], claim["measure"]
    if rows and column not in rows[0]:
        raise NotRun(f"the table has no column {column!r}")
    kind, words_, f = MEASURES[measure]
    pairs = [(_num(r[column]), f(r)) for r in rows]
    pairs = [(x, float(y)) for x, y in pairs if x is not None and y is not None]
    n = len(pairs)
    if n < 3 or len({x for x, _ in pairs}) < 2 or len({y for _, y in pairs}) < 2:
        rho, p = 0.0, 1.0
    else:
        from scipy.stats import spearmanr
        res = spearmanr([x for x, _ in pairs], [y for _, y in pairs])
        rho, p = float(res.statistic), float(res.pvalue)
    what = f"runs that {words_}" if kind == "count" else words_
    word = (f"rises with {column}" if rho > 0 else f"falls with {column}") if p < ALPHA else "no trend shown"
    tail = "" if p < ALPHA else f" at n = {n}"
    return word, (f"{claim['name']}: {what} against {column} over {n} runs: Spearman's rho = {rho:.2f} "
                  f"(two-sided, p = {p:.3g}): **{word}**{tail}.")


class NotRun(RecordError):
    """An arm of a claim has no run in the tables (not run yet)."""


def verdicts(record: Record, tables: dict[str, list[dict]]) -> list[tuple[str, str]]:
    """Every claim of ``record`` as (word, sentence), in the record's order. A claim whose arm has no
    run is ``not run``; where the runs it counts had under half of the paper's budget, the sentence
    says at what share of it (its own runs', not the experiment's: arms may differ in budget)."""
    out = []
    for claim in record["claims"]:
        at = ""
        try:
            if "trend" in claim:
                rows = select(tables, record.name, claim.get("arm") or {})
                word, sentence = trend(claim, rows)
                at = _budget_words(record, [rows])
            elif "arm" in claim:
                rows = select(tables, record.name, claim["arm"])
                word, sentence = one_arm(claim, rows)
                at = _budget_words(record, [rows])
            else:
                a, b = (select(tables, record.name, arm) for arm in claim["contrast"])
                word, sentence = two_arms(claim, a, b)
                at = _budget_words(record, [a, b])
        except NotRun as err:
            word, sentence = "not run", f"{claim['name']}: **not run** ({err})."
        out.append((word, sentence[:-1] + at + "." if at else sentence))
    return out


def pilot_check(record: Record, tables: dict[str, list[dict]]) -> tuple[str, str] | None:
    """(word, sentence) for an experiment's ``pilot``: the whole of what its arms take something away
    from, run at a budget this machine allows (another table's arm). If none of an arm's declared seeds
    met the measure, could Fisher's test tell that arm from the pilot's k/n? ``can show`` when p < 0.05,
    else ``cannot show``, with the seeds per arm the pilot's rate would need. None without a pilot."""
    pilot = record.get("pilot")
    if pilot is None:
        return None
    try:
        rows = select(tables, record.name, pilot["arm"])
    except NotRun as err:
        return "not run", f"The pilot ({pilot['why']}): **not run** ({err})."
    k, n = _count(rows, pilot["measure"])
    m = record["seeds"]
    p = fisher(k, n, 0, m)
    word = "can show" if p < ALPHA else "cannot show"
    need = seeds_to_show(k / n, 0.0)
    sentence = (f"The pilot, {pilot['why']}{_budget_words(record, [rows])}: {k}/{n} seeds "
                f"{MEASURES[pilot['measure']][1]}. An arm with none of "
                f"its {m} seeds meeting it would give Fisher's p = {p:.3g} against the pilot: at the pilot's budget "
                f"this design **{word}** that an ingredient is necessary")
    if word == "cannot show":
        sentence += (f" (the pilot's rate against 0 would need {need} seeds per arm)" if need
                     else " (at any number of seeds: the pilot's arm never met it)")
    return word, sentence + "."


def _budget_words(record: Record, sides: list[list[dict]]) -> str:
    """" (at 7% of the paper's budget in sequences seen)" for the runs a claim counts (each run's steps
    times its batch, the median over them), where they had under half of it; a contrast whose two
    sides had different shares gives both, in the claim's order ("the two sides at 7% and 3%")."""
    shares = [budget_share(record, rows) for rows in sides]
    if any(s is None for s in shares) or min(shares) >= 0.5:
        return ""
    pcts = list(dict.fromkeys((f"{100 * s:.0f}" if s >= 0.01 else f"{100 * s:.1g}") + "%" for s in shares))
    if len(pcts) == 1:
        return f" (at {pcts[0]} of the paper's budget in sequences seen)"
    return f" (the two sides at {' and '.join(pcts)} of the paper's budget in sequences seen)"


def _budget(record: Record, rows: list[dict]):
    """(median steps, median sequences seen, the paper's sequences, the paper's budget, the batch in
    words) per run: each run's steps times its own ``batch_size`` where the table has it (arms that
    differ in batch), else the record's ``budget.batch``."""
    paper = record.get("paper") or {}
    declared = record["budget"].get("batch")
    declared = declared if isinstance(declared, (int, float)) and not isinstance(declared, bool) else None
    runs = []
    for r in rows:
        steps, batch = _num(r.get("steps")), _num(r.get("batch_size"))
        batch = declared if batch is None else batch
        if steps is not None and batch is not None:
            runs.append((steps, steps * batch, batch))
    if not paper.get("steps") or not runs:
        return None
    batches = sorted({b for _, _, b in runs}, reverse=True)
    words = " / ".join(f"{b:,.0f}" for b in batches)
    return (statistics.median(s for s, _, _ in runs), statistics.median(q for _, q, _ in runs),
            paper["batch"] * paper["steps"], paper, words)


def budget_share(record: Record, rows: list[dict]) -> float | None:
    """Sequences seen per run (median over runs of steps x batch) as a share of the paper's."""
    b = _budget(record, rows)
    return None if b is None else b[1] / b[2]


def budget_ratio(record: Record, rows: list[dict]) -> str | None:
    """Our budget beside the paper's, in optimizer steps and in sequences seen, from the record's
    budgets (``budget.batch``; ``paper.steps`` and ``paper.batch``) and the runs' steps."""
    b = _budget(record, rows)
    if b is None:
        return None
    steps, ours, theirs, paper, batch = b
    seen = (f"median {steps:,.0f} steps × batch {batch} = {ours / 1e6:.2f}M sequences seen" if "/" not in batch
            else f"median {steps:,.0f} steps and {ours / 1e6:.2f}M sequences seen (batch {batch})")
    return (f"{seen} per run: {100 * steps / paper['steps']:.0f}% of the paper's {paper['steps']:,} steps and "
            f"{100 * ours / theirs:.0f}% of its {theirs / 1e6:.1f}M sequences (batch {paper['batch']})")
