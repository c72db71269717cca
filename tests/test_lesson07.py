"""Lesson 07 checks and explorer: correct answers written in different ways pass at several case
seeds, common mistakes fail at each with a hint that names the mistake (and never shows the
reference expression or the expected value), schedulers from torch are refused, and the
early-stopping explorer computes what it shows."""

import dataclasses
import copy
import io
import math

import numpy as np
import pytest
import torch

from helpers.checks import run


SEEDS = (0, 1, 7, 12345)


def verdict(ex, answer, seed=0):
    return run(ex, answer, seed=seed)[0]


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


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("cls", [ESReference, ESWholeModel, ESCloneAndBytes, ESCopyInPlace])
def test_ex71_correct(cls, seed):
    v = verdict("ex7.1", cls, seed)
    assert v.passed, v.text()


def _variant(**overrides):
    """A subclass of the reference with one method replaced."""
    return type("ESMistake", (ESReference,), overrides)


def _never_restores(self, model):
    pass


def _step(improved=lambda self, val_loss: val_loss < self.best_loss - self.min_delta,
          save=lambda model: copy.deepcopy(model.state_dict()),
          best_epoch=lambda self: self.epoch, reset=True, save_every_epoch=False,
          stop=lambda self: self.counter >= self.patience):
    """ESReference.step with one piece replaced (each mistake below names the piece it gets
    wrong): the improvement test, what is saved, the epoch recorded, whether the counter is
    reset, when the state is saved, the stop rule."""
    def step(self, val_loss, model):
        self.epoch += 1
        if save_every_epoch:
            self.best_state = save(model)
        if improved(self, val_loss):
            self.best_loss, self.best_epoch = val_loss, best_epoch(self)
            if reset:
                self.counter = 0
            if not save_every_epoch:
                self.best_state = save(model)
        else:
            self.counter += 1
        return stop(self)
    return step


_aliases_step = _step(save=lambda model: model.state_dict())               # a view, not a copy
_shallow_copy_step = _step(save=lambda model: dict(model.state_dict()))    # a new dict, the same tensors
_late_step = _step(stop=lambda self: self.counter > self.patience)
_no_reset_step = _step(reset=False)
_no_min_delta_step = _step(improved=lambda self, val_loss: val_loss < self.best_loss)
_ties_step = _step(improved=lambda self, val_loss: val_loss <= self.best_loss - self.min_delta)
_relative_step = _step(improved=lambda self, val_loss: val_loss < self.best_loss * (1 - self.min_delta))
_one_based_step = _step(best_epoch=lambda self: self.epoch + 1)
_saves_every_step = _step(save_every_epoch=True)
_params_only_step = _step(save=lambda model: [p.detach().clone() for p in model.parameters()])


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
    (_variant(step=_relative_step), "relative threshold"),
    (_variant(step=_one_based_step), "1-based"),
    (_variant(step=_saves_every_step), "exactly when the loss improves"),
    (_variant(step=_params_only_step, restore_best=_params_only_restore), "buffers"),
    (_variant(restore_best=_assign_restore), "changed your saved copy"),
    (_variant(step=_returns_none), "returned None"),
    (_variant(__init__=_no_init_attrs, step=_step_from_none), "should be inf"),
    (_variant(__init__=_epoch_minus_one), "best_epoch should be None"),
])
@pytest.mark.parametrize("seed", SEEDS)
def test_ex71_mistakes(cls, hint, seed):
    v = verdict("ex7.1", cls, seed)
    assert v.status == "failed" and hint in v.message, v.text()
    assert "best_loss - min_delta" not in v.message and "best_loss * (1" not in v.message


def test_ex71_cases_keep_their_structure_at_every_seed():
    """The seed moves the losses, never a decision: every variant decides as in the design."""
    from helpers.checks import lesson07 as L
    for seed in (*SEEDS, 3, 99):
        for (label, p, md, design), (_, _, _, losses) in zip(L._ES_DESIGN, L._es_cases(seed)):
            md = 0.0 if md is None else md
            assert L._margin(design, md) >= 0.004, label
            assert [a == b for a in design for b in design] == [a == b for a in losses for b in losses]
            for name in [None] + [n for n, _ in L._VARIANTS]:
                want = L._simulate(p, md, design, name)
                got = L._simulate(p, md, losses, name)
                assert (got[0], got[2]) == (want[0], want[2]), (seed, label, name)
    assert L._es_cases(0) != L._es_cases(1)


