"""Checks for lesson 05 (label smoothing and calibration).

- ex5.1 ``smooth_targets(y, num_classes, eps)``: ``(N, K)`` soft targets of torch's label smoothing.
- ex5.2 ``label_smoothing_cross_entropy(logits, y, eps)``: batch mean, equal to
  ``F.cross_entropy(logits, y, label_smoothing=eps)``, finite for logits of +-1000, written
  without ``label_smoothing=`` (a call of ``F.cross_entropy`` / ``nn.CrossEntropyLoss`` with a
  nonzero ``label_smoothing`` is refused; plain cross-entropy inside an answer is fine).
- ex5.3 ``expected_calibration_error(probs, y, n_bins=15)``: confidence = max probability,
  equal-width bins on [0, 1], each bin weighted by its share of the samples; the course's
  helpers that compute it (``helpers.plots.calibration_bins`` and the plots built on it) are
  refused.
- ex5.4 ``fit_temperature(logits, y)``: a float ``T > 0`` minimising the mean NLL of
  ``softmax(logits / T)``; judged by the NLL it reaches: within ``NLL_TOL = 1e-6`` (absolute,
  in nats; the cases' minimal NLLs lie between about 0.1 and 2, so this is also about 1e-6
  relative) of the minimum, which the judge finds in float64 by bisection on the derivative of
  the NLL in ``beta = 1/T`` (the NLL is convex in beta). Every case's best ``T`` lies in
  [0.05, 20]. ``helpers.plots.calibrate_temperature`` (the lesson's hidden fitter) is refused.

Every probe and judge builds its inputs from the case seed (``case_rng(seed, salt)``): shapes
and edge cases (eps = 0, confidences of exactly 1.0, +-1000 logits, confidently wrong samples)
are fixed, values vary with the seed. Float answers (a Python float, a NumPy float, a 0-d
tensor) are all accepted and judged at float32-level precision, so an answer computed in
float32 passes. None of these checks is statistical: a correct answer passes at every seed.

Use of a refused library call is found by core while the learner's code runs (it recognises
the refused functions by what is called, so an alias such as ``from helpers.plots import
calibration_bins`` is seen too): the names in ``forbid``, and for ex5.2 ``F.cross_entropy`` when
its arguments make it the whole answer (``watch_if``: a nonzero ``label_smoothing``, or
probability targets; ``nn.CrossEntropyLoss`` calls it too). The judge fails such an answer with
the exercise's library message.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from helpers.checks.core import (Fail, Raised, Value, as_array, as_float, capture, case_rng,
                                 changed, close, exercise, expect_array, get, match_mistake,
                                 max_err, snapshot)

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


def _kind(v) -> str:
    return v.kind if isinstance(v, Value) else type(v).__name__


def _torch_seed(rng) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng.integers(2**31)))


# ------------------------------------------------------------------ refused calls

_CE = "torch.nn.functional.cross_entropy(label_smoothing=...)"
_CE_SOFT = "torch.nn.functional.cross_entropy with probability targets"


def _ce_refused(args: dict) -> str | None:
    """Given the arguments of a ``F.cross_entropy`` call, the name to refuse it under, or None:
    a nonzero ``label_smoothing`` or probability (soft) targets make it ex5.2 in one call."""
    try:
        smoothing = float(args.get("label_smoothing", 0.0) or 0.0)
    except (TypeError, ValueError):
        smoothing = 1.0
    if smoothing != 0.0:
        return _CE
    target = args.get("target")
    if isinstance(target, torch.Tensor) and target.is_floating_point():
        return _CE_SOFT
    return None


def _raised(res: Raised, context: str) -> None:
    """A learner error with the case it happened on; the stub keeps core's "still the stub" note."""
    if str(res).startswith("NotImplementedError"):
        raise res
    raise Fail(f"{context}: your code raised {res}.")


# ------------------------------------------------------------------ ex5.1

def _targets_cases(seed):
    rng = case_rng(seed, 5101)

    def eps_():
        return float(np.round(rng.uniform(0.05, 0.35), 3))

    def labels(n, hi):
        return torch.from_numpy(rng.integers(0, hi, n)).long()

    y1 = labels(5, 3)
    y1[:3] = torch.tensor([2, 0, 1])            # every class present
    y5 = labels(3, 2)                           # label 2 absent
    y5[0] = 1
    return [
        ("K=3, 5 labels", y1, 3, eps_()),
        ("K=10, 7 labels", labels(7, 10), 10, eps_()),
        ("K=10, labels only 0..2 (K comes from num_classes, not from y)", labels(6, 3), 10, eps_()),
        ("K=4, eps=0 (plain one-hot)", labels(3, 4), 4, 0.0),
        ("K=3, label 2 absent", y5, 3, eps_()),
        ("one label, K=5", labels(1, 5), 5, eps_()),
    ]


