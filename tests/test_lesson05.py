"""Lesson 05 checks: correct answers written in different ways pass, common mistakes fail with
a hint; the calibration plot helper and the label-smoothing explorer compute what they claim."""

import math

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

matplotlib.use("Agg")

from helpers.checks import run  # noqa: E402


def verdict(ex, fn):
    return run(ex, fn)[0]


def assert_fails(ex, fn, hint):
    v = verdict(ex, fn)
    assert v.status in ("failed", "error") and hint in v.message, v.text()


# ---------------------------------------------------------------- ex5.1
def st_reference(y, num_classes, eps):
    return (1 - eps) * F.one_hot(y, num_classes).float() + eps / num_classes


def st_scatter(y, num_classes, eps):
    out = torch.full((len(y), num_classes), eps / num_classes, dtype=torch.float64)
    return out.scatter(1, y[:, None], 1 - eps + eps / num_classes)


def st_numpy_eye(y, num_classes, eps):
    onehot = np.eye(num_classes)[y.numpy()]
    return torch.from_numpy(onehot * (1 - eps) + eps / num_classes)


def st_loop(y, num_classes, eps):
    out = torch.zeros(len(y), num_classes)
    for i, c in enumerate(y.tolist()):
        for k in range(num_classes):
            out[i, k] = eps / num_classes + (1 - eps if k == c else 0.0)
    return out


@pytest.mark.parametrize("fn", [st_reference, st_scatter, st_numpy_eye, st_loop])
def test_ex51_correct(fn):
    assert verdict("ex5.1", fn).passed


def st_mutating(y, num_classes, eps):
    out = st_reference(y, num_classes, eps)
    y.zero_()
    return out


@pytest.mark.parametrize("fn,hint", [
    (lambda y, K, eps: (1 - eps) * F.one_hot(y, K).float()
     + eps / (K - 1) * (1 - F.one_hot(y, K).float()), "eps/(K-1)"),
    (lambda y, K, eps: (1 - eps) * F.one_hot(y, K).float(), "Add eps/K"),
    (lambda y, K, eps: (1 - eps) * F.one_hot(y, K).float() + eps, "instead of eps/K"),
    (lambda y, K, eps: eps * F.one_hot(y, K).float() + (1 - eps) / K, "swapped"),
    (lambda y, K, eps: F.one_hot(y, K).float(), "eps was not applied"),
    (lambda y, K, eps: (1 - eps) * F.one_hot(y).float() + eps / K, "num_classes"),
    (lambda y, K, eps: st_reference(y, K, eps).T, "transpose"),
    (lambda y, K, eps: st_reference(y, K, eps).numpy(), "torch tensor"),
    (st_mutating, "changed the label tensor"),
])
def test_ex51_mistakes(fn, hint):
    assert_fails("ex5.1", fn, hint)


def test_ex51_stub():
    def stub(y, num_classes, eps):
        raise NotImplementedError("ex5.1: write your answer here")
    v = verdict("ex5.1", stub)
    assert v.status == "error" and "still the stub" in v.message


# ---------------------------------------------------------------- ex5.2
def ce_torch(logits, y, eps):
    return F.cross_entropy(logits, y, label_smoothing=eps)


