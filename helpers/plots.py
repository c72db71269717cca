"""Plots used across the lessons. Every function titles and labels what it draws and
returns the matplotlib ``Axes`` so a notebook can add to it."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np


def _axes(ax, figsize=(6, 4)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def learning_curves(history, ax=None, metric: str = "loss", title: Optional[str] = None,
                    mark_gap: bool = True, mark_epochs: Optional[Mapping[str, int]] = None):
    """Train vs validation ``loss`` (or ``acc``) per epoch from a :class:`~helpers.training.History`.

    With ``mark_gap`` the final generalisation gap (val - train) is drawn as a bracket and
    written in the legend; ``mark_epochs`` draws labelled vertical lines, e.g.
    ``{"best": 42, "stopped": 57}``.
    """
    ax = _axes(ax)
    tr, va = getattr(history, f"train_{metric}"), getattr(history, f"val_{metric}")
    ax.plot(history.epoch, tr, label=f"train {metric}")
    ax.plot(history.epoch, va, label=f"validation {metric}")
    if mark_gap and len(history.epoch):
        e = history.epoch[-1]
        ax.annotate("", xy=(e, tr[-1]), xytext=(e, va[-1]),
                    arrowprops=dict(arrowstyle="<->", color="crimson"))
        ax.plot([], [], color="crimson", label=f"gap at the end: {va[-1] - tr[-1]:+.3f}")
    for name, ep in (mark_epochs or {}).items():
        ax.axvline(ep, ls="--", color="gray")
        ax.text(ep, ax.get_ylim()[1], f" {name} ({ep})", va="top", fontsize=8, color="gray")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(title or f"Learning curves ({metric})")
    ax.legend()
    return ax


def polynomial_fits(curve, fits: Mapping[str, np.ndarray], ax=None, title: Optional[str] = None,
                    ylim=(-2.0, 2.0)):
    """Polynomial fits over the noisy-sine data.

    ``fits`` maps a label to coefficients, lowest power first (``c[j]`` multiplies ``x**j``).
    Draws the training points, the test points, the true curve and each fit on [0, 1].
    """
    ax = _axes(ax)
    grid = np.linspace(0, 1, 400)
    ax.scatter(curve.x_test, curve.y_test, s=8, color="lightgray", label="test points")
    ax.plot(grid, curve.truth(grid), "k--", lw=1, label="true curve sin(2πx)")
    for label, c in fits.items():
        ax.plot(grid, np.polynomial.polynomial.polyval(grid, c), label=label)
    ax.scatter(curve.x_train, curve.y_train, color="black", zorder=3, label="training points")
    ax.set_ylim(*ylim)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title or "Polynomial fits")
    ax.legend(fontsize=8)
    return ax


def error_vs_complexity(complexity: Sequence, train_error: Sequence, test_error: Sequence,
                        ax=None, xlabel: str = "polynomial degree", ylabel: str = "mean squared error",
                        title: str = "Error vs model complexity", log: bool = True):
    """Training and test error against a complexity knob; the test minimum is marked."""
    ax = _axes(ax)
    ax.plot(complexity, train_error, "o-", label="training error")
    ax.plot(complexity, test_error, "s-", label="test error")
    best = int(np.argmin(test_error))
    ax.axvline(complexity[best], ls=":", color="gray")
    ax.text(complexity[best], ax.get_ylim()[1] if not log else max(test_error),
            f" lowest test error: {complexity[best]}", va="top", fontsize=8, color="gray")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    return ax


def mean_and_spread(x: Sequence, runs: np.ndarray, label: str, ax=None):
    """Mean over runs (rows of ``runs``, shape ``(R, len(x))``) as a line and ±1 sample standard
    deviation (ddof=1, the course's one rule for spreads over seeds) as a band; one run: no band."""
    ax = _axes(ax)
    runs = np.asarray(runs, dtype=float)
    mean = runs.mean(axis=0)
    std = runs.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros_like(mean)
    line, = ax.plot(x, mean, label=f"{label} (mean of {len(runs)})")
    ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    return ax


# ---------------------------------------------------------------- lesson 02 (weight decay)

def weight_bars(weights: Mapping[str, np.ndarray], ax=None, highlight: Sequence[int] = (0, 1),
                title: str = "Weights per input feature", ylabel: str = "weight"):
    """Grouped bar chart of weight vectors, one group of bars per input feature.

    ``weights`` maps a label to a ``(d,)`` array (all the same length ``d``); feature indices
    in ``highlight`` (the informative ones) get a shaded background. Each label's legend entry
    also counts its exactly-zero weights.
    """
    ax = _axes(ax, figsize=(9, 3.6))
    items = [(k, np.asarray(v, dtype=float).reshape(-1)) for k, v in weights.items()]
    d = len(items[0][1])
    width = 0.8 / max(len(items), 1)
    idx = np.arange(d)
    for j in highlight:
        ax.axvspan(j - 0.45, j + 0.45, color="gold", alpha=0.25, lw=0)
    for i, (label, w) in enumerate(items):
        ax.bar(idx - 0.4 + width * (i + 0.5), w, width,
               label=f"{label} ({int(np.sum(w == 0))} of {d} exactly 0)")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(idx)
    ax.set_xlabel("input feature (shaded: the informative ones)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


def coefficient_paths(lambdas: Sequence[float], coefs: np.ndarray, ax=None,
                      title: str = "Ridge coefficients shrink as λ grows",
                      ylabel: str = "coefficient value", symlog: bool = True):
    """One line per coefficient against ``lambdas`` (log x axis).

    ``coefs`` is ``(len(lambdas), n_coefficients)``; line ``j`` is labelled ``c_j``. With
    ``symlog`` the y axis is symmetric-log, so huge and small coefficients both show.
    """
    ax = _axes(ax)
    coefs = np.asarray(coefs, dtype=float)
    for j in range(coefs.shape[1]):
        ax.plot(lambdas, coefs[:, j], label=f"c{j}")
    ax.set_xscale("log")
    if symlog:
        ax.set_yscale("symlog", linthresh=1.0)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlabel("λ (log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    return ax


# ---------------------------------------------------------------- lesson 06: images and Beta densities

def image_grid(images, titles: Optional[Sequence[str]] = None, ncols: int = 8,
               title: Optional[str] = None, row_labels: Optional[Sequence[str]] = None,
               size: float = 1.1, vmin: float = 0.0, vmax: float = 1.0, cmap: str = "gray_r"):
    """Show ``images`` in a grid, ``ncols`` per row; returns the 2-D array of Axes.

    ``images``: a tensor or array of shape ``(N, 1, H, W)``, ``(N, H, W)`` or ``(N, 3, H, W)``
    (channels first, values in ``[vmin, vmax]``; one channel is drawn with ``cmap``).
    ``titles``: one short title per image; ``row_labels``: one label per row, written as the
    y-axis label of the row's first image; ``title``: the figure's title.
    """
    try:
        import torch
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    a = np.asarray(images, dtype=float)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    elif a.ndim == 4:
        a = np.clip(a.transpose(0, 2, 3, 1), vmin, vmax)
    n = len(a)
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * 1.15),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= n:
            ax.axis("off")
            continue
        ax.imshow(a[k], cmap=cmap if a[k].ndim == 2 else None, vmin=vmin, vmax=vmax)
        if titles is not None:
            ax.set_title(titles[k], fontsize=8)
    for r, lab in enumerate(row_labels or []):
        axes[r, 0].set_ylabel(lab, fontsize=8, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return axes


def beta_pdf(x, a: float, b: float) -> np.ndarray:
    """Density of Beta(a, b): ``x**(a-1) * (1-x)**(b-1) / B(a, b)`` for ``x`` in (0, 1), elementwise.

    ``B(a, b) = Gamma(a) Gamma(b) / Gamma(a + b)``, computed with ``math.lgamma``.
    """
    import math

    x = np.asarray(x, dtype=float)
    log_b = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    with np.errstate(divide="ignore"):
        return np.exp((a - 1) * np.log(x) + (b - 1) * np.log1p(-x) - log_b)


def beta_densities(alphas: Sequence[float], ax=None, samples: Optional[Mapping[float, np.ndarray]] = None,
                   title: str = "Beta(α, α): where the mixing weight λ falls", ymax: float = 4.0):
    """The density of Beta(alpha, alpha) on (0, 1) for each ``alpha`` (one curve each).

    ``samples`` (optional) maps an alpha to draws of lam, drawn as a faint histogram under its
    curve. The y-axis is cut at ``ymax`` (densities with alpha < 1 are infinite at 0 and 1).
    """
    ax = _axes(ax)
    grid = np.linspace(0.001, 0.999, 500)
    for a in alphas:
        line, = ax.plot(grid, beta_pdf(grid, a, a), label=f"α = {a:g}")
        if samples is not None and a in samples:
            ax.hist(np.asarray(samples[a]), bins=40, range=(0, 1), density=True, alpha=0.2,
                    color=line.get_color())
    ax.set_ylim(0, ymax)
    ax.set_xlim(0, 1)
    ax.set_xlabel("λ (weight of the first example)")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    return ax


# ---------------------------------------------------------------- lesson 05: calibration

def _as_numpy_05(a) -> np.ndarray:
    """A tensor (any device) or array-like as a NumPy array."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def calibration_bins(probs, y, n_bins: int = 15) -> dict:
    """Per-bin statistics behind a reliability diagram and the ECE (Guo et al. 2017).

    ``probs``: ``(N, K)`` class probabilities, ``y``: ``(N,)`` integer labels (tensors on any
    device, or arrays). Confidence ``c_i = max_k probs[i, k]``; correct ``a_i = 1`` when
    ``argmax_k probs[i, k] == y_i``. Bin ``b`` (0-based) holds ``b/n_bins < c <= (b+1)/n_bins``
    (a confidence of exactly 0 goes to bin 0), so every sample lands in exactly one bin.

    Returns a dict: ``edges`` ``(n_bins+1,)``; ``count``, ``accuracy``, ``confidence``
    ``(n_bins,)`` (mean accuracy / confidence per bin, NaN for an empty bin); and
    ``ece = sum_b (count_b / N) * |accuracy_b - confidence_b|``.
    """
    p = _as_numpy_05(probs).astype(np.float64)
    yy = _as_numpy_05(y).astype(np.int64)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == yy).astype(np.float64)
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(idx, weights=correct, minlength=n_bins) / count
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / count
    full = count > 0
    ece = float(np.sum(count[full] / len(conf) * np.abs(acc[full] - mean_conf[full])))
    return {"edges": np.linspace(0.0, 1.0, n_bins + 1), "count": count, "accuracy": acc,
            "confidence": mean_conf, "ece": ece}


def reliability_diagram(probs, y, n_bins: int = 15, ax=None, title: Optional[str] = None,
                        label: str = "model", color: Optional[str] = None):
    """Reliability diagram: accuracy per confidence bin against the diagonal ``accuracy = confidence``.

    ``probs`` ``(N, K)``, ``y`` ``(N,)`` as in :func:`calibration_bins`. Each non-empty bin is a
    bar of height ``accuracy_b``; the hatched red part spans the gap to ``confidence_b`` (bars
    below the diagonal: overconfident, above: underconfident). The legend gives the ECE.
    Returns the Axes.
    """
    ax = _axes(ax, figsize=(4.5, 4.5))
    s = calibration_bins(probs, y, n_bins)
    width = 1.0 / n_bins
    left = s["edges"][:-1]
    full = s["count"] > 0
    ax.bar(left[full], s["accuracy"][full], width=width, align="edge", color=color or "tab:blue",
           edgecolor="black", alpha=0.8, label=f"{label}: accuracy per bin")
    lo = np.minimum(s["accuracy"], s["confidence"])[full]
    hi = np.maximum(s["accuracy"], s["confidence"])[full]
    ax.bar(left[full], hi - lo, bottom=lo, width=width, align="edge", color="none",
           edgecolor="crimson", hatch="//", label="gap to mean confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.plot([], [], " ", label=f"ECE ({n_bins} bins) = {s['ece']:.4f}, N = {int(s['count'].sum())}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("accuracy in the bin")
    ax.set_title(title or f"Reliability diagram ({label})")
    ax.legend(loc="upper left", fontsize=8)
    return ax


def reliability_with_counts(probs, y, n_bins: int = 15, axes=None, title: Optional[str] = None,
                            label: str = "model", color: Optional[str] = None):
    """A reliability diagram with the number of predictions per bin underneath (as Guo et al. 2017 draw it).

    Top: :func:`reliability_diagram`. Bottom: a histogram of the confidences in the same
    ``n_bins`` bins, counts on a log scale, with dashed lines at the mean confidence and the
    accuracy, so a reader sees which bars rest on a handful of predictions. ``axes``: a pair
    ``(top, bottom)`` or None (a new figure). Returns the pair of Axes.
    """
    if axes is None:
        fig, axes = plt.subplots(2, 1, figsize=(4.5, 6.2), sharex=True,
                                 gridspec_kw={"height_ratios": [3, 1.3]})
    top, bottom = axes
    reliability_diagram(probs, y, n_bins, ax=top, title=title, label=label, color=color)
    s = calibration_bins(probs, y, n_bins)
    p = _as_numpy_05(probs).astype(np.float64)
    conf = p.max(axis=1)
    acc = float((p.argmax(axis=1) == _as_numpy_05(y)).mean())
    width = 1.0 / n_bins
    bottom.bar(s["edges"][:-1], s["count"], width=width, align="edge", color=color or "tab:blue",
               edgecolor="black", alpha=0.8)
    for b, c in zip(s["edges"][:-1], s["count"]):
        if c > 0:
            bottom.text(b + width / 2, c, f"{int(c)}", ha="center", va="bottom", fontsize=6)
    bottom.axvline(conf.mean(), color="crimson", ls="--", lw=1, label=f"mean confidence {conf.mean():.3f}")
    bottom.axvline(acc, color="black", ls=":", lw=1, label=f"accuracy {acc:.3f}")
    bottom.set_yscale("log")
    bottom.set_ylim(0.5, max(2.0, s["count"].max() * 4))
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence (max probability)")
    bottom.set_ylabel("predictions")
    bottom.legend(loc="upper left", fontsize=7)
    top.set_xlabel("")
    return top, bottom


def calibrate_temperature(logits, y) -> dict:
    """Temperature scaling (Guo et al. 2017) as the lesson body uses it, hidden from the learner.

    ``logits`` ``(N, K)``, ``y`` ``(N,)``. Returns ``{"T": ..., "nll_before": ..., "nll_after":
    ...}``: the ``T > 0`` that minimises the mean NLL of ``softmax(logits / T)`` (found in
    float64 by bisection on the derivative of that NLL in ``1/T``, where it is convex) and the
    NLL at ``T = 1`` and at ``T``. Exercise 5.4 asks the learner to write the fit; its check
    refuses this helper.
    """
    z = _as_numpy_05(logits).astype(np.float64)
    yy = _as_numpy_05(y).astype(np.int64)
    rows = np.arange(len(yy))

    def nll(beta):
        s = beta * z
        m = s.max(axis=1)
        return float(np.mean(m + np.log(np.exp(s - m[:, None]).sum(axis=1)) - s[rows, yy]))

    def slope(beta):
        s = beta * z
        q = np.exp(s - s.max(axis=1, keepdims=True))
        q /= q.sum(axis=1, keepdims=True)
        return float(np.mean((q * z).sum(axis=1) - z[rows, yy]))

    lo, hi = np.log(1e-4), np.log(1e4)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if slope(np.exp(mid)) < 0 else (lo, mid)
    beta = float(np.exp(0.5 * (lo + hi)))
    return {"T": 1.0 / beta, "nll_before": nll(1.0), "nll_after": nll(beta)}
