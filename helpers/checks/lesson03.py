"""Checks for lesson 03 (dropout): ex3.1 dropout_forward, ex3.2 dropout_backward,
ex3.3 Dropout, ex3.4 mc_dropout_predict, ex3.5 eval_scale (a value).

Randomness is judged by statistics only. The probe seeds torch's global generator, NumPy's,
and passes a seeded ``torch.Generator`` where the signature has one, so an answer may draw
from any of them. The judge then checks properties that every correct answer has, whatever
its random stream: the mask values are 0 or ``1/(1-p)``, ``out = x * mask``, the dropped
fraction is within a binomial bound of ``p``, and the drops are independent across elements,
samples, channels and calls (chi-square tests on the row and column counts, a correlation
test between two calls). For MC dropout the judge rebuilds the probe's model, draws its own
large Monte Carlo reference in float64 and compares with a tolerance that follows from the
spread of each output and the number of samples.
"""

from __future__ import annotations

import functools

import numpy as np

from helpers.checks.core import (Fail, Raised, Value, as_array, as_float, capture, close, exercise,
                                 max_err, unwrap)

# a p-value below this means "not what independent Bernoulli draws give" (correct answers
# sit far above it, the mistakes far below)
P_FAIL = 1e-9


def _x(shape, seed, no_zeros=False):
    """Fixed float32 test input of ``shape`` (NumPy), optionally bounded away from 0."""
    rng = np.random.default_rng(seed)
    if no_zeros:
        a = rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    else:
        a = rng.standard_normal(shape)
        a.reshape(-1)[::17] = 0.0  # a few exact zeros
    return a.astype(np.float32)


def _seed_all(seed):
    import torch
    torch.manual_seed(seed)
    np.random.seed(seed)
    import random
    random.seed(seed)


def _pair(v, what):
    """``(out, mask)`` from a decoded answer; fails with a hint for any other structure."""
    if isinstance(v, Raised):
        raise v
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return v[0], v[1]
    kind = type(v).__name__ if not isinstance(v, Value) else f"a single {v.kind} value"
    raise Fail(f"{what} should return a pair (out, mask), got {kind}.")


# ------------------------------------------------------------------ statistics of a drop pattern

def _chi2_sf(stat, dof):
    """Upper tail of a chi-square distribution (Wilson-Hilferty normal approximation)."""
    import math
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


def _judge_drop_pattern(label, drop, p, shape):
    """Drop rate within a binomial bound, drops independent across elements and samples."""
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
    sd = np.sqrt(p * (1 - p) / n)
    if abs(rate - p) > 5 * sd:
        if abs(rate - (1 - p)) <= 5 * sd:
            raise Fail(f"{label}: {rate:.1%} of the elements were dropped, but p = {p} is the "
                       f"probability of dropping: about {p:.0%} should be zero, not {1 - p:.0%}. "
                       "You used p as the keep probability (keep with probability 1 - p).")
        raise Fail(f"{label}: {rate:.1%} of the elements were dropped; with p = {p} about "
                   f"{p:.0%} should be (binomial bound ±{5 * sd:.1%}). Drop each element "
                   "independently with probability p.")
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
    """Two calls on the same input must draw new masks (correlation test)."""
    a, b = d1.reshape(-1).astype(np.float64), d2.reshape(-1).astype(np.float64)
    if np.array_equal(a, b):
        raise Fail(f"{label}: two calls returned the same mask on every call. Each call "
                   "must draw a fresh mask: do not re-seed (torch.manual_seed, a new "
                   "Generator with a fixed seed, np.random.seed) inside the function, and "
                   "draw from the generator you are given (or the global one) without "
                   "resetting it.")
    if a.std() > 0 and b.std() > 0:
        r = float(np.corrcoef(a, b)[0, 1])
        if r * np.sqrt(a.size) > 6:
            raise Fail(f"{label}: two calls gave masks that are strongly correlated "
                       f"(correlation {r:.2f}, expected about 0). Each call must draw a fresh, "
                       "independent mask.")


