"""Checks for lesson 01 (overfitting): ex1.1 polynomial_features, ex1.2 fit_polynomial,
ex1.3 bias_variance and ex1.4 cross_validate_degree.

Every case family is rebuilt from the case seed (``case_rng(seed, salt)``): the probe, in the
learner's kernel, calls the answer on those inputs and returns only what came back, the
inputs as they are after the call included (``inputs_after``); the judge, in the grader, rebuilds
the same inputs from its own seed, decides whether an input was modified (``input_changed``),
computes the NumPy references and explains a mismatch (``match_mistake`` names the common
mistakes). No exercise here draws random numbers, so none is statistical.

Precision: a learner may compute in float32 (``torch.tensor(x, dtype=torch.float32)``); the
judges accept float32-level agreement. ex1.2 is judged on the fitted values ``V @ c`` (what
least squares determines), not on the coefficients, whose float32 error grows with the
conditioning of ``V``.
"""

from __future__ import annotations

import numpy as np

from helpers.checks.core import (Fail, Raised, Value, as_array, as_float, capture, case_rng, close,
                                 exercise, expect_close, input_changed, inputs_after, match_mistake,
                                 max_err, unwrap)


def _vander(x, degree):
    return np.vander(np.asarray(x, dtype=np.float64), degree + 1, increasing=True)


def _lstsq(x, y, degree):
    return np.linalg.lstsq(_vander(x, degree), y, rcond=None)[0]


def _probe_cases(fn, cases):
    """Call ``fn`` on each case's inputs (copies); record what came back and the input arrays
    as they are after the call (raw: the judge decides whether they changed)."""
    out = []
    for _label, *args in cases:
        arrays = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        result = capture(fn, *arrays)
        out.append({"result": result,
                    "inputs_after": inputs_after(*[a for a in arrays if isinstance(a, np.ndarray)])})
    return out


def _low_precision(label, v, a, ref, what="the result"):
    """Fail with a dtype hint when an answer is right only up to a half-precision dtype."""
    dtype = getattr(v, "dtype", None)
    if dtype in ("float16", "bfloat16") and close(a, ref, rtol=2e-2, atol=1e-2):
        raise Fail(f"{label}: {what} is {dtype}; its values are right up to that dtype's "
                   "rounding, which is too coarse here. Compute and return float32 or float64.")


def _changed(got, *originals) -> bool:
    """The judge's verdict on a probe entry: did the call modify any of ``originals``?"""
    return input_changed(got.get("inputs_after"), *originals)


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
            if d > 0 and close(a, ref[:, :-1], rtol=1e-5, atol=1e-9) and \
                    not close(a, ref[:, 1:], rtol=1e-5, atol=1e-9):
                raise Fail(f"{label}: got {d} columns, expected degree+1 = {d + 1}: the last "
                           "power, x**degree, is missing. The powers run from 0 to degree "
                           "inclusive (a range that stops before degree is one short).")
            raise Fail(f"{label}: got {d} columns, expected degree+1 = {d + 1}. Include the "
                       "constant column x**0 (all ones) as well as x**1 ... x**degree.")
        if a.shape == (len(x), d + 2):
            raise Fail(f"{label}: got {d + 2} columns, expected degree+1 = {d + 1}: "
                       "the powers run from 0 to degree inclusive, no further.")
        if a.shape == (d + 1, len(x)) and a.shape != ref.shape:
            raise Fail(f"{label}: got shape {a.shape}, expected (n, degree+1) = {ref.shape}: "
                       "one row per sample, one column per power (transpose your result).")
        if _changed(got, x):
            raise Fail(f"{label}: your function changed its input array x; work on a copy.")
        if a.shape != ref.shape:
            raise Fail(f"{label}: got shape {a.shape}, expected (n, degree+1) = {ref.shape}.")
        mistakes = [(ref[:, ::-1] if d > 0 else None,
                     "the columns are in reverse order. Column j must be x**j: the constant "
                     "column first, the highest power last.")]
        if a.shape[0] == a.shape[1]:
            mistakes.append((ref.T, "rows and columns are swapped: one row per sample, one "
                                    "column per power (transpose your result)."))
        if not np.array_equal(np.trunc(x), x):
            mistakes.append((_vander(np.trunc(x), d),
                             "these are the powers of x cut to whole numbers: x was turned into "
                             "an integer dtype somewhere (np.int, astype(int), an integer "
                             "array). Keep x as floats."))
        if not close(a, ref, **tol):
            _low_precision(label, got["result"], a, ref)
        expect_close(label, a, ref, mistakes, "Column j must be x**j for every sample.", **tol)
    return None


