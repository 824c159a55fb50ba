"""The explorer Space in a real browser: the app runs on localhost in a subprocess (the one command
of its README) and headless Chromium (Debian's ``chromium`` package) drives it through Playwright.

Skipped when gradio, Playwright or the browser is missing, unless ``ITERATION_HEAD_REQUIRE_ALL=1``
(``.ci/run`` sets it: CI installs them, so a missing one is a failure there; ``helpers.require``).
The screenshot goes to the test's folder; ``EXPLORER_SCREENSHOT=docs/explorer.png`` also writes it
there (the README's).
"""

import os
import re
import shutil

import pytest

from helpers import HUB, ROOT, free_port, require, running_app

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 60_000  # one wait; the shared CPU of a CI machine can be slow
SPACE_EXTRA = "the 'space' extra is not installed (pip install -e '.[space]')"
pytestmark = [pytest.mark.space, pytest.mark.hub, pytest.mark.integration]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python hub/iteration-head-explorer/app.py --models hub --port P``; yields its URL."""
    if not (HUB / "iteration-head-polynomial").is_dir():
        pytest.skip("hub/ is absent")
    require("gradio", SPACE_EXTRA)
    with running_app(tmp_path_factory.mktemp("space") / "app.log", ("--port", str(free_port())), timeout=90) as url:
        yield url


@pytest.fixture(scope="module")
def page(server):
    require("playwright", SPACE_EXTRA)
    require(CHROMIUM, f"no browser at {CHROMIUM} (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(server)
        yield page
        browser.close()


def _choose(page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def _wait_text(page, selector: str, pattern: str) -> str:
    """Wait until the element's text matches ``pattern``; return the text."""
    page.wait_for_function("([s, p]) => { const e = document.querySelector(s); "
                           "return e && new RegExp(p).test(e.innerText); }", arg=[selector, pattern])
    return page.inner_text(selector)


def _plotly_shown(page, selector: str, kind: str = "heatmap") -> int:
    """Wait until a plotly figure with a trace of ``kind`` is drawn under ``selector``; return its width."""
    page.wait_for_function("([s, k]) => { const p = document.querySelector(s + ' .js-plotly-plot'); "
                           "return p && p.data && p.data.some(t => t.type === k) && p.querySelector('.main-svg'); }",
                           arg=[selector, kind])
    return page.locator(f"{selector} .js-plotly-plot").first.evaluate("p => p.getBoundingClientRect().width")


def _hover_cell(page, selector: str, panel: int, column: int, row: int) -> str:
    """Move the mouse to the centre of cell (row, column) of heat map ``panel`` (found from the
    subplot's drag area and its axis ranges); return plotly's hover text."""
    x, y = page.locator(f"{selector} .js-plotly-plot").first.evaluate(
        """(p, [i, c, r]) => { const t = p._fullData[i], L = p._fullLayout;
            const xa = L[t.xaxis.replace('x', 'xaxis')], ya = L[t.yaxis.replace('y', 'yaxis')];
            const d = p.querySelector(`.nsewdrag[data-subplot="${t.xaxis}${t.yaxis}"]`).getBoundingClientRect();
            return [d.left + (c - xa.range[0]) / (xa.range[1] - xa.range[0]) * d.width,
                    d.top + (r - ya.range[1]) / (ya.range[0] - ya.range[1]) * d.height]; }""",
        [panel, column, row])
    page.mouse.move(x + 3, y + 3)
    page.mouse.move(x, y)
    page.wait_for_selector(f"{selector} .hovertext")
    return page.locator(f"{selector} .hovertext").first.evaluate("g => g.textContent")  # an SVG group


def _type(page, elem_id: str, text: str) -> None:
    box = page.locator(f"#{elem_id} textarea, #{elem_id} input").first
    box.fill(text)


def test_page_renders_with_the_default_model(page):
    assert "Iteration head explorer" in page.inner_text("h1")
    chain = _wait_text(page, "#chain", r"generated tokens right")
    assert chain.startswith("<polynomial>") and "all right" in chain  # the polynomial model, its default input


