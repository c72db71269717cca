"""Lesson 02 checks: correct answers written in different ways pass, common mistakes fail with a
hint; the PenaltyExplorer widget responds to its controls."""

import math

import numpy as np
import pytest
import torch

from helpers.checks import run
from helpers.checks.core import PUBLISHED_SEED
from util import FailureLog, assert_hints_hide, hard_coded, own_hints


SEEDS = [0, 1, 7, 12345]
LOG = FailureLog()
HINTS = LOG.hints          # (exercise, message) of every failure the tests saw
verdict, assert_fails = LOG.verdict, LOG.assert_fails


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


def ridge_float32(X, y, lam):
    # computed in float32 (a learner who casts): judged at float32 precision
    Xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    if lam > 0:
        return torch.linalg.solve(Xt.T @ Xt + lam * torch.eye(X.shape[1]), Xt.T @ yt).numpy()
    return torch.linalg.lstsq(Xt, yt[:, None]).solution[:, 0].numpy()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn", [ridge_solve, ridge_augmented, ridge_svd, ridge_dual_torch, ridge_float32])
def test_ex21_correct(fn, seed):
    assert verdict("ex2.1", fn, seed).passed


def ridge_inplace(X, y, lam):
    X /= np.linalg.norm(X, axis=0)    # "normalising" the columns in place changes the caller's X
    return ridge_solve(X, y, lam)


@pytest.mark.parametrize("seed", SEEDS)
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
    (lambda X, y, lam: ridge_solve(X, y, lam) / 0.0, "inf or nan"),
])
def test_ex21_mistakes(fn, hint, seed):
    assert_fails("ex2.1", fn, hint, seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_ex21_column_vector_fails_with_a_shape_hint(seed):
    """(d, 1) where (d,) is asked: the judge no longer reshapes it."""
    assert_fails("ex2.1", lambda X, y, lam: ridge_solve(X, y, lam)[:, None], "1-D array", seed)
    assert_fails("ex2.1", lambda X, y, lam: np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]),
                                                            X.T @ y[:, None]), "1-D array", seed)


def test_ex21_library_is_refused():
    from sklearn.linear_model import Ridge, RidgeCV, ridge_regression

    answers = [lambda X, y, lam: ridge_regression(X, y, alpha=lam) if lam > 0 else ridge_solve(X, y, lam),
               lambda X, y, lam: Ridge(alpha=lam, fit_intercept=False).fit(X, y).coef_,
               lambda X, y, lam: RidgeCV(alphas=[max(lam, 1e-12)], fit_intercept=False).fit(X, y).coef_]
    for fn in answers:
        v = verdict("ex2.1", fn)
        assert v.status == "failed" and "library code" in v.message, v.text()


def test_ex21_stub():
    def stub(X, y, lam):
        raise NotImplementedError("ex2.1: write your answer here")
    v = verdict("ex2.1", stub)
    assert v.status == "missing" and "NotImplementedError" in v.message   # core's stub verdict


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


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn", [l2_reference, l2_norm_squared, l2_flat])
def test_ex22_correct(fn, seed):
    assert verdict("ex2.2", fn, seed).passed


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn", [l1_reference, l1_norm, l1_loop])
def test_ex23_correct(fn, seed):
    assert verdict("ex2.3", fn, seed).passed


def _all(model, f):
    return sum(f(p).sum() for p in model.parameters())


def _named_weight(model, f):
    return sum(f(p).sum() for n, p in model.named_parameters() if n.endswith("weight"))


def _linear_only(model, f):
    return sum(f(m.weight).sum() for m in model.modules() if isinstance(m, torch.nn.Linear))


def _weights(model):
    return [p for p in model.parameters() if p.dim() > 1]


sq = lambda p: p ** 2  # noqa: E731


@pytest.mark.parametrize("seed", SEEDS)
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
def test_ex22_mistakes(fn, hint, seed):
    assert_fails("ex2.2", fn, hint, seed)


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


@pytest.mark.parametrize("seed", SEEDS)
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
def test_ex23_mistakes(fn, hint, seed):
    assert_fails("ex2.3", fn, hint, seed)


# ---------------------------------------------------------------- ex2.4 soft_threshold
def soft_clamp(w, t):
    return torch.sign(w) * torch.clamp(w.abs() - t, min=0)


def soft_where(w, t):
    return torch.where(w > t, w - t, torch.where(w < -t, w + t, torch.zeros_like(w)))


def soft_numpy(w, t):
    return torch.from_numpy(np.sign(w.numpy()) * np.maximum(np.abs(w.numpy()) - t, 0))


def soft_relu(w, t):
    return torch.relu(w - t) - torch.relu(-w - t)


def soft_clip(w, t):
    # w minus its projection onto [-t, t]
    return w - torch.clamp(w, -t, t)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn", [soft_clamp, soft_where, soft_numpy, soft_relu, soft_clip])
def test_ex24_correct(fn, seed):
    assert verdict("ex2.4", fn, seed).passed


def soft_inplace(w, t):
    shrunk = torch.clamp(w.abs() - t, min=0)
    return w.sign_().mul_(shrunk)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn,hint", [
    (lambda w, t: w - t * torch.sign(w), "overshoot zero"),
    (lambda w, t: torch.where(w.abs() > t, w, torch.zeros_like(w)), "hard thresholding"),
    (lambda w, t: torch.clamp(w - t, min=0), "negative weights all became 0"),
    (lambda w, t: torch.clamp(w.abs() - t, min=0), "sign was lost"),
    (lambda w, t: torch.sign(w) * torch.clamp(w.abs() - 2 * t, min=0), "by 2t instead of t"),
    (lambda w, t: torch.sign(w) * torch.clamp(w.abs() - t / 2, min=0), "by t/2 instead of t"),
    (lambda w, t: w * max(0.0, 1.0 - t), "scaled w by a factor"),
    (lambda w, t: w - t, "subtracted t from every entry"),
    (soft_inplace, "in place"),
    (lambda w, t: soft_clamp(w, t).reshape(-1), "shape of w"),
])
def test_ex24_mistakes(fn, hint, seed):
    assert_fails("ex2.4", fn, hint, seed)


