"""The real UI: notebook 4 in JupyterLab, driven in headless Chromium by Playwright.

One JupyterLab server and one browser page for the module (see conftest.py). The fixture
``notebook`` opens notebooks/04_style_transfer.ipynb (a temporary copy), runs all cells from
the Run menu in quick mode and waits until the kernel is idle; the tests then use the
interactive explorer the notebook displays, as a student would: slider, checkboxes, Run,
Stop, a preset, two runs side by side, Save and a download. Screenshots go to
test-artifacts/browser/.

The tests depend on each other's order (one page, one kernel): run them as a module.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from explorer_dom import explorer_js

pytestmark = pytest.mark.browser

NOTEBOOK = "04_style_transfer.ipynb"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
ERROR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]'
TRACEBACK = re.compile(r"Traceback|^\w*(Error|Exception)\b", re.M)

# timeouts (ms): generous, the machine may be shared and slow
OPEN_MS = 120_000
RUN_ALL_MS = 240_000
RUN_MS = 90_000
UI_MS = 30_000

# the notebook's kernel is connected and idle (status bar "Python 3 (ipykernel) | Idle")
KERNEL_IDLE = """() => {
  const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
  return !!indicator && indicator.dataset.status === 'idle' &&
    [...document.querySelectorAll('.jp-StatusBar-TextItem')].some(
      e => /\\S \\| Idle$/.test(e.textContent.trim()) && !e.textContent.includes('No Kernel'));
}"""

# the explorer inside the notebook's outputs (tests/browser/explorer_dom.py)
_js = explorer_js(".jp-OutputArea ")


def _state(page) -> dict:
    """What the explorer shows now: the result image (src, SHA-256, size), the progress
    bar (width, classes), the status line and whether Run is enabled."""
    return page.evaluate(_js("""
      return (async () => {
        const img = resultImage(), bar = progressBar();
        let hash = null;
        if (img.src) {
          const bytes = await (await fetch(img.src)).arrayBuffer();
          hash = [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))]
            .map(b => b.toString(16).padStart(2, '0')).join('');
        }
        return {src: img.src, hash, width: img.naturalWidth, height: img.naturalHeight,
                shown: img.getBoundingClientRect().width > 0,
                bar: bar.style.width, barClass: bar.className, status: statusLine(),
                runEnabled: !runButton().disabled};
      })();"""))


def _watch_progress(page) -> None:
    """From now on, record every width the explorer's progress bar takes, and whether the
    Run button was disabled (a run started) or enabled again."""
    page.evaluate(_js("""
      window.__nstWidths = [progressBar().style.width];
      window.__nstRunToggled = false;
      if (window.__nstObserver) window.__nstObserver.disconnect();
      window.__nstObserver = new MutationObserver(records => {
        for (const r of records) {
          if (r.target === runButton() && r.attributeName === 'disabled') {
            window.__nstRunToggled = true;
          } else if (r.target === progressBar()) {
            window.__nstWidths.push(progressBar().style.width);
          }
        }
      });
      window.__nstObserver.observe(explorer(), {attributes: true, subtree: true,
                                                attributeFilter: ['style', 'disabled']});"""))


def _wait_run_ended(page, timeout: int = RUN_MS) -> None:
    """Wait until a run started since _watch_progress (Run was disabled, the bar went
    below 100%) has ended (Run enabled again, the status line says how it ended)."""
    page.wait_for_function(_js("""
      const widths = window.__nstWidths || [];
      return window.__nstRunToggled && widths.some(w => w !== '100%') &&
             runButton() && !runButton().disabled &&
             /^(steps|stopped|converged|time|diverged|Error)/.test(statusLine() || '');"""),
        timeout=timeout)


def _set_text(field, value: str) -> None:
    """Type a value into a text field and press Enter, as a student would."""
    box = field.locator("input")
    box.fill(value)
    box.press("Enter")
    box.page.wait_for_function("([el, v]) => el.value === v", arg=[box.element_handle(), value],
                               timeout=UI_MS)


def _set_readout(slider, value: str) -> None:
    """Type a value into a slider's editable readout, as a student may."""
    readout = slider.locator(".widget-readout")
    readout.click()
    readout.press("Control+A")
    readout.type(value)
    readout.press("Enter")
    readout.page.wait_for_function(
        "([el, v]) => el.textContent.trim() === v", arg=[readout.element_handle(), value],
        timeout=UI_MS)