exercise("ex1.1", "polynomial_features", probe_features, judge_features,
         forbid=("numpy.vander", "numpy.polynomial.polynomial.polyvander",
                 "sklearn.preprocessing.PolynomialFeatures"),
         forbid_hint="column j holds the j-th power of every x, from the constant column "
                     "(power 0) up to power `degree`; NumPy's broadcasting or a loop over the "
                     "powers builds it.")


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
        res = got["result"]
        if isinstance(res, (list, tuple)) and len(res) == 4 and isinstance(res[0], Value) \
                and isinstance(res[0].value, np.ndarray) and res[0].value.size == d + 1:
            raise Fail(f"{label}: you returned a tuple of 4 values, the whole result of a "
                       "least-squares solver (solution, residuals, rank, singular values); "
                       "return only the coefficients, its first entry.")
        a = as_array(res, "fit_polynomial(x, y, degree)").reshape(-1)
        if a.shape != ref.shape:
            extra = (" One coefficient is missing: a degree-d polynomial has d+1 coefficients."
                     if a.size == d else "")
            raise Fail(f"{label}: got {a.size} coefficients, expected degree+1 = {d + 1}.{extra}")
        if _changed(got, x, y):
            raise Fail(f"{label}: your function changed its inputs; work on copies.")
        # least squares determines the fitted values V @ c; compare those (float32 level)
        scale = float(np.sqrt(np.mean(y ** 2))) + 1e-12
        if max_err(V @ a, V @ ref) <= 1e-4 * scale:
            continue
        _low_precision(label, res, a, ref, "the coefficient array")
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


exercise("ex1.2", "fit_polynomial", probe_fit, judge_fit,
         forbid=("numpy.polyfit", "numpy.polynomial.polynomial.polyfit",
                 "numpy.polynomial.Polynomial.fit", "sklearn.linear_model.LinearRegression"),
         forbid_hint="build the matrix V with your polynomial_features and solve the "
                     "least-squares problem for c (a linear-algebra solver such as "
                     "np.linalg.lstsq is fine).")


# ================================================================== ex1.3 bias_variance

def _bv_stats(preds, f):
    """Per-point statistics of R fits: mean, ddof=1 and ddof=0 variance, squared distance."""
    m = preds.mean(axis=0)
    return m, preds.var(axis=0, ddof=1), preds.var(axis=0), (m - f) ** 2


def _bv_reference(preds, f):
    R = preds.shape[0]
    _, s2, _, raw = _bv_stats(preds, f)
    variance = float(np.mean(s2))
    return float(np.mean(raw)) - variance / R, variance


def _bv_scale(preds, f) -> float:
    """The size of the numbers at stake (the squared distance plus the variance): tolerances
    and separations are relative to it."""
    _, s2, _, raw = _bv_stats(preds, f)
    return float(np.mean(raw) + np.mean(s2))


_BV_TOL = 1e-5        # relative to _bv_scale: float32 arithmetic passes
_BV_APART = 1e-4      # every known mistake is at least this far (relative) from the reference


