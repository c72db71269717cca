"""pytest plugin loaded next to nbval when the grader runs one assembled notebook.

It runs inside the sandbox, in the same pytest process as nbval (loaded from this file
as ``course_grade_plugin``, so that it imports nothing from ``helpers``), and only *reports*: for every nbval cell item it writes one JSON
line to the file descriptor named by ``COURSE_GRADE_RESULTS_FD`` (opened by the grader,
not inherited by the kernel) with the cell number, what happened (``ok``, ``error``,
``timeout``, ``died``, ``dead``, ``mismatch``, ...), a short error text and, for check
cells only, the outputs the kernel produced. The grader decides every verdict itself.

It also makes a dead kernel visible at once: nbval 0.11 waits for a reply until the cell
timeout even when the kernel process is gone, so ``await_reply`` is wrapped to poll the
kernel's liveness every quarter second.
"""

from __future__ import annotations

import json
import os
import time
from queue import Empty

import sys

import pytest

# nbval imports nbformat, which imports jsonschema, which (when installed, as JupyterLab
# brings it) builds a whole RFC 3987 grammar at import only to validate "iri" strings that
# notebooks never use: half a second of every grading run. This plugin is loaded before
# nbval, so it can turn that optional import off in the sandboxed test process.
sys.modules.setdefault("rfc3987_syntax", None)

FD_ENV = "COURSE_GRADE_RESULTS_FD"
FILE_ENV = "COURSE_GRADE_RESULTS_FILE"
MAX_TEXT = 2000            # characters kept of an error text or a stream output
MAX_OUTPUT_BYTES = 12_000_000  # a check output larger than this is replaced by a note
MAX_OUTPUTS = 20           # outputs kept per check cell

_out = None


class KernelDied(RuntimeError):
    """The kernel process exited while a cell was running."""


def _patch_nbval() -> None:
    from nbval import kernel as nbk

    if getattr(nbk.RunningKernel.await_reply, "_course_grade", False):
        return
    original = nbk.RunningKernel.await_reply

    def await_reply(self, msg_id, timeout=None):
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        while True:
            step = 0.25
            if deadline is not None:
                step = min(step, max(0.0, deadline - time.monotonic()))
            try:
                return original(self, msg_id, timeout=step)
            except Empty:
                if not self.is_alive():
                    raise KernelDied("the kernel died") from None
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    await_reply._course_grade = True
    nbk.RunningKernel.await_reply = await_reply


def pytest_configure(config):
    global _out
    fd = os.environ.get(FD_ENV)
    if fd is not None:
        os.set_inheritable(int(fd), False)
        _not_dumpable()
        _out = os.fdopen(int(fd), "a", encoding="utf-8", closefd=False)
    elif os.environ.get(FILE_ENV):  # Windows: no fd passing
        _out = open(os.environ[FILE_ENV], "a", encoding="utf-8")
    else:
        return
    _patch_nbval()
    _write({"event": "start", "pid": os.getpid()})


def _not_dumpable() -> None:
    """Linux: the kernel (same uid) may not ptrace this process or open its /proc files."""
    try:
        import ctypes
        import sys
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except Exception:  # noqa: BLE001
        pass


def _write(obj: dict) -> None:
    if _out is None:
        return
    obj.setdefault("t", round(time.time(), 3))
    try:
        _out.write(json.dumps(obj) + "\n")
        _out.flush()
    except Exception:  # noqa: BLE001 - a full disk or a closed fd must not break the run
        pass


def _short(text: str, limit: int = MAX_TEXT) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 20] + " ... [truncated]"


def _plain(outputs) -> list:
    """The outputs of a check cell as plain JSON, size-capped."""
    kept = []
    for out in list(outputs or [])[:MAX_OUTPUTS]:
        try:
            o = json.loads(json.dumps(out))
        except Exception:  # noqa: BLE001
            continue
        if not isinstance(o, dict):
            continue
        if o.get("output_type") == "stream":
            o["text"] = _short(o.get("text", ""), 20_000)
        elif o.get("output_type") == "error":
            o = {"output_type": "error", "ename": _short(o.get("ename", ""), 200),
                 "evalue": _short(o.get("evalue", ""))}
        elif o.get("output_type") in ("display_data", "execute_result"):
            data = o.get("data") if isinstance(o.get("data"), dict) else {}
            o = {"output_type": o["output_type"],
                 "data": {"text/plain": _short(data.get("text/plain", ""), 20_000)}
                 if isinstance(data.get("text/plain", ""), str) else {},
                 "metadata": o.get("metadata") if isinstance(o.get("metadata"), dict) else {}}
        if len(json.dumps(o)) > MAX_OUTPUT_BYTES:
            o = {"output_type": "oversized"}
        kept.append(o)
    return kept


def _error_output(outputs):
    for o in outputs or []:
        if isinstance(o, dict) and o.get("output_type") == "error":
            return f"{o.get('ename', '')}: {o.get('evalue', '')}".strip(": ")
    return ""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    yield
    if _out is None or not hasattr(item, "cell_num"):
        return
    course = (item.cell.get("metadata", {}) or {}).get("course", {}) or {}
    entry = {"event": "cell", "cell": int(item.cell_num), "when": call.when,
             "role": course.get("role"), "exercise": course.get("exercise"),
             "duration": round(call.duration, 3)}
    exc = call.excinfo.value if call.excinfo is not None else None
    outputs = getattr(item, "test_outputs", None)
    if call.when != "call":
        if exc is None:
            return
        if isinstance(exc, pytest.skip.Exception):
            return
        entry.update(kind="setup-error", text=_short(f"{type(exc).__name__}: {exc}"))
        _write(entry)
        return
    if exc is None:
        kind, text = "ok", ""
    elif isinstance(exc, pytest.skip.Exception):
        kind, text = "skipped", ""
    elif isinstance(exc, KernelDied):
        kind, text = "died", "the kernel died"
    else:
        msg = str(exc)
        if type(exc).__name__ == "NbCellError":
            if "Timeout of" in msg:
                kind = "timeout"
            elif msg.startswith("Cell outputs differ"):
                kind = "mismatch"
            else:
                kind = "error"
            text = _error_output(outputs) or msg
        elif "Kernel dead on test start" in msg:
            kind, text = "dead", msg
        elif "Timed out waiting for idle kernel" in msg:
            kind, text = "timeout", msg
        else:
            kind, text = "internal", f"{type(exc).__name__}: {msg}"
    entry.update(kind=kind, text=_short(text))
    if course.get("role") == "check":
        entry["outputs"] = _plain(outputs)
    _write(entry)


def pytest_collection_finish(session):
    """Once nbval has read the assembled notebook, remove it: the kernel never sees it."""
    if _out is None:
        return
    for item in session.items:
        path = str(getattr(item, "fspath", ""))
        if path.endswith(".ipynb") and os.path.exists(path):
            try:
                os.remove(path)
            except OSError:
                pass
            break
    _write({"event": "collected", "cells": len(session.items)})


def pytest_sessionfinish(session, exitstatus):
    _write({"event": "finish", "exitstatus": int(exitstatus)})
