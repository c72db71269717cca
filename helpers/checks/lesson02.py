"""Checks for lesson 02 (weight decay): ex2.1 ridge_fit, ex2.2 l2_penalty, ex2.3 l1_penalty,
ex2.4 soft_threshold, ex2.5 lasso_cd, ex2.6 sgd_step, ex2.7 adamw_step and
ex2.8 decay_param_groups (third edition: ``l1_subgradient`` is retired, ``soft_threshold``
moved from ex2.5 to ex2.4, ``lasso_cd`` is new).

Every case family is rebuilt from the case seed (``case_rng(seed, salt)``; structure, edge
cases and exact zeros stay, values vary). Probes return only what the learner's code gave back,
and raw data about side effects: the inputs (arrays, tensors, a model's parameters and
``requires_grad`` flags) as they are *after* the call (``inputs_after``); the judge rebuilds
the originals from the seed and decides whether they changed (``input_changed``), so patching
``np.array_equal`` or ``torch.equal`` in the kernel changes nothing. Also recorded: whether a
penalty is a tensor and the gradients a backward pass on it produced; for ex2.8 the groups as
*names* of the model's parameters, matched by ``id()``.
Judges compute the references themselves in float64 (``torch.optim.SGD`` / ``torch.optim.AdamW``
for the update rules), check the dtype of returned tensors first, and name the likely mistake
with ``match_mistake`` when an answer matches a known wrong variant; hints point at the idea,
never at the finished expression. No exercise here is statistical.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from helpers.checks.core import (Fail, Raised, Value, as_array, as_float, capture, case_rng,
                                 close, encode, exercise, expect_array, expect_close,
                                 input_changed, inputs_after, learner_code, max_err, unwrap)


def _same(a, b, rtol=1e-9, atol=1e-12) -> bool:
    return close(a, b, rtol=rtol, atol=atol)


def _t(a, dtype="float64"):
    return torch.tensor(np.asarray(a), dtype=getattr(torch, dtype))


def _np(t) -> np.ndarray:
    return t.detach().cpu().double().numpy().copy()


# ================================================================== ex2.1 ridge_fit

def _ridge_cases(seed):
    rng = case_rng(seed, 2101)
    X1 = rng.standard_normal((12, 4))
    y1 = X1 @ np.array([1.5, -2.0, 0.0, 0.7]) + 0.3 * rng.standard_normal(12)
    X3 = rng.standard_normal((5, 8))
    y3 = rng.standard_normal(5)
    X4 = rng.standard_normal((20, 3)) * np.array([0.1, 1.0, 10.0])
    y4 = X4 @ np.array([3.0, -1.0, 0.2]) + 0.5 * rng.standard_normal(20)
    X5 = rng.uniform(-1, 2, (6, 1))
    y5 = 2.5 * X5[:, 0] + rng.standard_normal(6)
    return [("X of shape (12, 4), lam = 0.7", X1, y1, 0.7),
            ("X of shape (12, 4), lam = 0 (ordinary least squares)", X1, y1, 0.0),
            ("X of shape (5, 8): more features than samples, lam = 0.3", X3, y3, 0.3),
            ("X of shape (20, 3) with columns of very different scales, lam = 50", X4, y4, 50.0),
            ("a single feature, X of shape (6, 1), lam = 2.5", X5, y5, 2.5)]


def _ridge_ref(X, y, lam):
    d = X.shape[1]
    return np.linalg.solve(X.T @ X + lam * np.eye(d), X.T @ y)


def probe_ridge(ridge_fit, seed):
    out = []
    for _, X, y, lam in _ridge_cases(seed):
        Xi, yi = X.copy(), y.copy()
        out.append({"result": capture(ridge_fit, Xi, yi, lam),
                    "after": inputs_after(Xi, yi)})
    return out


def judge_ridge(data, seed):
    for (label, X, y, lam), got in zip(_ridge_cases(seed), data, strict=True):
        n, d = X.shape
        ref = _ridge_ref(X, y, lam)
        a = as_array(got["result"], "ridge_fit(X, y, lam)")
        if a.shape != ref.shape:
            if a.ndim == 2 and a.size == d and d > 1 or a.shape == (1, 1):
                raise Fail(f"{label}: got a 2-D array of shape {a.shape}; return the weights as "
                           f"a 1-D array of shape ({d},), like y (a column vector is not asked "
                           "for: did you solve with y as a column, or keep a column from a "
                           "matrix product?).")
            raise Fail(f"{label}: got an array of shape {a.shape}, expected one weight per "
                       f"column of X, shape {ref.shape}. There is no intercept in this exercise.")
        if input_changed(got["after"], X, y):
            raise Fail(f"{label}: your function changed X or y in place; work on copies "
                       "(for example `X.T @ X` creates a new array, `A += ...` on a view of X does not).")
        res = got["result"]
        single = isinstance(res, Value) and str(res.dtype) == "float32"
        # a float32 answer is judged at float32 precision (its rounding is not a mistake)
        tol = (dict(rtol=1e-4, atol=1e-5 * max(1.0, float(np.max(np.abs(ref)))))
               if single else dict(rtol=1e-7, atol=1e-10))
        vtol = tol if single else dict(rtol=1e-6, atol=1e-9)
        if _same(a, ref, **tol):
            continue
        if not np.all(np.isfinite(a)):
            raise Fail(f"{label}: the result contains inf or nan. With more features than "
                       "samples X^T X alone is singular: it is the penalty's term (lam > 0) that "
                       "makes the system solvable; did a division or an inverse go wrong?")
        if lam == 0:
            raise Fail(f"{label}: with lam = 0 the objective is plain least squares, and X has "
                       "full column rank here: the answer must be the ordinary least-squares "
                       f"solution (largest difference {max_err(a, ref):.3g}). Does your code "
                       "change lam, or add something of its own to the system?")
        if lam > 0:
            variants = [
                (lam / 2, "you minimised ||Xw-y||^2 + (lam/2)*||w||^2: you used lam/2 where the "
                          "objective has lam. The 1/2 belongs to the (lam/2)||w||^2 convention "
                          "of other texts, not to this exercise's objective."),
                (2 * lam, "you used 2*lam: the gradient of the objective is "
                          "2 X^T (Xw - y) + 2 lam w, and both factors 2 cancel when you set it to zero."),
                (lam * n, f"you used lam * n (n = {n} samples): the penalty in this exercise is "
                          "not scaled by the number of samples."),
                (lam / n, f"you used lam / n (n = {n} samples), as if the data term were the mean "
                          "squared error. Here it is the sum ||Xw-y||^2, so the penalty is lam itself."),
                (lam ** 2, "the penalty came out as lam**2 * ||w||^2. If you stacked rows under X "
                           "to solve it as least squares, stack sqrt(lam) * I (and zeros under y), "
                           "not lam * I."),
                (0.0, "lam had no effect: this is the ordinary least-squares solution. The "
                      "penalty must change the linear system you solve."),
            ]
            for lam_v, hint in variants:
                alt = _ridge_ref(X, y, lam_v) if lam_v > 0 else np.linalg.lstsq(X, y, rcond=None)[0]
                if _same(a, alt, **vtol):
                    raise Fail(f"{label}: {hint}")
            alt = np.linalg.lstsq(X.T @ X + lam, X.T @ y, rcond=None)[0]
            if _same(a, alt, **vtol):
                raise Fail(f"{label}: you added lam to every entry of X^T X. The penalty "
                           "lam * ||w||^2 touches each weight on its own: which entries of the "
                           "matrix does its gradient reach?")
        obj = lambda w: float(np.sum((X @ w - y) ** 2) + lam * np.sum(w ** 2))
        raise Fail(f"{label}: these are not the ridge weights (largest difference "
                   f"{max_err(a, ref):.3g}; objective ||Xw-y||^2 + lam*||w||^2 = {obj(a):.6g} "
                   f"for yours, {obj(ref):.6g} at the minimum). Set the gradient "
                   "2 X^T (Xw - y) + 2 lam w to zero and solve the linear system.")
    return None


RIDGE_FORBID = ("sklearn.linear_model.Ridge", "sklearn.linear_model.RidgeCV",
                "sklearn.linear_model.ridge_regression")
RIDGE_HINT = ("the ridge weights solve a linear system that you can write down by setting the "
              "gradient of the objective to zero; np.linalg.solve or lstsq may solve it.")

exercise("ex2.1", "ridge_fit", probe_ridge, judge_ridge, forbid=RIDGE_FORBID,
         forbid_hint=RIDGE_HINT)


# ================================================================== ex2.2 / ex2.3 penalties

def _penalty_model(which: int, seed: int):
    """The fixed models the penalty checks use: 0 = Linear + BatchNorm1d + Linear,
    1 = Conv2d + BatchNorm2d + Linear(bias=False) + LayerNorm. Deterministic float32 weights."""
    rng = case_rng(seed, 2200 + which)
    if which == 0:
        model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    else:
        model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                              nn.Linear(12, 2, bias=False), nn.LayerNorm(2))
    with torch.no_grad():
        for name, p in model.named_parameters():
            vals = np.round(rng.normal(0.0, 0.6, tuple(p.shape)), 3)
            if p.dim() == 1 and name.endswith("weight"):
                vals = 1.0 + vals          # norm-layer scales sit around 1
            p.copy_(torch.as_tensor(vals, dtype=torch.float32))
        if which == 0:
            model[0].weight[1, 2] = 0.0     # an exact zero: the L1 subgradient there is 0
    return model


def _penalty_cases():
    return [("Linear(4,6) + BatchNorm1d(6) + Linear(6,3), lam = 0.03", 0, 0.03),
            ("Conv2d + BatchNorm2d + Linear(bias=False) + LayerNorm, lam = 0.7", 1, 0.7)]


def _param_table(which: int, seed: int):
    """(name, float64 array, kind) for every parameter; kind is the owning module's class name."""
    model = _penalty_model(which, seed)
    owner = {}
    for mname, mod in model.named_modules():
        for pname, _ in mod.named_parameters(recurse=False):
            owner[f"{mname}.{pname}" if mname else pname] = type(mod).__name__
    return [(n, _np(p), owner[n]) for n, p in model.named_parameters()]


