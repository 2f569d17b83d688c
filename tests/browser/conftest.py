"""Fixtures for the browser tests: a JupyterLab server and headless Chromium.

The server runs on 127.0.0.1 on a free port with a random token, in a temporary folder that
holds a copy of the notebook (so that autosave never writes outputs into notebooks/), with
its own runtime, config, data and IPython folders and NST_QUICK=1. Chromium is Debian's
(``/usr/bin/chromium``, or ``$NST_CHROMIUM``), driven by Playwright; Playwright's own
browser download is not used. Everything started here is stopped in ``finally`` blocks.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from jupyter_servers import Server

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = Path(os.environ.get("NST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

# JupyterLab settings for the test server only: render every cell (no windowing, so the
# whole notebook is in the DOM) and make no requests for news or updates.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none", "autoStartDefaultKernel": True},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
}


class Lab(Server):
    """A running JupyterLab server."""

    name = "jupyterlab"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def prepare(self, home: Path) -> None:
        settings = home / "config" / "lab" / "user-settings"
        for name, values in LAB_SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))

    def command(self) -> list[str]:
        return [sys.executable, "-m", "jupyterlab", "--no-browser",
                "--ServerApp.open_browser=False", "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
                "--ServerApp.terminals_enabled=False",
                *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])]

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def ready(self) -> bool:
        try:
            self.api("status")
            return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def shutdown(self) -> None:
        """Shut the kernels down."""
        for kernel in self.api("kernels"):
            self.api(f"kernels/{kernel['id']}", method="DELETE")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (for screenshots of failures)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="module")
def chromium_path() -> Path:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"{CHROMIUM} not found: the browser tests need Debian's Chromium. "
                    "Run `make browser-deps` (or `apt-get install chromium` as root), or set "
                    "NST_CHROMIUM to a Chromium binary.", pytrace=False)
    return CHROMIUM


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab serving a temporary copy of the notebooks; stopped at the end."""
    home = tmp_path_factory.mktemp("lab")
    root = home / "notebooks"
    root.mkdir()
    for notebook in (REPO / "notebooks").glob("*.ipynb"):
        shutil.copy(notebook, root / notebook.name)
    server = Lab(root, home)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser_context(chromium_path, tmp_path_factory):
    """A headless Chromium with a fresh profile; closed at the end."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("The browser tests need the `playwright` package (in the test extra): "
                    "run `make test`, or `pip install -e '.[test]'`.", pytrace=False)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(chromium_path), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000})
        try:
            yield context
        finally:
            context.close()
