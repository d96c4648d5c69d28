"""Real-browser tests: the quick-start notebook in JupyterLab, and the HTML report, in headless Debian Chromium.

Needs /usr/bin/chromium (apt-get install chromium) and the playwright Python package (never `playwright install`).
The screenshot is written to artifacts/screenshots/quickstart.png (a CI artifact).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("TRTLAB_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
NOTEBOOK = "00-quickstart.ipynb"

if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set TRTLAB_CHROMIUM)",
                allow_module_level=True)
try:
    from playwright.sync_api import sync_playwright
except ImportError:
    pytest.skip("the playwright Python package is not installed (pip install playwright; no browser download "
                "needed)", allow_module_level=True)

# JupyterLab user settings for the test server: render every cell (no windowing) and no news/update toasts
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 with a token, serving a temporary copy of notebooks/."""
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "notebooks"
    shutil.copytree(ROOT / "notebooks", root, ignore=shutil.ignore_patterns(".trtlab", ".ipynb_checkpoints",
                                                                              "*.html"))
    settings = tmp / "settings"
    for rel, value in SETTINGS.items():
        path = settings / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "PYTHONUNBUFFERED": "1"}
    as_root = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []  # CI containers
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
         "--LabApp.extension_manager=readonly", "--ServerApp.open_browser=False", *as_root],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("JupyterLab did not start:\n" + (tmp / "server.log").read_text()[-3000:])
            time.sleep(0.25)
        yield {"base": base, "token": token, "root": root, "log": tmp / "server.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def run_all_cells(page, url: str) -> None:
    """Open the notebook at `url` in JupyterLab and start Run All Cells (accepting "Select Kernel" if it appears)."""
    page.goto(url)
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
    try:  # "Select Kernel" appears on first open with some settings
        page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").first.click(timeout=5_000)
    except Exception:
        pass
    page.wait_for_selector(".jp-NotebookPanel-toolbar", timeout=60_000)
    page.locator(".jp-Notebook").first.click()
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


def test_quickstart_notebook_renders_dashboard_and_charts(lab, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    run_all_cells(page, f"{lab['base']}/lab/tree/{NOTEBOOK}?token={lab['token']}")

    # the last cell writes the report: once it has an output, every cell ran
    page.wait_for_function(
        """() => { const cells = document.querySelectorAll('.jp-Notebook .jp-CodeCell');
                   const last = cells[cells.length - 1];
                   return last && last.querySelector('.jp-OutputArea-output') &&
                          last.innerText.includes('quickstart-report.html'); }""", timeout=240_000)
    stderr = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    assert stderr.count() == 0, "\n".join(stderr.all_inner_texts())

    panel = page.locator(".trtlab-panel")
    panel.wait_for(timeout=60_000)
    for tab in ("Build", "Outputs", "Layers", "Precision", "Monitor", "Log"):
        assert page.locator(".trtlab-panel .lm-TabBar-tabLabel", has_text=tab).count() == 1
    # a plotly chart with data inside the dashboard (the Layers tab is selected) and in the plain cells
    page.wait_for_function(
        """() => [...document.querySelectorAll('.trtlab-panel .js-plotly-plot')]
                 .some(e => e.data && e.data.length > 0 && e.data.some(t => (t.x || []).length > 0))""",
        timeout=120_000)
    n_plots = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
                                     .filter(e => e.data && e.data.length > 0).length""")
    assert n_plots >= 3  # latency histogram, layer timings cell, dashboard charts
    bars = page.evaluate("""() => [...document.querySelectorAll('.trtlab-panel .js-plotly-plot')]
                                   .map(e => (e.data || []).filter(t => t.type === 'bar')
                                             .reduce((n, t) => n + (t.x || []).length, 0))""")
    assert max(bars) >= 10, bars  # resnet18's slowest layers as bars

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.keyboard.press("Control+b")  # hide the file browser: more room for the dashboard
    panel.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)  # let plotly finish its transition before the picture
    page.screenshot(path=str(SCREENSHOTS / "quickstart.png"))
    assert (SCREENSHOTS / "quickstart.png").stat().st_size > 20_000

    # the dashboard answers clicks: the Build tab builds a new engine through the kernel
    page.locator(".trtlab-panel .lm-TabBar-tabLabel", has_text="Build").first.click()
    build_tab = page.locator(".trtlab-build-tab")
    build_tab.locator(".widget-text", has=page.locator("label", has_text="batch")).locator("input").fill("2")
    build_tab.locator("button", has_text=re.compile(r"^\s*Build\s*$")).click()
    page.wait_for_function("""() => [...document.querySelectorAll('.trtlab-build-tab .trtlab-ok')]
                                    .some(e => e.innerText.includes('batch=2'))""", timeout=120_000)
    assert "cache miss" in build_tab.locator(".trtlab-ok").inner_text()
    panel.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(SCREENSHOTS / "quickstart-build.png"))

    # the Monitor tab's chart keeps receiving samples from the kernel
    page.locator(".trtlab-panel .lm-TabBar-tabLabel", has_text="Monitor").first.click()
    count = """() => { const e = document.querySelector('.trtlab-monitor-tab .js-plotly-plot');
                       return e && e.data && e.data.length ? (e.data[0].x || []).length : 0; }"""
    page.wait_for_function(f"() => ({count})() >= 2", timeout=60_000)
    first = page.evaluate(count)
    page.wait_for_function(f"() => ({count})() > {first}", timeout=60_000)

    # the Precision tab shows the notebook's fp16 comparison
    page.locator(".trtlab-panel .lm-TabBar-tabLabel", has_text="Precision").first.click()
    page.wait_for_function("""() => [...document.querySelectorAll('.trtlab-precision-tab .js-plotly-plot')]
                                    .filter(e => e.data && e.data.length > 0).length >= 3""", timeout=60_000)
    assert "tensors compared" in page.locator(".trtlab-precision-tab").inner_text()
    panel.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)
    page.screenshot(path=str(SCREENSHOTS / "quickstart-precision.png"))

    # clicking a tensor's bar pins its producing layer to FP32 and offers a rebuild
    bar = page.locator(".trtlab-precision-tab .js-plotly-plot").first.locator(".bars .point path")
    heights = [b["height"] if b else 0 for b in (bar.nth(i).bounding_box() for i in range(bar.count()))]
    bar.nth(max(range(len(heights)), key=heights.__getitem__)).click(force=True)
    page.wait_for_function("() => document.querySelector('.trtlab-pin-note').innerText.includes('pinned')",
                           timeout=60_000)
    assert "to FP32" in page.locator(".trtlab-pin-note").inner_text()
    assert page.locator(".trtlab-precision-tab button", has_text="Rebuild with pins").is_visible()
    widget_errors = [e for e in console_errors if "widget" in e.lower() or "plotly" in e.lower()]
    assert not widget_errors, widget_errors
    page.close()


def test_report_opens_offline_and_shows_its_charts(browser, tmp_path):
    from trtlab import Session
    from conftest import conv_model
    s = Session(conv_model(), workspace=tmp_path / "ws")
    eng = s.build("fp32", batch=2)
    s.benchmark(eng, iterations=20, warmup=1)
    s.profile_layers(eng, runs=3, warmup=1)
    path = s.report(tmp_path / "report.html")

    page = browser.new_page()
    requested: list[str] = []

    def block_network(route):
        requested.append(route.request.url)
        route.abort()
    page.route("http*://**/*", block_network)
    page.goto(path.as_uri())
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length > 0", timeout=60_000)
    counts = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
                                     .map(e => (e.data || []).length)""")
    assert len(counts) == 4 and all(c > 0 for c in counts), counts  # histogram, timeline, layers, op types
    assert page.locator(".js-plotly-plot .main-svg").count() >= 4  # actually drawn, not just data
    assert requested == []
    page.close()


@pytest.mark.corpus
def test_report_colours_layers_by_effective_precision(browser, tmp_path):
    """A real fp16 engine on the CPU provider: the report says it is not computed in fp16 and its layer chart is
    coloured by what each layer computes in, with a legend."""
    sys.path.insert(0, str(ROOT / "tests"))
    from corpus import get
    from trtlab import Session
    m = get("ppocr_cls")
    m.fetch()
    s = Session(str(m.path), workspace=tmp_path / "ws")
    s.profile_layers(s.build("fp16", shapes=m.shapes()), runs=1, data=m.feeds()[0])
    s.profile_layers(s.build("fp16", shapes=m.shapes(), fp16_mode="faithful"), runs=1, data=m.feeds()[0])
    path = s.report(tmp_path / "report.html")
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.route("http*://**/*", lambda route: route.abort())
    page.goto(path.as_uri())
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .legend').length > 0",
                           timeout=60_000)
    warning = page.locator("p.warning", has_text="NOT computed in fp16").first
    assert warning.is_visible()
    legends = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
        .map(e => [...e.querySelectorAll('.legend .legendtext')].map(t => t.textContent))""")
    # the native engine's top layers: fp32 kernels keeping fp32 results; the faithful one's: fp32 math, fp16 storage
    known = {"fp32", "fp16", "fp32, stored fp16", "cast", "reformat", "int"}
    coloured = [set(x) for x in legends if x and set(x) <= known]
    assert any("fp32" in x and "fp32, stored fp16" not in x for x in coloured), legends
    assert any("fp32, stored fp16" in x for x in coloured), legends
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    warning.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "effective-precision-report.png"))
    page.close()


def test_hostile_model_runs_no_script_in_jupyterlab(lab, browser):
    """A model whose every name is an XSS payload: results, charts and the dashboard render it as text."""
    import nbformat
    import onnx
    from test_escaping import IMG, LINK, hostile_model
    model = lab["root"] / f"{IMG}.onnx"  # the file name is the model's name: an <img> with an error handler
    onnx.save(hostile_model(), model)
    cells = [
        # the canary: this server runs handlers in a trusted cell's HTML, so not running ours means escaped
        "from IPython.display import HTML, display\n"
        "display(HTML('<img src=\"data:,\" onerror=\"window.__canary = 1\">'))",
        f"from trtlab import Session, plots\ns = Session({model.name!r}, workspace='.trtlab-hostile')\n"
        "eng = s.build('fp32', batch=1)\ns",
        "prof = s.profile_layers(eng, runs=2, warmup=1)\nprof",
        "bench = s.benchmark(eng, iterations=20, warmup=1)\nbench",
        "cmp = s.compare('fp32', 'fp16')\ncmp",
        "s.fp16_range_report()",
        "plots.layer_timings(prof.frame)",
        "p = s.panel(monitor=False)\np.add_engine(eng)\np.layers.add_profile(prof)\np.build.bench.show(bench)\n"
        "p.precision.show(cmp)\np.outputs.set(s.model.activation_names()[:3])\n"
        "p.build.pins.set(s.model.node_names[:3])\np",
        "print('hostile notebook' + ' done')",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(lab["root"] / "hostile.ipynb"))

    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    # a workspace of its own: the quick-start notebook, open in the default one, stays out of this page
    run_all_cells(page, f"{lab['base']}/lab/workspaces/hostile/tree/hostile.ipynb?token={lab['token']}")
    page.wait_for_function("""() => [...document.querySelectorAll('.jp-OutputArea-output')]
                                    .some(e => e.innerText.includes('hostile notebook done'))""", timeout=240_000)
    stderr = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    assert stderr.count() == 0, "\n".join(stderr.all_inner_texts())
    page.locator(".trtlab-panel").wait_for(timeout=60_000)
    page.wait_for_function("""() => [...document.querySelectorAll('.js-plotly-plot')]
                                    .filter(e => e.querySelector('.main-svg')).length >= 2""", timeout=120_000)
    page.wait_for_function("() => window.__canary === 1", timeout=30_000)
    page.wait_for_timeout(1000)  # any image error handler from a name would have fired by now
    assert page.evaluate("() => window.__pwned") is None
    assert dialogs == []
    assert page.evaluate("""() => document.querySelectorAll('a[href*="evil.example"]').length""") == 0
    text = page.evaluate("() => document.body.innerText")
    assert f"Per-layer profile {IMG}" in text  # the LayerProfile heading, the name shown as text
    # ipywidgets show the names as text too: the layer picker's options and the outputs tab's checkboxes
    options = page.evaluate("""() => [...document.querySelectorAll('.trtlab-layer-picker option')]
                                     .map(o => o.textContent.replace(/\\u00a0/g, ' '))""")
    assert any(o.startswith(IMG) for o in options), options
    assert any(o.startswith(LINK) for o in options), options
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator(".trtlab-panel").evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(300)
    page.screenshot(path=str(SCREENSHOTS / "hostile-jupyterlab.png"))
    page.close()
