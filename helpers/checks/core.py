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

import ast
import base64
import contextlib
import importlib
import inspect
import io
import json
import math
import os
import random
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

RECORD_KEY = "course-check"
MAX_RECORD_BYTES = 8_000_000

# ---------------------------------------------------------------- case seeds
#
# Every probe and judge builds its inputs from a *case seed*. A check cell in a notebook uses
# PUBLISHED_SEED, so a learner's self-check is the same every time; the grader draws a fresh
# seed per run, tells the kernel through SEED_ENV, and judges with its own copy of the seed
# (never the one written in the record). An answer that hard-codes the published outputs
# therefore passes the self-check and fails grading.

PUBLISHED_SEED = 0
SEED_ENV = "COURSE_CASE_SEED"


def case_seed() -> int:
    """The case seed a check cell probes with: ``$COURSE_CASE_SEED`` if set, else PUBLISHED_SEED."""
    raw = os.environ.get(SEED_ENV, "").strip()
    try:
        return int(raw) if raw else PUBLISHED_SEED
    except ValueError:
        return PUBLISHED_SEED


def case_rng(seed: int, salt: int) -> np.random.Generator:
    """The NumPy generator one exercise builds its inputs from.

    ``salt`` is a constant per case family (for instance the exercise number ``1201``), so
    two exercises never share a stream and a case family is the same wherever it is rebuilt.
    """
    return np.random.default_rng([int(salt), int(seed) & 0xFFFFFFFF])


def seed_all(seed: int):
    """Seed torch's global generator, NumPy's and Python's, and return a fresh ``torch.Generator``.

    The same as :func:`helpers.device.seed_everything`. Probes of random exercises call this
    before every learner call, so an answer may draw from the generator it is given, from
    torch's global one or from NumPy's. Judges never depend on the values drawn.
    """
    from helpers.device import seed_everything

    return seed_everything(seed)


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


def _takes_seed(fn: Callable) -> bool:
    """True when a probe or judge takes the case seed as its second argument."""
    try:
        return len(inspect.signature(fn).parameters) >= 2
    except (TypeError, ValueError):
        return False


@dataclass
class Exercise:
    """One exercise: its id, the name its answer defines, and its probe and judge.

    ``probe(answer, seed)`` and ``judge(data, seed)`` build their inputs from the case seed
    (a probe or judge of one argument has fixed inputs). ``forbid`` lists the library
    calls the answer is meant to replace, as dotted names (``"torch.nn.functional.dropout"``,
    ``"torch.nn.Dropout.forward"``): the probe records their use while learner code runs,
    :func:`forbidden_in_source` finds them in the answer's text, and either fails the answer
    with ``forbid_hint``. ``watch_if`` holds ``(dotted, condition)`` pairs refused only when
    ``condition(arguments)`` returns a name (``F.cross_entropy`` with ``label_smoothing``):
    watched while the probe runs, not looked for in the source text.
    """

    id: str
    name: str
    probe: Callable[..., dict]
    judge: Callable[..., str | None]
    points: int = 1
    kind: str = "function"  # function | class | value
    forbid: tuple = ()
    forbid_hint: str = ""
    source_words: tuple = field(default_factory=tuple)
    watch_if: tuple = ()

    def run_probe(self, answer: Any, seed: int) -> Any:
        return self.probe(answer, seed) if _takes_seed(self.probe) else self.probe(answer)

    def run_judge(self, record: Any, seed: int = PUBLISHED_SEED) -> Verdict:
        """Judge a record with the inputs of ``seed`` (the judge's own seed, never the record's).

        Any failure of the judge on odd data is a ``failed`` verdict.
        """
        if not isinstance(record, dict):
            return Verdict(self.id, "error", "no usable check record")
        if "raised" in record:
            return Verdict(self.id, "error", f"your code raised {record['raised']}"
                           + _raised_hint(record["raised"]))
        used = record.get("library") or []
        if used and isinstance(used, list):
            return Verdict(self.id, "failed", self.library_message([str(u) for u in used]))
        try:
            data = decode(record.get("data"))
            note = self.judge(data, seed) if _takes_seed(self.judge) else self.judge(data)
        except Fail as e:
            return Verdict(self.id, "failed", str(e))
        except Raised as e:
            return Verdict(self.id, "error", f"your code raised {e}" + _raised_hint(str(e)))
        except Exception as e:  # a malformed record, or an answer of a shape nothing expects
            return Verdict(self.id, "failed",
                           f"the answer could not be checked ({type(e).__name__}: {e}); "
                           "check the types and shapes your code returns")
        return Verdict(self.id, "passed", note or "")

    def library_message(self, used: list[str]) -> str:
        names = ", ".join(sorted(set(used))[:4])
        return (f"your answer uses {names}, the library code this exercise asks you to write "
                f"yourself. Write it from the formula{': ' + self.forbid_hint if self.forbid_hint else '.'}"
                " (Using torch to *test* your answer in another cell is fine.)")

    def forbidden_in_source(self, source: str) -> list[str]:
        """The forbidden names that the answer's source text uses (read by the grader, outside
        the kernel). A name counts when it is read as an attribute (``F.dropout``), imported
        (``from torch.nn.functional import dropout``) or passed as a keyword
        (``label_smoothing=``); defining something of the same name does not count."""
        return forbidden_in_source(source, self.forbid, self.source_words)


