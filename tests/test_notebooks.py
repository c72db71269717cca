"""Every lesson under nbval: solutions pass; generated stubs fail exactly their check cells."""

import copy
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import pytest

from helpers import course
from helpers.build import role

SOLUTIONS = sorted(course.SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
IDS = [p.stem for p in SOLUTIONS]


def run_nbval(path: Path, tmp_path: Path) -> dict[str, str]:
    """Run ``pytest --nbval-lax`` on one notebook; ``{"Cell N": outcome}`` from its JUnit report."""
    report = tmp_path / f"{path.stem}.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         "--nbval-current-env", "--nbval-cell-timeout=300", f"--junitxml={report}", str(path)],
        cwd=path.parent, capture_output=True, text=True, timeout=900)
    assert report.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    outcomes = {}
    for case in ET.parse(report).iter("testcase"):
        name = case.get("name", "")
        failed = any(child.tag in ("failure", "error") for child in case)
        outcomes[name.split("::")[-1]] = "failed" if failed else "passed"
    return outcomes


def code_cell_labels(nb, wanted_role):
    """nbval's test names ("Cell N", N counting code cells from 0) of the cells with a role."""
    labels, n = [], 0
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        if role(c) == wanted_role:
            labels.append(f"Cell {n}")
        n += 1
    return labels


@pytest.mark.slow
@pytest.mark.parametrize("path", SOLUTIONS, ids=IDS)
def test_solution_passes_nbval(path, tmp_path):
    outcomes = run_nbval(path, tmp_path)
    failed = sorted(k for k, v in outcomes.items() if v == "failed")
    assert outcomes and not failed, f"{path.name}: failing cells {failed}"


@pytest.mark.slow
@pytest.mark.parametrize("path", SOLUTIONS, ids=IDS)
def test_exercise_stubs_fail_exactly_their_checks(path, tmp_path):
    """The generated exercises/ copy, given the reference check outputs, fails only at check cells."""
    solution = nbformat.read(path, as_version=4)
    stubbed = nbformat.read(course.EXERCISES / path.name, as_version=4)
    reference = {c.id: c for c in solution.cells}
    for c in stubbed.cells:
        if role(c) == "check":
            ref = reference[c.id]
            c.outputs, c.execution_count = copy.deepcopy(ref.outputs), ref.execution_count
    target = tmp_path / path.name
    nbformat.write(stubbed, target)
    outcomes = run_nbval(target, tmp_path)
    failed = sorted(k for k, v in outcomes.items() if v == "failed")
    expected = sorted(code_cell_labels(stubbed, "check"))
    assert expected, "no check cells"
    assert failed == expected, f"failing {failed}, expected exactly the check cells {expected}"