def _variance_mistakes(preds, f):
    """(value, hint) of the common wrong ``variance`` answers for one case."""
    R, n = preds.shape
    _, s2, s2_0, _ = _bv_stats(preds, f)
    with np.errstate(all="ignore"):
        across_points = [float(np.mean(preds.var(axis=1, ddof=dd))) for dd in (1, 0)] if n > 1 else [None, None]
        pooled = [float(preds.var(ddof=dd)) for dd in (1, 0)]
        around_truth = float(np.mean((preds - f) ** 2))
        return [
            (float(np.mean(s2_0)),
             "variance is the ddof=0 variance (divided by R). The contract asks for the sample "
             "variance with the R - 1 denominator (ddof=1), which is unbiased."),
            (across_points[0], "variance was taken across the points of each fit (axis 1). Row r "
                               "holds one fit: the spread to measure is across the R fits at each "
                               "point (down the columns), then averaged over the points."),
            (across_points[1], "variance was taken across the points of each fit (axis 1). Row r "
                               "holds one fit: the spread to measure is across the R fits at each "
                               "point (down the columns), then averaged over the points."),
            (pooled[0], "variance pools all R x n predictions into one variance, so the "
                        "differences between points count as spread. Take the variance across "
                        "the fits at each point, then average over the points."),
            (pooled[1], "variance pools all R x n predictions into one variance, so the "
                        "differences between points count as spread. Take the variance across "
                        "the fits at each point, then average over the points."),
            (float(np.mean(np.sqrt(s2))), "variance is a standard deviation (a square root). "
                                           "Return the variance itself, not its root."),
            (float(np.sqrt(np.mean(s2))), "variance is a standard deviation (a square root). "
                                           "Return the variance itself, not its root."),
            (float(np.mean(np.sqrt(s2_0))), "variance is a standard deviation (a square root). "
                                             "Return the variance itself, not its root."),
            (around_truth, "variance measures the spread of the fits around f_true. That is the "
                           "whole error of a fit (bias and variance together); the variance is "
                           "the spread around the fits' own average at each point."),
            (float(np.mean(s2)) / R, "variance is R times too small: that is the variance of the "
                                     "*average* of the R fits. Report the variance of one fit."),
            (float(np.sum(s2)) if n > 1 else None,
             "variance is summed over the points; average it over the points instead."),
        ]


def _bias_mistakes(preds, f):
    """(value, hint) of the common wrong ``bias2`` answers for one case (variance right)."""
    R, n = preds.shape
    m, s2, s2_0, raw = _bv_stats(preds, f)
    v, v0, r = float(np.mean(s2)), float(np.mean(s2_0)), float(np.mean(raw))
    ref = r - v / R
    return [
        (r, "bias2 is the squared distance between the average fit and f_true, with no "
            "correction. The average of R fits is itself noisy, and that noise inflates the "
            "squared distance on average: subtract your estimate of what the noise of an "
            "average of R fits contributes."),
        (r - v0 / R, "the correction of bias2 uses the ddof=0 variance. With the sample "
                     "variance (ddof=1) the estimate is unbiased; with ddof=0 it is not."),
        (r + v / R, "the correction of bias2 has the wrong sign: the noise of the average "
                    "*inflates* the squared distance, so remove its contribution, do not add it."),
        (r - v / n if n != R else None,
         "the correction of bias2 divides by the number of points n; the count that matters is "
         "the number of fits R that were averaged."),
        (r - v / (R - 1), "the correction of bias2 divides by R - 1; the count that matters is "
                          "the number of fits R that were averaged (the R - 1 belongs only in "
                          "the sample variance)."),
        (r - v, "the correction of bias2 subtracts the whole variance of one fit; the average "
                "of R fits is much less noisy than one fit."),
        (max(ref, 0.0), "bias2 was clipped at 0. The unbiased estimate can be slightly negative "
                        "when the bias is near zero; clipping it biases it upward. Return it as "
                        "it is."),
        (float(np.mean(np.maximum(raw - s2 / R, 0.0))),
         "bias2 was clipped at 0 point by point. The unbiased estimate at a point can be "
         "negative when the bias there is near zero; clipping biases it upward. Do not clip."),
        (float(np.mean((preds - f) ** 2)),
         "bias2 is the mean squared error of the fits against f_true, which is bias² plus "
         "variance. bias2 is about the *average* fit at each point."),
        (float(np.mean(np.abs(m - f))), "bias2 is an absolute distance, not a squared one: "
                                        "square the difference between the average fit and "
                                        "f_true at each point."),
        (float(np.mean(m - f)) ** 2 - v / R if n > 1 else None,
         "bias2 squares the error averaged over the points; square the error at each point, "
         "then average over the points (errors of opposite signs must not cancel)."),
    ]


