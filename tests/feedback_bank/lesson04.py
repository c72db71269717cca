"""Lesson 04 (batch norm): realistic wrong answers for measuring feedback quality (issue 18).

Each entry: (exercise id, what the mistake is, the wrong answer, phrases of which the verdict
message must contain at least one, case-insensitive, for the feedback to teach). Written fresh
for the bank, not copied from tests/test_lesson04.py.
"""

from __future__ import annotations

import torch
from torch import nn


# ------------------------------------------------------------------ ex4.1 batch_norm

def bn_always_4d(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Written for images only: reduces over (0, 2, 3) whatever the input."""
    c = (1, -1, 1, 1)
    if training:
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        n = x.numel() / x.shape[1]
        rm = running_mean * (1 - momentum) + mean * momentum
        rv = running_var * (1 - momentum) + var * n / (n - 1) * momentum
    else:
        mean, var, rm, rv = running_mean, running_var, running_mean, running_var
    return (x - mean.view(c)) / (var.view(c) + eps).sqrt() * gamma.view(c) + beta.view(c), rm, rv


def _stats(x):
    dims = [d for d in range(x.dim()) if d != 1]
    shape = [1, -1] + [1] * (x.dim() - 2)
    return dims, shape


def bn_keras_momentum(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Keras's convention: the old value keeps `momentum`."""
    dims, shape = _stats(x)
    if training:
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        n = x.numel() // x.shape[1]
        rm = momentum * running_mean + (1 - momentum) * mean
        rv = momentum * running_var + (1 - momentum) * var * n / (n - 1)
    else:
        mean, var, rm, rv = running_mean, running_var, running_mean, running_var
    y = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + eps)
    return y * gamma.reshape(shape) + beta.reshape(shape), rm, rv


def bn_batch_count(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Bessel's correction with the batch size, also for images."""
    dims, shape = _stats(x)
    if training:
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        N = x.shape[0]
        rm = (1 - momentum) * running_mean + momentum * mean
        rv = (1 - momentum) * running_var + momentum * var * N / (N - 1)
    else:
        mean, var, rm, rv = running_mean, running_var, running_mean, running_var
    y = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + eps)
    return y * gamma.reshape(shape) + beta.reshape(shape), rm, rv


def bn_float32_buffer(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Builds the output in a fresh tensor made without dtype= (float32)."""
    dims, shape = _stats(x)
    if training:
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        n = x.numel() // x.shape[1]
        rm = (1 - momentum) * running_mean + momentum * mean
        rv = (1 - momentum) * running_var + momentum * var * n / (n - 1)
    else:
        mean, var, rm, rv = running_mean, running_var, running_mean, running_var
    y = torch.empty(x.shape)
    y[:] = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + eps) * gamma.reshape(shape) \
        + beta.reshape(shape)
    return y, rm, rv


def bn_biased_buffer(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """One variance for both jobs: the biased one also goes into running_var."""
    dims, shape = _stats(x)
    if training:
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        rm = running_mean + momentum * (mean - running_mean)
        rv = running_var + momentum * (var - running_var)
    else:
        mean, var, rm, rv = running_mean, running_var, running_mean, running_var
    y = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + eps)
    return gamma.reshape(shape) * y + beta.reshape(shape), rm, rv


# ------------------------------------------------------------------ ex4.2 BatchNorm1d

class BNNoSuper(nn.Module):
    """Forgets super().__init__()."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x):
        return x


class _Base(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0))

    def _normalise(self, x, mean, var):
        shape = [1, -1] + [1] * (x.dim() - 2)
        return (self.weight.reshape(shape) * (x - mean.reshape(shape))
                / torch.sqrt(var.reshape(shape) + self.eps) + self.bias.reshape(shape))

    def _batch(self, x):
        dims = [0] if x.dim() == 2 else [0, 2]
        return x.mean(dims), x.var(dims, unbiased=False), x.numel() // x.shape[1]


class BNMisspeltBuffer(_Base):
    """`running_variance` instead of nn.BatchNorm1d's `running_var`."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, momentum)
        del self.running_var
        self.register_buffer("running_variance", torch.ones(num_features))

    def forward(self, x):
        if self.training:
            mean, var, n = self._batch(x)
            with torch.no_grad():
                self.num_batches_tracked += 1
                self.running_mean.lerp_(mean, self.momentum)
                self.running_variance.lerp_(var * n / (n - 1), self.momentum)
            return self._normalise(x, mean, var)
        return self._normalise(x, self.running_mean, self.running_variance)


class BNNoneUnhandled(_Base):
    """Uses self.momentum as a number even when it is None."""

    def forward(self, x):
        if self.training:
            mean, var, n = self._batch(x)
            with torch.no_grad():
                self.num_batches_tracked += 1
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * n / (n - 1))
            return self._normalise(x, mean, var)
        return self._normalise(x, self.running_mean, self.running_var)


class BNFloatCount(_Base):
    """num_batches_tracked = torch.zeros(()) (a float tensor)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, momentum)
        self.num_batches_tracked = torch.zeros(())

    def forward(self, x):
        if self.training:
            mean, var, n = self._batch(x)
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1 / self.num_batches_tracked
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * var * n / (n - 1))
            return self._normalise(x, mean, var)
        return self._normalise(x, self.running_mean, self.running_var)


