"""Test configuration: quick mode for every test run, notebooks included.

NST_QUICK=1 makes the notebooks use small images and few steps (same code path, smaller
numbers). It is inherited by the Jupyter kernels nbval starts.
"""

import os

os.environ.setdefault("NST_QUICK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
