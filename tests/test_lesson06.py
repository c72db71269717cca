"""Lesson 06 checks and explorer: correct answers written in different ways pass at several case
seeds (whichever random generator they use), common mistakes fail with the hint that names them,
no hint gives the reference expression away, and the statistical checks hold at 200 seeds."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers.checks import get, run
from util import SeedLoop

SEEDS = (0, 1, 7, 12345)
# phrases of the reference answers: no hint may contain them
REFERENCE_PHRASES = ("x.flip(-1)", "torch.where(flip", "torch.rand(x.shape[0]",
                     "lam * x + (1 - lam) * x[perm]", "lam*x + (1-lam)*x[perm]",
                     "torch.randperm(", "y, y[perm]",
                     "lam * F.cross_entropy", "F.cross_entropy(logits, y_a)",
                     "1 - area / (h * w)", "1 - (b - t)", "sqrt(1 - r) * h", "int(h * s)")
CHECKS = SeedLoop(SEEDS)
HINTS = CHECKS.hints
verdict, assert_fails, assert_passes = CHECKS.verdict, CHECKS.assert_fails, CHECKS.assert_passes


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
    assert_passes("ex6.1", fn)


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


def test_stubs_are_reported_as_missing():
    for ex in ("ex6.1", "ex6.2", "ex6.3", "ex6.4"):
        def stub(*args, ex=ex):
            raise NotImplementedError(f"{ex}: write your answer here")
        v = run(ex, stub)[0]
        assert v.status == "missing" and "not answered yet" in v.message, v.text()


@pytest.mark.parametrize("fn,hint", [
    (lambda x, p, g=None: torch.where((torch.rand(len(x), generator=g) < p)[:, None, None, None],
                                      x.flip(-2), x), "height axis"),
    (lambda x, p, g=None: torch.where((torch.rand(len(x), generator=g) < p)[:, None, None, None],
                                      x.flip(-1, -2), x), "both the height and the width"),
    (flip_whole_batch, "whole batch"),
    (lambda x, p, g=None: torch.where((torch.rand(len(x), generator=g) > p)[:, None, None, None],
                                      x.flip(-1), x), "probability of *keeping*"),
    (flip_per_channel, "channels of one image were flipped independently"),
    (flip_fixed_count, "images were flipped in every call"),
    (flip_reseeded, "flipped exactly the same images"),
    (flip_in_blocks, "neighbouring images share"),
    (flip_in_place, "changed its input"),
    (flip_numpy_output, "NumPy array"),
    (lambda x, p, g=None: x[torch.randperm(len(x))], "neither the input image nor"),
    (lambda x, p, g=None: x.clone(), "no image was flipped"),
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
    assert_passes("ex6.2", fn)


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


def mix_lam_shape_one(x, y, alpha, generator=None):
    xm, ya, yb, lam = mix_reference(x, y, alpha, generator)
    return xm, ya, yb, torch.tensor([lam])                      # shape (1,), not one number


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
    (mix_with(lambda a: np.random.beta(2 * a, 2 * a)), "both of its shape parameters are alpha"),
    (mix_with(lambda a: max(l := np.random.beta(a, a), 1 - l)), "the larger of lam and 1 - lam"),
    (mix_seeded_inside, "the same value"),
    (mix_with_replacement, "not a permutation"),
    (mix_flip_pairs, "the same pairing"),
    (mix_from_numpy, "torch.from_numpy cannot take"),
    (mix_in_place, "changed its inputs"),
    (mix_partners_only, "x_mixed is x[perm]"),
    (lambda x, y, a, g=None: mix_reference(x, y, a, g)[:3], "tuple of four"),
    (mix_lam_shape_one, "return a single number"),
])
def test_ex62_mistakes(fn, hint):
    assert_fails("ex6.2", fn, hint)


def test_records_are_small():
    """Saved check outputs stay small (the old notebook's records made it 1.2 MB)."""
    # ex6.4 records 2200 calls (the statistics need them): its pixels go into one zlib stream
    for ex, fn, most in (("ex6.1", flip_reference, 120_000), ("ex6.2", mix_reference, 120_000),
                         ("ex6.4", cut_reference, 240_000)):
        _, record = run(ex, fn)
        assert len(json.dumps(record)) < most, (ex, len(json.dumps(record)))


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
    assert_passes("ex6.3", fn)


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
     "underflows"),
    (lambda lo, a, b, lam: loss_reference(lo, a, b, lam).item(), "plain number"),
    (lambda lo, a, b, lam: loss_reference(lo, a, b, lam).detach(), "does not require grad"),
])
def test_ex63_mistakes(fn, hint):
    assert_fails("ex6.3", fn, hint)


