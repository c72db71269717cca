"""Running one assembled notebook under nbval, isolated from the grader and from the others.

Two levels, chosen once per grading run by :func:`detect`:

- ``namespaces+uid`` (Linux, root, ``unshare`` and ``setpriv``): the run gets its own mount,
  network and PID namespaces. A shell prelude, as root inside them, brings loopback up (the
  kernel talks ZMQ over 127.0.0.1), mounts empty file systems over the course repository
  (keeping only ``helpers/`` and the Python environment, read-only), over the reference
  solutions, the grader's output folder, the submitted folders and files, and over
  ``/tmp``, ``/var/tmp``, ``/dev/shm`` (fresh, size-limited), then drops to a uid of its own
  (no capabilities, no new privileges) in a private scratch folder. When pytest ends, the
  PID namespace ends and every process the submission started is killed.
- ``namespaces`` (non-root with unprivileged user namespaces): the same, without the uid
  change (the kernel keeps the grading user's rights outside the hidden paths).
- ``process only``: a plain child process in a scratch folder of its own.

All levels: resource limits (address space, file size, CPU time, no core files), a
minimal environment with ``HOME`` etc. in the scratch folder and one thread, a per-cell
timeout (nbval) and a wall-clock limit on the whole run (the process tree is killed).
The plugin's results come back through an inherited file descriptor, never through a file
the kernel could replace.
"""

from __future__ import annotations

import os
try:
    import resource
except ImportError:  # Windows
    resource = None
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

LEVEL_NS_UID = "namespaces+uid"
LEVEL_NS = "namespaces"
LEVEL_PROCESS = "process only"

SCRATCH_IN_NS = "/tmp/submission"
TMPFS_SIZE = "512m"
MAX_RESULTS_BYTES = 100_000_000
MAX_LINE_BYTES = 40_000_000


@dataclass
class Limits:
    cell_timeout: float = 60.0
    run_timeout: float = 300.0
    memory_bytes: int = 6 * 2**30
    file_bytes: int = 256 * 2**20
    nproc: int = 512


@dataclass
class RunResult:
    events: list = field(default_factory=list)   # the plugin's JSON lines
    returncode: int | None = None
    timed_out: bool = False                      # the whole run hit run_timeout
    elapsed: float = 0.0
    log_tail: str = ""


# --------------------------------------------------------------------------- capability

_DETECTED: dict = {}


def _needed_paths() -> list[Path]:
    """Paths the sandboxed process must keep seeing (read-only): Python and ``helpers``."""
    import helpers
    paths = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(),
             Path(sys.executable).resolve().parent, Path(helpers.__file__).resolve().parent}
    for p in sys.path:
        if p and Path(p).is_dir() and ("site-packages" in p or "dist-packages" in p):
            paths.add(Path(p).resolve())
    return sorted(paths)


def detect(want: str = "auto") -> str:
    """The isolation level this machine supports (``want``: auto, namespaces, process)."""
    if want == "process":
        return LEVEL_PROCESS
    if want in _DETECTED:
        return _DETECTED[want]
    level = LEVEL_PROCESS
    if sys.platform.startswith("linux") and shutil.which("unshare") and shutil.which("mount"):
        root = os.geteuid() == 0
        probe = ("set -e; mount --make-rprivate /; "
                 + ("ip link set lo up; " if shutil.which("ip") else "")
                 + "mount -t tmpfs -o size=1m grader-probe /dev/shm; ")
        if root and shutil.which("setpriv"):
            cmd = _unshare_cmd(False) + ["sh", "-c", probe + "exec " + " ".join(
                _setpriv_args(_base_uid())) + " true"]
            if _quiet(cmd):
                level = LEVEL_NS_UID
        if level == LEVEL_PROCESS and shutil.which("setpriv"):
            cmd = _unshare_cmd(not root) + ["sh", "-c", probe + "exec " + " ".join(_drop_caps_args()) + " true"]
            if _quiet(cmd):
                level = LEVEL_NS
    _DETECTED[want] = level
    return level


def _quiet(cmd) -> bool:
    try:
        return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _unshare_cmd(user: bool) -> list[str]:
    cmd = ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
    if user:
        cmd[1:1] = ["--user", "--map-root-user"]
    return cmd


_BASE_UID = None


