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
from helpers import APP, HUB, free_port, hub_mark, require, running_app

needs_hub = hub_mark(HUB / "iteration-head-polynomial")
SPACE_EXTRA = "the 'space' extra is not installed (pip install -e '.[space]')"


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
    # layer 2 (counted from 1, as in the paper) reads x_t on the diagonal (its last query, which
    # writes <eos>, reads <eoi>: 1/6)
    assert "| 2 | 1 | 0.167 | 1.000 | – | iteration head |" in result.scores_markdown
    assert "| 1 | 1 | 1.000 | 0.000 | – | attends to `<eoi>` |" in result.scores_markdown
    mean = explorer.explore(sel, "parity", "1 0 1 1 0 1", mean=True)
    assert "mean over 64 distinct random inputs" in mean.scores_markdown  # all 2^6 (< MEAN_N)
    assert "| 2 | 1 | 0.167 | 1.000 | 1.000 | iteration head |" in mean.scores_markdown  # invariance 1
    # the construction is exact: probability 1 of the right token at every answer position
    probs = result.probabilities
    assert probs["names"] == ["s1", "s2", "s3", "s4", "s5", "s6", "<eos>"] and probs["positions"] == list(range(8, 15))
    assert probs["right"] == ["1", "1", "0", "1", "1", "0", "<eos>"] == probs["top"]
    assert min(probs["p_right"]) > 0.999
    assert explorer.answer_probabilities(sel, "parity", "1 0 1 1 0 1") == probs
    bars = result.probability_figure.data[0]
    assert list(bars.x) == probs["names"] and set(bars.marker.color) == {"#16a34a"}  # all right: green


def test_attention_figure_is_interactive_with_layers_from_one():
    """Plotly heat maps: hovering names the query and the key (token and position) and the weight;
    the iteration diagonal (red) and the <eoi> column (dashed) are outlined on every panel."""
    sel = explorer.select(None, explorer.CONSTRUCTION, task="parity")
    fig = explorer.explore(sel, "parity", "1 0 1 1 0 1").figure
    maps = [t for t in fig.data if t.type == "heatmap"]
    assert [t.name for t in maps] == ["layer 1 head 1", "layer 2 head 1"]
    assert [a.text for a in fig.layout.annotations] == ["layer 1 head 1", "layer 2 head 1"]
    assert "layer 0" not in fig.to_json()
    template = maps[1].hovertemplate
    assert "query %{customdata[0]}" in template and "key %{customdata[1]}" in template and "weight %{z:.3f}" in template
    # query L+t = 6+3 (s2, which predicts s3) reads key t = 3 (x3 = 1) with weight 1
    assert list(maps[1].customdata[9][3]) == ["s2 = 1 (position 9)", "x3 = 1 (position 3)"]
    assert maps[1].z[9][3] == pytest.approx(1.0, abs=1e-3)
    red = [s for s in fig.layout.shapes if s.line.color == "red"]
    dashed = [s for s in fig.layout.shapes if s.line.dash == "dash"]
    assert len(red) == 2 * 6 and len(dashed) == 2  # L squares and one column per panel
    assert {(s.x0 + 0.5, s.y0 + 0.5) for s in red if s.xref == "x2"} == {(t, 6 + t) for t in range(1, 7)}


def test_input_length_follows_the_typed_input():
    assert explorer.input_length("1 0 1 1", "parity") == 4
    assert explorer.input_length("1011", "parity") == 4
    assert explorer.input_length("10 3", "polynomial") == 2
    assert explorer.input_length("1 2", "parity") is None


def test_patching_the_construction_finds_the_iteration_head():
    """Flipping x3 of a parity input changes s3 … s6. Copying the clean output of the iteration head
    (layer 2 head 1) into the corrupted run restores s3 (it reads x3 there) and nothing after it (the
    corrupted chain carries the corrupted state); layer 2's MLP, which writes every answer, restores all."""
    sel = explorer.select(None, explorer.CONSTRUCTION, task="parity")
    res = explorer.patch(sel, "parity", "1 0 1 1 0 1", 3)
    assert res["corrupted"] == "1 0 0 1 0 1" and res["names"] == ["s3", "s4", "s5", "s6"]
    assert res["components"] == ["L1H1", "L2H1", "L1MLP", "L2MLP"]
    restored = dict(zip(res["components"], np.array(res["restored"])))
    assert restored["L2H1"] == pytest.approx([1, 0, 0, 0], abs=1e-3)
    assert restored["L2MLP"] == pytest.approx([1, 1, 1, 1], abs=1e-3)
    assert restored["L1H1"] == pytest.approx([0, 0, 0, 0], abs=1e-3)
    assert min(res["ld_clean"]) > 0 > max(res["ld_corrupted"])
    assert "**L2MLP**" in explorer.patching_markdown(res)
    fig = explorer.patching_figure(res, sel.label)
    assert list(fig.data[0].y) == res["components"] and list(fig.data[0].x)[0] == "s3 (pos 10)"
    assert explorer.patch(sel, "parity", "1 0 1 1 0 1", 3, "0")["restored"] == res["restored"]


