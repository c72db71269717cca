"""Lesson 01 checks at several case seeds: correct answers written in different ways pass
(float32 ones included), common mistakes fail with a hint that names them, every requirement
the exercise texts state has an answer breaking it that fails with its hint (``REQUIREMENTS``),
the library shortcuts of DESIGN.md's table are refused, no hint contains the reference
expression, and an answer hard-coding the published outputs fails at another seed. No
exercise of lesson 01 is random, so no verdict here is statistical: every check is exact up to
a float tolerance. Also lesson 01's PolynomialExplorer driven through its controls (moved here from
test_widgets.py)."""

from __future__ import annotations

import json

import matplotlib
import nbformat
import numpy as np
import pytest
import torch
from nbclient import NotebookClient

from helpers.checks import run
from helpers.checks.core import PUBLISHED_SEED
from util import FailureLog, assert_hints_hide, hard_coded, own_hints

SEEDS = [0, 1, 7, 12345]
LOG = FailureLog()
HINTS = LOG.hints          # (exercise, message) of every failure the tests saw
verdict, assert_fails = LOG.verdict, LOG.assert_fails

# what a hint must never spell out (the reference answers' expressions)
REFERENCE = {
    "ex1.1": ["[:, None] ** np.arange", "np.vander(x, degree + 1", "increasing=True"],
    "ex1.2": ["np.linalg.lstsq(V, y", "lstsq(polynomial_features"],
    "ex1.3": ["var(axis=0, ddof=1)", "var(0, ddof=1)", "variance / R", "var / R", "s2 / R",
              "mean(axis=0) - f_true", "mean(0) - f_true"],
    "ex1.4": ["idx[i::k]", "[i::k]", "np.argmin(cv"],
}


# ---------------------------------------------------------------- ex1.1
def pf_reference(x, degree):
    x = np.asarray(x, dtype=float)
    return x[:, None] ** np.arange(degree + 1)


def pf_loop(x, degree):
    out = np.ones((len(x), degree + 1))
    for j in range(1, degree + 1):
        out[:, j] = out[:, j - 1] * x
    return out


def pf_torch(x, degree):
    return torch.tensor(x)[:, None] ** torch.arange(degree + 1)


def pf_float32(x, degree):
    return torch.tensor(x, dtype=torch.float32)[:, None] ** torch.arange(degree + 1)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn", [pf_reference, pf_loop, pf_torch, pf_float32])
def test_ex11_correct(fn, seed):
    assert verdict("ex1.1", fn, seed).passed


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn,hint", [
    (lambda x, d: np.stack([x ** j for j in range(1, d + 1)], 1) if d else np.ones((len(x), 0)),
     "constant column"),
    (lambda x, d: pf_reference(x, d)[:, ::-1], "reverse order"),
    (lambda x, d: np.stack([x ** j for j in range(d + 2)], 1), "no further"),
    (lambda x, d: pf_reference(x, d).T, "transpose"),
    (lambda x, d: np.stack([x * j for j in range(d + 1)], 1), "wrong values"),
])
def test_ex11_mistakes(fn, hint, seed):
    assert_fails("ex1.1", fn, hint, seed)


def test_ex11_modifying_input_fails():
    def mutating(x, d):
        x *= 1.0
        x[0] = 0.5
        return pf_reference(x, d)
    assert_fails("ex1.1", mutating, "changed its input", 1)


def pf_vander(x, degree):
    return np.vander(x, degree + 1, increasing=True)


def pf_polyvander(x, degree):
    from numpy.polynomial import polynomial as P
    return P.polyvander(x, degree)


def pf_sklearn(x, degree):
    from sklearn.preprocessing import PolynomialFeatures
    return PolynomialFeatures(degree).fit_transform(x[:, None])


def pf_vander_by_string(x, degree):
    return getattr(np, "van" + "der")(x, degree + 1, increasing=True)


@pytest.mark.parametrize("fn,name", [(pf_vander, "numpy.vander"),
                                     (pf_vander_by_string, "numpy.vander"),
                                     (pf_polyvander, "polyvander"),
                                     (pf_sklearn, "PolynomialFeatures")])
def test_ex11_library_shortcuts_are_refused(fn, name):
    """DESIGN.md's shortcut table: np.vander (the former ex1.1 'correct' answer), polyvander
    and scikit-learn's PolynomialFeatures compute the whole answer; they fail, naming the call."""
    for seed in (0, 7):
        assert_fails("ex1.1", fn, name, seed)
        assert_fails("ex1.1", fn, "library code this exercise asks you to write yourself", seed)


# ---------------------------------------------------------------- ex1.2
def fit_lstsq(x, y, d):
    return np.linalg.lstsq(pf_reference(x, d), y, rcond=None)[0]


def fit_normal_equations(x, y, d):
    V = pf_loop(x, d)
    return np.linalg.solve(V.T @ V, V.T @ y)


def fit_torch(x, y, d):
    V = pf_torch(x, d)
    return torch.linalg.lstsq(V, torch.tensor(y)[:, None]).solution[:, 0]


def fit_float32(x, y, d):
    V = pf_float32(x, d)
    return torch.linalg.lstsq(V, torch.tensor(y, dtype=torch.float32)[:, None]).solution[:, 0]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn", [fit_lstsq, fit_normal_equations, fit_torch, fit_float32])
def test_ex12_correct(fn, seed):
    assert verdict("ex1.2", fn, seed).passed


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn,hint", [
    (lambda x, y, d: fit_lstsq(x, y, d)[::-1], "reverse order"),
    (lambda x, y, d: fit_lstsq(x, y, d - 1) if d > 0 else fit_lstsq(x, y, 0)[:0], "coefficient is missing"),
    (lambda x, y, d: fit_lstsq(x, y, d) * 1.01, "not the least-squares"),
    (lambda x, y, d: np.linalg.lstsq(pf_reference(x, d), y, rcond=None), "whole result of a least-squares solver"),
])
def test_ex12_mistakes(fn, hint, seed):
    assert_fails("ex1.2", fn, hint, seed)


