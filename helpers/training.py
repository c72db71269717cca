"""A small training loop over whole tensors, with hooks for the regularizers of the course.

The datasets of the course fit in memory many times over, so batches are slices of
tensors that already live on the device: no ``DataLoader``, no worker processes, no
host-to-device copies inside the loop. Per epoch the loop records the training and
validation loss and accuracy, measured in eval mode on the full sets (so dropout and
batch norm do not blur the learning curves).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from helpers.data import Split

Callback = Callable[[int, "History", nn.Module], Optional[bool]]


@dataclass
class History:
    """Per-epoch records of a run. ``epoch`` counts from 1; accuracies are None for regression."""

    epoch: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    stopped_epoch: Optional[int] = None

    def best_epoch(self, key: str = "val_loss") -> int:
        """The epoch (1-based) with the lowest ``val_loss`` (or the highest accuracy)."""
        values = getattr(self, key)
        pick = max if "acc" in key else min
        return self.epoch[values.index(pick(values))]

    def last(self, key: str):
        """The final recorded value of ``key``."""
        return getattr(self, key)[-1]

    def __len__(self) -> int:
        return len(self.epoch)


def default_loss(y: torch.Tensor) -> Callable:
    """Cross-entropy for integer labels, binary cross-entropy on logits for float 0/1 labels."""
    if y.dtype == torch.long:
        return F.cross_entropy
    return lambda logits, t: F.binary_cross_entropy_with_logits(logits.squeeze(-1), t)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of correct predictions: argmax for ``(N, K)`` logits, ``logit > 0`` for ``(N, 1)``."""
    if y.dtype == torch.long:
        return (logits.argmax(dim=1) == y).float().mean().item()
    return ((logits.squeeze(-1) > 0).float() == y).float().mean().item()


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable,
             classification: bool = True) -> tuple[float, Optional[float]]:
    """``(loss, accuracy)`` of ``model`` on ``(x, y)`` in eval mode; the model's mode is restored."""
    was_training = model.training
    model.eval()
    out = model(x)
    loss = loss_fn(out, y).item()
    acc = accuracy(out, y) if classification else None
    model.train(was_training)
    return loss, acc


def _make(obj, *args):
    """An optimizer/scheduler instance, or a factory called with ``args``."""
    return obj(*args) if callable(obj) and not hasattr(obj, "step") else obj


def train(model: nn.Module, data: Split, epochs: int = 100, *, lr: float = 1e-3,
          optimizer=None, batch_size: Optional[int] = None, loss_fn: Optional[Callable] = None,
          regularizer: Optional[Callable[[nn.Module], torch.Tensor]] = None,
          batch_loss: Optional[Callable] = None,
          augment: Optional[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = None,
          scheduler=None, scheduler_per_batch: bool = False,
          callbacks: Iterable[Callback] = (), seed: int = 0, progress: bool = True,
          desc: str = "training", classification: Optional[bool] = None) -> History:
    """Train ``model`` on ``data`` and return its :class:`History`.

    One step on a batch ``(x, y)`` minimises ``loss = loss_fn(model(x), y) + regularizer(model)``
    (``batch_loss(model, x, y, loss_fn)`` replaces the first term, e.g. for mixup).

    - ``optimizer``: an optimizer, or a factory ``params -> optimizer``; default ``Adam(lr)``.
    - ``batch_size``: None trains full batch; otherwise a seeded reshuffle each epoch.
    - ``augment(x, generator) -> x`` transforms each training batch.
    - ``scheduler``: an LR scheduler or a factory ``optimizer -> scheduler``, stepped once
      per epoch (or per batch with ``scheduler_per_batch=True``).
    - ``callbacks``: called as ``cb(epoch, history, model)`` after each epoch's records;
      a callback that returns True stops training (``history.stopped_epoch`` records it).
    """
    x, y = data.x_train, data.y_train
    model.to(x.device)
    loss_fn = loss_fn or default_loss(y)
    if classification is None:
        classification = y.dtype == torch.long or bool(((y == 0) | (y == 1)).all())
    opt = _make(optimizer, model.parameters()) if optimizer is not None else \
        torch.optim.Adam(model.parameters(), lr=lr)
    sched = _make(scheduler, opt) if scheduler is not None else None
    gen = torch.Generator(device=x.device).manual_seed(seed)
    aug_gen = torch.Generator(device=x.device).manual_seed(seed + 1)
    n = len(x)
    bs = n if batch_size is None else min(batch_size, n)
    hist = History()
    bar = range(1, epochs + 1)
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(bar, desc=desc, leave=False, mininterval=0.5)
    model.train()
    for epoch in bar:
        order = torch.randperm(n, device=x.device, generator=gen) if bs < n else None
        for start in range(0, n, bs):
            if order is None:
                xb, yb = x, y
            else:
                idx = order[start:start + bs]
                xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment(xb, aug_gen)
            loss = batch_loss(model, xb, yb, loss_fn) if batch_loss else loss_fn(model(xb), yb)
            if regularizer is not None:
                loss = loss + regularizer(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None and scheduler_per_batch:
                sched.step()
        hist.lr.append(opt.param_groups[0]["lr"])
        if sched is not None and not scheduler_per_batch:
            sched.step()
        tl, ta = evaluate(model, x, y, loss_fn, classification)
        vl, va = evaluate(model, data.x_val, data.y_val, loss_fn, classification)
        hist.epoch.append(epoch)
        hist.train_loss.append(tl)
        hist.val_loss.append(vl)
        hist.train_acc.append(ta)
        hist.val_acc.append(va)
        stop = False
        for cb in callbacks:
            stop = bool(cb(epoch, hist, model)) or stop
        if progress and epoch % 10 == 0:
            bar.set_postfix(train=f"{tl:.3f}", val=f"{vl:.3f}", refresh=False)
        if stop:
            hist.stopped_epoch = epoch
            break
    if progress:
        bar.close()
    return hist