def forbidden_in_source(source: str, forbid=(), words=()) -> list[str]:
    """See :meth:`Exercise.forbidden_in_source`. ``words`` adds bare attribute or keyword names."""
    targets = {}
    for dotted in forbid:
        parts = dotted.split(".")
        leaf = parts[-2] if parts[-1] == "forward" and len(parts) > 1 else parts[-1]
        targets.setdefault(leaf, dotted)
    for w in words:
        targets.setdefault(w.rstrip("="), w)
    if not targets:
        return []
    try:
        tree = ast.parse(source)
    except SyntaxError:
        try:
            from IPython.core.inputtransformer2 import TransformerManager
            tree = ast.parse(TransformerManager().transform_cell(source))
        except Exception:  # noqa: BLE001 - unparsable text uses nothing
            return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in targets:
            found.append(targets[node.attr])
        elif isinstance(node, ast.ImportFrom):
            found += [targets[a.name] for a in node.names if a.name in targets]
        elif isinstance(node, ast.keyword) and node.arg in targets:
            found.append(targets[node.arg])
    return sorted(set(found))


def _raised_hint(msg: str) -> str:
    if msg.startswith("NotImplementedError"):
        return " (the answer is still the stub: replace the `raise NotImplementedError` line)"
    return ""


REGISTRY: dict[str, Exercise] = {}


def exercise(id: str, name: str, probe: Callable, judge: Callable, points: int = 1,
             kind: str = "function", forbid=(), forbid_hint: str = "",
             source_words=(), watch_if=()) -> Exercise:
    """Register an exercise (lesson modules call this at import). See :class:`Exercise`."""
    ex = Exercise(id, name, probe, judge, points, kind, tuple(forbid), forbid_hint,
                  tuple(source_words), tuple(watch_if))
    REGISTRY[id] = ex
    return ex


# ---------------------------------------------------------------- capture and encoding

class Raised(Exception):
    """A judge touched a captured value that was an exception in the learner's code."""


class _Printed(io.TextIOBase):
    """A bounded sink for what learner code prints while it is probed: the first lines kept,
    the rest only counted (one debug print in a loop must not flood the check's output)."""

    KEEP_CHARS = 1200

    def __init__(self):
        self.head, self.chars, self.lines = "", 0, 0

    def writable(self):
        return True

    def write(self, text):
        text = str(text)
        self.chars += len(text)
        self.lines += text.count("\n")
        if len(self.head) < self.KEEP_CHARS:
            self.head += text[: self.KEEP_CHARS - len(self.head)]
        return len(text)

    def summary(self) -> dict | None:
        if not self.chars:
            return None
        return {"lines": max(self.lines, 1), "chars": self.chars, "head": self.head}


class _Probing:
    """State of one probe run: the refused calls to watch for (see :func:`_watch_table`), the
    ones that were made, and what the learner's code printed."""

    def __init__(self, forbid=(), watch_if=()):
        self.codes, self.builtins = _watch_table(forbid, watch_if)
        self.used: list[str] = []
        self.printed = _Printed()
        self.depth = 0


_ACTIVE: list[_Probing] = []


def _resolve(dotted: str):
    """``(owner, attribute)`` for a dotted name such as ``torch.nn.functional.dropout``."""
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:-1]:
            obj = getattr(obj, name)
        return obj, parts[-1]
    raise ImportError(dotted)


