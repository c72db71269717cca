"""Lesson 03's bank of realistic wrong answers (issue 18): each with what a helpful verdict
must mention. Written fresh for measuring feedback, not copied from tests/test_lesson03.py."""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# ---------------------------------------------------------------- ex3.1 dropout_forward

def fwd_keeps_with_p(x, p, training, generator=None):
    """Reads p as the probability of keeping a unit."""
    if not training:
        return x, None
    keep = torch.rand(x.shape, generator=generator) < p
    mask = keep.to(x.dtype) / (1 - p)
    return x * mask, mask


def fwd_numpy_mask(x, p, training, generator=None):
    """A NumPy mask multiplied in as it is: float64 comes back for float32 x."""
    if not training or p == 0:
        return x, None
    mask = torch.tensor((np.random.rand(*x.shape) > p) / (1 - p))
    return x * mask, mask


def fwd_size_not_called(x, p, training, generator=None):
    """x.size without the call: torch.rand gets a method and raises TypeError."""
    if not training:
        return x, None
    mask = (torch.rand(x.size, generator=generator) > p).float() / (1 - p)
    return x * mask, mask


def fwd_renamed_generator(x, p, training, gen=None):
    """The generator parameter renamed: the check's generator= keyword is rejected."""
    if not training:
        return x, None
    mask = (torch.rand(x.shape, generator=gen) > p).to(x.dtype) / (1 - p)
    return x * mask, mask


# ---------------------------------------------------------------- ex3.2 gaussian_dropout

def gd_bernoulli_variance(x, p, training, generator=None):
    """Takes the variance of the 0/1 coin, p(1-p), for the mask's."""
    if not training or p == 0:
        return x, None
    noise = 1 + math.sqrt(p * (1 - p)) * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x * noise, noise


def gd_variance_as_std(x, p, training, generator=None):
    """Scales standard normal draws by the variance instead of its square root."""
    if not training or p == 0:
        return x, None
    noise = torch.normal(1.0, p / (1 - p), size=x.shape, generator=generator, dtype=x.dtype)
    return x * noise, noise


def gd_additive(x, p, training, generator=None):
    """Adds zero-mean noise instead of multiplying by noise centred on 1."""
    if not training or p == 0:
        return x, None
    noise = math.sqrt(p / (1 - p)) * torch.randn_like(x)
    return x + noise, noise


def gd_per_sample(x, p, training, generator=None):
    """One noise value per sample, broadcast over its features."""
    if not training or p == 0:
        return x, None
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    noise = (1 + math.sqrt(p / (1 - p)) * torch.randn(shape, generator=generator, dtype=x.dtype))
    noise = noise.expand(x.shape).contiguous()
    return x * noise, noise


def gd_noise_in_eval(x, p, training, generator=None):
    """Forgets the training flag: noise in eval mode too."""
    if p == 0:
        return x, None
    noise = 1 + math.sqrt(p / (1 - p)) * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x * noise, noise


def gd_in_place(x, p, training, generator=None):
    """Multiplies x in place."""
    if not training or p == 0:
        return x, None
    noise = 1 + math.sqrt(p / (1 - p)) * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    x *= noise
    return x, noise


# ---------------------------------------------------------------- ex3.3 Dropout

class DropoutNoSuperInit(nn.Module):
    """Forgets super().__init__()."""

    def __init__(self, p=0.5):
        self.p = p

    def forward(self, x):
        if not self.training:
            return x
        return x * (torch.rand_like(x) > self.p).to(x.dtype) / (1 - self.p)


class DropoutAlwaysOn(nn.Module):
    """Never looks at self.training."""

    def __init__(self, p=0.5):
        super().__init__()
        self.p = p

    def forward(self, x):
        return x * (torch.rand_like(x) > self.p).to(x.dtype) / (1 - self.p)


class DropoutFunctionalDefault(nn.Module):
    """F.dropout: refused, and its training argument defaults to True anyway."""

    def __init__(self, p=0.5):
        super().__init__()
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p)


# ---------------------------------------------------------------- ex3.4 mc_dropout_predict

def mc_whole_model_train(model, x, n_samples):
    """model.train() switches batch norm to batch statistics and updates its buffers."""
    was = model.training
    model.train()
    with torch.no_grad():
        probs = torch.stack([F.softmax(model(x), dim=1) for _ in range(n_samples)])
    model.train(was)
    return probs.mean(0), probs.std(0)


def mc_softmax_wrong_axis(model, x, n_samples):
    """Softmax over the batch axis."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.train()
    with torch.no_grad():
        probs = torch.stack([F.softmax(model(x), dim=0) for _ in range(n_samples)])
    for m, was in modes:
        m.training = was
    return probs.mean(0), probs.std(0)


# ---------------------------------------------------------------- ex3.5 max_norm_

def mn_columns(weight, c):
    """Takes one unit's incoming weights to be a column."""
    with torch.no_grad():
        norms = weight.norm(dim=0, keepdim=True)
        weight.mul_(torch.clamp(c / norms, max=1.0))
    return weight


def mn_without_no_grad(weight, c):
    """Changes a Parameter that requires grad in place while autograd records."""
    norms = weight.norm(dim=1, keepdim=True)
    weight.mul_(torch.clamp(c / norms, max=1.0))
    return weight


BANK = [
    ("ex3.1", "p read as the keep probability", fwd_keeps_with_p,
     ["probability of dropping", "keep probability"]),
    ("ex3.1", "NumPy float64 mask changes the output's dtype", fwd_numpy_mask, ["float64", "dtype"]),
    ("ex3.1", "x.size instead of x.shape (an exception in the learner's code)", fwd_size_not_called,
     ["TypeError"]),
    ("ex3.1", "generator parameter renamed", fwd_renamed_generator, ["generator", "signature"]),
    ("ex3.2", "variance p(1-p) (the coin's) instead of the mask's", gd_bernoulli_variance, ["p(1-p)"]),
    ("ex3.2", "the variance used as the standard deviation", gd_variance_as_std,
     ["standard deviation"]),
    ("ex3.2", "additive noise with mean 0", gd_additive, ["x + noise", "multiplicative"]),
    ("ex3.2", "one noise value per sample", gd_per_sample, ["one draw per sample", "every element"]),
    ("ex3.2", "noise applied in eval mode", gd_noise_in_eval, ["eval"]),
    ("ex3.2", "x modified in place", gd_in_place, ["in place"]),
    ("ex3.3", "forgotten super().__init__()", DropoutNoSuperInit, ["super().__init__()"]),
    ("ex3.3", "self.training ignored", DropoutAlwaysOn, ["self.training", "eval mode"]),
    ("ex3.3", "F.dropout with its default training=True", DropoutFunctionalDefault,
     ["library code", "F.dropout"]),
    ("ex3.4", "model.train() for the passes", mc_whole_model_train, ["batch norm", "buffer"]),
    ("ex3.4", "softmax over the batch axis", mc_softmax_wrong_axis, ["class axis"]),
    ("ex3.5", "columns instead of rows", mn_columns, ["columns, not rows"]),
    ("ex3.5", "in-place change without torch.no_grad()", mn_without_no_grad, ["torch.no_grad()"]),
]