def test_ex24_tiny_instead_of_zero_fails():
    assert_fails("ex2.4", lambda w, t: soft_clamp(w, t) + 1e-13 * (w.abs() <= t), "not exactly 0")


def test_ex24_softshrink_is_refused():
    """DESIGN's shortcut table: F.softshrink and nn.Softshrink compute the whole answer."""
    import torch.nn.functional as F
    for fn in (lambda w, t: F.softshrink(w, t), lambda w, t: torch.nn.Softshrink(t)(w)):
        v = verdict("ex2.4", fn)
        assert v.status == "failed" and "softshrink" in v.message.lower(), v.text()
        assert "library code" in v.message


# ---------------------------------------------------------------- ex2.5 lasso_cd
def lasso_residual(X, y, lam, n_sweeps):
    """Keeps the residual y - Xw up to date."""
    n, d = X.shape
    w = np.zeros(d)
    r = y.copy()
    z = (X ** 2).sum(axis=0) / n
    for _ in range(n_sweeps):
        for j in range(d):
            rho = X[:, j] @ r / n + z[j] * w[j]
            new = np.sign(rho) * max(abs(rho) - lam, 0.0) / z[j]
            r -= X[:, j] * (new - w[j])
            w[j] = new
    return w


def lasso_recompute(X, y, lam, n_sweeps):
    """Recomputes the partial residual for every coordinate."""
    n, d = X.shape
    w = np.zeros(d)
    for _ in range(n_sweeps):
        for j in range(d):
            others = np.delete(np.arange(d), j)
            partial = y - X[:, others] @ w[others]
            rho = X[:, j] @ partial / n
            zj = X[:, j] @ X[:, j] / n
            if rho > lam:
                w[j] = (rho - lam) / zj
            elif rho < -lam:
                w[j] = (rho + lam) / zj
            else:
                w[j] = 0.0
    return w


def lasso_gram(X, y, lam, n_sweeps):
    """Through the Gram matrix: only d x d work per coordinate."""
    n, d = X.shape
    G, c = X.T @ X / n, X.T @ y / n
    w = np.zeros(d)
    for _ in range(n_sweeps):
        for j in range(d):
            rho = c[j] - G[j] @ w + G[j, j] * w[j]
            w[j] = np.sign(rho) * np.maximum(np.abs(rho) - lam, 0.0) / G[j, j]
    return w


def lasso_prox(X, y, lam, n_sweeps):
    """A proximal step per coordinate with step 1/z_j (the same minimiser, written otherwise)."""
    n, d = X.shape
    w = np.zeros(d)
    for _ in range(n_sweeps):
        for j in range(d):
            zj = np.mean(X[:, j] ** 2)
            g = -X[:, j] @ (y - X @ w) / n
            v = w[j] - g / zj
            w[j] = np.sign(v) * max(abs(v) - lam / zj, 0.0)
    return w


def lasso_sklearn_style(X, y, lam, n_sweeps):
    """scikit-learn's arrangement: sums, not means, and the threshold lam * n."""
    n, d = X.shape
    w, R = np.zeros(d), y.astype(float)
    norms = np.einsum("ij,ij->j", X, X)
    for _ in range(n_sweeps):
        for j in range(d):
            tmp = X[:, j] @ R + w[j] * norms[j]
            new = np.copysign(max(abs(tmp) - lam * n, 0.0), tmp) / norms[j]
            R = R + X[:, j] * (w[j] - new)
            w[j] = new
    return w


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn", [lasso_residual, lasso_recompute, lasso_gram, lasso_prox,
                                lasso_sklearn_style])
def test_ex25_correct(fn, seed):
    assert verdict("ex2.5", fn, seed).passed


def _cd_answer(order="cyclic", start="zero", update="each", scale="z", rho="partial",
               thresh="rho", lam_factor=None, sweeps=0):
    """A learner-style coordinate descent with one mistake (written here, not the judge's)."""
    def answer(X, y, lam, n_sweeps):
        n, d = X.shape
        if lam_factor == "n":
            lam = lam * n
        elif lam_factor == "1/n":
            lam = lam / n
        elif lam_factor is not None:
            lam = lam * {"0": 0.0, "1/2": 0.5, "2": 2.0}[lam_factor]
        z = (X ** 2).sum(axis=0) / n
        w = np.zeros(d) if start == "zero" else np.linalg.lstsq(X, y, rcond=None)[0]
        w0 = w.copy()
        js = range(d - 1, -1, -1) if order == "reverse" else range(d)
        for _ in range(n_sweeps + sweeps):
            at_start = w.copy()
            for j in js:
                base = {"each": w, "jacobi": at_start, "never": w0}[update]
                r = y - X @ base
                c = X[:, j] @ r / n + (z[j] * w[j] if rho == "partial" else 0.0)
                den = {"z": z[j], "none": 1.0, "sumsq": X[:, j] @ X[:, j]}[scale]
                if thresh == "rho":
                    w[j] = np.sign(c) * max(abs(c) - lam, 0.0) / den
                elif thresh == "rho_over_z":
                    w[j] = np.sign(c / den) * max(abs(c / den) - lam, 0.0)
                else:
                    w[j] = w[j] + np.sign(c) * max(abs(c) - lam, 0.0) / den
        return w
    return answer


