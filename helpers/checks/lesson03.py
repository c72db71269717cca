"""Checks for lesson 03 (dropout): ex3.1 dropout_forward, ex3.2 gaussian_dropout,
ex3.3 Dropout, ex3.4 mc_dropout_predict, ex3.5 max_norm_.

Every probe and judge builds its inputs from the case seed (``case_rng(seed, salt)``): shapes
and edge cases are fixed, values and drop probabilities vary with the seed. Side effects (an
input changed in place, a model's modes and buffers after the call) are recorded as raw values
(``inputs_after``) and decided by the judge (``input_changed``).

Randomness is judged by statistics only. The probe seeds torch's global generator, NumPy's,
and passes a seeded ``torch.Generator`` where the signature has one (``seed_all``), so an
answer may draw from any of them. The judge then checks properties that every correct answer
has, whatever its random stream: the mask values are 0 or ``1/(1-p)``, ``out = x * mask``, the
dropped fraction is within an exact binomial interval around ``p``, and the drops are
independent across elements, samples, channels and calls (chi-square tests on the row and
column counts, an exact overlap test between two calls). Gaussian dropout (ex3.2) is judged with
exact distributions (normal, chi-square, Student's t, and the DKW bound for a
Kolmogorov-Smirnov distance). For MC dropout the judge rebuilds the probe's model, draws its
own large Monte Carlo reference in float64 and compares with Bernstein bounds.

**False failures of a correct answer** (the rates the docstrings state are per check, by the
union bound over every statistical test of that check):

- a drop count: outside the central ``1 - RATE_ALPHA`` (``1e-9``) of its exact binomial
  distribution (scipy's quantiles, ``RATE_ALPHA / 2`` per side);
- a chi-square test of row or column counts: a Wilson-Hilferty p-value below
  ``P_FAIL = 1e-13``; the exact Chernoff bound on the tail of that sum of standardised
  binomial squares, at the threshold, is below 3e-8 for every shape and every p the cases use
  (``test_ex31_count_tests_false_failure_bound``);
- two calls' masks: the number of elements both calls dropped, given how many each dropped,
  is hypergeometric for independent calls: exact tails, ``RATE_ALPHA / 2`` per side.

**Named confusions** pass with probability below 1e-12: their drop rates (1 - p for keep
probability p) or mask values are far outside the intervals, and shared masks are found
deterministically (every sample's mask equal, one draw per sample or channel).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn

from helpers.checks.core import (Fail, Raised, Value, as_array, capture, case_rng, close, encode,
                                 exercise, expect_array, input_changed, inputs_after,
                                 match_mistake, max_err, seed_all, unwrap)

# a p-value below this means "not what independent Bernoulli draws give" (correct answers
# sit far above it, the mistakes far below)
P_FAIL = 1e-13
# a drop count outside the central 1 - RATE_ALPHA of its exact binomial distribution fails
RATE_ALPHA = 1e-9

# DESIGN.md's shortcut rule: every dropout op is refused in ex3.1, ex3.2 and ex3.3 (a mask made
# by F.dropout is refused in ex3.2 as well); core matches torch ops by the op they reach
FORBID_DROPOUT = (
    "torch.nn.functional.dropout", "torch.nn.Dropout", "torch.dropout", "torch.dropout_",
    "torch.native_dropout", "torch.ops.aten.dropout", "torch.ops.aten.native_dropout",
    "torch.feature_dropout", "torch.alpha_dropout", "torch.feature_alpha_dropout",
    "torch.nn.functional.alpha_dropout", "torch.nn.functional.feature_alpha_dropout",
    "torch.nn.functional.dropout1d", "torch.nn.functional.dropout2d",
    "torch.nn.functional.dropout3d", "torch.nn.Dropout1d", "torch.nn.Dropout2d",
    "torch.nn.Dropout3d", "torch.nn.AlphaDropout", "torch.nn.FeatureAlphaDropout",
)
FORBID_HINT_31 = ("draw one uniform (or Bernoulli) number per element yourself, compare it "
                  "with p, and scale the kept elements.")
FORBID_HINT_32 = ("draw the normal noise yourself, one value per element; a library dropout "
                  "call draws a Bernoulli mask, not Gaussian noise.")


def _x(rng, shape, no_zeros=False, dtype=np.float32):
    """A test input of ``shape`` drawn from ``rng``, optionally bounded away from 0."""
    if no_zeros:
        a = rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    else:
        a = rng.standard_normal(shape)
        a.reshape(-1)[::17] = 0.0  # a few exact zeros
    return a.astype(dtype)


def _probe_seed(seed, salt):
    """Seed every generator for one probe (the values drawn are never judged)."""
    return seed_all((int(seed) * 1_000_003 + salt) % 2**31)


def _pair(v, what):
    """``(out, mask)`` from a decoded answer; fails with a hint for any other structure."""
    if isinstance(v, Raised):
        raise v
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return v[0], v[1]
    kind = type(v).__name__ if not isinstance(v, Value) else f"a single {v.kind} value"
    raise Fail(f"{what} should return a pair (out, mask), got {kind}.")


def _dtype_name(x):
    return str(x.dtype)


# ------------------------------------------------------------------ statistics of a drop pattern

def _chi2_sf(stat, dof):
    """Upper tail of a chi-square distribution (Wilson-Hilferty normal approximation)."""
    k = float(dof)
    z = ((max(stat, 0.0) / k) ** (1.0 / 3.0) - (1.0 - 2.0 / (9.0 * k))) / math.sqrt(2.0 / (9.0 * k))
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _count_test(drop2d, p):
    """p-values of 'rows' and 'columns' of a 0/1 drop matrix being independent Bernoulli(p).

    Each row count k_i of m elements has mean m p and variance m p (1-p); the sum of the
    standardised squares is chi-square with (rows) degrees of freedom. A mask shared by the
    rows (the batch) makes every column count 0 or n: the column statistic explodes.
    """
    d = drop2d.astype(np.float64)
    n, m = d.shape
    rows = ((d.sum(1) - m * p) ** 2 / (m * p * (1 - p))).sum()
    cols = ((d.sum(0) - n * p) ** 2 / (n * p * (1 - p))).sum()
    return _chi2_sf(rows, n), _chi2_sf(cols, m)


def _rate_interval(n, p):
    """The dropped fraction of n independent Bernoulli(p) draws lies in this range except with
    probability at most RATE_ALPHA (exact binomial quantiles, RATE_ALPHA / 2 per side)."""
    from scipy import stats
    lo = stats.binom.ppf(RATE_ALPHA / 2, n, p)       # P(K < lo) <= RATE_ALPHA / 2
    hi = stats.binom.isf(RATE_ALPHA / 2, n, p)       # P(K > hi) <= RATE_ALPHA / 2
    return float(lo) / n, float(hi) / n


def _judge_drop_pattern(label, drop, p, shape):
    """Drop rate within an exact binomial interval, drops independent across elements and
    samples.

    False-failure rate for a correct answer: below 1e-7 (one rate interval, 1e-9, and up to
    three chi-square tests, 3e-8 each; see the module docstring)."""
    if not drop.any():
        raise Fail(f"{label}: no element was dropped (the mask has no zeros). Draw a random "
                   "0/1 mask with P(0) = p; dividing x by (1-p) alone is not dropout.")
    if drop.all():
        raise Fail(f"{label}: every element was dropped. Keep each element with probability "
                   "1 - p.")
    N = shape[0]
    flat = drop.reshape(N, -1)
    if N > 1 and np.all(flat == flat[:1]):
        raise Fail(f"{label}: every sample in the batch got the same mask (one mask shared by "
                   "the batch). Draw a mask of x's full shape, one Bernoulli per element, so "
                   "each sample is dropped differently.")
    if flat.shape[1] > 1 and np.all(flat == flat[:, :1]):
        raise Fail(f"{label}: each sample is either kept whole or dropped whole (one draw per "
                   "sample). Dropout draws one Bernoulli per element.")
    if len(shape) == 4:
        maps = drop.reshape(shape[0] * shape[1], -1)
        if np.all(maps == maps[:, :1]):
            raise Fail(f"{label}: whole channels are dropped together (one draw per (sample, "
                       "channel), like nn.Dropout2d). This exercise is element-wise dropout: "
                       "one Bernoulli per element of x.")
    n = drop.size
    rate = float(drop.mean())
    lo, hi = _rate_interval(n, p)
    if not lo <= rate <= hi:
        if lo <= 1 - rate <= hi or abs(rate - (1 - p)) < abs(rate - p) / 2:
            raise Fail(f"{label}: {rate:.1%} of the elements were dropped, but p = {p} is the "
                       f"probability of dropping: about {p:.0%} should be zero, not {1 - p:.0%}. "
                       "You used p as the keep probability (keep with probability 1 - p).")
        raise Fail(f"{label}: {rate:.1%} of the elements were dropped; with p = {p} about "
                   f"{p:.0%} should be ({n} independent draws fall within {lo:.1%} to "
                   f"{hi:.1%}). Drop each element independently with probability p.")
    p_rows, p_cols = _count_test(flat, p)
    if p_cols < P_FAIL:
        raise Fail(f"{label}: the masks of different samples are strongly alike (the same "
                   "units dropped across the batch): the mask looks partly shared by the "
                   "batch. Draw an independent Bernoulli for every element of x.")
    if p_rows < P_FAIL:
        raise Fail(f"{label}: within a sample the drops are not independent (some samples "
                   "lose far more units than a binomial draw allows). Draw an independent "
                   "Bernoulli for every element of x.")
    if len(shape) == 4:
        maps = drop.reshape(shape[0] * shape[1], -1)
        if _count_test(maps, p)[0] < P_FAIL:
            raise Fail(f"{label}: the drops within a channel are not independent. Draw one "
                       "Bernoulli per element of x.")


def _judge_two_calls(label, d1, d2, p):
    """Two calls on the same input must draw new masks. Given how many elements each call
    dropped, the number dropped by both is hypergeometric for independent calls (i.i.d. drops
    make the dropped set uniform given its size): an exact test, false-failure rate
    ``RATE_ALPHA``."""
    from scipy import stats
    a, b = d1.reshape(-1), d2.reshape(-1)
    if np.array_equal(a, b):
        raise Fail(f"{label}: two calls returned the same mask on every call. Each call "
                   "must draw a fresh mask: do not re-seed (torch.manual_seed, a new "
                   "Generator with a fixed seed, np.random.seed) inside the function, and "
                   "draw from the generator you are given (or the global one) without "
                   "resetting it.")
    n, k1, k2 = a.size, int(a.sum()), int(b.sum())
    both = int((a & b).sum())
    hi = stats.hypergeom.sf(both - 1, n, k1, k2)        # P(overlap >= both)
    lo = stats.hypergeom.cdf(both, n, k1, k2)           # P(overlap <= both)
    if min(hi, lo) < RATE_ALPHA / 2:
        r = float(np.corrcoef(a.astype(np.float64), b.astype(np.float64))[0, 1])
        raise Fail(f"{label}: two calls gave masks that are strongly correlated "
                   f"(correlation {r:.2f}, expected about 0). Each call must draw a fresh, "
                   "independent mask.")


# ------------------------------------------------------------------ ex3.1

def _forward_cases(seed):
    """(label, x, p, training, calls, with_generator); p values vary with the seed, away from
    0.5 so that p and 1 - p (and 1/p and 1/(1-p)) are told apart."""
    rng = case_rng(seed, 3101)
    pa = round(float(rng.uniform(0.2, 0.4)), 3)
    pb = round(float(rng.uniform(0.6, 0.7)), 3)
    pc = round(float(rng.uniform(0.08, 0.15)), 3)
    return [
        (f"a (32, 96) batch, p={pa}, training, with a generator", _x(rng, (32, 96)), pa, True, 2, True),
        (f"a (32, 64) batch, p={pa}, training, generator=None", _x(rng, (32, 64)), pa, True, 2, False),
        (f"a (4, 3, 12, 12) batch of images, p={pb}, training", _x(rng, (4, 3, 12, 12)), pb, True, 1, True),
        (f"a (32, 64) float64 batch, p={pc}, training, generator=None",
         _x(rng, (32, 64), dtype=np.float64), pc, True, 1, False),
        (f"a (16, 32) batch, p={pa}, eval (training=False)", _x(rng, (16, 32)), pa, False, 1, True),
        (f"a (2, 3, 4, 4) batch, p={pb}, eval (training=False)", _x(rng, (2, 3, 4, 4)), pb, False, 1, False),
        ("a (16, 32) batch, p=0.0, training", _x(rng, (16, 32)), 0.0, True, 1, False),
    ]


def probe_forward(dropout_forward, seed):
    gen = _probe_seed(seed, 3102)
    out = []
    for _, x, p, training, calls, with_gen in _forward_cases(seed):
        xt = torch.from_numpy(x.copy())
        rec = {"calls": []}
        for _ in range(calls):
            kwargs = {"generator": gen} if with_gen else {}
            rec["calls"].append(capture(dropout_forward, xt, p, training, **kwargs))
        rec["x_after"] = inputs_after(xt)
        out.append(rec)
    return out


def _judge_identity(label, x, p, got, what, misconception_hint, eval_hint=""):
    """Eval mode (or p = 0): the output is x itself, in x's dtype."""
    o = expect_array(got, f"{label}: {what} (out)", dtype=_dtype_name(x), kind="torch")
    if o.shape != x.shape:
        raise Fail(f"{label}: out has shape {o.shape}, expected x's shape {x.shape}.")
    x = x.astype(np.float64)
    if close(o, x, rtol=1e-6, atol=0):
        return
    if p > 0 and close(o, x * (1 - p), rtol=1e-5, atol=1e-7):
        raise Fail(f"{label}: out = (1-p) * x. {misconception_hint}")
    if p > 0 and close(o, x / (1 - p), rtol=1e-5, atol=1e-7):
        raise Fail(f"{label}: out = x / (1-p) in eval mode; eval must return x unchanged "
                   "(no mask, no scale).")
    zeros = float(np.mean((o == 0) & (x != 0)))
    if p == 0 and "training" in what.replace("training=False", ""):
        raise Fail(f"{label}: out differs from x ({zeros:.0%} of the outputs zeroed, largest "
                   f"difference {max_err(o, x):.3g}). With p = 0 nothing is dropped and the "
                   "scale is 1: out must equal x.")
    if zeros > 0:
        raise Fail(f"{label}: {zeros:.0%} of the outputs were zeroed: dropout is active in eval "
                   f"mode. Dropout must be off in eval mode: return x unchanged. {eval_hint}".strip())
    raise Fail(f"{label}: out differs from x (largest difference {max_err(o, x):.3g}). With "
               "training=False (or p = 0) dropout is the identity: out must equal x.")


