"""charnn: train recurrent language models on your own text and sample in its style.

The package imports nothing heavy at the top level, so that ``charnn --help`` and
``charnn --version`` answer without loading torch. The public API below is loaded
on first use:

>>> import charnn
>>> run = charnn.load_run("runs/shakespeare")          # doctest: +SKIP
>>> print(charnn.generate_text(run, prime="ROMEO:"))    # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_run": "charnn.tasks",
    "generate_text": "charnn.tasks.lm.sample",
    "evaluate_text": "charnn.tasks.lm.evaluate",
    "CharnnError": "charnn.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'charnn' has no attribute {name!r}")
