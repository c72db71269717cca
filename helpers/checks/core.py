"""The check framework: every exercise has a *probe* and a *judge*.

- The **probe** runs in the learner's kernel. It calls the learner's function or class on
  fixed inputs and returns only raw data: what came back (see :func:`capture`). It never
  decides anything.
- The **judge** turns that data into a :class:`Verdict` (passed/failed/error and a hint
  that teaches) by comparing with NumPy/torch references that it computes itself, from
  inputs it rebuilds itself. It never calls learner code.

A check cell calls :func:`check` (``check("ex1.1", polynomial_features)``): the probe runs,
the judge runs, the verdict is shown, and the probe's data is emitted with it as a
machine-readable *record* (in the output's metadata, under ``RECORD_KEY``). The grader
re-runs the judge on that record in its own process, where learner code cannot reach,
and because the judge rebuilds the inputs, a forged record has to contain correct answers.
"""

from __future__ import annotations

import base64
import math
import traceback
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

RECORD_KEY = "course-check"
MAX_RECORD_BYTES = 8_000_000


@dataclass
class Verdict:
    """The outcome of one check. ``status`` is ``passed``, ``failed`` or ``error``."""

    exercise: str
    status: str
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def text(self) -> str:
        """The one-paragraph text a check cell prints (and nbval compares)."""
        if self.passed:
            return f"{self.exercise} passed"
        return f"{self.exercise} {self.status}: {self.message}"


class Fail(Exception):
    """Raised inside a judge to end it with ``failed`` and a hint."""


@dataclass
class Exercise:
    """One exercise: its id, the name its answer defines, and its probe and judge."""

    id: str
    name: str
    probe: Callable[[Any], dict]
    judge: Callable[[dict], str | None]
    points: int = 1
    kind: str = "function"  # function | class | value

    def run_judge(self, record: Any) -> Verdict:
        """Judge a record. Any failure of the judge on odd data is a ``failed`` verdict."""
        if not isinstance(record, dict):
            return Verdict(self.id, "error", "no usable check record")
        if "raised" in record:
            return Verdict(self.id, "error", f"your code raised {record['raised']}"
                           + _raised_hint(record["raised"]))
        try:
            data = decode(record.get("data"))
            note = self.judge(data)
        except Fail as e:
            return Verdict(self.id, "failed", str(e))
        except Raised as e:
            return Verdict(self.id, "error", f"your code raised {e}" + _raised_hint(str(e)))
        except Exception as e:  # a malformed record, or an answer of a shape nothing expects
            return Verdict(self.id, "failed",
                           f"the answer could not be checked ({type(e).__name__}: {e}); "
                           "check the types and shapes your code returns")
        return Verdict(self.id, "passed", note or "")


def _raised_hint(msg: str) -> str:
    if msg.startswith("NotImplementedError"):
        return " (the answer is still the stub: replace the `raise NotImplementedError` line)"
    return ""


REGISTRY: dict[str, Exercise] = {}


def exercise(id: str, name: str, probe: Callable, judge: Callable, points: int = 1,
             kind: str = "function") -> Exercise:
    """Register an exercise (lesson modules call this at import)."""
    ex = Exercise(id, name, probe, judge, points, kind)
    REGISTRY[id] = ex
    return ex


# ---------------------------------------------------------------- capture and encoding

class Raised(Exception):
    """A judge touched a captured value that was an exception in the learner's code."""


def capture(fn: Callable, *args, **kwargs) -> Any:
    """Call learner code and return its result as plain data, or ``{"raised": "Type: msg"}``.

    Tensors and arrays become ``{"__array__": ...}`` entries (see :func:`encode`), so the
    record holds exactly what came back, dtype and shape included.
    """
    try:
        out = fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - any learner error becomes data
        return {"__raised__": f"{type(e).__name__}: {e}"[:500],
                "__where__": _learner_frame(e)}
    return encode(out)


_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)


def _learner_frame(e: BaseException) -> str:
    """Where in the learner's code an exception happened (the innermost frame outside helpers/)."""
    for fr in reversed(traceback.extract_tb(e.__traceback__)):
        if not str(Path(fr.filename).resolve()).startswith(_PACKAGE_DIR):
            return f"line {fr.lineno}: {fr.line}"[:200] if fr.line else f"line {fr.lineno}"
    return ""


