"""Blind bank: wrong answers and phrases written before any message was seen (outside tester).

Phrases were committed (15aad49) before the first run and are unchanged. Measured with
run(ex, answer, seed=0): none of the 64 passed; 57 of 64 teach by the phrase rule. By the
tester's judgement 63 of 64 teach: the seven phrase misses (ex1.4 index, ex2.1 no identity,
ex2.5 1/n, ex3.2 mean 0, ex5.3 true-class confidence, ex5.4 coarse grid, ex7.3 warmup from 0)
all name the mistake in other words; ex2.1 X @ X.T only gets numpy's raw error ("shape" matched
the description of the inputs, not the mistake).
"""

import copy
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------- lesson 01
def pf_no_constant(x, degree):
    return np.stack([x ** j for j in range(1, degree + 1)], axis=1)


def pf_reversed(x, degree):
    return np.stack([x ** j for j in range(degree, -1, -1)], axis=1)


def fit_reversed(x, y, degree):
    X = np.stack([x ** j for j in range(degree, -1, -1)], axis=1)
    return np.linalg.lstsq(X, y, rcond=None)[0]


def fit_short(x, y, degree):
    X = np.stack([x ** j for j in range(degree)], axis=1)
    return np.linalg.lstsq(X, y, rcond=None)[0]


def bv_no_correction(preds, f_true):
    variance = preds.var(axis=0, ddof=1).mean()
    bias2 = ((preds.mean(axis=0) - f_true) ** 2).mean()
    return float(bias2), float(variance)


def bv_ddof0(preds, f_true):
    R = preds.shape[0]
    variance = preds.var(axis=0).mean()
    bias2 = ((preds.mean(axis=0) - f_true) ** 2).mean() - variance / R
    return float(bias2), float(variance)


def _fit(x, y, d):
    X = np.stack([x ** j for j in range(d + 1)], axis=1)
    return np.linalg.lstsq(X, y, rcond=None)[0]


def _pred(w, x):
    return np.stack([x ** j for j in range(len(w))], axis=1) @ w


def cv_contiguous(x, y, degrees, k):
    folds = np.array_split(np.arange(len(x)), k)
    cv = []
    for d in degrees:
        errs = []
        for f in folds:
            tr = np.setdiff1d(np.arange(len(x)), f)
            w = _fit(x[tr], y[tr], d)
            errs.append(np.mean((_pred(w, x[f]) - y[f]) ** 2))
        cv.append(np.mean(errs))
    cv = np.array(cv)
    return degrees[int(np.argmin(cv))], cv


def cv_returns_index(x, y, degrees, k):
    idx = np.arange(len(x))
    cv = []
    for d in degrees:
        errs = []
        for i in range(k):
            f = idx[i::k]
            tr = np.setdiff1d(idx, f)
            w = _fit(x[tr], y[tr], d)
            errs.append(np.mean((_pred(w, x[f]) - y[f]) ** 2))
        cv.append(np.mean(errs))
    cv = np.array(cv)
    return int(np.argmin(cv)), cv


# ---------------- lesson 02
def ridge_no_eye(X, y, lam):
    return np.linalg.solve(X.T @ X + lam, X.T @ y)


def ridge_wrong_transpose(X, y, lam):
    return np.linalg.solve(X @ X.T + lam * np.eye(X.shape[0]), X.T @ y)


def l2_with_biases(model, lam):
    return lam * sum((p ** 2).sum() for p in model.parameters())


def l2_norm_not_squared(model, lam):
    return lam * sum(p.norm() for p in model.parameters() if p.dim() > 1)


def l1_no_abs(model, lam):
    return lam * sum(p.sum() for p in model.parameters() if p.dim() > 1)


def l1_item(model, lam):
    return lam * sum(p.abs().sum().item() for p in model.parameters() if p.dim() > 1)


def st_no_sign(w, t):
    return torch.clamp(w.abs() - t, min=0)


