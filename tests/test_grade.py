"""The grader (``python -m helpers.grade``) on honest, broken and hostile submissions.

One batch holds every case (see ``tests/submissions/cases.py``) and is graded once through
the command line with ``--jobs 2``; each test then asserts on its rows and feedback. A
smaller batch graded with ``--jobs 1`` must give the same rows.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from helpers import cells, course
from helpers.checks import lesson_exercises

sys.path.insert(0, str(Path(__file__).parent / "submissions"))
import cases as case_defs  # noqa: E402

pytestmark = pytest.mark.slow

PY = sys.executable
CELL_TIMEOUT = "20"
SEED = "20261130"  # one case seed for every run here, so that two runs compare cell for cell


def _grade(paths, out: Path, jobs: int, extra=()):
    cmd = [PY, "-m", "helpers.grade", *map(str, paths), "--out", str(out), "--jobs", str(jobs),
           "--timeout", CELL_TIMEOUT, "--seed", SEED, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=course.ROOT, timeout=900)


def _rows(out: Path) -> list[dict]:
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    if not (course.SOLUTIONS / "01_overfitting.ipynb").exists():
        pytest.skip("lesson 01 is not written yet")
    root = tmp_path_factory.mktemp("grade")
    subs = root / "submissions"
    # files a hostile submission tries to delete or overwrite: one in the repository, another
    # learner's submission (a file of the batch), a file in the grader's output folder
    repo_canary = course.ROOT / f".grade-canary-{uuid.uuid4().hex[:8]}"
    repo_canary.write_text("canary")
    other = subs / "exercises" / "01_overfitting.ipynb"
    out = root / "out"
    out.mkdir()
    (out / "keep.txt").write_text("grader output")
    writes = [course.ROOT / "helpers" / f"_hacked_{uuid.uuid4().hex[:6]}.py", out / "gradebook.csv"]
    canaries = [repo_canary, other, out / "keep.txt"]
    cases = case_defs.build(subs, canaries=canaries, writes=writes)
    # the batch mixes every lesson on purpose: name them all as the assignment (by default the
    # grader would take lesson 01, which most files are, and give the others an error row)
    lessons = ",".join(l for l, (n, _) in sorted(course.LESSONS.items())
                       if (course.SOLUTIONS / f"{n}.ipynb").exists())
    try:
        proc = _grade([subs], out, jobs=2, extra=["--lessons", lessons])
        yield {"root": root, "subs": subs, "out": out, "proc": proc, "cases": cases,
               "rows": _rows(out) if (out / "gradebook.csv").exists() else [],
               "canaries": canaries, "writes": writes}
    finally:
        repo_canary.unlink(missing_ok=True)
        writes[0].unlink(missing_ok=True)


def _label(batch, name):
    return os.path.join(str(batch["subs"]), name)


def _sources(path: Path) -> str:
    """Every cell source of a submitted notebook ('' when it does not parse)."""
    import json
    try:
        nb = json.loads(path.read_bytes())
        return "\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                         for c in nb.get("cells", []) if isinstance(c, dict) and "source" in c)
    except Exception:  # noqa: BLE001 - a broken file holds no code of the learner
        return ""


def _isolated(batch) -> bool:
    fb = next((batch["out"] / "feedback").glob("*.md"))
    text = fb.read_text()
    return "isolation: namespaces" in text or "isolation: bubblewrap" in text


def test_cli_exit_status_and_outputs(batch):
    proc = batch["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (batch["out"] / "gradebook.csv").exists()
    header = (batch["out"] / "gradebook.csv").read_text().splitlines()[0].split(",")
    assert header[:7] == ["submission", "lesson", "exercise", "points", "max_points", "status", "message"]
    assert "seed" in header and {r["seed"] for r in batch["rows"]} == {SEED}
    assert "gradebook" in proc.stdout  # the summary table
    statuses = {r["status"] for r in batch["rows"]}
    assert statuses <= {"passed", "failed", "error", "timeout", "missing"}


def test_every_case_gets_its_rows(batch):
    """One assertion message listing every case that went wrong."""
    problems = []
    isolated = _isolated(batch)
    by_sub: dict = {}
    for r in batch["rows"]:
        by_sub.setdefault(r["submission"], []).append(r)
    for name, case in batch["cases"].items():
        rows = by_sub.get(_label(batch, name))
        if not rows:
            problems.append(f"{name}: no rows")
            continue
        if case.lesson:
            ids = [e.id for e in lesson_exercises(case.lesson)]
            got_ids = [r["exercise"] for r in rows]
            if got_ids != ids:
                problems.append(f"{name}: exercises {got_ids}, expected {ids}")
        for r in rows:
            if r["lesson"] != case.lesson:
                problems.append(f"{name}: lesson {r['lesson']!r}, expected {case.lesson!r}")
            want = case.expect.get(r["exercise"], case.expect.get("*"))
            if want is not None and r["status"] != want:
                problems.append(f"{name} {r['exercise']}: {r['status']} ({r['message'][:200]}), expected {want}")
            if float(r["points"]) != (float(r["max_points"]) if r["status"] == "passed" else 0.0):
                problems.append(f"{name} {r['exercise']}: points {r['points']} for {r['status']}")
            sub = case.contains.get(r["exercise"])
            if sub and sub not in r["message"]:
                problems.append(f"{name} {r['exercise']}: message {r['message'][:300]!r} lacks {sub!r}")
            if isolated:
                sub = case.sandbox_only.get(r["exercise"])
                if sub and sub not in r["message"]:
                    problems.append(f"{name} {r['exercise']}: message {r['message'][:300]!r} lacks {sub!r}")
                for bad in case.forbidden:
                    if bad in r["message"]:
                        problems.append(f"{name} {r['exercise']}: {bad!r} in {r['message'][:300]!r}")
    assert not problems, "\n".join(problems)


def test_rows_in_order(batch):
    subs = []
    for r in batch["rows"]:
        if not subs or subs[-1] != r["submission"]:
            subs.append(r["submission"])
    assert len(subs) == len(set(subs)), "rows of one submission are not together"
    rel = [os.path.relpath(s, batch["subs"]) for s in subs]
    assert rel == sorted(rel, key=lambda p: Path(p).parts)


def test_feedback_files(batch):
    fb = batch["out"] / "feedback"
    files = sorted(fb.glob("*.md"))
    assert len(files) == len(batch["cases"])  # same stem twice still gives two files
    names = {r["feedback"] for r in batch["rows"]}
    assert {f"feedback/{f.name}" for f in files} == names
    snippets = case_defs.solution_snippets("01")
    assert snippets
    sub_of = {r["feedback"]: r["submission"] for r in batch["rows"]}
    checked = 0
    for f in files:
        text = f.read_text()
        assert "isolation:" in text
        # a learner's own code may be quoted back to them (an exception report names the line
        # of their answer that raised); a reference line they did not write must never appear
        own = _sources(Path(sub_of[f"feedback/{f.name}"]))
        for s in snippets:
            if s in own:
                continue
            checked += 1
            assert s not in text, f"{f.name} leaks a line of the reference solution: {s}"
    assert checked >= len(snippets) * 5  # stubs, broken files, other lessons: checked in full
    by_sub = {r["submission"]: r["feedback"] for r in batch["rows"]}
    for name, case in batch["cases"].items():
        text = (batch["out"] / by_sub[_label(batch, name)]).read_text()
        for sub in case.feedback_contains:
            assert sub in text, f"{name}: feedback lacks {sub!r}"


def test_partial_feedback_has_hint(batch):
    by_sub = {r["submission"]: r["feedback"] for r in batch["rows"]}
    text = (batch["out"] / by_sub[_label(batch, "01_partial.ipynb")]).read_text()
    rows = [r for r in batch["rows"] if r["submission"] == _label(batch, "01_partial.ipynb")]
    got = sum(float(r["points"]) for r in rows)
    assert got >= 2 and f"Score: **{got:g} / {len(rows)}**" in text
    assert "with no correction" in text


def test_sandbox_kept_files_intact(batch):
    if not _isolated(batch):
        pytest.skip("no Linux namespaces here: the grader cannot protect files (see INSTRUCTORS.md)")
    for p in batch["canaries"]:
        assert p.exists(), f"{p} was deleted by a submission"
    assert (batch["out"] / "keep.txt").read_text() == "grader output"
    assert not batch["writes"][0].exists(), "a submission wrote into the repository"


def test_jobs_1_gives_the_same_gradebook(batch, tmp_path):
    """Part of the batch graded again with --jobs 1: the same CSV, cell for cell."""
    names = ["01_exit.ipynb", "01_invalid.ipynb", "01_partial.ipynb", "01_stubs.ipynb"]
    small = tmp_path / "small"
    for n in names:
        (small / n).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(batch["subs"] / n, small / n)
    out1 = tmp_path / "o1"
    p1 = _grade([small], out1, jobs=1)
    assert p1.returncode == 0, p1.stderr[-2000:]

    def table(rows, base):
        return [[os.path.relpath(r["submission"], base)] + [v for k, v in r.items() if k != "submission"]
                for r in rows]

    big = [r for r in batch["rows"] if os.path.relpath(r["submission"], batch["subs"]) in names]
    assert table(_rows(out1), small) == table(big, batch["subs"])


def test_usage_errors_exit_non_zero(tmp_path):
    p = subprocess.run([PY, "-m", "helpers.grade", str(tmp_path / "nope.ipynb"), "--out",
                        str(tmp_path / "o")], capture_output=True, text=True, cwd=course.ROOT)
    assert p.returncode == 2
    assert "no such file" in p.stderr
    (tmp_path / "empty").mkdir()
    p = subprocess.run([PY, "-m", "helpers.grade", str(tmp_path / "empty")], capture_output=True,
                       text=True, cwd=course.ROOT)
    assert p.returncode == 2
    p = subprocess.run([PY, "-m", "helpers.grade"], capture_output=True, text=True, cwd=course.ROOT)
    assert p.returncode == 2


def test_unrunnable_batch_needs_no_kernel(tmp_path):
    """Broken files and untouched stubs are graded without starting anything (fast)."""
    sys.path.insert(0, str(Path(__file__).parent / "submissions"))
    from builders import dumps, learner_copy
    (tmp_path / "01_bad.ipynb").write_bytes(b"{not json")
    (tmp_path / "01_overfitting.ipynb").write_bytes(dumps(learner_copy("01")))
    p = subprocess.run([PY, "-m", "helpers.grade", str(tmp_path), "--out", str(tmp_path / "o"), "-q"],
                       capture_output=True, text=True, cwd=course.ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = _rows(tmp_path / "o")
    assert {r["status"] for r in rows if r["submission"].endswith("01_bad.ipynb")} == {"error"}
    assert {r["status"] for r in rows if r["submission"].endswith("01_overfitting.ipynb")} == {"missing"}


def test_submission_time_limit(batch, tmp_path):
    """A cell that keeps printing and ignores interrupts is stopped by the per-run limit; the
    exercises before it keep their points."""
    from builders import dumps, fill, learner_copy, solution_sources
    nb = fill(learner_copy("01"), solution_sources("01"), {"ex1.4": case_defs.FLOOD})
    (tmp_path / "01_flood.ipynb").write_bytes(dumps(nb))
    p = _grade([tmp_path / "01_flood.ipynb"], tmp_path / "o", jobs=1, extra=["--submission-timeout", "30"])
    assert p.returncode == 0, p.stderr[-2000:]
    rows = {r["exercise"]: r for r in _rows(tmp_path / "o")}
    assert [rows[e]["status"] for e in ("ex1.1", "ex1.2", "ex1.3")] == ["passed"] * 3
    assert rows["ex1.4"]["status"] == "timeout"
    assert "submission exceeded 30 s" in rows["ex1.4"]["message"]


def test_self_grade_prints_result(batch):
    """A learner grading one file sees every exercise and its hint on the terminal."""
    out = batch["root"] / "self"
    p = _grade([batch["subs"] / "01_stubs.ipynb"], out, jobs=1)
    assert p.returncode == 0
    assert "0 / 4" in p.stdout and "ex1.4" in p.stdout and "not attempted" in p.stdout


# ---------------------------------------------------------------- no kernel needed

def test_assembly_uses_reference_cells_only():
    """The assembled notebook: grader cell + reference setup/check cells (records stripped from
    their stored outputs) + the learner's answers with nbval markers neutralised."""
    from builders import fill, learner_copy, solution_sources
    from helpers.checks import RECORD_KEY
    from helpers.grading.notebooks import assemble, find_answers, load_reference

    ref = load_reference("01", course.SOLUTIONS)
    sol = solution_sources("01")
    nb = fill(learner_copy("01"), sol, {"ex1.3": "# NBVAL_SKIP\ndef bias_variance(preds, f_true):\n    return 0.0, 0.0"})
    for c in nb.cells:  # a learner's edited check cell and tags never enter
        if cells.role(c) == "check":
            c.source = 'print("ex1.1 passed")'
            c.metadata["tags"] = ["nbval-skip"]
    answers = find_answers(nb, ref)
    assembled, infos = assemble(ref, answers)
    text = str(assembled)
    assert RECORD_KEY not in text
    assert 'print("ex1.1 passed")' not in text
    assert "nbval-skip" not in text
    roles = [i.role for i in infos]
    assert roles[:2] == ["grader", "setup"]
    checks = [c for c, i in zip(assembled.cells, infos) if i.role == "check"]
    assert all(c.metadata.get("tags") == ["nbval-check-output"] for c in checks)
    assert all(c.source.startswith("check(") for c in checks)
    mse_cell = next(c for c, i in zip(assembled.cells, infos) if i.exercise == "ex1.3" and i.role == "answer")
    assert mse_cell.source.splitlines()[0].strip() != "# NBVAL_SKIP"
    assert "ignored by the grader" in mse_cell.source


