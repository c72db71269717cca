"""Helpers for the course "Regularization in deep learning".

One module per concern:

- :mod:`helpers.course`   course facts kept in one place (repository URL, lesson list)
- :mod:`helpers.device`   device choice and seeding
- :mod:`helpers.data`     generated and shipped datasets, as tensors on the device
- :mod:`helpers.models`   MLP builder and a small CNN for 8x8 digits
- :mod:`helpers.training` a whole-tensor training loop with hooks
- :mod:`helpers.plots`    learning curves, polynomial fits, error-vs-complexity
- :mod:`helpers.widgets`  ipywidgets explorers
- :mod:`helpers.checks`   exercise checks (probe + judge)
- :mod:`helpers.cells`    the notebook format: cell roles, solution markers, check tag, stubs
- :mod:`helpers.build`    ``python -m helpers.build``: generate notebooks/ and exercises/
- :mod:`helpers.grade`    ``python -m helpers.grade``: grade submitted notebooks
- :mod:`helpers.bench`    ``python -m helpers.bench``: measure the budgets
"""

from helpers.device import get_device, limit_cpu_threads, seed_everything

limit_cpu_threads()

__all__ = ["get_device", "limit_cpu_threads", "seed_everything"]
__version__ = "0.1.0"