def ce_soft_targets(logits, y, eps):
    q = st_reference(y, logits.shape[1], eps).to(logits.dtype)
    return -(q * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()


def ce_decomposed(logits, y, eps):
    logp = F.log_softmax(logits, dim=1)
    return (1 - eps) * F.nll_loss(logp, y) + eps * (-logp.mean(dim=1)).mean()


def ce_manual_logsumexp(logits, y, eps):
    m = logits.max(dim=1, keepdim=True).values
    logp = logits - m - torch.log(torch.exp(logits - m).sum(dim=1, keepdim=True))
    k = logits.shape[1]
    true = logp.gather(1, y[:, None]).squeeze(1)
    return -((1 - eps) * true + eps / k * logp.sum(dim=1)).mean()


@pytest.mark.parametrize("fn", [ce_torch, ce_soft_targets, ce_decomposed, ce_manual_logsumexp])
def test_ex52_correct(fn):
    assert verdict("ex5.2", fn).passed


def _q(logits, y, eps):
    return st_reference(y, logits.shape[1], eps).to(logits.dtype)


def ce_log_softmax_naive(logits, y, eps):
    return -(_q(logits, y, eps) * torch.log(torch.softmax(logits, 1))).sum(1).mean()


def ce_log_softmax_plus_tiny(logits, y, eps):
    return -(_q(logits, y, eps) * torch.log(torch.softmax(logits, 1) + 1e-12)).sum(1).mean()


def ce_exp_no_shift(logits, y, eps):
    logp = logits - torch.log(torch.exp(logits).sum(1, keepdim=True))
    return -(_q(logits, y, eps) * logp).sum(1).mean()


def ce_eps_k_minus_1(logits, y, eps):
    k = logits.shape[1]
    oh = F.one_hot(y, k).to(logits.dtype)
    q = (1 - eps) * oh + eps / (k - 1) * (1 - oh)
    return -(q * F.log_softmax(logits, 1)).sum(1).mean()


def ce_true_only(logits, y, eps):
    return (1 - eps) * F.cross_entropy(logits, y)


def ce_sum(logits, y, eps):
    return F.cross_entropy(logits, y, label_smoothing=eps, reduction="sum")


def ce_per_sample(logits, y, eps):
    return F.cross_entropy(logits, y, label_smoothing=eps, reduction="none")


def ce_mean_all(logits, y, eps):
    return -(_q(logits, y, eps) * F.log_softmax(logits, 1)).mean()


def ce_smooth_predictions(logits, y, eps):
    k = logits.shape[1]
    p = (1 - eps) * torch.softmax(logits, 1) + eps / k
    return F.nll_loss(torch.log(p), y)


def ce_item(logits, y, eps):
    return F.cross_entropy(logits, y, label_smoothing=eps).item()


def ce_detached(logits, y, eps):
    return F.cross_entropy(logits.detach(), y, label_smoothing=eps)


def ce_mutating(logits, y, eps):
    out = F.cross_entropy(logits, y, label_smoothing=eps)
    with torch.no_grad():
        logits.mul_(2.0)
    return out


@pytest.mark.parametrize("fn,hint", [
    (ce_log_softmax_naive, "log_softmax"),
    (ce_log_softmax_naive, "underflows"),
    (ce_log_softmax_plus_tiny, "adding a small constant"),
    (ce_exp_no_shift, "log-sum-exp"),
    (ce_eps_k_minus_1, "eps/(K-1)"),
    (ce_true_only, "eps/K part is missing"),
    (ce_sum, "*sum*"),
    (ce_per_sample, "one loss per sample"),
    (ce_mean_all, "all N*K entries"),
    (ce_smooth_predictions, "smoothed the predictions"),
    (lambda z, y, eps: F.cross_entropy(z, y), "eps was ignored"),
    (ce_item, "backward"),
    (ce_detached, "backward"),
    (ce_mutating, "changed its inputs"),
])
def test_ex52_mistakes(fn, hint):
    assert_fails("ex5.2", fn, hint)


def test_ex52_large_logit_cases_are_finite_for_torch():
    from helpers.checks.lesson05 import _ce_cases, _ref_ce
    for label, z, y, eps in _ce_cases():
        if "large" in label:
            ref = _ref_ce(z.double().numpy(), y.numpy(), eps)
            assert math.isfinite(ref) and ref > 100
            assert torch.isinf(torch.log(torch.softmax(z, 1))).any()
            got = F.cross_entropy(z, y, label_smoothing=eps).item()
            assert abs(got - ref) <= 2e-5 * abs(ref)


# ---------------------------------------------------------------- ex5.3
def ece_torch_loop(probs, y, n_bins=15):
    conf, pred = probs.max(dim=1)
    correct = (pred == y).double()
    conf = conf.double()
    idx = torch.clamp(torch.ceil(conf * n_bins).long() - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = idx == b
        if m.any():
            ece += m.double().mean() * (correct[m].mean() - conf[m].mean()).abs()
    return float(ece)


def ece_numpy_floor_clip(probs, y, n_bins=15):
    p = np.asarray(probs, dtype=np.float64)
    yy = np.asarray(y)
    conf = p.max(1)
    correct = p.argmax(1) == yy
    idx = np.minimum((conf * n_bins).astype(int), n_bins - 1)  # [lo, hi), 1.0 into the last bin
    total = 0.0
    for b in range(n_bins):
        m = idx == b
        if m.sum():
            total += m.sum() / len(conf) * abs(correct[m].mean() - conf[m].mean())
    return total


def ece_bucketize(probs, y, n_bins=15):
    conf, pred = probs.double().max(dim=1)
    correct = (pred == y).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    idx = (torch.bucketize(conf, edges[1:-1], right=False))  # (lo, hi] bins
    count = torch.bincount(idx, minlength=n_bins).double()
    acc = torch.bincount(idx, weights=correct, minlength=n_bins)
    cf = torch.bincount(idx, weights=conf, minlength=n_bins)
    full = count > 0
    return ((acc[full] - cf[full]).abs().sum() / len(conf))


def ece_edges_loop(probs, y, n_bins=15):
    conf, pred = torch.max(probs, 1)
    acc = pred.eq(y)
    edges = torch.linspace(0, 1, n_bins + 1)
    ece = torch.zeros(1, dtype=torch.float64)
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        frac = in_bin.double().mean()
        if frac > 0:
            ece += frac * (acc[in_bin].double().mean() - conf[in_bin].double().mean()).abs()
    return ece


@pytest.mark.parametrize("fn", [ece_torch_loop, ece_numpy_floor_clip, ece_bucketize, ece_edges_loop])
def test_ex53_correct(fn):
    assert verdict("ex5.3", fn).passed


def ece_unweighted(probs, y, n_bins=15):
    conf, pred = probs.double().max(1)
    correct = (pred == y).double()
    idx = torch.clamp(torch.ceil(conf * n_bins).long() - 1, 0, n_bins - 1)
    gaps = [(correct[idx == b].mean() - conf[idx == b].mean()).abs()
            for b in range(n_bins) if (idx == b).any()]
    return float(torch.stack(gaps).mean())


def ece_true_class(probs, y, n_bins=15):
    p = probs.double()
    conf = p[torch.arange(len(y)), y]
    correct = (p.argmax(1) == y).double()
    idx = torch.clamp(torch.ceil(conf * n_bins).long() - 1, 0, n_bins - 1)
    e = 0.0
    for b in range(n_bins):
        m = idx == b
        if m.any():
            e += m.double().mean() * (correct[m].mean() - conf[m].mean()).abs()
    return float(e)


def ece_drop_one(probs, y, n_bins=15):
    p = np.asarray(probs, dtype=np.float64)
    conf = p.max(1)
    correct = p.argmax(1) == np.asarray(y)
    edges = np.linspace(0, 1, n_bins + 1)
    e = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf >= lo) & (conf < hi)  # [lo, hi): conf == 1.0 is in no bin
        if m.any():
            e += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return e


def ece_ten_bins(probs, y, n_bins=15):
    return ece_torch_loop(probs, y, 10)


def ece_linspace_n(probs, y, n_bins=15):
    return ece_torch_loop(probs, y, n_bins - 1)


def ece_signed(probs, y, n_bins=15):
    conf, pred = probs.double().max(1)
    correct = (pred == y).double()
    idx = torch.clamp(torch.ceil(conf * n_bins).long() - 1, 0, n_bins - 1)
    e = 0.0
    for b in range(n_bins):
        m = idx == b
        if m.any():
            e += m.double().mean() * (conf[m].mean() - correct[m].mean())
    return float(e)


def ece_mutating(probs, y, n_bins=15):
    out = ece_torch_loop(probs, y, n_bins)
    probs.mul_(0.5)
    return out


@pytest.mark.parametrize("fn,hint", [
    (ece_unweighted, "without weighting"),
    (ece_true_class, "*true* class"),
    (ece_drop_one, "exactly 1.0"),
    (ece_ten_bins, "with 10 bins"),
    (ece_linspace_n, "n_bins + 1 edges"),
    (ece_signed, "dropped |.|"),
    (lambda p, y, n_bins=15: 100 * ece_torch_loop(p, y, n_bins), "percent"),
    (ece_mutating, "changed its inputs"),
])
def test_ex53_mistakes(fn, hint):
    assert_fails("ex5.3", fn, hint)


def test_ex53_cases_keep_off_inner_edges():
    from helpers.checks.lesson05 import _ece_cases
    for _, p, _, nb in _ece_cases():
        n_bins = nb or 15
        conf = p.double().max(1).values.numpy()
        s = conf * n_bins
        inner = (np.round(s) > 0) & (np.round(s) < n_bins)
        assert np.all(np.abs(s - np.round(s))[inner] > 1e-4)


# ---------------------------------------------------------------- ex5.4
@pytest.mark.parametrize("fn", [
    lambda K, eps: math.log((1 - eps + eps / K) / (eps / K)),
    lambda K, eps: float(np.log1p(K * (1 - eps) / eps)),
    lambda K, eps: torch.log(torch.tensor(1 - eps + eps / K, dtype=torch.float64))
    - torch.log(torch.tensor(eps / K, dtype=torch.float64)),
])
def test_ex54_correct(fn):
    assert verdict("ex5.4", fn).passed


@pytest.mark.parametrize("fn,hint", [
    (lambda K, eps: math.log((1 - eps) * (K - 1) / eps), "eps/(K-1)"),
    (lambda K, eps: math.log((1 - eps) / (eps / K)), "not 1 - eps"),
    (lambda K, eps: (1 - eps + eps / K) / (eps / K), "natural log"),
    (lambda K, eps: math.log10((1 - eps + eps / K) / (eps / K)), "natural log"),
])
def test_ex54_mistakes(fn, hint):
    assert_fails("ex5.4", fn, hint)


def test_ex54_gap_minimises_the_loss():
    from helpers.widgets import smoothed_loss_vs_gap
    K, eps = 10, 0.1
    best = math.log((1 - eps + eps / K) / (eps / K))
    grid = np.linspace(0, 10, 10001)
    assert abs(grid[np.argmin(smoothed_loss_vs_gap(grid, K, eps))] - best) < 2e-3


# ---------------------------------------------------------------- helpers: plots and widget
def test_calibration_bins_matches_the_check_reference():
    from helpers.checks.lesson05 import _ece_cases
    from helpers.plots import calibration_bins
    for _, p, y, nb in _ece_cases():
        s = calibration_bins(p, y, nb or 15)
        assert s["count"].sum() == len(y)
        assert abs(s["ece"] - ece_torch_loop(p, y, nb or 15)) < 1e-6


def test_reliability_diagram_draws():
    import matplotlib.pyplot as plt

    from helpers.checks.lesson05 import _ece_cases
    from helpers.plots import reliability_diagram
    _, p, y, _ = _ece_cases()[0]
    ax = reliability_diagram(p, y, title="test")
    assert ax.get_title() == "test" and ax.get_xlabel().startswith("confidence")
    assert any("ECE" in t.get_text() for t in ax.get_legend().get_texts())
    plt.close("all")


def test_smoothed_loss_vs_gap_equals_torch():
    from helpers.widgets import smoothed_loss_vs_gap
    for K, eps, gap in [(10, 0.1, 3.0), (3, 0.25, -1.0), (5, 0.0, 7.5), (2, 0.3, 40.0)]:
        z = torch.zeros(1, K, dtype=torch.float64)
        z[0, 0] = gap
        ref = F.cross_entropy(z, torch.tensor([0]), label_smoothing=eps).item()
        assert abs(float(smoothed_loss_vs_gap(gap, K, eps)) - ref) < 1e-12


def test_label_smoothing_explorer_numbers():
    import matplotlib.pyplot as plt

    from helpers.widgets import LabelSmoothingExplorer
    ex = LabelSmoothingExplorer(eps=0.1, num_classes=10)
    assert abs(ex.true_target - 0.91) < 1e-12 and abs(ex.other_target - 0.01) < 1e-12
    assert abs(ex.optimal_gap - math.log(91.0)) < 1e-12
    assert "0.9100" in ex.numbers.value
    gap_01, loss10_01 = ex.optimal_gap, ex.loss_at_gap_10
    ex.eps.value = 0.3  # the observer calls update()
    assert ex.optimal_gap < gap_01 and ex.min_loss > 0
    assert ex.loss_at_gap_10 > loss10_01  # a large gap costs more with more smoothing
    ex.num_classes.value = 3
    assert abs(ex.true_target - (1 - 0.3 + 0.1)) < 1e-12
    assert abs(ex.true_target + 2 * ex.other_target - 1) < 1e-12
    ex.eps.value = 0.0
    assert ex.optimal_gap == float("inf") and ex.min_loss == 0.0 and ex.true_target == 1.0
    plt.close("all")


def test_ex53_mistakes_are_distinguishable_from_the_answer():
    from helpers.checks.lesson05 import _ece_cases, _ece_mistakes, _ece_value
    for label, p, y, nb in _ece_cases():
        probs, yn = p.double().numpy(), y.numpy()
        conf, correct = probs.max(1), (probs.argmax(1) == yn).astype(float)
        ref = _ece_value(conf, correct, nb or 15)
        if ref == 0.0:
            continue
        assert min(abs(a - ref) for _, a in _ece_mistakes(probs, yn, nb or 15)) > 1e-4, label