def _bv_mistake_values(preds, f):
    return [v for v, _ in _variance_mistakes(preds, f)] + [v for v, _ in _bias_mistakes(preds, f)]


def _bv_separated(preds, f) -> bool:
    """True when every known mistake is either indistinguishable from the reference on this
    case (within the pass tolerance) or clearly apart from it and from the other mistakes."""
    scale = _bv_scale(preds, f)
    b, v = _bv_reference(preds, f)
    groups = [(v, [x for x, _ in _variance_mistakes(preds, f)]),
              (b, [x for x, _ in _bias_mistakes(preds, f)])]
    for ref, values in groups:
        kept = []
        for x in values:
            if x is None or not np.isfinite(x):
                continue
            d = abs(x - ref)
            if d <= _BV_TOL * scale:
                continue                         # this mistake passes here; another case tells
            if d < _BV_APART * scale:
                return False
            for k in kept:
                if _BV_TOL * scale < abs(x - k) < _BV_APART * scale:
                    return False
            kept.append(x)
    return True


def _bv_draw(rng, R, n, biased, near_zero=False):
    """Predictions of R fits at n points around a target ``f``: a per-point bias (on the points
    flagged by ``biased``) and a per-point spread. ``near_zero``: the fits' average lies within
    the noise of the average from ``f`` at every point, so the unbiased bias² is negative.
    Redraws until the case separates the known mistakes (``_bv_separated``; a few draws at
    most, ``tests/test_lesson01.py`` runs many seeds)."""
    for _ in range(1000):
        f = np.round(rng.uniform(-1.5, 1.5, n), 3)
        sigma = rng.uniform(0.3, 1.5, n)
        z = rng.standard_normal((R, n))
        if near_zero:
            z = z - z.mean(axis=0)               # the average of the fits is f exactly ...
            s2 = (sigma ** 2) * z.var(axis=0, ddof=1)
            size = np.sqrt(0.3 * np.mean(s2) / R)
            offset = size * rng.choice([-1.0, 1.0], n)   # ... then off by 0.3x the noise of it
            preds = f + offset + sigma * z
        else:
            bias = np.where(biased, rng.uniform(0.15, 0.6, n) * rng.choice([-1.0, 1.0], n), 0.0)
            preds = f + bias + sigma * z
        if _bv_separated(preds, f):
            return preds, f
    raise RuntimeError(f"no separating case for R={R}, n={n}")  # never seen: a course bug


def _bv_cases(seed):
    rng = case_rng(seed, 1302)
    half = np.arange(20) % 2 == 0
    p1, f1 = _bv_draw(rng, 50, 20, half)
    p2, f2 = _bv_draw(rng, 2, 7, np.ones(7, bool))
    p3, f3 = _bv_draw(rng, 30, 1, np.ones(1, bool))
    p4, f4 = _bv_draw(rng, 500, 3, np.array([True, False, True]))
    p5, f5 = _bv_draw(rng, 12, 9, None, near_zero=True)
    return [("R = 50 fits at n = 20 points", p1, f1),
            ("R = 2 fits (the smallest R) at n = 7 points", p2, f2),
            ("a single point (n = 1), R = 30 fits", p3, f3),
            ("R = 500 fits at n = 3 points", p4, f4),
            ("R = 12 fits whose average is as close to f_true as its own noise allows "
             "(the unbiased bias² is negative here)", p5, f5)]


