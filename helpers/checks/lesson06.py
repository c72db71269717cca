"""Checks for lesson 06 (augmentation, mixup, CutMix).

ex6.1 ``random_horizontal_flip(x, p, generator=None)``, ex6.2 ``mixup_batch(x, y, alpha,
generator=None)``, ex6.3 ``mixup_loss(logits, y_a, y_b, lam)``, ex6.4 ``cutmix_batch(x, y,
alpha, generator=None)``.

Every probe and judge builds its inputs from the case seed (``case_rng(seed, salt)``): shapes
and edge cases are fixed, values, labels, ``p`` and ``alpha`` vary with the seed, so an answer
that returns the published outputs fails at another seed.

The random exercises (6.1, 6.2, 6.4) are judged by exact properties and statistics only: a
correct answer may draw from the ``generator`` it is given, from torch's global generator or
from NumPy (``seed_all`` seeds all three before every call), in any order. For the flip the
judge sorts every output image into "unchanged", "flipped along the width" or something else.
For mixup it recovers, from ``x_mixed`` alone, the weight of each row and its partner row. For
CutMix the inputs are constant images with distinct values, so the box and the image that
fills it can be read from ``x_mixed``; labels are distinct, so ``y_b`` tells the permutation.

**Both error rates, at every case seed** (the seed moves ``p`` and the alphas inside fixed
ranges; the bounds hold over the whole range):

- ex6.1: the flip rate within 5.3 binomial standard errors (normal tail 1.2e-7); neighbouring
  decisions agreeing within 6 standard errors (2e-9); the same count in all 8 calls (at most
  0.087**7 = 4e-8). About 2e-7 in all. Flipping with the keep probability (rate 1 - p, with
  p in [0.2, 0.35]) is dozens of standard errors away.
- ex6.2: 1000 lam draws per alpha (alpha in [0.2, 0.3] and in [3, 4]); per alpha the mean, the
  mean of (lam - 1/2)^2 (Bernstein's inequality, no normal approximation) and the KS distance
  (DKW) each fail a correct answer with probability <= 1e-7: 6e-7 in all. Uniform draws,
  Beta(alpha, 1), Beta(2 alpha, 2 alpha) and Beta(alpha / 2, alpha / 2) pass with probability
  below 1e-7 (Bernstein again); see :func:`judge_mixup`.
- ex6.4: 1100 calls per alpha (alpha in [0.22, 0.3] and in [3, 4]); the box sizes, read on an
  axis where the box is not clipped, against their distribution under every usual way of
  rounding (``CUT_VARIANTS``), two tests per alpha at 1.2e-7 (normal approximation), plus the
  border and proportion tests: about 6e-7 in all. Uniform r, Beta(alpha, 1),
  Beta(2 alpha, 2 alpha), Beta(alpha / 2, alpha / 2) and sides linear in 1 - r pass with
  probability below 1e-6; see :func:`judge_cutmix`.

tests/test_lesson06.py shows both rates by simulating many records and checks the analytic
bounds.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import zlib

import numpy as np
import torch
from scipy.special import betainc

from helpers.checks.core import (Fail, Raised, Value, raised_data, as_array, as_float,
                                 capture, case_rng, close, decode, encode, exercise,
                                 input_changed, inputs_after, learner_code, seed_all, unwrap)

# ---------------------------------------------------------------- shared pieces


def _probe_seed(seed: int, salt: int):
    """Seed every generator for one series of calls (the values drawn are never judged); the
    generator handed to the answer gets a seed of its own, so that calls alternating between it
    and torch's global generator do not repeat each other's draws."""
    s = (int(seed) * 1_000_003 + salt * 101) % 2**31
    return seed_all(s).manual_seed(s + 7919)


def _small_ints(entry) -> dict:
    """An encoded array whose values are all integers in [0, 255] stored as uint8 (lossless)."""
    if isinstance(entry, dict) and "__array__" in entry and entry.get("stored") in ("float64", "int64"):
        raw = base64.b64decode(entry["__array__"])
        a = np.frombuffer(raw, dtype=entry["stored"])
        if a.size and np.all(np.isfinite(a)) and np.all(a == np.round(a)) and a.min() >= 0 and a.max() <= 255:
            return {**entry, "__array__": base64.b64encode(a.astype(np.uint8).tobytes()).decode(),
                    "stored": "uint8"}
    if isinstance(entry, dict) and "__seq__" in entry:
        return {**entry, "items": [_small_ints(i) for i in entry["items"]]}
    return entry


MAX_BLOB = 16_000_000


def _pack(items: list) -> dict:
    """Many calls' raw results as one compressed blob: records stay small in saved notebooks."""
    return {"__zlib__": base64.b64encode(zlib.compress(json.dumps(items).encode(), 9)).decode()}


def _unpack_blob(blob) -> list:
    """Inverse of :func:`_pack` (bounded: a forged record cannot inflate without limit)."""
    if not isinstance(blob, dict) or "__zlib__" not in blob:
        raise Fail("the check record is incomplete; run the check cell again.")
    d = zlib.decompressobj()
    raw = d.decompress(base64.b64decode(blob["__zlib__"]), MAX_BLOB)
    if d.unconsumed_tail:
        raise Fail("the check record is too large; run the check cell again.")
    items = decode(json.loads(raw))
    if not isinstance(items, list):
        raise Fail("the check record is incomplete; run the check cell again.")
    return items


def _describe(*args) -> str:
    parts = []
    for a in args:
        if isinstance(a, torch.Tensor):
            parts.append(f"a {str(a.dtype).removeprefix('torch.')} tensor of shape {tuple(a.shape)}")
        elif isinstance(a, torch.Generator):
            parts.append("a torch.Generator")
        else:
            parts.append(repr(a))
    return ", ".join(parts)


def _context(raised: Raised, label: str) -> Raised:
    """A learner's exception, with the case it happened on and a hint for the usual causes."""
    msg = str(raised)
    if "expected np.ndarray" in msg:
        msg += (". np.random.beta(a, b) with no size returns a Python float, which "
                "torch.from_numpy cannot take: a float, or torch.tensor of it, is fine")
    if "one_hot" in msg or "multi-target" in msg or ("target" in msg and "size" in msg):
        msg += (". A soft target needs one column per class, as many as the logits have; "
                "F.one_hot(y) without num_classes makes (largest label in this batch + 1) "
                "columns, which differs from batch to batch: pass num_classes")
    elif "must match the size" in msg:
        msg += (". Two tensors of different shapes met: print the shapes of what you combine "
                "on this input (if one comes from F.one_hot without num_classes, its width is "
                "the largest label in the batch + 1: pass num_classes)")
    return Raised(f"{msg} [on {label}]")


def _guarded(label: str, fn, *args):
    """Run a judge step; a learner's exception inside it is reported with the case's label."""
    try:
        return fn(*args)
    except Raised as e:
        raise _context(e, label) from None


def _kind_dtype(v, what: str, label: str, dtype: str | None) -> None:
    """The returned tensor's type first: a torch tensor, of the input's dtype."""
    if isinstance(v, Raised):
        raise v
    if isinstance(v, Value) and v.kind == "numpy":
        raise Fail(f"{label}: {what} is a NumPy array; return a torch tensor (the training "
                   "loop feeds it to a model on the input's device).")
    if isinstance(v, Value) and v.kind != "torch":
        raise Fail(f"{label}: {what} should be a torch tensor, got {v.dtype or v.kind}.")
    if dtype is not None and isinstance(v, Value) and v.dtype != dtype:
        raise Fail(f"{label}: {what} is {v.dtype}, the input {dtype}: keep the input's dtype "
                   "(a float64 lam tensor, a NumPy array or a .double()/.float() cast changes it).")


# ---------------------------------------------------------------- ex6.1 random_horizontal_flip

FLIP_N, FLIP_CALLS = 100, 8
FLIP_SHAPE = (FLIP_N, 2, 2, 2)


def _flip_p(seed: int) -> float:
    return float(np.round(case_rng(seed, 6100).uniform(0.2, 0.35), 2))


def _distinct_images(rng, shape) -> np.ndarray:
    """Images whose pixels are distinct integers (no image equals any flip of itself)."""
    n, per = shape[0], int(np.prod(shape[1:]))
    return np.stack([rng.permutation(256)[:per] for _ in range(n)]).reshape(shape).astype(np.float32)


def _flip_stats_input(seed: int) -> torch.Tensor:
    return torch.from_numpy(_distinct_images(case_rng(seed, 6101), FLIP_SHAPE))


def _flip_cases(seed: int):
    rng = case_rng(seed, 6102)
    x8 = torch.from_numpy(rng.uniform(0, 1, (6, 1, 8, 8)).astype(np.float32))
    x1 = torch.from_numpy(rng.standard_normal((1, 3, 4, 5)).astype(np.float32))
    p = float(np.round(rng.uniform(0.2, 0.4), 2))
    return [("p = 0 on 6 digit-sized images (6, 1, 8, 8)", x8, 0.0, True),
            ("p = 1 on 6 digit-sized images (6, 1, 8, 8)", x8, 1.0, False),
            ("p = 1 on one 3-channel image (1, 3, 4, 5)", x1, 1.0, True),
            (f"p = {p} on one 3-channel image (1, 3, 4, 5)", x1, p, False)]


