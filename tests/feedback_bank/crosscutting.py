"""Wrong answers of the classes issue 18 names that cut across lessons: exceptions raised inside
NumPy or torch because of the learner's own code, a forgotten ``super().__init__()``, a pair
returned by ``torch.max``, a missing ``keepdim``, dtype mix-ups, a missing ``return``."""

import math

import numpy as np
import torch
from torch import nn


def pf_singular(x, degree):
    V = np.stack([x ** j for j in range(degree + 1)], axis=1)
    return np.linalg.inv(V.T @ V - V.T @ V) @ V.T @ V          # a singular solve inside NumPy


def fit_shape_error(x, y, degree):
    V = np.stack([x ** j for j in range(degree + 1)], axis=0)  # (degree+1, n): transposed
    return np.linalg.solve(V.T @ V, V.T @ y)


class DropoutNoSuper(nn.Module):
    def __init__(self, p=0.5):
        self.p = p                                              # super().__init__() forgotten

    def forward(self, x):
        return x


def ece_max_pair(probs, y, n_bins=15):
    conf = torch.max(probs, 1)                                  # a (values, indices) pair
    bins = torch.linspace(0, 1, n_bins + 1)
    total = 0.0
    for lo, hi in zip(bins[:-1], bins[1:]):
        inside = (conf > lo) & (conf <= hi)
        total += inside.sum()
    return float(total)


def bn_no_keepdim(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    dims = (0, 2, 3) if x.dim() == 4 else (0, 2) if x.dim() == 3 else (0,)
    if training:
        mean = x.mean(dim=dims)
        var = x.var(dim=dims, unbiased=False)
        n = x.numel() // x.shape[1]
        new_mean = (1 - momentum) * running_mean + momentum * mean
        new_var = (1 - momentum) * running_var + momentum * var * n / (n - 1)
    else:
        mean, var, new_mean, new_var = running_mean, running_var, running_mean, running_var
    if x.dim() > 2:
        y = (x - mean) / torch.sqrt(var + eps)   # (N, C, H, W) - (C,): keepdim forgotten
    else:
        y = (x - mean) / torch.sqrt(var + eps)
    return gamma * y + beta, new_mean, new_var


def cosine_no_return(step, total_steps, lr_max, lr_min=0.0):
    lr_min + (lr_max - lr_min) * (1 + math.cos(math.pi * step / total_steps)) / 2


def sgd_numpy_on_torch(w, grad, lr, weight_decay):
    return np.asarray(w) - lr * (np.asarray(grad) + weight_decay * np.asarray(w))


def misspelt_inner_name(step, total_steps, lr_max, lr_min=0.0):
    return lr_min + (lr_max - lr_min) * (1 + math.cos(math.pi * stp / total_steps)) / 2  # noqa: F821


def max_norm_no_grad(weight, c):
    norms = weight.norm(dim=1, keepdim=True)
    weight.mul_(torch.clamp(c / norms, max=1.0))                # in place on a parameter, with grad
    return weight


BANK = [
    ("ex1.1", "a singular solve inside NumPy", pf_singular, ["in `pf_singular`", "singular"]),
    ("ex1.2", "design matrix transposed: a shape error inside NumPy", fit_shape_error,
     ["in `fit_shape_error`", "do not line up", "inner dimensions", "transpose"]),
    ("ex3.3", "super().__init__() forgotten", DropoutNoSuper, ["super().__init__()"]),
    ("ex5.3", "torch.max with a dim returns a pair", ece_max_pair, [".values", "(values, indices)"]),
    ("ex4.1", "mean without keepdim on images", bn_no_keepdim, ["keepdim", "do not line up", "shape"]),
    ("ex7.2", "no return statement", cosine_no_return, ["return", "none"]),
    ("ex2.6", "NumPy arrays returned for torch tensors", sgd_numpy_on_torch,
     ["numpy", "torch tensor"]),
    ("ex7.2", "a misspelt name inside the function", misspelt_inner_name, ["`step`", "did you mean"]),
    ("ex3.5", "in-place change of a parameter outside no_grad", max_norm_no_grad,
     ["no_grad", "in place", "in-place"]),
]