def forbidden_classes(forbid) -> list[type]:
    """The classes named in ``forbid`` (``torch.nn.Dropout.forward`` names ``torch.nn.Dropout``)."""
    out = []
    for dotted in forbid:
        try:
            owner, attr = _resolve(dotted)
        except (ImportError, AttributeError):
            continue
        target = getattr(owner, attr, None)
        if isinstance(owner, type) and attr == "forward":
            out.append(owner)
        elif isinstance(target, type):
            out.append(target)
    return out


def _watch_table(forbid, watch_if=()) -> tuple[dict, dict]:
    """What a probe watches for: ``(codes, builtins)``, mapping the code object of each
    forbidden Python function, and the ``id`` of each forbidden built-in (``torch.dropout``),
    to ``(name, condition)``. ``condition`` is None (any call counts) or a function of the
    call's arguments (``frame.f_locals``) that returns the name to record, or None."""
    codes, builtins = {}, {}
    entries = [(d, None) for d in forbid] + list(watch_if)
    for dotted, condition in entries:
        try:
            owner, attr = _resolve(dotted)
            target = getattr(owner, attr)
        except (ImportError, AttributeError):
            continue
        if isinstance(target, type):
            continue  # classes are found by the subclass test and their forward
        fn = getattr(target, "__func__", target)
        code = getattr(fn, "__code__", None)
        if code is not None:
            codes[code] = (dotted, condition)
        elif callable(target):
            builtins[id(target)] = (dotted, condition, target)
    return codes, builtins


def _public_name(dotted: str) -> str:
    """The name a learner knows: ``torch.nn.modules.dropout.Dropout.forward`` -> ``torch.nn.Dropout``."""
    name = dotted.removesuffix(".forward").removesuffix(".__init__")
    name = re.sub(r"^torch\.nn\.modules\.\w+\.", "torch.nn.", name)
    return name.replace("torch.nn._BatchNorm", "torch.nn.BatchNorm1d/2d")


@contextlib.contextmanager
def learner_code():
    """Run learner code: what it prints is captured (bounded), and every call of a library
    function that the exercise being probed forbids is recorded.

    Calls are recognised by *what* is called (a Python function's code object, a built-in's
    identity), through a profile hook, so ``F.dropout``, ``from torch.nn.functional import
    dropout as d``, ``f = torch.dropout`` and an ``nn.Dropout`` kept inside the answer are all
    seen. :func:`capture` uses it; a probe that calls learner objects some other way wraps the
    call in ``with learner_code():``.
    """
    state = _ACTIVE[-1] if _ACTIVE else None
    if state is None or state.depth:
        yield
        return
    codes, builtins = state.codes, state.builtins

    def record(entry, args):
        name, condition = entry[0], entry[1]
        if condition is not None:
            try:
                name = condition(args)
            except Exception:  # noqa: BLE001 - odd arguments: the call itself will say so
                name = None
        if name:
            state.used.append(_public_name(name))

    def hook(frame, event, arg):
        if event == "call":
            entry = codes.get(frame.f_code)
            if entry is not None:
                record(entry, frame.f_locals)
        elif event == "c_call":
            entry = builtins.get(id(arg))
            if entry is not None and entry[2] is arg:
                record(entry, {})

    watching = bool(codes or builtins)
    previous = sys.getprofile()
    state.depth += 1
    try:
        with contextlib.redirect_stdout(state.printed), contextlib.redirect_stderr(state.printed):
            if watching:
                sys.setprofile(hook)
            try:
                yield
            finally:
                if watching:
                    sys.setprofile(previous)
    finally:
        state.depth -= 1


def capture(fn: Callable, *args, **kwargs) -> Any:
    """Call learner code and return its result as plain data, or ``{"raised": "Type: msg"}``.

    Tensors and arrays become ``{"__array__": ...}`` entries (see :func:`encode`), so the
    record holds exactly what came back, dtype and shape included. The call runs under
    :func:`learner_code`.
    """
    try:
        with learner_code():
            out = fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - any learner error becomes data
        return {"__raised__": f"{type(e).__name__}: {e}"[:500],
                "__where__": learner_frame(e)}
    return encode(out)


_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)


def learner_frame(e: BaseException) -> str:
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


