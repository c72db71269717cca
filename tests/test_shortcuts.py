"""The shortcut rule (DESIGN.md, third edition), route by route, on every exercise it applies to.

An answer fails, with a hint naming the call, when one library call computes the exercise's
whole result or when it calls the course's own ``helpers`` (``seed_everything`` and
``get_device`` excepted), whatever route reaches it: the call itself, an alias bound earlier, a
name built from strings, ``torch.ops.aten``, a helper defined in another cell, a thread, or the
kernel's watch switched off first. The kernel's watch decides in the check cell; the grader's
own reading of the answer text (outside the kernel) decides again, so switching the watch off
fails the exercise too. Each shortcut here calls the refused code on small inputs of its own and
returns nothing useful: the refusal, not a wrong value, is what must fail it.
"""

from __future__ import annotations

import functools
import sys
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.checks import core
from helpers.checks.core import PUBLISHED_SEED, run

T = torch.linspace(-1.0, 1.0, 12, dtype=torch.float64).reshape(4, 3)
X = np.column_stack([np.linspace(-1, 1, 8), np.linspace(0, 2, 8) ** 2])
Y = np.linspace(0.0, 1.0, 8)


def _resolve(dotted: str):
    """The object at a dotted name, reached by names built from strings (``getattr`` with
    computed names): the route a reader of the answer's text cannot see."""
    parts = dotted.split(".")
    obj = __import__(parts[0])
    for part in parts[1:]:
        half = len(part) // 2
        obj = getattr(obj, part[:half] + part[half:])
    return obj


# (exercise, the refused callable's dotted name, how a shortcut calls it: f(callable))
LIBRARY = [
    ("ex1.1", "numpy.vander", lambda f: f(np.arange(3.0), 3)),
    ("ex1.1", "sklearn.preprocessing.PolynomialFeatures", lambda f: f(2).fit_transform(X)),
    ("ex1.2", "numpy.polyfit", lambda f: f(X[:, 0], Y, 2)),
    ("ex1.2", "numpy.polynomial.polynomial.polyfit", lambda f: f(X[:, 0], Y, 2)),
    ("ex1.2", "sklearn.linear_model.LinearRegression", lambda f: f().fit(X, Y)),
    ("ex1.4", "sklearn.model_selection.cross_val_score",
     lambda f: f(__import__("sklearn.linear_model").linear_model.Ridge(), X, Y, cv=2)),
    ("ex2.1", "sklearn.linear_model.Ridge", lambda f: f(alpha=1.0).fit(X, Y)),
    ("ex2.4", "torch.nn.functional.softshrink", lambda f: f(T, 0.5)),
    ("ex2.5", "sklearn.linear_model.Lasso", lambda f: f(alpha=0.1).fit(X, Y)),
    ("ex2.6", "torch.optim.SGD", lambda f: f([T.clone().requires_grad_()], lr=0.1)),
    ("ex2.7", "torch.optim.AdamW", lambda f: f([T.clone().requires_grad_()], lr=0.1)),
    ("ex3.1", "torch.nn.functional.dropout", lambda f: f(T, 0.3)),
    ("ex3.1", "torch.ops.aten.native_dropout", lambda f: f(T, 0.3, True)),
    ("ex3.3", "torch.dropout", lambda f: f(T, 0.3, True)),
    ("ex3.5", "torch.renorm", lambda f: f(T, 2, 0, 1.0)),
    ("ex4.1", "torch.nn.functional.batch_norm",
     lambda f: f(T, torch.zeros(3, dtype=T.dtype), torch.ones(3, dtype=T.dtype), training=True)),
    ("ex4.1", "torch.ops.aten.native_batch_norm",
     lambda f: f(T, None, None, torch.zeros(3, dtype=T.dtype), torch.ones(3, dtype=T.dtype),
                 True, 0.1, 1e-5)),
    ("ex4.3", "torch.autograd.grad",
     lambda f: f((T.clone().requires_grad_() ** 2).sum(), [T.clone().requires_grad_()],
                 allow_unused=True)),
    ("ex4.4", "torch.nn.functional.layer_norm", lambda f: f(T, (3,))),
    ("ex4.4", "torch.native_layer_norm", lambda f: f(T, (3,), None, None, 1e-5)),
    ("ex7.2", "torch.optim.lr_scheduler.CosineAnnealingLR",
     lambda f: f(torch.optim.SGD([T.clone().requires_grad_()], lr=0.1), 10)),
    ("ex7.3", "torch.optim.lr_scheduler.LinearLR",
     lambda f: f(torch.optim.SGD([T.clone().requires_grad_()], lr=0.1))),
]


def _kind(ex_id: str) -> str:
    return core.get(ex_id).kind


def _answer(ex_id: str, body):
    """A function or class answer (by the exercise's kind) whose every call runs ``body()``."""
    if _kind(ex_id) == "class":
        class Answer(nn.Module):
            def __init__(self, *args, **kwargs):
                super().__init__()
                body()

            def forward(self, x, *args, **kwargs):
                body()
                return x

            def step(self, *args, **kwargs):
                body()
                return True

            def restore_best(self, *args, **kwargs):
                body()
        return Answer

    def answer(*args, **kwargs):
        body()
        return None
    return answer


def _in_thread(body):
    def go():
        box = {}
        t = threading.Thread(target=lambda: box.update(r=body()))
        t.start()
        t.join()
        return box.get("r")
    return go


def _watch_off(body):
    def go():
        previous = sys.getprofile()
        sys.setprofile(None)
        try:
            return body()
        finally:
            sys.setprofile(previous)
    return go


