"""Shared fixtures. Keep this small and generic: lesson-specific helpers live in their tests, and
plain helpers shared by several lessons' tests (the seed loop, the hint scan) in ``util.py``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def artifacts_dir(request) -> Path:
    """``artifacts/<test module>/`` under the repository root (gitignored), created on demand.

    For files a person should look at after the run (screenshots, logs); each test records
    the paths it writes with ``record_property`` so they appear in JUnit reports.
    """
    module = re.sub(r"^test_", "", Path(request.node.fspath).stem)
    path = ROOT / "artifacts" / module
    path.mkdir(parents=True, exist_ok=True)
    return path