def test_ex71_relative_min_delta_is_told_apart_in_both_directions():
    """One case has losses near 2.3 (a relative threshold is larger), one near 0.3 (smaller)."""
    from helpers.checks import lesson07 as L
    near = {label: (p, md, losses) for label, p, md, losses in L._ES_DESIGN}
    for label in ("patience=2, min_delta=0.05, losses near 2.3",
                  "patience=2, min_delta=0.1, losses near 0.3"):
        p, md, losses = near[label]
        assert L._simulate(p, md, losses)[0] != L._simulate(p, md, losses, "relative")[0]


def test_ex71_hard_coded_best_loss_fails_at_another_seed():
    """An answer that reports the published seed's best losses passes the self-check only."""
    from helpers.checks import lesson07 as L
    published = [losses for _, _, _, losses in L._es_cases(0)]

    class HardCoded(ESReference):
        made = 0

        def __init__(self, patience, min_delta=0.0):
            super().__init__(patience, min_delta)
            self.case = published[HardCoded.made % len(published)]
            HardCoded.made += 1

        def step(self, val_loss, model):
            stop = super().step(val_loss, model)
            self.best_loss = self.case[self.best_epoch]
            return stop

    assert verdict("ex7.1", HardCoded, 0).passed
    HardCoded.made = 0
    assert not verdict("ex7.1", HardCoded, 1).passed


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
    assert v.status == "missing" and "not answered yet" in v.message, v.text()


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
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + np.cos(np.pi * frac))   # a NumPy float


def cos_torch32(step, total_steps, lr_max, lr_min=0.0):
    """Right values, but a 0-d float32 tensor: the text asks for a float (fails)."""
    t = torch.tensor(step / total_steps, dtype=torch.float32)
    return lr_min + (lr_max - lr_min) * (1 + torch.cos(torch.pi * t)) / 2


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


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn", [cos_reference, cos_numpy, cos_sin_form])
def test_ex72_correct(fn, seed):
    v = verdict("ex7.2", fn, seed)
    assert v.passed, v.text()


# the reference expression of ex7.2 and ex7.3: no hint may contain any of these
REFERENCE_TEXT = ("1 + cos", "1+cos", "cos(pi * step", "cos(pi*step", "(step + 1) /", "(step+1)/",
                  "step / warmup", "pi * (step")


def _assert_hint(v, hint):
    assert v.status == "failed" and hint in v.message, v.text()
    for text in REFERENCE_TEXT:
        assert text not in v.message, (text, v.message)


