"""Checks for lesson 07 (early stopping, LR schedules): ex7.1 EarlyStopping, ex7.2 cosine_lr,
ex7.3 warmup_cosine_lr.

Every case family is rebuilt from the case seed (``case_rng(seed, salt)``); probe and judge
call the same ``_cases(seed)``. Nothing here is random in the learner's code, so no check is
statistical.

ex7.1: the probe drives the learner's class on sequences of validation losses (ties,
improvements smaller than ``min_delta``, losses near 2.3 and near 0.3 where a *relative*
``min_delta`` would decide differently, patience 1 to 3) with a small model whose whole state
the probe overwrites in place before every step, so each step's weights are recognisable. The
sequences are hand-designed structures; the seed moves every distinct loss by a random amount
smaller than a third of the smallest margin of any comparison the rule or a known mistake makes
(ties stay exact ties), so every decision, right or wrong, is the same at every seed while the
values (hence ``best_loss``) and the model's weights change. It records what ``step``
returned, ``best_loss``/``best_epoch`` after each step, the state after ``restore_best`` and
again after the model was changed in place and restored once more. The judge replays the rule
itself and, on a mismatch, replays the common mistakes to name the one that reproduces the
answer.

ex7.2 and ex7.3: the judge steps torch's schedulers itself (``CosineAnnealingLR``;
``SequentialLR`` of ``LinearLR`` and ``CosineAnnealingLR``) in its own process and compares at
float32 level. While the answer runs, calls into torch's schedulers are watched: an answer that builds one
fails with a hint (the exercise is to write the schedule, not to read it off torch). Hints name
the mistake; none prints the formula or the expected value.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn

from helpers.checks.core import (Fail, Raised, Value, as_array, as_float, capture, case_rng,
                                 close, encode, exercise, learner_code, match_mistake, unwrap)
from helpers.checks.core import raised_data

# ================================================================== ex7.1 EarlyStopping

_MISSING = {"__missing__": True}
_STEP = 0.125      # each step's state is base + (k + 1) * _STEP (exact in float32)
_POST = 100.0      # the state the model is left in after the last step, before restore_best
_LATER = 50.0625   # added in place after the first restore, to see whether it leaks

# (label, patience, min_delta or None for the default, designed validation losses)
_ES_DESIGN = [
    ("patience=3, default min_delta, with ties", 3, None,
     [1.0, 0.9, 0.9, 0.95, 0.85, 0.85, 0.87, 0.85, 0.86, 0.8]),
    ("patience=1", 1, 0.0, [0.5, 0.4, 0.45, 0.3, 0.2]),
    ("patience=3, min_delta=0.05", 3, 0.05,
     [1.0, 0.97, 0.93, 0.96, 0.90, 0.80, 0.78, 0.79, 0.77, 0.76, 0.70]),
    ("patience=2, min_delta=0.05, improvements of 0.01 per step", 2, 0.05,
     [1.0, 0.99, 0.98, 0.97, 0.96]),
    ("patience=2, min_delta=0.05, losses near 2.3", 2, 0.05,
     [2.40, 2.32, 2.23, 2.26, 2.16, 2.175, 2.195, 2.215]),
    ("patience=2, min_delta=0.1, losses near 0.3", 2, 0.1,
     [0.60, 0.52, 0.45, 0.48, 0.34, 0.295, 0.36, 0.37]),
    ("patience=3, the first step is the best", 3, 0.0, [0.5, 0.6, 0.7, 0.8, 0.9]),
    ("patience=3, every step improves", 3, 0.0, [0.9, 0.8, 0.7, 0.6]),
]


def _margin(losses, md):
    """The smallest nonzero gap of any comparison the rule or a known mistake makes."""
    gaps = []
    for i, a in enumerate(losses):
        for b in losses[i + 1:]:
            for g in (b - a, b - (a - md), b - a * (1 - md)):
                if g != 0:
                    gaps.append(abs(g))
    return min(gaps)


def _es_cases(seed):
    """(label, patience, min_delta or None, losses): the designed losses, each distinct value
    moved by less than a third of the case's smallest margin (so no decision changes)."""
    rng = case_rng(seed, 7101)
    out = []
    for label, patience, md, losses in _ES_DESIGN:
        m = _margin(losses, 0.0 if md is None else md)
        shift = {v: float(np.round(v + rng.uniform(-m / 3.5, m / 3.5), 6)) for v in sorted(set(losses))}
        out.append((label, patience, md, [shift[v] for v in losses]))
    return out


