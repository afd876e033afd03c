"""Open the workbook in a real browser, the way an instructor and a learner do.

`make lab` serves the repository root with lesson 01 as JupyterLab's default page and
`.jupyter/lab-settings/overrides.json` turning the news prompt off. These tests start the
same command (same flags; headless, on a free loopback port, with a random token) on
temporary copies, so committed notebooks are never touched:

- the instructor's server, on a copy of README.md and notebooks/ (lesson 01 stripped of
  its outputs), with the repository's lab settings;
- the hand-out's server, on a hand-out built by `tools/student.py handout` into a
  temporary folder, with the hand-out's own lab settings and its folder first on
  PYTHONPATH (so its kernels import its own `helpers`).

Kernels see WORKBOOK_BACKEND=mock. A temporary JUPYTERLAB_SETTINGS_DIR turns autosave
off and attaches every cell to the DOM (windowingMode none); it does *not* touch the
news setting, so the overrides file is what must keep the prompt away.

Headless Chromium (Debian's `chromium`, driven by Playwright) checks what a person sees:

1. instructor, lesson 01: `/` opens lesson 01, no news toast; Run All runs every cell
   (the mock backend line, no error, tqdm's widget bar, the matplotlib figures); the
   last cell's README link opens README.md in a JupyterLab tab;
2. learner copy of lesson 01: Run All goes past the unsolved exercises (every code cell
   gets an execution count) and each check shows one red "✗ Not solved yet" line, no
   traceback; lesson cells show no error;
3. instructor lessons 02-08, opened with their stored outputs and not run: no error,
   every stored figure renders, every stored widget renders, and no finished progress
   bar reads as a frozen "0% ... 0/N".

Screenshots go to build/browser/ (01_basic_abatch.png, readme_link.png,
learner_01_basic_abatch.png, and <lesson>.png for 02-08).

Needs /usr/bin/chromium (`apt-get install chromium`) and Playwright for Python (in
requirements.txt). Without them the tests are skipped, except in CI (CI=true), where
they fail instead. Not meant for learners to read.
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
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

from student import cell_kind  # tools/student.py, on sys.path via tests/conftest.py

ROOT = Path(__file__).resolve().parent.parent
FIRST = "notebooks/01_basic_abatch.ipynb"
STORED = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9]*.ipynb") if p.name != Path(FIRST).name)
CHROMIUM = Path("/usr/bin/chromium")
JUPYTER = Path(sys.prefix) / "bin" / "jupyter"  # the venv's, as `make lab` uses
SHOTS = ROOT / "build" / "browser"
SERVER_START_TIMEOUT_S = 60
RUN_ALL_TIMEOUT_S = 240
VIEWPORT = {"width": 1280, "height": 900}
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
# The test's own JupyterLab user settings: no autosave, and every cell attached to the DOM
# (so cells can be counted and the screenshot is whole). The news prompt is left to the
# project's .jupyter/lab-settings/overrides.json.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none",
        "scrollPastEnd": False,
    },
}
NOT_SOLVED = "✗ Not solved yet"
# Text that means a cell failed (a traceback, an exception name, a learner's check line).
_ERROR_RE = re.compile(rf"Traceback|\b\w*(Error|Exception)\b|{NOT_SOLVED}")
# A progress bar that reads as never started: "0%" (not 100%) and "0/N" (not 10/N).
_FROZEN_BAR_RE = re.compile(r"(?<![\d.])0%.*?(?<![\d/])0/\d+")
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_WIDGET_FAILED = ("Error displaying widget", "model not found")


# --------------------------------------------------------------------------- servers


def _require_browser_tools() -> None:
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


class Lab:
    """`jupyter lab` started as `make lab` starts it (from `root`, `--notebook-dir=.`), headless."""

    def __init__(self, root: Path, workdir: Path, app_settings_dir: Path, pythonpath_first: Path | None = None):
        self.root = root
        self.port = _free_port()
        self.token = secrets.token_hex(24)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "jupyter-lab.log"
        user_settings = workdir / "user-settings"
        for name, values in LAB_SETTINGS.items():
            (user_settings / name).parent.mkdir(parents=True, exist_ok=True)
            (user_settings / name).write_text(json.dumps(values), encoding="utf-8")
        for sub in ("config", "runtime", "workspaces"):
            (workdir / sub).mkdir()
        env = dict(os.environ)
        env.update(
            WORKBOOK_BACKEND="mock",  # as `make test`: the mock, whatever .env says
            JUPYTER_CONFIG_DIR=str(workdir / "config"),  # ignore a personal ~/.jupyter
            JUPYTER_RUNTIME_DIR=str(workdir / "runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(user_settings),
            JUPYTERLAB_WORKSPACES_DIR=str(workdir / "workspaces"),
        )
        if pythonpath_first is not None:  # as the hand-out's Makefile: its own helpers/ first
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath_first), env.get("PYTHONPATH")]))
        # The flags of the Makefile's LAB, then what a headless test needs.
        self.command = [
            str(JUPYTER), "lab", "--ip=127.0.0.1", f"--port={self.port}", "--notebook-dir=.",
            f"--LabApp.default_url=/lab/tree/{FIRST}", f"--LabApp.app_settings_dir={app_settings_dir}",
            "--no-browser", "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
        ]
        if os.geteuid() == 0:  # CI runs as root; jupyter refuses that without this flag
            self.command.append("--allow-root")
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            self.command, cwd=root, env=env, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT,
        )

    def url(self, path: str) -> str:
        """`path` on this server, with the token (and any query `path` already has)."""
        return f"{self.base}{path}{'&' if '?' in path else '?'}token={self.token}"

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-6000:]

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(self.url(path), method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

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

    def kernel_state(self, path: str) -> str | None:
        """The execution state of the kernel of the notebook at `path`; None if it has none."""
        for session in self.api("/api/sessions"):
            if session["path"] == path and session.get("kernel"):
                return session["kernel"]["execution_state"]
        return None

    def shut_down_kernels(self) -> None:
        for session in self.api("/api/sessions"):
            self.api(f"/api/sessions/{session['id']}", method="DELETE")

    def saved_notebook(self, path: str) -> dict:
        return self.api(f"/api/contents/{path}?content=1")["content"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


def _serve(root: Path, workdir: Path, app_settings_dir: Path, pythonpath_first: Path | None = None):
    server = Lab(root, workdir, app_settings_dir, pythonpath_first)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def instructor_lab(tmp_path_factory):
    """The instructor's `make lab` on a copy of README.md and notebooks/ (lesson 01 unrun)."""
    _require_browser_tools()
    workdir = tmp_path_factory.mktemp("instructor-lab")
    root = workdir / "workbook"
    shutil.copytree(ROOT / "notebooks", root / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "runs"))
    shutil.copy2(ROOT / "README.md", root / "README.md")
    _strip_outputs(root / FIRST)
    yield from _serve(root, workdir, ROOT / ".jupyter" / "lab-settings")