def test_choosing_a_model_and_an_input_shows_the_chain_and_the_attention(page, tmp_path):
    _choose(page, "model", "iteration-head-parity-from-polynomial")
    _wait_text(page, "#message", "iteration-head-parity-from-polynomial on parity")  # the task follows the model
    _type(page, "input", "1 0 1 1 0 1")
    page.click("#run")
    chain = _wait_text(page, "#chain", r"<parity> 1 0 1 1 0 1 <eoi>")
    assert "1 1 0 1 1 0 <eos>" in chain and "7/7 generated tokens right" in chain  # running parity
    assert _plotly_shown(page, "#attention") > 300
    scores = _wait_text(page, "#scores", "layer")
    rows = page.eval_on_selector_all("#scores tr", "trs => trs.map(r => [...r.cells].map(c => c.innerText.trim()))")
    assert rows[0][:2] == ["layer", "head"] and rows[2][:2] == ["2", "1"] and "iteration head" in rows[2][-1]
    assert "Red squares" in page.inner_text("#legend") and "dashed white box" in page.inner_text("#legend")
    # every header of the table stays on one line (no mid-word wrap)
    lines = page.eval_on_selector_all("#scores th", """ths => ths.map(th => { const r = document.createRange();
        r.selectNodeContents(th); const tops = [...r.getClientRects()].map(x => x.top).sort((a, b) => a - b);
        return 1 + tops.filter((t, i) => i > 0 && t - tops[i - 1] > 8).length; })""")
    assert lines == [1] * len(rows[0]), lines
    # hover: query s2 (position 9, which predicts s3) on key x3 (position 3) of layer 2 head 1
    page.locator("#attention").scroll_into_view_if_needed()
    hover = _hover_cell(page, "#attention", 1, 3, 9)
    assert "query s2 = 1 (position 9)" in hover and "key x3 = 1 (position 3)" in hover and "weight" in hover
    assert "layer 2 head 1" in hover
    assert _plotly_shown(page, "#probabilities", "bar") > 300
    bars = page.locator("#probabilities .js-plotly-plot").evaluate("p => p.data[0].x")
    assert bars == ["s1", "s2", "s3", "s4", "s5", "s6", "<eos>"]
    assert page.input_value("#length input") == "6"  # the random length follows the typed input
    shot = tmp_path / "explorer.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("EXPLORER_SCREENSHOT"):
        shutil.copyfile(shot, ROOT / os.environ["EXPLORER_SCREENSHOT"])


def test_a_bad_input_gets_a_message(page):
    _type(page, "input", "1 0 2")
    page.click("#run")
    assert "'2' is not parity input" in _wait_text(page, "#message", "Cannot do that")


def test_random_input_and_the_mean_over_many_inputs(page):
    _type(page, "length", "5")
    page.click("#random")
    chain = _wait_text(page, "#chain", r"^<parity>( [01]){5} <eoi>")  # a fresh parity input of length 5
    assert "6/6 generated tokens right" in chain
    page.locator("#mean input").check()
    scores = _wait_text(page, "#scores", "mean over")
    assert "mean over 32 distinct random inputs" in scores  # all 2^5 inputs of length 5
    page.locator("#mean input").uncheck()
    _wait_text(page, "#scores", "on this input")


def test_an_input_beyond_the_training_lengths_and_accuracy_per_length(page):
    _type(page, "input", "1 0 " * 10)  # length 20: trained on 1-16, the context fits 30
    page.click("#run")
    note = _wait_text(page, "#message", "beyond the training lengths")
    assert "length 20 is beyond the training lengths 1-16: positions never trained" in note
    assert "generated tokens right" in _wait_text(page, "#chain", "generated tokens right")
    assert _plotly_shown(page, "#attention") > 300
    page.get_by_role("tab", name="beyond training").click()
    page.click("#extrapolate")
    assert "Trained on lengths 1-16; beyond them" in _wait_text(page, "#extrapolation-summary", "Trained on")
    assert _plotly_shown(page, "#extrapolation-plot", "scatter") > 300
    page.get_by_role("tab", name="attention").click()
    _type(page, "input", "1 0 1 1 0")  # back to a trained length for the next tests
    page.click("#run")
    _wait_text(page, "#chain", "6/6 generated tokens right")


