"""Measure the course against its budgets (CONTRIBUTING.md, "Budgets"), on the current machine.

    python -m helpers.bench                 # everything; prints a table, writes bench-results.json
    python -m helpers.bench --only training --repeats 7

Measures:
- each ``solutions/`` notebook run top to bottom in a fresh kernel (wall time), and the sum;
- grading one submission, and a batch of 20 with ``--jobs 1`` and ``--jobs 2``: wall time and
  peak memory of each grading run (the largest single process, exact, from
  ``getrusage(RUSAGE_CHILDREN)`` in a fresh wrapper process; and the whole process tree at
  once, sampled from ``/proc`` every 50 ms on Linux);
- the training helper against a bare hand-written loop over the same tensors and against a
  ``DataLoader``/``TensorDataset`` loop with the same batch size: seconds per epoch (median of
  repeats) and the ratios; on CUDA too, when present.
Budgets: lesson < 30 s, course < 180 s, one submission < 10 s, jobs 2 faster than jobs 1,
helper <= 1.10 x bare loop, helper faster than the DataLoader loop. Memory has no budget of
its own; the report says whether one grading run fits Gradescope's default container (768 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from helpers import cells, course

BUDGETS = {"lesson_s": 30.0, "course_s": 180.0, "grade_one_s": 10.0, "helper_vs_bare": 1.10}
GRADESCOPE_MB = 768   # memory of Gradescope's default autograder container


def machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


# ---------------------------------------------------------------- notebooks

def bench_notebooks(paths=None) -> dict:
    """Wall time of each solutions notebook in a fresh kernel (start-up included)."""
    import nbformat
    from nbclient import NotebookClient

    paths = paths or sorted(course.SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
    out = {}
    for p in paths:
        nb = nbformat.read(p, as_version=4)
        t0 = time.perf_counter()
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(p.parent)}}).execute()
        out[p.stem] = round(time.perf_counter() - t0, 2)
        print(f"  {p.stem:<22} {out[p.stem]:6.1f} s", flush=True)
    return {"per_notebook_s": out, "course_s": round(sum(out.values()), 2)}


# ---------------------------------------------------------------- grading

def filled_submission(lesson_path: Path, dest: Path) -> Path:
    """An exercises/ copy whose answer cells hold the reference answers (a full-marks submission)."""
    import nbformat

    answers = cells.answer_cells(nbformat.read(lesson_path, as_version=4))
    nb = nbformat.read(course.EXERCISES / lesson_path.name, as_version=4)
    for ex_id, cell in cells.answer_cells(nb).items():
        cell.source = answers[ex_id].source
    nbformat.write(nb, dest)
    return dest


# Runs one command as its only child and reports its peak memory: ru_maxrss of the waited-for
# descendants (Linux: KiB) is the largest single process; the tree's sum is sampled from /proc.
_MEASURE = r"""
import json, os, resource, subprocess, sys, threading, time
cmd = json.loads(sys.argv[1])

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out

def tree_kib(root):
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_KIB
        except (OSError, ValueError, IndexError):
            continue
        todo.extend(children(pid))
    return total

t0 = time.perf_counter()
proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
peak, done = [0], threading.Event()

def sample():
    while not done.wait(0.05):
        if os.path.isdir(f"/proc/{proc.pid}/task"):
            peak[0] = max(peak[0], tree_kib(proc.pid))

threading.Thread(target=sample, daemon=True).start()
out, err = proc.communicate()
seconds = time.perf_counter() - t0
done.set()
ru = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
ru_kib = ru // 1024 if sys.platform == "darwin" else ru
print(json.dumps({"rc": proc.returncode, "seconds": seconds, "max_rss_kib": ru_kib,
                  "tree_peak_kib": peak[0] or None, "tail": (out[-2000:] + err[-2000:])}))
