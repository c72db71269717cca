"""Checks for lesson 06 (augmentation and mixup).

ex6.1 ``random_horizontal_flip(x, p, generator=None)``, ex6.2 ``mixup_batch(x, y, alpha,
generator=None)``, ex6.3 ``mixup_loss(logits, y_a, y_b, lam)``, ex6.4 ``mixup_targets(y_a,
y_b, lam, num_classes)``.

The random exercises (6.1, 6.2) are judged by statistics and exact properties only: a correct
answer may draw from the ``generator`` it is given, from torch's global generator or from
NumPy (the probe seeds all three, with different seeds), in any order. For the flip the judge
sorts every output image into "unchanged", "flipped along the width" or something else and
tests the flip rate against a binomial bound and the decisions for independence. For mixup it
recovers, from ``x_mixed`` alone, the weight of each row's own image and its partner row, so
"one lam per batch", "one permutation" and "y_b == y[perm]" are checked against what the
answer really did; the returned ``lam`` values are tested against Beta(alpha, alpha) by their
mean, variance and a Kolmogorov-Smirnov distance.
"""

from __future__ import annotations

import math

import numpy as np

from helpers.checks.core import Fail, Raised, Value, as_array, as_float, capture, close, exercise, unwrap

SEED_GENERATOR, SEED_TORCH, SEED_NUMPY = 6011, 6022, 6033


def _seed_globals(offset: int = 0):
    """Seed torch's and NumPy's global generators; a fresh seeded ``torch.Generator`` (another seed)."""
    import random

    import torch

    torch.manual_seed(SEED_TORCH + offset)
    np.random.seed(SEED_NUMPY + offset)
    random.seed(SEED_NUMPY + offset)
    return torch.Generator().manual_seed(SEED_GENERATOR + offset)


def _with_hint(e: Raised) -> Raised:
    """A captured exception, with a hint for the errors this lesson's learners meet most."""
    msg = str(e)
    if "expected np.ndarray" in msg:
        msg += (". np.random.beta(a, b) with no size returns a Python float, which "
                "torch.from_numpy cannot take: use float(np.random.beta(a, b)) or "
                "torch.distributions.Beta(a, b).sample()")
    return Raised(msg)


def _guard(judge):
    def wrapped(data):
        try:
            return judge(data)
        except Raised as e:
            raise _with_hint(e) from None
    wrapped.__name__ = judge.__name__
    wrapped.__doc__ = judge.__doc__
    return wrapped


def _torch_kind(v, what: str) -> None:
    if isinstance(v, Value) and v.kind == "numpy":
        raise Fail(f"{what} is a NumPy array; return a torch tensor (the training loop feeds it "
                   "to a model on the input's device).")


# ------------------------------------------------------------------ ex6.1

FLIP_P = 0.3
FLIP_N, FLIP_CALLS = 400, 5
FLIP_SHAPE = (FLIP_N, 2, 2, 3)


def _flip_stats_input():
    import torch

    return torch.randn(FLIP_SHAPE, generator=torch.Generator().manual_seed(6100))


def _flip_cases():
    import torch

    g = torch.Generator().manual_seed(6101)
    x8 = torch.rand((6, 1, 8, 8), generator=g)
    x1 = torch.randn((1, 3, 4, 5), generator=g)
    return [("p = 0 on 6 digit-sized images (6, 1, 8, 8)", x8, 0.0, True),
            ("p = 1 on 6 digit-sized images (6, 1, 8, 8)", x8, 1.0, False),
            ("p = 1 on one 3-channel image (1, 3, 4, 5)", x1, 1.0, True),
            ("p = 0.3 on one 3-channel image (1, 3, 4, 5)", x1, 0.3, False)]


def probe_flip(random_horizontal_flip):
    import torch

    gen = _seed_globals()
    x = _flip_stats_input()
    stats = []
    for k in range(FLIP_CALLS):
        xin = x.clone()
        out = capture(random_horizontal_flip, xin, FLIP_P, gen if k % 2 == 0 else None)
        stats.append({"result": out, "input_changed": bool(not torch.equal(xin, x))})
    cases = []
    for _, xc, p, use_gen in _flip_cases():
        xin = xc.clone()
        g = torch.Generator().manual_seed(SEED_GENERATOR + 1) if use_gen else None
        cases.append({"result": capture(random_horizontal_flip, xin, p, g),
                      "input_changed": bool(not torch.equal(xin, xc))})
    return {"stats": stats, "cases": cases}