MISCONCEPTION = ("This is the 'scale at inference' misconception: inverted dropout already "
                 "divides by (1-p) during training, so the expected activation in training is "
                 "x itself, and at inference the output must be x, not scaled again.")


def _judge_forward_call(label, x, p, call, what):
    """One training-mode call: structure, dtype, mask values, out = x * mask. Returns the drops."""
    o, m = _pair(call, what)
    o = expect_array(o, f"{label}: out", dtype=_dtype_name(x), kind="torch",
                     hint="A mask built with NumPy (float64) or .float() can change the "
                          "output's dtype: make the mask in x's dtype.")
    m_arr = as_array(m, f"{what}: mask")
    if o.shape != x.shape:
        raise Fail(f"{label}: out has shape {o.shape}, expected x's shape {x.shape}.")
    if m_arr.shape != x.shape:
        if m_arr.ndim == x.ndim and m_arr.shape[0] == 1:
            raise Fail(f"{label}: the mask has shape {m_arr.shape}: one mask shared by "
                       f"the batch. Draw a mask of x's full shape {x.shape}.")
        raise Fail(f"{label}: the mask has shape {m_arr.shape}, expected x's shape "
                   f"{x.shape} (one entry per element).")
    _judge_mask_values(label, x, p, o, m_arr)
    if not close(o, x.astype(np.float64) * m_arr, rtol=1e-5, atol=1e-6):
        raise Fail(f"{label}: out is not x * mask (largest difference "
                   f"{max_err(o, x * m_arr):.3g}). Return the mask you applied.")
    return m_arr == 0


def judge_forward(data, seed):
    """False-failure rate for a correct answer: below 4e-7 (four drop patterns, 1e-7 each, and
    two pairs of calls, 1e-9 each; see the module docstring). The named confusions (keep
    probability, shared or per-sample masks, wrong scales) fail with probability above
    1 - 1e-12: their rates lie far outside the exact intervals, the rest is deterministic."""
    for (label, x, p, training, calls, _), rec in zip(_forward_cases(seed), data, strict=True):
        what = f"dropout_forward(x, p={p}, training={training})"
        if not training or p == 0:
            got = unwrap_first(rec["calls"][0])
            _judge_identity(label, x, p, got, what, MISCONCEPTION)
            if input_changed(rec.get("x_after"), x):
                raise Fail(f"{label}: your function changed its input x in place; return a new "
                           "tensor.")
            continue
        if input_changed(rec.get("x_after"), x):
            raise Fail(f"{label}: your function changed its input x in place (e.g. x *= mask "
                       "or x.mul_(mask)); return a new tensor.")
        drops = []
        for k, call in enumerate(rec["calls"]):
            drops.append(_judge_forward_call(label, x, p, call, what))
            if k == 0:
                _judge_drop_pattern(label, drops[0], p, x.shape)
        if len(drops) == 2:
            _judge_two_calls(label, drops[0], drops[1], p)
    return None


def unwrap_first(v):
    """The first element of a pair, or the value itself (eval answers may return x alone)."""
    if isinstance(v, Raised):
        raise v
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return v[0]
    return v