def test_answers_found_without_metadata():
    from builders import colab, fill, learner_copy, solution_sources
    from helpers.grading.notebooks import find_answers, load_reference

    ref = load_reference("01", course.SOLUTIONS)
    sol = solution_sources("01")
    found = find_answers(colab(fill(learner_copy("01"), sol)), ref)
    assert {k: a.how for k, a in found.items()} == {e.id: "name" for e in ref.exercises}
    stubs = find_answers(colab(learner_copy("01")), ref)
    assert {a.status for a in stubs.values()} == {"missing"}
    assert all("stub" in a.message for a in stubs.values())
    # a syntax error does not hide the answer: it is found by pattern and fails when it runs
    broken = fill(learner_copy("01"), sol, {"ex1.3": "def bias_variance(preds, f_true):\n    return (preds - f_true) **"})
    assert find_answers(colab(broken), ref)["ex1.3"].status == "found"
    # the answer written in a new cell below an untouched stub is found by name
    nb = learner_copy("01")
    idx = next(i for i, c in enumerate(nb.cells) if cells.exercise_id(c) == "ex1.3")
    import nbformat
    nb.cells.insert(idx + 2, nbformat.v4.new_code_cell(sol["ex1.3"]))
    a = find_answers(nb, ref)["ex1.3"]
    assert (a.status, a.how) == ("found", "name")


