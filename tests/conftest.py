import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import torch

import nst_lib as nst


@pytest.fixture(scope="session")
def random_model():
    """An untrained VGG19 (seeded): fast tests that do not need real features."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "untrained VGG19": tested in test_vgg.py
        return nst.vgg19("random", pooling="avg", device="cpu")


@pytest.fixture(scope="session")
def caffe_model():
    """The paper's VGG19 (fetched and cached on first use)."""
    return nst.vgg19("caffe", pooling="avg", device="cpu")


@pytest.fixture
def tiny():
    """A content and a style image of different sizes, (1, 3, H, W) in [0, 1]."""
    g = torch.Generator().manual_seed(12345)  # not the noise init's seed
    return torch.rand(1, 3, 32, 48, generator=g), torch.rand(1, 3, 40, 40, generator=g)


START_TOGETHER = '''
import sys
import time
from pathlib import Path


def start_together():
    """Wait until the other process is ready too, so that both go on at the same moment."""
    Path(sys.argv[1]).touch()
    while not Path(sys.argv[2]).exists():
        time.sleep(0.01)
'''


@pytest.fixture
def two_processes(tmp_path):
    """``run(script, **env)`` runs a Python script in two processes at once and returns
    (exit code, stdout, stderr) of each. The script calls ``start_together()`` right before
    the part the two should race on; ``env`` is added to the environment."""
    root = Path(__file__).resolve().parent.parent

    def run(script: str, **env) -> list[tuple[int, str, str]]:
        path = tmp_path / "race.py"
        path.write_text(START_TOGETHER + textwrap.dedent(script))
        go, ready = tmp_path / "go", [tmp_path / f"ready{i}" for i in range(2)]
        environ = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", **env}
        procs = [subprocess.Popen([sys.executable, str(path), str(r), str(go)], env=environ,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for r in ready]
        deadline = time.monotonic() + 300
        while not all(r.exists() for r in ready) and time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):  # one failed early: see its stderr
                break
            time.sleep(0.05)
        go.touch()
        outputs = [p.communicate(timeout=300) for p in procs]
        return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs)]

    return run
