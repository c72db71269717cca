"""Checks for lesson 04 (batch norm): ex4.1 batch_norm, ex4.2 BatchNorm1d, ex4.3
batch_norm_backward, ex4.4 layer_norm.

Every probe and judge builds its inputs from the case seed (``case_rng(seed, salt)``): the
shapes, the almost-constant channel, the exactly constant channel and the batch of one are
there at every seed; the values, gamma, beta and the running statistics vary with it.

The probe feeds float64 tensors (so a reference in float64 can be strict) and records what
came back, plus flags: "an input tensor was changed", the names of parameters and buffers,
buffer snapshots after each step. The judge rebuilds every input, computes the reference with
``F.batch_norm`` / ``nn.BatchNorm1d`` in float64, and on a mismatch tries the usual mistakes
(unbiased variance in the normalisation, biased variance in the buffer, flipped momentum, eps
outside the square root, batch statistics in eval, statistics over the wrong axes, ...) to
name the likely one.
"""

from __future__ import annotations

import numpy as np

import torch
import torch.nn.functional as F
from torch import nn

from helpers.checks.core import (Fail, Raised, Value, as_array, capture, case_rng, close, exercise,
                                 expect_array, input_changed, inputs_after, match_mistake, max_err,
                                 unwrap)

RTOL, ATOL = 1e-5, 1e-6


def _aten(*names):
    return tuple(f"torch.ops.aten.{n}" for n in names)


# Every batch-norm entry point of torch 2.13 (DESIGN.md's shortcut table, ex4.1-ex4.3): the
# functional and module forms, the torch.* built-ins (torch.batch_norm is what F.batch_norm
# reaches; the others are its pieces: statistics, elementwise normalisation, buffer update,
# backward) and the aten ops. Instance norm is batch norm run per sample, so it is one too.
BN_OPS = (
    "torch.nn.functional.batch_norm",
    "torch.nn.BatchNorm1d", "torch.nn.BatchNorm2d", "torch.nn.BatchNorm3d",
    "torch.nn.LazyBatchNorm1d", "torch.nn.LazyBatchNorm2d", "torch.nn.LazyBatchNorm3d",
    "torch.nn.SyncBatchNorm", "torch.nn.modules.batchnorm._BatchNorm",
    "torch.batch_norm", "torch.native_batch_norm", "torch._batch_norm_impl_index",
    "torch._native_batch_norm_legit", "torch._native_batch_norm_legit_no_training",
    "torch.batch_norm_stats", "torch.batch_norm_elemt", "torch.batch_norm_update_stats",
    "torch.batch_norm_gather_stats", "torch.batch_norm_gather_stats_with_counts",
    "torch.batch_norm_backward_reduce", "torch.batch_norm_backward_elemt",
    "torch.cudnn_batch_norm", "torch.miopen_batch_norm", "torch.quantized_batch_norm",
    "torch.nn.functional.instance_norm", "torch.instance_norm",
    "torch.nn.InstanceNorm1d", "torch.nn.InstanceNorm2d", "torch.nn.InstanceNorm3d",
) + _aten("batch_norm", "native_batch_norm", "_native_batch_norm_legit",
          "_native_batch_norm_legit_no_training", "_native_batch_norm_legit_functional",
          "_batch_norm_with_update", "_batch_norm_with_update_functional", "_batch_norm_no_update",
          "_batch_norm_impl_index", "native_batch_norm_backward", "batch_norm_backward",
          "batch_norm_stats", "batch_norm_elemt", "batch_norm_update_stats",
          "batch_norm_gather_stats", "batch_norm_gather_stats_with_counts",
          "batch_norm_backward_reduce", "batch_norm_backward_elemt", "cudnn_batch_norm",
          "cudnn_batch_norm_backward", "miopen_batch_norm", "miopen_batch_norm_backward",
          "instance_norm")

# (Classes are named as classes: core watches the methods of their bodies and refuses subclasses;
# a ".forward" entry would add the op name "forward" to the function-mode table.)

# The other normalisation ops (ex4.4's row). Each of them, applied to the transposed input,
# also computes batch norm's normalisation in one call (layer norm of x.T normalises every
# channel over the batch), so ex4.1-ex4.3 refuse them too, and ex4.4 refuses BN_OPS.
OTHER_NORM_OPS = (
    "torch.nn.functional.layer_norm", "torch.layer_norm", "torch.native_layer_norm",
    "torch.nn.LayerNorm",
    "torch.nn.functional.group_norm", "torch.group_norm", "torch.native_group_norm",
    "torch.nn.GroupNorm",
    "torch.nn.functional.rms_norm", "torch.rms_norm", "torch._fused_rms_norm",
    "torch.nn.RMSNorm",
) + _aten("layer_norm", "native_layer_norm", "native_layer_norm_backward", "group_norm",
          "native_group_norm", "native_group_norm_backward", "rms_norm", "_fused_rms_norm")

NORM_OPS = BN_OPS + OTHER_NORM_OPS
BN_FORBID = NORM_OPS          # ex4.1

# Ex4.1's answer is called `batch_norm`, and ex4.2-ex4.4 may call it ("your own batch_norm from
# exercise 4.1 is fine"). The grader's reading of an answer's text (core.forbidden_in_source)
# takes a bare name loaded from another cell for the refused function of the same last name, so
# there these three are watched while the probe runs (watch_if: the same profile hook and
# TorchFunctionMode, any call refused) but not looked for in the text, where `batch_norm` is the
# learner's own function.
SAME_NAME_AS_EX41 = ("torch.nn.functional.batch_norm", "torch.batch_norm",
                     "torch.ops.aten.batch_norm")


def _refused(name):
    return lambda args: name


WATCH_SAME_NAME = tuple((d, _refused(d)) for d in SAME_NAME_AS_EX41)


def _after_ex41(names):
    """A forbid tuple for ex4.2-ex4.4: ``names`` without SAME_NAME_AS_EX41 (see WATCH_SAME_NAME)."""
    return tuple(d for d in names if d not in SAME_NAME_AS_EX41)

BN_HINT = ("per channel, the mean and the (biased) variance of the batch, the normalised "
           "values, then the scale and shift; the running statistics are a moving average. "
           "No F.batch_norm, no nn.BatchNorm module (subclass or wrapper), no other "
           "normalisation op of torch.")


def _affine(rng, C):
    """gamma (one negative entry, none near 0), beta, running mean and running variance."""
    g = rng.uniform(0.3, 2.0, C) * np.where(np.arange(C) == 1, -1.0, 1.0)
    b = rng.uniform(-1.0, 1.0, C)
    rm = rng.uniform(-1.0, 2.0, C)
    rv = rng.uniform(0.5, 2.0, C)
    return g, b, rm, rv


def _t(a):
    """A float64 CPU tensor (a copy)."""
    return torch.tensor(np.asarray(a, dtype=np.float64))


def _sample(rng, shape, loc, scale):
    """Values of ``shape`` = (N, C, ...) with per-channel location and scale."""
    shape = tuple(shape)
    bshape = (1, -1) + (1,) * (len(shape) - 2)
    return (np.asarray(loc, dtype=np.float64).reshape(bshape)
            + np.asarray(scale, dtype=np.float64).reshape(bshape) * rng.standard_normal(shape))


# channel 3 of five: almost constant (variance about 1e-6, where eps = 1e-5 matters)
LOC5 = [0.5, -3.0, 0.0, 2.0, 1.0]
SCALE5 = [1.0, 4.0, 0.3, 1e-3, 2.0]


def _loc_scale(rng, loc, scale):
    """Per-channel locations and scales near the given ones (the tiny scale stays tiny)."""
    return (np.asarray(loc) + rng.uniform(-0.5, 0.5, len(loc)),
            np.asarray(scale) * rng.uniform(0.7, 1.4, len(scale)))


# ------------------------------------------------------------------ shared judging helpers

def _expect_tensor(v, what, ref=None):
    """``expect_array(v, what, dtype="float64", kind="torch")``, except that an answer of
    another float dtype whose values are right at that precision is told so: a dtype issue,
    not a wrong normalisation (issue 18)."""
    if isinstance(v, Value) and v.kind == "torch" and v.value is not None and \
            v.dtype != "float64" and ref is not None:
        a = np.asarray(v.value, dtype=np.float64)
        r = np.asarray(ref, dtype=np.float64)
        scale = float(np.max(np.abs(r), initial=1.0))
        if a.shape == r.shape and np.all(np.isfinite(a)) and close(a, r, 1e-3, 1e-3 * scale):
            raise Fail(f"{what} is {v.dtype} for float64 input, and its values are right up to "
                       f"{v.dtype} precision: a dtype issue, not a wrong normalisation. Keep "
                       "computing in the input's dtype (a .float(), or a new tensor made without "
                       "dtype=, turns float64 into float32).")
    return expect_array(v, what, dtype="float64", kind="torch")


