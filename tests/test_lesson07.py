"""Lesson 07 checks and explorer: correct answers written in different ways pass, common
mistakes fail with a hint, and the early-stopping explorer computes what it shows."""

import copy
import io
import math

import numpy as np
import pytest
import torch

from helpers.checks import run


def verdict(ex, answer):
    return run(ex, answer)[0]


# ---------------------------------------------------------------- ex7.1 EarlyStopping

class ESReference:
    def __init__(self, patience, min_delta=0.0):
        self.patience, self.min_delta = patience, min_delta
        self.best_loss, self.best_epoch = float("inf"), None
        self.counter, self.epoch, self.best_state = 0, -1, None

    def step(self, val_loss, model):
        self.epoch += 1
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.counter = val_loss, self.epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.counter += 1
        return self.counter >= self.patience

    def restore_best(self, model):
        model.load_state_dict(self.best_state)


class ESWholeModel:
    """Keeps a deep copy of the whole module; counts epochs since the best from a history."""

    def __init__(self, patience, min_delta=0.0):
        self.patience, self.min_delta = patience, min_delta
        self.losses = []
        self.best_loss = math.inf
        self.best_epoch = None
        self._best_model = None

    def step(self, val_loss, model):
        self.losses.append(val_loss)
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss = val_loss
            self.best_epoch = len(self.losses) - 1
            self._best_model = copy.deepcopy(model)
        return (len(self.losses) - 1 - self.best_epoch) >= self.patience

    def restore_best(self, model):
        model.load_state_dict(self._best_model.state_dict())


class ESCloneAndBytes:
    """Clones tensors by hand into a buffer via torch.save; returns a NumPy bool."""

    def __init__(self, patience, min_delta=0.0):
        self.patience = patience
        self.min_delta = min_delta
        self.best_loss = np.inf
        self.best_epoch = None
        self.n = 0
        self.wait = 0
        self.blob = None

    def step(self, val_loss, model):
        if self.best_loss - val_loss > self.min_delta:
            self.best_loss, self.best_epoch, self.wait = val_loss, self.n, 0
            buf = io.BytesIO()
            torch.save({k: v.clone() for k, v in model.state_dict().items()}, buf)
            self.blob = buf.getvalue()
        else:
            self.wait += 1
        self.n += 1
        return np.bool_(self.wait >= self.patience)

    def restore_best(self, model):
        model.load_state_dict(torch.load(io.BytesIO(self.blob)))


class ESCopyInPlace:
    """Saves clones of every state tensor and copies them back with copy_()."""

    def __init__(self, patience, min_delta=0.0):
        self.patience, self.min_delta = patience, min_delta
        self.best_loss, self.best_epoch = float("inf"), None
        self._k, self._bad, self._saved = 0, 0, None

    def step(self, val_loss, model):
        improved = val_loss < self.best_loss - self.min_delta
        if improved:
            self.best_loss, self.best_epoch, self._bad = val_loss, self._k, 0
            self._saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self._bad += 1
        self._k += 1
        return bool(self._bad >= self.patience)

    def restore_best(self, model):
        with torch.no_grad():
            for k, v in model.state_dict().items():
                v.copy_(self._saved[k])


@pytest.mark.parametrize("cls", [ESReference, ESWholeModel, ESCloneAndBytes, ESCopyInPlace])
def test_ex71_correct(cls):
    v = verdict("ex7.1", cls)
    assert v.passed, v.text()


def _variant(**overrides):
    """A subclass of the reference with one method replaced."""
    return type("ESMistake", (ESReference,), overrides)


def _never_restores(self, model):
    pass


def _aliases_step(self, val_loss, model):
    self.epoch += 1
    if val_loss < self.best_loss - self.min_delta:
        self.best_loss, self.best_epoch, self.counter = val_loss, self.epoch, 0
        self.best_state = model.state_dict()          # a view, not a copy
    else:
        self.counter += 1
    return self.counter >= self.patience


def _shallow_copy_step(self, val_loss, model):
    self.epoch += 1
    if val_loss < self.best_loss - self.min_delta:
        self.best_loss, self.best_epoch, self.counter = val_loss, self.epoch, 0
        self.best_state = dict(model.state_dict())    # a new dict, the same tensors
    else:
        self.counter += 1
    return self.counter >= self.patience


