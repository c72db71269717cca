"""Facts about the course kept in exactly one place.

``REPO_URL`` is the public repository the Colab setup cell installs ``helpers`` from and
the Colab badges point at. The environment variable ``COURSE_REPO_URL`` overrides it at
install time (tests point it at a local clone).
"""

from __future__ import annotations

import re
from pathlib import Path

REPO_URL = "https://github.com/regularization-course/regularization-course"
BRANCH = "main"

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
NOTEBOOKS = ROOT / "notebooks"
EXERCISES = ROOT / "exercises"

LESSONS = {
    "01": ("01_overfitting", "Overfitting, bias and variance, learning curves"),
    "02": ("02_weight_decay", "L2, L1, weight decay, Adam vs AdamW"),
    "03": ("03_dropout", "Inverted dropout, train/eval modes, MC dropout"),
    "04": ("04_batch_norm", "Batch norm in train and eval, running statistics"),
    "05": ("05_label_smoothing", "Label smoothing and calibration"),
    "06": ("06_mixup", "Data augmentation and mixup"),
    "07": ("07_early_stopping", "Early stopping and learning-rate schedules"),
}


def lesson_of_filename(name: str) -> str | None:
    """Two-digit lesson number from a file name such as ``03_dropout.ipynb`` (or None)."""
    m = re.match(r"^(\d{2})_", Path(name).name)
    return m.group(1) if m and m.group(1) in LESSONS else None


def colab_url(relpath: str) -> str:
    """The "Open in Colab" address of a notebook given by its path inside the repository."""
    gh = REPO_URL.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{gh}/blob/{BRANCH}/{relpath}"


def colab_badge(relpath: str) -> str:
    """Markdown for an "Open in Colab" badge pointing at ``relpath``."""
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({colab_url(relpath)})")
