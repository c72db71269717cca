"""The README stays true: its test command is what CI runs, its map and badges match the course."""

import re
import subprocess

from helpers import course

README = (course.ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    cmd = subprocess.run(["awk", "/<!-- test-command -->/{getline; getline; print; exit}", "README.md"],
                         capture_output=True, text=True, cwd=course.ROOT).stdout.strip()
    assert "pytest" in cmd and "torch==2.13.0" in cmd
    assert cmd in README
    ci = (course.ROOT / ".ci" / "run").read_text()
    assert "test-command" in ci and 'bash -c "$cmd"' in ci


def test_course_map_has_every_lesson_with_its_badge():
    for nn, (stem, title) in course.LESSONS.items():
        assert f"[{stem}](notebooks/{stem}.ipynb)" in README
        assert course.colab_badge(f"notebooks/{stem}.ipynb") in README


def test_both_setup_commands_install_pinned_torch_first():
    blocks = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)
    setup = [b for b in blocks if "pip install torch==2.13.0" in b]
    assert len(setup) >= 2
    for b in setup:
        assert b.index("torch==2.13.0") < b.index("-e ")
    assert any("jupyter lab" in b for b in setup)


# conda-forge names of pyproject's PyPI names, where they differ
CONDA_NAMES = {"torch": "pytorch", "playwright": "playwright-python"}


def _environment_yml():
    """``(conda specs, pip lines)`` of environment.yml (a plain list; no YAML library needed)."""
    conda, pip, in_pip = [], [], False
    for line in (course.ROOT / "environment.yml").read_text().splitlines():
        m = re.match(r"^(\s*)- (.+?)\s*(?:#.*)?$", line)
        if not m:
            continue
        if m.group(2) == "pip:":
            in_pip = True
        elif in_pip and len(m.group(1)) > 2:
            pip.append(m.group(2))
        else:
            in_pip = False
            conda.append(m.group(2))
    return conda, pip


def test_environment_yml_has_every_dependency_of_pyproject_from_conda_forge():
    import tomllib

    project = tomllib.loads((course.ROOT / "pyproject.toml").read_text())["project"]
    conda, pip = _environment_yml()
    assert "python=3.11" in conda and "pip" in conda
    assert pip == ["-e ."], "pip installs the course itself only"
    for req in project["dependencies"] + project["optional-dependencies"]["test"]:
        name, bound = re.match(r"^([A-Za-z0-9_.-]+)\s*(.*)$", req).groups()
        if name == "torch":
            (torch_spec,) = [s for s in conda if s.split("=")[0] == "pytorch"]
            assert torch_spec.endswith("=cpu*"), "the CPU build of pytorch"
        else:
            assert f"{CONDA_NAMES.get(name, name)}{bound}" in conda, f"{req} missing or other bound"
    text = (course.ROOT / "environment.yml").read_text()
    assert re.search(r"^channels:\n  - conda-forge\n(?!  -)", text, re.M), "conda-forge only"
