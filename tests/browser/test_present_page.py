"""The presentation page (`make present`): notebooks/present.ipynb served by Voila.

Voila runs on 127.0.0.1 on a free port with a random token and NST_QUICK=1, in a temporary
folder that holds a copy of the notebook (the kernel's working folder: nothing is written
into notebooks/), with its own runtime, config, data and IPython folders. Headless Chromium
(Debian's, as for the JupyterLab test; see conftest.py) opens the page at a projector's
size, 1280 x 800: the explorer is there with Run and the result on the first screen, no
code is, nothing failed. Run makes a run (quick mode: 48 px, 4 evaluations) and the result
and the gallery change. Screenshots (the page as the room sees it) and Voila's log go to
test-artifacts/browser/ (present_*).
"""

from __future__ import annotations

import re
import shutil
import socket
import sys
from pathlib import Path

import pytest
from explorer_dom import explorer_js
from jupyter_servers import Server

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "present.ipynb"
ARTIFACTS = REPO / "test-artifacts" / "browser"
PROJECTOR = {"width": 1280, "height": 800}

# timeouts: generous, the machine may be shared and slow
OPEN_MS = 240_000  # the page is sent once the notebook has run (kernel start, VGG19 load)
RUN_MS = 90_000
UI_MS = 30_000

# what would show code: a code cell's input area, prompts, an editor, highlighted source
# (a Markdown cell's text sits in an input area of its own: that one is the title)
CODE = (".jp-CodeCell .jp-Cell-inputWrapper, .jp-CodeCell .jp-InputArea, .jp-InputPrompt, "
        ".jp-OutputPrompt, .jp-CodeMirrorEditor, .cm-editor, .CodeMirror, .jp-CodeCell "
        ".highlight")
ERRORS = ('[data-mime-type="application/vnd.jupyter.stderr"], '
          '[data-mime-type="application/vnd.jupyter.error"]')

# the explorer anywhere on the page: it has no notebook around it (explorer_dom.py)
_js = explorer_js()


class VoilaServer(Server):
    """``voila present.ipynb`` on a free local port with a token, as `make present` runs it."""

    name = "voila"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "voila", NOTEBOOK.name, "--no-browser",
                "--Voila.ip=127.0.0.1", f"--port={self.port}", "--Voila.port_retries=0",
                f"--token={self.token}"]

    def ready(self) -> bool:
        """The port accepts connections (asking for the page would run the notebook)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                return True
        except OSError:
            return False


@pytest.fixture(scope="module")
def voila(tmp_path_factory):
    home = tmp_path_factory.mktemp("voila")
    root = home / "notebooks"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    server = VoilaServer(root, home)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(server.log_path, ARTIFACTS / "present_voila.log")


@pytest.fixture(scope="module")
def page(browser_context, voila):
    """The presentation page, open at a projector's size once the notebook has run."""
    page = browser_context.new_page()
    page.set_default_timeout(UI_MS)
    page.set_viewport_size(PROJECTOR)
    # the page asks a CDN for Font Awesome (the buttons' icons); the test machine may have
    # no network, so those requests fail at once instead of waiting
    page.route("https://cdn.jsdelivr.net/**", lambda route: route.abort())
    try:
        page.goto(voila.url, timeout=OPEN_MS, wait_until="commit")
        try:
            page.wait_for_function(_js("""
              try {  // the widgets render piece by piece
                return !!explorer() && !!runButton() &&
                       resultImage().getBoundingClientRect().width > 0;
              } catch (e) { return false; }"""), timeout=OPEN_MS, polling=500)
        finally:
            page.screenshot(path=ARTIFACTS / "present_01_page.png")
        yield page
    finally:
        page.close()


@pytest.fixture(autouse=True)
def _screenshot_on_failure(request, page):
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        page.screenshot(path=ARTIFACTS / f"failed-{request.node.name}.png", full_page=True)


def _result(page) -> dict:
    """The result picture (src, SHA-256, natural width, on screen), the status line, Run."""
    return page.evaluate(_js("""
      return (async () => {
        const img = resultImage();
        const bytes = await (await fetch(img.src)).arrayBuffer();
        const hash = [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))]
          .map(b => b.toString(16).padStart(2, '0')).join('');
        return {src: img.src, hash, width: img.naturalWidth,
                shown: img.getBoundingClientRect().width > 0, status: statusLine(),
                runEnabled: !runButton().disabled, gallery: galleryRuns()};
      })();"""))


def test_the_page_shows_the_explorer_and_no_code(page):
    body = page.locator("body").inner_text()
    assert "Neural style transfer" in page.locator("h1").first.inner_text()
    visible_code = [e.evaluate("e => e.className") for e in page.locator(CODE).all()
                    if e.is_visible()]
    assert not visible_code, visible_code
    for source in ("import nst_lib", "nst.widgets.Explorer(", "quick_mode()", "make present"):
        assert source not in body, source  # the code cell's text is not on the page
    errors = [e.inner_text() for e in page.locator(ERRORS).all()]
    assert not errors and "Traceback" not in body, errors
    state = _result(page)
    assert state["status"].startswith("Press Run") and state["runEnabled"], state
    assert state["shown"] and state["gallery"] == 0, state
    # on the projector's first screen: Run and the result, nothing wider than the screen
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert page.evaluate(_js("""
      const inside = e => { const r = e.getBoundingClientRect();
        return r.width > 0 && r.left >= 0 && r.top >= 0 &&
               r.right <= window.innerWidth && r.bottom <= window.innerHeight; };
      return inside(runButton()) && inside(resultImage());"""))


def test_run_changes_the_result_and_fills_the_gallery(page):
    before = _result(page)
    page.evaluate(_js("""
      window.__nstRunDisabled = false;
      new MutationObserver(() => { if (runButton().disabled) window.__nstRunDisabled = true; })
        .observe(runButton(), {attributes: true, attributeFilter: ['disabled']});"""))
    page.locator("button.jupyter-button", has_text=re.compile(r"^\s*Run\s*$")).click()
    page.wait_for_function(_js("""
      return window.__nstRunDisabled && !runButton().disabled &&
             /^(steps|stopped|converged|time|diverged|Error)/.test(statusLine() || '');"""),
        timeout=RUN_MS, polling=250)
    after = _result(page)
    page.screenshot(path=ARTIFACTS / "present_02_after_run.png")
    gallery = page.locator(".widget-vbox", has=page.locator(".widget-html",
                                                            has_text="gallery: every run")).last
    gallery.scroll_into_view_if_needed()
    page.screenshot(path=ARTIFACTS / "present_03_gallery.png")
    assert after["status"].startswith("steps"), after  # a complete run, no error
    assert after["hash"] != before["hash"] and after["shown"], (before, after)
    assert after["width"] == 48, after  # quick mode's size
    assert after["gallery"] == 1 and after["runEnabled"], after
