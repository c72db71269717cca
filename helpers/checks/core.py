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
        if self.status == "missing":
            return f"{self.exercise}: {self.message}"
        return f"{self.exercise} {self.status}: {self.message}"


def mistake_id(status: str, message: str) -> str:
    """A stable name for the mistake a verdict reports, for counting across a class: the same
    hint gives the same id at every case seed and for every learner. ``""`` for a pass;
    ``missing``; ``shortcut:library``, ``shortcut:helpers``, ``shortcut:watch``;
    ``error:<ExceptionType>`` for an exception; else ``hint:<the hint's first words>`` with the
    case label before the first ``": "``, numbers and quoted values taken out."""
    msg = str(message or "")
    if status == "passed":
        return ""
    if status == "missing" or msg.startswith("not answered yet"):
        return "missing"
    if status == "timeout":
        return "timeout"
    if msg.startswith("your answer uses") and "cannot follow" in msg:
        return "shortcut:watch"
    if msg.startswith("your answer uses"):
        return "shortcut:library"
    if msg.startswith("your answer calls") and "helpers" in msg:
        return "shortcut:helpers"
    m = re.search(r"(?:raised|raised an?) ([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit))\b", msg)
    if status == "error" or m:
        return f"error:{m.group(1).split('.')[-1]}" if m else "error:other"
    body = msg
    head, sep, tail = msg.partition(": ")
    if sep and len(head) < 160 and tail:
        body = tail
    body = re.sub(r"`[^`]*`|'[^']*'|\"[^\"]*\"", " ", body)
    body = re.sub(r"[-+]?\d[\d.,eE+-]*", " ", body)
    words = re.findall(r"[a-z]+", body.lower())[:7]
    return "hint:" + "-".join(words) if words else "hint:other"


STUB_LINE = ("not answered yet. Write your answer in the answer cell above, in place of its "
             "`raise NotImplementedError` line, run that cell, then this one.")


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
        tamper = record.get("tamper") or []
        if tamper and isinstance(tamper, list):
            return Verdict(self.id, "failed", tamper_message([str(u) for u in tamper]))
        used = record.get("library") or []
        if used and isinstance(used, list):
            return Verdict(self.id, "failed", self.library_message([str(u) for u in used]))
        helpers_used = record.get("helpers") or []
        if helpers_used and isinstance(helpers_used, list):
            return Verdict(self.id, "failed", helpers_message([str(u) for u in helpers_used]))
        if "raised" in record:
            return self._raised_verdict(str(record["raised"]))
        try:
            data = decode(record.get("data"))
            note = self.judge(data, seed) if _takes_seed(self.judge) else self.judge(data)
        except Fail as e:
            return Verdict(self.id, "failed", str(e))
        except Raised as e:
            return self._raised_verdict(str(e))
        except Exception as e:  # a malformed record, or an answer of a shape nothing expects
            return Verdict(self.id, "failed",
                           f"the answer could not be checked ({type(e).__name__}: {e}); "
                           "check the types and shapes your code returns")
        return Verdict(self.id, "passed", note or "")

    def _raised_verdict(self, text: str) -> Verdict:
        m = re.match(r"NotImplementedError: (ex\d+\.\d+): write your answer here", text)
        if m and m.group(1) == self.id:
            return Verdict(self.id, "missing", STUB_LINE)
        if m:
            return Verdict(self.id, "error", f"your code calls your answer to {m.group(1)}, "
                           f"which is still the stub: answer {m.group(1)} first, run its cell, "
                           "then this check.")
        hint = "" if "Likely cause:" in text else _raised_hint(text)
        return Verdict(self.id, "error", f"your code raised {text}" + hint)

    def library_message(self, used: list[str]) -> str:
        names = ", ".join(sorted(set(used))[:4])
        return (f"your answer uses {names}, the library code this exercise asks you to write "
                f"yourself. Write it from the formula{': ' + self.forbid_hint if self.forbid_hint else '.'}"
                " (Using torch to *test* your answer in another cell is fine.)")

    def shortcut_in_sources(self, source: str, others: dict | None = None) -> str:
        """The grader's reading of an answer (outside the kernel, so nothing the learner runs
        can switch it off): the answer and every answer cell it draws on (``others``: exercise
        id -> source). Returns the failure message of the shortcut rule, or ""."""
        sources = answer_closure(source, others or {})
        opaque = sorted({n for src in sources for n in opaque_routes(src)})
        if opaque:
            return tamper_message(opaque, static=True)
        # a name an answer cell defines is the learner's own (ex4.2 may call its ex4.1 batch_norm)
        own = set()
        for src in [source, *(others or {}).values()]:
            tree = _parse(src) if src else None
            if tree is not None:
                own |= _top_names(tree)[0]
        used = sorted({n for src in sources
                       for n in forbidden_in_source(src, self.forbid, self.source_words, own)})
        if used:
            return self.library_message(used)
        helpers_used = sorted({n for src in sources for n in helpers_in_source(src)})
        if helpers_used:
            return helpers_message(helpers_used)
        return ""

    def forbidden_in_source(self, source: str) -> list[str]:
        """The forbidden names that the answer's source text uses (read by the grader, outside
        the kernel). A name counts when it is read as an attribute (``F.dropout``), imported
        (``from torch.nn.functional import dropout``) or passed as a keyword
        (``label_smoothing=``); defining something of the same name does not count."""
        return forbidden_in_source(source, self.forbid, self.source_words)


