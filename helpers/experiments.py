"""Experiments that more than one lesson tells.

:func:`sixty_sample_experiment` is the 60-sample dropout experiment of a popular tutorial page
(a 20-256-256-1 MLP on 60 examples of the 20-feature task, Adam with learning rate 5e-4, full
batch, 250 epochs, dropout 0.4). Lessons 01 and 03 both run it with the same call,
``sixty_sample_experiment(seeds=range(20), p=0.4)`` (the defaults otherwise), so both print the
same numbers: lesson 01 to show how little one seed says, lesson 03 to read dropout's effect.
Every seed draws its own data *and* its own initialisation; the runs with and without dropout
of one seed share both (a paired comparison).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from helpers import data as _data
from helpers import models as _models
from helpers.training import train_many


@dataclass
class SixtySampleResult:
    """Per seed (same order as ``seeds``): final validation accuracy without and with dropout,
    and the final training accuracy without dropout."""

    seeds: list
    val_acc_plain: np.ndarray
    val_acc_dropout: np.ndarray
    train_acc_plain: np.ndarray

    @property
    def difference(self) -> np.ndarray:
        """Dropout minus no dropout, per seed (paired: same data, same initialisation)."""
        return self.val_acc_dropout - self.val_acc_plain

    def counts(self) -> tuple[int, int, int]:
        """``(higher, lower, equal)``: in how many seeds dropout's validation accuracy was higher
        than, lower than or exactly equal to (a tie: the same number of the 400 validation
        examples right) the accuracy without dropout."""
        diff = self.difference
        return int((diff > 0).sum()), int((diff < 0).sum()), int((diff == 0).sum())

    def summary(self) -> str:
        """Mean ± sd (ddof=1) of both, the paired difference, and in how many seeds dropout was
        higher, lower, or tied."""
        p, d, diff = self.val_acc_plain, self.val_acc_dropout, self.difference
        n = len(self.seeds)
        sd = (lambda a: a.std(ddof=1)) if n > 1 else (lambda a: float("nan"))
        higher, lower, equal = self.counts()
        return (f"{n} seeds (data and initialisation vary): validation accuracy without dropout "
                f"{p.mean():.3f} ± {sd(p):.3f}, with dropout {d.mean():.3f} ± {sd(d):.3f}; "
                f"dropout minus none {diff.mean():+.3f} ± {sd(diff):.3f}; dropout higher in "
                f"{higher} of {n} seeds, lower in {lower}, tied in {equal}")


def fast_adam(lr: float):
    """``optimizer`` argument for :func:`train_many`: Adam with ``fused=True`` where torch has it
    (CPU and CUDA; about half the time of the default for many stacked models, the same
    update), plain Adam elsewhere."""
    def make(params):
        params = list(params)
        try:
            return torch.optim.Adam(params, lr=lr, fused=True)
        except (RuntimeError, TypeError, ValueError):
            return torch.optim.Adam(params, lr=lr)
    return make


def sixty_sample_experiment(seeds: Sequence[int] = range(20), *, p: float = 0.4,
                            epochs: int = 250, lr: float = 5e-4, n_train: int = 60,
                            n_val: int = 400, data_seed=None, optimizer=None) -> SixtySampleResult:
    """Train the tutorial's MLP without and with dropout ``p`` for every seed; return the accuracies.

    The one place this experiment is defined: lessons 01 and 03 call it the same way,
    ``sixty_sample_experiment(seeds=range(20), p=0.4)``. The defaults are lesson 01's setting:
    20 seeds, dropout ``p = 0.4`` after each hidden layer, Adam with learning rate ``lr = 5e-4``
    (``optimizer=None``; another ``train_many`` optimizer factory, such as
    ``fast_adam(1e-3)``, replaces it and ``lr`` is then ignored), full batch, ``epochs = 250``,
    60 training and 400 validation examples. Change an argument only together with the prose of
    both lessons.

    Seed ``s`` draws the task with ``twenty_features(n_train, n_val, seed=s)`` (or, when
    ``data_seed`` is given, every seed uses that one data set and only the initialisation
    varies) and initialises both networks with ``torch.manual_seed(s)``. All models of one
    setting train together (:func:`helpers.training.train_many`), so 20 seeds cost about as
    much as a few single runs. The accuracies are measured once, after the last epoch, in eval
    mode (dropout off).
    """
    seeds = list(seeds)
    splits = [_data.twenty_features(n_train=n_train, n_val=n_val,
                                    seed=s if data_seed is None else data_seed) for s in seeds]
    results = {}
    for rate in (0.0, p):
        def make(s, rate=rate):
            torch.manual_seed(s)
            return _models.mlp(20, hidden=(256, 256), out_features=1, dropout=rate)
        _, hists = train_many(make, splits, seeds, epochs=epochs, optimizer=optimizer or fast_adam(lr),
                              progress=False, eval_every=epochs)
        results[rate] = (np.array([h.last("val_acc") for h in hists]),
                         np.array([h.last("train_acc") for h in hists]))
    return SixtySampleResult(seeds, results[0.0][0], results[p][0], results[0.0][1])


@dataclass
class BiasVarianceResult:
    """Per degree (same order as ``degrees``): the estimated bias² and variance of the fitted
    polynomials on the evaluation grid (each averaged over the grid), and the test MSE the
    fits measured on fresh noisy points. ``noise`` is the noise standard deviation, ``n_sets``
    the number of independent training sets per degree.

    ``bias2_se``, ``variance_se`` and ``measured_se`` are their Monte-Carlo standard errors over
    the ``n_sets`` training sets: for bias² and variance the jackknife (recompute the estimate
    ``n_sets`` times, each time leaving one training set out; ``se = sqrt((R - 1) / R *
    sum((theta_(-r) - mean)**2))``), for the measured MSE, a mean over the training sets, the sd
    of the per-set MSEs (ddof=1) over ``sqrt(n_sets)``."""

    degrees: list
    bias2: np.ndarray
    variance: np.ndarray
    measured: np.ndarray
    noise: float
    n_sets: int
    bias2_se: np.ndarray | None = None
    variance_se: np.ndarray | None = None
    measured_se: np.ndarray | None = None

    @property
    def predicted(self) -> np.ndarray:
        """bias² + variance + noise², what the decomposition says the test MSE should be."""
        return self.bias2 + self.variance + self.noise ** 2


def bias_variance_experiment(degrees: Sequence[int], *, n_sets: int = 200, n_points: int = 25,
                             noise: float = 0.25, n_grid: int = 50, seed: int = 7
                             ) -> BiasVarianceResult:
    """Lesson 01's bias-variance measurement on the noisy sine ``sin(2 pi x)``, x in [0, 1].

    For each degree, ``n_sets`` independent training sets of ``n_points`` points (noise
    standard deviation ``noise``) are drawn and fitted by least squares; the fits are evaluated
    on ``n_grid`` points of [0.05, 0.95], where bias² and variance are estimated (bias²
    corrected for the noise of the average of the fits, so it may come out slightly below 0)
    and each fit's MSE on fresh noisy targets at the grid is measured. One generator,
    ``numpy.random.default_rng(seed)``, draws everything in order. Every estimate comes with its
    Monte-Carlo standard error over the training sets (see :class:`BiasVarianceResult`).
    """
    from helpers.widgets import ridge_polynomial      # lazy: widgets imports plotting

    degrees = list(degrees)
    rng = np.random.default_rng(seed)
    grid = np.linspace(0.05, 0.95, n_grid)
    truth = np.sin(2 * np.pi * grid)
    bias2, variance, measured = [], [], []
    bias2_se, variance_se, measured_se = [], [], []
    for d in degrees:
        preds = np.empty((n_sets, n_grid))
        errors = np.empty(n_sets)
        for r in range(n_sets):
            x = np.sort(rng.uniform(0, 1, n_points))
            y = np.sin(2 * np.pi * x) + noise * rng.standard_normal(n_points)
            preds[r] = np.polynomial.polynomial.polyval(grid, ridge_polynomial(x, y, d, lam=0.0))
            fresh = truth + noise * rng.standard_normal(n_grid)
            errors[r] = np.mean((preds[r] - fresh) ** 2)
        spread = np.sum((preds - np.mean(preds, axis=0)) ** 2, axis=0) / (n_sets - 1)
        distance = np.mean((np.mean(preds, axis=0) - truth) ** 2)
        variance.append(float(np.mean(spread)))
        bias2.append(float(distance - variance[-1] / n_sets))
        measured.append(float(np.mean(errors)))
        b_se, v_se = _jackknife_bias_variance_se(preds, truth)
        bias2_se.append(b_se)
        variance_se.append(v_se)
        measured_se.append(float(np.std(errors, ddof=1) / np.sqrt(n_sets)))
    return BiasVarianceResult(degrees, np.array(bias2), np.array(variance), np.array(measured),
                              noise, n_sets, np.array(bias2_se), np.array(variance_se),
                              np.array(measured_se))


def _jackknife_bias_variance_se(preds: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Jackknife standard errors ``(se of bias², se of variance)`` of the corrected bias² and
    the variance estimated from ``preds`` (``(R, n)``, ``R >= 3``), leaving out one training
    set at a time; the leave-one-out means and ddof=1 variances are computed in closed form."""
    R = preds.shape[0]
    dev = preds - preds.mean(axis=0)
    total = np.sum(dev ** 2, axis=0)
    k = R - 1                                              # sets left in each jackknife sample
    mean_loo = preds.mean(axis=0) - dev / k                # (R, n)
    var_loo = (total - dev ** 2 * (1 + 1 / k)) / (k - 1)   # (R, n), ddof=1 over the k sets
    variance_loo = var_loo.mean(axis=1)
    bias2_loo = np.mean((mean_loo - truth) ** 2, axis=1) - variance_loo / k

    def se(theta):
        return float(np.sqrt((R - 1) / R * np.sum((theta - theta.mean()) ** 2)))
    return se(bias2_loo), se(variance_loo)
