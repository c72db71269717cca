"""Unseen inputs: an answer that replays the published outputs passes the self-check, fails grading.

Check cells in the notebooks probe with the published case seed (0); the grader draws a fresh
seed per run and judges with it (``helpers.checks.core``). For every registered exercise whose
output depends on its inputs, the reference answer's record at seed 0 (what a learner who
hard-codes the published outputs returns) must pass the judge at seed 0 and fail it at other
seeds. An exercise still on fixed inputs fails here, by name, until its lesson converts.

Then one end-to-end run: lesson 01 answered by functions that return the published outputs
in call order passes ``check`` in the notebook and fails ``python -m helpers.grade``.
"""

from __future__ import annotations

import base64
import csv
import pickle
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers import course
from helpers.cells import exercise_id, role, without_markers
from helpers.checks import core

OTHER_SEEDS = (1, 12345)


def _lessons():
    return [l for l, (n, _) in sorted(course.LESSONS.items())
            if (course.SOLUTIONS / f"{n}.ipynb").exists()]


def _exercises():
    out = []
    for lesson in _lessons():
        try:
            exs = core.lesson_exercises(lesson)
        except Exception:  # noqa: BLE001 - a lesson module being rewritten: its test says so
            continue
        out += [pytest.param(lesson, e.id, id=e.id) for e in exs]
    return out


_NS: dict = {}


def _namespace(lesson: str) -> dict:
    """The exercise section's setup cell and every reference answer, run in one namespace."""
    if lesson not in _NS:
        nb = nbformat.read(course.SOLUTIONS / f"{course.LESSONS[lesson][0]}.ipynb", as_version=4)
        ns: dict = {"__name__": f"reference_{lesson}"}
        for c in nb.cells:
            if c.cell_type == "code" and role(c) in ("setup", "answer"):
                src = without_markers(c.source)
                exec(compile(src, f"<{role(c)} {exercise_id(c) or ''}>", "exec"), ns)  # noqa: S102
        _NS[lesson] = ns
    return _NS[lesson]


@pytest.mark.parametrize("lesson, ex_id", _exercises())
def test_replayed_published_outputs_fail_at_another_seed(lesson, ex_id):
    ex = core.get(ex_id)
    if ex.kind == "value":
        pytest.skip(f"{ex_id} asks for a value, not a function of inputs")
    answer = _namespace(lesson).get(ex.name)
    assert answer is not None, f"solutions/ for lesson {lesson} defines no `{ex.name}` ({ex_id})"
    verdict, record = core.run(ex_id, answer, seed=core.PUBLISHED_SEED)
    assert verdict.passed, f"the reference fails {ex_id} at the published seed: {verdict.message}"
    record = core._json_roundtrip(record)
    assert ex.run_judge(record, core.PUBLISHED_SEED).passed  # the learner's self-check
    assert core._takes_seed(ex.probe) and core._takes_seed(ex.judge), \
        f"{ex_id} still has fixed inputs: its probe and judge take no case seed"
    for seed in OTHER_SEEDS:
        v = ex.run_judge(record, seed)
        assert not v.passed, (f"{ex_id}: the outputs of the published inputs pass the judge at "
                              f"seed {seed}: an answer hard-coding them would pass grading")
        assert v.status == "failed", f"{ex_id} at seed {seed}: {v.status} {v.message}"
        # the reference itself passes at that seed
        ref_v, _ = core.run(ex_id, answer, seed=seed)
        assert ref_v.passed, f"the reference fails {ex_id} at seed {seed}: {ref_v.message}"


# ---------------------------------------------------------------- end to end, lesson 01

REPLAY = """\
import base64 as _b64, pickle as _pickle
_{name}_outs = _pickle.loads(_b64.b64decode({blob!r}))
_{name}_calls = [0]
def {name}(*args, **kwargs):
    out = _{name}_outs[_{name}_calls[0] % len(_{name}_outs)]
    _{name}_calls[0] += 1
    return out
"""


def _replay_source(ex, answer) -> str:
    """An answer to ``ex`` that returns, in call order, what ``answer`` returned at seed 0."""
    outs = []

    def recorder(*args, **kwargs):
        out = answer(*args, **kwargs)
        outs.append(out)
        return out

    v, _ = core.run(ex.id, recorder, seed=core.PUBLISHED_SEED)
    assert v.passed and outs
    blob = base64.b64encode(pickle.dumps(outs)).decode()
    return REPLAY.format(name=ex.name, blob=blob)


def _grade(path: Path, out: Path, seed: int) -> dict:
    p = subprocess.run([sys.executable, "-m", "helpers.grade", str(path), "--out", str(out),
                        "--seed", str(seed), "-q", "--timeout", "60"],
                       capture_output=True, text=True, cwd=course.ROOT, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["seed"] for r in rows} == {str(seed)}
    return {r["exercise"]: r for r in rows}


@pytest.mark.slow
def test_hard_coded_lesson01_passes_self_check_fails_grading(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent / "submissions"))
    from builders import dumps, fill, learner_copy

    ns = _namespace("01")
    exs = [ex for ex in core.lesson_exercises("01") if ex.name in ns]  # ex1.4 may be in rewrite
    assert len(exs) >= 3
    sources = {}
    for ex in exs:
        sources[ex.id] = _replay_source(ex, ns[ex.name])
        replay_ns: dict = {}
        exec(sources[ex.id], replay_ns)  # noqa: S102
        v, _ = core.run(ex.id, replay_ns[ex.name], seed=core.PUBLISHED_SEED)
        assert v.passed, f"the replaying {ex.id} fails its self-check: {v.message}"
    # and one that also tells the kernel to probe with the published seed: no help
    first = exs[0].id
    sources[first] = 'import os\nos.environ["COURSE_CASE_SEED"] = "0"\n' + sources[first]
    sub = tmp_path / "01_overfitting.ipynb"
    sub.write_bytes(dumps(fill(learner_copy("01"), sources)))
    published = _grade(sub, tmp_path / "o0", seed=core.PUBLISHED_SEED)
    assert {e: published[e]["status"] for e in sources} == {e: "passed" for e in sources}
    unseen = _grade(sub, tmp_path / "o1", seed=424242)
    assert {e: unseen[e]["status"] for e in sources} == {e: "failed" for e in sources}
    feedback = "".join(p.read_text() for p in (tmp_path / "o1" / "feedback").glob("*.md"))
    assert "424242" not in feedback  # the seed is in the gradebook only
    assert "changed the case seed" in feedback