def helpers_message(used: list[str]) -> str:
    names = ", ".join(sorted(set(used))[:3])
    return (f"your answer calls {names}, part of the course's own `helpers` package. The "
            "exercise is to write this idea yourself: helpers are the lessons' plumbing, and "
            f"only {' and '.join(HELPERS_ALLOWED)} may be called from an answer. (Objects the "
            "check passes in, such as a model, are yours to use.)")


def tamper_message(used: list[str], static: bool = False) -> str:
    names = ", ".join(sorted(set(used))[:3])
    who = "the grader, reading your answer," if static else "the check"
    return (f"your answer uses {names}: {who} cannot follow what code reached that way calls, "
            "so it cannot tell whether the answer is your own. Call functions by their names, "
            "in the check's own thread, and leave the profiler and torch's function modes alone.")


def forbidden_in_source(source: str, forbid=(), words=(), own=frozenset()) -> list[str]:
    """See :meth:`Exercise.forbidden_in_source`. ``words`` adds bare attribute or keyword names."""
    targets = {}
    for dotted in forbid:
        parts = dotted.removesuffix(".*").split(".")
        leaf = parts[-1]
        if len(parts) > 1 and parts[-2][:1].isupper() and not leaf[:1].isupper():
            leaf = parts[-2]      # a method (Polynomial.fit): look for the class, not for "fit"
        targets.setdefault(leaf, _public_name(dotted.removesuffix(".*")))
    for w in words:
        targets.setdefault(w.rstrip("="), w)
    if not targets:
        return []
    tree = _parse(source)
    if tree is None:
        return []
    found = []
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    bound |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.arg) for a in [n]}
    bound |= {n.name for n in ast.walk(tree)
              if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    bound |= set(own)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and \
                node.id in targets and node.id not in bound:
            found.append(targets[node.id])   # a name bound in another cell (the setup's import)
        if isinstance(node, ast.Attribute) and node.attr in targets:
            found.append(targets[node.attr])
        elif isinstance(node, ast.ImportFrom):
            found += [targets[a.name] for a in node.names if a.name in targets]
            mod = (node.module or "").split(".")
            found += [targets[m] for m in mod if m in targets]
        elif isinstance(node, ast.Import):
            found += [targets[m] for a in node.names for m in a.name.split(".") if m in targets]
        elif isinstance(node, ast.keyword) and node.arg in targets and not (
                isinstance(node.value, ast.Constant) and node.value.value in (0, 0.0, None, False)):
            found.append(targets[node.arg])   # label_smoothing=0.0 asks for nothing
    return sorted(set(found))


def _parse(source: str):
    try:
        return ast.parse(source)
    except SyntaxError:
        try:
            from IPython.core.inputtransformer2 import TransformerManager
            return ast.parse(TransformerManager().transform_cell(source))
        except Exception:  # noqa: BLE001 - unparsable text uses nothing
            return None


# Ways of reaching code that a reader of the text (the grader) cannot follow: names built from
# strings, namespaces read as dictionaries, code compiled from text, other threads or
# processes, and the switches of the kernel's own watch. Any of them in an answer fails it.
OPAQUE_NAMES = {
    "__getattribute__", "__getattr__", "__dict__", "__globals__", "__code__", "__builtins__",
    "__import__", "__closure__", "__subclasses__", "importlib", "setprofile", "settrace",
    "monitoring", "_getframe", "f_back", "f_globals", "threading", "_thread", "multiprocessing",
    "concurrent", "subprocess", "ctypes", "gc", "inspect", "attrgetter", "methodcaller",
    "builtins", "DisableTorchFunction", "DisableTorchFunctionSubclass", "_pop_mode",
    "_pop_mode_temporarily", "_disable_current_modes", "_pop_torch_function_stack",
    "_set_torch_function_mode", "TorchFunctionMode", "marshal", "FunctionType", "CodeType",
}
# built-ins that are opaque only under their own name (``re.compile`` is fine)
OPAQUE_BUILTINS = {"vars", "globals", "eval", "exec", "compile", "__import__"}


def opaque_routes(source: str) -> list[str]:
    """The names in ``source`` that reach code the grader cannot follow by reading it
    (:data:`OPAQUE_NAMES`, ``getattr`` with a name that is not a string literal, ``sys.modules``)."""
    tree = _parse(source)
    if tree is None:
        return []
    found = set()
    calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and (node.id in OPAQUE_NAMES or node.id in OPAQUE_BUILTINS):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            if node.attr in OPAQUE_NAMES:
                found.add(node.attr)
            if node.attr == "modules" and isinstance(node.value, ast.Name) and node.value.id == "sys":
                found.add("sys.modules")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] + [a.name for a in node.names]
            found |= {p for m in mods for p in m.split(".") if p in OPAQUE_NAMES}
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ("getattr", "setattr", "hasattr", "delattr"):
            if len(node.args) < 2 or not (isinstance(node.args[1], ast.Constant)
                                          and isinstance(node.args[1].value, str)):
                found.add(f"{node.func.id} with a computed name")
        elif isinstance(node, ast.Name) and node.id in ("getattr", "setattr") and \
                id(node) not in calls:
            found.add(f"{node.id} passed as a value")
    return sorted(found)


