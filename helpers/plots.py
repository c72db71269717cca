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
    """Mean over runs (rows of ``runs``) as a line and ±1 standard deviation as a band."""
    ax = _axes(ax)
    runs = np.asarray(runs, dtype=float)
    mean, std = runs.mean(axis=0), runs.std(axis=0)
    line, = ax.plot(x, mean, label=f"{label} (mean of {len(runs)})")
    ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    return ax
