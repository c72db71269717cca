"""Checks for lesson 05 (label smoothing and calibration).

- ex5.1 ``smooth_targets(y, num_classes, eps)``: ``(N, K)`` soft targets ``(1-eps)*one_hot + eps/K``.
- ex5.2 ``label_smoothing_cross_entropy(logits, y, eps)``: batch mean, equal to
  ``F.cross_entropy(logits, y, label_smoothing=eps)``, finite for logits of +-1000.
- ex5.3 ``expected_calibration_error(probs, y, n_bins=15)``: confidence = max probability,
  equal-width bins on [0, 1], each bin weighted by its share of the samples.
- ex5.4 ``optimal_logit_gap(num_classes, eps)``: the gap ``z_true - z_other`` that minimises
  the smoothed cross-entropy, ``log((1-eps+eps/K) / (eps/K))``.

Same pattern as lesson 01: ``_*_cases()`` rebuild the fixed inputs for probe and judge, the
probe only records what came back (and whether inputs were changed), the judge computes the
float64 references itself and names the likely mistake.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from helpers.checks.core import (Fail, Raised, Value, as_array, as_float, capture, close,
                                 exercise, max_err)

# ------------------------------------------------------------------ shared references

def _one_hot(y: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((len(y), k))
    out[np.arange(len(y)), y] = 1.0
    return out


def _targets(y: np.ndarray, k: int, eps: float) -> np.ndarray:
    """The torch / Szegedy et al. soft targets, float64."""
    return (1.0 - eps) * _one_hot(y, k) + eps / k


def _log_softmax(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def _fmt_row(r) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in np.asarray(r).ravel()) + "]"


def _is_tensor(v) -> bool:
    return isinstance(v, Value) and v.kind == "torch"


# ------------------------------------------------------------------ ex5.1

def _targets_cases():
    return [
        ("K=3, eps=0.1, y=[2, 0, 1, 1, 0]", torch.tensor([2, 0, 1, 1, 0]), 3, 0.1),
        ("K=10, eps=0.1, 7 labels", torch.tensor([3, 9, 0, 7, 7, 1, 5]), 10, 0.1),
        ("K=10, eps=0.25, labels only 0..2 (K comes from num_classes, not from y)",
         torch.tensor([1, 0, 2, 2, 1, 0]), 10, 0.25),
        ("K=4, eps=0 (plain one-hot)", torch.tensor([3, 1, 0]), 4, 0.0),
        ("K=3, eps=0.3, label 2 absent", torch.tensor([0, 0, 1]), 3, 0.3),
        ("one label, K=5, eps=0.1", torch.tensor([4]), 5, 0.1),
    ]


def probe_targets(smooth_targets):
    out = []
    for _, y, k, eps in _targets_cases():
        yin = y.clone()
        out.append({"result": capture(smooth_targets, yin, k, eps),
                    "input_changed": bool(not torch.equal(yin, y))})
    return out


def judge_targets(data):
    for (label, y, k, eps), got in zip(_targets_cases(), data, strict=True):
        yn = y.numpy()
        n = len(yn)
        ref = _targets(yn, k, eps)
        a = as_array(got["result"], "smooth_targets(y, num_classes, eps)")
        if a.shape != ref.shape:
            if a.shape == (k, n):
                raise Fail(f"{label}: got shape {a.shape}, expected (N, K) = {ref.shape}: one row "
                           "per sample, one column per class (transpose your result).")
            if a.ndim == 2 and a.shape[0] == n and a.shape[1] == int(yn.max()) + 1:
                raise Fail(f"{label}: got shape {a.shape}, expected (N, K) = {ref.shape}. The "
                           "number of classes must come from num_classes: F.one_hot(y) alone "
                           "guesses K from the largest label (pass num_classes=...).")
            raise Fail(f"{label}: got shape {a.shape}, expected (N, num_classes) = {ref.shape}.")
        if not close(a, ref, rtol=1e-6, atol=1e-7):
            oh = _one_hot(yn, k)
            row = f" Row 0: got {_fmt_row(a[0])}, expected {_fmt_row(ref[0])}."
            if k > 1 and eps > 0 and close(a, (1 - eps) * oh + eps / (k - 1) * (1 - oh), atol=1e-7):
                raise Fail(f"{label}: you spread eps over the K-1 *other* classes (eps/(K-1), "
                           "e.g. [0.05, 0.9, 0.05] for K=3, eps=0.1). That is not the definition "
                           "torch and Szegedy et al. use: eps is spread uniformly over *all* K "
                           "classes, so every class gets eps/K and the true class "
                           f"1 - eps + eps/K.{row}")
            if eps > 0 and close(a, (1 - eps) * oh, atol=1e-7):
                raise Fail(f"{label}: the true class gets 1 - eps but the other classes get 0, so "
                           f"each row sums to 1 - eps. Add eps/K to every class.{row}")
            if eps > 0 and close(a, (1 - eps) * oh + eps, atol=1e-7):
                raise Fail(f"{label}: you added eps to every class instead of eps/K, so rows sum "
                           f"to 1 - eps + K*eps, not 1.{row}")
            if eps > 0 and close(a, eps * oh + (1 - eps) / k, atol=1e-7):
                raise Fail(f"{label}: eps and 1 - eps are swapped: the one-hot part is weighted "
                           f"by 1 - eps and the uniform part by eps.{row}")
            if eps > 0 and close(a, oh, atol=1e-7):
                raise Fail(f"{label}: got plain one-hot targets; eps was not applied.{row}")
            sums = a.sum(axis=1)
            extra = "" if np.allclose(sums, 1.0, atol=1e-6) else \
                f" Your rows sum to {_fmt_row(sums[:3])}..., but targets are probabilities: each row sums to 1."
            raise Fail(f"{label}: wrong values (largest difference {max_err(a, ref):.3g}); "
                       f"expected (1 - eps) * one_hot + eps / K.{row}{extra}")
        if got["input_changed"]:
            raise Fail(f"{label}: your function changed the label tensor y; work on a copy.")
        if not _is_tensor(got["result"]):
            raise Fail(f"{label}: the values are right, but return a torch tensor (got "
                       f"{got['result'].kind if isinstance(got['result'], Value) else type(got['result']).__name__}); "
                       "the loss in ex5.2 combines it with log_softmax.")
    return None


exercise("ex5.1", "smooth_targets", probe_targets, judge_targets)

# ------------------------------------------------------------------ ex5.2

def _ce_cases():
    g = torch.Generator().manual_seed(502)
    z1 = torch.randn(6, 3, generator=g, dtype=torch.float64) * 2
    y1 = torch.tensor([0, 2, 1, 1, 0, 2])
    z2 = torch.randn(8, 10, generator=g, dtype=torch.float64) * 3
    y2 = torch.tensor([3, 9, 0, 7, 7, 1, 5, 2])
    z3 = (torch.randn(8, 10, generator=g) * 2.5).float()
    y3 = torch.tensor([1, 1, 4, 8, 0, 6, 2, 9])
    z4 = torch.randn(5, 10, generator=g, dtype=torch.float64) * 2
    y4 = torch.tensor([0, 5, 9, 3, 3])
    big64 = torch.tensor([[1000.0, -1000.0, 0.0],
                          [-1000.0, 1000.0, 500.0],
                          [0.0, -1000.0, 1000.0],
                          [1000.0, 999.0, -1000.0]], dtype=torch.float64)
    ybig64 = torch.tensor([1, 0, 1, 2])
    signs = torch.randint(0, 3, (6, 10), generator=g).float() - 1.0
    big32 = (signs * 1000.0 + torch.randn(6, 10, generator=g)).float()
    ybig32 = torch.tensor([0, 3, 9, 5, 5, 1])
    return [
        ("6 samples, K=3, eps=0.1, float64", z1, y1, 0.1),
        ("8 samples, K=10, eps=0.1, float64", z2, y2, 0.1),
        ("8 samples, K=10, eps=0.25, float32", z3, y3, 0.25),
        ("eps=0 (plain cross-entropy), 5 samples, K=10", z4, y4, 0.0),
        ("large logits (+-1000), K=3, eps=0.1, float64", big64, ybig64, 0.1),
        ("large logits (+-1000), K=10, eps=0.1, float32", big32, ybig32, 0.1),
    ]


def _grad_case():
    g = torch.Generator().manual_seed(5021)
    z = torch.randn(5, 4, generator=g, dtype=torch.float64) * 2
    return "gradient, 5 samples, K=4, eps=0.2, float64", z, torch.tensor([3, 0, 0, 2, 1]), 0.2


def _grad_of(fn, logits, y, eps):
    x = logits.clone().requires_grad_(True)
    loss = fn(x, y.clone(), eps)
    loss.backward()
    return x.grad


def probe_ce(label_smoothing_cross_entropy):
    fn = label_smoothing_cross_entropy
    out = []
    for _, z, y, eps in _ce_cases():
        zin, yin = z.clone(), y.clone()
        out.append({"result": capture(fn, zin, yin, eps),
                    "input_changed": bool(not (torch.equal(zin, z) and torch.equal(yin, y)))})
    _, z, y, eps = _grad_case()
    return {"cases": out, "grad": capture(_grad_of, fn, z, y, eps)}


def _ref_ce(z: np.ndarray, y: np.ndarray, eps: float) -> float:
    k = z.shape[1]
    return float(-(_targets(y, k, eps) * _log_softmax(z)).sum(axis=1).mean())


def _ce_mistakes(z, y, eps):
    """(description, value) of the common mistakes on one case."""
    n, k = z.shape
    logp = _log_softmax(z)
    oh = _one_hot(y, k)
    nll = -(oh * logp).sum(axis=1)
    ref_rows = -(_targets(y, k, eps) * logp).sum(axis=1)
    p = np.exp(logp)
    out = []
    if k > 1 and eps > 0:
        q_wrong = (1 - eps) * oh + eps / (k - 1) * (1 - oh)
        out.append(("you smoothed with eps/(K-1) on the other classes (e.g. [0.05, 0.9, 0.05]). "
                    "torch's label_smoothing and Szegedy et al. spread eps over all K classes: "
                    "target (1 - eps) * one_hot + eps / K",
                    float(-(q_wrong * logp).sum(axis=1).mean())))
        out.append(("you weighted the true class by 1 - eps but gave the other classes nothing "
                    "(the eps/K part is missing). The loss is (1 - eps) * NLL + eps * mean_k(-log p_k)",
                    float((1 - eps) * nll.mean())))
        out.append(("you smoothed the predictions ((1 - eps) * softmax + eps/K) instead of the "
                    "targets. Label smoothing changes the *targets*; the model's log-probabilities "
                    "stay log_softmax(logits)",
                    float(-np.log((1 - eps) * p[np.arange(n), y] + eps / k).mean())))
        out.append(("eps was ignored: this is the plain cross-entropy",
                    float(nll.mean())))
        out.append(("the uniform part got weight eps per class instead of eps/K "
                    "(eps * sum_k instead of eps * mean_k of -log p_k)",
                    float(((1 - eps) * nll - eps * logp.sum(axis=1)).mean())))
    if n > 1:
        out.append((f"this is the *sum* over the {n} samples; return the mean over the batch "
                    "(as F.cross_entropy does by default)", float(ref_rows.sum())))
    if k > 1:
        out.append((f"you averaged over all N*K entries (divided by K = {k} too); sum over the "
                    "classes, then average over the samples", float(ref_rows.mean() / k)))
    return out


_OVERFLOW = ("log(softmax(z)) underflows to log(0) = -inf when logits differ by hundreds, and "
             "exp(1000) overflows to inf. Use torch.log_softmax (or subtract the row maximum "
             "before exp: log-sum-exp) so the loss stays finite")


def judge_ce(data):
    cases = data["cases"]
    for (label, z, y, eps), got in zip(_ce_cases(), cases, strict=True):
        zn = z.double().numpy()
        yn = y.numpy()
        n, k = zn.shape
        ref = _ref_ce(zn, yn, eps)
        a = as_array(got["result"], "label_smoothing_cross_entropy(logits, y, eps)")
        if a.size == n and n > 1:
            raise Fail(f"{label}: got {a.size} values (one loss per sample); return one number, "
                       "the mean over the batch.")
        if a.size == n * k:
            raise Fail(f"{label}: got an array of shape {a.shape}; sum over the classes and "
                       "average over the samples to get one number.")
        v = as_float(got["result"], "label_smoothing_cross_entropy(logits, y, eps)")
        large = "large logits" in label
        if not math.isfinite(v):
            if large:
                raise Fail(f"{label}: got {v}, expected {ref:.6g}. {_OVERFLOW}.")
            raise Fail(f"{label}: got {v}, expected {ref:.6g}; your loss is not finite.")
        tol = 2e-5 if z.dtype == torch.float32 else 1e-6
        if abs(v - ref) <= tol * max(1.0, abs(ref)):
            if got["input_changed"]:
                raise Fail(f"{label}: your function changed its inputs (logits or y) in place; "
                           "work on copies.")
            continue
        for why, alt in _ce_mistakes(zn, yn, eps):
            if abs(v - alt) <= tol * max(1.0, abs(alt)):
                raise Fail(f"{label}: got {v:.6g}, expected {ref:.6g}: {why}.")
        if large:
            raise Fail(f"{label}: got {v:.6g}, expected {ref:.6g}. The small-logit cases were "
                       "right, so the large logits lose precision: clamping probabilities or "
                       "adding a small constant inside log changes the value. "
                       f"{_OVERFLOW}.")
        raise Fail(f"{label}: got {v:.6g}, expected {ref:.6g} (what F.cross_entropy(logits, y, "
                   "label_smoothing=eps) gives). The loss is the batch mean of "
                   "-sum_k q_k log p_k with q = (1 - eps) * one_hot + eps / K and "
                   "log p = log_softmax(logits).")
    label, z, y, eps = _grad_case()
    g = data["grad"]
    if isinstance(g, Raised):
        raise Fail(f"{label}: calling .backward() on your loss failed ({g}). Return a torch "
                   "scalar built from torch operations on the logits (no .item(), float(), "
                   "NumPy or .detach()), so that training can backpropagate through it.")
    if g is None or (isinstance(g, Value) and g.value is None):
        raise Fail(f"{label}: no gradient reached the logits. Build the loss from torch "
                   "operations on the logits you were given (no .detach(), NumPy or new tensors).")
    ga = as_array(g, "the gradient")
    zn, yn = z.numpy(), y.numpy()
    ref_g = (np.exp(_log_softmax(zn)) - _targets(yn, zn.shape[1], eps)) / len(yn)
    if not close(ga, ref_g, rtol=1e-5, atol=1e-7):
        raise Fail(f"{label}: the gradient with respect to the logits is wrong (largest "
                   f"difference {max_err(ga, ref_g):.3g}); it should be (softmax - q) / N.")
    return None


exercise("ex5.2", "label_smoothing_cross_entropy", probe_ce, judge_ce)

# ------------------------------------------------------------------ ex5.3

def _edge_free(probs: torch.Tensor, bins: tuple, margin: float) -> torch.Tensor:
    """Rows whose confidence lies within ``margin`` of an inner bin edge for any bin count."""
    conf = probs.double().max(dim=1).values
    bad = torch.zeros(len(conf), dtype=torch.bool)
    for nb in bins:
        s = conf * nb
        dist = (s - s.round()).abs()
        inner = (s.round() > 0) & (s.round() < nb)
        bad |= inner & (dist < margin * nb)
    return bad


def _calib_probs(n, k, g, wiggle, dtype, bins, n_one=0, n_one_wrong=0):
    """Model-like probabilities, and labels that are right with probability
    ``confidence + wiggle * sin(2 pi confidence)``: under-confident bins below 0.5, over-confident
    ones above, so bins do not all err in one direction. Confidences stay off inner bin edges."""
    logits = torch.randn(n, k, generator=g, dtype=torch.float64) * 2.5
    for _ in range(50):
        probs = torch.softmax(logits, dim=1).to(dtype)
        bad = _edge_free(probs, bins, 1e-4)
        if not bad.any():
            break
        logits[bad] = torch.randn(int(bad.sum()), k, generator=g, dtype=torch.float64) * 2.5
    probs = torch.softmax(logits, dim=1).to(dtype)
    assert not _edge_free(probs, bins, 1e-4).any()
    conf, pred = probs.double().max(dim=1)
    p_right = (conf + wiggle * torch.sin(2 * math.pi * conf)).clamp(0.0, 1.0)
    right = torch.rand(n, generator=g, dtype=torch.float64) < p_right
    other = (pred + torch.randint(1, k, (n,), generator=g)) % k
    y = torch.where(right, pred, other)
    if n_one:
        cls = torch.randint(0, k, (n_one,), generator=g)
        probs[:n_one] = torch.nn.functional.one_hot(cls, k).to(dtype)
        y[:n_one] = cls
        y[:n_one_wrong] = (cls[:n_one_wrong] + 1) % k
    return probs, y


def _ece_cases():
    """Fresh copies of the fixed cases (built once: the edge-free sampling takes a moment)."""
    return [(label, p.clone(), y.clone(), nb) for label, p, y, nb in _ece_cases_built()]


@functools.lru_cache(maxsize=1)
def _ece_cases_built():
    g = torch.Generator().manual_seed(503)
    bins = (5, 10, 14, 15, 16, 20)
    p1, y1 = _calib_probs(500, 10, g, 0.25, torch.float64, bins, n_one=25, n_one_wrong=6)
    p2, y2 = _calib_probs(300, 3, g, 0.4, torch.float32, bins, n_one=12, n_one_wrong=4)
    p3, y3 = _calib_probs(200, 10, g, -0.2, torch.float64, bins)
    p4 = torch.nn.functional.one_hot(torch.arange(20) % 10, 10).double()
    y4 = torch.arange(20) % 10
    p5, y5 = _calib_probs(40, 3, g, 0.2, torch.float64, bins, n_one=10, n_one_wrong=10)
    return [
        ("500 samples, K=10, float64, default n_bins (25 with confidence exactly 1.0)", p1, y1, None),
        ("300 samples, K=3, float32, n_bins=10 (12 with confidence 1.0)", p2, y2, 10),
        ("200 samples, K=10, n_bins=5", p3, y3, 5),
        ("20 one-hot predictions, all right (ECE 0), n_bins=15", p4, y4, 15),
        ("40 samples, K=3, n_bins=20 (10 wrong with confidence 1.0)", p5, y5, 20),
    ]


def probe_ece(expected_calibration_error):
    out = []
    for _, p, y, nb in _ece_cases():
        pin, yin = p.clone(), y.clone()
        args = (pin, yin) if nb is None else (pin, yin, nb)
        out.append({"result": capture(expected_calibration_error, *args),
                    "input_changed": bool(not (torch.equal(pin, p) and torch.equal(yin, y)))})
    return out


def _ece_parts(conf, correct, n_bins, drop_one=False):
    """Per-bin (count, mean accuracy, mean confidence) with (lo, hi] bins; conf 0 goes to bin 0."""
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    keep = np.ones(len(conf), dtype=bool)
    if drop_one:
        keep &= conf < 1.0
    parts = []
    for b in range(n_bins):
        m = keep & (idx == b)
        if m.any():
            parts.append((int(m.sum()), float(correct[m].mean()), float(conf[m].mean())))
    return parts


def _ece_value(conf, correct, n_bins, n_total=None, **kw):
    parts = _ece_parts(conf, correct, n_bins, **kw)
    n_total = n_total if n_total is not None else len(conf)
    return float(sum(c / n_total * abs(a - f) for c, a, f in parts))


def _ece_mistakes(probs, y, n_bins):
    conf = probs.max(axis=1)
    pred = probs.argmax(axis=1)
    correct = (pred == y).astype(float)
    parts = _ece_parts(conf, correct, n_bins)
    out = []
    if parts:
        out.append(("you averaged |accuracy - confidence| over the bins without weighting them. "
                    "Weight each bin by its share of the samples, |B_b| / N: a bin with 2 "
                    "samples must count less than one with 200",
                    float(np.mean([abs(a - f) for _, a, f in parts]))))
        out.append(("you averaged |accuracy - confidence| over all bins (empty ones as 0) "
                    "without weighting them by their share of the samples |B_b| / N",
                    float(sum(abs(a - f) for _, a, f in parts) / n_bins)))
        out.append(("you dropped |.| : a bin where accuracy exceeds confidence must not cancel one "
                    "where it falls short. Use |acc_b - conf_b|",
                    float(sum(c / len(conf) * (a - f) for c, a, f in parts))))
        out.append(("you dropped |.| : a bin where accuracy exceeds confidence must not cancel one "
                    "where it falls short. Use |acc_b - conf_b|",
                    float(sum(c / len(conf) * (f - a) for c, a, f in parts))))
    ptrue = probs[np.arange(len(y)), y]
    out.append(("you used the probability of the *true* class as the confidence. The "
                "confidence is the model's probability for its *predicted* class, the maximum "
                "probability of each row", _ece_value(ptrue, correct, n_bins)))
    if (conf >= 1.0).any():
        why = ("samples with confidence exactly 1.0 fell out of every bin. Every sample must land "
               "in exactly one bin: with [lo, hi) bins put conf = 1.0 into the last bin "
               "(clip the bin index to n_bins - 1), or use (lo, hi] bins")
        out.append((why, _ece_value(conf, correct, n_bins, drop_one=True)))
        kept = int((conf < 1.0).sum())
        if kept:
            out.append((why, _ece_value(conf, correct, n_bins, n_total=kept, drop_one=True)))
    for wrong in sorted({n_bins - 1, n_bins + 1, 10, 15} - {n_bins}):
        if wrong < 1:
            continue
        out.append((f"this is the ECE with {wrong} bins, expected {n_bins} equal-width bins on "
                    "[0, 1] (n_bins bins need n_bins + 1 edges: torch.linspace(0, 1, n_bins + 1)); "
                    "the default is n_bins=15",
                    _ece_value(conf, correct, wrong)))
    ref = _ece_value(conf, correct, n_bins)
    out.append(("this is the ECE in percent; return a fraction between 0 and 1", 100 * ref))
    return out


def judge_ece(data):
    for (label, p, y, nb), got in zip(_ece_cases(), data, strict=True):
        n_bins = 15 if nb is None else nb
        probs = p.double().numpy()
        yn = y.numpy()
        conf = probs.max(axis=1)
        correct = (probs.argmax(axis=1) == yn).astype(float)
        ref = _ece_value(conf, correct, n_bins)
        v = as_float(got["result"], "expected_calibration_error(probs, y, n_bins)")
        tol = 1e-5 if p.dtype == torch.float32 else 1e-7
        if math.isfinite(v) and abs(v - ref) <= tol:
            if got["input_changed"]:
                raise Fail(f"{label}: your function changed its inputs (probs or y) in place; "
                           "work on copies.")
            continue
        if not math.isfinite(v):
            raise Fail(f"{label}: got {v}, expected {ref:.6g}. Skip empty bins (0/0 is NaN): "
                       "they contribute nothing.")
        for why, alt in _ece_mistakes(probs, yn, n_bins):
            if abs(v - alt) <= tol:
                raise Fail(f"{label}: got {v:.6g}, expected {ref:.6g}: {why}.")
        raise Fail(f"{label}: got {v:.6g}, expected {ref:.6g}. ECE = sum over bins of "
                   "(|B_b| / N) * |acc_b - conf_b|, with confidence = max probability, accuracy = "
                   "argmax == y, n_bins equal-width bins on [0, 1] and every sample in exactly one bin.")
    return None


exercise("ex5.3", "expected_calibration_error", probe_ece, judge_ece)

# ------------------------------------------------------------------ ex5.4

def _gap_cases():
    return [("K=10, eps=0.1", 10, 0.1), ("K=3, eps=0.1", 3, 0.1), ("K=5, eps=0.25", 5, 0.25),
            ("K=100, eps=0.01", 100, 0.01), ("K=2, eps=0.3", 2, 0.3)]


def probe_gap(optimal_logit_gap):
    return [{"result": capture(optimal_logit_gap, k, eps)} for _, k, eps in _gap_cases()]


def judge_gap(data):
    for (label, k, eps), got in zip(_gap_cases(), data, strict=True):
        ref = math.log((1 - eps + eps / k) / (eps / k))
        v = as_float(got["result"], "optimal_logit_gap(num_classes, eps)")
        if math.isfinite(v) and abs(v - ref) <= 1e-9 * max(1.0, abs(ref)):
            continue
        alts = [
            ("you used the eps/(K-1) targets; with torch's definition the true class has "
             "probability 1 - eps + eps/K and every other class eps/K",
             math.log((1 - eps) * (k - 1) / eps) if k > 1 else float("nan")),
            ("the true class's target is 1 - eps + eps/K, not 1 - eps",
             math.log((1 - eps) / (eps / k))),
            ("this is the ratio of the two target probabilities; the gap between logits is its "
             "natural log", (1 - eps + eps / k) / (eps / k)),
            ("use the natural log (softmax uses exp)", math.log10((1 - eps + eps / k) / (eps / k))),
        ]
        for why, alt in alts:
            if math.isfinite(alt) and abs(v - alt) <= 1e-9 * max(1.0, abs(alt)):
                raise Fail(f"{label}: got {v:.6g}, expected {ref:.6g}: {why}.")
        raise Fail(f"{label}: got {v:.6g}, expected {ref:.6g}. The smoothed loss is smallest when "
                   "softmax(z) equals the target q, so exp(z_true - z_other) = q_true / q_other.")
    return None


exercise("ex5.4", "optimal_logit_gap", probe_gap, judge_gap)