def helpers_in_source(source: str) -> list[str]:
    """What ``source`` takes from the course's own ``helpers`` package, apart from
    :data:`HELPERS_ALLOWED` (an import, or an attribute chain rooted at ``helpers``)."""
    tree = _parse(source)
    if tree is None:
        return []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "helpers":
            found |= {f"{node.module}.{a.name}" for a in node.names if a.name not in HELPERS_ALLOWED}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "helpers"}
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.value.id == "helpers" and node.attr not in HELPERS_ALLOWED:
            found.add(f"helpers.{node.attr}")
    return sorted(found)


def _top_names(tree) -> tuple[set, set]:
    """(names a cell defines at top level, names it reads anywhere)."""
    defined, read = set(), set()
    for node in getattr(tree, "body", []):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            read.add(node.id)
    return defined, read


def answer_closure(source: str, others: dict) -> list[str]:
    """The sources an answer runs: its own, and every other answer cell (``others``: id ->
    source) that defines a name it reads, transitively ("a helper defined in another cell")."""
    parsed = {k: _parse(v) for k, v in others.items() if v}
    info = {k: _top_names(t) for k, t in parsed.items() if t is not None}
    tree = _parse(source)
    if tree is None:
        return [source]
    _, need = _top_names(tree)
    taken, out = set(), [source]
    changed_ = True
    while changed_:
        changed_ = False
        for k, (defined, read) in info.items():
            if k not in taken and others[k] != source and defined & need:
                taken.add(k)
                out.append(others[k])
                need |= read
                changed_ = True
    return out


# Exceptions whose common cause the course knows: (pattern in "Type: message", hint).
RAISED_HINTS = [
    (r"has no attribute '(training|_parameters|_buffers|_modules)'|before Module\.__init__\(\) call",
     "a module's attribute store is missing: the first line of your __init__ must be "
     "super().__init__(), before any attribute is set."),
    (r"only integer tensors of a single element can be converted to an index|"
     r"'torch\.return_types\.\w+' object|return_types",
     "torch.max, torch.min, torch.sort and torch.median with a dim return a pair (values, "
     "indices): take .values (or .indices) from it."),
    (r"LinAlgError|[Ss]ingular matrix|linalg\.solve: The solver failed",
     "the system you solve is singular: check the matrix you build (its columns, its shape), "
     "or use a least-squares solver."),
    (r"could not be broadcast|must match the size of tensor|cannot be broadcast|"
     r"shapes? .* (?:do not|don't) match|non-singleton dimension",
     "two arrays do not line up: a reduction (mean, sum, var) without keepdim=True / keepdims=True, "
     "or over the wrong axis, leaves a shape that no longer broadcasts. Print the shapes."),
    (r"mat1 and mat2 shapes cannot be multiplied|Input operand \d+ has a mismatch in its core "
     r"dimension|size mismatch",
     "a matrix product whose inner dimensions differ: check which axis holds samples and "
     "which holds features (a transpose missing or extra)."),
    (r"expected (?:scalar type|m1 and m2 to have the same dtype)|found dtype \w+ but expected|"
     r"Double but found Float|Float but found Double|same dtype",
     "tensors of different dtypes meet in one operation: build new tensors with dtype=x.dtype "
     "(and device=x.device) instead of the default float32."),
    (r"Can't call numpy\(\) on Tensor that requires grad",
     "call .detach() before .numpy() (or compute in torch throughout)."),
    (r"leaf Variable that requires grad is being used in an in-place operation",
     "an in-place change of a parameter is recorded by autograd: do it inside "
     "`with torch.no_grad():`."),
    (r"'NoneType' object|NoneType",
     "a value is None where a number or an array was expected: an argument that may be None "
     "(a default such as momentum=None) used in arithmetic, a function without a `return`, or "
     "an in-place method (.sort(), list.append), which returns None."),
    (r"missing \d+ required positional argument|takes \d+ positional arguments? but \d+|"
     r"got an unexpected keyword argument",
     "the function's parameters differ from the ones the exercise names: keep exactly the "
     "signature given in the exercise text."),
    (r"index -?\d+ is out of bounds|IndexError: too many indices|Dimension out of range",
     "an index or axis beyond the array's shape: check which axis you index (rows are samples)."),
    (r"Expected more than 1 value per channel when training",
     "one value per channel cannot give a batch variance: this is a batch of one in training "
     "mode."),
    (r"ZeroDivisionError|division by zero",
     "a division by zero: an empty group (fold, bin) or a probability of 1 in a denominator."),
    (r"RecursionError|maximum recursion depth",
     "the function calls itself: a name inside it refers to your own function (the same name "
     "as the library function you meant?)."),
    (r"does not require grad and does not have a grad_fn",
     "autograd has nothing to differentiate: the tensor was created without requires_grad=True "
     "or was detached."),
]