def expect_array(v: Any, what: str, shape=None, dtype: str | None = None,
                 kind: str | None = None, hint: str = "") -> np.ndarray:
    """Check the type first, then return ``v`` as a float64 array.

    ``kind`` is ``"torch"`` or ``"numpy"`` (what the answer must return), ``dtype`` the dtype
    name it must have (``"float64"``): a wrong dtype is named as such ("your result is float32,
    the input float64") instead of showing up as a small numerical error later.
    """
    a = as_array(v, what)
    got_kind = v.kind if isinstance(v, Value) else "python"
    if kind is not None and got_kind != kind:
        want = "a torch tensor" if kind == "torch" else "a NumPy array"
        have = {"torch": "a torch tensor", "numpy": "a NumPy array"}.get(got_kind, "a Python value")
        raise Fail(f"{what} is {have}; return {want}, like the input. {hint}".strip())
    if dtype is not None and isinstance(v, Value) and v.dtype and v.dtype != dtype:
        raise Fail(f"{what} is {v.dtype}, the input {dtype}: keep the input's dtype (a cast such "
                   f"as .float() or a new tensor without dtype= changes it). {hint}".strip())
    if shape is not None:
        expect_shape(a, shape, what, hint)
    return a


def inputs_after(*values) -> list:
    """What the probe records about its inputs *after* the learner's call: the raw values
    (encoded as any answer is), never a yes/no. The judge rebuilds the inputs from the seed and
    decides with :func:`input_changed`, in its own process, so a learner who patches
    ``torch.equal`` or ``np.array_equal`` in the kernel cannot change the fact."""
    return [encode(v) for v in values]


def input_changed(after, *originals) -> bool:
    """Judge side of :func:`inputs_after`: True when any recorded input differs, bit for bit
    (NaN equal to NaN, shape and dtype kind included), from the ``originals`` the judge rebuilt.
    A missing or malformed entry counts as changed."""
    if isinstance(after, dict) or not isinstance(after, (list, tuple)) or len(after) != len(originals):
        return True
    for got, want in zip(after, originals):
        if hasattr(want, "detach"):
            want = want.detach().cpu().numpy()
        if not isinstance(want, np.ndarray):
            continue
        if not isinstance(got, Value) or got.value is None:
            return True
        g = np.asarray(got.value)
        w = np.asarray(want)
        if g.shape != w.shape:
            return True
        if not np.array_equal(g.astype(np.float64), w.astype(np.float64), equal_nan=True):
            return True
    return False


def snapshot(*values) -> list:
    """Copies of tensors and arrays (for :func:`changed`); other values are kept as they are."""
    out = []
    for v in values:
        if hasattr(v, "detach") and hasattr(v, "clone"):
            out.append(v.detach().clone())
        elif isinstance(v, np.ndarray):
            out.append(v.copy())
        else:
            out.append(v)
    return out


def changed(before: list, *after) -> bool:
    """True when any input differs from its :func:`snapshot` (the learner changed its input)."""
    for b, a in zip(before, after):
        if hasattr(b, "detach") and hasattr(a, "detach"):
            import torch
            if b.shape != a.shape or not torch.equal(b, a.detach()):
                return True
        elif isinstance(b, np.ndarray):
            if not np.array_equal(b, a, equal_nan=True):
                return True
    return False


def match_mistake(label: str, got, mistakes, rtol: float = 1e-6, atol: float = 1e-8) -> None:
    """Fail with the hint of the first known mistake whose value ``got`` equals.

    ``mistakes`` is a list of ``(value, hint)`` pairs: what a common mistake returns on this
    case and a hint that names the mistake and points at the idea, never the answer. Call it
    after the answer was found wrong; nothing happens when no mistake matches.
    """
    for value, hint in mistakes:
        try:
            if value is not None and close(got, value, rtol=rtol, atol=atol):
                raise Fail(f"{label}: {hint}")
        except (ValueError, TypeError):
            continue


def expect_close(label: str, got, ref, mistakes=(), expected: str = "", what: str = "values",
                 rtol: float = 1e-6, atol: float = 1e-8) -> None:
    """Compare an array answer with its reference; when it is wrong, fail with a hint.

    ``got`` and ``ref`` are float64 arrays of the same shape (check the shape first) or
    numbers. Nothing happens when they agree within ``rtol``/``atol`` (:func:`close`).
    Otherwise it fails with the hint of the first of ``mistakes`` (``(value, hint)`` pairs, as
    for :func:`match_mistake`, labelled ``label``) that ``got`` equals, else with
    ``"{label}: wrong {what} (largest difference D). {expected}"``, where ``expected`` says
    what the right answer is made of.
    """
    if close(got, ref, rtol=rtol, atol=atol):
        return
    match_mistake(label, got, mistakes, rtol=rtol, atol=atol)
    raise Fail(f"{label}: wrong {what} (largest difference {max_err(got, ref):.3g}). "
               f"{expected}".strip())