"""


def measure(cmd: list[str]) -> dict:
    """Run ``cmd`` in a fresh wrapper process; its wall time, exit status and peak memory.

    Returns ``{"rc", "seconds", "max_rss_mb", "tree_peak_mb", "tail"}``: ``max_rss_mb`` is the
    largest resident set of any single process of the run (exact), ``tree_peak_mb`` the
    largest sum over the run's process tree at one moment (sampled; None without /proc). The
    sum counts pages shared between processes (torch's libraries) once per process, so it
    is an upper bound of what a container running the grader needs.
    """
    proc = subprocess.run([sys.executable, "-c", _MEASURE, json.dumps(cmd)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    mb = lambda kib: None if kib is None else round(kib / 1024, 1)  # noqa: E731
    return {"rc": r["rc"], "seconds": round(r["seconds"], 2), "max_rss_mb": mb(r["max_rss_kib"]),
            "tree_peak_mb": mb(r["tree_peak_kib"]), "tail": r["tail"]}


def bench_grading(n_batch: int = 20) -> dict:
    """Grade one submission, then ``n_batch`` with --jobs 1 and --jobs 2 (wall times, peak memory)."""
    try:
        import helpers.grade  # noqa: F401
    except ImportError:
        return {"skipped": "helpers.grade is not available"}
    lesson = course.SOLUTIONS / "01_overfitting.ipynb"
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one = filled_submission(lesson, tmp / "01_overfitting.ipynb")
        batch = tmp / "batch"
        batch.mkdir()
        for i in range(n_batch):
            (batch / f"{lesson.stem}_learner{i:02d}.ipynb").write_bytes(one.read_bytes())

        def grade(args, key):
            m = measure([sys.executable, "-m", "helpers.grade", *args, "--out", str(tmp / "out")])
            if m["rc"] != 0:
                raise RuntimeError(m["tail"])
            res[f"{key}_s"] = m["seconds"]
            res[f"{key}_max_rss_mb"] = m["max_rss_mb"]
            res[f"{key}_tree_peak_mb"] = m["tree_peak_mb"]
            tree = "" if m["tree_peak_mb"] is None else f", process tree {m['tree_peak_mb']:.0f} MB"
            return f"{m['seconds']:6.1f} s   peak memory: largest process {m['max_rss_mb']:.0f} MB{tree}"

        print(f"  one submission         {grade([str(one)], 'one_submission')}", flush=True)
        for jobs in (1, 2):
            line = grade([str(batch), "--jobs", str(jobs)], f"batch{n_batch}_jobs{jobs}")
            print(f"  {n_batch} submissions, jobs {jobs} {line}", flush=True)
    res["per_submission_jobs2_s"] = round(res[f"batch{n_batch}_jobs2_s"] / n_batch, 2)
    res["jobs2_speedup"] = round(res[f"batch{n_batch}_jobs1_s"] / res[f"batch{n_batch}_jobs2_s"], 2)
    return res


# ---------------------------------------------------------------- training loops

def _evaluate(model, data):
    """The per-epoch evaluation the training helper records: loss and accuracy on both sets."""
    model.eval()
    with torch.no_grad():
        for xs, ys in ((data.x_train, data.y_train), (data.x_val, data.y_val)):
            out = model(xs)
            F.cross_entropy(out, ys).item()
            (out.argmax(1) == ys).float().mean().item()


def _bare_loop(model, data, epochs, batch_size, lr, seed):
    """The loop a learner would write: same tensors, same shuffling, same per-epoch evaluation."""
    x, y = data.x_train, data.y_train
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    n = len(x)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, device=x.device, generator=gen)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _evaluate(model, data)


def _dataloader_loop(model, data, epochs, batch_size, lr, seed):
    """The textbook DataLoader loop over a TensorDataset, same evaluation."""
    x, y = data.x_train, data.y_train
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    for _ in range(epochs):
        model.train()
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _evaluate(model, data)


def _helper_loop(model, data, epochs, batch_size, lr, seed):
    from helpers.training import train
    train(model, data, epochs, lr=lr, batch_size=batch_size, seed=seed, progress=False)


def bench_training(repeats: int = 5, device=None) -> dict:
    """Seconds per epoch of the three loops (median over ``repeats``) on the course's datasets."""
    from helpers import data as D
    from helpers import models

    device = device or torch.device("cpu")
    cases = {
        "digits MLP 64-128-10, batch 64": (lambda: models.mlp(64, (128,), 10),
                                           D.digits(flat=True, device=device), 64, 20),
        "digits CNN, batch 64": (lambda: models.DigitsCNN(), D.digits(device=device), 64, 10),
        "moons MLP 2-64-64-2, batch 32": (lambda: models.mlp(2, (64, 64), 2),
                                          D.moons(n_train=512, device=device), 32, 20),
    }
    loops = {"helper": _helper_loop, "bare": _bare_loop, "dataloader": _dataloader_loop}
    results = {}
    for name, (make, data, bs, epochs) in cases.items():
        times = {k: [] for k in loops}
        for r in range(repeats + 1):                    # the first round warms up
            for k, loop in loops.items():
                torch.manual_seed(r)
                model = make().to(device)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                loop(model, data, epochs, bs, 1e-3, r)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if r:
                    times[k].append((time.perf_counter() - t0) / epochs)
        med = {k: statistics.median(v) for k, v in times.items()}
        results[name] = {"ms_per_epoch": {k: round(v * 1e3, 3) for k, v in med.items()},
                         "helper_vs_bare": round(med["helper"] / med["bare"], 3),
                         "helper_vs_dataloader": round(med["helper"] / med["dataloader"], 3)}
        r_ = results[name]
        print(f"  {name:<34} helper {r_['ms_per_epoch']['helper']:7.2f} ms  bare "
              f"{r_['ms_per_epoch']['bare']:7.2f} ms  DataLoader {r_['ms_per_epoch']['dataloader']:7.2f} ms"
              f"  helper/bare {r_['helper_vs_bare']:.3f}  helper/DataLoader {r_['helper_vs_dataloader']:.3f}",
              flush=True)
    return results


# ---------------------------------------------------------------- report

def verdicts(res: dict) -> list[str]:
    lines = []
    nbs = res.get("notebooks")
    if nbs:
        worst = max(nbs["per_notebook_s"].items(), key=lambda kv: kv[1])
        lines.append(f"slowest lesson {worst[0]} {worst[1]:.1f} s (budget {BUDGETS['lesson_s']:.0f} s): "
                     + ("met" if worst[1] < BUDGETS["lesson_s"] else "NOT met"))
        lines.append(f"whole course {nbs['course_s']:.1f} s (budget {BUDGETS['course_s']:.0f} s): "
                     + ("met" if nbs["course_s"] < BUDGETS["course_s"] else "NOT met"))
    g = res.get("grading")
    if g and "one_submission_s" in g:
        lines.append(f"one submission {g['one_submission_s']:.1f} s (budget {BUDGETS['grade_one_s']:.0f} s): "
                     + ("met" if g["one_submission_s"] < BUDGETS["grade_one_s"] else "NOT met"))
        lines.append(f"jobs 2 vs jobs 1 speed-up x{g['jobs2_speedup']:.2f}: "
                     + ("met" if g["jobs2_speedup"] > 1.0 else "NOT met"))
        peak = g.get("one_submission_tree_peak_mb") or g.get("one_submission_max_rss_mb")
        if peak:
            what = "process tree" if g.get("one_submission_tree_peak_mb") else "largest process"
            lines.append(f"grading one submission, peak memory ({what}) {peak:.0f} MB: "
                         + ("fits" if peak < GRADESCOPE_MB else "does NOT fit")
                         + f" Gradescope's default container ({GRADESCOPE_MB} MB)")
    for dev in ("training_cpu", "training_cuda"):
        for name, r in (res.get(dev) or {}).items():
            ok = r["helper_vs_bare"] <= BUDGETS["helper_vs_bare"] and r["helper_vs_dataloader"] < 1.0
            lines.append(f"{dev[9:]} {name}: helper/bare {r['helper_vs_bare']:.3f}, "
                         f"helper/DataLoader {r['helper_vs_dataloader']:.3f}: " + ("met" if ok else "NOT met"))
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m helpers.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["notebooks", "grading", "training"], action="append")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(course.ROOT / "bench-results.json"))
    args = ap.parse_args(argv)
    parts = args.only or ["notebooks", "grading", "training"]
    res = {"machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M")}
    if "notebooks" in parts:
        print("notebooks (fresh kernel, top to bottom):", flush=True)
        res["notebooks"] = bench_notebooks()
    if "grading" in parts:
        print("grading:", flush=True)
        res["grading"] = bench_grading()
    if "training" in parts:
        print("training loops, CPU:", flush=True)
        res["training_cpu"] = bench_training(args.repeats)
        if torch.cuda.is_available():
            print("training loops, CUDA:", flush=True)
            res["training_cuda"] = bench_training(args.repeats, torch.device("cuda"))
    res["verdicts"] = verdicts(res)
    print("\nbudgets:")
    for line in res["verdicts"]:
        print("  " + line)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