def probe_bv(bias_variance, seed):
    return _probe_cases(bias_variance, _bv_cases(seed))


_FLOAT_HINT = "return a Python float (e.g. `.item()` or `float(...)`)"


def _bv_number(v, name, label, ref, scale, R, n):
    """``v`` as a float when it is a Python float or a NumPy float64 scalar; else fail with a
    hint that names what came back (and says so when its value is right)."""
    if isinstance(v, Raised):
        raise v
    if isinstance(v, Value) and v.kind == "python" and v.dtype == "float":
        return float(v.value)
    if isinstance(v, Value) and v.kind == "numpy" and not isinstance(v.value, np.ndarray) \
            and v.dtype == "float64":
        return float(v.value)                   # np.float64 is a float
    right = ""
    try:
        a = as_array(v, name)
    except Fail:
        raise Fail(f"{label}: {name} should be a number, got "
                   f"{getattr(v, 'dtype', None) or type(v).__name__}; {_FLOAT_HINT}.") from None
    if a.size == 1 and abs(float(a.reshape(())) - ref) <= _BV_TOL * scale:
        right = " (its value is right)"
    if isinstance(v, Value) and isinstance(v.value, np.ndarray):
        what = {"torch": "a torch tensor", "numpy": "a NumPy array"}.get(v.kind, "an array")
        if a.size > 1:
            per = "point" if a.shape == (n,) else "fit" if a.shape == (R,) else "entry"
            raise Fail(f"{label}: {name} is {what} of shape {tuple(a.shape)}, one value per "
                       f"{per}. The statistics are taken across the fits at each point, then "
                       f"averaged over the points into one number; {_FLOAT_HINT}.")
        shape = "0-d" if a.ndim == 0 else f"shape-{tuple(a.shape)}"
        raise Fail(f"{label}: {name} is a {shape} {v.dtype} {what.split(' ', 1)[1]}{right}; "
                   f"{_FLOAT_HINT}.")
    if isinstance(v, Value) and v.kind == "numpy":
        raise Fail(f"{label}: {name} is a NumPy {v.dtype} scalar{right}; {_FLOAT_HINT}.")
    if isinstance(v, (list, tuple)):
        raise Fail(f"{label}: {name} is a {type(v).__name__} of {len(v)} values, one per point: "
                   f"average over the points and {_FLOAT_HINT}.")
    raise Fail(f"{label}: {name} is {getattr(v, 'dtype', type(v).__name__)}{right}; "
               f"{_FLOAT_HINT}.")


def _axis_hint(e: Raised, R: int, n: int) -> Raised:
    """A broadcasting error between R and n values: the statistics were taken over the points."""
    msg = str(e)
    numpy_style = "broadcast" in msg and f"({R},)" in msg and f"({n},)" in msg
    torch_style = "must match the size of tensor" in msg and f"({R})" in msg and f"({n})" in msg
    if R != n and (numpy_style or torch_style):
        return Raised(f"{msg.rstrip('. ')}. A shape of {R} values against {n}: an average taken along the "
                      "points (axis 1) gives one value per fit; the statistics of this exercise "
                      "are taken across the fits at each point (axis 0), one value per point")
    return e


