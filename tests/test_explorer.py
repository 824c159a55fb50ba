"""The explorer's logic (modeling/explorer.py) and the Space's handlers, without a browser.

Real models: the hand-built construction (exact, so its answers are known) and the released
folders of ``hub/`` (skipped only when ``hub/`` is absent). tests/test_space.py drives the page.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from datasets_builders import tasks
from modeling import explorer

ROOT = Path(__file__).resolve().parents[1]
HUB = ROOT / "hub"
APP = HUB / "iteration-head-explorer" / "app.py"
needs_hub = pytest.mark.skipif(not (HUB / "iteration-head-polynomial").is_dir(), reason="hub/ is absent")


@pytest.fixture(scope="module")
def catalogue():
    if not (HUB / "iteration-head-polynomial").is_dir():
        pytest.skip("hub/ is absent")
    return explorer.find_catalogue(str(HUB))


def parity():
    return tasks.make_task("parity")


# ------------------------------------------------------------------------------------ inputs
@pytest.mark.parametrize("text, expected", [("1 0 1 1", [1, 0, 1, 1]), ("1,0, 1", [1, 0, 1]),
                                            ("1011", [1, 0, 1, 1]), ("  0  ", [0])])
def test_parse_input_reads_values(text, expected):
    assert explorer.parse_input(text, parity(), 30).tolist() == expected


@pytest.mark.parametrize("text, message", [
    ("", "the input is empty"),
    ("1 2 0", "'2' is not parity input"),
    ("1 x 0 y", "'x', 'y' are not parity inputs"),
    ("<parity> 1 0 <eoi>", "the explorer adds <task> and <eoi>"),
    ("1 0 1 1 0", "context fits at most 4"),
])
def test_parse_input_says_what_is_wrong(text, message):
    with pytest.raises(explorer.InputError, match=message):
        explorer.parse_input(text, parity(), 4)


def test_parse_input_polynomial_values_and_no_digit_splitting():
    poly = tasks.make_task("polynomial")
    assert explorer.parse_input("10 3 1", poly, 30).tolist() == [10, 3, 1]
    with pytest.raises(explorer.InputError, match="'0' is not polynomial input: its values are 1 2 3"):
        explorer.parse_input("0 3", poly, 30)
    with pytest.raises(explorer.InputError, match="'103' is not polynomial input"):  # no "1 0 3" guess
        explorer.parse_input("103", poly, 30)


def test_random_input_has_the_length_and_valid_values():
    text = explorer.random_input("polynomial", 12, 30, seed=1)
    values = explorer.parse_input(text, tasks.make_task("polynomial"), 30)
    assert len(values) == 12 and set(values.tolist()) <= set(range(1, 11))
    for bad, message in ((0, "out of range"), (31, "fits 1 to 30"), ("ten", "not a whole number")):
        with pytest.raises(explorer.InputError, match=message):
            explorer.random_input("parity", bad, 30)
    with pytest.raises(explorer.InputError, match="task='sum' is unknown: choose one of copy, parity, polynomial, cyclic<n>"):
        explorer.random_input("sum", 4, 30)


def test_fit_input_keeps_a_valid_input_and_replaces_an_invalid_one():
    assert explorer.fit_input("1 0 1", "parity", 30) == "1 0 1"
    replaced = explorer.fit_input("3 4 5 9", "parity", 30, seed=0)  # a polynomial input, parity chosen
    assert len(explorer.parse_input(replaced, parity(), 30)) == 4
    assert len(explorer.parse_input(explorer.fit_input("", "parity", 30), parity(), 30)) == 1
    assert len(explorer.fit_input("7 " * 40, "polynomial", 30).split()) == 30


# ------------------------------------------------------------------------------------ chain
def test_chain_html_marks_each_state_right_or_wrong():
    row = tasks.build_rows(parity(), np.array([[1, 0, 1]]))[0]  # <parity> 1 0 1 <eoi> 1 1 0 <eos>
    reference = row[5:].tolist()
    html, right = explorer.chain_html(row, [1, 0, 0, tasks.EOS_ID], reference, 3)
    assert right == 3
    assert html.count('class="tok right"') == 3 and html.count('class="tok wrong"') == 1
    assert "0≠1" in html and "s2: generated 0, the task gives 1" in html and "1 wrong" in html


def test_construction_explored_exactly():
    sel = explorer.select(None, explorer.CONSTRUCTION, task="parity")
    result = explorer.explore(sel, "parity", "1 0 1 1 0 1")
    assert (result.right, result.total) == (7, 7)  # s_1 … s_6 and <eos>
    assert "7/7 generated tokens right (all right)" in result.chain_html
    # layer 1 reads x_t on the diagonal (its last query, which writes <eos>, reads <eoi>: 1/6)
    assert "| 1 | 0 | 0.167 | 1.000 | – | iteration head |" in result.scores_markdown
    assert "| 0 | 0 | 1.000 | 0.000 | – | attends to `<eoi>` |" in result.scores_markdown
    assert len(result.figure.axes) == 3  # two heads and the colour bar
    mean = explorer.explore(sel, "parity", "1 0 1 1 0 1", mean=True)
    assert "mean over 64 distinct random inputs" in mean.scores_markdown  # all 2^6 (< MEAN_N)
    assert "| 1 | 0 | 0.167 | 1.000 | 1.000 | iteration head |" in mean.scores_markdown  # invariance 1


def test_explore_rejects_an_input_longer_than_the_context():
    sel = explorer.select(None, explorer.CONSTRUCTION, task="copy")  # 64 positions: at most 30 values
    with pytest.raises(explorer.InputError, match="31 values but the model's context fits at most 30"):
        explorer.explore(sel, "copy", "1 " * 31)


# ------------------------------------------------------------------------------------ ablation
def test_ablating_the_iteration_head_of_the_construction_breaks_it():
    sel = explorer.select(None, explorer.CONSTRUCTION, task="parity")
    assert explorer.components(sel) == ["L0H0", "L1H0", "L0MLP", "L1MLP"]
    assert explorer.default_component(explorer.components(sel)) == "L1H0"
    res = explorer.ablate(sel, "parity", "L1H0", "zero", "2-6", n=16)
    assert res["baseline_mean"] == 1.0 and res["ablated_mean"] < 0.5
    assert sorted(res["ablated"]) == [2, 3, 4, 5, 6]
    assert "1.000 →" in explorer.ablation_markdown(res)


@pytest.mark.parametrize("args, message", [
    (("L2H0", "zero", "1-4"), "component 'L2H0' is unknown: choose one of L0H0, L1H0"),
    (("L1H0", "half", "1-4"), "mode 'half' is unknown"),
    (("L1H0", "zero", "1-40"), "length 31 does not fit the context"),
    (("L1H0", "zero", "four"), "write e.g. 1-16"),
])
def test_ablation_errors_are_messages(args, message):
    sel = explorer.select(None, explorer.CONSTRUCTION, task="parity")
    with pytest.raises(ValueError, match=message):
        explorer.ablate(sel, "parity", *args)


# ------------------------------------------------------------------------------------ released folders
def test_catalogue_errors(tmp_path):
    with pytest.raises(explorer.InputError, match="does not exist"):
        explorer.find_catalogue(str(tmp_path / "nothing"))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(explorer.InputError, match="holds no IterGPT model"):
        explorer.find_catalogue(str(tmp_path))


@needs_hub
def test_catalogue_of_the_release(catalogue):
    assert "iteration-head-polynomial" in catalogue.models and "iteration-head-tasks" not in catalogue.models
    assert catalogue.choices[-1] == explorer.CONSTRUCTION
    revisions = catalogue.revision_choices("iteration-head-polynomial")
    assert revisions[0] == explorer.MAIN and len(revisions) > 1 and all(r.startswith("step") for r in revisions[1:])
    with pytest.raises(explorer.InputError, match="revision 'step7' of iteration-head-polynomial is unknown"):
        explorer.select(catalogue, "iteration-head-polynomial", "step7")
    with pytest.raises(explorer.InputError, match="model 'gpt2' is unknown"):
        explorer.select(catalogue, "gpt2")


@needs_hub
def test_released_model_settings_and_emergence(catalogue):
    sel = explorer.select(catalogue, "iteration-head-polynomial", explorer.MAIN, "polynomial")
    assert sel.cot and sel.trained_task == "polynomial"
    assert explorer.select(catalogue, "iteration-head-polynomial", explorer.MAIN, "polynomial").model is sel.model
    png, revisions = explorer.emergence(catalogue, "iteration-head-polynomial")
    assert Path(png).read_bytes()[:4] == b"\x89PNG"
    assert revisions[-1] == explorer.MAIN
    assert revisions[:-1] == catalogue.revision_choices("iteration-head-polynomial")[1:]
    assert explorer.emergence(catalogue, explorer.CONSTRUCTION) == (None, [])
    early = explorer.select(catalogue, "iteration-head-polynomial", revisions[0], "polynomial")
    assert early.model is not sel.model and early.label.endswith(f"@ {revisions[0]}")


@needs_hub
def test_model_without_chain_of_thought(catalogue):
    sel = explorer.select(catalogue, "iteration-head-parity-nocot", explorer.MAIN, "parity")
    assert not sel.cot
    result = explorer.explore(sel, "parity", "1 1 1")
    assert result.total == 2  # s_L and <eos>
    assert "need a chain of thought" in result.scores_markdown


# ------------------------------------------------------------------------------------ the Space's handlers
@pytest.fixture(scope="module")
def app():
    import gradio  # noqa: F401 - the 'space' extra, installed by make test: a broken install fails here
    spec = importlib.util.spec_from_file_location("explorer_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_hub
def test_handlers_show_messages_not_tracebacks(app, catalogue):
    message, *rest = app.show(catalogue, "iteration-head-parity", "main", "parity", "1 0 2", False)
    assert message.startswith("**Cannot do that:**") and "'2' is not parity input" in message
    message, chain, figure, scores = app.show(catalogue, "iteration-head-parity", "main", "parity", "1 0 1", False)
    assert "iteration-head-parity on parity" in message and "4/4 generated tokens right" in chain
    message, text = app.draw_input(catalogue, "iteration-head-parity", "main", "parity", 99)
    assert "out of range: the model's context fits 1 to 30" in message


def test_app_requirements_install_the_released_package():
    """The Space installs this repository's package and gradio 6, not a copy of the code."""
    lines = [l.strip() for l in (APP.parent / "requirements.txt").read_text().splitlines()]
    lines = [l for l in lines if l and not l.startswith("#")]
    assert any(l.startswith("gradio>=6") for l in lines)
    assert any(l.startswith("iteration-head @ git+") for l in lines)
    assert sorted(p.name for p in APP.parent.iterdir() if p.suffix == ".py") == ["app.py"]
    card = (APP.parent / "README.md").read_text()
    assert card.startswith("---\n") and "sdk: gradio" in card and "app_file: app.py" in card
