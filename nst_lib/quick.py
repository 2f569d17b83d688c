"""Quick mode: the notebooks' small sizes and few steps, for running them as tests."""

from __future__ import annotations

import os


def quick_mode() -> bool:
    """True when ``NST_QUICK`` is set to a non-empty value other than ``0``.

    The test configuration sets it so that the notebooks run with small images and few
    steps; the code path is the same, only the numbers change.
    """
    return os.environ.get("NST_QUICK", "") not in ("", "0")
