"""Checks for lesson 05 (label smoothing and calibration).

- ex5.1 ``smooth_targets(y, num_classes, eps)``: ``(N, K)`` soft targets of torch's label smoothing.
- ex5.2 ``label_smoothing_cross_entropy(logits, y, eps)``: batch mean, a 0-d tensor in the
  logits' dtype, equal to ``F.cross_entropy(logits, y, label_smoothing=eps)``, finite for logits
  of +-1000, differentiable. Refused (DESIGN's shortcut table): label smoothing or probability
  targets in any cross-entropy route: ``F.cross_entropy`` / ``nn.CrossEntropyLoss`` (whose
  forward calls it) and the op underneath, ``torch._C._nn.cross_entropy_loss`` /
  ``torch.ops.aten.cross_entropy_loss`` (``CE_WATCH``); plain cross-entropy with integer labels
  inside an answer is fine.
- ex5.3 ``expected_calibration_error(probs, y, n_bins=15)``: a Python float; confidence = max
  probability, equal-width bins on [0, 1], each bin weighted by its share of the samples.
  Refused: library calibration metrics (scikit-learn's ``calibration_curve``, torchmetrics'
  calibration error where installed) and the course's helpers that compute it
  (``helpers.plots.calibration_bins`` and the plots built on it).
- ex5.4 ``fit_temperature(logits, y)``: a Python float ``T > 0`` minimising the mean NLL of
  ``softmax(logits / T)``; judged by the NLL it reaches: within ``NLL_TOL = 1e-6`` (absolute,
  in nats; the cases' minimal NLLs lie between about 0.1 and 2, so this is also about 1e-6
  relative) of the minimum, which the judge finds in float64 by bisection on the derivative of
  the NLL in ``beta = 1/T`` (the NLL is convex in beta). Every case's best ``T`` lies in
  [0.05, 20]. ``torch.optim`` is allowed; ``helpers.plots.calibrate_temperature`` (the lesson's
  hidden fitter) is refused.

Every probe and judge builds its inputs from the case seed (``case_rng(seed, salt)``): shapes
and edge cases (eps = 0, confidences of exactly 1.0, +-1000 logits, confidently wrong samples)
are fixed, values vary with the seed. Float answers (ex5.3, ex5.4) must be a Python float (or
int), or a NumPy float64 scalar (a subclass of float): a 0-d or one-element tensor or array, or
a NumPy float32 scalar, fails with "return a Python float" (and "its value is right" when it
is); values are judged at float32-level precision, so an answer computed in float32 passes.
None of these checks is statistical: a correct answer passes at every seed.

Side effects are decided by the judge: each probe records the inputs after the learner's call
(``inputs_after``), and the judge compares them, bit for bit, with the inputs it rebuilds from
the seed (``input_changed``); nothing is compared in the learner's kernel.

Use of a refused library call is found by core while the learner's code runs (by what is
called, so an alias is seen too): the names in ``forbid``, and the ``watch_if`` entries, which
refuse a call only when its arguments make it the whole answer. ``watch_if`` conditions here
accept the call's arguments as a dict of named arguments (``frame.f_locals``, or core's binding
with the positional ones under ``"args"``), as ``(args, kwargs)``, or as the op's own arguments,
and bind positional arguments with each route's own parameter order. The judge fails such an
answer with the exercise's library message.
"""

from __future__ import annotations

import contextlib
import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from helpers.checks.core import (Fail, Raised, Value, as_array, as_float, capture, case_rng,
                                 close, exercise, expect_array, get, input_changed, inputs_after,
                                 match_mistake, max_err)

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