def _late_step(self, val_loss, model):
    self.epoch += 1
    if val_loss < self.best_loss - self.min_delta:
        self.best_loss, self.best_epoch, self.counter = val_loss, self.epoch, 0
        self.best_state = copy.deepcopy(model.state_dict())
    else:
        self.counter += 1
    return self.counter > self.patience


def _no_reset_step(self, val_loss, model):
    self.epoch += 1
    if val_loss < self.best_loss - self.min_delta:
        self.best_loss, self.best_epoch = val_loss, self.epoch
        self.best_state = copy.deepcopy(model.state_dict())
    else:
        self.counter += 1
    return self.counter >= self.patience


def _no_min_delta_step(self, val_loss, model):
    self.epoch += 1
    if val_loss < self.best_loss:
        self.best_loss, self.best_epoch, self.counter = val_loss, self.epoch, 0
        self.best_state = copy.deepcopy(model.state_dict())
    else:
        self.counter += 1
    return self.counter >= self.patience


def _ties_step(self, val_loss, model):
    self.epoch += 1
    if val_loss <= self.best_loss - self.min_delta:
        self.best_loss, self.best_epoch, self.counter = val_loss, self.epoch, 0
        self.best_state = copy.deepcopy(model.state_dict())
    else:
        self.counter += 1
    return self.counter >= self.patience


def _one_based_step(self, val_loss, model):
    self.epoch += 1
    if val_loss < self.best_loss - self.min_delta:
        self.best_loss, self.best_epoch, self.counter = val_loss, self.epoch + 1, 0
        self.best_state = copy.deepcopy(model.state_dict())
    else:
        self.counter += 1
    return self.counter >= self.patience


def _saves_every_step(self, val_loss, model):
    self.epoch += 1
    self.best_state = copy.deepcopy(model.state_dict())
    if val_loss < self.best_loss - self.min_delta:
        self.best_loss, self.best_epoch, self.counter = val_loss, self.epoch, 0
    else:
        self.counter += 1
    return self.counter >= self.patience


def _params_only_step(self, val_loss, model):
    self.epoch += 1
    if val_loss < self.best_loss - self.min_delta:
        self.best_loss, self.best_epoch, self.counter = val_loss, self.epoch, 0
        self.best_state = [p.detach().clone() for p in model.parameters()]
    else:
        self.counter += 1
    return self.counter >= self.patience


def _params_only_restore(self, model):
    with torch.no_grad():
        for p, b in zip(model.parameters(), self.best_state):
            p.copy_(b)


def _assign_restore(self, model):
    model.load_state_dict(self.best_state, assign=True)   # the model now uses the saved tensors


def _returns_none(self, val_loss, model):
    if ESReference.step(self, val_loss, model):
        return True


def _no_init_attrs(self, patience, min_delta=0.0):
    self.patience, self.min_delta = patience, min_delta
    self.best_loss, self.best_epoch = None, None
    self.counter, self.epoch, self.best_state = 0, -1, None


def _step_from_none(self, val_loss, model):
    if self.best_loss is None:
        self.best_loss = float("inf")
    return ESReference.step(self, val_loss, model)


def _epoch_minus_one(self, patience, min_delta=0.0):
    ESReference.__init__(self, patience, min_delta)
    self.best_epoch = -1


@pytest.mark.parametrize("cls,hint", [
    (_variant(restore_best=_never_restores), "never restores"),
    (_variant(step=_aliases_step), "state_dict() is not a copy"),
    (_variant(step=_shallow_copy_step), "state_dict() is not a copy"),
    (_variant(step=_late_step), "one step too late"),
    (_variant(step=_no_reset_step), "never reset"),
    (_variant(step=_no_min_delta_step), "ignores min_delta"),
    (_variant(step=_ties_step), "Ties count as no improvement"),
    (_variant(step=_one_based_step), "1-based"),
    (_variant(step=_saves_every_step), "exactly when the loss improves"),
    (_variant(step=_params_only_step, restore_best=_params_only_restore), "buffers"),
    (_variant(restore_best=_assign_restore), "changed your saved copy"),
    (_variant(step=_returns_none), "returned None"),
    (_variant(__init__=_no_init_attrs, step=_step_from_none), "should be inf"),
    (_variant(__init__=_epoch_minus_one), "best_epoch should be None"),
])
def test_ex71_mistakes(cls, hint):
    v = verdict("ex7.1", cls)
    assert v.status == "failed" and hint in v.message, v.text()


