"""Time one interaction of the explorer Space: input -> generated chain + attention maps.

    python bench/bench_explorer.py                      # in-process, then in the browser
    python bench/bench_explorer.py --no-browser --repeats 20

In-process: ``modeling.explorer.explore`` on a released model (chain by greedy ``generate``,
attention of every head, head scores, the matplotlib figure) plus the PNG encoding of the figure
(what Gradio does before sending it), for one input and for the mean over many inputs, at two
lengths. In the browser: the app runs on localhost (as ``make explore`` starts it) and headless
Chromium clicks "run" with a new input; the time is from the click until the page shows the new
chain and the new attention image has loaded. Medians of ``--repeats``; ratios are from this run.
"""

from __future__ import annotations

import argparse
import io
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
                result.figure.savefig(io.BytesIO(), format="png")
                times.append(time.perf_counter() - start)
            out[(L, mean)] = statistics.median(times)
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
                old = page.locator("#attention img").first.get_attribute("src")
                page.locator("#input textarea, #input input").first.fill(text)
                start = time.perf_counter()
                page.click("#run")
                page.wait_for_function(
                    """([text, old]) => {
                        const chain = document.querySelector('#chain').innerText;
                        const img = document.querySelector('#attention img');
                        return chain.includes(text + ' <eoi>') && img && img.src !== old && img.complete
                               && img.naturalWidth > 0; }""", arg=[text, old])
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
    print(f"{args.model}, {args.threads} torch thread(s), median of {args.repeats}: explore() + PNG encoding")
    for L in (8, 16):
        one, mean = res[(L, False)], res[(L, True)]
        print(f"  L={L:2d}: one input {one * 1000:6.0f} ms   mean over {explorer.MEAN_N} inputs {mean * 1000:6.0f} ms"
              f"   ({mean / one:.2f}x)")
    if not args.no_browser:
        times = in_browser(args.models, args.repeats)
        print(f"  in the browser (click run -> new chain and attention image shown, L=12-15): median "
              f"{statistics.median(times) * 1000:.0f} ms (min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}); "
              f"{statistics.median(times) / res[(16, False)]:.2f}x the in-process L=16 time")


if __name__ == "__main__":
    main()
