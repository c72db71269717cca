"""Issue 18's measure: on a bank of wrong answers written for the purpose (not taken from the
lesson tests), the share of verdicts that name what is wrong so that a learner can fix it.

Each bank entry (``tests/feedback_bank/lessonNN.py``, ``crosscutting.py``) is
``(exercise, mistake, wrong answer, phrases)``: the verdict "teaches" when it is not ``passed``
and its message contains one of the phrases (case-insensitive), chosen when the entry was
written as the words a message must use to point at that mistake. The test asserts the share is
at least 95 % and that no message is empty; ``python -m pytest tests/test_feedback_bank.py -s``
prints every entry that does not teach, with its message.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import feedback_bank
from helpers.checks import run

TARGET = 0.95


def bank():
    entries = []
    for info in sorted(pkgutil.iter_modules(feedback_bank.__path__), key=lambda i: i.name):
        mod = importlib.import_module(f"feedback_bank.{info.name}")
        for entry in getattr(mod, "BANK", []):
            entries.append((info.name, *entry))
    return entries


def _teaches(verdict, phrases) -> bool:
    msg = (verdict.message or "").lower()
    return (not verdict.passed) and bool(msg.strip()) and any(p.lower() in msg for p in phrases)


def test_the_bank_is_broad():
    entries = bank()
    assert len(entries) >= 60, len(entries)
    assert len({e[1] for e in entries}) >= 20, "the bank should cover most exercises"


def test_at_least_95_percent_of_wrong_answers_get_a_message_that_teaches(capsys):
    results = []
    for source, ex, mistake, answer, phrases in bank():
        verdict = run(ex, answer, seed=0)[0]
        results.append((source, ex, mistake, verdict, _teaches(verdict, phrases)))
    share = sum(r[-1] for r in results) / len(results)
    with capsys.disabled():
        print(f"\nfeedback bank: {sum(r[-1] for r in results)} of {len(results)} wrong answers "
              f"get a message that teaches ({share:.1%})")
        for source, ex, mistake, verdict, ok in results:
            if not ok:
                print(f"  {source} {ex} [{mistake}]: {verdict.status}: {verdict.message[:300]}")
    assert all(not r[3].passed for r in results), [r[:3] for r in results if r[3].passed]
    assert share >= TARGET, f"{share:.1%} < {TARGET:.0%}"
