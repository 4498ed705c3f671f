"""The explorers where learners use them: JupyterLab in a real browser (headless Chromium driven by Playwright).

For each notebook with a widget: open it in JupyterLab, run all cells, move every control of each explorer (the
slider, each dropdown) and assert that the explorer's figure is redrawn, that no cell shows an error and that the
browser console shows no errors. The notebook runs from a copy in a temporary folder, so nothing is saved over the
committed one.

Needs Chromium (Debian: `apt-get install chromium`; .ci/run installs it where it can) and the `playwright` package
(dev extras); Playwright's own browser download is not used. Skipped, saying which is missing, without them.
"""

from __future__ import annotations

import json
import os
import re
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
NOTEBOOKS = ROOT / "notebooks"
EXPLORER_CALL = re.compile(r"mp\.\w+_explorer\(")
TOKEN = "minprune-browser-test"
RUN_ALL_SECONDS = 600  # FAST mode runs each notebook in about a minute; a busy CI machine takes longer
REDRAW_SECONDS = 180


def _chromium() -> str | None:
    for name in (os.environ.get("MINPRUNE_CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        found = name and shutil.which(name)
        if found:
            return found
    return None


def notebooks_with_widgets() -> list[Path]:
    """The notebooks whose code opens an explorer widget (found from their sources in notebooks/src/)."""
    sources = sorted((NOTEBOOKS / "src").glob("[0-9]*.py"))
    return [NOTEBOOKS / f"{src.stem}.ipynb" for src in sources if EXPLORER_CALL.search(src.read_text())]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, server: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer at {url} within {seconds} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def chromium_path() -> str:
    pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (pip install -e '.[dev]')")
    path = _chromium()
    if path is None:
        pytest.skip("the browser test needs Chromium: apt-get install chromium (or set MINPRUNE_CHROMIUM)")
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory, chromium_path):
    """A JupyterLab server on a free local port, serving a temporary folder, with its own settings and workspaces."""
    root = tmp_path_factory.mktemp("lab")
    port, log = _free_port(), root / "server.log"
    env = dict(os.environ, MINPRUNE_FAST="1", MINPRUNE_DEVICE="cpu",
               JUPYTER_CONFIG_DIR=str(root / ".jupyter"), JUPYTER_RUNTIME_DIR=str(root / ".runtime"))
    env.pop("MPLBACKEND", None)  # CI sets Agg; a learner's kernel uses the inline backend, which draws the figures
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={root}"]
    with log.open("w") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/api/status?token={TOKEN}", server, log)
        yield root, f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium_path, args=["--no-sandbox"])
        yield launched
        launched.close()


class Console:
    """What the page reports: console errors, uncaught exceptions, and requests that failed."""

    def __init__(self, page, base_url: str):
        self.errors: list[str] = []
        self.failed_requests: list[str] = []
        self.base_url = base_url
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("requestfailed", lambda r: self.failed_requests.append(r.url))

    def unexpected(self) -> list[str]:
        """Console errors other than the offline machine failing to fetch an image from the internet (the
        notebooks' 'Open in Colab' badge): any failed request to the local server counts."""
        local = [url for url in self.failed_requests if url.startswith(self.base_url)]
        others = [e for e in self.errors if not e.startswith("Failed to load resource")]
        resource_errors = len(self.errors) - len(others)
        external = len(self.failed_requests) - len(local)
        return others + [f"failed request {url}" for url in local] + (
            [f"{resource_errors} resources failed to load, {external} of them external"]
            if resource_errors > external else [])


def _run_all_cells(page) -> None:
    page.click(".lm-MenuBar-item:has-text('Run')")
    page.click("li.lm-Menu-item[data-command='runmenu:run-all']")
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
                .map(e => e.textContent.trim());
            return prompts.length > 0 && prompts.every(t => /^\\[\\d+\\]:$/.test(t));
        }""",
        timeout=RUN_ALL_SECONDS * 1000, polling=1000)


def _figure(explorer) -> str:
    """The explorer's current figure (the PNG's data URL in its output area)."""
    image = explorer.locator(".widget-output img").first
    image.wait_for(timeout=REDRAW_SECONDS * 1000)
    return image.get_attribute("src")


def _wait_redrawn(page, explorer, before: str, what: str) -> str:
    deadline = time.monotonic() + REDRAW_SECONDS
    while time.monotonic() < deadline:
        images = explorer.locator(".widget-output img")
        if images.count() and (now := images.first.get_attribute("src")) and now != before:
            return now
        page.wait_for_timeout(500)
    raise AssertionError(f"the figure did not change within {REDRAW_SECONDS} s after {what}")


def _move_slider(page, explorer) -> str:
    """Type a new value into the slider's readout (the same event as letting the handle go); returns it."""
    readout = explorer.locator(".widget-slider .widget-readout").first
    handle = explorer.locator(".widget-slider .noUi-handle").first
    low, high = float(handle.get_attribute("aria-valuemin")), float(handle.get_attribute("aria-valuemax"))
    value = round(low + 0.5 * (high - low), 2)
    if abs(value - float(handle.get_attribute("aria-valuenow"))) < 1e-6:
        value = round(low + 0.25 * (high - low), 2)
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(f"{value:.2f}")
    page.keyboard.press("Enter")
    return f"{value:.2f}"


