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
