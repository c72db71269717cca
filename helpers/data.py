"""Datasets the course generates or ships, ready to use.

No download ever happens: the noisy sine, the 20-feature task and the two moons are
generated from a seed; the digits are the 8x8 images that scikit-learn ships.
Tensor datasets come back as a :class:`Split` whose tensors already live on the device.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

import numpy as np
import torch

from helpers.device import get_device


@dataclass
class Split:
    """Train / validation (/ test) tensors. ``x_*`` are float32, ``y_*`` long or float32."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: Optional[torch.Tensor] = None
    y_test: Optional[torch.Tensor] = None

    def to(self, device) -> "Split":
        """A copy with every tensor moved to ``device``."""
        moved = {f.name: (None if getattr(self, f.name) is None else getattr(self, f.name).to(device))
                 for f in fields(self)}
        return Split(**moved)

    def subset_train(self, n: int, seed: int = 0) -> "Split":
        """The same split with only ``n`` training examples (a seeded random subset)."""
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self.x_train), generator=g)[:n].to(self.x_train.device)
        return Split(self.x_train[idx], self.y_train[idx], self.x_val, self.y_val,
                     self.x_test, self.y_test)

    def __repr__(self) -> str:
        parts = [f"{f.name}={tuple(getattr(self, f.name).shape)}" for f in fields(self)
                 if getattr(self, f.name) is not None]
        return f"Split({', '.join(parts)})"


def _sine(x: np.ndarray) -> np.ndarray:
    return np.sin(2 * np.pi * x)


