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


def test_measure_reports_peak_memory_of_the_process_tree():
    import sys

    # a parent that starts a child holding ~150 MB: the largest process and the tree see it
    child = "b = bytearray(150 * 2**20); import time; time.sleep(0.6)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    m = bench.measure([sys.executable, "-c", parent])
    assert m["rc"] == 0 and m["seconds"] > 0.5
    assert 150 <= m["max_rss_mb"] < 400
    if m["tree_peak_mb"] is not None:           # sampled from /proc (Linux)
        assert m["tree_peak_mb"] >= m["max_rss_mb"] - 1


def test_verdicts_say_whether_grading_fits_gradescope():
    res = {"grading": {"one_submission_s": 4.0, "jobs2_speedup": 1.5,
                       "one_submission_max_rss_mb": 500.0, "one_submission_tree_peak_mb": 900.0}}
    assert any("peak memory (process tree) 900 MB: does NOT fit" in l for l in bench.verdicts(res))
    res["grading"]["one_submission_tree_peak_mb"] = None
    assert any("peak memory (largest process) 500 MB: fits" in l for l in bench.verdicts(res))
