"""Lesson 02 checks: correct answers written in different ways pass, common mistakes fail with a
hint; the PenaltyExplorer widget responds to its controls."""

import math

import numpy as np
import pytest
import torch

from helpers.checks import run


def verdict(ex, fn):
    return run(ex, fn)[0]


def assert_fails(ex, fn, hint):
    v = verdict(ex, fn)
    assert v.status == "failed" and hint in v.message, v.text()


# ---------------------------------------------------------------- ex2.1 ridge_fit
def ridge_solve(X, y, lam):
    return np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T @ y)


def ridge_augmented(X, y, lam):
    d = X.shape[1]
    A = np.vstack([X, math.sqrt(lam) * np.eye(d)])
    return np.linalg.lstsq(A, np.concatenate([y, np.zeros(d)]), rcond=None)[0]


def ridge_svd(X, y, lam):
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    return Vt.T @ (s / (s ** 2 + lam) * (U.T @ y))


def ridge_dual_torch(X, y, lam):
    # w = X^T (X X^T + lam I)^-1 y works when lam > 0; for lam = 0 fall back to the primal
    Xt, yt = torch.tensor(X), torch.tensor(y)
    if lam > 0:
        return Xt.T @ torch.linalg.solve(Xt @ Xt.T + lam * torch.eye(len(y), dtype=Xt.dtype), yt)
    return torch.linalg.lstsq(Xt, yt.unsqueeze(1)).solution.squeeze(1)


@pytest.mark.parametrize("fn", [ridge_solve, ridge_augmented, ridge_svd, ridge_dual_torch])
def test_ex21_correct(fn):
    assert verdict("ex2.1", fn).passed


def ridge_inplace(X, y, lam):
    X /= np.linalg.norm(X, axis=0)    # "normalising" the columns in place changes the caller's X
    return ridge_solve(X, y, lam)


@pytest.mark.parametrize("fn,hint", [
    (lambda X, y, lam: ridge_solve(X, y, lam / 2), "lam/2"),
    (lambda X, y, lam: ridge_solve(X, y, 2 * lam), "2*lam"),
    (lambda X, y, lam: ridge_solve(X, y, lam * len(y)), "lam * n"),
    (lambda X, y, lam: ridge_solve(X, y, lam / len(y)), "lam / n"),
    (lambda X, y, lam: np.linalg.lstsq(np.vstack([X, lam * np.eye(X.shape[1])]),
                                       np.concatenate([y, np.zeros(X.shape[1])]), rcond=None)[0],
     "sqrt(lam) * I"),
    (lambda X, y, lam: np.linalg.lstsq(X, y, rcond=None)[0], "lam had no effect"),
    (lambda X, y, lam: np.linalg.solve(X.T @ X + lam, X.T @ y), "every entry"),
    (lambda X, y, lam: np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T @ y) * 1.01,
     "not the ridge weights"),
    (lambda X, y, lam: np.append(ridge_solve(X, y, lam), 0.0), "no intercept"),
    (ridge_inplace, "in place"),
])
def test_ex21_mistakes(fn, hint):
    assert_fails("ex2.1", fn, hint)


def test_ex21_column_vector_is_accepted():
    assert verdict("ex2.1", lambda X, y, lam: ridge_solve(X, y, lam)[:, None]).passed


def test_ex21_stub():
    def stub(X, y, lam):
        raise NotImplementedError("ex2.1: write your answer here")
    v = verdict("ex2.1", stub)
    assert v.status == "error" and "still the stub" in v.message


# ---------------------------------------------------------------- ex2.2 / ex2.3 penalties
def l2_reference(model, lam):
    return lam * sum((p ** 2).sum() for p in model.parameters() if p.dim() > 1)


def l2_norm_squared(model, lam):
    total = torch.zeros(())
    for _, p in model.named_parameters():
        if p.ndim >= 2:
            total = total + torch.linalg.vector_norm(p) ** 2
    return lam * total


