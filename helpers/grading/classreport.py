"""The class report (``python -m helpers.grade ... --report``): one self-contained HTML file,
``class-report.html`` beside the gradebook, that tells an instructor what to re-teach.

Everything in it is computed from the two files the grader has just written
(``gradebook.csv``, ``grades.csv``) and from the predictions the graded notebooks carry
(:func:`helpers.predict.in_notebook`), so every number can be checked against the gradebook:

- the pass rate per exercise and the distribution of totals (figures, inline PNG);
- per exercise, the most frequent mistakes by their stable id (:func:`helpers.checks.core.mistake_id`),
  with counts, share of the class and one example message;
- errors, timeouts and refused shortcuts by cause;
- the class's predictions: how calibrated the class was (a reliability diagram drawn with the
  course's calibration code), and the statements it got most wrong.

It names no learner and no submission, and holds no case seed: only what ``grades.csv`` could
tell about the class as a whole.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from helpers.checks.core import mistake_id

REPORT_NAME = "class-report.html"
TOP_MISTAKES = 5


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def exercise_order(ex: str) -> tuple:
    try:
        a, b = ex[2:].split(".")
        return (int(a), int(b))
    except ValueError:
        return (999, 999)


def summarise(gradebook: list[dict], grades: list[dict], predictions: list[list[dict]]) -> dict:
    """The report's numbers (pure data, tested against the gradebook).

    ``predictions``: per graded submission, the resolved predictions it carries."""
    rows = [r for r in gradebook if r.get("exercise") not in ("", "-", None)]
    by_ex: dict = defaultdict(list)
    for r in rows:
        by_ex[r["exercise"]].append(r)
    exercises = {}
    for ex in sorted(by_ex, key=exercise_order):
        rs = by_ex[ex]
        status = Counter(r["status"] for r in rs)
        mistakes: dict = {}
        for r in rs:
            mid = mistake_id(r["status"], r["message"])
            if mid and mid != "missing":
                m = mistakes.setdefault(mid, {"count": 0, "example": r["message"]})
                m["count"] += 1
        top = sorted(mistakes.items(), key=lambda kv: (-kv[1]["count"], kv[0]))[:TOP_MISTAKES]
        exercises[ex] = {
            "n": len(rs), "status": dict(status),
            "pass_rate": status.get("passed", 0) / len(rs) if rs else 0.0,
            "mistakes": [{"id": k, "count": v["count"], "share": v["count"] / len(rs),
                          "example": v["example"]} for k, v in top]}
    causes = Counter()
    for r in rows:
        mid = mistake_id(r["status"], r["message"])
        if r["status"] in ("error", "timeout") or mid.startswith("shortcut:"):
            causes[mid or r["status"]] += 1
    totals = [float(g["total"]) for g in grades if g.get("total") not in (None, "")]
    max_total = max((float(g["max_total"]) for g in grades if g.get("max_total")), default=0.0)
    return {"submissions": len({r["submission"] for r in gradebook}),
            "learners": len(grades), "exercises": exercises, "causes": dict(causes.most_common()),
            "totals": totals, "max_total": max_total,
            "predictions": summarise_predictions(predictions)}


def summarise_predictions(per_submission: list[list[dict]]) -> dict:
    """Pooled calibration of the class's predictions and, per statement, how many made it, the
    mean probability, the share of runs where it came true and the mean Brier score."""
    from helpers.predict import brier, summary

    pooled = [p for sub in per_submission for p in sub]
    per: dict = defaultdict(list)
    for p in pooled:
        per[p["id"]].append(p)
    statements = []
    for pid, ps in per.items():
        believed = float(np.mean([p["p"] > 0.5 for p in ps]))
        statements.append({
            "id": pid, "statement": next((p.get("statement") for p in ps if p.get("statement")), ""),
            "n": len(ps), "mean_p": float(np.mean([p["p"] for p in ps])),
            "true": float(np.mean([p["outcome"] for p in ps])), "believed": believed,
            "brier": float(np.mean([brier(p["p"], p["outcome"]) for p in ps]))})
    statements.sort(key=lambda s: (-s["brier"], s["id"]))
    return {"pooled": summary(pooled), "statements": statements, "records": pooled}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figures(s: dict) -> dict:
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figs = {}
    exs = list(s["exercises"])
    if exs:
        fig, ax = plt.subplots(figsize=(max(5, 0.45 * len(exs) + 2), 3.2))
        rates = [100 * s["exercises"][e]["pass_rate"] for e in exs]
        ax.bar(exs, rates, color="tab:green")
        ax.set_ylim(0, 100)
        ax.set_ylabel("passed (% of submissions)")
        ax.set_xlabel("exercise")
        ax.set_title("Pass rate per exercise")
        ax.tick_params(axis="x", rotation=45)
        figs["pass_rate"] = _png(fig)
    if s["totals"]:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        top = s["max_total"] or max(s["totals"]) or 1
        ax.hist(s["totals"], bins=np.arange(-0.5, top + 1.5, 1.0), color="tab:blue", edgecolor="black")
        ax.set_xlabel(f"total points (of {top:g})")
        ax.set_ylabel("learners")
        ax.set_title("Distribution of totals")
        figs["totals"] = _png(fig)
    recs = s["predictions"]["records"]
    if recs:
        from helpers.predict import reliability
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        reliability(recs, ax=ax, title="The class's predictions")
        figs["predictions"] = _png(fig)
    return figs


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def render(s: dict) -> str:
    """The report as one HTML page (figures inline)."""
    e = html.escape
    figs = _figures(s)
    out = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
           "<title>Class report</title><style>body{font-family:sans-serif;max-width:960px;"
           "margin:2em auto;padding:0 1em}table{border-collapse:collapse;margin:1em 0}"
           "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
           "th{background:#f3f3f3}.num{text-align:right}img{max-width:100%}"
           "small{color:#555}</style></head><body>",
           "<h1>Class report</h1>",
           f"<p>{s['submissions']} submissions from {s['learners']} learners. Every number "
           "below is computed from <code>gradebook.csv</code> and <code>grades.csv</code> in this "
           "folder, and from the predictions the notebooks carry. No learner is named.</p>"]
    out.append("<h2>Pass rate per exercise</h2>")
    if "pass_rate" in figs:
        out.append(f"<img alt='Pass rate per exercise' src='{figs['pass_rate']}'>")
    out.append("<table id='pass-rates'><tr><th>exercise</th><th>submissions</th><th>passed</th>"
               "<th>failed</th><th>error</th><th>timeout</th><th>missing</th><th>pass rate</th></tr>")
    for ex, d in s["exercises"].items():
        st = d["status"]
        cells = "".join(f"<td class='num'>{st.get(k, 0)}</td>"
                        for k in ("passed", "failed", "error", "timeout", "missing"))
        out.append(f"<tr><td>{e(ex)}</td><td class='num'>{d['n']}</td>{cells}"
                   f"<td class='num'>{_pct(d['pass_rate'])}</td></tr>")
    out.append("</table>")
    out.append("<h2>Distribution of totals</h2>")
    if "totals" in figs:
        out.append(f"<img alt='Distribution of totals' src='{figs['totals']}'>")
    if s["totals"]:
        t = np.array(s["totals"])
        out.append(f"<p>Median {np.median(t):g} of {s['max_total']:g} points; "
                   f"{int(np.sum(t == s['max_total']))} of {len(t)} learners have every point.</p>")
    out.append("<h2>The most frequent mistakes, per exercise</h2>"
               "<p><small>A mistake is named by the hint the checks gave (its id stays the same "
               "for every learner and every case seed); share = of the submissions of that "
               "exercise.</small></p><table id='mistakes'><tr><th>exercise</th><th>mistake</th>"
               "<th>count</th><th>share</th><th>one example message</th></tr>")
    for ex, d in s["exercises"].items():
        for m in d["mistakes"]:
            out.append(f"<tr><td>{e(ex)}</td><td><code>{e(m['id'])}</code></td>"
                       f"<td class='num'>{m['count']}</td><td class='num'>{_pct(m['share'])}</td>"
                       f"<td>{e(m['example'][:400])}</td></tr>")
    out.append("</table>")
    out.append("<h2>Errors, timeouts and refused shortcuts, by cause</h2>")
    if s["causes"]:
        out.append("<table id='causes'><tr><th>cause</th><th>rows</th></tr>")
        for k, v in s["causes"].items():
            out.append(f"<tr><td><code>{e(k)}</code></td><td class='num'>{v}</td></tr>")
        out.append("</table>")
    else:
        out.append("<p>None.</p>")
    pr = s["predictions"]
    out.append("<h2>The class's predictions</h2>")
    if pr["pooled"]["n"]:
        ps = pr["pooled"]
        out.append(f"<p>{ps['n']} predictions resolved: mean Brier score {ps['brier']:.3f} "
                   f"(0.250 for a coin), mean log score {ps['log_score']:.3f} (0.693 for a coin).</p>")
        if "predictions" in figs:
            out.append(f"<img alt='Reliability diagram of the class predictions' src='{figs['predictions']}'>")
        out.append("<table id='statements'><tr><th>statement</th><th>predictions</th>"
                   "<th>expected it (p &gt; 0.5)</th><th>came true</th><th>mean Brier</th></tr>")
        for st in pr["statements"]:
            out.append(f"<tr><td><b>{e(st['id'])}</b> {e(st['statement'][:300])}</td>"
                       f"<td class='num'>{st['n']}</td><td class='num'>{_pct(st['believed'])}</td>"
                       f"<td class='num'>{_pct(st['true'])}</td>"
                       f"<td class='num'>{st['brier']:.3f}</td></tr>")
        out.append("</table>")
        worst = pr["statements"][0]
        out.append(f"<p>Most wrong: {_pct(worst['believed'])} expected “{e(worst['statement'][:200])}”"
                   f" ({e(worst['id'])}); it came true in {_pct(worst['true'])} of the runs.</p>")
    else:
        out.append("<p>No resolved predictions in the submitted notebooks.</p>")
    out.append("</body></html>")
    return "\n".join(out)


def write_class_report(out: Path, predictions: list[list[dict]] | None = None) -> Path:
    """Write ``class-report.html`` into ``out`` from its ``gradebook.csv`` and ``grades.csv``."""
    gradebook = _rows(out / "gradebook.csv")
    grades = _rows(out / "grades.csv") if (out / "grades.csv").exists() else []
    s = summarise(gradebook, grades, predictions or [])
    path = out / REPORT_NAME
    path.write_text(render(s), encoding="utf-8")
    return path