def probe_targets(smooth_targets, seed):
    out = []
    for _, y, k, eps in _targets_cases(seed):
        before = snapshot(y)
        yin = y.clone()
        out.append({"result": capture(smooth_targets, yin, k, eps),
                    "input_changed": changed(before, yin)})
    return out


def _targets_mistakes(oh, k, eps):
    if eps == 0:
        return []
    return [
        ((1 - eps) * oh + eps / (k - 1) * (1 - oh) if k > 1 else None,
         "you spread eps over the K-1 *other* classes (eps/(K-1), e.g. [0.05, 0.9, 0.05] for "
         "K=3, eps=0.1). That is not the definition torch and Szegedy et al. use: eps is spread "
         "uniformly over *all* K classes, the true class included."),
        ((1 - eps) * oh, "the other classes get 0, so each row sums to 1 - eps: the uniform "
         "share of eps is missing, and it goes to every class."),
        ((1 - eps) * oh + eps, "you added eps itself to every class, so rows sum to more than 1: "
         "eps is shared among the K classes."),
        (eps * oh + (1 - eps) / k, "eps and 1 - eps are swapped: which part, the one-hot or the "
         "uniform one, should keep most of the weight?"),
        (oh, "got plain one-hot targets; eps was not applied."),
    ]


def judge_targets(data, seed):
    for (label, y, k, eps), got in zip(_targets_cases(seed), data, strict=True):
        label = f"{label}, eps={eps}"
        yn = y.numpy()
        n = len(yn)
        ref = _targets(yn, k, eps)
        res = got["result"]
        if isinstance(res, Raised):
            _raised(res, f"{label} (y of shape {tuple(y.shape)}, num_classes={k})")
        if not (isinstance(res, Value) and res.kind == "torch"):
            raise Fail(f"{label}: got {_kind(res)}; return a torch tensor (the loss in ex5.2 "
                       "combines it with log_softmax of a tensor).")
        if not str(res.dtype).startswith(("float", "bfloat")):
            raise Fail(f"{label}: your targets are {res.dtype}, an integer type: soft targets are "
                       "probabilities between 0 and 1, so they need a floating dtype (a cast "
                       "such as .long() or .int() rounds every eps/K share down to 0).")
        a = as_array(res, "smooth_targets(y, num_classes, eps)")
        if a.shape != ref.shape:
            if a.shape == (k, n):
                raise Fail(f"{label}: got shape {a.shape}, expected (N, K) = {ref.shape}: one row "
                           "per sample, one column per class (transpose your result).")
            if a.ndim == 2 and a.shape[0] == n and a.shape[1] == int(yn.max()) + 1:
                raise Fail(f"{label}: got shape {a.shape}, expected (N, K) = {ref.shape}. The "
                           "number of classes must come from num_classes: F.one_hot(y) alone "
                           "guesses K from the largest label (pass num_classes=...).")
            raise Fail(f"{label}: got shape {a.shape}, expected (N, num_classes) = {ref.shape}.")
        if not close(a, ref, rtol=1e-6, atol=2e-7):
            row = f" Row 0: got {_fmt_row(a[0])}."
            match_mistake(label, a, [(v, h + row) for v, h in _targets_mistakes(_one_hot(yn, k), k, eps)],
                          rtol=1e-6, atol=2e-7)
            sums = a.sum(axis=1)
            extra = "" if np.allclose(sums, 1.0, atol=1e-6) else \
                f" Your rows sum to {_fmt_row(sums[:3])}..., but targets are probabilities: each row sums to 1."
            raise Fail(f"{label}: wrong values (largest difference {max_err(a, ref):.3g}). The true "
                       f"class keeps most of the weight and eps is shared uniformly among all K "
                       f"classes.{row}{extra}")
        if got["input_changed"]:
            raise Fail(f"{label}: your function changed the label tensor y; work on a copy.")
    return None


exercise("ex5.1", "smooth_targets", probe_targets, judge_targets)

# ------------------------------------------------------------------ ex5.2

CE_HINT = ("build the soft targets of ex5.1 and the log-probabilities from torch.log_softmax, "
           "then take the cross-entropy between them. F.cross_entropy with integer labels, or F.nll_loss, "
           "may be part of it (no label_smoothing, no probability targets).")