def _routes(dotted: str, call):
    """The routes to the refused callable: name -> a body that calls it that way."""
    direct = _resolve(dotted)                    # an alias, bound before any check runs
    inner = functools.partial(call, direct)       # "a helper defined in another cell"

    def other_cell():
        return inner()
    routes = {
        "alias": lambda: call(direct),
        "name built from strings": lambda: call(_resolve(dotted)),
        "helper in another cell": other_cell,
        "thread": _in_thread(lambda: call(direct)),
        "watch switched off": _watch_off(lambda: call(direct)),
    }
    return routes


def _refused(verdict, dotted) -> bool:
    leaf = dotted.split(".")[-1]
    return verdict.status == "failed" and (leaf in verdict.message or "cannot follow" in verdict.message)


CASES = [(ex, dotted, route, body) for ex, dotted, call in LIBRARY
         for route, body in _routes(dotted, call).items()]


@pytest.mark.parametrize("ex_id,dotted,route,body", CASES,
                         ids=[f"{c[0]}-{c[1].split('.')[-1]}-{c[2]}" for c in CASES])
def test_a_refused_library_call_fails_by_every_route(ex_id, dotted, route, body):
    assert dotted.removeprefix("torch.ops.aten.") in " ".join(core.get(ex_id).forbid) or \
        any(dotted.startswith(f.removesuffix("*")) for f in core.get(ex_id).forbid), \
        f"{ex_id} does not list {dotted}"
    verdict = run(ex_id, _answer(ex_id, body), seed=PUBLISHED_SEED)[0]
    assert _refused(verdict, dotted), verdict.text()


def test_label_smoothing_through_torch_C_is_refused_in_ex52():
    def body():
        logits = torch.randn(4, 3, dtype=torch.float64)
        return torch._C._nn.cross_entropy_loss(logits, torch.tensor([0, 1, 2, 0]), None, 1, -100, 0.1)
    for route in (body, _in_thread(body), _watch_off(body)):
        v = run("ex5.2", _answer("ex5.2", route))[0]
        assert v.status == "failed" and ("cross_entropy" in v.message or "cannot follow" in v.message), v.text()


# ---------------------------------------------------------------- the course's own helpers

def _helpers_calls():
    """Routes into helpers: the public helper that does an exercise's work, and the checks'
    own reference code reached by a module name built from strings."""
    from helpers import data, models, training
    lesson01 = __import__("helpers.checks.lesson" + "01", fromlist=["_"])
    return {
        "helpers.data.random_flip": lambda: data.random_flip(torch.zeros(2, 1, 3, 3), None, 0.5),
        "helpers.models.dropout_passes": lambda: models.dropout_passes(
            nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.2)), torch.zeros(2, 3), 3),
        "helpers.training.early_stopping": lambda: training.early_stopping(3),
        "helpers.checks.lesson01 (importlib)": lambda: lesson01._vander(np.arange(3.0), 2),
    }


HELPERS_ROUTES = list(_helpers_calls().items())


@pytest.mark.parametrize("ex_id", sorted(core.REGISTRY) if core.REGISTRY else [])
def test_a_call_into_helpers_fails_every_exercise(ex_id):
    """Every exercise: the checks' reference code, reached by a built module name, directly, in
    a thread and with the watch off (the lesson 01 reference stands in for any helper)."""
    from helpers import course  # noqa: F401 - the registry is filled by helpers.checks
    _, call = HELPERS_ROUTES[-1]
    for body in (call, _in_thread(call), _watch_off(call)):
        v = run(ex_id, _answer(ex_id, body))[0]
        # (ex1.1 names numpy.vander first: the reference it reached calls it)
        assert v.status == "failed" and ("helpers" in v.message or "cannot follow" in v.message
                                         or "numpy.vander" in v.message), (ex_id, v.text())


@pytest.mark.parametrize("ex_id,name", [("ex6.1", "helpers.data.random_flip"),
                                        ("ex3.4", "helpers.models.dropout_passes")])
def test_the_helper_that_does_the_work_is_refused(ex_id, name):
    call = dict(HELPERS_ROUTES)[name]
    v = run(ex_id, _answer(ex_id, call))[0]
    assert v.status == "failed" and name.rsplit(".", 1)[-1] in v.message, v.text()


def test_early_stopping_helper_wrapped_as_ex71_is_refused():
    from helpers import training

    class EarlyStopping:
        def __init__(self, patience, min_delta=0.0):
            self.patience, self.min_delta = patience, min_delta
            self.best_loss, self.best_epoch, self.history = float("inf"), None, []

        def step(self, val_loss, model):
            self.history.append(val_loss)
            training.early_stopping(self.patience, self.min_delta)
            return False

        def restore_best(self, model):
            pass
    v = run("ex7.1", EarlyStopping)[0]
    assert v.status == "failed" and "early_stopping" in v.message, v.text()


def test_seed_everything_and_get_device_stay_allowed():
    import math

    from helpers import get_device, seed_everything

    def cosine_lr(step, total_steps, lr_max, lr_min=0.0):
        seed_everything(1)
        get_device()
        return lr_min + (lr_max - lr_min) * (1 + math.cos(math.pi * step / total_steps)) / 2
    v = run("ex7.2", cosine_lr)[0]
    assert v.passed, v.text()


def test_a_model_the_check_passes_in_is_the_learners_to_use():
    """ex3.4 passes in models (some built by helpers.models): their forward is fine."""
    def mc(model, x, n_samples):
        modes = {m: m.training for m in model.modules()}
        model.eval()
        for m in model.modules():
            if isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
                m.train()
        with torch.no_grad():
            p = torch.stack([torch.softmax(model(x), dim=-1) for _ in range(n_samples)])
        for m, t in modes.items():
            m.train(t)
        return p.mean(0), p.std(0)
    v = run("ex3.4", mc)[0]
    assert v.passed, v.text()