_SHAPE_ERRORS = ("must match the size of tensor", "doesn't match the broadcast shape",
                 "shape mismatch", "could not be broadcast", "cannot broadcast",
                 "not broadcastable", "shapes cannot be multiplied")
CHANNEL_SHAPES = ("This is a shape error: a per-channel statistic of shape (C,) lines up with "
                  "the *last* axis of x when it is broadcast, not with the channel axis (dim 1). "
                  "Keep the reduced axes (keepdim) or reshape the statistics, gamma and beta so "
                  "that their C values sit on dim 1.")
SAMPLE_SHAPES = ("This is a shape error: a statistic whose last axis was reduced away lines up "
                 "with the wrong axes of x when it is broadcast. Keep the reduced axis (keepdim) "
                 "so that it has size 1 there.")


def _raised(got, where, about, shapes=CHANNEL_SHAPES):
    """The learner's exception with the case it happened on; a broadcasting error gets a hint
    about shapes."""
    text = str(got)
    hint = f" {shapes}" if any(s in text for s in _SHAPE_ERRORS) else ""
    return Raised(f"{text}, on {where} ({about}).{hint}")


# ------------------------------------------------------------------ numpy variants for the hints

def _axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _b(v, x):
    return np.asarray(v, dtype=np.float64).reshape((1, -1) + (1,) * (x.ndim - 2))


def _batch_stats(x):
    ax = _axes(x)
    n = x.size // x.shape[1]
    mean = x.mean(axis=ax)
    var = x.var(axis=ax)
    return mean, var, var * n / max(n - 1, 1), n


def _norm(x, mean, var, g, b, eps, how="ok"):
    """gamma * (x - mean) / sqrt(var + eps) + beta, or one of the usual wrong variants."""
    xc = x - mean
    if how == "eps_outside":
        xh = xc / (np.sqrt(var) + eps)
    elif how == "no_eps":
        with np.errstate(divide="ignore", invalid="ignore"):
            xh = xc / np.sqrt(var)
    elif how == "no_sqrt":
        xh = xc / (var + eps)
    else:
        xh = xc / np.sqrt(var + eps)
    if how == "swapped":
        return b * xh + g
    if how == "no_affine":
        return xh
    return g * xh + b


def _y_candidates(x, g, b, rm, rv, training, eps, eval_factors=()):
    """(y, hint) pairs for the usual mistakes in the output, most specific first.

    ``eval_factors``: momentum factors with which a wrong eval step may have updated the
    running statistics before using them."""
    G, B = _b(g, x), _b(b, x)
    mean, var, uvar, _ = _batch_stats(x)
    M, V, U = _b(mean, x), _b(var, x), _b(uvar, x)
    RM, RV = _b(rm, x), _b(rv, x)
    eps_in = ("eps belongs inside the square root (it is added to the variance), not to the "
              "standard deviation after it. It shows on a channel whose values are almost "
              "constant (variance near eps) and when eps is large.")
    no_eps = ("eps is missing from the denominator. Without it a channel whose values "
              "are (almost) constant blows up.")
    no_sqrt = "divide by the standard deviation (with eps inside the root), not by the variance."
    swapped = "gamma and beta are swapped: gamma scales the normalised values, beta shifts them."
    no_aff = "gamma and beta were not applied: one scale and one shift per channel."
    out = []
    if training:
        out += [(_norm(x, M, U, G, B, eps),
                 "you normalised with the unbiased variance (dividing by n - 1). In training "
                 "batch norm normalises with the biased batch variance (divide by n, the number "
                 "of values per channel); the unbiased one only goes into running_var."),
                (_norm(x, M, V, G, B, eps, "eps_outside"), eps_in),
                (_norm(x, M, U, G, B, eps, "eps_outside"), "two mistakes: " + eps_in +
                 " Also normalise with the biased variance (divide by n), not the unbiased one."),
                (_norm(x, M, V, G, B, eps, "no_eps"), no_eps),
                (_norm(x, M, V, G, B, eps, "no_sqrt"), no_sqrt),
                (_norm(x, RM, RV, G, B, eps),
                 "in training mode normalise with the statistics of the current batch, not with "
                 "running_mean and running_var (those are for eval mode)."),
                (_norm(x, M, V, G, B, eps, "swapped"), swapped),
                (_norm(x, M, V, G, B, eps, "no_affine"), no_aff)]
        if x.ndim > 2:
            m0, v0 = x.mean(axis=0, keepdims=True), x.var(axis=0, keepdims=True)
            out += [(_norm(x, m0, v0, G, B, eps), "statistics over the wrong axes: you averaged "
                     "over the batch axis only, which gives one mean per channel *and position*. "
                     "For (N, C, H, W) batch norm pools each channel over N, H and W together "
                     "(dims 0, 2, 3); for (N, C, L) over N and L.")]
        ax = tuple(range(1, x.ndim))
        ms, vs = x.mean(axis=ax, keepdims=True), x.var(axis=ax, keepdims=True)
        out += [(_norm(x, ms, vs, G, B, eps), "statistics over the wrong axes: you normalised "
                 "each sample over its own features (that is layer norm). Batch norm computes "
                 "one mean and variance per channel, over the batch: dim 0 for (N, C), dims "
                 "(0, 2, 3) for (N, C, H, W).")]
        out += [(_norm(x, x.mean(), x.var(), G, B, eps), "statistics over the wrong axes: you "
                 "used one mean and variance for the whole tensor. Batch norm computes them per "
                 "channel (dim 1), pooling the batch and any spatial axes.")]
        if x.ndim > 2:
            mc = x.mean(axis=(0, 1), keepdims=True)
            vc = x.var(axis=(0, 1), keepdims=True)
            out += [(_norm(x, mc, vc, G, B, eps), "statistics over the wrong axes: the "
                     "channel axis is dim 1 and must be kept; pool over dims 0, 2, 3.")]
    else:
        batch = ("in eval mode batch norm uses running_mean and running_var, not the statistics "
                 "of the batch: a sample's output must not depend on the other samples in the "
                 "batch (and a batch of one must work).")
        out += [(_norm(x, M, V, G, B, eps), batch), (_norm(x, M, U, G, B, eps), batch),
                (_norm(x, RM, RV, G, B, eps, "eps_outside"), eps_in),
                (_norm(x, RM, RV, G, B, eps, "no_eps"), no_eps),
                (_norm(x, RM, RV, G, B, eps, "no_sqrt"), no_sqrt),
                (_norm(x, RM, RV, G, B, eps, "swapped"), swapped),
                (_norm(x, RM, RV, G, B, eps, "no_affine"), no_aff)]
        for f in eval_factors:
            for fm in (f, 1 - f):
                for v in (uvar, var):
                    out.append((_norm(x, _b((1 - fm) * rm + fm * mean, x), _b((1 - fm) * rv + fm * v, x),
                                      G, B, eps),
                                "you updated the running statistics in eval mode (and then used "
                                "them). In eval they are only read, never updated: the running "
                                "statistics changed in eval mode."))
    M_, V_ = (M, V) if training else (RM, RV)
    for e in (1e-5, 1e-3, 0.1, 1e-8):
        if not np.isclose(e, eps, rtol=1e-9, atol=0):
            out.append((_norm(x, M_, V_, G, B, e),
                        f"it matches eps = {e:g}, not the eps of this call ({eps:g}). Use the "
                        "eps argument (its default is 1e-5, torch's; Keras uses 1e-3)."))
    return out


def _explain_y(label, y, ref, x, g, b, rm, rv, training, eps, dtype=None, eval_factors=()):
    """Fail with the most likely mistake when the output ``y`` differs from ``ref``."""
    for cand, hint in _y_candidates(x, g, b, rm, rv, training, eps, eval_factors):
        if close(y, cand, RTOL, ATOL):
            raise Fail(f"{label}: wrong output y; {hint}")
    mode = "training" if training else "eval"
    extra = ""
    if dtype and dtype not in ("float64", "double"):
        extra = f" Your y is {dtype} for float64 input: keep computing in the dtype of x."
    if not np.all(np.isfinite(y)):
        extra += " y contains NaN or inf (a division by zero? eps belongs inside the square root)."
    how = ("the batch mean and biased batch variance of each channel (over N, and L or H, W)"
           if training else "running_mean and running_var")
    raise Fail(f"{label} ({mode} mode): wrong output y (largest difference "
               f"{max_err(y, ref):.3g}). Expected the values normalised per channel, then scaled by "
               f"gamma and shifted by beta, "
               f"with {how}.{extra}")