def _probe_penalty(fn, seed):
    out = []
    for _, which, lam in _penalty_cases():
        model = _penalty_model(which, seed)
        holder = {}

        def call(model=model, lam=lam):
            holder["v"] = fn(model, lam)
            return holder["v"]

        rec = {"result": capture(call)}
        params_after = inputs_after(*[p.detach() for p in model.parameters()])
        v = holder.get("v")
        rec["is_tensor"] = isinstance(v, torch.Tensor)
        rec["grads"] = None
        rec["backward_error"] = None
        if isinstance(v, torch.Tensor) and v.requires_grad:
            try:
                model.zero_grad(set_to_none=True)
                with learner_code():             # the graph may run learner-defined functions
                    v.sum().backward()
                rec["grads"] = {n: (encode(p.grad) if p.grad is not None else None)
                                for n, p in model.named_parameters()}
            except Exception as e:  # noqa: BLE001 - recorded, judged
                rec["backward_error"] = f"{type(e).__name__}: {e}"[:300]
        # the parameters as the call left them (before any backward); the judge compares
        rec["params_after"] = params_after
        out.append(rec)
    return out


def _penalty_variants(table, lam, kind):
    """Known wrong penalties: (value, hint)."""
    f = (lambda w: w ** 2) if kind == "l2" else np.abs
    W = [w for _, w, _ in table if w.ndim > 1]
    ref = lam * sum(float(f(w).sum()) for w in W)
    name = "l2_penalty" if kind == "l2" else "l1_penalty"
    out = [
        (lam * sum(float(f(w).sum()) for _, w, _ in table),
         "your sum includes the biases and the norm-layer parameters (1-D tensors). Penalise "
         "only weight tensors with p.dim() > 1: biases and batch-norm/layer-norm scales and "
         "shifts are not weights to shrink."),
        (lam * sum(float(f(w).sum()) for n, w, _ in table if n.endswith("weight")),
         "you selected parameters by the name 'weight', which also picks the scale of "
         "BatchNorm/LayerNorm (a 1-D tensor named `weight`). Select by p.dim() > 1 instead."),
        (lam * sum(float(f(w).sum()) for _, w, k in table if w.ndim > 1 and k == "Linear"),
         "only the nn.Linear weights were penalised; the convolution kernel (a 4-D weight) "
         "counts too. Every parameter with p.dim() > 1 is a weight."),
        (ref / 2, f"you got half the expected value: {name}(model, lam) is lam * sum(...), "
                  "with no factor 1/2."),
        (ref * 2, f"you got twice the expected value: {name}(model, lam) is lam * sum(...), "
                  "with no factor 2."),
        (ref / lam if lam != 1 else None, "lam is missing: multiply the sum by lam."),
        (lam * sum(float(f(w).mean()) for w in W),
         "you averaged within each tensor (mean) instead of summing every weight."),
        (lam * float(np.mean(np.concatenate([f(w).ravel() for w in W]))),
         "you took the mean over all weights instead of the sum."),
    ]
    if kind == "l2":
        out += [
            (lam * sum(float(np.sqrt((w ** 2).sum())) for w in W),
             "you summed the norms ||W|| of the weight tensors; the L2 penalty uses the *squared* "
             "norm ||W||^2 = sum(w**2) (torch.norm gives the norm itself: square it)."),
            (lam * float(np.sqrt(sum((w ** 2).sum() for w in W))),
             "you took the square root: the L2 penalty is lam * ||w||^2, the *squared* norm, "
             "not lam * ||w||."),
            (lam * sum(float(np.abs(w).sum()) for w in W),
             "that is the L1 penalty (absolute values); the L2 penalty squares each weight."),
        ]
    else:
        out += [
            (lam * sum(float((w ** 2).sum()) for w in W),
             "that is the L2 penalty (squares); the L1 penalty sums absolute values |w|."),
            (lam * sum(float(w.sum()) for w in W),
             "you summed the signed weights: take the absolute value first, so positive and "
             "negative weights do not cancel."),
            (lam * sum(float(np.sqrt((w ** 2).sum())) for w in W),
             "you summed Euclidean norms ||W||_2 (torch.norm's default); the L1 penalty is "
             "the sum of absolute values (p=1)."),
        ]
    return ref, [(v, h) for v, h in out if v is not None]


