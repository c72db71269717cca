"""Checks for lesson 02 (weight decay): ex2.1 ridge_fit, ex2.2 l2_penalty, ex2.3 l1_penalty,
ex2.4 l1_subgradient, ex2.5 soft_threshold, ex2.6 sgd_step, ex2.7 adamw_step and
ex2.8 decay_param_groups.

Every case family is rebuilt from the case seed (``case_rng(seed, salt)``; structure, edge
cases and exact zeros stay, values vary). Probes return only what the learner's code gave back
(and flags: input changed, is it a differentiable tensor, the gradients a backward pass on it
produced; for ex2.8 the groups as *names* of the model's parameters, matched by ``id()``).
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
                                 changed, close, encode, exercise, expect_array, expect_close,
                                 learner_code, match_mistake, max_err, snapshot, unwrap)


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
        keep = snapshot(Xi, yi)
        out.append({"result": capture(ridge_fit, Xi, yi, lam),
                    "input_changed": changed(keep, Xi, yi)})
    return out


def judge_ridge(data, seed):
    for (label, X, y, lam), got in zip(_ridge_cases(seed), data, strict=True):
        n, d = X.shape
        ref = _ridge_ref(X, y, lam)
        a = as_array(got["result"], "ridge_fit(X, y, lam)")
        if a.size == d:
            a = a.reshape(-1)
        if a.shape != ref.shape:
            raise Fail(f"{label}: got an array of shape {a.shape}, expected one weight per "
                       f"column of X, shape {ref.shape}. There is no intercept in this exercise.")
        if got["input_changed"]:
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
                       "samples X^T X is singular: only X^T X + lam * I (lam > 0) is invertible.")
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


exercise("ex2.1", "ridge_fit", probe_ridge, judge_ridge)


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
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        holder = {}

        def call(model=model, lam=lam):
            holder["v"] = fn(model, lam)
            return holder["v"]

        rec = {"result": capture(call)}
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
        rec["params_changed"] = any(not torch.equal(before[n], p.detach())
                                    for n, p in model.named_parameters())
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
        if got["params_changed"]:
            raise Fail(f"{label}: your function changed the model's parameters. A penalty "
                       "only reads them.")
        res = got["result"]
        if not got["is_tensor"] or not isinstance(res, Value) or res.kind != "torch":
            raise Fail(f"{label}: the value is right but it is not a torch tensor, so autograd "
                       "cannot differentiate it. Return the tensor itself: no .item(), float() "
                       "or NumPy.")
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


# ================================================================== ex2.4 l1_subgradient

def _subgrad_cases(seed):
    rng = case_rng(seed, 2401)
    v1 = np.array([-2.0, -0.5, 0.0, 0.3, 1e-12, -3e-20, 7.0, -0.0])
    m2 = np.round(rng.normal(0, 1, (3, 4)), 2)
    m2[0, 1] = m2[2, 3] = 0.0
    t4 = np.round(rng.normal(0, 1, (2, 3, 2, 2)), 1)
    t4[0, 0] = 0.0
    return [("a float64 vector with zeros (0.0 and -0.0) and tiny values, lam = 0.05", v1, "float64", 0.05),
            ("a float32 (3, 4) matrix with zeros, lam = 0.3", m2, "float32", 0.3),
            ("a float32 4-D tensor (2, 3, 2, 2) with zeros, lam = 1.5", t4, "float32", 1.5),
            ("all zeros, lam = 0.1", np.zeros(5), "float64", 0.1)]


def _probe_elementwise(fn, cases):
    """``fn(w, param)`` on each case's tensor: what came back, and whether ``w`` was changed."""
    out = []
    for _, w, dt, param in cases:
        wi = _t(w, dt)
        keep = snapshot(wi)
        out.append({"result": capture(fn, wi, param),
                    "input_changed": changed(keep, wi)})
    return out


def probe_subgrad(l1_subgradient, seed):
    return _probe_elementwise(l1_subgradient, _subgrad_cases(seed))