def judge_bv(data, seed):
    """Every case is deterministic (no randomness in the answer), so the verdict is exact
    up to the float tolerance: ``_BV_TOL`` times the case's scale (float32 arithmetic passes),
    and every known mistake differs from the reference by at least ``_BV_APART`` times it
    (``_bv_draw`` redraws a case until that holds)."""
    for (label, preds, f), got in zip(_bv_cases(seed), data, strict=True):
        R, n = preds.shape
        res = got["result"]
        if isinstance(res, Raised):
            raise _axis_hint(res, R, n)
        ref_b, ref_v = _bv_reference(preds, f)
        scale = _bv_scale(preds, f)
        if isinstance(res, Value) and isinstance(res.value, np.ndarray) and res.value.size == 2:
            raise Fail(f"{label}: you returned one {res.kind} array of two values; return the "
                       "tuple (bias2, variance) of two Python floats.")
        if not isinstance(res, (list, tuple)) or len(res) != 2:
            raise Fail(f"{label}: return a pair (bias2, variance) of two Python floats.")
        b = _bv_number(res[0], "bias2", label, ref_b, scale, R, n)
        v = _bv_number(res[1], "variance", label, ref_v, scale, R, n)
        if _changed(got, preds, f):
            raise Fail(f"{label}: your function changed preds or f_true; compute on them "
                       "without writing into them (in-place operations such as -= modify "
                       "the caller's array).")
        tol = dict(rtol=0.0, atol=_BV_TOL * scale)
        ok_b, ok_v = close(b, ref_b, **tol), close(v, ref_v, **tol)
        if ok_b and ok_v:
            continue
        if close(b, ref_v, **tol) and close(v, ref_b, **tol):
            raise Fail(f"{label}: the two values are swapped: return (bias2, variance), bias² "
                       "first.")
        if not ok_v:
            expect_close(label, v, ref_v, _variance_mistakes(preds, f),
                         "variance: at each point the sample variance (ddof=1) of the R "
                         "predictions, averaged over the points.", what="variance", **tol)
        expect_close(label, b, ref_b, _bias_mistakes(preds, f),
                     "bias2: at each point the squared distance between the average of the R "
                     "predictions and f_true, corrected for the noise of that average, averaged "
                     "over the points.", what="bias2", **tol)
    return None


exercise("ex1.3", "bias_variance", probe_bv, judge_bv)


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
    x5 = rng.uniform(-1.0, 1.0, 12)
    return [("23 points, k = 5 (folds of 5 and 4 points), degrees [3, 4, 5, 0, 1, 2]",
             x1, y1, [3, 4, 5, 0, 1, 2], 5),
            ("18 unsorted points, k = 3, degrees [2, 3, 4, 5, 6]", x2, y2, [2, 3, 4, 5, 6], 3),
            ("9 points, k = 9 (leave-one-out), degrees [0, 1, 2, 3]", x3, y3, [0, 1, 2, 3], 9),
            ("y all zeros, k = 4, degrees [4, 2, 5, 3] (not in ascending order): every degree "
             "fits exactly, a tie", x5, np.zeros(12), [4, 2, 5, 3], 4),
            ("y all zeros, k = 4, degrees [2, 3, 4, 5]: every degree fits exactly, a tie",
             x4, np.zeros(12), [2, 3, 4, 5], 4)]


def probe_cv(cross_validate_degree, seed):
    out = []
    for _label, x, y, degrees, k in _cv_cases(seed):
        xi, yi, di = x.copy(), y.copy(), list(degrees)
        result = capture(cross_validate_degree, xi, yi, di, k)
        out.append({"result": result, "inputs_after": inputs_after(xi, yi),
                    "degrees_after": inputs_after(*di) if isinstance(di, list) else None})
    return out


