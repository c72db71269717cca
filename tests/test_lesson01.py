"""Lesson 01 checks: correct answers written in different ways pass, common mistakes fail with a hint."""

import numpy as np
import pytest
import torch

from helpers.checks import run


def verdict(ex, fn):
    return run(ex, fn)[0]


# ---------------------------------------------------------------- ex1.1
def pf_reference(x, degree):
    x = np.asarray(x, dtype=float)
    return x[:, None] ** np.arange(degree + 1)


def pf_loop(x, degree):
    out = np.ones((len(x), degree + 1))
    for j in range(1, degree + 1):
        out[:, j] = out[:, j - 1] * x
    return out


def pf_vander(x, degree):
    return np.vander(x, degree + 1, increasing=True)


def pf_torch(x, degree):
    return torch.tensor(x)[:, None] ** torch.arange(degree + 1)


@pytest.mark.parametrize("fn", [pf_reference, pf_loop, pf_vander, pf_torch])
def test_ex11_correct(fn):
    assert verdict("ex1.1", fn).passed


@pytest.mark.parametrize("fn,hint", [
    (lambda x, d: np.stack([x ** j for j in range(1, d + 1)], 1), "constant column"),
    (lambda x, d: np.vander(x, d + 1), "reverse order"),
    (lambda x, d: np.stack([x ** j for j in range(d + 2)], 1), "no further"),
    (lambda x, d: pf_reference(x, d).T, "transpose"),
    (lambda x, d: np.stack([x * j for j in range(d + 1)], 1), "wrong values"),
])
def test_ex11_mistakes(fn, hint):
    v = verdict("ex1.1", fn)
    assert v.status == "failed" and hint in v.message, v.text()


def test_ex11_modifying_input_fails():
    def mutating(x, d):
        x *= 1.0
        x[0] = 0.0
        return pf_reference(x, d)
    v = verdict("ex1.1", mutating)
    assert v.status == "failed" and "changed its input" in v.message


# ---------------------------------------------------------------- ex1.2
def fit_lstsq(x, y, d):
    return np.linalg.lstsq(pf_reference(x, d), y, rcond=None)[0]


def fit_polyfit(x, y, d):
    return np.polyfit(x, y, d)[::-1]


def fit_normal_equations(x, y, d):
    V = pf_loop(x, d)
    return np.linalg.solve(V.T @ V, V.T @ y)


def fit_torch(x, y, d):
    V = torch.tensor(x)[:, None] ** torch.arange(d + 1)
    return torch.linalg.lstsq(V, torch.tensor(y)[:, None]).solution[:, 0]


@pytest.mark.parametrize("fn", [fit_lstsq, fit_polyfit, fit_normal_equations, fit_torch])
def test_ex12_correct(fn):
    assert verdict("ex1.2", fn).passed


@pytest.mark.parametrize("fn,hint", [
    (lambda x, y, d: np.polyfit(x, y, d), "reverse order"),
    (lambda x, y, d: fit_lstsq(x, y, d - 1) if d > 0 else fit_lstsq(x, y, 0)[:0], "coefficient is missing"),
    (lambda x, y, d: np.linalg.lstsq(pf_reference(x, d), y, rcond=None)[0] * 1.01, "not the least-squares"),
])
def test_ex12_mistakes(fn, hint):
    v = verdict("ex1.2", fn)
    assert v.status == "failed" and hint in v.message, v.text()


# ---------------------------------------------------------------- ex1.3
@pytest.mark.parametrize("fn", [
    lambda a, b: float(np.mean((a - b) ** 2)),
    lambda a, b: sum((p - q) ** 2 for p, q in zip(a, b)) / len(a),
    lambda a, b: torch.nn.functional.mse_loss(torch.tensor(b), torch.tensor(a)).item(),
    lambda a, b: np.square(np.subtract(b, a)).mean(),  # NumPy scalar, arguments swapped: still fine
])
def test_ex13_correct(fn):
    assert verdict("ex1.3", fn).passed


@pytest.mark.parametrize("fn,hint", [
    (lambda a, b: float(np.sum((a - b) ** 2)), "*sum*"),
    (lambda a, b: float(np.sqrt(np.mean((a - b) ** 2))), "RMSE"),
    (lambda a, b: float(np.mean(np.abs(a - b))), "absolute"),
    (lambda a, b: float(np.mean(a - b) ** 2), "square of the mean"),
    (lambda a, b: (a - b) ** 2, "single number"),
])
def test_ex13_mistakes(fn, hint):
    v = verdict("ex1.3", fn)
    assert v.status == "failed" and hint in v.message, v.text()


# ---------------------------------------------------------------- ex1.4
def test_ex14():
    from helpers.checks.lesson01 import _split_errors
    val, fitting = _split_errors()
    best = int(np.argmin(val))
    assert verdict("ex1.4", best).passed
    assert verdict("ex1.4", np.int64(best)).passed
    v = verdict("ex1.4", int(np.argmin(fitting)))
    assert v.status == "failed" and "validation points" in v.message
    wrong = next(d for d in range(5) if d not in (best, int(np.argmin(fitting))))
    assert verdict("ex1.4", wrong).status == "failed"
    v = verdict("ex1.4", None)
    assert v.status == "failed" and "not set" in v.message


# ---------------------------------------------------------------- stubs and crashes
def test_stub_reports_error_with_hint():
    def stub(x, degree):
        raise NotImplementedError("ex1.1: write your answer here")
    v = verdict("ex1.1", stub)
    assert v.status == "error" and "still the stub" in v.message


def test_crash_reports_where():
    def crash(x, y, d):
        return x @ y @ d
    v = verdict("ex1.2", crash)
    assert v.status == "error" and "raised" in v.message
