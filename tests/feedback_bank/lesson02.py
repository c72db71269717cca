"""Lesson 02's bank of realistic wrong answers (issue 18): each with what a helpful verdict
must mention. Written fresh for measuring feedback, not copied from tests/test_lesson02.py."""

import numpy as np
import torch
from torch import nn


# ---------------------------------------------------------------- ex2.1 ridge_fit

def ridge_column_y(X, y, lam):
    """Solves with y turned into a column, and returns the column."""
    A = X.T @ X + lam * np.eye(X.shape[1])
    return np.linalg.solve(A, X.T @ y.reshape(-1, 1))


def ridge_identity_of_n(X, y, lam):
    """The identity sized by the samples, not the features: a shape error in the learner's code."""
    return np.linalg.solve(X.T @ X + lam * np.eye(X.shape[0]), X.T @ y)


def ridge_mean_squared_error(X, y, lam):
    """Minimises the *mean* squared error plus lam ||w||^2 (the scikit-learn habit)."""
    n = X.shape[0]
    return np.linalg.solve(X.T @ X / n + lam * np.eye(X.shape[1]), X.T @ y / n)


# ---------------------------------------------------------------- ex2.2 / ex2.3 penalties

def l2_norms_not_squared(model, lam):
    """Sums the Frobenius norms instead of the squared norms."""
    return lam * sum(p.norm() for p in model.parameters() if p.dim() > 1)


def l2_as_python_float(model, lam):
    """Returns a Python number: nothing for autograd to differentiate."""
    total = 0.0
    for p in model.parameters():
        if p.dim() > 1:
            total += float((p ** 2).sum())
    return lam * total


def l1_by_name(model, lam):
    """Picks parameters whose name ends in 'weight': norm-layer scales included."""
    return lam * sum(p.abs().sum() for n, p in model.named_parameters() if n.endswith("weight"))


def l1_misspelt(model, lam):
    """A typo in the method name: AttributeError inside the learner's code."""
    return lam * sum(p.abs().sum() for p in model.paramters() if p.dim() > 1)


# ---------------------------------------------------------------- ex2.4 soft_threshold

def soft_one_sided(w, t):
    """Only shrinks from above: every negative entry is clamped to 0."""
    return torch.clamp(w - t, min=0.0)


def soft_through_numpy_float32(w, t):
    """Computes in NumPy and wraps the result as float32 whatever w was."""
    a = w.numpy()
    return torch.tensor(np.sign(a) * np.maximum(np.abs(a) - t, 0.0), dtype=torch.float32)


# ---------------------------------------------------------------- ex2.5 lasso_cd

def lasso_vectorised_jacobi(X, y, lam, n_sweeps):
    """Updates every coordinate at once from the same w (a vectorised 'sweep')."""
    n, d = X.shape
    z = (X ** 2).sum(axis=0) / n
    w = np.zeros(d)
    for _ in range(n_sweeps):
        rho = X.T @ (y - X @ w) / n + z * w
        w = np.sign(rho) * np.maximum(np.abs(rho) - lam, 0.0) / z
    return w


def lasso_residual_is_y(X, y, lam, n_sweeps):
    """Keeps the residual in y itself: the caller's y is overwritten."""
    n, d = X.shape
    z = (X ** 2).sum(axis=0) / n
    w = np.zeros(d)
    r = y
    for _ in range(n_sweeps):
        for j in range(d):
            rho = X[:, j] @ r / n + z[j] * w[j]
            new = np.sign(rho) * max(abs(rho) - lam, 0.0) / z[j]
            r -= X[:, j] * (new - w[j])
            w[j] = new
    return w


def lasso_sums_not_means(X, y, lam, n_sweeps):
    """Correlations and squared norms summed over the samples, threshold left at lam."""
    n, d = X.shape
    w = np.zeros(d)
    for _ in range(n_sweeps):
        for j in range(d):
            r = y - X @ w + X[:, j] * w[j]
            rho, zj = X[:, j] @ r, X[:, j] @ X[:, j]
            w[j] = np.sign(rho) * max(abs(rho) - lam, 0.0) / zj
    return w


