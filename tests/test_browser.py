"""The learner's real path: lesson 01 in JupyterLab, in a real Chromium.

A scratch copy of ``notebooks/`` is served by JupyterLab (the venv's python3 kernel, where
``helpers`` is installed); Playwright drives Debian's Chromium to open lesson 01, run every
cell from the menu (Run > Run All Cells) and wait for the kernel to finish. Then:

- the lesson's outputs are there as a learner sees them: plots rendered as images, the
  printed results, the polynomial explorer as live widgets, and no error or traceback
  anywhere before the exercise section (the exercise stubs report "not done yet" verdicts,
  which is expected);
- moving the explorer's sliders with the keyboard goes to the kernel and back: the train
  and test MSE shown under the sliders change, and the plot is redrawn.

Screenshots go to ``artifacts/browser/`` (gitignored) and are recorded as test properties:
``run_all_full.png`` (the whole notebook after Run All), ``run_all_top.png`` (the first
screen), ``explorer_before.png`` / ``explorer_after_degree.png`` / ``explorer_after_lambda.png``.

Skipped when Playwright or Chromium is missing (``COURSE_CHROMIUM`` names another binary).
Playwright never downloads a browser here: it launches the system Chromium.
The test waits as long as the lesson takes to run, polling the page rather than sleeping
blind, up to ``COURSE_BROWSER_RUN_TIMEOUT`` seconds (default 1500, inside pytest-timeout's
1800); ``artifacts/browser/run.log`` shows how far Run All got.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from helpers import cells as nbcells, course

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LESSON = "01_overfitting.ipynb"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
RUN_TIMEOUT = float(os.environ.get("COURSE_BROWSER_RUN_TIMEOUT", "1500"))
UI_TIMEOUT_MS = 300_000          # any single UI wait (page load, kernel start, a widget round trip)
VIEWPORT = {"width": 1400, "height": 1000}


def _chromium() -> str | None:
    for cand in (os.environ.get("COURSE_CHROMIUM"), "/usr/bin/chromium",
                 shutil.which("chromium"), shutil.which("chromium-browser")):
        if cand and Path(cand).exists():
            return cand
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------ JupyterLab server
@pytest.fixture
def jupyter_lab(tmp_path):
    """A JupyterLab on 127.0.0.1 serving a scratch copy of notebooks/; yields its base URL.

    No token or password, isolated settings/workspaces/runtime dirs (so nothing from the
    user's own JupyterLab leaks in), no news or update checks. The server runs in its own
    process group, ended (with its kernels) in the finalizer.
    """
    serve = tmp_path / "course"
    shutil.copytree(course.NOTEBOOKS, serve)
    home = tmp_path / "jupyter"
    settings = home / "settings"
    # The news prompt would sit over the notebook in every screenshot; answer "no" up front.
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false"}))
    env = {k: v for k, v in os.environ.items()
           if k not in ("COLAB_RELEASE_TAG", "COURSE_REPO_URL", "MPLBACKEND", "JUPYTER_TOKEN")}
    env.update(JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(home / "ws"),
               JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"))
    port = _free_port()
    log_path = tmp_path / "jupyterlab.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
         "--ServerApp.open_browser=False", f"--ServerApp.root_dir={serve}",
         "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=serve, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)      # the server's own group: it and its kernels
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()

    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(base + "/api/status", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer in 180 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"url": base, "dir": serve, "log": log_path}
    finally:
        stop()


@pytest.fixture
def browser_page():
    """A Playwright page in the system Chromium (skips when either is missing)."""
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install -e '.[test]')")
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium, or set COURSE_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(UI_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


# ------------------------------------------------------------------------ page probes
CELLS_JS = """() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  if (!nb) return null;
  const q = (c, s) => [...c.querySelectorAll(s)];
  return q(nb, '.jp-Cell').map(c => {
    const out = c.querySelector('.jp-Cell-outputArea');
    return {
      code: c.classList.contains('jp-CodeCell'),
      prompt: (c.querySelector('.jp-InputArea-prompt')?.textContent ?? '').trim(),
      text: out ? out.textContent : '',
      images: out ? q(out, '.jp-RenderedImage img').length : 0,
      widgets: out ? q(out, '.jupyter-widgets').length : 0,
      errors: out ? q(out, '[data-mime-type="application/vnd.jupyter.error"]')
                      .map(e => e.textContent.slice(0, 3000)) : [],
      stderr: out ? q(out, '[data-mime-type="application/vnd.jupyter.stderr"]')
                      .map(e => e.textContent.slice(0, 3000)) : [],
    };
  });
}"""

STATUS_JS = "() => document.querySelector('#jp-main-statusbar')?.textContent ?? ''"


def kernel_idle(page) -> bool:
    status = page.evaluate(STATUS_JS)
    return bool(re.search(r"\|\s*Idle", status)) and "No Kernel" not in status


def wait_for_run_all(page, n_code: int, log) -> list[dict]:
    """Poll until the kernel is idle and no cell is queued or running; return the cells.

    Finished means: the kernel reports Idle and no code cell shows ``[*]``, twice in a row
    (a kernel is briefly idle between two queued cells, but they still show ``[*]``). This
    also ends the wait when Run All stops at an error, which the caller then reports.
    """
    deadline = time.monotonic() + RUN_TIMEOUT
    start, stable, last = time.monotonic(), 0, None
    while True:
        cells = page.evaluate(CELLS_JS) or []
        prompts = [c["prompt"] for c in cells if c["code"]]
        done = sum(bool(re.fullmatch(r"\[\d+\]:", p)) for p in prompts)
        busy = sum(p == "[*]:" for p in prompts)
        idle = kernel_idle(page)
        state = f"executed {done}/{n_code}, queued or running {busy}, kernel {'idle' if idle else 'busy'}"
        line = f"{time.monotonic() - start:6.0f} s  {state}"
        if state != last:
            log(line)
            last = state
        if idle and busy == 0 and done > 0:
            stable += 1
            if stable >= 2:
                return cells
        else:
            stable = 0
        if time.monotonic() > deadline:
            raise AssertionError(f"Run All did not finish in {RUN_TIMEOUT:.0f} s: {line}")
        page.wait_for_timeout(3000)                   # polling interval


def shoot_whole_notebook(page, path: Path) -> None:
    """One tall screenshot of the whole notebook (the notebook scrolls inside the page, so
    the viewport is made as tall as its content), then the normal viewport again."""
    height = page.evaluate("""() => {
      const s = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer')
             || document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
      return s ? s.scrollHeight : 0; }""")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": int(min(max(height + 200, 1000), 30000))})
    try:
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        page.wait_for_function("""() => [...document.querySelectorAll('.jp-RenderedImage img')]
                                  .every(i => i.complete)""")
        page.screenshot(path=str(path))
    finally:
        page.set_viewport_size(VIEWPORT)


def painted(target) -> None:
    """Wait until the images under ``target`` are decoded and a frame has been painted, so a
    screenshot shows the new plot rather than a half-drawn one."""
    target.evaluate("""async el => {
      await Promise.all([...el.querySelectorAll('img')].map(i => i.decode().catch(() => null)));
      await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
    }""")


# ------------------------------------------------------------------------ the test
def test_lesson01_run_all_then_move_the_explorer(jupyter_lab, browser_page, artifacts_dir,
                                                 record_property):
    page = browser_page
    shots = {}
    log_lines = []
    run_log = artifacts_dir / "run.log"

    def log(msg):
        log_lines.append(msg)
        run_log.write_text("\n".join(log_lines) + "\n")

    def shot(name, target=None):
        path = artifacts_dir / name
        if target is not None:
            target.scroll_into_view_if_needed()
            painted(target)
        (target or page).screenshot(path=str(path))
        shots[name] = path
        record_property(f"screenshot {name}", str(path))
        log(f"screenshot: {path}")
        return path

    for old in artifacts_dir.glob("*.png"):
        old.unlink()

    # What the notebook should show, read from the file the learner opens.
    nb = nbformat.read(jupyter_lab["dir"] / LESSON, as_version=4)
    roles = [nbcells.role(c) for c in nb.cells]
    first_exercise = roles.index("exercises")
    n_code = sum(c.cell_type == "code" for c in nb.cells)
    explorer_cell = next(i for i, c in enumerate(nb.cells)
                         if c.cell_type == "code" and "polynomial_explorer(" in c.source)
    plot_cells = [i for i, c in enumerate(nb.cells[:first_exercise])
                  if c.cell_type == "code" and "plt.show()" in c.source]

    try:
        # 1. Open the lesson; wait for its kernel.
        page.goto(f"{jupyter_lab['url']}/lab/tree/{LESSON}")
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell")
        page.wait_for_function(
            "() => /\\|\\s*Idle/.test(document.querySelector('#jp-main-statusbar')?.textContent ?? '')"
            " && !/No Kernel/.test(document.querySelector('#jp-main-statusbar').textContent)")
        # Cells are attached to the page in batches after load: wait for all of them.
        page.wait_for_function(
            "(n) => document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell')"
            ".length === n", arg=len(nb.cells))
        log(f"opened {LESSON}: {len(nb.cells)} cells, kernel idle")

        # 2. Run > Run All Cells, as a learner would.
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
        t0 = time.monotonic()
        cells = wait_for_run_all(page, n_code, log)
        log(f"run all finished in {time.monotonic() - t0:.0f} s")
        page.evaluate("""() => { const s = document.querySelector(
            '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer'); if (s) s.scrollTop = 0; }""")
        page.wait_for_function("""() => document.querySelector(
            '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer')?.scrollTop === 0""")
        shot("run_all_top.png")
        path = artifacts_dir / "run_all_full.png"
        shoot_whole_notebook(page, path)
        shots[path.name] = path
        record_property("screenshot run_all_full.png", str(path))
        log(f"screenshot: {path}")

        # 3. Every code cell ran; nothing before the exercises raised or printed a traceback.
        not_run = [i for i, c in enumerate(cells) if c["code"] and not re.fullmatch(r"\[\d+\]:", c["prompt"])]
        problems = []
        for i, c in enumerate(cells[:first_exercise]):
            for e in c["errors"]:
                problems.append(f"cell {i}: error output:\n{e}")
            for s in c["stderr"]:
                if re.search(r"Traceback|Error|Exception", s):
                    problems.append(f"cell {i}: stderr:\n{s}")
        assert not problems, "\n\n".join(problems)
        assert not not_run, f"cells never ran (Run All stopped early?): {not_run}; " \
                            f"errors after the exercises: {[c['errors'] for c in cells if c['errors']]}"

        # 4. The lesson's outputs as a learner reads them.
        lesson_text = "".join(c["text"] for c in cells[:first_exercise])
        for phrase in ("training MSE", "test MSE", "lowest test MSE", "parameters:",
                       "validation accuracy", "dropout minus none"):
            assert phrase in lesson_text, f"{phrase!r} not printed before the exercises"
        missing_plots = [i for i in plot_cells if cells[i]["images"] < 1]
        assert not missing_plots, f"cells with plt.show() but no rendered image: {missing_plots}"
        n_images = sum(c["images"] for c in cells[:first_exercise])
        assert n_images >= len(plot_cells) + 1, n_images      # + the explorer's own plot
        assert cells[explorer_cell]["widgets"] > 0, "the explorer did not render as widgets"
        assert cells[explorer_cell]["images"] == 1
        # The exercise stubs: each check cell shows one calm line, none passes yet.
        checks = [i for i, r in enumerate(roles) if r == "check"]
        for i in checks:
            ex = nbcells.exercise_id(nb.cells[i])
            text = cells[i]["text"]
            assert re.search(rf"{re.escape(ex)}: not answered yet", text), (i, text)
            assert "passed" not in text and "NotImplementedError:" not in text, (i, text)

        # 5. The explorer: degree 9 with λ = 0 to start (the lesson's numbers).
        explorer = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").nth(explorer_cell)
        explorer.scroll_into_view_if_needed()
        train, test = explorer.locator(".train-mse"), explorer.locator(".test-mse")
        readout = {}

        def numbers():
            return float(train.text_content()), float(test.text_content())

        def plot_src():
            return explorer.locator(".widget-output .jp-RenderedImage img").get_attribute("src")

        def slider(label):
            s = explorer.locator(".widget-slider").filter(
                has=page.locator("label.widget-label", has_text=re.compile(rf"^{re.escape(label)}$")))
            return s.locator(".noUi-handle"), s.locator(".widget-readout")

        painted(explorer)
        readout["start"] = numbers()
        assert slider("degree")[1].text_content().strip() == "9"
        assert readout["start"][0] < 1e-3 and readout["start"][1] > 10, readout
        shot("explorer_before.png", explorer)

        def move(label, keys, expect_readout, expect_html):
            """Focus the slider's handle, press keys; wait for the kernel's refit to come back.

            Each key press is one step and one round trip (the sliders update on change), so
            wait for the final state: the readout next to the slider, then the HTML line the
            kernel writes for exactly these controls (e.g. "degree 9, λ = 0.01:").
            """
            handle, value = slider(label)
            plot_before = plot_src()
            handle.focus()
            for k in keys:
                handle.press(k)
            page.wait_for_function(
                "([el, want]) => el.textContent.trim().replace('\u2212', '-') === want",
                arg=[value.element_handle(), expect_readout])
            page.wait_for_function(
                "([el, want]) => el.textContent.includes(want)",
                arg=[explorer.locator(".widget-html-content").element_handle(), expect_html])
            # update() writes the numbers, then redraws: wait for one new plot (while refits
            # queue up, the Output widget can briefly hold two).
            page.wait_for_function(
                """([out, old]) => { const imgs = out.querySelectorAll('.jp-RenderedImage img');
                                     return imgs.length === 1 && imgs[0].getAttribute('src') !== old; }""",
                arg=[explorer.locator(".widget-output").element_handle(), plot_before])
            painted(explorer)
            return numbers()

        # Degree 9 -> 3 with the keyboard (the handle has focus; each arrow is one step).
        readout["degree 3"] = move("degree", ["ArrowLeft"] * 6, "3", "degree 3, λ = 0:")
        assert readout["degree 3"][1] < readout["start"][1] / 100, readout    # test MSE collapses
        assert readout["degree 3"][0] > readout["start"][0], readout          # no longer interpolates
        shot("explorer_after_degree.png", explorer)

        # Back to degree 9, then raise λ: the penalty trades training error for test error.
        readout["degree 9"] = move("degree", ["ArrowRight"] * 6, "9", "degree 9, λ = 0:")
        assert readout["degree 9"] == pytest.approx(readout["start"], abs=1e-4)
        readout["degree 9, log10 λ = -2"] = move("log10 λ", ["ArrowRight"] * 12, "-2.00",
                                                 "degree 9, λ = 0.01:")
        ridge = readout["degree 9, log10 λ = -2"]
        assert ridge[1] < readout["degree 9"][1] / 10, readout
        assert ridge[0] > readout["degree 9"][0], readout
        shot("explorer_after_lambda.png", explorer)
        log("explorer readouts (train MSE, test MSE): " + json.dumps(readout))
    except BaseException:
        try:
            shot("failure.png")
        except Exception:  # noqa: BLE001 - best effort; the real failure is what is reported
            pass
        raise
    finally:
        server_log = artifacts_dir / "jupyterlab.log"
        shutil.copy(jupyter_lab["log"], server_log)
        record_property("jupyterlab log", str(server_log))
        record_property("run log", str(run_log))
        print("browser artefacts:", *[str(p) for p in shots.values()], str(run_log), sep="\n  ")


def test_class_report_opens_with_its_figures(browser_page, tmp_path):
    """The class report is one self-contained file: opened from disk in Chromium, its three
    figures decode and have a size."""
    import test_class_report as t
    from helpers.grading import classreport

    t._write(tmp_path, t.GRADEBOOK, t.GRADES)
    path = classreport.write_class_report(tmp_path, t.PREDS)
    page = browser_page
    page.goto(path.resolve().as_uri())
    sizes = page.evaluate("""async () => {
      const imgs = [...document.querySelectorAll('img')];
      await Promise.all(imgs.map(i => i.decode().catch(() => null)));
      return imgs.map(i => [i.naturalWidth, i.naturalHeight]);
    }""")
    assert len(sizes) == 3 and all(w > 100 and h > 100 for w, h in sizes), sizes
    assert page.locator("h1").inner_text() == "Class report"
