"""Device choice and seeding."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def get_device() -> torch.device:
    """CUDA when present (and not disabled by ``COURSE_DEVICE=cpu``), else the CPU."""
    wanted = os.environ.get("COURSE_DEVICE")
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA).

    Returns a fresh ``torch.Generator`` seeded with ``seed`` for code that prefers an
    explicit generator.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)           # NumPy's legacy seed must be below 2**32
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)


def limit_cpu_threads(default: int = 1) -> int:
    """Set torch's CPU thread count: ``COURSE_THREADS`` if set, else ``default`` (1).

    Called when ``helpers`` is imported. The course's models are tiny: one thread runs them
    about as fast as two on an idle machine, and on a busy one (a browser, another kernel,
    a grader running two jobs) two OpenMP threads that wait for each other were measured
    running the same training loop 10 to 100 times slower. GPU work is unaffected.
    """
    n = int(os.environ.get("COURSE_THREADS", default))
    if n > 0 and torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return torch.get_num_threads()