def _es_model():
    """A tiny fixed model with parameters *and* buffers: Linear(3, 2) -> BatchNorm1d(2)."""
    torch.manual_seed(707)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def _es_base(seed):
    """``{name: float64 array}``: the base values of the model's floating-point state entries."""
    rng = case_rng(seed, 7102)
    return {name: np.round(rng.standard_normal(tuple(t.shape)) * 64) / 64
            for name, t in _es_model().state_dict().items() if t.is_floating_point()}


def _es_state(base, k):
    """The state at step ``k`` (0-based); ``k = None`` is the post-training state."""
    off = _POST if k is None else (k + 1) * _STEP
    return {name: b + off for name, b in base.items()}


def _set_state(model, base, k):
    with torch.no_grad():
        sd = model.state_dict()
        for name, arr in _es_state(base, k).items():
            sd[name].copy_(torch.as_tensor(arr, dtype=sd[name].dtype))
        for name, t in sd.items():
            if not t.is_floating_point():          # num_batches_tracked
                t.fill_(0 if k is None else k + 1)


def _read_state(model):
    return {name: t.detach().clone() for name, t in model.state_dict().items()
            if t.is_floating_point()}


def _storages(obj, depth=0, seen=None):
    """Storage addresses of every tensor reachable from ``obj`` (dicts, sequences, modules, attributes)."""
    seen = set() if seen is None else seen
    if depth > 4 or id(obj) in seen:
        return set()
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        try:
            return {obj.untyped_storage().data_ptr()}
        except Exception:  # noqa: BLE001
            return set()
    if isinstance(obj, nn.Module):
        return {t.untyped_storage().data_ptr() for t in obj.state_dict().values()}
    if isinstance(obj, dict):
        items = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        items = list(obj)
    elif hasattr(obj, "__dict__") and depth == 0:
        items = list(vars(obj).values())
    else:
        items = []
    found = set()
    for v in items:
        found |= _storages(v, depth + 1, seen)
    return found


def _raised(e):
    return raised_data(e)


def _attr(obj, name):
    try:
        with learner_code():
            return encode(getattr(obj, name)) if hasattr(obj, name) else _MISSING
    except Exception as e:  # noqa: BLE001 - a property that raises
        return _raised(e)


def _drive(es, model, base, losses):
    """Step ``es`` through ``losses`` until it returns True; one record per step."""
    steps = []
    for k, v in enumerate(losses):
        _set_state(model, base, k)
        try:
            with learner_code():
                ret = es.step(float(v), model)
        except Exception as e:  # noqa: BLE001
            steps.append({"ret": _raised(e)})
            return steps, False
        steps.append({"ret": encode(ret), "best_loss": _attr(es, "best_loss"),
                      "best_epoch": _attr(es, "best_epoch")})
        try:
            if bool(ret):
                break
        except Exception:  # noqa: BLE001 - e.g. a tensor of several elements
            break
    return steps, True


def _restore_twice(es, model, base, rec):
    """Restore after the model moved on; change the model in place; restore again."""
    _set_state(model, base, None)
    # raw storage addresses of the model and of what the answer's object holds: the judge
    # decides whether they share memory (a learner's patched set or bool cannot)
    rec["model_storages"] = sorted(t.untyped_storage().data_ptr() for t in model.state_dict().values())
    try:
        rec["held_storages"] = sorted(_storages(es))
    except Exception:  # noqa: BLE001
        rec["held_storages"] = []
    rec["restored"] = capture(lambda: (es.restore_best(model), _read_state(model))[1])
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(_LATER)
    rec["restored_again"] = capture(lambda: (es.restore_best(model), _read_state(model))[1])


def probe_early_stopping(EarlyStopping, seed):
    base = _es_base(seed)
    out = []
    for _, patience, min_delta, losses in _es_cases(seed):
        rec = {}
        out.append(rec)
        try:
            with learner_code():
                es = (EarlyStopping(patience) if min_delta is None
                      else EarlyStopping(patience, min_delta=min_delta))
        except Exception as e:  # noqa: BLE001
            rec["init_raised"] = _raised(e)
            continue
        rec["init"] = {"best_loss": _attr(es, "best_loss"), "best_epoch": _attr(es, "best_epoch")}
        model = _es_model()
        rec["steps"], ok = _drive(es, model, base, losses)
        if ok:
            _restore_twice(es, model, base, rec)
    return out


# the rule and the common mistakes, replayed by the judge

