"""The shared check mechanisms of helpers/checks/core.py, lesson-independent.

Case seeds, the library spy and the source scan, captured prints, the "run the answer cell
first" and "your latest answer cell did not run" messages, and the judging idioms.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.checks import core
from helpers.checks.core import Fail, Value


# ---------------------------------------------------------------- case seeds

def test_case_seed_reads_the_environment(monkeypatch):
    monkeypatch.delenv(core.SEED_ENV, raising=False)
    assert core.case_seed() == core.PUBLISHED_SEED
    monkeypatch.setenv(core.SEED_ENV, "98765")
    assert core.case_seed() == 98765
    monkeypatch.setenv(core.SEED_ENV, "not a number")
    assert core.case_seed() == core.PUBLISHED_SEED


def test_case_rng_is_reproducible_and_separates_salts_and_seeds():
    a = core.case_rng(3, 1201).standard_normal(5)
    assert np.array_equal(a, core.case_rng(3, 1201).standard_normal(5))
    assert not np.array_equal(a, core.case_rng(4, 1201).standard_normal(5))
    assert not np.array_equal(a, core.case_rng(3, 1202).standard_normal(5))


def _toy_exercise(ex_id="ex99.1", **kw):
    """A seeded toy exercise: ``double(x)`` on inputs drawn from the case seed."""
    def cases(seed):
        return [core.case_rng(seed, 9901).standard_normal(4)]

    def probe(fn, seed):
        return [{"result": core.capture(fn, torch.from_numpy(x.copy()))} for x in cases(seed)]

    def judge(data, seed):
        for x, got in zip(cases(seed), data, strict=True):
            a = core.as_array(got["result"])
            if not core.close(a, 2 * x):
                raise Fail("not twice x")

    ex = core.exercise(ex_id, "double", probe, judge, **kw)
    return ex


def test_a_record_replayed_at_another_seed_fails():
    ex = _toy_exercise()
    try:
        verdict, record = core.run(ex.id, lambda x: 2 * x, seed=0)
        assert verdict.passed and record["seed"] == 0
        assert ex.run_judge(record, 0).passed
        assert not ex.run_judge(record, 1).passed     # the judge uses its own seed
        assert core.run(ex.id, lambda x: 2 * x, seed=1)[0].passed
    finally:
        core.REGISTRY.pop(ex.id, None)


# ---------------------------------------------------------------- library refusal

def test_spied_library_call_fails_with_the_hint_and_is_restored():
    ex = _toy_exercise("ex99.2", forbid=("torch.mul",), forbid_hint="think about addition")
    original = torch.mul
    try:
        v, record = core.run(ex.id, lambda x: torch.mul(x, 2))
        assert v.status == "failed"
        assert "torch.mul" in v.message and "think about addition" in v.message
        assert record["library"] == ["torch.mul"]
        assert torch.mul is original
        assert core.run(ex.id, lambda x: x + x)[0].passed
    finally:
        core.REGISTRY.pop(ex.id, None)


def test_subclassing_a_forbidden_module_is_flagged():
    def probe(cls, seed):
        return {"out": core.capture(lambda: cls(0.3).eval()(torch.ones(2, 3)))}

    ex = core.exercise("ex99.3", "Drop", probe, lambda data, seed: None, kind="class",
                       forbid=("torch.nn.Dropout.forward", "torch.nn.functional.dropout"))
    try:
        class Sub(nn.Dropout):
            pass

        class Wrap(nn.Module):
            def __init__(self, p):
                super().__init__()
                self.p = p

            def forward(self, x):
                return F.dropout(x, self.p, self.training)

        class Own(nn.Module):
            def __init__(self, p):
                super().__init__()
                self.p = p

            def forward(self, x):
                return x

        assert core.run(ex.id, Sub)[0].status == "failed"
        assert core.run(ex.id, Wrap)[0].status == "failed"
        assert core.run(ex.id, Own)[0].passed
    finally:
        core.REGISTRY.pop(ex.id, None)


def test_refused_calls_are_seen_through_aliases_and_wrappers():
    """Calls are recognised by what is called, not by the name used: an alias bound before the
    probe started, a built-in kept in a variable, and a library module kept inside the answer."""
    from torch.nn.functional import dropout as bound_early
    kept = torch.dropout

    def probe(cls, seed):
        return {"out": core.capture(lambda: cls(0.3).train()(torch.ones(2, 3)))}

    ex = core.exercise("ex99.4", "Drop", probe, lambda data, seed: None, kind="class",
                       forbid=("torch.nn.Dropout.forward", "torch.nn.functional.dropout",
                               "torch.dropout"))

    def module(forward):
        return type("Drop", (nn.Module,), {
            "__init__": lambda self, p: (nn.Module.__init__(self), setattr(self, "p", p))[0],
            "forward": forward})

    inner = type("Drop", (nn.Module,), {
        "__init__": lambda self, p: (nn.Module.__init__(self), setattr(self, "d", nn.Dropout(p)))[0],
        "forward": lambda self, x: self.d(x)})
    try:
        for cls, name in ((module(lambda self, x: bound_early(x, self.p, self.training)),
                           "torch.nn.functional.dropout"),
                          (module(lambda self, x: kept(x, self.p, self.training)), "torch.dropout"),
                          (inner, "torch.nn.Dropout")):
            v, record = core.run(ex.id, cls)
            assert v.status == "failed" and name in record["library"], (name, record)
        own = module(lambda self, x: x * (torch.rand_like(x) > self.p) / (1 - self.p))
        assert core.run(ex.id, own)[0].passed
        import sys
        assert sys.getprofile() is None         # the watch ends with the probe
    finally:
        core.REGISTRY.pop(ex.id, None)


def test_a_conditional_refusal_looks_at_the_arguments():
    """``watch_if``: F.cross_entropy is refused with label smoothing, allowed without it."""
    from torch.nn.functional import cross_entropy as ce

    def refuse(args):
        return "smoothed" if float(args.get("label_smoothing") or 0) else None

    def probe(fn, seed):
        return {"out": core.capture(fn, torch.tensor([[2.0, -1.0, 0.5]]), torch.tensor([0]))}

    ex = core.exercise("ex99.5", "loss", probe, lambda data, seed: None,
                       watch_if=(("torch.nn.functional.cross_entropy", refuse),))
    try:
        assert core.run(ex.id, lambda z, y: ce(z, y, label_smoothing=0.1))[1]["library"] == ["smoothed"]
        assert core.run(ex.id, lambda z, y: nn.CrossEntropyLoss(label_smoothing=0.2)(z, y))[0].status == "failed"
        assert core.run(ex.id, lambda z, y: ce(z, y))[0].passed
    finally:
        core.REGISTRY.pop(ex.id, None)


@pytest.mark.parametrize("dotted,public", [
    ("torch.nn.modules.dropout.Dropout.forward", "torch.nn.Dropout"),
    ("torch.nn.modules.batchnorm._BatchNorm.forward", "torch.nn.BatchNorm1d/2d"),
    ("torch.nn.functional.dropout", "torch.nn.functional.dropout"),
])
def test_refused_names_are_the_ones_a_learner_knows(dotted, public):
    assert core._public_name(dotted) == public


@pytest.mark.parametrize("source,found", [
    ("def f(x):\n    return F.dropout(x, 0.3)", ["torch.nn.functional.dropout"]),
    ("from torch.nn.functional import dropout\ndef f(x):\n    return dropout(x)",
     ["torch.nn.functional.dropout"]),
    ("class Dropout(nn.Dropout):\n    pass", ["torch.nn.Dropout"]),
    ("class Dropout(nn.Module):\n    def forward(self, x):\n        return x * 2", []),
    ("def f(logits, y):\n    return F.cross_entropy(logits, y, label_smoothing=0.1)",
     ["label_smoothing"]),
    ("def f(x):\n    return x +", []),   # unparsable text uses nothing
])
def test_source_scan(source, found):
    got = core.forbidden_in_source(source, ("torch.nn.functional.dropout", "torch.nn.Dropout.forward"),
                                   ("label_smoothing",))
    assert got == found


@pytest.mark.parametrize("source,found", [
    ("def f(x):\n    return getattr(torch, 'drop' + 'out')(x)", ["getattr with a computed name"]),
    ("def f(x):\n    return getattr(x, 'shape')", []),
    ("def f(x):\n    import importlib\n    return importlib.import_module('torch').dropout(x)",
     ["importlib"]),
    ("def f(x):\n    return vars(F)['dropout'](x)", ["vars"]),
    ("def f(x):\n    return F.__dict__['drop' 'out'](x)", ["__dict__"]),
    ("import sys\ndef f(x):\n    sys.setprofile(None)\n    return x", ["setprofile"]),
    ("import threading\ndef f(x):\n    return x", ["threading"]),
    ("def f(x):\n    return sys.modules['torch'].dropout(x)", ["sys.modules"]),
    ("def f(x):\n    with torch._C.DisableTorchFunction():\n        return x",
     ["DisableTorchFunction"]),
    ("import re\ndef f(x):\n    return re.compile('a')", []),
    ("def f(x):\n    return eval('x')", ["eval"]),
])
def test_opaque_routes_are_named(source, found):
    assert core.opaque_routes(source) == found


def test_the_graders_reading_follows_helpers_defined_in_other_answer_cells():
    ex = core.Exercise("ex0.9", "f", lambda a: {}, lambda d: None,
                       forbid=("torch.nn.functional.dropout", "torch.optim.*", "numpy.polynomial.Polynomial.fit"))
    others = {"ex0.1": "def g(x):\n    return F.dropout(x, 0.3)",
              "ex0.2": "def h(x):\n    return g(x) * 1",
              "ex0.3": "def unrelated(x):\n    from helpers.data import random_flip\n    return x"}
    assert "torch.nn.functional.dropout" in ex.shortcut_in_sources("def f(x):\n    return h(x)", others)
    assert ex.shortcut_in_sources("def f(x):\n    return x * 2", others) == ""
    assert "helpers.models.dropout_passes" in ex.shortcut_in_sources(
        "from helpers.models import dropout_passes\ndef f(m, x, n):\n    return dropout_passes(m, x, n)")
    assert ex.shortcut_in_sources("from helpers import seed_everything\ndef f(x):\n    return x") == ""
    assert "torch.optim" in ex.shortcut_in_sources("def f(w):\n    return torch.optim.AdamW([w])")
    # a method of a class: the class is what the scan looks for, never a bare ".fit"
    assert ex.shortcut_in_sources("def f(x, y):\n    return model.fit(x, y)") == ""
    assert "Polynomial" in ex.shortcut_in_sources("def f(x, y):\n    return Polynomial.fit(x, y, 2)")


# ---------------------------------------------------------------- judging idioms

def test_expect_array_names_kind_and_dtype():
    v32 = Value(np.zeros(3), "torch", "float32")
    with pytest.raises(Fail, match="float32, the input float64"):
        core.expect_array(v32, "out", dtype="float64")
    with pytest.raises(Fail, match="NumPy array; return a torch tensor"):
        core.expect_array(Value(np.zeros(3), "numpy", "float64"), "out", kind="torch")
    assert core.expect_array(Value(np.ones(2), "torch", "float64"), "out", shape=(2,),
                             dtype="float64", kind="torch").shape == (2,)


def test_snapshot_and_changed():
    t, a = torch.arange(3.0), np.arange(3.0)
    snap = core.snapshot(t, a, 5)
    assert not core.changed(snap, t, a, 5)
    t[0] = 9
    assert core.changed(snap, t, a, 5)


def test_match_mistake_names_the_first_matching_mistake():
    core.match_mistake("case", np.ones(2), [(np.zeros(2), "zeros")])   # no match: no failure
    with pytest.raises(Fail, match="case: halved"):
        core.match_mistake("case", np.ones(2), [(np.full(2, 2.0), "doubled"), (np.ones(2), "halved")])


def test_prints_are_captured_and_summarised():
    ex = _toy_exercise("ex99.4")
    try:
        def noisy(x):
            for i in range(1000):
                print("line", i)
            return 2 * x

        v, record = core.run(ex.id, noisy)
        assert v.passed
        assert record["printed"]["lines"] == 1000
        note = core.printed_note(record)
        assert "1,000 lines" in note and "more lines" in note and note.count("\n") < 12
    finally:
        core.REGISTRY.pop(ex.id, None)


def test_unknown_lesson_fails_loudly():
    with pytest.raises(KeyError):
        core.load_lesson("42")
    with pytest.raises(KeyError):
        core.get("ex42.1")


# ---------------------------------------------------------------- in a real kernel

@pytest.mark.slow
def test_check_cell_messages_in_a_kernel():
    """What a learner sees in a real kernel: a check before its answer, a stub, a misspelt
    name, a passing answer with prints, a stale answer after a syntax error (never "passed" on
    the first line), and an exception inside the learner's code (their line, not NumPy's)."""
    import nbformat
    from nbclient import NotebookClient

    stub = 'def cosine_lr(step, total_steps, lr_max, lr_min=0.0):\n    raise NotImplementedError("ex7.2: write your answer here")'
    good = ("import math\n"
            "def cosine_lr(step, total_steps, lr_max, lr_min=0.0):\n"
            "    print('debug')\n"
            "    return lr_min + (lr_max - lr_min) * (1 + math.cos(math.pi * step / total_steps)) / 2")
    cells = [
        "from helpers.checks import check",
        'check("ex7.2")',                                        # 1: before the answer cell
        "def cosin_lr(step, total_steps, lr_max, lr_min=0.0):\n    return 0.0",
        'check("ex7.2")',                                        # 3: only a misspelt name exists
        stub,
        'check("ex7.2")',                                        # 5: the untouched stub
        good,
        'check("ex7.2")',                                        # 7: passes, with prints
        "def cosine_lr(step, total_steps, lr_max, lr_min=0.0)\n    return 0.0",
        'check("ex7.2")',                                        # 9: stale after a syntax error
        "import numpy as np\ndef cosine_lr(step, total_steps, lr_max, lr_min=0.0):\n"
        "    return float(np.linalg.inv(np.zeros((2, 2)))[0, 0])",
        'check("ex7.2")',                                        # 11: an exception in NumPy
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in cells]
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()

    def text(i):
        return "\n".join(o.get("text", "") or o.get("data", {}).get("text/plain", "")
                         for o in nb.cells[i].outputs)

    assert "run the answer cell above first" in text(1) and "NameError" not in text(1)
    assert text(5).startswith("ex7.2: not answered yet") and text(5).count("\n") == 0
    assert "NotImplementedError:" not in text(5) and "error" not in text(5).split(".")[0]
    assert "`cosin_lr`" in text(3) and "exact name `cosine_lr`" in text(3)
    assert "ex7.2 passed" in text(7) and "your code printed" in text(7)
    first = text(9).splitlines()[0]
    assert "passed" not in first and "did not run" in first and "SyntaxError on line 1" in first
    assert "older `cosine_lr`" in text(9)
    assert "in `cosine_lr`, line 3" in text(11) and "LinAlgError" in text(11)
    assert "Likely cause" in text(11) and "numpy/" not in text(11)
    assert all(o.get("output_type") != "error" for i in (1, 3, 5, 7, 9, 11) for o in nb.cells[i].outputs)


def test_a_check_leaves_the_global_generators_as_it_found_them():
    """Probes seed torch, NumPy and Python's generators; the learner's states come back after."""
    import random

    torch.manual_seed(1234)
    np.random.seed(1234)
    random.seed(1234)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(1234)
    np.random.seed(1234)
    random.seed(1234)
    core.run("ex3.1", lambda x, p, g=None: x)          # a wrong answer, probed all the same
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_side_effects_are_recorded_raw_and_decided_by_the_judge(monkeypatch):
    """An answer that modifies its input in place and patches the kernel's comparisons (and
    torch's own Tensor.detach/numpy) cannot make the record say the input is unchanged."""
    x0 = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    x = x0.clone()
    saved = x.clone()

    def sneaky(t):
        t.mul_(2)                                          # the side effect
        monkeypatch.setattr(np, "array_equal", lambda *a, **k: True)
        monkeypatch.setattr(torch, "equal", lambda *a, **k: True)
        monkeypatch.setattr(torch.Tensor, "detach", lambda self: saved)
        monkeypatch.setattr(torch.Tensor, "numpy", lambda self, **k: saved.clone().numpy())
        return t
    core.capture(sneaky, x)
    after = core.decode(core.inputs_after(x))
    monkeypatch.undo()
    assert core.input_changed(after, x0)
    assert not core.input_changed(core.decode(core.inputs_after(x0.clone())), x0)
    assert core.input_changed(core.decode(core.inputs_after(x0[:1].clone())), x0)   # shape