def test_parse_errors_are_explained():
    from helpers.grading.notebooks import SubmissionError, parse_notebook

    for data, words in [(b"", "empty"), (b"{", "not valid notebook JSON"), (b"[]", "not a Jupyter"),
                        (b"\xff\xfe\x00", "not UTF-8"), (b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}', "no code cells"),
                        (b'{"nbformat": 4, "cells": 7}', "could not be read")]:
        with pytest.raises(SubmissionError, match=words):
            parse_notebook(data)


def test_grader_refuses_library_code_in_the_answer_text():
    """The grader's own scan of the answer's source (beside the spies in the kernel)."""
    from helpers.checks.core import Exercise
    from helpers.grading.notebooks import Answer
    from helpers.grading.runner import refuse_library

    ex = Exercise("ex9.1", "drop", lambda a, s: {}, lambda d, s: None,
                  forbid=("torch.nn.functional.dropout", "torch.nn.Dropout.forward"),
                  forbid_hint="keep each value with probability 1 - p")
    honest = Answer("ex9.1", "def drop(x, p):\n    return x * (torch.rand_like(x) >= p) / (1 - p)", "found")
    lib = Answer("ex9.1", "import torch.nn.functional as F\ndef drop(x, p):\n    return F.dropout(x, p)", "found")
    assert refuse_library(ex, honest, "passed", "") == ("passed", "")
    status, msg = refuse_library(ex, lib, "passed", "")
    assert status == "failed" and "torch.nn.functional.dropout" in msg and "probability 1 - p" in msg
    assert refuse_library(ex, lib, "timeout", "t")[0] == "timeout"
    assert refuse_library(ex, Answer("ex9.1", None, "missing"), "missing", "m") == ("missing", "m")


