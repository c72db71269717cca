"""A correct answer's verdict never depends on what is graded beside it.

One correct lesson 03 submission, copied 32 times, graded in one ``--jobs 2`` batch among
hostile ones (an infinite loop, huge allocations, a crash): every copy must get the same
rows, all ``passed``. No ``--seed``: each CI run draws a fresh case seed, so a judge whose
tolerance sits at the edge for some inputs shows up here over time (the seed is in the
failure message, to reproduce it).
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import course
from helpers.checks import lesson_exercises

sys.path.insert(0, str(Path(__file__).parent / "submissions"))
import cases as case_defs  # noqa: E402
from builders import dumps, fill, learner_copy, solution_sources  # noqa: E402

pytestmark = pytest.mark.slow

COPIES = 32
LESSON = "03"

HUGE = """\
import torch
_hog = [torch.empty(2**27) for _ in range(200)]  # 100 GB of address space, in pieces
def gaussian_dropout(x, p, training, generator=None):
    return x, None"""

CRASH = """\
import ctypes
ctypes.string_at(0)"""


def test_same_verdict_beside_hostile_neighbours(tmp_path):
    if not (course.SOLUTIONS / f"{course.LESSONS[LESSON][0]}.ipynb").exists():
        pytest.skip(f"lesson {LESSON} is not written yet")
    sol = solution_sources(LESSON)
    ex = learner_copy(LESSON)
    correct = dumps(fill(ex, sol))
    ids = [e.id for e in lesson_exercises(LESSON)]
    first, second = ids[0], ids[1]
    hostile = {
        "loop": fill(ex, sol, {first: case_defs.LOOP_IGNORING_INTERRUPT}),
        "huge": fill(ex, sol, {second: HUGE}),
        "crash": fill(ex, sol, {first: CRASH}),
        "memory": fill(ex, sol, {second: case_defs.MEMORY_TORCH.replace(
            "bias_variance(preds, f_true)", "gaussian_dropout(x, p, training, generator=None)")}),
    }
    sub = tmp_path / "batch"
    sub.mkdir()
    names = []
    for i in range(COPIES):
        # hostile neighbours spread through the batch, so that they run beside correct copies
        if i % 8 == 0:
            key = list(hostile)[(i // 8) % len(hostile)]
            (sub / f"{i:02d}_hostile_{key}_{LESSON}.ipynb").write_bytes(dumps(hostile[key]))
        name = f"{i:02d}_correct_{LESSON}.ipynb"
        (sub / name).write_bytes(correct)
        names.append(name)
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "helpers.grade", str(sub), "--out", str(out),
                        "--jobs", "2", "--timeout", "15", "--submission-timeout", "60", "-q"],
                       capture_output=True, text=True, cwd=course.ROOT, timeout=1500)
    assert p.returncode == 0, p.stderr[-3000:]
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    seed = rows[0]["seed"]
    verdicts: dict = {}
    for r in rows:
        if "_correct_" in r["submission"]:
            verdicts.setdefault(Path(r["submission"]).name, {})[r["exercise"]] = (r["status"], r["message"])
    assert sorted(verdicts) == sorted(names)
    bad = {n: {e: v for e, v in v_.items() if v[0] != "passed"} for n, v_ in verdicts.items()}
    bad = {n: v for n, v in bad.items() if v}
    assert not bad, f"case seed {seed}: correct copies not passed: {bad}"
    assert all(list(v) == ids for v in verdicts.values())
    # the hostile ones were graded too (their own rows), without stopping the batch
    assert sum("_hostile_" in r["submission"] for r in rows) == len(ids) * (COPIES // 8)
