"""Open the workbook in a real browser, the way a learner does, and run lesson 01.

`make lab` starts `.venv/bin/jupyter lab` on `notebooks/`; this test starts the same
server (headless, on a free loopback port, with a random token) on a *copy* of
`notebooks/`, so the committed notebooks are never touched. Headless Chromium
(Debian's `chromium`, driven by Playwright) opens `01_basic_abatch.ipynb`, clicks
Run > Run All Cells, waits until every code cell has run, and checks what a learner
would see: the mock backend line, no error, tqdm's widget progress bar (not
"IProgress not found"), and the matplotlib figure. A full-page screenshot goes to
`build/browser/01_basic_abatch.png`.

Needs /usr/bin/chromium (`apt-get install chromium`) and Playwright for Python (in
requirements.txt). Without them the test is skipped, except in CI (CI=true), where
it fails instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "01_basic_abatch.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
JUPYTER = Path(sys.prefix) / "bin" / "jupyter"  # the venv's, as `make lab` uses
SCREENSHOT = ROOT / "build" / "browser" / "01_basic_abatch.png"
SERVER_START_TIMEOUT_S = 60
RUN_ALL_TIMEOUT_S = 180
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# JupyterLab user settings for the run: no autosave, no news / update prompt, and
# every cell attached to the DOM (so cells can be counted and the screenshot is whole).
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none",
        "scrollPastEnd": False,
    },
}


def _require_browser_tools():
    """Skip (or, in CI, fail) with a message saying what is missing and how to get it."""
    missing = []
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        missing.append(
            f"Chromium is missing ({CHROMIUM}); install it with "
            "`sudo apt-get update && sudo apt-get install -y chromium`"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append(
            "Playwright for Python is missing; install it with "
            f"`{sys.prefix}/bin/pip install -r requirements.txt` (never `playwright install`: "
            "the test uses Debian's Chromium)"
        )
    if not missing:
        return
    message = "browser test needs: " + "; ".join(missing)
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _strip_outputs(path: Path) -> None:
    """Remove stored outputs, counts and widget state, so all we see comes from this run."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    notebook["metadata"].pop("widgets", None)
    path.write_text(json.dumps(notebook, ensure_ascii=False, indent=1), encoding="utf-8")


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


class _Lab:
    """`jupyter lab` as `make lab` starts it, headless, on a temporary copy of notebooks/."""

    def __init__(self, workdir: Path):
        self.port = _free_port()
        self.token = secrets.token_hex(24)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "jupyter-lab.log"
        settings_dir = workdir / "lab-settings"
        for name, values in LAB_SETTINGS.items():
            (settings_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (settings_dir / name).write_text(json.dumps(values), encoding="utf-8")
        for sub in ("config", "runtime", "workspaces"):
            (workdir / sub).mkdir()
        env = dict(os.environ)
        env.update(
            WORKBOOK_BACKEND="mock",  # as `make test`: the mock, whatever .env says
            JUPYTER_CONFIG_DIR=str(workdir / "config"),  # ignore a personal ~/.jupyter
            JUPYTER_RUNTIME_DIR=str(workdir / "runtime"),
        )
        self.command = [
            str(JUPYTER), "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--notebook-dir={workdir / 'notebooks'}",
            f"--IdentityProvider.token={self.token}",
            f"--LabApp.user_settings_dir={settings_dir}",
            f"--LabApp.workspaces_dir={workdir / 'workspaces'}",
        ]
        if os.geteuid() == 0:  # CI runs as root; jupyter refuses that without this flag
            self.command.append("--allow-root")
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-6000:]

    def api(self, path: str):
        return _get_json(f"{self.base}{path}?token={self.token}")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"jupyter lab exited with code {self.process.returncode} before it was "
                    f"ready.\ncommand: {' '.join(self.command)}\n--- server log ---\n{self.log()}",
                    pytrace=False,
                )
            try:
                self.api("/api/status")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                time.sleep(0.25)
        pytest.fail(
            f"jupyter lab was not ready within {SERVER_START_TIMEOUT_S} s on {self.base}."
            f"\n--- server log ---\n{self.log()}",
            pytrace=False,
        )

    def kernel_states(self) -> list[str]:
        return [s["kernel"]["execution_state"] for s in self.api("/api/sessions")]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


@contextlib.contextmanager
def _running_lab():
    with tempfile.TemporaryDirectory(prefix="workbook-browser-") as tmp:
        workdir = Path(tmp)
        shutil.copytree(
            ROOT / "notebooks", workdir / "notebooks",
            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "runs"),
        )
        _strip_outputs(workdir / "notebooks" / NOTEBOOK)
        server = _Lab(workdir)
        try:
            server.wait_ready()
            yield server
        finally:
            server.stop()


# JavaScript run in the page: the state of every code cell, read from the DOM.
_CELL_STATE_JS = """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')].map(cell => ({
    prompt: (cell.querySelector('.jp-InputArea-prompt') || {}).textContent || '',
    stderr: [...cell.querySelectorAll(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
        .map(e => e.textContent),
    text: cell.querySelector('.jp-OutputArea') ? cell.querySelector('.jp-OutputArea').innerText : '',
}))"""
_ERROR_RE = re.compile(r"Traceback|\b\w*(Error|Exception)\b")