def _judge_penalty(data, seed, kind):
    name = "l2_penalty" if kind == "l2" else "l1_penalty"
    for (label, which, lam), got in zip(_penalty_cases(), data, strict=True):
        table = _param_table(which, seed)
        ref, variants = _penalty_variants(table, lam, kind)
        v = as_float(got["result"], f"{name}(model, lam)")
        if not abs(v - ref) <= 1e-5 * abs(ref) + 1e-7:
            for alt, hint in variants:
                if abs(v - alt) <= 1e-5 * abs(alt) + 1e-7:
                    raise Fail(f"{label}: got {v:.6g}, expected {ref:.6g}: {hint}")
            raise Fail(f"{label}: got {v:.6g}, expected {ref:.6g}, lam times the sum of "
                       + ("squared weights" if kind == "l2" else "absolute weights")
                       + " over the parameters with p.dim() > 1.")
        original = [_t(w, "float32") for _, w, _ in table]
        if input_changed(got["params_after"], *original):
            raise Fail(f"{label}: your function changed the model's parameters. A penalty "
                       "only reads them.")
        res = got["result"]
        if not got["is_tensor"] or not isinstance(res, Value) or res.kind != "torch":
            raise Fail(f"{label}: the value is right but it is not a torch tensor, so autograd "
                       "cannot differentiate it. Return the tensor itself: no .item(), float() "
                       "or NumPy.")
        if np.shape(res.value) != ():
            raise Fail(f"{label}: the value is right but it is a tensor of shape "
                       f"{tuple(np.shape(res.value))}; return a torch scalar (a 0-d tensor, as "
                       ".sum() gives), so that data_loss + penalty stays a scalar loss.")
        if not res.grad:
            raise Fail(f"{label}: the value is right but it is not connected to the parameters "
                       "(requires_grad is False): no .detach(), no torch.tensor(...) around a "
                       "computed number, no torch.no_grad(). The optimizer needs its gradient.")
        if got["backward_error"]:
            raise Fail(f"{label}: backward() on your penalty failed: {got['backward_error']}")
        grads = got["grads"] or {}
        for pname, w, _ in table:
            g = grads.get(pname)
            g = np.zeros_like(w) if g is None else as_array(g, f"the gradient of {pname}")
            if w.ndim <= 1:
                if not _same(g, np.zeros_like(w), atol=1e-7):
                    raise Fail(f"{label}: your penalty has a nonzero gradient for `{pname}`, a "
                               "bias or norm parameter: it must not depend on 1-D parameters.")
                continue
            if kind == "l2":
                exp = 2 * lam * w
                ok = close(g, exp, rtol=1e-5, atol=1e-7)
            else:
                exp = lam * np.sign(w)
                if not np.all(np.isfinite(g)):
                    raise Fail(f"{label}: the gradient of your L1 penalty is nan where a weight is "
                               "exactly 0 (sqrt(w**2) has no derivative at 0). Use abs(w): "
                               "autograd takes 0 there.")
                zero = w == 0
                ok = close(g[~zero], exp[~zero], rtol=1e-5, atol=1e-7) and \
                    bool(np.all(np.abs(g[zero]) <= lam * (1 + 1e-5)))
            if not ok:
                formula = "2 * lam * w" if kind == "l2" else "lam * sign(w)"
                raise Fail(f"{label}: the value is right but the gradient with respect to "
                           f"`{pname}` is not {formula} (largest difference {max_err(g, exp):.3g}). "
                           "Compute the penalty from the parameters themselves with torch "
                           "operations, so that autograd sees the formula.")
    return None


def probe_l2(l2_penalty, seed):
    return _probe_penalty(l2_penalty, seed)


def judge_l2(data, seed):
    return _judge_penalty(data, seed, "l2")


def probe_l1(l1_penalty, seed):
    return _probe_penalty(l1_penalty, seed)


def judge_l1(data, seed):
    return _judge_penalty(data, seed, "l1")


exercise("ex2.2", "l2_penalty", probe_l2, judge_l2)
exercise("ex2.3", "l1_penalty", probe_l1, judge_l1)


# ================================================================== ex2.4 soft_threshold

def _soft_cases(seed):
    rng = case_rng(seed, 2401)
    v1 = np.array([-2.0, -0.31, -0.3, -0.1, 0.0, 0.05, 0.3, 0.45, 3.0])
    v1[[0, 8]] = np.round(rng.uniform(1.0, 4.0, 2), 2) * np.array([-1.0, 1.0])
    m3 = np.round(rng.normal(0, 1, (4, 5)), 2)
    t5 = np.round(rng.normal(0, 1, (2, 3, 2, 2)), 2)
    t5[0, 1] = 0.0
    t = float(np.round(rng.uniform(0.2, 0.6), 2))
    return [("a float64 vector with |w| below, at and above t = 0.3", v1, "float64", 0.3),
            ("t = 0 (nothing changes)", v1, "float64", 0.0),
            ("a float32 (4, 5) matrix, t = 0.5", m3, "float32", 0.5),
            (f"a float64 4-D tensor of shape (2, 3, 2, 2) with zeros, t = {t:g}", t5, "float64", t),
            ("t larger than every |w| (everything becomes 0), t = 10", v1, "float64", 10.0)]


def _probe_elementwise(fn, cases):
    """``fn(w, param)`` on each case's tensor: what came back, and ``w`` as the call left it."""
    out = []
    for _, w, dt, param in cases:
        wi = _t(w, dt)
        out.append({"result": capture(fn, wi, param), "after": inputs_after(wi)})
    return out


def probe_soft(soft_threshold, seed):
    return _probe_elementwise(soft_threshold, _soft_cases(seed))


def judge_soft(data, seed):
    for (label, w, dt, t), got in zip(_soft_cases(seed), data, strict=True):
        original = _t(w, dt)
        w = w.astype(np.float32).astype(np.float64) if dt == "float32" else w
        ref = np.sign(w) * np.maximum(np.abs(w) - t, 0.0)
        a = expect_array(got["result"], f"{label}: soft_threshold(w, t)", dtype=dt, kind="torch")
        if a.shape != ref.shape:
            raise Fail(f"{label}: got shape {a.shape}, expected the shape of w, {ref.shape} "
                       "(work elementwise; do not flatten or reduce w).")
        if input_changed(got["after"], original):
            raise Fail(f"{label}: your function changed w in place (an in-place op such as "
                       "mul_(), clamp_() or sign_()); return a new tensor.")
        tol = dict(rtol=1e-6, atol=1e-6 if dt == "float32" else 1e-12)
        mistakes = [
            (w - t * np.sign(w), "weights with |w| < t overshoot zero and flip sign (w = -0.1, "
                                 "t = 0.3 gave 0.2). Shrinking by t must stop at 0: nothing may "
                                 "cross zero."),
            (np.where(np.abs(w) > t, w, 0.0), "that is hard thresholding (small weights set to 0, "
                                              "the others kept). Soft thresholding also shrinks "
                                              "the surviving weights by t."),
            (np.maximum(w - t, 0.0), "negative weights all became 0. Shrink the magnitude |w| and "
                                     "keep the sign: negative weights move up towards 0, positive "
                                     "ones down."),
            (np.maximum(np.abs(w) - t, 0.0), "the sign was lost (negative weights came back "
                                             "positive): the surviving entries keep the sign of w."),
            (np.sign(w) * np.maximum(np.abs(w) - 2 * t, 0.0),
             "every entry moved by 2t instead of t (and the zero band is twice as wide)."),
            (np.sign(w) * np.maximum(np.abs(w) - t / 2, 0.0),
             "every entry moved by t/2 instead of t (and the zero band is half as wide)."),
            (w - t, "you subtracted t from every entry: negative entries must move *up* towards "
                    "0 (by t in magnitude), and nothing may cross zero."),
            (w * max(0.0, 1.0 - t), "you scaled w by a factor: soft thresholding subtracts the "
                                    "same amount t from every magnitude (it does not multiply)."),
        ]
        mistakes = [(v, h) for v, h in mistakes if not _same(v, ref, **tol)]
        expect_close(label, a, ref, mistakes,
                     "Entries with |w| <= t must become 0; the others move by t towards 0, "
                     "keeping their sign.", **tol)
        zero = ref == 0
        if np.any(a[zero] != 0):
            j = int(np.flatnonzero(zero & (a != 0))[0])
            raise Fail(f"{label}: an entry with |w| <= t came back as {a.ravel()[j]:.3g}, not "
                       "exactly 0: the proximal step gives exact zeros (no small eps, no "
                       "division).")
    return None


SOFT_FORBID = ("torch.nn.functional.softshrink", "torch.nn.Softshrink", "torch._C._nn.softshrink")
SOFT_HINT = ("shrink every magnitude by t, stop at 0, and put the sign back, with elementwise "
             "torch operations.")

exercise("ex2.4", "soft_threshold", probe_soft, judge_soft, forbid=SOFT_FORBID,
         forbid_hint=SOFT_HINT)


# ================================================================== ex2.5 lasso_cd