def _degrees_changed(got, degrees) -> bool:
    after = got.get("degrees_after")
    if not isinstance(after, list) or len(after) != len(degrees):
        return True
    try:
        return [unwrap(d) for d in after] != list(degrees)
    except Exception:  # noqa: BLE001 - anything odd in the record counts as changed
        return True


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
    wrong = []                                   # cases whose best_degree is wrong
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
        if _changed(got, x, y):
            raise Fail(f"{label}: your function changed x or y; work on copies.")
        if _degrees_changed(got, degrees):
            raise Fail(f"{label}: your function changed the list `degrees` (sorted or edited it "
                       "in place); leave it as given: cv_mse[j] belongs to degrees[j] in the "
                       "caller's order.")
        ref = _cv(x, y, degrees, k)
        tol = dict(rtol=1e-4, atol=1e-10)        # float32-level fits
        if not close(cv, ref, **tol):
            _low_precision(label, res[1], cv, ref, "cv_mse")
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
                (ref[np.argsort(degrees, kind="stable")] if list(degrees) != sorted(degrees) else None,
                 "these are the right numbers in ascending order of degree; cv_mse[j] belongs "
                 "to degrees[j], in the order the list was given (it is not sorted here)."),
                (np.sqrt(ref), "you took square roots: report mean squared errors."),
            ], **tol)
            raise Fail(f"{where}. For each degree, for each fold i: fit on the other folds, "
                       "take the MSE on fold i; then average over the k folds.")
        b = _as_degree(best, label)
        if b != degrees[int(np.argmin(ref))]:
            wrong.append((label, b, list(degrees), ref, lambda x=x, y=y, d=degrees, k=k:
                          _cv(x, y, d, k, error="fitting")))
    if wrong:
        raise Fail(_best_degree_hint(wrong))
    return None


def _best_degree_hint(wrong) -> str:
    """The hint for a wrong ``best_degree`` (cv_mse right in every case): the first diagnosis
    that explains *every* case where it was wrong, reported on the first of them (one case
    alone can fit two diagnoses: the degree after the best may also be the worst)."""
    def every(test):
        return all(test(b, d, ref, ref.argmin()) for _, b, d, ref, _ in wrong)

    def ties(d, ref):
        return [dj for dj, e in zip(d, ref) if e == ref.min()]

    label, b = wrong[0][0], wrong[0][1]
    right = f"{label}: cv_mse is right, but best_degree = {b}"
    tie_hint = (f"{label}: cv_mse is right, and several degrees share the lowest value; you "
                f"returned {b}. On a tie the contract takes the first of them in the order of "
                "`degrees`")
    if every(lambda b, d, ref, j: len(ties(d, ref)) > 1 and b in ties(d, ref)):
        if every(lambda b, d, ref, j: b == ties(d, ref)[-1]):
            return tie_hint + " (you took the last)."
        if every(lambda b, d, ref, j: b == min(ties(d, ref))):
            return tie_hint + ", which is not sorted here: you took the smallest tied degree."
        if every(lambda b, d, ref, j: b == max(ties(d, ref))):
            return tie_hint + ", which is not sorted here: you took the largest tied degree."
        return tie_hint + "."
    if every(lambda b, d, ref, j: b == j and d[j] != j):
        return (f"{right} is the position of the lowest value in the list, not the degree at "
                "that position.")
    if every(lambda b, d, ref, j: b == d[int(np.argmax(ref))]):
        return f"{right} has the *highest* cross-validation error: you want the lowest."
    if every(lambda b, d, ref, j: b in (d[j] - 1, d[j] + 1)):
        return (f"{right} is off by one from the degree whose cv_mse is lowest. Read the degree "
                "from `degrees` at the position of the lowest value.")
    if all(b == d[int(np.argmin(fit()))] for _, b, d, _, fit in wrong):
        return (f"{right} has the lowest error on the points the polynomials were fitted to; "
                "choose by cv_mse.")
    return f"{right} is not the degree with the lowest cv_mse."


exercise("ex1.4", "cross_validate_degree", probe_cv, judge_cv,
         forbid=("sklearn.model_selection.cross_val_score",
                 "sklearn.model_selection.cross_validate",
                 "sklearn.model_selection.GridSearchCV"),
         forbid_hint="the folds are the exercise: loop over them yourself, fitting on the "
                     "other folds and scoring on the held-out one (fitting each polynomial "
                     "with a library is fine here).")
