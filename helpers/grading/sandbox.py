"""Running one assembled notebook under nbval, isolated from the grader and from the others.

The levels, chosen once per grading run by :func:`detect` (the first that works):

- ``bubblewrap+uid`` / ``bubblewrap`` (Linux with Debian's ``bubblewrap``): an allow-list.
  The run starts in an empty root file system built by ``bwrap`` from bind mounts: the
  Python environment, the ``helpers/`` folder the kernel imports (not the checkout around
  it, so no ``solutions/``), the system libraries (``/usr/lib``...), a few ``/etc`` files
  (generated ``passwd``/``group``/``hosts``), ``/proc`` of its own PID namespace, a minimal
  ``/dev``, fresh size-limited ``/tmp`` and ``/dev/shm``, all read-only but those and its
  scratch folder. Nothing else of the host exists for it: no other checkout, no ``/srv``,
  no ``/opt``, no home folder, no network but its own loopback. As root, ``setpriv`` (inside
  the sandbox, keeping nothing) then drops to a uid of its own per job, as below; without
  root, ``bwrap`` maps the grading user into a user namespace and drops every capability.

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

LEVEL_BWRAP_UID = "bubblewrap+uid"
LEVEL_BWRAP = "bubblewrap"
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
    k = kernel_helpers_dir()
    if k is not None:
        paths.add(k)
    return sorted(paths)


def detect(want: str = "auto") -> str:
    """The isolation level this machine supports (``want``: auto, bubblewrap, namespaces,
    process). ``auto`` takes the best that works; ``bubblewrap`` and ``namespaces`` never
    fall back to a weaker level than asked for (the caller reports it)."""
    if want == "process":
        return LEVEL_PROCESS
    if want in _DETECTED:
        return _DETECTED[want]
    level = LEVEL_PROCESS
    if want in ("auto", "bubblewrap"):
        level = _detect_bwrap() or LEVEL_PROCESS
        if level != LEVEL_PROCESS or want == "bubblewrap":
            _DETECTED[want] = level
            return level
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


def _quiet(cmd, env=None) -> bool:
    try:
        return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=60, env=env).returncode == 0
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


# --------------------------------------------------------------------------- bubblewrap

BWRAP_SYSTEM = ("/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/libx32")
BWRAP_TOP = ("/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin")   # symlinks or folders
BWRAP_ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/nsswitch.conf")
_KERNEL_HELPERS: list = []


def kernel_helpers_dir() -> Path | None:
    """The ``helpers`` folder a kernel started with this Python imports (an editable install
    may point at another clone than the grader's own): found without importing it."""
    if not _KERNEL_HELPERS:
        found = None
        try:
            out = subprocess.run(
                [sys.executable, "-I", "-c", "import importlib.util as u; s = u.find_spec('helpers'); "
                 "print(list(s.submodule_search_locations)[0] if s else '')"],
                capture_output=True, text=True, timeout=60, cwd="/",
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
            line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
            found = Path(line).resolve() if line else None
        except (OSError, subprocess.SubprocessError, IndexError):
            found = None
        _KERNEL_HELPERS.append(found)
    return _KERNEL_HELPERS[0]


def bwrap_paths() -> list[Path]:
    """What a bubblewrap sandbox binds read-only from the Python side: the environment and
    the ``helpers`` folders (the grader's, for its pytest plugin, and the kernel's)."""
    import helpers
    paths = set(_needed_paths())
    k = kernel_helpers_dir()
    if k is not None:
        paths.add(k)
    paths.add(Path(helpers.__file__).resolve().parent)
    # a path inside another one is bound with it
    return sorted(p for p in paths if not any(o != p and _is_within(p, o) for o in paths))


def _detect_bwrap() -> str | None:
    if not sys.platform.startswith("linux") or not shutil.which("bwrap"):
        return None
    import tempfile
    root = os.geteuid() == 0
    if root and not shutil.which("setpriv"):
        return None
    with tempfile.TemporaryDirectory(prefix="course-bwrap-probe-") as d:
        stage = Path(d)
        scratch = stage / "scratch"
        scratch.mkdir()
        uid = _base_uid() if root else None
        if uid is not None:
            os.chown(scratch, uid, uid)
        code = ("import importlib.util as u, os, socket, sys; "
                "assert u.find_spec('helpers') is not None; "
                "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.close(); "
                "open('/tmp/submission/ok', 'w').write('ok')")
        cmd = bwrap_cmd(stage, scratch, uid) + [sys.executable, "-I", "-c", code]
        ok = _quiet(cmd, env=_env(SCRATCH_IN_NS)) and (scratch / "ok").exists()
    if not ok:
        return None
    return LEVEL_BWRAP_UID if root else LEVEL_BWRAP


def _etc_files(stage: Path, uid: int | None) -> dict[str, Path]:
    """Generated ``/etc`` files for the sandbox (no host account or host name leaks in)."""
    u = uid if uid is not None else os.getuid()
    g = uid if uid is not None else os.getgid()
    files = {
        "passwd": f"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
                  f"learner:x:{u}:{g}:learner:{SCRATCH_IN_NS}/.home:/usr/sbin/nologin\n",
        "group": f"root:x:0:\nlearner:x:{g}:\n",
        "hosts": "127.0.0.1 localhost\n::1 localhost\n",
    }
    out = {}
    folder = stage / "etc"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
        os.chmod(folder / name, 0o644)
        out[f"/etc/{name}"] = folder / name
    return out


def bwrap_cmd(stage: Path, scratch: Path, uid: int | None) -> list[str]:
    """The ``bwrap`` command line (up to the program it runs) for one sandboxed run.

    ``scratch`` becomes ``/tmp/submission`` (the one writable host folder); ``uid``: as root,
    the uid the run drops to (``setpriv`` inside the sandbox), else None.
    """
    root = os.geteuid() == 0
    cmd = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
           "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if root:
        cmd += ["--cap-drop", "ALL"]
        if uid is not None:
            cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
    else:
        cmd += ["--unshare-user", "--cap-drop", "ALL"]
    # the fresh file systems first: a bound path may lie under /tmp (a checkout, a venv)
    cmd += ["--proc", "/proc", "--dev", "/dev",
            "--size", str(256 * 2**20), "--perms", "1777", "--tmpfs", "/dev/shm",
            "--size", str(512 * 2**20), "--perms", "1777", "--tmpfs", "/tmp"]
    made: set = {Path("/tmp"), Path("/dev"), Path("/proc")}

    def dirs_to(target: Path):
        out = []
        for a in reversed(target.parents):
            if str(a) != "/" and a not in made:
                made.add(a)
                out += ["--perms", "0755", "--dir", str(a)]
        return out

    for top in BWRAP_TOP:
        p = Path(top)
        if p.is_symlink():
            cmd += ["--symlink", os.readlink(p), top]
        elif p.is_dir():
            cmd += ["--ro-bind", top, top]
    for sysdir in BWRAP_SYSTEM:
        p = Path(sysdir)
        if p.is_dir() and not p.is_symlink():
            cmd += dirs_to(p) + ["--ro-bind", sysdir, sysdir]
            made.add(p)
    if root and uid is not None:
        sp = shutil.which("setpriv")
        real = Path(sp).resolve()
        if not any(_is_within(real, Path(d)) for d in BWRAP_SYSTEM):
            cmd += dirs_to(real) + ["--ro-bind", str(real), str(real)]
    for f in BWRAP_ETC:
        if Path(f).exists():
            cmd += dirs_to(Path(f)) + ["--ro-bind", f, f]
    for dest, src in _etc_files(stage, uid).items():
        cmd += dirs_to(Path(dest)) + ["--ro-bind", str(src), dest]
    for p in bwrap_paths():
        if p.exists():
            cmd += dirs_to(p) + ["--ro-bind", str(p), str(p)]
            made.add(p)
    cmd += ["--bind", str(scratch), SCRATCH_IN_NS, "--chdir", SCRATCH_IN_NS]
    if root and uid is not None:
        cmd += ["--", str(Path(shutil.which("setpriv")).resolve())] + _setpriv_args(uid)[1:]
    else:
        cmd += ["--"]
    return cmd


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


def _make_scratch(stage: Path, inp: Path) -> Path:
    """``stage/scratch`` (private to the grader): a copy of the files in ``inp`` and empty
    ``.home`` and ``.tmp`` folders, the kernel's working folder in the bwrap and process levels."""
    scratch = stage / "scratch"
    scratch.mkdir(mode=0o700)
    for f in inp.iterdir():
        shutil.copy(f, scratch / f.name)
    (scratch / ".home").mkdir()
    (scratch / ".tmp").mkdir()
    return scratch


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
        if level in (LEVEL_BWRAP, LEVEL_BWRAP_UID):
            scratch = _make_scratch(stage, inp)
            juid = uid if level == LEVEL_BWRAP_UID else None
            if juid is not None:
                for dirpath, dirnames, filenames in os.walk(scratch):
                    os.chown(dirpath, juid, juid)
                    for f in filenames:
                        os.chown(os.path.join(dirpath, f), juid, juid)
                # bwrap enters it before setpriv, as root without capabilities: let it traverse
                os.chmod(scratch, 0o711)
            env = _env(SCRATCH_IN_NS, seed)
            cmd = bwrap_cmd(stage, scratch, juid) + _pytest_args(limits)
            cwd = str(stage)
        elif level == LEVEL_PROCESS:
            scratch = _make_scratch(stage, inp)
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
                     "preexec_fn": _limits_fn(limits, level in (LEVEL_NS_UID, LEVEL_BWRAP_UID))}
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