# Every cross-entropy route of torch, with the names of its positional parameters. The
# conditions below are called with the call's arguments in any of these forms (core's watcher
# has used more than one): a dict of named arguments (``frame.f_locals`` of a Python function;
# it may carry the positional ones under ``"args"`` and further named ones under ``"kwargs"``),
# a tuple of positional arguments optionally followed by a dict of named ones (what a
# ``TorchFunctionMode`` sees: ``func(*args, **kwargs)``), or the op's own arguments
# (``condition(input, target, ...)``). Positional arguments are bound to the route's own
# parameter names: ``F.cross_entropy``'s sixth is ``reduce``, the op's sixth is ``label_smoothing``.
_CE_PARAMS = {
    "torch.nn.functional.cross_entropy":
        ("input", "target", "weight", "size_average", "ignore_index", "reduce", "reduction",
         "label_smoothing"),
    # torch._C._nn.cross_entropy_loss(input, target, weight, reduction, ignore_index,
    # label_smoothing); the aten schema names its first argument ``self``
    "torch._C._nn.cross_entropy_loss":
        ("input", "target", "weight", "reduction", "ignore_index", "label_smoothing"),
    "torch.ops.aten.cross_entropy_loss":
        ("input", "target", "weight", "reduction", "ignore_index", "label_smoothing"),
    "torch.ops.aten.cross_entropy_loss.default":
        ("input", "target", "weight", "reduction", "ignore_index", "label_smoothing"),
}
# (nn.CrossEntropyLoss needs no entry: its forward calls F.cross_entropy with its label_smoothing.)


def _call_arguments(params: tuple, a: tuple, k: dict) -> dict:
    """The named arguments of one call, from whichever form the condition got (see above)."""
    from collections.abc import Mapping

    positional: tuple = ()
    named: dict = {}
    if len(a) >= 1 and isinstance(a[0], Mapping):
        named = dict(a[0])
        if isinstance(named.get("args"), (tuple, list)) and "input" not in named:
            positional = tuple(named.pop("args"))
        if isinstance(named.get("kwargs"), Mapping):
            named.update(named.pop("kwargs"))
        if len(a) >= 2 and isinstance(a[1], (tuple, list)):
            positional = tuple(a[1])
        elif len(a) >= 2 and isinstance(a[1], Mapping):
            named.update(a[1])
    elif len(a) >= 1 and isinstance(a[0], (tuple, list)):
        positional = tuple(a[0])
        if len(a) >= 2 and isinstance(a[1], Mapping):
            named.update(a[1])
    else:
        positional = tuple(a)
    named.update(k)
    if "self" in named and "input" not in named:      # the aten schema's name
        named["input"] = named.pop("self")
    for name, value in zip(params, positional):
        named.setdefault(name, value)
    return named


def _ce_check(params: tuple, name: str, *a, **k) -> str | None:
    """The ``watch_if`` condition of one cross-entropy route (bound to it with
    ``functools.partial``): the name to refuse the call under when its arguments make it ex5.2
    in one call (a nonzero label smoothing, or probability targets), else None. Plain
    cross-entropy with integer labels stays allowed."""
    args = _call_arguments(params, a, k)
    smoothing = args.get("label_smoothing", 0.0)
    try:
        smoothing = float(smoothing or 0.0)
    except (TypeError, ValueError, RuntimeError):
        smoothing = 1.0
    if smoothing != 0.0:
        return f"{name}(label_smoothing=...)"
    target = args.get("target")
    if isinstance(target, torch.Tensor) and target.is_floating_point():
        return f"{name} with probability targets"
    return None


def _never(*_a, **_k) -> None:
    return None


def _route_name(route: str) -> str:
    if route == "torch.nn.functional.cross_entropy":
        return route
    return "torch._C._nn.cross_entropy_loss"


# Core calls a condition from its TorchFunctionMode while the learner's code runs, and refuses
# any call into ``helpers`` made from learner code: a condition defined here would count as one
# (every F.cross_entropy call refused). So the conditions are ``functools.partial`` objects (no
# frame of their own) around ``_ce_check``, and ``_ce_check`` itself is on the watch list with a
# condition that never refuses: core then knows the call and does not count it as a helpers
# call. (A workaround for core; harmless once core skips its own callbacks.)
CE_WATCH = tuple((route, functools.partial(_ce_check, _CE_PARAMS[route], _route_name(route)))
                 for route in _CE_PARAMS) + (("helpers.checks.lesson05._ce_check", _never),)