@pytest.mark.parametrize("args, message", [
    ((7,), "position 7 is out of range: the input has 6 values, choose 1 to 6"),
    (("x",), "position 'x' is not a whole number: choose 1 to 6"),
    ((3, "2"), "value '2' is not a parity input: its values are 0 1"),
    ((3, "1"), "x3 is already 1: choose another value"),
])
def test_patching_errors_are_messages(args, message):
    sel = explorer.select(None, explorer.CONSTRUCTION, task="parity")
    with pytest.raises(explorer.InputError, match=message):
        explorer.patch(sel, "parity", "1 0 1 1 0 1", *args)


def test_logit_attribution_of_the_construction():
    sel = explorer.select(None, explorer.CONSTRUCTION, task="parity")
    res = explorer.logit_attribution(sel, "parity", "1 0 1 1 0 1")
    assert res["terms"] == ["embeddings", "layer 1 attention", "layer 1 MLP", "layer 2 attention", "layer 2 MLP"]
    z = np.array(res["contributions"])
    assert z.sum(0) == pytest.approx(res["logit"], abs=1e-3)  # the terms add up to the logit
    assert z[4] == pytest.approx(res["logit"], abs=1e-3)  # the construction writes every answer with layer 2's MLP
    fig = explorer.attribution_figure(res, sel.label)
    assert list(fig.data[0].x)[0] == "s1 = 1" and list(fig.data[0].y) == res["terms"]


@needs_hub
def test_patching_and_attribution_of_a_released_model(catalogue):
    sel = explorer.select(catalogue, "iteration-head-polynomial", explorer.MAIN, "polynomial")
    res = explorer.logit_attribution(sel, "polynomial", "3 4 5 1 2 7 8 9")
    assert len(res["names"]) == 9  # s1 … s8, <eos>
    assert np.array(res["contributions"]).sum(0) == pytest.approx(res["logit"], abs=1e-3)
    assert "layer 2 MLP" in explorer.attribution_markdown(res)
    patched = explorer.patch(sel, "polynomial", "3 4 5 1 2 7 8 9", 2)
    assert patched["corrupted"] == "3 5 5 1 2 7 8 9" and patched["names"][0] == "s2"
    restored = dict(zip(patched["components"], np.array(patched["restored"])))
    assert restored["L2H1"][0] > 0.9  # the iteration head brings x2 back where s2 is written
    with pytest.raises(explorer.InputError, match="changing x4 changes no answer token of polynomial"):
        explorer.patch(sel, "polynomial", "3 4 5 1 2 7 8 9", 4)  # s3 = 0 absorbs x4


@needs_hub
def test_patching_a_model_that_cannot_tell_the_inputs_apart(catalogue):
    """Parity without chain of thought is at chance: its logit difference does not move, so every cell
    is blank (NaN) and the summary says why instead of naming a component."""
    sel = explorer.select(catalogue, "iteration-head-parity-nocot", explorer.MAIN, "parity")
    res = explorer.patch(sel, "parity", "1 0 1 1 0 1", 2)
    assert res["names"] == ["s6"]
    assert np.all(np.isnan(res["restored"])) and "does not tell them apart" in explorer.patching_markdown(res)
    one_layer = explorer.select(catalogue, "iteration-head-parity-1layer", explorer.MAIN, "parity")
    assert explorer.patch(one_layer, "parity", "1 0 1 1 0 1", 2)["components"] == ["L1H1", "L1MLP"]
    assert explorer.logit_attribution(one_layer, "parity", "1 0")["terms"] == ["embeddings", "layer 1 attention",
                                                                              "layer 1 MLP"]


@needs_hub
def test_card_of_a_released_model(catalogue):
    path, text = explorer.card(catalogue, "iteration-head-polynomial", lambda p: f"/file={p}")
    assert path == str(HUB / "iteration-head-polynomial" / "README.md") and not text.startswith("---")
    assert f"![attention_L16](/file={HUB / 'iteration-head-polynomial' / 'attention_L16.png'})" in text
    assert explorer.card(catalogue, explorer.CONSTRUCTION)[0] is None


