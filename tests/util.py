"""Scaffolding shared by the lessons' check tests (``tests/test_lessonNN.py``).

Plain functions and classes, imported by name (``from util import ...``; pytest puts ``tests/``
on ``sys.path``). Fixtures stay in ``conftest.py``.
"""

from __future__ import annotations

from helpers.checks import run
from helpers.checks.core import PUBLISHED_SEED


# ---------------------------------------------------------------- one seed per call, failures kept
class FailureLog:
    """``verdict`` and ``assert_fails`` at one case seed per call (lessons 01 and 02); the
    ``(exercise, message)`` of every failure they see is kept in ``hints`` for the hint scan."""

    def __init__(self):
        self.hints: list[tuple[str, str]] = []

    def verdict(self, ex, fn, seed=PUBLISHED_SEED):
        v = run(ex, fn, seed=seed)[0]
        if not v.passed:
            self.hints.append((ex, v.message))
        return v

    def assert_fails(self, ex, fn, hint, seed=PUBLISHED_SEED):
        v = self.verdict(ex, fn, seed)
        assert v.status == "failed" and hint in v.message, v.text()


def hard_coded(ex, fn):
    """An answer that returns, call after call, what ``fn`` returned at the published seed,
    and its call counter (set ``it["i"] = 0`` to replay from the first output)."""
    outputs = []
    run(ex, lambda *a: outputs.append(fn(*a)) or outputs[-1], seed=PUBLISHED_SEED)
    it = {"i": 0}

    def answer(*_):
        out = outputs[it["i"] % len(outputs)]
        it["i"] += 1
        return out
    return answer, it


def own_hints(namespace, seeds=(0, 1)) -> list[tuple[str, str]]:
    """Every failure message of a test module's mistake lists (read from the ``fn,hint``
    parametrizations of its ``test_exNM_mistakes`` tests; ``namespace``: the module's
    ``globals()``), produced here, so the scan does not depend on which tests ran before it."""
    found = []
    for name, test in sorted(namespace.items()):
        if not (name.startswith("test_ex") and name.endswith("_mistakes")):
            continue
        ex = f"ex{name[7]}.{name[8]}"
        for mark in getattr(test, "pytestmark", []):
            if mark.name == "parametrize" and mark.args[0] == "fn,hint":
                for fn, _hint in mark.args[1]:
                    for seed in seeds:
                        v = run(ex, fn, seed=seed)[0]
                        if not v.passed:
                            found.append((ex, v.message))
    return found


def assert_hints_hide(reference, hints):
    """``hints``, ``(exercise, message)`` pairs, cover every exercise of ``reference`` and no
    message contains any of its exercise's reference expressions."""
    assert {ex for ex, _ in hints} >= set(reference)
    for ex, msg in hints:
        for expr in reference[ex]:
            assert expr not in msg, (ex, expr, msg)


# ---------------------------------------------------------------- a loop over the case seeds
class SeedLoop:
    """``verdict``, ``assert_passes`` and ``assert_fails`` that run an answer at each of
    ``seeds`` (lessons 03 and 06); every message they see is kept in ``hints`` for a later scan.
    ``assert_fails`` also asserts that no message contains any of ``reference_phrases``."""

    def __init__(self, seeds, reference_phrases=()):
        self.seeds = seeds
        self.reference_phrases = reference_phrases
        self.hints: list[str] = []

    def verdict(self, ex, fn, seed=0):
        v = run(ex, fn, seed=seed)[0]
        self.hints.append(v.message)
        return v

    def assert_fails(self, ex, fn, hint, seeds=None):
        for seed in self.seeds if seeds is None else seeds:
            v = self.verdict(ex, fn, seed)
            assert v.status in ("failed", "error") and hint in v.message, (seed, v.text())
            for phrase in self.reference_phrases:
                assert phrase not in v.message, (phrase, v.text())

    def assert_passes(self, ex, fn, seeds=None):
        for seed in self.seeds if seeds is None else seeds:
            v = self.verdict(ex, fn, seed)
            assert v.passed, (seed, v.text())