def st_hard(w, t):
    return w * (w.abs() > t)


def lasso_simultaneous(X, y, lam, n_sweeps):
    n, d = X.shape
    w = np.zeros(d)
    for _ in range(n_sweeps):
        new = w.copy()
        for j in range(d):
            r = y - X @ w + X[:, j] * w[j]
            rho = X[:, j] @ r / n
            z = X[:, j] @ X[:, j] / n
            new[j] = np.sign(rho) * max(abs(rho) - lam, 0) / z
        w = new
    return w


def lasso_no_n(X, y, lam, n_sweeps):
    n, d = X.shape
    w = np.zeros(d)
    for _ in range(n_sweeps):
        for j in range(d):
            r = y - X @ w + X[:, j] * w[j]
            rho = X[:, j] @ r
            z = X[:, j] @ X[:, j]
            w[j] = np.sign(rho) * max(abs(rho) - lam, 0) / z
    return w


def sgd_decay_no_lr(w, grad, lr, weight_decay):
    return w - lr * grad - weight_decay * w


def sgd_inplace(w, grad, lr, weight_decay):
    w -= lr * (grad + weight_decay * w)
    return w


def adamw_no_bias_correction(w, grad, m, v, t, lr, betas, eps, weight_decay):
    b1, b2 = betas
    w = w * (1 - lr * weight_decay)
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad ** 2
    w = w - lr * m / (v.sqrt() + eps)
    return w, m, v


def adamw_coupled(w, grad, m, v, t, lr, betas, eps, weight_decay):
    b1, b2 = betas
    g = grad + weight_decay * w
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g ** 2
    mh = m / (1 - b1 ** t)
    vh = v / (1 - b2 ** t)
    w = w - lr * mh / (vh.sqrt() + eps)
    return w, m, v


def groups_by_name(model, weight_decay):
    dec, nod = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (dec if n.endswith("weight") else nod).append(p)
    return [{"params": dec, "weight_decay": weight_decay}, {"params": nod, "weight_decay": 0.0}]


def groups_with_frozen(model, weight_decay):
    dec = [p for p in model.parameters() if p.dim() > 1]
    nod = [p for p in model.parameters() if p.dim() <= 1]
    return [{"params": dec, "weight_decay": weight_decay}, {"params": nod, "weight_decay": 0.0}]


# ---------------- lesson 03
def dropout_unscaled(x, p, training, generator=None):
    if not training or p == 0:
        return x, None
    mask = (torch.rand(x.shape, generator=generator, dtype=x.dtype) >= p).to(x.dtype)
    return x * mask, mask


def dropout_keep_prob(x, p, training, generator=None):
    if not training or p == 0:
        return x, None
    mask = (torch.rand(x.shape, generator=generator, dtype=x.dtype) < p).to(x.dtype) / (1 - p)
    return x * mask, mask


def gd_std_is_var(x, p, training, generator=None):
    if not training or p == 0:
        return x, None
    noise = 1 + torch.randn(x.shape, generator=generator, dtype=x.dtype) * (p / (1 - p))
    return x * noise, noise


def gd_mean_zero(x, p, training, generator=None):
    if not training or p == 0:
        return x, None
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype) * math.sqrt(p / (1 - p))
    return x * noise, noise


class DropoutNoEval(nn.Module):
    def __init__(self, p=0.5):
        super().__init__()
        self.p = p

    def forward(self, x):
        mask = (torch.rand_like(x) >= self.p).to(x.dtype) / (1 - self.p)
        return x * mask


class DropoutSharedMask(nn.Module):
    def __init__(self, p=0.5):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        mask = (torch.rand(x.shape[1:], dtype=x.dtype) >= self.p).to(x.dtype) / (1 - self.p)
        return x * mask


def mc_train_all(model, x, n_samples):
    model.train()
    with torch.no_grad():
        probs = torch.stack([F.softmax(model(x), dim=-1) for _ in range(n_samples)])
    return probs.mean(0), probs.std(0)