def _ce_cases(seed):
    rng = case_rng(seed, 5201)

    def z(n, k, scale, dtype):
        return torch.from_numpy(rng.standard_normal((n, k)) * scale).to(dtype)

    def labels(n, k):
        return torch.from_numpy(rng.integers(0, k, n)).long()

    def eps_(lo=0.05, hi=0.2):
        return float(np.round(rng.uniform(lo, hi), 3))

    signs = rng.integers(-1, 2, (4, 3)).astype(np.float64)
    signs[:, 0] = 1.0
    signs[np.arange(4), 1 + np.arange(4) % 2] = -1.0        # gaps of 2000 in every row
    big64 = torch.from_numpy(signs * 1000.0 + rng.standard_normal((4, 3)))
    ybig64 = torch.from_numpy(rng.integers(1, 3, 4)).long()  # the true class is never the top one
    signs32 = rng.integers(-1, 2, (6, 10)).astype(np.float64)
    signs32[:, 0], signs32[:, 1] = 1.0, -1.0
    big32 = torch.from_numpy(signs32 * 1000.0 + rng.standard_normal((6, 10))).float()
    ybig32 = torch.from_numpy(rng.integers(1, 10, 6)).long()
    return [
        ("6 samples, K=3, float64", z(6, 3, 2.0, torch.float64), labels(6, 3), eps_()),
        ("8 samples, K=10, float64", z(8, 10, 3.0, torch.float64), labels(8, 10), eps_()),
        ("8 samples, K=10, float32", z(8, 10, 2.5, torch.float32), labels(8, 10), eps_(0.2, 0.3)),
        ("eps=0 (plain cross-entropy), 5 samples, K=10", z(5, 10, 2.0, torch.float64),
         labels(5, 10), 0.0),
        ("large logits (+-1000), K=3, float64", big64, ybig64, eps_()),
        ("large logits (+-1000), K=10, float32", big32, ybig32, eps_()),
    ]


def _grad_case(seed):
    rng = case_rng(seed, 5202)
    z = torch.from_numpy(rng.standard_normal((5, 4)) * 2.0)
    y = torch.from_numpy(rng.integers(0, 4, 5)).long()
    return "gradient, 5 samples, K=4, float64", z, y, float(np.round(rng.uniform(0.1, 0.3), 3))


def _grad_of(fn, logits, y, eps):
    x = logits.clone().requires_grad_(True)
    loss = fn(x, y.clone(), eps)
    loss.backward()
    return x.grad


def probe_ce(label_smoothing_cross_entropy, seed):
    fn = label_smoothing_cross_entropy
    out = []
    for _, z, y, eps in _ce_cases(seed):
        before = snapshot(z, y)
        zin, yin = z.clone(), y.clone()
        out.append({"result": capture(fn, zin, yin, eps), "input_changed": changed(before, zin, yin)})
    _, z, y, eps = _grad_case(seed)
    grad = capture(_grad_of, fn, z, y, eps)
    return {"cases": out, "grad": grad}


def _ref_ce(z: np.ndarray, y: np.ndarray, eps: float) -> float:
    k = z.shape[1]
    return float(-(_targets(y, k, eps) * _log_softmax(z)).sum(axis=1).mean())


def _ce_mistakes(z, y, eps):
    """(value, hint) of the common mistakes on one case."""
    n, k = z.shape
    logp = _log_softmax(z)
    oh = _one_hot(y, k)
    nll = -(oh * logp).sum(axis=1)
    ref_rows = -(_targets(y, k, eps) * logp).sum(axis=1)
    p = np.exp(logp)
    out = []
    if k > 1 and eps > 0:
        q_wrong = (1 - eps) * oh + eps / (k - 1) * (1 - oh)
        out.append((float(-(q_wrong * logp).sum(axis=1).mean()),
                    "you smoothed with eps/(K-1) on the other classes (e.g. [0.05, 0.9, 0.05]). "
                    "torch's label_smoothing and Szegedy et al. spread eps over all K classes, "
                    "the true class included"))
        out.append((float((1 - eps) * nll.mean()),
                    "you weighted the true class's term by 1 - eps but the eps/K part of the "
                    "targets is missing: every class, not only the true one, has a nonzero target"))
        out.append((float(-np.log((1 - eps) * p[np.arange(n), y] + eps / k).mean()),
                    "you smoothed the predictions instead of the targets. Label smoothing changes "
                    "the *targets*; the model's log-probabilities stay those of the logits"))
        out.append((float(nll.mean()), "eps was ignored: this is the plain cross-entropy"))
        out.append((float(((1 - eps) * nll - eps * logp.sum(axis=1)).mean()),
                    "the uniform part got weight eps per class instead of eps shared among the "
                    "K classes (a sum over classes where a mean belongs)"))
    if n > 1:
        out.append((float(ref_rows.sum()), f"this is the *sum* over the {n} samples; return the "
                    "mean over the batch (as F.cross_entropy does by default)"))
    if k > 1:
        out.append((float(ref_rows.mean() / k), f"you averaged over all N*K entries (divided by "
                    f"K = {k} too); sum over the classes, then average over the samples"))
    return out