@pytest.fixture(scope="module")
def page(browser_context, lab):
    page = browser_context.new_page()
    page.set_default_timeout(UI_MS)
    try:
        yield page
    finally:
        shutil.copy(lab.log_path, ARTIFACTS / "jupyterlab.log")
        page.close()


@pytest.fixture(autouse=True)
def _screenshot_on_failure(request, page):
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        page.screenshot(path=ARTIFACTS / f"failed-{request.node.name}.png")


@pytest.fixture(scope="module")
def notebook(page, lab):
    """Notebook 4 opened in JupyterLab with all its cells run (Run > Run All Cells)."""
    page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}", timeout=OPEN_MS)
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=OPEN_MS)
    # the kernel has started and the page is connected to it (before that the status bar
    # says "No Kernel | Initializing" and Run All would ask which kernel to start)
    page.wait_for_function(KERNEL_IDLE, timeout=OPEN_MS, polling=250)
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()  # Run All Cells
    try:
        # Done when the kernel is idle and no cell is waiting ([*]): either every code cell
        # has run, or one failed (Run All stops there and the rest stay [ ]).
        page.wait_for_function(f"""() => {{
          if (document.querySelector('.jp-Dialog')) return 'dialog';
          if (!({KERNEL_IDLE})()) return false;
          const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
            .map(p => p.textContent.trim());
          if (prompts.some(p => p.includes('*'))) return false;
          const failed = document.querySelector('{ERROR}') ||
            [...document.querySelectorAll('{STDERR}')].some(e => e.textContent.includes('Traceback'));
          return failed || prompts.every(p => /^\\[\\d+\\]:$/.test(p));
        }}""", timeout=RUN_ALL_MS, polling=500)
        dialog = page.locator(".jp-Dialog")
        assert not dialog.count(), "a dialog came up: " + dialog.inner_text()
    finally:
        page.screenshot(path=ARTIFACTS / "01_run_all.png")
    return page


def test_run_all_cells_shows_no_error(notebook):
    page = notebook
    prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
    assert prompts and all(re.fullmatch(r"\[\d+\]:", p.strip()) for p in prompts), prompts
    errors = page.locator(ERROR).all_inner_texts()
    errors += [t for t in page.locator(STDERR).all_inner_texts() if TRACEBACK.search(t)]
    assert not errors, "error output:\n" + "\n---\n".join(errors)
    explorer = page.locator(".jp-OutputArea-output .widget-hslider",
                            has=page.locator(".widget-label", has_text="α/β"))
    explorer.scroll_into_view_if_needed()
    state = _state(page)
    # the notebook drove the explorer from code (run(wait=True)): a finished run is shown
    assert state["status"].startswith("steps"), state
    assert state["bar"] == "100%" and state["hash"] and state["shown"], state
    page.screenshot(path=ARTIFACTS / "02_explorer_after_run_all.png")