def mc_no_softmax(model, x, n_samples):
    was = model.training
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.train()
    with torch.no_grad():
        outs = torch.stack([model(x) for _ in range(n_samples)])
    model.train(was)
    for m in model.modules():
        m.training = was
    return outs.mean(0), outs.std(0)


def maxnorm_all_rows(weight, c):
    with torch.no_grad():
        weight.mul_(c / weight.norm(dim=1, keepdim=True))
    return weight


def maxnorm_copy(weight, c):
    with torch.no_grad():
        norms = weight.norm(dim=1, keepdim=True)
        scale = torch.where(norms > c, c / norms, torch.ones_like(norms))
        return weight * scale


# ---------------- lesson 04
def _dims(x):
    return [0] + list(range(2, x.dim()))


def _shape(x, t):
    return t.view(1, -1, *([1] * (x.dim() - 2)))


def bn_unbiased_norm(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    if training:
        d = _dims(x)
        mean = x.mean(d)
        var = x.var(d, unbiased=True)
        y = (x - _shape(x, mean)) / torch.sqrt(_shape(x, var) + eps)
        rm = (1 - momentum) * running_mean + momentum * mean
        rv = (1 - momentum) * running_var + momentum * var
    else:
        y = (x - _shape(x, running_mean)) / torch.sqrt(_shape(x, running_var) + eps)
        rm, rv = running_mean, running_var
    return _shape(x, gamma) * y + _shape(x, beta), rm, rv


def bn_momentum_swapped(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    if training:
        d = _dims(x)
        mean = x.mean(d)
        var = x.var(d, unbiased=False)
        n = x.numel() / x.shape[1]
        y = (x - _shape(x, mean)) / torch.sqrt(_shape(x, var) + eps)
        rm = momentum * running_mean + (1 - momentum) * mean
        rv = momentum * running_var + (1 - momentum) * var * n / (n - 1)
    else:
        y = (x - _shape(x, running_mean)) / torch.sqrt(_shape(x, running_var) + eps)
        rm, rv = running_mean, running_var
    return _shape(x, gamma) * y + _shape(x, beta), rm, rv


class BN1dAlwaysBatch(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x):
        d = _dims(x)
        mean = x.mean(d)
        var = x.var(d, unbiased=False)
        n = x.numel() / x.shape[1]
        if self.training:
            with torch.no_grad():
                self.num_batches_tracked += 1
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * n / (n - 1))
        y = (x - _shape(x, mean)) / torch.sqrt(_shape(x, var) + self.eps)
        return _shape(x, self.weight) * y + _shape(x, self.bias)


class BN1dNoneMomentum(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x):
        if self.training:
            d = _dims(x)
            mean = x.mean(d)
            var = x.var(d, unbiased=False)
            n = x.numel() / x.shape[1]
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * var * n / (n - 1))
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - _shape(x, mean)) / torch.sqrt(_shape(x, var) + self.eps)
        return _shape(x, self.weight) * y + _shape(x, self.bias)


def bnb_no_stat_terms(dy, x, gamma, eps=1e-5):
    mean = x.mean(0)
    var = x.var(0, unbiased=False)
    std = torch.sqrt(var + eps)
    xhat = (x - mean) / std
    dx = dy * gamma / std
    return dx, (dy * xhat).sum(0), dy.sum(0)


def bnb_dgamma_plain(dy, x, gamma, eps=1e-5):
    N = x.shape[0]
    mean = x.mean(0)
    var = x.var(0, unbiased=False)
    std = torch.sqrt(var + eps)
    xhat = (x - mean) / std
    dxhat = dy * gamma
    dx = (dxhat - dxhat.mean(0) - xhat * (dxhat * xhat).mean(0)) / std
    return dx, dy.sum(0), dy.sum(0)