def encode(obj: Any, depth: int = 0) -> Any:
    """Plain JSON data for tensors, arrays, numbers, strings, lists, tuples and dicts."""
    if depth > 8:
        return {"__repr__": "nested too deep"}
    try:
        import torch
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu()
            return _enc_array(t.numpy() if t.dtype != torch.bfloat16 else t.float().numpy(),
                              "torch", str(t.dtype).removeprefix("torch."),
                              requires_grad=bool(obj.requires_grad))
    except Exception:  # noqa: BLE001
        pass
    if isinstance(obj, np.ndarray):
        return _enc_array(obj, "numpy", str(obj.dtype))
    if isinstance(obj, np.generic):
        return {"__scalar__": obj.item() if np.isfinite(obj) else str(obj.item()),
                "dtype": str(obj.dtype)}
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__float__": str(obj)}
    if isinstance(obj, (list, tuple)):
        return {"__seq__": type(obj).__name__, "items": [encode(o, depth + 1) for o in obj]}
    if isinstance(obj, dict):
        return {"__dict__": [[str(k), encode(v, depth + 1)] for k, v in obj.items()]}
    return {"__repr__": f"{type(obj).__name__}"}


def _enc_array(a: np.ndarray, kind: str, dtype: str, requires_grad: bool = False) -> dict:
    if a.dtype == object or a.dtype.kind in "USV":
        return {"__repr__": f"array of {a.dtype}"}
    a = np.array(a, order="C", copy=True)      # keeps 0-d arrays 0-d
    store = a.astype(np.float64) if a.dtype.kind in "fc" and a.dtype != np.float64 else a
    if store.dtype.kind == "c":
        return {"__repr__": "complex array"}
    if store.dtype.kind in "iub":
        store = store.astype(np.int64)
    return {"__array__": base64.b64encode(store.tobytes()).decode("ascii"),
            "dtype": dtype, "kind": kind, "shape": list(a.shape),
            "stored": str(store.dtype), "grad": requires_grad}


class Value:
    """A decoded answer: ``value`` (NumPy array, number, ...) plus where it came from.

    ``kind`` is ``torch``, ``numpy``, ``python`` or ``other``; ``dtype`` the original dtype
    name. Judges usually call :func:`as_array` or :func:`as_float` on it.
    """

    __slots__ = ("value", "kind", "dtype", "grad")

    def __init__(self, value, kind, dtype=None, grad=False):
        self.value, self.kind, self.dtype, self.grad = value, kind, dtype, grad

    def __repr__(self):
        return f"Value({self.kind}, {self.dtype}, {np.shape(self.value)})"


def decode(data: Any, depth: int = 0) -> Any:
    """Inverse of :func:`encode`, run by the judge: arrays and scalars become :class:`Value`.

    A ``{"__raised__": ...}`` entry decodes to a :class:`Raised` instance that raises when a
    judge uses it with :func:`as_array`/:func:`as_float`/:func:`unwrap`.
    """
    if depth > 12:
        raise ValueError("record nested too deep")
    if isinstance(data, dict):
        if "__raised__" in data:
            return Raised(str(data["__raised__"]) + (f" ({data.get('__where__')})" if data.get("__where__") else ""))
        if "__array__" in data:
            raw = base64.b64decode(data["__array__"], validate=True)
            shape = tuple(int(s) for s in data["shape"])
            stored = np.dtype(data.get("stored", "float64"))
            if stored.kind not in "fiub" or int(np.prod(shape, dtype=np.int64)) * stored.itemsize != len(raw):
                raise ValueError("malformed array in record")
            arr = np.frombuffer(raw, dtype=stored).reshape(shape).copy()
            return Value(arr, str(data.get("kind")), str(data.get("dtype")), bool(data.get("grad")))
        if "__scalar__" in data:
            v = data["__scalar__"]
            return Value(float(v) if isinstance(v, str) else v, "numpy", str(data.get("dtype")))
        if "__float__" in data:
            return Value(float(data["__float__"]), "python", "float")
        if "__seq__" in data:
            items = [decode(o, depth + 1) for o in data["items"]]
            return tuple(items) if data["__seq__"] == "tuple" else items
        if "__dict__" in data:
            return {str(k): decode(v, depth + 1) for k, v in data["__dict__"]}
        if "__repr__" in data:
            return Value(None, "other", str(data["__repr__"]))
        return {str(k): decode(v, depth + 1) for k, v in data.items()}
    if isinstance(data, list):
        return [decode(o, depth + 1) for o in data]
    if isinstance(data, bool):
        return data
    if isinstance(data, (int, float)):
        return Value(data, "python", type(data).__name__)
    return data


def unwrap(v: Any) -> Any:
    """The plain value of a decoded entry (raises :class:`Raised` for a captured exception)."""
    if isinstance(v, Raised):
        raise v
    return v.value if isinstance(v, Value) else v