def _lasso_problem(rng, n, d, k_informative, noise):
    """``X`` ``(n, d)`` with columns of different scales (none zero), ``y`` from a sparse ``w``."""
    X = rng.standard_normal((n, d)) * rng.uniform(0.4, 3.0, d)
    w = np.zeros(d)
    idx = rng.choice(d, k_informative, replace=False)
    w[idx] = rng.uniform(1.0, 2.5, k_informative) * rng.choice([-1.0, 1.0], k_informative)
    y = X @ w + noise * rng.standard_normal(n)
    return X, y


def _pick_lam(X, y, ks, u):
    """A ``lam`` (3 decimals) at which the reference has at least 2 exact zeros and 2 nonzero
    weights after each of ``ks`` sweeps, every update at least 1e-6 from the edge of the zero
    band: tried on a grid of fractions of the largest first correlation, from a seeded offset
    ``u`` in [0, 1). Deterministic, so the judge rebuilds the same value."""
    n, d = X.shape
    top = float(np.max(np.abs(X.T @ y)) / n)
    fracs = np.linspace(0.02, 0.95, 32)
    fracs = np.roll(fracs, -int(u * len(fracs)))
    for f in fracs:
        lam = float(np.round(f * top, 3))
        ok = lam > 0
        for k in ks:
            if not ok:
                break
            w, margin = _cd(X, y, lam, k)
            ok = (np.sum(w == 0) >= 2 and np.sum(w != 0) >= 2 and margin.min() > 1e-6)
        if ok:
            return lam
    return None


def _lasso_cases(seed):
    """``(label, X, y, lam, n_sweeps, against_sklearn)``. Problems A (n > d) and B (d > n) are
    run for 1, 2 and 3 sweeps and compared with this module's reference to 1e-10; problem C for
    many sweeps, against scikit-learn's ``Lasso`` run for as many (converged by then: its
    screening of zero coordinates changes early iterates, not the limit). ``lam`` is chosen so
    that every case has exact zeros and nonzero weights (:func:`_pick_lam`)."""
    rng = case_rng(seed, 2501)
    cases = []
    for n, d, kinf, noise in ((25, 6, 2, 0.5), (8, 12, 3, 0.3)):
        lam = None
        while lam is None:       # a few percent of the draws have no such lam: draw again
            X, y = _lasso_problem(rng, n, d, kinf, noise)
            lam = _pick_lam(X, y, (1, 2, 3), rng.uniform())
        shape = f"X of shape ({n}, {d})" + (" (more features than samples)" if d > n else "")
        for k in (1, 2, 3):
            cases.append((f"{shape}, lam = {lam:g}, n_sweeps = {k}", X, y, lam, k, False))
    k, lam = int(rng.integers(40, 61)), None
    while lam is None:
        X, y = _lasso_problem(rng, 40, 10, 3, 1.0)
        lam = _pick_lam(X, y, (k,), rng.uniform())
    cases.append((f"X of shape (40, 10), lam = {lam:g}, n_sweeps = {k} (compared with "
                   f"scikit-learn's Lasso(alpha=lam, fit_intercept=False) run for {k} sweeps)",
                   X, y, lam, k, True))
    return cases


def _cd(X, y, lam, k, order="cyclic", start="zero", update="each", scale="z", rho="partial",
        thresh="rho"):
    """Cyclic coordinate descent on ``(1/(2n))||Xw - y||^2 + lam ||w||_1`` and known variants.

    Returns ``(w, margin)``: ``margin[j]`` is ``| |rho_j| - lam |`` at the last update of ``j``
    (how far that update was from the edge of the zero band). Variants (for naming mistakes):
    ``order`` cyclic | reverse; ``start`` zero | lstsq; ``update`` each (the residual follows
    every coordinate) | jacobi (every coordinate from the sweep's start) | never (the residual
    of the start, never updated); ``scale`` z | none | sumsq (what the thresholded value is
    divided by); ``rho`` partial | full (the full residual, own term not added back);
    ``thresh`` rho | rho_over_z (thresholded after dividing) | step (the change thresholded).
    """
    n, d = X.shape
    z = (X ** 2).sum(axis=0) / n
    w = np.zeros(d) if start == "zero" else np.linalg.lstsq(X, y, rcond=None)[0]
    w_start = w.copy()
    margin = np.full(d, np.inf)
    idx = list(range(d))[::-1] if order == "reverse" else list(range(d))
    soft = lambda v, t: np.sign(v) * max(abs(v) - t, 0.0)  # noqa: E731
    for _ in range(k):
        w_sweep = w.copy()
        for j in idx:
            base = {"each": w, "jacobi": w_sweep, "never": w_start}[update]
            r = y - X @ base
            c = X[:, j] @ r / n + (z[j] * w[j] if rho == "partial" else 0.0)
            den = {"z": z[j], "none": 1.0, "sumsq": n * z[j]}[scale]
            if thresh == "rho":
                new = soft(c, lam) / den
                margin[j] = abs(abs(c) - lam)
            elif thresh == "rho_over_z":
                new = soft(c / den, lam)
            else:
                new = w[j] + soft(c, lam) / den
            w[j] = new
        if not np.all(np.isfinite(w)) or np.max(np.abs(w)) > 1e12:
            return np.full(d, np.nan), margin
    return w, margin


def _sklearn_lasso(X, y, lam, k):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Lasso

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = Lasso(alpha=lam, fit_intercept=False, tol=0.0, max_iter=k)
        return model.fit(X, y).coef_.astype(np.float64)


def probe_lasso(lasso_cd, seed):
    out = []
    for _, X, y, lam, k, _ in _lasso_cases(seed):
        Xi, yi = X.copy(), y.copy()
        out.append({"result": capture(lasso_cd, Xi, yi, lam, k), "after": inputs_after(Xi, yi)})
    return out


_LASSO_GENERIC = ("Each coordinate update must be the exact minimiser of the objective over that "
                  "coordinate alone (the others at their current values), in the order w[0] to "
                  "w[d-1], starting from w = 0.")


def _lasso_mistakes(X, y, lam, k):
    n, d = X.shape
    ref = _cd(X, y, lam, k)[0]
    out = [
        (dict(update="jacobi"), "your iterates are those of a simultaneous (Jacobi) update: every "
         "coordinate of a sweep was computed from the w the sweep started with. Cyclic coordinate "
         "descent changes one coordinate at a time, and coordinate j already sees the new values "
         "of coordinates 0..j-1 (if you keep a residual y - Xw, update it as soon as a "
         "coordinate changes)."),
        (dict(update="never"), "the residual y - Xw was computed once, at the start, and never "
         "updated: after a coordinate changes, the residual the next coordinate sees must change "
         "with it."),
        (dict(order="reverse"), "you swept the coordinates from the last to the first; a sweep "
         "goes w[0], w[1], ..., w[d-1], and the order changes the iterates."),
        (dict(start="lstsq"), "your iterates did not start from w = 0 (they match a start at the "
         "least-squares solution): coordinate descent here starts from all zeros."),
        (dict(lam=lam / n), f"the threshold is n times too small (n = {n} samples): the squared "
         "error in this objective is divided by 2n, so the correlation and the squared column "
         "norm you use must be averaged over the samples (or lam multiplied by n), consistently."),
        (dict(lam=lam * n), f"the threshold is n times too large (n = {n} samples): you averaged "
         "over the samples and also multiplied lam by n. Use one of the two scalings, not both."),
        (dict(lam=0.0), "lam was ignored: these are the iterates of coordinate descent for least "
         "squares alone. The L1 term is what thresholds each coordinate (and makes exact zeros)."),
        (dict(lam=lam / 2), "the threshold is half of what it should be: this objective has "
         "1/(2n) in front of the squared error (the 1/2 cancels the 2 of its derivative), not 1/n."),
        (dict(lam=2 * lam), "the threshold is twice what it should be: with the 1/(2n) in front "
         "of the squared error, the 2 of its derivative cancels the 1/2; did you keep a factor 2?"),
        (dict(scale="none"), "the soft-thresholded value was not divided by the coordinate's "
         "curvature: with the other coordinates fixed, the data term is a parabola in w_j whose "
         "curvature is the mean of X[:, j]**2, which is not 1 here (the columns are not "
         "normalised)."),
        (dict(scale="sumsq"), "you divided by the squared column norm ||X[:, j]||^2: with the "
         "1/(2n) in front of the squared error, the curvature in w_j is that norm divided by n."),
        (dict(rho="full"), "you soft-thresholded column j's correlation with the full residual "
         "y - Xw, which still holds w_j's own contribution. The minimiser over w_j uses the "
         "residual of the other coordinates only (add w_j's term back first)."),
        (dict(thresh="rho_over_z"), "you divided by the curvature first and then thresholded at "
         "lam: the threshold must be scaled like the quantity it is compared with."),
        (dict(rho="full", thresh="step"), "you soft-thresholded the change of w_j (a gradient "
         "step) rather than the coordinate's new value: the threshold applies to where the "
         "smooth part alone would put w_j, not to the step towards it."),
        (dict(k=k + 1), f"your result after n_sweeps = {k} equals the iterate after {k + 1} "
         "sweeps: count full sweeps (one sweep updates every coordinate once)."),
        (dict(k=k - 1), f"your result after n_sweeps = {k} equals the iterate after {k - 1} "
         "sweep(s): count full sweeps (one sweep updates every coordinate once)."),
    ]
    found = []
    for i, (kw, hint) in enumerate(out):
        if kw is None:
            continue
        kw = dict(kw)
        lam_v, k_v = kw.pop("lam", lam), kw.pop("k", k)
        alt = _cd(X, y, lam_v, k_v, **kw)[0]
        if np.all(np.isfinite(alt)) and not _same(alt, ref, rtol=1e-8, atol=1e-10):
            found.append((alt, hint, i))
    return found


