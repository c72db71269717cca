"""Checks for lesson 02 (weight decay): ex2.1 ridge_fit, ex2.2 l2_penalty, ex2.3 l1_penalty,
ex2.4 l1_subgradient, ex2.5 soft_threshold, ex2.6 sgd_step, ex2.7 adamw_step and
ex2.8 weight_decay_equivalent (a value).

Same pattern as lesson 01: ``_*_cases()`` rebuild the fixed inputs (probe and judge both call
them); probes return only what the learner's code gave back (and flags: input changed, is it
a differentiable tensor, the gradients a backward pass on it produced); judges compute the
references themselves in float64 (``torch.optim.SGD`` / ``torch.optim.AdamW`` for the update
rules) and name the likely mistake when an answer matches a known wrong variant.
"""

from __future__ import annotations

import numpy as np

from helpers.checks.core import (Fail, Value, as_array, as_float, capture, close, encode,
                                 exercise, max_err, unwrap)


def _same(a, b, rtol=1e-9, atol=1e-12) -> bool:
    return close(a, b, rtol=rtol, atol=atol)


def _changed(before, after) -> bool:
    """True unless two arrays/tensors hold exactly the same values (NaN-safe, -0.0 == 0.0)."""
    a, b = np.asarray(before), np.asarray(after)
    return bool(a.shape != b.shape or not np.array_equal(a, b, equal_nan=True))


def _t(a, dtype="float64"):
    import torch
    return torch.tensor(np.asarray(a), dtype=getattr(torch, dtype))


def _np(t) -> np.ndarray:
    return t.detach().cpu().double().numpy().copy()


# ================================================================== ex2.1 ridge_fit

def _ridge_cases():
    rng = np.random.default_rng(2101)
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


def probe_ridge(ridge_fit):
    out = []
    for _, X, y, lam in _ridge_cases():
        Xi, yi = X.copy(), y.copy()
        out.append({"result": capture(ridge_fit, Xi, yi, lam),
                    "input_changed": _changed(Xi, X) or _changed(yi, y)})
    return out


def judge_ridge(data):
    for (label, X, y, lam), got in zip(_ridge_cases(), data, strict=True):
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
        if _same(a, ref, rtol=1e-7, atol=1e-10):
            continue
        if not np.all(np.isfinite(a)):
            raise Fail(f"{label}: the result contains inf or nan. With more features than "
                       "samples X^T X is singular: only X^T X + lam * I (lam > 0) is invertible.")
        if lam > 0:
            variants = [
                (lam / 2, "you minimised ||Xw-y||^2 + (lam/2)*||w||^2: you used lam/2 where the "
                          "objective has lam. The 1/2 belongs to the (lam/2)||w||^2 convention, "
                          "not to this exercise: solve (X^T X + lam*I) w = X^T y."),
                (2 * lam, "you used 2*lam: the gradient of the objective is "
                          "2 X^T (Xw - y) + 2 lam w, and both factors 2 cancel when you set it to zero."),
                (lam * n, f"you used lam * n (n = {n} samples): the penalty in this exercise is "
                          "not scaled by the number of samples."),
                (lam / n, f"you used lam / n (n = {n} samples), as if the data term were the mean "
                          "squared error. Here it is the sum ||Xw-y||^2, so the penalty is lam itself."),
                (lam ** 2, "the penalty came out as lam**2 * ||w||^2. If you stacked rows under X "
                           "to solve it as least squares, stack sqrt(lam) * I (and zeros under y), "
                           "not lam * I."),
                (0.0, "lam had no effect: this is the ordinary least-squares solution. Add "
                      "lam * I to X^T X."),
            ]
            for lam_v, hint in variants:
                alt = _ridge_ref(X, y, lam_v) if lam_v > 0 else np.linalg.lstsq(X, y, rcond=None)[0]
                if _same(a, alt, rtol=1e-6, atol=1e-9):
                    raise Fail(f"{label}: {hint}")
            alt = np.linalg.lstsq(X.T @ X + lam, X.T @ y, rcond=None)[0]
            if _same(a, alt, rtol=1e-6, atol=1e-9):
                raise Fail(f"{label}: you added lam to every entry of X^T X. The penalty adds lam "
                           "only on the diagonal: X^T X + lam * I (np.eye).")
        obj = lambda w: float(np.sum((X @ w - y) ** 2) + lam * np.sum(w ** 2))
        raise Fail(f"{label}: these are not the ridge weights (largest difference "
                   f"{max_err(a, ref):.3g}; objective ||Xw-y||^2 + lam*||w||^2 = {obj(a):.6g} "
                   f"for yours, {obj(ref):.6g} at the minimum). Set the gradient "
                   "2 X^T (Xw - y) + 2 lam w to zero and solve the linear system.")
    return None