def test_ex71_missing_attribute():
    class NoBest(ESReference):
        def __init__(self, patience, min_delta=0.0):
            super().__init__(patience, min_delta)
            del self.best_epoch
    v = verdict("ex7.1", NoBest)
    assert v.status == "failed" and "no attribute best_epoch" in v.message, v.text()


def test_ex71_stub_is_reported():
    class Stub:
        def __init__(self, patience, min_delta=0.0):
            raise NotImplementedError("ex7.1: write your answer here")
    v = verdict("ex7.1", Stub)
    assert v.status == "error" and "still the stub" in v.message, v.text()


def test_ex71_record_is_small_and_judged_again():
    import json

    from helpers.checks import get
    v, record = run("ex7.1", ESReference)
    payload = json.dumps(record)
    assert len(payload) < 2_000_000
    again = get("ex7.1").run_judge(json.loads(payload))
    assert again.passed and v.passed


# ---------------------------------------------------------------- ex7.2 cosine_lr

def cos_reference(step, total_steps, lr_max, lr_min=0.0):
    return lr_min + (lr_max - lr_min) * (1 + math.cos(math.pi * step / total_steps)) / 2


def cos_numpy(step, total_steps, lr_max, lr_min=0.0):
    frac = np.float64(step) / total_steps
    return float(lr_min + 0.5 * (lr_max - lr_min) * (1.0 + np.cos(np.pi * frac)))


def cos_torch32(step, total_steps, lr_max, lr_min=0.0):
    t = torch.tensor(step / total_steps, dtype=torch.float32)
    return (lr_min + (lr_max - lr_min) * (1 + torch.cos(torch.pi * t)) / 2).item()


def cos_sin_form(step, total_steps, lr_max, lr_min=0.0):
    # 1 + cos(x) = 2 cos(x/2)^2
    return lr_min + (lr_max - lr_min) * math.cos(math.pi * step / (2 * total_steps)) ** 2


def cos_scheduler(step, total_steps, lr_max, lr_min=0.0):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr_max)
    sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps, eta_min=lr_min)
    for _ in range(step):
        opt.step()
        sch.step()
    return sch.get_last_lr()[0]


@pytest.mark.parametrize("fn", [cos_reference, cos_numpy, cos_torch32, cos_sin_form, cos_scheduler])
def test_ex72_correct(fn):
    v = verdict("ex7.2", fn)
    assert v.passed, v.text()


@pytest.mark.parametrize("fn,hint", [
    (lambda s, T, hi, lo=0.0: cos_reference(s + 1, T, hi, lo), "Off by one step"),
    (lambda s, T, hi, lo=0.0: cos_reference(s - 1, T, hi, lo), "Off by one step"),
    (lambda s, T, hi, lo=0.0: hi * (1 + math.cos(math.pi * s / T)) / 2, "ignores lr_min"),
    (lambda s, T, hi, lo=0.0: lo + (hi - lo) * math.cos(math.pi / 2 * s / T), "quarter cosine"),
    (lambda s, T, hi, lo=0.0: hi * math.cos(math.pi / 2 * s / T), "quarter cosine"),
    (lambda s, T, hi, lo=0.0: cos_reference(min(s, T), T, hi, lo), "clamps"),
    (lambda s, T, hi, lo=0.0: lo if s >= T else cos_reference(s, T, hi, lo), "clamps"),
    (lambda s, T, hi, lo=0.0: lo + (hi - lo) * (1 - math.cos(math.pi * s / T)) / 2, "wrong way"),
    (lambda s, T, hi, lo=0.0: (hi - lo) * (1 + math.cos(math.pi * s / T)) / 2, "never added back"),
    (lambda s, T, hi, lo=0.0: lo + (hi - lo) * (1 + math.cos(s / T)) / 2, "expected the learning rate"),
])
def test_ex72_mistakes(fn, hint):
    v = verdict("ex7.2", fn)
    assert v.status == "failed" and hint in v.message, v.text()


def test_ex72_raising_past_total_is_explained():
    def strict(s, T, hi, lo=0.0):
        assert s <= T, "step past total_steps"
        return cos_reference(s, T, hi, lo)
    v = verdict("ex7.2", strict)
    assert v.status == "failed" and "Steps past total_steps are allowed" in v.message, v.text()