def lasso_inplace(X, y, lam, n_sweeps):
    n, d = X.shape
    w = np.zeros(d)
    r = y                                   # the residual *is* y: -= below changes the caller's y
    z = (X ** 2).sum(axis=0) / n
    for _ in range(n_sweeps):
        for j in range(d):
            rho = X[:, j] @ r / n + z[j] * w[j]
            new = np.sign(rho) * max(abs(rho) - lam, 0.0) / z[j]
            r -= X[:, j] * (new - w[j])
            w[j] = new
    return w


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn,hint", [
    (_cd_answer(update="jacobi"), "simultaneous (Jacobi)"),
    (_cd_answer(update="never"), "never updated"),
    (_cd_answer(order="reverse"), "from the last to the first"),
    (_cd_answer(start="lstsq"), "did not start from w = 0"),
    (_cd_answer(lam_factor="1/n"), "n times too small"),
    (_cd_answer(lam_factor="n"), "n times too large"),
    (_cd_answer(scale="none"), "curvature"),
    (_cd_answer(lam_factor="0"), "lam was ignored"),
    (_cd_answer(lam_factor="1/2"), "half of what it should be"),
    (_cd_answer(lam_factor="2"), "twice what it should be"),
    (_cd_answer(scale="sumsq"), "squared column norm"),
    (_cd_answer(rho="full"), "full residual"),
    (_cd_answer(thresh="rho_over_z"), "divided by the curvature first"),
    (_cd_answer(rho="full", thresh="step"), "change of w_j"),
    (_cd_answer(sweeps=1), "count full sweeps"),
    (lasso_inplace, "in place"),
    (lambda X, y, lam, k: lasso_residual(X, y, lam, k)[:, None], "1-D array"),
    (lambda X, y, lam, k: torch.from_numpy(lasso_residual(X, y, lam, k)), "NumPy array"),
    (lambda X, y, lam, k: lasso_residual(X, y, lam, k).astype(np.float32), "is float32"),
    (lambda X, y, lam, k: np.zeros(X.shape[1]), "no coordinate moved"),
    (lambda X, y, lam, k: lasso_residual(X, y, lam, k) + 1e-14 * (lasso_residual(X, y, lam, k) == 0),
     "exactly 0"),
])
def test_ex25_mistakes(fn, hint, seed):
    assert_fails("ex2.5", fn, hint, seed)


def test_ex25_one_sweep_too_few_is_named():
    assert_fails("ex2.5", _cd_answer(sweeps=-1), "count full sweeps", seed=3)


def test_ex25_reference_matches_sklearn_for_one_to_three_sweeps():
    """The judge's own reference equals scikit-learn's Lasso(tol=0, max_iter=k) iterates on
    the many-sweep problem, and on A/B wherever scikit-learn does not screen coordinates."""
    from helpers.checks.lesson02 import _cd, _lasso_cases, _sklearn_lasso
    for seed in SEEDS:
        *_, (label, X, y, lam, k, sk) = _lasso_cases(seed)
        assert sk
        for kk in (1, 2, 3, k):
            assert np.allclose(_cd(X, y, lam, kk)[0], _sklearn_lasso(X, y, lam, kk), rtol=0, atol=1e-10)


def test_ex25_cases_have_exact_zeros_and_nonzeros_at_every_seed():
    """Every case at 200 seeds: at least 2 exact zeros and 2 nonzero weights, each update at
    least 1e-6 from the edge of the zero band, and the many-sweep case converged (so that
    scikit-learn, which screens zero coordinates, agrees with pure coordinate descent)."""
    from helpers.checks.lesson02 import _cd, _lasso_cases, _sklearn_lasso
    for seed in range(200):
        for label, X, y, lam, k, sk in _lasso_cases(seed):
            w, margin = _cd(X, y, lam, k)
            assert np.sum(w == 0) >= 2 and np.sum(w != 0) >= 2 and margin.min() > 1e-6, (seed, label)
            assert np.all(np.abs(X).sum(axis=0) > 0)
            if sk:
                s = _sklearn_lasso(X, y, lam, k)
                assert np.array_equal(s == 0, w == 0) and np.allclose(s, w, rtol=0, atol=1e-12)


def test_ex25_library_is_refused():
    import warnings

    from sklearn.linear_model import ElasticNet, Lasso, lasso_path

    def with_lasso(X, y, lam, n_sweeps):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Lasso(alpha=lam, fit_intercept=False, tol=0, max_iter=n_sweeps).fit(X, y).coef_

    def with_enet(X, y, lam, n_sweeps):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = ElasticNet(alpha=lam, l1_ratio=1.0, fit_intercept=False, tol=0, max_iter=n_sweeps)
            return m.fit(X, y).coef_

    def with_path(X, y, lam, n_sweeps):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return lasso_path(X, y, alphas=[lam], max_iter=n_sweeps, tol=0)[1][:, 0]

    for fn in (with_lasso, with_enet, with_path):
        v = verdict("ex2.5", fn)
        assert v.status == "failed" and "library code" in v.message, v.text()