def test_ablating_the_iteration_head_drops_the_accuracy(page):
    page.get_by_role("tab", name="ablation").click()
    _type(page, "lengths", "1-8")
    page.click("#ablate")
    summary = _wait_text(page, "#ablation-summary", "→")
    before, after = (float(v) for v in re.search(r"([\d.]+) → ([\d.]+)", summary).groups())
    assert "L2H1 zero-ablated" in summary and before > 0.95 and after < 0.5
    assert _plotly_shown(page, "#ablation-plot", "scatter") > 300


def test_patching_and_logit_attribution(page):
    _type(page, "input", "1 0 1 1 0 1")
    page.get_by_role("tab", name="patching").click()
    _type(page, "patch-position", "3")
    page.click("#patch")
    summary = _wait_text(page, "#patch-summary", "corrupted")
    assert "corrupted `1 0 0 1 0 1`" in summary or "corrupted 1 0 0 1 0 1" in summary
    assert _plotly_shown(page, "#patch-plot") > 300
    components = page.locator("#patch-plot .js-plotly-plot").evaluate("p => p.data[0].y")
    assert components == ["L1H1", "L2H1", "L1MLP", "L2MLP"]
    page.get_by_role("tab", name="logit attribution").click()
    page.click("#attribute")
    assert "add up to the logit" in _wait_text(page, "#attribution-summary", "logit")
    assert _plotly_shown(page, "#attribution-plot") > 300
    terms = page.locator("#attribution-plot .js-plotly-plot").evaluate("p => p.data[0].y")
    assert terms == ["embeddings", "layer 1 attention", "layer 1 MLP", "layer 2 attention", "layer 2 MLP"]


def test_emergence_slider_redraws_the_attention_at_a_revision(page):
    _choose(page, "model", "iteration-head-polynomial")
    _wait_text(page, "#message", "iteration-head-polynomial on polynomial")
    page.get_by_role("tab", name="emergence").click()
    assert _plotly_shown(page, "#emergence", "scatter") > 300  # the curves, from analysis.json
    assert "step 3750" in _wait_text(page, "#step-at", "step 3750")  # the slider starts at the final weights
    page.locator("#step input[type=range]").click(position={"x": 2, "y": 4})  # the earliest snapshot
    label = _wait_text(page, "#step-label", r"step\d+: \d+/\d+ generated tokens right")
    assert label.startswith("step500")  # the first revision of the polynomial run
    assert "Revision at step 500" in _wait_text(page, "#step-at", "step 500")
    line = page.locator("#emergence .js-plotly-plot").evaluate("p => p.layout.shapes.map(s => s.x0)")
    assert line == [500]  # the curve is marked where the slider is
    assert _plotly_shown(page, "#attention-at-step") > 300


def test_compare_two_models_on_the_same_input(page):
    page.get_by_role("tab", name="compare").click()
    page.click("#compare")
    a = _wait_text(page, "#chain-a", "generated tokens right")
    b = _wait_text(page, "#chain-b", "generated tokens right")
    assert a.split("\n")[0].split("<eoi>")[0] == b.split("\n")[0].split("<eoi>")[0]  # the same input
    assert "all right" in b  # the hand-built construction, the default second model
    assert _plotly_shown(page, "#plot-b") > 300


def test_model_card_link(page):
    href = page.locator("#card-link a").first.get_attribute("href")
    assert "/gradio_api/file=" in href and href.endswith("iteration-head-polynomial/README.md")
    response = page.request.get(page.url.rstrip("/") + href)
    assert response.ok and "iteration-head-polynomial" in response.text()


def test_a_narrow_window_keeps_the_model_name_whole(page):
    _choose(page, "model", "iteration-head-parity-from-polynomial")  # the longest name
    _wait_text(page, "#message", "iteration-head-parity-from-polynomial on parity")
    for width in (420, 800, 1400):
        page.set_viewport_size({"width": width, "height": 1000})
        page.wait_for_timeout(300)
        shown = page.locator("#model input").evaluate("i => [i.value, i.scrollWidth, i.clientWidth]")
        assert shown[1] <= shown[2] + 1, f"the model name is cut at {width} px: {shown}"
    page.set_viewport_size({"width": 1400, "height": 1300})