def probe_flip(random_horizontal_flip, seed):
    x, p = _flip_stats_input(seed), _flip_p(seed)
    stats, gen = [], _probe_seed(seed, 61)
    for k in range(FLIP_CALLS):
        xin = x.clone()
        out = capture(random_horizontal_flip, xin, p, gen if k % 2 == 0 else None)
        stats.append({"result": _small_ints(out), "inputs_after": [_small_ints(e) for e in inputs_after(xin)]})
    cases, gen = [], _probe_seed(seed, 62)
    for k, (_, xc, pc, use_gen) in enumerate(_flip_cases(seed)):
        xin = xc.clone()
        cases.append({"result": capture(random_horizontal_flip, xin, pc, gen if use_gen else None),
                      "inputs_after": inputs_after(xin)})
    return {"stats": _pack(stats), "cases": cases}


def _flip_output(got, x: np.ndarray, label: str) -> np.ndarray:
    v = got["result"]
    _kind_dtype(v, "the result", label, "float32")
    if input_changed(got.get("inputs_after"), x):
        raise Fail(f"{label}: your function changed its input x (an in-place assignment such as "
                   "x[mask] = ...); build and return a new tensor.")
    out = as_array(v, "random_horizontal_flip(x, p, generator)")
    if out.shape != x.shape:
        raise Fail(f"{label}: the result has shape {out.shape}, expected the input's shape "
                   f"(N, C, H, W) = {x.shape}. Flip images, do not reshape or drop them.")
    return out


def _classify(out: np.ndarray, x: np.ndarray, label: str) -> np.ndarray:
    """Per image: False unchanged, True flipped along the width; fails for anything else."""
    tol = 1e-6

    def same(a, b):
        return np.all(np.abs(a - b) <= tol, axis=(1, 2, 3))

    unchanged, width = same(out, x), same(out, x[..., ::-1])
    height, both = same(out, x[..., ::-1, :]), same(out, x[..., ::-1, ::-1])
    other = ~(unchanged | width)
    if np.any(other & height):
        raise Fail(f"{label}: some images came back upside down: flipped along the height axis "
                   "(dim 2). A horizontal flip mirrors left and right: which axis of (N, C, H, W) "
                   "runs from left to right?")
    if np.any(other & both):
        raise Fail(f"{label}: some images were flipped along both the height and the width axis "
                   "(rotated by 180 degrees). A horizontal flip reverses one axis only.")
    if np.any(other):
        per_channel = np.all(np.abs(out - x) <= tol, axis=(2, 3)) | \
            np.all(np.abs(out - x[..., ::-1]) <= tol, axis=(2, 3))
        if np.all(per_channel):
            raise Fail(f"{label}: the channels of one image were flipped independently (some "
                       "channels mirrored, others not). Decide once per image and flip all its "
                       "channels together: one random draw per image.")
        k = int(np.argmax(other))
        raise Fail(f"{label}: output image {k} is neither the input image nor its mirror image "
                   "(left and right swapped). Each image must come back either unchanged or "
                   "mirrored, nothing else (no shuffling, scaling or mixing).")
    return width


def judge_flip(data, seed):
    p = _flip_p(seed)
    decided = []
    for (clabel, xc, pc, _), got in zip(_flip_cases(seed), data["cases"], strict=True):
        xc = xc.numpy().astype(np.float64)
        decided.append(_guarded(clabel, lambda: _classify(_flip_output(got, xc, clabel), xc, clabel)))
    if not decided[0].any() and not decided[1].any() and not decided[2].any():
        raise Fail(f"{_flip_cases(seed)[1][0]}: no image was flipped at all, with p = 1 and with "
                   "p = 0 alike: the images are never mirrored.")
    for (clabel, xc, pc, _), flipped in zip(_flip_cases(seed), decided):
        if pc == 0.0 and flipped.all():
            raise Fail(f"{clabel}: every image was flipped; with p = 0 none may be. You used p as "
                       "the probability of *keeping* an image: look at the direction of your "
                       "comparison.")
        if pc == 0.0 and flipped.any():
            raise Fail(f"{clabel}: {int(flipped.sum())} images were flipped; with p = 0 every "
                       "image must come back unchanged.")
        if pc == 1.0 and not flipped.all():
            extra = (" You used p as the probability of keeping an image." if not flipped.any()
                     else " Random draws lie in [0, 1): which comparison with p is always true "
                     "when p = 1?")
            raise Fail(f"{clabel}: {int((~flipped).sum())} images were not flipped; with p = 1 "
                       f"every image must be mirrored.{extra}")
    x = _flip_stats_input(seed).numpy().astype(np.float64)
    label = f"{FLIP_CALLS} calls on a batch of {FLIP_N} images (N, C, H, W) = {FLIP_SHAPE}, p = {p}"
    stats = _unpack_blob(data["stats"])
    if len(stats) != FLIP_CALLS:
        raise Fail("the check record is incomplete; run the check cell again.")
    d = np.array([_guarded(label, lambda g=g: _classify(_flip_output(g, x, label), x, label))
                  for g in stats])                                    # (calls, N) True where flipped
    return _flip_statistics(d, p, label)