# ---------------------------------------------------------------- ex2.6 sgd_step
def sgd_torch_optim(w, grad, lr, weight_decay):
    p = w.clone().requires_grad_(True)
    opt = torch.optim.SGD([p], lr=lr, weight_decay=weight_decay)
    p.grad = grad.clone()
    opt.step()
    return p.detach()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn", [
    lambda w, g, lr, wd: w - lr * (g + wd * w),
    lambda w, g, lr, wd: w * (1 - lr * wd) - lr * g,
    lambda w, g, lr, wd: torch.add(w, g + wd * w, alpha=-lr),
    lambda w, g, lr, wd: torch.from_numpy(w.numpy() - lr * g.numpy() - lr * wd * w.numpy()),
])
def test_ex26_correct(fn, seed):
    assert verdict("ex2.6", fn, seed).passed


def sgd_inplace(w, g, lr, wd):
    w -= lr * (g + wd * w)
    return w


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn,hint", [
    (lambda w, g, lr, wd: w - lr * g - wd * w, "not scaled by the learning rate"),
    (lambda w, g, lr, wd: w - lr * (g + 2 * wd * w), "twice torch"),
    (lambda w, g, lr, wd: w - lr * (g + wd / 2 * w), "half of torch"),
    (lambda w, g, lr, wd: w - lr * (g - wd * w), "wrong sign"),
    (lambda w, g, lr, wd: w - lr * g, "ignored"),
    (lambda w, g, lr, wd: lr * (g + wd * w), "the step, not the new weights"),
    (lambda w, g, lr, wd: w.clone(), "returned w unchanged"),
    (lambda w, g, lr, wd: w + lr * (g + wd * w), "wrong sign: gradient descent"),
    (sgd_inplace, "in place"),
])
def test_ex26_mistakes(fn, hint, seed):
    assert_fails("ex2.6", fn, hint, seed)


def sgd_functional(w, grad, lr, weight_decay):
    from torch.optim.sgd import sgd
    p = w.clone()
    sgd([p], [grad.clone()], [None], weight_decay=weight_decay, momentum=0.0, lr=lr,
        dampening=0.0, nesterov=False, maximize=False)
    return p


@pytest.mark.parametrize("fn", [sgd_torch_optim, sgd_functional])
def test_ex26_torch_optim_is_refused(fn):
    """DESIGN's shortcut table: any torch.optim optimizer or its functional form, even on a clone."""
    v = verdict("ex2.6", fn)
    assert v.status == "failed" and "library code" in v.message and "torch.optim" in v.message, v.text()


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


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn", [adamw_reference, adamw_numpy_torch_style])
def test_ex27_correct(fn, seed):
    assert verdict("ex2.7", fn, seed).passed


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


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn,hint", [
    (_variant(decay="coupled"), "Adam with an L2 term"),
    (_variant(decay="after"), "after the Adam update"),
    (_variant(bias=False), "bias correction is missing"),
    (_variant(decay="no_lr"), "not scaled by the learning rate"),
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
def test_ex27_mistakes(fn, hint, seed):
    assert_fails("ex2.7", fn, hint, seed)


def adamw_via_adam(w, grad, m, v, t, lr, betas, eps, weight_decay):
    """torch.optim.Adam with decoupled_weight_decay=True is AdamW under another name."""
    p = w.clone().requires_grad_(True)
    opt = torch.optim.Adam([p], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                           decoupled_weight_decay=True)
    p.grad = grad.clone()
    opt.state[p] = {"step": torch.tensor(float(t - 1)), "exp_avg": m.clone(), "exp_avg_sq": v.clone()}
    opt.step()
    return p.detach(), opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"]


@pytest.mark.parametrize("fn", [adamw_torch_optim, adamw_via_adam])
def test_ex27_torch_optim_is_refused(fn):
    """torch.optim.AdamW run on a clone of w computes the whole answer: refused."""
    v = verdict("ex2.7", fn)
    assert v.status == "failed" and "library code" in v.message and "torch.optim" in v.message, v.text()


# ---------------------------------------------------------------- ex2.8 decay_param_groups
def groups_reference(model, weight_decay):
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def groups_named_loop(model, weight_decay):
    decay, rest = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else rest).append(p)
    return ({"params": decay, "weight_decay": weight_decay, "lr": 1e-3},   # extra keys are fine
            {"params": rest, "weight_decay": 0})


def groups_filter_reversed(model, weight_decay):
    trainable = list(filter(lambda p: p.requires_grad, model.parameters()))[::-1]
    return [dict(params=[p for p in trainable if len(p.shape) > 1], weight_decay=weight_decay),
            dict(params=(p for p in trainable if len(p.shape) <= 1), weight_decay=0.0)]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn", [groups_reference, groups_named_loop, groups_filter_reversed])
def test_ex28_correct(fn, seed):
    assert verdict("ex2.8", fn, seed).passed


def test_ex28_reference_builds_an_optimizer():
    from helpers.checks.lesson02 import _groups_model
    for which in range(4):
        model = _groups_model(which, 0)
        opt = torch.optim.AdamW(groups_reference(model, 0.1))
        assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]


def _by_name(model, weight_decay, rule):
    decay, rest = [], []
    for n, p in model.named_parameters():
        if p.requires_grad:
            (decay if rule(n, p) else rest).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _twice(model, wd):
    g = groups_reference(model, wd)
    g[1]["params"] = g[1]["params"] + g[0]["params"][:1]
    return g


def _missing(model, wd):
    g = groups_reference(model, wd)
    g[1]["params"] = g[1]["params"][1:]
    return g


def _no_key(model, wd):
    g = groups_reference(model, wd)
    del g[1]["weight_decay"]
    return g


