"""A small training loop over whole tensors, with hooks for the regularizers of the course.

The datasets of the course fit in memory many times over, so batches are slices of
tensors that already live on the device: no ``DataLoader``, no worker processes, no
host-to-device copies inside the loop. Per epoch the loop records the training and
validation loss and accuracy, measured in eval mode on the full sets (so dropout and
batch norm do not blur the learning curves).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

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


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.ELU, nn.Identity)


def _stacked_layers(model: nn.Module):
    """``[(name, layer)]`` when ``model`` is a Sequential of Linear, Dropout and element-wise
    activations (then S stacked copies run as batched matrix products), else None."""
    if not isinstance(model, nn.Sequential):
        return None
    layers = list(model.named_children())
    ok = all(isinstance(m, (nn.Linear, nn.Dropout) + _ELEMENTWISE) for _, m in layers)
    return layers if ok else None


def train_many(make_model: Callable[[int], nn.Module], data, seeds: Sequence[int],
               epochs: int = 100, *, lr: float = 1e-3, optimizer=None,
               batch_size: Optional[int] = None, loss_fn: Optional[Callable] = None,
               regularizer: Optional[Callable[[dict], torch.Tensor]] = None,
               progress: bool = True, desc: str = "training seeds", eval_every: int = 1,
               classification: Optional[bool] = None) -> tuple[list[nn.Module], list[History]]:
    """Train one model per seed *together*; returns ``(models, histories)``, one of each per seed.

    ``make_model(seed)`` builds (and seeds) the model of one seed; ``data`` is one
    :class:`~helpers.data.Split` shared by every seed (paired seeds: only the initialisation,
    the dropout masks and the batch order differ) or a list of splits, one per seed, with
    equal sizes (the data varies too). The models' parameters are stacked along a new first
    dimension of size ``S = len(seeds)`` (``torch.func.stack_module_state``), and all ``S``
    forward passes run as one batched pass: ``torch.bmm`` for an ``nn.Sequential`` of Linear,
    Dropout and activations (``(S, n, in) @ (S, in, out)``), ``torch.func.vmap`` over
    ``functional_call`` for any other model. Dropout draws independent masks per model.

    Each model minimises its own ``loss_fn(model(x), y)``; the step uses the sum over models,
    whose gradient with respect to one model's parameters is that model's own gradient. The
    optimizer (``optimizer(list_of_stacked_params)``, default ``Adam(lr)``) must act element by
    element (SGD, Adam, AdamW, ... with or without weight decay), so that each model gets
    exactly the update it would get alone. Losses and accuracies are measured every
    ``eval_every`` epochs and after the last (evaluating 400 validation points every epoch
    costs more than the training steps of a small task). ``regularizer(params)`` receives the stacked
    parameters (name -> ``(S, ...)`` tensor) and returns a penalty summed over models.

    Models with batch norm (whose running statistics vmap cannot update) are trained one
    after another with :func:`train` instead; the result has the same form.
    """
    from torch.func import functional_call, stack_module_state, vmap
    import copy

    seeds = list(seeds)
    splits = list(data) if isinstance(data, (list, tuple)) else [data] * len(seeds)
    if len(splits) != len(seeds):
        raise ValueError(f"{len(splits)} splits for {len(seeds)} seeds")
    models = [make_model(s) for s in seeds]
    if any(_has_batch_norm(m) for m in models):
        hists = [train(m, d, epochs, lr=lr, optimizer=optimizer, batch_size=batch_size,
                       loss_fn=loss_fn, seed=s, progress=False, classification=classification)
                 for m, d, s in zip(models, splits, seeds)]
        return models, hists
    device = splits[0].x_train.device
    for m in models:
        m.to(device)
    X = torch.stack([d.x_train for d in splits])
    Y = torch.stack([d.y_train for d in splits])
    XV = torch.stack([d.x_val for d in splits])
    YV = torch.stack([d.y_val for d in splits])
    loss_fn = loss_fn or default_loss(Y[0])
    if classification is None:
        classification = Y.dtype == torch.long or bool(((Y == 0) | (Y == 1)).all())
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")

    stackable = _stacked_layers(models[0])

    def forward(p, b, x):
        return functional_call(base, (p, b), (x,))

    def forward_all(p, b, x):
        """All S models at once: (S, n, in) -> (S, n, out)."""
        if stackable is None:
            return vmap(forward, randomness="different")(p, b, x)
        for name, layer in stackable:
            if isinstance(layer, nn.Linear):
                w = p[f"{name}.weight"]
                x = torch.bmm(x, w.transpose(1, 2))
                if layer.bias is not None:
                    x = x + p[f"{name}.bias"][:, None, :]
            elif isinstance(layer, nn.Dropout):
                x = F.dropout(x, layer.p, training=base.training)
            else:
                x = layer(x)
        return x

    def per_model_loss(out, y):
        return loss_fn(out, y)

    losses = vmap(per_model_loss)
    leaves = list(params.values())
    opt = _make(optimizer, leaves) if optimizer is not None else torch.optim.Adam(leaves, lr=lr)
    S, n = X.shape[0], X.shape[1]
    bs = n if batch_size is None else min(batch_size, n)
    gen = torch.Generator(device=device).manual_seed(int(seeds[0]))
    rows = torch.arange(S, device=device)[:, None]
    hists = [History() for _ in seeds]
    bar = range(1, epochs + 1)
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(bar, desc=desc, leave=False, mininterval=0.5)

    def measure(x, y):
        with torch.no_grad():
            out = forward_all(params, buffers, x)
            ls = losses(out, y)
        accs = [accuracy(out[i], y[i]) if classification else None for i in range(S)]
        return ls.tolist(), accs

    for epoch in bar:
        base.train()
        if bs < n:
            order = torch.argsort(torch.rand(S, n, device=device, generator=gen), dim=1)
        for start in range(0, n, bs):
            if bs < n:
                idx = order[:, start:start + bs]
                xb, yb = X[rows, idx], Y[rows, idx]
            else:
                xb, yb = X, Y
            loss = losses(forward_all(params, buffers, xb), yb).sum()
            if regularizer is not None:
                loss = loss + regularizer(params)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if epoch % eval_every and epoch != epochs:
            continue
        base.eval()
        tl, ta = measure(X, Y)
        vl, va = measure(XV, YV)
        for i, h in enumerate(hists):
            h.epoch.append(epoch)
            h.train_loss.append(tl[i])
            h.val_loss.append(vl[i])
            h.train_acc.append(ta[i])
            h.val_acc.append(va[i])
            h.lr.append(opt.param_groups[0]["lr"])
    if progress:
        bar.close()
    with torch.no_grad():  # hand the trained weights back to the models
        for name, stacked in params.items():
            for i, m in enumerate(models):
                m.get_parameter(name).copy_(stacked[i])
    return models, hists
