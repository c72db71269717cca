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
- ``uid-only`` (Linux, root, where no namespace can be created: a container under Docker's
  default seccomp profile, as Gradescope's may be): the kernel runs as an unprivileged uid of
  its own (``setgroups([])``, ``setregid``/``setreuid`` in the child, no new privileges), in a
  scratch folder owned by that uid. Before any kernel starts, :func:`protect` takes every
  permission of "other" off the folders the kernel must not see (the course source around the
  ``helpers`` it imports, the solutions, the submissions, the output folder; their modes are
  put back afterwards), so the uid can neither read nor write them. When a run ends, every
  process of that uid is killed (:func:`kill_uid`: ``kill(-1)`` from the uid itself, then
  ``/proc`` scanned until none is left, ``setsid`` daemons included) and every file it left in
  ``/tmp``, ``/var/tmp`` and ``/dev/shm`` is removed, before any result is written.
  ``COURSE_GRADE_NO_NAMESPACES=1`` makes the namespace probes fail (tests simulate such a
  container with it); ``detect("uid")`` asks for this level.
- ``process only``: a plain child process in a scratch folder of its own.

All levels: resource limits (address space, file size, CPU time, no core files), a write cap
(:attr:`Limits.write_bytes`, measured every :data:`WATCH_PERIOD` seconds: the scratch folder,
plus at the uid-only level the uid's files in ``/tmp``, ``/var/tmp`` and ``/dev/shm``, and at
the bubblewrap and namespaces levels their own size-limited ``/tmp``, ``/var/tmp`` and
``/dev/shm``, seen through ``/proc/PID/root``; past it the run is killed and reported), a
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
import stat
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
LEVEL_UID = "uid-only"
LEVEL_PROCESS = "process only"
UID_LEVELS = ("bubblewrap+uid", "namespaces+uid", "uid-only")
NO_NAMESPACES_ENV = "COURSE_GRADE_NO_NAMESPACES"   # "1": behave as where namespaces are forbidden
WATCH_PERIOD = 0.1                                  # seconds between two write-cap measurements
MAX_WRITTEN_FILES = 20_000                          # files a run may create (scratch and /tmp)
SHARED_TMP = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")  # world-writable folders (uid-only)

SCRATCH_IN_NS = "/tmp/submission"
TMPFS_SIZE = "512m"
MAX_RESULTS_BYTES = 100_000_000
MAX_LINE_BYTES = 40_000_000


@dataclass
class Limits:
    cell_timeout: float = 60.0
    run_timeout: float = 300.0
    memory_bytes: int = 6 * 2**30
    file_bytes: int = 256 * 2**20   # one file (RLIMIT_FSIZE)
    write_bytes: int = 200 * 2**20  # everything a run writes (scratch, and /tmp at uid-only)
    nproc: int = 512


@dataclass
class RunResult:
    events: list = field(default_factory=list)   # the plugin's JSON lines
    returncode: int | None = None
    timed_out: bool = False                      # the whole run hit run_timeout
    elapsed: float = 0.0
    log_tail: str = ""
    write_capped: str = ""                       # why the write cap stopped the run, or ""


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


def namespaces_forbidden() -> bool:
    """True when ``COURSE_GRADE_NO_NAMESPACES`` asks to behave as in a container that forbids
    namespaces (every bubblewrap and ``unshare`` probe then fails)."""
    return os.environ.get(NO_NAMESPACES_ENV, "").strip() not in ("", "0")


def detect(want: str = "auto") -> str:
    """The isolation level this machine supports (``want``: auto, bubblewrap, namespaces, uid,
    process). ``auto`` takes the best that works; ``bubblewrap``, ``namespaces`` and ``uid``
    never fall back to a weaker level than asked for (the caller reports it)."""
    if want == "process":
        return LEVEL_PROCESS
    if want in _DETECTED:
        return _DETECTED[want]
    if want == "uid":
        level = LEVEL_UID if _detect_uid() else LEVEL_PROCESS
        _DETECTED[want] = level
        return level
    level = LEVEL_PROCESS
    forbidden = namespaces_forbidden()
    if want in ("auto", "bubblewrap"):
        level = (None if forbidden else _detect_bwrap()) or LEVEL_PROCESS
        if level != LEVEL_PROCESS or want == "bubblewrap":
            _DETECTED[want] = level
            return level
    if (not forbidden and sys.platform.startswith("linux") and shutil.which("unshare")
            and shutil.which("mount")):
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
    if level == LEVEL_PROCESS and want == "auto" and _detect_uid():
        level = LEVEL_UID
    _DETECTED[want] = level
    return level


def _detect_uid() -> bool:
    """Root on Linux, and Python with ``helpers`` runs as an unprivileged uid of its own."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not hasattr(os, "setresuid"):
        return False
    uid = _base_uid()
    code = ("import importlib.util as u, os; assert u.find_spec('helpers') is not None; "
            f"assert os.getuid() == os.geteuid() == {uid} and os.getgroups() == []")
    try:
        with protect([], []):
            return subprocess.run([sys.executable, "-I", "-c", code], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=60, cwd="/", env=_env("/"),
                                  user=uid, group=uid, extra_groups=[],
                                  preexec_fn=_no_new_privs).returncode == 0
    except (OSError, subprocess.SubprocessError, ValueError):
        return False


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


def _libc_prctl():
    try:
        import ctypes
        return ctypes.CDLL(None, use_errno=True).prctl
    except Exception:  # noqa: BLE001 - not Linux / no libc: nothing to set
        return None


_PRCTL = _libc_prctl() if sys.platform.startswith("linux") else None


def _no_new_privs() -> None:
    """In the child, after the uid change: no privileges from setuid binaries ever again."""
    if _PRCTL is not None:
        _PRCTL(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS


# --------------------------------------------------------------------------- uid-only

def _proc_uids(pid: str):
    """``(state, {real, effective, saved, fs uid})`` of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    state, uids = "", set()
    for line in text.splitlines():
        if line.startswith("State:"):
            state = line.split()[1] if len(line.split()) > 1 else ""
        elif line.startswith("Uid:"):
            uids = {int(x) for x in line.split()[1:]}
    return state, uids


def uid_processes(uid: int) -> list[int]:
    """Live (not zombie) processes any of whose uids is ``uid``."""
    out = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for d in names:
        if d.isdigit():
            got = _proc_uids(d)
            if got and uid in got[1] and got[0] not in ("Z", "X"):
                out.append(int(d))
    return out


def kill_uid(uid: int, deadline_s: float = 20.0) -> bool:
    """SIGKILL every process of ``uid`` (``setsid`` daemons and double forks included) and
    return True once none is left. First a shell that becomes ``uid`` runs ``kill -9 -1`` (the
    kernel signals every process of the uid at once, so a fork loop cannot outrun it); then ``/proc`` is scanned and what is left is killed, until a scan finds none."""
    if os.name == "nt" or os.geteuid() != 0:
        return True
    end = time.monotonic() + deadline_s
    rounds = 0
    while True:
        if rounds < 3:
            # a shell that becomes the uid (in subprocess's child, fork-safe in this threaded
            # process) and signals every process of the uid but itself
            try:
                subprocess.run(["sh", "-c", "kill -9 -1"], user=uid, group=uid, extra_groups=[],
                               cwd="/", env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
            except (OSError, subprocess.SubprocessError, ValueError):
                pass
        left = uid_processes(uid)
        if not left:
            return True
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        rounds += 1
        if time.monotonic() > end:
            return not uid_processes(uid)
        time.sleep(0.01 if rounds < 10 else 0.05)


def _uid_tmp_entries(uid: int) -> list[Path]:
    """What ``uid`` left in the world-writable folders: their entries it owns, and those one
    level down in a world-writable folder of someone else (``/tmp/.X11-unix`` and the like)."""
    out = []
    for top in SHARED_TMP:
        todo = [(Path(top), 0)]
        while todo:
            d, depth = todo.pop()
            try:
                names = os.listdir(d)
            except OSError:
                continue
            for n in names:
                p = d / n
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                if st.st_uid == uid:
                    out.append(p)
                elif depth == 0 and stat.S_ISDIR(st.st_mode) and st.st_mode & 0o002:
                    todo.append((p, 1))
    return out


def _bytes_in(paths, limit_files: int) -> tuple[int, int]:
    """``(bytes, files)`` under ``paths`` (disk blocks or size, the larger; links not followed);
    stops counting past ``limit_files`` entries."""
    total, files = 0, 0
    todo = list(paths)
    while todo:
        p = todo.pop()
        try:
            st = os.lstat(p)
        except OSError:
            continue
        files += 1
        if files > limit_files:
            break
        total += max(st.st_size if stat.S_ISREG(st.st_mode) else 0, st.st_blocks * 512)
        if stat.S_ISDIR(st.st_mode):
            try:
                todo += [os.path.join(p, n) for n in os.listdir(p)]
            except OSError:
                pass
    return total, files


def written(scratch: Path | None, uid: int | None) -> tuple[int, int]:
    """``(bytes, files)`` a run has written: its scratch folder, and at the uid-only level what
    its uid owns in the world-writable folders."""
    paths = [str(scratch)] if scratch is not None else []
    if uid is not None:
        paths += [str(p) for p in _uid_tmp_entries(uid)]
    return _bytes_in(paths, MAX_WRITTEN_FILES)


def remove_uid_files(uid: int) -> None:
    """Delete what ``uid`` left in ``/tmp``, ``/var/tmp``, ``/dev/shm`` (after :func:`kill_uid`)."""
    for p in _uid_tmp_entries(uid):
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink()
        except OSError:
            pass


class Protected:
    """Takes the permissions of "other" off folders and files for the duration of a grading
    run at the uid-only level (a kernel's uid is "other" to everything on the host), and puts
    the modes back afterwards. A folder that holds a path the kernel must keep using (Python,
    the ``helpers`` it imports) keeps only "other may traverse" (``o=x``, no listing), and the
    same rule applies inside it, down to the kept paths, which are left as they are."""

    def __init__(self, dirs, files, keep):
        self.dirs = [Path(d) for d in dirs]
        self.files = [Path(f) for f in files]
        self.keep = [Path(k).resolve() for k in keep]
        self.changed: list[tuple[Path, int, int]] = []   # (path, old mode, new mode)

    def _set(self, p: Path, new_other: int) -> None:
        try:
            st = os.lstat(p)
        except OSError:
            return
        if stat.S_ISLNK(st.st_mode):
            return  # a link has no mode of its own; what it points to is protected by name
        old = stat.S_IMODE(st.st_mode)
        new = (old & ~0o007) | new_other
        if new != old:
            os.chmod(p, new)
            self.changed.append((p, old, new))

    def _close(self, d: Path) -> None:
        d = d.resolve() if d.exists() else d
        if any(k == d or _is_within(d, k) for k in self.keep):
            return  # Python or helpers itself: never closed
        inner = [k for k in self.keep if _is_within(k, d) and k != d]
        if not inner:
            self._set(d, 0)
            return
        try:
            closed = not (os.stat(d).st_mode & 0o007)
        except OSError:
            return
        self._set(d, 0o001)  # traverse only, towards the kept paths
        if closed:
            # a folder that was already closed to others (a home folder holding Python, as
            # pyenv installs it) is opened for traversal only; its contents keep their modes
            return
        try:
            children = list(d.iterdir())
        except OSError:
            return
        for c in children:
            if c.is_symlink():
                continue
            self._close(c)

    def __enter__(self):
        try:
            for d in self.dirs:
                if d.exists():
                    self._close(d)
            for f in self.files:
                if f.exists() and not f.is_symlink():
                    if not any(_is_within(f.resolve(), k) for k in self.keep):
                        self._set(f, 0)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for p, old, new in reversed(self.changed):
            try:
                if stat.S_IMODE(os.lstat(p).st_mode) == new:  # nobody changed it since
                    os.chmod(p, old)
            except OSError:
                pass
        self.changed = []
        return False


def _blocking_ways(keep) -> list[Path]:
    """Folders on the way to a kept path that "other" cannot traverse (``/root`` when Python
    lives in it): :class:`Protected` opens them for traversal only."""
    out = set()
    for k in keep:
        for a in reversed(Path(k).parents):
            try:
                if a != Path("/") and not (os.stat(a).st_mode & 0o001):
                    out.add(a)
            except OSError:
                break
    return sorted(out)


def _kernel_paths() -> list[Path]:
    """What a kernel at the uid-only level must reach: Python, its packages and the ``helpers``
    it imports; not the grader's own ``helpers`` when that is another copy (the course source
    on Gradescope: the plugin is loaded from a copy in the run's folder)."""
    import helpers
    own = Path(helpers.__file__).resolve().parent
    kernel = kernel_helpers_dir()
    return [p for p in _needed_paths() if p != own or p == kernel or
            any(p != q and _is_within(p, q) for q in _needed_paths())]


def protect(dirs, files) -> Protected:
    """A :class:`Protected` for the uid-only level, keeping what a kernel needs (Python, its
    packages and the ``helpers`` it imports)."""
    keep = _kernel_paths()
    return Protected(list(dirs) + _blocking_ways(keep), files, keep)


_HANDED_OUT: set = set()


def kill_all_job_uids() -> bool:
    """:func:`kill_uid` for every uid this grading process has handed to a job (the last
    thing before results are written)."""
    ok = True
    for uid in sorted(_HANDED_OUT):
        ok = kill_uid(uid) and ok
    return ok


# --------------------------------------------------------------------------- the seed

MIN_SCRUBBED_SEED = 10**6   # shorter seeds (given by hand with --seed) are not scrubbed


def scrub_seed(text, seed) -> str:
    """``text`` without the case seed (decimal or hex): for every text a learner reads. Seeds
    drawn by the grader are at least 10**8, so the digits cannot be part of a hint by chance."""
    if not isinstance(text, str) or seed is None:
        return text
    seed = int(seed)
    if seed < MIN_SCRUBBED_SEED:
        return text
    for form in sorted({str(seed), f"{seed:x}", f"{seed:X}", f"{seed:#x}"}, key=len, reverse=True):
        text = text.replace(form, "[seed hidden]")
    return text


def scrub_results(results, seed) -> None:
    """Scrub the seed from every text of graded results that reaches a learner (row messages,
    submission and exercise notes); ``Result.seed`` itself stays, for the gradebook."""
    for r in results:
        for row in getattr(r, "rows", []):
            row.message = scrub_seed(row.message, seed)
        if getattr(r, "notes", None):
            r.notes[:] = [scrub_seed(n, seed) for n in r.notes]
        for k, v in list((getattr(r, "exercise_notes", None) or {}).items()):
            r.exercise_notes[k] = [scrub_seed(n, seed) for n in v]


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


def _limits_fn(limits: Limits, with_nproc: bool, no_new_privs: bool = False):
    """The child's resource limits (POSIX; a limit the platform refuses is skipped), and with
    ``no_new_privs`` no privileges from setuid binaries (set after the uid change)."""
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
        if no_new_privs:
            _no_new_privs()
    return set_limits


# The plugin is loaded from its file, not as ``helpers.grading.plugin``: importing anything in
# ``helpers`` runs ``helpers/__init__`` (which imports torch), a second or more of every run.
_LAUNCHER = ("import importlib.util as u, sys; "
             "s = u.spec_from_file_location('course_grade_plugin', sys.argv.pop(1)); "
             "m = u.module_from_spec(s); sys.modules['course_grade_plugin'] = m; "
             "s.loader.exec_module(m); import pytest; sys.exit(pytest.main(sys.argv[1:]))")


def _pytest_args(limits: Limits, plugin: str | None = None) -> list[str]:
    plugin = plugin or str(Path(__file__).resolve().with_name("plugin.py"))
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
        scratch = None          # the scratch folder as the grader sees it (write cap)
        juid = uid if level in UID_LEVELS else None
        if level in (LEVEL_BWRAP, LEVEL_BWRAP_UID):
            scratch = _make_scratch(stage, inp)
            juid = uid if level == LEVEL_BWRAP_UID else None
            if juid is not None:
                _chown_tree(scratch, juid)
                # bwrap enters it before setpriv, as root without capabilities: let it traverse
                os.chmod(scratch, 0o711)
            env = _env(SCRATCH_IN_NS, seed)
            cmd = bwrap_cmd(stage, scratch, juid) + _pytest_args(limits)
            cwd = str(stage)
        elif level == LEVEL_UID:
            if uid is None:
                raise ValueError("the uid-only level needs a uid")
            # the way to the scratch folder: traversable, not listable; the folder: the uid's
            os.chmod(stage.parent, 0o711)
            os.chmod(stage, 0o711)
            scratch = _make_scratch(stage, inp)
            _chown_tree(scratch, uid)
            # the pytest process runs as the uid too: it loads the plugin from a copy it may
            # read (the course source it comes from is closed to the uid)
            pdir = stage / "plugin"
            pdir.mkdir(mode=0o755)
            plugin = pdir / "plugin.py"
            shutil.copy(Path(__file__).resolve().with_name("plugin.py"), plugin)
            os.chmod(plugin, 0o644)
            env = _env(str(scratch), seed)
            cmd = _pytest_args(limits, str(plugin))
            cwd = str(scratch)
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
                     "preexec_fn": _limits_fn(limits, level in UID_LEVELS,
                                              no_new_privs=level == LEVEL_UID)}
            if level == LEVEL_UID:  # done by subprocess in the child, before preexec_fn
                extra.update(user=uid, group=uid, extra_groups=[])
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=lfd,
                                stderr=subprocess.STDOUT, **extra)
        result = RunResult()
        watch_uid = uid if level == LEVEL_UID else None
        try:
            _wait_watching(proc, limits, scratch, watch_uid, result,
                           ns=level not in (LEVEL_UID, LEVEL_PROCESS))
        finally:
            # whatever is left (a kernel the plugin did not stop, a daemon): kill it
            _kill_tree(proc)
            proc.wait()
            if juid is not None:
                kill_uid(juid)
            if watch_uid is not None:
                if not result.write_capped:  # a last measurement (a write just before the end)
                    _check_written(limits, scratch, watch_uid, result)
                remove_uid_files(watch_uid)
        result.returncode = proc.returncode
        result.elapsed = time.monotonic() - t0
    finally:
        os.close(rfd)
        os.close(lfd)
    result.events = read_events(results_path)
    result.log_tail = _tail(log_path)
    return result


