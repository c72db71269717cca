"""Unit tests for the helpers library and the check framework."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from helpers import data, models, seed_everything, widgets
from helpers.checks import core
from helpers.training import History, train


def test_seed_everything_is_reproducible():
    seed_everything(3)
    a = (np.random.rand(), torch.rand(1).item())
    seed_everything(3)
    assert (np.random.rand(), torch.rand(1).item()) == a


def test_noisy_sine_shapes_and_determinism():
    c = data.noisy_sine(n_train=8, n_test=30, seed=1)
    assert c.x_train.shape == (8,) and c.y_test.shape == (30,)
    assert np.all(np.diff(c.x_train) >= 0)
    assert np.array_equal(c.y_train, data.noisy_sine(n_train=8, n_test=30, seed=1).y_train)


def test_twenty_features_label_rule_and_nesting():
    s = data.twenty_features(n_train=60, n_val=400, device="cpu")
    assert s.x_train.shape == (60, 20) and s.x_val.shape == (400, 20)
    assert torch.equal(s.y_train, (s.x_train[:, 0] + s.x_train[:, 1] > 0).float())
    bigger = data.twenty_features(n_train=120, n_val=400, device="cpu")
    assert torch.equal(bigger.x_train[:60], s.x_train)       # growing n only adds examples
    assert torch.equal(bigger.x_val, s.x_val)


def test_moons_and_digits():
    m = data.moons(n_train=50, n_val=20, device="cpu")
    assert m.x_train.shape == (50, 2) and m.y_train.dtype == torch.long
    d = data.digits(device="cpu")
    assert d.x_train.shape[1:] == (1, 8, 8) and 0 <= d.x_train.min() and d.x_train.max() <= 1
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == 1797
    f = data.digits(flat=True, n_train=100, device="cpu")
    assert f.x_train.shape == (100, 64)
    assert len(d.subset_train(50).x_train) == 50


def test_mlp_layer_order():
    net = models.mlp(4, hidden=(8,), out_features=2, dropout=0.3, batch_norm=True)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]
    assert net(torch.randn(5, 4)).shape == (5, 2)


def test_digits_cnn_shapes():
    net = models.DigitsCNN(batch_norm=True, dropout=0.2)
    assert net(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    assert models.count_parameters(net) > 0


def test_train_history_and_learning():
    task = data.twenty_features(n_train=60, n_val=100, device="cpu")
    seed_everything(0)
    h = train(models.mlp(20, (32,), 1), task, epochs=30, lr=1e-2, progress=False)
    assert isinstance(h, History) and len(h) == 30 and h.epoch[0] == 1
    assert h.train_loss[-1] < h.train_loss[0]
    assert h.last("train_acc") > 0.9
    assert 1 <= h.best_epoch() <= 30


def test_train_hooks_regularizer_callbacks_scheduler_batches():
    task = data.moons(n_train=64, n_val=32, device="cpu")
    seed_everything(0)
    net = models.mlp(2, (16,), 2)
    calls = []

    def reg(model):
        calls.append(1)
        return 0.0 * sum(p.sum() for p in model.parameters())

    def stop_at_3(epoch, hist, model):
        return epoch == 3

    h = train(net, task, epochs=10, batch_size=16, regularizer=reg, callbacks=[stop_at_3],
              optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1),
              scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5),
              progress=False)
    assert len(h) == 3 and h.stopped_epoch == 3
    assert len(calls) == 3 * 4                          # 4 batches of 16 per epoch
    assert h.lr == pytest.approx([0.1, 0.05, 0.025])    # lr used in epochs 1, 2, 3


def test_train_is_deterministic_given_seed():
    task = data.moons(n_train=64, n_val=32, device="cpu")
    runs = []
    for _ in range(2):
        seed_everything(5)
        runs.append(train(models.mlp(2, (8,), 2), task, epochs=5, batch_size=16,
                          progress=False).val_loss)
    assert runs[0] == runs[1]


def test_ridge_polynomial_matches_closed_form():
    c = data.noisy_sine(n_train=12, seed=2)
    V = np.vander(c.x_train, 6, increasing=True)
    lam = 0.3
    closed = np.linalg.solve(V.T @ V + lam * np.eye(6), V.T @ c.y_train)
    assert np.allclose(widgets.ridge_polynomial(c.x_train, c.y_train, 5, lam), closed)


# ---------------------------------------------------------------- the check framework
def test_encode_decode_roundtrip():
    obj = {"t": torch.arange(6, dtype=torch.float32).reshape(2, 3), "a": np.array([1, 2]),
           "f": 1.5, "nan": float("nan"), "tup": (1, None, True), "s": np.float32(2.5)}
    dec = core.decode(json.loads(json.dumps(core.encode(obj))))
    assert np.array_equal(core.as_array(dec["t"]), np.arange(6.0).reshape(2, 3))
    assert dec["t"].kind == "torch" and dec["t"].dtype == "float32"
    assert np.array_equal(core.as_array(dec["a"]), [1, 2])
    assert core.as_float(dec["f"]) == 1.5 and np.isnan(core.as_float(dec["nan"]))
    assert isinstance(dec["tup"], tuple) and dec["tup"][2] is True
    assert core.as_float(dec["s"]) == 2.5


def test_capture_turns_exceptions_into_data():
    def boom():
        raise ValueError("bad")
    rec = core.capture(boom)
    with pytest.raises(core.Raised):
        core.as_array(core.decode(rec))


@pytest.mark.parametrize("record", [
    None, "x", {"data": {"__array__": "!!", "shape": [2], "stored": "float64"}},
    {"data": [{"result": {"__array__": "AAAA", "shape": [100], "stored": "float64"}}]},
    {"data": [{"result": {"__array__": "AAAAAAAAAAA=", "shape": [1], "stored": "object"}}]},
    {"data": 5}, {"data": []}, {"raised": "KeyboardInterrupt: "},
])
def test_judge_survives_malformed_records(record):
    v = core.get("ex1.1").run_judge(record)
    assert v.status in ("failed", "error") and not v.passed


def test_check_prints_verdict_outside_a_kernel(capsys):
    from helpers.checks import check
    check("ex1.3", lambda p, f: (float(np.mean((p.mean(0) - f) ** 2) - p.var(0, ddof=1).mean() / len(p)),
                                 float(p.var(0, ddof=1).mean())))
    assert capsys.readouterr().out.strip() == "ex1.3 passed"


def test_unknown_exercise():
    with pytest.raises(KeyError):
        core.get("ex9.9")


_FAKE_LESSON = r'''
import importlib.abc, importlib.util, pathlib, sys, tempfile
import helpers.course as course
course.LESSONS["98"] = ("98_broken", "a lesson whose checks module raises")
course.LESSONS["99"] = ("99_missing", "a lesson without a checks module")
drop = sys.argv[1]
course.LESSONS.pop(drop)
src = pathlib.Path(tempfile.mkdtemp()) / "lesson98.py"
src.write_text("raise RuntimeError('lesson 98 is broken')\n")

class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "helpers.checks.lesson98":
            return importlib.util.spec_from_file_location(name, src)

sys.meta_path.insert(0, Finder())
import helpers.checks
'''


@pytest.mark.parametrize("drop, error", [("98", "No module named 'helpers.checks.lesson99'"),
                                         ("99", "RuntimeError: lesson 98 is broken")])
def test_registry_fails_loudly_on_a_missing_or_broken_lesson_module(drop, error):
    """``import helpers.checks`` imports the checks module of every lesson of course.LESSONS."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _FAKE_LESSON, drop], capture_output=True, text=True)
    assert proc.returncode != 0 and error in proc.stderr, proc.stderr[-1500:]


def test_registry_holds_every_lesson():
    from helpers import checks, course

    assert list(checks.LESSON_MODULES) == list(course.LESSONS)
    for lesson in course.LESSONS:
        assert checks.lesson_exercises(lesson)