COS_MISTAKES = [
    (lambda s, T, hi, lo=0.0: cos_reference(s + 1, T, hi, lo), "Off by one step"),
    (lambda s, T, hi, lo=0.0: cos_reference(s - 1, T, hi, lo), "Off by one step"),
    (lambda s, T, hi, lo=0.0: hi * (1 + math.cos(math.pi * s / T)) / 2, "ignores lr_min"),
    (lambda s, T, hi, lo=0.0: lo + (hi - lo) * math.cos(math.pi / 2 * s / T), "quarter cosine"),
    (lambda s, T, hi, lo=0.0: hi * math.cos(math.pi / 2 * s / T), "quarter cosine"),
    (lambda s, T, hi, lo=0.0: cos_reference(min(s, T), T, hi, lo), "clamps"),
    (lambda s, T, hi, lo=0.0: lo if s >= T else cos_reference(s, T, hi, lo), "clamps"),
    (lambda s, T, hi, lo=0.0: lo + (hi - lo) * (1 - math.cos(math.pi * s / T)) / 2, "wrong way"),
    (lambda s, T, hi, lo=0.0: (hi - lo) * (1 + math.cos(math.pi * s / T)) / 2, "never added back"),
    (lambda s, T, hi, lo=0.0: lo + (hi - lo) * (1 + math.cos(s / T)) / 2, "missing a factor pi"),
    (lambda s, T, hi, lo=0.0: lo + (hi - lo) * (1 + math.cos(math.pi * s / T)) / 2.5, "is too"),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn,hint", COS_MISTAKES)
def test_ex72_mistakes(fn, hint, seed):
    _assert_hint(verdict("ex7.2", fn, seed), hint)


def test_ex72_generic_hint_shows_no_expected_value():
    v = verdict("ex7.2", COS_MISTAKES[-1][0])
    assert "expected" not in v.message and "CosineAnnealingLR" in v.message, v.text()


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
    assert v.status == "missing" and "not answered yet" in v.message, v.text()


def test_ex72_hard_coded_published_values_fail_at_another_seed():
    from helpers.checks import lesson07 as L
    table = {(s, T, hi, 0.0 if lo is None else lo): cos_reference(s, T, hi, 0.0 if lo is None else lo)
             for _, T, hi, lo, steps in L._cos_cases(0) for s in steps}

    def hard_coded(step, total_steps, lr_max, lr_min=0.0):
        return table.get((step, total_steps, lr_max, lr_min), 0.0)

    assert verdict("ex7.2", hard_coded, 0).passed
    assert not verdict("ex7.2", hard_coded, 1).passed


# ---------------------------------------------------------------- refusing torch's schedulers

def _lambda_lr(step, total_steps, lr_max, lr_min=0.0):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr_max)
    f = lambda t: (lr_min + (lr_max - lr_min) * (1 + math.cos(math.pi * t / total_steps)) / 2) / lr_max  # noqa: E731
    sch = torch.optim.lr_scheduler.LambdaLR(opt, f)
    for _ in range(step):
        opt.step()
        sch.step()
    return opt.param_groups[0]["lr"]


def _sequential_answer(step, warmup_steps, total_steps, lr_max, lr_min=0.0):
    S = torch.optim.lr_scheduler
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr_max)
    sch = S.SequentialLR(opt, [S.LinearLR(opt, start_factor=1 / warmup_steps,
                                          total_iters=warmup_steps - 1),
                               S.CosineAnnealingLR(opt, T_max=total_steps - warmup_steps,
                                                   eta_min=lr_min)], milestones=[warmup_steps])
    for _ in range(step):
        opt.step()
        sch.step()
    return opt.param_groups[0]["lr"]


@pytest.mark.parametrize("ex,fn", [("ex7.2", cos_scheduler), ("ex7.2", _lambda_lr),
                                   ("ex7.3", _sequential_answer)])
def test_schedulers_are_refused(ex, fn):
    v = verdict(ex, fn)
    assert v.status == "failed" and "library code this exercise asks you to write" in v.message
    assert "lr_scheduler" in v.message, v.text()


def test_scheduler_names_found_in_the_answer_text():
    from helpers.checks import get
    for ex in ("ex7.2", "ex7.3"):
        e = get(ex)
        assert e.forbidden_in_source("import torch\ndef f(s, T, a, b=0.0):\n"
                                     "    return torch.optim.lr_scheduler.CosineAnnealingLR")
        assert e.forbidden_in_source("from torch.optim.lr_scheduler import SequentialLR")
        assert e.forbidden_in_source("from torch.optim import lr_scheduler")
        honest = ("import math\ndef f(step, total_steps, lr_max, lr_min=0.0):\n"
                  "    return lr_min + (lr_max - lr_min) * (1 + math.cos(math.pi * step / total_steps)) / 2")
        assert e.forbidden_in_source(honest) == []


# ---------------------------------------------------------------- ex7.3 warmup_cosine_lr

def wc_reference(step, warmup_steps, total_steps, lr_max, lr_min=0.0):
    if step < warmup_steps:
        return lr_max * (step + 1) / warmup_steps
    return cos_reference(step - warmup_steps, total_steps - warmup_steps, lr_max, lr_min)