# ------------------------------------------------------------------ ex3.1

def _forward_cases():
    """(label, x, p, training, calls, with_generator)."""
    return [
        ("a (32, 96) batch, p=0.3, training, with a generator", _x((32, 96), 301), 0.3, True, 2, True),
        ("a (32, 64) batch, p=0.3, training, generator=None", _x((32, 64), 302), 0.3, True, 2, False),
        ("a (4, 3, 12, 12) batch of images, p=0.6, training", _x((4, 3, 12, 12), 303), 0.6, True, 1, True),
        ("a (32, 64) batch, p=0.1, training, generator=None", _x((32, 64), 304), 0.1, True, 1, False),
        ("a (16, 32) batch, p=0.3, eval (training=False)", _x((16, 32), 305), 0.3, False, 1, True),
        ("a (2, 3, 4, 4) batch, p=0.6, eval (training=False)", _x((2, 3, 4, 4), 306), 0.6, False, 1, False),
        ("a (16, 32) batch, p=0.0, training", _x((16, 32), 307), 0.0, True, 1, False),
    ]


def probe_forward(dropout_forward):
    import torch

    _seed_all(3101)
    gen = torch.Generator().manual_seed(3102)
    out = []
    for _, x, p, training, calls, with_gen in _forward_cases():
        x0 = torch.from_numpy(x.copy())
        xt = x0.clone()
        rec = {"calls": []}
        for _ in range(calls):
            kwargs = {"generator": gen} if with_gen else {}
            rec["calls"].append(capture(dropout_forward, xt, p, training, **kwargs))
        rec["input_changed"] = bool(not torch.equal(xt, x0))
        out.append(rec)
    return out


def _judge_identity(label, x, p, got, what, misconception_hint, eval_hint=""):
    """Eval mode (or p = 0): the output is x itself."""
    o = as_array(got, f"{what} (out)")
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
    if zeros > 0:
        raise Fail(f"{label}: {zeros:.0%} of the outputs were zeroed: dropout is active in eval "
                   f"mode. Dropout must be off in eval mode: return x unchanged. {eval_hint}".strip())
    raise Fail(f"{label}: out differs from x (largest difference {max_err(o, x):.3g}). With "
               "training=False (or p = 0) dropout is the identity: out must equal x.")


MISCONCEPTION = ("This is the 'scale at inference' misconception: inverted dropout already "
                 "divides by (1-p) during training, so the expected activation in training is "
                 "x itself, and at inference the output must be x, not scaled again.")


def judge_forward(data):
    for (label, x, p, training, calls, _), rec in zip(_forward_cases(), data, strict=True):
        what = f"dropout_forward(x, p={p}, training={training})"
        if not training or p == 0:
            got = unwrap_first(rec["calls"][0])
            _judge_identity(label, x, p, got, what, MISCONCEPTION)
            if rec["input_changed"]:
                raise Fail(f"{label}: your function changed its input x in place; return a new "
                           "tensor.")
            continue
        if rec["input_changed"]:
            raise Fail(f"{label}: your function changed its input x in place (e.g. x *= mask "
                       "or x.mul_(mask)); return a new tensor.")
        drops = []
        for k, call in enumerate(rec["calls"]):
            o, m = _pair(call, what)
            o, m_arr = as_array(o, f"{what}: out"), as_array(m, f"{what}: mask")
            if o.shape != x.shape:
                raise Fail(f"{label}: out has shape {o.shape}, expected x's shape {x.shape}.")
            if m_arr.shape != x.shape:
                if m_arr.ndim == x.ndim and m_arr.shape[0] == 1:
                    raise Fail(f"{label}: the mask has shape {m_arr.shape}: one mask shared by "
                               f"the batch. Draw a mask of x's full shape {x.shape}.")
                raise Fail(f"{label}: the mask has shape {m_arr.shape}, expected x's shape "
                           f"{x.shape} (one entry per element).")
            _judge_mask_values(label, x, p, o, m_arr, getattr(m, "dtype", None))
            if not close(o, x.astype(np.float64) * m_arr, rtol=1e-5, atol=1e-6):
                raise Fail(f"{label}: out is not x * mask (largest difference "
                           f"{max_err(o, x * m_arr):.3g}). Return the mask you applied.")
            drops.append(m_arr == 0)
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