_OVERFLOW = ("log(softmax(z)) underflows to log(0) = -inf when logits differ by hundreds, and "
             "exp(1000) overflows to inf. Compute the log-probabilities in one stable step "
             "(torch.log_softmax, or the log-sum-exp trick with the row maximum) so the loss "
             "stays finite")


def _ce_tol(ref: float) -> float:
    """float32-level: an answer computed in float32 passes, every mistake is far outside."""
    return 2e-5 * max(1.0, abs(ref))


def judge_ce(data, seed):
    for (label, z, y, eps), got in zip(_ce_cases(seed), data["cases"], strict=True):
        label = f"{label}, eps={eps}"
        zn = z.double().numpy()
        yn = y.numpy()
        n, k = zn.shape
        ref = _ref_ce(zn, yn, eps)
        res = got["result"]
        if isinstance(res, Raised):
            _raised(res, f"{label} (logits of shape {tuple(z.shape)}, {str(z.dtype)[6:]})")
        a = as_array(res, "label_smoothing_cross_entropy(logits, y, eps)")
        if a.size == n and n > 1:
            raise Fail(f"{label}: got {a.size} values (one loss per sample); return one number, "
                       "the mean over the batch.")
        if a.size == n * k:
            raise Fail(f"{label}: got an array of shape {a.shape}; sum over the classes and "
                       "average over the samples to get one number.")
        if isinstance(res, Value) and res.kind == "torch":
            expect_array(res, f"{label}: your loss", dtype=str(z.dtype).removeprefix("torch."))
        v = as_float(res, "label_smoothing_cross_entropy(logits, y, eps)")
        large = "large logits" in label
        if not math.isfinite(v):
            if large:
                raise Fail(f"{label}: got {v}, expected a finite loss ({ref:.6g}). {_OVERFLOW}.")
            raise Fail(f"{label}: got {v}, expected {ref:.6g}; your loss is not finite.")
        tol = _ce_tol(ref)
        if abs(v - ref) <= tol:
            if got["input_changed"]:
                raise Fail(f"{label}: your function changed its inputs (logits or y) in place; "
                           "work on copies.")
            continue
        for alt, why in _ce_mistakes(zn, yn, eps):
            if abs(v - alt) <= _ce_tol(alt):
                raise Fail(f"{label}: got {v:.6g}, expected {ref:.6g}: {why}.")
        if large:
            raise Fail(f"{label}: got {v:.6g}, expected {ref:.6g}. The small-logit cases were "
                       "right, so the large logits lose precision: clamping probabilities or "
                       f"adding a small constant inside log changes the value. {_OVERFLOW}.")
        raise Fail(f"{label}: got {v:.6g}, expected {ref:.6g} (what F.cross_entropy with "
                   "label_smoothing=eps gives). Compare your soft targets with ex5.1's and check "
                   "that every class's log-probability enters with its target weight.")
    _judge_ce_grad(data["grad"], seed)
    return None


def _judge_ce_grad(g, seed):
    label, z, y, eps = _grad_case(seed)
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
    if not close(ga, ref_g, rtol=1e-4, atol=1e-6):
        raise Fail(f"{label}: the gradient with respect to the logits is wrong (largest "
                   f"difference {max_err(ga, ref_g):.3g}) although the loss values were right: "
                   "is part of the loss computed outside autograd (a constant, .detach(), NumPy)?")


exercise("ex5.2", "label_smoothing_cross_entropy", probe_ce, judge_ce,
         forbid_hint=CE_HINT, source_words=("label_smoothing",),
         watch_if=(("torch.nn.functional.cross_entropy", _ce_refused),))

# ------------------------------------------------------------------ ex5.3

ECE_HELPERS = ("helpers.plots.calibration_bins", "helpers.plots.reliability_diagram",
               "helpers.plots.reliability_with_counts")
ECE_HINT = ("take each row's confidence and prediction, sort the confidences into n_bins "
            "equal-width bins, and compare accuracy with confidence inside each bin.")
ECE_TOL = 1e-5           # float32-level; every mistake the judge names differs by far more
BIN_RANGE = range(2, 41)  # bin counts the judge can recognise


def _edge_near(conf: np.ndarray, bins, margin: float) -> np.ndarray:
    """Rows whose confidence lies within ``margin`` of an inner bin edge for any bin count."""
    bad = np.zeros(len(conf), dtype=bool)
    for nb in bins:
        s = conf * nb
        r = np.round(s)
        bad |= (r > 0) & (r < nb) & (np.abs(s - r) < margin * nb)
    return bad