def _improves(variant, v, best, md):
    if variant == "no_min_delta":
        return v < best
    if variant == "ties":
        return v <= best - md
    if variant == "relative":
        return v < best * (1 - md)
    return v < best - md


def _simulate(patience, min_delta, losses, variant=None):
    """(returns, best_losses, best_epochs) until the first True, under the rule or a mistake."""
    best, best_epoch, bad, total_bad = math.inf, None, 0, 0
    rets, bls, bes = [], [], []
    for k, v in enumerate(losses):
        improved = _improves(variant, v, best, min_delta)
        if variant == "best_is_min":
            bad = 0 if improved else bad + 1
            if v < best:
                best, best_epoch = v, k
        elif improved:
            best, best_epoch, bad = v, k, 0
        else:
            bad += 1
            total_bad += 1
        count = total_bad if variant == "no_reset" else bad
        stop = {"late": count > patience, "early": count >= patience - 1}.get(variant, count >= patience)
        rets.append(stop)
        bls.append(best)
        bes.append(None if best_epoch is None else best_epoch + (1 if variant == "one_based" else 0))
        if stop:
            break
    return rets, bls, bes


_VARIANTS = [
    ("late", "step() returned True one step too late: it must return True on the call where "
             "the count of steps without improvement *reaches* patience, not when it exceeds "
             "it. Off by one on patience."),
    ("early", "step() returned True one step too early: with patience p, training stops after "
              "p steps in a row without improvement, not p - 1. Off by one on patience."),
    ("no_reset", "the counter of steps without improvement is never reset: on every "
                 "improvement set it back to 0, so only steps *in a row* without improvement count."),
    ("ties", "a step whose loss *equals* the threshold was counted as an improvement. Ties "
             "count as no improvement: the comparison must be strict."),
    ("relative", "your min_delta acts as a fraction of best_loss (a relative threshold): on "
                 "losses far from 1 it decides differently. min_delta is an absolute amount of "
                 "loss, in the loss's own units."),
    ("no_min_delta", "improvements smaller than min_delta were counted: the code ignores "
                     "min_delta."),
    ("best_is_min", "best_loss followed every new minimum, also those that did not beat it by "
                    "min_delta. best_loss (and best_epoch, and the saved weights) change only on "
                    "an improvement."),
]


def _bool_of(v, where):
    """The boolean a recorded return value stands for; Fail for anything that is not a bool."""
    if isinstance(v, Raised):
        raise v
    if isinstance(v, bool):
        return v
    if v is None:
        raise Fail(f"{where}: step() returned None. Return False when training should go on "
                   "(and True when it should stop): a callback loop reads the value.")
    if isinstance(v, Value) and v.value is not None and v.dtype in ("bool", "bool_") \
            and v.kind != "torch" and np.ndim(v.value) == 0:
        return bool(np.asarray(v.value).reshape(()))      # a NumPy bool is a bool too
    if isinstance(v, Value) and v.kind == "torch":
        raise Fail(f"{where}: step() returned a tensor (shape {np.shape(v.value)}); return a "
                   "Python bool (e.g. `.item()` or bool(...)): a callback loop tests it with "
                   "`if`, and a tensor carries autograd and device along.")
    raise Fail(f"{where}: step() should return a bool (True: stop), got "
               f"{getattr(v, 'dtype', None) or type(v).__name__}.")


def _missing(v):
    return isinstance(v, dict) and "__missing__" in v


def _epoch_of(v, what):
    if isinstance(v, Raised):
        raise v
    if v is None:
        return None
    if _missing(v):
        raise Fail(f"your EarlyStopping has no attribute {what}.")
    x = as_float(v, what)
    if x != int(x):
        raise Fail(f"{what} should be a whole number (a count of step calls), got {x}.")
    return int(x)


def _loss_of(v, what):
    if _missing(v):
        raise Fail(f"your EarlyStopping has no attribute {what}.")
    return as_float(v, what)