class BNBatchStatsInEval(_Base):
    """Normalises with the batch statistics in both modes."""

    def forward(self, x):
        mean, var, n = self._batch(x)
        if self.training:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * var * n / (n - 1))
        return self._normalise(x, mean, var)


# ------------------------------------------------------------------ ex4.3 batch_norm_backward

def bwd_var_sign(dy, x, gamma, eps=1e-5):
    """Staged derivation with the variance's gradient sign lost."""
    n = x.shape[0]
    mu = x.mean(0)
    var = ((x - mu) ** 2).mean(0)
    inv = (var + eps) ** -0.5
    xh = (x - mu) * inv
    dxh = dy * gamma
    dvar = (dxh * (x - mu)).sum(0) * 0.5 * inv ** 3          # should carry -0.5
    dmu = -(dxh * inv).sum(0)
    dx = dxh * inv + dvar * 2 * (x - mu) / n + dmu / n
    return dx, (dy * xh).sum(0), dy.sum(0)


def bwd_no_gamma(dy, x, gamma, eps=1e-5):
    n = x.shape[0]
    s = (x.var(0, unbiased=False) + eps).sqrt()
    xh = (x - x.mean(0)) / s
    dx = (n * dy - dy.sum(0) - xh * (dy * xh).sum(0)) / (n * s)
    return dx, (dy * xh).sum(0), dy.sum(0)


def bwd_unsummed(dy, x, gamma, eps=1e-5):
    n = x.shape[0]
    s = (x.var(0, unbiased=False) + eps).sqrt()
    xh = (x - x.mean(0)) / s
    dx = gamma / (n * s) * (n * dy - dy.sum(0) - xh * (dy * xh).sum(0))
    return dx, dy * xh, dy


# ------------------------------------------------------------------ ex4.4 layer_norm

def ln_over_batch(x, gamma, beta, eps=1e-5):
    mean = x.mean(0, keepdim=True)
    var = x.var(0, unbiased=False, keepdim=True)
    return gamma * (x - mean) / torch.sqrt(var + eps) + beta


def ln_in_place(x, gamma, beta, eps=1e-5):
    x -= x.mean(-1, keepdim=True)
    x /= torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return gamma * x + beta


def ln_typo(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    return gamma * (x - mean) / torch.sqroot(var + eps) + beta


BANK = [
    ("ex4.1", "statistics hard-coded for (N, C, H, W): a 2-D input raises", bn_always_4d,
     ["statistics over the batch axis 0", "axis beyond"]),
    ("ex4.1", "Keras momentum convention (old value weighted by momentum)", bn_keras_momentum,
     ["weight of the *new* batch statistic", "keras"]),
    ("ex4.1", "unbiased correction with the batch size N instead of N*H*W", bn_batch_count,
     ["the batch size", "values per channel"]),
    ("ex4.1", "output built in a float32 tensor", bn_float32_buffer, ["dtype"]),
    ("ex4.1", "biased variance in running_var", bn_biased_buffer, ["*unbiased* batch variance"]),
    ("ex4.2", "forgotten super().__init__()", BNNoSuper, ["super().__init__()"]),
    ("ex4.2", "misspelt buffer name running_variance", BNMisspeltBuffer, ["running_var", "register_buffer"]),
    ("ex4.2", "momentum=None used as a number", BNNoneUnhandled, ["cumulative average"]),
    ("ex4.2", "num_batches_tracked as a float tensor", BNFloatCount, ["long (int64)"]),
    ("ex4.2", "batch statistics in eval mode", BNBatchStatsInEval, ["in eval mode batch norm uses running_mean"]),
    ("ex4.3", "sign error in the batch-variance term", bwd_var_sign, ["batch variance has the wrong sign"]),
    ("ex4.3", "gamma left out of dx", bwd_no_gamma, ["gamma is missing from dx"]),
    ("ex4.3", "dgamma and dbeta not summed over the batch", bwd_unsummed, ["sum over the batch axis"]),
    ("ex4.4", "normalised over the batch axis", ln_over_batch, ["batch axis"]),
    ("ex4.4", "x modified in place", ln_in_place, ["changed its input x"]),
    ("ex4.4", "misspelt torch function (sqroot)", ln_typo, ["sqrt", "has no attribute"]),
]
