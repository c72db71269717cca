"""Interactive explorers built on ipywidgets.

Each explorer is a small class holding its controls, the numbers it shows and a
``widget`` to display; ``update()`` recomputes everything from the controls, so the
explorers can be driven from Python (and tested) as well as with the mouse.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


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


class PolynomialExplorer:
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
        self.numbers = w.HTML()
        self.plot = w.Output()
        self.widget = w.VBox([w.HBox([self.degree, self.log10_lambda]), self.numbers, self.plot])
        self.degree.observe(lambda _: self.update(), names="value")
        self.log10_lambda.observe(lambda _: self.update(), names="value")
        self.update()

    @property
    def lam(self) -> float:
        """The penalty strength; the slider's minimum stands for lambda = 0."""
        v = self.log10_lambda.value
        return 0.0 if v <= self.log10_lambda.min else 10.0 ** v

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

        with self.plot:
            self.plot.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(6, 3.6))
            polynomial_fits(c, {f"degree {self.degree.value}": self.coef}, ax=ax,
                            title=f"Degree {self.degree.value}, λ = {self.lam:.3g}")
            plt.show(fig)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def polynomial_explorer(curve, **kwargs) -> PolynomialExplorer:
    """Build a :class:`PolynomialExplorer`; display it by making it a cell's last value."""
    return PolynomialExplorer(curve, **kwargs)
