"""Checks for lesson 07 (early stopping, LR schedules): ex7.1 EarlyStopping, ex7.2 cosine_lr.

ex7.1: the probe drives the learner's class on fixed sequences of validation losses (ties,
improvements smaller than ``min_delta``, patience 1 to 3) with a small model whose whole
state the probe overwrites in place before every step, so each step's weights are
recognisable. It records what ``step`` returned, ``best_loss``/``best_epoch`` after each
step, the state after ``restore_best`` and again after the model was changed in place and
restored once more. The judge replays the rule itself and, on a mismatch, replays the common
mistakes to name the one that reproduces the answer.

ex7.2: the judge steps ``torch.optim.lr_scheduler.CosineAnnealingLR`` itself (its learning
rates are Python floats) and compares, steps past ``total_steps`` included.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from helpers.checks.core import (Fail, Raised, Value, as_array, as_float, capture, close, encode,
                                 exercise, max_err, unwrap)
from helpers.checks.core import _learner_frame

# ------------------------------------------------------------------ ex7.1

_MISSING = {"__missing__": True}
_STEP = 0.125      # each step's state is base + (k + 1) * _STEP (exact in float32)
_POST = 100.0      # the state the model is left in after the last step, before restore_best
_LATER = 50.0625   # added in place after the first restore, to see whether it leaks


def _es_cases():
    """(label, patience, min_delta or None for the default, validation losses)."""
    return [
        ("patience=3, default min_delta, with ties", 3, None,
         [1.0, 0.9, 0.9, 0.95, 0.85, 0.85, 0.87, 0.85, 0.86, 0.8]),
        ("patience=1", 1, 0.0, [0.5, 0.4, 0.45, 0.3, 0.2]),
        ("patience=3, min_delta=0.05", 3, 0.05,
         [1.0, 0.97, 0.93, 0.96, 0.90, 0.80, 0.78, 0.79, 0.77, 0.76, 0.70]),
        ("patience=2, min_delta=0.05, improvements of 0.01 per step", 2, 0.05,
         [1.0, 0.99, 0.98, 0.97, 0.96, 0.95]),
        ("patience=3, the first step is the best", 3, 0.0, [0.5, 0.6, 0.7, 0.8, 0.9]),
        ("patience=3, every step improves", 3, 0.0, [0.9, 0.8, 0.7, 0.6]),
    ]


def _es_model():
    """A tiny fixed model with parameters *and* buffers: Linear(3, 2) -> BatchNorm1d(2)."""
    import torch
    from torch import nn

    torch.manual_seed(707)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def _es_base():
    """``{name: float64 array}``: the base values of the model's floating-point state entries."""
    import torch

    g = torch.Generator().manual_seed(7071)
    out = {}
    for name, t in _es_model().state_dict().items():
        if t.is_floating_point():
            out[name] = (torch.round(torch.randn(t.shape, generator=g, dtype=torch.float64) * 64)
                         / 64).numpy()
    return out


def _es_state(k):
    """The state at step ``k`` (0-based); ``k = None`` is the post-training state."""
    off = _POST if k is None else (k + 1) * _STEP
    return {name: b + off for name, b in _es_base().items()}


def _set_state(model, k):
    import torch

    with torch.no_grad():
        sd = model.state_dict()
        for name, arr in _es_state(k).items():
            sd[name].copy_(torch.as_tensor(arr, dtype=sd[name].dtype))
        for name, t in sd.items():
            if not t.is_floating_point():          # num_batches_tracked
                t.fill_(0 if k is None else k + 1)


def _read_state(model):
    return {name: t.detach().clone() for name, t in model.state_dict().items()
            if t.is_floating_point()}


def _storages(obj, depth=0, seen=None):
    """Storage addresses of every tensor reachable from ``obj`` (dicts, sequences, modules, attributes)."""
    import torch
    from torch import nn

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
    found = set()
    if isinstance(obj, dict):
        items = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        items = list(obj)
    elif hasattr(obj, "__dict__") and depth == 0:
        items = list(vars(obj).values())
    else:
        items = []
    for v in items:
        found |= _storages(v, depth + 1, seen)
    return found


