"""Checks for lesson 01 (overfitting): ex1.1 polynomial_features, ex1.2 fit_polynomial, ex1.3 mse.

Pattern for every lesson: ``_cases()`` rebuilds the fixed inputs (both the probe, in the
kernel, and the judge, in the grader, call it); the probe returns only what the learner's
code gave back; the judge computes the references itself and explains a mismatch.
"""

from __future__ import annotations

import numpy as np

from helpers.checks.core import Fail, as_array, as_float, capture, close, exercise, max_err

# ------------------------------------------------------------------ ex1.1

def _features_cases():
    x = np.array([-1.5, 0.0, 0.5, 2.0, 3.25, -0.75])
    return [("x of 6 values, degree 3", x, 3),
            ("x of 6 values, degree 5", x, 5),
            ("degree 0", x, 0),
            ("degree 1", x, 1),
            ("a single x value, degree 4", np.array([1.7]), 4)]


def probe_features(polynomial_features):
    out = []
    for _, x, d in _features_cases():
        xin = x.copy()
        out.append({"result": capture(polynomial_features, xin, d),
                    "input_changed": bool(not np.array_equal(xin, x))})
    return out


def judge_features(data):
    for (label, x, d), got in zip(_features_cases(), data, strict=True):
        ref = np.vander(x, d + 1, increasing=True)
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
        if not close(a, ref, rtol=1e-9, atol=1e-12):
            if d > 0 and close(a, ref[:, ::-1], rtol=1e-9, atol=1e-12):
                raise Fail(f"{label}: the columns are in reverse order. Column j must be "
                           "x**j: the constant column first, the highest power last.")
            if close(a.T, ref, rtol=1e-9, atol=1e-12):
                raise Fail(f"{label}: rows and columns are swapped: one row per sample, one "
                           "column per power (transpose your result).")
            raise Fail(f"{label}: wrong values (largest difference {max_err(a, ref):.3g}). "
                       "Column j must be x**j for every sample.")
    return None


exercise("ex1.1", "polynomial_features", probe_features, judge_features)

# ------------------------------------------------------------------ ex1.2

def _fit_cases():
    rng = np.random.default_rng(1201)
    x1 = np.linspace(-1.0, 1.5, 12)
    c1 = np.array([0.3, -1.2, 0.8])
    y1 = np.polynomial.polynomial.polyval(x1, c1) + 0.05 * rng.standard_normal(12)
    x2 = np.array([0.0, 0.4, 1.1, 1.9])
    y2 = np.array([1.0, -0.5, 2.0, 0.25])
    x3 = np.sort(rng.uniform(0, 1, 15))
    y3 = np.sin(2 * np.pi * x3) + 0.2 * rng.standard_normal(15)
    return [("12 noisy points of a quadratic, degree 2", x1, y1, 2),
            ("4 points, degree 3 (interpolates them exactly)", x2, y2, 3),
            ("15 noisy sine points, degree 5", x3, y3, 5),
            ("degree 0 (the mean)", x3, y3, 0)]


def probe_fit(fit_polynomial):
    out = []
    for _, x, y, d in _fit_cases():
        xi, yi = x.copy(), y.copy()
        out.append({"result": capture(fit_polynomial, xi, yi, d),
                    "input_changed": bool(not (np.array_equal(xi, x) and np.array_equal(yi, y)))})
    return out


def judge_fit(data):
    for (label, x, y, d), got in zip(_fit_cases(), data, strict=True):
        V = np.vander(x, d + 1, increasing=True)
        ref = np.linalg.lstsq(V, y, rcond=None)[0]
        a = as_array(got["result"], "fit_polynomial(x, y, degree)").reshape(-1)
        if a.shape != ref.shape:
            extra = (" One coefficient is missing: a degree-d polynomial has d+1 coefficients."
                     if a.size == d else "")
            raise Fail(f"{label}: got {a.size} coefficients, expected degree+1 = {d + 1}.{extra}")
        if not close(a, ref, rtol=1e-6, atol=1e-8):
            if d > 0 and close(a[::-1], ref, rtol=1e-6, atol=1e-8):
                raise Fail(f"{label}: the coefficients are in reverse order. Return them lowest "
                           "power first (np.polyfit returns the highest power first).")
            fitted, fitted_ref = V @ a, V @ ref
            raise Fail(f"{label}: these are not the least-squares coefficients (largest "
                       f"coefficient difference {max_err(a, ref):.3g}; training MSE "
                       f"{np.mean((fitted - y) ** 2):.4g} vs the least-squares minimum "
                       f"{np.mean((fitted_ref - y) ** 2):.4g}). Minimise ||V c - y||^2 with V "
                       "from polynomial_features.")
        if got["input_changed"]:
            raise Fail(f"{label}: your function changed its inputs; work on copies.")
    return None