def _explain_running(label, got_rm, got_rv, x, rm, rv, factor, ref_rm, ref_rv, extra=()):
    """Fail with the likely mistake when the running buffers after a training step are wrong.

    ``factor`` is the weight of the new batch statistic (momentum, or 1/num_batches_tracked).
    ``extra`` holds further ``(factor, hint)`` candidates (e.g. momentum=None mishandled).
    """
    mean, var, uvar, n = _batch_stats(x)
    C = len(rm)
    for got, what in ((got_rm, "new_running_mean"), (got_rv, "new_running_var")):
        if got.shape != (C,):
            raise Fail(f"{label}: {what} has shape {got.shape}, expected ({C},): one value per "
                       "channel.")
    flip = ("momentum is the weight of the *new* batch statistic in PyTorch (the old running "
            "value keeps the rest). You gave the new value the weight 1 - momentum (Keras "
            "writes it the other way: its momentum=0.99 is torch's 0.01).")
    if not close(got_rm, ref_rm, RTOL, ATOL):
        for f, hint in extra:
            if close(got_rm, (1 - f) * rm + f * mean, RTOL, ATOL):
                raise Fail(f"{label}: wrong running_mean; {hint}")
        if factor < 1 and close(got_rm, factor * rm + (1 - factor) * mean, RTOL, ATOL):
            raise Fail(f"{label}: wrong running_mean; {flip}")
        if close(got_rm, rm, RTOL, ATOL):
            raise Fail(f"{label}: running_mean was not updated in training mode; each training "
                       "step moves it toward the batch mean by the fraction momentum.")
        if factor < 1 and close(got_rm, mean, RTOL, ATOL):
            raise Fail(f"{label}: running_mean was replaced by the batch mean; it is an "
                       "exponential moving average that keeps most of its old value.")
        raise Fail(f"{label}: wrong running_mean (largest difference {max_err(got_rm, ref_rm):.3g}"
                   f"); expected a moving average of the batch means whose new batch has weight "
                   f"{factor:.4g}.")
    if not close(got_rv, ref_rv, RTOL, ATOL):
        biased = ("running_var must be updated with the *unbiased* batch variance (the biased "
                  f"one times n / (n - 1), here n = {n} values per channel), while the "
                  "normalisation uses the biased one.")
        for f, hint in extra:
            for v in (uvar, var):
                if close(got_rv, (1 - f) * rv + f * v, RTOL, ATOL):
                    raise Fail(f"{label}: wrong running_var; {hint}")
        if close(got_rv, (1 - factor) * rv + factor * var, RTOL, ATOL):
            raise Fail(f"{label}: wrong running_var; {biased}")
        N = x.shape[0]
        if x.ndim > 2 and N > 1:
            uvar_n = var * N / (N - 1)
            if close(got_rv, (1 - factor) * rv + factor * uvar_n, RTOL, ATOL):
                raise Fail(f"{label}: wrong running_var; the unbiased correction n / (n - 1) "
                           f"used n = N = {N}, the batch size. For a {tuple(x.shape)} input each "
                           f"channel has n = {n} values (the batch size times every position), "
                           "and n counts them all.")
        if factor < 1:
            for v in (uvar, var):
                if close(got_rv, factor * rv + (1 - factor) * v, RTOL, ATOL):
                    raise Fail(f"{label}: wrong running_var; {flip}")
        if close(got_rv, rv, RTOL, ATOL):
            raise Fail(f"{label}: running_var was not updated in training mode.")
        if close(got_rv, (1 - factor) * rv + factor * np.sqrt(var), RTOL, ATOL) or \
                close(got_rv, (1 - factor) * rv + factor * np.sqrt(uvar), RTOL, ATOL):
            raise Fail(f"{label}: running_var tracks the standard deviation; it must track the "
                       "(unbiased) variance.")
        raise Fail(f"{label}: wrong running_var (largest difference {max_err(got_rv, ref_rv):.3g}"
                   f"); expected a moving average of the unbiased batch variances whose new batch has "
                   f"weight {factor:.4g}.")


def _explain_eval_buffers(label, got_rm, got_rv, rm, rv):
    """Fail unless the running buffers came back unchanged from an eval-mode call."""
    C = len(rm)
    for got, what in ((got_rm, "running_mean"), (got_rv, "running_var")):
        if got.shape != (C,):
            raise Fail(f"{label}: the returned {what} has shape {got.shape}, expected ({C},).")
    if not (close(got_rm, rm, 1e-12, 1e-12) and close(got_rv, rv, 1e-12, 1e-12)):
        raise Fail(f"{label}: the running statistics changed in eval mode. In eval they are only "
                   "read, never updated: running_mean and running_var stay as they were.")


# ------------------------------------------------------------------ ex4.1

# what each input shape is about, for messages on errors
ABOUT = {2: "statistics over the batch axis 0, one per channel (dim 1)",
         3: "statistics over every axis but 1 (N and L)",
         4: "statistics over every axis but 1 (N, H and W)"}


def _about(x):
    return f"a {tuple(x.shape)} input: {ABOUT.get(x.ndim, 'one statistic per channel (dim 1)')}"


def _bn_cases(seed):
    """(label, x, gamma, beta, running_mean, running_var, training, momentum, eps); momentum
    None means: call with the defaults (momentum=0.1, eps=1e-5 not passed)."""
    rng = case_rng(seed, 4101)
    loc, scale = _loc_scale(rng, LOC5, SCALE5)
    x1 = _sample(rng, (8, 5), loc, scale)
    x2 = _sample(rng, (6, 5, 3, 4), loc, scale)
    x3 = _sample(rng, (7, 5), loc, scale)
    x4 = _sample(rng, (3, 5, 2, 3), loc, scale)
    x5 = _sample(rng, (2, 5), loc, scale)
    x5[:, 4] = round(float(rng.uniform(-2, 2)), 2)    # an exactly constant channel
    g, b, rm, rv = _affine(rng, 5)
    m = round(float(rng.uniform(0.2, 0.4)), 2)
    x6 = _sample(rng, (4, 5, 3), loc, scale)
    return [
        ("(8, 5) input, training, default momentum and eps", x1, g, b, rm, rv, True, None, None),
        (f"(8, 5) input, training, momentum={m}, eps=0.1", x1, g, b, rm, rv, True, m, 0.1),
        (f"(6, 5, 3, 4) input, training, momentum={m}", x2, g, b, rm, rv, True, m, 1e-5),
        ("(7, 5) input, eval", x3, g, b, rm, rv, False, 0.1, 1e-5),
        (f"(3, 5, 2, 3) input, eval, momentum={m}, eps=0.1", x4, g, b, rm, rv, False, m, 0.1),
        ("(2, 5) input (a batch of two, one channel constant), training", x5, g, b, rm, rv, True, 0.1, 1e-5),
        (f"(4, 5, 3) input (N, C, L), training, momentum={m}", x6, g, b, rm, rv, True, m, 1e-5),
    ]


def _bn_chain(seed):
    """Three training steps on (5, 5, 4, 4) batches, then eval; each step gets the running
    buffers the previous step returned."""
    rng = case_rng(seed, 4102)
    loc, scale = _loc_scale(rng, LOC5, SCALE5)
    xs = [_sample(rng, (5, 5, 4, 4), loc + k, scale) for k in range(3)]
    xs.append(_sample(rng, (3, 5, 4, 4), loc, scale))
    g, b, rm, rv = _affine(rng, 5)
    return xs, g, b, rm, rv, round(float(rng.uniform(0.2, 0.4)), 2), 1e-5


def _call_bn(fn, box, x, g, b, rm, rv, training, momentum, eps):
    def call():
        if momentum is None:
            box["out"] = fn(x, g, b, rm, rv, training)
        else:
            box["out"] = fn(x, g, b, rm, rv, training, momentum=momentum, eps=eps)
        return box["out"]
    return capture(call)


def probe_batch_norm(batch_norm, seed):
    """Raw data only: what came back, and every input as it was after the call
    (``inputs_after``); the judge decides whether an input was modified."""
    cases = []
    for _, x, g, b, rm, rv, training, mom, eps in _bn_cases(seed):
        args = [_t(a) for a in (x, g, b, rm, rv)]
        res = _call_bn(batch_norm, {}, *args, training, mom, eps)
        cases.append({"result": res, "after": inputs_after(*args)})
    xs, g, b, rm, rv, mom, eps = _bn_chain(seed)
    chain = []
    rm_t, rv_t = _t(rm), _t(rv)
    for k, x in enumerate(xs):
        args = [_t(x), _t(g), _t(b), rm_t, rv_t]
        box: dict = {}
        res = _call_bn(batch_norm, box, *args, k < len(xs) - 1, mom, eps)
        chain.append({"result": res, "after": inputs_after(*args)})
        o = box.get("out")
        if not (isinstance(o, (tuple, list)) and len(o) == 3):
            break
        try:   # feed the returned buffers (tensors, or anything array-like) into the next step
            rm_t, rv_t = (torch.as_tensor(np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor)
                                                     else v, dtype=np.float64)).clone()
                          for v in o[1:])
        except Exception:  # noqa: BLE001 - not numbers: the judge reports the step
            break
    return {"cases": cases, "chain": chain}


