"""Lesson 05 (label smoothing and calibration): realistic wrong answers for measuring feedback
quality (issue 18).

Each entry: (exercise id, what the mistake is, the wrong answer, phrases of which the verdict
message must contain at least one, case-insensitive, for the feedback to teach). Written fresh
for the bank, not copied from tests/test_lesson05.py.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# ------------------------------------------------------------------ ex5.1 smooth_targets


def targets_k_from_labels(y, num_classes, eps):
    """K taken from the labels: F.one_hot guesses it from the largest label."""
    oh = F.one_hot(y).float()
    return oh * (1 - eps) + eps / oh.shape[1]


def targets_unsqueeze_in_place(y, num_classes, eps):
    """scatter_ with an index made by unsqueeze_: the label tensor itself becomes (N, 1)."""
    out = torch.full((len(y), num_classes), eps / num_classes)
    return out.scatter_(1, y.unsqueeze_(1), 1 - eps + eps / num_classes)


def targets_float_labels(y, num_classes, eps):
    """one_hot of float labels raises."""
    return (1 - eps) * F.one_hot(y.float(), num_classes) + eps / num_classes


def targets_half(y, num_classes, eps):
    """Right targets, stored in float16 (to save memory)."""
    return ((1 - eps) * F.one_hot(y, num_classes) + eps / num_classes).half()


def targets_true_class_without_share(y, num_classes, eps):
    """eps/K only for the other classes: the true class keeps 1 - eps."""
    oh = F.one_hot(y, num_classes).float()
    return oh * (1 - eps) + (1 - oh) * eps / num_classes


# ------------------------------------------------------------------ ex5.2 smoothed cross-entropy


def ce_nll_on_logits(logits, y, eps):
    """F.nll_loss fed the logits, for both terms."""
    k = logits.shape[1]
    return (1 - eps) * F.nll_loss(logits, y) - eps * logits.sum(dim=1).mean() / k


def ce_softmax_dim0(logits, y, eps):
    k = logits.shape[1]
    q = F.one_hot(y, k).to(logits.dtype) * (1 - eps) + eps / k
    return (-q * F.log_softmax(logits, dim=0)).sum(dim=1).mean()


def ce_float32_always(logits, y, eps):
    z = logits.float()
    k = z.shape[1]
    q = F.one_hot(y, k).float() * (1 - eps) + eps / k
    return -(q * z.log_softmax(-1)).sum(-1).mean()


def ce_gather_1d_index(logits, y, eps):
    """gather with a 1-D index on a 2-D tensor raises."""
    logp = logits.log_softmax(1)
    return -((1 - eps) * logp.gather(1, y) + eps * logp.mean(1)).mean()


def ce_shift_in_place(logits, y, eps):
    """The max-shift for stability done in place, on the caller's logits."""
    logits -= logits.max(dim=1, keepdim=True).values
    k = logits.shape[1]
    logp = logits - logits.exp().sum(1, keepdim=True).log()
    q = F.one_hot(y, k).to(logits.dtype) * (1 - eps) + eps / k
    return -(q * logp).sum(1).mean()


# ------------------------------------------------------------------ ex5.3 ECE


def _bins(conf, n_bins):
    return torch.clamp(torch.ceil(conf * n_bins).long() - 1, 0, n_bins - 1)


def ece_tensor(probs, y, n_bins=15):
    """Right value, returned as a 0-d tensor."""
    conf, pred = probs.double().max(1)
    hit = (pred == y).double()
    idx = _bins(conf, n_bins)
    out = torch.zeros((), dtype=torch.float64)
    for b in range(n_bins):
        m = idx == b
        if m.any():
            out += m.double().mean() * (hit[m].mean() - conf[m].mean()).abs()
    return out


def ece_floor_no_clip(probs, y, n_bins=15):
    """floor(conf * n_bins) as the bin: confidence 1.0 gets index n_bins, which no loop visits."""
    conf, pred = probs.double().max(1)
    hit = (pred == y).double()
    idx = (conf * n_bins).long()
    total = 0.0
    for b in range(n_bins):
        m = idx == b
        if m.any():
            total += m.double().mean().item() * abs(hit[m].mean().item() - conf[m].mean().item())
    return total


def ece_misspelt_argument(probs, y, n_bins=15):
    conf, pred = probs.double().max(1)
    hit = (pred == y).double()
    idx = _bins(conf, n_bin)  # noqa: F821 - the misspelling is the mistake
    gaps = [(idx == b).double().mean() * (hit[idx == b].mean() - conf[idx == b].mean()).abs()
            for b in range(n_bins) if (idx == b).any()]
    return float(sum(gaps))