def _chown_tree(folder: Path, uid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(folder):
        os.chown(dirpath, uid, uid)
        for f in filenames:
            os.chown(os.path.join(dirpath, f), uid, uid)


def _ns_tmp_bytes(proc) -> int:
    """Bytes used in the fresh ``/tmp``, ``/var/tmp``, ``/dev/shm`` of a run in its own mount
    namespace (bubblewrap, namespaces levels), seen through ``/proc/PID/root`` of a process
    inside it: 0 when none is found."""
    if proc is None or not sys.platform.startswith("linux"):
        return 0
    for pid in _descendants(proc.pid)[:4]:
        total, seen = 0, set()
        try:
            if os.stat(f"/proc/{pid}/ns/mnt").st_ino == os.stat("/proc/self/ns/mnt").st_ino:
                continue  # not in a mount namespace of its own (yet)
            for d in ("tmp", "var/tmp", "dev/shm"):
                try:
                    st = os.statvfs(f"/proc/{pid}/root/{d}")
                    key = (st.f_blocks, st.f_fsid) if hasattr(st, "f_fsid") else d
                except OSError:
                    continue
                if key in seen or st.f_blocks * st.f_frsize > 2**30:
                    continue  # counted already, or not one of the run's small file systems
                seen.add(key)
                total += (st.f_blocks - st.f_bfree) * st.f_frsize
        except OSError:
            continue
        return total
    return 0


def _check_written(limits: Limits, scratch, uid, result: RunResult, proc=None) -> bool:
    """True (and ``result.write_capped`` set) when the run wrote more than the cap allows."""
    if scratch is None and uid is None and proc is None:
        return False
    nbytes, nfiles = written(scratch, uid) if (scratch is not None or uid is not None) else (0, 0)
    nbytes += _ns_tmp_bytes(proc)
    if nbytes > limits.write_bytes or nfiles > MAX_WRITTEN_FILES:
        where = "its scratch folder and /tmp" if uid is not None else "its scratch folder"
        result.write_capped = (f"the submission wrote more than {limits.write_bytes / 2**20:g} MiB "
                               f"or {MAX_WRITTEN_FILES} files ({where}), the grader's write cap, "
                               "and was stopped")
        return True
    return False


def _wait_watching(proc, limits: Limits, scratch, uid, result: RunResult, ns: bool = False) -> None:
    """Wait for ``proc`` within the run's time limit, measuring what it writes every
    :data:`WATCH_PERIOD` seconds (``ns``: it runs in a mount namespace of its own, whose
    ``/tmp`` file systems count too); past the write cap the run is killed at once."""
    end = time.monotonic() + limits.run_timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            result.timed_out = True
            return
        try:
            proc.wait(timeout=min(WATCH_PERIOD, left))
            return
        except subprocess.TimeoutExpired:
            pass
        if _check_written(limits, scratch, uid, result, proc if ns else None):
            _kill_tree(proc)
            if uid is not None:
                kill_uid(uid)
            return


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
        _HANDED_OUT.update(self._free)

    def take(self) -> int:
        with self._lock:
            return self._free.pop(0)

    def give(self, uid: int) -> None:
        with self._lock:
            self._free.append(uid)