def _ref_bn(x, g, b, rm, rv, training, momentum, eps):
    rm_t, rv_t = _t(rm), _t(rv)
    y = F.batch_norm(_t(x), rm_t, rv_t, _t(g), _t(b), training, momentum, eps)
    return y.numpy(), rm_t.numpy(), rv_t.numpy()


def _judge_bn_call(label, got, after, x, g, b, rm, rv, training, momentum, eps):
    """One call of ex4.1: ``after`` holds the five inputs as they were after the call, compared
    here with the inputs the judge rebuilt (``rm``, ``rv``: what was passed in)."""
    if isinstance(got, Raised):
        raise _raised(got, f"the case {label}", _about(x))
    if not (isinstance(got, (tuple, list)) and len(got) == 3):
        kind = type(got).__name__ if not isinstance(got, Value) else got.dtype
        raise Fail(f"{label}: batch_norm should return a tuple of three tensors (y, "
                   f"new_running_mean, new_running_var), got {kind}.")
    y_ref, rm_ref, rv_ref = _ref_bn(x, g, b, rm, rv, training, momentum, eps)
    y = _expect_tensor(got[0], f"{label}: y", y_ref)
    if y.shape != x.shape:
        raise Fail(f"{label}: y has shape {y.shape}, expected the shape of x, {x.shape}.")
    if not close(y, y_ref, RTOL, ATOL):
        _explain_y(label, y, y_ref, x, g, b, rm, rv, training, eps,
                   getattr(got[0], "dtype", None), (momentum,))
    for v, what in ((got[1], "new_running_mean"), (got[2], "new_running_var")):
        if isinstance(v, Value) and v.value is None:
            raise Fail(f"{label}: {what} is {v.dtype}; return the running buffers in both modes "
                       "(in eval mode, unchanged).")
    got_rm = _expect_tensor(got[1], f"{label}: new_running_mean", rm_ref)
    got_rv = _expect_tensor(got[2], f"{label}: new_running_var", rv_ref)
    if training:
        _explain_running(label, got_rm, got_rv, x, rm, rv, momentum, rm_ref, rv_ref)
    else:
        _explain_eval_buffers(label, got_rm, got_rv, rm, rv)
    names = ["x", "gamma", "beta", "running_mean", "running_var"]
    originals = [x, g, b, rm, rv]
    if not (isinstance(after, (list, tuple)) and len(after) == 5):
        after = [None] * 5
    bad = [n for n, a, o in zip(names, after, originals) if input_changed([a], np.asarray(o))]
    if "running_mean" in bad or "running_var" in bad:
        raise Fail(f"{label}: your function changed the {' and '.join(n for n in bad if 'running' in n)} "
                   "tensor passed in (an in-place update such as running_mean.mul_(...) or "
                   "F.batch_norm on the tensors you were given). Return *new* buffers and leave "
                   "the inputs as they were.")
    if bad:
        raise Fail(f"{label}: your function changed its input {', '.join(bad)} in place; work on "
                   "new tensors.")


def judge_batch_norm(data, seed):
    cases = data["cases"]
    for (label, x, g, b, rm, rv, training, mom, eps), rec in zip(_bn_cases(seed), cases, strict=True):
        if mom is None:
            mom, eps = 0.1, 1e-5
        _judge_bn_call(label, rec["result"], rec.get("after"), x, g, b, rm, rv, training, mom, eps)
    xs, g, b, rm, rv, mom, eps = _bn_chain(seed)
    chain = data["chain"]
    if len(chain) != len(xs):
        last = chain[-1]["result"] if chain else None
        raise Fail(f"consecutive steps on (5, 5, 4, 4) batches: step {len(chain)} did not return "
                   f"three tensors to feed into the next step (got {last!r:.80}).")
    fed_rm, fed_rv = rm, rv        # what the probe passed in: the buffers the step before returned
    for k, (x, rec) in enumerate(zip(xs, chain)):
        training = k < len(xs) - 1
        label = (f"training step {k + 1} of 3 on (5, 5, 4, 4) batches (momentum={mom}), fed the "
                 "buffers of the step before" if training else
                 "eval on a (3, 5, 4, 4) batch after three training steps")
        _judge_bn_call(label, rec["result"], rec.get("after"), x, g, b, fed_rm, fed_rv, training,
                       mom, eps)
        got = rec["result"]
        fed_rm, fed_rv = as_array(got[1]), as_array(got[2])   # close to the reference: checked
    return None


exercise("ex4.1", "batch_norm", probe_batch_norm, judge_batch_norm,
         forbid=BN_FORBID, forbid_hint=BN_HINT)

# ------------------------------------------------------------------ ex4.2

C4 = 4
LOC4 = [0.5, -3.0, 2.0, 1.0]
SCALE4 = [1.0, 4.0, 1e-3, 2.0]   # channel 2 almost constant

_CONFIGS = [("BatchNorm1d(4)", {}),
            ("BatchNorm1d(4, eps=0.1, momentum=0.3)", {"eps": 0.1, "momentum": 0.3}),
            ("BatchNorm1d(4, momentum=None)", {"momentum": None})]
_GRAD_STEP = 1


def _affine4(seed):
    """gamma and beta the probe sets on every module."""
    g, b, _, _ = _affine(case_rng(seed, 4204), C4)
    return g, b


def _module_steps(seed):
    """(label, training, x): the sequence of calls every configuration goes through."""
    rng = case_rng(seed, 4201)
    loc, scale = _loc_scale(rng, LOC4, SCALE4)
    s = lambda shape, shift=0.0: _sample(rng, shape, loc + shift, scale)
    return [("eval before any training, (6, 4) input", False, s((6, 4))),
            ("training step 1, (8, 4) input", True, s((8, 4))),
            ("training step 2, (3, 4, 5) input (N, C, L)", True, s((3, 4, 5), 1.0)),
            ("training step 3, (2, 4) input (a batch of two)", True, s((2, 4), -0.5)),
            ("eval, (5, 4, 3) input", False, s((5, 4, 3))),
            ("eval, (7, 4) input", False, s((7, 4))),
            ("training step 4, (10, 4) input", True, s((10, 4), 2.0)),
            ("eval, (1, 4) input (a batch of one)", False, s((1, 4)))]


def _load_setup(seed):
    """A torch state to load: weight, bias, running stats and num_batches_tracked = 7."""
    rng = case_rng(seed, 4202)
    g, b, rm, rv = _affine(rng, C4)
    rv[2] = 2e-6                                       # the almost constant channel
    return {"weight": g, "bias": b, "running_mean": rm + np.array(LOC4),
            "running_var": rv, "num_batches_tracked": 7,
            "x_eval": _sample(rng, (5, 4), LOC4, SCALE4),
            "x_train": _sample(rng, (6, 4), LOC4, SCALE4)}


def _upstream(seed, shape):
    return case_rng(seed, 4203).standard_normal(shape)


def _snapshot(m):
    """The module after a call, raw: its buffers as they are (the record keeps each one's dtype
    and requires_grad), its parameters and its mode. The judge decides what is right."""
    return {"running_mean": m.running_mean, "running_var": m.running_var,
            "num_batches_tracked": m.num_batches_tracked, "weight": m.weight, "bias": m.bias,
            "training": m.training}