def ln_over_batch(x, gamma, beta, eps=1e-5):
    mean = x.mean(0, keepdim=True)
    var = x.var(0, unbiased=False, keepdim=True)
    return gamma * (x - mean) / torch.sqrt(var + eps) + beta


def ln_unbiased(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True)
    return gamma * (x - mean) / torch.sqrt(var + eps) + beta


# ---------------- lesson 05
def smooth_k_minus_1(y, num_classes, eps):
    oh = F.one_hot(y, num_classes).float()
    return oh * (1 - eps) + (1 - oh) * eps / (num_classes - 1)


def smooth_no_one_minus(y, num_classes, eps):
    return F.one_hot(y, num_classes).float() + eps / num_classes


def lsce_naive(logits, y, eps):
    K = logits.shape[1]
    logp = torch.log(torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True))
    t = F.one_hot(y, K).to(logits.dtype) * (1 - eps) + eps / K
    return -(t * logp).sum(1).mean()


def lsce_sum(logits, y, eps):
    K = logits.shape[1]
    logp = F.log_softmax(logits, dim=1)
    t = F.one_hot(y, K).to(logits.dtype) * (1 - eps) + eps / K
    return -(t * logp).sum()


def ece_unweighted(probs, y, n_bins=15):
    conf, pred = probs.max(1)
    acc = (pred == y).float()
    edges = torch.linspace(0, 1, n_bins + 1)
    gaps = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            gaps.append((acc[m].mean() - conf[m].mean()).abs())
    return float(torch.stack(gaps).mean())