def _judge_mask_values(label, x, p, out, mask, dtype):
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
                       "so that out = x * mask and the backward pass is grad * mask.")
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


exercise("ex3.1", "dropout_forward", probe_forward, judge_forward)

# ------------------------------------------------------------------ ex3.2

def _backward_cases():
    """(label, grad_out, mask, p)."""
    rng = np.random.default_rng(3201)
    out = []
    for label, shape, p in [("a (32, 48) gradient, p=0.3", (32, 48), 0.3),
                            ("a (4, 3, 8, 8) gradient, p=0.6", (4, 3, 8, 8), 0.6),
                            ("a (10, 20) gradient, p=0.1", (10, 20), 0.1)]:
        g = rng.standard_normal(shape).astype(np.float32)
        keep = rng.random(shape) >= p
        out.append((label, g, (keep / (1 - p)).astype(np.float32), p))
    g = rng.standard_normal((6, 5)).astype(np.float32)
    out.append(("a mask of ones (eval mode or p=0)", g, np.ones((6, 5), np.float32), 0.0))
    return out


def probe_backward(dropout_backward):
    import torch

    out = []
    for _, g, m, _ in _backward_cases():
        gt, mt = torch.from_numpy(g.copy()), torch.from_numpy(m.copy())
        res = capture(dropout_backward, gt, mt)
        out.append({"result": res,
                    "input_changed": bool(not (np.array_equal(gt.numpy(), g)
                                               and np.array_equal(mt.numpy(), m)))})
    return out


def judge_backward(data):
    for (label, g, m, p), rec in zip(_backward_cases(), data, strict=True):
        g64, m64 = g.astype(np.float64), m.astype(np.float64)
        ref = g64 * m64
        a = as_array(rec["result"], "dropout_backward(grad_out, mask)")
        if a.shape != ref.shape:
            raise Fail(f"{label}: got shape {a.shape}, expected the shape of grad_out {ref.shape}.")
        if not close(a, ref, rtol=1e-5, atol=1e-6):
            if p > 0 and close(a, g64 * (m64 != 0), rtol=1e-5, atol=1e-6):
                raise Fail(f"{label}: you zeroed the dropped positions but passed the kept "
                           "gradients through without the scale 1/(1-p). out = x * mask, so "
                           "d out / d x = mask: multiply grad_out by the mask itself, scale "
                           "included.")
            if p > 0 and close(a, g64, rtol=1e-5, atol=1e-6):
                raise Fail(f"{label}: the gradient came back unchanged. Dropped elements get no "
                           "gradient and kept ones are scaled: grad_x = grad_out * mask.")
            if p > 0 and close(a, g64 * (m64 != 0) * (1 - p), rtol=1e-5, atol=1e-6):
                raise Fail(f"{label}: the kept gradients were multiplied by (1-p); they must be "
                           "multiplied by the mask value 1/(1-p): grad_x = grad_out * mask.")
            raise Fail(f"{label}: wrong gradient (largest difference {max_err(a, ref):.3g}). "
                       "out = x * mask, so the gradient with respect to x is grad_out * mask.")
        if rec["input_changed"]:
            raise Fail(f"{label}: your function changed grad_out or mask in place; return a new "
                       "tensor.")
    return None


exercise("ex3.2", "dropout_backward", probe_backward, judge_backward)

# ------------------------------------------------------------------ ex3.3

EVAL_HINT = ("Read self.training in forward (nn.Module keeps it up to date for .train() and "
             ".eval(), also when they are called on a parent module). Note that F.dropout(x, p) "
             "defaults to training=True: pass training=self.training.")