exercise("ex2.1", "ridge_fit", probe_ridge, judge_ridge)


# ================================================================== ex2.2 / ex2.3 penalties

def _penalty_model(which: int):
    """The fixed models the penalty checks use: 0 = Linear + BatchNorm1d + Linear,
    1 = Conv2d + BatchNorm2d + Linear(bias=False) + LayerNorm. Deterministic float32 weights."""
    import torch
    from torch import nn

    rng = np.random.default_rng(2200 + which)
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


def _param_table(which: int):
    """(name, float64 array, kind) for every parameter; kind is the owning module's class name."""
    model = _penalty_model(which)
    owner = {}
    for mname, mod in model.named_modules():
        for pname, _ in mod.named_parameters(recurse=False):
            owner[f"{mname}.{pname}" if mname else pname] = type(mod).__name__
    return [(n, _np(p), owner[n]) for n, p in model.named_parameters()]


def _probe_penalty(fn):
    import torch

    out = []
    for _, which, lam in _penalty_cases():
        model = _penalty_model(which)
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


def _judge_penalty(data, kind):
    name = "l2_penalty" if kind == "l2" else "l1_penalty"
    for (label, which, lam), got in zip(_penalty_cases(), data, strict=True):
        table = _param_table(which)
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


def probe_l2(l2_penalty):
    return _probe_penalty(l2_penalty)


def judge_l2(data):
    return _judge_penalty(data, "l2")


def probe_l1(l1_penalty):
    return _probe_penalty(l1_penalty)


def judge_l1(data):
    return _judge_penalty(data, "l1")


exercise("ex2.2", "l2_penalty", probe_l2, judge_l2)
exercise("ex2.3", "l1_penalty", probe_l1, judge_l1)


# ================================================================== ex2.4 l1_subgradient

def _subgrad_cases():
    rng = np.random.default_rng(2401)
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
        keep = wi.clone()
        out.append({"result": capture(fn, wi, param),
                    "input_changed": _changed(_np(keep), _np(wi))})
    return out


def probe_subgrad(l1_subgradient):
    return _probe_elementwise(l1_subgradient, _subgrad_cases())


def judge_subgrad(data):
    for (label, w, dt, lam), got in zip(_subgrad_cases(), data, strict=True):
        w = w.astype(np.float32).astype(np.float64) if dt == "float32" else w
        ref = lam * np.sign(w)
        a = as_array(got["result"], "l1_subgradient(w, lam)")
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
                   "lam * sign(w): +lam for positive weights, -lam for negative, 0 at 0.")
    return None


exercise("ex2.4", "l1_subgradient", probe_subgrad, judge_subgrad)


# ================================================================== ex2.5 soft_threshold

def _soft_cases():
    rng = np.random.default_rng(2501)
    v1 = np.array([-2.0, -0.31, -0.3, -0.1, 0.0, 0.05, 0.3, 0.45, 3.0])
    m3 = np.round(rng.normal(0, 1, (4, 5)), 2)
    return [("a float64 vector with |w| below, at and above t = 0.3", v1, "float64", 0.3),
            ("t = 0 (nothing changes)", v1, "float64", 0.0),
            ("a float32 (4, 5) matrix, t = 0.5", m3, "float32", 0.5),
            ("t larger than every |w| (everything becomes 0), t = 10", v1, "float64", 10.0)]


def probe_soft(soft_threshold):
    return _probe_elementwise(soft_threshold, _soft_cases())


def judge_soft(data):
    for (label, w, dt, t), got in zip(_soft_cases(), data, strict=True):
        w = w.astype(np.float32).astype(np.float64) if dt == "float32" else w
        ref = np.sign(w) * np.maximum(np.abs(w) - t, 0.0)
        a = as_array(got["result"], "soft_threshold(w, t)")
        if a.shape != ref.shape:
            raise Fail(f"{label}: got shape {a.shape}, expected the shape of w, {ref.shape}.")
        if got["input_changed"]:
            raise Fail(f"{label}: your function changed w in place; return a new tensor.")
        tol = dict(rtol=1e-6, atol=1e-6 if dt == "float32" else 1e-12)
        if _same(a, ref, **tol):
            continue
        if _same(a, w - t * np.sign(w), **tol):
            raise Fail(f"{label}: weights with |w| < t overshoot zero and flip sign (w = -0.1, "
                       "t = 0.3 gave 0.2). Shrinking by t must stop at 0: clamp |w| - t at 0 "
                       "before putting the sign back.")
        if _same(a, np.where(np.abs(w) > t, w, 0.0), **tol):
            raise Fail(f"{label}: that is hard thresholding (small weights set to 0, the others "
                       "kept). Soft thresholding also shrinks the surviving weights by t.")
        if _same(a, np.maximum(w - t, 0.0), **tol):
            raise Fail(f"{label}: negative weights all became 0. Shrink the magnitude |w| and "
                       "keep the sign: negative weights move up towards 0, positive ones down.")
        if _same(a, np.maximum(np.abs(w) - t, 0.0), **tol):
            raise Fail(f"{label}: the sign was lost (negative weights came back positive). "
                       "Multiply by sign(w).")
        raise Fail(f"{label}: wrong values (largest difference {max_err(a, ref):.3g}); expected "
                   "sign(w) * max(|w| - t, 0).")
    return None