def l2_flat(model, lam):
    w = torch.cat([p.flatten() for p in model.parameters() if p.dim() > 1])
    return lam * (w @ w)


def l1_reference(model, lam):
    return lam * sum(p.abs().sum() for p in model.parameters() if p.dim() > 1)


def l1_norm(model, lam):
    return lam * sum(torch.linalg.vector_norm(p, ord=1) for p in model.parameters() if p.ndim > 1)


def l1_loop(model, lam):
    total = 0.0
    for name, p in model.named_parameters():
        if len(p.shape) > 1:
            total = total + torch.sum(torch.abs(p))
    return total * lam


@pytest.mark.parametrize("fn", [l2_reference, l2_norm_squared, l2_flat])
def test_ex22_correct(fn):
    assert verdict("ex2.2", fn).passed


@pytest.mark.parametrize("fn", [l1_reference, l1_norm, l1_loop])
def test_ex23_correct(fn):
    assert verdict("ex2.3", fn).passed


def _all(model, f):
    return sum(f(p).sum() for p in model.parameters())


def _named_weight(model, f):
    return sum(f(p).sum() for n, p in model.named_parameters() if n.endswith("weight"))


def _linear_only(model, f):
    return sum(f(m.weight).sum() for m in model.modules() if isinstance(m, torch.nn.Linear))


def _weights(model):
    return [p for p in model.parameters() if p.dim() > 1]


sq = lambda p: p ** 2  # noqa: E731


@pytest.mark.parametrize("fn,hint", [
    (lambda m, lam: lam * _all(m, sq), "biases"),
    (lambda m, lam: lam * _named_weight(m, sq), "by the name 'weight'"),
    (lambda m, lam: lam * _linear_only(m, sq), "convolution kernel"),
    (lambda m, lam: lam * sum(torch.linalg.vector_norm(p) for p in _weights(m)), "*squared* norm"),
    (lambda m, lam: lam * torch.sqrt(sum((p ** 2).sum() for p in _weights(m))), "square root"),
    (lambda m, lam: 0.5 * l2_reference(m, lam), "half"),
    (lambda m, lam: sum((p ** 2).sum() for p in _weights(m)), "lam is missing"),
    (lambda m, lam: lam * sum((p ** 2).mean() for p in _weights(m)), "averaged"),
    (lambda m, lam: l1_reference(m, lam), "L1 penalty"),
    (lambda m, lam: l2_reference(m, lam).item(), "not a torch tensor"),
    (lambda m, lam: l2_reference(m, lam).detach(), "not connected"),
    (lambda m, lam: torch.tensor(l2_reference(m, lam).item()), "not connected"),
])
def test_ex22_mistakes(fn, hint):
    assert_fails("ex2.2", fn, hint)


def test_ex22_changing_the_model_fails():
    def shrinking(model, lam):
        value = l2_reference(model, lam)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.5)
        return value
    assert_fails("ex2.2", shrinking, "changed the model")


def test_ex22_wrong_gradient_fails():
    def detached_half(model, lam):   # right value, gradient lam*w instead of 2*lam*w
        return lam * sum((p.detach() * p).sum() for p in _weights(model))
    assert_fails("ex2.2", detached_half, "gradient")


@pytest.mark.parametrize("fn,hint", [
    (lambda m, lam: lam * _all(m, torch.abs), "biases"),
    (lambda m, lam: lam * _named_weight(m, torch.abs), "by the name 'weight'"),
    (lambda m, lam: lam * _linear_only(m, torch.abs), "convolution kernel"),
    (lambda m, lam: l2_reference(m, lam), "L2 penalty"),
    (lambda m, lam: lam * sum(p.sum() for p in _weights(m)), "signed weights"),
    (lambda m, lam: lam * sum(torch.norm(p) for p in _weights(m)), "Euclidean norms"),
    (lambda m, lam: 0.5 * l1_reference(m, lam), "half"),
    (lambda m, lam: lam * sum(p.abs().mean() for p in _weights(m)), "averaged"),
    (lambda m, lam: l1_reference(m, lam).detach().numpy(), "not a torch tensor"),
    (lambda m, lam: lam * sum(torch.sqrt(p ** 2).sum() for p in _weights(m)), "nan"),
])
def test_ex23_mistakes(fn, hint):
    assert_fails("ex2.3", fn, hint)