def fit_polyfit(x, y, d):
    return np.polyfit(x, y, d)[::-1]


def fit_np_polynomial(x, y, d):
    from numpy.polynomial import polynomial as P
    return P.polyfit(x, y, d)


def fit_polynomial_class(x, y, d):
    from numpy.polynomial import Polynomial
    return Polynomial.fit(x, y, d).convert().coef


def fit_sklearn(x, y, d):
    from sklearn.linear_model import LinearRegression
    m = LinearRegression(fit_intercept=False).fit(pf_reference(x, d), y)
    return m.coef_


@pytest.mark.parametrize("fn,name", [(fit_polyfit, "numpy.polyfit"),
                                     (fit_np_polynomial, "polyfit"),
                                     (fit_polynomial_class, "Polynomial.fit"),
                                     (fit_sklearn, "LinearRegression")])
def test_ex12_library_shortcuts_are_refused(fn, name):
    for seed in (0, 7):
        assert_fails("ex1.2", fn, name, seed)


def test_ex12_modifying_input_fails():
    def centring(x, y, d):
        y -= y.mean()
        return fit_lstsq(x, y, d)
    assert_fails("ex1.2", centring, "changed its inputs", 1)


# ---------------------------------------------------------------- ex1.3
def bv_reference(preds, f_true):
    R = preds.shape[0]
    variance = preds.var(axis=0, ddof=1).mean()
    return float(np.mean((preds.mean(axis=0) - f_true) ** 2) - variance / R), float(variance)


def bv_loops(preds, f_true):
    """Plain Python loops over points and fits."""
    R, n = len(preds), len(preds[0])
    b_sum = v_sum = 0.0
    for i in range(n):
        column = [preds[r][i] for r in range(R)]
        avg = sum(column) / R
        s2 = sum((c - avg) ** 2 for c in column) / (R - 1)
        v_sum += s2
        b_sum += (avg - f_true[i]) ** 2 - s2 / R
    return float(b_sum / n), float(v_sum / n)


def bv_torch64(preds, f_true):
    P, f = torch.from_numpy(preds), torch.from_numpy(f_true)     # shares memory: read only
    s2 = P.var(dim=0, unbiased=True)
    return (((P.mean(0) - f) ** 2 - s2 / P.shape[0]).mean().item(), s2.mean().item())


def bv_torch32(preds, f_true):
    P = torch.tensor(preds, dtype=torch.float32)
    f = torch.tensor(f_true, dtype=torch.float32)
    R = P.shape[0]
    s2 = ((P - P.mean(0)) ** 2).sum(0) / (R - 1)
    return ((P.mean(0) - f).pow(2).mean() - s2.mean() / R).item(), s2.mean().item()


def bv_numpy_scalars(preds, f_true):
    """np.float64 results (not cast to float), ddof=0 variance rescaled, correction per point."""
    R = preds.shape[0]
    s2 = np.var(preds, axis=0) * R / (R - 1)
    return np.mean(np.square(np.mean(preds, 0) - f_true) - s2 / R), np.mean(s2)


def bv_statistics(preds, f_true):
    """The standard library's statistics module, column by column."""
    import statistics
    cols = list(zip(*preds.tolist()))
    s2 = [statistics.variance(c) for c in cols]
    R = len(preds)
    raw = [(statistics.fmean(c) - t) ** 2 for c, t in zip(cols, f_true.tolist())]
    v = statistics.fmean(s2)
    return statistics.fmean(raw) - v / R, v


BV_CORRECT = [bv_reference, bv_loops, bv_torch64, bv_torch32, bv_numpy_scalars, bv_statistics]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn", BV_CORRECT)
def test_ex13_correct(fn, seed):
    v = verdict("ex1.3", fn, seed)
    assert v.passed, v.text()


def _bv_parts(preds, f_true):
    R, n = preds.shape
    m = preds.mean(axis=0)
    return R, n, m, preds.var(axis=0, ddof=1), preds.var(axis=0), (m - f_true) ** 2


def bv_no_correction(preds, f_true):
    *_, s2, _, raw = _bv_parts(preds, f_true)
    return float(raw.mean()), float(s2.mean())


def bv_ddof0(preds, f_true):
    R, *_, s2_0, raw = _bv_parts(preds, f_true)
    return float(raw.mean() - s2_0.mean() / R), float(s2_0.mean())


def bv_ddof0_in_correction(preds, f_true):
    R, *_, s2, s2_0, raw = _bv_parts(preds, f_true)
    return float(raw.mean() - s2_0.mean() / R), float(s2.mean())


def bv_clipped(preds, f_true):
    b, v = bv_reference(preds, f_true)
    return max(b, 0.0), v


def bv_clipped_per_point(preds, f_true):
    R, *_, s2, _, raw = _bv_parts(preds, f_true)
    return float(np.maximum(raw - s2 / R, 0).mean()), float(s2.mean())


def bv_wrong_axis(preds, f_true):
    """Everything along axis 1 (as if preds were (n, R)): crashes when R != n."""
    n_fits = preds.shape[1]
    spread = preds.var(axis=1, ddof=1).mean()
    return float(np.mean((preds.mean(axis=1) - f_true) ** 2) - spread / n_fits), float(spread)


def bv_variance_across_points(preds, f_true):
    b, _ = bv_reference(preds, f_true)
    return b, float(preds.var(axis=1, ddof=1).mean())


def bv_pooled(preds, f_true):
    b, _ = bv_reference(preds, f_true)
    return b, float(np.var(preds, ddof=1))


def bv_std(preds, f_true):
    R, *_, s2, _, raw = _bv_parts(preds, f_true)
    return float(raw.mean() - s2.mean() / R), float(np.sqrt(s2).mean())


