"""Grading submissions: discover, read, assemble, run (in parallel), judge, collect rows."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import signal
import stat
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from helpers import course
from helpers.grading import sandbox
from helpers.grading.learners import Entry, Match, Roster, Who, match, who_of
from helpers.grading.notebooks import (Answer, Reference, SubmissionError, assemble, find_answers,
                                       infer_lesson, lesson_in_name, lesson_of, load_reference,
                                       parse_notebook, records_in)

STATUSES = ("passed", "failed", "error", "timeout", "missing")
# Judges run in this process, one at a time: some build their references from torch's or
# NumPy's global generator (a model's initial weights after torch.manual_seed), and two
# threads judging at once would draw from each other's streams: a correct answer compared with
# the reference of another model fails, depending on which submission is judged beside it.
_JUDGE_LOCK = threading.Lock()
JUDGE_TIMEOUT = 120.0   # seconds one judge may take in this process (a lesson bug, not an answer)


def run_judge(ex, record, seed: int):
    """``ex.run_judge(record, seed)`` one at a time, and within :data:`JUDGE_TIMEOUT`: a judge
    that never returns (a bug in a lesson's checks at some seed) costs its exercise an
    ``error`` verdict, not the whole batch. Its thread is left behind (a daemon)."""
    global _JUDGE_LOCK
    box: list = []
    lock = _JUDGE_LOCK

    def target():
        with lock:
            try:
                box.append(ex.run_judge(record, seed))
            except BaseException as e:  # noqa: BLE001 - run_judge catches; this is a last net
                box.append(e)

    t = threading.Thread(target=target, name=f"judge-{ex.id}", daemon=True)
    t.start()
    t.join(JUDGE_TIMEOUT)
    if t.is_alive():
        if lock is _JUDGE_LOCK:
            _JUDGE_LOCK = threading.Lock()  # the stuck judge keeps the old lock
        print(f"grade: the judge of {ex.id} did not finish within {JUDGE_TIMEOUT:g} s at case "
              f"seed {seed} (a bug in helpers/checks; rerun with --seed {seed} to reproduce)",
              file=sys.stderr)
        from helpers.checks.core import Verdict
        return Verdict(ex.id, "error", f"the grader could not judge this answer within "
                       f"{JUDGE_TIMEOUT:g} s (a problem of the course's checks, not of your "
                       "answer; your instructor has been told)")
    v = box[0]
    if isinstance(v, BaseException):
        from helpers.checks.core import Verdict
        return Verdict(ex.id, "error", f"the grader's judge failed ({type(v).__name__})")
    return v
MAX_RERUNS = 2


class UsageError(Exception):
    """Bad command-line input (a path that does not exist, nothing to grade)."""


@dataclass
class Row:
    submission: str
    lesson: str
    exercise: str
    points: float
    max_points: float
    status: str
    message: str


@dataclass
class Result:
    """Everything known about one graded submission."""

    submission: str                # the path as given / found
    path: Path
    lesson: str = ""
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)    # submission-level remarks for the feedback
    exercise_notes: dict = field(default_factory=dict)  # id -> [remarks]
    names: dict = field(default_factory=dict)    # id -> exercise name
    isolation: str = ""
    seconds: float = 0.0
    feedback: str = ""             # file name in DIR/feedback/
    predictions: list = field(default_factory=list)  # resolved predictions the file carries (helpers.predict)
    seed: int | None = None        # the case seed it was judged with (gradebook only)
    learner: str = ""              # the roster learner it matched, else what its path says
    who: Who | None = None         # what its folder or download name says (learners.who_of)
    match: Match | None = None     # how the roster matched it (None without a roster)
    digest: str = ""               # sha256 of its bytes
    same_as: list = field(default_factory=list)  # other learners' submissions with these bytes

    @property
    def points(self) -> float:
        return sum(r.points for r in self.rows)

    @property
    def max_points(self) -> float:
        return sum(r.max_points for r in self.rows)


@dataclass
class Options:
    out: Path = Path("grading-output")
    jobs: int = 1
    cell_timeout: float = 60.0
    run_timeout: float | None = None      # default: 5 x cell_timeout, at least 120 s
    solutions: Path = course.SOLUTIONS
    isolation: str = "auto"               # auto | bubblewrap | namespaces | process
    memory_gib: float = 6.0
    progress: bool = True
    seed: int | None = None               # the case seed; None: a fresh one per run
    default_lesson: str | None = None     # the lesson of a submission that names none (Gradescope)
    lessons: tuple | None = None          # the assignment's lessons; None: the lessons most
                                          # learners handed in (set by grade() to what it used)
    roster: Roster | None = None          # ties files to learners (learners.match)

    def case_seed(self) -> int:
        """The run's case seed (drawn once, never the published one unless asked for)."""
        if self.seed is None:
            self.seed = draw_seed()
        return self.seed

    def limits(self) -> sandbox.Limits:
        return sandbox.Limits(cell_timeout=self.cell_timeout, run_timeout=self.run_timeout_s,
                              memory_bytes=int(self.memory_gib * 2**30))

    @property
    def run_timeout_s(self) -> float:
        return self.run_timeout if self.run_timeout else max(120.0, 5 * self.cell_timeout)


def draw_seed() -> int:
    """A fresh case seed: a 31-bit number of at least nine digits (never the published 0), so
    that its digits can be scrubbed from every text a learner reads without touching others."""
    import secrets
    return 10**8 + secrets.randbelow(2**31 - 10**8)


# --------------------------------------------------------------------------- discovery

def learner_of(given: str, path: Path) -> str:
    """Who a submission belongs to, without a roster: the first folder under the folder given
    (``submitted/<learner>/03_dropout.ipynb``, nbgrader's layout; a Moodle folder name gives
    the person's name), else the learner an LMS download name gives (Canvas, Moodle,
    Blackboard), else the file's stem. See :mod:`helpers.grading.learners`."""
    return who_of(given, path).name


@dataclass
class Found:
    """One thing found under the paths given: a submission, or something that is not one."""

    label: str                    # the path as given / found under a folder given
    path: Path
    who: Who
    given: str                    # the PATH argument it was found under
    parts: tuple = ()             # its path below that folder (empty: the file was given)
    problem: str = ""             # why it is not read (a symlink, a FIFO...), else ""


SKIP_DIRS = (".ipynb_checkpoints", "__MACOSX")
MAX_READ = 60_000_001


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def _link_problem(full: Path) -> str:
    try:
        target = os.readlink(full)
    except OSError:
        target = "?"
    # what the link points to is not looked at (not even whether it exists: a learner's
    # feedback must not tell them which paths exist on the grading machine)
    return (f"not graded: {full.name} is a symbolic link (to {target}), not a notebook file; "
            "the grader reads regular files only and did not follow it")


def discover(paths) -> list[tuple[str, Path]]:
    """``(label, path)`` of every submission, in the order given (folders: sorted, recursive);
    symlinks, FIFOs and devices are listed too (they get an error row)."""
    return [(f.label, f.path) for f in _discover(paths)]


def _walk(top: Path, given: str) -> list[Found]:
    """Notebooks under the folder ``top``, without following a symlink: a symlink named
    ``*.ipynb`` or without a suffix (to a folder, say), a FIFO, socket or device named
    ``*.ipynb`` is listed with its problem."""
    items: list[Found] = []

    def visit(folder: Path, rel: tuple):
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            items.append(Found(os.path.join(given, *rel), folder, who_of(given, folder), given, rel,
                               f"not graded: the folder could not be read ({e.strerror})"))
            return
        for e in entries:
            r = rel + (e.name,)
            label = os.path.join(str(given), *r)
            full = Path(e.path)
            if e.name in SKIP_DIRS:
                continue
            if e.is_symlink():
                # *.ipynb, or a name without a suffix (a folder, perhaps): an error row;
                # data.csv and the like are not notebooks and are left alone
                if e.name.endswith(".ipynb") or not Path(e.name).suffix:
                    items.append(Found(label, full, who_of(given, full), given, r, _link_problem(full)))
                continue
            try:
                mode = e.stat(follow_symlinks=False).st_mode
            except OSError:
                continue
            if stat.S_ISDIR(mode):
                visit(full, r)
            elif e.name.endswith(".ipynb"):
                problem = "" if stat.S_ISREG(mode) else \
                    f"not graded: {e.name} is {_kind(mode)}, not a notebook file"
                items.append(Found(label, full, who_of(given, full), given, r, problem))

    visit(top, ())
    items.sort(key=lambda f: f.parts)
    return items


def _discover(paths) -> list[Found]:
    """Every submission under ``paths`` (see :func:`discover`)."""
    found, seen = [], set()
    for given in paths:
        p = Path(given)
        if p.is_dir():
            items = _walk(p, str(given))
        elif os.path.lexists(p):
            problem = ""
            if p.is_symlink():
                problem = _link_problem(p)
            else:
                mode = os.lstat(p).st_mode
                if not stat.S_ISREG(mode):
                    problem = f"not graded: {p.name} is {_kind(mode)}, not a notebook file"
            items = [Found(str(given), p, who_of(str(given), p), str(given), (), problem)]
        else:
            raise UsageError(f"no such file or folder: {given}")
        for f in items:
            # the same path given twice is one submission; two files with the same bytes
            # (a copy, a hard link) are two, both graded and flagged
            key = os.path.realpath(f.path) if not f.problem else ("problem", f.label)
            if key not in seen:
                seen.add(key)
                found.append(f)
    if not found:
        raise UsageError("no notebooks (*.ipynb) found in " + ", ".join(map(str, paths)))
    return found


def _open_below(f: Found) -> int:
    """A read-only descriptor of ``f``'s file, opened one component at a time below the folder
    given with O_NOFOLLOW: a symlink put anywhere on the way (after the walk) is refused."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not f.parts:
        return os.open(f.path, flags)
    fd = os.open(f.given, os.O_RDONLY | os.O_DIRECTORY)  # the folder given (the grader's choice)
    try:
        for part in f.parts[:-1]:
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return os.open(f.parts[-1], flags, dir_fd=fd)
    finally:
        os.close(fd)


def _read(path: Path | Found) -> bytes | SubmissionError:
    """The bytes of a regular file (never through a symlink), else a SubmissionError."""
    f = path if isinstance(path, Found) else Found(str(path), Path(path), Who("", ""), str(path))
    if f.problem:
        return SubmissionError(f.problem)
    try:
        fd = _open_below(f)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            return SubmissionError(f"not graded: {f.path.name} is, or lies under, a symbolic link; "
                                   "the grader reads regular files only")
        return SubmissionError(f"the file could not be read ({e.strerror})")
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            return SubmissionError(f"not graded: {f.path.name} is {_kind(mode)}, not a notebook file")
        chunks, size = [], 0
        while size < MAX_READ:
            b = os.read(fd, min(1 << 20, MAX_READ - size))
            if not b:
                break
            chunks.append(b)
            size += len(b)
        return b"".join(chunks)
    except OSError as e:
        return SubmissionError(f"the file could not be read ({e.strerror})")
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- judging

def _cells(events) -> dict:
    cells = {}
    for e in events:
        if e.get("event") == "cell" and isinstance(e.get("cell"), int):
            if e.get("when") == "call" or e["cell"] not in cells:
                cells[e["cell"]] = e
    return cells


def _where(info, exercise_names) -> str:
    if info.role == "answer":
        return f"your answer cell for {info.exercise}"
    if info.role == "check":
        return f"the check cell of {info.exercise}"
    if info.role == "setup":
        return "the exercise setup cell"
    if info.role == "grader":
        return "the grader's first cell"
    return f"cell {info.index} of the exercise section"


@dataclass
class _Run:
    infos: list
    run: sandbox.RunResult
    disabled: set


def _fatal(run: _Run):
    """``(cell index, kind)`` of the cell that stopped the kernel, or None.

    kind: ``died`` (the kernel process exited), ``timeout`` (a timed-out cell whose kernel
    nbval then had to stop), ``killed`` (the whole run hit its wall-clock limit while this
    cell ran) or ``stopped`` (the test process ended while this cell ran).
    """
    cells = _cells(run.run.events)
    if not cells:
        return None
    prev_timeout = None
    for info in run.infos:
        e = cells.get(info.index)
        if e is None:
            return info.index, ("killed" if run.run.timed_out else "stopped")
        kind = e.get("kind")
        if kind == "died":
            return info.index, "died"
        if kind == "timeout":
            prev_timeout = info.index
        if kind == "dead":
            return (prev_timeout, "timeout") if prev_timeout is not None else (info.index, "dead")
    return None


def judge_exercise(ex, answer: Answer, run: _Run, opts: Options, notes: list) -> tuple[str, str]:
    """``(status, message)`` for one exercise from one run."""
    if answer.status == "missing":
        return "missing", answer.message
    cells = _cells(run.run.events)
    mine = [i for i in run.infos if i.exercise == ex.id]
    checks = [i for i in mine if i.role == "check"]
    recs = []
    for c in checks:
        e = cells.get(c.index) or {}
        found = records_in(e.get("outputs"), ex.id)
        if not found:  # every check cell of the exercise must give its record
            return _explain(ex, mine, run, opts)
        recs += found
    timed_out = next((i for i in mine if (cells.get(i.index) or {}).get("kind") == "timeout"), None)
    if recs and timed_out is not None:
        return "timeout", f"cell timed out after {opts.cell_timeout:g} s ({_where(timed_out, None)})"
    if recs:
        answer_cell = next((i for i in mine if i.role == "answer"), None)
        a_ev = cells.get(answer_cell.index) if answer_cell is not None else None
        if a_ev and a_ev.get("kind") == "error":
            notes.append(f"your answer cell raised {a_ev.get('text', 'an error')}")
        verdicts = []
        for text, record in recs:
            # the grader's own seed: the record's "seed" is the kernel's word, never trusted
            v = run_judge(ex, record, opts.case_seed())
            if isinstance(record, dict) and "seed" in record and record["seed"] != opts.case_seed():
                notes.append("the check probed other inputs than the grader's (code in the "
                             "notebook changed the case seed); the grader's inputs decide")
            verdicts.append(v)
            if isinstance(text, str) and text.strip() != v.text().strip():
                notes.append("the printed verdict does not match the check record: the output "
                             "was changed by code in the notebook; the record decides")
        worst = next((v for v in verdicts if v.status == "error"), None) or \
            next((v for v in verdicts if v.status == "failed"), None) or verdicts[0]
        return worst.status, worst.message
    return _explain(ex, mine, run, opts)


def refuse_library(ex, answer: Answer, status: str, message: str,
                   answers: dict | None = None) -> tuple[str, str]:
    """The grader's own reading of the answer's text, outside the kernel (the shortcut rule,
    DESIGN.md): the library code the exercise asks the learner to write, the course's own
    helpers, and routes a reader cannot follow (names built from strings, threads, the watch
    switched off), in the answer and in every other answer cell it draws on. A ``passed`` or
    ``failed`` verdict becomes ``failed`` with the refusal."""
    if status not in ("passed", "failed") or not answer.source:
        return status, message
    others = {k: a.source for k, a in (answers or {}).items() if a.source and k != ex.id}
    try:
        refusal = ex.shortcut_in_sources(answer.source, others)
    except Exception:  # noqa: BLE001 - an odd source uses nothing we can name
        refusal = ""
    if refusal:
        return "failed", refusal
    return status, message


def _explain(ex, mine, run: _Run, opts: Options) -> tuple[str, str]:
    """Why an exercise's check produced no record."""
    cells = _cells(run.run.events)
    T, S = opts.cell_timeout, opts.run_timeout_s
    if not run.run.events or not any(e.get("event") == "start" for e in run.run.events):
        return "error", "the grader could not run this submission: " + _log_reason(run.run)
    if all(e.get("kind") == "setup-error" for e in cells.values()) and cells:
        first = next(iter(cells.values()))
        return "error", "the notebook kernel could not start (" + first.get("text", "")[:300] + ")"
    answer_error = ""
    for info in mine:
        e = cells.get(info.index)
        where = _where(info, None)
        if e is None:
            break
        kind = e.get("kind")
        if kind == "timeout":
            return "timeout", f"cell timed out after {T:g} s ({where})"
        if kind == "died":
            return "error", f"the kernel died (crash, os._exit, or out of memory) while running {where}"
        if kind == "dead":
            cause = _cause(run, info.index, S)
            return ("error", f"not checked: {cause}")
        if kind == "setup-error":
            return "error", "the notebook kernel could not start (" + e.get("text", "")[:300] + ")"
        if kind == "error" and info.role == "answer":
            answer_error = e.get("text", "")
        if kind in ("error", "internal") and info.role == "check":
            text = e.get("text", "") or "an error"
            msg = f"the check raised {text}"
            if answer_error:
                msg = f"your answer cell raised {answer_error}; then " + msg
            if f"'{ex.name}' is not defined" in text:
                msg += f" (does your answer cell define `{ex.name}`?)"
            return "error", msg
        if kind in ("ok", "mismatch", "skipped") and info.role == "check" and \
                not records_in(e.get("outputs"), ex.id):
            return "error", ("the check cell produced no check record (was `check`, `display` "
                             "or IPython replaced by code in the notebook?)")
    # the run ended before this exercise's cells
    if run.run.timed_out:
        return "timeout", f"submission exceeded {S:g} s and was stopped"
    return "error", "not checked: " + _cause(run, mine[0].index if mine else 10**9, S)


def _cause(run: _Run, before: int, limit: float) -> str:
    cells = _cells(run.run.events)
    for info in run.infos:
        if info.index >= before:
            break
        e = cells.get(info.index) or {}
        if e.get("kind") == "died":
            return f"the kernel died in {_where(info, None)}"
        if e.get("kind") == "timeout":
            return f"the kernel was stopped after {_where(info, None)} timed out"
    if run.run.write_capped:
        return run.run.write_capped
    if run.run.timed_out:
        return f"the submission exceeded {limit:g} s"
    return "the grading run stopped early: " + _log_reason(run.run)


def _log_reason(r: sandbox.RunResult, detail: bool = False) -> str:
    """Why a run ended without results; deterministic unless ``detail`` (for stderr)."""
    rc = r.returncode
    if rc is not None and rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        extra = {"SIGXFSZ": " (a file grew beyond the size limit)",
                 "SIGXCPU": " (the CPU-time limit was reached)",
                 "SIGKILL": " (killed)", "SIGSEGV": " (crash)"}.get(name, "")
        return f"the test process ended by {name}{extra}"
    if not detail:
        return f"the test process ended with exit status {rc}"
    lines = [ln for ln in r.log_tail.splitlines() if ln.strip()]
    return f"exit status {rc}: " + " | ".join(lines[-5:])[-800:]


# --------------------------------------------------------------------------- one submission

@dataclass
class _Job:
    result: Result
    ref: Reference | None = None
    answers: dict = field(default_factory=dict)
    lesson_rule: str = ""         # how its lesson was found (for the wrong-lesson message)
    error: str = ""               # why it could not be read or parsed, if it could not


def _predictions(nb) -> list:
    """The resolved predictions a submitted notebook carries (they never cost points)."""
    from helpers.predict import in_notebook
    try:
        return in_notebook(nb)
    except Exception:  # noqa: BLE001 - a malformed record is no prediction
        return []


def prepare(label: str, path: Path, data, refs: dict, opts: Options) -> _Job:
    """Parse a submission and find its answers (no learner code runs)."""
    res = Result(submission=label, path=path)
    job = _Job(res)
    lesson = course.lesson_of_filename(path.name) or lesson_in_name(path.name) or opts.default_lesson
    try:
        if isinstance(data, SubmissionError):
            raise data
        nb = parse_notebook(data)
        res.predictions = _predictions(nb)
        lesson = lesson_of(nb, path.name)
        if lesson is not None:
            job.lesson_rule = ("its file name says so" if lesson_of(nb, "") is None
                               else "its notebook metadata says so")
        if lesson is None:
            lesson, rule = infer_lesson(nb, path.name)
            job.lesson_rule = rule
            if lesson is not None:
                res.notes.append(f"graded as lesson {lesson}: the notebook's metadata names no "
                                 f"lesson and its file name does not start with one; {rule}")
        if lesson is None and opts.default_lesson:
            lesson = opts.default_lesson
            job.lesson_rule = "the lesson of the assignment"
            res.notes.append(f"graded as lesson {lesson}, the lesson of this assignment (neither "
                             "the notebook's metadata nor its file name names a lesson)")
        if lesson is None:
            raise SubmissionError("unknown lesson: the notebook has no course.lesson metadata, its "
                                  "file name names no lesson (NN_name), no Colab badge or setup "
                                  "cell names one, and its cells define no lesson's exercises")
        res.lesson = lesson
        file_lesson = course.lesson_of_filename(path.name)
        if file_lesson and file_lesson != lesson:
            res.notes.append(f"the file name says lesson {file_lesson} but the notebook's metadata "
                             f"says lesson {lesson}: graded as lesson {lesson}")
        if lesson not in refs:
            try:
                refs[lesson] = load_reference(lesson, opts.solutions)
            except SubmissionError as e:
                refs[lesson] = e
        ref = refs[lesson]
        if isinstance(ref, SubmissionError):
            raise ref
        job.ref = ref
        job.answers = find_answers(nb, ref)
        for ex in ref.exercises:
            res.names[ex.id] = ex.name
            a = job.answers[ex.id]
            if a.how == "name":
                res.exercise_notes.setdefault(ex.id, []).append(
                    f"answer found by the name `{ex.name}` (the cell's metadata was missing or "
                    "it still held the stub)")
    except SubmissionError as e:
        res.lesson = lesson or ""
        job.error = str(e)
        if lesson and not job.lesson_rule:
            job.lesson_rule = "its file name says so"
        exercises = _lesson_exercises(lesson) if lesson else []
        msg = str(e)
        if exercises:
            res.rows = [Row(label, lesson, ex.id, 0, ex.points, "error", msg) for ex in exercises]
            res.names = {ex.id: ex.name for ex in exercises}
        else:
            res.rows = [Row(label, lesson or "", "-", 0, 0, "error", msg)]
    return job


def _lesson_exercises(lesson):
    from helpers.checks import lesson_exercises
    try:
        return lesson_exercises(lesson)
    except Exception:  # noqa: BLE001
        return []


def run_job(job: _Job, opts: Options, level: str, stage_root: Path, slot_uid,
            hide_dirs, hide_files) -> Result:
    """Run a prepared submission (re-running without an answer that killed the kernel)."""
    import time
    res, ref = job.result, job.ref
    res.isolation = level
    t0 = time.monotonic()
    disabled: set = set()
    final: dict = {}
    if all(a.status == "missing" for a in job.answers.values()):
        attempts = 0  # nothing to run
    else:
        attempts = MAX_RERUNS + 1
    for ex in ref.exercises:
        if attempts == 0:
            final[ex.id] = ("missing", job.answers[ex.id].message)
    for attempt in range(attempts):
        answers = {k: (Answer(k, None, "missing") if k in disabled else v)
                   for k, v in job.answers.items()}
        nb, infos = assemble(ref, answers)
        stage = stage_root / f"run-{os.getpid()}-{threading.get_ident()}-{attempt}-{time.monotonic_ns()}"
        r = sandbox.run_notebook(nbformat.writes(nb, version=4), stage, level, opts.limits(),
                                 uid=slot_uid, hide_dirs=hide_dirs, hide_files=hide_files,
                                 seed=opts.case_seed())
        shutil.rmtree(stage, ignore_errors=True)
        if r.write_capped and r.write_capped not in res.notes:
            res.notes.append(r.write_capped)
        if not any(e.get("event") == "start" for e in r.events):
            print(f"grade: could not run {res.submission}: {_log_reason(r, detail=True)}",
                  file=sys.stderr)
        run = _Run(infos, r, set(disabled))
        pending = [ex for ex in ref.exercises if ex.id not in final]
        fatal = _fatal(run)
        fatal_ex = None
        if fatal is not None:
            fi = next(i for i in infos if i.index == fatal[0])
            fatal_ex = fi.exercise if fi.role in ("answer", "check") else None
        for ex in pending:
            notes: list = []
            status, message = judge_exercise(ex, job.answers[ex.id], run, opts, notes)
            status, message = refuse_library(ex, job.answers[ex.id], status, message,
                                             job.answers)
            mine = [i.index for i in infos if i.exercise == ex.id]
            if (fatal_ex is not None and fatal_ex != ex.id and fatal_ex not in disabled
                    and status in ("error", "timeout") and mine and min(mine) > fatal[0]
                    and attempt < MAX_RERUNS):
                continue  # judged again in the next run, without the answer that broke it
            final[ex.id] = (status, message)
            if disabled and status != "missing":
                notes.append("checked in a second run in which your answer to "
                             + ", ".join(sorted(disabled)) + " was replaced by the stub "
                             "(it had stopped the kernel)")
            if notes:
                res.exercise_notes.setdefault(ex.id, []).extend(dict.fromkeys(notes))
        if all(ex.id in final for ex in ref.exercises):
            break
        if fatal_ex is None or fatal_ex in disabled:
            break
        disabled.add(fatal_ex)
        what = {"died": "the kernel died", "timeout": "a cell timed out",
                "killed": "the time limit was reached", "stopped": "the run stopped",
                "dead": "the kernel died"}[fatal[1]]
        res.notes.append(f"{fatal_ex} stopped the kernel ({what}); the exercises after it were "
                         "checked again in a fresh kernel, without that answer")
    for ex in ref.exercises:
        status, message = final.get(ex.id, ("error", "not checked: the grading runs stopped early"))
        pts = ex.points if status == "passed" else 0
        res.rows.append(Row(res.submission, ref.lesson, ex.id, pts, ex.points, status, message))
    res.seconds = time.monotonic() - t0
    return res


# --------------------------------------------------------------------------- the batch

def _hide_targets(opts: Options, submissions) -> tuple[list[Path], list[Path]]:
    """Folders and files a sandboxed kernel must not see."""
    dirs = {opts.solutions.resolve(), opts.out.resolve(), Path.home().resolve()}
    roots = {course.ROOT.resolve()}
    k = sandbox.kernel_helpers_dir()  # an editable install may point at another clone
    if k is not None:
        roots.add(k.parent)
    for root in roots:
        if (root / "helpers").is_dir() and ((root / "pyproject.toml").exists() or (root / ".git").exists()):
            dirs.add(root)
    files = set()
    for label, path in submissions:
        rp = Path(os.path.realpath(path))
        files.add(rp)
    return sorted(dirs), sorted(files)


def assignment_lessons(jobs, opts: Options) -> tuple:
    """The assignment's lessons: ``opts.lessons`` when given, else the one lesson of a
    Gradescope assignment (``opts.default_lesson``), else every lesson handed in by more than
    half as many learners as the lesson most learners handed in: one learner's stray file of
    another lesson adds no lesson to the class's grades (even in a class of three), while an
    assignment of two lessons keeps both when most learners handed in both. A learner grading
    their own files (one learner) gets every lesson they hand in."""
    if opts.lessons:
        return tuple(sorted(opts.lessons))
    if opts.default_lesson:
        return (opts.default_lesson,)
    learners: dict[str, set] = {}
    for j in jobs:
        lesson = j.result.lesson
        if lesson in course.LESSONS:
            learners.setdefault(lesson, set()).add(j.result.learner or j.result.submission)
    if not learners:
        return ()
    top = max(len(v) for v in learners.values())
    return tuple(sorted(lesson for lesson, v in learners.items() if 2 * len(v) > top))


def _not_in_assignment(job: _Job, lessons: tuple) -> None:
    """Turn a submission of a lesson outside the assignment into one ``error`` row."""
    res = job.result
    lesson = res.lesson
    stem = course.LESSONS.get(lesson, (lesson,))[0]
    which = "lesson " + ", ".join(lessons) if lessons else "no lesson"
    how = f": {job.lesson_rule}" if job.lesson_rule else ""
    if job.error and job.lesson_rule == "its file name says so":
        msg = (f"{job.error} (its file name names lesson {lesson}, {stem}; this assignment is "
               f"{which})")
    else:
        msg = (f"not graded: this notebook is lesson {lesson} ({stem}){how}. This assignment "
               f"is {which}: hand in its notebook")
    res.rows = [Row(res.submission, lesson, "-", 0, 0, "error", msg)]
    res.names = {}
    res.notes = []
    res.exercise_notes = {}
    job.ref = None
    job.answers = {}


def _flag_same_bytes(jobs) -> None:
    """Submissions of different learners with the same bytes: each lists the others in
    ``same_as`` (shown in gradebook.csv's message); all are graded. Untouched stub notebooks
    (nothing answered) and files that are no notebook (empty, broken) are not flagged: handing
    in nothing is not copying."""
    groups: dict[str, list] = {}
    for j in jobs:
        if j.result.digest and not j.error and j.answers:
            groups.setdefault(j.result.digest, []).append(j)
    for group in groups.values():
        if len({j.result.learner for j in group}) < 2:
            continue
        if all(a.status == "missing" for a in group[0].answers.values()):
            continue  # the same bytes: the same answers
        for j in group:
            j.result.same_as = [o.result.submission for o in group
                                if o.result.learner != j.result.learner]


def plan(paths, opts: Options) -> tuple[list[Found], list[_Job]]:
    """Everything decided before any learner code runs: the files (read as regular files
    only), their learners (the roster matched), the assignment's lessons (``opts.lessons``
    set to them), the files of other lessons turned into error rows, the same bytes flagged."""
    found = _discover(paths)
    opts.case_seed()
    datas = [_read(f) for f in found]             # every byte read before any learner code runs
    refs: dict = {}
    jobs = [prepare(f.label, f.path, d, refs, opts) for f, d in zip(found, datas)]
    if opts.roster is not None and not isinstance(opts.roster, Roster):  # {learner: student id}
        opts.roster = Roster([Entry(k, v) for k, v in opts.roster.items()])
    for j, f, d in zip(jobs, found, datas):
        r = j.result
        r.seed = opts.case_seed()
        r.who = f.who
        r.learner = f.who.name
        if opts.roster is not None:
            r.match = match(opts.roster, f.who)
            if r.match.entry is not None:
                r.learner = r.match.entry.label
        if isinstance(d, bytes):
            r.digest = hashlib.sha256(d).hexdigest()
    opts.lessons = assignment_lessons(jobs, opts)
    for j in jobs:
        if j.result.lesson and j.result.lesson not in opts.lessons:
            _not_in_assignment(j, opts.lessons)
    _flag_same_bytes(jobs)
    return found, jobs


def grade(paths, opts: Options) -> list[Result]:
    """Grade every submission under ``paths``; returns one Result per submission, in order."""
    found, jobs = plan(paths, opts)
    level = sandbox.detect(opts.isolation)
    hide_dirs, hide_files = _hide_targets(opts, [(f.label, f.path) for f in found if not f.problem])
    if level in (sandbox.LEVEL_BWRAP, sandbox.LEVEL_BWRAP_UID):
        # the allow-list must not hold a folder the kernel may not see (a Python environment
        # that contains the solutions, say): then the deny-list level runs instead
        clash = [p for p in sandbox.bwrap_paths() for d in hide_dirs if sandbox._is_within(d, p)]
        if clash:
            print(f"grade: isolation: bubblewrap would have to show {clash[0]}, which holds a "
                  "hidden folder; using Linux namespaces instead", file=sys.stderr)
            level = sandbox.detect("namespaces")
    if opts.isolation == "bubblewrap" and level not in (sandbox.LEVEL_BWRAP, sandbox.LEVEL_BWRAP_UID):
        raise UsageError("--isolation bubblewrap: bubblewrap (bwrap) is not installed or cannot "
                         "create its sandbox here")
    if opts.isolation == "namespaces" and level == sandbox.LEVEL_PROCESS:
        raise UsageError("--isolation namespaces: this machine cannot run Linux namespaces "
                         "(needs unshare with mount/net/pid namespaces)")
    if level == sandbox.LEVEL_PROCESS:
        why = "as asked" if opts.isolation == "process" else "no bubblewrap or Linux namespaces here"
        print(f"grade: isolation: process only ({why}): submissions run in "
              "separate processes with limits, but can read and write what this user can",
              file=sys.stderr)
    if level == sandbox.LEVEL_UID:
        print("grade: isolation: uid-only (no Linux namespaces here): each kernel runs as a uid "
              "of its own, the course, solutions, submissions and output folders are closed to "
              "it, and its processes are killed before results are written", file=sys.stderr)
    opts.out.mkdir(parents=True, exist_ok=True)
    runnable = [j for j in jobs if j.ref is not None]
    n_workers = max(1, min(opts.jobs, len(runnable) or 1))
    pool = sandbox.UidPool(n_workers) if level in sandbox.UID_LEVELS else None
    stage_root = Path(tempfile.mkdtemp(prefix="course-grade-"))
    os.chmod(stage_root, 0o700)
    bar = None
    if opts.progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=len(jobs), desc="grading", unit="nb", file=sys.stderr,
                       dynamic_ncols=True, leave=False)
        except ImportError:
            bar = None
    lock = threading.Lock()

    def tick():
        if bar is not None:
            with lock:
                bar.update(1)

    def work(job: _Job) -> Result:
        uid = pool.take() if pool else None
        try:
            return run_job(job, opts, level, stage_root, uid, hide_dirs, hide_files)
        except Exception as e:  # noqa: BLE001 - one broken run never stops the batch
            job.result.rows = [Row(job.result.submission, job.ref.lesson, ex.id, 0, ex.points,
                                   "error", f"internal grader error ({type(e).__name__}: {e})")
                               for ex in job.ref.exercises]
            return job.result
        finally:
            if pool and uid is not None:
                pool.give(uid)
            tick()

    # uid-only: the folders and files a kernel must not see are closed to its uid meanwhile
    guard = (sandbox.protect(hide_dirs + [Path(p) for p in paths if Path(p).is_dir()], hide_files)
             if level == sandbox.LEVEL_UID else contextlib.nullcontext())
    try:
        with guard:
            for j in jobs:
                if j.ref is None:
                    j.result.isolation = level
                    tick()
            if n_workers == 1:
                for j in runnable:
                    work(j)
            else:
                with ThreadPoolExecutor(max_workers=n_workers) as ex:
                    list(ex.map(work, runnable))
    finally:
        if bar is not None:
            bar.close()
        shutil.rmtree(stage_root, ignore_errors=True)
    results = [j.result for j in jobs]
    sandbox.scrub_results(results, opts.case_seed())  # the seed stays in gradebook.csv/stdout
    return results