def test_mistake_ids_are_stable_across_seeds_and_learners():
    """The class report counts mistakes by id: the same mistake at two case seeds is one id."""
    def reversed_columns(x, degree):
        return np.stack([x ** j for j in range(degree, -1, -1)], axis=1)
    ids = set()
    for seed in (0, 5, 123):
        v = core.run("ex1.1", reversed_columns, seed=seed)[0]
        ids.add(core.mistake_id(v.status, v.message))
    assert len(ids) == 1 and ids.pop().startswith("hint:")
    assert core.mistake_id("passed", "") == ""
    assert core.mistake_id("error", "your code raised LinAlgError: Singular matrix") == "error:LinAlgError"
    assert core.mistake_id("failed", core.helpers_message(["helpers.data.random_flip"])) == "shortcut:helpers"
    assert core.mistake_id("failed", core.tamper_message(["a thread"])) == "shortcut:watch"
    assert core.mistake_id("missing", core.STUB_LINE) == "missing"


def test_a_name_another_answer_cell_defines_is_the_learners_own():
    """ex4.2 may call the learner's own ex4.1 batch_norm: the grader's reading must not take
    that bare name for F.batch_norm; F.batch_norm inside that ex4.1 answer is still refused."""
    ex = core.Exercise("ex0.8", "g", lambda a: {}, lambda d: None,
                       forbid=("torch.nn.functional.batch_norm",))
    mine = "def batch_norm(x, g, b):\n    m = x.mean(0)\n    return (x - m) * g + b"
    theirs = "def batch_norm(x, g, b):\n    return F.batch_norm(x, None, None, g, b, True)"
    call = "def g(x):\n    return batch_norm(x, 1.0, 0.0)"
    assert ex.shortcut_in_sources(call, {"ex0.1": mine}) == ""
    assert "batch_norm" in ex.shortcut_in_sources(call, {"ex0.1": theirs})
