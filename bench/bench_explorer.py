"""Time one interaction of every view of the explorer Space (input -> chain + probabilities +
attention maps; patching; logit attribution; ablation).

    python bench/bench_explorer.py                      # in-process, then in the browser
    python bench/bench_explorer.py --no-browser --repeats 20

In-process: ``modeling.explorer.explore`` on a released model (chain by greedy ``generate``, the
probability of every answer token, attention of every head, head scores, the plotly figures) plus
the JSON encoding of the figures (what Gradio sends), for one input and for the mean over many
inputs, at two lengths; then ``patch``, ``logit_attribution`` (each with its figure's JSON) and
``ablate`` (lengths 1-16, 64 inputs each) at L = 16. In the browser: the app runs on localhost (as
``make explore`` starts it) and headless Chromium clicks "run" with a new input; the time is from
the click until the page shows the new chain and the attention map of the new input is drawn.
Medians of ``--repeats``; ratios are from this run.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request


import torch  # noqa: E402

from modeling import explorer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "hub", "iteration-head-explorer", "app.py")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def in_process(models: str, name: str, repeats: int) -> dict:
    sel = explorer.select(explorer.find_catalogue(models), name, explorer.MAIN, "polynomial")
    out = {}
    for L in (8, 16):
        for mean in (False, True):
            times = []
            for i in range(repeats):
                text = explorer.random_input("polynomial", L, 30, seed=i)
                start = time.perf_counter()
                result = explorer.explore(sel, "polynomial", text, mean)
                result.figure.to_json(), result.probability_figure.to_json()
                times.append(time.perf_counter() - start)
            out[(L, mean)] = statistics.median(times)
    views = {"patch": lambda text: explorer.patching_figure(explorer.patch(sel, "polynomial", text, 1), "").to_json(),
             "attribute": lambda text: explorer.attribution_figure(
                 explorer.logit_attribution(sel, "polynomial", text), "").to_json(),
             "ablate": lambda text: explorer.ablation_figure(
                 explorer.ablate(sel, "polynomial", "L2H1", "zero", "1-16"), "").to_json()}
    for view, fn in views.items():
        times = []
        for i in range(repeats if view != "ablate" else min(repeats, 3)):
            text = explorer.random_input("polynomial", 16, 30, seed=i)
            start = time.perf_counter()
            try:
                fn(text)
            except explorer.InputError:  # x1 changes no state (an absorbing value): not timed
                continue
            times.append(time.perf_counter() - start)
        out[view] = statistics.median(times)
    return out


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_browser(models: str, repeats: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    port = _port()
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen([sys.executable, APP, "--models", models, "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, times = f"http://127.0.0.1:{port}/", []
    try:
        for _ in range(180):
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.wait_for_selector("#chain .verdict")
            for i in range(repeats):
                text = explorer.random_input("polynomial", 12 + i % 4, 30, seed=100 + i)
                page.locator("#input textarea, #input input").first.fill(text)
                start = time.perf_counter()
                page.click("#run")
                page.wait_for_function(  # the keys of the first query's row name the new input
                    """(text) => {
                        const chain = document.querySelector('#chain').innerText;
                        const p = document.querySelector('#attention .js-plotly-plot');
                        if (!chain.includes(text + ' <eoi>') || !p || !p.data
                            || !p.querySelector('.main-svg')) return false;
                        const n = text.split(' ').length, keys = p.data[0].customdata[0].slice(1, n + 1);
                        return keys.map(c => c[1].split(' = ')[1].split(' (')[0]).join(' ') === text; }""", arg=text)
                times.append(time.perf_counter() - start)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
    return times


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=os.path.join(ROOT, "hub"), help="released model folders")
    p.add_argument("--model", default="iteration-head-polynomial")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (the app's server uses 1 here)")
    p.add_argument("--no-browser", action="store_true", help="skip the browser measurement")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = in_process(args.models, args.model, args.repeats)
    print(f"{args.model}, {args.threads} torch thread(s), median of {args.repeats}: explore() + figures' JSON")
    for L in (8, 16):
        one, mean = res[(L, False)], res[(L, True)]
        print(f"  L={L:2d}: one input {one * 1000:6.0f} ms   mean over {explorer.MEAN_N} inputs {mean * 1000:6.0f} ms"
              f"   ({mean / one:.2f}x)")
    for view in ("patch", "attribute", "ablate"):
        print(f"  {view} (L=16{', lengths 1-16 x 64 inputs' if view == 'ablate' else ''}): {res[view] * 1000:6.0f} ms")
    if not args.no_browser:
        times = in_browser(args.models, args.repeats)
        print(f"  in the browser (click run -> new chain and attention map drawn, L=12-15): median "
              f"{statistics.median(times) * 1000:.0f} ms (min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}); "
              f"{statistics.median(times) / res[(16, False)]:.2f}x the in-process L=16 time")


if __name__ == "__main__":
    main()
