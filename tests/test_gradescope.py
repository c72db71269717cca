"""The Gradescope autograder zip: built, unpacked like /autograder/, run on a few submissions.

Gradescope's specification (https://gradescope-autograders.readthedocs.io/en/latest/specs/):
``setup.sh`` and ``run_autograder`` at the root of the zip, the zip's contents in
``/autograder/source``, the submission in ``/autograder/submission``, the result in
``/autograder/results/results.json``. ``setup.sh`` installs from the network, so it is only
read here; ``run_autograder`` runs with this environment's Python.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import course
from helpers.checks import lesson_exercises
from helpers.grading import gradescope

sys.path.insert(0, str(Path(__file__).parent / "submissions"))
import cases as case_defs  # noqa: E402
from builders import dumps, fill, learner_copy, solution_sources  # noqa: E402

pytestmark = pytest.mark.slow

LESSON = "01"
TOP_KEYS = {"score": float, "execution_time": int, "output": str, "visibility": str,
            "stdout_visibility": str, "tests": list, "extra_data": dict}
TEST_KEYS = {"name": str, "score": float, "max_score": float, "status": str, "output": str,
             "visibility": str}
VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}


@pytest.fixture(scope="module")
def autograder(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gs")
    zpath = tmp / "autograder.zip"
    p = subprocess.run([sys.executable, "-m", "helpers.grade", "--gradescope", LESSON, "--out",
                        str(zpath), "--timeout", "30"], capture_output=True, text=True,
                       cwd=course.ROOT, timeout=300)
    assert p.returncode == 0, p.stderr
    return zpath


def _unpack(zpath: Path, root: Path) -> Path:
    """Lay the zip out as Gradescope does: /autograder/source, /autograder/run_autograder."""
    src = root / "source"
    src.mkdir(parents=True)
    with zipfile.ZipFile(zpath) as z:
        z.extractall(src)
        for info in z.infolist():  # zipfile drops the mode bits: restore them
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(src / info.filename, mode)
    shutil.copy(src / "run_autograder", root / "run_autograder")
    os.chmod(root / "run_autograder", 0o755)
    (root / "submission").mkdir()
    return root


def _run(zpath: Path, root: Path, files: dict) -> dict:
    _unpack(zpath, root)
    for name, data in files.items():
        (root / "submission" / name).write_bytes(data)
    env = dict(os.environ, **{gradescope.ROOT_ENV: str(root), gradescope.PYTHON_ENV: sys.executable})
    p = subprocess.run([str(root / "run_autograder")], cwd=root, env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    res = json.loads((root / "results" / "results.json").read_text())
    _validate(res)
    return res


def _validate(res: dict) -> None:
    """Every field Gradescope reads, with its type and allowed values."""
    for k, t in TOP_KEYS.items():
        assert isinstance(res.get(k), t), f"results.json {k}: {res.get(k)!r} is not {t.__name__}"
    assert res["visibility"] in VISIBILITY and res["stdout_visibility"] in VISIBILITY
    assert res["execution_time"] >= 0
    ids = [e.id for e in lesson_exercises(LESSON)]
    assert [t["name"].split()[0] for t in res["tests"]] == ids
    for t in res["tests"]:
        for k, typ in TEST_KEYS.items():
            assert isinstance(t.get(k), typ), f"test {t.get('name')}: {k} = {t.get(k)!r}"
        assert t["status"] in ("passed", "failed")
        assert t["visibility"] == "visible"  # learners see their hints
        assert 0 <= t["score"] <= t["max_score"]
        assert (t["score"] == t["max_score"]) == (t["status"] == "passed")
        assert t["output"].strip()
    assert res["score"] == sum(t["score"] for t in res["tests"])
    assert "seed" not in json.dumps(res["tests"]) + res["output"]


def test_zip_layout(autograder):
    with zipfile.ZipFile(autograder) as z:
        names = set(z.namelist())
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in z.infolist()}
        setup = z.read("setup.sh").decode()
        config = json.loads(z.read("config.json"))
    assert {"setup.sh", "run_autograder", "config.json"} <= names
    assert modes["run_autograder"] & stat.S_IXUSR and modes["setup.sh"] & stat.S_IXUSR
    stem = course.LESSONS[LESSON][0]
    assert f"course/solutions/{stem}.ipynb" in names
    assert not any(n.startswith("course/solutions/") and stem not in n for n in names)
    assert "course/helpers/grading/gradescope.py" in names and "course/pyproject.toml" in names
    assert not any(n.startswith(("course/tests/", "course/notebooks/", "course/.git")) for n in names)
    assert config["lessons"] == [LESSON] and len(config["commit"]) >= 7
    assert "download.pytorch.org/whl/cpu" in setup and config["torch"] in setup
    assert "pip install -q /autograder/source/course" in setup and "-e" not in setup.split()
    assert subprocess.run(["bash", "-n", "-c", setup]).returncode == 0


def test_honest_broken_hostile(autograder, tmp_path):
    sol = solution_sources(LESSON)
    ex = learner_copy(LESSON)
    ids = [e.id for e in lesson_exercises(LESSON)]

    honest = _run(autograder, tmp_path / "honest", {"01_overfitting.ipynb": dumps(fill(ex, sol))})
    passed = [t["name"].split()[0] for t in honest["tests"] if t["status"] == "passed"]
    assert passed[:3] == ids[:3], honest  # the lesson's exercises that the reference answers
    assert honest["score"] >= 3

    broken = _run(autograder, tmp_path / "broken", {"Copy of 01_overfitting.ipynb": b"{not json"})
    assert broken["score"] == 0
    assert all("not valid notebook JSON" in t["output"] for t in broken["tests"]), broken

    hostile = _run(autograder, tmp_path / "hostile", {
        "01_overfitting.ipynb": dumps(fill(ex, sol, {"ex1.1": case_defs.PATCH_CORE,
                                                     "ex1.3": case_defs.FAKE_PRINT}))})
    by = {t["name"].split()[0]: t for t in hostile["tests"]}
    assert by["ex1.1"]["status"] == "failed" and by["ex1.3"]["status"] == "failed", hostile

    nothing = _run(autograder, tmp_path / "nothing", {"notes.txt": b"hello"})
    assert nothing["score"] == 0 and all("no notebook" in t["output"] for t in nothing["tests"])
