"""The one-source build: generated copies are in sync, hold no answers and no outputs."""

import subprocess
import sys

import nbformat
import pytest

from helpers import build, course
from helpers.build import BEGIN, END, BuildError, role, stub_source


LESSONS = sorted(course.SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))


def test_build_check_is_in_sync():
    proc = subprocess.run([sys.executable, "-m", "helpers.build", "--check"],
                          capture_output=True, text=True, cwd=course.ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_stub_source_keeps_signature_and_indentation():
    src = f"def f(x):\n    \"\"\"Doc.\"\"\"\n    {BEGIN}\n    return x + 1\n    {END}\n"
    out = stub_source(src, "ex9.1")
    assert out == 'def f(x):\n    """Doc."""\n    raise NotImplementedError("ex9.1: write your answer here")\n'


def test_stub_source_value_answer():
    src = f"{BEGIN}\nanswer = 42\n{END}"
    assert stub_source(src, "ex9.2", "answer") == "answer = None  # ex9.2: replace None with your answer"


@pytest.mark.parametrize("src", [f"{BEGIN}\nx", f"x\n{END}", f"{BEGIN}\n{BEGIN}\n{END}"])
def test_stub_source_rejects_unbalanced_markers(src):
    with pytest.raises(BuildError):
        stub_source(src, "ex9.3")


def test_validate_rejects_answer_without_check():
    nb = nbformat.read(LESSONS[0], as_version=4)
    checks = [i for i, c in enumerate(nb.cells) if role(c) == "check"]
    del nb.cells[checks[0]]
    with pytest.raises(BuildError, match="followed by its check cell"):
        build.validate(nb, LESSONS[0].name)


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_generated_copies(path):
    sol = nbformat.read(path, as_version=4)
    answers = [c.source for c in sol.cells if role(c) == "answer"]
    secret_lines = set()
    for src in answers:
        inside = False
        for line in src.split("\n"):
            if line.strip() == BEGIN:
                inside = True
            elif line.strip() == END:
                inside = False
            elif inside and len(line.strip()) > 12:
                secret_lines.add(line.strip())
    # lines that also appear outside the answers (e.g. `with torch.no_grad():`) are no secret,
    # nor is a line that the stub itself keeps (e.g. `return weight` in a docstring above it)
    public = {line.strip() for c in sol.cells if role(c) != "answer" for line in c.source.split("\n")}
    secret_lines -= public
    stubs = "\n".join(stub_source(src, "ex0.0") for src in answers)
    secret_lines = {line for line in secret_lines if line not in stubs}
    assert secret_lines or not answers
    for folder in ("notebooks", "exercises"):
        nb = nbformat.read(course.ROOT / folder / path.name, as_version=4)
        assert nb.metadata["course"]["lesson"] == path.name[:2]
        assert role(nb.cells[0]) == "badge" and f"{folder}/{path.name}" in nb.cells[0].source
        assert role(nb.cells[1]) == "colab" and course.REPO_URL in nb.cells[1].source
        for c in nb.cells:
            if c.cell_type == "code":
                assert c.outputs == [] and c.execution_count is None
                for line in secret_lines:
                    assert line not in c.source, f"{folder}/{path.name} leaks: {line}"
        n_answers = sum(role(c) == "answer" for c in nb.cells)
        assert n_answers == len(answers)
        if folder == "exercises":
            assert role(nb.cells[2]) == "exercises"
            assert role(next(c for c in nb.cells[2:] if c.cell_type == "code")) == "setup"
        else:
            assert len(nb.cells) == len(sol.cells)


def test_solutions_are_executed_with_check_outputs():
    for path in LESSONS:
        nb = nbformat.read(path, as_version=4)
        for c in nb.cells:
            if role(c) == "check":
                assert "nbval-check-output" in c.metadata.get("tags", [])
                texts = [o.get("data", {}).get("text/plain", "") for o in c.outputs]
                assert any(t.endswith("passed") for t in texts), f"{path.name}: {c.source}"


def test_written_notebooks_carry_no_execution_timestamps():
    files = build.plan(lessons=[LESSONS[0].name[:2]])
    for path, text in files.items():
        nb = nbformat.reads(text, as_version=4)
        assert all("execution" not in c.metadata for c in nb.cells), path


def test_check_ignores_only_execution_timestamps():
    text = next(iter(build.plan(lessons=[LESSONS[0].name[:2]]).values()))
    nb = nbformat.reads(text, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00.000000Z"}
    assert build.same_content(build.dumps(nb), text)
    code.source += "\n# edited"
    assert not build.same_content(build.dumps(nb), text)
    assert not build.same_content(None, text)


def test_execute_turns_progress_bars_off(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import os\nfrom tqdm.auto import tqdm\nprint(os.environ.get('TQDM_DISABLE'))\n"
        "for _ in tqdm(range(3)):\n    pass\nprint({'_ft', '_tn'} & set(dir()))")]
    build.run_notebook(nb, tmp_path, timeout=120)
    (out,) = nb.cells[0].outputs          # no progress bar, and the start-up code left no names
    assert out.output_type == "stream" and out.text == "1\nset()\n"
    assert "execution" not in nb.cells[0].metadata


def test_cells_module_reads_roles_defensively_and_splits_answers():
    from helpers import cells

    ok = nbformat.v4.new_code_cell(f"def f(x):\n    {BEGIN}\n    return x\n    {END}")
    ok.metadata["course"] = {"role": "answer", "exercise": "ex9.4"}
    assert cells.role(ok) == "answer" and cells.exercise_id(ok) == "ex9.4"
    for odd in ({"metadata": "x"}, {"metadata": {"course": []}}, {}, "not a cell"):
        assert cells.role(odd) is None and cells.exercise_id(odd) is None
    assert cells.solution_lines(ok.source) == ["    return x"]
    assert cells.without_markers(ok.source) == "def f(x):\n    return x"
    assert set(cells.ROLES) >= {"exercises", "setup", "answer", "check", "badge", "colab"}
    ok.metadata["tags"] = ["keep"]
    cells.set_check_tag(ok, True)
    assert ok.metadata["tags"] == ["keep", cells.CHECK_TAG]
    cells.set_check_tag(ok, False)
    assert ok.metadata["tags"] == ["keep"]
    assert build.BuildError is cells.FormatError       # one error for the format's rules


def test_grader_does_not_import_the_build():
    code = "import sys, helpers.grading.notebooks, helpers.grading.runner; print('helpers.build' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=course.ROOT)
    assert proc.stdout.strip() == "False", proc.stderr[-1000:]
