"""Lesson 04 (batch norm): the checks accept correct answers written in different ways,
reject each common mistake with a hint that names it, and the explorer widget responds to
its controls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.checks import get, run

SEEDS = (0, 1, 7, 12345)


def is_stub_verdict(v):
    """The untouched stub: core reports it as `missing` ("not answered yet"); before the lead's
    change of that contract it was an `error` saying "still the stub"."""
    return (v.status == "missing" and "not answered" in v.message) or \
        (v.status == "error" and "still the stub" in v.message)


@pytest.fixture(params=SEEDS)
def seed(request):
    """Every check test runs at several case seeds."""
    return request.param

# some wrong answers below take an unbiased variance of a single value on purpose
pytestmark = pytest.mark.filterwarnings("ignore:var\\(\\):UserWarning")


# ------------------------------------------------------------------ ex4.1: correct answers

def bn_reference(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    dims = [0] + list(range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    if training:
        mean = x.mean(dim=dims)
        var = x.var(dim=dims, unbiased=False)
        n = x.numel() // x.shape[1]
        new_rm = (1 - momentum) * running_mean + momentum * mean
        new_rv = (1 - momentum) * running_var + momentum * var * n / (n - 1)
    else:
        mean, var = running_mean, running_var
        new_rm, new_rv = running_mean, running_var
    x_hat = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + eps)
    return gamma.reshape(shape) * x_hat + beta.reshape(shape), new_rm, new_rv


def bn_numpy(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Written in NumPy, channels moved last, and converted back."""
    a = np.moveaxis(x.numpy(), 1, -1)                   # (..., C)
    flat = a.reshape(-1, a.shape[-1])
    rm, rv = running_mean.numpy().copy(), running_var.numpy().copy()
    if training:
        mu, var = flat.mean(0), flat.var(0)
        rm = rm + momentum * (mu - rm)
        rv = rv + momentum * (flat.var(0, ddof=1) - rv)
    else:
        mu, var = rm, rv
    y = (a - mu) / np.sqrt(var + eps) * gamma.numpy() + beta.numpy()
    return torch.from_numpy(np.moveaxis(y, -1, 1).copy()), torch.from_numpy(rm), torch.from_numpy(rv)


