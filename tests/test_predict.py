"""Predict, then run (helpers.predict): scores, persistence in the file and in the notebook's
outputs, the switch that keeps saved solutions clean, and the record a learner sees."""

from __future__ import annotations

import json
import math

import matplotlib
import nbformat
import pytest

from helpers import predict as P

matplotlib.use("Agg")


@pytest.fixture
def record_path(tmp_path, monkeypatch):
    path = tmp_path / "preds.json"
    monkeypatch.setenv(P.FILE_ENV, str(path))
    monkeypatch.delenv(P.OFF_ENV, raising=False)
    P._OPEN.clear()
    return path


def test_scores():
    assert P.brier(0.7, True) == pytest.approx(0.09)
    assert P.brier(0.7, False) == pytest.approx(0.49)
    assert P.brier(0.5, True) == P.brier(0.5, False) == 0.25
    assert P.log_score(0.5, True) == pytest.approx(math.log(2))
    assert P.log_score(1.0, False) == pytest.approx(-math.log(P.CLIP))    # clipped, finite


def test_predict_then_resolve_persists_and_scores(record_path, capsys):
    P.predict("p3.1", "dropout helps here", 0.8)
    rec = P.resolve("p3.1", outcome=False, evidence="2 of 3 seeds")
    out = capsys.readouterr().out
    assert "FALSE" in out and "You said 80%" in out and "0.640" in out
    assert rec["brier"] == pytest.approx(0.64) and rec["lesson"] == "03"
    saved = json.loads(record_path.read_text())
    assert saved["p3.1"]["p"] == 0.8 and saved["p3.1"]["outcome"] is False
    P.predict("p3.1", "dropout helps here", 0.3)               # a second try replaces the first
    P.resolve("p3.1", outcome=True)
    assert [r["p"] for r in P.records()] == [0.3]


def test_untouched_prediction_is_neutral_and_not_kept(record_path, capsys):
    pred = P.predict("p4.1", "batch norm in eval equals train mode")
    assert pred.p == 0.5 and not pred.touched
    rec = P.resolve("p4.1", outcome=True)
    assert rec["brier"] == 0.25 and rec["made"] is False
    assert "not kept in your record" in capsys.readouterr().out
    assert P.records() == [] and not record_path.exists()


def test_out_of_range_probability_is_refused(record_path):
    with pytest.raises(ValueError):
        P.predict("p1.1", "x", 1.5)


def test_switched_off_nothing_is_kept(record_path, monkeypatch, capsys):
    monkeypatch.setenv(P.OFF_ENV, "off")
    P.predict("p5.1", "label smoothing calibrates", 0.9)
    P.resolve("p5.1", outcome=True)
    assert not record_path.exists()
    assert P.show_record()["n"] == 0
    assert "No resolved predictions yet" in capsys.readouterr().out


def test_summary_and_record_across_lessons(record_path, capsys):
    for pid, p, o in [("p1.1", 0.9, True), ("p3.1", 0.6, False), ("p7.2", 0.2, False)]:
        P.predict(pid, "s", p)
        P.resolve(pid, o)
    s = P.show_record()
    assert s["n"] == 3
    assert s["brier"] == pytest.approx((0.01 + 0.36 + 0.04) / 3)
    assert "3 predictions resolved" in capsys.readouterr().out


def test_reliability_uses_the_course_calibration_code(record_path):
    recs = [{"p": p, "outcome": o} for p, o in [(0.9, True), (0.8, True), (0.2, False), (0.7, False)]]
    ax = P.reliability(recs)
    assert "ECE" in " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert ax.get_title()


def test_a_saved_notebook_carries_its_predictions():
    nb = nbformat.v4.new_notebook()
    good = {"id": "p3.1", "p": 0.7, "outcome": True, "lesson": "03", "statement": "s", "made": True}
    neutral = {"id": "p3.3", "p": 0.5, "outcome": True, "made": False}
    nb.cells = [nbformat.v4.new_code_cell("resolve(...)", outputs=[
        nbformat.v4.new_output("display_data", data={"text/plain": "p3.1: TRUE"},
                               metadata={P.RECORD_KEY: good})]),
        nbformat.v4.new_code_cell("x", outputs=[
            nbformat.v4.new_output("display_data", data={"text/plain": "forged"},
                                   metadata={P.RECORD_KEY: {"id": "p3.2", "p": 7, "outcome": 1}}),
            nbformat.v4.new_output("display_data", data={"text/plain": "p3.3"},
                                   metadata={P.RECORD_KEY: neutral})])]
    assert P.in_notebook(nb) == [{k: v for k, v in good.items() if k != "made"}]


@pytest.mark.slow
def test_a_lesson_cell_pair_runs_in_a_kernel_without_touching_the_slider(tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in (
        "from helpers.predict import predict, resolve",
        'predict("p9.1", "two plus two is four")',
        'resolve("p9.1", outcome=2 + 2 == 4)')]
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert "50%" in nb.cells[2].outputs[0]["data"]["text/plain"]
    assert P.in_notebook(nb) == []                       # an untouched slider is no prediction
    assert not (tmp_path / P.DEFAULT_FILE).exists()
    nb.cells.append(nbformat.v4.new_code_cell('predict("p9.2", "one is odd", 0.9)\nresolve("p9.2", 1 % 2 == 1)'))
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert [r["id"] for r in P.in_notebook(nb)] == ["p9.2"]
    assert json.loads((tmp_path / P.DEFAULT_FILE).read_text())["p9.2"]["p"] == 0.9
