"""The Colab setup cell, simulated.

Every notebook starts with a setup cell (written by ``helpers/build.py``, ``COLAB_SETUP``):
on Colab (``google.colab`` imported, or ``COLAB_RELEASE_TAG`` set) and only when ``helpers``
does not import, it runs ``pip install -q --no-deps git+<repo>``, where ``<repo>`` is
``helpers.course.REPO_URL`` or ``COURSE_REPO_URL``. Elsewhere it must do nothing.

Colab here is:

- a throwaway git repository made from the current working tree (what ``git ls-files``
  would push, committed or not), reached as ``COURSE_REPO_URL=file://...``;
- a fresh virtual environment that has torch, NumPy, matplotlib, ipykernel... but not the
  course package: its site-packages holds symlinks to the course venv's packages, minus the
  editable install of ``helpers`` (so ``import helpers`` fails, and pip, which sees the
  symlinks as installed packages, finds nothing it could uninstall or replace in the course
  venv);
- ``COLAB_RELEASE_TAG`` set in the kernel's environment.

Offline and hermetic: pip gets ``PIP_NO_INDEX=1`` (``--no-deps`` must need no index, so
nothing at all, torch least of all, can be downloaded) and ``PIP_NO_BUILD_ISOLATION=0``
(build with the setuptools already there, instead of fetching one into an isolated build
environment as pip would on Colab).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from helpers import course
from helpers.build import role

LESSON = course.NOTEBOOKS / "01_overfitting.ipynb"
INSTALL_BANNER = "Installing the course helpers from"
COURSE_DIST = "regularization_course_helpers"


def setup_cell_source(nb) -> str:
    cells = [c for c in nb.cells if role(c) == "colab"]
    assert len(cells) == 1, "a notebook has exactly one Colab setup cell"
    assert nb.cells.index(cells[0]) <= 1, "the setup cell comes first (after the badge)"
    return cells[0].source


def clean_env(**extra) -> dict:
    """The test process's environment without anything that would make it Colab or point
    Python at the course (a CI runner's PYTHONPATH, a virtualenv's variables)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("COLAB_RELEASE_TAG", "COURSE_REPO_URL", "PYTHONPATH", "PYTHONHOME",
                        "VIRTUAL_ENV", "MPLBACKEND", "PIP_REQUIRE_VIRTUALENV")}
    env.update(extra)
    return env


