"""Lesson 04 (batch norm): the checks accept correct answers written in different ways,
reject each common mistake with a hint that names it, and the explorer widget responds to
its controls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.checks import run

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


@pytest.mark.parametrize("fn", [bn_reference, bn_numpy, bn_via_torch, bn_loop])
def test_ex41_correct_answers_pass(fn):
    verdict, _ = run("ex4.1", fn)
    assert verdict.status == "passed", verdict.message


def test_ex41_stub_is_reported():
    def stub(*args, **kwargs):
        raise NotImplementedError("ex4.1: write your answer here")
    verdict, _ = run("ex4.1", stub)
    assert verdict.status == "error" and "still the stub" in verdict.message


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
    ("F.batch_norm on the given buffers", bn_functional_inplace, "changed the running_mean and running_var tensor"),
    ("buffers updated in eval", make_bn(update_in_eval=True), "changed in eval mode"),
    ("buffers updated in eval, then used", make_bn(update_in_eval=True, eval_batch="updated"), "changed in eval mode"),
]


@pytest.mark.parametrize("name,fn,phrase", MISTAKES_41, ids=[m[0] for m in MISTAKES_41])
def test_ex41_mistakes_fail_with_hint(name, fn, phrase):
    verdict, _ = run("ex4.1", fn)
    assert verdict.status == "failed", (name, verdict)
    assert phrase in verdict.message, (name, verdict.message)


def test_ex41_other_wrong_answers():
    def no_tuple(x, *a, **k):
        return x
    v, _ = run("ex4.1", no_tuple)
    assert v.status == "failed" and "tuple of three tensors" in v.message

    def running_in_train(x, gamma, beta, rm, rv, training, momentum=0.1, eps=1e-5):
        y, _, _ = bn_reference(x, gamma, beta, rm, rv, False, momentum, eps)
        _, nrm, nrv = bn_reference(x, gamma, beta, rm, rv, training, momentum, eps)
        return y, nrm, nrv
    v, _ = run("ex4.1", running_in_train)
    assert v.status == "failed" and "current batch" in v.message

    def no_update(x, gamma, beta, rm, rv, training, momentum=0.1, eps=1e-5):
        return bn_reference(x, gamma, beta, rm, rv, training, momentum, eps)[0], rm, rv
    v, _ = run("ex4.1", no_update)
    assert v.status == "failed" and "not updated in training mode" in v.message

    def float32(x, *a, **k):
        y, rm, rv = bn_reference(x.float(), *(t.float() if torch.is_tensor(t) else t for t in a), **k)
        return y, rm, rv
    v, _ = run("ex4.1", float32)
    assert v.status == "failed" and "dtype of x" in v.message

    def swapped(x, gamma, beta, *a, **k):
        return bn_reference(x, beta, gamma, *a, **k)
    v, _ = run("ex4.1", swapped)
    assert v.status == "failed" and "gamma and beta are swapped" in v.message


def test_ex41_forged_record_must_hold_correct_values():
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


class BNViaFunctional(nn.Module):
    """Leans on F.batch_norm, as torch's own module does."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0))

    def forward(self, x):
        factor = 0.0
        if self.training:
            self.num_batches_tracked.add_(1)
            factor = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.item()
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


@pytest.mark.parametrize("cls", [BNReference, BNViaFunctional, BNReassign])
def test_ex42_correct_answers_pass(cls):
    verdict, _ = run("ex4.2", cls)
    assert verdict.status == "passed", verdict.message


def test_ex42_torch_itself_passes():
    verdict, _ = run("ex4.2", nn.BatchNorm1d)
    assert verdict.status == "passed", verdict.message


def test_ex42_stub_is_reported():
    class Stub(nn.Module):
        def __init__(self, num_features, eps=1e-5, momentum=0.1):
            super().__init__()
            raise NotImplementedError("ex4.2: write your answer here")
    verdict, _ = run("ex4.2", Stub)
    assert verdict.status == "error" and "still the stub" in verdict.message

    class WrongSignature(nn.Module):
        def __init__(self, num_features, momentum, eps):
            super().__init__()
    verdict, _ = run("ex4.2", WrongSignature)
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


@pytest.mark.parametrize("name,cls,phrase", MISTAKES_42, ids=[m[0] for m in MISTAKES_42])
def test_ex42_mistakes_fail_with_hint(name, cls, phrase):
    verdict, _ = run("ex4.2", cls)
    assert verdict.status == "failed", (name, verdict)
    assert phrase in verdict.message, (name, verdict.message)


def test_ex42_not_a_module():
    class Plain:
        def __init__(self, num_features, eps=1e-5, momentum=0.1):
            pass
    v, _ = run("ex4.2", Plain)
    assert v.status == "failed" and "subclass nn.Module" in v.message


def test_ex42_record_is_small():
    import json
    _, record = run("ex4.2", BNReference)
    assert len(json.dumps(record)) < 2_000_000
    _, record = run("ex4.1", bn_reference)
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