def _judge_mask_values(label, x, p, out, mask):
    """Mask values must be 0 or 1/(1-p); name the usual wrong scales."""
    scale = 1.0 / (1.0 - p)
    vals = np.unique(mask)
    nonzero = vals[vals != 0]
    ok = np.all(np.isclose(nonzero, scale, rtol=1e-5, atol=0))
    if ok and nonzero.size:
        return
    if nonzero.size == 0:
        raise Fail(f"{label}: the mask is all zeros; every element was dropped. Keep each "
                   "element with probability 1 - p.")
    if np.all(np.isclose(nonzero, 1.0, rtol=1e-6)):
        if close(out, x.astype(np.float64) * mask * scale, rtol=1e-5, atol=1e-6):
            raise Fail(f"{label}: the mask holds 0 and 1, and the scale 1/(1-p) is applied "
                       f"separately. Put the scale into the mask (0 or 1/(1-p) = {scale:.4g}), "
                       "so that the mask alone says what happened to each element.")
        raise Fail(f"{label}: the mask holds 0 and 1 and the kept values are not rescaled. "
                   f"Inverted dropout divides the kept values by (1-p): mask values 0 or "
                   f"1/(1-p) = {scale:.4g}, so the expected output equals x.")
    if np.all(np.isclose(nonzero, 1.0 / p, rtol=1e-5)):
        raise Fail(f"{label}: the kept values are scaled by 1/p = {1 / p:.4g}; expected "
                   f"1/(1-p) = {scale:.4g}. p is the probability of dropping, so the kept "
                   "fraction is 1 - p.")
    if np.all(np.isclose(nonzero, 1.0 - p, rtol=1e-5)):
        raise Fail(f"{label}: the kept values are multiplied by (1-p) = {1 - p:.4g}; inverted "
                   f"dropout must divide by (1-p), mask values 0 or 1/(1-p) = {scale:.4g}.")
    if np.all(np.isclose(nonzero, p, rtol=1e-5)):
        raise Fail(f"{label}: the kept values are multiplied by p = {p}; the mask must hold 0 "
                   f"or 1/(1-p) = {scale:.4g} (p is the probability of dropping).")
    shown = ", ".join(f"{v:.4g}" for v in vals[:5]) + (" ..." if vals.size > 5 else "")
    raise Fail(f"{label}: the mask holds the values {shown}; expected only 0 and "
               f"1/(1-p) = {scale:.4g}.")


exercise("ex3.1", "dropout_forward", probe_forward, judge_forward,
         forbid=FORBID_DROPOUT, forbid_hint=FORBID_HINT_31)

# ------------------------------------------------------------------ ex3.2

# every statistical test of ex3.2 fails a correct answer with probability at most ALPHA_32
# (exact distributions: Gaussian noise makes the mean normal, the sums of squares chi-square,
# the correlation of two calls Student's t, and the Kolmogorov-Smirnov distance obeys the
# Dvoretzky-Kiefer-Wolfowitz inequality with Massart's constant, valid for every n)
ALPHA_32 = 1e-9
# a variance ratio within this factor of a named confusion's ratio is reported as that confusion
CONFUSION_BAND = 1.25


def _gauss_cases(seed):
    """(label, x, p, training, calls, with_generator). The p ranges keep the named confusions'
    variances (p(1-p), (p/(1-p))^2 for a std of p/(1-p), (1-p)/p for the keep probability)
    far from the right one and from each other: p in [0.2, 0.25], [0.65, 0.75], [0.8, 0.85]."""
    rng = case_rng(seed, 3201)
    pa = round(float(rng.uniform(0.2, 0.25)), 3)
    pb = round(float(rng.uniform(0.65, 0.75)), 3)
    pc = round(float(rng.uniform(0.8, 0.85)), 3)
    return [
        (f"a (64, 96) batch, p={pa}, training, with a generator", _x(rng, (64, 96)), pa, True, 2, True),
        (f"a (32, 64) float64 batch, p={pb}, training, generator=None",
         _x(rng, (32, 64), dtype=np.float64), pb, True, 1, False),
        (f"a (6, 3, 12, 12) batch of images, p={pc}, training", _x(rng, (6, 3, 12, 12)), pc, True, 1, True),
        (f"a (16, 32) batch, p={pb}, eval (training=False)", _x(rng, (16, 32)), pb, False, 1, True),
        (f"a (2, 3, 4, 4) batch, p={pa}, eval (training=False)", _x(rng, (2, 3, 4, 4)), pa, False, 1, False),
        ("a (16, 32) batch, p=0.0, training", _x(rng, (16, 32)), 0.0, True, 1, False),
    ]


def probe_gaussian(gaussian_dropout, seed):
    gen = _probe_seed(seed, 3202)
    out = []
    for _, x, p, training, calls, with_gen in _gauss_cases(seed):
        xt = torch.from_numpy(x.copy())
        rec = {"calls": []}
        for _ in range(calls):
            kwargs = {"generator": gen} if with_gen else {}
            rec["calls"].append(capture(gaussian_dropout, xt, p, training, **kwargs))
        rec["x_after"] = inputs_after(xt)
        out.append(rec)
    return out


def _gauss_pair(call, what):
    """``(out, noise)`` from one decoded call."""
    if isinstance(call, Raised):
        raise call
    if isinstance(call, (list, tuple)) and len(call) == 2:
        return call[0], call[1]
    kind = type(call).__name__ if not isinstance(call, Value) else f"a single {call.kind} value"
    raise Fail(f"{what} should return a pair (out, noise), got {kind}.")


def _gauss_identity(label, x, p, got, what):
    """Eval mode (or p = 0): out is x, in x's dtype."""
    o = expect_array(got, f"{label}: {what} (out)", dtype=_dtype_name(x), kind="torch")
    if o.shape != x.shape:
        raise Fail(f"{label}: out has shape {o.shape}, expected x's shape {x.shape}.")
    x64 = x.astype(np.float64)
    if close(o, x64, rtol=1e-6, atol=0):
        return
    if p > 0 and close(o, x64 * (1 - p), rtol=1e-5, atol=1e-7):
        raise Fail(f"{label}: out = (1-p) * x. {MISCONCEPTION}")
    nz = x64 != 0
    ratio = o[nz] / x64[nz]
    if p == 0:
        raise Fail(f"{label}: out differs from x (largest difference {max_err(o, x64):.3g}). "
                   "With p = 0 the noise has variance 0: out must equal x.")
    if ratio.size > 4 and np.std(ratio) > 1e-3:
        raise Fail(f"{label}: out differs from x by a random factor: noise is applied in eval "
                   "mode. Like dropout, Gaussian dropout is on only in training: with "
                   "training=False return x unchanged.")
    raise Fail(f"{label}: out differs from x (largest difference {max_err(o, x64):.3g}). With "
               "training=False dropout is the identity: out must equal x.")


def _gauss_call(label, x, p, call, what):
    """One training-mode call: structure, dtypes, shapes, out = x * noise. Returns the noise."""
    o, n = _gauss_pair(call, what)
    dt = _dtype_name(x)
    hint = ("NumPy draws are float64 and .float() makes float32: make the noise in x's dtype "
            "(dtype=x.dtype, or .to(x.dtype)).")
    o = expect_array(o, f"{label}: out", dtype=dt, kind="torch", hint=hint)
    if o.shape != x.shape:
        raise Fail(f"{label}: out has shape {o.shape}, expected x's shape {x.shape}.")
    if isinstance(n, Value) and np.ndim(n.value) == 0 and not isinstance(n.value, np.ndarray):
        raise Fail(f"{label}: noise is a single number. Return the noise tensor you multiplied "
                   f"x by, one independent draw per element (shape {x.shape}).")
    n = expect_array(n, f"{label}: noise", dtype=dt, kind="torch", hint=hint)
    if n.shape != x.shape:
        if n.ndim == x.ndim and n.shape[0] == 1:
            raise Fail(f"{label}: the noise has shape {n.shape}: one noise tensor shared by the "
                       f"batch. Draw noise of x's full shape {x.shape}.")
        raise Fail(f"{label}: the noise has shape {n.shape}, expected x's shape {x.shape} (one "
                   "independent draw per element).")
    if not np.all(np.isfinite(n)):
        raise Fail(f"{label}: the noise contains inf or NaN values.")
    x64 = x.astype(np.float64)
    if not close(o, x64 * n, rtol=1e-5, atol=1e-6):
        if close(o, x64 + n, rtol=1e-5, atol=1e-6) or close(o, x64 + n - 1, rtol=1e-5, atol=1e-6):
            raise Fail(f"{label}: out = x + noise. Gaussian dropout is multiplicative, like "
                       "dropout's mask: out = x times the noise, and the noise has mean 1 so "
                       "that on average out equals x.")
        raise Fail(f"{label}: out is not x * noise (largest difference "
                   f"{max_err(o, x64 * n):.3g}). Return the noise you multiplied x by.")
    return n