def _lasso_diagnosis(cases, data, i, tol, require_all=False):
    """The hint of the known mistake the answer matches at case ``i`` that also explains its
    other answers (at one sweep, for example, a residual never updated and a simultaneous update
    give the same iterate; the two- and three-sweep answers tell them apart); else the first
    mistake matching case ``i`` alone (unless ``require_all``); None when none does."""
    def answer(j):
        try:
            a = as_array(data[j]["result"])
        except Exception:  # noqa: BLE001 - an answer that is not an array explains nothing
            return None
        return a if a.shape == (cases[j][1].shape[1],) else None

    label, X, y, lam, k, _ = cases[i]
    matching = [(hint, key) for alt, hint, key in _lasso_mistakes(X, y, lam, k)
                if _same(answer(i), alt, **tol)]
    for hint, key in matching:
        explains_all = True
        for j, (_, Xj, yj, lamj, kj, _) in enumerate(cases):
            a = answer(j)
            if j == i or a is None:
                continue
            alts = {key_j: alt for alt, _, key_j in _lasso_mistakes(Xj, yj, lamj, kj)}
            ref_j = _cd(Xj, yj, lamj, kj)[0]
            alt = alts.get(key, ref_j)        # a variant equal to the reference there
            if not _same(a, alt, rtol=1e-8, atol=1e-8 * max(1.0, float(np.max(np.abs(alt))))):
                explains_all = False
                break
        if explains_all:
            return f"{label}: {hint}"
    return f"{label}: {matching[0][0]}" if matching and not require_all else None


def judge_lasso(data, seed):
    cases = _lasso_cases(seed)
    for i, ((label, X, y, lam, k, sk), got) in enumerate(zip(cases, data, strict=True)):
        n, d = X.shape
        ref, margin = _cd(X, y, lam, k)
        if sk:
            ref = _sklearn_lasso(X, y, lam, k)
        res = got["result"]
        a = expect_array(res, f"{label}: lasso_cd(X, y, lam, n_sweeps)", dtype="float64",
                         kind="numpy")
        if a.shape != (d,):
            if a.ndim == 2 and a.size == d:
                raise Fail(f"{label}: got a 2-D array of shape {a.shape}; return w as a 1-D "
                           f"array of shape ({d},), one weight per column of X.")
            raise Fail(f"{label}: got shape {a.shape}, expected ({d},): one weight per column "
                       "of X (there is no intercept).")
        if input_changed(got["after"], X, y):
            raise Fail(f"{label}: your function changed X or y in place (for example a residual "
                       "that is y itself, updated with -=, or columns normalised in X); work on "
                       "copies.")
        scale = max(1.0, float(np.max(np.abs(ref))))
        tol = dict(rtol=1e-8, atol=1e-8 * scale) if sk else dict(rtol=1e-10, atol=1e-10 * scale)
        if not np.all(np.isfinite(a)):
            raise Fail(f"{label}: your w contains inf or nan. Every column of X is nonzero here, "
                       "so no division needs to fail.")
        if not _same(a, ref, **tol):
            if np.all(a == 0):
                hint = _lasso_diagnosis(cases, data, i, tol, require_all=True)
                if hint and "count full sweeps" in hint:
                    raise Fail(hint)
                raise Fail(f"{label}: every weight is still 0: no coordinate moved. Each "
                           "coordinate's minimiser is 0 only when its correlation with the "
                           "residual is at most lam in size. (If you averaged over the samples "
                           "and also multiplied lam by n, the threshold is n times too large: "
                           "use one of the two scalings, not both.)")
            hint = _lasso_diagnosis(cases, data, i, tol)
            if hint:
                raise Fail(hint)
            expect_close(label, a, ref, (),
                         ("Your w differs from scikit-learn's Lasso after the same number of "
                          "sweeps. " if sk else "") + _LASSO_GENERIC,
                         what=f"weights after {k} sweep{'s' if k > 1 else ''}", **tol)
        must_be_zero = (ref == 0) & (margin > 1e-9 * scale)
        bad = np.flatnonzero(must_be_zero & (a != 0))
        if bad.size:
            j = int(bad[0])
            raise Fail(f"{label}: w[{j}] must be exactly 0 (its minimiser is 0: the correlation "
                       f"is inside the threshold), but you returned {a[j]:.3g}. The soft "
                       "threshold gives an exact 0 there, not a tiny number.")
    return None


LASSO_FORBID = ("sklearn.linear_model.Lasso", "sklearn.linear_model.LassoCV",
                "sklearn.linear_model.LassoLars", "sklearn.linear_model.ElasticNet",
                "sklearn.linear_model.lasso_path", "sklearn.linear_model.enet_path")
LASSO_HINT = ("one coordinate at a time, minimise the objective over that coordinate with the "
              "others fixed (a parabola plus lam*|w_j|), with NumPy.")

exercise("ex2.5", "lasso_cd", probe_lasso, judge_lasso, forbid=LASSO_FORBID,
         forbid_hint=LASSO_HINT)


# ================================================================== ex2.6 sgd_step

def _sgd_cases(seed):
    rng = case_rng(seed, 2601)
    w1, g1 = rng.normal(0, 1, 6), rng.normal(0, 1, 6)
    w3, g3 = rng.normal(0, 1, (3, 4)), rng.normal(0, 1, (3, 4))
    w4, g4 = np.round(rng.normal(0, 1, 5), 3), np.round(rng.normal(0, 1, 5), 3)
    w5 = np.array([1.0, -2.0, 0.0, 0.5])
    return [("lr = 0.1, weight_decay = 0.03", w1, g1, 0.1, 0.03, "float64"),
            ("weight_decay = 0", w1, g1, 0.1, 0.0, "float64"),
            ("a (3, 4) weight, lr = 0.5, weight_decay = 0.2", w3, g3, 0.5, 0.2, "float64"),
            ("float32 tensors, lr = 0.05, weight_decay = 0.01", w4, g4, 0.05, 0.01, "float32"),
            ("a zero gradient (only the decay acts), lr = 0.2, weight_decay = 0.4",
             w5, np.zeros(4), 0.2, 0.4, "float64")]