exercise("ex1.2", "fit_polynomial", probe_fit, judge_fit)

# ------------------------------------------------------------------ ex1.3

def _mse_cases():
    rng = np.random.default_rng(1301)
    a = rng.standard_normal(9)
    b = a + rng.normal(0.3, 0.7, 9)
    return [("9 values", a, b),
            ("identical arrays", a, a.copy()),
            ("a single value", np.array([2.0]), np.array([-1.5])),
            ("large errors", np.array([100.0, -50.0, 3.0, 0.0]), np.array([0.0, 0.0, 0.0, 1.0]))]


def probe_mse(mse):
    out = []
    for _, yt, yp in _mse_cases():
        out.append({"result": capture(mse, yt.copy(), yp.copy())})
    return out


def judge_mse(data):
    for (label, yt, yp), got in zip(_mse_cases(), data, strict=True):
        ref = float(np.mean((yt - yp) ** 2))
        v = as_float(got["result"], "mse(y_true, y_pred)")
        if abs(v - ref) <= 1e-9 * max(1.0, abs(ref)):
            continue
        n = len(yt)
        if n > 1 and abs(v - ref * n) <= 1e-9 * max(1.0, abs(ref * n)):
            raise Fail(f"{label}: got {v:.6g}, which is the *sum* of squared errors. Divide by "
                       f"the number of values ({n}): the mean keeps the error comparable across "
                       "data set sizes.")
        if abs(v - np.sqrt(ref)) <= 1e-9 * max(1.0, ref):
            raise Fail(f"{label}: got {v:.6g}, the root of the mean squared error (RMSE). "
                       "Do not take the square root.")
        if abs(v - float(np.mean(np.abs(yt - yp)))) <= 1e-9 * max(1.0, ref):
            raise Fail(f"{label}: got {v:.6g}, the mean *absolute* error. Square the differences.")
        if abs(v - float(np.mean(yt - yp)) ** 2) <= 1e-9 * max(1.0, ref):
            raise Fail(f"{label}: got {v:.6g}, the square of the mean error. Square each "
                       "difference first, then average.")
        raise Fail(f"{label}: got {v:.6g}, expected the mean of (y_true - y_pred)**2.")
    return None


exercise("ex1.3", "mse", probe_mse, judge_mse)

# ------------------------------------------------------------------ ex1.4 (a value)

def _split_errors():
    """Validation and fitting MSE of degrees 0..4 on the even/odd split of lesson 01's curve."""
    from helpers.data import noisy_sine

    c = noisy_sine(n_train=10, n_test=200, noise=0.25, seed=0)
    xf, yf, xv, yv = c.x_train[0::2], c.y_train[0::2], c.x_train[1::2], c.y_train[1::2]
    val, fitting = [], []
    for d in range(5):
        coef = np.linalg.lstsq(np.vander(xf, d + 1, increasing=True), yf, rcond=None)[0]
        val.append(float(np.mean((np.vander(xv, d + 1, increasing=True) @ coef - yv) ** 2)))
        fitting.append(float(np.mean((np.vander(xf, d + 1, increasing=True) @ coef - yf) ** 2)))
    return val, fitting


def probe_best_degree(best_degree):
    from helpers.checks.core import encode
    return {"result": encode(best_degree)}


def judge_best_degree(data):
    val, fitting = _split_errors()
    ref = int(np.argmin(val))
    got = data["result"]
    if got is None or getattr(got, "value", 0) is None:
        raise Fail("best_degree is not set: assign the degree (an int from 0 to 4) with the "
                   "lowest validation MSE.")
    v = as_float(got, "best_degree")
    if v != int(v) or not 0 <= v <= 4:
        raise Fail(f"best_degree should be an integer degree from 0 to 4, got {v:g}.")
    v = int(v)
    if v == ref:
        return None
    if v == int(np.argmin(fitting)):
        raise Fail(f"degree {v} has the lowest error on the points it was fitted to, which "
                   "always favours the largest degree. Compare errors on the validation points.")
    raise Fail(f"degree {v} is not the one with the lowest validation MSE. Fit on the even "
               "positions, measure the MSE on the odd positions, and take the argmin.")


exercise("ex1.4", "best_degree", probe_best_degree, judge_best_degree, kind="value")