def _chi2_two_sided(stat, dof):
    """Exact two-sided p-value of a chi-square statistic (scipy's chi-square tails)."""
    from scipy import stats
    return 2.0 * min(stats.chi2.sf(stat, dof), stats.chi2.cdf(stat, dof))


def _variance_interval(n):
    """The range of (sum of squares / n) that a correct answer's n draws fall outside of with
    probability ALPHA_32 (chi-square with n degrees of freedom, ALPHA_32 / 2 on each side)."""
    from scipy import stats
    return stats.chi2.ppf(ALPHA_32 / 2, n) / n, stats.chi2.isf(ALPHA_32 / 2, n) / n


def _gauss_structure(label, noise, shape):
    """Deterministic signs of shared or discrete noise (no statistics needed)."""
    N = shape[0]
    flat = noise.reshape(N, -1)
    if flat.size > 1 and np.all(flat == flat.reshape(-1)[0]):
        raise Fail(f"{label}: every element got the same noise value (one draw for the whole "
                   "tensor). Draw an independent value for every element of x.")
    if N > 1 and np.all(flat == flat[:1]):
        raise Fail(f"{label}: every sample in the batch got the same noise (one noise shared by "
                   "the batch). Draw noise of x's full shape, one value per element.")
    if flat.shape[1] > 1 and np.all(flat == flat[:, :1]):
        raise Fail(f"{label}: each sample's elements share one noise value (one draw per "
                   "sample). Draw an independent value for every element of x.")
    if len(shape) == 4:
        maps = noise.reshape(shape[0] * shape[1], -1)
        if np.all(maps == maps[:, :1]):
            raise Fail(f"{label}: whole channels share one noise value (one draw per (sample, "
                       "channel)). Draw an independent value for every element of x.")
    k = np.unique(noise).size
    if k <= 2:
        raise Fail(f"{label}: the noise takes only {k} distinct value(s), like ex3.1's keep/drop "
                   "mask. Gaussian dropout replaces the two-valued mask by continuous normal "
                   "noise with the same mean and variance.")
    if k < noise.size // 2:
        raise Fail(f"{label}: the noise takes only {k} distinct values over {noise.size} "
                   "elements; normal draws are continuous (practically all distinct). Draw "
                   "from a normal distribution, one value per element.")


def _variance_confusions(p):
    """(ratio of the variance used to the right one, hint) for each named confusion."""
    v = p / (1 - p)
    return [
        (p * (1 - p) / v,
         "that is p(1-p), the variance of a single keep/drop coin. ex3.1's mask is that coin "
         "scaled by 1/(1-p): scale the variance too (work out E[m^2] - E[m]^2 for the mask)."),
        (v * v / v,
         "the standard deviation you used is the number the variance should be (a normal "
         "draw is scaled by its standard deviation, the square root of the variance)."),
        (((1 - p) / p) / v,
         "that is the variance for keep probability p: p is the probability of dropping, so "
         "the mask keeps a fraction 1 - p."),
    ]


def _gauss_moments(label, noise, p):
    """Mean and variance against N(1, p/(1-p)), exact tails (see judge_gaussian)."""
    from scipy import stats
    var = p / (1 - p)
    n = noise.size
    d = noise.reshape(-1) - 1.0
    mean_z = d.mean() / math.sqrt(var / n)                 # N(0, 1) for a correct answer
    z_cut = stats.norm.isf(ALPHA_32 / 2)
    ratio = float((d ** 2).mean() / var)                 # chi2_n / n for a correct answer
    lo, hi = _variance_interval(n)
    m = float(noise.mean())
    if (abs(mean_z) > z_cut or not lo <= ratio <= hi) and abs(m) < 0.25:
        raise Fail(f"{label}: the noise has mean {m:.3f}, about 0. Gaussian dropout "
                   "multiplies x by noise centred on 1 (like the mask, whose mean is 1), "
                   "so that on average out equals x.")
    if not lo <= ratio <= hi:
        sample_var = float(np.var(noise))
        own = sample_var / var
        near = [(abs(math.log(own / r)), r, hint) for r, hint in _variance_confusions(p)
                if r / CONFUSION_BAND <= own <= r * CONFUSION_BAND]
        if near:
            _, r, hint = min(near, key=lambda t: t[0])
            raise Fail(f"{label}: the noise has variance {sample_var:.4f}, about "
                       f"{r * var:.4f}: {hint}")
        raise Fail(f"{label}: the noise has variance {sample_var:.4f}; with p = {p} it should "
                   f"be about {var:.4f} (the variance of ex3.1's mask at this p; a correct "
                   f"answer's {n} draws fall within {lo * var:.4f} to {hi * var:.4f}).")
    return d / math.sqrt(var)                             # standardised: i.i.d. N(0, 1)


def _gauss_mean(label, noise, p):
    """The mean of n draws of N(1, v) is N(1, v / n): an exact z test."""
    from scipy import stats
    var = p / (1 - p)
    n = noise.size
    m = float(noise.mean())
    mean_z = (m - 1.0) / math.sqrt(var / n)
    z_cut = stats.norm.isf(ALPHA_32 / 2)
    if abs(mean_z) > z_cut:
        raise Fail(f"{label}: the noise has mean {m:.3f}; it should be 1 (within "
                   f"±{z_cut * math.sqrt(var / n):.3f} for {n} draws), so that on average out "
                   "equals x.")


def _gauss_independence(label, z, shape):
    """Row and column means of the standardised noise about its grand mean: exact chi-square
    tests (with m columns, N * sum of squared column deviations is chi2_{m-1} for i.i.d.
    N(0, 1) draws; the same for rows and channels), blind to a shift of the mean."""
    from scipy import stats
    N = shape[0]
    flat = z.reshape(N, -1)
    flat = flat - flat.mean()
    m = flat.shape[1]
    cols = float(N * (flat.mean(0) ** 2).sum())          # chi2_{m-1} for a correct answer
    rows = float(m * (flat.mean(1) ** 2).sum())          # chi2_{N-1} for a correct answer
    if stats.chi2.sf(cols, m - 1) < ALPHA_32:
        raise Fail(f"{label}: the noise of different samples is strongly alike (the same "
                   "elements get large or small noise across the batch): it looks partly "
                   "shared by the batch. Draw an independent value for every element of x.")
    if stats.chi2.sf(rows, N - 1) < ALPHA_32:
        raise Fail(f"{label}: within a sample the noise values are not independent (some "
                   "samples' noise is shifted as a whole). Draw an independent value for "
                   "every element of x.")
    if len(shape) == 4:
        maps = z.reshape(shape[0] * shape[1], -1)
        maps = maps - maps.mean()
        stat = float(maps.shape[1] * (maps.mean(1) ** 2).sum())
        if stats.chi2.sf(stat, maps.shape[0] - 1) < ALPHA_32:
            raise Fail(f"{label}: the noise within a channel is not independent (whole "
                       "channels shifted together). Draw an independent value for every "
                       "element of x.")


def _gauss_two_calls(label, n1, n2):
    """Two calls on the same input draw independent noise (Pearson r, exact t test)."""
    from scipy import stats
    a, b = n1.reshape(-1), n2.reshape(-1)
    if np.array_equal(a, b):
        raise Fail(f"{label}: two calls returned the same noise. Each call must draw fresh "
                   "noise: do not re-seed (torch.manual_seed, a new Generator with a fixed "
                   "seed, np.random.seed) inside the function, and draw from the generator "
                   "you are given (or the global one) without resetting it.")
    r = float(np.corrcoef(a, b)[0, 1])
    n = a.size
    t = r * math.sqrt((n - 2) / max(1e-300, 1 - r * r))
    if 2 * stats.t.sf(abs(t), n - 2) < ALPHA_32:
        raise Fail(f"{label}: two calls gave strongly correlated noise (correlation {r:.2f}, "
                   "expected about 0). Each call must draw fresh, independent noise.")


def _ks_cut(n):
    """DKW (Massart): P(sup |F_n - F| > eps) <= 2 exp(-2 n eps^2) = ALPHA_32."""
    return math.sqrt(math.log(2.0 / ALPHA_32) / (2.0 * n))


def _gauss_normality(z):
    """Kolmogorov-Smirnov distance of the pooled standardised noise from N(0, 1)."""
    from scipy import stats
    s = np.sort(z)
    n = s.size
    F = stats.norm.cdf(s)
    i = np.arange(1, n + 1)
    D = float(max(np.max(i / n - F), np.max(F - (i - 1) / n)))
    cut = _ks_cut(n)
    if D > cut:
        kurt = float(np.mean(z ** 4))
        shape = ("flatter than a normal (a uniform distribution?)" if kurt < 2.5 else
                 "heavier-tailed than a normal" if kurt > 3.5 else "not normal")
        raise Fail(f"the noise has the right mean and variance but its distribution is "
                   f"{shape}: its distribution function is {D:.3f} away from the normal one "
                   f"(a correct answer's {n} draws stay within {cut:.3f}). Gaussian dropout "
                   "draws normal noise.")


