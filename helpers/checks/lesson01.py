"""Checks for lesson 01 (overfitting): ex1.1 polynomial_features, ex1.2 fit_polynomial,
ex1.3 mse and ex1.4 cross_validate_degree.

Every case family is rebuilt from the case seed (``case_rng(seed, salt)``): the probe, in the
learner's kernel, calls the answer on those inputs and returns only what came back; the judge,
in the grader, rebuilds the same inputs from its own seed, computes the NumPy references and
explains a mismatch (``match_mistake`` names the common mistakes). No exercise here draws
random numbers, so none is statistical.

Precision: a learner may compute in float32 (``torch.tensor(x, dtype=torch.float32)``); the
judges accept float32-level agreement. ex1.2 is judged on the fitted values ``V @ c`` (what
least squares determines), not on the coefficients, whose float32 error grows with the
conditioning of ``V``.
"""

from __future__ import annotations

import numpy as np

from helpers.checks.core import (Fail, as_array, as_float, capture, case_rng, changed, close,
                                 exercise, expect_close, match_mistake, max_err, snapshot, unwrap)


def _vander(x, degree):
    return np.vander(np.asarray(x, dtype=np.float64), degree + 1, increasing=True)


def _lstsq(x, y, degree):
    return np.linalg.lstsq(_vander(x, degree), y, rcond=None)[0]


def _probe_cases(fn, cases):
    """Call ``fn`` on each case's inputs (copies); record what came back and whether an
    input array was changed."""
    out = []
    for _label, *args in cases:
        arrays = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        keep = snapshot(*arrays)
        out.append({"result": capture(fn, *arrays),
                    "input_changed": changed(keep, *arrays)})
    return out


# ================================================================== ex1.1 polynomial_features

def _features_cases(seed):
    rng = case_rng(seed, 1101)
    x = np.round(rng.uniform(-2.0, 3.0, 6), 2)
    x[1] = 0.0                                   # 0**0 is 1: the constant column at x = 0
    one = np.round(rng.uniform(0.5, 2.0, 1), 2)
    return [("x of 6 values, degree 3", x, 3),
            ("x of 6 values, degree 5", x, 5),
            ("degree 0", x, 0),
            ("degree 1", x, 1),
            ("a single x value, degree 4", one, 4)]


def probe_features(polynomial_features, seed):
    return _probe_cases(polynomial_features, _features_cases(seed))


def judge_features(data, seed):
    tol = dict(rtol=1e-5, atol=1e-9)             # float32 level
    for (label, x, d), got in zip(_features_cases(seed), data, strict=True):
        ref = _vander(x, d)
        a = as_array(got["result"], "polynomial_features(x, degree)")
        if a.shape == (len(x), d):
            raise Fail(f"{label}: got {d} columns, expected degree+1 = {d + 1}. Include the "
                       "constant column x**0 (all ones) as well as x**1 ... x**degree.")
        if a.shape == (len(x), d + 2):
            raise Fail(f"{label}: got {d + 2} columns, expected degree+1 = {d + 1}: "
                       "the powers run from 0 to degree inclusive, no further.")
        if a.shape == (d + 1, len(x)) and a.shape != ref.shape:
            raise Fail(f"{label}: got shape {a.shape}, expected (n, degree+1) = {ref.shape}: "
                       "one row per sample, one column per power (transpose your result).")
        if got["input_changed"]:
            raise Fail(f"{label}: your function changed its input array x; work on a copy.")
        if a.shape != ref.shape:
            raise Fail(f"{label}: got shape {a.shape}, expected (n, degree+1) = {ref.shape}.")
        mistakes = [(ref[:, ::-1] if d > 0 else None,
                     "the columns are in reverse order. Column j must be x**j: the constant "
                     "column first, the highest power last.")]
        if a.shape[0] == a.shape[1]:
            mistakes.append((ref.T, "rows and columns are swapped: one row per sample, one "
                                    "column per power (transpose your result)."))
        expect_close(label, a, ref, mistakes, "Column j must be x**j for every sample.", **tol)
    return None


exercise("ex1.1", "polynomial_features", probe_features, judge_features)


# ================================================================== ex1.2 fit_polynomial