# ---------------------------------------------------------------- the call in a check cell

@contextlib.contextmanager
def _generators_kept():
    """Probes seed the global generators (see :func:`seed_all`); put the learner's back after,
    so a check cell leaves the random state of the notebook as it found it (CPU generators:
    torch's, NumPy's, Python's)."""
    import torch  # a local import, as in encode(): core itself imports no torch at the top

    states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


def run(exercise_id: str, answer: Any, seed: int | None = None) -> tuple[Verdict, dict]:
    """Probe ``answer`` with the inputs of ``seed`` and judge the record; ``(verdict, record)``.

    ``seed`` defaults to :func:`case_seed`. The record holds the seed for information only:
    the grader judges with its own.
    """
    ex = get(exercise_id)
    seed = case_seed() if seed is None else int(seed)
    state = _Probing(ex.forbid, ex.watch_if)
    _ACTIVE.append(state)
    try:
        with _generators_kept():
            data = ex.run_probe(answer, seed)
        record = {"exercise": exercise_id, "seed": seed, "data": data}
    except Exception as e:  # noqa: BLE001 - the probe failed on learner code outside capture
        record = {"exercise": exercise_id, "seed": seed, "raised": f"{type(e).__name__}: {e}"[:500]}
    finally:
        _ACTIVE.remove(state)
    used = list(state.used)
    if isinstance(answer, type):
        used += [_public_name(f"{c.__module__}.{c.__qualname__}")
                 for c in forbidden_classes(ex.forbid) if issubclass(answer, c)]
    if used:
        record["library"] = sorted(set(used))
    printed = state.printed.summary()
    if printed:
        record["printed"] = printed
    return ex.run_judge(_json_roundtrip(record), seed), record


def _json_roundtrip(record: dict) -> Any:
    return json.loads(json.dumps(record))


def printed_note(record: dict, lines: int = 8) -> str:
    """What the learner's code printed while it was checked: its first lines and how many more."""
    p = record.get("printed") if isinstance(record, dict) else None
    if not isinstance(p, dict):
        return ""
    head = str(p.get("head", "")).splitlines()[:lines]
    total = int(p.get("lines", len(head)) or 0)
    more = max(0, total - len(head))
    text = "\n".join("    " + h[:200] for h in head)
    tail = f"\n    ... and {more:,} more lines" if more else ""
    return (f"(your code printed {total:,} line{'s' if total != 1 else ''} while it was checked; "
            f"the first {len(head)}:)\n{text}{tail}")


def _user_namespace() -> dict | None:
    try:
        from IPython import get_ipython
        ip = get_ipython()
    except ImportError:
        return None
    return None if ip is None else ip.user_ns


def _defines(tree: ast.AST, name: str) -> bool:
    for node in getattr(tree, "body", []):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
    return False


_DEF_RE = r"^(?:(?:async\s+)?def|class)\s+{0}\b|^{0}\s*(?::[^=]*)?=[^=]"