def test_explore_rejects_an_input_longer_than_the_context():
    sel = explorer.select(None, explorer.CONSTRUCTION, task="copy")  # 64 positions: at most 30 values
    with pytest.raises(explorer.InputError, match="31 values but the model's context fits at most 30"):
        explorer.explore(sel, "copy", "1 " * 31)


# ------------------------------------------------------------------------------------ beyond training
@needs_hub
def test_explore_beyond_the_training_lengths_says_so_and_still_shows(catalogue):
    """The released models were trained on lengths 1-16 and fit 30 in their context: a length-20
    input is explored (chain, probabilities, maps) under a note that its positions were never trained."""
    sel = explorer.select(catalogue, "iteration-head-polynomial", explorer.MAIN, "polynomial")
    assert sel.train_max_length == 16 and explorer.training_lengths(sel) == range(1, 17)
    text = explorer.random_input("polynomial", 20, 30, seed=3)
    result = explorer.explore(sel, "polynomial", text)
    assert result.note.startswith("length 20 is beyond the training lengths 1-16: positions never trained")
    assert 'class="beyond"' in result.chain_html and "generated tokens right" in result.chain_html
    assert result.total == 21 and len(result.probabilities["names"]) == 21
    heat = [t for t in result.figure.data if t.type == "heatmap"]
    assert len(heat) == 2 and np.asarray(heat[0].z).shape == (43, 43)
    assert "beyond the training lengths" in result.figure.layout.title.text
    assert explorer.explore(sel, "polynomial", "3 4 5 1 2 7 8 9").note == ""  # length 8: trained
    construction = explorer.select(None, explorer.CONSTRUCTION, task="parity")
    assert explorer.beyond_training(construction, 25) == ""  # not trained: nothing to say


@needs_hub
def test_extrapolation_shows_where_the_released_model_breaks_down(catalogue):
    sel = explorer.select(catalogue, "iteration-head-polynomial", explorer.MAIN, "polynomial")
    res = explorer.extrapolate(sel, "polynomial", n=32)
    assert res["lengths"] == list(range(1, 31)) and res["trained"] == list(range(1, 17))
    assert res["beyond"] == list(range(17, 31))
    assert np.mean([res["accuracy"][L] for L in range(1, 17)]) > 0.95
    assert max(res["accuracy"][L] for L in res["beyond"]) < 0.5  # never trained: it breaks down at once
    assert res["iteration"][16] > 0.9 > res["iteration"][30] and res["head"][16] == "L2H1"
    summary = explorer.extrapolation_markdown(res)
    assert "Trained on lengths 1-16; beyond them, up to the context (17-30" in summary
    assert "first below 0.5 at length **17**" in summary
    fig = explorer.extrapolation_figure(res, sel.label)
    assert [list(t.x) for t in fig.data] == [res["lengths"]] * 2
    shade = fig.layout.shapes[0]
    assert (shade.x0, shade.x1) == (0.5, 16.5)
    nocot = explorer.select(catalogue, "iteration-head-parity-nocot", explorer.MAIN, "parity")
    res = explorer.extrapolate(nocot, "parity", n=8)
    assert res["lengths"][-1] == 60 and res["iteration"] == {} and len(explorer.extrapolation_figure(res, "").data) == 1
    construction = explorer.select(None, explorer.CONSTRUCTION, task="parity")
    res = explorer.extrapolate(construction, "parity", n=8)
    assert res["beyond"] == [] and set(res["accuracy"].values()) == {1.0}
    assert "training lengths are unknown" in explorer.extrapolation_markdown(res)


# ------------------------------------------------------------------------------------ emergence curve
@needs_hub
def test_emergence_curve_is_drawn_from_analysis_json_with_the_step_marked(catalogue):
    name = "iteration-head-polynomial"
    points = json.loads((HUB / name / "analysis.json").read_text())["training"]
    assert explorer.emergence_points(catalogue, name) == sorted(points, key=lambda p: p["step"])
    assert explorer.revision_step(catalogue, name, "step1000") == 1000
    final = json.loads((HUB / name / "training_info.json").read_text())["step"]
    assert explorer.revision_step(catalogue, name, explorer.MAIN) == final
    fig = explorer.emergence_figure(explorer.emergence_points(catalogue, name), name, 1000)
    assert [list(t.x) for t in fig.data] == [[p["step"] for p in points]] * 3
    assert list(fig.data[2].y) == [p["iteration_mean"] for p in points]
    line = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(line) == 1 and line[0].x0 == line[0].x1 == 1000
    assert any(a.text == "step 1000" for a in fig.layout.annotations)
    assert not explorer.emergence_figure([], "x").layout.shapes  # no step: no line
    assert explorer.emergence_points(catalogue, explorer.CONSTRUCTION) == []