def judge_subgrad(data, seed):
    for (label, w, dt, lam), got in zip(_subgrad_cases(seed), data, strict=True):
        w = w.astype(np.float32).astype(np.float64) if dt == "float32" else w
        ref = lam * np.sign(w)
        a = expect_array(got["result"], "l1_subgradient(w, lam)", dtype=dt, kind="torch")
        if a.shape != ref.shape:
            raise Fail(f"{label}: got shape {a.shape}, expected the shape of w, {ref.shape}.")
        if got["input_changed"]:
            raise Fail(f"{label}: your function changed w in place (an in-place op such as "
                       "sign_() or mul_()); return a new tensor.")
        tol = dict(rtol=1e-6, atol=1e-12)
        if _same(a, ref, **tol):
            continue
        zero, nz = w == 0, w != 0
        if np.any(zero) and not np.all(np.isfinite(a[zero])):
            raise Fail(f"{label}: got nan where w == 0. Dividing w by |w| is 0/0 there; the "
                       "subgradient of |w| at 0 is taken as 0 (torch.sign(0) == 0).")
        if lam != 1 and _same(a, np.sign(w), **tol):
            raise Fail(f"{label}: you returned sign(w) without the factor lam.")
        if np.any(zero) and _same(a[nz], ref[nz], **tol):
            at0 = a[zero]
            if np.allclose(at0, lam):
                raise Fail(f"{label}: got +lam where w == 0 (the sign of 0 must be 0, not +1, "
                           "as where(w >= 0, 1, -1) gives). torch.sign(0) is 0.")
            if np.allclose(at0, -lam):
                raise Fail(f"{label}: got -lam where w == 0 (the sign of 0 must be 0, not -1). "
                           "torch.sign(0) is 0.")
            raise Fail(f"{label}: wrong values where w == 0 (got {at0[:3]}); there the "
                       "subgradient must be exactly 0.")
        tiny = nz & (np.abs(w) < 1e-6)
        if np.any(tiny) and _same(a[~tiny], ref[~tiny], rtol=1e-4, atol=1e-9):
            raise Fail(f"{label}: wrong for tiny nonzero weights (w = {w[tiny][0]:g} gave "
                       f"{a[tiny][0]:.3g}, expected {ref[tiny][0]:g}). The sign of a nonzero "
                       "number is +1 or -1 however small it is; an eps in a denominator "
                       "(w / (|w| + eps)) breaks that.")
        raise Fail(f"{label}: wrong values (largest difference {max_err(a, ref):.3g}); expected "
                   "+lam for positive weights, -lam for negative ones, 0 at 0.")
    return None


exercise("ex2.4", "l1_subgradient", probe_subgrad, judge_subgrad)


# ================================================================== ex2.5 soft_threshold

def _soft_cases(seed):
    rng = case_rng(seed, 2501)
    v1 = np.array([-2.0, -0.31, -0.3, -0.1, 0.0, 0.05, 0.3, 0.45, 3.0])
    m3 = np.round(rng.normal(0, 1, (4, 5)), 2)
    return [("a float64 vector with |w| below, at and above t = 0.3", v1, "float64", 0.3),
            ("t = 0 (nothing changes)", v1, "float64", 0.0),
            ("a float32 (4, 5) matrix, t = 0.5", m3, "float32", 0.5),
            ("t larger than every |w| (everything becomes 0), t = 10", v1, "float64", 10.0)]


def probe_soft(soft_threshold, seed):
    return _probe_elementwise(soft_threshold, _soft_cases(seed))


