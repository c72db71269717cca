"""Lesson 01's PolynomialExplorer driven through its controls.

The lesson displays ``widgets.polynomial_explorer(curve, max_degree=12, degree=9)``; moving
the degree or the log10 λ slider must refit and change the train/test MSE shown in
``numbers`` and redraw the plot in the ``plot`` Output widget.

Two ways in:

- in a real IPython kernel, through nbclient, which plays the part of the front end (an
  Output widget's contents are only ever captured by a front end, never on the kernel side):
  this is the path a learner's notebook takes, and the only one where ``plot`` gets outputs;
- in plain Python (no kernel), as the module docstring of ``helpers.widgets`` promises
  ("the explorers can be driven from Python (and tested)").

Other lessons' explorers are tested in their own ``tests/test_lessonNN.py``.
"""

from __future__ import annotations

import json

import matplotlib
import nbformat
import pytest
from nbclient import NotebookClient

# Same data as the lesson (notebooks/01_overfitting.ipynb, section 1).
CURVE = "data.noisy_sine(n_train=10, n_test=200, noise=0.25, seed=0)"

SNAPSHOT = '''
import json
def _snap(ex):
    return {"degree": ex.degree.value, "log10_lambda": ex.log10_lambda.value, "lam": ex.lam,
            "train": ex.train_mse, "test": ex.test_mse, "html": ex.numbers.value,
            "plot_id": ex.plot.model_id, "numbers_id": ex.numbers.model_id}
'''


def _png_outputs(outputs) -> list[str]:
    return [o["data"]["image/png"] for o in outputs
            if o.get("output_type") in ("display_data", "execute_result")
            and "image/png" in o.get("data", {})]


def _snap_from(cell) -> dict:
    text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream"
                   and o.get("name") == "stdout")
    line = [ln for ln in text.splitlines() if ln.startswith("SNAP ")]
    assert line, f"cell printed no snapshot; outputs: {cell.outputs}"
    return json.loads(line[-1][len("SNAP "):])


def _check_mse_behaviour(start: dict, d9: dict, d9_ridge: dict, d3: dict) -> None:
    """What the lesson's text claims about the explorer (markdown before the widget cell)."""
    # Degree 9, λ = 0 (slider at its minimum): 10 coefficients through 10 points.
    assert start["degree"] == 9 and start["lam"] == 0.0
    assert start["train"] < 1e-6, start
    assert start["test"] > 10.0, start                    # wild swings between the points
    # Degree 3 fits: low error on both sets.
    assert d3["train"] < 0.1 and d3["test"] < 0.2, d3
    assert d3["test"] < start["test"] / 100
    # Degree 9 again: same numbers as at the start (the fit is a pure function of the controls).
    assert d9["degree"] == 9 and d9["train"] == pytest.approx(start["train"], abs=1e-9)
    assert d9["test"] == pytest.approx(start["test"], rel=1e-9)
    # Raising λ at degree 9: test error falls, training error rises.
    assert d9_ridge["lam"] == pytest.approx(10 ** d9_ridge["log10_lambda"])
    assert d9_ridge["test"] < d9["test"] / 10, (d9, d9_ridge)
    assert d9_ridge["train"] > d9["train"] + 1e-3, (d9, d9_ridge)
    # The HTML the learner reads says so, in the spans the browser test looks for.
    for s in (start, d3, d9_ridge):
        assert f"<span class='train-mse'>{s['train']:.4f}</span>" in s["html"]
        assert f"<span class='test-mse'>{s['test']:.4f}</span>" in s["html"]
        assert f"degree {s['degree']}" in s["html"]
    assert len({start["html"], d3["html"], d9_ridge["html"]}) == 3


def test_polynomial_explorer_in_a_kernel(tmp_path):
    """Build the lesson's explorer in a kernel, move both sliders from Python, read back."""
    cells = [
        "%matplotlib inline\nfrom helpers import data, widgets\n" + SNAPSHOT
        + f"curve = {CURVE}\n"
        "explorer = widgets.polynomial_explorer(curve, max_degree=12, degree=9)\n"
        "print('SNAP', json.dumps(_snap(explorer)))\n"
        "explorer",                                      # displayed, as in the lesson
        "explorer.degree.value = 3\nprint('SNAP', json.dumps(_snap(explorer)))",
        "explorer.degree.value = 9\nprint('SNAP', json.dumps(_snap(explorer)))",
        "explorer.log10_lambda.value = -2.0\nprint('SNAP', json.dumps(_snap(explorer)))",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = NotebookClient(nb, kernel_name="python3", timeout=300,
                            resources={"metadata": {"path": str(tmp_path)}})
    snaps, plots = [], []
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            client.execute_cell(cell, i)
            errors = [o for o in cell.outputs if o.get("output_type") == "error"]
            assert not errors, f"cell {i} raised: {errors[0]['ename']}: {errors[0]['evalue']}"
            snap = _snap_from(cell)
            snaps.append(snap)
            # nbclient routes the Output widget's messages into the widget's state, as
            # JupyterLab does: the plot as the learner would see it after this cell.
            plot_state = client.widget_state.get(snap["plot_id"], {})
            plots.append(_png_outputs(plot_state.get("outputs", [])))
    start, d3, d9, d9_ridge = snaps

    # The explorer was displayed as a widget view, not as text.
    views = [o for o in nb.cells[0].outputs
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 1, nb.cells[0].outputs

    _check_mse_behaviour(start, d9, d9_ridge, d3)

    # The plot: exactly one figure after each move (clear_output(wait=True) replaces it),
    # and a different picture for a different fit.
    assert [len(p) for p in plots] == [1, 1, 1, 1], [len(p) for p in plots]
    assert plots[0][0] != plots[1][0]                     # degree 9 -> degree 3
    assert plots[3][0] != plots[2][0]                     # λ raised at degree 9
    # The HTML widget's synced state is what a front end renders.
    numbers = client.widget_state.get(start["numbers_id"], {})
    assert numbers.get("value") == d9_ridge["html"]


def test_polynomial_explorer_in_plain_python():
    """No kernel, non-interactive backend: the explorer still computes and shows its numbers.

    (A regression test: ``update()`` once called ``plt.show(fig)``, which only the inline
    backend tolerates; under Agg it raised TypeError.)
    """
    from helpers import data, widgets

    previous = matplotlib.get_backend()
    matplotlib.use("Agg", force=True)
    try:
        curve = eval(CURVE, {"data": data})
        ex = widgets.polynomial_explorer(curve, max_degree=12, degree=9)

        def snap():
            return {"degree": ex.degree.value, "log10_lambda": ex.log10_lambda.value,
                    "lam": ex.lam, "train": ex.train_mse, "test": ex.test_mse,
                    "html": ex.numbers.value}

        start = snap()
        ex.degree.value = 3
        d3 = snap()
        ex.degree.value = 9
        d9 = snap()
        ex.log10_lambda.value = -2.0
        d9_ridge = snap()
        _check_mse_behaviour(start, d9, d9_ridge, d3)
    finally:
        import matplotlib.pyplot as plt

        plt.close("all")
        matplotlib.use(previous, force=True)