def bv_per_point(preds, f_true):
    R, *_, s2, _, raw = _bv_parts(preds, f_true)
    return raw - s2 / R, s2


def bv_0d_tensor(preds, f_true):
    b, v = bv_reference(preds, f_true)
    return torch.tensor(b, dtype=torch.float32), torch.tensor(v, dtype=torch.float32)


def bv_shape1(preds, f_true):
    b, v = bv_reference(preds, f_true)
    return np.array([b]), np.array([v])


def bv_float32_scalar(preds, f_true):
    b, v = bv_reference(preds, f_true)
    return np.float32(b), np.float32(v)


def bv_in_place(preds, f_true):
    R = preds.shape[0]
    preds -= f_true                              # errors in place: the caller's array changes
    s2 = preds.var(axis=0, ddof=1)
    return float(np.mean(preds.mean(axis=0) ** 2) - s2.mean() / R), float(s2.mean())


def bv_swapped(preds, f_true):
    return bv_reference(preds, f_true)[::-1]


def bv_plus(preds, f_true):
    R, *_, s2, _, raw = _bv_parts(preds, f_true)
    return float(raw.mean() + s2.mean() / R), float(s2.mean())


def bv_over_n(preds, f_true):
    R, n, _, s2, _, raw = _bv_parts(preds, f_true)
    return float(raw.mean() - s2.mean() / n), float(s2.mean())


def bv_over_r_minus_1(preds, f_true):
    R, *_, s2, _, raw = _bv_parts(preds, f_true)
    return float(raw.mean() - s2.mean() / (R - 1)), float(s2.mean())


def bv_whole_variance(preds, f_true):
    *_, s2, _, raw = _bv_parts(preds, f_true)
    return float(raw.mean() - s2.mean()), float(s2.mean())


def bv_mse_as_bias(preds, f_true):
    _, v = bv_reference(preds, f_true)
    return float(np.mean((preds - f_true) ** 2)), v


def bv_absolute(preds, f_true):
    R, _, m, s2, _, _ = _bv_parts(preds, f_true)
    return float(np.mean(np.abs(m - f_true))), float(s2.mean())


def bv_square_of_mean_error(preds, f_true):
    R, _, m, s2, _, _ = _bv_parts(preds, f_true)
    return float(np.mean(m - f_true) ** 2 - s2.mean() / R), float(s2.mean())


def bv_variance_of_mean(preds, f_true):
    b, v = bv_reference(preds, f_true)
    return b, v / preds.shape[0]


def bv_summed(preds, f_true):
    b, _ = bv_reference(preds, f_true)
    return b, float(preds.var(axis=0, ddof=1).sum())


def bv_around_truth(preds, f_true):
    b, _ = bv_reference(preds, f_true)
    return b, float(np.mean((preds - f_true) ** 2))