def judge_gaussian(data, seed):
    """Gaussian dropout: out = x * noise with i.i.d. N(1, p/(1-p)) noise in training, x in eval.

    The statistics are judged against exact distributions, so the rates hold at every case
    seed and for any random stream the answer draws:

    - a correct answer fails with probability at most 19 * ALPHA_32 = 1.9e-8: per training
      call (four: two calls of case a, one of b and of c) the mean (z test), the variance
      (sum of squares about 1 over p/(1-p): chi-square, ALPHA_32 / 2 per side), and the row
      and column tests (chi-square on the row or column means about the grand mean; the
      images' channels too), one correlation test between case a's two calls (Student's t),
      and one Kolmogorov-Smirnov test of the pooled 16928 standardised draws (Massart's DKW
      bound, exact for every n);
    - each named confusion passes with probability below 1e-12: its variance ratio to the
      right one is (1-p)^2 (variance p(1-p)) <= 0.64, p/(1-p) (the standard deviation taken
      for the variance) <= 1/3 or >= 1.86, ((1-p)/p)^2 (keep probability) >= 9 or <= 0.29 on
      the p ranges of the cases, while the acceptance interval of the smallest case (2048
      draws) is [0.82, 1.20]: the confusion's scaled chi-square would have to land more than
      8 of its own standard deviations away (tests/test_lesson03.py computes these tails
      exactly); mean-0 noise is at least 20 standard errors from mean 1 in every case; a
      Bernoulli mask takes 2 values and shared, per-sample or per-channel noise repeats
      values (deterministic checks); uniform noise with the right mean and variance is 0.057
      from the normal distribution function, the cut is 0.025, and DKW bounds its passing by
      2 exp(-2 * 16928 * 0.032^2) < 1e-14.
    """
    pooled = []
    for (label, x, p, training, calls, _), rec in zip(_gauss_cases(seed), data, strict=True):
        what = f"gaussian_dropout(x, p={p}, training={training})"
        if input_changed(rec.get("x_after"), x):
            raise Fail(f"{label}: your function changed its input x in place (e.g. x *= noise "
                       "or x.mul_(noise)); return a new tensor.")
        if not training or p == 0:
            _gauss_identity(label, x, p, unwrap_first(rec["calls"][0]), what)
            continue
        noises = []
        for k, call in enumerate(rec["calls"]):
            lab = label + (" (second call)" if k else "")
            n = _gauss_call(lab, x, p, call, what)
            _gauss_structure(lab, n, x.shape)
            z = _gauss_moments(lab, n, p)
            _gauss_independence(lab, z, x.shape)
            _gauss_mean(lab, n, p)
            pooled.append(z.reshape(-1))
            noises.append(n)
        if len(noises) == 2:
            _gauss_two_calls(label, noises[0], noises[1])
    _gauss_normality(np.concatenate(pooled))
    return None


exercise("ex3.2", "gaussian_dropout", probe_gaussian, judge_gaussian,
         forbid=FORBID_DROPOUT, forbid_hint=FORBID_HINT_32)

# ------------------------------------------------------------------ ex3.3

EVAL_HINT = ("Read self.training in forward (nn.Module keeps it up to date for .train() and "
             ".eval(), also when they are called on a parent module).")

FORBID_HINT_33 = ("draw your own random keep/drop mask with the scale described above, and "
                  "let self.training decide whether it is applied (no subclass or wrapper of "
                  "nn.Dropout, no F.dropout).")


def _module_inputs(seed):
    rng = case_rng(seed, 3301)
    p = round(float(rng.uniform(0.2, 0.4)), 3)
    q = round(float(rng.uniform(0.6, 0.7)), 3)
    return {"x2": _x(rng, (32, 64), no_zeros=True), "x4": _x(rng, (4, 3, 12, 12), no_zeros=True),
            "xs": _x(rng, (32, 64), no_zeros=True), "p": p, "q": q}


def probe_module(Dropout, seed):
    _probe_seed(seed, 3302)
    xs = _module_inputs(seed)
    p, q = xs["p"], xs["q"]
    rec = {}
    box = {}

    def build():
        box["m"] = Dropout(p)
        box["m4"] = Dropout(p=q)

    rec["build"] = capture(build)
    if "m4" not in box:
        return rec
    m, m4 = box["m"], box["m4"]
    rec["is_module"] = isinstance(m, nn.Module)
    if not rec["is_module"]:
        return rec
    rec["n_params"] = capture(lambda: int(sum(t.numel() for t in m.parameters())))
    rec["training_at_start"] = bool(m.training)
    x2 = torch.from_numpy(xs["x2"].copy())
    rec["train1"] = capture(m, x2)
    rec["x_after"] = inputs_after(x2)
    x2 = torch.from_numpy(xs["x2"].copy())
    rec["train2"] = capture(m, x2)

    def grad_run():
        xg = torch.from_numpy(xs["x2"].copy()).requires_grad_(True)
        y = m(xg)
        y.sum().backward()
        return y, xg.grad

    rec["grad"] = capture(grad_run)
    capture(m.eval)
    rec["eval"] = capture(m, x2)
    capture(m.train)
    rec["train_again"] = capture(m, x2)
    x4 = torch.from_numpy(xs["x4"].copy())
    rec["train4"] = capture(m4, x4)
    capture(m4.eval)
    rec["eval4"] = capture(m4, x4)
    # inside a container: .eval()/.train() on the parent must reach the module
    seq = nn.Sequential(nn.Identity(), m)
    xsq = torch.from_numpy(xs["xs"].copy())
    capture(seq.eval)
    rec["seq_eval"] = capture(seq, xsq)
    capture(seq.train)
    rec["seq_train"] = capture(seq, xsq)
    return rec


def _module_judge_train(v, x, p, label):
    """One training-mode output: dtype, shape, not the identity, mask values, drop pattern."""
    o = expect_array(v, f"{label}: the output", dtype="float32", kind="torch",
                     hint="A mask made with NumPy is float64 and turns the output into float64, "
                          "which the next nn.Linear (float32 weights) cannot take: make the mask "
                          "in x's dtype.")
    if o.shape != x.shape:
        raise Fail(f"{label}: the output has shape {o.shape}, expected the input's shape "
                   f"{x.shape}.")
    m = o / x  # x has no zeros
    if np.allclose(m, 1.0, rtol=1e-6, atol=0):
        raise Fail(f"{label}: the output equals the input: nothing was dropped although the "
                   "module is in training mode. If you keep a flag of your own (or override "
                   "eval()), .train() and a parent's .train() do not reset it: read "
                   "self.training, which nn.Module keeps up to date.")
    _judge_mask_values(label, x, p, m * x, np.round(m, 6))
    _judge_drop_pattern(label, m == 0, p, x.shape)
    return m == 0


def _module_judge_setup(data, x2_original):
    if "build" in data and isinstance(data["build"], Raised):
        raise data["build"]
    if not data.get("is_module"):
        raise Fail("Dropout must be a subclass of nn.Module (class Dropout(nn.Module): ... with "
                   "super().__init__() in __init__).")
    n_params = unwrap(data["n_params"])
    if n_params != 0:
        raise Fail(f"your Dropout has {n_params} trainable parameter(s); "
                   "nn.Dropout has none (p is a plain attribute, not an nn.Parameter).")
    if not data["training_at_start"]:
        raise Fail("a new Dropout module is not in training mode; nn.Module starts with "
                   "training=True: call super().__init__() and do not change self.training.")
    if input_changed(data.get("x_after"), x2_original):
        raise Fail("your Dropout changed its input in place (e.g. x.mul_ or x *= mask); return "
                   "a new tensor.")


def judge_module(data, seed):
    """False-failure rate for a correct answer: below 7e-7 (six drop patterns, 1e-7 each, and
    one pair of calls, 1e-9; see the module docstring)."""
    xs = _module_inputs(seed)
    p, q = xs["p"], xs["q"]
    _module_judge_setup(data, xs["x2"])
    x2 = xs["x2"].astype(np.float64)
    lab = f"Dropout({p}) in training mode on a (32, 64) batch"
    d1 = _module_judge_train(data["train1"], x2, p, lab)
    d2 = _module_judge_train(data["train2"], x2, p, lab + " (second call)")
    _judge_two_calls(lab, d1, d2, p)
    g = data["grad"]
    if isinstance(g, Raised):
        raise Fail(f"backward through your Dropout failed ({g}). Build the output from torch "
                   "operations on x, so autograd can differentiate it.")
    y, grad = _pair(g, "forward + backward")
    y, grad = as_array(y, "output"), as_array(grad, "x.grad")
    if grad.shape != x2.shape or not close(grad, y / x2, rtol=1e-5, atol=1e-6):
        raise Fail("the gradient of sum(Dropout(x)) with respect to x should be the mask "
                   "(0 or 1/(1-p)); it is not. Compute the output from x with torch "
                   "operations and let autograd do the rest.")
    _judge_identity(f"Dropout({p}) after .eval()", xs["x2"], p, data["eval"], "Dropout output",
                    MISCONCEPTION, EVAL_HINT)
    _module_judge_train(data["train_again"], x2, p, f"Dropout({p}) back in training mode after .train()")
    x4 = xs["x4"].astype(np.float64)
    _module_judge_train(data["train4"], x4, q, f"Dropout(p={q}) in training mode on (4, 3, 12, 12) images")
    _judge_identity(f"Dropout(p={q}) after .eval() on (4, 3, 12, 12) images", xs["x4"], q,
                    data["eval4"], "Dropout output", MISCONCEPTION, EVAL_HINT)
    try:
        _judge_identity("Dropout inside nn.Sequential after seq.eval()", xs["xs"], p,
                        data["seq_eval"], "Dropout output", MISCONCEPTION, EVAL_HINT)
    except Fail as e:
        raise Fail(f"{e} (The parent's .eval() sets self.training on every child module; a "
                   "flag of your own, or an overridden eval(), does not see it.)") from None
    _module_judge_train(data["seq_train"], xs["xs"].astype(np.float64), p,
                        "Dropout inside nn.Sequential after seq.train()")
    return None