def run_py(python, code, cwd, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-c", code], cwd=cwd, env=env or clean_env(),
                          capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------------ local: no-op
def test_setup_cell_points_at_the_course_repository():
    src = setup_cell_source(nbformat.read(LESSON, as_version=4))
    assert f'os.environ.get("COURSE_REPO_URL", "{course.REPO_URL}")' in src
    assert '"--no-deps"' in src and '"git+" + repo' in src


@pytest.mark.parametrize("colab", [False, True], ids=["local", "colab-with-helpers"])
def test_setup_cell_is_silent_when_helpers_imports(tmp_path, colab):
    """Locally (no Colab markers) the cell does nothing; on Colab with ``helpers`` already
    importable (a re-run) it does nothing either: no message, no pip (the repository URL is
    unusable, so an install attempt would fail loudly)."""
    src = setup_cell_source(nbformat.read(LESSON, as_version=4))
    extra = {"COURSE_REPO_URL": f"file://{tmp_path}/no-such-repo"}
    if colab:
        extra["COLAB_RELEASE_TAG"] = "release-colab-simulated"
    proc = run_py(sys.executable, src, cwd=tmp_path, env=clean_env(**extra))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == "", (proc.stdout, proc.stderr)


# ------------------------------------------------------------------------ Colab, simulated
def snapshot_repo(dest: Path) -> str:
    """A git repository holding the working tree as it would be pushed; returns its URL."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=course.ROOT, capture_output=True, text=True, check=True).stdout
    for rel in filter(None, files.split("\0")):
        src = course.ROOT / rel
        if src.is_file():                        # listed but deleted in the working tree: skip
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    git = ["git", "-c", "user.name=course-test", "-c", "user.email=course-test@localhost",
           "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "working tree snapshot"]):
        subprocess.run(git + args, cwd=dest, check=True, capture_output=True)
    return dest.as_uri()


def colab_like_venv(dest: Path) -> Path:
    """A venv with the course venv's packages (symlinked) except the course package itself."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest)], check=True,
                   capture_output=True)
    python = dest / "bin" / "python"
    site = Path(run_py(python, "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                       cwd=dest).stdout.strip())
    ours = Path(sysconfig.get_paths()["purelib"])
    for entry in ours.iterdir():
        name = entry.name.lower()
        if (name.startswith("__editable__") or name.startswith(COURSE_DIST)
                or name in ("helpers", "__pycache__")):
            continue
        (site / entry.name).symlink_to(entry)
    return python


def probe(python, cwd) -> dict:
    code = ("import json, importlib.util as u, torch\n"
            "h = u.find_spec('helpers')\n"
            "print(json.dumps({'torch_version': torch.__version__, 'torch_file': torch.__file__,"
            " 'helpers': h.origin if h else None}))")
    proc = run_py(python, code, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def real_entries(site: Path) -> set[str]:
    """What pip wrote into the venv (everything else there is a symlink made by the test)."""
    return {p.name for p in site.iterdir() if not p.is_symlink() and p.name != "__pycache__"}


@pytest.mark.slow
def test_colab_setup_installs_helpers_then_lesson_runs(tmp_path):
    repo_url = snapshot_repo(tmp_path / "repo")
    python = colab_like_venv(tmp_path / "colab-venv")
    site = Path(run_py(python, "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                       cwd=tmp_path).stdout.strip())
    work = tmp_path / "content"                  # like Colab's /content: the notebook alone
    work.mkdir()
    shutil.copy(LESSON, work / LESSON.name)

    before = probe(python, work)
    assert before["helpers"] is None, f"helpers already importable: {before['helpers']}"
    assert real_entries(site) == set(), real_entries(site)

    # A kernelspec for the simulated Colab python, known only to this test.
    kernels = tmp_path / "kernels"
    (kernels / "colab-sim").mkdir(parents=True)
    (kernels / "colab-sim" / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab (simulated)", "language": "python"}))
    km = KernelManager(kernel_name="colab-sim",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    env = clean_env(COLAB_RELEASE_TAG="release-colab-simulated", COURSE_REPO_URL=repo_url,
                    PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0", PIP_CONFIG_FILE=os.devnull,
                    PIP_CACHE_DIR=str(tmp_path / "pip-cache"), PIP_DISABLE_PIP_VERSION_CHECK="1")

    nb = nbformat.read(work / LESSON.name, as_version=4)
    client = NotebookClient(nb, km=km, timeout=1200, allow_errors=True,
                            resources={"metadata": {"path": str(work)}})
    client.execute(env=env)

    # The setup cell said what it did, and did not fail.
    setup = next(c for c in nb.cells if role(c) == "colab")
    setup_text = "".join(o.get("text", "") for o in setup.outputs)
    assert f"{INSTALL_BANNER} {repo_url}" in setup_text, setup.outputs
    assert not [o for o in setup.outputs if o.output_type == "error"], setup.outputs

    # Then the whole lesson ran: no cell raised (the exercise stubs only report verdicts).
    errors = [(i, o.ename, o.evalue) for i, c in enumerate(nb.cells) if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    not_run = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.execution_count is None]
    assert not not_run, not_run
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "training MSE" in printed and "validation accuracy" in printed
    checks = [c for c in nb.cells if role(c) == "check"]
    assert checks and all(any("text/plain" in o.get("data", {}) for o in c.outputs) for c in checks)

    # helpers now comes from the venv's own site-packages (installed from the repo), torch is
    # the one that was there before, and pip installed the course package and nothing else.
    after = probe(python, work)
    assert after["helpers"] is not None
    assert Path(after["helpers"]).resolve().is_relative_to(site.resolve()), after["helpers"]
    assert not Path(after["helpers"]).resolve().is_relative_to(course.ROOT), after["helpers"]
    assert (after["torch_version"], after["torch_file"]) == (before["torch_version"], before["torch_file"])
    installed = real_entries(site)
    assert len(installed) == 2 and "helpers" in installed, installed
    assert any(n.startswith(COURSE_DIST) and n.endswith(".dist-info") for n in installed), installed
    assert (site / "torch").is_symlink(), "pip replaced torch"
    # And the course venv is untouched: its helpers is still the editable checkout.
    assert probe(sys.executable, work)["helpers"] == str(course.ROOT / "helpers" / "__init__.py")