def test_explorer_run_changes_the_image_and_fills_the_progress_bar(notebook):
    page = notebook
    root = page.locator(".jp-OutputArea-output .widget-vbox",
                        has=page.locator(".widget-label", has_text="α/β")).first
    ratio = root.locator(".widget-hslider", has=page.locator(".widget-label", has_text="α/β"))
    ratio.scroll_into_view_if_needed()
    before = _state(page)

    # move the α/β slider with the mouse (to the right: more weight on content)
    readout = ratio.locator(".widget-readout")
    old_ratio = readout.inner_text().strip()
    box = ratio.locator(".noUi-handle").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y, steps=8)
    page.mouse.up()
    page.wait_for_function("([el, old]) => el.textContent.trim() !== old",
                           arg=[readout.element_handle(), old_ratio])

    # style layers: untick conv4_1 and conv5_1, then tick conv4_1 again
    def layer(name):
        return root.locator(".widget-checkbox", has_text=name).locator("input[type=checkbox]")

    for name in ("conv4_1", "conv5_1"):
        assert layer(name).is_checked()
        layer(name).click()
    layer("conv4_1").click()
    assert layer("conv4_1").is_checked() and not layer("conv5_1").is_checked()
    root.screenshot(path=ARTIFACTS / "03_explorer_settings.png")

    _watch_progress(page)
    root.locator("button.jupyter-button", has_text=re.compile(r"^\s*Run\s*$")).click()
    _wait_run_ended(page)
    after = _state(page)
    root.screenshot(path=ARTIFACTS / "04_explorer_after_run.png")

    assert after["status"].startswith("steps"), after  # a complete run, no error
    assert after["src"] != before["src"] and after["hash"] != before["hash"], (before, after)
    assert after["shown"] and after["width"] > 0
    assert after["bar"] == "100%" and "progress-bar-success" in after["barClass"], after
    assert after["runEnabled"]


def test_stop_keeps_the_image_so_far(notebook):
    page = notebook
    root = page.locator(".jp-OutputArea-output .widget-vbox",
                        has=page.locator(".widget-label", has_text="α/β")).first

    def slider(label):
        return root.locator(".widget-hslider",
                            has=page.locator(".widget-label", has_text=label))

    # a longer run: 500 evaluations at 256 px
    _set_text(_field(root, "steps/scale"), "500")
    _set_readout(slider("size (px)"), "256")
    before = _state(page)

    _watch_progress(page)
    root.locator("button.jupyter-button", has_text=re.compile(r"^\s*Run\s*$")).click()
    # wait for the first picture of this run (status "step n: loss ...", every 5 steps)
    page.wait_for_function(_js("return /^step \\d+/.test(statusLine() || '');"),
                           timeout=RUN_MS)
    running = _state(page)
    root.screenshot(path=ARTIFACTS / "05_explorer_running.png")
    assert running["hash"] != before["hash"] and not running["runEnabled"], running
    assert running["bar"] not in ("0%", "100%"), running

    root.locator("button.jupyter-button", has_text=re.compile(r"^\s*Stop\s*$")).click()
    _wait_run_ended(page)
    stopped = _state(page)
    root.screenshot(path=ARTIFACTS / "06_explorer_stopped.png")

    assert stopped["status"].startswith("stopped"), stopped
    assert stopped["runEnabled"] and "progress-bar-warning" in stopped["barClass"], stopped
    assert float(stopped["bar"].rstrip("%")) < 100, stopped  # stopped before the end
    # the picture of this run (256 px wide, the cat is landscape) stays on screen
    assert stopped["shown"] and stopped["hash"] and stopped["width"] == 256, stopped
    assert stopped["hash"] != before["hash"]
    page.wait_for_timeout(2000)  # and is still there a moment later
    later = _state(page)
    assert (later["hash"], later["width"], later["shown"]) == (stopped["hash"], 256, True)


def _field(root, label: str):
    """The text field of the explorer with this label."""
    return root.locator(".widget-text", has=root.page.locator(".widget-label", has_text=label))


def _run_and_wait(page, root) -> None:
    _watch_progress(page)
    root.locator("button.jupyter-button", has_text=re.compile(r"^\s*Run\s*$")).click()
    _wait_run_ended(page)