# ---------------------------------------------------------------- ex2.4 l1_subgradient
@pytest.mark.parametrize("fn", [
    lambda w, lam: lam * torch.sign(w),
    lambda w, lam: torch.where(w > 0, lam, torch.where(w < 0, -lam, 0.0)).to(w.dtype),
    lambda w, lam: torch.from_numpy(lam * np.sign(w.numpy())),
    lambda w, lam: lam * ((w > 0).to(w.dtype) - (w < 0).to(w.dtype)),
])
def test_ex24_correct(fn):
    assert verdict("ex2.4", fn).passed


def subgrad_inplace(w, lam):
    return w.sign_().mul_(lam)


@pytest.mark.parametrize("fn,hint", [
    (lambda w, lam: lam * w / w.abs(), "nan where w == 0"),
    (lambda w, lam: lam * torch.where(w >= 0, 1.0, -1.0).to(w.dtype), "sign of 0 must be 0"),
    (lambda w, lam: lam * torch.where(w > 0, 1.0, -1.0).to(w.dtype), "-lam where w == 0"),
    (lambda w, lam: torch.sign(w), "without the factor lam"),
    (lambda w, lam: lam * w / (w.abs() + 1e-8), "eps"),
    (lambda w, lam: lam * w, "lam * sign(w)"),
    (subgrad_inplace, "in place"),
])
def test_ex24_mistakes(fn, hint):
    assert_fails("ex2.4", fn, hint)


# ---------------------------------------------------------------- ex2.5 soft_threshold
@pytest.mark.parametrize("fn", [
    lambda w, t: torch.sign(w) * torch.clamp(w.abs() - t, min=0),
    lambda w, t: torch.where(w > t, w - t, torch.where(w < -t, w + t, torch.zeros_like(w))),
    lambda w, t: torch.from_numpy(np.sign(w.numpy()) * np.maximum(np.abs(w.numpy()) - t, 0)),
    lambda w, t: torch.relu(w - t) - torch.relu(-w - t),
])
def test_ex25_correct(fn):
    assert verdict("ex2.5", fn).passed


def soft_inplace(w, t):
    shrunk = torch.clamp(w.abs() - t, min=0)
    return w.sign_().mul_(shrunk)


@pytest.mark.parametrize("fn,hint", [
    (lambda w, t: w - t * torch.sign(w), "overshoot zero"),
    (lambda w, t: torch.where(w.abs() > t, w, torch.zeros_like(w)), "hard thresholding"),
    (lambda w, t: torch.clamp(w - t, min=0), "negative weights all became 0"),
    (lambda w, t: torch.clamp(w.abs() - t, min=0), "sign was lost"),
    (lambda w, t: torch.sign(w) * torch.clamp(w.abs() - 2 * t, min=0), "sign(w) * max(|w| - t, 0)"),
    (soft_inplace, "in place"),
])
def test_ex25_mistakes(fn, hint):
    assert_fails("ex2.5", fn, hint)


# ---------------------------------------------------------------- ex2.6 sgd_step
def sgd_torch_optim(w, grad, lr, weight_decay):
    p = w.clone().requires_grad_(True)
    opt = torch.optim.SGD([p], lr=lr, weight_decay=weight_decay)
    p.grad = grad.clone()
    opt.step()
    return p.detach()


@pytest.mark.parametrize("fn", [
    lambda w, g, lr, wd: w - lr * (g + wd * w),
    lambda w, g, lr, wd: w * (1 - lr * wd) - lr * g,
    sgd_torch_optim,
    lambda w, g, lr, wd: torch.from_numpy(w.numpy() - lr * g.numpy() - lr * wd * w.numpy()),
])
def test_ex26_correct(fn):
    assert verdict("ex2.6", fn).passed


