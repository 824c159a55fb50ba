"""Iteration-head explorer: watch the iteration head work and emerge, in the browser.

    python hub/iteration-head-explorer/app.py --models hub          # or: make explore
    # then open http://127.0.0.1:7860 (--host/--port default to GRADIO_SERVER_NAME/GRADIO_SERVER_PORT)

Pick a released model (and a ``step{N}`` revision), a task and an input; see the generated chain of
thought, the probability of every answer token, the attention of every head and its scores;
patch activations between a clean and a corrupted input; attribute the right token's logit to each
layer; ablate a head or an MLP; measure accuracy on the lengths beyond training; follow the emergence of
the head along the training run; compare two models; compare with the hand-built construction.

This file only lays the page out. Everything it shows is computed by the released code
(``modeling.explorer`` on top of ``modeling.analysis``, ``modeling.evaluation`` and
``datasets_builders.tasks``), which the Space installs from ``requirements.txt``. Every computation
is a named API endpoint (``/explore``, ``/random_input``, ``/patch``, ``/attribute``, ``/ablate``,
``/extrapolate``, ``/select_model``, ``/emergence_at_step``, ``/compare``): ``gradio_client.Client(url).view_api()``.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry calls
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the models are local folders

import gradio as gr  # noqa: E402

from datasets_builders import tasks  # noqa: E402
from modeling import analysis, explorer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = "iteration-head-polynomial"  # the paper's clean iteration head
CSS = """
.chain .tok { font-family: ui-monospace, monospace; padding: 1px 4px; border-radius: 4px; margin: 1px; }
.chain .prompt { background: #e5e7eb; color: #111; }
.chain .right { background: #bbf7d0; color: #14532d; }
.chain .wrong { background: #fecaca; color: #7f1d1d; font-weight: bold; }
.verdict { margin-top: 6px; font-size: 0.9em; }
.beyond { margin-bottom: 6px; padding: 4px 8px; border-left: 4px solid #d97706; background: #fef3c7; color: #78350f; }
.prose table { display: block; overflow-x: auto; }
.prose th, .prose td { white-space: nowrap; word-break: keep-all; overflow-wrap: normal; hyphens: none; }
"""
THEME = gr.themes.Base(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
LEGEND = ("Layers and heads are numbered from 1, as in the paper. **Red squares**: the iteration diagonal "
          "(the query at position L+t, the token that predicts `s_t`, → the key `x_t` at position t); "
          "**dashed white box**: the `<eoi>` "
          "column (the chain-of-thought queries' attention to `<eoi>`). Hover a cell for the query, the key and "
          "the weight; drag to zoom, double-click to zoom out.")


def _message(err: Exception) -> str:
    return f"**Cannot do that:** {err}"


def _file_url(path: str) -> str:
    return f"/gradio_api/file={os.path.abspath(path)}"


def card_files(catalogue: explorer.Catalogue) -> list[str]:
    """What the page links to: every model's README.md and the figures it shows."""
    return [os.path.join(folder, f) for folder in catalogue.models.values() for f in sorted(os.listdir(folder))
            if f == "README.md" or f.endswith(".png")]


def card_markdown(catalogue, name) -> tuple[str, str]:
    """The link line under the model picker, and the card itself (rendered in an accordion)."""
    path, text = explorer.card(catalogue, name, _file_url)
    link = (f"Model card: [{os.path.relpath(path, os.path.dirname(catalogue.root))}]({_file_url(path)}) "
            f"(Markdown; rendered in *model card* below)") if path else text
    return link, text


def build_app(catalogue: explorer.Catalogue) -> gr.Blocks:
    """The page: controls on top, the chain and its probabilities, then a tab per view."""
    first = DEFAULT_MODEL if DEFAULT_MODEL in catalogue.models else catalogue.choices[0]
    chosen = explorer.select(catalogue, first)
    first_task = chosen.trained_task or "parity"
    first_input = explorer.fit_input("3 4 5 1 2 7 8 9", first_task, analysis.max_length(chosen.model, chosen.cot), 0)
    link, text_of_card = card_markdown(catalogue, first)
    with gr.Blocks(title="Iteration head explorer") as app:
        gr.Markdown("# Iteration head explorer\nThe mechanism of *Iteration Head: A Mechanistic Study of "
                    "Chain-of-Thought* (NeurIPS 2024) in the released models. Inputs are values separated "
                    "by spaces; `<task>` and `<eoi>` are added for you.")
        with gr.Row():
            model = gr.Dropdown(catalogue.choices, value=first, label="model", elem_id="model", min_width=340)
            revision = gr.Dropdown(catalogue.revision_choices(first), value=explorer.MAIN, label="revision",
                                   elem_id="revision", min_width=140)
            # The paper's tasks and one of each family; a task file's path can be typed (allow_custom_value).
            task = gr.Dropdown(list(tasks.TASK_NAMES + tasks.BUILTIN_TASKS), value=first_task, label="task",
                               elem_id="task", allow_custom_value=True, min_width=160)
        card_link = gr.Markdown(link, elem_id="card-link")
        with gr.Accordion("model card", open=False):
            card = gr.Markdown(text_of_card, elem_id="card")
        with gr.Row():
            text = gr.Textbox(first_input, label="input x_1 … x_L", elem_id="input", scale=3, min_width=240)
            length = gr.Number(len(first_input.split()), label="random length", precision=0, elem_id="length",
                               scale=1, min_width=110)
            draw = gr.Button("random input", elem_id="random", scale=1, min_width=110)
            mean = gr.Checkbox(False, label="mean over many inputs of this length", elem_id="mean", scale=1)
            run = gr.Button("run", variant="primary", elem_id="run", scale=1, min_width=80)
        message = gr.Markdown(elem_id="message")
        chain = gr.HTML(elem_id="chain")
        probabilities = gr.Plot(elem_id="probabilities", show_label=False)
        with gr.Tabs():
            with gr.Tab("attention"):
                gr.Markdown(LEGEND, elem_id="legend")
                figure = gr.Plot(elem_id="attention", show_label=False)
                scores = gr.Markdown(elem_id="scores")
            _patching_tab(catalogue, model, revision, task, text)
            _attribution_tab(catalogue, model, revision, task, text)
            ablation = _ablation_tab(catalogue, model, revision, task, explorer.components(chosen))
            _extrapolation_tab(catalogue, model, revision, task)
            emergence = _emergence_tab(catalogue, model, task, text, first)
            _compare_tab(catalogue, model, revision, task, text, mean)

        inputs = [model, revision, task, text, mean]
        outputs = [message, chain, probabilities, figure, scores]
        run.click(lambda *a: show(catalogue, *a), inputs, outputs, api_name="explore")
        for trigger in (text.submit, mean.change, revision.change):
            trigger(lambda *a: show(catalogue, *a), inputs, outputs, api_visibility="private")
        text.change(follow_length, [text, task], [length], api_visibility="private", queue=False,
                    show_progress="hidden")
        task.change(lambda *a: fit_to_task(catalogue, *a), [model, revision, task, text], [text],
                    api_visibility="private").then(lambda *a: show(catalogue, *a), inputs, outputs,
                                                   api_visibility="private")
        draw.click(lambda *a: draw_input(catalogue, *a), [model, revision, task, length], [message, text],
                   api_name="random_input").then(lambda *a: show(catalogue, *a), inputs, outputs,
                                                 api_visibility="private")
        model.change(lambda name, typed: model_changed(catalogue, name, typed), [model, text],
                     [revision, task, text, ablation, *emergence, card_link, card], api_name="select_model").then(
            lambda *a: show(catalogue, *a), inputs, outputs, api_visibility="private")
        app.load(lambda *a: show(catalogue, *a), inputs, outputs, api_visibility="private")
    return app


def show(catalogue, name, revision, task, text, mean):
    """Input -> message, chain, probabilities of the right tokens, attention figure, head scores."""
    start = time.perf_counter()
    try:
        selection = explorer.select(catalogue, name, revision, task)
        result = explorer.explore(selection, task, text, bool(mean))
    except ValueError as err:
        return _message(err), gr.update(), gr.update(), gr.update(), gr.update()
    took = f"{selection.label} on {task}: {time.perf_counter() - start:.2f} s"
    if result.note:
        took += f"  \n**Note:** {result.note}"
    return took, result.chain_html, result.probability_figure, result.figure, result.scores_markdown


def follow_length(text, task):
    """The "random length" box follows the number of values typed."""
    n = explorer.input_length(text, task)
    return n if n else gr.update()


def draw_input(catalogue, name, revision, task, length):
    try:
        selection = explorer.select(catalogue, name, revision, task)
        return "", explorer.random_input(task, length, analysis.max_length(selection.model, selection.cot))
    except ValueError as err:
        return _message(err), gr.update()


def fit_to_task(catalogue, name, revision, task, typed):
    """The typed input, or a random one of as many values when it is not an input of the new task."""
    try:
        selection = explorer.select(catalogue, name, revision, task)
        return explorer.fit_input(typed, task, analysis.max_length(selection.model, selection.cot))
    except ValueError:
        return gr.update()  # the next step says what is wrong


def model_changed(catalogue, name, typed):
    """A new model: its revisions, its task (and an input of it), its components, its emergence
    plot and revisions, its card."""
    selection = explorer.select(catalogue, name, explorer.MAIN, "parity")
    task = selection.trained_task or "parity"
    _, steps = explorer.emergence(catalogue, name)
    parts = explorer.components(selection)
    longest = analysis.max_length(selection.model, selection.cot)
    link, text = card_markdown(catalogue, name)
    return (gr.Dropdown(catalogue.revision_choices(name), value=explorer.MAIN), gr.Dropdown(value=task),
            explorer.fit_input(typed, task, longest),
            gr.Dropdown(parts, value=explorer.default_component(parts)),
            emergence_curve(catalogue, name, steps[-1] if steps else explorer.MAIN), _slider(steps), link, text)


def _patching_tab(catalogue, model, revision, task, text):
    with gr.Tab("patching"):
        gr.Markdown("The corrupted input is the input with one value changed (the next value of the task when "
                    "*value* is empty: parity flips the bit). Each head's output and each MLP is copied from the "
                    "clean run into the corrupted run (all positions, teacher forced on each row's own chain); "
                    "a cell is the fraction of the clean logit difference `logit(clean token) − logit(corrupted "
                    "token)` it restores at that answer position (1 = all of it, 0 = none).")
        with gr.Row():
            position = gr.Number(1, label="position t of x_t to corrupt", precision=0, elem_id="patch-position")
            value = gr.Textbox("", label="value (empty: the next one)", elem_id="patch-value")
            go = gr.Button("patch", variant="primary", elem_id="patch")
        summary = gr.Markdown(elem_id="patch-summary")
        plot = gr.Plot(elem_id="patch-plot", show_label=False)

    def run(name, rev, task_name, typed, pos, val):
        try:
            selection = explorer.select(catalogue, name, rev, task_name)
            result = explorer.patch(selection, task_name, typed, pos, val)
        except ValueError as err:
            return _message(err), gr.update()
        return explorer.patching_markdown(result), explorer.patching_figure(result, selection.label)

    go.click(run, [model, revision, task, text, position, value], [summary, plot], api_name="patch")


def _attribution_tab(catalogue, model, revision, task, text):
    with gr.Tab("logit attribution"):
        gr.Markdown("Direct logit attribution (a logit lens per component): the final residual stream is the sum "
                    "of the embeddings and of what each layer's attention and MLP add; through the final norm (its "
                    "scale frozen at this input) each term's share of the right token's logit, at every answer "
                    "position (teacher forced). The column adds up to the logit.")
        go = gr.Button("attribute", variant="primary", elem_id="attribute")
        summary = gr.Markdown(elem_id="attribution-summary")
        plot = gr.Plot(elem_id="attribution-plot", show_label=False)

    def run(name, rev, task_name, typed):
        try:
            selection = explorer.select(catalogue, name, rev, task_name)
            result = explorer.logit_attribution(selection, task_name, typed)
        except ValueError as err:
            return _message(err), gr.update()
        return explorer.attribution_markdown(result), explorer.attribution_figure(result, selection.label)

    go.click(run, [model, revision, task, text], [summary, plot], api_name="attribute")


def _ablation_tab(catalogue, model, revision, task, parts):
    with gr.Tab("ablation"):
        with gr.Row():
            component = gr.Dropdown(parts, value=explorer.default_component(parts), elem_id="component",
                                    label="component (layer L, head H, or MLP; from 1)")
            mode = gr.Radio(list(analysis.ABLATION_MODES), value="zero", label="ablation", elem_id="mode")
            lengths = gr.Textbox("1-16", label="lengths", elem_id="lengths")
            go = gr.Button("ablate", variant="primary", elem_id="ablate")
        summary = gr.Markdown(elem_id="ablation-summary")
        plot = gr.Plot(elem_id="ablation-plot", show_label=False)

    def run(name, rev, task_name, part, how, spec):
        try:
            selection = explorer.select(catalogue, name, rev, task_name)
            result = explorer.ablate(selection, task_name, part, how, spec)
        except ValueError as err:
            return _message(err), gr.update()
        return explorer.ablation_markdown(result), explorer.ablation_figure(result, selection.label)

    go.click(run, [model, revision, task, component, mode, lengths], [summary, plot], api_name="ablate")
    return component


def _extrapolation_tab(catalogue, model, revision, task):
    with gr.Tab("beyond training"):
        gr.Markdown("Teacher-forced sequence accuracy at every input length that fits the model's context (64 "
                    "random inputs each), the training lengths shaded, and the iteration score `L+t → t` of the "
                    "best head at each length: where the head, and the model, break down past what they were "
                    "trained on.")
        go = gr.Button("accuracy per length", variant="primary", elem_id="extrapolate")
        summary = gr.Markdown(elem_id="extrapolation-summary")
        plot = gr.Plot(elem_id="extrapolation-plot", show_label=False)

    def run(name, rev, task_name):
        try:
            selection = explorer.select(catalogue, name, rev, task_name)
            result = explorer.extrapolate(selection, task_name)
        except ValueError as err:
            return _message(err), gr.update()
        return explorer.extrapolation_markdown(result), explorer.extrapolation_figure(result, selection.label)

    go.click(run, [model, revision, task], [summary, plot], api_name="extrapolate")


def emergence_curve(catalogue, name, revision):
    """The emergence curve (from the folder's analysis.json), a vertical line at ``revision``'s step."""
    return explorer.emergence_figure(explorer.emergence_points(catalogue, name), name,
                                     explorer.revision_step(catalogue, name, revision))


def step_at(catalogue, name, index):
    """Where the slider is: the text under it ("step 1000") and the curve marked there."""
    _, revisions = explorer.emergence(catalogue, name)
    if not revisions:
        return "This model has no snapshots.", emergence_curve(catalogue, name, None)
    rev = revisions[max(0, min(int(index or 0), len(revisions) - 1))]
    step = explorer.revision_step(catalogue, name, rev)
    where = f"step {step}" if step is not None else rev
    return (f"Revision at **{where}** ({rev}; {revisions.index(rev) + 1} of {len(revisions)})",
            emergence_curve(catalogue, name, rev))


def _slider(steps: list[str]) -> gr.Slider:
    """A slider over the revisions (its positions are their indices; the label names them)."""
    names = ", ".join(f"{i} = {s}" for i, s in enumerate(steps)) or "this model has no snapshots"
    return gr.Slider(0, max(len(steps) - 1, 1), value=max(len(steps) - 1, 0), step=1, elem_id="step",
                     label=f"revision along training ({names})")


def emergence_at_step(catalogue, name, task_name, typed, index):
    """The attention at the ``index``-th revision along training (final last)."""
    _, revisions = explorer.emergence(catalogue, name)
    if not revisions:
        return "This model has no training history in its folder.", gr.update()
    rev = revisions[max(0, min(int(index), len(revisions) - 1))]
    try:
        result = explorer.explore(explorer.select(catalogue, name, rev, task_name), task_name, typed)
    except ValueError as err:
        return _message(err), gr.update()
    return f"**{rev}**: {result.right}/{result.total} generated tokens right", result.figure


def _emergence_tab(catalogue, model, task, text, first):
    _, steps = explorer.emergence(catalogue, first)
    with gr.Tab("emergence"):
        curve = gr.Plot(emergence_curve(catalogue, first, steps[-1] if steps else explorer.MAIN),
                        elem_id="emergence", show_label=False)
        slider = _slider(steps)
        where = gr.Markdown(step_at(catalogue, first, len(steps) - 1)[0] if steps else "", elem_id="step-at")
        at_step = gr.Markdown(elem_id="step-label")
        figure = gr.Plot(elem_id="attention-at-step", show_label=False)

    slider.release(lambda *a: emergence_at_step(catalogue, *a), [model, task, text, slider], [at_step, figure],
                   api_name="emergence_at_step")
    slider.change(lambda *a: step_at(catalogue, *a), [model, slider], [where, curve], api_visibility="private",
                  show_progress="hidden")
    return curve, slider


def _compare_tab(catalogue, model, revision, task, text, mean):
    with gr.Tab("compare"):
        with gr.Row():  # the construction solves every task: a reference for any model and input
            model_b = gr.Dropdown(catalogue.choices, value=explorer.CONSTRUCTION, label="second model (same task "
                                  "and input)", elem_id="model-b", min_width=340)
            go = gr.Button("compare on the same input", variant="primary", elem_id="compare")
        with gr.Row():
            with gr.Column():
                chain_a, probs_a = gr.HTML(elem_id="chain-a"), gr.Plot(show_label=False)
                fig_a, scores_a = gr.Plot(show_label=False), gr.Markdown()
            with gr.Column():
                chain_b, probs_b = gr.HTML(elem_id="chain-b"), gr.Plot(show_label=False)
                fig_b, scores_b = gr.Plot(show_label=False, elem_id="plot-b"), gr.Markdown()
        message = gr.Markdown()

    def run(name_a, rev_a, task_name, typed, averaged, name_b):
        a = show(catalogue, name_a, rev_a, task_name, typed, averaged)
        b = show(catalogue, name_b, explorer.MAIN, task_name, typed, averaged)
        return f"{a[0]}  \n{b[0]}", *a[1:], *b[1:]

    go.click(run, [model, revision, task, text, mean, model_b],
             [message, chain_a, probs_a, fig_a, scores_a, chain_b, probs_b, fig_b, scores_b], api_name="compare")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="The iteration-head explorer (a Gradio app) on released models.")
    parser.add_argument("--models", default=os.path.dirname(HERE),
                        help="folder of released model folders (default: the folder holding this app, e.g. hub)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on (default: $GRADIO_SERVER_NAME, else 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT") or 7860),
                        help="port (default: $GRADIO_SERVER_PORT, else 7860)")
    args = parser.parse_args(argv)
    try:
        catalogue = explorer.find_catalogue(args.models)
    except ValueError as err:
        parser.error(str(err))
    build_app(catalogue).launch(server_name=args.host, server_port=args.port, theme=THEME, css=CSS,
                                ssr_mode=False, footer_links=[], allowed_paths=card_files(catalogue))


if __name__ == "__main__":
    main()