BV_MISTAKES = [
    (bv_no_correction, "with no correction"),
    (bv_ddof0, "ddof=0 variance (divided by R)"),
    (bv_ddof0_in_correction, "correction of bias2 uses the ddof=0 variance"),
    (bv_clipped, "clipped at 0. "),
    (bv_clipped_per_point, "clipped at 0 point by point"),
    (bv_variance_across_points, "across the points of each fit (axis 1)"),
    (bv_pooled, "pools all R x n predictions"),
    (bv_std, "standard deviation"),
    (bv_per_point, "one value per point"),
    (bv_0d_tensor, "`.item()`"),
    (bv_shape1, "`.item()`"),
    (bv_float32_scalar, "NumPy float32 scalar"),
    (bv_in_place, "changed preds or f_true"),
    (bv_swapped, "swapped"),
    (bv_plus, "wrong sign"),
    (bv_over_n, "number of points n"),
    (bv_over_r_minus_1, "divides by R - 1"),
    (bv_whole_variance, "whole variance of one fit"),
    (bv_mse_as_bias, "mean squared error of the fits"),
    (bv_absolute, "absolute distance"),
    (bv_square_of_mean_error, "squares the error averaged over the points"),
    (bv_variance_of_mean, "R times too small"),
    (bv_summed, "summed over the points"),
    (bv_around_truth, "spread of the fits around f_true"),
    (lambda p, f: bv_reference(p, f)[0], "pair (bias2, variance)"),
    (lambda p, f: np.array(bv_reference(p, f)), "one numpy array of two values"),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn,hint", BV_MISTAKES)
def test_ex13_mistakes(fn, hint, seed):
    assert_fails("ex1.3", fn, hint, seed)


def test_ex13_wrong_axis_crash_names_the_axis():
    """Statistics along axis 1 broadcast R values against n: an error whose hint names the axis."""
    for seed in SEEDS:
        v = verdict("ex1.3", bv_wrong_axis, seed)
        assert v.status == "error" and "across the fits at each point (axis 0)" in v.message, v.text()


def test_ex13_right_up_to_dtype_is_told_so():
    v = verdict("ex1.3", bv_0d_tensor, 3)
    assert "its value is right" in v.message and "0-d float32 torch tensor" in v.message, v.text()


def test_ex13_cases_cover_the_edges():
    """R from 2 to 500 and n from 1 (DESIGN.md's settled edges); one case whose unbiased bias²
    is negative, so that clipping at 0 is told apart; every case separates the known mistakes."""
    from helpers.checks.lesson01 import _bv_cases, _bv_reference, _bv_separated

    for seed in list(range(40)) + SEEDS:
        cases = _bv_cases(seed)
        shapes = [p.shape for _, p, _ in cases]
        assert min(r for r, _ in shapes) == 2 and max(r for r, _ in shapes) == 500
        assert min(n for _, n in shapes) == 1
        assert any(_bv_reference(p, f)[0] < 0 for _, p, f in cases)
        assert all(_bv_separated(p, f) for _, p, f in cases)


def test_ex13_published_record_is_judged_with_the_grader_seed():
    """The cases change with the seed, so a replay of seed 0's answers fails elsewhere."""
    from helpers.checks.lesson01 import _bv_cases
    a, b = _bv_cases(0), _bv_cases(1)
    assert not np.allclose(a[0][1], b[0][1])


# ---------------------------------------------------------------- ex1.4
def every_kth(idx, k):
    """The k folds: every k-th point, starting at 0, 1, ..., k - 1."""
    return [idx[i::k] for i in range(k)]


def held_out_sq_errors(x, y, d, train, held):
    """Fit on ``train``, squared errors on ``held``."""
    c = fit_lstsq(x[train], y[train], d)
    return (pf_reference(x[held], d) @ c - y[held]) ** 2


def k_fold_cv(x, y, degrees, k, folds=every_kth, sq_errors=held_out_sq_errors, pooled=False):
    """k-fold cross-validation (``cv_reference``); each mistake below replaces one piece of it:
    the folds, the errors of one fold, or how the folds are averaged (``pooled``: the mean of all
    squared errors together, which weights the folds by their size)."""
    idx = np.arange(len(x))
    cv = []
    for d in degrees:
        errs = [sq_errors(x, y, d, np.setdiff1d(idx, held), held) for held in folds(idx, k)]
        cv.append(float(np.mean(np.concatenate(errs)) if pooled else np.mean([np.mean(e) for e in errs])))
    return degrees[int(np.argmin(cv))], np.array(cv)


def cv_reference(x, y, degrees, k):
    return k_fold_cv(x, y, degrees, k)


def cv_polyfit_masks(x, y, degrees, k):
    # boolean masks, np.polyfit, a list back, min() over pairs
    n = len(x)
    cv = []
    for d in degrees:
        total = 0.0
        for i in range(k):
            held = np.zeros(n, dtype=bool)
            held[i::k] = True
            c = np.polyfit(x[~held], y[~held], d)
            total += np.mean((np.polyval(c, x[held]) - y[held]) ** 2)
        cv.append(total / k)
    best = min(zip(cv, range(len(degrees))))[1]
    return degrees[best], cv


def cv_torch_float32(x, y, degrees, k):
    X = torch.tensor(x, dtype=torch.float32)
    Y = torch.tensor(y, dtype=torch.float32)
    fold = torch.arange(len(x)) % k
    out = []
    for d in degrees:
        V = X[:, None] ** torch.arange(d + 1)
        errs = []
        for i in range(k):
            tr, te = fold != i, fold == i
            c = torch.linalg.lstsq(V[tr], Y[tr][:, None]).solution[:, 0]
            errs.append(((V[te] @ c - Y[te]) ** 2).mean())
        out.append(torch.stack(errs).mean())
    out = torch.stack(out)
    return degrees[int(torch.argmin(out))], out


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn", [cv_reference, cv_polyfit_masks, cv_torch_float32])
def test_ex14_correct(fn, seed):
    assert verdict("ex1.4", fn, seed).passed


def cv_contiguous(x, y, degrees, k):
    return k_fold_cv(x, y, degrees, k, folds=lambda idx, k: np.array_split(idx, k))


def cv_pooled(x, y, degrees, k):
    return k_fold_cv(x, y, degrees, k, pooled=True)


def cv_fitting_error(x, y, degrees, k):
    def train_sq_errors(x, y, d, train, held):
        c = fit_lstsq(x[train], y[train], d)
        return (pf_reference(x[train], d) @ c - y[train]) ** 2
    return k_fold_cv(x, y, degrees, k, sq_errors=train_sq_errors)


def cv_too_few_coefficients(x, y, degrees, k):
    def vander_sq_errors(x, y, d, train, held):
        # np.vander(x, d) has d columns: a degree d - 1 polynomial
        V = np.vander(x, d, increasing=True)
        c = np.linalg.lstsq(V[train], y[train], rcond=None)[0]
        return (V[held] @ c - y[held]) ** 2
    return k_fold_cv(x, y, degrees, k, sq_errors=vander_sq_errors)


def cv_too_many_coefficients(x, y, degrees, k):
    best, cv = cv_reference(x, y, [d + 1 for d in degrees], k)
    return best - 1, cv


def cv_returns_index(x, y, degrees, k):
    _, cv = cv_reference(x, y, degrees, k)
    return int(np.argmin(cv)), cv


def cv_off_by_one(x, y, degrees, k):
    best, cv = cv_reference(x, y, degrees, k)
    return best + 1, cv


def cv_last_on_ties(x, y, degrees, k):
    _, cv = cv_reference(x, y, degrees, k)
    best = None
    for d, e in zip(degrees, cv):
        if best is None or e <= best[1]:
            best = (d, e)
    return best[0], cv


def cv_sum_of_folds(x, y, degrees, k):
    best, cv = cv_reference(x, y, degrees, k)
    return best, cv * k


def cv_smallest_on_ties(x, y, degrees, k):
    _, cv = cv_reference(x, y, degrees, k)
    return min(d for d, e in zip(degrees, cv) if e == cv.min()), cv


def cv_largest_on_ties(x, y, degrees, k):
    _, cv = cv_reference(x, y, degrees, k)
    return max(d for d, e in zip(degrees, cv) if e == cv.min()), cv


def cv_sorted_degrees(x, y, degrees, k):
    """Works through the degrees in ascending order and reports them in that order."""
    return cv_reference(x, y, sorted(degrees), k)


def cv_sorts_degrees_in_place(x, y, degrees, k):
    degrees.sort()
    return cv_reference(x, y, degrees, k)


def cv_highest(x, y, degrees, k):
    _, cv = cv_reference(x, y, degrees, k)
    return degrees[int(np.argmax(cv))], cv


def cv_sklearn(x, y, degrees, k):
    """scikit-learn's cross_val_score with the interleaved folds: the right numbers, refused."""
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import cross_val_score
    idx = np.arange(len(x))
    folds = [(np.setdiff1d(idx, idx[i::k]), idx[i::k]) for i in range(k)]
    cv = np.array([-cross_val_score(LinearRegression(fit_intercept=False), pf_reference(x, d), y,
                                    cv=folds, scoring="neg_mean_squared_error").mean()
                   for d in degrees])
    return degrees[int(np.argmin(cv))], cv


def cv_sklearn_cross_validate(x, y, degrees, k):
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import cross_validate
    idx = np.arange(len(x))
    folds = [(np.setdiff1d(idx, idx[i::k]), idx[i::k]) for i in range(k)]
    cv = np.array([-cross_validate(LinearRegression(fit_intercept=False), pf_reference(x, d), y,
                                   cv=folds, scoring="neg_mean_squared_error")["test_score"].mean()
                   for d in degrees])
    return degrees[int(np.argmin(cv))], cv


@pytest.mark.parametrize("fn,name", [(cv_sklearn, "sklearn.model_selection.cross_"),
                                     (cv_sklearn_cross_validate, "cross_validate")])
def test_ex14_library_shortcuts_are_refused(fn, name):
    # cross_val_score runs through cross_validate; core may name either of them
    for seed in (0, 7):
        assert_fails("ex1.4", fn, name, seed)


def test_ex14_ties_with_unsorted_degrees():
    """A tie case whose degrees are not ascending tells 'the first in degrees' from 'the
    smallest' (and from 'the largest' and 'the last')."""
    from helpers.checks.lesson01 import _cv_cases
    for seed in SEEDS:
        ties = [c for c in _cv_cases(seed) if not np.any(c[2])]
        assert any(list(c[3]) != sorted(c[3]) and c[3][0] not in (min(c[3]), max(c[3]))
                   and c[3][-1] != min(c[3]) for c in ties)
        assert_fails("ex1.4", cv_smallest_on_ties, "smallest tied degree", seed)
        assert_fails("ex1.4", cv_largest_on_ties, "largest tied degree", seed)
        assert verdict("ex1.4", cv_reference, seed).passed


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn,hint", [
    (cv_contiguous, "contiguous blocks"),
    (cv_pooled, "weighted the folds by their size"),
    (cv_fitting_error, "errors on the points each polynomial was fitted to"),
    (cv_too_few_coefficients, "one coefficient too few"),
    (cv_too_many_coefficients, "one coefficient too many"),
    (cv_returns_index, "position of the lowest value"),
    (cv_off_by_one, "off by one from the degree"),
    (cv_last_on_ties, "first of them"),
    (cv_sum_of_folds, "sum of the fold MSEs"),
    (cv_sorted_degrees, "ascending order of degree"),
    (cv_sorts_degrees_in_place, "changed the list `degrees`"),
    (cv_highest, "*highest*"),
    (lambda x, y, degrees, k: cv_reference(x, y, degrees, k)[1], "pair (best_degree, cv_mse)"),
    (lambda x, y, degrees, k: (cv_reference(x, y, degrees, k)[0], cv_reference(x, y, degrees, k)[1][:-1]),
     "one per entry of degrees"),
])
def test_ex14_mistakes(fn, hint, seed):
    assert_fails("ex1.4", fn, hint, seed)


