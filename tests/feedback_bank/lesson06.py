"""Lesson 06: realistic wrong answers and what their verdict must mention (issue 18)."""

import numpy as np
import torch
import torch.nn.functional as F


def flip_height(x, p, generator=None):
    m = torch.rand(len(x), generator=generator) < p
    return torch.where(m[:, None, None, None], x.flip(2), x)


def flip_keep_prob(x, p, generator=None):
    m = torch.rand(len(x), generator=generator) >= p
    return torch.where(m[:, None, None, None], x.flip(3), x)


def flip_typo(x, p, generator=None):
    m = torch.rnad(len(x)) < p                      # misspelt torch.rand
    return torch.where(m[:, None, None, None], x.flip(3), x)


def mix_uniform(x, y, alpha, generator=None):
    lam = float(np.random.uniform())
    perm = torch.randperm(len(x))
    return lam * x + (1 - lam) * x[perm], y, y[perm], lam


def mix_label_arithmetic(x, y, alpha, generator=None):
    lam = float(np.random.beta(alpha, alpha))
    perm = torch.randperm(len(x))
    return lam * x + (1 - lam) * x[perm], y, (lam * y + (1 - lam) * y[perm]), lam


def mix_in_place(x, y, alpha, generator=None):
    lam = float(np.random.beta(alpha, alpha))
    perm = torch.randperm(len(x))
    partner = x[perm]
    x *= lam
    x += (1 - lam) * partner
    return x, y, y[perm], lam


def mix_lam_vector(x, y, alpha, generator=None):
    lam = torch.from_numpy(np.random.beta(alpha, alpha, size=1))
    perm = torch.randperm(len(x))
    return (lam * x + (1 - lam) * x[perm]).float(), y, y[perm], lam


def loss_summed(logits, y_a, y_b, lam):
    return (lam * F.cross_entropy(logits, y_a, reduction="sum")
            + (1 - lam) * F.cross_entropy(logits, y_b, reduction="sum"))


def loss_one_hot_width(logits, y_a, y_b, lam):
    t = lam * F.one_hot(y_a).float() + (1 - lam) * F.one_hot(y_b).float()
    return F.cross_entropy(logits, t)


def loss_swapped(logits, y_a, y_b, lam):
    logp = F.log_softmax(logits, dim=1)
    return -((1 - lam) * logp.gather(1, y_a[:, None]) + lam * logp.gather(1, y_b[:, None])).mean()


def _box(h, w, r):
    s = (1 - r) ** 0.5
    ch, cw = int(h * s), int(w * s)
    cy, cx = np.random.randint(h), np.random.randint(w)
    return (max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w))


def cut_as_float(x, y, alpha, generator=None):
    x = x.float()
    r = float(np.random.beta(alpha, alpha))
    perm = torch.randperm(len(x))
    t, b, l, rr = _box(*x.shape[2:], r)
    out = x.clone()
    out[..., t:b, l:rr] = x[perm][..., t:b, l:rr]
    return out, y, y[perm], 1 - (b - t) * (rr - l) / (x.shape[2] * x.shape[3])


def cut_from_itself(x, y, alpha, generator=None):
    r = float(np.random.beta(alpha, alpha))
    perm = torch.randperm(len(x))
    t, b, l, rr = _box(*x.shape[2:], r)
    out = x.clone()
    out[..., t:b, l:rr] = x[..., t:b, l:rr]          # forgot [perm]
    return out, y, y[perm], 1 - (b - t) * (rr - l) / (x.shape[2] * x.shape[3])


def cut_lam_is_r(x, y, alpha, generator=None):
    r = float(np.random.beta(alpha, alpha))
    perm = torch.randperm(len(x))
    t, b, l, rr = _box(*x.shape[2:], r)
    out = x.clone()
    out[..., t:b, l:rr] = x[perm][..., t:b, l:rr]
    return out, y, y[perm], r


BANK = [
    ("ex6.1", "flipped along the height axis", flip_height, ["height axis", "left to right"]),
    ("ex6.1", "p used as the probability of keeping", flip_keep_prob, ["keeping", "direction of your comparison"]),
    ("ex6.1", "misspelt torch.rand (exception in learner code)", flip_typo, ["rnad"]),
    ("ex6.2", "lam drawn uniformly whatever alpha", mix_uniform, ["uniform"]),
    ("ex6.2", "labels mixed arithmetically", mix_label_arithmetic, ["mix integer labels", "not a class"]),
    ("ex6.2", "x modified in place", mix_in_place, ["changed its inputs"]),
    ("ex6.2", "lam returned as a shape-(1,) tensor", mix_lam_vector, ["single number", "shape (1,)"]),
    ("ex6.3", "summed over the batch", loss_summed, ["sum over the batch", "average"]),
    ("ex6.3", "one_hot without num_classes (shape error)", loss_one_hot_width, ["num_classes"]),
    ("ex6.3", "the two weights swapped", loss_swapped, ["swapped"]),
    ("ex6.4", "cast to float32 (uint8/float64 images change dtype)", cut_as_float, ["dtype"]),
    ("ex6.4", "box pasted from the image itself", cut_from_itself, ["pasted from the image itself"]),
    ("ex6.4", "lam is the Beta draw, not the kept fraction", cut_lam_is_r, ["Beta draw", "kept fraction"]),
]