def _which_state(got, base):
    """Which step's state ``got`` (name -> Value) is, for parameters and for buffers: a step
    index, 'post', 'later' or 'mixed'; (None, None) when an entry is missing."""
    arrays = {}
    for name in base:
        if name not in got:
            return None, None
        arrays[name] = as_array(got[name], f"the restored {name}")
    offs = {name: arrays[name] - base[name] for name in base}
    params = [n for n in base if not n.endswith(("running_mean", "running_var"))]
    buffers = [n for n in base if n not in params]

    def label(names):
        vals = np.concatenate([offs[n].ravel() for n in names])
        if not np.allclose(vals, vals[0], atol=1e-6):
            return "mixed"
        o = float(vals[0])
        if abs(o - _POST) < 1e-6:
            return "post"
        k = (o - _STEP) / _STEP
        if abs(k - round(k)) < 1e-6 and 0 <= round(k) < 40:
            return int(round(k))
        later = (o - _LATER - _STEP) / _STEP
        if abs(o - _LATER - _POST) < 1e-6 or (abs(later - round(later)) < 1e-6 and 0 <= round(later) < 40):
            return "later"
        return "mixed"

    return label(params), label(buffers)


# the judge of ex7.1, in named steps

def _judge_initial_state(label, rec):
    """Before the first step: best_loss is inf, best_epoch is None."""
    if "init_raised" in rec:
        unwrap(rec["init_raised"])
    init = rec["init"]
    bl0, be0 = init["best_loss"], init["best_epoch"]
    if _missing(bl0):
        raise Fail("your EarlyStopping has no attribute best_loss (set it in __init__).")
    if not (isinstance(bl0, Value) and bl0.value is not None
            and as_float(bl0, "best_loss") == math.inf):
        shown = "None" if bl0 is None else f"{unwrap(bl0)!r}"
        raise Fail(f"{label}: before the first step, best_loss should be inf (float('inf')), "
                   f"got {shown}: any finite first loss must count as an improvement.")
    if _missing(be0):
        raise Fail("your EarlyStopping has no attribute best_epoch (set it in __init__).")
    if be0 is not None:
        raise Fail(f"{label}: before the first step, best_epoch should be None (no step has "
                   f"been seen yet), got {unwrap(be0)!r}.")


def _judge_returns(label, patience, md, losses, steps):
    """What step() returned, against the rule; a known mistake is named."""
    ref = _simulate(patience, md, losses)[0]
    got = [_bool_of(s["ret"], f"{label}, step {k}") for k, s in enumerate(steps)]
    if got == ref:
        return
    shown = [round(v, 4) for v in losses]
    for name, hint in _VARIANTS:
        if _simulate(patience, md, losses, name)[0] == got:
            raise Fail(f"{label}, val losses {shown}: {hint}")
    k = next((i for i, (a, b) in enumerate(zip(got, ref)) if a != b), min(len(got), len(ref)))
    if k < len(ref) and k < len(got):
        raise Fail(f"{label}, val losses {shown}: at step {k} (0-based, val_loss {shown[k]}) "
                   f"step() returned {got[k]}, expected {ref[k]}. Count an improvement only when "
                   "the loss beats the best by more than min_delta; stop when patience steps in "
                   "a row brought none.")
    raise Fail(f"{label}, val losses {shown}: step() never returned True, expected True at "
               f"step {len(ref) - 1} (0-based).")


def _judge_best(label, patience, md, losses, steps):
    """best_epoch and best_loss after each step."""
    _, ref_bl, ref_be = _simulate(patience, md, losses)
    shown = [round(v, 4) for v in losses]
    got_be = [_epoch_of(s["best_epoch"], "best_epoch") for s in steps]
    if got_be != ref_be:
        if all(g is not None and r is not None and g == r + 1 for g, r in zip(got_be, ref_be)):
            raise Fail(f"{label}: best_epoch is 1-based ({got_be}, expected {ref_be}). It "
                       "counts step calls from 0: the first call is epoch 0.")
        for name, hint in _VARIANTS:
            if name not in ("late", "early") and _simulate(patience, md, losses, name)[2] == got_be:
                raise Fail(f"{label}, val losses {shown}: {hint}")
        raise Fail(f"{label}, val losses {shown}: best_epoch after each step was {got_be}, "
                   f"expected {ref_be} (0-based index of the step that last improved).")
    got_bl = [_loss_of(s["best_loss"], "best_loss") for s in steps]
    if not close(got_bl, ref_bl, rtol=1e-9, atol=1e-12):
        for name, hint in _VARIANTS:
            sim = _simulate(patience, md, losses, name)[1]
            if len(sim) == len(got_bl) and close(got_bl, sim, rtol=1e-9, atol=1e-12):
                raise Fail(f"{label}, val losses {shown}: {hint}")
        raise Fail(f"{label}, val losses {shown}: best_loss after each step was "
                   f"{[round(x, 6) for x in got_bl]}, expected {ref_bl}: the loss of the last "
                   "improvement.")