def _calib_probs(n, k, g, wiggle, dtype, bins, n_one=0, n_one_wrong=0, phase=0.0):
    """Model-like probabilities, and labels that are right with probability
    ``confidence + wiggle * sin(2 pi (3.3 confidence + phase))``: under- and over-confident
    stretches alternate at places no bin grid shares, so bins do not all err in one direction
    and the ECEs of different bin counts differ. Confidences stay off inner bin edges."""
    logits = torch.randn(n, k, generator=g, dtype=torch.float64) * 2.5
    for _ in range(200):
        probs = torch.softmax(logits, dim=1).to(dtype)
        bad = torch.from_numpy(_edge_near(probs.double().max(dim=1).values.numpy(), bins, 1e-4))
        if not bad.any():
            break
        logits[bad] = torch.randn(int(bad.sum()), k, generator=g, dtype=torch.float64) * 2.5
    probs = torch.softmax(logits, dim=1).to(dtype)
    assert not _edge_near(probs.double().max(dim=1).values.numpy(), bins, 1e-4).any()
    conf, pred = probs.double().max(dim=1)
    p_right = (conf + wiggle * torch.sin(2 * math.pi * (3.3 * conf + phase))).clamp(0.0, 1.0)
    right = torch.rand(n, generator=g, dtype=torch.float64) < p_right
    other = (pred + torch.randint(1, k, (n,), generator=g)) % k
    y = torch.where(right, pred, other)
    if n_one:
        cls = torch.randint(0, k, (n_one,), generator=g)
        probs[:n_one] = F.one_hot(cls, k).to(dtype)
        y[:n_one] = cls
        y[:n_one_wrong] = (cls[:n_one_wrong] + 1) % k
    return probs, y


def _bins_distinct(probs, y, n_bins) -> bool:
    """True when the ECE with ``n_bins`` differs from that with every other count in BIN_RANGE, so
    that a wrong bin count fails, and from every other mistake the judge names. (Two *other* counts may agree: the ECE with ``b`` bins equals the
    one with ``2b`` when both halves of every bin err the same way; the hint then names both.)"""
    conf, correct = _conf_correct(probs.double().numpy(), y.numpy())
    vals = np.array([_ece_value(conf, correct, b) for b in BIN_RANGE])
    ref = _ece_value(conf, correct, n_bins)
    others = np.array([v for b, v in zip(BIN_RANGE, vals) if b != n_bins])
    mistakes = np.array([v for v, _ in _ece_mistakes(probs.double().numpy(), y.numpy(), n_bins)])
    return bool(np.all(np.abs(others - ref) >= 20 * ECE_TOL)
                and np.all(np.abs(mistakes - ref) >= 20 * ECE_TOL))


def _ece_cases(seed):
    """Fresh copies of the seed's cases (built once per seed: the edge-free sampling takes a moment)."""
    return [(label, p.clone(), y.clone(), nb) for label, p, y, nb in _ece_cases_built(int(seed))]


@functools.lru_cache(maxsize=4)
def _ece_cases_built(seed):
    rng = case_rng(seed, 5301)
    g = _torch_seed(rng)
    bins = (5, 9, 10, 11, 14, 15, 16, 19, 20, 21)

    def draw(n, k, wiggle, dtype, nb, **kw):
        for _ in range(200):
            p, y = _calib_probs(n, k, g, wiggle * rng.uniform(0.8, 1.2), dtype, bins,
                                phase=rng.uniform(0.0, 1.0), **kw)
            if _bins_distinct(p, y, nb):
                return p, y
        raise RuntimeError("no case with distinct ECEs per bin count")  # never seen

    p1, y1 = draw(500, 10, 0.25, torch.float64, 15, n_one=25, n_one_wrong=6)
    p2, y2 = draw(300, 3, 0.4, torch.float32, 10, n_one=12, n_one_wrong=4)
    p3, y3 = draw(200, 10, -0.2, torch.float64, 5)
    p4 = F.one_hot(torch.arange(20) % 10, 10).double()
    y4 = torch.arange(20) % 10
    p5, y5 = draw(40, 3, 0.2, torch.float64, 20, n_one=10, n_one_wrong=10)
    return [
        ("500 samples, K=10, float64, default n_bins (25 with confidence exactly 1.0)", p1, y1, None),
        ("300 samples, K=3, float32, n_bins=10 (12 with confidence 1.0)", p2, y2, 10),
        ("200 samples, K=10, n_bins=5", p3, y3, 5),
        ("20 one-hot predictions, all right (ECE 0), n_bins=15", p4, y4, 15),
        ("40 samples, K=3, n_bins=20 (10 wrong with confidence 1.0)", p5, y5, 20),
    ]