def _attr(obj, name):
    try:
        return encode(getattr(obj, name)) if hasattr(obj, name) else _MISSING
    except Exception as e:  # noqa: BLE001 - a property that raises
        return {"__raised__": f"{type(e).__name__}: {e}"[:500], "__where__": _learner_frame(e)}


def _raised(e):
    return {"__raised__": f"{type(e).__name__}: {e}"[:500], "__where__": _learner_frame(e)}


def probe_early_stopping(EarlyStopping):
    import torch

    out = []
    for _, patience, min_delta, losses in _es_cases():
        rec = {}
        out.append(rec)
        try:
            es = EarlyStopping(patience) if min_delta is None else EarlyStopping(patience, min_delta=min_delta)
        except Exception as e:  # noqa: BLE001
            rec["init_raised"] = _raised(e)
            continue
        rec["init"] = {"best_loss": _attr(es, "best_loss"), "best_epoch": _attr(es, "best_epoch")}
        model = _es_model()
        steps = []
        rec["steps"] = steps
        for k, v in enumerate(losses):
            _set_state(model, k)
            try:
                ret = es.step(float(v), model)
            except Exception as e:  # noqa: BLE001
                steps.append({"ret": _raised(e)})
                break
            entry = {"ret": encode(ret), "best_loss": _attr(es, "best_loss"),
                     "best_epoch": _attr(es, "best_epoch")}
            steps.append(entry)
            try:
                stop = bool(ret)
            except Exception:  # noqa: BLE001 - e.g. a tensor of several elements
                break
            if stop:
                break
        if steps and isinstance(steps[-1].get("ret"), dict) and "__raised__" in steps[-1]["ret"]:
            continue
        _set_state(model, None)
        model_storages = {t.untyped_storage().data_ptr() for t in model.state_dict().values()}
        try:
            rec["aliased"] = bool(_storages(es) & model_storages)
        except Exception:  # noqa: BLE001
            rec["aliased"] = False
        rec["restored"] = capture(lambda: (es.restore_best(model), _read_state(model))[1])
        try:
            with torch.no_grad():
                for t in model.state_dict().values():
                    if t.is_floating_point():
                        t.add_(_LATER)
        except Exception as e:  # noqa: BLE001
            rec["restored_again"] = _raised(e)
            continue
        rec["restored_again"] = capture(lambda: (es.restore_best(model), _read_state(model))[1])
    return out


# the rule and the common mistakes, replayed by the judge

def _simulate(patience, min_delta, losses, variant=None):
    """(returns, best_losses, best_epochs) until the first True, under the rule or a mistake."""
    best, best_epoch, bad, total_bad = math.inf, None, 0, 0
    rets, bls, bes = [], [], []
    for k, v in enumerate(losses):
        if variant == "no_min_delta":
            improved = v < best
        elif variant == "ties":
            improved = v <= best - min_delta
        else:
            improved = v < best - min_delta
        if variant == "best_is_min":
            if improved:
                bad = 0
            else:
                bad += 1
            if v < best:
                best, best_epoch = v, k
        elif improved:
            best, best_epoch, bad = v, k, 0
        else:
            bad += 1
            total_bad += 1
        count = total_bad if variant == "no_reset" else bad
        if variant == "late":
            stop = count > patience
        elif variant == "early":
            stop = count >= patience - 1
        else:
            stop = count >= patience
        rets.append(stop)
        bls.append(best)
        bes.append(None if best_epoch is None else best_epoch + (1 if variant == "one_based" else 0))
        if stop:
            break
    return rets, bls, bes