exercise("ex2.5", "soft_threshold", probe_soft, judge_soft)


# ================================================================== ex2.6 sgd_step

def _sgd_cases():
    rng = np.random.default_rng(2601)
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


def probe_sgd(sgd_step):
    out = []
    for _, w, g, lr, wd, dt in _sgd_cases():
        wi, gi = _t(w, dt), _t(g, dt)
        kw, kg = wi.clone(), gi.clone()
        out.append({"result": capture(sgd_step, wi, gi, lr, wd),
                    "input_changed": _changed(_np(kw), _np(wi)) or _changed(_np(kg), _np(gi))})
    return out


def _torch_sgd(w, g, lr, wd):
    import torch
    p = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr, weight_decay=wd)
    p.grad = torch.tensor(g, dtype=torch.float64)
    opt.step()
    return _np(p)


def judge_sgd(data):
    for (label, w, g, lr, wd, dt), got in zip(_sgd_cases(), data, strict=True):
        if dt == "float32":
            w, g = w.astype(np.float32).astype(np.float64), g.astype(np.float32).astype(np.float64)
        ref = _torch_sgd(w, g, lr, wd)
        a = as_array(got["result"], "sgd_step(w, grad, lr, weight_decay)")
        if a.shape != ref.shape:
            raise Fail(f"{label}: got shape {a.shape}, expected the shape of w, {ref.shape}.")
        if got["input_changed"]:
            raise Fail(f"{label}: your function changed w or grad in place (torch.optim.SGD does, "
                       "but this function must return a new tensor: no -=, sub_ or add_).")
        tol = dict(rtol=1e-6, atol=1e-7) if dt == "float32" else dict(rtol=1e-10, atol=1e-12)
        if _same(a, ref, **tol):
            continue
        variants = [
            (w - lr * g - wd * w, "the decay term was not multiplied by lr. torch adds "
                                  "weight_decay * w to the gradient, and the whole sum is scaled by lr."),
            (w - lr * (g + 2 * wd * w), "you used 2 * weight_decay * w. torch's weight_decay is "
                                        "already the coefficient in the gradient (it is 2*lambda "
                                        "for a penalty lambda*||w||^2): add weight_decay * w, no factor 2."),
            (w - lr * (g + wd / 2 * w), "you used weight_decay / 2: torch adds weight_decay * w "
                                        "to the gradient as it is."),
            (w - lr * (g - wd * w), "the decay has the wrong sign: it must pull w towards 0, so "
                                    "weight_decay * w is added to the gradient, then subtracted "
                                    "with it from w."),
            (w - lr * g, "weight_decay was ignored."),
            (-lr * (g + wd * w), "you returned the step, not the new weights: return w minus "
                                 "the step."),
            (lr * (g + wd * w), "you returned the step, not the new weights: return w minus "
                                "the step."),
        ]
        for alt, hint in variants:
            if _same(a, alt, **tol) and not _same(alt, ref, **tol):
                raise Fail(f"{label}: {hint}")
        raise Fail(f"{label}: wrong new weights (largest difference {max_err(a, ref):.3g}). "
                   "One SGD step with weight decay: g = grad + weight_decay * w, then "
                   "w - lr * g.")
    return None


exercise("ex2.6", "sgd_step", probe_sgd, judge_sgd)


# ================================================================== ex2.7 adamw_step

def _adamw_cases():
    rng = np.random.default_rng(2701)
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


def probe_adamw(adamw_step):
    out = []
    for _, w, g, m, v, t, lr, betas, eps, wd, dt in _adamw_cases():
        ins = [_t(a, dt) for a in (w, g, m, v)]
        keep = [x.clone() for x in ins]
        res = capture(adamw_step, *ins, t, lr, betas, eps, wd)
        out.append({"result": res,
                    "input_changed": [_changed(_np(k), _np(x)) for k, x in zip(keep, ins)]})
    return out


def _torch_adamw(w, g, m, v, t, lr, betas, eps, wd):
    import torch
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