def ece_true_class_conf(probs, y, n_bins=15):
    conf = probs[torch.arange(len(y)), y]
    pred = probs.argmax(1)
    acc = (pred == y).float()
    edges = torch.linspace(0, 1, n_bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.float().mean() * (acc[m].mean() - conf[m].mean()).abs()
    return float(ece)


def temp_inverse(logits, y):
    s = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([s], max_iter=200, line_search_fn="strong_wolfe")
    L = logits.double()

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(L * s.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(s.exp())  # this is the factor multiplying the logits, i.e. 1/T


def temp_coarse_grid(logits, y):
    grid = np.linspace(0.5, 3.0, 26)
    losses = [float(F.cross_entropy(logits / T, y)) for T in grid]
    return float(grid[int(np.argmin(losses))])


# ---------------- lesson 06
def flip_height(x, p, generator=None):
    coin = torch.rand(x.shape[0], generator=generator) < p
    out = x.clone()
    out[coin] = x[coin].flip(2)
    return out


def flip_whole_batch(x, p, generator=None):
    if torch.rand(1, generator=generator).item() < p:
        return x.flip(3)
    return x.clone()


def mixup_uniform(x, y, alpha, generator=None):
    lam = torch.rand(1, generator=generator).item()
    perm = torch.randperm(x.shape[0], generator=generator)
    return lam * x + (1 - lam) * x[perm], y, y[perm], lam


def mixup_per_sample(x, y, alpha, generator=None):
    lam = torch.from_numpy(np.random.beta(alpha, alpha, size=x.shape[0])).to(x.dtype)
    perm = torch.randperm(x.shape[0], generator=generator)
    lv = lam.view(-1, *([1] * (x.dim() - 1)))
    return lv * x + (1 - lv) * x[perm], y, y[perm], lam


def mixloss_swapped(logits, y_a, y_b, lam):
    return (1 - lam) * F.cross_entropy(logits, y_a) + lam * F.cross_entropy(logits, y_b)


def mixloss_only_a(logits, y_a, y_b, lam):
    return F.cross_entropy(logits, y_a)


def cutmix_lam_is_r(x, y, alpha, generator=None):
    N, C, H, W = x.shape
    r = float(np.random.beta(alpha, alpha))
    perm = torch.randperm(N, generator=generator)
    bh, bw = int(H * math.sqrt(1 - r)), int(W * math.sqrt(1 - r))
    cy, cx = np.random.randint(H), np.random.randint(W)
    y0, y1 = max(cy - bh // 2, 0), min(cy + bh // 2, H)
    x0, x1 = max(cx - bw // 2, 0), min(cx + bw // 2, W)
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
    return out, y, y[perm], r


def cutmix_box_per_image(x, y, alpha, generator=None):
    N, C, H, W = x.shape
    r = float(np.random.beta(alpha, alpha))
    perm = torch.randperm(N, generator=generator)
    bh, bw = int(H * math.sqrt(1 - r)), int(W * math.sqrt(1 - r))
    out = x.clone()
    area = 0
    for i in range(N):
        cy, cx = np.random.randint(H), np.random.randint(W)
        y0, y1 = max(cy - bh // 2, 0), min(cy + bh // 2, H)
        x0, x1 = max(cx - bw // 2, 0), min(cx + bw // 2, W)
        out[i, :, y0:y1, x0:x1] = x[perm[i], :, y0:y1, x0:x1]
        area += (y1 - y0) * (x1 - x0)
    lam = 1 - area / (N * H * W)
    return out, y, y[perm], lam


# ---------------- lesson 07
class ESNonStrict:
    def __init__(self, patience, min_delta=0.0):
        self.patience, self.min_delta = patience, min_delta
        self.best_loss, self.best_epoch = float("inf"), None
        self.count, self.epoch, self.best_state = 0, -1, None

    def step(self, val_loss, model):
        self.epoch += 1
        if val_loss <= self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.count = val_loss, self.epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.count += 1
        return self.count >= self.patience

    def restore_best(self, model):
        model.load_state_dict(self.best_state)


class ESShallowCopy:
    def __init__(self, patience, min_delta=0.0):
        self.patience, self.min_delta = patience, min_delta
        self.best_loss, self.best_epoch = float("inf"), None
        self.count, self.epoch, self.best_state = 0, -1, None

    def step(self, val_loss, model):
        self.epoch += 1
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.count = val_loss, self.epoch, 0
            self.best_state = model.state_dict()
        else:
            self.count += 1
        return self.count >= self.patience

    def restore_best(self, model):
        model.load_state_dict(self.best_state)


def cos_off_by_one(step, total_steps, lr_max, lr_min=0.0):
    return lr_min + (lr_max - lr_min) * (1 + math.cos(math.pi * step / (total_steps - 1))) / 2


def cos_no_min(step, total_steps, lr_max, lr_min=0.0):
    return lr_max * (1 + math.cos(math.pi * step / total_steps)) / 2


def wc_warmup_from_zero(step, warmup_steps, total_steps, lr_max, lr_min=0.0):
    if step < warmup_steps:
        return lr_max * step / warmup_steps
    s, T = step - warmup_steps, total_steps - warmup_steps
    return lr_min + (lr_max - lr_min) * (1 + math.cos(math.pi * s / T)) / 2


def wc_not_shifted(step, warmup_steps, total_steps, lr_max, lr_min=0.0):
    if step < warmup_steps:
        return lr_max * (step + 1) / warmup_steps
    return lr_min + (lr_max - lr_min) * (1 + math.cos(math.pi * step / total_steps)) / 2


BANK = [
    ("ex1.1", "drops the constant x**0 column", pf_no_constant, ["x**0", "constant", "degree + 1", "degree+1"]),
    ("ex1.1", "columns highest power first", pf_reversed, ["reverse", "order", "highest power", "lowest power"]),
    ("ex1.2", "coefficients highest power first", fit_reversed, ["reverse", "order", "lowest power", "highest"]),
    ("ex1.2", "only degree coefficients (range(degree))", fit_short, ["degree + 1", "degree+1", "one short", "missing"]),
    ("ex1.3", "bias2 without the variance/R correction", bv_no_correction, ["variance / r", "variance/r", "unbiased", "correction"]),
    ("ex1.3", "variance with ddof=0", bv_ddof0, ["ddof", "n - 1", "r - 1", "r-1"]),
    ("ex1.4", "contiguous folds (array_split)", cv_contiguous, ["interleav", "i::k", "contiguous", "positions"]),
    ("ex1.4", "returns argmin index instead of the degree", cv_returns_index, ["index", "degree itself", "degrees["]),
    ("ex2.1", "lam added to every entry (no identity)", ridge_no_eye, ["identity", "eye", "diagonal"]),
    ("ex2.1", "X @ X.T instead of X.T @ X", ridge_wrong_transpose, ["transpose", "x.t @ x", "(d, d)", "shape"]),
    ("ex2.2", "penalises biases too", l2_with_biases, ["bias", "dim > 1", "dim() > 1"]),
    ("ex2.2", "norm, not squared norm", l2_norm_not_squared, ["squared", "square", "**2", "not the norm"]),
    ("ex2.3", "sum without abs", l1_no_abs, ["abs", "absolute", "sign", "negative"]),
    ("ex2.3", "returns a float via .item()", l1_item, ["differentiable", "tensor", "grad", "item"]),
    ("ex2.4", "forgets the sign", st_no_sign, ["sign", "negative"]),
    ("ex2.4", "hard threshold (no shrink)", st_hard, ["shrink", "hard threshold", "subtract", "by t"]),
    ("ex2.5", "simultaneous (Jacobi) update", lasso_simultaneous, ["cyclic", "simultaneous", "in order", "current"]),
    ("ex2.5", "forgot the 1/n scaling of the loss", lasso_no_n, ["1/n", "1/(2n)", "scaling", "n * lam"]),
    ("ex2.6", "weight decay not multiplied by lr", sgd_decay_no_lr, ["learning rate", "times lr", "lr *", "scaled by"]),
    ("ex2.6", "modifies w in place", sgd_inplace, ["in place", "in-place", "modif"]),
    ("ex2.7", "no bias correction", adamw_no_bias_correction, ["bias correction", "bias-correct", "1 - beta", "bias_correction"]),
    ("ex2.7", "coupled L2 (Adam + L2), not decoupled", adamw_coupled, ["decoupl", "coupled", "to the gradient", "not adamw"]),
    ("ex2.8", "decays every param named weight (norm weights too)", groups_by_name, ["norm", "dim <= 1", "dim > 1", "1-d"]),
    ("ex2.8", "includes frozen parameters", groups_with_frozen, ["frozen", "requires_grad"]),
    ("ex3.1", "mask not scaled by 1/(1-p)", dropout_unscaled, ["1/(1-p)", "1/(1 - p)", "scale", "inverted"]),
    ("ex3.1", "p used as keep probability", dropout_keep_prob, ["keep", "drop probability", "drop rate", "1 - p"]),
    ("ex3.2", "std set to p/(1-p) (variance not sqrt)", gd_std_is_var, ["variance", "sqrt", "standard deviation", "std"]),
    ("ex3.2", "noise has mean 0 (forgot +1)", gd_mean_zero, ["mean 1", "mean of 1", "about 1", "mean should"]),
    ("ex3.3", "drops in eval mode too", DropoutNoEval, ["eval", "training"]),
    ("ex3.3", "one mask shared by all samples", DropoutSharedMask, ["independent", "same mask", "across samples", "every sample"]),
    ("ex3.4", "model.train() (batch norm active, mode not restored)", mc_train_all, ["batch norm", "batchnorm", "running", "mode"]),
    ("ex3.4", "mean/std of logits, no softmax", mc_no_softmax, ["softmax", "probabilit", "logits"]),
    ("ex3.5", "rescales every row to norm c", maxnorm_all_rows, ["exceed", "only rows", "untouched", "below"]),
    ("ex3.5", "returns a new tensor, not in place", maxnorm_copy, ["in place", "in-place", "same tensor", "itself"]),
    ("ex4.1", "normalises with unbiased variance", bn_unbiased_norm, ["biased variance", "unbiased", "n - 1", "n-1"]),
    ("ex4.1", "momentum weights swapped", bn_momentum_swapped, ["momentum", "reverse", "swap"]),
    ("ex4.2", "uses batch statistics in eval mode", BN1dAlwaysBatch, ["eval", "running"]),
    ("ex4.2", "momentum=None not handled (crash)", BN1dNoneMomentum, ["momentum=none", "momentum none", "cumulative", "num_batches_tracked"]),
    ("ex4.3", "dx ignores the batch mean/var terms", bnb_no_stat_terms, ["batch statistics", "through the mean", "mean and var", "depend"]),
    ("ex4.3", "dgamma = dy.sum(0), forgot x_hat", bnb_dgamma_plain, ["x_hat", "normalized", "normalised", "dgamma"]),
    ("ex4.4", "normalises over the batch dim", ln_over_batch, ["last dim", "dim=-1", "axis", "each sample"]),
    ("ex4.4", "unbiased variance", ln_unbiased, ["biased", "unbiased", "n - 1", "correction"]),
    ("ex5.1", "eps/(K-1) on the wrong classes", smooth_k_minus_1, ["eps/k", "eps / k", "k - 1", "k-1"]),
    ("ex5.1", "forgot the (1-eps) factor", smooth_no_one_minus, ["sum to 1", "sums to", "1 - eps", "(1-eps)"]),
    ("ex5.2", "naive log(softmax), unstable", lsce_naive, ["stable", "log_softmax", "overflow", "large logits"]),
    ("ex5.2", "sum over the batch instead of mean", lsce_sum, ["mean over the batch", "batch mean", "sum", "times n"]),
    ("ex5.3", "bins not weighted by size", ece_unweighted, ["weight", "size", "bin count"]),
    ("ex5.3", "confidence = prob of the true class", ece_true_class_conf, ["max prob", "maximum", "argmax", "predicted class"]),
    ("ex5.4", "returns 1/T (fits a multiplier)", temp_inverse, ["1/t", "inverse", "divide", "logits / t"]),
    ("ex5.4", "coarse grid search", temp_coarse_grid, ["minim", "grid", "optimi", "precise"]),
    ("ex6.1", "flips along the height axis", flip_height, ["width", "axis", "dim 3", "dims=[3]"]),
    ("ex6.1", "one coin for the whole batch", flip_whole_batch, ["each image", "independ", "per image", "whole batch"]),
    ("ex6.2", "lam uniform, not Beta", mixup_uniform, ["beta"]),
    ("ex6.2", "one lam per sample", mixup_per_sample, ["one lam", "per batch", "single", "scalar"]),
    ("ex6.3", "lam and 1-lam swapped", mixloss_swapped, ["swap", "y_a", "reverse", "1 - lam"]),
    ("ex6.3", "only CE against y_a", mixloss_only_a, ["y_b"]),
    ("ex6.4", "lam = r, not the exact kept fraction", cutmix_lam_is_r, ["clip", "exact fraction", "after clipping", "box area"]),
    ("ex6.4", "a different box per image", cutmix_box_per_image, ["same box", "every image", "one box", "per image"]),
    ("ex7.1", "improvement with <= (ties count)", ESNonStrict, ["strict", "equal", "not an improvement", "tie"]),
    ("ex7.1", "stores state_dict without deep copy", ESShallowCopy, ["deep copy", "deepcopy", "copy", "reference"]),
    ("ex7.2", "divides by total_steps - 1", cos_off_by_one, ["total_steps", "off-by-one", "off by one", "step / total"]),
    ("ex7.2", "ignores lr_min", cos_no_min, ["lr_min"]),
    ("ex7.3", "warmup starts at 0 (step, not step+1)", wc_warmup_from_zero, ["step + 1", "(step+1)", "zero", "off by one"]),
    ("ex7.3", "cosine not shifted by warmup_steps", wc_not_shifted, ["warmup_steps", "shift", "subtract", "step - warmup"]),
]