def _module_inputs():
    return {"x2": _x((32, 64), 331, no_zeros=True), "x4": _x((4, 3, 12, 12), 332, no_zeros=True),
            "xs": _x((32, 64), 333, no_zeros=True)}


def probe_module(Dropout):
    import torch
    from torch import nn

    _seed_all(3301)
    xs = _module_inputs()
    rec = {}
    box = {}

    def build():
        box["m"] = Dropout(0.3)
        box["m4"] = Dropout(p=0.6)

    rec["build"] = capture(build)
    if "m4" not in box:
        return rec
    m, m4 = box["m"], box["m4"]
    rec["is_module"] = isinstance(m, nn.Module)
    if not rec["is_module"]:
        return rec
    rec["n_params"] = int(sum(q.numel() for q in m.parameters()))
    rec["training_at_start"] = bool(m.training)
    x2 = torch.from_numpy(xs["x2"].copy())
    rec["train1"] = capture(m, x2)
    rec["input_changed"] = bool(not np.array_equal(x2.numpy(), xs["x2"]))
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


def judge_module(data):
    xs = _module_inputs()
    if "build" in data and isinstance(data["build"], Raised):
        raise data["build"]
    if not data.get("is_module"):
        raise Fail("Dropout must be a subclass of nn.Module (class Dropout(nn.Module): ... with "
                   "super().__init__() in __init__).")
    if unwrap(data["n_params"]) != 0:
        raise Fail(f"your Dropout has {unwrap(data['n_params'])} trainable parameter(s); "
                   "nn.Dropout has none (p is a plain attribute, not an nn.Parameter).")
    if not data["training_at_start"]:
        raise Fail("a new Dropout module is not in training mode; nn.Module starts with "
                   "training=True: call super().__init__() and do not change self.training.")
    x2 = xs["x2"].astype(np.float64)
    if data["input_changed"]:
        raise Fail("your Dropout changed its input in place (e.g. x.mul_ or x *= mask); return "
                   "a new tensor.")

    def mask_of(v, x, label):
        o = as_array(v, f"Dropout output ({label})")
        if o.shape != x.shape:
            raise Fail(f"{label}: the output has shape {o.shape}, expected the input's shape "
                       f"{x.shape}.")
        return o / x  # x has no zeros

    def judge_train(v, x, p, label):
        m = mask_of(v, x, label)
        _judge_mask_values(label, x, p, m * x, np.round(m, 6), None)
        _judge_drop_pattern(label, m == 0, p, x.shape)
        return m == 0

    lab = "Dropout(0.3) in training mode on a (32, 64) batch"
    d1 = judge_train(data["train1"], x2, 0.3, lab)
    d2 = judge_train(data["train2"], x2, 0.3, lab + " (second call)")
    _judge_two_calls(lab, d1, d2, 0.3)
    g = data["grad"]
    if isinstance(g, Raised):
        raise Fail(f"backward through your Dropout failed ({g}). Build the output from torch "
                   "operations on x (x * mask), so autograd can differentiate it.")
    y, grad = _pair(g, "forward + backward")
    y, grad = as_array(y, "output"), as_array(grad, "x.grad")
    if grad.shape != x2.shape or not close(grad, y / x2, rtol=1e-5, atol=1e-6):
        raise Fail("the gradient of sum(Dropout(x)) with respect to x should be the mask "
                   "(0 or 1/(1-p)); it is not. Compute the output as x * mask with torch "
                   "operations and let autograd do the rest.")
    _judge_identity("Dropout(0.3) after .eval()", x2, 0.3, data["eval"], "Dropout output",
                    MISCONCEPTION, EVAL_HINT)
    judge_train(data["train_again"], x2, 0.3, "Dropout(0.3) back in training mode after .train()")
    x4 = xs["x4"].astype(np.float64)
    judge_train(data["train4"], x4, 0.6, "Dropout(p=0.6) in training mode on (4, 3, 12, 12) images")
    _judge_identity("Dropout(p=0.6) after .eval() on (4, 3, 12, 12) images", x4, 0.6,
                    data["eval4"], "Dropout output", MISCONCEPTION, EVAL_HINT)
    xq = xs["xs"].astype(np.float64)
    try:
        _judge_identity("Dropout inside nn.Sequential after seq.eval()", xq, 0.3,
                        data["seq_eval"], "Dropout output", MISCONCEPTION, EVAL_HINT)
    except Fail as e:
        raise Fail(f"{e} (The parent's .eval() sets self.training on every child module; a "
                   "flag of your own, or an overridden eval(), does not see it.)") from None
    judge_train(data["seq_train"], xq, 0.3, "Dropout inside nn.Sequential after seq.train()")
    return None


