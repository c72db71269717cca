"""Interactive explorers built on ipywidgets.

Each explorer is a small class holding its controls, the numbers it shows and a
``widget`` to display; ``update()`` recomputes everything from the controls, so the
explorers can be driven from Python (and tested) as well as with the mouse.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

# ---------------------------------------------------------------- the base class, shared by every explorer


class Explorer:
    """What every explorer shares: controls on top, a line of numbers, a plot below.

    A subclass creates its controls, then calls ``self._assemble(rows, controls)``; its
    ``update()`` recomputes its numbers from the controls, writes them into ``self.numbers``
    (an HTML widget) and hands a new figure to ``self._show(fig)``. Moving any control calls
    ``update()`` again, so an explorer can be driven from Python (and tested) the way a
    learner drives it with the mouse.
    """

    def _assemble(self, rows, controls) -> None:
        import ipywidgets as w

        self.numbers = w.HTML()
        self.plot = w.Output()
        self.widget = w.VBox([*rows, self.numbers, self.plot])
        for control in controls:
            control.observe(lambda _: self.update(), names="value")
        self.update()

    def update(self) -> None:  # every explorer defines it
        raise NotImplementedError

    def _show(self, fig) -> None:
        """Replace the plot with ``fig``, keep a PNG of it (the static figure), then close it."""
        import io

        from IPython.display import display

        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        self.png = buf.getvalue()
        with self.plot:
            self.plot.clear_output(wait=True)
            display(fig)
        plt.close(fig)

    def _repr_mimebundle_(self, include=None, exclude=None):
        """The live widget, plus a static PNG of its current figure and numbers.

        A running JupyterLab or Colab shows the widget; a page without a kernel or saved
        widget state (GitHub, nbviewer, the saved outputs of ``solutions/``) shows the PNG,
        so every explorer leaves a picture of the state the text discusses.
        """
        import base64

        if hasattr(self.widget, "_repr_mimebundle_"):   # ipywidgets 8
            bundle = dict(self.widget._repr_mimebundle_(include=include, exclude=exclude) or {})
        else:                                            # ipywidgets 7 (Colab)
            bundle = {"application/vnd.jupyter.widget-view+json": {
                "version_major": 2, "version_minor": 0, "model_id": self.widget.model_id}}
        if getattr(self, "png", None):
            bundle["image/png"] = base64.b64encode(self.png).decode("ascii")
        bundle["text/plain"] = f"{type(self).__name__} (interactive; static figure of its current state)"
        return bundle


class LogLambda:
    """For an explorer with a ``log10_lambda`` slider: ``lam``, the penalty strength it sets
    (``10**value``; the slider's minimum stands for lambda = 0)."""

    @property
    def lam(self) -> float:
        """The penalty strength; the slider's minimum stands for lambda = 0."""
        v = self.log10_lambda.value
        return 0.0 if v <= self.log10_lambda.min else 10.0 ** v


# ---------------------------------------------------------------- lesson 01: overfitting


def ridge_polynomial(x: np.ndarray, y: np.ndarray, degree: int, lam: float) -> np.ndarray:
    """Coefficients ``c`` (lowest power first) minimising ``||V c - y||^2 + lam * ||c||^2``.

    ``V`` is the ``(n, degree+1)`` Vandermonde matrix (column j is ``x**j``). Solved as the
    least-squares problem ``[V; sqrt(lam) I] c = [y; 0]``, which stays stable when
    ``lam`` is tiny and the system is underdetermined.
    """
    V = np.vander(x, degree + 1, increasing=True)
    A = np.vstack([V, np.sqrt(lam) * np.eye(degree + 1)])
    b = np.concatenate([y, np.zeros(degree + 1)])
    return np.linalg.lstsq(A, b, rcond=None)[0]


class PolynomialExplorer(LogLambda, Explorer):
    """Degree and lambda sliders over the noisy-sine data, with live train/test MSE.

    ``degree``: IntSlider; ``log10_lambda``: FloatSlider (lambda = 10**value, the leftmost
    position means lambda = 0). ``train_mse`` / ``test_mse`` hold the current errors and
    ``numbers`` (an HTML widget) shows them.
    """

    def __init__(self, curve, max_degree: int = 12, degree: int = 3, log10_lambda: float = -8.0):
        import ipywidgets as w

        self.curve = curve
        self.degree = w.IntSlider(value=degree, min=0, max=max_degree, description="degree",
                                  continuous_update=False)
        self.log10_lambda = w.FloatSlider(value=log10_lambda, min=-8.0, max=2.0, step=0.5,
                                          description="log10 λ", continuous_update=False)
        self._assemble([w.HBox([self.degree, self.log10_lambda])],
                       [self.degree, self.log10_lambda])

    def update(self) -> None:
        c = self.curve
        self.coef = ridge_polynomial(c.x_train, c.y_train, self.degree.value, self.lam)
        pv = np.polynomial.polynomial.polyval
        self.train_mse = float(np.mean((pv(c.x_train, self.coef) - c.y_train) ** 2))
        self.test_mse = float(np.mean((pv(c.x_test, self.coef) - c.y_test) ** 2))
        self.numbers.value = (f"<b>degree {self.degree.value}, λ = {self.lam:.3g}</b>: "
                              f"train MSE = <span class='train-mse'>{self.train_mse:.4f}</span>, "
                              f"test MSE = <span class='test-mse'>{self.test_mse:.4f}</span>")
        from helpers.plots import polynomial_fits

        fig, ax = plt.subplots(figsize=(6, 3.6))
        polynomial_fits(c, {f"degree {self.degree.value}": self.coef}, ax=ax,
                        title=f"Degree {self.degree.value}, λ = {self.lam:.3g}")
        self._show(fig)


def polynomial_explorer(curve, **kwargs) -> PolynomialExplorer:
    """Build a :class:`PolynomialExplorer`; display it by making it a cell's last value."""
    return PolynomialExplorer(curve, **kwargs)


# ---------------------------------------------------------------- lesson 02: weight decay


def elastic_net_logistic(x, y, l1: float = 0.0, l2: float = 0.0, lr: float = 0.5,
                         steps: int = 2000):
    """Logistic regression by proximal gradient descent (ISTA); returns ``(w, b)``.

    Minimises ``mean(BCE(x @ w + b, y)) + l1 * ||w||_1 + l2 * ||w||^2`` (the bias ``b`` is
    not penalised). Each step: a gradient step on the smooth part (cross-entropy and the L2
    term), then the proximal step of the L1 term, the soft threshold
    ``w = sign(w) * max(|w| - lr * l1, 0)``, which sets weights exactly to 0.
    ``x``: ``(n, d)``, ``y``: ``(n,)`` in {0, 1} (NumPy arrays or tensors); computed in NumPy
    float64; ``w`` is a ``(d,)`` array, ``b`` a float.
    """
    def as_np(a):
        return a.detach().cpu().double().numpy() if hasattr(a, "detach") else np.asarray(a, float)

    x, y = as_np(x), as_np(y)
    n, d = x.shape
    w, b = np.zeros(d), 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
        w = w - lr * (x.T @ (p - y) / n + 2 * l2 * w)
        b = b - lr * float(np.mean(p - y))
        w = np.sign(w) * np.maximum(np.abs(w) - lr * l1, 0.0)
    return w, b


class PenaltyExplorer(LogLambda, Explorer):
    """L1 / L2 / elastic-net logistic regression on the 20-feature task, with live weights.

    ``log10_lambda``: FloatSlider (the penalty strength is ``lam = 10**value``; the leftmost
    position means 0); ``l1_ratio``: FloatSlider in [0, 1], the share of L1 in the penalty
    ``lam * (l1_ratio * ||w||_1 + (1 - l1_ratio) * ||w||^2)``. After each change ``update()``
    refits with :func:`elastic_net_logistic` and sets ``weights`` (``(20,)``), ``n_nonzero``,
    ``train_acc`` and ``val_acc``; ``numbers`` (HTML) shows them.
    """

    def __init__(self, split, steps: int = 2000, log10_lambda: float = -1.5, l1_ratio: float = 1.0):
        import ipywidgets as w

        self.split, self.steps = split, steps
        self.log10_lambda = w.FloatSlider(value=log10_lambda, min=-4.0, max=0.0, step=0.25,
                                          description="log10 λ", continuous_update=False)
        self.l1_ratio = w.FloatSlider(value=l1_ratio, min=0.0, max=1.0, step=0.1,
                                      description="L1 share", continuous_update=False)
        self._assemble([w.HBox([self.log10_lambda, self.l1_ratio])],
                       [self.log10_lambda, self.l1_ratio])

    def update(self) -> None:
        s, r = self.split, float(self.l1_ratio.value)
        self.weights, self.bias = elastic_net_logistic(s.x_train, s.y_train, l1=r * self.lam,
                                                       l2=(1 - r) * self.lam, steps=self.steps)
        self.n_nonzero = int(np.sum(self.weights != 0))

        def acc(x, y):
            x = x.detach().cpu().double().numpy()
            y = y.detach().cpu().double().numpy()
            return float(np.mean(((x @ self.weights + self.bias) > 0) == (y > 0.5)))

        self.train_acc = acc(s.x_train, s.y_train)
        self.val_acc = acc(s.x_val, s.y_val)
        self.numbers.value = (f"<b>λ = {self.lam:.3g}, L1 share {r:.1f}</b>: "
                              f"nonzero weights <span class='nonzero'>{self.n_nonzero}</span> of "
                              f"{len(self.weights)}, train accuracy {self.train_acc:.3f}, "
                              f"validation accuracy <span class='val-acc'>{self.val_acc:.3f}</span>")
        from helpers.plots import weight_bars

        fig, ax = plt.subplots(figsize=(8, 3.2))
        weight_bars({"weights": self.weights}, ax=ax,
                    title=f"Logistic regression weights, λ = {self.lam:.3g}, L1 share {r:.1f}")

        self._show(fig)


# ---------------------------------------------------------------- lesson 03: dropout


class DropoutExplorer(Explorer):
    """Inverted dropout on one 8x8 image, read as a layer of 64 activations ``x``.

    Controls: ``p`` (FloatSlider, the drop probability), ``draw`` (IntSlider: which random
    mask) and ``mode`` (ToggleButtons: ``"train"``, ``"eval"``, and the misconception
    ``"eval, scaled by (1-p): wrong"``). In training mode the output is ``out = x * mask``
    with ``mask = keep / (1 - p)``, ``keep ~ Bernoulli(1 - p)`` per pixel; in eval mode
    ``out = x``; the wrong mode returns ``(1 - p) * x``. Numbers, recomputed by ``update()``:

    - ``scale``: ``1 / (1 - p)`` in training mode, else 1 (or ``1 - p`` in the wrong mode);
    - ``dropped_fraction``: the fraction of the 64 pixels set to zero by this draw;
    - ``output_ratio``: ``sum(out) / sum(x)`` for this draw;
    - ``average_ratio``: the same ratio for the output averaged over ``n_draws`` masks
      (about 1 in training mode: the expected output is ``x``);
    - ``noise``: the standard deviation of ``out_i / x_i`` over the draws, averaged over
      nonzero pixels (``sqrt(p / (1 - p))`` in training mode, 0 otherwise).

    ``image`` (the input, NumPy ``(8, 8)``), ``mask`` and ``output`` hold the arrays drawn.
    """

    MODES = ("train", "eval", "eval, scaled by (1-p): wrong")

    def __init__(self, image, p: float = 0.3, n_draws: int = 2000, seed: int = 0):
        import ipywidgets as w

        if hasattr(image, "detach"):
            image = image.detach().cpu().numpy()
        self.image = np.asarray(image, dtype=np.float64).reshape(8, 8)
        self.n_draws, self.seed = n_draws, seed
        self.p = w.FloatSlider(value=p, min=0.0, max=0.9, step=0.05, description="p (drop)",
                               continuous_update=False)
        self.draw = w.IntSlider(value=0, min=0, max=20, description="draw", continuous_update=False)
        self.mode = w.ToggleButtons(options=list(self.MODES), value="train", description="mode")
        self._assemble([w.HBox([self.p, self.draw]), self.mode],
                       [self.p, self.draw, self.mode])

    def _masks(self, p: float, n: int, seed) -> np.ndarray:
        keep = np.random.default_rng(seed).random((n, 64)) >= p
        return keep / (1.0 - p)

    def update(self) -> None:
        p, x = float(self.p.value), self.image
        mode = self.mode.value
        if mode == "train":
            self.scale = 1.0 / (1.0 - p)
            self.mask = self._masks(p, 1, [self.seed, self.draw.value])[0].reshape(8, 8)
            many = self._masks(p, self.n_draws, [self.seed, 10_000]) * x.reshape(1, 64)
            self.average = many.mean(0).reshape(8, 8)
            nz = x.reshape(-1) != 0
            self.noise = float(np.mean(np.std(many[:, nz] / x.reshape(-1)[nz], axis=0)))
        else:
            self.scale = 1.0 if mode == "eval" else 1.0 - p
            self.mask = np.full((8, 8), self.scale)
            self.average = x * self.scale
            self.noise = 0.0
        self.output = x * self.mask
        self.dropped_fraction = float(np.mean((self.mask == 0)))
        total = x.sum()
        self.output_ratio = float(self.output.sum() / total)
        self.average_ratio = float(self.average.sum() / total)
        if mode == "train":
            text = (f"<b>training, p = {p:.2f}</b>: dropped <span class='dropped'>"
                    f"{self.dropped_fraction:.0%}</span> of 64 units, kept ones multiplied by "
                    f"1/(1-p) = <span class='scale'>{self.scale:.3f}</span>; sum(out)/sum(x): "
                    f"this draw <span class='ratio'>{self.output_ratio:.3f}</span>, averaged over "
                    f"{self.n_draws} draws <span class='avg-ratio'>{self.average_ratio:.3f}</span>; "
                    f"noise per unit std(out/x) = <span class='noise'>{self.noise:.3f}</span> "
                    f"(sqrt(p/(1-p)) = {np.sqrt(p / (1 - p)):.3f})")
        elif mode == "eval":
            text = (f"<b>eval</b>: out = x (ratio <span class='ratio'>{self.output_ratio:.3f}</span>),"
                    " the same as the average training output: nothing to rescale")
        else:
            text = (f"<b>wrong</b>: out = (1-p) x, ratio <span class='ratio'>{self.output_ratio:.3f}"
                    "</span>. The training outputs averaged to x (ratio 1), so the next layer now "
                    f"sees inputs {p:.0%} smaller than in training: scaling at inference belongs to "
                    "the old non-inverted dropout, never on top of the inverted one")
        self.numbers.value = text
        fig, axes = plt.subplots(1, 4, figsize=(11, 3))
        top = 1.0 / (1.0 - p)  # the largest multiplier at this p: one scale for every mode
        vmax = (float(np.max(np.abs(x))) or 1.0) * top
        mask_title = {"train": f"mask: 0 or 1/(1-p) = {top:.2f}",
                      "eval": "multiplier: 1 everywhere"}.get(mode, f"multiplier: 1-p = {1 - p:.2f} everywhere")
        panels = [("input x", x, vmax), (mask_title, self.mask, top),
                  ("output x * mask" if mode == "train" else "output", self.output, vmax),
                  (f"output averaged over {self.n_draws} draws" if mode == "train"
                   else "output (deterministic)", self.average, vmax)]
        for ax, (title, a, vm) in zip(axes, panels):
            ax.imshow(a, cmap="gray_r", vmin=0, vmax=vm)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("pixel column")
            ax.set_ylabel("pixel row")
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(f"Dropout on a layer of 64 activations, p = {p:.2f}, mode: {mode} "
                     "(one gray scale for x and the outputs)")
        fig.subplots_adjust(left=0.03, right=0.99, bottom=0.08, top=0.8, wspace=0.25)
        self._show(fig)


# ---------------------------------------------------------------- lesson 04: batch norm


def simulate_running_stats(momentum, batch_size: int, n_steps: int = 200, shift_at: int = 100,
                           shift: float = 2.0, seed: int = 0) -> dict:
    """Feed a stream of batches through a real ``nn.BatchNorm1d(1, momentum=momentum)``.

    Batch ``t`` holds ``batch_size`` values drawn from ``N(mu_t, 1)`` with ``mu_t = 0`` for
    ``t < shift_at`` and ``mu_t = shift`` from then on; the layer is in training mode, so after
    each batch ``running = (1 - m) * running + m * batch_statistic`` (``m = momentum``, or
    ``1 / t`` for ``momentum=None``, the cumulative average; the variance enters unbiased).
    Returns NumPy arrays of shape ``(n_steps,)``: ``true_mean``, ``batch_mean``,
    ``running_mean``, ``batch_var`` (unbiased) and ``running_var``, each value recorded after
    batch ``t``. The running statistics start at 0 and 1, the true values before the shift.
    """
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm1d(1, momentum=momentum).train()
    true_mean = np.where(np.arange(n_steps) < shift_at, 0.0, float(shift))
    out = {k: np.empty(n_steps) for k in ("batch_mean", "running_mean", "batch_var", "running_var")}
    with torch.no_grad():
        for t in range(n_steps):
            x = torch.randn(batch_size, 1, generator=gen) + float(true_mean[t])
            bn(x)
            out["batch_mean"][t] = x.mean().item()
            out["batch_var"][t] = x.var().item() if batch_size > 1 else 0.0
            out["running_mean"][t] = bn.running_mean.item()
            out["running_var"][t] = bn.running_var.item()
    out["true_mean"] = true_mean
    return out


class RunningStatsExplorer(Explorer):
    """How the running mean of batch norm follows a batch mean that jumps, and how noisy it is.

    Controls: ``log10_momentum`` (FloatSlider; momentum = 10**value), ``batch_size``
    (SelectionSlider) and ``cumulative`` (Checkbox: ``momentum=None``, the cumulative average).
    A stream of ``n_steps`` batches from ``N(0, 1)`` jumps to ``N(shift, 1)`` at ``shift_at``
    (see :func:`simulate_running_stats`). Numbers, recomputed by ``update()``:

    - ``batch_mean_noise``: standard deviation of the batch means before the jump (about
      ``1 / sqrt(batch_size)``);
    - ``running_mean_noise``: standard deviation of the running mean before the jump (for a
      momentum ``m``, about ``sqrt(m / (2 - m)) / sqrt(batch_size)``);
    - ``lag``: batches after the jump until the running mean first reaches 90 % of it
      (``None`` if it never does);
    - ``final_error``: ``|running_mean - shift|`` after the last batch.
    """

    def __init__(self, log10_momentum: float = -1.0, batch_size: int = 16, n_steps: int = 200,
                 shift_at: int = 100, shift: float = 2.0, seed: int = 0):
        import ipywidgets as w

        self.n_steps, self.shift_at, self.shift, self.seed = n_steps, shift_at, shift, seed
        self.log10_momentum = w.FloatSlider(value=log10_momentum, min=-3.0, max=0.0, step=0.1,
                                            description="log10 momentum", continuous_update=False,
                                            style={"description_width": "initial"})
        self.batch_size = w.SelectionSlider(options=[2, 4, 8, 16, 32, 64, 128, 256],
                                            value=batch_size, description="batch size",
                                            continuous_update=False)
        self.cumulative = w.Checkbox(value=False, description="momentum=None (cumulative average)")
        self._assemble([w.HBox([self.log10_momentum, self.batch_size]), self.cumulative],
                       [self.log10_momentum, self.batch_size, self.cumulative])

    @property
    def momentum(self):
        """The momentum passed to ``nn.BatchNorm1d`` (None when ``cumulative`` is ticked)."""
        return None if self.cumulative.value else float(10.0 ** self.log10_momentum.value)

    def update(self) -> None:
        s = simulate_running_stats(self.momentum, self.batch_size.value, self.n_steps,
                                   self.shift_at, self.shift, self.seed)
        self.stats = s
        before = slice(0, self.shift_at)
        self.batch_mean_noise = float(np.std(s["batch_mean"][before]))
        self.running_mean_noise = float(np.std(s["running_mean"][before]))
        reached = np.nonzero(s["running_mean"][self.shift_at:] >= 0.9 * self.shift)[0]
        self.lag = int(reached[0]) + 1 if len(reached) else None
        self.final_error = float(abs(s["running_mean"][-1] - self.shift))
        m = "None (cumulative)" if self.momentum is None else f"{self.momentum:.3g}"
        lag = f"{self.lag} batches" if self.lag is not None else f"not within {self.n_steps - self.shift_at} batches"
        self.numbers.value = (
            f"<b>momentum {m}, batch size {self.batch_size.value}</b>: "
            f"noise of the batch means <span class='batch-noise'>{self.batch_mean_noise:.3f}</span>, "
            f"noise of the running mean <span class='running-noise'>{self.running_mean_noise:.3f}</span>; "
            f"after the jump the running mean needs <span class='lag'>{lag}</span> to reach 90 %; "
            f"error at the end <span class='final-error'>{self.final_error:.3f}</span>")
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
        t = np.arange(1, self.n_steps + 1)
        ax = axes[0]
        ax.plot(t, s["batch_mean"], ".", ms=3, color="lightgray", label="batch mean")
        ax.plot(t, s["true_mean"], "k--", lw=1, label="true mean")
        ax.plot(t, s["running_mean"], color="crimson", label="running_mean")
        ax.set_xlabel("training batch")
        ax.set_ylabel("mean")
        ax.set_title(f"Running mean, momentum {m}")
        ax.legend(fontsize=8)
        ax = axes[1]
        ax.plot(t, s["batch_var"], ".", ms=3, color="lightgray", label="batch variance (unbiased)")
        ax.axhline(1.0, color="k", ls="--", lw=1, label="true variance")
        ax.plot(t, s["running_var"], color="crimson", label="running_var")
        ax.set_xlabel("training batch")
        ax.set_ylabel("variance")
        ax.set_title("Running variance (the jump moves only the mean)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        self._show(fig)


# ---------------------------------------------------------------- lesson 05: label smoothing


def smoothed_loss_vs_gap(gap, num_classes: int, eps: float) -> np.ndarray:
    """Label-smoothed cross-entropy of one sample whose logits are ``[gap, 0, ..., 0]`` (true class first).

    With ``K = num_classes`` the targets are ``q_true = 1 - eps + eps/K`` and ``q_other = eps/K``
    (torch's ``label_smoothing``); ``log p_true = gap - log(e^gap + K - 1)`` and
    ``log p_other = -log(e^gap + K - 1)``, so the loss is
    ``-(q_true * log p_true + (K - 1) * q_other * log p_other)``. ``gap``: scalar or array;
    returns an array of the same shape. ``eps = 0`` gives the plain cross-entropy.
    """
    g = np.asarray(gap, dtype=np.float64)
    k = int(num_classes)
    log_z = np.logaddexp(g, np.log(k - 1.0))
    q_true = 1.0 - eps + eps / k
    q_other = eps / k
    return -(q_true * (g - log_z) + (k - 1) * q_other * (-log_z))


class LabelSmoothingExplorer(Explorer):
    """Sliders for ``eps`` and the number of classes ``K``: the soft targets and the loss they define.

    Left plot: the target distribution ``(1 - eps) * one_hot + eps / K`` (torch, Szegedy et al.)
    next to the ``eps / (K - 1)`` variant (labelled: not torch's definition). Right plot: the
    smoothed cross-entropy of one sample against the logit gap ``z_true - z_other``
    (:func:`smoothed_loss_vs_gap`), with plain cross-entropy for comparison and the minimum
    marked. Numbers, as attributes: ``true_target``, ``other_target``, ``optimal_gap``
    ``= log(true_target / other_target)`` (``inf`` at eps = 0), ``min_loss`` (the entropy of the
    targets, the loss at the optimum), ``loss_at_gap_10`` (the loss when the gap is 10).
    """

    def __init__(self, eps: float = 0.1, num_classes: int = 10, max_gap: float = 14.0):
        import ipywidgets as w

        self.max_gap = max_gap
        self.eps = w.FloatSlider(value=eps, min=0.0, max=0.5, step=0.01, description="eps",
                                 continuous_update=False, readout_format=".2f")
        self.num_classes = w.IntSlider(value=num_classes, min=2, max=20, description="classes K",
                                       continuous_update=False)
        self._assemble([w.HBox([self.eps, self.num_classes])],
                       [self.eps, self.num_classes])

    def update(self) -> None:
        eps, k = float(self.eps.value), int(self.num_classes.value)
        self.true_target = 1.0 - eps + eps / k
        self.other_target = eps / k
        self.optimal_gap = (float(np.log(self.true_target / self.other_target))
                            if eps > 0 else float("inf"))
        q = np.array([self.true_target] + [self.other_target] * (k - 1))
        nz = q[q > 0]
        self.min_loss = float(-(nz * np.log(nz)).sum())
        self.loss_at_gap_10 = float(smoothed_loss_vs_gap(10.0, k, eps))
        gap_txt = "∞ (the loss keeps falling as the gap grows)" if eps == 0 else f"{self.optimal_gap:.3f}"
        self.numbers.value = (
            f"<b>eps = {eps:.2f}, K = {k}</b>: target true class "
            f"<span class='true-target'>{self.true_target:.4f}</span>, every other class "
            f"<span class='other-target'>{self.other_target:.4f}</span>; best logit gap "
            f"<span class='optimal-gap'>{gap_txt}</span>; lowest reachable loss "
            f"<span class='min-loss'>{self.min_loss:.4f}</span>")
        self._show(self._draw(eps, k))

    def _draw(self, eps: float, k: int):
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
        cls = np.arange(k)
        q = np.full(k, self.other_target)
        q[0] = self.true_target
        wrong = np.full(k, eps / (k - 1))
        wrong[0] = 1.0 - eps
        a1.bar(cls - 0.2, q, width=0.4, label="(1-eps)·one_hot + eps/K (torch)")
        a1.bar(cls + 0.2, wrong, width=0.4, color="lightgray", hatch="//", edgecolor="gray",
               label="eps/(K-1) on the others (NOT torch's)")
        a1.set_xticks(cls)
        a1.set_xlabel("class (0 = true class)")
        a1.set_ylabel("target probability")
        a1.set_ylim(0, 1.05)
        a1.set_title(f"Targets for eps = {eps:.2f}, K = {k}")
        a1.legend(fontsize=8)
        gaps = np.linspace(-2.0, self.max_gap, 300)
        a2.plot(gaps, smoothed_loss_vs_gap(gaps, k, 0.0), "--", color="gray",
                label="plain cross-entropy (eps = 0)")
        a2.plot(gaps, smoothed_loss_vs_gap(gaps, k, eps), label=f"smoothed, eps = {eps:.2f}")
        if np.isfinite(self.optimal_gap) and self.optimal_gap <= self.max_gap:
            a2.plot([self.optimal_gap], [self.min_loss], "o", color="crimson",
                    label=f"minimum at gap {self.optimal_gap:.2f}")
        a2.set_xlabel("logit gap z_true - z_other")
        a2.set_ylabel("loss of one sample")
        a2.set_title("Smoothing puts the minimum at a finite gap")
        a2.legend(fontsize=8)
        fig.tight_layout()
        return fig


# ---------------------------------------------------------------- lesson 06: mixup


class MixupExplorer(Explorer):
    """An alpha slider and a draw slider over a set of images: mixup, one draw at a time.

    ``alpha``: FloatLogSlider (0.05 to 10); ``seed``: IntSlider choosing the draw. Each update
    draws, from ``numpy.random.default_rng(seed)``, a pair of examples ``(i, j)`` with
    different labels and then ``lam ~ Beta(alpha, alpha)``, and sets

    - ``mean``, ``variance``: of Beta(alpha, alpha), ``0.5`` and ``1 / (4 (2 alpha + 1))``;
    - ``p_extreme``: ``P(lam < 0.1 or lam > 0.9)``, how often one example nearly hides the other;
    - ``lam``, ``pair``, ``mixed = lam * images[i] + (1 - lam) * images[j]`` (shape ``(C, H, W)``)
      and ``target = lam * one_hot(labels[i]) + (1 - lam) * one_hot(labels[j])`` (NumPy ``(K,)``).

    ``numbers`` (HTML) shows them; ``plot`` (Output) draws the density with the drawn lam and
    the two images with their mix. ``images``: ``(N, C, H, W)`` tensor; ``labels``: ``(N,)``.
    """

    def __init__(self, images, labels, alpha: float = 0.4, seed: int = 0, num_classes: int = 10):
        import ipywidgets as w

        self.images = images.detach().cpu()
        self.labels = labels.detach().cpu()
        self.num_classes = num_classes
        self.alpha = w.FloatLogSlider(value=alpha, base=10, min=-1.3, max=1.0, step=0.05,
                                      description="α", continuous_update=False)
        self.seed = w.IntSlider(value=seed, min=0, max=50, description="draw",
                                continuous_update=False)
        self._assemble([w.HBox([self.alpha, self.seed])],
                       [self.alpha, self.seed])

    def update(self) -> None:
        from scipy.special import betainc

        a = float(self.alpha.value)
        self.mean = 0.5
        self.variance = 1.0 / (4.0 * (2.0 * a + 1.0))
        self.p_extreme = float(betainc(a, a, 0.1) + 1.0 - betainc(a, a, 0.9))
        rng = np.random.default_rng(self.seed.value)
        labels = self.labels.numpy()
        i = int(rng.integers(len(labels)))
        others = np.flatnonzero(labels != labels[i])
        j = int(rng.choice(others)) if len(others) else int(rng.integers(len(labels)))
        self.pair = (i, j)
        self.lam = float(rng.beta(a, a))
        self.mixed = self.lam * self.images[i] + (1 - self.lam) * self.images[j]
        eye = np.eye(self.num_classes)
        self.target = self.lam * eye[labels[i]] + (1 - self.lam) * eye[labels[j]]
        yi, yj = int(labels[i]), int(labels[j])
        self.numbers.value = (
            f"<b>α = {a:.3g}</b>: Beta(α, α) has mean 0.5 and variance "
            f"<span class='variance'>{self.variance:.4f}</span>; "
            f"P(λ &lt; 0.1 or λ &gt; 0.9) = <span class='p-extreme'>{self.p_extreme:.3f}</span>. "
            f"This draw: λ = <span class='lam'>{self.lam:.3f}</span>, target = "
            f"{self.lam:.2f} × '{yi}' + {1 - self.lam:.2f} × '{yj}'")
        from helpers.plots import beta_pdf

        fig, axes = plt.subplots(1, 4, figsize=(11, 2.8),
                                 gridspec_kw={"width_ratios": [2.2, 1, 1, 1]})
        grid = np.linspace(0.001, 0.999, 400)
        axes[0].plot(grid, beta_pdf(grid, a, a))
        axes[0].axvline(self.lam, color="crimson", ls="--", label=f"λ = {self.lam:.3f}")
        axes[0].set_ylim(0, 4)
        axes[0].set_xlabel("λ")
        axes[0].set_ylabel("density")
        axes[0].set_title(f"Beta({a:.3g}, {a:.3g})")
        axes[0].legend(fontsize=8)
        shown = [(self.images[i], f"x_i: a '{yi}'"), (self.images[j], f"x_j: a '{yj}'"),
                 (self.mixed, f"{self.lam:.2f}·x_i + {1 - self.lam:.2f}·x_j")]
        for ax, (img, t) in zip(axes[1:], shown):
            ax.imshow(img[0].numpy(), cmap="gray_r", vmin=0, vmax=1)
            ax.set_title(t, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout()

        self._show(fig)


# ---------------------------------------------------------------- lesson 07: early stopping


def early_stopping_point(val_losses, patience: int, min_delta: float = 0.0,
                         check_every: int = 1) -> tuple:
    """Where early stopping would stop on a recorded validation curve.

    ``val_losses`` holds one loss per epoch (``val_losses[e - 1]`` is epoch ``e``). The rule
    is checked at epochs ``check_every, 2 * check_every, ...``: a check *improves* when
    ``loss < best - min_delta`` (ties do not); training stops at the check where ``patience``
    checks in a row brought no improvement. Returns ``(best_epoch, stop_epoch)``, 1-based
    like :class:`~helpers.training.History`; ``stop_epoch`` is None when the curve ends first.
    """
    best, best_epoch, bad = float("inf"), None, 0
    for epoch in range(check_every, len(val_losses) + 1, check_every):
        loss = float(val_losses[epoch - 1])
        if loss < best - min_delta:
            best, best_epoch, bad = loss, epoch, 0
        else:
            bad += 1
            if bad >= patience:
                return best_epoch, epoch
    return best_epoch, None


class EarlyStoppingExplorer(Explorer):
    """Patience, min_delta and check-interval sliders over a recorded validation curve.

    ``history`` is a :class:`~helpers.training.History` of a run trained to the end (or a
    sequence of per-epoch validation losses). Controls: ``patience`` (IntSlider, counted in
    checks), ``min_delta`` (FloatSlider) and ``check_every`` (IntSlider, epochs between
    validation checks). After ``update()`` the numbers are attributes, shown in ``numbers``:

    - ``best_epoch``, ``stop_epoch`` (None: it never stops), ``epochs_run``;
    - ``wasted_epochs = epochs_run - best_epoch`` (trained, then thrown away by restore-best);
    - ``best_val_loss`` (the restored model's) and ``regret = best_val_loss - min_val_loss``,
      where ``min_val_loss`` (at ``min_epoch``) is the lowest loss of the whole recorded run;
    - ``best_val_acc`` and ``final_val_acc`` (restored model vs the last epoch of the full run),
      when the history records accuracy.
    """

    def __init__(self, history, patience: int = 5, min_delta: float = 0.0, check_every: int = 1,
                 max_patience: int = 30, max_min_delta: float = 0.05):
        import ipywidgets as w

        if hasattr(history, "val_loss"):
            self.val_loss = np.asarray(history.val_loss, dtype=float)
            self.train_loss = np.asarray(history.train_loss, dtype=float)
            acc = getattr(history, "val_acc", None)
            self.val_acc = None if not acc or acc[0] is None else np.asarray(acc, dtype=float)
        else:
            self.val_loss = np.asarray(history, dtype=float)
            self.train_loss, self.val_acc = None, None
        self.epochs = np.arange(1, len(self.val_loss) + 1)
        self.min_epoch = int(np.argmin(self.val_loss)) + 1
        self.min_val_loss = float(self.val_loss[self.min_epoch - 1])
        self.patience = w.IntSlider(value=patience, min=1, max=max_patience, description="patience",
                                    continuous_update=False)
        self.min_delta = w.FloatSlider(value=min_delta, min=0.0, max=max_min_delta, step=0.001,
                                       readout_format=".3f", description="min_delta",
                                       continuous_update=False)
        self.check_every = w.IntSlider(value=check_every, min=1, max=10, description="check every",
                                       continuous_update=False)
        self._assemble([w.HBox([self.patience, self.min_delta, self.check_every])],
                       [self.patience, self.min_delta, self.check_every])

    def update(self) -> None:
        p, d, k = self.patience.value, self.min_delta.value, self.check_every.value
        self.best_epoch, self.stop_epoch = early_stopping_point(self.val_loss, p, d, k)
        n = len(self.val_loss)
        self.epochs_run = n if self.stop_epoch is None else self.stop_epoch
        if self.best_epoch is None:       # fewer epochs than one check interval
            self.wasted_epochs, self.best_val_loss, self.regret = self.epochs_run, None, None
        else:
            self.wasted_epochs = self.epochs_run - self.best_epoch
            self.best_val_loss = float(self.val_loss[self.best_epoch - 1])
            self.regret = self.best_val_loss - self.min_val_loss
        self.best_val_acc = (None if self.val_acc is None or self.best_epoch is None
                             else float(self.val_acc[self.best_epoch - 1]))
        self.final_val_acc = None if self.val_acc is None else float(self.val_acc[-1])
        stop = (f"stops at epoch <b>{self.stop_epoch}</b>" if self.stop_epoch is not None
                else f"never stops (runs all {n} epochs)")
        html = (f"patience {p} checks, min_delta {d:.3f}, a check every {k} epoch(s): {stop}; "
                f"best epoch <b>{self.best_epoch}</b>, wasted epochs "
                f"<b class='wasted'>{self.wasted_epochs}</b>")
        if self.best_val_loss is not None:
            html += (f"<br>restored validation loss {self.best_val_loss:.4f} vs the lowest of the "
                     f"whole run {self.min_val_loss:.4f} (epoch {self.min_epoch}): "
                     f"regret <span class='regret'>{self.regret:.4f}</span>")
        if self.best_val_acc is not None:
            html += (f"<br>validation accuracy of the restored model {self.best_val_acc:.3f}, "
                     f"at the last of {n} epochs {self.final_val_acc:.3f}")
        self.numbers.value = html
        self._show(self.draw().figure)

    def draw(self, ax=None):
        """The curve with the check epochs, the best and stop epochs and the wasted stretch."""
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3.8))
        ax.plot(self.epochs, self.val_loss, color="C1", label="validation loss")
        k = self.check_every.value
        checks = self.epochs[k - 1::k]
        if k > 1:
            ax.plot(checks, self.val_loss[checks - 1], ".", color="C1", label="checks")
        ax.axhline(self.min_val_loss, ls=":", color="gray", lw=1,
                   label=f"lowest of the whole run (epoch {self.min_epoch})")
        if self.best_epoch is not None:
            ax.axvline(self.best_epoch, color="green", ls="--", label=f"best (epoch {self.best_epoch})")
            ax.axvspan(self.best_epoch, self.epochs_run, color="orange", alpha=0.15,
                       label=f"wasted: {self.wasted_epochs} epochs")
        if self.stop_epoch is not None:
            ax.axvline(self.stop_epoch, color="crimson", ls="--", label=f"stop (epoch {self.stop_epoch})")
            ax.axvspan(self.stop_epoch, self.epochs[-1], color="gray", alpha=0.12,
                       label="never trained")
        late = self.val_loss[len(self.val_loss) // 10:]       # skip the first steep drop
        ax.set_ylim(self.min_val_loss - 0.1 * (late.max() - self.min_val_loss) - 1e-3,
                    late.max() + 0.25 * (late.max() - self.min_val_loss) + 1e-3)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_title(f"Patience {self.patience.value} checks, min_delta "
                     f"{self.min_delta.value:.3f}, a check every {self.check_every.value} epoch(s)")
        ax.legend(fontsize=8)
        return ax
