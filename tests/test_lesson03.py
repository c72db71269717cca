"""Lesson 03 checks: correct answers written in different ways pass, common mistakes fail with a hint.

Also the dropout explorer widget, driven from Python.
"""

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.checks import get, run
from util import SeedLoop

SEEDS = (0, 1, 7, 12345)
# phrases of the reference expressions: no hint may contain them
REFERENCE_PHRASES = ("x * mask / (1 - p)", "torch.rand(", "c / norm", "renorm(",
                     "p / (1 - p)", "p/(1-p)", "sqrt(p", "randn(", "torch.normal(",
                     "np.random.normal(", "normal_(")
CHECKS = SeedLoop(SEEDS, REFERENCE_PHRASES)
HINTS = CHECKS.hints
verdict, assert_fails, assert_passes = CHECKS.verdict, CHECKS.assert_fails, CHECKS.assert_passes


# ---------------------------------------------------------------- ex3.1 dropout_forward

def fwd_reference(x, p, training, generator=None):
    if not training or p == 0:
        return x, None
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= p
    mask = keep.to(x.dtype) / (1 - p)
    return x * mask, mask


def fwd_bernoulli(x, p, training, generator=None):
    """torch.bernoulli with the generator; eval returns a mask of ones."""
    if not training:
        return x.clone(), torch.ones_like(x)
    mask = torch.bernoulli(torch.full_like(x, 1 - p), generator=generator) / (1 - p)
    return x * mask, mask


def fwd_numpy(x, p, training, generator=None):
    """NumPy's global generator, ignoring the torch generator."""
    if not training or p == 0:
        return x, torch.ones_like(x)
    keep = np.random.rand(*x.shape) > p
    mask = torch.from_numpy(keep.astype(np.float32) * np.float32(1 / (1 - p)))
    return x * mask, mask


def fwd_global_uniform(x, p, training, generator=None):
    """Global torch RNG via uniform_, scale multiplied in."""
    if not training:
        return x, None
    u = torch.empty_like(x).uniform_()
    mask = (u > p).float() * (1.0 / (1.0 - p))
    return mask * x, mask


@pytest.mark.parametrize("fn", [fwd_reference, fwd_bernoulli, fwd_numpy, fwd_global_uniform])
def test_ex31_correct(fn):
    assert_passes("ex3.1", fn)


def _no_rescale(x, p, training, generator=None):
    if not training:
        return x, None
    mask = (torch.rand(x.shape, generator=generator) >= p).float()
    return x * mask, mask


def _keep_prob(x, p, training, generator=None):
    if not training:
        return x, None
    mask = (torch.rand(x.shape, generator=generator) < p).float() / (1 - p)
    return x * mask, mask


def _keep_prob_scale(x, p, training, generator=None):
    if not training or p == 0:
        return x, None
    mask = (torch.rand(x.shape, generator=generator) < p).float() / p
    return x * mask, mask


def _active_in_eval(x, p, training, generator=None):
    mask = (torch.rand(x.shape, generator=generator) >= p).float() / (1 - p)
    return x * mask, mask


def _scale_in_eval(x, p, training, generator=None):
    if not training:
        return x * (1 - p), None
    return fwd_reference(x, p, training, generator)


def _shared_batch_mask(x, p, training, generator=None):
    if not training:
        return x, None
    m = (torch.rand(x.shape[1:], generator=generator) >= p).float() / (1 - p)
    mask = m.expand_as(x).clone()
    return x * mask, mask


def _shared_batch_mask_broadcast(x, p, training, generator=None):
    if not training:
        return x, None
    mask = (torch.rand((1,) + tuple(x.shape[1:]), generator=generator) >= p).float() / (1 - p)
    return x * mask, mask


def _reseeded(x, p, training, generator=None):
    if not training:
        return x, None
    torch.manual_seed(0)
    mask = (torch.rand(x.shape) >= p).float() / (1 - p)
    return x * mask, mask


def _fixed_default_generator(x, p, training, generator=None):
    generator = generator or torch.Generator().manual_seed(0)
    return fwd_reference(x, p, training, generator)


def _no_mask(x, p, training, generator=None):
    if not training:
        return x, None
    mask = torch.full_like(x, 1 / (1 - p))
    return x / (1 - p), mask


def _times_keep(x, p, training, generator=None):
    if not training:
        return x, None
    mask = (torch.rand(x.shape, generator=generator) >= p).float() * (1 - p)
    return x * mask, mask


def _scale_outside_mask(x, p, training, generator=None):
    if not training:
        return x, None
    keep = (torch.rand(x.shape, generator=generator) >= p).float()
    return x * keep / (1 - p), keep


def _per_sample(x, p, training, generator=None):
    if not training:
        return x, None
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    mask = ((torch.rand(shape, generator=generator) >= p).float() / (1 - p)).expand_as(x).clone()
    return x * mask, mask


def _per_channel(x, p, training, generator=None):
    if not training:
        return x, None
    if x.dim() == 4:
        m = (torch.rand(x.shape[:2] + (1, 1), generator=generator) >= p).float() / (1 - p)
        mask = m.expand_as(x).clone()
        return x * mask, mask
    return fwd_reference(x, p, training, generator)


def _in_place(x, p, training, generator=None):
    if not training:
        return x, None
    mask = (torch.rand(x.shape, generator=generator) >= p).float() / (1 - p)
    return x.mul_(mask), mask


@pytest.mark.parametrize("fn,hint", [
    (_no_rescale, "not rescaled"),
    (_keep_prob, "probability of dropping"),
    (_keep_prob_scale, "probability of dropping"),
    (_active_in_eval, "must be off in eval mode"),
    (_scale_in_eval, "scale at inference"),
    (_shared_batch_mask, "shared by the batch"),
    (_shared_batch_mask_broadcast, "shared by the batch"),
    (_reseeded, "same mask on every call"),
    (_fixed_default_generator, "same mask on every call"),
    (_no_mask, "no element was dropped"),
    (_times_keep, "divide by (1-p)"),
    (_scale_outside_mask, "Put the scale into the mask"),
    (_per_sample, "one draw per sample"),
    (_per_channel, "whole channels"),
    (_in_place, "in place"),
    (lambda x, p, training, generator=None: x * 2, "pair (out, mask)"),
])
def test_ex31_mistakes(fn, hint):
    assert_fails("ex3.1", fn, hint)


def test_ex31_stub_is_reported():
    """The untouched stub: core reports it as `missing` ("not answered yet"); before the lead's
    change of that contract it was an `error` saying "still the stub"."""
    def stub(x, p, training, generator=None):
        raise NotImplementedError("ex3.1: write your answer here")
    v = verdict("ex3.1", stub)
    assert (v.status == "missing" and "not answered" in v.message) or \
        (v.status == "error" and "still the stub" in v.message), v.text()