def _raised_hint(msg: str) -> str:
    if msg.startswith("NotImplementedError"):
        return " (the answer is still the stub: replace the `raise NotImplementedError` line)"
    for pattern, hint in RAISED_HINTS:
        if re.search(pattern, msg):
            return " Likely cause: " + hint
    return ""


def raised_text(data: dict) -> str:
    """The learner-facing text of a recorded exception: what, where in their code, which answer
    it came from, what the check passed in, and the likely cause."""
    text = str(data.get("__raised__", ""))
    where = data.get("__where__")
    if where:
        text += f" ({where})"
    owner = data.get("__from__")
    if owner:
        text += (f". It comes from your answer to {owner}, which this code calls: fix that "
                 "exercise first")
    near = data.get("__near__")
    if near and isinstance(near, list):
        text += f". Did you mean {', '.join('`' + str(n) + '`' for n in near[:3])}?"
    args = data.get("__args__")
    if args:
        text += f". The check called it with: {args}."
    return text + _raised_hint(str(data.get("__raised__", "")))


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
    """State of one probe run: what to watch for (see :func:`_watch_table`), what was seen, and
    what the learner's code printed. ``used``: refused library calls; ``helpers``: calls into
    the course's own package; ``tamper``: attempts to go around the watch itself."""

    def __init__(self, forbid=(), watch_if=()):
        self.table = _watch_table(forbid, watch_if)
        self.used: list[str] = []
        self.helpers: list[str] = []
        self.tamper: list[str] = []
        self.printed = _Printed()
        self.depth = 0


_ACTIVE: list[_Probing] = []

# The course's own package, and where the Python installation keeps its libraries. A frame
# is "helpers", "library" (stdlib, site-packages, frozen modules) or the learner's code.
_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)
def _lib_dirs() -> tuple:
    import site
    import sysconfig

    found = set()
    for scheme_path in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(scheme_path)
        if p:
            found.add(p)
    try:
        found.update(site.getsitepackages())
    except AttributeError:
        pass
    return tuple(sorted({str(Path(p).resolve()) for p in found} - {"/", "/usr"}))


_LIB_DIRS = _lib_dirs()
# helpers functions a learner may call (DESIGN.md: the shortcut rule)
HELPERS_ALLOWED = ("seed_everything", "get_device")
_THREAD_FILES = ("/threading.py", "/concurrent/", "/multiprocessing/", "/subprocess.py", "/os.py")
# built-ins that switch the watch off or run code where it cannot follow
_TAMPER_BUILTINS = {"setprofile": "sys.setprofile (switching off the check's watch)",
                    "settrace": "sys.settrace (switching off the check's watch)",
                    "_pop_torch_function_stack": "torch._C._pop_torch_function_stack",
                    "_set_torch_function_mode": "torch._C._set_torch_function_mode",
                    "start_new_thread": "a thread", "start_new": "a thread",
                    "start_joinable_thread": "a thread",
                    "fork": "a new process", "fork_exec": "a new process",
                    "posix_spawn": "a new process", "posix_spawnp": "a new process"}
_CODE_KIND: dict = {}
_CORE_FILE = str(Path(__file__).resolve())
# torch functions that take the function mode off the stack for a while
_MODE_SWITCHES = ("_pop_mode", "_pop_mode_temporarily", "_disable_current_modes",
                  "_push_mode", "_set_torch_function_mode", "_pop_torch_function_stack",
                  "_push_on_torch_function_stack", "disable_torch_function_subclass")


def _file_kind(filename: str) -> str:
    """``helpers``, ``library`` or ``learner`` for a code object's file name."""
    if not filename or filename.startswith("<frozen") or filename.startswith("<built-in"):
        return "library"
    if filename.startswith("<"):           # <string>, <ipython-input-...>, <lambda>: learner
        return "learner"
    try:
        path = str(Path(filename).resolve())
    except (OSError, RuntimeError):
        path = filename
    if path == _CORE_FILE:
        return "library"                   # this module: the watch itself, the print sink
    if path.startswith(_PACKAGE_DIR + os.sep):
        return "helpers"
    if any(path.startswith(d + os.sep) for d in _LIB_DIRS) or "site-packages" in path \
            or "dist-packages" in path:
        return "library"
    return "learner"


def _code_kind(code) -> str:
    kind = _CODE_KIND.get(code)
    if kind is None:
        kind = _CODE_KIND[code] = _file_kind(code.co_filename)
    return kind