def wc_numpy(step, warmup_steps, total_steps, lr_max, lr_min=0.0):
    warm = lr_max * np.minimum(1.0, (step + 1) / warmup_steps)
    t = max(0, step - warmup_steps) / (total_steps - warmup_steps)
    cos = lr_min + (lr_max - lr_min) * 0.5 * (1 + np.cos(np.pi * t))
    return np.where(step < warmup_steps, warm, cos)[()]                      # a NumPy float


def wc_float32(step, warmup_steps, total_steps, lr_max, lr_min=0.0):
    """Right values as 0-d float32 tensors: the text asks for a float (fails)."""
    s = torch.tensor(float(step), dtype=torch.float32)
    if step < warmup_steps:
        return lr_max * (s + 1) / warmup_steps                                  # 0-d float32
    t = (s - warmup_steps) / (total_steps - warmup_steps)
    return lr_min + (lr_max - lr_min) * (1 + torch.cos(math.pi * t)) / 2


def wc_linear_factor(step, warmup_steps, total_steps, lr_max, lr_min=0.0):
    """LinearLR's own view: a factor from 1/w rising by (1 - 1/w)/(w - 1) per step."""
    if step < warmup_steps:
        start = 1 / warmup_steps
        rise = 0.0 if warmup_steps == 1 else (1 - start) * step / (warmup_steps - 1)
        return lr_max * (start + rise)
    return cos_sin_form(step - warmup_steps, total_steps - warmup_steps, lr_max, lr_min)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn", [wc_reference, wc_numpy, wc_linear_factor])
def test_ex73_correct(fn, seed):
    v = verdict("ex7.3", fn, seed)
    assert v.passed, v.text()


def test_ex73_reference_equals_sequential_lr():
    from helpers.checks import lesson07 as L
    for seed in SEEDS:
        for _, w, T, hi, lo in L._wc_cases(seed):
            lo = 0.0 if lo is None else lo
            assert 1 <= w < T
            ref = L._sequential(w, T, hi, lo)
            ours = [wc_reference(s, w, T, hi, lo) for s in range(T + 1)]
            assert np.allclose(ours, ref, rtol=1e-12, atol=0)


def _wc(warm, cos_shift=0, cos_total=None, lo_used=True, cut=0):
    def fn(step, w, T, hi, lo=0.0):
        if step < w + cut:
            return warm(step, w, hi, lo)
        total = (T - w) if cos_total is None else cos_total(w, T)
        return cos_reference(step - w + cos_shift, total, hi, lo if lo_used else 0.0)
    return fn


_up = lambda s, w, hi, lo: hi * (s + 1) / w   # noqa: E731

WC_MISTAKES = [
    (_wc(lambda s, w, hi, lo: hi * s / w), "warmup starts at 0"),
    (_wc(_up, cut=1), "off by one at the milestone"),
    (_wc(_up, cos_shift=1), "off by one at the milestone"),
    (_wc(_up, cos_total=lambda w, T: T), "only total_steps - warmup_steps are left"),
    (lambda s, w, T, hi, lo=0.0: _up(s, w, hi, lo) if s < w else cos_reference(s, T - w, hi, lo),
     "global step"),
    (_wc(_up, lo_used=False), "ignores lr_min"),
    (_wc(lambda s, w, hi, lo: (hi - lo) * (s + 1) / w), "lr_max - lr_min"),
    (_wc(lambda s, w, hi, lo: lo + (hi - lo) * (s + 1) / w), "from lr_min up"),
    (_wc(lambda s, w, hi, lo: hi * (s + 1) / w * 0.9), "is too low"),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn,hint", WC_MISTAKES)
def test_ex73_mistakes(fn, hint, seed):
    _assert_hint(verdict("ex7.3", fn, seed), hint)


def test_ex73_stub_and_raise():
    def stub(step, warmup_steps, total_steps, lr_max, lr_min=0.0):
        raise NotImplementedError("ex7.3: write your answer here")
    v = verdict("ex7.3", stub)
    assert v.status == "missing" and "not answered yet" in v.message, v.text()


def test_ex73_hard_coded_published_values_fail_at_another_seed():
    from helpers.checks import lesson07 as L
    table = {(s, w, T, hi): wc_reference(s, w, T, hi, 0.0 if lo is None else lo)
             for _, w, T, hi, lo in L._wc_cases(0) for s in range(T + 1)}

    def hard_coded(step, warmup_steps, total_steps, lr_max, lr_min=0.0):
        return table.get((step, warmup_steps, total_steps, lr_max), 0.0)

    assert verdict("ex7.3", hard_coded, 0).passed
    assert not verdict("ex7.3", hard_coded, 1).passed


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


# ---------------------------------------------------------------- helpers the lesson demonstrates with

def _tiny_split(n=40, seed=0):
    from helpers.data import Split
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3 * n, 16, generator=g)
    y = torch.randint(0, 3, (3 * n,), generator=g)
    return Split(x[:n], y[:n], x[n:2 * n], y[n:2 * n], x[2 * n:], y[2 * n:])