def test_seed_option(tmp_path):
    from helpers.grade import build_parser
    assert build_parser().parse_args(["x", "--seed", "7"]).seed == 7
    p = subprocess.run([PY, "-m", "helpers.grade", "x", "--seed", "-1"], capture_output=True,
                       text=True, cwd=course.ROOT)
    assert p.returncode == 2
    from helpers.grading.runner import Options, draw_seed
    assert all(draw_seed() != 0 for _ in range(1000))
    o = Options()
    assert o.case_seed() == o.case_seed() != 0


def test_a_judge_that_hangs_costs_one_exercise(monkeypatch):
    """A judge stuck at some seed (a lesson bug) gives an error verdict, not a hung batch."""
    import time

    from helpers.checks.core import Exercise
    from helpers.grading import runner

    monkeypatch.setattr(runner, "JUDGE_TIMEOUT", 0.5)
    stuck = Exercise("ex9.2", "f", lambda a, s: {}, lambda d, s: time.sleep(3))
    v = runner.run_judge(stuck, {"data": {}}, 5)
    assert v.status == "error" and "could not judge" in v.message
    fine = Exercise("ex9.3", "g", lambda a, s: {}, lambda d, s: None)
    assert runner.run_judge(fine, {"data": {}}, 5).status == "passed"  # the lock was replaced