def sgd_inplace(w, g, lr, wd):
    w -= lr * (g + wd * w)
    return w


@pytest.mark.parametrize("fn,hint", [
    (lambda w, g, lr, wd: w - lr * g - wd * w, "not multiplied by lr"),
    (lambda w, g, lr, wd: w - lr * (g + 2 * wd * w), "no factor 2"),
    (lambda w, g, lr, wd: w - lr * (g + wd / 2 * w), "weight_decay / 2"),
    (lambda w, g, lr, wd: w - lr * (g - wd * w), "wrong sign"),
    (lambda w, g, lr, wd: w - lr * g, "ignored"),
    (lambda w, g, lr, wd: lr * (g + wd * w), "the step, not the new weights"),
    (sgd_inplace, "in place"),
])
def test_ex26_mistakes(fn, hint):
    assert_fails("ex2.6", fn, hint)


# ---------------------------------------------------------------- ex2.7 adamw_step
def adamw_reference(w, grad, m, v, t, lr, betas, eps, weight_decay):
    b1, b2 = betas
    w = w * (1 - lr * weight_decay)
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad ** 2
    m_hat = m / (1 - b1 ** t)
    v_hat = v / (1 - b2 ** t)
    return w - lr * m_hat / (v_hat.sqrt() + eps), m, v


def adamw_torch_optim(w, grad, m, v, t, lr, betas, eps, weight_decay):
    p = w.clone().requires_grad_(True)
    opt = torch.optim.AdamW([p], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    p.grad = grad.clone()
    opt.state[p] = {"step": torch.tensor(float(t - 1)), "exp_avg": m.clone(),
                    "exp_avg_sq": v.clone()}
    opt.step()
    return p.detach(), opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"]


def adamw_numpy_torch_style(w, grad, m, v, t, lr, betas, eps, weight_decay):
    """torch's own arrangement: step size lr / bc1, denominator sqrt(v) / sqrt(bc2) + eps."""
    w, g, m, v = (a.numpy() for a in (w, grad, m, v))
    b1, b2 = betas
    m = m * b1 + g * (1 - b1)
    v = v * b2 + g * g * (1 - b2)
    bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
    w = w - lr * weight_decay * w
    w = w - (lr / bc1) * m / (np.sqrt(v) / math.sqrt(bc2) + eps)
    return tuple(torch.from_numpy(a) for a in (w, m, v))


@pytest.mark.parametrize("fn", [adamw_reference, adamw_torch_optim, adamw_numpy_torch_style])
def test_ex27_correct(fn):
    assert verdict("ex2.7", fn).passed


def _variant(decay="before", bias=True, eps_inside=False, t_shift=0):
    def step(w, grad, m, v, t, lr, betas, eps, weight_decay):
        b1, b2 = betas
        tt = t + t_shift
        g = grad
        if decay == "before":
            w = w * (1 - lr * weight_decay)
        if decay == "coupled":
            g = grad + weight_decay * w
        if decay == "no_lr":
            w = w * (1 - weight_decay)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        mh = m / (1 - b1 ** tt) if bias else m
        vh = v / (1 - b2 ** tt) if bias else v
        den = (vh + eps).sqrt() if eps_inside else vh.sqrt() + eps
        w = w - lr * mh / den
        if decay == "after":
            w = w * (1 - lr * weight_decay)
        return w, m, v
    return step


def adamw_inplace(w, grad, m, v, t, lr, betas, eps, weight_decay):
    b1, b2 = betas
    m.mul_(b1).add_(grad, alpha=1 - b1)
    v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
    w = w * (1 - lr * weight_decay)
    return w - lr * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps), m, v