def _copies(model, wd):
    g = groups_reference(model, wd)
    g[0]["params"] = [p.detach().clone() for p in g[0]["params"]]
    return g


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn,hint", [
    (lambda m, wd: _by_name(m, wd, lambda n, p: n.endswith("weight")), "normalisation layer"),
    (lambda m, wd: _by_name(m, wd, lambda n, p: p.dim() > 1 or n.endswith("bias")), "a bias"),
    (lambda m, wd: [{"params": [p for p in m.parameters() if p.dim() > 1], "weight_decay": wd},
                    {"params": [p for p in m.parameters() if p.dim() <= 1], "weight_decay": 0.0}],
     "frozen"),
    (_twice, "every trainable parameter belongs to exactly one group"),
    (_missing, "neither group"),
    (lambda m, wd: groups_reference(m, wd)[::-1], "wrong order"),
    (lambda m, wd: [{"params": groups_reference(m, wd)[0]["params"], "weight_decay": 0.0},
                    {"params": groups_reference(m, wd)[1]["params"], "weight_decay": wd}],
     "wrong group"),
    (lambda m, wd: [{"params": groups_reference(m, wd)[0]["params"], "weight_decay": 2 * wd},
                    groups_reference(m, wd)[1]], "as it is"),
    (_no_key, "default (0.01)"),
    (_copies, "parameter tensors themselves"),
    (lambda m, wd: _by_name(m, wd, lambda n, p: isinstance(p, torch.nn.Parameter) and p.dim() > 1
                            and "0" in n), "not in the decay group"),
    (lambda m, wd: groups_reference(m, wd)[0], "list of two dicts"),
    (lambda m, wd: _by_name(m, wd, lambda n, p: p.dim() == 2), "(4-D) is a weight"),
    (lambda m, wd: _by_name(m, wd, lambda n, p: isinstance(p, torch.nn.Parameter) and p.dim() > 1
                            and not n.startswith("0.")), "is a weight but is not in the decay"),
])
def test_ex28_mistakes(fn, hint, seed):
    assert_fails("ex2.8", fn, hint, seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_ex28_mistakes_name_the_parameter_kind(seed):
    """A bias, a norm scale and a 1-D gain in the decay group each get their own reason."""
    everything = lambda m, wd: [{"params": [p for p in m.parameters() if p.requires_grad],  # noqa: E731
                                 "weight_decay": wd}, {"params": [], "weight_decay": 0.0}]
    assert_fails("ex2.8", everything, "is a bias", seed)
    no_bias = lambda m, wd: _by_name(m, wd, lambda n, p: not n.endswith("bias"))  # noqa: E731
    assert_fails("ex2.8", no_bias, "normalisation layer", seed)
    by_type = lambda m, wd: _by_name(  # noqa: E731
        m, wd, lambda n, p: p.dim() > 1 or (n.endswith("gain")))
    assert_fails("ex2.8", by_type, "1-D parameter", seed)


# ---------------------------------------------------------------- dtype (issue 14)
def test_ex26_float_cast_is_told_dtype():
    assert_fails("ex2.6", lambda w, g, lr, wd: (w - lr * (g + wd * w)).float(), "is float32, the input float64")


def test_ex27_float_cast_is_told_dtype():
    def cast(w, grad, m, v, t, lr, betas, eps, weight_decay):
        return tuple(a.float() for a in adamw_reference(w, grad, m, v, t, lr, betas, eps, weight_decay))
    assert_fails("ex2.7", cast, "is float32, the input float64")


def test_elementwise_float_cast_is_told_dtype():
    assert_fails("ex2.4", lambda w, t: (torch.sign(w) * torch.clamp(w.abs() - t, min=0.0)).float(),
                 "is float32, the input float64")
    assert_fails("ex2.4", lambda w, t: soft_numpy(w, t).numpy(), "return a torch tensor")


def test_float32_penalties_pass():
    """ex2.2/ex2.3 are float-valued: a penalty computed in float32 (the model's dtype) passes,
    and so does one computed in float64."""
    for seed in SEEDS:
        assert verdict("ex2.2", lambda m, lam: lam * sum((p.double() ** 2).sum() for p in m.parameters()
                                                         if p.dim() > 1), seed).passed
        assert verdict("ex2.3", l1_reference, seed).passed


# ---------------------------------------------------------------- unseen seeds, hints
@pytest.mark.parametrize("ex,fn", [
    ("ex2.1", ridge_solve), ("ex2.2", lambda m, lam: l2_reference(m, lam).item()),
    ("ex2.4", lambda w, t: torch.sign(w) * torch.clamp(w.abs() - t, min=0.0)),
    ("ex2.5", lasso_residual),
    ("ex2.6", lambda w, g, lr, wd: w - lr * (g + wd * w)), ("ex2.7", adamw_reference),
])
def test_hard_coded_published_outputs_fail_at_another_seed(ex, fn):
    answer, it = hard_coded(ex, fn)
    if ex != "ex2.2":       # a float cannot carry a gradient: ex2.2's copy fails at every seed
        assert run(ex, answer, seed=PUBLISHED_SEED)[0].passed
    it["i"] = 0
    assert not run(ex, answer, seed=1)[0].passed


def test_ex28_depends_on_the_seed():
    """The weight_decay of each case is drawn from the seed: the published value fails elsewhere."""
    from helpers.checks.lesson02 import _groups_cases
    wds = [wd for _, _, wd in _groups_cases(PUBLISHED_SEED)]
    calls = {"i": 0}

    def fixed(model, weight_decay):
        out = groups_reference(model, wds[calls["i"] % len(wds)])
        calls["i"] += 1
        return out
    assert run("ex2.8", fixed, seed=PUBLISHED_SEED)[0].passed
    calls["i"] = 0
    assert not run("ex2.8", fixed, seed=1)[0].passed


# what a hint must never spell out (the reference answers' expressions)
REFERENCE = {
    "ex2.1": ["X.T @ X + lam * np.eye", "(X^T X + lam*I) w = X^T y", "X^T X + lam * I"],
    "ex2.2": ["sum((p ** 2).sum() for p in model.parameters() if p.dim() > 1)"],
    "ex2.3": ["sum(p.abs().sum() for p in model.parameters() if p.dim() > 1)"],
    "ex2.4": ["torch.sign(w) * torch.clamp", "sign(w) * max(|w| - t, 0)", "sign(w)*max(|w|-t,0)",
              "relu(w - t)", "w - torch.clamp(w, -t, t)"],
    "ex2.5": ["S(rho_j, lam) / z_j", "S(rho, lam) / z", "sign(rho) * max(|rho| - lam, 0)",
              "max(abs(rho) - lam", "X[:, j] @ r / n + z[j] * w[j]", "(y - Xw + X_j w_j)",
              "X[:, j] . (y - Xw"],
    "ex2.6": ["w - lr * (grad + weight_decay * w)", "grad + weight_decay * w", "w - lr * g"],
    "ex2.7": ["w * (1 - lr * weight_decay)", "(1 - lr * weight_decay)", "beta1 * m + (1 - beta1) * grad",
              "beta1*m + (1-beta1)*grad", "m_hat / (sqrt(v_hat) + eps)"],
    "ex2.8": ["if p.requires_grad and p.dim() > 1", "[p for p in model.parameters()"],
}


def test_hints_do_not_contain_the_reference_expression():
    """Scans every failure message of the mistake lists (run here, at two seeds) and any other
    message the tests of this module produced before it."""
    assert_hints_hide(REFERENCE, own_hints(globals()) + HINTS)


# ---------------------------------------------------------------- every sentence of the texts
#
# REQUIREMENTS[id]: (a requirement the exercise's markdown states, an answer breaking only that,
# a phrase its failure must contain). Each runs at three seeds (test below).

def _ridge_min_lam(X, y, lam):
    return ridge_solve(X, y, max(lam, 1e-2))            # "lam = 0 gives least squares" broken


def _ridge_underdetermined_ignores_lam(X, y, lam):
    if X.shape[1] > X.shape[0]:
        return np.linalg.lstsq(X, y, rcond=None)[0]
    return ridge_solve(X, y, lam)


def _ridge_mean(X, y, lam):
    n = len(y)
    return np.linalg.solve(X.T @ X / n + lam * np.eye(X.shape[1]), X.T @ y / n)


def _l2_keepdim(model, lam):
    return lam * sum((p ** 2).sum() for p in model.parameters() if p.dim() > 1).reshape(1)


def _l2_scales_a_weight(model, lam):
    value = l2_reference(model, lam)
    model[0].weight.data = model[0].weight.data * 0.99     # through .data: no autograd trace
    return value


def _l1_with_model_change(model, lam):
    value = l1_reference(model, lam)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() <= 1:
                p.zero_()
    return value


def _groups_no_embedding(model, wd):
    emb = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    return _by_name(model, wd, lambda n, p: p.dim() > 1 and id(p) not in emb)


def _groups_freeze(model, wd):
    groups = groups_reference(model, wd)
    for p in model.parameters():
        if p.dim() <= 1:
            p.requires_grad_(False)
    return groups


def _groups_shrink(model, wd):
    groups = groups_reference(model, wd)
    with torch.no_grad():
        for p in groups[0]["params"]:
            p.mul_(1 - wd)                         # "applies" the decay once
    return groups


def _adamw_list(w, g, m, v, t, lr, betas, eps, wd):
    return list(adamw_reference(w, g, m, v, t, lr, betas, eps, wd))[:2]


def _adamw_numpy(w, g, m, v, t, lr, betas, eps, wd):
    return tuple(a.numpy() for a in adamw_reference(w, g, m, v, t, lr, betas, eps, wd))


def _adamw_grad_inplace(w, g, m, v, t, lr, betas, eps, wd):
    out = adamw_reference(w, g, m, v, t, lr, betas, eps, wd)
    g.zero_()                                      # "zero_grad" on the input
    return out


def _sgd_grad_inplace(w, g, lr, wd):
    g.add_(w, alpha=wd)
    return w - lr * g


REQUIREMENTS = {}
REQUIREMENTS["ex2.1"] = [
    ("return the weights minimising ||Xw - y||^2 + lam ||w||^2",
     lambda X, y, lam: ridge_solve(X, y, lam) * 1.01, "not the ridge weights"),
    ("no intercept", lambda X, y, lam: np.append(ridge_solve(X, y, lam), 0.0), "no intercept"),
    ("no factor 1/2", lambda X, y, lam: ridge_solve(X, y, lam / 2), "lam/2"),
    ("no averaging over samples", _ridge_mean, "lam * n"),
    ("as a 1-D array of shape (d,)", lambda X, y, lam: ridge_solve(X, y, lam)[:, None], "1-D array"),
    ("also work when d > n with lam > 0", _ridge_underdetermined_ignores_lam, "lam had no effect"),
    ("ordinary least squares for lam = 0", _ridge_min_lam, "lam = 0"),
    ("None of the functions may modify its inputs", ridge_inplace, "in place"),
    ("scikit-learn's Ridge ... refused",
     lambda X, y, lam: __import__("sklearn.linear_model", fromlist=["Ridge"]).Ridge(
         alpha=lam, fit_intercept=False).fit(X, y).coef_, "library code"),
]
REQUIREMENTS["ex2.2"] = [
    ("lam * sum w^2", lambda m, lam: 0.5 * l2_reference(m, lam), "half"),
    ("over all parameters with p.dim() > 1 (convolution kernels too)",
     lambda m, lam: lam * _linear_only(m, sq), "convolution kernel"),
    ("no biases, no norm-layer parameters", lambda m, lam: lam * _all(m, sq), "biases"),
    ("a torch scalar", lambda m, lam: l2_reference(m, lam).item(), "not a torch tensor"),
    ("a 0-d tensor", _l2_keepdim, "0-d tensor"),
    ("that autograd can differentiate", lambda m, lam: l2_reference(m, lam).detach(), "not connected"),
    ("compares the gradients with 2 lam w",
     lambda m, lam: lam * sum((p.detach() * p).sum() for p in _weights(m)), "gradient"),
    ("do not change the model", _l2_scales_a_weight, "changed the model"),
]
REQUIREMENTS["ex2.3"] = [
    ("lam * sum |w|", lambda m, lam: l2_reference(m, lam), "L2 penalty"),
    ("over the parameters with p.dim() > 1", lambda m, lam: lam * _all(m, torch.abs), "biases"),
    ("a differentiable torch scalar", lambda m, lam: l1_reference(m, lam).detach(), "not connected"),
    ("(0-d)", lambda m, lam: l1_reference(m, lam).reshape(1, 1), "0-d tensor"),
    ("do not change the model", _l1_with_model_change, "changed the model"),
    ("gradients lam * sign(w); at 0 any value in [-lam, lam]",
     lambda m, lam: lam * sum(torch.sqrt(p ** 2).sum() for p in _weights(m)), "nan"),
]
REQUIREMENTS["ex2.4"] = [
    ("entries with |w| <= t become exactly 0", lambda w, t: w - t * torch.sign(w), "overshoot zero"),
    ("exactly 0", lambda w, t: soft_clamp(w, t) + 1e-13 * (w.abs() <= t), "not exactly 0"),
    ("every other entry moves by t towards 0",
     lambda w, t: torch.where(w.abs() > t, w, torch.zeros_like(w)), "hard thresholding"),
    ("and keeps its sign", lambda w, t: torch.clamp(w.abs() - t, min=0), "sign was lost"),
    ("a tensor w of any shape: a new tensor of w's shape",
     lambda w, t: soft_clamp(w, t).reshape(-1), "shape of w"),
    ("and dtype", lambda w, t: soft_clamp(w, t).float(), "is float32"),
    ("a (torch) tensor", lambda w, t: soft_numpy(w, t).numpy(), "torch tensor"),
    ("do not change w", soft_inplace, "in place"),
    ("F.softshrink and nn.Softshrink are refused",
     lambda w, t: torch.nn.functional.softshrink(w, t), "library code"),
]
REQUIREMENTS["ex2.5"] = [
    ("scikit-learn's objective: the squared error divided by 2n", _cd_answer(lam_factor="1/n"),
     "n times too small"),
    ("no intercept", lambda X, y, lam, k: np.append(lasso_residual(X, y, lam, k), 0.0),
     "no intercept"),
    ("start from w = 0", _cd_answer(start="lstsq"), "did not start from w = 0"),
    ("w[0], ..., w[d-1], in this order", _cd_answer(order="reverse"), "from the last to the first"),
    ("the exact minimiser over that one coordinate", _cd_answer(scale="none"), "curvature"),
    ("the other coordinates at their current values (j sees the new 0..j-1)",
     _cd_answer(update="jacobi"), "simultaneous (Jacobi)"),
    ("after n_sweeps sweeps", _cd_answer(sweeps=1), "count full sweeps"),
    ("a NumPy array", lambda X, y, lam, k: torch.from_numpy(lasso_residual(X, y, lam, k)),
     "NumPy array"),
    ("float64", lambda X, y, lam, k: lasso_residual(X, y, lam, k).astype(np.float32), "is float32"),
    ("of shape (d,)", lambda X, y, lam, k: lasso_residual(X, y, lam, k)[None, :], "1-D array"),
    ("a coordinate whose minimiser is 0 must be exactly 0",
     lambda X, y, lam, k: lasso_residual(X, y, lam, k) + 1e-14 * (lasso_residual(X, y, lam, k) == 0),
     "exactly 0"),
    ("do not change X or y", lasso_inplace, "in place"),
    ("refuses scikit-learn's Lasso, ElasticNet, lasso_path, ...",
     lambda X, y, lam, k: __import__("sklearn.linear_model", fromlist=["lasso_path"]).lasso_path(
         X, y, alphas=[lam], max_iter=k, tol=0)[1][:, 0], "library code"),
]
REQUIREMENTS["ex2.6"] = [
    ("one step of torch.optim.SGD(lr, weight_decay)",
     lambda w, g, lr, wd: w - lr * g - wd * w, "not scaled by the learning rate"),
    ("a new tensor of w's shape", lambda w, g, lr, wd: (w - lr * (g + wd * w)).reshape(-1, 1),
     "shape"),
    ("and dtype", lambda w, g, lr, wd: (w - lr * (g + wd * w)).float(), "is float32"),
    ("do not change w", sgd_inplace, "in place"),
    ("or grad", _sgd_grad_inplace, "in place"),
    ("any torch.optim optimizer is refused", sgd_torch_optim, "library code"),
]
REQUIREMENTS["ex2.7"] = [
    ("returning the tuple (w_new, m_new, v_new)", _adamw_list, "tuple (w, m, v)"),
    ("the moments after step t", lambda w, g, m, v, t, lr, betas, eps, wd:
     (adamw_reference(w, g, m, v, t, lr, betas, eps, wd)[0], m, v), "unchanged"),
    ("t is 1-based", _variant(t_shift=-1), "1-based"),
    ("betas = (beta1, beta2)", lambda w, g, m, v, t, lr, betas, eps, wd:
     adamw_reference(w, g, m, v, t, lr, betas[::-1], eps, wd), "beta"),
    ("equal to torch.optim.AdamW (decoupled decay)", _variant(decay="coupled"), "Adam with an L2 term"),
    ("as tensors", _adamw_numpy, "torch tensor"),
    ("of the inputs' dtype", lambda *a: tuple(x.float() for x in adamw_reference(*a)), "is float32"),
    ("do not change any input", adamw_inplace, "in place"),
    ("(grad included)", _adamw_grad_inplace, "grad"),
    ("any torch.optim optimizer is refused", adamw_torch_optim, "library code"),
]
REQUIREMENTS["ex2.8"] = [
    ("the list of two parameter groups", lambda m, wd: groups_reference(m, wd)[0], "list of two dicts"),
    ("first the decay group", lambda m, wd: groups_reference(m, wd)[::-1], "wrong order"),
    ('"weight_decay": weight_decay', lambda m, wd: [{"params": groups_reference(m, wd)[0]["params"],
                                                      "weight_decay": 2 * wd},
                                                     groups_reference(m, wd)[1]], "as it is"),
    ('then the group {"weight_decay": 0.0}', _no_key, "default (0.01)"),
    ("every parameter with more than one dimension (convolution kernels)",
     lambda m, wd: _by_name(m, wd, lambda n, p: p.dim() == 2), "(4-D) is a weight"),
    ("(embeddings)", _groups_no_embedding, "(2-D) is a weight"),
    ("biases in the group without decay",
     lambda m, wd: _by_name(m, wd, lambda n, p: p.dim() > 1 or n.endswith("bias")), "a bias"),
    ("the scales and shifts of norm layers", lambda m, wd: _by_name(m, wd, lambda n, p: n.endswith("weight")),
     "normalisation layer"),
    ("any other 1-D parameter",
     lambda m, wd: _by_name(m, wd, lambda n, p: p.dim() > 1 or n.endswith("gain")), "1-D parameter"),
    ("every parameter the model trains goes in exactly one group", _twice, "exactly one group"),
    ("(none missing)", _missing, "neither group"),
    ("frozen parameters go in neither",
     lambda m, wd: [{"params": [p for p in m.parameters() if p.dim() > 1], "weight_decay": wd},
                    {"params": [p for p in m.parameters() if p.dim() <= 1], "weight_decay": 0.0}],
     "frozen"),
    ("to pass to torch.optim.AdamW: the parameters themselves", _copies, "parameter tensors themselves"),
    ("do not change the model (requires_grad)", _groups_freeze, "changed the model"),
    ("do not change the model (values)", _groups_shrink, "changed the values"),
]


@pytest.mark.parametrize("ex,i", [(ex, i) for ex, rows in REQUIREMENTS.items() for i in range(len(rows))])
def test_every_requirement_is_enforced(ex, i):
    requirement, answer, phrase = REQUIREMENTS[ex][i]
    for seed in (0, 1, 12345):
        v = verdict(ex, answer, seed)
        assert v.status == "failed" and phrase in v.message, (requirement, seed, v.text())


def test_every_exercise_has_a_requirements_table():
    assert set(REQUIREMENTS) == {f"ex2.{k}" for k in range(1, 9)}


def test_requirement_hints_never_give_the_reference_expression():
    hints = [(ex, verdict(ex, answer, 5).message) for ex, rows in REQUIREMENTS.items()
             for _, answer, _ in rows]
    assert_hints_hide(REFERENCE, hints)


# ---------------------------------------------------------------- side effects are the judge's call
def _patching(answer):
    """An in-place answer that also patches torch.equal and np.array_equal to say "equal"
    (they stay patched while the probe records; ``restore`` puts them back)."""
    saved = torch.equal, np.array_equal

    def patched(*args):
        torch.equal = lambda a, b: True
        np.array_equal = lambda *a, **k: True
        return answer(*args)

    def restore():
        torch.equal, np.array_equal = saved
    patched.restore = restore
    return patched


@pytest.mark.parametrize("ex,answer,phrase", [
    ("ex2.1", ridge_inplace, "in place"),
    ("ex2.2", _l2_scales_a_weight, "changed the model"),
    ("ex2.4", soft_inplace, "in place"),
    ("ex2.5", lasso_inplace, "in place"),
    ("ex2.6", sgd_inplace, "in place"),
    ("ex2.7", adamw_inplace, "in place"),
    ("ex2.8", _groups_shrink, "changed the values"),
])
def test_in_place_answers_fail_even_when_they_patch_the_comparisons(ex, answer, phrase):
    """The probe records raw inputs after the call; the grader's judge (here: run again on the
    record once the patches are gone, as in the grader's own process) decides they changed."""
    import json

    from helpers.checks import get
    cheat = _patching(answer)
    try:
        _, record = run(ex, cheat, seed=1)
    finally:
        cheat.restore()
    v = get(ex).run_judge(json.loads(json.dumps(record)), 1)
    assert v.status == "failed" and phrase in v.message, v.text()


# ---------------------------------------------------------------- records round-trip
def test_records_are_small_and_rejudge_the_same():
    import json

    from helpers.checks import get
    for ex, fn in [("ex2.1", ridge_solve), ("ex2.2", l2_reference), ("ex2.3", l1_reference),
                   ("ex2.4", soft_clamp), ("ex2.5", lasso_gram), ("ex2.7", adamw_reference),
                   ("ex2.8", groups_reference)]:
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
