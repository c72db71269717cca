"""The grader where no namespace can be created (``uid-only``), run for real as root.

``COURSE_GRADE_NO_NAMESPACES=1`` makes the bubblewrap and ``unshare`` probes fail, as in a
Docker container under its default seccomp profile (Gradescope's may be one); everything else
is genuine: the grader runs as root, the kernel as a uid of its own, the folders it must not
see are closed to it by their modes. One batch is graded once through the command line:

- an honest submission (the reference answers: graded as at any other level);
- a reader that tries the solutions, the course checkout, another learner's file and the
  output folder, and would pass ex1.1 by running the reference answer if it could read it;
- a daemon: a ``setsid`` double fork that keeps trying to write into the output folder and the
  other learner's file for a minute (it must be dead when the grader returns);
- a leaker: raises and prints ``COURSE_CASE_SEED`` (the seed must be in no feedback file and in
  no message of the gradebook, only in its ``seed`` column);
- a writer: writes 720 MiB into its scratch folder and /tmp (stopped at the write cap, an
  ``error`` row saying so, the disk unaffected).

Skipped unless the tests run as root on Linux.
"""

from __future__ import annotations

import ast
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import course
from helpers.grading import sandbox

sys.path.insert(0, str(Path(__file__).parent / "submissions"))
from builders import dumps, fill, learner_copy, solution_sources  # noqa: E402

PY = sys.executable
root_only = pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0,
                               reason="the uid-only level needs root on Linux")
pytestmark = [pytest.mark.slow, root_only]

NO_NS = {sandbox.NO_NAMESPACES_ENV: "1"}

# ex1.1's answer: run the reference answer if any of these is readable, else report what failed
READER = """\
import json, os
_seen = []
def _try(tag, p):
    try:
        with open(p, "rb") as f:
            return f.read()
    except OSError as e:
        _seen.append(f"{{type(e).__name__[:10]}}:{{tag}}")
        return None
for _t, _p in {solutions!r}:
    _data = _try(_t, _p)
    if _data is not None:
        for _c in json.loads(_data)["cells"]:
            if (_c.get("metadata", {{}}).get("course", {{}}) or {{}}).get("exercise") == "ex1.1" \\
                    and _c["metadata"]["course"].get("role") == "answer":
                exec("".join(_c["source"]))
        _seen.append("READ:" + _t)
for _t, _p in {others!r}:
    if _try(_t, _p) is not None:
        _seen.append("READ:" + _t)
for _t, _p in {writes!r}:
    try:
        with open(_p, "w") as f:
            f.write("hacked")
        _seen.append("WROTE:" + _t)
    except OSError as e:
        _seen.append(f"{{type(e).__name__[:10]}}:{{_t}}")
for _t, _d in {lists!r}:
    try:
        _seen.append("LISTED:" + _t + "=" + ",".join(sorted(os.listdir(_d))[:3]))
    except OSError as e:
        _seen.append(f"{{type(e).__name__[:10]}}:{{_t}}")
_seen.append(f"uid {{os.getuid()}} euid {{os.geteuid()}} groups {{os.getgroups()}}")
if "polynomial_features" not in globals():
    def polynomial_features(x, degree):
        raise RuntimeError("seen: " + " ".join(_seen))
"""

# ex1.1's answer: leave a setsid daemon (double fork) that keeps writing for a minute
DAEMON = """\
import subprocess, sys
_code = '''
import os, sys, time
if os.fork():
    os._exit(0)
os.setsid()
if os.fork():
    os._exit(0)
end = time.time() + 60
while time.time() < end:
    for p in sys.argv[1:]:
        try:
            with open(p, "w") as f:
                f.write("daemon")
        except OSError:
            pass
    time.sleep(0.2)
'''
subprocess.Popen([sys.executable, "-c", _code] + {targets!r}, start_new_session=True).wait()
"""

# ex1.2's answer: the seed in an exception text and in printed output
LEAKER = """\
import os
print("my seed is", os.environ.get("COURSE_CASE_SEED"), dict(os.environ))
def fit_polynomial(x, y, degree):
    print("seed", os.environ["COURSE_CASE_SEED"])
    raise RuntimeError("the seed is " + os.environ["COURSE_CASE_SEED"] + " and hex "
                       + hex(int(os.environ["COURSE_CASE_SEED"])))
"""

