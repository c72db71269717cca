"""The benchmark script runs and judges budgets correctly (timings themselves are not tested)."""

from helpers import bench


def test_training_comparison_runs_and_reports_ratios():
    res = bench.bench_training(repeats=1)
    assert len(res) == 3
    for r in res.values():
        assert set(r["ms_per_epoch"]) == {"helper", "bare", "dataloader"}
        assert r["helper_vs_bare"] > 0 and r["helper_vs_dataloader"] > 0


def test_verdicts_compare_with_budgets():
    res = {"notebooks": {"per_notebook_s": {"01": 12.0, "02": 31.0}, "course_s": 43.0},
           "grading": {"one_submission_s": 4.0, "jobs2_speedup": 0.9},
           "training_cpu": {"x": {"helper_vs_bare": 1.05, "helper_vs_dataloader": 0.8}}}
    lines = bench.verdicts(res)
    assert any("slowest lesson 02" in l and "NOT met" in l for l in lines)
    assert any("whole course" in l and l.endswith(": met") for l in lines)
    assert any("one submission" in l and l.endswith(": met") for l in lines)
    assert any("jobs 2" in l and "NOT met" in l for l in lines)
    assert any("helper/bare 1.050" in l and l.endswith(": met") for l in lines)