def _origin(frame, skip=()) -> str:
    """Who made a call: the kind of ``frame`` or, if it is library code, of the nearest frame
    above it that is not. With ``skip`` (file-name fragments), only frames of those files are
    passed over. ``learner`` when the learner's code made the call, even through ``map``,
    ``functools.partial`` or a library function."""
    f = frame
    while f is not None:
        kind = _code_kind(f.f_code)
        if skip:
            if not any(s in f.f_code.co_filename for s in skip):
                return kind
        elif kind != "library":
            return kind
        f = f.f_back
    return "library"


def _helpers_name(code) -> str:
    rel = Path(code.co_filename).resolve().relative_to(Path(_PACKAGE_DIR).parent)
    module = ".".join(rel.with_suffix("").parts)
    return f"{module}.{getattr(code, 'co_qualname', code.co_name)}"


def _op_name(func) -> str:
    """The op a torch function-like object reaches: ``torch.dropout``, ``F.dropout`` and
    ``torch.ops.aten.dropout.default`` are all ``dropout``; ``Tensor.renorm`` is ``renorm``."""
    schema = getattr(func, "_schema", None)
    if schema is not None:
        name = schema.name
    else:
        name = getattr(func, "_qualified_op_name", None) or getattr(func, "__name__", "") or ""
    return str(name).split("::")[-1].split(".")[0]


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


@dataclass
class _Table:
    codes: dict          # code object -> (dotted, condition)
    builtins: dict       # id(built-in) -> (dotted, condition, built-in)
    prefixes: tuple      # (file path prefix, dotted): every Python function defined there
    ops: dict            # torch op name -> (dotted, condition), matched by a TorchFunctionMode


def _watch_table(forbid, watch_if=()) -> _Table:
    """What a probe watches for. ``forbid`` and ``watch_if`` entries are dotted names:

    - a Python function or method (``numpy.vander``, ``torch.nn.Dropout.forward``): its code
      object; a class (``sklearn.linear_model.Ridge``): every function defined in its body;
    - a built-in (``torch.dropout``): its identity;
    - anything of torch that reaches an op (``torch.dropout``, ``torch.native_dropout``,
      ``torch.ops.aten.native_dropout``, ``torch.Tensor.renorm``, ``torch._C._nn.cross_entropy_loss``,
      ``torch.nn.functional.dropout``): also the op's name, which a TorchFunctionMode sees
      whatever route or name reached it;
    - a package or module followed by ``.*`` (``torch.optim.*``): every Python function defined
      in its files.

    ``condition`` is None (any call counts) or a function of the call's arguments (a dict of
    named arguments, plus ``"args"``: the positional ones when they could not be named) that
    returns the name to record, or None.
    """
    codes, builtins, prefixes, ops = {}, {}, [], {}
    entries = [(d, None) for d in forbid] + list(watch_if)
    for dotted, condition in entries:
        if dotted.endswith(".*"):
            try:
                mod = importlib.import_module(dotted[:-2])
            except ImportError:
                continue
            f = str(Path(mod.__file__).resolve())
            prefixes.append((str(Path(f).parent) + os.sep if f.endswith("__init__.py") else f,
                             dotted[:-2]))
            continue
        try:
            owner, attr = _resolve(dotted)
            target = getattr(owner, attr)
        except (ImportError, AttributeError):
            continue
        if isinstance(target, type):
            for v in vars(target).values():
                fn = getattr(v, "__func__", v)
                code = getattr(fn, "__code__", None)
                if code is not None and code.co_name != "__init__":
                    codes.setdefault(code, (dotted, condition))
            if dotted.startswith("torch.nn."):
                continue
            init = getattr(vars(target).get("__init__"), "__code__", None)
            if init is not None:
                codes.setdefault(init, (dotted, condition))
            continue
        fn = getattr(target, "__func__", target)
        for _ in range(8):                     # decorators (scikit-learn's validate_params wraps
            inner = getattr(fn, "__wrapped__", None)   # many functions in one shared code
            if inner is None or not callable(inner):   # object), NumPy's dispatchers: the
                break                                  # function's own code is what is watched
            fn = inner
        code = getattr(fn, "__code__", None)
        if code is not None:
            codes[code] = (dotted, condition)
        elif callable(target):
            builtins[id(target)] = (dotted, condition, target)
        if dotted.startswith("torch."):
            name = _op_name(target)
            if name:
                ops[name] = (dotted, condition)
    if ops:
        # torch.ops.aten.X(...) runs OpOverloadPacket.__call__ / OpOverload.__call__ (one code
        # object for every op): watched with a condition on which op it is, so the route is seen
        # even where the function mode was switched off
        try:
            from torch import _ops
        except ImportError:
            _ops = None
        for cls in (getattr(_ops, "OpOverloadPacket", None), getattr(_ops, "OpOverload", None)):
            call = getattr(getattr(cls, "__call__", None), "__code__", None)
            if call is not None:
                codes.setdefault(call, ("torch.ops", _op_condition(ops)))
    return _Table(codes, builtins, tuple(prefixes), ops)