def _fit_cases(seed):
    rng = case_rng(seed, 1201)
    x1 = np.linspace(-1.0, 1.5, 12)
    c1 = np.round(rng.uniform(-1.5, 1.5, 3), 2)
    y1 = np.polynomial.polynomial.polyval(x1, c1) + 0.05 * rng.standard_normal(12)
    x2 = np.sort(np.round(rng.uniform(-1.0, 2.0, 4), 2)) + np.array([0.0, 0.3, 0.6, 0.9])
    y2 = np.round(rng.uniform(-1.0, 2.0, 4), 2)
    x3 = np.sort(rng.uniform(-1, 1, 15))
    y3 = np.sin(np.pi * x3) + 0.2 * rng.standard_normal(15)
    return [("12 noisy points of a quadratic, degree 2", x1, y1, 2),
            ("4 points, degree 3 (interpolates them exactly)", x2, y2, 3),
            ("15 noisy sine points, degree 5", x3, y3, 5),
            ("degree 0 (the mean)", x3, y3, 0)]


def probe_fit(fit_polynomial, seed):
    return _probe_cases(fit_polynomial, _fit_cases(seed))


def judge_fit(data, seed):
    for (label, x, y, d), got in zip(_fit_cases(seed), data, strict=True):
        V = _vander(x, d)
        ref = _lstsq(x, y, d)
        a = as_array(got["result"], "fit_polynomial(x, y, degree)").reshape(-1)
        if a.shape != ref.shape:
            extra = (" One coefficient is missing: a degree-d polynomial has d+1 coefficients."
                     if a.size == d else "")
            raise Fail(f"{label}: got {a.size} coefficients, expected degree+1 = {d + 1}.{extra}")
        if got["input_changed"]:
            raise Fail(f"{label}: your function changed its inputs; work on copies.")
        # least squares determines the fitted values V @ c; compare those (float32 level)
        scale = float(np.sqrt(np.mean(y ** 2))) + 1e-12
        if max_err(V @ a, V @ ref) <= 1e-4 * scale:
            continue
        match_mistake(label, a, [(ref[::-1] if d > 0 else None,
                                  "the coefficients are in reverse order. Return them lowest "
                                  "power first (np.polyfit returns the highest power first).")],
                      rtol=1e-4, atol=1e-6)
        raise Fail(f"{label}: these are not the least-squares coefficients (largest "
                   f"coefficient difference {max_err(a, ref):.3g}; training MSE "
                   f"{np.mean((V @ a - y) ** 2):.4g} vs the least-squares minimum "
                   f"{np.mean((V @ ref - y) ** 2):.4g}). Minimise ||V c - y||^2 with V "
                   "from polynomial_features.")
    return None


exercise("ex1.2", "fit_polynomial", probe_fit, judge_fit)


# ================================================================== ex1.3 mse

def _mse_cases(seed):
    rng = case_rng(seed, 1301)
    a = rng.standard_normal(9)
    b = a + rng.normal(0.3, 0.7, 9)
    big = np.round(rng.uniform(-100, 100, 4), 1)
    return [("9 values", a, b),
            ("identical arrays", a, a.copy()),
            ("a single value", np.round(rng.uniform(1, 3, 1), 2), np.round(rng.uniform(-3, -1, 1), 2)),
            ("large errors", big, np.array([0.0, 0.0, 0.0, 1.0]))]


def probe_mse(mse, seed):
    return _probe_cases(mse, _mse_cases(seed))


def judge_mse(data, seed):
    for (label, yt, yp), got in zip(_mse_cases(seed), data, strict=True):
        ref = float(np.mean((yt - yp) ** 2))
        v = as_float(got["result"], "mse(y_true, y_pred)")
        tol = dict(rtol=1e-5, atol=1e-9)         # float32 level
        if close(v, ref, **tol):
            continue
        n = len(yt)
        d = yt - yp
        match_mistake(f"{label}: got {v:.6g}", v, [
            (ref * n if n > 1 else None,
             f"which is the *sum* of squared errors. Divide by the number of values ({n}): the "
             "mean keeps the error comparable across data set sizes."),
            (np.sqrt(ref), "the root of the mean squared error (RMSE). Do not take the square root."),
            (float(np.mean(np.abs(d))), "the mean *absolute* error. Square the differences."),
            (float(np.mean(d)) ** 2, "the square of the mean error. Square each difference "
                                     "first, then average."),
        ], **tol)
        raise Fail(f"{label}: got {v:.6g}, expected the mean of (y_true - y_pred)**2 "
                   "over the values.")
    return None