def test_early_stopping_callback_follows_the_rule_and_restores_a_copy():
    from helpers.training import History, early_stopping
    model = torch.nn.Linear(2, 1)
    cb = early_stopping(patience=2, min_delta=0.05)
    h = History()
    stops = []
    for epoch, v in enumerate([1.0, 0.9, 0.88, 0.7, 0.69, 0.8], start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        h.val_loss.append(v)
        stops.append(cb(epoch, h, model))
        if stops[-1]:
            break
    assert stops == [False, False, False, False, False, True]
    assert (cb.best_epoch, cb.best_loss) == (4, 0.7)           # 1-based epochs, like train()
    cb.restore(model)
    assert torch.all(model.weight == 4)


def test_lesson_helpers_are_no_answer_to_ex7x():
    """The callback the lesson demonstrates with has another contract than ex7.1's class, and
    the stacked trainer is no schedule: planted as answers, they fail."""
    from helpers.training import early_stopping, train_mlp_settings
    assert not verdict("ex7.1", early_stopping).passed
    assert not verdict("ex7.2", train_mlp_settings).passed
    assert not verdict("ex7.3", train_mlp_settings).passed


def test_train_mlp_settings_pairs_seeds_and_applies_settings():
    from helpers.training import train_mlp_settings
    split = _tiny_split()
    S = torch.optim.lr_scheduler
    runs = train_mlp_settings(split, {"a": {}, "b": {}, "decay": {"weight_decay": 3.0},
                                      "cos": {"scheduler": lambda o: S.CosineAnnealingLR(o, T_max=4)}},
                              seeds=(0, 1), epochs=4, hidden=(8,), lr=1e-2, batch_size=20, track=True)
    a, b = runs["a"], runs["b"]
    assert np.array_equal(a.val_loss, b.val_loss) and np.array_equal(a.test_acc, b.test_acc)
    assert a.val_loss[0] != a.val_loss[1]                                  # seeds differ
    assert not np.array_equal(a.val_loss, runs["decay"].val_loss)
    assert a.val_loss_curve.shape == (2, 4) and a.test_acc_curve.shape == (2, 4)
    want = [1e-2 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert np.allclose(runs["cos"].lr[0], want) and np.allclose(a.lr, 1e-2)
    with pytest.raises(ValueError, match="unknown keys"):
        train_mlp_settings(split, {"x": {"dropuot": 0.5}}, seeds=(0,), epochs=1)


def test_train_mlp_settings_y_train_and_pairing_across_calls():
    """Per-setting labels train side by side; the batch order is the same in a second call
    whatever else the stack holds (dropout draws use their own generator), so a later call pairs
    with an earlier one; early_stopped replays restore-best on the recorded curves."""
    from helpers.training import train_mlp_settings
    split = _tiny_split()
    other = (split.y_train + 1) % int(split.y_train.max() + 1)
    kw = dict(seeds=(0, 1), epochs=5, hidden=(8,), lr=1e-2, batch_size=20, track=True)
    one = train_mlp_settings(split, {"a": {}, "drop": {"dropout": 0.5}, "other": {"y_train": other}}, **kw)
    two = train_mlp_settings(split, {"a": {}}, **kw)
    assert np.array_equal(one["a"].val_loss_curve, two["a"].val_loss_curve)
    assert not np.array_equal(one["a"].val_loss_curve, one["other"].val_loss_curve)
    alone = train_mlp_settings(dataclasses.replace(split, y_train=other), {"x": {}}, **kw)
    assert np.allclose(alone["x"].val_loss_curve, one["other"].val_loss_curve, atol=1e-6)
    val, test, best, stop = one["a"].early_stopped(patience=None)
    curve = one["a"].val_loss_curve
    assert np.array_equal(best, curve.argmin(1) + 1) and np.array_equal(stop, [5, 5])
    assert np.array_equal(test, one["a"].test_acc_curve[[0, 1], best - 1])
    _, _, best1, stop1 = one["a"].early_stopped(patience=1)
    assert (stop1 <= 5).all() and (best1 <= stop1).all()
    with pytest.raises(ValueError, match="y_train has shape"):
        train_mlp_settings(split, {"x": {"y_train": other[:3]}}, seeds=(0,), epochs=1)


def test_shift_index_moves_pixels_and_fills_zeros():
    from helpers.training import _shift_index
    idx = _shift_index(3, 1, "cpu")
    img = torch.cat([torch.arange(1.0, 10.0), torch.zeros(1)])
    down = img[idx[7]].reshape(3, 3)                       # (dy, dx) = (1, 0)
    assert torch.equal(down, torch.tensor([[0.0, 0, 0], [1, 2, 3], [4, 5, 6]]))
    assert torch.equal(img[idx[4]][:9], img[:9])           # (0, 0) is the identity


# ---------------------------------------------------------------- every sentence of the texts

def _float32_item(step, total_steps, lr_max, lr_min=0.0):
    """float32 arithmetic, returned as a Python float: passes (the tolerance is float32's)."""
    return cos_torch32(step, total_steps, lr_max, lr_min).item()


def test_ex72_float32_item_passes():
    for seed in SEEDS[:2]:
        assert verdict("ex7.2", _float32_item, seed).passed


def _returns_tensor(self, val_loss, model):
    return torch.tensor(ESReference.step(self, val_loss, model))


def _step_early(self, val_loss, model):
    self.epoch += 1
    if val_loss < self.best_loss - self.min_delta:
        self.best_loss, self.best_epoch, self.counter = val_loss, self.epoch, 0
        self.best_state = copy.deepcopy(model.state_dict())
    else:
        self.counter += 1
    return self.counter >= self.patience - 1


REQUIREMENTS = {
    "ex7.1": [
        ("step(val_loss, model) -> bool", _variant(step=_returns_tensor), "return a Python bool"),
        ("step returns False (not None) while training goes on", _variant(step=_returns_none),
         "returned None"),
        ("an improvement is val_loss < best_loss - min_delta (a tie is not)",
         _variant(step=_ties_step), "Ties count as no improvement"),
        ("min_delta is an absolute amount", _variant(step=_relative_step), "relative threshold"),
        ("improvements smaller than min_delta do not count", _variant(step=_no_min_delta_step),
         "ignores min_delta"),
        ("save a deep copy of the model's state", _variant(step=_aliases_step),
         "state_dict() is not a copy"),
        ("the whole state, buffers included",
         _variant(step=_params_only_step, restore_best=_params_only_restore), "buffers"),
        ("save on an improvement (and only then)", _variant(step=_saves_every_step),
         "exactly when the loss improves"),
        ("reset the counter on an improvement", _variant(step=_no_reset_step), "never reset"),
        ("return True on the call where the counter reaches patience (not later)",
         _variant(step=_late_step), "one step too late"),
        ("... and not earlier", _variant(step=_step_early), "one step too early"),
        ("restore_best loads the saved best state into the model",
         _variant(restore_best=_never_restores), "never restores"),
        ("restore_best copies the values in", _variant(restore_best=_assign_restore),
         "changed your saved copy"),
        ("best_loss is inf before the first step",
         _variant(__init__=_no_init_attrs, step=_step_from_none), "should be inf"),
        ("best_epoch is None before the first step", _variant(__init__=_epoch_minus_one),
         "best_epoch should be None"),
        ("best_epoch is the 0-based number of the step call", _variant(step=_one_based_step),
         "1-based"),
    ],
    "ex7.2": [
        ("returning the learning rate (a float)", cos_torch32, "return a Python float"),
        ("... not a shape-(1,) tensor",
         lambda s, T, hi, lo=0.0: torch.tensor([cos_reference(s, T, hi, lo)]), "return a Python float"),
        ("equal to CosineAnnealingLR after `step` calls (lr_max at step 0)",
         lambda s, T, hi, lo=0.0: cos_reference(s + 1, T, hi, lo), "Off by one step"),
        ("also for step > total_steps (do not clamp)",
         lambda s, T, hi, lo=0.0: cos_reference(min(s, T), T, hi, lo), "clamps"),
        ("eta_min=lr_min", lambda s, T, hi, lo=0.0: hi * (1 + math.cos(math.pi * s / T)) / 2,
         "ignores lr_min"),
        ("an answer that builds a torch scheduler is refused", cos_scheduler, "lr_scheduler"),
    ],
    "ex7.3": [
        ("returning the learning rate (a float)", wc_float32, "return a Python float"),
        ("where does the warmup start (LinearLR's start_factor = 1 / warmup_steps)",
         _wc(lambda s, w, hi, lo: hi * s / w), "warmup starts at 0"),
        ("at which step does it reach lr_max (total_iters = warmup_steps - 1)",
         _wc(_up, cut=1), "off by one at the milestone"),
        ("the cosine's own step count at the milestone",
         lambda s, w, T, hi, lo=0.0: _up(s, w, hi, lo) if s < w else cos_reference(s, T - w, hi, lo),
         "global step"),
        ("T_max = total_steps - warmup_steps", _wc(_up, cos_total=lambda w, T: T),
         "only total_steps - warmup_steps are left"),
        ("eta_min=lr_min", _wc(_up, lo_used=False), "ignores lr_min"),
        ("an answer that builds a torch scheduler is refused", _sequential_answer, "lr_scheduler"),
    ],
}


@pytest.mark.parametrize("ex,sentence,answer,hint", [
    pytest.param(ex, sentence, answer, hint, id=f"{ex}-{i}")
    for ex, rows in REQUIREMENTS.items() for i, (sentence, answer, hint) in enumerate(rows)])
def test_requirements_enforced(ex, sentence, answer, hint):
    for seed in (0, 1, 12345):
        v = verdict(ex, answer, seed)
        assert v.status == "failed" and hint in v.message, (sentence, seed, v.text())
        for text in REFERENCE_TEXT:
            assert text not in v.message, (text, v.message)


def test_wrapper_of_the_lessons_callback_is_refused():
    """An EarlyStopping that delegates to helpers.training.early_stopping (the lesson's own
    callback, adapted to ex7.1's contract) is refused by core's shortcut rule."""
    from helpers.training import History, early_stopping

    class Wrapped:
        def __init__(self, patience, min_delta=0.0):
            self.cb, self.h, self.n = early_stopping(patience, min_delta), History(), 0
            self.best_loss, self.best_epoch = float("inf"), None

        def step(self, val_loss, model):
            self.n += 1
            self.h.val_loss.append(val_loss)
            stop = self.cb(self.n, self.h, model)
            self.best_loss = self.cb.best_loss
            self.best_epoch = None if self.cb.best_epoch is None else self.cb.best_epoch - 1
            return bool(stop)

        def restore_best(self, model):
            self.cb.restore(model)

    v = verdict("ex7.1", Wrapped)
    if v.passed or "helpers" not in v.message:
        pytest.xfail("core support pending: calls into helpers not refused yet")
    assert v.status == "failed" and "helpers" in v.message, v.text()