def _op_condition(ops):
    def which(args):
        entry = ops.get(_op_name(args.get("self") or args.get("self_")))
        if entry is None:
            return None
        return entry[1](args) if entry[1] is not None else entry[0]
    return which


def _public_name(dotted: str) -> str:
    """The name a learner knows: ``torch.nn.modules.dropout.Dropout.forward`` -> ``torch.nn.Dropout``."""
    name = dotted.removesuffix(".forward").removesuffix(".__init__")
    name = re.sub(r"^torch\.nn\.modules\.\w+\.", "torch.nn.", name)
    return name.replace("torch.nn._BatchNorm", "torch.nn.BatchNorm1d/2d")


def _named_args(func, args, kwargs) -> dict:
    try:
        bound = inspect.signature(func).bind_partial(*args, **kwargs).arguments
        return {**dict(bound), "args": tuple(args)}
    except (TypeError, ValueError):
        return {**kwargs, "args": tuple(args)}


_MODE_CLASS = None


def _function_mode(state: "_Probing", record):
    """A TorchFunctionMode that records refused torch ops, whatever name or route reached them
    (an alias, ``getattr`` with a built string, ``torch.ops.aten``, ``torch._C``)."""
    global _MODE_CLASS
    from torch.overrides import TorchFunctionMode

    if _MODE_CLASS is None:
        class _Watch(TorchFunctionMode):
            def __init__(self, ops, record):
                super().__init__()
                self.ops, self.record, self.names = ops, record, {}

            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                try:
                    name = self.names[func]
                except (KeyError, TypeError):
                    name = _op_name(func)
                    try:
                        self.names[func] = name
                    except TypeError:
                        pass
                entry = self.ops.get(name)
                if entry is not None:
                    self.record(entry, _named_args(func, args, kwargs) if entry[1] else {})
                return func(*args, **kwargs)
        _MODE_CLASS = _Watch
    return _MODE_CLASS(state.table.ops, record)


def _torch_loaded():
    return sys.modules.get("torch")


@contextlib.contextmanager
def learner_code():
    """Run learner code: what it prints is captured (bounded), and every call that the shortcut
    rule refuses is recorded (DESIGN.md): a library function the exercise forbids, a function or
    class of the course's own ``helpers`` (``seed_everything`` and ``get_device`` excepted;
    methods of objects the check passes in, such as a model's forward, are fine), and any attempt
    to go around the watch (switching the profile hook or the torch function mode off, a
    thread or a process started by the learner's code).

    Calls are recognised by *what* is called, not by name: a profile hook matches code objects,
    built-ins and file locations, and a TorchFunctionMode matches torch ops, so ``F.dropout``,
    ``from torch.nn.functional import dropout as d``, ``getattr(torch, "drop" + "out")``,
    ``torch.ops.aten.native_dropout`` and a helper defined in another cell are all seen.
    :func:`capture` uses it; a probe that calls learner objects some other way wraps the call in
    ``with learner_code():``.
    """
    state = _ACTIVE[-1] if _ACTIVE else None
    if state is None or state.depth:
        yield
        return
    table = state.table
    codes, builtins, prefixes = table.codes, table.builtins, table.prefixes

    busy = []                                 # set while a watch_if condition runs

    def record(entry, args):
        name, condition = entry[0], entry[1]
        if condition is not None:
            busy.append(True)                 # the condition is the course's code, not the learner's
            try:
                name = condition(args)
            except Exception:  # noqa: BLE001 - odd arguments: the call itself will say so
                name = None
            finally:
                busy.pop()
        if name:
            state.used.append(_public_name(name))

    def on_call(frame):
        code = frame.f_code
        entry = codes.get(code)
        if entry is not None:
            record(entry, frame.f_locals)
            return
        kind = _CODE_KIND.get(code) or _code_kind(code)
        if kind == "learner":
            return
        if kind == "library":
            if code.co_name in _MODE_SWITCHES and "torch" in code.co_filename and \
                    _origin(frame.f_back, skip=("/contextlib.py",)) == "learner":
                state.tamper.append(f"torch's {code.co_name} (switching off the check's watch)")
                return
        if kind == "helpers":
            if code.co_name in HELPERS_ALLOWED:
                return
            if code.co_name != "__init__" and code.co_varnames[:1] == ("self",):
                torch = _torch_loaded()
                me = frame.f_locals.get("self")
                if torch is not None and isinstance(me, torch.nn.Module):
                    return                   # a method of a model the check passed in
            if _origin(frame.f_back) == "learner":
                state.helpers.append(_helpers_name(code))
        elif prefixes and kind == "library":
            fname = code.co_filename
            for prefix, dotted in prefixes:
                if fname.startswith(prefix):
                    state.used.append(dotted)
                    break

    closing = False

    def hook(frame, event, arg):
        if busy:
            return
        if event == "call":
            on_call(frame)
        elif event == "c_call":
            entry = builtins.get(id(arg))
            if entry is not None and entry[2] is arg:
                record(entry, {})
                return
            name = getattr(arg, "__name__", None)
            what = _TAMPER_BUILTINS.get(name)
            if what is None and name == "__enter__" and \
                    type(getattr(arg, "__self__", None)).__name__.startswith("DisableTorchFunction"):
                what = "torch._C.DisableTorchFunction (switching off the check's watch)"
            if what is not None:
                if closing:
                    return
                if what not in ("a thread", "a new process") and \
                        _code_kind(frame.f_code) != "learner":
                    return                   # torch's own handling of its modes
                if what in ("a thread", "a new process") and \
                        _origin(frame, skip=_THREAD_FILES) != "learner":
                    return                   # a library's own worker thread (tqdm's monitor)
                state.tamper.append(what)

    import threading

    previous = sys.getprofile()
    prev_thread = getattr(threading, "_profile_hook", None)
    torch = _torch_loaded()
    mode = _function_mode(state, record) if torch is not None and table.ops else None
    state.depth += 1
    try:
        with contextlib.redirect_stdout(state.printed), contextlib.redirect_stderr(state.printed):
            if mode is not None:
                mode.__enter__()
            threading.setprofile(hook)
            sys.setprofile(hook)
            try:
                yield
            finally:
                still = sys.getprofile() is hook
                closing = True
                sys.setprofile(previous)
                threading.setprofile(prev_thread)
                if not still:
                    state.tamper.append("sys.setprofile (switching off the check's watch)")
                if mode is not None:
                    from torch.overrides import _get_current_function_mode
                    on_top = _get_current_function_mode() is mode
                    try:
                        mode.__exit__(None, None, None)
                    except Exception:  # noqa: BLE001 - the learner's code popped it already
                        on_top = False
                    if not on_top:
                        state.tamper.append("the torch function mode (switching off the check's watch)")
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
        return raised_data(e, args, kwargs)
    return encode(out)