def probe_ece(expected_calibration_error, seed):
    out = []
    for _, p, y, nb in _ece_cases(seed):
        before = snapshot(p, y)
        pin, yin = p.clone(), y.clone()
        args = (pin, yin) if nb is None else (pin, yin, nb)
        out.append({"result": capture(expected_calibration_error, *args),
                    "input_changed": changed(before, pin, yin)})
    return {"cases": out}


def _conf_correct(probs, y):
    return probs.max(axis=1), (probs.argmax(axis=1) == y).astype(float)


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
    """(value, hint) of the common mistakes other than a wrong bin count."""
    conf, correct = _conf_correct(probs, y)
    parts = _ece_parts(conf, correct, n_bins)
    n = len(conf)
    out = []
    if parts:
        out.append((float(np.mean([abs(a - f) for _, a, f in parts])),
                    "you averaged the bins' gaps without weighting them: a bin with 2 samples "
                    "must count less than one with 200"))
        out.append((float(sum(abs(a - f) for _, a, f in parts) / n_bins),
                    "you averaged the gaps over all bins (empty ones as 0) without weighting "
                    "each bin by its share of the samples"))
        why = ("you dropped the absolute value: a bin where accuracy exceeds confidence must not "
               "cancel one where it falls short")
        out.append((float(sum(c / n * (a - f) for c, a, f in parts)), why))
        out.append((float(sum(c / n * (f - a) for c, a, f in parts)), why))
    ptrue = probs[np.arange(len(y)), y]
    out.append((_ece_value(ptrue, correct, n_bins),
                "you used the probability of the *true* class as the confidence. The confidence "
                "is the model's probability for its *predicted* class"))
    if (conf >= 1.0).any():
        why = ("samples with confidence exactly 1.0 fell out of every bin. Every sample must land "
               "in exactly one bin: where does your last bin end, and is its right edge included?")
        out.append((_ece_value(conf, correct, n_bins, drop_one=True), why))
        kept = int((conf < 1.0).sum())
        if kept:
            out.append((_ece_value(conf, correct, n_bins, n_total=kept, drop_one=True), why))
    out.append((100 * _ece_value(conf, correct, n_bins),
                "this is the ECE in percent; return a fraction between 0 and 1"))
    return out


def _bin_count_hint(v, conf, correct, n_bins) -> str | None:
    """A hint naming the bin counts whose ECE ``v`` equals (every one that matches, so a learner
    who used 14 bins is never told 10), or None when none matches."""
    matches = [b for b in BIN_RANGE
               if b != n_bins and abs(v - _ece_value(conf, correct, b)) <= ECE_TOL]
    if not matches or len(matches) > 3:
        return None
    which = " or ".join(str(b) for b in matches)
    more = (" (n_bins bins need n_bins + 1 edges)" if n_bins - 1 in matches else "")
    return (f"this is the ECE with {which} bins, not with the {n_bins} bins asked for{more}; "
            "use the n_bins argument (its default is 15)")


def judge_ece(data, seed):
    for (label, p, y, nb), got in zip(_ece_cases(seed), data["cases"], strict=True):
        n_bins = 15 if nb is None else nb
        probs = p.double().numpy()
        yn = y.numpy()
        conf, correct = _conf_correct(probs, yn)
        ref = _ece_value(conf, correct, n_bins)
        res = got["result"]
        if isinstance(res, Raised):
            _raised(res, f"{label} (probs of shape {tuple(p.shape)}, {str(p.dtype)[6:]})")
        if isinstance(res, Value) and res.kind in ("torch", "numpy") and \
                not str(res.dtype).startswith(("float", "bfloat")):
            raise Fail(f"{label}: your ECE is {res.dtype}, an integer type: the ECE is a fraction "
                       "between 0 and 1 (an integer division or cast rounds it).")
        v = as_float(res, "expected_calibration_error(probs, y, n_bins)")
        if math.isfinite(v) and abs(v - ref) <= ECE_TOL:
            if got["input_changed"]:
                raise Fail(f"{label}: your function changed its inputs (probs or y) in place; "
                           "work on copies.")
            continue
        if not math.isfinite(v):
            raise Fail(f"{label}: got {v}, expected {ref:.6g}. Skip empty bins (0/0 is NaN): "
                       "they contribute nothing.")
        for alt, why in _ece_mistakes(probs, yn, n_bins):
            if abs(v - alt) <= ECE_TOL:
                raise Fail(f"{label}: got {v:.6g}, expected {ref:.6g}: {why}.")
        bins_hint = _bin_count_hint(v, conf, correct, n_bins)
        if bins_hint:
            raise Fail(f"{label}: got {v:.6g}, expected {ref:.6g}: {bins_hint}.")
        raise Fail(f"{label}: got {v:.6g}, expected {ref:.6g}. Check the three ingredients: "
                   "confidence and correctness per sample, which bin each sample lands in "
                   "(equal widths on [0, 1], every sample in exactly one), and how the bins "
                   "are weighted.")
    return None