# ---------------------------------------------------------------- ex6.3: soft targets and one_hot

def loss_scatter_overwrites(logits, y_a, y_b, lam):
    t = torch.zeros_like(logits)
    t.scatter_(1, y_a[:, None], float(lam))
    t.scatter_(1, y_b[:, None], 1 - float(lam))          # overwrites where y_a == y_b
    return F.cross_entropy(logits, t)


def loss_one_hot_no_classes(logits, y_a, y_b, lam):
    t = lam * F.one_hot(y_a).float() + (1 - lam) * F.one_hot(y_b).float()
    return F.cross_entropy(logits, t)


def test_ex63_soft_target_mistakes_get_their_own_hint():
    assert_fails("ex6.3", loss_scatter_overwrites, "the two weights add up")
    for seed in SEEDS:
        v = verdict("ex6.3", loss_one_hot_no_classes, seed)
        assert v.status == "error", v.text()
        assert "num_classes" in v.message and "logits of shape" in v.message, v.text()


def loss_float32_soft(logits, y_a, y_b, lam):
    """A correct answer computed in float32 throughout (the learner's natural precision)."""
    logp = F.log_softmax(logits.float(), dim=1)
    lam = torch.as_tensor(lam, dtype=torch.float32)
    return -(lam * logp.gather(1, y_a[:, None]) + (1 - lam) * logp.gather(1, y_b[:, None])).mean()


def test_ex63_float32_answer_passes():
    assert_passes("ex6.3", loss_float32_soft)


# ---------------------------------------------------------------- ex6.4 cutmix_batch