# ex1.2's answer: 720 MiB in 16 MiB blocks, into the scratch folder and /tmp
WRITER = """\
import os, uuid
_block = b"x" * (16 * 2**20)
_n = 0
for _d in (".", "/tmp"):
    for _i in range(23):
        _p = os.path.join(_d, f"fill-{uuid.uuid4().hex}")
        try:
            with open(_p, "wb") as f:
                f.write(_block)
        except OSError:
            pass
        _n += 16
def fit_polynomial(x, y, degree):
    raise RuntimeError(f"wrote {_n} MiB and was not stopped")
"""


def _rows(out: Path) -> list[dict]:
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _uid_processes(mentioning: str, lo: int = 3_000_000) -> list[tuple[int, set]]:
    """Live processes of a job uid whose command line mentions ``mentioning`` (other graders'
    kernels may run beside this test under uids of their own)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            got = sandbox._proc_uids(d)
            if got and got[0] not in ("Z", "X") and any(u >= lo for u in got[1]):
                try:
                    with open(f"/proc/{d}/cmdline", "rb") as f:
                        if mentioning.encode() not in f.read():
                            continue
                except OSError:
                    continue
                out.append((int(d), got[1]))
    return out


def _modes(paths) -> dict:
    return {str(p): os.lstat(p).st_mode for p in paths if os.path.lexists(p)}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    if not (course.SOLUTIONS / "01_overfitting.ipynb").exists():
        pytest.skip("lesson 01 is not written yet")
    root = tmp_path_factory.mktemp("uid")
    subs = root / "subs"
    out = root / "out"
    out.mkdir()
    (out / "keep.txt").write_text("grader output")
    sol, ex = solution_sources("01"), learner_copy("01")
    other = subs / "erin" / "01_overfitting.ipynb"
    sol_path = str(course.SOLUTIONS / "01_overfitting.ipynb")
    cases = {
        "erin": fill(ex, sol),
        "reader": fill(ex, sol, {"ex1.1": READER.format(
            solutions=[("sol", sol_path)],
            others=[("other", str(other)), ("readme", str(course.ROOT / "README.md")),
                    ("git", str(course.ROOT / ".git" / "HEAD"))],
            writes=[("keep", str(out / "keep.txt")), ("gradebook", str(out / "gradebook.csv")),
                    ("otherw", str(other)),
                    ("hack", str(course.ROOT / "helpers" / "_hacked_by_reader.py"))],
            lists=[("root", str(course.ROOT)), ("sols", str(course.SOLUTIONS)), ("subs", str(subs)),
                   ("out", str(out))])}),
        "daemon": fill(ex, sol, {"ex1.1": DAEMON.format(
            targets=[str(out / "keep.txt"), str(out / "gradebook.csv"), str(other)])
            + "\n" + sol["ex1.1"]}),
        "leaker": fill(ex, sol, {"ex1.2": LEAKER}),
        "writer": fill(ex, sol, {"ex1.2": WRITER}),
    }
    for who, nb in cases.items():
        (subs / who).mkdir(parents=True)
        (subs / who / "01_overfitting.ipynb").write_bytes(dumps(nb))
    other_bytes = other.read_bytes()
    watched = [Path("/root"), course.ROOT, course.SOLUTIONS, course.ROOT / "README.md", subs,
               other, out]
    before = _modes(watched)
    df0 = os.statvfs("/tmp")
    t0 = time.monotonic()
    proc = subprocess.run([PY, "-m", "helpers.grade", str(subs), "--out", str(out), "--jobs", "2",
                           "--timeout", "60", "-q"], capture_output=True, text=True,
                          cwd=course.ROOT, timeout=900, env=dict(os.environ, **NO_NS))
    after_grading = _uid_processes(str(root))  # the daemon's arguments name the output folder
    yield {"proc": proc, "out": out, "subs": subs, "other": other, "other_bytes": other_bytes,
           "rows": _rows(out) if (out / "gradebook.csv").exists() else [],
           "modes": (before, _modes(watched)), "left": after_grading, "seconds": time.monotonic() - t0,
           "df": (df0, os.statvfs("/tmp"))}
    (course.ROOT / "helpers" / "_hacked_by_reader.py").unlink(missing_ok=True)


def _by(batch, who) -> dict:
    return {r["exercise"]: r for r in batch["rows"] if f"/{who}/" in r["submission"]}


def test_graded_at_uid_only(batch):
    p = batch["proc"]
    assert p.returncode == 0, p.stderr[-3000:]
    assert "isolation: uid-only" in p.stderr
    files = list((batch["out"] / "feedback").glob("*.md"))
    assert len(files) == 5
    for f in files:
        assert "isolation: uid-only" in f.read_text()


def test_honest_is_graded_as_elsewhere(batch):
    rows = _by(batch, "erin")
    assert rows and rows["ex1.1"]["status"] == "passed" and rows["ex1.2"]["status"] == "passed", rows


def test_reader_sees_nothing_and_gets_no_point(batch):
    rows = _by(batch, "reader")
    msg = rows["ex1.1"]["message"]
    assert rows["ex1.1"]["status"] != "passed" and "seen:" in msg, rows["ex1.1"]
    assert "READ:" not in msg and "WROTE:" not in msg and "LISTED:" not in msg, msg
    for tag in ("sol", "other", "readme", "git", "keep", "gradebook", "otherw", "hack", "root",
                "sols", "subs", "out"):
        assert f"Permission:{tag} " in msg, (tag, msg)
    uid = int(msg.split("uid ")[1].split()[0])
    assert uid >= 3_000_000 and "groups []" in msg, msg
    assert (batch["out"] / "keep.txt").read_text() == "grader output"
    assert batch["other"].read_bytes() == batch["other_bytes"]
    assert not (course.ROOT / "helpers" / "_hacked_by_reader.py").exists()


def test_daemon_is_dead_before_results(batch):
    assert batch["left"] == [], f"processes of a job uid outlived the grader: {batch['left']}"
    time.sleep(1.0)  # a daemon that survived would write within 0.2 s
    assert (batch["out"] / "keep.txt").read_text() == "grader output"
    assert batch["other"].read_bytes() == batch["other_bytes"]
    assert _by(batch, "daemon")  # graded (its use of subprocess is refused by the checks)


def test_modes_are_put_back(batch):
    before, after = batch["modes"]
    assert before == after


def test_seed_never_reaches_the_learner(batch):
    seeds = {r["seed"] for r in batch["rows"]}
    assert len(seeds) == 1
    seed = int(seeds.pop())
    assert seed >= 10**8  # drawn large enough to be scrubbed unambiguously
    rows = _by(batch, "leaker")
    assert rows["ex1.2"]["status"] == "error", rows["ex1.2"]
    assert "the seed is [seed hidden]" in rows["ex1.2"]["message"], rows["ex1.2"]
    for r in batch["rows"]:
        assert str(seed) not in r["message"] and hex(seed) not in r["message"], r
    for f in (batch["out"] / "feedback").glob("*.md"):
        text = f.read_text()
        assert str(seed) not in text and hex(seed)[2:] not in text, f.name
    # the instructor keeps it in the gradebook's seed column (and the summary on stdout)


def test_write_cap(batch):
    rows = _by(batch, "writer")
    msg = rows["ex1.2"]["message"]
    assert rows["ex1.2"]["status"] == "error" and "write cap" in msg, rows["ex1.2"]
    assert "was not stopped" not in msg
    assert rows["ex1.1"]["status"] == "passed", rows  # the rest is graded as usual
    df0, df1 = batch["df"]
    grown = (df0.f_bavail - df1.f_bavail) * df1.f_frsize
    assert grown < 300 * 2**20, f"the disk lost {grown / 2**20:.0f} MiB"
    leftovers = [p for p in Path("/tmp").glob("fill-*")]
    assert leftovers == [], leftovers


def test_one_submission_under_10_s_of_its_own(batch):
    # the batch ran 5 submissions (one of them twice, after the write cap) on 2 workers
    print(f"uid-only batch of 5: {batch['seconds']:.1f} s")


# --------------------------------------------------------------------------- units (fast)

def test_forced_no_namespaces_detects_uid_only():
    code = "from helpers.grading import sandbox; print(sandbox.detect('auto'))"
    p = subprocess.run([PY, "-c", code], capture_output=True, text=True, cwd=course.ROOT,
                       env=dict(os.environ, **NO_NS), timeout=120)
    assert p.stdout.strip() == sandbox.LEVEL_UID, p.stderr
    p = subprocess.run([PY, "-c", code.replace("'auto'", "'namespaces'")], capture_output=True,
                       text=True, cwd=course.ROOT, env=dict(os.environ, **NO_NS), timeout=120)
    assert p.stdout.strip() == sandbox.LEVEL_PROCESS  # never a weaker level than asked for


def test_kill_uid_kills_setsid_daemons():
    uid = sandbox._base_uid() + 63
    code = ("import os, time\n"
            "for _ in range(3):\n"
            "    if os.fork() == 0:\n"
            "        os.setsid()\n"
            "        if os.fork() == 0:\n"
            "            time.sleep(120)\n"
            "        os._exit(0)\n"
            "time.sleep(120)\n")
    # Python may live in a folder closed to others (/root): keep it open until the processes
    # have started (under load the child can still be reading its stdlib after Popen returns)
    with sandbox.protect([], []):
        p = subprocess.Popen([PY, "-I", "-c", code], user=uid, group=uid, extra_groups=[],
                             start_new_session=True, cwd="/")
        deadline = time.monotonic() + 60
        while len(sandbox.uid_processes(uid)) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)                        # the daemons are in time.sleep by now
    try:
        assert len(sandbox.uid_processes(uid)) >= 4
        assert sandbox.kill_uid(uid)
        assert sandbox.uid_processes(uid) == []
    finally:
        p.kill()
        p.wait()


def test_protected_closes_and_restores(tmp_path):
    course_dir = tmp_path / "course"
    (course_dir / "solutions").mkdir(parents=True)
    (course_dir / "helpers").mkdir()
    (course_dir / "README.md").write_text("x")
    (course_dir / "solutions" / "a.ipynb").write_text("{}")
    closed_home = tmp_path / "home"
    (closed_home / "py").mkdir(parents=True)
    (closed_home / "secret").write_text("s")
    for p in (tmp_path, course_dir, course_dir / "solutions", course_dir / "helpers"):
        p.chmod(0o755)
    closed_home.chmod(0o700)
    (closed_home / "py").chmod(0o755)
    (closed_home / "secret").chmod(0o644)
    sub = tmp_path / "sub.ipynb"
    sub.write_text("{}")
    sub.chmod(0o644)
    watched = [course_dir, course_dir / "solutions", course_dir / "helpers", course_dir / "README.md",
               closed_home, closed_home / "py", closed_home / "secret", sub]
    before = _modes(watched)
    keep = [course_dir / "helpers", closed_home / "py"]
    with sandbox.Protected([course_dir, closed_home], [sub], keep):
        m = {Path(k): v & 0o777 for k, v in _modes(watched).items()}
        assert m[course_dir] & 0o007 == 0o001          # traverse only, towards helpers/
        assert m[course_dir / "solutions"] & 0o007 == 0
        assert m[course_dir / "README.md"] & 0o007 == 0
        assert m[course_dir / "helpers"] == 0o755      # kept as it is
        assert m[sub] & 0o007 == 0
        assert m[closed_home] & 0o007 == 0o001         # opened for traversal only
        assert m[closed_home / "secret"] == 0o644      # its contents keep their modes
        assert m[closed_home / "py"] == 0o755
    assert _modes(watched) == before


def test_write_measure_counts_the_uid_tmp_files(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "a").write_bytes(b"x" * 4096)
    n, files = sandbox.written(scratch, None)
    assert n >= 4096 and files == 2
    uid = sandbox._base_uid() + 62
    p = Path("/tmp") / f"g1-uid-test-{os.getpid()}"
    p.write_bytes(b"y" * 8192)
    os.chown(p, uid, uid)
    try:
        n2, _ = sandbox.written(scratch, uid)
        assert n2 >= n + 8192
        sandbox.remove_uid_files(uid)
        assert not p.exists()
    finally:
        p.unlink(missing_ok=True)


def test_scrub_seed():
    s = 1234567890
    assert sandbox.scrub_seed(f"seed {s} and {hex(s)} and {s:x}", s) == \
        "seed [seed hidden] and [seed hidden] and [seed hidden]"
    assert sandbox.scrub_seed("ex1.1 wrong values (largest difference 0.5)", s) == \
        "ex1.1 wrong values (largest difference 0.5)"
    assert sandbox.scrub_seed("seed 7", 7) == "seed 7"  # a short seed given by hand: left
    from helpers.grading.runner import draw_seed
    assert all(10**8 <= draw_seed() < 2**31 for _ in range(2000))


# --------------------------------------------------------------------------- Python 3.10

NEWER_THAN_310 = ("tomllib", "typing.Self", "typing.LiteralString", "typing.Never",
                  "typing.assert_never", "typing.reveal_type", "typing.TypeVarTuple",
                  "typing.Unpack", "typing.Required", "typing.NotRequired", "datetime.UTC",
                  "enum.StrEnum", "asyncio.TaskGroup", "asyncio.timeout", "ExceptionGroup",
                  "BaseExceptionGroup", "typing.override", "itertools.batched")


@pytest.mark.parametrize("path", sorted(p.relative_to(course.ROOT).as_posix()
                                        for p in (course.ROOT / "helpers").rglob("*.py")))
def test_helpers_parse_as_python_310(path):
    """Gradescope's default image has Python 3.10: nothing in ``helpers`` may need newer syntax
    or a module or name that 3.10 lacks."""
    src = (course.ROOT / path).read_text(encoding="utf-8")
    tree = ast.parse(src, filename=path, feature_version=(3, 10))
    for node in ast.walk(tree):
        assert not isinstance(node, getattr(ast, "TryStar", ())), f"{path}: except* needs 3.11"
        if isinstance(node, ast.Import):
            for a in node.names:
                assert a.name not in NEWER_THAN_310, f"{path}: import {a.name} needs 3.11+"
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                assert f"{node.module}.{a.name}" not in NEWER_THAN_310, \
                    f"{path}: from {node.module} import {a.name} needs 3.11+"
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            assert f"{node.value.id}.{node.attr}" not in NEWER_THAN_310, \
                f"{path}: {node.value.id}.{node.attr} needs 3.11+"
        elif isinstance(node, ast.Name):
            assert node.id not in ("ExceptionGroup", "BaseExceptionGroup"), f"{path}: {node.id}"


# --------------------------------------------------------------------------- the write cap elsewhere

TMP_WRITER = """\
import os, uuid
_block = b"x" * (16 * 2**20)
_n = 0
for _i in range(45):
    try:
        with open(f"/tmp/fill-{uuid.uuid4().hex}", "wb") as f:
            f.write(_block)
        _n += 16
    except OSError:
        pass