exercise("ex3.3", "Dropout", probe_module, judge_module, kind="class",
         forbid=FORBID_DROPOUT, forbid_hint=FORBID_HINT_33)

# ------------------------------------------------------------------ ex3.4

MC_SAMPLES = 1500
MC_REF = 20000
MC_N, MC_IN, MC_H, MC_K = 12, 6, 24, 4
MC_P = 0.3
MC_C, MC_F, MC_S = 2, 4, 5      # the conv model: input channels, conv channels, image side
# per-entry failure probability of each Bernstein bound; 4 scenarios x 48 entries x 2
# statistics (mean and std, each with a bound for the answer's and one for the reference's
# draws) gives a false-failure rate below 8e-7 for a correct answer
MC_DELTA = 1e-9


class MCNet(nn.Module):
    """The check's model: Linear-BN-ReLU-Dropout, Linear-ReLU-Dropout, Linear (dropout only
    after the last batch norm)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(MC_IN, MC_H), nn.BatchNorm1d(MC_H), nn.ReLU(),
                                  nn.Dropout(MC_P))
        self.head = nn.Sequential(nn.Linear(MC_H, MC_H), nn.ReLU(), nn.Dropout(MC_P),
                                  nn.Linear(MC_H, MC_K))

    def forward(self, x):
        return self.head(self.body(x))


class MCConvNet(nn.Module):
    """The conv check model: Conv-BatchNorm2d-ReLU, Flatten, Linear-ReLU-Dropout, Linear (a
    ``BatchNorm2d``, so switching only ``BatchNorm1d`` modules to eval mode is not enough)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(MC_C, MC_F, 3, padding=1), nn.BatchNorm2d(MC_F),
                                      nn.ReLU(), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(MC_F * MC_S * MC_S, MC_H), nn.ReLU(),
                                  nn.Dropout(MC_P), nn.Linear(MC_H, MC_K))

    def forward(self, x):
        return self.head(self.features(x))


def _mc_conv_model(seed):
    """The conv model, values from the case seed; its batch norm's running statistics are far
    from a batch's own, and its last layer is large (as in :func:`_mc_model`)."""
    rng = case_rng(seed, 3406)
    net = MCConvNet()
    with torch.no_grad():
        for name, t in net.named_parameters():
            fan_in = int(np.prod(t.shape[1:])) if t.dim() > 1 else MC_H
            t.copy_(torch.from_numpy((rng.standard_normal(tuple(t.shape)) / math.sqrt(fan_in))
                                     .astype(np.float32)))
        bn = net.features[1]
        bn.running_mean.copy_(torch.from_numpy(rng.uniform(-1.0, 1.0, MC_F).astype(np.float32)))
        bn.running_var.copy_(torch.from_numpy(rng.uniform(0.3, 2.0, MC_F).astype(np.float32)))
        bn.num_batches_tracked.fill_(250)
        bn.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, MC_F).astype(np.float32)))
        bn.bias.copy_(torch.from_numpy(rng.uniform(-0.2, 0.4, MC_F).astype(np.float32)))
        net.head[3].weight.mul_(6.0)
    return net


def _mc_model(seed, kind="mlp"):
    """The model of the check, every value drawn from the case seed.

    Batch norm has running statistics far from the batch's own, so using batch statistics
    (``model.train()``) changes the predictions; the last layer is large so the softmax is
    far from linear (the mean of the probabilities differs from the softmax of the mean logits).
    """
    if kind == "conv":
        return _mc_conv_model(seed)
    rng = case_rng(seed, 3401)
    net = MCNet()
    with torch.no_grad():
        for name, t in net.named_parameters():
            fan_in = t.shape[-1] if t.dim() > 1 else MC_H
            t.copy_(torch.from_numpy((rng.standard_normal(tuple(t.shape)) / math.sqrt(fan_in))
                                     .astype(np.float32)))
        bn = net.body[1]
        bn.running_mean.copy_(torch.from_numpy(rng.uniform(-1.0, 1.0, MC_H).astype(np.float32)))
        bn.running_var.copy_(torch.from_numpy(rng.uniform(0.3, 2.0, MC_H).astype(np.float32)))
        bn.num_batches_tracked.fill_(250)
        bn.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, MC_H).astype(np.float32)))
        bn.bias.copy_(torch.from_numpy(rng.uniform(-0.2, 0.4, MC_H).astype(np.float32)))
        net.head[3].weight.mul_(6.0)
    return net


def _mc_x(seed, kind="mlp"):
    if kind == "conv":
        rng = case_rng(seed, 3407)
        return (rng.standard_normal((MC_N, MC_C, MC_S, MC_S)) * 1.5 + 0.5).astype(np.float32)
    rng = case_rng(seed, 3403)
    return (rng.standard_normal((MC_N, MC_IN)) * 1.5 + 0.5).astype(np.float32)


def _mc_scenarios():
    """(label, kind, set_modes): the model and how its modes are set before the call."""
    def all_eval(net):
        net.eval()

    def frozen_bn(net):
        net.train()
        net.body[1].eval()

    def all_train(net):
        net.train()

    return [("a model in eval mode", "mlp", all_eval),
            ("a model in training mode whose batch norm is frozen (in eval mode)", "mlp", frozen_bn),
            ("a model in training mode", "mlp", all_train),
            ("a small conv net (with a BatchNorm2d) in training mode", "conv", all_train)]


def _modes(net):
    return [[name or "(the model)", type(mod).__name__, bool(mod.training)]
            for name, mod in net.named_modules()]


def probe_mc(mc_dropout_predict, seed):
    out = []
    for _, kind, set_modes in _mc_scenarios():
        _probe_seed(seed, 3404)
        net = _mc_model(seed, kind)
        set_modes(net)
        x = torch.from_numpy(_mc_x(seed, kind))
        res = capture(mc_dropout_predict, net, x, MC_SAMPLES)
        out.append({"result": res,
                    "modes_after": _modes(net),
                    "buffers_after": encode({k: v.detach().clone() for k, v in net.named_buffers()}),
                    "x_after": inputs_after(x)})
    return out


def _bernstein(var, n, log_term):
    """Half-width ``t`` with P(|mean of n draws - expectation| > t) <= 2 exp(-log_term) for
    independent draws in an interval of length 1 with variance ``var`` (Bernstein)."""
    a = 2.0 * log_term / 3.0
    return (a + np.sqrt(a * a + 8.0 * n * var * log_term)) / (2.0 * n)