def _flip_statistics(d: np.ndarray, p: float, label: str):
    m = d.size
    rate = float(d.mean())
    if rate == 0.0:
        raise Fail(f"{label}: no image was flipped at all, expected about {p:.0%} of them. "
                   "p is the probability of flipping each image.")
    per_call = d.mean(axis=1)
    if np.all((per_call == 0) | (per_call == 1)):
        raise Fail(f"{label}: in every call either all images were flipped or none: the whole "
                   "batch was flipped together. Draw one random number per image and decide "
                   "each image by its own draw.")
    sd = math.sqrt(p * (1 - p) / m)
    if abs(rate - p) > 5.3 * sd:
        if abs(rate - (1 - p)) <= 5.3 * sd:
            raise Fail(f"{label}: {rate:.1%} of the images were flipped, expected p = {p:.0%}. "
                       "You used p as the probability of *keeping* an image: look at the "
                       "direction of your comparison.")
        raise Fail(f"{label}: {rate:.1%} of {m} images were flipped, expected p = {p:.0%} "
                   f"(a binomial count allows {p - 5.3 * sd:.1%} to {p + 5.3 * sd:.1%}). Flip each "
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
    return None


exercise("ex6.1", "random_horizontal_flip", probe_flip, judge_flip)

# ---------------------------------------------------------------- ex6.2 mixup_batch

MIX_FULL = 120           # per alpha: calls whose whole output is recorded and judged exactly
MIX_LAMS = 1000          # per alpha: lam draws judged by statistics (the MIX_FULL calls included)
MIX_N = 6


def _mix_alphas(seed: int) -> tuple[float, float]:
    """One alpha well below 1 and one well above: a uniform draw is far from both."""
    rng = case_rng(seed, 6200)
    return (float(np.round(rng.uniform(0.2, 0.3), 2)), float(np.round(rng.uniform(3.0, 4.0), 2)))


def _mix_stats_input(seed: int):
    rng = case_rng(seed, 6201)
    x = torch.from_numpy(rng.standard_normal((MIX_N, 1, 2, 2)).astype(np.float32))
    y = torch.from_numpy(rng.permutation(10)[:MIX_N].astype(np.int64))
    return x, y


def _mix_cases(seed: int):
    rng = case_rng(seed, 6202)
    x1 = torch.from_numpy(rng.uniform(0, 1, (16, 1, 8, 8)).astype(np.float32))
    y1 = torch.from_numpy(rng.integers(0, 10, 16).astype(np.int64))
    x2 = torch.from_numpy(rng.standard_normal((10, 5)).astype(np.float32))
    y2 = torch.from_numpy(rng.permutation(10).astype(np.int64))
    return [("a batch of 16 digit-sized images (16, 1, 8, 8), alpha = 1.0", x1, y1, 1.0, True),
            ("a batch of 10 feature vectors (10, 5), alpha = 0.4", x2, y2, 0.4, False)]


def _probe_batch_fn(fn, seed, xy, alphas, calls, salt, cases, call):
    """The probe of ex6.2 and ex6.4, ``fn(x, y, alpha, generator)``: ``calls`` calls per alpha on
    the clones of ``xy = (x, y)``, each through ``call(fn, *args) -> {"out": ...}`` (stopping at
    the first error: one is enough to report), packed; then one ``capture`` per fixed case of
    ``cases`` (label, x, y, alpha, use_gen). The inputs after the first call and after every
    fixed case are recorded raw (``inputs_after``); the judge decides whether they changed. The
    generators are seeded with ``salt`` for the statistics and ``salt + 1`` for the cases."""
    x, y = xy
    stats, gen = [], _probe_seed(seed, salt)
    for k in range(len(alphas) * calls):
        xin, yin = x.clone(), y.clone()
        entry = call(fn, xin, yin, alphas[k // calls], gen if k % 2 == 0 else None)
        if k == 0:
            entry["inputs_after"] = inputs_after(xin, yin)
        stats.append(entry)
        out = entry.get("out")
        if isinstance(out, dict) and "__raised__" in out:
            break
    found, gen = [], _probe_seed(seed, salt + 1)
    for _, xc, yc, alpha, use_gen in cases:
        xin, yin = xc.clone(), yc.clone()
        found.append({"out": capture(fn, xin, yin, alpha, gen if use_gen else None),
                      "inputs_after": inputs_after(xin, yin)})
    return {"stats": _pack(stats), "cases": found}


def _lam_draws(fn, x, y, alpha, gen, n) -> dict:
    """``n`` more calls, keeping only the returned lam as a float64 (raw: the value as it came
    back; whole outputs are recorded and judged for the first calls). Stops at the first error
    or at a lam that is not a single number, and records what came back instead."""
    lams = np.full(n, np.nan)
    with learner_code():
        for k in range(n):
            try:
                lam = fn(x.clone(), y.clone(), alpha, gen if k % 2 == 0 else None)[3]
                if isinstance(lam, torch.Tensor):
                    lam = lam.detach().cpu().double().numpy()
                a = np.asarray(lam, dtype=np.float64)
            except Exception as e:  # noqa: BLE001 - any learner error becomes data
                return {"lams": encode(lams[:k]), "odd": raised_data(e)}
            if a.size != 1:
                return {"lams": encode(lams[:k]), "odd": encode(lam)}
            lams[k] = float(a.reshape(()))
    return {"lams": encode(lams)}


def probe_mixup(mixup_batch, seed):
    x, y = _mix_stats_input(seed)
    alphas = _mix_alphas(seed)
    data = _probe_batch_fn(mixup_batch, seed, (x, y), alphas, MIX_FULL, 63, _mix_cases(seed),
                           lambda fn, *args: {"out": capture(fn, *args)})
    gen = _probe_seed(seed, 65)
    data["lams"] = [_lam_draws(mixup_batch, x, y, a, gen, MIX_LAMS - MIX_FULL) for a in alphas]
    return data


SOFT_TARGET_NOTE = ("(If you build mixed one-hot targets somewhere, note that when both labels "
                    "of a pair are the same class the two weights add up on that class: "
                    "scatter_ overwrites instead of adding.)")


def _labels(v, n: int, what: str, label: str, fn: str) -> np.ndarray:
    if isinstance(v, Raised):
        raise v
    a = as_array(v, what)
    if a.ndim == 2 and a.shape[0] == n:
        raise Fail(f"{label}: {what} has shape {a.shape}: return the integer class labels "
                   f"(shape (N,)), not one-hot or mixed targets; the loss weighs the two "
                   f"cross-entropies with lam instead. {SOFT_TARGET_NOTE}")
    if a.shape != (n,):
        raise Fail(f"{label}: {what} has shape {a.shape}, expected (N,) = ({n},).")
    isint = isinstance(v, Value) and str(v.dtype).startswith(("int", "uint"))
    frac = a[a != np.round(a)]
    if not isint or frac.size:
        seen = f", values such as {frac[0]:.3g}" if frac.size else ""
        raise Fail(f"{label}: {what} is not a tensor of integer class labels (dtype "
                   f"{getattr(v, 'dtype', type(v).__name__)}{seen}). Do not mix integer labels "
                   "arithmetically: lam*3 + (1-lam)*7 is not a class (halfway between a 3 and a "
                   "7 is not a 5). Return the class labels of both partners as they are and let "
                   "the loss do the mixing.")
    return a.astype(np.int64)


def _unpack(got, x: np.ndarray, y: np.ndarray, label: str, fn: str = "mixup_batch",
            dtype: str = "float32", originals=None):
    """``(x_mixed, y_a, y_b, lam)`` of one call, after the checks of kind, dtype and shape.
    ``originals``: the inputs as the judge rebuilt them, when this call's inputs after the call
    were recorded (``inputs_after``); the judge decides whether they changed."""
    out = got["out"]
    if isinstance(out, Raised):
        raise out
    if not isinstance(out, (tuple, list)) or len(out) != 4:
        raise Fail(f"{label}: {fn} must return a tuple of four: (x_mixed, y_a, y_b, lam).")
    xm_v, ya_v, yb_v, lam_v = out
    n = len(y)
    if originals is not None and input_changed(got.get("inputs_after"), *originals):
        raise Fail(f"{label}: your function changed its inputs x or y (in-place arithmetic or "
                   "assignment into x); build new tensors.")
    _kind_dtype(xm_v, "x_mixed", label, dtype)
    xm = as_array(xm_v, "x_mixed")
    if xm.shape != x.shape:
        raise Fail(f"{label}: x_mixed has shape {xm.shape}, expected the shape of x, {x.shape}.")
    ya = _labels(ya_v, n, "y_a", label, fn)
    yb = _labels(yb_v, n, "y_b", label, fn)
    if isinstance(lam_v, Raised):
        raise lam_v
    lam_a = np.asarray(as_array(lam_v, "lam"))
    if lam_a.size != 1:
        raise Fail(f"{label}: lam has shape {lam_a.shape}, a value per sample. One lam per "
                   "batch: a single number (a Python float or a 0-d tensor), shared by every "
                   "pair in the batch.")
    if lam_a.ndim != 0:
        raise Fail(f"{label}: lam is an array of shape {lam_a.shape}; return a single number: a "
                   "Python float (e.g. `.item()`) or a 0-d tensor, as the exercise says.")
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
        D = X[i] - X
        R = M[i] - X
        dd = np.einsum("jd,jd->j", D, D)
        dd[i] = np.inf
        w = np.einsum("jd,jd->j", R, D) / dd
        res = np.max(np.abs(R - w[:, None] * D), axis=1)
        res[i] = np.inf
        j = int(np.argmin(res))
        if res[j] > tol:
            raise Fail(f"{label}: x_mixed[{i}] is not a blend of x[{i}] and one other row of the "
                       "batch. Mix whole examples with one scalar weight (not a weight per "
                       "pixel), with partners taken from the same batch.")
        partner[i], weight[i] = j, w[j]
    return partner, weight


def _mix_call(got, x, y, label, dtype="float32", originals=None):
    """Checks of one call; returns (lam, partner or None when it cannot be told, x_was_mixed)."""
    xm, ya, yb, lam = _unpack(got, x, y, label, dtype=dtype, originals=originals)
    partner, weight = _recover(x, xm, label)
    mixed = ~np.isnan(weight)
    if mixed.any():
        w = weight[mixed]
        if np.ptp(w) > 1e-3:
            raise Fail(f"{label}: the rows of x_mixed use different weights (from {w.min():.3f} "
                       f"to {w.max():.3f}): a lambda per sample. Mixup draws ONE lam per batch "
                       "and uses it for every row.")
        wx = float(np.median(w))
        if abs(wx - lam) > 1e-3:
            if abs(wx - (1 - lam)) <= 1e-3:
                raise Fail(f"{label}: x_mixed gives x the weight {wx:.4f} but you returned lam = "
                           f"{lam:.4f}, its complement: 1 - lam and lam are swapped. The returned "
                           "lam must be the weight of x (and of y_a).")
            if np.all(np.abs(w) <= 1e-3):
                raise Fail(f"{label}: x_mixed is x[perm], the partners alone (x got weight 0). "
                           "Blend each example with its partner.")
            raise Fail(f"{label}: x_mixed gives x the weight {wx:.4f}, but you returned lam = "
                       f"{lam:.4f}. Blend with the very lam you return.")
    readable = mixed.any() and (1 - lam) > 1e-2
    if readable and np.array_equal(ya, y[partner]) and not np.array_equal(ya, y):
        raise Fail(f"{label}: y_a and y_b are swapped: y_a must be the labels of x (weight lam), "
                   "y_b those of the partners (weight 1 - lam).")
    if not np.array_equal(ya, y):
        raise Fail(f"{label}: y_a should be y itself (the labels of the weight-lam part), "
                   "unchanged and in the same order.")
    if readable:
        if len(set(partner.tolist())) != len(partner):
            raise Fail(f"{label}: the partner rows in x_mixed are not a permutation of the batch "
                       "(some examples used twice, others never): sampling indices with "
                       "replacement? Pair the batch with a random reordering of itself.")
        if not np.array_equal(yb, y[partner]):
            if np.array_equal(yb, y) and not np.array_equal(partner, np.arange(len(y))):
                raise Fail(f"{label}: y_b equals y, but x was mixed with other rows: y_b must "
                           "be the labels of the partners.")
            if np.array_equal(np.sort(yb), np.sort(y)):
                raise Fail(f"{label}: y_b is a permutation of y but not the one used for x: two "
                           "permutations (one for x, one for y)? Draw the permutation once and "
                           "use it for both.")
            raise Fail(f"{label}: y_b is not the labels of the partners used in x_mixed.")
    return lam, (partner if readable else None), bool(mixed.any())


def _dkw(n: int, delta: float = 1e-7) -> float:
    """Dvoretzky-Kiefer-Wolfowitz (Massart's constant): P(KS distance > this) <= delta for n
    i.i.d. draws from the distribution tested against, whatever it is."""
    return math.sqrt(math.log(2 / delta) / (2 * n))


def _bernstein(sd: float, bound: float, n: int, delta: float = 1e-7) -> float:
    """Bernstein's inequality: the mean of n i.i.d. values with standard deviation ``sd`` and
    ``|value - mean| <= bound`` is farther than this from its expectation with probability at
    most ``delta`` (two-sided; no normal approximation)."""
    L = math.log(2 / delta)
    b = 2 * bound * L / 3
    return (b + math.sqrt(b * b + 8 * n * sd * sd * L)) / (2 * n)


def _beta_moments(alpha: float):
    """For lam ~ Beta(alpha, alpha): the variance v = E[(lam - 1/2)^2] and the standard
    deviation of (lam - 1/2)^2 (symmetric Beta: excess kurtosis -6 / (2 alpha + 3))."""
    v = 1 / (4 * (2 * alpha + 1))
    m4 = v * v * (3 - 6 / (2 * alpha + 3))
    return v, math.sqrt(max(m4 - v * v, 0.0))


UNIFORM_SPREAD = (1 / 12, math.sqrt(1 / 80 - 1 / 144))   # E[(U - 1/2)^2] and its sd for U(0, 1)


def _beta_fail(lams: np.ndarray, alpha: float, uniform: bool = False, what: str = "lam") -> str | None:
    """None if ``lams`` look like n i.i.d. Beta(alpha, alpha) draws, else a hint.

    Three tests, each failing a correct answer with probability <= 1e-7 (no normal
    approximation): the mean within Bernstein's bound of 1/2; the mean of (lam - 1/2)^2 (the
    statistic that tells symmetric Betas apart) within Bernstein's bound of 1/(4(2 alpha + 1));
    the Kolmogorov-Smirnov distance below the DKW bound. ``uniform``: the draws for every alpha
    of the check look uniform (the hint says so).
    """
    n = len(lams)
    what = f"{what} over {n} calls with alpha = {alpha}"
    if np.any(~np.isfinite(lams)):
        return f"{what}: some values are not finite numbers (nan or inf)."
    if np.any((lams < 0) | (lams > 1)):
        return f"{what}: values outside [0, 1] (e.g. {lams[(lams < 0) | (lams > 1)][0]:.3g}); Beta draws lie in [0, 1]."
    if np.ptp(lams) < 1e-9:
        return (f"{what}: the same value ({lams[0]:.4f}) every call. Draw afresh in every call "
                "(do not seed inside the function).")
    v, sd_sq = _beta_moments(alpha)
    mean, spread = float(lams.mean()), float(np.mean((lams - 0.5) ** 2))
    mean_ok = abs(mean - 0.5) <= _bernstein(math.sqrt(v), 0.5, n)
    spread_ok = abs(spread - v) <= _bernstein(sd_sq, max(v, 0.25 - v), n)
    s = np.sort(lams)
    cdf = betainc(alpha, alpha, s)
    k = np.arange(1, n + 1)
    dks = float(max(np.max(k / n - cdf), np.max(cdf - (k - 1) / n)))
    if mean_ok and spread_ok and dks <= _dkw(n):
        return None
    stats = (f"{what}: mean {mean:.3f}, mean squared distance from 0.5 {spread:.4f}; "
             f"Beta(alpha, alpha) has mean 0.5 and variance 1/(4(2 alpha + 1)) = {v:.4f}.")
    if lams.min() >= 0.5:
        return (stats + " Every value is at least 0.5: did you take the larger of lam and "
                "1 - lam? Return the draw as it is.")
    if not mean_ok:
        b1_mean = alpha / (alpha + 1)
        if abs(mean - b1_mean) < abs(mean - 0.5):
            return stats + (f" The mean is that of Beta(alpha, 1) ({b1_mean:.3f}): both Beta "
                            "parameters must be alpha.")
        return stats + (" The draws are not symmetric around 0.5: both shape parameters of "
                        "the Beta distribution must be alpha.")
    if uniform:
        return stats + (" These are uniform draws (variance 1/12 = 0.0833): the draw must come "
                        "from Beta(alpha, alpha), whose shape depends on alpha (alpha = 1 alone "
                        "is uniform).")
    side = ("more often near 0 and 1" if spread > v else "closer to 0.5")
    return stats + (f" The draws lie {side} than Beta(alpha, alpha) draws do: check the "
                    "distribution and that both of its shape parameters are alpha itself.")


def _looks_uniform(lams: np.ndarray) -> bool:
    """The mean of (lam - 1/2)^2 within Bernstein's bound (1e-7) of the uniform's 1/12."""
    n = len(lams)
    return n > 0 and abs(float(np.mean((lams - 0.5) ** 2)) - UNIFORM_SPREAD[0]) <= \
        _bernstein(UNIFORM_SPREAD[1], 0.25, n)


def judge_mixup(data, seed):
    """Exact checks on ``MIX_FULL`` calls per alpha and on the fixed cases (blend, one lam per
    batch, one permutation, labels, dtype, inputs unchanged); then ``MIX_LAMS`` lam draws per
    alpha against Beta(alpha, alpha) by :func:`_beta_fail`.

    False failure of a correct answer: 3 tests per alpha at <= 1e-7 each (Bernstein, DKW: exact
    bounds), 6e-7 for the two alphas; the same pairing in more than half the calls, under a
    uniform permutation of 6: far below 1e-12. A confusion passes with probability below 1e-6
    at every alpha of the seed's ranges (alpha in [0.2, 0.3] and [3, 4], 1000 draws each; 800 would do):
    uniform draws, Beta(alpha, 1), Beta(2 alpha, 2 alpha), Beta(alpha / 2, alpha / 2) and
    max(lam, 1 - lam) (Bernstein bounds again; tests/test_lesson06.py shows them by simulation);
    lam drawn per sample and a fixed pairing fail every time.
    """
    x, y = (t.numpy() for t in _mix_stats_input(seed))
    x0, y0 = x.copy(), y.copy()
    x = x.astype(np.float64)
    alphas = _mix_alphas(seed)
    for (label, xc, yc, _, _), got in zip(_mix_cases(seed), data["cases"], strict=True):
        dtype = str(xc.dtype).removeprefix("torch.")
        lam, _, _ = _guarded(label, _mix_call, got, xc.numpy().astype(np.float64), yc.numpy(), label,
                             dtype, (xc.numpy(), yc.numpy()))
        if not 0 <= lam <= 1:
            raise Fail(f"{label}: lam = {lam:.4g} is outside [0, 1].")
    stats = _unpack_blob(data["stats"])
    lams = {a: [] for a in alphas}
    perms, any_mixed = [], False
    for k, got in enumerate(stats):
        alpha = alphas[min(k // MIX_FULL, 1)]
        label = (f"call {k % MIX_FULL + 1} of mixup_batch(x, y, alpha, generator) with x of shape "
                 f"{tuple(x.shape)} and y of shape ({len(y)},), alpha = {alpha}")
        lam, partner, mixed = _guarded(label, _mix_call, got, x, y, label, "float32",
                                       (x0, y0) if k == 0 else None)
        lams[alpha].append(lam)
        any_mixed |= mixed
        if partner is not None:
            perms.append(tuple(partner.tolist()))
    if len(stats) != len(alphas) * MIX_FULL:
        raise Fail("the check record is incomplete; run the check cell again.")
    if not any_mixed:
        raise Fail(f"x_mixed equalled x in all {len(stats)} calls: the inputs were not mixed. "
                   "Mixup blends the inputs as well as the losses.")
    if perms:
        top = max(set(perms), key=perms.count)
        if perms.count(top) > 0.5 * len(perms):
            raise Fail(f"the same pairing {list(top)} was used in {perms.count(top)} of "
                       f"{len(perms)} calls. Draw a new random permutation in every call, not "
                       "a fixed one such as a flip or a roll of the batch.")
    more = data.get("lams")
    if not isinstance(more, list) or len(more) != len(alphas):
        raise Fail("the check record is incomplete; run the check cell again.")
    for alpha, extra in zip(alphas, more):
        label = f"mixup_batch(x, y, alpha, generator) called many times with alpha = {alpha}"
        if not isinstance(extra, dict) or "lams" not in extra:
            raise Fail("the check record is incomplete; run the check cell again.")
        if "odd" in extra:
            odd = extra["odd"]
            if isinstance(odd, Raised):
                raise _context(odd, label)
            raise Fail(f"{label}: in a later call lam came back as {describe_value(odd)}, not one "
                       "number: return a Python float or a 0-d tensor every time.")
        got = np.asarray(as_array(extra["lams"], "lam"), dtype=np.float64).reshape(-1)
        if got.size != MIX_LAMS - MIX_FULL:
            raise Fail("the check record is incomplete; run the check cell again.")
        lams[alpha] = np.concatenate([np.asarray(lams[alpha], dtype=np.float64), got])
    uniform = all(_looks_uniform(np.asarray(v)) for v in lams.values())
    for alpha in alphas:
        hint = _beta_fail(np.asarray(lams[alpha]), alpha, uniform)
        if hint:
            raise Fail(hint)
    return None


def describe_value(v) -> str:
    if isinstance(v, Value):
        return f"a {v.kind} array of shape {np.shape(v.value)} ({v.dtype})"
    return type(v).__name__


exercise("ex6.2", "mixup_batch", probe_mixup, judge_mixup)

# ---------------------------------------------------------------- ex6.3 mixup_loss


def _loss_cases(seed: int):
    rng = case_rng(seed, 6300)

    def t(a, dtype=np.float32):
        return torch.from_numpy(np.asarray(a).astype(dtype))

    logits = t(rng.standard_normal((8, 5)) * 2)
    ya, yb = t(rng.integers(0, 5, 8), np.int64), t(rng.integers(0, 5, 8), np.int64)
    yb[0] = (ya[0] + 1) % 5                         # at least one pair of different classes
    big = t(rng.standard_normal((6, 4)) * 1000)
    ya2, yb2 = t(rng.integers(0, 4, 6), np.int64), t(rng.integers(0, 4, 6), np.int64)
    ya3 = t(rng.integers(0, 3, 6), np.int64)        # labels below K - 1: one_hot(y) is too narrow
    one = t(rng.standard_normal((1, 10)))
    lam = [float(np.round(rng.uniform(lo, hi), 2)) for lo, hi in ((0.2, 0.4), (0.75, 0.9), (0.15, 0.35), (0.55, 0.65), (0.6, 0.8))]
    return [(f"8 samples, 5 classes, lam = {lam[0]}", logits, ya, yb, lam[0]),
            (f"lam given as a 0-d tensor, lam = {lam[1]}", logits, ya, yb, torch.tensor(lam[1])),
            ("lam = 0 (only y_b counts)", logits, ya, yb, 0.0),
            ("lam = 1 (only y_a counts)", logits, ya, yb, 1.0),
            (f"extreme logits (about ±1000), 6 samples, 4 classes, lam = {lam[2]}", big, ya2, yb2, lam[2]),
            (f"y_a == y_b, lam = {lam[3]} (plain cross-entropy)", logits, ya, ya.clone(), lam[3]),
            (f"logits (6, 5), labels only from classes 0-2, lam = {lam[4]}", logits[:6], ya3, ya3.flip(0), lam[4]),
            (f"a batch of one, 10 classes, lam = {lam[4]}", one, t([7], np.int64), t([2], np.int64), lam[4])]


def probe_loss(mixup_loss, seed):
    out = []
    cases = _loss_cases(seed)
    for _, logits, ya, yb, lam in cases:
        li, ai, bi = logits.clone().requires_grad_(True), ya.clone(), yb.clone()
        res = capture(mixup_loss, li, ai, bi, lam)
        out.append({"result": res, "inputs_after": inputs_after(li.detach(), ai, bi)})

    def gradient(logits, ya, yb, lam):
        li = logits.clone().requires_grad_(True)
        mixup_loss(li, ya.clone(), yb.clone(), lam).backward()
        return li.grad

    _, logits, ya, yb, lam = cases[0]
    return {"cases": out, "grad": capture(gradient, logits, ya, yb, lam)}


def _ce(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.mean(logp[np.arange(len(y)), y]))


def _judge_loss_case(label, logits, ya, yb, lam, got):
    L, a, b = logits.numpy().astype(np.float64), ya.numpy(), yb.numpy()
    lam = float(lam)
    ce_a, ce_b = _ce(L, a), _ce(L, b)
    ref = lam * ce_a + (1 - lam) * ce_b
    res = got["result"]
    if isinstance(res, Raised):
        raise res
    if isinstance(res, Value) and res.kind == "torch" and not str(res.dtype).startswith(("float", "bfloat")):
        raise Fail(f"{label}: the loss is a {res.dtype} tensor; a loss is a float tensor.")
    r = as_array(res, "mixup_loss(logits, y_a, y_b, lam)")
    if r.size == len(a) and r.size > 1:
        raise Fail(f"{label}: got {r.size} values, one per sample; return their mean (a "
                   "single number), as F.cross_entropy does by default.")
    v = as_float(res, "mixup_loss(logits, y_a, y_b, lam)")

    def near(u):
        return abs(v - u) <= 1e-5 * max(1.0, abs(u))

    if not math.isfinite(v):
        raise Fail(f"{label}: got {v}. Compute the log-probabilities in one stable step (as "
                   "F.cross_entropy and log_softmax do); log(softmax(...)) underflows to log(0).")
    if not near(ref):
        z = L - L.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        rows = np.arange(len(a))
        over_b = np.where(a == b, (1 - lam) * -logp[rows, a], lam * -logp[rows, a] + (1 - lam) * -logp[rows, b]).mean()
        over_a = np.where(a == b, lam * -logp[rows, a], lam * -logp[rows, a] + (1 - lam) * -logp[rows, b]).mean()
        same = bool(np.any(a == b))
        if same and 0 < lam < 1 and (near(over_b) or near(over_a)):
            raise Fail(f"{label}: got {v:.6g}, only part of the loss. When both labels of a pair "
                       "are the same class, the two weights add up on that class (they sum to "
                       "1); a soft target built with scatter_ overwrites one weight with the "
                       "other instead of adding them.")
        if near((1 - lam) * ce_a + lam * ce_b):
            raise Fail(f"{label}: got {v:.6g}, the weights are swapped: lam belongs to the "
                       "labels of x (y_a), 1 - lam to those of the partners (y_b).")
        if len(a) > 1 and near(len(a) * ref):
            raise Fail(f"{label}: got {v:.6g}, the sum over the batch ({len(a)} times the "
                       "expected value). Average over the batch.")
        if near(lam * ce_a) or near((1 - lam) * ce_b):
            raise Fail(f"{label}: got {v:.6g}, only one of the two terms: both labels count, "
                       "each with its weight.")
        mixed = lam * a + (1 - lam) * b
        for f in (np.round, np.floor, np.trunc):
            if near(_ce(L, np.clip(f(mixed), 0, L.shape[1] - 1).astype(int))):
                raise Fail(f"{label}: got {v:.6g}, the cross-entropy against a mixed label turned "
                           "into an integer. Class indices cannot be mixed arithmetically; mix "
                           "the two losses instead.")
        raise Fail(f"{label}: got {v:.6g}, expected {ref:.6g}: the cross-entropy of the logits "
                   "against the mixed target (weight lam on the class y_a, 1 - lam on the class "
                   "y_b), averaged over the batch.")
    if input_changed(got.get("inputs_after"), logits, ya, yb):
        raise Fail(f"{label}: your function changed its inputs (an in-place operation); "
                   "leave logits, y_a and y_b as they are.")
    if isinstance(res, Value) and res.kind != "torch":
        raise Fail(f"{label}: the value is right but it is a plain number ({res.kind}); "
                   "return a torch tensor, so that loss.backward() can train the model "
                   "(no .item(), float() or NumPy).")
    if isinstance(res, Value) and not res.grad:
        raise Fail(f"{label}: the value is right but the result does not require grad: it was "
                   "detached from logits (.detach(), .item(), NumPy or torch.tensor(...)). "
                   "Compute it with torch operations on logits.")


def judge_loss(data, seed):
    cases = _loss_cases(seed)
    for (label, logits, ya, yb, lam), got in zip(cases, data["cases"], strict=True):
        full = (f"{label}: mixup_loss(logits of shape {tuple(logits.shape)}, y_a of shape "
                f"{tuple(ya.shape)}, y_b, lam)")
        _guarded(full, _judge_loss_case, full, logits, ya, yb, lam, got)
    _, logits, ya, yb, lam = cases[0]
    L = logits.numpy().astype(np.float64)
    p = np.exp(L - L.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(L.shape[1])
    ref_grad = (p - lam * onehot[ya.numpy()] - (1 - lam) * onehot[yb.numpy()]) / len(L)
    g = _guarded("the gradient of your loss on the first case", as_array, data["grad"], "the gradient of your loss")
    if not close(g, ref_grad, rtol=1e-4, atol=1e-6):
        raise Fail("the loss has the right value but the wrong gradient with respect to logits; "
                   "compute it from logits with torch operations only.")
    return None


exercise("ex6.3", "mixup_loss", probe_loss, judge_loss)

# ---------------------------------------------------------------- ex6.4 cutmix_batch

CUT_N, CUT_H, CUT_W = 4, 40, 64
CUT_CALLS = 1100         # per alpha
MAX_PIXELS = 2 * CUT_CALLS * CUT_N * CUT_H * CUT_W


def _cut_alphas(seed: int) -> tuple[float, float]:
    rng = case_rng(seed, 6400)
    return (float(np.round(rng.uniform(0.22, 0.3), 2)), float(np.round(rng.uniform(3.0, 4.0), 2)))


def _cut_stats_input(seed: int):
    """Constant images with distinct values (the box and its source can be read off) and
    distinct labels (``y_b`` tells the permutation)."""
    rng = case_rng(seed, 6401)
    values = rng.choice(np.arange(1, 250), CUT_N, replace=False).astype(np.float32)
    x = torch.from_numpy(np.broadcast_to(values[:, None, None, None], (CUT_N, 1, CUT_H, CUT_W)).copy())
    y = torch.from_numpy(rng.permutation(10)[:CUT_N].astype(np.int64))
    return x, y


def _distinct_per_pixel(rng, shape, high=256) -> np.ndarray:
    """Integer images in which, at every position, the N images hold different values (a box
    pasted from a partner changes every pixel it covers, so it can be read back exactly)."""
    n, rest = shape[0], int(np.prod(shape[1:]))
    vals = np.stack([rng.permutation(high)[:n] for _ in range(rest)], axis=1)
    return vals.reshape(shape)


def _cut_cases(seed: int):
    rng = case_rng(seed, 6402)
    x1 = torch.from_numpy(rng.uniform(0, 1, (6, 2, 6, 8)).astype(np.float32))
    y1 = torch.from_numpy(rng.permutation(10)[:6].astype(np.int64))
    x2 = torch.from_numpy(rng.uniform(0, 1, (1, 1, 5, 7)).astype(np.float32))
    y2 = torch.from_numpy(rng.integers(0, 10, 1).astype(np.int64))
    x3 = torch.from_numpy(rng.standard_normal((4, 2, 7, 9)))                        # float64
    y3 = torch.from_numpy(rng.permutation(10)[:4].astype(np.int64))
    x4 = torch.from_numpy(_distinct_per_pixel(rng, (4, 3, 6, 8)).astype(np.uint8))   # 8-bit images
    y4 = torch.from_numpy(rng.permutation(10)[:4].astype(np.int64))
    return [("x of shape (6, 2, 6, 8) (six two-channel 6x8 images), alpha = 1.0", x1, y1, 1.0, True),
            ("x of shape (1, 1, 5, 7) (a batch of one image), alpha = 1.0", x2, y2, 1.0, False),
            ("float64 images x of shape (4, 2, 7, 9), alpha = 0.5", x3, y3, 0.5, True),
            ("8-bit images: x a uint8 tensor of shape (4, 3, 6, 8), alpha = 2.0", x4, y4, 2.0, False)]


_LAM_KINDS = ("float", "float32", "float64")     # a Python/NumPy float, or a 0-d torch tensor


def _compact_ok(out, x) -> bool:
    """An output that can be recorded compactly, losslessly: a float32 x_mixed of x's shape
    (not requiring grad) whose values are integers in [0, 255], int64 label tensors of shape
    (N,), and lam a Python/NumPy float or a 0-d float tensor."""
    if not (isinstance(out, tuple) and len(out) == 4):
        return False
    xm, ya, yb, lam = out
    n = x.shape[0]
    if not (isinstance(xm, torch.Tensor) and xm.dtype == torch.float32 and not xm.requires_grad
            and tuple(xm.shape) == tuple(x.shape)
            and all(isinstance(v, torch.Tensor) and v.dtype == torch.int64
                    and tuple(v.shape) == (n,) for v in (ya, yb))
            and (type(lam) in (float, np.float64) or (
                isinstance(lam, torch.Tensor) and lam.dim() == 0
                and lam.dtype in (torch.float32, torch.float64) and not lam.requires_grad))):
        return False
    t = xm.detach().cpu()
    return bool(torch.all((t == t.round()) & (t >= 0) & (t <= 255)))


def _probe_cut_stats(fn, x, y, alphas, gen) -> dict:
    """``CUT_CALLS`` calls per alpha, recorded raw but compactly: an output that
    :func:`_compact_ok` accepts (a correct answer's, on the constant images) goes into arrays
    (labels, lam and its kind) and its pixels, as bytes, into one zlib stream shared by all
    calls (consecutive outputs differ only by a box: a few bytes each); any other output is
    encoded as it came back, in ``others``. Stops at the first error."""
    comp, chunks, others = zlib.compressobj(9), [], []
    K, n = len(alphas) * CUT_CALLS, x.shape[0]
    compact = np.zeros(K, dtype=bool)
    labels = np.zeros((K, 2, n), dtype=np.int64)
    lams = np.zeros(K)
    kinds = np.zeros(K, dtype=np.int64)
    first, calls = None, 0
    with learner_code():
        for k in range(K):
            xin, yin = x.clone(), y.clone()
            calls = k + 1
            try:
                out = fn(xin, yin, alphas[k // CUT_CALLS], gen if k % 2 == 0 else None)
            except Exception as e:  # noqa: BLE001 - any learner error becomes data
                others.append([k, raised_data(e)])
                break
            if k == 0:
                first = [_small_ints(e) for e in inputs_after(xin, yin)]
            if _compact_ok(out, x) and bool(torch.all((out[1] >= 0) & (out[1] < 256)
                                                      & (out[2] >= 0) & (out[2] < 256))):
                compact[k] = True
                labels[k, 0], labels[k, 1] = out[1].numpy(), out[2].numpy()
                lam = out[3]
                lams[k] = float(lam)
                kinds[k] = _LAM_KINDS.index(str(lam.dtype).removeprefix("torch.")) \
                    if isinstance(lam, torch.Tensor) else 0
                chunks.append(comp.compress(out[0].detach().cpu().to(torch.uint8).numpy().tobytes()))
            else:
                others.append([k, encode(out)])
    stream = b"".join(chunks) + comp.flush()
    small = np.concatenate([compact[:calls].astype(np.uint8), labels[:calls].astype(np.uint8).ravel(),
                            kinds[:calls].astype(np.uint8)]).tobytes()
    arrays = zlib.compress(small + lams[:calls].astype("<f8").tobytes(), 9)
    return {"calls": calls, "arrays": base64.b64encode(arrays).decode(),
            "others": _pack(others), "inputs_after": first,
            "pixels": base64.b64encode(stream).decode()}


def probe_cutmix(cutmix_batch, seed):
    x, y = _cut_stats_input(seed)
    data = {"stats": _probe_cut_stats(cutmix_batch, x, y, _cut_alphas(seed), _probe_seed(seed, 65))}
    cases, gen = [], _probe_seed(seed, 66)
    for _, xc, yc, alpha, use_gen in _cut_cases(seed):
        xin, yin = xc.clone(), yc.clone()
        cases.append({"out": capture(cutmix_batch, xin, yin, alpha, gen if use_gen else None),
                      "inputs_after": inputs_after(xin, yin)})
    data["cases"] = cases
    return data


def _box_of(diff: np.ndarray):
    """``(top, bottom, left, right)`` (half-open) of the True pixels of a 2-D mask, or None."""
    rows, cols = np.flatnonzero(diff.any(axis=1)), np.flatnonzero(diff.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _cut_call(got, x: np.ndarray, y: np.ndarray, label: str, dtype: str = "float32",
              originals=None):
    """Exact checks of one call. Returns ``(lam, box or None, seen)``: ``seen`` is False when the
    box cannot be read (every image paired with itself)."""
    xm, ya, yb, lam = _unpack(got, x, y, label, "cutmix_batch", dtype, originals)
    n, _, h, w = x.shape
    if not np.array_equal(ya, y):
        if np.array_equal(np.sort(ya), np.sort(y)) and np.array_equal(yb, y):
            raise Fail(f"{label}: y_a and y_b are swapped: y_a must be the labels of x (the part "
                       "outside the box), y_b those of the images pasted into the box.")
        raise Fail(f"{label}: y_a should be y itself, unchanged and in the same order.")
    if len(set(y.tolist())) == n:
        if sorted(yb.tolist()) != sorted(y.tolist()):
            raise Fail(f"{label}: y_b is not a reordering of y (some labels twice, others "
                       "never): pair the batch with a random permutation of itself.")
        perm = np.array([int(np.flatnonzero(y == v)[0]) for v in yb])
    else:
        perm = None
    boxes = []
    for i in range(n):
        diff = np.any(np.abs(xm[i] - x[i]) > 1e-6, axis=0)          # (H, W): pixels that changed
        box = _box_of(diff)
        if box is None:
            boxes.append(None)
            continue
        t, b, l, r = box
        if not diff[t:b, l:r].all():
            kept = ~diff
            if _box_of(kept) is not None and (lambda kb: (~kept[kb[0]:kb[1], kb[2]:kb[3]]).sum() == 0)(_box_of(kept)):
                raise Fail(f"{label}: in image {i} the pixels OUTSIDE a box changed and the box "
                           "kept the original: the roles are reversed. The box receives the "
                           "partner's pixels; everything outside it stays x.")
            raise Fail(f"{label}: the pixels of image {i} that changed do not form one "
                       "axis-aligned rectangle. Paste one box (a range of rows times a range of "
                       "columns) and leave every other pixel as it was.")
        region = xm[i][:, t:b, l:r]
        src = None
        for j in range(n):
            if j != i and np.all(np.abs(region - x[j][:, t:b, l:r]) <= 1e-6):
                src = j
                break
        if src is None:
            raise Fail(f"{label}: inside the box of image {i} the pixels are not those of another "
                       "image of the batch at the same place. Copy the box's pixels from the "
                       "partner image, at the same rows and columns.")
        if perm is not None and perm[i] != src:
            if perm[i] == i:
                raise Fail(f"{label}: image {i} received a box from image {src}, but y_b says its "
                           "partner is itself: the labels were not permuted like the images. "
                           "Use one permutation for the pixels and the labels.")
            raise Fail(f"{label}: image {i} received its box from image {src}, but y_b names "
                       f"image {int(perm[i])} as its partner. Use one permutation for the "
                       "pixels and the labels.")
        boxes.append(box)
    seen_boxes = [bx for bx in boxes if bx is not None]
    if perm is not None and not seen_boxes and np.any(perm != np.arange(n)) and lam < 1 - 1e-6:
        raise Fail(f"{label}: x_mixed equals x, although y_b pairs images with other images and "
                   f"lam = {lam:.4f} says a box covers part of each image: the box was pasted "
                   "from the image itself. Inside the box each image must receive the pixels "
                   "of its partner (the image the permutation pairs it with).")
    if len(set(seen_boxes)) > 1:
        raise Fail(f"{label}: the images got different boxes ({len(set(seen_boxes))} different "
                   "rectangles). CutMix draws ONE box per batch and pastes it at the same place "
                   "in every image.")
    if perm is not None:
        moved = [i for i in range(n) if perm[i] != i]
        if seen_boxes and any(boxes[i] is None for i in moved):
            raise Fail(f"{label}: some images paired with another image show no box while others "
                       "do: the same box goes into every image.")
        seen = bool(moved)
    else:
        seen = bool(seen_boxes)
    box = seen_boxes[0] if seen_boxes else None
    area = 0 if box is None else (box[1] - box[0]) * (box[3] - box[2])
    if seen:
        kept = 1 - area / (h * w)
        if abs(lam - kept) > 2e-6:
            hint = (f"{label}: lam = {lam:.6f}, but the box covers {area} of {h * w} pixels, so "
                    f"the fraction kept from x is {kept:.6f}.")
            if abs(lam - (1 - kept)) <= 2e-6:
                raise Fail(hint + " You returned the pasted fraction: lam is the share of x.")
            raise Fail(hint + " lam must be the exact kept fraction of the box you pasted, "
                       "computed after rounding and clipping it to the image, not the Beta "
                       "draw that set its size.")
    elif not 0 <= lam <= 1:
        raise Fail(f"{label}: lam = {lam:.4g} is outside [0, 1].")
    return lam, box, seen


# Ways a correct answer may round the box (for the reference distribution of the judged
# statistics): the official code (integer sides, integer centre, half-sides by //), continuous
# centres with rounded, floored or ceiled edges, exact edges, a box placed by its corners
# (ceil of the sides), pixel-centre centres with rounded sides.
CUT_VARIANTS = ("official", "round", "floor", "ceil", "corners", "exact", "pixel_centres")


def cut_boxes(r: np.ndarray, h: int, w: int, variant: str, rng) -> tuple:
    """``(top, bottom, left, right)`` arrays (half-open, clipped) of boxes for the draws ``r``
    under one way of rounding (``CUT_VARIANTS``), with uniform centres from ``rng``."""
    n, s = len(r), np.sqrt(np.clip(1 - r, 0, 1))
    if variant == "official":
        ch, cw = (h * s).astype(int), (w * s).astype(int)
        cy, cx = rng.integers(0, h, n), rng.integers(0, w, n)
        return (np.clip(cy - ch // 2, 0, h), np.clip(cy + ch // 2, 0, h),
                np.clip(cx - cw // 2, 0, w), np.clip(cx + cw // 2, 0, w))
    if variant in ("round", "floor", "ceil", "exact"):
        f = {"round": np.round, "floor": np.floor, "ceil": np.ceil, "exact": lambda v: v}[variant]
        cy, cx = rng.uniform(0, h, n), rng.uniform(0, w, n)
        return (np.clip(f(cy - s * h / 2), 0, h), np.clip(f(cy + s * h / 2), 0, h),
                np.clip(f(cx - s * w / 2), 0, w), np.clip(f(cx + s * w / 2), 0, w))
    if variant == "corners":
        ch, cw = np.ceil(s * h), np.ceil(s * w)
        cy, cx = rng.uniform(0, h, n), rng.uniform(0, w, n)
    elif variant == "pixel_centres":
        ch, cw = np.round(s * h), np.round(s * w)
        cy, cx = rng.integers(0, h, n) + 0.5, rng.integers(0, w, n) + 0.5
    else:
        raise ValueError(variant)
    t, l = np.round(cy - ch / 2), np.round(cx - cw / 2)
    return np.clip(t, 0, h), np.clip(t + ch, 0, h), np.clip(l, 0, w), np.clip(l + cw, 0, w)


def box_size(t, b, l, r, h: int, w: int) -> np.ndarray:
    """Per box, its side as a fraction of the image's, ``s_hat``: read on an axis where the box
    touches neither border (there it is sqrt(1 - r) up to rounding), else the larger clipped
    fraction (a lower bound). An empty box gives 0."""
    t, b, l, r = (np.asarray(v, dtype=np.float64) for v in (t, b, l, r))
    ev, eh = np.maximum(b - t, 0) / h, np.maximum(r - l, 0) / w
    inner_v, inner_h = (t > 0) & (b < h), (l > 0) & (r < w)
    return np.where(inner_v, ev, np.where(inner_h, eh, np.maximum(ev, eh)))


CUT_Z = 5.3              # two-sided normal tail 1.2e-7 per test


@functools.lru_cache(maxsize=16)
def cut_null(alpha: float, h: int, w: int, n: int = 100_000) -> dict:
    """The reference distribution of the judged statistics, by simulation (fixed seed): for
    each rounding variant the mean of ``s_hat`` and of ``(s_hat - c)**2`` (c: the mean of the
    variants' means) and their standard deviations. The accepted range of each statistic's
    expectation is the variants' range widened by half its width on each side and by three
    simulation standard errors."""
    rng = np.random.default_rng(6499)
    r = rng.beta(alpha, alpha, n)
    s_hats = [box_size(*cut_boxes(r, h, w, v, rng), h, w) for v in CUT_VARIANTS]
    c = float(np.mean([sh.mean() for sh in s_hats]))
    out = {"c": c}
    for name, f in (("mean", lambda v: v), ("spread", lambda v: (v - c) ** 2)):
        vals = [f(sh) for sh in s_hats]
        mus = [float(v.mean()) for v in vals]
        sd = max(float(v.std()) for v in vals)
        lo, hi = min(mus), max(mus)
        pad = (hi - lo) / 2 + 3 * sd / math.sqrt(n)
        out[name] = (lo - pad, hi + pad, sd)
    return out


def cut_size_test(s_hat: np.ndarray, alpha: float, h: int, w: int) -> str | None:
    """None when the box sizes ``s_hat`` (of the calls whose box can be read) look like those
    of r ~ Beta(alpha, alpha); else a hint. Two tests (mean of s_hat; mean of (s_hat - c)^2),
    each accepting within CUT_Z standard errors of the range :func:`cut_null` gives (normal
    approximation for a mean of ~1000 bounded values: 1.2e-7 each)."""
    n = len(s_hat)
    null = cut_null(float(alpha), int(h), int(w))
    what = f"over {n} calls with alpha = {alpha} on {h}x{w} images"
    c = null["c"]
    m, q = float(np.mean(s_hat)), float(np.mean((s_hat - c) ** 2))
    bad = []
    for name, v in (("mean", m), ("spread", q)):
        lo, hi, sd = null[name]
        margin = CUT_Z * sd / math.sqrt(n)
        if v < lo - margin:
            bad.append((name, "low"))
        elif v > hi + margin:
            bad.append((name, "high"))
    if not bad:
        return None
    size = (f"{what}: the boxes' sides were on average {m:.0%} of the image's (spread "
            f"{q:.4f}); for sides of sqrt(1 - r) times H and W with r ~ Beta(alpha, alpha), a "
            f"uniform centre and clipping, expect about {(null['mean'][0] + null['mean'][1]) / 2:.0%} "
            f"(spread {(null['spread'][0] + null['spread'][1]) / 2:.4f}).")
    names = dict(bad)
    if "spread" in names:
        size += (" The box sizes vary " + ("more" if names["spread"] == "high" else "less")
                 + " from call to call than they should: is r drawn from Beta(alpha, alpha) "
                 "(not uniform, both shape parameters alpha)?")
    elif "mean" in names:
        size += (" The boxes are " + ("too small" if names["mean"] == "low" else "too large")
                 + " on average.")
    return size + (" Check the Beta draw (both shape parameters alpha) and how the sides "
                   "follow from it: each side shrinks by the square root of (1 - r), so that the "
                   "area is about (1 - r) of the image.")


def _cut_geometry(boxes: list, h: int, w: int) -> str | None:
    """The boxes' proportions and how often they reach the border (see judge_cutmix)."""
    inner = [(t, b, l, r) for t, b, l, r in boxes if 0 < t and b < h and 0 < l and r < w]
    if len(inner) >= 10:
        ratio = np.array([((b - t) / h) / ((r - l) / w) for t, b, l, r in inner])
        med = float(np.median(ratio))
        if abs(math.log(med)) > math.log(1.3):
            return (f"boxes that lie inside the image have height/H about {med:.2f} times "
                    f"their width/W; the box should have the image's proportions (height and "
                    f"width each shrink by the same factor). Are the sides for H and W swapped?")
    # A box of sides (s H, s W) with a uniform centre reaches a border with probability about
    # 1 - (1 - s)**2. The observed sides underestimate s for a clipped box, so for a correct
    # answer the predicted share is at most the true one: a one-sided test, whatever the sizes.
    nz = [(t, b, l, r) for t, b, l, r in boxes if b > t and r > l]
    if len(nz) >= 20:
        touch = np.array([t <= 0 or b >= h or l <= 0 or r >= w for t, b, l, r in nz], dtype=float)
        s_obs = np.array([min(1.0, ((b - t) / h + (r - l) / w) / 2) for t, b, l, r in nz])
        pred = float(np.mean(1 - (1 - s_obs) ** 2))
        sd = math.sqrt(max(pred * (1 - pred), 0.01) / len(nz))
        if touch.mean() < pred - 5.5 * sd - 0.07:
            return (f"only {touch.mean():.0%} of the boxes reach the image's border; "
                    f"boxes of these sizes with a centre uniform over the image would reach it "
                    f"about {pred:.0%} of the time. Draw the centre uniformly over the whole "
                    "image and clip the box where it sticks out: restricting the centre so that "
                    "the box always fits biases where (and how large) the pasted region is.")
    return None


def _cut_fast(pix: np.ndarray, values: np.ndarray, y: np.ndarray, labels: np.ndarray,
              lams: np.ndarray, h: int, w: int):
    """Vectorised exact checks of many calls on the constant images: ``pix`` (K, N, H, W)
    uint8, ``labels`` (K, 2, N) the recorded y_a and y_b, ``lams`` (K,). Returns
    ``(ok, boxes, seen)``: ``ok[k]`` False where call k needs the detailed judge
    (:func:`_cut_call`) to say what is wrong."""
    K, n = pix.shape[:2]
    index = {int(v): i for i, v in enumerate(y)}
    perm = np.array([[index.get(int(v), -1) for v in row] for row in labels[:, 1]]).reshape(K, n)
    ok = np.all(labels[:, 0] == y[None, :], axis=1) & np.all(perm >= 0, axis=1)
    ok &= np.all(np.sort(perm, axis=1) == np.arange(n)[None, :], axis=1)
    perm = np.where(perm >= 0, perm, np.arange(n)[None, :])
    moved = perm != np.arange(n)[None, :]                            # (K, N)
    diff = pix != values.astype(np.uint8)[None, :, None, None]
    rows, cols = diff.any(axis=3), diff.any(axis=2)                 # (K, N, H), (K, N, W)
    has = rows.any(axis=2)
    t = np.argmax(rows, axis=2)
    b = h - np.argmax(rows[:, :, ::-1], axis=2)
    l = np.argmax(cols, axis=2)
    r = w - np.argmax(cols[:, :, ::-1], axis=2)
    area = np.where(has, (b - t) * (r - l), 0)
    src = values.astype(np.uint8)[perm]                              # (K, N) partner's value
    from_src = (pix == src[:, :, None, None]).sum(axis=(2, 3))
    ok &= np.all(np.where(moved, from_src == area, ~has), axis=1)   # the box, all partner's pixels
    ok &= np.all(diff.sum(axis=(2, 3)) == area, axis=1)             # nothing changed outside it
    seen = moved.any(axis=1)
    boxes = [None] * K
    for k in np.flatnonzero(ok & seen):
        m = moved[k]
        if not np.all(has[k][m] == has[k][m][0]):
            ok[k] = False
            continue
        if has[k][m][0]:
            bx = {(int(t[k, i]), int(b[k, i]), int(l[k, i]), int(r[k, i])) for i in np.flatnonzero(m)}
            if len(bx) != 1:
                ok[k] = False
                continue
            boxes[k] = bx.pop()
        a = 0 if boxes[k] is None else (boxes[k][1] - boxes[k][0]) * (boxes[k][3] - boxes[k][2])
        if abs(lams[k] - (1 - a / (h * w))) > 2e-6:
            ok[k] = False
    return ok, boxes, seen


def _stats_record(stats, x: np.ndarray):
    """The recorded statistics calls: ``(calls, compact, labels, lams, kinds, others, pix)``,
    shapes checked (a malformed or forged record fails)."""
    if not isinstance(stats, dict) or not {"pixels", "others", "arrays", "calls"} <= set(stats):
        raise Fail("the check record is incomplete; run the check cell again.")
    calls = int(unwrap(stats["calls"]))
    n = x.shape[0]
    if not 0 < calls <= 2 * CUT_CALLS:
        raise Fail("the check record is malformed; run the check cell again.")
    d = zlib.decompressobj()
    raw = d.decompress(base64.b64decode(str(stats["arrays"]), validate=True), 64 * calls + 1)
    if d.unconsumed_tail or len(raw) != calls * (2 * n + 2) + 8 * calls:
        raise Fail("the check record is malformed; run the check cell again.")
    small = np.frombuffer(raw[:calls * (2 * n + 2)], dtype=np.uint8)
    compact = small[:calls].astype(bool)
    labels = small[calls:calls * (2 * n + 1)].astype(np.int64).reshape(calls, 2, n)
    kinds = small[calls * (2 * n + 1):].astype(np.int64)
    lams = np.frombuffer(raw[calls * (2 * n + 2):], dtype="<f8").astype(np.float64)
    if not np.all(kinds < len(_LAM_KINDS)):
        raise Fail("the check record is malformed; run the check cell again.")
    others = {}
    for item in _unpack_blob(stats["others"]):
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise Fail("the check record is malformed; run the check cell again.")
        others[int(unwrap(item[0]))] = item[1]
    if set(others) != set(np.flatnonzero(~compact).tolist()):
        raise Fail("the check record is malformed; run the check cell again.")
    d = zlib.decompressobj()
    raw = d.decompress(base64.b64decode(str(stats["pixels"]), validate=True), MAX_PIXELS + 1)
    per = int(np.prod(x.shape))
    if d.unconsumed_tail or len(raw) != int(compact.sum()) * per:
        raise Fail("the check record is malformed; run the check cell again.")
    pix = np.frombuffer(raw, dtype=np.uint8).reshape(-1, *x.shape)
    return calls, compact, labels, lams, kinds, others, pix


def _entry_got(k, compact, labels, lams, kinds, others, pix, where) -> dict:
    """Call k as :func:`_cut_call` reads it (``{"out": ...}``)."""
    if not compact[k]:
        return {"out": others[k]}
    xm = Value(pix[where[k]].astype(np.float64), "torch", "float32", False)
    ya, yb = (Value(labels[k, j], "torch", "int64") for j in (0, 1))
    kind = _LAM_KINDS[int(kinds[k])]
    lam = (Value(float(lams[k]), "python", "float") if kind == "float"
           else Value(np.asarray(lams[k]), "torch", kind))
    return {"out": (xm, ya, yb, lam)}


def judge_cutmix(data, seed):
    """Exact checks on the fixed cases (dtype kept, float64 and uint8 included; a batch of one;
    lam the kept fraction; inputs unchanged, from the raw inputs after the call) and on every
    call of the statistics (one box from the partner, one permutation, lam exact); then the box
    sizes of ``CUT_CALLS`` calls per alpha by :func:`cut_size_test`, their proportions and how
    often they reach the border.

    False failure of a correct answer (whatever its rounding, see ``CUT_VARIANTS``): 2 size
    tests per alpha at 1.2e-7 (normal approximation), the border test (one-sided, 5.5 standard
    errors plus 0.07: below 1e-8) and the proportions (a median ratio off by 30%: far below
    1e-8), about 6e-7 in all. A confusion passes with probability below 1e-6 at every alpha of
    the ranges ([0.22, 0.3] and [3, 4]): r uniform, Beta(alpha, 1), Beta(2 alpha, 2 alpha),
    Beta(alpha / 2, alpha / 2), sides linear in (1 - r) (tests/test_lesson06.py computes the
    normal-approximation bounds and simulates records).
    """
    for (label, xc, yc, _, _), got in zip(_cut_cases(seed), data["cases"], strict=True):
        xn, yn = xc.numpy().astype(np.float64), yc.numpy()
        dtype = str(xc.dtype).removeprefix("torch.")
        lam, box, seen = _guarded(label, _cut_call, got, xn, yn, label, dtype, (xc.numpy(), yn))
        if len(yn) == 1:
            xm = as_array(got["out"][0])
            if not np.array_equal(xm, xn):
                raise Fail(f"{label}: a batch of one pairs the image with itself, so x_mixed "
                           "must equal x.")
    xt, yt = _cut_stats_input(seed)
    x0, y = xt.numpy(), yt.numpy()
    x = x0.astype(np.float64)
    h, w = x.shape[2:]
    values = x[:, 0, 0, 0]
    alphas = _cut_alphas(seed)
    st = data["stats"]
    calls, compact, labels, lams_rec, kinds, others, pix = _stats_record(st, x)
    K = len(alphas) * CUT_CALLS

    def label_of(k):
        return (f"call {k % CUT_CALLS + 1} of cutmix_batch(x, y, alpha, generator) with x of "
                f"shape {tuple(x.shape)} (every image a different constant) and y of shape "
                f"({len(y)},), alpha = {alphas[min(k // CUT_CALLS, 1)]}")

    if calls != K:
        last = others.get(calls - 1)
        if isinstance(last, Raised):
            raise _context(last, label_of(calls - 1))
        raise Fail("the check record is incomplete; run the check cell again.")
    where = np.cumsum(compact) - 1
    boxes, seen, lams = [None] * K, np.zeros(K, bool), lams_rec.copy()
    fast = np.flatnonzero(compact)
    slow = set(np.flatnonzero(~compact).tolist()) | {0}
    if fast.size:
        ok, fb, fs = _cut_fast(pix[where[fast], :, 0], values, y, labels[fast], lams_rec[fast], h, w)
        for j, k in enumerate(fast):
            boxes[k], seen[k] = fb[j], fs[j]
        slow |= set(fast[~ok].tolist())
    for k in sorted(slow):
        got = _entry_got(k, compact, labels, lams_rec, kinds, others, pix, where)
        if k == 0:
            got["inputs_after"] = st.get("inputs_after")
        lam, box, sn = _guarded(label_of(k), _cut_call, got, x, y, label_of(k), "float32",
                                (x0, y) if k == 0 else None)
        boxes[k], seen[k], lams[k] = box, sn, lam
    if not any(b is not None for b in boxes):
        moved = [k for k in range(K) if seen[k]]
        if not moved:
            raise Fail(f"x_mixed equalled x and y_b equalled y in all {K} calls: every "
                       "image was paired with itself (no permutation), so the box, if any, was "
                       "pasted from the image itself. Pair the batch with a random permutation "
                       "of itself and paste the partner's pixels.")
        raise Fail(f"x_mixed equalled x in all {K} calls: no box was pasted.")
    pairings = [tuple(labels[k, 1].tolist()) for k in range(K) if seen[k] and compact[k]]
    if pairings:
        top = max(set(pairings), key=pairings.count)
        if pairings.count(top) > 0.5 * len(pairings):        # a correct answer: about 1 in 23
            raise Fail(f"the same pairing (y_b = {list(top)}) was used in {pairings.count(top)} of "
                       f"{len(pairings)} calls. Draw a new random permutation in every call, not "
                       "a fixed one such as a flip or a roll of the batch.")
    for i, alpha in enumerate(alphas):
        ks = [k for k in range(i * CUT_CALLS, (i + 1) * CUT_CALLS) if seen[k]]
        lam_a = lams[ks]
        if len(ks) == 0 or np.ptp(lam_a) < 1e-9:
            raise Fail(f"the same lam ({lam_a[0] if len(ks) else 1.0:.4f}) in every call with alpha = "
                       f"{alpha}: draw a fresh r (and a fresh box) in every call; do not seed "
                       "inside the function.")
        bxs = [boxes[k] if boxes[k] is not None else (0, 0, 0, 0) for k in ks]
        hint = _cut_geometry(bxs, h, w)
        if hint:
            raise Fail(f"over {len(ks)} calls with alpha = {alpha} on {h}x{w} images: {hint}")
        arr = np.array(bxs, dtype=np.float64)
        hint = cut_size_test(box_size(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], h, w), alpha, h, w)
        if hint:
            raise Fail(hint)
    return None


exercise("ex6.4", "cutmix_batch", probe_cutmix, judge_cutmix)
