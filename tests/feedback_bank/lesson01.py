"""Lesson 01 (overfitting, bias and variance, cross-validation): realistic wrong answers for
measuring feedback quality (issue 18).

Each entry: (exercise id, what the mistake is, the wrong answer, phrases of which the verdict
message must contain at least one, case-insensitive, for the feedback to teach). Written fresh
for the bank, not copied from tests/test_lesson01.py.
"""

from __future__ import annotations

import numpy as np
import torch

# ------------------------------------------------------------------ ex1.1 polynomial_features


def features_ones_call(x, degree):
    """np.ones given two positional sizes instead of a shape tuple: raises."""
    out = np.ones(len(x), degree + 1)
    for j in range(1, degree + 1):
        out[:, j] = x ** j
    return out


def features_int_x(x, degree):
    """x turned into integers first (a habit from index arrays)."""
    xi = np.asarray(x).astype(int)
    return np.stack([xi ** j for j in range(degree + 1)], axis=1)


def features_range_short(x, degree):
    """range(degree): the highest power is missing."""
    return np.column_stack([x ** j for j in range(degree)]) if degree else np.empty((len(x), 0))


# ------------------------------------------------------------------ ex1.2 fit_polynomial


def fit_ignores_degree(x, y, degree):
    """Least squares on x itself: a line through the origin, whatever the degree."""
    return np.linalg.lstsq(x[:, None], y, rcond=None)[0]


def fit_normal_equations_wrong_product(x, y, degree):
    """V V^T instead of V^T V: the shapes do not fit the right-hand side."""
    V = x[:, None] ** np.arange(degree + 1)
    return np.linalg.solve(V @ V.T, V.T @ y)


def fit_with_polyfit(x, y, degree):
    """The library fit, reversed into the asked order."""
    return np.polyfit(x, y, degree)[::-1]


# ------------------------------------------------------------------ ex1.3 bias_variance


def bv_forgets_correction(preds, f_true):
    avg = preds.mean(axis=0)
    var = preds.var(axis=0, ddof=1)
    return float(np.mean((avg - f_true) ** 2)), float(var.mean())


def bv_numpy_default_var(preds, f_true):
    """np.var's default ddof=0 everywhere."""
    var = np.var(preds, axis=0)
    return float(np.mean((preds.mean(axis=0) - f_true) ** 2) - var.mean() / len(preds)), float(var.mean())


def bv_typo(preds, f_true):
    """A misspelt variable name."""
    var = pred.var(axis=0, ddof=1)  # noqa: F821
    return float(var.mean()), float(var.mean())


def bv_centres_in_place(preds, f_true):
    """Centres the predictions in place to get the spread."""
    avg = preds.mean(axis=0)
    preds -= avg
    var = (preds ** 2).sum(axis=0) / (len(preds) - 1)
    return float(np.mean((avg - f_true) ** 2) - var.mean() / len(preds)), float(var.mean())


def bv_torch_scalars(preds, f_true):
    """Right numbers, returned as 0-d torch tensors."""
    P, f = torch.tensor(preds), torch.tensor(f_true)
    var = P.var(dim=0).mean()
    return ((P.mean(0) - f) ** 2).mean() - var / P.shape[0], var


def bv_rows_as_points(preds, f_true):
    """Reads preds as (n, R): every statistic along axis 1."""
    var = preds.var(axis=1, ddof=1)
    return float(np.mean((preds.mean(axis=1) - f_true) ** 2 - var / preds.shape[1])), float(var.mean())


def bv_clips(preds, f_true):
    """A negative bias² looked like a bug, so it is clipped."""
    R = len(preds)
    var = preds.var(axis=0, ddof=1).mean()
    return max(0.0, float(np.mean((preds.mean(axis=0) - f_true) ** 2) - var / R)), float(var)


# ------------------------------------------------------------------ ex1.4 cross_validate_degree


def _lstsq_mse(x, y, d, train, held):
    V = x[:, None] ** np.arange(d + 1)
    c = np.linalg.lstsq(V[train], y[train], rcond=None)[0]
    return float(np.mean((V[held] @ c - y[held]) ** 2))


def cv_blocks(x, y, degrees, k):
    """np.array_split: contiguous folds."""
    idx = np.arange(len(x))
    folds = np.array_split(idx, k)
    cv = np.array([np.mean([_lstsq_mse(x, y, d, np.setdiff1d(idx, h), h) for h in folds])
                   for d in degrees])
    return degrees[int(np.argmin(cv))], cv


def cv_pick_smallest(x, y, degrees, k):
    """On a tie, the smallest degree (sorted before choosing)."""
    idx = np.arange(len(x))
    cv = np.array([np.mean([_lstsq_mse(x, y, d, np.setdiff1d(idx, idx[i::k]), idx[i::k])
                            for i in range(k)]) for d in degrees])
    return min(d for d, e in zip(degrees, cv) if e == cv.min()), cv


def cv_returns_position(x, y, degrees, k):
    idx = np.arange(len(x))
    cv = np.array([np.mean([_lstsq_mse(x, y, d, np.setdiff1d(idx, idx[i::k]), idx[i::k])
                            for i in range(k)]) for d in degrees])
    return int(np.argmin(cv)), cv


def cv_with_sklearn(x, y, degrees, k):
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import cross_val_score
    idx = np.arange(len(x))
    splits = [(np.setdiff1d(idx, idx[i::k]), idx[i::k]) for i in range(k)]
    cv = np.array([-cross_val_score(LinearRegression(fit_intercept=False),
                                    x[:, None] ** np.arange(d + 1), y, cv=splits,
                                    scoring="neg_mean_squared_error").mean() for d in degrees])
    return degrees[int(np.argmin(cv))], cv


BANK = [
    ("ex1.1", "np.ones(n, d + 1) instead of np.ones((n, d + 1)): raises", features_ones_call,
     ["raised TypeError", "your code raised"]),
    ("ex1.1", "x cast to an integer dtype", features_int_x, ["integer"]),
    ("ex1.1", "range(degree): the highest power missing", features_range_short,
     ["x**degree, is missing", "inclusive"]),
    ("ex1.2", "least squares on x alone (degree ignored)", fit_ignores_degree,
     ["expected degree+1"]),
    ("ex1.2", "normal equations with V V^T: raises", fit_normal_equations_wrong_product,
     ["your code raised"]),
    ("ex1.2", "np.polyfit, the library routine the exercise asks for", fit_with_polyfit,
     ["numpy.polyfit"]),
    ("ex1.3", "bias² without the variance/R correction", bv_forgets_correction,
     ["no correction"]),
    ("ex1.3", "np.var's default ddof=0", bv_numpy_default_var, ["ddof=0"]),
    ("ex1.3", "a misspelt name (NameError)", bv_typo, ["NameError"]),
    ("ex1.3", "centres preds in place", bv_centres_in_place, ["changed preds"]),
    ("ex1.3", "0-d torch tensors instead of floats", bv_torch_scalars, [".item()"]),
    ("ex1.3", "statistics along axis 1 (preds read as (n, R))", bv_rows_as_points, ["axis"]),
    ("ex1.3", "bias² clipped at 0", bv_clips, ["clipped"]),
    ("ex1.4", "contiguous folds (np.array_split)", cv_blocks, ["contiguous"]),
    ("ex1.4", "the smallest degree on a tie", cv_pick_smallest, ["smallest"]),
    ("ex1.4", "the position of the best degree instead of the degree", cv_returns_position,
     ["position"]),
    ("ex1.4", "scikit-learn's cross_val_score", cv_with_sklearn, ["cross_val", "cross_validate"]),
]