def _flip_output(got, x: np.ndarray, label: str) -> np.ndarray:
    out = as_array(got["result"], "random_horizontal_flip(x, p, generator)")
    if out.shape != x.shape:
        raise Fail(f"{label}: the result has shape {out.shape}, expected the input's shape "
                   f"(N, C, H, W) = {x.shape}. Flip images, do not reshape or drop them.")
    _torch_kind(got["result"], f"{label}: the result")
    v = got["result"]
    if isinstance(v, Value) and v.kind == "torch" and v.dtype != "float32":
        raise Fail(f"{label}: the result has dtype {v.dtype}, the input float32; keep the dtype.")
    if got["input_changed"]:
        raise Fail(f"{label}: your function changed its input x (an in-place assignment such as "
                   "x[mask] = ...); build and return a new tensor.")
    return out


def _classify(out: np.ndarray, x: np.ndarray, label: str) -> np.ndarray:
    """Per image: 0 unchanged, 1 flipped along the width; fails for anything else."""
    tol = 1e-6

    def same(a, b):
        return np.all(np.abs(a - b) <= tol, axis=(1, 2, 3))

    unchanged, width = same(out, x), same(out, x[..., ::-1])
    height, both = same(out, x[..., ::-1, :]), same(out, x[..., ::-1, ::-1])
    other = ~(unchanged | width)
    if np.any(other & height):
        raise Fail(f"{label}: some images came back upside down: flipped along the height axis "
                   "(dim 2). A horizontal flip mirrors left and right, i.e. reverses the width "
                   "axis, the last dimension (dim -1, i.e. 3).")
    if np.any(other & both):
        raise Fail(f"{label}: some images were flipped along both the height and the width axis "
                   "(rotated by 180 degrees). A horizontal flip reverses only the width axis "
                   "(dim -1).")
    if np.any(other):
        per_channel = np.all(np.abs(out - x) <= tol, axis=(2, 3)) | \
            np.all(np.abs(out - x[..., ::-1]) <= tol, axis=(2, 3))
        if np.all(per_channel):
            raise Fail(f"{label}: the channels of one image were flipped independently (some "
                       "channels mirrored, others not). Decide once per image and flip all its "
                       "channels together: one random draw per image, shape (N,), broadcast "
                       "over C, H, W.")
        k = int(np.argmax(other))
        raise Fail(f"{label}: output image {k} is neither the input image nor its horizontal "
                   "flip (image k mirrored along its last dimension). Each image must come back either unchanged or "
                   "mirrored left-right, nothing else (no shuffling, scaling or mixing).")
    return width