@pytest.mark.parametrize("notebook", notebooks_with_widgets(), ids=lambda p: p.stem)
def test_each_control_of_each_explorer_redraws_its_figure(notebook, lab, browser):
    root, base_url = lab
    shutil.copy(notebook, root / notebook.name)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    console = Console(page, base_url)
    try:
        page.goto(f"{base_url}/lab/tree/{notebook.name}?token={TOKEN}")
        page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=120_000)
        page.wait_for_timeout(2000)  # the kernel starts
        _run_all_cells(page)

        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
        assert errors.count() == 0, f"{notebook.name}: a cell raised:\n{errors.first.inner_text()[:2000]}"
        explorers = page.locator(".widget-vbox:has(.widget-slider)")
        assert explorers.count() >= 1, f"{notebook.name}: no explorer widget was displayed"
        for i in range(explorers.count()):
            explorer = explorers.nth(i)
            explorer.scroll_into_view_if_needed()
            figure = _figure(explorer)
            value = _move_slider(page, explorer)
            figure = _wait_redrawn(page, explorer, figure, f"the slider moved to {value}")
            selects = explorer.locator("select")
            assert selects.count() >= 1, f"{notebook.name}: the explorer has no dropdown"
            for j in range(selects.count()):
                select = selects.nth(j)
                options = select.locator("option").evaluate_all("os => os.map(o => o.value)")
                other = next(o for o in options if o != select.input_value())
                select.select_option(other)
                figure = _wait_redrawn(page, explorer, figure, f"dropdown {j + 1} set to {other!r}")
        assert not console.unexpected(), f"{notebook.name}: the browser console shows {console.unexpected()}"
    finally:
        page.close()
        _shut_down_kernels(base_url)


def _shut_down_kernels(base_url: str) -> None:
    """Stop the notebook's kernel (the next notebook gets the machine's cores)."""
    with urllib.request.urlopen(f"{base_url}/api/kernels?token={TOKEN}", timeout=10) as answer:
        kernels = json.load(answer)
    for kernel in kernels:
        request = urllib.request.Request(f"{base_url}/api/kernels/{kernel['id']}?token={TOKEN}", method="DELETE")
        urllib.request.urlopen(request, timeout=30)


class _FakePage:
    def __init__(self):
        self.handlers = {}

    def on(self, event, handler):
        self.handlers[event] = handler


class _Message:
    def __init__(self, type_, text):
        self.type, self.text = type_, text


class _Request:
    def __init__(self, url):
        self.url = url


def test_the_console_check_forgives_only_failed_external_resources():
    page = _FakePage()
    console = Console(page, "http://127.0.0.1:1234")
    page.handlers["requestfailed"](_Request("https://colab.research.google.com/assets/colab-badge.svg"))
    page.handlers["console"](_Message("error", "Failed to load resource: net::ERR_NAME_NOT_RESOLVED"))
    page.handlers["console"](_Message("warning", "a warning is not an error"))
    assert console.unexpected() == []
    page.handlers["requestfailed"](_Request("http://127.0.0.1:1234/static/lab/main.js"))
    page.handlers["console"](_Message("error", "Failed to load resource: the server responded with a status of 404"))
    assert console.unexpected() == [
        "failed request http://127.0.0.1:1234/static/lab/main.js",
        "2 resources failed to load, 1 of them external",
    ]
    page.handlers["console"](_Message("error", "Failed to load resource: 500"))
    assert console.unexpected()[-1] == "3 resources failed to load, 1 of them external"
    page.handlers["pageerror"](RuntimeError("widget model not found"))
    assert "uncaught: widget model not found" in console.unexpected()


def test_the_notebooks_with_widgets_are_found():
    assert {p.stem[:2] for p in notebooks_with_widgets()} >= {"03", "06"}


def test_the_offline_html_page_says_where_the_widget_was_and_shows_the_snapshot(tmp_path, browser):
    """`make html`'s page of notebook 03, opened with every network request refused (an offline reader)."""
    from minprune.course.site import write_site

    src = tmp_path / "notebooks"
    src.mkdir()
    shutil.copy(NOTEBOOKS / "03_weight_pruning.ipynb", src)
    (page_file,) = write_site(src, tmp_path / "site")
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    refused = []
    page.route("http*://**", lambda route: (refused.append(route.request.url), route.abort()))
    try:
        page.goto(page_file.as_uri())
        note = page.locator(".minprune-widget-note")
        assert note.count() == 1, "the page of notebook 03 should show one widget note"
        note.scroll_into_view_if_needed()
        assert note.is_visible() and "has no kernel" in note.inner_text()
        snapshot = page.locator(".minprune-widget-note >> xpath=following::img[1]")
        assert snapshot.evaluate("img => img.complete && img.naturalWidth > 0"), "the static snapshot did not render"
        picture = page.screenshot(path=str(tmp_path / "offline_page.png"))
        assert len(picture) > 10_000  # a rendered page, not a blank one
        assert not [u for u in refused if "unpkg" in u or "html-manager" in u], "the page asks for a widget renderer"
    finally:
        page.close()
