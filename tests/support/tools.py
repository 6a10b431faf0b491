"""Where the tests find the real tools the project installs beside its interpreter."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def installed(name: str) -> str | None:
    """The executable ``name`` beside this interpreter (``make helm`` and ``make prometheus``
    put theirs in the virtual environment), else on PATH; None where neither has it."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    return shutil.which(name)