def judge_soft(data, seed):
    for (label, w, dt, t), got in zip(_soft_cases(seed), data, strict=True):
        w = w.astype(np.float32).astype(np.float64) if dt == "float32" else w
        ref = np.sign(w) * np.maximum(np.abs(w) - t, 0.0)
        a = expect_array(got["result"], "soft_threshold(w, t)", dtype=dt, kind="torch")
        if a.shape != ref.shape:
            raise Fail(f"{label}: got shape {a.shape}, expected the shape of w, {ref.shape}.")
        if got["input_changed"]:
            raise Fail(f"{label}: your function changed w in place; return a new tensor.")
        tol = dict(rtol=1e-6, atol=1e-6 if dt == "float32" else 1e-12)
        expect_close(label, a, ref, [
            (w - t * np.sign(w), "weights with |w| < t overshoot zero and flip sign (w = -0.1, "
                                 "t = 0.3 gave 0.2). Shrinking by t must stop at 0: clamp |w| - t "
                                 "at 0 before putting the sign back."),
            (np.where(np.abs(w) > t, w, 0.0), "that is hard thresholding (small weights set to 0, "
                                              "the others kept). Soft thresholding also shrinks "
                                              "the surviving weights by t."),
            (np.maximum(w - t, 0.0), "negative weights all became 0. Shrink the magnitude |w| and "
                                     "keep the sign: negative weights move up towards 0, positive "
                                     "ones down."),
            (np.maximum(np.abs(w) - t, 0.0), "the sign was lost (negative weights came back "
                                             "positive). Multiply by sign(w)."),
        ], "Entries with |w| <= t must become 0; the others move by t towards 0, keeping their "
           "sign.", **tol)
    return None


exercise("ex2.5", "soft_threshold", probe_soft, judge_soft)


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
        keep = snapshot(wi, gi)
        out.append({"result": capture(sgd_step, wi, gi, lr, wd),
                    "input_changed": changed(keep, wi, gi)})
    return out


def _torch_sgd(w, g, lr, wd):
    p = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr, weight_decay=wd)
    p.grad = torch.tensor(g, dtype=torch.float64)
    opt.step()
    return _np(p)


def judge_sgd(data, seed):
    for (label, w, g, lr, wd, dt), got in zip(_sgd_cases(seed), data, strict=True):
        if dt == "float32":
            w, g = w.astype(np.float32).astype(np.float64), g.astype(np.float32).astype(np.float64)
        ref = _torch_sgd(w, g, lr, wd)
        a = expect_array(got["result"], "sgd_step(w, grad, lr, weight_decay)", dtype=dt,
                         kind="torch")
        if a.shape != ref.shape:
            raise Fail(f"{label}: got shape {a.shape}, expected the shape of w, {ref.shape}.")
        if got["input_changed"]:
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
            (lr * (g + wd * w), step),
        ]
        expect_close(label, a, ref, [(alt, h) for alt, h in mistakes if not _same(alt, ref, **tol)],
                     "Compare with what torch.optim.SGD does to the gradient when weight_decay "
                     "is set, then to the weights.", what="new weights", **tol)
    return None


exercise("ex2.6", "sgd_step", probe_sgd, judge_sgd)


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
        keep = snapshot(*ins)
        res = capture(adamw_step, *ins, t, lr, betas, eps, wd)
        out.append({"result": res,
                    "input_changed": [changed([k], x) for k, x in zip(keep, ins)]})
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
        modified = [n for n, c in zip(("w", "grad", "m", "v"), got["input_changed"]) if c]
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


exercise("ex2.7", "adamw_step", probe_adamw, judge_adamw)


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
    Linear's bias frozen.
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
    model = nn.Sequential(nn.Embedding(10, a), _Scaled(a), nn.Linear(a, b))
    model[2].bias.requires_grad_(False)
    return model


def _groups_cases(seed):
    rng = case_rng(seed, 2801)
    wds = np.round(rng.uniform(0.01, 0.3, 3), 3)
    return [("Linear + BatchNorm1d + ReLU + Linear", 0, float(wds[0])),
            ("Conv2d (frozen) + BatchNorm2d + Linear(bias=False) + LayerNorm", 1, float(wds[1])),
            ("Embedding + a block with a learnable 1-D gain + Linear (its bias frozen)", 2,
             float(wds[2]))]


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
        flags = {n: p.requires_grad for n, p in model.named_parameters()}

        def call(model=model, wd=wd, names_by_id=names_by_id):
            return _describe_groups(decay_param_groups(model, wd), names_by_id)

        rec = {"result": capture(call)}
        rec["flags_changed"] = any(p.requires_grad != flags[n] for n, p in model.named_parameters())
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
        if got.get("flags_changed"):
            _groups_fail(label, "your function changed requires_grad of a parameter: it should "
                                "only read the model.")
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