exercise("ex1.3", "mse", probe_mse, judge_mse)


# ================================================================== ex1.4 cross_validate_degree

def _cv(x, y, degrees, k, folds="interleaved", weighted=False, error="held-out", shift=0):
    """Cross-validation MSE per degree; the keyword arguments make the known mistakes."""
    n = len(x)
    idx = np.arange(n)
    parts = ([idx[i::k] for i in range(k)] if folds == "interleaved"
             else np.array_split(idx, k))
    out = []
    for d in degrees:
        d = d + shift                            # d = -1: no coefficient, the prediction 0
        errs, sizes = [], []
        for held in parts:
            train = np.setdiff1d(idx, held)
            on = train if error == "fitting" else held
            pred = (_vander(x[on], d) @ _lstsq(x[train], y[train], d)) if d >= 0 else 0.0 * x[on]
            errs.append(float(np.mean((pred - y[on]) ** 2)))
            sizes.append(len(held))
        out.append(float(np.average(errs, weights=sizes)) if weighted else float(np.mean(errs)))
    return np.array(out)


def _distinct(a, b, rel=2e-3) -> bool:
    return a is not None and b is not None and max_err(a, b) > rel * float(np.max(np.abs(b)))


def _cv_case(rng, n, k, degrees, sort, fn, noise):
    """Draw ``n`` points until the case has no near-tie between degrees and every known
    mistake gives cross-validation errors clearly different from the reference."""
    while True:
        x = rng.uniform(-1.0, 1.0, n)
        x = np.sort(x) if sort else x
        y = fn(x) + noise * rng.standard_normal(n)
        ref = _cv(x, y, degrees, k)
        s = np.sort(ref)
        if s[1] < 1.05 * s[0]:                   # a near-tie for the best degree
            continue
        others = [_cv(x, y, degrees, k, error="fitting"), _cv(x, y, degrees, k, shift=1)]
        if k < n:                                # leave-one-out: both fold rules agree
            others.append(_cv(x, y, degrees, k, folds="contiguous"))
        if n % k:
            others.append(_cv(x, y, degrees, k, weighted=True))
        others.append(_cv(x, y, degrees, k, shift=-1))
        if all(_distinct(o, ref) for o in others):
            return x, y


def _cv_cases(seed):
    rng = case_rng(seed, 1401)
    wave = lambda x: np.sin(2.5 * x) + 0.5 * x            # noqa: E731
    cubic = lambda x: 1.5 * x ** 3 - x + 0.3              # noqa: E731
    x1, y1 = _cv_case(rng, 23, 5, [3, 4, 5, 0, 1, 2], True, wave, 0.2)
    x2, y2 = _cv_case(rng, 18, 3, [2, 3, 4, 5, 6], False, cubic, 0.3)
    x3, y3 = _cv_case(rng, 9, 9, [0, 1, 2, 3], True, cubic, 0.3)
    x4 = np.sort(rng.uniform(-1.0, 1.0, 12))
    return [("23 points, k = 5 (folds of 5 and 4 points), degrees [3, 4, 5, 0, 1, 2]",
             x1, y1, [3, 4, 5, 0, 1, 2], 5),
            ("18 unsorted points, k = 3, degrees [2, 3, 4, 5, 6]", x2, y2, [2, 3, 4, 5, 6], 3),
            ("9 points, k = 9 (leave-one-out), degrees [0, 1, 2, 3]", x3, y3, [0, 1, 2, 3], 9),
            ("y all zeros, k = 4, degrees [2, 3, 4, 5]: every degree fits exactly, a tie",
             x4, np.zeros(12), [2, 3, 4, 5], 4)]


def probe_cv(cross_validate_degree, seed):
    out = []
    for _label, x, y, degrees, k in _cv_cases(seed):
        xi, yi = x.copy(), y.copy()
        keep = snapshot(xi, yi)
        out.append({"result": capture(cross_validate_degree, xi, yi, list(degrees), k),
                    "input_changed": changed(keep, xi, yi)})
    return out


def _as_degree(v, label):
    try:
        b = as_float(v, "best_degree")
    except Fail as e:
        raise Fail(f"{label}: {e} (best_degree is one of the degrees you were given)") from None
    if b != int(b):
        raise Fail(f"{label}: best_degree is {b:g}; it should be one of the degrees you were "
                   "given (an integer).")
    return int(b)