def fit_polynomial(x, y, degree):
    raise RuntimeError(f"wrote {_n} MiB and was not stopped")
"""


@pytest.mark.parametrize("level", ["auto"])
def test_write_cap_at_the_default_level(tmp_path, level):
    """The best level this machine has (bubblewrap here): 720 MiB into the scratch folder and
    into the sandbox's own /tmp are both stopped at the cap, with an error row saying so."""
    lv = sandbox.detect(level)
    if lv in (sandbox.LEVEL_PROCESS, sandbox.LEVEL_UID):
        pytest.skip(f"no namespaces here ({lv}); the uid-only batch covers the cap")
    sol, ex = solution_sources("01"), learner_copy("01")
    subs = tmp_path / "subs"
    for who, src in (("scratch", WRITER.replace('(".", "/tmp")', '(".", ".")')), ("tmp", TMP_WRITER)):
        (subs / who).mkdir(parents=True)
        (subs / who / "01_overfitting.ipynb").write_bytes(dumps(fill(ex, sol, {"ex1.2": src})))
    out = tmp_path / "out"
    p = subprocess.run([PY, "-m", "helpers.grade", str(subs), "--out", str(out), "--jobs", "2", "-q"],
                       capture_output=True, text=True, cwd=course.ROOT, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = _rows(out)
    for who in ("scratch", "tmp"):
        r = {x["exercise"]: x for x in rows if f"/{who}/" in x["submission"]}
        assert r["ex1.2"]["status"] == "error" and "write cap" in r["ex1.2"]["message"], (who, r["ex1.2"])
        assert r["ex1.1"]["status"] == "passed", (who, r["ex1.1"])
