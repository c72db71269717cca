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


# ---------------------------------------------------------------- many MLP settings at once

@dataclass
class SettingRuns:
    """What :func:`train_mlp_settings` measured for one setting: one entry per seed.

    ``val_acc``, ``val_loss``, ``test_acc``, ``test_loss`` are arrays of shape ``(S,)`` after
    the last epoch; with ``track=True`` the ``*_curve`` arrays hold the same per epoch,
    ``(S, epochs)``, and ``lr`` the learning rate of each epoch's last batch, ``(S, epochs)``.
    """

    val_acc: "np.ndarray"
    val_loss: "np.ndarray"
    test_acc: "np.ndarray"
    test_loss: "np.ndarray"
    val_loss_curve: "Optional[np.ndarray]" = None
    val_acc_curve: "Optional[np.ndarray]" = None
    test_acc_curve: "Optional[np.ndarray]" = None
    lr: "Optional[np.ndarray]" = None

    def early_stopped(self, patience: Optional[int] = 10):
        """Early stopping replayed on the recorded curves (needs ``track=True``): per seed, stop
        after ``patience`` epochs in a row without a lower validation loss (``None``: never stop)
        and restore the epoch of the lowest validation loss seen until then.

        Returns ``(val_acc, test_acc, best_epoch, stop_epoch)``, arrays of shape ``(S,)``;
        epochs count from 1 and ``stop_epoch`` is the last epoch when the rule never fired.
        """
        import numpy as np

        if self.val_loss_curve is None:
            raise ValueError("early_stopped needs the curves: train with track=True")
        best, stop = [], []
        for curve in self.val_loss_curve:
            b, bad, s = 0, 0, len(curve)
            for e in range(1, len(curve)):
                if curve[e] < curve[b]:
                    b, bad = e, 0
                else:
                    bad += 1
                    if patience is not None and bad >= patience:
                        s = e + 1
                        break
            best.append(b)
            stop.append(s)
        best = np.array(best)
        rows = np.arange(len(best))
        return (self.val_acc_curve[rows, best], self.test_acc_curve[rows, best], best + 1,
                np.array(stop))


_SETTING_KEYS = {"weight_decay", "dropout", "batch_norm", "label_smoothing", "mixup", "shift",
                 "scheduler", "per_batch", "plateau", "y_train"}


def _shift_index(side: int, max_shift: int, device) -> torch.Tensor:
    """``(K, side*side)`` gather indices of every shift (dy, dx) in [-max_shift, max_shift]^2;
    index ``side*side`` (a zero pixel) where the shifted image has no source pixel."""
    rows = []
    r = torch.arange(side, device=device)
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            sy, sx = (r - dy)[:, None], (r - dx)[None, :]
            ok = (sy >= 0) & (sy < side) & (sx >= 0) & (sx < side)
            rows.append(torch.where(ok, sy * side + sx, side * side).reshape(-1))
    return torch.stack(rows)


def train_mlp_settings(data: Split, settings: dict, seeds: Sequence[int], epochs: int, *,
                       hidden: Sequence[int] = (64, 64), lr: float = 2e-3,
                       batch_size: int = 100, track: bool = False) -> dict:
    """Train an MLP ``in -> hidden... -> classes`` (ReLU) for every setting and seed *at once*.

    ``settings`` maps a name to a dict of regularizers (all optional): ``weight_decay``
    (AdamW's decoupled decay), ``dropout`` (p after every hidden ReLU), ``batch_norm`` (True:
    after every hidden Linear), ``label_smoothing`` (eps), ``mixup`` (alpha: one lam per batch
    and model), ``shift`` (augmentation: each training image moved by up to that many pixels
    along each axis, zeros filled in; the inputs must be flattened square images),
    ``scheduler`` (a factory ``optimizer -> LR scheduler``, stepped per epoch, or per batch with
    ``per_batch=True``) or ``plateau`` (a factory for ``ReduceLROnPlateau``, stepped per epoch
    with each model's own validation loss), and ``y_train`` (training labels that replace
    ``data.y_train`` for this setting, e.g. a noisy and a clean copy trained side by side).
    Every model is trained with Adam (AdamW with its
    decay) at ``lr``, cross-entropy on mini-batches of ``batch_size``.

    Seeds are paired across settings: the model of seed ``s`` starts from the same weights
    (``torch.manual_seed(1000 * s + layer)``, then ``nn.Linear``'s initialisation) and sees the
    same batch order in every setting, and in every call with the same seeds and training-set
    size (the batch order has a generator of its own); dropout masks, mixup and shifts are drawn
    per model from another generator. All models are
    one stacked computation (batched matrix products), so a dozen settings over several seeds
    cost about as much as a few single runs. Returns ``{name: SettingRuns}``; the test split is
    only measured, never used for any choice.
    """
    import numpy as np

    seeds = list(seeds)
    names = list(settings)
    for name, cfg in settings.items():
        unknown = set(cfg) - _SETTING_KEYS
        if unknown:
            raise ValueError(f"setting {name!r}: unknown keys {sorted(unknown)}")
    groups = {}
    for name in names:                      # batch norm and the rest train as separate stacks
        groups.setdefault(bool(settings[name].get("batch_norm")), []).append(name)
    out = {}
    for bn, group in groups.items():
        out.update(_train_stack(data, {n: settings[n] for n in group}, seeds, epochs, hidden,
                                lr, batch_size, track, bn, np))
    return {n: out[n] for n in names}


