"""What a graded kernel can see under bubblewrap: an allow-list, not the host minus a list.

A readable file planted beside the course checkout (outside every folder the deny-list levels
hide) and a second clone of the course with its own ``solutions/`` must not exist for a
submission, nor the checkout around the ``helpers`` the kernel imports. Skipped where
bubblewrap cannot run (the deny-list levels do show such files; the README says so).
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from helpers import course
from helpers.grading import sandbox

sys.path.insert(0, str(Path(__file__).parent / "submissions"))

pytestmark = pytest.mark.slow

LOOK = """\
import os, helpers
_found = []
for _p in {paths!r} + [os.path.join(os.path.dirname(os.path.dirname(helpers.__file__)), "solutions"),
                       os.path.join(os.path.dirname(os.path.dirname(helpers.__file__)), "README.md")]:
    if os.path.exists(_p):
        _found.append("FOUND " + _p)
for _top in ("/srv", "/opt", "/home", "/root", "/work", "/mnt", "/media", "/var"):
    try:
        for _name in os.listdir(_top):
            _found.append("LISTED " + _top + "/" + _name)
    except OSError:
        pass
def bias_variance(preds, f_true):
    raise RuntimeError("seen: " + (" | ".join(_found) or "nothing"))
"""


@pytest.fixture
def planted():
    """A secret file and a second clone (with solutions/) beside the course checkout."""
    base = course.ROOT.parent / f".grade-plant-{uuid.uuid4().hex[:8]}"
    secret = base / "private" / "secret.txt"
    clone = base / "course-clone"
    try:
        secret.parent.mkdir(parents=True)
        secret.write_text("secret")
        secret.chmod(0o644)
        (clone / "solutions").mkdir(parents=True)
        (clone / "helpers").mkdir()
        shutil.copy(course.SOLUTIONS / "01_overfitting.ipynb", clone / "solutions")
        for p in (base, secret.parent, clone, clone / "solutions"):
            p.chmod(0o755)
    except OSError as e:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"cannot plant files beside the checkout: {e}")
    yield [str(secret), str(clone / "solutions" / "01_overfitting.ipynb"), str(clone)]
    shutil.rmtree(base, ignore_errors=True)


def test_submission_finds_nothing_outside_its_view(tmp_path, planted):
    level = sandbox.detect("auto")
    if level not in (sandbox.LEVEL_BWRAP, sandbox.LEVEL_BWRAP_UID):
        pytest.skip(f"bubblewrap cannot run here (isolation: {level})")
    from builders import dumps, fill, learner_copy, solution_sources

    for p in planted:  # readable by anyone outside the sandbox
        assert Path(p).exists()
    src = LOOK.format(paths=planted)
    nb = fill(learner_copy("01"), solution_sources("01"), {"ex1.3": src})
    sub = tmp_path / "01_overfitting.ipynb"
    sub.write_bytes(dumps(nb))
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "helpers.grade", str(sub), "--out", str(out), "-q",
                        "--isolation", "bubblewrap", "--seed", "1"],
                       capture_output=True, text=True, cwd=course.ROOT, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as f:
        rows = {r["exercise"]: r for r in csv.DictReader(f)}
    msg = rows["ex1.3"]["message"]
    assert rows["ex1.3"]["status"] == "error" and "seen:" in msg, msg
    assert "FOUND" not in msg, msg
    # the listed folders hold only what the allow-list binds (the Python environment)
    allowed = [str(x) for x in sandbox.bwrap_paths()] + [str(x) for x in sandbox.BWRAP_SYSTEM]
    for item in msg.split("seen: ", 1)[1].split(" | "):
        if item.startswith("LISTED "):
            path = item[len("LISTED "):].split(" (")[0].strip()
            assert any(a == path or a.startswith(path + "/") or path.startswith(a + "/")
                       for a in allowed), f"the kernel sees {path}"
    assert rows["ex1.1"]["status"] == "passed", rows["ex1.1"]  # the lesson still runs
    assert "isolation: bubblewrap" in (out / "feedback" / "01_overfitting.md").read_text()


def test_bwrap_command_binds_no_checkout():
    """The bind list: the environment and helpers/ only, never the checkout or solutions/."""
    if not shutil.which("bwrap"):
        pytest.skip("bubblewrap is not installed")
    paths = sandbox.bwrap_paths()
    root = course.ROOT.resolve()
    assert root not in paths
    assert all(not sandbox._is_within(course.SOLUTIONS.resolve(), p) for p in paths)
    assert (root / "helpers") in paths or sandbox.kernel_helpers_dir() in paths
