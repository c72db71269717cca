"""Lesson 06 checks and explorer: correct answers written in different ways pass (whichever
random generator they use), common mistakes fail with the hint that names them."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers.checks import run


def verdict(ex, fn):
    return run(ex, fn)[0]


def assert_fails(ex, fn, hint):
    v = verdict(ex, fn)
    assert v.status in ("failed", "error") and hint in v.message, v.text()


# ---------------------------------------------------------------- ex6.1 random_horizontal_flip

def flip_reference(x, p, generator=None):
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def flip_numpy(x, p, generator=None):
    out = x.clone()
    m = torch.from_numpy(np.random.rand(len(x)) < p)
    out[m] = x[m].flip(3)
    return out


def flip_loop(x, p, generator=None):
    out = x.clone()
    for i in range(len(x)):
        if torch.rand(1).item() < p:
            out[i] = x[i, :, :, torch.arange(x.shape[-1] - 1, -1, -1)]
    return out


def flip_arithmetic(x, p, generator=None):
    m = torch.bernoulli(torch.full((len(x), 1, 1, 1), float(p)), generator=generator)
    return x * (1 - m) + x.flip(-1) * m


@pytest.mark.parametrize("fn", [flip_reference, flip_numpy, flip_loop, flip_arithmetic])
def test_ex61_correct(fn):
    v = verdict("ex6.1", fn)
    assert v.passed, v.text()


def flip_whole_batch(x, p, generator=None):
    return x.flip(-1) if torch.rand(1).item() < p else x.clone()


def flip_per_channel(x, p, generator=None):
    m = torch.rand(x.shape[0], x.shape[1], 1, 1, generator=generator) < p
    return torch.where(m, x.flip(-1), x)


def flip_fixed_count(x, p, generator=None):
    idx = torch.randperm(len(x), generator=generator)[: int(p * len(x))]
    out = x.clone()
    out[idx] = x[idx].flip(-1)
    return out


def flip_reseeded(x, p, generator=None):
    g = torch.Generator().manual_seed(0)
    return flip_reference(x, p, g)


def flip_in_blocks(x, p, generator=None):
    n = len(x)
    m = (torch.rand((n + 9) // 10, generator=generator) < p).repeat_interleave(10)[:n]
    return torch.where(m[:, None, None, None], x.flip(-1), x)


def flip_in_place(x, p, generator=None):
    m = torch.rand(len(x), generator=generator) < p
    x[m] = x[m].flip(-1)
    return x


def flip_numpy_output(x, p, generator=None):
    return flip_reference(x, p, generator).numpy()


def flip_stub(x, p, generator=None):
    raise NotImplementedError("ex6.1: write your answer here")


@pytest.mark.parametrize("fn,hint", [
    (lambda x, p, g=None: torch.where((torch.rand(len(x), generator=g) < p)[:, None, None, None],
                                      x.flip(-2), x), "height axis"),
    (lambda x, p, g=None: torch.where((torch.rand(len(x), generator=g) < p)[:, None, None, None],
                                      x.flip(-1, -2), x), "both the height and the width"),
    (flip_whole_batch, "whole batch"),
    (lambda x, p, g=None: torch.where((torch.rand(len(x), generator=g) > p)[:, None, None, None],
                                      x.flip(-1), x), "probability of *keeping*"),
    (flip_per_channel, "channels of one image were flipped independently"),
    (flip_fixed_count, "exactly 120 images were flipped in every call"),
    (flip_reseeded, "flipped exactly the same images"),
    (flip_in_blocks, "neighbouring images share"),
    (flip_in_place, "changed its input"),
    (flip_numpy_output, "NumPy array"),
    (lambda x, p, g=None: x[torch.randperm(len(x))], "neither the input image nor"),
    (lambda x, p, g=None: x.clone(), "no image was flipped"),
    (flip_stub, "still the stub"),
])
def test_ex61_mistakes(fn, hint):
    assert_fails("ex6.1", fn, hint)


# ---------------------------------------------------------------- ex6.2 mixup_batch

def mix_reference(x, y, alpha, generator=None):
    lam = float(np.random.beta(alpha, alpha))
    perm = torch.randperm(len(x), generator=generator, device=x.device)
    return lam * x + (1 - lam) * x[perm], y, y[perm], lam


def mix_torch_distributions(x, y, alpha, generator=None):
    lam = torch.distributions.Beta(alpha, alpha).sample()          # a 0-d tensor
    perm = torch.randperm(len(x))
    return x[perm] + lam * (x - x[perm]), y.clone(), y[perm], lam


def mix_gamma_ratio(x, y, alpha, generator=None):
    a = torch.distributions.Gamma(torch.tensor(float(alpha)), 1.0).sample()
    b = torch.distributions.Gamma(torch.tensor(float(alpha)), 1.0).sample()
    lam = a / (a + b)
    perm = torch.argsort(torch.rand(len(x), generator=generator))
    return lam * x + (1 - lam) * x.index_select(0, perm), y, y.index_select(0, perm), lam.item()


def mix_numpy(x, y, alpha, generator=None):
    lam = np.random.beta(alpha, alpha)                              # a NumPy float64
    perm = torch.from_numpy(np.random.permutation(len(x)))
    return (lam * x + (1 - lam) * x[perm]).float(), y, y[perm], lam


@pytest.mark.parametrize("fn", [mix_reference, mix_torch_distributions, mix_gamma_ratio, mix_numpy])
def test_ex62_correct(fn):
    v = verdict("ex6.2", fn)
    assert v.passed, v.text()


def _perm(x):
    return torch.randperm(len(x))


def mix_lambda_vector(x, y, alpha, generator=None):
    lam = torch.distributions.Beta(alpha, alpha).sample((len(x),))
    w = lam.view(-1, *([1] * (x.dim() - 1)))
    perm = _perm(x)
    return w * x + (1 - w) * x[perm], y, y[perm], lam


def mix_lambda_per_sample_hidden(x, y, alpha, generator=None):
    lam, perm = mix_lambda_vector(x, y, alpha)[3], _perm(x)
    w = lam.view(-1, *([1] * (x.dim() - 1)))
    return w * x + (1 - w) * x[perm], y, y[perm], float(lam.mean())


def mix_labels_only(x, y, alpha, generator=None):
    perm = _perm(x)
    return x.clone(), y, y[perm], float(np.random.beta(alpha, alpha))


def mix_labels_arithmetic(x, y, alpha, generator=None):
    lam, perm = float(np.random.beta(alpha, alpha)), _perm(x)
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm], y[perm], lam


def mix_one_hot_targets(x, y, alpha, generator=None):
    lam, perm = float(np.random.beta(alpha, alpha)), _perm(x)
    t = lam * F.one_hot(y, 10).float() + (1 - lam) * F.one_hot(y[perm], 10).float()
    return lam * x + (1 - lam) * x[perm], t, t, lam


def mix_two_permutations(x, y, alpha, generator=None):
    lam = float(np.random.beta(alpha, alpha))
    return lam * x + (1 - lam) * x[_perm(x)], y, y[_perm(x)], lam


def mix_one_minus_lam(x, y, alpha, generator=None):
    xm, ya, yb, lam = mix_reference(x, y, alpha, generator)
    return xm, ya, yb, 1 - lam


def mix_swapped_labels(x, y, alpha, generator=None):
    xm, ya, yb, lam = mix_reference(x, y, alpha, generator)
    return xm, yb, ya, lam


def mix_with(sampler):
    def mixup(x, y, alpha, generator=None):
        lam, perm = float(sampler(alpha)), _perm(x)
        return lam * x + (1 - lam) * x[perm], y, y[perm], lam
    return mixup


def mix_with_replacement(x, y, alpha, generator=None):
    lam, idx = float(np.random.beta(alpha, alpha)), torch.randint(0, len(x), (len(x),))
    return lam * x + (1 - lam) * x[idx], y, y[idx], lam


def mix_flip_pairs(x, y, alpha, generator=None):
    lam = float(np.random.beta(alpha, alpha))
    return lam * x + (1 - lam) * x.flip(0), y, y.flip(0), lam


def mix_seeded_inside(x, y, alpha, generator=None):
    lam = float(np.random.default_rng(0).beta(alpha, alpha))
    perm = _perm(x)
    return lam * x + (1 - lam) * x[perm], y, y[perm], lam


def mix_from_numpy(x, y, alpha, generator=None):          # the source page's snippet
    lam = torch.from_numpy(np.random.beta(alpha, alpha))
    perm = _perm(x)
    return lam * x + (1 - lam) * x[perm], y, y[perm], lam


def mix_in_place(x, y, alpha, generator=None):
    lam, perm = float(np.random.beta(alpha, alpha)), _perm(x)
    partner = x[perm]
    x.mul_(lam).add_((1 - lam) * partner)
    return x, y, y[perm], lam


def mix_partners_only(x, y, alpha, generator=None):
    perm = _perm(x)
    return x[perm], y, y[perm], float(np.random.beta(alpha, alpha))


@pytest.mark.parametrize("fn,hint", [
    (mix_lambda_vector, "a value per sample"),
    (mix_lambda_per_sample_hidden, "a lambda per sample"),
    (mix_labels_only, "the inputs were not mixed"),
    (mix_labels_arithmetic, "Do not mix integer labels arithmetically"),
    (mix_one_hot_targets, "not one-hot or mixed targets"),
    (mix_two_permutations, "two permutations"),
    (mix_one_minus_lam, "1 - lam and lam are swapped"),
    (mix_swapped_labels, "y_a and y_b are swapped"),
    (mix_with(lambda a: np.random.rand()), "uniform draws"),
    (mix_with(lambda a: np.random.beta(a, 1.0)), "Beta(alpha, 1)"),
    (mix_with(lambda a: np.random.beta(2 * a, 2 * a)), "with alpha for both parameters"),
    (mix_with(lambda a: max(l := np.random.beta(a, a), 1 - l)), "max(lam, 1 - lam)"),
    (mix_seeded_inside, "the same lam"),
    (mix_with_replacement, "not a permutation"),
    (mix_flip_pairs, "the same pairing"),
    (mix_from_numpy, "torch.from_numpy cannot take"),
    (mix_in_place, "changed its inputs"),
    (mix_partners_only, "x_mixed is x[perm]"),
    (lambda x, y, a, g=None: mix_reference(x, y, a, g)[:3], "tuple of four"),
    (lambda x, y, a, g=None: (_ for _ in ()).throw(NotImplementedError("ex6.2")), "still the stub"),
])
def test_ex62_mistakes(fn, hint):
    assert_fails("ex6.2", fn, hint)


def test_ex62_record_is_small():
    import json
    _, record = run("ex6.2", mix_reference)
    assert len(json.dumps(record)) < 2_000_000


# ---------------------------------------------------------------- ex6.3 mixup_loss

def loss_reference(logits, y_a, y_b, lam):
    return lam * F.cross_entropy(logits, y_a) + (1 - lam) * F.cross_entropy(logits, y_b)


def loss_soft_targets(logits, y_a, y_b, lam):
    k = logits.shape[1]
    t = lam * F.one_hot(y_a, k).float() + (1 - lam) * F.one_hot(y_b, k).float()
    return F.cross_entropy(logits, t)


def loss_log_softmax(logits, y_a, y_b, lam):
    logp = logits.log_softmax(dim=1)
    rows = torch.arange(len(logits))
    return -(lam * logp[rows, y_a] + (1 - lam) * logp[rows, y_b]).mean()


def loss_nll(logits, y_a, y_b, lam):
    logp = F.log_softmax(logits, 1)
    return torch.lerp(F.nll_loss(logp, y_b), F.nll_loss(logp, y_a), torch.as_tensor(lam))


@pytest.mark.parametrize("fn", [loss_reference, loss_soft_targets, loss_log_softmax, loss_nll])
def test_ex63_correct(fn):
    v = verdict("ex6.3", fn)
    assert v.passed, v.text()


@pytest.mark.parametrize("fn,hint", [
    (lambda lo, a, b, lam: (1 - lam) * F.cross_entropy(lo, a) + lam * F.cross_entropy(lo, b),
     "weights are swapped"),
    (lambda lo, a, b, lam: lam * F.cross_entropy(lo, a, reduction="sum")
     + (1 - lam) * F.cross_entropy(lo, b, reduction="sum"), "the sum over the batch"),
    (lambda lo, a, b, lam: lam * F.cross_entropy(lo, a, reduction="none")
     + (1 - lam) * F.cross_entropy(lo, b, reduction="none"), "one per sample"),
    (lambda lo, a, b, lam: lam * F.cross_entropy(lo, a), "only one of the two terms"),
    (lambda lo, a, b, lam: F.cross_entropy(lo, (lam * a + (1 - lam) * b).round().long()),
     "Class indices cannot be mixed arithmetically"),
    (lambda lo, a, b, lam: -(lam * torch.log(lo.softmax(1))[torch.arange(len(a)), a]
                            + (1 - lam) * torch.log(lo.softmax(1))[torch.arange(len(b)), b]).mean(),
     "stays finite for large logits"),
    (lambda lo, a, b, lam: loss_reference(lo, a, b, lam).item(), "plain number"),
    (lambda lo, a, b, lam: loss_reference(lo, a, b, lam).detach(), "does not require grad"),
])
def test_ex63_mistakes(fn, hint):
    assert_fails("ex6.3", fn, hint)


# ---------------------------------------------------------------- ex6.4 mixup_targets

def targets_reference(y_a, y_b, lam, num_classes):
    return lam * F.one_hot(y_a, num_classes).float() + (1 - lam) * F.one_hot(y_b, num_classes).float()


def targets_scatter(y_a, y_b, lam, num_classes):
    t = torch.zeros(len(y_a), num_classes)
    t[torch.arange(len(y_a)), y_a] += float(lam)
    t[torch.arange(len(y_b)), y_b] += 1 - float(lam)
    return t


def targets_eye(y_a, y_b, lam, num_classes):
    eye = torch.eye(num_classes)
    return torch.lerp(eye[y_b], eye[y_a], torch.as_tensor(lam, dtype=torch.float32))


@pytest.mark.parametrize("fn", [targets_reference, targets_scatter, targets_eye])
def test_ex64_correct(fn):
    v = verdict("ex6.4", fn)
    assert v.passed, v.text()


@pytest.mark.parametrize("fn,hint", [
    (lambda a, b, lam, k: targets_reference(b, a, lam, k), "swapped"),
    (lambda a, b, lam, k: F.one_hot((lam * a + (1 - lam) * b).round().long(), k).float(),
     "Mix the one-hot vectors"),
    (lambda a, b, lam, k: F.one_hot(a, k).float(), "wrong values"),
    (lambda a, b, lam, k: targets_reference(a, b, lam, k)[:, :-1], "expected (N, num_classes)"),
])
def test_ex64_mistakes(fn, hint):
    assert_fails("ex6.4", fn, hint)


# ---------------------------------------------------------------- forged / odd records

def test_judges_survive_garbage_records():
    from helpers.checks import get
    for ex in ("ex6.1", "ex6.2", "ex6.3", "ex6.4"):
        v = get(ex).run_judge({"data": {"nonsense": 1}})
        assert v.status == "failed"
        assert not get(ex).run_judge("not a record").passed


# ---------------------------------------------------------------- the explorer

def _explorer(**kw):
    from helpers.data import digits
    from helpers.widgets import MixupExplorer
    d = digits(n_train=40, device="cpu")
    return MixupExplorer(d.x_train, d.y_train, **kw)


def test_mixup_explorer_numbers_follow_alpha():
    ex = _explorer(alpha=0.2)
    small = (ex.p_extreme, ex.variance)
    assert abs(ex.mean - 0.5) < 1e-12
    assert abs(ex.variance - 1 / (4 * (2 * 0.2 + 1))) < 1e-12
    ex.alpha.value = 4.0                      # the slider drives update()
    assert abs(ex.variance - 1 / (4 * 9)) < 1e-12
    assert ex.p_extreme < small[0] and ex.variance < small[1]
    ex.alpha.value = 1.0                      # uniform: P(lam < 0.1 or lam > 0.9) = 0.2
    assert abs(ex.p_extreme - 0.2) < 1e-9
    assert "0.200" in ex.numbers.value


def test_mixup_explorer_draws_and_mixes():
    ex = _explorer(alpha=0.4, seed=0)
    lam0, pair0 = ex.lam, ex.pair
    assert 0 <= lam0 <= 1
    i, j = pair0
    assert torch.allclose(ex.mixed, lam0 * ex.images[i] + (1 - lam0) * ex.images[j])
    assert np.isclose(ex.target.sum(), 1.0)
    ex.seed.value = 1
    assert (ex.lam, ex.pair) != (lam0, pair0)
    ex.seed.value = 0                          # the same seed gives the same draw
    assert ex.lam == lam0 and ex.pair == pair0
