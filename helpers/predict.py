"""Predict, then run: the learner commits to a probability before an experiment, then sees what
happened and how well calibrated they were, with lesson 05's own tools.

In a lesson::

    predict("p3.1", "Over three paired seeds, dropout p = 0.5 raises test accuracy here.")
    ...                                   # the experiment the lesson runs anyway
    resolve("p3.1", outcome=bool((diff > 0).all()))

- :func:`predict` shows the statement and a slider (ipywidgets 7.7 and 8 alike); without
  widgets, or to be explicit, give the probability: ``predict("p3.1", "...", 0.7)``. Nobody has
  to touch anything: the prediction starts at 0.5 (no opinion) and a lesson runs top to bottom.
- :func:`resolve` takes the outcome *computed by the notebook* (on a GPU or another seed it may
  differ, and it is resolved honestly), shows it with the prediction's Brier score
  ``(p - outcome)**2`` and log score ``-log(p if outcome else 1 - p)``, and records it when the
  learner made it (moved the slider or gave a probability): an untouched 0.5 is no prediction.
- Records persist in ``.course-predictions.json`` beside the notebooks (one entry per statement,
  the latest resolution wins) and inside the notebook itself: the resolving cell's output
  carries the record in its metadata (``RECORD_KEY``), so a submitted file carries its
  predictions and the grader can read them (:func:`in_notebook`). Predictions never cost points.
- :func:`show_record` draws the learner's own record: Brier and log score, and a reliability
  diagram of their predictions drawn with :func:`helpers.plots.reliability_diagram`.

``COURSE_PREDICTIONS=off`` (set by ``helpers.build --execute``) keeps the saved outputs of
``solutions/`` clean: nothing is written to the file and the record shown is empty.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RECORD_KEY = "course-prediction"
FILE_ENV = "COURSE_PREDICTIONS_FILE"
OFF_ENV = "COURSE_PREDICTIONS"
DEFAULT_FILE = ".course-predictions.json"
CLIP = 0.01          # log score of a prediction of exactly 0 or 1 is taken at 1 % / 99 %


@dataclass
class Prediction:
    """One statement and the probability the learner gives it (``p``, in [0, 1])."""

    id: str
    statement: str
    p: float = 0.5
    touched: bool = False

    def _ipython_display_(self):
        """Nothing more under the cell: predict() has shown the statement already."""


class Resolved(dict):
    """The record :func:`resolve` returns (a dict); as a cell's last value it shows nothing more."""

    def _ipython_display_(self):
        pass


_OPEN: dict[str, Prediction] = {}


def _enabled() -> bool:
    return os.environ.get(OFF_ENV, "").strip().lower() not in ("off", "0", "no", "false")


def record_file() -> Path:
    """Where records persist: ``$COURSE_PREDICTIONS_FILE``, else ``.course-predictions.json``
    in the working folder (beside the notebook)."""
    return Path(os.environ.get(FILE_ENV) or DEFAULT_FILE)


def brier(p: float, outcome: bool) -> float:
    """Brier score of one prediction: ``(p - outcome)**2``; 0 is perfect, 0.25 is a coin."""
    return (float(p) - float(bool(outcome))) ** 2


def log_score(p: float, outcome: bool) -> float:
    """Negative log-likelihood of the outcome, ``-log(p)`` or ``-log(1 - p)``, with ``p``
    clipped to [CLIP, 1 - CLIP]; ``log 2 = 0.693`` is a coin."""
    q = min(max(float(p), CLIP), 1 - CLIP)
    return -math.log(q if outcome else 1 - q)


def _widgets():
    try:
        import ipywidgets
        from IPython import get_ipython
        if get_ipython() is None:
            return None
        return ipywidgets
    except ImportError:
        return None