def judge_adamw(data):
    for case, got in zip(_adamw_cases(), data, strict=True):
        label, w, g, m, v, t, lr, (b1, b2), eps, wd, dt = case
        if dt == "float32":
            w, g, m, v = (a.astype(np.float32).astype(np.float64) for a in (w, g, m, v))
        ref = _torch_adamw(w, g, m, v, t, lr, (b1, b2), eps, wd)
        res = unwrap(got["result"]) if not isinstance(got["result"], (list, tuple)) else got["result"]
        if not isinstance(res, (list, tuple)) or len(res) != 3:
            raise Fail(f"{label}: adamw_step must return a tuple (w, m, v) of three tensors: the "
                       "new weights and the new first and second moments.")
        outs = [as_array(x, f"the {n} you returned") for x, n in zip(res, ("w", "m", "v"))]
        for a, r, n in zip(outs, ref, ("w", "m", "v")):
            if a.shape != r.shape:
                raise Fail(f"{label}: the {n} you returned has shape {a.shape}, expected {r.shape}.")
        changed = [n for n, c in zip(("w", "grad", "m", "v"), got["input_changed"]) if c]
        if changed:
            raise Fail(f"{label}: your function changed {', '.join(changed)} in place "
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
            (dict(decay="coupled"), "you added weight_decay * w to the gradient: that is Adam "
             "with an L2 term (torch.optim.Adam's weight_decay), where the decay passes through "
             "m and v and gets divided by sqrt(v_hat). AdamW decouples it: shrink w by the factor "
             "(1 - lr * weight_decay) and use the raw gradient for m and v."),
            (dict(decay="both"), "you applied the decay twice: once through the gradient (coupled "
             "L2) and once as a shrink factor. AdamW only shrinks w; m and v see the raw gradient."),
            (dict(decay="after"), "the decay was applied after the Adam update. torch's AdamW "
             "shrinks the current weights first, w * (1 - lr * weight_decay), then subtracts "
             "the Adam step."),
            (dict(decay="no_lr"), "the decay was not multiplied by lr: the shrink factor is "
             "(1 - lr * weight_decay), not (1 - weight_decay)."),
            (dict(decay="none"), "weight_decay was ignored (this is a plain Adam step)."),
            (dict(bias=False), "the bias correction is missing: divide m by (1 - beta1**t) and v "
             "by (1 - beta2**t) before the update (this matters most in the first steps, "
             "when m and v start at 0)."),
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
            raise Fail(f"{label}: m and v came back unchanged: return the updated moments "
                       "(m = beta1*m + (1-beta1)*grad, v = beta2*v + (1-beta2)*grad**2).")
        if not _same(outs[1], ref[1], **tol):
            if _same(outs[1], b2 * m + (1 - b2) * g, **tol):
                raise Fail(f"{label}: m used beta2; betas = (beta1, beta2): m uses beta1, v uses beta2.")
            raise Fail(f"{label}: the first moment m is wrong (largest difference "
                       f"{max_err(outs[1], ref[1]):.3g}); m = beta1*m + (1-beta1)*grad, with "
                       "the raw gradient.")
        if not _same(outs[2], ref[2], **tol):
            raise Fail(f"{label}: the second moment v is wrong (largest difference "
                       f"{max_err(outs[2], ref[2]):.3g}); v = beta2*v + (1-beta2)*grad**2, with "
                       "the raw gradient.")
        raise Fail(f"{label}: m and v are right but the new w is not (largest difference "
                   f"{max_err(outs[0], ref[0]):.3g}). AdamW: w * (1 - lr*weight_decay), then "
                   "minus lr * m_hat / (sqrt(v_hat) + eps).")
    return None


exercise("ex2.7", "adamw_step", probe_adamw, judge_adamw)


# ================================================================== ex2.8 (a value)

WD_LAMBDA = 5e-4


def probe_wd_value(weight_decay_equivalent):
    return {"result": encode(weight_decay_equivalent)}


def judge_wd_value(data):
    got = data["result"]
    if got is None or getattr(got, "value", 0) is None:
        raise Fail("weight_decay_equivalent is not set: assign a number.")
    v = as_float(got, "weight_decay_equivalent")
    ref = 2 * WD_LAMBDA
    if abs(v - ref) <= 1e-6 * ref:
        return None
    if abs(v - WD_LAMBDA) <= 1e-6 * ref:
        raise Fail(f"got {v:g}, the lambda of the penalty itself. The gradient of "
                   "lambda * ||w||^2 is 2 * lambda * w, and torch adds weight_decay * w to the "
                   "gradient: the factor 2 is missing.")
    if abs(v - WD_LAMBDA / 2) <= 1e-6 * ref:
        raise Fail(f"got {v:g}: you halved lambda, but the gradient of lambda * ||w||^2 is "
                   "2 * lambda * w, so weight_decay must be twice lambda.")
    raise Fail(f"got {v:g}. Compare the gradient of the penalty, 2 * lambda * w, with what "
               "weight_decay adds to the gradient, weight_decay * w.")


exercise("ex2.8", "weight_decay_equivalent", probe_wd_value, judge_wd_value, kind="value")