def test_ex31_generator_is_optional():
    def needs_generator(x, p, training, generator=None):
        generator.initial_seed()  # AttributeError when no generator is given
        return fwd_reference(x, p, training, generator)
    v = verdict("ex3.1", needs_generator)
    assert v.status == "error" and "AttributeError" in v.message


# ---------------------------------------------------------------- ex3.2 gaussian_dropout

def _std(p):
    return math.sqrt(p / (1 - p))


def gd_reference(x, p, training, generator=None):
    if not training or p == 0:
        return x, None
    noise = 1 + _std(p) * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x * noise, noise


def gd_torch_normal(x, p, training, generator=None):
    """torch.normal with a tensor mean and the generator; eval returns a tensor of ones."""
    if not training or p == 0:
        return x.clone(), torch.ones_like(x)
    noise = torch.normal(torch.ones_like(x), _std(p), generator=generator)
    return noise * x, noise


def gd_numpy(x, p, training, generator=None):
    """NumPy's global generator, cast to x's dtype."""
    if not training or p == 0:
        return x, None
    noise = torch.from_numpy(np.random.normal(1.0, np.sqrt(p / (1 - p)), tuple(x.shape))).to(x.dtype)
    return x * noise, noise


def gd_float32_global(x, p, training, generator=None):
    """Noise drawn in float32 from torch's global generator with normal_, then cast."""
    if not training or p == 0:
        return x, None
    var = p / (1 - p)
    noise = torch.empty(x.shape, dtype=torch.float32).normal_(mean=1.0, std=var ** 0.5).to(x.dtype)
    return torch.mul(x, noise), noise


@pytest.mark.parametrize("fn", [gd_reference, gd_torch_normal, gd_numpy, gd_float32_global])
def test_ex32_correct(fn):
    assert_passes("ex3.2", fn)


def _gd_with_std(std_of_p):
    """A Gaussian dropout whose noise has standard deviation ``std_of_p(p)``."""
    def fn(x, p, training, generator=None):
        if not training or p == 0:
            return x, None
        noise = 1 + std_of_p(p) * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return x * noise, noise
    return fn


_gd_bernoulli_variance = _gd_with_std(lambda p: math.sqrt(p * (1 - p)))
_gd_std_is_variance = _gd_with_std(lambda p: p / (1 - p))
_gd_keep_probability = _gd_with_std(lambda p: math.sqrt((1 - p) / p))


def _gd_additive(x, p, training, generator=None):
    if not training or p == 0:
        return x, None
    noise = _std(p) * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x + noise, noise


def _gd_mean_zero(x, p, training, generator=None):
    if not training or p == 0:
        return x, None
    noise = _std(p) * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x * noise, noise


def _gd_noise_of_shape(shape_of):
    """Noise drawn with shape ``shape_of(x)`` and expanded to x's shape."""
    def fn(x, p, training, generator=None):
        if not training or p == 0:
            return x, None
        noise = 1 + _std(p) * torch.randn(shape_of(x), generator=generator, dtype=x.dtype)
        noise = noise.expand_as(x).clone()
        return x * noise, noise
    return fn


_gd_shared_batch = _gd_noise_of_shape(lambda x: x.shape[1:])
_gd_one_value = _gd_noise_of_shape(lambda x: ())
_gd_per_sample = _gd_noise_of_shape(lambda x: (x.shape[0],) + (1,) * (x.dim() - 1))
_gd_per_channel = _gd_noise_of_shape(
    lambda x: tuple(x.shape[:2]) + (1,) * (x.dim() - 2) if x.dim() == 4 else x.shape)


def _gd_broadcast_noise(x, p, training, generator=None):
    if not training or p == 0:
        return x, None
    noise = 1 + _std(p) * torch.randn((1,) + tuple(x.shape[1:]), generator=generator, dtype=x.dtype)
    return x * noise, noise


def _gd_partly_shared(x, p, training, generator=None):
    if not training or p == 0:
        return x, None
    shared = torch.randn(x.shape[1:], generator=generator, dtype=x.dtype)
    own = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    noise = 1 + _std(p) * (0.6 * shared + 0.8 * own)
    return x * noise, noise


def _gd_in_eval(x, p, training, generator=None):
    noise = 1 + _std(p) * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x * noise, noise


def _gd_scale_in_eval(x, p, training, generator=None):
    if not training:
        return x * (1 - p), None
    return gd_reference(x, p, training, generator)


def _gd_bernoulli_mask(x, p, training, generator=None):
    """ex3.1's mask: the right mean and variance, but two values."""
    if not training or p == 0:
        return x, None
    mask = (torch.rand(x.shape, generator=generator) >= p).to(x.dtype) / (1 - p)
    return x * mask, mask


def _gd_uniform(x, p, training, generator=None):
    """Uniform noise with mean 1 and the right variance."""
    if not training or p == 0:
        return x, None
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype) * 2 - 1
    noise = 1 + _std(p) * math.sqrt(3) * u
    return x * noise, noise


def _gd_reseeded(x, p, training, generator=None):
    torch.manual_seed(0)
    return gd_reference(x, p, training)


def _gd_in_place(x, p, training, generator=None):
    if not training or p == 0:
        return x, None
    noise = 1 + _std(p) * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x.mul_(noise), noise


def _gd_numpy_float64(x, p, training, generator=None):
    if not training or p == 0:
        return x, None
    noise = torch.from_numpy(np.random.normal(1.0, _std(p), tuple(x.shape)))
    return x * noise, noise


def _gd_wrong_noise_returned(x, p, training, generator=None):
    out, noise = gd_reference(x, p, training, generator)
    if noise is None:
        return out, noise
    return out, gd_reference(x, p, training, generator)[1]


def _gd_dropout_op(x, p, training, generator=None):
    """Draws ex3.1's mask with F.dropout: refused by the shortcut rule."""
    if not training or p == 0:
        return x, None
    mask = F.dropout(torch.ones_like(x), p, training=True)
    return x * mask, mask


GD_MISTAKES = [
    (_gd_bernoulli_variance, "p(1-p)"),
    (_gd_std_is_variance, "standard deviation you used"),
    (_gd_keep_probability, "keep probability"),
    (_gd_additive, "out = x + noise"),
    (_gd_mean_zero, "about 0"),
    (_gd_shared_batch, "shared by the batch"),
    (_gd_broadcast_noise, "shared by the batch"),
    (_gd_one_value, "same noise value"),
    (_gd_per_sample, "one draw per sample"),
    (_gd_per_channel, "whole channels"),
    (_gd_partly_shared, "partly shared"),
    (_gd_in_eval, "noise is applied in eval"),
    (_gd_scale_in_eval, "scale at inference"),
    (_gd_bernoulli_mask, "distinct value"),
    (_gd_uniform, "uniform"),
    (_gd_reseeded, "same noise"),
    (_gd_in_place, "in place"),
    (_gd_numpy_float64, "float64"),
    (_gd_wrong_noise_returned, "not x * noise"),
    (_gd_dropout_op, "library code"),
    (lambda x, p, training, generator=None: x * 2, "pair (out, noise)"),
]