def stale_answer_note(name: str, answer: Any) -> str:
    """When the latest cell that defines ``name`` did not run to its end, say so.

    IPython's input history (``In``) holds every cell run. The latest one whose text defines
    ``name`` is the learner's latest answer: when it does not parse, or its definition differs
    from the object now bound to ``name``, the check is about an older version.
    """
    ns = _user_namespace()
    if ns is None:
        return ""
    history = ns.get("In") or ns.get("_ih") or []
    pattern = re.compile(_DEF_RE.format(re.escape(name)), re.M)
    latest = next((src for src in reversed(list(history)[:-1])
                   if isinstance(src, str) and pattern.search(src)), None)
    if latest is None:
        return ""
    try:
        from IPython import get_ipython
        code = get_ipython().transform_cell(latest)
    except Exception:  # noqa: BLE001
        code = latest
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        return (f"your latest answer cell did not run: SyntaxError on line {e.lineno} "
                f"({(e.msg or '').strip()}); this verdict is about the version of `{name}` "
                "defined before it. Fix the error and run the answer cell again.")
    if not _defines(tree, name) or not callable(answer):
        return ""
    try:
        current = inspect.getsource(answer)
    except (OSError, TypeError):
        return ""
    segments = [ast.get_source_segment(code, node) or "" for node in tree.body
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                and node.name == name]
    def same(a: str, b: str) -> bool:  # comments and layout do not count
        try:
            return ast.dump(ast.parse(inspect.cleandoc("\n" + a) if a[:1].isspace() else a)) == \
                ast.dump(ast.parse(b))
        except SyntaxError:
            return a.strip() == b.strip()

    if segments and not any(same(current, seg) for seg in segments):
        return (f"your latest answer cell stopped with an error before it defined `{name}`; "
                f"this verdict is about the version defined before it. Fix the error and run "
                "the answer cell again.")
    return ""


_MISSING = object()


def check(exercise_id: str, answer: Any = _MISSING) -> Verdict | None:
    """What a check cell calls: probe, judge, show the verdict and emit the record.

    ``check("ex3.1")`` looks the exercise's name (``dropout_forward``) up in the notebook
    itself, so a check run before its answer cell says so instead of raising ``NameError``.
    The verdict and the record are one display output: ``text/plain`` holds the verdict,
    the output's metadata holds ``{"exercise": id, "record": ...}`` for the grader. What the
    learner's code printed while it was checked is shown after it, shortened.
    """
    ex = get(exercise_id)
    ns = _user_namespace()
    notes = []
    if answer is _MISSING:
        answer = (ns or {}).get(ex.name, _MISSING)
    if answer is _MISSING:
        what = "defines" if ex.kind != "value" else "sets"
        verdict = Verdict(exercise_id, "error",
                          f"`{ex.name}` is not defined yet: run the answer cell above first "
                          f"({exercise_id} {what} `{ex.name}`), then this check.")
        record = {"exercise": exercise_id, "seed": case_seed(),
                  "raised": f"NameError: `{ex.name}` is not defined (the answer cell was not run)"}
    else:
        note = stale_answer_note(ex.name, answer)
        if note:
            notes.append(note)
        verdict, record = run(exercise_id, answer)
    payload = json.dumps(record)
    if len(payload) > MAX_RECORD_BYTES:
        record = {"exercise": exercise_id, "raised": "RecordTooLarge: the probe's data is too large"}
    text = verdict.text()
    printed = "\n".join(notes + ([printed_note(record)] if printed_note(record) else []))
    if ns is not None:
        from IPython.display import display
        display({"text/plain": text}, raw=True,
                metadata={RECORD_KEY: {"exercise": exercise_id, "record": record}})
        if printed:
            print(printed)
        return None
    print(text)
    if printed:
        print(printed)
    return verdict


def load_lesson(lesson: str):
    """Import the checks module of a two-digit lesson of ``course.LESSONS`` (it registers its
    exercises). An unknown lesson is a KeyError; a missing or broken module raises as it is."""
    from helpers import course

    if lesson not in course.LESSONS:
        raise KeyError(f"unknown lesson {lesson!r} (the course has {', '.join(course.LESSONS)})")
    return importlib.import_module(f"helpers.checks.lesson{lesson}")


def get(exercise_id: str) -> Exercise:
    """The registered exercise ``exercise_id`` (its lesson's module is imported on demand)."""
    if exercise_id not in REGISTRY:
        m = re.fullmatch(r"ex(\d+)\.\d+", exercise_id)
        if m is None:
            raise KeyError(f"unknown exercise {exercise_id!r}")
        load_lesson(m.group(1).zfill(2))
    if exercise_id not in REGISTRY:
        raise KeyError(f"unknown exercise {exercise_id!r}")
    return REGISTRY[exercise_id]


def lesson_exercises(lesson: str) -> list[Exercise]:
    """Every registered exercise of a two-digit lesson, in id order."""
    load_lesson(lesson)
    prefix = f"ex{int(lesson)}."
    found = [e for k, e in REGISTRY.items() if k.startswith(prefix)]
    if not found:
        raise RuntimeError(f"helpers.checks.lesson{lesson} registers no exercise")
    return sorted(found, key=lambda e: [int(p) for p in e.id[2:].split(".")])