# ---------------------------------------------------------------- ex2.6 / ex2.7 optimizer steps

def sgd_decay_outside_lr(w, grad, lr, weight_decay):
    """Shrinks by weight_decay itself, not by lr * weight_decay."""
    return w * (1 - weight_decay) - lr * grad


def adamw_coupled(w, grad, m, v, t, lr, betas, eps, weight_decay):
    """Adds the decay to the gradient (Adam's L2) instead of decoupling it."""
    b1, b2 = betas
    g = grad + weight_decay * w
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    step = (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps)
    return w - lr * step, m, v


def adamw_zero_based_t(w, grad, m, v, t, lr, betas, eps, weight_decay):
    """Treats t as 0-based: the first step's bias correction divides by zero."""
    b1, b2 = betas
    w = w * (1 - lr * weight_decay)
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad ** 2
    m_hat, v_hat = m / (1 - b1 ** (t - 1)), v / (1 - b2 ** (t - 1))
    return w - lr * m_hat / (v_hat.sqrt() + eps), m, v


# ---------------------------------------------------------------- ex2.8 decay_param_groups

def groups_linear_only(model, weight_decay):
    """Decays the weights of nn.Linear layers only: convolutions and embeddings are missed."""
    decay = [m.weight for m in model.modules() if isinstance(m, nn.Linear) and m.weight.requires_grad]
    ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def groups_with_frozen(model, weight_decay):
    """Splits by dimension but keeps the frozen parameters in the groups."""
    return [{"params": [p for p in model.parameters() if p.dim() > 1], "weight_decay": weight_decay},
            {"params": [p for p in model.parameters() if p.dim() <= 1], "weight_decay": 0.0}]


BANK = [
    ("ex2.1", "solved with y as a column and returned (d, 1)", ridge_column_y, ["1-D array"]),
    ("ex2.1", "identity of size n instead of d (an exception in the learner's code)",
     ridge_identity_of_n, ["ValueError", "shape"]),
    ("ex2.1", "mean squared error instead of the sum", ridge_mean_squared_error,
     ["lam * n", "not scaled by the number of samples"]),
    ("ex2.2", "norms summed, not squared norms", l2_norms_not_squared, ["squared"]),
    ("ex2.2", "a Python float instead of a tensor", l2_as_python_float, ["not a torch tensor"]),
    ("ex2.3", "parameters selected by the name 'weight'", l1_by_name, ["by the name 'weight'"]),
    ("ex2.3", "model.paramters() misspelt", l1_misspelt, ["paramters", "parameters"]),
    ("ex2.4", "negative entries clamped to 0", soft_one_sided, ["negative weights"]),
    ("ex2.4", "float32 result for a float64 w", soft_through_numpy_float32, ["float32", "dtype"]),
    ("ex2.5", "simultaneous (Jacobi) update of all coordinates", lasso_vectorised_jacobi,
     ["simultaneous", "Jacobi"]),
    ("ex2.5", "the residual is y itself, updated in place", lasso_residual_is_y, ["in place"]),
    ("ex2.5", "sums over samples with the threshold lam (objective scaling)", lasso_sums_not_means,
     ["n times too small"]),
    ("ex2.6", "decay not scaled by the learning rate", sgd_decay_outside_lr, ["learning rate"]),
    ("ex2.7", "decay added to the gradient (Adam + L2)", adamw_coupled, ["L2", "decouple"]),
    ("ex2.7", "t taken as 0-based", adamw_zero_based_t, ["1-based"]),
    ("ex2.8", "only nn.Linear weights decay", groups_linear_only,
     ["is a weight but is not in the decay group", "number of dimensions"]),
    ("ex2.8", "frozen parameters kept in the groups", groups_with_frozen, ["frozen"]),
]