def ece_weighted_by_bins(probs, y, n_bins=15):
    """Each bin weighted by 1/(number of non-empty bins) instead of its share of samples."""
    conf, pred = probs.double().max(1)
    hit = (pred == y).double()
    idx = _bins(conf, n_bins)
    gaps = [abs(hit[idx == b].mean().item() - conf[idx == b].mean().item())
            for b in range(n_bins) if (idx == b).any()]
    return sum(gaps) / len(gaps)


# ------------------------------------------------------------------ ex5.4 temperature


def _golden(f, lo=math.log(0.01), hi=math.log(100.0), steps=100):
    r = (math.sqrt(5) - 1) / 2
    for _ in range(steps):
        c, d = hi - r * (hi - lo), lo + r * (hi - lo)
        if f(c) < f(d):
            hi = d
        else:
            lo = c
    return math.exp((lo + hi) / 2)


def t_coarse_grid(logits, y):
    """A coarse grid over [0.5, 3]: too coarse, and it excludes the far cases' optimum."""
    z = logits.double()
    grid = np.linspace(0.5, 3.0, 26)
    return float(grid[int(np.argmin([F.cross_entropy(z / t, y).item() for t in grid]))])


def t_softmax_over_batch(logits, y):
    z = logits.double()
    return _golden(lambda lt: F.nll_loss(torch.log_softmax(z / math.exp(lt), 0), y).item())


def t_multiplied(logits, y):
    z = logits.double()
    return _golden(lambda lt: F.cross_entropy(z * math.exp(lt), y).item())


def t_lbfgs_tensor(logits, y):
    """LBFGS on log T; returns the tensor exp(log T), still attached to the graph."""
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")
    z = logits.double()

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp().double(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return log_t.exp()


def t_center_in_place(logits, y):
    """Centres the logits in place first (harmless for the softmax, not for the caller)."""
    logits.sub_(logits.mean(dim=1, keepdim=True))
    z = logits.double()
    return _golden(lambda lt: F.cross_entropy(z / math.exp(lt), y).item())


BANK = [
    ("ex5.1", "K taken from the labels (F.one_hot without num_classes)", targets_k_from_labels,
     ["num_classes"]),
    ("ex5.1", "the label tensor modified in place by unsqueeze_", targets_unsqueeze_in_place,
     ["changed the label tensor", "in place"]),
    ("ex5.1", "one_hot of float labels raises", targets_float_labels,
     ["index tensor", "integer", "long"]),
    ("ex5.1", "right targets stored in float16", targets_half, ["float16", "dtype"]),
    ("ex5.1", "the true class misses its eps/K share", targets_true_class_without_share,
     ["without its own eps/K share"]),
    ("ex5.2", "nll_loss on raw logits (no log_softmax)", ce_nll_on_logits,
     ["raw logits", "log_softmax"]),
    ("ex5.2", "log_softmax over the batch (dim 0)", ce_softmax_dim0, ["wrong dim"]),
    ("ex5.2", "computed and returned in float32 for float64 logits", ce_float32_always,
     ["float32"]),
    ("ex5.2", "gather with a 1-D index raises", ce_gather_1d_index,
     ["dimensions", "unsqueeze", "shape", "y[:, None]"]),
    ("ex5.2", "the stability shift done in place on the logits", ce_shift_in_place,
     ["changed its inputs", "in place"]),
    ("ex5.3", "right ECE returned as a 0-d tensor", ece_tensor, ["python float"]),
    ("ex5.3", "confidence 1.0 falls out of every bin (floor without clip)", ece_floor_no_clip,
     ["1.0"]),
    ("ex5.3", "misspelt argument name n_bin", ece_misspelt_argument, ["n_bins", "n_bin"]),
    ("ex5.3", "bins weighted equally, not by their share of samples", ece_weighted_by_bins,
     ["weight"]),
    ("ex5.4", "a coarse grid over [0.5, 3]", t_coarse_grid, ["interval", "stop too early"]),
    ("ex5.4", "softmax over the batch while fitting T", t_softmax_over_batch, ["wrong dim"]),
    ("ex5.4", "logits multiplied by T while fitting", t_multiplied, ["inverse", "multiply"]),
    ("ex5.4", "returns a tensor that requires grad", t_lbfgs_tensor, ["python float"]),
    ("ex5.4", "logits centred in place", t_center_in_place, ["changed its inputs", "in place"]),
]