def _state(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _set_affine(m, g, b):
    with torch.no_grad():
        m.weight.copy_(_t(g))
        m.bias.copy_(_t(b))


def _backward(y, x, m, up):
    y.backward(_t(up))
    return {"x": x.grad, "weight": m.weight.grad, "bias": m.bias.grad}


def _torch_state(kw, seed):
    s = _load_setup(seed)
    tbn = nn.BatchNorm1d(C4, **kw).double()
    with torch.no_grad():
        for k in ("weight", "bias", "running_mean", "running_var"):
            getattr(tbn, k).copy_(_t(s[k]))
        tbn.num_batches_tracked.fill_(s["num_batches_tracked"])
    return tbn, s


def probe_batchnorm1d(BatchNorm1d, seed):
    """Raw data only: the names, the state_dict as built and after the sequence of calls (the
    judge loads the latter into nn.BatchNorm1d itself), per call the output, the module's
    buffers, parameters and mode, and the input as it was after the call."""
    gamma, beta = _affine4(seed)
    out = []
    for _, kw in _CONFIGS:
        rec: dict = {}
        out.append(rec)
        box: dict = {}

        def build(box=box, kw=kw):
            box["m"] = BatchNorm1d(C4, **kw)
        rec["build"] = capture(build)
        m = box.get("m")
        rec["is_module"] = isinstance(m, nn.Module)
        if not rec["is_module"]:
            continue
        rec["initial"] = capture(_state, m)          # as built: dtypes before .double()
        rec["double"] = capture(lambda m=m: (m.double(), None)[1])
        rec["params"] = capture(lambda m=m: [n for n, _ in m.named_parameters()])
        rec["buffers"] = capture(lambda m=m: [n for n, _ in m.named_buffers()])
        rec["keys"] = capture(lambda m=m: list(m.state_dict().keys()))
        rec["set_affine"] = capture(_set_affine, m, gamma, beta)
        steps = []
        for k, (_, training, x) in enumerate(_module_steps(seed)):
            step: dict = {}
            steps.append(step)
            xt = _t(x)
            if k == _GRAD_STEP:
                xt.requires_grad_(True)
            step["mode"] = capture(lambda m=m, tr=training: (m.train(tr), None)[1])
            ybox: dict = {}

            def fwd(m=m, xt=xt, ybox=ybox):
                ybox["y"] = m(xt)
                return ybox["y"]
            step["y"] = capture(fwd)
            if k == _GRAD_STEP and "y" in ybox:
                step["grads"] = capture(_backward, ybox["y"], xt, m, _upstream(seed, x.shape))
            step["state"] = capture(_snapshot, m)
            step["x_after"] = inputs_after(xt)
        rec["steps"] = steps
        rec["final_state"] = capture(_state, m)      # the judge loads it into nn.BatchNorm1d
        # a torch BatchNorm1d's state_dict loaded into a fresh module of yours (built here,
        # outside the learner's code: only the learner's own module runs under capture)
        tbn, s = _torch_state(kw, seed)
        torch_sd = tbn.state_dict()
        box2: dict = {}

        def build2(box2=box2, kw=kw):
            box2["m"] = BatchNorm1d(C4, **kw)
            box2["m"].double()
        rec["load_build"] = capture(build2)
        m2 = box2.get("m")
        if m2 is None:
            continue
        rec["load"] = capture(lambda: (m2.load_state_dict(torch_sd), None)[1])
        capture(m2.eval)
        rec["load_eval"] = capture(m2, _t(s["x_eval"]))
        capture(m2.train)
        rec["load_train"] = capture(m2, _t(s["x_train"]))
        rec["load_state"] = capture(_snapshot, m2)
    return out


def _names_check(label, rec):
    params, buffers, keys = (unwrap(rec[k]) for k in ("params", "buffers", "keys"))
    params, buffers, keys = list(params), list(buffers), list(keys)
    running = {"running_mean", "running_var"}
    if running & set(params):
        raise Fail(f"{label}: {sorted(running & set(params))} are registered as parameters. "
                   "Running statistics are buffers (self.register_buffer(...)): as parameters the "
                   "optimizer would change them and they would get gradients.")
    if set(params) != {"weight", "bias"}:
        hint = ""
        if {"gamma", "beta"} & set(params):
            hint = (" nn.BatchNorm1d calls gamma `weight` and beta `bias`; a state_dict only "
                    "moves between two modules when the names match.")
        elif not params:
            hint = " Wrap gamma and beta in nn.Parameter so that the optimizer trains them."
        raise Fail(f"{label}: the parameters are named {params}, expected ['weight', 'bias'] "
                   f"(nn.Parameter, one value per feature).{hint}")
    missing = [n for n in ("running_mean", "running_var", "num_batches_tracked") if n not in buffers]
    if running & set(missing):
        raise Fail(f"{label}: {sorted(running & set(missing))} are not registered buffers (found "
                   f"buffers {buffers}). A plain tensor attribute is not in the state_dict and does "
                   "not move with .to(device): use self.register_buffer('running_mean', "
                   "torch.zeros(num_features)) and the same for running_var (ones).")
    if missing:
        raise Fail(f"{label}: no num_batches_tracked buffer. nn.BatchNorm1d keeps a long tensor "
                   "counting the training batches (it is in its state_dict, and momentum=None "
                   "needs it): self.register_buffer('num_batches_tracked', torch.tensor(0)).")
    want = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    if sorted(keys) != sorted(want):
        raise Fail(f"{label}: state_dict keys {keys}, expected {want}; extra persistent buffers "
                   "or parameters stop a state_dict from moving to nn.BatchNorm1d.")


def _ref_module(kw, gamma, beta):
    ref = nn.BatchNorm1d(C4, **kw).double()
    with torch.no_grad():
        ref.weight.copy_(_t(gamma))
        ref.bias.copy_(_t(beta))
    return ref


def _pre(ref):
    return (ref.running_mean.detach().numpy().copy(), ref.running_var.detach().numpy().copy(),
            int(ref.num_batches_tracked))


def _none_extras(kw, nbt_before, counter_restart=None):
    """Candidate wrong factors for momentum=None."""
    if "momentum" not in kw or kw["momentum"] is not None:
        return []
    cum = ("momentum=None means a cumulative average: the factor of the new batch is "
           "1 / num_batches_tracked (after counting this batch), so every batch weighs the same.")
    out = [(0.1, "with momentum=None you used momentum 0.1. " + cum)]
    if nbt_before > 0:
        out.append((1.0 / nbt_before, "the factor is 1 / num_batches_tracked *after* counting the "
                    "current batch (off by one). " + cum))
    out.append((1.0 / (nbt_before + 2), "the factor is 1 / num_batches_tracked after counting "
                "the current batch once (you counted it twice?). " + cum))
    if counter_restart is not None:
        out.append((counter_restart, "read the count from the num_batches_tracked buffer (a "
                    "loaded state_dict sets it), not from a separate Python counter. " + cum))
    return out


def _check_module_output(label, got, ref_y, x, g, b, rm, rv, training, eps, eval_factors=()):
    if isinstance(got, Raised):
        if "momentum=None" in label and "NoneType" in str(got):
            raise Raised(f"{got}, on {label} ({_about(x)}). With momentum=None there is no "
                         "momentum number to use: it asks for a cumulative average, whose "
                         "factor for the new batch comes from num_batches_tracked.")
        raise _raised(got, label, _about(x))
    y = _expect_tensor(got, f"{label}: the module's output", ref_y)
    if y.shape != x.shape:
        raise Fail(f"{label}: the output has shape {y.shape}, expected the input's shape {x.shape}."
                   + (" BatchNorm1d takes (N, C) or (N, C, L): for (N, C, L) the statistics are "
                      "over N and L (dims 0 and 2)." if x.ndim == 3 else ""))
    if not close(y, ref_y, RTOL, ATOL):
        _explain_y(label, y, ref_y, x, g, b, rm, rv, training, eps, getattr(got, "dtype", None),
                   eval_factors)


def _nbt_dtype(label, v, when):
    """num_batches_tracked must stay what nn.BatchNorm1d keeps: a 0-d int64 (long) tensor."""
    if isinstance(v, Value) and v.kind == "torch" and v.value is not None:
        if v.dtype != "int64":
            raise Fail(f"{label}: num_batches_tracked is a {v.dtype} tensor {when}; "
                       "nn.BatchNorm1d keeps it as a long (int64) tensor, a count of batches "
                       "(a float counter is not what nn.BatchNorm1d saves and loads, and stops "
                       "counting exactly past 2**24). Make it torch.tensor(0) (a long) and add 1 "
                       "to it without changing its dtype.")
        if np.shape(v.value) != ():
            raise Fail(f"{label}: num_batches_tracked has shape {tuple(np.shape(v.value))} {when};"
                       " nn.BatchNorm1d's is a 0-d tensor (one number, shape ()), and a "
                       "state_dict only loads when the shapes match.")
    elif not isinstance(v, Raised):
        raise Fail(f"{label}: num_batches_tracked is not a tensor {when}; register it as a "
                   "buffer holding a long (int64) 0-d tensor.")


def _check_module_state(label, st, ref, x, rm, rv, nbt, training, kw, counter_restart=None,
                        gamma=None, beta=None):
    """The module after one call, from the raw snapshot: buffers (values, dtypes, no graph),
    the counter, the parameters (never changed by a forward pass) and the mode (a forward pass
    does not switch it)."""
    if isinstance(st, Raised):
        raise st
    for name in ("running_mean", "running_var"):
        v = st[name]
        if isinstance(v, Value) and v.kind == "torch" and v.dtype != "float64":
            raise Fail(f"{label}: {name} became {v.dtype} after .double() and a forward pass on "
                       "float64 input; keep the buffers in their own dtype (update them in place, "
                       "or from statistics computed in the input's dtype).")
    _nbt_dtype(label, st["num_batches_tracked"], "after a forward pass")
    got_rm, got_rv = as_array(st["running_mean"], "running_mean"), as_array(st["running_var"], "running_var")
    got_n = int(round(as_array(st["num_batches_tracked"], "num_batches_tracked").reshape(-1)[0]))
    ref_rm, ref_rv = ref.running_mean.detach().numpy(), ref.running_var.detach().numpy()
    if training:
        mom = kw.get("momentum", 0.1)
        factor = 1.0 / (nbt + 1) if mom is None else mom
        _explain_running(label, got_rm, got_rv, x, rm, rv, factor, ref_rm, ref_rv,
                         _none_extras(kw, nbt, counter_restart))
        if got_n != nbt + 1:
            raise Fail(f"{label}: num_batches_tracked is {got_n}, expected {nbt + 1}: add 1 on "
                       "every forward pass in training mode.")
    else:
        _explain_eval_buffers(label, got_rm, got_rv, rm, rv)
        if got_n != nbt:
            raise Fail(f"{label}: num_batches_tracked changed from {nbt} to {got_n} in eval mode; "
                       "it only counts training batches.")
    if any(isinstance(st[n], Value) and st[n].grad for n in ("running_mean", "running_var")):
        raise Fail(f"{label}: the running buffers require grad, so they keep the computation "
                   "graph of every batch. Update them under torch.no_grad() (or from detached "
                   "statistics); only the output needs gradients.")
    if st.get("training") is not training:
        mode = "training" if training else "eval"
        raise Fail(f"{label}: after a forward pass in {mode} mode the module's mode changed "
                   f"(training = {st.get('training')!r}); forward reads self.training, it never "
                   "calls .train() or .eval() or sets it.")
    if gamma is not None:
        for name, want in (("weight", gamma), ("bias", beta)):
            got = st.get(name)
            if not isinstance(got, Value) or got.value is None or \
                    np.shape(got.value) != np.shape(want) or not close(got.value, want, 0, 0):
                raise Fail(f"{label}: the parameter {name} changed during a forward pass. Only "
                           "an optimizer changes weight and bias; forward only reads them "
                           "(and, in training mode, updates the running buffers).")


def _bn1d_build(label, rec):
    """The module exists, is an nn.Module, has nn.BatchNorm1d's names and initial values."""
    if isinstance(rec.get("build"), Raised):
        raise Raised(f"{rec['build']} in {label}; the constructor is "
                     "BatchNorm1d(num_features, eps=1e-5, momentum=0.1), momentum=None allowed")
    if not rec.get("is_module"):
        raise Fail(f"{label}: BatchNorm1d must subclass nn.Module (class BatchNorm1d(nn.Module)) "
                   "so that .train()/.eval(), parameters and state_dict work.")
    if isinstance(rec.get("double"), Raised):
        raise rec["double"]
    _names_check(label, rec)
    init = unwrap(rec["initial"])
    _nbt_dtype(label, init.get("num_batches_tracked"), "in a new module")
    want = {"weight": np.ones(C4), "bias": np.zeros(C4), "running_mean": np.zeros(C4),
            "running_var": np.ones(C4), "num_batches_tracked": np.zeros(())}
    for k, v in want.items():
        a = as_array(init[k], k)
        if k == "num_batches_tracked":   # a 0-d tensor (the record stores it as one value)
            a, v = a.reshape(-1), v.reshape(-1)
        if a.shape != v.shape or not close(a, v, 0, 0):
            raise Fail(f"{label}: a new module starts with {k} = {a.tolist()}, expected "
                       f"{v.tolist()} (weight ones, bias zeros, running_mean zeros, "
                       "running_var ones, num_batches_tracked 0).")
    if isinstance(rec.get("set_affine"), Raised):
        raise rec["set_affine"]


def _bn1d_grads(lab, step, xt, ref, y_ref, up):
    """The gradient step: x, weight and bias gradients equal nn.BatchNorm1d's."""
    y_ref.backward(_t(up))
    grads = step.get("grads")
    if isinstance(grads, Raised):
        raise Fail(f"{lab}: backward through your output failed ({grads}); build the "
                   "output from torch operations on x, weight and bias (no NumPy, "
                   ".item() or .data) so that autograd can follow it.")
    for name, r in (("x", xt.grad), ("weight", ref.weight.grad), ("bias", ref.bias.grad)):
        gv = grads[name]
        if isinstance(gv, Value) and gv.value is None:
            raise Fail(f"{lab}: no gradient reached {name}; weight and bias must be "
                       "nn.Parameters used in the output.")
        a = as_array(gv, f"the gradient of {name}")
        if not close(a, r.numpy(), 1e-5, 1e-6):
            raise Fail(f"{lab}: the gradient with respect to {name} is wrong (largest "
                       f"difference {max_err(a, r.numpy()):.3g}). In training the "
                       "batch mean and variance are part of the computation: do not "
                       "detach them (only the running buffers are updated without "
                       "gradient).")


def _bn1d_steps(label, kw, rec, seed):
    """The sequence of training and eval calls against nn.BatchNorm1d."""
    gamma, beta = _affine4(seed)
    eps = kw.get("eps", 1e-5)
    ref = _ref_module(kw, gamma, beta)
    for k, ((slabel, training, x), step) in enumerate(zip(_module_steps(seed), rec["steps"],
                                                          strict=True)):
        lab = f"{label}, {slabel}"
        if isinstance(step.get("mode"), Raised):
            raise step["mode"]
        ref.train(training)
        rm, rv, nbt = _pre(ref)
        xt = _t(x)
        if k == _GRAD_STEP:
            xt.requires_grad_(True)
        y_ref = ref(xt)
        mom = kw.get("momentum", 0.1)
        _check_module_output(lab, step["y"], y_ref.detach().numpy(), x, gamma, beta,
                             rm, rv, training, eps,
                             (0.1, 1.0 / (nbt + 1)) if mom is None else (mom,))
        if k == _GRAD_STEP:
            _bn1d_grads(lab, step, xt, ref, y_ref, _upstream(seed, x.shape))
        _check_module_state(lab, step["state"], ref, x, rm, rv, nbt, training, kw,
                            gamma=gamma, beta=beta)
        if input_changed(step.get("x_after"), x):
            raise Fail(f"{lab}: forward changed its input x in place; work on new tensors.")
    return ref


def _bn1d_to_torch(label, kw, rec, ref):
    """The module's state_dict after the sequence of calls loads into nn.BatchNorm1d (here,
    in the judge, from the raw entries) and holds the reference module's values."""
    st = rec.get("final_state")
    if isinstance(st, Raised):
        raise Fail(f"{label}: state_dict() of your module failed ({st}).")
    if not isinstance(st, dict):
        raise Fail(f"{label}: state_dict() of your module did not return a dict of tensors.")
    sd = {}
    for k, v in st.items():
        if not (isinstance(v, Value) and v.kind == "torch" and v.value is not None):
            raise Fail(f"{label}: the state_dict entry {k!r} is not a tensor; parameters and "
                       "buffers are tensors (nn.Parameter, register_buffer).")
        dtype = getattr(torch, str(v.dtype), None)
        sd[k] = torch.as_tensor(np.asarray(v.value)).to(dtype if isinstance(dtype, torch.dtype)
                                                          else torch.float64)
    try:
        nn.BatchNorm1d(C4, **kw).double().load_state_dict(sd)
    except Exception as e:  # noqa: BLE001 - what torch says is the hint
        raise Fail(f"{label}: nn.BatchNorm1d could not load your module's state_dict "
                   f"({type(e).__name__}: {str(e)[:300]}). Names and shapes must match "
                   "nn.BatchNorm1d's.") from None
    for k, want in ref.state_dict().items():
        if not close(sd[k].double().numpy(), want.double().numpy(), RTOL, ATOL):
            raise Fail(f"{label}: after the sequence of calls your state_dict's {k} differs from "
                       "nn.BatchNorm1d's; it must hold the module's current values.")


def _bn1d_load(label, kw, rec, seed):
    """A state_dict moves both ways between the answer and nn.BatchNorm1d."""
    eps = kw.get("eps", 1e-5)
    if isinstance(rec.get("load_build"), Raised):
        raise rec["load_build"]
    lab = f"{label}, after loading an nn.BatchNorm1d state_dict (num_batches_tracked = 7)"
    if isinstance(rec.get("load"), Raised):
        raise Fail(f"{lab}: load_state_dict failed ({rec['load']}). The names must be "
                   "weight, bias, running_mean, running_var and num_batches_tracked.")
    tbn, s = _torch_state(kw, seed)
    tbn.eval()
    rm, rv, nbt = _pre(tbn)
    w, bb = tbn.weight.detach().numpy().copy(), tbn.bias.detach().numpy().copy()
    with torch.no_grad():
        y_ref = tbn(_t(s["x_eval"])).numpy()
    _check_module_output(lab + ", eval", rec["load_eval"], y_ref, s["x_eval"], w, bb, rm, rv,
                         False, eps)
    tbn.train()
    with torch.no_grad():
        y_ref = tbn(_t(s["x_train"])).numpy()
    _check_module_output(lab + ", then a training step", rec["load_train"], y_ref,
                         s["x_train"], w, bb, rm, rv, True, eps)
    _check_module_state(lab + ", then a training step", rec["load_state"], tbn, s["x_train"],
                        rm, rv, nbt, True, kw, counter_restart=1.0, gamma=w, beta=bb)


def judge_batchnorm1d(data, seed):
    for (label, kw), rec in zip(_CONFIGS, data, strict=True):
        _bn1d_build(label, rec)
        ref = _bn1d_steps(label, kw, rec, seed)
        _bn1d_to_torch(label, kw, rec, ref)
        _bn1d_load(label, kw, rec, seed)
    return None


exercise("ex4.2", "BatchNorm1d", probe_batchnorm1d, judge_batchnorm1d, kind="class",
         forbid=_after_ex41(NORM_OPS), watch_if=WATCH_SAME_NAME,
         forbid_hint=BN_HINT + " Your own batch_norm from exercise 4.1 is "
         "fine to call.")

# ------------------------------------------------------------------ ex4.3 batch_norm_backward

# ex4.3 also refuses autograd, whichever door it is entered by: Tensor.backward,
# torch.autograd.grad/backward (both reach _engine_run_backward), torch.autograd.functional
# (vjp, jacobian, ...) and torch.func's transforms.
AUTOGRAD = ("torch.Tensor.backward", "torch.autograd.grad", "torch.autograd.backward",
            "torch.autograd.graph._engine_run_backward", "torch.autograd.functional.*",
            "torch.autograd.functional.vjp", "torch.autograd.functional.jacobian",
            "torch.func.*", "torch.func.grad", "torch.func.grad_and_value", "torch.func.vjp",
            "torch.func.jacrev", "torch.func.jacfwd", "torch.func.jvp", "torch.func.linearize",
            "torch.func.hessian")
BWD_FORBID = NORM_OPS + AUTOGRAD
BWD_HINT = ("follow the forward pass backwards: y depends on x directly and through the batch "
            "mean and the batch variance, so dx collects three paths; dgamma and dbeta sum over "
            "the batch. No autograd (.backward(), torch.autograd) and no F.batch_norm.")


def _bwd_cases(seed):
    """(label, dy, x, gamma, eps): (N, C) inputs with an almost constant channel."""
    rng = case_rng(seed, 4301)
    out = []
    for label, (n, c), eps in [("(8, 5) input, eps=1e-5", (8, 5), 1e-5),
                               ("(6, 5) input, eps=0.1", (6, 5), 0.1),
                               ("(3, 5) input (a batch of three), eps=1e-5", (3, 5), 1e-5)]:
        loc, scale = _loc_scale(rng, LOC5, SCALE5)
        x = _sample(rng, (n, c), loc, scale)
        g = _affine(rng, c)[0]
        dy = rng.standard_normal((n, c))
        out.append((label, dy, x, g, eps))
    return out


def _probe_with_eps(fn, cases):
    """The probe of ex4.3 and ex4.4: ``fn(*tensors, eps=eps)`` for each ``(arrays, eps)`` of
    ``cases`` (float64 tensor copies of the arrays); per case what came back and the input
    tensors as they were after the call (the judge compares them with its own copies)."""
    out = []
    for arrays, eps in cases:
        args = [_t(a) for a in arrays]
        res = capture(fn, *args, eps=eps)
        out.append({"result": res, "after": inputs_after(*args)})
    return out


def probe_bn_backward(batch_norm_backward, seed):
    return _probe_with_eps(batch_norm_backward,
                           [((dy, x, g), eps) for _, dy, x, g, eps in _bwd_cases(seed)])


def _bwd_reference(dy, x, g, eps):
    xt, gt, bt = _t(x).requires_grad_(True), _t(g).requires_grad_(True), _t(np.zeros_like(g)).requires_grad_(True)
    y = F.batch_norm(xt, None, None, gt, bt, True, 0.1, eps)
    y.backward(_t(dy))
    return xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy()


def _bwd_variants(dy, x, g, eps):
    """What the usual mistakes return: ``{name: (dx, dgamma, dbeta)}``, NumPy float64."""
    n = x.shape[0]

    def grads(var, s_of, axis=0):
        mean = x.mean(axis, keepdims=True)
        s = s_of(var)
        xh = (x - mean) / s
        sdy = dy.sum(axis, keepdims=True)
        sdyx = (dy * xh).sum(axis, keepdims=True)
        m = x.shape[axis]
        dx = g / (m * s) * (m * dy - sdy - xh * sdyx)
        return dx, (dy * xh).sum(0), dy.sum(0), xh, s

    var_b = x.var(0, keepdims=True)
    sq = lambda v: np.sqrt(v + eps)
    dx, dg, db, xh, s = grads(var_b, sq)
    dx_u, dg_u, db_u, _, _ = grads(x.var(0, ddof=1, keepdims=True), sq)
    dx_e, dg_e, db_e, _, _ = grads(var_b, lambda v: np.sqrt(v) + eps)
    sdy, sdyx = dy.sum(0, keepdims=True), (dy * xh).sum(0, keepdims=True)
    pre = g / (n * s)
    eps_default = (None, None, None) if np.isclose(eps, 1e-5) else \
        grads(var_b, lambda v: np.sqrt(v + 1e-5))[:3]
    return {
        "eps_default": eps_default,
        "sign_direct": (pre * (-n * dy - sdy - xh * sdyx), dg, db),
        "sign_mean": (pre * (n * dy + sdy - xh * sdyx), dg, db),
        "sign_var": (pre * (n * dy - sdy + xh * sdyx), dg, db),
        "var_half": (pre * (n * dy - sdy - 0.5 * xh * sdyx), dg, db),
        "times_n": (dx * n, dg, db),
        "dgamma_sign": (dx, -dg, db),
        "dbeta_sign": (dx, dg, -db),
        "unbiased": (dx_u, dg_u, db_u),
        "eps_outside": (dx_e, dg_e, db_e),
        "direct_only": (g * dy / s, dg, db),
        "no_var_path": (g / s * (dy - dy.mean(0, keepdims=True)), dg, db),
        "no_mean_path": (g / s * (dy - xh * (dy * xh).mean(0, keepdims=True)), dg, db),
        "dgamma_no_xhat": (dx, dy.sum(0), db),
        "gamma_missing": (dx / g, dg, db),
    }


def _judge_bwd_case(label, dy, x, g, eps, rec):
    got = rec["result"]
    if isinstance(got, Raised):
        raise _raised(got, f"the case {label}", f"dy and x of shape {x.shape}, gamma of shape "
                      f"{g.shape}: one statistic per channel, over the batch axis 0")
    if not (isinstance(got, (tuple, list)) and len(got) == 3):
        raise Fail(f"{label}: batch_norm_backward should return a tuple (dx, dgamma, dbeta).")
    names = ("dx", "dgamma", "dbeta")
    shapes = (x.shape, g.shape, g.shape)
    ref = _bwd_reference(dy, x, g, eps)
    arrs = []
    for v, name, shape, r in zip(got, names, shapes, ref):
        a = _expect_tensor(v, f"{label}: {name}", r)
        if a.shape != shape:
            hint = (" Sum over the batch axis (dim 0): one value per channel."
                    if name != "dx" and a.shape == x.shape else "")
            if name != "dx" and a.shape == (x.shape[0],):
                hint = " You summed over the channel axis; sum over the batch axis (dim 0)."
            raise Fail(f"{label}: {name} has shape {a.shape}, expected {shape}.{hint}")
        arrs.append(a)
    variants = _bwd_variants(dy, x, g, eps)
    hints = {
        "eps_default": f"it matches eps = 1e-05, not the eps of this call ({eps:g}): use the "
                       "eps argument, in the forward quantities (the standard deviation) the "
                       "gradient is built from.",
        "sign_direct": "the term of dx from the direct path (x itself, with the batch mean and "
                       "variance held fixed) has the wrong sign; the paths through the batch "
                       "mean and the batch variance are right.",
        "sign_mean": "the term of dx from the path through the batch mean has the wrong sign: "
                     "the mean is subtracted from every x, so raising one x lowers every "
                     "centred value of its channel a little.",
        "sign_var": "the term of dx from the path through the batch variance has the wrong "
                    "sign: the variance sits under the square root in the denominator, so a "
                    "larger variance shrinks every normalised value.",
        "var_half": "the term of dx from the path through the batch variance is half what it "
                    "should be: the derivative of a squared deviation brings a factor 2.",
        "times_n": "dx is N times too large (N = the batch size): the batch mean and variance "
                   "are averages over the N samples, and that 1/N stays in their gradients.",
        "dgamma_sign": "dgamma has the wrong sign; dx and dbeta are right.",
        "dbeta_sign": "dbeta has the wrong sign: beta is added to the output, so its gradient "
                      "keeps the sign of the upstream gradient.",
        "unbiased": "you normalised with the unbiased variance (n - 1). Training-mode batch "
                    "norm uses the biased batch variance (divide by n), in the forward pass and "
                    "so in its gradient.",
        "eps_outside": "eps belongs inside the square root, as in the forward pass: the "
                       "variance gets eps before the square root is taken.",
        "direct_only": "only the direct path from x to y is there. The batch mean and the batch "
                       "variance depend on x too: their gradients add two more terms to dx.",
        "no_var_path": "the path through the batch variance is missing from dx (the mean's path "
                       "is there).",
        "no_mean_path": "the path through the batch mean is missing from dx (the variance's "
                        "path is there).",
        "dgamma_no_xhat": "dgamma is the sum of dy alone. gamma multiplies the normalised input, "
                          "so each term of its gradient carries that factor.",
        "gamma_missing": "gamma is missing from dx: gamma scales the normalised values, so every path "
                         "into x starts by multiplying by gamma.",
    }
    for a, r, k, name in zip(arrs, ref, range(3), names):
        if close(a, r, 1e-6, 1e-9):
            continue
        mistakes = [(variants[v][k], hints[v]) for v in hints]
        if name == "dx":
            axis1 = _bwd_axis1(dy, x, g, eps)
            mistakes.append((axis1, "the sums run over the wrong axis: the statistics of a "
                                    "channel come from the batch (dim 0), so the sums in the "
                                    "gradient run over dim 0 too."))
        match_mistake(f"{label}: wrong {name}", a, mistakes, rtol=1e-6, atol=1e-9)
        raise Fail(f"{label}: wrong {name} (largest difference {max_err(a, r):.3g}); it must equal "
                   "what autograd gives through training-mode batch norm with these inputs.")
    changed = [n for n, a, o in zip(("dy", "x", "gamma"), _after3(rec), (dy, x, g))
               if input_changed([a], o)]
    if changed:
        raise Fail(f"{label}: your function changed its input {', '.join(changed)} in place; "
                   "work on new tensors (an in-place op such as x -= ... or dy.mul_(...) "
                   "modifies the caller's tensor).")


def _after3(rec):
    after = rec.get("after")
    return after if isinstance(after, (list, tuple)) and len(after) == 3 else [None] * 3


def _bwd_axis1(dy, x, g, eps):
    c = x.shape[1]
    mean = x.mean(1, keepdims=True)
    s = np.sqrt(x.var(1, keepdims=True) + eps)
    xh = (x - mean) / s
    return g / (c * s) * (c * dy - dy.sum(1, keepdims=True) - xh * (dy * xh).sum(1, keepdims=True))


def judge_bn_backward(data, seed):
    for (label, dy, x, g, eps), rec in zip(_bwd_cases(seed), data, strict=True):
        _judge_bwd_case(label, dy, x, g, eps, rec)
    return None


exercise("ex4.3", "batch_norm_backward", probe_bn_backward, judge_bn_backward,
         forbid=_after_ex41(BWD_FORBID), watch_if=WATCH_SAME_NAME, forbid_hint=BWD_HINT)

# ------------------------------------------------------------------ ex4.4 layer_norm

LN_FORBID = NORM_OPS   # every normalisation op; batch norm of the transposed input is layer norm
LN_HINT = ("per sample, the mean and the (biased) variance over the last dimension, the "
           "normalised values, then the scale and shift (no F.layer_norm, nn.LayerNorm or any "
           "other normalisation op of torch).")


def _ln_cases(seed):
    """(label, x, gamma, beta, eps): (N, C), (N, L, C) and a batch of one."""
    rng = case_rng(seed, 4401)

    def xs(shape):
        # each sample has its own offset and scale; one sample is almost constant
        lead = shape[:-1]
        x = rng.uniform(-2, 2, lead + (1,)) + rng.uniform(0.5, 3, lead + (1,)) * rng.standard_normal(shape)
        x.reshape(-1, shape[-1])[0] = 1.5 + 1e-3 * rng.standard_normal(shape[-1])
        return x

    out = []
    for label, shape, eps in [("(6, 7) input, eps=1e-5", (6, 7), 1e-5),
                              ("(6, 7) input, eps=0.1", (6, 7), 0.1),
                              ("(3, 4, 6) input (N, L, C), eps=1e-5", (3, 4, 6), 1e-5),
                              ("(1, 5) input (a batch of one), eps=1e-5", (1, 5), 1e-5)]:
        g, b, _, _ = _affine(rng, shape[-1])
        out.append((label, xs(shape), g, b, eps))
    return out


def probe_layer_norm(layer_norm, seed):
    return _probe_with_eps(layer_norm, [((x, g, b), eps) for _, x, g, b, eps in _ln_cases(seed)])


def _ln(x, g, b, eps, axes=(-1,), ddof=0, outside=False):
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True, ddof=ddof)
    s = np.sqrt(var) + eps if outside else np.sqrt(var + eps)
    return g * (x - mean) / s + b