_VARIANTS = [
    ("late", "step() returned True one step too late: it must return True on the call where "
             "the count of steps without improvement *reaches* patience (count >= patience), "
             "not when it exceeds it. Off by one on patience."),
    ("early", "step() returned True one step too early: with patience p, training stops after "
              "p steps in a row without improvement, not p - 1. Off by one on patience."),
    ("no_reset", "the counter of steps without improvement is never reset: on every "
                 "improvement set it back to 0, so only steps *in a row* without improvement count."),
    ("ties", "a step whose loss *equals* the best so far was counted as an improvement. Ties "
             "count as no improvement: improvement means val_loss < best_loss - min_delta "
             "(strictly less)."),
    ("no_min_delta", "improvements smaller than min_delta were counted: the code ignores "
                     "min_delta. Improvement means val_loss < best_loss - min_delta."),
    ("best_is_min", "best_loss followed every new minimum, also those that did not beat it by "
                    "min_delta. best_loss (and best_epoch, and the saved weights) change only on "
                    "an improvement, val_loss < best_loss - min_delta."),
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
    if isinstance(v, Value) and v.value is not None and v.dtype in ("bool", "bool_"):
        a = np.asarray(v.value)
        if a.size == 1:
            return bool(a.reshape(()))
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


def _which_state(got):
    """Which step's state ``got`` (name -> Value) is: a step index, 'post', or None (neither)."""
    base = _es_base()
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


def judge_early_stopping(data):
    for (label, patience, min_delta, losses), rec in zip(_es_cases(), data, strict=True):
        md = 0.0 if min_delta is None else min_delta
        if "init_raised" in rec:
            unwrap(rec["init_raised"])
        init = rec["init"]
        bl0 = init["best_loss"]
        if _missing(bl0):
            raise Fail("your EarlyStopping has no attribute best_loss (set it in __init__).")
        if not (isinstance(bl0, Value) and bl0.value is not None
                and as_float(bl0, "best_loss") == math.inf):
            shown = "None" if bl0 is None else f"{unwrap(bl0)!r}"
            raise Fail(f"{label}: before the first step, best_loss should be inf (float('inf')), "
                       f"got {shown}: any finite first loss must count as an improvement.")
        be0 = init["best_epoch"]
        if _missing(be0):
            raise Fail("your EarlyStopping has no attribute best_epoch (set it in __init__).")
        if be0 is not None:
            raise Fail(f"{label}: before the first step, best_epoch should be None (no step has "
                       f"been seen yet), got {unwrap(be0)!r}.")

        steps = rec["steps"]
        ref_rets, ref_bl, ref_be = _simulate(patience, md, losses)
        got_rets = []
        for k, s in enumerate(steps):
            got_rets.append(_bool_of(s["ret"], f"{label}, step {k}"))
        if got_rets != ref_rets:
            k = next((i for i, (a, b) in enumerate(zip(got_rets, ref_rets)) if a != b),
                     min(len(got_rets), len(ref_rets)))
            for name, hint in _VARIANTS:
                if _simulate(patience, md, losses, name)[0] == got_rets:
                    raise Fail(f"{label}, val losses {losses}: {hint}")
            if k < len(ref_rets) and k < len(got_rets):
                raise Fail(f"{label}, val losses {losses}: at step {k} (0-based, val_loss "
                           f"{losses[k]}) step() returned {got_rets[k]}, expected "
                           f"{ref_rets[k]}. Improvement means val_loss < best_loss - min_delta; "
                           f"stop when patience steps in a row brought none.")
            raise Fail(f"{label}, val losses {losses}: step() never returned True, expected "
                       f"True at step {len(ref_rets) - 1} (0-based).")
        # best_epoch and best_loss after each step
        got_be = [_epoch_of(s["best_epoch"], "best_epoch") for s in steps]
        if got_be != ref_be:
            if all(g is not None and r is not None and g == r + 1 for g, r in zip(got_be, ref_be)):
                raise Fail(f"{label}: best_epoch is 1-based ({got_be}, expected {ref_be}). It "
                           "counts step calls from 0: the first call is epoch 0.")
            for name, hint in _VARIANTS:
                if name not in ("late", "early") and _simulate(patience, md, losses, name)[2] == got_be:
                    raise Fail(f"{label}, val losses {losses}: {hint}")
            raise Fail(f"{label}, val losses {losses}: best_epoch after each step was {got_be}, "
                       f"expected {ref_be} (0-based index of the step that last improved).")
        got_bl = [_loss_of(s["best_loss"], "best_loss") for s in steps]
        if not close(got_bl, ref_bl, rtol=1e-9, atol=1e-12):
            for name, hint in _VARIANTS:
                sim = _simulate(patience, md, losses, name)[1]
                if len(sim) == len(got_bl) and close(got_bl, sim, rtol=1e-9, atol=1e-12):
                    raise Fail(f"{label}, val losses {losses}: {hint}")
            raise Fail(f"{label}, val losses {losses}: best_loss after each step was "
                       f"{[round(x, 6) for x in got_bl]}, expected {ref_bl}: the loss of the last "
                       "improvement.")

        # restore_best
        best_k = ref_be[-1]
        params, buffers = _which_state(unwrap(rec["restored"]))
        if params != best_k:
            if params == "post":
                if rec.get("aliased"):
                    raise Fail(f"{label}: after restore_best the model still had its latest "
                               "weights, and your object holds tensors that share memory with the "
                               "model: model.state_dict() is not a copy, its tensors are the "
                               "model's own and keep changing with training. Save a deep copy "
                               "(copy.deepcopy(model.state_dict()) or clone every tensor).")
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
        again = _which_state(unwrap(rec["restored_again"]))
        if again != (best_k, best_k):
            if "later" in again:
                raise Fail(f"{label}: after a first restore_best, changing the model in place "
                           "changed your saved copy too (a second restore_best brought back the "
                           "changed weights). restore_best must copy the saved values into the "
                           "model (load_state_dict), not hand the model the saved tensors.")
            raise Fail(f"{label}: a second call of restore_best did not bring back the best "
                       f"weights (step {best_k}).")
    return None


exercise("ex7.1", "EarlyStopping", probe_early_stopping, judge_early_stopping, kind="class")

# ------------------------------------------------------------------ ex7.2

def _cos_cases():
    """(label, total_steps, lr_max, lr_min or None for the default, steps)."""
    return [
        ("total_steps=10, lr_max=0.1, default lr_min", 10, 0.1, None, list(range(26))),
        ("total_steps=7, lr_max=3e-3, lr_min=1e-4", 7, 3e-3, 1e-4, list(range(22))),
        ("total_steps=1, lr_max=1.0, lr_min=0.2", 1, 1.0, 0.2, list(range(5))),
        ("total_steps=50, lr_max=0.5, lr_min=0.05", 50, 0.5, 0.05,
         [0, 1, 2, 10, 25, 37, 48, 49, 50, 51, 60, 75, 99, 100, 101, 130]),
    ]


def probe_cosine(cosine_lr):
    out = []
    for _, total, lr_max, lr_min, steps in _cos_cases():
        if lr_min is None:
            out.append([capture(cosine_lr, s, total, lr_max) for s in steps])
        else:
            out.append([capture(cosine_lr, s, total, lr_max, lr_min) for s in steps])
    return out


def _torch_cosine(total, lr_max, lr_min, n):
    """Learning rates of CosineAnnealingLR after 0..n-1 scheduler steps (Python floats)."""
    import torch

    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr_max)
    sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=lr_min)
    lrs = [opt.param_groups[0]["lr"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(n - 1):
            opt.step()
            sch.step()
            lrs.append(opt.param_groups[0]["lr"])
    return np.array(lrs, dtype=np.float64)


def _cos_variants(steps, total, lr_max, lr_min):
    s = np.asarray(steps, dtype=np.float64)
    f = lambda t: lr_min + (lr_max - lr_min) * (1 + np.cos(np.pi * t / total)) / 2  # noqa: E731
    return [
        (f(s + 1), "your values are one step ahead (step + 1): at step 0 the learning rate "
                   "must be exactly lr_max. Off by one step."),
        (f(s - 1), "your values are one step behind (step - 1): at step 0 the learning rate "
                   "must be exactly lr_max. Off by one step."),
        (lr_max * (1 + np.cos(np.pi * s / total)) / 2,
         "your schedule ignores lr_min: it ends at 0 instead of lr_min. The cosine runs between "
         "lr_max and lr_min: lr_min + (lr_max - lr_min) * (1 + cos(pi * step / total_steps)) / 2."),
        ((lr_max - lr_min) * (1 + np.cos(np.pi * s / total)) / 2,
         "lr_min is subtracted but never added back: the schedule must end at lr_min, not at 0."),
        (lr_min + (lr_max - lr_min) * np.cos(np.pi / 2 * s / total),
         "this is a quarter cosine, cos(pi/2 * step / total_steps). The schedule is half a "
         "cosine period shifted up: (1 + cos(pi * step / total_steps)) / 2, which goes from 1 "
         "to 0 with a flat start and a flat end."),
        (lr_max * np.cos(np.pi / 2 * s / total),
         "this is a quarter cosine, cos(pi/2 * step / total_steps), that also ignores lr_min. "
         "Use lr_min + (lr_max - lr_min) * (1 + cos(pi * step / total_steps)) / 2."),
        (f(np.minimum(s, total)),
         "your schedule stays at lr_min after total_steps (it clamps the step). "
         "CosineAnnealingLR does not clamp: past total_steps the cosine continues and the "
         "learning rate rises again towards lr_max (at 2 * total_steps it is back at lr_max)."),
        (lr_min + (lr_max - lr_min) * (1 - np.cos(np.pi * s / total)) / 2,
         "your schedule goes the wrong way: it starts at lr_min and rises. At step 0 the "
         "learning rate is lr_max; use (1 + cos(...)) / 2, not (1 - cos(...)) / 2."),
    ]


def judge_cosine(data):
    for (label, total, lr_max, lr_min, steps), got in zip(_cos_cases(), data, strict=True):
        lo = 0.0 if lr_min is None else lr_min
        for s, g in zip(steps, got, strict=True):
            if s <= total:
                unwrap(g)                      # an error before total_steps is just an error
        for s, g in zip(steps, got, strict=True):
            if isinstance(g, Raised) and s > total:
                raise Fail(f"{label}: cosine_lr raised for step {s} > total_steps ({g}). "
                           "Steps past total_steps are allowed: like CosineAnnealingLR, the "
                           "cosine simply continues (the learning rate rises again).")
        vals = np.array([as_float(g, f"cosine_lr(step={s}, ...)") for s, g in zip(steps, got)])
        ref = _torch_cosine(total, lr_max, lo, max(steps) + 1)[steps]
        tol = dict(rtol=1e-5, atol=1e-6 * lr_max)   # float32 arithmetic passes too
        if close(vals, ref, **tol):
            continue
        for cand, hint in _cos_variants(steps, total, lr_max, lo):
            if close(vals, cand, **tol):
                raise Fail(f"{label}: {hint}")
        i = int(np.argmax(np.abs(vals - ref) > tol["atol"] + tol["rtol"] * np.abs(ref)))
        past = " (past total_steps)" if steps[i] > total else ""
        raise Fail(f"{label}: at step {steps[i]}{past} expected the learning rate "
                   f"{ref[i]:.6g} (CosineAnnealingLR), got {vals[i]:.6g} (largest difference "
                   f"{max_err(vals, ref):.3g}). The formula is lr_min + (lr_max - lr_min) * "
                   "(1 + cos(pi * step / total_steps)) / 2.")
    return None


exercise("ex7.2", "cosine_lr", probe_cosine, judge_cosine)
