"""The Gradescope autograder zip: built, unpacked like /autograder/, run on a few submissions.

Gradescope's specification (https://gradescope-autograders.readthedocs.io/en/latest/specs/):
``setup.sh`` and ``run_autograder`` at the root of the zip, the zip's contents in
``/autograder/source``, the submission in ``/autograder/submission``, the result in
``/autograder/results/results.json``. Here the root is a temporary folder
(``COURSE_AUTOGRADER_ROOT``); ``setup.sh`` is syntax-checked in full and run with
``COURSE_AUTOGRADER_SKIP_INSTALL=1`` (this environment already has what apt and pip would
install; no network), and ``run_autograder`` runs as root with namespaces unavailable
(``COURSE_GRADE_NO_NAMESPACES=1``: the grader's ``uid-only`` level, as in a Docker container
under its default seccomp profile). The whole process tree's memory is sampled while a
submission is graded (Gradescope's default container has 768 MB).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from helpers import course
from helpers.checks import lesson_exercises
from helpers.grading import gradescope, sandbox

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
AS_ROOT = sys.platform.startswith("linux") and os.geteuid() == 0
MEMORY: dict = {}   # submission kind -> (peak PSS, peak RSS sum, seconds) of the process tree


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


def _env(root: Path) -> dict:
    env = dict(os.environ, **{gradescope.ROOT_ENV: str(root), gradescope.PYTHON_ENV: sys.executable,
                              "COURSE_AUTOGRADER_SKIP_INSTALL": "1"})
    if AS_ROOT:  # the platform's container may forbid namespaces: grade as there
        env[sandbox.NO_NAMESPACES_ENV] = "1"
    return env


def _job_uid_pids() -> list[int]:
    left = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            got = sandbox._proc_uids(d)
            if got and got[0] not in ("Z", "X") and any(u >= 3_000_000 for u in got[1]):
                left.append(int(d))
    return left


def _mentioning(text: str) -> list[tuple[int, set]]:
    """Live processes of a job uid whose command line mentions ``text`` (other graders' kernels
    may run beside this test)."""
    out = []
    for d in _job_uid_pids():
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    out.append((d, sandbox._proc_uids(str(d))))
        except OSError:
            pass
    return out


def _tree_memory(pid: int) -> tuple[int, int]:
    """``(PSS, RSS)`` summed over ``pid``, its descendants and every process of the job uids
    of a grader among them (a daemon that left the tree; not other graders' kernels). PSS
    counts a page shared by several processes once, split between them."""
    tree = {pid, *sandbox._descendants(pid)}
    bases = {3_000_000 + (d % 100_000) * 64 for d in tree}  # sandbox._base_uid() of each
    pids = set(tree)
    for d in _job_uid_pids():
        got = sandbox._proc_uids(str(d))
        if got and any(b <= u < b + 64 for u in got[1] for b in bases):
            pids.add(d)
    pss = rss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
                    elif line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
        except OSError:
            pass
    return pss, rss


def _run(zpath: Path, root: Path, files: dict, kind: str = ""):
    _unpack(zpath, root)
    for name, data in files.items():
        (root / "submission" / name).write_bytes(data)
    p = subprocess.Popen([str(root / "run_autograder")], cwd=root, env=_env(root),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0, 0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            pss, rss = _tree_memory(p.pid)
            peak[0], peak[1] = max(peak[0], pss), max(peak[1], rss)
            done.wait(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.monotonic()
    try:
        out, err = p.communicate(timeout=600)
    finally:
        done.set()
        t.join()
    if kind:
        MEMORY[kind] = (peak[0], peak[1], time.monotonic() - t0)
    assert p.returncode == 0, out[-2000:] + err[-2000:]
    res = json.loads((root / "results" / "results.json").read_text())
    _validate(res)
    return res, subprocess.CompletedProcess(p.args, p.returncode, out, err)


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
    assert res["score"] <= sum(t["max_score"] for t in res["tests"])
    assert "seed" not in json.dumps(res["extra_data"])
    assert "case seed" not in json.dumps(res["tests"]) + res["output"]  # the digits: see _seed
    assert gradescope.check_results(res) == []


def _seed(proc) -> int:
    """The case seed, from the grader's stdout (hidden from learners on Gradescope)."""
    return int(proc.stdout.split("case seed ", 1)[1].split(",")[0])


def _zip_text(zpath: Path, name: str) -> str:
    with zipfile.ZipFile(zpath) as z:
        return z.read(name).decode()


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
    assert 'pip install -q "$AG/source/course"' in setup and "-e" not in setup.split()
    assert 'AG="${COURSE_AUTOGRADER_ROOT:-/autograder}"' in setup
    assert "python3 python3-venv python3-pip" in setup  # Ubuntu 22.04's python3: 3.10
    assert subprocess.run(["bash", "-n", "-c", setup]).returncode == 0
    run = _zip_text(autograder, "run_autograder")
    assert subprocess.run(["bash", "-n", "-c", run]).returncode == 0


def test_setup_sh_runs_offline(autograder, tmp_path):
    """``setup.sh`` as the platform runs it (bash, from the unpacked zip), its apt and pip
    steps skipped because this environment already satisfies them."""
    root = _unpack(autograder, tmp_path / "ag")
    p = subprocess.run(["bash", str(root / "source" / "setup.sh")], cwd=root / "source",
                       env=_env(root), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "apt-get and pip skipped" in p.stdout and "course helpers ready" in p.stdout


# ex1.1: run the reference answers if the solutions can be read (full marks before the fix)
HOSTILE_READ = """\
import json, os
_root = os.environ.get("COURSE_AUTOGRADER_ROOT", "/autograder")
_seen = []
for _p in (ROOT + "/source/course/solutions/01_overfitting.ipynb", SOL):
    try:
        _nb = json.load(open(_p))
    except OSError as e:
        _seen.append(type(e).__name__)
        continue
    for _c in _nb["cells"]:
        if (_c.get("metadata", {}).get("course", {}) or {}).get("role") == "answer":
            exec("".join(_c["source"]))
    _seen.append("READ " + _p)
for _p in (ROOT + "/source/config.json", ROOT + "/source/course/helpers/__init__.py",
           ROOT + "/submission/01_overfitting.ipynb"):
    try:
        open(_p).read()
        _seen.append("READ " + _p)
    except OSError as e:
        _seen.append(type(e).__name__)
if "polynomial_features" not in globals():
    def polynomial_features(x, degree):
        raise RuntimeError("seen: " + " ".join(_seen))
"""

# ex1.2: write results.json, leave a setsid daemon that rewrites it after 2 s, leak the seed
DAEMON_CODE = (
    "import os, sys, time\n"
    "if os.fork():\n    os._exit(0)\n"
    "os.setsid()\n"
    "if os.fork():\n    os._exit(0)\n"
    "time.sleep(2)\n"
    "end = time.time() + 60\n"
    "while time.time() < end:\n"
    "    try:\n        open(sys.argv[1], 'w').write(sys.argv[2])\n"
    "    except OSError:\n        pass\n"
    "    time.sleep(0.1)\n")

HOSTILE_WRITE = """\
import os, subprocess, sys
_fake = '{"score": 999.0, "tests": [], "output": "pwned"}'
for _p in (ROOT + "/results/results.json", "/autograder/results/results.json"):
    try:
        os.makedirs(os.path.dirname(_p), exist_ok=True)
        open(_p, "w").write(_fake)
    except OSError:
        pass
subprocess.Popen([sys.executable, "-c", DAEMON_CODE, ROOT + "/results/results.json", _fake],
                 start_new_session=True).wait()
def fit_polynomial(x, y, degree):
    raise RuntimeError("seed " + os.environ["COURSE_CASE_SEED"])
"""


def test_honest_broken_hostile(autograder, tmp_path):
    sol = solution_sources(LESSON)
    ex = learner_copy(LESSON)
    ids = [e.id for e in lesson_exercises(LESSON)]

    honest, hp = _run(autograder, tmp_path / "honest", {"01_overfitting.ipynb": dumps(fill(ex, sol))},
                      kind="honest")
    passed = [t["name"].split()[0] for t in honest["tests"] if t["status"] == "passed"]
    assert passed == ids, honest  # full marks
    assert honest["score"] == sum(t["max_score"] for t in honest["tests"])
    if AS_ROOT:
        assert "isolation: uid-only" in honest["output"] and "uid-only" in hp.stderr
        assert honest["extra_data"] == {"isolation": ["uid-only"]}
    assert str(_seed(hp)) not in json.dumps(honest)

    broken, _ = _run(autograder, tmp_path / "broken", {"Copy of 01_overfitting.ipynb": b"{not json"})
    assert broken["score"] == 0
    assert all("not valid notebook JSON" in t["output"] for t in broken["tests"]), broken

    hroot = tmp_path / "hostile"
    head = f"ROOT = {str(hroot)!r}\nSOL = {str(course.SOLUTIONS / '01_overfitting.ipynb')!r}\n"
    hostile, xp = _run(autograder, hroot, {
        "01_overfitting.ipynb": dumps(fill(ex, sol, {
            "ex1.1": head + HOSTILE_READ,
            "ex1.2": head + f"DAEMON_CODE = {DAEMON_CODE!r}\n" + HOSTILE_WRITE,
            "ex1.3": case_defs.FAKE_PRINT, "ex1.4": case_defs.PATCH_CORE}))}, kind="hostile")
    assert hostile["score"] == 0, hostile
    by = {t["name"].split()[0]: t for t in hostile["tests"]}
    if AS_ROOT:
        assert "seen: " + " ".join(["PermissionError"] * 5) in by["ex1.1"]["output"], by["ex1.1"]
        left = _mentioning(str(hroot))
        assert left == [], f"a process of the submission outlived the grader: {left}"
    text = (hroot / "results" / "results.json").read_text()
    assert str(_seed(xp)) not in text
    assert "[seed hidden]" in by["ex1.2"]["output"], by["ex1.2"]
    time.sleep(3.0)  # a live daemon would have rewritten results.json by now (after 2 s)
    assert (hroot / "results" / "results.json").read_text() == text
    assert "999" not in text and "pwned" not in text

    nothing, _ = _run(autograder, tmp_path / "nothing", {"notes.txt": b"hello"})
    assert nothing["score"] == 0 and all("no notebook" in t["output"] for t in nothing["tests"])


def test_peak_memory_under_768_mb():
    """Measured in :func:`test_honest_broken_hostile`: the whole process tree (grader, pytest,
    kernel), by PSS, sampled every 50 ms."""
    if "honest" not in MEMORY:
        pytest.skip("measured by test_honest_broken_hostile")
    for kind, (pss, rss, secs) in MEMORY.items():
        print(f"\ngradescope {kind}: peak PSS {pss / 2**20:.0f} MiB, peak RSS sum "
              f"{rss / 2**20:.0f} MiB, {secs:.1f} s; margin under 768 MB: "
              f"{(768e6 - pss) / 2**20:.0f} MiB")
    assert MEMORY["honest"][0] < 768e6


def test_results_json_is_checked_before_it_is_written(tmp_path):
    good = {"score": 1.0, "execution_time": 1, "output": "", "visibility": "visible",
            "stdout_visibility": "hidden", "extra_data": {},
            "tests": [{"name": "a", "score": 1.0, "max_score": 1.0},
                      {"name": "b", "score": 0.0, "max_score": 1.0}]}
    assert gradescope.check_results(good) == []
    gradescope.write_results(tmp_path, good)
    assert json.loads((tmp_path / "results.json").read_text()) == good
    for bad in (dict(good, score=999.0), dict(good, score=2.0),
                dict(good, tests=[{"name": "a", "score": 5.0, "max_score": 1.0}], score=5.0)):
        assert gradescope.check_results(bad)
        written = gradescope.write_results(tmp_path, bad)
        assert written["score"] == 0.0 and written["tests"] == []
        assert json.loads((tmp_path / "results.json").read_text())["score"] == 0.0
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left


def test_seed_is_scrubbed_from_results_json():
    from helpers.grading.runner import Result, Row
    seed = 1_987_654_321
    r = Result(submission="s/01_overfitting.ipynb", path=Path("s/01_overfitting.ipynb"), lesson=LESSON,
               isolation="uid-only")
    ids = [e.id for e in lesson_exercises(LESSON)]
    r.rows = [Row(r.submission, LESSON, i, 0, 1, "error", f"your code raised KeyError: {seed}")
              for i in ids]
    r.notes = [f"printed {seed} and {hex(seed)}"]
    res = gradescope.results_for([r], [LESSON], 1.0, seed)
    text = json.dumps(res)
    assert str(seed) not in text and hex(seed) not in text and f"{seed:x}" not in text
    assert "seed" not in json.dumps(res["extra_data"])