def test_ex14_off_by_one_is_not_called_fitting_error():
    """Issue 14: the right cv_mse with an off-by-one degree was once told it used the fitting error."""
    for seed in SEEDS:
        v = verdict("ex1.4", cv_off_by_one, seed)
        assert "cv_mse is right" in v.message and "fitted to" not in v.message, v.text()


def test_ex14_modifying_input_fails():
    def sorting(x, y, degrees, k):
        order = np.argsort(x)
        x[:], y[:] = x[order], y[order]
        return cv_reference(x, y, degrees, k)
    assert_fails("ex1.4", sorting, "changed x or y", 1)


# ---------------------------------------------------------------- every sentence is enforced
REQUIREMENTS = {
    "ex1.1": [
        ("return the (n, degree + 1) array", lambda x, d: pf_reference(x, d)[:, 1:], "constant column"),
        ("... up to degree inclusive, no further", lambda x, d: pf_reference(x, d + 1), "no further"),
        ("column j is x**j", lambda x, d: pf_reference(x, d)[:, ::-1], "reverse order"),
        ("column j is x**j (values)", lambda x, d: np.stack([x * j for j in range(d + 1)], 1),
         "Column j must be x**j"),
        ("one row per value of x", lambda x, d: pf_reference(x, d).T, "transpose"),
        ("Do not modify x", lambda x, d: (x.__imul__(2.0), pf_reference(x / 2, d))[1],
         "changed its input"),
        ("np.vander is refused", pf_vander, "numpy.vander"),
        ("polyvander is refused", pf_polyvander, "polyvander"),
        ("PolynomialFeatures is refused", pf_sklearn, "PolynomialFeatures"),
    ],
    "ex1.2": [
        ("shape (degree + 1,)", lambda x, y, d: fit_lstsq(x, y, d)[:-1], "coefficient is missing"),
        ("lowest power first", lambda x, y, d: fit_lstsq(x, y, d)[::-1], "reverse order"),
        ("minimise ||V c - y||^2", lambda x, y, d: fit_lstsq(x, y, d) * 1.01, "not the least-squares"),
        ("Do not modify x or y", lambda x, y, d: (y.__isub__(y.mean()), fit_lstsq(x, y, d))[1],
         "changed its inputs"),
        ("np.polyfit is refused", fit_polyfit, "numpy.polyfit"),
        ("np.polynomial.polynomial.polyfit is refused", fit_np_polynomial, "polyfit"),
        ("Polynomial.fit is refused", fit_polynomial_class, "Polynomial.fit"),
        ("LinearRegression is refused", fit_sklearn, "LinearRegression"),
    ],
    "ex1.3": [
        ("row r holds the predictions of the r-th fit (statistics across the fits)",
         bv_variance_across_points, "across the points of each fit (axis 1)"),
        ("R >= 2 (R = 2 works: the correction divides by R)", bv_over_r_minus_1, "divides by R - 1"),
        ("Return the pair (bias2, variance)", lambda p, f: bv_reference(p, f)[0], "pair (bias2, variance)"),
        ("(bias2, variance) in that order", bv_swapped, "swapped"),
        ("two Python floats: not an array", lambda p, f: np.array(bv_reference(p, f)),
         "one numpy array of two values"),
        ("two Python floats: not a tensor", bv_0d_tensor, "`.item()`"),
        ("two Python floats: not a shape-(1,) array", bv_shape1, "`.item()`"),
        ("a NumPy float64 is fine, float32 is not", bv_float32_scalar, "NumPy float32 scalar"),
        ("variance: the sample variance of its R predictions", bv_around_truth,
         "spread of the fits around f_true"),
        ("variance: denominator R - 1 (ddof=1)", bv_ddof0, "ddof=0 variance (divided by R)"),
        ("variance: a variance, not a standard deviation", bv_std, "standard deviation"),
        ("variance: of one fit's predictions", bv_variance_of_mean, "R times too small"),
        ("variance: averaged over the n inputs", bv_summed, "summed over the points"),
        ("variance: one number, not one per input", bv_per_point, "one value per point"),
        ("variance: per input, not pooled", bv_pooled, "pools all R x n predictions"),
        ("bias2: squared difference", bv_absolute, "absolute distance"),
        ("bias2: between the average of its R predictions and f_true", bv_mse_as_bias,
         "mean squared error of the fits"),
        ("bias2: at each input, then averaged", bv_square_of_mean_error,
         "squares the error averaged over the points"),
        ("bias2: corrected", bv_no_correction, "with no correction"),
        ("bias2: subtract the extra term", bv_plus, "wrong sign"),
        ("bias2: the variance of an average of R predictions (R, not n)", bv_over_n,
         "number of points n"),
        ("bias2: the variance of an average (not of one prediction)", bv_whole_variance,
         "whole variance of one fit"),
        ("bias2: unbiased (the ddof=1 variance in the correction)", bv_ddof0_in_correction,
         "correction of bias2 uses the ddof=0 variance"),
        ("bias2: may be negative, return it as it is (no clipping)", bv_clipped, "clipped at 0. "),
        ("bias2: no clipping at any input", bv_clipped_per_point, "clipped at 0 point by point"),
        ("Do not modify preds or f_true", bv_in_place, "changed preds or f_true"),
    ],
    "ex1.4": [
        ("interleaved folds: fold i holds positions i, i + k, ...", cv_contiguous, "contiguous blocks"),
        ("fit on the other folds, MSE on the held-out fold", cv_fitting_error,
         "errors on the points each polynomial was fitted to"),
        ("a polynomial of degree d (d + 1 coefficients)", cv_too_few_coefficients, "one coefficient too few"),
        ("each fold counts once", cv_pooled, "weighted the folds by their size"),
        ("the average of its k fold MSEs", cv_sum_of_folds, "sum of the fold MSEs"),
        ("Return (best_degree, cv_mse)", lambda x, y, degrees, k: cv_reference(x, y, degrees, k)[1],
         "pair (best_degree, cv_mse)"),
        ("cv_mse[j] is the score of degrees[j]", cv_sorted_degrees, "ascending order of degree"),
        ("one cv_mse value per degree", lambda x, y, degrees, k: (cv_reference(x, y, degrees, k)[0],
                                                                  cv_reference(x, y, degrees, k)[1][:-1]),
         "one per entry of degrees"),
        ("best_degree: the degree (not its position)", cv_returns_index, "position of the lowest value"),
        ("best_degree: the lowest value", cv_highest, "*highest*"),
        ("on a tie, the first in the order of degrees (not the last)", cv_last_on_ties, "you took the last"),
        ("on a tie, the first in the order of degrees (not the smallest)", cv_smallest_on_ties,
         "smallest tied degree"),
        ("Do not modify x, y", lambda x, y, degrees, k: (x.sort(), cv_reference(x, y, degrees, k))[1],
         "changed x or y"),
        ("Do not modify the list degrees", cv_sorts_degrees_in_place, "changed the list `degrees`"),
        ("cross_val_score is refused", cv_sklearn, "sklearn.model_selection.cross_"),
        ("cross_validate is refused", cv_sklearn_cross_validate, "cross_validate"),
    ],
}