def as_array(v: Any, what: str = "the result") -> np.ndarray:
    """A decoded entry as a float64 NumPy array; fails with a hint if it is not numeric."""
    if isinstance(v, Raised):
        raise v
    if isinstance(v, Value):
        if v.value is None:
            raise Fail(f"{what} should be an array or tensor, got {v.dtype}")
        return np.asarray(v.value, dtype=np.float64)
    if isinstance(v, (list, tuple)):
        try:
            return np.asarray([unwrap(x) for x in v], dtype=np.float64)
        except (TypeError, ValueError):
            pass
    raise Fail(f"{what} should be an array or tensor, got {type(v).__name__}")


def as_float(v: Any, what: str = "the result") -> float:
    """A decoded entry as a Python float (a 0-d or one-element array is accepted)."""
    if isinstance(v, Raised):
        raise v
    if isinstance(v, Value) and v.value is not None:
        a = np.asarray(v.value, dtype=np.float64)
        if a.size == 1:
            return float(a.reshape(()))
        raise Fail(f"{what} should be a single number, got an array of shape {a.shape}")
    if v is None or (isinstance(v, Value) and v.value is None):
        raise Fail(f"{what} should be a number, got {getattr(v, 'dtype', None) or 'None'}")
    raise Fail(f"{what} should be a number, got {type(v).__name__}")


# ---------------------------------------------------------------- judging helpers

def expect_shape(got: np.ndarray, shape: tuple, what: str = "the result", hint: str = "") -> None:
    """Fail unless ``got`` has ``shape``."""
    if tuple(got.shape) != tuple(shape):
        raise Fail(f"{what} has shape {tuple(got.shape)}, expected {tuple(shape)}. {hint}".strip())


def close(a, b, rtol: float = 1e-6, atol: float = 1e-8) -> bool:
    """True when arrays have the same shape and agree within tolerance (NaNs never agree)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.all(np.isfinite(a) == np.isfinite(b))) and \
        bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=False))


def max_err(a, b) -> float:
    """Largest absolute difference between two arrays of the same shape."""
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)), initial=0.0))


# ---------------------------------------------------------------- the call in a check cell

def run(exercise_id: str, answer: Any) -> tuple[Verdict, dict]:
    """Probe ``answer`` and judge the record; returns ``(verdict, record)``."""
    ex = get(exercise_id)
    try:
        data = ex.probe(answer)
        record = {"exercise": exercise_id, "data": data}
    except Exception as e:  # noqa: BLE001 - the probe failed on learner code outside capture
        record = {"exercise": exercise_id, "raised": f"{type(e).__name__}: {e}"[:500]}
    return ex.run_judge(_json_roundtrip(record)), record


def _json_roundtrip(record: dict) -> Any:
    import json
    return json.loads(json.dumps(record))


def check(exercise_id: str, answer: Any = None) -> Verdict:
    """What a check cell calls: probe, judge, show the verdict and emit the record.

    The verdict and the record are one display output: ``text/plain`` holds the verdict,
    the output's metadata holds ``{"exercise": id, "record": ...}`` for the grader.
    """
    import json

    verdict, record = run(exercise_id, answer)
    payload = json.dumps(record)
    if len(payload) > MAX_RECORD_BYTES:
        record = {"exercise": exercise_id, "raised": "RecordTooLarge: the probe's data is too large"}
    try:
        from IPython import get_ipython
        from IPython.display import display
        in_kernel = get_ipython() is not None
    except ImportError:
        in_kernel = False
    if in_kernel:
        display({"text/plain": verdict.text()}, raw=True,
                metadata={RECORD_KEY: {"exercise": exercise_id, "record": record}})
    else:
        print(verdict.text())
    return None if in_kernel else verdict


def get(exercise_id: str) -> Exercise:
    """The registered exercise ``exercise_id`` (its lesson module is imported on demand)."""
    if exercise_id not in REGISTRY:
        import importlib
        lesson = exercise_id.removeprefix("ex").split(".")[0].zfill(2)
        try:
            importlib.import_module(f"helpers.checks.lesson{lesson}")
        except ModuleNotFoundError:
            pass
    if exercise_id not in REGISTRY:
        raise KeyError(f"unknown exercise {exercise_id!r}")
    return REGISTRY[exercise_id]


def lesson_exercises(lesson: str) -> list[Exercise]:
    """Every registered exercise of a two-digit lesson, in id order."""
    import importlib
    try:
        importlib.import_module(f"helpers.checks.lesson{lesson}")
    except ModuleNotFoundError:
        return []
    prefix = f"ex{int(lesson)}."
    found = [e for k, e in REGISTRY.items() if k.startswith(prefix)]
    return sorted(found, key=lambda e: [int(p) for p in e.id[2:].split(".")])