@pytest.mark.parametrize("fn,hint", GD_MISTAKES)
def test_ex32_mistakes(fn, hint):
    assert_fails("ex3.2", fn, hint)


def test_ex32_generator_is_optional():
    def needs_generator(x, p, training, generator=None):
        generator.initial_seed()
        return gd_reference(x, p, training, generator)
    v = verdict("ex3.2", needs_generator)
    assert v.status == "error" and "AttributeError" in v.message


def _gd_simulated_record(seed, draw, rng):
    """The record the probe would produce for an answer whose noise, per training call, is
    ``draw(rng, p, shape)`` (float64 NumPy), without running a probe: fast enough to judge
    thousands of records."""
    from helpers.checks.core import encode
    from helpers.checks.lesson03 import _gauss_cases
    data = []
    for _, x, p, training, calls, _ in _gauss_cases(seed):
        xt = torch.from_numpy(x)
        rec = {"calls": [], "x_after": [encode(xt)]}
        for _ in range(calls):
            if training and p > 0:
                noise = torch.from_numpy(draw(rng, p, x.shape)).to(xt.dtype)
                rec["calls"].append(encode((xt * noise, noise)))
            else:
                rec["calls"].append(encode((xt, None)))
        data.append(rec)
    return {"exercise": "ex3.2", "data": data}


def _gd_rates(draw, n, seed0):
    from helpers.checks import get
    ex = get("ex3.2")
    rng = np.random.default_rng(seed0)
    fails = 0
    for k in range(n):
        seed = seed0 + k
        v = ex.run_judge(json.loads(json.dumps(_gd_simulated_record(seed, draw, rng))), seed)
        fails += not v.passed
    return fails


@pytest.mark.slow
def test_ex32_rates_by_simulation():
    """At 300 simulated records (a fresh case seed each): a correct answer never fails, and
    each named confusion never passes. The analytic bounds (judge_gaussian's docstring, and
    test_ex32_confusion_tails_exact below) put both rates below 1e-6; 300 runs show no
    counterexample and guard against a mis-stated bound."""
    def normal(std):
        return lambda rng, p, shape: 1 + std(p) * rng.standard_normal(shape)
    assert _gd_rates(normal(_std), 300, 10_000) == 0
    confusions = {
        "p(1-p)": normal(lambda p: math.sqrt(p * (1 - p))),
        "std = p/(1-p)": normal(lambda p: p / (1 - p)),
        "keep probability": normal(lambda p: math.sqrt((1 - p) / p)),
        "mean 0": lambda rng, p, shape: _std(p) * rng.standard_normal(shape),
        "bernoulli": lambda rng, p, shape: (rng.random(shape) >= p) / (1 - p),
        "uniform": lambda rng, p, shape: 1 + _std(p) * math.sqrt(3) * rng.uniform(-1, 1, shape),
    }
    for name, draw in confusions.items():
        assert _gd_rates(draw, 100, 20_000) == 100, name


def test_ex32_confusion_tails_exact():
    """The analytic side of the rates: for every training case, at the ends of its p range,
    the probability that a named variance confusion lands inside the acceptance interval
    (an exact chi-square computation), and that a correct answer falls outside it, are below
    1e-6; uniform noise passes the Kolmogorov-Smirnov cut with probability below 1e-6 (DKW)."""
    from scipy import stats
    from helpers.checks.lesson03 import ALPHA_32, _gauss_cases, _ks_cut, _variance_interval
    ranges = {(64, 96): (0.2, 0.25), (32, 64): (0.65, 0.75), (6, 3, 12, 12): (0.8, 0.85)}
    pooled = 0
    for _, x, p, training, calls, _ in _gauss_cases(0):
        if not training or p == 0:
            continue
        n = x.size
        pooled += n * calls
        lo, hi = _variance_interval(n)
        assert stats.chi2.cdf(lo * n, n) + stats.chi2.sf(hi * n, n) <= ALPHA_32 * 1.0001
        for q in np.linspace(*ranges[x.shape], 6):
            v = q / (1 - q)
            for wrong in (q * (1 - q), v * v, (1 - q) / q):
                r = wrong / v      # the confusion's sum of squares / n is r * chi2_n / n
                passes = stats.chi2.cdf(hi * n / r, n) - stats.chi2.cdf(lo * n / r, n)
                assert passes < 1e-12, (x.shape, q, r, passes)
    assert pooled == 16928
    cut = _ks_cut(pooled)
    grid = np.linspace(-math.sqrt(3), math.sqrt(3), 20001)
    d_uniform = np.max(np.abs(stats.norm.cdf(grid) - (grid + math.sqrt(3)) / (2 * math.sqrt(3))))
    assert d_uniform > 0.057 and cut < 0.026
    assert 2 * math.exp(-2 * pooled * (d_uniform - cut) ** 2) < 1e-12


# ---------------------------------------------------------------- ex3.3 Dropout

class DropoutReference(nn.Module):
    def __init__(self, p=0.5):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        mask = (torch.rand_like(x) >= self.p).to(x.dtype) / (1 - self.p)
        return x * mask


class DropoutFunctional(nn.Module):
    def __init__(self, p=0.5):
        super().__init__()
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, training=self.training)


class DropoutNumpyMask(nn.Module):
    """NumPy draws the mask; the product stays a torch operation, so autograd works."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if self.training:
            keep = np.random.random_sample(tuple(x.shape)) >= self.p
            return x * torch.as_tensor(keep / (1 - self.p), dtype=x.dtype)
        return x.clone()


class DropoutBernoulli(nn.Module):
    def __init__(self, p: float = 0.5):
        super().__init__()
        self.register_buffer("keep", torch.tensor(1.0 - p))  # a buffer is fine, not a Parameter

    def forward(self, x):
        if not self.training:
            return x
        return x * torch.bernoulli(self.keep.expand_as(x)) / self.keep


class DropoutOwnMask(nn.Module):
    """Uses the learner's own dropout_forward-style helper and a torch.where."""

    def __init__(self, p):
        super().__init__()
        self.p = float(p)

    def forward(self, x):
        if self.training:
            u = torch.empty_like(x).uniform_()
            return torch.where(u < self.p, torch.zeros_like(x), x / (1 - self.p))
        return x


@pytest.mark.parametrize("cls", [DropoutReference, DropoutNumpyMask, DropoutBernoulli,
                                 DropoutOwnMask])
def test_ex33_correct(cls):
    assert_passes("ex3.3", cls)


class DropoutSubclass(nn.Dropout):
    pass