@pytest.mark.parametrize("ex,sentence,fn,hint", [
    pytest.param(ex, sentence, fn, hint, id=f"{ex}: {sentence}")
    for ex, rows in REQUIREMENTS.items() for sentence, fn, hint in rows])
def test_every_requirement_is_enforced(ex, sentence, fn, hint):
    """Each requirement the exercise text states: an answer breaking only it fails, at
    several seeds, with the hint that names it."""
    for seed in (0, 1, 12345):
        v = verdict(ex, fn, seed)
        assert v.status == "failed" and hint in v.message, (sentence, seed, v.text())


def test_requirements_cover_every_exercise():
    assert set(REQUIREMENTS) == {"ex1.1", "ex1.2", "ex1.3", "ex1.4"}


# ---------------------------------------------------------------- unseen seeds, hints
@pytest.mark.parametrize("ex,fn", [("ex1.1", pf_reference), ("ex1.2", fit_lstsq),
                                   ("ex1.3", bv_reference), ("ex1.4", cv_reference)])
def test_hard_coded_published_outputs_fail_at_another_seed(ex, fn):
    answer, it = hard_coded(ex, fn)
    assert run(ex, answer, seed=PUBLISHED_SEED)[0].passed
    it["i"] = 0
    assert not run(ex, answer, seed=1)[0].passed