@functools.lru_cache(maxsize=8)
def _mc_reference(seed, kind="mlp"):
    """Monte Carlo moments of ``MC_REF`` passes (draws and layers in float32, sums in float64;
    torch's CPU generator with a fixed seed: the same on every machine and thread count), the
    softmax of the mean logits, the logits' std, and the mean probabilities when batch norm
    uses the batch statistics."""
    if kind == "conv":
        return _mc_conv_reference(seed)
    net = _mc_model(seed)
    x = torch.from_numpy(_mc_x(seed))
    gen = torch.Generator().manual_seed(3405 + int(seed) % 100_000)
    sd = {k: v.detach() for k, v in net.state_dict().items()}
    W1, b1 = sd["body.0.weight"], sd["body.0.bias"]
    rm, rv = sd["body.1.running_mean"], sd["body.1.running_var"]
    g, b = sd["body.1.weight"], sd["body.1.bias"]
    W2, b2 = sd["head.0.weight"], sd["head.0.bias"]
    W3, b3 = sd["head.3.weight"], sd["head.3.bias"]
    keep = 1.0 / (1 - MC_P)

    def passes(mean, var, T):
        h = x @ W1.T + b1
        h = torch.relu(g * (h - mean) / torch.sqrt(var + 1e-5) + b)
        h = h * ((torch.rand((T,) + tuple(h.shape), generator=gen) >= MC_P) * keep)
        h = torch.relu(h @ W2.T + b2)
        h.mul_((torch.rand(h.shape, generator=gen) >= MC_P) * keep)
        return (h @ W3.T + b3).double()

    with torch.no_grad():
        logits = torch.cat([passes(rm, rv, 10000) for _ in range(MC_REF // 10000)])
        probs = torch.softmax(logits, -1)
        h = x @ W1.T + b1
        bn_mean = torch.softmax(passes(h.mean(0), h.var(0, unbiased=False), 2000), -1).mean(0)
    mu = probs.mean(0)
    var = ((probs - mu) ** 2).mean(0)
    m4 = ((probs - mu) ** 4).mean(0)
    lmu = logits.mean(0)
    return {"mu": mu.numpy(), "sd": var.sqrt().numpy(), "var": var.numpy(), "m4": m4.numpy(),
            "softmax_of_mean_logits": torch.softmax(lmu, -1).numpy(),
            "logit_sd": logits.std(0, unbiased=False).numpy(),
            "bn_batch_mean": bn_mean.numpy()}


def _mc_conv_reference(seed):
    """:func:`_mc_reference` for the conv model: the trunk (conv, batch norm with its running
    statistics, ReLU, first linear layer, ReLU) is deterministic, the dropout before the last
    layer is drawn ``MC_REF`` times from a fixed CPU generator."""
    net = _mc_conv_model(seed)
    x = torch.from_numpy(_mc_x(seed, "conv"))
    gen = torch.Generator().manual_seed(3408 + int(seed) % 100_000)
    conv, bn = net.features[0], net.features[1]
    lin1, lin2 = net.head[0], net.head[3]
    keep = 1.0 / (1 - MC_P)

    def trunk(batch_stats):
        with torch.no_grad():
            h = conv(x)
            if batch_stats:
                mean, var = h.mean((0, 2, 3)), h.var((0, 2, 3), unbiased=False)
            else:
                mean, var = bn.running_mean, bn.running_var
            h = (h - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + bn.eps)
            h = torch.relu(h * bn.weight[None, :, None, None] + bn.bias[None, :, None, None])
            return torch.relu(lin1(h.flatten(1)))

    def passes(h, T):
        with torch.no_grad():
            m = (torch.rand((T,) + tuple(h.shape), generator=gen) >= MC_P) * keep
            return ((h * m) @ lin2.weight.T + lin2.bias).double()

    h = trunk(False)
    logits = torch.cat([passes(h, 10000) for _ in range(MC_REF // 10000)])
    probs = torch.softmax(logits, -1)
    bn_mean = torch.softmax(passes(trunk(True), 2000), -1).mean(0)
    mu = probs.mean(0)
    var = ((probs - mu) ** 2).mean(0)
    m4 = ((probs - mu) ** 4).mean(0)
    return {"mu": mu.numpy(), "sd": var.sqrt().numpy(), "var": var.numpy(), "m4": m4.numpy(),
            "softmax_of_mean_logits": torch.softmax(logits.mean(0), -1).numpy(),
            "logit_sd": logits.std(0, unbiased=False).numpy(),
            "bn_batch_mean": bn_mean.numpy()}


def _mc_tolerances(ref):
    """Bernstein half-widths for the mean and the std of each entry (answer's draws plus the
    reference's), from variances inflated a little for the reference's own estimate."""
    L = math.log(2.0 / MC_DELTA)
    var = ref["var"] * 1.1 + 1e-7
    m4 = ref["m4"] * 1.2 + 1e-8
    n, nr = MC_SAMPLES, MC_REF
    t_mean = _bernstein(var, n, L) + _bernstein(var, nr, L)
    # s^2 = mean((X - mu)^2) - (mean - mu)^2 (times n/(n-1) with Bessel's correction)
    d = sum(_bernstein(m4, k, L) + _bernstein(var, k, L) ** 2 + (var + _bernstein(m4, k, L)) / (k - 1)
            for k in (n, nr))
    t_sd = np.minimum(d / np.maximum(ref["sd"], 1e-12), np.sqrt(d))
    return t_mean + 1e-6, t_sd + 1e-6


def _mc_eval_probs(seed, kind="mlp"):
    net = _mc_model(seed, kind).double().eval()
    with torch.no_grad():
        return torch.softmax(net(torch.from_numpy(_mc_x(seed, kind)).double()), -1).numpy()


def _mc_result_pair(label, res):
    if isinstance(res, Raised):
        raise res
    if not (isinstance(res, (list, tuple)) and len(res) == 2):
        raise Fail(f"{label}: mc_dropout_predict should return a pair (mean_probs, "
                   "std_probs).")
    mean = as_array(res[0], "mean_probs")
    std = as_array(res[1], "std_probs")
    for name, a in (("mean_probs", mean), ("std_probs", std)):
        if a.shape != (MC_N, MC_K):
            raise Fail(f"{label}: {name} has shape {a.shape}, expected (batch, classes) = "
                       f"{(MC_N, MC_K)}: average over the samples axis only.")
    return mean, std


def _mc_check_buffers(label, rec, buffers0, net0):
    buffers = {k: unwrap(v) for k, v in rec["buffers_after"].items()}
    owners = {name: type(mod).__name__ for name, mod in net0.named_modules()}
    for k, v0 in buffers0.items():
        v = np.asarray(buffers.get(k), dtype=np.float64).reshape(-1)
        if v.shape != v0.reshape(-1).shape or not np.array_equal(v, v0.reshape(-1)):
            owner = owners.get(k.rpartition(".")[0], "batch norm")
            also = (" Every kind of batch norm counts (BatchNorm1d, BatchNorm2d, ...): a switch "
                    "that puts only one kind back in eval mode misses the others."
                    if owner != "BatchNorm1d" else "")
            raise Fail(f"{label}: the buffer '{k}' of the {owner} changed during the call "
                       "(batch norm buffers must stay untouched). A batch norm in training "
                       "mode (after model.train(), or left in it) uses the batch's own "
                       "statistics and overwrites its running statistics on every forward "
                       "pass, even under torch.no_grad(). Only dropout may be active: put "
                       "the model in eval mode, switch on just the dropout modules, and "
                       f"restore every module's mode afterwards.{also}")


def _mc_check_modes(label, rec, modes0):
    modes = [[unwrap(v) for v in m] for m in rec["modes_after"]]
    if modes == modes0:
        return
    diffs = [(a, b) for a, b in zip(modes0, modes) if a != b]
    if diffs:
        (name, kind, was), (_, _, now) = diffs[0]
        raise Fail(f"{label}: modes not restored: the {kind} '{name}' was in "
                   f"{'training' if was else 'eval'} mode before the call and is in "
                   f"{'training' if now else 'eval'} mode after it. Record every "
                   "module's .training before the passes and restore each one after "
                   "(model.train(was_training) alone resets all children alike).")
    raise Fail(f"{label}: the model's modules changed during the call.")


def _mc_check_mean(label, mean, std, ref, tol_mean, eval_probs):
    mu = ref["mu"]
    if np.any(mean < -1e-6) or np.any(mean > 1 + 1e-6) or not np.allclose(mean.sum(1), 1.0, atol=1e-4):
        if np.allclose(mean.sum(0), 1.0, atol=1e-4):
            raise Fail(f"{label}: the columns of mean_probs sum to 1, not the rows: take "
                       "the softmax over the class axis (dim=-1).")
        raise Fail(f"{label}: the rows of mean_probs do not sum to 1 (they look like "
                   "logits): apply softmax to each pass's logits, then average the "
                   "probabilities.")
    if np.all(std < 1e-7):
        if close(mean, eval_probs, rtol=1e-4, atol=1e-5):
            raise Fail(f"{label}: std_probs is zero and mean_probs equals the plain "
                       "eval-mode prediction: dropout was not active during the passes. "
                       "Switch on the dropout modules (all of them: use model.modules(), "
                       "which also finds nested ones).")
        raise Fail(f"{label}: std_probs is zero everywhere: the passes were all the same. "
                   "Dropout must be active so that each pass draws new masks.")
    err = np.abs(mean - mu) / tol_mean
    if err.max() <= 1.0:
        return
    if np.abs(mean - ref["softmax_of_mean_logits"]).mean() < np.abs(mean - mu).mean() / 2:
        raise Fail(f"{label}: mean_probs is the softmax of the mean logits. MC dropout "
                   "averages the probabilities: softmax each pass, then take the mean "
                   "over the passes (the two differ because softmax is not linear).")
    if np.abs(mean - ref["bn_batch_mean"]).max() < np.abs(mean - mu).max() / 3:
        raise Fail(f"{label}: mean_probs matches batch norm using the batch's own "
                   "statistics. Only dropout may be active: batch norm must stay in "
                   "eval mode and use its running statistics.")
    if close(mean, eval_probs, rtol=1e-3, atol=1e-4):
        raise Fail(f"{label}: mean_probs is the eval-mode prediction, not the average "
                   "over dropout passes.")
    i = np.unravel_index(np.argmax(err), err.shape)
    raise Fail(f"{label}: mean_probs is off: entry {tuple(int(k) for k in i)} is "
               f"{mean[i]:.4f}, expected {mu[i]:.4f} ± {tol_mean[i]:.4f} (Monte Carlo "
               f"reference, {MC_SAMPLES} samples). Average the softmax outputs over "
               "n_samples passes with only the dropout modules in training mode.")


def _mc_check_std(label, std, ref, tol_sd):
    sd = ref["sd"]
    err_sd = np.abs(std - sd) / tol_sd
    if err_sd.max() <= 1.0:
        return
    if np.abs(std - ref["logit_sd"]).max() < np.abs(std - sd).max() / 3:
        raise Fail(f"{label}: std_probs is the std of the logits. Take the standard "
                   "deviation of the softmax probabilities over the passes.")
    if np.abs(std - sd ** 2).max() < np.abs(std - sd).max() / 3:
        raise Fail(f"{label}: std_probs looks like a variance; take its square root.")
    i = np.unravel_index(np.argmax(err_sd), err_sd.shape)
    raise Fail(f"{label}: std_probs is off: entry {tuple(int(k) for k in i)} is "
               f"{std[i]:.4f}, expected {sd[i]:.4f} ± {tol_sd[i]:.4f}. Take the standard "
               "deviation of the probabilities over the samples axis.")


def judge_mc(data, seed):
    """MC dropout against a float64 Monte Carlo reference with Bernstein bounds.

    False-failure rate for a correct answer: below 1e-6 for any random stream the answer
    draws (and so for any thread count or timing): each of the 768 bounds (4 scenarios x
    48 entries x mean and std, for the answer's draws and for the reference's) fails with
    probability at most ``MC_DELTA = 1e-9``, the reference's variances are inflated for their
    own estimation error, and the reference is drawn from a fixed CPU generator.
    """
    for (label, kind, set_modes), rec in zip(_mc_scenarios(), data, strict=True):
        ref = _mc_reference(seed, kind)
        tol_mean, tol_sd = _mc_tolerances(ref)
        eval_probs = _mc_eval_probs(seed, kind)
        net0 = _mc_model(seed, kind)
        buffers0 = {k: v.numpy().astype(np.float64) for k, v in net0.named_buffers()}
        set_modes(net0)
        mean, std = _mc_result_pair(label, rec["result"])
        _mc_check_buffers(label, rec, buffers0, net0)
        _mc_check_modes(label, rec, _modes(net0))
        if input_changed(rec.get("x_after"), _mc_x(seed, kind)):
            raise Fail(f"{label}: your function changed its input x in place.")
        _mc_check_mean(label, mean, std, ref, tol_mean, eval_probs)
        _mc_check_std(label, std, ref, tol_sd)
    return None


exercise("ex3.4", "mc_dropout_predict", probe_mc, judge_mc)

# ------------------------------------------------------------------ ex3.5 max_norm_

def _max_norm_cases(seed):
    """(label, weight (NumPy), c, as_parameter). Row norms are far from c (0.3c-0.8c or
    1.3c-3c), so torch.renorm's 1e-7 offset is invisible, and the matrices are not square,
    so rows and columns cannot be confused."""
    rng = case_rng(seed, 3501)

    def matrix(shape, c, big):
        w = rng.standard_normal(shape)
        w /= np.linalg.norm(w, axis=1, keepdims=True)
        scale = np.where(big, rng.uniform(1.3, 3.0, shape[0]), rng.uniform(0.3, 0.8, shape[0]))
        return w * (scale * c)[:, None]

    c1 = round(float(rng.uniform(1.5, 3.5)), 3)
    big1 = np.array([True, False, True, False, False, True, False, True])
    w1 = matrix((8, 5), c1, big1).astype(np.float32)
    c2 = round(float(rng.uniform(0.5, 1.5)), 3)
    big2 = np.array([False, True, False, False, True, False])
    w2 = matrix((6, 10), c2, big2)
    c3 = round(float(rng.uniform(2.0, 4.0)), 3)
    w3 = matrix((5, 3), c3, np.zeros(5, bool)).astype(np.float32)
    return [(f"the (8, 5) weight of an nn.Linear(5, 8) (a Parameter), c={c1}", w1, c1, True),
            (f"a (6, 10) float64 weight, c={c2}", w2, c2, False),
            (f"a (5, 3) weight whose rows are all shorter than c={c3}", w3, c3, True)]


def _probe_max_norm_call(max_norm_, weight, c):
    """``(returned is weight, encoded return value)``; exceptions become data."""
    box = {}

    def call():
        box["r"] = max_norm_(weight, c)
        return None

    raised = capture(call)
    if isinstance(raised, dict) and "__raised__" in raised:
        return False, raised
    r = box.get("r")
    return r is weight, (None if r is weight else encode(r))


def probe_max_norm(max_norm_, seed):
    out = []
    for _, w, c, as_param in _max_norm_cases(seed):
        t = torch.from_numpy(w.copy())
        weight = nn.Parameter(t) if as_param else t
        is_weight, returned = _probe_max_norm_call(max_norm_, weight, c)
        out.append({"result_is_weight": bool(is_weight), "returned": returned,
                    "after": encode(weight.detach().clone())})
    return out


def _renorm_rows(w, c):
    norms = np.linalg.norm(w, axis=1, keepdims=True)
    return np.where(norms > c, w * (c / norms), w)


def _max_norm_mistakes(w, c):
    cols = np.linalg.norm(w, axis=0, keepdims=True)
    rows = np.linalg.norm(w, axis=1, keepdims=True)
    total = np.linalg.norm(w)
    return [
        (np.where(cols > c, w * (c / cols), w),
         "you rescaled columns, not rows. The weight of nn.Linear(in, out) has shape "
         "(out, in): the incoming weights of one unit are one row."),
        (w * (c / rows),
         "every row now has norm c, also the rows that were shorter than c. Max-norm is a "
         "constraint, not a normalisation: only rows whose norm exceeds c change."),
        ((w * (c / total)) if total > c else w,
         "you used the norm of the whole matrix. The constraint holds for each unit's "
         "incoming weight vector separately: one norm per row."),
        (np.clip(w, -c, c),
         "you clipped single elements to [-c, c]. The constraint is on the length (L2 norm) "
         "of each row: a row that is too long is shrunk as a whole, keeping its direction."),
    ]


def _judge_max_norm_case(label, w, c, rec):
    dt = _dtype_name(w)
    after = expect_array(rec["after"], f"{label}: the weight after the call", dtype=dt,
                         kind="torch")
    ref = _renorm_rows(w.astype(np.float64), c)
    if not rec["result_is_weight"]:
        ret = rec["returned"]
        if isinstance(ret, Raised):
            if "leaf Variable that requires grad" in str(ret) or "in-place operation" in str(ret):
                raise Fail(f"{label}: your code raised {ret}. A Parameter that requires grad can "
                           "only be changed in place where autograd is not recording: wrap the "
                           "update in torch.no_grad().")
            raise Raised(f"{ret} on {label}")
        if close(after, w, rtol=0, atol=0) and not np.allclose(w, ref):
            raise Fail(f"{label}: the weight passed in is unchanged: max_norm_ (the trailing _) "
                       "works in place, like Tensor.clamp_: change the rows of weight itself "
                       "and return weight.")
        raise Fail(f"{label}: max_norm_ should return weight itself (the same tensor object, "
                   "changed in place), not a new tensor or None.")
    if after.shape != w.shape:
        raise Fail(f"{label}: the weight's shape changed to {after.shape}.")
    if not close(after, ref, rtol=1e-5, atol=1e-7):
        if close(after, w, rtol=0, atol=0):
            raise Fail(f"{label}: the weight did not change, but some rows are longer than c. "
                       "Rescale them in place (e.g. with mul_ or an indexed assignment) under "
                       "torch.no_grad(), not by rebinding a local name.")
        match_mistake(label, after, _max_norm_mistakes(w.astype(np.float64), c), rtol=1e-5, atol=1e-7)
        norms = np.linalg.norm(after, axis=1)
        raise Fail(f"{label}: wrong rows after the call (largest difference "
                   f"{max_err(after, ref):.3g}; row norms now {np.round(norms, 3).tolist()}, "
                   f"c = {c}). Each row longer than c is scaled down to length c, keeping its "
                   "direction; the others stay.")
    short = np.linalg.norm(w.astype(np.float64), axis=1) <= c
    if not np.array_equal(after[short], w[short].astype(np.float64)):
        raise Fail(f"{label}: rows whose norm was already at most c changed (a tiny change "
                   "counts: they must stay bit for bit). Change only the rows that exceed c.")


def judge_max_norm(data, seed):
    for (label, w, c, _), rec in zip(_max_norm_cases(seed), data, strict=True):
        _judge_max_norm_case(label, w, c, rec)
    return None


exercise("ex3.5", "max_norm_", probe_max_norm, judge_max_norm,
         forbid=("torch.renorm", "torch.Tensor.renorm", "torch.Tensor.renorm_"),
         forbid_hint="compute each row's norm, and rescale only the rows longer than c.")