def _box(h, w, r, cy, cx, side=lambda v: int(v)):
    s = (1 - r) ** 0.5
    ch, cw = side(h * s), side(w * s)
    t, b = int(np.clip(cy - ch // 2, 0, h)), int(np.clip(cy + ch // 2, 0, h))
    l, rr = int(np.clip(cx - cw // 2, 0, w)), int(np.clip(cx + cw // 2, 0, w))
    return t, b, l, rr


def cut_reference(x, y, alpha, generator=None):
    """The official CutMix code's arithmetic: floor of the sides, an integer centre."""
    n, _, h, w = x.shape
    r = float(np.random.beta(alpha, alpha))
    perm = torch.randperm(n, generator=generator)
    t, b, l, rr = _box(h, w, r, np.random.randint(h), np.random.randint(w))
    xm = x.clone()
    xm[:, :, t:b, l:rr] = x[perm][:, :, t:b, l:rr]
    return xm, y, y[perm], 1 - (b - t) * (rr - l) / (h * w)


def cut_torch_continuous(x, y, alpha, generator=None):
    """torch only: Beta via two Gammas, continuous centre, rounded edges, a mask and torch.where."""
    n, _, h, w = x.shape
    g1 = torch.distributions.Gamma(torch.tensor(float(alpha)), 1.0).sample()
    g2 = torch.distributions.Gamma(torch.tensor(float(alpha)), 1.0).sample()
    s = torch.sqrt(g2 / (g1 + g2))                        # sqrt(1 - r)
    cy, cx = torch.rand(2, generator=generator) * torch.tensor([h, w])
    top, bot = (cy - s * h / 2).round().clamp(0, h), (cy + s * h / 2).round().clamp(0, h)
    lef, rig = (cx - s * w / 2).round().clamp(0, w), (cx + s * w / 2).round().clamp(0, w)
    rows, cols = torch.arange(h), torch.arange(w)
    inside = ((rows >= top) & (rows < bot))[:, None] & ((cols >= lef) & (cols < rig))[None, :]
    perm = torch.argsort(torch.rand(n, generator=generator))
    xm = torch.where(inside, x[perm], x)
    lam = 1 - inside.float().mean()
    return xm, y.clone(), y[perm], lam


def cut_numpy_corners(x, y, alpha, generator=None):
    """NumPy throughout; box placed by its corners (ceil of the sides), centre over pixel centres."""
    n, _, h, w = x.shape
    r = np.random.beta(alpha, alpha)
    ch, cw = int(np.ceil(np.sqrt(1 - r) * h)), int(np.ceil(np.sqrt(1 - r) * w))
    cy, cx = np.random.uniform(0, h), np.random.uniform(0, w)
    t, l = int(round(cy - ch / 2)), int(round(cx - cw / 2))
    t0, b0, l0, r0 = max(t, 0), min(t + ch, h), max(l, 0), min(l + cw, w)
    perm = torch.from_numpy(np.random.permutation(n))
    xm = x.clone()
    if b0 > t0 and r0 > l0:
        xm[..., t0:b0, l0:r0] = x[perm][..., t0:b0, l0:r0]
    area = max(b0 - t0, 0) * max(r0 - l0, 0)
    return xm, y, y[perm], float(1 - area / (h * w))


@pytest.mark.parametrize("fn", [cut_reference, cut_torch_continuous, cut_numpy_corners])
def test_ex64_correct(fn):
    assert_passes("ex6.4", fn)


def _cut_with(box_fn=None, lam_fn=None, r_fn=None, per_image=False, reverse=False,
              yb_fn=None):
    def cutmix(x, y, alpha, generator=None):
        n, _, h, w = x.shape
        r = float(r_fn(alpha) if r_fn else np.random.beta(alpha, alpha))
        perm = torch.randperm(n)
        xm = x[perm].clone() if reverse else x.clone()
        src = x if reverse else x[perm]
        boxes = [(box_fn or (lambda h, w, r: _box(h, w, r, np.random.randint(h),
                                                   np.random.randint(w))))(h, w, r)
                 for _ in range(n if per_image else 1)]
        for i in range(n):
            t, b, l, rr = boxes[i if per_image else 0]
            xm[i, :, t:b, l:rr] = src[i, :, t:b, l:rr]
        t, b, l, rr = boxes[0]
        lam = lam_fn(r, (b - t) * (rr - l) / (h * w)) if lam_fn else 1 - (b - t) * (rr - l) / (h * w)
        return xm, y, (yb_fn(y, perm) if yb_fn else y[perm]), lam
    return cutmix


def _never_clips(h, w, r):
    s = (1 - r) ** 0.5
    ch, cw = max(int(h * s), 1), max(int(w * s), 1)
    t, l = np.random.randint(0, h - ch + 1), np.random.randint(0, w - cw + 1)
    return t, t + ch, l, l + cw


def _swapped_sides(h, w, r):
    s = (1 - r) ** 0.5
    return _box(h, w, 0.0, np.random.randint(h), np.random.randint(w),
                side=lambda v: int(v * s * (w / h if v == h else h / w)))


def _linear_sides(h, w, r):
    return _box(h, w, 1 - (1 - r) ** 2, np.random.randint(h), np.random.randint(w))


def cut_one_hot_targets(x, y, alpha, generator=None):
    xm, ya, yb, lam = cut_reference(x, y, alpha, generator)
    return xm, ya, lam * F.one_hot(ya).float() + (1 - lam) * F.one_hot(yb).float(), lam


def cut_in_place(x, y, alpha, generator=None):
    n, _, h, w = x.shape
    r = float(np.random.beta(alpha, alpha))
    perm = torch.randperm(n)
    t, b, l, rr = _box(h, w, r, np.random.randint(h), np.random.randint(w))
    x[:, :, t:b, l:rr] = x[perm][:, :, t:b, l:rr]
    return x, y, y[perm], 1 - (b - t) * (rr - l) / (h * w)


def cut_from_itself(x, y, alpha, generator=None):
    """A box pasted from the image itself: x_mixed is x, y_b a real permutation."""
    xm, ya, yb, lam = cut_reference(x, y, alpha, generator)
    return x.clone(), ya, yb, lam


def cut_identity(x, y, alpha, generator=None):
    """No partner at all: every image paired with itself (perm = identity)."""
    n, _, h, w = x.shape
    r = float(np.random.beta(alpha, alpha))
    t, b, l, rr = _box(h, w, r, np.random.randint(h), np.random.randint(w))
    return x.clone(), y, y.clone(), 1 - (b - t) * (rr - l) / (h * w)


def cut_float32(x, y, alpha, generator=None):
    """Right pixels, returned as float32 whatever the input's dtype."""
    xm, ya, yb, lam = cut_reference(x, y, alpha, generator)
    return xm.float(), ya, yb, lam


def cut_via_float(x, y, alpha, generator=None):
    """Works in float32 throughout (x.float() first): uint8 and float64 images come back float32."""
    return cut_reference(x.float(), y, alpha, generator)


def cut_rolled(x, y, alpha, generator=None):
    """A fixed pairing (each image with the next one), pixels and labels alike."""
    n, _, h, w = x.shape
    r = float(np.random.beta(alpha, alpha))
    perm = torch.roll(torch.arange(n), 1)
    t, b, l, rr = _box(h, w, r, np.random.randint(h), np.random.randint(w))
    xm = x.clone()
    xm[:, :, t:b, l:rr] = x[perm][:, :, t:b, l:rr]
    return xm, y, y[perm], 1 - (b - t) * (rr - l) / (h * w)


def cut_lam_shape_one(x, y, alpha, generator=None):
    xm, ya, yb, lam = cut_reference(x, y, alpha, generator)
    return xm, ya, yb, torch.tensor([lam])


@pytest.mark.parametrize("fn,hint", [
    (_cut_with(lam_fn=lambda r, frac: r), "not the Beta draw"),
    (cut_from_itself, "pasted from the image itself"),
    (cut_identity, "paired with itself"),
    (cut_float32, "keep the input's dtype"),
    (cut_via_float, "keep the input's dtype"),
    (cut_lam_shape_one, "return a single number"),
    (_cut_with(yb_fn=lambda y, perm: y.flip(0)), "one permutation"),
    (cut_rolled, "the same pairing"),
    (_cut_with(lam_fn=lambda r, frac: frac), "the pasted fraction"),
    (_cut_with(per_image=True), "ONE box per batch"),
    (_cut_with(reverse=True), "roles are reversed"),
    (_cut_with(box_fn=_swapped_sides), "swapped"),
    (_cut_with(box_fn=_never_clips), "always fits"),
    (_cut_with(r_fn=lambda a: np.random.rand()), "Beta draw"),
    (_cut_with(r_fn=lambda a: np.random.beta(a, 1.0)), "Beta draw"),
    (_cut_with(box_fn=_linear_sides), "square root"),
    (_cut_with(yb_fn=lambda y, perm: y.clone()), "labels were not permuted"),
    (_cut_with(yb_fn=lambda y, perm: y[torch.randperm(len(y))]), "one permutation"),
    (cut_one_hot_targets, "not one-hot or mixed targets"),
    (cut_in_place, "changed its inputs"),
    (lambda x, y, a, g=None: cut_reference(x, y, a, g)[:3], "tuple of four"),
    (lambda x, y, a, g=None: (cut_reference(x, y, a, g)[0].double(), *cut_reference(x, y, a, g)[1:]),
     "float64, the input float32"),
])
def test_ex64_mistakes(fn, hint):
    assert_fails("ex6.4", fn, hint)


def test_ex64_errors_say_on_which_input():
    def one_hot_no_classes(x, y, alpha, generator=None):
        xm, ya, yb, lam = cut_reference(x, y, alpha, generator)
        t = F.one_hot(ya) * lam + F.one_hot(yb, 12) * (1 - lam)     # widths differ
        return xm, ya, t, lam
    for seed in SEEDS:
        v = verdict("ex6.4", one_hot_no_classes, seed)
        assert v.status == "error", v.text()
        assert "num_classes" in v.message and "shape" in v.message, v.text()


# ---------------------------------------------------------------- case seeds, statistics, hints

def test_hard_coded_answers_fail_at_another_seed():
    """An answer that replays the published (seed 0) outputs passes seed 0 and fails seed 1."""
    from helpers.checks.lesson06 import _loss_cases
    # ex6.3: the cases themselves change with the seed (a table of published losses is useless)
    assert not np.array_equal(_loss_cases(0)[0][1].numpy(), _loss_cases(1)[0][1].numpy())
    for ex, ref in (("ex6.2", mix_reference), ("ex6.4", cut_reference)):
        outputs = []

        def recorder(x, y, alpha, generator=None, ref=ref):
            out = ref(x, y, alpha, generator)
            outputs.append(out)
            return out
        assert verdict(ex, recorder, 0).passed
        published = list(outputs)

        def replay_random(x, y, alpha, generator=None, published=published, calls=[0]):
            calls[0] += 1
            return published[(calls[0] - 1) % len(published)]
        assert verdict(ex, replay_random, 0).passed
        assert not verdict(ex, replay_random, 1).passed


@pytest.mark.slow
def test_statistical_checks_hold_at_200_seeds():
    """The reference passes ex6.1, ex6.2 and ex6.4 at 200 seeds each (false-failure rates in
    the module docstring of helpers.checks.lesson06, each below 1e-6). About 1.5 s a seed on a
    loaded 2-core machine (marked slow so that `-m "not slow"` skips it while editing; CI runs it)."""
    for seed in range(100, 300):
        for ex, fn in (("ex6.1", flip_reference), ("ex6.2", mix_reference), ("ex6.4", cut_reference)):
            v = run(ex, fn, seed=seed)[0]
            assert v.passed, (ex, seed, v.text())


def test_hints_never_give_the_reference_expression():
    """Scans the hints the other tests produced and, so that it also holds when run alone, the
    hints of a set of mistakes of every exercise."""
    own = [("ex6.1", flip_whole_batch), ("ex6.1", flip_per_channel), ("ex6.1", flip_in_blocks),
           ("ex6.2", mix_two_permutations), ("ex6.2", mix_one_minus_lam), ("ex6.2", mix_partners_only),
           ("ex6.2", mix_labels_arithmetic), ("ex6.3", loss_scatter_overwrites),
           ("ex6.3", lambda lo, a, b, lam: lam * F.cross_entropy(lo, a)),
           ("ex6.4", _cut_with(lam_fn=lambda r, frac: r)), ("ex6.4", _cut_with(reverse=True)),
           ("ex6.4", _cut_with(box_fn=_never_clips)), ("ex6.4", _cut_with(per_image=True))]
    for ex, fn in own:
        assert not verdict(ex, fn, 3).passed
    for h in HINTS:
        for phrase in REFERENCE_PHRASES:
            assert phrase not in h, (phrase, h)


# ---------------------------------------------------------------- forged / odd records

def test_judges_survive_garbage_records():
    for ex in ("ex6.1", "ex6.2", "ex6.3", "ex6.4"):
        v = get(ex).run_judge({"data": {"nonsense": 1}})
        assert v.status == "failed"
        assert not get(ex).run_judge("not a record").passed
        bomb = {"data": {"stats": {"__zlib__": __import__("base64").b64encode(
            __import__("zlib").compress(b"[" + b" " * 50_000_000 + b"]")).decode()}, "cases": []}}
        assert not get(ex).run_judge(bomb).passed


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


# ---------------------------------------------------------------- statistical power, both ways

def _beta_confusions(a):
    """What common mistakes draw instead of Beta(a, a), as scipy distributions."""
    from scipy import stats
    return {"uniform": stats.uniform(), "Beta(alpha, 1)": stats.beta(a, 1),
            "Beta(2 alpha, 2 alpha)": stats.beta(2 * a, 2 * a),
            "Beta(alpha / 2, alpha / 2)": stats.beta(a / 2, a / 2)}


def test_ex62_statistics_both_rates_by_simulation():
    """Simulated records (the judged lam draws of one check): a correct answer passes all 3000
    of them at the ends of both alpha ranges; every confusion fails every one of 300."""
    from helpers.checks.lesson06 import MIX_LAMS, _beta_fail
    rng = np.random.default_rng(62)
    for a in (0.2, 0.3, 3.0, 4.0):
        bad = sum(_beta_fail(rng.beta(a, a, MIX_LAMS), a) is not None for _ in range(3000))
        assert bad == 0, (a, bad)
        for name, d in _beta_confusions(a).items():
            passed = sum(_beta_fail(d.rvs(MIX_LAMS, random_state=rng), a) is None for _ in range(300))
            assert passed == 0, (a, name, passed)          # at either alpha alone, already
        larger = np.maximum(l := rng.beta(a, a, MIX_LAMS), 1 - l)
        assert "larger of lam" in _beta_fail(larger, a)


def test_ex62_statistics_analytic_bounds():
    """Bernstein's inequality (exact, no normal approximation): a correct answer fails each of
    the 3 tests per alpha with probability <= 1e-7 by construction (6e-7 for the check); each
    confusion passes the tests at one alpha or the other with probability <= 1e-6, at every
    alpha of the seed's ranges."""
    import math

    from scipy import stats

    from helpers.checks.lesson06 import MIX_LAMS, _bernstein, _beta_moments
    n = MIX_LAMS
    q = np.linspace(0, 1, 100_001)[1:-1]

    def pass_bound(d, a):
        """Upper bound on P(the spread and mean tests both pass) for draws from d."""
        v, sd = _beta_moments(a)
        x = d.ppf(q)
        sq, sq_sd = float(((x - 0.5) ** 2).mean()), float(((x - 0.5) ** 2).std())
        mean, mean_sd = float(x.mean()), float(x.std())
        out = []
        for got, got_sd, want, t0, bound in ((sq, sq_sd, v, _bernstein(sd, max(v, 0.25 - v), n), 0.25),
                                            (mean, mean_sd, 0.5, _bernstein(math.sqrt(v), 0.5, n), 1.0)):
            gap = abs(got - want) - t0
            out.append(1.0 if gap <= 0 else
                       2 * math.exp(-n * gap * gap / (2 * got_sd ** 2 + 2 * bound * gap / 3)))
        return min(out)

    lows, highs = np.linspace(0.2, 0.3, 6), np.linspace(3.0, 4.0, 6)
    for name in _beta_confusions(1.0):
        worst = min(max(pass_bound(_beta_confusions(a)[name], a) for a in lows),
                    max(pass_bound(_beta_confusions(a)[name], a) for a in highs))
        assert worst <= 1e-6, (name, worst)
    # and the false-failure side: the DKW and Bernstein thresholds are set at 1e-7 per test
    from helpers.checks.lesson06 import _dkw
    assert 2 * math.exp(-2 * n * _dkw(n) ** 2) <= 1.0001e-7


def _simulated_s_hat(rng, r, variant, n):
    from helpers.checks.lesson06 import CUT_H, CUT_W, box_size, cut_boxes
    return box_size(*cut_boxes(r, CUT_H, CUT_W, variant, rng), CUT_H, CUT_W)


def test_ex64_statistics_both_rates_by_simulation():
    """Simulated records of the box sizes (the calls whose box can be read, ~23/24 of them):
    every way of rounding passes 200 records at the ends of both alpha ranges; uniform r,
    Beta(alpha, 1), Beta(2 alpha, 2 alpha), Beta(alpha / 2, alpha / 2) and sides linear in
    (1 - r) fail all 200 at one alpha of the two ranges at least."""
    from helpers.checks.lesson06 import CUT_CALLS, CUT_H, CUT_VARIANTS, CUT_W, cut_size_test
    rng = np.random.default_rng(64)
    n = CUT_CALLS * 23 // 24
    for a in (0.22, 0.3, 3.0, 4.0):
        for v in CUT_VARIANTS:
            bad = sum(cut_size_test(_simulated_s_hat(rng, rng.beta(a, a, n), v, n), a, CUT_H, CUT_W)
                      is not None for _ in range(200))
            assert bad == 0, (a, v, bad)
    confusions = {"uniform": lambda a, k: rng.random(k), "Beta(alpha, 1)": lambda a, k: rng.beta(a, 1, k),
                  "Beta(2 alpha, 2 alpha)": lambda a, k: rng.beta(2 * a, 2 * a, k),
                  "Beta(alpha / 2, alpha / 2)": lambda a, k: rng.beta(a / 2, a / 2, k),
                  "linear sides": lambda a, k: 1 - (1 - rng.beta(a, a, k)) ** 2}
    for name, draw in confusions.items():
        caught = []
        for lo_a, hi_a in ((0.22, 3.0), (0.3, 4.0), (0.26, 3.5)):
            lo = sum(cut_size_test(_simulated_s_hat(rng, draw(lo_a, n), "official", n), lo_a, CUT_H, CUT_W)
                     is None for _ in range(100))
            hi = sum(cut_size_test(_simulated_s_hat(rng, draw(hi_a, n), "official", n), hi_a, CUT_H, CUT_W)
                     is None for _ in range(100))
            caught.append(min(lo, hi))
        assert max(caught) == 0, (name, caught)


def test_ex64_statistics_analytic_bounds():
    """Normal approximation for the two statistics (means of ~1050 bounded values): each
    correct rounding's expectation lies inside the accepted range, so it fails a test with
    probability <= 2 Phi(-5.3) = 1.2e-7; each confusion's expectation lies at least
    4.75 of its own standard errors beyond the accepted range (P(pass) <= 1e-6) at one alpha
    of the two ranges at least, at every alpha of them."""
    import math

    from helpers.checks.lesson06 import (CUT_CALLS, CUT_H, CUT_VARIANTS, CUT_W, CUT_Z,
                                         cut_null)
    rng = np.random.default_rng(640)
    n = CUT_CALLS * 23 // 24
    N = 200_000

    def z_out(a, r, variant="official"):
        """How far (in the sample's own standard errors) the statistic lands outside the
        accepted range; negative: inside."""
        null = cut_null(float(a), CUT_H, CUT_W)
        sh = _simulated_s_hat(rng, r, variant, N)
        best = -np.inf
        for name, f in (("mean", lambda v: v), ("spread", lambda v: (v - null["c"]) ** 2)):
            lo, hi, sd0 = null[name]
            vals = f(sh)
            m, sd = float(vals.mean()), float(vals.std())
            margin = CUT_Z * sd0 / math.sqrt(n)
            gap = max(lo - margin - m, m - hi - margin)
            best = max(best, gap / (sd / math.sqrt(n)))
        return best

    for a in (0.22, 0.3, 3.0, 4.0):
        for v in CUT_VARIANTS:
            null = cut_null(float(a), CUT_H, CUT_W)
            sh = _simulated_s_hat(rng, rng.beta(a, a, N), v, N)
            for name, f in (("mean", lambda x: x), ("spread", lambda x: (x - null["c"]) ** 2)):
                lo, hi, _ = null[name]
                assert lo <= float(f(sh).mean()) <= hi, (a, v, name)
    confusions = {"uniform": lambda a: rng.random(N), "Beta(alpha, 1)": lambda a: rng.beta(a, 1, N),
                  "Beta(2 alpha, 2 alpha)": lambda a: rng.beta(2 * a, 2 * a, N),
                  "Beta(alpha / 2, alpha / 2)": lambda a: rng.beta(a / 2, a / 2, N),
                  "linear sides": lambda a: 1 - (1 - rng.beta(a, a, N)) ** 2}
    for name, draw in confusions.items():
        low = min(z_out(a, draw(a)) for a in np.linspace(0.22, 0.3, 3))
        high = min(z_out(a, draw(a)) for a in np.linspace(3.0, 4.0, 3))
        assert max(low, high) >= 4.75, (name, low, high)


# ---------------------------------------------------------------- every sentence of the texts

def flip_float64(x, p, generator=None):
    return flip_reference(x, p, generator).double()


def loss_scatter_sum(logits, y_a, y_b, lam):
    return loss_reference(logits, y_a, y_b, lam) * len(logits)


REQUIREMENTS = {
    "ex6.1": [
        ("return a new tensor (a torch tensor)", flip_numpy_output, "NumPy array"),
        ("of the same dtype", flip_float64, "keep the input's dtype"),
        ("each image, independently", flip_whole_batch, "whole batch"),
        ("... with probability p (no fixed count)", flip_fixed_count, "images were flipped in every call"),
        ("mirrored left-right (the width axis)",
         lambda x, p, g=None: torch.where((torch.rand(len(x), generator=g) < p)[:, None, None, None],
                                          x.flip(-2), x), "height axis"),
        ("all its channels together", flip_per_channel, "channels of one image were flipped independently"),
        ("p is the probability of flipping",
         lambda x, p, g=None: torch.where((torch.rand(len(x), generator=g) > p)[:, None, None, None],
                                          x.flip(-1), x), "probability of *keeping*"),
        ("Do not modify x", flip_in_place, "changed its input"),
    ],
    "ex6.2": [
        ("lam ~ Beta(alpha, alpha) (not uniform)", mix_with(lambda a: np.random.rand()), "uniform draws"),
        ("... both shape parameters alpha", mix_with(lambda a: np.random.beta(a, 1.0)), "Beta(alpha, 1)"),
        ("one lam (per batch)", mix_lambda_per_sample_hidden, "a lambda per sample"),
        ("one random permutation", mix_two_permutations, "two permutations"),
        ("x_mixed = lam * x + (1 - lam) * x[perm]", mix_one_minus_lam, "1 - lam and lam are swapped"),
        ("y_a = y, y_b = y[perm]", mix_swapped_labels, "y_a and y_b are swapped"),
        ("lam a Python float or a 0-d tensor", mix_lam_shape_one, "return a single number"),
        ("Do not modify the inputs", mix_in_place, "changed its inputs"),
    ],
    "ex6.3": [
        ("averaged over the batch (not summed)", loss_scatter_sum, "the sum over the batch"),
        ("... one number", lambda lo, a, b, lam: lam * F.cross_entropy(lo, a, reduction="none")
         + (1 - lam) * F.cross_entropy(lo, b, reduction="none"), "one per sample"),
        ("the mixed target: lam on y_a, 1 - lam on y_b",
         lambda lo, a, b, lam: (1 - lam) * F.cross_entropy(lo, a) + lam * F.cross_entropy(lo, b),
         "weights are swapped"),
        ("both labels count", lambda lo, a, b, lam: lam * F.cross_entropy(lo, a), "only one of the two terms"),
        ("when both labels are one class, the weights add up", loss_scatter_overwrites,
         "the two weights add up"),
        ("a tensor that backward() can go through",
         lambda lo, a, b, lam: loss_reference(lo, a, b, lam).detach(), "does not require grad"),
        ("... a tensor, not a number", lambda lo, a, b, lam: loss_reference(lo, a, b, lam).item(),
         "plain number"),
        ("finite even for logits in the thousands",
         lambda lo, a, b, lam: -(lam * torch.log(lo.softmax(1))[torch.arange(len(a)), a]
                                 + (1 - lam) * torch.log(lo.softmax(1))[torch.arange(len(b)), b]).mean(),
         "underflows"),
    ],
    "ex6.4": [
        ("one r ~ Beta(alpha, alpha)", _cut_with(r_fn=lambda a: np.random.rand()), "Beta draw"),
        ("one permutation (for pixels and labels)",
         _cut_with(yb_fn=lambda y, perm: y[torch.randperm(len(y))]), "one permutation"),
        ("one box, the same for every image", _cut_with(per_image=True), "ONE box per batch"),
        ("sides about sqrt(1 - r) times H and W", _cut_with(box_fn=_linear_sides), "square root"),
        ("... H with H and W with W", _cut_with(box_fn=_swapped_sides), "swapped"),
        ("its centre uniform over the image, clipped", _cut_with(box_fn=_never_clips), "always fits"),
        ("inside the box the partner's pixels", _cut_with(reverse=True), "roles are reversed"),
        ("... of its partner, not its own", cut_from_itself, "pasted from the image itself"),
        ("a permutation (a partner)", cut_identity, "paired with itself"),
        ("y_b those of the partners", _cut_with(yb_fn=lambda y, perm: y.clone()), "labels were not permuted"),
        ("lam the exact fraction of pixels kept", _cut_with(lam_fn=lambda r, frac: r), "not the Beta draw"),
        ("... kept from x (not pasted)", _cut_with(lam_fn=lambda r, frac: frac), "the pasted fraction"),
        ("lam a float or a 0-d tensor", cut_lam_shape_one, "return a single number"),
        ("Do not modify the inputs", cut_in_place, "changed its inputs"),
        ("keep the dtype (float64, uint8)", cut_via_float, "keep the input's dtype"),
    ],
}
REFERENCE = {"ex6.1": ("x.flip(-1)", "torch.where(flip", "torch.rand(x.shape[0]"),
             "ex6.2": ("lam * x + (1 - lam) * x[perm]", "lam*x + (1-lam)*x[perm]", "torch.randperm("),
             "ex6.3": ("lam * F.cross_entropy", "F.cross_entropy(logits, y_a)", "lam * CE(",
                       "(1 - lam) * CE("),
             "ex6.4": ("1 - area / (h * w)", "1 - (b - t)", "sqrt(1 - r) * h", "int(h * s)")}


@pytest.mark.parametrize("ex,sentence,answer,hint", [
    pytest.param(ex, sentence, answer, hint, id=f"{ex}-{i}")
    for ex, rows in REQUIREMENTS.items() for i, (sentence, answer, hint) in enumerate(rows)])
def test_requirements_enforced(ex, sentence, answer, hint):
    for seed in (0, 1, 12345):
        v = verdict(ex, answer, seed)
        assert v.status in ("failed", "error") and hint in v.message, (sentence, seed, v.text())
        for expr in REFERENCE[ex]:
            assert expr not in v.message, (expr, v.message)


# ---------------------------------------------------------------- the course's helpers are no answer

def test_wrappers_of_course_helpers_are_refused():
    """A wrapper of helpers.data.random_flip (a correct flip) or of helpers.data.mixup_soft is
    refused by core's shortcut rule (calls into `helpers`), whatever its values."""
    from helpers import data as D

    def flip_wrapper(x, p, generator=None):
        return D.random_flip(x, generator, p)

    def mix_wrapper(x, y, alpha, generator=None):
        xm, _ = D.mixup_soft(x, y, alpha, 10, generator)
        return xm, y, y, 1.0

    for ex, fn in (("ex6.1", flip_wrapper), ("ex6.2", mix_wrapper)):
        v = run(ex, fn)[0]
        if v.passed or "helpers" not in v.message:
            pytest.xfail("core support pending: calls into helpers not refused yet")
        assert not v.passed and "helpers" in v.message, v.text()