def test_hints_do_not_contain_the_reference_expression():
    """Scans every failure message of the mistake lists (run here, at two seeds) and any other
    message the tests of this module produced before it."""
    assert_hints_hide(REFERENCE, own_hints(globals()) + HINTS)


# ---------------------------------------------------------------- stubs and crashes
def test_stub_reports_error_with_hint():
    def stub(x, degree):
        raise NotImplementedError("ex1.1: write your answer here")
    v = verdict("ex1.1", stub)
    # core reports the untouched stub as `missing` ("not answered yet"); it was an error before
    assert v.status == "missing" and "NotImplementedError" in v.message, v.text()


def test_crash_reports_where():
    def crash(x, y, d):
        return x @ y @ d
    v = verdict("ex1.2", crash)
    assert v.status == "error" and "raised" in v.message


# ---------------------------------------------------------------- the PolynomialExplorer
# The lesson displays ``widgets.polynomial_explorer(curve, max_degree=12, degree=9)``; moving
# the degree or the log10 λ slider must refit and change the train/test MSE shown in
# ``numbers`` and redraw the plot in the ``plot`` Output widget. Two ways in: a real IPython
# kernel through nbclient (the front end's part: an Output widget's contents are only captured
# by a front end), and plain Python (no kernel).

CURVE = "data.noisy_sine(n_train=10, n_test=200, noise=0.25, seed=0)"   # the lesson's data

SNAPSHOT = '''
import json
def _snap(ex):
    return {"degree": ex.degree.value, "log10_lambda": ex.log10_lambda.value, "lam": ex.lam,
            "train": ex.train_mse, "test": ex.test_mse, "html": ex.numbers.value,
            "plot_id": ex.plot.model_id, "numbers_id": ex.numbers.model_id}
'''


def _png_outputs(outputs) -> list[str]:
    return [o["data"]["image/png"] for o in outputs
            if o.get("output_type") in ("display_data", "execute_result")
            and "image/png" in o.get("data", {})]


def _snap_from(cell) -> dict:
    text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream"
                   and o.get("name") == "stdout")
    line = [ln for ln in text.splitlines() if ln.startswith("SNAP ")]
    assert line, f"cell printed no snapshot; outputs: {cell.outputs}"
    return json.loads(line[-1][len("SNAP "):])


def _check_mse_behaviour(start: dict, d9: dict, d9_ridge: dict, d3: dict) -> None:
    """What the lesson's text claims about the explorer (markdown before the widget cell)."""
    assert start["degree"] == 9 and start["lam"] == 0.0
    assert start["train"] < 1e-6, start
    assert start["test"] > 10.0, start                    # wild swings between the points
    assert d3["train"] < 0.1 and d3["test"] < 0.2, d3
    assert d3["test"] < start["test"] / 100
    assert d9["degree"] == 9 and d9["train"] == pytest.approx(start["train"], abs=1e-9)
    assert d9["test"] == pytest.approx(start["test"], rel=1e-9)
    assert d9_ridge["lam"] == pytest.approx(10 ** d9_ridge["log10_lambda"])
    assert d9_ridge["test"] < d9["test"] / 10, (d9, d9_ridge)
    assert d9_ridge["train"] > d9["train"] + 1e-3, (d9, d9_ridge)
    for s in (start, d3, d9_ridge):
        assert f"<span class='train-mse'>{s['train']:.4f}</span>" in s["html"]
        assert f"<span class='test-mse'>{s['test']:.4f}</span>" in s["html"]
        assert f"degree {s['degree']}" in s["html"]
    assert len({start["html"], d3["html"], d9_ridge["html"]}) == 3