def _judge_restore(label, best_k, rec, base):
    """restore_best loads a deep copy of the best step's whole state, twice."""
    params, buffers = _which_state(unwrap(rec["restored"]), base)
    if params != best_k:
        if params == "post":
            try:
                held = {int(unwrap(v)) for v in rec.get("held_storages") or []}
                mine = {int(unwrap(v)) for v in rec.get("model_storages") or []}
            except (TypeError, ValueError):
                held, mine = set(), set()
            if held & mine:
                raise Fail(f"{label}: after restore_best the model still had its latest "
                           "weights, and your object holds tensors that share memory with the "
                           "model: model.state_dict() is not a copy, its tensors are the "
                           "model's own and keep changing with training. What you keep must "
                           "own its tensors (the copy module, or a clone per tensor).")
            raise Fail(f"{label}: restore_best(model) left the model's latest weights in "
                       "place (it never restores): it must load the saved best weights "
                       "into the model.")
        if isinstance(params, int):
            raise Fail(f"{label}: restore_best gave the model the weights it had at step "
                       f"{params} (0-based), but the best step was {best_k}. Save a deep copy "
                       "of the weights exactly when the loss improves (and only then).")
        raise Fail(f"{label}: after restore_best the model's weights are not those of any "
                   f"step (expected the weights it had at step {best_k}, the best one).")
    if buffers != best_k:
        raise Fail(f"{label}: the parameters were restored, but not the buffers (batch-norm "
                   "running statistics): save and load the whole model.state_dict(), not only "
                   "model.parameters().")
    again = _which_state(unwrap(rec["restored_again"]), base)
    if again != (best_k, best_k):
        if "later" in again:
            raise Fail(f"{label}: after a first restore_best, changing the model in place "
                       "changed your saved copy too (a second restore_best brought back the "
                       "changed weights). restore_best must copy the saved values into the "
                       "model (load_state_dict), not hand the model the saved tensors.")
        raise Fail(f"{label}: a second call of restore_best did not bring back the best "
                   f"weights (step {best_k}).")


def judge_early_stopping(data, seed):
    base = _es_base(seed)
    for (label, patience, min_delta, losses), rec in zip(_es_cases(seed), data, strict=True):
        md = 0.0 if min_delta is None else min_delta
        _judge_initial_state(label, rec)
        steps = rec["steps"]
        for s in steps:
            if isinstance(s["ret"], Raised):
                raise s["ret"]
        _judge_returns(label, patience, md, losses, steps)
        _judge_best(label, patience, md, losses, steps)
        _judge_restore(label, _simulate(patience, md, losses)[2][-1], rec, base)
    return None


exercise("ex7.1", "EarlyStopping", probe_early_stopping, judge_early_stopping, kind="class")


# ================================================================== ex7.2 and ex7.3: schedules

_S = "torch.optim.lr_scheduler."
# every scheduler's constructor runs LRScheduler.__init__ (SequentialLR's children and
# ReduceLROnPlateau too); the get_lr spies catch a scheduler built outside the answer and
# stepped inside it. (No ``.step`` spy: the grader's source scan would flag any ``x.step``.)
_SCHEDULERS = ("torch.optim.lr_scheduler.*",) + tuple(
    _S + n for n in ("LRScheduler.__init__", "CosineAnnealingLR.get_lr", "LinearLR.get_lr",
                     "LambdaLR.get_lr", "OneCycleLR.get_lr"))
_SCHEDULER_WORDS = ("lr_scheduler", "CosineAnnealingLR", "LinearLR", "SequentialLR", "LambdaLR",
                    "OneCycleLR")


def _scheduler_lrs(make, lr_max, n):
    """The learning rate after 0..n-1 calls of ``scheduler.step()`` (Python floats), in the
    judge's own process."""
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr_max)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sch = make(opt)
        lrs = [opt.param_groups[0]["lr"]]
        for _ in range(n - 1):
            opt.step()
            sch.step()
            lrs.append(opt.param_groups[0]["lr"])
    return np.array(lrs, dtype=np.float64)


def _float_of(g, what: str) -> float:
    """The text asks for a float: a Python float (or int), or a NumPy float64 scalar (a
    subclass of float). A tensor (0-d or shape (1,)) or an array fails with a hint."""
    if isinstance(g, Raised):
        raise g
    if isinstance(g, Value) and g.kind in ("torch", "numpy") and (
            g.kind == "torch" or np.ndim(g.value) != 0 or g.dtype not in ("float64", "float")):
        shape = tuple(np.shape(g.value)) if g.value is not None else None
        kind = "tensor" if g.kind == "torch" else "NumPy array"
        raise Fail(f"{what} returned a {g.dtype} {kind} of shape {shape}; the exercise asks for "
                   "a float: return a Python float (e.g. `.item()`, or compute it with `math`). "
                   "An optimizer's param_groups expect a plain number.")
    return as_float(g, what)