def judge_flip(data):
    p = FLIP_P
    x = _flip_stats_input().numpy().astype(np.float64)
    label = f"{FLIP_CALLS} calls on a batch of {FLIP_N} images (N, C, H, W) = {FLIP_SHAPE}, p = {p}"
    if len(data["stats"]) != FLIP_CALLS:
        raise Fail("the check record is incomplete; run the check cell again.")
    decisions = []
    for got in data["stats"]:
        decisions.append(_classify(_flip_output(got, x, label), x, label))
    d = np.array(decisions)                      # (calls, N) True where flipped
    m = d.size
    rate = float(d.mean())
    if rate == 0.0:
        raise Fail(f"{label}: no image was flipped at all, expected about {p:.0%} of them. "
                   "p is the probability of flipping each image.")
    per_call = d.mean(axis=1)
    if np.all((per_call == 0) | (per_call == 1)):
        raise Fail(f"{label}: in every call either all images were flipped or none: the whole "
                   "batch was flipped together. Draw one random number per image (shape (N,)) "
                   "and flip only the images whose draw is below p.")
    sd = math.sqrt(p * (1 - p) / m)
    if abs(rate - p) > 5 * sd:
        if abs(rate - (1 - p)) <= 5 * sd:
            raise Fail(f"{label}: {rate:.1%} of the images were flipped, expected p = {p:.0%}. "
                       "You used p as the probability of *keeping* an image: flip where the "
                       "random draw is below p (rand < p), not above.")
        raise Fail(f"{label}: {rate:.1%} of {m} images were flipped, expected p = {p:.0%} "
                   f"(a binomial count allows {p - 5 * sd:.1%} to {p + 5 * sd:.1%}). Flip each "
                   "image with probability p.")
    for i in range(len(d)):
        for j in range(i + 1, len(d)):
            if np.array_equal(d[i], d[j]):
                raise Fail(f"{label}: calls {i + 1} and {j + 1} flipped exactly the same images. "
                           "Every call must draw fresh random numbers: do not create or seed a "
                           "generator inside the function (use the one passed in, or the "
                           "global one).")
    counts = d.sum(axis=1)
    if np.all(counts == counts[0]):
        raise Fail(f"{label}: exactly {int(counts[0])} images were flipped in every call. Each "
                   "image must be flipped independently with probability p (one coin per "
                   "image), so the number flipped varies from call to call; do not pick a fixed "
                   "number of images.")
    agree = float(np.mean(d[:, 1:] == d[:, :-1]))
    q = rate ** 2 + (1 - rate) ** 2
    if abs(agree - q) > 6 * math.sqrt(q * (1 - q) / (d.shape[0] * (d.shape[1] - 1))):
        raise Fail(f"{label}: neighbouring images share their flip decision {agree:.1%} of the "
                   f"time, expected about {q:.1%} for independent decisions. Decide each image "
                   "independently (not in blocks, not the first p*N images).")
    for (clabel, xc, pc, _), got in zip(_flip_cases(), data["cases"], strict=True):
        xc = xc.numpy().astype(np.float64)
        flipped = _classify(_flip_output(got, xc, clabel), xc, clabel)
        if pc == 0.0 and flipped.any():
            raise Fail(f"{clabel}: {int(flipped.sum())} images were flipped; with p = 0 every "
                       "image must come back unchanged.")
        if pc == 1.0 and not flipped.all():
            extra = (" You used p as the probability of keeping an image." if not flipped.any()
                     else " Compare the draw with p as rand < p (torch.rand is in [0, 1)).")
            raise Fail(f"{clabel}: {int((~flipped).sum())} images were not flipped; with p = 1 "
                       f"every image must be mirrored.{extra}")
    return None


exercise("ex6.1", "random_horizontal_flip", probe_flip, _guard(judge_flip))

# ------------------------------------------------------------------ ex6.2

MIX_ALPHAS = (0.4, 2.0)
MIX_CALLS = 200          # per alpha
MIX_LABELS = (3, 7, 0, 9, 2, 5)


def _mix_stats_input():
    import torch

    x = torch.randn((len(MIX_LABELS), 1, 2, 2), generator=torch.Generator().manual_seed(6200))
    return x, torch.tensor(MIX_LABELS, dtype=torch.long)


def _mix_cases():
    import torch

    g = torch.Generator().manual_seed(6201)
    x1 = torch.rand((16, 1, 8, 8), generator=g)
    y1 = torch.randint(0, 10, (16,), generator=g)
    x2 = torch.randn((10, 5), generator=g)
    y2 = torch.randperm(10, generator=g)
    return [("a batch of 16 digit-sized images (16, 1, 8, 8), alpha = 1.0", x1, y1, 1.0, True),
            ("a batch of 10 feature vectors (10, 5), alpha = 0.4", x2, y2, 0.4, False)]