exercise("ex5.3", "expected_calibration_error", probe_ece, judge_ece,
         forbid=ECE_HELPERS, forbid_hint=ECE_HINT)

# ------------------------------------------------------------------ ex5.4

NLL_TOL = 1e-6
T_HELPERS = ("helpers.plots.calibrate_temperature",)
T_HINT = ("minimise the mean NLL of the temperature-scaled softmax over the one number T "
          "yourself (any 1-D search or optimiser works; the NLL is convex in 1/T).")


def _nll(z: np.ndarray, y: np.ndarray, beta: float) -> float:
    """Mean NLL of softmax(beta * z), float64, stable for any beta >= 0."""
    s = beta * z
    m = s.max(axis=1)
    lse = m + np.log(np.exp(s - m[:, None]).sum(axis=1))
    return float(np.mean(lse - s[np.arange(len(y)), y]))


def _dnll(z, y, beta) -> float:
    s = beta * z
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return float(np.mean((p * z).sum(axis=1) - z[np.arange(len(y)), y]))


def best_beta(z: np.ndarray, y: np.ndarray) -> float:
    """The beta = 1/T minimising the mean NLL (bisection on its increasing derivative, in log
    beta over [1e-3, 1e3], to machine precision)."""
    lo, hi = math.log(1e-3), math.log(1e3)
    if _dnll(z, y, math.exp(lo)) >= 0 or _dnll(z, y, math.exp(hi)) <= 0:
        raise ValueError("optimum outside [1e-3, 1e3]")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _dnll(z, y, math.exp(mid)) < 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    return math.exp(0.5 * (lo + hi))