def _errors(cells) -> list[str]:
    return [
        f"cell {i + 1} ({c['prompt'].strip()}):\n{text[-1500:]}"
        for i, c in enumerate(cells)
        for text in c["stderr"]
        if _ERROR_RE.search(text)
    ]


def _dismiss_dialogs(page) -> None:
    """Accept any modal JupyterLab raises (kernel selection and the like)."""
    dialog = page.locator(".jp-Dialog")
    if dialog.count():
        accept = dialog.locator(".jp-Dialog-button.jp-mod-accept")
        (accept.first if accept.count() else dialog.locator("button").last).click()


def test_notebook_01_runs_in_a_real_browser():
    _require_browser_tools()
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    with (
        _running_lab() as lab,
        tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = browser.pages[0] if browser.pages else browser.new_page()
            page.set_default_timeout(30_000)
            page.goto(f"{lab.base}/lab/tree/{NOTEBOOK}?token={lab.token}")

            # The notebook is open and its kernel has started.
            page.locator(".jp-Notebook .jp-CodeCell").first.wait_for()
            deadline = time.monotonic() + 60
            while "idle" not in lab.kernel_states():
                _dismiss_dialogs(page)
                assert time.monotonic() < deadline, (
                    f"the kernel did not start within 60 s: {lab.kernel_states()}\n{lab.log()}"
                )
                page.wait_for_timeout(250)
            _dismiss_dialogs(page)

            # Run > Run All Cells, as a learner would.
            page.locator("#jp-MainMenu").get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

            deadline = time.monotonic() + RUN_ALL_TIMEOUT_S
            while True:
                cells = page.evaluate(_CELL_STATE_JS)
                errors = _errors(cells)
                if errors:
                    _save_screenshot(page)
                    pytest.fail("a cell failed in the browser (screenshot: "
                                f"{SCREENSHOT}):\n" + "\n\n".join(errors), pytrace=False)
                done = all(re.fullmatch(r"\s*\[\d+\]:\s*", c["prompt"]) for c in cells)
                if done and lab.kernel_states() == ["idle"]:
                    break
                if time.monotonic() > deadline:
                    _save_screenshot(page)
                    pytest.fail(
                        f"Run All did not finish within {RUN_ALL_TIMEOUT_S} s (screenshot: "
                        f"{SCREENSHOT}); prompts: {[c['prompt'].strip() for c in cells]}"
                        f"\n--- server log ---\n{lab.log()}",
                        pytrace=False,
                    )
                page.wait_for_timeout(500)

            # Let the last widgets and figures render before looking.
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-RenderedImage img')]"
                ".every(img => img.complete)"
            )
            page.wait_for_timeout(500)
            cells = page.evaluate(_CELL_STATE_JS)

            _save_screenshot(page)

            assert "Backend: mock" in cells[0]["text"], (
                "the first cell should print the backend line; is the kernel the workbook's "
                f"venv, with `helpers` installed? It shows:\n{cells[0]['text']}"
            )
            assert not _errors(cells)
            page_text = page.locator("body").inner_text()
            assert "IProgress not found" not in page_text, (
                "tqdm fell back to text: ipywidgets is not in the kernel's environment"
            )
            progress = page.locator(".jp-OutputArea .widget-hprogress")
            assert progress.count() >= 2, "tqdm's progress bars did not render as widgets"
            assert progress.first.is_visible()
            images = page.locator(".jp-RenderedImage img")
            assert images.count() >= 2, "the matplotlib figures did not render"
            widths = images.evaluate_all("imgs => imgs.map(img => img.complete ? img.naturalWidth : 0)")
            assert all(w > 0 for w in widths), f"a figure did not load: naturalWidth {widths}"
        finally:
            browser.close()
    print(f"browser run took {time.monotonic() - started:.1f} s; screenshot: {SCREENSHOT}")


def _save_screenshot(page) -> None:
    """Full-page screenshot. JupyterLab scrolls inside the notebook panel, not the page,
    so close the file browser, grow the window to the notebook's full height, then shoot."""
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    current_left_tab = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
    if current_left_tab.count():
        current_left_tab.first.click()  # clicking the open tab collapses the sidebar
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    hidden = page.evaluate(_SCROLL_TO_TOP_JS)
    height = min(900 + hidden, 16000)  # Chromium cannot capture much more than 16k px
    page.set_viewport_size({"width": 1280, "height": height})
    page.wait_for_timeout(500)
    page.evaluate(_SCROLL_TO_TOP_JS)
    page.screenshot(path=str(SCREENSHOT), full_page=True)


# Scroll the notebook's scrolling element to the top; return how much it hides below.
_SCROLL_TO_TOP_JS = """() => {
    const scrollers = [...document.querySelectorAll('.jp-NotebookPanel, .jp-NotebookPanel *')]
        .filter(el => ['auto', 'scroll'].includes(getComputedStyle(el).overflowY));
    let hidden = 0;
    for (const el of scrollers) {
        hidden = Math.max(hidden, el.scrollHeight - el.clientHeight);
        el.scrollTop = 0;
    }
    return hidden;
}"""