def raised_data(e: BaseException, args=(), kwargs=None) -> dict:
    """What the record keeps of an exception in learner code: its type and text, where in the
    learner's own code it happened (never a frame of NumPy or torch), which exercise's answer
    that code belongs to, and what the check passed in (kinds, shapes, dtypes)."""
    out = {"__raised__": f"{type(e).__name__}: {e}"[:500], "__where__": learner_frame(e)}
    owner = _answer_owner(e)
    if owner:
        out["__from__"] = owner
    described = describe_args(args, kwargs or {})
    if described:
        out["__args__"] = described
    if isinstance(e, NameError):
        near = _near_names(getattr(e, "name", None) or _missing_name(str(e)), e)
        if near:
            out["__near__"] = near
    return out


def describe(v: Any) -> str:
    """A short description of a value the check passed in: kind, dtype and shape."""
    if hasattr(v, "detach") and hasattr(v, "shape") and hasattr(v, "dtype"):
        return f"a {str(v.dtype).removeprefix('torch.')} tensor of shape {tuple(v.shape)}"
    if isinstance(v, np.ndarray):
        return f"a {v.dtype} NumPy array of shape {v.shape}"
    if isinstance(v, (bool, int, float, np.generic)):
        return repr(v.item() if isinstance(v, np.generic) else v)
    if v is None or isinstance(v, str):
        return repr(v)
    if isinstance(v, (list, tuple)):
        inner = ", ".join(describe(x) for x in list(v)[:4]) + (", ..." if len(v) > 4 else "")
        return f"a {type(v).__name__} [{inner}]" if len(inner) < 160 else \
            f"a {type(v).__name__} of {len(v)} items"
    return f"a {type(v).__name__}"


def describe_args(args, kwargs) -> str:
    parts = [describe(a) for a in args] + [f"{k}={describe(v)}" for k, v in kwargs.items()]
    text = "; ".join(parts)
    return text[:400]


def _answer_owner(e: BaseException) -> str:
    """The exercise whose answer the innermost learner frame belongs to (by function name)."""
    frames = [fr for fr in traceback.extract_tb(e.__traceback__)
              if _file_kind(fr.filename) == "learner"]
    if not frames:
        return ""
    names = {ex.name: ex.id for ex in REGISTRY.values()}
    for fr in reversed(frames):
        if fr.name in names:
            return names[fr.name]
    return ""


def _missing_name(text: str) -> str | None:
    m = re.search(r"name '([^']+)' is not defined", text)
    return m.group(1) if m else None


def _near_names(name: str | None, e: BaseException | None = None) -> list[str]:
    """Names the learner did define that look like ``name`` (a misspelling)."""
    import difflib

    if not name:
        return []
    pool = set(dir(__import__("builtins")))
    ns = _user_namespace()
    if ns:
        pool |= {k for k in ns if not k.startswith("_")}
    tb = getattr(e, "__traceback__", None)
    while tb is not None:
        pool |= set(tb.tb_frame.f_globals) | set(tb.tb_frame.f_locals)
        tb = tb.tb_next
    pool.discard(name)
    return difflib.get_close_matches(name, sorted(pool), n=3, cutoff=0.75)