class DropoutWrapper(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.inner = nn.Dropout(p)

    def forward(self, x):
        return self.inner(x)


class DropoutTorchDropout(DropoutReference):
    def forward(self, x):
        return torch.dropout(x, self.p, self.training)


@pytest.mark.parametrize("cls", [DropoutFunctional, nn.Dropout, DropoutSubclass, DropoutWrapper,
                                 DropoutTorchDropout])
def test_ex33_library_is_refused(cls):
    v = verdict("ex3.3", cls)
    assert v.status == "failed" and "library code" in v.message and "formula" in v.message, v.text()


def test_ex33_source_scan_finds_the_library():
    ex = get("ex3.3")
    assert ex.forbidden_in_source("class Dropout(nn.Module):\n    def forward(self, x):\n"
                                  "        return F.dropout(x, self.p, self.training)\n")
    assert not ex.forbidden_in_source("class Dropout(nn.Module):\n    def forward(self, x):\n"
                                      "        return x * (torch.rand_like(x) > self.p) / (1 - self.p)\n")


class IgnoresTraining(DropoutReference):
    def forward(self, x):
        mask = (torch.rand_like(x) >= self.p).to(x.dtype) / (1 - self.p)
        return x * mask


class FunctionalDefault(DropoutReference):
    def forward(self, x):
        return F.dropout(x, self.p)


class ScalesInEval(DropoutReference):
    def forward(self, x):
        if not self.training:
            return x * (1 - self.p)
        return super().forward(x)


class DropoutParts(DropoutReference):
    """The identity unless ``dropping()`` (here: in training); then ``dropped(x)`` (here: a fresh
    mask, rescaled). Each answer below replaces one of the two."""

    def dropping(self):
        return self.training

    def dropped(self, x):
        return x * (torch.rand_like(x) >= self.p).to(x.dtype) / (1 - self.p)

    def forward(self, x):
        if not self.dropping():
            return x
        return self.dropped(x)


class OwnFlag(DropoutParts):
    def __init__(self, p=0.5):
        super().__init__(p)
        self.on = True

    def eval(self):
        self.on = False
        return super().eval()

    def train(self, mode=True):
        self.on = mode
        return super().train(mode)

    def dropping(self):
        return self.on


class OwnFlagEvalOnly(OwnFlag):
    """Overrides eval() only: the parent's .eval() calls child.train(False), not child.eval()."""

    def eval(self):
        self.on = False
        return self

    def train(self, mode=True):
        if mode:
            self.on = True
        return self


class OwnFlagEvalOverride(DropoutParts):
    """Overrides eval() with a flag that .train() never resets (issue 14)."""

    def __init__(self, p=0.5):
        super().__init__(p)
        self.is_eval = False

    def eval(self):
        self.is_eval = True
        return super().eval()

    def dropping(self):
        return not self.is_eval


class NumpyFloat64Mask(DropoutParts):
    """A float64 NumPy mask: the output becomes float64 (issue 14)."""

    def dropped(self, x):
        return x * torch.from_numpy((np.random.rand(*x.shape) >= self.p) / (1 - self.p))


class NoRescaleModule(DropoutParts):
    def dropped(self, x):
        return x * (torch.rand_like(x) >= self.p).to(x.dtype)


class KeepProbModule(DropoutParts):
    def dropped(self, x):
        return x * (torch.rand_like(x) < self.p).to(x.dtype) / (1 - self.p)


class SharedMaskModule(DropoutParts):
    def dropped(self, x):
        return x * (torch.rand(x.shape[1:]) >= self.p).to(x.dtype) / (1 - self.p)


class DetachedModule(DropoutParts):
    def dropped(self, x):
        a = x.detach().numpy()
        return torch.from_numpy(a * (np.random.rand(*a.shape) >= self.p) / (1 - self.p)).float()


class ParameterModule(DropoutReference):
    def __init__(self, p=0.5):
        super().__init__(p)
        self.p = nn.Parameter(torch.tensor(float(p)))


class InPlaceModule(DropoutParts):
    def dropped(self, x):
        return x.mul_((torch.rand_like(x) >= self.p).to(x.dtype) / (1 - self.p))


class NotAModule:
    def __init__(self, p):
        self.p = p

    def __call__(self, x):
        return x


@pytest.mark.parametrize("cls,hint", [
    (IgnoresTraining, "self.training"),
    (FunctionalDefault, "library code"),
    (ScalesInEval, "scale at inference"),
    (OwnFlagEvalOnly, "parent's .eval()"),
    (OwnFlagEvalOverride, "nothing was dropped"),
    (NumpyFloat64Mask, "float64"),
    (NoRescaleModule, "not rescaled"),
    (KeepProbModule, "probability of dropping"),
    (SharedMaskModule, "shared by the batch"),
    (DetachedModule, "autograd"),
    (ParameterModule, "trainable parameter"),
    (NotAModule, "subclass of nn.Module"),
    (InPlaceModule, "in place"),
])
def test_ex33_mistakes(cls, hint):
    assert_fails("ex3.3", cls, hint)


def test_ex33_own_flag_with_both_overrides_passes():
    """Overriding train() (which eval() and parents call) keeps a private flag in sync: fine."""
    assert_passes("ex3.3", OwnFlag)


def test_ex33_misdiagnosis_is_gone():
    v = verdict("ex3.3", OwnFlagEvalOverride)
    assert "not rescaled" not in v.message, v.text()


# ---------------------------------------------------------------- ex3.4 mc_dropout_predict

def mc_reference(model, x, n_samples):
    modes = {m: m.training for m in model.modules()}
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.train()
    with torch.no_grad():
        probs = torch.stack([torch.softmax(model(x), dim=-1) for _ in range(n_samples)])
    for m, was in modes.items():
        m.train(was)
    return probs.mean(0), probs.std(0)


def mc_batched_numpy(model, x, n_samples):
    """All passes in one batch (batch norm in eval mode is per-sample), NumPy statistics."""
    saved = [(m, m.training) for m in model.modules()]
    try:
        for m in model.modules():
            m.train(isinstance(m, nn.modules.dropout._DropoutNd))
        with torch.no_grad():
            logits = model(x.repeat(n_samples, *([1] * (x.dim() - 1)))).reshape(n_samples, x.shape[0], -1)
        p = torch.softmax(logits.double(), -1).numpy()
    finally:
        for m, was in saved:
            m.training = was
    return p.mean(0), p.std(0)


def mc_by_name(model, x, n_samples):
    """Finds dropout by class name, computes the std by hand with Bessel's correction."""
    state = {name: m.training for name, m in model.named_modules()}
    model.eval()
    for m in model.modules():
        if "Dropout" in type(m).__name__:
            m.train()
    total = total_sq = 0
    with torch.no_grad():
        for _ in range(n_samples):
            pr = F.softmax(model(x), dim=1)
            total = total + pr
            total_sq = total_sq + pr ** 2
    mean = total / n_samples
    var = (total_sq - n_samples * mean ** 2) / (n_samples - 1)
    for name, m in model.named_modules():
        m.training = state[name]
    return mean, var.clamp_min(0).sqrt()


@pytest.mark.parametrize("fn", [mc_reference, mc_batched_numpy, mc_by_name])
def test_ex34_correct(fn):
    assert_passes("ex3.4", fn, seeds=(0, 7) if fn is mc_reference else SEEDS)


def _dropout_on(model, among=nn.Module.modules):
    """mc_reference's switch: eval mode, then each nn.Dropout in ``among(model)`` in train mode."""
    model.eval()
    for m in among(model):
        if isinstance(m, nn.Dropout):
            m.train()


def _sampled(model, x, n_samples, f=lambda logits: torch.softmax(logits, -1)):
    """``f`` of the model's output, ``n_samples`` passes without gradients, stacked."""
    with torch.no_grad():
        return torch.stack([f(model(x)) for _ in range(n_samples)])


def _mc_train_mode(model, x, n_samples):
    was = model.training
    model.train()
    probs = _sampled(model, x, n_samples)
    model.train(was)
    return probs.mean(0), probs.std(0)


def _mc_train_mode_buffers_restored(model, x, n_samples):
    saved = copy.deepcopy(model.state_dict())
    out = _mc_train_mode(model, x, n_samples)
    model.load_state_dict(saved)
    return out


def _mc_not_restored(model, x, n_samples):
    _dropout_on(model)
    probs = _sampled(model, x, n_samples)
    return probs.mean(0), probs.std(0)


def _mc_top_level_restore(model, x, n_samples):
    was = model.training
    _dropout_on(model)
    probs = _sampled(model, x, n_samples)
    model.train(was)
    return probs.mean(0), probs.std(0)


def _mc_only_dropout_switched(model, x, n_samples):
    """Switches dropout on but leaves batch norm in whatever mode it was (train in scenario 3)."""
    drops = [(m, m.training) for m in model.modules() if isinstance(m, nn.Dropout)]
    for m, _ in drops:
        m.train()
    probs = _sampled(model, x, n_samples)
    for m, was in drops:
        m.train(was)
    return probs.mean(0), probs.std(0)


def _mc_with(stat=None, among=nn.Module.modules):
    """mc_reference with one piece replaced: ``stat``, the statistics taken of the stacked
    logits, or ``among``, where dropout is looked for. Every module's mode is restored."""
    def fn(model, x, n_samples):
        modes = {m: m.training for m in model.modules()}
        _dropout_on(model, among)
        if stat is None:
            probs = _sampled(model, x, n_samples)
            out = probs.mean(0), probs.std(0)
        else:
            out = stat(_sampled(model, x, n_samples, f=lambda logits: logits))
        for m, was in modes.items():
            m.train(was)
        return out
    return fn


_mc_children_only = _mc_with(among=nn.Module.children)


@pytest.mark.parametrize("fn,hint", [
    (_mc_train_mode, "batch norm buffers must stay untouched"),
    (_mc_train_mode_buffers_restored, "batch's own statistics"),
    (_mc_not_restored, "modes not restored"),
    (_mc_top_level_restore, "modes not restored"),
    (_mc_only_dropout_switched, "batch norm buffers must stay untouched"),
    (_mc_with(lambda L: (torch.softmax(L.mean(0), -1), torch.softmax(L, -1).std(0))),
     "softmax of the mean logits"),
    (_mc_with(lambda L: (torch.softmax(L, -1).mean(0), L.std(0))), "std of the logits"),
    (_mc_with(lambda L: (torch.softmax(L, -1).mean(0), torch.softmax(L, -1).var(0))),
     "variance"),
    (_mc_with(lambda L: (L.mean(0), L.std(0))), "look like logits"),
    (_mc_with(lambda L: (torch.softmax(L, 1).mean(0), torch.softmax(L, 1).std(0))),
     "class axis"),
    (_mc_with(lambda L: (torch.softmax(L, -1).mean(1), torch.softmax(L, -1).std(1))), "shape"),
    (_mc_children_only, "dropout was not active"),
    (lambda model, x, n: torch.softmax(model(x), -1), "pair (mean_probs, std_probs)"),
])
def test_ex34_mistakes(fn, hint):
    assert_fails("ex3.4", fn, hint, seeds=(0, 12345))


# ---------------------------------------------------------------- the dropout explorer widget

def test_dropout_explorer_numbers():
    from helpers.widgets import DropoutExplorer

    image = torch.from_numpy(np.random.default_rng(0).uniform(0.0, 1.0, (8, 8)))
    image[0, :3] = 0.0  # blank pixels, as in the digits
    ex = DropoutExplorer(image, p=0.3, n_draws=2000, seed=0)
    assert ex.mode.value == "train"
    assert abs(ex.scale - 1 / 0.7) < 1e-12
    assert 0.1 < ex.dropped_fraction < 0.5  # one draw over 64 pixels
    assert abs(ex.average_ratio - 1.0) < 0.05  # unbiased on average
    noise_03 = ex.noise
    ex.p.value = 0.7
    assert abs(ex.scale - 1 / 0.3) < 1e-12
    assert ex.noise > 2 * noise_03  # sqrt(p / (1 - p)) grows fast
    assert abs(ex.average_ratio - 1.0) < 0.1
    before = ex.output.copy()
    ex.draw.value = 1  # another random mask
    assert not np.array_equal(before, ex.output)
    ex.mode.value = "eval"
    np.testing.assert_array_equal(ex.output, ex.image)
    assert ex.output_ratio == 1.0 and ex.dropped_fraction == 0.0
    ex.mode.value = "eval, scaled by (1-p): wrong"
    assert abs(ex.output_ratio - 0.3) < 1e-9
    assert "wrong" in ex.numbers.value
    ex.p.value = 0.0
    ex.mode.value = "train"
    np.testing.assert_allclose(ex.output, ex.image)


# ---------------------------------------------------------------- ex3.5 max_norm_

def clip_norms(weight, c, dim):
    """Scales, in place, each slice whose norm along ``dim`` is above c down to norm c."""
    with torch.no_grad():
        norms = weight.norm(dim=dim, keepdim=True)
        weight.mul_(torch.where(norms > c, c / norms, torch.ones_like(norms)))
    return weight


def mn_reference(weight, c):
    return clip_norms(weight, c, dim=1)


def mn_loop(weight, c):
    """Row by row, an indexed assignment."""
    with torch.no_grad():
        for i in range(weight.shape[0]):
            n = torch.linalg.vector_norm(weight[i])
            if n > c:
                weight[i] = weight[i] * (c / n)
    return weight


def _mn_renorm(weight, c):
    """torch.renorm computes the whole result: refused (DESIGN.md's shortcut table)."""
    with torch.no_grad():
        weight.copy_(torch.renorm(weight, 2, 0, c))
    return weight


def mn_float32_numpy(weight, c):
    """NumPy norms in float64, scale cast back."""
    with torch.no_grad():
        n = np.linalg.norm(weight.detach().numpy().astype(np.float64), axis=1)
        s = np.where(n > c, c / n, 1.0)
        big = torch.from_numpy(n > c)
        weight[big] *= torch.from_numpy(s[n > c]).to(weight.dtype)[:, None]
    return weight


@pytest.mark.parametrize("fn", [mn_reference, mn_loop, mn_float32_numpy])
def test_ex35_correct(fn):
    assert_passes("ex3.5", fn)


def _mn_columns(weight, c):
    return clip_norms(weight, c, dim=0)


def _mn_all_rows(weight, c):
    with torch.no_grad():
        weight.mul_(c / weight.norm(dim=1, keepdim=True))
    return weight


def _mn_copy(weight, c):
    n = weight.norm(dim=1, keepdim=True)
    return (weight * torch.where(n > c, c / n, torch.ones_like(n))).detach()


def _mn_returns_none(weight, c):
    mn_reference(weight, c)


def _mn_whole_matrix(weight, c):
    with torch.no_grad():
        n = weight.norm()
        if n > c:
            weight.mul_(c / n)
    return weight


def _mn_clamp(weight, c):
    with torch.no_grad():
        weight.clamp_(-c, c)
    return weight


def _mn_no_grad_missing(weight, c):
    n = weight.norm(dim=1, keepdim=True)
    weight.mul_(torch.where(n > c, c / n, torch.ones_like(n)))
    return weight


def _mn_touches_short_rows(weight, c):
    with torch.no_grad():
        n = weight.norm(dim=1, keepdim=True)
        weight.mul_(c / torch.maximum(n, torch.full_like(n, c)))
        weight.mul_(1.0 + 1e-7)
    return weight


@pytest.mark.parametrize("fn,hint", [
    (_mn_columns, "columns, not rows"),
    (_mn_all_rows, "shorter than c"),
    (_mn_copy, "unchanged"),
    (_mn_returns_none, "return weight itself"),
    (_mn_whole_matrix, "whole matrix"),
    (_mn_clamp, "clipped single elements"),
    (_mn_no_grad_missing, "torch.no_grad()"),
    (_mn_touches_short_rows, "bit for bit"),
])
def test_ex35_mistakes(fn, hint):
    assert_fails("ex3.5", fn, hint)


# ---------------------------------------------------------------- case seeds, statistics, hints

def test_hard_coded_answers_fail_at_another_seed():
    """An answer that replays the published (seed 0) outputs passes seed 0 and fails seed 1."""
    for ex, fn in (("ex3.1", fwd_reference), ("ex3.2", gd_reference)):
        outputs = []
        run(ex, lambda *a, **k: outputs.append(fn(*a, **k)) or outputs[-1], seed=0)
        it = {"i": 0}

        def answer(x, p, training, generator=None):
            out = outputs[it["i"] % len(outputs)]
            it["i"] += 1
            return out
        assert verdict(ex, answer, 0).passed, ex
        it["i"] = 0
        assert not verdict(ex, answer, 1).passed, ex


@pytest.mark.slow
def test_statistical_checks_hold_at_200_seeds():
    """The reference passes ex3.1 and ex3.3 at 200 seeds (their false-failure rates are stated
    in the judges' docstrings, below 1e-6)."""
    for seed in range(200):
        for ex, fn in (("ex3.1", fwd_reference), ("ex3.3", DropoutReference)):
            v = run(ex, fn, seed=seed)[0]
            assert v.passed, (ex, seed, v.text())


@pytest.mark.slow
def test_mc_check_holds_at_200_seeds():
    """The MC-dropout judge (Bernstein bounds) passes a correct answer at 200 seeds."""
    for seed in range(1000, 1200):
        v = run("ex3.4", mc_batched_numpy, seed=seed)[0]
        assert v.passed, (seed, v.text())


def test_hints_never_give_the_reference_expression():
    """The mistakes' hints, produced here (order-independent) at two seeds, never contain the
    reference expressions (and neither did any hint the other tests saw)."""
    cases = [("ex3.1", f) for f in (_no_rescale, _keep_prob, _keep_prob_scale, _active_in_eval,
                                    _scale_in_eval, _times_keep, _scale_outside_mask, _per_sample)]
    cases += [("ex3.2", f) for f, _ in GD_MISTAKES]
    cases += [("ex3.3", c) for c in (IgnoresTraining, ScalesInEval, OwnFlagEvalOverride,
                                     NoRescaleModule, KeepProbModule, NumpyFloat64Mask)]
    cases += [("ex3.5", f) for f in (_mn_columns, _mn_all_rows, _mn_copy, _mn_whole_matrix,
                                     _mn_clamp, _mn_no_grad_missing)]
    for seed in (3, 12345):
        for ex, fn in cases:
            v = verdict(ex, fn, seed)
            assert not v.passed, (ex, fn, v.text())
    for h in HINTS:
        for phrase in REFERENCE_PHRASES:
            assert phrase not in h, (phrase, h)


# ---------------------------------------------------------------- library shortcuts (DESIGN.md)

def _mn_tensor_renorm(weight, c):
    with torch.no_grad():
        weight.copy_(weight.renorm(2, 0, c))
    return weight


def _mn_tensor_renorm_(weight, c):
    with torch.no_grad():
        weight.renorm_(2, 0, c)
    return weight


def _fwd_functional(x, p, training, generator=None):
    out = F.dropout(x, p, training=training)
    mask = torch.where(x != 0, out / x, torch.zeros_like(x)) if training else None
    return out, mask


def _fwd_torch_dropout(x, p, training, generator=None):
    out = torch.dropout(x, p, training)
    return out, (out / x if training else None)


def _fwd_module(x, p, training, generator=None):
    out = nn.Dropout(p).train(training)(x)
    return out, (out / x if training else None)


def _fwd_native(x, p, training, generator=None):
    if not training or p == 0:
        return x, None
    out, keep = torch.native_dropout(x, p, True)
    return out, keep.to(x.dtype) / (1 - p)


def _fwd_aten(x, p, training, generator=None):
    if not training or p == 0:
        return x, None
    out, keep = torch.ops.aten.native_dropout(x, p, True)
    return out, keep.to(x.dtype) / (1 - p)


def _fwd_dropout2d_flat(x, p, training, generator=None):
    if not training or p == 0:
        return x, None
    mask = F.dropout1d(torch.ones(1, x.numel(), dtype=x.dtype), p, training=True).reshape(x.shape)
    return x * mask, mask


@pytest.mark.parametrize("ex,fn", [
    ("ex3.1", _fwd_functional), ("ex3.1", _fwd_torch_dropout), ("ex3.1", _fwd_module),
    ("ex3.1", _fwd_native), ("ex3.1", _fwd_aten), ("ex3.1", _fwd_dropout2d_flat),
    ("ex3.2", _gd_dropout_op),
    ("ex3.5", _mn_renorm), ("ex3.5", _mn_tensor_renorm), ("ex3.5", _mn_tensor_renorm_),
])
def test_library_shortcuts_are_refused(ex, fn):
    """Each exercise's forbid list (DESIGN.md's shortcut table) refuses the library call that
    computes its whole result. Ops reached through torch's built-ins (torch.renorm,
    torch.native_dropout, the aten ops) need core's op matching."""
    v = verdict(ex, fn)
    if not (v.status == "failed" and "library code" in v.message):
        pytest.xfail(f"core support pending: {v.text()[:200]}")


def test_forbid_lists_match_the_design():
    from helpers.checks.lesson03 import FORBID_DROPOUT
    for ex in ("ex3.1", "ex3.2", "ex3.3"):
        assert set(get(ex).forbid) == set(FORBID_DROPOUT), ex
    for name in ("torch.nn.functional.dropout", "torch.nn.Dropout", "torch.dropout",
                 "torch.native_dropout", "torch.ops.aten.dropout", "torch.ops.aten.native_dropout",
                 "torch.feature_dropout", "torch.alpha_dropout", "torch.nn.functional.alpha_dropout",
                 "torch.nn.functional.dropout1d", "torch.nn.functional.dropout2d",
                 "torch.nn.functional.dropout3d", "torch.nn.functional.feature_alpha_dropout"):
        assert name in FORBID_DROPOUT, name
    assert set(get("ex3.5").forbid) == {"torch.renorm", "torch.Tensor.renorm",
                                         "torch.Tensor.renorm_"}
    assert not get("ex3.4").forbid


# ---------------------------------------------------------------- ex3.4: a BatchNorm2d too

def _mc_bn1d_only(model, x, n_samples):
    """Training mode, then only BatchNorm1d modules back in eval mode: the conv net's
    BatchNorm2d keeps using batch statistics and overwriting its buffers."""
    modes = {m: m.training for m in model.modules()}
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.eval()
    probs = _sampled(model, x, n_samples)
    for m, was in modes.items():
        m.train(was)
    return probs.mean(0), probs.std(0)


def test_ex34_batchnorm1d_only_fails_on_the_conv_net():
    v = verdict("ex3.4", _mc_bn1d_only, 0)
    assert v.status == "failed" and "BatchNorm2d" in v.message and "conv net" in v.message, v.text()


# ---------------------------------------------------------------- every sentence is enforced

def _fwd_p0_drops_all(x, p, training, generator=None):
    if training and p == 0:
        return torch.zeros_like(x), torch.zeros_like(x)
    return fwd_reference(x, p, training, generator)


def _fwd_wrong_mask_returned(x, p, training, generator=None):
    out, mask = fwd_reference(x, p, training, generator)
    return out, (None if mask is None else fwd_reference(x, p, training, generator)[1])


def _fwd_float64_mask(x, p, training, generator=None):
    if not training or p == 0:
        return x, None
    mask = torch.from_numpy((np.random.rand(*x.shape) >= p) / (1 - p))
    return x * mask, mask


class CachedMaskModule(DropoutParts):
    """Draws its mask once and reuses it on every call."""

    def dropped(self, x):
        if getattr(self, "_mask", None) is None or self._mask.shape != x.shape:
            self._mask = (torch.rand_like(x) >= self.p).to(x.dtype) / (1 - self.p)
        return x * self._mask


def _mn_as_parameter_lost(weight, c):
    """Changes the weight in place, then returns a new Parameter instead of it."""
    mn_reference(weight, c)
    return nn.Parameter(weight.detach().clone())


# (requirement sentence of the exercise's text, an answer breaking only it, hint substring)
REQUIREMENTS = {
    "ex3.1": [
        ("returning (out, mask)", lambda x, p, training, generator=None: x * 2, "pair (out, mask)"),
        ("p is the probability of dropping an element", _keep_prob, "probability of dropping"),
        ("one independent Bernoulli per element of x", _per_sample, "one draw per sample"),
        ("one independent Bernoulli per element of x (images)", _per_channel, "whole channels"),
        ("a new mask on every call", _reseeded, "same mask on every call"),
        ("mask with the shape of x", _shared_batch_mask_broadcast, "shared by the batch"),
        ("values 0 (dropped) or 1/(1-p) (kept)", _no_rescale, "not rescaled"),
        ("return out = x * mask", _fwd_wrong_mask_returned, "not x * mask"),
        ("keep x's dtype", _fwd_float64_mask, "float64"),
        ("with training=False, out is x itself (no scaling)", _scale_in_eval, "scale at inference"),
        ("with training=False, out is x itself (dropout off)", _active_in_eval, "must be off in eval mode"),
        ("with p == 0, out is x itself", _fwd_p0_drops_all, "With p = 0 nothing is dropped"),
        ("Do not modify x in place", _in_place, "in place"),
        ("the library's dropout is refused", _fwd_functional, "library code"),
    ],
    "ex3.2": [
        ("returning (out, noise)", lambda x, p, training, generator=None: x * 2, "pair (out, noise)"),
        ("noise has the shape of x", _gd_broadcast_noise, "shared by the batch"),
        ("noise has the dtype of x", _gd_numpy_float64, "float64"),
        ("one independent draw per element", _gd_per_sample, "one draw per sample"),
        ("one independent draw per element (not per channel)", _gd_per_channel, "whole channels"),
        ("one independent draw per element (not shared by the batch)", _gd_partly_shared, "partly shared"),
        ("new draws on every call", _gd_reseeded, "same noise"),
        ("from a normal distribution", _gd_uniform, "uniform"),
        ("from a normal distribution (not ex3.1's mask)", _gd_bernoulli_mask, "distinct value"),
        ("with mean 1", _gd_mean_zero, "about 0"),
        ("the same variance as the mask of exercise 3.1", _gd_bernoulli_variance, "p(1-p)"),
        ("the same variance (std, not variance)", _gd_std_is_variance, "standard deviation you used"),
        ("the same variance at this p (p drops)", _gd_keep_probability, "keep probability"),
        ("return out = x * noise", _gd_additive, "out = x + noise"),
        ("return out = x * noise (the noise applied)", _gd_wrong_noise_returned, "not x * noise"),
        ("with training=False, out equals x", _gd_in_eval, "noise is applied in eval"),
        ("Do not modify x in place", _gd_in_place, "in place"),
    ],
    "ex3.3": [
        ("class Dropout(nn.Module)", NotAModule, "subclass of nn.Module"),
        ("in training mode, inverted dropout", NoRescaleModule, "not rescaled"),
        ("inverted dropout with drop probability p", KeepProbModule, "probability of dropping"),
        ("a fresh mask per call", CachedMaskModule, "same mask"),
        ("in eval mode, the identity", ScalesInEval, "scale at inference"),
        ("follow .train() / .eval() (self.training)", IgnoresTraining, "self.training"),
        ("also when called on a parent module", OwnFlagEvalOnly, "parent's .eval()"),
        ("let gradients flow", DetachedModule, "autograd"),
        ("keep the input's dtype", NumpyFloat64Mask, "float64"),
        ("have no trainable parameters", ParameterModule, "trainable parameter"),
        ("do not modify the input in place", InPlaceModule, "in place"),
        ("the library's dropout is refused", DropoutWrapper, "library code"),
    ],
    "ex3.4": [
        ("returning (mean_probs, std_probs)", lambda model, x, n: torch.softmax(model(x), -1),
         "pair (mean_probs, std_probs)"),
        ("both of shape (N, K)", _mc_with(lambda L: (torch.softmax(L, -1).mean(1),
                                                     torch.softmax(L, -1).std(1))), "shape"),
        ("the mean of softmax(model(x))", _mc_with(lambda L: (torch.softmax(L.mean(0), -1),
                                                              torch.softmax(L, -1).std(0))),
         "softmax of the mean logits"),
        ("softmax over the class axis", _mc_with(lambda L: (torch.softmax(L, 1).mean(0),
                                                            torch.softmax(L, 1).std(0))), "class axis"),
        ("the standard deviation", _mc_with(lambda L: (torch.softmax(L, -1).mean(0),
                                                       torch.softmax(L, -1).var(0))), "variance"),
        ("only the dropout modules in training mode", _mc_children_only, "dropout was not active"),
        ("batch norm in particular runs in eval mode", _mc_train_mode_buffers_restored,
         "batch's own statistics"),
        ("its running statistics must not change", _mc_train_mode, "batch norm buffers must stay untouched"),
        ("every other module (every kind of batch norm) in eval mode", _mc_bn1d_only, "BatchNorm2d"),
        ("every module's mode exactly what it was", _mc_top_level_restore, "modes not restored"),
    ],
    "ex3.5": [
        ("the weight of an nn.Linear (one row per unit)", _mn_columns, "columns, not rows"),
        ("apply the constraint in place", _mn_copy, "unchanged"),
        ("under torch.no_grad()", _mn_no_grad_missing, "torch.no_grad()"),
        ("return weight itself", _mn_returns_none, "return weight itself"),
        ("return weight itself (not a new Parameter)", _mn_as_parameter_lost, "return weight itself"),
        ("rows that satisfy the constraint stay exactly as they were", _mn_all_rows, "shorter than c"),
        ("bit for bit", _mn_touches_short_rows, "bit for bit"),
        ("shrunk back to length c, keeping its direction", _mn_clamp, "clipped single elements"),
        ("each unit's incoming weight vector (not the whole matrix)", _mn_whole_matrix, "whole matrix"),
    ],
}


@pytest.mark.parametrize("ex,sentence,fn,hint", [
    pytest.param(ex, sentence, fn, hint, id=f"{ex}-{i}")
    for ex, rows in REQUIREMENTS.items() for i, (sentence, fn, hint) in enumerate(rows)])
def test_every_requirement_is_enforced(ex, sentence, fn, hint):
    """Each requirement the exercise's text states fails, with its hint, when broken alone."""
    assert_fails(ex, fn, hint, seeds=(0, 12345) if ex == "ex3.4" else (0, 1, 12345))


# ---------------------------------------------------------------- the mask statistics' bounds

def _count_test_cases():
    """(rows, elements per row, p values) of every row-count and column-count test that ex3.1
    and ex3.3 run: a (N, m) drop pattern is tested by rows (N terms of Binomial(m, p)) and by
    columns (m terms of Binomial(N, p)); images also by channel maps. p is drawn from a range
    and rounded to 3 decimals, so every possible p is listed."""
    def grid(lo, hi):
        return np.round(np.arange(lo, hi + 1e-9, 0.001), 3)
    low, high, small = grid(0.2, 0.4), grid(0.6, 0.7), grid(0.08, 0.15)
    shapes = [((32, 96), low), ((32, 64), low), ((4, 432), high), ((32, 64), small)]
    out = []
    for (N, m), ps in shapes:
        out += [(N, m, ps), (m, N, ps)]
    out.append((12, 144, high))                 # channel maps of the (4, 3, 12, 12) images
    return out


def test_ex31_count_tests_false_failure_bound():
    """A correct answer's row or column counts are independent Binomial(m, p); the judge's
    chi-square statistic S is a sum of their standardised squares and fails when its
    Wilson-Hilferty p-value is below P_FAIL. The exact Chernoff bound
    P(S >= s) <= min_t E[exp(t T)]^N exp(-t s), with T's exact distribution, stays below 3e-8
    at the threshold s for every shape and every p the cases use: with at most 13 such tests
    per check, the exact binomial rate intervals (1e-9 each) and the hypergeometric test
    between calls, ex3.1 and ex3.3 fail a correct answer with probability below 1e-6."""
    from scipy import optimize, special, stats
    from helpers.checks.lesson03 import P_FAIL, _chi2_sf
    worst = 0.0
    for N, m, ps in _count_test_cases():
        s = optimize.brentq(lambda v: _chi2_sf(v, N) - P_FAIL, N, 50 * N + 1000)
        k = np.arange(m + 1)
        t = np.linspace(1e-4, 0.6, 600)[:, None]
        for p in ps:
            T = (k - m * p) ** 2 / (m * p * (1 - p))
            log_mgf = special.logsumexp(t * T[None, :] + stats.binom.logpmf(k, m, p)[None, :], axis=1)
            worst = max(worst, float(np.exp(np.min(N * log_mgf - t[:, 0] * s))))
    assert worst < 3e-8, worst


def test_ex31_rate_interval_is_exact():
    from scipy import stats
    from helpers.checks.lesson03 import RATE_ALPHA, _rate_interval
    for n, p in ((2048, 0.08), (3072, 0.4), (1728, 0.7)):
        lo, hi = _rate_interval(n, p)
        assert stats.binom.cdf(round(lo * n) - 1, n, p) + stats.binom.sf(round(hi * n), n, p) <= RATE_ALPHA
        # the keep-probability confusion (drop rate 1 - p) is far outside
        passes = stats.binom.cdf(round(hi * n), n, 1 - p) - stats.binom.cdf(round(lo * n) - 1, n, 1 - p)
        assert not lo <= 1 - p <= hi and passes < 1e-12, passes


def test_ex34_wrapping_the_course_helper_is_refused():
    """The lesson body's models.dropout_passes computes the passes: core refuses calls into
    helpers from an answer (the shortcut rule), whatever the answer does with the result."""
    from helpers import models

    def mc_wrap(model, x, n_samples):
        modes = {m: m.training for m in model.modules()}
        probs = models.dropout_passes(model, x, T=n_samples)
        for m, was in modes.items():
            m.train(was)
        return probs.mean(0), probs.std(0)
    v = verdict("ex3.4", mc_wrap, 0)
    assert v.status == "failed" and "dropout_passes" in v.message, v.text()