def test_ex72_stub_is_reported():
    def stub(step, total_steps, lr_max, lr_min=0.0):
        raise NotImplementedError("ex7.2: write your answer here")
    v = verdict("ex7.2", stub)
    assert v.status == "error" and "still the stub" in v.message, v.text()


# ---------------------------------------------------------------- the early-stopping explorer

def _brute_force(losses, patience, min_delta, every):
    """Replays the rule check by check; 1-based (best_epoch, stop_epoch or None)."""
    best, best_e, bad = np.inf, None, 0
    for e in range(1, len(losses) + 1):
        if e % every:
            continue
        if losses[e - 1] < best - min_delta:
            best, best_e, bad = losses[e - 1], e, 0
        else:
            bad += 1
            if bad == patience:
                return best_e, e
    return best_e, None


def _curve():
    rng = np.random.default_rng(7)
    e = np.arange(1, 121)
    return 0.4 + 1.6 * np.exp(-e / 12) + 0.002 * e + 0.02 * rng.standard_normal(len(e))


@pytest.mark.parametrize("patience,min_delta,every", [(1, 0.0, 1), (3, 0.0, 1), (5, 0.01, 1),
                                                      (4, 0.0, 3), (10, 0.02, 2), (30, 0.0, 1)])
def test_early_stopping_point_matches_the_rule(patience, min_delta, every):
    from helpers.widgets import early_stopping_point
    v = _curve()
    assert early_stopping_point(v, patience, min_delta, every) == _brute_force(v, patience, min_delta, every)


def test_early_stopping_point_ties_and_never_stopping():
    from helpers.widgets import early_stopping_point
    assert early_stopping_point([1.0, 0.5, 0.5, 0.5], patience=2) == (2, 4)     # ties do not improve
    assert early_stopping_point([1.0, 0.9, 0.8], patience=2) == (3, None)
    assert early_stopping_point([1.0, 0.97, 0.96, 0.9], patience=2, min_delta=0.05) == (1, 3)


def test_explorer_numbers_follow_the_sliders():
    import matplotlib
    matplotlib.use("Agg")
    from helpers.training import History
    from helpers.widgets import EarlyStoppingExplorer

    v = _curve()
    h = History(epoch=list(range(1, len(v) + 1)), train_loss=list(v * 0.5), val_loss=list(v),
                train_acc=[None] * len(v), val_acc=list(1 - v / 4))
    ex = EarlyStoppingExplorer(h, patience=1)
    assert ex.min_epoch == int(np.argmin(v)) + 1 and ex.min_val_loss == pytest.approx(v.min())
    first = (ex.best_epoch, ex.stop_epoch, ex.wasted_epochs, ex.regret)
    assert (ex.best_epoch, ex.stop_epoch) == _brute_force(v, 1, 0.0, 1)
    assert ex.wasted_epochs == ex.stop_epoch - ex.best_epoch == 1
    assert ex.best_val_acc == pytest.approx(1 - v[ex.best_epoch - 1] / 4)
    ex.patience.value = 20                      # more patience: stops later, never a worse best
    assert ex.stop_epoch is None or ex.stop_epoch > first[1]
    assert ex.best_val_loss <= v[first[0] - 1] and ex.regret <= first[3]
    assert ex.wasted_epochs == ex.epochs_run - ex.best_epoch
    assert str(ex.wasted_epochs) in ex.numbers.value
    ex.min_delta.value = 0.05                   # a large min_delta stops earlier on this curve
    assert (ex.best_epoch, ex.stop_epoch) == _brute_force(v, 20, 0.05, 1)
    ex.min_delta.value = 0.0
    ex.check_every.value = 5
    assert ex.best_epoch % 5 == 0
    assert (ex.best_epoch, ex.stop_epoch) == _brute_force(v, 20, 0.0, 5)


def test_explorer_accepts_a_plain_list():
    import matplotlib
    matplotlib.use("Agg")
    from helpers.widgets import EarlyStoppingExplorer

    ex = EarlyStoppingExplorer([1.0, 0.8, 0.9, 0.95, 0.99], patience=2)
    assert (ex.best_epoch, ex.stop_epoch, ex.wasted_epochs) == (2, 4, 2)
    assert ex.best_val_acc is None and ex.regret == pytest.approx(0.0)