def probe_sgd(sgd_step, seed):
    out = []
    for _, w, g, lr, wd, dt in _sgd_cases(seed):
        wi, gi = _t(w, dt), _t(g, dt)
        out.append({"result": capture(sgd_step, wi, gi, lr, wd), "after": inputs_after(wi, gi)})
    return out


def _torch_sgd(w, g, lr, wd):
    p = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr, weight_decay=wd)
    p.grad = torch.tensor(g, dtype=torch.float64)
    opt.step()
    return _np(p)


def judge_sgd(data, seed):
    for (label, w, g, lr, wd, dt), got in zip(_sgd_cases(seed), data, strict=True):
        originals = (_t(w, dt), _t(g, dt))
        if dt == "float32":
            w, g = w.astype(np.float32).astype(np.float64), g.astype(np.float32).astype(np.float64)
        ref = _torch_sgd(w, g, lr, wd)
        a = expect_array(got["result"], "sgd_step(w, grad, lr, weight_decay)", dtype=dt,
                         kind="torch")
        if a.shape != ref.shape:
            raise Fail(f"{label}: got shape {a.shape}, expected the shape of w, {ref.shape}.")
        if input_changed(got["after"], *originals):
            raise Fail(f"{label}: your function changed w or grad in place (torch.optim.SGD does, "
                       "but this function must return a new tensor: no -=, sub_ or add_).")
        tol = dict(rtol=1e-6, atol=1e-7) if dt == "float32" else dict(rtol=1e-10, atol=1e-12)
        step = "you returned the step, not the new weights: where do the weights end up after it?"
        mistakes = [
            (w - lr * g - wd * w, "the decay term was not scaled by the learning rate. In "
                                  "torch's SGD the decay is part of the gradient, and every part "
                                  "of the gradient is scaled the same way."),
            (w - lr * (g + 2 * wd * w), "your decay is twice torch's. weight_decay is already the "
                                        "coefficient of w in the gradient (the factor 2 of a "
                                        "penalty lambda*||w||^2 is inside it), so no factor 2."),
            (w - lr * (g + wd / 2 * w), "your decay is half of torch's: weight_decay is used as "
                                        "it is, without a factor 1/2."),
            (w - lr * (g - wd * w), "the decay has the wrong sign: which way should it move "
                                    "the weights?"),
            (w - lr * g, "weight_decay was ignored."),
            (-lr * (g + wd * w), step),
            (w, "you returned w unchanged: the step (gradient and decay, times lr) is missing."),
            (w + lr * (g + wd * w), "the whole step has the wrong sign: gradient descent moves "
                                    "against the gradient."),
            (lr * (g + wd * w), step),
        ]
        expect_close(label, a, ref, [(alt, h) for alt, h in mistakes if not _same(alt, ref, **tol)],
                     "Compare with what torch.optim.SGD does to the gradient when weight_decay "
                     "is set, then to the weights.", what="new weights", **tol)
    return None


# any torch.optim optimizer or its functional form (core matches the package prefix); the
# optimizer each exercise replaces is named too, so that the hint names the call
SGD_FORBID = ("torch.optim.*", "torch.optim.SGD")
ADAMW_FORBID = ("torch.optim.*", "torch.optim.AdamW", "torch.optim.Adam")
SGD_HINT = ("write the update with tensor arithmetic: the gradient that SGD uses when "
            "weight_decay is set, then the step.")
ADAMW_HINT = ("write the step with tensor arithmetic: the decoupled decay, the two moments, "
              "their bias corrections and the update.")

exercise("ex2.6", "sgd_step", probe_sgd, judge_sgd, forbid=SGD_FORBID, forbid_hint=SGD_HINT)


# ================================================================== ex2.7 adamw_step

def _adamw_cases(seed):
    rng = case_rng(seed, 2701)
    z = np.zeros(5)
    w1, g1 = rng.normal(0, 1, 5), rng.normal(0, 1, 5)
    g1[2] = 0.0
    w2, g2 = rng.normal(0, 1, 6), rng.normal(0, 0.5, 6)
    w2[0] = 0.0
    m2, v2 = rng.normal(0, 0.3, 6), rng.uniform(0.01, 0.2, 6)
    w3, g3 = rng.normal(0, 1, (3, 4)), rng.normal(0, 1, (3, 4))
    m3, v3 = rng.normal(0, 0.2, (3, 4)), rng.uniform(0.05, 0.5, (3, 4))
    w4, g4 = rng.normal(0, 1, 4), rng.normal(0, 1, 4)
    m4, v4 = rng.normal(0, 0.2, 4), rng.uniform(0.01, 0.1, 4)
    w5, g5 = np.round(rng.normal(0, 1, 5), 3), np.round(rng.normal(0, 1, 5), 3)
    m5, v5 = np.round(rng.normal(0, 0.2, 5), 3), np.round(rng.uniform(0.05, 0.3, 5), 3)
    return [
        # label, w, grad, m, v, t, lr, betas, eps, wd, dtype
        ("the first step (t = 1, m = v = 0), lr = 0.01, betas = (0.9, 0.999), weight_decay = 0.01",
         w1, g1, z, z, 1, 0.01, (0.9, 0.999), 1e-8, 0.01, "float64"),
        ("step t = 5 with nonzero m and v, lr = 0.1, betas = (0.8, 0.95), weight_decay = 0.2",
         w2, g2, m2, v2, 5, 0.1, (0.8, 0.95), 1e-6, 0.2, "float64"),
        ("a (3, 4) weight, t = 3, lr = 0.05, betas = (0.85, 0.99), eps = 0.1, weight_decay = 0.5",
         w3, g3, m3, v3, 3, 0.05, (0.85, 0.99), 0.1, 0.5, "float64"),
        ("weight_decay = 0 (plain Adam), t = 2, lr = 0.03, betas = (0.8, 0.95)",
         w4, g4, m4, v4, 2, 0.03, (0.8, 0.95), 1e-8, 0.0, "float64"),
        ("float32 tensors, t = 7, lr = 0.02, betas = (0.9, 0.99), weight_decay = 0.1",
         w5, g5, m5, v5, 7, 0.02, (0.9, 0.99), 1e-8, 0.1, "float32"),
    ]


def probe_adamw(adamw_step, seed):
    out = []
    for _, w, g, m, v, t, lr, betas, eps, wd, dt in _adamw_cases(seed):
        ins = [_t(a, dt) for a in (w, g, m, v)]
        res = capture(adamw_step, *ins, t, lr, betas, eps, wd)
        out.append({"result": res, "after": inputs_after(*ins)})
    return out


def _torch_adamw(w, g, m, v, t, lr, betas, eps, wd):
    p = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.AdamW([p], lr=lr, betas=betas, eps=eps, weight_decay=wd, foreach=False)
    p.grad = torch.tensor(g, dtype=torch.float64)
    opt.state[p] = {"step": torch.tensor(float(t - 1)),
                    "exp_avg": torch.tensor(m, dtype=torch.float64),
                    "exp_avg_sq": torch.tensor(v, dtype=torch.float64)}
    opt.step()
    st = opt.state[p]
    return _np(p), _np(st["exp_avg"]), _np(st["exp_avg_sq"])


def _adam_np(w, g, m, v, t, lr, b1, b2, eps, wd, decay="before", bias=True, eps_inside=False,
             t_used=None):
    """Variants of one Adam(W) step (for naming mistakes). decay: before | after | coupled |
    none | no_lr | both."""
    t_used = t if t_used is None else t_used
    if decay == "before":
        w = w * (1 - lr * wd)
    if decay == "no_lr":
        w = w * (1 - wd)
    if decay in ("coupled", "both"):
        g = g + wd * w
        if decay == "both":
            w = w * (1 - lr * wd)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    with np.errstate(divide="ignore", invalid="ignore"):
        mh = m / (1 - b1 ** t_used) if bias else m
        vh = v / (1 - b2 ** t_used) if bias else v
        den = np.sqrt(vh + eps) if eps_inside else np.sqrt(vh) + eps
        w = w - lr * mh / den
    if decay == "after":
        w = w * (1 - lr * wd)
    return w, m, v