def _ce_refused(*a, **k) -> str | None:
    """``F.cross_entropy``'s condition (kept under its old name)."""
    return CE_WATCH[0][1](*a, **k)


# ------------------------------------------------------------------ float answers

def _float_type_problem(res) -> str | None:
    """None when ``res`` is a Python float (or int), or a NumPy float64 scalar (a subclass of
    float); else what it is, for a hint ("a 0-d torch tensor", "a NumPy array of shape (1,)")."""
    if isinstance(res, bool):
        return "a bool"
    if not isinstance(res, Value):
        return None if res is None else type(res).__name__
    if res.kind == "python":
        return None if res.dtype in ("float", "int") else f"a Python {res.dtype}"
    if res.kind == "numpy" and not isinstance(res.value, np.ndarray):   # a NumPy scalar
        return None if res.dtype == "float64" else f"a NumPy {res.dtype} scalar"
    if res.kind in ("torch", "numpy") and res.value is not None:
        what = "torch tensor" if res.kind == "torch" else "NumPy array"
        shape = tuple(np.shape(res.value))
        grad = " that still requires grad" if res.grad else ""
        return (f"a 0-d {what}{grad}" if shape == () else
                f"a {what} of shape {shape}{grad}")
    return f"{res.dtype or res.kind}"


def _python_float_hint(what: str, problem: str, right: bool = False) -> str:
    value = ": its value is right, but" if right else ", but"
    return (f"got {problem}{value} the text asks for a Python float: return a Python float "
            f"(e.g. `.item()` on a one-element tensor, or float(...)), so that {what} prints, "
            "compares and stores like any number.")