def test_a_preset_sets_the_controls_and_the_cost_line_follows(notebook):
    page = notebook
    root = page.locator(".jp-OutputArea-output .widget-vbox",
                        has=page.locator(".widget-label", has_text="α/β")).first
    before = page.evaluate(_js("return costLine();"))
    preset = root.locator(".widget-toggle-buttons",
                          has=page.locator(".widget-label", has_text="preset"))
    preset.locator("button", has_text="paper").click()
    steps = _field(root, "steps/scale").locator("input")
    page.wait_for_function("el => el.value === '1000'", arg=steps.element_handle())
    page.wait_for_function(_js("return costLine() !== arg;"), arg=before)
    after = page.evaluate(_js("return costLine();"))
    controls = root.locator(".widget-vbox",
                            has=page.locator(".widget-label", has_text="preset")).first
    controls.scroll_into_view_if_needed()
    controls.screenshot(path=ARTIFACTS / "07_explorer_paper_preset.png")
    assert before.startswith("This run will need about") and after.startswith("This run "
                                                                              "will need"), after
    start = root.locator(".widget-toggle-buttons",
                         has=page.locator(".widget-label", has_text="start from"))
    assert "mod-active" in start.locator("button", has_text="noise").get_attribute("class")


def test_two_runs_side_by_side_then_save_and_download(notebook, lab):
    page = notebook
    root = page.locator(".jp-OutputArea-output .widget-vbox",
                        has=page.locator(".widget-label", has_text="α/β")).first
    _set_text(_field(root, "steps/scale"), "5")
    _set_readout(root.locator(".widget-hslider", has=page.locator(".widget-label",
                                                                  has_text="size (px)")), "64")
    start = root.locator(".widget-toggle-buttons",
                         has=page.locator(".widget-label", has_text="start from"))
    for init in ("content", "noise"):
        start.locator("button", has_text=init).click()
        _run_and_wait(page, root)
        assert _state(page)["status"].startswith("steps")
    runs = root.locator(".widget-html img[src^='data:image/png']").count()  # the gallery
    assert runs >= 2  # these two and the runs of the tests before
    a, b = _compare(page, root, runs - 1, runs)
    assert a["settings"].startswith(f"#{runs - 1}") and "start: content" in a["settings"], a
    assert b["settings"].startswith(f"#{runs}") and "start: noise" in b["settings"], b
    assert a["shown"] and b["shown"] and a["src"] != b["src"]
    _save_and_download(page, root, lab.root / "out")


def _compare(page, root, first: int, second: int) -> tuple[dict, dict]:
    """Choose runs number ``first`` and ``second`` in the menus A and B; what they show."""
    for side, number in (("A", first), ("B", second)):
        menu = root.locator(".widget-dropdown",
                            has=page.locator(".widget-label", has_text=re.compile(f"^{side}$")))
        menu.locator("select").select_option(index=number - 1)
    for side, number in (("A", first), ("B", second)):
        page.wait_for_function(_js(f"return compared('{side}').settings.startsWith(arg);"),
                               arg=f"#{number}")
    box = root.locator(".widget-vbox", has=page.locator(".widget-html",
                                                         has_text="gallery: every run")).first
    box.scroll_into_view_if_needed()
    box.screenshot(path=ARTIFACTS / "08_explorer_side_by_side.png")
    return tuple(page.evaluate(_js(f"return compared('{side}');")) for side in "AB")


def _save_and_download(page, root, folder: Path) -> None:
    """Press Save: the files are in ``folder`` and open; the download link gives the same."""
    from PIL import Image

    root.locator("button.jupyter-button", has_text=re.compile(r"^\s*Save\s*$")).click()
    page.wait_for_function(_js("return /^Saved/.test(statusLine() || '');"))
    status = _state(page)["status"]
    row = root.locator(".widget-hbox", has=page.locator("button", has_text="Save")).first
    row.scroll_into_view_if_needed()
    row.screenshot(path=ARTIFACTS / "09_explorer_saved.png")
    saved = folder / "result.png"
    assert status.startswith("Saved result.png, gallery.png in ") and saved.is_file(), status
    with Image.open(saved) as im:
        assert im.format == "PNG" and im.width == 64
    with Image.open(folder / "gallery.png") as im:
        assert im.format == "PNG" and im.width > 2 * 64
    with page.expect_download() as download:
        root.locator("a[download='result.png']").click()
    assert Path(download.value.path()).read_bytes() == saved.read_bytes()