def learner_frame(e: BaseException) -> str:
    """Where in the learner's own code an exception happened: the innermost frame that is
    neither the course's package nor a library (NumPy, torch), with its function name."""
    for fr in reversed(traceback.extract_tb(e.__traceback__)):
        if _file_kind(fr.filename) == "learner":
            where = f"in `{fr.name}`, " if fr.name and not fr.name.startswith("<") else ""
            line = f"{where}line {fr.lineno}"
            return (f"{line}: {fr.line.strip()}" if fr.line else line)[:200]
    return ""


def _bound_torch():
    """torch's tensor methods as they are when the checks are imported (before any learner code
    runs): what :func:`encode` reads a tensor with, so a learner who patches ``Tensor.detach``
    or ``Tensor.numpy`` in the kernel cannot change what the record says."""
    try:
        import torch
    except ImportError:
        return None
    T = torch.Tensor
    return {"Tensor": T, "detach": T.detach, "cpu": T.cpu, "numpy": T.numpy, "float": T.float,
            "clone": T.clone, "bfloat16": torch.bfloat16, "requires_grad": T.requires_grad}


_TORCH = _bound_torch()
_NP_ARRAY = np.array


def encode(obj: Any, depth: int = 0) -> Any:
    """Plain JSON data for tensors, arrays, numbers, strings, lists, tuples and dicts."""
    if depth > 8:
        return {"__repr__": "nested too deep"}
    B = _TORCH
    if B is not None and isinstance(obj, B["Tensor"]):
        try:
            t = B["cpu"](B["clone"](B["detach"](obj)))
            if t.dtype == B["bfloat16"]:
                t = B["float"](t)
            return _enc_array(B["numpy"](t), "torch", str(obj.dtype).removeprefix("torch."),
                              requires_grad=bool(B["requires_grad"].__get__(obj)))
        except Exception:  # noqa: BLE001
            return {"__repr__": "an unreadable tensor"}
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
    a = _NP_ARRAY(a, order="C", copy=True)     # keeps 0-d arrays 0-d
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
            return Raised(raised_text(data))
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
        record = {"exercise": exercise_id, "seed": seed, "raised": raised_text(raised_data(e))[:900]}
    finally:
        _ACTIVE.remove(state)
    used = list(state.used)
    helpers_used = list(state.helpers)
    if isinstance(answer, type):
        used += [_public_name(f"{c.__module__}.{c.__qualname__}")
                 for c in forbidden_classes(ex.forbid) if issubclass(answer, c)]
        helpers_used += [f"{c.__module__}.{c.__qualname__}" for c in answer.__mro__[1:]
                         if str(getattr(c, "__module__", "")).split(".")[0] == "helpers"]
    if used:
        record["library"] = sorted(set(used))
    if helpers_used:
        record["helpers"] = sorted(set(helpers_used))
    if state.tamper:
        record["tamper"] = sorted(set(state.tamper))
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
    """When the latest cell that defines ``name`` did not run to its end, why (else "").

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
        return f"SyntaxError on line {e.lineno}: {(e.msg or '').strip()}"
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
        return f"the cell stopped with an error before it defined `{name}`"
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
    stale = ""
    if answer is _MISSING:
        what = "defines" if ex.kind != "value" else "sets"
        near = _near_names(ex.name)
        if near:
            message = (f"`{ex.name}` is not defined, but your notebook defines "
                       f"{', '.join('`' + n + '`' for n in near)}: the check looks for the exact "
                       f"name `{ex.name}` ({exercise_id} {what} it). Rename it and run the "
                       "answer cell again.")
        else:
            message = (f"`{ex.name}` is not defined yet: run the answer cell above first "
                       f"({exercise_id} {what} `{ex.name}`), then this check.")
        verdict = Verdict(exercise_id, "error", message)
        record = {"exercise": exercise_id, "seed": case_seed(),
                  "raised": f"NameError: `{ex.name}` is not defined (the answer cell was not run)"}
    else:
        stale = stale_answer_note(ex.name, answer)
        verdict, record = run(exercise_id, answer)
    payload = json.dumps(record)
    if len(payload) > MAX_RECORD_BYTES:
        record = {"exercise": exercise_id, "raised": "RecordTooLarge: the probe's data is too large"}
    text = verdict.text()
    if stale:
        # the first line must not say "passed": the learner's latest edit was not checked
        judged = ("its results are right, but it is not your latest edit" if verdict.passed
                  else f"and it fails: {verdict.message}")
        text = (f"{exercise_id}: your latest edit of `{ex.name}` did not run ({stale}).\n"
                f"This check judged the older `{ex.name}` still in memory, {judged}. Fix the "
                "error and run the answer cell again.")
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