def judge_adamw(data, seed):
    for case, got in zip(_adamw_cases(seed), data, strict=True):
        label, w, g, m, v, t, lr, (b1, b2), eps, wd, dt = case
        originals = [_t(a, dt) for a in (w, g, m, v)]
        if dt == "float32":
            w, g, m, v = (a.astype(np.float32).astype(np.float64) for a in (w, g, m, v))
        ref = _torch_adamw(w, g, m, v, t, lr, (b1, b2), eps, wd)
        res = unwrap(got["result"]) if not isinstance(got["result"], (list, tuple)) else got["result"]
        if not isinstance(res, (list, tuple)) or len(res) != 3:
            raise Fail(f"{label}: adamw_step must return a tuple (w, m, v) of three tensors: the "
                       "new weights and the new first and second moments.")
        outs = [expect_array(x, f"{label}: the {n} you returned", dtype=dt, kind="torch")
                for x, n in zip(res, ("w", "m", "v"))]
        for a, r, n in zip(outs, ref, ("w", "m", "v")):
            if a.shape != r.shape:
                raise Fail(f"{label}: the {n} you returned has shape {a.shape}, expected {r.shape}.")
        after = got["after"]
        if not isinstance(after, (list, tuple)) or len(after) != 4:
            after = [None] * 4
        modified = [n for n, a, o in zip(("w", "grad", "m", "v"), after, originals)
                    if input_changed([a], o)]
        if modified:
            raise Fail(f"{label}: your function changed {', '.join(modified)} in place "
                       "(torch.optim.AdamW does; this function must return new tensors: no "
                       "mul_, add_, addcmul_, -=).")
        tol = dict(rtol=1e-5, atol=1e-7) if dt == "float32" else dict(rtol=1e-9, atol=1e-12)
        match = lambda trip: all(_same(a, r, **tol) for a, r in zip(outs, trip))  # noqa: E731
        if match(ref):
            continue
        if not all(np.all(np.isfinite(a)) for a in outs):
            raise Fail(f"{label}: your result contains inf or nan. t is 1-based: the bias "
                       "corrections divide by 1 - beta**t, which is 0 if you use t - 1 at the "
                       "first step.")
        args = (w, g, m, v, t, lr, b1, b2, eps, wd)
        variants = [
            (dict(decay="coupled"), "you added the decay to the gradient: that is Adam with an "
             "L2 term (torch.optim.Adam's weight_decay), where the decay passes through m and v "
             "and gets divided by sqrt(v_hat). AdamW decouples it: the decay acts on the weights "
             "directly, and m and v see the raw gradient."),
            (dict(decay="both"), "you applied the decay twice: once through the gradient (coupled "
             "L2) and once on the weights. AdamW only acts on the weights; m and v see the raw "
             "gradient."),
            (dict(decay="after"), "the decay was applied after the Adam update. torch's AdamW "
             "shrinks the weights it was given, before the Adam step."),
            (dict(decay="no_lr"), "the decay was not scaled by the learning rate: in AdamW the "
             "shrink per step is proportional to lr as well as to weight_decay."),
            (dict(decay="none"), "weight_decay was ignored (this is a plain Adam step)."),
            (dict(bias=False), "the bias correction is missing: m and v start at 0, so in the "
             "first steps they underestimate the gradient's moments; how does Adam undo that?"),
            (dict(t_used=t + 1), "the bias correction used t + 1: t is already the 1-based "
             "number of this step."),
            (dict(t_used=max(t - 1, 1)) if t > 2 else None, "the bias correction used t - 1: "
             "t is already the 1-based number of this step."),
            (dict(eps_inside=True), "eps went inside the square root; torch divides by "
             "sqrt(v_hat) + eps."),
        ]
        for kw, hint in variants:
            if kw is None:
                continue
            alt = _adam_np(*args, **kw)
            if match(alt) and not match(ref):
                raise Fail(f"{label}: {hint}")
        if _same(outs[1], m, **tol) and _same(outs[2], v, **tol) and not _same(m, ref[1], **tol):
            raise Fail(f"{label}: m and v came back unchanged: return the updated moments, "
                       "not the ones you were given.")
        if not _same(outs[1], ref[1], **tol):
            if _same(outs[1], b2 * m + (1 - b2) * g, **tol):
                raise Fail(f"{label}: m used beta2; betas = (beta1, beta2): m uses beta1, v uses beta2.")
            raise Fail(f"{label}: the first moment m is wrong (largest difference "
                       f"{max_err(outs[1], ref[1]):.3g}): an exponential moving average of the "
                       "raw gradient, weighted by beta1.")
        if not _same(outs[2], ref[2], **tol):
            raise Fail(f"{label}: the second moment v is wrong (largest difference "
                       f"{max_err(outs[2], ref[2]):.3g}): an exponential moving average of the "
                       "squared raw gradient, weighted by beta2.")
        raise Fail(f"{label}: m and v are right but the new w is not (largest difference "
                   f"{max_err(outs[0], ref[0]):.3g}). Check the order of the two parts of an "
                   "AdamW step (the decoupled decay, the Adam step) and where eps goes.")
    return None


exercise("ex2.7", "adamw_step", probe_adamw, judge_adamw, forbid=ADAMW_FORBID,
         forbid_hint=ADAMW_HINT)


# ================================================================== ex2.8 decay_param_groups

class _Scaled(nn.Module):
    """A block with a parameter of its own: a learnable 1-D gain (not a bias, not in a norm layer)."""

    def __init__(self, n):
        super().__init__()
        self.lin = nn.Linear(n, n)
        self.gain = nn.Parameter(torch.ones(n))

    def forward(self, x):
        return self.lin(x) * self.gain


def _groups_model(which: int, seed: int):
    """The models ex2.8 is checked on; their sizes vary with the seed, their structure does not.

    0: Linear + BatchNorm1d + ReLU + Linear. 1: Conv2d + BatchNorm2d + Flatten + Linear(bias=False)
    + LayerNorm, the convolution frozen. 2: Embedding + a block with a 1-D gain + Linear, the last
    Linear's bias frozen. 3: a small CNN whose convolution kernels (4-D) train: Conv2d +
    BatchNorm2d + ReLU + Conv2d(bias=False) + pooling + Linear.
    """
    rng = case_rng(seed, 2800 + which)
    a, b = (int(v) for v in rng.integers(3, 7, 2))
    torch.manual_seed(0)
    if which == 0:
        return nn.Sequential(nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU(), nn.Linear(b, 2))
    if which == 1:
        model = nn.Sequential(nn.Conv2d(2, a, 3), nn.BatchNorm2d(a), nn.ReLU(), nn.Flatten(),
                              nn.Linear(a * 4, b, bias=False), nn.LayerNorm(b))
        for p in model[0].parameters():
            p.requires_grad_(False)
        return model
    if which == 2:
        model = nn.Sequential(nn.Embedding(10, a), _Scaled(a), nn.Linear(a, b))
        model[2].bias.requires_grad_(False)
        return model
    return nn.Sequential(nn.Conv2d(3, a, 3, padding=1), nn.BatchNorm2d(a), nn.ReLU(),
                         nn.Conv2d(a, b, 3, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(b, 2))


def _groups_cases(seed):
    rng = case_rng(seed, 2801)
    wds = np.round(rng.uniform(0.01, 0.3, 4), 3)
    return [("Linear + BatchNorm1d + ReLU + Linear", 0, float(wds[0])),
            ("Conv2d (frozen) + BatchNorm2d + Linear(bias=False) + LayerNorm", 1, float(wds[1])),
            ("Embedding + a block with a learnable 1-D gain + Linear (its bias frozen)", 2,
             float(wds[2])),
            ("a CNN whose convolutions train: Conv2d + BatchNorm2d + ReLU + Conv2d(bias=False) "
             "+ pooling + Linear", 3, float(wds[3]))]


def _param_info(which: int, seed: int) -> dict:
    """name -> (kind, dim, requires_grad); kind: weight, bias, norm (a norm layer's scale) or other."""
    model = _groups_model(which, seed)
    info = {}
    for mname, mod in model.named_modules():
        for pname, p in mod.named_parameters(recurse=False):
            name = f"{mname}.{pname}" if mname else pname
            norm = isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm))
            kind = ("bias" if pname == "bias" else "norm" if norm
                    else "weight" if p.dim() > 1 else "other")
            info[name] = (kind, p.dim(), bool(p.requires_grad))
    return info