@contextlib.contextmanager
def _also_float_note(problem: str | None):
    """A wrong value that also came back as the wrong type: the value's diagnosis first, then a
    note on the type (one round of fixes instead of two)."""
    try:
        yield
    except Fail as e:
        if problem:
            raise Fail(f"{e} Also, you returned {problem}: return a Python float (e.g. "
                       "`.item()`).") from None
        raise


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
        yin = y.clone()
        out.append({"result": capture(smooth_targets, yin, k, eps), "after": inputs_after(yin)})
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
        ((1 - eps) * oh + eps / k * (1 - oh), "the true class got 1 - eps without its own eps/K "
         "share, so each row sums to 1 - eps/K: the uniform part eps/K goes to every class, the "
         "true class included."),
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
        low = str(res.dtype) in ("float16", "bfloat16")
        if low and not close(a, ref, rtol=1e-6, atol=2e-7) and \
                close(a, ref, rtol=0.0, atol=1e-2 if res.dtype == "bfloat16" else 1e-3):
            raise Fail(f"{label}: your targets are right up to dtype: they are {res.dtype}, whose "
                       "few digits round eps/K and 1 - eps (errors of about 1e-3); return "
                       "float32 or float64 targets.")
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
        if input_changed(got.get("after"), y):
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
        zin, yin = z.clone(), y.clone()
        out.append({"result": capture(fn, zin, yin, eps), "after": inputs_after(zin, yin)})
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
        q_short = (1 - eps) * oh + eps / k * (1 - oh)
        out.append((float(-(q_short * logp).sum(axis=1).mean()),
                    "your soft targets give the true class 1 - eps without its own eps/K share "
                    "(each row sums to 1 - eps/K): the uniform part eps/K goes to every class, "
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
    q = _targets(y, k, eps)
    rows = np.arange(n)
    raw = ("F.nll_loss expects log-probabilities and does not normalise its input (unlike "
           "F.cross_entropy): apply log_softmax over the classes first")
    out.append((float(-(q * z).sum(axis=1).mean()),
                "you used the raw logits where log-probabilities belong (no log_softmax). "
                + raw))
    if eps > 0:
        out.append((float((1 - eps) * -z[rows, y].mean() - eps * logp.mean(axis=1).mean()),
                    "the true-class term used the raw logits, not log-probabilities (F.nll_loss "
                    "on logits without log_softmax). " + raw))
        out.append((float((1 - eps) * nll.mean() - eps * z.mean(axis=1).mean()),
                    "the uniform (eps) term averages the raw logits, not the log-probabilities "
                    "(no log_softmax there). Every class's term is a log-probability"))
    probs_hint = ("you used probabilities (softmax) where log-probabilities belong: the "
                  "cross-entropy weighs the log of each predicted probability, and F.nll_loss "
                  "expects log-probabilities too (log_softmax, not softmax)")
    out.append((float(-(q * p).sum(axis=1).mean()), probs_hint))
    if eps > 0:
        out.append((float((1 - eps) * -p[rows, y].mean() - eps * logp.mean(axis=1).mean()),
                    probs_hint))
    logp0 = _log_softmax(z.T).T          # normalised over the samples of the batch
    dim0 = ("softmax over the wrong dim: your log-probabilities are normalised over the "
            "samples of the batch (dim 0), not over the K classes of each sample (dim=1, or "
            "dim=-1)")
    out.append((float(-(q * logp0).sum(axis=1).mean()), dim0))
    if eps > 0:
        out.append((float((1 - eps) * -logp0[rows, y].mean() - eps * logp.mean(axis=1).mean()),
                    dim0 + " in the true-class term"))
        out.append((float((1 - eps) * nll.mean() - eps * logp0.mean(axis=1).mean()),
                    dim0 + " in the uniform (eps) term"))
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
        if isinstance(res, Value) and res.kind in ("python", "numpy"):
            what = "a Python number" if res.kind == "python" else "a NumPy value"
            raise Fail(f"{label}: got {what}; return the loss as a torch scalar (a 0-d tensor "
                       "built from torch operations on the logits, no .item(), float() or "
                       "NumPy), so that training can call .backward() on it.")
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
        if a.shape != ():
            right = math.isfinite(v) and abs(v - ref) <= _ce_tol(ref)
            raise Fail(f"{label}: got a tensor of shape {a.shape}"
                       f"{' (its value is right)' if right else ''}; return a torch scalar, a "
                       "0-d tensor, as F.cross_entropy does (a keepdim=True or an indexing "
                       "[None] leaves a dimension of size 1).")
        large = "large logits" in label
        if not math.isfinite(v):
            if large:
                raise Fail(f"{label}: got {v}, expected a finite loss ({ref:.6g}). {_OVERFLOW}.")
            raise Fail(f"{label}: got {v}, expected {ref:.6g}; your loss is not finite.")
        tol = _ce_tol(ref)
        if abs(v - ref) <= tol:
            if input_changed(got.get("after"), z, y):
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
         watch_if=CE_WATCH)

# ------------------------------------------------------------------ ex5.3

ECE_HELPERS = ("helpers.plots.calibration_bins", "helpers.plots.reliability_diagram",
               "helpers.plots.reliability_with_counts")
# library calibration metrics (DESIGN's shortcut table): torchmetrics' ECE where it is installed
# (core skips names that do not import), and scikit-learn's reliability curve below
ECE_LIBRARY = (
    "torchmetrics.functional.calibration_error",
    "torchmetrics.functional.classification.calibration_error",
    "torchmetrics.functional.classification.binary_calibration_error",
    "torchmetrics.functional.classification.multiclass_calibration_error",
    "torchmetrics.classification.CalibrationError",
    "torchmetrics.classification.BinaryCalibrationError",
    "torchmetrics.classification.MulticlassCalibrationError",
    "torchmetrics.functional.classification.calibration_error.*",
)
# scikit-learn's calibration_curve is wrapped by its parameter validation, whose one code object
# every validated scikit-learn function shares (accuracy_score's too): watching that wrapper
# would refuse a correct answer that uses accuracy_score per bin. The function underneath
# (``__wrapped__``) is watched instead, and refused under the name a learner knows; the
# grader's source scan finds the name too (``source_words``).
ECE_WATCH = (("sklearn.calibration.calibration_curve.__wrapped__",
              lambda *a, **k: "sklearn.calibration.calibration_curve"),)
ECE_WORDS = ("calibration_curve",)
ECE_FORBID = ECE_LIBRARY + ECE_HELPERS
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
        pin, yin = p.clone(), y.clone()
        args = (pin, yin) if nb is None else (pin, yin, nb)
        out.append({"result": capture(expected_calibration_error, *args),
                    "after": inputs_after(pin, yin)})
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
        right = math.isfinite(v) and abs(v - ref) <= ECE_TOL
        problem = _float_type_problem(res)
        if problem and right:
            raise Fail(f"{label}: " + _python_float_hint("the ECE", problem, right))
        if not right:
            with _also_float_note(problem):
                _ece_wrong(label, v, ref, probs, yn, conf, correct, n_bins)
        if input_changed(got.get("after"), p, y):
            raise Fail(f"{label}: your function changed its inputs (probs or y) in place; "
                       "work on copies.")
    return None


def _ece_wrong(label, v, ref, probs, yn, conf, correct, n_bins):
    """Fail with the diagnosis of a wrong ECE ``v``."""
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


exercise("ex5.3", "expected_calibration_error", probe_ece, judge_ece,
         forbid=ECE_FORBID, forbid_hint=ECE_HINT, watch_if=ECE_WATCH, source_words=ECE_WORDS)

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
        zin, yin = z.clone(), y.clone()
        out.append({"result": capture(fit_temperature, zin, yin), "after": inputs_after(zin, yin)})
    return {"cases": out}


def _t_value(res, label) -> float:
    if isinstance(res, Raised):
        raise res
    if isinstance(res, Value) and res.kind in ("torch", "numpy") and np.size(res.value) != 1:
        raise Fail(f"{label}: got an array of shape {np.shape(res.value)}; return one number T, "
                   "the same for every sample and class.")
    return as_float(res, "fit_temperature(logits, y)")


def _nll_dim0(z: np.ndarray, y: np.ndarray, beta: float) -> tuple[float, float]:
    """Mean NLL, and its derivative in beta, of the softmax taken over the *samples* (dim 0):
    ``-log softmax(beta * z, dim=0)[i, y_i]`` averaged over i (convex in beta, as the right one)."""
    s = beta * z
    m = s.max(axis=0)
    e = np.exp(s - m)
    lse = m + np.log(e.sum(axis=0))                      # one per class (column)
    mean_z = (e * z).sum(axis=0) / e.sum(axis=0)
    rows = np.arange(len(y))
    return (float(np.mean(lse[y] - s[rows, y])), float(np.mean(mean_z[y] - z[rows, y])))


def _argmin_beta(dfun) -> float | None:
    """The beta in [1e-3, 1e3] where the increasing derivative ``dfun`` changes sign, or None."""
    lo, hi = math.log(1e-3), math.log(1e3)
    if dfun(math.exp(lo)) >= 0 or dfun(math.exp(hi)) <= 0:
        return None
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if dfun(math.exp(mid)) < 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    return math.exp(0.5 * (lo + hi))


def _is_dim0_fit(zd, yn, v) -> bool:
    """True when T = ``v`` minimises the NLL of a softmax over the wrong dim (the samples)."""
    b0 = _argmin_beta(lambda b: _nll_dim0(zd, yn, b)[1])
    if b0 is None or not (math.isfinite(v) and v > 0):
        return False
    best0 = _nll_dim0(zd, yn, b0)[0]
    return _nll_dim0(zd, yn, 1.0 / v)[0] - best0 <= 1e-5 * max(1.0, abs(best0))


def judge_temperature(data, seed):
    cases = _t_cases(seed)
    results = data["cases"]
    values, problems = [], []
    for (label, z, y), got in zip(cases, results, strict=True):
        res = got["result"]
        if isinstance(res, Raised):
            _raised(res, f"{label} (logits of shape {tuple(z.shape)}, {str(z.dtype)[6:]})")
        values.append(_t_value(res, label))
        problems.append(_float_type_problem(res))
    refs = []
    for (label, z, y), v in zip(cases, values):
        zd, yn = z.double().numpy(), y.numpy()
        b = best_beta(zd, yn)
        refs.append((zd, yn, b, _nll(zd, yn, b)))
    ok = [math.isfinite(v) and v > 0 and _nll(zd, yn, 1.0 / v) - best <= NLL_TOL
          for v, (zd, yn, _, best) in zip(values, refs)]
    if not all(ok) and len(set(values)) == 1:
        with _also_float_note(problems[0]):
            if math.isfinite(values[0]) and (0 < values[0] < 0.02 or values[0] > 50):
                raise Fail(f"your T is {values[0]:.6g} for every case, " + _NO_MINIMUM)
            raise Fail(f"your T is {values[0]:.6g} for every case, although the cases need very "
                       "different temperatures: your T does not depend on the data. Is the "
                       "quantity you optimise one that T does not change? Dividing the logits by "
                       "T > 0 keeps the argmax, so accuracy is the same for every T; the NLL is "
                       "not.")
    for (label, z, y), v, (zd, yn, b, best), good, got, problem in zip(
            cases, values, refs, ok, results, problems):
        if good:
            if problem:
                raise Fail(f"{label}: " + _python_float_hint("T", problem, right=True))
            if input_changed(got.get("after"), z, y):
                raise Fail(f"{label}: your function changed its inputs (logits or y) in place; "
                           "work on copies.")
            continue
        with _also_float_note(problem):
            _t_wrong(label, v, zd, yn, best, ok)
    return None


def _t_wrong(label, v, zd, yn, best, ok):
    """Fail with the diagnosis of a wrong temperature ``v`` on one case."""
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
    if _is_dim0_fit(zd, yn, v):
        raise Fail(f"{label}: got T = {v:.6g}, the best temperature for a softmax over the "
                   "wrong dim: your probabilities are normalised over the samples (dim 0), not "
                   "over the K classes of each sample (dim=1, or dim=-1).")
    if v < 0.02 or v > 50:
        raise Fail(f"{label}: got T = {v:.6g}, " + _NO_MINIMUM)
    if large and all(ok[:-1]):
        raise Fail(f"{label}: got T = {v:.6g}, whose mean NLL {nll_v:.7g} is above the best "
                   f"reachable {best:.7g}, while the other cases were right. {_T_OVERFLOW}")
    direction = "a larger" if _dnll(zd, yn, 1.0 / v) > 0 else "a smaller"
    raise Fail(f"{label}: got T = {v:.6g}, whose mean NLL {nll_v:.7g} is {nll_v - best:.2g} "
               f"above the best reachable {best:.7g} (the check allows {NLL_TOL:g}); {direction} "
               "T lowers it. Did your search stop too early (more steps, a tighter "
               "tolerance), or does its interval exclude the optimum?")


_NO_MINIMUM = ("far outside the range where every case's best T lies ([0.05, 20]): the loss "
               "you minimised has no minimum in between, and your search ran to its edge. A "
               "common cause: F.nll_loss on the scaled logits without log_softmax (nll_loss "
               "expects log-probabilities; on raw logits it keeps falling as T goes to 0).")

_T_OVERFLOW = ("Here the NLL of the confidently wrong sample is huge: log(softmax(z / T)) "
               "underflows to log(0) = -inf and the NLL becomes inf, which misleads the search. "
               "Compute log-probabilities in one stable step (torch.log_softmax or "
               "F.cross_entropy on the scaled logits).")

exercise("ex5.4", "fit_temperature", probe_temperature, judge_temperature,
         forbid=T_HELPERS, forbid_hint=T_HINT)