@dataclass
class Curve:
    """NumPy data for the polynomial demo: noisy samples of ``sin(2*pi*x)`` on [0, 1]."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    noise: float

    @staticmethod
    def truth(x: np.ndarray) -> np.ndarray:
        """The noiseless curve ``sin(2*pi*x)``."""
        return _sine(x)


def noisy_sine(n_train: int = 10, n_test: int = 200, noise: float = 0.25, seed: int = 0) -> Curve:
    """``y = sin(2*pi*x) + noise * N(0, 1)`` with ``x ~ U(0, 1)``, sorted; NumPy float64 ``(n,)``."""
    rng = np.random.default_rng(seed)
    x_train = np.sort(rng.uniform(0, 1, n_train))
    x_test = np.sort(rng.uniform(0, 1, n_test))
    y_train = _sine(x_train) + noise * rng.standard_normal(n_train)
    y_test = _sine(x_test) + noise * rng.standard_normal(n_test)
    return Curve(x_train, y_train, x_test, y_test, noise)


def twenty_features(n_train: int = 60, n_val: int = 400, n_features: int = 20, seed: int = 42,
                    device=None) -> Split:
    """The 20-feature task: ``x ~ N(0, I_20)``; the label is ``1[x_0 + x_1 > 0]``.

    Only the first two features carry information; the other 18 are noise a flexible
    model can memorise. ``x`` is ``(n, 20)`` float32, ``y`` is ``(n,)`` float32 in {0, 1}
    (use ``BCEWithLogitsLoss`` on a one-output model). Training and validation examples
    come from one seeded stream, so the first ``n`` training rows are the same for every
    ``n_train`` (growing the training set only adds examples).
    """
    device = device or get_device()
    rng = np.random.default_rng(seed)
    x_val = rng.standard_normal((n_val, n_features))
    x_train = rng.standard_normal((n_train, n_features))
    def label(x):
        return (x[:, 0] + x[:, 1] > 0).astype(np.float32)
    t = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)
    return Split(t(x_train), t(label(x_train)), t(x_val), t(label(x_val)))


def moons(n_train: int = 200, n_val: int = 500, noise: float = 0.25, seed: int = 0, device=None) -> Split:
    """Two interleaving half circles (scikit-learn's ``make_moons``); ``x`` ``(n, 2)``, ``y`` long."""
    from sklearn.datasets import make_moons

    device = device or get_device()
    x, y = make_moons(n_train + n_val, noise=noise, random_state=seed)
    x = torch.as_tensor(x, dtype=torch.float32, device=device)
    y = torch.as_tensor(y, dtype=torch.long, device=device)
    return Split(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def digits(n_train: Optional[int] = None, val_fraction: float = 0.2, test_fraction: float = 0.2,
           flat: bool = False, seed: int = 0, device=None) -> Split:
    """scikit-learn's 1797 real 8x8 digit images, pixel values scaled to [0, 1].

    A seeded shuffle splits them into test (``test_fraction``), validation
    (``val_fraction``) and train (the rest, or its first ``n_train``). ``x`` is
    ``(n, 1, 8, 8)`` float32, or ``(n, 64)`` with ``flat=True``; ``y`` is ``(n,)`` long.
    """
    from sklearn.datasets import load_digits

    device = device or get_device()
    d = load_digits()
    x = torch.as_tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.as_tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], y[perm]
    n_test = int(round(test_fraction * len(y)))
    n_val = int(round(val_fraction * len(y)))
    x_test, y_test = x[:n_test], y[:n_test]
    x_val, y_val = x[n_test:n_test + n_val], y[n_test:n_test + n_val]
    x_train, y_train = x[n_test + n_val:], y[n_test + n_val:]
    if n_train is not None:
        x_train, y_train = x_train[:n_train], y_train[:n_train]
    if flat:
        x_train, x_val, x_test = (a.reshape(len(a), -1) for a in (x_train, x_val, x_test))
    return Split(x_train, y_train, x_val, y_val, x_test, y_test).to(device)


# ---------------------------------------------------------------- lesson 06: augmentations
# Used by lesson 06's experiment. Their contracts differ on purpose from the lesson's exercises
# (the generator comes second, mixup returns soft targets): the learner writes those.

def random_flip(x: torch.Tensor, generator: Optional[torch.Generator], p: float = 0.5) -> torch.Tensor:
    """Mirror each image of ``x`` ``(N, C, H, W)`` left-right with probability ``p``."""
    coin = torch.rand(x.shape[0], 1, 1, 1, generator=generator, device=x.device)
    return torch.where(coin < p, x.flip(3), x)


def mixup_soft(x: torch.Tensor, y: torch.Tensor, alpha: float, num_classes: int,
               generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup with soft targets: ``(x_mixed, targets)``, targets ``(N, num_classes)`` rows that
    sum to 1 (both weights land on one class when the two labels agree)."""
    g = torch.distributions.Gamma(float(alpha), 1.0).sample((2,))     # Beta via two Gammas
    lam = float(g[0] / g.sum())
    order = torch.argsort(torch.rand(len(x), generator=generator, device=x.device))
    targets = torch.zeros(len(y), num_classes, device=x.device)
    targets.index_put_((torch.arange(len(y), device=x.device), y), torch.tensor(lam, device=x.device), accumulate=True)
    targets.index_put_((torch.arange(len(y), device=x.device), y[order]),
                       torch.tensor(1 - lam, device=x.device), accumulate=True)
    return torch.lerp(x[order], x, lam), targets


def mixup_batch_loss(alpha: float, num_classes: int):
    """A ``batch_loss(model, x, y, loss_fn)`` hook for :func:`helpers.training.train`: each
    mini-batch is mixed (:func:`mixup_soft`) and scored by cross-entropy on the soft targets."""
    import torch.nn.functional as F

    def batch_loss(model, x, y, loss_fn):
        xm, t = mixup_soft(x, y, alpha, num_classes)
        return F.cross_entropy(model(xm), t)
    return batch_loss


def cutmix_soft(x: torch.Tensor, y: torch.Tensor, alpha: float, num_classes: int,
                generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix with soft targets: ``(x_mixed, targets)`` for images ``(N, C, H, W)``.

    One ``r ~ Beta(alpha, alpha)`` and one pairing per batch; one box of sides about
    ``sqrt(1 - r)`` times ``H`` and ``W``, centred uniformly and clipped to the image, filled with
    the partner's pixels. ``targets`` ``(N, num_classes)`` put the fraction of pixels actually
    kept on ``y`` and the rest on the partner's label (rows sum to 1)."""
    n, _, h, w = x.shape
    g = torch.distributions.Gamma(float(alpha), 1.0).sample((2,))     # Beta via two Gammas
    r = float(g[0] / g.sum())
    order = torch.argsort(torch.rand(n, generator=generator, device=x.device))
    bh, bw = round(h * (1 - r) ** 0.5), round(w * (1 - r) ** 0.5)
    centre = torch.rand(2, generator=generator, device=x.device)
    cy, cx = int(centre[0] * h), int(centre[1] * w)
    rows = (torch.arange(h, device=x.device) >= cy - bh // 2) & (torch.arange(h, device=x.device) < cy - bh // 2 + bh)
    cols = (torch.arange(w, device=x.device) >= cx - bw // 2) & (torch.arange(w, device=x.device) < cx - bw // 2 + bw)
    inside = rows[:, None] & cols[None, :]                            # (H, W), clipped by construction
    kept = 1.0 - inside.sum().item() / (h * w)
    targets = torch.zeros(n, num_classes, device=x.device)
    idx = torch.arange(n, device=x.device)
    targets.index_put_((idx, y), torch.tensor(kept, device=x.device), accumulate=True)
    targets.index_put_((idx, y[order]), torch.tensor(1 - kept, device=x.device), accumulate=True)
    return torch.where(inside, x[order], x), targets


def cutmix_batch_loss(alpha: float, num_classes: int):
    """A ``batch_loss(model, x, y, loss_fn)`` hook for :func:`helpers.training.train`: each
    mini-batch is mixed by :func:`cutmix_soft` and scored by cross-entropy on the soft targets."""
    import torch.nn.functional as F

    def batch_loss(model, x, y, loss_fn):
        xm, t = cutmix_soft(x, y, alpha, num_classes)
        return F.cross_entropy(model(xm), t)
    return batch_loss