def _describe_groups(groups, names_by_id):
    """What came back, in terms of the model's parameter names (identities, not values)."""
    if isinstance(groups, dict):
        return {"type": "dict"}
    if not isinstance(groups, (list, tuple)):
        return {"type": type(groups).__name__}
    out = []
    for g in groups:
        if not isinstance(g, dict):
            out.append({"type": type(g).__name__})
            continue
        entry = {"type": "dict", "keys": sorted(str(k) for k in g)}
        if "params" in g:
            params = g["params"]
            params = [params] if isinstance(params, torch.Tensor) else list(params)
            entry["params"] = [names_by_id.get(id(p), "<a tensor that is not one of the model's "
                                                      "parameters>" if isinstance(p, torch.Tensor)
                                                      else f"<{type(p).__name__}>")
                               for p in params]
        if "weight_decay" in g:
            wd = g["weight_decay"]
            entry["weight_decay"] = encode(wd.detach() if isinstance(wd, torch.Tensor) else wd)
        out.append(entry)
    return {"type": "list", "groups": out}


def probe_groups(decay_param_groups, seed):
    out = []
    for _, which, wd in _groups_cases(seed):
        model = _groups_model(which, seed)
        names_by_id = {id(p): n for n, p in model.named_parameters()}

        def call(model=model, wd=wd, names_by_id=names_by_id):
            return _describe_groups(decay_param_groups(model, wd), names_by_id)

        rec = {"result": capture(call)}
        # raw facts about the model after the call; the judge compares with its own rebuild
        rec["names_after"] = [n for n, _ in model.named_parameters()]
        rec["flags_after"] = [bool(p.requires_grad) for p in model.parameters()]
        rec["params_after"] = inputs_after(*[p.detach() for p in model.parameters()])
        out.append(rec)
    return out


def _groups_fail(label, msg):
    raise Fail(f"{label}: {msg}")


def judge_groups(data, seed):
    for (label, which, wd), got in zip(_groups_cases(seed), data, strict=True):
        info = _param_info(which, seed)
        res = got["result"]
        if isinstance(res, Raised):
            raise res
        shape = "return a list of two dicts, the decay group first: each with the key \"params\" " \
                "(a list of the model's parameters) and the key \"weight_decay\"."
        if not isinstance(res, dict) or res.get("type") != "list":
            _groups_fail(label, f"got a {res.get('type') if isinstance(res, dict) else '?'}; {shape}")
        groups = res["groups"]
        if len(groups) != 2 or any(g.get("type") != "dict" or "params" not in g for g in groups):
            _groups_fail(label, f"got {len(groups)} group(s); {shape}")
        model = _groups_model(which, seed)
        names = [n for n, _ in model.named_parameters()]
        flags = [bool(p.requires_grad) for p in model.parameters()]
        got_flags = got.get("flags_after")
        if got.get("names_after") != names or not isinstance(got_flags, list) or \
                [bool(f) for f in got_flags] != flags:
            _groups_fail(label, "your function changed the model (the requires_grad flag of a "
                                "parameter, or its parameters themselves): it should only read "
                                "the model.")
        if input_changed(got.get("params_after"), *[p.detach() for p in model.parameters()]):
            _groups_fail(label, "your function changed the values of the model's parameters: "
                                "it should only read the model.")
        seen = [n for g in groups for n in g["params"]]
        bad = [n for n in seen if n.startswith("<")]
        if bad:
            _groups_fail(label, f"a group holds {bad[0][1:-1]}. \"params\" must list the "
                                "model's parameter tensors themselves (no names, copies or "
                                ".data), so that the optimizer updates the model.")
        twice = sorted({n for n in seen if seen.count(n) > 1})
        if twice:
            _groups_fail(label, f"`{twice[0]}` appears {seen.count(twice[0])} times; every "
                                "trainable parameter belongs to exactly one group (torch refuses "
                                "a parameter in two groups).")
        frozen = [n for n in seen if not info[n][2]]
        if frozen:
            _groups_fail(label, f"`{frozen[0]}` is frozen (requires_grad=False) but is in a "
                                "group. The optimizer should only hold what it trains: leave "
                                "frozen parameters out.")
        missing = [n for n, (_, _, rg) in info.items() if rg and n not in seen]
        if missing:
            _groups_fail(label, f"`{missing[0]}` (trainable, {info[missing[0]][1]}-D) is in "
                                "neither group, so the optimizer would never update it.")
        first, second = set(groups[0]["params"]), set(groups[1]["params"])
        want = {n for n, (_, dim, rg) in info.items() if rg and dim > 1}
        if first != want and second == want:
            _groups_fail(label, "your groups are in the wrong order: the decay group (the "
                                "weights) comes first, the group without decay second.")
        if first != want:
            wrong_in = sorted(first - want)
            wrong_out = sorted(want - first)
            if wrong_in:
                n = wrong_in[0]
                kind = info[n][0]
                why = {"bias": "a bias: shrinking biases towards 0 does not limit the "
                               "function's complexity, it only shifts it",
                       "norm": "the scale of a normalisation layer: decaying it fights the "
                               "normalisation (it pulls the scale towards 0); a 1-D parameter "
                               "named `weight` is not a weight matrix",
                       "other": "a 1-D parameter (neither bias nor weight matrix): the "
                                "contract decays only parameters with more than one "
                                "dimension"}[kind]
                _groups_fail(label, f"`{n}` is in the decay group, but it is {why}.")
            n = wrong_out[0]
            _groups_fail(label, f"`{n}` ({info[n][1]}-D) is a weight but is not in the decay "
                                "group. Decide by the parameter's number of dimensions, not by "
                                "the layer type or its name.")
        got_wd = []
        for g in groups:
            if "weight_decay" not in g:
                got_wd.append(None)
                continue
            got_wd.append(as_float(g["weight_decay"], "a group's weight_decay"))
        if got_wd[1] is None:
            _groups_fail(label, "the second group has no \"weight_decay\" key, so AdamW gives it "
                                "its own default (0.01), not 0: set it explicitly.")
        if got_wd[0] is None:
            _groups_fail(label, "the decay group has no \"weight_decay\" key, so AdamW would use "
                                "its default (0.01) instead of the weight_decay you were given.")
        if abs(got_wd[0] - 0.0) <= 1e-12 and abs(got_wd[1] - wd) <= 1e-9:
            _groups_fail(label, "weight_decay is on the wrong group: the weights should decay, "
                                "the biases and norm parameters not.")
        if abs(got_wd[0] - wd) > 1e-9 * max(1.0, wd):
            _groups_fail(label, f"the decay group's weight_decay is {got_wd[0]:g}; use the "
                                f"weight_decay you were given ({wd:g}) as it is.")
        if got_wd[1] != 0.0:
            _groups_fail(label, f"the second group's weight_decay is {got_wd[1]:g}; that group "
                                "must not decay at all.")
    return None


exercise("ex2.8", "decay_param_groups", probe_groups, judge_groups)