exercise("ex3.3", "Dropout", probe_module, judge_module, kind="class")

# ------------------------------------------------------------------ ex3.4

MC_SAMPLES = 400
MC_REF = 10000


def _mc_model():
    """The fixed model of the check: Linear-BN-ReLU-Dropout, Linear-ReLU-Dropout, Linear.

    Batch norm has running statistics far from the batch's own, so using batch statistics
    (``model.train()``) changes the predictions; the last layer is scaled up so the softmax is
    far from linear (the mean of the probabilities differs from the softmax of the mean logits).
    """
    import torch
    from torch import nn

    class MCNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(6, 24), nn.BatchNorm1d(24), nn.ReLU(), nn.Dropout(0.3))
            self.head = nn.Sequential(nn.Linear(24, 24), nn.ReLU(), nn.Dropout(0.3), nn.Linear(24, 4))

        def forward(self, x):
            return self.head(self.body(x))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3401)
        net = MCNet()
    rng = np.random.default_rng(3402)
    with torch.no_grad():
        bn = net.body[1]
        bn.running_mean.copy_(torch.from_numpy(rng.uniform(-1.0, 1.0, 24).astype(np.float32)))
        bn.running_var.copy_(torch.from_numpy(rng.uniform(0.3, 2.0, 24).astype(np.float32)))
        bn.num_batches_tracked.fill_(250)
        bn.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, 24).astype(np.float32)))
        bn.bias.copy_(torch.from_numpy(rng.uniform(-0.2, 0.4, 24).astype(np.float32)))
        net.head[3].weight.mul_(6.0)
    return net


def _mc_x():
    rng = np.random.default_rng(3403)
    return (rng.standard_normal((16, 6)) * 1.5 + 0.5).astype(np.float32)


def _mc_scenarios():
    """(label, set_modes) — how the model's modes are set before the call."""
    def all_eval(net):
        net.eval()

    def frozen_bn(net):
        net.train()
        net.body[1].eval()

    def all_train(net):
        net.train()

    return [("a model in eval mode", all_eval),
            ("a model in training mode whose batch norm is frozen (in eval mode)", frozen_bn),
            ("a model in training mode", all_train)]


def _modes(net):
    return [[name or "(the model)", type(mod).__name__, bool(mod.training)]
            for name, mod in net.named_modules()]


def probe_mc(mc_dropout_predict):
    import torch

    out = []
    for _, set_modes in _mc_scenarios():
        _seed_all(3404)
        net = _mc_model()
        set_modes(net)
        x0 = torch.from_numpy(_mc_x())
        x = x0.clone()
        res = capture(mc_dropout_predict, net, x, MC_SAMPLES)
        out.append({"result": res,
                    "modes_after": _modes(net),
                    "buffers_after": {k: v.detach().clone() for k, v in net.named_buffers()},
                    "input_changed": bool(not torch.equal(x, x0))})
    from helpers.checks.core import encode
    for rec in out:
        rec["buffers_after"] = encode(rec["buffers_after"])
    return out