def _train_stack(data, settings, seeds, epochs, hidden, lr, batch_size, track, bn, np):
    names, S = list(settings), len(seeds)
    M = len(names) * S
    dev = data.x_train.device
    X, Y = data.x_train, data.y_train
    n, d_in = X.shape
    labels = [settings[nm].get("y_train") for nm in names]
    for nm, y in zip(names, labels):
        if y is not None and tuple(y.shape) != tuple(Y.shape):
            raise ValueError(f"setting {nm!r}: y_train has shape {tuple(y.shape)}, not {tuple(Y.shape)}")
    Y_m = torch.stack([(Y if y is None else y.to(dev)) for y in labels for _ in seeds])  # (M, n)
    K = int(max(Y_m.max(), data.y_val.max())) + 1

    def per_model(key, default=0.0):
        vals = [float(settings[nm].get(key) or default) for nm in names for _ in seeds]
        return torch.tensor(vals, dtype=X.dtype, device=dev)

    wd, p_drop = per_model("weight_decay"), per_model("dropout")
    eps, alpha = per_model("label_smoothing"), per_model("mixup")
    shift = per_model("shift").long()
    # parameters: the same initialisation for a seed in every setting
    widths = [d_in, *hidden, K]
    params = []
    for i in range(len(widths) - 1):
        ws, bs = [], []
        for _ in names:
            for s in seeds:
                torch.manual_seed(s * 1000 + i)
                layer = nn.Linear(widths[i], widths[i + 1])
                ws.append(layer.weight.detach().T)
                bs.append(layer.bias.detach())
        params += [torch.stack(ws).to(dev).requires_grad_(), torch.stack(bs).to(dev)[:, None, :].requires_grad_()]
    if bn:
        for h in hidden:
            params += [torch.ones(M, 1, h, device=dev, requires_grad=True),
                       torch.zeros(M, 1, h, device=dev, requires_grad=True)]
        running = [[torch.zeros(M, 1, h, device=dev), torch.ones(M, 1, h, device=dev)] for h in hidden]
    n_lin = 2 * (len(widths) - 1)
    m_buf = [torch.zeros_like(q) for q in params]
    v_buf = [torch.zeros_like(q) for q in params]
    gen = torch.Generator(device=dev).manual_seed(int(seeds[0]) + 7919)       # batch order
    noise = torch.Generator(device=dev).manual_seed(int(seeds[0]) + 104729)  # masks, shifts, mixup
    side = int(round(d_in ** 0.5))
    max_shift = int(shift.max())
    shift_idx = _shift_index(side, max_shift, dev) if max_shift > 0 else None

    def forward(x, train):
        h = x
        for i in range(len(widths) - 1):
            h = torch.baddbmm(params[2 * i + 1], h, params[2 * i])
            if i == len(widths) - 2:
                return h
            if bn:
                g, b = params[n_lin + 2 * i], params[n_lin + 2 * i + 1]
                rm, rv = running[i]
                if train:
                    mu, var = h.mean(1, keepdim=True), h.var(1, keepdim=True, unbiased=False)
                    with torch.no_grad():
                        m = h.shape[1]
                        rm.mul_(0.9).add_(0.1 * mu)
                        rv.mul_(0.9).add_(0.1 * var * m / (m - 1))
                else:
                    mu, var = rm, rv
                h = g * (h - mu) / torch.sqrt(var + 1e-5) + b
            h = torch.relu(h)
            if train and bool((p_drop > 0).any()):
                keep = (1 - p_drop)[:, None, None]
                h = h * (torch.rand(h.shape, device=dev, generator=noise) < keep) / keep
        return h

    def ce(logits, y, eps_m):
        logp = torch.log_softmax(logits, -1)
        nll = -logp.gather(-1, y[..., None]).squeeze(-1).mean(1)
        return (1 - eps_m) * nll + eps_m * (-logp.mean(-1)).mean(1)

    # learning rates: one dummy optimizer per setting (per model for ReduceLROnPlateau)
    steps_per_epoch = -(-n // batch_size)
    dummies = []
    for nm in names:
        cfg = settings[nm]
        for _ in seeds:
            opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
            kind = "plateau" if cfg.get("plateau") else ("batch" if cfg.get("per_batch") else "epoch")
            sch = cfg["plateau"](opt) if cfg.get("plateau") else (cfg["scheduler"](opt) if cfg.get("scheduler") else None)
            dummies.append((opt, sch, kind))
    needs_val = track or any(k == "plateau" for _, _, k in dummies)

    def lrs():
        return torch.tensor([o.param_groups[0]["lr"] for o, _, _ in dummies], dtype=X.dtype, device=dev)

    @torch.no_grad()
    def measure(x, y):
        logits = forward(x.expand(M, *x.shape), False)
        loss = ce(logits, y.expand(M, *y.shape), torch.zeros(M, device=dev))
        acc = (logits.argmax(-1) == y).float().mean(1)
        return loss.cpu().numpy(), acc.cpu().numpy()

    curves = {k: [] for k in ("val_loss", "val_acc", "test_acc", "lr")}
    seed_of = torch.arange(M, device=dev) % S
    b1, b2, t = 0.9, 0.999, 0
    for epoch in range(epochs):
        order = torch.argsort(torch.rand(S, n, device=dev, generator=gen), dim=1)[seed_of]
        for start in range(0, n, batch_size):
            idx = order[:, start:start + batch_size]
            xb, yb = X[idx], Y_m.gather(1, idx)                      # (M, B, d), (M, B)
            B = xb.shape[1]
            if shift_idx is not None:
                k = shift_idx.shape[0]
                span = 2 * max_shift + 1
                dy = torch.randint(0, 2 ** 30, (M, B), device=dev, generator=noise) % (2 * shift[:, None] + 1)
                dx = torch.randint(0, 2 ** 30, (M, B), device=dev, generator=noise) % (2 * shift[:, None] + 1)
                choice = (dy - shift[:, None] + max_shift) * span + (dx - shift[:, None] + max_shift)
                padded = torch.cat([xb, torch.zeros(M, B, 1, device=dev)], -1)
                xb = padded.gather(-1, shift_idx[choice.clamp(0, k - 1)])
            lam = torch.ones(M, device=dev)
            if bool((alpha > 0).any()):
                a = alpha.clamp(min=1e-6)
                draw = torch.distributions.Beta(a, a).sample()
                lam = torch.where(alpha > 0, draw, lam)
                perm = torch.argsort(torch.rand(M, B, device=dev, generator=noise), dim=1)
                rows = torch.arange(M, device=dev)[:, None]
                xb = lam[:, None, None] * xb + (1 - lam[:, None, None]) * xb[rows, perm]
                yb2 = yb[rows, perm]
            logits = forward(xb, True)
            loss = lam * ce(logits, yb, eps)
            if bool((alpha > 0).any()):
                loss = loss + (1 - lam) * ce(logits, yb2, eps)
            grads = torch.autograd.grad(loss.sum(), params)
            t += 1
            rate = lrs()
            with torch.no_grad():
                for q, g, m, v in zip(params, grads, m_buf, v_buf):
                    r = rate.view(M, *([1] * (q.dim() - 1)))
                    q.mul_(1 - r * wd.view_as(r))                   # AdamW: decay first
                    m.mul_(b1).add_(g, alpha=1 - b1)
                    v.mul_(b2).addcmul_(g, g, value=1 - b2)
                    q.sub_(r * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + 1e-8))
            for o, sch, kind in dummies:
                if kind == "batch":
                    o.step()
                    sch.step()
        curves["lr"].append(lrs().cpu().numpy())
        if needs_val or epoch == epochs - 1:
            vl, va = measure(data.x_val, data.y_val)
        for i, (o, sch, kind) in enumerate(dummies):
            if kind == "epoch" and sch is not None:
                o.step()
                sch.step()
            elif kind == "plateau":
                sch.step(float(vl[i]))
        if track:
            curves["val_loss"].append(vl)
            curves["val_acc"].append(va)
            curves["test_acc"].append(measure(data.x_test, data.y_test)[1])
    tl, ta = measure(data.x_test, data.y_test)
    res = {}
    for j, nm in enumerate(names):
        sl = slice(j * S, (j + 1) * S)
        c = {k: (np.stack(v, 1)[sl] if v else None) for k, v in curves.items()}
        res[nm] = SettingRuns(va[sl], vl[sl], ta[sl], tl[sl], c["val_loss"] if track else None,
                              c["val_acc"] if track else None, c["test_acc"] if track else None,
                              c["lr"])
    return res


def early_stopping(patience: int, min_delta: float = 0.0) -> Callback:
    """An early-stopping callback for :func:`train`.

    ``train`` calls it after every epoch (epochs counted from 1); it returns True once
    ``patience`` epochs in a row brought no improvement (``val_loss`` below the best by more
    than ``min_delta``), and keeps a deep copy of the best state. Read ``cb.best_epoch`` (the
    1-based epoch) and ``cb.best_loss``; ``cb.restore(model)`` loads the best state.
    """
    import copy

    state = {"best_loss": float("inf"), "best_epoch": None, "bad": 0, "weights": None}

    def callback(epoch, history, model):
        val_loss = history.val_loss[-1]
        if val_loss < state["best_loss"] - min_delta:
            state.update(best_loss=val_loss, best_epoch=epoch, bad=0,
                         weights=copy.deepcopy(model.state_dict()))
        else:
            state["bad"] += 1
        callback.best_loss, callback.best_epoch = state["best_loss"], state["best_epoch"]
        return state["bad"] >= patience

    callback.best_loss, callback.best_epoch = state["best_loss"], state["best_epoch"]
    callback.restore = lambda model: model.load_state_dict(state["weights"])
    return callback