def predict(pid: str, statement: str, p: float | None = None) -> Prediction:
    """Show ``statement`` and collect the learner's probability that it will turn out true.

    ``p`` given: that is the prediction. Otherwise a slider starting at 0.5 (no opinion) sets it;
    the line printed under it is the static record of what was asked (GitHub shows it)."""
    if p is not None and not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"a probability is between 0 and 1, got {p}")
    pred = Prediction(pid, statement, 0.5 if p is None else float(p), p is not None)
    _OPEN[pid] = pred
    print(f"Prediction {pid}: {statement}")
    w = _widgets()
    if p is None and w is not None:
        from IPython.display import display
        slider = w.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05,
                               description="P(true)", readout_format=".0%",
                               continuous_update=False)

        def moved(change):
            pred.p, pred.touched = float(change["new"]), True
        slider.observe(moved, names="value")
        display(slider)
        print("Move the slider before you run the next cells, or call "
              f'predict("{pid}", "...", 0.7). Left at 0.5 it says "no idea".')
    else:
        print(f"Your probability that it is true: {pred.p:.0%}")
    return pred


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def resolve(pid: str, outcome: bool, evidence: str = "", lesson: str | None = None) -> dict:
    """Resolve prediction ``pid`` with the outcome the notebook just computed; show it with the
    Brier and log score, persist it, and emit it in the output's metadata. Returns the record."""
    pred = _OPEN.get(pid) or Prediction(pid, "", 0.5)
    outcome = bool(outcome)
    rec = Resolved({"id": pid, "statement": pred.statement, "p": round(pred.p, 4), "outcome": outcome,
           "brier": round(brier(pred.p, outcome), 4), "log_score": round(log_score(pred.p, outcome), 4),
           "lesson": lesson or pid[1:].split(".")[0].zfill(2), "made": pred.touched})
    text = (f"{pid}: {'TRUE' if outcome else 'FALSE'} on this run"
            + (f" ({evidence})" if evidence else "")
            + f". You said {pred.p:.0%}: Brier score {rec['brier']:.3f} (0 is perfect, 0.25 is "
            f"a coin), log score {rec['log_score']:.3f}.")
    if not pred.touched:
        text += " (The slider was left where it started, so this is not kept in your record.)"
    if _enabled() and pred.touched:
        path = record_file()
        data = _load(path)
        data[pid] = rec
        try:
            path.write_text(json.dumps(data, indent=1, sort_keys=True))
        except OSError:
            pass
    try:
        from IPython import get_ipython
        if get_ipython() is not None:
            from IPython.display import display
            display({"text/plain": text}, raw=True, metadata={RECORD_KEY: dict(rec)})
            return rec
    except ImportError:
        pass
    print(text)
    return rec


def records(path: Path | None = None) -> list[dict]:
    """The learner's resolved predictions, from the record file (empty when switched off)."""
    if not _enabled():
        return []
    return [r for _, r in sorted(_load(path or record_file()).items()) if _valid(r)]


def _valid(r) -> bool:
    return isinstance(r, dict) and isinstance(r.get("p"), (int, float)) and \
        0 <= float(r["p"]) <= 1 and isinstance(r.get("outcome"), bool)


def summary(recs: list[dict]) -> dict:
    """``n``, mean Brier and mean log score of resolved predictions (NaN when there are none),
    and the share that came true."""
    if not recs:
        return {"n": 0, "brier": float("nan"), "log_score": float("nan"), "true": float("nan")}
    return {"n": len(recs),
            "brier": float(np.mean([brier(r["p"], r["outcome"]) for r in recs])),
            "log_score": float(np.mean([log_score(r["p"], r["outcome"]) for r in recs])),
            "true": float(np.mean([r["outcome"] for r in recs]))}


def reliability(recs: list[dict], ax=None, title: str = "Your predictions", n_bins: int = 5):
    """A reliability diagram of yes/no predictions, drawn with the course's calibration code:
    each prediction is a two-class probability ``[1 - p, p]`` and its outcome the label."""
    from helpers import plots

    p = np.array([float(r["p"]) for r in recs])
    y = np.array([int(r["outcome"]) for r in recs])
    return plots.reliability_diagram(np.stack([1 - p, p], axis=1), y, n_bins=n_bins, ax=ax,
                                     title=title, label="predictions")


def show_record(path: Path | None = None):
    """Print the learner's own record and draw its reliability diagram (nothing to draw yet: say
    so). Returns the summary."""
    recs = records(path)
    s = summary(recs)
    if not recs:
        print("No resolved predictions yet: your record appears here once you have made and "
              "resolved some (they are kept in .course-predictions.json beside the notebooks).")
        return s
    print(f"{s['n']} predictions resolved: mean Brier score {s['brier']:.3f} (a coin scores "
          f"0.250), mean log score {s['log_score']:.3f} (a coin: 0.693); {s['true']:.0%} came true.")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    reliability(recs, ax=ax, title="Your predictions so far")
    plt.show()
    return s


def in_notebook(nb) -> list[dict]:
    """The predictions a saved notebook carries (outputs' metadata), for the grader: resolved
    and made (a slider moved or a probability given; one left at its start is no prediction).
    Only well-formed records count; the latest of one id wins."""
    found = {}
    for cell in getattr(nb, "cells", []) or []:
        for out in cell.get("outputs", []) or []:
            rec = (out.get("metadata") or {}).get(RECORD_KEY)
            if _valid(rec) and isinstance(rec.get("id"), str) and rec.get("made") is True:
                found[rec["id"]] = {k: rec[k] for k in ("id", "p", "outcome", "lesson", "statement")
                                    if k in rec}
    return [found[k] for k in sorted(found)]