def _base_uid() -> int:
    """First of the uids this grading run gives its jobs (distinct across concurrent graders)."""
    global _BASE_UID
    if _BASE_UID is None:
        _BASE_UID = 3_000_000 + (os.getpid() % 100_000) * 64
    return _BASE_UID


def _drop_caps_args() -> list[str]:
    return ["setpriv", "--no-new-privs", "--bounding-set=-all", "--inh-caps=-all", "--"]


def _setpriv_args(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--no-new-privs", "--bounding-set=-all", "--inh-caps=-all", "--"]


# --------------------------------------------------------------------------- the run

def _is_within(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False


def _cover(target: Path, keep: list[Path], hold: str, n: list, mount: str) -> list[str]:
    """Shell lines that run ``mount`` (a tmpfs mount over ``target``) while the paths of
    ``keep`` inside ``target`` stay visible, read-only: each is bind-mounted aside under
    ``hold`` first and moved back onto the new file system afterwards."""
    q = shlex.quote
    inner = sorted({k for k in keep if _is_within(k, target) and k != target})
    # drop kept paths inside other kept paths
    inner = [k for k in inner if not any(o != k and _is_within(k, o) for o in inner)]
    lines, held = [], []
    for k in inner:
        n[0] += 1
        h = f"{hold}/k{n[0]}"
        lines += [f"mkdir -p {h}", f"mount --rbind {q(str(k))} {h}"]
        held.append((h, k))
    lines.append(mount)
    for h, k in held:
        lines += [f"mkdir -p {q(str(k))}", f"mount --move {h} {q(str(k))}",
                  f"mount -o remount,bind,ro {q(str(k))} || true", f"rmdir {h}"]
    return lines


def _hide_dir(target: Path, keep: list[Path], hold: str, n: list) -> list[str]:
    """Shell lines that mount an empty read-only tmpfs over ``target``, keeping ``keep``
    (paths inside it) visible and read-only."""
    q = shlex.quote
    mount = f"mount -t tmpfs -o size=4m,mode=0755 grader-hidden {q(str(target))}"
    return _cover(target, keep, hold, n, mount) + [f"mount -o remount,ro {q(str(target))}"]


def _fresh_tmp(target: str, keep: list[Path], hold: str, n: list, size: str) -> list[str]:
    """Shell lines that mount a fresh writable tmpfs over ``target`` (keeping ``keep``)."""
    q = shlex.quote
    mount = f"mount -t tmpfs -o size={size},mode=1777,nosuid,nodev grader-tmp {q(target)}"
    return [f"if [ -d {q(target)} ]; then"] + _cover(Path(target), keep, hold, n, mount) + ["fi"]


def prelude(level: str, stage: Path, uid: int | None, hide_dirs: list[Path],
            hide_files: list[Path]) -> str:
    """The root shell script that sets up the namespaces and execs the sandboxed pytest."""
    q = shlex.quote
    keep = [p for p in _needed_paths()]
    hold = "/dev/shm/.grader-hold"
    n = [0]
    lines = ["set -eu", "umask 022", "mount --make-rprivate /"]
    if shutil.which("ip"):
        lines.append("ip link set lo up")
    # a private /dev/shm first: it holds what must survive the other mounts
    lines += ["mount -t tmpfs -o size=256m,mode=1777,nosuid,nodev grader-shm /dev/shm",
              f"mkdir -m 0700 {hold} /dev/shm/.grader-in",
              f"cp {q(str(stage / 'in'))}/* /dev/shm/.grader-in/"]
    for f in hide_files:
        if not any(_is_within(f, d) for d in hide_dirs):
            lines += [f"if [ -f {q(str(f))} ]; then mount --bind /dev/null {q(str(f))}; fi"]
    # hide directories, outermost first (an inner one is covered by its parent); a folder
    # on the way to Python that the job's uid could not traverse (/root) is hidden too,
    # which re-creates the way as world-traversable, read-only mount points
    extra = set()
    if uid is not None:
        for k in keep:
            for a in reversed(k.parents):
                try:
                    if a != Path("/") and not (a.stat().st_mode & 0o001):
                        extra.add(a)
                        break
                except OSError:
                    break
    dirs = sorted(set(hide_dirs) | extra, key=lambda p: len(p.parts))
    done: list[Path] = []
    for d in dirs:
        if any(_is_within(d, o) for o in done):
            continue
        if any(_is_within(d, k) for k in keep):
            continue  # never hide Python or helpers themselves
        lines.append(f"if [ -d {q(str(d))} ]; then")
        lines += ["  " + s for s in _hide_dir(d, keep, hold, n)]
        lines.append("fi")
        done.append(d)
    for t in ("/tmp", "/var/tmp", "/run/lock"):
        lines += _fresh_tmp(t, keep, hold, n, TMPFS_SIZE if t == "/tmp" else "64m")
    owner = f"{uid}:{uid}" if uid is not None else None
    lines += [f"mkdir -m 0700 {SCRATCH_IN_NS}",
              f"cp /dev/shm/.grader-in/* {SCRATCH_IN_NS}/",
              f"mkdir -p {SCRATCH_IN_NS}/.home {SCRATCH_IN_NS}/.tmp",
              f"rm -rf /dev/shm/.grader-in; rmdir {hold} || true"]
    if owner:
        lines.append(f"chown -R {owner} {SCRATCH_IN_NS}")
    lines.append(f"cd {SCRATCH_IN_NS}")
    # no capabilities after exec (a root-in-namespace kernel could otherwise unmount the
    # hiding mounts), no privileges from setuid binaries
    exec_prefix = " ".join(_setpriv_args(uid) if uid is not None else _drop_caps_args()) + " "
    lines.append(f'exec {exec_prefix}"$@"')
    return "\n".join(lines) + "\n"


def _env(scratch: str, seed: int | None = None) -> dict:
    venv_bin = str(Path(sys.executable).parent)
    home = f"{scratch}/.home"
    env = {
        "PATH": venv_bin + os.pathsep + ("/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
                                          if os.name != "nt" else os.environ.get("PATH", "")),
        "HOME": home, "USER": "learner", "LOGNAME": "learner",
        "TMPDIR": f"{scratch}/.tmp",
        "MPLCONFIGDIR": f"{home}/.matplotlib", "MPLBACKEND": "Agg",
        "IPYTHONDIR": f"{home}/.ipython",
        "JUPYTER_RUNTIME_DIR": f"{home}/.jupyter-runtime",
        "JUPYTER_DATA_DIR": f"{home}/.jupyter-data",
        "JUPYTER_CONFIG_DIR": f"{home}/.jupyter",
        "JUPYTER_PLATFORM_DIRS": "1",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1",
        "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "dumb", "NO_COLOR": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    if seed is not None:  # the case seed the check cells probe with (helpers.checks.core)
        env["COURSE_CASE_SEED"] = str(int(seed))
    return env


def _limits_fn(limits: Limits, with_nproc: bool):
    """The child's resource limits (POSIX; a limit the platform refuses is skipped)."""
    if resource is None:
        return None
    cpu = int(limits.run_timeout * 2 + 30)
    wanted = [("RLIMIT_CORE", 0), ("RLIMIT_AS", limits.memory_bytes),
              ("RLIMIT_FSIZE", limits.file_bytes), ("RLIMIT_CPU", cpu), ("RLIMIT_NOFILE", 1024)]
    if with_nproc:
        wanted.append(("RLIMIT_NPROC", limits.nproc))
    wanted = [(getattr(resource, n), v) for n, v in wanted if hasattr(resource, n)]

    def set_limits():
        os.umask(0o077)
        for res, value in wanted:
            try:
                soft, hard = resource.getrlimit(res)
                if hard != resource.RLIM_INFINITY:
                    value = min(value, hard)
                resource.setrlimit(res, (value, value))
            except (ValueError, OSError):
                pass
    return set_limits


# The plugin is loaded from its file, not as ``helpers.grading.plugin``: importing anything in
# ``helpers`` runs ``helpers/__init__`` (which imports torch), a second or more of every run.
_LAUNCHER = ("import importlib.util as u, sys; "
             "s = u.spec_from_file_location('course_grade_plugin', sys.argv.pop(1)); "
             "m = u.module_from_spec(s); sys.modules['course_grade_plugin'] = m; "
             "s.loader.exec_module(m); import pytest; sys.exit(pytest.main(sys.argv[1:]))")


def _pytest_args(limits: Limits) -> list[str]:
    plugin = str(Path(__file__).resolve().with_name("plugin.py"))
    return [sys.executable, "-I", "-c", _LAUNCHER, plugin,
            "-p", "no:cacheprovider", "-p", "course_grade_plugin", "-p", "nbval",
            "-q", "--color=no", "-o", "addopts=",
            "-c", "pytest.ini", "--rootdir=.", "--confcutdir=.",
            "--nbval-lax", "--nbval-current-env",
            f"--nbval-cell-timeout={max(1, int(round(limits.cell_timeout)))}",
            "assembled.ipynb"]


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), deepest last."""
    children: dict[int, list[int]] = {}
    try:
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat", "rb") as f:
                    stat = f.read().decode("ascii", "replace")
                ppid = int(stat[stat.rindex(")") + 2:].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                continue
    except OSError:
        return []
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def _kill_tree(proc: subprocess.Popen) -> None:
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return
    victims = _descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    for p in victims:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


def run_notebook(nb_text: str, stage: Path, level: str, limits: Limits, uid: int | None = None,
                 hide_dirs: list[Path] = (), hide_files: list[Path] = (),
                 seed: int | None = None) -> RunResult:
    """Run ``nb_text`` (an assembled notebook) under nbval in ``stage`` (a fresh, private
    folder owned by the grader). Returns what the plugin reported."""
    stage.mkdir(mode=0o700, parents=True, exist_ok=False)
    inp = stage / "in"
    inp.mkdir(mode=0o700)
    (inp / "assembled.ipynb").write_text(nb_text, encoding="utf-8")
    (inp / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    results_path = stage / "results.jsonl"
    log_path = stage / "log.txt"
    rfd = os.open(results_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
    lfd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if level == LEVEL_PROCESS:
            scratch = stage / "scratch"
            scratch.mkdir(mode=0o700)
            for f in inp.iterdir():
                shutil.copy(f, scratch / f.name)
            (scratch / ".home").mkdir()
            (scratch / ".tmp").mkdir()
            env = _env(str(scratch), seed)
            cmd = _pytest_args(limits)
            cwd = str(scratch)
        else:
            script = stage / "prelude.sh"
            script.write_text(prelude(level, stage, uid if level == LEVEL_NS_UID else None,
                                      list(hide_dirs), list(hide_files)))
            env = _env(SCRATCH_IN_NS, seed)
            cmd = (_unshare_cmd(level == LEVEL_NS) + ["sh", str(script)]
                   + _pytest_args(limits))
            cwd = str(stage)
        if os.name == "nt":  # no fd passing: the plugin appends to the file by name
            env["COURSE_GRADE_RESULTS_FILE"] = str(results_path)
            env["SYSTEMROOT"] = os.environ.get("SYSTEMROOT", "")
            extra = {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
        else:
            env["COURSE_GRADE_RESULTS_FD"] = str(rfd)
            extra = {"pass_fds": (rfd,), "start_new_session": True,
                     "preexec_fn": _limits_fn(limits, level == LEVEL_NS_UID)}
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=lfd,
                                stderr=subprocess.STDOUT, **extra)
        result = RunResult()
        try:
            proc.wait(timeout=limits.run_timeout)
        except subprocess.TimeoutExpired:
            result.timed_out = True
        finally:
            # whatever is left (a kernel the plugin did not stop, a daemon): kill it
            _kill_tree(proc)
            proc.wait()
        result.returncode = proc.returncode
        result.elapsed = time.monotonic() - t0
    finally:
        os.close(rfd)
        os.close(lfd)
    result.events = read_events(results_path)
    result.log_tail = _tail(log_path)
    return result


def read_events(path: Path) -> list:
    import json
    events = []
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return events
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_RESULTS_BYTES)
    for line in data.split(b"\n"):
        if not line.strip() or len(line) > MAX_LINE_BYTES:
            continue
        try:
            e = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(e, dict):
            events.append(e)
    return events


def _tail(path: Path, n: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - n))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


class UidPool:
    """Per-job uids: two jobs never run under the same uid at the same time."""

    def __init__(self, n: int):
        self._free = [_base_uid() + i for i in range(max(1, n))]
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            return self._free.pop(0)

    def give(self, uid: int) -> None:
        with self._lock:
            self._free.append(uid)