@pytest.fixture(scope="module")
def handout_lab(tmp_path_factory):
    """The hand-out's `make lab`, on a hand-out built into a temporary folder."""
    _require_browser_tools()
    workdir = tmp_path_factory.mktemp("handout-lab")
    root = workdir / "student"
    subprocess.run([sys.executable, str(ROOT / "tools" / "student.py"), "handout", "--out", str(root)],
                   cwd=ROOT, check=True, capture_output=True, timeout=120)
    yield from _serve(root, workdir, root / ".jupyter" / "lab-settings", pythonpath_first=root)


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the whole module."""
    _require_browser_tools()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, viewport=VIEWPORT,
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser):
    """A fresh tab for one test."""
    tab = browser.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    tab.close()


@pytest.fixture(scope="module")
def stored_page(browser, instructor_lab):
    """One tab in which the stored-output lessons are opened in turn."""
    tab = browser.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    tab.close()


# --------------------------------------------------------------------------- page helpers

# JavaScript run in the page: every code cell's prompt and outputs, read from the DOM.
_CELL_STATE_JS = """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')].map(cell => ({
    prompt: (cell.querySelector('.jp-InputArea-prompt') || {}).textContent || '',
    outputs: [...cell.querySelectorAll('.jp-OutputArea-output')].map(e => ({
        mime: e.getAttribute('data-mime-type') || '',
        text: e.innerText,
        images: e.querySelectorAll('.jp-RenderedImage img').length,
        widget: !!e.querySelector('.jupyter-widgets'),
    })),
    text: cell.querySelector('.jp-OutputArea') ? cell.querySelector('.jp-OutputArea').innerText : '',
}))"""
_STDERR = "application/vnd.jupyter.stderr"  # how JupyterLab renders both stderr and errors


def _errors(cells, skip=()) -> list[str]:
    """Rendered outputs that read as a failure, as 'cell N ([k]:): text'; cells in `skip` ignored."""
    return [
        f"code cell {i + 1} ({c['prompt'].strip()}):\n{o['text'][-1500:]}"
        for i, c in enumerate(cells) if i not in skip
        for o in c["outputs"]
        if o["mime"] == _STDERR and _ERROR_RE.search(o["text"])
    ]


def _dismiss_dialogs(page) -> None:
    """Accept any modal JupyterLab raises (kernel selection and the like)."""
    dialog = page.locator(".jp-Dialog")
    if dialog.count():
        accept = dialog.locator(".jp-Dialog-button.jp-mod-accept")
        (accept.first if accept.count() else dialog.locator("button").last).click()


def _open(page, lab: Lab, url_path: str, notebook_path: str) -> dict:
    """Open `url_path`; check it shows the notebook at `notebook_path` (its tab current) and wait
    until all its code cells are in the DOM. Return the notebook as stored on the server."""
    notebook = _read(lab.root / notebook_path)
    code_cells = sum(c["cell_type"] == "code" for c in notebook["cells"])
    page.set_viewport_size(VIEWPORT)
    page.goto(lab.url(url_path))
    _wait_quietly(page, f"() => document.querySelectorAll('.jp-Notebook .jp-CodeCell').length >= {code_cells}",
                  None, timeout_ms=30_000)
    assert page.url.split("?")[0].endswith(f"/lab/tree/{notebook_path}"), (
        f"{url_path} opened {page.url}, not {notebook_path}")
    assert _current_tab(page) == Path(notebook_path).name, (
        f"{url_path}: the current tab is {_current_tab(page)!r}, not {Path(notebook_path).name}")
    page.wait_for_function(
        f"() => document.querySelectorAll('.jp-Notebook .jp-CodeCell').length >= {code_cells}")
    return notebook


def _current_tab(page) -> str:
    label = page.locator("#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel")
    return label.first.inner_text() if label.count() else ""


def _wait_for_kernel(page, lab: Lab, path: str) -> None:
    deadline = time.monotonic() + 60
    while lab.kernel_state(path) != "idle":
        _dismiss_dialogs(page)
        assert time.monotonic() < deadline, (
            f"the kernel of {path} did not start within 60 s: {lab.kernel_state(path)}\n{lab.log()}")
        page.wait_for_timeout(250)
    _dismiss_dialogs(page)


def _run_all(page, lab: Lab, path: str) -> list[dict]:
    """Run > Run All Cells, as a learner would; return the cells once nothing more will run."""
    _wait_for_kernel(page, lab, path)
    page.locator("#jp-MainMenu").get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    deadline = time.monotonic() + RUN_ALL_TIMEOUT_S
    started, quiet_polls = False, 0
    while time.monotonic() < deadline:
        cells = page.evaluate(_CELL_STATE_JS)
        running = any("*" in c["prompt"] for c in cells)
        started = started or running
        idle = lab.kernel_state(path) == "idle"
        # Finished (or stopped early): nothing queued and the kernel idle, twice in a row.
        quiet_polls = quiet_polls + 1 if started and idle and not running else 0
        if quiet_polls >= 2:
            break
        page.wait_for_timeout(500)
    else:
        _screenshot(page, SHOTS / "run_all_timeout.png")
        pytest.fail(f"Run All on {path} did not finish within {RUN_ALL_TIMEOUT_S} s; prompts: "
                    f"{[c['prompt'].strip() for c in cells]}\n--- server log ---\n{lab.log()}", pytrace=False)
    # Let the last widgets and figures render before looking.
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-RenderedImage img')].every(img => img.complete)")
    page.wait_for_timeout(500)
    return page.evaluate(_CELL_STATE_JS)


def _execution_counts(cells) -> list[int | None]:
    counts = []
    for cell in cells:
        match = re.fullmatch(r"\s*\[(\d+)\]:\s*", cell["prompt"])
        counts.append(int(match.group(1)) if match else None)
    return counts


def _assert_every_cell_ran(cells, what: str) -> None:
    """A fresh kernel ran every code cell once, in order: the prompts read [1]: ... [N]:."""
    counts = _execution_counts(cells)
    assert counts == list(range(1, len(cells) + 1)), (
        f"Run All did not run every code cell of {what} once, in order; prompts: "
        f"{[c['prompt'].strip() for c in cells]}")


def _save_notebook(page, lab: Lab, path: str, expected_counts: list[int]) -> dict:
    """Save the open notebook (Ctrl+S) and return the saved file, once it holds this run's counts."""
    page.locator(".jp-NotebookPanel .jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while True:
        notebook = lab.saved_notebook(path)
        counts = [c.get("execution_count") for c in notebook["cells"] if c["cell_type"] == "code"]
        if counts == expected_counts:
            return notebook
        assert time.monotonic() < deadline, f"{path} was not saved with this run's outputs: {counts}"
        page.wait_for_timeout(250)


def _wait_quietly(page, condition_js: str, arg, timeout_ms: int = 20_000) -> None:
    """Wait until `condition_js` holds or `timeout_ms` passes; the assertions after say what is wrong."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(condition_js, arg=arg, timeout=timeout_ms)
    except PlaywrightTimeout:
        pass


def _images_loaded(page) -> list[int]:
    return page.locator(".jp-RenderedImage img").evaluate_all(
        "imgs => imgs.map(img => img.complete ? img.naturalWidth : 0)")


def _screenshot(page, path: Path) -> None:
    """Full-page screenshot. JupyterLab scrolls inside the notebook panel, not the page,
    so close the left sidebar, grow the window to the notebook's full height, then shoot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    current_left_tab = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
    if current_left_tab.count():
        current_left_tab.first.click()  # clicking the open tab collapses the sidebar
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    hidden = page.evaluate(_SCROLL_TO_TOP_JS)
    height = min(VIEWPORT["height"] + hidden, 16000)  # Chromium cannot capture much more than 16k px
    page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
    page.wait_for_timeout(500)
    page.evaluate(_SCROLL_TO_TOP_JS)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(VIEWPORT)


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


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _outputs(notebook: dict, kind: str) -> int:
    """How many stored outputs carry `kind` (a mime type, or 'error')."""
    return sum(
        (o["output_type"] == "error") if kind == "error" else (kind in o.get("data", {}))
        for c in notebook["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
    )


# --------------------------------------------------------------------------- tests


def test_instructor_lesson_01_opens_first_runs_and_links_to_the_readme(page, instructor_lab):
    """`/` opens lesson 01 with no news prompt; Run All works; the README link opens README.md."""
    lab = instructor_lab
    _open(page, lab, "/", FIRST)  # `make lab` prints this URL; default_url must open lesson 01
    _wait_for_kernel(page, lab, FIRST)
    page.wait_for_timeout(1000)  # the news question, if asked, comes right after start-up
    toasts = page.locator(".Toastify__toast").all_inner_texts()
    assert not [t for t in toasts if re.search(r"news|update", t, re.I)], (
        f"JupyterLab asked about news or updates ({toasts}); .jupyter/lab-settings/overrides.json "
        "should turn that off")

    cells = _run_all(page, lab, FIRST)
    _screenshot(page, SHOTS / "01_basic_abatch.png")
    assert not _errors(cells), "a cell failed in the browser:\n" + "\n\n".join(_errors(cells))
    _assert_every_cell_ran(cells, FIRST)
    assert "Backend: mock" in cells[0]["text"], (
        "the first cell should print the backend line; is the kernel the workbook's "
        f"venv, with `helpers` installed? It shows:\n{cells[0]['text']}")
    assert "IProgress not found" not in page.locator("body").inner_text(), (
        "tqdm fell back to text: ipywidgets is not in the kernel's environment")
    progress = page.locator(".jp-OutputArea .widget-hprogress")
    assert progress.count() >= 2, "tqdm's progress bars did not render as widgets"
    assert progress.first.is_visible()
    widths = _images_loaded(page)
    assert len(widths) >= 2, "the matplotlib figures did not render"
    assert all(w > 0 for w in widths), f"a figure did not load: naturalWidth {widths}"

    last_cell = page.locator(".jp-MarkdownCell").last
    link = last_cell.get_by_role("link", name="README")
    assert link.count() == 1, f"the last cell should link to ../README.md:\n{last_cell.inner_html()[-2000:]}"
    link.scroll_into_view_if_needed()
    link.click()
    _wait_quietly(page, """() => (document.querySelector('#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current '
        + '.lm-TabBar-tabLabel') || {}).textContent === 'README.md'""", None, timeout_ms=15_000)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(SHOTS / "readme_link.png"))
    titles = page.locator("#jp-main-dock-panel .lm-TabBar-tab .lm-TabBar-tabLabel").all_inner_texts()
    dialogs = page.locator(".jp-Dialog").all_inner_texts()
    assert _current_tab(page) == "README.md" and titles.count("README.md") == 1 and Path(FIRST).name in titles, (
        f"the README link should open README.md in a JupyterLab tab; open tabs: {titles}, dialogs: {dialogs}")


def test_learner_copy_of_lesson_01_runs_past_unsolved_exercises(page, handout_lab):
    """Run All runs every cell of the unsolved copy; each check fails with one friendly line."""
    lab = handout_lab
    learner_copy = nbformat.read(lab.root / FIRST, as_version=4)
    kinds = [cell_kind(c) for c in learner_copy.cells if c.cell_type == "code"]
    checks = [i for i, kind in enumerate(kinds) if kind == "check"]
    assert checks, "lesson 01 should have exercise checks"
    _open(page, lab, f"/lab/tree/{FIRST}", FIRST)

    cells = _run_all(page, lab, FIRST)
    _screenshot(page, SHOTS / "learner_01_basic_abatch.png")
    _assert_every_cell_ran(cells, f"the learner copy of {FIRST} (did Run All stop at a failed check?)")
    assert "Backend: mock" in cells[0]["text"], cells[0]["text"]

    lessons = [i for i, kind in enumerate(kinds) if kind is None]
    lesson_errors = _errors(cells, skip=set(range(len(cells))) - set(lessons))
    assert not lesson_errors, "a lesson cell failed in the learner copy:\n" + "\n\n".join(lesson_errors)
    for i in checks:
        shown = [o["text"].strip() for o in cells[i]["outputs"] if o["mime"] == _STDERR]
        assert len(shown) == 1, f"check cell {i + 1} should show one error output, shows {shown}"
        line = shown[0]
        assert line.startswith(NOT_SOLVED), f"check cell {i + 1} should say {NOT_SOLVED!r}: {line!r}"
        assert "Traceback" not in line and "helpers/" not in line and "\n" not in line, (
            f"check cell {i + 1} should show one line, no traceback:\n{line}")

    # The DOM renders errors and stderr alike; the saved file says which output is an error.
    saved = _save_notebook(page, lab, FIRST, list(range(1, len(cells) + 1)))
    errors = [sum(o["output_type"] == "error" for o in c["outputs"])
              for c in saved["cells"] if c["cell_type"] == "code"]
    assert [errors[i] for i in checks] == [1] * len(checks), f"error outputs per check cell: {errors}"
    assert not any(errors[i] for i in lessons), f"error outputs per code cell: {errors}"


@pytest.mark.parametrize("name", STORED)
def test_stored_outputs_render(stored_page, instructor_lab, name):
    """As opened (untrusted, as on a learner's machine: widget outputs show their text/plain
    fallback), then trusted (widgets render from the notebook's saved widget state)."""
    lab, page = instructor_lab, stored_page
    path = f"notebooks/{name}"
    notebook = _open(page, lab, f"/lab/tree/{path}?reset", path)
    images_expected = _outputs(notebook, "image/png")
    widgets_expected = _outputs(notebook, _WIDGET_MIME)
    _wait_quietly(page, """images => {
        const imgs = [...document.querySelectorAll('.jp-RenderedImage img')];
        return imgs.length >= images && imgs.every(img => img.complete);
    }""", images_expected)
    page.wait_for_timeout(500)
    untrusted = page.evaluate(_CELL_STATE_JS)
    _screenshot(page, SHOTS / f"{Path(name).stem}.png")
    widths = _images_loaded(page)
    trusted = _trust_and_read(page, widgets_expected) if widgets_expected else untrusted
    lab.shut_down_kernels()  # opening started one; nothing here runs

    assert not _errors(untrusted), f"{name} shows an error:\n" + "\n\n".join(_errors(untrusted))
    assert _outputs(notebook, "error") == 0, f"{name} stores an error output"
    assert len(widths) == images_expected, (
        f"{name} stores {images_expected} PNG figures but {len(widths)} render as <img>")
    assert all(w > 0 for w in widths), f"a figure of {name} did not load: naturalWidth {widths}"
    views = [o for c in trusted for o in c["outputs"]
             if o["widget"] or any(s in o["text"] for s in _WIDGET_FAILED)]
    assert len(views) == widgets_expected, (
        f"{name} stores {widgets_expected} widget outputs; trusted, {len(views)} render as widgets")
    broken = [o["text"] for o in views if any(s in o["text"] for s in _WIDGET_FAILED)]
    assert not broken, f"{name}: widgets did not render: {broken}"
    frozen = [f"{view} view, code cell {i + 1} ({c['prompt'].strip()}): {bar}"
              for view, cells in (("as opened", untrusted), ("trusted", trusted))
              for i, c in enumerate(cells) for bar in _frozen_bars(c)]
    assert not frozen, f"{name} shows progress bars stuck at the start:\n" + "\n".join(frozen)


def _frozen_bars(cell: dict) -> list[str]:
    """Progress-bar texts in `cell` that read as never started (a widget's parts are on
    separate lines of its innerText, so a widget is read as one line)."""
    found = []
    for output in cell["outputs"]:
        lines = [" ".join(output["text"].split())] if output["widget"] else output["text"].splitlines()
        found += [line.strip()[:160] for line in lines if _FROZEN_BAR_RE.search(line)]
    return found


def _trust_and_read(page, widgets_expected: int) -> list[dict]:
    """Command palette > Trust Notebook, accept, and return the cells once the widgets render."""
    page.locator(".jp-NotebookPanel .jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Shift+c")
    page.locator(".lm-CommandPalette-input").fill("Trust Notebook")
    page.locator(".lm-CommandPalette-item", has_text="Trust Notebook").first.click()
    page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()
    _wait_quietly(page, """([widgets, failed]) => [...document.querySelectorAll('.jp-OutputArea-output')]
        .filter(o => o.querySelector('.jupyter-widgets') || failed.some(f => o.innerText.includes(f)))
        .length >= widgets""", [widgets_expected, list(_WIDGET_FAILED)])
    page.wait_for_timeout(500)
    return page.evaluate(_CELL_STATE_JS)