# ------------------------------------------------------------------------------------ ablation
def test_ablating_the_iteration_head_of_the_construction_breaks_it():
    sel = explorer.select(None, explorer.CONSTRUCTION, task="parity")
    assert explorer.components(sel) == ["L1H1", "L2H1", "L1MLP", "L2MLP"]  # counted from 1, as in the paper
    assert explorer.default_component(explorer.components(sel)) == "L2H1"
    res = explorer.ablate(sel, "parity", "L2H1", "zero", "2-6", n=16)
    assert res["baseline_mean"] == 1.0 and res["ablated_mean"] < 0.5
    assert sorted(res["ablated"]) == [2, 3, 4, 5, 6]
    assert "1.000 →" in explorer.ablation_markdown(res)


@pytest.mark.parametrize("args, message", [
    (("L0H0", "zero", "1-4"), "component 'L0H0' is unknown: choose one of L1H1, L2H1, L1MLP, L2MLP "
                              r"\(layers and heads count from 1\)"),
    (("L2H1", "half", "1-4"), "mode 'half' is unknown"),
    (("L2H1", "zero", "1-40"), "length 31 does not fit the context"),
    (("L2H1", "zero", "four"), "write e.g. 1-16"),
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
    require("gradio", SPACE_EXTRA)
    spec = importlib.util.spec_from_file_location("explorer_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_hub
@pytest.mark.space
def test_handlers_show_messages_not_tracebacks(app, catalogue):
    message, *rest = app.show(catalogue, "iteration-head-parity", "main", "parity", "1 0 2", False)
    assert message.startswith("**Cannot do that:**") and "'2' is not parity input" in message
    message, chain, probabilities, figure, scores = app.show(catalogue, "iteration-head-parity", "main", "parity",
                                                             "1 0 1", False)
    assert "iteration-head-parity on parity" in message and "4/4 generated tokens right" in chain
    message, text = app.draw_input(catalogue, "iteration-head-parity", "main", "parity", 99)
    assert "out of range: the model's context fits 1 to 30" in message
    message, chain, *_ = app.show(catalogue, "iteration-head-parity", "main", "parity", "1 0 " * 10, False)
    assert "length 20 is beyond the training lengths 1-16: positions never trained" in message
    assert "generated tokens right" in chain


@needs_hub
@pytest.mark.space
def test_slider_names_its_step_and_marks_the_curve(app, catalogue):
    name = "iteration-head-polynomial"
    text, curve = app.step_at(catalogue, name, 1)  # step500, step1000, …, main
    assert text.startswith("Revision at **step 1000** (step1000; 2 of 5)")
    assert [s.x0 for s in curve.layout.shapes if s.type == "line"] == [1000]
    text, curve = app.step_at(catalogue, name, 4)
    assert text.startswith("Revision at **step 3750** (main; 5 of 5)")


def test_app_requirements_install_the_released_package():
    """The Space installs this repository's package and gradio 6, not a copy of the code."""
    lines = [l.strip() for l in (APP.parent / "requirements.txt").read_text().splitlines()]
    lines = [l for l in lines if l and not l.startswith("#")]
    assert any(l.startswith("gradio>=6") for l in lines)
    assert any(l.startswith("iteration-head @ git+") for l in lines)
    assert sorted(p.name for p in APP.parent.iterdir() if p.suffix == ".py") == ["app.py"]
    card = (APP.parent / "README.md").read_text()
    assert card.startswith("---\n") and "sdk: gradio" in card and "app_file: app.py" in card


# ------------------------------------------------------------------------------------ the API, over HTTP
API = {"/explore", "/random_input", "/patch", "/attribute", "/ablate", "/extrapolate", "/select_model",
       "/emergence_at_step", "/compare"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """The real app in a subprocess (``python app.py --models hub``, no --port: it takes the Space's
    ``GRADIO_SERVER_PORT``), driven through ``gradio_client``."""
    if not (HUB / "iteration-head-polynomial").is_dir():
        pytest.skip("hub/ is absent")
    Client = require("gradio_client", SPACE_EXTRA).Client

    env = {"GRADIO_SERVER_PORT": str(free_port()), "GRADIO_SERVER_NAME": "127.0.0.1"}
    with running_app(tmp_path_factory.mktemp("api") / "app.log", env=env) as url:
        yield Client(url, verbose=False)


def _plot(value) -> dict:
    """A gr.Plot output as the API returns it: the plotly figure's JSON."""
    assert value["type"] == "plotly"
    return json.loads(value["plot"])


@pytest.mark.integration
@needs_hub
@pytest.mark.space
def test_every_computation_is_a_named_api_endpoint(client):
    named = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert named == API


@pytest.mark.integration
@needs_hub
@pytest.mark.space
def test_api_explore_patch_attribute(client):
    model = "iteration-head-parity-from-polynomial"
    message, chain, probs, attention, scores = client.predict(model, "main", "parity", "1 0 1 1 0 1", False,
                                                              api_name="/explore")
    assert f"{model} on parity" in message and "7/7 generated tokens right" in chain
    bars = _plot(probs)["data"][0]
    assert bars["x"] == ["s1", "s2", "s3", "s4", "s5", "s6", "<eos>"] and min(bars["y"]) > 0.9
    maps = [t for t in _plot(attention)["data"] if t["type"] == "heatmap"]
    assert [t["name"] for t in maps] == ["layer 1 head 1", "layer 2 head 1"]
    assert "| 2 | 1 |" in scores and "iteration head" in scores
    message, _, _, _, _ = client.predict(model, "main", "parity", "1 0 2", False, api_name="/explore")
    assert "'2' is not parity input" in message

    summary, heat = client.predict(model, "main", "parity", "1 0 1 1 0 1", 3, "", api_name="/patch")
    assert "corrupted `1 0 0 1 0 1`" in summary
    data = _plot(heat)["data"][0]
    assert data["y"] == ["L1H1", "L2H1", "L1MLP", "L2MLP"] and data["x"][0] == "s3 (pos 10)"
    summary, _ = client.predict(model, "main", "parity", "1 0 1 1 0 1", 9, "", api_name="/patch")
    assert "position 9 is out of range" in summary

    summary, heat = client.predict(model, "main", "parity", "1 0 1 1 0 1", api_name="/attribute")
    data = _plot(heat)["data"][0]
    assert data["y"][-1] == "layer 2 MLP" and data["x"][0] == "s1 = 1"
    assert "the terms add up to the logit" in summary


@pytest.mark.integration
@needs_hub
@pytest.mark.space
def test_api_random_ablate_model_emergence_compare(client):
    message, text = client.predict("iteration-head-parity", "main", "parity", 5, api_name="/random_input")
    assert message == "" and len(text.split()) == 5
    summary, plot = client.predict("iteration-head-parity", "main", "parity", "L2H1", "zero", "2-6",
                                   api_name="/ablate")
    assert "L2H1 zero-ablated" in summary and len(_plot(plot)["data"]) == 2
    revision, task, typed, component, curve, slider, link, card = (
        v["value"] if isinstance(v, dict) and v.get("__type__") == "update" else v  # component updates
        for v in client.predict("iteration-head-polynomial", "1 0 1", api_name="/select_model"))
    assert revision == explorer.MAIN and task == "polynomial" and len(typed.split()) == 3
    assert task == "polynomial" and component == "L2H1"
    marked = [s for s in _plot(curve)["layout"]["shapes"] if s["type"] == "line"]
    assert [s["x0"] for s in marked] == [3750]  # the curve of analysis.json, marked at the final step
    assert "README.md" in link and "/gradio_api/file=" in link and "iteration-head-polynomial" in card
    label, attention = client.predict("iteration-head-polynomial", "polynomial", "3 4 5", 0,
                                      api_name="/emergence_at_step")
    assert label.startswith("**step500**") and _plot(attention)["data"]
    summary, plot = client.predict("iteration-head-polynomial", "main", "polynomial", api_name="/extrapolate")
    assert "Trained on lengths 1-16; beyond them" in summary and _plot(plot)["data"][0]["x"][-1] == 30
    out = client.predict("iteration-head-parity", "main", "parity", "1 1 0", False, explorer.CONSTRUCTION,
                         api_name="/compare")
    assert len(out) == 9 and "4/4 generated tokens right" in out[1] and "4/4 generated tokens right" in out[5]


@pytest.mark.integration
@needs_hub
@pytest.mark.space
def test_api_serves_the_model_cards(client):
    import urllib.request
    path = HUB / "iteration-head-polynomial" / "README.md"
    with urllib.request.urlopen(f"{client.src.rstrip('/')}/gradio_api/file={path}", timeout=30) as response:
        assert "iteration-head-polynomial" in response.read().decode()