def judge_cv(data, seed):
    for (label, x, y, degrees, k), got in zip(_cv_cases(seed), data, strict=True):
        res = got["result"]
        res = unwrap(res) if not isinstance(res, (list, tuple)) else res
        if not isinstance(res, (list, tuple)) or len(res) != 2:
            raise Fail(f"{label}: return a pair (best_degree, cv_mse): the chosen degree and "
                       "the cross-validation MSE of every degree.")
        best, cv = res
        cv = as_array(cv, "cv_mse").reshape(-1)
        if cv.shape != (len(degrees),):
            raise Fail(f"{label}: cv_mse has {cv.size} values, expected one per entry of "
                       f"degrees ({len(degrees)}), in the same order.")
        if got["input_changed"]:
            raise Fail(f"{label}: your function changed x or y; work on copies.")
        ref = _cv(x, y, degrees, k)
        tol = dict(rtol=1e-4, atol=1e-10)        # float32-level fits
        if not close(cv, ref, **tol):
            where = f"{label}: cv_mse is wrong (largest difference {max_err(cv, ref):.3g})"
            match_mistake(where, cv, [
                (_cv(x, y, degrees, k, folds="contiguous"),
                 "your folds are contiguous blocks of positions. Here fold i holds the points "
                 "at positions i, i+k, i+2k, ...: every k-th point, starting at i."),
                (_cv(x, y, degrees, k, error="fitting"),
                 "these are errors on the points each polynomial was fitted to. Measure each "
                 "fit on the fold it did not see."),
                (_cv(x, y, degrees, k, weighted=True) if len(x) % k else None,
                 "you weighted the folds by their size (or pooled all squared errors). The "
                 "folds here differ in size; average the k fold MSEs, each counting once."),
                (_cv(x, y, degrees, k, shift=-1),
                 "your fits have one coefficient too few: a polynomial of degree d has d + 1 "
                 "coefficients, x**0 to x**d."),
                (_cv(x, y, degrees, k, shift=1),
                 "your fits have one coefficient too many: a polynomial of degree d has d + 1 "
                 "coefficients, x**0 to x**d."),
                (k * ref, "these are k times too large: the sum of the fold MSEs, not their mean."),
                (np.sqrt(ref), "you took square roots: report mean squared errors."),
            ], **tol)
            raise Fail(f"{where}. For each degree, for each fold i: fit on the other folds, "
                       "take the MSE on fold i; then average over the k folds.")
        b = _as_degree(best, label)
        j = int(np.argmin(ref))
        if b == degrees[j]:
            continue
        fitting = _cv(x, y, degrees, k, error="fitting")
        ties = [dj for dj, e in zip(degrees, ref) if e == ref[j]]
        tie_hint = (f"{label}: cv_mse is right, and several degrees share the lowest value; "
                    f"you returned {b}. On a tie the contract takes the first of them in the "
                    "order of `degrees`.")
        if len(ties) > 1 and b == ties[-1]:
            raise Fail(tie_hint)
        if b == j and degrees[j] != j:
            raise Fail(f"{label}: cv_mse is right, but best_degree = {b} is the position of the "
                       "lowest value in the list, not the degree at that position.")
        if b in (degrees[j] - 1, degrees[j] + 1):
            raise Fail(f"{label}: cv_mse is right, but best_degree = {b} is off by one from the "
                       "degree whose cv_mse is lowest. Read the degree from `degrees` at the "
                       "position of the lowest value.")
        if len(ties) > 1 and b in ties:
            raise Fail(tie_hint)
        if b == degrees[int(np.argmax(ref))]:
            raise Fail(f"{label}: cv_mse is right, but best_degree = {b} has the *highest* "
                       "cross-validation error: you want the lowest.")
        if b == degrees[int(np.argmin(fitting))]:
            raise Fail(f"{label}: cv_mse is right, but best_degree = {b} has the lowest error on "
                       "the points the polynomials were fitted to; choose by cv_mse.")
        raise Fail(f"{label}: cv_mse is right, but best_degree = {b} is not the degree with the "
                   "lowest cv_mse.")
    return None


exercise("ex1.4", "cross_validate_degree", probe_cv, judge_cv)