def probe_mixup(mixup_batch):
    import torch

    gen = _seed_globals(1)
    x, y = _mix_stats_input()
    stats = []
    for k in range(len(MIX_ALPHAS) * MIX_CALLS):
        xin, yin = x.clone(), y.clone()
        out = capture(mixup_batch, xin, yin, MIX_ALPHAS[k // MIX_CALLS], gen if k % 2 == 0 else None)
        stats.append({"out": out, "changed": bool(not (torch.equal(xin, x) and torch.equal(yin, y)))})
        if isinstance(out, dict) and "__raised__" in out:
            break                                # one error is enough to report
    cases = []
    for _, xc, yc, alpha, use_gen in _mix_cases():
        xin, yin = xc.clone(), yc.clone()
        g = torch.Generator().manual_seed(SEED_GENERATOR + 2) if use_gen else None
        cases.append({"out": capture(mixup_batch, xin, yin, alpha, g),
                      "changed": bool(not (torch.equal(xin, xc) and torch.equal(yin, yc)))})
    return {"stats": stats, "cases": cases}


def _labels(v, n: int, what: str, label: str) -> np.ndarray:
    a = as_array(v, what)
    if a.ndim == 2 and a.shape[0] == n:
        raise Fail(f"{label}: {what} has shape {a.shape}: return the integer class labels "
                   "(shape (N,)), not one-hot or mixed targets. mixup_loss weighs the two "
                   "cross-entropies with lam instead.")
    if a.shape != (n,):
        raise Fail(f"{label}: {what} has shape {a.shape}, expected (N,) = ({n},).")
    isint = isinstance(v, Value) and str(v.dtype).startswith(("int", "uint"))
    frac = a[a != np.round(a)]
    if not isint or frac.size:
        seen = f", values such as {frac[0]:.3g}" if frac.size else ""
        raise Fail(f"{label}: {what} is not a tensor of integer class labels (dtype "
                   f"{getattr(v, 'dtype', type(v).__name__)}{seen}). Do not mix integer labels "
                   "arithmetically: lam*3 + (1-lam)*7 is not a class (halfway between a 3 and a "
                   "7 is not a 5). Return y and y[perm] unchanged and let the loss do the mixing.")
    return a.astype(np.int64)


def _unpack(got, x: np.ndarray, y: np.ndarray, label: str):
    out = got["out"]
    if isinstance(out, Raised):
        raise out
    if not isinstance(out, (tuple, list)) or len(out) != 4:
        raise Fail(f"{label}: mixup_batch must return a tuple of four: (x_mixed, y_a, y_b, lam).")
    xm_v, ya_v, yb_v, lam_v = out
    n = len(y)
    xm = as_array(xm_v, "x_mixed")
    if xm.shape != x.shape:
        raise Fail(f"{label}: x_mixed has shape {xm.shape}, expected the shape of x, {x.shape}.")
    _torch_kind(xm_v, f"{label}: x_mixed")
    ya = _labels(ya_v, n, "y_a", label)
    yb = _labels(yb_v, n, "y_b", label)
    lam_a = as_array(lam_v, "lam")
    if lam_a.size != 1:
        raise Fail(f"{label}: lam has shape {lam_a.shape}, a value per sample. Mixup draws one "
                   "lam per batch, a single number (a Python float or a 0-d tensor), shared by "
                   "every pair in the batch.")
    if got["changed"]:
        raise Fail(f"{label}: your function changed its inputs x or y (in-place arithmetic); "
                   "build new tensors.")
    return xm, ya, yb, float(lam_a.reshape(()))


def _recover(x: np.ndarray, xm: np.ndarray, label: str):
    """Per row i of the batch: whether x_mixed[i] == x[i], else the partner j and the weight of x[i].

    Solves x_mixed[i] = w * x[i] + (1 - w) * x[j] for every j != i by least squares and keeps the
    j that fits exactly. Fails when some row is no such blend.
    """
    n = len(x)
    X, M = x.reshape(n, -1), xm.reshape(n, -1)
    tol = 1e-4 * max(1.0, float(np.abs(X).max()))
    partner, weight = np.arange(n), np.full(n, np.nan)
    for i in range(n):
        if np.max(np.abs(M[i] - X[i])) <= tol:
            continue
        D = X[i] - X                          # (n, d)
        R = M[i] - X
        dd = np.einsum("jd,jd->j", D, D)
        dd[i] = np.inf
        w = np.einsum("jd,jd->j", R, D) / dd
        res = np.max(np.abs(R - w[:, None] * D), axis=1)
        res[i] = np.inf
        j = int(np.argmin(res))
        if res[j] > tol:
            raise Fail(f"{label}: x_mixed[{i}] is not lam*x[{i}] + (1-lam)*x[j] for any row j of "
                       "the batch. Mix whole examples with one scalar lam (not a lam per pixel) "
                       "and partners taken from the same batch, x[perm].")
        partner[i], weight[i] = j, w[j]
    return partner, weight


def _mix_call(got, x, y, label):
    """Checks of one call; returns (lam, partner or None when it cannot be told, x_was_mixed)."""
    xm, ya, yb, lam = _unpack(got, x, y, label)
    partner, weight = _recover(x, xm, label)
    mixed = ~np.isnan(weight)
    if mixed.any():
        w = weight[mixed]
        if np.ptp(w) > 1e-3:
            raise Fail(f"{label}: the rows of x_mixed use different weights (from {w.min():.3f} "
                       f"to {w.max():.3f}): a lambda per sample. Mixup draws ONE lam per batch "
                       "and uses it for every row: x_mixed = lam*x + (1-lam)*x[perm].")
        wx = float(np.median(w))
        if abs(wx - lam) > 1e-3:
            if abs(wx - (1 - lam)) <= 1e-3:
                raise Fail(f"{label}: x_mixed gives x the weight {wx:.4f} but you returned lam = "
                           f"{lam:.4f}, its complement: 1 - lam and lam are swapped. The returned "
                           "lam must be the weight of x (and of y_a): x_mixed = lam*x + "
                           "(1-lam)*x[perm].")
            if np.all(np.abs(w) <= 1e-3):
                raise Fail(f"{label}: x_mixed is x[perm], the partners alone (x got weight 0). "
                           "Blend them: x_mixed = lam*x + (1-lam)*x[perm].")
            raise Fail(f"{label}: x_mixed gives x the weight {wx:.4f}, but you returned lam = "
                       f"{lam:.4f}. Use the lam you return: x_mixed = lam*x + (1-lam)*x[perm].")
    # The pairing can be read off only when the partner has a visible share.
    readable = mixed.any() and (1 - lam) > 1e-2
    if readable and np.array_equal(ya, y[partner]) and not np.array_equal(ya, y):
        raise Fail(f"{label}: y_a and y_b are swapped: y_a must be y (the labels of x, weight "
                   "lam) and y_b = y[perm] (the labels of the partners, weight 1 - lam).")
    if not np.array_equal(ya, y):
        raise Fail(f"{label}: y_a should be y itself (the labels of the weight-lam part), "
                   "unchanged and in the same order.")
    if readable:
        if len(set(partner.tolist())) != len(partner):
            raise Fail(f"{label}: the partner rows in x_mixed are not a permutation of the batch "
                       "(some examples used twice, others never): sampling indices with "
                       "replacement? Use one permutation, perm = torch.randperm(N).")
        if not np.array_equal(yb, y[partner]):
            if np.array_equal(yb, y) and not np.array_equal(partner, np.arange(len(y))):
                raise Fail(f"{label}: y_b equals y, but x was mixed with other rows: y_b must "
                           "be y[perm], the labels of the partners.")
            if np.array_equal(np.sort(yb), np.sort(y)):
                raise Fail(f"{label}: y_b is a permutation of y but not the one used for x: two "
                           "permutations (one for x, one for y)? Draw perm once and use it for "
                           "both: x[perm] and y[perm].")
            raise Fail(f"{label}: y_b is not y[perm] for the permutation used in x_mixed.")
    return lam, (partner if readable else None), bool(mixed.any())


def _looks_uniform(lams: np.ndarray) -> bool:
    """Mean and variance within 3.5 standard errors of those of U(0, 1)."""
    n = len(lams)
    return (abs(lams.mean() - 0.5) <= 3.5 * math.sqrt(1 / 12 / n)
            and abs(lams.var(ddof=1) - 1 / 12) <= 3.5 * math.sqrt((1 / 80 - 1 / 144) / n))


def _beta_fail(lams: np.ndarray, alpha: float, uniform: bool = False) -> str | None:
    """None if ``lams`` look like Beta(alpha, alpha) draws, else a hint.

    ``uniform``: the draws for every alpha of the check look uniform (alpha ignored).
    """
    n = len(lams)
    what = f"lam over {n} calls with alpha = {alpha}"
    if np.any((lams < 0) | (lams > 1)):
        return f"{what}: values outside [0, 1] (e.g. {lams[(lams < 0) | (lams > 1)][0]:.3g}); lam ~ Beta(alpha, alpha) lies in [0, 1]."
    if np.ptp(lams) < 1e-9:
        return (f"{what}: the same lam ({lams[0]:.4f}) every call. Draw a fresh lam ~ Beta(alpha, "
                "alpha) in every call (do not seed inside the function).")
    v = 1 / (4 * (2 * alpha + 1))
    m4 = v * v * (3 - 6 / (2 * alpha + 3))
    mean, var = float(lams.mean()), float(lams.var(ddof=1))
    z_mean = (mean - 0.5) / math.sqrt(v / n)
    z_var = (var - v) / math.sqrt((m4 - v * v) / n)
    ks_bad = False
    try:
        from scipy.special import betainc

        s = np.sort(lams)
        cdf = betainc(alpha, alpha, s)
        k = np.arange(1, n + 1)
        dks = float(max(np.max(k / n - cdf), np.max(cdf - (k - 1) / n)))
        ks_bad = dks > math.sqrt(math.log(2 / 1e-7) / (2 * n))
    except ImportError:  # scipy comes with scikit-learn; the moment tests still decide
        pass
    if abs(z_mean) <= 5 and abs(z_var) <= 5 and not ks_bad:
        return None
    stats = (f"{what}: mean {mean:.3f}, variance {var:.4f}; Beta(alpha, alpha) has mean 0.5 and "
             f"variance 1/(4(2 alpha + 1)) = {v:.4f}.")
    if lams.min() >= 0.5:
        return (stats + " Every lam is at least 0.5: did you take max(lam, 1 - lam)? Return lam "
                "~ Beta(alpha, alpha) as drawn.")
    b1_mean = alpha / (alpha + 1)
    b1_var = alpha / ((alpha + 1) ** 2 * (alpha + 2))
    if abs(mean - b1_mean) <= 5 * math.sqrt(b1_var / n) and abs(mean - 0.5) > 5 * math.sqrt(v / n):
        return stats + (f" The mean is that of Beta(alpha, 1) ({b1_mean:.3f}): both Beta "
                        "parameters must be alpha.")
    if uniform:
        return stats + (" These are uniform draws (variance 1/12 = 0.0833): lam must come from "
                        "Beta(alpha, alpha), whose shape depends on alpha (alpha = 1 alone is "
                        "uniform).")
    return stats + (" Draw lam from Beta(alpha, alpha) (np.random.beta(alpha, alpha) or "
                    "torch.distributions.Beta(alpha, alpha).sample()), with alpha for both "
                    "parameters.")


def judge_mixup(data):
    x, y = (t.numpy() for t in _mix_stats_input())
    x = x.astype(np.float64)
    stats = data["stats"]
    lams = {a: [] for a in MIX_ALPHAS}
    perms, any_mixed = [], False
    for k, got in enumerate(stats):
        alpha = MIX_ALPHAS[k // MIX_CALLS]
        label = f"call {k % MIX_CALLS + 1} on a batch of {len(y)} examples, alpha = {alpha}"
        lam, partner, mixed = _mix_call(got, x, y, label)
        lams[alpha].append(lam)
        any_mixed |= mixed
        if partner is not None:
            perms.append(tuple(partner.tolist()))
    if len(stats) != len(MIX_ALPHAS) * MIX_CALLS:
        raise Fail("the check record is incomplete; run the check cell again.")
    if not any_mixed:
        raise Fail(f"x_mixed equalled x in all {len(stats)} calls: the inputs were not mixed. "
                   "Mixup blends the inputs as well as the losses: x_mixed = lam*x + "
                   "(1-lam)*x[perm].")
    if perms:
        top = max(set(perms), key=perms.count)
        if perms.count(top) > 0.5 * len(perms):
            raise Fail(f"the same pairing {list(top)} was used in {perms.count(top)} of "
                       f"{len(perms)} calls. Draw a new random permutation in every call "
                       "(torch.randperm), not a fixed one such as flip or roll.")
    uniform = all(_looks_uniform(np.asarray(v)) for v in lams.values())
    for alpha in MIX_ALPHAS:
        hint = _beta_fail(np.asarray(lams[alpha]), alpha, uniform)
        if hint:
            raise Fail(hint)
    for (label, xc, yc, _, _), got in zip(_mix_cases(), data["cases"], strict=True):
        lam, _, _ = _mix_call(got, xc.numpy().astype(np.float64), yc.numpy(), label)
        if not 0 <= lam <= 1:
            raise Fail(f"{label}: lam = {lam:.4g} is outside [0, 1].")
    return None


exercise("ex6.2", "mixup_batch", probe_mixup, _guard(judge_mixup))

# ------------------------------------------------------------------ ex6.3

def _loss_cases():
    import torch

    g = torch.Generator().manual_seed(6300)
    logits = torch.randn((8, 5), generator=g) * 2
    ya = torch.tensor([0, 3, 1, 4, 2, 2, 0, 1])
    yb = torch.tensor([4, 1, 1, 0, 3, 2, 2, 0])
    big = torch.randn((6, 4), generator=g) * 1000
    ya2, yb2 = torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([3, 3, 0, 1, 2, 1])
    one = torch.randn((1, 10), generator=g)
    return [("8 samples, 5 classes, lam = 0.3", logits, ya, yb, 0.3),
            ("lam given as a 0-d tensor, lam = 0.85", logits, ya, yb, torch.tensor(0.85)),
            ("lam = 0 (only y_b counts)", logits, ya, yb, 0.0),
            ("lam = 1 (only y_a counts)", logits, ya, yb, 1.0),
            ("extreme logits (about ±1000), lam = 0.25", big, ya2, yb2, 0.25),
            ("y_a == y_b, lam = 0.6 (plain cross-entropy)", logits, ya, ya.clone(), 0.6),
            ("a batch of one, lam = 0.7", one, torch.tensor([7]), torch.tensor([2]), 0.7)]


def probe_loss(mixup_loss):
    import torch

    out = []
    for _, logits, ya, yb, lam in _loss_cases():
        li, ai, bi = logits.clone().requires_grad_(True), ya.clone(), yb.clone()
        res = capture(mixup_loss, li, ai, bi, lam)
        changed = not (torch.equal(li.detach(), logits) and torch.equal(ai, ya) and torch.equal(bi, yb))
        out.append({"result": res, "input_changed": bool(changed)})

    def gradient(logits, ya, yb, lam):
        li = logits.clone().requires_grad_(True)
        mixup_loss(li, ya.clone(), yb.clone(), lam).backward()
        return li.grad

    _, logits, ya, yb, lam = _loss_cases()[0]
    return {"cases": out, "grad": capture(gradient, logits, ya, yb, lam)}


def _ce(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.mean(logp[np.arange(len(y)), y]))


def judge_loss(data):
    for (label, logits, ya, yb, lam), got in zip(_loss_cases(), data["cases"], strict=True):
        L, a, b = logits.numpy().astype(np.float64), ya.numpy(), yb.numpy()
        lam = float(lam)
        ce_a, ce_b = _ce(L, a), _ce(L, b)
        ref = lam * ce_a + (1 - lam) * ce_b
        r = as_array(got["result"], "mixup_loss(logits, y_a, y_b, lam)")
        if r.size == len(a) and r.size > 1:
            raise Fail(f"{label}: got {r.size} values, one per sample; return their mean (a "
                       "single number), as F.cross_entropy does by default.")
        v = as_float(got["result"], "mixup_loss(logits, y_a, y_b, lam)")

        def near(u):
            return abs(v - u) <= 1e-5 * max(1.0, abs(u))

        if not math.isfinite(v):
            raise Fail(f"{label}: got {v}. Use F.cross_entropy (or log_softmax), which stays "
                       "finite for large logits; log(softmax(...)) underflows to log(0).")
        if not near(ref):
            if near((1 - lam) * ce_a + lam * ce_b):
                raise Fail(f"{label}: got {v:.6g}, the weights are swapped: lam multiplies the "
                           "cross-entropy with y_a (the labels of x, which had weight lam), and "
                           "1 - lam the one with y_b.")
            if len(a) > 1 and near(len(a) * ref):
                raise Fail(f"{label}: got {v:.6g}, the sum over the batch ({len(a)} times the "
                           "expected value). Average over the batch.")
            if near(lam * ce_a) or near((1 - lam) * ce_b):
                raise Fail(f"{label}: got {v:.6g}, only one of the two terms. The loss is "
                           "lam*CE(logits, y_a) + (1-lam)*CE(logits, y_b).")
            mixed = lam * a + (1 - lam) * b
            for f in (np.round, np.floor, np.trunc):
                if near(_ce(L, np.clip(f(mixed), 0, L.shape[1] - 1).astype(int))):
                    raise Fail(f"{label}: got {v:.6g}, the cross-entropy against the mixed label "
                               "lam*y_a + (1-lam)*y_b turned into an integer. Class indices "
                               "cannot be mixed arithmetically; mix the two losses instead.")
            raise Fail(f"{label}: got {v:.6g}, expected lam*CE(logits, y_a) + (1-lam)*"
                       f"CE(logits, y_b) with the mean cross-entropy over the batch.")
        if got["input_changed"]:
            raise Fail(f"{label}: your function changed its inputs (an in-place operation); "
                       "leave logits, y_a and y_b as they are.")
        res = got["result"]
        if isinstance(res, Value) and res.kind != "torch":
            raise Fail(f"{label}: the value is right but it is a plain number ({res.kind}); "
                       "return a torch tensor, so that loss.backward() can train the model "
                       "(no .item(), float() or NumPy).")
        if isinstance(res, Value) and not res.grad:
            raise Fail(f"{label}: the value is right but the result does not require grad: it was "
                       "detached from logits (.detach(), .item(), NumPy or torch.tensor(...)). "
                       "Compute it with torch operations on logits.")
    _, logits, ya, yb, lam = _loss_cases()[0]
    L = logits.numpy().astype(np.float64)
    p = np.exp(L - L.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(L.shape[1])
    ref_grad = (p - lam * onehot[ya.numpy()] - (1 - lam) * onehot[yb.numpy()]) / len(L)
    g = as_array(data["grad"], "the gradient of your loss")
    if not close(g, ref_grad, rtol=1e-4, atol=1e-6):
        raise Fail("the loss has the right value but the wrong gradient with respect to logits; "
                   "compute it from logits with torch operations only.")
    return None


exercise("ex6.3", "mixup_loss", probe_loss, _guard(judge_loss))

# ------------------------------------------------------------------ ex6.4

def _target_cases():
    import torch

    ya = torch.tensor([0, 3, 9, 4, 4, 1])
    yb = torch.tensor([5, 3, 2, 8, 4, 0])
    return [("6 pairs, 10 classes, lam = 0.3", ya, yb, 0.3, 10),
            ("lam as a 0-d tensor, lam = 0.9, 12 classes", ya, yb, torch.tensor(0.9), 12),
            ("lam = 1", ya, yb, 1.0, 10),
            ("y_a == y_b, lam = 0.25", ya, ya.clone(), 0.25, 10)]


def probe_targets(mixup_targets):
    import torch

    out = []
    for _, ya, yb, lam, k in _target_cases():
        ai, bi = ya.clone(), yb.clone()
        res = capture(mixup_targets, ai, bi, lam, k)
        out.append({"result": res,
                    "input_changed": bool(not (torch.equal(ai, ya) and torch.equal(bi, yb)))})
    return out


def judge_targets(data):
    for (label, ya, yb, lam, k), got in zip(_target_cases(), data, strict=True):
        a, b, lam = ya.numpy(), yb.numpy(), float(lam)
        eye = np.eye(k)
        ref = lam * eye[a] + (1 - lam) * eye[b]
        t = as_array(got["result"], "mixup_targets(y_a, y_b, lam, num_classes)")
        if t.shape != ref.shape:
            raise Fail(f"{label}: got shape {t.shape}, expected (N, num_classes) = {ref.shape}.")
        _torch_kind(got["result"], f"{label}: the result")
        v = got["result"]
        if isinstance(v, Value) and not str(v.dtype).startswith("float"):
            raise Fail(f"{label}: the targets have dtype {v.dtype}; soft targets are "
                       "probabilities, a float tensor (F.one_hot gives integers: convert them).")
        if not close(t, ref, rtol=1e-6, atol=1e-6):
            if close(t, (1 - lam) * eye[a] + lam * eye[b], rtol=1e-6, atol=1e-6):
                raise Fail(f"{label}: lam and 1 - lam are swapped: y_a gets weight lam, y_b "
                           "weight 1 - lam.")
            mixed = np.clip(np.round(lam * a + (1 - lam) * b).astype(int), 0, k - 1)
            if close(t, eye[mixed], atol=1e-6):
                raise Fail(f"{label}: these are one-hot vectors of the mixed label lam*y_a + "
                           "(1-lam)*y_b. Mix the one-hot vectors, not the class indices.")
            raise Fail(f"{label}: wrong values; row i must be lam*one_hot(y_a[i]) + "
                       "(1-lam)*one_hot(y_b[i]) (every row sums to 1).")
        if got["input_changed"]:
            raise Fail(f"{label}: your function changed y_a or y_b; leave the inputs as they are.")
    return None


exercise("ex6.4", "mixup_targets", probe_targets, _guard(judge_targets))