@functools.lru_cache(maxsize=1)
def _mc_reference():
    """Monte Carlo draws in float64: probabilities and logits, ``(MC_REF, 16, 4)`` each,
    plus the mean probabilities when batch norm uses the batch statistics."""
    import torch

    net = _mc_model().double()
    x = torch.from_numpy(_mc_x()).double()
    gen = torch.Generator().manual_seed(3405)
    sd = {k: v.double() for k, v in net.state_dict().items()}
    W1, b1 = sd["body.0.weight"], sd["body.0.bias"]
    rm, rv = sd["body.1.running_mean"], sd["body.1.running_var"]
    g, b = sd["body.1.weight"], sd["body.1.bias"]
    W2, b2 = sd["head.0.weight"], sd["head.0.bias"]
    W3, b3 = sd["head.3.weight"], sd["head.3.bias"]

    def passes(mean, var, T):
        h = x @ W1.T + b1
        h = g * (h - mean) / torch.sqrt(var + 1e-5) + b
        h = torch.relu(h).expand(T, -1, -1)
        h = h * (torch.rand(h.shape, generator=gen, dtype=torch.float64) >= 0.3) / 0.7
        h = torch.relu(h @ W2.T + b2)
        h = h * (torch.rand(h.shape, generator=gen, dtype=torch.float64) >= 0.3) / 0.7
        return h @ W3.T + b3

    with torch.no_grad():
        logits = passes(rm, rv, MC_REF)
        h = x @ W1.T + b1
        bm, bv = h.mean(0), h.var(0, unbiased=False)
        logits_bn = passes(bm, bv, 2000)
    probs = torch.softmax(logits, -1)
    return {"probs": probs.numpy(), "logits": logits.numpy(),
            "bn_batch_mean": torch.softmax(logits_bn, -1).mean(0).numpy()}


def _mc_eval_probs():
    import torch

    net = _mc_model().double().eval()
    with torch.no_grad():
        return torch.softmax(net(torch.from_numpy(_mc_x()).double()), -1).numpy()