def judge_layer_norm(data, seed):
    for (label, x, g, b, eps), rec in zip(_ln_cases(seed), data, strict=True):
        got = rec["result"]
        if isinstance(got, Raised):
            raise _raised(got, f"the case {label}", f"a {x.shape} input: statistics of each "
                          "sample over the last dimension only", SAMPLE_SHAPES)
        ref = F.layer_norm(_t(x), (x.shape[-1],), _t(g), _t(b), eps).numpy()
        y = _expect_tensor(got, f"{label}: y", ref)
        if y.shape != x.shape:
            raise Fail(f"{label}: y has shape {y.shape}, expected the input's shape {x.shape}.")
        if not close(y, ref, RTOL, ATOL):
            mistakes = []
            if x.shape[0] > 1:
                mistakes.append((_ln(x, g, b, eps, axes=(0,)),
                                 "you normalised over the batch axis (that is batch norm). "
                                 "Layer norm normalises each sample on its own, over its last "
                                 "dimension, so it does not depend on the other samples."))
            if x.ndim == 3:
                mistakes.append((_ln(x, g, b, eps, axes=(1, 2)),
                                 "you normalised over every non-batch axis. Here layer norm "
                                 "normalises over the last dimension only: one mean and "
                                 "variance per sample and position."))
            mistakes += [(_ln(x, g, b, eps, ddof=1), "you used the unbiased variance (n - 1); "
                          "layer norm uses the biased one (divide by the number of features)."),
                         (_ln(x, g, b, eps, outside=True), "eps belongs inside the square root: "
                          "eps is added to the variance, before the root."),
                         (_ln(x, b, g, eps), "gamma and beta are swapped: gamma scales, beta "
                          "shifts."),
                         (_ln(x, 1.0, 0.0, eps), "gamma and beta were not applied.")]
            if x.shape[0] == 1:
                mistakes.append((np.broadcast_to(b, x.shape), "with a batch of one every output "
                                 "equals beta: the statistics came from the batch axis, which "
                                 "holds a single value. Normalise over the features of each "
                                 "sample."))
            match_mistake(f"{label}: wrong y", y, mistakes, RTOL, ATOL)
            raise Fail(f"{label}: wrong y (largest difference {max_err(y, ref):.3g}). Each "
                       "sample is normalised over its last dimension, then scaled and shifted.")
        changed = [n for n, a, o in zip(("x", "gamma", "beta"), _after3(rec), (x, g, b))
                   if input_changed([a], o)]
        if changed:
            raise Fail(f"{label}: your function changed its input {', '.join(changed)} in "
                       "place; work on new tensors (x -= ... or x.sub_(...) modifies the "
                       "caller's tensor).")
    return None


exercise("ex4.4", "layer_norm", probe_layer_norm, judge_layer_norm,
         forbid=_after_ex41(LN_FORBID), watch_if=WATCH_SAME_NAME, forbid_hint=LN_HINT)
