"""Load a Python file of the repository that is not part of the package (``benchmarks/``,
``experiments/``) as a module, for the tests that run it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_repo_module(folder: str, name: str) -> ModuleType:
    """The module in ``ROOT/folder/name.py``, freshly executed."""
    spec = importlib.util.spec_from_file_location(name, ROOT / folder / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