def judge_mc(data):
    import torch

    ref = _mc_reference()
    probs, logits = ref["probs"], ref["logits"]
    mu, sd = probs.mean(0), probs.std(0)
    n = MC_SAMPLES
    # standard errors: of a mean of n draws, and of a standard deviation of n draws (delta method)
    tol_mean = 5.0 * sd * np.sqrt(1.0 / n + 1.0 / MC_REF) + 1e-5
    m4 = ((probs - mu) ** 4).mean(0)
    se_sd = np.sqrt(np.maximum(m4 - sd ** 4, 0.0) / n) / (2.0 * np.maximum(sd, 1e-12))
    tol_sd = 6.0 * se_sd + sd * (np.sqrt(n / (n - 1.0)) - 1.0) + 1e-4
    alt_softmax_of_mean = torch.softmax(torch.from_numpy(logits.mean(0)), -1).numpy()
    logit_sd = logits.std(0)
    eval_probs = _mc_eval_probs()
    net0 = _mc_model()
    buffers0 = {k: v.numpy().astype(np.float64) for k, v in net0.named_buffers()}
    x = _mc_x()

    for (label, set_modes), rec in zip(_mc_scenarios(), data, strict=True):
        net0 = _mc_model()
        set_modes(net0)
        modes0 = _modes(net0)
        res = rec["result"]
        if isinstance(res, Raised):
            raise res
        if not (isinstance(res, (list, tuple)) and len(res) == 2):
            raise Fail(f"{label}: mc_dropout_predict should return a pair (mean_probs, "
                       "std_probs).")
        mean = as_array(res[0], "mean_probs")
        std = as_array(res[1], "std_probs")
        shape = mu.shape
        for name, a in (("mean_probs", mean), ("std_probs", std)):
            if a.shape != shape:
                raise Fail(f"{label}: {name} has shape {a.shape}, expected (batch, classes) = "
                           f"{shape}: average over the samples axis only.")
        # batch-norm buffers
        buffers = {k: unwrap(v) for k, v in rec["buffers_after"].items()}
        for k, v0 in buffers0.items():
            v = np.asarray(buffers.get(k), dtype=np.float64).reshape(-1)
            if v.shape != v0.reshape(-1).shape or not np.array_equal(v, v0.reshape(-1)):
                raise Fail(f"{label}: the batch-norm buffer '{k}' changed during the call "
                           "(batch norm buffers must stay untouched). A batch norm in training "
                           "mode (after model.train(), or left in it) uses the batch's own "
                           "statistics and overwrites its running statistics on every forward "
                           "pass, even under torch.no_grad(). Only dropout may be active: put "
                           "the model in eval mode, switch on just the dropout modules, and "
                           "restore every module's mode afterwards.")
        # every module's mode
        modes = [list(unwrap_all(m)) for m in rec["modes_after"]]
        if modes != modes0:
            diffs = [(a, b) for a, b in zip(modes0, modes) if a != b]
            if diffs:
                (name, kind, was), (_, _, now) = diffs[0]
                raise Fail(f"{label}: modes not restored: the {kind} '{name}' was in "
                           f"{'training' if was else 'eval'} mode before the call and is in "
                           f"{'training' if now else 'eval'} mode after it. Record every "
                           "module's .training before the passes and restore each one after "
                           "(model.train(was_training) alone resets all children alike).")
            raise Fail(f"{label}: the model's modules changed during the call.")
        if rec["input_changed"]:
            raise Fail(f"{label}: your function changed its input x in place.")
        # the mean
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
        if err.max() > 1.0:
            d_alt = np.abs(mean - alt_softmax_of_mean) / tol_mean
            if d_alt.max() <= 1.0:
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
                       f"reference with {n} samples). Average softmax(model(x)) over n_samples "
                       "passes with only the dropout modules in training mode.")
        err_sd = np.abs(std - sd) / tol_sd
        if err_sd.max() > 1.0:
            if np.abs(std - logit_sd).max() < np.abs(std - sd).max() / 3:
                raise Fail(f"{label}: std_probs is the std of the logits. Take the standard "
                           "deviation of the softmax probabilities over the passes.")
            if np.abs(std - sd ** 2).max() < np.abs(std - sd).max() / 3:
                raise Fail(f"{label}: std_probs looks like a variance; take its square root.")
            i = np.unravel_index(np.argmax(err_sd), err_sd.shape)
            raise Fail(f"{label}: std_probs is off: entry {tuple(int(k) for k in i)} is "
                       f"{std[i]:.4f}, expected {sd[i]:.4f} ± {tol_sd[i]:.4f}. Take the standard "
                       "deviation of the probabilities over the samples axis.")
    return None


def unwrap_all(seq):
    return [unwrap(v) for v in seq]


exercise("ex3.4", "mc_dropout_predict", probe_mc, judge_mc)

# ------------------------------------------------------------------ ex3.5 (a value)

def probe_eval_scale(eval_scale):
    from helpers.checks.core import encode
    return {"result": encode(eval_scale)}


def judge_eval_scale(data):
    got = data["result"]
    if got is None or (isinstance(got, Value) and got.value is None):
        raise Fail("eval_scale is not set: assign a number.")
    v = as_float(got, "eval_scale")
    if abs(v - 1.0) < 1e-9:
        return None
    if abs(v - 0.7) < 1e-6:
        raise Fail("0.7 = 1 - p is the 'scale at inference' misconception. That factor belongs "
                   "to the original, non-inverted dropout; nn.Dropout already divides by (1-p) "
                   "in training, so the expected training output is x and eval returns x.")
    if abs(v - 1 / 0.7) < 1e-6:
        raise Fail("1/(1-p) is the scale of the *kept* units in training. In eval mode nothing "
                   "is dropped and nothing is rescaled.")
    if abs(v - 0.3) < 1e-6:
        raise Fail("0.3 is p, the probability of dropping in training. In eval mode nothing is "
                   "dropped and nothing is rescaled.")
    raise Fail(f"eval_scale = {v:g} is not it. What does nn.Dropout do to its input in eval mode?")


exercise("ex3.5", "eval_scale", probe_eval_scale, judge_eval_scale, kind="value")