def bn_via_torch(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """F.batch_norm on copies of the buffers (it updates the tensors it is given)."""
    rm, rv = running_mean.clone(), running_var.clone()
    y = F.batch_norm(x, rm, rv, gamma, beta, training, momentum, eps)
    return y, rm, rv


def bn_loop(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """One channel at a time, torch.var_mean with correction, outputs as a list."""
    ys, rms, rvs = [], [], []
    for c in range(x.shape[1]):
        xc = x[:, c]
        if training:
            var, mean = torch.var_mean(xc, correction=0)
            uvar = torch.var(xc, correction=1)
            rms.append(momentum * mean + (1 - momentum) * running_mean[c])
            rvs.append(momentum * uvar + (1 - momentum) * running_var[c])
        else:
            mean, var = running_mean[c], running_var[c]
            rms.append(running_mean[c].clone())
            rvs.append(running_var[c].clone())
        ys.append(gamma[c] * (xc - mean) * torch.rsqrt(var + eps) + beta[c])
    return [torch.stack(ys, 1), torch.stack(rms), torch.stack(rvs)]


@pytest.mark.parametrize("fn", [bn_reference, bn_numpy, bn_loop])
def test_ex41_correct_answers_pass(fn, seed):
    verdict, _ = run("ex4.1", fn, seed=seed)
    assert verdict.status == "passed", verdict.message


def test_ex41_stub_is_reported(seed):
    def stub(*args, **kwargs):
        raise NotImplementedError("ex4.1: write your answer here")
    verdict, _ = run("ex4.1", stub, seed=seed)
    assert is_stub_verdict(verdict), verdict.text()


# ------------------------------------------------------------------ ex4.1: mistakes

def make_bn(*, eval_batch=False, norm_unbiased=False, buf_biased=False, flip=False,
            eps_outside=False, axes=None, inplace=False, update_in_eval=False):
    """The reference answer with one mistake switched on."""
    def fn(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
        dims = axes(x) if axes else [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        use_batch = training or eval_batch is True
        mean = x.mean(dim=dims, keepdim=True)
        var = x.var(dim=dims, keepdim=True, unbiased=norm_unbiased)
        uvar = x.var(dim=dims, keepdim=True, unbiased=not buf_biased)
        cm, cv = mean.reshape(-1)[: x.shape[1]], uvar.reshape(-1)[: x.shape[1]]
        if axes is None:
            cm, cv = mean.reshape(-1), uvar.reshape(-1)
        m = 1 - momentum if flip else momentum
        if training or update_in_eval:
            if inplace:
                running_mean.mul_(1 - m).add_(m * cm)
                running_var.mul_(1 - m).add_(m * cv)
                new_rm, new_rv = running_mean, running_var
            else:
                new_rm = (1 - m) * running_mean + m * cm
                new_rv = (1 - m) * running_var + m * cv
        else:
            new_rm, new_rv = running_mean, running_var
        if eval_batch == "updated" and not training:
            mean, var = new_rm.reshape(shape), new_rv.reshape(shape)
        elif not use_batch:
            mean, var = running_mean.reshape(shape), running_var.reshape(shape)
        denom = var.sqrt() + eps if eps_outside else (var + eps).sqrt()
        return gamma.reshape(shape) * (x - mean) / denom + beta.reshape(shape), new_rm, new_rv
    return fn


def bn_functional_inplace(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    y = F.batch_norm(x, running_mean, running_var, gamma, beta, training, momentum, eps)
    return y, running_mean, running_var


MISTAKES_41 = [
    ("batch statistics in eval", make_bn(eval_batch=True), "in eval mode batch norm uses running_mean"),
    ("unbiased variance in the normalisation", make_bn(norm_unbiased=True), "normalised with the unbiased variance"),
    ("biased variance in the buffer", make_bn(buf_biased=True), "*unbiased* batch variance"),
    ("flipped momentum", make_bn(flip=True), "weight of the *new* batch statistic"),
    ("eps outside the square root", make_bn(eps_outside=True), "eps belongs inside the square root"),
    ("per-sample statistics", make_bn(axes=lambda x: list(range(1, x.dim()))), "that is layer norm"),
    ("4-D statistics over N only", make_bn(axes=lambda x: [0]), "over the batch axis only"),
    ("buffers mutated in place", make_bn(inplace=True), "changed the running_mean and running_var tensor"),
    ("F.batch_norm on the given buffers", bn_functional_inplace, "library code"),
    ("buffers updated in eval", make_bn(update_in_eval=True), "changed in eval mode"),
    ("buffers updated in eval, then used", make_bn(update_in_eval=True, eval_batch="updated"), "changed in eval mode"),
]


def test_ex41_other_wrong_answers(seed):
    def no_tuple(x, *a, **k):
        return x
    v, _ = run("ex4.1", no_tuple, seed=seed)
    assert v.status == "failed" and "tuple of three tensors" in v.message

    def running_in_train(x, gamma, beta, rm, rv, training, momentum=0.1, eps=1e-5):
        y, _, _ = bn_reference(x, gamma, beta, rm, rv, False, momentum, eps)
        _, nrm, nrv = bn_reference(x, gamma, beta, rm, rv, training, momentum, eps)
        return y, nrm, nrv
    v, _ = run("ex4.1", running_in_train, seed=seed)
    assert v.status == "failed" and "current batch" in v.message

    def no_update(x, gamma, beta, rm, rv, training, momentum=0.1, eps=1e-5):
        return bn_reference(x, gamma, beta, rm, rv, training, momentum, eps)[0], rm, rv
    v, _ = run("ex4.1", no_update, seed=seed)
    assert v.status == "failed" and "not updated in training mode" in v.message

    def float32(x, *a, **k):
        y, rm, rv = bn_reference(x.float(), *(t.float() if torch.is_tensor(t) else t for t in a), **k)
        return y, rm, rv
    v, _ = run("ex4.1", float32, seed=seed)
    assert v.status == "failed" and "float32" in v.message and "dtype" in v.message, v.message

    def swapped(x, gamma, beta, *a, **k):
        return bn_reference(x, beta, gamma, *a, **k)
    v, _ = run("ex4.1", swapped, seed=seed)
    assert v.status == "failed" and "gamma and beta are swapped" in v.message


def test_ex41_forged_record_must_hold_correct_values(seed):
    from helpers.checks.core import get
    _, record = run("ex4.1", make_bn(flip=True))
    verdict = get("ex4.1").run_judge(record)
    assert verdict.status == "failed"


# ------------------------------------------------------------------ ex4.2: correct answers

class BNReference(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x):
        dims = [0] if x.dim() == 2 else [0, 2]
        shape = [1, -1] + [1] * (x.dim() - 2)
        if self.training:
            mean = x.mean(dim=dims)
            var = x.var(dim=dims, unbiased=False)
            n = x.numel() // x.shape[1]
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * var * n / (n - 1))
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + self.eps)
        return self.weight.reshape(shape) * x_hat + self.bias.reshape(shape)


class BNFactor(nn.Module):
    """nn.BatchNorm1d's parameters and buffers; ``factor()`` counts a training batch and gives
    the running-average factor (momentum, or a cumulative average when it is None), 0.0 in eval."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0))

    def factor(self):
        factor = 0.0
        if self.training:
            self.num_batches_tracked.add_(1)
            factor = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.item()
        return factor


class BNViaFunctional(BNFactor):
    """Leans on F.batch_norm, as torch's own module does."""

    def forward(self, x):
        factor = self.factor()
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, factor, self.eps)


class BNReassign(nn.Module):
    """Channels-last arithmetic, buffers re-assigned (not in place) from detached statistics."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        z = x if x.dim() == 2 else x.transpose(1, 2)          # (..., C)
        flat = z.reshape(-1, z.shape[-1])
        if self.training:
            mean = flat.mean(0)
            var = ((flat - mean) ** 2).mean(0)
            self.num_batches_tracked = self.num_batches_tracked + 1
            k = self.momentum if self.momentum is not None else 1 / self.num_batches_tracked.item()
            n = flat.shape[0]
            self.running_mean = self.running_mean + k * (mean.detach() - self.running_mean)
            self.running_var = self.running_var + k * (var.detach() * n / (n - 1) - self.running_var)
        else:
            mean, var = self.running_mean, self.running_var
        out = (z - mean) / (var + self.eps).sqrt() * self.weight + self.bias
        return out if x.dim() == 2 else out.transpose(1, 2)


class BNCallsOwnBatchNorm(BNFactor):
    """Calls a from-scratch batch_norm (the learner's ex4.1): allowed."""

    def forward(self, x):
        factor = self.factor()
        y, rm, rv = bn_reference(x, self.weight, self.bias, self.running_mean, self.running_var,
                                 self.training, factor, self.eps)
        if self.training:
            with torch.no_grad():
                self.running_mean.copy_(rm)
                self.running_var.copy_(rv)
        return y


@pytest.mark.parametrize("cls", [BNReference, BNReassign, BNCallsOwnBatchNorm])
def test_ex42_correct_answers_pass(cls, seed):
    verdict, _ = run("ex4.2", cls, seed=seed)
    assert verdict.status == "passed", verdict.message


class BNSubclass(nn.BatchNorm1d):
    pass


class BNWrapper(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.inner = nn.BatchNorm1d(num_features, eps=eps, momentum=momentum)

    def forward(self, x):
        return self.inner(x)


@pytest.mark.parametrize("cls", [nn.BatchNorm1d, BNSubclass, BNWrapper, BNViaFunctional])
def test_ex42_library_is_refused(cls):
    verdict, _ = run("ex4.2", cls)
    assert verdict.status == "failed" and "library code" in verdict.message, verdict.message
    assert "exercise 4.1" in verdict.message


@pytest.mark.parametrize("fn", [bn_via_torch, bn_functional_inplace])
def test_ex41_library_is_refused(fn):
    verdict, _ = run("ex4.1", fn)
    assert verdict.status == "failed" and "library code" in verdict.message, verdict.message


def test_ex41_library_in_source_is_found():
    ex = get("ex4.1")
    assert ex.forbidden_in_source("def batch_norm(x, *a):\n    return F.batch_norm(x, *a)\n")
    assert ex.forbidden_in_source("from torch.nn.functional import batch_norm as bn\n")
    assert not ex.forbidden_in_source("def batch_norm(x, g, b, rm, rv, training):\n"
                                      "    return x.mean(0)\n")


@pytest.mark.parametrize("shape_case", ["(6, 5, 3, 4) input", "(3, 5, 2, 3) input"])
def test_ex41_errors_say_which_case(shape_case, seed):
    """A 2-D-only answer raises on 4-D input: the message names the case, its shape and what
    it is about (issue 14)."""
    def two_d_only(x, gamma, beta, rm, rv, training, momentum=0.1, eps=1e-5):
        if x.dim() == 2:
            return bn_reference(x, gamma, beta, rm, rv, training, momentum, eps)
        mean = x.mean(0)
        return (x - mean) * gamma + beta, rm, rv
    v, _ = run("ex4.1", two_d_only, seed=seed)
    assert v.status == "error", v.text()
    assert "input: statistics over every axis but 1" in v.message and "(6, 5, 3, 4)" in v.message, v.message


def test_ex42_stub_is_reported(seed):
    class Stub(nn.Module):
        def __init__(self, num_features, eps=1e-5, momentum=0.1):
            super().__init__()
            raise NotImplementedError("ex4.2: write your answer here")
    verdict, _ = run("ex4.2", Stub, seed=seed)
    assert is_stub_verdict(verdict), verdict.text()

    class WrongSignature(nn.Module):
        def __init__(self, num_features, momentum, eps):
            super().__init__()
    verdict, _ = run("ex4.2", WrongSignature, seed=seed)
    assert verdict.status == "error" and "the constructor is" in verdict.message


# ------------------------------------------------------------------ ex4.2: mistakes

def make_module(*, eval_batch=False, norm_unbiased=False, buf_biased=False, flip=False,
                eps_outside=False, n_only=False, update_in_eval=False, none_as_default=False,
                python_counter=False, no_nbt_increment=False, names=("weight", "bias"),
                plain_buffers=False, param_buffers=False, no_nbt=False, grad_buffers=False,
                detach_stats=False):
    class M(nn.Module):
        def __init__(self, num_features, eps=1e-5, momentum=0.1):
            super().__init__()
            self.eps, self.momentum, self.count = eps, momentum, 0
            setattr(self, names[0], nn.Parameter(torch.ones(num_features)))
            setattr(self, names[1], nn.Parameter(torch.zeros(num_features)))
            if plain_buffers:
                self.running_mean, self.running_var = torch.zeros(num_features), torch.ones(num_features)
            elif param_buffers:
                self.running_mean = nn.Parameter(torch.zeros(num_features), requires_grad=False)
                self.running_var = nn.Parameter(torch.ones(num_features), requires_grad=False)
            else:
                self.register_buffer("running_mean", torch.zeros(num_features))
                self.register_buffer("running_var", torch.ones(num_features))
            if not no_nbt:
                self.register_buffer("num_batches_tracked", torch.tensor(0))

        def _apply(self, fn, *a, **k):  # keep plain attributes on .double() as a learner's would not
            out = super()._apply(fn, *a, **k)
            if plain_buffers:
                self.running_mean, self.running_var = fn(self.running_mean), fn(self.running_var)
            return out

        def forward(self, x):
            dims = [0] if (x.dim() == 2 or n_only) else [0, 2]
            shape = [1, -1] + [1] * (x.dim() - 2)
            w, b = getattr(self, names[0]), getattr(self, names[1])
            mean = x.mean(dim=dims, keepdim=True)
            var = x.var(dim=dims, keepdim=True, unbiased=norm_unbiased)
            if detach_stats:
                mean, var = mean.detach(), var.detach()
            cm = mean.reshape(x.shape[1], -1).mean(-1)
            cv = x.var(dim=[0] if x.dim() == 2 else [0, 2], unbiased=not buf_biased)
            if not self.training and update_in_eval == "after":
                y = self._normalise(x, w, b, self.running_mean.reshape(shape), self.running_var.reshape(shape), eps_outside)
            if self.training or update_in_eval:
                if not no_nbt and not no_nbt_increment:
                    self.num_batches_tracked += 1
                self.count += 1
                if self.momentum is None:
                    k = 0.1 if none_as_default else 1.0 / (self.count if python_counter
                                                            else float(self.num_batches_tracked))
                else:
                    k = self.momentum
                k = 1 - k if flip else k
                if grad_buffers:
                    self.running_mean = (1 - k) * self.running_mean + k * cm
                    self.running_var = (1 - k) * self.running_var + k * cv
                else:
                    with torch.no_grad():
                        self.running_mean.copy_((1 - k) * self.running_mean + k * cm)
                        self.running_var.copy_((1 - k) * self.running_var + k * cv)
            if not self.training and update_in_eval == "after":
                return y
            if not self.training and not eval_batch:
                mean, var = self.running_mean.reshape(shape), self.running_var.reshape(shape)
            return self._normalise(x, w, b, mean, var, eps_outside)

        def _normalise(self, x, w, b, mean, var, eps_outside):
            shape = [1, -1] + [1] * (x.dim() - 2)
            denom = var.sqrt() + self.eps if eps_outside else (var + self.eps).sqrt()
            return w.reshape(shape) * (x - mean) / denom + b.reshape(shape)
    return M


MISTAKES_42 = [
    ("batch statistics in eval", make_module(eval_batch=True), "in eval mode batch norm uses running_mean"),
    ("unbiased variance in the normalisation", make_module(norm_unbiased=True), "normalised with the unbiased variance"),
    ("biased variance in the buffer", make_module(buf_biased=True), "*unbiased* batch variance"),
    ("flipped momentum", make_module(flip=True), "weight of the *new* batch statistic"),
    ("eps outside the square root", make_module(eps_outside=True), "eps belongs inside the square root"),
    ("(N, C, L) statistics over N only", make_module(n_only=True), "over the batch axis only"),
    ("buffers updated in eval, then used", make_module(update_in_eval="before"), "changed in eval mode"),
    ("buffers updated in eval, after use", make_module(update_in_eval="after"), "changed in eval mode"),
    ("momentum=None as 0.1", make_module(none_as_default=True), "cumulative average"),
    ("momentum=None with a Python counter", make_module(python_counter=True), "not from a separate Python counter"),
    ("num_batches_tracked not counted", make_module(no_nbt_increment=True), "num_batches_tracked is"),
    ("gamma/beta names", make_module(names=("gamma", "beta")), "calls gamma `weight`"),
    ("plain tensor attributes", make_module(plain_buffers=True), "not registered buffers"),
    ("running stats as parameters", make_module(param_buffers=True), "registered as parameters"),
    ("no num_batches_tracked", make_module(no_nbt=True), "no num_batches_tracked buffer"),
    ("buffers keep the graph", make_module(grad_buffers=True), "require grad"),
    ("detached batch statistics", make_module(detach_stats=True), "do not detach them"),
]


MISTAKES = [("ex4.1", *m) for m in MISTAKES_41] + [("ex4.2", *m) for m in MISTAKES_42]


@pytest.mark.parametrize("ex,name,answer,phrase", MISTAKES, ids=[f"{m[0]}-{m[1]}" for m in MISTAKES])
def test_mistakes_fail_with_hint(ex, name, answer, phrase, seed):
    verdict, _ = run(ex, answer, seed=seed)
    assert verdict.status == "failed", (name, verdict)
    assert phrase in verdict.message, (name, verdict.message)


def test_ex42_not_a_module(seed):
    class Plain:
        def __init__(self, num_features, eps=1e-5, momentum=0.1):
            pass
    v, _ = run("ex4.2", Plain, seed=seed)
    assert v.status == "failed" and "subclass nn.Module" in v.message


def test_ex42_record_is_small(seed):
    import json
    _, record = run("ex4.2", BNReference, seed=seed)
    assert len(json.dumps(record)) < 2_000_000
    _, record = run("ex4.1", bn_reference, seed=seed)
    assert len(json.dumps(record)) < 2_000_000


# ------------------------------------------------------------------ the explorer widget

def test_simulate_running_stats_is_the_ema_of_the_batch_statistics():
    from helpers.widgets import simulate_running_stats
    m = 0.3
    s = simulate_running_stats(m, batch_size=8, n_steps=30, shift_at=10, shift=2.0, seed=3)
    rm, rv = 0.0, 1.0
    for t in range(30):
        rm = (1 - m) * rm + m * s["batch_mean"][t]
        rv = (1 - m) * rv + m * s["batch_var"][t]
        assert rm == pytest.approx(s["running_mean"][t], abs=1e-5)
        assert rv == pytest.approx(s["running_var"][t], rel=1e-5)
    assert list(s["true_mean"][8:12]) == [0.0, 0.0, 2.0, 2.0]
    cum = simulate_running_stats(None, batch_size=8, n_steps=20, seed=3)
    assert cum["running_mean"][-1] == pytest.approx(cum["batch_mean"].mean(), abs=1e-5)


def test_running_stats_explorer_responds_to_its_controls():
    from helpers.widgets import RunningStatsExplorer
    e = RunningStatsExplorer(log10_momentum=-2.0, batch_size=16)
    slow_lag, slow_noise = e.lag, e.running_mean_noise
    e.log10_momentum.value = -0.5                       # momentum 0.32: follows fast, noisier
    assert e.momentum == pytest.approx(10 ** -0.5)
    assert slow_lag is None or e.lag < slow_lag
    assert e.lag is not None and e.lag < 15
    assert e.running_mean_noise > 3 * slow_noise
    assert e.running_mean_noise < e.batch_mean_noise   # an average is less noisy than one batch
    noise16 = e.batch_mean_noise
    e.batch_size.value = 256                            # 16x the batch: about 1/4 of the noise
    assert 0.15 < e.batch_mean_noise / noise16 < 0.4
    assert "noise of the batch means" in e.numbers.value
    e.cumulative.value = True                           # momentum=None never forgets the first 100
    assert e.momentum is None
    assert e.lag is None and e.final_error > 0.5


# ------------------------------------------------------------------ ex4.3 batch_norm_backward

def bwd_reference(dy, x, gamma, eps=1e-5):
    n = x.shape[0]
    mean = x.mean(0)
    s = torch.sqrt(x.var(0, unbiased=False) + eps)
    xh = (x - mean) / s
    dx = gamma / (n * s) * (n * dy - dy.sum(0) - xh * (dy * xh).sum(0))
    return dx, (dy * xh).sum(0), dy.sum(0)


def bwd_staged(dy, x, gamma, eps=1e-5):
    """The CS231n staged graph: through x_hat, var and mean one after another."""
    n = x.shape[0]
    mu = x.mean(0, keepdim=True)
    xc = x - mu
    var = (xc ** 2).mean(0, keepdim=True)
    std = (var + eps).sqrt()
    xh = xc / std
    dxh = dy * gamma
    dvar = (dxh * xc * -0.5 * (var + eps) ** -1.5).sum(0, keepdim=True)
    dmu = (-dxh / std).sum(0, keepdim=True) + dvar * (-2 * xc).mean(0, keepdim=True)
    dx = dxh / std + dvar * 2 * xc / n + dmu / n
    return dx, (dy * xh).sum(0), dy.sum(0)


def bwd_numpy(dy, x, gamma, eps=1e-5):
    d, a, g = dy.numpy(), x.numpy(), gamma.numpy()
    xh = (a - a.mean(0)) / np.sqrt(a.var(0) + eps)
    dxh = d * g
    dx = (dxh - dxh.mean(0) - xh * (dxh * xh).mean(0)) / np.sqrt(a.var(0) + eps)
    return torch.from_numpy(dx), torch.from_numpy((d * xh).sum(0)), torch.from_numpy(d.sum(0))


@pytest.mark.parametrize("fn", [bwd_reference, bwd_staged, bwd_numpy])
def test_ex43_correct(fn, seed):
    v, _ = run("ex4.3", fn, seed=seed)
    assert v.passed, v.text()


def _bwd_variant(how):
    def fn(dy, x, gamma, eps=1e-5):
        n = x.shape[0]
        mean = x.mean(0)
        var = x.var(0, unbiased=(how == "unbiased"))
        s = var.sqrt() + eps if how == "eps_outside" else torch.sqrt(var + eps)
        xh = (x - mean) / s
        dx = gamma / (n * s) * (n * dy - dy.sum(0) - xh * (dy * xh).sum(0))
        if how == "direct":
            dx = gamma * dy / s
        if how == "no_var":
            dx = gamma / s * (dy - dy.mean(0))
        if how == "no_mean":
            dx = gamma / s * (dy - xh * (dy * xh).mean(0))
        dgamma = dy.sum(0) if how == "dgamma" else (dy * xh).sum(0)
        if how == "axis1":
            c = x.shape[1]
            m1, s1 = x.mean(1, keepdim=True), torch.sqrt(x.var(1, unbiased=False, keepdim=True) + eps)
            xh1 = (x - m1) / s1
            dx = gamma / (c * s1) * (c * dy - dy.sum(1, keepdim=True) - xh1 * (dy * xh1).sum(1, keepdim=True))
        if how == "not_summed":
            return dx, dy * xh, dy
        return dx, dgamma, dy.sum(0)
    return fn


def _bwd_autograd(dy, x, gamma, eps=1e-5):
    x = x.clone().requires_grad_(True)
    g = gamma.clone().requires_grad_(True)
    mean = x.mean(0)
    y = g * (x - mean) / torch.sqrt(x.var(0, unbiased=False) + eps)
    y.backward(dy)
    return x.grad, g.grad, dy.sum(0)


@pytest.mark.parametrize("how,phrase", [
    ("unbiased", "unbiased variance"),
    ("eps_outside", "inside the square root"),
    ("direct", "only the direct path"),
    ("no_var", "through the batch variance is missing"),
    ("no_mean", "through the batch mean is missing"),
    ("dgamma", "dgamma is the sum of dy alone"),
    ("axis1", "wrong axis"),
    ("not_summed", "Sum over the batch axis"),
])
def test_ex43_mistakes(how, phrase, seed):
    v, _ = run("ex4.3", _bwd_variant(how), seed=seed)
    assert v.status == "failed" and phrase in v.message, v.text()


def test_ex43_autograd_is_refused():
    v, _ = run("ex4.3", _bwd_autograd)
    assert v.status == "failed" and "library code" in v.message and "torch.Tensor.backward" in v.message, v.text()


def test_ex43_float32_is_a_dtype_message():
    v, _ = run("ex4.3", lambda dy, x, g, eps=1e-5: tuple(t.float() for t in bwd_reference(dy, x, g, eps)))
    assert v.status == "failed" and "float32" in v.message, v.text()


# ------------------------------------------------------------------ ex4.4 layer_norm

def ln_reference(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    return gamma * (x - mean) / torch.sqrt(var + eps) + beta


def ln_var_mean(x, gamma, beta, eps=1e-5):
    var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
    return torch.addcmul(beta, gamma, (x - mean) * torch.rsqrt(var + eps))


def ln_numpy(x, gamma, beta, eps=1e-5):
    a = x.numpy()
    flat = a.reshape(-1, a.shape[-1])
    y = (flat - flat.mean(1, keepdims=True)) / np.sqrt(flat.var(1, keepdims=True) + eps)
    return torch.from_numpy(y.reshape(a.shape) * gamma.numpy() + beta.numpy())


@pytest.mark.parametrize("fn", [ln_reference, ln_var_mean, ln_numpy])
def test_ex44_correct(fn, seed):
    v, _ = run("ex4.4", fn, seed=seed)
    assert v.passed, v.text()


@pytest.mark.parametrize("fn,phrase", [
    (lambda x, g, b, eps=1e-5: g * (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + eps) + b,
     "batch axis"),
    (lambda x, g, b, eps=1e-5: g * (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) + b,
     "unbiased variance"),
    (lambda x, g, b, eps=1e-5: g * (x - x.mean(-1, keepdim=True)) / (x.var(-1, unbiased=False, keepdim=True).sqrt() + eps) + b,
     "inside the square root"),
    (lambda x, g, b, eps=1e-5: ln_reference(x, b, g, eps), "swapped"),
    (lambda x, g, b, eps=1e-5: ln_reference(x, g, b, eps).float(), "float32"),
    (lambda x, g, b, eps=1e-5: F.layer_norm(x, x.shape[-1:], g, b, eps), "library code"),
    (lambda x, g, b, eps=1e-5: nn.LayerNorm(x.shape[-1], eps=eps).double()(x) * g + b, "library code"),
])
def test_ex44_mistakes(fn, phrase, seed):
    v, _ = run("ex4.4", fn, seed=seed)
    assert v.status in ("failed", "error") and phrase in v.message, v.text()


def test_ex44_3d_over_all_axes_is_named():
    def all_axes(x, g, b, eps=1e-5):
        dims = tuple(range(1, x.dim()))
        m = x.mean(dims, keepdim=True)
        v = x.var(dims, unbiased=False, keepdim=True)
        return g * (x - m) / torch.sqrt(v + eps) + b
    v, _ = run("ex4.4", all_axes)
    assert v.status == "failed" and "last dimension only" in v.message, v.text()


# ------------------------------------------------------------------ case seeds and hints

def test_hard_coded_answers_fail_at_another_seed():
    """An answer replaying the published (seed 0) outputs passes seed 0 and fails seed 1."""
    from helpers.checks.lesson04 import _ln_cases
    table = {x.tobytes(): ln_reference(torch.from_numpy(x), torch.from_numpy(g), torch.from_numpy(b), eps)
             for _, x, g, b, eps in _ln_cases(0)}

    def replay(x, g, b, eps=1e-5):
        return table.get(x.numpy().tobytes(), torch.zeros_like(x))
    assert run("ex4.4", replay, seed=0)[0].passed
    assert not run("ex4.4", replay, seed=1)[0].passed


REFERENCE_PHRASES = ("(x - mean) / sqrt(var + eps)", "gamma / (N * s)", "N * dy - sum",
                     "dy * x_hat", "x.var(", "x.mean(")


def test_hints_never_give_the_reference_expression():
    """Every hint the mistakes above produce, scanned for the reference expressions of ex4.1,
    ex4.3 and ex4.4."""
    fns = [("ex4.1", f) for _, f, _ in MISTAKES_41] + \
          [("ex4.3", _bwd_variant(h)) for h in ("unbiased", "eps_outside", "direct", "no_var",
                                                 "no_mean", "dgamma", "axis1")]
    for ex, fn in fns:
        msg = run(ex, fn, seed=3)[0].message
        for phrase in REFERENCE_PHRASES:
            assert phrase not in msg, (ex, phrase, msg)


def test_ex42_errors_say_which_case():
    """A module written for (N, C) only raises on the (N, C, L) step: the message names the step,
    its shape and what it is about (issue 14)."""
    class TwoDOnly(BNReference):
        def forward(self, x):
            if self.training:
                mean, var = x.mean(0), x.var(0, unbiased=False)
                with torch.no_grad():
                    self.num_batches_tracked += 1
                    m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                    n = x.shape[0]
                    self.running_mean.mul_(1 - m).add_(m * mean)
                    self.running_var.mul_(1 - m).add_(m * var * n / (n - 1))
            else:
                mean, var = self.running_mean, self.running_var
            return self.weight * (x - mean) / torch.sqrt(var + self.eps) + self.bias
    v, _ = run("ex4.2", TwoDOnly)
    assert v.status == "error", v.text()
    assert "(3, 4, 5)" in v.message and "statistics over every axis but 1 (N and L)" in v.message, v.message


# ------------------------------------------------------------------ issue 22: diagnoses

def bn_count_n(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """The unbiased correction with n = N (the batch size), not N*H*W values per channel."""
    y, new_rm, _ = bn_reference(x, gamma, beta, running_mean, running_var, training, momentum, eps)
    if not training:
        return y, running_mean, running_var
    dims = [0] + list(range(2, x.dim()))
    var = x.var(dim=dims, unbiased=False)
    n = x.shape[0]
    return y, new_rm, (1 - momentum) * running_var + momentum * var * n / (n - 1)


def bn_no_keepdim(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Statistics of shape (C,) broadcast against (N, C, H, W): a shape error on 4-D input."""
    dims = [0] + list(range(2, x.dim()))
    if training:
        mean, var = x.mean(dim=dims), x.var(dim=dims, unbiased=False)
        n = x.numel() // x.shape[1]
        new_rm = (1 - momentum) * running_mean + momentum * mean
        new_rv = (1 - momentum) * running_var + momentum * var * n / (n - 1)
    else:
        mean, var, new_rm, new_rv = running_mean, running_var, running_mean, running_var
    return gamma * (x - mean) / torch.sqrt(var + eps) + beta, new_rm, new_rv


def bn_float32(x, *a, **k):
    y, rm, rv = bn_reference(x, *a, **k)
    return y.float(), rm, rv


def test_ex41_count_n_is_named(seed):
    v, _ = run("ex4.1", bn_count_n, seed=seed)
    assert v.status == "failed" and "used n = N = 6, the batch size" in v.message, v.text()
    assert "(6, 5, 3, 4)" in v.message and "n = 72 values" in v.message, v.text()


def test_ex41_missing_keepdim_is_a_shape_hint(seed):
    v, _ = run("ex4.1", bn_no_keepdim, seed=seed)
    assert v.status == "error" and "This is a shape error" in v.message, v.text()
    assert "channel axis (dim 1)" in v.message


def test_float32_output_is_told_a_dtype_issue(seed):
    """Right values in float32 on float64 input: a dtype issue, not a wrong normalisation."""
    for ex, fn in [("ex4.1", bn_float32),
                   ("ex4.3", lambda dy, x, g, eps=1e-5: tuple(t.float() for t in bwd_reference(dy, x, g, eps))),
                   ("ex4.4", lambda x, g, b, eps=1e-5: ln_reference(x, g, b, eps).float())]:
        v, _ = run(ex, fn, seed=seed)
        assert v.status == "failed" and "dtype issue, not a wrong normalisation" in v.message, (ex, v.text())
        assert "float32" in v.message
    v, _ = run("ex4.2", BNFloat32Out, seed=seed)
    assert v.status == "failed" and "dtype issue, not a wrong normalisation" in v.message, v.text()
    # wrong values in float32 stay a wrong-values message (the dtype is still named)
    v, _ = run("ex4.1", lambda x, g, b, *a, **k: tuple(t.float() for t in make_bn(norm_unbiased=True)(x, g, b, *a, **k)), seed=seed)
    assert v.status == "failed" and "dtype issue" not in v.message and "float32" in v.message, v.text()


class BNFloat32Out(BNReference):
    def forward(self, x):
        return super().forward(x).float()


@pytest.mark.parametrize("how,phrase", [
    ("sign_direct", "direct path (x itself, with the batch mean and variance held fixed) has the wrong sign"),
    ("sign_mean", "path through the batch mean has the wrong sign"),
    ("sign_var", "path through the batch variance has the wrong sign"),
    ("var_half", "half what it should be"),
    ("times_n", "N times too large"),
    ("dgamma_sign", "dgamma has the wrong sign"),
    ("dbeta_sign", "dbeta has the wrong sign"),
    ("eps_default", "matches eps = 1e-05, not the eps of this call (0.1)"),
])
def test_ex43_term_errors_are_named(how, phrase, seed):
    v, _ = run("ex4.3", bwd_wrong(how), seed=seed)
    assert v.status == "failed" and phrase in v.message, v.text()


def bwd_wrong(how):
    """The staged reference (x_hat, then the three paths) with one term gone wrong."""
    def fn(dy, x, gamma, eps=1e-5):
        if how == "eps_default":
            eps = 1e-5
        n = x.shape[0]
        s = torch.sqrt(x.var(0, unbiased=False) + eps)
        xh = (x - x.mean(0)) / s
        direct, mean_term, var_term = n * dy, -dy.sum(0), -xh * (dy * xh).sum(0)
        if how == "sign_direct":
            direct = -direct
        if how == "sign_mean":
            mean_term = -mean_term
        if how == "sign_var":
            var_term = -var_term
        if how == "var_half":
            var_term = var_term / 2
        dx = gamma / (n * s) * (direct + mean_term + var_term)
        if how == "times_n":
            dx = dx * n
        dgamma, dbeta = (dy * xh).sum(0), dy.sum(0)
        if how == "dgamma_sign":
            dgamma = -dgamma
        if how == "dbeta_sign":
            dbeta = -dbeta
        return dx, dgamma, dbeta
    return fn


def test_ex44_missing_keepdim_is_a_shape_hint(seed):
    v, _ = run("ex4.4", lambda x, g, b, eps=1e-5: g * (x - x.mean(-1)) / torch.sqrt(x.var(-1, unbiased=False) + eps) + b, seed=seed)
    assert v.status == "error" and "This is a shape error" in v.message and "keepdim" in v.message, v.text()


# ------------------------------------------------------------------ ex4.2: the contract's details

class BNFloatCounter(BNReference):
    """num_batches_tracked as a float tensor (nn.BatchNorm1d's is a long)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, momentum)
        self.num_batches_tracked = torch.tensor(0.0)


class BNCounterShape1(BNReference):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, momentum)
        self.num_batches_tracked = torch.tensor([0])


class BNWeightZeros(BNReference):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, momentum)
        with torch.no_grad():
            self.weight.zero_()


class BNVarZeros(BNReference):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, momentum)
        self.running_var.zero_()


class BNPlainParams(BNReference):
    """gamma and beta as tensors that require grad, not nn.Parameter."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, momentum)
        del self.weight, self.bias
        self.weight = torch.ones(num_features, requires_grad=True)
        self.bias = torch.zeros(num_features, requires_grad=True)

    def _apply(self, fn, *a, **k):
        out = super()._apply(fn, *a, **k)
        self.weight = fn(self.weight).detach().requires_grad_()
        self.bias = fn(self.bias).detach().requires_grad_()
        return out


class BNExtraBuffer(BNReference):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, momentum)
        self.register_buffer("batch_std", torch.ones(num_features))


class BNCountsTwice(BNReference):
    """momentum=None with 1 / (num_batches_tracked + 1) after counting the batch."""

    def forward(self, x):
        if self.training and self.momentum is None:
            self.momentum = 1.0 / (float(self.num_batches_tracked) + 2)
            try:
                return super().forward(x)
            finally:
                self.momentum = None
        return super().forward(x)


class BNCountsInEval(BNReference):
    def forward(self, x):
        if not self.training:
            with torch.no_grad():
                self.num_batches_tracked += 1
        return super().forward(x)


class BNSwitchesMode(BNReference):
    """forward in eval calls self.train() at the end (a habit from a training loop)."""

    def forward(self, x):
        y = super().forward(x)
        if not self.training:
            self.train()
        return y


class BNClampsWeight(BNReference):
    """forward changes a parameter after using it (clamps gamma in place)."""

    def forward(self, x):
        y = super().forward(x)
        with torch.no_grad():
            self.weight.clamp_(min=0.0)
        return y


class BNCountN(BNReference):
    """(N, C, L): the unbiased correction with the batch size N, not N * L values."""

    def forward(self, x):
        if not self.training or x.dim() == 2:
            return super().forward(x)
        dims, shape = [0, 2], [1, -1, 1]
        mean, var = x.mean(dim=dims), x.var(dim=dims, unbiased=False)
        n = x.shape[0]
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean)
            self.running_var.mul_(1 - m).add_(m * var * n / (n - 1))
        x_hat = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + self.eps)
        return self.weight.reshape(shape) * x_hat + self.bias.reshape(shape)


class BNFloat32Buffers(BNReference):
    """Buffers re-assigned as float32 tensors after each training step."""

    def forward(self, x):
        y = super().forward(x)
        if self.training:
            self.running_mean = self.running_mean.float()
            self.running_var = self.running_var.float()
        return y


def test_ex42_float_num_batches_tracked_fails(seed):
    v, _ = run("ex4.2", BNFloatCounter, seed=seed)
    assert v.status == "failed" and "long (int64)" in v.message and "float32" in v.message, v.text()
    v, _ = run("ex4.2", BNCounterShape1, seed=seed)
    assert v.status == "failed" and "0-d tensor" in v.message, v.text()


def test_ex42_forward_keeps_mode_and_parameters(seed):
    v, _ = run("ex4.2", BNSwitchesMode, seed=seed)
    assert v.status == "failed" and "mode changed" in v.message, v.text()
    v, _ = run("ex4.2", BNClampsWeight, seed=seed)
    assert v.status == "failed" and "weight changed during a forward pass" in v.message, v.text()


def test_ex42_state_dict_is_loaded_by_the_judge(seed):
    """The judge, not the kernel, loads the answer's state_dict into nn.BatchNorm1d: a record
    whose state_dict lacks a key fails even though the kernel never tried the load."""
    from helpers.checks.core import _json_roundtrip
    _, record = run("ex4.2", BNReference, seed=seed)
    record = _json_roundtrip(record)
    first = record["data"][0]
    items = first["final_state"]["__dict__"]
    first["final_state"]["__dict__"] = [kv for kv in items if kv[0] != "running_var"]
    v = get("ex4.2").run_judge(record, seed)
    assert v.status == "failed" and "could not load your module's state_dict" in v.message, v.text()


# ------------------------------------------------------------------ side effects judged from raw data

def bwd_scales_dy_in_place(dy, x, gamma, eps=1e-5):
    out = bwd_reference(dy.clone(), x, gamma, eps)
    dy.mul_(2.0)                       # "reusing" the buffer after the gradient is computed
    return out


def test_in_place_answers_fail_even_when_the_kernel_lies():
    """An answer that changes its inputs in place and patches torch.equal and np.array_equal in
    the kernel (as a learner could) still fails: the probe records the inputs raw, the judge
    (in the grader's process, here after the patches are undone) compares them."""
    import numpy as _np
    real_t, real_np = torch.equal, _np.array_equal

    def patched(fn):
        def answer(*args, **kwargs):
            torch.equal = lambda *a, **k: True
            _np.array_equal = lambda *a, **k: True
            return fn(*args, **kwargs)
        return answer

    def ln_in_place(x, g, b, eps=1e-5):
        y = ln_reference(x, g, b, eps)
        x.sub_(x.mean(-1, keepdim=True))
        return y

    cases = [("ex4.1", make_bn(inplace=True), "changed the running_mean and running_var tensor"),
             ("ex4.3", bwd_scales_dy_in_place, "changed its input dy"),
             ("ex4.4", ln_in_place, "changed its input x")]
    for ex, fn, phrase in cases:
        try:
            _, record = run(ex, patched(fn), seed=3)
        finally:
            torch.equal, _np.array_equal = real_t, real_np
        v = get(ex).run_judge(record, 3)
        assert v.status == "failed" and phrase in v.message, (ex, v.text())


def test_ex42_buffers_that_require_grad_are_seen_from_the_record(seed):
    """requires_grad of the buffers is read from the raw record (each tensor keeps its flag)."""
    v, _ = run("ex4.2", make_module(grad_buffers=True), seed=seed)
    assert v.status == "failed" and "require grad" in v.message, v.text()


# ------------------------------------------------------------------ library routes (the shortcut table)

def _ex41_via(call):
    def fn(x, g, b, rm, rv, training, momentum=0.1, eps=1e-5):
        _, nrm, nrv = bn_reference(x, g, b, rm, rv, training, momentum, eps)
        return call(x, g, b, rm.clone(), rv.clone(), training, momentum, eps), nrm, nrv
    return fn


def _instance_route(x, g, b, rm, rv, t, m, e):
    if not t:
        return bn_reference(x, g, b, rm, rv, t, m, e)[0]
    z = x.transpose(0, 1).reshape(1, x.shape[1], -1)        # (1, C, N*...) : one "instance"
    y = F.instance_norm(z, eps=e).reshape(x.transpose(0, 1).shape).transpose(0, 1)
    shape = [1, -1] + [1] * (x.dim() - 2)
    return y * g.reshape(shape) + b.reshape(shape)


def _layer_norm_route(x, g, b, rm, rv, t, m, e):
    if not t:
        return bn_reference(x, g, b, rm, rv, t, m, e)[0]
    z = x.transpose(0, 1).reshape(x.shape[1], -1)
    y = F.layer_norm(z, z.shape[-1:], eps=e).reshape(x.transpose(0, 1).shape).transpose(0, 1)
    shape = [1, -1] + [1] * (x.dim() - 2)
    return y * g.reshape(shape) + b.reshape(shape)


ROUTES_41 = {
    "torch.batch_norm": _ex41_via(lambda x, g, b, rm, rv, t, m, e: torch.batch_norm(x, g, b, rm, rv, t, m, e, False)),
    "torch.native_batch_norm": _ex41_via(lambda x, g, b, rm, rv, t, m, e: torch.native_batch_norm(x, g, b, rm, rv, t, m, e)[0]),
    "aten.native_batch_norm": _ex41_via(lambda x, g, b, rm, rv, t, m, e: torch.ops.aten.native_batch_norm(x, g, b, rm, rv, t, m, e)[0]),
    "aten._native_batch_norm_legit": _ex41_via(lambda x, g, b, rm, rv, t, m, e: torch.ops.aten._native_batch_norm_legit(x, g, b, rm, rv, t, m, e)[0]),
    "string-built F name": _ex41_via(lambda x, g, b, rm, rv, t, m, e: getattr(F, "batch" + "_norm")(x, rm, rv, g, b, t, m, e)),
    "F.instance_norm": _ex41_via(_instance_route),
    "F.layer_norm of the transposed input": _ex41_via(_layer_norm_route),
}


@pytest.mark.parametrize("route", sorted(ROUTES_41))
def test_ex41_routes_are_refused(route):
    v, _ = run("ex4.1", ROUTES_41[route])
    assert v.status == "failed" and "library code" in v.message, (route, v.text())


def _bwd_route(kind):
    def fn(dy, x, g, eps=1e-5):
        f = lambda x_, g_: g_ * (x_ - x_.mean(0)) / torch.sqrt(x_.var(0, unbiased=False) + eps)
        if kind == "torch.autograd.grad":
            x_, g_ = x.clone().requires_grad_(), g.clone().requires_grad_()
            dx, dg = torch.autograd.grad(f(x_, g_), (x_, g_), dy)
        elif kind == "torch.autograd.backward":
            x_, g_ = x.clone().requires_grad_(), g.clone().requires_grad_()
            torch.autograd.backward(f(x_, g_), dy)
            dx, dg = x_.grad, g_.grad
        elif kind == "torch.func.vjp":
            _, vjp = torch.func.vjp(f, x, g)
            dx, dg = vjp(dy)
        elif kind == "torch.autograd.functional.vjp":
            _, (dx, dg) = torch.autograd.functional.vjp(f, (x, g), dy)
        else:                                  # the aten backward op
            o = torch.ops.aten.native_batch_norm(x, g, None, None, None, True, 0.1, eps)
            dx, dg, _ = torch.ops.aten.native_batch_norm_backward(
                dy, x, g, None, None, o[1], o[2], True, eps, [True, True, True])
        return dx, dg, dy.sum(0)
    return fn


@pytest.mark.parametrize("kind", ["torch.autograd.grad", "torch.autograd.backward", "torch.func.vjp",
                                  "torch.autograd.functional.vjp", "aten.native_batch_norm_backward"])
def test_ex43_routes_are_refused(kind):
    v, _ = run("ex4.3", _bwd_route(kind))
    assert v.status == "failed" and "library code" in v.message, (kind, v.text())


ROUTES_44 = {
    "F.group_norm": lambda x, g, b, eps=1e-5: F.group_norm(x.reshape(-1, x.shape[-1]), 1, None, None, eps).reshape(x.shape) * g + b,
    "torch.layer_norm": lambda x, g, b, eps=1e-5: torch.layer_norm(x, x.shape[-1:], g, b, eps),
    "aten.native_layer_norm": lambda x, g, b, eps=1e-5: torch.ops.aten.native_layer_norm(x, x.shape[-1:], g, b, eps)[0],
    "F.rms_norm of the centred input": lambda x, g, b, eps=1e-5: F.rms_norm(x - x.mean(-1, keepdim=True), x.shape[-1:], g, eps) + b,
    "F.batch_norm of the transposed input": lambda x, g, b, eps=1e-5: F.batch_norm(
        x.reshape(-1, x.shape[-1]).T, None, None, training=True, eps=eps).T.reshape(x.shape) * g + b,
    "nn.GroupNorm": lambda x, g, b, eps=1e-5: nn.GroupNorm(1, x.reshape(-1, x.shape[-1]).shape[0], eps=eps, affine=False)(
        x.reshape(1, -1, x.shape[-1])).reshape(x.shape) * g + b,
}


@pytest.mark.parametrize("route", sorted(ROUTES_44))
def test_ex44_routes_are_refused(route):
    v, _ = run("ex4.4", ROUTES_44[route])
    assert v.status == "failed" and "library code" in v.message, (route, v.text())


def test_ex42_own_batch_norm_stays_allowed():
    """Calling a from-scratch batch_norm (the learner's ex4.1) inside ex4.2 passes the probe's
    watch."""
    v, _ = run("ex4.2", BNCallsOwnBatchNorm)
    assert v.passed, v.text()


OWN_BN_42 = """class BatchNorm1d(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
    def forward(self, x):
        y, rm, rv = batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                               self.training, self.momentum, self.eps)
        return y
"""
OWN_BN_43 = """def batch_norm_backward(dy, x, gamma, eps=1e-5):
    x_hat, _, _ = batch_norm(x, torch.ones_like(gamma), torch.zeros_like(gamma),
                             torch.zeros_like(gamma), torch.ones_like(gamma), True, eps=eps)
    return dy, (dy * x_hat).sum(0), dy.sum(0)
"""


def _ex41_source():
    import nbformat
    from helpers.cells import exercise_id, role, without_markers
    from helpers.course import SOLUTIONS
    nb = nbformat.read(SOLUTIONS / "04_batch_norm.ipynb", as_version=4)
    return next(without_markers(c.source) for c in nb.cells
                if role(c) == "answer" and exercise_id(c) == "ex4.1")


@pytest.mark.parametrize("ex,source", [("ex4.2", OWN_BN_42), ("ex4.3", OWN_BN_43)])
def test_own_batch_norm_passes_the_graders_reading(ex, source):
    """The grader reads an answer with the answer cells it draws on: calling the learner's own
    ex4.1 `batch_norm` is not F.batch_norm, while F.batch_norm itself is still refused there by
    the kernel's watch (watch_if) and in ex4.1 by the reading too."""
    others = {"ex4.1": _ex41_source()}
    assert get(ex).shortcut_in_sources(source, others) == ""
    assert get("ex4.1").shortcut_in_sources("def batch_norm(x, *a):\n    return F.batch_norm(x, *a)\n")
    v, _ = run(ex, BNViaFunctional if ex == "ex4.2" else _bwd_route("aten.native_batch_norm_backward"))
    assert v.status == "failed" and "library code" in v.message, v.text()


def test_ex42_own_batch_norm_passes_the_source_scan():
    assert not get("ex4.2").forbidden_in_source(
        "class BatchNorm1d(nn.Module):\n    def forward(self, x):\n"
        "        return batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var, self.training)[0]\n")


def test_forbid_lists_follow_the_shortcut_table():
    """DESIGN.md's table: ex4.1-ex4.3 every batch-norm op, ex4.3 also autograd, ex4.4 every
    normalisation op; each name resolves in torch 2.13 (a typo would watch nothing)."""
    from helpers.checks.core import _resolve
    bn = {"torch.nn.functional.batch_norm", "torch.nn.BatchNorm1d", "torch.nn.BatchNorm2d",
          "torch.nn.BatchNorm3d", "torch.nn.modules.batchnorm._BatchNorm", "torch.batch_norm",
          "torch.native_batch_norm", "torch.ops.aten.native_batch_norm",
          "torch.ops.aten._native_batch_norm_legit", "torch.ops.aten._native_batch_norm_legit_no_training",
          "torch.ops.aten.native_batch_norm_backward", "torch.ops.aten.batch_norm",
          "torch._batch_norm_impl_index"}
    ln = {"torch.nn.functional.layer_norm", "torch.nn.LayerNorm", "torch.layer_norm",
          "torch.native_layer_norm", "torch.nn.functional.group_norm", "torch.nn.functional.instance_norm",
          "torch.ops.aten.native_layer_norm"}
    autograd = {"torch.Tensor.backward", "torch.autograd.grad", "torch.autograd.backward",
                "torch.func.vjp", "torch.func.grad"}
    def refused(ex):   # forbid, and the names watched always (watch_if, see SAME_NAME_AS_EX41)
        e = get(ex)
        return set(e.forbid) | {d for d, cond in e.watch_if if cond({}) == d}

    for ex in ("ex4.1", "ex4.2", "ex4.3"):
        assert bn <= refused(ex), ex
    assert autograd <= refused("ex4.3")
    assert not autograd & refused("ex4.2")
    assert ln <= refused("ex4.4")
    for ex in ("ex4.1", "ex4.2", "ex4.3", "ex4.4"):
        for dotted in refused(ex):
            if dotted.endswith(".*"):
                __import__(dotted[:-2])
                continue
            owner, attr = _resolve(dotted)
            assert getattr(owner, attr) is not None, dotted


# ------------------------------------------------------------------ every sentence of the texts
#
# REQUIREMENTS[id]: (requirement the exercise's markdown states, an answer breaking only that,
# a phrase the failure must contain). Each runs at several seeds.

def _bn_only_y(*a, **k):
    return bn_reference(*a, **k)[0]


def _bn_nc_and_nchw_only(x, gamma, beta, rm, rv, training, momentum=0.1, eps=1e-5):
    """Written for (N, C) and (N, C, H, W) only: (N, C, L) gets statistics over N alone."""
    if x.dim() == 3 and training:
        mean, var = x.mean(0), x.var(0, unbiased=False)
        y = gamma[:, None] * (x - mean) / torch.sqrt(var + eps) + beta[:, None]
        _, nrm, nrv = bn_reference(x, gamma, beta, rm, rv, training, momentum, eps)
        return y, nrm, nrv
    return bn_reference(x, gamma, beta, rm, rv, training, momentum, eps)


def _bn_default_momentum(x, gamma, beta, rm, rv, training, momentum=0.2, eps=1e-5):
    return bn_reference(x, gamma, beta, rm, rv, training, momentum, eps)


def _bn_default_eps(x, gamma, beta, rm, rv, training, momentum=0.1, eps=1e-3):
    return bn_reference(x, gamma, beta, rm, rv, training, momentum, eps)


def _bn_ignores_eps(x, gamma, beta, rm, rv, training, momentum=0.1, eps=1e-5):
    return bn_reference(x, gamma, beta, rm, rv, training, momentum, 1e-5)


def _bn_centres_x_in_place(x, gamma, beta, rm, rv, training, momentum=0.1, eps=1e-5):
    y, nrm, nrv = bn_reference(x, gamma, beta, rm, rv, training, momentum, eps)
    x.sub_(x.mean())
    return y, nrm, nrv


REQUIREMENTS = {}
REQUIREMENTS["ex4.1"] = [
    ("returning (y, new_running_mean, new_running_var)", _bn_only_y, "tuple of three tensors"),
    ("equal to F.batch_norm (gamma scales, beta shifts)", make_bn(axes=None, flip=False) and
     (lambda x, g, b, *a, **k: bn_reference(x, b, g, *a, **k)), "gamma and beta are swapped"),
    ("x is (N, C) or (N, C, H, W) (any (N, C, ...) works the same way)", _bn_nc_and_nchw_only,
     "over the batch axis only"),
    ("(N, C, H, W): statistics over N, H and W", make_bn(axes=lambda x: [0]), "over the batch axis only"),
    ("normalise each channel ... over every dim except 1", make_bn(axes=lambda x: list(range(1, x.dim()))),
     "that is layer norm"),
    ("with the batch mean and the biased batch variance", make_bn(norm_unbiased=True),
     "normalised with the unbiased variance"),
    ("momentum as the weight of the new batch", make_bn(flip=True), "weight of the *new* batch statistic"),
    ("the variance unbiased", make_bn(buf_biased=True), "*unbiased* batch variance"),
    ("n values per channel", bn_count_n, "used n = N"),
    ("momentum=0.1 by default", _bn_default_momentum, "new batch has weight 0.1"),
    ("eps=1e-5 by default", _bn_default_eps, "matches eps = 0.001"),
    ("eps is the eps passed (checked with 1e-5 and 0.1)", _bn_ignores_eps, "not the eps of this call (0.1)"),
    ("training=False: normalise with running_mean and running_var", make_bn(eval_batch=True),
     "in eval mode batch norm uses running_mean"),
    ("training=False: return them unchanged", make_bn(update_in_eval=True), "changed in eval mode"),
    ("Do not modify any input: return new tensors for the updated buffers", make_bn(inplace=True),
     "changed the running_mean and running_var tensor"),
    ("Do not modify any input (x)", _bn_centres_x_in_place, "changed its input x"),
    ("the library functions ... (F.batch_norm) are refused", bn_via_torch, "library code"),
    ("keep computing in the dtype of the input", bn_float32, "dtype issue"),
    ("statistics of shape (C,) must line up with dim 1", bn_no_keepdim, "This is a shape error"),
]


class BNPlainModuleless:
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        pass


class BNWrongSignature(nn.Module):
    def __init__(self, num_features, momentum, eps):
        super().__init__()


REQUIREMENTS["ex4.2"] = [
    ("class BatchNorm1d(nn.Module)", BNPlainModuleless, "subclass nn.Module"),
    ("__init__(self, num_features, eps=1e-5, momentum=0.1)", BNWrongSignature, "the constructor is"),
    ("Parameters weight and bias", make_module(names=("gamma", "beta")), "calls gamma `weight`"),
    ("weight (ones)", BNWeightZeros, "starts with weight"),
    ("parameters are nn.Parameter", BNPlainParams, "nn.Parameter"),
    ("running_var (ones)", BNVarZeros, "starts with running_var"),
    ("num_batches_tracked (a long tensor, 0)", BNFloatCounter, "long (int64)"),
    ("num_batches_tracked is one number (a 0-d tensor, as nn.BatchNorm1d's)", BNCounterShape1, "0-d tensor"),
    ("registered with register_buffer (not plain attributes)", make_module(plain_buffers=True), "not registered buffers"),
    ("registered with register_buffer (not parameters)", make_module(param_buffers=True), "registered as parameters"),
    ("buffers ... num_batches_tracked registered", make_module(no_nbt=True), "no num_batches_tracked buffer"),
    ("a state_dict moves between your module and nn.BatchNorm1d", BNExtraBuffer, "state_dict keys"),
    ("In training mode add 1 to num_batches_tracked", make_module(no_nbt_increment=True), "num_batches_tracked is"),
    ("update the running statistics as in 4.1 (unbiased variance)", make_module(buf_biased=True), "*unbiased* batch variance"),
    ("update ... as in 4.1 (momentum weighs the new batch)", make_module(flip=True), "weight of the *new* batch statistic"),
    ("update ... as in 4.1 (n values per channel, (N, C, L))", BNCountN, "used n = N"),
    ("without building a graph through them", make_module(grad_buffers=True), "require grad"),
    ("gradients must still flow through the batch mean and variance", make_module(detach_stats=True),
     "do not detach them"),
    ("momentum=None: a cumulative average", make_module(none_as_default=True), "cumulative average"),
    ("1 / num_batches_tracked (after counting it)", BNCountsTwice, "cumulative average"),
    ("read from the buffer", make_module(python_counter=True), "not from a separate Python counter"),
    ("In eval mode use the running statistics", make_module(eval_batch=True), "in eval mode batch norm uses running_mean"),
    ("In eval mode ... change nothing (running statistics)", make_module(update_in_eval="after"), "changed in eval mode"),
    ("In eval mode ... change nothing (the counter)", BNCountsInEval, "it only counts training batches"),
    ("... change nothing (the mode)", BNSwitchesMode, "mode changed"),
    ("... change nothing (the parameters)", BNClampsWeight, "changed during a forward pass"),
    ("on (N, C) and (N, C, L) inputs", make_module(n_only=True), "over the batch axis only"),
    ("the normalisation uses the biased variance", make_module(norm_unbiased=True), "normalised with the unbiased variance"),
    ("nn.BatchNorm1d (a subclass or a wrapper) ... refused", BNWrapper, "library code"),
    ("F.batch_norm is refused", BNViaFunctional, "library code"),
    ("keep computing in the dtype of the input", BNFloat32Out, "dtype issue"),
    ("buffers keep their dtype", BNFloat32Buffers, "became float32"),
]


def _bwd_two(dy, x, gamma, eps=1e-5):
    return bwd_reference(dy, x, gamma, eps)[:2]


REQUIREMENTS["ex4.3"] = [
    ("return (dx, dgamma, dbeta)", _bwd_two, "should return a tuple (dx, dgamma, dbeta)"),
    ("y depends on x directly", bwd_wrong("sign_direct"), "direct path"),
    ("... and through the batch mean", _bwd_variant("no_mean"), "through the batch mean is missing"),
    ("... and through the batch variance", _bwd_variant("no_var"), "through the batch variance is missing"),
    ("Sum the three paths", _bwd_variant("direct"), "only the direct path"),
    ("the batch mean's path (its sign)", bwd_wrong("sign_mean"), "path through the batch mean has the wrong sign"),
    ("the batch variance's path (its sign)", bwd_wrong("sign_var"), "path through the batch variance has the wrong sign"),
    ("which depend on every x_ic of the channel (the 1/N)", bwd_wrong("times_n"), "N times too large"),
    ("training-mode batch norm (biased batch variance)", _bwd_variant("unbiased"), "unbiased variance"),
    ("eps inside the square root", _bwd_variant("eps_outside"), "inside the square root"),
    ("eps is the eps passed", bwd_wrong("eps_default"), "not the eps of this call"),
    ("dgamma: gamma multiplies the normalised input", _bwd_variant("dgamma"), "dgamma is the sum of dy alone"),
    ("dgamma and dbeta per channel (sum over the batch)", _bwd_variant("not_summed"), "Sum over the batch axis"),
    ("statistics over the batch axis", _bwd_variant("axis1"), "wrong axis"),
    ("No autograd", _bwd_autograd, "library code"),
    ("keep computing in the dtype of the input", lambda dy, x, g, eps=1e-5: tuple(t.float() for t in bwd_reference(dy, x, g, eps)), "dtype issue"),
    ("leave its inputs unchanged", bwd_scales_dy_in_place, "changed its input dy"),
]


def _ln_squeezed(x, gamma, beta, eps=1e-5):
    z = x.squeeze()
    return gamma * (z - z.mean(-1, keepdim=True)) / torch.sqrt(z.var(-1, unbiased=False, keepdim=True) + eps) + beta


def _ln_in_place(x, gamma, beta, eps=1e-5):
    y = ln_reference(x, gamma, beta, eps)
    x.sub_(x.mean(-1, keepdim=True))
    return y


REQUIREMENTS["ex4.4"] = [
    ("normalise each sample over its last dimension (not the batch)",
     lambda x, g, b, eps=1e-5: g * (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + eps) + b, "batch axis"),
    ("over its last dimension only ((N, L, C))", lambda x, g, b, eps=1e-5: g * (x - x.mean(tuple(range(1, x.dim())), keepdim=True))
     / torch.sqrt(x.var(tuple(range(1, x.dim())), unbiased=False, keepdim=True) + eps) + b, "last dimension only"),
    ("mean and biased variance", lambda x, g, b, eps=1e-5: g * (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) + b,
     "unbiased variance"),
    ("eps inside the square root", lambda x, g, b, eps=1e-5: g * (x - x.mean(-1, keepdim=True))
     / (x.var(-1, unbiased=False, keepdim=True).sqrt() + eps) + b, "inside the square root"),
    ("then scale by gamma and shift by beta", lambda x, g, b, eps=1e-5: ln_reference(x, b, g, eps), "swapped"),
    ("scale and shift are applied", lambda x, g, b, eps=1e-5: ln_reference(x, torch.ones_like(g), torch.zeros_like(b), eps),
     "were not applied"),
    ("for (N, C) and (N, L, C) inputs (shapes broadcast)", lambda x, g, b, eps=1e-5: g * (x - x.mean(-1))
     / torch.sqrt(x.var(-1, unbiased=False) + eps) + b, "This is a shape error"),
    ("a batch of one included", _ln_squeezed, "expected the input's shape (1, 5)"),
    ("leave its inputs unchanged", _ln_in_place, "changed its input x"),
    ("F.layer_norm is refused", lambda x, g, b, eps=1e-5: F.layer_norm(x, x.shape[-1:], g, b, eps), "library code"),
    ("nn.LayerNorm is refused", lambda x, g, b, eps=1e-5: nn.LayerNorm(x.shape[-1], eps=eps).double()(x) * g + b, "library code"),
    ("keep computing in the dtype of the input", lambda x, g, b, eps=1e-5: ln_reference(x, g, b, eps).float(), "dtype issue"),
]

REQ_CASES = [pytest.param(ex, i, id=f"{ex}-{i}-{req[:40]}")
             for ex, rows in REQUIREMENTS.items() for i, (req, _, _) in enumerate(rows)]


@pytest.mark.parametrize("ex,i", REQ_CASES)
def test_every_requirement_is_enforced(ex, i):
    requirement, answer, phrase = REQUIREMENTS[ex][i]
    for seed in (0, 1, 12345):
        v, _ = run(ex, answer, seed=seed)
        assert v.status in ("failed", "error") and phrase in v.message, (requirement, seed, v.text())


def _hint_part(v):
    """What the check wrote: for a relayed exception, the text after the learner's own error
    (which quotes the learner's line of code)."""
    return v.message.rsplit(", on ", 1)[-1] if v.status == "error" else v.message


def test_requirement_hints_never_give_the_reference_expression():
    for ex, rows in REQUIREMENTS.items():
        for requirement, answer, _ in rows:
            msg = _hint_part(run(ex, answer, seed=5)[0])
            for phrase in REFERENCE_PHRASES:
                assert phrase not in msg, (ex, requirement, phrase, msg)