@pytest.mark.parametrize("fn,hint", [
    (_variant(decay="coupled"), "Adam with an L2 term"),
    (_variant(decay="after"), "after the Adam update"),
    (_variant(bias=False), "bias correction is missing"),
    (_variant(decay="no_lr"), "not multiplied by lr"),
    (_variant(decay="none"), "weight_decay was ignored"),
    (_variant(eps_inside=True), "inside the square root"),
    (_variant(t_shift=1), "t + 1"),
    (_variant(t_shift=-1), "1-based"),
    (lambda w, g, m, v, t, lr, betas, eps, wd: adamw_reference(w, g, m, v, t, lr, betas, eps, wd)[0],
     "tuple (w, m, v)"),
    (lambda w, g, m, v, t, lr, betas, eps, wd: (adamw_reference(w, g, m, v, t, lr, betas, eps, wd)[0], m, v),
     "unchanged"),
    (lambda w, g, m, v, t, lr, betas, eps, wd: adamw_reference(w, g, m, v, t, lr, betas[::-1], eps, wd),
     "beta"),
    (adamw_inplace, "in place"),
])
def test_ex27_mistakes(fn, hint):
    assert_fails("ex2.7", fn, hint)


# ---------------------------------------------------------------- ex2.8 weight_decay_equivalent
@pytest.mark.parametrize("value", [1e-3, 0.001, np.float32(1e-3).item(), 2 * 5e-4, torch.tensor(1e-3, dtype=torch.float64)])
def test_ex28_correct(value):
    assert verdict("ex2.8", value).passed


@pytest.mark.parametrize("value,hint", [
    (5e-4, "factor 2 is missing"),
    (2.5e-4, "halved"),
    (1e-2, "Compare the gradient"),
    (None, "not set"),
])
def test_ex28_mistakes(value, hint):
    assert_fails("ex2.8", value, hint)


# ---------------------------------------------------------------- records round-trip
def test_records_are_small_and_rejudge_the_same():
    import json

    from helpers.checks import get
    for ex, fn in [("ex2.1", ridge_solve), ("ex2.2", l2_reference), ("ex2.3", l1_reference),
                   ("ex2.7", adamw_reference)]:
        v, record = run(ex, fn)
        payload = json.dumps(record)
        assert len(payload) < 200_000
        again = get(ex).run_judge(json.loads(payload))
        assert v.passed and again.passed


def test_forged_record_with_wrong_numbers_fails():
    import json

    from helpers.checks import get
    _, record = run("ex2.6", lambda w, g, lr, wd: w - lr * (g + wd * w))
    forged = json.loads(json.dumps(record))
    forged["data"][0]["result"] = forged["data"][1]["result"]
    assert get("ex2.6").run_judge(forged).status == "failed"


# ---------------------------------------------------------------- the PenaltyExplorer widget
def test_penalty_explorer_responds_to_controls():
    from helpers.data import twenty_features
    from helpers.widgets import PenaltyExplorer

    ex = PenaltyExplorer(twenty_features(device="cpu"), steps=600)
    ex.l1_ratio.value = 1.0          # pure L1
    ex.log10_lambda.value = -1.0     # strong: only the informative features survive
    strong_nonzero = ex.n_nonzero
    assert strong_nonzero <= 4 and set(np.flatnonzero(ex.weights)[:2]) <= {0, 1, 2, 3}
    assert abs(ex.weights[0]) > 0 and abs(ex.weights[1]) > 0
    ex.log10_lambda.value = -3.0     # weak L1: more weights survive
    assert ex.n_nonzero > strong_nonzero
    ex.l1_ratio.value = 0.0          # pure L2: no weight is exactly zero
    assert ex.n_nonzero == 20
    norm_weak = np.abs(ex.weights).sum()
    ex.log10_lambda.value = -0.5     # stronger L2 shrinks the weights
    assert np.abs(ex.weights).sum() < norm_weak
    assert 0.0 <= ex.val_acc <= 1.0 and 0.0 <= ex.train_acc <= 1.0
    assert str(ex.n_nonzero) in ex.numbers.value