def test_polynomial_explorer_in_a_kernel(tmp_path):
    """Build the lesson's explorer in a kernel, move both sliders from Python, read back."""
    cells = [
        "%matplotlib inline\nfrom helpers import data, widgets\n" + SNAPSHOT
        + f"curve = {CURVE}\n"
        "explorer = widgets.polynomial_explorer(curve, max_degree=12, degree=9)\n"
        "print('SNAP', json.dumps(_snap(explorer)))\n"
        "explorer",
        "explorer.degree.value = 3\nprint('SNAP', json.dumps(_snap(explorer)))",
        "explorer.degree.value = 9\nprint('SNAP', json.dumps(_snap(explorer)))",
        "explorer.log10_lambda.value = -2.0\nprint('SNAP', json.dumps(_snap(explorer)))",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = NotebookClient(nb, kernel_name="python3", timeout=300,
                            resources={"metadata": {"path": str(tmp_path)}})
    snaps, plots = [], []
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            client.execute_cell(cell, i)
            errors = [o for o in cell.outputs if o.get("output_type") == "error"]
            assert not errors, f"cell {i} raised: {errors[0]['ename']}: {errors[0]['evalue']}"
            snap = _snap_from(cell)
            snaps.append(snap)
            plot_state = client.widget_state.get(snap["plot_id"], {})
            plots.append(_png_outputs(plot_state.get("outputs", [])))
    start, d3, d9, d9_ridge = snaps

    views = [o for o in nb.cells[0].outputs
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 1, nb.cells[0].outputs

    _check_mse_behaviour(start, d9, d9_ridge, d3)

    assert [len(p) for p in plots] == [1, 1, 1, 1], [len(p) for p in plots]
    assert plots[0][0] != plots[1][0]                     # degree 9 -> degree 3
    assert plots[3][0] != plots[2][0]                     # λ raised at degree 9
    numbers = client.widget_state.get(start["numbers_id"], {})
    assert numbers.get("value") == d9_ridge["html"]


def test_polynomial_explorer_in_plain_python():
    """No kernel, non-interactive backend: the explorer still computes and shows its numbers
    (``update()`` once called ``plt.show(fig)``, which only the inline backend tolerates)."""
    from helpers import data, widgets

    previous = matplotlib.get_backend()
    matplotlib.use("Agg", force=True)
    try:
        curve = eval(CURVE, {"data": data})
        ex = widgets.polynomial_explorer(curve, max_degree=12, degree=9)

        def snap():
            return {"degree": ex.degree.value, "log10_lambda": ex.log10_lambda.value,
                    "lam": ex.lam, "train": ex.train_mse, "test": ex.test_mse,
                    "html": ex.numbers.value}

        start = snap()
        ex.degree.value = 3
        d3 = snap()
        ex.degree.value = 9
        d9 = snap()
        ex.log10_lambda.value = -2.0
        d9_ridge = snap()
        _check_mse_behaviour(start, d9, d9_ridge, d3)
    finally:
        import matplotlib.pyplot as plt

        plt.close("all")
        matplotlib.use(previous, force=True)


# ---------------------------------------------------------------- the shared experiment
def test_sixty_sample_experiment_shape_and_summary():
    """helpers.experiments.sixty_sample_experiment (lesson 01 runs it, lesson 03 refers to it):
    one paired result per seed, a summary with mean ± sd (ddof=1) and the count of wins."""
    from helpers.experiments import sixty_sample_experiment

    r = sixty_sample_experiment(seeds=[0, 1, 2], epochs=3, n_val=50)
    assert r.val_acc_plain.shape == r.val_acc_dropout.shape == (3,)
    assert np.all((0 <= r.val_acc_plain) & (r.val_acc_plain <= 1))
    np.testing.assert_allclose(r.difference, r.val_acc_dropout - r.val_acc_plain)
    text = r.summary()
    sd = r.val_acc_plain.std(ddof=1)
    assert f"{r.val_acc_plain.mean():.3f} ± {sd:.3f}" in text and "of 3 seeds" in text
    again = sixty_sample_experiment(seeds=[0, 1, 2], epochs=3, n_val=50)
    np.testing.assert_array_equal(again.val_acc_dropout, r.val_acc_dropout)   # reproducible


def test_bias_variance_experiment():
    """helpers.experiments.bias_variance_experiment (lesson 01's section 2): one number per
    degree, reproducible, the decomposition close to the measured test MSE, degree 1 dominated
    by bias² and a high degree by variance; its signature is not ex1.3's (it draws its own
    training sets), so it cannot be planted as the answer."""
    import inspect

    from helpers.experiments import bias_variance_experiment

    r = bias_variance_experiment([1, 3, 7], n_sets=60, n_points=25, seed=3)
    assert r.bias2.shape == r.variance.shape == r.measured.shape == (3,)
    assert r.bias2[0] > r.variance[0] and r.variance[2] > r.variance[1]
    np.testing.assert_allclose(r.predicted, r.bias2 + r.variance + 0.25 ** 2)
    np.testing.assert_allclose(r.predicted[:2], r.measured[:2], rtol=0.15)
    again = bias_variance_experiment([1, 3, 7], n_sets=60, n_points=25, seed=3)
    np.testing.assert_array_equal(again.bias2, r.bias2)
    params = inspect.signature(bias_variance_experiment).parameters
    assert [p for p in params.values() if p.default is inspect.Parameter.empty] == [params["degrees"]]
    assert verdict("ex1.3", lambda p, f: bias_variance_experiment(p)).status != "passed"


def test_bias_variance_standard_errors_are_the_jackknife():
    """The Monte-Carlo standard errors lesson 01 prints: bias² and variance by the jackknife over
    the training sets (the closed-form leave-one-out equals recomputing without each set), the
    measured MSE as sd / sqrt(R)."""
    from helpers.experiments import _jackknife_bias_variance_se, bias_variance_experiment

    rng = np.random.default_rng(5)
    preds = rng.standard_normal((12, 7)) * 2.0 + 0.3
    truth = rng.standard_normal(7)
    R = preds.shape[0]

    def estimate(p):
        variance = p.var(axis=0, ddof=1).mean()
        return np.mean((p.mean(axis=0) - truth) ** 2) - variance / len(p), variance

    loo = np.array([estimate(np.delete(preds, r, axis=0)) for r in range(R)])
    expected = np.sqrt((R - 1) / R * np.sum((loo - loo.mean(axis=0)) ** 2, axis=0))
    np.testing.assert_allclose(_jackknife_bias_variance_se(preds, truth), expected, rtol=1e-10)

    r = bias_variance_experiment([1, 3], n_sets=40, n_points=25, seed=3)
    assert r.bias2_se.shape == r.variance_se.shape == r.measured_se.shape == (2,)
    assert np.all(r.bias2_se > 0) and np.all(r.variance_se > 0) and np.all(r.measured_se > 0)


def test_sixty_sample_counts_ties():
    """Lesson 01's prose counts seeds where dropout was higher, lower and tied: the summary says
    all three, and they add up to the number of seeds."""
    from helpers.experiments import SixtySampleResult

    r = SixtySampleResult([0, 1, 2, 3], np.array([0.8, 0.7, 0.75, 0.9]),
                          np.array([0.81, 0.7, 0.74, 0.9]), np.ones(4))
    assert r.counts() == (1, 1, 2)
    assert "higher in 1 of 4 seeds, lower in 1, tied in 2" in r.summary()


def test_half_precision_results_are_told_right_up_to_dtype():
    def pf_half(x, degree):
        return pf_torch(x, degree).half()

    def cv_half(x, y, degrees, k):
        best, cv = cv_reference(x, y, degrees, k)
        return best, torch.tensor(cv, dtype=torch.float16)

    for seed in (0, 1):
        assert_fails("ex1.1", pf_half, "right up to that dtype", seed)
        assert_fails("ex1.4", cv_half, "right up to that dtype", seed)