def _temperature_case(rng, n, k, scale, c_lo, c_hi, dtype, n_wrong=0, wrong_gap=0.0):
    """Logits ``u * c`` with labels drawn from softmax(u): the best T is near ``c``. ``n_wrong``
    samples get the true class ``wrong_gap`` logits below the top one (confidently wrong)."""
    for _ in range(100):
        u = rng.standard_normal((n, k)) * scale
        p = np.exp(u - u.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        y = (p.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1).clip(0, k - 1)
        c = rng.uniform(c_lo, c_hi)
        z = u * c
        for i in range(n_wrong):
            top = int(np.argmax(z[i]))
            y[i] = (top + 1 + i) % k
            z[i, y[i]] = z[i, top] - wrong_gap * c * rng.uniform(0.9, 1.1)
        zt = torch.from_numpy(z).to(dtype)
        zd = zt.double().numpy()
        try:
            t = 1.0 / best_beta(zd, y)
        except ValueError:
            continue
        yt = torch.from_numpy(y).long()
        if n_wrong:   # at the best T, log(softmax) in float32 must give -inf (the mistake's trap)
            naive = torch.log(torch.softmax(zt.float() / t, dim=1))[torch.arange(n), yt]
            if not torch.isinf(naive).any():
                continue
        if 0.05 <= t <= 20:
            return zt, yt
    raise RuntimeError("no temperature case in range")  # never seen


def _t_cases(seed):
    return [(label, z.clone(), y.clone()) for label, z, y in _t_cases_built(int(seed))]


@functools.lru_cache(maxsize=4)
def _t_cases_built(seed):
    rng = case_rng(seed, 5401)
    return [
        ("400 samples, K=10, float32, an overconfident model (best T above 1)",
         *_temperature_case(rng, 400, 10, 1.5, 1.8, 3.5, torch.float32)),
        ("300 samples, K=5, float64, an underconfident model (best T below 1)",
         *_temperature_case(rng, 300, 5, 2.0, 0.3, 0.6, torch.float64)),
        ("200 samples, K=3, float32, a very underconfident model (best T near 0.1)",
         *_temperature_case(rng, 200, 3, 3.0, 0.08, 0.14, torch.float32)),
        ("300 samples, K=10, float64, a very overconfident model (best T near 10)",
         *_temperature_case(rng, 300, 10, 1.0, 7.0, 12.0, torch.float64)),
        ("500 samples, K=10, float32, logits in the hundreds with one confidently wrong sample",
         *_temperature_case(rng, 500, 10, 1.5, 0.5, 1.0, torch.float32, n_wrong=1,
                            wrong_gap=250.0)),
    ]


def probe_temperature(fit_temperature, seed):
    out = []
    for _, z, y in _t_cases(seed):
        before = snapshot(z, y)
        zin, yin = z.clone(), y.clone()
        out.append({"result": capture(fit_temperature, zin, yin),
                    "input_changed": changed(before, zin, yin)})
    return {"cases": out}


def _t_value(res, label) -> float:
    if isinstance(res, Raised):
        raise res
    if isinstance(res, Value) and res.grad:
        raise Fail(f"{label}: your T is a tensor that still requires grad (a leaf of your "
                   "optimiser, or computed from one). Return a plain number (.item()), so that "
                   "logits / T later builds no autograd graph.")
    if isinstance(res, Value) and res.kind in ("torch", "numpy") and np.size(res.value) != 1:
        raise Fail(f"{label}: got an array of shape {np.shape(res.value)}; return one number T, "
                   "the same for every sample and class.")
    return as_float(res, "fit_temperature(logits, y)")


def judge_temperature(data, seed):
    cases = _t_cases(seed)
    results = data["cases"]
    values = []
    for (label, z, y), got in zip(cases, results, strict=True):
        res = got["result"]
        if isinstance(res, Raised):
            _raised(res, f"{label} (logits of shape {tuple(z.shape)}, {str(z.dtype)[6:]})")
        values.append(_t_value(res, label))
    refs = []
    for (label, z, y), v in zip(cases, values):
        zd, yn = z.double().numpy(), y.numpy()
        b = best_beta(zd, yn)
        refs.append((zd, yn, b, _nll(zd, yn, b)))
    ok = [math.isfinite(v) and v > 0 and _nll(zd, yn, 1.0 / v) - best <= NLL_TOL
          for v, (zd, yn, _, best) in zip(values, refs)]
    if not all(ok) and len(set(values)) == 1:
        raise Fail(f"your T is {values[0]:.6g} for every case, although the cases need very "
                   "different temperatures: your T does not depend on the data. Is the quantity "
                   "you optimise one that T does not change? Dividing the logits by T > 0 keeps "
                   "the argmax, so accuracy is the same for every T; the NLL is not.")
    for (label, z, y), v, (zd, yn, b, best), good, got in zip(cases, values, refs, ok, results):
        if good:
            if got["input_changed"]:
                raise Fail(f"{label}: your function changed its inputs (logits or y) in place; "
                           "work on copies.")
            continue
        large = "hundreds" in label
        if not math.isfinite(v):
            if large:
                raise Fail(f"{label}: got T = {v}. " + _T_OVERFLOW)
            raise Fail(f"{label}: got T = {v}; return a finite positive number.")
        if v <= 0:
            if v > -50 and _nll(zd, yn, math.exp(-v)) - best <= NLL_TOL:   # v is log T
                raise Fail(f"{label}: got {v:.6g}: this is log T. You optimised log T (a good "
                           "idea: it keeps T positive) but returned it instead of T itself.")
            raise Fail(f"{label}: got T = {v:.6g}, but a temperature must be > 0 (a negative T "
                       "turns the softmax's ranking around). Keep T positive, for instance by "
                       "optimising log T, or search over an interval of positive values.")
        nll_v = _nll(zd, yn, 1.0 / v)
        if _nll(zd, yn, v) - best <= NLL_TOL:
            raise Fail(f"{label}: got T = {v:.6g}, the *inverse* of the best temperature. The "
                       "logits are divided by T: did you multiply them by T while fitting, or "
                       "return 1/T?")
        if v < 50 and _nll(zd, yn, math.exp(-v)) - best <= NLL_TOL:
            raise Fail(f"{label}: got {v:.6g}: this is log T. You optimised log T (a good idea: "
                       "it keeps T positive) but returned it instead of T itself.")
        if large and all(ok[:-1]):
            raise Fail(f"{label}: got T = {v:.6g}, whose mean NLL {nll_v:.7g} is above the best "
                       f"reachable {best:.7g}, while the other cases were right. {_T_OVERFLOW}")
        direction = "a larger" if _dnll(zd, yn, 1.0 / v) > 0 else "a smaller"
        raise Fail(f"{label}: got T = {v:.6g}, whose mean NLL {nll_v:.7g} is {nll_v - best:.2g} "
                   f"above the best reachable {best:.7g} (the check allows {NLL_TOL:g}); {direction} "
                   "T lowers it. Did your search stop too early (more steps, a tighter "
                   "tolerance), or does its interval exclude the optimum?")
    return None


_T_OVERFLOW = ("Here the NLL of the confidently wrong sample is huge: log(softmax(z / T)) "
               "underflows to log(0) = -inf and the NLL becomes inf, which misleads the search. "
               "Compute log-probabilities in one stable step (torch.log_softmax or "
               "F.cross_entropy on the scaled logits).")

exercise("ex5.4", "fit_temperature", probe_temperature, judge_temperature,
         forbid=T_HELPERS, forbid_hint=T_HINT)