def _lrs_from(got, steps, name):
    return np.array([_float_of(g, f"{name}(step={s}, ...)") for s, g in zip(steps, got)])


def _tol(lr_max):
    return dict(rtol=1e-5, atol=1e-6 * lr_max)          # float32 arithmetic passes


def _first_off(vals, ref, steps, tol):
    """(step, got, 'too high' | 'too low') at the first step outside the tolerance."""
    bad = np.abs(vals - ref) > tol["atol"] + tol["rtol"] * np.abs(ref)
    i = int(np.argmax(bad))
    return steps[i], vals[i], "too high" if vals[i] > ref[i] else "too low"


# ------------------------------------------------------------------ ex7.2 cosine_lr

def _cos_cases(seed):
    """(label, total_steps, lr_max, lr_min or None for the default, steps)."""
    rng = case_rng(seed, 7201)
    t1 = int(rng.integers(8, 15))
    t2 = int(rng.integers(5, 9))
    t4 = int(rng.integers(40, 61))
    hi1 = float(np.round(rng.uniform(0.05, 0.2), 3))
    hi2 = float(np.round(rng.uniform(1e-3, 5e-3), 5))
    lo2 = float(np.round(rng.uniform(0.02, 0.1) * hi2, 7))
    lo3 = float(np.round(rng.uniform(0.1, 0.4), 2))
    hi4 = float(np.round(rng.uniform(0.3, 0.8), 3))
    lo4 = float(np.round(rng.uniform(0.05, 0.2) * hi4, 4))
    mid = sorted({1, 2, t4 // 5, t4 // 2, (3 * t4) // 4, t4 - 2, t4 - 1, t4, t4 + 1,
                  t4 + t4 // 5, (3 * t4) // 2, 2 * t4 - 1, 2 * t4, 2 * t4 + 1, (5 * t4) // 2})
    return [
        (f"total_steps={t1}, lr_max={hi1}, default lr_min", t1, hi1, None, list(range(2 * t1 + 6))),
        (f"total_steps={t2}, lr_max={hi2}, lr_min={lo2}", t2, hi2, lo2, list(range(3 * t2 + 1))),
        (f"total_steps=1, lr_max=1.0, lr_min={lo3}", 1, 1.0, lo3, list(range(5))),
        (f"total_steps={t4}, lr_max={hi4}, lr_min={lo4}", t4, hi4, lo4, [0] + mid),
    ]


def probe_cosine(cosine_lr, seed):
    out = []
    for _, total, lr_max, lr_min, steps in _cos_cases(seed):
        extra = () if lr_min is None else (lr_min,)
        out.append([capture(cosine_lr, s, total, lr_max, *extra) for s in steps])
    return out


def _cos(s, total, hi, lo):
    return lo + (hi - lo) * (1 + np.cos(np.pi * s / total)) / 2


def _cos_mistakes(steps, total, hi, lo):
    s = np.asarray(steps, dtype=np.float64)
    return [
        (_cos(s + 1, total, hi, lo), "your values are one step ahead: at step 0 the learning "
                                     "rate must be exactly lr_max. Off by one step."),
        (_cos(s - 1, total, hi, lo), "your values are one step behind: at step 0 the learning "
                                     "rate must be exactly lr_max. Off by one step."),
        (_cos(s, total, hi, 0.0), "your schedule ignores lr_min: it ends at 0 instead of "
                                  "lr_min. The cosine runs between lr_max and lr_min."),
        (_cos(s, total, hi - lo, 0.0), "lr_min is subtracted but never added back: the "
                                       "schedule must end at lr_min, not at 0."),
        (lo + (hi - lo) * np.cos(np.pi / 2 * s / total),
         "this is a quarter cosine: it starts steep and ends steep. The schedule is half a "
         "cosine period, shifted and scaled to run from lr_max down to lr_min, flat at both "
         "ends (at step total_steps the cosine has turned by pi, not pi/2)."),
        (hi * np.cos(np.pi / 2 * s / total),
         "this is a quarter cosine that also ignores lr_min: the schedule is half a cosine "
         "period, from lr_max down to lr_min, flat at both ends."),
        (_cos(np.minimum(s, total), total, hi, lo),
         "your schedule stays at lr_min after total_steps (it clamps the step). "
         "CosineAnnealingLR does not clamp: past total_steps the cosine continues and the "
         "learning rate rises again towards lr_max (at 2 * total_steps it is back at lr_max)."),
        (lo + (hi - lo) * (1 - np.cos(np.pi * s / total)) / 2,
         "your schedule goes the wrong way: it starts at lr_min and rises. At step 0 the "
         "learning rate is lr_max."),
        (lo + (hi - lo) * (1 + np.cos(s / total)) / 2,
         "the cosine's argument is missing a factor pi: over total_steps it must turn by half "
         "a period (pi), so that it ends exactly at lr_min."),
    ]


def judge_cosine(data, seed):
    for (label, total, lr_max, lr_min, steps), got in zip(_cos_cases(seed), data, strict=True):
        lo = 0.0 if lr_min is None else lr_min
        for s, g in zip(steps, got, strict=True):
            if s <= total:
                unwrap(g)                      # an error before total_steps is just an error
        for s, g in zip(steps, got, strict=True):
            if isinstance(g, Raised) and s > total:
                raise Fail(f"{label}: cosine_lr raised for step {s} > total_steps ({g}). "
                           "Steps past total_steps are allowed: like CosineAnnealingLR, the "
                           "cosine simply continues (the learning rate rises again).")
        vals = _lrs_from(got, steps, "cosine_lr")
        ref = _scheduler_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(
            o, T_max=total, eta_min=lo), lr_max, max(steps) + 1)[steps]
        tol = _tol(lr_max)
        if close(vals, ref, **tol):
            continue
        match_mistake(label, vals, _cos_mistakes(steps, total, lr_max, lo), **tol)
        s, g, how = _first_off(vals, ref, steps, tol)
        past = " (past total_steps)" if s > total else ""
        raise Fail(f"{label}: at step {s}{past} your learning rate {g:.6g} is {how}: it does "
                   "not follow CosineAnnealingLR there. Check the value at step 0 (lr_max), at "
                   "total_steps (lr_min) and halfway (the mean of the two).")
    return None


exercise("ex7.2", "cosine_lr", probe_cosine, judge_cosine, forbid=_SCHEDULERS,
         forbid_hint="the learning rate at a step is a closed-form function of the step: a "
                     "cosine, shifted and scaled between lr_max and lr_min (math.cos is all "
                     "you need).",
         source_words=_SCHEDULER_WORDS)


# ------------------------------------------------------------------ ex7.3 warmup_cosine_lr

def _wc_cases(seed):
    """(label, warmup_steps, total_steps, lr_max, lr_min or None for the default); every case
    is judged at steps 0..total_steps."""
    rng = case_rng(seed, 7301)
    w1, t1 = int(rng.integers(3, 7)), int(rng.integers(18, 31))
    t2 = int(rng.integers(6, 12))
    t3 = int(rng.integers(5, 10))
    w4, t4 = int(rng.integers(8, 15)), int(rng.integers(50, 81))
    hi = [float(np.round(rng.uniform(a, b), 5)) for a, b in
          ((0.05, 0.2), (1e-3, 5e-3), (0.5, 1.0), (2e-4, 8e-4))]
    lo = [None, float(np.round(rng.uniform(0.05, 0.2) * hi[1], 7)),
          float(np.round(rng.uniform(0.1, 0.3) * hi[2], 4)),
          float(np.round(rng.uniform(0.02, 0.1) * hi[3], 8))]
    return [
        (f"warmup_steps={w1}, total_steps={t1}, lr_max={hi[0]}, default lr_min", w1, t1, hi[0], lo[0]),
        (f"warmup_steps=1, total_steps={t2}, lr_max={hi[1]}, lr_min={lo[1]}", 1, t2, hi[1], lo[1]),
        (f"warmup_steps={t3 - 1}, total_steps={t3}, lr_max={hi[2]}, lr_min={lo[2]}", t3 - 1, t3, hi[2], lo[2]),
        (f"warmup_steps={w4}, total_steps={t4}, lr_max={hi[3]}, lr_min={lo[3]}", w4, t4, hi[3], lo[3]),
    ]


def probe_warmup_cosine(warmup_cosine_lr, seed):
    out = []
    for _, w, total, lr_max, lr_min in _wc_cases(seed):
        extra = () if lr_min is None else (lr_min,)
        out.append([capture(warmup_cosine_lr, s, w, total, lr_max, *extra)
                    for s in range(total + 1)])
    return out


def _sequential(w, total, lr_max, lr_min):
    S = torch.optim.lr_scheduler
    return _scheduler_lrs(lambda o: S.SequentialLR(
        o, [S.LinearLR(o, start_factor=1 / w, total_iters=w - 1),
            S.CosineAnnealingLR(o, T_max=total - w, eta_min=lr_min)], milestones=[w]),
        lr_max, total + 1)


def _wc_mistakes(w, total, hi, lo):
    s = np.arange(total + 1, dtype=np.float64)
    warm = hi * (s + 1) / w

    def sched(warm_part, cos_part, cut=w):
        return np.where(s < cut, warm_part, cos_part)

    return [
        (sched(hi * s / w, _cos(s - w, total - w, hi, lo)),
         "your warmup starts at 0: at step 0 the learning rate is 0, so the first step "
         "changes nothing. Step 0 is the first of warmup_steps equal rises, and the last warmup "
         "step (step warmup_steps - 1) already reaches lr_max."),
        (sched(warm, _cos(s - w, total - w, hi, lo), cut=w + 1),
         "off by one at the milestone: at step warmup_steps the warmup should be over "
         "(the cosine starts there, at lr_max), but your warmup is still rising."),
        (sched(warm, _cos(s - w + 1, total - w, hi, lo)),
         "off by one at the milestone: your cosine starts one step late in its own count "
         "(at step warmup_steps it is already past lr_max). The cosine's own step counter "
         "is 0 at step warmup_steps."),
        (sched(warm, _cos(s - w - 1, total - w, hi, lo)),
         "off by one at the milestone: your cosine's own step counter is behind by one."),
        (sched(warm, _cos(s, total - w, hi, lo)),
         "your cosine uses the global step: it must count its steps from the end of the "
         "warmup, not from step 0."),
        (sched(warm, _cos(s - w, total, hi, lo)),
         "your cosine runs over total_steps steps, but only total_steps - warmup_steps are "
         "left after the warmup: it does not reach lr_min at step total_steps."),
        (sched(warm, _cos(s, total, hi, lo)),
         "your cosine runs over the whole of total_steps from step 0: it must start at the "
         "end of the warmup and last only the steps that are left."),
        (sched(warm, _cos(s - w, total - w, hi, 0.0)),
         "your schedule ignores lr_min: the cosine part must end at lr_min, not at 0."),
        (sched((hi - lo) * (s + 1) / w, _cos(s - w, total - w, hi, lo)),
         "your warmup rises to lr_max - lr_min, not to lr_max: the warmup scales lr_max "
         "alone (LinearLR multiplies the base learning rate); lr_min plays no part in it."),
        (sched(lo + (hi - lo) * (s + 1) / w, _cos(s - w, total - w, hi, lo)),
         "your warmup runs from lr_min up: LinearLR multiplies lr_max by a factor that grows "
         "in equal steps, so lr_min plays no part in the warmup."),
    ]


def judge_warmup_cosine(data, seed):
    for (label, w, total, lr_max, lr_min), got in zip(_wc_cases(seed), data, strict=True):
        lo = 0.0 if lr_min is None else lr_min
        steps = list(range(total + 1))
        for g in got:
            unwrap(g)
        vals = _lrs_from(got, steps, "warmup_cosine_lr")
        ref = _sequential(w, total, lr_max, lo)
        tol = _tol(lr_max)
        if close(vals, ref, **tol):
            continue
        match_mistake(label, vals, _wc_mistakes(w, total, lr_max, lo), **tol)
        s, g, how = _first_off(vals, ref, steps, tol)
        part = "warmup" if s < w else ("first step of the cosine" if s == w else "cosine")
        raise Fail(f"{label}: at step {s} (the {part}) your learning rate {g:.6g} is {how}: "
                   "it does not follow SequentialLR(LinearLR, CosineAnnealingLR) there. Check "
                   "step 0, the last warmup step, step warmup_steps and step total_steps.")
    return None


exercise("ex7.3", "warmup_cosine_lr", probe_warmup_cosine, judge_warmup_cosine,
         forbid=_SCHEDULERS,
         forbid_hint="write both phases as closed-form functions of the step: a straight "
                     "line up to lr_max, then the cosine of ex7.2 over the steps that are left "
                     "(calling your own cosine_lr is fine).",
         source_words=_SCHEDULER_WORDS)
